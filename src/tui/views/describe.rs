//! `d` / `!`: one chunk described over the current view: every field of the chunk, its full
//! error, the request that failed and the engine's next step (`engine::retry::next_action`),
//! and its attempts as the JSON-lines log recorded them, wrapped and scrollable.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::{block, chunk_style};
use crate::domain::{Chunk, ChunkKey};
use crate::engine::retry::next_action;
use crate::tui::app::App;
use crate::tui::format::fmt_duration;
use crate::tui::logs::{ChunkFilter, Level};
use crate::tui::theme::Theme;

pub fn render(frame: &mut Frame, app: &App, area: Rect, key: &ChunkKey, scroll: u16) {
    let t = &app.theme;
    let rect = super::centered(area, 110, area.height);
    frame.render_widget(Clear, rect);
    let lines = lines(app, key);
    let title = format!(" Chunk {key} · ↑↓ scroll · y copy · o pager · Esc ");
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0))
            .block(block(t, super::clip_title(&title, rect.width)))
            .style(t.text()),
        rect,
    );
}

/// The described chunk's lines: fields, error, request, next step, attempts.
pub fn lines(app: &App, key: &ChunkKey) -> Vec<Line<'static>> {
    let t = &app.theme;
    let chunk = app
        .snap
        .chunks
        .get(&key.job_id)
        .and_then(|cs| cs.iter().find(|c| &c.key == key));
    let Some(c) = chunk else {
        let mut out = vec![Line::from(Span::styled(
            "reading the chunk from the job store…",
            t.fg(t.muted),
        ))];
        if let Some(f) = app
            .failures
            .list
            .iter()
            .find(|f| f.key.as_ref() == Some(key))
        {
            out.push(field(t, "error", &f.error, t.error));
        }
        return out;
    };
    let max = app.job(&key.job_id).map_or(0, |j| j.max_attempts);
    let mut out = fields(app, c, max);
    out.push(Line::raw(""));
    out.push(heading(t, "Error"));
    out.push(Line::from(Span::styled(
        c.last_error.clone().unwrap_or_else(|| "none".into()),
        t.fg(if c.last_error.is_some() {
            t.error
        } else {
            t.muted
        }),
    )));
    if let Some(req) = request(c) {
        out.push(field(t, "request", &req, t.fg));
    }
    out.push(field(t, "next", &next_action(c, max, app.now), t.warn));
    out.push(Line::raw(""));
    out.extend(attempts(app, key));
    out
}

fn heading(t: &Theme, text: &str) -> Line<'static> {
    Line::from(Span::styled(
        text.to_string(),
        t.fg(t.accent).add_modifier(Modifier::BOLD),
    ))
}

fn field(t: &Theme, name: &str, value: &str, color: ratatui::style::Color) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{name:<10} "), t.fg(t.muted)),
        Span::styled(value.to_string(), t.fg(color)),
    ])
}

/// Every stored field of the chunk.
fn fields(app: &App, c: &Chunk, max: u32) -> Vec<Line<'static>> {
    let t = &app.theme;
    let when = |at: Option<chrono::DateTime<chrono::Utc>>| {
        at.map_or("—".to_string(), |at| {
            at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        })
    };
    let took = match (c.started_at, c.finished_at) {
        (Some(s), Some(f)) => fmt_duration((f - s).num_seconds()),
        _ => "—".into(),
    };
    let cp = &c.checkpoint;
    vec![
        Line::from(vec![
            Span::styled(format!("{:<10} ", "status"), t.fg(t.muted)),
            Span::styled(c.status.to_string(), chunk_style(t, c.status, false)),
        ]),
        field(t, "job", &c.key.job_id, t.fg),
        field(t, "table", &format!("{} #{}", c.key.table, c.key.seq), t.fg),
        field(
            t,
            "window",
            &format!(
                "{} → {} (end excluded)",
                c.window.start.format("%Y-%m-%d %H:%M:%S"),
                c.window.end.format("%Y-%m-%d %H:%M:%S")
            ),
            t.fg,
        ),
        field(
            t,
            "attempts",
            &format!("{} of at most {max}", c.attempts),
            t.fg,
        ),
        field(t, "started", &when(c.started_at), t.fg),
        field(
            t,
            "finished",
            &format!("{} ({took})", when(c.finished_at)),
            t.fg,
        ),
        field(t, "not before", &when(c.not_before), t.fg),
        field(
            t,
            "lease",
            &match &c.lease_owner {
                Some(o) => format!("{o} until {}", when(c.lease_expires_at)),
                None => "none".into(),
            },
            t.fg,
        ),
        field(
            t,
            "checkpoint",
            &format!(
                "{} records · {} pages · {} parts · cursor {}",
                cp.records,
                cp.pages,
                cp.parts,
                cp.cursor.as_deref().unwrap_or("none")
            ),
            t.fg,
        ),
    ]
}

/// The request that failed as the error names it: `GET /path → HTTP 400 (request id …)`.
fn request(c: &Chunk) -> Option<String> {
    let e = c.last_error.as_deref()?;
    let at = e.find("HTTP ")?;
    let status: String = e[at + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let (method, rest) = ["GET ", "POST "]
        .iter()
        .find_map(|m| e.find(m).map(|i| (m.trim(), &e[i + m.len()..])))
        .unwrap_or(("", ""));
    let path: String = rest
        .chars()
        .take_while(|ch| !ch.is_whitespace() && *ch != ';' && *ch != ')')
        .collect();
    let id = e
        .find("request id ")
        .map(|i| e[i + 11..].split([')', ';', ' ']).next().unwrap_or(""))
        .filter(|s| !s.is_empty());
    let mut out = String::new();
    if !method.is_empty() {
        out.push_str(&format!("{method} {path} → "));
    }
    out.push_str(&format!("HTTP {status}"));
    match id {
        Some(id) => out.push_str(&format!(" · request id {id}")),
        None => out.push_str(" · no request id returned"),
    }
    Some(out)
}

/// The chunk's attempts as the log recorded them: each start, retry and failure with its time.
fn attempts(app: &App, key: &ChunkKey) -> Vec<Line<'static>> {
    let t = &app.theme;
    let filter = ChunkFilter {
        job_id: key.job_id.clone(),
        table: Some(key.table.clone()),
        seq: Some(key.seq),
    };
    let mut out = vec![heading(t, "Attempts (from the log)")];
    let ring = &app.logs.ring;
    let mut n = 0;
    for id in ring.first_id()..ring.next_id() {
        let Some(r) = ring.get(id).filter(|r| filter.matches(r)) else {
            continue;
        };
        let text: &str = &r.text;
        let interesting = text.starts_with("chunk ") || r.level >= Level::Warn;
        if !interesting {
            continue;
        }
        n += 1;
        let color = match r.level {
            Level::Error => t.error,
            Level::Warn => t.warn,
            _ => t.fg,
        };
        out.push(Line::from(vec![
            Span::styled(format!("{} ", r.time), t.fg(t.muted)),
            Span::styled(text.to_string(), t.fg(color)),
        ]));
    }
    if n == 0 {
        out.push(Line::from(Span::styled(
            "no log line of this chunk has been read yet",
            t.fg(t.muted),
        )));
    }
    out
}
