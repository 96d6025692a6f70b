//! End to end on loopback: sandbox process → `trigger` → `run` → Parquet read back.

mod common;

use arrow_array::{Array, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, TimeUnit};
use avesa_console::domain::Window;
use avesa_console::engine::planner::{calls_for, chunk_windows};
use avesa_console::sandbox::{TableCounts, expected_records};
use common::*;

const TABLES: [&str; 4] = ["tickets", "time_entries", "companies", "contacts"];

#[test]
fn backfill_lands_every_record_once_with_typed_columns_and_no_wasted_calls() {
    let fx = Fixture::new();
    fx.tune(1200, 100);
    // Strict (burst 1): a request sooner than the paced interval allows is refused.
    let sandbox = fx.start_sandbox(&["--rate-limit", "1200", "--strict-rate-limit"]);
    let out = fx.cli(
        Some(&sandbox),
        &trigger_args(
            "acme",
            None,
            "2024-01-01T00:00:00Z",
            Some("2026-01-01T00:00:00Z"),
            &["--chunk-size-days", "30", "--output", "json"],
        ),
    );
    assert_ok(&out);
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["created"], true);
    let job_id = created["job"]["job_id"].as_str().unwrap().to_string();
    assert_eq!(job_id, "backfill_acme_connectwise_20240101");

    let out = fx.cli(Some(&sandbox), &["run"]);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{job_id}: completed")),
        "{}",
        text(&out)
    );

    let window = parse_window("2024-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let cfg = fx.sandbox_config(TableCounts::demo());
    let company = company_of(&fx, "acme");
    let chunks = chunk_windows(window, 30);
    let mut minimum_calls = 0;
    let mut boundary_hits = 0;
    for table in TABLES {
        let landed = Landed::read(&fx.data_dir(), "acme", table);
        assert_exact(&landed, &cfg, &company, table, &window);
        for w in &chunks {
            minimum_calls +=
                calls_for(expected_records(&cfg, &company, table, w).len() as u64, 100);
        }
        boundary_hits += landed
            .rows
            .iter()
            .filter(|(_, t)| chunks.iter().any(|w| w.start == *t))
            .count();
        // Each row sits inside the chunk window recorded beside it.
        for b in &landed.batches {
            let ts = |name: &str| {
                b.column_by_name(name)
                    .unwrap()
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .unwrap()
                    .clone()
            };
            let (start, end, upd) = (
                ts("_avesa_chunk_start"),
                ts("_avesa_chunk_end"),
                ts("_info__lastUpdated"),
            );
            for i in 0..b.num_rows() {
                assert!(
                    start.value(i) <= upd.value(i) && upd.value(i) < end.value(i),
                    "row outside its chunk window"
                );
            }
            let jobs = b
                .column_by_name("_avesa_job_id")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone();
            assert!((0..b.num_rows()).all(|i| jobs.value(i) == job_id));
        }
    }
    assert!(
        boundary_hits > 0,
        "no record on a chunk boundary was tested"
    );

    // Columns and types of the raw tickets table.
    let tickets = Landed::read(&fx.data_dir(), "acme", "tickets");
    let schema = tickets.batches[0].schema();
    let ty = |name: &str| {
        schema
            .field_with_name(name)
            .unwrap_or_else(|_| panic!("no column {name}"))
            .data_type()
            .clone()
    };
    assert_eq!(ty("id"), DataType::Int64);
    assert_eq!(ty("status__name"), DataType::Utf8);
    assert_eq!(ty("board___info__board_href"), DataType::Utf8);
    assert_eq!(ty("closedFlag"), DataType::Boolean);
    assert_eq!(ty("budgetHours"), DataType::Float64);
    assert_eq!(ty("customFields"), DataType::Utf8);
    assert_eq!(
        ty("_info__lastUpdated"),
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    for meta in [
        "_avesa_tenant_id",
        "_avesa_service",
        "_avesa_table",
        "_avesa_job_id",
        "_avesa_chunk_start",
        "_avesa_chunk_end",
        "_avesa_ingested_at",
    ] {
        assert!(
            schema.field_with_name(meta).is_ok(),
            "metadata column {meta} missing"
        );
    }
    let names = tickets.batches[0].column_by_name("status__name").unwrap();
    assert!(names.null_count() < names.len(), "status__name is all null");

    // Paced at the server's own limit: no 429, no page twice, calls within 2 % of the minimum.
    let stats = sandbox.stats();
    assert_eq!(stats["rate_limited"], 0, "{stats}");
    assert_eq!(stats["repeated_pages"], 0, "{stats}");
    let calls = stats["requests"].as_u64().unwrap();
    assert!(
        calls >= minimum_calls,
        "fewer calls than possible? {calls} < {minimum_calls}"
    );
    assert!(
        (calls as f64) <= minimum_calls as f64 * 1.02,
        "{calls} calls for a minimum of {minimum_calls}"
    );

    // The store agrees with the data.
    let status = job_status(&fx, &job_id);
    assert_eq!(status["job"]["status"], "completed");
    let total: u64 = TABLES
        .iter()
        .map(|t| Landed::read(&fx.data_dir(), "acme", t).rows.len() as u64)
        .sum();
    assert_eq!(status["job"]["records"].as_u64().unwrap(), total);
    assert_eq!(
        status["job"]["completed_chunks"].as_u64().unwrap(),
        (chunks.len() * 4) as u64
    );
}

#[test]
fn triggering_an_active_range_again_returns_the_same_job() {
    let fx = Fixture::new();
    fx.tune(6000, 1000);
    let args = trigger_args(
        "initech",
        Some("company/companies"),
        "2025-01-01",
        None,
        &["--output", "json"],
    );
    let first: serde_json::Value = serde_json::from_slice(&fx.cli(None, &args).stdout).unwrap();
    let second: serde_json::Value = serde_json::from_slice(&fx.cli(None, &args).stdout).unwrap();
    assert_eq!(first["created"], true);
    assert_eq!(second["created"], false);
    assert_eq!(first["job"]["job_id"], second["job"]["job_id"]);
    // The end defaulted to the first trigger's moment and stays frozen in the job.
    assert_eq!(
        first["job"]["window"]["end"],
        second["job"]["window"]["end"]
    );

    // Once that job is done, the same request is new work with a new, still readable id.
    let sandbox = fx.start_sandbox(&[]);
    assert_ok(&fx.cli(Some(&sandbox), &["run"]));
    let third: serde_json::Value = serde_json::from_slice(&fx.cli(None, &args).stdout).unwrap();
    assert_eq!(third["created"], true);
    assert_eq!(
        third["job"]["job_id"],
        format!("{}_r2", first["job"]["job_id"].as_str().unwrap())
    );
}

#[test]
fn plan_lists_exact_windows_and_counts_calls_from_the_source() {
    let fx = Fixture::new();
    fx.tune(600, 100);
    let sandbox = fx.start_sandbox(&[]);
    let out = fx.cli(
        Some(&sandbox),
        &[
            "plan",
            "--tenant-id",
            "acme",
            "--service",
            "connectwise",
            "--table",
            "tickets",
            "--start-date",
            "2025-01-01",
            "--end-date",
            "2025-03-15",
            "--chunk-size-days",
            "30",
            "--count",
            "--output",
            "json",
        ],
    );
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let windows = v["plan"]["tables"][0]["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 3);
    assert_eq!(windows[2]["end"], "2025-03-15T00:00:00Z");
    let cfg = fx.sandbox_config(TableCounts::demo());
    let company = company_of(&fx, "acme");
    let expected: u64 = chunk_windows(
        parse_window("2025-01-01T00:00:00Z", "2025-03-15T00:00:00Z"),
        30,
    )
    .iter()
    .map(|w: &Window| {
        calls_for(
            expected_records(&cfg, &company, "tickets", w).len() as u64,
            100,
        )
    })
    .sum();
    assert_eq!(v["estimate"]["api_calls"].as_u64().unwrap(), expected);
    assert_eq!(v["estimate"]["counted"], true);
    let secs = v["estimate"]["duration_secs"].as_f64().unwrap();
    assert!((secs - expected as f64 * 0.1).abs() < 1e-6, "{secs}");
    // Planning wrote no job.
    assert!(!fx.workspace().join("state.db").exists());
}
