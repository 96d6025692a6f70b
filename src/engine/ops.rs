//! The operator's actions on jobs, written once: trigger, resume, retry-failed, cancel, pause
//! and unpause, with typed outcomes and typed refusals. The CLI (`trigger`, `resume`,
//! `cancel`, `pause`, `unpause`, with or without `--cloud`), the console's keys and the
//! console in cloud mode all call [`Ops`]; none of them decides anything about a job's state.
//!
//! - [`judge`] is the one rule for what an action may do to a job in a given state and
//!   placement. `Ops` applies it to the store's job; the console also calls it on its
//!   snapshot to refuse a key at once, with the same words.
//! - [`Dispatch`] is the port that runs jobs. Two implementations: [`LocalRunner`] (this
//!   process: the scheduler queue under the scheduling rules, then `Engine::run_job`; used by
//!   `run`, `trigger --run`, `resume` and the console) and the Step Functions dispatch in
//!   `cloud::ops` (an execution per job, run by cloud workers). A third, [`Hold`], starts
//!   nothing: `trigger` without `--run` leaves the job pending for `run`.
//! - [`guard`] is the one rule for protected tenants (`protected: true` in the tenants
//!   registry): every mutating action on such a tenant's jobs or data (trigger, resume,
//!   retry, cancel, pause, unpause, transform, compact) goes ahead only when the request
//!   carries [`Confirmation::TenantId`] with the tenant's exact id. `Ops` applies it through
//!   [`protection`] (the registry's flag); the console calls it on its snapshot to ask for the
//!   id before sending, the CLI passes `--confirm-tenant`. Jobs auto-detection creates
//!   (`Trigger::Auto`) are the configuration's own decision and need no confirmation.
//! - [`Outcome`] and [`Refusal`] print the same way everywhere (`Display`); the CLI exits
//!   with `EXIT_REFUSED` on a refusal, the console shows it in the status bar.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::planner::{Plan, PlanError};
use super::{Engine, EngineError};
use crate::config::Config;
use crate::domain::{Job, JobMeta, JobStatus, Trigger};
use crate::store::{CreateOutcome, StoreError};

mod detached;
mod local;
mod queue;
mod run;
#[cfg(test)]
mod tests;

pub use detached::{DetachedPort, RunnerCommand, in_runner};
pub use local::{Clock, LocalRunner, RanAll, RunJob, RunnerOptions};
pub use run::ScheduledRun;

/// An action on an existing job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobAction {
    /// Continue from the checkpoints (a paused job is unpaused first).
    Resume,
    /// Reopen the failed chunks and run them.
    RetryFailed,
    Cancel,
    Pause,
    Unpause,
}

impl JobAction {
    /// The verb a confirmation prompt or a refusal uses: `cancel backfill_…`.
    pub fn verb(self) -> &'static str {
        match self {
            JobAction::Resume => "resume",
            JobAction::RetryFailed => "retry the failed chunks of",
            JobAction::Cancel => "cancel",
            JobAction::Pause => "pause",
            JobAction::Unpause => "unpause",
        }
    }
}

/// What a request carries to act on a protected tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Confirmation {
    /// Nothing: enough for a tenant that is not protected.
    #[default]
    None,
    /// The tenant id as the operator typed it (`--confirm-tenant`, the console's prompt).
    TenantId(String),
}

/// Where a job is, as far as a dispatch port can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Not running through this port, nor waiting to.
    Idle,
    /// Running: `by` says where ("in this console", "in execution backfill-…").
    Running { by: String },
    /// Queued; the scheduling rules hold it back for this reason.
    Waiting { why: String },
}

/// What a dispatch port did with a job it was handed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "start", rename_all = "snake_case")]
pub enum Start {
    /// Started now; `by` names the execution when it runs elsewhere.
    Started { by: Option<String> },
    /// It was already running there.
    AlreadyRunning { by: String },
    /// Queued: it starts when the scheduling rules allow.
    Waiting { why: String },
    /// Left pending for a later `run` (`trigger` without `--run`).
    Held,
}

/// What stopping a job's runner did (cancel, pause).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Halted {
    /// Nothing was running through the port; runners elsewhere stop at their next lease
    /// renewal, when they read the job's status.
    Nothing,
    /// Taken off the queue before its turn.
    Dequeued,
    /// This execution was stopped.
    Execution(String),
    /// The job's status was written, but stopping its execution failed.
    Failed(String),
}

