//! Cloud admission: the scheduling rules (`schedule::FairQueue`) for jobs that run as cloud
//! executions, with no scheduler process of its own. The queue lives in the job store
//! (`JobStore::fleet`): each entry a job waiting for a slot, or holding one since it was
//! admitted. Whoever runs an admission pass (`Engine::admit`: `trigger|resume|unpause
//! --cloud`, and every worker now and then and after a job's final step) does the same thing:
//!
//! 1. reads the queue and settles it: an entry whose job is gone, or no longer active while
//!    it waits, leaves; an admitted entry keeps its slot while its run lives (the port's
//!    `run_state`), until the run has ended after the admission. An admitted job whose run
//!    has not started (the admitter died between its write and its start) is started again;
//! 2. asks `FairQueue` which waiting jobs take the free slots (max concurrent jobs, max
//!    parallel tenants, fewest running per tenant first, priority, off-peak);
//! 3. writes the queue back conditionally on the version it read: of two admitters that read
//!    the same queue one writes, the other reads again, so no two passes admit past the limits;
//! 4. starts the runs of the jobs it admitted (each start idempotent by execution name).
//!
//! The engine sees the runs through the `Launcher` port, never an AWS type.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::ops::{DispatchError, Start};
use super::schedule::{Candidate, FairQueue, Limits, Wait};
use super::{Engine, EngineError};
use crate::domain::JobStatus;
use crate::store::{FleetEntry, StoreError};

/// Rounds of "another admitter wrote the queue since we read it" before giving up.
const MAX_ROUNDS: u32 = 20;

/// Where a job's run is, as the port sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// No run was ever started.
    Never,
    Running,
    /// The newest run ended at `at` (unknown: long ago).
    Ended {
        at: Option<DateTime<Utc>>,
    },
}

/// Starts and looks up the runs of admitted jobs (the Step Functions dispatch).
#[async_trait]
pub trait Launcher: Send + Sync {
    async fn run_state(&self, job_id: &str) -> Result<RunState, DispatchError>;
    /// Starts the job's run as `launch` (the entry's payload) says; idempotent.
    async fn launch(&self, job_id: &str, launch: &str) -> Result<Start, DispatchError>;
}

/// What an admission pass found and did.
#[derive(Debug, Default)]
pub struct Admission {
    /// Jobs this pass started (admitted now, or admitted earlier without a run), and how.
    pub launched: BTreeMap<String, Result<Start, String>>,
    /// Jobs still waiting, with why.
    pub waiting: BTreeMap<String, Wait>,
    /// Jobs holding a slot.
    pub admitted: Vec<String>,
}

fn candidate(e: &FleetEntry) -> Candidate {
    Candidate {
        job_id: e.job_id.clone(),
        tenant_id: e.tenant_id.clone(),
        priority: e.priority,
        wait_off_peak: e.wait_off_peak,
        created_at: e.queued_at,
    }
}

/// The rules over a settled queue: the waiting entries `FairQueue` admits now get
/// `admitted_at = now`. Returns the queue as it should be stored, the ids admitted, and why
/// each other waiting job waits.
pub fn decide(
    mut entries: Vec<FleetEntry>,
    limits: &Limits,
    now: DateTime<Utc>,
) -> (Vec<FleetEntry>, Vec<String>, BTreeMap<String, Wait>) {
    let waiting = entries
        .iter()
        .filter(|e| e.admitted_at.is_none())
        .map(candidate)
        .collect();
    let mut queue = FairQueue::new(waiting);
    for e in entries.iter().filter(|e| e.admitted_at.is_some()) {
        queue.hold(&candidate(e));
    }
    let mut admitted = Vec::new();
    while let Some(c) = queue.next(limits, now) {
        admitted.push(c.job_id);
    }
    for e in entries.iter_mut() {
        if admitted.contains(&e.job_id) {
            e.admitted_at = Some(now);
        }
    }
    let waits = queue
        .waiting()
        .iter()
        .filter_map(|c| Some((c.job_id.clone(), queue.why_waiting(&c.job_id, limits, now)?)))
        .collect();
    (entries, admitted, waits)
}

