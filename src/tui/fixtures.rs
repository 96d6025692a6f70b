//! Fixed data for the console's tests, snapshots and render benchmark: tenants, jobs of
//! every status, a job's chunks, health rows, log lines and a fake clock. No I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::app::App;
use super::logs::{Level, LogRecord};
use super::theme::Theme;
use super::update::{Msg, update};
use crate::domain::{Checkpoint, Chunk, ChunkKey, ChunkStatus, Job, JobStatus, Service, Window};
use crate::engine::BreakerState;
use crate::engine::EngineEvent;
use crate::engine::handle::{RateHealth, ServiceInfo, Snapshot, TenantInfo};

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
            services: vec![
                svc(Service::Connectwise, true),
                svc(Service::Servicenow, true),
            ],
        },
        TenantInfo {
            tenant_id: "globex".into(),
            display_name: "Globex Support Services".into(),
            services: vec![
                svc(Service::Connectwise, true),
                svc(Service::Servicenow, true),
            ],
        },
        TenantInfo {
            tenant_id: "initech".into(),
            display_name: "Initech Helpdesk".into(),
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
                c.attempts = 3;
                c.last_error = Some(format!(
                    "attempt 3/3: {} {} tickets: HTTP 400: Injected fault: window rejected",
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
    let row = |tenant: &str, service, limit| RateHealth {
        tenant_id: tenant.into(),
        service,
        limit_per_minute: Some(limit),
        used_last_minute: 0,
        server_used: None,
        server_limit: None,
        last_429: None,
        retry_after_ms: None,
        rate_limited_total: 0,
        breaker: BreakerState::Closed,
        consecutive_failures: 0,
        breaker_reason: None,
    };
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
    Snapshot {
        taken_at: Some(now()),
        jobs: Arc::new(jobs),
        chunks: Arc::new(chunk_map),
        running_here: Arc::new(running),
        tenants: Arc::new(tenants()),
        tables: Arc::new(tables),
        health: Arc::new(health()),
        error: None,
    }
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