/// Scheduling hints a trigger stores with a new job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hints {
    pub priority: i32,
    pub trigger: Trigger,
    pub wait_off_peak: bool,
}

impl Default for Hints {
    /// A manual trigger: priority 1, at once.
    fn default() -> Self {
        Hints {
            priority: 1,
            trigger: Trigger::Manual,
            wait_off_peak: false,
        }
    }
}

impl Hints {
    fn meta(&self, job_id: &str) -> JobMeta {
        JobMeta {
            priority: self.priority,
            trigger: self.trigger,
            wait_off_peak: self.wait_off_peak,
            ..JobMeta::default_for(job_id)
        }
    }
}

/// What an action did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// `created` is false when an active job already covered the range: it was returned (and
    /// handed to the port like a resume) instead of starting a second copy of the same work.
    Triggered {
        job: Job,
        created: bool,
        start: Start,
    },
    Resumed {
        job_id: String,
        start: Start,
    },
    Retrying {
        job_id: String,
        reopened: u32,
        start: Start,
    },
    /// `job` as the cancel left it (its counts say how far it got).
    Cancelled {
        job: Job,
        halted: Halted,
    },
    Paused {
        job_id: String,
    },
    Unpaused {
        job_id: String,
        start: Start,
    },
}

impl Outcome {
    /// The job the action was about.
    pub fn job_id(&self) -> &str {
        match self {
            Outcome::Triggered { job, .. } | Outcome::Cancelled { job, .. } => &job.job_id,
            Outcome::Resumed { job_id, .. }
            | Outcome::Retrying { job_id, .. }
            | Outcome::Paused { job_id }
            | Outcome::Unpaused { job_id, .. } => job_id,
        }
    }

    /// How the port took the job, when the action handed it one.
    pub fn start(&self) -> Option<&Start> {
        match self {
            Outcome::Triggered { start, .. }
            | Outcome::Resumed { start, .. }
            | Outcome::Retrying { start, .. }
            | Outcome::Unpaused { start, .. } => Some(start),
            Outcome::Cancelled { .. } | Outcome::Paused { .. } => None,
        }
    }
}

/// Why an action was not done. Each reads the same from the CLI and the console.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("job '{0}' not found")]
    NotFound(String),
    #[error("job {job_id} is {status}; nothing to resume")]
    NothingToResume { job_id: String, status: JobStatus },
    #[error("job {job_id} is already running {by}")]
    AlreadyRunning { job_id: String, by: String },
    #[error("job {job_id} already {why}")]
    AlreadyWaiting { job_id: String, why: String },
    #[error("job {job_id} has no failed chunks")]
    NoFailedChunks { job_id: String },
    #[error("job {job_id} is already {status}")]
    AlreadyEnded { job_id: String, status: JobStatus },
    #[error("job {job_id} is {status}; nothing to pause")]
    NothingToPause { job_id: String, status: JobStatus },
    #[error("job {job_id} is {status}, not paused")]
    NotPaused { job_id: String, status: JobStatus },
    /// A mutating action on a protected tenant without its id confirmed (`guard`).
    #[error("tenant {tenant_id} is protected: type the tenant id to {what}")]
    Protected { tenant_id: String, what: String },
    /// A protected tenant's action confirmed with another id than the tenant's.
    #[error(
        "tenant {tenant_id} is protected and '{typed}' is not its id: nothing was done ({what})"
    )]
    WrongTenantId {
        tenant_id: String,
        typed: String,
        what: String,
    },
    /// The request names something the configuration does not have (a tenant, a service).
    #[error("{0}")]
    Invalid(String),
    /// The request does not make a plan (dates, tables, chunk size).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A second transform or verification of the same thing while the first runs.
    #[error("{0} is already running")]
    Busy(String),
    /// A verification asked of a job that has not ended.
    #[error("job {job_id} is {status}; verify it once it has ended")]
    NotEnded { job_id: String, status: JobStatus },
    /// This front end cannot do that here (a cloud console asked for local work, or the
    /// other way round); the text says where it can be done.
    #[error("{0}")]
    NotHere(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(EngineError),
    /// The dispatch port failed (a Step Functions call, say).
    #[error("{0}")]
    Dispatch(#[from] DispatchError),
}

impl Refusal {
    /// Whether the job's state (or this front end) refuses the action, as opposed to the
    /// request naming nothing that exists or a store or port failing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Refusal::NothingToResume { .. }
                | Refusal::AlreadyRunning { .. }
                | Refusal::AlreadyWaiting { .. }
                | Refusal::NoFailedChunks { .. }
                | Refusal::AlreadyEnded { .. }
                | Refusal::NothingToPause { .. }
                | Refusal::NotPaused { .. }
                | Refusal::Protected { .. }
                | Refusal::WrongTenantId { .. }
                | Refusal::Busy(_)
                | Refusal::NotEnded { .. }
                | Refusal::NotHere(_)
        )
    }
}

