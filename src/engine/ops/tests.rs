//! The operations API against a real engine and SQLite store, on paused tokio time: what each
//! action does in each state, and that the local runner holds an off-peak job until its
//! window opens even when it was triggered to run at once.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use tokio::time::Instant;

use super::*;
use crate::config::{Config, EndpointDef};
use crate::domain::{Service, Window};
use crate::engine::planner::{self, PlanRequest};
use crate::engine::{EngineOptions, NoSource, RunOutcome, SourceProvider};
use crate::sink::RawSink;
use crate::sources::{Page, Source, SourceError};
use crate::store::SqliteStore;

/// A source that refuses every page (its chunks fail at once) and counts the requests.
struct Counting(Arc<AtomicU32>);

#[async_trait]
impl Source for Counting {
    fn service(&self) -> Service {
        Service::Connectwise
    }

    async fn fetch_page(
        &self,
        _endpoint: &EndpointDef,
        _window: &Window,
        _cursor: Option<&str>,
    ) -> Result<Page, SourceError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(SourceError::Http {
            status: 400,
            message: "refused in this test".into(),
            retry_after: None,
        })
    }

    async fn count(&self, _endpoint: &EndpointDef, _window: &Window) -> Result<u64, SourceError> {
        Ok(0)
    }
}

struct Provider(Arc<AtomicU32>);

impl SourceProvider for Provider {
    fn source(&self, _tenant_id: &str, _service: Service) -> Result<Arc<dyn Source>, NoSource> {
        Ok(Arc::new(Counting(self.0.clone())))
    }
}

/// Noon on a test day; the off-peak window is 22:00-06:00.
fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap()
}

fn engine(dir: &Path, requests: Arc<AtomicU32>) -> Engine {
    engine_with(dir, requests, |_| {})
}

fn engine_with(dir: &Path, requests: Arc<AtomicU32>, edit: impl FnOnce(&mut Config)) -> Engine {
    let mut config = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")).unwrap();
    edit(&mut config);
    config.backfill.scheduling.off_peak_start = "22:00".into();
    config.backfill.scheduling.off_peak_end = "06:00".into();
    let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    Engine::new(
        Arc::new(config),
        store.clone(),
        store,
        RawSink::local(&dir.join("data")).unwrap(),
        Arc::new(Provider(requests)),
        EngineOptions::default(),
    )
}

fn plan(engine: &Engine) -> Plan {
    let request = PlanRequest {
        tenant_id: "acme".into(),
        service: Service::Connectwise,
        tables: vec!["tickets".into()],
        start: Some(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()),
        end: Some(Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap()),
        chunk_size_days: Some(30),
    };
    planner::plan(engine.config(), &request, noon()).unwrap()
}

/// A manual trigger of the test plan, with no confirmation.
async fn manual_trigger(ops: &Ops, engine: &Engine) -> Result<Outcome, Refusal> {
    let none = Confirmation::None;
    ops.trigger(&plan(engine), Hints::default(), &none, Utc::now())
        .await
}

