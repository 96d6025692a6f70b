//! The handle's lifecycle against a real engine and SQLite store (markers, alerts, results
//! in the same file): detection reasons and stored alerts in the snapshot, verify and
//! transform commands, and the scheduler holding a job for the off-peak window.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeZone;

use super::*;
use crate::config::EndpointDef;
use crate::domain::{AlertKind, JobKind, JobMeta, Trigger, Window};
use crate::engine::detect::Check;
use crate::engine::ops::Refusal;
use crate::engine::{EngineOptions, NoSource, SourceProvider};
use crate::sink::RawSink;
use crate::sources::{Page, Source, SourceError};
use crate::store::{LifecycleStore, SqliteStore};

/// acme's ConnectWise refuses every page (400: its chunks fail at once) and counts 5
/// records in any window; every other service has no source.
struct AcmeOnly;

struct Refusing;

#[async_trait]
impl Source for Refusing {
    fn service(&self) -> Service {
        Service::Connectwise
    }

    async fn fetch_page(
        &self,
        _endpoint: &EndpointDef,
        _window: &Window,
        _cursor: Option<&str>,
    ) -> Result<Page, SourceError> {
        Err(SourceError::Http {
            status: 400,
            message: "refused in this test".into(),
            retry_after: None,
        })
    }

    async fn count(&self, _endpoint: &EndpointDef, _window: &Window) -> Result<u64, SourceError> {
        Ok(5)
    }
}

impl SourceProvider for AcmeOnly {
    fn source(&self, tenant_id: &str, service: Service) -> Result<Arc<dyn Source>, NoSource> {
        if (tenant_id, service) == ("acme", Service::Connectwise) {
            return Ok(Arc::new(Refusing));
        }
        Err(format!("no {service} source for {tenant_id} in this test").into())
    }
}

const POLICY: RefreshPolicy = RefreshPolicy {
    idle: Duration::from_millis(50),
    min_refresh: Duration::from_millis(10),
    detect: Duration::from_millis(100),
};

/// The engine over one SQLite file (jobs and lifecycle), with the off-peak window moved to
/// hours from now so a job that waits for it really waits.
fn engine(dir: &Path) -> (Engine, Arc<Config>, Arc<SqliteStore>) {
    let mut config = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")).unwrap();
    let now = Utc::now();
    let hhmm = |h: i64| {
        (now + chrono::Duration::hours(h))
            .format("%H:%M")
            .to_string()
    };
    config.backfill.scheduling.off_peak_start = hhmm(3);
    config.backfill.scheduling.off_peak_end = hhmm(4);
    let config = Arc::new(config);
    let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    let sink = RawSink::local(&dir.join("data")).unwrap();
    let engine = Engine::new(
        config.clone(),
        store.clone(),
        store.clone(),
        sink,
        Arc::new(AcmeOnly),
        EngineOptions::default(),
    );
    (engine, config, store)
}

fn request(start: (i32, u32)) -> PlanRequest {
    PlanRequest {
        tenant_id: "acme".into(),
        service: Service::Connectwise,
        tables: vec!["tickets".into()],
        start: Some(Utc.with_ymd_and_hms(start.0, start.1, 1, 0, 0, 0).unwrap()),
        end: Some(
            Utc.with_ymd_and_hms(start.0, start.1 + 2, 1, 0, 0, 0)
                .unwrap(),
        ),
        chunk_size_days: Some(30),
    }
}

async fn until(h: &EngineHandle, ok: impl Fn(&Snapshot) -> bool) -> Arc<Snapshot> {
    let mut rx = h.snapshot();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let snap = rx.borrow_and_update().clone();
            if ok(&snap) {
                return snap;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("the snapshot got there")
}

fn decision<'a>(s: &'a Snapshot, tenant: &str, service: Service) -> &'a Decision {
    s.detection
        .iter()
        .find(|d| d.tenant_id == tenant && d.service == service)
        .unwrap()
}

#[tokio::test]
async fn the_snapshot_carries_detection_reasons_and_stored_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, config, store) = engine(dir.path());
    let stored = Alert {
        kind: AlertKind::SyncGap,
        subject: "globex/connectwise/tickets/chain".into(),
        tenant_id: "globex".into(),
        service: Service::Connectwise,
        job_id: None,
        message: "globex connectwise tickets: no completed backfill or sync covers [a, b)".into(),
        value: 1.0,
        threshold: 0.0,
        // Whole seconds: the store keeps microseconds.
        raised_at: Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap(),
    };
    assert!(store.raise_alert(&stored).await.unwrap());
    let h = EngineHandle::spawn(engine, config, POLICY);

    let snap = until(&h, |s| !s.detection.is_empty() && !s.alerts.is_empty()).await;
    assert_eq!(*snap.alerts, vec![stored]);
    assert!(snap.detected_at.is_some() && snap.detection_error.is_none());
    let acme = decision(&snap, "acme", Service::Connectwise);
    assert!(acme.selected, "{acme:?}");
    assert_eq!(acme.check, Check::Freshness);
    assert_eq!(
        acme.reason,
        "no completed backfill and no raw data: newly connected"
    );
    let sn = decision(&snap, "acme", Service::Servicenow);
    assert!(!sn.selected);
    assert_eq!(sn.check, Check::Configured);
    assert!(
        sn.reason
            .contains("credentials not usable: no servicenow source for acme"),
        "{}",
        sn.reason
    );
    assert_eq!(
        snap.canonical.get(&Service::Connectwise).map(Vec::len),
        Some(4),
        "the canonical tables a ConnectWise transform rebuilds"
    );

    // A job started here ends (every chunk refused): detection runs again and says so, and
    // the engine's completion-rate alert is in the store and the snapshot.
    let started = h
        .send(Command::Trigger {
            request: request((2025, 1)),
            target: Target::Local,
        })
        .await
        .unwrap();
    let id = "backfill_acme_connectwise_20250101";
    assert_eq!(started, format!("started {id} (2 chunks)"));
    let snap = until(&h, |s| {
        decision(s, "acme", Service::Connectwise)
            .reason
            .contains("completed_with_errors")
            && s.alerts
                .iter()
                .any(|a| a.kind == AlertKind::LowCompletionRate)
    })
    .await;
    let acme = decision(&snap, "acme", Service::Connectwise);
    assert!(!acme.selected);
    assert_eq!(acme.check, Check::History);
    assert!(acme.reason.starts_with(&format!("backfill {id} ")));
    let meta = store.job_metas(&[id.to_string()]).await.unwrap();
    assert_eq!(
        (meta[0].priority, meta[0].trigger),
        (1, Trigger::Manual),
        "hinted as a manual trigger"
    );
}

