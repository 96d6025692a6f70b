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
    per_minute: Option<u32>,
}

impl RateBudget {
    /// `None` paces nothing (benchmarks, sources without a limit).
    pub fn new(per_minute: Option<u32>) -> Self {
        let limiter = per_minute.and_then(NonZeroU32::new).map(|n| {
            let period = Duration::from_secs_f64(60.0 / f64::from(n.get()));
            RateLimiter::direct(
                Quota::with_period(period)
                    .expect("a positive period")
                    .allow_burst(NonZeroU32::MIN),
            )
        });
        RateBudget {
            limiter,
            clock: DefaultClock::default(),
            per_minute,
        }
    }

    pub fn per_minute(&self) -> Option<u32> {
        self.per_minute
    }

    /// The spacing between paced requests (zero when unpaced).
    pub fn spacing(&self) -> Duration {
        match (&self.limiter, self.per_minute) {
            (Some(_), Some(n)) if n > 0 => Duration::from_secs_f64(60.0 / f64::from(n)),
            _ => Duration::ZERO,
        }
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
