//! The pure heart of the console: `update(app, msg) -> effects`. No I/O here: effects are
//! carried out by the runtime, and their results come back as messages.

mod actions;
#[cfg(test)]
mod cloud_tests;
#[cfg(test)]
mod failure_tests;
mod failures;
mod lifecycle;
#[cfg(test)]
mod lifecycle_tests;
mod mouse;
pub mod prompt;
pub mod protect;
#[cfg(test)]
mod protect_tests;
pub mod quit;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent};

use super::action::Action;
use super::app::{App, CloudMode, Confirm, Mode, Route, StatusKind, View};
use super::form::{PreviewSummary, TriggerForm};
use super::format::fmt_duration;
use super::logs::LogRecord;
use super::theme::Theme;
use crate::domain::{ChunkStatus, JobStatus};
use crate::engine::EngineEvent;
use crate::engine::handle::{Command, PlanPreview, Snapshot, Target};
use crate::engine::planner::{PlanError, PlanRequest};

/// Everything that can happen to the console.
#[derive(Clone, Debug)]
pub enum Msg {
    Key(KeyEvent),
    /// A click or the wheel (only read when mouse capture is on).
    Mouse(MouseEvent),
    Resize {
        width: u16,
        height: u16,
    },
    /// The clock moved (about once a second).
    Tick(DateTime<Utc>),
    Snapshot(Arc<Snapshot>),
    Engine {
        event: EngineEvent,
        at: DateTime<Utc>,
    },
    Logs(Vec<LogRecord>),
    LogError(String),
    /// The engine's answer to a command.
    Done {
        command: Command,
        result: Result<String, String>,
    },
    Preview {
        generation: u64,
        result: Result<PlanPreview, PlanError>,
    },
    Theme(Result<Theme, String>),
}

/// What `update` asks the runtime to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Engine(Command),
    Preview {
        generation: u64,
        request: PlanRequest,
    },
    LoadTheme(String),
    /// Copy to the terminal's clipboard (OSC 52, which works over SSH and through tmux).
    Clipboard(String),
    /// Show log lines in `$PAGER`, the console suspended meanwhile.
    Pager {
        title: String,
        text: String,
    },
    Quit,
}

/// Status messages fade after this long.
const STATUS_SECS: i64 = 8;

/// Handles a message; every command it sends passes the protected-tenant prompt
/// (`protect::hold`).
pub fn update(app: &mut App, msg: Msg) -> Vec<Effect> {
    let effects = step(app, msg);
    protect::hold(app, effects)
}

fn step(app: &mut App, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::Key(key) => return on_key(app, key),
        Msg::Mouse(ev) => return mouse::on_mouse(app, ev),
        Msg::Resize { width, height } => on_resize(app, width, height),
        Msg::Tick(now) => on_tick(app, now),
        Msg::Snapshot(snap) => {
            app.life.settle(&snap.waiting, snap.taken_at);
            let bar = app.alert_bar_rows();
            app.failures
                .observe(&snap.jobs, snap.chunks.iter(), snap.taken_at);
            app.snap = snap;
            if app.alert_bar_rows() != bar {
                let (w, h) = (app.width, app.height);
                on_resize(app, w, h);
            }
            app.rebuild_tenants();
            app.rebuild_jobs();
            app.rebuild_alerts();
            actions::settle_detail(app);
            app.dirty = true;
        }
        Msg::Engine { event, at } => on_event(app, event, at),
        Msg::Logs(records) => on_logs(app, records),
        Msg::LogError(e) => {
            if app.logs.source_error.as_deref() != Some(e.as_str()) {
                app.logs.source_error = Some(e);
                app.dirty = true;
            }
        }
        Msg::Done { command, result } => on_done(app, &command, result),
        Msg::Preview { generation, result } => {
            if let Mode::Form(form) = &mut app.mode
                && form.generation == generation
            {
                form.preview = Some(
                    result
                        .map(|p| PreviewSummary::from_preview(&p))
                        .map_err(|e| e.to_string()),
                );
                app.dirty = true;
            }
        }
        Msg::Theme(result) => on_theme(app, result),
    }
    Vec::new()
}

