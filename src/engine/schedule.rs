//! Scheduling: which waiting job starts when a slot frees. At most `max_concurrent_jobs`
//! run, from at most `max_parallel_tenants` tenants; turns are fair across tenants (the
//! tenant running the fewest jobs goes first, then priority, then whoever waited longest
//! for a turn); jobs that wait for the off-peak window start only inside it.
//!
//! `FairQueue` is the pure decision; the local runner (`engine::ops::LocalRunner`) runs jobs
//! through it, `Engine::run_scheduled` (`engine::ops::run`) feeds it the store's active
//! jobs with their hints, and the cloud's admission passes (`engine::fleet`) feed it the
//! store's admission queue.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use serde::Serialize;

use crate::config::Scheduling;
use crate::domain::{Job, JobMeta};

/// A daily UTC window `[start, end)`; it wraps midnight when `end <= start` (22:00–06:00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffPeak {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl OffPeak {
    pub fn from_config(s: &Scheduling) -> OffPeak {
        // Validated when the configuration was loaded.
        let parse = |v: &str| NaiveTime::parse_from_str(v, "%H:%M").unwrap_or(NaiveTime::MIN);
        OffPeak {
            start: parse(&s.off_peak_start),
            end: parse(&s.off_peak_end),
        }
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        let tod = t.time();
        if self.start == self.end {
            true
        } else if self.start < self.end {
            self.start <= tod && tod < self.end
        } else {
            tod >= self.start || tod < self.end
        }
    }

    /// `t` inside the window, else the next moment it opens.
    pub fn next_open(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        if self.contains(t) {
            return t;
        }
        let today = t.date_naive().and_time(self.start).and_utc();
        if today > t {
            today
        } else {
            today + Duration::days(1)
        }
    }
}

/// A job waiting for a slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub job_id: String,
    pub tenant_id: String,
    pub priority: i32,
    pub wait_off_peak: bool,
    pub created_at: DateTime<Utc>,
}

