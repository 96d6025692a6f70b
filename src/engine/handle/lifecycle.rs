//! What the handle adds around jobs for the console: auto-detection decisions (run on a
//! task of their own at a modest interval and after jobs end), stored alerts, sync markers,
//! a watched job's hints and verification results, and the transform and verify commands,
//! which run on tasks of their own so the snapshot keeps flowing while they work.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::time::Instant;

use super::HandleError;
use crate::config::Config;
use crate::domain::{Alert, ChunkVerification, Job, JobMeta, Service, SyncMarker};
use crate::engine::detect::Decision;
use crate::engine::ops::Refusal;
use crate::engine::{Engine, EngineError};
use crate::store::AlertFilter;
use crate::transform::{TransformMode, TransformRequest};

/// Stored alerts the snapshot carries, newest first: what fits the Health view many times
/// over, so a store with years of alerts does not grow every snapshot.
pub const ALERTS_SHOWN: usize = 200;

/// A watched job's lifecycle state from the store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobLifecycle {
    /// Its scheduling hints; `finalized_at` says when the hand-off (markers, canonical
    /// transform) was done.
    pub meta: Option<JobMeta>,
    /// The latest verification, in chunk order; empty if never verified.
    pub verification: Vec<ChunkVerification>,
}

/// Lifecycle facts read from the store at each refresh.
#[derive(Default)]
pub(super) struct Loaded {
    pub alerts: Vec<Alert>,
    pub markers: Vec<SyncMarker>,
    pub jobs: BTreeMap<String, JobLifecycle>,
    pub quota_waits: BTreeMap<String, DateTime<Utc>>,
    pub error: Option<String>,
}

/// Reads alerts, markers, the watched job's hints and verification, and which of `jobs` wait
/// for their API quota.
pub(super) async fn load(engine: &Engine, watched: Option<&str>, jobs: &[Job]) -> Loaded {
    let mut out = Loaded::default();
    let lc = engine.lifecycle();
    match crate::engine::quota::waits(lc.as_ref(), jobs).await {
        Ok(w) => out.quota_waits = w,
        Err(e) => out.error = Some(e.to_string()),
    }
    match lc.alerts(&AlertFilter::default()).await {
        Ok(mut a) => {
            a.truncate(ALERTS_SHOWN);
            out.alerts = a;
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    match lc.markers(None, None).await {
        Ok(m) => out.markers = m,
        Err(e) => out.error = Some(e.to_string()),
    }
    if let Some(id) = watched {
        let ids = [id.to_string()];
        let meta = lc.job_metas(&ids).await;
        let verification = lc.verification(id).await;
        match (meta, verification) {
            (Ok(meta), Ok(verification)) => {
                out.jobs.insert(
                    id.to_string(),
                    JobLifecycle {
                        meta: meta.into_iter().next(),
                        verification,
                    },
                );
            }
            (Err(e), _) | (_, Err(e)) => out.error = Some(e.to_string()),
        }
    }
    out
}

/// The latest auto-detection and when the next is due.
#[derive(Default)]
pub(super) struct Detection {
    pub decisions: Arc<Vec<Decision>>,
    pub at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// A detection task is running.
    running: bool,
    /// Something changed (a job started or ended): detect again at the next tick.
    stale: bool,
    last: Option<Instant>,
}

impl Detection {
    pub(super) fn mark_stale(&mut self) {
        self.stale = true;
    }

    /// Whether to start a detection now: none running, and stale or `every` has passed.
    pub(super) fn due(&self, every: Duration) -> bool {
        !self.running && (self.stale || self.last.is_none_or(|l| l.elapsed() >= every))
    }

    pub(super) fn started(&mut self) {
        self.running = true;
        self.stale = false;
        self.last = Some(Instant::now());
    }

    pub(super) fn finished(&mut self, result: Result<Vec<Decision>, EngineError>) {
        self.running = false;
        self.at = Some(Utc::now());
        match result {
            Ok(d) => {
                self.decisions = Arc::new(d);
                self.error = None;
            }
            // The last decisions stay on screen; the error says they may be old.
            Err(e) => self.error = Some(e.to_string()),
        }
    }
}

/// Canonical tables per service: what a transform of the service rebuilds.
pub(super) fn canonical_tables(config: &Config) -> BTreeMap<Service, Vec<String>> {
    let mut out: BTreeMap<Service, Vec<String>> = BTreeMap::new();
    for c in &config.canonical {
        for service in c.sources.keys() {
            out.entry(*service).or_default().push(c.table.clone());
        }
    }
    out
}

/// The transform of a tenant's service, checked now and run later; its key guards against
/// a second one at once.
pub(super) fn transform(
    engine: &Engine,
    tenant_id: &str,
    service: Service,
) -> Result<(String, BoxFuture<'static, Result<String, HandleError>>), HandleError> {
    let refused = |m: String| HandleError::Refused(Refusal::Invalid(m));
    let tenant = engine
        .config()
        .tenant(tenant_id)
        .map_err(|e| refused(e.to_string()))?;
    if !tenant.services.contains_key(&service) {
        return Err(refused(format!(
            "tenant {tenant_id} has no {service} service"
        )));
    }
    if !engine
        .config()
        .canonical
        .iter()
        .any(|c| c.sources.contains_key(&service))
    {
        return Err(refused(format!(
            "no canonical table is mapped from {service}"
        )));
    }
    let key = format!("transform {tenant_id}/{service}");
    let engine = engine.clone();
    let req = TransformRequest {
        tenant_id: tenant_id.to_string(),
        tables: Vec::new(),
        services: vec![service],
        mode: TransformMode::Full,
    };
    let work = Box::pin(async move {
        let started = std::time::Instant::now();
        let reports = engine.transform(&req).await.map_err(Refusal::from)?;
        let written: Vec<String> = reports
            .iter()
            .filter(|r| r.path.is_some())
            .map(|r| format!("{} {} version(s)", r.table, r.stats.versions))
            .collect();
        Ok(if written.is_empty() {
            format!(
                "nothing to transform: {} {service} has no raw data yet",
                req.tenant_id
            )
        } else {
            format!(
                "transformed {} {service}: {} in {:.1} s",
                req.tenant_id,
                written.join(", "),
                started.elapsed().as_secs_f64()
            )
        })
    });
    Ok((key, work))
}

/// The verification of a job, run later.
pub(super) fn verify(
    engine: &Engine,
    job_id: &str,
) -> (String, BoxFuture<'static, Result<String, HandleError>>) {
    let key = format!("verify {job_id}");
    let (engine, job_id) = (engine.clone(), job_id.to_string());
    let work = Box::pin(async move {
        let r = engine.verify(&job_id).await.map_err(Refusal::from)?;
        let short = r.chunks.iter().filter(|c| c.missing() > 0).count();
        let moved = if r.moved_since > 0 {
            format!(", {} moved to later windows since", r.moved_since)
        } else {
            String::new()
        };
        Ok(if r.ok {
            format!(
                "verified {job_id}: {} chunk(s), every record landed{moved}",
                r.chunks.len()
            )
        } else {
            format!(
                "verified {job_id}: {} record(s) missing in {short} of {} chunk(s){moved}",
                r.missing,
                r.chunks.len()
            )
        })
    });
    (key, work)
}
