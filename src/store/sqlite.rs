//! The embedded job store: one SQLite file in WAL mode, shared safely by several processes.
//!
//! Writes run inside `BEGIN IMMEDIATE` transactions, so two processes claiming chunks of
//! the same job are serialised by SQLite's write lock and never both win.

mod fleet;
mod lifecycle;
mod pulse;
mod rate;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{Claim, CreateOutcome, FleetEntry, FleetQueue, JobFilter, JobStore, StoreError};
use crate::domain::{Checkpoint, Chunk, ChunkKey, ChunkStatus, Job, JobStatus, Window};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    service TEXT NOT NULL,
    tables TEXT NOT NULL,
    status TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    chunk_size_days INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    total_chunks INTEGER NOT NULL,
    completed_chunks INTEGER NOT NULL DEFAULT 0,
    failed_chunks INTEGER NOT NULL DEFAULT 0,
    records INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT,
    skipped_fields TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS jobs_tenant_status ON jobs(tenant_id, status);
CREATE TABLE IF NOT EXISTS chunks (
    job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
    table_name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    cursor TEXT,
    parts INTEGER NOT NULL DEFAULT 0,
    records INTEGER NOT NULL DEFAULT 0,
    pages INTEGER NOT NULL DEFAULT 0,
    started_at TEXT,
    finished_at TEXT,
    last_error TEXT,
    lease_owner TEXT,
    lease_expires_at TEXT,
    not_before TEXT,
    PRIMARY KEY (job_id, table_name, seq)
);
";

const JOB_COLUMNS: &str = "job_id, tenant_id, service, tables, status, window_start, window_end, chunk_size_days, \
     max_attempts, total_chunks, completed_chunks, failed_chunks, records, created_at, updated_at, finished_at, \
     skipped_fields";
const CHUNK_COLUMNS: &str = "job_id, table_name, seq, window_start, window_end, status, attempts, cursor, parts, records, \
     pages, started_at, finished_at, last_error, lease_owner, lease_expires_at, not_before";

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// The database file, named in every backend error.
    path: Arc<Path>,
    /// Rate rows written by this handle (`rate`).
    rate_writes: Arc<std::sync::atomic::AtomicU64>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A backend error naming the database file it happened in (a corrupt file, a folder in its
/// place, a file that cannot be read); other errors are about jobs, not the file.
fn in_file(path: &Path, e: StoreError) -> StoreError {
    match e {
        StoreError::Backend(reason) => StoreError::Backend(format!("{}: {reason}", path.display())),
        other => other,
    }
}

/// Fixed-width UTC text, so SQL string comparison orders instants correctly.
fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn parse_ts(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

fn opt_ts(s: Option<String>) -> rusqlite::Result<Option<DateTime<Utc>>> {
    s.as_deref().map(parse_ts).transpose()
}

fn parse_text<T: std::str::FromStr<Err = String>>(s: &str) -> rusqlite::Result<T> {
    s.parse::<T>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    let tables: String = r.get(3)?;
    Ok(Job {
        job_id: r.get(0)?,
        tenant_id: r.get(1)?,
        service: parse_text(&r.get::<_, String>(2)?)?,
        tables: serde_json::from_str(&tables).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?,
        status: parse_text(&r.get::<_, String>(4)?)?,
        window: Window::new(
            parse_ts(&r.get::<_, String>(5)?)?,
            parse_ts(&r.get::<_, String>(6)?)?,
        ),
        chunk_size_days: r.get(7)?,
        max_attempts: r.get(8)?,
        total_chunks: r.get(9)?,
        completed_chunks: r.get(10)?,
        failed_chunks: r.get(11)?,
        records: r.get::<_, i64>(12)? as u64,
        created_at: parse_ts(&r.get::<_, String>(13)?)?,
        updated_at: parse_ts(&r.get::<_, String>(14)?)?,
        finished_at: opt_ts(r.get(15)?)?,
        skipped_fields: serde_json::from_str(&r.get::<_, String>(16)?).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(16, rusqlite::types::Type::Text, Box::new(e))
        })?,
    })
}

