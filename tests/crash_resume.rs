//! The real binary is killed with SIGKILL at several points of a multi-chunk job; `resume`
//! then completes it, and the landed data is exactly the source: no gap, no duplicate.

mod common;

use std::time::Duration;

use avesa_console::sandbox::TableCounts;
use common::*;

#[test]
fn sigkill_at_several_points_then_resume_lands_exact_data() {
    let fx = Fixture::new();
    // 50 records a page at 1200 requests/min: ~105 calls, long enough to kill mid-chunk.
    fx.tune(1200, 50);
    let sandbox = fx.start_sandbox(&[]);
    trigger_two_years_of_tickets(&fx, &sandbox);
    let job_id = TWO_YEARS_OF_TICKETS;

    let mut kills = 0;
    for (i, at_requests) in [12u64, 37, 64, 85].into_iter().enumerate() {
        let args: Vec<&str> = if i == 0 {
            vec!["run", "--job-id", job_id]
        } else {
            vec!["resume", job_id]
        };
        let mut child = fx.command(Some(&sandbox), &args).spawn().unwrap();
        wait_for(
            Duration::from_secs(60),
            "the run to reach its kill point",
            || (sandbox.stats()["requests"].as_u64().unwrap() >= at_requests).then_some(()),
        );
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "the run finished before it could be killed"
        );
        kills += 1;
        let detail = job_status(&fx, job_id);
        assert_ne!(
            detail["job"]["status"], "completed",
            "killed too late to prove anything"
        );
    }

    let out = fx.cli(Some(&sandbox), &["resume", job_id]);
    assert_ok(&out);
    let detail = job_status(&fx, job_id);
    assert_eq!(detail["job"]["status"], "completed", "{detail}");
    // A crash is not a failed attempt: every chunk needed exactly one.
    for c in detail["chunks"].as_array().unwrap() {
        assert_eq!(c["attempts"], 1, "{c}");
    }

    let window = parse_window("2024-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let cfg = fx.sandbox_config(TableCounts::demo());
    let landed = Landed::read(&fx.data_dir(), "acme", "tickets");
    assert_exact(&landed, &cfg, &company_of(&fx, "acme"), "tickets", &window);
    assert_eq!(
        detail["job"]["records"].as_u64().unwrap(),
        landed.rows.len() as u64
    );

    // Stored pages are never fetched again; at most the page being written and the one
    // read ahead are lost with each killed process.
    let repeated = sandbox.stats()["repeated_pages"].as_u64().unwrap();
    assert!(
        repeated <= 2 * kills,
        "{repeated} pages fetched again after {kills} kills"
    );
}

/// Several windows of one table in flight (every answer takes 300 ms, so the in-flight
/// controller runs up to 8 at 1200/min) when the process is killed: the resumed job lands
/// exactly the source, each window in one attempt, and every call beyond the minimum is a page
/// that was in flight or not yet checkpointed when its process died.
#[test]
fn sigkill_with_several_windows_in_flight_then_resume_lands_exact_data() {
    let fx = Fixture::new();
    fx.tune(1200, 50);
    let faults = fx.dir.path().join("faults.json");
    std::fs::write(
        &faults,
        r#"{"faults":[{"path":"service/tickets","kind":"slow","delay_ms":300}]}"#,
    )
    .unwrap();
    let sandbox = fx.start_sandbox(&["--faults", faults.to_str().unwrap()]);
    let trigger = fx.cli(
        Some(&sandbox),
        &trigger_args(
            "acme",
            Some("tickets"),
            "2024-01-01",
            Some("2026-01-01"),
            &["--chunk-size-days", "30"],
        ),
    );
    assert_ok(&trigger);
    let job_id = "backfill_acme_connectwise_20240101";

    let mut kills = 0u64;
    let mut most_in_flight = 0u64;
    for (i, at_requests) in [15u64, 45].into_iter().enumerate() {
        let args: Vec<&str> = if i == 0 {
            vec!["run", "--job-id", job_id]
        } else {
            vec!["resume", job_id]
        };
        let mut child = fx.command(Some(&sandbox), &args).spawn().unwrap();
        let me = format!(":{}:", child.id());
        let in_flight = wait_for(
            Duration::from_secs(60),
            "several windows in flight past the kill point",
            || {
                if sandbox.stats()["requests"].as_u64().unwrap() < at_requests {
                    return None;
                }
                let detail = job_status(&fx, job_id);
                let held = detail["chunks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|c| {
                        c["status"] == "running"
                            && c["lease_owner"].as_str().is_some_and(|o| o.contains(&me))
                    })
                    .count() as u64;
                (held >= 3).then_some(held)
            },
        );
        child.kill().unwrap(); // SIGKILL
        assert!(!child.wait().unwrap().success(), "finished before the kill");
        kills += 1;
        most_in_flight = most_in_flight.max(in_flight);
        let detail = job_status(&fx, job_id);
        assert_ne!(detail["job"]["status"], "completed", "killed too late");
    }

    let out = fx.cli(Some(&sandbox), &["resume", job_id]);
    assert_ok(&out);
    let detail = job_status(&fx, job_id);
    assert_eq!(detail["job"]["status"], "completed", "{detail}");
    let chunks = detail["chunks"].as_array().unwrap();
    for c in chunks {
        assert_eq!(c["attempts"], 1, "a crash is not a failed attempt: {c}");
    }
    let window = parse_window("2024-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let cfg = fx.sandbox_config(TableCounts::demo());
    let landed = Landed::read(&fx.data_dir(), "acme", "tickets");
    assert_exact(&landed, &cfg, &company_of(&fx, "acme"), "tickets", &window);
    assert_eq!(
        detail["job"]["records"].as_u64().unwrap(),
        landed.rows.len() as u64
    );

    // The minimum is one call per stored page; a killed process loses at most the page it is
    // writing and the one read ahead, per window in flight.
    let minimum: u64 = chunks
        .iter()
        .map(|c| c["checkpoint"]["pages"].as_u64().unwrap())
        .sum();
    let stats = sandbox.stats();
    let (calls, repeated) = (
        stats["requests"].as_u64().unwrap(),
        stats["repeated_pages"].as_u64().unwrap(),
    );
    eprintln!(
        "{kills} kills with up to {most_in_flight} windows in flight: {calls} calls for \
         {minimum} pages ({:.3}x), {repeated} pages fetched again",
        calls as f64 / minimum as f64
    );
    assert!(
        repeated <= 2 * 8 * kills,
        "{repeated} pages fetched again after {kills} kills"
    );
    assert!(
        calls <= minimum + repeated,
        "{calls} calls for {minimum} pages and {repeated} refetched: calls were wasted"
    );
}
