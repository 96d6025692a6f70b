//! `status` without a job, locally and with `--cloud`: the jobs, then the sync markers and
//! what the gap check finds in them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use color_eyre::eyre::Result;

use super::{Output, output};
use crate::domain::Job;
use crate::store::{JobFilter, JobStore, LifecycleStore};

/// Job id → until when it waits for its API quota.
pub type QuotaWaits = HashMap<String, DateTime<Utc>>;

/// `status` without a job, locally and with `--cloud`: the jobs, then the sync markers and
/// what the gap check finds in them.
pub async fn print_status_list(
    store: &dyn JobStore,
    lifecycle: &dyn LifecycleStore,
    tenant_id: Option<&str>,
    out: Output,
) -> Result<()> {
    let filter = JobFilter {
        tenant_id: tenant_id.map(str::to_string),
        ..JobFilter::default()
    };
    let jobs = store.list_jobs(&filter).await?;
    let waits = quota_waits(lifecycle, &jobs).await?;
    let markers = lifecycle.markers(tenant_id, None).await?;
    let gaps = crate::engine::handoff::gap_check(&markers, &jobs);
    output::print_jobs_with_handoff(&jobs, &waits, out, &markers, &gaps)
}

/// The jobs that wait for their API quota now, and until when (`Job::quota_wait`).
pub async fn quota_waits(lifecycle: &dyn LifecycleStore, jobs: &[Job]) -> Result<QuotaWaits> {
    let active: Vec<String> = jobs
        .iter()
        .filter(|j| j.status.is_active())
        .map(|j| j.job_id.clone())
        .collect();
    if active.is_empty() {
        return Ok(QuotaWaits::new());
    }
    let notes: HashMap<String, DateTime<Utc>> = lifecycle
        .job_metas(&active)
        .await?
        .into_iter()
        .filter_map(|m| Some((m.job_id, m.quota_wait_until?)))
        .collect();
    let now = Utc::now();
    Ok(jobs
        .iter()
        .filter_map(|j| {
            let until = j.quota_wait(notes.get(&j.job_id).copied(), now)?;
            Some((j.job_id.clone(), until))
        })
        .collect())
}
