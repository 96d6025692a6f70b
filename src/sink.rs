//! Raw sink: turns pages of API records into Arrow, encodes them as Parquet parts (zstd) and
//! puts each part atomically into an object store under `{tenant}/raw/{service}/{table}/`.
//!
//! A chunk's parts are named from its window (`{start}-{end}`) and a part number
//! (`{window}_{part:05}.parquet`), so a retried chunk overwrites its own files, and
//! `remove_parts_from` clears parts a failed attempt left behind (and the staging files a local
//! store's put leaves when the process is killed mid-put).
//!
//! A page's body goes to a borrowed JSON tree (`lite`: strings point into the body) → Arrow
//! (flattening nested objects with `__`, typed coercion, validation, per-page de-duplication) →
//! Parquet on the part's background encoder thread (`encoder`). Building owned `serde_json::Value`
//! trees cost more than everything else together; the borrowed tree is what makes pages cheap.

mod coerce;
pub mod compact;
mod encoder;
mod flatten;
mod json;
mod lite;
mod lookup;
mod writer;

#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod throughput;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::{Path, PathPart};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;

use crate::config::EndpointDef;
use crate::domain::{Service, Window};

pub use lite::RecordsAt;
pub use writer::{MAX_ROW_GROUP_ROWS, META_COLUMNS, PartWriter, raw_schema};

/// Identifies the chunk whose records a part holds; its values fill the metadata columns.
#[derive(Clone, Debug)]
pub struct ChunkMeta {
    pub tenant_id: String,
    pub service: Service,
    pub table: String,
    pub job_id: String,
    pub chunk_seq: u32,
    pub window: Window,
    pub ingested_at: DateTime<Utc>,
}

/// One complete Parquet file, ready to be put.
#[derive(Clone, Debug)]
pub struct EncodedPart {
    pub path: Path,
    pub bytes: bytes::Bytes,
    pub rows: u64,
}

/// A part that was stored.
#[derive(Clone, Debug, Serialize)]
pub struct PartInfo {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A record of the page cannot be stored; the whole page was refused.
    #[error(
        "invalid record in table '{table}' ({}), column '{column}': {reason}",
        describe_record(*position, id.as_deref())
    )]
    InvalidRecord {
        table: String,
        /// Index of the record in its page (0-based).
        position: usize,
        /// The record's id, when it could be read.
        id: Option<String>,
        column: String,
        reason: String,
    },
    /// The page body is not the JSON the API documents (cut short when `truncated`).
    #[error("unreadable page of table '{table}': {reason}")]
    Malformed {
        table: String,
        reason: String,
        truncated: bool,
    },
    #[error("parquet encoding failed: {0}")]
    Encode(String),
    #[error("object store: {0}")]
    Store(String),
    /// The device holding the data is full (or over its quota): no attempt can help until
    /// space is freed, and it is no fault of the chunk.
    #[error("disk full: {0}")]
    DiskFull(String),
}

/// Whether an error, or any error under it, is the operating system saying the device is full
/// (`ENOSPC`) or the user's quota is used up (`EDQUOT`).
pub fn is_disk_full(e: &(dyn std::error::Error + 'static)) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && (io.kind() == std::io::ErrorKind::StorageFull
                || matches!(io.raw_os_error(), Some(ENOSPC | EDQUOT)))
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// A failed write of `what` as a `SinkError`: `DiskFull` when the device is full.
fn write_error(what: String, e: object_store::Error) -> SinkError {
    if is_disk_full(&e) {
        SinkError::DiskFull(format!("{what}: {e}"))
    } else {
        SinkError::Store(format!("{what}: {e}"))
    }
}

fn describe_record(position: usize, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("id {id}, record #{position} of the page"),
        None => format!("record #{position} of the page, id unknown"),
    }
}

/// Deletes `{stamp}_NNNNN.parquet#k` staging files of parts >= `first_part` in `dir`.
async fn remove_staging_leftovers(
    dir: &std::path::Path,
    stamp: &str,
    first_part: u32,
) -> Result<u32, SinkError> {
    remove_staging_where(dir, |part, _| {
        part_number(part, stamp).is_some_and(|n| n >= first_part)
    })
    .await
}

