//! The operator's cloud actions, shared by `trigger|cancel|resume --cloud` and the console in
//! cloud mode (`ConsoleDispatch`, the engine handle's `CloudDispatch`): create the job in
//! DynamoDB and start its execution `backfill-{job_id}`, stop a cancelled job's execution,
//! start a job's next execution. Each is idempotent the way the commands are: a second
//! trigger finds the job and its execution, a second resume finds the running execution.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::CloudError;
use super::sfn::{Dispatcher, ExecutionInput, Started};
use crate::domain::{Job, JobStatus};
use crate::engine::handle::CloudDispatch;
use crate::engine::planner::Plan;
use crate::store::{CreateOutcome, JobStore};

/// How a new execution runs its job.
#[derive(Clone, Copy, Debug)]
pub struct LaneOptions {
    pub lanes: u32,
    pub heartbeat_seconds: u64,
    /// Loops per lane before continuing as a new execution (default: the history budget's).
    pub max_iterations: Option<u32>,
}

impl Default for LaneOptions {
    fn default() -> Self {
        LaneOptions {
            lanes: 1,
            heartbeat_seconds: 60,
            max_iterations: None,
        }
    }
}

/// What a trigger did.
#[derive(Clone, Debug)]
pub struct Triggered {
    pub outcome: CreateOutcome,
    pub execution: Started,
    /// The job existed and its newest execution has ended, with this status: `resume` starts
    /// the next.
    pub ended: Option<String>,
}

/// Creates the plan's job in `store` and starts its execution; a job found active may have
/// moved on to a continuation already, so it is started only when it has no execution yet,
/// else its newest is reported.
pub async fn trigger(
    store: &dyn JobStore,
    dispatcher: &Dispatcher,
    plan: &Plan,
    options: LaneOptions,
    now: DateTime<Utc>,
) -> Result<Triggered, CloudError> {
    let (job, chunks) = plan.to_job(now);
    let outcome = store.create_job(job, chunks, plan.end_is_default).await?;
    let job = outcome.job();
    let mut input = ExecutionInput::new(&job.job_id, options.lanes, options.heartbeat_seconds);
    if let Some(n) = options.max_iterations {
        input.max_iterations = n.max(1);
    }
    let (execution, ended) = match dispatcher.latest(&job.job_id).await? {
        Some(latest) if matches!(outcome, CreateOutcome::Existing(_)) => {
            let ended = (!latest.is_running()).then(|| latest.status.clone());
            let started = Started {
                arn: latest.arn,
                name: latest.name,
                existing: true,
            };
            (started, ended)
        }
        _ => (dispatcher.start(&input).await?, None),
    };
    Ok(Triggered {
        outcome,
        execution,
        ended,
    })
}

/// Stops the job's newest execution if it runs; its name when one was stopped.
pub async fn stop_execution(
    dispatcher: &Dispatcher,
    job_id: &str,
    cause: &str,
) -> Result<Option<String>, CloudError> {
    match dispatcher.latest(job_id).await? {
        Some(e) if e.is_running() => {
            dispatcher.stop(&e.arn, cause).await?;
            Ok(Some(e.name))
        }
        _ => Ok(None),
    }
}

/// What a resume did.
#[derive(Clone, Debug)]
pub enum Resumed {
    /// The newest execution is still running: nothing was changed.
    Running { execution: String },
    /// The job has ended (and no failed chunks were to be retried).
    Ended { status: JobStatus },
    Started {
        execution: Started,
        /// Failed chunks reopened (`retry_failed`).
        retried: Option<u32>,
    },
}

/// Starts a new execution that continues from the last completed chunk (the store keeps
/// every chunk's checkpoint), with the previous execution's lanes; a paused job is unpaused,
/// and with `retry_failed` its failed chunks are reopened first.
pub async fn resume(
    store: &dyn JobStore,
    dispatcher: &Dispatcher,
    job_id: &str,
    retry_failed: bool,
    now: DateTime<Utc>,
) -> Result<Resumed, CloudError> {
    let job = store
        .get_job(job_id)
        .await?
        .ok_or_else(|| CloudError::Invalid(format!("job '{job_id}' not found")))?;
    let latest = dispatcher.latest(&job.job_id).await?;
    if let Some(e) = latest.as_ref().filter(|e| e.is_running()) {
        return Ok(Resumed::Running {
            execution: e.name.clone(),
        });
    }
    let mut retried = None;
    if retry_failed {
        retried = Some(store.retry_failed(&job.job_id, now).await?);
    } else if job.status == JobStatus::Paused {
        store
            .set_job_status(&job.job_id, JobStatus::Pending, now)
            .await?;
    } else if job.status.is_terminal() {
        return Ok(Resumed::Ended { status: job.status });
    }
    let execution = match &latest {
        Some(previous) => dispatcher.start_next(&job.job_id, previous).await?,
        None => {
            dispatcher
                .start(&ExecutionInput::new(&job.job_id, 1, 60))
                .await?
        }
    };
    Ok(Resumed::Started { execution, retried })
}

