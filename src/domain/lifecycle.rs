//! Plain data of what happens around jobs: job kinds and scheduling hints, incremental sync
//! markers, service enablement history, alerts and verification results.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ChunkKey, Service, Window};

/// What a job does. Read from the job id, whose first word names it (`backfill_…`, `sync_…`),
/// so jobs made before kinds existed need no migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// History up to a frozen end, before incremental sync takes over.
    Backfill,
    /// An incremental window `[marker, now)` per table.
    Sync,
}

impl JobKind {
    pub fn of(job_id: &str) -> JobKind {
        if job_id.starts_with("sync_") {
            JobKind::Sync
        } else {
            JobKind::Backfill
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backfill => "backfill",
            JobKind::Sync => "sync",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asked for a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Manual,
    /// Auto-detection: waits for the off-peak window when the configuration says so.
    Auto,
}

/// Scheduling hints and lifecycle state of one job, kept beside the job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMeta {
    pub job_id: String,
    /// Higher runs first when slots are scarce.
    pub priority: i32,
    pub trigger: Trigger,
    /// The job starts only inside the off-peak window.
    pub wait_off_peak: bool,
    /// When the post-completion steps (marker, canonical transform) were done.
    pub finalized_at: Option<DateTime<Utc>>,
    /// The job's share of its API allocation is used up: it waits until then, and is shown
    /// as `waiting_for_quota` meanwhile (`engine::quota`).
    #[serde(default)]
    pub quota_wait_until: Option<DateTime<Utc>>,
}

impl JobMeta {
    /// Jobs created without hints (by older versions or other tools): manual, at once.
    pub fn default_for(job_id: &str) -> JobMeta {
        JobMeta {
            job_id: job_id.to_string(),
            priority: 0,
            trigger: Trigger::Manual,
            wait_off_peak: false,
            finalized_at: None,
            quota_wait_until: None,
        }
    }
}

/// How far incremental sync has read one table: every record updated before
/// `last_updated` has landed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMarker {
    pub tenant_id: String,
    pub service: Service,
    pub table: String,
    pub last_updated: DateTime<Utc>,
    /// The job that moved the marker here.
    pub set_by_job: String,
    /// The completed backfill whose end the chain of syncs starts from.
    pub backfill_job: Option<String>,
    pub backfill_end: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// What the registry said about a tenant's service, over time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceState {
    pub tenant_id: String,
    pub service: Service,
    pub enabled: bool,
    pub first_seen_at: DateTime<Utc>,
    /// The last time it was seen disabled.
    pub last_disabled_at: Option<DateTime<Utc>>,
    /// When it was seen enabled again after being disabled; cleared once a backfill of it
    /// completes.
    pub reenabled_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// More consecutive chunk failures than `alert_consecutive_chunk_failures`.
    ConsecutiveChunkFailures,
    /// Running longer than `alert_job_duration_hours`.
    LongRunningJob,
    /// Succeeded chunks below `alert_completion_rate_below` of the finished ones.
    LowCompletionRate,
    /// A sync marker and the backfill it continues disagree.
    SyncGap,
    /// A completed job's hand-off (markers, canonical transform) failed; the next `run` or
    /// `resume` of the job does it again.
    HandoffFailed,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::ConsecutiveChunkFailures => "consecutive_chunk_failures",
            AlertKind::LongRunningJob => "long_running_job",
            AlertKind::LowCompletionRate => "low_completion_rate",
            AlertKind::SyncGap => "sync_gap",
            AlertKind::HandoffFailed => "handoff_failed",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AlertKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            AlertKind::ConsecutiveChunkFailures,
            AlertKind::LongRunningJob,
            AlertKind::LowCompletionRate,
            AlertKind::SyncGap,
            AlertKind::HandoffFailed,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| format!("unknown alert kind '{s}'"))
    }
}

/// A threshold that was crossed. Raised once per (kind, subject).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    /// What the alert is about: a job id, or `tenant/service/table` for a sync gap.
    pub subject: String,
    pub tenant_id: String,
    pub service: Service,
    pub job_id: Option<String>,
    pub message: String,
    /// The measured value and the configured threshold it crossed.
    pub value: f64,
    pub threshold: f64,
    pub raised_at: DateTime<Utc>,
}

/// One chunk's landed records against the source's own count of its window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkVerification {
    pub key: ChunkKey,
    pub window: Window,
    pub source_count: u64,
    /// Distinct `(id, update time)` rows in the chunk's raw parts.
    pub landed: u64,
    pub verified_at: DateTime<Utc>,
}

impl ChunkVerification {
    /// Fewer landed than the source holds: records are missing.
    pub fn missing(&self) -> u64 {
        self.source_count.saturating_sub(self.landed)
    }

    /// More landed than the source now holds in the window: records updated since they
    /// were read, whose newer versions belong to later windows.
    pub fn moved_since(&self) -> u64 {
        self.landed.saturating_sub(self.source_count)
    }
}
