//! The cloud fleet's admission queue on DynamoDB: one item in the chunks table, in a partition
//! of its own (`job_id = fleet#admission`, `sk = fleet`; job ids have no `#`), holding the
//! entries as JSON and a write counter `v`. A write is a put conditional on the counter read
//! (or on there being no item), so of two admitters that read the same queue only one writes.

use super::DynamoStore;
use super::codec::{Fields, Item, chunks_key, n, s};
use super::io::backend;
use crate::store::{FleetEntry, FleetQueue, StoreError};

fn fleet_key() -> Item {
    chunks_key("fleet#admission", "fleet".into())
}

fn decode(item: &Item) -> Result<FleetQueue, StoreError> {
    let f = Fields::new(item, "fleet queue");
    let entries = serde_json::from_str(f.s("entries")?)
        .map_err(|e| StoreError::Backend(format!("fleet queue item, entries: {e}")))?;
    Ok(FleetQueue {
        version: f.n("v")?,
        entries,
    })
}

impl DynamoStore {
    pub(super) async fn read_fleet(&self) -> Result<FleetQueue, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.chunks)
            .set_key(Some(fleet_key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem fleet queue", e))?;
        Ok(out
            .item
            .as_ref()
            .map(decode)
            .transpose()?
            .unwrap_or_default())
    }

    pub(super) async fn write_fleet(
        &self,
        entries: &[FleetEntry],
        expected: u64,
    ) -> Result<bool, StoreError> {
        let body = serde_json::to_string(entries)
            .map_err(|e| StoreError::Backend(format!("fleet queue: {e}")))?;
        let mut item = fleet_key();
        item.insert("entries".into(), s(body));
        item.insert("v".into(), n(expected + 1));
        let read = (expected > 0).then_some(expected);
        self.put_if_unchanged(item, read, "PutItem fleet queue")
            .await
    }
}
