//! What the console knows about the lifecycle around jobs beyond the snapshot: marker moves,
//! transforms and alerts as the engine announces them, the off-peak waits it tells of, and
//! the transforms and verifications this console asked for and has no answer to yet.
//!
//! Events arrive before the next snapshot says the same from the store, so the screen moves
//! at once; the store stays the record (markers, finalisation, alerts, results).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Utc};

use super::StatusKind;
use crate::domain::{Alert, AlertKind, Service};
use crate::engine::EngineEvent;

/// Live alerts kept (the store keeps them all; these only bridge until the next snapshot).
const LIVE_ALERTS: usize = 100;

/// One canonical table rebuilt, as a `TransformFinished` event said.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformDone {
    pub versions: u64,
    pub records: u64,
    pub duration_ms: u64,
    pub at: DateTime<Utc>,
}

/// A marker moved, as a `MarkerAdvanced` event said.
#[derive(Clone, Debug, PartialEq)]
pub struct MarkerMove {
    pub last_updated: DateTime<Utc>,
    pub job_id: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lifecycle {
    /// (tenant, service, table) → the latest move.
    pub markers: BTreeMap<(String, Service, String), MarkerMove>,
    /// (tenant, service) → canonical table → the latest rebuild.
    pub transforms: BTreeMap<(String, Service), BTreeMap<String, TransformDone>>,
    /// Tenant → the last transform failure and when (events name no service).
    pub transform_failed: BTreeMap<String, (String, DateTime<Utc>)>,
    /// Transforms this console asked for, not answered yet.
    pub transforming: BTreeSet<(String, Service)>,
    /// Jobs this console asked to verify, not answered yet.
    pub verifying: BTreeSet<String>,
    /// Alerts raised while the console runs, newest first.
    pub live_alerts: VecDeque<Alert>,
    /// Jobs waiting for the off-peak window → when it opens and when we heard.
    pub deferred: BTreeMap<String, (DateTime<Utc>, DateTime<Utc>)>,
}

impl Lifecycle {
    /// Takes in a lifecycle event; returns what the status bar should say, if anything.
    pub fn on_event(
        &mut self,
        event: &EngineEvent,
        at: DateTime<Utc>,
    ) -> Option<(StatusKind, String)> {
        match event {
            EngineEvent::MarkerAdvanced {
                tenant_id,
                service,
                table,
                last_updated,
                job_id,
            } => {
                self.markers.insert(
                    (tenant_id.clone(), *service, table.clone()),
                    MarkerMove {
                        last_updated: *last_updated,
                        job_id: job_id.clone(),
                        at,
                    },
                );
                None
            }
            EngineEvent::TransformFinished {
                tenant_id,
                service,
                table,
                versions,
                records,
                duration_ms,
            } => {
                self.transform_failed.remove(tenant_id);
                self.transforms
                    .entry((tenant_id.clone(), *service))
                    .or_default()
                    .insert(
                        table.clone(),
                        TransformDone {
                            versions: *versions,
                            records: *records,
                            duration_ms: *duration_ms,
                            at,
                        },
                    );
                None
            }
            EngineEvent::TransformFailed { tenant_id, error } => {
                self.transform_failed
                    .insert(tenant_id.clone(), (error.clone(), at));
                Some((
                    StatusKind::Error,
                    format!("transform of {tenant_id} failed: {error}"),
                ))
            }
            EngineEvent::Alert { alert } => {
                self.live_alerts
                    .retain(|a| (a.kind, &a.subject) != (alert.kind, &alert.subject));
                self.live_alerts.push_front(alert.clone());
                self.live_alerts.truncate(LIVE_ALERTS);
                Some((severity(alert.kind), format!("alert: {}", alert.message)))
            }
            EngineEvent::JobDeferred { job_id, until } => {
                self.deferred.insert(job_id.clone(), (*until, at));
                Some((
                    StatusKind::Info,
                    format!(
                        "job {job_id} waits for the off-peak window (opens {} UTC)",
                        until.format("%Y-%m-%d %H:%M")
                    ),
                ))
            }
            _ => None,
        }
    }

    /// Stored alerts with the live ones not stored yet, newest first, once per kind and
    /// subject (as the store keeps them).
    pub fn alerts<'a>(&'a self, stored: &'a [Alert]) -> Vec<&'a Alert> {
        let mut out: Vec<&Alert> = stored.iter().collect();
        for a in &self.live_alerts {
            if !stored
                .iter()
                .any(|s| (s.kind, &s.subject) == (a.kind, &a.subject))
            {
                out.push(a);
            }
        }
        out.sort_by_key(|a| std::cmp::Reverse(a.raised_at));
        out
    }

    /// The off-peak wait of a job as an event told it, unless a snapshot taken since says
    /// the job no longer waits.
    pub fn settle(&mut self, waiting: &BTreeMap<String, String>, taken_at: Option<DateTime<Utc>>) {
        self.deferred.retain(|id, (_, heard)| {
            waiting.contains_key(id) || taken_at.is_none_or(|t| t < *heard)
        });
    }
}

/// How loud an alert is: gaps in the data, chunks given up on and a failed hand-off are
/// errors; runs of failures and long runs are warnings (they may still end well).
pub fn severity(kind: AlertKind) -> StatusKind {
    match kind {
        AlertKind::SyncGap | AlertKind::LowCompletionRate | AlertKind::HandoffFailed => {
            StatusKind::Error
        }
        AlertKind::ConsecutiveChunkFailures | AlertKind::LongRunningJob => StatusKind::Warn,
    }
}
