//! Canonical transform: reads a tenant's raw Parquet through the sink's object store, maps
//! each service's columns to the canonical ones (`canonical/*.json`), and keeps each table's
//! SCD Type 2 history in record-id buckets under `{tenant_id}/canonical/{table}/{service}/`,
//! named by a manifest (`layout`: bucket files are never overwritten, the manifest is put last).
//!
//! Incremental (the default): only the raw files the manifest does not list as consumed are
//! read. Their mapped versions go to local spill files by the bucket of their record id
//! (`spill`), and each bucket that received versions is merged on its own (merge-on-read,
//! `merge_bucket`): its base and delta files are read and resolved (`resolve`) into its
//! current history, read back as versions, the new versions are added, and the bucket's
//! history is planned again (`scd2::plan`: repeated versions dropped, unchanged ones folded,
//! the previous current version closed). The planned history is compared with the old one by
//! (id, start) (`changed_rows`): the rows that are new or differ go to one delta file under
//! the next generation. A new base (the whole history, the deltas dropped) is written instead
//! when a row of the old history is gone from the new one, or when the deltas would pass
//! `FOLD_SHARE_PERCENT` of the bucket's rows or `MAX_DELTAS` files (`FoldRule`). Untouched
//! buckets keep their files; the new manifest names the files of every bucket and every raw
//! file consumed.
//!
//! Full (`transform --full`, a table's first build, a table built under another mapping, or one
//! whose history grew `REBUILD_GROWTH` times since its last full build): every raw file is read and every
//! bucket's base written anew; the raw files' total size sets the bucket count
//! (`spill::BUCKET_RAW_BYTES` of raw Parquet each, at most `spill::MAX_BUCKETS`), which stays
//! fixed until the next full build. A full build gives the same rows as the incremental merges
//! that led to the same raw data, with one exception: a version that lands after a later one
//! of its record, between two versions with the same values of which the later was folded,
//! finds the fold already done; a full build keeps all three.
//!
//! Memory is bounded by one bucket, not by the history: a raw file is copied to a local file
//! and read from there `RAW_BATCH_ROWS` at a time, each batch mapped and spilled before the
//! next is read (a compacted raw file is tens of MB, and its mapped versions several times
//! that); a merge holds one bucket's versions (its base and deltas resolved, and the new
//! ones) and their order, and writes the output a `ROW_GROUP_ROWS` slice at a time to a local
//! file that is uploaded from there.
//! Transforms in one process run one at a time, their mapping and merging on one thread
//! (`on_transform_thread`), so the allocator reuses one step's memory for the next.

mod files;
pub mod layout;
mod mapping;
pub mod resolve;
pub mod scd2;
mod spill;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::Serialize;

use crate::config::{CanonicalTable, Config, EndpointDef, SourceMapping};
use crate::domain::Service;
use crate::sink::RawSink;

#[cfg(test)]
use files::RAW_BATCH_ROWS;
pub use files::encode;
use files::{Writer, download, get_bytes, on_transform_thread, perr, read_mapped, upload};
pub use layout::{BucketFile, Consumed, DeltaFile, Manifest, current_files};
pub use mapping::{map_raw, mapped_schema, raw_columns_needed};
pub use resolve::{GENERATION_COLUMN, read_current, resolve};
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
    /// Only the raw files not yet consumed, merged into the buckets they touch (a full build
    /// when the table has none yet).
    Incremental,
    /// Every raw file, every bucket written anew.
    Full,
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
    /// What ran: `full` also when an incremental run found no table to merge into.
    pub mode: TransformMode,
    /// Raw files read.
    pub raw_files: usize,
    /// Record-id buckets of the table.
    pub buckets: usize,
    /// Bucket files written, bases and deltas.
    pub buckets_written: usize,
    /// Of those, delta files (the rest are bases).
    pub deltas_written: usize,
    /// `rows_in`, `duplicates` and `unchanged` count this run's input; `versions` and
    /// `records` the whole table.
    #[serde(flatten)]
    pub stats: Scd2Stats,
    /// The table's manifest; `None` when the service has no raw data yet.
    pub path: Option<String>,
    /// Bytes written.
    pub bytes: u64,
    /// Bytes of the table's current files.
    pub table_bytes: u64,
    /// The table's generation (its manifest's).
    pub generation: u64,
    pub duration_ms: u64,
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
    run_with(config, sink, req, bucket_raw_bytes()).await
}

