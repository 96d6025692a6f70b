//! Reading lists and operator actions: listing jobs through the indexes, a job's chunks,
//! pause/unpause/cancel and reopening failed chunks.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::TransactWriteItem;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::codec::{
    BY_CREATED, BY_TENANT, Frontier, LIST_PK_VALUE, StoredChunk, chunk_key, chunk_sk, decode_chunk,
    decode_job, frontier_key, job_key, n, s, t,
};
use super::io::{
    Txn, backend, backoff, is_condition_failed, names, query_all, transact, update_if, update_item,
    values,
};
use super::{DynamoStore, JobView};
use crate::domain::{Chunk, ChunkStatus, Job, JobStatus};
use crate::store::{JobFilter, StoreError};

/// Conditional chunk writes in flight while cancelling a job.
const CANCELS_IN_FLIGHT: usize = 16;
/// Chunks reopened per transaction (with their frontier item: at most 100 items).
const REOPEN_BATCH: usize = 99;

impl DynamoStore {
    /// Lists jobs newest first through an index, never a Scan: `by_tenant_status` when a
    /// tenant is given (its status in the key condition), else `by_created`, whose single
    /// partition `list_pk = "jobs"` holds every job sorted by creation. Counters here are
    /// the job items' own, refreshed every few chunks; `get_job` is exact.
    pub(super) async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let mut filters = Vec::new();
        let mut vals = Vec::new();
        let q = self.client.query().table_name(&self.jobs);
        let (q, key) = match &filter.tenant_id {
            Some(tenant) => {
                vals.push((":tenant", s(tenant)));
                let key = match filter.status {
                    Some(st) => {
                        vals.push((":status", s(st.as_str())));
                        "#tenant_id = :tenant AND #status = :status"
                    }
                    None => "#tenant_id = :tenant",
                };
                (q.index_name(BY_TENANT), key)
            }
            None => {
                vals.push((":all", s(LIST_PK_VALUE)));
                if let Some(st) = filter.status {
                    vals.push((":status", s(st.as_str())));
                    filters.push("#status = :status");
                }
                (
                    q.index_name(BY_CREATED).scan_index_forward(false),
                    "#list_pk = :all",
                )
            }
        };
        if let Some(svc) = filter.service {
            vals.push((":service", s(svc.as_str())));
            filters.push("#service = :service");
        }
        let filter_expr = filters.join(" AND ");
        let q = q
            .key_condition_expression(key)
            .set_filter_expression((!filter_expr.is_empty()).then(|| filter_expr.clone()))
            .set_expression_attribute_names(names(&[key, &filter_expr]))
            .set_expression_attribute_values(values(vals));
        let mut jobs = query_all(q, "Query jobs")
            .await?
            .iter()
            .map(|i| decode_job(i).map(|s| s.job))
            .collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.job_id.cmp(&b.job_id))
        });
        Ok(jobs)
    }

    /// Every chunk of a job, in the job's table order and then by number.
    pub(super) async fn all_chunks(&self, job_id: &str) -> Result<Vec<Chunk>, StoreError> {
        let job = self
            .get_stored_job(job_id)
            .await?
            .ok_or_else(|| StoreError::JobNotFound(job_id.to_string()))?
            .job;
        let mut chunks: Vec<Chunk> = self
            .chunk_items(job_id, None)
            .await?
            .into_iter()
            .map(|c| c.chunk)
            .collect();
        chunks.sort_by_key(|c| (job.tables.iter().position(|t| *t == c.key.table), c.key.seq));
        Ok(chunks)
    }

    /// A job's chunk items, optionally only those with one status (a filtered Query: it
    /// still reads every chunk, which only operator actions do).
    async fn chunk_items(
        &self,
        job_id: &str,
        status: Option<ChunkStatus>,
    ) -> Result<Vec<StoredChunk>, StoreError> {
        let key = "#job_id = :j AND begins_with(#sk, :p)";
        let filter = status.map(|_| "#status = :status".to_string());
        let mut vals = vec![(":j", s(job_id)), (":p", s("chunk#"))];
        if let Some(st) = status {
            vals.push((":status", s(st.as_str())));
        }
        let q = self
            .client
            .query()
            .table_name(&self.chunks)
            .consistent_read(true)
            .key_condition_expression(key)
            .set_filter_expression(filter.clone())
            .set_expression_attribute_names(names(&[key, filter.as_deref().unwrap_or("")]))
            .set_expression_attribute_values(values(vals));
        let items = query_all(q, "Query chunks").await?;
        self.count_chunk_reads(items.len());
        items.iter().map(decode_chunk).collect()
    }

    pub(super) async fn change_status(
        &self,
        job_id: &str,
        status: JobStatus,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let from: &[JobStatus] = match status {
            JobStatus::Paused => &[JobStatus::Pending, JobStatus::Running],
            JobStatus::Pending => &[JobStatus::Paused],
            JobStatus::Cancelled => &[JobStatus::Pending, JobStatus::Running, JobStatus::Paused],
            _ => &[],
        };
        let mut update = "SET #status = :to, #updated_at = :now".to_string();
        if status == JobStatus::Cancelled {
            update.push_str(", #finished_at = :now");
        }
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!(":from{i}")).collect();
        let cond = format!(
            "attribute_exists(#job_id) AND #status IN ({})",
            placeholders.join(", ")
        );
        let mut vals = vec![(":to", s(status.as_str())), (":now", t(now))];
        for (p, st) in placeholders.iter().zip(from) {
            vals.push((p.as_str(), s(st.as_str())));
        }
        let res = if from.is_empty() {
            None
        } else {
            Some(
                self.client
                    .update_item()
                    .table_name(&self.jobs)
                    .set_key(Some(job_key(job_id)))
                    .update_expression(&update)
                    .condition_expression(&cond)
                    .set_expression_attribute_names(names(&[&update, &cond]))
                    .set_expression_attribute_values(values(vals))
                    .send()
                    .await,
            )
        };
        match res {
            Some(Ok(_)) => {}
            Some(Err(e)) if !is_condition_failed(&e) => {
                return Err(backend("UpdateItem job status", e));
            }
            _ => {
                let job = self.require_view(job_id).await?.job;
                return Err(StoreError::Conflict(format!(
                    "job {job_id} is {}; it cannot become {status}",
                    job.status
                )));
            }
        }
        let view = self.require_view(job_id).await?;
        if status == JobStatus::Cancelled {
            self.release_range(&view.job).await?;
            self.cancel_open_chunks(&view).await?;
        }
        Ok(view.job)
    }

    /// Marks every pending or running chunk cancelled, revoking leases: a runner learns at
    /// its next write. Open chunks sit at or after each table's frontier, so only that part
    /// of each table is read.
    pub(super) async fn cancel_open_chunks(&self, view: &JobView) -> Result<(), StoreError> {
        let mut open = Vec::new();
        for f in &view.frontiers {
            open.extend(
                self.chunks_past_frontier(
                    &view.job.job_id,
                    f,
                    &[ChunkStatus::Pending, ChunkStatus::Running],
                )
                .await?,
            );
        }
        futures::stream::iter(open)
            .map(|key| async move {
                let update =
                    "SET #status = :cancelled REMOVE #lease_owner, #lease_expires_at ADD #v :one";
                let cond = "#status IN (:pending, :running)";
                match self
                    .client
                    .update_item()
                    .table_name(&self.chunks)
                    .set_key(Some(chunk_key(&key)))
                    .update_expression(update)
                    .condition_expression(cond)
                    .set_expression_attribute_names(names(&[update, cond]))
                    .set_expression_attribute_values(values([
                        (":cancelled", s("cancelled")),
                        (":pending", s("pending")),
                        (":running", s("running")),
                        (":one", n(1)),
                    ]))
                    .send()
                    .await
                {
                    // Finished meanwhile: it keeps its final status, as in SQLite.
                    Ok(_) => Ok(()),
                    Err(e) if is_condition_failed(&e) => Ok(()),
                    Err(e) => Err(backend("UpdateItem cancel chunk", e)),
                }
            })
            .buffer_unordered(CANCELS_IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    /// The keys of a table's chunks at or after its frontier (where every open chunk sits)
    /// whose status is one of `statuses`.
    async fn chunks_past_frontier(
        &self,
        job_id: &str,
        f: &Frontier,
        statuses: &[ChunkStatus],
    ) -> Result<Vec<crate::domain::ChunkKey>, StoreError> {
        let key = "#job_id = :j AND #sk BETWEEN :from AND :to";
        let placeholders: Vec<String> = (0..statuses.len()).map(|i| format!(":st{i}")).collect();
        let filter = format!("#status IN ({})", placeholders.join(", "));
        let mut vals = vec![
            (":j", s(job_id)),
            (":from", s(chunk_sk(&f.table, f.next))),
            (":to", s(chunk_sk(&f.table, super::codec::MAX_SEQ))),
        ];
        for (p, st) in placeholders.iter().zip(statuses) {
            vals.push((p.as_str(), s(st.as_str())));
        }
        let q = self
            .client
            .query()
            .table_name(&self.chunks)
            .consistent_read(true)
            .key_condition_expression(key)
            .filter_expression(&filter)
            .set_expression_attribute_names(names(&[key, &filter]))
            .set_expression_attribute_values(values(vals));
        query_all(q, "Query open chunks")
            .await?
            .iter()
            .map(|item| decode_chunk(item).map(|c| c.chunk.key))
            .collect()
    }

    /// Fails every pending chunk of `table` with `error`, each in one transaction with its
    /// frontier's failed counter; a chunk claimed meanwhile is left to its holder.
    pub(super) async fn fail_pending_of_table(
        &self,
        job_id: &str,
        table: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(f) = self
            .frontiers(job_id)
            .await?
            .into_iter()
            .find(|f| f.table == table)
        else {
            return Ok(());
        };
        let pending = self
            .chunks_past_frontier(job_id, &f, &[ChunkStatus::Pending])
            .await?;
        futures::stream::iter(pending)
            .map(|key| async move {
                let chunk = update_item(
                    &self.chunks,
                    chunk_key(&key),
                    "SET #status = :failed, #finished_at = :now, #last_error = :err ADD #v :one",
                    "#status = :pending",
                    values([
                        (":failed", s("failed")),
                        (":pending", s("pending")),
                        (":now", t(now)),
                        (":err", s(error)),
                        (":one", n(1)),
                    ]),
                )?;
                let frontier = update_item(
                    &self.chunks,
                    frontier_key(job_id, table),
                    "ADD #failed :one",
                    "attribute_exists(#sk)",
                    values([(":one", n(1))]),
                )?;
                // Refused: claimed or finished meanwhile, and its holder decides.
                transact(
                    &self.client,
                    vec![chunk, frontier],
                    "TransactWriteItems fail table",
                )
                .await
                .map(|_| ())
            })
            .buffer_unordered(CANCELS_IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    /// Makes failed chunks pending again with fresh attempts and moves each table's frontier
    /// back to its lowest reopened chunk, in the same transactions.
    pub(super) async fn reopen_failed(
        &self,
        job_id: &str,
        now: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        let view = self.require_view(job_id).await?;
        if view.job.status == JobStatus::Cancelled {
            return Err(StoreError::Conflict(format!(
                "job {job_id} is cancelled; start a new backfill instead"
            )));
        }
        let failed = self.chunk_items(job_id, Some(ChunkStatus::Failed)).await?;
        if failed.is_empty() {
            return Ok(0);
        }
        // The job becomes active again: it needs its range back before anything changes.
        self.reclaim_range(&view.job).await?;
        let mut by_table: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for c in &failed {
            by_table
                .entry(&c.chunk.key.table)
                .or_default()
                .push(c.chunk.key.seq);
        }
        let mut reopened = 0;
        for (table, seqs) in by_table {
            for group in seqs.chunks(REOPEN_BATCH) {
                reopened += self.reopen_group(&view, table, group).await?;
            }
        }
        let reset = update_if(
            &self.client,
            &self.jobs,
            job_key(job_id),
            "SET #status = :pending, #updated_at = :now REMOVE #finished_at",
            "#status <> :cancelled",
            values([
                (":pending", s("pending")),
                (":cancelled", s("cancelled")),
                (":now", t(now)),
            ]),
            "UpdateItem job status",
        )
        .await?;
        if !reset {
            return Err(StoreError::Conflict(format!(
                "job {job_id} was cancelled while its failed chunks were reopened"
            )));
        }
        // The job item's failed count drops now, not at the next refresh.
        let view = self.require_view(job_id).await?;
        self.write_counters(&view, None, now).await?;
        Ok(reopened)
    }

    /// Reopens one table's failed chunks `seqs` in one transaction with its frontier.
    async fn reopen_group(
        &self,
        view: &JobView,
        table: &str,
        seqs: &[u32],
    ) -> Result<u32, StoreError> {
        let job_id = &view.job.job_id;
        let mut seqs = seqs.to_vec();
        for round in 0..16 {
            let frontier = self
                .frontiers(job_id)
                .await?
                .into_iter()
                .find(|f| f.table == table)
                .ok_or_else(|| {
                    StoreError::Backend(format!("job {job_id} has no frontier for '{table}'"))
                })?;
            let lowest = seqs.iter().copied().min().unwrap_or(frontier.next);
            let mut items = Vec::with_capacity(seqs.len() + 1);
            for seq in &seqs {
                items.push(self.reopen_item(job_id, table, *seq)?);
            }
            items.push(self.lower_frontier_item(job_id, &frontier, lowest, seqs.len())?);
            match transact(&self.client, items, "TransactWriteItems reopen chunks").await? {
                Txn::Committed => return Ok(seqs.len() as u32),
                Txn::Refused(codes) => {
                    // Drop chunks someone else reopened meanwhile; retry on a moved frontier.
                    let frontier_moved =
                        codes.last().is_some_and(|c| c == "ConditionalCheckFailed");
                    let mut i = 0;
                    seqs.retain(|_| {
                        let keep = codes.get(i).is_none_or(|c| c != "ConditionalCheckFailed");
                        i += 1;
                        keep
                    });
                    if seqs.is_empty() {
                        return Ok(0);
                    }
                    if frontier_moved {
                        backoff(round.min(4)).await;
                    }
                }
            }
        }
        Err(StoreError::Backend(format!(
            "reopening failed chunks of {job_id}/{table} kept racing other writers"
        )))
    }

    /// Makes failed chunk `seq` pending again with fresh attempts, if it is still failed.
    fn reopen_item(
        &self,
        job_id: &str,
        table: &str,
        seq: u32,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = "SET #status = :pending, #attempts = :zero REMOVE #not_before, #finished_at ADD #v :one";
        let cond = "#status = :failed";
        let key = crate::domain::ChunkKey {
            job_id: job_id.to_string(),
            table: table.to_string(),
            seq,
        };
        let vals = values([
            (":pending", s("pending")),
            (":failed", s("failed")),
            (":zero", n(0)),
            (":one", n(1)),
        ]);
        update_item(&self.chunks, chunk_key(&key), update, cond, vals)
    }

    /// Moves a table's frontier back to `lowest` (if lower) and takes `reopened` off its
    /// failed count, if no one changed the frontier since it was read.
    fn lower_frontier_item(
        &self,
        job_id: &str,
        frontier: &Frontier,
        lowest: u32,
        reopened: usize,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = "SET #next = :next ADD #v :one, #failed :minus";
        let cond = "#v = :v";
        let vals = values([
            (":next", n(frontier.next.min(lowest))),
            (":one", n(1)),
            (":minus", n(-(reopened as i64))),
            (":v", n(frontier.v)),
        ]);
        update_item(
            &self.chunks,
            frontier_key(job_id, &frontier.table),
            update,
            cond,
            vals,
        )
    }
}
