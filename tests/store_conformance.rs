//! One suite of JobStore behaviour, run against every backend (SQLite here, on a temp file).

use std::sync::Arc;

use avesa_console::domain::{
    Checkpoint, Chunk, ChunkKey, ChunkStatus, Job, JobStatus, Service, Window,
};
use avesa_console::store::{Claim, CreateOutcome, JobFilter, JobStore, SqliteStore, StoreError};
use chrono::{DateTime, Duration, TimeZone, Utc};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn job(tables: &[&str], chunks_per_table: u32) -> (Job, Vec<Chunk>) {
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
    };
    (job, chunks)
}

async fn claim(store: &dyn JobStore, id: &str, owner: &str, now: DateTime<Utc>) -> Claim {
    store
        .claim_next_chunk(id, owner, now + Duration::seconds(60), now)
        .await
        .unwrap()
}

fn claimed(c: Claim) -> Chunk {
    match c {
        Claim::Chunk(c) => *c,
        other => panic!("expected a chunk, got {other:?}"),
    }
}

async fn create_is_idempotent_for_active_ranges(store: Arc<dyn JobStore>) {
    let (j, c) = job(&["tickets"], 2);
    let first = store.create_job(j.clone(), c.clone(), true).await.unwrap();
    assert!(matches!(first, CreateOutcome::Created(_)));
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

async fn chunks_run_in_order_per_table_and_tables_in_parallel(store: Arc<dyn JobStore>) {
    let (j, c) = job(&["tickets", "companies"], 2);
    store.create_job(j.clone(), c, true).await.unwrap();
    let a = claimed(claim(&*store, &j.job_id, "a", t0()).await);
    assert_eq!(
        (a.key.table.as_str(), a.key.seq, a.attempts),
        ("tickets", 0, 1)
    );
    // tickets#1 must wait for tickets#0; companies#0 is free.
    let b = claimed(claim(&*store, &j.job_id, "b", t0()).await);
    assert_eq!((b.key.table.as_str(), b.key.seq), ("companies", 0));
    match claim(&*store, &j.job_id, "c", t0()).await {
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
    store.complete_chunk(&a.key, "a", &cp, t0()).await.unwrap();
    let next = claimed(claim(&*store, &j.job_id, "a", t0()).await);
    assert_eq!((next.key.table.as_str(), next.key.seq), ("tickets", 1));
}

async fn leases_guard_every_write(store: Arc<dyn JobStore>) {
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

async fn failures_back_off_then_fail_and_the_job_settles(store: Arc<dyn JobStore>) {
    let (j, c) = job(&["tickets"], 2);
    store.create_job(j.clone(), c, true).await.unwrap();
    let a = claimed(claim(&*store, &j.job_id, "a", t0()).await);
    let retry_at = t0() + Duration::seconds(30);
    store
        .fail_chunk(&a.key, "a", "HTTP 503: busy", Some(retry_at), t0())
        .await
        .unwrap();
    // Backing off: the table waits, nothing else is runnable.
    assert_eq!(
        claim(&*store, &j.job_id, "a", t0()).await,
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
    let second = claimed(claim(&*store, &j.job_id, "a", retry_at).await);
    assert_eq!(second.key.seq, 1, "the job goes on after a failed chunk");
    let cp = Checkpoint {
        cursor: None,
        parts: 1,
        records: 7,
        pages: 1,
    };
    let job = store
        .complete_chunk(&second.key, "a", &cp, retry_at)
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

async fn release_keeps_progress_without_counting_an_attempt(store: Arc<dyn JobStore>) {
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

async fn pause_and_cancel(store: Arc<dyn JobStore>) {
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

/// Many claimers on separate connections: every chunk goes to exactly one of them.
async fn racing_claimers_never_share_a_chunk(make: impl Fn() -> Arc<dyn JobStore>) {
    let first = make();
    let tables: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = tables.iter().map(String::as_str).collect();
    let (j, c) = job(&refs, 1);
    first.create_job(j.clone(), c, true).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = make();
        let id = j.job_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                match store
                    .claim_next_chunk(&id, &format!("w{w}"), t0() + Duration::seconds(60), t0())
                    .await
                    .unwrap()
                {
                    Claim::Chunk(c) => mine.push(c.key.clone()),
                    _ => return mine,
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let n = all.len();
    all.sort_by(|a, b| a.table.cmp(&b.table));
    all.dedup();
    assert_eq!(all.len(), n, "a chunk was claimed twice");
    assert_eq!(n, 12);
}

macro_rules! suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn create_is_idempotent() {
                {
                    let (_dir, store) = $make();
                    create_is_idempotent_for_active_ranges(store).await
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ordering() {
                {
                    let (_dir, store) = $make();
                    chunks_run_in_order_per_table_and_tables_in_parallel(store).await
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn leases() {
                {
                    let (_dir, store) = $make();
                    leases_guard_every_write(store).await
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn failures() {
                {
                    let (_dir, store) = $make();
                    failures_back_off_then_fail_and_the_job_settles(store).await
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn release() {
                {
                    let (_dir, store) = $make();
                    release_keeps_progress_without_counting_an_attempt(store).await
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pause_cancel() {
                {
                    let (_dir, store) = $make();
                    pause_and_cancel(store).await
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn racing_claimers() {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("state.db");
                racing_claimers_never_share_a_chunk(|| {
                    Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn JobStore>
                })
                .await
            }
        }
    };
}

/// A store on a fresh file; the folder lives as long as the returned guard.
fn sqlite() -> (tempfile::TempDir, Arc<dyn JobStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    (dir, store)
}

suite!(sqlite_backend, sqlite);
