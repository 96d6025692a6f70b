//! One window of a table asks first. Until a request of a job's table has succeeded in this
//! process, its windows take turns at their first request: the first asks alone, the others
//! wait for its answer. A success lets every window through at once from then on; a failure
//! that every window would share (`SourceError::is_table_wide`) is handed to the windows that
//! were waiting for it, which fail with it without asking (the table fails once, in the
//! store, for every process: `JobStore::fail_table`); any other failure passes the turn to
//! the next window. A failure is shared with every window that started (was claimed) before
//! the table was failed in the store (`settle` marks that moment), so a window claimed in
//! between does not ask again, and a window claimed later (after `retry-failed` reopened the
//! table) does.
//!
//! Other processes learn of the failure from the store: their pending windows of the table
//! are failed there, so at most the windows they already had in flight ask once more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

/// Each job table's first-request state in this process.
#[derive(Default)]
pub(crate) struct TableProbes {
    tables: Mutex<HashMap<(String, String), Arc<Probe>>>,
}

#[derive(Default)]
struct Probe {
    turn: Arc<tokio::sync::Mutex<()>>,
    state: Mutex<State>,
}

#[derive(Default)]
enum State {
    #[default]
    Unproven,
    Proven,
    Failed {
        cause: String,
        at: Instant,
    },
}

/// The turn to ask first for a table; dropped without a verdict, it passes to the next
/// waiting window.
pub(crate) struct Ticket {
    probe: Arc<Probe>,
    _turn: OwnedMutexGuard<()>,
}

impl Ticket {
    /// A request of the table succeeded: every window may ask from now on.
    pub(crate) fn proven(self) {
        *lock(&self.probe.state) = State::Proven;
    }

    /// The table failed for a cause every window shares: the waiting windows fail with it.
    pub(crate) fn failed(self, cause: String) {
        *lock(&self.probe.state) = State::Failed {
            cause,
            at: Instant::now(),
        };
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TableProbes {
    /// Waits for the window's turn at its first request. `Ok(None)`: the table is proven,
    /// ask freely; `Ok(Some)`: ask now, then give the ticket its verdict; `Err(cause)`: the
    /// table failed while this window waited, do not ask.
    /// `since`: when the window started (after its claim).
    pub(crate) async fn enter(
        &self,
        job_id: &str,
        table: &str,
        since: Instant,
    ) -> Result<Option<Ticket>, String> {
        let probe = self.probe(job_id, table);
        if matches!(*lock(&probe.state), State::Proven) {
            return Ok(None);
        }
        let turn = probe.turn.clone().lock_owned().await;
        let verdict = match &*lock(&probe.state) {
            State::Proven => Some(Ok(None)),
            State::Failed { cause, at } if *at >= since => Some(Err(cause.clone())),
            _ => None,
        };
        match verdict {
            Some(v) => v,
            None => Ok(Some(Ticket { probe, _turn: turn })),
        }
    }

    /// The table's failure is now in the store: windows that started before this moment share
    /// it (they were claimed before their chunks were failed there).
    pub(crate) fn settle(&self, job_id: &str, table: &str) {
        if let State::Failed { at, .. } = &mut *lock(&self.probe(job_id, table).state) {
            *at = Instant::now();
        }
    }

    fn probe(&self, job_id: &str, table: &str) -> Arc<Probe> {
        lock(&self.tables)
            .entry((job_id.to_string(), table.to_string()))
            .or_default()
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_share_a_table_failure_and_later_windows_ask_again() {
        let probes = Arc::new(TableProbes::default());
        let first = probes
            .enter("j", "t", Instant::now())
            .await
            .unwrap()
            .expect("first asks");
        let waiter = {
            let probes = probes.clone();
            tokio::spawn(async move {
                probes
                    .enter("j", "t", Instant::now())
                    .await
                    .map(|t| t.is_some())
            })
        };
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        first.failed("HTTP 400: INVALID_FIELD".into());
        assert_eq!(waiter.await.unwrap(), Err("HTTP 400: INVALID_FIELD".into()));
        // Another table, and a window claimed after the failure, ask for themselves.
        assert!(
            probes
                .enter("j", "u", Instant::now())
                .await
                .unwrap()
                .is_some()
        );
        let again = probes
            .enter("j", "t", Instant::now())
            .await
            .unwrap()
            .expect("asks again");
        again.proven();
        assert!(
            probes
                .enter("j", "t", Instant::now())
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_failure_of_one_window_passes_the_turn() {
        let probes = TableProbes::default();
        drop(probes.enter("j", "t", Instant::now()).await.unwrap());
        assert!(
            probes
                .enter("j", "t", Instant::now())
                .await
                .unwrap()
                .is_some()
        );
    }

    /// A window that started before the table's failure reached the store, but entered after
    /// the failure, shares it; one started after `settle` asks again.
    #[tokio::test]
    async fn a_window_started_before_the_store_write_shares_the_failure() {
        let probes = TableProbes::default();
        let started = Instant::now();
        let first = probes.enter("j", "t", started).await.unwrap().unwrap();
        first.failed("HTTP 400: INVALID_FIELD".into());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        probes.settle("j", "t");
        let late = probes.enter("j", "t", started).await;
        assert_eq!(
            late.map(|t| t.is_some()),
            Err("HTTP 400: INVALID_FIELD".into())
        );
        let reopened = probes.enter("j", "t", Instant::now()).await.unwrap();
        assert!(
            reopened.is_some(),
            "a window claimed after the store write asks again"
        );
    }
}
