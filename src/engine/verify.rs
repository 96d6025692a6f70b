//! Post-backfill verification: per table and chunk, the records that landed in the chunk's
//! raw parts against the source's own count of the chunk's window (ConnectWise `/count`,
//! ServiceNow `X-Total-Count`, Salesforce `totalSize`).
//!
//! Fewer landed than the source holds means records are missing. More landed means records
//! were edited after they were read: their new versions sit in later windows (a sync).

use std::collections::HashSet;

use arrow_array::{Array, Int64Array, StringArray, TimestampMicrosecondArray};
use chrono::Utc;
use object_store::ObjectStoreExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use super::policy::fetch_with_policy;
use super::{Engine, EngineError};
use crate::config::EndpointDef;
use crate::domain::{Chunk, ChunkVerification, Job, Service};
use crate::sink::META_COLUMNS;

#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub job_id: String,
    pub tenant_id: String,
    pub service: Service,
    pub chunks: Vec<ChunkVerification>,
    /// Chunks whose window the source could not count (after the retries the backfill's
    /// requests get), with why: they are not verified, the others are.
    pub uncounted: Vec<Uncounted>,
    /// Records the source holds that did not land, over all chunks.
    pub missing: u64,
    /// Records landed that the source has since moved to later windows.
    pub moved_since: u64,
    /// Every chunk was counted and landed at least what the source holds.
    pub ok: bool,
}

/// A chunk whose window the source could not count.
#[derive(Clone, Debug, Serialize)]
pub struct Uncounted {
    pub key: crate::domain::ChunkKey,
    pub window: crate::domain::Window,
    pub error: String,
}

/// Distinct `(id, update time)` rows of `bytes` (a raw part or a compacted file) written for
/// the chunk's window (`_avesa_chunk_start`/`_avesa_chunk_end`) and inside it.
fn landed_keys(
    bytes: bytes::Bytes,
    endpoint: &EndpointDef,
    chunk: &Chunk,
    into: &mut HashSet<(String, i64)>,
    origin: &str,
) -> Result<(), EngineError> {
    let err = |e: &dyn std::fmt::Display| EngineError::Other(format!("{origin}: {e}"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| err(&e))?;
    let (chunk_start, chunk_end) = (META_COLUMNS[4], META_COLUMNS[5]);
    let wanted = [
        endpoint.id_field.as_str(),
        endpoint.incremental_field.as_str(),
        chunk_start,
        chunk_end,
    ];
    let roots: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| wanted.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let (lo, hi) = (
        chunk.window.start.timestamp_micros(),
        chunk.window.end.timestamp_micros(),
    );
    for batch in builder.with_projection(mask).build().map_err(|e| err(&e))? {
        let batch = batch.map_err(|e| err(&e))?;
        let (Some(id), Some(upd)) = (
            batch.column_by_name(&endpoint.id_field),
            batch
                .column_by_name(&endpoint.incremental_field)
                .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>()),
        ) else {
            return Err(err(&"the id or update-time column is missing"));
        };
        // A compacted file holds other windows' rows too: only the chunk's own count.
        let window_col = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
                .ok_or_else(|| err(&format!("the {name} column is missing")))
        };
        let (starts, ends) = (window_col(chunk_start)?, window_col(chunk_end)?);
        let (w_start, w_end) = (
            chunk.window.start.timestamp_micros(),
            chunk.window.end.timestamp_micros(),
        );
        let text = |i: usize| -> String {
            if let Some(n) = id.as_any().downcast_ref::<Int64Array>() {
                n.value(i).to_string()
            } else if let Some(s) = id.as_any().downcast_ref::<StringArray>() {
                s.value(i).to_string()
            } else {
                String::new()
            }
        };
        for i in 0..batch.num_rows() {
            if id.is_null(i)
                || upd.is_null(i)
                || starts.value(i) != w_start
                || ends.value(i) != w_end
            {
                continue;
            }
            let t = upd.value(i);
            if lo <= t && t < hi {
                into.insert((text(i), t));
            }
        }
    }
    Ok(())
}

impl Engine {
    /// Distinct `(id, update time)` rows in the chunk's raw parts, inside its window.
    async fn landed(
        &self,
        job: &Job,
        chunk: &Chunk,
        endpoint: &EndpointDef,
    ) -> Result<u64, EngineError> {
        let store = self.sink().store();
        let mut keys = HashSet::new();
        for path in self
            .sink()
            .chunk_parts(&job.tenant_id, job.service, &chunk.key.table, &chunk.window)
            .await?
        {
            let bytes = store
                .get(&path)
                .await
                .map_err(|e| EngineError::Other(format!("get {path}: {e}")))?
                .bytes()
                .await
                .map_err(|e| EngineError::Other(format!("read {path}: {e}")))?;
            landed_keys(bytes, endpoint, chunk, &mut keys, path.as_ref())?;
        }
        Ok(keys.len() as u64)
    }

    /// Counts what landed per chunk of `job_id` against the source's count, stores the
    /// results and returns them.
    pub async fn verify(&self, job_id: &str) -> Result<VerifyReport, EngineError> {
        let job: Job = self.load_job(job_id).await?;
        let source = self.source(&job.tenant_id, job.service).map_err(|e| {
            EngineError::Other(format!("tenant '{}' {}: {e}", job.tenant_id, job.service))
        })?;
        let mut results = Vec::new();
        let mut uncounted = Vec::new();
        for chunk in self.store().chunks(job_id).await? {
            let endpoint = self
                .config()
                .endpoints(job.service)
                .and_then(|e| e.find(&chunk.key.table))
                .cloned()
                .ok_or_else(|| {
                    EngineError::Other(format!(
                        "table '{}' is no longer defined for {}",
                        chunk.key.table, job.service
                    ))
                })?;
            let landed = self.landed(&job, &chunk, &endpoint).await?;
            let counted =
                fetch_with_policy(self, &job.tenant_id, job.service, &chunk.key.table, || {
                    source.count(&endpoint, &chunk.window)
                })
                .await;
            let source_count = match counted {
                Ok(n) => n,
                Err(e) => {
                    let error = format!(
                        "{} {} count of {} {}: {e}",
                        job.tenant_id, job.service, chunk.key.table, chunk.window
                    );
                    tracing::warn!(job_id, chunk = %chunk.key, %error, "window not counted; the others are verified");
                    uncounted.push(Uncounted {
                        key: chunk.key.clone(),
                        window: chunk.window,
                        error,
                    });
                    continue;
                }
            };
            results.push(ChunkVerification {
                key: chunk.key.clone(),
                window: chunk.window,
                source_count,
                landed,
                verified_at: Utc::now(),
            });
        }
        self.lifecycle().save_verification(job_id, &results).await?;
        let missing = results.iter().map(ChunkVerification::missing).sum();
        let moved_since = results.iter().map(ChunkVerification::moved_since).sum();
        tracing::info!(
            job_id,
            chunks = results.len(),
            uncounted = uncounted.len(),
            missing,
            moved_since,
            "verification done"
        );
        Ok(VerifyReport {
            job_id: job.job_id,
            tenant_id: job.tenant_id,
            service: job.service,
            chunks: results,
            ok: missing == 0 && uncounted.is_empty(),
            uncounted,
            missing,
            moved_since,
        })
    }
}
