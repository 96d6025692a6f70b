//! Failing chunks are retried with backoff, then marked failed while the job goes on;
//! a time budget stops cleanly with state saved, and `resume` finishes the work.

mod common;

use avesa_console::sandbox::TableCounts;
use avesa_console::secret::scrub;
use common::*;

#[test]
fn a_permanently_failing_chunk_fails_after_its_attempts_and_the_job_goes_on() {
    let fx = Fixture::new();
    fx.tune(6000, 100);
    let faults = fx.dir.path().join("faults.json");
    std::fs::write(
        &faults,
        r#"{"faults":[
            {"path":"service/tickets","window_start":"2025-01-31T00:00:00Z","status":500,"message":"database timeout on ticket store"},
            {"path":"service/tickets","window_start":"2025-03-02T00:00:00Z","status":503,"times":2,"message":"busy"}
        ]}"#,
    )
    .unwrap();
    let sandbox = fx.start_sandbox(&["--faults", faults.to_str().unwrap()]);
    let out = fx.cli(
        Some(&sandbox),
        &trigger_args(
            "acme",
            Some("tickets"),
            "2025-01-01",
            Some("2025-06-01"),
            &["--chunk-size-days", "30", "--run"],
        ),
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "completed_with_errors exits 3: {}",
        text(&out)
    );
    let detail = job_status(&fx, "backfill_acme_connectwise_20250101");
    assert_eq!(detail["job"]["status"], "completed_with_errors");
    assert_eq!(detail["job"]["failed_chunks"], 1);
    let chunks = detail["chunks"].as_array().unwrap();
    let failed: Vec<_> = chunks.iter().filter(|c| c["status"] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["key"]["seq"], 1);
    assert_eq!(failed[0]["attempts"], 3, "retried up to retry_attempts");
    let err = failed[0]["last_error"].as_str().unwrap();
    for needle in [
        "attempt 3/3",
        "acme",
        "connectwise",
        "tickets",
        "HTTP 500",
        "database timeout on ticket store",
    ] {
        assert!(err.contains(needle), "last error {err:?} lacks {needle:?}");
    }
    // The transient fault (two 503s) was absorbed by request retries: chunk 2 succeeded.
    assert_eq!(chunks[2]["status"], "succeeded");
    assert_eq!(
        sandbox.stats()["faults_injected"].as_u64().unwrap(),
        3 * 3 + 2
    );

    // Every other window landed exactly.
    let cfg = fx.sandbox_config(TableCounts::demo());
    let company = company_of(&fx, "acme");
    let landed = Landed::read(&fx.data_dir(), "acme", "tickets");
    let bad = parse_window("2025-01-31T00:00:00Z", "2025-03-02T00:00:00Z");
    let mut expected = Vec::new();
    for w in [
        parse_window("2025-01-01T00:00:00Z", "2025-01-31T00:00:00Z"),
        parse_window("2025-03-02T00:00:00Z", "2025-06-01T00:00:00Z"),
    ] {
        expected.extend(avesa_console::sandbox::expected_records(
            &cfg, &company, "tickets", &w,
        ));
    }
    expected.sort();
    assert!(
        landed.rows.iter().all(|(_, t)| !bad.contains(*t)),
        "rows of the failed window landed"
    );
    assert_eq!(landed.rows, expected);

    // No secret reached the store's view of the job or the logs.
    let secrets = [
        "sandbox-only-private-key-0000",
        "demo-public-key",
        "00000000-0000-4000-8000-000000000001",
    ];
    let logs = std::fs::read_to_string(fx.workspace().join("logs/engine.jsonl")).unwrap();
    let everything = format!("{detail}{logs}{}", text(&out));
    assert_eq!(
        scrub(&everything, secrets),
        everything,
        "a secret value was printed or stored"
    );
    assert!(
        logs.contains("database timeout on ticket store"),
        "the failure is in the log file"
    );
}

