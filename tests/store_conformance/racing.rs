//! Racing writers: several stores (connections, clients) on the same data at once. Each
//! test counts winners, so a store without atomic conditional writes fails it.

use std::collections::BTreeMap;
use std::sync::Arc;

use avesa_console::domain::{Checkpoint, ChunkStatus, JobStatus};
use avesa_console::store::{Claim, CreateOutcome, StoreError};
use chrono::Duration;

use super::backends::Fixture;
use super::{claimed, job, t0};

/// Many claimers on separate connections: every chunk goes to exactly one of them.
pub async fn claimers_never_share_a_chunk(fx: Arc<Fixture>) {
    let tables: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = tables.iter().map(String::as_str).collect();
    let (j, c) = job(&refs, 1);
    fx.open().create_job(j.clone(), c, true).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = fx.open();
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

/// A lease expires; eight owners race to take the chunk over, then all of them and the old
/// holder race to checkpoint it. One takes it, and only that one's checkpoint lands.
pub async fn one_owner_takes_over_and_writes(fx: Arc<Fixture>) {
    let (j, c) = job(&["tickets"], 1);
    let store = fx.open();
    store.create_job(j.clone(), c, true).await.unwrap();
    let first = claimed(super::claim(&*store, &j.job_id, "old", t0()).await);
    let later = t0() + Duration::seconds(61);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = fx.open();
        let id = j.job_id.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("w{w}");
            let got = store
                .claim_next_chunk(&id, &owner, later + Duration::seconds(60), later)
                .await
                .unwrap();
            (owner, matches!(got, Claim::Chunk(_)))
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (owner, won) = t.await.unwrap();
        if won {
            winners.push(owner);
        }
    }
    assert_eq!(winners.len(), 1, "takeover winners: {winners:?}");

    let mut writers = Vec::new();
    for owner in (0..8).map(|w| format!("w{w}")).chain(["old".to_string()]) {
        let store = fx.open();
        let key = first.key.clone();
        writers.push(tokio::spawn(async move {
            let cp = Checkpoint {
                cursor: Some(owner.clone()),
                parts: 1,
                records: 10,
                pages: 1,
            };
            let res = store
                .checkpoint(&key, &owner, &cp, later + Duration::seconds(60))
                .await;
            (owner, res)
        }));
    }
    let mut landed = Vec::new();
    for w in writers {
        match w.await.unwrap() {
            (owner, Ok(())) => landed.push(owner),
            (_, Err(StoreError::LeaseLost { .. })) => {}
            (owner, Err(e)) => panic!("{owner}: {e}"),
        }
    }
    assert_eq!(landed, winners, "only the new holder may write");
    let chunk = &store.chunks(&j.job_id).await.unwrap()[0];
    assert_eq!(
        chunk.checkpoint.cursor.as_deref(),
        Some(winners[0].as_str())
    );
    assert_eq!(chunk.lease_owner.as_deref(), Some(winners[0].as_str()));
    assert_eq!(chunk.attempts, 1, "a takeover continues the attempt");
}

/// The same plan triggered eight times at once: one job, seven answers pointing at it.
pub async fn creators_of_one_plan_make_one_job(fx: Arc<Fixture>) {
    let (j, c) = job(&["tickets", "companies"], 30);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = fx.open();
        let (j, c) = (j.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            store.create_job(j, c, true).await.unwrap()
        }));
    }
    let mut created = Vec::new();
    let mut existing = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            CreateOutcome::Created(job) => created.push(job.job_id),
            CreateOutcome::Existing(job) => existing.push(job.job_id),
        }
    }
    assert_eq!(created, vec![j.job_id.clone()], "exactly one creation");
    assert_eq!(existing, vec![j.job_id.clone(); 7]);
    let store = fx.open();
    let jobs = store.list_jobs(&Default::default()).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let chunks = store.chunks(&j.job_id).await.unwrap();
    assert_eq!(chunks.len(), 60);
    assert!(chunks.iter().all(|c| c.status == ChunkStatus::Pending));
}

