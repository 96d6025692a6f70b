//! Request plumbing: error mapping, expression names, batched reads, writes and deletes that retry
//! unprocessed items, paged queries and transactions that retry on conflicts.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, PutRequest, TransactWriteItem, Update,
    WriteRequest,
};
use futures::{StreamExt, TryStreamExt};
use rand::Rng;

use super::codec::Item;
use crate::store::StoreError;

/// BatchWriteItem takes at most 25 requests, BatchGetItem at most 100 keys.
const WRITE_BATCH: usize = 25;
const GET_BATCH: usize = 100;
/// Batches in flight at once while writing a job's chunks.
const WRITES_IN_FLIGHT: usize = 4;
/// Rounds of unprocessed items (or transaction conflicts) before giving up: with the
/// backoff below that is about 15 s of a throttled table.
const MAX_ROUNDS: u32 = 12;

pub(super) const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

pub(super) fn backend<E, R>(what: &str, e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    StoreError::Backend(format!("DynamoDB {what}: {}", DisplayErrorContext(&e)))
}

pub(super) fn is_condition_failed<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.code() == Some(CONDITION_FAILED)
}

/// One conditional UpdateItem: true when it applied, false when `cond` did not hold.
/// Every `#name` in `update` and `cond` is bound to the attribute of that name.
pub(super) async fn update_if(
    client: &Client,
    table: &str,
    key: Item,
    update: &str,
    cond: &str,
    vals: Option<HashMap<String, AttributeValue>>,
    what: &str,
) -> Result<bool, StoreError> {
    match client
        .update_item()
        .table_name(table)
        .set_key(Some(key))
        .update_expression(update)
        .condition_expression(cond)
        .set_expression_attribute_names(names(&[update, cond]))
        .set_expression_attribute_values(vals)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_condition_failed(&e) => Ok(false),
        Err(e) => Err(backend(what, e)),
    }
}

/// The transaction item that applies `update` to the item at `key` if `cond` holds: what
/// `update_if` does alone, as one write of a transaction.
pub(super) fn update_item(
    table: &str,
    key: Item,
    update: &str,
    cond: &str,
    vals: Option<HashMap<String, AttributeValue>>,
) -> Result<TransactWriteItem, StoreError> {
    let u = Update::builder()
        .table_name(table)
        .set_key(Some(key))
        .update_expression(update)
        .condition_expression(cond)
        .set_expression_attribute_names(names(&[update, cond]))
        .set_expression_attribute_values(vals)
        .build()
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(TransactWriteItem::builder().update(u).build())
}

/// Sleeps before retry round `round`: exponential from 20 ms, capped at 2 s, with full
/// jitter so that racing writers that collided do not collide again in step.
pub(super) async fn backoff(round: u32) {
    let cap = 20u64.saturating_mul(1 << round.min(7)).min(2_000);
    let ms = rand::rng().random_range(cap / 2..=cap);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// `#name` placeholders for every attribute an expression mentions.
///
/// Many attribute names (`status`, `count`, `table`, `records`...) are DynamoDB reserved
/// words; writing every name as `#name` and deriving the map from the expressions keeps
/// the expression text readable and the map exact (DynamoDB rejects unused names).
pub(super) fn names(exprs: &[&str]) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    for expr in exprs {
        let mut rest = *expr;
        while let Some(at) = rest.find('#') {
            let tail = &rest[at + 1..];
            let len = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            out.insert(format!("#{}", &tail[..len]), tail[..len].to_string());
            rest = &tail[len..];
        }
    }
    (!out.is_empty()).then_some(out)
}

pub(super) fn values<'a>(
    pairs: impl IntoIterator<Item = (&'a str, AttributeValue)>,
) -> Option<HashMap<String, AttributeValue>> {
    let map: HashMap<String, AttributeValue> =
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    (!map.is_empty()).then_some(map)
}

/// Reads every page of a query.
pub(super) async fn query_all(q: QueryFluentBuilder, what: &str) -> Result<Vec<Item>, StoreError> {
    let mut out = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let page = q
            .clone()
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| backend(what, e))?;
        out.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(out),
        }
    }
}

/// Strongly consistent BatchGetItem of `keys` from one table; missing items are left out.
pub(super) async fn batch_get(
    client: &Client,
    table: &str,
    keys: Vec<Item>,
) -> Result<Vec<Item>, StoreError> {
    let mut out = Vec::with_capacity(keys.len());
    for group in keys.chunks(GET_BATCH) {
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(group.to_vec()))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))?,
        );
        let mut round = 0;
        while let Some(request) = pending.take() {
            let res = client
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .map_err(|e| backend("BatchGetItem", e))?;
            if let Some(mut found) = res.responses {
                out.extend(found.remove(table).unwrap_or_default());
            }
            pending = res
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .filter(|k| !k.keys.is_empty());
            if pending.is_some() {
                round += 1;
                if round > MAX_ROUNDS {
                    return Err(StoreError::Backend(format!(
                        "DynamoDB BatchGetItem on {table}: keys still unprocessed after {MAX_ROUNDS} rounds"
                    )));
                }
                backoff(round).await;
            }
        }
    }
    Ok(out)
}

