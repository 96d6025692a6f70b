//! The cloud fleet's admission queue on SQLite: one row in `fleet_queue` holding the entries
//! as JSON and a version; a write checks the version inside one `BEGIN IMMEDIATE`
//! transaction, so two writers never both replace the same version.

use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, backend};
use crate::store::{FleetEntry, FleetQueue, StoreError};

/// Created on open when missing, so older workspaces gain it on their next use.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS fleet_queue (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    entries TEXT NOT NULL
);
";

fn load(c: &Connection) -> Result<FleetQueue, StoreError> {
    let row: Option<(i64, String)> = c
        .query_row(
            "SELECT version, entries FROM fleet_queue WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(backend)?;
    let Some((version, entries)) = row else {
        return Ok(FleetQueue::default());
    };
    let entries = serde_json::from_str(&entries)
        .map_err(|e| StoreError::Backend(format!("fleet_queue.entries: {e}")))?;
    Ok(FleetQueue {
        version: version as u64,
        entries,
    })
}

impl SqliteStore {
    pub(super) async fn read_fleet(&self) -> Result<FleetQueue, StoreError> {
        self.read(load).await
    }

    pub(super) async fn write_fleet(
        &self,
        entries: &[FleetEntry],
        expected: u64,
    ) -> Result<bool, StoreError> {
        let body = serde_json::to_string(entries).map_err(backend)?;
        self.write(move |tx| {
            if load(tx)?.version != expected {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO fleet_queue (id, version, entries) VALUES (1, ?1, ?2) \
                 ON CONFLICT(id) DO UPDATE SET version = excluded.version, entries = excluded.entries",
                params![(expected + 1) as i64, body],
            )
            .map_err(backend)?;
            Ok(true)
        })
        .await
    }
}