/// Eight workers run a whole job (claim, checkpoint, complete) to its end: every chunk
/// succeeds exactly once and the job's totals are exact.
pub async fn workers_finish_a_job_exactly_once(fx: Arc<Fixture>) {
    let (j, c) = job(&["tickets", "companies", "contacts"], 6);
    fx.open().create_job(j.clone(), c, true).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = fx.open();
        let id = j.job_id.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("w{w}");
            let mut done = Vec::new();
            loop {
                let lease = t0() + Duration::seconds(600);
                match store
                    .claim_next_chunk(&id, &owner, lease, t0())
                    .await
                    .unwrap()
                {
                    Claim::Chunk(c) => {
                        let cp = Checkpoint {
                            cursor: Some(format!("{}", c.key.seq)),
                            parts: 1,
                            records: u64::from(c.key.seq) + 1,
                            pages: 1,
                        };
                        store.checkpoint(&c.key, &owner, &cp, lease).await.unwrap();
                        store
                            .complete_chunk(&c.key, &owner, &cp, t0())
                            .await
                            .unwrap();
                        done.push(c.key.clone());
                    }
                    Claim::Wait { .. } => {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await
                    }
                    Claim::Done(status) => return (done, status),
                }
            }
        }));
    }
    let mut per_chunk = BTreeMap::new();
    for t in tasks {
        let (done, status) = t.await.unwrap();
        assert_eq!(status, JobStatus::Completed);
        for key in done {
            *per_chunk.entry((key.table, key.seq)).or_insert(0) += 1;
        }
    }
    assert_eq!(per_chunk.len(), 18);
    assert!(per_chunk.values().all(|n| *n == 1), "{per_chunk:?}");
    let job = fx.open().get_job(&j.job_id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!((job.completed_chunks, job.failed_chunks), (18, 0));
    assert_eq!(job.records, 3 * (1..=6).sum::<u64>());
    let listed = fx.open().list_jobs(&Default::default()).await.unwrap();
    assert_eq!(
        (listed[0].completed_chunks, listed[0].records),
        (18, job.records),
        "a finished job's listed totals are exact"
    );
}

/// The fleet's admission queue: a write lands only on the version it read. Eight writers read
/// the same version and race: one lands; the queue holds its entries at the next version, and
/// a write on a stale version is refused.
pub async fn fleet_queue_writes_are_conditional(fx: Arc<Fixture>) {
    use avesa_console::store::FleetEntry;
    let store = fx.open();
    let empty = store.fleet().await.unwrap();
    assert_eq!((empty.version, empty.entries.len()), (0, 0));
    let entry = |w: usize| FleetEntry {
        job_id: format!("backfill_t{w}_connectwise_20250101"),
        tenant_id: format!("t{w}"),
        priority: w as i32,
        wait_off_peak: w.is_multiple_of(2),
        queued_at: t0(),
        admitted_at: w.is_multiple_of(3).then(t0),
        launch: format!("{{\"lanes\":{w}}}"),
    };
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = fx.open();
        tasks.push(tokio::spawn(async move {
            let written = vec![entry(w), entry(w + 100)];
            let won = store.put_fleet(&written, 0).await.unwrap();
            (won, written)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (won, written) = t.await.unwrap();
        if won {
            winners.push(written);
        }
    }
    assert_eq!(winners.len(), 1, "writers of version 0 that landed");
    let read = store.fleet().await.unwrap();
    assert_eq!(read.version, 1);
    assert_eq!(read.entries, winners[0], "the winner's entries, as written");
    assert!(
        !store.put_fleet(&[], 0).await.unwrap(),
        "a stale version is refused"
    );
    assert!(store.put_fleet(&[], 1).await.unwrap());
    let read = store.fleet().await.unwrap();
    assert_eq!((read.version, read.entries.len()), (2, 0));
}
