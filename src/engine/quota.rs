//! The org quota reserve: how much of a shared API allocation one job may spend, and when a
//! job whose share is used up looks again.
//!
//! A Salesforce org's daily API requests (`/limits` `DailyApiRequests`, `Sforce-Limit-Info`)
//! and a ServiceNow instance's hourly budget (`X-RateLimit-*`) are shared with every other
//! integration of the customer. The rule: a job's own calls stay within
//! `share × (limit − calls used by others)`, where others = used − the job's own calls in the
//! period (`max_daily_api_share`, default 0.5). When they reach it, or the server refuses for
//! its daily total, the job waits: until the period resets when the server says when
//! (ServiceNow), otherwise (Salesforce's rolling 24 h) it looks at the allocation again after
//! 5 minutes, doubling up to an hour.
//!
//! This module is pure (instants are passed in): `JobQuota` keeps one job's own calls and the
//! last word of the server; the engine's glue (`gate.rs`) feeds it pages, refreshes it from the
//! source's `allocation()`, and turns a closed gate into a released chunk and a stored wait
//! note (`JobMeta::quota_wait_until`), which `status` and the console show as
//! `waiting_for_quota`.

pub(crate) mod gate;

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::sources::ApiUsage;

/// The first look at the allocation again after the share was used up, when the server does
/// not say when its period resets.
pub const FIRST_RECHECK: Duration = Duration::from_secs(5 * 60);
/// The longest wait between looks.
pub const MAX_RECHECK: Duration = Duration::from_secs(3600);
/// How stale the last word of the server may be before a chunk's start asks again.
pub const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// The most of `usage.limit` a job may have spent on its own, given that `own` of the calls
/// counted in `usage.used` were its own: `share × (limit − others)`.
pub fn allowed_own_calls(share: f64, usage: &ApiUsage, own: u64) -> u64 {
    let others = usage.used.unwrap_or(0).saturating_sub(own);
    let left = usage.limit.saturating_sub(others);
    (share.clamp(0.0, 1.0) * left as f64).floor() as u64
}

/// What the rule says about one more call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The job may make `left` more calls.
    Go { left: u64 },
    /// The job's share (or the whole allocation) is used up.
    Wait,
}

/// The rule, with `own_at` the job's own calls counted in `usage` and `own_now` its own
/// calls in the period now.
pub fn verdict(share: f64, usage: &ApiUsage, own_at: u64, own_now: u64) -> Verdict {
    let Some(used) = usage.used else {
        return Verdict::Go { left: u64::MAX };
    };
    let spent_since = own_now.saturating_sub(own_at);
    if used.saturating_add(spent_since) >= usage.limit {
        return Verdict::Wait;
    }
    let allowed = allowed_own_calls(share, usage, own_at);
    match allowed.checked_sub(own_now) {
        Some(left) if left > 0 => Verdict::Go { left },
        _ => Verdict::Wait,
    }
}

/// How long to wait before looking again, the `rechecks`-th time in a row: until the period
/// resets when the server says when (at most one period), otherwise 5 minutes doubling to an
/// hour.
pub fn wait_for(usage: Option<&ApiUsage>, now: DateTime<Utc>, rechecks: u32) -> Duration {
    if let Some(u) = usage
        && let Some(reset) = u.resets_at
        && let Ok(until) = (reset - now).to_std()
    {
        return (until + Duration::from_secs(1)).min(u.period);
    }
    FIRST_RECHECK
        .saturating_mul(1 << rechecks.min(8))
        .min(MAX_RECHECK)
}

/// The calls a job needs as a share of the allocation left to it, for the plan preview
/// (CLI `plan`, the console's trigger form).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AllocationShare {
    /// The estimated calls of the job.
    pub calls: u64,
    /// Calls left in the period now.
    pub left: u64,
    pub limit: u64,
    pub period_secs: u64,
    /// `max_daily_api_share`.
    pub share_limit: f64,
}

impl AllocationShare {
    /// `None` when the server does not say how much is used.
    pub fn new(calls: u64, usage: &ApiUsage, share_limit: f64) -> Option<Self> {
        Some(AllocationShare {
            calls,
            left: usage.limit.saturating_sub(usage.used?),
            limit: usage.limit,
            period_secs: usage.period.as_secs(),
            share_limit,
        })
    }

    /// The calls as a whole percentage of what is left (rounded; 100 when nothing is left).
    pub fn percent(&self) -> u64 {
        match self.left {
            0 => 100,
            left => (self.calls.saturating_mul(100) + left / 2) / left,
        }
    }

    /// Whether the job will pause at its share before it is done.
    pub fn pauses(&self) -> bool {
        self.calls as f64 > self.share_limit * self.left as f64
    }
}