pub(super) fn on_resize(app: &mut App, width: u16, height: u16) {
    app.width = width;
    app.height = height;
    let h = app.body_rows();
    app.jobs.settle(app.job_rows.len(), h);
    app.tenants
        .settle(app.tenant_rows.len(), app.tenant_body_rows());
    app.dirty = true;
}

/// The clock: rates age, the status message fades, health alerts are judged again.
fn on_tick(app: &mut App, now: DateTime<Utc>) {
    app.now = now;
    for m in app.rates.values_mut() {
        m.prune(now);
    }
    if app
        .status
        .as_ref()
        .is_some_and(|s| now - s.at >= Duration::seconds(STATUS_SECS))
    {
        app.status = None;
        app.dirty = true;
    }
    if app.view() == View::Health {
        app.rebuild_alerts();
        app.dirty = true;
    }
    // Rates and ETAs move only while something runs.
    if app
        .snap
        .jobs
        .iter()
        .any(|j| j.status == crate::domain::JobStatus::Running)
    {
        app.dirty = true;
    }
}

fn on_logs(app: &mut App, records: Vec<LogRecord>) {
    if records.is_empty() {
        return;
    }
    app.logs.push(records);
    app.logs.source_error = None;
    if app.view() == View::Logs {
        app.dirty = true;
    }
}

/// The engine's answer to a command: its line in the status bar.
fn on_done(app: &mut App, command: &Command, result: Result<String, String>) {
    if matches!(command, Command::Watch { .. }) {
        return;
    }
    lifecycle::answered(app, command);
    match result {
        Ok(text) => app.answer(StatusKind::Info, text),
        Err(e) => app.answer(StatusKind::Error, format!("{}: {e}", verb(command))),
    }
}

fn on_theme(app: &mut App, result: Result<Theme, String>) {
    match result {
        Ok(theme) => {
            let name = theme.name.clone();
            app.theme = if app.theme.color {
                theme
            } else {
                theme.no_color()
            };
            app.set_status(StatusKind::Info, format!("theme {name}"));
        }
        Err(e) => app.set_status(StatusKind::Error, format!(":theme: {e}")),
    }
}

fn verb(c: &Command) -> &'static str {
    match c {
        Command::Trigger { .. } => "trigger",
        Command::Resume { .. } => "resume",
        Command::RetryFailed { .. } => "retry",
        Command::Cancel { .. } => "cancel",
        Command::Pause { .. } => "pause",
        Command::Unpause { .. } => "unpause",
        Command::Watch { .. } => "watch",
        Command::Transform { .. } => "transform",
        Command::Verify { .. } => "verify",
        Command::Confirmed { command, .. } => verb(command),
    }
}

fn on_event(app: &mut App, event: EngineEvent, at: DateTime<Utc>) {
    match &event {
        EngineEvent::ChunkProgress {
            key,
            records,
            pages,
            ..
        } => {
            app.rates
                .entry(key.job_id.clone())
                .or_default()
                .progress(at, &key.table, key.seq, *records, *pages);
        }
        EngineEvent::ChunkFinished {
            key, status, error, ..
        } => {
            app.rates
                .entry(key.job_id.clone())
                .or_default()
                .chunk_done(at, &key.table, key.seq);
            if *status == ChunkStatus::Failed {
                let why = error.as_deref().unwrap_or("no error text");
                let bar = app.alert_bar_rows();
                app.failures.chunk_failed(key, why, at);
                if app.alert_bar_rows() != bar {
                    let (w, h) = (app.width, app.height);
                    on_resize(app, w, h);
                }
            }
        }
        EngineEvent::ChunkRetrying { key, .. } => {
            app.rates.entry(key.job_id.clone()).or_default().retrying += 1;
        }
        EngineEvent::JobFinished { job_id, status } => {
            // A pause or a cancel also ends a run: say what happened, not "finished: paused".
            let what = match status {
                JobStatus::Paused => "paused".to_string(),
                JobStatus::Cancelled => "cancelled".to_string(),
                JobStatus::CompletedWithErrors => "finished: completed with errors".to_string(),
                s => format!("finished: {s}"),
            };
            app.note(StatusKind::Info, format!("job {job_id} {what}"));
        }
        _ => {
            if let Some((kind, text)) = app.life.on_event(&event, at) {
                app.note(kind, text);
            }
            if matches!(event, EngineEvent::Alert { .. }) {
                app.rebuild_alerts();
            }
        }
    }
    app.dirty = true;
}

