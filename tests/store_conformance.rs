//! One suite of JobStore behaviour, run against every backend: SQLite on a temp file and
//! DynamoDB Local (`AVESA_TEST_DYNAMODB_URL`, started by `scripts/test`).

// The suite's other files live in tests/store_conformance/ (one test binary, not four).
#[path = "store_conformance/backends.rs"]
mod backends;
#[path = "store_conformance/dynamodb_only.rs"]
mod dynamodb_only;
#[path = "store_conformance/pulse.rs"]
mod pulse;
#[path = "store_conformance/racing.rs"]
mod racing;
#[path = "store_conformance/scale.rs"]
mod scale;

use std::sync::Arc;

use backends::{Fixture, run};

use avesa_console::domain::{
    Checkpoint, Chunk, ChunkKey, ChunkStatus, Job, JobStatus, Service, Window,
};
use avesa_console::store::{Claim, CreateOutcome, JobFilter, JobStore, StoreError};
use chrono::{DateTime, Duration, TimeZone, Utc};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

pub fn job(tables: &[&str], chunks_per_table: u32) -> (Job, Vec<Chunk>) {
    let id = "backfill_acme_connectwise_20250101".to_string();
    let start = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let mut chunks = Vec::new();
    for table in tables {
        for seq in 0..chunks_per_table {
            let s = start + Duration::days(i64::from(seq) * 10);
            chunks.push(Chunk::new(
                ChunkKey {
                    job_id: id.clone(),
                    table: table.to_string(),
                    seq,
                },
                Window::new(s, s + Duration::days(10)),
            ));
        }
    }
    let job = Job {
        job_id: id,
        tenant_id: "acme".into(),
        service: Service::Connectwise,
        tables: tables.iter().map(|t| t.to_string()).collect(),
        status: JobStatus::Pending,
        window: Window::new(
            start,
            start + Duration::days(10 * i64::from(chunks_per_table)),
        ),
        chunk_size_days: 10,
        max_attempts: 3,
        total_chunks: chunks.len() as u32,
        completed_chunks: 0,
        failed_chunks: 0,
        records: 0,
        created_at: t0(),
        updated_at: t0(),
        finished_at: None,
        skipped_fields: vec!["tickets.summary".into()],
    };
    (job, chunks)
}

pub async fn claim(store: &dyn JobStore, id: &str, owner: &str, now: DateTime<Utc>) -> Claim {
    store
        .claim_next_chunk(id, owner, now + Duration::seconds(60), now)
        .await
        .unwrap()
}

pub fn claimed(c: Claim) -> Chunk {
    match c {
        Claim::Chunk(c) => *c,
        other => panic!("expected a chunk, got {other:?}"),
    }
}

