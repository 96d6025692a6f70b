//! Who gets served, and how fast: the sandbox's per-tenant admission and what it measures
//! about each tenant's load. Every simulated API asks `Gate::admit` once per request, after
//! sign-in, and turns a `Refusal` into its own rate-limit answer.
//!
//! Decided here:
//! - **the rate limiter** (per tenant, `rate_limit_per_minute = n`): a GCRA with emission
//!   interval `T = 60/n` s and a tolerance `τ`; a request arriving at `t` is accepted when
//!   `t ≥ TAT − τ`, and then `TAT = max(TAT, t) + T`; a refusal says when to come back
//!   (whole seconds, at least 1). Two modes:
//!   - `RateMode::Burst` (the default): `τ = (n − 1)·T`, a burst of `n` and then `n` per
//!     minute (what a lenient server does);
//!   - `RateMode::Strict`: burst 1, `τ = max(T/2, min(0.9·T, 20 ms))`. A strict server's
//!     allowance for network jitter, which is absolute time: half an interval, but at least
//!     20 ms while that stays under one interval (so still burst 1: two requests at once are
//!     always refused). Over any run there are never more than `n` per minute on average.
//! - **the concurrent-request cap** (`max_concurrent_per_tenant`): a request arriving while
//!   that many of its tenant's requests are being served (the latency delay included) is
//!   refused and counted; a refused request holds no slot and takes no rate token;
//! - **the latency**: every API answer (not `/_sandbox/*`) is held back `base ± jitter`
//!   (uniform, never below zero), on tokio's clock so tests can pause time;
//! - **the measurements**: per tenant, requests in flight now and at the peak, the time
//!   spent serving (for the average in flight), and the arrival times of accepted requests
//!   (ms since start, the first `MAX_ARRIVALS` kept); `window_extremes` turns those into the
//!   fewest and most requests in any window.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::lock;
use crate::domain::Service;

/// Arrival times kept per tenant (4 bytes each): beyond it arrivals are counted, not kept.
pub const MAX_ARRIVALS: usize = 1_000_000;

/// How strictly the per-minute limit is enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateMode {
    /// A burst of `n`, then `n` per minute.
    #[default]
    Burst,
    /// Burst 1: requests `60/n` s apart, with a jitter tolerance of half that (at least
    /// 20 ms while under one interval).
    Strict,
}

/// How long each API answer is held back: `base` ± uniform `jitter`, never below zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    pub base: Duration,
    pub jitter: Duration,
}

impl Latency {
    /// One draw of the delay.
    pub(crate) fn draw(&self) -> Duration {
        if self.jitter.is_zero() {
            return self.base;
        }
        let offset = self.jitter.as_secs_f64() * (rand::random::<f64>() * 2.0 - 1.0);
        Duration::from_secs_f64((self.base.as_secs_f64() + offset).max(0.0))
    }
}

/// What one tenant put on the sandbox, in `SandboxStats::tenants`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLoad {
    /// Requests admitted (neither rate-limited nor over the concurrency cap).
    pub accepted: u64,
    /// The most of this tenant's requests served at once.
    pub max_in_flight: u64,
    /// Refused because `max_concurrent_per_tenant` were being served.
    pub concurrency_refused: u64,
    /// Refused by the rate limiter.
    pub rate_limited: u64,
    /// Time spent serving admitted requests, summed (÷ wall time = average in flight).
    pub busy_ms: u64,
    /// When admitted requests arrived, in ms since the sandbox started (the first
    /// `MAX_ARRIVALS`).
    pub arrivals_ms: Vec<u32>,
}

/// Why a request was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Over the rate limit; come back in this many whole seconds (≥ 1).
    Rate { retry_after_secs: u64 },
    /// `max_concurrent_per_tenant` requests of the tenant are being served.
    Concurrency,
}

/// Limiter state and measurements of one tenant.
#[derive(Debug, Default)]
struct TenantState {
    /// The GCRA's theoretical arrival time; `None` before the first request.
    tat: Option<Instant>,
    in_flight: u64,
    load: TenantLoad,
}

/// Per-tenant admission; see the module header.
#[derive(Debug)]
pub(crate) struct Gate {
    /// `(T, τ)` of the rate limiter; `None` = unlimited.
    gcra: Option<(Duration, Duration)>,
    max_concurrent: Option<u64>,
    started: Instant,
    tenants: Arc<Mutex<HashMap<String, TenantState>>>,
}

impl Gate {
    pub(crate) fn new(
        per_minute: Option<u32>,
        mode: RateMode,
        max_concurrent: Option<u32>,
    ) -> std::io::Result<Gate> {
        let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
        let gcra = match per_minute {
            None => None,
            Some(0) => return Err(invalid("rate_limit_per_minute must be at least 1")),
            Some(n) => Some(gcra(n, mode)),
        };
        if max_concurrent == Some(0) {
            return Err(invalid("max_concurrent_per_tenant must be at least 1"));
        }
        Ok(Gate {
            gcra,
            max_concurrent: max_concurrent.map(u64::from),
            started: Instant::now(),
            tenants: Arc::default(),
        })
    }

