//! Failures surfacing: the header and the alert bar, `!`, `a`, `d`, `y`, `o`, Enter and R on
//! Health alerts, and the detail view's chunk kept across its logs.

use std::sync::Arc;

use crossterm::event::KeyCode;

use super::tests::{app, ch, code, status, typed};

use super::*;
use crate::domain::{ChunkKey, JobStatus};
use crate::tui::app::{Route, StatusKind};
use crate::tui::fixtures;

const RUNNING: &str = "backfill_acme_connectwise_20240101";
const WITH_ERRORS: &str = "backfill_initech_connectwise_20240601";

fn failed_key() -> ChunkKey {
    ChunkKey {
        job_id: RUNNING.into(),
        table: "tickets".into(),
        seq: 9,
    }
}

fn failed_event(app: &mut App, key: ChunkKey, error: &str) {
    update(
        app,
        Msg::Engine {
            event: crate::engine::EngineEvent::ChunkFinished {
                key,
                status: ChunkStatus::Failed,
                records: 0,
                duration_ms: 1,
                error: Some(error.into()),
            },
            at: app.now,
        },
    );
}

/// The snapshot the engine takes once the detail view stopped watching: no chunks.
fn unwatched(app: &mut App) {
    let mut snap = (*app.snap).clone();
    snap.chunks = Arc::new(Default::default());
    update(app, Msg::Snapshot(Arc::new(snap)));
}

fn watched(app: &mut App) {
    let jobs = fixtures::demo_jobs();
    let snap = fixtures::snapshot(jobs.clone(), Some(&jobs[0]));
    update(app, Msg::Snapshot(Arc::new(snap)));
}

#[test]
fn a_running_jobs_failed_chunk_counts_in_the_header_and_holds_the_alert_bar() {
    let mut a = app();
    assert_eq!(a.counts.failing_chunks, 1, "the running job's failed chunk");
    assert_eq!(a.counts.failed, 2, "the running job with a failure counts");
    let open: Vec<_> = a.failures.open().collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].key, Some(failed_key()), "{open:?}");
    assert_eq!(a.alert_bar_rows(), 1);
    // Ticks past the status bar's fade leave it.
    for s in 1..=20 {
        update(
            &mut a,
            Msg::Tick(fixtures::now() + chrono::Duration::seconds(s)),
        );
    }
    assert_eq!(a.alert_bar_rows(), 1);
    assert!(ch(&mut a, 'a').is_empty());
    assert_eq!(a.alert_bar_rows(), 0);
    assert!(
        status(&a).starts_with("acknowledged 1 failure"),
        "{}",
        status(&a)
    );
    // A new failure brings the bar back.
    let other = ChunkKey {
        seq: 3,
        table: "time_entries".into(),
        ..failed_key()
    };
    failed_event(
        &mut a,
        other.clone(),
        "attempt 3/3, not retried: all 3 attempts are used: x",
    );
    assert_eq!(a.failures.open().next().unwrap().key, Some(other));
}

#[test]
fn bang_opens_the_newest_failure_described_from_every_view() {
    for setup in ["", ":jobs\n", ":logs\n", ":health\n"] {
        let mut a = app();
        for c in setup.chars() {
            match c {
                '\n' => code(&mut a, KeyCode::Enter),
                c => ch(&mut a, c),
            };
        }
        let fx = ch(&mut a, '!');
        assert!(
            fx.contains(&Effect::Engine(Command::Watch {
                job_id: Some(RUNNING.into())
            })),
            "{setup:?}: {fx:?}"
        );
        assert_eq!(
            a.route(),
            &Route::JobDetail {
                job_id: RUNNING.into()
            }
        );
        assert_eq!(
            a.mode,
            Mode::Describe {
                key: failed_key(),
                scroll: 0
            },
            "{setup:?}"
        );
        // The chunk under it is the failed one, and Esc leaves the description for it.
        code(&mut a, KeyCode::Esc);
        assert_eq!((a.detail_table, a.detail_chunk), (0, 9), "{setup:?}");
    }
}

