//! Jobs: a sortable table with progress bars, records, current rates, ETA and failures;
//! jobs the console's scheduler holds back read "waiting". Scoped to a tenant's service it is
//! that service's run history: where the width allows, each run's DURATION, STARTED and
//! ENDED (in that order of priority), then TENANT and SERVICE; what is left widens the ids.
//! Only the rows on screen are built, so 10 jobs and 10,000 draw in the same time.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table};

use super::{
    block, job_status_label, job_status_short, job_status_style, progress_bar, quota_label,
};
use crate::domain::{Job, JobStatus};
use crate::tui::app::{App, Route};
use crate::tui::format::{fmt_count, fmt_duration, fmt_rate};

/// A run's start or end as the console writes times: `01-15 10:40` (UTC).
const TIME_FORMAT: &str = "%m-%d %H:%M";
/// Characters of a `TIME_FORMAT` time.
const TIME_WIDTH: u16 = 11;
/// The DURATION column's width (`999h59m` and its title).
const DURATION_WIDTH: u16 = 8;
/// The narrowest JOB column, whatever the ids on screen.
const MIN_ID_WIDTH: usize = 20;

/// How much of the table fits: below 100 columns the rates go and the bars and statuses
/// shorten; above, the run-history columns and then tenant and service come in while the
/// job ids on screen still fit whole (tenant and service are read from the id otherwise).
#[derive(Clone, Copy, Default)]
struct Fit {
    full: bool,
    narrow: bool,
    bar: usize,
    duration: bool,
    started: bool,
    ended: bool,
}

impl Fit {
    /// What fits in `width` columns with ids of `id_width` characters.
    fn for_width(width: u16, id_width: usize) -> Fit {
        let narrow = width < 100;
        let mut fit = Fit {
            narrow,
            bar: if narrow { 3 } else { 10 },
            ..Fit::default()
        };
        if narrow {
            return fit;
        }
        let (_, widths) = columns(fit);
        let fixed: u16 = widths
            .iter()
            .map(|c| match c {
                Constraint::Length(n) => *n,
                _ => 0,
            })
            .sum();
        // Borders, a space between columns, and the ids whole.
        let used = 2 + fixed + widths.len() as u16 - 1 + id_width.max(MIN_ID_WIDTH) as u16;
        let mut spare = width.saturating_sub(used);
        let optional: [(u16, &mut bool); 4] = [
            (DURATION_WIDTH + 1, &mut fit.duration),
            (TIME_WIDTH + 1, &mut fit.started),
            (TIME_WIDTH + 1, &mut fit.ended),
            (10 + 11 + 2, &mut fit.full),
        ];
        for (need, shown) in optional {
            if spare < need {
                break;
            }
            *shown = true;
            spare -= need;
        }
        fit
    }
}

/// The job row under a click.
pub(super) fn row_at(app: &App, body: Rect, x: u16, y: u16) -> Option<usize> {
    let i = app.jobs.offset + super::row_on_screen(body, x, y)?;
    (i < app.job_rows.len()).then_some(i)
}

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let height = usize::from(area.height.saturating_sub(3));
    let id_width = app
        .job_rows
        .iter()
        .skip(app.jobs.offset)
        .take(height)
        .filter_map(|&ji| app.snap.jobs.get(ji))
        .map(|j| j.job_id.chars().count())
        .max()
        .unwrap_or(0);
    let fit = Fit::for_width(area.width, id_width);
    let rows = app
        .job_rows
        .iter()
        .enumerate()
        .skip(app.jobs.offset)
        .take(height)
        .filter_map(|(i, &ji)| app.snap.jobs.get(ji).map(|j| (i, j)))
        .map(|(i, j)| super::table_row(t, job_cells(app, j, fit), i == app.jobs.selected));
    let (header, widths) = columns(fit);
    let header = Row::new(header).style(t.fg(t.accent).add_modifier(Modifier::BOLD));
    let table = Table::new(rows, widths)
        .header(header)
        .block(block(t, title(app)));
    frame.render_widget(table, area);
    if !app.job_rows.is_empty() {
        super::highlight_row(frame, t, area, app.jobs.selected - app.jobs.offset);
    }
}

/// The scope, the row count, the filter, the sort and the marks.
fn title(app: &App) -> String {
    let scope = match app.route() {
        Route::Jobs {
            scope: Some((tn, s)),
        } => format!(" {tn}/{s}"),
        _ => String::new(),
    };
    let filter = if app.job_filter.is_empty() {
        String::new()
    } else {
        format!(" /{}", app.job_filter)
    };
    let marks = if app.marks.is_empty() {
        String::new()
    } else {
        format!(" · {} marked", app.marks.len())
    };
    format!(
        " Jobs{scope} ({}){filter} · sort {}{}{marks} ",
        app.job_rows.len(),
        app.sort.label(),
        if app.sort_desc { " ↑" } else { "" }
    )
}

