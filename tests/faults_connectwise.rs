//! ConnectWise under injected faults: rate-limit storms, server errors, slow and cut
//! bodies, records edited mid-read, and a permanent 401.

mod common;

use std::collections::BTreeSet;

use avesa_console::sandbox::{DeletedRecord, MovedRecord, TableCounts, expected_records};
use common::*;

fn write_faults(fx: &Fixture, json: &str) -> String {
    let path = fx.dir.path().join("faults.json");
    std::fs::write(&path, json).unwrap();
    path.to_string_lossy().into_owned()
}

fn run_tickets(
    fx: &Fixture,
    sandbox: &SandboxProc,
    start: &str,
    end: &str,
) -> std::process::Output {
    fx.cli(
        Some(sandbox),
        &trigger_args(
            "acme",
            Some("tickets"),
            start,
            Some(end),
            &["--chunk-size-days", "15", "--run"],
        ),
    )
}

/// acme's tickets of the first quarter of 2025 read with pages of 20 under `faults` (JSON).
fn run_first_quarter_under(fx: &Fixture, faults: &str) -> SandboxProc {
    fx.tune(6000, 20);
    let faults = write_faults(fx, faults);
    let sandbox = fx.start_sandbox(&["--faults", &faults]);
    let out = run_tickets(fx, &sandbox, "2025-01-01", "2025-04-01");
    assert_ok(&out);
    sandbox
}

/// `GET /_sandbox/connectwise/{what}` as a list.
fn sandbox_list<T: serde::de::DeserializeOwned>(sandbox: &SandboxProc, what: &str) -> Vec<T> {
    let url = format!("{}/_sandbox/connectwise/{what}", sandbox.url);
    serde_json::from_str(&common::reqwest::blocking_get(&url)).unwrap()
}

fn first_quarter() -> avesa_console::domain::Window {
    parse_window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z")
}

/// The ids of acme's tickets of the first quarter of 2025 as generated.
fn first_quarter_ids(fx: &Fixture) -> BTreeSet<i64> {
    let cfg = fx.sandbox_config(TableCounts::demo());
    expected_records(&cfg, &company_of(fx, "acme"), "tickets", &first_quarter())
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// acme's tickets from 2025-01-01 to `end` landed exactly, and the job completed.
fn assert_exact_tickets_and_completed(fx: &Fixture, end: &str) {
    let landed = Landed::read(&fx.data_dir(), "acme", "tickets");
    let window = parse_window("2025-01-01T00:00:00Z", end);
    assert_exact(
        &landed,
        &fx.sandbox_config(TableCounts::demo()),
        &company_of(fx, "acme"),
        "tickets",
        &window,
    );
    let detail = job_status(fx, "backfill_acme_connectwise_20250101");
    assert_eq!(detail["job"]["status"], "completed", "{detail}");
}

#[test]
fn a_429_storm_5xx_slow_and_truncated_answers_still_land_the_exact_dataset() {
    let fx = Fixture::new();
    fx.tune(6000, 10);
    // At 30 % failures, three in a row (two retries) happen about once in 37 requests; eight
    // retries make a request fail for good about once in 50,000, so the run is not flaky.
    fx.edit("backfill_config.json", |v| {
        v["default_settings"]["request_retries"] = 8.into();
    });
    let faults = write_faults(
        &fx,
        r#"{"faults":[
            {"path":"service/tickets","status":429,"times":4,"retry_after_seconds":1,"message":"Too many requests"},
            {"path":"service/tickets","kind":"truncate","times":3},
            {"path":"service/tickets","kind":"slow","delay_ms":300,"times":3},
            {"path":"*","status":503,"probability":0.3,"message":"Service Unavailable"}
        ]}"#,
    );
    let sandbox = fx.start_sandbox(&["--faults", &faults]);
    let out = run_tickets(&fx, &sandbox, "2025-01-01", "2025-04-01");
    assert_ok(&out);
    let stats = sandbox.stats();
    // 4 rate-limit answers plus ~30 % of ~60 requests answered 503.
    assert!(
        stats["faults_injected"].as_u64().unwrap() >= 10,
        "too few faults fired to prove anything: {stats}"
    );
    // Each cut body was asked for again.
    assert!(stats["repeated_pages"].as_u64().unwrap() >= 3, "{stats}");
    assert_exact_tickets_and_completed(&fx, "2025-04-01T00:00:00Z");
}

#[test]
fn records_edited_while_their_window_is_read_are_never_skipped_when_they_stay() {
    let fx = Fixture::new();
    let sandbox = run_first_quarter_under(
        &fx,
        r#"{"faults":[{"path":"service/tickets","kind":"touch_records","records":4,"times":6}]}"#,
    );
    let moved: Vec<MovedRecord> = sandbox_list(&sandbox, "moved");
    assert!(
        moved.len() >= 12,
        "only {} records moved: the test proves little",
        moved.len()
    );
    let window = parse_window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z");
    let moved_ids: BTreeSet<i64> = moved.iter().map(|m| m.id).collect();
    let company = company_of(&fx, "acme");
    let expected: Vec<(i64, chrono::DateTime<chrono::Utc>)> = expected_records(
        &fx.sandbox_config(TableCounts::demo()),
        &company,
        "tickets",
        &window,
    )
    .into_iter()
    .filter(|(id, _)| !moved_ids.contains(id))
    .collect();
    let landed = Landed::read(&fx.data_dir(), "acme", "tickets");
    assert_eq!(landed.duplicates(), Vec::<i64>::new());
    let landed_ids: BTreeSet<i64> = landed.rows.iter().map(|(id, _)| *id).collect();
    let skipped: Vec<_> = expected
        .iter()
        .filter(|(id, _)| !landed_ids.contains(id))
        .collect();
    assert!(
        skipped.is_empty(),
        "skipped records that stayed: {skipped:?}"
    );
    // Anything landed beyond the expected set is a moved record read before it moved.
    let expected_ids: BTreeSet<i64> = expected.iter().map(|(id, _)| *id).collect();
    assert!(
        landed_ids
            .difference(&expected_ids)
            .all(|id| moved_ids.contains(id))
    );
}

