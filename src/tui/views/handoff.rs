//! The job detail's lifecycle lines: the hand-off to incremental sync (markers, canonical
//! transform, from the store and from events) and the latest verification (landed against
//! the source's count, per table and chunk, mismatches in the error colour).

use std::collections::BTreeMap;

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use crate::domain::{ChunkKey, ChunkVerification, Job, JobStatus};
use crate::tui::app::App;
use crate::tui::format::fmt_count;
use crate::tui::theme::Theme;

/// The job's verification results, from the store, in chunk order.
pub(crate) fn results<'a>(app: &'a App, job_id: &str) -> &'a [ChunkVerification] {
    app.snap
        .lifecycle
        .get(job_id)
        .map_or(&[], |l| l.verification.as_slice())
}

/// One chunk's verification, if the job has been verified.
pub(crate) fn of_chunk<'a>(app: &'a App, key: &ChunkKey) -> Option<&'a ChunkVerification> {
    results(app, &key.job_id).iter().find(|v| v.key == *key)
}

/// Missing records in the error colour, records moved since in warn, a match in ok.
pub(crate) fn style(t: &Theme, v: &ChunkVerification) -> Style {
    if v.missing() > 0 {
        t.fg(t.error)
    } else if v.moved_since() > 0 {
        t.fg(t.warn)
    } else {
        t.fg(t.ok)
    }
}

/// What a chunk's verification says, in words (the last-error panel).
pub(crate) fn chunk_words(v: &ChunkVerification) -> String {
    let head = format!(
        "verified {}: {} landed, the source holds {}",
        v.verified_at.format("%m-%d %H:%M"),
        v.landed,
        v.source_count
    );
    if v.missing() > 0 {
        format!(
            "{head}: {} record(s) missing (resume or re-run this window)",
            v.missing()
        )
    } else if v.moved_since() > 0 {
        format!(
            "{head}: {} record(s) updated since they were read (a sync reads them)",
            v.moved_since()
        )
    } else {
        format!("{head}: every record landed")
    }
}

/// Where the job's tables' markers are: from the store, or a newer move an event told of.
fn markers(app: &App, job: &Job) -> Vec<(String, Option<chrono::DateTime<chrono::Utc>>)> {
    job.tables
        .iter()
        .map(|table| {
            let stored = app
                .snap
                .markers
                .iter()
                .find(|m| {
                    m.tenant_id == job.tenant_id && m.service == job.service && m.table == *table
                })
                .map(|m| m.last_updated);
            let heard = app
                .life
                .markers
                .get(&(job.tenant_id.clone(), job.service, table.clone()))
                .map(|m| m.last_updated);
            (table.clone(), stored.max(heard))
        })
        .collect()
}

/// The hand-off line: where the job's data went after it completed.
pub(crate) fn handoff_line(app: &App, job: &Job) -> Line<'static> {
    let t = &app.theme;
    if job.status == JobStatus::Pending
        && let Some(why) = app.waiting(&job.job_id)
    {
        return Line::from(Span::styled(format!("◌ not started: {why}"), t.fg(t.info)));
    }
    let mut spans = match job.status {
        JobStatus::Completed => {
            let finalized = app
                .snap
                .lifecycle
                .get(&job.job_id)
                .and_then(|l| l.meta.as_ref())
                .map(|m| m.finalized_at);
            let mut spans = match finalized {
                Some(Some(at)) => vec![Span::styled(
                    format!("✓ handed off {}", at.format("%m-%d %H:%M")),
                    t.fg(t.ok),
                )],
                Some(None) => vec![Span::styled(
                    "hand-off pending (the next run of the job retries it)",
                    t.fg(t.warn),
                )],
                None => vec![Span::styled("hand-off", t.fg(t.muted))],
            };
            spans.push(Span::styled(" · markers ", t.fg(t.muted)));
            let marks = markers(app, job);
            // The usual case in a few words: every table's marker at the job's end.
            if marks.iter().all(|(_, at)| *at == Some(job.window.end)) {
                spans.push(Span::raw(format!(
                    "→ {} ({} table(s))",
                    job.window.end.format("%Y-%m-%d"),
                    marks.len()
                )));
                spans.extend(transform_spans(app, job));
                return Line::from(spans);
            }
            for (i, (table, at)) in marks.into_iter().enumerate() {
                if i > 0 {
                    spans.push(Span::raw(", "));
                }
                spans.push(match at {
                    Some(at) if at >= job.window.end => {
                        Span::raw(format!("{table} → {}", at.format("%Y-%m-%d")))
                    }
                    Some(at) => Span::styled(
                        format!("{table} → {} (behind)", at.format("%Y-%m-%d")),
                        t.fg(t.error),
                    ),
                    None => Span::styled(format!("{table}: none"), t.fg(t.error)),
                });
            }
            spans
        }
        JobStatus::CompletedWithErrors => vec![Span::styled(
            format!(
                "✗ no hand-off: {} failed chunk(s) are gaps, so no marker moves (R retries them)",
                job.failed_chunks
            ),
            t.fg(t.warn),
        )],
        JobStatus::Cancelled | JobStatus::Failed => vec![Span::styled(
            format!("no hand-off: the job {}", job.status),
            t.fg(t.muted),
        )],
        _ => vec![Span::styled(
            format!(
                "after completion: markers → {}, canonical transform",
                job.window.end.format("%Y-%m-%d")
            ),
            t.fg(t.muted),
        )],
    };
    spans.extend(transform_spans(app, job));
    Line::from(spans)
}

