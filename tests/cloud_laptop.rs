//! README, "The cloud on your laptop": its commands, as written, in a folder with nothing but
//! the repository's `scripts/` and a fresh home (no workspace, no configuration), with the
//! real binary on the `PATH`. The backfill must end `completed` with exactly the sandbox's
//! records in the bucket, and the worker's Embedded Metric Format records must be in the log
//! group (read back with FilterLogEvents). `cloud status` then finds every resource, and
//! `cloud down --emulators` removes them.
//!
//! Needs `AVESA_TEST_MOTO_URL` and `AVESA_TEST_DYNAMODB_URL` (`scripts/test` starts both).

mod common;
#[allow(dead_code)]
#[path = "cloud_e2e/harness.rs"]
mod harness;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use avesa_console::cloud::deploy;
use avesa_console::engine::metrics::JOB_METRICS;
use avesa_console::sandbox::TableCounts;
use avesa_console::store::JobStore;
use common::*;
use harness::*;
use serde_json::Value;

const JOB: &str = "backfill_acme_connectwise_20250101";

/// The fenced `sh` block of the README's laptop section.
fn readme_commands() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme
        .find("### The cloud on your laptop")
        .expect("README has the laptop section")..];
    let start = section.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = start + section[start..].find("```").unwrap();
    section[start..end].to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the README's background processes (the script's process group) when dropped.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0)])
            .status();
    }
}

/// The commands' shell: cwd with `scripts/`, a fresh HOME, the binary first on the PATH,
/// nothing of the host's AWS or avesa settings.
fn shell(dir: &Path, name: &str, sandbox_port: u16, script: &str) -> Command {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir.join("home"))
        .env("AVESA_DEPLOYMENT", name)
        .env("SANDBOX_PORT", sandbox_port.to_string())
        .stdin(Stdio::null());
    for var in ["AVESA_TEST_MOTO_URL", "AVESA_TEST_DYNAMODB_URL"] {
        if let Ok(v) = std::env::var(var) {
            cmd.env(var, v);
        }
    }
    cmd
}