#[test]
fn a_permanent_401_fails_the_table_once_naming_tenant_service_and_status() {
    let fx = Fixture::new();
    fx.tune(6000, 100);
    let faults = write_faults(
        &fx,
        r#"{"faults":[{"path":"service/tickets","window_start":"2025-01-16T00:00:00Z","status":401,"message":"UserNotAuthenticated"}]}"#,
    );
    let sandbox = fx.start_sandbox(&["--faults", &faults]);
    let out = run_tickets(&fx, &sandbox, "2025-01-01", "2025-03-01");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let detail = job_status(&fx, "backfill_acme_connectwise_20250101");
    let chunks = detail["chunks"].as_array().unwrap();
    let failed: Vec<_> = chunks.iter().filter(|c| c["status"] == "failed").collect();
    assert!(failed.iter().any(|c| c["key"]["seq"] == 1), "{detail}");
    for c in &failed {
        assert!(
            c["attempts"].as_u64().unwrap() <= 1,
            "a 401 is not worth a second attempt: {c}"
        );
        let err = c["last_error"].as_str().unwrap();
        for needle in [
            "table failed",
            "acme",
            "connectwise",
            "HTTP 401",
            "UserNotAuthenticated",
        ] {
            assert!(err.contains(needle), "{needle:?} missing from {err:?}");
        }
    }
    // One request reached the failing window, and none asked after it: the table failed once.
    assert_eq!(sandbox.stats()["faults_injected"], 1);
    assert_eq!(
        chunks.iter().filter(|c| c["status"] == "succeeded").count(),
        chunks.len() - failed.len()
    );
}

#[test]
fn pages_without_a_link_header_end_or_go_on_by_the_last_id_and_land_the_exact_dataset() {
    // `last-omitted`: the last (short) page has no Link; `omitted`: no page has one, so every
    // full page goes on from its last id and the window ends on a short or empty page.
    for mode in ["last-omitted", "omitted"] {
        let fx = Fixture::new();
        fx.tune(6000, 25);
        let sandbox = fx.start_sandbox(&["--connectwise-link", mode]);
        let out = run_tickets(&fx, &sandbox, "2025-01-01", "2025-03-01");
        assert_ok(&out);
        assert_exact_tickets_and_completed(&fx, "2025-03-01T00:00:00Z");
    }
}

#[test]
fn records_deleted_while_their_window_is_read_neither_fail_the_run_nor_hide_the_others() {
    let fx = Fixture::new();
    // Deletions before the first page of a window and between its pages.
    let sandbox = run_first_quarter_under(
        &fx,
        r#"{"faults":[{"path":"service/tickets","kind":"delete_records","records":3,"times":8}]}"#,
    );
    let deleted: Vec<DeletedRecord> = sandbox_list(&sandbox, "deleted");
    assert!(deleted.len() >= 20, "only {} deleted", deleted.len());
    let deleted_ids: BTreeSet<i64> = deleted.iter().map(|d| d.id).collect();
    assert_eq!(deleted_ids.len(), deleted.len(), "a record deleted twice");
    // The source's records as they are now.
    let now: BTreeSet<i64> = first_quarter_ids(&fx)
        .difference(&deleted_ids)
        .copied()
        .collect();
    let landed = Landed::read(&fx.data_dir(), "acme", "tickets");
    assert_eq!(landed.duplicates(), Vec::<i64>::new());
    let landed_ids: BTreeSet<i64> = landed.rows.iter().map(|(id, _)| *id).collect();
    let skipped: Vec<_> = now.difference(&landed_ids).collect();
    assert!(skipped.is_empty(), "skipped: {skipped:?}");
    // Anything else landed was read before it was deleted.
    let extra: Vec<_> = landed_ids.difference(&now).collect();
    assert!(extra.iter().all(|id| deleted_ids.contains(id)), "{extra:?}");
    assert!(
        !extra.is_empty() && extra.len() < deleted.len(),
        "deletions both before and after their records were read: {} of {}",
        extra.len(),
        deleted.len()
    );
}

#[test]
fn records_moved_later_inside_the_window_being_read_are_all_landed_once() {
    let fx = Fixture::new();
    let sandbox = run_first_quarter_under(
        &fx,
        r#"{"faults":[{"path":"service/tickets","kind":"touch_records","inside_window":true,"records":4,"times":6}]}"#,
    );
    let moved: Vec<MovedRecord> = sandbox_list(&sandbox, "moved");
    assert!(moved.len() >= 12, "only {} moved", moved.len());
    let window = first_quarter();
    assert!(moved.iter().all(|m| m.to > m.from && window.contains(m.to)));
    // Paged by id, a record moving inside its window keeps its place: the ids land exactly
    // once each, whichever version was read.
    let landed = Landed::read(&fx.data_dir(), "acme", "tickets");
    assert_eq!(landed.duplicates(), Vec::<i64>::new());
    let landed_ids: BTreeSet<i64> = landed.rows.iter().map(|(id, _)| *id).collect();
    assert_eq!(landed_ids, first_quarter_ids(&fx));
}
