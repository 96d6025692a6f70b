//! Three `run` processes on one workspace share one rate budget per tenant + service: against a
//! sandbox that refuses what goes over its limit, together they cause no refusal and send no
//! faster than the configured rate.

mod common;

use std::time::Instant;

use common::*;

/// The sandbox's limit and the engine's configured rate (requests per minute).
const RATE: u32 = 600;
/// Extra sandbox arguments for its limiter: where a strict (burst 1) mode is added, name it
/// here so this test checks spacing as strict servers enforce it.
const STRICT_LIMITER: &[&str] = &[];

#[test]
fn three_run_processes_on_one_workspace_keep_one_rate() {
    let fx = Fixture::new();
    fx.tune(RATE, 40);
    let rate = RATE.to_string();
    let mut extra = vec!["--rate-limit", rate.as_str()];
    extra.extend_from_slice(STRICT_LIMITER);
    let sandbox = fx.start_sandbox(&extra);
    // Three jobs of one tenant's service (one table, three ranges), one per process, so the
    // three work at the same time: a job's chunks of one table run in order.
    let ranges = [
        ("2024-01-01", "2024-07-01"),
        ("2024-07-01", "2025-01-01"),
        ("2025-01-01", "2025-07-01"),
    ];
    let mut jobs = Vec::new();
    for (start, end) in ranges {
        assert_ok(&fx.cli(
            Some(&sandbox),
            &trigger_args(
                "globex",
                Some("tickets"),
                start,
                Some(end),
                &["--chunk-size-days", "60"],
            ),
        ));
        jobs.push(format!(
            "backfill_globex_connectwise_{}",
            start.replace('-', "")
        ));
    }
    let before = sandbox.stats()["requests"].as_u64().unwrap();
    let started = Instant::now();
    let children: Vec<_> = jobs
        .iter()
        .map(|job_id| {
            fx.command(Some(&sandbox), &["run", "--job-id", job_id])
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        assert_ok(&child.wait_with_output().unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = sandbox.stats();
    let requests = stats["requests"].as_u64().unwrap() - before;
    println!("{requests} requests in {elapsed:.1} s by three processes: {stats}");
    assert_eq!(
        stats["rate_limited"], 0,
        "the limiter refused requests: {stats}"
    );
    // The processes sent for at most `elapsed` seconds, so at the configured rate (one
    // every 100 ms, the first at once) they could send no more than this.
    let allowed = (elapsed * f64::from(RATE) / 60.0).floor() as u64 + 1;
    assert!(
        requests <= allowed,
        "{requests} requests in {elapsed:.2} s: more than {RATE}/min allows ({allowed})"
    );
    assert!(requests >= 40, "too few requests to tell: {requests}");
    for job_id in &jobs {
        assert_eq!(
            job_status(&fx, job_id)["job"]["status"],
            "completed",
            "{job_id}"
        );
    }
}
