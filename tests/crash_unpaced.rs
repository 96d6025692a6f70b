//! SIGKILL at random moments of an unpaced backfill (requests faster than
//! `checkpoint_every_page_below`, so pages are buffered into parts written every 2 s or 8 MB,
//! the path the paced crash tests never kill), each kill checked to have landed mid-chunk;
//! then `resume` lands exactly the source. And a kill during the hand-off (markers, canonical
//! transform) after the last chunk: the next `run` finishes it.

mod common;

use std::time::Duration;

use avesa_console::sandbox::TableCounts;
use common::*;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// Chunks that a killed process (`pid`) held when it died, and whether any of them had
/// stored something (a checkpoint with records, or a part past it on disk).
fn held_by(detail: &Value, pid: u32) -> (usize, bool) {
    let me = format!(":{pid}:");
    let held: Vec<&Value> = detail["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["status"] == "running" && c["lease_owner"].as_str().is_some_and(|o| o.contains(&me))
        })
        .collect();
    let stored = held
        .iter()
        .any(|c| c["checkpoint"]["records"].as_u64().unwrap_or(0) > 0);
    (held.len(), stored)
}

#[test]
fn sigkill_at_random_moments_of_an_unpaced_backfill_then_resume_lands_exact_data() {
    let fx = Fixture::new();
    // 6,000/min: 10 ms between requests, below the every-page checkpoint threshold; 200 ms
    // answers of 5 records make each 30-day window take seconds, so parts are cut by time
    // (every 2 s), and the job about 20 s of work: three kills 3.5-5 s into each run come
    // after a part of a running window was stored and stay inside the job.
    fx.tune(6000, 5);
    let sandbox = fx.start_sandbox(&["--latency-ms", "200"]);
    trigger_two_years_of_tickets(&fx, &sandbox);
    let job_id = TWO_YEARS_OF_TICKETS;
    let seed: u64 = rand::rng().random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kills_after_a_part = 0;
    for i in 0..3 {
        let args: Vec<&str> = if i == 0 {
            vec!["run", "--job-id", job_id]
        } else {
            vec!["resume", job_id]
        };
        let mut child = fx.command(Some(&sandbox), &args).spawn().unwrap();
        let pid = child.id();
        std::thread::sleep(Duration::from_millis(rng.random_range(3500..5000)));
        child.kill().unwrap(); // SIGKILL
        assert!(
            !child.wait().unwrap().success(),
            "seed {seed}: finished before kill {i}"
        );
        let detail = job_status(&fx, job_id);
        let (held, stored) = held_by(&detail, pid);
        assert!(
            held > 0,
            "seed {seed}: kill {i} landed between chunks, not mid-chunk: {detail}"
        );
        kills_after_a_part += usize::from(stored);
    }
    assert!(
        kills_after_a_part > 0,
        "seed {seed}: no kill came after a buffered part was stored"
    );
    let out = fx.cli(Some(&sandbox), &["resume", job_id]);
    assert_ok(&out);
    let detail = job_status(&fx, job_id);
    assert_eq!(detail["job"]["status"], "completed", "{detail}");
    for c in detail["chunks"].as_array().unwrap() {
        assert_eq!(
            c["attempts"], 1,
            "seed {seed}: a crash is not a failed attempt: {c}"
        );
    }
    let window = parse_window("2024-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let cfg = fx.sandbox_config(TableCounts::demo());
    let landed = Landed::read(&fx.data_dir(), "acme", "tickets");
    assert_exact(&landed, &cfg, &company_of(&fx, "acme"), "tickets", &window);
}

#[test]
fn sigkill_during_the_hand_off_then_run_finishes_it() {
    let fx = Fixture::new();
    fx.tune(6000, 100);
    let sandbox = fx.start_sandbox(&[]);
    let out = fx.cli(
        Some(&sandbox),
        &trigger_args("acme", None, "2024-01-01", Some("2026-01-01"), &[]),
    );
    assert_ok(&out);
    let job_id = TWO_YEARS_OF_TICKETS;
    let log = fx.workspace().join("logs/engine.jsonl");
    let mut child = fx
        .command(Some(&sandbox), &["run", "--job-id", job_id])
        .spawn()
        .unwrap();
    // The first marker moved: the hand-off has begun, the canonical transform is to come.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("sync marker moved")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the hand-off never began"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    assert!(!child.wait().unwrap().success(), "finished before the kill");
    let status = fx.cli(None, &["status", "--output", "json"]);
    assert_ok(&status);
    let v: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["jobs"][0]["status"], "completed", "{v}");
    assert_eq!(
        v["jobs"][0]["handoff_due"], true,
        "killed after the hand-off had finished: proves nothing: {v}"
    );

    let out = fx.cli(Some(&sandbox), &["run"]);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{job_id}: hand-off done")),
        "{}",
        text(&out)
    );
    let v: Value =
        serde_json::from_slice(&fx.cli(None, &["status", "--output", "json"]).stdout).unwrap();
    assert_eq!(v["jobs"][0]["handoff_due"], false, "{v}");
    assert_eq!(
        v["markers"].as_array().unwrap().len(),
        4,
        "every table's marker: {v}"
    );
    for table in ["tickets", "companies", "contacts", "time_entries"] {
        let files = canonical_files(&fx.data_dir(), "acme", table);
        assert!(!files.is_empty(), "no canonical {table}");
        assert!(files.iter().all(|f| f.is_file()), "{files:?}");
    }
}

