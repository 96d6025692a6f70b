//! Fleet scheduling in the cloud, on the emulators (moto: Step Functions running
//! `infrastructure/backfill.asl.json`, SQS, S3; DynamoDB Local): three tenants with two jobs
//! each under `max_concurrent_jobs: 3` and `max_parallel_tenants: 2`, run by two `worker`
//! processes of the real binary. `trigger --cloud` starts what the rules admit and queues the
//! rest (saying why); the workers' admission passes start queued jobs as slots free. Sampled
//! every 200 ms from Step Functions (running executions) and DynamoDB (the admission queue):
//! never more than 3 jobs run, never from more than 2 tenants; all 6 land exactly.
//!
//! Needs `AVESA_TEST_MOTO_URL` and `AVESA_TEST_DYNAMODB_URL` (`scripts/test` starts both).

mod common;
// The harness is shared with cloud_e2e, which uses all of it.
#[allow(dead_code)]
#[path = "cloud_e2e/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use avesa_console::domain::JobStatus;
use avesa_console::sandbox::TableCounts;
use avesa_console::store::JobStore;
use aws_sdk_sfn::types::ExecutionStatus;
use common::*;
use harness::*;
use serde_json::Value;

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
/// Each tenant's two jobs: the two halves of 2025.
const HALVES: [(&str, &str); 2] = [("2025-01-01", "2025-07-01"), ("2025-07-01", "2026-01-01")];

fn job_id(tenant: &str, start: &str) -> String {
    format!("backfill_{tenant}_connectwise_{}", start.replace('-', ""))
}

/// The tenant of a running execution's job (`backfill-backfill_{tenant}_connectwise_…`).
fn tenant_of(execution: &str) -> String {
    let job = execution.trim_start_matches("backfill-backfill_");
    job.split("_connectwise").next().unwrap_or(job).to_string()
}

/// What one sample saw: jobs with a running execution, and jobs holding an admission slot.
#[derive(Debug, Default)]
struct Peak {
    running: usize,
    tenants: usize,
    admitted: usize,
    samples: usize,
    seen: Vec<String>,
}