/// A file made before jobs listed their skipped fields gets the column (its jobs skipped none).
fn add_skipped_fields(conn: &Connection) -> Result<(), StoreError> {
    let has: bool = conn
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('jobs') WHERE name = 'skipped_fields'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(backend)?
        > 0;
    if !has {
        conn.execute_batch("ALTER TABLE jobs ADD COLUMN skipped_fields TEXT NOT NULL DEFAULT '[]'")
            .map_err(backend)?;
    }
    Ok(())
}

fn chunk_from_row(r: &Row<'_>) -> rusqlite::Result<Chunk> {
    Ok(Chunk {
        key: ChunkKey {
            job_id: r.get(0)?,
            table: r.get(1)?,
            seq: r.get(2)?,
        },
        window: Window::new(
            parse_ts(&r.get::<_, String>(3)?)?,
            parse_ts(&r.get::<_, String>(4)?)?,
        ),
        status: parse_text(&r.get::<_, String>(5)?)?,
        attempts: r.get(6)?,
        checkpoint: Checkpoint {
            cursor: r.get(7)?,
            parts: r.get(8)?,
            records: r.get::<_, i64>(9)? as u64,
            pages: r.get(10)?,
        },
        started_at: opt_ts(r.get(11)?)?,
        finished_at: opt_ts(r.get(12)?)?,
        last_error: r.get(13)?,
        lease_owner: r.get(14)?,
        lease_expires_at: opt_ts(r.get(15)?)?,
        not_before: opt_ts(r.get(16)?)?,
    })
}

fn load_job(c: &Connection, job_id: &str) -> rusqlite::Result<Option<Job>> {
    c.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?1"),
        [job_id],
        job_from_row,
    )
    .optional()
}

fn require_job(c: &Connection, job_id: &str) -> Result<Job, StoreError> {
    load_job(c, job_id)
        .map_err(backend)?
        .ok_or_else(|| StoreError::JobNotFound(job_id.to_string()))
}

fn load_chunks(c: &Connection, job_id: &str) -> rusqlite::Result<Vec<Chunk>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {CHUNK_COLUMNS} FROM chunks WHERE job_id = ?1 ORDER BY table_name, seq"
    ))?;
    let rows = stmt.query_map([job_id], chunk_from_row)?;
    rows.collect()
}

fn load_chunk(c: &Connection, key: &ChunkKey) -> rusqlite::Result<Option<Chunk>> {
    c.query_row(
        &format!(
            "SELECT {CHUNK_COLUMNS} FROM chunks WHERE job_id = ?1 AND table_name = ?2 AND seq = ?3"
        ),
        params![key.job_id, key.table, key.seq],
        chunk_from_row,
    )
    .optional()
}

/// Checks that `owner` holds the running chunk's lease, inside the caller's transaction.
fn require_lease(c: &Connection, key: &ChunkKey, owner: &str) -> Result<Chunk, StoreError> {
    let chunk = load_chunk(c, key)
        .map_err(backend)?
        .ok_or_else(|| StoreError::ChunkNotFound(key.clone()))?;
    if chunk.status != ChunkStatus::Running || chunk.lease_owner.as_deref() != Some(owner) {
        return Err(StoreError::LeaseLost {
            key: key.clone(),
            owner: owner.to_string(),
        });
    }
    Ok(chunk)
}

