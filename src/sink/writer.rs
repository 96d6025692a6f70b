//! PartWriter: validates and de-duplicates pages, flattens them into one RecordBatch each and
//! streams the batches into an in-memory Parquet file (zstd) that becomes one part.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::iter::repeat_n;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow_select::filter::filter_record_batch;
use bytes::Bytes;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::coerce::{json_type, mismatch, to_i64, to_timestamp};
use super::encoder::Encoder;
use super::flatten::Flattener;
use super::lite::{Json, RecordsAt, for_each_record};
use super::lookup::{FieldPath, KeyHash};
use super::{ChunkMeta, EncodedPart, RawSink, SinkError};
use crate::config::{ColumnType, EndpointDef};

/// Rows per Parquet row group. The row group being built is held in memory (pages,
/// dictionaries, buffered dictionary keys, one zstd context per column): 8192 rows of
/// ~2.5 KB tickets hold ~7 MB, 16384 rows twice that, for ~2 % better compression.
pub const MAX_ROW_GROUP_ROWS: usize = 8_192;
/// Rows after which a data page is closed even when small (bounds buffered dictionary keys).
const PAGE_ROWS: usize = 4_096;
/// Target size of one uncompressed data page, and the dictionary size before falling back
/// to plain encoding; also bounds each column's zstd window and workspace.
const PAGE_BYTES: usize = 256 * 1024;

/// How a table's records are keyed: the id and the incremental value, read and checked.
struct RecordKeys {
    table: String,
    id_field: String,
    id_path: FieldPath,
    id_kind: ColumnType,
    incremental_field: String,
    incremental_path: FieldPath,
}

impl RecordKeys {
    fn invalid(
        &self,
        position: usize,
        id: Option<String>,
        column: &str,
        reason: String,
    ) -> SinkError {
        SinkError::InvalidRecord {
            table: self.table.clone(),
            position,
            id,
            column: column.to_owned(),
            reason,
        }
    }

    /// Reads and checks the id and incremental value of the record at `pos` of its page.
    fn key(&self, pos: usize, rec: &Json<'_>) -> Result<(IdKey<'static>, i64), SinkError> {
        let Json::Obj(obj) = rec else {
            let reason = format!("expected a JSON object, found {}", json_type(rec));
            return Err(self.invalid(pos, None, "(record)", reason));
        };
        let id_col = self.id_field.as_str();
        let id = match self.id_path.find(obj) {
            None | Some(Json::Null) => None,
            Some(v) => Some(match (self.id_kind, v) {
                (ColumnType::Int64, _) => to_i64(v)
                    .map_err(|r| self.invalid(pos, None, id_col, r.to_string()))?
                    .map(IdKey::Int),
                (_, Json::Str(s)) if s.is_empty() => None,
                (_, Json::Str(s)) => Some(IdKey::Str(Cow::Owned(s.to_string()))),
                (_, Json::I64(_) | Json::U64(_) | Json::F64(_) | Json::Bool(_)) => {
                    Some(IdKey::Str(Cow::Owned(v.to_string())))
                }
                _ => {
                    let reason = mismatch("string", v).to_string();
                    return Err(self.invalid(pos, None, id_col, reason));
                }
            }),
        };
        let Some(Some(id)) = id else {
            let reason = "the id field is missing, null or empty".to_owned();
            return Err(self.invalid(pos, None, id_col, reason));
        };
        let inc_col = self.incremental_field.as_str();
        let updated = match self.incremental_path.find(obj).map(to_timestamp) {
            Some(Ok(Some(t))) => t,
            Some(Err(reason)) => {
                let reason = reason.to_string();
                return Err(self.invalid(pos, Some(id.text()), inc_col, reason));
            }
            None | Some(Ok(None)) => {
                let reason = "the incremental field is missing, null or empty".to_owned();
                return Err(self.invalid(pos, Some(id.text()), inc_col, reason));
            }
        };
        Ok((id, updated))
    }
}

