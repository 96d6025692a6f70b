//! Normal-mode actions: navigation, drill-in and back, and the job actions with their
//! state checks, confirms and read-only refusals.

use super::{Effect, preview};
use crate::domain::{Chunk, ChunkStatus, Job, JobStatus};
use crate::engine::handle::{Command, IN_THIS_CONSOLE};
use crate::engine::ops::{JobAction, Placement, handoff_due, judge};
use crate::tui::action::Action;
use crate::tui::app::failures::Focus;
use crate::tui::app::{App, Confirm, Mode, Route, StatusKind, View};
use crate::tui::form::TriggerForm;
use crate::tui::logs::{ChunkFilter, next_level};

pub(super) fn perform(app: &mut App, action: Action) -> Vec<Effect> {
    if action.is_mutating() && app.read_only {
        app.set_status(
            StatusKind::Warn,
            format!(
                "read-only: {} is disabled (started with --read-only)",
                app.keymap.describe(app.view(), action)
            ),
        );
        return Vec::new();
    }
    let page = app.body_rows() as isize;
    match action {
        Action::Quit => super::quit::ask(app),
        Action::CommandMode => {
            app.mode = Mode::Command {
                input: String::new(),
            };
            Vec::new()
        }
        Action::Help => {
            app.mode = Mode::Help;
            Vec::new()
        }
        Action::FilterMode => open_filter(app),
        Action::Back => back(app),
        Action::Enter => enter(app),
        Action::Up => move_by(app, -1),
        Action::Down => move_by(app, 1),
        Action::PageUp => move_by(app, -page),
        Action::PageDown => move_by(app, page),
        Action::Top => move_by(app, isize::MIN / 2),
        Action::Bottom => move_by(app, isize::MAX / 2),
        Action::Left => step_chunk(app, -1),
        Action::Right => step_chunk(app, 1),
        Action::NextFailed => jump_failed(app, true),
        Action::PrevFailed => jump_failed(app, false),
        Action::Trigger => open_form(app),
        Action::Resume | Action::RetryFailed | Action::Cancel | Action::Pause => {
            job_action(app, action)
        }
        Action::Transform => super::lifecycle::transform(app),
        Action::Verify => super::lifecycle::verify(app),
        Action::Mark => toggle_mark(app),
        Action::ClearMarks => {
            app.marks.clear();
            Vec::new()
        }
        Action::Logs => open_logs(app),
        Action::Pulse => open_pulse(app),
        Action::Follow => toggle_follow(app),
        Action::Wrap => toggle_wrap(app),
        Action::NextMatch | Action::PrevMatch => jump_match(app, action),
        Action::LevelFilter => next_level_filter(app),
        Action::ClearChunkFilter => clear_chunk_filter(app),
        Action::Context => toggle_context(app),
        Action::SortNext => {
            app.sort = app.sort.next();
            app.rebuild_jobs();
            app.set_status(StatusKind::Info, format!("sorted by {}", app.sort.label()));
            Vec::new()
        }
        Action::SortReverse => {
            app.sort_desc = !app.sort_desc;
            app.rebuild_jobs();
            Vec::new()
        }
        // The failure keys are `failures::perform`'s (`update` sends them there).
        Action::OpenFailure
        | Action::Acknowledge
        | Action::Describe
        | Action::Yank
        | Action::Pager => Vec::new(),
    }
}

/// `/`: the logs pane's search, or the row filter of a table, to edit.
fn open_filter(app: &mut App) -> Vec<Effect> {
    app.mode = match app.view() {
        View::Logs => Mode::Search {
            input: app.logs.search.clone().unwrap_or_default(),
        },
        View::Tenants => Mode::Filter {
            input: app.tenant_filter.clone(),
        },
        _ => Mode::Filter {
            input: app.job_filter.clone(),
        },
    };
    Vec::new()
}

/// Marks or unmarks the selected job and moves down.
fn toggle_mark(app: &mut App) -> Vec<Effect> {
    if let Some(id) = app.selected_job().map(|j| j.job_id.clone()) {
        if !app.marks.remove(&id) {
            app.marks.insert(id);
        }
        move_by(app, 1);
    }
    Vec::new()
}

fn toggle_follow(app: &mut App) -> Vec<Effect> {
    app.logs.follow = !app.logs.follow;
    let on = if app.logs.follow { "on" } else { "off" };
    app.set_status(StatusKind::Info, format!("follow {on}"));
    Vec::new()
}