    /// Admits a request of `key` (a ConnectWise company, a ServiceNow or Salesforce user)
    /// of `service`: the slot it holds while it is served, or why it is refused.
    pub(crate) fn admit(&self, service: Service, key: &str) -> Result<Slot, Refusal> {
        let key = format!("{service}:{key}");
        let now = Instant::now();
        let mut tenants = lock(&self.tenants);
        let state = tenants.entry(key.clone()).or_default();
        if self
            .max_concurrent
            .is_some_and(|cap| state.in_flight >= cap)
        {
            state.load.concurrency_refused += 1;
            return Err(Refusal::Concurrency);
        }
        if let Some((t, tau)) = self.gcra {
            let tat = state.tat.unwrap_or(now);
            if now + tau < tat {
                state.load.rate_limited += 1;
                let retry_after_secs = retry_after_secs(tat - tau - now);
                return Err(Refusal::Rate { retry_after_secs });
            }
            state.tat = Some(tat.max(now) + t);
        }
        state.in_flight += 1;
        state.load.max_in_flight = state.load.max_in_flight.max(state.in_flight);
        state.load.accepted += 1;
        if state.load.arrivals_ms.len() < MAX_ARRIVALS {
            let ms = now.duration_since(self.started).as_millis();
            state
                .load
                .arrivals_ms
                .push(u32::try_from(ms).unwrap_or(u32::MAX));
        }
        Ok(Slot {
            tenants: self.tenants.clone(),
            key,
            since: now,
        })
    }

    /// Each tenant's load so far, by `service:key`.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, TenantLoad> {
        lock(&self.tenants)
            .iter()
            .map(|(k, s)| (k.clone(), s.load.clone()))
            .collect()
    }
}

/// The least jitter a strict limiter tolerates, while it stays under one interval.
const JITTER_ALLOWANCE: Duration = Duration::from_millis(20);

/// `(T, τ)` for `n` per minute in `mode`.
fn gcra(n: u32, mode: RateMode) -> (Duration, Duration) {
    let t = Duration::from_secs(60) / n;
    let tau = match mode {
        RateMode::Burst => t * (n - 1),
        RateMode::Strict => (t / 2).max(JITTER_ALLOWANCE.min(t * 9 / 10)),
    };
    (t, tau)
}

/// A request being served: the tenant's count in flight goes down when it is dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    tenants: Arc<Mutex<HashMap<String, TenantState>>>,
    key: String,
    since: Instant,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let busy = self.since.elapsed().as_millis() as u64;
        if let Some(state) = lock(&self.tenants).get_mut(&self.key) {
            state.in_flight = state.in_flight.saturating_sub(1);
            state.load.busy_ms += busy;
        }
    }
}

