//! The handle against a real engine and SQLite store, with sources that always refuse (so
//! every chunk fails at once): commands, refusals and the snapshot.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;

use super::*;
use crate::domain::{ChunkStatus, JobMeta};
use crate::engine::ops::{DispatchError, Halt, Halted, Placement, Start};
use crate::engine::{EngineOptions, NoSource, SourceProvider};
use crate::sink::RawSink;
use crate::sources::Source;
use crate::store::SqliteStore;

struct NoSources;

impl SourceProvider for NoSources {
    fn source(&self, tenant_id: &str, service: Service) -> Result<Arc<dyn Source>, NoSource> {
        Err(format!("no {service} source for {tenant_id} in this test").into())
    }
}

fn engine(dir: &Path) -> (Engine, Arc<Config>) {
    engine_with(dir, Arc::new(NoSources))
}

fn engine_with(dir: &Path, sources: Arc<dyn SourceProvider>) -> (Engine, Arc<Config>) {
    let config =
        Arc::new(Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")).unwrap());
    let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    let sink = RawSink::local(&dir.join("data")).unwrap();
    let engine = Engine::new(
        config.clone(),
        store.clone(),
        store,
        sink,
        sources,
        EngineOptions::default(),
    );
    (engine, config)
}

const POLICY: RefreshPolicy = RefreshPolicy {
    idle: Duration::from_millis(50),
    min_refresh: Duration::from_millis(10),
    detect: Duration::from_millis(100),
};

fn handle(dir: &Path) -> EngineHandle {
    let (engine, config) = engine(dir);
    EngineHandle::spawn(engine, config, POLICY)
}

fn request() -> PlanRequest {
    PlanRequest {
        tenant_id: "acme".into(),
        service: Service::Connectwise,
        tables: vec!["tickets".into()],
        start: Some(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()),
        end: Some(Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap()),
        chunk_size_days: Some(30),
    }
}

/// Waits for a snapshot that satisfies `ok`.
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

#[tokio::test]
async fn commands_run_jobs_and_the_snapshot_follows() {
    let dir = tempfile::tempdir().unwrap();
    let h = handle(dir.path());
    assert_eq!(
        h.snapshot().borrow().tenants.len(),
        3,
        "tenants before any refresh"
    );

    let cloud = h
        .send(Command::Trigger {
            request: request(),
            target: Target::Cloud,
        })
        .await;
    assert_eq!(
        cloud.unwrap_err().to_string(),
        "cloud dispatch is not configured: start the console with --cloud"
    );

    let preview = h.preview(&request(), Utc::now()).await.unwrap();
    assert_eq!(preview.plan.total_chunks(), 2);
    assert_eq!(preview.estimate.api_calls, 2);

    let started = h
        .send(Command::Trigger {
            request: request(),
            target: Target::Local,
        })
        .await
        .unwrap();
    let id = "backfill_acme_connectwise_20250101";
    assert_eq!(started, format!("started {id} (2 chunks)"));

    // Every chunk fails at once (no source): the job settles with errors and is no longer
    // running here.
    let snap = until(&h, |s| {
        s.jobs
            .iter()
            .any(|j| j.job_id == id && j.status.is_terminal())
            && s.running_here.is_empty()
    })
    .await;
    let job = snap.jobs.iter().find(|j| j.job_id == id).unwrap();
    assert_eq!(job.failed_chunks, 2);

    let again = h.send(Command::Resume { job_id: id.into() }).await;
    assert!(
        matches!(
            &again,
            Err(HandleError::Refused(Refusal::NothingToResume { .. }))
        ),
        "{again:?}"
    );

    h.send(Command::Watch {
        job_id: Some(id.into()),
    })
    .await
    .unwrap();
    let snap = until(&h, |s| s.chunks.contains_key(id)).await;
    let chunks = &snap.chunks[id];
    assert_eq!(chunks.len(), 2);
    assert!(chunks.iter().all(|c| c.status == ChunkStatus::Failed));
    assert!(
        chunks[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("no connectwise source for acme"),
        "{:?}",
        chunks[0].last_error
    );

    let retry = h
        .send(Command::RetryFailed { job_id: id.into() })
        .await
        .unwrap();
    assert_eq!(retry, format!("retrying 2 failed chunk(s) of {id}"));
    let after = Some(Utc::now());
    until(&h, |s| {
        s.taken_at > after
            && s.jobs
                .iter()
                .any(|j| j.job_id == id && j.status.is_terminal())
            && s.running_here.is_empty()
    })
    .await;
    let cancel = h.send(Command::Cancel { job_id: id.into() }).await;
    assert!(
        cancel.is_err(),
        "a finished job cannot be cancelled: {cancel:?}"
    );
    let missing = h
        .send(Command::Pause {
            job_id: "nope".into(),
        })
        .await;
    assert!(
        matches!(missing, Err(HandleError::Refused(Refusal::NotFound(_)))),
        "{missing:?}"
    );
}

/// A cloud that writes down what it was asked and runs every job in a new execution.
#[derive(Default)]
struct FakeCloud {
    calls: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Dispatch for FakeCloud {
    async fn placement(&self, job: &Job) -> Result<Placement, DispatchError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("placement {}", job.job_id));
        Ok(Placement::Idle)
    }
    async fn start(&self, job: &Job, _meta: &JobMeta) -> Result<Start, DispatchError> {
        let mut calls = self.calls.lock().unwrap();
        calls.push(format!("start {}", job.job_id));
        Ok(Start::Started {
            by: Some(format!("fake-{}", calls.len())),
        })
    }
    async fn halt(&self, job_id: &str, halt: Halt) -> Halted {
        self.calls
            .lock()
            .unwrap()
            .push(format!("halt {job_id} {halt:?}"));
        match halt {
            Halt::Cancel => Halted::Execution("fake-2".into()),
            Halt::Pause => Halted::Nothing,
        }
    }
}

#[tokio::test]
async fn in_cloud_mode_job_commands_go_to_the_cloud_and_nothing_runs_here() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, config) = engine(dir.path());
    let cloud = Arc::new(FakeCloud::default());
    let h = EngineHandle::spawn_cloud(engine, config, POLICY, cloud.clone());
    let id = "backfill_acme_connectwise_20250101";
    let text = |r: Result<String, HandleError>| r.unwrap_or_else(|e| format!("refused: {e}"));

    let local = h
        .send(Command::Trigger {
            request: request(),
            target: Target::Local,
        })
        .await;
    assert!(
        matches!(&local, Err(HandleError::Refused(Refusal::NotHere(m))) if m.contains("without --cloud")),
        "{local:?}"
    );
    let started = h
        .send(Command::Trigger {
            request: request(),
            target: Target::Cloud,
        })
        .await;
    assert_eq!(
        text(started),
        format!("started {id} (2 chunks) in execution fake-1")
    );
    let mut bad = request();
    bad.tenant_id = "nobody".into();
    let refused = h
        .send(Command::Trigger {
            request: bad,
            target: Target::Cloud,
        })
        .await;
    assert!(
        matches!(refused, Err(HandleError::Refused(Refusal::Plan(_)))),
        "a plan that cannot be made goes nowhere"
    );
    let answers = [
        Command::Pause { job_id: id.into() },
        Command::Unpause { job_id: id.into() },
        Command::Cancel { job_id: id.into() },
        Command::Resume { job_id: id.into() },
    ]
    .into_iter()
    .map(|c| {
        let h = h.clone();
        async move { text(h.send(c).await) }
    });
    let mut said = Vec::new();
    for a in answers {
        said.push(a.await);
    }
    assert_eq!(
        said,
        [
            format!("paused {id}; chunks in flight finish first"),
            format!("unpaused {id} in execution fake-3"),
            format!(
                "cancelled {id} (0 of 2 chunks completed, 0 records); stopped execution fake-2"
            ),
            format!("refused: job {id} is cancelled; nothing to resume"),
        ]
    );
    assert_eq!(
        *cloud.calls.lock().unwrap(),
        [
            format!("start {id}"),
            format!("halt {id} Pause"),
            format!("start {id}"),
            format!("halt {id} Cancel"),
            format!("placement {id}"),
        ]
    );
    assert!(h.snapshot().borrow().running_here.is_empty());
}