fn toggle_wrap(app: &mut App) -> Vec<Effect> {
    app.logs.wrap = !app.logs.wrap;
    let on = if app.logs.wrap { "on" } else { "off" };
    app.set_status(StatusKind::Info, format!("wrap {on}"));
    Vec::new()
}

/// `n` / `N`: the next or previous search match in the logs pane.
fn jump_match(app: &mut App, action: Action) -> Vec<Effect> {
    let key = if action == Action::NextMatch {
        'n'
    } else {
        'N'
    };
    match app.logs.search.clone() {
        None => app.set_status(
            StatusKind::Warn,
            format!("{key}: no search yet; / to search"),
        ),
        Some(q) => {
            let h = app.body_rows();
            if !app.logs.jump(action == Action::NextMatch, h) {
                app.set_status(StatusKind::Warn, format!("{key}: no match for '{q}'"));
            }
        }
    }
    Vec::new()
}

/// `L`: the next lowest level the logs pane shows.
fn next_level_filter(app: &mut App) -> Vec<Effect> {
    app.logs.min_level = next_level(app.logs.min_level);
    app.logs.reindex();
    let text = match app.logs.min_level {
        Some(l) => format!("level {l} and above"),
        None => "every level".into(),
    };
    app.set_status(StatusKind::Info, text);
    Vec::new()
}

fn clear_chunk_filter(app: &mut App) -> Vec<Effect> {
    if app.logs.chunk.take().is_none() {
        app.set_status(
            StatusKind::Warn,
            format!(
                "{}: no chunk filter to clear",
                app.key(Action::ClearChunkFilter)
            ),
        );
    }
    app.logs.reindex();
    Vec::new()
}

/// `x`: only the search matches with two lines around each, or every line again.
fn toggle_context(app: &mut App) -> Vec<Effect> {
    if app.logs.search.is_none() {
        app.set_status(
            StatusKind::Warn,
            format!(
                "{0}: search first (/), then {0} keeps matches with context",
                app.key(Action::Context)
            ),
        );
        return Vec::new();
    }
    app.logs.context = match app.logs.context {
        Some(_) => None,
        None => Some(2),
    };
    app.logs.reindex();
    Vec::new()
}

fn move_by(app: &mut App, delta: isize) -> Vec<Effect> {
    let h = app.body_rows();
    match app.view() {
        View::Tenants => app
            .tenants
            .step(delta, app.tenant_rows.len(), app.tenant_body_rows()),
        View::Jobs => app.jobs.step(delta, app.job_rows.len(), h),
        View::Health => app.health.step(delta, app.alerts.len(), h),
        View::Pulse => {}
        View::Logs => {
            if delta == isize::MIN / 2 {
                app.logs.to_top();
            } else if delta == isize::MAX / 2 {
                app.logs.to_bottom();
            } else {
                app.logs.scroll(delta, h);
            }
        }
        View::Detail => {
            let n = app.detail_groups.len();
            if n > 0 {
                let t = app
                    .detail_table
                    .saturating_add_signed(delta.signum())
                    .min(n - 1);
                app.detail_table = t;
                app.detail_chunk = app
                    .detail_chunk
                    .min(app.detail_groups[t].1.len().saturating_sub(1));
            }
        }
    }
    Vec::new()
}

/// Moves the current list's cursor to row `i` (a click) the way the keys move it.
pub(super) fn select(app: &mut App, i: usize) -> Vec<Effect> {
    let at = match app.view() {
        View::Tenants => app.tenants.selected,
        View::Jobs => app.jobs.selected,
        View::Health => app.health.selected,
        View::Detail => return step_chunk(app, i as isize - app.detail_chunk as isize),
        View::Logs | View::Pulse => return Vec::new(),
    };
    move_by(app, i as isize - at as isize)
}

/// The watched job's chunks, as the snapshot holds them.
pub(crate) fn detail_chunks(app: &App) -> &[Chunk] {
    match app.route() {
        Route::JobDetail { job_id } => app.snap.chunks.get(job_id).map_or(&[], |c| c.as_slice()),
        _ => &[],
    }
}

/// The chunk under the detail view's cursor.
pub(crate) fn selected_chunk(app: &App) -> Option<&Chunk> {
    let (_, range) = app.detail_groups.get(app.detail_table)?;
    detail_chunks(app)
        .get(range.start + app.detail_chunk)
        .filter(|_| app.detail_chunk < range.len())
}

