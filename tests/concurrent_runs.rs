//! Two `run` processes started together on one job never work on the same chunk.

mod common;

use avesa_console::sandbox::TableCounts;
use common::*;

#[test]
fn two_runners_share_a_job_without_overlap() {
    let fx = Fixture::new();
    fx.tune(6000, 100);
    let sandbox = fx.start_sandbox(&[]);
    assert_ok(&fx.cli(
        Some(&sandbox),
        &trigger_args(
            "globex",
            None,
            "2024-06-01",
            Some("2026-01-01"),
            &["--chunk-size-days", "30"],
        ),
    ));
    let job_id = "backfill_globex_connectwise_20240601";
    let a = fx
        .command(Some(&sandbox), &["run", "--job-id", job_id])
        .spawn()
        .unwrap();
    let b = fx
        .command(Some(&sandbox), &["run", "--job-id", job_id])
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_ok(&a);
    assert_ok(&b);

    let stats = sandbox.stats();
    assert_eq!(
        stats["repeated_pages"], 0,
        "a page was fetched twice: {stats}"
    );
    let detail = job_status(&fx, job_id);
    assert_eq!(detail["job"]["status"], "completed");
    for c in detail["chunks"].as_array().unwrap() {
        assert_eq!(c["attempts"], 1, "chunk claimed more than once: {c}");
        assert_eq!(c["status"], "succeeded");
    }
    let window = parse_window("2024-06-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let cfg = fx.sandbox_config(TableCounts::demo());
    let company = company_of(&fx, "globex");
    for table in ["tickets", "time_entries", "companies", "contacts"] {
        assert_exact(
            &Landed::read(&fx.data_dir(), "globex", table),
            &cfg,
            &company,
            table,
            &window,
        );
    }
}
