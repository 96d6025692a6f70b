//! The console's scheduler: every job the console starts (trigger, resume, retry, unpause)
//! joins one long-lived `FairQueue` and starts when its rules allow, as `run` and
//! `run_scheduled` do: at most `max_concurrent_jobs` at once, from at most
//! `max_parallel_tenants` tenants, fair turns, and off-peak waiters held for their window.
//!
//! The limits count the jobs this console runs, as a `run` process counts its own: the
//! store cannot tell a job running elsewhere from one whose runner died.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::domain::{Job, JobMeta};
use crate::engine::schedule::{Candidate, FairQueue, Limits, Wait};

pub(super) struct Scheduler {
    queue: FairQueue,
    limits: Limits,
    /// Off-peak waits already announced (`JobDeferred`), with the opening they named, so
    /// each is told once rather than on every pass.
    told: BTreeMap<String, DateTime<Utc>>,
}

impl Scheduler {
    pub(super) fn new(config: &Config) -> Scheduler {
        Scheduler {
            queue: FairQueue::default(),
            limits: Limits::from_config(&config.backfill),
            told: BTreeMap::new(),
        }
    }

    /// Queues a job with its hints; false if it already waits or runs.
    pub(super) fn push(&mut self, job: &Job, meta: &JobMeta) -> bool {
        self.queue.push(Candidate::of(job, meta))
    }

    /// The jobs to start now; each counts as running until `finished`.
    pub(super) fn ready(&mut self, now: DateTime<Utc>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(c) = self.queue.next(&self.limits, now) {
            self.told.remove(&c.job_id);
            out.push(c.job_id);
        }
        out
    }

    pub(super) fn finished(&mut self, job_id: &str) {
        self.queue.finished(job_id);
    }

    /// Takes a job off the waiting list (cancelled or paused before its turn).
    pub(super) fn remove(&mut self, job_id: &str) -> bool {
        self.told.remove(job_id);
        self.queue.remove(job_id)
    }

    pub(super) fn why(&self, job_id: &str, now: DateTime<Utc>) -> Option<Wait> {
        self.queue.why_waiting(job_id, &self.limits, now)
    }

    /// Every waiting job with why it waits, for the snapshot.
    pub(super) fn waiting(&self, now: DateTime<Utc>) -> BTreeMap<String, String> {
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
    pub(super) fn newly_deferred(&mut self, now: DateTime<Utc>) -> Vec<(String, DateTime<Utc>)> {
        let mut out = Vec::new();
        for (job_id, opens) in self.queue.deferred(&self.limits, now) {
            if self.told.get(&job_id) != Some(&opens) {
                self.told.insert(job_id.clone(), opens);
                out.push((job_id, opens));
            }
        }
        out
    }
}
