//! Tenants: each tenant's connected services, their backfill state and the auto-detection
//! mark ("needs backfill" or why not), with the selected row's reason on the line below. A
//! protected tenant's id carries a bold `P` (text, so it shows without colour too): its
//! mutating actions ask for the tenant id to be typed.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::{
    block, job_status_label, job_status_short, job_status_style, progress_bar, quota_label,
};
use crate::domain::{Job, JobStatus};
use crate::engine::detect::Check;
use crate::tui::app::{App, TenantRow};
use crate::tui::theme::Theme;

/// What follows a protected tenant's id.
const PROTECTED_MARK: &str = "P";

/// The STATE column: a failure of the latest backfill first (while it runs too), else the
/// detection's verdict in a word or two.
fn mark(app: &App, t: &Theme, r: &TenantRow) -> (String, Style) {
    let latest = r.latest.and_then(|i| app.snap.jobs.get(i));
    let active = latest.is_some_and(|j| j.status.is_active());
    let failing = latest
        .filter(|j| j.status != JobStatus::Cancelled)
        .map_or(0, |j| j.failed_chunks);
    if failing > 0 {
        return (
            format!("✗ {failing} failed"),
            t.fg(t.error).add_modifier(Modifier::BOLD),
        );
    }
    let (label, style) = verdict(t, r, active);
    (label.to_string(), style)
}

fn verdict(t: &Theme, r: &TenantRow, active: bool) -> (&'static str, Style) {
    if !r.enabled {
        ("disabled", t.fg(t.muted))
    } else if r.needs_backfill {
        (
            "● needs backfill",
            t.fg(t.warn).add_modifier(Modifier::BOLD),
        )
    } else if r.check == Some(Check::Configured) {
        ("✗ not usable", t.fg(t.error))
    } else if active {
        ("▶ in progress", t.fg(t.running))
    } else if r.check == Some(Check::Freshness) {
        ("✓ has history", t.fg(t.ok))
    } else {
        ("✓ backfilled", t.fg(t.ok))
    }
}

/// Which detection check decided, as the reason line names it.
fn check_label(c: Option<Check>) -> &'static str {
    match c {
        Some(Check::Configured) => "configuration",
        Some(Check::Reenabled) => "re-enabled",
        Some(Check::History) => "backfill history",
        Some(Check::Freshness) => "raw data age",
        None => "job store",
    }
}

/// The table and, under it, the selected row's reason.
fn layout(area: Rect) -> [Rect; 2] {
    Layout::vertical([Constraint::Min(4), Constraint::Length(4)]).areas(area)
}

/// The tenant row under a click.
pub(super) fn row_at(app: &App, body: Rect, x: u16, y: u16) -> Option<usize> {
    let [table, _] = layout(body);
    let i = app.tenants.offset + super::row_on_screen(table, x, y)?;
    (i < app.tenant_rows.len()).then_some(i)
}

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let [area, why] = layout(area);
    render_why(frame, app, why);
    let wide = area.width >= 100;
    let filter = if app.tenant_filter.is_empty() {
        String::new()
    } else {
        format!(" /{}", app.tenant_filter)
    };
    let title = format!(" Tenants ({}){filter} ", app.tenant_rows.len());
    let height = usize::from(area.height.saturating_sub(3));
    let rows = app
        .tenant_rows
        .iter()
        .enumerate()
        .skip(app.tenants.offset)
        .take(height)
        .map(|(i, r)| super::table_row(t, tenant_cells(app, r, wide), i == app.tenants.selected));
    let (header, widths) = columns(wide);
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(t.fg(t.accent).add_modifier(Modifier::BOLD)))
        .block(block(t, title));
    frame.render_widget(table, area);
    if !app.tenant_rows.is_empty() {
        super::highlight_row(frame, t, area, app.tenants.selected - app.tenants.offset);
    }
}

