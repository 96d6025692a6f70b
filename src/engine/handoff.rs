//! Hand-off to incremental sync: what happens when a job completes (markers move to its
//! frozen end, the canonical tables it feeds are rebuilt), sync jobs from the markers, and
//! the gap check between markers and the backfills they continue.
//!
//! When a job completes (`run_job` → `after_job` locally, `finish_job` on a cloud worker), one
//! runner of the job takes the hand-off claim (`LifecycleStore::claim_handoff`, renewed while
//! the steps run, lapsing after `HANDOFF_CLAIM` when its holder dies, at once when the holder
//! was a process of this host that is gone) and runs the steps, each idempotent: markers
//! advance to the job's frozen end (`advance_marker` refuses a sync that would leave a gap), a
//! completed backfill clears the service's "re-enabled" flag, the raw parts of the tenant's
//! service are compacted (`compact`; a failure is only logged), and the canonical tables fed by
//! the job's tables are rebuilt (`transform`). Only then is the job finalised
//! (`finalize_job`). A failure gives the claim back, raises a `handoff_failed` alert and is
//! reported in the run's outcome; until the job is finalised its hand-off is due
//! (`ops::handoff_due`): `run` and `resume` pick it up and `cleanup` keeps the job.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::executor::is_dead_local_owner;
use super::{Engine, EngineError, EngineEvent, planner};
use crate::domain::{Alert, AlertKind, Job, JobKind, JobStatus, Service, SyncMarker, Window};
use crate::store::{CreateOutcome, HandoffClaim, JobFilter, MarkerAdvance};
use crate::transform::{self, TransformMode, TransformReport, TransformRequest};

/// How long a hand-off claim holds without renewal: a crashed holder's claim lapses after
/// this (at once when it was a process of this host that is gone).
const HANDOFF_CLAIM: chrono::Duration = chrono::Duration::minutes(2);

/// What a job's hand-off came to in this call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "handoff", rename_all = "snake_case")]
pub enum Handoff {
    /// The job did not complete: nothing to hand off.
    NotDue,
    /// Done now.
    Finished,
    /// It was done before.
    Done,
    /// Another runner of the job is doing it; its claim lapses at `until`.
    Held { owner: String, until: DateTime<Utc> },
    /// It failed (the `handoff_failed` alert says so too); the next `run` or `resume` of
    /// the job does it again.
    Failed { error: String },
}

