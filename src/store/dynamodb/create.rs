//! Job creation: one transaction claims the range and writes the job and its frontiers, then
//! the chunks follow in batches under a creation lease, so racing creators of the same plan
//! end with one job, and a creator that dies half-way leaves a job others can abandon.
//!
//! The transaction puts the range claim (if free, or if it points at a job that has ended), the
//! job item with `creating_until` (the creation lease, `CREATION_LEASE_SECS`) and the frontier
//! items; the chunks follow in batches, the lease renewed every `CHUNKS_PER_RENEWAL` chunks; then
//! `creating_until` is removed. Racing creators of the same plan: one transaction wins, the others
//! find the claim and return `Existing`. A creator that stops renewing (it died) has its job
//! abandoned (cancelled, claim released) by the next claim or create, and the plan can be
//! triggered again (`_r2`).

use std::collections::{BTreeMap, HashSet};

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Duration, Utc};

use super::DynamoStore;
use super::codec::{
    Fields, Frontier, MAX_SEQ, frontier_item, job_item, job_key, new_chunk_item, range_id, s, t,
};
use super::io::{Txn, backend, backoff, batch_put, is_condition_failed, names, transact, values};
use crate::domain::{Chunk, Job};
use crate::store::{CreateOutcome, StoreError};

/// How long a creator may go without renewing before others treat the job as abandoned.
const CREATION_LEASE_SECS: i64 = 120;
/// Chunks written between two renewals of the creation lease (40 batches of 25).
const CHUNKS_PER_RENEWAL: usize = 1_000;
/// A transaction holds at most 100 items: the range claim, the job and one frontier per table.
const MAX_TABLES: usize = 98;
/// Rounds of "someone else changed the range or took the id" before giving up.
const MAX_ROUNDS: u32 = 16;

fn invalid(why: String) -> StoreError {
    StoreError::Backend(format!("cannot store this job in DynamoDB: {why}"))
}

/// Refuses what would break the key layout: `#` separates key parts.
fn validate(job: &Job, chunks: &[Chunk]) -> Result<BTreeMap<String, Frontier>, StoreError> {
    if job.job_id.contains('#') || job.job_id.is_empty() {
        return Err(invalid(format!(
            "job id '{}' must be non-empty without '#'",
            job.job_id
        )));
    }
    if job.tables.len() > MAX_TABLES {
        return Err(invalid(format!(
            "{} tables; at most {MAX_TABLES} fit one job",
            job.tables.len()
        )));
    }
    let mut frontiers = BTreeMap::new();
    for table in &job.tables {
        if table.contains('#') || table.contains(',') || table.is_empty() {
            return Err(invalid(format!(
                "table name '{table}' must be non-empty without '#' or ','"
            )));
        }
        frontiers.insert(
            table.clone(),
            Frontier {
                table: table.clone(),
                next: u32::MAX,
                count: 0,
                succeeded: 0,
                failed: 0,
                records: 0,
                v: 0,
            },
        );
    }
    // A partition key holds at most 2,048 bytes; the range claim's key lists the tables.
    if range_id(job).len() > 1_024 {
        return Err(invalid(format!(
            "the table list is too long ({} tables) for one job's range key",
            job.tables.len()
        )));
    }
    let mut seen = HashSet::new();
    for c in chunks {
        let Some(f) = frontiers.get_mut(&c.key.table) else {
            return Err(invalid(format!(
                "chunk {} is for a table the job does not list",
                c.key
            )));
        };
        if c.key.seq > MAX_SEQ {
            return Err(invalid(format!(
                "chunk {} is numbered past {MAX_SEQ}",
                c.key
            )));
        }
        if !seen.insert((&c.key.table, c.key.seq)) {
            return Err(invalid(format!("chunk {} appears twice", c.key)));
        }
        f.count += 1;
        f.next = f.next.min(c.key.seq);
    }
    for f in frontiers.values_mut() {
        if f.count == 0 {
            f.next = 0;
        }
    }
    Ok(frontiers)
}

fn put(
    table: &str,
    item: super::codec::Item,
    cond: &str,
    vals: Vec<(&str, AttributeValue)>,
) -> Result<TransactWriteItem, StoreError> {
    let p = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(cond)
        .set_expression_attribute_names(names(&[cond]))
        .set_expression_attribute_values(values(vals))
        .build()
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(TransactWriteItem::builder().put(p).build())
}