impl From<EngineError> for Refusal {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(e) => Refusal::Store(e),
            EngineError::Plan(e) => Refusal::Plan(e),
            e => Refusal::Engine(e),
        }
    }
}

/// A dispatch port's failure, with its cause.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct DispatchError {
    pub what: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl DispatchError {
    pub fn new(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        DispatchError {
            what: what.into(),
            source: Box::new(source),
        }
    }
}

/// Whether a job's hand-off (markers, canonical transform) is still to do: it completed and
/// its hints do not say the hand-off is done. Unknown hints (`None`) count as not done; the
/// hand-off itself finds out (a claim on a done job does nothing).
pub fn handoff_due(job: &Job, meta: Option<&JobMeta>) -> bool {
    job.status == JobStatus::Completed && meta.is_none_or(|m| m.finalized_at.is_none())
}

/// Whether `action` may be done to `job` where `placement` says it is: the one rule the
/// store-backed API and the console's key checks share. A completed job whose hand-off is
/// still due (`handoff_due`: a crash or a failure after its last chunk) may be resumed: the
/// resume does the hand-off.
pub fn judge(
    action: JobAction,
    job: &Job,
    handoff_due: bool,
    placement: &Placement,
) -> Result<(), Refusal> {
    let job_id = || job.job_id.clone();
    let status = job.status;
    match action {
        JobAction::Resume if status.is_terminal() && !handoff_due => {
            Err(Refusal::NothingToResume {
                job_id: job_id(),
                status,
            })
        }
        JobAction::Resume => match placement {
            Placement::Idle => Ok(()),
            Placement::Running { by } => Err(Refusal::AlreadyRunning {
                job_id: job_id(),
                by: by.clone(),
            }),
            Placement::Waiting { why } => Err(Refusal::AlreadyWaiting {
                job_id: job_id(),
                why: why.clone(),
            }),
        },
        JobAction::RetryFailed if job.failed_chunks == 0 => {
            Err(Refusal::NoFailedChunks { job_id: job_id() })
        }
        JobAction::RetryFailed => Ok(()),
        JobAction::Cancel if status.is_terminal() => Err(Refusal::AlreadyEnded {
            job_id: job_id(),
            status,
        }),
        JobAction::Pause if status.is_terminal() => Err(Refusal::NothingToPause {
            job_id: job_id(),
            status,
        }),
        JobAction::Unpause if status != JobStatus::Paused => Err(Refusal::NotPaused {
            job_id: job_id(),
            status,
        }),
        JobAction::Cancel | JobAction::Pause | JobAction::Unpause => Ok(()),
    }
}

/// Whether a mutating action (`what`: `cancel backfill_…`, `transform connectwise`) may be
/// done to `tenant_id`'s jobs or data: the one rule for protected tenants. A tenant that is
/// not protected needs nothing; a protected one needs its exact id confirmed.
pub fn guard(
    tenant_id: &str,
    protected: bool,
    what: &str,
    confirmation: &Confirmation,
) -> Result<(), Refusal> {
    match confirmation {
        _ if !protected => Ok(()),
        Confirmation::TenantId(typed) if typed == tenant_id => Ok(()),
        Confirmation::TenantId(typed) => Err(Refusal::WrongTenantId {
            tenant_id: tenant_id.to_string(),
            typed: typed.clone(),
            what: what.to_string(),
        }),
        Confirmation::None => Err(Refusal::Protected {
            tenant_id: tenant_id.to_string(),
            what: what.to_string(),
        }),
    }
}

/// [`guard`] with the tenant's `protected` flag from the registry (a tenant the registry
/// does not have is not protected: the action itself says it does not exist).
pub fn protection(
    config: &Config,
    tenant_id: &str,
    what: &str,
    confirmation: &Confirmation,
) -> Result<(), Refusal> {
    let protected = config.tenants.get(tenant_id).is_some_and(|t| t.protected);
    guard(tenant_id, protected, what, confirmation)
}

