//! `update` in cloud mode, and the local console's answer when cloud is chosen: which
//! commands the keys give, and what is refused before anything is sent.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::engine::handle::Target;
use crate::tui::app::CloudMode;
use crate::tui::fixtures;
use crate::tui::form::{Field, PreviewSummary};

const RUNNING: &str = "backfill_acme_connectwise_20240101";
const PAUSED: &str = "backfill_acme_servicenow_20250101";
const WITH_ERRORS: &str = "backfill_initech_connectwise_20240601";

fn cloud_app() -> App {
    let mut a = fixtures::app(Theme::default());
    a.cloud = CloudMode::On;
    a
}

fn code(app: &mut App, code: KeyCode) -> Vec<Effect> {
    update(app, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn ch(app: &mut App, c: char) -> Vec<Effect> {
    code(app, KeyCode::Char(c))
}

fn status(app: &App) -> String {
    app.status
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default()
}

fn commands(effects: &[Effect]) -> Vec<Command> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Engine(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn jobs_at(app: &mut App, job_id: &str) {
    for c in ":jobs".chars() {
        ch(app, c);
    }
    code(app, KeyCode::Enter);
    app.jobs.selected = app
        .job_rows
        .iter()
        .position(|&i| app.snap.jobs[i].job_id == job_id)
        .unwrap();
}

/// Opens the form, sets its target, and gives it a preview as the runtime would.
fn form_with(app: &mut App, target: Target) {
    ch(app, 't');
    let Mode::Form(form) = &mut app.mode else {
        panic!("{:?}", app.mode)
    };
    form.target = target;
    form.preview = Some(Ok(PreviewSummary {
        window: "[2025-01-01T00:00:00Z, 2025-03-01T00:00:00Z)".into(),
        chunks: 2,
        tables: vec![("tickets".into(), 2)],
        api_calls: 2,
        duration_secs: None,
        rate_per_minute: None,
        first_windows: vec![],
        quota: None,
    }));
}

#[test]
fn cloud_without_settings_says_which_are_missing_and_sends_nothing() {
    let mut a = fixtures::app(Theme::default());
    a.cloud = CloudMode::Off {
        why: "not configured: the state machine ARN: set --state-machine-arn or \
              AVESA_CLOUD_STATE_MACHINE_ARN; then start the console with --cloud"
            .into(),
    };
    ch(&mut a, 't');
    let Mode::Form(form) = &a.mode else { panic!() };
    assert_eq!(
        form.target,
        Target::Local,
        "a local console defaults to local"
    );
    code(&mut a, KeyCode::Esc);
    form_with(&mut a, Target::Cloud);
    let fx = code(&mut a, KeyCode::Enter);
    assert!(fx.is_empty(), "{fx:?}");
    assert!(
        status(&a).starts_with("t: cloud: not configured: the state machine ARN")
            && status(&a).contains("AVESA_CLOUD_STATE_MACHINE_ARN"),
        "{}",
        status(&a)
    );
    assert!(matches!(a.mode, Mode::Form(_)), "the form stays open");
    // Back to local: the confirm comes, and `y` triggers a local run.
    let Mode::Form(form) = &mut a.mode else {
        panic!()
    };
    form.target = Target::Local;
    code(&mut a, KeyCode::Enter);
    let cmds = commands(&ch(&mut a, 'y'));
    assert!(
        matches!(
            cmds.as_slice(),
            [Command::Trigger {
                target: Target::Local,
                ..
            }]
        ),
        "{cmds:?}"
    );
}

#[test]
fn cloud_mode_triggers_in_the_cloud_and_refuses_local_runs() {
    let mut a = cloud_app();
    ch(&mut a, 't');
    let Mode::Form(form) = &a.mode else { panic!() };
    assert_eq!(
        (form.target, Field::ALL.contains(&Field::Target)),
        (Target::Cloud, true),
        "a cloud console defaults to cloud"
    );
    code(&mut a, KeyCode::Esc);
    form_with(&mut a, Target::Cloud);
    assert!(code(&mut a, KeyCode::Enter).is_empty());
    let Mode::Confirm(c) = &a.mode else {
        panic!("{:?}", a.mode)
    };
    assert!(c.prompt.contains("in the cloud"), "{}", c.prompt);
    let cmds = commands(&ch(&mut a, 'y'));
    let [Command::Trigger { request, target }] = cmds.as_slice() else {
        panic!("{cmds:?}")
    };
    assert_eq!(
        (request.tenant_id.as_str(), *target),
        ("acme", Target::Cloud)
    );

    form_with(&mut a, Target::Local);
    assert!(code(&mut a, KeyCode::Enter).is_empty());
    assert!(
        status(&a).contains("watches the cloud deployment"),
        "{}",
        status(&a)
    );
    assert!(matches!(a.mode, Mode::Form(_)));
}

#[test]
fn cloud_mode_cancel_resume_retry_and_unpause_send_the_jobs_commands() {
    let mut a = cloud_app();
    jobs_at(&mut a, RUNNING);
    ch(&mut a, 'c');
    let Mode::Confirm(c) = &a.mode else {
        panic!("{:?}", a.mode)
    };
    assert!(
        c.prompt.contains("its Step Functions execution is stopped"),
        "{}",
        c.prompt
    );
    assert_eq!(
        commands(&ch(&mut a, 'y')),
        [Command::Cancel {
            job_id: RUNNING.into()
        }]
    );
    jobs_at(&mut a, PAUSED);
    assert_eq!(
        commands(&ch(&mut a, 'r')),
        [Command::Resume {
            job_id: PAUSED.into()
        }]
    );
    assert_eq!(
        commands(&ch(&mut a, 'p')),
        [Command::Unpause {
            job_id: PAUSED.into()
        }]
    );
    jobs_at(&mut a, WITH_ERRORS);
    assert_eq!(
        commands(&ch(&mut a, 'R')),
        [Command::RetryFailed {
            job_id: WITH_ERRORS.into()
        }]
    );
    // Read-only still refuses.
    a.read_only = true;
    assert!(ch(&mut a, 'R').is_empty());
}
