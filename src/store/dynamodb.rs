//! The DynamoDB job store: jobs, table frontiers and chunks as separate items, every
//! transition one conditional write (or one transaction), leases as conditions on the chunk.
//!
//! Two on-demand tables, `{prefix}_jobs` and `{prefix}_chunks` (default prefix
//! `avesa_backfill`), made by `ensure_tables` (idempotent; it waits until tables and indexes are
//! ACTIVE). Item layout in `codec`; the lifecycle items share the chunks table (`lifecycle`).
//! Indexes on the jobs table, both projecting whole items: `by_tenant_status` (`tenant_id` +
//! `status`) answers `list_jobs` with a tenant (status in the key condition, service as a
//! filter); `by_created` (`list_pk` + `created_at`) answers it without one, newest first. Nothing
//! is ever scanned. `by_created` is one partition on purpose: job items are written a handful of
//! times per job, far below a partition's write limit; range claims and frontiers lack the index
//! keys and stay out of both indexes.
//!
//! Chunks are their own items (a 3-year job of 1-day chunks over 5 tables is 5,475 of them,
//! far past the 400 KB item limit if they lived inside the job), written with BatchWriteItem,
//! 25 per request, retrying `UnprocessedItems` with jittered backoff (`io`).
//!
//! Every transition is conditional, and a refused condition maps to the error SQLite returns:
//! - lease-holder writes (checkpoint, renew, release, complete, fail, break) are conditional on
//!   `status = running AND lease_owner = :owner`; refused means `LeaseLost` (or `ChunkNotFound`
//!   when a read shows the chunk missing; `break_lease` answers `false`) (`lease`);
//! - completing a chunk or failing it for good is one transaction with `ADD` on its table's
//!   frontier counters, so the counters can neither miss nor double-count a chunk;
//! - every chunk write bumps `v`, and a claim is conditional on `v` being what the claimer read:
//!   of several claimers that read the same chunk, exactly one wins; the others look again
//!   (`claim`);
//! - job status changes are conditional on the statuses they may come from (`Conflict`).
//!
//! Progress counters: the exact counts live on the frontier items (moved in the same transaction
//! as each chunk's end); `get_job` and the job `complete_chunk`/`fail_chunk` return sum them, so
//! they are exact at every moment. The job item's own counters (what `list_jobs` returns from the
//! indexes) are rewritten when `progress_every_chunks` chunks have ended since the last write, and
//! when the job ends. That is 10, from `DynamoOptions::default()`, which the composition root
//! keeps: `monitoring.progress_update_frequency_chunks` in the configuration does not reach this
//! store (the alert checks read it). Lists trail by fewer than that many chunks and are exact for
//! finished jobs.
//!
//! Index reads are eventually consistent on AWS (DynamoDB Local applies them at once): a job can
//! show up in `list_jobs` a moment after it is created or changes status. Decisions never read an
//! index: idempotent creation goes through the range claim (`create`), claims through the job and
//! frontier items, all strongly consistent.

mod admin;
mod claim;
mod codec;
mod create;
mod fleet;
mod io;
mod lease;
mod lifecycle;
mod pulse;
mod rate;
mod requests;
mod schema;

pub use requests::{RequestCounter, RequestCounts};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use self::codec::{Frontier, StoredJob, decode_frontier, decode_job, job_key, s, t};
use self::io::{backend, is_condition_failed, names, query_all, values};
use super::{Claim, CreateOutcome, FleetEntry, FleetQueue, JobFilter, JobStore, StoreError};
use crate::domain::{Checkpoint, Chunk, ChunkKey, Job, JobStatus};

/// Where the store keeps its tables and how often it refreshes a job's counters.
#[derive(Clone, Debug)]
pub struct DynamoOptions {
    /// Tables are `{prefix}_jobs` and `{prefix}_chunks`.
    pub table_prefix: String,
    /// The job item's counters are rewritten after this many finished chunks (and when the
    /// job ends); `monitoring.progress_update_frequency_chunks` in the configuration.
    pub progress_every_chunks: u32,
}

impl Default for DynamoOptions {
    fn default() -> Self {
        DynamoOptions {
            table_prefix: "avesa_backfill".into(),
            progress_every_chunks: 10,
        }
    }
}

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    jobs: String,
    chunks: String,
    progress_every: u32,
    chunk_reads: Arc<AtomicU64>,
    /// Rate item writes sent (conditional ones refused included) by this handle (`rate`).
    rate_writes: Arc<AtomicU64>,
    /// Per pair, the end of the schedule as this handle last saw it (`rate`).
    rate_seen: Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
    /// Counts the client's requests when it was built with one (`requests`).
    requests: Option<RequestCounter>,
}

/// A job as read for a decision: the stored job with its counters made exact from the
/// table frontiers, plus what the decision needs besides.
#[derive(Clone, Debug)]
struct JobView {
    job: Job,
    /// The counters as last written to the job item (what `list_jobs` shows).
    reported: (u32, u32, u64),
    creating_until: Option<DateTime<Utc>>,
    /// In the job's table order.
    frontiers: Vec<Frontier>,
}