#[test]
fn time_budget_stops_cleanly_and_resume_finishes_exactly() {
    let fx = Fixture::new();
    // 200 ms between requests: ~100 calls take ~20 s, far beyond the budget.
    fx.tune(300, 50);
    let sandbox = fx.start_sandbox(&[]);
    let out = fx.cli(
        Some(&sandbox),
        &trigger_args(
            "acme",
            Some("tickets"),
            "2024-01-01",
            Some("2026-01-01"),
            // Fixed windows: several chunks, so some finish within the budget.
            &["--chunk-size-days", "30"],
        ),
    );
    assert_ok(&out);
    let job_id = "backfill_acme_connectwise_20240101";
    let out = fx.cli(
        Some(&sandbox),
        &["run", "--job-id", job_id, "--time-budget", "3s"],
    );
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("continuation needed"),
        "{}",
        text(&out)
    );
    // The whole job needs ~20 s at this pace: still open means the budget stopped it.
    let detail = job_status(&fx, job_id);
    assert_ne!(detail["job"]["status"], "completed");
    let chunks = detail["chunks"].as_array().unwrap();
    assert!(
        chunks
            .iter()
            .all(|c| c["status"] != "running" && c["lease_owner"].is_null()),
        "a lease was left behind"
    );
    assert!(
        chunks.iter().any(|c| c["status"] == "succeeded"),
        "no progress within the budget"
    );

    let out = fx.cli(Some(&sandbox), &["resume", job_id]);
    assert_ok(&out);
    let detail = job_status(&fx, job_id);
    assert_eq!(detail["job"]["status"], "completed");
    let cfg = fx.sandbox_config(TableCounts::demo());
    let window = parse_window("2024-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    assert_exact(
        &Landed::read(&fx.data_dir(), "acme", "tickets"),
        &cfg,
        &company_of(&fx, "acme"),
        "tickets",
        &window,
    );
    assert!(
        sandbox.stats()["repeated_pages"].as_u64().unwrap() <= 1,
        "only the page read ahead may be fetched again"
    );
}

/// The engine records its pulse in the store: after a run, the requests, the refusals for a
/// rate limit and the records of the job's buckets are what the sandbox answered and what
/// landed (the run flushes at its end, so nothing is left in memory).
#[test]
fn a_run_records_the_requests_the_api_saw_in_the_pulse_counters() {
    let fx = Fixture::new();
    fx.tune(6000, 100);
    let faults = fx.dir.path().join("faults.json");
    std::fs::write(
        &faults,
        r#"{"faults":[{"path":"service/tickets","window_start":"2025-01-31T00:00:00Z","status":429,"times":2,"message":"slow down"}]}"#,
    )
    .unwrap();
    let sandbox = fx.start_sandbox(&["--faults", faults.to_str().unwrap()]);
    let args = trigger_args(
        "acme",
        Some("tickets"),
        "2025-01-01",
        Some("2025-04-01"),
        &["--chunk-size-days", "30"],
    );
    assert_ok(&fx.cli(Some(&sandbox), &args));
    let job_id = "backfill_acme_connectwise_20250101";
    let before = sandbox.stats();
    assert_ok(&fx.cli(Some(&sandbox), &["run", "--job-id", job_id]));
    let after = sandbox.stats();
    let seen = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = avesa_console::store::SqliteStore::open(&fx.workspace().join("state.db")).unwrap();
    let rows = rt
        .block_on(avesa_console::store::JobStore::pulse_since(&store, 0))
        .unwrap();
    assert!(
        rows.iter()
            .all(|r| r.job_id == job_id && r.tenant_id == "acme")
    );
    let sum = |f: fn(&avesa_console::store::PulseCounts) -> u64| -> u64 {
        rows.iter().map(|r| f(&r.counts)).sum()
    };
    assert!(seen("requests") > 3, "{after}");
    assert_eq!(sum(|c| c.requests), seen("requests"), "{rows:?}");
    assert_eq!(sum(|c| c.rate_limited), 2);
    assert_eq!(seen("faults_injected"), 2, "the two 429s");
    let records = job_status(&fx, job_id)["job"]["records"].as_u64().unwrap();
    assert!(records > 0);
    assert_eq!(sum(|c| c.records), records);
}