#[test]
fn the_readme_laptop_commands_take_a_backfill_to_completed() {
    let Some(emulators) = emulators("the_readme_laptop_commands_take_a_backfill_to_completed")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/emulators"),
        dir.path().join("scripts/emulators"),
    )
    .unwrap();
    let name = format!("laptop{}", std::process::id());
    let mut cmd = shell(dir.path(), &name, free_port(), &readme_commands());
    let out_path = dir.path().join("readme.out");
    cmd.stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(dir.path().join("readme.err")).unwrap());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap();
    let _group = Group(child.id() as i32);
    let status = child.wait().unwrap();
    let said = || {
        format!(
            "stdout:\n{}\nstderr:\n{}\nworker.log:\n{}",
            std::fs::read_to_string(&out_path).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("readme.err")).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("worker.log")).unwrap_or_default()
        )
    };
    assert!(status.success(), "the README commands failed: {}", said());

    // The same deployment again (idempotent), to read what the commands made.
    let dep = Deployment::create_named(emulators, &name);
    let store = dep.store();
    let started = std::time::Instant::now();
    let job = loop {
        if let Some(job) = block(store.get_job(JOB)).unwrap()
            && job.status.is_terminal()
        {
            break job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the job did not end within 240 s: {}",
            said()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(job.status.as_str(), "completed", "{}", said());
    let fx = Fixture::new();
    let (landed, _) = dep.landed("acme", "tickets");
    let window = parse_window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z");
    let cfg = fx.sandbox_config(TableCounts::demo());
    assert_exact(&landed, &cfg, &company_of(&fx, "acme"), "tickets", &window);
    assert_eq!(job.records, landed.rows.len() as u64);

    assert_metrics_in_the_log_group(&dep);
    assert_cloud_status_and_down(&dep, dir.path(), &name);
}

/// The worker's EMF records, read back with FilterLogEvents.
fn assert_metrics_in_the_log_group(dep: &Deployment) {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&dep.aws);
    let records: Vec<Value> = poll(Duration::from_secs(30), "EMF records", || {
        let out = block(
            logs.filter_log_events()
                .log_group_name(&dep.log_group)
                .log_stream_name_prefix("metrics/")
                .send(),
        )
        .unwrap();
        let records: Vec<Value> = out
            .events()
            .iter()
            .filter_map(|e| serde_json::from_str(e.message()?).ok())
            .filter(|r: &Value| r["JobId"] == JOB && r.get("_aws").is_some())
            .collect();
        records
            .iter()
            .any(|r| r["event"] == "job_ended")
            .then_some(records)
    });
    let mut named = std::collections::BTreeSet::new();
    for r in &records {
        let cw = &r["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "AvesaBackfill", "{r}");
        for m in cw["Metrics"].as_array().unwrap() {
            let metric = m["Name"].as_str().unwrap();
            assert!(r[metric].is_number(), "{metric} has no value in {r}");
            named.insert(metric.to_string());
        }
    }
    // Every metric but ConsecutiveFailures, written only when an attempt fails.
    for metric in JOB_METRICS.iter().filter(|m| **m != "ConsecutiveFailures") {
        assert!(named.contains(*metric), "no {metric} record: {named:?}");
    }
    let ended = records.iter().find(|r| r["event"] == "job_ended").unwrap();
    assert_eq!(ended["CompletionPercent"], 100.0, "{ended}");
    let requests: f64 = records
        .iter()
        .filter_map(|r| r["ApiRequests"].as_f64())
        .sum();
    assert!(
        requests >= 3.0,
        "one request per chunk at least: {requests}"
    );
}

/// `cloud status` finds every resource; after `cloud down --emulators` it names each missing
/// one and fails.
fn assert_cloud_status_and_down(dep: &Deployment, dir: &Path, name: &str) {
    let status =
        "eval \"$(avesa-console cloud up --emulators)\" >/dev/null; avesa-console cloud status";
    let out = shell(dir, name, 1, status).output().unwrap();
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let resources = text
        .lines()
        .filter(|l| l.starts_with("ok ") && !l.contains(" permission "));
    assert_eq!(resources.count(), 6, "{text}");
    assert!(!text.contains("missing "), "{text}");

    let script = "eval \"$(avesa-console cloud up --emulators)\" >/dev/null; \
                  avesa-console cloud down --emulators; avesa-console cloud status";
    let out = shell(dir, name, 1, script).output().unwrap();
    assert!(!out.status.success(), "{}", text_of(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let names = deploy::Names::of(name).unwrap();
    for what in [
        format!("queue {}", dep.queue_url),
        format!("log group {}", names.log_group),
        format!("DynamoDB table {}_jobs", names.table_prefix),
        format!("S3 bucket {}", names.bucket),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(&what))
            .unwrap_or_else(|| panic!("no line for {what}: {text}"));
        assert!(line.starts_with("missing "), "{line}");
        assert!(line.contains("AVESA_CLOUD_"), "names the setting: {line}");
    }
}

fn text_of(out: &std::process::Output) -> String {
    text(out)
}

#[test]
fn a_missing_table_is_one_line_naming_it_and_the_fix() {
    let Some(_) = emulators("a_missing_table_is_one_line_naming_it_and_the_fix") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = "eval \"$(avesa-console cloud up --emulators 2>/dev/null)\"; \
                  export AVESA_CLOUD_TABLE_PREFIX=nosuch_prefix; \
                  avesa-console --log-level warn trigger --cloud --tenant-id acme \
                  --service connectwise --table tickets --start-date 2025-01-01 \
                  --end-date 2025-02-01";
    let name = format!("missing{}", std::process::id());
    let out = shell(dir.path(), &name, free_port(), script)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("nosuch_prefix_jobs"))
        .unwrap_or_else(|| panic!("the table is not named: {err}"));
    assert!(line.contains("AVESA_CLOUD_TABLE_PREFIX"), "{line}");
    assert!(line.contains("cloud up --emulators"), "{line}");
    assert!(err.len() < 600, "one line, not the SDK's answer: {err}");
}