impl JobView {
    fn open(&self) -> u32 {
        self.frontiers.iter().map(Frontier::open).sum()
    }

    /// Chunks whose end the job item's counters do not show yet.
    fn unreported(&self) -> u32 {
        self.job.completed_chunks.abs_diff(self.reported.0)
            + self.job.failed_chunks.abs_diff(self.reported.1)
    }
}

impl DynamoStore {
    /// A store on the account and region of an already loaded AWS configuration (the
    /// caller builds it, e.g. from the default chain), counting its requests (`requests`).
    pub fn from_config(config: &aws_config::SdkConfig, options: DynamoOptions) -> Self {
        let counter = RequestCounter::default();
        Self::new(counter.client(config), options).counted_by(counter)
    }

    /// Says that `counter` counts this store's client's requests (it must be the one the
    /// client was built with: `RequestCounter::client`).
    pub fn counted_by(mut self, counter: RequestCounter) -> Self {
        self.requests = Some(counter);
        self
    }

    /// The requests sent so far by this store's client, when it counts them.
    pub fn requests(&self) -> Option<RequestCounts> {
        self.requests.as_ref().map(RequestCounter::snapshot)
    }

    pub fn new(client: Client, options: DynamoOptions) -> Self {
        DynamoStore {
            client,
            jobs: format!("{}_jobs", options.table_prefix),
            chunks: format!("{}_chunks", options.table_prefix),
            progress_every: options.progress_every_chunks.max(1),
            chunk_reads: Arc::new(AtomicU64::new(0)),
            rate_writes: Arc::new(AtomicU64::new(0)),
            rate_seen: Arc::default(),
            requests: None,
        }
    }

    /// The jobs table and the chunks table.
    pub fn table_names(&self) -> (&str, &str) {
        (&self.jobs, &self.chunks)
    }

    /// Chunk items this store has read so far: lets tests and benchmarks check that a claim
    /// reads a bounded number of chunks however large the job is.
    pub fn chunk_items_read(&self) -> u64 {
        self.chunk_reads.load(Ordering::Relaxed)
    }

    fn count_chunk_reads(&self, n: usize) {
        self.chunk_reads.fetch_add(n as u64, Ordering::Relaxed);
    }

    async fn get_stored_job(&self, job_id: &str) -> Result<Option<StoredJob>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.jobs)
            .set_key(Some(job_key(job_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem job", e))?;
        out.item.as_ref().map(decode_job).transpose()
    }

    async fn frontiers(&self, job_id: &str) -> Result<Vec<Frontier>, StoreError> {
        let key = "#job_id = :j AND begins_with(#sk, :p)";
        let q = self
            .client
            .query()
            .table_name(&self.chunks)
            .consistent_read(true)
            .key_condition_expression(key)
            .set_expression_attribute_names(names(&[key]))
            .set_expression_attribute_values(values([(":j", s(job_id)), (":p", s("table#"))]));
        query_all(q, "Query table frontiers")
            .await?
            .iter()
            .map(decode_frontier)
            .collect()
    }

    /// Reads the job and its frontiers (two requests in parallel, both strongly consistent).
    async fn view(&self, job_id: &str) -> Result<Option<JobView>, StoreError> {
        let (stored, mut frontiers) =
            tokio::try_join!(self.get_stored_job(job_id), self.frontiers(job_id))?;
        let Some(StoredJob {
            mut job,
            creating_until,
        }) = stored
        else {
            return Ok(None);
        };
        let reported = (job.completed_chunks, job.failed_chunks, job.records);
        let mut ordered = Vec::with_capacity(job.tables.len());
        for table in &job.tables {
            let at = frontiers
                .iter()
                .position(|f| &f.table == table)
                .ok_or_else(|| {
                    StoreError::Backend(format!(
                        "job {} has no frontier item for table '{table}'",
                        job.job_id
                    ))
                })?;
            ordered.push(frontiers.swap_remove(at));
        }
        job.completed_chunks = ordered.iter().map(|f| f.succeeded).sum();
        job.failed_chunks = ordered.iter().map(|f| f.failed).sum();
        job.records = ordered.iter().map(|f| f.records).sum();
        Ok(Some(JobView {
            job,
            reported,
            creating_until,
            frontiers: ordered,
        }))
    }

    async fn require_view(&self, job_id: &str) -> Result<JobView, StoreError> {
        self.view(job_id)
            .await?
            .ok_or_else(|| StoreError::JobNotFound(job_id.to_string()))
    }

    /// After a chunk changed: ends the job when nothing is open, else refreshes the job
    /// item's counters when enough chunks finished since they were last written.
    async fn settle_or_report(&self, job_id: &str, now: DateTime<Utc>) -> Result<Job, StoreError> {
        let view = self.require_view(job_id).await?;
        if view.open() == 0
            && matches!(view.job.status, JobStatus::Pending | JobStatus::Running)
            && view.creating_until.is_none()
        {
            return self.settle(view, now).await;
        }
        if view.job.status.is_active() && view.unreported() >= self.progress_every {
            self.write_counters(&view, None, now).await?;
        }
        Ok(view.job)
    }

    /// Sets the final status with exact counters, then gives up the job's range claim.
    async fn settle(&self, view: JobView, now: DateTime<Utc>) -> Result<Job, StoreError> {
        let status = if view.job.failed_chunks > 0 {
            JobStatus::CompletedWithErrors
        } else {
            JobStatus::Completed
        };
        if !self.write_counters(&view, Some(status), now).await? {
            // Someone else settled or paused it first: report what is there now.
            return Ok(self.require_view(&view.job.job_id).await?.job);
        }
        self.release_range(&view.job).await?;
        let mut job = view.job;
        job.status = status;
        job.finished_at = Some(now);
        job.updated_at = now;
        Ok(job)
    }

    /// Writes the exact counters to the job item, and a final status when given. Returns
    /// false when the job was no longer in a state that allows it.
    async fn write_counters(
        &self,
        view: &JobView,
        finish: Option<JobStatus>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let j = &view.job;
        let mut update =
            "SET #completed_chunks = :c, #failed_chunks = :f, #records = :r, #updated_at = :now"
                .to_string();
        let mut vals = vec![
            (":c", codec::n(j.completed_chunks)),
            (":f", codec::n(j.failed_chunks)),
            (":r", codec::n(j.records)),
            (":now", t(now)),
            (":pending", s("pending")),
            (":running", s("running")),
        ];
        let condition = match finish {
            Some(status) => {
                update.push_str(", #status = :final, #finished_at = :now");
                vals.push((":final", s(status.as_str())));
                "#status IN (:pending, :running) AND attribute_not_exists(#creating_until)"
            }
            None => {
                vals.push((":paused", s("paused")));
                "#status IN (:pending, :running, :paused)"
            }
        };
        match self
            .client
            .update_item()
            .table_name(&self.jobs)
            .set_key(Some(job_key(&j.job_id)))
            .update_expression(&update)
            .condition_expression(condition)
            .set_expression_attribute_names(names(&[&update, condition]))
            .set_expression_attribute_values(values(vals))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(backend("UpdateItem job counters", e)),
        }
    }
}