impl Handoff {
    /// What a claim that was not taken means for the caller; `None` when it was taken.
    fn unless_taken(claim: HandoffClaim) -> Option<Handoff> {
        match claim {
            HandoffClaim::Taken => None,
            HandoffClaim::Done => Some(Handoff::Done),
            HandoffClaim::Held { owner, until } => Some(Handoff::Held { owner, until }),
        }
    }
}

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
    pub async fn finish_job(&self, job_id: &str) -> Result<Handoff, EngineError> {
        let job = self.load_job(job_id).await?;
        self.after_job(&job).await
    }

    /// After a job completes: its tables' markers move to its frozen end and the canonical
    /// tables it feeds are rebuilt, by one runner of the job at a time (a hand-off claim,
    /// renewed while the steps run, lapsing when its holder dies). Every step is idempotent;
    /// a failure gives the claim back and raises a `handoff_failed` alert, and the next `run`
    /// or `resume` of the job does it again.
    pub(super) async fn after_job(&self, job: &Job) -> Result<Handoff, EngineError> {
        if job.status != JobStatus::Completed {
            return Ok(Handoff::NotDue);
        }
        let mut claim = self.claim_handoff(&job.job_id, None).await?;
        if let HandoffClaim::Held { owner, .. } = &claim
            && is_dead_local_owner(owner)
        {
            let dead = owner.clone();
            tracing::info!(job_id = %job.job_id, owner = %dead, "taking over the hand-off claim of a process that is gone");
            claim = self.claim_handoff(&job.job_id, Some(&dead)).await?;
        }
        if let Some(not_mine) = Handoff::unless_taken(claim) {
            return Ok(not_mine);
        }
        let renewal = self.renew_handoff(&job.job_id);
        let steps = self.handoff_steps(job).await;
        renewal.abort();
        let lc = self.lifecycle();
        match steps {
            Ok(()) => {
                lc.finalize_job(&job.job_id, Utc::now()).await?;
                Ok(Handoff::Finished)
            }
            Err(e) => {
                lc.release_handoff(&job.job_id, &self.options().owner)
                    .await?;
                self.raise_handoff_failed(job, &e).await;
                Err(e)
            }
        }
    }

    /// Takes the job's hand-off for this engine for `HANDOFF_CLAIM` from now.
    async fn claim_handoff(
        &self,
        job_id: &str,
        breaking: Option<&str>,
    ) -> Result<HandoffClaim, EngineError> {
        let now = Utc::now();
        let until = now + HANDOFF_CLAIM;
        Ok(self
            .lifecycle()
            .claim_handoff(job_id, &self.options().owner, now, until, breaking)
            .await?)
    }

    /// Renews this engine's hand-off claim every third of `HANDOFF_CLAIM` until aborted.
    fn renew_handoff(&self, job_id: &str) -> tokio::task::JoinHandle<()> {
        let (engine, job_id) = (self.clone(), job_id.to_string());
        tokio::spawn(async move {
            let every = (HANDOFF_CLAIM / 3).to_std().unwrap_or_default();
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = engine.claim_handoff(&job_id, None).await {
                    tracing::warn!(job_id = %job_id, error = %e, "hand-off claim not renewed");
                }
            }
        })
    }

    /// The hand-off's steps: markers, the re-enabled flag, the canonical transform.
    async fn handoff_steps(&self, job: &Job) -> Result<(), EngineError> {
        self.advance_markers(job).await?;
        let lc = self.lifecycle();
        if JobKind::of(&job.job_id) == JobKind::Backfill {
            lc.clear_reenabled(&job.tenant_id, job.service).await?;
        }
        self.compact_after(job).await;
        if !self.options().auto_transform {
            return Ok(());
        }
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
                mode: TransformMode::Incremental,
            })
            .await?;
        }
        Ok(())
    }

    /// Compacts the raw parts of the job's tenant and service (`compact`), when configured.
    /// A failure is logged and left to the next compaction: the rows are readable either way.
    async fn compact_after(&self, job: &Job) {
        if !self.options().auto_compact || !self.config().backfill.compaction.enabled {
            return;
        }
        let req = super::compact::CompactRequest {
            tenant_id: Some(job.tenant_id.clone()),
            service: Some(job.service),
            table: None,
            dry_run: false,
        };
        match self.compact(&req).await {
            Ok(tables) => {
                let files: usize = tables.iter().map(|t| t.compacted.len()).sum();
                tracing::info!(job_id = %job.job_id, compacted_files = files, "raw compaction done");
            }
            Err(e) => {
                tracing::warn!(job_id = %job.job_id, error = %e, "raw compaction failed; the next one does it");
            }
        }
    }

    /// A failed hand-off is an alert: the data landed, but markers or canonical tables lag.
    async fn raise_handoff_failed(&self, job: &Job, e: &EngineError) {
        let alert = Alert {
            kind: AlertKind::HandoffFailed,
            subject: job.job_id.clone(),
            tenant_id: job.tenant_id.clone(),
            service: job.service,
            job_id: Some(job.job_id.clone()),
            message: format!(
                "hand-off of {} failed: {e}; `resume {}` or the next `run` does it again",
                job.job_id, job.job_id
            ),
            value: 1.0,
            threshold: 0.0,
            raised_at: Utc::now(),
        };
        if let Err(e) = self.raise(alert).await {
            tracing::warn!(job_id = %job.job_id, error = %e, "hand-off alert not stored");
        }
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
