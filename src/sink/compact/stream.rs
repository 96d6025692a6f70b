//! Compacted files in bounded memory: sources are read a row group at a time (ranged gets of
//! the footer, then of each row group's column chunks), and the compacted file is written
//! through a multipart upload in parts of `StreamLimits::upload_part_bytes`, with at most
//! `StreamLimits::parts_in_flight` parts uploading at once and row groups closed at
//! `StreamLimits::row_group_bytes`. So a compaction holds a row group being encoded, one row
//! group being read and a few upload parts, never a whole file, on a local disk and on S3 alike.
//!
//! A multipart upload is invisible until it completes: on S3 the object appears whole when the
//! upload completes; a local store writes a staging file (`{name}#{n}`, never listed) and renames
//! it into place. A write that fails is aborted (S3 drops its parts, the staging file is removed).

use std::io::Write;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, WriteMultipart};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::FOOTER_SIZE;
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{ChunkReader, Length};

use super::super::{MAX_ROW_GROUP_ROWS, SinkError, write_error};

/// The size of one upload part of a compacted file (the smallest S3 accepts but for the last).
pub const UPLOAD_PART_BYTES: usize = 5 * 1024 * 1024;
/// How many upload parts of one compacted file are sent at once.
pub const PARTS_IN_FLIGHT: usize = 2;
/// The encoded size at which a compacted file's row group is closed.
pub const ROW_GROUP_BYTES: usize = 8 * 1024 * 1024;

/// What a compaction may hold in memory while it writes a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    pub upload_part_bytes: usize,
    pub parts_in_flight: usize,
    pub row_group_bytes: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            upload_part_bytes: UPLOAD_PART_BYTES,
            parts_in_flight: PARTS_IN_FLIGHT,
            row_group_bytes: ROW_GROUP_BYTES,
        }
    }
}

/// Writer properties of compacted files: those of parts, without per-column tuning, and row
/// groups bounded in bytes as well as rows.
fn compacted_properties(limits: &StreamLimits) -> Result<WriterProperties, SinkError> {
    let level = ZstdLevel::try_new(1).map_err(|e| SinkError::Encode(e.to_string()))?;
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_max_row_group_bytes(Some(limits.row_group_bytes.max(1)))
        .build())
}

/// `std::io::Write` over a multipart upload: full parts start uploading as they fill.
struct UploadWrite {
    upload: WriteMultipart,
    bytes: u64,
}

impl Write for UploadWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.upload.write(buf);
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A compacted file being written to `path` through a multipart upload.
pub(super) struct StreamWriter {
    writer: ArrowWriter<UploadWrite>,
    path: Path,
    limits: StreamLimits,
}

impl StreamWriter {
    /// Starts the upload of `path` (nothing is visible there until `finish`).
    pub(super) async fn start(
        store: &dyn ObjectStore,
        path: Path,
        schema: SchemaRef,
        limits: StreamLimits,
    ) -> Result<Self, SinkError> {
        let upload = store
            .put_multipart(&path)
            .await
            .map_err(|e| write_error(format!("start upload of {path}"), e))?;
        let sink = UploadWrite {
            upload: WriteMultipart::new_with_chunk_size(upload, limits.upload_part_bytes.max(1)),
            bytes: 0,
        };
        let props = compacted_properties(&limits)?;
        let writer = ArrowWriter::try_new(sink, schema, Some(props))
            .map_err(|e| SinkError::Encode(format!("{path}: {e}")))?;
        Ok(StreamWriter {
            writer,
            path,
            limits,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Encodes `batch`, then waits until no more than the allowed parts are uploading.
    pub(super) async fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.writer
            .write(batch)
            .map_err(|e| SinkError::Encode(format!("{}: {e}", self.path)))?;
        let in_flight = self.limits.parts_in_flight.max(1);
        self.writer
            .inner_mut()
            .upload
            .wait_for_capacity(in_flight)
            .await
            .map_err(|e| write_error(format!("upload of {}", self.path), e))
    }

    /// Writes the footer and completes the upload: the file appears whole. Returns its size.
    pub(super) async fn finish(self) -> Result<u64, SinkError> {
        let path = self.path;
        let sink = self
            .writer
            .into_inner()
            .map_err(|e| SinkError::Encode(format!("{path}: {e}")))?;
        // `finish` aborts the upload itself when a part or the completion fails.
        sink.upload
            .finish()
            .await
            .map_err(|e| write_error(format!("complete upload of {path}"), e))?;
        Ok(sink.bytes)
    }

    /// Drops the upload: nothing appears at the path, uploaded parts are discarded.
    pub(super) async fn abort(self) {
        let path = self.path;
        match self.writer.into_inner() {
            Ok(sink) => {
                if let Err(e) = sink.upload.abort().await {
                    tracing::warn!(%path, "aborting the upload of a compacted file: {e}");
                }
            }
            // The upload is dropped with the writer: a local staging file is removed then.
            Err(e) => tracing::warn!(%path, "closing an abandoned compacted file: {e}"),
        }
    }
}

/// One row group's column chunks of a Parquet file, read by a ranged get; the reader asks
/// only for bytes inside it.
struct RowGroupBytes {
    file_len: u64,
    offset: u64,
    bytes: Bytes,
}

impl RowGroupBytes {
    fn slice(&self, start: u64, len: usize) -> parquet::errors::Result<Bytes> {
        let from = start
            .checked_sub(self.offset)
            .map(|s| s as usize)
            .filter(|s| s + len <= self.bytes.len())
            .ok_or_else(|| {
                parquet::errors::ParquetError::General(format!(
                    "bytes {start}+{len} outside the row group read ({}+{})",
                    self.offset,
                    self.bytes.len()
                ))
            })?;
        Ok(self.bytes.slice(from..from + len))
    }
}

impl Length for RowGroupBytes {
    fn len(&self) -> u64 {
        self.file_len
    }
}

impl ChunkReader for RowGroupBytes {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let end = self.offset + self.bytes.len() as u64;
        let len = end.saturating_sub(start) as usize;
        Ok(bytes::Buf::reader(self.slice(start, len)?))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, length)
    }
}

