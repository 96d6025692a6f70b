//! Tenants: each tenant's connected services, their backfill state and a "needs backfill"
//! mark (no completed backfill job yet).

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table};

use super::{block, job_status_label, job_status_short, job_status_style, progress_bar};
use crate::tui::app::App;

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
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
        .map(|(i, r)| {
            let latest = r.latest.and_then(|i| app.snap.jobs.get(i));
            let state = match latest {
                Some(j) => Line::from(
                    [Span::styled(
                        if wide {
                            format!("{:<19}", job_status_label(j.status))
                        } else {
                            format!("{:<10}", job_status_short(j.status))
                        },
                        job_status_style(t, j.status),
                    )]
                    .into_iter()
                    .chain(progress_bar(
                        t,
                        j.completed_chunks,
                        j.failed_chunks,
                        j.total_chunks,
                        if wide { 10 } else { 6 },
                    ))
                    .collect::<Vec<_>>(),
                ),
                None => Line::from(Span::styled("no backfill yet", t.fg(t.muted))),
            };
            let needs = if !r.enabled {
                Span::styled("disabled", t.fg(t.muted))
            } else if r.needs_backfill {
                Span::styled(
                    "● needs backfill",
                    t.fg(t.warn).add_modifier(Modifier::BOLD),
                )
            } else {
                Span::styled("✓ backfilled", t.fg(t.ok))
            };
            let mut cells = vec![Cell::from(r.tenant_id.clone())];
            if wide {
                cells.push(Cell::from(r.display_name.clone()));
            }
            cells.extend([
                Cell::from(r.service.as_str()),
                Cell::from(state),
                Cell::from(r.jobs.to_string()),
                Cell::from(Line::from(needs)),
            ]);
            let row = Row::new(cells);
            if i == app.tenants.selected {
                row.style(t.selection())
            } else {
                row
            }
        });
    let mut header = vec!["TENANT"];
    let mut widths = vec![Constraint::Length(10)];
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
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(t.fg(t.accent).add_modifier(Modifier::BOLD)))
        .block(block(t, title));
    frame.render_widget(table, area);
    if !app.tenant_rows.is_empty() {
        super::highlight_row(frame, t, area, app.tenants.selected - app.tenants.offset);
    }
}
