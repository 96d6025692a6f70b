//! What a job has beside its chunks: hints and finalisation (one item, one write each),
//! verification results and removal.
//!
//! A job's verification results can be thousands of items, more than one transaction (100
//! items) or one item (400 KB) holds, so a save writes a new generation of result items and
//! then switches the `verify` pointer to it in one write: readers see the old results or the
//! new ones, never a mix. Generations are named by the time their save started, and the
//! pointer only moves to a later one (a conditional put), so every generation older than the
//! pointer's is garbage: the replaced one, one a crashed save left before or after its switch,
//! one being written by a save that a later one has overtaken. A save that switched the
//! pointer deletes them all; a save refused by the condition deletes its own. Whatever a crash
//! leaves in between goes with the next save or when the job is removed.
//!
//! Removing a job deletes the rest of its partition and its alerts first, then the job item
//! and its table frontiers in one transaction, so a reader sees the job whole (its chunk list
//! shrinking) until it is gone, and a removal cut short is finished by the next one.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{Delete, TransactWriteItem};
use chrono::{DateTime, Utc};

use super::super::DynamoStore;
use super::super::codec::{Fields, Item, SK, job_key, n, s, t};
use super::super::io::{
    Txn, backend, backoff, batch_delete, batch_get, batch_put, is_condition_failed, names,
    query_all, transact, update_if, values,
};
use super::items::{
    ALERTS, FRONTIER_PREFIX, decode_meta, decode_pointer, decode_result, failures_key,
    generation_at, generation_name, generation_of, generation_prefix, key_part, keys_of, meta_key,
    pointer_item, result_item, results_prefix, trigger_text, verify_key,
};
use crate::domain::{ChunkVerification, JobMeta};
use crate::store::StoreError;
use crate::store::lifecycle::HandoffClaim;

/// Reads of a job's results that found a save switching generations under them, before
/// giving up.
const READ_ROUNDS: u32 = 8;
/// A transaction holds at most 100 items: the job and its frontiers (a job has at most 98).
const TXN_ITEMS: usize = 100;

/// A name for a new generation of results: unique without coordination, later than every
/// generation whose save started before (on this clock).
fn new_generation() -> String {
    generation_name(
        u64::try_from(Utc::now().timestamp_micros()).unwrap_or(0),
        rand::random::<u32>(),
    )
}

impl DynamoStore {
    pub(super) async fn put_meta(&self, meta: &JobMeta) -> Result<(), StoreError> {
        let job_id = key_part("job id", &meta.job_id)?;
        // Hints replace hints; a finalisation already stored is kept.
        let mut update =
            "SET #priority = :priority, #trigger = :trigger, #wait_off_peak = :wait".to_string();
        let mut vals = vec![
            (":priority", super::super::codec::n(meta.priority)),
            (":trigger", s(trigger_text(meta.trigger))),
            (
                ":wait",
                aws_sdk_dynamodb::types::AttributeValue::Bool(meta.wait_off_peak),
            ),
        ];
        if let Some(at) = meta.finalized_at {
            update.push_str(", #finalized_at = if_not_exists(#finalized_at, :finalized)");
            vals.push((":finalized", t(at)));
        }
        self.client
            .update_item()
            .table_name(&self.chunks)
            .set_key(Some(meta_key(job_id)))
            .update_expression(&update)
            .set_expression_attribute_names(names(&[&update]))
            .set_expression_attribute_values(values(vals))
            .send()
            .await
            .map_err(|e| backend("UpdateItem job hints", e))?;
        Ok(())
    }

    /// Hints in the order asked for; ids that cannot be jobs (with `#`) have none.
    pub(super) async fn metas(&self, job_ids: &[String]) -> Result<Vec<JobMeta>, StoreError> {
        let mut wanted: Vec<&str> = job_ids
            .iter()
            .map(String::as_str)
            .filter(|id| key_part("job id", id).is_ok())
            .collect();
        wanted.sort_unstable();
        // BatchGetItem refuses a request that names one key twice.
        wanted.dedup();
        let keys = wanted.iter().map(|id| meta_key(id)).collect();
        let found: HashMap<String, JobMeta> = batch_get(&self.client, &self.chunks, keys)
            .await?
            .iter()
            .map(|i| decode_meta(i).map(|m| (m.job_id.clone(), m)))
            .collect::<Result<_, _>>()?;
        Ok(job_ids
            .iter()
            .filter_map(|id| found.get(id).cloned())
            .collect())
    }

