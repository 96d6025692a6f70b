//! The local runner's scheduler: every job it is handed (by `run`, `trigger --run`,
//! `resume`, or the console's trigger, resume, retry and unpause) joins one long-lived
//! `FairQueue` and starts when its rules allow: at most `max_concurrent_jobs` at once, from at most
//! `max_parallel_tenants` tenants, fair turns, and off-peak waiters held for their window.
//!
//! The limits count the jobs this process runs: the
//! store cannot tell a job running elsewhere from one whose runner died.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::{Job, JobMeta};
use crate::engine::schedule::{Candidate, FairQueue, Limits, Wait};

pub(crate) struct Scheduler {
    queue: FairQueue,
    limits: Limits,
    /// Off-peak waits already announced (`JobDeferred`), with the opening they named, so
    /// each is told once rather than on every pass.
    told: BTreeMap<String, DateTime<Utc>>,
}

impl Scheduler {
    pub(crate) fn new(limits: Limits) -> Scheduler {
        Scheduler {
            queue: FairQueue::default(),
            limits,
            told: BTreeMap::new(),
        }
    }

    /// Queues a job with its hints; false if it already waits or runs.
    pub(crate) fn push(&mut self, job: &Job, meta: &JobMeta) -> bool {
        self.push_candidate(Candidate::of(job, meta))
    }

    pub(crate) fn push_candidate(&mut self, candidate: Candidate) -> bool {
        self.queue.push(candidate)
    }

    /// The jobs to start now; each counts as running until `finished`.
    pub(crate) fn ready(&mut self, now: DateTime<Utc>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(c) = self.queue.next(&self.limits, now) {
            self.told.remove(&c.job_id);
            out.push(c.job_id);
        }
        out
    }

    pub(crate) fn finished(&mut self, job_id: &str) {
        self.queue.finished(job_id);
    }

    /// Takes a job off the waiting list (cancelled or paused before its turn).
    pub(crate) fn remove(&mut self, job_id: &str) -> bool {
        self.told.remove(job_id);
        self.queue.remove(job_id)
    }

    pub(crate) fn why(&self, job_id: &str, now: DateTime<Utc>) -> Option<Wait> {
        self.queue.why_waiting(job_id, &self.limits, now)
    }

    /// Every waiting job with why it waits, for the snapshot.
    pub(crate) fn waiting(&self, now: DateTime<Utc>) -> BTreeMap<String, String> {
        self.queue
            .waiting()
            .iter()
            .filter_map(|c| {
                self.why(&c.job_id, now)
                    .map(|w| (c.job_id.clone(), w.to_string()))
            })
            .collect()
    }

    /// Off-peak waits not announced yet: (job, when the window opens).
    pub(crate) fn newly_deferred(&mut self, now: DateTime<Utc>) -> Vec<(String, DateTime<Utc>)> {
        let mut out = Vec::new();
        for (job_id, opens) in self.queue.deferred(&self.limits, now) {
            if self.told.get(&job_id) != Some(&opens) {
                self.told.insert(job_id.clone(), opens);
                out.push((job_id, opens));
            }
        }
        out
    }

    /// Waiters held back only by the off-peak window, with when it opens.
    pub(crate) fn deferred(&self, now: DateTime<Utc>) -> Vec<(String, DateTime<Utc>)> {
        self.queue.deferred(&self.limits, now)
    }

    /// When the off-peak window next opens for a waiter, if one waits for it.
    pub(crate) fn next_opening(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.deferred(now).into_iter().map(|(_, at)| at).min()
    }
}
