//! Four `worker` processes of the real binary on one tenant+service, on the emulators (moto:
//! Step Functions running `infrastructure/backfill.asl.json`, SQS, S3; DynamoDB Local), share
//! one rate budget through the DynamoDB rate item. A test binary of its own: it runs for over
//! two minutes and measures rates, so it does not share the machine with the other cloud tests.
//!
//! Needs `AVESA_TEST_MOTO_URL` and `AVESA_TEST_DYNAMODB_URL` (`scripts/test` starts both).

mod common;
// The harness is shared with cloud_e2e, which uses all of it.
#[allow(dead_code)]
#[path = "cloud_e2e/harness.rs"]
mod harness;

use std::time::Duration;

use avesa_console::domain::ChunkStatus;
use avesa_console::store::JobStore;
use common::*;
use harness::*;

const JOB: &str = "backfill_acme_connectwise_20250101";

/// Four workers on one tenant+service share one rate budget through the DynamoDB rate item.
/// Against a sandbox that enforces 200/min strictly (burst 1) and answers in 300 ms, no 60 s
/// window holds more than the limit and no request is refused. The fewest in any 60 s window
/// (the share of the limit the fleet reached) is printed: run with `--nocapture`.
#[test]
fn four_workers_share_one_rate_budget() {
    let Some(emulators) = emulators("four_workers_share_one_rate_budget") else {
        return;
    };
    const LIMIT: u32 = 200;
    let fx = Fixture::new();
    fx.tune(LIMIT, 10);
    let sandbox = fx.start_sandbox(&[
        "--rate-limit",
        "200",
        "--strict-rate-limit",
        "--latency-ms",
        "300",
        "--tickets",
        "20000",
    ]);
    let dep = Deployment::create(emulators, "f");
    let workers: Vec<WorkerProc> = (1..=4)
        .map(|i| dep.worker(&fx, &sandbox, &format!("f{i}")))
        .collect();
    // 13 windows of ~800 records, 10 a page: far more calls than the run makes.
    let args = [
        "--chunk-size-days",
        "30",
        "--cloud",
        "--lanes",
        "4",
        "--heartbeat-seconds",
        "5",
    ];
    let range = ("2025-01-01", Some("2026-01-01"));
    let out = dep.cli(
        &fx,
        Some(&sandbox),
        &trigger_args("acme", Some("tickets"), range.0, range.1, &args),
    );
    assert_ok(&out);
    let store = dep.store();
    poll(Duration::from_secs(60), "four windows in flight", || {
        let running = block(store.chunks(JOB))
            .unwrap()
            .iter()
            .filter(|c| c.status == ChunkStatus::Running)
            .count();
        (running == 4).then_some(())
    });
    std::thread::sleep(Duration::from_secs(130));
    let out = dep.cli(&fx, None, &["cancel", JOB, "--cloud"]);
    assert_ok(&out);
    drop(workers);

    let stats = sandbox.stats();
    let company = company_of(&fx, "acme");
    let load = &stats["tenants"][format!("connectwise:{company}")];
    let arrivals: Vec<u32> = serde_json::from_value(load["arrivals_ms"].clone()).unwrap();
    let (fewest, most) = avesa_console::sandbox::window_extremes(&arrivals, 60_000)
        .expect("more than a minute of requests");
    assert_eq!(stats["rate_limited"], 0, "self-caused 429s: {stats}");
    assert_eq!(stats["concurrency_refused"], 0, "{stats}");
    assert!(
        most <= LIMIT as usize,
        "{most} requests in one 60 s window, above the limit of {LIMIT}"
    );
    eprintln!(
        "four workers at {LIMIT}/min, 300 ms answers: {} requests, {fewest}..{most} in any 60 s \
         window ({:.1} %..{:.1} % of the limit), 0 self-caused 429",
        arrivals.len(),
        fewest as f64 * 100.0 / f64::from(LIMIT),
        most as f64 * 100.0 / f64::from(LIMIT),
    );
}
