//! Fixed data for the console's tests, snapshots and render benchmark: tenants, jobs of
//! every status, a job's chunks, health rows, log lines and a fake clock. No I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::app::App;
use super::logs::{Level, LogRecord};
use super::theme::Theme;
use super::update::{Msg, update};
use crate::domain::{
    Alert, AlertKind, Checkpoint, Chunk, ChunkKey, ChunkStatus, ChunkVerification, Job, JobMeta,
    JobStatus, Service, SyncMarker, Trigger, Window,
};
use crate::engine::BreakerState;
use crate::engine::EngineEvent;
use crate::engine::detect::{Check, Decision};
use crate::engine::handle::{JobLifecycle, RateHealth, ServiceInfo, Snapshot, TenantInfo};

/// The fake clock: 2026-01-15 12:00:00 UTC.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()
}

fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

pub fn tenants() -> Vec<TenantInfo> {
    let svc = |service, enabled| ServiceInfo { service, enabled };
    vec![
        TenantInfo {
            tenant_id: "acme".into(),
            display_name: "Acme Managed IT".into(),
            protected: false,
            services: vec![
                svc(Service::Connectwise, true),
                svc(Service::Servicenow, true),
            ],
        },
        TenantInfo {
            tenant_id: "globex".into(),
            display_name: "Globex Support Services".into(),
            protected: false,
            services: vec![
                svc(Service::Connectwise, true),
                svc(Service::Servicenow, true),
            ],
        },
        TenantInfo {
            tenant_id: "initech".into(),
            display_name: "Initech Helpdesk".into(),
            protected: false,
            services: vec![
                svc(Service::Connectwise, true),
                svc(Service::Salesforce, false),
            ],
        },
    ]
}

#[allow(clippy::too_many_arguments)]
fn job(
    tenant: &str,
    service: Service,
    start: DateTime<Utc>,
    status: JobStatus,
    total: u32,
    done: u32,
    failed: u32,
    records: u64,
    age_min: i64,
) -> Job {
    let created = now() - Duration::minutes(age_min);
    Job {
        job_id: format!("backfill_{tenant}_{service}_{}", start.format("%Y%m%d")),
        tenant_id: tenant.into(),
        service,
        tables: vec!["tickets".into(), "time_entries".into()],
        status,
        window: Window::new(start, start + Duration::days(30 * i64::from(total / 2))),
        chunk_size_days: 30,
        max_attempts: 3,
        total_chunks: total,
        completed_chunks: done,
        failed_chunks: failed,
        records,
        created_at: created,
        updated_at: created + Duration::minutes(1),
        finished_at: status
            .is_terminal()
            .then_some(created + Duration::minutes(9)),
        skipped_fields: Vec::new(),
    }
}

/// Six jobs, one of each status, newest first (as the store lists them).
pub fn demo_jobs() -> Vec<Job> {
    use JobStatus::*;
    use Service::*;
    vec![
        job(
            "acme",
            Connectwise,
            day(2024, 1, 1),
            Running,
            24,
            14,
            1,
            5_120,
            3,
        ),
        job(
            "globex",
            Servicenow,
            day(2025, 3, 1),
            Pending,
            20,
            0,
            0,
            0,
            5,
        ),
        job(
            "acme",
            Servicenow,
            day(2025, 1, 1),
            Paused,
            26,
            3,
            0,
            1_840,
            30,
        ),
        job(
            "initech",
            Connectwise,
            day(2024, 6, 1),
            CompletedWithErrors,
            20,
            18,
            2,
            48_200,
            90,
        ),
        job(
            "globex",
            Connectwise,
            day(2025, 1, 1),
            Completed,
            26,
            26,
            0,
            131_072,
            200,
        ),
        job(
            "initech",
            Salesforce,
            day(2023, 1, 1),
            Cancelled,
            40,
            5,
            0,
            900,
            600,
        ),
    ]
}

