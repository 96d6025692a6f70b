//! The transform's files and thread: raw files copied to local files and read a batch at a
//! time (`download`, `read_mapped`), canonical files written with fixed settings (`Writer`)
//! and uploaded from local files (`upload`), and the one thread that maps and merges
//! (`on_transform_thread`).

use std::sync::Arc;

use bytes::Bytes;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{ROW_GROUP_ROWS, TransformError, map_raw, raw_columns_needed};
use crate::config::{CanonicalTable, EndpointDef, SourceMapping};

/// Work sent to the transform thread.
pub(super) type ThreadJob = Box<dyn FnOnce() + Send>;

/// The transform thread's queue; the thread starts with the first job.
pub(super) static TRANSFORM_THREAD: std::sync::OnceLock<
    std::sync::Mutex<std::sync::mpsc::Sender<ThreadJob>>,
> = std::sync::OnceLock::new();

/// Runs `f` on the process's one transform thread, off the async threads. Not on
/// `spawn_blocking`'s pool: glibc's allocator keeps what a thread frees in that thread's
/// arena (up to eight per core), and mapping and merging on whichever pool thread was free
/// left up to a bucket's worth in each (a 1M-ticket full build peaked at 635 MB, 115 MB in
/// one arena). On one thread, the memory one step frees is what the next one reuses.
pub(super) async fn on_transform_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TransformError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: ThreadJob = Box::new(move || {
        let _ = tx.send(f());
    });
    let queue = TRANSFORM_THREAD.get_or_init(|| {
        let (send, receive) = std::sync::mpsc::channel::<ThreadJob>();
        let started = std::thread::Builder::new()
            .name("avesa-transform".into())
            .spawn(move || {
                for job in receive {
                    // A step that panics drops its answer (its caller sees an error); the
                    // thread goes on with the next.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the transform thread");
        }
        std::sync::Mutex::new(send)
    });
    let sent = queue
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(job)
        .is_ok();
    match (sent, rx.await) {
        (true, Ok(v)) => Ok(v),
        _ => Err(TransformError::Store(
            "the transform thread stopped (a step panicked or it could not start)".into(),
        )),
    }
}

/// Copies the object at `path` to an anonymous local file (gone when closed, or when the
/// process dies), a chunk of the download at a time, so a raw file of any size is read
/// from disk a row group at a time rather than held whole.
pub(super) async fn download(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
) -> Result<std::fs::File, TransformError> {
    use futures::StreamExt;
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
    let local = tempfile::tempfile()
        .map_err(|e| TransformError::Store(format!("cannot create a local file: {e}")))?;
    let mut file = tokio::fs::File::from_std(local);
    let mut stream = store
        .get(path)
        .await
        .map_err(|e| TransformError::Store(format!("get {path}: {e}")))?
        .into_stream();
    let io = |e: std::io::Error| TransformError::Store(format!("copy {path} locally: {e}"));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| TransformError::Store(format!("read {path}: {e}")))?;
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    file.seek(std::io::SeekFrom::Start(0)).await.map_err(io)?;
    Ok(file.into_std().await)
}

/// Uploads a finished local file to `path`: one put up to `part_bytes`, else a multipart
/// upload in parts of that size. Either way readers see the previous history or the new
/// one, never a mix.
pub(super) async fn upload(
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

pub(super) async fn get_bytes(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
) -> Result<Bytes, TransformError> {
    store
        .get(path)
        .await
        .map_err(|e| TransformError::Store(format!("get {path}: {e}")))?
        .bytes()
        .await
        .map_err(|e| TransformError::Store(format!("read {path}: {e}")))
}

/// Rows per batch read from a raw file: a raw part's row group.
pub(super) const RAW_BATCH_ROWS: usize = crate::sink::MAX_ROW_GROUP_ROWS;

/// Reads only the columns the mapping needs from one raw file, `RAW_BATCH_ROWS` at a time,
/// and hands each batch, mapped, to `each` before the next is read.
pub(super) fn read_mapped<R: parquet::file::reader::ChunkReader + 'static>(
    file: R,
    table: &CanonicalTable,
    src: &SourceMapping,
    endpoint: &EndpointDef,
    origin: &str,
    mut each: impl FnMut(arrow_array::RecordBatch) -> Result<(), TransformError>,
) -> Result<(), TransformError> {
    let data_err = |e: &dyn std::fmt::Display| TransformError::Data {
        origin: origin.to_string(),
        reason: e.to_string(),
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| data_err(&e))?;
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
    let reader = builder
        .with_projection(mask)
        .with_batch_size(RAW_BATCH_ROWS)
        .build()
        .map_err(|e| data_err(&e))?;
    for batch in reader {
        let batch = batch.map_err(|e| data_err(&e))?;
        each(map_raw(&batch, table, src, endpoint, origin)?)?;
    }
    Ok(())
}

/// A canonical Parquet file being written. Fixed writer settings and no wall-clock
/// metadata, so the same rows always encode to the same bytes.
pub(super) struct Writer<W: std::io::Write + Send> {
    inner: ArrowWriter<W>,
}

pub(super) fn perr(e: impl std::fmt::Display) -> TransformError {
    TransformError::Parquet(e.to_string())
}

impl<W: std::io::Write + Send> Writer<W> {
    pub(super) fn new(schema: arrow_schema::SchemaRef, out: W) -> Result<Self, TransformError> {
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
    pub(super) fn write(&mut self, batch: &arrow_array::RecordBatch) -> Result<(), TransformError> {
        self.inner.write(batch).map_err(perr)
    }

    pub(super) fn finish(self) -> Result<W, TransformError> {
        self.inner.into_inner().map_err(perr)
    }
}

/// Parquet bytes of one batch, written as `run` writes canonical files.
pub fn encode(batch: &arrow_array::RecordBatch) -> Result<Bytes, TransformError> {
    let mut w = Writer::new(batch.schema(), Vec::new())?;
    w.write(batch)?;
    Ok(Bytes::from(w.finish()?))
}