/// `1240` as `1,240`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl std::fmt::Display for AllocationShare {
    /// `≈ 1,240 API calls = 41 % of the 3,000 left today (share limit 50 %)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let when = if self.period_secs <= 3600 {
            "this hour"
        } else {
            "today"
        };
        write!(
            f,
            "≈ {} API calls = {} % of the {} left {when} (share limit {} %)",
            thousands(self.calls),
            self.percent(),
            thousands(self.left),
            (self.share_limit * 100.0).round()
        )?;
        if self.pauses() {
            f.write_str("; the job waits for calls to free at its share")?;
        }
        Ok(())
    }
}

/// `t` rounded up to a whole second, as it is shown and stored.
fn whole_second_after(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0);
    DateTime::from_timestamp(secs, 0).unwrap_or(t)
}

/// What the server last said, with how many of the counted calls were the job's.
#[derive(Clone, Debug)]
struct Seen {
    usage: ApiUsage,
    own_at: u64,
    at: Instant,
}

/// Whether a job may call now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Wait until `until` (tokio's clock); `at` is the same moment on the wall clock.
    Closed {
        until: Instant,
        at: DateTime<Utc>,
    },
}

/// One job's quota state in this process: its own calls in the period and the server's last
/// word about the allocation.
#[derive(Debug)]
pub struct JobQuota {
    share: f64,
    period: Duration,
    own: VecDeque<Instant>,
    seen: Option<Seen>,
    closed: Option<(Instant, DateTime<Utc>)>,
    rechecks: u32,
}

impl JobQuota {
    pub fn new(share: f64) -> Self {
        JobQuota {
            share,
            period: Duration::from_secs(24 * 3600),
            own: VecDeque::new(),
            seen: None,
            closed: None,
            rechecks: 0,
        }
    }

    fn own_now(&mut self, now: Instant) -> u64 {
        while self
            .own
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.period)
        {
            self.own.pop_front();
        }
        self.own.len() as u64
    }

    /// One call of the job was answered.
    pub fn record_call(&mut self, now: Instant) {
        self.own.push_back(now);
    }

    /// The server's word about the allocation, seen at `now` (after the calls recorded so far).
    pub fn observe(&mut self, usage: ApiUsage, now: Instant) {
        self.period = usage.period;
        let own_at = self.own_now(now);
        self.seen = Some(Seen {
            usage,
            own_at,
            at: now,
        });
    }

    /// Whether the server's word is missing or older than `STALE_AFTER`.
    pub fn stale(&self, now: Instant) -> bool {
        self.seen
            .as_ref()
            .is_none_or(|s| now.duration_since(s.at) >= STALE_AFTER)
    }

    /// When the gate is closed, until when (it stays closed until then, whatever is seen).
    pub fn closed_until(&self, now: Instant) -> Option<(Instant, DateTime<Utc>)> {
        self.closed.filter(|(until, _)| *until > now)
    }

    /// Applies the rule now: open, or closed until the next look (counted as one more wait
    /// in a row). `refused` says the server refused for its total already.
    pub fn check(&mut self, now: Instant, wall: DateTime<Utc>, refused: bool) -> Gate {
        if let Some((until, at)) = self.closed_until(now) {
            return Gate::Closed { until, at };
        }
        let own_now = self.own_now(now);
        let wait = refused
            || self
                .seen
                .as_ref()
                .is_some_and(|s| verdict(self.share, &s.usage, s.own_at, own_now) == Verdict::Wait);
        if !wait {
            self.closed = None;
            self.rechecks = 0;
            return Gate::Open;
        }
        let d = wait_for(self.seen.as_ref().map(|s| &s.usage), wall, self.rechecks);
        self.rechecks = self.rechecks.saturating_add(1);
        let at = whole_second_after(wall + chrono::Duration::from_std(d).unwrap_or_default());
        self.closed = Some((now + d, at));
        Gate::Closed { until: now + d, at }
    }

    /// Closes the gate until `until` (a wait noted by another process: `at` on the wall clock).
    pub fn hold(&mut self, until: Instant, at: DateTime<Utc>) {
        self.closed = Some((until, at));
    }

    /// Whether the gate was closed and its time has come: the allocation must be looked at
    /// again before the next call.
    pub fn due_for_recheck(&self, now: Instant) -> bool {
        self.closed.is_some_and(|(until, _)| until <= now)
    }
}

