//! Fewest calls: windows sized by the source's counts (the default) read a sparse two-year
//! history of every service in at most twice the per-page minimum, count calls included,
//! with no page fetched twice; the plan preview shows the count-based windows. Call counts
//! are the sandbox's own (exact numbers, not timing).

mod common;

use common::*;
use serde_json::Value;

const START: &str = "2024-01-01T00:00:00Z";
const END: &str = "2026-01-01T00:00:00Z";

/// Requests the sandbox answered for data (a Salesforce login or a ServiceNow OAuth token
/// is not an API call of the backfill).
fn api_calls(sandbox: &SandboxProc) -> u64 {
    let all = sandbox.stats()["requests"].as_u64().unwrap();
    let stats = |service: &str| -> Value {
        let url = format!("{}/_sandbox/{service}/stats", sandbox.url);
        serde_json::from_str(&reqwest::blocking_get(&url)).unwrap()
    };
    // Field discovery's describes are a fixed cost per job, not reading.
    let logins = stats("salesforce")["logins"].as_u64().unwrap()
        + stats("salesforce")["describes"].as_u64().unwrap();
    let tokens = stats("servicenow")["tokens_issued"].as_u64().unwrap();
    all - logins - tokens
}

struct Run {
    calls: u64,
    /// Σ ceil(records / page size) over the tables.
    minimum: u64,
    windows: usize,
}

/// Backfills every table of `service` for the two years through `sandbox`, with `extra`
/// flags, and measures it.
fn backfill(fx: &Fixture, sandbox: &SandboxProc, service: &str, extra: &[&str]) -> Run {
    let before = api_calls(sandbox);
    let mut args = vec![
        "trigger",
        "--tenant-id",
        "acme",
        "--service",
        service,
        "--start-date",
        START,
        "--end-date",
        END,
        "--run",
        "--output",
        "json",
    ];
    args.extend(extra);
    let out = fx.cli(Some(sandbox), &args);
    assert_ok(&out);
    let calls = api_calls(sandbox) - before;
    let text = String::from_utf8_lossy(&out.stdout);
    let job_id = text
        .split('"')
        .find(|s| s.starts_with(&format!("backfill_acme_{service}_")))
        .unwrap_or_else(|| panic!("no job id in {text}"))
        .to_string();
    let detail = job_status(fx, &job_id);
    assert_eq!(detail["job"]["status"], "completed", "{detail}");
    let config = fx.config();
    let endpoints = config.endpoints(service.parse().unwrap()).unwrap();
    let mut minimum = 0;
    let chunks = detail["chunks"].as_array().unwrap();
    for def in &endpoints.endpoints {
        let records: u64 = chunks
            .iter()
            .filter(|c| c["key"]["table"] == def.table_name.as_str())
            .map(|c| c["checkpoint"]["records"].as_u64().unwrap())
            .sum();
        assert!(
            (1_000..=2_500).contains(&records),
            "{service} {}: {records} records, not a sparse table of about 2,000",
            def.table_name
        );
        minimum += records.div_ceil(u64::from(def.page_size));
    }
    Run {
        calls,
        minimum,
        windows: chunks.len(),
    }
}

/// The `plan` preview of the same range: count-based windows with their records.
fn preview(fx: &Fixture, sandbox: &SandboxProc, service: &str) -> Value {
    let out = fx.cli(
        Some(sandbox),
        &[
            "plan",
            "--tenant-id",
            "acme",
            "--service",
            service,
            "--start-date",
            START,
            "--end-date",
            END,
            "--output",
            "json",
        ],
    );
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_sparse_two_year_history_costs_at_most_twice_the_page_minimum() {
    let fx = Fixture::new();
    fx.edit("backfill_config.json", |v| {
        for service in ["connectwise", "servicenow", "salesforce"] {
            v["service_settings"][service]["rate_limit_requests_per_minute"] = 6000.into();
        }
    });
    // About 2,000 records per table: ConnectWise and ServiceNow tables take the counts as
    // given; Salesforce derives its objects' sizes from them (accounts = 10 x companies ...).
    let even = ["--tickets", "2000", "--time-entries", "2000"];
    let cw_sn =
        fx.start_sandbox(&[&even[..], &["--companies", "2000", "--contacts", "2000"]].concat());
    let sf = fx.start_sandbox(&[
        "--tickets",
        "1000",
        "--time-entries",
        "2000",
        "--companies",
        "200",
        "--contacts",
        "400",
    ]);
    let mut report = Vec::new();
    for (service, sandbox, fixed_days) in [
        ("connectwise", &cw_sn, "30"),
        ("servicenow", &cw_sn, "14"),
        ("salesforce", &sf, "7"),
    ] {
        let plan = preview(&fx, sandbox, service);
        assert!(plan["estimate"]["counted"].as_bool().unwrap(), "{plan}");
        assert!(
            plan["estimate"]["count_calls"].as_u64().unwrap() >= 1,
            "{plan}"
        );
        for t in plan["plan"]["tables"].as_array().unwrap() {
            let windows = t["windows"].as_array().unwrap().len();
            let records = t["records"].as_array().expect("records per window");
            assert_eq!(records.len(), windows, "{t}");
            assert_eq!(windows, 1, "a sparse table is one window: {t}");
        }

        let repeated = || sandbox.stats()["repeated_pages"].as_u64().unwrap();
        let repeated_before = repeated();
        let counted = backfill(&fx, sandbox, service, &[]);
        assert_eq!(repeated(), repeated_before, "a page fetched twice");
        // The same range in fixed windows of the configured size, as before: a second job
        // (another range start would be another job; the same start is the same job, so the
        // fixed run uses a fresh workspace).
        let fixed_fx = Fixture::new();
        std::fs::remove_dir_all(fixed_fx.config_dir()).unwrap();
        copy_config(&fx, &fixed_fx);
        let fixed = backfill(
            &fixed_fx,
            sandbox,
            service,
            &["--chunk-size-days", fixed_days],
        );
        report.push(format!(
            "{service}: minimum {} calls; counted windows {} calls ({} windows); fixed {fixed_days}-day windows {} calls ({} windows)",
            counted.minimum, counted.calls, counted.windows, fixed.calls, fixed.windows
        ));
        assert_eq!(fixed.minimum, counted.minimum);
        assert!(
            counted.calls <= 2 * counted.minimum,
            "{service}: {} calls for a minimum of {}",
            counted.calls,
            counted.minimum
        );
    }
    eprintln!("{}", report.join("\n"));
}

/// Copies `from`'s configuration (with its edits) into `to`.
fn copy_config(from: &Fixture, to: &Fixture) {
    let mut stack = vec![from.config_dir()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let rel = e
                .path()
                .strip_prefix(from.config_dir())
                .unwrap()
                .to_path_buf();
            let dest = to.config_dir().join(&rel);
            if e.path().is_dir() {
                std::fs::create_dir_all(&dest).unwrap();
                stack.push(e.path());
            } else {
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::copy(e.path(), dest).unwrap();
            }
        }
    }
}
