//! Raw compaction against a real engine, SQLite store and local raw store: every row stays
//! readable exactly once (verify, the transform, a crash at any step, a window written again)
//! and windows whose chunks are not finished are left alone.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Array, Int64Array};
use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::compact::CompactRequest;
use super::planner::{self, PlanRequest};
use super::{Engine, EngineOptions, NoSource, SourceProvider};
use crate::config::{Config, EndpointDef};
use crate::domain::{Job, Service, Window};
use crate::sink::RawSink;
use crate::sink::compact::CrashPoint;
use crate::sources::{Page, Source, SourceError};
use crate::store::{Claim, SqliteStore};
use crate::transform::{TransformMode, TransformRequest};

/// Rows per page; every window answers two pages.
const PER_PAGE: i64 = 3;

/// Two pages of tickets per window, ids and update times from the window's start.
#[derive(Clone)]
struct Tickets;

fn page(window: &Window, second: bool) -> Vec<serde_json::Value> {
    let day = window.start.timestamp() / 86_400;
    (0..PER_PAGE)
        .map(|k| {
            let k = k + if second { PER_PAGE } else { 0 };
            let at = window.start + chrono::Duration::minutes(60 + k);
            serde_json::json!({
                "id": day * 100 + k,
                "summary": format!("ticket {k}"),
                "_info": {"lastUpdated": at.to_rfc3339()},
            })
        })
        .collect()
}

#[async_trait]
impl Source for Tickets {
    fn service(&self) -> Service {
        Service::Connectwise
    }

    async fn fetch_page(
        &self,
        _endpoint: &EndpointDef,
        window: &Window,
        cursor: Option<&str>,
    ) -> Result<Page, SourceError> {
        let body = serde_json::to_vec(&page(window, cursor.is_some())).unwrap();
        Ok(Page {
            bytes: body.len(),
            body: bytes::Bytes::from(body).into(),
            next: cursor.is_none().then(|| "2".to_string()),
            ..Page::default()
        })
    }

    async fn count(&self, _endpoint: &EndpointDef, _window: &Window) -> Result<u64, SourceError> {
        Ok(2 * PER_PAGE as u64)
    }
}

impl SourceProvider for Tickets {
    fn source(&self, _tenant_id: &str, _service: Service) -> Result<Arc<dyn Source>, NoSource> {
        Ok(Arc::new(self.clone()))
    }
}

/// An engine writing one part per page, compacting into files of 1 MB (so every window of
/// these tests is small), compacting at the hand-off when `auto_compact`.
fn engine(dir: &Path, auto_compact: bool) -> Engine {
    let mut config = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")).unwrap();
    config.backfill.compaction.target_file_mb = 1;
    let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    Engine::new(
        Arc::new(config),
        store.clone(),
        store,
        RawSink::local(&dir.join("data")).unwrap(),
        Arc::new(Tickets),
        EngineOptions {
            pace_requests: false,
            auto_transform: false,
            auto_compact,
            part_max_rows: 1,
            poll_interval: Duration::from_millis(20),
            ..EngineOptions::default()
        },
    )
}

/// Six monthly windows of tickets, 2025-01-01 to 2025-07-01.
async fn create(engine: &Engine) -> Job {
    let request = PlanRequest {
        tenant_id: "acme".into(),
        service: Service::Connectwise,
        tables: vec!["tickets".into()],
        start: Some(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()),
        end: Some(Utc.with_ymd_and_hms(2025, 7, 1, 0, 0, 0).unwrap()),
        chunk_size_days: Some(30),
    };
    let plan = planner::plan(engine.config(), &request, Utc::now()).unwrap();
    engine
        .create_job(&plan, Utc::now())
        .await
        .unwrap()
        .job()
        .clone()
}

async fn backfill(engine: &Engine) -> Job {
    let job = create(engine).await;
    engine.run_job(&job.job_id, None).await.unwrap();
    job
}

/// (files readers see, rows in them, distinct ids in them).
async fn readable(engine: &Engine) -> (usize, usize, usize) {
    let sink = engine.sink();
    let files = sink
        .list_table_files("acme", Service::Connectwise, "tickets")
        .await
        .unwrap();
    let (mut rows, mut ids) = (0, HashSet::new());
    for path in &files {
        let bytes = sink.store().get(path).await.unwrap().bytes().await.unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
        {
            let batch = batch.unwrap();
            let id = batch.column_by_name("id").unwrap();
            let id = id.as_any().downcast_ref::<Int64Array>().unwrap();
            rows += id.len();
            ids.extend(id.iter().flatten());
        }
    }
    (files.len(), rows, ids.len())
}

fn all() -> CompactRequest {
    CompactRequest::default()
}

