//! Background Parquet encoder: one thread per PartWriter writes its RecordBatches into a
//! streaming `ArrowWriter<Vec<u8>>`, so compressing one page overlaps flattening the next.
//!
//! The queue is a rendezvous: a sender waits until the thread takes its batch, which bounds
//! the memory in flight to the batch being encoded, the one being built, and the part.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

/// Address space reserved for a part's bytes. Only the pages written become resident; the
/// point is that an allocation this large is always mmap'ed by glibc, so growing the file
/// never copies it (and never leaves a retired copy in the heap).
const OUTPUT_RESERVE: usize = 32 << 20;

enum Msg {
    Batch(RecordBatch),
    /// Close the current file and send back its bytes (empty when nothing was written).
    Finish(SyncSender<Result<Vec<u8>, EncodeError>>),
}

/// Why a part could not be encoded.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    #[error("starting the encoder thread: {0}")]
    Start(String),
    #[error("encoder not started")]
    NotStarted,
    /// The thread is gone (it panicked), with its panic message.
    #[error("the encoder thread stopped: {0}")]
    Stopped(String),
    /// Parquet refused a batch or the file's footer.
    #[error("{0}")]
    Parquet(String),
}

#[derive(Default)]
struct Stats {
    /// Encoded bytes held by the writer (output written + buffered pages and dictionaries).
    encoded: AtomicUsize,
    /// Arrow memory of batches sent but not yet written.
    queued: AtomicUsize,
}

/// Dropping it closes the channel (`tx` is dropped first), which ends the thread once it has
/// finished its current batch; nothing waits for it.
pub(crate) struct Encoder {
    tx: Option<SyncSender<Msg>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<Stats>,
    schema: SchemaRef,
    props: WriterProperties,
}

impl Encoder {
    pub(crate) fn new(schema: SchemaRef, props: WriterProperties) -> Self {
        Encoder {
            tx: None,
            thread: None,
            stats: Arc::default(),
            schema,
            props,
        }
    }

    fn sender(&mut self) -> Result<&SyncSender<Msg>, EncodeError> {
        if self.tx.is_none() {
            let (tx, rx) = sync_channel(0);
            let (schema, props, stats) =
                (self.schema.clone(), self.props.clone(), self.stats.clone());
            let thread = std::thread::Builder::new()
                .name("parquet-encoder".into())
                .spawn(move || run(rx, &schema, &props, &stats))
                .map_err(|e| EncodeError::Start(e.to_string()))?;
            self.tx = Some(tx);
            self.thread = Some(thread);
        }
        self.tx.as_ref().ok_or(EncodeError::NotStarted)
    }

    /// Hands a batch to the thread; blocks while it is still encoding the previous one.
    pub(crate) fn write(&mut self, batch: RecordBatch) -> Result<(), EncodeError> {
        let size = batch.get_array_memory_size();
        self.stats.queued.fetch_add(size, Ordering::Relaxed);
        let sent = self.sender()?.send(Msg::Batch(batch));
        if sent.is_err() {
            self.stats.queued.fetch_sub(size, Ordering::Relaxed);
            return Err(self.stopped());
        }
        Ok(())
    }

    /// Waits for every queued batch, closes the file and returns its bytes.
    pub(crate) fn finish(&mut self) -> Result<Vec<u8>, EncodeError> {
        let (reply_tx, reply_rx) = sync_channel(1);
        if self.sender()?.send(Msg::Finish(reply_tx)).is_err() {
            return Err(self.stopped());
        }
        match reply_rx.recv() {
            Ok(result) => result,
            Err(_) => Err(self.stopped()),
        }
    }

    /// Approximate bytes held for the current file, queued batches included.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.stats.encoded.load(Ordering::Relaxed) + self.stats.queued.load(Ordering::Relaxed)
    }

    /// The thread is gone (it panicked): reset so the next part starts a fresh one.
    fn stopped(&mut self) -> EncodeError {
        self.tx = None;
        let why = match self.thread.take().map(JoinHandle::join) {
            Some(Err(panic)) => panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned()),
            _ => "it exited".to_owned(),
        };
        self.stats.encoded.store(0, Ordering::Relaxed);
        self.stats.queued.store(0, Ordering::Relaxed);
        EncodeError::Stopped(why)
    }
}

fn run(rx: Receiver<Msg>, schema: &SchemaRef, props: &WriterProperties, stats: &Stats) {
    let mut writer: Option<ArrowWriter<Vec<u8>>> = None;
    let mut error: Option<EncodeError> = None;
    for msg in rx {
        match msg {
            Msg::Batch(batch) => {
                let size = batch.get_array_memory_size();
                if error.is_none() && writer.is_none() {
                    let out = Vec::with_capacity(OUTPUT_RESERVE);
                    match ArrowWriter::try_new(out, schema.clone(), Some(props.clone())) {
                        Ok(w) => writer = Some(w),
                        Err(e) => error = Some(EncodeError::Parquet(e.to_string())),
                    }
                }
                if let Some(w) = writer.as_mut() {
                    match w.write(&batch) {
                        Ok(()) => {
                            let held = w.inner().len() + w.memory_size();
                            stats.encoded.store(held, Ordering::Relaxed);
                        }
                        Err(e) => {
                            error = Some(EncodeError::Parquet(e.to_string()));
                            writer = None;
                            stats.encoded.store(0, Ordering::Relaxed);
                        }
                    }
                }
                drop(batch);
                stats.queued.fetch_sub(size, Ordering::Relaxed);
            }
            Msg::Finish(reply) => {
                let result = match (error.take(), writer.take()) {
                    (Some(e), _) => Err(e),
                    (None, Some(w)) => w
                        .into_inner()
                        .map_err(|e| EncodeError::Parquet(e.to_string())),
                    (None, None) => Ok(Vec::new()),
                };
                stats.encoded.store(0, Ordering::Relaxed);
                let _ = reply.send(result);
            }
        }
    }
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
