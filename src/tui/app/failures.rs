//! The failures the console has heard of, newest last: a chunk that failed for good (an
//! engine event, or a failed chunk of the watched job in a snapshot), or a running job whose
//! snapshot counts failed chunks the console has no event for (another process, the cloud).
//! The alert bar shows the unacknowledged ones until `a`; `!` opens the newest.

use chrono::{DateTime, Utc};

use crate::domain::{Chunk, ChunkKey, ChunkStatus, Job};

/// Which chunk the detail view selects once its job's chunks are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Focus {
    Chunk(ChunkKey),
    /// The job's most recently failed chunk (a failure known only from the job's counters).
    FirstFailed(String),
}

impl Focus {
    pub fn job_id(&self) -> &str {
        match self {
            Focus::Chunk(k) => &k.job_id,
            Focus::FirstFailed(j) => j,
        }
    }

    /// The index in `chunks` it names, if they hold it.
    pub fn find(&self, chunks: &[Chunk]) -> Option<usize> {
        match self {
            Focus::Chunk(k) => chunks.iter().position(|c| &c.key == k),
            Focus::FirstFailed(_) => chunks
                .iter()
                .enumerate()
                .filter(|(_, c)| c.status == ChunkStatus::Failed)
                .max_by_key(|(_, c)| c.finished_at)
                .map(|(i, _)| i),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Failed {
    pub job_id: String,
    /// `None` while only the job's counters tell of it (the chunk is found when its job's
    /// chunks are read).
    pub key: Option<ChunkKey>,
    pub error: String,
    pub at: DateTime<Utc>,
    pub acked: bool,
}

impl Failed {
    /// What the alert bar and the header call it.
    pub fn what(&self) -> String {
        match &self.key {
            Some(k) => format!("chunk {k}"),
            None => format!("job {}", self.job_id),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Failures {
    pub list: Vec<Failed>,
    /// When the first snapshot was taken: jobs that ended with failures before it are not
    /// alerts.
    pub since: Option<DateTime<Utc>>,
}

impl Failures {
    /// A chunk failed for good: a new, unacknowledged failure (again, if it failed before and
    /// was retried), replacing its job's counter-only entry.
    pub fn chunk_failed(&mut self, key: &ChunkKey, error: &str, at: DateTime<Utc>) {
        self.list.retain(|f| {
            f.key.as_ref() != Some(key) && !(f.key.is_none() && f.job_id == key.job_id)
        });
        self.list.push(Failed {
            job_id: key.job_id.clone(),
            key: Some(key.clone()),
            error: error.to_string(),
            at,
            acked: false,
        });
    }

    /// A snapshot: active jobs with failed chunks the console has no entry for get one, and
    /// the watched job's failed chunks name the chunk of a counter-only entry.
    pub fn observe<'a>(
        &mut self,
        jobs: &[Job],
        watched: impl IntoIterator<Item = (&'a String, &'a Vec<Chunk>)>,
        taken_at: Option<DateTime<Utc>>,
    ) {
        // A job retried to success (or whose failures were otherwise cleared) holds no alert;
        // a failure heard after the snapshot was taken is newer than what it says.
        for f in self.list.iter_mut() {
            let cleared = jobs
                .iter()
                .any(|j| j.job_id == f.job_id && j.failed_chunks == 0);
            if cleared && taken_at.is_none_or(|t| f.at <= t) {
                f.acked = true;
            }
        }
        // Jobs that ended with failures since the console opened count too (a runner process
        // may finish a job between two snapshots); older ones are history, not alerts.
        let since = *self.since.get_or_insert(taken_at.unwrap_or_else(Utc::now));
        for j in jobs
            .iter()
            .filter(|j| j.failed_chunks > 0 && (j.status.is_active() || j.updated_at >= since))
        {
            if !self.list.iter().any(|f| f.job_id == j.job_id) {
                self.list.push(Failed {
                    job_id: j.job_id.clone(),
                    key: None,
                    error: format!(
                        "{} so far",
                        super::plural(j.failed_chunks as usize, "failed chunk")
                    ),
                    at: j.updated_at,
                    acked: false,
                });
            }
        }
        for (job_id, chunks) in watched {
            let newest = chunks
                .iter()
                .filter(|c| c.status == ChunkStatus::Failed)
                .max_by_key(|c| c.finished_at);
            if let Some(c) = newest
                && let Some(f) = self
                    .list
                    .iter_mut()
                    .find(|f| f.key.is_none() && f.job_id == *job_id)
            {
                f.key = Some(c.key.clone());
                f.error = c.last_error.clone().unwrap_or_default();
            }
        }
    }

    /// The failures not yet acknowledged, newest first.
    pub fn open(&self) -> impl Iterator<Item = &Failed> {
        self.list.iter().rev().filter(|f| !f.acked)
    }

    /// The newest failure not yet acknowledged, or else the newest of all.
    pub fn newest(&self) -> Option<&Failed> {
        self.open().next().or(self.list.last())
    }

    /// `a`: every failure shown so far is acknowledged; returns how many were open.
    pub fn acknowledge(&mut self) -> usize {
        let mut n = 0;
        for f in self.list.iter_mut().filter(|f| !f.acked) {
            f.acked = true;
            n += 1;
        }
        n
    }
}