/// Deletes the staging files (`{name}#k`) in `dir` for which `matches(name, metadata)`.
async fn remove_staging_where(
    dir: &std::path::Path,
    matches: impl Fn(&str, &std::fs::Metadata) -> bool,
) -> Result<u32, SinkError> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(SinkError::Store(format!("listing {}: {e}", dir.display()))),
    };
    let mut removed = 0;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| SinkError::Store(format!("listing {}: {e}", dir.display())))?
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((part, _)) = name.split_once('#') else {
            continue;
        };
        let Ok(meta) = entry.metadata().await else {
            continue;
        };
        if matches(part, &meta) {
            match tokio::fs::remove_file(entry.path()).await {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(SinkError::Store(format!(
                        "delete {}: {e}",
                        entry.path().display()
                    )));
                }
            }
        }
    }
    Ok(removed)
}

/// Where raw Parquet parts are stored.
#[derive(Clone, Debug)]
pub struct RawSink {
    store: Arc<dyn ObjectStore>,
    /// The folder behind a local store: a process killed mid-put leaves the store's staging
    /// file (`{name}#{n}`) there, which listings do not show and only a disk scan can clear.
    local_root: Option<std::path::PathBuf>,
    /// What a compaction may hold in memory while it writes a file.
    compact_limits: compact::StreamLimits,
}

/// The window as it appears in part file names: `{start}-{end}`, both `%Y%m%dT%H%M%SZ`.
///
/// Both ends are in the name so only the same window overwrites a part: a later job with
/// another chunk size that starts on the same instant must not replace a longer window's file.
pub fn window_stamp(window: &Window) -> String {
    format!(
        "{}-{}",
        window.start.format("%Y%m%dT%H%M%SZ"),
        window.end.format("%Y%m%dT%H%M%SZ")
    )
}

/// The window (`{start}-{end}`) of `file` when it is a part name `{start}-{end}_NNNNN.parquet`.
pub fn part_window(file: &str) -> Option<&str> {
    let (stamp, _) = file.rsplit_once('_')?;
    part_number(file, stamp).map(|_| stamp)
}

