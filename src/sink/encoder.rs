//! Parquet encoding off the async threads: every PartWriter's RecordBatches are written into
//! its streaming `ArrowWriter<Vec<u8>>` by the process's encoder pool, so compressing one page
//! overlaps flattening the next.
//!
//! The pool has one thread per core, whatever the number of writers (each writer keeps to one
//! thread, so its row groups live in one allocator arena): an open row group holds
//! a zstd compressor and decompressor per column (~0.3 MB each for a wide table), so the row
//! groups being encoded at once, and the allocator arenas that keep their memory, are bounded
//! by the cores, not by the windows in flight. A writer hands over one batch at a time (the
//! next waits until the previous one is encoded), which bounds its memory in flight to the
//! batch being encoded, the one being built, and the part.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

/// Address space reserved for a part's bytes. Only the pages written become resident; the
/// point is that an allocation this large is always mmap'ed by glibc, so growing the file
/// never copies it (and never leaves a retired copy in the heap).
const OUTPUT_RESERVE: usize = 32 << 20;

type Job = Box<dyn FnOnce() + Send>;

/// The process's encoder threads, started on first use, each with its own queue. A writer
/// keeps to one thread (round robin as writers start), so one window's row groups are
/// allocated by one thread and live in one allocator arena.
struct Pool {
    queues: Vec<Mutex<Sender<Job>>>,
    next: AtomicUsize,
}

