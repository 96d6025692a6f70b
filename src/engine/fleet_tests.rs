//! Admission passes on a SQLite store with a fake launcher: racing admitters never admit past
//! the limits, slots free when runs end, and an admitted job without a run is started again.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::config::Config;
use crate::domain::{Job, Service, Window};
use crate::engine::{EngineOptions, NoSource, SourceProvider};
use crate::sink::RawSink;
use crate::sources::Source;
use crate::store::SqliteStore;

struct NoSources;

impl SourceProvider for NoSources {
    fn source(&self, _tenant_id: &str, _service: Service) -> Result<Arc<dyn Source>, NoSource> {
        Err(NoSource::new("no sources in this test"))
    }
}

/// Runs as a launcher sees them; `launch` starts a run, `end` ends one.
#[derive(Default)]
struct Runs {
    state: Mutex<HashMap<String, RunState>>,
    launches: Mutex<Vec<String>>,
}

impl Runs {
    fn running(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        let mut out: Vec<String> = state
            .iter()
            .filter(|(_, s)| **s == RunState::Running)
            .map(|(id, _)| id.clone())
            .collect();
        out.sort();
        out
    }

    fn end(&self, job_id: &str, at: DateTime<Utc>) {
        let mut state = self.state.lock().unwrap();
        state.insert(job_id.into(), RunState::Ended { at: Some(at) });
    }
}

#[async_trait]
impl Launcher for Runs {
    async fn run_state(&self, job_id: &str) -> Result<RunState, DispatchError> {
        let state = self.state.lock().unwrap();
        Ok(state.get(job_id).copied().unwrap_or(RunState::Never))
    }

    async fn launch(&self, job_id: &str, _launch: &str) -> Result<Start, DispatchError> {
        self.launches.lock().unwrap().push(job_id.into());
        let mut state = self.state.lock().unwrap();
        state.insert(job_id.into(), RunState::Running);
        Ok(Start::Started { by: None })
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap()
}

/// An engine on the SQLite file in `dir` (each call its own connection), admitting at most
/// 3 jobs from at most 2 tenants.
fn engine(dir: &Path) -> Engine {
    let mappings = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    let mut config = Config::load(&mappings).unwrap();
    let backfill = &mut config.backfill;
    backfill.default_settings.max_concurrent_jobs = 3;
    backfill.scheduling.max_parallel_tenants = 2;
    let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    let sink = RawSink::local(&dir.join("data")).unwrap();
    let sources = Arc::new(NoSources);
    Engine::new(
        Arc::new(config),
        store.clone(),
        store,
        sink,
        sources,
        EngineOptions::default(),
    )
}

/// Three tenants with two jobs each, stored.
async fn six_jobs(engine: &Engine) -> Vec<Job> {
    let mut jobs = Vec::new();
    for (i, tenant) in ["a", "b", "c"].iter().enumerate() {
        for n in 0..2u32 {
            let start = Utc.with_ymd_and_hms(2025, 1 + n, 1, 0, 0, 0).unwrap();
            let job = Job {
                job_id: format!("backfill_{tenant}_{n}"),
                tenant_id: tenant.to_string(),
                service: Service::Connectwise,
                tables: vec!["tickets".into()],
                status: JobStatus::Pending,
                window: Window::new(start, start + chrono::Duration::days(10)),
                chunk_size_days: 10,
                max_attempts: 3,
                total_chunks: 0,
                completed_chunks: 0,
                failed_chunks: 0,
                records: 0,
                created_at: t0() + chrono::Duration::seconds(i as i64),
                updated_at: t0(),
                finished_at: None,
                skipped_fields: Vec::new(),
            };
            engine
                .store()
                .create_job(job.clone(), Vec::new(), false)
                .await
                .unwrap();
            jobs.push(job);
        }
    }
    jobs
}

fn entry(job: &Job) -> FleetEntry {
    FleetEntry {
        job_id: job.job_id.clone(),
        tenant_id: job.tenant_id.clone(),
        priority: 1,
        wait_off_peak: false,
        queued_at: job.created_at,
        admitted_at: None,
        launch: String::new(),
    }
}

fn tenants(running: &[String]) -> usize {
    let mut t: Vec<&str> = running.iter().map(|id| &id[9..10]).collect();
    t.sort();
    t.dedup();
    t.len()
}

/// Six admitters, each on its own connection, queue one job each at once; then runs end one
/// by one and passes admit the rest. Never more than 3 runs, from more than 2 tenants; each
/// job started exactly once; the queue ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_admitters_never_admit_past_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = six_jobs(&engine(dir.path())).await;
    let runs = Arc::new(Runs::default());
    let mut tasks = Vec::new();
    for job in &jobs {
        let (engine, runs, entry) = (engine(dir.path()), runs.clone(), entry(job));
        tasks.push(tokio::spawn(async move {
            engine
                .admit(runs.as_ref(), Some(entry), t0())
                .await
                .unwrap()
        }));
    }
    let mut waiting = 0;
    for t in tasks {
        waiting += t.await.unwrap().waiting.len();
    }
    assert!(waiting > 0, "some admitter saw jobs waiting");
    let engine = engine(dir.path());
    let mut now = t0();
    for _ in 0..6 {
        let running = runs.running();
        assert!(running.len() <= 3, "{running:?}");
        assert!(tenants(&running) <= 2, "{running:?}");
        let queue = engine.store().fleet().await.unwrap().entries;
        assert_eq!(
            queue.iter().filter(|e| e.admitted_at.is_some()).count(),
            running.len()
        );
        let Some(first) = running.first() else { break };
        now += chrono::Duration::seconds(10);
        runs.end(first, now);
        engine.admit(runs.as_ref(), None, now).await.unwrap();
    }
    let mut launched = runs.launches.lock().unwrap().clone();
    launched.sort();
    let mut all: Vec<String> = jobs.iter().map(|j| j.job_id.clone()).collect();
    all.sort();
    assert_eq!(launched, all, "every job started, once");
    assert!(runs.running().is_empty());
    assert!(engine.store().fleet().await.unwrap().entries.is_empty());
}

