//! Job state behind one trait: jobs, their chunks, leases and checkpoints.
//!
//! Every transition is one atomic, conditional write: a chunk is only changed by the
//! process holding its lease, and claiming picks at most one owner even when several
//! processes race for the same job.

pub mod dynamodb;
pub mod lifecycle;
pub mod pulse;
pub mod rate;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{Checkpoint, Chunk, ChunkKey, Job, JobStatus, Service};

pub use dynamodb::{DynamoOptions, DynamoStore, RequestCounter, RequestCounts};
pub use lifecycle::{AlertFilter, HandoffClaim, LifecycleStore, MarkerAdvance};
pub use pulse::{PulseCounts, PulseRow};
pub use rate::{MemoryRateStore, RateChange, RateClock, RateRow, RateStore, reserve};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job '{0}' not found")]
    JobNotFound(String),
    #[error("chunk {0} not found")]
    ChunkNotFound(ChunkKey),
    #[error("lease on chunk {key} is no longer held by {owner}")]
    LeaseLost { key: ChunkKey, owner: String },
    #[error("{0}")]
    Conflict(String),
    #[error("job store: {0}")]
    Backend(String),
}

/// What `create_job` did.
#[derive(Clone, Debug, PartialEq)]
pub enum CreateOutcome {
    Created(Job),
    /// An active job already covers this tenant, service, tables and start: it is returned
    /// instead of starting a second copy of the same work.
    Existing(Job),
}

impl CreateOutcome {
    pub fn job(&self) -> &Job {
        match self {
            CreateOutcome::Created(j) | CreateOutcome::Existing(j) => j,
        }
    }
}

/// How a create that found an active job for the same tenant, service, tables and start
/// ends: that job answers the request when the ends agree (or the caller let the end
/// default); a different end is a conflict the caller must settle.
pub(crate) fn existing_or_conflict(
    found: Job,
    new: &Job,
    end_is_default: bool,
) -> Result<CreateOutcome, StoreError> {
    if end_is_default || found.window.end == new.window.end {
        return Ok(CreateOutcome::Existing(found));
    }
    Err(StoreError::Conflict(format!(
        "active job {} already backfills {} {} from {} (until {}); cancel it or wait for it before asking for a different end",
        found.job_id,
        found.tenant_id,
        found.service,
        found.window.start.to_rfc3339(),
        found.window.end.to_rfc3339()
    )))
}

/// The answer to "give me the next chunk of this job".
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// The caller now holds this chunk's lease.
    Chunk(Box<Chunk>),
    /// Nothing claimable now; something may be at `until` (a backoff ends or a lease expires).
    Wait { until: Option<DateTime<Utc>> },
    /// Every chunk has reached a final status, or the job is paused or cancelled.
    Done(JobStatus),
}

/// One job in the cloud fleet's admission queue (`engine::fleet`): waiting for a slot, or
/// holding one since `admitted_at`. `launch` is what the dispatch port needs to start it
/// (the execution's lanes), opaque to the store and the engine.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FleetEntry {
    pub job_id: String,
    pub tenant_id: String,
    pub priority: i32,
    pub wait_off_peak: bool,
    pub queued_at: DateTime<Utc>,
    pub admitted_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub launch: String,
}

/// The admission queue as stored, with the version of its last write (0: never written).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetQueue {
    pub version: u64,
    pub entries: Vec<FleetEntry>,
}

#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub tenant_id: Option<String>,
    pub status: Option<JobStatus>,
    pub service: Option<Service>,
}

#[async_trait]
pub trait JobStore: Send + Sync {
    /// Inserts a job and its chunks, unless an active job covers the same tenant, service,
    /// tables and start; then that job is returned. `end_is_default` says the caller let the
    /// end default to "now", so a different end does not make it a different request.
    /// A taken id gets a `_r2`, `_r3`, ... suffix.
    async fn create_job(
        &self,
        job: Job,
        chunks: Vec<Chunk>,
        end_is_default: bool,
    ) -> Result<CreateOutcome, StoreError>;
    async fn get_job(&self, job_id: &str) -> Result<Option<Job>, StoreError>;
    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError>;
    async fn chunks(&self, job_id: &str) -> Result<Vec<Chunk>, StoreError>;

    /// Leases the next runnable chunk: tables in the job's order, and in a table the first
    /// runnable chunk in `seq` order, whatever the chunks before it are doing (windows are
    /// independent, so several of one table may be leased at once). A pending chunk is
    /// runnable once its backoff has passed, a running one once its lease has expired.
    /// `Wait` names the earliest instant one of them becomes runnable.
    async fn claim_next_chunk(
        &self,
        job_id: &str,
        owner: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError>;
    /// Saves progress and extends the lease; fails if the lease was lost.
    async fn checkpoint(
        &self,
        key: &ChunkKey,
        owner: &str,
        cp: &Checkpoint,
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Extends a held lease without touching progress (a heartbeat).
    async fn renew_lease(
        &self,
        key: &ChunkKey,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn complete_chunk(
        &self,
        key: &ChunkKey,
        owner: &str,
        cp: &Checkpoint,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError>;
    /// Records a failed attempt: pending again after `retry_at`, or failed for good when `None`.
    async fn fail_chunk(
        &self,
        key: &ChunkKey,
        owner: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError>;
    /// Fails the table of a chunk the caller holds, for a cause every window of the table
    /// shares (a permanent configuration error, see `engine::executor`): the held chunk and
    /// every pending chunk of its table fail for good with `error`, without an attempt.
    /// Chunks other runners hold are left to them. Returns the job with its counters moved.
    async fn fail_table(
        &self,
        key: &ChunkKey,
        owner: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError>;
    /// Gives a chunk back unfinished (time budget, shutdown): pending, progress kept, and the
    /// attempt not counted.
    async fn release_chunk(
        &self,
        key: &ChunkKey,
        owner: &str,
        cp: &Checkpoint,
    ) -> Result<(), StoreError>;
    /// Expires a lease at once (its holder is known dead), if `owner` still holds it.
    async fn break_lease(
        &self,
        key: &ChunkKey,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Makes failed chunks pending again with fresh attempts; returns how many.
    async fn retry_failed(&self, job_id: &str, now: DateTime<Utc>) -> Result<u32, StoreError>;
    /// Pause, unpause (to pending) or cancel a job.
    async fn set_job_status(
        &self,
        job_id: &str,
        status: JobStatus,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError>;
    /// The cloud fleet's admission queue (strongly consistent).
    async fn fleet(&self) -> Result<FleetQueue, StoreError>;
    /// Replaces the admission queue if its version is still `expected`; the stored version
    /// becomes `expected + 1`. False when another writer got there first (read again).
    async fn put_fleet(&self, entries: &[FleetEntry], expected: u64) -> Result<bool, StoreError>;
    /// Adds each row's counts to its stored bucket, creating it when missing: one write per
    /// row, never lost to another writer of the same bucket (`store::pulse`).
    async fn add_pulse(&self, rows: &[PulseRow]) -> Result<(), StoreError>;
    /// Every job's buckets that start at or after `since` (seconds since the epoch); callers
    /// keep `since` within the last `pulse::WINDOW_SECS`.
    async fn pulse_since(&self, since: i64) -> Result<Vec<PulseRow>, StoreError>;
    /// Removes the buckets that start before `before`; returns how many went.
    async fn prune_pulse(&self, before: i64) -> Result<u64, StoreError>;
}
