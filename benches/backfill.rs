//! `cargo bench --bench backfill`: end-to-end backfill figures at two history sizes, each in
//! its own process so peak memory is measured per size (flat memory: 100k vs 1M).

use std::process::Command;

fn run(records: u64) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_avesa-console"))
        .args(["bench", "--json", "--records", &records.to_string()])
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
    // `cargo bench` passes harness flags such as `--bench`; a filter argument picks sizes.
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        sizes
    };
    println!(
        "{:>10} {:>9} {:>12} {:>10} {:>10} {:>12}",
        "records", "seconds", "records/s", "JSON MB/s", "API calls", "peak RSS MB"
    );
    let mut peaks = Vec::new();
    for n in sizes {
        let r = run(n);
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:>10} {:>9.2} {:>12.0} {:>10.1} {:>10} {:>12.1}",
            n,
            f("seconds"),
            f("records_per_sec"),
            f("json_mb_per_sec"),
            r["api_calls"],
            f("peak_rss_mb")
        );
        peaks.push(f("peak_rss_mb"));
    }
    if let (Some(first), Some(last)) = (peaks.first(), peaks.last())
        && peaks.len() > 1
    {
        println!(
            "peak memory, largest vs smallest history: {:.2}x",
            last / first
        );
    }
}
