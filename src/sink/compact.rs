//! Raw compaction: the small parts of a table's finished windows rewritten into larger files,
//! and the one listing every reader of raw data goes through.
//!
//! A compacted file lives under `{table_prefix}/compacted/` as
//! `c{gen:08}_{first_window}_{token}.parquet`; it holds whole windows (every part of each), in
//! window order, and cannot be mistaken for a part (`{window}_NNNNN.parquet` at the table's
//! top level). It is written as it is read, in bounded memory (`stream`): sources a row group
//! at a time, the file through a multipart upload that makes it appear whole when it
//! completes, or not at all. Its record, `compacted/c{gen:08}.json`, names the file, its size
//! and rows, its windows and the files it replaces with their sizes. The record is put with
//! "create only": two compactions of one table that picked the same generation cannot both
//! record, the loser deletes its file.
//!
//! The steps are: put the file, put the record, delete the replaced files. Readers resolve a
//! table's listing with `RawSink::resolve_table`, which applies the records newest first: a
//! record is active when its file exists with the recorded size and no active record replaces
//! it; an active record hides the files it replaces (path and size). A compacted file without
//! an active record is ignored. So a crash after any step leaves every row readable exactly
//! once; the next compaction deletes what is left over (orphan compacted files only once
//! `ORPHAN_GRACE` old: one may be a compaction between its two puts).
//!
//! A window that runs again (a new job over the same window) starts by `release_window`: each
//! compacted file holding it is rewritten without its rows (by `_avesa_chunk_start` and
//! `_avesa_chunk_end`) as a new generation that replaces it (one that held only that window
//! becomes an empty file without windows, which readers skip: an active compacted file is never
//! deleted, or the files it replaces could show again), so the window's new parts are its only
//! rows. Writers that raced past "create only"
//! cannot both win either: of two records replacing one file only the newer is active.

use std::collections::{BTreeMap, HashMap};

use arrow_array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use arrow_select::filter::filter_record_batch;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use serde::{Deserialize, Serialize};

use super::{META_COLUMNS, RawSink, SinkError, part_window, window_stamp};
use crate::domain::{Service, Window};

mod stream;
#[cfg(test)]
mod stream_tests;

pub use stream::{PARTS_IN_FLIGHT, ROW_GROUP_BYTES, StreamLimits, UPLOAD_PART_BYTES};
use stream::{RemoteParquet, StreamWriter};

/// The folder of compacted files and their records, under a table's prefix.
pub const COMPACTED_DIR: &str = "compacted";

/// How old a compacted file without a record must be before it is deleted: younger, it may
/// be a compaction between putting its file and its record.
pub const ORPHAN_GRACE: chrono::Duration = chrono::Duration::hours(1);

/// How often `release_window` looks again when other writers of the table recorded first
/// (windows of one table in flight at once each release theirs).
const RELEASE_ATTEMPTS: usize = 32;

/// A file a compacted file replaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplacedFile {
    pub path: String,
    pub bytes: u64,
}

/// What `compacted/c{gen:08}.json` says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompactionRecord {
    /// The compacted file's path.
    pub file: String,
    pub bytes: u64,
    pub rows: u64,
    /// The windows (`{start}-{end}`) whose rows it holds, in order.
    pub windows: Vec<String>,
    pub replaces: Vec<ReplacedFile>,
    pub created_at: DateTime<Utc>,
}

/// A table's raw files as readers must see them.
#[derive(Clone, Debug, Default)]
pub struct RawListing {
    /// The files to read (parts and compacted files), sorted by path.
    pub live: Vec<ObjectMeta>,
    /// Active records by compacted file path.
    pub records: BTreeMap<String, CompactionRecord>,
    /// Left over from an interrupted compaction: replaced files still present, records that
    /// are no longer active, compacted files without a record (with their age).
    pub stale: Vec<ObjectMeta>,
    /// The generation the next compaction of the table records: one past the newest record.
    pub next_gen: u64,
}

