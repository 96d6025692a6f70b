//! The cloud path end to end on loopback: moto (Step Functions running
//! `infrastructure/backfill.asl.json`, SQS, S3, CloudWatch Logs), DynamoDB Local, the sandbox
//! and two `worker` processes of the real binary. `trigger --cloud` → the execution succeeds
//! → every source record is in S3 exactly once → the job is completed in DynamoDB → its logs
//! read back through the CLI. Then the same with a worker killed mid-chunk.
//!
//! Needs `AVESA_TEST_MOTO_URL` and `AVESA_TEST_DYNAMODB_URL` (`scripts/test` starts both).

mod common;
#[path = "cloud_e2e/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use avesa_console::cloud::message::EVENTS_PER_LOOP;
use avesa_console::domain::ChunkStatus;
use avesa_console::sandbox::TableCounts;
use avesa_console::store::{JobStore, LifecycleStore};
use common::*;
use harness::*;
use serde_json::Value;

const JOB: &str = "backfill_acme_connectwise_20250101";

fn trigger(dep: &Deployment, fx: &Fixture, sandbox: &SandboxProc, extra: &[&str]) -> Value {
    trigger_chunks_of(dep, fx, sandbox, "30", extra)
}

/// `trigger` with chunks of `days` days.
fn trigger_chunks_of(
    dep: &Deployment,
    fx: &Fixture,
    sandbox: &SandboxProc,
    days: &str,
    extra: &[&str],
) -> Value {
    let mut args = trigger_args(
        "acme",
        Some("tickets"),
        "2025-01-01",
        Some("2026-01-01"),
        &["--chunk-size-days", days, "--cloud", "--output", "json"],
    );
    args.extend_from_slice(extra);
    let out = dep.cli(fx, Some(sandbox), &args);
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn cloud_status(dep: &Deployment, fx: &Fixture) -> Value {
    let out = dep.cli(
        fx,
        None,
        &["status", "--cloud", "--job-id", JOB, "--output", "json"],
    );
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until the job's newest execution has ended; returns the final status JSON.
fn wait_for_execution(dep: &Deployment, fx: &Fixture, timeout: Duration) -> Value {
    poll(timeout, "the execution to end", || {
        let s = cloud_status(dep, fx);
        (s["execution"]["status"] != "RUNNING").then_some(s)
    })
}

fn logs(dep: &Deployment, fx: &Fixture, extra: &[&str]) -> String {
    let mut args = vec!["logs", JOB, "--cloud"];
    args.extend_from_slice(extra);
    let out = dep.cli(fx, None, &args);
    assert_ok(&out);
    String::from_utf8(out.stdout).unwrap()
}

fn assert_exact_in_s3(dep: &Deployment, fx: &Fixture, status: &Value) {
    let (landed, keys) = dep.landed("acme", "tickets");
    assert!(
        keys.iter()
            .all(|k| k.starts_with("acme/raw/connectwise/tickets/") && k.ends_with(".parquet")),
        "{keys:?}"
    );
    let window = parse_window("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let cfg = fx.sandbox_config(TableCounts::demo());
    assert_exact(&landed, &cfg, &company_of(fx, "acme"), "tickets", &window);
    assert_eq!(
        status["job"]["records"].as_u64().unwrap(),
        landed.rows.len() as u64,
        "the job's record count is what landed"
    );
}

#[test]
fn cloud_backfill_lands_every_record_once_and_reads_its_logs() {
    let Some(emulators) = emulators("cloud_backfill_lands_every_record_once") else {
        return;
    };
    let started = Instant::now();
    let fx = Fixture::new();
    fx.tune(1200, 50);
    let sandbox = fx.start_sandbox(&[]);
    let dep = Deployment::create(emulators, "a");
    let _w1 = dep.worker(&fx, &sandbox, "w1");
    let _w2 = dep.worker(&fx, &sandbox, "w2");

    // 13 chunks, 4 loops per execution: the job continues as new executions twice or more.
    let first = trigger(
        &dep,
        &fx,
        &sandbox,
        &["--heartbeat-seconds", "5", "--max-iterations", "4"],
    );
    assert_eq!(first["created"], true, "{first}");
    let total = first["job"]["total_chunks"].as_u64().unwrap();
    assert_eq!(total, 13);
    let again = trigger(&dep, &fx, &sandbox, &["--heartbeat-seconds", "5"]);
    assert_eq!(again["created"], false, "{again}");
    assert_eq!(again["start"]["start"], "already_running", "{again}");

    let status = wait_for_execution(&dep, &fx, Duration::from_secs(240));
    let exec = &status["execution"];
    assert_eq!(exec["status"], "SUCCEEDED", "{status}");
    assert!(
        exec["continuation"].as_u64().unwrap() >= 3,
        "13 chunks at 4 loops each need continuations: {exec}"
    );
    assert_eq!(status["job"]["status"], "completed", "{status}");
    assert_eq!(status["job"]["completed_chunks"].as_u64(), Some(total));
    // The job item in DynamoDB says the same as the command.
    let job = block(dep.store().get_job(JOB)).unwrap().unwrap();
    assert_eq!(job.status.as_str(), "completed");
    assert_exact_in_s3(&dep, &fx, &status);

    // The first execution's history stays inside the budget the worker keeps to.
    let base = format!(
        "{}:backfill-{JOB}",
        dep.state_machine_arn
            .replace(":stateMachine:", ":execution:")
    );
    let events = dep.history(&base).len() as u32;
    assert!(
        events <= 4 * EVENTS_PER_LOOP + 40,
        "{events} events for 4 loops (budget {EVENTS_PER_LOOP} a loop + fixed)"
    );

    // Logs from CloudWatch through the CLI: every chunk once, the transform and final status.
    // The workers ship their lines before answering the transform and final steps, so they
    // are all there.
    let text = logs(&dep, &fx, &[]);
    assert_eq!(
        text.matches("chunk succeeded").count() as u64,
        total,
        "{text}"
    );
    assert!(text.contains("transform step done"), "{text}");
    // The transform step rebuilt the canonical tickets from the raw parts in the bucket.
    let canonical = dep.keys("acme/canonical/tickets");
    assert!(
        canonical.iter().any(|k| k.ends_with(".parquet"))
            && canonical
                .iter()
                .any(|k| k.ends_with("tickets/connectwise/_manifest.json")),
        "no canonical tickets in S3: {canonical:?}"
    );
    // It also moved the tickets marker to the job's end in the DynamoDB lifecycle store and
    // finalised the job there, as a local run does in SQLite.
    let life = dep.store();
    let markers = block(life.markers(Some("acme"), None)).unwrap();
    assert_eq!(markers.len(), 1, "{markers:?}");
    let m = &markers[0];
    assert_eq!(
        (m.table.as_str(), m.last_updated, m.backfill_job.as_deref()),
        ("tickets", job.window.end, Some(JOB)),
        "{m:?}"
    );
    let meta = block(life.job_metas(&[JOB.to_string()])).unwrap();
    assert!(meta[0].finalized_at.is_some(), "{meta:?}");
    // `status --cloud` shows that marker and the gap check, as local `status` does.
    let out = dep.cli(
        &fx,
        None,
        &[
            "status",
            "--cloud",
            "--tenant-id",
            "acme",
            "--output",
            "json",
        ],
    );
    assert_ok(&out);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["jobs"][0]["job_id"], JOB, "{listed}");
    let shown = &listed["markers"];
    assert_eq!(shown.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(shown[0]["table"], "tickets", "{listed}");
    assert_eq!(
        shown[0]["last_updated"],
        serde_json::to_value(job.window.end).unwrap(),
        "{listed}"
    );
    assert_eq!(shown[0]["backfill_job"], JOB, "{listed}");
    assert_eq!(listed["gaps"], serde_json::json!([]), "{listed}");
    let out = dep.cli(&fx, None, &["status", "--cloud", "--tenant-id", "acme"]);
    assert_ok(&out);
    let printed = String::from_utf8(out.stdout).unwrap();
    let end = job.window.end.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    assert!(printed.contains("SYNC MARKER"), "{printed}");
    assert!(
        printed.lines().any(|l| l.starts_with("acme")
            && l.contains("tickets")
            && l.contains(&end)
            && l.ends_with(JOB)),
        "{printed}"
    );
    assert!(!printed.contains("GAP "), "{printed}");
    assert!(text.contains("job finished"), "{text}");
    let one = logs(&dep, &fx, &["--chunk", "tickets#3"]);
    assert!(one.lines().count() >= 2, "{one}");
    assert!(one.lines().all(|l| l.contains("seq=3")), "{one}");
    assert!(
        !logs(&dep, &fx, &["--level", "warn"]).contains("chunk succeeded"),
        "--level warn hides info lines"
    );
    // `verify --cloud` counts the raw parts in S3 against the sandbox's own counts, chunk by
    // chunk, and stores the result in DynamoDB.
    let out = dep.cli(
        &fx,
        Some(&sandbox),
        &["verify", JOB, "--cloud", "--output", "json"],
    );
    assert_ok(&out);
    let verified: Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = &verified["verification"];
    assert_eq!(v["ok"], true, "{verified}");
    assert_eq!(v["missing"], 0, "{verified}");
    let chunks = v["chunks"].as_array().unwrap();
    assert_eq!(chunks.len() as u64, total, "{verified}");
    let landed: u64 = chunks.iter().map(|c| c["landed"].as_u64().unwrap()).sum();
    let source: u64 = chunks
        .iter()
        .map(|c| c["source_count"].as_u64().unwrap())
        .sum();
    assert_eq!((landed, source), (job.records, job.records), "{verified}");
    assert_eq!(block(life.verification(JOB)).unwrap().len() as u64, total);
    // `alerts --cloud` judges the job from DynamoDB: completed in full, so no alert.
    let out = dep.cli(
        &fx,
        None,
        &[
            "alerts",
            "--cloud",
            "--tenant-id",
            "acme",
            "--output",
            "json",
        ],
    );
    assert_ok(&out);
    let alerts: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(alerts["alerts"], serde_json::json!([]), "{alerts}");
    // `cleanup --cloud` removes the completed job from DynamoDB and keeps its marker.
    let out = dep.cli(
        &fx,
        None,
        &[
            "cleanup",
            "--cloud",
            "--older-than-days",
            "0",
            "--output",
            "json",
        ],
    );
    assert_ok(&out);
    let removed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(removed["jobs"][0]["job_id"], JOB, "{removed}");
    assert!(block(life.get_job(JOB)).unwrap().is_none());
    assert_eq!(block(life.markers(Some("acme"), None)).unwrap().len(), 1);
    eprintln!("cloud e2e: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn a_worker_killed_mid_chunk_loses_nothing() {
    let Some(emulators) = emulators("a_worker_killed_mid_chunk_loses_nothing") else {
        return;
    };
    let started = Instant::now();
    let fx = Fixture::new();
    // 20 records a page at 300 requests/min: a chunk takes a couple of seconds.
    fx.tune(300, 20);
    let sandbox = fx.start_sandbox(&[]);
    let dep = Deployment::create(emulators, "k");
    let mut workers = [
        Some(dep.worker(&fx, &sandbox, "w1")),
        Some(dep.worker(&fx, &sandbox, "w2")),
    ];
    trigger(&dep, &fx, &sandbox, &["--heartbeat-seconds", "3"]);

    // Kill the worker that holds a chunk which has stored at least one part.
    let store = dep.store();
    let (seq, owner) = poll(
        Duration::from_secs(120),
        "a chunk with a stored part",
        || {
            block(store.chunks(JOB)).unwrap().into_iter().find_map(|c| {
                (c.status == ChunkStatus::Running && c.checkpoint.parts >= 1)
                    .then(|| (c.key.seq, c.lease_owner.unwrap_or_default()))
            })
        },
    );
    let pid: u32 = owner.rsplit(':').nth(1).unwrap().parse().unwrap();
    let victim = workers
        .iter_mut()
        .position(|w| w.as_ref().is_some_and(|w| w.pid() == pid))
        .unwrap_or_else(|| panic!("lease owner {owner} is none of the workers"));
    let mut killed = workers[victim].take().unwrap();
    killed.child.kill().unwrap(); // SIGKILL: no release, no answer, no flush
    killed.child.wait().unwrap();
    let killed_at = block(store.chunks(JOB)).unwrap()[seq as usize].clone();
    assert_eq!(
        killed_at.status,
        ChunkStatus::Running,
        "killed after the chunk ended"
    );

    let status = wait_for_execution(&dep, &fx, Duration::from_secs(240));
    assert_eq!(status["execution"]["status"], "SUCCEEDED", "{status}");
    assert_eq!(status["job"]["status"], "completed", "{status}");
    assert_exact_in_s3(&dep, &fx, &status);
    // A crash is not a failed attempt: the chunk went on from its checkpoint.
    let chunk = &status["chunks"][seq as usize];
    assert_eq!(chunk["attempts"], 1, "{chunk}");

    // The dead worker's task timed out and the state machine's Retry sent it again.
    let timed_out = timed_out_tasks(&dep, &status);
    assert!(timed_out >= 1, "no task timed out: the kill proved nothing");
    let survivor = workers.iter().flatten().next().unwrap();
    let text = survivor.log_text();
    assert!(
        text.lines().any(|l| l.contains("chunk started")
            && l.contains(&format!(" seq={seq} "))
            && l.contains("cursor=Some")),
        "the survivor went on with chunk {seq} from its checkpoint:\n{text}"
    );
    eprintln!("cloud kill e2e: {:.1} s", started.elapsed().as_secs_f64());
}

/// Tasks that timed out in the job's executions (the first and its continuations).
fn timed_out_tasks(dep: &Deployment, status: &Value) -> usize {
    (0..=status["execution"]["continuation"].as_u64().unwrap())
        .flat_map(|n| {
            let name = if n == 0 {
                format!("backfill-{JOB}")
            } else {
                format!("backfill-{JOB}-c{n}")
            };
            dep.history(&format!(
                "{}:{name}",
                dep.state_machine_arn
                    .replace(":stateMachine:", ":execution:")
            ))
        })
        .filter(|e| e.r#type().as_str() == "TaskTimedOut")
        .count()
}

/// More lanes than worker slots: one worker working one message at a time, four lanes, 20
/// chunks of a couple of seconds each and a 3 s heartbeat. Three lanes' tasks always wait
/// behind the running one, longer than their heartbeat; the worker holds and heartbeats them,
/// so none times out and the job completes with every record once.
#[test]
fn tasks_waiting_for_a_busy_worker_do_not_time_out() {
    let Some(emulators) = emulators("tasks_waiting_for_a_busy_worker_do_not_time_out") else {
        return;
    };
    let started = Instant::now();
    let fx = Fixture::new();
    fx.tune(600, 50);
    let sandbox = fx.start_sandbox(&["--latency-ms", "700"]);
    let dep = Deployment::create(emulators, "q");
    let _worker = dep.worker(&fx, &sandbox, "w1");
    let first = trigger_chunks_of(
        &dep,
        &fx,
        &sandbox,
        "19",
        &["--lanes", "4", "--heartbeat-seconds", "3"],
    );
    assert_eq!(first["job"]["total_chunks"], 20, "{first}");

    let status = wait_for_execution(&dep, &fx, Duration::from_secs(400));
    assert_eq!(status["execution"]["status"], "SUCCEEDED", "{status}");
    assert_eq!(status["job"]["status"], "completed", "{status}");
    assert_eq!(status["job"]["completed_chunks"], 20, "{status}");
    assert_exact_in_s3(&dep, &fx, &status);
    assert_eq!(
        timed_out_tasks(&dep, &status),
        0,
        "tasks timed out while they waited for the worker"
    );
    eprintln!(
        "cloud queue wait e2e: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_stopped_execution_resumes_and_a_cancelled_job_stops() {
    let Some(emulators) = emulators("a_stopped_execution_resumes_and_a_cancelled_job_stops") else {
        return;
    };
    let started = Instant::now();
    let fx = Fixture::new();
    fx.tune(600, 20);
    let sandbox = fx.start_sandbox(&[]);
    let dep = Deployment::create(emulators, "r");
    let _w1 = dep.worker(&fx, &sandbox, "w1");
    let _w2 = dep.worker(&fx, &sandbox, "w2");
    trigger(&dep, &fx, &sandbox, &["--heartbeat-seconds", "3"]);

    // Stop the execution behind the job's back once some chunks are done.
    let store = dep.store();
    poll(Duration::from_secs(120), "two completed chunks", || {
        let done = block(store.chunks(JOB))
            .unwrap()
            .iter()
            .filter(|c| c.status == ChunkStatus::Succeeded)
            .count();
        (done >= 2).then_some(())
    });
    let base = format!(
        "{}:backfill-{JOB}",
        dep.state_machine_arn
            .replace(":stateMachine:", ":execution:")
    );
    let sfn = aws_sdk_sfn::Client::new(&dep.aws);
    block(
        sfn.stop_execution()
            .execution_arn(&base)
            .error("Operator.Stopped")
            .cause("test")
            .send(),
    )
    .unwrap();
    let stopped = wait_for_execution(&dep, &fx, Duration::from_secs(30));
    // AWS says ABORTED; moto 5.2.5 reports a stop during a Map's callback as FAILED
    // (States.Runtime). Either way the execution has ended and the job is left running.
    let ended = stopped["execution"]["status"].as_str().unwrap();
    assert!(["ABORTED", "FAILED"].contains(&ended), "{stopped}");
    assert_eq!(stopped["job"]["status"], "running", "{stopped}");
    // resume --cloud starts the next execution; it finishes from the checkpoints.
    let out = dep.cli(&fx, None, &["resume", JOB, "--cloud"]);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("resumed {JOB} in execution backfill-{JOB}-c1")),
        "{}",
        text(&out)
    );
    // Triggering the range again, or resuming, finds the job running there.
    let again = trigger(&dep, &fx, &sandbox, &[]);
    assert_eq!(again["created"], false, "{again}");
    assert_eq!(again["start"]["start"], "already_running", "{again}");
    let out = dep.cli(&fx, None, &["resume", JOB, "--cloud"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "job {JOB} is already running in execution backfill-{JOB}-c1"
        )),
        "{}",
        text(&out)
    );
    let status = wait_for_execution(&dep, &fx, Duration::from_secs(240));
    assert_eq!(status["execution"]["name"], format!("backfill-{JOB}-c1"));
    assert_eq!(status["execution"]["status"], "SUCCEEDED", "{status}");
    assert_eq!(status["job"]["status"], "completed", "{status}");
    assert_exact_in_s3(&dep, &fx, &status);
    let again = dep.cli(&fx, None, &["resume", JOB, "--cloud"]);
    assert_eq!(again.status.code(), Some(5), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("is completed; nothing to resume"));

    // A second job, cancelled mid-way: the store says cancelled, the execution is stopped.
    let second = "backfill_acme_connectwise_20240101";
    let out = dep.cli(
        &fx,
        Some(&sandbox),
        &trigger_args(
            "acme",
            Some("tickets"),
            "2024-01-01",
            Some("2025-01-01"),
            &["--cloud", "--heartbeat-seconds", "3"],
        ),
    );
    assert_ok(&out);
    poll(Duration::from_secs(120), "a running chunk", || {
        block(store.chunks(second))
            .unwrap()
            .iter()
            .any(|c| c.status == ChunkStatus::Running)
            .then_some(())
    });
    let out = dep.cli(&fx, None, &["cancel", second, "--cloud"]);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("stopped execution backfill-{second}")),
        "{}",
        text(&out)
    );
    // moto shows a stop made during a Map's callback a moment later: wait for it.
    let detail = poll(
        Duration::from_secs(30),
        "the stopped execution to end",
        || {
            let out = dep.cli(
                &fx,
                None,
                &["status", "--cloud", "--job-id", second, "--output", "json"],
            );
            let detail: Value = serde_json::from_slice(&out.stdout).unwrap();
            (detail["execution"]["status"] != "RUNNING").then_some(detail)
        },
    );
    assert_eq!(detail["job"]["status"], "cancelled", "{detail}");
    let ended = detail["execution"]["status"].as_str().unwrap();
    assert!(["ABORTED", "FAILED"].contains(&ended), "{detail}");
    eprintln!(
        "cloud resume/cancel e2e: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn auto_detect_with_cloud_creates_and_starts_its_jobs_in_the_deployment_not_the_workspace() {
    let Some(emulators) = emulators("auto_detect_with_cloud") else {
        return;
    };
    let fx = Fixture::new();
    // Cloud jobs are admitted under the scheduling rules: room for every detected job, and
    // auto triggers that do not wait for the off-peak window, so each starts at once.
    fx.edit("backfill_config.json", |v| {
        v["default_settings"]["max_concurrent_jobs"] = 50.into();
        v["scheduling"]["max_parallel_tenants"] = 50.into();
        v["scheduling"]["auto_triggered_wait_for_off_peak"] = false.into();
    });
    let sandbox = fx.start_sandbox(&[]);
    let dep = Deployment::create(emulators, "ad");
    let args = ["trigger", "--auto-detect", "--cloud", "--output", "json"];
    let out = dep.cli(&fx, Some(&sandbox), &args);
    assert_ok(&out);
    let detected: Value = serde_json::from_slice(&out.stdout).unwrap();
    let created = detected["created"].as_array().unwrap();
    assert!(!created.is_empty(), "{detected}");
    for job in created {
        let id = job["job_id"].as_str().unwrap();
        assert!(
            block(dep.store().get_job(id)).unwrap().is_some(),
            "{id} is in DynamoDB"
        );
        let out = dep.cli(
            &fx,
            None,
            &["status", "--cloud", "--job-id", id, "--output", "json"],
        );
        assert_ok(&out);
        let status: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            status["execution"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("backfill-{id}"))),
            "{status}"
        );
    }
    assert!(
        !fx.workspace().join("state.db").exists(),
        "nothing was created or run in the workspace"
    );
}
