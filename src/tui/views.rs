//! Pure views: `render(frame, &app)` draws the header with breadcrumbs, the current view,
//! the status bar and any overlay. Views read the model and build only the rows on screen.

mod describe;
mod detail;
mod handoff;
mod health;
mod hints;
mod jobs;
mod logs;
mod overlay;
mod pulse;
mod tenants;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row};

use super::app::{App, Mode, StatusKind, View};
use super::format::clip;
use super::theme::Theme;
use crate::domain::{ChunkStatus, JobStatus};

/// The screen's rows: header, the view's body, the alert bar (while it shows) and status.
fn screen(app: &App, area: Rect) -> [Rect; 4] {
    Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(app.alert_bar_rows()),
        Constraint::Length(1),
    ])
    .areas(area)
}

pub fn render(frame: &mut Frame, app: &App) {
    let area = frame.area();
    frame.render_widget(Block::new().style(app.theme.text()), area);
    let [header, body, bar, status] = screen(app, area);
    render_header(frame, app, header);
    render_alert_bar(frame, app, bar);
    match app.view() {
        View::Tenants => tenants::render(frame, app, body),
        View::Jobs => jobs::render(frame, app, body),
        View::Detail => detail::render(frame, app, body),
        View::Logs => logs::render(frame, app, body),
        View::Health => health::render(frame, app, body),
        View::Pulse => pulse::render(frame, app, body),
    }
    render_status(frame, app, status);
    match &app.mode {
        Mode::Help => overlay::help(frame, app, body),
        Mode::Confirm(c) => overlay::confirm(frame, app, body, c),
        Mode::Form(f) => overlay::form(frame, app, body, f),
        Mode::Describe { key, scroll } => describe::render(frame, app, body, key, *scroll),
        Mode::Quitting { prompt } => overlay::quitting(frame, app, body, prompt),
        Mode::Protect(p) => overlay::protect(frame, app, body, p),
        _ => {}
    }
}