impl RawListing {
    /// The live parts (not compacted files) by window, in window order.
    pub fn parts_by_window(&self) -> BTreeMap<String, Vec<ObjectMeta>> {
        let mut out: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
        for m in &self.live {
            if let Some(w) = m.location.filename().and_then(part_window) {
                out.entry(w.to_string()).or_default().push(m.clone());
            }
        }
        out
    }

    /// The live compacted files holding `stamp`'s rows.
    pub fn compacted_holding(&self, stamp: &str) -> Vec<(&String, &CompactionRecord)> {
        self.records
            .iter()
            .filter(|(_, r)| r.windows.iter().any(|w| w == stamp))
            .collect()
    }
}

/// Where a compaction stops early, for tests of what a crash leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the compacted file was put, before its record.
    AfterFile,
    /// After the record was put, before the replaced files are deleted.
    AfterRecord,
    /// After the first replaced file was deleted.
    AfterFirstDelete,
}

impl CrashPoint {
    /// From `AVESA_TEST_COMPACT_CRASH` (`after_file`, `after_record`, `after_first_delete`).
    pub fn from_env() -> Option<CrashPoint> {
        match std::env::var("AVESA_TEST_COMPACT_CRASH").ok()?.as_str() {
            "after_file" => Some(CrashPoint::AfterFile),
            "after_record" => Some(CrashPoint::AfterRecord),
            "after_first_delete" => Some(CrashPoint::AfterFirstDelete),
            _ => None,
        }
    }

    fn check(this: Option<CrashPoint>, at: CrashPoint) -> Result<(), SinkError> {
        if this == Some(at) {
            return Err(SinkError::Store(format!(
                "compaction stopped by AVESA_TEST_COMPACT_CRASH at {at:?}"
            )));
        }
        Ok(())
    }
}

/// A compacted file that was written and recorded.
#[derive(Clone, Debug, Serialize)]
pub struct CompactedFile {
    pub path: String,
    pub bytes: u64,
    pub rows: u64,
    pub windows: Vec<String>,
    pub replaced: usize,
    pub replaced_bytes: u64,
}

/// The generation of `c{gen:08}…`.
fn generation(file: &str) -> Option<u64> {
    let digits = file.strip_prefix('c')?.get(..8)?;
    digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse().ok())?
}

fn record_path(prefix: &Path, generation: u64) -> Path {
    prefix
        .clone()
        .join(COMPACTED_DIR)
        .join(format!("c{generation:08}.json"))
}

/// The files the compacted file at `compacted` replaces, from its record; `None` when it has
/// no record (then it is not a file readers see). For consumers that remember which raw files
/// they read: a compacted file holds nothing new once every file it replaces was read.
pub async fn replaced_files(
    store: &dyn ObjectStore,
    compacted: &Path,
) -> Result<Option<Vec<ReplacedFile>>, SinkError> {
    let Some(generation) = compacted.filename().and_then(generation) else {
        return Ok(None);
    };
    let parts: Vec<_> = compacted.parts().collect();
    if parts.len() < 2 || parts[parts.len() - 2].as_ref() != COMPACTED_DIR {
        return Ok(None);
    }
    let prefix = Path::from_iter(parts[..parts.len() - 2].iter().cloned());
    let path = record_path(&prefix, generation);
    match read_record(store, &path).await? {
        Some(r) if r.file == compacted.as_ref() => Ok(Some(r.replaces)),
        _ => Ok(None),
    }
}

async fn read_record(
    store: &dyn ObjectStore,
    path: &Path,
) -> Result<Option<CompactionRecord>, SinkError> {
    let bytes = match store.get(path).await {
        Ok(got) => got
            .bytes()
            .await
            .map_err(|e| SinkError::Store(format!("read {path}: {e}")))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(SinkError::Store(format!("get {path}: {e}"))),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| SinkError::Store(format!("{path}: not a compaction record: {e}")))
}