fn pool() -> Result<&'static Pool, EncodeError> {
    static POOL: OnceLock<Result<Pool, EncodeError>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut queues = Vec::with_capacity(threads);
        for i in 0..threads {
            let (tx, rx) = channel::<Job>();
            std::thread::Builder::new()
                .name(format!("parquet-encoder-{i}"))
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })
                .map_err(|e| EncodeError::Start(e.to_string()))?;
            queues.push(Mutex::new(tx));
        }
        Ok(Pool {
            queues,
            next: AtomicUsize::new(0),
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The queue of the next writer: round robin over the threads.
fn assign() -> Result<usize, EncodeError> {
    let pool = pool()?;
    Ok(pool.next.fetch_add(1, Ordering::Relaxed) % pool.queues.len())
}

fn submit(queue: usize, job: Job) -> Result<(), EncodeError> {
    let pool = pool()?;
    let jobs = pool.queues[queue].lock().unwrap_or_else(|p| p.into_inner());
    jobs.send(job)
        .map_err(|_| EncodeError::Stopped("the encoder pool is gone".into()))
}

/// Why a part could not be encoded.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    #[error("starting the encoder threads: {0}")]
    Start(String),
    /// Encoding panicked, with its panic message.
    #[error("the encoder stopped: {0}")]
    Stopped(String),
    /// Parquet refused a batch or the file's footer.
    #[error("{0}")]
    Parquet(String),
}

#[derive(Default)]
struct Stats {
    /// Encoded bytes held by the writer (output written + buffered pages and dictionaries).
    encoded: AtomicUsize,
    /// Arrow memory of batches handed over but not yet written.
    queued: AtomicUsize,
}

/// The file being written and the first error that spoiled it.
#[derive(Default)]
struct File {
    writer: Option<ArrowWriter<Vec<u8>>>,
    error: Option<EncodeError>,
}

struct Shared {
    file: Mutex<File>,
    stats: Stats,
    schema: SchemaRef,
    props: WriterProperties,
    /// Close the row group after every batch (see `Encoder::row_group_per_batch`).
    row_group_per_batch: bool,
}

/// One part at a time, encoded by the pool. Dropping it drops the file being written.
pub(crate) struct Encoder {
    shared: Arc<Shared>,
    /// Signalled when the batch handed over last is encoded.
    pending: Option<Receiver<()>>,
    /// The pool thread this writer keeps to (chosen at its first batch).
    queue: Option<usize>,
}

impl Encoder {
    pub(crate) fn new(schema: SchemaRef, props: WriterProperties) -> Self {
        Encoder {
            shared: Arc::new(Shared {
                file: Mutex::default(),
                stats: Stats::default(),
                schema,
                props,
                row_group_per_batch: false,
            }),
            pending: None,
            queue: None,
        }
    }

    fn queue(&mut self) -> Result<usize, EncodeError> {
        match self.queue {
            Some(q) => Ok(q),
            None => Ok(*self.queue.insert(assign()?)),
        }
    }

    /// Every batch becomes a row group of its own, closed before the next batch: between
    /// batches the writer holds only encoded bytes, no column encoders. Used when several
    /// windows write at once and each waits for its next page with its part open.
    pub(crate) fn row_group_per_batch(mut self) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.row_group_per_batch = true;
        }
        self
    }

    /// Waits until the batch handed over last is encoded.
    fn settle(&mut self) -> Result<(), EncodeError> {
        match self.pending.take() {
            Some(done) => done
                .recv()
                .map_err(|_| EncodeError::Stopped("an encoder thread exited".into())),
            None => Ok(()),
        }
    }

    /// Hands a batch to the pool; first waits while the previous one is still being encoded.
    pub(crate) fn write(&mut self, batch: RecordBatch) -> Result<(), EncodeError> {
        self.settle()?;
        let size = batch.get_array_memory_size();
        self.shared.stats.queued.fetch_add(size, Ordering::Relaxed);
        let (done_tx, done_rx) = sync_channel(1);
        let shared = self.shared.clone();
        submit(
            self.queue()?,
            Box::new(move || {
                encode(&shared, batch);
                shared.stats.queued.fetch_sub(size, Ordering::Relaxed);
                let _ = done_tx.send(());
            }),
        )?;
        self.pending = Some(done_rx);
        Ok(())
    }

    /// Waits for the batch in progress, closes the file and returns its bytes (empty when
    /// nothing was written). The footer is written by the pool too.
    pub(crate) fn finish(&mut self) -> Result<Vec<u8>, EncodeError> {
        self.settle()?;
        let (reply_tx, reply_rx) = sync_channel(1);
        let shared = self.shared.clone();
        submit(
            self.queue()?,
            Box::new(move || {
                let result = catch_unwind(AssertUnwindSafe(|| close(&shared)))
                    .unwrap_or_else(|panic| Err(EncodeError::Stopped(panic_message(&*panic))));
                shared.stats.encoded.store(0, Ordering::Relaxed);
                let _ = reply_tx.send(result);
            }),
        )?;
        reply_rx
            .recv()
            .unwrap_or_else(|_| Err(EncodeError::Stopped("an encoder thread exited".into())))
    }

    /// Approximate bytes held for the current file, queued batches included.
    pub(crate) fn buffered_bytes(&self) -> usize {
        let stats = &self.shared.stats;
        stats.encoded.load(Ordering::Relaxed) + stats.queued.load(Ordering::Relaxed)
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, File> {
    shared.file.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes one batch into the file (starting it when needed); an error or a panic spoils the
/// file, which `finish` then reports.
fn encode(shared: &Shared, batch: RecordBatch) {
    let mut file = lock(shared);
    if file.error.is_some() {
        return;
    }
    let written = catch_unwind(AssertUnwindSafe(|| -> Result<usize, EncodeError> {
        let parquet = |e: parquet::errors::ParquetError| EncodeError::Parquet(e.to_string());
        if file.writer.is_none() {
            let out = Vec::with_capacity(OUTPUT_RESERVE);
            let w = ArrowWriter::try_new(out, shared.schema.clone(), Some(shared.props.clone()))
                .map_err(parquet)?;
            file.writer = Some(w);
        }
        let w = file
            .writer
            .as_mut()
            .ok_or(EncodeError::Stopped("no writer".into()))?;
        w.write(&batch).map_err(parquet)?;
        if shared.row_group_per_batch {
            w.flush().map_err(parquet)?;
        }
        Ok(w.inner().len() + w.memory_size())
    }))
    .unwrap_or_else(|panic| Err(EncodeError::Stopped(panic_message(&*panic))));
    match written {
        Ok(held) => shared.stats.encoded.store(held, Ordering::Relaxed),
        Err(e) => {
            file.error = Some(e);
            file.writer = None;
            shared.stats.encoded.store(0, Ordering::Relaxed);
        }
    }
}

/// Closes the file: its bytes, or the error that spoiled it. Either way the next batch
/// starts a new file.
fn close(shared: &Shared) -> Result<Vec<u8>, EncodeError> {
    let mut file = lock(shared);
    match (file.error.take(), file.writer.take()) {
        (Some(e), _) => Err(e),
        (None, Some(w)) => w
            .into_inner()
            .map_err(|e| EncodeError::Parquet(e.to_string())),
        (None, None) => Ok(Vec::new()),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    fn schema(kind: DataType) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("x", kind, true)]))
    }

    #[test]
    fn batches_become_one_file_per_finish() {
        let mut enc = Encoder::new(schema(DataType::Int64), WriterProperties::default());
        assert_eq!(
            enc.finish().unwrap(),
            Vec::<u8>::new(),
            "nothing written yet"
        );
        let batch = |v: Vec<i64>| {
            RecordBatch::try_new(schema(DataType::Int64), vec![Arc::new(Int64Array::from(v))])
                .unwrap()
        };
        enc.write(batch(vec![1, 2])).unwrap();
        enc.write(batch(vec![3])).unwrap();
        assert!(enc.buffered_bytes() > 0);
        let file = enc.finish().unwrap();
        assert_eq!(&file[..4], b"PAR1");
        assert_eq!(enc.buffered_bytes(), 0);
        enc.write(batch(vec![4])).unwrap();
        assert!(enc.finish().unwrap().starts_with(b"PAR1"));
    }

    fn ints(v: Vec<i64>) -> RecordBatch {
        RecordBatch::try_new(schema(DataType::Int64), vec![Arc::new(Int64Array::from(v))]).unwrap()
    }

    fn row_groups(file: Vec<u8>) -> Vec<i64> {
        let reader =
            parquet::file::reader::SerializedFileReader::new(bytes::Bytes::from(file)).unwrap();
        use parquet::file::reader::FileReader;
        let meta = reader.metadata();
        meta.row_groups().iter().map(|g| g.num_rows()).collect()
    }

    #[test]
    fn a_row_group_per_batch_closes_each_batch_and_otherwise_batches_share_one() {
        let mut one = Encoder::new(schema(DataType::Int64), WriterProperties::default());
        let mut each = Encoder::new(schema(DataType::Int64), WriterProperties::default())
            .row_group_per_batch();
        for enc in [&mut one, &mut each] {
            enc.write(ints(vec![1, 2, 3])).unwrap();
            enc.write(ints(vec![4, 5])).unwrap();
        }
        assert_eq!(row_groups(one.finish().unwrap()), vec![5]);
        assert_eq!(row_groups(each.finish().unwrap()), vec![3, 2]);
    }

    #[test]
    fn many_writers_share_the_pool_and_each_gets_its_own_rows_in_order() {
        let threads: Vec<_> = (0..16i64)
            .map(|w| {
                std::thread::spawn(move || {
                    let mut enc =
                        Encoder::new(schema(DataType::Int64), WriterProperties::default());
                    for b in 0..20 {
                        enc.write(ints((0..50).map(|i| w * 1_000_000 + b * 100 + i).collect()))
                            .unwrap();
                    }
                    (w, enc.finish().unwrap())
                })
            })
            .collect();
        for t in threads {
            let (w, file) = t.join().unwrap();
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
                bytes::Bytes::from(file),
                1024,
            )
            .unwrap();
            let got: Vec<i64> = reader
                .flat_map(|b| {
                    let b = b.unwrap();
                    let col = b
                        .column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .clone();
                    col.values().to_vec()
                })
                .collect();
            let want: Vec<i64> = (0..20)
                .flat_map(|b| (0..50).map(move |i| w * 1_000_000 + b * 100 + i))
                .collect();
            assert_eq!(got, want, "writer {w}");
        }
    }

    #[test]
    fn an_encoding_error_is_reported_by_finish() {
        let mut enc = Encoder::new(schema(DataType::Int64), WriterProperties::default());
        let wrong = RecordBatch::try_new(
            schema(DataType::Utf8),
            vec![Arc::new(StringArray::from(vec!["a"]))],
        )
        .unwrap();
        enc.write(wrong).unwrap();
        let err = enc.finish().unwrap_err();
        assert!(!err.to_string().is_empty());
    }
}
