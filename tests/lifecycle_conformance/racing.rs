//! Racing writers, each through its own handle on the same data as separate processes (or
//! cloud workers) would be: a marker that several finished jobs move at once ends at the
//! furthest end and is never seen going back; of racing finishers of one job exactly one
//! finalises it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use avesa_console::domain::{JobKind, Service};
use avesa_console::store::{HandoffClaim, LifecycleStore, MarkerAdvance};
use chrono::{DateTime, Duration, Utc};

use super::{Backend, adv, t};

const WRITERS: usize = 2;
const MOVES_PER_WRITER: i64 = 50;

/// Writer `w`'s ends: interleaved with the other writer's, one ascending and one descending,
/// so half the moves come after a further one and must not pull the marker back.
fn ends(w: usize) -> Vec<DateTime<Utc>> {
    let mut hours: Vec<i64> = (0..MOVES_PER_WRITER)
        .map(|k| 1 + k * WRITERS as i64 + w as i64)
        .collect();
    if w % 2 == 1 {
        hours.reverse();
    }
    hours
        .into_iter()
        .map(|h| t(2) + Duration::hours(h))
        .collect()
}

async fn reader(store: Arc<dyn LifecycleStore>, done: Arc<AtomicBool>) -> usize {
    let mut last = t(2);
    let mut reads = 0;
    while !done.load(Ordering::SeqCst) {
        let seen = store.markers(Some("acme"), None).await.unwrap();
        assert_eq!(seen.len(), 1);
        assert!(
            seen[0].last_updated >= last,
            "the marker went back from {last} to {}",
            seen[0].last_updated
        );
        last = seen[0].last_updated;
        reads += 1;
    }
    reads
}

pub async fn racing_writers_never_move_a_marker_back(b: Backend) {
    b.life
        .advance_marker(&adv(JobKind::Backfill, "bf1", t(1), t(2)))
        .await
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(reader(b.another(), done.clone()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = b.another();
            tokio::spawn(async move {
                let mut last = t(2);
                for (k, to) in ends(w).into_iter().enumerate() {
                    // Every sync starts at the backfill's end: never a gap, always allowed.
                    let m = store
                        .advance_marker(&MarkerAdvance {
                            tenant_id: "acme".into(),
                            service: Service::Connectwise,
                            table: "tickets".into(),
                            job_id: format!("sync_w{w}_{k}"),
                            kind: JobKind::Sync,
                            from: t(2),
                            to,
                            now: to,
                        })
                        .await
                        .unwrap();
                    assert!(m.last_updated >= to && m.last_updated >= last, "{m:?}");
                    last = m.last_updated;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    assert!(watcher.await.unwrap() > 0);
    let furthest = (0..WRITERS).flat_map(ends).max().unwrap();
    let m = b.life.markers(None, None).await.unwrap().remove(0);
    assert_eq!(
        m.last_updated, furthest,
        "the marker ends at the furthest end"
    );
    assert!(
        m.set_by_job.starts_with("sync_w"),
        "set by the job that reached it: {}",
        m.set_by_job
    );
    assert_eq!(
        (m.backfill_job.as_deref(), m.backfill_end),
        (Some("bf1"), Some(t(2))),
        "syncs keep the backfill they continue"
    );
}

pub async fn racing_finishers_finalise_once(b: Backend) {
    for job in 0..10 {
        let id = format!("backfill_race_{job}");
        let racers: Vec<_> = (0..WRITERS as u32 * 2)
            .map(|r| {
                let (store, id) = (b.another(), id.clone());
                tokio::spawn(async move { store.finalize_job(&id, t(3 + r)).await.unwrap() })
            })
            .collect();
        let mut won = 0;
        for r in racers {
            won += usize::from(r.await.unwrap());
        }
        assert_eq!(won, 1, "{id}: exactly one finisher finalises");
        let meta = b.life.job_metas(std::slice::from_ref(&id)).await.unwrap();
        assert!(meta[0].finalized_at.is_some());
    }
}

/// Of runners racing for a completed job's hand-off exactly one takes it; the others are
/// told who holds it and until when.
pub async fn racing_runners_take_a_handoff_once(b: Backend) {
    for job in 0..5 {
        let id = format!("backfill_handoff_race_{job}");
        let racers: Vec<_> = (0..WRITERS * 3)
            .map(|r| {
                let (store, id) = (b.another(), id.clone());
                tokio::spawn(async move {
                    let owner = format!("runner-{r}");
                    store
                        .claim_handoff(&id, &owner, t(1), t(5), None)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut taken = 0;
        for r in racers {
            match r.await.unwrap() {
                HandoffClaim::Taken => taken += 1,
                HandoffClaim::Held { owner, until } => {
                    assert!(owner.starts_with("runner-"), "{owner}");
                    assert_eq!(until, t(5));
                }
                HandoffClaim::Done => panic!("{id}: not finalised yet"),
            }
        }
        assert_eq!(taken, 1, "{id}: exactly one runner takes the hand-off");
    }
}
