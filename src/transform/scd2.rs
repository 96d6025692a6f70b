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
    TimestampMicrosecondArray,
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

impl Scd2Stats {
    /// Adds the counts of a build over other records.
    pub fn add(&mut self, other: &Scd2Stats) {
        self.rows_in += other.rows_in;
        self.duplicates += other.duplicates;
        self.unchanged += other.unchanged;
        self.versions += other.versions;
        self.records += other.records;
    }
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
fn row_hashes(batch: &RecordBatch, hashed: &[usize], out: &mut Vec<u128>) {
    let mut buf = Vec::with_capacity(256);
    for row in 0..batch.num_rows() {
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
        out.push(twox_hash::XxHash3_128::oneshot(&buf));
    }
}

/// The history as positions into the mapped batches, in output order, with each kept
/// version's end. Holds no copy of the values: `Scd2Plan::emit` gathers them in slices.
pub struct Scd2Plan {
    /// `(batch, row)` of each kept version, sorted by (id, effective start).
    kept: Vec<(usize, usize)>,
    ends: Vec<Option<i64>>,
    hashes: Vec<u128>,
    pub stats: Scd2Stats,
}

fn typed<'a, T: 'static>(
    b: &'a RecordBatch,
    c: usize,
    what: &str,
) -> Result<&'a T, TransformError> {
    b.column(c)
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| data_err(format!("{what} has the wrong type")))
}

/// The mapped columns `plan` reads from one batch.
struct Cols<'a> {
    ids: &'a StringArray,
    nums: &'a Int64Array,
    starts: &'a TimestampMicrosecondArray,
    ingested: &'a TimestampMicrosecondArray,
    jobs: &'a StringArray,
}

/// Every mapped row, numbered across batches, with its content hash.
struct Rows<'a> {
    cols: Vec<Cols<'a>>,
    /// (batch, row) of each number.
    at: Vec<(usize, usize)>,
    hashes: Vec<u128>,
}

impl<'a> Rows<'a> {
    fn read(mapped: &'a [RecordBatch], ctx: &Scd2Context<'_>) -> Result<Self, TransformError> {
        let hashed: Vec<usize> = ctx
            .table
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| !ctx.unhashed.contains(&c.name))
            .map(|(i, _)| MAPPED_FIRST_VALUE + i)
            .collect();
        let mut rows = Rows {
            cols: Vec::with_capacity(mapped.len()),
            at: Vec::new(),
            hashes: Vec::new(),
        };
        for (b, batch) in mapped.iter().enumerate() {
            rows.cols.push(Cols {
                ids: typed(batch, MAPPED_ID, "record_id")?,
                nums: typed(batch, MAPPED_ID_NUM, "record_num")?,
                starts: typed(batch, MAPPED_START, "effective_start")?,
                ingested: typed(batch, MAPPED_INGESTED, "ingested_at")?,
                jobs: typed(batch, MAPPED_JOB, "source_job_id")?,
            });
            rows.at.extend((0..batch.num_rows()).map(|r| (b, r)));
            row_hashes(batch, &hashed, &mut rows.hashes);
        }
        Ok(rows)
    }

    fn id_cmp(&self, a: usize, b: usize) -> Ordering {
        let ((ba, ra), (bb, rb)) = (self.at[a], self.at[b]);
        let (ca, cb) = (&self.cols[ba], &self.cols[bb]);
        match (ca.nums.is_null(ra), cb.nums.is_null(rb)) {
            (false, false) => ca.nums.value(ra).cmp(&cb.nums.value(rb)),
            _ => ca.ids.value(ra).cmp(cb.ids.value(rb)),
        }
    }

    fn start(&self, i: usize) -> i64 {
        let (b, r) = self.at[i];
        self.cols[b].starts.value(r)
    }

    fn ingested_at(&self, i: usize) -> Option<i64> {
        let (b, r) = self.at[i];
        let c = &self.cols[b].ingested;
        (!c.is_null(r)).then(|| c.value(r))
    }

    fn job(&self, i: usize) -> Option<&str> {
        let (b, r) = self.at[i];
        let c = self.cols[b].jobs;
        (!c.is_null(r)).then(|| c.value(r))
    }

    /// Id, then time; among copies of one version the latest ingested first; the rest only
    /// makes the order total, so input order never shows through.
    fn sorted(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.at.len()).collect();
        order.sort_unstable_by(|&a, &b| {
            self.id_cmp(a, b)
                .then_with(|| self.start(a).cmp(&self.start(b)))
                .then_with(|| self.ingested_at(b).cmp(&self.ingested_at(a)))
                .then_with(|| self.hashes[a].cmp(&self.hashes[b]))
                .then_with(|| self.job(a).cmp(&self.job(b)))
        });
        order
    }

    /// The versions that stay, in `order`: a second copy of a version (same id and start) is
    /// a duplicate, a version whose content equals the one before it is unchanged.
    fn versions(&self, order: &[usize], stats: &mut Scd2Stats) -> Vec<usize> {
        let mut kept: Vec<usize> = Vec::with_capacity(order.len());
        let mut last: Option<usize> = None;
        for &r in order {
            if let Some(l) = last
                && self.id_cmp(l, r) == Ordering::Equal
                && self.start(l) == self.start(r)
            {
                stats.duplicates += 1;
                continue;
            }
            last = Some(r);
            if let Some(&k) = kept.last()
                && self.id_cmp(k, r) == Ordering::Equal
                && self.hashes[k] == self.hashes[r]
            {
                stats.unchanged += 1;
                continue;
            }
            kept.push(r);
        }
        kept
    }
}

