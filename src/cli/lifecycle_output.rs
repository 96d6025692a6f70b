//! How the lifecycle commands print: markers and gaps, sync results, verification,
//! transform reports, cleanup, alerts and detection decisions.

use color_eyre::eyre::Result;
use serde_json::json;

use super::Output;
use super::print::{iso, print_json};
use crate::domain::{Alert, Job, Service, SyncMarker};
use crate::engine::RunOutcome;
use crate::engine::compact::TableCompaction;
use crate::engine::detect::Decision;
use crate::engine::handoff::GapFinding;
use crate::engine::verify::VerifyReport;
use crate::transform::{TransformMode, TransformReport};

pub fn print_markers(markers: &[SyncMarker], gaps: &[GapFinding]) {
    if markers.is_empty() && gaps.is_empty() {
        return;
    }
    outln!(
        "\n{:<10} {:<12} {:<14} {:<22} {:<22} SET BY",
        "TENANT",
        "SERVICE",
        "TABLE",
        "SYNC MARKER",
        "BACKFILL END"
    );
    for m in markers {
        outln!(
            "{:<10} {:<12} {:<14} {:<22} {:<22} {}",
            m.tenant_id,
            m.service.as_str(),
            m.table,
            iso(m.last_updated),
            m.backfill_end.map_or("-".into(), iso),
            m.set_by_job
        );
    }
    for g in gaps {
        outln!(
            "GAP {} {} {}{}: {}",
            g.tenant_id,
            g.service,
            g.table,
            g.job_id
                .as_deref()
                .map_or(String::new(), |j| format!(" ({j})")),
            g.reason
        );
    }
}

pub fn print_up_to_date(tenant_id: &str, service: Service, out: Output) -> Result<()> {
    if out == Output::Json {
        return print_json(
            &json!({ "up_to_date": true, "tenant_id": tenant_id, "service": service }),
        );
    }
    outln!("{tenant_id} {service}: every table's marker is at now; nothing to sync");
    Ok(())
}

pub fn print_sync(job: &Job, done: &RunOutcome, markers: &[SyncMarker], out: Output) -> Result<()> {
    if out == Output::Json {
        return print_json(&json!({ "job": job, "outcome": done, "markers": markers }));
    }
    outln!(
        "{}: {}  window {}  {} record(s) in {} chunk(s)",
        job.job_id,
        job.status,
        job.window,
        job.records,
        job.total_chunks
    );
    print_markers(markers, &[]);
    Ok(())
}

pub fn print_verify(report: &VerifyReport, gaps: &[GapFinding], out: Output) -> Result<()> {
    if out == Output::Json {
        return print_json(&json!({ "verification": report, "gaps": gaps }));
    }
    outln!(
        "{:<14} {:>4} {:<42} {:>8} {:>8}  VERDICT",
        "TABLE",
        "SEQ",
        "WINDOW",
        "SOURCE",
        "LANDED"
    );
    for c in &report.chunks {
        let verdict = if c.missing() > 0 {
            format!("MISSING {}", c.missing())
        } else if c.moved_since() > 0 {
            format!("ok ({} updated since, in later windows)", c.moved_since())
        } else {
            "ok".into()
        };
        outln!(
            "{:<14} {:>4} {:<42} {:>8} {:>8}  {}",
            c.key.table,
            c.key.seq,
            c.window.to_string(),
            c.source_count,
            c.landed,
            verdict
        );
    }
    for u in &report.uncounted {
        outln!(
            "{:<14} {:>4} {:<42} {:>8} {:>8}  NOT COUNTED: {}",
            u.key.table,
            u.key.seq,
            u.window.to_string(),
            "-",
            "-",
            u.error
        );
    }
    for g in gaps {
        outln!("GAP {} {}: {}", g.service, g.table, g.reason);
    }
    outln!(
        "\n{}: {} chunk(s), {} missing, {} updated since they were read{}",
        report.job_id,
        report.chunks.len() + report.uncounted.len(),
        report.missing,
        report.moved_since,
        if report.ok && gaps.is_empty() {
            ": verified"
        } else {
            ": NOT VERIFIED"
        }
    );
    Ok(())
}