/// Metadata columns appended after the declared ones, in this order.
pub const META_COLUMNS: [&str; 8] = [
    "_avesa_tenant_id",
    "_avesa_service",
    "_avesa_table",
    "_avesa_job_id",
    "_avesa_chunk_start",
    "_avesa_chunk_end",
    "_avesa_ingested_at",
    "_avesa_extra",
];

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn arrow_type(kind: ColumnType) -> DataType {
    match kind {
        ColumnType::String | ColumnType::Json => DataType::Utf8,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Timestamp => timestamp_type(),
    }
}

/// The Arrow schema of a table's raw files: declared columns, then the metadata columns.
pub fn raw_schema(endpoint: &EndpointDef) -> Schema {
    let mut fields: Vec<Field> = endpoint
        .columns
        .iter()
        .map(|c| Field::new(&c.name, arrow_type(c.kind), true))
        .collect();
    for name in &META_COLUMNS[..4] {
        fields.push(Field::new(*name, DataType::Utf8, false));
    }
    for name in &META_COLUMNS[4..7] {
        fields.push(Field::new(*name, timestamp_type(), false));
    }
    fields.push(Field::new(META_COLUMNS[7], DataType::Utf8, true));
    Schema::new(fields)
}

fn writer_properties(endpoint: &EndpointDef) -> Result<WriterProperties, SinkError> {
    let level = ZstdLevel::try_new(1).map_err(|e| SinkError::Encode(e.to_string()))?;
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_data_page_size_limit(PAGE_BYTES)
        .set_dictionary_page_size_limit(PAGE_BYTES)
        .set_column_dictionary_enabled(ColumnPath::from(META_COLUMNS[7]), false);
    // The metadata columns hold one value per part (a dictionary of one entry and run
    // lengths) and numbers, times and flags are small beside the text: compressing them gains
    // little, and every compressed column holds a zstd compressor and decompressor (~0.4 MB)
    // while its row group is encoded.
    for name in &META_COLUMNS[..7] {
        props = props.set_column_compression(ColumnPath::from(*name), Compression::UNCOMPRESSED);
    }
    for c in endpoint
        .columns
        .iter()
        .filter(|c| c.kind == ColumnType::Bool)
    {
        props = props
            .set_column_compression(ColumnPath::from(c.name.as_str()), Compression::UNCOMPRESSED);
    }
    // Free-form JSON rarely repeats: a dictionary would only cost time before falling back.
    for c in endpoint
        .columns
        .iter()
        .filter(|c| c.kind == ColumnType::Json)
    {
        props = props.set_column_dictionary_enabled(ColumnPath::from(c.name.as_str()), false);
    }
    Ok(props.build())
}

/// A record id as used for de-duplication.
#[derive(Debug, PartialEq, Eq, Hash)]
enum IdKey<'a> {
    Int(i64),
    Str(Cow<'a, str>),
}

impl IdKey<'_> {
    fn text(&self) -> String {
        match self {
            IdKey::Int(i) => i.to_string(),
            IdKey::Str(s) => s.to_string(),
        }
    }
}

/// The same value repeated for the metadata columns, cached and sliced per page.
struct Constants {
    len: usize,
    arrays: Vec<ArrayRef>,
}

/// Encodes the pages of one chunk into Parquet parts.
pub struct PartWriter {
    meta: ChunkMeta,
    schema: SchemaRef,
    encoder: Encoder,
    flattener: Flattener,
    keys: RecordKeys,
    /// Rows of the last page: the builders' capacity for the next one.
    last_page_rows: usize,
    part_rows: u64,
    constants: Constants,
    /// Set when encoding failed: the current part has lost data, so it must never be
    /// finished; every later call reports this error (start a new PartWriter).
    poisoned: Option<String>,
}

