//! Merge-on-read: a bucket's rows are its base file's and its delta files' rows resolved by
//! one rule, here and nowhere else: **per (record_id, effective_start), the row with the
//! highest `_generation` wins.** Every file row carries the generation of the file it was
//! written in (`GENERATION_COLUMN`); a delta re-emits a closed version under its own, higher
//! generation, so the closed row replaces the base's current one.
//!
//! `resolve` is the rule as a pure function over record batches; `read_bucket` and
//! `read_current` read a bucket's or a table's current rows through its manifest. They
//! return the canonical columns (`scd2::output_schema`), without the generation: the
//! generation says which file a row came from, not what the table holds, so an incremental
//! table and a full build of the same raw data read the same rows.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use object_store::ObjectStore;
use object_store::path::Path;

use super::TransformError;
use super::layout::{self, BucketFile};
use crate::domain::Service;

/// The column of the generation a file row was written in. A leading underscore marks it as
/// the layout's, not a canonical column (as the raw files' `_avesa_*` columns are), and needs
/// no quoting in DuckDB or pyarrow expressions.
pub const GENERATION_COLUMN: &str = "_generation";

/// A canonical schema with the generation column after the canonical ones: the files' schema.
pub fn file_schema(canonical: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = canonical.fields().iter().map(|f| (**f).clone()).collect();
    fields.push(Field::new(GENERATION_COLUMN, DataType::Int64, false));
    Arc::new(Schema::new(fields))
}

/// `batch` (canonical columns) with every row's generation `generation` appended.
pub fn with_generation(
    batch: &RecordBatch,
    generation: u64,
) -> Result<RecordBatch, TransformError> {
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(Int64Array::from(vec![
        generation as i64;
        batch.num_rows()
    ])));
    RecordBatch::try_new(file_schema(&batch.schema()), columns).map_err(err)
}

fn err(e: impl std::fmt::Display) -> TransformError {
    TransformError::Data {
        origin: "canonical bucket files".into(),
        reason: e.to_string(),
    }
}

pub(crate) fn column<'a, T: 'static>(
    b: &'a RecordBatch,
    name: &str,
) -> Result<&'a T, TransformError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| err(format!("no {name} column of the expected type")))
}

/// One file row's key: its record id (and the id's number, when it is one), start, generation.
struct Key<'a> {
    num: Option<i64>,
    id: &'a str,
    start: i64,
    generation: i64,
    at: (usize, usize),
}

/// Ids in the order the history is written: numbers by value, text otherwise.
fn id_order(a: &Key<'_>, b: &Key<'_>) -> Ordering {
    match (a.num, b.num) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.id.cmp(b.id),
    }
}

/// The rule: of the rows of `batches` (files' rows, each with `GENERATION_COLUMN`), per
/// (record_id, effective_start) the one of the highest generation, sorted by record id
/// (numerically when ids are numbers) and effective start, in the canonical columns (the
/// generation dropped). `None` when there are no rows.
pub fn resolve(batches: &[RecordBatch]) -> Result<Option<RecordBatch>, TransformError> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let mut keys = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        let ids = column::<StringArray>(batch, "record_id")?;
        let starts = column::<arrow_array::TimestampMicrosecondArray>(batch, "effective_start")?;
        let gens = column::<Int64Array>(batch, GENERATION_COLUMN)?;
        keys.extend((0..batch.num_rows()).map(|r| Key {
            num: ids.value(r).parse().ok(),
            id: ids.value(r),
            start: starts.value(r),
            generation: gens.value(r),
            at: (b, r),
        }));
    }
    keys.sort_unstable_by(|a, b| {
        id_order(a, b)
            .then_with(|| a.id.cmp(b.id))
            .then_with(|| a.start.cmp(&b.start))
            .then_with(|| b.generation.cmp(&a.generation))
    });
    keys.dedup_by(|later, kept| later.id == kept.id && later.start == kept.start);
    let picks: Vec<(usize, usize)> = keys.iter().map(|k| k.at).collect();
    let schema = first.schema();
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (c, field) in schema.fields().iter().enumerate() {
        if field.name() == GENERATION_COLUMN {
            continue;
        }
        let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
        columns.push(arrow_select::interleave::interleave(&arrays, &picks).map_err(err)?);
        fields.push(field.clone());
    }
    let out = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(err)?;
    Ok((out.num_rows() > 0).then_some(out))
}

/// A file's rows, each with its generation: the file's own column, or for a file of the
/// format before deltas (none), `generation` (the file's, from its name).
pub fn decode(
    bytes: Bytes,
    generation: u64,
    origin: &str,
) -> Result<Vec<RecordBatch>, TransformError> {
    let data_err = |e: &dyn std::fmt::Display| TransformError::Data {
        origin: origin.to_string(),
        reason: e.to_string(),
    };
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| data_err(&e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| data_err(&e))?;
        out.push(match batch.column_by_name(GENERATION_COLUMN) {
            Some(_) => batch,
            None => with_generation(&batch, generation)?,
        });
    }
    Ok(out)
}

/// The files of one bucket (base, then deltas), each as its bytes and generation.
pub async fn get_bucket(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    bucket: &BucketFile,
) -> Result<Vec<(Bytes, u64, String)>, TransformError> {
    let mut out = Vec::new();
    for (name, generation) in bucket.files() {
        let path = dir.clone().join(name);
        let bytes = super::get_bytes(store, &path).await?;
        out.push((bytes, generation, path.to_string()));
    }
    Ok(out)
}