pub fn print_transform(reports: &[TransformReport], out: Output) -> Result<()> {
    if out == Output::Json {
        return print_json(&json!({ "transforms": reports }));
    }
    outln!(
        "{:<14} {:<12} {:<11} {:>6} {:>9} {:>9} {:>9} {:>8} {:>6} {:>9} {:>8}  PATH",
        "TABLE",
        "SERVICE",
        "MODE",
        "FILES",
        "BUCKETS",
        "RAW ROWS",
        "VERSIONS",
        "RECORDS",
        "DUPS",
        "UNCHANGED",
        "MS"
    );
    for r in reports {
        outln!(
            "{:<14} {:<12} {:<11} {:>6} {:>9} {:>9} {:>9} {:>8} {:>6} {:>9} {:>8}  {}",
            r.table,
            r.service.as_str(),
            match r.mode {
                TransformMode::Incremental => "incremental",
                TransformMode::Full => "full",
            },
            r.raw_files,
            format!("{}/{}", r.buckets_written, r.buckets),
            r.stats.rows_in,
            r.stats.versions,
            r.stats.records,
            r.stats.duplicates,
            r.stats.unchanged,
            r.duration_ms,
            r.path.as_deref().unwrap_or("(no raw data)")
        );
    }
    Ok(())
}

pub fn print_cleanup(removed: &[Job], days: u32, dry_run: bool, out: Output) -> Result<()> {
    if out == Output::Json {
        return print_json(
            &json!({ "dry_run": dry_run, "older_than_days": days, "jobs": removed }),
        );
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    for j in removed {
        outln!(
            "{verb} {} (finished {})",
            j.job_id,
            j.finished_at.map_or("-".into(), iso)
        );
    }
    outln!(
        "{verb} {} completed job(s) older than {days} day(s); their data is kept",
        removed.len()
    );
    Ok(())
}

pub fn print_compact(tables: &[TableCompaction], dry_run: bool, out: Output) -> Result<()> {
    if out == Output::Json {
        return print_json(&json!({ "dry_run": dry_run, "tables": tables }));
    }
    let mb = |b: u64| b as f64 / 1_048_576.0;
    let after = if dry_run { "would leave" } else { "after" };
    for t in tables {
        outln!(
            "{} {} {}: before {} file(s), {:.1} MB, median {:.2} MB; {after} {} file(s), {:.1} MB, median {:.2} MB; {} compacted file(s){}",
            t.tenant_id,
            t.service,
            t.table,
            t.before.files,
            mb(t.before.bytes),
            mb(t.before.median_bytes),
            t.after.files,
            mb(t.after.bytes),
            mb(t.after.median_bytes),
            if dry_run { 0 } else { t.compacted.len() },
            if t.unfinished_windows > 0 {
                format!(
                    "; {} window(s) left as they are: a chunk over them is not completed",
                    t.unfinished_windows
                )
            } else {
                String::new()
            }
        );
    }
    if tables.is_empty() {
        outln!("nothing to compact: no job in the store matches");
    }
    Ok(())
}

pub fn print_alerts(alerts: &[Alert], out: Output) -> Result<()> {
    if out == Output::Json {
        return print_json(&json!({ "alerts": alerts }));
    }
    if alerts.is_empty() {
        outln!("no alerts");
    }
    for a in alerts {
        outln!(
            "{}  {:<27} {}",
            iso(a.raised_at),
            a.kind.as_str(),
            a.message
        );
    }
    Ok(())
}

pub fn print_detection(
    decisions: &[Decision],
    created: &[Job],
    dry_run: bool,
    out: Output,
) -> Result<()> {
    if out == Output::Json {
        return print_json(
            &json!({ "dry_run": dry_run, "decisions": decisions, "created": created }),
        );
    }
    outln!(
        "{:<10} {:<12} {:<9} {:<11} REASON",
        "TENANT",
        "SERVICE",
        "SELECTED",
        "CHECK"
    );
    for d in decisions {
        let check = serde_json::to_value(d.check)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        outln!(
            "{:<10} {:<12} {:<9} {:<11} {}",
            d.tenant_id,
            d.service.as_str(),
            if d.selected { "yes" } else { "no" },
            check,
            d.reason
        );
    }
    for j in created {
        outln!(
            "created job {} ({} chunks, window {})",
            j.job_id,
            j.total_chunks,
            j.window
        );
    }
    Ok(())
}