/// Applies the records (newest first) to a table's objects.
fn apply_records(
    objects: Vec<ObjectMeta>,
    mut records: Vec<(u64, ObjectMeta, CompactionRecord)>,
) -> RawListing {
    records.sort_by_key(|(g, ..)| std::cmp::Reverse(*g));
    let sizes: HashMap<&str, u64> = objects
        .iter()
        .map(|m| (m.location.as_ref(), m.size))
        .collect();
    let mut hidden: HashMap<String, u64> = HashMap::new();
    let mut listing = RawListing {
        next_gen: records.first().map_or(1, |(g, ..)| g + 1),
        ..RawListing::default()
    };
    for (_, meta, rec) in records {
        let present = sizes.get(rec.file.as_str()) == Some(&rec.bytes);
        // Two records never replace one file, unless writers raced: the newer one wins.
        let raced = rec
            .replaces
            .iter()
            .any(|r| hidden.get(&r.path) == Some(&r.bytes));
        if present && !raced && hidden.get(&rec.file) != Some(&rec.bytes) {
            for r in &rec.replaces {
                hidden.insert(r.path.clone(), r.bytes);
            }
            listing.records.insert(rec.file.clone(), rec);
        } else {
            listing.stale.push(meta);
        }
    }
    for m in objects {
        let path = m.location.as_ref();
        let compacted = m.location.parts().any(|p| p.as_ref() == COMPACTED_DIR);
        let record = listing.records.get(path);
        if hidden.get(path) == Some(&m.size) || (compacted && record.is_none()) {
            listing.stale.push(m);
        } else if record.is_some_and(|r| r.windows.is_empty()) {
            // What a release left of a file that held only its window: no rows to read.
        } else {
            listing.live.push(m);
        }
    }
    // Only records count: a file whose record is not put yet must not move a writer past
    // the generation that writer is about to record (then both would win).
    listing
}

/// Keeps the rows of `batch` that are not of `drop` (by the chunk window columns).
fn without_window(batch: RecordBatch, drop: &Window) -> Result<RecordBatch, SinkError> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .ok_or_else(|| SinkError::Encode(format!("no {name} timestamp column")))
    };
    let (start, end) = (col(META_COLUMNS[4])?, col(META_COLUMNS[5])?);
    let (s, e) = (drop.start.timestamp_micros(), drop.end.timestamp_micros());
    let keep: BooleanArray = (0..batch.num_rows())
        .map(|i| {
            Some(start.is_null(i) || end.is_null(i) || start.value(i) != s || end.value(i) != e)
        })
        .collect();
    filter_record_batch(&batch, &keep).map_err(|e| SinkError::Encode(e.to_string()))
}

/// A compacted file being written: its rows stream in source by source, row group by row
/// group, through the upload (`stream`).
struct Rewrite {
    out: StreamWriter,
    schema: arrow_schema::SchemaRef,
    rows: u64,
    replaces: Vec<ReplacedFile>,
    windows: Vec<String>,
}

/// `{prefix}/compacted/c{gen:08}_{first_window}_{token}.parquet`
fn compacted_path(prefix: &Path, generation: u64, first: &str) -> Path {
    let token: u32 = rand::random();
    prefix
        .clone()
        .join(COMPACTED_DIR)
        .join(format!("c{generation:08}_{first}_{token:08x}.parquet"))
}

impl Rewrite {
    /// Starts the upload of a new file of table `prefix` with `source`'s schema.
    async fn start(
        sink: &RawSink,
        prefix: &Path,
        generation: u64,
        (first, windows): (&str, Vec<String>),
        source: &RemoteParquet,
    ) -> Result<Self, SinkError> {
        let path = compacted_path(prefix, generation, first);
        let schema = source.schema().clone();
        let out = StreamWriter::start(
            sink.store.as_ref(),
            path,
            schema.clone(),
            sink.compact_limits,
        )
        .await?;
        Ok(Rewrite {
            out,
            schema,
            rows: 0,
            replaces: Vec::new(),
            windows,
        })
    }