/// The canonical transform of the job's tenant + service, as this console knows it.
fn transform_spans(app: &App, job: &Job) -> Vec<Span<'static>> {
    let t = &app.theme;
    let pair = (job.tenant_id.clone(), job.service);
    if app.life.transforming.contains(&pair) {
        return vec![Span::styled(" · transform running…", t.fg(t.running))];
    }
    if let Some((error, at)) = app.life.transform_failed.get(&job.tenant_id) {
        return vec![Span::styled(
            format!(" · transform failed {}: {error}", at.format("%H:%M:%S")),
            t.fg(t.error),
        )];
    }
    match app.life.transforms.get(&pair) {
        Some(tables) if !tables.is_empty() => {
            let at = tables.values().map(|d| d.at).max().unwrap_or(app.now);
            let list = tables
                .iter()
                .map(|(table, d)| format!("{table} {} versions", fmt_count(d.versions)))
                .collect::<Vec<_>>()
                .join(", ");
            vec![Span::styled(
                format!(" · canonical {list} at {}", at.format("%H:%M:%S")),
                t.fg(t.ok),
            )]
        }
        _ => Vec::new(),
    }
}

/// The verification line: per table, how many chunks match and what is missing.
pub(crate) fn verify_line(app: &App, job: &Job) -> Line<'static> {
    let t = &app.theme;
    if app.life.verifying.contains(&job.job_id) {
        return Line::from(Span::styled(
            "verifying… (one count request per chunk)",
            t.fg(t.running),
        ));
    }
    let results = results(app, &job.job_id);
    let Some(at) = results.iter().map(|v| v.verified_at).max() else {
        let hint = if job.status.is_terminal() {
            "not verified (v counts landed against the source)"
        } else {
            "not verified (v verifies once the job has ended)"
        };
        return Line::from(Span::styled(hint, t.fg(t.muted)));
    };
    // Per table: chunks, matching chunks, missing and moved records.
    let mut tables: BTreeMap<&str, (usize, usize, u64, u64)> = BTreeMap::new();
    for v in results {
        let e = tables.entry(v.key.table.as_str()).or_default();
        e.0 += 1;
        e.1 += usize::from(v.missing() == 0 && v.moved_since() == 0);
        e.2 += v.missing();
        e.3 += v.moved_since();
    }
    let mut spans = vec![Span::styled(
        format!("verified {}: ", at.format("%m-%d %H:%M")),
        t.fg(t.muted),
    )];
    // Tables with missing records first, then those with moved ones: what to act on leads.
    let mut tables: Vec<_> = tables.into_iter().collect();
    tables.sort_by_key(|(_, (_, _, missing, moved))| (*missing == 0, *moved == 0));
    for (i, (table, (n, ok, missing, moved))) in tables.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" · "));
        }
        if missing > 0 {
            spans.push(Span::styled(
                format!("{table} ✗ {missing} missing ({ok}/{n} ok)"),
                t.fg(t.error),
            ));
        } else if moved > 0 {
            spans.push(Span::styled(
                format!("{table} ↻ {moved} moved since ({ok}/{n} ok)"),
                t.fg(t.warn),
            ));
        } else {
            spans.push(Span::styled(format!("{table} ✓ {ok}/{n} ok"), t.fg(t.ok)));
        }
    }
    Line::from(spans)
}