/// Regroups the watched job's chunks by table after a snapshot or a route change.
pub(crate) fn settle_detail(app: &mut App) {
    let mut groups: Vec<(String, std::ops::Range<usize>)> = Vec::new();
    for (i, c) in detail_chunks(app).iter().enumerate() {
        match groups.last_mut() {
            Some((t, r)) if *t == c.key.table => r.end = i + 1,
            _ => groups.push((c.key.table.clone(), i..i + 1)),
        }
    }
    app.detail_groups = groups;
    focus_detail(app);
    app.detail_table = app
        .detail_table
        .min(app.detail_groups.len().saturating_sub(1));
    let len = app
        .detail_groups
        .get(app.detail_table)
        .map_or(0, |(_, r)| r.len());
    app.detail_chunk = app.detail_chunk.min(len.saturating_sub(1));
}

/// Selects the chunk `detail_focus` names once the watched job's chunks are read; the focus
/// is kept until then (a snapshot taken before the watch started has none of them).
fn focus_detail(app: &mut App) {
    let Some(focus) = app.detail_focus.clone() else {
        return;
    };
    let Route::JobDetail { job_id } = app.route().clone() else {
        return;
    };
    if job_id != focus.job_id() {
        app.detail_focus = None;
        return;
    }
    let chunks = detail_chunks(app);
    if chunks.is_empty() {
        return;
    }
    let found = focus.find(chunks);
    let key = found.map(|i| chunks[i].key.clone());
    if let Some(i) = found
        && let Some(t) = app.detail_groups.iter().position(|(_, r)| r.contains(&i))
    {
        app.detail_table = t;
        app.detail_chunk = i - app.detail_groups[t].1.start;
    }
    app.detail_focus = None;
    if std::mem::take(&mut app.describe_focus)
        && let Some(key) = key
        && matches!(app.mode, Mode::Normal)
    {
        app.mode = Mode::Describe { key, scroll: 0 };
    }
}

fn step_chunk(app: &mut App, delta: isize) -> Vec<Effect> {
    if let Some((_, r)) = app.detail_groups.get(app.detail_table) {
        app.detail_chunk = app
            .detail_chunk
            .saturating_add_signed(delta)
            .min(r.len().saturating_sub(1));
    }
    Vec::new()
}

fn jump_failed(app: &mut App, forward: bool) -> Vec<Effect> {
    let chunks = detail_chunks(app);
    let at = app
        .detail_groups
        .get(app.detail_table)
        .map_or(0, |(_, r)| r.start + app.detail_chunk);
    let n = chunks.len();
    let found = (1..=n)
        .map(|k| {
            if forward {
                (at + k) % n
            } else {
                (at + n * 2 - k) % n
            }
        })
        .find(|&i| chunks[i].status == ChunkStatus::Failed);
    match found {
        Some(i) => {
            if let Some(t) = app.detail_groups.iter().position(|(_, r)| r.contains(&i)) {
                app.detail_table = t;
                app.detail_chunk = i - app.detail_groups[t].1.start;
            }
        }
        None => app.set_status(StatusKind::Info, "no failed chunk in this job"),
    }
    Vec::new()
}

/// Effects for leaving the detail view: stop watching its chunks.
pub(super) fn leave_detail(app: &App) -> Vec<Effect> {
    match app.route() {
        Route::JobDetail { .. } => vec![Effect::Engine(Command::Watch { job_id: None })],
        _ => Vec::new(),
    }
}

fn back(app: &mut App) -> Vec<Effect> {
    if app.view() == View::Logs && app.logs.search.is_some() {
        app.logs.search = None;
        app.logs.context = None;
        app.logs.current_match = None;
        app.logs.reindex();
        return Vec::new();
    }
    if app.stack.len() <= 1 {
        if !app.tenant_filter.is_empty() {
            app.tenant_filter.clear();
            app.rebuild_tenants();
        } else {
            app.set_status(StatusKind::Info, "at the top (q quits)");
        }
        return Vec::new();
    }
    let mut effects = leave_detail(app);
    let left = app.stack.pop();
    if matches!(left, Some(Route::Jobs { .. })) {
        app.job_filter.clear();
    }
    if let Route::JobDetail { job_id } = app.route() {
        effects.push(Effect::Engine(Command::Watch {
            job_id: Some(job_id.clone()),
        }));
    }
    app.rebuild_jobs();
    settle_detail(app);
    effects
}

