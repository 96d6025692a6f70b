//! A circuit breaker per tenant + service, shared by every process and worker of the pair.
//!
//! When a tenant's API keeps failing (an outage, revoked credentials), every further request
//! only burns time, rate budget and chunk attempts. After `threshold` consecutive failed
//! requests the breaker opens: that pair's requests wait (their chunks keep their leases and
//! cursors) while other tenants go on. After the cool-down one probe request goes through
//! (half-open); its success closes the breaker, its failure opens it for another cool-down.
//! What counts as a failure is decided by the request policy (`breaker_outcome` in `policy`).
//!
//! The state lives in the pair's shared rate row (`RateStore`): the consecutive failures of
//! every process add up, an open breaker stops every process, and the half-open probe is won by
//! one process at a time with a conditional write that holds it for `PROBE_LEASE` (a probe whose
//! process died frees itself then). The transitions are the pure `admit_row` and `record_row`.
//! Each request reads the row once to be admitted; only failures, recoveries and probes write.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::events::BreakerState;
use crate::domain::Service;
use crate::store::{MemoryRateStore, RateClock, RateRow, RateStore};

/// How long a won probe is held before another process may probe (its holder died).
pub const PROBE_LEASE: Duration = Duration::from_secs(60);
/// How often a request waiting on another process's probe looks at the row again.
const POLL: Duration = Duration::from_secs(1);

/// Whether a request went through normally or as the half-open probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Normal,
    Probe,
}

/// How a request ended, as far as the breaker cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
    /// Neither: a rate-limit answer, a request the caller got wrong.
    Neutral,
}

/// A state change, for the engine to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerSnapshot {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub last_failure: Option<String>,
    /// While open: how long until the probe.
    pub probe_in: Option<Duration>,
    pub opened_total: u64,
}

/// The breaker's state in `row` at `now_ms`.
pub fn state_of(row: &RateRow, now_ms: i64) -> BreakerState {
    if row.open_until_ms == 0 {
        BreakerState::Closed
    } else if now_ms < row.open_until_ms {
        BreakerState::Open
    } else {
        BreakerState::HalfOpen
    }
}

/// Admission on the row: a normal request while closed; the probe (taken for `lease_ms`) when
/// half-open and nobody holds it; otherwise `Err` with when to look again.
pub fn admit_row(row: &mut RateRow, now_ms: i64, lease_ms: i64) -> Result<Admission, i64> {
    match state_of(row, now_ms) {
        BreakerState::Closed => Ok(Admission::Normal),
        BreakerState::Open => Err(row.open_until_ms),
        BreakerState::HalfOpen if row.probe_until_ms <= now_ms => {
            row.probe_until_ms = now_ms + lease_ms;
            Ok(Admission::Probe)
        }
        BreakerState::HalfOpen => Err(row.probe_until_ms),
    }
}

/// How an admitted request's outcome changes the row: a success closes the breaker and
/// clears the count; a failure counts, and opens the breaker at `threshold` (0: never) or when
/// it was the probe; a neutral probe hands the probe to the next request.
pub fn record_row(
    row: &mut RateRow,
    admission: Admission,
    outcome: &Outcome,
    now_ms: i64,
    threshold: u32,
    cooldown_ms: i64,
) {
    match outcome {
        Outcome::Success => {
            row.failures = 0;
            row.open_until_ms = 0;
            row.probe_until_ms = 0;
        }
        Outcome::Failure(reason) => {
            row.failures = row.failures.saturating_add(1);
            row.last_failure = Some(reason.clone());
            let trips = match state_of(row, now_ms) {
                BreakerState::HalfOpen => admission == Admission::Probe,
                BreakerState::Closed => threshold > 0 && row.failures >= threshold,
                BreakerState::Open => false,
            };
            if trips {
                row.open_until_ms = now_ms + cooldown_ms.max(1);
                row.probe_until_ms = 0;
                row.opened_total += 1;
            }
        }
        Outcome::Neutral => {
            if admission == Admission::Probe {
                row.probe_until_ms = 0;
            }
        }
    }
}

pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    tenant_id: String,
    service: Service,
    store: Arc<dyn RateStore>,
    clock: RateClock,
    /// The row as last read or written here (for snapshots and cheap decisions).
    seen: Mutex<RateRow>,
    changed: Notify,
}

