//! `status` without a job, locally and with `--cloud`: the jobs, then the sync markers and
//! what the gap check finds in them.

use color_eyre::eyre::Result;

use super::{Output, output};
use crate::store::{JobFilter, JobStore, LifecycleStore};

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
    let markers = lifecycle.markers(tenant_id, None).await?;
    let gaps = crate::engine::handoff::gap_check(&markers, &jobs);
    output::print_jobs_with_handoff(&jobs, out, &markers, &gaps)
}
