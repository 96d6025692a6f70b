//! Pulse: the last ten minutes of every tenant's service and job, from the counters the
//! engine records in the store (`engine::pulse`), so jobs of other processes and cloud
//! workers show too. Per tenant + service: requests in the last minute against the limit and
//! a requests sparkline whose top is the limit, records per second and its sparkline, the
//! refusals for a rate limit. Per job: records/s and requests/min with their sparklines, and
//! the ETA (the engine's: remaining planned calls over the achieved request rate).
//!
//! Sparklines are block glyphs, so they read without colour (NO_COLOR); narrow terminals drop
//! the sparklines before the numbers, and long ids are cut with `…`. Only the rows on screen
//! are built.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::widgets::{Cell, Row, Table};

use super::block;
use crate::engine::pulse::{BUCKETS, JobPulse, PairPulse, Series};
use crate::store::PulseCounts;
use crate::store::pulse::BUCKET_SECS;
use crate::tui::app::App;
use crate::tui::format::{clip, fmt_duration, fmt_rate};

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Narrower than this, a sparkline column is left out.
const MIN_SPARK: usize = 8;

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let pulse = &app.snap.pulse;
    let pairs_h = (pulse.pairs.len() as u16 + 3).min(area.height / 2).max(4);
    let [top, bottom] =
        Layout::vertical([Constraint::Length(pairs_h), Constraint::Min(3)]).areas(area);
    render_pairs(frame, app, top);
    render_jobs(frame, app, bottom);
}

/// `values` as a sparkline `width` glyphs wide: the window's buckets summed into `width`
/// groups (the newest at the right), each drawn against `top` (per bucket); a group over the
/// top is a full bar. Empty groups are spaces.
pub fn sparkline(values: &[u64], top_per_bucket: u64, width: usize) -> String {
    if width == 0 || values.is_empty() {
        return String::new();
    }
    let per = values.len().div_ceil(width).max(1);
    let groups: Vec<u64> = values.rchunks(per).rev().map(|g| g.iter().sum()).collect();
    let top = top_per_bucket.max(1) * per as u64;
    let mut out: String = " ".repeat(width.saturating_sub(groups.len()));
    for v in groups.iter().skip(groups.len().saturating_sub(width)) {
        out.push(match *v {
            0 => ' ',
            v => BARS[((v.min(top) * 8).div_ceil(top) as usize).clamp(1, 8) - 1],
        });
    }
    out
}

fn column(series: &Series, f: fn(&PulseCounts) -> u64) -> Vec<u64> {
    series.buckets.iter().map(f).collect()
}

/// The top of a requests sparkline per bucket: the limit, else the busiest bucket.
fn request_top(series: &Series, limit: Option<u32>) -> u64 {
    match limit {
        Some(l) if l > 0 => (u64::from(l) * BUCKET_SECS as u64).div_ceil(60),
        _ => series.buckets.iter().map(|c| c.requests).max().unwrap_or(0),
    }
}

fn record_top(series: &Series) -> u64 {
    series.buckets.iter().map(|c| c.records).max().unwrap_or(0)
}

/// The width left for each of two sparklines beside `fixed` columns (`None`: too narrow).
fn spark_width(area: Rect, fixed: usize, columns: usize) -> Option<usize> {
    let inner = usize::from(area.width.saturating_sub(2));
    let w = inner.saturating_sub(fixed + columns) / 2;
    (w >= MIN_SPARK).then_some(w.min(BUCKETS))
}

