//! The keys that bring a failure to the operator: `!` opens the newest unacknowledged
//! failure's chunk described in full, `a` acknowledges the alert bar, `d` describes the
//! selected chunk, Enter on a Health alert opens its job at the failed chunk, `y` copies
//! through OSC 52 and `o` hands the logs to `$PAGER` (both effects the runtime carries out).

use crossterm::event::{KeyCode, KeyEvent};

use super::Effect;
use super::actions::{selected_chunk, settle_detail};
use crate::domain::ChunkKey;
use crate::engine::handle::Command;
use crate::tui::action::Action;
use crate::tui::app::failures::Focus;
use crate::tui::app::{App, Mode, Route, StatusKind, View, plural};

/// The failure keys, and Enter on a Health alert; `None` for any other action.
pub(super) fn perform(app: &mut App, action: Action) -> Option<Vec<Effect>> {
    Some(match action {
        Action::OpenFailure => open_failure(app),
        Action::Acknowledge => acknowledge(app),
        Action::Describe => describe(app),
        Action::Yank => yank(app),
        Action::Pager => open_pager(app),
        Action::Enter if app.view() == View::Health => open_alert(app),
        _ => return None,
    })
}

/// `!`: the newest unacknowledged failure (or the newest of all), its job's detail under it
/// and the chunk described on top, from any view.
pub(super) fn open_failure(app: &mut App) -> Vec<Effect> {
    let Some(f) = app.failures.newest().cloned() else {
        app.set_status(
            StatusKind::Info,
            format!("{}: no failure so far", app.key(Action::OpenFailure)),
        );
        return Vec::new();
    };
    let focus = match &f.key {
        Some(k) => Focus::Chunk(k.clone()),
        None => Focus::FirstFailed(f.job_id.clone()),
    };
    open_job_at(app, &f.job_id, focus);
    // Known only from the job's counters: described once the watched chunks name it.
    app.describe_focus = f.key.is_none();
    if let Some(key) = f.key {
        app.mode = Mode::Describe { key, scroll: 0 };
    }
    vec![Effect::Engine(Command::Watch {
        job_id: Some(f.job_id),
    })]
}

/// The detail view of `job_id` (over the jobs table, with the job selected), the chunk
/// `focus` names selected as soon as the job's chunks are read.
fn open_job_at(app: &mut App, job_id: &str, focus: Focus) {
    app.stack = vec![
        Route::Tenants,
        Route::Jobs { scope: None },
        Route::JobDetail {
            job_id: job_id.to_string(),
        },
    ];
    app.job_filter.clear();
    app.rebuild_jobs();
    if let Some(pos) = app
        .job_rows
        .iter()
        .position(|&i| app.snap.jobs[i].job_id == job_id)
    {
        let h = app.body_rows();
        app.jobs.selected = pos;
        app.jobs.settle(app.job_rows.len(), h);
    }
    app.detail_table = 0;
    app.detail_chunk = 0;
    app.detail_focus = Some(focus);
    settle_detail(app);
}

/// Enter on a Health alert: its job's detail at the failed chunk.
pub(super) fn open_alert(app: &mut App) -> Vec<Effect> {
    let job = app
        .alert_jobs
        .get(app.health.selected)
        .cloned()
        .flatten()
        .filter(|id| app.job(id).is_some());
    let Some(job_id) = job else {
        app.set_status(StatusKind::Info, "Enter: this alert is about no job");
        return Vec::new();
    };
    open_job_at(app, &job_id, Focus::FirstFailed(job_id.clone()));
    vec![Effect::Engine(Command::Watch {
        job_id: Some(job_id),
    })]
}

/// `a`: the alert bar's failures are acknowledged; `!` still reaches the newest.
pub(super) fn acknowledge(app: &mut App) -> Vec<Effect> {
    let n = app.failures.acknowledge();
    if n == 0 {
        app.set_status(
            StatusKind::Info,
            format!(
                "{}: no failure to acknowledge",
                app.key(Action::Acknowledge)
            ),
        );
    } else {
        app.set_status(
            StatusKind::Info,
            format!(
                "acknowledged {} (! still opens the newest)",
                plural(n, "failure")
            ),
        );
        let (w, h) = (app.width, app.height);
        super::on_resize(app, w, h);
    }
    Vec::new()
}

/// `d`: every field of the selected chunk and its attempts.
pub(super) fn describe(app: &mut App) -> Vec<Effect> {
    match selected_chunk(app).map(|c| c.key.clone()) {
        Some(key) => app.mode = Mode::Describe { key, scroll: 0 },
        None => app.set_status(
            StatusKind::Warn,
            format!("{}: no chunk selected", app.key(Action::Describe)),
        ),
    }
    Vec::new()
}

