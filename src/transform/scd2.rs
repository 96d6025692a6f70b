//! The SCD Type 2 builder: pure functions from mapped versions to a history with effective
//! dates, one current row per record, and unchanged versions folded into the earliest.
//!
//! Input rows are versions `(record id, version time, values)`. The same version may have
//! landed more than once (a sync overlapping a backfill, a re-run): one is kept per
//! `(id, time)`, the most recently ingested. A version whose values hash the same as the
//! version before it says nothing new and is dropped, so the earlier one stays in effect.
//! Each kept version is in effect from its own time until the next kept version's time; the
//! last one is current (`effective_end` null). Nothing in the output depends on the clock or
//! on input order, so the same raw data always gives the same rows in the same order.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::Serialize;

use super::TransformError;
use super::mapping::{
    MAPPED_FIRST_VALUE, MAPPED_ID, MAPPED_ID_NUM, MAPPED_INGESTED, MAPPED_JOB, MAPPED_START,
    arrow_type, mapped_schema, timestamp_type,
};
use crate::config::CanonicalTable;

/// What the builder needs besides the rows.
#[derive(Clone, Debug)]
pub struct Scd2Context<'a> {
    pub tenant_id: &'a str,
    pub service: &'a str,
    pub source_table: &'a str,
    pub table: &'a CanonicalTable,
    /// Canonical columns left out of the record hash: the ones holding the version time
    /// itself, which differs between versions by definition.
    pub unhashed: Vec<String>,
}

/// Counts of one build.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Scd2Stats {
    /// Versions read from raw.
    pub rows_in: u64,
    /// Versions that had landed more than once (same id and time).
    pub duplicates: u64,
    /// Versions whose values were unchanged from the version before them.
    pub unchanged: u64,
    /// Rows written: the history.
    pub versions: u64,
    /// Distinct records, each with exactly one current row.
    pub records: u64,
}

/// The canonical output schema: identity, the mapped columns, then the SCD2 columns.
pub fn output_schema(table: &CanonicalTable) -> SchemaRef {
    let mut fields = vec![
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("source_service", DataType::Utf8, false),
        Field::new("source_table", DataType::Utf8, false),
        Field::new("record_id", DataType::Utf8, false),
    ];
    fields.extend(
        table
            .columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.kind), true)),
    );
    fields.extend([
        Field::new("effective_start", timestamp_type(), false),
        Field::new("effective_end", timestamp_type(), true),
        Field::new("is_current", DataType::Boolean, false),
        Field::new("record_hash", DataType::Utf8, false),
        Field::new("source_job_id", DataType::Utf8, true),
    ]);
    Arc::new(Schema::new(fields))
}

fn data_err(reason: impl std::fmt::Display) -> TransformError {
    TransformError::Data {
        origin: "scd2".into(),
        reason: reason.to_string(),
    }
}

/// Hashes each row's hashed columns: a tag per value (null or not), then the value's bytes,
/// strings prefixed by their length so `("ab","c")` and `("a","bc")` differ.
fn row_hashes(batch: &RecordBatch, hashed: &[usize]) -> Vec<u128> {
    let mut buf = Vec::with_capacity(256);
    (0..batch.num_rows())
        .map(|row| {
            buf.clear();
            for &c in hashed {
                let col = batch.column(c);
                if col.is_null(row) {
                    buf.push(0);
                    continue;
                }
                buf.push(1);
                let any = col.as_any();
                if let Some(a) = any.downcast_ref::<StringArray>() {
                    let v = a.value(row).as_bytes();
                    buf.extend_from_slice(&(v.len() as u64).to_le_bytes());
                    buf.extend_from_slice(v);
                } else if let Some(a) = any.downcast_ref::<Int64Array>() {
                    buf.extend_from_slice(&a.value(row).to_le_bytes());
                } else if let Some(a) = any.downcast_ref::<Float64Array>() {
                    buf.extend_from_slice(&a.value(row).to_bits().to_le_bytes());
                } else if let Some(a) = any.downcast_ref::<BooleanArray>() {
                    buf.push(u8::from(a.value(row)));
                } else if let Some(a) = any.downcast_ref::<TimestampMicrosecondArray>() {
                    buf.extend_from_slice(&a.value(row).to_le_bytes());
                }
            }
            twox_hash::XxHash3_128::oneshot(&buf)
        })
        .collect()
}