#[async_trait]
impl JobStore for DynamoStore {
    async fn create_job(
        &self,
        job: Job,
        chunks: Vec<Chunk>,
        end_is_default: bool,
    ) -> Result<CreateOutcome, StoreError> {
        self.create(job, chunks, end_is_default).await
    }

    async fn get_job(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        Ok(self.view(job_id).await?.map(|v| v.job))
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        self.list(filter).await
    }

    async fn chunks(&self, job_id: &str) -> Result<Vec<Chunk>, StoreError> {
        self.all_chunks(job_id).await
    }

    async fn claim_next_chunk(
        &self,
        job_id: &str,
        owner: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        self.claim(job_id, owner, lease_until, now).await
    }

    async fn checkpoint(
        &self,
        key: &ChunkKey,
        owner: &str,
        cp: &Checkpoint,
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.save_checkpoint(key, owner, cp, lease_until).await
    }

    async fn renew_lease(
        &self,
        key: &ChunkKey,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.renew(key, owner, lease_until).await
    }

    async fn complete_chunk(
        &self,
        key: &ChunkKey,
        owner: &str,
        cp: &Checkpoint,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        self.complete(key, owner, cp, now).await
    }

    async fn fail_chunk(
        &self,
        key: &ChunkKey,
        owner: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        self.fail(key, owner, error, retry_at, now).await
    }

    async fn fail_table(
        &self,
        key: &ChunkKey,
        owner: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        DynamoStore::fail_table(self, key, owner, error, now).await
    }

    async fn release_chunk(
        &self,
        key: &ChunkKey,
        owner: &str,
        cp: &Checkpoint,
    ) -> Result<(), StoreError> {
        self.release(key, owner, cp).await
    }

    async fn break_lease(
        &self,
        key: &ChunkKey,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.break_held_lease(key, owner, now).await
    }

    async fn retry_failed(&self, job_id: &str, now: DateTime<Utc>) -> Result<u32, StoreError> {
        self.reopen_failed(job_id, now).await
    }

    async fn set_job_status(
        &self,
        job_id: &str,
        status: JobStatus,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        self.change_status(job_id, status, now).await
    }

    async fn fleet(&self) -> Result<FleetQueue, StoreError> {
        self.read_fleet().await
    }

    async fn put_fleet(&self, entries: &[FleetEntry], expected: u64) -> Result<bool, StoreError> {
        self.write_fleet(entries, expected).await
    }

    async fn add_pulse(&self, rows: &[super::PulseRow]) -> Result<(), StoreError> {
        self.add_pulse_items(rows).await
    }

    async fn pulse_since(&self, since: i64) -> Result<Vec<super::PulseRow>, StoreError> {
        self.pulse_items_since(since).await
    }

    async fn prune_pulse(&self, before: i64) -> Result<u64, StoreError> {
        self.prune_pulse_items(before).await
    }
}
