//! The engine's side of the quota reserve: one `JobQuota` per job in this process, fed by
//! every answer's usage (Salesforce's `Sforce-Limit-Info`, ServiceNow's `X-RateLimit-*`) and by
//! the source's `allocation()` (looked at only when a wait's time has come: at a job's start
//! the first answers tell, so a sparse job spends no call on it), and the stored wait note
//! (`LifecycleStore::set_quota_wait`) that shows the job as `waiting_for_quota` and holds it
//! in other processes too (read once per job and process).
//!
//! The rule itself is `super::verdict`; the executor stops a chunk at a page boundary when
//! `quota_after_page` or a refusal closes the gate, and `step` holds the job while it is closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{Gate, JobQuota};
use crate::domain::Job;
use crate::engine::{Engine, EngineEvent};
use crate::sources::{ApiUsage, Source, SourceError};

/// Each job's quota state, by job id.
pub(crate) type Quotas = Mutex<HashMap<String, Arc<Mutex<JobQuota>>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    fn job_quota(&self, job: &Job) -> Arc<Mutex<JobQuota>> {
        let share = self.config().backfill.max_api_share(job.service);
        lock(&self.inner.quotas)
            .entry(job.job_id.clone())
            .or_insert_with(|| Arc::new(Mutex::new(JobQuota::new(share))))
            .clone()
    }

    /// Before a chunk's first call: looks at the allocation when a wait's time has come, then
    /// applies the rule to what is known. `Some(at)`: the job waits until `at`.
    pub(crate) async fn quota_before_chunk(
        &self,
        job: &Job,
        source: &dyn Source,
    ) -> Option<DateTime<Utc>> {
        let quota = self.job_quota(job);
        let now = Instant::now();
        let look = {
            let q = lock(&quota);
            if let Some((_, at)) = q.closed_until(now) {
                return Some(at);
            }
            q.due_for_recheck(now)
        };
        let refused = look && self.look_at_allocation(job, source, &quota).await;
        let gate = lock(&quota).check(Instant::now(), Utc::now(), refused);
        match gate {
            Gate::Open => None,
            Gate::Closed { at, .. } => Some(at),
        }
    }

    /// Asks the source for its allocation and takes it in; true when the server refused for
    /// its total. Any other failure is logged: the pages' own headers will tell.
    async fn look_at_allocation(
        &self,
        job: &Job,
        source: &dyn Source,
        quota: &Mutex<JobQuota>,
    ) -> bool {
        self.budget(&job.tenant_id, job.service).acquire().await;
        match source.allocation().await {
            Ok(Some(usage)) => {
                tracing::debug!(job_id = %job.job_id, used = ?usage.used, limit = usage.limit, "API allocation");
                lock(quota).observe(usage, Instant::now());
                false
            }
            Ok(None) => false,
            Err(SourceError::QuotaExhausted { .. }) => true,
            Err(e) => {
                tracing::warn!(job_id = %job.job_id, error = %e, "could not read the API allocation; going by the answers' headers");
                false
            }
        }
    }

    /// A page was answered: counts the call, takes the server's word, applies the rule.
    /// `Some(at)`: the job's share is used up; it waits until `at`.
    pub(crate) fn quota_after_page(
        &self,
        job: &Job,
        usage: Option<&ApiUsage>,
    ) -> Option<DateTime<Utc>> {
        let quota = self.job_quota(job);
        let mut q = lock(&quota);
        let now = Instant::now();
        q.record_call(now);
        if let Some(u) = usage {
            q.observe(u.clone(), now);
        }
        match q.check(now, Utc::now(), false) {
            Gate::Open => None,
            Gate::Closed { at, .. } => Some(at),
        }
    }

    /// The server refused a call for its total: the job waits until the returned time.
    pub(crate) fn quota_refused(&self, job: &Job) -> DateTime<Utc> {
        let quota = self.job_quota(job);
        let mut q = lock(&quota);
        match q.check(Instant::now(), Utc::now(), true) {
            Gate::Closed { at, .. } => at,
            Gate::Open => Utc::now(),
        }
    }

    /// For `step`: `Some(at)` while the job waits for its quota. When the wait's time has
    /// come the allocation is looked at again: still used up, the wait is longer (and
    /// noted); free again, the note is cleared and the job goes on.
    pub(crate) async fn quota_wait(&self, job: &Job) -> Option<DateTime<Utc>> {
        let known = lock(&self.inner.quotas).get(&job.job_id).cloned();
        let quota = match known {
            Some(q) => q,
            None => self.quota_from_note(job).await?,
        };
        let now = Instant::now();
        {
            let q = lock(&quota);
            if let Some((_, at)) = q.closed_until(now) {
                return Some(at);
            }
            if !q.due_for_recheck(now) {
                return None;
            }
        }
        let source = self.source(&job.tenant_id, job.service).ok()?;
        let waited = self.quota_before_chunk(job, source.as_ref()).await;
        self.note_quota_wait(job, waited).await;
        waited
    }

    /// For the plan preview: `calls` as a share of the allocation `tenant_id`'s `service`
    /// has left, asked of the source now. `Ok(None)` when the API states none.
    pub async fn allocation_share(
        &self,
        tenant_id: &str,
        service: crate::domain::Service,
        calls: u64,
    ) -> Result<Option<super::AllocationShare>, String> {
        let source = self.source(tenant_id, service).map_err(|e| e.to_string())?;
        self.budget(tenant_id, service).acquire().await;
        let usage = source.allocation().await.map_err(|e| e.to_string())?;
        let share = self.config().backfill.max_api_share(service);
        Ok(usage.and_then(|u| super::AllocationShare::new(calls, &u, share)))
    }

    /// The first look at a job in this process: a wait noted by another process (a cloud
    /// worker, an earlier `run`) that is still ahead holds the job here too. One read per job.
    async fn quota_from_note(&self, job: &Job) -> Option<Arc<Mutex<JobQuota>>> {
        let quota = self.job_quota(job);
        let ids = [job.job_id.clone()];
        let note = match self.lifecycle().job_metas(&ids).await {
            Ok(metas) => metas.into_iter().next().and_then(|m| m.quota_wait_until),
            Err(e) => {
                tracing::warn!(job_id = %job.job_id, error = %e, "could not read the quota wait note");
                None
            }
        };
        let ahead = note.and_then(|at| Some((at, (at - Utc::now()).to_std().ok()?)));
        let (at, left) = ahead?;
        lock(&quota).hold(Instant::now() + left, at);
        Some(quota)
    }

    /// Stores (or clears) the job's wait note and tells watchers.
    pub(crate) async fn note_quota_wait(&self, job: &Job, until: Option<DateTime<Utc>>) {
        if let Err(e) = self.lifecycle().set_quota_wait(&job.job_id, until).await {
            tracing::warn!(job_id = %job.job_id, error = %e, "could not store the quota wait note");
        }
        match until {
            Some(at) => {
                tracing::info!(job_id = %job.job_id, until = %at.to_rfc3339(),
                    "the job's share of the API allocation is used up; waiting for calls to free");
                self.emit(EngineEvent::WaitingForQuota {
                    job_id: job.job_id.clone(),
                    until: at,
                });
            }
            None => {
                tracing::info!(job_id = %job.job_id, "API allocation free again; the job goes on")
            }
        }
    }
}
