//! Size and bookkeeping: a 3-year job of daily chunks over five tables, and job counters
//! that are exact when a job is read and at most a few chunks behind in lists.

use std::sync::Arc;
use std::time::Instant;

use avesa_console::domain::{Checkpoint, Chunk, ChunkKey, Job, JobStatus, Window};
use avesa_console::store::{JobFilter, JobStore};
use chrono::Duration;

use super::backends::Fixture;
use super::{claim, claimed, job, t0};

/// `job` with one-day chunks over `days` days per table.
fn daily_job(tables: &[&str], days: u32) -> (Job, Vec<Chunk>) {
    let (mut j, _) = job(tables, 1);
    let mut chunks = Vec::new();
    for table in tables {
        for seq in 0..days {
            let s = j.window.start + Duration::days(i64::from(seq));
            chunks.push(Chunk::new(
                ChunkKey {
                    job_id: j.job_id.clone(),
                    table: table.to_string(),
                    seq,
                },
                Window::new(s, s + Duration::days(1)),
            ));
        }
    }
    j.window.end = j.window.start + Duration::days(i64::from(days));
    j.chunk_size_days = 1;
    j.total_chunks = chunks.len() as u32;
    (j, chunks)
}

fn cp(records: u64) -> Checkpoint {
    Checkpoint {
        cursor: None,
        parts: 1,
        records,
        pages: 1,
    }
}

/// 5 tables x 1,095 days = 5,475 chunks. Claims still go in order, and on DynamoDB each
/// claim reads a bounded number of chunk items (the frontier), not the job's thousands.
pub async fn a_three_year_daily_job_fits_and_claims_in_order(fx: Arc<Fixture>) {
    let tables = [
        "tickets",
        "companies",
        "contacts",
        "time_entries",
        "projects",
    ];
    let (j, c) = daily_job(&tables, 1095);
    let dynamo = fx.dynamo();
    let store: Arc<dyn JobStore> = match &dynamo {
        Some(d) => Arc::new(d.clone()),
        None => fx.open(),
    };
    let started = Instant::now();
    store.create_job(j.clone(), c, true).await.unwrap();
    let create_ms = started.elapsed().as_millis();
    let job = store.get_job(&j.job_id).await.unwrap().unwrap();
    assert_eq!(job.total_chunks, 5475);
    let chunks = store.chunks(&j.job_id).await.unwrap();
    assert_eq!(chunks.len(), 5475);
    assert_eq!(
        (
            chunks[0].key.table.as_str(),
            chunks[1095].key.table.as_str()
        ),
        ("tickets", "companies"),
        "chunks come in the job's table order"
    );

    let rounds = 30u32;
    let mut claim_time = std::time::Duration::ZERO;
    let mut worst_reads = 0;
    for i in 0..rounds {
        let reads_before = dynamo.as_ref().map_or(0, |d| d.chunk_items_read());
        let started = Instant::now();
        let got = claimed(claim(&*store, &j.job_id, "a", t0()).await);
        claim_time += started.elapsed();
        worst_reads =
            worst_reads.max(dynamo.as_ref().map_or(0, |d| d.chunk_items_read()) - reads_before);
        assert_eq!((got.key.table.as_str(), got.key.seq), ("tickets", i));
        store
            .complete_chunk(&got.key, "a", &cp(u64::from(i)), t0())
            .await
            .unwrap();
    }
    if dynamo.is_some() {
        // One head per table plus one short page past a finished chunk.
        assert!(worst_reads <= 16, "a claim read {worst_reads} chunk items");
    }
    // Eight windows in flight: each claim reads past the running ones, no further.
    let mut worst_in_flight = 0;
    for i in rounds..rounds + 8 {
        let reads_before = dynamo.as_ref().map_or(0, |d| d.chunk_items_read());
        let got = claimed(claim(&*store, &j.job_id, "b", t0()).await);
        assert_eq!((got.key.table.as_str(), got.key.seq), ("tickets", i));
        worst_in_flight =
            worst_in_flight.max(dynamo.as_ref().map_or(0, |d| d.chunk_items_read()) - reads_before);
    }
    if dynamo.is_some() {
        assert!(
            worst_in_flight <= 5 + 16,
            "a claim past 7 windows in flight read {worst_in_flight} chunk items"
        );
    }
    let job = store.get_job(&j.job_id).await.unwrap().unwrap();
    assert_eq!(
        (job.completed_chunks, job.records, job.status),
        (
            rounds,
            u64::from(rounds * (rounds - 1) / 2),
            JobStatus::Running
        )
    );
    eprintln!(
        "5,475-chunk job: created in {create_ms} ms; claim {:.1} ms on average over {rounds}; \
         at most {worst_reads} chunk items read per claim",
        claim_time.as_secs_f64() * 1000.0 / f64::from(rounds)
    );
}

/// `get_job` and the job a transition returns are exact after every chunk; `list_jobs` may
/// trail by fewer than 10 finished chunks (DynamoDB refreshes the job item every 10), and is
/// exact once the job has ended.
pub async fn counters_are_exact_when_read_and_close_in_lists(fx: Arc<Fixture>) {
    let (j, c) = job(&["tickets"], 25);
    let store = fx.open();
    store.create_job(j.clone(), c, true).await.unwrap();
    let mut records = 0;
    for i in 0..25u32 {
        let chunk = claimed(claim(&*store, &j.job_id, "a", t0()).await);
        let returned = if i == 12 {
            store
                .fail_chunk(&chunk.key, "a", "HTTP 400: bad query", None, t0())
                .await
                .unwrap()
        } else {
            records += u64::from(i) * 100;
            store
                .complete_chunk(&chunk.key, "a", &cp(u64::from(i) * 100), t0())
                .await
                .unwrap()
        };
        let failed = u32::from(i >= 12);
        let completed = i + 1 - failed;
        let read = store.get_job(&j.job_id).await.unwrap().unwrap();
        for job in [&returned, &read] {
            assert_eq!(
                (job.completed_chunks, job.failed_chunks, job.records),
                (completed, failed, records),
                "after chunk {i}"
            );
        }
        let listed = store
            .list_jobs(&JobFilter {
                tenant_id: Some("acme".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let shown = listed[0].completed_chunks + listed[0].failed_chunks;
        assert!(
            shown <= i + 1 && i + 1 - shown < 10,
            "after chunk {i} the list shows {shown} finished chunks"
        );
    }
    let listed = store.list_jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(listed[0].status, JobStatus::CompletedWithErrors);
    assert_eq!(
        (
            listed[0].completed_chunks,
            listed[0].failed_chunks,
            listed[0].records
        ),
        (24, 1, records)
    );
}