    /// Sets `finalized_at` unless it is set: of racing finishers exactly one gets `true`.
    /// A job without hints gets the defaults, as `JobMeta::default_for` has them.
    pub(super) async fn finalize(
        &self,
        job_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let update = "SET #finalized_at = :now, #priority = if_not_exists(#priority, :zero), \
                      #trigger = if_not_exists(#trigger, :manual), \
                      #wait_off_peak = if_not_exists(#wait_off_peak, :no)";
        let cond = "attribute_not_exists(#finalized_at)";
        let defaults = JobMeta::default_for(job_id);
        update_if(
            &self.client,
            &self.chunks,
            meta_key(key_part("job id", job_id)?),
            update,
            cond,
            values([
                (":now", t(now)),
                (":zero", n(defaults.priority)),
                (":manual", s(trigger_text(defaults.trigger))),
                (
                    ":no",
                    aws_sdk_dynamodb::types::AttributeValue::Bool(defaults.wait_off_peak),
                ),
            ]),
            "UpdateItem finalize job",
        )
        .await
    }

    /// Sets `handoff_owner` and `handoff_until` on the hints item unless the job is finalised
    /// or another owner's claim has not lapsed (timestamps compare as fixed-width text). A
    /// refused claim reads the item to say why.
    pub(super) async fn handoff_claim(
        &self,
        job_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        breaking: Option<&str>,
    ) -> Result<HandoffClaim, StoreError> {
        let update = "SET #handoff_owner = :owner, #handoff_until = :until, \
                      #priority = if_not_exists(#priority, :zero), \
                      #trigger = if_not_exists(#trigger, :manual), \
                      #wait_off_peak = if_not_exists(#wait_off_peak, :no)";
        let cond = "attribute_not_exists(#finalized_at) AND (attribute_not_exists(#handoff_until) \
                    OR #handoff_owner = :owner OR #handoff_owner = :breaking OR #handoff_until < :now)";
        let defaults = JobMeta::default_for(job_id);
        let key = meta_key(key_part("job id", job_id)?);
        let vals = values([
            (":owner", s(owner)),
            (":breaking", s(breaking.unwrap_or(owner))),
            (":until", t(until)),
            (":now", t(now)),
            (":zero", n(defaults.priority)),
            (":manual", s(trigger_text(defaults.trigger))),
            (
                ":no",
                aws_sdk_dynamodb::types::AttributeValue::Bool(defaults.wait_off_peak),
            ),
        ]);
        if update_if(
            &self.client,
            &self.chunks,
            key.clone(),
            update,
            cond,
            vals,
            "UpdateItem claim hand-off",
        )
        .await?
        {
            return Ok(HandoffClaim::Taken);
        }
        let item = self
            .get_chunks_item(key, "GetItem hand-off claim")
            .await?
            .unwrap_or_default();
        let f = Fields::new(&item, "job hints");
        if f.opt_ts("finalized_at")?.is_some() {
            return Ok(HandoffClaim::Done);
        }
        Ok(HandoffClaim::Held {
            owner: f.s("handoff_owner").unwrap_or("another runner").to_string(),
            until: f.opt_ts("handoff_until")?.unwrap_or(now),
        })
    }

    /// Removes `owner`'s hand-off claim from the hints item; another owner's stays.
    pub(super) async fn handoff_release(
        &self,
        job_id: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        update_if(
            &self.client,
            &self.chunks,
            meta_key(key_part("job id", job_id)?),
            "REMOVE #handoff_owner, #handoff_until",
            "#handoff_owner = :owner",
            values([(":owner", s(owner))]),
            "UpdateItem release hand-off",
        )
        .await
        .map(|_| ())
    }

    /// Sets or removes `quota_wait_until` on the job's hints item in one write; a job without
    /// hints gets the defaults, as `JobMeta::default_for` has them.
    pub(super) async fn quota_wait(
        &self,
        job_id: &str,
        until: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let defaults = JobMeta::default_for(job_id);
        let mut update = "SET #priority = if_not_exists(#priority, :zero), \
                          #trigger = if_not_exists(#trigger, :manual), \
                          #wait_off_peak = if_not_exists(#wait_off_peak, :no)"
            .to_string();
        let mut vals = vec![
            (":zero", n(defaults.priority)),
            (":manual", s(trigger_text(defaults.trigger))),
            (":no", AttributeValue::Bool(defaults.wait_off_peak)),
        ];
        match until {
            Some(at) => {
                update.push_str(", #quota_wait_until = :until");
                vals.push((":until", t(at)));
            }
            None => update.push_str(" REMOVE #quota_wait_until"),
        }
        self.client
            .update_item()
            .table_name(&self.chunks)
            .set_key(Some(meta_key(key_part("job id", job_id)?)))
            .update_expression(&update)
            .set_expression_attribute_names(names(&[&update]))
            .set_expression_attribute_values(values(vals))
            .send()
            .await
            .map_err(|e| backend("UpdateItem job quota wait", e))?;
        Ok(())
    }

