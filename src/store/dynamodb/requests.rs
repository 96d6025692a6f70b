//! Counts the DynamoDB requests a client sends, by operation, and the items its reads bring
//! back: an SDK interceptor, so every request is counted however the store makes it (retried
//! attempts included, as DynamoDB bills them). `DynamoStore::from_config` attaches one; tests
//! and the request measurement read it through `DynamoStore::requests`.
//!
//! Writes are PutItem, UpdateItem, DeleteItem, BatchWriteItem and TransactWriteItems (a refused
//! conditional write is still a write: DynamoDB bills it); reads are GetItem, BatchGetItem,
//! Query, Scan and TransactGetItems. Items read count what the reads returned, which is what
//! grows with a job's size when something reads more than it needs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::scan::ScanOutput;

const WRITES: [&str; 5] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
];
const READS: [&str; 5] = [
    "GetItem",
    "BatchGetItem",
    "Query",
    "Scan",
    "TransactGetItems",
];

/// What a client has sent so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Requests per operation (`UpdateItem`, `Query`, ...).
    pub by_operation: BTreeMap<String, u64>,
    /// Items the reads returned.
    pub items_read: u64,
}

impl RequestCounts {
    fn sum(&self, ops: &[&str]) -> u64 {
        ops.iter().filter_map(|op| self.by_operation.get(*op)).sum()
    }

    pub fn writes(&self) -> u64 {
        self.sum(&WRITES)
    }

    pub fn reads(&self) -> u64 {
        self.sum(&READS)
    }

    /// What was sent between `earlier` and this snapshot.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        let by_operation = self
            .by_operation
            .iter()
            .map(|(op, n)| {
                let before = earlier.by_operation.get(op).copied().unwrap_or(0);
                (op.clone(), n.saturating_sub(before))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        RequestCounts {
            by_operation,
            items_read: self.items_read.saturating_sub(earlier.items_read),
        }
    }
}

/// The interceptor; clones share one count.
#[derive(Clone, Debug, Default)]
pub struct RequestCounter(Arc<Mutex<RequestCounts>>);

impl RequestCounter {
    pub fn snapshot(&self) -> RequestCounts {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// A client on `config` whose requests this counter counts.
    pub fn client(&self, config: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::config::Builder::from(config)
            .interceptor(self.clone())
            .build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }

    fn update(&self, f: impl FnOnce(&mut RequestCounts)) {
        if let Ok(mut c) = self.0.lock() {
            f(&mut c);
        }
    }
}

/// Items a read's answer holds (0 for anything else).
fn items_in(context: &AfterDeserializationInterceptorContextRef<'_>) -> u64 {
    let Ok(out) = context.output_or_error() else {
        return 0;
    };
    if let Some(q) = out.downcast_ref::<QueryOutput>() {
        return q.count.max(0) as u64;
    }
    if let Some(s) = out.downcast_ref::<ScanOutput>() {
        return s.count.max(0) as u64;
    }
    if let Some(g) = out.downcast_ref::<GetItemOutput>() {
        return u64::from(g.item.is_some());
    }
    if let Some(b) = out.downcast_ref::<BatchGetItemOutput>() {
        return b
            .responses
            .as_ref()
            .map_or(0, |r| r.values().map(|v| v.len() as u64).sum());
    }
    0
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context.request().headers().get("x-amz-target");
        let op = target
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("other")
            .to_string();
        self.update(|c| *c.by_operation.entry(op).or_default() += 1);
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let n = items_in(context);
        self.update(|c| c.items_read += n);
        Ok(())
    }
}