fn on_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    // Ctrl-C leaves from any mode, as `q` does: asking first when the console's jobs run.
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        if let Mode::Quitting { .. } = app.mode {
            return quit::now(app);
        }
        app.mode = Mode::Normal;
        return quit::ask(app);
    }
    app.dirty = true;
    let mode = std::mem::replace(&mut app.mode, Mode::Normal);
    match mode {
        Mode::Normal => match app.keymap.action_for(app.view(), &key) {
            Some(a) => failures::perform(app, a).unwrap_or_else(|| actions::perform(app, a)),
            None => {
                if let KeyCode::Char(c) = key.code {
                    app.set_status(
                        StatusKind::Warn,
                        format!(
                            "{c}: no action in the {} view (? lists the keys)",
                            app.view().name()
                        ),
                    );
                }
                Vec::new()
            }
        },
        Mode::Help => Vec::new(),
        Mode::Command { input } => command_key(app, input, key),
        Mode::Filter { input } => filter_key(app, input, key),
        Mode::Search { input } => search_key(app, input, key),
        Mode::Confirm(confirm) => confirm_key(app, confirm, key),
        Mode::Form(form) => form_key(app, *form, key),
        Mode::Describe { key: chunk, scroll } => failures::describe_key(app, chunk, scroll, key),
        Mode::Quitting { prompt } => quit::answer(app, prompt, key),
        Mode::Protect(p) => protect::key(app, p, key),
    }
}

fn command_key(app: &mut App, mut input: String, key: KeyEvent) -> Vec<Effect> {
    if !matches!(key.code, KeyCode::Tab | KeyCode::BackTab) {
        app.command_cycle = None;
    }
    if prompt::is_clear(&key) {
        app.mode = Mode::Command {
            input: String::new(),
        };
        return Vec::new();
    }
    match key.code {
        KeyCode::Esc => Vec::new(),
        KeyCode::Enter => run_command(app, input.trim()),
        KeyCode::Tab | KeyCode::BackTab => {
            let step = if key.code == KeyCode::Tab { 1 } else { -1 };
            input = prompt::cycle(app, input, step);
            app.mode = Mode::Command { input };
            Vec::new()
        }
        KeyCode::Backspace => {
            if input.pop().is_some() {
                app.mode = Mode::Command { input };
            }
            Vec::new()
        }
        KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
            input.push(c);
            app.mode = Mode::Command { input };
            Vec::new()
        }
        _ => {
            app.mode = Mode::Command { input };
            Vec::new()
        }
    }
}