/// Whole seconds to wait, rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The fewest and most of `arrivals_ms` in any window `[t, t + window_ms)` that lies
/// between the first arrival and the last (inclusive); `None` when they span less than one
/// window. Arrivals need not be sorted.
pub fn window_extremes(arrivals_ms: &[u32], window_ms: u32) -> Option<(usize, usize)> {
    let mut a: Vec<u64> = arrivals_ms.iter().map(|&t| u64::from(t)).collect();
    a.sort_unstable();
    let (&first, &last) = (a.first()?, a.last()?);
    let w = u64::from(window_ms.max(1));
    // Window starts that keep the window inside [first, last + 1).
    let latest = (last + 1).checked_sub(w).filter(|&l| l >= first)?;
    let count = |t: u64| a.partition_point(|&x| x < t + w) - a.partition_point(|&x| x < t);
    // The most: some busiest window starts at an arrival.
    let most = a.iter().map(|&t| count(t)).max().unwrap_or(0);
    // The fewest: the count only drops when the start passes an arrival.
    let starts = [first, latest]
        .into_iter()
        .chain(a.iter().map(|&t| t + 1).filter(|&t| t <= latest));
    let fewest = starts.map(count).min().unwrap_or(0);
    Some((fewest, most))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(n: u32, mode: RateMode, cap: Option<u32>) -> Gate {
        Gate::new(Some(n), mode, cap).unwrap()
    }

    fn admit(g: &Gate) -> Result<Slot, Refusal> {
        g.admit(Service::Connectwise, "acme")
    }

    #[tokio::test(start_paused = true)]
    async fn strict_refuses_a_burst_of_two_and_accepts_requests_paced_at_the_interval() {
        // 60/min: T = 1 s, τ = 0.5 s.
        let g = gate(60, RateMode::Strict, None);
        assert!(admit(&g).is_ok());
        assert_eq!(
            admit(&g).err(),
            Some(Refusal::Rate {
                retry_after_secs: 1
            })
        );
        // Closer than T/2 after the first: still refused.
        tokio::time::advance(Duration::from_millis(499)).await;
        assert!(admit(&g).is_err());
        // Up to T/2 early is tolerated (jitter), but only once: the next is due at 2 s.
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(admit(&g).is_ok());
        assert!(admit(&g).is_err());
        // Paced at T from there on: every one accepted.
        for _ in 0..100 {
            tokio::time::advance(Duration::from_secs(1)).await;
            assert!(admit(&g).is_ok());
        }
        let load = &g.snapshot()["connectwise:acme"];
        assert_eq!((load.accepted, load.rate_limited), (102, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn strict_at_a_high_rate_tolerates_jitter_but_never_two_at_once() {
        // 6000/min: T = 10 ms, τ = 9 ms (20 ms would allow a burst of three).
        assert_eq!(
            gcra(6000, RateMode::Strict),
            (Duration::from_millis(10), Duration::from_millis(9))
        );
        let g = gate(6000, RateMode::Strict, None);
        assert!(admit(&g).is_ok());
        assert!(admit(&g).is_err(), "two at once");
        // One arrives 8 ms late, the next on time: 2 ms apart, within the jitter allowance.
        tokio::time::advance(Duration::from_millis(18)).await;
        assert!(admit(&g).is_ok());
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(admit(&g).is_ok());
        assert!(admit(&g).is_err(), "two at once");
    }

    #[tokio::test(start_paused = true)]
    async fn strict_at_twice_the_rate_gets_half_through_and_never_more_than_n_per_minute() {
        let g = gate(60, RateMode::Strict, None);
        let mut accepted = 0;
        for _ in 0..240 {
            accepted += usize::from(admit(&g).is_ok());
            tokio::time::advance(Duration::from_millis(500)).await;
        }
        // 120 s at 2/s: at most one per second got through.
        assert!((118..=121).contains(&accepted), "{accepted}");
        let load = &g.snapshot()["connectwise:acme"];
        let (_, most) = window_extremes(&load.arrivals_ms, 60_000).unwrap();
        assert!(most <= 61, "{most} in one minute");
    }

    #[tokio::test(start_paused = true)]
    async fn burst_mode_allows_n_at_once_then_n_per_minute() {
        let g = gate(5, RateMode::Burst, None);
        let ok = (0..6).filter(|_| admit(&g).is_ok()).count();
        assert_eq!(ok, 5);
        tokio::time::advance(Duration::from_secs(12)).await;
        assert!(admit(&g).is_ok());
        assert!(admit(&g).is_err());
        // Strict at the same rate lets only the first through.
        let s = gate(5, RateMode::Strict, None);
        assert_eq!((0..6).filter(|_| admit(&s).is_ok()).count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_concurrency_cap_refuses_while_slots_are_held_and_counts_the_peak() {
        let g = Gate::new(None, RateMode::Strict, Some(2)).unwrap();
        let a = admit(&g).unwrap();
        let b = admit(&g).unwrap();
        assert_eq!(admit(&g).err(), Some(Refusal::Concurrency));
        // Another tenant has its own slots.
        assert!(g.admit(Service::Servicenow, "acme").is_ok());
        tokio::time::advance(Duration::from_millis(300)).await;
        drop(a);
        let c = admit(&g).unwrap();
        drop((b, c));
        let load = &g.snapshot()["connectwise:acme"];
        assert_eq!(
            (load.accepted, load.concurrency_refused, load.max_in_flight),
            (3, 1, 2)
        );
        assert_eq!(load.busy_ms, 600);
    }

    #[test]
    fn window_extremes_find_the_busiest_and_quietest_minute() {
        // One a second for two minutes: 60 in every minute.
        let even: Vec<u32> = (0..120).map(|s| s * 1000).collect();
        assert_eq!(window_extremes(&even, 60_000), Some((60, 60)));
        // A quiet stretch (nothing in 30..60 s) and a burst of 20 at 90 s.
        let mut uneven: Vec<u32> = (0..30).chain(60..120).map(|s| s * 1000).collect();
        uneven.extend(std::iter::repeat_n(90_500, 20));
        let (fewest, most) = window_extremes(&uneven, 60_000).unwrap();
        assert_eq!((fewest, most), (30, 80));
        // Less than a window of arrivals: nothing to say.
        assert_eq!(window_extremes(&[0, 59_998], 60_000), None);
        assert_eq!(window_extremes(&[], 60_000), None);
        // Unsorted input is fine.
        assert_eq!(window_extremes(&[59_999, 0, 30_000], 60_000), Some((3, 3)));
    }

    #[test]
    fn latency_draws_stay_within_base_and_jitter_and_never_go_negative() {
        let l = Latency {
            base: Duration::from_millis(100),
            jitter: Duration::from_millis(300),
        };
        for _ in 0..1000 {
            assert!(l.draw() <= Duration::from_millis(400));
        }
        assert!((0..1000).any(|_| l.draw() == Duration::ZERO));
        let fixed = Latency {
            base: Duration::from_millis(250),
            jitter: Duration::ZERO,
        };
        assert_eq!(fixed.draw(), Duration::from_millis(250));
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(29_001)), 30);
        assert_eq!(retry_after_secs(Duration::from_secs(30)), 30);
    }
}