#[test]
fn bang_selects_the_chunk_once_the_jobs_chunks_arrive() {
    let mut a = app();
    unwatched(&mut a);
    let key = ChunkKey {
        table: "time_entries".into(),
        seq: 5,
        ..failed_key()
    };
    failed_event(
        &mut a,
        key.clone(),
        "attempt 1/3, not retried: HTTP 400 is permanent: x",
    );
    ch(&mut a, '!');
    code(&mut a, KeyCode::Esc);
    assert_eq!(a.detail_focus.as_ref().map(|f| f.job_id()), Some(RUNNING));
    watched(&mut a);
    assert_eq!((a.detail_table, a.detail_chunk), (1, 5));
}

#[test]
fn esc_from_a_chunks_logs_comes_back_to_that_chunk() {
    let mut a = app();
    typed(&mut a, ":jobs");
    code(&mut a, KeyCode::Enter);
    code(&mut a, KeyCode::Enter);
    ch(&mut a, 'n');
    assert_eq!((a.detail_table, a.detail_chunk), (0, 9));
    ch(&mut a, 'l');
    // While the logs show, the engine stops sending the job's chunks.
    unwatched(&mut a);
    code(&mut a, KeyCode::Esc);
    assert_eq!(
        a.route(),
        &Route::JobDetail {
            job_id: RUNNING.into()
        }
    );
    watched(&mut a);
    assert_eq!(
        (a.detail_table, a.detail_chunk),
        (0, 9),
        "the failed chunk again"
    );
}

#[test]
fn health_alerts_open_their_job_on_enter_and_r_retries_there() {
    let mut a = app();
    typed(&mut a, ":health");
    code(&mut a, KeyCode::Enter);
    let at = (0..a.alerts.len())
        .find(|&i| {
            a.alert_jobs[i].as_deref() == Some(WITH_ERRORS)
                && a.alerts[i].1.contains("failed chunks")
        })
        .expect("an alert about the job with errors");
    assert!(a.alerts[at].1.contains("R retries"), "{:?}", a.alerts[at]);
    a.health.selected = at;
    let fx = ch(&mut a, 'R');
    assert_eq!(
        fx,
        vec![Effect::Engine(Command::RetryFailed {
            job_id: WITH_ERRORS.into()
        })],
        "{}",
        status(&a)
    );
    let fx = code(&mut a, KeyCode::Enter);
    assert_eq!(
        a.route(),
        &Route::JobDetail {
            job_id: WITH_ERRORS.into()
        }
    );
    assert!(fx.contains(&Effect::Engine(Command::Watch {
        job_id: Some(WITH_ERRORS.into())
    })));
}

#[test]
fn d_describes_the_chunk_with_the_engines_next_step() {
    let mut a = app();
    typed(&mut a, ":jobs");
    code(&mut a, KeyCode::Enter);
    code(&mut a, KeyCode::Enter);
    ch(&mut a, 'n');
    ch(&mut a, 'd');
    assert_eq!(
        a.mode,
        Mode::Describe {
            key: failed_key(),
            scroll: 0
        }
    );
    code(&mut a, KeyCode::Down);
    code(&mut a, KeyCode::Down);
    assert!(matches!(a.mode, Mode::Describe { scroll: 2, .. }));
    let text: String = crate::tui::views::describe_text(&a, &failed_key());
    for needle in [
        "not retried: HTTP 400 is permanent; R retries",
        "GET /v4_6_release/apis/3.0/service/tickets → HTTP 400 · request id 7f3e9c2a",
        "1 of at most 3",
        "Attempts (from the log)",
    ] {
        assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
    }
    code(&mut a, KeyCode::Esc);
    assert_eq!(a.mode, Mode::Normal);
}

