//! The owner's commands: job actions through the operations API (`engine::ops`, the same
//! calls the CLI makes, with the local runner or the cloud dispatch as its port), and the
//! transform and verify commands, answered from tasks of their own.

use chrono::Utc;
use futures::future::BoxFuture;

use super::{Command, HandleError, Owner, Target, lifecycle, planner};
use crate::engine::ops::{Confirmation, Hints, JobAction, Ops, Refusal, protection};

/// The owner's answer to a command: at once, or from work on a task of its own (keyed, so a
/// second transform of the same service is refused while the first runs).
pub(super) enum Answer {
    Now(String),
    Later {
        key: Option<String>,
        work: BoxFuture<'static, Result<String, HandleError>>,
    },
}

/// What a cloud console cannot do, and where it can be done.
const CLOUD_TRIGGERS_ONLY: &str = "this console watches the cloud deployment (--cloud); run local jobs in a console started without --cloud";
const LOCAL_TRIGGERS_ONLY: &str =
    "cloud dispatch is not configured: start the console with --cloud";
const CLOUD_TRANSFORMS: &str = "the cloud deployment's workers transform when a job completes; run `avesa-console transform` where the data is";
const CLOUD_VERIFIES: &str = "verification reads the sources and the landed data, which this cloud console has neither of; run `avesa-console verify JOB_ID` where they are";

impl Owner {
    /// A busy key refuses a second transform or verification of the same thing.
    fn later(
        &self,
        key: String,
        what: String,
        work: BoxFuture<'static, Result<String, HandleError>>,
    ) -> Result<Answer, HandleError> {
        if self.busy.contains(&key) {
            return Err(Refusal::Busy(what).into());
        }
        Ok(Answer::Later {
            key: Some(key),
            work,
        })
    }

    /// Runs an operations-API call: here when the port answers at once (the local runner),
    /// on a task of its own in cloud mode (AWS calls take a while and the snapshot must keep
    /// flowing).
    async fn op<F>(&self, call: impl FnOnce(Ops) -> F) -> Result<Answer, HandleError>
    where
        F: Future<Output = Result<crate::engine::ops::Outcome, Refusal>> + Send + 'static,
    {
        let work = call(self.ops.clone());
        if self.local.is_some() {
            return Ok(Answer::Now(work.await?.to_string()));
        }
        Ok(Answer::Later {
            key: None,
            work: Box::pin(async move { Ok(work.await?.to_string()) }),
        })
    }

    async fn act(
        &self,
        action: JobAction,
        job_id: String,
        confirm: Confirmation,
    ) -> Result<Answer, HandleError> {
        self.op(|ops| async move { ops.act(action, &job_id, &confirm, Utc::now()).await })
            .await
    }

    /// Runs a command; a protected tenant's needs the confirmation it carries
    /// (`Command::Confirmed`), which the operations API checks (`ops::guard`).
    pub(super) async fn execute(&mut self, command: Command) -> Result<Answer, HandleError> {
        let now = Utc::now();
        let cloud = self.local.is_none();
        let (command, confirm) = command.unwrap_confirmed();
        match command {
            Command::Resume { job_id } => self.act(JobAction::Resume, job_id, confirm).await,
            Command::RetryFailed { job_id } => {
                self.act(JobAction::RetryFailed, job_id, confirm).await
            }
            Command::Cancel { job_id } => self.act(JobAction::Cancel, job_id, confirm).await,
            Command::Pause { job_id } => self.act(JobAction::Pause, job_id, confirm).await,
            Command::Unpause { job_id } => self.act(JobAction::Unpause, job_id, confirm).await,
            Command::Confirmed { .. } => unreachable!("unwrap_confirmed takes every layer off"),
            Command::Watch { job_id } => {
                self.watched = job_id;
                Ok(Answer::Now(String::new()))
            }
            Command::Trigger { target, .. } if cloud != (target == Target::Cloud) => {
                Err(Refusal::NotHere(if cloud {
                    CLOUD_TRIGGERS_ONLY
                } else {
                    LOCAL_TRIGGERS_ONLY
                })
                .into())
            }
            Command::Trigger { request, .. } => {
                let mut plan = planner::plan(&self.config, &request, now).map_err(Refusal::from)?;
                self.detection.mark_stale();
                let engine = self.engine.clone();
                self.op(|ops| async move {
                    engine.size_plan(&mut plan, request.chunk_size_days).await;
                    ops.trigger(&plan, Hints::default(), &confirm, now).await
                })
                .await
            }
            Command::Transform { .. } if cloud => Err(Refusal::NotHere(CLOUD_TRANSFORMS).into()),
            Command::Transform { tenant_id, service } => {
                let what = format!("transform {service}");
                protection(&self.config, &tenant_id, &what, &confirm)?;
                let (key, work) = lifecycle::transform(&self.engine, &tenant_id, service)?;
                self.later(key, format!("a transform of {tenant_id} {service}"), work)
            }
            Command::Verify { .. } if cloud => Err(Refusal::NotHere(CLOUD_VERIFIES).into()),
            Command::Verify { job_id } => {
                let job = self.ops.job(&job_id).await?;
                if !job.status.is_terminal() {
                    return Err(Refusal::NotEnded {
                        job_id,
                        status: job.status,
                    }
                    .into());
                }
                let (key, work) = lifecycle::verify(&self.engine, &job_id);
                self.later(key, format!("a verification of {job_id}"), work)
            }
        }
    }
}
