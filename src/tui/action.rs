//! What keys mean: the `Action` enum and the one default table of bindings per view. The
//! `keymap` lays `keys.toml` over this table, and the key handler, the `?` help and the hint
//! lines are all made from that map (so help can never disagree with the keys).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::view::View;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Quit,
    CommandMode,
    FilterMode,
    Help,
    Back,
    Enter,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Left,
    Right,
    Trigger,
    Resume,
    RetryFailed,
    Cancel,
    Pause,
    Mark,
    ClearMarks,
    Logs,
    Follow,
    Wrap,
    NextMatch,
    PrevMatch,
    LevelFilter,
    ClearChunkFilter,
    Context,
    SortNext,
    SortReverse,
    NextFailed,
    PrevFailed,
    Transform,
    Verify,
    /// `!`: the newest unacknowledged failure's chunk, described.
    OpenFailure,
    /// `a`: acknowledge the failures in the alert bar.
    Acknowledge,
    /// `d`: every field of the selected chunk and its attempts.
    Describe,
    /// `y`: copy the error, job id or log line (OSC 52).
    Yank,
    /// `o`: the job's or chunk's logs in `$PAGER`.
    Pager,
    /// `P`: the pulse view (recorded request and record rates, ETAs).
    Pulse,
}

impl Action {
    /// Actions that change jobs or data: refused in read-only mode. The transform rewrites
    /// canonical tables, so it counts. Verify does not: it reads the source's counts and the
    /// landed parts and only stores its findings, which is what an on-call reader wants.
    pub fn is_mutating(self) -> bool {
        matches!(
            self,
            Action::Trigger
                | Action::Resume
                | Action::RetryFailed
                | Action::Cancel
                | Action::Pause
                | Action::Transform
        )
    }

    /// The name `keys.toml` uses: the variant in snake_case (`RetryFailed` → `retry_failed`).
    pub fn name(self) -> String {
        let mut out = String::new();
        for (i, c) in format!("{self:?}").chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// What status messages call the action after its key (`r (resume)`).
    pub fn title(self) -> &'static str {
        match self {
            Action::Trigger => "trigger",
            Action::Resume => "resume",
            Action::RetryFailed => "retry failed chunks",
            Action::Cancel => "cancel",
            Action::Pause => "pause/unpause",
            Action::Transform => "transform",
            Action::Verify => "verify",
            _ => "this key",
        }
    }
}

/// A key as the table spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Ctrl(char),
    Code(KeyCode),
}

impl Key {
    pub fn matches(self, ev: &KeyEvent) -> bool {
        let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
        match self {
            Key::Char(c) => !ctrl && ev.code == KeyCode::Char(c),
            Key::Ctrl(c) => ctrl && ev.code == KeyCode::Char(c),
            Key::Code(code) => ev.code == code,
        }
    }
}

pub struct Binding {
    pub keys: &'static [Key],
    /// How help writes the keys.
    pub label: &'static str,
    pub action: Action,
    pub help: &'static str,
    /// `None`: every view.
    pub views: Option<&'static [View]>,
}

use Key::{Char, Code, Ctrl};
use View::{Detail, Health, Jobs, Logs, Tenants};

const fn b(
    keys: &'static [Key],
    label: &'static str,
    action: Action,
    help: &'static str,
    views: Option<&'static [View]>,
) -> Binding {
    Binding {
        keys,
        label,
        action,
        help,
        views,
    }
}

const JOB_VIEWS: &[View] = &[Jobs, Detail];

