//! The executor: claims chunks, streams their pages into Parquet parts, checkpoints after
//! every durable part, retries with backoff, and stops cleanly when its time budget ends.
//!
//! The data path of one chunk:
//! 0. `run_job` starts up to `max_in_flight` runners (not more than the job's open chunks); each
//!    takes a permit of the pair's in-flight controller (`inflight`) before it claims, and gives
//!    it back when the chunk's run ends.
//! 1. `claim_next_chunk` (one atomic write) picks, per table in priority order, the
//!    lowest-numbered unfinished chunk that is pending and past its backoff, or running with an
//!    expired lease, whatever the chunks before it are doing (windows of a table run in
//!    parallel); it sets the lease and counts the attempt (a taken-over expired lease
//!    continues the same attempt from its checkpoint).
//! 2. Parts beyond the checkpoint's part count are deleted (they were written after the last
//!    checkpoint and their pages will be read again), and so are the local store's staging files
//!    (`…parquet#n`) that a process killed mid-put leaves behind.
//! 3. Pages are fetched one ahead: while page n is flattened and encoded, page n+1 is in flight
//!    (the keyset cursor is known from page n; the runner yields once after spawning the fetch so
//!    it leaves the worker's LIFO slot and really overlaps). Sources hand over the raw body; the
//!    sink parses it into a tree that borrows its strings from the body (`sink::lite`).
//! 4. When a part is due (`EngineOptions`: rows, bytes (each window's share of `part_max_rows`
//!    and `part_max_bytes` when `max_in_flight` windows buffer at once), time since the last
//!    checkpoint, every page
//!    when requests are paced slower than `checkpoint_every_page_below`, or the end of the window)
//!    the lease is renewed when less than half of it is left (`lease`), the part is put
//!    atomically under its deterministic name, and then the checkpoint (cursor, parts, records,
//!    pages) is saved under the lease. A crash between the two leaves a part that step 2 removes.
//! 5. At the window's end the chunk is completed and the job's counters move in the same write;
//!    the job settles to `completed` or `completed_with_errors` when no chunk is open. A failed
//!    attempt is stored with its backoff (`retry_backoff_seconds`, doubling, ±25 % jitter) while
//!    attempts remain and the failure is retryable; otherwise the chunk fails for good.
//!
//! The time budget (the run's `Deadline`) bounds every wait of a chunk, not only the gaps
//! between pages: when it comes while a page is awaited (a rate-limit pause, a retry backoff,
//! an open breaker, a slow answer) the fetch is dropped, the pages already read are saved and
//! the chunk is released at its checkpoint, without using up an attempt. A server's
//! `Retry-After` is obeyed up to `max_retry_after_seconds`.
//!
//! A heartbeat task renews the lease every quarter of its length unless a checkpoint extended it
//! meanwhile (`lease`), so a one-page chunk's only chunk writes are its claim and its completion;
//! a runner that loses its lease stops before writing. A lease whose holder is a dead process on this host (`host:pid:nonce`,
//! checked in `/proc`) is broken at once (`break_dead_leases`), so `resume` after a crash does not
//! wait for expiry.
//!
//! Every request goes through the request policy (`policy::fetch_with_policy`): breaker, rate
//! budget, classification and retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;
use rand::Rng;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::step::wait_before_retry;
use super::{Deadline, Engine, EngineError, EngineEvent, Handoff, Step};
use crate::domain::{Checkpoint, Chunk, ChunkKey, ChunkStatus, Job, JobStatus};
use crate::engine::pulse::PulseJob;
use crate::process::local_host;
use crate::sink::{ChunkMeta, PartWriter};
use crate::sources::{Page, SourceError};
use crate::store::{PulseCounts, StoreError};

mod lease;
mod pages;
use lease::{HeldLease, Renewal};
pub(crate) mod probe;
use pages::{Fetcher, Progress, stop_reading};
use probe::Ticket;

