//! Request pacing per tenant + service, shared by every job and table of that pair.
//!
//! Three inputs decide when the next request may go:
//! - the configured rate: a GCRA limiter (governor) with a burst of one spaces requests
//!   `60/n` seconds apart, so a server that allows `n` per minute, in any window alignment,
//!   never sees more than it allows;
//! - what the server says about its quota (`ApiUsage`): a lower server limit wins, and as the
//!   used share of the quota nears the limit the pace slows down, so the quota is not burnt
//!   to the last request;
//! - a rate-limit answer: its `Retry-After` pauses the whole pair, not only the request that
//!   got it, because every other request of the pair would be refused too.
//!
//! Time is tokio's, so the pacing can be tested on paused time.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::clock::Clock;
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::sources::ApiUsage;

/// governor's clock on tokio's time: paused in tests, the real monotonic clock otherwise.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;
    fn now(&self) -> Self::Instant {
        Instant::now().into_std()
    }
}

type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    TokioClock,
    governor::middleware::NoOpMiddleware<std::time::Instant>,
>;

/// The used share of a server quota above which the pace slows down.
pub const SLOWDOWN_FROM: f64 = 0.8;
/// The slowest pace, as a multiple of the normal spacing, reached at a fully used quota.
pub const MAX_SLOWDOWN: f64 = 20.0;

/// What the budget of one pair looks like now (for the console's health view).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BudgetSnapshot {
    /// The configured requests per minute (`None`: not paced).
    pub configured_per_minute: Option<u32>,
    /// The pace actually applied after server signals.
    pub effective_per_minute: Option<f64>,
    /// The server's last word on its quota.
    pub server_usage: Option<ApiUsage>,
    pub last_rate_limited_at: Option<DateTime<Utc>>,
    pub last_retry_after: Option<Duration>,
    /// Requests wait until then because of a `Retry-After`.
    pub paused_for: Option<Duration>,
    pub rate_limited_total: u64,
}

struct State {
    limiter: Option<Arc<Limiter>>,
    /// Current spacing (after slow-downs); zero when unpaced.
    spacing: Duration,
    paused_until: Option<Instant>,
    server_usage: Option<ApiUsage>,
    last_rate_limited_at: Option<DateTime<Utc>>,
    last_retry_after: Option<Duration>,
    rate_limited_total: u64,
    /// Whether a `Retry-After` beyond the maximum was already reported.
    clamp_reported: bool,
}

pub struct RateBudget {
    configured: Option<u32>,
    base_spacing: Duration,
    state: Mutex<State>,
}

fn limiter(spacing: Duration) -> Option<Arc<Limiter>> {
    Quota::with_period(spacing).map(|q| {
        Arc::new(RateLimiter::direct_with_clock(
            q.allow_burst(NonZeroU32::MIN),
            TokioClock,
        ))
    })
}

fn spacing_of(per_minute: Option<u32>) -> Duration {
    per_minute
        .and_then(NonZeroU32::new)
        .map_or(Duration::ZERO, |n| {
            Duration::from_secs_f64(60.0 / f64::from(n.get()))
        })
}

/// How much slower than normal to go when the server reports `usage`: 1 below
/// `SLOWDOWN_FROM` of the quota, rising linearly to `MAX_SLOWDOWN` at the full quota.
pub fn slowdown_for(usage: &ApiUsage) -> f64 {
    let Some(used) = usage.used else { return 1.0 };
    if usage.limit == 0 {
        return MAX_SLOWDOWN;
    }
    let share = used as f64 / usage.limit as f64;
    if share <= SLOWDOWN_FROM {
        return 1.0;
    }
    let over = ((share - SLOWDOWN_FROM) / (1.0 - SLOWDOWN_FROM)).min(1.0);
    1.0 + over * (MAX_SLOWDOWN - 1.0)
}

