//! The handle against a real engine and SQLite store, with sources that always refuse (so
//! every chunk fails at once): commands, refusals and the snapshot.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;

use super::*;
use crate::domain::ChunkStatus;
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
    let config =
        Arc::new(Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")).unwrap());
    let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    let sink = RawSink::local(&dir.join("data")).unwrap();
    let engine = Engine::new(
        config.clone(),
        store.clone(),
        store,
        sink,
        Arc::new(NoSources),
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
        cloud,
        Err(HandleError::Refused(
            "cloud dispatch is not configured: start the console with --cloud".into()
        ))
    );

    let preview = h.preview(&request(), Utc::now()).unwrap();
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
        matches!(&again, Err(HandleError::Refused(m)) if m.ends_with("nothing to resume")),
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
        matches!(missing, Err(HandleError::Refused(_))),
        "{missing:?}"
    );
}

/// A cloud that writes down what it was asked.
#[derive(Default)]
struct FakeCloud {
    calls: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl CloudDispatch for FakeCloud {
    async fn trigger(&self, plan: &Plan) -> Result<String, String> {
        let (job, _) = plan.to_job(Utc::now());
        self.calls
            .lock()
            .unwrap()
            .push(format!("trigger {}", job.job_id));
        Ok(format!("started {}", job.job_id))
    }
    async fn cancel(&self, job_id: &str) -> Result<String, String> {
        self.calls.lock().unwrap().push(format!("cancel {job_id}"));
        Err(format!("job {job_id} is already completed"))
    }
    async fn resume(&self, job_id: &str, retry_failed: bool) -> Result<String, String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("resume {job_id} retry={retry_failed}"));
        Ok(format!("resumed {job_id}"))
    }
}

#[tokio::test]
async fn in_cloud_mode_job_commands_go_to_the_cloud_and_nothing_runs_here() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, config) = engine(dir.path());
    let cloud = Arc::new(FakeCloud::default());
    let h = EngineHandle::spawn_cloud(engine, config, POLICY, cloud.clone());
    let id = "backfill_acme_connectwise_20250101";

    let local = h
        .send(Command::Trigger {
            request: request(),
            target: Target::Local,
        })
        .await;
    assert!(
        matches!(&local, Err(HandleError::Refused(m)) if m.contains("without --cloud")),
        "{local:?}"
    );
    let started = h
        .send(Command::Trigger {
            request: request(),
            target: Target::Cloud,
        })
        .await;
    assert_eq!(started, Ok(format!("started {id}")));
    let mut bad = request();
    bad.tenant_id = "nobody".into();
    let refused = h
        .send(Command::Trigger {
            request: bad,
            target: Target::Cloud,
        })
        .await;
    assert!(refused.is_err(), "a plan that cannot be made goes nowhere");
    for command in [
        Command::Cancel { job_id: id.into() },
        Command::Resume { job_id: id.into() },
        Command::RetryFailed { job_id: id.into() },
        Command::Unpause { job_id: id.into() },
    ] {
        let _ = h.send(command).await;
    }
    assert_eq!(
        *cloud.calls.lock().unwrap(),
        [
            format!("trigger {id}"),
            format!("cancel {id}"),
            format!("resume {id} retry=false"),
            format!("resume {id} retry=true"),
            format!("resume {id} retry=false"),
        ]
    );
    let cancel = h.send(Command::Cancel { job_id: id.into() }).await;
    assert_eq!(
        cancel,
        Err(HandleError::Refused(format!(
            "job {id} is already completed"
        ))),
        "the cloud's refusal reaches the status bar"
    );
    // Pausing is a store write, as locally; nothing ever runs in this process.
    let paused = h.send(Command::Pause { job_id: id.into() }).await;
    assert!(
        matches!(&paused, Err(HandleError::Refused(m)) if m.contains("not found")),
        "{paused:?}"
    );
    assert!(h.snapshot().borrow().running_here.is_empty());
}
