//! `cargo bench --bench backfill`: end-to-end backfill figures, each run in its own process
//! so peak memory is measured per run.
//!
//! Two ways history grows: the same 730 days holding 10x the records (denser chunks), and
//! 10x the days at the same density (more chunks of the same size). Memory must not follow
//! the number of records; it is bounded by the part and row-group sizes.

use std::process::Command;

fn run(records: u64, history_days: u64) -> serde_json::Value {
    bench(&[
        "--records",
        &records.to_string(),
        "--history-days",
        &history_days.to_string(),
    ])
}

fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_avesa-console"))
        .args(["bench", "--json"])
        .args(args)
        .output()
        .expect("the avesa-console binary runs");
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bench prints JSON")
}

fn main() {
    let runs = [(100_000, 73), (1_000_000, 730), (100_000, 730)];
    println!(
        "{:>10} {:>6} {:>7} {:>9} {:>10} {:>10} {:>10} {:>12}",
        "records",
        "days",
        "chunks",
        "seconds",
        "records/s",
        "JSON MB/s",
        "API calls",
        "peak RSS MB"
    );
    let mut peaks = Vec::new();
    for (n, days) in runs {
        let r = run(n, days);
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:>10} {:>6} {:>7} {:>9.2} {:>10.0} {:>10.1} {:>10} {:>12.1}",
            n,
            days,
            r["chunks"],
            f("seconds"),
            f("records_per_sec"),
            f("json_mb_per_sec"),
            r["api_calls"],
            f("peak_rss_mb")
        );
        peaks.push(f("peak_rss_mb"));
    }
    println!(
        "peak memory, 1M records vs 100k at the same density: {:.2}x; vs 100k over the same days: {:.2}x",
        peaks[1] / peaks[0],
        peaks[1] / peaks[2]
    );

    // Rate budget: the sandbox enforces N requests/minute per tenant, the engine is
    // configured at N; two tables share the tenant's budget.
    println!(
        "{:>10} {:>9} {:>10} {:>14} {:>12} {:>16}",
        "limit/min", "seconds", "accepted", "achieved/min", "% of limit", "self-caused 429"
    );
    for (limit, secs) in [(600, "30s"), (3000, "20s")] {
        let r = bench(&["--rate-limit", &limit.to_string(), "--duration", secs]);
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:>10} {:>9.1} {:>10} {:>14.1} {:>12.1} {:>16}",
            limit,
            f("seconds"),
            r["accepted"],
            f("achieved_per_minute"),
            f("share_of_limit") * 100.0,
            r["self_caused_429"]
        );
    }
}