/// How halting a job's runner is meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Halt {
    Pause,
    Cancel,
}

/// Where jobs run. The engine sees only this trait, never an AWS type.
#[async_trait]
pub trait Dispatch: Send + Sync {
    /// Whether the job runs, or waits to, through this port.
    async fn placement(&self, job: &Job) -> Result<Placement, DispatchError>;
    /// Runs the job (now, or when the scheduling rules allow), or says it already runs.
    async fn start(&self, job: &Job, meta: &JobMeta) -> Result<Start, DispatchError>;
    /// The job's status now says paused or cancelled: stop what runs or waits for it here.
    async fn halt(&self, job_id: &str, halt: Halt) -> Halted;
}

/// The port that starts nothing: `trigger` without `--run` leaves the job for `run`.
pub struct Hold;

#[async_trait]
impl Dispatch for Hold {
    async fn placement(&self, _job: &Job) -> Result<Placement, DispatchError> {
        Ok(Placement::Idle)
    }

    async fn start(&self, _job: &Job, _meta: &JobMeta) -> Result<Start, DispatchError> {
        Ok(Start::Held)
    }

    async fn halt(&self, _job_id: &str, _halt: Halt) -> Halted {
        Halted::Nothing
    }
}

/// The operations API over one engine's stores and one dispatch port.
#[derive(Clone)]
pub struct Ops {
    engine: Engine,
    dispatch: Arc<dyn Dispatch>,
}

