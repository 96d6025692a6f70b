//! Compaction in bounded memory: what a compaction puts, gets and has uploading at once,
//! watched through a wrapper of the store, stays far below the size of the file it writes.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::{ArrayRef, BinaryArray, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{Duration, TimeZone, Utc};
use futures::FutureExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;

use super::super::{META_COLUMNS, RawSink, window_stamp};
use super::{COMPACTED_DIR, StreamLimits};
use crate::domain::{Service, Window};

/// What went through the store since the counters were made.
#[derive(Debug, Default)]
struct Counters {
    /// The largest payload of one put or one upload part.
    max_put: AtomicU64,
    /// The largest response of one get.
    max_get: AtomicU64,
    /// Bytes of puts and upload parts under way, and the most there were at once.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    parts: AtomicU64,
}

impl Counters {
    fn sending(&self, len: u64) {
        self.max_put.fetch_max(len, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(len, Ordering::SeqCst) + len;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
    }

    fn sent(&self, len: u64) {
        self.in_flight.fetch_sub(len, Ordering::SeqCst);
    }

    fn get(name: &AtomicU64) -> u64 {
        name.load(Ordering::SeqCst)
    }
}

/// A store that counts what passes through it.
#[derive(Debug)]
struct Watch {
    inner: Arc<dyn ObjectStore>,
    counters: Arc<Counters>,
}

impl fmt::Display for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Watch({})", self.inner)
    }
}

#[derive(Debug)]
struct WatchUpload {
    inner: Box<dyn MultipartUpload>,
    counters: Arc<Counters>,
}

#[async_trait]
impl MultipartUpload for WatchUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let len = data.content_length() as u64;
        let counters = self.counters.clone();
        counters.sending(len);
        counters.parts.fetch_add(1, Ordering::SeqCst);
        let part = self.inner.put_part(data);
        async move {
            let done = part.await;
            counters.sent(len);
            done
        }
        .boxed()
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for Watch {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let len = payload.content_length() as u64;
        self.counters.sending(len);
        let done = self.inner.put_opts(location, payload, opts).await;
        self.counters.sent(len);
        done
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(WatchUpload {
            inner,
            counters: self.counters.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let got = self.inner.get_opts(location, options).await?;
        let len = got.range.end - got.range.start;
        self.counters.max_get.fetch_max(len, Ordering::SeqCst);
        Ok(got)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn window(day: i64) -> Window {
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::days(day);
    Window::new(start, start + Duration::days(1))
}

fn schema() -> Arc<Schema> {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("blob", DataType::Binary, false),
        Field::new(META_COLUMNS[4], ts.clone(), true),
        Field::new(META_COLUMNS[5], ts, true),
    ]))
}

/// A part of `w` with ids `first..first + rows`, each with `blob` random bytes (which do not
/// compress: the compacted file is as large as its sources), in row groups of 500 rows.
fn part(w: &Window, first: i64, rows: usize, blob: usize) -> Bytes {
    let ids = Int64Array::from_iter_values(first..first + rows as i64);
    let blobs: Vec<Vec<u8>> = (0..rows)
        .map(|_| (0..blob).map(|_| rand::random::<u8>()).collect())
        .collect();
    let stamp = |t: chrono::DateTime<Utc>| {
        Arc::new(
            TimestampMicrosecondArray::from(vec![t.timestamp_micros(); rows]).with_timezone("UTC"),
        ) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ids),
        Arc::new(BinaryArray::from_iter_values(blobs)),
        stamp(w.start),
        stamp(w.end),
    ];
    let batch = RecordBatch::try_new(schema(), columns).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(500))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    Bytes::from(out)
}

type Windows = Vec<(String, Vec<ObjectMeta>)>;

/// `windows` windows of `parts` parts of `rows` rows each, put under `prefix`.
async fn put_sources(
    store: &dyn ObjectStore,
    prefix: &Path,
    (windows, parts, rows, blob): (i64, usize, usize, usize),
) -> Windows {
    let mut out = Vec::new();
    let mut next_id = 0;
    for day in 0..windows {
        let (w, mut files) = (window(day), Vec::new());
        for n in 0..parts {
            let path = prefix
                .clone()
                .join(format!("{}_{n:05}.parquet", window_stamp(&w)));
            store
                .put(&path, part(&w, next_id, rows, blob).into())
                .await
                .unwrap();
            next_id += rows as i64;
            files.push(store.head(&path).await.unwrap());
        }
        out.push((window_stamp(&w), files));
    }
    out
}

