//! Cleanup: completed jobs older than `cleanup_completed_jobs_after_days` leave the store
//! (with their chunks, hints, verification results and alerts) once their hand-off is done. Their data stays, and so do
//! the sync markers, which describe the data rather than the jobs.

use chrono::{DateTime, Duration, Utc};

use super::ops::handoff_due;
use super::{Engine, EngineError};
use crate::domain::{Job, JobStatus};
use crate::store::JobFilter;

/// Completed jobs that finished before `now - days`, oldest first (none when `days` reaches
/// before any date).
pub fn expired(jobs: &[Job], days: u32, now: DateTime<Utc>) -> Vec<Job> {
    let Some(cutoff) = Duration::try_days(i64::from(days)).and_then(|d| now.checked_sub_signed(d))
    else {
        return Vec::new();
    };
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
        let lc = self.lifecycle();
        let jobs = self.store().list_jobs(&JobFilter::default()).await?;
        let mut old = expired(&jobs, days, now);
        // A job whose hand-off is still due stays until it is done: removing it would leave
        // its markers unmoved and its canonical tables unbuilt for good.
        let ids: Vec<String> = old.iter().map(|j| j.job_id.clone()).collect();
        let metas = lc.job_metas(&ids).await?;
        old.retain(|j| !handoff_due(j, metas.iter().find(|m| m.job_id == j.job_id)));
        if !dry_run {
            for j in &old {
                if lc.delete_job(&j.job_id).await? {
                    tracing::info!(job_id = %j.job_id, finished_at = ?j.finished_at, "removed old completed job; its data is kept");
                }
            }
        }
        Ok(old)
    }

    /// The automatic cleanup, after a scheduling pass or a job's end: completed jobs older
    /// than `cleanup_completed_jobs_after_days` leave the store. A failure is only logged;
    /// the next pass tries again.
    pub async fn cleanup_expired(&self, now: DateTime<Utc>) {
        let days = self
            .config()
            .backfill
            .monitoring
            .cleanup_completed_jobs_after_days;
        if let Err(e) = self.cleanup(days, now, false).await {
            tracing::warn!(error = %e, "automatic cleanup of old jobs failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Service, Window};
    use chrono::TimeZone;

    fn job(id: &str, status: JobStatus, finished_days_ago: Option<i64>, now: DateTime<Utc>) -> Job {
        let w = Window::new(now - Duration::days(400), now - Duration::days(100));
        Job {
            job_id: id.into(),
            tenant_id: "acme".into(),
            service: Service::Connectwise,
            tables: vec!["tickets".into()],
            status,
            window: w,
            chunk_size_days: 30,
            max_attempts: 3,
            total_chunks: 1,
            completed_chunks: 1,
            failed_chunks: 0,
            records: 1,
            created_at: w.end,
            updated_at: w.end,
            finished_at: finished_days_ago.map(|d| now - Duration::days(d)),
            skipped_fields: Vec::new(),
        }
    }

    #[test]
    fn only_completed_jobs_past_the_age_expire_oldest_first() {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
        let jobs = vec![
            job("recent", JobStatus::Completed, Some(29), now),
            job("old", JobStatus::Completed, Some(31), now),
            job("older", JobStatus::Completed, Some(90), now),
            job("errors", JobStatus::CompletedWithErrors, Some(90), now),
            job("cancelled", JobStatus::Cancelled, Some(90), now),
            job("running", JobStatus::Running, None, now),
        ];
        let ids: Vec<String> = expired(&jobs, 30, now)
            .into_iter()
            .map(|j| j.job_id)
            .collect();
        assert_eq!(
            ids,
            ["older", "old"],
            "jobs with errors stay for their analysis"
        );
    }

    #[test]
    fn an_age_before_any_date_expires_nothing_instead_of_overflowing() {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
        let jobs = vec![job("older", JobStatus::Completed, Some(90), now)];
        assert!(expired(&jobs, u32::MAX, now).is_empty());
    }
}