fn enter(app: &mut App) -> Vec<Effect> {
    match app.view() {
        View::Tenants => {
            let Some(row) = app.tenant_rows.get(app.tenants.selected) else {
                return Vec::new();
            };
            let scope = Some((row.tenant_id.clone(), row.service));
            app.stack.push(Route::Jobs { scope });
            app.jobs = Default::default();
            app.rebuild_jobs();
            Vec::new()
        }
        View::Jobs => {
            let Some(job_id) = app.selected_job().map(|j| j.job_id.clone()) else {
                app.set_status(StatusKind::Warn, "Enter: no job selected");
                return Vec::new();
            };
            app.stack.push(Route::JobDetail {
                job_id: job_id.clone(),
            });
            app.detail_table = 0;
            app.detail_chunk = 0;
            settle_detail(app);
            vec![Effect::Engine(Command::Watch {
                job_id: Some(job_id),
            })]
        }
        _ => Vec::new(),
    }
}

fn open_logs(app: &mut App) -> Vec<Effect> {
    let filter = match app.view() {
        View::Detail => match selected_chunk(app).map(|c| c.key.clone()) {
            Some(key) => {
                // Back from the logs, the detail view selects this chunk again.
                app.detail_focus = Some(Focus::Chunk(key.clone()));
                ChunkFilter {
                    job_id: key.job_id,
                    table: Some(key.table),
                    seq: Some(key.seq),
                }
            }
            None => {
                app.set_status(
                    StatusKind::Warn,
                    format!(
                        "{}: no chunk selected (the plan is still loading)",
                        app.key(Action::Logs)
                    ),
                );
                return Vec::new();
            }
        },
        _ => match app.selected_job() {
            Some(j) => ChunkFilter {
                job_id: j.job_id.clone(),
                table: None,
                seq: None,
            },
            None => {
                app.set_status(
                    StatusKind::Warn,
                    format!("{}: no job selected", app.key(Action::Logs)),
                );
                return Vec::new();
            }
        },
    };
    app.logs.chunk = Some(filter);
    app.logs.follow = true;
    app.logs.reindex();
    let effects = leave_detail(app);
    app.stack.push(Route::Logs);
    effects
}

/// `P`: the pulse view on top of this one (Esc comes back here).
fn open_pulse(app: &mut App) -> Vec<Effect> {
    if app.view() == View::Pulse {
        return Vec::new();
    }
    let effects = leave_detail(app);
    app.stack.push(Route::Pulse);
    effects
}

fn open_form(app: &mut App) -> Vec<Effect> {
    let (tenant, service) = match app.view() {
        View::Tenants => app
            .tenant_rows
            .get(app.tenants.selected)
            .map_or((None, None), |r| {
                (Some(r.tenant_id.clone()), Some(r.service))
            }),
        _ => app.selected_job().map_or((None, None), |j| {
            (Some(j.tenant_id.clone()), Some(j.service))
        }),
    };
    let mut form = TriggerForm::new(&app.snap.tenants, tenant.as_deref(), service);
    if app.is_cloud() {
        form.target = crate::engine::handle::Target::Cloud;
    }
    if form.choices.is_empty() {
        app.set_status(
            StatusKind::Error,
            format!(
                "{}: no tenant has an enabled service",
                app.key(Action::Trigger)
            ),
        );
        return Vec::new();
    }
    let effects = preview(app, &mut form);
    app.mode = Mode::Form(Box::new(form));
    effects
}

/// Why `action` cannot apply to `job`, if it cannot: the operations API's own rule
/// (`ops::judge`) on the snapshot, so a key is refused at once with the words the engine
/// (and the CLI) would use.
fn refusal(app: &App, action: Action, job: &Job) -> Option<String> {
    let id = &job.job_id;
    let op = match action {
        Action::Resume => JobAction::Resume,
        Action::RetryFailed => JobAction::RetryFailed,
        Action::Cancel => JobAction::Cancel,
        _ if job.status == JobStatus::Paused => JobAction::Unpause,
        _ => JobAction::Pause,
    };
    let key = app.key(action);
    let placement = if let Some(pid) = app.snap.runners.get(id) {
        Placement::Running {
            by: crate::engine::ops::in_runner(*pid),
        }
    } else if app.running_here(id) {
        Placement::Running {
            by: IN_THIS_CONSOLE.to_string(),
        }
    } else if let Some(why) = app.waiting(id) {
        Placement::Waiting { why }
    } else {
        Placement::Idle
    };
    let meta = app.snap.lifecycle.get(id).and_then(|l| l.meta.as_ref());
    judge(op, job, handoff_due(job, meta), &placement)
        .err()
        .map(|r| format!("{key}: {r}"))
}