/// Why a run of a job returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Every chunk reached a final status (or the job was paused or cancelled).
    Finished,
    /// The time budget ran out first; the state is saved for a continuation.
    ContinuationNeeded,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunOutcome {
    pub job_id: String,
    pub status: JobStatus,
    pub stop: StopReason,
    /// What the job's hand-off came to, once it completed.
    pub handoff: Handoff,
}

/// How a chunk's run ended, short of an error.
enum ChunkEnd {
    Exhausted(Checkpoint),
    OutOfTime(Checkpoint),
    /// The job's share of its API allocation is used up until then (`engine::quota`).
    QuotaWait(Checkpoint, chrono::DateTime<Utc>),
}

/// A failed attempt: the message to store and whether another attempt can help.
struct Failure {
    message: String,
    retryable: bool,
    lease_lost: bool,
    /// The data's device is full: the run stops and the chunk is released, no attempt used.
    disk_full: bool,
    /// Every window of the table would fail the same way (`SourceError::is_table_wide`):
    /// the table fails once (`JobStore::fail_table`) instead of each window in turn.
    table_wide: bool,
    /// Why another attempt would not help (`HTTP 400 is permanent`), for the stored error.
    permanent_why: Option<String>,
}

impl Failure {
    /// A failure that another attempt would only repeat.
    fn permanent(message: String) -> Self {
        Failure {
            message,
            retryable: false,
            lease_lost: false,
            disk_full: false,
            table_wide: false,
            permanent_why: None,
        }
    }

    /// A failure every window of the table shares.
    fn table_wide(message: String) -> Self {
        Failure {
            table_wide: true,
            ..Failure::permanent(message)
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure {
            lease_lost: matches!(e, StoreError::LeaseLost { .. }),
            retryable: true,
            message: e.to_string(),
            disk_full: false,
            table_wide: false,
            permanent_why: None,
        }
    }
}

impl From<crate::sink::SinkError> for Failure {
    fn from(e: crate::sink::SinkError) -> Self {
        // A record that breaks its schema will break it again; a cut or garbled body
        // (a proxy's error page, a reset mid-transfer) is worth another attempt.
        let retryable = !matches!(e, crate::sink::SinkError::InvalidRecord { .. });
        Failure {
            disk_full: matches!(e, crate::sink::SinkError::DiskFull(_)),
            message: e.to_string(),
            retryable,
            lease_lost: false,
            table_wide: false,
            permanent_why: (!retryable)
                .then(|| "a record that breaks its schema breaks it again".to_string()),
        }
    }
}

/// `host:pid:nonce`: enough to tell, on this host, whether a lease holder still lives.
pub fn local_owner_id() -> String {
    let nonce: u32 = rand::rng().random();
    format!("{}:{}:{nonce:08x}", local_host(), std::process::id())
}

/// True when `owner` names a process of this host that no longer exists.
pub(super) fn is_dead_local_owner(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, ':');
    let (_nonce, pid, host) = (parts.next(), parts.next(), parts.next());
    let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    host == Some(local_host().as_str()) && crate::process::is_gone(pid)
}

impl Engine {
    /// Works on `job_id` until no chunk is left or `deadline` comes.
    pub async fn run_job(
        &self,
        job_id: &str,
        deadline: Option<Instant>,
    ) -> Result<RunOutcome, EngineError> {
        let job = self.load_job(job_id).await?;
        let stop = self.run_runners(&job, deadline).await;
        self.flush_pulse().await;
        let stop = stop?;
        let mut handoff = Handoff::NotDue;
        let job = self.load_job(job_id).await?;
        match stop {
            StopReason::ContinuationNeeded => {
                tracing::info!(
                    job_id,
                    "time budget reached; state saved, continuation needed"
                );
                self.emit(EngineEvent::ContinuationNeeded {
                    job_id: job_id.to_string(),
                });
            }
            StopReason::Finished => {
                tracing::info!(job_id, status = %job.status, records = job.records,
                    completed = job.completed_chunks, failed = job.failed_chunks, "job finished");
                self.emit(EngineEvent::JobFinished {
                    job_id: job_id.to_string(),
                    status: job.status,
                });
                // The data landed either way; a failed hand-off is reported, and the next run
                // or resume of the job does it again.
                handoff = self.after_job(&job).await.unwrap_or_else(|e| {
                    tracing::error!(job_id, error = %e, "hand-off failed; the next run or resume of the job does it again");
                    Handoff::Failed { error: e.to_string() }
                });
                if let Err(e) = self.report_job_ended(job_id, Utc::now()).await {
                    tracing::warn!(job_id, error = %e, "alert evaluation failed");
                }
            }
        }
        Ok(RunOutcome {
            job_id: job_id.to_string(),
            status: job.status,
            stop,
            handoff,
        })
    }