/// A clock at noon when the test starts that follows tokio's paused time.
fn clock() -> Clock {
    let t0 = Instant::now();
    Arc::new(move || noon() + chrono::Duration::from_std(Instant::now() - t0).unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_run_triggered_outside_the_off_peak_window_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let requests = Arc::new(AtomicU32::new(0));
    let engine = engine(dir.path(), requests.clone());
    let now = clock();
    let runner = LocalRunner::new(
        engine.clone(),
        RunnerOptions {
            clock: now.clone(),
            ..RunnerOptions::default()
        },
    );
    let ops = Ops::new(engine.clone(), Arc::new(runner.clone()));
    let hints = Hints {
        wait_off_peak: true,
        ..Hints::default()
    };
    // What `trigger --wait-off-peak --run` does: trigger through the runner, then wait.
    let outcome = ops
        .trigger(&plan(&engine), hints, &Confirmation::None, now())
        .await
        .unwrap();
    let job_id = outcome.job_id().to_string();
    assert_eq!(
        outcome.start(),
        Some(&Start::Waiting {
            why: "waits for the off-peak window (opens 2026-03-10 22:00 UTC)".into()
        }),
        "{outcome}"
    );
    let waiting = tokio::spawn({
        let (runner, job_id) = (runner.clone(), job_id.clone());
        async move { runner.wait_for(&job_id).await }
    });
    // Nine hours on, still 21:00: nothing has run.
    tokio::time::sleep(Duration::from_secs(9 * 3600)).await;
    assert!(!waiting.is_finished(), "the run started before the window");
    assert_eq!(requests.load(Ordering::SeqCst), 0);
    let job = ops.job(&job_id).await.unwrap();
    assert_eq!((job.status, job.failed_chunks), (JobStatus::Pending, 0));
    assert!(runner.waiting().contains_key(&job_id));
    // At 22:00 it starts, and runs to its end (every page refused: failed chunks).
    let done = tokio::time::timeout(Duration::from_secs(2 * 3600), waiting)
        .await
        .expect("the run starts when the window opens")
        .unwrap()
        .unwrap();
    assert!(now() >= Utc.with_ymd_and_hms(2026, 3, 10, 22, 0, 0).unwrap());
    assert!(requests.load(Ordering::SeqCst) > 0);
    assert_eq!(done.status, JobStatus::CompletedWithErrors, "{done:?}");
}

#[tokio::test]
async fn each_action_is_judged_on_the_store_and_answered_in_one_wording() {
    let dir = tempfile::tempdir().unwrap();
    let requests = Arc::new(AtomicU32::new(0));
    let engine = engine(dir.path(), requests);
    // `trigger` without `--run`: stored, left for `run`.
    let ops = Ops::new(engine.clone(), Arc::new(Hold));
    let outcome = manual_trigger(&ops, &engine).await.unwrap();
    let id = outcome.job_id().to_string();
    assert_eq!(
        outcome.to_string(),
        format!("created {id} (2 chunks); `avesa-console run` runs it")
    );
    let again = manual_trigger(&ops, &engine).await.unwrap();
    assert!(matches!(again, Outcome::Triggered { created: false, .. }));
    let act = |action| {
        let (ops, id) = (ops.clone(), id.clone());
        async move { ops.act(action, &id, &Confirmation::None, Utc::now()).await }
    };
    let refused = |r: Result<Outcome, Refusal>| r.unwrap_err().to_string();
    assert_eq!(
        refused(act(JobAction::Unpause).await),
        format!("job {id} is pending, not paused")
    );
    assert_eq!(
        refused(act(JobAction::RetryFailed).await),
        format!("job {id} has no failed chunks")
    );
    assert_eq!(
        act(JobAction::Pause).await.unwrap().to_string(),
        format!("paused {id}; chunks in flight finish first")
    );
    assert_eq!(
        act(JobAction::Unpause).await.unwrap().to_string(),
        format!("unpaused {id}; `avesa-console run` runs it")
    );
    assert_eq!(
        act(JobAction::Cancel).await.unwrap().to_string(),
        format!("cancelled {id} (0 of 2 chunks completed, 0 records)")
    );
    for (action, says) in [
        (JobAction::Resume, "is cancelled; nothing to resume"),
        (JobAction::Pause, "is cancelled; nothing to pause"),
        (JobAction::Cancel, "is already cancelled"),
    ] {
        let r = act(action).await.unwrap_err();
        assert!(r.is_refusal(), "{r:?}");
        assert_eq!(r.to_string(), format!("job {id} {says}"));
    }
    let missing = ops
        .act(JobAction::Resume, "nope", &Confirmation::None, Utc::now())
        .await;
    assert!(matches!(&missing, Err(Refusal::NotFound(_))), "{missing:?}");
    assert!(
        !missing.unwrap_err().is_refusal(),
        "an unknown job is an error"
    );
}

#[test]
fn judge_refuses_a_resume_of_a_job_that_runs_or_waits() {
    let plan = {
        let dir = tempfile::tempdir().unwrap();
        plan(&engine(dir.path(), Arc::default()))
    };
    let (job, _) = plan.to_job(noon());
    let running = Placement::Running {
        by: "in this console".into(),
    };
    let waiting = Placement::Waiting {
        why: "waits for its turn".into(),
    };
    let id = &job.job_id;
    assert!(judge(JobAction::Resume, &job, false, &Placement::Idle).is_ok());
    assert_eq!(
        judge(JobAction::Resume, &job, false, &running)
            .unwrap_err()
            .to_string(),
        format!("job {id} is already running in this console")
    );
    assert_eq!(
        judge(JobAction::Resume, &job, false, &waiting)
            .unwrap_err()
            .to_string(),
        format!("job {id} already waits for its turn")
    );
    // Cancel and pause do not care where it runs: the runners read the status.
    assert!(judge(JobAction::Cancel, &job, false, &running).is_ok());
    assert!(judge(JobAction::Pause, &job, false, &waiting).is_ok());
}

#[tokio::test]
async fn a_run_that_ends_before_anyone_waits_is_still_collected() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), Arc::default());
    let (job, _) = plan(&engine).to_job(noon());
    let finished = RunOutcome {
        job_id: job.job_id.clone(),
        status: JobStatus::Failed,
        stop: crate::engine::StopReason::Finished,
        handoff: crate::engine::Handoff::NotDue,
    };
    let answer = finished.clone();
    let run: RunJob = Arc::new(move |_, _| {
        let answer = answer.clone();
        Box::pin(async move { Ok(answer) })
    });
    let limits = crate::engine::schedule::Limits::from_config(&engine.config().backfill);
    let runner = LocalRunner::with_run(limits, run, RunnerOptions::default());
    let meta = crate::domain::JobMeta::default_for(&job.job_id);
    assert_eq!(
        runner.start(&job, &meta).await.unwrap(),
        Start::Started { by: None }
    );
    // The run ends (at once) before anyone waits for it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(runner.running().is_empty());
    let got = runner.wait_for(&job.job_id).await.unwrap();
    assert_eq!((got.job_id, got.status), (finished.job_id, finished.status));
}

