//! The rate row port: one row per tenant + service that every process and worker of the pair
//! shares, holding the request schedule (`next_slot_ms`), the shared pause (`paused_until_ms`)
//! and the circuit breaker's state.
//!
//! The store applies a caller's pure change to the row atomically (SQLite: one `BEGIN IMMEDIATE`
//! transaction; DynamoDB: a read, then a write conditional on the version read, retried on
//! conflict; in memory: under a lock). The slot reservation rule is `reserve`, here, because a
//! store may apply it more cheaply (DynamoDB's busy-pair path); the pause and the breaker's
//! transitions are decided in `engine::budget` and `engine::breaker`.
//!
//! Times in the row are milliseconds since the Unix epoch, from `RateClock`: a wall-clock anchor
//! plus tokio's elapsed time, so several processes on one host (or hosts with synchronised
//! clocks) agree, and tests on paused tokio time move it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::StoreError;
use crate::domain::Service;

/// The shared state of one tenant + service. A missing row reads as `RateRow::default()`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateRow {
    /// The first request slot nobody has reserved yet.
    pub next_slot_ms: i64,
    /// No request of the pair goes before this (a server's `Retry-After`).
    pub paused_until_ms: i64,
    /// Consecutive failed requests (any process).
    pub failures: u32,
    /// 0: the breaker is closed; otherwise it is open until then and half-open after.
    pub open_until_ms: i64,
    /// While half-open: the probe is out (held by one process) until then.
    pub probe_until_ms: i64,
    pub opened_total: u64,
    pub last_failure: Option<String>,
}

/// A pure change of a row; it may run more than once (a DynamoDB write lost a race).
pub type RateChange = Box<dyn FnMut(&mut RateRow) + Send>;

/// The slot reservation rule: `n` slots `spacing_ms` apart, the first at the first free slot,
/// never before now nor before the pause ends. Returns the first slot.
pub fn reserve(row: &mut RateRow, now_ms: i64, n: u32, spacing_ms: i64) -> i64 {
    let first = now_ms.max(row.next_slot_ms).max(row.paused_until_ms);
    row.next_slot_ms = first + i64::from(n) * spacing_ms;
    first
}

#[async_trait]
pub trait RateStore: Send + Sync {
    /// The pair's row as stored now.
    async fn read_rate(&self, tenant_id: &str, service: Service) -> Result<RateRow, StoreError>;
    /// Applies `change` to the stored row atomically and returns the row before and after.
    /// Writes nothing when the change leaves the row as it was.
    async fn update_rate(
        &self,
        tenant_id: &str,
        service: Service,
        change: RateChange,
    ) -> Result<(RateRow, RateRow), StoreError>;
    /// Reserves a block of `n` request slots (`reserve`) in one atomic change; returns the
    /// first slot and the row after.
    async fn reserve_slots(
        &self,
        tenant_id: &str,
        service: Service,
        now_ms: i64,
        n: u32,
        spacing_ms: i64,
    ) -> Result<(i64, RateRow), StoreError> {
        let change = Box::new(move |r: &mut RateRow| {
            reserve(r, now_ms, n, spacing_ms);
        });
        let (_, after) = self.update_rate(tenant_id, service, change).await?;
        Ok((after.next_slot_ms - i64::from(n) * spacing_ms, after))
    }
    /// Rows written so far by this handle (writes per request, for benches and tests).
    fn rate_writes(&self) -> u64;
}

/// The process-local rate store: for an engine without a shared store (unit tests, benches),
/// so that budgets and breakers have one code path.
#[derive(Default)]
pub struct MemoryRateStore {
    rows: Mutex<HashMap<(String, Service), RateRow>>,
    writes: AtomicU64,
}

impl MemoryRateStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RateStore for MemoryRateStore {
    async fn read_rate(&self, tenant_id: &str, service: Service) -> Result<RateRow, StoreError> {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        Ok(rows
            .get(&(tenant_id.to_string(), service))
            .cloned()
            .unwrap_or_default())
    }

    async fn update_rate(
        &self,
        tenant_id: &str,
        service: Service,
        mut change: RateChange,
    ) -> Result<(RateRow, RateRow), StoreError> {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let row = rows.entry((tenant_id.to_string(), service)).or_default();
        let before = row.clone();
        change(row);
        if *row != before {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        Ok((before, row.clone()))
    }

    fn rate_writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

/// "Now" in milliseconds since the epoch for rate rows: the wall clock when the clock was made,
/// plus tokio's time elapsed since (so paused test time moves it).
#[derive(Clone, Copy, Debug)]
pub struct RateClock {
    wall_ms: i64,
    at: Instant,
}

impl RateClock {
    /// Anchored at the wall clock now.
    pub fn now() -> Self {
        RateClock {
            wall_ms: chrono::Utc::now().timestamp_millis(),
            at: Instant::now(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.wall_ms + Instant::now().duration_since(self.at).as_millis() as i64
    }

    /// The tokio instant of a row time (now, for times already past).
    pub fn instant_at(&self, ms: i64) -> Instant {
        let now = Instant::now();
        let ahead = ms - self.now_ms();
        if ahead <= 0 {
            now
        } else {
            now + Duration::from_millis(ahead as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_clock_follows_paused_time_and_a_change_that_changes_nothing_writes_nothing() {
        let clock = RateClock::now();
        let t0 = clock.now_ms();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(clock.now_ms() - t0, 1500);
        let store = MemoryRateStore::new();
        let (before, after) = store
            .update_rate(
                "acme",
                Service::Connectwise,
                Box::new(|r| r.next_slot_ms = 5),
            )
            .await
            .unwrap();
        assert_eq!((before.next_slot_ms, after.next_slot_ms), (0, 5));
        store
            .update_rate("acme", Service::Connectwise, Box::new(|_| {}))
            .await
            .unwrap();
        assert_eq!(store.rate_writes(), 1);
        let row = store.read_rate("acme", Service::Connectwise).await.unwrap();
        assert_eq!(row.next_slot_ms, 5);
    }
}
