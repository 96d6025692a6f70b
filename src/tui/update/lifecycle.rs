//! The lifecycle keys: `T` rebuilds a tenant's service's canonical tables, `v` verifies a
//! job against the source's counts. Each checks the state first and says in the status bar
//! why it does nothing; the engine's answer arrives later as `Msg::Done`.

use super::Effect;
use crate::domain::Service;
use crate::engine::handle::Command;
use crate::tui::action::Action;
use crate::tui::app::{App, StatusKind, View};

/// The tenant's service `T` acts on: the selected row in Tenants, the selected job's
/// elsewhere.
fn transform_target(app: &App) -> Option<(String, Service)> {
    match app.view() {
        View::Tenants => app
            .tenant_rows
            .get(app.tenants.selected)
            .map(|r| (r.tenant_id.clone(), r.service)),
        _ => app.selected_job().map(|j| (j.tenant_id.clone(), j.service)),
    }
}

pub(super) fn transform(app: &mut App) -> Vec<Effect> {
    if app.is_cloud() {
        app.set_status(
            StatusKind::Warn,
            format!(
                "{}: the cloud deployment's workers transform when a job completes; run \
             `avesa-console transform` where the data is",
                app.key(Action::Transform)
            ),
        );
        return Vec::new();
    }
    let Some((tenant_id, service)) = transform_target(app) else {
        let what = if app.view() == View::Tenants {
            "no tenant service selected"
        } else {
            "no job selected"
        };
        app.set_status(
            StatusKind::Warn,
            format!(
                "{}: {what}",
                app.keymap.describe(app.view(), Action::Transform)
            ),
        );
        return Vec::new();
    };
    if app
        .snap
        .canonical
        .get(&service)
        .is_none_or(|t| t.is_empty())
    {
        app.set_status(
            StatusKind::Warn,
            format!(
                "{}: no canonical table is mapped from {service} (mappings/canonical/)",
                app.key(Action::Transform)
            ),
        );
        return Vec::new();
    }
    let key = (tenant_id.clone(), service);
    if app.life.transforming.contains(&key) {
        app.set_status(
            StatusKind::Warn,
            format!(
                "{}: the transform of {tenant_id} {service} is still running",
                app.key(Action::Transform)
            ),
        );
        return Vec::new();
    }
    app.life.transforming.insert(key);
    app.set_status(
        StatusKind::Info,
        format!(
            "{}: rebuilding the canonical tables of {tenant_id} {service}…",
            app.key(Action::Transform)
        ),
    );
    vec![Effect::Engine(Command::Transform { tenant_id, service })]
}

pub(super) fn verify(app: &mut App) -> Vec<Effect> {
    if app.is_cloud() {
        app.set_status(
            StatusKind::Warn,
            format!(
                "{}: verification reads the sources and the landed data, which this cloud \
             console has neither of; run `avesa-console verify JOB_ID` where they are",
                app.key(Action::Verify)
            ),
        );
        return Vec::new();
    }
    let Some(job) = app.selected_job() else {
        app.set_status(
            StatusKind::Warn,
            format!(
                "{}: no job selected",
                app.keymap.describe(app.view(), Action::Verify)
            ),
        );
        return Vec::new();
    };
    let job_id = job.job_id.clone();
    if !job.status.is_terminal() {
        let why = format!(
            "{}: job {job_id} is {}; verify it once it has ended",
            app.key(Action::Verify),
            job.status
        );
        app.set_status(StatusKind::Warn, why);
        return Vec::new();
    }
    if app.life.verifying.contains(&job_id) {
        app.set_status(
            StatusKind::Warn,
            format!(
                "{}: job {job_id} is being verified; the results follow",
                app.key(Action::Verify)
            ),
        );
        return Vec::new();
    }
    app.life.verifying.insert(job_id.clone());
    app.set_status(
        StatusKind::Info,
        format!(
            "{}: verifying {job_id} (one count request per chunk)…",
            app.key(Action::Verify)
        ),
    );
    vec![Effect::Engine(Command::Verify { job_id })]
}

/// The engine answered a transform or verify: it no longer runs.
pub(super) fn answered(app: &mut App, command: &Command) {
    match command.inner() {
        Command::Transform { tenant_id, service } => {
            app.life.transforming.remove(&(tenant_id.clone(), *service));
        }
        Command::Verify { job_id } => {
            app.life.verifying.remove(job_id);
        }
        _ => {}
    }
}