/// `n` jobs cycling through every status, for the benchmark.
pub fn many_jobs(n: usize) -> Vec<Job> {
    let statuses = [
        JobStatus::Running,
        JobStatus::Pending,
        JobStatus::Completed,
        JobStatus::CompletedWithErrors,
        JobStatus::Paused,
    ];
    (0..n)
        .map(|i| {
            let s = statuses[i % statuses.len()];
            let mut j = job(
                ["acme", "globex", "initech"][i % 3],
                Service::Connectwise,
                day(2020, 1, 1) + Duration::days(i as i64),
                s,
                10,
                (i % 11) as u32 % 10,
                u32::from(s == JobStatus::CompletedWithErrors),
                (i as u64) * 997,
                i as i64,
            );
            j.job_id = format!("{}_{i:05}", j.job_id);
            j
        })
        .collect()
}

/// The chunks of `job`: done, one failed with its error, one running, one retrying, pending.
pub fn chunks(job: &Job) -> Vec<Chunk> {
    let per_table = job.total_chunks as usize / job.tables.len().max(1);
    let mut out = Vec::new();
    for (ti, table) in job.tables.iter().enumerate() {
        for seq in 0..per_table {
            let start = job.window.start + Duration::days(30 * seq as i64);
            let mut c = Chunk::new(
                ChunkKey {
                    job_id: job.job_id.clone(),
                    table: table.clone(),
                    seq: seq as u32,
                },
                Window::new(start, start + Duration::days(30)),
            );
            let done_until = if ti == 0 { 9 } else { 5 };
            if seq < done_until {
                c.status = ChunkStatus::Succeeded;
                c.attempts = 1;
                c.checkpoint = Checkpoint {
                    cursor: None,
                    parts: 1,
                    records: 200 + seq as u64 * 13,
                    pages: 1,
                };
                c.started_at = Some(job.created_at + Duration::seconds(seq as i64 * 7));
                c.finished_at = Some(job.created_at + Duration::seconds(seq as i64 * 7 + 6));
            } else if ti == 0 && seq == 9 {
                c.status = ChunkStatus::Failed;
                c.attempts = 1;
                c.last_error = Some(format!(
                    "attempt 1/3, not retried: HTTP 400 is permanent: {} {} tickets: HTTP 400: \
                     Injected fault: window rejected (GET /v4_6_release/apis/3.0/service/tickets; \
                     request id 7f3e9c2a)",
                    job.tenant_id, job.service
                ));
                c.started_at = Some(job.created_at + Duration::seconds(70));
                c.finished_at = Some(job.created_at + Duration::seconds(71));
            } else if ti == 0 && seq == 10 {
                c.status = ChunkStatus::Running;
                c.attempts = 1;
                c.checkpoint.records = 120;
                c.started_at = Some(now() - Duration::seconds(12));
            } else if ti == 1 && seq == 5 {
                c.attempts = 1;
                c.last_error = Some("attempt 1/3: HTTP 503: Service Unavailable".into());
            }
            out.push(c);
        }
    }
    out
}

pub fn health() -> Vec<RateHealth> {
    let row = |tenant: &str, service, limit| RateHealth::idle(tenant, service, Some(limit));
    let mut acme = row("acme", Service::Connectwise, 200);
    acme.used_last_minute = 187;
    acme.last_429 = Some(now() - Duration::seconds(20));
    acme.retry_after_ms = Some(2000);
    acme.rate_limited_total = 3;
    let mut globex_sn = row("globex", Service::Servicenow, 100);
    globex_sn.breaker = BreakerState::Open;
    globex_sn.consecutive_failures = 5;
    globex_sn.breaker_reason = Some("HTTP 503: Service Unavailable".into());
    vec![
        acme,
        row("acme", Service::Servicenow, 100),
        row("globex", Service::Connectwise, 200),
        globex_sn,
        row("initech", Service::Connectwise, 200),
    ]
}