impl Ops {
    pub fn new(engine: Engine, dispatch: Arc<dyn Dispatch>) -> Ops {
        Ops { engine, dispatch }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn dispatch(&self) -> &Arc<dyn Dispatch> {
        &self.dispatch
    }

    /// Stores the plan as a job with its hints (or finds the active job that covers the same
    /// range) and hands it to the port. A manual trigger on a protected tenant needs its id
    /// confirmed (`guard`); an auto-detected one does not.
    pub async fn trigger(
        &self,
        plan: &Plan,
        hints: Hints,
        confirmation: &Confirmation,
        now: DateTime<Utc>,
    ) -> Result<Outcome, Refusal> {
        if hints.trigger == Trigger::Manual {
            let what = format!("trigger a backfill of {}", plan.service);
            protection(self.engine.config(), &plan.tenant_id, &what, confirmation)?;
        }
        let outcome = self.engine.create_job(plan, now).await?;
        let created = matches!(outcome, CreateOutcome::Created(_));
        let job = outcome.job().clone();
        // A new job's hints are the ones just stored; an existing job keeps its own.
        let meta = if created {
            let meta = hints.meta(&job.job_id);
            self.engine.set_job_meta(&meta).await?;
            meta
        } else {
            self.meta(&job.job_id).await
        };
        let start = self.dispatch.start(&job, &meta).await?;
        Ok(Outcome::Triggered {
            job,
            created,
            start,
        })
    }

    /// Does `action` to the job, or says why not (its tenant's protection first: `guard`).
    pub async fn act(
        &self,
        action: JobAction,
        job_id: &str,
        confirmation: &Confirmation,
        now: DateTime<Utc>,
    ) -> Result<Outcome, Refusal> {
        let job = self.job(job_id).await?;
        let what = format!("{} {}", action.verb(), job.job_id);
        protection(self.engine.config(), &job.tenant_id, &what, confirmation)?;
        let placement = match action {
            JobAction::Resume => self.dispatch.placement(&job).await?,
            _ => Placement::Idle,
        };
        let due = handoff_due(&job, Some(&self.meta(&job.job_id).await));
        judge(action, &job, due, &placement)?;
        let store = self.engine.store();
        let job_id = job.job_id.clone();
        match action {
            JobAction::Resume => {
                if job.status == JobStatus::Paused {
                    store
                        .set_job_status(&job_id, JobStatus::Pending, now)
                        .await?;
                }
                let start = self.start(&job_id).await?;
                Ok(Outcome::Resumed { job_id, start })
            }
            JobAction::RetryFailed => {
                let reopened = store.retry_failed(&job_id, now).await?;
                if reopened == 0 {
                    return Err(Refusal::NoFailedChunks { job_id });
                }
                let start = self.start(&job_id).await?;
                Ok(Outcome::Retrying {
                    job_id,
                    reopened,
                    start,
                })
            }
            JobAction::Cancel => {
                let job = store
                    .set_job_status(&job_id, JobStatus::Cancelled, now)
                    .await?;
                let halted = self.dispatch.halt(&job_id, Halt::Cancel).await;
                Ok(Outcome::Cancelled { job, halted })
            }
            JobAction::Pause => {
                store
                    .set_job_status(&job_id, JobStatus::Paused, now)
                    .await?;
                self.dispatch.halt(&job_id, Halt::Pause).await;
                Ok(Outcome::Paused { job_id })
            }
            JobAction::Unpause => {
                store
                    .set_job_status(&job_id, JobStatus::Pending, now)
                    .await?;
                let start = self.start(&job_id).await?;
                Ok(Outcome::Unpaused { job_id, start })
            }
        }
    }

    /// The job as the store has it now.
    pub async fn job(&self, job_id: &str) -> Result<Job, Refusal> {
        self.engine
            .store()
            .get_job(job_id)
            .await?
            .ok_or_else(|| Refusal::NotFound(job_id.to_string()))
    }

    /// Hands an existing job to the port as it is (`run --job-id`).
    pub async fn start(&self, job_id: &str) -> Result<Start, Refusal> {
        let job = self.job(job_id).await?;
        let meta = self.meta(job_id).await;
        Ok(self.dispatch.start(&job, &meta).await?)
    }

    /// The job's hints; a job created without them runs as a manual one, at once.
    async fn meta(&self, job_id: &str) -> JobMeta {
        let stored = self
            .engine
            .lifecycle()
            .job_metas(&[job_id.to_string()])
            .await
            .ok()
            .and_then(|m| m.into_iter().next());
        stored.unwrap_or_else(|| JobMeta::default_for(job_id))
    }
}

/// "{lead}", then how the port took the job.
fn with_start(f: &mut fmt::Formatter<'_>, lead: &str, start: &Start) -> fmt::Result {
    match start {
        Start::Started { by: None } => f.write_str(lead),
        Start::Started { by: Some(e) } => write!(f, "{lead} in execution {e}"),
        Start::AlreadyRunning { by } => write!(f, "{lead}; already running {by}"),
        Start::Waiting { why } => write!(f, "{lead}; queued: {why}"),
        Start::Held => write!(f, "{lead}; `avesa-console run` runs it"),
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Triggered {
                job,
                created: true,
                start,
            } => {
                let plural = if job.total_chunks == 1 { "" } else { "s" };
                let size = format!("{} ({} chunk{plural})", job.job_id, job.total_chunks);
                match start {
                    Start::Started { .. } => with_start(f, &format!("started {size}"), start),
                    Start::Waiting { why } => write!(f, "queued {size}: {why}"),
                    _ => with_start(f, &format!("created {size}"), start),
                }
            }
            Outcome::Triggered {
                job,
                created: false,
                start,
            } => {
                let lead = format!("{} already covers this range ({})", job.job_id, job.status);
                match start {
                    Start::Started { by: None } => write!(f, "{lead}; running it"),
                    Start::Started { by: Some(e) } => write!(f, "{lead}; started execution {e}"),
                    Start::AlreadyRunning { by } => write!(f, "{lead}; running {by}"),
                    Start::Waiting { why } => write!(f, "{lead}; it {why}"),
                    Start::Held => write!(f, "{lead}; `avesa-console run` runs it"),
                }
            }
            Outcome::Resumed { job_id, start } => {
                with_start(f, &format!("resumed {job_id}"), start)
            }
            Outcome::Retrying {
                job_id,
                reopened,
                start,
            } => with_start(
                f,
                &format!("retrying {reopened} failed chunk(s) of {job_id}"),
                start,
            ),
            Outcome::Cancelled { job, halted } => {
                write!(
                    f,
                    "cancelled {} ({} of {} chunks completed, {} records)",
                    job.job_id, job.completed_chunks, job.total_chunks, job.records
                )?;
                match halted {
                    Halted::Nothing => Ok(()),
                    Halted::Dequeued => f.write_str("; taken off the queue"),
                    Halted::Execution(e) => write!(f, "; stopped execution {e}"),
                    Halted::Failed(e) => write!(f, ", but its execution was not stopped: {e}"),
                }
            }
            Outcome::Paused { job_id } => {
                write!(f, "paused {job_id}; chunks in flight finish first")
            }
            Outcome::Unpaused { job_id, start } => {
                with_start(f, &format!("unpaused {job_id}"), start)
            }
        }
    }
}
