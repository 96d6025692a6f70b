//! Protected tenants in the console: a command that changes a protected tenant's jobs or data
//! (`protected: true` in the tenants registry) is held back, whichever key, confirm or form
//! produced it, until the operator types the tenant id. Every effect `update` returns passes
//! through [`hold`]; what needs the id is the operations API's own rule (`ops::guard`) on the
//! snapshot, with its words. The exact id sends the commands wrapped in
//! `Command::Confirmed` (the engine checks the id again); anything else refuses them and Esc
//! cancels. A bulk action over several protected tenants asks for each id in turn.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::Effect;
use crate::engine::handle::Command;
use crate::engine::ops::{Confirmation, JobAction, guard};
use crate::tui::app::{App, Mode, Protect, StatusKind};

/// The tenant a command changes and what it does (`cancel backfill_…`), if it changes one;
/// `None` for commands that change nothing and for those already confirmed.
fn target(app: &App, command: &Command) -> Option<(String, String)> {
    let job = |verb: JobAction, id: &str| {
        let job = app.snap.jobs.iter().find(|j| j.job_id == id)?;
        Some((job.tenant_id.clone(), format!("{} {id}", verb.verb())))
    };
    match command {
        Command::Resume { job_id } => job(JobAction::Resume, job_id),
        Command::RetryFailed { job_id } => job(JobAction::RetryFailed, job_id),
        Command::Cancel { job_id } => job(JobAction::Cancel, job_id),
        Command::Pause { job_id } => job(JobAction::Pause, job_id),
        Command::Unpause { job_id } => job(JobAction::Unpause, job_id),
        Command::Trigger { request, .. } => Some((
            request.tenant_id.clone(),
            format!("trigger a backfill of {}", request.service),
        )),
        Command::Transform { tenant_id, service } => {
            Some((tenant_id.clone(), format!("transform {service}")))
        }
        Command::Watch { .. } | Command::Verify { .. } | Command::Confirmed { .. } => None,
    }
}

/// The first command of `commands` the protection rule holds back: its tenant and the
/// question to ask.
fn first_held(app: &App, commands: &[Command]) -> Option<(String, String)> {
    commands.iter().find_map(|c| {
        let (tenant_id, what) = target(app, c)?;
        let protected = app
            .snap
            .tenants
            .iter()
            .any(|t| t.tenant_id == tenant_id && t.protected);
        let refusal = guard(&tenant_id, protected, &what, &Confirmation::None).err()?;
        Some((tenant_id, refusal.to_string()))
    })
}

/// Holds back the engine commands among `effects` (or in a confirm just opened) when one of
/// them changes a protected tenant: the typed-id prompt opens instead.
pub fn hold(app: &mut App, effects: Vec<Effect>) -> Vec<Effect> {
    if let Mode::Confirm(c) = &app.mode
        && let Some((tenant_id, prompt)) = first_held(app, &c.commands)
    {
        let Mode::Confirm(c) = std::mem::replace(&mut app.mode, Mode::Normal) else {
            unreachable!("matched above")
        };
        ask(app, tenant_id, prompt, Some(c.prompt), c.commands);
        return effects;
    }
    let commands: Vec<Command> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Engine(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let Some((tenant_id, prompt)) = first_held(app, &commands) else {
        return effects;
    };
    // Held, so not running: a transform's "still running" mark comes back when it is sent.
    for c in &commands {
        super::lifecycle::answered(app, c);
    }
    ask(app, tenant_id, prompt, None, commands);
    effects
        .into_iter()
        .filter(|e| !matches!(e, Effect::Engine(_)))
        .collect()
}

fn ask(
    app: &mut App,
    tenant_id: String,
    prompt: String,
    context: Option<String>,
    commands: Vec<Command>,
) {
    app.set_status(
        StatusKind::Warn,
        format!("{tenant_id} is protected: type its id and Enter (Esc cancels)"),
    );
    app.mode = Mode::Protect(Protect {
        tenant_id,
        prompt,
        context,
        input: String::new(),
        commands,
    });
}

/// A key in the typed-id prompt.
pub fn key(app: &mut App, mut p: Protect, key: KeyEvent) -> Vec<Effect> {
    if super::prompt::is_clear(&key) {
        p.input.clear();
        app.mode = Mode::Protect(p);
        return Vec::new();
    }
    match key.code {
        KeyCode::Esc => {
            app.set_status(StatusKind::Info, "nothing was changed");
            Vec::new()
        }
        KeyCode::Enter => answer(app, p),
        KeyCode::Backspace => {
            p.input.pop();
            app.mode = Mode::Protect(p);
            Vec::new()
        }
        KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
            p.input.push(c);
            app.mode = Mode::Protect(p);
            Vec::new()
        }
        _ => {
            app.mode = Mode::Protect(p);
            Vec::new()
        }
    }
}

/// Enter: the exact id confirms that tenant's commands (and asks for the next protected
/// tenant's, if any); anything else refuses them all.
fn answer(app: &mut App, p: Protect) -> Vec<Effect> {
    if app.read_only {
        app.set_status(StatusKind::Warn, "read-only: nothing was changed");
        return Vec::new();
    }
    let typed = p.input.trim();
    if typed != p.tenant_id {
        app.set_status(
            StatusKind::Error,
            format!(
                "'{typed}' is not the tenant id {}: nothing was changed",
                p.tenant_id
            ),
        );
        return Vec::new();
    }
    let commands: Vec<Command> = p
        .commands
        .into_iter()
        .map(|c| match target(app, &c) {
            Some((tenant_id, _)) if tenant_id == p.tenant_id => Command::Confirmed {
                tenant_id,
                command: Box::new(c),
            },
            _ => c,
        })
        .collect();
    if let Some((tenant_id, prompt)) = first_held(app, &commands) {
        ask(app, tenant_id, prompt, p.context, commands);
        return Vec::new();
    }
    for c in &commands {
        if let Command::Transform { tenant_id, service } = c.inner() {
            app.life.transforming.insert((tenant_id.clone(), *service));
        }
    }
    app.set_status(StatusKind::Info, format!("{} confirmed", p.tenant_id));
    commands.into_iter().map(Effect::Engine).collect()
}
