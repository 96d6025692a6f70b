//! The pulse counters on SQLite: a row per (bucket, tenant, service, job) in `pulse`, each
//! increment one `INSERT … ON CONFLICT DO UPDATE` that adds, all of a flush in one transaction.

use rusqlite::params;

use super::{SqliteStore, backend};
use crate::domain::Service;
use crate::store::StoreError;
use crate::store::pulse::{PulseCounts, PulseRow};

/// Created on open when missing, so older workspaces gain it on their next use.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pulse (
    bucket INTEGER NOT NULL,
    tenant_id TEXT NOT NULL,
    service TEXT NOT NULL,
    job_id TEXT NOT NULL,
    requests INTEGER NOT NULL,
    rate_limited INTEGER NOT NULL,
    records INTEGER NOT NULL,
    PRIMARY KEY (bucket, tenant_id, service, job_id)
);
";

impl SqliteStore {
    pub(super) async fn add_pulse_rows(&self, rows: &[PulseRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let rows = rows.to_vec();
        self.write(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO pulse (bucket, tenant_id, service, job_id, requests, rate_limited, records) \
                     VALUES (?1,?2,?3,?4,?5,?6,?7) ON CONFLICT (bucket, tenant_id, service, job_id) DO UPDATE SET \
                     requests = requests + excluded.requests, rate_limited = rate_limited + excluded.rate_limited, \
                     records = records + excluded.records",
                )
                .map_err(backend)?;
            for r in &rows {
                let c = &r.counts;
                stmt.execute(params![
                    r.bucket,
                    r.tenant_id,
                    r.service.as_str(),
                    r.job_id,
                    c.requests as i64,
                    c.rate_limited as i64,
                    c.records as i64
                ])
                .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn pulse_rows_since(&self, since: i64) -> Result<Vec<PulseRow>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT bucket, tenant_id, service, job_id, requests, rate_limited, records \
                     FROM pulse WHERE bucket >= ?1 ORDER BY bucket",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![since], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        [
                            r.get::<_, i64>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, i64>(6)?,
                        ],
                    ))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (bucket, tenant_id, service, job_id, [req, limited, records]) =
                    row.map_err(backend)?;
                let service: Service = service.parse().map_err(|e| {
                    StoreError::Backend(format!("pulse row of job '{job_id}': {e}"))
                })?;
                out.push(PulseRow {
                    tenant_id,
                    service,
                    job_id,
                    bucket,
                    counts: PulseCounts {
                        requests: req.max(0) as u64,
                        rate_limited: limited.max(0) as u64,
                        records: records.max(0) as u64,
                    },
                });
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn prune_pulse_rows(&self, before: i64) -> Result<u64, StoreError> {
        self.write(move |tx| {
            tx.execute("DELETE FROM pulse WHERE bucket < ?1", params![before])
                .map(|n| n as u64)
                .map_err(backend)
        })
        .await
    }
}
