//! One step of a job at a time, for runners outside the claim loop (a cloud worker answering
//! one queue message): claim the next chunk, run it with the same code as local runs, and say
//! whether work remains. No AWS type crosses this boundary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{Engine, EngineError, StopReason};
use crate::domain::{ChunkKey, ChunkStatus, JobStatus};
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

impl Engine {
    /// Claims the next claimable chunk of `job_id` and runs it.
    pub async fn step_job(&self, job_id: &str, deadline: &Deadline) -> Result<Step, EngineError> {
        let job = self
            .store()
            .get_job(job_id)
            .await?
            .ok_or_else(|| StoreError::JobNotFound(job_id.to_string()))?;
        let now = Utc::now();
        let owner = self.options().owner.clone();
        let ordered = self.has_dependencies(&job);
        // Tables waiting for others of the job (companies before tickets) are not claimed.
        let later = || Step::Wait {
            until: Some(Utc::now() + self.options().poll_interval),
        };
        if ordered && self.only_blocked_work(&job, now).await? {
            return Ok(later());
        }
        match self
            .store()
            .claim_next_chunk(job_id, &owner, now + self.options().lease, now)
            .await?
        {
            Claim::Chunk(chunk)
                if ordered && self.blocked_by_dependencies(&job, &chunk).await? =>
            {
                match self
                    .store()
                    .release_chunk(&chunk.key, &owner, &chunk.checkpoint)
                    .await
                {
                    Ok(()) | Err(StoreError::LeaseLost { .. }) => Ok(later()),
                    Err(e) => Err(e.into()),
                }
            }
            Claim::Chunk(chunk) => {
                let key = chunk.key.clone();
                let stop = self.run_chunk(&job, *chunk, deadline).await?;
                Ok(Step::Ran { key, stop })
            }
            Claim::Wait { until } => {
                // A holder that died on this host is taken over at once: ask again now.
                if self.break_dead_leases(job_id).await? {
                    return Ok(Step::Wait {
                        until: Some(Utc::now()),
                    });
                }
                Ok(Step::Wait { until })
            }
            Claim::Done(status) => Ok(Step::Done(status)),
        }
    }

    /// Whether the job still has chunks to run: it is pending or running and some chunk is
    /// pending or running.
    pub async fn has_open_chunks(&self, job_id: &str) -> Result<bool, EngineError> {
        let job = self
            .store()
            .get_job(job_id)
            .await?
            .ok_or_else(|| StoreError::JobNotFound(job_id.to_string()))?;
        if !matches!(job.status, JobStatus::Pending | JobStatus::Running) {
            return Ok(false);
        }
        Ok(self
            .store()
            .chunks(job_id)
            .await?
            .iter()
            .any(|c| matches!(c.status, ChunkStatus::Pending | ChunkStatus::Running)))
    }
}