pub fn snapshot(jobs: Vec<Job>, watched: Option<&Job>) -> Snapshot {
    let recorded = pulse(&jobs);
    let mut chunk_map = BTreeMap::new();
    if let Some(j) = watched {
        chunk_map.insert(j.job_id.clone(), chunks(j));
    }
    let running: BTreeSet<String> = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Running)
        .take(1)
        .map(|j| j.job_id.clone())
        .collect();
    let mut tables = BTreeMap::new();
    tables.insert(
        Service::Connectwise,
        vec![
            "tickets".into(),
            "time_entries".into(),
            "companies".into(),
            "contacts".into(),
        ],
    );
    let mut canonical = BTreeMap::new();
    canonical.insert(
        Service::Connectwise,
        vec![
            "companies".into(),
            "contacts".into(),
            "tickets".into(),
            "time_entries".into(),
        ],
    );
    canonical.insert(
        Service::Servicenow,
        vec!["contacts".into(), "tickets".into()],
    );
    canonical.insert(
        Service::Salesforce,
        vec!["companies".into(), "contacts".into(), "tickets".into()],
    );
    let waiting: BTreeMap<String, String> = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Pending)
        .map(|j| {
            (
                j.job_id.clone(),
                "waits for the off-peak window (opens 2026-01-15 22:00 UTC)".to_string(),
            )
        })
        .collect();
    Snapshot {
        taken_at: Some(now()),
        jobs: Arc::new(jobs),
        chunks: Arc::new(chunk_map),
        running_here: Arc::new(running),
        tenants: Arc::new(tenants()),
        tables: Arc::new(tables),
        health: Arc::new(health()),
        error: None,
        detection: Arc::new(detection()),
        detected_at: Some(now() - Duration::seconds(12)),
        detection_error: None,
        alerts: Arc::new(alerts()),
        markers: Arc::new(markers()),
        lifecycle: Arc::new(BTreeMap::new()),
        quota_waits: Arc::new(BTreeMap::new()),
        waiting: Arc::new(waiting),
        canonical: Arc::new(canonical),
        pulse: Arc::new(recorded),
        runners: Arc::new(BTreeMap::new()),
    }
}

/// Recorded counters of the running jobs (and the two newest others) over the pulse window,
/// as the engine builds the pulse from them: steady pages near a 200/min limit, a job that
/// started four minutes ago, two refusals for a rate limit.
pub fn pulse(jobs: &[Job]) -> crate::engine::pulse::Pulse {
    use crate::engine::pulse::{BUCKETS, build};
    use crate::store::pulse::BUCKET_SECS;
    use crate::store::{PulseCounts, PulseRow};
    let now_secs = now().timestamp();
    let first = crate::store::pulse::bucket_of(now_secs) - (BUCKETS as i64 - 1) * BUCKET_SECS;
    let mut rows = Vec::new();
    let recent = jobs
        .iter()
        .filter(|j| j.status != JobStatus::Running)
        .take(2);
    let shown = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Running)
        .chain(recent);
    for (k, j) in shown.enumerate() {
        let from = if k % 3 == 1 { BUCKETS - 24 } else { 0 };
        for b in from..BUCKETS {
            let requests = 8 + ((b * 7 + k * 5) % 10) as u64 / (1 + k as u64 % 2);
            rows.push(PulseRow {
                tenant_id: j.tenant_id.clone(),
                service: j.service,
                job_id: j.job_id.clone(),
                bucket: first + b as i64 * BUCKET_SECS,
                counts: PulseCounts {
                    requests,
                    rate_limited: u64::from(k == 0 && b == 40) * 2,
                    records: requests * 100 - (b as u64 % 4) * 30,
                },
            });
        }
    }
    build(&rows, jobs, now_secs, |_, _| Some(200), |_| 100)
}

