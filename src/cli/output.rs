//! How commands print: aligned text for people, JSON for scripts.

use std::collections::BTreeSet;
use std::process::ExitCode;

use color_eyre::eyre::Result;
use serde_json::json;

use super::Output;
use super::print::{iso, print_json};
use super::status::QuotaWaits;
use crate::config::Config;
use crate::domain::{Chunk, Job, JobStatus, SyncMarker, WAITING_FOR_QUOTA};
use crate::engine::handoff::GapFinding;
use crate::engine::planner::{Estimate, Plan};
use crate::engine::quota::AllocationShare;
use crate::engine::{Handoff, RunOutcome, StopReason};
use crate::workspace::Workspace;

pub fn print_plan(
    plan: &Plan,
    est: &Estimate,
    allocation: &Result<Option<AllocationShare>, String>,
    out: Output,
) -> Result<()> {
    if out == Output::Json {
        let (share, error) = match allocation {
            Ok(share) => (json!(share), json!(null)),
            Err(e) => (json!(null), json!(e)),
        };
        return print_json(&json!({
            "plan": plan, "estimate": est, "allocation": share, "allocation_error": error
        }));
    }
    outln!(
        "{} {}  window {}  chunk {} d  {} chunk(s) over {} table(s){}",
        plan.tenant_id,
        plan.service,
        plan.window,
        plan.chunk_size_days,
        plan.total_chunks(),
        plan.tables.len(),
        if plan.end_is_default {
            "  (end = now, frozen at creation)"
        } else {
            ""
        }
    );
    for t in &plan.tables {
        outln!("\n  {} ({})", t.table, t.path);
        if !t.skipped.is_empty() {
            outln!(
                "    warning: the integration user cannot read {}: left out of the queries, \
                 their columns stay null",
                t.skipped.join(", ")
            );
        }
        for (i, w) in t.windows.iter().enumerate() {
            match t.records.as_ref().and_then(|r| r.get(i)) {
                Some(n) => outln!(
                    "    #{i:<4} {} .. {}  {n} records",
                    iso(w.start),
                    iso(w.end)
                ),
                None => outln!("    #{i:<4} {} .. {}", iso(w.start), iso(w.end)),
            }
        }
    }
    let kind = if est.counted {
        "exact"
    } else {
        "at least (one per window; --count for exact)"
    };
    let counts = match est.count_calls {
        0 => String::new(),
        n => format!(" (of which {n} count call(s) while planning)"),
    };
    outln!("\nAPI calls: {} {kind}{counts}", est.api_calls);
    if let Some(r) = est.records {
        outln!("records:   {r}");
    }
    match (est.duration_secs, plan.rate_limit_per_minute) {
        (Some(s), Some(rpm)) => outln!(
            "duration:  {} at {rpm} requests/min",
            humantime::format_duration(std::time::Duration::from_secs(s.ceil() as u64))
        ),
        _ => outln!("duration:  no rate limit configured"),
    }
    match allocation {
        Ok(Some(share)) => outln!("quota:     {share}"),
        Ok(None) => {}
        Err(e) => outln!("quota:     the API allocation could not be read: {e}"),
    }
    Ok(())
}

pub fn print_outcomes(outcomes: &[RunOutcome]) {
    if outcomes.is_empty() {
        outln!("no pending jobs");
    }
    for o in outcomes {
        match o.stop {
            StopReason::ContinuationNeeded => outln!(
                "{}: time budget reached, state saved; continuation needed (avesa-console resume {})",
                o.job_id,
                o.job_id
            ),
            StopReason::Finished => outln!("{}: {}", o.job_id, o.status),
        }
        if let Some(line) = handoff_line(&o.job_id, &o.handoff) {
            outln!("{line}");
        }
    }
}

