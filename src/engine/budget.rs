//! Request pacing per tenant + service, shared by every job and table of that pair, and by
//! every process and worker that works on it.
//!
//! Three inputs decide when the next request may go:
//! - the configured rate: requests go at reserved slots `T = 60/n` seconds apart (a GCRA with a
//!   burst of one), so a server that allows `n` per minute, in any window alignment, never sees
//!   more than it allows;
//! - what the server says about its quota (`ApiUsage`): a lower server limit wins, and as the
//!   used share of the quota nears the limit the pace slows down, so the quota is not burnt
//!   to the last request. This changes `T` in this process only; the shared row stores times;
//! - a rate-limit answer: its `Retry-After` pauses the whole pair, in every process, not only
//!   the request that got it, because every other request of the pair would be refused too.
//!
//! The slots come from the pair's shared rate row (`RateStore`, one row per pair in the
//! workspace's SQLite file or the deployment's DynamoDB table; in memory without one). A
//! process reserves a block of `n` slots in one write (`reserve` in `store::rate`): `first = max(now, next_slot,
//! paused_until)`, `next_slot = first + n·T`, and sends at `first, first + T, ...`. `n` is the
//! number of this process's requests waiting for the pair now, capped so a block covers at most
//! `BLOCK` (1 at rates of one a second or slower): one write per request at most, fewer under
//! load, and a process that dies loses at most one block, with nothing to give back. A slot
//! waited for is used only after a look at the row's pause, so no process sends during a pause
//! another one wrote after the block was reserved. A block starts ahead of now by the last
//! reservation's duration, and a slot more than half an interval late is given up for a later
//! one (at most `MAX_LATE_SLOTS` in a row): requests reach the server within half an interval
//! of their slots, which a strict server (a GCRA tolerating half an interval) accepts.
//!
//! Time is tokio's (`RateClock`), so the pacing can be tested on paused time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::domain::Service;
use crate::sources::ApiUsage;
use crate::store::{MemoryRateStore, RateClock, RateRow, RateStore};

/// The used share of a server quota above which the pace slows down.
pub const SLOWDOWN_FROM: f64 = 0.8;
/// The slowest pace, as a multiple of the normal spacing, reached at a fully used quota.
pub const MAX_SLOWDOWN: f64 = 20.0;
/// The longest stretch of slots one reservation takes.
pub const BLOCK: Duration = Duration::from_secs(1);
/// How long to wait before trying the shared row again after it could not be reached.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// Late slots given up in a row before one is used anyway (`acquire_slot`).
const MAX_LATE_SLOTS: u32 = 2;
/// The most a block starts ahead of now to cover the reservation's own time (ms).
const MAX_LEAD_MS: i64 = 1_000;

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
    /// Current spacing (after slow-downs); zero when unpaced.
    spacing: Duration,
    /// Slots of this process's last block not handed out yet (ms since the epoch).
    slots: VecDeque<i64>,
    /// Callers waiting for a slot.
    waiting: u32,
    /// The pair's pause as last seen in the row (ms since the epoch).
    paused_until_ms: i64,
    server_usage: Option<ApiUsage>,
    last_rate_limited_at: Option<DateTime<Utc>>,
    last_retry_after: Option<Duration>,
    rate_limited_total: u64,
    /// Whether a `Retry-After` beyond the maximum was already reported.
    clamp_reported: bool,
    /// How long the last block reservation took (ms): blocks start this far ahead of now,
    /// so their first slot is not already past when the write returns.
    reserve_ms: i64,
}

pub struct RateBudget {
    configured: Option<u32>,
    base_spacing: Duration,
    tenant_id: String,
    service: Service,
    store: Arc<dyn RateStore>,
    clock: RateClock,
    state: Mutex<State>,
    /// One reservation at a time per process: the others take slots from its block.
    reserving: tokio::sync::Mutex<()>,
    /// Requests sent and refusals for limits since the last `take_unreported` (the metrics'
    /// `ApiRequests` and `RateLimited`).
    unreported: Mutex<(u64, u64)>,
}

fn spacing_of(per_minute: Option<u32>) -> Duration {
    per_minute.filter(|n| *n > 0).map_or(Duration::ZERO, |n| {
        Duration::from_secs_f64(60.0 / f64::from(n))
    })
}

/// How much wider than the configured interval slots are spaced, where whole milliseconds
/// allow it: at 99 % of the limit, a request sent a little late (and the next on time) never
/// makes one more than the limit in any minute of the server's count.
pub const PACE_MARGIN: f64 = 1.01;