fn run_command(app: &mut App, line: &str) -> Vec<Effect> {
    let (cmd, arg) = line
        .split_once(char::is_whitespace)
        .map_or((line, ""), |(c, a)| (c, a.trim()));
    let route = match cmd {
        "jobs" | "j" => Some(Route::Jobs { scope: None }),
        "tenants" | "t" => Some(Route::Tenants),
        "logs" | "l" => {
            app.logs.chunk = None;
            app.logs.reindex();
            Some(Route::Logs)
        }
        "health" | "h" => Some(Route::Health),
        "pulse" => Some(Route::Pulse),
        "theme" => {
            if arg.is_empty() {
                app.set_status(
                    StatusKind::Warn,
                    format!(
                        ":theme NAME ({} or a .toml path)",
                        Theme::names().join(", ")
                    ),
                );
                return Vec::new();
            }
            return vec![Effect::LoadTheme(arg.to_string())];
        }
        "help" => {
            app.mode = Mode::Help;
            return Vec::new();
        }
        "job" => return prompt::open_job(app, arg),
        "tenant" => return prompt::open_tenant(app, arg),
        "alerts" => Some(Route::Health),
        "quit" | "q" => return quit::ask(app),
        "quit!" | "q!" => return quit::now(app),
        "" => return Vec::new(),
        other => {
            app.set_status(
                StatusKind::Error,
                format!("unknown command :{other} (a bare : lists the commands; Tab completes)"),
            );
            return Vec::new();
        }
    };
    let effects = actions::leave_detail(app);
    if let Some(route) = route {
        app.stack = if route == Route::Tenants {
            vec![Route::Tenants]
        } else {
            vec![Route::Tenants, route]
        };
        app.rebuild_jobs();
        app.rebuild_tenants();
    }
    effects
}

fn filter_key(app: &mut App, mut input: String, key: KeyEvent) -> Vec<Effect> {
    let keep_open = match key.code {
        _ if prompt::is_clear(&key) => {
            input.clear();
            true
        }
        // Other control keys type nothing.
        KeyCode::Char(_) if key.modifiers.contains(KeyModifiers::CONTROL) => true,
        KeyCode::Esc => {
            input.clear();
            false
        }
        KeyCode::Enter => false,
        KeyCode::Backspace => {
            input.pop();
            true
        }
        KeyCode::Char(c) => {
            input.push(c);
            true
        }
        _ => true,
    };
    match app.view() {
        View::Tenants => {
            app.tenant_filter = input.clone();
            app.rebuild_tenants();
        }
        _ => {
            app.job_filter = input.clone();
            app.rebuild_jobs();
        }
    }
    if keep_open {
        app.mode = Mode::Filter { input };
    }
    Vec::new()
}

fn search_key(app: &mut App, mut input: String, key: KeyEvent) -> Vec<Effect> {
    let keep_open = match key.code {
        _ if prompt::is_clear(&key) => {
            input.clear();
            true
        }
        // Other control keys type nothing.
        KeyCode::Char(_) if key.modifiers.contains(KeyModifiers::CONTROL) => true,
        KeyCode::Esc => {
            input.clear();
            false
        }
        KeyCode::Enter => false,
        KeyCode::Backspace => {
            input.pop();
            true
        }
        KeyCode::Char(c) => {
            input.push(c);
            true
        }
        _ => true,
    };
    let query = input.to_lowercase();
    app.logs.search = (!query.is_empty()).then_some(query);
    if app.logs.search.is_none() {
        app.logs.context = None;
    }
    app.logs.reindex();
    if keep_open {
        app.mode = Mode::Search { input };
    } else if app.logs.search.is_some() {
        let h = app.body_rows();
        if !app.logs.jump(true, h) {
            app.set_status(StatusKind::Warn, format!("/{input}: no match"));
        }
    }
    Vec::new()
}

fn confirm_key(app: &mut App, confirm: Confirm, key: KeyEvent) -> Vec<Effect> {
    match key.code {
        KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => {
            if app.read_only {
                app.set_status(StatusKind::Warn, "read-only: nothing was changed");
                return Vec::new();
            }
            confirm.commands.into_iter().map(Effect::Engine).collect()
        }
        KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
            app.set_status(StatusKind::Info, "nothing was changed");
            Vec::new()
        }
        _ => {
            app.mode = Mode::Confirm(confirm);
            Vec::new()
        }
    }
}