/// Samples every 200 ms until `stop`: running executions (ListExecutions RUNNING) and the
/// admission queue's admitted entries.
fn sample(dep: &Deployment, stop: Arc<AtomicBool>) -> Peak {
    let sfn = aws_sdk_sfn::Client::new(&dep.aws);
    let store = dep.store();
    let mut peak = Peak::default();
    while !stop.load(Ordering::SeqCst) {
        let out = block(
            sfn.list_executions()
                .state_machine_arn(&dep.state_machine_arn)
                .status_filter(ExecutionStatus::Running)
                .max_results(100)
                .send(),
        )
        .unwrap();
        let names: Vec<String> = out
            .executions()
            .iter()
            .map(|e| e.name().to_string())
            .collect();
        // A continuation's new execution may overlap its old one for a moment: one job.
        let jobs: BTreeSet<String> = names
            .iter()
            .map(|n| n.split("-c").next().unwrap_or(n).to_string())
            .collect();
        let tenants: BTreeSet<String> = jobs.iter().map(|j| tenant_of(j)).collect();
        let queue = block(store.fleet()).unwrap();
        let admitted = queue
            .entries
            .iter()
            .filter(|e| e.admitted_at.is_some())
            .count();
        if jobs.len() > peak.running {
            peak.seen = jobs.iter().cloned().collect();
        }
        peak.running = peak.running.max(jobs.len());
        peak.tenants = peak.tenants.max(tenants.len());
        peak.admitted = peak.admitted.max(admitted);
        peak.samples += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    peak
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn trigger(
    dep: &Deployment,
    fx: &Fixture,
    sandbox: &SandboxProc,
    tenant: &str,
    half: usize,
) -> Value {
    let (start, end) = HALVES[half];
    let args = trigger_args(
        tenant,
        Some("tickets"),
        start,
        Some(end),
        &[
            "--chunk-size-days",
            "30",
            "--cloud",
            "--heartbeat-seconds",
            "5",
            "--output",
            "json",
        ],
    );
    let out = dep.cli(fx, Some(sandbox), &args);
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn cloud_jobs_are_admitted_under_the_fleet_limits_and_all_complete() {
    let Some(emulators) = emulators("cloud_jobs_are_admitted_under_the_fleet_limits") else {
        return;
    };
    let fx = Fixture::new();
    fx.tune(600, 50);
    fx.edit("backfill_config.json", |v| {
        v["default_settings"]["max_concurrent_jobs"] = 3.into();
        v["scheduling"]["max_parallel_tenants"] = 2.into();
    });
    let sandbox = fx.start_sandbox(&[]);
    let dep = Deployment::create(emulators, "adm");
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = std::thread::scope(|s| {
        let sampler = s.spawn(|| sample(&dep, stop.clone()));
        let workers: Vec<WorkerProc> = ["w1", "w2"]
            .iter()
            .map(|name| {
                let (mut cmd, log) = dep.worker_command(&fx, &sandbox, name);
                cmd.args(["--concurrency", "2"]);
                WorkerProc {
                    child: cmd.spawn().unwrap(),
                    log,
                }
            })
            .collect();
        // Stops the sampler however the run ends (a failed assertion too).
        let _stop = StopOnDrop(stop.clone());
        run_and_wait(&dep, &fx, &sandbox);
        drop(_stop);
        drop(workers);
        sampler.join().unwrap()
    });
    println!("peak: {sampler:?}");
    assert!(sampler.samples > 20, "{sampler:?}");
    assert!(
        sampler.running <= 3,
        "more than 3 jobs ran at once: {sampler:?}"
    );
    assert!(
        sampler.tenants <= 2,
        "more than 2 tenants ran at once: {sampler:?}"
    );
    assert!(
        sampler.admitted <= 3,
        "more than 3 admitted at once: {sampler:?}"
    );
    assert!(sampler.running >= 2, "jobs ran side by side: {sampler:?}");
    let cfg = fx.sandbox_config(TableCounts::demo());
    let window = parse_window("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    for tenant in TENANTS {
        let (landed, _) = dep.landed(tenant, "tickets");
        assert_exact(&landed, &cfg, &company_of(&fx, tenant), "tickets", &window);
    }
    assert!(
        block(dep.store().fleet()).unwrap().entries.is_empty(),
        "the queue is empty at the end"
    );
}

/// Triggers the six jobs (a tenant's first jobs first, so the third tenant waits for a
/// tenant slot), checks what the triggers and `status --cloud` say, then waits for all six.
fn run_and_wait(dep: &Deployment, fx: &Fixture, sandbox: &SandboxProc) {
    let mut outcomes = Vec::new();
    for half in 0..2 {
        for tenant in TENANTS {
            outcomes.push(trigger(dep, fx, sandbox, tenant, half));
        }
    }
    let starts: Vec<&str> = outcomes
        .iter()
        .map(|o| o["start"]["start"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(starts[..2], ["started", "started"], "{outcomes:#?}");
    let third = &outcomes[2]["start"]["why"];
    assert!(
        third.as_str().is_some_and(
            |w| w.contains("waits for a tenant slot") && w.contains("(max_parallel_tenants)")
        ),
        "{outcomes:#?}"
    );
    assert!(
        starts.iter().filter(|s| **s == "waiting").count() >= 2,
        "{starts:?}"
    );
    let out = dep.cli(fx, None, &["status", "--cloud"]);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("queued for admission:") && text.contains("waits for"),
        "{text}"
    );
    let store = dep.store();
    let ids: Vec<String> = HALVES
        .iter()
        .flat_map(|(start, _)| TENANTS.iter().map(|t| job_id(t, start)))
        .collect();
    poll(Duration::from_secs(600), "all six jobs to complete", || {
        let done = ids.iter().all(|id| {
            block(store.get_job(id))
                .unwrap()
                .is_some_and(|j| j.status == JobStatus::Completed)
        });
        let queue = block(store.fleet()).unwrap();
        (done && queue.entries.is_empty()).then_some(())
    });
}