/// The text `d` shows for a chunk, as plain lines (for tests and the tmux check).
pub fn describe_text(app: &App, key: &crate::domain::ChunkKey) -> String {
    describe::lines(app, key)
        .iter()
        .map(|l| {
            l.spans
                .iter()
                .map(|s| s.content.as_ref())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The newest unacknowledged failure, until `a`: what failed, why, and the keys.
fn render_alert_bar(frame: &mut Frame, app: &App, area: Rect) {
    if area.height == 0 {
        return;
    }
    let t = &app.theme;
    let open: Vec<_> = app.failures.open().collect();
    let Some(f) = open.first() else {
        return;
    };
    let more = match open.len() {
        1 => String::new(),
        n => format!(" (+{} more)", n - 1),
    };
    let keys = hints::alert_keys(app);
    let width = usize::from(area.width);
    let head = format!("✗ {} failed{more}: ", f.what());
    let room = width.saturating_sub(head.chars().count() + keys.chars().count());
    let text = format!("{head}{}", clip(&f.error, room));
    let pad = width.saturating_sub(text.chars().count() + keys.chars().count());
    let style = t
        .fg(t.error)
        .add_modifier(Modifier::REVERSED | Modifier::BOLD);
    let line = Line::from(vec![
        Span::styled(format!("{text}{}", " ".repeat(pad)), style),
        Span::styled(keys, style),
    ]);
    frame.render_widget(Paragraph::new(clip_line(line, width)), area);
}

/// A line cut to `width` cells (the last cell `…` when cut).
pub(crate) fn clip_line(line: Line<'_>, width: usize) -> Line<'_> {
    if line.width() <= width {
        return line;
    }
    let mut left = width.saturating_sub(1);
    let mut spans = Vec::new();
    for s in line.spans {
        if left == 0 {
            break;
        }
        let text: String = s.content.chars().take(left).collect();
        left -= text.chars().count();
        spans.push(Span::styled(text, s.style));
    }
    spans.push(Span::raw("…"));
    Line::from(spans)
}

/// A block title cut to fit a box `width` cells wide.
pub(crate) fn clip_title(title: &str, width: u16) -> String {
    clip(title, usize::from(width.saturating_sub(4)))
}

/// A bordered block titled in the theme's title colour.
pub(crate) fn block<'a>(theme: &Theme, title: impl Into<Line<'a>>) -> Block<'a> {
    Block::new()
        .borders(Borders::ALL)
        .border_style(theme.fg(theme.border))
        .title(
            title
                .into()
                .style(theme.fg(theme.title).add_modifier(Modifier::BOLD)),
        )
}

fn render_header(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let crumbs = app
        .stack
        .iter()
        .map(|r| r.crumb())
        .collect::<Vec<_>>()
        .join(" › ");
    let c = &app.counts;
    let counts = format!(
        "{} · {} running · {} failed ",
        super::app::plural(c.total, "job"),
        c.running,
        c.failed
    );
    // Failed chunks of jobs still running: kept when nothing else of the right side fits.
    let failing = match c.failing_chunks {
        0 => String::new(),
        n => format!(" ✗ {} failing ", super::app::plural(n as usize, "chunk")),
    };
    let clock = app
        .snap
        .taken_at
        .map(|at| format!("· {} UTC ", at.format("%H:%M:%S")))
        .unwrap_or_default();
    let badge = if app.read_only { " READ-ONLY " } else { "" };
    // Cloud mode says so: the same keys act on another deployment's jobs.
    let cloud = if app.is_cloud() { " CLOUD " } else { "" };
    // The breadcrumbs matter most: the right side gives way when space is short.
    let room = usize::from(area.width)
        .saturating_sub(17 + crumbs.chars().count() + failing.chars().count());
    let right_text = [
        format!("{counts}{clock}"),
        counts.clone(),
        format!("{} running ", c.running),
        String::new(),
    ]
    .into_iter()
    .find(|r| r.chars().count() + badge.len() + cloud.len() <= room)
    .unwrap_or_default();
    let mut right = vec![Span::raw(right_text)];
    if !failing.is_empty() {
        right.push(Span::styled(
            failing,
            t.fg(t.error)
                .add_modifier(Modifier::BOLD | Modifier::REVERSED),
        ));
    }
    if app.is_cloud() {
        right.push(Span::styled(
            cloud,
            Style::new()
                .fg(t.header_fg)
                .bg(t.info)
                .add_modifier(Modifier::BOLD),
        ));
    }
    if app.read_only {
        right.push(Span::styled(
            badge,
            Style::new()
                .fg(t.header_fg)
                .bg(t.warn)
                .add_modifier(Modifier::BOLD),
        ));
    }
    let left = Line::from(vec![
        Span::styled(" avesa-console ", t.header().add_modifier(Modifier::BOLD)),
        Span::raw(" "),
        Span::styled(crumbs, t.fg(t.accent).add_modifier(Modifier::BOLD)),
    ]);
    let right = Line::from(right).right_aligned();
    let width: u16 = right.width() as u16;
    let [l, r] = Layout::horizontal([Constraint::Min(1), Constraint::Length(width)]).areas(area);
    frame.render_widget(Paragraph::new(left), l);
    frame.render_widget(Paragraph::new(right).style(t.fg(t.muted)), r);
}

fn render_status(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let line = match &app.mode {
        Mode::Command { input } => {
            let hint = super::update::prompt::hint(app, input);
            Line::from(vec![
                Span::styled(format!(":{input}"), t.fg(t.accent)),
                Span::styled("▏", t.fg(t.accent)),
                Span::styled(hint, t.fg(t.muted)),
            ])
        }
        Mode::Filter { input } => Line::from(vec![
            Span::styled(format!("/{input}"), t.fg(t.accent)),
            Span::styled("▏  Enter keeps the filter · Esc clears it", t.fg(t.muted)),
        ]),
        Mode::Search { input } => Line::from(vec![
            Span::styled(format!("/{input}"), t.fg(t.accent)),
            Span::styled(
                format!(
                    "▏  {} match(es) · Enter jumps · Esc clears",
                    app.logs.match_count()
                ),
                t.fg(t.muted),
            ),
        ]),
        _ => match &app.status {
            Some(s) => {
                let color = match s.kind {
                    StatusKind::Info => t.info,
                    StatusKind::Warn => t.warn,
                    StatusKind::Error => t.error,
                };
                Line::from(Span::styled(
                    clip(&s.text, usize::from(area.width)),
                    t.fg(color),
                ))
            }
            None => Line::from(Span::styled(
                hints::line(app, usize::from(area.width)),
                t.fg(t.muted),
            )),
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// Colour role of a job status.
pub(crate) fn job_status_style(t: &Theme, s: JobStatus) -> Style {
    t.fg(match s {
        JobStatus::Running => t.running,
        JobStatus::Pending => t.muted,
        JobStatus::Paused => t.warn,
        JobStatus::Completed => t.ok,
        JobStatus::CompletedWithErrors => t.warn,
        JobStatus::Failed => t.error,
        JobStatus::Cancelled => t.muted,
    })
}

/// A status as the tables show it (short enough for the column).
pub(crate) fn job_status_label(s: JobStatus) -> &'static str {
    match s {
        JobStatus::CompletedWithErrors => "completed (errors)",
        other => other.as_str(),
    }
}

pub(crate) fn chunk_style(t: &Theme, s: ChunkStatus, retrying: bool) -> Style {
    t.fg(match s {
        ChunkStatus::Succeeded => t.ok,
        ChunkStatus::Failed => t.error,
        ChunkStatus::Running => t.running,
        ChunkStatus::Pending if retrying => t.warn,
        ChunkStatus::Pending | ChunkStatus::Cancelled => t.muted,
    })
}

/// One glyph per chunk status, so the heatmap reads without colour too.
pub(crate) fn chunk_glyph(s: ChunkStatus, retrying: bool) -> &'static str {
    match s {
        ChunkStatus::Succeeded => "█",
        ChunkStatus::Failed => "✗",
        ChunkStatus::Running => "▶",
        ChunkStatus::Pending if retrying => "!",
        ChunkStatus::Pending => "·",
        ChunkStatus::Cancelled => "-",
    }
}

/// A job waiting for its API quota: `waiting_for_quota`, `quota` on narrow screens.
pub(crate) fn quota_label(narrow: bool) -> &'static str {
    if narrow {
        "quota"
    } else {
        crate::domain::WAITING_FOR_QUOTA
    }
}

/// A status short enough for narrow screens (at most 9 characters).
pub(crate) fn job_status_short(s: JobStatus) -> &'static str {
    match s {
        JobStatus::CompletedWithErrors => "w/ errors",
        other => other.as_str(),
    }
}

/// `done/total` as a bar of `width` cells: completed in ok (rounded down, so only a finished
/// plan fills the bar), failed as `✗` in error (at least one cell, so a failure never hides,
/// in colour or not), the rest muted.
pub(crate) fn progress_bar<'a>(
    t: &Theme,
    done: u32,
    failed: u32,
    total: u32,
    width: usize,
) -> Vec<Span<'a>> {
    let (ok, bad) = bar_cells(done, failed, total, width);
    vec![
        Span::styled("█".repeat(ok), t.fg(t.ok)),
        Span::styled("✗".repeat(bad), t.fg(t.error)),
        Span::styled("░".repeat(width - ok - bad), t.fg(t.muted)),
        Span::raw(format!(" {}/{}", done + failed, total)),
    ]
}

