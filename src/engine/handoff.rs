//! Hand-off to incremental sync: what happens when a job completes (markers move to its
//! frozen end, the canonical tables it feeds are rebuilt), sync jobs from the markers, and
//! the gap check between markers and the backfills they continue.
//!
//! When a job completes (`run_job` → `after_job` locally, `finish_job` on a cloud worker), once
//! per job through `LifecycleStore::finalize_job`, every step idempotent so a retry after a crash
//! is safe: markers advance to the job's frozen end (`advance_marker` refuses a sync that would
//! leave a gap), a completed backfill clears the service's "re-enabled" flag, and the canonical
//! tables fed by the job's tables are rebuilt (`transform`). A failed step is logged and tried
//! again by the next run of the job; the data landed either way.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Engine, EngineError, EngineEvent, planner};
use crate::domain::{Alert, AlertKind, Job, JobKind, JobStatus, Service, SyncMarker, Window};
use crate::store::{CreateOutcome, JobFilter, MarkerAdvance};
use crate::transform::{self, TransformMode, TransformReport, TransformRequest};

/// A disagreement between a table's marker and the jobs that should have set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GapFinding {
    pub tenant_id: String,
    pub service: Service,
    pub table: String,
    pub job_id: Option<String>,
    /// The uncovered range, when one is known.
    pub gap: Option<Window>,
    pub reason: String,
}

/// Compares markers with completed jobs.
///
/// Flags: a completed backfill's table without a marker; a marker behind the end of the
/// backfill it names; a marker naming a backfill whose end differs from the job's frozen
/// end; a backfill that completed with errors (its failed chunks are gaps); and a chain of
/// completed syncs from the backfill's end that leaves a hole before the marker.
pub fn gap_check(markers: &[SyncMarker], jobs: &[Job]) -> Vec<GapFinding> {
    let backfills: Vec<&Job> = jobs
        .iter()
        .filter(|j| JobKind::of(&j.job_id) == JobKind::Backfill)
        .collect();
    let mut out = Vec::new();
    for j in &backfills {
        for table in &j.tables {
            let marker = markers.iter().find(|m| {
                m.tenant_id == j.tenant_id && m.service == j.service && m.table == *table
            });
            out.extend(backfill_gap(j, table, marker, &backfills));
        }
    }
    for m in markers {
        out.extend(chain_gaps(m, jobs));
    }
    out
}

/// What is wrong between one backfill's table and its marker, if anything.
fn backfill_gap(
    j: &Job,
    table: &str,
    marker: Option<&SyncMarker>,
    backfills: &[&Job],
) -> Option<GapFinding> {
    let finding = |gap: Option<Window>, reason: String| GapFinding {
        tenant_id: j.tenant_id.clone(),
        service: j.service,
        table: table.to_string(),
        job_id: Some(j.job_id.clone()),
        gap,
        reason,
    };
    let end = j.window.end;
    match (j.status, marker) {
        (JobStatus::Completed, None) => Some(finding(
            None,
            format!(
                "backfill completed at its end {} but the table has no sync marker",
                end.to_rfc3339()
            ),
        )),
        (JobStatus::Completed, Some(m)) if m.backfill_job.as_deref() == Some(&j.job_id) => {
            if m.backfill_end != Some(end) {
                Some(finding(
                    None,
                    format!(
                        "marker names this backfill with end {} but the job's frozen end is {}",
                        m.backfill_end.map_or("none".into(), |e| e.to_rfc3339()),
                        end.to_rfc3339()
                    ),
                ))
            } else if m.last_updated < end {
                Some(finding(
                    Some(Window::new(m.last_updated, end)),
                    format!(
                        "marker {} is behind the backfill's end {}",
                        m.last_updated.to_rfc3339(),
                        end.to_rfc3339()
                    ),
                ))
            } else {
                None
            }
        }
        (JobStatus::CompletedWithErrors, m)
            if m.is_none_or(|m| m.last_updated <= end) && !repaired(j, table, backfills) =>
        {
            Some(finding(
                None,
                format!(
                    "backfill completed with {} failed chunk(s): their windows are gaps and the marker was not moved (resume {} --retry-failed)",
                    j.failed_chunks, j.job_id
                ),
            ))
        }
        _ => None,
    }
}