#[test]
fn guard_asks_a_protected_tenant_for_its_exact_id() {
    let what = "cancel backfill_acme";
    let typed = |id: &str| Confirmation::TenantId(id.into());
    assert!(guard("acme", false, what, &Confirmation::None).is_ok());
    assert!(guard("acme", true, what, &typed("acme")).is_ok());
    let none = guard("acme", true, what, &Confirmation::None).unwrap_err();
    assert!(none.is_refusal());
    assert_eq!(
        none.to_string(),
        "tenant acme is protected: type the tenant id to cancel backfill_acme"
    );
    let wrong = guard("acme", true, what, &typed("Acme")).unwrap_err();
    assert!(matches!(&wrong, Refusal::WrongTenantId { typed, .. } if typed == "Acme"));
    assert!(
        wrong.to_string().contains("'Acme' is not its id"),
        "{wrong}"
    );
}

/// An engine whose tenant `acme` is protected.
fn protected_engine(dir: &Path) -> Engine {
    engine_with(dir, Arc::default(), |config| {
        let acme = config
            .tenants
            .tenants
            .iter_mut()
            .find(|t| t.tenant_id == "acme");
        acme.unwrap().protected = true;
    })
}

#[tokio::test]
async fn every_action_on_a_protected_tenant_needs_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let engine = protected_engine(dir.path());
    let ops = Ops::new(engine.clone(), Arc::new(Hold));
    let acme = Confirmation::TenantId("acme".into());
    let refused = manual_trigger(&ops, &engine).await.unwrap_err();
    assert!(matches!(refused, Refusal::Protected { .. }), "{refused:?}");
    assert!(
        ops.engine()
            .store()
            .list_jobs(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    // Auto-detection's jobs are the configuration's decision.
    let auto = Hints {
        trigger: Trigger::Auto,
        ..Hints::default()
    };
    let outcome = ops
        .trigger(&plan(&engine), auto, &Confirmation::None, Utc::now())
        .await
        .unwrap();
    let id = outcome.job_id().to_string();
    for action in [JobAction::Pause, JobAction::Cancel] {
        let r = ops.act(action, &id, &Confirmation::None, Utc::now()).await;
        assert!(matches!(r, Err(Refusal::Protected { .. })), "{r:?}");
        let wrong = Confirmation::TenantId("globex".into());
        let r = ops.act(action, &id, &wrong, Utc::now()).await;
        assert!(matches!(r, Err(Refusal::WrongTenantId { .. })), "{r:?}");
    }
    assert_eq!(ops.job(&id).await.unwrap().status, JobStatus::Pending);
    let paused = ops.act(JobAction::Pause, &id, &acme, Utc::now()).await;
    assert!(matches!(paused, Ok(Outcome::Paused { .. })), "{paused:?}");
    assert_eq!(ops.job(&id).await.unwrap().status, JobStatus::Paused);
}