    /// Runs the job's runners until they stop. A runner's error (a full disk, a store that
    /// fails) raises a flag that stops the others at their checkpoints; the first error is
    /// the run's.
    async fn run_runners(
        &self,
        job: &Job,
        deadline: Option<Instant>,
    ) -> Result<StopReason, EngineError> {
        let runners = self.runners_for(job).await?;
        let halt = Arc::new(AtomicBool::new(false));
        let deadline = Deadline::at(deadline).with_flag(halt.clone());
        // With strict table order, this process's runners of the job look and claim one at a
        // time, so two of them never both see the last chunk of a dependency as free.
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let mut handles = Vec::new();
        for _ in 0..runners {
            let (engine, job, deadline, gate, halt) = (
                self.clone(),
                job.clone(),
                deadline.clone(),
                gate.clone(),
                halt.clone(),
            );
            handles.push(tokio::spawn(async move {
                let ran = engine.runner(job, &deadline, gate).await;
                if ran.is_err() {
                    halt.store(true, Ordering::SeqCst);
                }
                ran
            }));
        }
        let mut stop = StopReason::Finished;
        let mut first_error = None;
        for h in handles {
            match h.await.map_err(|e| EngineError::Other(e.to_string()))? {
                Ok(StopReason::ContinuationNeeded) => stop = StopReason::ContinuationNeeded,
                Ok(StopReason::Finished) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(stop), Err)
    }

    /// Runners for a job: as many as its service may have windows in flight (`max_in_flight`
    /// or `--concurrency`), not more than its open chunks. The pair's in-flight controller
    /// decides how many of them work at once.
    async fn runners_for(&self, job: &Job) -> Result<usize, EngineError> {
        let open = self
            .store()
            .chunks(&job.job_id)
            .await?
            .iter()
            .filter(|c| !c.status.is_terminal())
            .count();
        Ok((self.max_in_flight(job.service) as usize).min(open).max(1))
    }

    /// One claim loop: several may share a job; the store keeps them off each other's chunks.
    /// Each claim waits for a permit of the pair's in-flight controller, held until the
    /// chunk's run ends.
    async fn runner(
        &self,
        job: Job,
        deadline: &Deadline,
        gate: Arc<tokio::sync::Mutex<()>>,
    ) -> Result<StopReason, EngineError> {
        let inflight = self.inflight(&job.tenant_id, job.service);
        loop {
            if deadline.reached() {
                return Ok(StopReason::ContinuationNeeded);
            }
            let permit = tokio::select! {
                permit = inflight.acquire() => permit,
                () = deadline.wait() => return Ok(StopReason::ContinuationNeeded),
            };
            let step = self.step(&job, deadline, Some(&gate)).await;
            drop(permit);
            match step? {
                Step::Ran {
                    stop: StopReason::ContinuationNeeded,
                    ..
                } => return Ok(StopReason::ContinuationNeeded),
                Step::Ran { .. } => {}
                Step::Wait { until } => {
                    let wait = wait_before_retry(until, self.options().poll_interval);
                    tokio::time::sleep_until(deadline.cap(Instant::now() + wait)).await;
                }
                Step::Done(_) => return Ok(StopReason::Finished),
            }
        }
    }

    /// Leases held by processes of this host that have died are broken at once, so a
    /// `resume` after a crash does not wait out the lease. Returns whether any was broken.
    /// A lease already expired is left alone: it is claimable as it is, and breaking it
    /// again would answer "look again now" to a claimer that cannot take the chunk yet (its
    /// table waits for others), which would spin, breaking and logging in a tight loop.
    pub(super) async fn break_dead_leases(&self, job_id: &str) -> Result<bool, EngineError> {
        let mut broken = false;
        let now = Utc::now();
        for chunk in self.store().chunks(job_id).await? {
            let expired = chunk.lease_expires_at.is_none_or(|t| t <= now);
            if chunk.status != ChunkStatus::Running || expired {
                continue;
            }
            if let Some(owner) = chunk
                .lease_owner
                .as_deref()
                .filter(|o| is_dead_local_owner(o))
                && self.store().break_lease(&chunk.key, owner, now).await?
            {
                tracing::warn!(chunk = %chunk.key, owner, "lease holder is gone; chunk will resume from its checkpoint");
                broken = true;
            }
        }
        Ok(broken)
    }

    pub(super) async fn run_chunk(
        &self,
        job: &Job,
        chunk: Chunk,
        deadline: &Deadline,
    ) -> Result<StopReason, EngineError> {
        let key = &chunk.key;
        let started = Instant::now();
        tracing::info!(job_id = %key.job_id, table = %key.table, seq = key.seq, window = %chunk.window,
            attempt = chunk.attempts, cursor = ?chunk.checkpoint.cursor, "chunk started");
        self.emit(EngineEvent::ChunkStarted {
            key: key.clone(),
            window: chunk.window,
            attempt: chunk.attempts,
            resumed_from_cursor: chunk.checkpoint.cursor.is_some(),
        });

        let held = Arc::new(HeldLease::new(
            chunk.lease_expires_at.unwrap_or_else(Utc::now),
        ));
        let heartbeat = self.spawn_heartbeat(key.clone(), held.clone());
        let result = self
            .execute_chunk(job, &chunk, deadline, (&held, started))
            .await;
        heartbeat.abort();

        let elapsed = started.elapsed().as_millis() as u64;
        match result {
            Ok(ChunkEnd::Exhausted(cp)) => {
                self.complete_chunk(key, &cp, elapsed).await?;
                Ok(StopReason::Finished)
            }
            Ok(ChunkEnd::OutOfTime(cp)) => {
                self.release_at_checkpoint(key, &cp).await?;
                tracing::info!(chunk = %key, cursor = ?cp.cursor, records = cp.records, "chunk paused at the time budget");
                Ok(StopReason::ContinuationNeeded)
            }
            Ok(ChunkEnd::QuotaWait(cp, until)) => {
                // Released without using an attempt; `step` holds the job until then.
                self.release_at_checkpoint(key, &cp).await?;
                self.note_quota_wait(job, Some(until)).await;
                Ok(StopReason::Finished)
            }
            Err(f) if f.lease_lost => {
                tracing::warn!(chunk = %key, "{}", f.message);
                Ok(StopReason::Finished)
            }
            Err(f) if f.disk_full => {
                // No fault of the chunk: released where its last checkpoint left it, and the
                // run stops (`run_job` stops its other runners at their checkpoints).
                let cp = self
                    .store()
                    .chunks(&key.job_id)
                    .await?
                    .into_iter()
                    .find(|c| c.key == *key)
                    .map_or(chunk.checkpoint.clone(), |c| c.checkpoint);
                self.release_at_checkpoint(key, &cp).await?;
                tracing::error!(chunk = %key, "{}; the chunk is released at its checkpoint", f.message);
                Err(EngineError::DiskFull(f.message))
            }
            Err(f) => {
                self.record_failed_attempt(job, &chunk, f, elapsed).await?;
                Ok(StopReason::Finished)
            }
        }
    }

    /// Gives the chunk back at its checkpoint, pending, without using up an attempt.
    async fn release_at_checkpoint(
        &self,
        key: &ChunkKey,
        cp: &Checkpoint,
    ) -> Result<(), EngineError> {
        match self
            .store()
            .release_chunk(key, &self.options().owner, cp)
            .await
        {
            Ok(()) | Err(StoreError::LeaseLost { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Marks the chunk succeeded with its last checkpoint and reports it.
    async fn complete_chunk(
        &self,
        key: &ChunkKey,
        cp: &Checkpoint,
        elapsed: u64,
    ) -> Result<(), EngineError> {
        let owner = &self.options().owner;
        match self
            .store()
            .complete_chunk(key, owner, cp, Utc::now())
            .await
        {
            Ok(updated) => self.on_chunk_succeeded(&updated).await?,
            Err(StoreError::LeaseLost { .. }) => {
                tracing::warn!(chunk = %key, "lease lost before completion; another runner owns the chunk");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(job_id = %key.job_id, table = %key.table, seq = key.seq, records = cp.records,
            pages = cp.pages, parts = cp.parts, duration_ms = elapsed, "chunk succeeded");
        self.emit(EngineEvent::ChunkFinished {
            key: key.clone(),
            status: ChunkStatus::Succeeded,
            records: cp.records,
            duration_ms: elapsed,
            error: None,
        });
        Ok(())
    }

    /// Stores a failed attempt: with a backoff when another attempt can help and is
    /// allowed, as the chunk's failure otherwise.
    async fn record_failed_attempt(
        &self,
        job: &Job,
        chunk: &Chunk,
        f: Failure,
        elapsed: u64,
    ) -> Result<(), EngineError> {
        let key = chunk.key.clone();
        let now = Utc::now();
        // The one retry decision: what is stored, logged and shown all come from it.
        let attempt = super::retry::Attempt {
            retryable: f.retryable,
            table_wide: f.table_wide,
            attempts: chunk.attempts,
            max_attempts: job.max_attempts,
            permanent_why: f.permanent_why.as_deref(),
        };
        let retry_at = super::retry::decide(attempt)
            .is_none()
            .then(|| now + self.chunk_backoff(chunk.attempts));
        let owner = &self.options().owner;
        let table_wide = f.table_wide;
        let stored = if table_wide {
            let message = format!("{}{}", crate::domain::TABLE_FAILED, f.message);
            let stored = self.store().fail_table(&key, owner, &message, now).await;
            self.probes().settle(&key.job_id, &key.table);
            (message, stored)
        } else {
            let message = super::retry::attempt_message(attempt, &f.message);
            let stored = self
                .store()
                .fail_chunk(&key, owner, &message, retry_at, now)
                .await;
            (message, stored)
        };
        let (message, stored) = stored;
        match stored {
            Ok(updated) => self.on_chunk_failed(&updated).await?,
            Err(StoreError::LeaseLost { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        match retry_at {
            Some(at) => {
                tracing::warn!(job_id = %key.job_id, table = %key.table, seq = key.seq, error = %message,
                    retry_at = %at.to_rfc3339(), "chunk attempt failed; will retry");
                self.emit(EngineEvent::ChunkRetrying {
                    key,
                    error: message,
                    retry_at: at,
                });
            }
            None => {
                let what = match table_wide {
                    true => "table failed; its other windows are not asked",
                    false => "chunk failed",
                };
                tracing::error!(job_id = %key.job_id, table = %key.table, seq = key.seq, error = %message,
                    "{what}");
                self.emit(EngineEvent::ChunkFinished {
                    key,
                    status: ChunkStatus::Failed,
                    records: 0,
                    duration_ms: elapsed,
                    error: Some(message),
                });
            }
        }
        Ok(())
    }

    /// Exponential backoff between chunk attempts, with ±25 % jitter.
    fn chunk_backoff(&self, attempts: u32) -> chrono::Duration {
        let base = self
            .config()
            .backfill
            .default_settings
            .retry_backoff_seconds;
        let secs = base * 2f64.powi(attempts.saturating_sub(1).min(16) as i32);
        let jitter = rand::rng().random_range(0.75..=1.25);
        chrono::Duration::milliseconds((secs * jitter * 1000.0) as i64)
    }

    /// Renews the lease every quarter of its length unless a write extended it meanwhile
    /// (`lease`).
    fn spawn_heartbeat(&self, key: ChunkKey, held: Arc<HeldLease>) -> JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            let lease = engine.options().lease;
            let owner = engine.options().owner.clone();
            loop {
                tokio::time::sleep(lease / 4).await;
                if !held.due(Renewal::Heartbeat, lease, Utc::now()) {
                    continue;
                }
                let until = Utc::now() + lease;
                match engine.store().renew_lease(&key, &owner, until).await {
                    Ok(()) => held.extended(until),
                    Err(StoreError::LeaseLost { .. }) => {
                        held.mark_lost();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(chunk = %key, error = %e, "lease renewal failed; will try again")
                    }
                }
            }
        })
    }

    /// Streams the chunk's pages into parts from its checkpoint on, reading the next page
    /// while one is encoded, and saves a checkpoint whenever a part is due.
    async fn execute_chunk(
        &self,
        job: &Job,
        chunk: &Chunk,
        deadline: &Deadline,
        (held, started): (&HeldLease, Instant),
    ) -> Result<ChunkEnd, Failure> {
        let opts = self.options();
        let key = &chunk.key;
        let (fetcher, writer) = self.open_chunk(job, chunk).await?;
        let every_page =
            self.budget(&job.tenant_id, job.service).spacing() >= opts.checkpoint_every_page_below;
        let share = self.max_in_flight(job.service) as usize;
        let mut progress = Progress::new(chunk.checkpoint.clone(), writer, share, &fetcher);
        if let Some(until) = self.quota_before_chunk(job, fetcher.source.as_ref()).await {
            return Ok(ChunkEnd::QuotaWait(progress.cp, until));
        }
        // Alone, a window reads its next page while this one is encoded. Beside other windows
        // it does not: they keep the API busy, and a page read ahead by every window would
        // double the bodies held while the CPU is the limit.
        let read_ahead = share == 1;
        let mut asked = progress.cp.cursor.clone();
        let mut inflight = None;
        let mut turn = self.first_request_turn(job, key, started).await?;
        loop {
            let mut fetch = inflight
                .take()
                .unwrap_or_else(|| fetcher.spawn(asked.clone()));
            // The deadline also ends the wait for a page: a rate-limit pause, a backoff, an
            // open breaker or a slow answer never keeps the run past it.
            let fetched = tokio::select! {
                biased;
                fetched = &mut fetch => fetched,
                () = deadline.wait() => {
                    fetch.abort();
                    self.save_before_stop(key, held, &mut progress, asked).await?;
                    tracing::info!(chunk = %key, "time budget reached while waiting for a page");
                    return Ok(ChunkEnd::OutOfTime(progress.cp));
                }
            };
            if let Ok(Err(SourceError::QuotaExhausted { .. })) = &fetched {
                let until = self.quota_refused(job);
                self.save_before_stop(key, held, &mut progress, asked)
                    .await?;
                return Ok(ChunkEnd::QuotaWait(progress.cp, until));
            }
            let (meta, first) = (progress.writer.meta(), asked.is_none());
            let page = self
                .await_page(job, key, fetched, meta, (&mut turn, first))
                .await?;
            let next = page.next.clone();
            let quota_wait = self.quota_after_page(job, page.usage.as_ref());
            let out_of_time = deadline.reached() || quota_wait.is_some();
            if let (Some(c), false) = (&next, out_of_time) {
                asked = Some(c.clone());
                if read_ahead {
                    inflight = Some(fetcher.read_ahead(asked.clone()).await);
                }
            }
            progress.add(&page)?;
            let exhausted = next.is_none();
            if exhausted || out_of_time || every_page || progress.part_due(opts) {
                if let Err(f) = self.check_lease(key, held) {
                    stop_reading(&mut inflight);
                    return Err(f);
                }
                self.save_progress(key, held, &mut progress, next).await?;
            }
            if exhausted {
                return Ok(ChunkEnd::Exhausted(progress.cp));
            }
            if out_of_time {
                stop_reading(&mut inflight);
                return Ok(match quota_wait {
                    Some(until) => ChunkEnd::QuotaWait(progress.cp, until),
                    None => ChunkEnd::OutOfTime(progress.cp),
                });
            }
        }
    }

    /// Saves the pages read since the last checkpoint (the next page is `asked`) before the
    /// chunk stops while waiting for a page.
    async fn save_before_stop(
        &self,
        key: &ChunkKey,
        held: &HeldLease,
        progress: &mut Progress,
        asked: Option<String>,
    ) -> Result<(), Failure> {
        if progress.pages > 0 {
            self.check_lease(key, held)?;
            self.save_progress(key, held, progress, asked).await?;
        }
        Ok(())
    }

    /// A lost lease (the heartbeat saw another runner take the chunk) as the failure that
    /// stops the run before it writes anything more.
    fn check_lease(&self, key: &ChunkKey, held: &HeldLease) -> Result<(), Failure> {
        if held.is_lost() {
            return Err(Failure::from(StoreError::LeaseLost {
                key: key.clone(),
                owner: self.options().owner.clone(),
            }));
        }
        Ok(())
    }

    /// Waits for the window's turn at its table's first request (`probe`); a table that
    /// failed for every window meanwhile fails this window too, without a request.
    async fn first_request_turn(
        &self,
        job: &Job,
        key: &ChunkKey,
        started: Instant,
    ) -> Result<Option<Ticket>, Failure> {
        self.probes()
            .enter(&job.job_id, &key.table, started)
            .await
            .map_err(Failure::table_wide)
    }

    /// The fetcher of the chunk's pages and the writer of its parts. Parts written after
    /// the last checkpoint belong to pages that will be read again, so they go first.
    async fn open_chunk(&self, job: &Job, chunk: &Chunk) -> Result<(Fetcher, PartWriter), Failure> {
        let key = &chunk.key;
        let endpoint = self
            .config()
            .endpoints(job.service)
            .and_then(|e| e.find(&key.table))
            .cloned()
            .ok_or_else(|| {
                Failure::table_wide(format!(
                    "table '{}' is no longer defined for {}",
                    key.table, job.service
                ))
            })?;
        let source = self.source(&job.tenant_id, job.service).map_err(|e| {
            Failure::permanent(format!("tenant '{}' {}: {e}", job.tenant_id, job.service))
        })?;
        let meta = ChunkMeta {
            tenant_id: job.tenant_id.clone(),
            service: job.service,
            table: key.table.clone(),
            job_id: job.job_id.clone(),
            chunk_seq: key.seq,
            window: chunk.window,
            ingested_at: Utc::now(),
        };
        if chunk.checkpoint.parts == 0 {
            // The window is written from its start: rows of an earlier run of it that a
            // compaction moved out of its parts must go too.
            self.sink()
                .release_window(&meta.tenant_id, meta.service, &meta.table, &meta.window)
                .await?;
        }
        self.sink()
            .remove_parts_from(&meta, chunk.checkpoint.parts)
            .await?;
        // Every declared column is written (a skipped one null); the query leaves the
        // skipped ones out.
        let writer = self.sink().part_writer(meta, &endpoint)?;
        let skipped = super::fields::skipped_of(&job.skipped_fields, &key.table);
        let fetcher = Fetcher {
            engine: self.clone(),
            source,
            endpoint: Arc::new(super::fields::without(&endpoint, &skipped)),
            window: chunk.window,
            tenant_id: job.tenant_id.clone(),
            who: Arc::new(PulseJob::of(job)),
        };
        Ok((fetcher, writer))
    }

    /// The page a fetch brought. An expired cursor starts the window over: nothing stored
    /// from it may stay, or rows read again would be duplicated.
    ///
    /// `turn` is the window's turn at the table's first request (`probe`), given its verdict
    /// here; `first` says the page is the window's first (no cursor yet).
    async fn await_page(
        &self,
        job: &Job,
        key: &ChunkKey,
        fetched: Result<Result<Page, SourceError>, tokio::task::JoinError>,
        meta: &ChunkMeta,
        (turn, first): (&mut Option<Ticket>, bool),
    ) -> Result<Page, Failure> {
        let fetched =
            fetched.map_err(|e| Failure::permanent(format!("page fetch task failed: {e}")))?;
        let what = || format!("{} {} {}", job.tenant_id, job.service, key.table);
        match fetched {
            Ok(page) => {
                if let Some(t) = turn.take() {
                    t.proven();
                }
                Ok(page)
            }
            Err(e) if e.is_table_wide(first) => {
                let message = format!("{}: {e}", what());
                if let Some(t) = turn.take() {
                    t.failed(message.clone());
                }
                Err(Failure::table_wide(message))
            }
            Err(SourceError::CursorExpired { message }) => {
                let opts = self.options();
                self.sink().remove_parts_from(meta, 0).await?;
                let lease_until = Utc::now() + opts.lease;
                self.store()
                    .checkpoint(key, &opts.owner, &Checkpoint::default(), lease_until)
                    .await?;
                tracing::warn!(chunk = %key, %message, "cursor expired; the window starts over");
                Err(Failure {
                    message: format!("{}: {message}; the window starts over", what()),
                    retryable: true,
                    lease_lost: false,
                    disk_full: false,
                    table_wide: false,
                    permanent_why: None,
                })
            }
            Err(e) => Err(Failure {
                retryable: e.is_retryable(),
                message: format!("{}: {e}", what()),
                lease_lost: false,
                disk_full: false,
                table_wide: false,
                permanent_why: e.why_permanent(),
            }),
        }
    }

    /// Writes the buffered rows as the next part (renewing the lease right before when less
    /// than half of it is left, so a runner whose lease lapsed writes nothing), moves the
    /// checkpoint to `next` (the last page keeps it for the completion) and reports the
    /// progress.
    async fn save_progress(
        &self,
        key: &ChunkKey,
        held: &HeldLease,
        progress: &mut Progress,
        next: Option<String>,
    ) -> Result<(), Failure> {
        let opts = self.options();
        let cp = &mut progress.cp;
        if let Some(part) = progress.writer.finish_part(cp.parts)? {
            if held.due(Renewal::BeforePart, opts.lease, Utc::now()) {
                let until = Utc::now() + opts.lease;
                self.store().renew_lease(key, &opts.owner, until).await?;
                held.extended(until);
            }
            let info = self.sink().put_part(part).await?;
            cp.parts += 1;
            cp.records += info.rows;
            let landed = PulseCounts {
                records: info.rows,
                ..PulseCounts::default()
            };
            self.count_pulse(&progress.who, landed);
        }
        cp.pages += progress.pages;
        let exhausted = next.is_none();
        cp.cursor = next;
        if !exhausted {
            let until = Utc::now() + opts.lease;
            self.store().checkpoint(key, &opts.owner, cp, until).await?;
            held.extended(until);
        }
        self.emit(EngineEvent::ChunkProgress {
            key: key.clone(),
            records: cp.records,
            pages: cp.pages,
            parts: cp.parts,
            bytes: progress.bytes,
        });
        progress.pages = 0;
        progress.bytes = 0;
        progress.since = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_ids_name_host_and_pid() {
        let me = local_owner_id();
        assert!(me.contains(&format!(":{}:", std::process::id())), "{me}");
        assert!(!is_dead_local_owner(&me), "this process is alive");
        // A pid that cannot exist on Linux (beyond pid_max).
        let host = me.rsplitn(3, ':').nth(2).unwrap();
        assert!(is_dead_local_owner(&format!("{host}:4294967290:abcd")));
        assert!(
            !is_dead_local_owner("elsewhere:4294967290:abcd"),
            "other hosts are judged by lease expiry"
        );
        assert!(!is_dead_local_owner("garbage"));
    }
}
