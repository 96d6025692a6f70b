//! Auto-detection: which tenant services need a backfill, and why or why not.
//!
//! The design's four checks, in the order they decide: the service is configured (enabled,
//! credentials readable); it was re-enabled after being disabled (counts as new, whatever
//! the history says); no backfill of it has completed; and no raw data older than seven
//! days exists (younger data means it was connected only recently). The decision is a pure
//! function of those facts; `Engine::detect` gathers them.

use chrono::{DateTime, Duration, Utc};
use futures::TryStreamExt;
use object_store::path::{Path, PathPart};
use serde::Serialize;

use super::{Engine, EngineError, NoSource};
use crate::domain::{Job, JobKind, JobStatus, Service, ServiceState};
use crate::store::JobFilter;

/// Raw data younger than this means the service was connected only recently.
pub const FRESH_DAYS: i64 = 7;

/// What detection knows about one tenant's service.
#[derive(Clone, Debug)]
pub struct ServiceFacts {
    pub tenant_id: String,
    pub service: Service,
    pub enabled: bool,
    /// Why a client cannot be built from the configured credentials, if it cannot.
    pub credentials: Result<(), NoSource>,
    /// This tenant's jobs for this service.
    pub jobs: Vec<Job>,
    /// When the oldest raw object of the service was written.
    pub oldest_raw: Option<DateTime<Utc>>,
    pub state: Option<ServiceState>,
}

/// Which check decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Service configuration and credentials.
    Configured,
    /// Re-enabled after being disabled.
    Reenabled,
    /// Backfill history.
    History,
    /// Age of the raw data.
    Freshness,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub tenant_id: String,
    pub service: Service,
    pub selected: bool,
    pub check: Check,
    pub reason: String,
}

fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Decides for one tenant's service at `now`: the first check that has something to say.
pub fn decide(f: &ServiceFacts, now: DateTime<Utc>) -> Decision {
    let (selected, check, reason) = configured(f)
        .or_else(|| active_backfill(f))
        .or_else(|| reenabled(f))
        .or_else(|| completed_backfill(f))
        .unwrap_or_else(|| freshness(f.oldest_raw, now));
    Decision {
        tenant_id: f.tenant_id.clone(),
        service: f.service,
        selected,
        check,
        reason,
    }
}

/// Whether the service is selected, which check said so, and why.
type Verdict = (bool, Check, String);

/// A disabled service or unusable credentials rule the service out.
fn configured(f: &ServiceFacts) -> Option<Verdict> {
    if !f.enabled {
        return Some((
            false,
            Check::Configured,
            "disabled in the tenants registry".into(),
        ));
    }
    let e = f.credentials.as_ref().err()?;
    Some((
        false,
        Check::Configured,
        format!("credentials not usable: {e}"),
    ))
}

fn backfills(f: &ServiceFacts) -> impl Iterator<Item = &Job> {
    f.jobs
        .iter()
        .filter(|j| JobKind::of(&j.job_id) == JobKind::Backfill)
}

/// A backfill already under way rules out another.
fn active_backfill(f: &ServiceFacts) -> Option<Verdict> {
    let active = backfills(f).find(|j| j.status.is_active())?;
    Some((
        false,
        Check::History,
        format!("backfill {} is already {}", active.job_id, active.status),
    ))
}

/// Re-enabled after being disabled: counts as new, whatever the history says.
fn reenabled(f: &ServiceFacts) -> Option<Verdict> {
    let s = f.state.as_ref()?;
    let at = s.reenabled_at?;
    let since = s.last_disabled_at.map_or(String::new(), |d| {
        format!(" (last seen disabled {})", iso(d))
    });
    Some((
        true,
        Check::Reenabled,
        format!(
            "re-enabled {} after being disabled{since}: counts as new",
            iso(at)
        ),
    ))
}

/// A backfill that completed (with or without errors) rules out another.
fn completed_backfill(f: &ServiceFacts) -> Option<Verdict> {
    let done = backfills(f)
        .filter(|j| {
            matches!(
                j.status,
                JobStatus::Completed | JobStatus::CompletedWithErrors
            )
        })
        .max_by_key(|j| j.finished_at)?;
    Some((
        false,
        Check::History,
        format!(
            "backfill {} {} {}",
            done.job_id,
            done.status,
            done.finished_at.map_or("earlier".into(), iso)
        ),
    ))
}

