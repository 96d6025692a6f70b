//! How many windows of a tenant + service are worked on at once in this process: the in-flight
//! controller, shared by every job of the pair like its rate budget.
//!
//! A runner takes a permit before it claims a chunk and gives it back when the chunk ends. The
//! number of permits (`permits_for`, the one sizing rule) follows Little's law: to keep the rate
//! budget busy, `rate × latency` requests must be in flight; a quarter more and one spare cover
//! jitter and the gap between one page and the next:
//! `clamp(ceil(rate/s × latency × 1.25) + 1, 1, max_in_flight)`, where latency is an EWMA of
//! the pair's request latencies (the time around `Source::fetch_page`, not the budget's wait).
//! Before the first answer a paced pair starts at 2 and grows as latencies come in; an unpaced
//! pair (`pace_requests: false`, benchmarks) has nothing to size against and uses
//! `max_in_flight` at once. `max_in_flight` is the service's setting, or `run --concurrency N`.
//!
//! Shrinking never takes a permit away: runners above the new size finish their chunk, and no
//! new one starts until the count is below it. Time is tokio's (paused in tests).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Weight of the newest latency in the average.
const EWMA_WEIGHT: f64 = 0.2;
/// Permits of a paced pair before any latency is known.
const INITIAL_PERMITS: u32 = 2;

/// The permits that keep a budget of `rate_per_sec` busy at `latency`, at most `max`.
/// `rate_per_sec: None` is an unpaced pair (`max`); `latency: None` is before any answer.
pub fn permits_for(rate_per_sec: Option<f64>, latency: Option<Duration>, max: u32) -> u32 {
    let max = max.max(1);
    let Some(rate) = rate_per_sec else {
        return max;
    };
    let Some(latency) = latency else {
        return INITIAL_PERMITS.min(max);
    };
    let needed = (rate * latency.as_secs_f64() * 1.25).ceil();
    let needed = if needed.is_finite() && needed < f64::from(u32::MAX - 1) {
        needed as u32
    } else {
        u32::MAX - 1
    };
    (needed + 1).clamp(1, max)
}

/// What the controller of one pair looks like now (for `status` and the bench).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InFlightSnapshot {
    /// Windows that may be in flight now.
    pub permits: u32,
    /// The cap (`max_in_flight` or `--concurrency`).
    pub max: u32,
    /// Windows in flight now.
    pub in_flight: u32,
    /// Windows in flight on average since the first one started (time-weighted).
    pub average_in_flight: f64,
    /// The average request latency (EWMA), once one is known.
    pub latency: Option<Duration>,
}

struct State {
    permits: u32,
    in_use: u32,
    latency: Option<Duration>,
    first: Option<Instant>,
    last: Option<Instant>,
    /// Σ in_use × seconds, up to `last`.
    area: f64,
}

impl State {
    /// Accumulates the time spent at the current count, up to now.
    fn tick(&mut self, now: Instant) {
        if let Some(last) = self.last {
            self.area += f64::from(self.in_use) * now.duration_since(last).as_secs_f64();
        }
        self.first.get_or_insert(now);
        self.last = Some(now);
    }
}

/// The in-flight controller of one tenant + service.
pub struct InFlight {
    rate_per_sec: Option<f64>,
    max: u32,
    state: Mutex<State>,
    freed: Notify,
}

/// A window's right to be in flight; given back when dropped.
pub struct Permit {
    owner: Arc<InFlight>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut s = self.owner.lock();
            s.tick(Instant::now());
            s.in_use = s.in_use.saturating_sub(1);
        }
        self.owner.freed.notify_waiters();
    }
}