impl CircuitBreaker {
    /// A breaker of this process alone. `threshold` 0 disables it.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self::shared(
            threshold,
            cooldown,
            Arc::new(MemoryRateStore::new()),
            "local",
            Service::Connectwise,
            RateClock::now(),
        )
    }

    /// The breaker of `tenant_id`'s `service` on the shared rate row in `store`.
    pub fn shared(
        threshold: u32,
        cooldown: Duration,
        store: Arc<dyn RateStore>,
        tenant_id: &str,
        service: Service,
        clock: RateClock,
    ) -> Self {
        CircuitBreaker {
            threshold,
            cooldown,
            tenant_id: tenant_id.to_string(),
            service,
            store,
            clock,
            seen: Mutex::new(RateRow::default()),
            changed: Notify::new(),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, RateRow> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn transition(row: &RateRow, state: BreakerState) -> Transition {
        Transition {
            state,
            consecutive_failures: row.failures,
            reason: row.last_failure.clone(),
        }
    }

    /// The shared row now (the last one seen when it cannot be read).
    async fn read(&self) -> RateRow {
        match self.store.read_rate(&self.tenant_id, self.service).await {
            Ok(row) => {
                *self.seen() = row.clone();
                row
            }
            Err(e) => {
                tracing::warn!(tenant_id = %self.tenant_id, service = %self.service, error = %e,
                    "cannot read the shared breaker state; using the last one seen");
                self.seen().clone()
            }
        }
    }

    /// Waits until a request may go; reports the move to half-open through `on_change`.
    pub async fn admit(&self, mut on_change: impl FnMut(Transition)) -> Admission {
        let lease_ms = PROBE_LEASE.as_millis() as i64;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.clock.now_ms();
            let mut row = self.read().await;
            let wake = match admit_row(&mut row, now, lease_ms) {
                Ok(Admission::Normal) => return Admission::Normal,
                // Half-open and free: take the probe with a conditional write.
                Ok(Admission::Probe) => match self.take_probe(now, lease_ms).await {
                    Ok(t) => {
                        on_change(t);
                        return Admission::Probe;
                    }
                    Err(wake) => wake,
                },
                Err(wake) => wake,
            };
            let wake = wake.min(now + POLL.as_millis() as i64);
            tokio::select! {
                _ = tokio::time::sleep_until(self.clock.instant_at(wake)) => {}
                _ = &mut notified => {}
            }
        }
    }

    /// Tries to win the probe; `Err` with when to look again when another process won it.
    async fn take_probe(&self, now: i64, lease_ms: i64) -> Result<Transition, i64> {
        let change = Box::new(move |r: &mut RateRow| {
            let _ = admit_row(r, now, lease_ms);
        });
        match self
            .store
            .update_rate(&self.tenant_id, self.service, change)
            .await
        {
            Ok((before, after)) => {
                *self.seen() = after.clone();
                match admit_row(&mut before.clone(), now, lease_ms) {
                    Ok(Admission::Probe) => Ok(Self::transition(&after, BreakerState::HalfOpen)),
                    Ok(Admission::Normal) => Err(now),
                    Err(wake) => Err(wake),
                }
            }
            Err(e) => {
                tracing::warn!(tenant_id = %self.tenant_id, service = %self.service, error = %e,
                    "cannot take the breaker's probe on the shared row; trying again");
                Err(now + POLL.as_millis() as i64)
            }
        }
    }

    /// Records how an admitted request ended; returns the state change it caused, if any.
    pub async fn record(&self, admission: Admission, outcome: Outcome) -> Option<Transition> {
        let now = self.clock.now_ms();
        {
            // Nothing to change: no write (the common case, a success while closed).
            let mut probe = self.seen().clone();
            record_row(&mut probe, admission, &outcome, now, self.threshold, 0);
            if probe == *self.seen() {
                return None;
            }
        }
        let (threshold, cooldown_ms) = (self.threshold, self.cooldown.as_millis() as i64);
        let o = outcome.clone();
        let change = Box::new(move |r: &mut RateRow| {
            record_row(r, admission, &o, now, threshold, cooldown_ms);
        });
        let (before, after) = match self
            .store
            .update_rate(&self.tenant_id, self.service, change)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(tenant_id = %self.tenant_id, service = %self.service, error = %e,
                    "cannot record a request's outcome on the shared breaker");
                return None;
            }
        };
        *self.seen() = after.clone();
        let (was, is) = (state_of(&before, now), state_of(&after, now));
        let opened = after.opened_total > before.opened_total;
        let t = (was != is || opened).then(|| Self::transition(&after, is));
        if t.is_some() || admission == Admission::Probe {
            self.changed.notify_waiters();
        }
        t
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        let s = self.seen().clone();
        let now = self.clock.now_ms();
        let state = state_of(&s, now);
        BreakerSnapshot {
            state,
            consecutive_failures: s.failures,
            last_failure: s.last_failure.clone(),
            probe_in: (state == BreakerState::Open)
                .then(|| Duration::from_millis((s.open_until_ms - now).max(0) as u64)),
            opened_total: s.opened_total,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::time::Instant;

    use super::*;

    async fn fail(b: &CircuitBreaker, a: Admission) -> Option<Transition> {
        b.record(a, Outcome::Failure("HTTP 503".into())).await
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_n_consecutive_failures_and_a_success_resets_the_count() {
        let b = CircuitBreaker::new(3, Duration::from_secs(30));
        assert_eq!(fail(&b, Admission::Normal).await, None);
        assert_eq!(fail(&b, Admission::Normal).await, None);
        assert_eq!(b.record(Admission::Normal, Outcome::Success).await, None);
        assert_eq!(b.snapshot().consecutive_failures, 0);
        assert_eq!(
            b.record(Admission::Normal, Outcome::Neutral).await,
            None,
            "rate limits do not count"
        );
        fail(&b, Admission::Normal).await;
        fail(&b, Admission::Normal).await;
        let t = fail(&b, Admission::Normal)
            .await
            .expect("third failure opens");
        assert_eq!(t.state, BreakerState::Open);
        assert_eq!(t.consecutive_failures, 3);
        assert_eq!(t.reason.as_deref(), Some("HTTP 503"));
        let snap = b.snapshot();
        assert_eq!(snap.state, BreakerState::Open);
        assert_eq!(snap.probe_in, Some(Duration::from_secs(30)));
    }

    #[tokio::test(start_paused = true)]
    async fn open_waits_the_cooldown_then_lets_exactly_one_probe_through() {
        let b = Arc::new(CircuitBreaker::new(1, Duration::from_secs(30)));
        fail(&b, Admission::Normal).await;
        let start = Instant::now();
        let mut seen = Vec::new();
        let first = b.admit(|t| seen.push(t.state)).await;
        assert_eq!(first, Admission::Probe);
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        assert_eq!(seen, vec![BreakerState::HalfOpen]);

        // While the probe is out, others wait.
        let other = {
            let b = b.clone();
            tokio::spawn(async move {
                let a = b.admit(|_| {}).await;
                (a, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            !other.is_finished(),
            "a second request went through while half-open"
        );
        let t = b.record(Admission::Probe, Outcome::Success).await.unwrap();
        assert_eq!(t.state, BreakerState::Closed);
        let (a, at) = other.await.unwrap();
        assert_eq!(a, Admission::Normal);
        assert_eq!(at.duration_since(start), Duration::from_secs(35));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_again_for_another_cooldown() {
        let b = CircuitBreaker::new(2, Duration::from_secs(10));
        fail(&b, Admission::Normal).await;
        fail(&b, Admission::Normal).await;
        let start = Instant::now();
        assert_eq!(b.admit(|_| {}).await, Admission::Probe);
        let t = fail(&b, Admission::Probe).await.unwrap();
        assert_eq!(t.state, BreakerState::Open);
        assert_eq!(b.admit(|_| {}).await, Admission::Probe);
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        assert_eq!(b.snapshot().opened_total, 2);
        // A neutral probe (say, a 429) hands the probe to the next request.
        assert_eq!(b.record(Admission::Probe, Outcome::Neutral).await, None);
        assert_eq!(b.snapshot().state, BreakerState::HalfOpen);
        assert_eq!(b.admit(|_| {}).await, Admission::Probe);
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn threshold_zero_never_opens() {
        let b = CircuitBreaker::new(0, Duration::from_secs(10));
        for _ in 0..100 {
            assert_eq!(fail(&b, Admission::Normal).await, None);
        }
        assert_eq!(b.admit(|_| {}).await, Admission::Normal);
    }
}
