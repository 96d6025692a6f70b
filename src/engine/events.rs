//! What the engine tells its watchers (the console, the CLI's progress lines).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{ChunkKey, ChunkStatus, JobStatus, Service, Window};

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
    /// The time budget ran out; the job's state is saved and a continuation can pick it up.
    ContinuationNeeded {
        job_id: String,
    },
    JobFinished {
        job_id: String,
        status: JobStatus,
    },
}
