//! `LifecycleStore` on the same SQLite file as the jobs: markers, service states, job hints,
//! alerts and verification results, each change in one `BEGIN IMMEDIATE` transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqliteStore, backend, opt_ts, parse_text, parse_ts, ts};
use crate::domain::{
    Alert, ChunkKey, ChunkVerification, JobMeta, Service, ServiceState, SyncMarker, Trigger, Window,
};
use crate::store::StoreError;
use crate::store::lifecycle::{
    AlertFilter, HandoffClaim, LifecycleStore, MarkerAdvance, next_marker, observed,
};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sync_markers (
    tenant_id TEXT NOT NULL,
    service TEXT NOT NULL,
    table_name TEXT NOT NULL,
    last_updated TEXT NOT NULL,
    set_by_job TEXT NOT NULL,
    backfill_job TEXT,
    backfill_end TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, service, table_name)
);
CREATE TABLE IF NOT EXISTS service_state (
    tenant_id TEXT NOT NULL,
    service TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    first_seen_at TEXT NOT NULL,
    last_disabled_at TEXT,
    reenabled_at TEXT,
    PRIMARY KEY (tenant_id, service)
);
CREATE TABLE IF NOT EXISTS job_meta (
    job_id TEXT PRIMARY KEY,
    priority INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    wait_off_peak INTEGER NOT NULL,
    finalized_at TEXT
);
CREATE TABLE IF NOT EXISTS handoff_claims (
    job_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quota_waits (
    job_id TEXT PRIMARY KEY,
    until TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    service TEXT NOT NULL,
    job_id TEXT,
    message TEXT NOT NULL,
    value REAL NOT NULL,
    threshold REAL NOT NULL,
    raised_at TEXT NOT NULL,
    PRIMARY KEY (kind, subject)
);
CREATE INDEX IF NOT EXISTS alerts_job ON alerts(job_id);
CREATE TABLE IF NOT EXISTS failure_runs (
    job_id TEXT PRIMARY KEY,
    failed_in_a_row INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS verifications (
    job_id TEXT NOT NULL,
    table_name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    source_count INTEGER NOT NULL,
    landed INTEGER NOT NULL,
    verified_at TEXT NOT NULL,
    PRIMARY KEY (job_id, table_name, seq)
);
";

const MARKER_COLUMNS: &str = "tenant_id, service, table_name, last_updated, set_by_job, backfill_job, backfill_end, updated_at";

fn marker_from_row(r: &Row<'_>) -> rusqlite::Result<SyncMarker> {
    Ok(SyncMarker {
        tenant_id: r.get(0)?,
        service: parse_text(&r.get::<_, String>(1)?)?,
        table: r.get(2)?,
        last_updated: parse_ts(&r.get::<_, String>(3)?)?,
        set_by_job: r.get(4)?,
        backfill_job: r.get(5)?,
        backfill_end: opt_ts(r.get(6)?)?,
        updated_at: parse_ts(&r.get::<_, String>(7)?)?,
    })
}

fn load_marker(
    c: &Connection,
    tenant: &str,
    service: Service,
    table: &str,
) -> rusqlite::Result<Option<SyncMarker>> {
    c.query_row(
        &format!(
            "SELECT {MARKER_COLUMNS} FROM sync_markers WHERE tenant_id = ?1 AND service = ?2 AND table_name = ?3"
        ),
        params![tenant, service.as_str(), table],
        marker_from_row,
    )
    .optional()
}

fn state_from_row(r: &Row<'_>) -> rusqlite::Result<ServiceState> {
    Ok(ServiceState {
        tenant_id: r.get(0)?,
        service: parse_text(&r.get::<_, String>(1)?)?,
        enabled: r.get(2)?,
        first_seen_at: parse_ts(&r.get::<_, String>(3)?)?,
        last_disabled_at: opt_ts(r.get(4)?)?,
        reenabled_at: opt_ts(r.get(5)?)?,
    })
}

const STATE_COLUMNS: &str =
    "tenant_id, service, enabled, first_seen_at, last_disabled_at, reenabled_at";

fn trigger_text(t: Trigger) -> &'static str {
    match t {
        Trigger::Manual => "manual",
        Trigger::Auto => "auto",
    }
}

fn meta_from_row(r: &Row<'_>) -> rusqlite::Result<JobMeta> {
    let trigger: String = r.get(2)?;
    Ok(JobMeta {
        job_id: r.get(0)?,
        priority: r.get(1)?,
        trigger: if trigger == "auto" {
            Trigger::Auto
        } else {
            Trigger::Manual
        },
        wait_off_peak: r.get(3)?,
        finalized_at: opt_ts(r.get(4)?)?,
        quota_wait_until: opt_ts(r.get(5)?)?,
    })
}

fn alert_from_row(r: &Row<'_>) -> rusqlite::Result<Alert> {
    Ok(Alert {
        kind: parse_text(&r.get::<_, String>(0)?)?,
        subject: r.get(1)?,
        tenant_id: r.get(2)?,
        service: parse_text(&r.get::<_, String>(3)?)?,
        job_id: r.get(4)?,
        message: r.get(5)?,
        value: r.get(6)?,
        threshold: r.get(7)?,
        raised_at: parse_ts(&r.get::<_, String>(8)?)?,
    })
}

#[async_trait]
impl LifecycleStore for SqliteStore {
    async fn advance_marker(&self, adv: &MarkerAdvance) -> Result<SyncMarker, StoreError> {
        let adv = adv.clone();
        self.write(move |tx| {
            let existing =
                load_marker(tx, &adv.tenant_id, adv.service, &adv.table).map_err(backend)?;
            let next = next_marker(existing, &adv)?;
            tx.execute(
                &format!(
                    "INSERT INTO sync_markers ({MARKER_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8) \
                     ON CONFLICT(tenant_id, service, table_name) DO UPDATE SET last_updated = ?4, \
                     set_by_job = ?5, backfill_job = ?6, backfill_end = ?7, updated_at = ?8"
                ),
                params![
                    next.tenant_id,
                    next.service.as_str(),
                    next.table,
                    ts(next.last_updated),
                    next.set_by_job,
                    next.backfill_job,
                    next.backfill_end.map(ts),
                    ts(next.updated_at)
                ],
            )
            .map_err(backend)?;
            Ok(next)
        })
        .await
    }

    async fn markers(
        &self,
        tenant_id: Option<&str>,
        service: Option<Service>,
    ) -> Result<Vec<SyncMarker>, StoreError> {
        let tenant = tenant_id.map(str::to_string);
        self.read(move |c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {MARKER_COLUMNS} FROM sync_markers WHERE (?1 IS NULL OR tenant_id = ?1) \
                     AND (?2 IS NULL OR service = ?2) ORDER BY tenant_id, service, table_name"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![tenant, service.map(|s| s.as_str())], marker_from_row)
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn observe_service(
        &self,
        tenant_id: &str,
        service: Service,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<ServiceState, StoreError> {
        let tenant = tenant_id.to_string();
        self.write(move |tx| {
            let load = |tx: &Connection| {
                tx.query_row(
                    &format!("SELECT {STATE_COLUMNS} FROM service_state WHERE tenant_id = ?1 AND service = ?2"),
                    params![tenant, service.as_str()],
                    state_from_row,
                )
                .optional()
                .map_err(backend)
            };
            let current = load(tx)?;
            let Some(next) = observed(current.as_ref(), &tenant, service, enabled, now) else {
                return current.ok_or_else(|| StoreError::Backend("service state vanished".into()));
            };
            tx.execute(
                &format!(
                    "INSERT INTO service_state ({STATE_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6) \
                     ON CONFLICT(tenant_id, service) DO UPDATE SET enabled = ?3, \
                     last_disabled_at = ?5, reenabled_at = ?6"
                ),
                params![
                    next.tenant_id,
                    next.service.as_str(),
                    next.enabled,
                    ts(next.first_seen_at),
                    next.last_disabled_at.map(ts),
                    next.reenabled_at.map(ts)
                ],
            )
            .map_err(backend)?;
            Ok(next)
        })
        .await
    }

    async fn service_states(&self) -> Result<Vec<ServiceState>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {STATE_COLUMNS} FROM service_state ORDER BY tenant_id, service"
                ))
                .map_err(backend)?;
            let rows = stmt.query_map([], state_from_row).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn clear_reenabled(&self, tenant_id: &str, service: Service) -> Result<(), StoreError> {
        let tenant = tenant_id.to_string();
        self.write(move |tx| {
            tx.execute(
                "UPDATE service_state SET reenabled_at = NULL WHERE tenant_id = ?1 AND service = ?2",
                params![tenant, service.as_str()],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn put_job_meta(&self, meta: &JobMeta) -> Result<(), StoreError> {
        let meta = meta.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO job_meta (job_id, priority, trigger, wait_off_peak, finalized_at) VALUES (?1,?2,?3,?4,?5) \
                 ON CONFLICT(job_id) DO UPDATE SET priority = ?2, trigger = ?3, wait_off_peak = ?4",
                params![
                    meta.job_id,
                    meta.priority,
                    trigger_text(meta.trigger),
                    meta.wait_off_peak,
                    meta.finalized_at.map(ts)
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn job_metas(&self, job_ids: &[String]) -> Result<Vec<JobMeta>, StoreError> {
        let ids = job_ids.to_vec();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT m.job_id, m.priority, m.trigger, m.wait_off_peak, m.finalized_at, q.until \
                     FROM job_meta m LEFT JOIN quota_waits q ON q.job_id = m.job_id WHERE m.job_id = ?1",
                )
                .map_err(backend)?;
            let mut out = Vec::new();
            for id in &ids {
                if let Some(m) = stmt.query_row([id], meta_from_row).optional().map_err(backend)? {
                    out.push(m);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn set_quota_wait(
        &self,
        job_id: &str,
        until: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let id = job_id.to_string();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO job_meta (job_id, priority, trigger, wait_off_peak, finalized_at) \
                 VALUES (?1, 0, 'manual', 0, NULL) ON CONFLICT(job_id) DO NOTHING",
                [&id],
            )
            .map_err(backend)?;
            match until {
                Some(t) => tx.execute(
                    "INSERT INTO quota_waits (job_id, until) VALUES (?1, ?2) \
                     ON CONFLICT(job_id) DO UPDATE SET until = ?2",
                    params![id, ts(t)],
                ),
                None => tx.execute("DELETE FROM quota_waits WHERE job_id = ?1", [&id]),
            }
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn finalize_job(&self, job_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let id = job_id.to_string();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO job_meta (job_id, priority, trigger, wait_off_peak, finalized_at) \
                 VALUES (?1, 0, 'manual', 0, NULL) ON CONFLICT(job_id) DO NOTHING",
                [&id],
            )
            .map_err(backend)?;
            let n = tx
                .execute(
                    "UPDATE job_meta SET finalized_at = ?2 WHERE job_id = ?1 AND finalized_at IS NULL",
                    params![id, ts(now)],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn claim_handoff(
        &self,
        job_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        breaking: Option<&str>,
    ) -> Result<HandoffClaim, StoreError> {
        let (id, owner) = (job_id.to_string(), owner.to_string());
        let breaking = breaking.map(str::to_string);
        self.write(move |tx| {
            let done: Option<Option<String>> = tx
                .query_row(
                    "SELECT finalized_at FROM job_meta WHERE job_id = ?1",
                    [&id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            if done.flatten().is_some() {
                return Ok(HandoffClaim::Done);
            }
            let held: Option<(String, String)> = tx
                .query_row(
                    "SELECT owner, until FROM handoff_claims WHERE job_id = ?1",
                    [&id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            if let Some((holder, lapses)) = held {
                let lapses = parse_ts(&lapses).map_err(backend)?;
                if holder != owner && lapses >= now && breaking.as_deref() != Some(holder.as_str())
                {
                    return Ok(HandoffClaim::Held {
                        owner: holder,
                        until: lapses,
                    });
                }
            }
            tx.execute(
                "INSERT INTO handoff_claims (job_id, owner, until) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(job_id) DO UPDATE SET owner = ?2, until = ?3",
                params![id, owner, ts(until)],
            )
            .map_err(backend)?;
            Ok(HandoffClaim::Taken)
        })
        .await
    }

    async fn release_handoff(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        let (id, owner) = (job_id.to_string(), owner.to_string());
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM handoff_claims WHERE job_id = ?1 AND owner = ?2",
                params![id, owner],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn raise_alert(&self, alert: &Alert) -> Result<bool, StoreError> {
        let a = alert.clone();
        self.write(move |tx| {
            let n = tx
                .execute(
                    "INSERT INTO alerts (kind, subject, tenant_id, service, job_id, message, value, threshold, raised_at) \
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9) ON CONFLICT(kind, subject) DO NOTHING",
                    params![
                        a.kind.as_str(),
                        a.subject,
                        a.tenant_id,
                        a.service.as_str(),
                        a.job_id,
                        a.message,
                        a.value,
                        a.threshold,
                        ts(a.raised_at)
                    ],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        let f = filter.clone();
        self.read(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT kind, subject, tenant_id, service, job_id, message, value, threshold, raised_at FROM alerts \
                     WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR job_id = ?2) AND (?3 IS NULL OR kind = ?3) \
                     ORDER BY raised_at DESC, kind, subject",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(
                    params![f.tenant_id, f.job_id, f.kind.map(|k| k.as_str())],
                    alert_from_row,
                )
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn save_verification(
        &self,
        job_id: &str,
        results: &[ChunkVerification],
    ) -> Result<(), StoreError> {
        let (id, results) = (job_id.to_string(), results.to_vec());
        self.write(move |tx| {
            tx.execute("DELETE FROM verifications WHERE job_id = ?1", [&id])
                .map_err(backend)?;
            let mut insert = tx
                .prepare(
                    "INSERT INTO verifications (job_id, table_name, seq, window_start, window_end, source_count, landed, verified_at) \
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
                )
                .map_err(backend)?;
            for v in &results {
                insert
                    .execute(params![
                        id,
                        v.key.table,
                        v.key.seq,
                        ts(v.window.start),
                        ts(v.window.end),
                        v.source_count as i64,
                        v.landed as i64,
                        ts(v.verified_at)
                    ])
                    .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn verification(&self, job_id: &str) -> Result<Vec<ChunkVerification>, StoreError> {
        let id = job_id.to_string();
        self.read(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT job_id, table_name, seq, window_start, window_end, source_count, landed, verified_at \
                     FROM verifications WHERE job_id = ?1 ORDER BY table_name, seq",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([&id], |r| {
                    Ok(ChunkVerification {
                        key: ChunkKey {
                            job_id: r.get(0)?,
                            table: r.get(1)?,
                            seq: r.get(2)?,
                        },
                        window: Window::new(
                            parse_ts(&r.get::<_, String>(3)?)?,
                            parse_ts(&r.get::<_, String>(4)?)?,
                        ),
                        source_count: r.get::<_, i64>(5)? as u64,
                        landed: r.get::<_, i64>(6)? as u64,
                        verified_at: parse_ts(&r.get::<_, String>(7)?)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn chunk_attempt_ended(&self, job_id: &str, failed: bool) -> Result<u32, StoreError> {
        let id = job_id.to_string();
        self.write(move |tx| {
            if !failed {
                tx.execute(
                    "UPDATE failure_runs SET failed_in_a_row = 0 WHERE job_id = ?1 AND failed_in_a_row > 0",
                    [&id],
                )
                .map_err(backend)?;
                return Ok(0);
            }
            tx.query_row(
                "INSERT INTO failure_runs (job_id, failed_in_a_row) VALUES (?1, 1) \
                 ON CONFLICT(job_id) DO UPDATE SET failed_in_a_row = failed_in_a_row + 1 \
                 RETURNING failed_in_a_row",
                [&id],
                |r| r.get::<_, u32>(0),
            )
            .map_err(backend)
        })
        .await
    }

    async fn delete_job(&self, job_id: &str) -> Result<bool, StoreError> {
        let id = job_id.to_string();
        self.write(move |tx| {
            for sql in [
                "DELETE FROM chunks WHERE job_id = ?1",
                "DELETE FROM job_meta WHERE job_id = ?1",
                "DELETE FROM quota_waits WHERE job_id = ?1",
                "DELETE FROM handoff_claims WHERE job_id = ?1",
                "DELETE FROM verifications WHERE job_id = ?1",
                "DELETE FROM alerts WHERE job_id = ?1",
                "DELETE FROM failure_runs WHERE job_id = ?1",
            ] {
                tx.execute(sql, [&id]).map_err(backend)?;
            }
            let n = tx
                .execute("DELETE FROM jobs WHERE job_id = ?1", [&id])
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }
}