/// Every binding, the defaults `keymap::Keymap` starts from. Rows of one action that apply in
/// the same view: the first gives help its text. `Keymap::check` refuses two actions on one key
/// in a view, so no row ever shadows another action's.
pub const BINDINGS: &[Binding] = &[
    b(
        &[Char(':')],
        ":",
        Action::CommandMode,
        "command: :jobs :job ID :tenant ID :alerts … (a bare : lists them, Tab cycles)",
        None,
    ),
    b(&[Char('?')], "?", Action::Help, "this help", None),
    b(
        &[Code(KeyCode::Esc)],
        "Esc",
        Action::Back,
        "back (clears a search first)",
        None,
    ),
    b(
        &[Char('q'), Ctrl('c')],
        "q Ctrl-C",
        Action::Quit,
        "quit (asks first while the console's jobs run; :q! at once)",
        None,
    ),
    b(
        &[Code(KeyCode::Enter)],
        "Enter",
        Action::Enter,
        "open the tenant's jobs",
        Some(&[Tenants]),
    ),
    b(
        &[Code(KeyCode::Enter)],
        "Enter",
        Action::Enter,
        "open the job's chunks",
        Some(&[Jobs]),
    ),
    b(
        &[Code(KeyCode::Enter)],
        "Enter",
        Action::Enter,
        "open the alert's job at its failed chunk",
        Some(&[Health]),
    ),
    b(
        &[Char('!')],
        "!",
        Action::OpenFailure,
        "the newest failure: its chunk, error, request and next step",
        None,
    ),
    b(
        &[Char('a')],
        "a",
        Action::Acknowledge,
        "acknowledge the failures in the alert bar",
        None,
    ),
    b(
        &[Char('d')],
        "d",
        Action::Describe,
        "describe the chunk: every field and its attempts",
        Some(&[Detail]),
    ),
    b(
        &[Char('y')],
        "y",
        Action::Yank,
        "copy the error, job id or log line (OSC 52)",
        Some(&[Tenants, Jobs, Detail, Logs, Health]),
    ),
    b(
        &[Char('P')],
        "P",
        Action::Pulse,
        "pulse: recorded requests/min against the limit, records/s, ETAs (:pulse)",
        None,
    ),
    b(
        &[Char('o')],
        "o",
        Action::Pager,
        "open the logs in $PAGER",
        Some(&[Jobs, Detail, Logs]),
    ),
    b(
        &[Char('/')],
        "/",
        Action::FilterMode,
        "filter rows",
        Some(&[Tenants, Jobs]),
    ),
    b(
        &[Char('/')],
        "/",
        Action::FilterMode,
        "search (matches highlighted)",
        Some(&[Logs]),
    ),
    b(
        &[Code(KeyCode::Up), Char('k')],
        "↑ k",
        Action::Up,
        "previous table",
        Some(&[Detail]),
    ),
    b(
        &[Code(KeyCode::Down), Char('j')],
        "↓ j",
        Action::Down,
        "next table",
        Some(&[Detail]),
    ),
    b(
        &[Code(KeyCode::Left)],
        "←",
        Action::Left,
        "previous chunk",
        Some(&[Detail]),
    ),
    b(
        &[Code(KeyCode::Right)],
        "→",
        Action::Right,
        "next chunk",
        Some(&[Detail]),
    ),
    b(
        &[Char('n')],
        "n",
        Action::NextFailed,
        "next failed chunk",
        Some(&[Detail]),
    ),
    b(
        &[Char('N')],
        "N",
        Action::PrevFailed,
        "previous failed chunk",
        Some(&[Detail]),
    ),
    b(
        &[Code(KeyCode::Up), Char('k')],
        "↑ k",
        Action::Up,
        "up",
        None,
    ),
    b(
        &[Code(KeyCode::Down), Char('j')],
        "↓ j",
        Action::Down,
        "down",
        None,
    ),
    b(
        &[Code(KeyCode::PageUp), Ctrl('b')],
        "PgUp",
        Action::PageUp,
        "page up",
        None,
    ),
    b(
        &[Code(KeyCode::PageDown), Ctrl('f')],
        "PgDn",
        Action::PageDown,
        "page down",
        None,
    ),
    b(
        &[Char('g'), Code(KeyCode::Home)],
        "g Home",
        Action::Top,
        "first line",
        None,
    ),
    b(
        &[Char('G'), Code(KeyCode::End)],
        "G End",
        Action::Bottom,
        "last line",
        None,
    ),
    b(
        &[Char('t')],
        "t",
        Action::Trigger,
        "trigger a backfill (form with plan preview)",
        Some(&[Tenants, Jobs, Detail]),
    ),
    b(
        &[Char('T')],
        "T",
        Action::Transform,
        "transform: canonical rebuild",
        Some(&[Tenants, Jobs, Detail]),
    ),
    b(
        &[Char('v')],
        "v",
        Action::Verify,
        "verify: landed vs source",
        Some(JOB_VIEWS),
    ),
    b(
        &[Char(' ')],
        "space",
        Action::Mark,
        "mark / unmark the job (job actions act on all marked)",
        Some(&[Jobs]),
    ),
    b(
        &[Char('u')],
        "u",
        Action::ClearMarks,
        "unmark all",
        Some(&[Jobs]),
    ),
    b(
        &[Char('r')],
        "r",
        Action::Resume,
        "resume from checkpoints",
        Some(JOB_VIEWS),
    ),
    b(
        &[Char('R')],
        "R",
        Action::RetryFailed,
        "retry failed chunks only",
        Some(&[Jobs, Detail, Health]),
    ),
    b(
        &[Char('c')],
        "c",
        Action::Cancel,
        "cancel (asks first)",
        Some(JOB_VIEWS),
    ),
    b(
        &[Char('p')],
        "p",
        Action::Pause,
        "pause / unpause",
        Some(JOB_VIEWS),
    ),
    b(
        &[Char('l')],
        "l",
        Action::Logs,
        "logs of the job",
        Some(&[Jobs]),
    ),
    b(
        &[Char('l')],
        "l",
        Action::Logs,
        "logs of the selected chunk",
        Some(&[Detail]),
    ),
    b(
        &[Char('s')],
        "s",
        Action::SortNext,
        "sort by the next column",
        Some(&[Jobs]),
    ),
    b(
        &[Char('S')],
        "S",
        Action::SortReverse,
        "reverse the sort",
        Some(&[Jobs]),
    ),
    b(
        &[Char('n')],
        "n",
        Action::NextMatch,
        "next match",
        Some(&[Logs]),
    ),
    b(
        &[Char('N')],
        "N",
        Action::PrevMatch,
        "previous match",
        Some(&[Logs]),
    ),
    b(
        &[Char('f')],
        "f",
        Action::Follow,
        "follow new lines",
        Some(&[Logs]),
    ),
    b(
        &[Char('w')],
        "w",
        Action::Wrap,
        "wrap long lines",
        Some(&[Logs]),
    ),
    b(
        &[Char('L')],
        "L",
        Action::LevelFilter,
        "level filter: all, info, warn, error",
        Some(&[Logs]),
    ),
    b(
        &[Char('C')],
        "C",
        Action::ClearChunkFilter,
        "show every job's lines (clear the chunk filter)",
        Some(&[Logs]),
    ),
    b(
        &[Char('x')],
        "x",
        Action::Context,
        "only matches, with 2 lines of context",
        Some(&[Logs]),
    ),
];