/// Decides the history of one service's records: which versions stay and until when.
pub fn plan(mapped: &[RecordBatch], ctx: &Scd2Context<'_>) -> Result<Scd2Plan, TransformError> {
    let rows = Rows::read(mapped, ctx)?;
    let mut stats = Scd2Stats {
        rows_in: rows.at.len() as u64,
        ..Scd2Stats::default()
    };
    let kept = rows.versions(&rows.sorted(), &mut stats);
    // A version ends where the next version of the same record starts.
    let ends: Vec<Option<i64>> = kept
        .iter()
        .enumerate()
        .map(|(i, &r)| {
            kept.get(i + 1)
                .filter(|&&nx| rows.id_cmp(r, nx) == Ordering::Equal)
                .map(|&nx| rows.start(nx))
        })
        .collect();
    stats.versions = kept.len() as u64;
    stats.records = ends.iter().filter(|e| e.is_none()).count() as u64;
    Ok(Scd2Plan {
        hashes: kept.iter().map(|&i| rows.hashes[i]).collect(),
        kept: kept.into_iter().map(|i| rows.at[i]).collect(),
        ends,
        stats,
    })
}

/// What a merge compares of a history row with the row of the same (id, start) it had.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct RowState<'a> {
    pub end: Option<i64>,
    pub hash: u128,
    pub job: Option<&'a str>,
}