impl PartWriter {
    pub(crate) fn new(meta: ChunkMeta, endpoint: &EndpointDef) -> Result<Self, SinkError> {
        let bad =
            |what: String| SinkError::Encode(format!("endpoint '{}': {what}", endpoint.table_name));
        let id_kind = match endpoint.column(&endpoint.id_field).map(|c| c.kind) {
            Some(k @ (ColumnType::Int64 | ColumnType::String)) => k,
            Some(k) => return Err(bad(format!("id field '{}' is {k:?}", endpoint.id_field))),
            None => {
                return Err(bad(format!(
                    "id field '{}' is not declared",
                    endpoint.id_field
                )));
            }
        };
        if endpoint.column(&endpoint.incremental_field).map(|c| c.kind)
            != Some(ColumnType::Timestamp)
        {
            return Err(bad(format!(
                "incremental field '{}' is not a declared timestamp column",
                endpoint.incremental_field
            )));
        }
        let columns: Vec<(String, ColumnType)> = endpoint
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.kind))
            .collect();
        let schema = Arc::new(raw_schema(endpoint));
        Ok(PartWriter {
            encoder: Encoder::new(schema.clone(), writer_properties(endpoint)?),
            schema,
            flattener: Flattener::new(&columns),
            keys: RecordKeys {
                table: meta.table.clone(),
                id_field: endpoint.id_field.clone(),
                id_path: FieldPath::new(&endpoint.id_field),
                id_kind,
                incremental_field: endpoint.incremental_field.clone(),
                incremental_path: FieldPath::new(&endpoint.incremental_field),
            },
            last_page_rows: 0,
            part_rows: 0,
            constants: Constants {
                len: 0,
                arrays: Vec::new(),
            },
            poisoned: None,
            meta,
        })
    }

    /// Validates, de-duplicates (by id within this page, keeping the greatest incremental
    /// value; on a tie the later record), flattens and appends one page. Returns rows appended.
    ///
    /// A page with any invalid record is refused whole: nothing of it is appended.
    pub fn append_page(&mut self, records: Vec<serde_json::Value>) -> Result<usize, SinkError> {
        let body = serde_json::to_vec(&records).map_err(|e| self.encode_error(e.to_string()))?;
        self.append_json(&body, RecordsAt::Body)
    }

    /// Like `append_page`, reading the records straight from a page body: strings are
    /// borrowed from `body`, and each record is checked and flattened as soon as it is
    /// parsed, so no tree of the whole page is ever built.
    pub fn append_json(&mut self, body: &[u8], at: RecordsAt) -> Result<usize, SinkError> {
        self.check_poisoned()?;
        let mut keys: Vec<(IdKey<'static>, i64)> = Vec::with_capacity(self.last_page_rows);
        let mut refused: Option<SinkError> = None;
        self.flattener.begin_page(self.last_page_rows);
        let (flattener, check) = (&mut self.flattener, &self.keys);
        let parsed = for_each_record(body, at, &mut |rec| {
            let pos = keys.len();
            let key = match check.key(pos, &rec) {
                Ok(key) => key,
                Err(e) => {
                    refused = Some(e);
                    return Err(());
                }
            };
            let Json::Obj(obj) = &rec else {
                unreachable!("checked by key()")
            };
            if let Err(e) = flattener.append(obj) {
                refused = Some(check.invalid(pos, Some(key.0.text()), &e.column, e.reason));
                return Err(());
            }
            keys.push(key);
            Ok(())
        });
        if let Some(e) = refused {
            self.flattener.begin_page(0);
            return Err(e);
        }
        if let Err(e) = parsed {
            self.flattener.begin_page(0);
            return Err(SinkError::Malformed {
                table: self.meta.table.clone(),
                reason: e.to_string(),
                truncated: e.is_eof(),
            });
        }
        let parsed_rows = keys.len();
        self.last_page_rows = parsed_rows;
        if parsed_rows == 0 {
            return Ok(0);
        }
        let (mut arrays, extra) = self.flattener.finish_page();
        arrays.reserve(META_COLUMNS.len());

        arrays.extend(self.constants(parsed_rows));
        arrays.push(extra);
        let mut batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| self.encode_error(format!("building a batch: {e}")))?;
        // A record repeated in the page: only its newest version stays.
        if let Some(keep) = dedupe(&keys) {
            batch = filter_record_batch(&batch, &BooleanArray::from(keep))
                .map_err(|e| self.encode_error(format!("dropping repeated records: {e}")))?;
        }
        let rows = batch.num_rows();
        if let Err(e) = self.encoder.write(batch) {
            return Err(self.poison(e));
        }
        self.part_rows += rows as u64;
        Ok(rows)
    }

    fn encode_error(&self, e: impl std::fmt::Display) -> SinkError {
        SinkError::Encode(format!("table '{}': {e}", self.meta.table))
    }

    fn poison(&mut self, e: impl std::fmt::Display) -> SinkError {
        let err = self.encode_error(e);
        self.poisoned = Some(err.to_string());
        err
    }

    fn check_poisoned(&self) -> Result<(), SinkError> {
        match &self.poisoned {
            Some(e) => Err(SinkError::Encode(format!("an earlier page failed: {e}"))),
            None => Ok(()),
        }
    }

    /// The metadata columns (all but `_avesa_extra`) for `rows` rows.
    fn constants(&mut self, rows: usize) -> Vec<ArrayRef> {
        if self.constants.len < rows {
            let len = rows.max(1024);
            let m = &self.meta;
            let text =
                |s: &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(repeat_n(s, len))) };
            let time = |t: i64| -> ArrayRef {
                Arc::new(TimestampMicrosecondArray::from(vec![t; len]).with_timezone("UTC"))
            };
            self.constants = Constants {
                len,
                arrays: vec![
                    text(&m.tenant_id),
                    text(m.service.as_str()),
                    text(&m.table),
                    text(&m.job_id),
                    time(m.window.start.timestamp_micros()),
                    time(m.window.end.timestamp_micros()),
                    time(m.ingested_at.timestamp_micros()),
                ],
            };
        }
        self.constants
            .arrays
            .iter()
            .map(|a| a.slice(0, rows))
            .collect()
    }

    /// Every page becomes a row group of its own: between pages the writer holds only
    /// encoded bytes, not a row group's column encoders (a zstd context per column). For a
    /// window that waits for its next page beside other windows with parts open.
    pub fn row_group_per_page(mut self) -> Self {
        self.encoder = self.encoder.row_group_per_batch();
        self
    }

    /// Rows appended to the current part.
    pub fn buffered_rows(&self) -> usize {
        self.part_rows as usize
    }

    /// Approximate memory held for the current part: the encoded bytes so far, the row group
    /// being encoded (pages, dictionaries, buffered keys) and a batch waiting to be encoded.
    pub fn buffered_bytes(&self) -> usize {
        self.encoder.buffered_bytes()
    }

    /// Encodes what was appended since the last call as one complete Parquet file (zstd) for
    /// `part`; None when nothing was appended. Resets for the next part.
    pub fn finish_part(&mut self, part: u32) -> Result<Option<EncodedPart>, SinkError> {
        self.check_poisoned()?;
        if self.part_rows == 0 {
            return Ok(None);
        }
        let rows = std::mem::take(&mut self.part_rows);
        let mut buf = match self.encoder.finish() {
            Ok(buf) => buf,
            Err(e) => return Err(self.poison(e)),
        };
        if buf.capacity() - buf.len() > buf.len() / 8 {
            buf.shrink_to_fit();
        }
        Ok(Some(EncodedPart {
            path: RawSink::part_path(&self.meta, part),
            bytes: Bytes::from(buf),
            rows,
        }))
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn meta(&self) -> &ChunkMeta {
        &self.meta
    }
}

/// Which records survive de-duplication; `None` when every id is distinct.
fn dedupe(keys: &[(IdKey<'_>, i64)]) -> Option<Vec<bool>> {
    let mut best: HashMap<&IdKey<'_>, usize, KeyHash> =
        HashMap::with_capacity_and_hasher(keys.len(), KeyHash::default());
    let mut duplicates = false;
    for (i, (id, updated)) in keys.iter().enumerate() {
        match best.entry(id) {
            Entry::Vacant(v) => {
                v.insert(i);
            }
            Entry::Occupied(mut o) => {
                duplicates = true;
                if *updated >= keys[*o.get()].1 {
                    o.insert(i);
                }
            }
        }
    }
    duplicates.then(|| {
        keys.iter()
            .enumerate()
            .map(|(i, (id, _))| best[id] == i)
            .collect()
    })
}
