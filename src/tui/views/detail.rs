//! Job detail: the plan (windows per table) as a heatmap of chunk states, visible before and
//! during the run, the hand-off and verification lines (`handoff`), the chunk list of the
//! selected table (with landed/source counts once verified), and the selected chunk's last
//! error.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::handoff;
use super::{
    block, chunk_glyph, chunk_style, job_status_label, job_status_style, progress_bar, quota_label,
};
use crate::domain::{Chunk, ChunkStatus, Job};
use crate::tui::app::{App, Route};
use crate::tui::format::{clip, fmt_count, fmt_duration, fmt_window};
use crate::tui::theme::Theme;

/// A chunk waiting for its next attempt after an error.
fn retrying(c: &Chunk) -> bool {
    c.status == ChunkStatus::Pending && c.last_error.is_some()
}

/// Width of the table names left of the heatmap.
const NAME_W: usize = 14;

/// Heatmap cells per line.
fn per_line(area: Rect) -> usize {
    usize::from(area.width.saturating_sub(2))
        .saturating_sub(NAME_W + 1)
        .max(1)
}

/// Summary, heatmap (one line per table, more when its chunks outnumber the width), the
/// chunk list and the last error.
fn layout(app: &App, area: Rect) -> [Rect; 4] {
    let per_line = per_line(area);
    let heat_lines: usize = app
        .detail_groups
        .iter()
        .map(|(_, r)| r.len().div_ceil(per_line).max(1))
        .sum();
    let heat_h = (heat_lines as u16 + 3).min(area.height / 2).max(4);
    let err_h = 5;
    Layout::vertical([
        Constraint::Length(6),
        Constraint::Length(heat_h),
        Constraint::Min(3),
        Constraint::Length(err_h),
    ])
    .areas(area)
}

/// The chunk list's rows on screen and the first one shown: the selected chunk kept on the
/// last row once it passes the end.
fn list_window(app: &App, list: Rect) -> (usize, usize) {
    let rows_h = usize::from(list.height.saturating_sub(3)).max(1);
    (
        rows_h,
        app.detail_chunk.saturating_sub(rows_h.saturating_sub(1)),
    )
}

/// The chunk (index in the selected table) under a click on the chunk list.
pub(super) fn row_at(app: &App, body: Rect, x: u16, y: u16) -> Option<usize> {
    let [_, _, list, _] = layout(app, body);
    let (_, offset) = list_window(app, list);
    let i = offset + super::row_on_screen(list, x, y)?;
    let (_, range) = app.detail_groups.get(app.detail_table)?;
    (i < range.len()).then_some(i)
}

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let Route::JobDetail { job_id } = app.route() else {
        return;
    };
    let Some(job) = app.job(job_id) else {
        let p = Paragraph::new(format!("job {job_id} is not in the store (any more)"))
            .block(block(t, " Job "));
        frame.render_widget(p, area);
        return;
    };
    let chunks: &[Chunk] = app.snap.chunks.get(job_id).map_or(&[], |c| c.as_slice());
    let per_line = per_line(area);
    let [summary, heat, list, err] = layout(app, area);
    render_summary(frame, app, job, summary);
    render_heatmap(frame, app, chunks, per_line, heat);
    let Some((table, range)) = app.detail_groups.get(app.detail_table) else {
        frame.render_widget(block(t, " Chunks "), list);
        frame.render_widget(block(t, " Last error "), err);
        return;
    };
    render_chunk_list(frame, app, job, table, &chunks[range.clone()], list);
    let selected = chunks.get(range.start + app.detail_chunk);
    render_last_error(frame, app, selected, err);
}

