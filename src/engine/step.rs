//! One step of a job: claim the next chunk, run it, and say whether work remains. The local
//! runners loop over it (`Engine::run_job`); a cloud worker takes one step per queue
//! message (`Engine::step_job`). No AWS type crosses this boundary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Engine, EngineError, StopReason};
use crate::domain::{ChunkKey, Job, JobStatus};
use crate::store::{Claim, StoreError};

/// When a run must stop and save its state: at an instant, when a flag is raised (a cloud
/// worker whose task was taken away, or that is shutting down), or never.
#[derive(Clone, Debug, Default)]
pub struct Deadline {
    at: Option<Instant>,
    flag: Option<Arc<AtomicBool>>,
}

impl Deadline {
    /// Stops at `at` (never when `None`).
    pub fn at(at: Option<Instant>) -> Self {
        Deadline { at, flag: None }
    }

    /// Also stops as soon as `flag` is true.
    pub fn with_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.flag = Some(flag);
        self
    }

    pub fn reached(&self) -> bool {
        self.at.is_some_and(|d| Instant::now() >= d)
            || self.flag.as_ref().is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// Resolves when the deadline is reached (never, for a deadline that never comes). A
    /// flag is looked at every 100 ms.
    pub(super) async fn wait(&self) {
        const FLAG_POLL: Duration = Duration::from_millis(100);
        loop {
            if self.reached() {
                return;
            }
            match (self.at, &self.flag) {
                (None, None) => std::future::pending::<()>().await,
                (Some(at), None) => tokio::time::sleep_until(at).await,
                (at, Some(_)) => {
                    let next = Instant::now() + FLAG_POLL;
                    tokio::time::sleep_until(at.map_or(next, |d| d.min(next))).await
                }
            }
        }
    }

    /// `wake`, or the deadline when it comes first.
    pub(super) fn cap(&self, wake: Instant) -> Instant {
        self.at.map_or(wake, |d| wake.min(d))
    }
}

/// What one step of a job did.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// A chunk ran: to its end, to a failed attempt (recorded with its backoff), or until the
    /// deadline (released with its checkpoint: `stop` says `ContinuationNeeded`).
    Ran { key: ChunkKey, stop: StopReason },
    /// Nothing can be claimed now (a backoff, another runner's lease); look again at `until`.
    Wait { until: Option<DateTime<Utc>> },
    /// No chunk is left to run, or the job is paused or cancelled.
    Done(JobStatus),
}

/// How long to wait after `Step::Wait { until }` before looking again: until `until`, at
/// most `poll`, at least 10 ms.
pub fn wait_before_retry(until: Option<DateTime<Utc>>, poll: Duration) -> Duration {
    let wait = match until {
        Some(until) => poll.min((until - Utc::now()).to_std().unwrap_or_default()),
        None => poll,
    };
    wait.max(Duration::from_millis(10))
}

impl Engine {
    /// Claims the next claimable chunk of `job_id` and runs it.
    pub async fn step_job(&self, job_id: &str, deadline: &Deadline) -> Result<Step, EngineError> {
        let job = self.load_job(job_id).await?;
        self.step(&job, deadline, None).await
    }

    /// The job as stored now.
    pub(super) async fn load_job(&self, job_id: &str) -> Result<Job, EngineError> {
        Ok(self
            .store()
            .get_job(job_id)
            .await?
            .ok_or_else(|| StoreError::JobNotFound(job_id.to_string()))?)
    }

    /// One step of `job`: claim its next claimable chunk and run it, or say why not. When
    /// the job's tables wait for one another (`strict_table_order`), `gate` (shared by this process's runners of
    /// the job) makes them look and claim one at a time, so two of them never both see the
    /// last chunk of a dependency as free.
    pub(super) async fn step(
        &self,
        job: &Job,
        deadline: &Deadline,
        gate: Option<&Mutex<()>>,
    ) -> Result<Step, EngineError> {
        // The job's share of its API allocation is used up: nothing is claimed until then,
        // unless it was paused or cancelled meanwhile.
        if let Some(until) = self.quota_wait(job).await {
            let status = self.load_job(&job.job_id).await?.status;
            if !matches!(status, JobStatus::Pending | JobStatus::Running) {
                return Ok(Step::Done(status));
            }
            return Ok(Step::Wait { until: Some(until) });
        }
        let ordered = self.waits_for_dependencies(job);
        let turn = match gate {
            Some(gate) if ordered => Some(gate.lock().await),
            _ => None,
        };
        let now = Utc::now();
        // Everything claimable waits for other tables (companies before tickets): claiming
        // would only hand a blocked chunk back.
        if ordered && self.only_blocked_work(job, now).await? {
            drop(turn);
            return self.unless_dead_holders(job, self.after_poll()).await;
        }
        let claim = self
            .store()
            .claim_next_chunk(
                &job.job_id,
                &self.options().owner,
                now + self.options().lease,
                now,
            )
            .await?;
        drop(turn);
        match claim {
            Claim::Chunk(chunk) if ordered && self.blocked_by_dependencies(job, &chunk).await? => {
                // Its table waits for others of the job: hand the chunk back untouched.
                match self
                    .store()
                    .release_chunk(&chunk.key, &self.options().owner, &chunk.checkpoint)
                    .await
                {
                    Ok(()) | Err(StoreError::LeaseLost { .. }) => Ok(Step::Wait {
                        until: self.after_poll(),
                    }),
                    Err(e) => Err(e.into()),
                }
            }
            Claim::Chunk(chunk) => {
                let key = chunk.key.clone();
                let stop = self.run_chunk(job, *chunk, deadline).await?;
                Ok(Step::Ran { key, stop })
            }
            Claim::Wait { until } => self.unless_dead_holders(job, until).await,
            Claim::Done(status) => Ok(Step::Done(status)),
        }
    }

    /// One poll interval from now.
    fn after_poll(&self) -> Option<DateTime<Utc>> {
        Some(Utc::now() + self.options().poll_interval)
    }

    /// `Wait { until }`, unless a holder that blocks the job died on this host: that one is
    /// taken over at once, and the answer is to look again now.
    async fn unless_dead_holders(
        &self,
        job: &Job,
        until: Option<DateTime<Utc>>,
    ) -> Result<Step, EngineError> {
        if self.break_dead_leases(&job.job_id).await? {
            return Ok(Step::Wait {
                until: Some(Utc::now()),
            });
        }
        Ok(Step::Wait { until })
    }

    /// Whether the job still has chunks to run: it is pending or running and fewer chunks
    /// have ended (succeeded or failed) than it has. The job's counters are exact in every
    /// store (DynamoDB sums them from the table frontiers), so this is one job read, however
    /// many chunks the job has: a cloud lane asks it every loop.
    pub async fn has_open_chunks(&self, job_id: &str) -> Result<bool, EngineError> {
        let job = self.load_job(job_id).await?;
        Ok(
            matches!(job.status, JobStatus::Pending | JobStatus::Running)
                && job.completed_chunks + job.failed_chunks < job.total_chunks,
        )
    }
}
