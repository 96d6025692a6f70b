//! `RateStore` on DynamoDB: one item per tenant + service in the chunks table, in a partition
//! of its own (`job_id = rate#{tenant}#{service}`, `sk = rate`; job ids have no `#`, so it can
//! never be a job's partition). A change is a strongly consistent read, then a put conditional
//! on the write counter `v` read (or on there being no item), read again and retried when
//! another process wrote in between. One partition per pair keeps a busy pair's writes (at most
//! one per request, fewer under load) away from every other pair's.
//!
//! A busy pair's reservation skips the read and cannot conflict: when the schedule runs ahead of
//! now and of any pause, `reserve` starts the block at `next_slot`, which one `UpdateItem` adds
//! to atomically under exactly that condition. It is tried when the schedule this handle last
//! saw ran past now; refused (the pair went idle, or paused), the read-and-put path follows.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;

use super::DynamoStore;
use super::codec::{Fields, Item, chunks_key, n, s};
use super::io::{backend, backoff, is_condition_failed, names, values};
use crate::domain::Service;
use crate::store::StoreError;
use crate::store::rate::{RateChange, RateRow, RateStore, reserve};

/// Rounds of "another process wrote the row since we read it" before giving up.
const MAX_ROUNDS: u32 = 24;

fn rate_key(tenant_id: &str, service: Service) -> Result<Item, StoreError> {
    if tenant_id.is_empty() || tenant_id.contains('#') {
        return Err(StoreError::Backend(format!(
            "cannot store the rate row of tenant id '{tenant_id}' in DynamoDB: it must be non-empty without '#'"
        )));
    }
    Ok(chunks_key(
        &format!("rate#{tenant_id}#{service}"),
        "rate".into(),
    ))
}

fn decode(item: &Item) -> Result<(RateRow, u64), StoreError> {
    let f = Fields::new(item, "rate row");
    Ok((
        RateRow {
            next_slot_ms: f.n("next_slot_ms")?,
            paused_until_ms: f.n("paused_until_ms")?,
            failures: f.n("failures")?,
            open_until_ms: f.n("open_until_ms")?,
            probe_until_ms: f.n("probe_until_ms")?,
            opened_total: f.n("opened_total")?,
            last_failure: f.opt_s("last_failure")?.map(str::to_string),
        },
        f.n("v")?,
    ))
}

fn encode(mut item: Item, r: &RateRow, v: u64) -> Item {
    item.insert("next_slot_ms".into(), n(r.next_slot_ms));
    item.insert("paused_until_ms".into(), n(r.paused_until_ms));
    item.insert("failures".into(), n(r.failures));
    item.insert("open_until_ms".into(), n(r.open_until_ms));
    item.insert("probe_until_ms".into(), n(r.probe_until_ms));
    item.insert("opened_total".into(), n(r.opened_total));
    if let Some(reason) = &r.last_failure {
        item.insert("last_failure".into(), s(reason.as_str()));
    }
    item.insert("v".into(), n(v));
    item
}

impl DynamoStore {
    /// The busy-pair reservation: `next_slot += n·T` if `next_slot` is past now and the pause.
    /// `None` when the condition did not hold.
    async fn reserve_busy(
        &self,
        key: Item,
        now_ms: i64,
        add_ms: i64,
    ) -> Result<Option<RateRow>, StoreError> {
        self.rate_writes.fetch_add(1, Ordering::Relaxed);
        let update = "SET #next_slot_ms = #next_slot_ms + :d, #v = #v + :one";
        let cond = "#next_slot_ms >= :now AND #paused_until_ms <= #next_slot_ms";
        match self
            .client
            .update_item()
            .table_name(&self.chunks)
            .set_key(Some(key))
            .update_expression(update)
            .condition_expression(cond)
            .set_expression_attribute_names(names(&[update, cond]))
            .set_expression_attribute_values(values([
                (":d", n(add_ms)),
                (":one", n(1)),
                (":now", n(now_ms)),
            ]))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
        {
            Ok(out) => match out.attributes {
                Some(item) => Ok(Some(decode(&item)?.0)),
                None => Ok(None),
            },
            Err(e) if is_condition_failed(&e) => Ok(None),
            Err(e) => Err(backend("UpdateItem rate row", e)),
        }
    }

