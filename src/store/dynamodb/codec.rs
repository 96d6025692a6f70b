//! Item layout: how jobs, range claims, table frontiers and chunks become DynamoDB items.
//!
//! Jobs table (`job_id`):
//! - a job: `job_id` = the job's id, plus `list_pk` = `"jobs"` so the `by_created` index can
//!   list every job without a Scan;
//! - a range claim: `job_id` = `range#{tenant}#{service}#{start}#{tables}`, `owner` = the
//!   active job covering that range. It cannot collide with a job, whose id has no `#`.
//!
//! Chunks table (`job_id`, `sk`):
//! - a table frontier: `sk` = `table#{table}`: the lowest chunk that may still be open, the
//!   table's chunk count and its exact succeeded/failed/records counters;
//! - a chunk: `sk` = `chunk#{table}#{seq:06}`, so one table's chunks sort by `seq`.
//!
//! The lifecycle store's items share the chunks table (`lifecycle/items.rs`): in partitions
//! named `lifecycle#…`, and in a job's partition under `meta` and `verify…`, apart from the
//! `chunk#` and `table#` prefixes every query here selects by. A tenant's service's shared rate
//! row is an item in a partition of its own, `rate#{tenant}#{service}` (`rate.rs`), and so is
//! the cloud fleet's admission queue, `fleet#admission` (`fleet.rs`); the pulse counters share
//! one, `pulse#counters` (`pulse.rs`).

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use crate::domain::{Checkpoint, Chunk, ChunkKey, Job, Window};
use crate::store::StoreError;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) const JOB_ID: &str = "job_id";
pub(super) const SK: &str = "sk";
pub(super) const LIST_PK: &str = "list_pk";
pub(super) const LIST_PK_VALUE: &str = "jobs";
/// GSI of the jobs table: `tenant_id` + `status`.
pub(super) const BY_TENANT: &str = "by_tenant_status";
/// GSI of the jobs table: constant `list_pk` + `created_at`, newest first when queried backwards.
pub(super) const BY_CREATED: &str = "by_created";
/// The widest `seq` a chunk key can hold (six digits keep the sort order numeric).
pub(super) const MAX_SEQ: u32 = 999_999;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Fixed-width UTC text: string order is time order, so `created_at` sorts in an index.
pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub(super) fn t(v: DateTime<Utc>) -> AttributeValue {
    s(ts(v))
}

fn corrupt(what: &str, field: &str, why: impl Display) -> StoreError {
    StoreError::Backend(format!("stored {what} has a bad '{field}': {why}"))
}

/// Typed access to one item's attributes, naming the item kind and field in every error.
pub(super) struct Fields<'a> {
    item: &'a Item,
    what: &'static str,
}

impl<'a> Fields<'a> {
    pub(super) fn new(item: &'a Item, what: &'static str) -> Self {
        Fields { item, what }
    }

    pub(super) fn opt_s(&self, f: &str) -> Result<Option<&'a str>, StoreError> {
        match self.item.get(f) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(other) => Err(corrupt(self.what, f, format!("{other:?} is not text"))),
        }
    }

    pub(super) fn s(&self, f: &str) -> Result<&'a str, StoreError> {
        self.opt_s(f)?
            .ok_or_else(|| corrupt(self.what, f, "missing"))
    }

    pub(super) fn n<T: FromStr>(&self, f: &str) -> Result<T, StoreError>
    where
        T::Err: Display,
    {
        match self.item.get(f) {
            Some(AttributeValue::N(v)) => v.parse().map_err(|e| corrupt(self.what, f, e)),
            other => Err(corrupt(self.what, f, format!("{other:?} is not a number"))),
        }
    }

    pub(super) fn parsed<T: FromStr<Err = String>>(&self, f: &str) -> Result<T, StoreError> {
        self.s(f)?.parse().map_err(|e| corrupt(self.what, f, e))
    }

    pub(super) fn opt_ts(&self, f: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_s(f)?
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|e| corrupt(self.what, f, e))
            })
            .transpose()
    }

    pub(super) fn ts(&self, f: &str) -> Result<DateTime<Utc>, StoreError> {
        self.opt_ts(f)?
            .ok_or_else(|| corrupt(self.what, f, "missing"))
    }

    pub(super) fn strings(&self, f: &str) -> Result<Vec<String>, StoreError> {
        match self.item.get(f) {
            Some(AttributeValue::L(list)) => list
                .iter()
                .map(|v| match v {
                    AttributeValue::S(s) => Ok(s.clone()),
                    other => Err(corrupt(self.what, f, format!("{other:?} is not text"))),
                })
                .collect(),
            other => Err(corrupt(self.what, f, format!("{other:?} is not a list"))),
        }
    }
}