/// A job admitted by an admitter that died before starting its run is started by the next
/// pass; a waiting job that was cancelled leaves the queue; a queued job says why it waits.
#[tokio::test]
async fn an_admitted_job_without_a_run_is_started_by_the_next_pass() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let jobs = six_jobs(&engine).await;
    let mut admitted = entry(&jobs[0]);
    admitted.admitted_at = Some(t0());
    let entries = vec![admitted, entry(&jobs[1]), entry(&jobs[2]), entry(&jobs[4])];
    assert!(engine.store().put_fleet(&entries, 0).await.unwrap());
    let now = t0() + chrono::Duration::seconds(5);
    engine
        .store()
        .set_job_status(&jobs[4].job_id, JobStatus::Cancelled, now)
        .await
        .unwrap();
    let runs = Runs::default();
    let pass = engine.admit(&runs, None, now).await.unwrap();
    let mut launched: Vec<&String> = pass.launched.keys().collect();
    launched.sort();
    assert_eq!(
        launched,
        [&jobs[0].job_id, &jobs[1].job_id, &jobs[2].job_id]
    );
    assert!(pass.waiting.is_empty());
    let queue = engine.store().fleet().await.unwrap();
    assert!(
        !queue.entries.iter().any(|e| e.job_id == jobs[4].job_id),
        "cancelled: gone"
    );
    // The fourth job of two running tenants' would be a third tenant: it waits, and says why.
    let pass = engine
        .admit(&runs, Some(entry(&jobs[5])), now)
        .await
        .unwrap();
    assert_eq!(
        pass.waiting
            .get(&jobs[5].job_id)
            .map(ToString::to_string)
            .as_deref(),
        Some("waits for a slot: 3 of 3 jobs run (max_concurrent_jobs)")
    );
}
