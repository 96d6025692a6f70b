//! The lifecycle store: what lives beside jobs. Incremental sync markers, enablement history
//! of each tenant's service, scheduling hints, alerts, verification results, and removal of
//! old jobs.
//!
//! A separate trait from `JobStore` so a backend can add it without touching the claim path;
//! SQLite implements both on one file, DynamoDB both on its two tables. Like `JobStore`, each
//! method is one atomic write (DynamoDB: one conditional write, or a commit point that makes a
//! larger change visible at once).
//!
//! How a marker moves and how a service's history changes are pure functions here
//! (`next_marker`, `observed`), so every backend applies exactly the same rules.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{
    Alert, AlertKind, ChunkVerification, JobKind, JobMeta, Service, ServiceState, SyncMarker,
};

/// One move of a table's marker by a finished job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerAdvance {
    pub tenant_id: String,
    pub service: Service,
    pub table: String,
    pub job_id: String,
    pub kind: JobKind,
    /// Where the job's window for this table started (a sync starts at the marker).
    pub from: DateTime<Utc>,
    /// The job's frozen end: the new marker.
    pub to: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// The marker after `adv`, given the stored one: the rules of `advance_marker`.
///
/// A `Conflict` when a sync has no marker to continue, or starts after the marker (the
/// records updated in between would be missed).
pub fn next_marker(
    existing: Option<SyncMarker>,
    adv: &MarkerAdvance,
) -> Result<SyncMarker, StoreError> {
    Ok(match (adv.kind, existing) {
        (JobKind::Backfill, None) => SyncMarker {
            tenant_id: adv.tenant_id.clone(),
            service: adv.service,
            table: adv.table.clone(),
            last_updated: adv.to,
            set_by_job: adv.job_id.clone(),
            backfill_job: Some(adv.job_id.clone()),
            backfill_end: Some(adv.to),
            updated_at: adv.now,
        },
        (JobKind::Backfill, Some(m)) => {
            let newest_backfill = m.backfill_end.is_none_or(|e| adv.to >= e);
            SyncMarker {
                last_updated: m.last_updated.max(adv.to),
                set_by_job: if adv.to >= m.last_updated {
                    adv.job_id.clone()
                } else {
                    m.set_by_job.clone()
                },
                backfill_job: if newest_backfill {
                    Some(adv.job_id.clone())
                } else {
                    m.backfill_job.clone()
                },
                backfill_end: if newest_backfill {
                    Some(adv.to)
                } else {
                    m.backfill_end
                },
                updated_at: adv.now,
                ..m
            }
        }
        (JobKind::Sync, None) => {
            return Err(StoreError::Conflict(format!(
                "{} {} {}: no sync marker; a completed backfill sets the first one",
                adv.tenant_id, adv.service, adv.table
            )));
        }
        (JobKind::Sync, Some(m)) => {
            if m.last_updated < adv.from {
                return Err(StoreError::Conflict(format!(
                    "{} {} {}: sync {} starts at {} but the marker is at {}: records updated in between would be missed",
                    adv.tenant_id,
                    adv.service,
                    adv.table,
                    adv.job_id,
                    adv.from.to_rfc3339(),
                    m.last_updated.to_rfc3339()
                )));
            }
            SyncMarker {
                last_updated: m.last_updated.max(adv.to),
                set_by_job: if adv.to > m.last_updated {
                    adv.job_id.clone()
                } else {
                    m.set_by_job.clone()
                },
                updated_at: adv.now,
                ..m
            }
        }
    })
}

/// A service's state after the registry was seen saying `enabled` at `now`: the rules of
/// `observe_service`. `None` when the stored state stays as it is.
pub fn observed(
    existing: Option<&ServiceState>,
    tenant_id: &str,
    service: Service,
    enabled: bool,
    now: DateTime<Utc>,
) -> Option<ServiceState> {
    match existing {
        None => Some(ServiceState {
            tenant_id: tenant_id.to_string(),
            service,
            enabled,
            first_seen_at: now,
            last_disabled_at: (!enabled).then_some(now),
            reenabled_at: None,
        }),
        Some(s) if !enabled => Some(ServiceState {
            enabled: false,
            last_disabled_at: Some(now),
            reenabled_at: None,
            ..s.clone()
        }),
        Some(s) if !s.enabled => Some(ServiceState {
            enabled: true,
            reenabled_at: Some(now),
            ..s.clone()
        }),
        Some(_) => None,
    }
}

