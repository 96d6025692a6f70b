//! The owner's commands: job actions through the console's scheduler (every start goes
//! through `queue`, so the scheduling limits hold for jobs the console starts), and the
//! transform and verify commands, answered from tasks of their own.

use chrono::Utc;
use futures::future::BoxFuture;

use super::{Command, Done, HandleError, Owner, Target, cloud, lifecycle, planner};
use crate::domain::{Job, JobMeta, JobStatus};
use crate::engine::EngineEvent;

/// The owner's answer to a command: at once, or from work on a task of its own (keyed, so a
/// second transform of the same service is refused while the first runs).
pub(super) enum Answer {
    Now(String),
    Later {
        key: Option<String>,
        work: BoxFuture<'static, Result<String, HandleError>>,
    },
}

/// What became of a job handed to the scheduler.
pub(super) enum Start {
    Started,
    AlreadyRunning,
    Waiting(String),
}

impl Owner {
    pub(super) async fn job(&self, job_id: &str) -> Result<Job, HandleError> {
        self.engine
            .store()
            .get_job(job_id)
            .await
            .map_err(|e| HandleError::Refused(e.to_string()))?
            .ok_or_else(|| HandleError::Refused(format!("job {job_id} not found")))
    }

    /// Hands a job to the scheduler, which starts it now or says why it waits.
    pub(super) async fn enqueue(&mut self, job: &Job) -> Start {
        if self.running.contains(&job.job_id) {
            return Start::AlreadyRunning;
        }
        let meta = self
            .engine
            .lifecycle()
            .job_metas(std::slice::from_ref(&job.job_id))
            .await
            .ok()
            .and_then(|m| m.into_iter().next())
            .unwrap_or_else(|| JobMeta::default_for(&job.job_id));
        self.scheduler.push(job, &meta);
        self.dispatch();
        if self.running.contains(&job.job_id) {
            return Start::Started;
        }
        let why = self
            .scheduler
            .why(&job.job_id, Utc::now())
            .map_or_else(|| "waits for its turn".to_string(), |w| w.to_string());
        Start::Waiting(why)
    }

    /// Starts every job the scheduling rules allow now, and tells of new off-peak waits.
    pub(super) fn dispatch(&mut self) {
        let now = Utc::now();
        for job_id in self.scheduler.ready(now) {
            self.spawn_run(job_id);
        }
        for (job_id, until) in self.scheduler.newly_deferred(now) {
            tracing::info!(job_id, until = %until.to_rfc3339(), "job waits for the off-peak window");
            self.engine.emit(EngineEvent::JobDeferred { job_id, until });
        }
    }