pub(super) fn job_key(job_id: &str) -> Item {
    HashMap::from([(JOB_ID.to_string(), s(job_id))])
}

/// The key of the claim an active job holds on its tenant, service, tables and start.
pub(super) fn range_id(job: &Job) -> String {
    format!(
        "range#{}#{}#{}#{}",
        job.tenant_id,
        job.service,
        ts(job.window.start),
        job.tables.join(",")
    )
}

pub(super) fn chunk_sk(table: &str, seq: u32) -> String {
    format!("chunk#{table}#{seq:06}")
}

pub(super) fn frontier_sk(table: &str) -> String {
    format!("table#{table}")
}

pub(super) fn chunks_key(job_id: &str, sk: String) -> Item {
    HashMap::from([(JOB_ID.to_string(), s(job_id)), (SK.to_string(), s(sk))])
}

pub(super) fn chunk_key(key: &ChunkKey) -> Item {
    chunks_key(&key.job_id, chunk_sk(&key.table, key.seq))
}

pub(super) fn frontier_key(job_id: &str, table: &str) -> Item {
    chunks_key(job_id, frontier_sk(table))
}

/// A job as stored, with the stored (possibly lagging) counters still in `job`.
#[derive(Clone, Debug)]
pub(super) struct StoredJob {
    pub job: Job,
    /// Set while the creator is still writing chunks: a lease on finishing the creation.
    pub creating_until: Option<DateTime<Utc>>,
}

pub(super) fn job_item(job: &Job, creating_until: Option<DateTime<Utc>>) -> Item {
    let mut item = HashMap::from([
        (JOB_ID.to_string(), s(&job.job_id)),
        (LIST_PK.to_string(), s(LIST_PK_VALUE)),
        ("tenant_id".to_string(), s(&job.tenant_id)),
        ("service".to_string(), s(job.service.as_str())),
        (
            "tables".to_string(),
            AttributeValue::L(job.tables.iter().map(s).collect()),
        ),
        ("status".to_string(), s(job.status.as_str())),
        ("window_start".to_string(), t(job.window.start)),
        ("window_end".to_string(), t(job.window.end)),
        ("chunk_size_days".to_string(), n(job.chunk_size_days)),
        ("max_attempts".to_string(), n(job.max_attempts)),
        ("total_chunks".to_string(), n(job.total_chunks)),
        ("completed_chunks".to_string(), n(job.completed_chunks)),
        ("failed_chunks".to_string(), n(job.failed_chunks)),
        ("records".to_string(), n(job.records)),
        ("created_at".to_string(), t(job.created_at)),
        ("updated_at".to_string(), t(job.updated_at)),
    ]);
    if let Some(at) = job.finished_at {
        item.insert("finished_at".into(), t(at));
    }
    if !job.skipped_fields.is_empty() {
        let list = job.skipped_fields.iter().map(s).collect();
        item.insert("skipped_fields".into(), AttributeValue::L(list));
    }
    if let Some(at) = creating_until {
        item.insert("creating_until".into(), t(at));
    }
    item
}