/// What a run says about a job's hand-off, when there is something to say.
pub fn handoff_line(job_id: &str, handoff: &Handoff) -> Option<String> {
    match handoff {
        Handoff::NotDue | Handoff::Done => None,
        Handoff::Finished => Some(format!(
            "{job_id}: hand-off done (sync markers moved, canonical tables rebuilt)"
        )),
        Handoff::Held { owner, until } => Some(format!(
            "{job_id}: hand-off is being done by {owner} (its claim lapses at {}; a later run \
             or resume takes it over then)",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
        Handoff::Failed { error } => Some(format!(
            "{job_id}: hand-off FAILED: {error}\n  the data landed; markers or canonical tables \
             lag until `avesa-console resume {job_id}` (or the next `run`) does it again"
        )),
    }
}

pub fn print_no_jobs(ws: &Workspace, out: Output) -> Result<ExitCode> {
    if out == Output::Json {
        print_json(&json!({ "jobs": [] }))?;
    } else {
        outln!("no jobs yet in {}", ws.root.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Jobs (with the completed ones whose hand-off is still due), then the sync markers and any
/// gap the gap check found.
pub fn print_jobs_with_handoff(
    jobs: &[Job],
    waits: &QuotaWaits,
    due: &BTreeSet<String>,
    out: Output,
    markers: &[SyncMarker],
    gaps: &[GapFinding],
) -> Result<()> {
    if out == Output::Json {
        let jobs: Vec<_> = jobs
            .iter()
            .map(|j| {
                let mut v = job_json(j, waits.get(&j.job_id).copied());
                v["handoff_due"] = json!(due.contains(&j.job_id));
                v
            })
            .collect();
        return print_json(&json!({ "jobs": jobs, "markers": markers, "gaps": gaps }));
    }
    print_job_rows(jobs, waits);
    for id in due {
        outln!(
            "{id}: completed, but its hand-off (sync markers, canonical tables) is still due; \
             `avesa-console resume {id}` or the next `run` does it"
        );
    }
    super::lifecycle_output::print_markers(markers, gaps);
    Ok(())
}

/// A job as JSON; one waiting for its API quota shows `waiting_for_quota` as its status, with
/// `quota_wait_until` and its stored status as `stored_status`.
pub(crate) fn job_json(
    job: &Job,
    wait: Option<chrono::DateTime<chrono::Utc>>,
) -> serde_json::Value {
    let mut v = json!(job);
    if let Some(until) = wait {
        v["stored_status"] = json!(job.status);
        v["status"] = json!(WAITING_FOR_QUOTA);
        v["quota_wait_until"] = json!(iso(until));
    }
    v
}

fn print_job_rows(jobs: &[Job], waits: &QuotaWaits) {
    outln!(
        "{:<46} {:<10} {:<12} {:<22} {:>11} {:>6} {:>10}",
        "JOB",
        "TENANT",
        "SERVICE",
        "STATUS",
        "CHUNKS",
        "FAILED",
        "RECORDS"
    );
    for j in jobs {
        outln!(
            "{:<46} {:<10} {:<12} {:<22} {:>5}/{:<5} {:>6} {:>10}",
            j.job_id,
            j.tenant_id,
            j.service.as_str(),
            match waits.contains_key(&j.job_id) {
                true => WAITING_FOR_QUOTA,
                false => j.status.as_str(),
            },
            j.completed_chunks,
            j.total_chunks,
            j.failed_chunks,
            j.records
        );
    }
    for j in jobs {
        if let Some(until) = waits.get(&j.job_id) {
            outln!(
                "{}: its share of the API allocation is used up; it goes on by itself after {}",
                j.job_id,
                iso(*until)
            );
        }
    }
}

pub fn print_job_detail(
    job: &Job,
    waits: &QuotaWaits,
    chunks: &[Chunk],
    out: Output,
) -> Result<()> {
    if out == Output::Json {
        let job = job_json(job, waits.get(&job.job_id).copied());
        return print_json(&json!({ "job": job, "chunks": chunks }));
    }
    print_job_rows(std::slice::from_ref(job), waits);
    outln!("window {}  created {}", job.window, iso(job.created_at));
    if !job.skipped_fields.is_empty() {
        outln!(
            "skipped fields (the integration user cannot read them; their columns stay null): {}",
            job.skipped_fields.join(", ")
        );
    }
    for (table, cause, windows) in crate::domain::failed_tables(chunks) {
        outln!("table {table} failed ({windows} windows, the same for each): {cause}");
    }
    outln!(
        "\n{:<14} {:>4} {:<42} {:<10} {:>8} {:>9}  LAST ERROR",
        "TABLE",
        "SEQ",
        "WINDOW",
        "STATUS",
        "ATTEMPTS",
        "RECORDS"
    );
    for c in chunks {
        outln!(
            "{:<14} {:>4} {:<42} {:<10} {:>5}/{:<2} {:>9}  {}",
            c.key.table,
            c.key.seq,
            c.window.to_string(),
            c.status.as_str(),
            c.attempts,
            job.max_attempts,
            c.checkpoint.records,
            c.last_error.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

pub fn print_summary(ws: &Workspace, config: &Config, jobs: &[Job]) {
    outln!("avesa-console workspace {}", ws.root.display());
    outln!("configuration {}\n", config.dir.display());
    outln!(
        "{:<10} {:<26} {:<12} {:<8} LATEST JOB",
        "TENANT",
        "NAME",
        "SERVICE",
        "ENABLED"
    );
    for t in &config.tenants.tenants {
        for (svc, conn) in &t.services {
            let latest = jobs
                .iter()
                .filter(|j| j.tenant_id == t.tenant_id && j.service == *svc)
                .max_by_key(|j| j.created_at)
                .map(|j| {
                    format!(
                        "{} {} ({}/{} chunks)",
                        j.job_id, j.status, j.completed_chunks, j.total_chunks
                    )
                })
                .unwrap_or_else(|| "none: needs a backfill".into());
            outln!(
                "{:<10} {:<26} {:<12} {:<8} {}",
                t.tenant_id,
                t.display_name,
                svc.as_str(),
                conn.enabled,
                latest
            );
        }
    }
    let count = |s: JobStatus| jobs.iter().filter(|j| j.status == s).count();
    outln!(
        "\njobs: {} total, {} running, {} pending, {} completed, {} with errors",
        jobs.len(),
        count(JobStatus::Running),
        count(JobStatus::Pending),
        count(JobStatus::Completed),
        count(JobStatus::CompletedWithErrors)
    );
    outln!(
        "\ntry: avesa-console trigger --tenant-id acme --service connectwise --table service/tickets --run"
    );
}