    /// Counts a chunk attempt into the job's failure run (one item): a failure adds one
    /// atomically (one write) and returns the new length, a success reads the run and sets it
    /// back to zero only when it is not already (a read, and a write only after failures).
    pub(super) async fn count_attempt(
        &self,
        job_id: &str,
        failed: bool,
    ) -> Result<u32, StoreError> {
        let key = failures_key(key_part("job id", job_id)?);
        if failed {
            let update = "ADD #failed_in_a_row :one";
            let out = self
                .client
                .update_item()
                .table_name(&self.chunks)
                .set_key(Some(key))
                .update_expression(update)
                .set_expression_attribute_names(names(&[update]))
                .set_expression_attribute_values(values([(":one", n(1))]))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
                .send()
                .await
                .map_err(|e| backend("UpdateItem failure run", e))?;
            return out
                .attributes()
                .and_then(|a| a.get("failed_in_a_row"))
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or_else(|| {
                    StoreError::Backend(format!("job '{job_id}': failure run came back unreadable"))
                });
        }
        // Only a run in progress is written back to zero, and whether one is in progress is
        // read first: a refused conditional write is billed as a write, and most successes
        // follow successes. (A failure counted between the read and the write came after
        // this success: leaving it counted is right.)
        let run = self
            .client
            .get_item()
            .table_name(&self.chunks)
            .set_key(Some(key.clone()))
            .consistent_read(true)
            .projection_expression("#f")
            .expression_attribute_names("#f", "failed_in_a_row")
            .send()
            .await
            .map_err(|e| backend("GetItem failure run", e))?;
        let in_progress = run
            .item()
            .and_then(|i| i.get("failed_in_a_row"))
            .and_then(|v| v.as_n().ok())
            .is_some_and(|v| v != "0");
        if !in_progress {
            return Ok(0);
        }
        update_if(
            &self.client,
            &self.chunks,
            key,
            "SET #failed_in_a_row = :zero",
            "#failed_in_a_row > :zero",
            values([(":zero", n(0))]),
            "UpdateItem failure run",
        )
        .await
        .map(|_| 0)
    }

    /// Items of a job's partition whose `sk` starts with `prefix` (empty: all of them).
    async fn job_items(
        &self,
        job_id: &str,
        prefix: &str,
        keys_only: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let key = if prefix.is_empty() {
            "#job_id = :j"
        } else {
            "#job_id = :j AND begins_with(#sk, :p)"
        };
        let projection = keys_only.then_some("#job_id, #sk");
        let mut vals = vec![(":j", s(job_id))];
        if !prefix.is_empty() {
            vals.push((":p", s(prefix)));
        }
        let q = self
            .client
            .query()
            .table_name(&self.chunks)
            .consistent_read(true)
            .key_condition_expression(key)
            .set_projection_expression(projection.map(str::to_string))
            .set_expression_attribute_names(names(&[key, projection.unwrap_or("")]))
            .set_expression_attribute_values(values(vals));
        query_all(q, "Query job items").await
    }

    pub(super) async fn save_results(
        &self,
        job_id: &str,
        results: &[ChunkVerification],
    ) -> Result<(), StoreError> {
        let job_id = key_part("job id", job_id)?;
        let generation = new_generation();
        // Nobody else writes under a fresh generation: plain batched puts are safe.
        let items = results
            .iter()
            .map(|v| result_item(job_id, &generation, v))
            .collect();
        batch_put(&self.client, &self.chunks, items).await?;
        // The commit point: readers follow the pointer, which only moves to a later
        // generation (a pointer without `gen_at` predates the rule and is replaced).
        let at = generation_at(&generation);
        let cond = "attribute_not_exists(#gen_at) OR #gen_at < :at";
        let switched = self
            .client
            .put_item()
            .table_name(&self.chunks)
            .set_item(Some(pointer_item(job_id, &generation, results.len())))
            .condition_expression(cond)
            .set_expression_attribute_names(names(&[cond]))
            .set_expression_attribute_values(values([(":at", super::super::codec::n(at))]))
            .send()
            .await;
        match switched {
            Ok(_) => {
                self.delete_generations(job_id, |g| generation_at(g) < at)
                    .await
            }
            // A save that started later has switched already: its results replace these.
            Err(e) if is_condition_failed(&e) => {
                self.delete_generations(job_id, |g| g == generation).await
            }
            Err(e) => Err(backend("PutItem verification pointer", e)),
        }
    }

    /// Deletes the results of the job's generations that `stale` picks.
    async fn delete_generations(
        &self,
        job_id: &str,
        stale: impl Fn(&str) -> bool,
    ) -> Result<(), StoreError> {
        let items = self.job_items(job_id, &results_prefix(), true).await?;
        let doomed: Vec<Item> = items
            .into_iter()
            .filter(|i| {
                Fields::new(i, "verification result")
                    .s(SK)
                    .ok()
                    .and_then(generation_of)
                    .is_some_and(&stale)
            })
            .collect();
        batch_delete(&self.client, &self.chunks, keys_of(&doomed)).await
    }

