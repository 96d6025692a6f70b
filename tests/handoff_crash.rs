//! The hand-off after a job's last chunk (markers, canonical transform) survives a crash and
//! a failure: `run` and `resume` finish it, a failed one exits non-zero with an alert, and
//! `cleanup` never removes a job whose hand-off is still due.

mod common;

use common::*;
use serde_json::Value;

const JOB: &str = "backfill_acme_connectwise_20251001";

/// The canonical tickets' manifest (`transform::layout`).
fn canonical_file(fx: &Fixture) -> std::path::PathBuf {
    fx.data_dir()
        .join("acme/canonical/tickets/connectwise/_manifest.json")
}

fn status_json(fx: &Fixture) -> Value {
    let out = fx.cli(None, &["status", "--output", "json"]);
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What a crash between the last chunk and the hand-off leaves: the job completed in the
/// chunk store, its hand-off not done, no marker, no canonical output.
fn strand_the_handoff(fx: &Fixture) {
    let db = rusqlite::Connection::open(fx.workspace().join("state.db")).unwrap();
    db.execute_batch(
        "UPDATE job_meta SET finalized_at = NULL; DELETE FROM sync_markers; \
         DELETE FROM handoff_claims;",
    )
    .unwrap();
    std::fs::remove_file(canonical_file(fx)).unwrap();
}

fn trigger(fx: &Fixture, sandbox: &SandboxProc, extra: &[&str]) -> std::process::Output {
    fx.cli(
        Some(sandbox),
        &trigger_args(
            "acme",
            Some("tickets"),
            "2025-10-01",
            Some("2025-11-01"),
            extra,
        ),
    )
}

#[test]
fn a_stranded_handoff_is_kept_by_cleanup_and_finished_by_the_next_run() {
    let fx = Fixture::new();
    fx.tune(6000, 100);
    let sandbox = fx.start_sandbox(&[]);
    assert_ok(&trigger(&fx, &sandbox, &["--run"]));
    assert!(canonical_file(&fx).exists());
    strand_the_handoff(&fx);
    let v = status_json(&fx);
    assert_eq!(v["markers"], serde_json::json!([]));
    assert_eq!(v["jobs"][0]["handoff_due"], true, "{v}");
    let out = fx.cli(None, &["status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("{JOB}: completed, but its hand-off")),
        "{}",
        text(&out)
    );

    let out = fx.cli(Some(&sandbox), &["cleanup", "--older-than-days", "0"]);
    assert_ok(&out);
    assert_eq!(
        status_json(&fx)["jobs"].as_array().unwrap().len(),
        1,
        "cleanup removed a job whose hand-off is due: {}",
        text(&out)
    );

    let out = fx.cli(Some(&sandbox), &["run"]);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{JOB}: hand-off done")),
        "{}",
        text(&out)
    );
    assert!(canonical_file(&fx).exists(), "canonical tickets rebuilt");
    let markers = status_json(&fx)["markers"].clone();
    assert_eq!(markers.as_array().unwrap().len(), 1, "{markers}");
    assert_eq!(markers[0]["set_by_job"], JOB, "{markers}");
    assert_eq!(status_json(&fx)["jobs"][0]["handoff_due"], false);

    // Done once: nothing is left for the next run, and cleanup may now remove the job.
    let again = fx.cli(Some(&sandbox), &["run"]);
    assert_ok(&again);
    assert!(String::from_utf8_lossy(&again.stdout).contains("no pending jobs"));
    assert_ok(&fx.cli(Some(&sandbox), &["cleanup", "--older-than-days", "0"]));
    assert_eq!(status_json(&fx)["jobs"], serde_json::json!([]));
}

#[test]
fn a_failed_handoff_exits_non_zero_with_an_alert_and_resume_does_it_again() {
    let fx = Fixture::new();
    fx.tune(6000, 100);
    let sandbox = fx.start_sandbox(&[]);
    // A directory where the canonical manifest goes: the transform cannot write it.
    std::fs::create_dir_all(canonical_file(&fx)).unwrap();
    let out = trigger(&fx, &sandbox, &["--run"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("{JOB}: completed")), "{stdout}");
    assert!(stdout.contains("hand-off FAILED"), "{stdout}");
    assert!(
        stdout.contains(&format!("avesa-console resume {JOB}")),
        "{stdout}"
    );
    let alerts = fx.cli(None, &["alerts", "--output", "json"]);
    assert_ok(&alerts);
    let a: Value = serde_json::from_slice(&alerts.stdout).unwrap();
    assert!(
        a["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["kind"] == "handoff_failed" && x["job_id"] == JOB),
        "{a}"
    );

    std::fs::remove_dir(canonical_file(&fx)).unwrap();
    let out = fx.cli(Some(&sandbox), &["resume", JOB]);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{JOB}: hand-off done")),
        "{}",
        text(&out)
    );
    assert!(canonical_file(&fx).is_file());
    // Now it is done: resume has nothing left to do.
    let out = fx.cli(Some(&sandbox), &["resume", JOB]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(text(&out).contains("nothing to resume"), "{}", text(&out));
}
