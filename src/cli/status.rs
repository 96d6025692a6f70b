//! `status` without a job, locally and with `--cloud`: the jobs, then the sync markers and
//! what the gap check finds in them.

use chrono::{DateTime, Utc};
use color_eyre::eyre::Result;

use super::{Output, output};
use crate::domain::Job;
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
    let markers = lifecycle.markers(tenant_id, None).await?;
    let gaps = crate::engine::handoff::gap_check(&markers, &jobs);
    output::print_jobs_with_handoff(&jobs, &waits, out, &markers, &gaps)
}

/// The jobs that wait for their API quota now, and until when (`engine::quota::waits`).
pub async fn quota_waits(lifecycle: &dyn LifecycleStore, jobs: &[Job]) -> Result<QuotaWaits> {
    Ok(crate::engine::quota::waits(lifecycle, jobs).await?)
}