/// Test hook: `AVESA_TEST_BUCKET_RAW_BYTES` sets the raw bytes per bucket of a full build, so
/// a test spreads a small table over many buckets.
pub const BUCKET_BYTES_ENV: &str = "AVESA_TEST_BUCKET_RAW_BYTES";

fn bucket_raw_bytes() -> u64 {
    env_or(BUCKET_BYTES_ENV, BUCKET_RAW_BYTES)
}

/// A test hook's value: environment variable `name` parsed, else `default`.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
            let job = Job {
                tenant_id: req.tenant_id.clone(),
                service: *service,
                source_table: src.table.clone(),
                table: Arc::new(table.clone()),
                src: Arc::new(src.clone()),
                endpoint: Arc::new(endpoint.clone()),
                unhashed: unhashed(src, endpoint),
            };
            reports.push(transform_one(sink, &job, req.mode, bucket_raw_bytes).await?);
        }
    }
    Ok(reports)
}

/// One (canonical table, service) to transform, owned so it can move to blocking tasks.
struct Job {
    tenant_id: String,
    service: Service,
    source_table: String,
    table: Arc<CanonicalTable>,
    src: Arc<SourceMapping>,
    endpoint: Arc<EndpointDef>,
    unhashed: Vec<String>,
}

impl Job {
    fn dir(&self) -> Path {
        layout::table_dir(&self.tenant_id, &self.table.table, self.service)
    }

    /// A digest of everything that decides a version's canonical values: a table built
    /// under another one is rebuilt in full.
    fn mapping_digest(&self) -> String {
        let what = format!(
            "{:?}|{:?}|{}|{}",
            self.table.columns,
            self.src.columns,
            self.endpoint.id_field,
            self.endpoint.incremental_field
        );
        format!("{:016x}", twox_hash::XxHash3_64::oneshot(what.as_bytes()))
    }
}

/// Transforms of this process, one at a time: each holds up to a bucket's history.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A table whose history has grown this many times since its last full build is built in
/// full again, with its bucket count chosen anew.
const REBUILD_GROWTH: u64 = 4;

/// What a run builds: the mode that applies, the bucket count, the raw files it reads, and
/// the token its file names carry (`layout::writer_token`).
struct Build {
    mode: TransformMode,
    buckets: usize,
    generation: u64,
    inputs: Vec<ObjectMeta>,
    writer: String,
}

impl Build {
    fn decide(
        mode: TransformMode,
        previous: Option<&Manifest>,
        objects: &[ObjectMeta],
        mapping: &str,
        bucket_raw_bytes: u64,
    ) -> Build {
        let generation = previous.map_or(1, |m| m.generation + 1);
        // Buckets sized for a history `REBUILD_GROWTH` times smaller are sized again.
        let grown = |m: &Manifest| m.rows() > REBUILD_GROWTH * m.built_rows.max(1);
        match previous {
            Some(m) if mode == TransformMode::Incremental && m.mapping == mapping && !grown(m) => {
                Build {
                    mode,
                    buckets: m.buckets,
                    generation,
                    writer: layout::writer_token(),
                    inputs: objects
                        .iter()
                        .filter(|o| !layout::is_consumed(m, o))
                        .cloned()
                        .collect(),
                }
            }
            _ => Build {
                writer: layout::writer_token(),
                mode: TransformMode::Full,
                buckets: spill::buckets_for(objects.iter().map(|m| m.size).sum(), bucket_raw_bytes),
                generation,
                inputs: objects.to_vec(),
            },
        }
    }
}

/// Raw compaction rewrites parts the table may already hold into one file: a compacted file
/// whose record names only files the manifest lists as consumed (same size) holds nothing
/// new, so it is counted as consumed too (`sink::compact::replaced_files`).
async fn count_compacted_as_consumed(
    store: &dyn ObjectStore,
    manifest: &mut Manifest,
    objects: &[ObjectMeta],
) -> Result<(), TransformError> {
    let mut more = Vec::new();
    for o in objects.iter().filter(|o| !layout::is_consumed(manifest, o)) {
        let replaced = crate::sink::compact::replaced_files(store, &o.location)
            .await
            .map_err(|e| TransformError::Store(e.to_string()))?;
        let all_consumed = replaced.is_some_and(|files| {
            files.iter().all(|f| {
                manifest
                    .consumed
                    .binary_search_by(|c| c.path.as_str().cmp(&f.path))
                    .is_ok_and(|i| manifest.consumed[i].size == f.bytes)
            })
        });
        if all_consumed {
            more.push(Consumed {
                path: o.location.to_string(),
                size: o.size,
            });
        }
    }
    manifest.consumed.extend(more);
    manifest.consumed.sort();
    Ok(())
}