impl DynamoStore {
    pub(super) async fn create(
        &self,
        job: Job,
        chunks: Vec<Chunk>,
        end_is_default: bool,
    ) -> Result<CreateOutcome, StoreError> {
        let frontiers = validate(&job, &chunks)?;
        let range = range_id(&job);
        for round in 0..MAX_ROUNDS {
            // Who holds the range? An active holder answers the request; a finished one (or
            // a vanished one) leaves a stale claim that this creation may replace.
            let holder = self.range_holder(&range).await?;
            if let Some(owner) = &holder
                && let Some(view) = self.view(owner).await?
                && view.job.status.is_active()
                && !self.abandon_if_stalled(&view).await?
            {
                return crate::store::existing_or_conflict(view.job, &job, end_is_default);
            }
            let id = self.free_id(&job.job_id).await?;
            let lease = Utc::now() + Duration::seconds(CREATION_LEASE_SECS);
            let mut stored = job.clone();
            stored.job_id = id.clone();
            stored.total_chunks = chunks.len() as u32;
            (
                stored.completed_chunks,
                stored.failed_chunks,
                stored.records,
            ) = (0, 0, 0);
            stored.finished_at = None;

            let mut claim = super::codec::job_key(&range);
            claim.insert("owner".into(), s(&id));
            let mut items = vec![match &holder {
                None => put(&self.jobs, claim, "attribute_not_exists(#job_id)", vec![])?,
                Some(stale) => put(
                    &self.jobs,
                    claim,
                    "#owner = :stale",
                    vec![(":stale", s(stale))],
                )?,
            }];
            items.push(put(
                &self.jobs,
                job_item(&stored, Some(lease)),
                "attribute_not_exists(#job_id)",
                vec![],
            )?);
            for f in frontiers.values() {
                items.push(put(
                    &self.chunks,
                    frontier_item(&id, f),
                    "attribute_not_exists(#sk)",
                    vec![],
                )?);
            }
            match transact(&self.client, items, "TransactWriteItems create job").await? {
                Txn::Committed => {
                    self.write_chunks(&id, &chunks, lease).await?;
                    let view = self.require_view(&id).await?;
                    return Ok(CreateOutcome::Created(view.job));
                }
                // Another creator won the range or the id; look again.
                Txn::Refused(_) => backoff(round.min(4)).await,
            }
        }
        Err(StoreError::Backend(format!(
            "creating {} kept racing other writers for {MAX_ROUNDS} rounds",
            job.job_id
        )))
    }

    /// The first of `base`, `base_r2`, `base_r3`... that no job has taken.
    async fn free_id(&self, base: &str) -> Result<String, StoreError> {
        let mut id = base.to_string();
        let mut n = 1;
        while self.get_stored_job(&id).await?.is_some() {
            n += 1;
            id = format!("{base}_r{n}");
        }
        Ok(id)
    }

    /// Writes the chunks, renewing the creation lease as it goes, then ends the creation.
    /// On any failure the job is abandoned at once rather than left for others to time out.
    async fn write_chunks(
        &self,
        id: &str,
        chunks: &[Chunk],
        mut lease: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result: Result<(), StoreError> = async {
            for (i, group) in chunks.chunks(CHUNKS_PER_RENEWAL).enumerate() {
                if i > 0 {
                    let next = Utc::now() + Duration::seconds(CREATION_LEASE_SECS);
                    self.creation_step(id, lease, Some(next)).await?;
                    lease = next;
                }
                let items = group.iter().map(|c| new_chunk_item(id, c)).collect();
                batch_put(&self.client, &self.chunks, items).await?;
            }
            self.creation_step(id, lease, None).await
        }
        .await;
        if let Err(e) = result {
            if let Some(view) = self.view(id).await? {
                self.abandon(&view, lease).await?;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Renews the creation lease (`Some`) or ends the creation (`None`), if it is still ours.
    async fn creation_step(
        &self,
        id: &str,
        held: DateTime<Utc>,
        renew: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let cond = "#creating_until = :held AND #status = :pending";
        let (update, mut vals) = match renew {
            Some(at) => ("SET #creating_until = :next", vec![(":next", t(at))]),
            None => ("REMOVE #creating_until", vec![]),
        };
        vals.extend([(":held", t(held)), (":pending", s("pending"))]);
        match self
            .client
            .update_item()
            .table_name(&self.jobs)
            .set_key(Some(job_key(id)))
            .update_expression(update)
            .condition_expression(cond)
            .set_expression_attribute_names(names(&[update, cond]))
            .set_expression_attribute_values(values(vals))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Err(StoreError::Conflict(format!(
                "job {id} was abandoned or cancelled while its chunks were being written; create it again"
            ))),
            Err(e) => Err(backend("UpdateItem creation lease", e)),
        }
    }

    /// True (and the job cancelled) when its creator stopped renewing the creation lease.
    pub(super) async fn abandon_if_stalled(
        &self,
        view: &super::JobView,
    ) -> Result<bool, StoreError> {
        match view.creating_until {
            Some(until) if until < Utc::now() => self.abandon(view, until).await,
            _ => Ok(false),
        }
    }

    /// Cancels a job whose creation did not finish (if its lease is still `held`), gives up
    /// its range and cancels the chunks that were written.
    pub(super) async fn abandon(
        &self,
        view: &super::JobView,
        held: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let update = "SET #status = :cancelled, #finished_at = :now, #updated_at = :now REMOVE #creating_until";
        let cond = "#creating_until = :held";
        match self
            .client
            .update_item()
            .table_name(&self.jobs)
            .set_key(Some(job_key(&view.job.job_id)))
            .update_expression(update)
            .condition_expression(cond)
            .set_expression_attribute_names(names(&[update, cond]))
            .set_expression_attribute_values(values([
                (":cancelled", s("cancelled")),
                (":now", t(now)),
                (":held", t(held)),
            ]))
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_condition_failed(&e) => return Ok(false),
            Err(e) => return Err(backend("UpdateItem abandon job", e)),
        }
        tracing::warn!(job_id = %view.job.job_id, "job creation did not finish; job abandoned");
        self.release_range(&view.job).await?;
        self.cancel_open_chunks(view).await?;
        Ok(true)
    }

    /// The job that holds a range claim, if any.
    async fn range_holder(&self, range: &str) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.jobs)
            .set_key(Some(job_key(range)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem range claim", e))?;
        out.item
            .as_ref()
            .map(|i| Fields::new(i, "range claim").s("owner").map(str::to_string))
            .transpose()
    }

    /// Gives up the job's range claim, if it still holds it.
    pub(super) async fn release_range(&self, job: &Job) -> Result<(), StoreError> {
        let cond = "#owner = :me";
        match self
            .client
            .delete_item()
            .table_name(&self.jobs)
            .set_key(Some(job_key(&range_id(job))))
            .condition_expression(cond)
            .set_expression_attribute_names(names(&[cond]))
            .set_expression_attribute_values(values([(":me", s(&job.job_id))]))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(backend("DeleteItem range claim", e)),
        }
    }

