//! Every wait of a run is bounded: by the run's deadline (a rate-limit pause, a retry
//! backoff, a slow answer end at the time budget, releasing the chunk at its checkpoint
//! without using up an attempt) and by `max_retry_after_seconds` (a server asking to wait
//! for ages is waited on for the maximum only).

mod common;

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use avesa_console::config::{Config, EndpointDef};
use avesa_console::domain::{ChunkStatus, RecordsAt, Service, Window};
use avesa_console::engine::{Engine, StopReason};
use avesa_console::sources::{Page, Source, SourceError};
use avesa_console::store::{JobStore, SqliteStore};
use common::*;

/// How the scripted source answers every page request.
#[derive(Clone, Copy)]
enum Answer {
    /// 429 with this `Retry-After`, the first `times` requests; then an empty last page.
    RateLimited { retry_after: Duration, times: u32 },
    /// An empty last page, after holding the answer back this long.
    Slow(Duration),
}

struct Scripted {
    answer: Answer,
    requests: AtomicU32,
}

#[async_trait]
impl Source for Scripted {
    fn service(&self) -> Service {
        Service::Connectwise
    }

    async fn fetch_page(
        &self,
        _: &EndpointDef,
        _: &Window,
        _: Option<&str>,
    ) -> Result<Page, SourceError> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        match self.answer {
            Answer::RateLimited { retry_after, times } if n < times => {
                return Err(SourceError::RateLimited {
                    status: 429,
                    message: "Too Many Requests".into(),
                    retry_after: Some(retry_after),
                });
            }
            Answer::Slow(d) => tokio::time::sleep(d).await,
            Answer::RateLimited { .. } => {}
        }
        Ok(Page {
            body: bytes::Bytes::from_static(b"[]").into(),
            records_at: RecordsAt::Body,
            next: None,
            bytes: 2,
            usage: None,
        })
    }

    async fn count(&self, _: &EndpointDef, _: &Window) -> Result<u64, SourceError> {
        Ok(0)
    }
}

struct Rig {
    _fx: Fixture,
    engine: Engine,
    store: Arc<SqliteStore>,
    job_id: String,
}

/// An engine whose only source answers `answer`, and a one-chunk job of tickets.
async fn rig(answer: Answer, max_retry_after_seconds: u64) -> Rig {
    let fx = Fixture::new();
    fx.defaults(&[
        ("max_retry_after_seconds", max_retry_after_seconds.into()),
        ("circuit_breaker_failures", 1000.into()),
    ]);
    let source: Arc<dyn Source> = Arc::new(Scripted {
        answer,
        requests: AtomicU32::new(0),
    });
    let (engine, store) = fx.engine_over(source);
    let job_id = one_chunk_job(&engine).await;
    Rig {
        _fx: fx,
        engine,
        store,
        job_id,
    }
}

/// Runs the job under a `budget` and checks it stopped at the budget as a continuation,
/// its one chunk back to pending without a used attempt or an error.
async fn stops_at_the_budget(rig: &Rig, budget: Duration) {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + budget;
    let run = tokio::time::timeout(
        budget + Duration::from_secs(10),
        rig.engine.run_job(&rig.job_id, Some(deadline)),
    )
    .await
    .expect("the run outlived its deadline by far")
    .unwrap();
    let took = started.elapsed();
    assert_eq!(run.stop, StopReason::ContinuationNeeded);
    assert!(
        took < budget + Duration::from_millis(500),
        "a {budget:?} budget took {took:?}"
    );
    let chunks = rig.store.chunks(&rig.job_id).await.unwrap();
    assert_eq!(chunks.len(), 1);
    let c = &chunks[0];
    assert_eq!(c.status, ChunkStatus::Pending, "{c:?}");
    assert_eq!(c.attempts, 0, "the budget used up an attempt: {c:?}");
    assert!(c.last_error.is_none(), "{c:?}");
    assert!(c.lease_owner.is_none(), "a lease was left behind: {c:?}");
}