/// A column's header and width; no width: a sparkline's, left out when there is no room.
type Col = (&'static str, Option<u16>);

/// The header row and widths of `cols` and the `last` column, sparklines `spark` wide.
fn columns<'a>(
    app: &App,
    cols: &[Col],
    last: (&'static str, u16),
    spark: Option<usize>,
) -> (Row<'a>, Vec<Constraint>) {
    let mut header = Vec::new();
    let mut widths = Vec::new();
    let last = (last.0, Some(last.1));
    for (name, w) in cols.iter().chain(std::iter::once(&last)) {
        let Some(w) = w.or(spark.map(|s| s as u16)) else {
            continue;
        };
        header.push(*name);
        widths.push(Constraint::Length(w));
    }
    let t = &app.theme;
    let style = t.fg(t.accent).add_modifier(Modifier::BOLD);
    (Row::new(header).style(style), widths)
}

fn pair_cells<'a>(app: &App, p: &PairPulse, spark: Option<usize>) -> Vec<Cell<'a>> {
    let t = &app.theme;
    let s = &p.series;
    let used = s.requests_last_minute;
    let (req, over) = match p.limit_per_minute {
        Some(l) => (format!("{used}/{l}"), used > u64::from(l)),
        None => (format!("{used}/—"), false),
    };
    let mut cells = vec![
        Cell::from(clip(&p.tenant_id, 10)),
        Cell::from(p.service.as_str()),
        Cell::from(req).style(if over { t.fg(t.error) } else { t.text() }),
    ];
    if let Some(w) = spark {
        let top = request_top(s, p.limit_per_minute);
        cells.push(Cell::from(sparkline(&column(s, |c| c.requests), top, w)).style(t.fg(t.accent)));
    }
    cells.push(Cell::from(fmt_rate(s.records_per_second)));
    if let Some(w) = spark {
        let top = record_top(s);
        cells.push(Cell::from(sparkline(&column(s, |c| c.records), top, w)).style(t.fg(t.ok)));
    }
    let limited = s.rate_limited.to_string();
    cells.push(Cell::from(limited).style(if s.rate_limited > 0 {
        t.fg(t.warn)
    } else {
        t.text()
    }));
    cells
}

/// Requests per minute against the limit, and records per second, per tenant's service.
fn render_pairs(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let pairs = &app.snap.pulse.pairs;
    // TENANT, SERVICE, REQ/MIN, REC/S, 429.
    let spark = spark_width(area, 10 + 11 + 9 + 7 + 5, 6);
    let height = usize::from(area.height.saturating_sub(3));
    let rows = pairs
        .iter()
        .take(height)
        .map(|p| Row::new(pair_cells(app, p, spark)));
    let cols: [Col; 6] = [
        ("TENANT", Some(10)),
        ("SERVICE", Some(11)),
        ("REQ/MIN", Some(9)),
        ("REQUESTS", None),
        ("REC/S", Some(7)),
        ("RECORDS", None),
    ];
    let (header, widths) = columns(app, &cols, ("429", 5), spark);
    let title = match pairs.len() {
        0 => " Pulse · no requests recorded in the last 10 min ".to_string(),
        n if n > height => format!(" Pulse · last 10 min · bar top = limit ({height} of {n}) "),
        _ => " Pulse per tenant · service · last 10 min · bar top = limit ".to_string(),
    };
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(block(t, title)),
        area,
    );
}

fn job_cells<'a>(app: &App, j: &JobPulse, id_w: usize, spark: Option<usize>) -> Vec<Cell<'a>> {
    let t = &app.theme;
    let s = &j.series;
    let status = j.status.map_or("—", super::job_status_short);
    let mut cells = vec![
        Cell::from(clip(&j.job_id, id_w)),
        Cell::from(status).style(
            j.status
                .map_or(t.text(), |st| super::job_status_style(t, st)),
        ),
        Cell::from(fmt_rate(s.records_per_second)),
    ];
    if let Some(w) = spark {
        let top = record_top(s);
        cells.push(Cell::from(sparkline(&column(s, |c| c.records), top, w)).style(t.fg(t.ok)));
    }
    cells.push(Cell::from(fmt_rate(s.requests_per_minute)));
    if let Some(w) = spark {
        let top = request_top(s, None);
        let line = sparkline(&column(s, |c| c.requests), top, w);
        cells.push(Cell::from(line).style(t.fg(t.accent)));
    }
    let eta = match (j.eta, j.remaining_calls) {
        (Some(d), _) => fmt_duration(d.as_secs() as i64),
        (None, Some(0)) => "done".into(),
        _ => "—".into(),
    };
    cells.push(Cell::from(eta));
    cells
}

/// Running jobs and the others with requests in the window.
fn render_jobs(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let jobs = &app.snap.pulse.jobs;
    let inner = usize::from(area.width.saturating_sub(2));
    // The id takes what the numbers leave, between 16 and 34 characters.
    let id_w = inner.saturating_sub(9 + 7 + 7 + 8 + 5).clamp(16, 34);
    let spark = spark_width(area, id_w + 9 + 7 + 7 + 8, 6);
    let height = usize::from(area.height.saturating_sub(3));
    let rows = jobs
        .iter()
        .take(height)
        .map(|j| Row::new(job_cells(app, j, id_w, spark)));
    let cols: [Col; 6] = [
        ("JOB", Some(id_w as u16)),
        ("STATUS", Some(9)),
        ("REC/S", Some(7)),
        ("RECORDS", None),
        ("REQ/M", Some(7)),
        ("REQUESTS", None),
    ];
    let (header, widths) = columns(app, &cols, ("ETA", 8), spark);
    let title = match jobs.len() {
        n if n > height => format!(" Jobs ({height} of {n}) · ETA: calls left / achieved rate "),
        _ => " Jobs · ETA: calls left / achieved rate ".to_string(),
    };
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(block(t, title)),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_to_the_top_and_fit_the_width() {
        assert_eq!(sparkline(&[0, 1, 2, 4, 8], 8, 5), " ▁▂▄█");
        // Over the top is a full bar.
        assert_eq!(sparkline(&[16], 8, 1), "█");
        // Sixty buckets in 30 glyphs: pairs summed against twice the top.
        let v: Vec<u64> = (0..60).map(|i| if i >= 58 { 10 } else { 0 }).collect();
        let s = sparkline(&v, 10, 30);
        assert_eq!(s.chars().count(), 30);
        assert!(s.ends_with('█') && s.starts_with(' '), "{s:?}");
        // Wider than the series: padded on the left.
        assert_eq!(sparkline(&[8, 8], 8, 4), "  ██");
    }
}