    fn spawn_run(&mut self, job_id: String) {
        if !self.running.insert(job_id.clone()) {
            return;
        }
        self.detection.mark_stale();
        let engine = self.engine.clone();
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            if let Err(e) = engine.run_job(&job_id, None).await {
                tracing::error!(job_id = %job_id, error = %e, "console run of the job stopped");
            }
            let _ = done.send(Done::Job(job_id)).await;
        });
    }

    /// A busy key refuses a second transform or verification of the same thing.
    fn later(
        &self,
        key: String,
        what: String,
        work: BoxFuture<'static, Result<String, HandleError>>,
    ) -> Result<Answer, HandleError> {
        if self.busy.contains(&key) {
            return Err(HandleError::Refused(format!("{what} is already running")));
        }
        Ok(Answer::Later {
            key: Some(key),
            work,
        })
    }

    pub(super) async fn execute(&mut self, command: Command) -> Result<Answer, HandleError> {
        if let Some(cloud) = &self.cloud
            && let Some(work) = cloud::route(cloud, &self.config, &command, Utc::now())
        {
            return Ok(Answer::Later { key: None, work });
        }
        let store = self.engine.store().clone();
        let refused = |e: crate::store::StoreError| HandleError::Refused(e.to_string());
        let now = Utc::now();
        let text = match command {
            Command::Watch { job_id } => {
                self.watched = job_id;
                String::new()
            }
            Command::Transform { tenant_id, service } => {
                let (key, work) = lifecycle::transform(&self.engine, &tenant_id, service)?;
                return self.later(key, format!("a transform of {tenant_id} {service}"), work);
            }
            Command::Verify { job_id } => {
                let job = self.job(&job_id).await?;
                if !job.status.is_terminal() {
                    return Err(HandleError::Refused(format!(
                        "job {job_id} is {}; verify it once it has ended",
                        job.status
                    )));
                }
                let (key, work) = lifecycle::verify(&self.engine, &job_id);
                return self.later(key, format!("a verification of {job_id}"), work);
            }
            Command::Trigger { request, target } => {
                if target == Target::Cloud {
                    return Err(HandleError::Refused(
                        "cloud dispatch is not configured: start the console with --cloud".into(),
                    ));
                }
                let plan = planner::plan(&self.config, &request, now)
                    .map_err(|e| HandleError::Refused(e.0))?;
                let outcome = self
                    .engine
                    .create_job(&plan, now)
                    .await
                    .map_err(|e| HandleError::Refused(e.to_string()))?;
                let job = outcome.job().clone();
                let created = matches!(outcome, crate::store::CreateOutcome::Created(_));
                if created {
                    // Manual, as `trigger` makes them: priority 1, at once.
                    let meta = JobMeta {
                        priority: 1,
                        ..JobMeta::default_for(&job.job_id)
                    };
                    self.engine
                        .set_job_meta(&meta)
                        .await
                        .map_err(|e| HandleError::Refused(e.to_string()))?;
                }
                let start = self.enqueue(&job).await;
                match (created, start) {
                    (true, Start::Waiting(why)) => {
                        format!("queued {} ({} chunks): {why}", job.job_id, job.total_chunks)
                    }
                    (true, _) => format!("started {} ({} chunks)", job.job_id, job.total_chunks),
                    (false, Start::Waiting(why)) => format!(
                        "{} already covers this range ({}); it {why}",
                        job.job_id, job.status
                    ),
                    (false, _) => format!(
                        "{} already covers this range ({}); running it",
                        job.job_id, job.status
                    ),
                }
            }
            Command::Resume { job_id } => {
                let job = self.job(&job_id).await?;
                if self.running.contains(&job_id) {
                    return Err(HandleError::Refused(format!(
                        "job {job_id} is already running in this console"
                    )));
                }
                if let Some(w) = self.scheduler.why(&job_id, now) {
                    return Err(HandleError::Refused(format!(
                        "job {job_id} already waits to start: {w}"
                    )));
                }
                match job.status {
                    JobStatus::Paused => {
                        store
                            .set_job_status(&job_id, JobStatus::Pending, now)
                            .await
                            .map_err(refused)?;
                    }
                    s if s.is_terminal() => {
                        return Err(HandleError::Refused(format!(
                            "job {job_id} is {s}; nothing to resume"
                        )));
                    }
                    _ => {}
                }
                match self.enqueue(&job).await {
                    Start::Waiting(why) => format!("queued {job_id}: {why}"),
                    _ => format!("resumed {job_id}"),
                }
            }
            Command::RetryFailed { job_id } => {
                let n = store.retry_failed(&job_id, now).await.map_err(refused)?;
                if n == 0 {
                    return Err(HandleError::Refused(format!(
                        "job {job_id} has no failed chunks"
                    )));
                }
                let job = self.job(&job_id).await?;
                match self.enqueue(&job).await {
                    Start::Waiting(why) => {
                        format!("reopened {n} failed chunk(s) of {job_id}; queued: {why}")
                    }
                    _ => format!("retrying {n} failed chunk(s) of {job_id}"),
                }
            }
            Command::Cancel { job_id } => {
                let job = self.job(&job_id).await?;
                if job.status.is_terminal() {
                    return Err(HandleError::Refused(format!(
                        "job {job_id} is already {}",
                        job.status
                    )));
                }
                store
                    .set_job_status(&job_id, JobStatus::Cancelled, now)
                    .await
                    .map_err(refused)?;
                self.scheduler.remove(&job_id);
                format!("cancelled {job_id}")
            }
            Command::Pause { job_id } => {
                let job = self.job(&job_id).await?;
                if job.status.is_terminal() {
                    return Err(HandleError::Refused(format!(
                        "job {job_id} is {}; nothing to pause",
                        job.status
                    )));
                }
                store
                    .set_job_status(&job_id, JobStatus::Paused, now)
                    .await
                    .map_err(refused)?;
                // A paused job that had not started yet gives up its place.
                self.scheduler.remove(&job_id);
                format!("paused {job_id}; chunks in flight finish first")
            }
            Command::Unpause { job_id } => {
                let job = self.job(&job_id).await?;
                if job.status != JobStatus::Paused {
                    return Err(HandleError::Refused(format!(
                        "job {job_id} is {}, not paused",
                        job.status
                    )));
                }
                store
                    .set_job_status(&job_id, JobStatus::Pending, now)
                    .await
                    .map_err(refused)?;
                match self.enqueue(&job).await {
                    Start::Waiting(why) => format!("unpaused {job_id}; queued: {why}"),
                    _ => format!("unpaused {job_id}"),
                }
            }
        };
        Ok(Answer::Now(text))
    }
}