    /// Appends one source file (all of it, or without `drop`'s rows). `Ok(false)` when its
    /// schema differs from the file's: it was not appended.
    async fn append(
        &mut self,
        store: &dyn ObjectStore,
        source: &RemoteParquet,
        drop: Option<&Window>,
    ) -> Result<bool, SinkError> {
        if source.schema().fields() != self.schema.fields() {
            return Ok(false);
        }
        for group in 0..source.row_groups() {
            for mut batch in source.row_group(store, group).await? {
                if let Some(w) = drop {
                    batch = without_window(batch, w)?;
                }
                self.rows += batch.num_rows() as u64;
                self.out.write(&batch).await?;
            }
        }
        let meta = source.meta();
        self.replaces.push(ReplacedFile {
            path: meta.location.to_string(),
            bytes: meta.size,
        });
        Ok(true)
    }
}

impl RawSink {
    /// Deletes `path`; one already gone is fine.
    async fn remove(&self, path: &Path) -> Result<(), SinkError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(SinkError::Store(format!("delete {path}: {e}"))),
        }
    }

    /// Every object under the table prefix (parts, compacted files, records), sorted.
    async fn table_objects(&self, prefix: &Path) -> Result<Vec<ObjectMeta>, SinkError> {
        use futures::TryStreamExt;
        let mut all: Vec<ObjectMeta> = self
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| SinkError::Store(format!("list {prefix}: {e}")))?;
        all.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(all)
    }

    /// The table's raw files as readers must see them: the compaction records applied.
    /// Every reader of raw data (verify, the transform, bench) lists through this.
    pub async fn resolve_table(
        &self,
        tenant_id: &str,
        service: Service,
        table: &str,
    ) -> Result<RawListing, SinkError> {
        let prefix = Self::table_prefix(tenant_id, service, table);
        let mut objects = Vec::new();
        let mut records = Vec::new();
        for m in self.table_objects(&prefix).await? {
            let Some(name) = m.location.filename() else {
                continue;
            };
            if name.ends_with(".parquet") {
                objects.push(m);
            } else if let Some(g) = name.strip_suffix(".json").and_then(generation)
                && m.location.parts().any(|p| p.as_ref() == COMPACTED_DIR)
                && let Some(rec) = read_record(self.store.as_ref(), &m.location).await?
            {
                records.push((g, m, rec));
            }
        }
        Ok(apply_records(objects, records))
    }

    /// Deletes what an interrupted compaction or a release left behind (compacted files
    /// without a record only once `ORPHAN_GRACE` old; the newest generation's record is kept,
    /// so a generation is never used twice); returns how many objects went.
    pub async fn remove_stale(&self, listing: &RawListing) -> Result<usize, SinkError> {
        let young = Utc::now() - ORPHAN_GRACE;
        let mut removed = 0;
        for m in &listing.stale {
            let is_file = m
                .location
                .filename()
                .is_some_and(|f| f.ends_with(".parquet"));
            let orphan = is_file && m.location.parts().any(|p| p.as_ref() == COMPACTED_DIR);
            // The newest generation's record stays: generations only grow.
            let newest = m.location.filename().and_then(generation) == Some(listing.next_gen - 1);
            if (orphan && m.last_modified > young) || (newest && !is_file) {
                continue;
            }
            self.remove(&m.location).await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Deletes the staging files a local store left in table `prefix`'s `compacted/` folder
    /// when a process was killed while it uploaded a compacted file (only once `ORPHAN_GRACE`
    /// old: a younger one may be an upload under way); returns how many went. S3 keeps an
    /// interrupted upload's parts out of sight until the bucket's lifecycle rule drops them.
    pub async fn remove_compaction_staging(&self, prefix: &Path) -> Result<u32, SinkError> {
        let Some(root) = &self.local_root else {
            return Ok(0);
        };
        let dir = root.join(prefix.as_ref()).join(COMPACTED_DIR);
        let grace = ORPHAN_GRACE.to_std().unwrap_or_default();
        let old = |m: &std::fs::Metadata| {
            m.modified()
                .is_ok_and(|t| t.elapsed().is_ok_and(|a| a > grace))
        };
        let removed =
            super::remove_staging_where(&dir, |name, meta| name.ends_with(".parquet") && old(meta))
                .await?;
        if removed > 0 {
            tracing::info!(%prefix, removed, "staging files of interrupted compactions removed");
        }
        Ok(removed)
    }

    /// Rewrites `windows` (each with all of its live files, in order) into compacted files
    /// of table `prefix` as generation `generation` on; a change of schema between windows
    /// starts a new file. A run of a single source file is not rewritten. Returns the files
    /// recorded (fewer when another compaction of the table recorded first). A file being
    /// written when an error stops the compaction is aborted: nothing of it appears.
    pub async fn compact_windows(
        &self,
        prefix: &Path,
        windows: &[(String, Vec<ObjectMeta>)],
        generation: u64,
        crash: Option<CrashPoint>,
    ) -> Result<Vec<CompactedFile>, SinkError> {
        let mut out = Vec::new();
        let mut current = None;
        let done = self
            .compact_into(prefix, windows, (generation, crash), &mut current, &mut out)
            .await;
        if let Some(rw) = current {
            rw.out.abort().await;
        }
        done.map(|()| out)
    }

    /// `compact_windows`' loop; `current` is the file being written, `out` what was recorded.
    async fn compact_into(
        &self,
        prefix: &Path,
        windows: &[(String, Vec<ObjectMeta>)],
        (mut generation, crash): (u64, Option<CrashPoint>),
        current: &mut Option<Rewrite>,
        out: &mut Vec<CompactedFile>,
    ) -> Result<(), SinkError> {
        let store = self.store.as_ref();
        for (stamp, files) in windows {
            for (i, f) in files.iter().enumerate() {
                let source = RemoteParquet::open(store, f).await?;
                if let Some(rw) = current.as_mut()
                    && rw.append(store, &source, None).await?
                {
                    continue;
                }
                if i > 0 {
                    // A window whose parts differ in schema stays as it is.
                    tracing::warn!(%prefix, window = stamp, "parts of one window differ in schema; not compacted");
                    return Ok(());
                }
                if let Some(rw) = current.take() {
                    tracing::info!(%prefix, window = stamp, "schema changes here; a new compacted file starts");
                    if let Some(c) = self.finish(prefix, rw, generation, None, crash).await? {
                        out.push(c);
                        generation += 1;
                    }
                }
                let first = (stamp.as_str(), Vec::new());
                let rw =
                    current.insert(Rewrite::start(self, prefix, generation, first, &source).await?);
                rw.append(store, &source, None).await?;
            }
            if let Some(rw) = current.as_mut() {
                rw.windows.push(stamp.clone());
            }
        }
        if let Some(rw) = current.take()
            && let Some(c) = self.finish(prefix, rw, generation, None, crash).await?
        {
            out.push(c);
        }
        Ok(())
    }

    /// Puts the compacted file, its record (create only) and deletes what it replaces.
    /// `None` when there was nothing worth writing (one file rewritten as itself) or another
    /// compaction recorded `generation` first.
    async fn finish(
        &self,
        prefix: &Path,
        rw: Rewrite,
        generation: u64,
        release: Option<&str>,
        crash: Option<CrashPoint>,
    ) -> Result<Option<CompactedFile>, SinkError> {
        if rw.replaces.len() < 2 && release.is_none() {
            rw.out.abort().await;
            return Ok(None);
        }
        let rows = rw.rows;
        let file = rw.out.path().clone();
        let bytes = rw.out.finish().await?;
        CrashPoint::check(crash, CrashPoint::AfterFile)?;
        let record = CompactionRecord {
            file: file.to_string(),
            bytes,
            rows,
            windows: rw.windows,
            replaces: rw.replaces,
            created_at: Utc::now(),
        };
        let path = record_path(prefix, generation);
        let json =
            serde_json::to_vec_pretty(&record).map_err(|e| SinkError::Encode(e.to_string()))?;
        match self
            .store
            .put_opts(&path, PutPayload::from(json), PutMode::Create.into())
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                tracing::warn!(%prefix, generation, "another compaction of the table recorded first; this one is dropped");
                let _ = self.store.delete(&file).await;
                return Ok(None);
            }
            Err(e) => return Err(super::write_error(format!("put {path}"), e)),
        }
        CrashPoint::check(crash, CrashPoint::AfterRecord)?;
        for (i, r) in record.replaces.iter().enumerate() {
            self.remove(&Path::from(r.path.as_str())).await?;
            if i == 0 {
                CrashPoint::check(crash, CrashPoint::AfterFirstDelete)?;
            }
        }
        tracing::info!(file = %file, rows, bytes, replaced = record.replaces.len(), "raw files compacted");
        Ok(Some(CompactedFile {
            path: record.file,
            bytes,
            rows,
            replaced: record.replaces.len(),
            replaced_bytes: record.replaces.iter().map(|r| r.bytes).sum(),
            windows: record.windows,
        }))
    }

    /// Takes `window`'s rows out of every compacted file holding them (each rewritten without
    /// them as a new generation that replaces it), before the window is written again.
    /// Returns how many compacted files were rewritten.
    pub async fn release_window(
        &self,
        tenant_id: &str,
        service: Service,
        table: &str,
        window: &Window,
    ) -> Result<usize, SinkError> {
        let prefix = Self::table_prefix(tenant_id, service, table);
        let stamp = window_stamp(window);
        let mut released = 0;
        // Another compaction of the table may take a generation first: then look again.
        for _ in 0..RELEASE_ATTEMPTS {
            let listing = self.resolve_table(tenant_id, service, table).await?;
            let Some((file, record)) = listing.compacted_holding(&stamp).into_iter().next() else {
                return Ok(released);
            };
            let source = listing
                .live
                .iter()
                .find(|m| m.location.as_ref() == file.as_str())
                .cloned()
                .ok_or_else(|| SinkError::Store(format!("{file} vanished")))?;
            let store = self.store.as_ref();
            let source = RemoteParquet::open(store, &source).await?;
            let kept: Vec<String> = record
                .windows
                .iter()
                .filter(|w| **w != stamp)
                .cloned()
                .collect();
            let first = kept.first().map_or("none", String::as_str).to_string();
            let at = (first.as_str(), kept);
            let mut rw = Rewrite::start(self, &prefix, listing.next_gen, at, &source).await?;
            if let Err(e) = rw.append(store, &source, Some(window)).await {
                rw.out.abort().await;
                return Err(e);
            }
            if self
                .finish(&prefix, rw, listing.next_gen, Some(&stamp), None)
                .await?
                .is_some()
            {
                released += 1;
                tracing::info!(%prefix, window = stamp, from = %file, "window taken out of a compacted file to be written again");
            }
        }
        let listing = self.resolve_table(tenant_id, service, table).await?;
        if listing.compacted_holding(&stamp).is_empty() {
            return Ok(released);
        }
        Err(SinkError::Store(format!(
            "{prefix}: window {stamp} still in a compacted file after {RELEASE_ATTEMPTS} attempts (compactions running at once)"
        )))
    }
}

/// Files of `listing` readers see, with their total size and median size.
pub fn file_stats(files: &[ObjectMeta]) -> (usize, u64, u64) {
    let mut sizes: Vec<u64> = files.iter().map(|m| m.size).collect();
    sizes.sort_unstable();
    let median = match sizes.len() {
        0 => 0,
        n if n % 2 == 1 => sizes[n / 2],
        n => (sizes[n / 2 - 1] + sizes[n / 2]) / 2,
    };
    (sizes.len(), sizes.iter().sum(), median)
}