#[tokio::test]
async fn a_retry_after_longer_than_the_budget_ends_at_the_budget() {
    let rig = rig(
        Answer::RateLimited {
            retry_after: Duration::from_secs(3600),
            times: u32::MAX,
        },
        3600,
    )
    .await;
    stops_at_the_budget(&rig, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_answer_slower_than_the_budget_ends_at_the_budget() {
    let rig = rig(Answer::Slow(Duration::from_secs(60)), 900).await;
    stops_at_the_budget(&rig, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_huge_retry_after_is_cut_to_the_configured_maximum() {
    // What a `Retry-After: 1e300` parses to: a year, the parser's ceiling.
    let rig = rig(
        Answer::RateLimited {
            retry_after: Duration::from_secs(365 * 86_400),
            times: 1,
        },
        1,
    )
    .await;
    let started = Instant::now();
    let run = tokio::time::timeout(
        Duration::from_secs(20),
        rig.engine.run_job(&rig.job_id, None),
    )
    .await
    .expect("the Retry-After was not cut to max_retry_after_seconds")
    .unwrap();
    assert_eq!(run.stop, StopReason::Finished);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "did not wait at all: {took:?}"
    );
    let snap = rig.engine.budget("acme", Service::Connectwise).snapshot();
    assert_eq!(snap.last_retry_after, Some(Duration::from_secs(1)));
    let chunks = rig.store.chunks(&rig.job_id).await.unwrap();
    assert_eq!(chunks[0].status, ChunkStatus::Succeeded);
}

/// Runs `cmd`, killing it after `limit`; returns its output and how long it ran.
fn run_for_at_most(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    use std::process::Stdio;
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = started.elapsed();
    if child.try_wait().unwrap().is_none() {
        child.kill().unwrap();
    }
    (child.wait_with_output().unwrap(), took)
}

/// `run --time-budget 3s` against a sandbox whose tickets answer with `fault`: exits 75
/// within the budget and a second, the chunk pending again with no attempt used.
fn run_under_budget_against(fault: &str) {
    let fx = Fixture::new();
    let faults = fx.dir.path().join("faults.json");
    std::fs::write(&faults, format!(r#"{{"faults":[{fault}]}}"#)).unwrap();
    let sandbox = fx.start_sandbox(&["--faults", faults.to_str().unwrap()]);
    let out = fx.cli(
        Some(&sandbox),
        &trigger_args(
            "acme",
            Some("tickets"),
            "2025-01-01",
            Some("2025-01-20"),
            &["--chunk-size-days", "30"],
        ),
    );
    assert_ok(&out);
    let job_id = "backfill_acme_connectwise_20250101";
    let (out, took) = run_for_at_most(
        fx.command(
            Some(&sandbox),
            &["run", "--job-id", job_id, "--time-budget", "3s"],
        ),
        Duration::from_secs(20),
    );
    assert_eq!(
        out.status.code(),
        Some(75),
        "after {took:?}: {}",
        text(&out)
    );
    assert!(took < Duration::from_secs(4), "a 3 s budget took {took:?}");
    let detail = job_status(&fx, job_id);
    let chunks = detail["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 1, "{detail}");
    assert_eq!(chunks[0]["status"], "pending", "{detail}");
    assert_eq!(chunks[0]["attempts"], 0, "the budget used up an attempt");
    assert!(
        chunks[0]["lease_owner"].is_null(),
        "a lease was left behind"
    );
}

#[test]
fn run_with_a_time_budget_against_retry_after_3600_exits_75_in_time() {
    run_under_budget_against(
        r#"{"path":"service/tickets","status":429,"retry_after_seconds":3600}"#,
    );
}

#[test]
fn run_with_a_time_budget_against_a_slow_answer_exits_75_in_time() {
    run_under_budget_against(r#"{"path":"service/tickets","kind":"slow","delay_ms":30000}"#);
}

#[test]
fn max_retry_after_seconds_must_be_positive() {
    let fx = Fixture::new();
    fx.edit("backfill_config.json", |v| {
        v["default_settings"]["max_retry_after_seconds"] = 0.into()
    });
    let err = Config::load(&fx.config_dir()).unwrap_err().to_string();
    for needle in [
        "backfill_config.json",
        "$.default_settings.max_retry_after_seconds",
        "at least 1",
    ] {
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    }
}