/// The ids in `path` and the compressed sizes of its row groups.
async fn contents(store: &dyn ObjectStore, path: &str) -> (BTreeSet<i64>, Vec<i64>) {
    let bytes = store
        .get(&Path::from(path))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    let groups = reader.metadata().row_groups().iter();
    let sizes = groups.map(|g| g.compressed_size()).collect();
    let mut ids = BTreeSet::new();
    for batch in reader.build().unwrap() {
        let batch = batch.unwrap();
        let col = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        ids.extend(col.values().iter().copied());
    }
    (ids, sizes)
}

fn staging_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            out.extend(staging_files(&entry.path()));
        } else if entry.file_name().to_string_lossy().contains('#') {
            out.push(entry.path().display().to_string());
        }
    }
    out
}

/// A compaction of `windows` and a last window whose part is no Parquet file fails after
/// writing the others: no compacted file appears, no staging file is left.
async fn failing_midway_leaves_nothing(sink: &RawSink, root: &std::path::Path, windows: &Windows) {
    let prefix = RawSink::table_prefix("acme", Service::Connectwise, "tickets");
    let w = window(30);
    let broken = prefix
        .clone()
        .join(format!("{}_00000.parquet", window_stamp(&w)));
    let junk = PutPayload::from_static(b"not parquet at all");
    sink.store.put(&broken, junk).await.unwrap();
    let mut with_broken = windows.clone();
    with_broken.push((
        window_stamp(&w),
        vec![sink.store.head(&broken).await.unwrap()],
    ));

    let err = sink
        .compact_windows(&prefix, &with_broken, 1, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains(broken.as_ref()), "{err}");
    let compacted = root.join(prefix.as_ref()).join(COMPACTED_DIR);
    let left: Vec<_> = std::fs::read_dir(&compacted)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    assert!(staging_files(root).is_empty());
    sink.store.delete(&broken).await.unwrap();
}

/// Compacts `windows` as generation 1: one file.
async fn compact_one(sink: &RawSink, prefix: &Path, windows: &Windows) -> super::CompactedFile {
    let mut files = sink
        .compact_windows(prefix, windows, 1, None)
        .await
        .unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    files.remove(0)
}

const SMALL: StreamLimits = StreamLimits {
    upload_part_bytes: 64 * 1024,
    parts_in_flight: 2,
    row_group_bytes: 128 * 1024,
};

#[tokio::test]
async fn compacting_and_releasing_a_file_holds_a_few_row_groups_and_parts_not_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let local = RawSink::local(dir.path()).unwrap();
    let counters = Arc::new(Counters::default());
    let watch = Watch {
        inner: local.store.clone(),
        counters: counters.clone(),
    };
    let sink = RawSink::new(Arc::new(watch)).with_compact_limits(SMALL);
    let prefix = RawSink::table_prefix("acme", Service::Connectwise, "tickets");
    // 4 windows of 2 parts of 2,000 rows of 400 random bytes: about 3.3 MB in 8 parts.
    let windows = put_sources(local.store.as_ref(), &prefix, (4, 2, 2_000, 400)).await;
    let smallest_source = windows.iter().flat_map(|(_, f)| f).map(|m| m.size).min();
    failing_midway_leaves_nothing(&sink, dir.path(), &windows).await;
    counters.max_put.store(0, Ordering::SeqCst);

    let file = &compact_one(&sink, &prefix, &windows).await;
    assert_eq!((file.rows, file.replaced), (16_000, 8));
    assert!(file.bytes > 3_000_000, "{file:?}");
    let max_put = Counters::get(&counters.max_put);
    let max_in_flight = Counters::get(&counters.max_in_flight);
    let max_get = Counters::get(&counters.max_get);
    // The file went up in parts of the configured size, a few at a time ...
    assert!(
        max_put <= SMALL.upload_part_bytes as u64,
        "a put of {max_put} bytes"
    );
    assert!(
        max_in_flight < file.bytes / 4,
        "{max_in_flight} bytes uploading at once"
    );
    assert!(Counters::get(&counters.parts) >= 40);
    // ... and its sources came down a row group at a time.
    assert!(
        max_get * 2 < smallest_source.unwrap(),
        "a get of {max_get} bytes"
    );
    let (ids, groups) = contents(local.store.as_ref(), &file.path).await;
    assert_eq!(ids, (0..16_000).collect());
    assert!(groups.len() >= 10, "{groups:?}");
    assert!(groups.iter().all(|g| *g < 512 * 1024), "{groups:?}");

    // Taking a window out of the compacted file reads it a row group at a time too.
    counters.max_get.store(0, Ordering::SeqCst);
    counters.max_put.store(0, Ordering::SeqCst);
    let w = window(1);
    let released = sink.release_window("acme", Service::Connectwise, "tickets", &w);
    assert_eq!(released.await.unwrap(), 1);
    let max_get = Counters::get(&counters.max_get);
    assert!(max_get * 8 < file.bytes, "a get of {max_get} bytes");
    assert!(Counters::get(&counters.max_put) <= SMALL.upload_part_bytes as u64);
    let listing = sink
        .resolve_table("acme", Service::Connectwise, "tickets")
        .await
        .unwrap();
    let (path, record) = listing.records.iter().next().unwrap();
    assert_eq!(record.rows, 12_000);
    let (ids, _) = contents(local.store.as_ref(), path).await;
    assert_eq!(ids, (0..4_000).chain(8_000..16_000).collect());
    assert!(staging_files(dir.path()).is_empty());
}