async fn create_is_idempotent_for_active_ranges(fx: Arc<Fixture>) {
    let store = fx.open();
    let (j, c) = job(&["tickets"], 2);
    let first = store.create_job(j.clone(), c.clone(), true).await.unwrap();
    assert!(matches!(first, CreateOutcome::Created(_)));
    let stored = store.get_job(&j.job_id).await.unwrap().unwrap();
    assert_eq!(
        stored.skipped_fields,
        ["tickets.summary"],
        "the skipped fields are kept"
    );
    let mut later = j.clone();
    later.window.end += Duration::hours(1); // a defaulted end moves with the clock
    let again = store
        .create_job(later.clone(), c.clone(), true)
        .await
        .unwrap();
    assert_eq!(again, CreateOutcome::Existing(first.job().clone()));
    // An explicit, different end for the same active range is a conflict, not a copy.
    assert!(
        matches!(store.create_job(later, c.clone(), false).await, Err(StoreError::Conflict(m)) if m.contains(&j.job_id))
    );
    // Once the first is over, the same request becomes a new job with a suffixed id.
    store
        .set_job_status(&j.job_id, JobStatus::Cancelled, t0())
        .await
        .unwrap();
    let next = store.create_job(j.clone(), c, true).await.unwrap();
    assert_eq!(next.job().job_id, format!("{}_r2", j.job_id));
    assert!(
        store
            .chunks(&next.job().job_id)
            .await
            .unwrap()
            .iter()
            .all(|c| c.key.job_id == next.job().job_id)
    );
    let by_tenant = store
        .list_jobs(&JobFilter {
            tenant_id: Some("acme".into()),
            status: Some(JobStatus::Cancelled),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_tenant.len(), 1);
}

async fn windows_of_a_table_run_in_parallel_first_ready_first(fx: Arc<Fixture>) {
    let store = fx.open();
    let (j, c) = job(&["tickets", "companies"], 2);
    store.create_job(j.clone(), c, true).await.unwrap();
    let a = claimed(claim(&*store, &j.job_id, "a", t0()).await);
    assert_eq!(
        (a.key.table.as_str(), a.key.seq, a.attempts),
        ("tickets", 0, 1)
    );
    // tickets#1 does not wait for tickets#0: windows are independent.
    let b = claimed(claim(&*store, &j.job_id, "b", t0()).await);
    assert_eq!((b.key.table.as_str(), b.key.seq), ("tickets", 1));
    let c = claimed(claim(&*store, &j.job_id, "c", t0()).await);
    assert_eq!((c.key.table.as_str(), c.key.seq), ("companies", 0));
    let d = claimed(claim(&*store, &j.job_id, "d", t0()).await);
    assert_eq!((d.key.table.as_str(), d.key.seq), ("companies", 1));
    match claim(&*store, &j.job_id, "e", t0()).await {
        Claim::Wait { until } => assert_eq!(
            until,
            Some(t0() + Duration::seconds(60)),
            "wakes when a lease could expire"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.get_job(&j.job_id).await.unwrap().unwrap().status,
        JobStatus::Running
    );
    let cp = Checkpoint {
        cursor: None,
        parts: 1,
        records: 10,
        pages: 1,
    };
    // A later window finishing first moves nothing for the others.
    let job = store.complete_chunk(&b.key, "b", &cp, t0()).await.unwrap();
    assert_eq!((job.completed_chunks, job.status), (1, JobStatus::Running));
    assert!(matches!(
        claim(&*store, &j.job_id, "e", t0()).await,
        Claim::Wait { .. }
    ));
    // The first expired lease is taken over: tickets#0 before the companies.
    let later = t0() + Duration::seconds(61);
    let e = claimed(claim(&*store, &j.job_id, "e", later).await);
    assert_eq!(
        (e.key.table.as_str(), e.key.seq, e.attempts),
        ("tickets", 0, 1)
    );
}

async fn leases_guard_every_write(fx: Arc<Fixture>) {
    let store = fx.open();
    let (j, c) = job(&["tickets"], 1);
    store.create_job(j.clone(), c, true).await.unwrap();
    let a = claimed(claim(&*store, &j.job_id, "a", t0()).await);
    let cp = Checkpoint {
        cursor: Some("1200".into()),
        parts: 2,
        records: 2000,
        pages: 2,
    };
    let lost = |r: Result<(), StoreError>| matches!(r, Err(StoreError::LeaseLost { .. }));
    assert!(lost(
        store
            .checkpoint(&a.key, "b", &cp, t0() + Duration::seconds(60))
            .await
    ));
    store
        .checkpoint(&a.key, "a", &cp, t0() + Duration::seconds(60))
        .await
        .unwrap();
    // After the lease expires another runner takes over the same attempt, from the checkpoint.
    let later = t0() + Duration::seconds(61);
    let b = claimed(claim(&*store, &j.job_id, "b", later).await);
    assert_eq!(b.key, a.key);
    assert_eq!(
        b.attempts, 1,
        "taking over an expired lease is not a new attempt"
    );
    assert_eq!(b.checkpoint, cp);
    assert!(matches!(
        store.complete_chunk(&a.key, "a", &cp, later).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(lost(store.renew_lease(&a.key, "a", later).await));
    // Breaking a lease needs the current owner's name.
    assert!(!store.break_lease(&b.key, "a", later).await.unwrap());
    assert!(store.break_lease(&b.key, "b", later).await.unwrap());
    let c2 = claimed(claim(&*store, &j.job_id, "c", later + Duration::seconds(1)).await);
    assert_eq!(c2.lease_owner.as_deref(), Some("c"));
}

async fn failures_back_off_then_fail_and_the_job_settles(fx: Arc<Fixture>) {
    let store = fx.open();
    let (j, c) = job(&["tickets"], 2);
    store.create_job(j.clone(), c, true).await.unwrap();
    let a = claimed(claim(&*store, &j.job_id, "a", t0()).await);
    let retry_at = t0() + Duration::seconds(30);
    store
        .fail_chunk(&a.key, "a", "HTTP 503: busy", Some(retry_at), t0())
        .await
        .unwrap();
    // A backed-off window does not hold back the next one.
    let second = claimed(claim(&*store, &j.job_id, "b", t0()).await);
    assert_eq!(second.key.seq, 1, "the later window runs meanwhile");
    assert_eq!(
        claim(&*store, &j.job_id, "c", t0()).await,
        Claim::Wait {
            until: Some(retry_at)
        }
    );
    let again = claimed(claim(&*store, &j.job_id, "a", retry_at).await);
    assert_eq!((again.key.seq, again.attempts), (0, 2));
    assert_eq!(again.last_error.as_deref(), Some("HTTP 503: busy"));
    let job = store
        .fail_chunk(&again.key, "a", "HTTP 500: broken", None, retry_at)
        .await
        .unwrap();
    assert_eq!((job.failed_chunks, job.status), (1, JobStatus::Running));
    let cp = Checkpoint {
        cursor: None,
        parts: 1,
        records: 7,
        pages: 1,
    };
    let job = store
        .complete_chunk(&second.key, "b", &cp, retry_at)
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::CompletedWithErrors);
    assert_eq!((job.completed_chunks, job.records), (1, 7));
    assert!(job.finished_at.is_some());
    assert_eq!(
        claim(&*store, &j.job_id, "a", retry_at).await,
        Claim::Done(JobStatus::CompletedWithErrors)
    );
    // Retrying failed chunks reopens exactly those, with fresh attempts.
    assert_eq!(store.retry_failed(&j.job_id, retry_at).await.unwrap(), 1);
    let job = store.get_job(&j.job_id).await.unwrap().unwrap();
    assert_eq!((job.status, job.failed_chunks), (JobStatus::Pending, 0));
    let reopened = claimed(claim(&*store, &j.job_id, "a", retry_at).await);
    assert_eq!((reopened.key.seq, reopened.attempts), (0, 1));
}

/// A cause every window of a table shares fails the table at once: the held chunk and the
/// table's pending chunks, no attempt used; another holder's chunk and other tables run on,
/// a second store (another process, a worker) sees it, and retry-failed reopens them all.
async fn a_failed_table_fails_its_pending_windows_once(fx: Arc<Fixture>) {
    let store = fx.open();
    let (j, c) = job(&["tickets", "companies"], 3);
    store.create_job(j.clone(), c, true).await.unwrap();
    let first = claimed(claim(&*store, &j.job_id, "a", t0()).await);
    let second = claimed(claim(&*store, &j.job_id, "b", t0()).await);
    assert_eq!((first.key.table.as_str(), second.key.seq), ("tickets", 1));
    let cause = "table tickets failed: HTTP 400: INVALID_FIELD: No such column";
    let job = store
        .fail_table(&first.key, "a", cause, t0())
        .await
        .unwrap();
    assert_eq!((job.failed_chunks, job.status), (2, JobStatus::Running));
    assert!(matches!(
        store.fail_table(&first.key, "a", cause, t0()).await,
        Err(StoreError::LeaseLost { .. })
    ));
    let other = fx.open();
    let chunks = other.chunks(&j.job_id).await.unwrap();
    let tickets: Vec<_> = chunks.iter().filter(|c| c.key.table == "tickets").collect();
    let states: Vec<_> = tickets.iter().map(|c| (c.status, c.attempts)).collect();
    assert_eq!(
        states,
        [
            (ChunkStatus::Failed, 1),
            (ChunkStatus::Running, 1),
            (ChunkStatus::Failed, 0)
        ]
    );
    assert_eq!(tickets[2].last_error.as_deref(), Some(cause));
    // The next claim skips the failed table.
    let next = claimed(claim(&*other, &j.job_id, "c", t0()).await);
    assert_eq!((next.key.table.as_str(), next.key.seq), ("companies", 0));
    assert_eq!(other.retry_failed(&j.job_id, t0()).await.unwrap(), 2);
    let job = other.get_job(&j.job_id).await.unwrap().unwrap();
    assert_eq!((job.status, job.failed_chunks), (JobStatus::Pending, 0));
    let reopened = claimed(claim(&*other, &j.job_id, "d", t0()).await);
    assert_eq!(
        (reopened.key.table.as_str(), reopened.key.seq),
        ("tickets", 0)
    );
}

async fn release_keeps_progress_without_counting_an_attempt(fx: Arc<Fixture>) {
    let store = fx.open();
    let (j, c) = job(&["tickets"], 1);
    store.create_job(j.clone(), c, true).await.unwrap();
    let a = claimed(claim(&*store, &j.job_id, "a", t0()).await);
    let cp = Checkpoint {
        cursor: Some("5000".into()),
        parts: 3,
        records: 3000,
        pages: 3,
    };
    store.release_chunk(&a.key, "a", &cp).await.unwrap();
    let chunks = store.chunks(&j.job_id).await.unwrap();
    assert_eq!(
        (chunks[0].status, chunks[0].attempts),
        (ChunkStatus::Pending, 0)
    );
    assert_eq!(chunks[0].checkpoint, cp);
    assert!(chunks[0].lease_owner.is_none());
    let b = claimed(claim(&*store, &j.job_id, "b", t0()).await);
    assert_eq!(
        (b.attempts, b.checkpoint.cursor.as_deref()),
        (1, Some("5000"))
    );
}

async fn pause_and_cancel(fx: Arc<Fixture>) {
    let store = fx.open();
    let (j, c) = job(&["tickets"], 2);
    store.create_job(j.clone(), c, true).await.unwrap();
    store
        .set_job_status(&j.job_id, JobStatus::Paused, t0())
        .await
        .unwrap();
    assert_eq!(
        claim(&*store, &j.job_id, "a", t0()).await,
        Claim::Done(JobStatus::Paused)
    );
    assert!(matches!(
        store
            .set_job_status(&j.job_id, JobStatus::Completed, t0())
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .set_job_status(&j.job_id, JobStatus::Pending, t0())
        .await
        .unwrap();
    let a = claimed(claim(&*store, &j.job_id, "a", t0()).await);
    let job = store
        .set_job_status(&j.job_id, JobStatus::Cancelled, t0())
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Cancelled);
    // The runner that held a chunk learns at its next write.
    let cp = Checkpoint::default();
    assert!(matches!(
        store.checkpoint(&a.key, "a", &cp, t0()).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(
        store
            .chunks(&j.job_id)
            .await
            .unwrap()
            .iter()
            .all(|c| c.status == ChunkStatus::Cancelled)
    );
    assert!(matches!(store.get_job("nope").await, Ok(None)));
}

macro_rules! suite {
    ($backend:ident, $setup:path) => {
        mod $backend {
            use super::*;
            suite!(@test $setup, create_is_idempotent, create_is_idempotent_for_active_ranges);
            suite!(@test $setup, ordering, windows_of_a_table_run_in_parallel_first_ready_first);
            suite!(@test $setup, leases, leases_guard_every_write);
            suite!(@test $setup, failures, failures_back_off_then_fail_and_the_job_settles);
            suite!(@test $setup, failed_table, a_failed_table_fails_its_pending_windows_once);
            suite!(@test $setup, release, release_keeps_progress_without_counting_an_attempt);
            suite!(@test $setup, pause_cancel, pause_and_cancel);
            suite!(@test $setup, racing_claimers, racing::claimers_never_share_a_chunk);
            suite!(@test $setup, racing_lease_takeover, racing::one_owner_takes_over_and_writes);
            suite!(@test $setup, racing_creators, racing::creators_of_one_plan_make_one_job);
            suite!(@test $setup, racing_workers, racing::workers_finish_a_job_exactly_once);
            suite!(@test $setup, fleet_queue, racing::fleet_queue_writes_are_conditional);
            suite!(@test $setup, big_job, scale::a_three_year_daily_job_fits_and_claims_in_order);
            suite!(@test $setup, counters, scale::counters_are_exact_when_read_and_close_in_lists);
            suite!(@test $setup, pulse_counters, pulse::increments_add_up_and_old_buckets_go);
        }
    };
    (@test $setup:path, $name:ident, $body:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            run($setup().await, $body).await
        }
    };
}

suite!(sqlite_backend, backends::sqlite);
suite!(dynamodb_backend, backends::dynamodb);
