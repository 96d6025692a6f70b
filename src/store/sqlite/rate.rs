//! `RateStore` on SQLite: one row per tenant + service in `rate_rows`, changed inside one
//! `BEGIN IMMEDIATE` transaction, so every process using the workspace sees one schedule,
//! one pause and one breaker per pair.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, backend};
use crate::domain::Service;
use crate::store::StoreError;
use crate::store::rate::{RateChange, RateRow, RateStore};

/// Created on open when missing, so older workspaces gain it on their next use.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rate_rows (
    tenant_id TEXT NOT NULL,
    service TEXT NOT NULL,
    next_slot_ms INTEGER NOT NULL,
    paused_until_ms INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    open_until_ms INTEGER NOT NULL,
    probe_until_ms INTEGER NOT NULL,
    opened_total INTEGER NOT NULL,
    last_failure TEXT,
    PRIMARY KEY (tenant_id, service)
);
";

fn load(c: &Connection, tenant_id: &str, service: Service) -> Result<RateRow, StoreError> {
    c.query_row(
        "SELECT next_slot_ms, paused_until_ms, failures, open_until_ms, probe_until_ms, opened_total, last_failure \
         FROM rate_rows WHERE tenant_id = ?1 AND service = ?2",
        params![tenant_id, service.as_str()],
        |r| {
            Ok(RateRow {
                next_slot_ms: r.get(0)?,
                paused_until_ms: r.get(1)?,
                failures: r.get(2)?,
                open_until_ms: r.get(3)?,
                probe_until_ms: r.get(4)?,
                opened_total: r.get::<_, i64>(5)? as u64,
                last_failure: r.get(6)?,
            })
        },
    )
    .optional()
    .map_err(backend)
    .map(Option::unwrap_or_default)
}

fn store(c: &Connection, tenant_id: &str, service: Service, r: &RateRow) -> Result<(), StoreError> {
    c.execute(
        "INSERT OR REPLACE INTO rate_rows (tenant_id, service, next_slot_ms, paused_until_ms, failures, \
         open_until_ms, probe_until_ms, opened_total, last_failure) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
        params![
            tenant_id,
            service.as_str(),
            r.next_slot_ms,
            r.paused_until_ms,
            r.failures,
            r.open_until_ms,
            r.probe_until_ms,
            r.opened_total as i64,
            r.last_failure,
        ],
    )
    .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl RateStore for SqliteStore {
    async fn read_rate(&self, tenant_id: &str, service: Service) -> Result<RateRow, StoreError> {
        let tenant = tenant_id.to_string();
        self.read(move |c| load(c, &tenant, service)).await
    }

    async fn update_rate(
        &self,
        tenant_id: &str,
        service: Service,
        mut change: RateChange,
    ) -> Result<(RateRow, RateRow), StoreError> {
        let tenant = tenant_id.to_string();
        let writes = self.rate_writes.clone();
        self.write(move |tx| {
            let before = load(tx, &tenant, service)?;
            let mut after = before.clone();
            change(&mut after);
            if after != before {
                store(tx, &tenant, service, &after)?;
                writes.fetch_add(1, Ordering::Relaxed);
            }
            Ok((before, after))
        })
        .await
    }

    fn rate_writes(&self) -> u64 {
        self.rate_writes.load(Ordering::Relaxed)
    }
}
