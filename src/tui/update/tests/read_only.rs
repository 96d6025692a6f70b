//! Read-only mode: no key of any view sends the engine a command that changes jobs or data.

use super::*;

const EVERY_VIEW: [crate::tui::app::View; 6] = [
    crate::tui::app::View::Tenants,
    crate::tui::app::View::Jobs,
    crate::tui::app::View::Detail,
    crate::tui::app::View::Logs,
    crate::tui::app::View::Health,
    crate::tui::app::View::Pulse,
];

/// Goes to `view` with a job selected where the view has jobs.
fn open_view(a: &mut App, view: crate::tui::app::View) {
    use crate::tui::app::View;
    match view {
        View::Tenants => {}
        View::Jobs => jobs_at(a, PAUSED),
        View::Detail => detail(a),
        View::Logs => {
            typed(a, ":logs");
            code(a, KeyCode::Enter);
        }
        View::Health => {
            typed(a, ":health");
            code(a, KeyCode::Enter);
        }
        View::Pulse => {
            typed(a, ":pulse");
            code(a, KeyCode::Enter);
        }
    }
}

fn key_event(key: &crate::tui::action::Key) -> KeyEvent {
    match key {
        crate::tui::action::Key::Char(c) => KeyEvent::new(KeyCode::Char(*c), KeyModifiers::NONE),
        crate::tui::action::Key::Ctrl(c) => KeyEvent::new(KeyCode::Char(*c), KeyModifiers::CONTROL),
        crate::tui::action::Key::Code(c) => KeyEvent::new(*c, KeyModifiers::NONE),
    }
}

/// Whether an engine command changes jobs or data: written here from the engine's list of
/// commands, not from the console's own `is_mutating`, so the read-only test below does not
/// check the console against itself. A new command must be placed here to compile.
fn changes_jobs_or_data(c: &Command) -> bool {
    match c {
        Command::Trigger { .. }
        | Command::Resume { .. }
        | Command::RetryFailed { .. }
        | Command::Cancel { .. }
        | Command::Pause { .. }
        | Command::Unpause { .. }
        | Command::Transform { .. } => true,
        Command::Watch { .. } | Command::Verify { .. } => false,
        Command::Confirmed { command, .. } => changes_jobs_or_data(command),
    }
}

/// Every key of every view, with and without marks, followed by `y` and Enter (to accept any
/// confirm or form it opened): the commands it sends to the engine.
fn commands_of_every_key(read_only: bool) -> Vec<(String, Command)> {
    use crate::tui::action::BINDINGS;
    let mut sent = Vec::new();
    for view in EVERY_VIEW {
        for binding in BINDINGS.iter() {
            if binding.views.is_some_and(|vs| !vs.contains(&view)) {
                continue;
            }
            for key in binding.keys {
                for marked in [false, true] {
                    let mut a = app();
                    a.read_only = read_only;
                    open_view(&mut a, view);
                    if marked {
                        a.marks
                            .extend([PAUSED.to_string(), WITH_ERRORS.to_string()]);
                    }
                    let mut fx = update(&mut a, Msg::Key(key_event(key)));
                    fx.extend(ch(&mut a, 'y'));
                    fx.extend(code(&mut a, KeyCode::Enter));
                    let what = format!("{view:?} {} marked={marked}", binding.label);
                    sent.extend(job_cmd(&fx).into_iter().map(|c| (what.clone(), c)));
                }
            }
        }
    }
    sent
}

#[test]
fn read_only_never_sends_a_command_that_changes_jobs_or_data() {
    let changing = |read_only| -> Vec<(String, Command)> {
        commands_of_every_key(read_only)
            .into_iter()
            .filter(|(_, c)| changes_jobs_or_data(c))
            .collect()
    };
    // The same walk with writes allowed finds such commands: the walk can see them.
    assert!(changing(false).len() >= 5, "{:?}", changing(false));
    assert_eq!(changing(true), Vec::new());
}

/// Every key bound to a mutating action, in every view where it is bound, with and
/// without marks, is refused in read-only mode: no effect, no confirm, a message.
#[test]
fn read_only_refuses_every_mutating_key() {
    use crate::tui::action::BINDINGS;
    let mut checked = 0;
    for view in EVERY_VIEW {
        for binding in BINDINGS.iter().filter(|b| b.action.is_mutating()) {
            if binding.views.is_some_and(|vs| !vs.contains(&view)) {
                continue;
            }
            for key in binding.keys {
                for marked in [false, true] {
                    let mut a = app();
                    a.read_only = true;
                    open_view(&mut a, view);
                    if marked {
                        a.marks
                            .extend([PAUSED.to_string(), WITH_ERRORS.to_string()]);
                    }
                    let ev = key_event(key);
                    let fx = update(&mut a, Msg::Key(ev));
                    assert!(fx.is_empty(), "{view:?} {}: {fx:?}", binding.label);
                    assert_eq!(a.mode, Mode::Normal, "{view:?} {}", binding.label);
                    assert!(
                        status(&a).starts_with("read-only: "),
                        "{view:?} {}: {}",
                        binding.label,
                        status(&a)
                    );
                    checked += 1;
                }
            }
        }
    }
    // t and T in three views, r c p in two, R in three (Health too), with and without marks.
    assert_eq!(checked, 2 * (3 + 3 + 3 * 2 + 3));
}
