//! The hint line under each view and the keys of the alert bar, made from the keymap in
//! effect: a remapped key shows its new key here as in `?` help.

use crate::tui::action::{Action, Key};
use crate::tui::app::{App, View};
use crate::tui::format::clip;
use crate::tui::keymap::key_label;
use crossterm::event::KeyCode;

/// One item of a hint line.
enum Hint {
    /// The actions' keys (first key of each) and a word: `r R c p`, `←→ chunk`.
    Keys(&'static [Action], &'static str),
    /// Text shown as it is (`:jobs`).
    Text(&'static str),
}

use Action as A;
use Hint::{Keys, Text};

/// What each view's hint line lists, in read-write and in read-only consoles (which list no
/// key they refuse).
fn items(view: View, read_only: bool) -> &'static [Hint] {
    match (view, read_only) {
        (View::Tenants, false) => &[
            Keys(&[A::Enter], "jobs"),
            Keys(&[A::Trigger], "trigger"),
            Keys(&[A::Transform], "transform"),
            Keys(&[A::FilterMode], "filter"),
            Keys(&[A::OpenFailure], "failure"),
        ],
        (View::Tenants, true) => &[
            Keys(&[A::Enter], "jobs"),
            Keys(&[A::FilterMode], "filter"),
            Keys(&[A::OpenFailure], "failure"),
            Keys(&[A::Yank], "copy"),
        ],
        (View::Jobs, false) => &[
            Keys(&[A::Enter], "chunks"),
            Keys(&[A::Mark], "mark"),
            Keys(&[A::Resume, A::RetryFailed, A::Cancel, A::Pause], ""),
            Keys(&[A::Verify], "verify"),
            Keys(&[A::Transform], ""),
            Keys(&[A::Logs], "logs"),
            Keys(&[A::SortNext], "sort"),
            Keys(&[A::OpenFailure], "failure"),
        ],
        (View::Jobs, true) => &[
            Keys(&[A::Enter], "chunks"),
            Keys(&[A::Verify], "verify"),
            Keys(&[A::Logs], "logs"),
            Keys(&[A::Pager], "pager"),
            Keys(&[A::SortNext], "sort"),
            Keys(&[A::OpenFailure], "failure"),
        ],
        (View::Detail, false) => &[
            Keys(&[A::Left, A::Right], "chunk"),
            Keys(&[A::Up, A::Down], "table"),
            Keys(&[A::NextFailed], "failed"),
            Keys(&[A::Describe], "describe"),
            Keys(&[A::Logs], "logs"),
            Keys(&[A::Resume, A::RetryFailed, A::Cancel, A::Pause], ""),
            Keys(&[A::Verify, A::Transform], ""),
        ],
        (View::Detail, true) => &[
            Keys(&[A::Left, A::Right], "chunk"),
            Keys(&[A::Up, A::Down], "table"),
            Keys(&[A::NextFailed], "failed"),
            Keys(&[A::Describe], "describe"),
            Keys(&[A::Logs], "logs"),
            Keys(&[A::Verify], "verify"),
        ],
        (View::Logs, _) => &[
            Keys(&[A::FilterMode], "search"),
            Keys(&[A::NextMatch, A::PrevMatch], ""),
            Keys(&[A::Follow], "follow"),
            Keys(&[A::Wrap], "wrap"),
            Keys(&[A::LevelFilter], "level"),
            Keys(&[A::Context], "context"),
            Keys(&[A::Yank], "copy"),
        ],
        (View::Health, false) => &[
            Keys(&[A::Enter], "open the job"),
            Keys(&[A::RetryFailed], "retry"),
            Keys(&[A::OpenFailure], "failure"),
            Text(":jobs"),
        ],
        (View::Health, true) => &[
            Keys(&[A::Enter], "open the job"),
            Keys(&[A::OpenFailure], "failure"),
            Text(":jobs"),
            Text(":tenants"),
        ],
        (View::Pulse, _) => &[
            Keys(&[A::Back], "back"),
            Text(":jobs"),
            Text(":health"),
            Keys(&[A::OpenFailure], "failure"),
        ],
    }
}

fn is_arrow(key: Key) -> bool {
    matches!(
        key,
        Key::Code(KeyCode::Up | KeyCode::Down | KeyCode::Left | KeyCode::Right)
    )
}

/// The actions' first keys, arrows side by side (`←→`), others apart (`r R c p`); `None`
/// when none of them has a key in the view.
fn keys_text(app: &App, view: View, actions: &[Action]) -> Option<String> {
    let keys: Vec<Key> = actions
        .iter()
        .filter_map(|a| app.keymap.keys(view, *a).first().copied())
        .collect();
    if keys.is_empty() {
        return None;
    }
    let sep = if keys.iter().all(|k| is_arrow(*k)) {
        ""
    } else {
        " "
    };
    Some(
        keys.iter()
            .map(|k| key_label(*k))
            .collect::<Vec<_>>()
            .join(sep),
    )
}

/// "KEY word" for an action, or nothing when it has no key in the view.
fn labelled(app: &App, view: View, actions: &[Action], word: &str) -> Option<String> {
    let keys = keys_text(app, view, actions)?;
    Some(if word.is_empty() {
        keys
    } else {
        format!("{keys} {word}")
    })
}

/// The key hints of the view, cut from the end so the help key always shows; read-only
/// consoles list no key they refuse.
pub(super) fn line(app: &App, width: usize) -> String {
    let view = app.view();
    let ro = if app.read_only { "read-only · " } else { "" };
    let keys: Vec<String> = items(view, app.read_only)
        .iter()
        .filter_map(|item| match item {
            Keys(actions, word) => labelled(app, view, actions, word),
            Text(text) => Some((*text).to_string()),
        })
        .collect();
    let tail: Vec<String> = [(A::CommandMode, "command"), (A::Help, "help")]
        .iter()
        .filter_map(|(a, word)| labelled(app, view, &[*a], word))
        .collect();
    let tail = format!(" · {}", tail.join(" · "));
    let room = width.saturating_sub(ro.chars().count() + tail.chars().count());
    format!("{ro}{}{tail}", clip(&keys.join(" · "), room))
}

/// The alert bar's keys: ` ! open · a ack `.
pub(super) fn alert_keys(app: &App) -> String {
    let view = app.view();
    let items: Vec<String> = [(A::OpenFailure, "open"), (A::Acknowledge, "ack")]
        .iter()
        .filter_map(|(a, word)| labelled(app, view, &[*a], word))
        .collect();
    format!(" {} ", items.join(" · "))
}
