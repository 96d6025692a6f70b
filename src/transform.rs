//! Canonical transform: reads a tenant's raw Parquet through the sink's object store, maps
//! each service's columns to the canonical ones (`canonical/*.json`), builds SCD Type 2
//! history and writes it atomically to `{tenant_id}/canonical/{table}/{service}.parquet`.
//!
//! Backfill mode processes the whole history of each raw table every time: the output is a
//! pure function of the raw data, so a re-run (after a sync, after a crash, twice at once)
//! writes the same bytes and nothing has to remember what was already processed. Memory is
//! bounded by the size of a bucket, not of the history: a table with more raw data than one
//! bucket (`spill`) is spread over record-id buckets on local disk first, and the output is
//! written to a local file and uploaded from there.
//!
//! The steps: raw files are read projected to the mapped columns and each batch is mapped
//! (`mapping`); `scd2::plan` sorts positions `(batch, row)` by (id, start, latest ingest first),
//! drops repeated versions and folds unchanged ones; `emit` gathers `ROW_GROUP_ROWS`-row slices
//! with `interleave` straight into the Parquet writer. The raw files' total size (from the listing)
//! sets the bucket count (`spill::BUCKET_RAW_BYTES` of raw Parquet each, at most
//! `spill::MAX_BUCKETS`); with more than one, each file's mapped rows go to spill files by a hash
//! of the record id (its number when it has one), and each bucket's history is planned and written
//! on its own, so the output is in (bucket, id, start) order. The upload is one put, or a
//! multipart upload that readers see only once complete.

mod mapping;
pub mod scd2;
mod spill;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use object_store::buffered::BufWriter;
use object_store::path::{Path, PathPart};
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use crate::config::{CanonicalTable, Config, EndpointDef, SourceMapping};
use crate::domain::Service;
use crate::sink::RawSink;

pub use mapping::{map_raw, mapped_schema, raw_columns_needed};
pub use scd2::{Scd2Context, Scd2Plan, Scd2Stats, build as build_scd2, output_schema};
pub use spill::BUCKET_RAW_BYTES;

/// Rows per row group of canonical files.
const ROW_GROUP_ROWS: usize = 65_536;

/// Canonical files up to this size are put at once; larger ones go up in parts of it (S3
/// takes parts of 5 MB and more).
const UPLOAD_PART_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("unknown canonical table '{table}' (known: {known})")]
    UnknownTable { table: String, known: String },
    #[error("{origin}: {reason}")]
    Data { origin: String, reason: String },
    #[error("object store: {0}")]
    Store(String),
    #[error("parquet: {0}")]
    Parquet(String),
}

/// How much history a run processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransformMode {
    /// All raw data of each table, every time: the history is rebuilt from scratch.
    Backfill,
}

/// What to transform for one tenant.
#[derive(Clone, Debug)]
pub struct TransformRequest {
    pub tenant_id: String,
    /// Canonical table names; empty means every canonical table.
    pub tables: Vec<String>,
    /// Only these services' sources; empty means every service with raw data.
    pub services: Vec<Service>,
    pub mode: TransformMode,
}

/// The outcome for one (canonical table, service).
#[derive(Clone, Debug, Serialize)]
pub struct TransformReport {
    pub tenant_id: String,
    pub table: String,
    pub service: Service,
    pub source_table: String,
    pub mode: TransformMode,
    pub raw_files: usize,
    /// Record-id buckets the history was built in (1: all in memory at once).
    pub buckets: usize,
    #[serde(flatten)]
    pub stats: Scd2Stats,
    /// Where the history was written; `None` when the service has no raw data yet.
    pub path: Option<String>,
    pub bytes: u64,
    pub duration_ms: u64,
}