/// What auto-detection says of each demo tenant's service: one decision per check.
pub fn detection() -> Vec<Decision> {
    let d = |tenant: &str, service, selected, check, reason: &str| Decision {
        tenant_id: tenant.into(),
        service,
        selected,
        check,
        reason: reason.into(),
    };
    vec![
        d(
            "acme",
            Service::Connectwise,
            false,
            Check::History,
            "backfill backfill_acme_connectwise_20240101 is already running",
        ),
        d(
            "acme",
            Service::Servicenow,
            false,
            Check::Configured,
            "credentials not usable: credential field 'password' is missing or empty",
        ),
        d(
            "globex",
            Service::Connectwise,
            false,
            Check::History,
            "backfill backfill_globex_connectwise_20250101 completed 2026-01-15T08:49:00Z",
        ),
        d(
            "globex",
            Service::Servicenow,
            false,
            Check::History,
            "backfill backfill_globex_servicenow_20250301 is already pending",
        ),
        d(
            "initech",
            Service::Connectwise,
            true,
            Check::Reenabled,
            "re-enabled 2026-01-14T09:00:00Z after being disabled (last seen disabled \
             2026-01-10T09:00:00Z): counts as new",
        ),
        d(
            "initech",
            Service::Salesforce,
            false,
            Check::Configured,
            "disabled in the tenants registry",
        ),
    ]
}

/// Stored alerts, newest first: a low completion rate and the gap it leaves.
pub fn alerts() -> Vec<Alert> {
    let job = "backfill_initech_connectwise_20240601";
    vec![
        Alert {
            kind: AlertKind::SyncGap,
            subject: format!("initech/connectwise/tickets/{job}"),
            tenant_id: "initech".into(),
            service: Service::Connectwise,
            job_id: Some(job.into()),
            message: format!(
                "initech connectwise tickets: backfill completed with 2 failed chunk(s): their \
                 windows are gaps and the marker was not moved (resume {job} --retry-failed)"
            ),
            value: 1.0,
            threshold: 0.0,
            raised_at: now() - Duration::minutes(80),
        },
        Alert {
            kind: AlertKind::LowCompletionRate,
            subject: job.into(),
            tenant_id: "initech".into(),
            service: Service::Connectwise,
            job_id: Some(job.into()),
            message: format!(
                "{job}: 90 % of finished chunks succeeded (18 of 20; alert below 95 %)"
            ),
            value: 0.9,
            threshold: 0.95,
            raised_at: now() - Duration::minutes(81),
        },
    ]
}

/// The completed globex backfill handed its tables to incremental sync.
pub fn markers() -> Vec<SyncMarker> {
    let job = demo_jobs()
        .into_iter()
        .find(|j| j.status == JobStatus::Completed)
        .expect("a completed demo job");
    job.tables
        .iter()
        .map(|t| SyncMarker {
            tenant_id: job.tenant_id.clone(),
            service: job.service,
            table: t.clone(),
            last_updated: job.window.end,
            set_by_job: job.job_id.clone(),
            backfill_job: Some(job.job_id.clone()),
            backfill_end: Some(job.window.end),
            updated_at: job.finished_at.unwrap_or(job.created_at),
        })
        .collect()
}