/// A spacing in whole milliseconds: the interval widened by `PACE_MARGIN` (rounded), and
/// never less than the interval rounded up: never faster than asked.
fn spacing_ms(spacing: Duration) -> i64 {
    let exact = spacing.as_micros().div_ceil(1000) as i64;
    let widened = (spacing.as_secs_f64() * 1000.0 * PACE_MARGIN).round() as i64;
    exact.max(widened)
}

/// How many slots one reservation takes when `waiting` callers want one.
fn block_size(waiting: u32, spacing_ms: i64) -> u32 {
    let cap = (BLOCK.as_millis() as i64 / spacing_ms.max(1)).clamp(1, 1000) as u32;
    waiting.clamp(1, cap)
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

/// Counts a caller as waiting for a slot until it has one (or gives up: a dropped future).
struct Waiter<'a> {
    budget: &'a RateBudget,
    counted: bool,
}

impl<'a> Waiter<'a> {
    fn new(budget: &'a RateBudget) -> Self {
        budget.lock().waiting += 1;
        Waiter {
            budget,
            counted: true,
        }
    }

    fn set(&mut self, waiting: bool) {
        if waiting != self.counted {
            let mut s = self.budget.lock();
            if waiting {
                s.waiting += 1;
            } else {
                s.waiting = s.waiting.saturating_sub(1);
            }
            self.counted = waiting;
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.set(false);
    }
}

impl RateBudget {
    /// A budget of this process alone (tests, tools): `None` paces nothing.
    pub fn new(per_minute: Option<u32>) -> Self {
        Self::shared(
            per_minute,
            Arc::new(MemoryRateStore::new()),
            "local",
            Service::Connectwise,
            RateClock::now(),
        )
    }

    /// The budget of `tenant_id`'s `service` on the shared rate row in `store`.
    pub fn shared(
        per_minute: Option<u32>,
        store: Arc<dyn RateStore>,
        tenant_id: &str,
        service: Service,
        clock: RateClock,
    ) -> Self {
        let spacing = spacing_of(per_minute);
        RateBudget {
            configured: per_minute,
            base_spacing: spacing,
            tenant_id: tenant_id.to_string(),
            service,
            store,
            clock,
            state: Mutex::new(State {
                spacing,
                slots: VecDeque::new(),
                waiting: 0,
                paused_until_ms: 0,
                server_usage: None,
                last_rate_limited_at: None,
                last_retry_after: None,
                rate_limited_total: 0,
                clamp_reported: false,
                reserve_ms: 0,
            }),
            reserving: tokio::sync::Mutex::new(()),
            unreported: Mutex::new((0, 0)),
        }
    }

