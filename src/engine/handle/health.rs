//! Rate health per tenant + service for the snapshot: the configured pace, pages in the
//! last minute, the last 429 and its Retry-After, and the breaker, kept from engine events.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::RateHealth;
use crate::config::Config;
use crate::domain::{Job, Service};
use crate::engine::EngineEvent;

/// A tenant's service.
type Pair = (String, Service);

/// Health bookkeeping per tenant + service.
#[derive(Default)]
pub(super) struct HealthBook {
    rows: BTreeMap<(String, Service), RateHealth>,
    /// Pages seen per pair with their time, for the last minute's count.
    pages: HashMap<Pair, Vec<(DateTime<Utc>, u32)>>,
    /// Last page count per chunk, to turn cumulative progress into deltas.
    chunk_pages: HashMap<(String, String, u32), u32>,
}

impl HealthBook {
    pub(super) fn new(config: &Config) -> HealthBook {
        let mut book = HealthBook::default();
        for t in &config.tenants.tenants {
            for s in t.services.keys() {
                book.rows.insert(
                    (t.tenant_id.clone(), *s),
                    RateHealth::idle(
                        &t.tenant_id,
                        *s,
                        config.backfill.rate_limit_per_minute(&t.tenant_id, *s),
                    ),
                );
            }
        }
        book
    }

    fn row(&mut self, tenant: &str, service: Service) -> &mut RateHealth {
        self.rows
            .entry((tenant.to_string(), service))
            .or_insert_with(|| RateHealth::idle(tenant, service, None))
    }

    pub(super) fn record(&mut self, event: &EngineEvent, jobs: &[Job], now: DateTime<Utc>) {
        match event {
            EngineEvent::RateLimited {
                tenant_id,
                service,
                retry_after_ms,
            } => {
                let row = self.row(tenant_id, *service);
                row.last_429 = Some(now);
                row.retry_after_ms = Some(*retry_after_ms);
                row.rate_limited_total += 1;
            }
            EngineEvent::BreakerChanged {
                tenant_id,
                service,
                state,
                consecutive_failures,
                reason,
            } => {
                let row = self.row(tenant_id, *service);
                row.breaker = *state;
                row.consecutive_failures = *consecutive_failures;
                row.breaker_reason = reason.clone();
            }
            EngineEvent::ServerUsage {
                tenant_id,
                service,
                used,
                limit,
                ..
            } => {
                let row = self.row(tenant_id, *service);
                row.server_used = *used;
                row.server_limit = Some(*limit);
            }
            EngineEvent::ChunkProgress { key, pages, .. } => {
                let Some(job) = jobs.iter().find(|j| j.job_id == key.job_id) else {
                    return;
                };
                let last = self
                    .chunk_pages
                    .insert((key.job_id.clone(), key.table.clone(), key.seq), *pages)
                    .unwrap_or(0);
                let delta = pages.saturating_sub(last);
                if delta > 0 {
                    self.pages
                        .entry((job.tenant_id.clone(), job.service))
                        .or_default()
                        .push((now, delta));
                }
            }
            _ => {}
        }
    }

    pub(super) fn rows(&mut self, now: DateTime<Utc>) -> Vec<RateHealth> {
        let minute_ago = now - chrono::Duration::seconds(60);
        for (pair, samples) in &mut self.pages {
            samples.retain(|(t, _)| *t > minute_ago);
            let used: u32 = samples.iter().map(|(_, n)| n).sum();
            if let Some(row) = self.rows.get_mut(pair) {
                row.used_last_minute = used;
            }
        }
        self.rows.values().cloned().collect()
    }
}
