//! Cloud mode of the handle: jobs live in the cloud deployment's store (the engine's store is
//! DynamoDB) and trigger, cancel and resume go to a `CloudDispatch`, which `cloud::ops`
//! implements over Step Functions with the same code as `trigger|cancel|resume --cloud`.
//! The engine sees only this trait, never an AWS type.
//!
//! `console --cloud` (explicit, like every `--cloud` command, with the `AVESA_CLOUD_*` settings:
//! table prefix, state machine, log group) lists cloud jobs the way a local console lists local
//! ones. `Trigger {cloud}` creates the job and starts `backfill-{job_id}` (idempotent), `Cancel`
//! cancels in the store and stops the running execution, `Resume`/`Unpause` start the next
//! execution, `RetryFailed` reopens failed chunks first; `Pause` is the same store write as
//! locally. These calls run on their own tasks, so the owner's snapshot keeps flowing. Nothing
//! runs in the cloud console's process (its source provider refuses), and it refuses local
//! triggers; a local console refuses the cloud target, naming the missing settings.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::{Command, HandleError, Target};
use crate::config::Config;
use crate::engine::planner::{self, Plan};

/// Dispatch to cloud workers. Each answer is a line for the status bar, or why not.
#[async_trait]
pub trait CloudDispatch: Send + Sync {
    /// Creates the plan's job (or finds the active one for its range) and starts its
    /// execution, or reports the one it has.
    async fn trigger(&self, plan: &Plan) -> Result<String, String>;
    /// Cancels the job and stops its running execution.
    async fn cancel(&self, job_id: &str) -> Result<String, String>;
    /// Starts the job's next execution from its checkpoints (unpausing it if paused); with
    /// `retry_failed`, its failed chunks are reopened first.
    async fn resume(&self, job_id: &str, retry_failed: bool) -> Result<String, String>;
}

/// The cloud's side of a command, to run off the owner's loop (AWS calls take a while and
/// the snapshot must keep flowing); `None` for commands the owner handles itself (watching,
/// pausing: a store write either way).
pub(super) fn route(
    cloud: &Arc<dyn CloudDispatch>,
    config: &Config,
    command: &Command,
    now: DateTime<Utc>,
) -> Option<BoxFuture<'static, Result<String, HandleError>>> {
    let cloud = cloud.clone();
    let refused = |e: String| HandleError::Refused(e);
    match command.clone() {
        Command::Trigger {
            target: Target::Local,
            ..
        } => Some(Box::pin(async {
            Err(HandleError::Refused(
                "this console watches the cloud deployment (--cloud); run local jobs in a \
                 console started without --cloud"
                    .into(),
            ))
        })),
        Command::Trigger {
            request,
            target: Target::Cloud,
        } => {
            let plan = planner::plan(config, &request, now);
            Some(Box::pin(async move {
                let plan = plan.map_err(|e| HandleError::Refused(e.0))?;
                cloud.trigger(&plan).await.map_err(refused)
            }))
        }
        Command::Cancel { job_id } => Some(Box::pin(async move {
            cloud.cancel(&job_id).await.map_err(refused)
        })),
        // Unpausing a cloud job needs an execution to run it again: a resume.
        Command::Resume { job_id } | Command::Unpause { job_id } => Some(Box::pin(async move {
            cloud.resume(&job_id, false).await.map_err(refused)
        })),
        Command::RetryFailed { job_id } => Some(Box::pin(async move {
            cloud.resume(&job_id, true).await.map_err(refused)
        })),
        // The deployment's workers run the transform step when a job completes, against
        // data in S3; this process has neither the sources nor that data.
        Command::Transform { .. } => Some(Box::pin(async {
            Err(HandleError::Refused(
                "the cloud deployment's workers transform when a job completes; run                  `avesa-console transform` where the data is"
                    .into(),
            ))
        })),
        Command::Verify { .. } => Some(Box::pin(async {
            Err(HandleError::Refused(
                "verification reads the sources and the landed data, which this cloud                  console has neither of; run `avesa-console verify JOB_ID` where they are"
                    .into(),
            ))
        })),
        Command::Pause { .. } | Command::Watch { .. } => None,
    }
}