/// A completed backfill of the same table covering at least the same range repairs one
/// that completed with errors.
fn repaired(j: &Job, table: &str, backfills: &[&Job]) -> bool {
    backfills.iter().any(|o| {
        o.status == JobStatus::Completed
            && o.tenant_id == j.tenant_id
            && o.service == j.service
            && o.tables.iter().any(|t| t == table)
            && o.window.start <= j.window.start
            && o.window.end >= j.window.end
    })
}

/// A marker's chain: its backfill's end, then completed syncs, must reach the marker.
fn chain_gaps(m: &SyncMarker, jobs: &[Job]) -> Vec<GapFinding> {
    let Some(bf_end) = m.backfill_end else {
        return Vec::new();
    };
    let mut syncs: Vec<Window> = jobs
        .iter()
        .filter(|j| {
            JobKind::of(&j.job_id) == JobKind::Sync
                && j.status == JobStatus::Completed
                && j.tenant_id == m.tenant_id
                && j.service == m.service
                && j.tables.contains(&m.table)
                && j.window.end > bf_end
        })
        .map(|j| j.window)
        .collect();
    syncs.sort_by_key(|w| (w.start, w.end));
    let mut out = Vec::new();
    let mut covered = bf_end;
    for w in syncs {
        if w.start > covered {
            out.push(GapFinding {
                tenant_id: m.tenant_id.clone(),
                service: m.service,
                table: m.table.clone(),
                job_id: None,
                gap: Some(Window::new(covered, w.start)),
                reason: format!(
                    "no completed backfill or sync covers [{}, {})",
                    covered.to_rfc3339(),
                    w.start.to_rfc3339()
                ),
            });
        }
        covered = covered.max(w.end);
    }
    out
}

