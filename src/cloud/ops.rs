//! The cloud's dispatch port for the operations API (`engine::ops`): a job runs as a Step
//! Functions execution `backfill-{job_id}` (then `-c1`, `-c2`… for continuations) whose
//! lanes send chunk work to the workers. `trigger|cancel|resume|pause|unpause --cloud` and
//! the console in cloud mode all go through `Ops` with this port, so they share every rule
//! and every message with local runs. Each start is idempotent: a job whose newest
//! execution runs is reported as running, not started twice.
//!
//! A start goes through the fleet's admission (`engine::fleet`): the job joins the admission
//! queue in the job store, and its execution starts when the scheduling rules admit it (at
//! once, or in a later admission pass, which workers run); until then it is queued and says
//! why. `StepFunctions` is also the `Launcher` those passes start executions with.

use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::CloudError;
use super::sfn::{Dispatcher, ExecutionInput};
use crate::domain::{Job, JobMeta};
use crate::engine::Engine;
use crate::engine::fleet::{Launcher, RunState};
use crate::engine::ops::{Dispatch, DispatchError, Halt, Halted, Placement, Start};
use crate::store::FleetEntry;

/// How a new execution runs its job (kept in the job's admission entry until it starts).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
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

/// Jobs run as Step Functions executions, admitted through `engine`'s store.
#[derive(Clone)]
pub struct StepFunctions {
    dispatcher: Dispatcher,
    engine: Engine,
    lanes: LaneOptions,
    /// Why an execution is stopped, as its history will say.
    cause: &'static str,
}

impl StepFunctions {
    /// New executions run one lane with a 60 s heartbeat, as `trigger --cloud` by default.
    /// Admission reads and writes `engine`'s job store under its configuration's limits.
    pub fn new(dispatcher: Dispatcher, cause: &'static str, engine: Engine) -> Self {
        StepFunctions {
            dispatcher,
            engine,
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

impl StepFunctions {
    /// Starts the job's execution with `lanes`: its first, or the next after one that ended
    /// (from the checkpoints the store keeps); a running one is reported instead.
    async fn start_execution(
        &self,
        job_id: &str,
        lanes: LaneOptions,
    ) -> Result<Start, DispatchError> {
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
                let mut input = ExecutionInput::new(job_id, lanes.lanes, lanes.heartbeat_seconds);
                if let Some(n) = lanes.max_iterations {
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

    /// One admission pass (`Engine::admit`) with this port as the launcher; what workers run.
    pub async fn admission_pass(
        &self,
        request: Option<FleetEntry>,
    ) -> Result<crate::engine::fleet::Admission, crate::engine::EngineError> {
        self.engine.admit(self, request, Utc::now()).await
    }
}

#[async_trait]
impl Launcher for StepFunctions {
    async fn run_state(&self, job_id: &str) -> Result<RunState, DispatchError> {
        let latest = self
            .dispatcher
            .latest(job_id)
            .await
            .map_err(failed("looking up the execution", job_id))?;
        Ok(match latest {
            None => RunState::Never,
            Some(e) if e.is_running() => RunState::Running,
            Some(e) => RunState::Ended { at: e.stopped_at },
        })
    }

    async fn launch(&self, job_id: &str, launch: &str) -> Result<Start, DispatchError> {
        let lanes = serde_json::from_str(launch).unwrap_or(self.lanes);
        self.start_execution(job_id, lanes).await
    }
}

#[async_trait]
impl Dispatch for StepFunctions {
    /// Running when its newest execution runs; waiting while the admission queue holds it
    /// back (with why, as the rules say now).
    async fn placement(&self, job: &Job) -> Result<Placement, DispatchError> {
        let latest = self
            .dispatcher
            .latest(&job.job_id)
            .await
            .map_err(failed("looking up the execution", &job.job_id))?;
        if let Some(e) = latest.filter(|e| e.is_running()) {
            return Ok(Placement::Running {
                by: format!("in execution {}", e.name),
            });
        }
        let view = self
            .engine
            .fleet_view(Utc::now())
            .await
            .map_err(|e| DispatchError::new("reading the admission queue", e))?;
        Ok(match view.waiting.get(&job.job_id) {
            Some(why) => Placement::Waiting {
                why: why.to_string(),
            },
            None => Placement::Idle,
        })
    }

    /// A job whose execution runs is reported as running; any other joins the admission
    /// queue and starts when admitted (now, or by a later pass).
    async fn start(&self, job: &Job, meta: &JobMeta) -> Result<Start, DispatchError> {
        if let RunState::Running = self.run_state(&job.job_id).await? {
            return self.start_execution(&job.job_id, self.lanes).await;
        }
        let entry = FleetEntry {
            job_id: job.job_id.clone(),
            tenant_id: job.tenant_id.clone(),
            priority: meta.priority,
            wait_off_peak: meta.wait_off_peak,
            queued_at: Utc::now(),
            admitted_at: None,
            launch: serde_json::to_string(&self.lanes).unwrap_or_default(),
        };
        let admission = self
            .admission_pass(Some(entry))
            .await
            .map_err(|e| DispatchError::new(format!("admitting job {}", job.job_id), e))?;
        if let Some(started) = admission.launched.get(&job.job_id) {
            return started.clone().map_err(|e| {
                DispatchError::new(
                    format!("starting an execution for job {}", job.job_id),
                    CloudError::Invalid(e),
                )
            });
        }
        if let Some(why) = admission.waiting.get(&job.job_id) {
            return Ok(Start::Waiting {
                why: why.to_string(),
            });
        }
        // Admitted by an earlier pass and started since.
        Ok(Start::AlreadyRunning {
            by: "through the admission queue".into(),
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
