//! Alerts from `monitoring`, one test per threshold: more than 3 consecutive chunk failures,
//! a job running longer than 20 hours, a completion rate under 90 %. Each is stored once,
//! sent as an event and written as an Embedded Metric Format record.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use avesa_console::config::{Config, EndpointDef};
use avesa_console::domain::{AlertKind, JobStatus, RecordsAt, Service, Window};
use avesa_console::engine::metrics::MetricsSink;
use avesa_console::engine::planner::PlanRequest;
use avesa_console::engine::{Engine, EngineEvent, EngineOptions, NoSource, SourceProvider};
use avesa_console::sink::RawSink;
use avesa_console::sources::{Page, Source, SourceError};
use avesa_console::store::{AlertFilter, Claim, JobStore, LifecycleStore, SqliteStore};
use chrono::{DateTime, Duration, TimeZone, Utc};
use common::Fixture;

/// Answers 500 for the tables in `failing`, an empty page for the others.
struct FakeSource {
    failing: Vec<String>,
}

#[async_trait]
impl Source for FakeSource {
    fn service(&self) -> Service {
        Service::Connectwise
    }

    async fn fetch_page(
        &self,
        endpoint: &EndpointDef,
        _window: &Window,
        _cursor: Option<&str>,
    ) -> Result<Page, SourceError> {
        if self.failing.contains(&endpoint.table_name) {
            return Err(SourceError::Http {
                status: 500,
                message: "Internal Server Error".into(),
                retry_after: None,
            });
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

struct Provider(Arc<dyn Source>);

impl SourceProvider for Provider {
    fn source(&self, _: &str, _: Service) -> Result<Arc<dyn Source>, NoSource> {
        Ok(self.0.clone())
    }
}

#[derive(Default)]
struct Capture(Mutex<Vec<serde_json::Value>>);

impl MetricsSink for Capture {
    fn emit(&self, record: &serde_json::Value) {
        self.0.lock().unwrap().push(record.clone());
    }
}

struct Rig {
    _fx: Fixture,
    engine: Engine,
    store: Arc<SqliteStore>,
    metrics: Arc<Capture>,
}

fn rig(failing: &[&str]) -> Rig {
    let fx = Fixture::new();
    fx.edit("backfill_config.json", |v| {
        let d = &mut v["default_settings"];
        d["retry_attempts"] = 3.into();
        d["retry_backoff_seconds"] = 0.01.into();
        d["request_retries"] = 0.into();
        d["circuit_breaker_failures"] = 1000.into();
    });
    let config = Arc::new(Config::load(&fx.config_dir()).unwrap());
    let store = Arc::new(SqliteStore::open(&fx.dir.path().join("state.db")).unwrap());
    let sink = RawSink::local(&fx.data_dir()).unwrap();
    let source: Arc<dyn Source> = Arc::new(FakeSource {
        failing: failing.iter().map(|s| s.to_string()).collect(),
    });
    let metrics = Arc::new(Capture::default());
    let options = EngineOptions {
        pace_requests: false,
        poll_interval: std::time::Duration::from_millis(10),
        auto_transform: false,
        ..EngineOptions::default()
    };
    let engine = Engine::new(
        config,
        store.clone(),
        store.clone(),
        sink,
        Arc::new(Provider(source)),
        options,
    )
    .with_metrics(metrics.clone());
    Rig {
        _fx: fx,
        engine,
        store,
        metrics,
    }
}

fn t(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

async fn job(rig: &Rig, tables: &[&str], days: i64) -> String {
    let plan = rig
        .engine
        .plan(
            &PlanRequest {
                tenant_id: "acme".into(),
                service: Service::Connectwise,
                tables: tables.iter().map(|s| s.to_string()).collect(),
                start: Some(t(2025, 1, 1)),
                end: Some(t(2025, 1, 1) + Duration::days(days)),
                chunk_size_days: Some(10),
            },
            Utc::now(),
        )
        .unwrap();
    rig.engine
        .create_job(&plan, Utc::now())
        .await
        .unwrap()
        .job()
        .job_id
        .clone()
}

async fn alerts(rig: &Rig, kind: AlertKind) -> Vec<avesa_console::domain::Alert> {
    rig.store
        .alerts(&AlertFilter {
            kind: Some(kind),
            ..AlertFilter::default()
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn more_than_three_consecutive_chunk_failures_raise_one_alert() {
    let rig = rig(&["tickets"]);
    let mut events = rig.engine.subscribe();
    // One chunk: three failed attempts in a row are not yet "more than 3".
    let id = job(&rig, &["tickets"], 10).await;
    rig.engine.run_job(&id, None).await.unwrap();
    assert!(
        alerts(&rig, AlertKind::ConsecutiveChunkFailures)
            .await
            .is_empty()
    );
    // Two chunks: the fourth failed attempt in a row raises it, once.
    let id = job(&rig, &["tickets"], 20).await;
    let out = rig.engine.run_job(&id, None).await.unwrap();
    assert_eq!(out.status, JobStatus::CompletedWithErrors);
    let found = alerts(&rig, AlertKind::ConsecutiveChunkFailures).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].job_id.as_deref(), Some(id.as_str()));
    assert_eq!((found[0].value, found[0].threshold), (4.0, 3.0));
    assert!(
        found[0]
            .message
            .contains("4 chunk attempts failed in a row")
    );
    let mut seen = false;
    while let Ok(e) = events.try_recv() {
        if let EngineEvent::Alert { alert } = e {
            seen |= alert.kind == AlertKind::ConsecutiveChunkFailures;
        }
    }
    assert!(seen, "an Alert event was sent");
    let records = rig.metrics.0.lock().unwrap().clone();
    let emf = records
        .iter()
        .find(|r| r["AlertKind"] == "consecutive_chunk_failures")
        .expect("an EMF record of the alert");
    assert_eq!(
        emf["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
        "Alert"
    );
    assert_eq!(emf["JobId"], id.as_str());
}

#[tokio::test]
async fn a_completion_rate_under_ninety_percent_raises_an_alert_and_progress_is_measured() {
    // tickets fails, companies succeeds: 3 of 6 chunks = 50 %.
    let rig = rig(&["tickets"]);
    let id = job(&rig, &["companies", "tickets"], 30).await;
    rig.engine.run_job(&id, None).await.unwrap();
    let found = alerts(&rig, AlertKind::LowCompletionRate).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].value, 0.5);
    assert_eq!(found[0].threshold, 0.9);
    assert!(found[0].message.contains("50 %"), "{}", found[0].message);
    // A job whose chunks all succeed raises none.
    let ok = job(&rig, &["companies"], 30).await;
    rig.engine.run_job(&ok, None).await.unwrap();
    let found = alerts(&rig, AlertKind::LowCompletionRate).await;
    assert!(
        found
            .iter()
            .all(|a| a.job_id.as_deref() != Some(ok.as_str()))
    );
    // Progress went out as metrics, the last one at 100 %.
    let records = rig.metrics.0.lock().unwrap().clone();
    let progress: Vec<_> = records
        .iter()
        .filter(|r| r["event"] == "progress" && r["JobId"] == ok.as_str())
        .collect();
    let last = progress.last().expect("progress metrics");
    assert_eq!(last["ProgressPercent"], 100.0);
    assert_eq!(last["ChunksCompleted"], 3.0);
    assert_eq!(
        last["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "AvesaBackfill"
    );
}

#[tokio::test]
async fn a_job_running_longer_than_twenty_hours_raises_an_alert_once() {
    let rig = rig(&[]);
    let id = job(&rig, &["tickets"], 20).await;
    let started = Utc::now();
    let claim = rig
        .store
        .claim_next_chunk(&id, "someone:1:1", started + Duration::hours(30), started)
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Chunk(_)));
    let early = rig
        .engine
        .sweep_alerts(started + Duration::hours(19))
        .await
        .unwrap();
    assert!(early.is_empty(), "{early:?}");
    let late = rig
        .engine
        .sweep_alerts(started + Duration::hours(21))
        .await
        .unwrap();
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(late[0].kind, AlertKind::LongRunningJob);
    assert!(late[0].message.contains("21.0 h"), "{}", late[0].message);
    let again = rig
        .engine
        .sweep_alerts(started + Duration::hours(22))
        .await
        .unwrap();
    assert!(again.is_empty(), "stored once per job");
    assert_eq!(alerts(&rig, AlertKind::LongRunningJob).await.len(), 1);
}