    /// The current generation's results, sorted like SQLite's (table, then chunk number).
    pub(super) async fn results(&self, job_id: &str) -> Result<Vec<ChunkVerification>, StoreError> {
        if key_part("job id", job_id).is_err() {
            return Ok(Vec::new());
        }
        for round in 0..READ_ROUNDS {
            let Some(pointer) = self
                .get_chunks_item(verify_key(job_id), "GetItem verification pointer")
                .await?
            else {
                return Ok(Vec::new());
            };
            let (generation, count) = decode_pointer(&pointer)?;
            let items = self
                .job_items(job_id, &generation_prefix(&generation), false)
                .await?;
            // Fewer than the pointer promised: a newer save replaced this generation while
            // it was read. Read the new one.
            if items.len() == count {
                let mut out = items
                    .iter()
                    .map(decode_result)
                    .collect::<Result<Vec<_>, _>>()?;
                out.sort_by(|a, b| (&a.key.table, a.key.seq).cmp(&(&b.key.table, b.key.seq)));
                return Ok(out);
            }
            backoff(round).await;
        }
        Err(StoreError::Backend(format!(
            "the verification results of {job_id} kept changing while they were read"
        )))
    }

    pub(super) async fn remove_job(&self, job_id: &str) -> Result<bool, StoreError> {
        if key_part("job id", job_id).is_err() {
            return Ok(false);
        }
        let stored = self.get_stored_job(job_id).await?;
        if let Some(s) = &stored {
            self.release_range(&s.job).await?;
        }
        self.remove_alerts_of(job_id).await?;
        let (frontiers, rest): (Vec<Item>, Vec<Item>) = self
            .job_items(job_id, "", true)
            .await?
            .into_iter()
            .partition(|i| {
                Fields::new(i, "job item")
                    .s(SK)
                    .is_ok_and(|sk| sk.starts_with(FRONTIER_PREFIX))
            });
        batch_delete(&self.client, &self.chunks, rest).await?;
        if stored.is_none() {
            // What a removal cut short left behind (or hints of a job never stored).
            batch_delete(&self.client, &self.chunks, frontiers).await?;
            return Ok(false);
        }
        self.remove_job_and_frontiers(job_id, frontiers).await
    }

    /// The last step: the job item and its frontiers in one transaction. False when another
    /// removal took the job item first.
    async fn remove_job_and_frontiers(
        &self,
        job_id: &str,
        mut frontiers: Vec<Item>,
    ) -> Result<bool, StoreError> {
        if frontiers.len() >= TXN_ITEMS {
            let extra = frontiers.split_off(TXN_ITEMS - 1);
            batch_delete(&self.client, &self.chunks, extra).await?;
        }
        let cond = "attribute_exists(#job_id)";
        let built = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Backend(e.to_string());
        let mut items = vec![
            TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.jobs)
                        .set_key(Some(job_key(job_id)))
                        .condition_expression(cond)
                        .set_expression_attribute_names(names(&[cond]))
                        .build()
                        .map_err(built)?,
                )
                .build(),
        ];
        for key in &frontiers {
            items.push(
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.chunks)
                            .set_key(Some(key.clone()))
                            .build()
                            .map_err(built)?,
                    )
                    .build(),
            );
        }
        match transact(&self.client, items, "TransactWriteItems remove job").await? {
            Txn::Committed => Ok(true),
            Txn::Refused(_) => {
                batch_delete(&self.client, &self.chunks, frontiers).await?;
                Ok(false)
            }
        }
    }

    async fn remove_alerts_of(&self, job_id: &str) -> Result<(), StoreError> {
        let key = "#job_id = :pk";
        let filter = "#alert_job = :job";
        let projection = "#job_id, #sk";
        let q = self
            .client
            .query()
            .table_name(&self.chunks)
            .consistent_read(true)
            .key_condition_expression(key)
            .filter_expression(filter)
            .projection_expression(projection)
            .set_expression_attribute_names(names(&[key, filter, projection]))
            .set_expression_attribute_values(values([(":pk", s(ALERTS)), (":job", s(job_id))]));
        let alerts = query_all(q, "Query alerts of a job").await?;
        batch_delete(&self.client, &self.chunks, alerts).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::codec::frontier_key;
    use super::*;

    #[test]
    fn generations_are_distinct_key_parts() {
        let a = new_generation();
        let b = new_generation();
        assert_ne!(a, b);
        assert!(key_part("generation", &a).is_ok());
        // Frontier items are not verification items: removal tells them apart by prefix.
        assert!(!generation_prefix(&a).starts_with(FRONTIER_PREFIX));
        assert!(frontier_key("j", "tickets")[SK] == s("table#tickets"));
    }
}
