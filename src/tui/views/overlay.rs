//! Overlays drawn over the current view: the `?` help, confirms, and the trigger form with
//! its plan preview.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::{block, centered};
use crate::engine::handle::Target;
use crate::tui::app::{App, Confirm, Protect};
use crate::tui::form::{Field, TriggerForm};
use crate::tui::format::{clip, fmt_duration};
use crate::tui::theme::Theme;

pub fn help(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let bindings = app.keymap.help_for(app.view());
    // One column when it fits, else two side by side with shortened texts.
    let columns = if bindings.len() as u16 + 3 <= area.height {
        1
    } else {
        2
    };
    let width = if columns == 1 { 76 } else { area.width };
    let per_col = bindings.len().div_ceil(columns);
    let h = (per_col as u16 + 3).min(area.height);
    let rect = centered(area, width, h);
    let col_w = usize::from(rect.width.saturating_sub(2)) / columns;
    let entry = |b: &crate::tui::keymap::KeyBinding| {
        let off = if b.action.is_mutating() && app.read_only {
            " (off)"
        } else {
            ""
        };
        let text = clip(&format!("{}{off}", b.help), col_w.saturating_sub(11));
        vec![
            Span::styled(
                format!("{:>8}  ", b.label),
                t.fg(t.accent).add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                format!("{text:<w$}", w = col_w.saturating_sub(10)),
                t.fg(if off.is_empty() { t.fg } else { t.warn }),
            ),
        ]
    };
    let mut lines: Vec<Line> = (0..per_col)
        .map(|row| {
            let mut spans = Vec::new();
            for c in 0..columns {
                if let Some(b) = bindings.get(c * per_col + row) {
                    spans.extend(entry(b));
                }
            }
            Line::from(spans)
        })
        .collect();
    lines.push(Line::from(Span::styled(
        "any key closes this help",
        t.fg(t.muted),
    )));
    frame.render_widget(Clear, rect);
    let title = format!(" Keys: {} view ", app.view().name());
    frame.render_widget(
        Paragraph::new(lines).block(block(t, title)).style(t.text()),
        rect,
    );
}

pub fn confirm(frame: &mut Frame, app: &App, area: Rect, c: &Confirm) {
    question(frame, app, area, &c.prompt, " Confirm ");
}

/// `q` while the console's jobs run: what quitting does to them.
pub fn quitting(frame: &mut Frame, app: &App, area: Rect, prompt: &str) {
    question(frame, app, area, prompt, " Quit ");
}

/// A protected tenant's change: what it does, and the tenant id typed so far.
pub fn protect(frame: &mut Frame, app: &App, area: Rect, p: &Protect) {
    let t = &app.theme;
    let rect = centered(area, 70, if p.context.is_some() { 10 } else { 8 });
    frame.render_widget(Clear, rect);
    let mut lines = vec![Line::from(Span::styled(
        p.prompt.clone(),
        t.fg(t.warn).add_modifier(Modifier::BOLD),
    ))];
    if let Some(context) = &p.context {
        lines.push(Line::from(Span::styled(context.clone(), t.fg(t.muted))));
    }
    lines.extend([
        Line::default(),
        Line::from(vec![
            Span::styled("tenant id: ", t.fg(t.accent).add_modifier(Modifier::BOLD)),
            Span::raw(format!("{}▏", p.input)),
        ]),
        answer_keys(
            t,
            ("Enter", ": confirm    "),
            ("Esc", ": cancel    Ctrl-U: clear"),
        ),
    ]);
    boxed(frame, t, rect, lines, " Protected tenant ");
}

/// The keys that answer a question, with what each does: yes in the ok colour, no in the
/// error colour.
fn answer_keys(t: &Theme, yes: (&str, &str), no: (&str, &str)) -> Line<'static> {
    Line::from(vec![
        Span::styled(yes.0.to_string(), t.fg(t.ok).add_modifier(Modifier::BOLD)),
        Span::raw(yes.1.to_string()),
        Span::styled(no.0.to_string(), t.fg(t.error).add_modifier(Modifier::BOLD)),
        Span::raw(no.1.to_string()),
    ])
}

/// `lines`, wrapped, in a titled box drawn over `rect`.
fn boxed(frame: &mut Frame, t: &Theme, rect: Rect, lines: Vec<Line<'static>>, title: &str) {
    let p = Paragraph::new(lines)
        .wrap(Wrap { trim: true })
        .block(block(t, title.to_string()))
        .style(t.text());
    frame.render_widget(p, rect);
}

fn question(frame: &mut Frame, app: &App, area: Rect, prompt: &str, title: &str) {
    let t = &app.theme;
    let rect = centered(area, 70, 7);
    frame.render_widget(Clear, rect);
    let lines = vec![
        Line::from(Span::styled(
            prompt.to_string(),
            t.fg(t.fg).add_modifier(Modifier::BOLD),
        )),
        Line::default(),
        answer_keys(t, ("y", " / Enter: yes    "), ("n", " / Esc: no")),
    ];
    boxed(frame, t, rect, lines, title);
}

