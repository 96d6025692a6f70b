//! Console frame times: each view drawn on a 120x40 TestBackend with 10 jobs and with 10,000
//! jobs / 100,000 chunks / 1,000,000 log lines. Views build only the rows on screen, so the
//! ratio of the two should stay near 1. Also: the cost of taking in a 10,000-job snapshot
//! (done once per snapshot, not per frame) and the log ring's memory at millions of lines.
//!
//! `cargo bench --bench render` prints the figures; nothing here asserts on time.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use avesa_console::tui::app::{App, LOG_CAPACITY};
use avesa_console::tui::fixtures;
use avesa_console::tui::logs::LogPane;
use avesa_console::tui::{Msg, Theme, update, views};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

struct Scale {
    name: &'static str,
    jobs: usize,
    log_lines: usize,
}

const SCALES: [Scale; 3] = [
    Scale {
        name: "10 jobs / 100 chunks / 1,000 lines",
        jobs: 10,
        log_lines: 1_000,
    },
    // Enough jobs to fill the screen: the fair base for tables, which draw 10 rows at 10
    // jobs and a screenful at 10,000.
    Scale {
        name: "100 jobs / 1,000 chunks / 10,000 lines",
        jobs: 100,
        log_lines: 10_000,
    },
    Scale {
        name: "10,000 jobs / 100,000 chunks / 1,000,000 lines",
        jobs: 10_000,
        log_lines: 1_000_000,
    },
];

fn keys(app: &mut App, keys: &str) {
    for c in keys.chars() {
        let code = match c {
            '\n' => KeyCode::Enter,
            c => KeyCode::Char(c),
        };
        update(app, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
    }
}

/// A console at `scale`: every job's chunks in the snapshot, the log ring holding every line.
fn console(scale: &Scale) -> (App, Duration) {
    let jobs = fixtures::many_jobs(scale.jobs);
    let mut chunks = BTreeMap::new();
    for j in &jobs {
        chunks.insert(j.job_id.clone(), fixtures::chunks(j));
    }
    let mut snap = fixtures::snapshot(jobs, None);
    snap.chunks = Arc::new(chunks);
    let mut app = App::new(Theme::default(), false, fixtures::now());
    app.logs = LogPane::new(scale.log_lines);
    update(
        &mut app,
        Msg::Resize {
            width: 120,
            height: 40,
        },
    );
    let started = Instant::now();
    update(&mut app, Msg::Snapshot(Arc::new(snap)));
    let snapshot_cost = started.elapsed();
    let job_id = app.snap.jobs[app.snap.jobs.len() / 2].job_id.clone();
    for batch in (0..scale.log_lines).collect::<Vec<_>>().chunks(10_000) {
        update(
            &mut app,
            Msg::Logs(
                batch
                    .iter()
                    .map(|&i| fixtures::log_line(i, &job_id))
                    .collect(),
            ),
        );
    }
    (app, snapshot_cost)
}

/// Mean time of one frame over `n` draws.
fn frame_time(term: &mut Terminal<TestBackend>, app: &App, n: u32) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        term.draw(|f| views::render(f, black_box(app))).unwrap();
    }
    started.elapsed() / n
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    // Memory at millions of lines first, on a quiet heap: the default ring keeps the newest
    // LOG_CAPACITY lines, so 3M lines cost what 1M do.
    let mut pane = LogPane::new(LOG_CAPACITY);
    let feed = |pane: &mut LogPane, from: usize, to: usize| {
        for start in (from..to).step_by(10_000) {
            pane.push((start..(start + 10_000).min(to)).map(|i| fixtures::log_line(i, "job")));
        }
    };
    let before = rss_kb();
    feed(&mut pane, 0, 1_000_000);
    let at_1m = rss_kb();
    feed(&mut pane, 1_000_000, 3_000_000);
    let at_3m = rss_kb();
    let mb = |k: Option<u64>| k.map_or("?".into(), |k| format!("{:.1} MB", k as f64 / 1024.0));
    println!(
        "log ring (capacity {LOG_CAPACITY}): {} lines kept of 3,000,000; resident memory {} before, {} after 1M lines, {} after 3M\n",
        pane.ring.len(),
        mb(before),
        mb(at_1m),
        mb(at_3m),
    );
    drop(pane);

    let views: [(&str, &str); 7] = [
        ("tenants", ""),
        ("jobs (middle row selected)", ":jobs\nG"),
        ("job detail (heatmap)", ":jobs\n\n"),
        ("logs (following)", ":logs\n"),
        ("logs (search, matches ±2)", ":logs\n/injected\nx"),
        ("health", ":health\n"),
        ("pulse (sparklines, ETAs)", ":pulse\n"),
    ];
    // Every scale stays loaded and they are drawn in alternating rounds, so drift in the
    // machine's load (other builds share it) hits all alike; medians of the rounds.
    let mut consoles = Vec::new();
    for scale in &SCALES {
        let (base, snapshot_cost) = console(scale);
        println!(
            "{}: snapshot taken in {:.2} ms (once per refresh, not per frame); log ring {} lines",
            scale.name,
            snapshot_cost.as_secs_f64() * 1e3,
            base.logs.ring.len()
        );
        consoles.push(base);
    }
    println!("\nframe time at 120x40 (median of 9 rounds of 100 draws on TestBackend)");
    println!(
        "{:<28} {:>10} {:>10} {:>12} {:>7} {:>8}",
        "view", "10 jobs", "100 jobs", "10,000 jobs", "÷10", "÷100"
    );
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    for (name, setup) in views {
        let apps: Vec<App> = consoles
            .iter()
            .map(|base| {
                let mut app = base.clone();
                keys(&mut app, setup);
                if setup.ends_with('G') {
                    // The middle of the table, so rows above and below exist.
                    let (len, h) = (app.job_rows.len(), app.body_rows());
                    app.jobs.step(-((len / 2) as isize), len, h);
                }
                app
            })
            .collect();
        let mut rounds = vec![Vec::new(); apps.len()];
        for _ in 0..9 {
            for (k, app) in apps.iter().enumerate() {
                frame_time(&mut term, app, 5);
                rounds[k].push(frame_time(&mut term, app, 100));
            }
        }
        let m: Vec<f64> = rounds
            .into_iter()
            .map(|r| median(r).as_secs_f64())
            .collect();
        println!(
            "{:<28} {:>7.1} µs {:>7.1} µs {:>9.1} µs {:>7.2} {:>8.2}",
            name,
            m[0] * 1e6,
            m[1] * 1e6,
            m[2] * 1e6,
            m[2] / m[0],
            m[2] / m[1]
        );
    }
}