/// The active jobs among `jobs` that wait for their API quota now, and until when (from the
/// stored notes, `Job::quota_wait`): what `status` and the console show.
pub async fn waits(
    lc: &dyn crate::store::LifecycleStore,
    jobs: &[crate::domain::Job],
) -> Result<std::collections::BTreeMap<String, DateTime<Utc>>, crate::store::StoreError> {
    let active: Vec<String> = jobs
        .iter()
        .filter(|j| j.status.is_active())
        .map(|j| j.job_id.clone())
        .collect();
    if active.is_empty() {
        return Ok(std::collections::BTreeMap::new());
    }
    let notes: std::collections::BTreeMap<String, DateTime<Utc>> = lc
        .job_metas(&active)
        .await?
        .into_iter()
        .filter_map(|m| Some((m.job_id, m.quota_wait_until?)))
        .collect();
    let now = Utc::now();
    Ok(jobs
        .iter()
        .filter_map(|j| {
            Some((
                j.job_id.clone(),
                j.quota_wait(notes.get(&j.job_id).copied(), now)?,
            ))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily(used: u64, limit: u64) -> ApiUsage {
        ApiUsage {
            used: Some(used),
            limit,
            period: Duration::from_secs(24 * 3600),
            resets_at: None,
        }
    }

    #[test]
    fn a_job_gets_its_share_of_what_others_leave() {
        // 15,000 a day, 12,000 used elsewhere: half of the 3,000 left.
        let u = daily(12_000, 15_000);
        assert_eq!(allowed_own_calls(0.5, &u, 0), 1_500);
        assert_eq!(verdict(0.5, &u, 0, 0), Verdict::Go { left: 1_500 });
        assert_eq!(verdict(0.5, &u, 0, 1_499), Verdict::Go { left: 1 });
        assert_eq!(verdict(0.5, &u, 0, 1_500), Verdict::Wait);
        // Seen later: 13,000 used of which 1,000 were the job's own; others still 12,000.
        let later = daily(13_000, 15_000);
        assert_eq!(allowed_own_calls(0.5, &later, 1_000), 1_500);
        assert_eq!(
            verdict(0.5, &later, 1_000, 1_200),
            Verdict::Go { left: 300 }
        );
        // A share of 1 may take everything others leave, never more.
        assert_eq!(verdict(1.0, &u, 0, 2_999), Verdict::Go { left: 1 });
        assert_eq!(verdict(1.0, &u, 0, 3_000), Verdict::Wait);
    }

    #[test]
    fn an_exhausted_allocation_waits_whatever_the_share() {
        assert_eq!(verdict(1.0, &daily(15_000, 15_000), 0, 0), Verdict::Wait);
        // Others spent it after the job's last look: its own calls since then push it over.
        assert_eq!(verdict(1.0, &daily(14_990, 15_000), 0, 10), Verdict::Wait);
        let unknown = ApiUsage {
            used: None,
            ..daily(0, 100)
        };
        assert!(matches!(
            verdict(0.5, &unknown, 0, 1_000),
            Verdict::Go { .. }
        ));
    }

    #[test]
    fn waits_run_to_the_reset_or_back_off_to_an_hour() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let hourly = ApiUsage {
            used: Some(1000),
            limit: 1000,
            period: Duration::from_secs(3600),
            resets_at: Some(now + chrono::Duration::seconds(600)),
        };
        assert_eq!(wait_for(Some(&hourly), now, 5), Duration::from_secs(601));
        let waits: Vec<u64> = (0..6)
            .map(|n| wait_for(Some(&daily(1, 2)), now, n).as_secs() / 60)
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
    }

    #[test]
    fn the_preview_states_the_share_of_what_is_left() {
        let s = AllocationShare::new(1_240, &daily(12_000, 15_000), 0.5).unwrap();
        assert_eq!(
            s.to_string(),
            "≈ 1,240 API calls = 41 % of the 3,000 left today (share limit 50 %)"
        );
        let big = AllocationShare::new(1_700, &daily(12_000, 15_000), 0.5).unwrap();
        assert!(big.pauses());
        assert!(
            big.to_string()
                .ends_with("the job waits for calls to free at its share")
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        let unknown = ApiUsage {
            used: None,
            ..daily(0, 1)
        };
        assert_eq!(AllocationShare::new(1, &unknown, 0.5), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_gate_closes_at_the_share_and_reopens_after_a_fresh_look() {
        let wall = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut q = JobQuota::new(0.5);
        let t0 = Instant::now();
        assert!(q.stale(t0));
        q.observe(daily(12_000, 15_000), t0);
        for _ in 0..1_499 {
            q.record_call(t0);
        }
        assert_eq!(q.check(t0, wall, false), Gate::Open);
        q.record_call(t0);
        let Gate::Closed { until, at } = q.check(t0, wall, false) else {
            panic!("the 1,500th call used the share up");
        };
        assert_eq!(until - t0, FIRST_RECHECK);
        assert_eq!(at, wall + chrono::Duration::minutes(5));
        assert!(!q.due_for_recheck(t0));
        // Still closed at its time until the allocation is seen again; each wait is longer.
        let t1 = t0 + FIRST_RECHECK;
        assert!(q.due_for_recheck(t1));
        assert!(
            matches!(q.check(t1, wall, false), Gate::Closed { until, .. } if until - t1 == FIRST_RECHECK * 2)
        );
        // A day later the job's own calls have left the window and others freed theirs.
        let t2 = t0 + Duration::from_secs(24 * 3600);
        q.observe(daily(0, 15_000), t2);
        assert_eq!(q.check(t2, wall, false), Gate::Open);
        // A refusal for the daily total closes it whatever was seen.
        assert!(matches!(q.check(t2, wall, true), Gate::Closed { .. }));
    }
}