pub fn form(frame: &mut Frame, app: &App, area: Rect, f: &TriggerForm) {
    let t = &app.theme;
    let mut lines: Vec<Line> = Field::ALL
        .into_iter()
        .map(|field| field_line(t, f, field))
        .collect();
    if let Some(tables) = f.service().and_then(|s| app.snap.tables.get(&s)) {
        lines.push(Line::from(Span::styled(
            format!("  tables: {}", tables.join(", ")),
            t.fg(t.muted),
        )));
    }
    lines.push(Line::default());
    lines.extend(preview_lines(t, f));
    lines.push(Line::default());
    lines.push(Line::from(Span::styled(
        "  Tab ↑↓ field · ←→ choose · type to edit · Enter confirm · Esc close",
        t.fg(t.muted),
    )));
    // Long plan lines and errors wrap rather than vanish at the box's edge.
    let inner = usize::from(area.width.min(78).saturating_sub(2)).max(1);
    let rows: usize = lines.iter().map(|l| l.width().div_ceil(inner).max(1)).sum();
    let rect = centered(area, 78, rows as u16 + 2);
    frame.render_widget(Clear, rect);
    let p = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(block(t, " Trigger a backfill "))
        .style(t.text());
    frame.render_widget(p, rect);
}

/// One field of the form: its label, its value (or what an empty one means), the cursor.
fn field_line(t: &Theme, f: &TriggerForm, field: Field) -> Line<'static> {
    let focused = f.focus == field;
    let value = match field {
        Field::Tenant => f.tenant_id().unwrap_or("—").to_string(),
        Field::Service => f.service().map_or("—".into(), |s| s.to_string()),
        Field::Tables => f.tables.clone(),
        Field::Start => f.start.clone(),
        Field::End => f.end.clone(),
        Field::ChunkDays => f.chunk_days.clone(),
        Field::Target => match f.target {
            Target::Local => "local (in this console)".into(),
            Target::Cloud => "cloud".into(),
        },
    };
    let placeholder = match field {
        Field::Tables => "every table, priority first",
        Field::Start => "default: end minus the lookback",
        Field::End => "default: now (frozen into the job)",
        Field::ChunkDays => "default: tenant or service setting",
        _ => "",
    };
    let shown = if value.is_empty() {
        Span::styled(placeholder, t.fg(t.muted))
    } else {
        Span::styled(value, t.fg(t.fg))
    };
    let label_style = if focused {
        t.fg(t.accent).add_modifier(Modifier::BOLD)
    } else {
        t.fg(t.muted)
    };
    let (open, close) = if field.is_choice() {
        ("‹ ", " ›")
    } else {
        ("", "")
    };
    Line::from(vec![
        Span::styled(if focused { "▶ " } else { "  " }, t.fg(t.accent)),
        Span::styled(format!("{:<18}", field.label()), label_style),
        Span::styled(open, t.fg(t.muted)),
        shown,
        Span::styled(close, t.fg(t.muted)),
        if focused && !field.is_choice() {
            Span::styled("▏", t.fg(t.accent))
        } else {
            Span::raw("")
        },
    ])
}

/// The plan preview: still planning, what is wrong, or the plan's size and cost.
fn preview_lines(t: &Theme, f: &TriggerForm) -> Vec<Line<'static>> {
    let p = match &f.preview {
        None => return vec![Line::from(Span::styled("  planning…", t.fg(t.muted)))],
        Some(Err(e)) => {
            return vec![Line::from(Span::styled(format!("  ✗ {e}"), t.fg(t.error)))];
        }
        Some(Ok(p)) => p,
    };
    let mut lines = vec![Line::from(vec![
        Span::styled("  plan  ", t.fg(t.accent).add_modifier(Modifier::BOLD)),
        Span::raw(p.window.clone()),
    ])];
    let per_table = p
        .tables
        .iter()
        .map(|(n, c)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    lines.push(Line::from(format!(
        "        {} chunk(s): {per_table}",
        p.chunks
    )));
    let duration = match (p.duration_secs, p.rate_per_minute) {
        (Some(s), Some(r)) => format!(
            "at least {} at {r} requests/min",
            fmt_duration(s.ceil() as i64)
        ),
        _ => "no rate limit configured".into(),
    };
    lines.push(Line::from(format!(
        "        ≥ {} API calls · {duration}",
        p.api_calls
    )));
    if let Some(quota) = &p.quota {
        lines.push(Line::from(format!("        {quota}")));
    }
    for w in &p.first_windows {
        lines.push(Line::from(Span::styled(
            format!("        {w}"),
            t.fg(t.muted),
        )));
    }
    lines
}
