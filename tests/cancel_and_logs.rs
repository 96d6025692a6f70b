//! `cancel` and `logs` on a local workspace, and what cloud commands say when a setting is
//! missing.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;

const JOB: &str = "backfill_acme_connectwise_20250101";

#[test]
fn cancel_stops_a_local_job_once_and_says_why_not_twice() {
    let fx = Fixture::new();
    let out = fx.cli(
        None,
        &trigger_args(
            "acme",
            Some("tickets"),
            "2025-01-01",
            Some("2026-01-01"),
            &[],
        ),
    );
    assert_ok(&out);
    let out = fx.cli(None, &["cancel", JOB]);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("cancelled {JOB} (")),
        "{}",
        text(&out)
    );
    let detail = job_status(&fx, JOB);
    assert_eq!(detail["job"]["status"], "cancelled");
    assert!(
        detail["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "cancelled")
    );

    let again = fx.cli(None, &["cancel", JOB]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(5), "a refusal: {err}");
    assert!(
        err.contains(&format!("job {JOB} is already cancelled")),
        "{err}"
    );
    let unknown = fx.cli(None, &["cancel", "backfill_nobody"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("'backfill_nobody' not found"));
}

#[test]
fn logs_show_one_jobs_lines_by_chunk_and_level_and_follow_new_ones() {
    let fx = Fixture::new();
    fx.tune(6000, 200);
    let sandbox = fx.start_sandbox(&[]);
    let out = fx.cli(
        Some(&sandbox),
        &trigger_args(
            "acme",
            Some("tickets"),
            "2025-01-01",
            Some("2025-04-01"),
            &["--chunk-size-days", "30", "--run"],
        ),
    );
    assert_ok(&out);

    let all = fx.cli(None, &["logs", JOB]);
    assert_ok(&all);
    let all = String::from_utf8(all.stdout).unwrap();
    assert_eq!(all.matches("chunk succeeded").count(), 3, "{all}");
    assert!(all.contains("job finished"), "{all}");
    assert!(all.lines().all(|l| l.contains(JOB)), "{all}");

    let one = fx.cli(None, &["logs", JOB, "--chunk", "tickets#2"]);
    let one = String::from_utf8(one.stdout).unwrap();
    assert_eq!(one.lines().count(), 2, "started and succeeded:\n{one}");
    assert!(one.lines().all(|l| l.contains("seq=2")), "{one}");

    let json = fx.cli(None, &["logs", JOB, "--output", "json", "--level", "info"]);
    for line in String::from_utf8(json.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["fields"]["job_id"], JOB, "{v}");
        assert!(v["level"] == "INFO" || v["level"] == "WARN", "{v}");
    }

    let quiet = fx.cli(None, &["logs", JOB, "--level", "error"]);
    assert_ok(&quiet);
    assert!(quiet.stdout.is_empty());
    assert!(String::from_utf8_lossy(&quiet.stderr).contains("no log lines for job"));
    let bad = fx.cli(None, &["logs", JOB, "--chunk", "tickets"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--chunk: 'tickets' is not a chunk"));

    // --follow prints what is there, then lines written later.
    let mut follower = fx
        .command(
            None,
            &["logs", "backfill_acme_connectwise_20250401", "--follow"],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = fx.cli(
        Some(&sandbox),
        &trigger_args(
            "acme",
            Some("tickets"),
            "2025-04-01",
            Some("2025-05-01"),
            &["--run"],
        ),
    );
    assert_ok(&out);
    let (tx, rx) = std::sync::mpsc::sync_channel(16);
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("job finished")) {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("--follow showed no finished job: {seen:?}"),
        }
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
}

#[test]
fn cloud_commands_name_the_setting_they_lack() {
    let fx = Fixture::new();
    let mut cmd = fx.command(
        None,
        &trigger_args("acme", Some("tickets"), "2025-01-01", None, &["--cloud"]),
    );
    for var in [
        "AVESA_CLOUD_STATE_MACHINE_ARN",
        "AVESA_CLOUD_QUEUE_URL",
        "AVESA_CLOUD_BUCKET",
        "AVESA_CLOUD_TABLE_PREFIX",
        "AVESA_CLOUD_LOG_GROUP",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--table-prefix or AVESA_CLOUD_TABLE_PREFIX"),
        "{err}"
    );

    let mut cmd = fx.command(None, &["worker"]);
    cmd.env_remove("AVESA_CLOUD_QUEUE_URL");
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--queue-url or AVESA_CLOUD_QUEUE_URL"),
        "{err}"
    );
}
