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
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow_array::{Array, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow_ipc::MetadataVersion;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_schema::SchemaRef;
use arrow_select::coalesce::BatchCoalescer;

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

/// Bytes a bucket file's writer buffers before writing to its file.
const SPILL_WRITE_BUFFER: usize = 8 * 1024;

/// Rows per batch read back from a bucket file (the small batches spilled are joined).
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
///
/// A bucket file is an Arrow IPC stream: each batch's rows of a bucket are appended to it as
/// they come, so an open bucket costs its write buffer (`SPILL_WRITE_BUFFER`) and no encoder
/// state. (Parquet writers, one per bucket, each held a row group in progress with its
/// column encoders, dictionaries and pages: 96 buckets made the 3M-ticket full build's peak
/// grow with the bucket count.)
pub struct Spill {
    dir: tempfile::TempDir,
    writers: Vec<StreamWriter<BufWriter<File>>>,
    rows: Vec<u64>,
}

fn bucket_path(dir: &Path, b: usize) -> PathBuf {
    dir.join(format!("{b:04}.arrows"))
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
        // Buffers aligned to 8 bytes, not 64: a bucket's part of a batch is a few rows
        // when there are many buckets, and each column's padding is written with it.
        let options = IpcWriteOptions::try_new(8, false, MetadataVersion::V5).map_err(spill_err)?;
        let writers = (0..buckets.max(1))
            .map(|b| {
                let path = bucket_path(dir.path(), b);
                let file = File::create(&path)
                    .map_err(|e| spill_err(format!("cannot create {}: {e}", path.display())))?;
                let out = BufWriter::with_capacity(SPILL_WRITE_BUFFER, file);
                StreamWriter::try_new_with_options(out, &schema, options.clone()).map_err(spill_err)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Spill {
            dir,
            rows: vec![0; writers.len()],
            writers,
        })
    }

    /// Appends each row of `batches` to its record's bucket file.
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
            let path = bucket_path(self.dir.path(), b);
            let out = w.into_inner().map_err(spill_err)?;
            out.into_inner().map_err(|e| {
                spill_err(format!("cannot write {}: {}", path.display(), e.error()))
            })?;
            paths.push(path);
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

    /// Every mapped version of bucket `b`, in batches of up to `READ_BATCH_ROWS` rows.
    pub fn read(&self, b: usize) -> Result<Vec<RecordBatch>, TransformError> {
        let path = &self.paths[b];
        let file = File::open(path)
            .map_err(|e| spill_err(format!("cannot open {}: {e}", path.display())))?;
        let reader = StreamReader::try_new(BufReader::new(file), None).map_err(spill_err)?;
        let mut joined = BatchCoalescer::new(reader.schema(), READ_BATCH_ROWS);
        let mut out = Vec::new();
        for batch in reader {
            joined
                .push_batch(batch.map_err(spill_err)?)
                .map_err(spill_err)?;
            while let Some(done) = joined.next_completed_batch() {
                out.push(done);
            }
        }
        joined.finish_buffered_batch().map_err(spill_err)?;
        out.extend(std::iter::from_fn(|| joined.next_completed_batch()));
        Ok(out)
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

    /// A mapped-like batch: ids `from..to` (as text and number) and a text column of
    /// `width` bytes a row.
    fn versions(from: i64, to: i64, width: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("record_id", DataType::Utf8, false),
            Field::new("record_num", DataType::Int64, true),
            Field::new("body", DataType::Utf8, true),
        ]));
        let ids: Vec<String> = (from..to).map(|n| n.to_string()).collect();
        let body: Vec<String> = (from..to).map(|n| format!("{n:0width$}")).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(ids)),
                Arc::new(Int64Array::from((from..to).collect::<Vec<_>>())),
                Arc::new(StringArray::from(body)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn every_version_comes_back_from_its_bucket_in_batches_of_up_to_the_read_size() {
        let temp = tempfile::tempdir().unwrap();
        let buckets = 7;
        let mut spill = Spill::new_in(temp.path(), buckets, versions(0, 0, 1).schema()).unwrap();
        // Many small batches, as a raw file's batches spread over buckets are.
        for start in (0..200_000).step_by(500) {
            spill.add(&[versions(start, start + 500, 4)]).unwrap();
        }
        let spilled = spill.finish().unwrap();
        let mut seen = 0;
        for b in 0..buckets {
            let batches = spilled.read(b).unwrap();
            assert!(batches.iter().all(|x| x.num_rows() <= READ_BATCH_ROWS));
            assert!(batches.len() <= (spilled.rows(b) as usize).div_ceil(READ_BATCH_ROWS));
            let mut nums = Vec::new();
            for x in &batches {
                let num = x
                    .column(MAPPED_ID_NUM)
                    .as_any()
                    .downcast_ref::<Int64Array>();
                let body = x.column(2).as_any().downcast_ref::<StringArray>();
                let (num, body) = (num.unwrap(), body.unwrap());
                for r in 0..x.num_rows() {
                    assert_eq!(body.value(r), format!("{:04}", num.value(r)));
                    nums.push(num.value(r));
                }
            }
            assert_eq!(nums.len() as u64, spilled.rows(b));
            assert!(
                nums.windows(2).all(|w| w[0] < w[1]),
                "bucket {b} out of order"
            );
            assert!(
                nums.iter()
                    .all(|n| bucket_of(Some(*n), "", buckets) == b as u32)
            );
            seen += nums.len();
        }
        assert_eq!(seen, 200_000);
    }

    /// Versions added are on disk at once: an open bucket holds at most its write buffer, so
    /// many buckets cost little memory (a Parquet writer per bucket held its row group).
    #[test]
    fn added_versions_are_on_disk_not_held_by_the_spill() {
        let temp = tempfile::tempdir().unwrap();
        let buckets = 4;
        let batch = versions(0, 20_000, 200);
        let mut spill = Spill::new_in(temp.path(), buckets, batch.schema()).unwrap();
        spill.add(std::slice::from_ref(&batch)).unwrap();
        let on_disk: u64 = std::fs::read_dir(spill.dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        let bodies = 20_000 * 200;
        assert!(
            on_disk >= bodies,
            "{on_disk} bytes on disk of the {bodies} bytes of text added"
        );
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