    /// Requests sent and refusals for limits counted since the last call, and zero again:
    /// each metrics record carries what happened since the one before, so CloudWatch's sum
    /// over records is the total.
    pub fn take_unreported(&self) -> (u64, u64) {
        std::mem::take(&mut *self.unreported.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn count_unreported(&self, requests: u64, rate_limited: u64) {
        let mut u = self.unreported.lock().unwrap_or_else(|p| p.into_inner());
        u.0 += requests;
        u.1 += rate_limited;
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

    /// Waits until one more request fits the pair's budget, shared with every process.
    pub async fn acquire(&self) {
        self.acquire_slot().await;
    }

    /// `acquire`, answering the slot used (ms since the epoch on the budget's `RateClock`).
    pub async fn acquire_slot(&self) -> i64 {
        let mut waiter = Waiter::new(self);
        let mut given_up = 0;
        loop {
            let slot = self.take_slot(&mut waiter).await;
            let at = self.clock.instant_at(slot);
            let waited = at > Instant::now();
            if waited {
                tokio::time::sleep_until(at).await;
            }
            // A pause written while this slot waited (here or by another process) wins.
            let paused_until = if waited {
                self.shared_pause().await
            } else {
                self.lock().paused_until_ms
            };
            if paused_until > self.clock.now_ms() {
                self.lock().slots.clear();
                waiter.set(true);
                continue;
            }
            // A slot used more than half an interval late would reach the server closer than
            // that to the next one, sent on time here or by another process: a strict server
            // refuses it. Give it up for a later one, a bounded number of times, so a slow
            // machine or store still sends.
            let sp = spacing_ms(self.lock().spacing);
            if sp > 0 && self.clock.now_ms() - slot > sp / 2 && given_up < MAX_LATE_SLOTS {
                given_up += 1;
                waiter.set(true);
                continue;
            }
            self.count_unreported(1, 0);
            return slot;
        }
    }

    /// A slot of this process's block, reserving a new block when none is left.
    async fn take_slot(&self, waiter: &mut Waiter<'_>) -> i64 {
        loop {
            let slot = self.lock().slots.pop_front();
            if let Some(slot) = slot {
                waiter.set(false);
                return slot;
            }
            let _one = self.reserving.lock().await;
            if !self.lock().slots.is_empty() {
                continue;
            }
            let (n, sp, lead) = {
                let s = self.lock();
                let sp = spacing_ms(s.spacing);
                (block_size(s.waiting, sp), sp, s.reserve_ms)
            };
            let now = self.clock.now_ms();
            if sp == 0 {
                // Unpaced: no slots to order, only the shared pause to respect (a read).
                waiter.set(false);
                return self.shared_pause().await.max(now);
            }
            match self
                .store
                .reserve_slots(&self.tenant_id, self.service, now + lead, n, sp)
                .await
            {
                Ok((first, after)) => {
                    let mut s = self.lock();
                    s.reserve_ms = (self.clock.now_ms() - now).clamp(0, MAX_LEAD_MS);
                    s.paused_until_ms = after.paused_until_ms;
                    s.slots.extend((0..i64::from(n)).map(|i| first + i * sp));
                }
                Err(e) => {
                    tracing::warn!(tenant_id = %self.tenant_id, service = %self.service, error = %e,
                        "cannot reserve request slots on the shared rate row; waiting");
                    tokio::time::sleep(STORE_RETRY).await;
                }
            }
        }
    }

    /// The pair's pause as the shared row says now (what this process last saw if the row
    /// cannot be read).
    async fn shared_pause(&self) -> i64 {
        match self.store.read_rate(&self.tenant_id, self.service).await {
            Ok(row) => {
                let mut s = self.lock();
                s.paused_until_ms = s.paused_until_ms.max(row.paused_until_ms);
                s.paused_until_ms
            }
            Err(e) => {
                tracing::warn!(tenant_id = %self.tenant_id, service = %self.service, error = %e,
                    "cannot read the shared rate row; using the pause last seen");
                self.lock().paused_until_ms
            }
        }
    }

    /// The server refused a request for its limits: every request of the pair, in every
    /// process, waits `retry_after` (or `fallback` when the server did not say).
    pub async fn rate_limited(&self, retry_after: Option<Duration>, fallback: Duration) {
        let wait = retry_after.unwrap_or(fallback);
        let until = self.clock.now_ms() + wait.as_millis() as i64;
        {
            let mut s = self.lock();
            s.paused_until_ms = s.paused_until_ms.max(until);
            s.slots.clear();
            s.last_rate_limited_at = Some(Utc::now());
            s.last_retry_after = Some(wait);
            s.rate_limited_total += 1;
        }
        self.count_unreported(0, 1);
        let change = Box::new(move |r: &mut RateRow| {
            r.paused_until_ms = r.paused_until_ms.max(until);
        });
        if let Err(e) = self
            .store
            .update_rate(&self.tenant_id, self.service, change)
            .await
        {
            tracing::warn!(tenant_id = %self.tenant_id, service = %self.service, error = %e,
                "cannot share a rate-limit pause; this process waits it alone");
        }
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
        // Only a real change (> 5 %) counts, so the pace does not flutter with each answer.
        let current = s.spacing.as_secs_f64();
        let changed = if current == 0.0 {
            !wanted.is_zero()
        } else {
            (wanted.as_secs_f64() / current - 1.0).abs() > 0.05
        };
        if changed {
            s.spacing = wanted;
        }
        changed
    }

    pub fn snapshot(&self) -> BudgetSnapshot {
        let s = self.lock();
        let ahead = s.paused_until_ms - self.clock.now_ms();
        BudgetSnapshot {
            configured_per_minute: self.configured,
            effective_per_minute: (!s.spacing.is_zero()).then(|| 60.0 / s.spacing.as_secs_f64()),
            server_usage: s.server_usage.clone(),
            last_rate_limited_at: s.last_rate_limited_at,
            last_retry_after: s.last_retry_after,
            paused_for: (ahead > 0).then(|| Duration::from_millis(ahead as u64)),
            rate_limited_total: s.rate_limited_total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use crate::store::rate::{RateChange, RateRow};

    /// A rate store whose every write takes `delay` (on tokio's clock).
    struct SlowStore {
        inner: MemoryRateStore,
        delay: Duration,
    }

    #[async_trait::async_trait]
    impl RateStore for SlowStore {
        async fn read_rate(
            &self,
            tenant_id: &str,
            service: Service,
        ) -> Result<RateRow, StoreError> {
            self.inner.read_rate(tenant_id, service).await
        }
        async fn update_rate(
            &self,
            tenant_id: &str,
            service: Service,
            change: RateChange,
        ) -> Result<(RateRow, RateRow), StoreError> {
            tokio::time::sleep(self.delay).await;
            self.inner.update_rate(tenant_id, service, change).await
        }
        fn rate_writes(&self) -> u64 {
            self.inner.rate_writes()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_is_never_used_more_than_half_an_interval_late() {
        // 6,000/min: 10 ms apart; every reservation takes 30 ms.
        let store = Arc::new(SlowStore {
            inner: MemoryRateStore::new(),
            delay: Duration::from_millis(30),
        });
        let budget = RateBudget::shared(
            Some(6000),
            store,
            "t",
            Service::Connectwise,
            RateClock::now(),
        );
        let mut slots = Vec::new();
        for _ in 0..6 {
            let slot = budget.acquire_slot().await;
            let late = budget.clock.now_ms() - slot;
            assert!(late <= 5, "slot {slot} used {late} ms late");
            slots.push(slot);
        }
        assert!(slots.windows(2).all(|w| w[1] - w[0] >= 10), "{slots:?}");
    }

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
        // 120/min: one per 500 ms, widened by the 1 % margin to 505 ms.
        let budget = RateBudget::new(Some(120));
        let t = times_of(&budget, 5).await;
        let ms: Vec<u128> = t.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 505, 1010, 1515, 2020]);
    }

    #[test]
    fn slots_are_widened_by_the_margin_where_milliseconds_allow_and_never_narrowed() {
        let ms = |per_minute| spacing_ms(spacing_of(Some(per_minute)));
        assert_eq!(ms(60), 1010);
        assert_eq!(ms(200), 303);
        assert_eq!(ms(1000), 61); // 60.6 rounds up: a little more margin
        assert_eq!(ms(6000), 10); // 10.1 rounds to 10: the interval itself
        assert_eq!(ms(7000), 9); // 8.57 ms: never faster than asked
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
    async fn requests_and_refusals_are_counted_once_for_the_metrics() {
        let budget = RateBudget::new(Some(600));
        budget.acquire().await;
        budget.acquire().await;
        budget.rate_limited(None, Duration::from_millis(10)).await;
        budget.acquire().await;
        assert_eq!(budget.take_unreported(), (3, 1));
        assert_eq!(
            budget.take_unreported(),
            (0, 0),
            "each count is reported once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_the_whole_pair() {
        let budget = Arc::new(RateBudget::new(Some(600))); // 100 ms spacing
        budget.acquire().await;
        budget
            .rate_limited(Some(Duration::from_secs(7)), Duration::from_secs(1))
            .await;
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
        budget
            .rate_limited(Some(Duration::from_secs(10)), Duration::ZERO)
            .await;
        budget
            .rate_limited(Some(Duration::from_secs(2)), Duration::ZERO)
            .await;
        let before = Instant::now();
        budget.acquire().await;
        assert!(before.elapsed() >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_retry_after_uses_the_fallback() {
        let budget = RateBudget::new(None);
        budget.rate_limited(None, Duration::from_secs(3)).await;
        let start = Instant::now();
        budget.acquire().await;
        assert_eq!(start.elapsed().as_secs(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn unpaced_requests_write_nothing_but_respect_a_shared_pause() {
        let store: Arc<dyn RateStore> = Arc::new(MemoryRateStore::new());
        let clock = RateClock::now();
        let budget = RateBudget::shared(None, store.clone(), "acme", Service::Servicenow, clock);
        let t = times_of(&budget, 3).await;
        assert_eq!(t, vec![Duration::ZERO; 3]);
        assert_eq!(store.rate_writes(), 0);
        let other = RateBudget::shared(None, store.clone(), "acme", Service::Servicenow, clock);
        other
            .rate_limited(Some(Duration::from_secs(4)), Duration::ZERO)
            .await;
        let start = Instant::now();
        budget.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(4));
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
            (t[1].as_secs_f64() - expected.as_secs_f64() * PACE_MARGIN).abs() < 0.01,
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
