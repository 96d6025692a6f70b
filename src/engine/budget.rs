//! Request pacing per tenant + service: evenly spaced calls at the configured rate.
//!
//! A GCRA limiter with a burst of one spaces requests `60/n` seconds apart, so a server that
//! allows `n` per minute (in any window alignment) never sees more than it allows.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};

pub struct RateBudget {
    limiter: Option<
        RateLimiter<governor::state::NotKeyed, governor::state::InMemoryState, DefaultClock>,
    >,
    clock: DefaultClock,
    spacing: Duration,
}

impl RateBudget {
    /// `None` paces nothing (benchmarks, sources without a limit).
    pub fn new(per_minute: Option<u32>) -> Self {
        let spacing = per_minute
            .and_then(NonZeroU32::new)
            .map_or(Duration::ZERO, |n| {
                Duration::from_secs_f64(60.0 / f64::from(n.get()))
            });
        let limiter = Quota::with_period(spacing)
            .map(|q| RateLimiter::direct(q.allow_burst(NonZeroU32::MIN)));
        RateBudget {
            limiter,
            clock: DefaultClock::default(),
            spacing,
        }
    }

    /// The spacing between paced requests (zero when unpaced).
    pub fn spacing(&self) -> Duration {
        self.spacing
    }

    /// Waits until one more request fits the budget.
    pub async fn acquire(&self) {
        let Some(limiter) = &self.limiter else { return };
        loop {
            match limiter.check() {
                Ok(()) => return,
                Err(not_until) => {
                    tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await
                }
            }
        }
    }
}