async fn transform_one(
    sink: &RawSink,
    job: &Job,
    mode: TransformMode,
    bucket_raw_bytes: u64,
) -> Result<TransformReport, TransformError> {
    let started = Instant::now();
    let _turn = ONE_AT_A_TIME.lock().await;
    let store = sink.store();
    let objects = sink
        .list_table_objects(&job.tenant_id, job.service, &job.source_table)
        .await
        .map_err(|e| TransformError::Store(e.to_string()))?;
    let table = &job.table.table;
    let mut previous = layout::read_manifest(&store, &job.tenant_id, table, job.service).await?;
    if let Some(m) = previous.as_mut() {
        count_compacted_as_consumed(store.as_ref(), m, &objects).await?;
    }
    let build = Build::decide(
        mode,
        previous.as_ref(),
        &objects,
        &job.mapping_digest(),
        bucket_raw_bytes,
    );
    let mut report = TransformReport {
        tenant_id: job.tenant_id.clone(),
        table: table.clone(),
        service: job.service,
        source_table: job.source_table.clone(),
        mode: build.mode,
        raw_files: build.inputs.len(),
        buckets: build.buckets,
        buckets_written: 0,
        deltas_written: 0,
        stats: Scd2Stats::default(),
        path: None,
        bytes: 0,
        table_bytes: 0,
        generation: 0,
        duration_ms: 0,
    };
    if objects.is_empty() && previous.is_none() {
        return Ok(report);
    }
    let manifest = match (&previous, build.inputs.is_empty()) {
        // Nothing new since the table was built.
        (Some(m), true) if build.mode == TransformMode::Incremental => m.clone(),
        _ => {
            let m = write_version(
                &store,
                job,
                &build,
                previous.as_ref(),
                &objects,
                &mut report,
            )
            .await?;
            finish_version(&store, job, &m, previous.as_ref()).await?;
            m
        }
    };
    report.stats.versions = manifest.rows();
    report.stats.records = manifest.records();
    report.table_bytes = manifest.bytes();
    report.generation = manifest.generation;
    report.path = Some(job.dir().join(layout::MANIFEST_FILE).to_string());
    report.duration_ms = started.elapsed().as_millis() as u64;
    tracing::info!(tenant_id = %report.tenant_id, table = %report.table, service = %job.service,
        mode = ?report.mode, raw_files = report.raw_files, buckets = report.buckets,
        buckets_written = report.buckets_written, deltas_written = report.deltas_written, bytes = report.bytes, rows_in = report.stats.rows_in,
        versions = report.stats.versions, records = report.stats.records, duplicates = report.stats.duplicates,
        unchanged = report.stats.unchanged, duration_ms = report.duration_ms, "canonical transform done");
    Ok(report)
}

/// Reads the build's raw files into buckets, merges every bucket that received versions and
/// returns the manifest of the new version (not yet put).
async fn write_version(
    store: &Arc<dyn ObjectStore>,
    job: &Job,
    build: &Build,
    previous: Option<&Manifest>,
    objects: &[ObjectMeta],
    report: &mut TransformReport,
) -> Result<Manifest, TransformError> {
    let mut spill = spill::Spill::new(build.buckets, mapped_schema(&job.table))?;
    for object in &build.inputs {
        let local = download(store, &object.location).await?;
        spill = map_object(local, job, object.location.to_string(), spill).await?;
    }
    let spilled = Arc::new(on_transform_thread(move || spill.finish()).await??);
    let files = merge_buckets(store, job, build, previous, spilled, report).await?;
    let rows: u64 = files.iter().map(|f| f.rows).sum();
    let built_rows = match previous {
        Some(m) if build.mode == TransformMode::Incremental => m.built_rows,
        _ => rows,
    };
    let mut consumed: Vec<Consumed> = objects
        .iter()
        .map(|o| Consumed {
            path: o.location.to_string(),
            size: o.size,
        })
        .collect();
    consumed.sort();
    Ok(Manifest {
        format: layout::MANIFEST_FORMAT,
        generation: build.generation,
        buckets: build.buckets,
        hash: layout::BUCKET_HASH.to_string(),
        mapping: job.mapping_digest(),
        built_rows,
        files,
        consumed,
    })
}

