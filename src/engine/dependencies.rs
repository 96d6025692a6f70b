//! Table dependencies inside a job (`service_settings.*.table_dependencies`) and what they
//! order: the canonical transform and the hand-off always (both run after every window of the
//! job has landed, tables in dependency order: `planner::order_by_dependencies`); the raw
//! landing only with `strict_table_order: true`. By default raw pulls of dependent tables
//! overlap: raw Parquet is per table and window, so landing order changes nothing downstream.
//!
//! With strict order a table's chunks wait until every chunk of the tables it depends on has
//! finished: the job's runners in one process take turns looking and claiming, and wait while
//! only blocked work is left; a chunk claimed while blocked anyway (another process raced) is
//! released untouched.

use chrono::{DateTime, Utc};

use super::{Engine, EngineError};
use crate::domain::{Chunk, ChunkStatus, Job};

impl Engine {
    /// Whether the job's raw pulls wait for one another: `strict_table_order` is set for its
    /// service and some table of the job depends on another table of the job.
    pub(super) fn waits_for_dependencies(&self, job: &Job) -> bool {
        let bf = &self.config().backfill;
        bf.strict_table_order(job.service)
            && job.tables.iter().any(|t| {
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
            // Any open window of a table that is ready now can be claimed.
            let mut open_here = chunks
                .iter()
                .filter(|c| c.key.table == *table && !c.status.is_terminal())
                .peekable();
            if open_here.peek().is_none() {
                continue;
            }
            any_open = true;
            let claimable = open_here.any(|c| match c.status {
                ChunkStatus::Pending => c.not_before.is_none_or(|t| t <= now),
                _ => c.lease_expires_at.is_none_or(|t| t <= now),
            });
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
