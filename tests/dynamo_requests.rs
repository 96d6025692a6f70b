//! What one-page chunks cost on DynamoDB Local: the engine runs jobs of 10, 100 and 1,000
//! one-day chunks of one table the way a cloud lane does (claim and run one chunk, then ask
//! whether chunks remain), with a request counter on the store's client. Prints writes per
//! chunk and reads per lane loop, and holds them to their bounds: at most 3 writes per chunk,
//! and reads per loop that do not grow with the job.
//!
//! Requests are unpaced here, so the rate item (pacing, `store::dynamodb::rate`) is not
//! written: its writes are per API request, not per chunk, and are counted apart
//! (`DynamoStore::rate_writes`). `cargo test --test dynamo_requests -- --nocapture` prints
//! the table.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use avesa_console::config::EndpointDef;
use avesa_console::domain::{RecordsAt, Service, Window};
use avesa_console::engine::{Deadline, Engine, EngineOptions, Step};
use avesa_console::sink::RawSink;
use avesa_console::sources::{Page, Source, SourceError};
use avesa_console::store::{DynamoOptions, DynamoStore, JobStore, RequestCounter, RequestCounts};
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use chrono::{TimeZone, Utc};
use common::{Fixture, OneSource, skip, tickets_job};

/// One ticket per window, in one page.
struct OnePage;

#[async_trait]
impl Source for OnePage {
    fn service(&self) -> Service {
        Service::Connectwise
    }

    async fn fetch_page(
        &self,
        _: &EndpointDef,
        window: &Window,
        _: Option<&str>,
    ) -> Result<Page, SourceError> {
        let body = format!(
            r#"[{{"id":{},"summary":"one","_info":{{"lastUpdated":"{}"}}}}]"#,
            window.start.timestamp() / 86_400,
            window.start.format("%Y-%m-%dT%H:%M:%SZ")
        );
        let bytes = body.len();
        Ok(Page {
            body: bytes::Bytes::from(body).into(),
            records_at: RecordsAt::Body,
            next: None,
            bytes,
            usage: None,
        })
    }

    async fn count(&self, _: &EndpointDef, _: &Window) -> Result<u64, SourceError> {
        Ok(1)
    }
}

struct Rig {
    fx: Fixture,
    engine: Engine,
    store: Arc<DynamoStore>,
}

async fn rig(url: &str, tag: &str) -> Rig {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    let counter = RequestCounter::default();
    let options = DynamoOptions {
        table_prefix: format!("req{}{tag}", std::process::id()),
        ..DynamoOptions::default()
    };
    let store = Arc::new(DynamoStore::new(counter.client(&config), options).counted_by(counter));
    store.ensure_tables().await.unwrap();
    let fx = Fixture::new();
    let engine = Engine::new(
        Arc::new(fx.config()),
        store.clone(),
        store.clone(),
        RawSink::local(&fx.data_dir()).unwrap(),
        Arc::new(OneSource(Arc::new(OnePage))),
        EngineOptions {
            pace_requests: false,
            poll_interval: Duration::from_millis(10),
            auto_transform: false,
            ..EngineOptions::default()
        },
    );
    Rig { fx, engine, store }
}

/// What a job of `chunks` one-day chunks cost over its first `loops` lane loops.
struct Cost {
    chunks: u32,
    loops: u32,
    ran: u32,
    writes: u64,
    reads: u64,
    items_read: u64,
    max_items_per_loop: u64,
}

async fn measure(url: &str, chunks: u32, loops: u32) -> Cost {
    let rig = rig(url, &chunks.to_string()).await;
    let start = Utc.with_ymd_and_hms(2022, 1, 1, 0, 0, 0).unwrap();
    let job_id = tickets_job(&rig.engine, start, chunks, 1).await;
    let counts = || rig.store.requests().unwrap();
    let first = counts();
    let (mut ran, mut done, mut max_items) = (0, 0, 0);
    while done < loops {
        let before = counts();
        // One lane loop, as `cloud::worker` runs it.
        match rig.engine.step_job(&job_id, &Deadline::default()).await {
            Ok(Step::Ran { .. }) => ran += 1,
            Ok(Step::Wait { .. }) => tokio::time::sleep(Duration::from_millis(10)).await,
            Ok(Step::Done(_)) => {}
            Err(e) => panic!("step: {e}"),
        }
        let more = rig.engine.has_open_chunks(&job_id).await.unwrap();
        max_items = max_items.max(counts().since(&before).items_read);
        done += 1;
        if !more {
            break;
        }
    }
    let spent: RequestCounts = counts().since(&first);
    if done < loops || loops >= chunks {
        let job = rig.store.get_job(&job_id).await.unwrap().unwrap();
        assert_eq!(job.completed_chunks, chunks, "every chunk ran: {job:?}");
    }
    rig.store.delete_tables().await.unwrap();
    drop(rig.fx);
    Cost {
        chunks,
        loops: done,
        ran,
        writes: spent.writes(),
        reads: spent.reads(),
        items_read: spent.items_read,
        max_items_per_loop: max_items,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_page_chunks_cost_at_most_three_writes_and_flat_reads_per_loop() {
    let test = "one_page_chunks_cost_at_most_three_writes_and_flat_reads_per_loop";
    let Ok(url) = std::env::var("AVESA_TEST_DYNAMODB_URL") else {
        skip::skip(
            test,
            "AVESA_TEST_DYNAMODB_URL is not set (no DynamoDB Local)",
        );
        return;
    };
    // The 1,000-chunk job runs its first 100 loops: enough to see whether a loop's reads
    // follow the job's size, without 1,000 loops' time.
    let mut costs = Vec::new();
    for (chunks, loops) in [(10, 10), (100, 100), (1_000, 100)] {
        costs.push(measure(&url, chunks, loops).await);
    }
    println!(
        "{:>6} {:>6} {:>6} {:>14} {:>14} {:>16} {:>18}",
        "chunks", "loops", "ran", "writes/chunk", "reads/loop", "items read/loop", "max items/loop"
    );
    for c in &costs {
        println!(
            "{:>6} {:>6} {:>6} {:>14.2} {:>14.2} {:>16.2} {:>18}",
            c.chunks,
            c.loops,
            c.ran,
            c.writes as f64 / f64::from(c.ran),
            c.reads as f64 / f64::from(c.loops),
            c.items_read as f64 / f64::from(c.loops),
            c.max_items_per_loop
        );
    }
    for c in &costs {
        let per_chunk = c.writes as f64 / f64::from(c.ran);
        assert!(
            per_chunk <= 3.0,
            "{} chunks: {per_chunk:.2} writes per one-page chunk (at most 3)",
            c.chunks
        );
    }
    let small = &costs[0];
    let large = &costs[2];
    let per_loop = |c: &Cost| c.items_read as f64 / f64::from(c.loops);
    assert!(
        per_loop(large) <= per_loop(small) + 2.0 && large.max_items_per_loop <= 24,
        "items read per loop grow with the job: {:.2} at {} chunks, {:.2} at {} (max {})",
        per_loop(small),
        small.chunks,
        per_loop(large),
        large.chunks,
        large.max_items_per_loop
    );
}
