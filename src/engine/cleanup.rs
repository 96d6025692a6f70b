//! Cleanup: completed jobs older than `cleanup_completed_jobs_after_days` leave the store
//! (with their chunks, hints, verification results and alerts). Their data stays, and so do
//! the sync markers, which describe the data rather than the jobs.

use chrono::{DateTime, Duration, Utc};

use super::{Engine, EngineError};
use crate::domain::{Job, JobStatus};
use crate::store::JobFilter;

/// Completed jobs that finished before `now - days`, oldest first.
pub fn expired(jobs: &[Job], days: u32, now: DateTime<Utc>) -> Vec<Job> {
    let cutoff = now - Duration::days(i64::from(days));
    let mut out: Vec<Job> = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Completed && j.finished_at.is_some_and(|f| f < cutoff))
        .cloned()
        .collect();
    out.sort_by_key(|j| j.finished_at);
    out
}

impl Engine {
    /// Removes completed jobs older than `days` (just lists them when `dry_run`); returns them.
    pub async fn cleanup(
        &self,
        days: u32,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Vec<Job>, EngineError> {
        let lc = self.require_lifecycle()?;
        let jobs = self.store().list_jobs(&JobFilter::default()).await?;
        let old = expired(&jobs, days, now);
        if !dry_run {
            for j in &old {
                if lc.delete_job(&j.job_id).await? {
                    tracing::info!(job_id = %j.job_id, finished_at = ?j.finished_at, "removed old completed job; its data is kept");
                }
            }
        }
        Ok(old)
    }
}
