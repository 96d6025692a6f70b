//! What the engine tells its watchers (the console, the CLI's progress lines).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{Alert, ChunkKey, ChunkStatus, JobStatus, Service, Window};

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EngineEvent {
    JobCreated {
        job_id: String,
    },
    ChunkStarted {
        key: ChunkKey,
        window: Window,
        attempt: u32,
        resumed_from_cursor: bool,
    },
    ChunkProgress {
        key: ChunkKey,
        records: u64,
        pages: u32,
        parts: u32,
        bytes: u64,
    },
    ChunkRetrying {
        key: ChunkKey,
        error: String,
        retry_at: DateTime<Utc>,
    },
    ChunkFinished {
        key: ChunkKey,
        status: ChunkStatus,
        records: u64,
        duration_ms: u64,
        error: Option<String>,
    },
    RateLimited {
        tenant_id: String,
        service: Service,
        retry_after_ms: u64,
    },
    /// A tenant's service circuit breaker changed state (`closed`, `open`, `half_open`).
    BreakerChanged {
        tenant_id: String,
        service: Service,
        state: BreakerState,
        consecutive_failures: u32,
        /// Why it opened: the last failure.
        reason: Option<String>,
    },
    /// What a server said about its quota (requests used of the limit per period).
    ServerUsage {
        tenant_id: String,
        service: Service,
        used: Option<u64>,
        limit: u64,
        period_secs: u64,
    },
    /// The job's share of its API allocation is used up (`engine::quota`): its chunks are
    /// released at their checkpoints and it goes on by itself after `until`.
    WaitingForQuota {
        job_id: String,
        until: DateTime<Utc>,
    },
    /// The time budget ran out; the job's state is saved and a continuation can pick it up.
    ContinuationNeeded {
        job_id: String,
    },
    JobFinished {
        job_id: String,
        status: JobStatus,
    },
    /// A table's incremental sync marker moved (a backfill or sync completed).
    MarkerAdvanced {
        tenant_id: String,
        service: Service,
        table: String,
        last_updated: DateTime<Utc>,
        job_id: String,
    },
    /// A canonical table's history was rebuilt from raw.
    TransformFinished {
        tenant_id: String,
        service: Service,
        table: String,
        versions: u64,
        records: u64,
        duration_ms: u64,
    },
    TransformFailed {
        tenant_id: String,
        error: String,
    },
    /// A monitoring threshold was crossed (stored once per kind and subject).
    Alert {
        alert: Alert,
    },
    /// A job waits for the off-peak window.
    JobDeferred {
        job_id: String,
        until: DateTime<Utc>,
    },
}

/// Circuit breaker states of one tenant's service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Too many consecutive failures: the pair's chunks wait for the cool-down.
    Open,
    /// The cool-down is over: one probe request decides.
    HalfOpen,
}