impl Candidate {
    /// A job with its hints (`JobMeta::default_for` when none are stored).
    pub fn of(job: &Job, meta: &JobMeta) -> Candidate {
        Candidate {
            job_id: job.job_id.clone(),
            tenant_id: job.tenant_id.clone(),
            priority: meta.priority,
            wait_off_peak: meta.wait_off_peak,
            created_at: job.created_at,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_jobs: usize,
    pub max_tenants: usize,
    pub off_peak: OffPeak,
}

impl Limits {
    pub fn from_config(c: &crate::config::BackfillConfig) -> Limits {
        Limits {
            max_jobs: c.default_settings.max_concurrent_jobs.max(1) as usize,
            max_tenants: c.scheduling.max_parallel_tenants.max(1) as usize,
            off_peak: OffPeak::from_config(&c.scheduling),
        }
    }
}

/// Waiting and running jobs, and when each tenant last had a turn.
#[derive(Debug, Default)]
pub struct FairQueue {
    waiting: Vec<Candidate>,
    /// Running job → its tenant.
    running: HashMap<String, String>,
    last_turn: HashMap<String, u64>,
    turns: u64,
}

impl FairQueue {
    pub fn new(waiting: Vec<Candidate>) -> FairQueue {
        FairQueue {
            waiting,
            ..FairQueue::default()
        }
    }

    pub fn running_of(&self, tenant_id: &str) -> usize {
        self.running.values().filter(|t| *t == tenant_id).count()
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn waiting(&self) -> &[Candidate] {
        &self.waiting
    }

    /// The job to start now, if a slot and an eligible job exist; it counts as running.
    pub fn next(&mut self, limits: &Limits, now: DateTime<Utc>) -> Option<Candidate> {
        if self.running.len() >= limits.max_jobs {
            return None;
        }
        let mut tenants: Vec<&String> = self.running.values().collect();
        tenants.sort();
        tenants.dedup();
        let tenants_full = tenants.len() >= limits.max_tenants;
        let off_peak = limits.off_peak.contains(now);
        let best = self
            .waiting
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.wait_off_peak || off_peak)
            .filter(|(_, c)| !tenants_full || self.running_of(&c.tenant_id) > 0)
            .min_by_key(|(_, c)| {
                (
                    self.running_of(&c.tenant_id),
                    std::cmp::Reverse(c.priority),
                    self.last_turn.get(&c.tenant_id).copied().unwrap_or(0),
                    c.created_at,
                    c.job_id.clone(),
                )
            })
            .map(|(i, _)| i)?;
        let c = self.waiting.remove(best);
        self.turns += 1;
        self.last_turn.insert(c.tenant_id.clone(), self.turns);
        self.running.insert(c.job_id.clone(), c.tenant_id.clone());
        Some(c)
    }

    /// Counts a job as running without a turn (admitted earlier, by another pass of the
    /// cloud's admission, `engine::fleet`).
    pub fn hold(&mut self, c: &Candidate) {
        self.running.insert(c.job_id.clone(), c.tenant_id.clone());
    }

    pub fn finished(&mut self, job_id: &str) {
        self.running.remove(job_id);
    }

    /// Adds a job to the waiting list, unless it already waits or runs; true when added.
    /// For a long-lived queue (the console's), where jobs arrive one at a time.
    pub fn push(&mut self, c: Candidate) -> bool {
        if self.is_waiting(&c.job_id) || self.is_running(&c.job_id) {
            return false;
        }
        self.waiting.push(c);
        true
    }

    pub fn is_waiting(&self, job_id: &str) -> bool {
        self.waiting.iter().any(|c| c.job_id == job_id)
    }

    pub fn is_running(&self, job_id: &str) -> bool {
        self.running.contains_key(job_id)
    }

    /// Takes a job off the waiting list (cancelled or paused before its turn); true if it
    /// was waiting.
    pub fn remove(&mut self, job_id: &str) -> bool {
        let before = self.waiting.len();
        self.waiting.retain(|c| c.job_id != job_id);
        self.waiting.len() != before
    }

    /// Why a waiting job has not started at `now` (`None` when it is not waiting). The
    /// first rule of `next` that holds it back is named, so an operator knows what to wait
    /// for or change.
    pub fn why_waiting(&self, job_id: &str, limits: &Limits, now: DateTime<Utc>) -> Option<Wait> {
        let c = self.waiting.iter().find(|c| c.job_id == job_id)?;
        if c.wait_off_peak && !limits.off_peak.contains(now) {
            return Some(Wait::OffPeak {
                opens: limits.off_peak.next_open(now),
            });
        }
        if self.running.len() >= limits.max_jobs {
            return Some(Wait::Slots {
                running: self.running.len(),
                max: limits.max_jobs,
            });
        }
        let mut tenants: Vec<&String> = self.running.values().collect();
        tenants.sort();
        tenants.dedup();
        if tenants.len() >= limits.max_tenants && self.running_of(&c.tenant_id) == 0 {
            return Some(Wait::Tenants {
                running: tenants.len(),
                max: limits.max_tenants,
            });
        }
        Some(Wait::Turn)
    }

    /// Waiting jobs held only by the off-peak window, with when it opens.
    pub fn deferred(&self, limits: &Limits, now: DateTime<Utc>) -> Vec<(String, DateTime<Utc>)> {
        if limits.off_peak.contains(now) {
            return Vec::new();
        }
        let open = limits.off_peak.next_open(now);
        self.waiting
            .iter()
            .filter(|c| c.wait_off_peak)
            .map(|c| (c.job_id.clone(), open))
            .collect()
    }
}

/// What holds a waiting job back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "wait", rename_all = "snake_case")]
pub enum Wait {
    /// Its hints say off-peak and the window is closed until `opens`.
    OffPeak { opens: DateTime<Utc> },
    /// Every one of `max_concurrent_jobs` slots is taken.
    Slots { running: usize, max: usize },
    /// `max_parallel_tenants` other tenants run jobs; this tenant runs none.
    Tenants { running: usize, max: usize },
    /// Eligible: it starts at the next turn.
    Turn,
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wait::OffPeak { opens } => write!(
                f,
                "waits for the off-peak window (opens {} UTC)",
                opens.format("%Y-%m-%d %H:%M")
            ),
            Wait::Slots { running, max } => write!(
                f,
                "waits for a slot: {running} of {max} jobs run (max_concurrent_jobs)"
            ),
            Wait::Tenants { running, max } => write!(
                f,
                "waits for a tenant slot: {running} of {max} tenants run jobs (max_parallel_tenants)"
            ),
            Wait::Turn => f.write_str("next in line"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 10, h, m, 0).unwrap()
    }

    fn night() -> OffPeak {
        OffPeak {
            start: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(6, 0, 0).unwrap(),
        }
    }

    #[test]
    fn the_off_peak_window_wraps_midnight() {
        let w = night();
        assert!(w.contains(at(22, 0)) && w.contains(at(23, 59)) && w.contains(at(5, 59)));
        assert!(!w.contains(at(6, 0)) && !w.contains(at(12, 0)) && !w.contains(at(21, 59)));
        assert_eq!(w.next_open(at(12, 0)), at(22, 0));
        assert_eq!(w.next_open(at(23, 0)), at(23, 0));
        let day = OffPeak {
            start: NaiveTime::from_hms_opt(1, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(3, 0, 0).unwrap(),
        };
        assert_eq!(day.next_open(at(4, 0)), at(1, 0) + Duration::days(1));
    }

    fn cand(job: &str, tenant: &str, priority: i32, wait: bool) -> Candidate {
        Candidate {
            job_id: job.into(),
            tenant_id: tenant.into(),
            priority,
            wait_off_peak: wait,
            created_at: at(0, 0),
        }
    }

    #[test]
    fn fewest_running_first_then_priority_then_longest_without_a_turn() {
        let limits = Limits {
            max_jobs: 3,
            max_tenants: 3,
            off_peak: night(),
        };
        let mut q = FairQueue::new(vec![
            cand("a1", "a", 0, false),
            cand("a2", "a", 9, false),
            cand("b1", "b", 0, false),
            cand("c1", "c", 5, false),
        ]);
        let order: Vec<String> = std::iter::from_fn(|| q.next(&limits, at(12, 0)))
            .map(|c| c.job_id)
            .collect();
        assert_eq!(
            order,
            ["a2", "c1", "b1"],
            "one per tenant, priority first among equals"
        );
        q.finished("c1");
        assert_eq!(q.next(&limits, at(12, 0)).unwrap().job_id, "a1");
    }

    #[test]
    fn off_peak_waiters_start_only_in_the_window_and_tenants_are_capped() {
        let limits = Limits {
            max_jobs: 5,
            max_tenants: 1,
            off_peak: night(),
        };
        let mut q = FairQueue::new(vec![
            cand("a1", "a", 0, true),
            cand("b1", "b", 0, false),
            cand("b2", "b", 0, false),
        ]);
        assert_eq!(q.next(&limits, at(12, 0)).unwrap().job_id, "b1");
        assert_eq!(
            q.next(&limits, at(12, 0)).unwrap().job_id,
            "b2",
            "same tenant may add jobs"
        );
        assert_eq!(q.next(&limits, at(12, 0)), None);
        assert_eq!(
            q.deferred(&limits, at(12, 0)),
            vec![("a1".to_string(), at(22, 0))]
        );
        q.finished("b1");
        q.finished("b2");
        assert_eq!(q.next(&limits, at(12, 0)), None, "a1 waits for the night");
        assert_eq!(q.next(&limits, at(23, 0)).unwrap().job_id, "a1");
    }

    #[test]
    fn a_long_lived_queue_says_why_each_job_waits() {
        let limits = Limits {
            max_jobs: 2,
            max_tenants: 1,
            off_peak: night(),
        };
        let mut q = FairQueue::default();
        assert!(q.push(cand("a1", "a", 0, false)));
        assert!(!q.push(cand("a1", "a", 0, false)), "once");
        assert_eq!(q.next(&limits, at(12, 0)).unwrap().job_id, "a1");
        assert!(!q.push(cand("a1", "a", 0, false)), "not while it runs");
        q.push(cand("b1", "b", 0, false));
        q.push(cand("c1", "c", 0, true));
        assert_eq!(q.next(&limits, at(12, 0)), None);
        let why = |q: &FairQueue, id: &str| q.why_waiting(id, &limits, at(12, 0));
        assert_eq!(why(&q, "b1"), Some(Wait::Tenants { running: 1, max: 1 }));
        assert_eq!(why(&q, "c1"), Some(Wait::OffPeak { opens: at(22, 0) }));
        assert_eq!(
            why(&q, "c1").unwrap().to_string(),
            "waits for the off-peak window (opens 2026-03-10 22:00 UTC)"
        );
        q.push(cand("a2", "a", 0, false));
        assert_eq!(q.next(&limits, at(12, 0)).unwrap().job_id, "a2");
        assert_eq!(why(&q, "b1"), Some(Wait::Slots { running: 2, max: 2 }));
        assert!(
            why(&q, "b1")
                .unwrap()
                .to_string()
                .contains("2 of 2 jobs run")
        );
        assert!(q.remove("b1") && !q.remove("b1"));
        assert_eq!(why(&q, "b1"), None, "no longer waiting");
        assert_eq!(why(&q, "a1"), None, "running is not waiting");
    }
}
