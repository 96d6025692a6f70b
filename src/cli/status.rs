//! `status` without a job, locally and with `--cloud`: the jobs, then the sync markers and
//! what the gap check finds in them.

use chrono::{DateTime, Utc};
use color_eyre::eyre::Result;

use super::{Output, output};
use crate::domain::Job;
use crate::engine::ops::handoff_due;
use crate::store::{JobFilter, JobStore, LifecycleStore};

/// Job id → until when it waits for its API quota.
pub type QuotaWaits = std::collections::BTreeMap<String, DateTime<Utc>>;

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
    let due = handoffs_due(lifecycle, &jobs).await?;
    let markers = lifecycle.markers(tenant_id, None).await?;
    let gaps = crate::engine::handoff::gap_check(&markers, &jobs);
    output::print_jobs_with_handoff(&jobs, &waits, &due, out, &markers, &gaps)
}

/// Completed jobs whose hand-off is still due (`ops::handoff_due`).
async fn handoffs_due(
    lifecycle: &dyn LifecycleStore,
    jobs: &[Job],
) -> Result<std::collections::BTreeSet<String>> {
    let completed: Vec<String> = jobs
        .iter()
        .filter(|j| j.status == crate::domain::JobStatus::Completed)
        .map(|j| j.job_id.clone())
        .collect();
    if completed.is_empty() {
        return Ok(Default::default());
    }
    let metas = lifecycle.job_metas(&completed).await?;
    Ok(jobs
        .iter()
        .filter(|j| handoff_due(j, metas.iter().find(|m| m.job_id == j.job_id)))
        .map(|j| j.job_id.clone())
        .collect())
}

/// The jobs that wait for their API quota now, and until when (`engine::quota::waits`).
pub async fn quota_waits(lifecycle: &dyn LifecycleStore, jobs: &[Job]) -> Result<QuotaWaits> {
    Ok(crate::engine::quota::waits(lifecycle, jobs).await?)
}