fn command_for(action: Action, job: &Job) -> Command {
    let job_id = job.job_id.clone();
    match action {
        Action::Resume => Command::Resume { job_id },
        Action::RetryFailed => Command::RetryFailed { job_id },
        Action::Cancel => Command::Cancel { job_id },
        Action::Pause if job.status == JobStatus::Paused => Command::Unpause { job_id },
        _ => Command::Pause { job_id },
    }
}

/// What a bulk action will do, each direction with the jobs it names: `Pause 1 job
/// (backfill_a) and unpause 2 jobs (backfill_b, backfill_c)`.
fn bulk_prompt(commands: &[Command]) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for c in commands {
        let (verb, id) = match c {
            Command::Resume { job_id } => ("resume", job_id),
            Command::RetryFailed { job_id } => ("retry the failed chunks of", job_id),
            Command::Cancel { job_id } => ("cancel", job_id),
            Command::Pause { job_id } => ("pause", job_id),
            Command::Unpause { job_id } => ("unpause", job_id),
            _ => continue,
        };
        match groups.iter_mut().find(|(v, _)| *v == verb) {
            Some((_, ids)) => ids.push(id),
            None => groups.push((verb, vec![id])),
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(verb, ids)| {
            const NAMED: usize = 3;
            let mut names = ids
                .iter()
                .take(NAMED)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if ids.len() > NAMED {
                names.push_str(&format!(" and {} more", ids.len() - NAMED));
            }
            let jobs = crate::tui::app::plural(ids.len(), "job");
            format!("{verb} {jobs} ({names})")
        })
        .collect();
    let text = parts.join(" and ");
    let mut chars = text.chars();
    chars
        .next()
        .map_or(String::new(), |c| c.to_uppercase().chain(chars).collect())
}

fn job_action(app: &mut App, action: Action) -> Vec<Effect> {
    // Marked jobs take precedence in the jobs view: a bulk action with a confirm.
    if app.view() == View::Jobs && !app.marks.is_empty() {
        let marked: Vec<Job> = app
            .snap
            .jobs
            .iter()
            .filter(|j| app.marks.contains(&j.job_id))
            .cloned()
            .collect();
        let (ok, skipped): (Vec<&Job>, Vec<&Job>) = marked
            .iter()
            .partition(|j| refusal(app, action, j).is_none());
        if ok.is_empty() {
            app.set_status(
                StatusKind::Warn,
                format!(
                    "{}: none of the {} marked job(s) can take it",
                    app.keymap.describe(app.view(), action),
                    marked.len()
                ),
            );
            return Vec::new();
        }
        let skip = if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({} marked job(s) skipped: wrong state)", skipped.len())
        };
        let commands: Vec<Command> = ok.iter().map(|j| command_for(action, j)).collect();
        app.mode = Mode::Confirm(Confirm {
            prompt: format!("{}?{skip}", bulk_prompt(&commands)),
            commands,
        });
        return Vec::new();
    }
    let Some(job) = app.selected_job().cloned() else {
        app.set_status(
            StatusKind::Warn,
            format!(
                "{}: no job selected",
                app.keymap.describe(app.view(), action)
            ),
        );
        return Vec::new();
    };
    if let Some(why) = refusal(app, action, &job) {
        app.set_status(StatusKind::Warn, why);
        return Vec::new();
    }
    if action == Action::Cancel {
        app.mode = Mode::Confirm(Confirm {
            prompt: format!(
                "Cancel job {}? {} of {} chunks are done; the rest will not run{}.",
                job.job_id,
                job.completed_chunks + job.failed_chunks,
                job.total_chunks,
                if app.is_cloud() {
                    ", and its Step Functions execution is stopped"
                } else {
                    ""
                }
            ),
            commands: vec![command_for(action, &job)],
        });
        return Vec::new();
    }
    vec![Effect::Engine(command_for(action, &job))]
}