/// The console's cloud: the deployment's store and state machine.
pub struct ConsoleDispatch {
    store: Arc<dyn JobStore>,
    dispatcher: Dispatcher,
    lanes: LaneOptions,
}

impl ConsoleDispatch {
    /// New executions run one lane with a 60 s heartbeat, as `trigger --cloud` by default.
    pub fn new(store: Arc<dyn JobStore>, dispatcher: Dispatcher) -> Self {
        ConsoleDispatch {
            store,
            dispatcher,
            lanes: LaneOptions::default(),
        }
    }

    /// How triggered executions run (`trigger --cloud --lanes --heartbeat-seconds`).
    pub fn with_lanes(mut self, lanes: LaneOptions) -> Self {
        self.lanes = lanes;
        self
    }

    async fn job(&self, job_id: &str) -> Result<Job, String> {
        self.store
            .get_job(job_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("job {job_id} not found"))
    }
}

#[async_trait]
impl CloudDispatch for ConsoleDispatch {
    async fn trigger(&self, plan: &Plan) -> Result<String, String> {
        let t = trigger(
            self.store.as_ref(),
            &self.dispatcher,
            plan,
            self.lanes,
            Utc::now(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let job = t.outcome.job();
        let name = &t.execution.name;
        Ok(match (&t.outcome, &t.ended) {
            (CreateOutcome::Created(_), _) => format!(
                "started {} ({} chunks) as execution {name}",
                job.job_id, job.total_chunks
            ),
            (CreateOutcome::Existing(_), Some(status)) => format!(
                "{} already covers this range ({}); its execution {name} has ended ({status}): r starts the next",
                job.job_id, job.status
            ),
            (CreateOutcome::Existing(_), None) if t.execution.existing => format!(
                "{} already covers this range ({}); execution {name} is running it",
                job.job_id, job.status
            ),
            (CreateOutcome::Existing(_), None) => format!(
                "{} already covers this range ({}); started execution {name}",
                job.job_id, job.status
            ),
        })
    }

    async fn cancel(&self, job_id: &str) -> Result<String, String> {
        // The same checks and write as a local cancel; workers stop at their next renewal.
        let job = self.job(job_id).await?;
        if job.status.is_terminal() {
            return Err(format!("job {job_id} is already {}", job.status));
        }
        self.store
            .set_job_status(job_id, JobStatus::Cancelled, Utc::now())
            .await
            .map_err(|e| e.to_string())?;
        let stopped = stop_execution(
            &self.dispatcher,
            job_id,
            "cancelled in the avesa-console console",
        )
        .await
        .map_err(|e| format!("cancelled {job_id}, but its execution was not stopped: {e}"))?;
        Ok(match stopped {
            Some(name) => format!("cancelled {job_id}; stopped execution {name}"),
            None => format!("cancelled {job_id}; no execution was running"),
        })
    }

    async fn resume(&self, job_id: &str, retry_failed: bool) -> Result<String, String> {
        match resume(
            self.store.as_ref(),
            &self.dispatcher,
            job_id,
            retry_failed,
            Utc::now(),
        )
        .await
        .map_err(|e| e.to_string())?
        {
            Resumed::Running { execution } => Err(format!(
                "execution {execution} of {job_id} is running; nothing to resume"
            )),
            Resumed::Ended { status } => {
                Err(format!("job {job_id} is {status}; nothing to resume"))
            }
            Resumed::Started {
                execution,
                retried: Some(n),
            } => Ok(format!(
                "retrying {n} failed chunk(s) of {job_id} in execution {}",
                execution.name
            )),
            Resumed::Started { execution, .. } => {
                Ok(format!("resumed {job_id} in execution {}", execution.name))
            }
        }
    }
}