/// The part number of `file` when it is `{stamp}_NNNNN.parquet`.
fn part_number(file: &str, stamp: &str) -> Option<u32> {
    let digits = file
        .strip_prefix(stamp)?
        .strip_prefix('_')?
        .strip_suffix(".parquet")?;
    if digits.len() < 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl RawSink {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        RawSink {
            store,
            local_root: None,
            compact_limits: compact::StreamLimits::default(),
        }
    }

    /// The same store, compacting within `limits` (tests use small ones).
    pub fn with_compact_limits(self, limits: compact::StreamLimits) -> Self {
        RawSink {
            compact_limits: limits,
            ..self
        }
    }

    /// LocalFileSystem rooted at `root` (created if missing). Puts are fsynced (file and
    /// directory) before they return, so a part reported stored survives a crash.
    pub fn local(root: &std::path::Path) -> Result<Self, SinkError> {
        std::fs::create_dir_all(root)
            .map_err(|e| SinkError::Store(format!("creating {}: {e}", root.display())))?;
        let fs = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| SinkError::Store(format!("opening {}: {e}", root.display())))?
            .with_fsync(true);
        Ok(RawSink {
            local_root: Some(root.to_path_buf()),
            ..RawSink::new(Arc::new(fs))
        })
    }

    /// `{tenant_id}/raw/{service}/{table}`
    pub fn table_prefix(tenant_id: &str, service: Service, table: &str) -> Path {
        Path::from_iter([
            PathPart::from(tenant_id),
            PathPart::from("raw"),
            PathPart::from(service.as_str()),
            PathPart::from(table),
        ])
    }

    /// `{table_prefix}/{start}-{end}_{part:05}.parquet` (instants as `%Y%m%dT%H%M%SZ`):
    /// deterministic per chunk window and part, so a retried chunk overwrites its own files.
    pub fn part_path(meta: &ChunkMeta, part: u32) -> Path {
        let file = format!("{}_{part:05}.parquet", window_stamp(&meta.window));
        Self::table_prefix(&meta.tenant_id, meta.service, &meta.table).join(file)
    }

    pub fn part_writer(
        &self,
        meta: ChunkMeta,
        endpoint: &EndpointDef,
    ) -> Result<PartWriter, SinkError> {
        PartWriter::new(meta, endpoint)
    }

    /// Atomic put: the object appears whole or not at all (LocalFileSystem stages the bytes
    /// under `{name}#{n}` and renames; an S3 PUT is atomic), overwriting an earlier attempt.
    pub async fn put_part(&self, part: EncodedPart) -> Result<PartInfo, SinkError> {
        let bytes = part.bytes.len() as u64;
        self.store
            .put(&part.path, PutPayload::from_bytes(part.bytes))
            .await
            .map_err(|e| write_error(format!("put {}", part.path), e))?;
        tracing::debug!(path = %part.path, rows = part.rows, bytes, "stored raw part");
        Ok(PartInfo {
            path: part.path.to_string(),
            rows: part.rows,
            bytes,
        })
    }

    /// Deletes this chunk's parts numbered >= `first_part` (lists the table prefix, matches
    /// `{start}-{end}_NNNNN.parquet`); returns how many were removed.
    pub async fn remove_parts_from(
        &self,
        meta: &ChunkMeta,
        first_part: u32,
    ) -> Result<u32, SinkError> {
        let prefix = Self::table_prefix(&meta.tenant_id, meta.service, &meta.table);
        let stamp = window_stamp(&meta.window);
        let depth = prefix.parts().count() + 1;
        let mut removed = 0;
        for path in self.list(&prefix).await? {
            if path.parts().count() != depth {
                continue;
            }
            let Some(n) = path.filename().and_then(|f| part_number(f, &stamp)) else {
                continue;
            };
            if n < first_part {
                continue;
            }
            match self.store.delete(&path).await {
                Ok(()) => removed += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(SinkError::Store(format!("delete {path}: {e}"))),
            }
        }
        if let Some(root) = &self.local_root {
            removed +=
                remove_staging_leftovers(&root.join(prefix.as_ref()), &stamp, first_part).await?;
        }
        if removed > 0 {
            tracing::debug!(%prefix, stamp, first_part, removed, "removed stale raw parts");
        }
        Ok(removed)
    }

    /// The files holding one chunk window's rows, sorted by path: its parts
    /// (`{start}-{end}_NNNNN.parquet`) and the compacted files whose record names the window
    /// (they hold other windows' rows too: select by `_avesa_chunk_start`/`_avesa_chunk_end`).
    pub async fn chunk_parts(
        &self,
        tenant_id: &str,
        service: Service,
        table: &str,
        window: &Window,
    ) -> Result<Vec<Path>, SinkError> {
        let stamp = window_stamp(window);
        let listing = self.resolve_table(tenant_id, service, table).await?;
        let holding = listing.compacted_holding(&stamp);
        Ok(listing
            .live
            .iter()
            .map(|m| &m.location)
            .filter(|p| {
                p.filename().and_then(|f| part_number(f, &stamp)).is_some()
                    || holding.iter().any(|(f, _)| f.as_str() == p.as_ref())
            })
            .cloned()
            .collect())
    }

    /// The table's raw files readers see (`list_table_objects`), sorted by path.
    pub async fn list_table_files(
        &self,
        tenant_id: &str,
        service: Service,
        table: &str,
    ) -> Result<Vec<Path>, SinkError> {
        Ok(self
            .list_table_objects(tenant_id, service, table)
            .await?
            .into_iter()
            .map(|m| m.location)
            .collect())
    }

    /// The table's raw files readers see, with their sizes, sorted by path: parts and
    /// compacted files, the compaction records applied (`RawSink::resolve_table`).
    pub async fn list_table_objects(
        &self,
        tenant_id: &str,
        service: Service,
        table: &str,
    ) -> Result<Vec<ObjectMeta>, SinkError> {
        Ok(self.resolve_table(tenant_id, service, table).await?.live)
    }

    async fn list(&self, prefix: &Path) -> Result<Vec<Path>, SinkError> {
        self.store
            .list(Some(prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| SinkError::Store(format!("list {prefix}: {e}")))
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }
}
