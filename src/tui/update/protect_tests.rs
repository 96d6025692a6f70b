//! Protected tenants in the console: every change to one waits for its id to be typed.

use std::sync::Arc;

use crossterm::event::KeyCode;

use super::tests::{app, ch, code, jobs_at as select, status, typed};
use super::*;
use crate::domain::Service;

const ACME_RUNNING: &str = "backfill_acme_connectwise_20240101";
const GLOBEX_PENDING: &str = "backfill_globex_servicenow_20250301";

/// Marks `tenant_id` protected in the snapshot, as the registry's `protected: true` does.
fn protect(a: &mut App, tenant_id: &str) {
    let mut snap = (*a.snap).clone();
    for t in Arc::make_mut(&mut snap.tenants) {
        t.protected |= t.tenant_id == tenant_id;
    }
    update(a, Msg::Snapshot(Arc::new(snap)));
}

/// The demo console with acme protected, its running job selected and `key` pressed.
fn asked(key: char) -> App {
    let mut a = app();
    protect(&mut a, "acme");
    select(&mut a, ACME_RUNNING);
    assert!(engine_commands(ch(&mut a, key)).is_empty(), "sent unasked");
    a
}

fn engine_commands(effects: Vec<Effect>) -> Vec<Command> {
    effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Engine(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn confirmed(tenant_id: &str, command: Command) -> Command {
    Command::Confirmed {
        tenant_id: tenant_id.into(),
        command: Box::new(command),
    }
}

fn pause(job_id: &str) -> Command {
    Command::Pause {
        job_id: job_id.into(),
    }
}

#[test]
fn a_change_to_a_protected_tenant_asks_for_its_id_and_the_exact_id_sends_it() {
    let mut a = app();
    protect(&mut a, "acme");
    select(&mut a, ACME_RUNNING);
    assert!(engine_commands(ch(&mut a, 'p')).is_empty(), "sent unasked");
    let Mode::Protect(p) = &a.mode else {
        panic!("{:?}", a.mode)
    };
    assert_eq!(
        p.prompt,
        format!("tenant acme is protected: type the tenant id to pause {ACME_RUNNING}")
    );
    assert!(typed(&mut a, "acme").is_empty());
    let sent = engine_commands(code(&mut a, KeyCode::Enter));
    assert_eq!(sent, vec![confirmed("acme", pause(ACME_RUNNING))]);
    assert_eq!(a.mode, Mode::Normal);
    // Another tenant's job is not asked about.
    select(&mut a, GLOBEX_PENDING);
    assert_eq!(
        engine_commands(ch(&mut a, 'p')),
        vec![pause(GLOBEX_PENDING)]
    );
}

#[test]
fn another_id_refuses_and_esc_cancels() {
    let mut a = asked('p');
    typed(&mut a, "acm");
    assert!(engine_commands(code(&mut a, KeyCode::Enter)).is_empty());
    assert_eq!(a.mode, Mode::Normal);
    assert_eq!(
        status(&a),
        "'acm' is not the tenant id acme: nothing was changed"
    );
    ch(&mut a, 'p');
    typed(&mut a, "acme");
    assert!(engine_commands(code(&mut a, KeyCode::Esc)).is_empty());
    assert_eq!(a.mode, Mode::Normal);
    assert_eq!(status(&a), "nothing was changed");
}

#[test]
fn a_cancel_asks_for_the_id_instead_of_y_and_keeps_what_it_does() {
    let mut a = asked('c');
    let Mode::Protect(p) = &a.mode else {
        panic!("{:?}", a.mode)
    };
    assert!(p.context.as_ref().is_some_and(|c| c.contains("15 of 24")));
    // `y` is a letter of the id, not a yes.
    assert!(engine_commands(ch(&mut a, 'y')).is_empty());
    assert!(matches!(&a.mode, Mode::Protect(p) if p.input == "y"));
}

#[test]
fn a_bulk_action_with_one_protected_job_asks_for_that_tenant() {
    let mut a = app();
    protect(&mut a, "acme");
    select(&mut a, ACME_RUNNING);
    a.marks.insert(ACME_RUNNING.into());
    a.marks.insert(GLOBEX_PENDING.into());
    ch(&mut a, 'p');
    let Mode::Protect(p) = &a.mode else {
        panic!("{:?}", a.mode)
    };
    assert_eq!(p.tenant_id, "acme");
    assert!(
        p.context
            .as_ref()
            .is_some_and(|c| c.starts_with("Pause 2 jobs"))
    );
    typed(&mut a, "acme");
    let mut sent = engine_commands(code(&mut a, KeyCode::Enter));
    sent.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        sent,
        vec![
            confirmed("acme", pause(ACME_RUNNING)),
            pause(GLOBEX_PENDING)
        ]
    );
}

#[test]
fn a_bulk_action_over_two_protected_tenants_asks_for_each() {
    let mut a = app();
    protect(&mut a, "acme");
    protect(&mut a, "globex");
    select(&mut a, ACME_RUNNING);
    a.marks.insert(ACME_RUNNING.into());
    a.marks.insert(GLOBEX_PENDING.into());
    ch(&mut a, 'p');
    typed(&mut a, "acme");
    assert!(engine_commands(code(&mut a, KeyCode::Enter)).is_empty());
    let Mode::Protect(p) = &a.mode else {
        panic!("{:?}", a.mode)
    };
    assert_eq!(p.tenant_id, "globex");
    typed(&mut a, "globex");
    let sent = engine_commands(code(&mut a, KeyCode::Enter));
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|c| matches!(c, Command::Confirmed { .. })));
}

#[test]
fn a_transform_waits_for_the_id_and_is_marked_running_once_sent() {
    let mut a = asked('T');
    assert!(a.life.transforming.is_empty(), "held, not running");
    typed(&mut a, "acme");
    let sent = engine_commands(code(&mut a, KeyCode::Enter));
    let transform = Command::Transform {
        tenant_id: "acme".into(),
        service: Service::Connectwise,
    };
    assert_eq!(sent, vec![confirmed("acme", transform)]);
    assert!(
        a.life
            .transforming
            .contains(&("acme".into(), Service::Connectwise))
    );
}
