//! `run`: every active job of the store through the local runner, under the scheduling rules.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;

use super::{LocalRunner, RunnerOptions, handoff_due};
use crate::domain::{JobMeta, JobStatus};
use crate::engine::schedule::Candidate;
use crate::engine::{Engine, EngineError, EngineEvent, RunOutcome};
use crate::store::JobFilter;

/// What `run_scheduled` did: the jobs it ran and the ones left for the off-peak window.
#[derive(Clone, Debug, Serialize)]
pub struct ScheduledRun {
    pub outcomes: Vec<RunOutcome>,
    pub deferred: Vec<(String, DateTime<Utc>)>,
}

impl Engine {
    /// Runs every active job under the scheduling rules: at most `max_concurrent_jobs` at
    /// once from at most `max_parallel_tenants` tenants, fair turns, priority, off-peak
    /// waiters left for their window (or, with `wait_off_peak`, waited for until the
    /// deadline). Completed jobs older than the cleanup age are removed afterwards.
    pub async fn run_scheduled(
        &self,
        deadline: Option<Instant>,
        wait_off_peak: bool,
    ) -> Result<ScheduledRun, EngineError> {
        let candidates = self.active_candidates().await?;
        let runner = LocalRunner::new(
            self.clone(),
            RunnerOptions {
                deadline,
                ..RunnerOptions::default()
            },
        );
        // Long-running jobs are judged while they run, once a minute.
        let sweeper = {
            let engine = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    if let Err(e) = engine.sweep_alerts(Utc::now()).await {
                        tracing::warn!(error = %e, "alert sweep failed");
                    }
                }
            })
        };
        let done = runner.run_all(candidates, wait_off_peak).await;
        sweeper.abort();
        for (job_id, until) in &done.deferred {
            self.emit(EngineEvent::JobDeferred {
                job_id: job_id.clone(),
                until: *until,
            });
        }
        let outcomes = done.outcomes.into_iter().collect::<Result<Vec<_>, _>>()?;
        self.cleanup_expired(Utc::now()).await;
        Ok(ScheduledRun {
            outcomes,
            deferred: done.deferred,
        })
    }

    /// The store's pending and running jobs, and completed jobs whose hand-off is still due
    /// (`handoff_due`: a crash or a failure after the last chunk), oldest first, with their
    /// hints.
    async fn active_candidates(&self) -> Result<Vec<Candidate>, EngineError> {
        let mut jobs = self.store().list_jobs(&JobFilter::default()).await?;
        jobs.retain(|j| {
            matches!(
                j.status,
                JobStatus::Pending | JobStatus::Running | JobStatus::Completed
            )
        });
        jobs.reverse();
        let ids: Vec<String> = jobs.iter().map(|j| j.job_id.clone()).collect();
        let metas = self.lifecycle().job_metas(&ids).await?;
        Ok(jobs
            .iter()
            .filter_map(|j| {
                let meta = metas.iter().find(|m| m.job_id == j.job_id);
                if j.status == JobStatus::Completed && !handoff_due(j, meta) {
                    return None;
                }
                let meta = meta
                    .cloned()
                    .unwrap_or_else(|| JobMeta::default_for(&j.job_id));
                Some(Candidate::of(j, &meta))
            })
            .collect())
    }
}