impl RateBudget {
    /// `None` paces nothing (benchmarks, sources without a limit).
    pub fn new(per_minute: Option<u32>) -> Self {
        let spacing = spacing_of(per_minute);
        RateBudget {
            configured: per_minute,
            base_spacing: spacing,
            state: Mutex::new(State {
                limiter: limiter(spacing),
                spacing,
                paused_until: None,
                server_usage: None,
                last_rate_limited_at: None,
                last_retry_after: None,
                rate_limited_total: 0,
                clamp_reported: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configured spacing between paced requests (zero when unpaced).
    pub fn spacing(&self) -> Duration {
        self.base_spacing
    }

    /// The spacing applied now, after server signals.
    pub fn current_spacing(&self) -> Duration {
        self.lock().spacing
    }

    /// Waits until one more request fits the budget.
    pub async fn acquire(&self) {
        loop {
            let (limiter, paused_until) = {
                let s = self.lock();
                (s.limiter.clone(), s.paused_until)
            };
            if let Some(until) = paused_until
                && until > Instant::now()
            {
                tokio::time::sleep_until(until).await;
                continue;
            }
            let Some(limiter) = limiter else { return };
            match limiter.check() {
                Ok(()) => {
                    // A pause set while this caller waited for its slot still applies.
                    let s = self.lock();
                    if s.paused_until.is_some_and(|u| u > Instant::now()) {
                        continue;
                    }
                    return;
                }
                Err(not_until) => {
                    let wait = not_until.wait_time_from(TokioClock.now());
                    tokio::time::sleep(wait).await
                }
            }
        }
    }

    /// The server refused a request for its limits: every request of the pair waits
    /// `retry_after` (or `fallback` when the server did not say).
    pub fn rate_limited(&self, retry_after: Option<Duration>, fallback: Duration) {
        let wait = retry_after.unwrap_or(fallback);
        let mut s = self.lock();
        let until = Instant::now() + wait;
        s.paused_until = Some(s.paused_until.map_or(until, |u| u.max(until)));
        s.last_rate_limited_at = Some(Utc::now());
        s.last_retry_after = Some(wait);
        s.rate_limited_total += 1;
    }

    /// `retry_after` cut to `max`. Returns true the first time this pair's server asked
    /// for longer than `max`, so the caller reports it once.
    pub fn clamp_retry_after(&self, retry_after: Duration, max: Duration) -> (Duration, bool) {
        if retry_after <= max {
            return (retry_after, false);
        }
        let mut s = self.lock();
        let first = !s.clamp_reported;
        s.clamp_reported = true;
        (max, first)
    }

    /// Adjusts the pace to what the server said about its quota. Returns true when the
    /// applied pace changed.
    pub fn observe(&self, usage: &ApiUsage) -> bool {
        let mut s = self.lock();
        s.server_usage = Some(usage.clone());
        // A short-period server limit (ServiceNow's hourly rules), spread evenly over its
        // period, caps the configured rate. A daily quota (Salesforce) is not spread: a
        // backfill may use it, and the slow-down below keeps the last part of it for others.
        let server_spacing = if usage.limit > 0 && usage.period <= Duration::from_secs(3600) {
            usage.period.div_f64(usage.limit as f64)
        } else {
            Duration::ZERO
        };
        let base = self.base_spacing.max(server_spacing);
        let wanted = base.mul_f64(slowdown_for(usage));
        // Rebuild the limiter only on a real change (> 5 %): a new limiter forgets its state.
        let current = s.spacing.as_secs_f64();
        let changed = if current == 0.0 {
            !wanted.is_zero()
        } else {
            (wanted.as_secs_f64() / current - 1.0).abs() > 0.05
        };
        if changed {
            s.spacing = wanted;
            s.limiter = limiter(wanted);
        }
        changed
    }

    pub fn snapshot(&self) -> BudgetSnapshot {
        let s = self.lock();
        let now = Instant::now();
        BudgetSnapshot {
            configured_per_minute: self.configured,
            effective_per_minute: (!s.spacing.is_zero()).then(|| 60.0 / s.spacing.as_secs_f64()),
            server_usage: s.server_usage.clone(),
            last_rate_limited_at: s.last_rate_limited_at,
            last_retry_after: s.last_retry_after,
            paused_for: s
                .paused_until
                .filter(|u| *u > now)
                .map(|u| u.duration_since(now)),
            rate_limited_total: s.rate_limited_total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn times_of(budget: &RateBudget, n: usize) -> Vec<Duration> {
        let start = Instant::now();
        let mut out = Vec::new();
        for _ in 0..n {
            budget.acquire().await;
            out.push(start.elapsed());
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_evenly_at_the_configured_rate() {
        let budget = RateBudget::new(Some(120)); // one per 500 ms
        let t = times_of(&budget, 5).await;
        let ms: Vec<u128> = t.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 500, 1000, 1500, 2000]);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_budget() {
        let budget = Arc::new(RateBudget::new(Some(60))); // one per second
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let b = budget.clone();
            tasks.push(tokio::spawn(async move {
                b.acquire().await;
                start.elapsed()
            }));
        }
        let mut secs = Vec::new();
        for t in tasks {
            secs.push(t.await.unwrap().as_secs());
        }
        secs.sort();
        assert_eq!(secs, vec![0, 1, 2, 3], "four callers, one slot per second");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_the_whole_pair() {
        let budget = Arc::new(RateBudget::new(Some(600))); // 100 ms spacing
        budget.acquire().await;
        budget.rate_limited(Some(Duration::from_secs(7)), Duration::from_secs(1));
        let start = Instant::now();
        let other = {
            let b = budget.clone();
            tokio::spawn(async move {
                b.acquire().await;
                Instant::now()
            })
        };
        budget.acquire().await;
        let mine = start.elapsed();
        let theirs = other.await.unwrap().duration_since(start);
        assert!(mine >= Duration::from_secs(7), "{mine:?}");
        assert!(theirs >= Duration::from_secs(7), "{theirs:?}");
        let snap = budget.snapshot();
        assert_eq!(snap.rate_limited_total, 1);
        assert_eq!(snap.last_retry_after, Some(Duration::from_secs(7)));
        // A shorter Retry-After never shortens a pause already running.
        budget.rate_limited(Some(Duration::from_secs(10)), Duration::ZERO);
        budget.rate_limited(Some(Duration::from_secs(2)), Duration::ZERO);
        let before = Instant::now();
        budget.acquire().await;
        assert!(before.elapsed() >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_retry_after_uses_the_fallback() {
        let budget = RateBudget::new(None);
        budget.rate_limited(None, Duration::from_secs(3));
        let start = Instant::now();
        budget.acquire().await;
        assert_eq!(start.elapsed().as_secs(), 3);
    }

    #[test]
    fn slowdown_rises_from_80_percent_of_the_quota() {
        let at = |used| ApiUsage {
            used: Some(used),
            limit: 1000,
            period: Duration::from_secs(86_400),
            resets_at: None,
        };
        assert_eq!(slowdown_for(&at(0)), 1.0);
        assert_eq!(slowdown_for(&at(800)), 1.0);
        assert!((slowdown_for(&at(900)) - 10.5).abs() < 1e-9);
        assert_eq!(slowdown_for(&at(1000)), MAX_SLOWDOWN);
        assert_eq!(slowdown_for(&at(5000)), MAX_SLOWDOWN);
        let unknown = ApiUsage {
            used: None,
            ..at(0)
        };
        assert_eq!(slowdown_for(&unknown), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_nearly_spent_quota_slows_requests_down() {
        let budget = RateBudget::new(Some(60)); // 1 s spacing
        assert!(budget.observe(&ApiUsage {
            used: Some(900),
            limit: 1000,
            period: Duration::from_secs(86_400),
            resets_at: None,
        }));
        // 90 % of a daily quota used: 10.5 times slower than the configured 1 s.
        let expected = Duration::from_secs_f64(10.5);
        assert!((budget.current_spacing().as_secs_f64() - expected.as_secs_f64()).abs() < 1e-6);
        let t = times_of(&budget, 2).await;
        assert!(
            (t[1].as_secs_f64() - expected.as_secs_f64()).abs() < 0.01,
            "{t:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lower_server_limit_caps_the_configured_rate() {
        // ServiceNow: 1800 requests per hour = one per 2 s, while we were told 120/min.
        let budget = RateBudget::new(Some(120));
        let hourly = ApiUsage {
            used: None,
            limit: 1800,
            period: Duration::from_secs(3600),
            resets_at: None,
        };
        assert!(budget.observe(&hourly));
        assert!(!budget.observe(&hourly), "same signal, no change");
        let t = times_of(&budget, 3).await;
        let secs: Vec<u64> = t.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, vec![0, 2, 4]);
        let snap = budget.snapshot();
        assert_eq!(snap.configured_per_minute, Some(120));
        assert!((snap.effective_per_minute.unwrap() - 30.0).abs() < 1e-9);
        // A generous server limit leaves the configured pace alone.
        let fresh = RateBudget::new(Some(120));
        let roomy = ApiUsage {
            limit: 1_000_000,
            ..hourly
        };
        assert!(!fresh.observe(&roomy));
        assert_eq!(fresh.current_spacing(), Duration::from_millis(500));
    }
}