pub(super) fn decode_job(item: &Item) -> Result<StoredJob, StoreError> {
    let f = Fields::new(item, "job");
    Ok(StoredJob {
        job: Job {
            job_id: f.s(JOB_ID)?.to_string(),
            tenant_id: f.s("tenant_id")?.to_string(),
            service: f.parsed("service")?,
            tables: f.strings("tables")?,
            status: f.parsed("status")?,
            window: Window::new(f.ts("window_start")?, f.ts("window_end")?),
            chunk_size_days: f.n("chunk_size_days")?,
            max_attempts: f.n("max_attempts")?,
            total_chunks: f.n("total_chunks")?,
            completed_chunks: f.n("completed_chunks")?,
            failed_chunks: f.n("failed_chunks")?,
            records: f.n("records")?,
            created_at: f.ts("created_at")?,
            updated_at: f.ts("updated_at")?,
            finished_at: f.opt_ts("finished_at")?,
            skipped_fields: match item.get("skipped_fields") {
                None => Vec::new(),
                Some(_) => f.strings("skipped_fields")?,
            },
        },
        creating_until: f.opt_ts("creating_until")?,
    })
}

/// A chunk as stored, with its write counter: a claim is conditional on `v` being unchanged
/// since the claimer read the chunk, so two claimers that read the same state cannot both win.
#[derive(Clone, Debug)]
pub(super) struct StoredChunk {
    pub chunk: Chunk,
    pub v: u64,
}

/// A new chunk item: pending, no progress, written once at job creation.
pub(super) fn new_chunk_item(job_id: &str, c: &Chunk) -> Item {
    let mut item = chunks_key(job_id, chunk_sk(&c.key.table, c.key.seq));
    item.extend([
        ("table".to_string(), s(&c.key.table)),
        ("seq".to_string(), n(c.key.seq)),
        ("window_start".to_string(), t(c.window.start)),
        ("window_end".to_string(), t(c.window.end)),
        ("status".to_string(), s("pending")),
        ("attempts".to_string(), n(0)),
        ("parts".to_string(), n(0)),
        ("records".to_string(), n(0)),
        ("pages".to_string(), n(0)),
        ("v".to_string(), n(0)),
    ]);
    item
}

pub(super) fn decode_chunk(item: &Item) -> Result<StoredChunk, StoreError> {
    let f = Fields::new(item, "chunk");
    Ok(StoredChunk {
        chunk: Chunk {
            key: ChunkKey {
                job_id: f.s(JOB_ID)?.to_string(),
                table: f.s("table")?.to_string(),
                seq: f.n("seq")?,
            },
            window: Window::new(f.ts("window_start")?, f.ts("window_end")?),
            status: f.parsed("status")?,
            attempts: f.n("attempts")?,
            checkpoint: Checkpoint {
                cursor: f.opt_s("cursor")?.map(str::to_string),
                parts: f.n("parts")?,
                records: f.n("records")?,
                pages: f.n("pages")?,
            },
            started_at: f.opt_ts("started_at")?,
            finished_at: f.opt_ts("finished_at")?,
            last_error: f.opt_s("last_error")?.map(str::to_string),
            lease_owner: f.opt_s("lease_owner")?.map(str::to_string),
            lease_expires_at: f.opt_ts("lease_expires_at")?,
            not_before: f.opt_ts("not_before")?,
        },
        v: f.n("v")?,
    })
}

/// One table of a job: where its open chunks start and exact counters of its finished ones.
///
/// Invariant: every chunk of the table with `seq < next` is finished (succeeded, failed or
/// cancelled). Claims move `next` forward past finished chunks; `retry_failed` moves it back
/// to the lowest chunk it reopens. The counters change in the same transaction as the chunk
/// whose status they count, so they are exact at every moment.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Frontier {
    pub table: String,
    pub next: u32,
    pub count: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub records: u64,
    /// Bumped whenever `next` moves, so a stale mover cannot undo a concurrent move.
    pub v: u64,
}

impl Frontier {
    /// Chunks neither succeeded nor failed (cancelled ones only exist in cancelled jobs).
    pub(super) fn open(&self) -> u32 {
        self.count.saturating_sub(self.succeeded + self.failed)
    }
}

pub(super) fn frontier_item(job_id: &str, f: &Frontier) -> Item {
    let mut item = frontier_key(job_id, &f.table);
    item.extend([
        ("table".to_string(), s(&f.table)),
        ("next".to_string(), n(f.next)),
        ("count".to_string(), n(f.count)),
        ("succeeded".to_string(), n(f.succeeded)),
        ("failed".to_string(), n(f.failed)),
        ("records".to_string(), n(f.records)),
        ("v".to_string(), n(f.v)),
    ]);
    item
}