/// One bucket's current rows from its files' bytes (`get_bucket`), resolved.
pub fn resolve_files(
    files: Vec<(Bytes, u64, String)>,
) -> Result<Option<RecordBatch>, TransformError> {
    let mut batches = Vec::new();
    for (bytes, generation, origin) in files {
        batches.extend(decode(bytes, generation, &origin)?);
    }
    resolve(&batches)
}

/// The current rows of one bucket of the table in `dir`.
pub async fn read_bucket(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    bucket: &BucketFile,
) -> Result<Option<RecordBatch>, TransformError> {
    resolve_files(get_bucket(store, dir, bucket).await?)
}

/// The current rows of a table, a batch per bucket in bucket order, read through its manifest
/// and resolved a bucket at a time; empty when it was never built. Every reader of canonical
/// rows in the code goes through it (or `read_bucket`).
pub async fn read_current(
    store: &Arc<dyn ObjectStore>,
    tenant_id: &str,
    table: &str,
    service: Service,
) -> Result<Vec<RecordBatch>, TransformError> {
    let Some(manifest) = layout::read_manifest(store, tenant_id, table, service).await? else {
        return Ok(Vec::new());
    };
    let dir = layout::table_dir(tenant_id, table, service);
    let mut out = Vec::new();
    for bucket in &manifest.files {
        out.extend(read_bucket(store, &dir, bucket).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{BooleanArray, TimestampMicrosecondArray};

    /// File rows of (record id, start, current, generation).
    fn rows(rows: &[(&str, i64, bool, u64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("record_id", DataType::Utf8, false),
            Field::new(
                "effective_start",
                DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("is_current", DataType::Boolean, false),
        ]));
        let canonical = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1))
                        .with_timezone("UTC"),
                ),
                Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.2)))),
            ],
        )
        .unwrap();
        let gens: Vec<i64> = rows.iter().map(|r| r.3 as i64).collect();
        let mut columns = canonical.columns().to_vec();
        columns.push(Arc::new(Int64Array::from(gens)));
        RecordBatch::try_new(file_schema(&canonical.schema()), columns).unwrap()
    }

    fn read(b: &RecordBatch) -> Vec<(String, i64, bool)> {
        let ids = column::<StringArray>(b, "record_id").unwrap();
        let starts = column::<TimestampMicrosecondArray>(b, "effective_start").unwrap();
        let current = column::<BooleanArray>(b, "is_current").unwrap();
        (0..b.num_rows())
            .map(|r| (ids.value(r).to_string(), starts.value(r), current.value(r)))
            .collect()
    }

    #[test]
    fn the_row_of_the_highest_generation_wins_per_id_and_start() {
        let base = rows(&[("10", 0, true, 3), ("2", 0, false, 3), ("2", 5, true, 3)]);
        // A delta closes 10's version at 0 and adds one; another, later, closes 2's at 5.
        let delta = rows(&[("10", 0, false, 4), ("10", 7, true, 4)]);
        let later = rows(&[("2", 5, false, 6), ("2", 9, true, 6)]);
        // Files in any order give the same rows.
        for batches in [
            vec![base.clone(), delta.clone(), later.clone()],
            vec![later.clone(), base.clone(), delta.clone()],
        ] {
            let out = resolve(&batches).unwrap().unwrap();
            assert!(
                out.column_by_name(GENERATION_COLUMN).is_none(),
                "canonical columns only"
            );
            assert_eq!(
                read(&out),
                vec![
                    ("2".into(), 0, false),
                    ("2".into(), 5, false),
                    ("2".into(), 9, true),
                    ("10".into(), 0, false),
                    ("10".into(), 7, true),
                ],
                "numeric ids in numeric order"
            );
        }
        assert_eq!(resolve(&[]).unwrap(), None);
        assert_eq!(resolve(&[rows(&[])]).unwrap(), None);
    }

    #[test]
    fn text_ids_sort_as_text_and_a_file_without_generations_gets_its_own() {
        let a = rows(&[("b", 1, true, 2), ("a", 1, true, 2)]);
        let out = resolve(&[a]).unwrap().unwrap();
        assert_eq!(read(&out)[0].0, "a");
        // A base of manifest format 1: no generation column; its file's generation is used.
        let canonical = rows(&[("a", 1, true, 0)]).project(&[0, 1, 2]).unwrap();
        let bytes = crate::transform::encode(&canonical).unwrap();
        let decoded = decode(bytes, 7, "b0000-g7.parquet").unwrap();
        let gens = column::<Int64Array>(&decoded[0], GENERATION_COLUMN).unwrap();
        assert_eq!(gens.values().to_vec(), vec![7]);
        let delta = rows(&[("a", 1, false, 8)]);
        let out = resolve(&[decoded[0].clone(), delta]).unwrap().unwrap();
        assert_eq!(read(&out), vec![("a".into(), 1, false)]);
        let bad = decode(bytes::Bytes::from_static(b"nope"), 1, "x/b0001-g1.parquet").unwrap_err();
        assert!(bad.to_string().contains("x/b0001-g1.parquet"), "{bad}");
    }
}