/// A bucket's delta files are folded into a new base when, with the one a merge would add,
/// their rows reach this share (percent) of the bucket's history rows: past it a reader
/// resolves more superseded rows than the base saves rewriting.
pub const FOLD_SHARE_PERCENT: u64 = 50;

/// A bucket's delta files are folded into a new base when a merge would add one more than
/// this: each is a file a reader opens.
pub const MAX_DELTAS: usize = 16;

/// Test hook: `AVESA_TEST_MAX_DELTAS` sets `MAX_DELTAS`, so a test sees a fold after a few merges.
pub const MAX_DELTAS_ENV: &str = "AVESA_TEST_MAX_DELTAS";

fn max_deltas() -> usize {
    env_or(MAX_DELTAS_ENV, MAX_DELTAS)
}

/// When a merge writes a delta rather than a new base.
#[derive(Clone, Copy, Debug)]
struct FoldRule {
    /// The bucket has a base file to write a delta over.
    base: bool,
    deltas: usize,
    delta_rows: u64,
    max_deltas: usize,
}

impl FoldRule {
    fn of(bucket: Option<&BucketFile>, max_deltas: usize) -> FoldRule {
        FoldRule {
            base: bucket.is_some(),
            deltas: bucket.map_or(0, |f| f.deltas.len()),
            delta_rows: bucket.map_or(0, BucketFile::delta_rows),
            max_deltas,
        }
    }

    /// Whether a delta of `changed` rows over a history of `rows` keeps the bucket's deltas
    /// within both limits.
    fn allows_delta(&self, changed: u64, rows: u64) -> bool {
        self.base
            && self.deltas < self.max_deltas
            && (self.delta_rows + changed) * 100 < FOLD_SHARE_PERCENT * rows
    }
}

/// Merges every bucket that received versions into its current files (none in a full build)
/// and uploads the result under the build's generation, as a delta or a new base
/// (`merge_bucket`); returns every bucket's files.
async fn merge_buckets(
    store: &Arc<dyn ObjectStore>,
    job: &Job,
    build: &Build,
    previous: Option<&Manifest>,
    spilled: Arc<spill::Spilled>,
    report: &mut TransformReport,
) -> Result<Vec<BucketFile>, TransformError> {
    let mut files: BTreeMap<usize, BucketFile> = match previous {
        Some(m) if build.mode == TransformMode::Incremental => {
            m.files.iter().map(|f| (f.bucket, f.clone())).collect()
        }
        _ => BTreeMap::new(),
    };
    let dir = job.dir();
    let (pause_after, max_deltas) = (merge_pause(), max_deltas());
    for b in (0..build.buckets).filter(|&b| spilled.rows(b) > 0) {
        let current = files.get(&b);
        let old = match current {
            Some(f) => resolve::get_bucket(store, &dir, f).await?,
            None => Vec::new(),
        };
        let rule = FoldRule::of(current, max_deltas);
        let (sp, ctx, generation) = (spilled.clone(), job.context(), build.generation);
        let mut merged =
            on_transform_thread(move || merge_bucket(&ctx, sp.read(b)?, old, rule, generation))
                .await??;
        report.stats.rows_in += merged.stats.rows_in;
        report.stats.duplicates += merged.stats.duplicates;
        report.stats.unchanged += merged.stats.unchanged;
        let Some(local) = merged.file.take() else {
            continue; // Nothing the bucket holds changed.
        };
        let name = match merged.delta_rows {
            Some(_) => layout::delta_file_name(b, generation, &build.writer),
            None => layout::bucket_file_name(b, generation, &build.writer),
        };
        let bytes = upload(
            store,
            &dir.clone().join(name.as_str()),
            local,
            UPLOAD_PART_BYTES,
        )
        .await?;
        report.bytes += bytes;
        report.buckets_written += 1;
        report.deltas_written += usize::from(merged.delta_rows.is_some());
        let entry = bucket_entry(current, b, name, bytes, generation, &merged);
        files.insert(b, entry);
        if pause_after == Some(report.buckets_written) {
            pause_for_a_crash_test(report.buckets_written).await;
        }
    }
    Ok(files.into_values().collect())
}

