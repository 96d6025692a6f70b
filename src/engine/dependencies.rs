//! Table dependencies inside a job (`service_settings.*.table_dependencies`): a table's
//! chunks wait until every chunk of the tables it depends on has finished.
//!
//! A job's tables are ordered after their dependencies (`planner::order_by_dependencies`); its
//! runners in one process take turns looking and claiming, and wait while only blocked work is
//! left; a chunk claimed while blocked anyway (another process raced) is released untouched.

use chrono::{DateTime, Utc};

use super::{Engine, EngineError};
use crate::domain::{Chunk, ChunkStatus, Job};

impl Engine {
    /// Whether some table of the job depends on another table of the job.
    pub(super) fn has_dependencies(&self, job: &Job) -> bool {
        let bf = &self.config().backfill;
        job.tables.iter().any(|t| {
            bf.table_dependencies(job.service, t)
                .iter()
                .any(|d| job.tables.contains(d))
        })
    }

    /// True when the job has open chunks but every one that could be claimed now belongs
    /// to a table whose dependencies are unfinished.
    pub(super) async fn only_blocked_work(
        &self,
        job: &Job,
        now: DateTime<Utc>,
    ) -> Result<bool, EngineError> {
        let bf = &self.config().backfill;
        let deps_of = |t: &str| bf.table_dependencies(job.service, t);
        if job
            .tables
            .iter()
            .all(|t| deps_of(t).iter().all(|d| !job.tables.contains(d)))
        {
            return Ok(false);
        }
        let chunks = self.store().chunks(&job.job_id).await?;
        let open = |t: &str| {
            chunks
                .iter()
                .any(|c| c.key.table == t && !c.status.is_terminal())
        };
        let mut any_open = false;
        for table in &job.tables {
            // A table's chunks run in order: only its lowest open chunk can be claimed.
            let Some(next) = chunks
                .iter()
                .filter(|c| c.key.table == *table && !c.status.is_terminal())
                .min_by_key(|c| c.key.seq)
            else {
                continue;
            };
            any_open = true;
            let claimable = match next.status {
                ChunkStatus::Pending => next.not_before.is_none_or(|t| t <= now),
                _ => next.lease_expires_at.is_none_or(|t| t <= now),
            };
            if claimable && !deps_of(table).iter().any(|d| open(d)) {
                return Ok(false);
            }
        }
        Ok(any_open)
    }

    /// Whether a table this chunk's table depends on (`table_dependencies`) still has
    /// unfinished chunks in the same job.
    pub(super) async fn blocked_by_dependencies(
        &self,
        job: &Job,
        chunk: &Chunk,
    ) -> Result<bool, EngineError> {
        let deps = self
            .config()
            .backfill
            .table_dependencies(job.service, &chunk.key.table);
        if deps.is_empty() || !deps.iter().any(|d| job.tables.contains(d)) {
            return Ok(false);
        }
        Ok(self
            .store()
            .chunks(&job.job_id)
            .await?
            .iter()
            .any(|c| deps.contains(&c.key.table) && !c.status.is_terminal()))
    }
}