/// The moto S3 emulator's URL, or `None` (the test is skipped; under `CI=true` it fails).
fn moto_url(test: &str) -> Option<String> {
    match std::env::var("AVESA_TEST_MOTO_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test} needs AVESA_TEST_MOTO_URL, and under CI=true no test may be skipped"
            );
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipped: {test}: no AVESA_TEST_MOTO_URL");
            None
        }
    }
}

#[tokio::test]
async fn a_compaction_on_s3_goes_up_in_several_parts_and_appears_whole() {
    let Some(moto) = moto_url("a_compaction_on_s3_goes_up_in_several_parts_and_appears_whole")
    else {
        return;
    };
    let bucket = format!("compact-stream-{:08x}", rand::random::<u32>());
    let url = format!("{}/{bucket}", moto.trim_end_matches('/'));
    let made = reqwest::Client::new().put(&url).send().await.unwrap();
    assert!(made.status().is_success(), "{made:?}");
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&bucket)
        .with_region("us-east-1")
        .with_endpoint(moto.trim_end_matches('/'))
        .with_allow_http(true)
        .with_access_key_id("avesa")
        .with_secret_access_key("avesa")
        .build()
        .unwrap();
    let s3: Arc<dyn ObjectStore> = Arc::new(s3);
    let counters = Arc::new(Counters::default());
    let watch = Watch {
        inner: s3.clone(),
        counters: counters.clone(),
    };
    // S3 takes parts of 5 MiB at least (but the last): 12 MB go up in 3 parts.
    let limits = StreamLimits {
        row_group_bytes: 1024 * 1024,
        ..StreamLimits::default()
    };
    let sink = RawSink::new(Arc::new(watch)).with_compact_limits(limits);
    let prefix = RawSink::table_prefix("acme", Service::Connectwise, "tickets");
    let windows = put_sources(s3.as_ref(), &prefix, (3, 2, 2_000, 1_000)).await;

    let file = &compact_one(&sink, &prefix, &windows).await;
    assert!(file.bytes > 11_000_000, "{file:?}");
    assert!(Counters::get(&counters.parts) >= 3);
    assert!(Counters::get(&counters.max_put) <= limits.upload_part_bytes as u64);
    let head = s3.head(&Path::from(file.path.as_str())).await.unwrap();
    assert_eq!(head.size, file.bytes);
    let (ids, _) = contents(s3.as_ref(), &file.path).await;
    assert_eq!(ids, (0..12_000).collect());
    let listing = sink
        .resolve_table("acme", Service::Connectwise, "tickets")
        .await
        .unwrap();
    let live: Vec<&str> = listing.live.iter().map(|m| m.location.as_ref()).collect();
    assert_eq!(live, [file.path.as_str()]);
}

#[tokio::test]
async fn staging_files_of_a_killed_compaction_upload_are_removed_once_old() {
    let dir = tempfile::tempdir().unwrap();
    let sink = RawSink::local(dir.path()).unwrap();
    let prefix = RawSink::table_prefix("acme", Service::Connectwise, "tickets");
    let compacted = dir.path().join(prefix.as_ref()).join(COMPACTED_DIR);
    std::fs::create_dir_all(&compacted).unwrap();
    let (old, young) = (
        compacted.join("c00000003_20240101T000000Z-20240102T000000Z_0000abcd.parquet#7"),
        compacted.join("c00000004_20240101T000000Z-20240102T000000Z_0000dcba.parquet#2"),
    );
    for f in [&old, &young] {
        std::fs::write(f, b"half an upload").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7_200);
    let file = std::fs::File::options().write(true).open(&old).unwrap();
    file.set_modified(two_hours_ago).unwrap();

    assert_eq!(sink.remove_compaction_staging(&prefix).await.unwrap(), 1);
    assert!(!old.exists());
    // A younger one may be an upload under way.
    assert!(young.exists());
}
