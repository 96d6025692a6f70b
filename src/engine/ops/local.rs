//! The local dispatch port: jobs run as tasks of this process, each through
//! `Engine::run_job`, started by one long-lived scheduler queue (`queue.rs`) under the
//! scheduling rules: at most `max_concurrent_jobs` at once from at most
//! `max_parallel_tenants` tenants, fair turns and priority, off-peak waiters held for their
//! window. `run`, `trigger --run`, `resume` and the console all run jobs through it, so the
//! rules hold on every path.
//!
//! The runner starts what the rules allow whenever something changes (a job handed in, a run
//! ended) and when `pump` is called (the console does on its tick, so an opening window
//! starts its waiters); `wait_for` and `run_all` also sleep until the next opening.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;

use super::queue::Scheduler;
use super::{Dispatch, DispatchError, Halt, Halted, Placement, Start};
use crate::domain::{Job, JobMeta, JobStatus};
use crate::engine::schedule::{Candidate, Limits};
use crate::engine::{Engine, EngineError, EngineEvent, Handoff, RunOutcome, StopReason};

/// How the runner runs one job until it ends or the deadline comes: `Engine::run_job`, or
/// what a test puts in its place.
pub type RunJob = Arc<
    dyn Fn(String, Option<Instant>) -> BoxFuture<'static, Result<RunOutcome, EngineError>>
        + Send
        + Sync,
>;

/// The wall clock the scheduling rules read (a test passes one that follows tokio's paused
/// time).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Told the id of a job whose run ended.
pub type OnEnd = Arc<dyn Fn(&str) + Send + Sync>;

/// How a local runner runs its jobs.
#[derive(Clone)]
pub struct RunnerOptions {
    /// Where its jobs run, as a refusal names it ("in this console").
    pub here: &'static str,
    /// Runs stop here and save their state (`--time-budget`).
    pub deadline: Option<Instant>,
    pub clock: Clock,
    /// Told the job id when a run ends.
    pub on_end: Option<OnEnd>,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            here: "in this process",
            deadline: None,
            clock: Arc::new(Utc::now),
            on_end: None,
        }
    }
}

/// What `run_all` did: the runs that ended, and the jobs still waiting for the off-peak
/// window (with when it opens) when it stopped.
#[derive(Debug, Default)]
pub struct RanAll {
    pub outcomes: Vec<Result<RunOutcome, EngineError>>,
    pub deferred: Vec<(String, DateTime<Utc>)>,
}

/// Runs jobs in this process under the scheduling rules. Cheap to clone.
#[derive(Clone)]
pub struct LocalRunner {
    inner: Arc<Inner>,
}

struct Inner {
    /// Told of off-peak waits, asked for a job's status; none when a test runs the jobs.
    engine: Option<Engine>,
    run: RunJob,
    options: RunnerOptions,
    state: Mutex<State>,
    /// Bumped when a run ends, so waiters look again.
    changed: watch::Sender<u64>,
}

/// Ended runs a runner keeps for `wait_for` to collect.
const KEPT_OUTCOMES: usize = 256;

struct State {
    scheduler: Scheduler,
    running: BTreeSet<String>,
    /// Jobs someone waits for (`wait_for`, `run_all`).
    awaited: BTreeSet<String>,
    /// Ended runs not collected yet.
    ended: BTreeMap<String, Result<RunOutcome, EngineError>>,
}

impl LocalRunner {
    /// Runs jobs with `engine` under its configuration's scheduling rules.
    pub fn new(engine: Engine, options: RunnerOptions) -> LocalRunner {
        let limits = Limits::from_config(&engine.config().backfill);
        let runs = engine.clone();
        let run: RunJob = Arc::new(move |job_id, deadline| {
            let engine = runs.clone();
            Box::pin(async move { engine.run_job(&job_id, deadline).await })
        });
        LocalRunner::build(Some(engine), limits, run, options)
    }

    /// Runs jobs with `run` under its configuration's scheduling rules, told of off-peak
    /// waits through `engine` (the console's runner processes, `DetachedPort`).
    pub fn with_engine(engine: Engine, run: RunJob, options: RunnerOptions) -> LocalRunner {
        let limits = Limits::from_config(&engine.config().backfill);
        LocalRunner::build(Some(engine), limits, run, options)
    }

    /// Runs jobs with `run` under `limits` (the scheduling tests' fake jobs).
    pub fn with_run(limits: Limits, run: RunJob, options: RunnerOptions) -> LocalRunner {
        LocalRunner::build(None, limits, run, options)
    }