/// A Parquet file in the store, read by ranged gets: its footer first, then row group by row
/// group.
pub(super) struct RemoteParquet {
    meta: ArrowReaderMetadata,
    file: ObjectMeta,
}

impl RemoteParquet {
    /// Reads the footer of `file`.
    pub(super) async fn open(
        store: &dyn ObjectStore,
        file: &ObjectMeta,
    ) -> Result<Self, SinkError> {
        let path = &file.location;
        let bad = |e: &dyn std::fmt::Display| SinkError::Encode(format!("{path}: {e}"));
        let tail_at = file
            .size
            .checked_sub(FOOTER_SIZE as u64)
            .ok_or_else(|| bad(&"too small to be a Parquet file"))?;
        let tail = get_range(store, path, tail_at, file.size).await?;
        let tail: &[u8; FOOTER_SIZE] = tail.as_ref().try_into().map_err(|e| bad(&e))?;
        let len = FooterTail::try_new(tail)
            .map_err(|e| bad(&e))?
            .metadata_length() as u64;
        let meta_at = tail_at
            .checked_sub(len)
            .ok_or_else(|| bad(&"footer longer than the file"))?;
        let footer = get_range(store, path, meta_at, tail_at).await?;
        let parsed = ParquetMetaDataReader::decode_metadata(&footer).map_err(|e| bad(&e))?;
        let meta = ArrowReaderMetadata::try_new(Arc::new(parsed), ArrowReaderOptions::new())
            .map_err(|e| bad(&e))?;
        Ok(RemoteParquet {
            meta,
            file: file.clone(),
        })
    }

    pub(super) fn schema(&self) -> &SchemaRef {
        self.meta.schema()
    }

    pub(super) fn meta(&self) -> &ObjectMeta {
        &self.file
    }

    pub(super) fn row_groups(&self) -> usize {
        self.meta.metadata().num_row_groups()
    }

    /// The batches of row group `index`, read with one ranged get.
    pub(super) async fn row_group(
        &self,
        store: &dyn ObjectStore,
        index: usize,
    ) -> Result<Vec<RecordBatch>, SinkError> {
        let path = &self.file.location;
        let bad = |e: &dyn std::fmt::Display| SinkError::Encode(format!("{path}: {e}"));
        let group = self.meta.metadata().row_group(index);
        let ranges = group.columns().iter().map(|c| c.byte_range());
        let (start, end) = ranges.fold((u64::MAX, 0), |(s, e), (at, len)| {
            (s.min(at), e.max(at + len))
        });
        if start >= end {
            return Ok(Vec::new());
        }
        let chunk = RowGroupBytes {
            file_len: self.file.size,
            offset: start,
            bytes: get_range(store, path, start, end).await?,
        };
        ParquetRecordBatchReaderBuilder::new_with_metadata(chunk, self.meta.clone())
            .with_row_groups(vec![index])
            .build()
            .map_err(|e| bad(&e))?
            .map(|b| b.map_err(|e| bad(&e)))
            .collect()
    }
}

async fn get_range(
    store: &dyn ObjectStore,
    path: &Path,
    start: u64,
    end: u64,
) -> Result<Bytes, SinkError> {
    store
        .get_range(path, start..end)
        .await
        .map_err(|e| SinkError::Store(format!("get {path} bytes {start}..{end}: {e}")))
}
