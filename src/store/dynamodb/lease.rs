//! Writes by the lease holder: checkpoint, renew, release, complete, fail, and breaking a
//! dead holder's lease. Each is conditional on `status = running AND lease_owner = owner`.

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use chrono::{DateTime, Utc};

use super::DynamoStore;
use super::codec::{chunk_key, frontier_key, n, s, t};
use super::io::{Txn, backend, transact, update_if, update_item, values};
use crate::domain::{Checkpoint, ChunkKey, Job};
use crate::store::StoreError;

const HELD: &str = "#status = :running AND #lease_owner = :owner";

/// A lease holder's update, assembled from its clauses; every chunk write also bumps `v`,
/// the counter claims are conditional on.
struct Change<'a> {
    set: Vec<&'static str>,
    remove: Vec<&'static str>,
    vals: Vec<(&'static str, AttributeValue)>,
    owner: &'a str,
}

impl<'a> Change<'a> {
    fn held_by(owner: &'a str) -> Self {
        Change {
            set: Vec::new(),
            remove: Vec::new(),
            vals: Vec::new(),
            owner,
        }
    }

    fn set(mut self, clause: &'static str, name: &'static str, v: AttributeValue) -> Self {
        self.set.push(clause);
        self.vals.push((name, v));
        self
    }

    /// A clause whose values are already part of the change (`:one`).
    fn set_expr(mut self, clause: &'static str) -> Self {
        self.set.push(clause);
        self
    }

    fn remove(mut self, attrs: &[&'static str]) -> Self {
        self.remove.extend(attrs);
        self
    }

    /// Progress fields; a `None` cursor means "from the window start" and is removed.
    fn checkpoint(mut self, cp: &Checkpoint) -> Self {
        match &cp.cursor {
            Some(c) => {
                self.set.push("#cursor = :cursor");
                self.vals.push((":cursor", s(c)));
            }
            None => self.remove.push("#cursor"),
        }
        self.set("#parts = :parts", ":parts", n(cp.parts))
            .set("#records = :records", ":records", n(cp.records))
            .set("#pages = :pages", ":pages", n(cp.pages))
    }

    fn expression(&self) -> String {
        let mut e = String::new();
        if !self.set.is_empty() {
            e.push_str("SET ");
            e.push_str(&self.set.join(", "));
        }
        if !self.remove.is_empty() {
            e.push_str(" REMOVE ");
            e.push_str(&self.remove.join(", "));
        }
        e.push_str(" ADD #v :one");
        e
    }

    fn values(&self) -> Vec<(&'static str, AttributeValue)> {
        let mut vals = self.vals.clone();
        vals.extend([
            (":one", n(1)),
            (":running", s("running")),
            (":owner", s(self.owner)),
        ]);
        vals
    }

    /// The same change as one item of a transaction.
    fn transact_item(&self, table: &str, key: &ChunkKey) -> Result<TransactWriteItem, StoreError> {
        let expr = self.expression();
        update_item(table, chunk_key(key), &expr, HELD, values(self.values()))
    }
}

impl DynamoStore {
    /// Applies `change` if `owner` holds the chunk's lease; false when it does not.
    async fn apply_held(&self, key: &ChunkKey, change: Change<'_>) -> Result<bool, StoreError> {
        let expr = change.expression();
        update_if(
            &self.client,
            &self.chunks,
            chunk_key(key),
            &expr,
            HELD,
            values(change.values()),
            "UpdateItem chunk",
        )
        .await
    }

    /// Why a lease-holder write was refused: the chunk is gone, or the lease is.
    async fn refused(&self, key: &ChunkKey, owner: &str) -> StoreError {
        let found = self
            .client
            .get_item()
            .table_name(&self.chunks)
            .set_key(Some(chunk_key(key)))
            .consistent_read(true)
            .send()
            .await;
        match found {
            Ok(out) if out.item.is_none() => StoreError::ChunkNotFound(key.clone()),
            Ok(_) => StoreError::LeaseLost {
                key: key.clone(),
                owner: owner.to_string(),
            },
            Err(e) => backend("GetItem chunk", e),
        }
    }

    async fn held_or_lost(
        &self,
        key: &ChunkKey,
        owner: &str,
        change: Change<'_>,
    ) -> Result<(), StoreError> {
        if self.apply_held(key, change).await? {
            Ok(())
        } else {
            Err(self.refused(key, owner).await)
        }
    }

