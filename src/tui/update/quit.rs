//! Quitting: `q`, Ctrl-C and `:q` ask first when the console's jobs are running or queued
//! here, and say what happens to them; `:q!` quits at once.
//!
//! A local console's jobs run in detached runner processes (`ops::RunnerCommand`), which keep
//! running when it quits: the question says so. Jobs running in this process (none unless the
//! handle runs them here) stop, and jobs queued here by the scheduling rules do not start
//! until a `run` or a resume: the question names them.

use crossterm::event::{KeyCode, KeyEvent};

use super::Effect;
use crate::engine::handle::Snapshot;
use crate::tui::app::{App, Mode, StatusKind};

/// What quitting would do to the console's jobs, or `None` when it touches none.
pub fn question(snap: &Snapshot) -> Option<String> {
    let background: Vec<&str> = snap
        .running_here
        .iter()
        .filter(|id| snap.runners.contains_key(*id))
        .map(String::as_str)
        .collect();
    let stop: Vec<&str> = snap
        .running_here
        .iter()
        .filter(|id| !snap.runners.contains_key(*id))
        .map(String::as_str)
        .collect();
    let queued: Vec<&str> = snap.waiting.keys().map(String::as_str).collect();
    if background.is_empty() && stop.is_empty() && queued.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    let said = |ids: &[&str], one: &str, many: &str| match ids {
        [id] => format!("{one}: {id}."),
        _ => format!("{} {many}: {}.", ids.len(), ids.join(", ")),
    };
    if !background.is_empty() {
        parts.push(said(
            &background,
            "1 job keeps running in the background",
            "jobs keep running in the background",
        ));
    }
    if !stop.is_empty() {
        parts.push(said(
            &stop,
            "1 job running in this console stops",
            "jobs running in this console stop",
        ));
    }
    if !queued.is_empty() {
        parts.push(said(
            &queued,
            "1 queued job does not start until `avesa-console run`",
            "queued jobs do not start until `avesa-console run`",
        ));
    }
    Some(format!("Quit? {}", parts.join(" ")))
}

/// `q`, Ctrl-C, `:q`: quits, or asks first when quitting touches the console's jobs.
pub(super) fn ask(app: &mut App) -> Vec<Effect> {
    match question(&app.snap) {
        Some(prompt) => {
            app.mode = Mode::Quitting { prompt };
            app.dirty = true;
            Vec::new()
        }
        None => now(app),
    }
}

/// `:q!`, or `y` to the question.
pub(super) fn now(app: &mut App) -> Vec<Effect> {
    app.quit = true;
    vec![Effect::Quit]
}

/// The answer: `y`/Enter (or Ctrl-C again) quits, `n`/Esc stays.
pub(super) fn answer(app: &mut App, prompt: String, key: KeyEvent) -> Vec<Effect> {
    match key.code {
        KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => now(app),
        KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
            app.set_status(StatusKind::Info, "still here");
            Vec::new()
        }
        _ => {
            app.mode = Mode::Quitting { prompt };
            Vec::new()
        }
    }
}