/// The `:` commands, for completion.
pub const COMMANDS: &[&str] = &[
    "jobs", "tenants", "logs", "health", "pulse", "theme", "help", "quit",
];

/// Completions of a partly typed command line; `themes` complete `:theme `.
pub fn complete(input: &str, themes: &[&str]) -> Vec<String> {
    let input = input.trim_start();
    if let Some(rest) = input.strip_prefix("theme ") {
        let rest = rest.trim_start();
        return themes
            .iter()
            .filter(|t| t.starts_with(rest))
            .map(|t| format!("theme {t}"))
            .collect();
    }
    COMMANDS
        .iter()
        .filter(|c| c.starts_with(input))
        .map(|c| c.to_string())
        .collect()
}

/// The longest common prefix of completions (what Tab fills in).
pub fn common_prefix(items: &[String]) -> Option<String> {
    let first = items.first()?;
    let mut len = first.len();
    for s in &items[1..] {
        len = len.min(
            first
                .chars()
                .zip(s.chars())
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a.len_utf8())
                .sum(),
        );
    }
    Some(first[..len].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_complete() {
        assert_eq!(complete("j", &[]), vec!["jobs"]);
        assert_eq!(
            complete("theme h", &["dark", "high-contrast"]),
            vec!["theme high-contrast"]
        );
        assert_eq!(
            common_prefix(&["theme dark".into(), "theme dim".into()]).as_deref(),
            Some("theme d")
        );
    }
}
