//! Health: request budget per tenant + service (requests left, last 429, Retry-After),
//! circuit breaker states, and alerts (stored and live ones with the console's own findings).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::block;
use crate::engine::BreakerState;
use crate::engine::handle::RateHealth;
use crate::tui::app::{App, StatusKind};

/// The budgets table over the alerts.
fn layout(app: &App, area: Rect) -> [Rect; 2] {
    let table_h = (app.snap.health.len() as u16 + 3)
        .min(area.height / 2)
        .max(4);
    Layout::vertical([Constraint::Length(table_h), Constraint::Min(3)]).areas(area)
}

/// The budget row under a click.
pub(super) fn row_at(app: &App, body: Rect, x: u16, y: u16) -> Option<usize> {
    let [table, _] = layout(app, body);
    let i = app.health.offset + super::row_on_screen(table, x, y)?;
    (i < app.snap.health.len()).then_some(i)
}

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let [top, bottom] = layout(app, area);
    render_budgets(frame, app, top);
    render_alerts(frame, app, bottom);
}

/// The rate budget and breaker of each tenant's service.
fn render_budgets(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let health = &app.snap.health;
    let height = usize::from(area.height.saturating_sub(3));
    let rows = health
        .iter()
        .enumerate()
        .skip(app.health.offset)
        .take(height)
        .map(|(i, h)| super::table_row(t, budget_cells(app, h), i == app.health.selected));
    let header = Row::new([
        "TENANT", "SERVICE", "LIMIT/M", "USED/M", "LEFT", "LAST 429", "RETRY", "BREAKER", "FAILS",
    ])
    .style(t.fg(t.accent).add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Length(10),
        Constraint::Length(11),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(5),
    ];
    let title = " Rate budget and breakers per tenant · service ";
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(block(t, title)),
        area,
    );
    if !health.is_empty() {
        super::highlight_row(
            frame,
            t,
            area,
            app.health.selected.saturating_sub(app.health.offset),
        );
    }
}

/// One tenant's service: its limit, use, what is left, its last 429 and its breaker.
fn budget_cells<'a>(app: &App, h: &'a RateHealth) -> Vec<Cell<'a>> {
    let t = &app.theme;
    let opt = |v: Option<u64>| v.map_or("—".to_string(), |v| v.to_string());
    let left = h.requests_left();
    let left_style = match (left, h.limit_per_minute) {
        (Some(l), Some(lim)) if l * 10 < u64::from(lim) => t.fg(t.warn),
        _ => t.fg(t.fg),
    };
    let last = h
        .last_429
        .map_or("—".to_string(), |at| at.format("%H:%M:%S").to_string());
    vec![
        Cell::from(h.tenant_id.clone()),
        Cell::from(h.service.as_str()),
        Cell::from(
            Line::from(h.limit_per_minute.map_or("none".into(), |l| l.to_string())).right_aligned(),
        ),
        Cell::from(Line::from(h.used_last_minute.to_string()).right_aligned()),
        Cell::from(Line::from(Span::styled(opt(left), left_style)).right_aligned()),
        Cell::from(Span::styled(
            last,
            if h.last_429.is_some() {
                t.fg(t.warn)
            } else {
                t.fg(t.muted)
            },
        )),
        Cell::from(
            Line::from(
                h.retry_after_ms
                    .map_or("—".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
            )
            .right_aligned(),
        ),
        Cell::from(breaker(app, h.breaker)),
        Cell::from(Line::from(h.consecutive_failures.to_string()).right_aligned()),
    ]
}

fn breaker(app: &App, state: BreakerState) -> Span<'static> {
    let t = &app.theme;
    match state {
        BreakerState::Closed => Span::styled("closed", t.fg(t.ok)),
        BreakerState::HalfOpen => Span::styled("half-open", t.fg(t.warn)),
        BreakerState::Open => Span::styled("OPEN", t.fg(t.error).add_modifier(Modifier::BOLD)),
    }
}

/// What needs attention, most severe first, or that nothing does.
fn render_alerts(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let rows = usize::from(area.height.saturating_sub(2));
    let mut lines: Vec<Line> = app
        .alerts
        .iter()
        .take(rows)
        .map(|(kind, text)| {
            let (mark, color) = match kind {
                StatusKind::Error => ("✗ ", t.error),
                StatusKind::Warn => ("! ", t.warn),
                StatusKind::Info => ("· ", t.info),
            };
            Line::from(vec![
                Span::styled(mark, t.fg(color)),
                Span::styled(text.clone(), t.fg(color)),
            ])
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::from(Span::styled(
            "✓ nothing needs attention",
            t.fg(t.ok),
        )));
    }
    let title = format!(" Alerts ({}) ", app.alerts.len());
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(block(t, title)),
        area,
    );
}