/// Whether an admitted job keeps its slot, and whether its run must be started (again).
fn keeps_slot(active: bool, admitted_at: DateTime<Utc>, run: RunState) -> (bool, bool) {
    match run {
        RunState::Running => (true, false),
        RunState::Never => (active, active),
        // Ended before this admission: the admitted run (a resume) has not started yet.
        RunState::Ended { at } if active && at.is_some_and(|at| at < admitted_at) => (true, true),
        RunState::Ended { .. } => (false, false),
    }
}

impl Engine {
    /// One admission pass (see the module header), with `request` joining the queue unless
    /// the job is in it already. Launch failures are reported, not raised: the job keeps its
    /// slot and the next pass starts it.
    pub async fn admit(
        &self,
        launcher: &dyn Launcher,
        request: Option<FleetEntry>,
        now: DateTime<Utc>,
    ) -> Result<Admission, EngineError> {
        let limits = Limits::from_config(&self.config().backfill);
        for round in 0..MAX_ROUNDS {
            let read = self.store().fleet().await?;
            let (mut entries, mut restart) = self.settle(&read.entries, launcher).await?;
            if let Some(r) = &request
                && !entries.iter().any(|e| e.job_id == r.job_id)
            {
                entries.push(r.clone());
            }
            let (entries, admitted, waiting) = decide(entries, &limits, now);
            if entries != read.entries && !self.store().put_fleet(&entries, read.version).await? {
                tokio::time::sleep(std::time::Duration::from_millis(
                    20 * u64::from(round % 5 + 1),
                ))
                .await;
                continue;
            }
            restart.extend(admitted);
            let mut launched = BTreeMap::new();
            for e in entries.iter().filter(|e| restart.contains(&e.job_id)) {
                let started = launcher.launch(&e.job_id, &e.launch).await;
                if let Err(err) = &started {
                    tracing::warn!(job_id = %e.job_id, error = %err, "admitted job not started; the next admission pass tries again");
                }
                launched.insert(e.job_id.clone(), started.map_err(|e| e.to_string()));
            }
            let admitted = entries
                .iter()
                .filter(|e| e.admitted_at.is_some())
                .map(|e| e.job_id.clone())
                .collect();
            return Ok(Admission {
                launched,
                waiting,
                admitted,
            });
        }
        Err(StoreError::Conflict("the admission queue kept racing other admitters".into()).into())
    }

    /// The queue without the entries whose job is gone, has stopped waiting, or whose run has
    /// ended; and the admitted jobs whose run must be started again.
    async fn settle(
        &self,
        entries: &[FleetEntry],
        launcher: &dyn Launcher,
    ) -> Result<(Vec<FleetEntry>, Vec<String>), EngineError> {
        let mut kept = Vec::new();
        let mut restart = Vec::new();
        for e in entries {
            let Some(job) = self.store().get_job(&e.job_id).await? else {
                continue;
            };
            let active = matches!(job.status, JobStatus::Pending | JobStatus::Running);
            let Some(admitted_at) = e.admitted_at else {
                if active {
                    kept.push(e.clone());
                }
                continue;
            };
            let run = launcher
                .run_state(&e.job_id)
                .await
                .map_err(|err| EngineError::Other(err.to_string()))?;
            let (keep, start) = keeps_slot(active, admitted_at, run);
            if keep {
                kept.push(e.clone());
            }
            if start {
                restart.push(e.job_id.clone());
            }
        }
        Ok((kept, restart))
    }
}

/// The queue as stored, with why each waiting job waits at `now` (no write, no port call):
/// what `status --cloud` and a cloud resume show. Who would take a slot now is next in line.
pub fn view(entries: Vec<FleetEntry>, limits: &Limits, now: DateTime<Utc>) -> Admission {
    let admitted = entries
        .iter()
        .filter(|e| e.admitted_at.is_some())
        .map(|e| e.job_id.clone())
        .collect();
    let (_, next, mut waiting) = decide(entries, limits, now);
    for id in next {
        waiting.insert(id, Wait::Turn);
    }
    Admission {
        launched: BTreeMap::new(),
        waiting,
        admitted,
    }
}

impl Engine {
    /// `view` of the store's queue under this engine's configured limits.
    pub async fn fleet_view(&self, now: DateTime<Utc>) -> Result<Admission, EngineError> {
        let limits = Limits::from_config(&self.config().backfill);
        Ok(view(self.store().fleet().await?.entries, &limits, now))
    }
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