#[test]
fn y_copies_the_error_the_job_id_or_the_log_line() {
    let mut a = app();
    ch(&mut a, '!');
    let fx = ch(&mut a, 'y');
    let error = fixtures::chunks(&fixtures::demo_jobs()[0])[9]
        .last_error
        .clone()
        .unwrap();
    assert_eq!(fx, vec![Effect::Clipboard(error)]);
    assert!(status(&a).starts_with("copied the error"), "{}", status(&a));
    code(&mut a, KeyCode::Esc);
    code(&mut a, KeyCode::Esc);
    assert_eq!(a.view(), View::Jobs);
    assert_eq!(ch(&mut a, 'y'), vec![Effect::Clipboard(RUNNING.into())]);
    typed(&mut a, ":logs");
    code(&mut a, KeyCode::Enter);
    match ch(&mut a, 'y').as_slice() {
        [Effect::Clipboard(line)] => assert!(line.contains("job_id="), "{line}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn o_pages_the_chunks_or_the_jobs_log_lines() {
    let mut a = app();
    typed(&mut a, ":jobs");
    code(&mut a, KeyCode::Enter);
    match ch(&mut a, 'o').as_slice() {
        [Effect::Pager { title, text }] => {
            assert_eq!(title, RUNNING);
            assert_eq!(text.lines().count(), 200);
        }
        other => panic!("{other:?}"),
    }
    code(&mut a, KeyCode::Enter);
    ch(&mut a, 'n');
    match ch(&mut a, 'o').as_slice() {
        [Effect::Pager { title, text }] => {
            assert_eq!(title, &format!("{RUNNING}/tickets#9"));
            assert!(text.lines().all(|l| l.contains("seq=9")), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_retried_job_clears_its_alert_and_words_say_what_happened() {
    let mut a = app();
    let mut snap = (*a.snap).clone();
    let mut jobs = (*snap.jobs).clone();
    jobs[0].failed_chunks = 0;
    snap.jobs = Arc::new(jobs);
    update(&mut a, Msg::Snapshot(Arc::new(snap)));
    assert_eq!(a.alert_bar_rows(), 0, "{:?}", a.failures);
    update(
        &mut a,
        Msg::Engine {
            event: crate::engine::EngineEvent::JobFinished {
                job_id: "j".into(),
                status: JobStatus::Paused,
            },
            at: fixtures::now(),
        },
    );
    assert_eq!(status(&a), "job j paused");
    assert_eq!(a.status.as_ref().unwrap().kind, StatusKind::Info);
}

#[test]
fn a_bulk_confirm_names_each_direction_and_its_jobs() {
    let mut a = app();
    typed(&mut a, ":jobs");
    code(&mut a, KeyCode::Enter);
    for id in [RUNNING, "backfill_acme_servicenow_20250101"] {
        a.jobs.selected = a
            .job_rows
            .iter()
            .position(|&i| a.snap.jobs[i].job_id == id)
            .unwrap();
        ch(&mut a, ' ');
    }
    ch(&mut a, 'p');
    let Mode::Confirm(c) = &a.mode else {
        panic!("{:?}", a.mode)
    };
    assert_eq!(
        c.prompt,
        format!("Pause 1 job ({RUNNING}) and unpause 1 job (backfill_acme_servicenow_20250101)?")
    );
}

#[test]
fn an_answer_to_a_command_is_not_replaced_by_engine_chatter_at_once() {
    let mut a = app();
    update(
        &mut a,
        Msg::Done {
            command: Command::RetryFailed {
                job_id: RUNNING.into(),
            },
            result: Ok("retrying 1 failed chunk".into()),
        },
    );
    update(
        &mut a,
        Msg::Engine {
            event: crate::engine::EngineEvent::JobFinished {
                job_id: "other".into(),
                status: JobStatus::Completed,
            },
            at: fixtures::now(),
        },
    );
    assert_eq!(status(&a), "retrying 1 failed chunk");
}
