//! The cloud's dispatch port for the operations API (`engine::ops`): a job runs as a Step
//! Functions execution `backfill-{job_id}` (then `-c1`, `-c2`… for continuations) whose
//! lanes send chunk work to the workers. `trigger|cancel|resume|pause|unpause --cloud` and
//! the console in cloud mode all go through `Ops` with this port, so they share every rule
//! and every message with local runs. Each start is idempotent: a job whose newest
//! execution runs is reported as running, not started twice.

use async_trait::async_trait;

use super::CloudError;
use super::sfn::{Dispatcher, ExecutionInput};
use crate::domain::{Job, JobMeta};
use crate::engine::ops::{Dispatch, DispatchError, Halt, Halted, Placement, Start};

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

/// Jobs run as Step Functions executions.
pub struct StepFunctions {
    dispatcher: Dispatcher,
    lanes: LaneOptions,
    /// Why an execution is stopped, as its history will say.
    cause: &'static str,
}

impl StepFunctions {
    /// New executions run one lane with a 60 s heartbeat, as `trigger --cloud` by default.
    pub fn new(dispatcher: Dispatcher, cause: &'static str) -> Self {
        StepFunctions {
            dispatcher,
            lanes: LaneOptions::default(),
            cause,
        }
    }

    /// How new executions run (`trigger --cloud --lanes --heartbeat-seconds`).
    pub fn with_lanes(mut self, lanes: LaneOptions) -> Self {
        self.lanes = lanes;
        self
    }

    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }
}

fn failed(what: &str, job_id: &str) -> impl FnOnce(CloudError) -> DispatchError {
    let what = format!("{what} for job {job_id}");
    move |e| DispatchError::new(what, e)
}

#[async_trait]
impl Dispatch for StepFunctions {
    async fn placement(&self, job: &Job) -> Result<Placement, DispatchError> {
        let latest = self
            .dispatcher
            .latest(&job.job_id)
            .await
            .map_err(failed("looking up the execution", &job.job_id))?;
        Ok(match latest {
            Some(e) if e.is_running() => Placement::Running {
                by: format!("in execution {}", e.name),
            },
            _ => Placement::Idle,
        })
    }

    /// A job with no execution yet gets its first; one whose newest execution has ended
    /// continues in the next, from the checkpoints the store keeps.
    async fn start(&self, job: &Job, _meta: &JobMeta) -> Result<Start, DispatchError> {
        let job_id = &job.job_id;
        let latest = self
            .dispatcher
            .latest(job_id)
            .await
            .map_err(failed("looking up the execution", job_id))?;
        let started = match latest {
            Some(e) if e.is_running() => {
                return Ok(Start::AlreadyRunning {
                    by: format!("in execution {}", e.name),
                });
            }
            Some(previous) => self.dispatcher.start_next(job_id, &previous).await,
            None => {
                let mut input =
                    ExecutionInput::new(job_id, self.lanes.lanes, self.lanes.heartbeat_seconds);
                if let Some(n) = self.lanes.max_iterations {
                    input.max_iterations = n.max(1);
                }
                self.dispatcher.start(&input).await
            }
        }
        .map_err(failed("starting an execution", job_id))?;
        Ok(if started.existing {
            Start::AlreadyRunning {
                by: format!("in execution {}", started.name),
            }
        } else {
            Start::Started {
                by: Some(started.name),
            }
        })
    }

    /// A cancel stops the job's running execution; a pause lets it end by itself (its lanes
    /// see the paused job at their next step).
    async fn halt(&self, job_id: &str, halt: Halt) -> Halted {
        if halt == Halt::Pause {
            return Halted::Nothing;
        }
        match stop_execution(&self.dispatcher, job_id, self.cause).await {
            Ok(Some(name)) => Halted::Execution(name),
            Ok(None) => Halted::Nothing,
            Err(e) => Halted::Failed(e.to_string()),
        }
    }
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