/// A fresh preview request for the form (or its error, shown at once).
pub(super) fn preview(app: &mut App, form: &mut TriggerForm) -> Vec<Effect> {
    app.form_generation += 1;
    form.generation = app.form_generation;
    match form.request() {
        Ok(request) => vec![Effect::Preview {
            generation: form.generation,
            request,
        }],
        Err(e) => {
            form.preview = Some(Err(e.to_string()));
            Vec::new()
        }
    }
}

fn form_key(app: &mut App, mut form: TriggerForm, key: KeyEvent) -> Vec<Effect> {
    let changed = match key.code {
        KeyCode::Esc => {
            app.set_status(StatusKind::Info, "trigger cancelled");
            return Vec::new();
        }
        KeyCode::Enter => return submit_form(app, form),
        KeyCode::Tab | KeyCode::Down => {
            form.focus_step(1);
            false
        }
        KeyCode::BackTab | KeyCode::Up => {
            form.focus_step(-1);
            false
        }
        KeyCode::Left => {
            form.cycle(-1);
            form.focus.is_choice()
        }
        KeyCode::Right => {
            form.cycle(1);
            form.focus.is_choice()
        }
        KeyCode::Char(' ') if form.focus.is_choice() => {
            form.cycle(1);
            true
        }
        _ if prompt::is_clear(&key) => form.clear_field(),
        KeyCode::Char(_) if key.modifiers.contains(KeyModifiers::CONTROL) => false,
        KeyCode::Char(c) => form.type_char(c),
        KeyCode::Backspace => form.backspace(),
        _ => false,
    };
    let effects = if changed {
        preview(app, &mut form)
    } else {
        Vec::new()
    };
    app.mode = Mode::Form(Box::new(form));
    effects
}

fn submit_form(app: &mut App, form: TriggerForm) -> Vec<Effect> {
    let request = match form.request() {
        Ok(r) => r,
        Err(e) => {
            app.set_status(
                StatusKind::Error,
                format!("{}: {e}", app.key(Action::Trigger)),
            );
            app.mode = Mode::Form(Box::new(form));
            return Vec::new();
        }
    };
    let summary = match &form.preview {
        Some(Ok(s)) => s.clone(),
        Some(Err(e)) => {
            app.set_status(
                StatusKind::Error,
                format!("{}: {e}", app.key(Action::Trigger)),
            );
            app.mode = Mode::Form(Box::new(form));
            return Vec::new();
        }
        None => {
            app.set_status(
                StatusKind::Warn,
                format!(
                    "{}: the plan preview is not ready yet",
                    app.key(Action::Trigger)
                ),
            );
            app.mode = Mode::Form(Box::new(form));
            return Vec::new();
        }
    };
    let target = form.target;
    // Where the job can go depends on how the console was started: refused here, with what
    // to do about it, rather than by the engine after a confirm.
    let refused = match (target, &app.cloud) {
        (Target::Cloud, CloudMode::Off { why }) => {
            Some(format!("{}: cloud: {why}", app.key(Action::Trigger)))
        }
        (Target::Local, CloudMode::On) => Some(
            format!(
                "{}: local: this console watches the cloud deployment (--cloud); run local jobs \
             in a console started without --cloud",
                app.key(Action::Trigger)
            )
            .to_string(),
        ),
        _ => None,
    };
    if let Some(why) = refused {
        app.set_status(StatusKind::Error, why);
        app.mode = Mode::Form(Box::new(form));
        return Vec::new();
    }
    let where_ = match target {
        Target::Local => "here",
        Target::Cloud => "in the cloud (a Step Functions execution)",
    };
    app.mode = Mode::Confirm(Confirm {
        prompt: format!(
            "Start the backfill of {} {} {where_}: {} chunk(s), about {} API calls{}?",
            request.tenant_id,
            request.service,
            summary.chunks,
            summary.api_calls,
            summary
                .duration_secs
                .map(|s| format!(", at least {}", fmt_duration(s.ceil() as i64)))
                .unwrap_or_default()
        ),
        commands: vec![Command::Trigger { request, target }],
    });
    Vec::new()
}