pub(super) fn decode_frontier(item: &Item) -> Result<Frontier, StoreError> {
    let f = Fields::new(item, "table frontier");
    Ok(Frontier {
        table: f.s("table")?.to_string(),
        next: f.n("next")?,
        count: f.n("count")?,
        succeeded: f.n("succeeded")?,
        failed: f.n("failed")?,
        records: f.n("records")?,
        v: f.n("v")?,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::{ChunkStatus, JobStatus, Service};

    #[test]
    fn chunk_keys_sort_by_table_then_number() {
        let mut keys = vec![
            chunk_sk("tickets", 10),
            chunk_sk("tickets", 9),
            chunk_sk("companies", 100),
        ];
        keys.sort();
        assert_eq!(
            keys,
            [
                "chunk#companies#000100",
                "chunk#tickets#000009",
                "chunk#tickets#000010"
            ]
        );
        // Frontier items never fall inside a table's chunk range.
        assert!(frontier_sk("tickets") > chunk_sk("tickets", MAX_SEQ));
    }

    #[test]
    fn items_round_trip() {
        let at = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
        let job = Job {
            job_id: "backfill_acme_connectwise_20250101".into(),
            tenant_id: "acme".into(),
            service: Service::Connectwise,
            tables: vec!["tickets".into(), "companies".into()],
            status: JobStatus::Running,
            window: Window::new(at, at + chrono::Duration::days(30)),
            chunk_size_days: 10,
            max_attempts: 3,
            total_chunks: 6,
            completed_chunks: 2,
            failed_chunks: 1,
            records: 12_345_678_901,
            created_at: at,
            updated_at: at,
            finished_at: None,
            skipped_fields: vec!["tickets.summary".into()],
        };
        let stored = decode_job(&job_item(&job, Some(at))).unwrap();
        assert_eq!((stored.job, stored.creating_until), (job.clone(), Some(at)));
        // A job that skips nothing (or was stored before jobs listed them) has no attribute.
        let plain = Job {
            skipped_fields: Vec::new(),
            ..job.clone()
        };
        let item = job_item(&plain, None);
        assert!(!item.contains_key("skipped_fields"));
        assert_eq!(decode_job(&item).unwrap().job, plain);

        let mut chunk = Chunk::new(
            ChunkKey {
                job_id: job.job_id.clone(),
                table: "tickets".into(),
                seq: 7,
            },
            job.window,
        );
        let decoded = decode_chunk(&new_chunk_item(&job.job_id, &chunk)).unwrap();
        assert_eq!((decoded.chunk.clone(), decoded.v), (chunk.clone(), 0));
        chunk.status = ChunkStatus::Running;
        assert_ne!(decoded.chunk, chunk);

        let f = Frontier {
            table: "tickets".into(),
            next: 3,
            count: 1095,
            succeeded: 2,
            failed: 1,
            records: 99,
            v: 4,
        };
        assert_eq!(decode_frontier(&frontier_item("j", &f)).unwrap(), f);
        assert_eq!(f.open(), 1092);
    }

    #[test]
    fn bad_items_name_the_field() {
        let mut item = job_item(
            &Job {
                job_id: "j".into(),
                tenant_id: "t".into(),
                service: Service::Servicenow,
                tables: vec![],
                status: JobStatus::Pending,
                window: Window::new(Utc::now(), Utc::now()),
                chunk_size_days: 1,
                max_attempts: 1,
                total_chunks: 0,
                completed_chunks: 0,
                failed_chunks: 0,
                records: 0,
                created_at: Utc::now(),
                updated_at: Utc::now(),
                finished_at: None,
                skipped_fields: Vec::new(),
            },
            None,
        );
        item.insert("status".into(), s("done"));
        let err = decode_job(&item).unwrap_err().to_string();
        assert!(err.contains("'status'") && err.contains("done"), "{err}");
    }
}
