//! The `:` prompt, k9s style: a bare `:` lists the commands, Tab cycles the completions of
//! what is typed (commands, job ids after `job `, tenant ids after `tenant `, theme names after
//! `theme `) and Shift-Tab goes back, Ctrl-U clears the line (as in every prompt of the
//! console). `:job ID` opens a job's chunks, `:tenant ID` the tenant's services, `:alerts` what
//! needs attention.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::Effect;
use super::actions::{leave_detail, settle_detail};
use crate::engine::handle::Command;
use crate::tui::app::{App, Cycle, Route, StatusKind};
use crate::tui::theme::Theme;

/// Every command with its argument, as a bare `:` lists them.
pub const USAGE: &[&str] = &[
    "jobs",
    "job ID",
    "tenants",
    "tenant ID",
    "alerts",
    "logs",
    "health",
    "pulse",
    "theme NAME",
    "help",
    "q",
    "q!",
];

/// Commands that take an argument, and what completes it.
const TAKES_ARG: &[&str] = &["job", "tenant", "theme"];

/// Ctrl-U: clears a prompt's line.
pub fn is_clear(key: &KeyEvent) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('u')
}

/// Completions of a partly typed command line: command names, then the job ids, tenant ids or
/// theme names of a command that takes one.
pub fn completions(app: &App, input: &str) -> Vec<String> {
    let input = input.trim_start();
    if let Some((cmd, rest)) = input.split_once(' ')
        && TAKES_ARG.contains(&cmd)
    {
        let rest = rest.trim_start();
        let words: Vec<String> = match cmd {
            "job" => app.snap.jobs.iter().map(|j| j.job_id.clone()).collect(),
            "tenant" => app
                .snap
                .tenants
                .iter()
                .map(|t| t.tenant_id.clone())
                .collect(),
            _ => Theme::names().iter().map(|t| t.to_string()).collect(),
        };
        return words
            .into_iter()
            .filter(|w| w.starts_with(rest))
            .map(|w| format!("{cmd} {w}"))
            .collect();
    }
    let mut names: Vec<String> = crate::tui::action::COMMANDS
        .iter()
        .chain(TAKES_ARG)
        .chain(&["alerts"])
        .filter(|c| c.starts_with(input))
        .map(|c| c.to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// What the prompt's line shows after the input: every command on a bare `:`, else the
/// completions (as many as fit; the line is cut by the terminal).
pub fn hint(app: &App, input: &str) -> String {
    if input.trim().is_empty() {
        return format!("   {}", USAGE.join("  "));
    }
    let options = completions(app, input);
    if options.is_empty() {
        return String::new();
    }
    format!("   {}", options.join("  "))
}

/// Tab (`step` 1) or Shift-Tab (-1): the next completion of what was typed before the first
/// Tab. A command that takes an argument gets its space.
pub fn cycle(app: &mut App, input: String, step: isize) -> String {
    let typed = match &app.command_cycle {
        Some(c) if completions(app, &c.typed).get(c.index) == Some(&input) => c.typed.clone(),
        _ => input.clone(),
    };
    let options = completions(app, &typed);
    if options.is_empty() {
        app.command_cycle = None;
        return input;
    }
    let n = options.len() as isize;
    let index = match &app.command_cycle {
        Some(c) if c.typed == typed && options.get(c.index) == Some(&input) => {
            (c.index as isize + step).rem_euclid(n) as usize
        }
        _ if step < 0 => options.len() - 1,
        _ => 0,
    };
    let mut next = options[index].clone();
    if options.len() == 1 && TAKES_ARG.contains(&next.as_str()) {
        next.push(' ');
        app.command_cycle = None;
        return next;
    }
    app.command_cycle = Some(Cycle { typed, index });
    next
}

/// Whether `:what ID` names something that exists; says what is wrong when not.
fn known(app: &mut App, what: &str, id: &str, exists: bool) -> bool {
    if id.is_empty() {
        let text = format!(":{what} ID (Tab completes the ids)");
        app.set_status(StatusKind::Warn, text);
    } else if !exists {
        app.set_status(StatusKind::Error, format!(":{what}: no {what} {id}"));
    }
    !id.is_empty() && exists
}

/// `:job ID`: the job's chunks, from the jobs list.
pub fn open_job(app: &mut App, id: &str) -> Vec<Effect> {
    let exists = app.snap.jobs.iter().any(|j| j.job_id == id);
    if !known(app, "job", id, exists) {
        return Vec::new();
    }
    let mut effects = leave_detail(app);
    app.stack = vec![
        Route::Tenants,
        Route::Jobs { scope: None },
        Route::JobDetail { job_id: id.into() },
    ];
    app.job_filter.clear();
    app.rebuild_jobs();
    if let Some(row) = app
        .job_rows
        .iter()
        .position(|&i| app.snap.jobs[i].job_id == id)
    {
        app.jobs.selected = row;
    }
    app.detail_table = 0;
    app.detail_chunk = 0;
    settle_detail(app);
    effects.push(Effect::Engine(Command::Watch {
        job_id: Some(id.into()),
    }));
    effects
}

/// `:tenant ID`: the tenants view filtered to the tenant's services.
pub fn open_tenant(app: &mut App, id: &str) -> Vec<Effect> {
    let exists = app.snap.tenants.iter().any(|t| t.tenant_id == id);
    if !known(app, "tenant", id, exists) {
        return Vec::new();
    }
    let effects = leave_detail(app);
    app.stack = vec![Route::Tenants];
    app.tenant_filter = id.to_string();
    app.rebuild_tenants();
    app.tenants.selected = 0;
    effects
}