/// One tenant's service: its latest backfill's state and the detection's verdict.
fn tenant_cells<'a>(app: &App, r: &'a TenantRow, wide: bool) -> Vec<Cell<'a>> {
    let t = &app.theme;
    let state = match r.latest.and_then(|i| app.snap.jobs.get(i)) {
        Some(j) => backfill(app, j, wide),
        None => Line::from(Span::styled("no backfill yet", t.fg(t.muted))),
    };
    let (label, style) = mark(app, t, r);
    let needs = Span::styled(label, style);
    let mut id = vec![Span::raw(r.tenant_id.clone())];
    if r.protected {
        id.push(Span::styled(
            format!(" {PROTECTED_MARK}"),
            t.fg(t.warn).add_modifier(Modifier::BOLD),
        ));
    }
    let mut cells = vec![Cell::from(Line::from(id))];
    if wide {
        cells.push(Cell::from(r.display_name.clone()));
    }
    cells.extend([
        Cell::from(r.service.as_str()),
        Cell::from(state),
        Cell::from(r.jobs.to_string()),
        Cell::from(Line::from(needs)),
    ]);
    cells
}

/// The BACKFILL column: the latest job's status and progress bar.
fn backfill(app: &App, j: &Job, wide: bool) -> Line<'static> {
    let t = &app.theme;
    // As in the jobs table: held by the scheduler reads "waiting".
    let waiting = j.status == JobStatus::Pending && app.waiting(&j.job_id).is_some();
    let (label, style) = match waiting {
        _ if app.quota_wait(&j.job_id).is_some() => (quota_label(!wide), t.fg(t.warn)),
        true => ("waiting", t.fg(t.info)),
        false if wide => (job_status_label(j.status), job_status_style(t, j.status)),
        false => (job_status_short(j.status), job_status_style(t, j.status)),
    };
    let w = if wide { 19 } else { 10 };
    let mut spans = vec![Span::styled(format!("{label:<w$}"), style)];
    spans.extend(progress_bar(
        t,
        j.completed_chunks,
        j.failed_chunks,
        j.total_chunks,
        if wide { 10 } else { 6 },
    ));
    Line::from(spans)
}

/// Column titles and widths: NAME only on wide screens.
fn columns(wide: bool) -> (Vec<&'static str>, Vec<Constraint>) {
    let mut header = vec!["TENANT"];
    let mut widths = vec![Constraint::Length(12)];
    if wide {
        header.push("NAME");
        widths.push(Constraint::Fill(1));
    }
    header.extend(["SERVICE", "BACKFILL", "JOBS", "STATE"]);
    widths.extend([
        Constraint::Length(11),
        Constraint::Length(if wide { 38 } else { 24 }),
        Constraint::Length(4),
        Constraint::Length(16),
    ]);
    (header, widths)
}

/// The selected row's detection reason: why it was or was not selected.
fn render_why(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let source = match app.snap.detected_at {
        Some(at) => format!(" Why · auto-detection at {} UTC ", at.format("%H:%M:%S")),
        None => " Why · from the job store (auto-detection has not reported) ".to_string(),
    };
    let line = match app.tenant_rows.get(app.tenants.selected) {
        Some(r) => {
            let (label, style) = mark(app, t, r);
            let mut spans = vec![Span::styled(
                format!("{} {} ", r.tenant_id, r.service),
                t.fg(t.accent).add_modifier(Modifier::BOLD),
            )];
            if r.protected {
                spans.push(Span::styled(
                    format!("{PROTECTED_MARK} protected: changes ask for the tenant id · "),
                    t.fg(t.warn).add_modifier(Modifier::BOLD),
                ));
            }
            spans.extend([
                Span::styled(label, style),
                Span::styled(format!(" · {}: ", check_label(r.check)), t.fg(t.muted)),
                Span::raw(r.reason.clone()),
            ]);
            Line::from(spans)
        }
        None => Line::from(Span::styled("no tenant service selected", t.fg(t.muted))),
    };
    frame.render_widget(
        Paragraph::new(line)
            .wrap(Wrap { trim: true })
            .block(block(t, source)),
        area,
    );
}