/// Summary: who, what, the plan, the hand-off and verification.
fn render_summary(frame: &mut Frame, app: &App, job: &Job, area: Rect) {
    let t = &app.theme;
    let status = match app.quota_wait(&job.job_id) {
        Some(until) => Span::styled(
            format!("{} until {} UTC", quota_label(false), until.format("%H:%M")),
            t.fg(t.warn),
        ),
        None => Span::styled(
            job_status_label(job.status),
            job_status_style(t, job.status),
        ),
    };
    let mut head = vec![
        Span::styled(
            format!("{} {} ", job.tenant_id, job.service),
            t.fg(t.accent).add_modifier(Modifier::BOLD),
        ),
        status,
        Span::raw("  "),
    ];
    head.extend(progress_bar(
        t,
        job.completed_chunks,
        job.failed_chunks,
        job.total_chunks,
        16,
    ));
    head.push(Span::raw(format!("  {} records", fmt_count(job.records))));
    if app.running_here(&job.job_id) {
        head.push(Span::styled("  ● running here", t.fg(t.running)));
    }
    let plan = format!(
        "plan {} · {} d chunks · {} table(s) × {} window(s) · {} attempts max",
        fmt_window(&job.window),
        job.chunk_size_days,
        job.tables.len(),
        job.total_chunks as usize / job.tables.len().max(1),
        job.max_attempts
    );
    // Each line ends in `…` where the box cuts it.
    let width = usize::from(area.width.saturating_sub(2));
    let lines = vec![
        Line::from(head),
        Line::from(Span::styled(plan, t.fg(t.muted))),
        handoff::handoff_line(app, job),
        handoff::verify_line(app, job),
    ]
    .into_iter()
    .map(|l| super::clip_line(l, width))
    .collect::<Vec<_>>();
    let p = Paragraph::new(lines).block(block(t, format!(" Job {} ", job.job_id)));
    frame.render_widget(p, area);
}

/// The heatmap: a glyph per chunk, a line (or more) per table, the selected chunk reversed,
/// and the legend.
fn render_heatmap(frame: &mut Frame, app: &App, chunks: &[Chunk], per_line: usize, area: Rect) {
    let t = &app.theme;
    let selected = app
        .detail_groups
        .get(app.detail_table)
        .map(|(_, r)| r.start + app.detail_chunk);
    let mut lines = Vec::new();
    let budget = usize::from(area.height.saturating_sub(3));
    'tables: for (ti, (table, range)) in app.detail_groups.iter().enumerate() {
        let slice = &chunks[range.clone()];
        for (li, part) in slice.chunks(per_line).enumerate() {
            if lines.len() >= budget {
                break 'tables;
            }
            let name = if li == 0 {
                clip(table, NAME_W)
            } else {
                String::new()
            };
            let name_style = if ti == app.detail_table {
                t.fg(t.accent).add_modifier(Modifier::BOLD)
            } else {
                t.fg(t.fg)
            };
            let mut spans = vec![Span::styled(format!("{name:<NAME_W$} "), name_style)];
            for (k, c) in part.iter().enumerate() {
                let idx = range.start + li * per_line + k;
                let mut style = chunk_style(t, c.status, retrying(c));
                if Some(idx) == selected {
                    style = style.add_modifier(Modifier::REVERSED);
                }
                spans.push(Span::styled(chunk_glyph(c.status, retrying(c)), style));
            }
            lines.push(Line::from(spans));
        }
    }
    if chunks.is_empty() {
        lines.push(Line::from(Span::styled("loading the plan…", t.fg(t.muted))));
    }
    lines.push(heatmap_legend(t));
    frame.render_widget(
        Paragraph::new(lines).block(block(t, " Chunks by table ")),
        area,
    );
}

fn heatmap_legend(t: &Theme) -> Line<'static> {
    Line::from(vec![
        Span::styled("█ done  ", t.fg(t.ok)),
        Span::styled("▶ running  ", t.fg(t.running)),
        Span::styled("· pending  ", t.fg(t.muted)),
        Span::styled("! retrying  ", t.fg(t.warn)),
        Span::styled("✗ failed  ", t.fg(t.error)),
        Span::styled("- cancelled", t.fg(t.muted)),
    ])
}

/// The chunk list of the selected table, scrolled to keep the selection in view.
fn render_chunk_list(
    frame: &mut Frame,
    app: &App,
    job: &Job,
    table: &str,
    group: &[Chunk],
    area: Rect,
) {
    let t = &app.theme;
    let (rows_h, offset) = list_window(app, area);
    // Once verified, a column shows landed/source per chunk; narrow screens then write the
    // window as dates to make room for it.
    let verified = !handoff::results(app, &job.job_id).is_empty();
    let short_window = verified && area.width < 100;
    let rows = group
        .iter()
        .enumerate()
        .skip(offset)
        .take(rows_h)
        .map(|(i, c)| {
            super::table_row(
                t,
                chunk_cells(app, job, c, short_window, verified),
                i == app.detail_chunk,
            )
        });
    let (header, widths) = chunk_columns(short_window, verified);
    let header = Row::new(header).style(t.fg(t.accent).add_modifier(Modifier::BOLD));
    let title = format!(" {table}: {} chunk(s) ", group.len());
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(block(t, title)),
        area,
    );
    super::highlight_row(frame, t, area, app.detail_chunk - offset);
}