/// The demo snapshot watching the completed globex backfill: every chunk done, handed off,
/// and verified with one chunk short of the source's count and one that moved since.
pub fn handed_off_snapshot() -> Snapshot {
    let jobs = demo_jobs();
    let job = jobs
        .iter()
        .find(|j| j.status == JobStatus::Completed)
        .cloned()
        .expect("a completed demo job");
    let mut snap = snapshot(jobs, None);
    let chunks: Vec<Chunk> = chunks(&job)
        .into_iter()
        .map(|mut c| {
            c.status = ChunkStatus::Succeeded;
            c.attempts = 1;
            c.last_error = None;
            c.checkpoint.records = 200 + u64::from(c.key.seq) * 13;
            c.started_at = Some(job.created_at + Duration::seconds(i64::from(c.key.seq) * 7));
            c.finished_at = c.started_at.map(|s| s + Duration::seconds(6));
            c
        })
        .collect();
    let verified_at = now() - Duration::minutes(2);
    let verification = chunks
        .iter()
        .map(|c| {
            let landed = c.checkpoint.records;
            let source_count = match (c.key.table.as_str(), c.key.seq) {
                ("tickets", 4) => landed + 2,
                ("time_entries", 7) => landed - 1,
                _ => landed,
            };
            ChunkVerification {
                key: c.key.clone(),
                window: c.window,
                source_count,
                landed,
                verified_at,
            }
        })
        .collect();
    let mut chunk_map = BTreeMap::new();
    chunk_map.insert(job.job_id.clone(), chunks);
    snap.chunks = Arc::new(chunk_map);
    let mut lifecycle = BTreeMap::new();
    lifecycle.insert(
        job.job_id.clone(),
        JobLifecycle {
            meta: Some(JobMeta {
                job_id: job.job_id.clone(),
                priority: 1,
                trigger: Trigger::Manual,
                wait_off_peak: false,
                finalized_at: job.finished_at.map(|f| f + Duration::seconds(4)),
                quota_wait_until: None,
            }),
            verification,
        },
    );
    snap.lifecycle = Arc::new(lifecycle);
    snap
}

/// Log line `i` of a steady stream: mostly progress, some warnings, an error now and then.
pub fn log_line(i: usize, job_id: &str) -> LogRecord {
    let t = now() - Duration::seconds(600) + Duration::milliseconds(i as i64 * 250);
    let seq = (i / 20 % 12) as u32;
    let (level, text) = match i % 50 {
        49 => (
            Level::Error,
            format!(
                "chunk failed error=attempt 3/3: HTTP 400: Injected fault job_id={job_id} table=tickets seq={seq}"
            ),
        ),
        13 | 37 => (
            Level::Warn,
            format!(
                "page request failed; retrying tenant_id=acme table=tickets error=HTTP 503 wait_ms=500 seq={seq}"
            ),
        ),
        _ => (
            Level::Info,
            format!(
                "chunk started job_id={job_id} table=tickets seq={seq} window=[2024-01-01T00:00:00Z, 2024-01-31T00:00:00Z) attempt=1"
            ),
        ),
    };
    LogRecord {
        time: t.format("%H:%M:%S").to_string().into(),
        level,
        text: text.into(),
        job_id: Some(job_id.into()),
        table: Some("tickets".into()),
        seq: Some(seq),
    }
}

/// A console with the demo data loaded, on the Tenants view, at 120x40 unless resized.
pub fn app(theme: Theme) -> App {
    let jobs = demo_jobs();
    let watched = jobs[0].clone();
    let mut app = App::new(theme, false, now());
    app.logs.source_name = "/ws/logs/engine.jsonl".into();
    update(
        &mut app,
        Msg::Snapshot(Arc::new(snapshot(jobs, Some(&watched)))),
    );
    // Ten seconds of progress on the running job, for its rates and ETA.
    for s in 0..10u32 {
        let at = now() - Duration::seconds(10 - i64::from(s));
        let key = ChunkKey {
            job_id: watched.job_id.clone(),
            table: "tickets".into(),
            seq: 10,
        };
        let progress = EngineEvent::ChunkProgress {
            key: key.clone(),
            records: u64::from(s + 1) * 100,
            pages: s + 1,
            parts: s + 1,
            bytes: 0,
        };
        update(
            &mut app,
            Msg::Engine {
                event: progress,
                at,
            },
        );
        if s % 3 == 0 {
            let done = EngineEvent::ChunkFinished {
                key: ChunkKey { seq: s, ..key },
                status: ChunkStatus::Succeeded,
                records: 100,
                duration_ms: 900,
                error: None,
            };
            update(&mut app, Msg::Engine { event: done, at });
        }
    }
    update(
        &mut app,
        Msg::Logs((0..200).map(|i| log_line(i, &watched.job_id)).collect()),
    );
    app.status = None;
    app
}