/// A full build of acme's canonical tickets: its current rows, a batch per bucket in bucket
/// order (`transform::read_current`; a full build writes the same rows in the same order).
async fn canonical_tickets(engine: &Engine) -> Vec<arrow_array::RecordBatch> {
    engine
        .transform(&TransformRequest {
            tenant_id: "acme".into(),
            tables: vec!["tickets".into()],
            services: vec![Service::Connectwise],
            mode: TransformMode::Full,
        })
        .await
        .unwrap();
    crate::transform::read_current(
        &engine.sink().store(),
        "acme",
        "tickets",
        Service::Connectwise,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_every_row_once_for_verify_and_the_transform() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), false);
    let job = backfill(&engine).await;
    let windows = job.total_chunks as usize;
    let rows = windows * 2 * PER_PAGE as usize;
    assert_eq!(readable(&engine).await, (2 * windows, rows, rows));
    let before = canonical_tickets(&engine).await;
    assert!(engine.verify(&job.job_id).await.unwrap().ok);

    let dry = engine
        .compact(&CompactRequest {
            dry_run: true,
            ..all()
        })
        .await
        .unwrap();
    assert_eq!((dry[0].before.files, dry[0].after.files), (2 * windows, 1));
    assert_eq!(
        readable(&engine).await.0,
        2 * windows,
        "a dry run changes nothing"
    );

    let done = engine.compact(&all()).await.unwrap();
    assert_eq!(done[0].compacted.len(), 1);
    assert_eq!(done[0].compacted[0].replaced, 2 * windows);
    assert_eq!(
        (done[0].before.files, done[0].after.files),
        (2 * windows, 1)
    );
    assert_eq!(readable(&engine).await, (1, rows, rows));
    let report = engine.verify(&job.job_id).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert!(
        report
            .chunks
            .iter()
            .all(|c| c.landed == 2 * PER_PAGE as u64)
    );
    assert_eq!(canonical_tickets(&engine).await, before);
    // Nothing left to do.
    assert!(
        engine.compact(&all()).await.unwrap()[0]
            .compacted
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_leaves_every_row_readable_once() {
    for crash in [
        CrashPoint::AfterFile,
        CrashPoint::AfterRecord,
        CrashPoint::AfterFirstDelete,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path(), false);
        let job = backfill(&engine).await;
        let rows = job.total_chunks as usize * 2 * PER_PAGE as usize;
        let stopped = engine.compact_with(&all(), Some(crash)).await;
        assert!(stopped.is_err(), "{crash:?}");
        let (_, read, ids) = readable(&engine).await;
        assert_eq!((read, ids), (rows, rows), "after a crash {crash:?}");
        assert!(engine.verify(&job.job_id).await.unwrap().ok, "{crash:?}");

        engine.compact(&all()).await.unwrap();
        assert_eq!(readable(&engine).await, (1, rows, rows), "{crash:?}");
        assert!(engine.verify(&job.job_id).await.unwrap().ok, "{crash:?}");
        // Replaced parts left by the crash are gone from the disk too.
        let table = dir.path().join("data/acme/raw/connectwise/tickets");
        let parts = std::fs::read_dir(&table)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "parquet")
            })
            .count();
        assert_eq!(parts, 0, "{crash:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_with_a_pending_or_running_chunk_are_not_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), false);
    let first = backfill(&engine).await;
    let files = 2 * first.total_chunks as usize;
    // The same windows again: one running, the others pending.
    let again = create(&engine).await;
    assert_ne!(again.job_id, first.job_id);
    let lease = Utc::now() + chrono::Duration::minutes(5);
    let claim = engine
        .store()
        .claim_next_chunk(&again.job_id, "someone", lease, Utc::now())
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Chunk(_)), "{claim:?}");

    let done = engine.compact(&all()).await.unwrap();
    assert!(done[0].compacted.is_empty(), "{:?}", done[0].compacted);
    assert_eq!(done[0].unfinished_windows, first.total_chunks as usize);
    assert_eq!(readable(&engine).await.0, files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_written_again_after_compaction_are_not_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    // Compaction at every job's hand-off.
    let engine = engine(dir.path(), true);
    let first = backfill(&engine).await;
    let rows = first.total_chunks as usize * 2 * PER_PAGE as usize;
    assert_eq!(readable(&engine).await, (1, rows, rows));

    // A second backfill of the same windows writes each of them again.
    let again = backfill(&engine).await;
    assert_ne!(again.job_id, first.job_id);
    assert_eq!(readable(&engine).await, (1, rows, rows));
    assert!(engine.verify(&again.job_id).await.unwrap().ok);
    let files = std::fs::read_dir(
        dir.path()
            .join("data/acme/raw/connectwise/tickets/compacted"),
    )
    .unwrap()
    .count();
    // The second job's compacted file and its record, and the empty file and record the
    // last release left: what else the first job left is deleted.
    assert_eq!(files, 4, "objects left under compacted/");
}

/// The transform remembers the raw files it read; the compacted file that replaces them holds
/// nothing new, so the next incremental transform reads no raw file and keeps its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_file_of_parts_the_transform_read_is_not_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), false);
    backfill(&engine).await;
    let incremental = TransformRequest {
        tenant_id: "acme".into(),
        tables: vec!["tickets".into()],
        services: vec![Service::Connectwise],
        mode: TransformMode::Incremental,
    };
    let first = engine.transform(&incremental).await.unwrap();
    assert!(first[0].raw_files > 1, "{first:?}");
    let done = engine.compact(&all()).await.unwrap();
    assert_eq!(done[0].compacted.len(), 1);
    let again = engine.transform(&incremental).await.unwrap();
    assert_eq!(again[0].raw_files, 0, "{again:?}");
    assert_eq!(again[0].generation, first[0].generation, "{again:?}");
}