/// One job's row.
fn job_cells<'a>(app: &App, j: &'a Job, fit: Fit) -> Vec<Cell<'a>> {
    let t = &app.theme;
    let meter = app.rates.get(&j.job_id);
    let active = j.status == JobStatus::Running;
    let (rps, rpm) = meter
        .filter(|_| active)
        .map_or((0.0, 0.0), |m| m.rates(app.now));
    let left = j
        .total_chunks
        .saturating_sub(j.completed_chunks + j.failed_chunks);
    let eta = meter
        .filter(|_| active)
        .and_then(|m| m.eta(app.now, left, limit(app, j)))
        .map_or("—".to_string(), |d| fmt_duration(d.num_seconds()));
    // The mark shares the id's cell: every column counts.
    let mut cells = vec![Cell::from(Line::from(vec![
        mark(app, j),
        Span::raw(j.job_id.clone()),
    ]))];
    if fit.full {
        cells.push(Cell::from(j.tenant_id.clone()));
        cells.push(Cell::from(j.service.as_str()));
    }
    cells.push(Cell::from(status(app, j, fit.narrow)));
    cells.push(Cell::from(Line::from(progress_bar(
        t,
        j.completed_chunks,
        j.failed_chunks,
        j.total_chunks,
        fit.bar,
    ))));
    cells.push(Cell::from(Line::from(fmt_count(j.records)).right_aligned()));
    if !fit.narrow {
        cells.push(Cell::from(Line::from(fmt_rate(rps)).right_aligned()));
        cells.push(Cell::from(Line::from(fmt_rate(rpm)).right_aligned()));
    }
    cells.push(Cell::from(Line::from(eta).right_aligned()));
    cells.push(Cell::from(Line::from(failures(app, j)).right_aligned()));
    cells.extend(history(app, j, fit));
    cells
}

/// The run-history cells that fit: how long the run took (or has taken so far), when it
/// started (was created) and when it ended; `—` for what has not happened.
fn history(app: &App, j: &Job, fit: Fit) -> Vec<Cell<'static>> {
    let t = &app.theme;
    let time = |at: Option<chrono::DateTime<chrono::Utc>>| match at {
        Some(at) => Span::raw(at.format(TIME_FORMAT).to_string()),
        None => Span::styled("—", t.fg(t.muted)),
    };
    let end = j
        .finished_at
        .or((j.status == JobStatus::Running).then_some(app.now));
    let took = end.map_or("—".to_string(), |e| {
        fmt_duration((e - j.created_at).num_seconds())
    });
    let mut cells = Vec::new();
    if fit.duration {
        cells.push(Cell::from(Line::from(took).right_aligned()));
    }
    if fit.started {
        cells.push(Cell::from(time(Some(j.created_at))));
    }
    if fit.ended {
        cells.push(Cell::from(time(j.finished_at)));
    }
    cells
}

/// The request limit per minute of the job's tenant and service, if one is configured.
fn limit(app: &App, j: &Job) -> Option<u32> {
    app.snap
        .health
        .iter()
        .find(|h| h.tenant_id == j.tenant_id && h.service == j.service)
        .and_then(|h| h.limit_per_minute)
}

/// ✓ marked, ✗ failed chunks (while it runs too), ● running in this console.
fn mark(app: &App, j: &Job) -> Span<'static> {
    let t = &app.theme;
    let marked = app.marks.contains(&j.job_id);
    let here = app.running_here(&j.job_id);
    match (marked, j.failed_chunks > 0, here) {
        (true, _, _) => Span::styled("✓", t.fg(t.mark).add_modifier(Modifier::BOLD)),
        (false, true, _) => Span::styled("✗", t.fg(t.error).add_modifier(Modifier::BOLD)),
        (false, false, true) => Span::styled("●", t.fg(t.running)),
        _ => Span::raw(" "),
    }
}

/// A job the console's scheduler holds back reads "waiting"; the detail view and the status
/// bar say why.
fn status(app: &App, j: &Job, narrow: bool) -> Span<'static> {
    let t = &app.theme;
    let waiting = j.status == JobStatus::Pending && app.waiting(&j.job_id).is_some();
    if app.quota_wait(&j.job_id).is_some() {
        Span::styled(quota_label(narrow), t.fg(t.warn))
    } else if waiting {
        Span::styled("waiting", t.fg(t.info))
    } else {
        Span::styled(
            if narrow {
                job_status_short(j.status)
            } else {
                job_status_label(j.status)
            },
            job_status_style(t, j.status),
        )
    }
}

/// Failed chunks, or the retries under way while none has failed for good.
fn failures(app: &App, j: &Job) -> Span<'static> {
    let t = &app.theme;
    let active = j.status == JobStatus::Running;
    let retrying = app.rates.get(&j.job_id).map_or(0, |m| m.retrying);
    if j.failed_chunks > 0 {
        Span::styled(
            j.failed_chunks.to_string(),
            t.fg(t.error).add_modifier(Modifier::BOLD),
        )
    } else if retrying > 0 && active {
        Span::styled(format!("↻{retrying}"), t.fg(t.warn))
    } else {
        Span::styled("0", t.fg(t.muted))
    }
}

/// Column titles and widths for what fits.
fn columns(fit: Fit) -> (Vec<&'static str>, Vec<Constraint>) {
    let narrow = fit.narrow;
    let (mut header, mut widths) = (vec![" JOB"], vec![Constraint::Fill(1)]);
    if fit.full {
        header.extend(["TENANT", "SERVICE"]);
        widths.extend([Constraint::Length(10), Constraint::Length(11)]);
    }
    header.extend([
        "STATUS",
        "PROGRESS",
        if narrow { "RECS" } else { "RECORDS" },
    ]);
    widths.extend([
        Constraint::Length(if narrow { 9 } else { 18 }),
        Constraint::Length(fit.bar as u16 + 8),
        Constraint::Length(if narrow { 6 } else { 7 }),
    ]);
    if !narrow {
        header.extend(["REC/S", "REQ/M"]);
        widths.extend([Constraint::Length(6), Constraint::Length(6)]);
    }
    header.extend(["ETA", "FAIL"]);
    widths.extend([Constraint::Length(5), Constraint::Length(4)]);
    let history = [
        (fit.duration, "DURATION", DURATION_WIDTH),
        (fit.started, "STARTED", TIME_WIDTH),
        (fit.ended, "ENDED", TIME_WIDTH),
    ];
    for (_, title, width) in history.into_iter().filter(|(shown, ..)| *shown) {
        header.push(title);
        widths.push(Constraint::Length(width));
    }
    (header, widths)
}
