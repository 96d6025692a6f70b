//! Logs pane: the filtered lines of the ring buffer, newest at the bottom when following,
//! search matches highlighted, optional wrapping. Draws only the lines that fit.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::block;
use crate::tui::app::{App, plural};
use crate::tui::logs::{Level, LogPane, LogRecord, match_ranges};
use crate::tui::theme::Theme;

fn level_style(t: &Theme, l: Level) -> Style {
    match l {
        Level::Error => t.fg(t.error).add_modifier(Modifier::BOLD),
        Level::Warn => t.fg(t.warn),
        Level::Info => t.fg(t.info),
        Level::Debug | Level::Trace => t.fg(t.muted),
    }
}

fn line<'a>(t: &Theme, r: &'a LogRecord, query: Option<&str>, current: bool) -> Line<'a> {
    let mut spans = vec![
        Span::styled(format!("{:<8} ", r.time), t.fg(t.muted)),
        Span::styled(format!("{:<5} ", r.level.as_str()), level_style(t, r.level)),
    ];
    let text: &str = &r.text;
    let ranges = query.map(|q| match_ranges(text, q)).unwrap_or_default();
    let mut at = 0;
    let hl = if current {
        t.highlight()
            .add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    } else {
        t.highlight()
    };
    for (s, e) in ranges {
        if s > at {
            spans.push(Span::styled(&text[at..s], t.fg(t.fg)));
        }
        spans.push(Span::styled(&text[s..e], hl));
        at = e;
    }
    if at < text.len() {
        spans.push(Span::styled(&text[at..], t.fg(t.fg)));
    }
    Line::from(spans)
}

/// Screen rows a line takes when wrapped at `width`.
fn rows_of(r: &LogRecord, width: usize) -> usize {
    let len = 15 + r.text.chars().count();
    len.div_ceil(width.max(1)).max(1)
}

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let pane = &app.logs;
    let height = usize::from(area.height.saturating_sub(2));
    let width = usize::from(area.width.saturating_sub(2));
    let ids = visible_ids(pane, height, width);
    let query = pane.search.as_deref();
    let mut lines: Vec<Line> = ids
        .iter()
        .filter_map(|&id| {
            pane.ring
                .get(id)
                .map(|r| line(t, r, query, pane.current_match == Some(id)))
                // Unwrapped, a cut line says so with `…` (w wraps it).
                .map(|l| {
                    if pane.wrap {
                        l
                    } else {
                        super::clip_line(l, width)
                    }
                })
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::from(Span::styled(why_empty(pane), t.fg(t.muted))));
    }
    let mut p = Paragraph::new(lines).block(block(t, title(pane)));
    if pane.wrap {
        p = p.wrap(Wrap { trim: false });
        // Following with wrap: keep the newest row at the bottom.
        if pane.follow {
            let rows: usize = ids
                .iter()
                .filter_map(|&id| pane.ring.get(id))
                .map(|r| rows_of(r, width))
                .sum();
            p = p.scroll((rows.saturating_sub(height) as u16, 0));
        }
    }
    frame.render_widget(p, area);
}

/// The source, then each filter, the search and the modes in effect.
fn title(pane: &LogPane) -> String {
    let mut title = vec![format!(" Logs: {}", short(&pane.source_name))];
    if let Some(c) = &pane.chunk {
        let what = if c.seq.is_some() { "chunk" } else { "job" };
        title.push(format!("{what} {}", c.label()));
    }
    if let Some(l) = pane.min_level {
        title.push(format!("level ≥ {l}"));
    }
    if let Some(q) = &pane.search {
        let pos = pane
            .match_position()
            .map_or(String::new(), |p| format!("{p}/"));
        let matches = plural(pane.match_count(), "match");
        title.push(format!(
            "/{q} ({pos}{})",
            matches.replace("matchs", "matches")
        ));
    }
    if let Some(n) = pane.context {
        title.push(format!("matches ±{n}"));
    }
    title.push(plural(pane.shown_len(), "line"));
    if pane.follow {
        title.push("following".into());
    }
    if pane.wrap {
        title.push("wrap".into());
    }
    format!("{} ", title.join(" · "))
}

/// The ids of the lines to draw in `height` rows: from the bottom up when following, else
/// from `top` down.
fn visible_ids(pane: &LogPane, height: usize, width: usize) -> Vec<u64> {
    let n = pane.shown_len();
    let rows = |id: u64| {
        if pane.wrap {
            pane.ring.get(id).map_or(1, |r| rows_of(r, width))
        } else {
            1
        }
    };
    let mut ids = Vec::with_capacity(height);
    let mut used = 0;
    if pane.follow {
        let mut i = n;
        while i > 0 && used < height {
            i -= 1;
            let id = pane.shown_id(i).expect("index in range");
            used += rows(id);
            ids.push(id);
        }
        ids.reverse();
    } else {
        let mut i = pane.top.min(n.saturating_sub(1));
        while i < n && used < height {
            let id = pane.shown_id(i).expect("index in range");
            used += rows(id);
            ids.push(id);
            i += 1;
        }
    }
    ids
}

/// Why no line is on screen.
fn why_empty(pane: &LogPane) -> String {
    match &pane.source_error {
        Some(e) => e.clone(),
        None if pane.per_job && pane.chunk.is_none() => {
            "cloud logs are read one job at a time: l on a job or a chunk shows its lines".into()
        }
        None if pane.ring.is_empty() => "no log lines yet".into(),
        None => "no line passes the filters (C clears the chunk filter, L the level)".into(),
    }
}

/// The file name of a path-like source name; a described one (`CloudWatch Logs group
/// /avesa/...`) as it is.
fn short(name: &str) -> &str {
    if name.contains(' ') {
        return name;
    }
    name.rsplit('/').next().unwrap_or(name)
}