impl Scd2Plan {
    /// Output row `i`'s record id, effective start and `RowState` (its `is_current` is its
    /// end being null), read from the mapped batches without gathering the row.
    pub(crate) fn row_state<'m>(
        &self,
        mapped: &'m [RecordBatch],
        i: usize,
    ) -> Result<(&'m str, i64, RowState<'m>), TransformError> {
        let (b, r) = self.kept[i];
        let batch = &mapped[b];
        let id = typed::<StringArray>(batch, MAPPED_ID, "record_id")?.value(r);
        let start = typed::<TimestampMicrosecondArray>(batch, MAPPED_START, "effective_start")?;
        let jobs = typed::<StringArray>(batch, MAPPED_JOB, "source_job_id")?;
        let state = RowState {
            end: self.ends[i],
            hash: self.hashes[i],
            job: (!jobs.is_null(r)).then(|| jobs.value(r)),
        };
        Ok((id, start.value(r), state))
    }

    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Output rows `range` of the history, gathered from the mapped batches.
    pub fn emit(
        &self,
        mapped: &[RecordBatch],
        ctx: &Scd2Context<'_>,
        range: std::ops::Range<usize>,
    ) -> Result<RecordBatch, TransformError> {
        let picks = &self.kept[range.clone()];
        let rows = picks.len();
        let gather = |c: usize| -> Result<ArrayRef, TransformError> {
            if mapped.is_empty() {
                return Ok(arrow_array::new_empty_array(
                    mapped_schema(ctx.table).field(c).data_type(),
                ));
            }
            let arrays: Vec<&dyn Array> = mapped.iter().map(|b| b.column(c).as_ref()).collect();
            arrow_select::interleave::interleave(&arrays, picks).map_err(data_err)
        };
        let constant = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v; rows])) };
        let ends = &self.ends[range.clone()];
        let mut columns: Vec<ArrayRef> = vec![
            constant(ctx.tenant_id),
            constant(ctx.service),
            constant(ctx.source_table),
            gather(MAPPED_ID)?,
        ];
        for i in 0..ctx.table.columns.len() {
            columns.push(gather(MAPPED_FIRST_VALUE + i)?);
        }
        columns.push(gather(MAPPED_START)?);
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(ends.to_vec()).with_timezone("UTC"),
        ));
        columns.push(Arc::new(
            ends.iter()
                .map(|e| Some(e.is_none()))
                .collect::<BooleanArray>(),
        ));
        columns.push(Arc::new(
            self.hashes[range]
                .iter()
                .map(|h| Some(format!("{h:032x}")))
                .collect::<StringArray>(),
        ));
        columns.push(gather(MAPPED_JOB)?);
        RecordBatch::try_new(output_schema(ctx.table), columns).map_err(data_err)
    }
}

/// Builds the whole history of one service's records as one batch.
pub fn build(
    mapped: &[RecordBatch],
    ctx: &Scd2Context<'_>,
) -> Result<(RecordBatch, Scd2Stats), TransformError> {
    let p = plan(mapped, ctx)?;
    let out = p.emit(mapped, ctx, 0..p.len())?;
    Ok((out, p.stats))
}

/// A bucket's history (its current rows, resolved: `resolve`) read back as mapped versions,
/// to be planned again with new ones: each row a version of its record from its
/// `effective_start`, with no ingest time (a copy of the same version that lands again wins
/// over it). `numeric`: the source's ids are whole numbers, so the id's number is read back
/// from its text.
pub(crate) fn history_as_versions(
    history: &[RecordBatch],
    table: &CanonicalTable,
    numeric: bool,
) -> Result<Vec<RecordBatch>, TransformError> {
    let err = |reason: String| TransformError::Data {
        origin: "canonical bucket file".into(),
        reason,
    };
    let expected = output_schema(table);
    let values = table.columns.len();
    // Output columns: 4 identity columns, the values, then start, end, current, hash, job.
    let (id, start, job) = (3, 4 + values, 8 + values);
    let mut out = Vec::new();
    for batch in history {
        if batch.schema().fields() != expected.fields() {
            return Err(err(format!(
                "columns {:?} are not the table's",
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
            )));
        }
        let ids = batch
            .column(id)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| err("record_id is not text".into()))?;
        let nums: ArrayRef = if numeric {
            Arc::new(
                ids.iter()
                    .map(|v| v.and_then(|v| v.parse::<i64>().ok()))
                    .collect::<Int64Array>(),
            )
        } else {
            arrow_array::new_null_array(&DataType::Int64, batch.num_rows())
        };
        let mut columns = vec![
            batch.column(id).clone(),
            nums,
            batch.column(start).clone(),
            batch.column(job).clone(),
            arrow_array::new_null_array(&timestamp_type(), batch.num_rows()),
        ];
        columns.extend((0..values).map(|i| batch.column(4 + i).clone()));
        out.push(
            RecordBatch::try_new(mapped_schema(table), columns).map_err(|e| err(e.to_string()))?,
        );
    }
    Ok(out)
}