/// A bucket's manifest entry after a merge wrote `name`: the previous entry with one more
/// delta, or a new base with none.
fn bucket_entry(
    current: Option<&BucketFile>,
    bucket: usize,
    name: String,
    bytes: u64,
    generation: u64,
    merged: &Merged,
) -> BucketFile {
    let (rows, records) = (merged.stats.versions, merged.stats.records);
    match (current, merged.delta_rows) {
        (Some(f), Some(delta_rows)) => {
            let mut f = f.clone();
            f.deltas.push(layout::DeltaFile {
                file: name,
                rows: delta_rows,
                bytes,
                generation,
            });
            BucketFile { rows, records, ..f }
        }
        _ => BucketFile {
            bucket,
            file: name,
            rows,
            records,
            bytes,
            deltas: Vec::new(),
        },
    }
}

/// Puts the new version's manifest, then removes what no manifest needs any more: older
/// bucket files (`layout::remove_garbage`) and the single file of the layout before buckets.
async fn finish_version(
    store: &Arc<dyn ObjectStore>,
    job: &Job,
    manifest: &Manifest,
    previous: Option<&Manifest>,
) -> Result<(), TransformError> {
    let dir = job.dir();
    layout::write_manifest(store, &dir, manifest).await?;
    let removed = layout::remove_garbage(store, &dir, manifest, previous).await?;
    let single = layout::single_file_path(&job.tenant_id, &job.table.table, job.service);
    match store.delete(&single).await {
        Ok(()) => {
            tracing::info!(path = %single, "removed the canonical file of the layout before buckets")
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(TransformError::Store(format!("delete {single}: {e}"))),
    }
    tracing::debug!(%dir, generation = manifest.generation, removed, "canonical table version put");
    Ok(())
}

/// Test hook: with `AVESA_TEST_MERGE_PAUSE=N`, a transform stops for a minute after writing its
/// Nth bucket file, before its manifest, so a crash test can kill it mid-merge.
pub const MERGE_PAUSE_ENV: &str = "AVESA_TEST_MERGE_PAUSE";

fn merge_pause() -> Option<usize> {
    std::env::var(MERGE_PAUSE_ENV).ok()?.parse().ok()
}

async fn pause_for_a_crash_test(written: usize) {
    tracing::warn!(
        written,
        "{MERGE_PAUSE_ENV}: merge paused before its manifest"
    );
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
}

impl Job {
    fn context(&self) -> OwnedContext {
        OwnedContext {
            tenant_id: self.tenant_id.clone(),
            service: self.service,
            source_table: self.source_table.clone(),
            table: self.table.clone(),
            unhashed: self.unhashed.clone(),
        }
    }
}

/// What the history planner needs of a table, owned so it can move to a blocking task.
struct OwnedContext {
    tenant_id: String,
    service: Service,
    source_table: String,
    table: Arc<CanonicalTable>,
    unhashed: Vec<String>,
}

impl OwnedContext {
    fn context(&self) -> Scd2Context<'_> {
        Scd2Context {
            tenant_id: &self.tenant_id,
            service: self.service.as_str(),
            source_table: &self.source_table,
            table: &self.table,
            unhashed: self.unhashed.clone(),
        }
    }
}

/// One raw file read a batch at a time from its local copy and mapped to the canonical
/// columns (off the async threads), each batch's versions added to their buckets' spill files
/// before the next is read.
async fn map_object(
    local: std::fs::File,
    job: &Job,
    origin: String,
    mut spill: spill::Spill,
) -> Result<spill::Spill, TransformError> {
    let (table, src, endpoint) = (job.table.clone(), job.src.clone(), job.endpoint.clone());
    on_transform_thread(move || {
        read_mapped(local, &table, &src, &endpoint, &origin, |batch| {
            spill.add(std::slice::from_ref(&batch))
        })?;
        Ok(spill)
    })
    .await?
}

/// What `merge_bucket` wrote.
struct Merged {
    /// The local file, `None` when the bucket's rows did not change (all new versions were
    /// ones it had, or unchanged).
    file: Option<std::fs::File>,
    /// `Some(rows)` when the file is a delta of that many rows, `None` when it is a base.
    delta_rows: Option<u64>,
    /// `rows_in` counts the new versions; `versions` and `records` the bucket's history.
    stats: Scd2Stats,
}

