//! Long histories in bounded memory: the mapped versions are spread over record-id buckets
//! in local spill files, and each bucket's history is built on its own. Every version of a
//! record lands in the same bucket, so the buckets' histories are disjoint and together make
//! the whole history; only one bucket's versions are in memory at a time.
//!
//! The bucket count follows from the raw data's size, and the bucket of a record from its
//! id, so the same raw data always gives the same buckets and the same output bytes.

use std::fs::File;
use std::path::PathBuf;

use arrow_array::{Array, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::TransformError;
use super::mapping::{MAPPED_ID, MAPPED_ID_NUM};

/// Raw Parquet bytes per bucket: about 190,000 ticket versions (`bench` measures the
/// transform's peak memory at this size).
pub const BUCKET_RAW_BYTES: u64 = 32 * 1024 * 1024;

/// At most this many buckets, each an open spill file while the raw data is read. Past
/// `MAX_BUCKETS * BUCKET_RAW_BYTES` (8 GB of raw Parquet per table) buckets grow instead.
pub const MAX_BUCKETS: u64 = 256;

/// How many buckets `raw_bytes` of raw Parquet are spread over (1: no spilling).
pub fn buckets_for(raw_bytes: u64, per_bucket: u64) -> usize {
    raw_bytes.div_ceil(per_bucket.max(1)).clamp(1, MAX_BUCKETS) as usize
}

/// Rows the bucket files' writers hold in progress, together.
const SPILL_BUFFER_ROWS: usize = 65_536;

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
            let h = if nums.is_null(r) {
                twox_hash::XxHash3_64::oneshot(ids.value(r).as_bytes())
            } else {
                twox_hash::XxHash3_64::oneshot(&nums.value(r).to_le_bytes())
            };
            (h % buckets as u64) as u32
        })
        .collect())
}

/// Mapped versions being spread over bucket files.
pub struct Spill {
    dir: tempfile::TempDir,
    writers: Vec<ArrowWriter<File>>,
}

impl Spill {
    /// `buckets` empty spill files for batches of `schema`, in a new temporary directory.
    pub fn new(buckets: usize, schema: SchemaRef) -> Result<Spill, TransformError> {
        let dir = tempfile::Builder::new()
            .prefix("avesa-transform-")
            .tempdir()
            .map_err(|e| spill_err(format!("cannot create a spill directory: {e}")))?;
        // Read back once, soon: fast to write beats small. A writer holds its row group in
        // progress, so the buckets share `SPILL_BUFFER_ROWS` between them; and it keeps
        // every row group's metadata until it closes, so no statistics.
        let props = WriterProperties::builder()
            .set_compression(Compression::UNCOMPRESSED)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_max_row_group_row_count(Some((SPILL_BUFFER_ROWS / buckets).max(1024)))
            .build();
        let writers = (0..buckets)
            .map(|b| {
                let path = dir.path().join(format!("{b:04}.parquet"));
                let file = File::create(&path)
                    .map_err(|e| spill_err(format!("cannot create {}: {e}", path.display())))?;
                ArrowWriter::try_new(file, schema.clone(), Some(props.clone())).map_err(spill_err)
            })
            .collect::<Result<_, _>>()?;
        Ok(Spill { dir, writers })
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
        })
    }
}

/// Closed bucket files; removed with their directory when dropped.
pub struct Spilled {
    _dir: tempfile::TempDir,
    paths: Vec<PathBuf>,
}

impl Spilled {
    pub fn buckets(&self) -> usize {
        self.paths.len()
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