#[tokio::test]
async fn verify_and_transform_answer_from_tasks_and_the_scheduler_holds_off_peak_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, config, store) = engine(dir.path());
    // A job whose hints say off-peak, made the way `trigger --auto-detect` makes them.
    let plan = engine.plan(&request((2024, 1)), Utc::now()).unwrap();
    let waiter = engine
        .create_job(&plan, Utc::now())
        .await
        .unwrap()
        .job()
        .clone();
    engine
        .set_job_meta(&JobMeta {
            trigger: Trigger::Auto,
            wait_off_peak: true,
            ..JobMeta::default_for(&waiter.job_id)
        })
        .await
        .unwrap();
    let h = EngineHandle::spawn(engine, config, POLICY);
    let mut events = h.subscribe();

    let queued = h
        .send(Command::Resume {
            job_id: waiter.job_id.clone(),
        })
        .await
        .unwrap();
    assert!(
        queued.starts_with(&format!(
            "resumed {}; queued: waits for the off-peak window (opens ",
            waiter.job_id
        )),
        "{queued}"
    );
    let snap = until(&h, |s| s.waiting.contains_key(&waiter.job_id)).await;
    assert!(snap.waiting[&waiter.job_id].starts_with("waits for the off-peak window"));
    assert!(snap.running_here.is_empty());
    let deferred = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(EngineEvent::JobDeferred { job_id, until }) = events.recv().await {
                return (job_id, until);
            }
        }
    })
    .await
    .expect("a JobDeferred event");
    assert_eq!(deferred.0, waiter.job_id);
    assert!(deferred.1 > Utc::now());
    let again = h
        .send(Command::Resume {
            job_id: waiter.job_id.clone(),
        })
        .await;
    assert!(
        matches!(
            &again,
            Err(HandleError::Refused(Refusal::AlreadyWaiting { .. }))
        ),
        "{again:?}"
    );
    h.send(Command::Cancel {
        job_id: waiter.job_id.clone(),
    })
    .await
    .unwrap();
    until(&h, |s| s.waiting.is_empty()).await;

    // A manual trigger runs at once; verify refuses it until it has ended.
    h.send(Command::Trigger {
        request: request((2025, 1)),
        target: Target::Local,
    })
    .await
    .unwrap();
    let id = "backfill_acme_connectwise_20250101";
    until(&h, |s| {
        s.jobs
            .iter()
            .any(|j| j.job_id == id && j.status.is_terminal())
            && s.running_here.is_empty()
    })
    .await;
    let verified = h.send(Command::Verify { job_id: id.into() }).await.unwrap();
    assert_eq!(
        verified,
        format!("verified {id}: 10 record(s) missing in 2 of 2 chunk(s)")
    );
    h.send(Command::Watch {
        job_id: Some(id.into()),
    })
    .await
    .unwrap();
    let snap = until(&h, |s| {
        s.lifecycle
            .get(id)
            .is_some_and(|l| !l.verification.is_empty())
    })
    .await;
    let life = &snap.lifecycle[id];
    let counts: Vec<(u64, u64)> = life
        .verification
        .iter()
        .map(|v| (v.landed, v.source_count))
        .collect();
    assert_eq!(counts, vec![(0, 5), (0, 5)]);
    assert_eq!(
        life.meta.as_ref().map(|m| m.finalized_at),
        Some(None),
        "completed with errors: no hand-off"
    );
    assert_eq!(JobKind::of(id), JobKind::Backfill);
    let missing = h
        .send(Command::Verify {
            job_id: "nope".into(),
        })
        .await;
    assert_eq!(
        missing.map_err(|e| e.to_string()),
        Err("job 'nope' not found".into())
    );

    // Transform: nothing landed, so nothing to rebuild; unknown services are refused.
    let t = h
        .send(Command::Transform {
            tenant_id: "acme".into(),
            service: Service::Connectwise,
        })
        .await;
    assert_eq!(
        t.map_err(|e| e.to_string()),
        Ok("nothing to transform: acme connectwise has no raw data yet".into())
    );
    let t = h
        .send(Command::Transform {
            tenant_id: "globex".into(),
            service: Service::Salesforce,
        })
        .await;
    assert_eq!(
        t.map_err(|e| e.to_string()),
        Err("tenant globex has no salesforce service".into())
    );
    drop(store);
}