#[test]
fn sigkill_during_a_sync_then_resume_lands_every_edit_once() {
    use avesa_console::sandbox::MovedRecord;
    let fx = Fixture::new();
    fx.tune(6000, 10);
    let sandbox = fx.start_sandbox(&["--latency-ms", "100"]);
    let out = fx.cli(
        Some(&sandbox),
        &trigger_args(
            "acme",
            Some("tickets"),
            "2025-12-01",
            Some("2026-01-01"),
            &["--run"],
        ),
    );
    assert_ok(&out);
    // 600 tickets edited after the backfill's end: 60 pages of the sync at 100 ms each.
    let url = format!(
        "{}/_sandbox/connectwise/edit?company_id={}&table=tickets&records=600&at=2026-02-01T00:00:00Z",
        sandbox.url,
        company_of(&fx, "acme")
    );
    let edited: Vec<MovedRecord> =
        serde_json::from_str(&common::reqwest::blocking_post(&url)).unwrap();
    assert_eq!(edited.len(), 600);

    let sync = ["sync", "--tenant-id", "acme", "--service", "connectwise"];
    let mut child = fx.command(Some(&sandbox), &sync).spawn().unwrap();
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().unwrap(); // SIGKILL
    assert!(
        !child.wait().unwrap().success(),
        "the sync finished before the kill"
    );
    let status: Value =
        serde_json::from_slice(&fx.cli(None, &["status", "--output", "json"]).stdout).unwrap();
    let sync_job = status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|j| j["job_id"].as_str().filter(|id| id.starts_with("sync_")))
        .unwrap_or_else(|| panic!("no sync job: {status}"))
        .to_string();
    let (held, _) = held_by(&job_status(&fx, &sync_job), pid);
    assert!(held > 0, "the kill landed between chunks of the sync");

    let out = fx.cli(Some(&sandbox), &["resume", &sync_job]);
    assert_ok(&out);
    assert_eq!(job_status(&fx, &sync_job)["job"]["status"], "completed");
    let landed = Landed::read(&fx.data_dir(), "acme", "tickets");
    let mut versions = std::collections::BTreeMap::new();
    for row in &landed.rows {
        *versions.entry(*row).or_insert(0) += 1;
    }
    let twice: Vec<_> = versions.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "versions landed twice: {twice:?}");
    let missing: Vec<_> = edited
        .iter()
        .filter(|e| !versions.contains_key(&(e.id, e.to)))
        .take(5)
        .map(|e| (e.id, e.to))
        .collect();
    assert!(
        missing.is_empty(),
        "edits the sync did not land: {missing:?}"
    );
}
