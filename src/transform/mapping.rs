//! Raw batch → mapped batch: picks the raw columns a canonical table needs, casts them to the
//! canonical types, and adds the version's identity (record id, version time, lineage).

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, new_null_array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::TransformError;
use crate::config::{CanonicalTable, ColumnType, EndpointDef, SourceMapping};

/// Leading columns of a mapped batch, before the canonical ones.
pub(crate) const MAPPED_ID: usize = 0;
/// The id as a number when the source's ids are whole numbers (sorts 999 before 1000).
pub(crate) const MAPPED_ID_NUM: usize = 1;
pub(crate) const MAPPED_START: usize = 2;
pub(crate) const MAPPED_JOB: usize = 3;
pub(crate) const MAPPED_INGESTED: usize = 4;
pub(crate) const MAPPED_FIRST_VALUE: usize = 5;

pub(crate) fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub(crate) fn arrow_type(kind: ColumnType) -> DataType {
    match kind {
        ColumnType::String | ColumnType::Json => DataType::Utf8,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Timestamp => timestamp_type(),
    }
}

/// The schema every mapped batch of `table` has, whatever service it came from.
pub fn mapped_schema(table: &CanonicalTable) -> SchemaRef {
    let mut fields = vec![
        Field::new("record_id", DataType::Utf8, false),
        Field::new("record_num", DataType::Int64, true),
        Field::new("effective_start", timestamp_type(), false),
        Field::new("source_job_id", DataType::Utf8, true),
        Field::new("ingested_at", timestamp_type(), true),
    ];
    fields.extend(
        table
            .columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.kind), true)),
    );
    Arc::new(Schema::new(fields))
}

/// The raw columns `map_raw` reads, for a projected Parquet read.
pub fn raw_columns_needed(endpoint: &EndpointDef, src: &SourceMapping) -> Vec<String> {
    let mut cols = vec![
        endpoint.id_field.clone(),
        endpoint.incremental_field.clone(),
        "_avesa_job_id".to_string(),
        "_avesa_ingested_at".to_string(),
    ];
    for raw in src.columns.values() {
        if !cols.contains(raw) {
            cols.push(raw.clone());
        }
    }
    cols
}

/// Maps one raw batch of `endpoint` to `table`'s mapped schema. Rows without an id or a
/// version time cannot be placed in a history and are refused with the file's name.
pub fn map_raw(
    batch: &RecordBatch,
    table: &CanonicalTable,
    src: &SourceMapping,
    endpoint: &EndpointDef,
    origin: &str,
) -> Result<RecordBatch, TransformError> {
    let rows = batch.num_rows();
    let column = |name: &str| batch.column_by_name(name);
    let id = column(&endpoint.id_field).ok_or_else(|| TransformError::Data {
        origin: origin.to_string(),
        reason: format!("no id column '{}'", endpoint.id_field),
    })?;
    if id.null_count() > 0 {
        return Err(TransformError::Data {
            origin: origin.to_string(),
            reason: format!("null ids in column '{}'", endpoint.id_field),
        });
    }
    let record_num: ArrayRef = match id.as_any().downcast_ref::<Int64Array>() {
        Some(n) => Arc::new(n.clone()),
        None => new_null_array(&DataType::Int64, rows),
    };
    let record_id = cast(id, ColumnType::String, origin, &endpoint.id_field)?;
    let start = column(&endpoint.incremental_field).ok_or_else(|| TransformError::Data {
        origin: origin.to_string(),
        reason: format!("no update-time column '{}'", endpoint.incremental_field),
    })?;
    let start = cast(
        start,
        ColumnType::Timestamp,
        origin,
        &endpoint.incremental_field,
    )?;
    if start.null_count() > 0 {
        return Err(TransformError::Data {
            origin: origin.to_string(),
            reason: format!(
                "null update times in column '{}'",
                endpoint.incremental_field
            ),
        });
    }
    let meta = |name: &str, kind: ColumnType| -> Result<ArrayRef, TransformError> {
        match column(name) {
            Some(a) => cast(a, kind, origin, name),
            None => Ok(new_null_array(&arrow_type(kind), rows)),
        }
    };
    let mut columns: Vec<ArrayRef> = vec![
        record_id,
        record_num,
        start,
        meta("_avesa_job_id", ColumnType::String)?,
        meta("_avesa_ingested_at", ColumnType::Timestamp)?,
    ];
    for c in &table.columns {
        let array = match src
            .columns
            .get(&c.name)
            .and_then(|raw| column(raw).map(|a| (raw, a)))
        {
            Some((raw, a)) => cast(a, c.kind, origin, raw)?,
            // Not mapped for this service, or missing from an older raw file.
            None => new_null_array(&arrow_type(c.kind), rows),
        };
        columns.push(array);
    }
    RecordBatch::try_new(mapped_schema(table), columns).map_err(|e| TransformError::Data {
        origin: origin.to_string(),
        reason: e.to_string(),
    })
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// Converts a raw array to a canonical type (the conversions `config::castable` allows).
fn cast(
    array: &ArrayRef,
    to: ColumnType,
    origin: &str,
    name: &str,
) -> Result<ArrayRef, TransformError> {
    let target = arrow_type(to);
    if array.data_type() == &target {
        return Ok(array.clone());
    }
    let any = array.as_any();
    let out: Option<ArrayRef> = match to {
        ColumnType::String | ColumnType::Json => {
            let text = |f: &dyn Fn(usize) -> String| -> ArrayRef {
                Arc::new(
                    (0..array.len())
                        .map(|i| (!array.is_null(i)).then(|| f(i)))
                        .collect::<StringArray>(),
                )
            };
            if let Some(a) = any.downcast_ref::<Int64Array>() {
                Some(text(&|i| a.value(i).to_string()))
            } else if let Some(a) = any.downcast_ref::<Float64Array>() {
                Some(text(&|i| a.value(i).to_string()))
            } else if let Some(a) = any.downcast_ref::<BooleanArray>() {
                Some(text(&|i| a.value(i).to_string()))
            } else if let Some(a) = any.downcast_ref::<TimestampMicrosecondArray>() {
                Some(text(&|i| rfc3339(a.value(i))))
            } else {
                None
            }
        }
        ColumnType::Float64 => any.downcast_ref::<Int64Array>().map(|a| {
            Arc::new(
                a.iter()
                    .map(|v| v.map(|v| v as f64))
                    .collect::<Float64Array>(),
            ) as ArrayRef
        }),
        // Timestamps written without the zone annotation are still UTC microseconds.
        ColumnType::Timestamp => any
            .downcast_ref::<TimestampMicrosecondArray>()
            .map(|a| Arc::new(a.clone().with_timezone("UTC")) as ArrayRef),
        _ => None,
    };
    out.ok_or_else(|| TransformError::Data {
        origin: origin.to_string(),
        reason: format!(
            "column '{name}' is {} and cannot become {to:?}",
            array.data_type()
        ),
    })
}
