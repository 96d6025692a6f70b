//! Windows sized by counts (crowded stretches split, sparse ones merged up to the target) and
//! table dependencies (companies before contacts before tickets before time entries), end
//! to end against the sandbox.

mod common;

use avesa_console::domain::Window;
use avesa_console::sandbox::{TableCounts, expected_records};
use chrono::{DateTime, Utc};
use common::*;
use serde_json::Value;

fn windows(plan: &Value, table: &str) -> Vec<Window> {
    plan["plan"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("no {table} in {plan}"))["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| serde_json::from_value(w.clone()).unwrap())
        .collect()
}

fn assert_cover(ws: &[Window], start: &str, end: &str) {
    assert_eq!(
        ws.first().unwrap().start,
        start.parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(
        ws.last().unwrap().end,
        end.parse::<DateTime<Utc>>().unwrap()
    );
    for pair in ws.windows(2) {
        assert_eq!(pair[0].end, pair[1].start, "gap or overlap");
    }
}

#[test]
fn smart_chunking_splits_crowded_windows_and_merges_sparse_ones() {
    let fx = Fixture::new();
    fx.tune(6000, 100);
    fx.edit("backfill_config.json", |v| {
        v["smart_chunking"] = serde_json::json!({
            "enabled": false, "target_records_per_window": 100, "min_window_hours": 1
        });
    });
    let sandbox = fx.start_sandbox(&[]);
    let (start, end) = ("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let args = [
        "--tenant-id",
        "acme",
        "--service",
        "connectwise",
        "--table",
        "tickets",
        "--table",
        "companies",
        "--start-date",
        start,
        "--end-date",
        end,
        "--chunk-size-days",
        "30",
        "--smart-chunking",
    ];
    let mut plan_args = vec!["plan", "--output", "json"];
    plan_args.extend(args);
    let out = fx.cli(Some(&sandbox), &plan_args);
    assert_ok(&out);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cfg = fx.sandbox_config(TableCounts::demo());
    let company = company_of(&fx, "acme");
    let count = |table: &str, w: &Window| expected_records(&cfg, &company, table, w).len();

    let tickets = windows(&plan, "tickets");
    assert_cover(&tickets, start, end);
    assert!(
        tickets.len() > 13,
        "30-day windows of ~165 tickets were split: {}",
        tickets.len()
    );
    for w in &tickets {
        assert!(
            count("tickets", w) <= 100,
            "{w} holds {}",
            count("tickets", w)
        );
    }
    let companies = windows(&plan, "companies");
    assert_cover(&companies, start, end);
    assert!(
        companies.len() < 13,
        "sparse windows were merged: {}",
        companies.len()
    );
    for pair in companies.windows(2) {
        assert!(
            count("companies", &pair[0]) + count("companies", &pair[1]) > 100,
            "neighbours {} and {} fit the target together: they are merged",
            pair[0],
            pair[1]
        );
    }
    let records: Vec<usize> = plan["plan"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "companies")
        .unwrap()["records"]
        .as_array()
        .expect("records per window in the plan")
        .iter()
        .map(|n| n.as_u64().unwrap() as usize)
        .collect();
    let expected: Vec<usize> = companies.iter().map(|w| count("companies", w)).collect();
    assert_eq!(records, expected, "the plan shows each window's records");
    assert_eq!(
        plan["plan"]["tables"][0]["table"], "companies",
        "tickets depend on companies"
    );

    // The same flag on trigger lands exactly the source through those windows.
    let mut trigger = vec!["trigger", "--run"];
    trigger.extend(args);
    assert_ok(&fx.cli(Some(&sandbox), &trigger));
    let window = parse_window(start, end);
    for table in ["tickets", "companies"] {
        assert_exact(
            &Landed::read(&fx.data_dir(), "acme", table),
            &cfg,
            &company,
            table,
            &window,
        );
    }
}

/// Runs a two-month job of every ConnectWise table (`strict_table_order` as given), checks
/// it landed exactly, and returns, per dependent table and dependency, when the dependent's
/// first window started and the dependency's last window finished.
fn dependency_run(strict: bool) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
    let fx = Fixture::new();
    fx.tune(6000, 50);
    fx.edit("backfill_config.json", |v| {
        v["service_settings"]["connectwise"]["strict_table_order"] = strict.into()
    });
    let sandbox = fx.start_sandbox(&[]);
    let out = fx.cli(
        Some(&sandbox),
        &trigger_args(
            "acme",
            None,
            "2025-10-01T00:00:00Z",
            Some("2025-12-01T00:00:00Z"),
            &["--chunk-size-days", "10", "--output", "json"],
        ),
    );
    assert_ok(&out);
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        created["job"]["tables"],
        serde_json::json!(["companies", "contacts", "tickets", "time_entries"])
    );
    let job_id = created["job"]["job_id"].as_str().unwrap().to_string();
    assert_ok(&fx.cli(Some(&sandbox), &["run", "--concurrency", "4"]));
    let detail = job_status(&fx, &job_id);
    assert_eq!(detail["job"]["status"], "completed", "{detail}");
    let chunks = detail["chunks"].as_array().unwrap();
    let at = |c: &Value, f: &str| c[f].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    let of =
        |t: &str| -> Vec<&Value> { chunks.iter().filter(|c| c["key"]["table"] == t).collect() };
    let mut pairs = Vec::new();
    for (dependent, deps) in [
        ("contacts", vec!["companies"]),
        ("tickets", vec!["companies", "contacts"]),
        ("time_entries", vec!["tickets"]),
    ] {
        let first_start = of(dependent)
            .into_iter()
            .map(|c| at(c, "started_at"))
            .min()
            .unwrap();
        for dep in deps {
            let last_end = of(dep)
                .into_iter()
                .map(|c| at(c, "finished_at"))
                .max()
                .unwrap();
            pairs.push((format!("{dependent} after {dep}"), first_start, last_end));
        }
    }
    let cfg = fx.sandbox_config(TableCounts::demo());
    let window = parse_window("2025-10-01T00:00:00Z", "2025-12-01T00:00:00Z");
    let company = company_of(&fx, "acme");
    for table in ["tickets", "time_entries", "companies", "contacts"] {
        assert_exact(
            &Landed::read(&fx.data_dir(), "acme", table),
            &cfg,
            &company,
            table,
            &window,
        );
    }
    pairs
}

#[test]
fn with_strict_order_dependent_tables_start_only_after_their_dependencies_finish() {
    for (pair, first_start, last_end) in dependency_run(true) {
        assert!(
            last_end <= first_start,
            "{pair}: started {first_start} before the dependency finished {last_end}"
        );
    }
}

#[test]
fn by_default_raw_pulls_of_dependent_tables_overlap() {
    let pairs = dependency_run(false);
    assert!(
        pairs
            .iter()
            .any(|(_, first_start, last_end)| first_start < last_end),
        "no dependent table started before its dependencies finished: {pairs:?}"
    );
}