#[derive(Clone, Debug, Default)]
pub struct AlertFilter {
    pub tenant_id: Option<String>,
    pub job_id: Option<String>,
    pub kind: Option<AlertKind>,
}

/// What a hand-off claim found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandoffClaim {
    /// The caller holds it now.
    Taken,
    /// The job's hand-off is done.
    Done,
    /// Another owner holds it until then.
    Held { owner: String, until: DateTime<Utc> },
}

#[async_trait]
pub trait LifecycleStore: Send + Sync {
    /// Moves a marker forward, never back.
    ///
    /// A backfill sets it to at least its end and records itself as the backfill the sync
    /// chain starts from (when its end is the latest such end). A sync needs a marker at or
    /// after its own start, else it would leave a gap: that is a `Conflict` naming both.
    async fn advance_marker(&self, adv: &MarkerAdvance) -> Result<SyncMarker, StoreError>;
    /// Markers of one tenant's service (`None`: all), sorted by tenant, service, table.
    async fn markers(
        &self,
        tenant_id: Option<&str>,
        service: Option<Service>,
    ) -> Result<Vec<SyncMarker>, StoreError>;

    /// Records what the registry says now. Seen disabled: remembers when. Seen enabled after
    /// being disabled: remembers the re-enabling, until `clear_reenabled`.
    async fn observe_service(
        &self,
        tenant_id: &str,
        service: Service,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<ServiceState, StoreError>;
    async fn service_states(&self) -> Result<Vec<ServiceState>, StoreError>;
    /// A backfill of a re-enabled service completed: it is no longer new.
    async fn clear_reenabled(&self, tenant_id: &str, service: Service) -> Result<(), StoreError>;

    /// Stores a job's scheduling hints (replacing earlier ones, keeping `finalized_at`).
    async fn put_job_meta(&self, meta: &JobMeta) -> Result<(), StoreError>;
    /// Hints of the given jobs; jobs without stored hints are left out.
    async fn job_metas(&self, job_ids: &[String]) -> Result<Vec<JobMeta>, StoreError>;
    /// Notes that the job waits for its API quota until `until`, or clears the note (`None`);
    /// other hints stay as they are (defaults when the job has none).
    async fn set_quota_wait(
        &self,
        job_id: &str,
        until: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// Marks a job's post-completion steps done; false if they already were.
    async fn finalize_job(&self, job_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Takes a completed job's hand-off (markers, canonical transform) for `owner` until
    /// `until`, unless it is done (`finalized_at` set) or another owner holds a claim that
    /// has not lapsed. Of many runners of a job one does the hand-off; a crashed holder's
    /// claim lapses at `until`, or at once when the caller knows it dead (`breaking`).
    async fn claim_handoff(
        &self,
        job_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        breaking: Option<&str>,
    ) -> Result<HandoffClaim, StoreError>;
    /// Gives up `owner`'s hand-off claim (its hand-off failed), so the next run may take it
    /// at once. Another owner's claim is left alone.
    async fn release_handoff(&self, job_id: &str, owner: &str) -> Result<(), StoreError>;

    /// Stores an alert unless one of the same kind and subject exists; true when stored.
    async fn raise_alert(&self, alert: &Alert) -> Result<bool, StoreError>;
    /// Alerts, newest first.
    async fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError>;

    /// Replaces a job's verification results with these.
    async fn save_verification(
        &self,
        job_id: &str,
        results: &[ChunkVerification],
    ) -> Result<(), StoreError>;
    /// A job's verification results in chunk order; empty if never verified.
    async fn verification(&self, job_id: &str) -> Result<Vec<ChunkVerification>, StoreError>;

    /// A chunk attempt of the job ended: a failure lengthens the job's run of failed
    /// attempts, a success ends it. Returns the run's length now (0 after a success). Every
    /// process working the job counts into the same run.
    async fn chunk_attempt_ended(&self, job_id: &str, failed: bool) -> Result<u32, StoreError>;

    /// Removes a job, its chunks, hints, verification results and alerts. Markers stay:
    /// they describe the data, which is kept. False if there was no such job.
    async fn delete_job(&self, job_id: &str) -> Result<bool, StoreError>;
}
