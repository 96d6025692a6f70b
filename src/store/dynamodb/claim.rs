//! Claiming: per table, the first ready chunk from the frontier on (windows of a table run in
//! parallel), so a claim reads one chunk per table plus the few a frontier skips or the windows
//! in flight, however large the job.
//!
//! A claim reads the job item and the frontier items (two requests in parallel), then the chunk
//! at each open table's `next` (one BatchGetItem). If it has finished, a short query from `next`
//! (pages of `SKIP_PAGE`) finds the lowest open chunk; `next` is moved there (conditional on the
//! frontier's `v`) only once it trails by a page, so the move is not a write per chunk and a
//! claim still reads at most a page of finished chunks. If that chunk is not ready (in flight, or backing off), a query past it finds
//! the first ready one (`first_ready`; it stops after the table's open chunks). `retry_failed` moves
//! `next` back to the lowest chunk it reopens, in the same transaction as the reopening, and bumps
//! `v`, so a claimer's stale move fails and it looks again. Invariant: every chunk below `next`
//! has finished. Claims wait while the job's `creating_until` is set, and abandon a creation
//! whose lease ran out (`create`).
//!
//! Only operator actions read every chunk: `chunks()` (status detail), `retry_failed` (finding
//! failed chunks) and cancel, which reads each table from its frontier and marks every open
//! chunk cancelled, revoking leases (`admin`).

use aws_sdk_dynamodb::types::ReturnValue;
use chrono::{DateTime, Utc};

use super::codec::{
    Frontier, MAX_SEQ, StoredChunk, chunk_key, chunk_sk, decode_chunk, frontier_key, job_key, n, s,
    t,
};
use super::io::{backend, backoff, batch_get, is_condition_failed, names, update_if, values};
use super::{DynamoStore, JobView};
use crate::domain::{ChunkStatus, JobStatus};
use crate::store::{Claim, StoreError};

/// Full passes over the job's tables before a claim gives up on a contended job. Each lost
/// race means another claimer won a chunk, so this bounds nothing but pathological churn.
const MAX_PASSES: u32 = 64;
/// Chunks read per page while moving a frontier past finished chunks.
const SKIP_PAGE: i32 = 8;
/// A frontier moves once this many finished chunks lie before its table's lowest open chunk:
/// the claim that finds them has read a whole page, and the next one reads from the open chunk.
const MOVE_AFTER: u32 = SKIP_PAGE as u32 - 1;

enum Advance {
    /// The table's lowest open chunk (the frontier now points at it).
    To(Box<StoredChunk>),
    /// No open chunk is left in the table.
    Exhausted,
    /// The frontier moved while we looked (another claimer, or `retry_failed` reopening a
    /// lower chunk): what we found may not be the lowest open chunk any more.
    Moved,
}

enum Attempt {
    Won(Box<StoredChunk>),
    /// Someone changed the chunk between our read and our write.
    Lost,
}

impl DynamoStore {
    pub(super) async fn claim(
        &self,
        job_id: &str,
        owner: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        for pass in 0..MAX_PASSES {
            let view = self.require_view(job_id).await?;
            let status = view.job.status;
            if status == JobStatus::Paused || status.is_terminal() {
                return Ok(Claim::Done(status));
            }
            if let Some(until) = view.creating_until {
                // Chunks are still being written. A creator that stopped renewing its
                // creation lease is gone: its job is abandoned so the range can be reused.
                if until < Utc::now() && self.abandon(&view, until).await? {
                    return Ok(Claim::Done(JobStatus::Cancelled));
                }
                return Ok(Claim::Wait { until: None });
            }
            let heads = self.heads(&view).await?;
            let mut wake: Option<DateTime<Utc>> = None;
            let mut lost = false;
            for (frontier, head) in view.frontiers.iter().zip(heads) {
                if frontier.open() == 0 {
                    continue;
                }
                let head = match head {
                    Some(c) if !c.chunk.status.is_terminal() => c,
                    _ => match self.advance(job_id, frontier).await? {
                        Advance::To(c) => *c,
                        Advance::Exhausted => continue,
                        Advance::Moved => {
                            lost = true;
                            continue;
                        }
                    },
                };
                let Some(ready) = self
                    .first_ready(job_id, frontier, head, now, &mut wake)
                    .await?
                else {
                    continue;
                };
                match self.try_claim(&ready, owner, lease_until, now).await? {
                    Attempt::Won(chunk) => {
                        if status == JobStatus::Pending {
                            self.mark_running(job_id, now).await?;
                        }
                        return Ok(Claim::Chunk(Box::new(chunk.chunk)));
                    }
                    Attempt::Lost => lost = true,
                }
            }
            if lost {
                // Another claimer took or changed a chunk we wanted; look again.
                backoff(pass.min(3)).await;
                continue;
            }
            if view.open() == 0 {
                let job = self.settle_or_report(job_id, now).await?;
                return Ok(Claim::Done(job.status));
            }
            return Ok(Claim::Wait { until: wake });
        }
        Err(StoreError::Backend(format!(
            "claiming a chunk of {job_id} lost {MAX_PASSES} races in a row"
        )))
    }

