//! Versions spread over record-id buckets in local spill files, so each bucket's history is
//! built (or merged) on its own. Every version of a record lands in the same bucket, so the
//! buckets' histories are disjoint and together make the whole history; only one bucket's
//! versions are in memory at a time.
//!
//! The bucket count follows from the raw data's size when a table is built in full, and is
//! then fixed in its manifest; the bucket of a record follows from its id (`bucket_of`).
//!
//! A process keeps its spill folders in one folder of the system's temporary directory,
//! `avesa-spill-{host}-{pid}`. A spill folder is removed when its bucket files have been read;
//! one left by a killed process is removed by the next transform on the host, which removes
//! the folders of this host's processes that are gone (and only folders named so).

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::TransformError;
use super::mapping::{MAPPED_ID, MAPPED_ID_NUM};

/// Raw Parquet bytes per bucket when a table is built in full: about 20,000 ticket versions,
/// a bucket file of about a third of this (`bench` measures the transform's peak memory at
/// this size). A merge holds one bucket's history.
pub const BUCKET_RAW_BYTES: u64 = 4 * 1024 * 1024;

/// At most this many buckets, each an open spill file while the raw data is read. Past
/// `MAX_BUCKETS * BUCKET_RAW_BYTES` of raw Parquet per table, buckets grow instead.
pub const MAX_BUCKETS: u64 = 512;

/// How many buckets `raw_bytes` of raw Parquet are spread over (1: no spilling).
pub fn buckets_for(raw_bytes: u64, per_bucket: u64) -> usize {
    raw_bytes.div_ceil(per_bucket.max(1)).clamp(1, MAX_BUCKETS) as usize
}

/// Rows the bucket files' writers hold in progress, together (each at least
/// `MIN_SPILL_ROW_GROUP`).
const SPILL_BUFFER_ROWS: usize = 32_768;

/// Fewest rows in a spill file's row group.
const MIN_SPILL_ROW_GROUP: usize = 64;

/// Rows per batch read back from a bucket file.
const READ_BATCH_ROWS: usize = 65_536;

fn spill_err(reason: impl std::fmt::Display) -> TransformError {
    TransformError::Data {
        origin: "transform spill".into(),
        reason: reason.to_string(),
    }
}

/// The bucket of each row's record: by its numeric id when it has one (the id the history
/// orders by), else by its id text.
fn buckets_of_rows(batch: &RecordBatch, buckets: usize) -> Result<Vec<u32>, TransformError> {
    let ids = batch
        .column(MAPPED_ID)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| spill_err("record_id has the wrong type"))?;
    let nums = batch
        .column(MAPPED_ID_NUM)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| spill_err("record_num has the wrong type"))?;
    Ok((0..batch.num_rows())
        .map(|r| {
            bucket_of(
                (!nums.is_null(r)).then(|| nums.value(r)),
                ids.value(r),
                buckets,
            )
        })
        .collect())
}

/// The bucket of a record (`layout::BUCKET_HASH`).
pub fn bucket_of(num: Option<i64>, id: &str, buckets: usize) -> u32 {
    let h = match num {
        Some(n) => twox_hash::XxHash3_64::oneshot(&n.to_le_bytes()),
        None => twox_hash::XxHash3_64::oneshot(id.as_bytes()),
    };
    (h % buckets.max(1) as u64) as u32
}

/// The start of the name of every process's spill folder: `{SPILL_FOLDER_PREFIX}{host}-{pid}`.
pub const SPILL_FOLDER_PREFIX: &str = "avesa-spill-";

/// This process's spill folder under `temp`.
pub fn process_folder(temp: &Path) -> PathBuf {
    let (host, pid) = (crate::process::local_host(), std::process::id());
    temp.join(format!("{SPILL_FOLDER_PREFIX}{host}-{pid}"))
}

/// Removes the spill folders under `temp` of this host's processes that are gone (killed
/// before they could remove their own); returns the folders removed. Anything not named
/// like a spill folder, another host's and a live process's are left alone.
pub fn remove_left_over(temp: &Path) -> Vec<PathBuf> {
    let host = crate::process::local_host();
    let pid_of = |name: &str| {
        let (h, pid) = name.strip_prefix(SPILL_FOLDER_PREFIX)?.rsplit_once('-')?;
        (h == host).then(|| pid.parse::<u32>().ok()).flatten()
    };
    let Ok(entries) = std::fs::read_dir(temp) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(pid_of) else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && crate::process::is_gone(pid) && std::fs::remove_dir_all(entry.path()).is_ok() {
            tracing::info!(folder = %entry.path().display(), pid, "removed the spill files of a transform that was killed");
            removed.push(entry.path());
        }
    }
    removed
}

/// Mapped versions being spread over bucket files.
pub struct Spill {
    dir: tempfile::TempDir,
    writers: Vec<ArrowWriter<File>>,
    rows: Vec<u64>,
}

impl Spill {
    /// `buckets` empty spill files for batches of `schema`, in a new folder of this
    /// process's spill folder under the system's temporary directory.
    pub fn new(buckets: usize, schema: SchemaRef) -> Result<Spill, TransformError> {
        Spill::new_in(&std::env::temp_dir(), buckets, schema)
    }