/// The chunk list's column titles and widths: LANDED/SRC only once verified.
fn chunk_columns(short_window: bool, verified: bool) -> (Vec<&'static str>, Vec<Constraint>) {
    let mut header = vec!["SEQ", "WINDOW", "STATUS", "TRIES", "RECORDS", "TIME"];
    let mut widths = vec![
        Constraint::Length(5),
        Constraint::Length(if short_window { 23 } else { 35 }),
        Constraint::Length(9),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(6),
    ];
    if verified {
        header.push("LANDED/SRC");
        widths.push(Constraint::Length(10));
    }
    header.push("LAST ERROR");
    widths.push(Constraint::Fill(1));
    (header, widths)
}

/// One chunk's row in the chunk list.
fn chunk_cells<'a>(
    app: &App,
    job: &Job,
    c: &'a Chunk,
    short_window: bool,
    verified: bool,
) -> Vec<Cell<'a>> {
    let t = &app.theme;
    let dur = match (c.started_at, c.finished_at) {
        (Some(s), Some(f)) => fmt_duration((f - s).num_seconds()),
        (Some(s), None) if c.status == ChunkStatus::Running => {
            fmt_duration((app.now - s).num_seconds())
        }
        _ => "—".into(),
    };
    let status = if retrying(c) {
        "retrying".to_string()
    } else {
        c.status.to_string()
    };
    let window_fmt = if short_window {
        "%Y-%m-%d"
    } else {
        "%Y-%m-%d %H:%M"
    };
    let mut cells = vec![
        Cell::from(format!("#{}", c.key.seq)),
        Cell::from(format!(
            "{} → {}",
            c.window.start.format(window_fmt),
            c.window.end.format(window_fmt)
        )),
        Cell::from(Span::styled(status, chunk_style(t, c.status, retrying(c)))),
        // A chunk failed for good shows no "1/3": no attempt is left to come.
        Cell::from(if c.status == ChunkStatus::Failed {
            Span::styled(format!("{} ✗", c.attempts), t.fg(t.error))
        } else {
            Span::raw(format!("{}/{}", c.attempts, job.max_attempts))
        }),
        Cell::from(Line::from(fmt_count(c.checkpoint.records)).right_aligned()),
        Cell::from(Line::from(dur).right_aligned()),
    ];
    if verified {
        cells.push(Cell::from(
            match handoff::of_chunk(app, &c.key) {
                Some(v) => Line::from(Span::styled(
                    format!("{}/{}", v.landed, v.source_count),
                    handoff::style(t, v),
                )),
                None => Line::from(Span::styled("—", t.fg(t.muted))),
            }
            .right_aligned(),
        ));
    }
    cells.push(Cell::from(Span::styled(
        c.last_error.clone().unwrap_or_default(),
        t.fg(t.error),
    )));
    cells
}

/// The selected chunk's error in full: the "why" during an incident.
fn render_last_error(frame: &mut Frame, app: &App, sel: Option<&Chunk>, area: Rect) {
    let t = &app.theme;
    let (title, text) = match sel {
        Some(c) => {
            let mut lines = vec![match &c.last_error {
                Some(e) => Line::from(Span::styled(e.clone(), t.fg(t.error))),
                None => Line::from(Span::styled("no error", t.fg(t.muted))),
            }];
            if c.last_error.is_some() {
                let max = app.job(&c.key.job_id).map_or(0, |j| j.max_attempts);
                lines.insert(
                    0,
                    Line::from(Span::styled(
                        crate::engine::retry::next_action(c, max, app.now),
                        t.fg(t.warn).add_modifier(Modifier::BOLD),
                    )),
                );
            }
            if let Some(v) = handoff::of_chunk(app, &c.key) {
                lines.push(Line::from(Span::styled(
                    handoff::chunk_words(v),
                    handoff::style(t, v),
                )));
            }
            let title = format!(" {} · d describes · l logs ", c.key);
            (super::clip_title(&title, area.width), lines)
        }
        None => (" Last error ".to_string(), Vec::new()),
    };
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .block(block(t, title)),
        area,
    );
}