/// Cells of a bar for done and failed chunks: a bar is full only when every chunk ended.
pub(crate) fn bar_cells(done: u32, failed: u32, total: u32, width: usize) -> (usize, usize) {
    if total == 0 || width == 0 {
        return (0, 0);
    }
    let floor = |n: u32| (u64::from(n) * width as u64 / u64::from(total)) as usize;
    let cap = if done + failed < total {
        width - 1
    } else {
        width
    };
    let mut ok = floor(done).min(cap);
    let mut bad = if failed > 0 {
        floor(failed).max(1).min(cap - ok)
    } else {
        0
    };
    if failed > 0 && bad == 0 && ok > 0 {
        ok -= 1;
        bad = 1;
    }
    if done > 0 && ok == 0 && ok + bad < cap {
        ok = 1;
    }
    (ok, bad)
}

/// A table row, in the selection style when it is the selected one.
pub(crate) fn table_row<'a>(t: &Theme, cells: Vec<Cell<'a>>, selected: bool) -> Row<'a> {
    let row = Row::new(cells);
    if selected {
        row.style(t.selection())
    } else {
        row
    }
}

/// Where a bordered table with column titles draws its first row: under the top border and
/// the titles.
const FIRST_ROW: u16 = 2;

/// Paints the selected row of a bordered table (with a header row) in the selection style,
/// over whatever colours its cells have, so the cursor reads the same on every row.
pub(crate) fn highlight_row(frame: &mut Frame, t: &Theme, area: Rect, row_on_screen: usize) {
    let y = area.y + FIRST_ROW + row_on_screen as u16;
    if y + 1 >= area.y + area.height {
        return;
    }
    let rect = Rect {
        x: area.x + 1,
        y,
        width: area.width.saturating_sub(2),
        height: 1,
    };
    frame.buffer_mut().set_style(rect, t.selection());
}

/// The row of a bordered table with column titles drawn in `area` under the screen cell
/// (`x`, `y`), counted from the first row on screen: `highlight_row` undone.
pub(crate) fn row_on_screen(area: Rect, x: u16, y: u16) -> Option<usize> {
    let inside = x > area.x
        && x + 1 < area.x + area.width
        && y >= area.y + FIRST_ROW
        && y + 1 < area.y + area.height;
    inside.then(|| usize::from(y - area.y - FIRST_ROW))
}

/// The row of the current view's list under the screen cell (`x`, `y`) of a `app.width` x
/// `app.height` screen (a click): tenants, jobs, the detail view's chunks, the health
/// view's budgets. Hit areas come from the layouts the views draw with.
pub fn row_at(app: &App, x: u16, y: u16) -> Option<usize> {
    let [_, body, _, _] = screen(app, Rect::new(0, 0, app.width, app.height));
    match app.view() {
        View::Tenants => tenants::row_at(app, body, x, y),
        View::Jobs => jobs::row_at(app, body, x, y),
        View::Detail => detail::row_at(app, body, x, y),
        View::Health => health::row_at(app, body, x, y),
        View::Logs | View::Pulse => None,
    }
}

/// A centred rectangle of at most `w` x `h` inside `area`.
pub(crate) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

#[cfg(test)]
mod tests {
    use super::bar_cells;

    #[test]
    fn bars_fill_only_when_every_chunk_ended() {
        assert_eq!(bar_cells(98, 0, 108, 10), (9, 0), "98/108 is not full");
        assert_eq!(bar_cells(108, 0, 108, 10), (10, 0));
        assert_eq!(
            bar_cells(100, 4, 108, 10),
            (8, 1),
            "a failure shows, the rest too"
        );
        assert_eq!(bar_cells(9, 1, 10, 3), (2, 1));
        assert_eq!(bar_cells(0, 1, 200, 6), (0, 1));
    }
}