    fn schedule_seen(&self, pair: &str) -> Option<i64> {
        let seen = self.rate_seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(pair).copied()
    }

    fn see_schedule(&self, pair: &str, next_slot_ms: i64) {
        let mut seen = self.rate_seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(pair.to_string(), next_slot_ms);
    }

    async fn get_rate(&self, key: Item) -> Result<Option<(RateRow, u64)>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.chunks)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem rate row", e))?;
        out.item.as_ref().map(decode).transpose()
    }

    /// Puts the row if its counter is still `read` (`None`: if there is no row yet).
    async fn put_rate(&self, item: Item, read: Option<u64>) -> Result<bool, StoreError> {
        self.rate_writes.fetch_add(1, Ordering::Relaxed);
        let (cond, vals) = match read {
            None => ("attribute_not_exists(#job_id)", None),
            Some(v) => ("#v = :v", values([(":v", n(v))])),
        };
        match self
            .client
            .put_item()
            .table_name(&self.chunks)
            .set_item(Some(item))
            .condition_expression(cond)
            .set_expression_attribute_names(names(&[cond]))
            .set_expression_attribute_values(vals)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(backend("PutItem rate row", e)),
        }
    }
}

#[async_trait]
impl RateStore for DynamoStore {
    async fn read_rate(&self, tenant_id: &str, service: Service) -> Result<RateRow, StoreError> {
        let key = rate_key(tenant_id, service)?;
        Ok(self
            .get_rate(key)
            .await?
            .map(|(r, _)| r)
            .unwrap_or_default())
    }

    async fn update_rate(
        &self,
        tenant_id: &str,
        service: Service,
        mut change: RateChange,
    ) -> Result<(RateRow, RateRow), StoreError> {
        let key = rate_key(tenant_id, service)?;
        for round in 0..MAX_ROUNDS {
            let (before, read) = match self.get_rate(key.clone()).await? {
                Some((row, v)) => (row, Some(v)),
                None => (RateRow::default(), None),
            };
            let mut after = before.clone();
            change(&mut after);
            if after == before {
                return Ok((before, after));
            }
            let item = encode(key.clone(), &after, read.map_or(1, |v| v + 1));
            if self.put_rate(item, read).await? {
                return Ok((before, after));
            }
            backoff(round.min(3)).await;
        }
        Err(StoreError::Backend(format!(
            "the rate row of {tenant_id} {service} kept racing other writers"
        )))
    }

    async fn reserve_slots(
        &self,
        tenant_id: &str,
        service: Service,
        now_ms: i64,
        n: u32,
        spacing_ms: i64,
    ) -> Result<(i64, RateRow), StoreError> {
        let key = rate_key(tenant_id, service)?;
        let pair = format!("{tenant_id}#{service}");
        let add = i64::from(n) * spacing_ms;
        if self.schedule_seen(&pair).is_some_and(|end| end > now_ms)
            && let Some(after) = self.reserve_busy(key, now_ms, add).await?
        {
            self.see_schedule(&pair, after.next_slot_ms);
            return Ok((after.next_slot_ms - add, after));
        }
        let change = Box::new(move |r: &mut RateRow| {
            reserve(r, now_ms, n, spacing_ms);
        });
        let (_, after) = self.update_rate(tenant_id, service, change).await?;
        self.see_schedule(&pair, after.next_slot_ms);
        Ok((after.next_slot_ms - add, after))
    }

    fn rate_writes(&self) -> u64 {
        self.rate_writes.load(Ordering::Relaxed)
    }
}
