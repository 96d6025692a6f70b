//! `update` for the lifecycle: the transform and verify keys (state, effects, refusals),
//! detection reasons on the tenants' rows, hand-off and alert events, scheduling waits.

use std::sync::Arc;

use chrono::Duration;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::domain::{Alert, AlertKind, Service};
use crate::engine::detect::Check;
use crate::tui::app::{CloudMode, Route, StatusKind};
use crate::tui::fixtures;

const RUNNING: &str = "backfill_acme_connectwise_20240101";
const PENDING: &str = "backfill_globex_servicenow_20250301";
const WITH_ERRORS: &str = "backfill_initech_connectwise_20240601";
const COMPLETED: &str = "backfill_globex_connectwise_20250101";

fn app() -> App {
    fixtures::app(Theme::default())
}

fn key(app: &mut App, code: KeyCode) -> Vec<Effect> {
    update(app, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn typed(app: &mut App, text: &str) -> Vec<Effect> {
    text.chars()
        .flat_map(|c| key(app, KeyCode::Char(c)))
        .collect()
}

fn status(app: &App) -> String {
    app.status
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default()
}

fn jobs_at(app: &mut App, job_id: &str) {
    typed(app, ":jobs");
    key(app, KeyCode::Enter);
    app.jobs.selected = app
        .job_rows
        .iter()
        .position(|&i| app.snap.jobs[i].job_id == job_id)
        .unwrap();
}

fn event(app: &mut App, event: EngineEvent) {
    update(
        app,
        Msg::Engine {
            event,
            at: fixtures::now(),
        },
    );
}

#[test]
fn tenant_rows_carry_the_detection_decision_and_its_reason() {
    let a = app();
    let row = |t: &str, s: Service| {
        a.tenant_rows
            .iter()
            .find(|r| r.tenant_id == t && r.service == s)
            .unwrap()
            .clone()
    };
    let initech = row("initech", Service::Connectwise);
    assert!(initech.needs_backfill);
    assert_eq!(initech.check, Some(Check::Reenabled));
    assert!(
        initech.reason.contains("counts as new"),
        "{}",
        initech.reason
    );
    // Running, but not completed: detection says why it is not selected.
    let acme = row("acme", Service::Connectwise);
    assert!(!acme.needs_backfill);
    assert!(acme.reason.contains("already running"), "{}", acme.reason);

    // Before detection reports, the store's jobs decide, and the reason says so.
    let mut a = app();
    let mut snap = (*a.snap).clone();
    snap.detection = Arc::new(Vec::new());
    update(&mut a, Msg::Snapshot(Arc::new(snap)));
    let r = &a.tenant_rows[0];
    assert!(r.needs_backfill && r.check.is_none());
    assert!(r.reason.contains("has not reported yet"), "{}", r.reason);
    let globex = a
        .tenant_rows
        .iter()
        .find(|r| r.tenant_id == "globex" && r.service == Service::Connectwise)
        .unwrap();
    assert!(!globex.needs_backfill);
    assert_eq!(globex.reason, format!("backfill {COMPLETED} completed"));
    // Cloud mode: detection does not run in this process; the reason says where it does.
    a.cloud = CloudMode::On;
    a.rebuild_tenants();
    assert!(
        a.tenant_rows[0].reason.contains("trigger --auto-detect"),
        "{}",
        a.tenant_rows[0].reason
    );
}

#[test]
fn t_on_a_tenant_row_transforms_that_service_once_at_a_time() {
    let mut a = app();
    assert_eq!(a.route(), &Route::Tenants);
    let fx = key(&mut a, KeyCode::Char('T'));
    assert_eq!(
        fx,
        vec![Effect::Engine(Command::Transform {
            tenant_id: "acme".into(),
            service: Service::Connectwise
        })]
    );
    assert!(status(&a).contains("rebuilding the canonical tables of acme connectwise"));
    assert!(
        a.life
            .transforming
            .contains(&("acme".to_string(), Service::Connectwise))
    );
    // A second press while it runs explains itself.
    assert!(key(&mut a, KeyCode::Char('T')).is_empty());
    assert_eq!(
        status(&a),
        "T: the transform of acme connectwise is still running"
    );
    update(
        &mut a,
        Msg::Done {
            command: Command::Transform {
                tenant_id: "acme".into(),
                service: Service::Connectwise,
            },
            result: Ok("transformed acme connectwise: tickets 1200 version(s) in 0.4 s".into()),
        },
    );
    assert!(a.life.transforming.is_empty());
    assert!(status(&a).starts_with("transformed acme connectwise"));
    // The engine's refusal reaches the status bar with the verb.
    key(&mut a, KeyCode::Char('T'));
    update(
        &mut a,
        Msg::Done {
            command: Command::Transform {
                tenant_id: "acme".into(),
                service: Service::Connectwise,
            },
            result: Err("a transform of acme connectwise is already running".into()),
        },
    );
    assert_eq!(
        status(&a),
        "transform: a transform of acme connectwise is already running"
    );
    assert_eq!(a.status.as_ref().unwrap().kind, StatusKind::Error);
}

#[test]
fn t_on_a_job_transforms_the_jobs_service_and_refuses_what_cannot_be() {
    let mut a = app();
    jobs_at(&mut a, WITH_ERRORS);
    assert_eq!(
        key(&mut a, KeyCode::Char('T')),
        vec![Effect::Engine(Command::Transform {
            tenant_id: "initech".into(),
            service: Service::Connectwise
        })]
    );
    // In the detail view too.
    let mut a = app();
    jobs_at(&mut a, RUNNING);
    key(&mut a, KeyCode::Enter);
    assert_eq!(
        key(&mut a, KeyCode::Char('T')),
        vec![Effect::Engine(Command::Transform {
            tenant_id: "acme".into(),
            service: Service::Connectwise
        })]
    );
    // A service no canonical table is mapped from.
    let mut a = app();
    let mut snap = (*a.snap).clone();
    let mut canonical = (*snap.canonical).clone();
    canonical.remove(&Service::Connectwise);
    snap.canonical = Arc::new(canonical);
    update(&mut a, Msg::Snapshot(Arc::new(snap)));
    assert!(key(&mut a, KeyCode::Char('T')).is_empty());
    assert!(
        status(&a).starts_with("T: no canonical table is mapped from connectwise"),
        "{}",
        status(&a)
    );
    // Cloud mode: the workers transform; this console says where to do it instead.
    let mut a = app();
    a.cloud = CloudMode::On;
    assert!(key(&mut a, KeyCode::Char('T')).is_empty());
    assert!(
        status(&a).contains("avesa-console transform"),
        "{}",
        status(&a)
    );
    // Not in the logs or health views.
    let mut a = app();
    typed(&mut a, ":health");
    key(&mut a, KeyCode::Enter);
    assert!(key(&mut a, KeyCode::Char('T')).is_empty());
    assert!(status(&a).starts_with("T: no action in the health view"));
}

#[test]
fn v_verifies_ended_jobs_even_read_only_and_explains_the_rest() {
    let mut a = app();
    a.read_only = true;
    jobs_at(&mut a, RUNNING);
    assert!(key(&mut a, KeyCode::Char('v')).is_empty());
    assert_eq!(
        status(&a),
        format!("v: job {RUNNING} is running; verify it once it has ended")
    );
    jobs_at(&mut a, WITH_ERRORS);
    assert_eq!(
        key(&mut a, KeyCode::Char('v')),
        vec![Effect::Engine(Command::Verify {
            job_id: WITH_ERRORS.into()
        })],
        "verify only reads the source and stores results: allowed read-only"
    );
    assert!(a.life.verifying.contains(WITH_ERRORS));
    assert!(key(&mut a, KeyCode::Char('v')).is_empty());
    assert!(status(&a).contains("is being verified"), "{}", status(&a));
    update(
        &mut a,
        Msg::Done {
            command: Command::Verify {
                job_id: WITH_ERRORS.into(),
            },
            result: Ok(format!(
                "verified {WITH_ERRORS}: 3 record(s) missing in 2 of 20 chunk(s)"
            )),
        },
    );
    assert!(a.life.verifying.is_empty());
    assert!(status(&a).contains("3 record(s) missing"));
    // The tenants view has no verify key; nothing selected says so.
    let mut a = app();
    assert!(key(&mut a, KeyCode::Char('v')).is_empty());
    assert!(status(&a).starts_with("v: no action in the tenants view"));
    let mut a = app();
    a.cloud = CloudMode::On;
    jobs_at(&mut a, COMPLETED);
    assert!(key(&mut a, KeyCode::Char('v')).is_empty());
    assert!(status(&a).contains("avesa-console verify JOB_ID"));
}

#[test]
fn hand_off_events_are_kept_for_the_detail_view() {
    let mut a = app();
    let end = fixtures::now() - Duration::days(1);
    event(
        &mut a,
        EngineEvent::MarkerAdvanced {
            tenant_id: "acme".into(),
            service: Service::Connectwise,
            table: "tickets".into(),
            last_updated: end,
            job_id: RUNNING.into(),
        },
    );
    let m = &a.life.markers[&(
        "acme".to_string(),
        Service::Connectwise,
        "tickets".to_string(),
    )];
    assert_eq!((m.last_updated, m.job_id.as_str()), (end, RUNNING));
    event(
        &mut a,
        EngineEvent::TransformFailed {
            tenant_id: "acme".into(),
            error: "object store: disk full".into(),
        },
    );
    assert_eq!(
        status(&a),
        "transform of acme failed: object store: disk full"
    );
    assert_eq!(a.status.as_ref().unwrap().kind, StatusKind::Error);
    assert!(a.life.transform_failed.contains_key("acme"));
    event(
        &mut a,
        EngineEvent::TransformFinished {
            tenant_id: "acme".into(),
            service: Service::Connectwise,
            table: "tickets".into(),
            versions: 1234,
            records: 1100,
            duration_ms: 420,
        },
    );
    let done = &a.life.transforms[&("acme".to_string(), Service::Connectwise)]["tickets"];
    assert_eq!((done.versions, done.records), (1234, 1100));
    assert!(
        !a.life.transform_failed.contains_key("acme"),
        "a later success replaces the failure"
    );
}

fn alert(kind: AlertKind, subject: &str, minutes_ago: i64) -> Alert {
    Alert {
        kind,
        subject: subject.into(),
        tenant_id: "acme".into(),
        service: Service::Connectwise,
        job_id: Some(RUNNING.into()),
        message: format!("{subject}: {kind}"),
        value: 4.0,
        threshold: 3.0,
        raised_at: fixtures::now() - Duration::minutes(minutes_ago),
    }
}

#[test]
fn alerts_come_from_the_store_and_live_events_once_each() {
    let mut a = app();
    typed(&mut a, ":health");
    key(&mut a, KeyCode::Enter);
    let stored: Vec<&String> = a
        .alerts
        .iter()
        .filter(|(_, t)| t.contains("low_completion_rate") || t.contains("sync_gap"))
        .map(|(_, t)| t)
        .collect();
    assert_eq!(stored.len(), 2, "{:?}", a.alerts);
    let gap = a
        .alerts
        .iter()
        .find(|(_, t)| t.contains("sync_gap"))
        .unwrap();
    assert_eq!(gap.0, StatusKind::Error);
    assert!(
        gap.1
            .starts_with("01-15 10:40 sync_gap: initech connectwise tickets")
    );

    event(
        &mut a,
        EngineEvent::Alert {
            alert: alert(AlertKind::ConsecutiveChunkFailures, RUNNING, 0),
        },
    );
    assert_eq!(
        status(&a),
        format!("alert: {RUNNING}: consecutive_chunk_failures")
    );
    assert_eq!(a.status.as_ref().unwrap().kind, StatusKind::Warn);
    let live = |a: &App| {
        a.alerts
            .iter()
            .filter(|(_, t)| t.contains("consecutive_chunk_failures"))
            .count()
    };
    assert_eq!(live(&a), 1, "shown at once: {:?}", a.alerts);
    // The same alert again (another process, a re-raise) and then stored: still once.
    event(
        &mut a,
        EngineEvent::Alert {
            alert: alert(AlertKind::ConsecutiveChunkFailures, RUNNING, 0),
        },
    );
    let mut snap = (*a.snap).clone();
    let mut stored = (*snap.alerts).clone();
    stored.insert(0, alert(AlertKind::ConsecutiveChunkFailures, RUNNING, 0));
    snap.alerts = Arc::new(stored);
    update(&mut a, Msg::Snapshot(Arc::new(snap)));
    assert_eq!(live(&a), 1, "{:?}", a.alerts);
    assert_eq!(a.life.alerts(&a.snap.alerts).len(), 3);
}

#[test]
fn deferred_jobs_show_as_waiting_with_their_reason() {
    let mut a = app();
    // The fixture's pending job waits for the off-peak window (the snapshot says so).
    assert_eq!(
        a.waiting(PENDING).as_deref(),
        Some("waits for the off-peak window (opens 2026-01-15 22:00 UTC)")
    );
    jobs_at(&mut a, PENDING);
    assert!(key(&mut a, KeyCode::Char('r')).is_empty());
    assert_eq!(
        status(&a),
        format!(
            "r: job {PENDING} already waits for the off-peak window (opens 2026-01-15 22:00 UTC)"
        )
    );
    // A JobDeferred event says it before the next snapshot does.
    let opens = fixtures::now() + Duration::hours(10);
    event(
        &mut a,
        EngineEvent::JobDeferred {
            job_id: WITH_ERRORS.into(),
            until: opens,
        },
    );
    assert_eq!(
        status(&a),
        format!("job {WITH_ERRORS} waits for the off-peak window (opens 2026-01-15 22:00 UTC)")
    );
    assert!(a.waiting(WITH_ERRORS).is_some());
    // A snapshot older than the event does not clear it; a newer one without it does.
    let mut snap = (*a.snap).clone();
    snap.taken_at = Some(fixtures::now() - Duration::seconds(1));
    update(&mut a, Msg::Snapshot(Arc::new(snap.clone())));
    assert!(a.waiting(WITH_ERRORS).is_some());
    snap.taken_at = Some(fixtures::now() + Duration::seconds(1));
    update(&mut a, Msg::Snapshot(Arc::new(snap)));
    assert_eq!(a.waiting(WITH_ERRORS), None);
}

#[test]
fn the_new_keys_are_in_the_bindings_table_and_help() {
    use crate::tui::action::Action;
    use crate::tui::app::View;
    use crate::tui::keymap::Keymap;
    for view in [View::Tenants, View::Jobs, View::Detail] {
        assert!(
            Keymap::default()
                .help_for(view)
                .iter()
                .any(|b| b.action == Action::Transform),
            "{view:?}"
        );
    }
    for view in [View::Jobs, View::Detail] {
        assert!(
            Keymap::default()
                .help_for(view)
                .iter()
                .any(|b| b.action == Action::Verify),
            "{view:?}"
        );
    }
    assert!(Action::Transform.is_mutating());
    assert!(!Action::Verify.is_mutating());
}
