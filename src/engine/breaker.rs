//! A circuit breaker per tenant + service.
//!
//! When a tenant's API keeps failing (an outage, revoked credentials), every further request
//! only burns time, rate budget and chunk attempts. After `threshold` consecutive failed
//! requests the breaker opens: that pair's requests wait (their chunks keep their leases and
//! cursors) while other tenants go on. After the cool-down one probe request goes through
//! (half-open); its success closes the breaker, its failure opens it for another cool-down.
//! Rate-limit answers are not failures: the budget handles them.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::events::BreakerState;

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

struct Inner {
    state: BreakerState,
    failures: u32,
    opened_at: Option<Instant>,
    probe_out: bool,
    last_failure: Option<String>,
    opened_total: u64,
}

pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
    changed: Notify,
}

impl CircuitBreaker {
    /// `threshold` 0 disables the breaker.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        CircuitBreaker {
            threshold,
            cooldown,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                failures: 0,
                opened_at: None,
                probe_out: false,
                last_failure: None,
                opened_total: 0,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a request may go; reports the move to half-open through `on_change`.
    pub async fn admit(&self, mut on_change: impl FnMut(Transition)) -> Admission {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait_until = {
                let mut s = self.lock();
                match s.state {
                    BreakerState::Closed => return Admission::Normal,
                    BreakerState::Open => {
                        let until = s.opened_at.unwrap_or_else(Instant::now) + self.cooldown;
                        if Instant::now() >= until {
                            s.state = BreakerState::HalfOpen;
                            s.probe_out = true;
                            let t = Transition {
                                state: s.state,
                                consecutive_failures: s.failures,
                                reason: s.last_failure.clone(),
                            };
                            drop(s);
                            on_change(t);
                            return Admission::Probe;
                        }
                        Some(until)
                    }
                    BreakerState::HalfOpen => {
                        if !s.probe_out {
                            s.probe_out = true;
                            return Admission::Probe;
                        }
                        None
                    }
                }
            };
            match wait_until {
                Some(until) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => {}
                        _ = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Records how an admitted request ended; returns the state change it caused, if any.
    pub fn record(&self, admission: Admission, outcome: Outcome) -> Option<Transition> {
        let mut s = self.lock();
        let before = s.state;
        match outcome {
            Outcome::Success => {
                s.failures = 0;
                s.state = BreakerState::Closed;
                s.probe_out = false;
            }
            Outcome::Failure(reason) => {
                s.failures = s.failures.saturating_add(1);
                s.last_failure = Some(reason);
                let trips = match s.state {
                    BreakerState::HalfOpen => admission == Admission::Probe,
                    BreakerState::Closed => self.threshold > 0 && s.failures >= self.threshold,
                    BreakerState::Open => false,
                };
                if trips {
                    s.state = BreakerState::Open;
                    s.opened_at = Some(Instant::now());
                    s.probe_out = false;
                    s.opened_total += 1;
                }
            }
            Outcome::Neutral => {
                if admission == Admission::Probe {
                    // The probe proved nothing: let the next request probe.
                    s.probe_out = false;
                }
            }
        }
        let after = s.state;
        let t = (before != after).then(|| Transition {
            state: after,
            consecutive_failures: s.failures,
            reason: s.last_failure.clone(),
        });
        drop(s);
        if t.is_some() || admission == Admission::Probe {
            self.changed.notify_waiters();
        }
        t
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        let s = self.lock();
        let probe_in = (s.state == BreakerState::Open).then(|| {
            (s.opened_at.unwrap_or_else(Instant::now) + self.cooldown)
                .saturating_duration_since(Instant::now())
        });
        BreakerSnapshot {
            state: s.state,
            consecutive_failures: s.failures,
            last_failure: s.last_failure.clone(),
            probe_in,
            opened_total: s.opened_total,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn fail(b: &CircuitBreaker, a: Admission) -> Option<Transition> {
        b.record(a, Outcome::Failure("HTTP 503".into()))
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_n_consecutive_failures_and_a_success_resets_the_count() {
        let b = CircuitBreaker::new(3, Duration::from_secs(30));
        assert_eq!(fail(&b, Admission::Normal), None);
        assert_eq!(fail(&b, Admission::Normal), None);
        assert_eq!(b.record(Admission::Normal, Outcome::Success), None);
        assert_eq!(b.snapshot().consecutive_failures, 0);
        assert_eq!(
            b.record(Admission::Normal, Outcome::Neutral),
            None,
            "rate limits do not count"
        );
        fail(&b, Admission::Normal);
        fail(&b, Admission::Normal);
        let t = fail(&b, Admission::Normal).expect("third failure opens");
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
        fail(&b, Admission::Normal);
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
        let t = b.record(Admission::Probe, Outcome::Success).unwrap();
        assert_eq!(t.state, BreakerState::Closed);
        let (a, at) = other.await.unwrap();
        assert_eq!(a, Admission::Normal);
        assert_eq!(at.duration_since(start), Duration::from_secs(35));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_again_for_another_cooldown() {
        let b = CircuitBreaker::new(2, Duration::from_secs(10));
        fail(&b, Admission::Normal);
        fail(&b, Admission::Normal);
        let start = Instant::now();
        assert_eq!(b.admit(|_| {}).await, Admission::Probe);
        let t = fail(&b, Admission::Probe).unwrap();
        assert_eq!(t.state, BreakerState::Open);
        assert_eq!(b.admit(|_| {}).await, Admission::Probe);
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        assert_eq!(b.snapshot().opened_total, 2);
        // A neutral probe (say, a 429) hands the probe to the next request.
        assert_eq!(b.record(Admission::Probe, Outcome::Neutral), None);
        assert_eq!(b.snapshot().state, BreakerState::HalfOpen);
        assert_eq!(b.admit(|_| {}).await, Admission::Probe);
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn threshold_zero_never_opens() {
        let b = CircuitBreaker::new(0, Duration::from_secs(10));
        for _ in 0..100 {
            assert_eq!(fail(&b, Admission::Normal), None);
        }
        assert_eq!(b.admit(|_| {}).await, Admission::Normal);
    }
}
