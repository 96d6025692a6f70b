//! `update` without a terminal: each action's new state and effects.

use std::sync::Arc;

use chrono::Duration;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::domain::{ChunkKey, JobStatus, Service};
use crate::engine::handle::Target;
use crate::tui::app::{JobSort, Route, StatusKind};
use crate::tui::fixtures;
use crate::tui::form::Field;

pub(super) fn app() -> App {
    fixtures::app(Theme::default())
}

pub(super) fn code(app: &mut App, code: KeyCode) -> Vec<Effect> {
    update(app, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

pub(super) fn ch(app: &mut App, c: char) -> Vec<Effect> {
    code(app, KeyCode::Char(c))
}

pub(super) fn typed(app: &mut App, text: &str) -> Vec<Effect> {
    text.chars().flat_map(|c| ch(app, c)).collect()
}

pub(super) fn status(app: &App) -> String {
    app.status
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default()
}

/// The jobs view with `job_id` selected.
pub(super) fn jobs_at(app: &mut App, job_id: &str) {
    typed(app, ":jobs");
    code(app, KeyCode::Enter);
    let pos = app
        .job_rows
        .iter()
        .position(|&i| app.snap.jobs[i].job_id == job_id)
        .unwrap();
    app.jobs.selected = pos;
}

/// Notes in the snapshot whether `job_id`'s hand-off is done (as the engine's watch of a job
/// reads its hints).
fn handed_off(app: &mut App, job_id: &str, done: bool) {
    let mut snap = (*app.snap).clone();
    let mut lifecycle = (*snap.lifecycle).clone();
    let mut meta = crate::domain::JobMeta::default_for(job_id);
    meta.finalized_at = done.then_some(app.now);
    lifecycle.insert(
        job_id.to_string(),
        crate::engine::handle::JobLifecycle {
            meta: Some(meta),
            verification: Vec::new(),
        },
    );
    snap.lifecycle = Arc::new(lifecycle);
    update(app, Msg::Snapshot(Arc::new(snap)));
}

const RUNNING: &str = "backfill_acme_connectwise_20240101";
const PENDING: &str = "backfill_globex_servicenow_20250301";
const PAUSED: &str = "backfill_acme_servicenow_20250101";
const WITH_ERRORS: &str = "backfill_initech_connectwise_20240601";
const COMPLETED: &str = "backfill_globex_connectwise_20250101";

fn job_cmd(effects: &[Effect]) -> Vec<Command> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Engine(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

/// The fixture's snapshot with its running job in a runner process and nothing queued, or
/// with nothing of the console's running at all.
fn with_runner(a: &mut App, runner: bool) {
    let mut snap = (*a.snap).clone();
    let running: std::collections::BTreeSet<String> = if runner {
        [RUNNING.to_string()].into()
    } else {
        Default::default()
    };
    snap.runners = Arc::new(running.iter().map(|id| (id.clone(), 4242)).collect());
    snap.running_here = Arc::new(running);
    snap.waiting = Arc::new(Default::default());
    update(a, Msg::Snapshot(Arc::new(snap)));
}

#[test]
fn q_ctrl_c_and_quit_ask_while_the_consoles_jobs_run_and_quit_bang_does_not() {
    // The fixture runs one job in this process and queues another: quitting stops both.
    let mut a = app();
    assert!(update(&mut a, Msg::Key(ctrl('c'))).is_empty());
    let Mode::Quitting { prompt } = &a.mode else {
        panic!("{:?}", a.mode)
    };
    assert!(
        prompt.contains(&format!("1 job running in this console stops: {RUNNING}"))
            && prompt.contains(&format!(
                "1 queued job does not start until `avesa-console run`: {PENDING}"
            )),
        "{prompt}"
    );
    assert!(!a.quit);
    assert!(code(&mut a, KeyCode::Esc).is_empty());
    assert_eq!(a.mode, Mode::Normal);
    assert!(ch(&mut a, 'q').is_empty());
    assert_eq!(ch(&mut a, 'y'), vec![Effect::Quit]);
    assert!(a.quit);
    // :q asks too; :q! does not.
    let mut a = app();
    typed(&mut a, ":q");
    assert!(code(&mut a, KeyCode::Enter).is_empty());
    assert!(matches!(a.mode, Mode::Quitting { .. }));
    let mut a = app();
    typed(&mut a, ":q!");
    assert_eq!(code(&mut a, KeyCode::Enter), vec![Effect::Quit]);
    // A job in its runner process keeps running: the question says so.
    let mut a = app();
    with_runner(&mut a, true);
    ch(&mut a, 'q');
    let Mode::Quitting { prompt } = &a.mode else {
        panic!("{:?}", a.mode)
    };
    assert_eq!(
        prompt,
        &format!("Quit? 1 job keeps running in the background: {RUNNING}.")
    );
    // Nothing of the console's own: q quits at once.
    let mut a = app();
    with_runner(&mut a, false);
    assert_eq!(ch(&mut a, 'q'), vec![Effect::Quit]);
}

#[test]
fn the_prompt_lists_commands_cycles_completions_and_ctrl_u_clears() {
    let mut a = app();
    ch(&mut a, ':');
    let hint = prompt::hint(&a, "");
    for c in ["job ID", "tenant ID", "alerts", "q!"] {
        assert!(hint.contains(c), "{hint}");
    }
    typed(&mut a, "he");
    let cycle: Vec<String> = (0..3)
        .map(|_| {
            code(&mut a, KeyCode::Tab);
            let Mode::Command { input } = &a.mode else {
                panic!()
            };
            input.clone()
        })
        .collect();
    assert_eq!(cycle, ["health", "help", "health"]);
    code(&mut a, KeyCode::BackTab);
    assert_eq!(
        a.mode,
        Mode::Command {
            input: "help".into()
        }
    );
    update(&mut a, Msg::Key(ctrl('u')));
    assert_eq!(
        a.mode,
        Mode::Command {
            input: String::new()
        }
    );
    typed(&mut a, "tenant gl");
    code(&mut a, KeyCode::Tab);
    assert_eq!(
        a.mode,
        Mode::Command {
            input: "tenant globex".into()
        }
    );
    code(&mut a, KeyCode::Enter);
    assert_eq!(a.route(), &Route::Tenants);
    assert!(a.tenant_rows.iter().all(|r| r.tenant_id == "globex"));
    assert!(!a.tenant_rows.is_empty());
    // :job ID opens the job's chunks and watches it; an unknown id is refused.
    typed(&mut a, &format!(":job {RUNNING}"));
    let fx = code(&mut a, KeyCode::Enter);
    assert_eq!(
        a.route(),
        &Route::JobDetail {
            job_id: RUNNING.into()
        }
    );
    assert!(fx.contains(&Effect::Engine(Command::Watch {
        job_id: Some(RUNNING.into())
    })));
    typed(&mut a, ":job nope");
    code(&mut a, KeyCode::Enter);
    assert_eq!(status(&a), ":job: no job nope");
    typed(&mut a, ":alerts");
    code(&mut a, KeyCode::Enter);
    assert_eq!(a.route(), &Route::Health);
    // Ctrl-U clears the filter prompt too, and types no `u`.
    typed(&mut a, ":jobs");
    code(&mut a, KeyCode::Enter);
    typed(&mut a, "/acme");
    update(&mut a, Msg::Key(ctrl('u')));
    assert_eq!(
        a.mode,
        Mode::Filter {
            input: String::new()
        }
    );
    assert_eq!(a.job_filter, "");
}

#[test]
fn pulse_opens_by_command_and_key_and_esc_goes_back() {
    let mut a = app();
    ch(&mut a, ':');
    assert!(
        crate::tui::update::prompt::hint(&a, "").contains("pulse"),
        "a bare : lists :pulse"
    );
    typed(&mut a, "pu");
    code(&mut a, KeyCode::Tab);
    assert_eq!(
        a.mode,
        Mode::Command {
            input: "pulse".into()
        }
    );
    code(&mut a, KeyCode::Enter);
    assert_eq!(a.route(), &Route::Pulse);
    code(&mut a, KeyCode::Esc);
    assert_eq!(a.route(), &Route::Tenants);
    // `P` from the jobs view, and Esc back to where it came from.
    typed(&mut a, ":jobs");
    code(&mut a, KeyCode::Enter);
    ch(&mut a, 'P');
    assert_eq!(a.route(), &Route::Pulse);
    code(&mut a, KeyCode::Esc);
    assert_eq!(a.route(), &Route::Jobs { scope: None });
}

#[test]
fn command_mode_completes_and_switches_views() {
    let mut a = app();
    ch(&mut a, ':');
    assert_eq!(
        a.mode,
        Mode::Command {
            input: String::new()
        }
    );
    typed(&mut a, "hea");
    code(&mut a, KeyCode::Tab);
    assert_eq!(
        a.mode,
        Mode::Command {
            input: "health".into()
        }
    );
    code(&mut a, KeyCode::Enter);
    assert_eq!(a.route(), &Route::Health);
    assert_eq!(a.stack.len(), 2, "tenants stays as the way back");
    typed(&mut a, ":nope");
    code(&mut a, KeyCode::Enter);
    assert!(
        status(&a).starts_with("unknown command :nope"),
        "{}",
        status(&a)
    );
    typed(&mut a, ":th");
    code(&mut a, KeyCode::Tab);
    assert_eq!(
        a.mode,
        Mode::Command {
            input: "theme ".into()
        }
    );
    typed(&mut a, "li");
    code(&mut a, KeyCode::Tab);
    assert_eq!(
        a.mode,
        Mode::Command {
            input: "theme light".into()
        }
    );
    assert_eq!(
        code(&mut a, KeyCode::Enter),
        vec![Effect::LoadTheme("light".into())]
    );
    update(&mut a, Msg::Theme(Ok(Theme::built_in("light").unwrap())));
    assert_eq!(a.theme.name, "light");
    update(
        &mut a,
        Msg::Theme(Err("bad.toml: colors.error: 'x' is not a colour".into())),
    );
    assert!(status(&a).contains("bad.toml: colors.error"));
    // Esc leaves command mode without doing anything.
    typed(&mut a, ":jobs");
    assert!(code(&mut a, KeyCode::Esc).is_empty());
    assert_eq!(a.mode, Mode::Normal);
    assert_eq!(a.theme.name, "light");
}

#[test]
fn help_opens_and_any_key_closes_it() {
    let mut a = app();
    ch(&mut a, '?');
    assert_eq!(a.mode, Mode::Help);
    assert!(ch(&mut a, 'r').is_empty(), "a key in help only closes it");
    assert_eq!(a.mode, Mode::Normal);
}

#[test]
fn enter_drills_in_and_esc_goes_back_with_breadcrumbs() {
    let mut a = app();
    assert_eq!(a.route(), &Route::Tenants);
    code(&mut a, KeyCode::Enter);
    assert_eq!(
        a.route(),
        &Route::Jobs {
            scope: Some(("acme".into(), Service::Connectwise))
        }
    );
    assert_eq!(a.job_rows.len(), 1, "only acme's connectwise jobs");
    let fx = code(&mut a, KeyCode::Enter);
    assert_eq!(
        fx,
        vec![Effect::Engine(Command::Watch {
            job_id: Some(RUNNING.into())
        })]
    );
    assert_eq!(a.stack.len(), 3);
    assert_eq!(a.detail_groups.len(), 2, "tickets and time_entries");
    let fx = code(&mut a, KeyCode::Esc);
    assert_eq!(fx, vec![Effect::Engine(Command::Watch { job_id: None })]);
    code(&mut a, KeyCode::Esc);
    assert_eq!(a.route(), &Route::Tenants);
    code(&mut a, KeyCode::Esc);
    assert!(status(&a).contains("at the top"));
}

#[test]
fn arrows_and_pages_move_within_bounds() {
    let mut a = app();
    typed(&mut a, ":jobs");
    code(&mut a, KeyCode::Enter);
    code(&mut a, KeyCode::Down);
    code(&mut a, KeyCode::Down);
    assert_eq!(a.jobs.selected, 2);
    code(&mut a, KeyCode::Up);
    assert_eq!(a.jobs.selected, 1);
    ch(&mut a, 'G');
    assert_eq!(a.jobs.selected, 5);
    code(&mut a, KeyCode::PageDown);
    assert_eq!(a.jobs.selected, 5);
    ch(&mut a, 'g');
    assert_eq!(a.jobs.selected, 0);
    code(&mut a, KeyCode::Up);
    assert_eq!(a.jobs.selected, 0);
}

#[test]
fn slash_filters_rows_live_and_esc_clears() {
    let mut a = app();
    typed(&mut a, ":jobs");
    code(&mut a, KeyCode::Enter);
    ch(&mut a, '/');
    typed(&mut a, "globex");
    assert_eq!(a.job_rows.len(), 2);
    code(&mut a, KeyCode::Enter);
    assert_eq!(a.mode, Mode::Normal);
    assert_eq!(a.job_filter, "globex");
    ch(&mut a, '/');
    code(&mut a, KeyCode::Esc);
    assert_eq!(a.job_rows.len(), 6);
    // Tenants filter by name too.
    code(&mut a, KeyCode::Esc);
    ch(&mut a, '/');
    typed(&mut a, "helpdesk");
    assert_eq!(a.tenant_rows.len(), 2);
}

#[test]
fn s_sorts_by_the_next_column_and_shift_s_reverses() {
    let mut a = app();
    typed(&mut a, ":jobs");
    code(&mut a, KeyCode::Enter);
    ch(&mut a, 's');
    assert_eq!(a.sort, JobSort::Job);
    let ids: Vec<String> = a
        .job_rows
        .iter()
        .map(|&i| a.snap.jobs[i].job_id.clone())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    ch(&mut a, 'S');
    let first = a.snap.jobs[a.job_rows[0]].job_id.clone();
    assert_eq!(&first, sorted.last().unwrap());
    for _ in 0..3 {
        ch(&mut a, 's');
    }
    assert_eq!(a.sort, JobSort::Progress);
}

#[test]
fn r_resumes_and_refuses_the_wrong_state() {
    let mut a = app();
    handed_off(&mut a, COMPLETED, true);
    jobs_at(&mut a, COMPLETED);
    assert!(ch(&mut a, 'r').is_empty());
    assert_eq!(
        status(&a),
        format!("r: job {COMPLETED} is completed; nothing to resume")
    );
    jobs_at(&mut a, RUNNING);
    assert!(ch(&mut a, 'r').is_empty());
    assert!(status(&a).contains("already running in this console"));
    jobs_at(&mut a, PAUSED);
    assert_eq!(
        job_cmd(&ch(&mut a, 'r')),
        vec![Command::Resume {
            job_id: PAUSED.into()
        }]
    );
    // A pending job the scheduler holds back is queued already: r says why it waits.
    jobs_at(&mut a, PENDING);
    assert!(ch(&mut a, 'r').is_empty());
    assert!(status(&a).contains("already waits for the off-peak window"));
    let mut snap = (*a.snap).clone();
    snap.waiting = Arc::new(Default::default());
    update(&mut a, Msg::Snapshot(Arc::new(snap)));
    assert_eq!(
        job_cmd(&ch(&mut a, 'r')),
        vec![Command::Resume {
            job_id: PENDING.into()
        }]
    );
}

#[test]
fn shift_r_retries_failed_chunks_only_when_there_are_some() {
    let mut a = app();
    jobs_at(&mut a, COMPLETED);
    assert!(ch(&mut a, 'R').is_empty());
    assert_eq!(
        status(&a),
        format!("R: job {COMPLETED} has no failed chunks")
    );
    jobs_at(&mut a, WITH_ERRORS);
    assert_eq!(
        job_cmd(&ch(&mut a, 'R')),
        vec![Command::RetryFailed {
            job_id: WITH_ERRORS.into()
        }]
    );
}

#[test]
fn c_asks_before_cancelling() {
    let mut a = app();
    jobs_at(&mut a, RUNNING);
    assert!(ch(&mut a, 'c').is_empty());
    let Mode::Confirm(c) = &a.mode else {
        panic!("{:?}", a.mode)
    };
    assert!(
        c.prompt.contains(RUNNING) && c.prompt.contains("15 of 24"),
        "{}",
        c.prompt
    );
    assert!(ch(&mut a, 'n').is_empty());
    assert_eq!(a.mode, Mode::Normal);
    ch(&mut a, 'c');
    assert_eq!(
        job_cmd(&ch(&mut a, 'y')),
        vec![Command::Cancel {
            job_id: RUNNING.into()
        }]
    );
    jobs_at(&mut a, COMPLETED);
    ch(&mut a, 'c');
    assert_eq!(a.mode, Mode::Normal);
    assert_eq!(
        status(&a),
        format!("c: job {COMPLETED} is already completed")
    );
}

#[test]
fn p_pauses_and_unpauses() {
    let mut a = app();
    jobs_at(&mut a, RUNNING);
    assert_eq!(
        job_cmd(&ch(&mut a, 'p')),
        vec![Command::Pause {
            job_id: RUNNING.into()
        }]
    );
    jobs_at(&mut a, PAUSED);
    assert_eq!(
        job_cmd(&ch(&mut a, 'p')),
        vec![Command::Unpause {
            job_id: PAUSED.into()
        }]
    );
    jobs_at(&mut a, COMPLETED);
    assert!(ch(&mut a, 'p').is_empty());
    assert!(status(&a).contains("nothing to pause"));
}

#[test]
fn r_on_a_completed_job_whose_hand_off_is_due_resumes_it() {
    let mut a = app();
    handed_off(&mut a, COMPLETED, false);
    jobs_at(&mut a, COMPLETED);
    assert_eq!(
        job_cmd(&ch(&mut a, 'r')),
        vec![Command::Resume {
            job_id: COMPLETED.into()
        }]
    );
}

#[test]
fn marks_make_bulk_actions_with_a_confirm_showing_the_count() {
    let mut a = app();
    handed_off(&mut a, COMPLETED, true);
    jobs_at(&mut a, PENDING);
    ch(&mut a, ' ');
    assert!(a.marks.contains(PENDING));
    // Space moves down; mark the paused job and a completed one.
    assert_eq!(a.snap.jobs[a.job_rows[a.jobs.selected]].job_id, PAUSED);
    ch(&mut a, ' ');
    jobs_at(&mut a, COMPLETED);
    ch(&mut a, ' ');
    assert_eq!(a.marks.len(), 3);
    assert!(ch(&mut a, 'r').is_empty());
    let Mode::Confirm(c) = &a.mode else {
        panic!("{:?}", a.mode)
    };
    // The pending job already waits in the scheduler's queue; the completed one is done.
    // The confirm names the jobs and what happens to them.
    assert!(
        c.prompt.starts_with(&format!("Resume 1 job ({PAUSED})?")),
        "{}",
        c.prompt
    );
    assert!(c.prompt.contains("2 marked job(s) skipped"), "{}", c.prompt);
    let cmds = job_cmd(&ch(&mut a, 'y'));
    assert_eq!(
        cmds,
        vec![Command::Resume {
            job_id: PAUSED.into()
        }]
    );
    // Unmarking one by space, then all by u.
    jobs_at(&mut a, COMPLETED);
    ch(&mut a, ' ');
    assert_eq!(a.marks.len(), 2);
    ch(&mut a, 'u');
    assert!(a.marks.is_empty());
    // A bulk action none of the marked jobs can take says so.
    jobs_at(&mut a, COMPLETED);
    ch(&mut a, ' ');
    ch(&mut a, 'p');
    assert_eq!(a.mode, Mode::Normal);
    assert!(
        status(&a).contains("none of the 1 marked job(s)"),
        "{}",
        status(&a)
    );
}

fn detail(a: &mut App) {
    jobs_at(a, RUNNING);
    code(a, KeyCode::Enter);
}

#[test]
fn the_detail_view_walks_chunks_and_jumps_to_failures() {
    let mut a = app();
    detail(&mut a);
    code(&mut a, KeyCode::Right);
    code(&mut a, KeyCode::Right);
    assert_eq!((a.detail_table, a.detail_chunk), (0, 2));
    code(&mut a, KeyCode::Down);
    assert_eq!(a.detail_table, 1);
    ch(&mut a, 'n');
    assert_eq!(
        (a.detail_table, a.detail_chunk),
        (0, 9),
        "the failed tickets chunk"
    );
    ch(&mut a, 'N');
    assert_eq!(
        (a.detail_table, a.detail_chunk),
        (0, 9),
        "the only failure, from both sides"
    );
    code(&mut a, KeyCode::Left);
    assert_eq!(a.detail_chunk, 8);
    // Job actions work here too.
    assert_eq!(
        job_cmd(&ch(&mut a, 'p')),
        vec![Command::Pause {
            job_id: RUNNING.into()
        }]
    );
}

#[test]
fn l_opens_the_selected_chunks_logs() {
    let mut a = app();
    detail(&mut a);
    ch(&mut a, 'n');
    let fx = ch(&mut a, 'l');
    assert_eq!(fx, vec![Effect::Engine(Command::Watch { job_id: None })]);
    assert_eq!(a.route(), &Route::Logs);
    let f = a.logs.chunk.clone().unwrap();
    assert_eq!((f.table.as_deref(), f.seq), (Some("tickets"), Some(9)));
    assert!(a.logs.shown_len() > 0 && a.logs.shown_len() < 200);
    // Back to the detail view watches the job again.
    assert_eq!(
        code(&mut a, KeyCode::Esc),
        vec![Effect::Engine(Command::Watch {
            job_id: Some(RUNNING.into())
        })]
    );
    // From the jobs table, l filters by the job.
    jobs_at(&mut a, RUNNING);
    ch(&mut a, 'l');
    assert_eq!(a.logs.chunk.as_ref().unwrap().seq, None);
    assert_eq!(a.logs.shown_len(), 200);
}

#[test]
fn logs_search_follow_wrap_level_and_context() {
    let mut a = app();
    typed(&mut a, ":logs");
    code(&mut a, KeyCode::Enter);
    assert!(a.logs.follow);
    ch(&mut a, 'n');
    assert!(status(&a).starts_with("n: no search yet"));
    ch(&mut a, '/');
    typed(&mut a, "INJECTED");
    assert!(matches!(a.mode, Mode::Search { .. }));
    assert_eq!(a.logs.match_count(), 4, "lines 49, 99, 149, 199");
    code(&mut a, KeyCode::Enter);
    assert_eq!(
        a.logs.current_match,
        Some(49),
        "Enter jumps to the first match"
    );
    assert!(!a.logs.follow);
    ch(&mut a, 'n');
    assert_eq!(a.logs.current_match, Some(99));
    ch(&mut a, 'N');
    assert_eq!(a.logs.current_match, Some(49));
    ch(&mut a, 'x');
    assert_eq!(a.logs.context, Some(2));
    assert_eq!(
        a.logs.shown_len(),
        4 * 5 - 2,
        "the last match has no lines after it"
    );
    ch(&mut a, 'x');
    assert_eq!(a.logs.shown_len(), 200);
    ch(&mut a, 'f');
    assert!(a.logs.follow);
    assert!(a.logs.wrap, "long lines wrap by default");
    ch(&mut a, 'w');
    assert!(!a.logs.wrap);
    ch(&mut a, 'L');
    assert_eq!(a.logs.min_level, Some(crate::tui::logs::Level::Info));
    ch(&mut a, 'L');
    assert_eq!(a.logs.shown_len(), 4 + 8, "errors and warnings");
    ch(&mut a, 'C');
    assert!(status(&a).contains("no chunk filter"));
    // Esc clears the search first, then goes back.
    code(&mut a, KeyCode::Esc);
    assert!(a.logs.search.is_none());
    assert_eq!(a.route(), &Route::Logs);
    code(&mut a, KeyCode::Esc);
    assert_eq!(a.route(), &Route::Tenants);
    // x without a search explains itself.
    typed(&mut a, ":logs");
    code(&mut a, KeyCode::Enter);
    ch(&mut a, 'x');
    assert!(status(&a).starts_with("x: search first"));
}

#[test]
fn new_log_lines_redraw_only_the_logs_view() {
    let mut a = app();
    a.dirty = false;
    update(&mut a, Msg::Logs(vec![fixtures::log_line(1, RUNNING)]));
    assert!(!a.dirty);
    typed(&mut a, ":logs");
    code(&mut a, KeyCode::Enter);
    a.dirty = false;
    update(&mut a, Msg::Logs(vec![fixtures::log_line(2, RUNNING)]));
    assert!(a.dirty);
    update(&mut a, Msg::LogError("cannot read x: denied".into()));
    assert_eq!(
        a.logs.source_error.as_deref(),
        Some("cannot read x: denied")
    );
}

#[test]
fn t_opens_the_form_previews_the_plan_and_confirms() {
    let mut a = app();
    // On the tenants view, the selected tenant's service is preset.
    let fx = ch(&mut a, 't');
    let Mode::Form(form) = &a.mode else {
        panic!("{:?}", a.mode)
    };
    assert_eq!(form.tenant_id(), Some("acme"));
    assert_eq!(form.service(), Some(Service::Connectwise));
    let [
        Effect::Preview {
            generation: g1,
            request,
        },
    ] = fx.as_slice()
    else {
        panic!("{fx:?}")
    };
    assert_eq!(request.tenant_id, "acme");
    // Typing into a field asks for a new preview; older answers are ignored.
    code(&mut a, KeyCode::Tab);
    code(&mut a, KeyCode::Tab);
    let fx = typed(&mut a, "tickets");
    let Some(Effect::Preview {
        generation: g2,
        request,
    }) = fx.last()
    else {
        panic!("{fx:?}")
    };
    assert!(g2 > g1);
    assert_eq!(request.tables, vec!["tickets".to_string()]);
    let plan_for =
        |req: &PlanRequest| Err::<PlanPreview, _>(PlanError(format!("stale {}", req.tenant_id)));
    update(
        &mut a,
        Msg::Preview {
            generation: *g1,
            result: plan_for(request),
        },
    );
    let Mode::Form(form) = &a.mode else { panic!() };
    assert_eq!(form.preview, None, "a stale answer is dropped");
    // Enter before the preview arrived: not yet.
    code(&mut a, KeyCode::Enter);
    assert!(status(&a).contains("not ready"));
    let preview = crate::tui::form::PreviewSummary {
        window: "[2025-01-01T00:00:00Z, 2025-03-01T00:00:00Z)".into(),
        chunks: 2,
        tables: vec![("tickets".into(), 2)],
        api_calls: 2,
        duration_secs: Some(0.6),
        rate_per_minute: Some(200),
        first_windows: vec![],
        quota: None,
    };
    if let Mode::Form(form) = &mut a.mode {
        form.preview = Some(Ok(preview));
    }
    code(&mut a, KeyCode::Enter);
    let Mode::Confirm(c) = &a.mode else {
        panic!("{:?}", a.mode)
    };
    assert!(
        c.prompt
            .contains("2 chunk(s), about 2 API calls, at least 1s"),
        "{}",
        c.prompt
    );
    let cmds = job_cmd(&ch(&mut a, 'y'));
    let [Command::Trigger { request, target }] = cmds.as_slice() else {
        panic!("{cmds:?}")
    };
    assert_eq!(
        (request.tenant_id.as_str(), *target),
        ("acme", Target::Local)
    );
}

#[test]
fn the_form_cycles_choices_and_reports_bad_fields() {
    let mut a = app();
    ch(&mut a, 't');
    code(&mut a, KeyCode::Right);
    let Mode::Form(form) = &a.mode else { panic!() };
    assert_eq!(form.tenant_id(), Some("globex"));
    // Target: cloud is a choice the engine may refuse later.
    for _ in 0..6 {
        code(&mut a, KeyCode::Tab);
    }
    code(&mut a, KeyCode::Right);
    let Mode::Form(form) = &a.mode else { panic!() };
    assert_eq!((form.focus, form.target), (Field::Target, Target::Cloud));
    code(&mut a, KeyCode::BackTab);
    code(&mut a, KeyCode::BackTab);
    code(&mut a, KeyCode::BackTab);
    assert!(
        typed(&mut a, "2025-13-01").is_empty(),
        "no preview for a bad date"
    );
    let Mode::Form(form) = &a.mode else { panic!() };
    let Some(Err(e)) = &form.preview else {
        panic!("{:?}", form.preview)
    };
    assert!(e.starts_with("start date '2025-13-01'"), "{e}");
    code(&mut a, KeyCode::Enter);
    assert!(status(&a).starts_with("t: start date"), "{}", status(&a));
    assert!(matches!(a.mode, Mode::Form(_)), "the form stays open");
    code(&mut a, KeyCode::Esc);
    assert_eq!(a.mode, Mode::Normal);
}

#[test]
fn engine_answers_and_events_reach_the_status_bar() {
    let mut a = app();
    update(
        &mut a,
        Msg::Done {
            command: Command::Resume { job_id: "j".into() },
            result: Err("job j is completed; nothing to resume".into()),
        },
    );
    assert_eq!(status(&a), "resume: job j is completed; nothing to resume");
    assert_eq!(a.status.as_ref().unwrap().kind, StatusKind::Error);
    update(
        &mut a,
        Msg::Done {
            command: Command::Watch { job_id: None },
            result: Ok(String::new()),
        },
    );
    assert_eq!(status(&a), "resume: job j is completed; nothing to resume");
    let key = ChunkKey {
        job_id: "j".into(),
        table: "tickets".into(),
        seq: 4,
    };
    update(
        &mut a,
        Msg::Engine {
            event: crate::engine::EngineEvent::ChunkFinished {
                key,
                status: crate::domain::ChunkStatus::Failed,
                records: 0,
                duration_ms: 1,
                error: Some("HTTP 400: nope".into()),
            },
            at: fixtures::now(),
        },
    );
    // The failure holds the alert bar rather than a status line that fades.
    assert_eq!(
        a.failures.open().next().map(|f| f.error.as_str()),
        Some("HTTP 400: nope")
    );
}

#[test]
fn ticks_fade_messages_and_redraw_only_when_something_moves() {
    let mut a = app();
    a.set_status(StatusKind::Info, "hello");
    update(&mut a, Msg::Tick(fixtures::now() + Duration::seconds(9)));
    assert!(a.status.is_none());
    // No running job: a tick changes nothing on screen.
    let jobs: Vec<_> = fixtures::demo_jobs()
        .into_iter()
        .filter(|j| j.status != JobStatus::Running)
        .collect();
    update(
        &mut a,
        Msg::Snapshot(Arc::new(fixtures::snapshot(jobs, None))),
    );
    a.dirty = false;
    update(&mut a, Msg::Tick(fixtures::now() + Duration::seconds(10)));
    assert!(!a.dirty);
}

#[test]
fn rates_and_eta_come_from_progress_events() {
    let a = app();
    let m = &a.rates[RUNNING];
    let (rps, rpm) = m.rates(fixtures::now());
    assert!((rps - 100.0).abs() < 1.0, "{rps}");
    // The requests of the last minute, not ten seconds' scaled up.
    assert!((rpm - 10.0).abs() < 0.5, "{rpm}");
    let pace = m.eta(fixtures::now(), 9, None).unwrap();
    // Nine chunks of a page each at 2 requests a minute take at least 270 s.
    let bounded = m.eta(fixtures::now(), 9, Some(2)).unwrap();
    assert!(pace < Duration::seconds(60), "{pace}");
    assert_eq!(bounded, Duration::seconds(270));
}

#[test]
fn unbound_keys_say_so() {
    let mut a = app();
    typed(&mut a, ":health");
    code(&mut a, KeyCode::Enter);
    assert!(ch(&mut a, 'r').is_empty());
    assert_eq!(
        status(&a),
        "r: no action in the health view (? lists the keys)"
    );
}

mod keys;
mod read_only;
