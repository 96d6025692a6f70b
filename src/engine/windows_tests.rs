//! Windows of one table in flight at once, against a real engine and SQLite store: a later
//! window that finishes first moves nothing that means "every window has landed" (the job's
//! status, its sync markers, the hand-off).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::Notify;

use super::planner::{self, PlanRequest};
use super::{Engine, EngineOptions, NoSource, SourceProvider};
use crate::config::{Config, EndpointDef};
use crate::domain::{ChunkStatus, JobStatus, Service, Window};
use crate::sink::RawSink;
use crate::sources::{Page, Source, SourceError};
use crate::store::SqliteStore;

/// A source whose window starting at `held` answers its first page at once and its second only
/// once `gate` opens (the table's first request succeeds, so no window waits for its turn);
/// every other window answers at once with one empty page.
#[derive(Clone)]
struct Gated {
    held: DateTime<Utc>,
    gate: Arc<Notify>,
}

#[async_trait]
impl Source for Gated {
    fn service(&self) -> Service {
        Service::Connectwise
    }

    async fn fetch_page(
        &self,
        _endpoint: &EndpointDef,
        window: &Window,
        cursor: Option<&str>,
    ) -> Result<Page, SourceError> {
        let held = window.start == self.held;
        if held && cursor.is_some() {
            self.gate.notified().await;
        }
        Ok(Page {
            body: bytes::Bytes::from_static(b"[]").into(),
            bytes: 2,
            next: (held && cursor.is_none()).then(|| "2".to_string()),
            ..Page::default()
        })
    }

    async fn count(&self, _endpoint: &EndpointDef, _window: &Window) -> Result<u64, SourceError> {
        Ok(0)
    }
}

impl SourceProvider for Gated {
    fn source(&self, _tenant_id: &str, _service: Service) -> Result<Arc<dyn Source>, NoSource> {
        Ok(Arc::new(self.clone()))
    }
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

fn engine(dir: &Path, source: Gated) -> Engine {
    engine_with(dir, source, |_| {})
}

/// `engine` with the shipped configuration changed by `change`.
fn engine_with(dir: &Path, source: Gated, change: impl FnOnce(&mut Config)) -> Engine {
    let mut config = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")).unwrap();
    change(&mut config);
    let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    Engine::new(
        Arc::new(config),
        store.clone(),
        store,
        RawSink::local(&dir.join("data")).unwrap(),
        Arc::new(source),
        EngineOptions {
            pace_requests: false,
            auto_transform: false,
            poll_interval: Duration::from_millis(20),
            ..EngineOptions::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_window_finishing_first_moves_no_marker_until_every_window_landed() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Notify::new());
    let engine = engine(
        dir.path(),
        Gated {
            held: start(),
            gate: gate.clone(),
        },
    );
    let request = PlanRequest {
        tenant_id: "acme".into(),
        service: Service::Connectwise,
        tables: vec!["tickets".into()],
        start: Some(start()),
        end: Some(Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap()),
        chunk_size_days: Some(30),
    };
    let plan = planner::plan(engine.config(), &request, Utc::now()).unwrap();
    let job = engine
        .create_job(&plan, Utc::now())
        .await
        .unwrap()
        .job()
        .clone();
    assert_eq!(job.total_chunks, 2);
    let run = tokio::spawn({
        let (engine, id) = (engine.clone(), job.job_id.clone());
        async move { engine.run_job(&id, None).await }
    });

    // The second window lands while the first is still in flight.
    let mut later_done = false;
    for _ in 0..500 {
        let chunks = engine.store().chunks(&job.job_id).await.unwrap();
        if chunks[1].status == ChunkStatus::Succeeded {
            assert_eq!(chunks[0].status, ChunkStatus::Running);
            later_done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        later_done,
        "the second window never finished while the first was in flight"
    );
    let now = engine.store().get_job(&job.job_id).await.unwrap().unwrap();
    assert_eq!((now.status, now.completed_chunks), (JobStatus::Running, 1));
    let markers = || {
        engine
            .lifecycle()
            .markers(Some("acme"), Some(Service::Connectwise))
    };
    assert!(markers().await.unwrap().is_empty(), "a marker moved early");
    // The cloud's hand-off task, run now, moves nothing either.
    engine.finish_job(&job.job_id).await.unwrap();
    assert!(
        markers().await.unwrap().is_empty(),
        "the hand-off ran early"
    );

    gate.notify_one();
    let outcome = run.await.unwrap().unwrap();
    assert_eq!(outcome.status, JobStatus::Completed);
    let moved = markers().await.unwrap();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(
        (moved[0].table.as_str(), moved[0].last_updated),
        ("tickets", job.window.end)
    );
}

/// A lease of a dead process of this host is broken once. Here its chunk (tickets) must
/// wait for companies, whose chunk a live process on another host holds: a claimer cannot
/// take it, and each step used to break the lease again and answer "look again now", a
/// tight loop of breaks and log lines. Now the expired lease is left alone and the claimer
/// waits a poll interval.
#[tokio::test]
async fn a_dead_lease_the_claimer_cannot_take_yet_is_broken_once() {
    let dir = tempfile::tempdir().unwrap();
    let source = Gated {
        held: start(),
        gate: Arc::new(Notify::new()),
    };
    let engine = engine_with(dir.path(), source, |c| {
        let cw = c.backfill.service_settings.get_mut(&Service::Connectwise);
        cw.unwrap().strict_table_order = true;
    });
    let request = PlanRequest {
        tenant_id: "acme".into(),
        service: Service::Connectwise,
        tables: vec!["companies".into(), "tickets".into()],
        start: Some(start()),
        end: Some(Utc.with_ymd_and_hms(2025, 1, 20, 0, 0, 0).unwrap()),
        chunk_size_days: Some(30),
    };
    let plan = planner::plan(engine.config(), &request, Utc::now()).unwrap();
    let job = engine.create_job(&plan, Utc::now()).await.unwrap();
    let job_id = job.job().job_id.clone();
    // A pid beyond Linux's pid_max on this host: a holder that is surely gone.
    let me = super::executor::local_owner_id();
    let host = me.rsplitn(3, ':').nth(2).unwrap();
    let dead = format!("{host}:4294967290:abcd");
    let until = Utc::now() + chrono::Duration::hours(1);
    for (owner, table) in [
        ("elsewhere:1:live", "companies"),
        (dead.as_str(), "tickets"),
    ] {
        let claim = engine
            .store()
            .claim_next_chunk(&job_id, owner, until, Utc::now());
        match claim.await.unwrap() {
            crate::store::Claim::Chunk(c) => assert_eq!(c.key.table, table),
            other => panic!("{owner} claimed nothing: {other:?}"),
        }
    }
    let deadline = super::Deadline::at(None);
    let mut at_once = 0;
    for _ in 0..30 {
        let step = engine.step_job(&job_id, &deadline).await.unwrap();
        match step {
            super::Step::Wait { until: Some(t) } if t <= Utc::now() => at_once += 1,
            super::Step::Wait { .. } => {}
            other => panic!("the claimer should wait: {other:?}"),
        }
    }
    assert_eq!(at_once, 1, "the dead lease was broken {at_once} times");
    let chunks = engine.store().chunks(&job_id).await.unwrap();
    let tickets = chunks.iter().find(|c| c.key.table == "tickets").unwrap();
    assert!(tickets.lease_expires_at.is_some_and(|t| t <= Utc::now()));
}