/// Keys while a chunk is described: scroll, copy its error, page its logs, close.
pub(super) fn describe_key(app: &mut App, key: ChunkKey, scroll: u16, ev: KeyEvent) -> Vec<Effect> {
    let page = app.body_rows().saturating_sub(2) as u16;
    let scroll = match ev.code {
        KeyCode::Esc | KeyCode::Char('d') => return Vec::new(),
        KeyCode::Down | KeyCode::Char('j') => scroll.saturating_add(1),
        KeyCode::Up | KeyCode::Char('k') => scroll.saturating_sub(1),
        KeyCode::PageDown | KeyCode::Char(' ') => scroll.saturating_add(page),
        KeyCode::PageUp => scroll.saturating_sub(page),
        KeyCode::Home | KeyCode::Char('g') => 0,
        KeyCode::Char('y') => {
            app.mode = Mode::Describe {
                key: key.clone(),
                scroll,
            };
            return yank_chunk(app, &key);
        }
        KeyCode::Char('o') => {
            app.mode = Mode::Describe {
                key: key.clone(),
                scroll,
            };
            return pager(app, Some(&key));
        }
        _ => scroll,
    };
    app.mode = Mode::Describe { key, scroll };
    Vec::new()
}

/// The chunk's error, or its key when it has none, to the clipboard.
fn yank_chunk(app: &mut App, key: &ChunkKey) -> Vec<Effect> {
    let chunk = app
        .snap
        .chunks
        .get(&key.job_id)
        .and_then(|cs| cs.iter().find(|c| &c.key == key));
    let error = chunk.and_then(|c| c.last_error.clone()).or_else(|| {
        app.failures
            .list
            .iter()
            .find(|f| f.key.as_ref() == Some(key))
            .map(|f| f.error.clone())
    });
    match error {
        Some(e) => copy(app, "the error", e),
        None => copy(app, "the chunk key", key.to_string()),
    }
}

/// The clipboard effect and its confirmation.
fn copy(app: &mut App, what: &str, text: String) -> Vec<Effect> {
    app.set_status(
        StatusKind::Info,
        format!(
            "copied {what} ({}) to the clipboard (OSC 52)",
            plural(text.chars().count(), "character")
        ),
    );
    vec![Effect::Clipboard(text)]
}

/// `y`: the selected chunk's error in the detail view, the current log line in the logs
/// pane, the selected job's id elsewhere.
pub(super) fn yank(app: &mut App) -> Vec<Effect> {
    match app.view() {
        View::Detail => match selected_chunk(app).map(|c| c.key.clone()) {
            Some(key) => yank_chunk(app, &key),
            None => yank_job(app),
        },
        View::Logs => {
            let h = app.body_rows();
            match app.logs.current_line(h) {
                Some(line) => copy(app, "the log line", line),
                None => {
                    app.set_status(
                        StatusKind::Warn,
                        format!("{}: no log line on screen", app.key(Action::Yank)),
                    );
                    Vec::new()
                }
            }
        }
        _ => yank_job(app),
    }
}

fn yank_job(app: &mut App) -> Vec<Effect> {
    match app.selected_job().map(|j| j.job_id.clone()) {
        Some(id) => copy(app, "the job id", id),
        None => {
            app.set_status(
                StatusKind::Warn,
                format!("{}: nothing selected to copy", app.key(Action::Yank)),
            );
            Vec::new()
        }
    }
}

/// `o`: the selected chunk's (detail view) or job's log lines in `$PAGER`.
pub(super) fn open_pager(app: &mut App) -> Vec<Effect> {
    let key = match app.view() {
        View::Detail => selected_chunk(app).map(|c| c.key.clone()),
        _ => None,
    };
    pager(app, key.as_ref())
}

fn pager(app: &mut App, key: Option<&ChunkKey>) -> Vec<Effect> {
    let filter = match (key, app.view()) {
        (Some(k), _) => Some(crate::tui::logs::ChunkFilter {
            job_id: k.job_id.clone(),
            table: Some(k.table.clone()),
            seq: Some(k.seq),
        }),
        (None, View::Logs) => app.logs.chunk.clone(),
        (None, _) => app.selected_job().map(|j| crate::tui::logs::ChunkFilter {
            job_id: j.job_id.clone(),
            table: None,
            seq: None,
        }),
    };
    let (title, text) = app.logs.export(filter.as_ref());
    if text.is_empty() {
        app.set_status(
            StatusKind::Warn,
            format!("{}: no log lines of {title} yet", app.key(Action::Pager)),
        );
        return Vec::new();
    }
    app.set_status(StatusKind::Info, format!("paged the log lines of {title}"));
    vec![Effect::Pager { title, text }]
}