    pub(super) async fn save_checkpoint(
        &self,
        key: &ChunkKey,
        owner: &str,
        cp: &Checkpoint,
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let change = Change::held_by(owner).checkpoint(cp).set(
            "#lease_expires_at = :lease",
            ":lease",
            t(lease_until),
        );
        self.held_or_lost(key, owner, change).await
    }

    pub(super) async fn renew(
        &self,
        key: &ChunkKey,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let change =
            Change::held_by(owner).set("#lease_expires_at = :lease", ":lease", t(lease_until));
        self.held_or_lost(key, owner, change).await
    }

    /// Back to pending with its progress; the attempt is given back because the chunk did
    /// not fail (a running chunk has at least the attempt its claim counted).
    pub(super) async fn release(
        &self,
        key: &ChunkKey,
        owner: &str,
        cp: &Checkpoint,
    ) -> Result<(), StoreError> {
        let change = Change::held_by(owner)
            .checkpoint(cp)
            .set("#status = :pending", ":pending", s("pending"))
            .set_expr("#attempts = #attempts - :one")
            .remove(&["#lease_owner", "#lease_expires_at"]);
        self.held_or_lost(key, owner, change).await
    }

    pub(super) async fn break_held_lease(
        &self,
        key: &ChunkKey,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let change = Change::held_by(owner).set("#lease_expires_at = :now", ":now", t(now));
        self.apply_held(key, change).await
    }

    pub(super) async fn complete(
        &self,
        key: &ChunkKey,
        owner: &str,
        cp: &Checkpoint,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let change = Change::held_by(owner)
            .checkpoint(cp)
            .set("#status = :succeeded", ":succeeded", s("succeeded"))
            .set("#finished_at = :now", ":now", t(now))
            .remove(&["#lease_owner", "#lease_expires_at", "#last_error"]);
        self.finish(key, owner, change, "#succeeded", cp.records)
            .await?;
        self.settle_or_report(&key.job_id, now).await
    }

    pub(super) async fn fail(
        &self,
        key: &ChunkKey,
        owner: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        match retry_at {
            Some(at) => {
                let change = Change::held_by(owner)
                    .set("#last_error = :err", ":err", s(error))
                    .remove(&["#lease_owner", "#lease_expires_at"])
                    .set("#status = :pending", ":pending", s("pending"))
                    .set("#not_before = :at", ":at", t(at));
                self.held_or_lost(key, owner, change).await?;
            }
            None => self.fail_for_good(key, owner, error, now).await?,
        }
        self.settle_or_report(&key.job_id, now).await
    }

    /// Fails the held chunk for good and counts it on its table's frontier.
    async fn fail_for_good(
        &self,
        key: &ChunkKey,
        owner: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let change = Change::held_by(owner)
            .set("#last_error = :err", ":err", s(error))
            .remove(&["#lease_owner", "#lease_expires_at"])
            .set("#status = :failed", ":failed", s("failed"))
            .set("#finished_at = :now", ":now", t(now));
        self.finish(key, owner, change, "#failed", 0).await
    }

    /// Fails the held chunk, then every pending chunk of its table (`admin`), then settles
    /// the job: the table's failure is durable for every process and worker.
    pub(super) async fn fail_table(
        &self,
        key: &ChunkKey,
        owner: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        self.fail_for_good(key, owner, error, now).await?;
        self.fail_pending_of_table(&key.job_id, &key.table, error, now)
            .await?;
        self.settle_or_report(&key.job_id, now).await
    }

    /// Ends a chunk and counts it on its table's frontier in one transaction, so the
    /// counters can never miss or double-count a chunk, whoever crashes when.
    async fn finish(
        &self,
        key: &ChunkKey,
        owner: &str,
        change: Change<'_>,
        counter: &'static str,
        records: u64,
    ) -> Result<(), StoreError> {
        let count = format!("ADD {counter} :one, #records :records");
        let exists = "attribute_exists(#sk)";
        let frontier = update_item(
            &self.chunks,
            frontier_key(&key.job_id, &key.table),
            &count,
            exists,
            values([(":one", n(1)), (":records", n(records))]),
        )?;
        let items = vec![change.transact_item(&self.chunks, key)?, frontier];
        match transact(&self.client, items, "TransactWriteItems finish chunk").await? {
            Txn::Committed => Ok(()),
            r if r.refused(0) => Err(self.refused(key, owner).await),
            _ => Err(StoreError::Backend(format!(
                "job {} has no frontier item for table '{}'",
                key.job_id, key.table
            ))),
        }
    }
}
