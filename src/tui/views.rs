//! Pure views: `render(frame, &app)` draws the header with breadcrumbs, the current view,
//! the status bar and any overlay. Views read the model and build only the rows on screen.

mod detail;
mod handoff;
mod health;
mod jobs;
mod logs;
mod overlay;
mod tenants;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row};

use super::app::{App, Mode, StatusKind, View};
use super::theme::Theme;
use crate::domain::{ChunkStatus, JobStatus};

pub fn render(frame: &mut Frame, app: &App) {
    let area = frame.area();
    frame.render_widget(Block::new().style(app.theme.text()), area);
    let [header, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(frame, app, header);
    match app.view() {
        View::Tenants => tenants::render(frame, app, body),
        View::Jobs => jobs::render(frame, app, body),
        View::Detail => detail::render(frame, app, body),
        View::Logs => logs::render(frame, app, body),
        View::Health => health::render(frame, app, body),
    }
    render_status(frame, app, status);
    match &app.mode {
        Mode::Help => overlay::help(frame, app, body),
        Mode::Confirm(c) => overlay::confirm(frame, app, body, c),
        Mode::Form(f) => overlay::form(frame, app, body, f),
        Mode::Quitting { prompt } => overlay::quitting(frame, app, body, prompt),
        _ => {}
    }
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
        "{} jobs · {} running · {} failed ",
        c.total, c.running, c.failed
    );
    let clock = app
        .snap
        .taken_at
        .map(|at| format!("· {} UTC ", at.format("%H:%M:%S")))
        .unwrap_or_default();
    let badge = if app.read_only { " READ-ONLY " } else { "" };
    // Cloud mode says so: the same keys act on another deployment's jobs.
    let cloud = if app.is_cloud() { " CLOUD " } else { "" };
    // The breadcrumbs matter most: the right side gives way when space is short.
    let room = usize::from(area.width).saturating_sub(17 + crumbs.chars().count());
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
                Line::from(Span::styled(s.text.clone(), t.fg(color)))
            }
            None => Line::from(Span::styled(hints(app), t.fg(t.muted))),
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn hints(app: &App) -> String {
    let ro = if app.read_only { "read-only · " } else { "" };
    let keys = match app.view() {
        View::Tenants => "Enter jobs · t trigger · T transform · / filter",
        View::Jobs => "Enter chunks · space mark · r R c p · v verify · T · l logs · s sort",
        View::Detail => "←→ chunk · ↑↓ table · n failed · l logs · r R c p · v T",
        View::Logs => "/ search · n N · f follow · w wrap · L level · x context",
        View::Health => ":jobs · :tenants · :logs",
    };
    format!("{ro}{keys} · : command · ? help")
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

/// `done/total` as a bar of `width` cells: completed in ok, failed in error, the rest muted.
pub(crate) fn progress_bar<'a>(
    t: &Theme,
    done: u32,
    failed: u32,
    total: u32,
    width: usize,
) -> Vec<Span<'a>> {
    let cells = |n: u32| {
        if total == 0 {
            0
        } else {
            ((u64::from(n) * width as u64).div_ceil(u64::from(total)) as usize).min(width)
        }
    };
    let ok = cells(done).min(width);
    let bad = cells(failed).min(width - ok);
    vec![
        Span::styled("█".repeat(ok), t.fg(t.ok)),
        Span::styled("█".repeat(bad), t.fg(t.error)),
        Span::styled("░".repeat(width - ok - bad), t.fg(t.muted)),
        Span::raw(format!(" {}/{}", done + failed, total)),
    ]
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

/// Paints the selected row of a bordered table (with a header row) in the selection style,
/// over whatever colours its cells have, so the cursor reads the same on every row.
pub(crate) fn highlight_row(frame: &mut Frame, t: &Theme, area: Rect, row_on_screen: usize) {
    let y = area.y + 2 + row_on_screen as u16;
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