/// Writes `items` with BatchWriteItem, 25 per request, a few requests in flight, retrying
/// UnprocessedItems (DynamoDB returns them when a partition is throttled) with backoff.
///
/// Puts here are unconditional, so callers only write items nobody else can hold yet.
pub(super) async fn batch_put(
    client: &Client,
    table: &str,
    items: Vec<Item>,
) -> Result<(), StoreError> {
    let mut requests = Vec::with_capacity(items.len());
    for item in items {
        let put = PutRequest::builder()
            .set_item(Some(item))
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        requests.push(WriteRequest::builder().put_request(put).build());
    }
    write_all(client, table, requests).await
}

/// Deletes the items with these keys, batched like `batch_put`; keys of missing items are
/// fine. Unconditional too: callers delete only what nobody may still need.
pub(super) async fn batch_delete(
    client: &Client,
    table: &str,
    keys: Vec<Item>,
) -> Result<(), StoreError> {
    let mut requests = Vec::with_capacity(keys.len());
    for key in keys {
        let delete = DeleteRequest::builder()
            .set_key(Some(key))
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        requests.push(WriteRequest::builder().delete_request(delete).build());
    }
    write_all(client, table, requests).await
}

async fn write_all(
    client: &Client,
    table: &str,
    requests: Vec<WriteRequest>,
) -> Result<(), StoreError> {
    let batches: Vec<Vec<WriteRequest>> = requests
        .chunks(WRITE_BATCH)
        .map(<[WriteRequest]>::to_vec)
        .collect();
    futures::stream::iter(batches)
        .map(|requests| write_batch(client, table, requests))
        .buffer_unordered(WRITES_IN_FLIGHT)
        .try_collect::<()>()
        .await
}

async fn write_batch(
    client: &Client,
    table: &str,
    mut requests: Vec<WriteRequest>,
) -> Result<(), StoreError> {
    let mut round = 0;
    loop {
        let res = client
            .batch_write_item()
            .request_items(table, requests)
            .send()
            .await
            .map_err(|e| backend("BatchWriteItem", e))?;
        requests = res
            .unprocessed_items
            .and_then(|mut u| u.remove(table))
            .unwrap_or_default();
        if requests.is_empty() {
            return Ok(());
        }
        round += 1;
        if round > MAX_ROUNDS {
            return Err(StoreError::Backend(format!(
                "DynamoDB BatchWriteItem on {table}: {} items still unprocessed after {MAX_ROUNDS} rounds",
                requests.len()
            )));
        }
        backoff(round).await;
    }
}

/// How a transaction ended when it did not fail outright.
#[derive(Debug)]
pub(super) enum Txn {
    Committed,
    /// A condition did not hold; one reason code per item, in request order
    /// (`"None"` for items that were fine, `"ConditionalCheckFailed"` for the culprits).
    Refused(Vec<String>),
}

impl Txn {
    pub(super) fn refused(&self, index: usize) -> bool {
        matches!(self, Txn::Refused(codes) if codes.get(index).is_some_and(|c| c == "ConditionalCheckFailed"))
    }
}

/// Runs TransactWriteItems, retrying when it collided with another transaction on the same
/// items (a `TransactionConflict` is about timing, not about our conditions).
pub(super) async fn transact(
    client: &Client,
    items: Vec<TransactWriteItem>,
    what: &str,
) -> Result<Txn, StoreError> {
    let mut round = 0;
    loop {
        let err = match client
            .transact_write_items()
            .set_transact_items(Some(items.clone()))
            .send()
            .await
        {
            Ok(_) => return Ok(Txn::Committed),
            Err(e) => e,
        };
        let codes: Vec<String> = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(c)) => c
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_string())
                .collect(),
            _ => return Err(backend(what, err)),
        };
        if codes.iter().any(|c| c == "ConditionalCheckFailed") {
            return Ok(Txn::Refused(codes));
        }
        let transient = codes.iter().all(|c| {
            matches!(
                c.as_str(),
                "None"
                    | "TransactionConflict"
                    | "ThrottlingError"
                    | "ProvisionedThroughputExceeded"
            )
        });
        round += 1;
        if !transient || round > MAX_ROUNDS {
            return Err(StoreError::Backend(format!(
                "DynamoDB {what}: transaction cancelled ({})",
                codes.join(", ")
            )));
        }
        backoff(round).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_come_from_the_expressions() {
        let got = names(&[
            "#status = :running AND #lease_owner = :owner",
            "SET #v = #v + :one",
        ])
        .unwrap();
        let mut keys: Vec<_> = got.iter().map(|(k, v)| format!("{k}={v}")).collect();
        keys.sort();
        assert_eq!(keys, ["#lease_owner=lease_owner", "#status=status", "#v=v"]);
        assert_eq!(names(&["attribute_not_exists(job_id)"]), None);
    }
}
