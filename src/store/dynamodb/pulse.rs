//! The pulse counters on DynamoDB: one item per (bucket, tenant, service, job) in the chunks
//! table's partition `pulse#counters` (job ids have no `#`, so it is never a job's), with
//! `sk = {bucket:012}#{tenant}#{service}#{job}`: the buckets sort by time, so "since T" is one
//! Query on a key range and pruning one Query below it. An increment is one `UpdateItem` with
//! `ADD` (no read, no condition, no conflict with another writer of the bucket).

use super::DynamoStore;
use super::codec::{Fields, Item, SK, chunks_key, n, s};
use super::io::{backend, batch_delete, names, query_all, values};
use crate::store::StoreError;
use crate::store::pulse::{PulseCounts, PulseRow};

/// The partition of every pulse item.
const PARTITION: &str = "pulse#counters";
/// Increments in flight at once during a flush.
const IN_FLIGHT: usize = 8;

fn sk_of(bucket: i64) -> String {
    format!("{:012}", bucket.max(0))
}

fn key(r: &PulseRow) -> Result<Item, StoreError> {
    for (what, v) in [("tenant id", &r.tenant_id), ("job id", &r.job_id)] {
        if v.is_empty() || v.contains('#') {
            return Err(StoreError::Backend(format!(
                "cannot store the pulse of {what} '{v}' in DynamoDB: it must be non-empty without '#'"
            )));
        }
    }
    Ok(chunks_key(
        PARTITION,
        format!(
            "{}#{}#{}#{}",
            sk_of(r.bucket),
            r.tenant_id,
            r.service,
            r.job_id
        ),
    ))
}

fn decode(item: &Item) -> Result<PulseRow, StoreError> {
    let f = Fields::new(item, "pulse item");
    Ok(PulseRow {
        tenant_id: f.s("tenant")?.to_string(),
        service: f.parsed("service")?,
        job_id: f.s("job")?.to_string(),
        bucket: f.n("bucket")?,
        counts: PulseCounts {
            requests: f.n("requests")?,
            rate_limited: f.n("rate_limited")?,
            records: f.n("records")?,
        },
    })
}

impl DynamoStore {
    async fn add_one(&self, r: &PulseRow) -> Result<(), StoreError> {
        let update = "SET #tenant = :tenant, #service = :service, #job = :job, #bucket = :bucket \
                      ADD #requests :requests, #rate_limited :limited, #records :records";
        let c = &r.counts;
        self.client
            .update_item()
            .table_name(&self.chunks)
            .set_key(Some(key(r)?))
            .update_expression(update)
            .set_expression_attribute_names(names(&[update]))
            .set_expression_attribute_values(values([
                (":tenant", s(r.tenant_id.as_str())),
                (":service", s(r.service.as_str())),
                (":job", s(r.job_id.as_str())),
                (":bucket", n(r.bucket)),
                (":requests", n(c.requests)),
                (":limited", n(c.rate_limited)),
                (":records", n(c.records)),
            ]))
            .send()
            .await
            .map_err(|e| backend("UpdateItem pulse", e))?;
        Ok(())
    }

    pub(super) async fn add_pulse_items(&self, rows: &[PulseRow]) -> Result<(), StoreError> {
        for group in rows.chunks(IN_FLIGHT) {
            let mut writes = Vec::with_capacity(group.len());
            for r in group {
                writes.push(self.add_one(r));
            }
            futures::future::try_join_all(writes).await?;
        }
        Ok(())
    }

    /// The pulse items on one side of `bucket`: at or after it, or (`below`) before it.
    async fn pulse_items(&self, bucket: i64, below: bool) -> Result<Vec<Item>, StoreError> {
        let cond = if below {
            "#job_id = :p AND #sk < :b"
        } else {
            "#job_id = :p AND #sk >= :b"
        };
        let q = self
            .client
            .query()
            .table_name(&self.chunks)
            .key_condition_expression(cond)
            .set_expression_attribute_names(names(&[cond]))
            .set_expression_attribute_values(values([
                (":p", s(PARTITION)),
                (":b", s(sk_of(bucket))),
            ]));
        query_all(q, "Query pulse").await
    }

    pub(super) async fn pulse_items_since(&self, since: i64) -> Result<Vec<PulseRow>, StoreError> {
        let items = self.pulse_items(since, false).await?;
        items.iter().map(decode).collect()
    }

    pub(super) async fn prune_pulse_items(&self, before: i64) -> Result<u64, StoreError> {
        let items = self.pulse_items(before, true).await?;
        let keys: Vec<Item> = items
            .into_iter()
            .filter_map(|i| Some(chunks_key(PARTITION, i.get(SK)?.as_s().ok()?.clone())))
            .collect();
        let gone = keys.len() as u64;
        batch_delete(&self.client, &self.chunks, keys).await?;
        Ok(gone)
    }
}