    fn build(
        engine: Option<Engine>,
        limits: Limits,
        run: RunJob,
        options: RunnerOptions,
    ) -> LocalRunner {
        let scheduler = Scheduler::new(limits);
        LocalRunner {
            inner: Arc::new(Inner {
                engine,
                run,
                options,
                state: Mutex::new(State {
                    scheduler,
                    running: BTreeSet::new(),
                    awaited: BTreeSet::new(),
                    ended: BTreeMap::new(),
                }),
                changed: watch::channel(0).0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent sets behind: keep going.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> DateTime<Utc> {
        (self.inner.options.clock)()
    }

    /// Jobs running here now.
    pub fn running(&self) -> BTreeSet<String> {
        self.state().running.clone()
    }

    /// Jobs queued here that the rules hold back, with why.
    pub fn waiting(&self) -> BTreeMap<String, String> {
        let now = self.now();
        self.state().scheduler.waiting(now)
    }

    /// Starts every job the scheduling rules allow now, and tells of new off-peak waits.
    pub fn pump(&self) {
        let now = self.now();
        let (ready, deferred) = {
            let mut state = self.state();
            let ready = state.scheduler.ready(now);
            state.running.extend(ready.iter().cloned());
            (ready, state.scheduler.newly_deferred(now))
        };
        for job_id in ready {
            self.spawn_run(job_id);
        }
        for (job_id, until) in deferred {
            tracing::info!(job_id, until = %until.to_rfc3339(), "job waits for the off-peak window");
            if let Some(engine) = &self.inner.engine {
                engine.emit(EngineEvent::JobDeferred { job_id, until });
            }
        }
    }

    fn spawn_run(&self, job_id: String) {
        let runner = self.clone();
        // Called now, in the order the queue chose, so what a run notes at its start follows
        // the decisions.
        let run = (self.inner.run)(job_id.clone(), self.inner.options.deadline);
        tokio::spawn(async move {
            let result = run.await;
            if let Err(e) = &result {
                tracing::error!(job_id = %job_id, error = %e, "run of the job stopped");
            }
            {
                let mut state = runner.state();
                state.running.remove(&job_id);
                state.scheduler.finished(&job_id);
                // Kept even when nobody waits yet: a run can end before `wait_for` starts
                // waiting for it (a job that fails at once). A long-lived runner keeps the
                // newest few.
                state.awaited.remove(&job_id);
                if state.ended.len() >= KEPT_OUTCOMES {
                    state.ended.pop_first();
                }
                state.ended.insert(job_id.clone(), result);
            }
            runner.inner.changed.send_modify(|n| *n += 1);
            if let Some(on_end) = &runner.inner.options.on_end {
                on_end(&job_id);
            }
            // A freed slot is the next waiting job's turn.
            runner.pump();
        });
    }

    /// Waits until the run of `job_id` (handed to `start` before) ends, starting jobs as the
    /// rules allow meanwhile, the off-peak window's waiters when it opens. A job still
    /// waiting when the deadline comes ends as a continuation, untouched.
    pub async fn wait_for(&self, job_id: &str) -> Result<RunOutcome, EngineError> {
        self.state().awaited.insert(job_id.to_string());
        let mut changed = self.inner.changed.subscribe();
        loop {
            changed.borrow_and_update();
            self.pump();
            let next_opening = {
                let mut state = self.state();
                if let Some(result) = state.ended.remove(job_id) {
                    return result;
                }
                let queued = state.running.contains(job_id)
                    || state.scheduler.why(job_id, self.now()).is_some();
                if !queued {
                    state.awaited.remove(job_id);
                    return Err(EngineError::Other(format!(
                        "job {job_id} is not queued to run {}",
                        self.inner.options.here
                    )));
                }
                (!state.running.contains(job_id))
                    .then(|| state.scheduler.next_opening(self.now()))
                    .flatten()
            };
            if self.deadline_reached() && self.give_up_waiting(job_id) {
                return self.untouched(job_id).await;
            }
            self.sleep_for_change(&mut changed, next_opening).await;
        }
    }

    /// Queues every job given and runs them under the rules until none is left, or only
    /// off-peak waiters remain and `wait_off_peak` is false (or the deadline has come).
    pub async fn run_all(&self, jobs: Vec<Candidate>, wait_off_peak: bool) -> RanAll {
        {
            let mut state = self.state();
            for c in jobs {
                let job_id = c.job_id.clone();
                if state.scheduler.push_candidate(c) {
                    state.awaited.insert(job_id);
                }
            }
        }
        let mut changed = self.inner.changed.subscribe();
        let mut out = RanAll::default();
        loop {
            changed.borrow_and_update();
            self.pump();
            let now = self.now();
            let (busy, next_opening, deferred) = {
                let mut state = self.state();
                let ended = std::mem::take(&mut state.ended);
                out.outcomes.extend(ended.into_values());
                let waiting = state.scheduler.waiting(now);
                let busy = state.awaited.iter().any(|id| state.running.contains(id));
                let deferred = state.scheduler.deferred(now);
                if !busy && waiting.is_empty() {
                    return out;
                }
                (busy, state.scheduler.next_opening(now), deferred)
            };
            let idle_until_window = !busy && !deferred.is_empty();
            if idle_until_window && (!wait_off_peak || self.deadline_reached()) {
                let mut state = self.state();
                for (id, _) in &deferred {
                    state.scheduler.remove(id);
                    state.awaited.remove(id);
                }
                out.deferred = deferred;
                return out;
            }
            let opening = if wait_off_peak { next_opening } else { None };
            self.sleep_for_change(&mut changed, opening).await;
        }
    }

    /// Takes a job that has not started off the queue, and says so; a running one stays.
    fn give_up_waiting(&self, job_id: &str) -> bool {
        let mut state = self.state();
        if state.running.contains(job_id) {
            return false;
        }
        state.scheduler.remove(job_id);
        state.awaited.remove(job_id);
        true
    }

    fn deadline_reached(&self) -> bool {
        self.inner
            .options
            .deadline
            .is_some_and(|d| Instant::now() >= d)
    }

    /// Sleeps until a run ends, the off-peak window opens or the deadline comes.
    async fn sleep_for_change(
        &self,
        changed: &mut watch::Receiver<u64>,
        opening: Option<DateTime<Utc>>,
    ) {
        let mut wake = opening.map(|at| {
            let wait = (at - self.now()).to_std().unwrap_or_default();
            Instant::now() + wait
        });
        if let Some(d) = self.inner.options.deadline {
            wake = Some(wake.map_or(d, |w| w.min(d)));
        }
        let sleep = async {
            match wake {
                Some(w) => tokio::time::sleep_until(w).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = changed.changed() => {}
            _ = sleep => {}
        }
    }

    /// The outcome of a job that never started before the deadline.
    async fn untouched(&self, job_id: &str) -> Result<RunOutcome, EngineError> {
        let mut status = JobStatus::Pending;
        if let Some(engine) = &self.inner.engine
            && let Some(job) = engine.store().get_job(job_id).await?
        {
            status = job.status;
        }
        Ok(RunOutcome {
            job_id: job_id.to_string(),
            status,
            stop: StopReason::ContinuationNeeded,
            handoff: Handoff::NotDue,
        })
    }

    fn placement_of(&self, job_id: &str) -> Placement {
        let now = self.now();
        let state = self.state();
        if state.running.contains(job_id) {
            return Placement::Running {
                by: self.inner.options.here.to_string(),
            };
        }
        match state.scheduler.why(job_id, now) {
            Some(why) => Placement::Waiting {
                why: why.to_string(),
            },
            None => Placement::Idle,
        }
    }
}

#[async_trait]
impl Dispatch for LocalRunner {
    async fn placement(&self, job: &Job) -> Result<Placement, DispatchError> {
        Ok(self.placement_of(&job.job_id))
    }

    async fn start(&self, job: &Job, meta: &JobMeta) -> Result<Start, DispatchError> {
        if let Placement::Running { by } = self.placement_of(&job.job_id) {
            return Ok(Start::AlreadyRunning { by });
        }
        self.state().scheduler.push(job, meta);
        self.pump();
        Ok(match self.placement_of(&job.job_id) {
            Placement::Running { .. } => Start::Started { by: None },
            Placement::Waiting { why } => Start::Waiting { why },
            // Ended already: it had nothing left to run.
            Placement::Idle => Start::Started { by: None },
        })
    }

    async fn halt(&self, job_id: &str, _halt: Halt) -> Halted {
        // A running job's chunks stop at their next lease renewal, when they read its status.
        if self.state().scheduler.remove(job_id) {
            Halted::Dequeued
        } else {
            Halted::Nothing
        }
    }
}
