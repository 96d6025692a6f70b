//! Plain data shared by every layer: services, windows, jobs, chunks and their statuses.

mod lifecycle;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use lifecycle::{
    Alert, AlertKind, ChunkVerification, JobKind, JobMeta, ServiceState, SyncMarker, Trigger,
};

/// A source API the product knows how to backfill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Connectwise,
    Servicenow,
    Salesforce,
}

impl Service {
    pub const ALL: [Service; 3] = [
        Service::Connectwise,
        Service::Servicenow,
        Service::Salesforce,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Connectwise => "connectwise",
            Service::Servicenow => "servicenow",
            Service::Salesforce => "salesforce",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .find(|svc| svc.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown service '{s}' (expected one of connectwise, servicenow, salesforce)"
                )
            })
    }
}

/// An identifier `validate_identifier` refuses; `kind` says what it was meant to be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadIdentifier {
    #[error("{kind} must not be empty")]
    Empty { kind: String },
    #[error("{kind} '{value}' is longer than 64 characters")]
    TooLong { kind: String, value: String },
    #[error(
        "{kind} '{}' contains '{}': only letters, digits, '-' and '_' are allowed",
        value.escape_default(),
        bad.escape_default()
    )]
    BadCharacter {
        kind: String,
        value: String,
        bad: char,
    },
}

/// Checks an identifier that becomes part of object paths and job ids.
///
/// Tenant ids end up in `{tenant_id}/raw/...` keys, so anything that could escape the
/// tenant's prefix (`/`, `..`, control characters) is refused here, once, for every caller.
pub fn validate_identifier(kind: &str, value: &str) -> Result<(), BadIdentifier> {
    let (kind, value) = (kind.to_string(), value.to_string());
    if value.is_empty() {
        return Err(BadIdentifier::Empty { kind });
    }
    if value.len() > 64 {
        return Err(BadIdentifier::TooLong { kind, value });
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(BadIdentifier::BadCharacter { kind, value, bad });
    }
    Ok(())
}

/// A half-open UTC interval `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Window { start, end }
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}, {})",
            self.start.format("%Y-%m-%dT%H:%M:%SZ"),
            self.end.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }
}

macro_rules! string_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} '{}'", stringify!($name), other)),
                }
            }
        }
    };
}

string_enum!(JobStatus {
    Pending => "pending",
    Running => "running",
    Paused => "paused",
    Completed => "completed",
    CompletedWithErrors => "completed_with_errors",
    Failed => "failed",
    Cancelled => "cancelled",
});

impl JobStatus {
    /// Active jobs still own their range: triggering the same range again returns them.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobStatus::Pending | JobStatus::Running | JobStatus::Paused
        )
    }

    pub fn is_terminal(self) -> bool {
        !self.is_active()
    }
}

string_enum!(ChunkStatus {
    Pending => "pending",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Cancelled => "cancelled",
});

impl ChunkStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ChunkStatus::Succeeded | ChunkStatus::Failed | ChunkStatus::Cancelled
        )
    }
}

/// A backfill job: one tenant, one service, one or more tables over one frozen window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub job_id: String,
    pub tenant_id: String,
    pub service: Service,
    /// Table names in the order they are worked on.
    pub tables: Vec<String>,
    pub status: JobStatus,
    /// The whole range; `window.end` is frozen at creation: the hand-off point to incremental sync.
    pub window: Window,
    pub chunk_size_days: u32,
    pub max_attempts: u32,
    pub total_chunks: u32,
    pub completed_chunks: u32,
    pub failed_chunks: u32,
    pub records: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Declared columns left out of the job's queries because the integration user cannot
    /// read them (`table.column`); their canonical columns stay null.
    #[serde(default)]
    pub skipped_fields: Vec<String>,
}

/// What `status` and the console show instead of a job's stored status while it waits for
/// its API quota (`JobMeta::quota_wait_until`).
pub const WAITING_FOR_QUOTA: &str = "waiting_for_quota";

/// How the last error of every window of a table that failed once begins (`JobStore::fail_table`).
pub const TABLE_FAILED: &str = "table failed: ";

/// Tables whose windows failed together, with their cause and how many windows, in order.
pub fn failed_tables(chunks: &[Chunk]) -> Vec<(&str, &str, usize)> {
    let mut out: Vec<(&str, &str, usize)> = Vec::new();
    for c in chunks {
        let Some(cause) = c
            .last_error
            .as_deref()
            .and_then(|e| e.strip_prefix(TABLE_FAILED))
        else {
            continue;
        };
        if c.status != ChunkStatus::Failed {
            continue;
        }
        match out.iter_mut().find(|(t, _, _)| *t == c.key.table) {
            Some(entry) => entry.2 += 1,
            None => out.push((&c.key.table, cause, 1)),
        }
    }
    out
}

impl Job {
    /// Until when the job waits for its API quota, given its stored wait note: only while
    /// it is pending or running and the time is still ahead (a note left by a process that
    /// died says nothing once its time has passed).
    pub fn quota_wait(
        &self,
        note: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let active = matches!(self.status, JobStatus::Pending | JobStatus::Running);
        note.filter(|until| active && *until > now)
    }
}

/// Identifies one chunk: a table's window inside a job.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkKey {
    pub job_id: String,
    pub table: String,
    pub seq: u32,
}

impl fmt::Display for ChunkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}#{}", self.job_id, self.table, self.seq)
    }
}

/// Where a chunk stands inside its window: saved after each durable part so a resume
/// continues after the last page whose records are already stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Opaque, source-defined position after the last stored page (`None`: window start).
    pub cursor: Option<String>,
    /// Parquet parts written so far for this chunk.
    pub parts: u32,
    pub records: u64,
    pub pages: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub key: ChunkKey,
    pub window: Window,
    pub status: ChunkStatus,
    pub attempts: u32,
    pub checkpoint: Checkpoint,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// A retried chunk is not claimed before this moment (its backoff).
    pub not_before: Option<DateTime<Utc>>,
}

impl Chunk {
    pub fn new(key: ChunkKey, window: Window) -> Self {
        Chunk {
            key,
            window,
            status: ChunkStatus::Pending,
            attempts: 0,
            checkpoint: Checkpoint::default(),
            started_at: None,
            finished_at: None,
            last_error: None,
            lease_owner: None,
            lease_expires_at: None,
            not_before: None,
        }
    }
}

/// Where a page's records are in its body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordsAt {
    /// The body is the array of records (ConnectWise).
    #[default]
    Body,
    /// The array is the member with this name of a top-level object (`result`, `records`).
    Member(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_refuse_path_tricks() {
        assert!(validate_identifier("tenant id", "tenant-123_a").is_ok());
        for bad in ["", "a/b", "..", "a..b", "a b", "t\n", "ü"] {
            assert!(
                validate_identifier("tenant id", bad).is_err(),
                "{bad:?} accepted"
            );
        }
        let err = validate_identifier("tenant id", "../etc")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'.'"), "{err}");
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for s in ["pending", "running", "completed_with_errors", "cancelled"] {
            assert_eq!(s.parse::<JobStatus>().unwrap().as_str(), s);
        }
        assert!("done".parse::<ChunkStatus>().is_err());
        assert_eq!("servicenow".parse::<Service>(), Ok(Service::Servicenow));
        assert!("jira".parse::<Service>().unwrap_err().contains("jira"));
    }
}
