use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn parse(text: &str) -> Result<Keymap, String> {
    Keymap::parse("keys.toml", text).map_err(|e| e.0)
}

#[test]
fn the_same_key_means_what_the_view_says() {
    let map = Keymap::default();
    assert_eq!(
        map.action_for(View::Logs, &key('n')),
        Some(Action::NextMatch)
    );
    assert_eq!(
        map.action_for(View::Detail, &key('n')),
        Some(Action::NextFailed)
    );
    assert_eq!(map.action_for(View::Health, &key('r')), None);
    assert_eq!(map.action_for(View::Jobs, &ctrl('c')), Some(Action::Quit));
    assert_eq!(map.action_for(View::Jobs, &key('c')), Some(Action::Cancel));
}

#[test]
fn help_lists_each_action_of_a_view_once() {
    let map = Keymap::default();
    let help = map.help_for(View::Detail);
    assert!(
        help.iter()
            .any(|b| b.action == Action::Logs && b.help.contains("chunk"))
    );
    let ups = help.iter().filter(|b| b.action == Action::Up).count();
    assert_eq!(ups, 1);
}

#[test]
fn the_defaults_are_the_table_and_have_no_conflict() {
    let map = Keymap::default();
    assert_eq!(map.bindings.len(), BINDINGS.len());
    for (row, b) in map.bindings.iter().zip(BINDINGS) {
        assert_eq!(row.keys, b.keys);
        assert_eq!(row.label, b.label);
        assert_eq!(row.action, b.action);
        assert_eq!(row.views, b.views);
    }
    map.check().unwrap();
    // An empty file, or one with an empty bindings table, is the defaults.
    assert_eq!(parse("").unwrap(), map);
    assert_eq!(parse("[bindings]\n").unwrap(), map);
}

#[test]
fn every_action_has_a_name_the_file_can_use() {
    let map = Keymap::default();
    assert_eq!(Action::RetryFailed.name(), "retry_failed");
    assert_eq!(Action::Quit.name(), "quit");
    for name in map.action_names() {
        assert_eq!(map.action_named(&name).unwrap().name(), name);
    }
}

#[test]
fn a_remap_replaces_the_actions_keys() {
    let map = parse("[bindings]\nretry_failed = \"F\"\ncancel = [\"x\", \"delete\"]\n").unwrap();
    assert_eq!(
        map.action_for(View::Jobs, &key('F')),
        Some(Action::RetryFailed)
    );
    assert_eq!(map.action_for(View::Jobs, &key('R')), None);
    assert_eq!(map.action_for(View::Jobs, &key('x')), Some(Action::Cancel));
    assert_eq!(
        map.action_for(
            View::Detail,
            &KeyEvent::new(KeyCode::Delete, KeyModifiers::NONE)
        ),
        Some(Action::Cancel)
    );
    assert_eq!(map.action_for(View::Jobs, &key('c')), None);
    assert_eq!(map.describe(View::Jobs, Action::Cancel), "x (cancel)");
    let help = map.help_for(View::Jobs);
    let cancel = help.iter().find(|b| b.action == Action::Cancel).unwrap();
    assert_eq!(cancel.label, "x Del");
    // Every row of an action is remapped: both of Logs' rows.
    let map = parse("[bindings]\nlogs = \"ctrl-l\"\n").unwrap();
    for view in [View::Jobs, View::Detail] {
        assert_eq!(map.action_for(view, &ctrl('l')), Some(Action::Logs));
        assert_eq!(map.action_for(view, &key('l')), None);
    }
}

#[test]
fn an_empty_list_unbinds() {
    let map = parse("[bindings]\ncancel = []\n").unwrap();
    assert_eq!(map.action_for(View::Jobs, &key('c')), None);
    assert_eq!(map.describe(View::Jobs, Action::Cancel), "cancel");
}

#[test]
fn a_conflict_is_refused_naming_the_key_both_actions_and_the_view() {
    let err = parse("[bindings]\ncancel = \"x\"\nmark = \"x\"\n").unwrap_err();
    assert_eq!(
        err,
        "keys.toml: \"x\" is bound to both mark and cancel in the jobs view"
    );
    // A key a default still holds: `l` is the logs key in the jobs view.
    let err = parse("[bindings]\nsort_next = \"l\"\n").unwrap_err();
    assert!(err.contains("\"l\""), "{err}");
    assert!(err.contains("logs") && err.contains("sort_next"), "{err}");
    // The same key in views that never meet is fine: x is context in the logs view only.
    parse("[bindings]\ncancel = \"x\"\n").unwrap();
}

#[test]
fn reserved_keys_stay_and_cannot_be_taken() {
    let err = parse("[bindings]\ncancel = \"esc\"\n").unwrap_err();
    assert!(err.contains("line 2: bindings.cancel"), "{err}");
    assert!(err.contains("\"esc\" is kept for back"), "{err}");
    let err = parse("[bindings]\nmark = \"ctrl-c\"\n").unwrap_err();
    assert!(err.contains("kept for quit"), "{err}");
    // Remapping help or quit keeps ? and Ctrl-C with them.
    let map = parse("[bindings]\nhelp = \"h\"\nquit = []\n").unwrap();
    assert_eq!(map.action_for(View::Tenants, &key('h')), Some(Action::Help));
    assert_eq!(map.action_for(View::Tenants, &key('?')), Some(Action::Help));
    assert_eq!(
        map.action_for(View::Tenants, &ctrl('c')),
        Some(Action::Quit)
    );
    assert_eq!(map.action_for(View::Tenants, &key('q')), None);
}

#[test]
fn unknown_actions_and_keys_are_named() {
    let err = parse("[bindings]\n\nfrobnicate = \"z\"\n").unwrap_err();
    assert!(
        err.starts_with("keys.toml line 3: bindings.frobnicate: unknown action \"frobnicate\""),
        "{err}"
    );
    assert!(err.contains("retry_failed"), "{err}");
    let err = parse("[bindings]\ncancel = [\"x\", \"ctrl-\"]\n").unwrap_err();
    assert!(
        err.contains("bindings.cancel: cannot read the key \"ctrl-\""),
        "{err}"
    );
    let err = parse("[bindings]\ncancel = 3\n").unwrap_err();
    assert!(err.contains("bindings.cancel: expected a key"), "{err}");
    let err = parse("mouse = \"yes\"\n").unwrap_err();
    assert!(
        err.starts_with("keys.toml:") && err.contains("mouse"),
        "{err}"
    );
    let err = parse("colour = 1\n").unwrap_err();
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn keys_read_and_spell_alike() {
    for text in [
        "a",
        "F",
        "space",
        "ctrl-r",
        "enter",
        "esc",
        "tab",
        "backspace",
        "up",
        "down",
        "left",
        "right",
        "pageup",
        "pagedown",
        "home",
        "end",
        "delete",
        "f1",
        "f12",
    ] {
        let key = parse_key(text).unwrap();
        assert_eq!(key_spelling(key), text);
    }
    assert_eq!(parse_key("Ctrl-R"), Some(Key::Ctrl('r')));
    assert_eq!(parse_key("PageDown"), Some(Key::Code(KeyCode::PageDown)));
    for bad in ["", "ctrl-", "ctrl-ab", "f13", "f0", "hyper"] {
        assert_eq!(parse_key(bad), None, "{bad}");
    }
    assert_eq!(key_label(Key::Ctrl('r')), "Ctrl-R");
}

#[test]
fn the_file_turns_the_mouse_on() {
    assert!(!Keymap::default().mouse);
    assert!(parse("mouse = true\n").unwrap().mouse);
}