impl InFlight {
    /// A controller for a pair paced at `per_minute` (`None`: unpaced), capped at `max`.
    pub fn new(per_minute: Option<u32>, max: u32) -> Self {
        let rate_per_sec = per_minute.map(|n| f64::from(n) / 60.0);
        InFlight {
            rate_per_sec,
            max: max.max(1),
            state: Mutex::new(State {
                permits: permits_for(rate_per_sec, None, max),
                in_use: 0,
                latency: None,
                first: None,
                last: None,
                area: 0.0,
            }),
            freed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until fewer windows than the permits are in flight and takes one.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut s = self.lock();
                if s.in_use < s.permits {
                    s.tick(Instant::now());
                    s.in_use += 1;
                    return Permit {
                        owner: self.clone(),
                    };
                }
            }
            freed.await;
        }
    }

    /// One request's latency (its answer, not the wait for the budget): moves the average
    /// and resizes the permits.
    pub fn observe(&self, latency: Duration) {
        let grew = {
            let mut s = self.lock();
            let avg = match s.latency {
                None => latency,
                Some(old) => old.mul_f64(1.0 - EWMA_WEIGHT) + latency.mul_f64(EWMA_WEIGHT),
            };
            s.latency = Some(avg);
            let before = s.permits;
            s.permits = permits_for(self.rate_per_sec, Some(avg), self.max);
            s.permits > before
        };
        if grew {
            self.freed.notify_waiters();
        }
    }

    pub fn snapshot(&self) -> InFlightSnapshot {
        let mut s = self.lock();
        let now = Instant::now();
        if s.first.is_some() {
            s.tick(now);
        }
        let span = s.first.map_or(0.0, |f| now.duration_since(f).as_secs_f64());
        InFlightSnapshot {
            permits: s.permits,
            max: self.max,
            in_flight: s.in_use,
            average_in_flight: if span > 0.0 { s.area / span } else { 0.0 },
            latency: s.latency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn permits_follow_rate_times_latency() {
        // 200/min at 1.5 s: 3.33/s × 1.5 × 1.25 = 6.25 → 7, + 1.
        assert_eq!(permits_for(Some(200.0 / 60.0), Some(MS(1500)), 64), 8);
        // 60/min at 300 ms: 1 × 0.3 × 1.25 = 0.375 → 1, + 1.
        assert_eq!(permits_for(Some(1.0), Some(MS(300)), 8), 2);
        // 6,000/min at 3 s wants 126: the cap wins.
        assert_eq!(permits_for(Some(100.0), Some(MS(3000)), 8), 8);
        // An instant answer still leaves one spare.
        assert_eq!(permits_for(Some(100.0), Some(Duration::ZERO), 8), 1);
        assert_eq!(permits_for(Some(100.0), Some(MS(1)), 8), 2);
    }

    #[test]
    fn before_any_answer_paced_starts_at_two_and_unpaced_at_the_cap() {
        assert_eq!(permits_for(Some(3.0), None, 8), 2);
        assert_eq!(permits_for(Some(3.0), None, 1), 1);
        assert_eq!(permits_for(None, None, 8), 8);
        assert_eq!(permits_for(None, Some(MS(5000)), 5), 5);
    }

    #[test]
    fn huge_rates_do_not_overflow() {
        assert_eq!(permits_for(Some(f64::MAX), Some(MS(3000)), 8), 8);
        assert_eq!(permits_for(Some(1.0), Some(Duration::MAX), 64), 64);
    }

    #[tokio::test(start_paused = true)]
    async fn permits_grow_with_latency_and_wake_a_waiting_runner() {
        let c = Arc::new(InFlight::new(Some(200), 8));
        let (a, b) = (c.acquire().await, c.acquire().await);
        assert_eq!(c.snapshot().in_flight, 2);
        let waiting = tokio::spawn({
            let c = c.clone();
            async move { c.acquire().await }
        });
        tokio::time::sleep(MS(10)).await;
        assert!(!waiting.is_finished(), "a third runner waits at 2 permits");
        c.observe(MS(1500));
        let third = tokio::time::timeout(MS(10), waiting).await;
        assert!(third.is_ok(), "the grown permits let it in");
        assert_eq!(c.snapshot().permits, 8);
        assert_eq!(c.snapshot().in_flight, 3);
        drop((a, b, third));
        assert_eq!(c.snapshot().in_flight, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn latency_is_a_moving_average_and_in_flight_a_time_average() {
        let c = Arc::new(InFlight::new(Some(60), 8));
        c.observe(MS(1000));
        c.observe(MS(2000));
        let avg = c.snapshot().latency.unwrap().as_secs_f64();
        assert!((avg - 1.2).abs() < 1e-6, "{avg}");
        let a = c.acquire().await;
        let b = c.acquire().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(b);
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(a);
        // Two for one second, one for the next: 1.5 on average.
        let avg = c.snapshot().average_in_flight;
        assert!((avg - 1.5).abs() < 1e-6, "{avg}");
    }
}