/// Builds the history of one service's records of one canonical table.
pub fn build(
    mapped: &[RecordBatch],
    ctx: &Scd2Context<'_>,
) -> Result<(RecordBatch, Scd2Stats), TransformError> {
    let schema = mapped_schema(ctx.table);
    let all = arrow_select::concat::concat_batches(&schema, mapped).map_err(data_err)?;
    let n = all.num_rows();
    let ids = all
        .column(MAPPED_ID)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| data_err("record_id is not text"))?;
    let nums = all
        .column(MAPPED_ID_NUM)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| data_err("record_num is not int64"))?;
    let ts = |c: usize| {
        all.column(c)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| data_err("a time column is not a timestamp"))
    };
    let (starts, ingested) = (ts(MAPPED_START)?, ts(MAPPED_INGESTED)?);
    let jobs = all
        .column(MAPPED_JOB)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| data_err("source_job_id is not text"))?;
    let hashed: Vec<usize> = ctx
        .table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| !ctx.unhashed.contains(&c.name))
        .map(|(i, _)| MAPPED_FIRST_VALUE + i)
        .collect();
    let hashes = row_hashes(&all, &hashed);

    let id_cmp = |a: usize, b: usize| -> Ordering {
        match (nums.is_null(a), nums.is_null(b)) {
            (false, false) => nums.value(a).cmp(&nums.value(b)),
            _ => ids.value(a).cmp(ids.value(b)),
        }
    };
    let ingested_at = |i: usize| (!ingested.is_null(i)).then(|| ingested.value(i));
    let job = |i: usize| (!jobs.is_null(i)).then(|| jobs.value(i));
    let mut order: Vec<usize> = (0..n).collect();
    // Id, then time; among copies of one version the latest ingested first; the rest only
    // makes the order total, so input order never shows through.
    order.sort_unstable_by(|&a, &b| {
        id_cmp(a, b)
            .then_with(|| starts.value(a).cmp(&starts.value(b)))
            .then_with(|| ingested_at(b).cmp(&ingested_at(a)))
            .then_with(|| hashes[a].cmp(&hashes[b]))
            .then_with(|| job(a).cmp(&job(b)))
    });

    let mut stats = Scd2Stats {
        rows_in: n as u64,
        ..Scd2Stats::default()
    };
    let mut kept: Vec<usize> = Vec::with_capacity(n);
    let mut last: Option<usize> = None;
    for &r in &order {
        if let Some(l) = last
            && id_cmp(l, r) == Ordering::Equal
            && starts.value(l) == starts.value(r)
        {
            stats.duplicates += 1;
            continue;
        }
        last = Some(r);
        if let Some(&k) = kept.last()
            && id_cmp(k, r) == Ordering::Equal
            && hashes[k] == hashes[r]
        {
            stats.unchanged += 1;
            continue;
        }
        kept.push(r);
    }

    let mut ends: Vec<Option<i64>> = Vec::with_capacity(kept.len());
    for (i, &r) in kept.iter().enumerate() {
        let next = kept
            .get(i + 1)
            .filter(|&&nx| id_cmp(r, nx) == Ordering::Equal);
        ends.push(next.map(|&nx| starts.value(nx)));
    }
    stats.versions = kept.len() as u64;
    stats.records = ends.iter().filter(|e| e.is_none()).count() as u64;

    let take_idx = UInt32Array::from(kept.iter().map(|&i| i as u32).collect::<Vec<_>>());
    let take = |c: usize| -> Result<ArrayRef, TransformError> {
        arrow_select::take::take(all.column(c).as_ref(), &take_idx, None).map_err(data_err)
    };
    let rows = kept.len();
    let constant = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v; rows])) };
    let mut columns: Vec<ArrayRef> = vec![
        constant(ctx.tenant_id),
        constant(ctx.service),
        constant(ctx.source_table),
        take(MAPPED_ID)?,
    ];
    for i in 0..ctx.table.columns.len() {
        columns.push(take(MAPPED_FIRST_VALUE + i)?);
    }
    columns.push(take(MAPPED_START)?);
    columns.push(Arc::new(
        TimestampMicrosecondArray::from(ends.clone()).with_timezone("UTC"),
    ));
    columns.push(Arc::new(
        ends.iter()
            .map(|e| Some(e.is_none()))
            .collect::<BooleanArray>(),
    ));
    columns.push(Arc::new(
        kept.iter()
            .map(|&r| Some(format!("{:032x}", hashes[r])))
            .collect::<StringArray>(),
    ));
    columns.push(take(MAPPED_JOB)?);
    let out = RecordBatch::try_new(output_schema(ctx.table), columns).map_err(data_err)?;
    Ok((out, stats))
}