    /// `new` with `temp` for the temporary directory.
    pub fn new_in(temp: &Path, buckets: usize, schema: SchemaRef) -> Result<Spill, TransformError> {
        let mine = process_folder(temp);
        let dir = std::fs::create_dir_all(&mine)
            .and_then(|()| tempfile::Builder::new().prefix("spill-").tempdir_in(&mine))
            .map_err(|e| {
                let at = mine.display();
                spill_err(format!("cannot create a spill directory in {at}: {e}"))
            })?;
        // Read back once, soon: fast to write beats small. A writer holds its row group in
        // progress, so the buckets share `SPILL_BUFFER_ROWS` between them; and it keeps
        // every row group's metadata until it closes, so no statistics.
        let props = WriterProperties::builder()
            .set_compression(Compression::UNCOMPRESSED)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_max_row_group_row_count(Some(
                (SPILL_BUFFER_ROWS / buckets).max(MIN_SPILL_ROW_GROUP),
            ))
            .build();
        let writers: Vec<ArrowWriter<File>> = (0..buckets)
            .map(|b| {
                let path = dir.path().join(format!("{b:04}.parquet"));
                let file = File::create(&path)
                    .map_err(|e| spill_err(format!("cannot create {}: {e}", path.display())))?;
                ArrowWriter::try_new(file, schema.clone(), Some(props.clone())).map_err(spill_err)
            })
            .collect::<Result<_, _>>()?;
        Ok(Spill {
            dir,
            rows: vec![0; writers.len()],
            writers,
        })
    }

    /// Appends each row of `batches` to its record's bucket. A bucket's rows go to its file
    /// a row group at a time.
    pub fn add(&mut self, batches: &[RecordBatch]) -> Result<(), TransformError> {
        let buckets = self.writers.len();
        for batch in batches {
            let of = buckets_of_rows(batch, buckets)?;
            let mut rows: Vec<Vec<u32>> = vec![Vec::new(); buckets];
            for (r, b) in of.iter().enumerate() {
                rows[*b as usize].push(r as u32);
            }
            for (b, picks) in rows.into_iter().enumerate() {
                if picks.is_empty() {
                    continue;
                }
                let part = arrow_select::take::take_record_batch(batch, &UInt32Array::from(picks))
                    .map_err(spill_err)?;
                self.rows[b] += part.num_rows() as u64;
                self.writers[b].write(&part).map_err(spill_err)?;
            }
        }
        Ok(())
    }

    /// Closes the bucket files for reading.
    pub fn finish(self) -> Result<Spilled, TransformError> {
        let mut paths = Vec::with_capacity(self.writers.len());
        for (b, w) in self.writers.into_iter().enumerate() {
            w.close().map_err(spill_err)?;
            paths.push(self.dir.path().join(format!("{b:04}.parquet")));
        }
        Ok(Spilled {
            _dir: self.dir,
            paths,
            rows: self.rows,
        })
    }
}

/// Closed bucket files; removed with their directory when dropped.
pub struct Spilled {
    _dir: tempfile::TempDir,
    paths: Vec<PathBuf>,
    rows: Vec<u64>,
}

impl Spilled {
    /// Versions spilled to bucket `b`.
    pub fn rows(&self, b: usize) -> u64 {
        self.rows[b]
    }

    /// Every mapped version of bucket `b`.
    pub fn read(&self, b: usize) -> Result<Vec<RecordBatch>, TransformError> {
        let path = &self.paths[b];
        let file = File::open(path)
            .map_err(|e| spill_err(format!("cannot open {}: {e}", path.display())))?;
        ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|r| r.with_batch_size(READ_BATCH_ROWS).build())
            .map_err(spill_err)?
            .map(|b| b.map_err(spill_err))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    /// A pid beyond Linux's pid_max: surely not a live process.
    const DEAD_PID: u32 = 4_294_967_290;

    #[test]
    fn left_over_folders_of_dead_processes_of_this_host_are_removed_and_no_others() {
        let temp = tempfile::tempdir().unwrap();
        let host = crate::process::local_host();
        let folder = |name: String| {
            let path = temp.path().join(name);
            std::fs::create_dir_all(path.join("spill-x")).unwrap();
            std::fs::write(path.join("spill-x").join("0000.parquet"), b"rows").unwrap();
            path
        };
        let dead = folder(format!("{SPILL_FOLDER_PREFIX}{host}-{DEAD_PID}"));
        let live = process_folder(temp.path());
        std::fs::create_dir_all(&live).unwrap();
        let kept = [
            live,
            folder(format!("{SPILL_FOLDER_PREFIX}elsewhere-{DEAD_PID}")),
            folder(format!("other-{host}-{DEAD_PID}")),
            folder(format!("{SPILL_FOLDER_PREFIX}{host}-notapid")),
        ];
        let file = temp
            .path()
            .join(format!("{SPILL_FOLDER_PREFIX}{host}-{}", DEAD_PID - 1));
        std::fs::write(&file, b"not a folder").unwrap();

        let removed = remove_left_over(temp.path());
        if !Path::new("/proc").is_dir() {
            assert!(
                removed.is_empty(),
                "without /proc no process is known to be gone"
            );
            return;
        }
        assert_eq!(removed, vec![dead.clone()]);
        assert!(!dead.exists());
        for k in kept.iter().chain([&file]) {
            assert!(k.exists(), "{} was removed", k.display());
        }
    }

    #[test]
    fn a_spill_lives_in_this_process_folder_and_leaves_with_its_files() {
        let temp = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let spill = Spill::new_in(temp.path(), 2, schema).unwrap();
        let mine = process_folder(temp.path());
        assert!(
            spill.dir.path().starts_with(&mine),
            "{}",
            spill.dir.path().display()
        );
        let spilled = spill.finish().unwrap();
        assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 1);
        drop(spilled);
        assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 0);
    }
}