/// Counts ten records in any window (or refuses to count); never asked for a page here.
struct TenRecords {
    refuse: bool,
}

#[async_trait::async_trait]
impl Source for TenRecords {
    fn service(&self) -> Service {
        Service::Connectwise
    }
    async fn fetch_page(
        &self,
        _: &crate::config::EndpointDef,
        _: &crate::domain::Window,
        _: Option<&str>,
    ) -> Result<crate::sources::Page, crate::sources::SourceError> {
        Err(crate::sources::SourceError::Config(
            "no pages in this test".into(),
        ))
    }
    async fn count(
        &self,
        _: &crate::config::EndpointDef,
        _: &crate::domain::Window,
    ) -> Result<u64, crate::sources::SourceError> {
        if self.refuse {
            return Err(crate::sources::SourceError::from_status(
                400,
                None,
                "no counts here".into(),
                None,
            ));
        }
        Ok(10)
    }
}

struct Counted {
    refuse: bool,
}

impl SourceProvider for Counted {
    fn source(&self, _: &str, _: Service) -> Result<Arc<dyn Source>, NoSource> {
        Ok(Arc::new(TenRecords {
            refuse: self.refuse,
        }))
    }
}

#[tokio::test]
async fn the_preview_sizes_windows_by_counts_unless_a_chunk_size_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, config) = engine_with(dir.path(), Arc::new(Counted { refuse: false }));
    let h = EngineHandle::spawn(engine, config, POLICY);
    let counted = PlanRequest {
        chunk_size_days: None,
        ..request()
    };
    let preview = h.preview(&counted, Utc::now()).await.unwrap();
    // Ten records over two months: one window, one count call, one page.
    assert_eq!(preview.plan.total_chunks(), 1);
    assert_eq!(preview.plan.tables[0].records, Some(vec![10]));
    assert_eq!(preview.estimate.count_calls, 1);
    assert_eq!(preview.estimate.api_calls, 2);
    let fixed = h.preview(&request(), Utc::now()).await.unwrap();
    assert_eq!(fixed.plan.total_chunks(), 2, "30-day windows, as asked");
    assert_eq!(fixed.plan.tables[0].records, None);
}

#[tokio::test]
async fn a_table_that_cannot_be_counted_keeps_the_configured_windows() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, config) = engine_with(dir.path(), Arc::new(Counted { refuse: true }));
    let h = EngineHandle::spawn(engine, config, POLICY);
    let request = PlanRequest {
        chunk_size_days: None,
        ..request()
    };
    let preview = h.preview(&request, Utc::now()).await.unwrap();
    // ConnectWise's configured 30 days over Jan 1 - Mar 1: two windows, no counts.
    assert_eq!(preview.plan.total_chunks(), 2);
    assert_eq!(preview.plan.tables[0].records, None);
    assert_eq!(preview.estimate.count_calls, 0);
}