    /// The first chunk of the frontier's table, from its lowest open chunk `head` on, that can
    /// be claimed at `now`: windows are independent, so a running or backed-off chunk does not
    /// hold back the ones after it. Looks past `head` only when `head` is not ready, in pages
    /// of `SKIP_PAGE`, and stops once it has seen the table's open chunks. Chunks not ready yet
    /// move `wake` to when the first of them will be.
    async fn first_ready(
        &self,
        job_id: &str,
        frontier: &Frontier,
        head: StoredChunk,
        now: DateTime<Utc>,
        wake: &mut Option<DateTime<Utc>>,
    ) -> Result<Option<StoredChunk>, StoreError> {
        let mut ready_now = |c: &StoredChunk| match ready_at(c, now) {
            Some(at) => {
                *wake = Some(wake.map_or(at, |w| w.min(at)));
                false
            }
            None => true,
        };
        if ready_now(&head) {
            return Ok(Some(head));
        }
        let key = "#job_id = :j AND #sk BETWEEN :from AND :to";
        let (mut start, mut open_seen) = (None, 1u32);
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.chunks)
                .consistent_read(true)
                .key_condition_expression(key)
                .set_expression_attribute_names(names(&[key]))
                .set_expression_attribute_values(values([
                    (":j", s(job_id)),
                    (
                        ":from",
                        s(chunk_sk(&frontier.table, head.chunk.key.seq + 1)),
                    ),
                    (":to", s(chunk_sk(&frontier.table, MAX_SEQ))),
                ]))
                .limit(SKIP_PAGE)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("Query chunks", e))?;
            let items = page.items.unwrap_or_default();
            self.count_chunk_reads(items.len());
            for item in &items {
                let c = decode_chunk(item)?;
                if c.chunk.status.is_terminal() {
                    continue;
                }
                if ready_now(&c) {
                    return Ok(Some(c));
                }
                open_seen += 1;
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() && open_seen < frontier.open() => start = Some(k),
                _ => return Ok(None),
            }
        }
    }

    /// The chunk at each open table's frontier, in the job's table order (one batch read).
    async fn heads(&self, view: &JobView) -> Result<Vec<Option<StoredChunk>>, StoreError> {
        let job_id = &view.job.job_id;
        let keys = view
            .frontiers
            .iter()
            .filter(|f| f.open() > 0)
            .map(|f| {
                chunk_key(&crate::domain::ChunkKey {
                    job_id: job_id.clone(),
                    table: f.table.clone(),
                    seq: f.next,
                })
            })
            .collect();
        let items = batch_get(&self.client, &self.chunks, keys).await?;
        self.count_chunk_reads(items.len());
        let mut found: Vec<StoredChunk> =
            items.iter().map(decode_chunk).collect::<Result<_, _>>()?;
        Ok(view
            .frontiers
            .iter()
            .map(|f| {
                let at = found
                    .iter()
                    .position(|c| c.chunk.key.table == f.table && c.chunk.key.seq == f.next)?;
                Some(found.swap_remove(at))
            })
            .collect())
    }

    /// Moves a table's frontier to its lowest open chunk and returns that chunk.
    ///
    /// Only finished chunks are skipped, so `seq < next` stays finished. The move is
    /// conditional on the frontier's version: if `retry_failed` reopened a chunk meanwhile
    /// (it bumps the version as it moves `next` back), the stale move is dropped and the
    /// claim looks again.
    async fn advance(&self, job_id: &str, frontier: &Frontier) -> Result<Advance, StoreError> {
        let key = "#job_id = :j AND #sk BETWEEN :from AND :to";
        let mut start = None;
        let mut found = None;
        let mut last_seen = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.chunks)
                .consistent_read(true)
                .key_condition_expression(key)
                .set_expression_attribute_names(names(&[key]))
                .set_expression_attribute_values(values([
                    (":j", s(job_id)),
                    (":from", s(chunk_sk(&frontier.table, frontier.next))),
                    (":to", s(chunk_sk(&frontier.table, MAX_SEQ))),
                ]))
                .limit(SKIP_PAGE)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("Query chunks", e))?;
            let items = page.items.unwrap_or_default();
            self.count_chunk_reads(items.len());
            for item in &items {
                let c = decode_chunk(item)?;
                if c.chunk.status.is_terminal() {
                    last_seen = Some(c.chunk.key.seq);
                } else {
                    found = Some(c);
                    break;
                }
            }
            match page.last_evaluated_key {
                Some(k) if found.is_none() && !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        let next = match (&found, last_seen) {
            (Some(c), _) => c.chunk.key.seq,
            (None, Some(seq)) => seq + 1,
            (None, None) => return Ok(Advance::Exhausted),
        };
        // The move is a write of its own: made only once the frontier trails by a page, so
        // it costs a fraction of a write per chunk while a claim still reads at most a page
        // of finished chunks before the lowest open one.
        if next >= frontier.next + MOVE_AFTER {
            let update = "SET #next = :next ADD #v :one";
            let cond = "#v = :v";
            match self
                .client
                .update_item()
                .table_name(&self.chunks)
                .set_key(Some(frontier_key(job_id, &frontier.table)))
                .update_expression(update)
                .condition_expression(cond)
                .set_expression_attribute_names(names(&[update, cond]))
                .set_expression_attribute_values(values([
                    (":next", n(next)),
                    (":one", n(1)),
                    (":v", n(frontier.v)),
                ]))
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_condition_failed(&e) => return Ok(Advance::Moved),
                Err(e) => return Err(backend("UpdateItem frontier", e)),
            }
        }
        Ok(found.map_or(Advance::Exhausted, |c| Advance::To(Box::new(c))))
    }

    /// Takes the chunk if it is still exactly as read. A pending chunk starts a new attempt;
    /// a running one whose lease expired continues its holder's attempt from the checkpoint.
    async fn try_claim(
        &self,
        head: &StoredChunk,
        owner: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Attempt, StoreError> {
        let bump = u32::from(head.chunk.status == ChunkStatus::Pending);
        let update = "SET #status = :running, #lease_owner = :owner, #lease_expires_at = :lease, \
             #attempts = #attempts + :bump, #started_at = if_not_exists(#started_at, :now) \
             REMOVE #not_before ADD #v :one";
        let cond = "#v = :v";
        match self
            .client
            .update_item()
            .table_name(&self.chunks)
            .set_key(Some(chunk_key(&head.chunk.key)))
            .update_expression(update)
            .condition_expression(cond)
            .set_expression_attribute_names(names(&[update, cond]))
            .set_expression_attribute_values(values([
                (":running", s("running")),
                (":owner", s(owner)),
                (":lease", t(lease_until)),
                (":bump", n(bump)),
                (":now", t(now)),
                (":one", n(1)),
                (":v", n(head.v)),
            ]))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
        {
            Ok(out) => {
                let item = out.attributes.ok_or_else(|| {
                    StoreError::Backend("UpdateItem claim returned no attributes".into())
                })?;
                Ok(Attempt::Won(Box::new(decode_chunk(&item)?)))
            }
            Err(e) if is_condition_failed(&e) => Ok(Attempt::Lost),
            Err(e) => Err(backend("UpdateItem claim", e)),
        }
    }

    /// The job's first claim makes it running (once; a lost race here is someone else's win).
    async fn mark_running(&self, job_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        update_if(
            &self.client,
            &self.jobs,
            job_key(job_id),
            "SET #status = :running, #updated_at = :now",
            "#status = :pending",
            values([
                (":running", s("running")),
                (":pending", s("pending")),
                (":now", t(now)),
            ]),
            "UpdateItem job status",
        )
        .await
        .map(|_| ())
    }
}

/// When an open chunk can be claimed, if not at `now`: a pending one after its backoff, a
/// running one when its lease expires.
fn ready_at(c: &StoredChunk, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let at = match c.chunk.status {
        ChunkStatus::Pending => c.chunk.not_before,
        _ => c.chunk.lease_expires_at,
    };
    at.filter(|at| *at > now)
}