/// One bucket's merge: its current rows (base and deltas resolved) read back as versions,
/// planned again with the `new` ones (`scd2::plan`) and compared with them, (id, start) by
/// (id, start). The rows that are new or differ (a closed version re-emitted, a version
/// landed again from another job) go to a delta file; the whole history goes to a new base
/// instead when the bucket has none, when a row it had is gone from the new history (a late
/// version that folds a later one), or when `rule` says the deltas outgrew their share. Rows
/// are written with `generation` in `resolve::GENERATION_COLUMN`.
fn merge_bucket(
    owned: &OwnedContext,
    new: Vec<arrow_array::RecordBatch>,
    old: Vec<(Bytes, u64, String)>,
    rule: FoldRule,
    generation: u64,
) -> Result<Merged, TransformError> {
    let ctx = owned.context();
    // The ids are numbers when the new versions' are (a source's ids are one or the other).
    let numeric = new
        .iter()
        .find(|b| b.num_rows() > 0)
        .is_some_and(|b| b.column(mapping::MAPPED_ID_NUM).null_count() == 0);
    let old: Vec<arrow_array::RecordBatch> = resolve::resolve_files(old)?.into_iter().collect();
    let old_rows: usize = old.iter().map(|b| b.num_rows()).sum();
    let mut mapped = scd2::history_as_versions(&old, &owned.table, numeric)?;
    mapped.extend(new);
    let plan = scd2::plan(&mapped, &ctx)?;
    let mut stats = plan.stats.clone();
    stats.rows_in -= old_rows as u64;
    let mask = changed_rows(&plan, &mapped, &old)?;
    let changed = mask
        .as_ref()
        .map(|m| m.iter().filter(|c| **c).count() as u64);
    let delta = match (mask, changed) {
        (Some(_), Some(0)) => {
            return Ok(Merged {
                file: None,
                delta_rows: None,
                stats,
            });
        }
        (Some(m), Some(n)) if rule.allows_delta(n, plan.len() as u64) => Some(m),
        _ => None,
    };
    drop(old);
    let out = tempfile::tempfile()
        .map_err(|e| TransformError::Store(format!("cannot create a local file: {e}")))?;
    let schema = resolve::file_schema(&output_schema(&owned.table));
    let mut writer = Writer::new(schema, out)?;
    let mut at = 0;
    while at < plan.len() {
        let end = (at + ROW_GROUP_ROWS).min(plan.len());
        let rows = resolve::with_generation(&plan.emit(&mapped, &ctx, at..end)?, generation)?;
        match &delta {
            Some(m) => {
                let keep = arrow_array::BooleanArray::from(m[at..end].to_vec());
                writer.write(
                    &arrow_select::filter::filter_record_batch(&rows, &keep).map_err(perr)?,
                )?
            }
            None => writer.write(&rows)?,
        }
        at = end;
    }
    Ok(Merged {
        file: Some(writer.finish()?),
        delta_rows: changed.filter(|_| delta.is_some()),
        stats,
    })
}

/// Which rows of the new history `plan` a delta must hold: those whose (id, start) the old
/// history (`old`, resolved canonical rows) lacks or holds with another end, hash or job.
/// `None` when a row of the old history is missing from the new one: a delta cannot remove a
/// row, the bucket needs a new base.
fn changed_rows(
    plan: &Scd2Plan,
    mapped: &[arrow_array::RecordBatch],
    old: &[arrow_array::RecordBatch],
) -> Result<Option<Vec<bool>>, TransformError> {
    use arrow_array::{Array, StringArray, TimestampMicrosecondArray};
    let mut before = std::collections::HashMap::new();
    for batch in old {
        let ids = resolve::column::<StringArray>(batch, "record_id")?;
        let starts = resolve::column::<TimestampMicrosecondArray>(batch, "effective_start")?;
        let ends = resolve::column::<TimestampMicrosecondArray>(batch, "effective_end")?;
        let hashes = resolve::column::<StringArray>(batch, "record_hash")?;
        let jobs = resolve::column::<StringArray>(batch, "source_job_id")?;
        for r in 0..batch.num_rows() {
            let state = scd2::RowState {
                end: (!ends.is_null(r)).then(|| ends.value(r)),
                // A hash that does not parse matches none: the row is written again.
                hash: u128::from_str_radix(hashes.value(r), 16).unwrap_or_default(),
                job: (!jobs.is_null(r)).then(|| jobs.value(r)),
            };
            before.insert((ids.value(r), starts.value(r)), state);
        }
    }
    let (mut mask, mut kept) = (Vec::with_capacity(plan.len()), 0);
    for i in 0..plan.len() {
        let (id, start, state) = plan.row_state(mapped, i)?;
        let had = before.get(&(id, start));
        kept += usize::from(had.is_some());
        mask.push(had != Some(&state));
    }
    Ok((kept == before.len()).then_some(mask))
}