/// `{tenant_id}/canonical/{table}/{service}.parquet`
pub fn canonical_path(tenant_id: &str, table: &str, service: Service) -> Path {
    Path::from_iter([
        PathPart::from(tenant_id),
        PathPart::from("canonical"),
        PathPart::from(table),
        PathPart::from(format!("{}.parquet", service.as_str()).as_str()),
    ])
}

/// Canonical columns mapped from the raw version-time column: left out of the record hash.
fn unhashed(src: &SourceMapping, endpoint: &EndpointDef) -> Vec<String> {
    src.columns
        .iter()
        .filter(|(_, raw)| **raw == endpoint.incremental_field)
        .map(|(canonical, _)| canonical.clone())
        .collect()
}

/// Runs the transform for every requested (canonical table, service) pair of one tenant.
pub async fn run(
    config: &Config,
    sink: &RawSink,
    req: &TransformRequest,
) -> Result<Vec<TransformReport>, TransformError> {
    run_with(config, sink, req, BUCKET_RAW_BYTES).await
}

/// `run` with `bucket_raw_bytes` of raw Parquet per record-id bucket (see `spill`).
pub async fn run_with(
    config: &Config,
    sink: &RawSink,
    req: &TransformRequest,
    bucket_raw_bytes: u64,
) -> Result<Vec<TransformReport>, TransformError> {
    // Spill files of transforms killed on this host, before this one adds its own.
    let _ = tokio::task::spawn_blocking(|| spill::remove_left_over(&std::env::temp_dir())).await;
    let tables: Vec<&CanonicalTable> = if req.tables.is_empty() {
        config.canonical.iter().collect()
    } else {
        req.tables
            .iter()
            .map(|name| {
                config
                    .canonical_table(name)
                    .ok_or_else(|| TransformError::UnknownTable {
                        table: name.clone(),
                        known: config
                            .canonical
                            .iter()
                            .map(|c| c.table.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            })
            .collect::<Result<_, _>>()?
    };
    let mut reports = Vec::new();
    for table in tables {
        for (service, src) in &table.sources {
            if !req.services.is_empty() && !req.services.contains(service) {
                continue;
            }
            let Some(endpoint) = config.endpoints(*service).and_then(|e| e.find(&src.table)) else {
                continue;
            };
            reports.push(
                transform_one(sink, req, table, *service, src, endpoint, bucket_raw_bytes).await?,
            );
        }
    }
    Ok(reports)
}

#[allow(clippy::too_many_arguments)]
async fn transform_one(
    sink: &RawSink,
    req: &TransformRequest,
    table: &CanonicalTable,
    service: Service,
    src: &SourceMapping,
    endpoint: &EndpointDef,
    bucket_raw_bytes: u64,
) -> Result<TransformReport, TransformError> {
    let started = Instant::now();
    let objects = sink
        .list_table_objects(&req.tenant_id, service, &src.table)
        .await
        .map_err(|e| TransformError::Store(e.to_string()))?;
    let mut report = TransformReport {
        tenant_id: req.tenant_id.clone(),
        table: table.table.clone(),
        service,
        source_table: src.table.clone(),
        mode: req.mode,
        raw_files: objects.len(),
        buckets: 0,
        stats: Scd2Stats::default(),
        path: None,
        bytes: 0,
        duration_ms: 0,
    };
    if objects.is_empty() {
        return Ok(report);
    }
    let raw_bytes: u64 = objects.iter().map(|m| m.size).sum();
    let buckets = spill::buckets_for(raw_bytes, bucket_raw_bytes);
    report.buckets = buckets;
    let store = sink.store();
    let (table_arc, src_arc, ep_arc) = (
        Arc::new(table.clone()),
        Arc::new(src.clone()),
        Arc::new(endpoint.clone()),
    );
    // One bucket: the mapped versions stay in memory. More: each file's go to their buckets'
    // spill files as it is read.
    let mut spill = match buckets {
        1 => None,
        n => Some(spill::Spill::new(n, mapped_schema(&table_arc))?),
    };
    let mut mapped = Vec::new();
    for object in &objects {
        let bytes = get_bytes(&store, &object.location).await?;
        let maps = (table_arc.clone(), src_arc.clone(), ep_arc.clone());
        let (batches, sp) = map_object(bytes, maps, object.location.to_string(), spill).await?;
        spill = sp;
        mapped.extend(batches);
    }
    let ctx = OwnedContext {
        tenant_id: req.tenant_id.clone(),
        service,
        source_table: src.table.clone(),
        table: table_arc,
        unhashed: unhashed(src, endpoint),
    };
    let (file, stats) = tokio::task::spawn_blocking(move || write_table(&ctx, mapped, spill))
        .await
        .map_err(|e| TransformError::Parquet(e.to_string()))??;
    let path = canonical_path(&req.tenant_id, &table.table, service);
    report.bytes = upload(&store, &path, file, UPLOAD_PART_BYTES).await?;
    report.stats = stats;
    report.path = Some(path.to_string());
    report.duration_ms = started.elapsed().as_millis() as u64;
    tracing::info!(tenant_id = %report.tenant_id, table = %report.table, service = %service,
        raw_files = report.raw_files, buckets, rows_in = report.stats.rows_in, versions = report.stats.versions,
        records = report.stats.records, duplicates = report.stats.duplicates,
        unchanged = report.stats.unchanged, duration_ms = report.duration_ms, "canonical transform done");
    Ok(report)
}

/// What the history planner needs of a table, owned so it can move to a blocking task.
struct OwnedContext {
    tenant_id: String,
    service: Service,
    source_table: String,
    table: Arc<CanonicalTable>,
    unhashed: Vec<String>,
}

/// One raw part read and mapped to the canonical columns (off the async threads): its
/// batches, or, when the table spills, added to the buckets' spill files.
async fn map_object(
    bytes: bytes::Bytes,
    (table, src, endpoint): (Arc<CanonicalTable>, Arc<SourceMapping>, Arc<EndpointDef>),
    origin: String,
    mut spill: Option<spill::Spill>,
) -> Result<(Vec<arrow_array::RecordBatch>, Option<spill::Spill>), TransformError> {
    tokio::task::spawn_blocking(move || {
        let batches = read_mapped(bytes, &table, &src, &endpoint, &origin)?;
        match spill.as_mut() {
            Some(s) => s.add(&batches).map(|()| (Vec::new(), spill)),
            None => Ok((batches, spill)),
        }
    })
    .await
    .map_err(|e| TransformError::Parquet(e.to_string()))?
}

/// The table's whole history into a local Parquet file, a bucket at a time when it spilled.
fn write_table(
    owned: &OwnedContext,
    mapped: Vec<arrow_array::RecordBatch>,
    spill: Option<spill::Spill>,
) -> Result<(std::fs::File, Scd2Stats), TransformError> {
    let ctx = Scd2Context {
        tenant_id: &owned.tenant_id,
        service: owned.service.as_str(),
        source_table: &owned.source_table,
        table: &owned.table,
        unhashed: owned.unhashed.clone(),
    };
    let out = tempfile::tempfile()
        .map_err(|e| TransformError::Store(format!("cannot create a local file: {e}")))?;
    let mut writer = Writer::new(output_schema(&owned.table), out)?;
    let mut stats = Scd2Stats::default();
    match spill {
        None => write_history(&mapped, &ctx, &mut writer, &mut stats)?,
        Some(spill) => {
            let spilled = spill.finish()?;
            for b in 0..spilled.buckets() {
                write_history(&spilled.read(b)?, &ctx, &mut writer, &mut stats)?;
            }
        }
    }
    Ok((writer.finish()?, stats))
}

/// Plans one set of records' history and writes it a row group at a time, so only one
/// slice of the output is ever held; adds its counts to `stats`.
fn write_history<W: std::io::Write + Send>(
    mapped: &[arrow_array::RecordBatch],
    ctx: &Scd2Context<'_>,
    writer: &mut Writer<W>,
    stats: &mut Scd2Stats,
) -> Result<(), TransformError> {
    let plan = scd2::plan(mapped, ctx)?;
    let mut at = 0;
    while at < plan.len() {
        let end = (at + ROW_GROUP_ROWS).min(plan.len());
        writer.write(&plan.emit(mapped, ctx, at..end)?)?;
        at = end;
    }
    stats.add(&plan.stats);
    Ok(())
}

/// Uploads a finished local file to `path`: one put up to `part_bytes`, else a multipart
/// upload in parts of that size. Either way readers see the previous history or the new
/// one, never a mix.
async fn upload(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    file: std::fs::File,
    part_bytes: usize,
) -> Result<u64, TransformError> {
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
    let err = |e: std::io::Error| TransformError::Store(format!("put {path}: {e}"));
    let mut file = tokio::fs::File::from_std(file);
    file.seek(std::io::SeekFrom::Start(0)).await.map_err(err)?;
    let mut up = BufWriter::with_capacity(store.clone(), path.clone(), part_bytes);
    let copied = match tokio::io::copy(&mut file, &mut up).await {
        Ok(n) => n,
        Err(e) => {
            let _ = up.abort().await;
            return Err(err(e));
        }
    };
    up.shutdown().await.map_err(err)?;
    Ok(copied)
}

async fn get_bytes(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<Bytes, TransformError> {
    store
        .get(path)
        .await
        .map_err(|e| TransformError::Store(format!("get {path}: {e}")))?
        .bytes()
        .await
        .map_err(|e| TransformError::Store(format!("read {path}: {e}")))
}

/// Reads only the columns the mapping needs from one raw file and maps its batches.
fn read_mapped(
    bytes: Bytes,
    table: &CanonicalTable,
    src: &SourceMapping,
    endpoint: &EndpointDef,
    origin: &str,
) -> Result<Vec<arrow_array::RecordBatch>, TransformError> {
    let perr = |e: parquet::errors::ParquetError| TransformError::Data {
        origin: origin.to_string(),
        reason: e.to_string(),
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(perr)?;
    let wanted = raw_columns_needed(endpoint, src);
    let roots: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| wanted.contains(f.name()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder.with_projection(mask).build().map_err(perr)?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| TransformError::Data {
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
        out.push(map_raw(&batch, table, src, endpoint, origin)?);
    }
    Ok(out)
}

/// A canonical Parquet file being written. Fixed writer settings and no wall-clock
/// metadata, so the same rows always encode to the same bytes.
struct Writer<W: std::io::Write + Send> {
    inner: ArrowWriter<W>,
}

fn perr(e: impl std::fmt::Display) -> TransformError {
    TransformError::Parquet(e.to_string())
}

impl<W: std::io::Write + Send> Writer<W> {
    fn new(schema: arrow_schema::SchemaRef, out: W) -> Result<Self, TransformError> {
        let level = ZstdLevel::try_new(3).map_err(perr)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by("avesa-console canonical transform".to_string())
            .build();
        Ok(Writer {
            inner: ArrowWriter::try_new(out, schema, Some(props)).map_err(perr)?,
        })
    }

    /// Row groups close at `ROW_GROUP_ROWS` rows, across the slices written.
    fn write(&mut self, batch: &arrow_array::RecordBatch) -> Result<(), TransformError> {
        self.inner.write(batch).map_err(perr)
    }

    fn finish(self) -> Result<W, TransformError> {
        self.inner.into_inner().map_err(perr)
    }
}

/// Parquet bytes of one batch, written as `run` writes canonical files.
pub fn encode(batch: &arrow_array::RecordBatch) -> Result<Bytes, TransformError> {
    let mut w = Writer::new(batch.schema(), Vec::new())?;
    w.write(batch)?;
    Ok(Bytes::from(w.finish()?))
}