/// Sets the job's final status once no chunk is left to run.
fn settle_job(c: &Connection, job_id: &str, now: DateTime<Utc>) -> Result<Job, StoreError> {
    let open: u32 = c
        .query_row(
            "SELECT COUNT(*) FROM chunks WHERE job_id = ?1 AND status IN ('pending', 'running')",
            [job_id],
            |r| r.get(0),
        )
        .map_err(backend)?;
    let job = require_job(c, job_id)?;
    if open == 0 && job.status.is_active() && job.status != JobStatus::Paused {
        let status = if job.failed_chunks > 0 {
            JobStatus::CompletedWithErrors
        } else {
            JobStatus::Completed
        };
        c.execute(
            "UPDATE jobs SET status = ?2, finished_at = ?3, updated_at = ?3 WHERE job_id = ?1",
            params![job_id, status.as_str(), ts(now)],
        )
        .map_err(backend)?;
        return require_job(c, job_id);
    }
    Ok(job)
}

/// The first chunk of `table` in `seq` order that can be claimed at `now` (pending past its
/// backoff, or running with an expired lease), and otherwise when the earliest open one will
/// be. Windows of a table are independent: a running or backed-off chunk does not hold back
/// the ones after it.
fn first_ready(
    tx: &rusqlite::Connection,
    job_id: &str,
    table: &str,
    now: DateTime<Utc>,
) -> Result<(Option<Chunk>, Option<DateTime<Utc>>), StoreError> {
    let mut open = tx
        .prepare_cached(&format!(
            "SELECT {CHUNK_COLUMNS} FROM chunks WHERE job_id = ?1 AND table_name = ?2 \
             AND status IN ('pending','running') ORDER BY seq"
        ))
        .map_err(backend)?;
    let mut wake: Option<DateTime<Utc>> = None;
    for chunk in open
        .query_map(params![job_id, table], chunk_from_row)
        .map_err(backend)?
    {
        let chunk = chunk.map_err(backend)?;
        let ready_at = match chunk.status {
            ChunkStatus::Pending => chunk.not_before,
            _ => chunk.lease_expires_at,
        };
        match ready_at {
            Some(t) if t > now => wake = Some(wake.map_or(t, |w| w.min(t))),
            _ => return Ok((Some(chunk), wake)),
        }
    }
    Ok((None, wake))
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let at = |e: StoreError| in_file(path, e);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Backend(format!("{}: {e}", parent.display())))?;
        }
        let conn = Connection::open(path).map_err(backend).map_err(at)?;
        Self::prepare(&conn).map_err(at)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: path.into(),
            rate_writes: Arc::default(),
        })
    }

    /// Settings and schema of a newly opened connection (the first reads of the file: a file
    /// that is not a database fails here).
    fn prepare(conn: &Connection) -> Result<(), StoreError> {
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        add_skipped_fields(conn)?;
        conn.execute_batch(lifecycle::SCHEMA).map_err(backend)?;
        conn.execute_batch(fleet::SCHEMA).map_err(backend)?;
        conn.execute_batch(pulse::SCHEMA).map_err(backend)?;
        conn.execute_batch(rate::SCHEMA).map_err(backend)
    }

    /// Runs `f` in a write transaction on a blocking thread.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Backend("connection lock poisoned".into()))?;
            let tx = guard
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let out = f(&tx)?;
            tx.commit().map_err(backend)?;
            Ok(out)
        })
        .await
        .map_err(backend)
        .flatten()
        .map_err(|e| in_file(&self.path, e))
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let guard = conn
                .lock()
                .map_err(|_| StoreError::Backend("connection lock poisoned".into()))?;
            f(&guard)
        })
        .await
        .map_err(backend)
        .flatten()
        .map_err(|e| in_file(&self.path, e))
    }
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn create_job(
        &self,
        job: Job,
        chunks: Vec<Chunk>,
        end_is_default: bool,
    ) -> Result<CreateOutcome, StoreError> {
        self.write(move |tx| {
            let tables = serde_json::to_string(&job.tables).map_err(backend)?;
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = ?1 AND status IN ('pending','running','paused') \
                     AND service = ?2 AND tables = ?3 AND window_start = ?4"
                ))
                .map_err(backend)?;
            let existing = stmt
                .query_row(params![job.tenant_id, job.service.as_str(), tables, ts(job.window.start)], job_from_row)
                .optional()
                .map_err(backend)?;
            if let Some(found) = existing {
                return super::existing_or_conflict(found, &job, end_is_default);
            }
            let mut job_id = job.job_id.clone();
            let mut n = 1;
            while load_job(tx, &job_id).map_err(backend)?.is_some() {
                n += 1;
                job_id = format!("{}_r{n}", job.job_id);
            }
            tx.execute(
                &format!("INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)"),
                params![
                    job_id,
                    job.tenant_id,
                    job.service.as_str(),
                    tables,
                    job.status.as_str(),
                    ts(job.window.start),
                    ts(job.window.end),
                    job.chunk_size_days,
                    job.max_attempts,
                    chunks.len() as u32,
                    0,
                    0,
                    0,
                    ts(job.created_at),
                    ts(job.updated_at),
                    Option::<String>::None,
                    serde_json::to_string(&job.skipped_fields).map_err(backend)?,
                ],
            )
            .map_err(backend)?;
            let mut insert = tx
                .prepare(
                    "INSERT INTO chunks (job_id, table_name, seq, window_start, window_end, status) VALUES (?1,?2,?3,?4,?5,'pending')",
                )
                .map_err(backend)?;
            for c in &chunks {
                insert
                    .execute(params![job_id, c.key.table, c.key.seq, ts(c.window.start), ts(c.window.end)])
                    .map_err(backend)?;
            }
            Ok(CreateOutcome::Created(require_job(tx, &job_id)?))
        })
        .await
    }

    async fn get_job(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        let id = job_id.to_string();
        self.read(move |c| load_job(c, &id).map_err(backend)).await
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let filter = filter.clone();
        self.read(move |c| {
            let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE 1=1");
            let mut args: Vec<String> = Vec::new();
            if let Some(t) = &filter.tenant_id {
                args.push(t.clone());
                sql.push_str(&format!(" AND tenant_id = ?{}", args.len()));
            }
            if let Some(s) = filter.status {
                args.push(s.as_str().to_string());
                sql.push_str(&format!(" AND status = ?{}", args.len()));
            }
            if let Some(s) = filter.service {
                args.push(s.as_str().to_string());
                sql.push_str(&format!(" AND service = ?{}", args.len()));
            }
            sql.push_str(" ORDER BY created_at DESC, job_id");
            let mut stmt = c.prepare(&sql).map_err(backend)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), job_from_row)
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn chunks(&self, job_id: &str) -> Result<Vec<Chunk>, StoreError> {
        let id = job_id.to_string();
        self.read(move |c| {
            let job = require_job(c, &id)?;
            let mut chunks = load_chunks(c, &id).map_err(backend)?;
            // Present chunks in the job's table order, then by sequence.
            chunks.sort_by_key(|ch| {
                (
                    job.tables.iter().position(|t| *t == ch.key.table),
                    ch.key.seq,
                )
            });
            Ok(chunks)
        })
        .await
    }

    async fn claim_next_chunk(
        &self,
        job_id: &str,
        owner: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let (id, owner) = (job_id.to_string(), owner.to_string());
        self.write(move |tx| {
            let job = require_job(tx, &id)?;
            if matches!(job.status, JobStatus::Paused) || job.status.is_terminal() {
                return Ok(Claim::Done(job.status));
            }
            let mut wake: Option<DateTime<Utc>> = None;
            let mut found = None;
            for table in &job.tables {
                let (chunk, table_wake) = first_ready(tx, &id, table, now)?;
                wake = match (wake, table_wake) {
                    (Some(w), Some(t)) => Some(w.min(t)),
                    (w, t) => w.or(t),
                };
                if chunk.is_some() {
                    found = chunk;
                    break;
                }
            }
            if let Some(chunk) = found {
                let table = &chunk.key.table;
                // A reclaimed expired lease continues the same attempt from its checkpoint.
                let bump = u32::from(chunk.status == ChunkStatus::Pending);
                tx.execute(
                    "UPDATE chunks SET status = 'running', lease_owner = ?4, lease_expires_at = ?5, \
                     attempts = attempts + ?6, started_at = COALESCE(started_at, ?7), not_before = NULL \
                     WHERE job_id = ?1 AND table_name = ?2 AND seq = ?3",
                    params![id, table, chunk.key.seq, owner, ts(lease_until), bump, ts(now)],
                )
                .map_err(backend)?;
                if job.status == JobStatus::Pending {
                    tx.execute(
                        "UPDATE jobs SET status = 'running', updated_at = ?2 WHERE job_id = ?1",
                        params![id, ts(now)],
                    )
                    .map_err(backend)?;
                }
                let claimed = load_chunk(tx, &chunk.key).map_err(backend)?.ok_or_else(|| StoreError::ChunkNotFound(chunk.key.clone()))?;
                return Ok(Claim::Chunk(Box::new(claimed)));
            }
            let open: u32 = tx
                .query_row(
                    "SELECT COUNT(*) FROM chunks WHERE job_id = ?1 AND status IN ('pending','running')",
                    [&id],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if open == 0 {
                let job = settle_job(tx, &id, now)?;
                return Ok(Claim::Done(job.status));
            }
            Ok(Claim::Wait { until: wake })
        })
        .await
    }

    async fn checkpoint(
        &self,
        key: &ChunkKey,
        owner: &str,
        cp: &Checkpoint,
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (key, owner, cp) = (key.clone(), owner.to_string(), cp.clone());
        self.write(move |tx| {
            require_lease(tx, &key, &owner)?;
            tx.execute(
                "UPDATE chunks SET cursor = ?4, parts = ?5, records = ?6, pages = ?7, lease_expires_at = ?8 \
                 WHERE job_id = ?1 AND table_name = ?2 AND seq = ?3",
                params![key.job_id, key.table, key.seq, cp.cursor, cp.parts, cp.records as i64, cp.pages, ts(lease_until)],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn renew_lease(
        &self,
        key: &ChunkKey,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (key, owner) = (key.clone(), owner.to_string());
        self.write(move |tx| {
            require_lease(tx, &key, &owner)?;
            tx.execute(
                "UPDATE chunks SET lease_expires_at = ?4 WHERE job_id = ?1 AND table_name = ?2 AND seq = ?3",
                params![key.job_id, key.table, key.seq, ts(lease_until)],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn complete_chunk(
        &self,
        key: &ChunkKey,
        owner: &str,
        cp: &Checkpoint,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let (key, owner, cp) = (key.clone(), owner.to_string(), cp.clone());
        self.write(move |tx| {
            require_lease(tx, &key, &owner)?;
            tx.execute(
                "UPDATE chunks SET status = 'succeeded', cursor = ?4, parts = ?5, records = ?6, pages = ?7, \
                 finished_at = ?8, lease_owner = NULL, lease_expires_at = NULL, last_error = NULL \
                 WHERE job_id = ?1 AND table_name = ?2 AND seq = ?3",
                params![key.job_id, key.table, key.seq, cp.cursor, cp.parts, cp.records as i64, cp.pages, ts(now)],
            )
            .map_err(backend)?;
            tx.execute(
                "UPDATE jobs SET completed_chunks = completed_chunks + 1, records = records + ?2, updated_at = ?3 WHERE job_id = ?1",
                params![key.job_id, cp.records as i64, ts(now)],
            )
            .map_err(backend)?;
            settle_job(tx, &key.job_id, now)
        })
        .await
    }

    async fn fail_chunk(
        &self,
        key: &ChunkKey,
        owner: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let (key, owner, error) = (key.clone(), owner.to_string(), error.to_string());
        self.write(move |tx| {
            require_lease(tx, &key, &owner)?;
            match retry_at {
                Some(at) => {
                    tx.execute(
                        "UPDATE chunks SET status = 'pending', not_before = ?4, last_error = ?5, lease_owner = NULL, \
                         lease_expires_at = NULL WHERE job_id = ?1 AND table_name = ?2 AND seq = ?3",
                        params![key.job_id, key.table, key.seq, ts(at), error],
                    )
                    .map_err(backend)?;
                    tx.execute("UPDATE jobs SET updated_at = ?2 WHERE job_id = ?1", params![key.job_id, ts(now)])
                        .map_err(backend)?;
                }
                None => {
                    tx.execute(
                        "UPDATE chunks SET status = 'failed', finished_at = ?4, last_error = ?5, lease_owner = NULL, \
                         lease_expires_at = NULL WHERE job_id = ?1 AND table_name = ?2 AND seq = ?3",
                        params![key.job_id, key.table, key.seq, ts(now), error],
                    )
                    .map_err(backend)?;
                    tx.execute(
                        "UPDATE jobs SET failed_chunks = failed_chunks + 1, updated_at = ?2 WHERE job_id = ?1",
                        params![key.job_id, ts(now)],
                    )
                    .map_err(backend)?;
                }
            }
            settle_job(tx, &key.job_id, now)
        })
        .await
    }

    async fn fail_table(
        &self,
        key: &ChunkKey,
        owner: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let (key, owner, error) = (key.clone(), owner.to_string(), error.to_string());
        self.write(move |tx| {
            require_lease(tx, &key, &owner)?;
            let failed = tx
                .execute(
                    "UPDATE chunks SET status = 'failed', finished_at = ?4, last_error = ?5, lease_owner = NULL, \
                     lease_expires_at = NULL WHERE job_id = ?1 AND table_name = ?2 \
                     AND (seq = ?3 OR status = 'pending')",
                    params![key.job_id, key.table, key.seq, ts(now), error],
                )
                .map_err(backend)?;
            tx.execute(
                "UPDATE jobs SET failed_chunks = failed_chunks + ?2, updated_at = ?3 WHERE job_id = ?1",
                params![key.job_id, failed as i64, ts(now)],
            )
            .map_err(backend)?;
            settle_job(tx, &key.job_id, now)
        })
        .await
    }

    async fn release_chunk(
        &self,
        key: &ChunkKey,
        owner: &str,
        cp: &Checkpoint,
    ) -> Result<(), StoreError> {
        let (key, owner, cp) = (key.clone(), owner.to_string(), cp.clone());
        self.write(move |tx| {
            require_lease(tx, &key, &owner)?;
            tx.execute(
                "UPDATE chunks SET status = 'pending', attempts = MAX(attempts - 1, 0), cursor = ?4, parts = ?5, \
                 records = ?6, pages = ?7, lease_owner = NULL, lease_expires_at = NULL \
                 WHERE job_id = ?1 AND table_name = ?2 AND seq = ?3",
                params![key.job_id, key.table, key.seq, cp.cursor, cp.parts, cp.records as i64, cp.pages],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn break_lease(
        &self,
        key: &ChunkKey,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (key, owner) = (key.clone(), owner.to_string());
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE chunks SET lease_expires_at = ?5 WHERE job_id = ?1 AND table_name = ?2 AND seq = ?3 \
                     AND status = 'running' AND lease_owner = ?4",
                    params![key.job_id, key.table, key.seq, owner, ts(now)],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn retry_failed(&self, job_id: &str, now: DateTime<Utc>) -> Result<u32, StoreError> {
        let id = job_id.to_string();
        self.write(move |tx| {
            let job = require_job(tx, &id)?;
            if job.status == JobStatus::Cancelled {
                return Err(StoreError::Conflict(format!("job {id} is cancelled; start a new backfill instead")));
            }
            let n = tx
                .execute(
                    "UPDATE chunks SET status = 'pending', attempts = 0, not_before = NULL, finished_at = NULL \
                     WHERE job_id = ?1 AND status = 'failed'",
                    [&id],
                )
                .map_err(backend)? as u32;
            if n > 0 {
                tx.execute(
                    "UPDATE jobs SET failed_chunks = failed_chunks - ?2, status = 'pending', finished_at = NULL, \
                     updated_at = ?3 WHERE job_id = ?1",
                    params![id, n, ts(now)],
                )
                .map_err(backend)?;
            }
            Ok(n)
        })
        .await
    }

    async fn set_job_status(
        &self,
        job_id: &str,
        status: JobStatus,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let id = job_id.to_string();
        self.write(move |tx| {
            let job = require_job(tx, &id)?;
            let allowed = match status {
                JobStatus::Paused => matches!(job.status, JobStatus::Pending | JobStatus::Running),
                JobStatus::Pending => job.status == JobStatus::Paused,
                JobStatus::Cancelled => job.status.is_active(),
                _ => false,
            };
            if !allowed {
                return Err(StoreError::Conflict(format!(
                    "job {id} is {}; it cannot become {status}",
                    job.status
                )));
            }
            tx.execute(
                "UPDATE jobs SET status = ?2, updated_at = ?3 WHERE job_id = ?1",
                params![id, status.as_str(), ts(now)],
            )
            .map_err(backend)?;
            if status == JobStatus::Cancelled {
                tx.execute(
                    "UPDATE chunks SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL \
                     WHERE job_id = ?1 AND status IN ('pending','running')",
                    [&id],
                )
                .map_err(backend)?;
                tx.execute("UPDATE jobs SET finished_at = ?2 WHERE job_id = ?1", params![id, ts(now)])
                    .map_err(backend)?;
            }
            require_job(tx, &id)
        })
        .await
    }

    async fn fleet(&self) -> Result<FleetQueue, StoreError> {
        self.read_fleet().await
    }

    async fn put_fleet(&self, entries: &[FleetEntry], expected: u64) -> Result<bool, StoreError> {
        self.write_fleet(entries, expected).await
    }

    async fn add_pulse(&self, rows: &[super::PulseRow]) -> Result<(), StoreError> {
        self.add_pulse_rows(rows).await
    }

    async fn pulse_since(&self, since: i64) -> Result<Vec<super::PulseRow>, StoreError> {
        self.pulse_rows_since(since).await
    }

    async fn prune_pulse(&self, before: i64) -> Result<u64, StoreError> {
        self.prune_pulse_rows(before).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written before jobs listed their skipped fields opens, gains the column and
    /// reads its jobs as skipping none; a new job's list is kept.
    #[tokio::test]
    async fn a_file_without_skipped_fields_gains_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        let old = SCHEMA.replace(",\n    skipped_fields TEXT NOT NULL DEFAULT '[]'", "");
        assert!(!old.contains("skipped_fields"));
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&old).unwrap();
        conn.execute(
            "INSERT INTO jobs (job_id, tenant_id, service, tables, status, window_start, window_end, \
             chunk_size_days, max_attempts, total_chunks, created_at, updated_at) VALUES \
             ('old', 'acme', 'connectwise', '[\"tickets\"]', 'completed', '2025-01-01T00:00:00Z', \
             '2025-02-01T00:00:00Z', 30, 3, 0, '2025-02-01T00:00:00Z', '2025-02-01T00:00:00Z')",
            [],
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        let job = store.get_job("old").await.unwrap().unwrap();
        assert!(job.skipped_fields.is_empty());
        let mut new = job.clone();
        new.job_id = "new".into();
        new.window = Window::new(new.window.end, new.window.end + chrono::Duration::days(1));
        new.skipped_fields = vec!["tickets.summary".into()];
        store.create_job(new, Vec::new(), false).await.unwrap();
        let stored = store.get_job("new").await.unwrap().unwrap();
        assert_eq!(stored.skipped_fields, ["tickets.summary"]);
    }
}