/// Raw data older than `FRESH_DAYS` means the service was connected before.
fn freshness(oldest_raw: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Verdict {
    match oldest_raw {
        Some(t) if now - t > Duration::days(FRESH_DAYS) => (
            false,
            Check::Freshness,
            format!(
                "raw data since {} (older than {FRESH_DAYS} days): connected before, incremental sync owns it",
                iso(t)
            ),
        ),
        Some(t) => (
            true,
            Check::Freshness,
            format!(
                "no completed backfill and raw data only since {} (under {FRESH_DAYS} days): newly connected",
                iso(t)
            ),
        ),
        None => (
            true,
            Check::Freshness,
            "no completed backfill and no raw data: newly connected".into(),
        ),
    }
}

impl Engine {
    /// When the oldest raw object of a tenant's service was written, if any exists.
    pub async fn oldest_raw(
        &self,
        tenant_id: &str,
        service: Service,
    ) -> Result<Option<DateTime<Utc>>, EngineError> {
        let prefix = Path::from_iter([
            PathPart::from(tenant_id),
            PathPart::from("raw"),
            PathPart::from(service.as_str()),
        ]);
        let metas: Vec<_> = self
            .sink()
            .store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| EngineError::Other(format!("list {prefix}: {e}")))?;
        Ok(metas
            .iter()
            .filter(|m| m.location.as_ref().ends_with(".parquet"))
            .map(|m| m.last_modified)
            .min())
    }

    /// Gathers the facts for every tenant's service in the registry (recording each one's
    /// enablement in the lifecycle store) and decides, sorted by tenant and service.
    pub async fn detect(&self, now: DateTime<Utc>) -> Result<Vec<Decision>, EngineError> {
        let mut out = Vec::new();
        let jobs = self.store().list_jobs(&JobFilter::default()).await?;
        for tenant in &self.config().tenants.tenants {
            for (service, conn) in &tenant.services {
                let state = self
                    .lifecycle()
                    .observe_service(&tenant.tenant_id, *service, conn.enabled, now)
                    .await?;
                let credentials = if conn.enabled {
                    self.source(&tenant.tenant_id, *service).map(|_| ())
                } else {
                    Ok(())
                };
                let facts = ServiceFacts {
                    tenant_id: tenant.tenant_id.clone(),
                    service: *service,
                    enabled: conn.enabled,
                    credentials,
                    jobs: jobs
                        .iter()
                        .filter(|j| j.tenant_id == tenant.tenant_id && j.service == *service)
                        .cloned()
                        .collect(),
                    oldest_raw: self.oldest_raw(&tenant.tenant_id, *service).await?,
                    state: Some(state),
                };
                out.push(decide(&facts, now));
            }
        }
        out.sort_by(|a, b| (&a.tenant_id, a.service).cmp(&(&b.tenant_id, b.service)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Window;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn facts() -> ServiceFacts {
        ServiceFacts {
            tenant_id: "acme".into(),
            service: Service::Connectwise,
            enabled: true,
            credentials: Ok(()),
            jobs: Vec::new(),
            oldest_raw: None,
            state: None,
        }
    }

    fn job(id: &str, status: JobStatus) -> Job {
        Job {
            job_id: id.into(),
            tenant_id: "acme".into(),
            service: Service::Connectwise,
            tables: vec!["tickets".into()],
            status,
            window: Window::new(now() - Duration::days(30), now() - Duration::days(20)),
            chunk_size_days: 30,
            max_attempts: 3,
            total_chunks: 1,
            completed_chunks: 1,
            failed_chunks: 0,
            records: 10,
            created_at: now() - Duration::days(20),
            updated_at: now() - Duration::days(20),
            finished_at: Some(now() - Duration::days(19)),
            skipped_fields: Vec::new(),
        }
    }

    fn check(f: &ServiceFacts) -> (bool, Check, String) {
        let d = decide(f, now());
        (d.selected, d.check, d.reason)
    }

    #[test]
    fn credentials_must_be_configured() {
        let f = ServiceFacts {
            credentials: Err(NoSource::new(
                "credential field 'private_key' is missing or empty",
            )),
            ..facts()
        };
        let (selected, by, why) = check(&f);
        assert!(!selected);
        assert_eq!(by, Check::Configured);
        assert!(why.contains("private_key"), "{why}");
        let f = ServiceFacts {
            enabled: false,
            ..facts()
        };
        assert!(!check(&f).0);
        assert!(check(&f).2.contains("disabled"));
    }

    #[test]
    fn a_completed_backfill_in_history_means_not_new() {
        let mut f = facts();
        f.jobs = vec![job(
            "backfill_acme_connectwise_20260130",
            JobStatus::Completed,
        )];
        let (selected, by, why) = check(&f);
        assert!(!selected);
        assert_eq!(by, Check::History);
        assert!(
            why.contains("backfill_acme_connectwise_20260130 completed"),
            "{why}"
        );
        // A sync is not a backfill; an active backfill is reported as such.
        f.jobs = vec![
            job("sync_acme_connectwise_20260130000000", JobStatus::Completed),
            job("backfill_acme_connectwise_20260201", JobStatus::Running),
        ];
        let (selected, by, why) = check(&f);
        assert!(
            !selected && by == Check::History && why.contains("already running"),
            "{why}"
        );
    }

    #[test]
    fn raw_data_older_than_seven_days_means_connected_before() {
        let mut f = facts();
        f.oldest_raw = Some(now() - Duration::days(8));
        let (selected, by, why) = check(&f);
        assert!(!selected);
        assert_eq!(by, Check::Freshness);
        assert!(why.contains("older than 7 days"), "{why}");
        f.oldest_raw = Some(now() - Duration::days(6));
        let (selected, by, why) = check(&f);
        assert!(
            selected && by == Check::Freshness && why.contains("newly connected"),
            "{why}"
        );
        f.oldest_raw = None;
        let (selected, _, why) = check(&f);
        assert!(selected && why.contains("no raw data"), "{why}");
    }

    #[test]
    fn a_service_re_enabled_after_being_disabled_counts_as_new() {
        let mut f = facts();
        f.jobs = vec![job(
            "backfill_acme_connectwise_20260130",
            JobStatus::Completed,
        )];
        f.oldest_raw = Some(now() - Duration::days(90));
        f.state = Some(ServiceState {
            tenant_id: "acme".into(),
            service: Service::Connectwise,
            enabled: true,
            first_seen_at: now() - Duration::days(100),
            last_disabled_at: Some(now() - Duration::days(3)),
            reenabled_at: Some(now() - Duration::days(1)),
        });
        let (selected, by, why) = check(&f);
        assert!(selected);
        assert_eq!(by, Check::Reenabled);
        assert!(why.contains("re-enabled 2026-02-28T12:00:00Z"), "{why}");
        assert!(
            why.contains("last seen disabled 2026-02-26T12:00:00Z"),
            "{why}"
        );
    }
}