    /// Takes the range claim back for a job that becomes active again (`retry_failed`).
    /// Fails with a conflict when another active job covers the same range meanwhile.
    pub(super) async fn reclaim_range(&self, job: &Job) -> Result<(), StoreError> {
        let range = range_id(job);
        for round in 0..MAX_ROUNDS {
            let holder = self.range_holder(&range).await?;
            let (cond, vals) = match &holder {
                Some(owner) if owner == &job.job_id => return Ok(()),
                Some(owner) => {
                    if let Some(view) = self.view(owner).await?
                        && view.job.status.is_active()
                        && !self.abandon_if_stalled(&view).await?
                    {
                        return Err(StoreError::Conflict(format!(
                            "job {owner} is now backfilling the same range; cancel it before retrying {}",
                            job.job_id
                        )));
                    }
                    ("#owner = :stale", vec![(":stale", s(owner))])
                }
                None => ("attribute_not_exists(#job_id)", vec![]),
            };
            let mut claim = job_key(&range);
            claim.insert("owner".into(), s(&job.job_id));
            match self
                .client
                .put_item()
                .table_name(&self.jobs)
                .set_item(Some(claim))
                .condition_expression(cond)
                .set_expression_attribute_names(names(&[cond]))
                .set_expression_attribute_values(values(vals))
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_condition_failed(&e) => backoff(round.min(4)).await,
                Err(e) => return Err(backend("PutItem range claim", e)),
            }
        }
        Err(StoreError::Backend(format!(
            "reclaiming the range of {} kept racing other writers",
            job.job_id
        )))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::{ChunkKey, JobStatus, Service, Window};

    fn job(tables: &[&str]) -> Job {
        let at = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        Job {
            job_id: "j".into(),
            tenant_id: "acme".into(),
            service: Service::Connectwise,
            tables: tables.iter().map(|t| t.to_string()).collect(),
            status: JobStatus::Pending,
            window: Window::new(at, at),
            chunk_size_days: 1,
            max_attempts: 1,
            total_chunks: 0,
            completed_chunks: 0,
            failed_chunks: 0,
            records: 0,
            created_at: at,
            updated_at: at,
            finished_at: None,
            skipped_fields: Vec::new(),
        }
    }

    fn chunk(table: &str, seq: u32) -> Chunk {
        let at = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        Chunk::new(
            ChunkKey {
                job_id: "j".into(),
                table: table.into(),
                seq,
            },
            Window::new(at, at),
        )
    }

    #[test]
    fn frontiers_start_at_each_tables_first_chunk() {
        let f = validate(
            &job(&["a", "b", "c"]),
            &[chunk("a", 3), chunk("a", 4), chunk("b", 0)],
        )
        .unwrap();
        assert_eq!((f["a"].next, f["a"].count), (3, 2));
        assert_eq!((f["b"].next, f["b"].count), (0, 1));
        assert_eq!((f["c"].next, f["c"].count), (0, 0));
    }

    #[test]
    fn key_breaking_input_is_refused() {
        for (j, c) in [
            (job(&["a#b"]), vec![]),
            (job(&["a"]), vec![chunk("b", 0)]),
            (job(&["a"]), vec![chunk("a", 0), chunk("a", 0)]),
            (job(&["a"]), vec![chunk("a", MAX_SEQ + 1)]),
        ] {
            assert!(validate(&j, &c).is_err(), "{:?}", j.tables);
        }
    }
}