impl Engine {
    /// Plans and stores a sync job for a tenant's service from its markers (or returns the
    /// active sync covering the same tables from the same marker). `Ok(None)`: up to date.
    pub async fn create_sync(
        &self,
        tenant_id: &str,
        service: Service,
        tables: &[String],
        now: DateTime<Utc>,
    ) -> Result<Option<CreateOutcome>, EngineError> {
        let markers = self
            .lifecycle()
            .markers(Some(tenant_id), Some(service))
            .await?;
        let plan = planner::plan_sync(self.config(), tenant_id, service, tables, &markers, now)?;
        if plan.tables.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.create_job(&plan, now).await?))
    }

    /// Rebuilds canonical tables from raw, reporting each one as an event.
    pub async fn transform(
        &self,
        req: &TransformRequest,
    ) -> Result<Vec<TransformReport>, EngineError> {
        let reports = match transform::run(self.config(), self.sink(), req).await {
            Ok(r) => r,
            Err(e) => {
                self.emit(EngineEvent::TransformFailed {
                    tenant_id: req.tenant_id.clone(),
                    error: e.to_string(),
                });
                return Err(e.into());
            }
        };
        for r in reports.iter().filter(|r| r.path.is_some()) {
            self.emit(EngineEvent::TransformFinished {
                tenant_id: r.tenant_id.clone(),
                service: r.service,
                table: r.table.clone(),
                versions: r.stats.versions,
                records: r.stats.records,
                duration_ms: r.duration_ms,
            });
        }
        Ok(reports)
    }

    /// The post-completion steps for a job run elsewhere (a cloud worker's transform step):
    /// markers and canonical transform when it completed, nothing otherwise. Idempotent.
    pub async fn finish_job(&self, job_id: &str) -> Result<(), EngineError> {
        let job = self.load_job(job_id).await?;
        self.after_job(&job).await
    }

    /// After a job completes: its tables' markers move to its frozen end and the canonical
    /// tables it feeds are rebuilt. Done once per job (a failed step is tried again by the
    /// next run of the job); every step is idempotent.
    pub(super) async fn after_job(&self, job: &Job) -> Result<(), EngineError> {
        if job.status != JobStatus::Completed {
            return Ok(());
        }
        let lc = self.lifecycle();
        let done = lc.job_metas(std::slice::from_ref(&job.job_id)).await?;
        if done.first().is_some_and(|m| m.finalized_at.is_some()) {
            return Ok(());
        }
        self.advance_markers(job).await?;
        if JobKind::of(&job.job_id) == JobKind::Backfill {
            lc.clear_reenabled(&job.tenant_id, job.service).await?;
        }
        if self.options().auto_transform {
            let tables: Vec<String> = job
                .tables
                .iter()
                .flat_map(|t| self.config().canonical_fed_by(job.service, t))
                .map(|c| c.table.clone())
                .collect();
            if !tables.is_empty() {
                self.transform(&TransformRequest {
                    tenant_id: job.tenant_id.clone(),
                    tables,
                    services: vec![job.service],
                    mode: TransformMode::Backfill,
                })
                .await?;
            }
        }
        lc.finalize_job(&job.job_id, Utc::now()).await?;
        Ok(())
    }

    async fn advance_markers(&self, job: &Job) -> Result<(), EngineError> {
        let lc = self.lifecycle();
        let kind = JobKind::of(&job.job_id);
        let mut starts: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        for c in self.store().chunks(&job.job_id).await? {
            let s = starts.entry(c.key.table.clone()).or_insert(c.window.start);
            *s = (*s).min(c.window.start);
        }
        for table in &job.tables {
            let adv = MarkerAdvance {
                tenant_id: job.tenant_id.clone(),
                service: job.service,
                table: table.clone(),
                job_id: job.job_id.clone(),
                kind,
                from: starts.get(table).copied().unwrap_or(job.window.start),
                to: job.window.end,
                now: Utc::now(),
            };
            let m = lc.advance_marker(&adv).await?;
            tracing::info!(tenant_id = %job.tenant_id, service = %job.service, table = %table,
                marker = %m.last_updated.to_rfc3339(), job_id = %job.job_id, "sync marker moved");
            self.emit(EngineEvent::MarkerAdvanced {
                tenant_id: job.tenant_id.clone(),
                service: job.service,
                table: table.clone(),
                last_updated: m.last_updated,
                job_id: job.job_id.clone(),
            });
        }
        Ok(())
    }

    /// Runs the gap check over the store (optionally one tenant) and raises a `sync_gap`
    /// alert per finding.
    pub async fn check_gaps(
        &self,
        tenant_id: Option<&str>,
    ) -> Result<Vec<GapFinding>, EngineError> {
        let lc = self.lifecycle();
        let markers = lc.markers(tenant_id, None).await?;
        let jobs = self
            .store()
            .list_jobs(&JobFilter {
                tenant_id: tenant_id.map(str::to_string),
                ..JobFilter::default()
            })
            .await?;
        let findings = gap_check(&markers, &jobs);
        for f in &findings {
            let subject = format!(
                "{}/{}/{}/{}",
                f.tenant_id,
                f.service,
                f.table,
                f.job_id.as_deref().unwrap_or("chain")
            );
            self.raise(Alert {
                kind: AlertKind::SyncGap,
                subject,
                tenant_id: f.tenant_id.clone(),
                service: f.service,
                job_id: f.job_id.clone(),
                message: format!("{} {} {}: {}", f.tenant_id, f.service, f.table, f.reason),
                value: 1.0,
                threshold: 0.0,
                raised_at: Utc::now(),
            })
            .await?;
        }
        Ok(findings)
    }
}
