//! The keys in effect: the default table (`action::BINDINGS`) with the remaps of `keys.toml`
//! in the configuration folder laid over it. The key handler, the `?` help, every view's hint
//! line and the status messages that name a key all read this one map, so a remapped key shows
//! its new key everywhere.
//!
//! ```toml
//! mouse = true                 # click selects a row, the wheel scrolls (as --mouse)
//! [bindings]
//! retry_failed = "F"           # one key or a list: ["F", "ctrl-r"]
//! cancel = ["x", "delete"]     # an empty list unbinds
//! ```
//!
//! Action names are the snake_case of `Action`'s variants. A remap replaces the action's
//! default keys in every view the action has. The reserved keys (`RESERVED`: `:` for commands,
//! so `:q` always quits, `?` help, `Esc` back, `Ctrl-C` quit) stay with their action whatever the
//! file says, and no other action may take them. Two actions that can fire in the same view on
//! the same key are refused, naming the key, both actions and the view. Errors name the file,
//! the line and the field.

use std::collections::BTreeMap;
use std::path::Path;

use crossterm::event::{KeyCode, KeyEvent};
use serde::Deserialize;

use super::action::{Action, BINDINGS, Binding, Key};
use super::view::View;

/// The file, in the configuration folder.
pub const KEYS_FILE: &str = "keys.toml";

/// Keys that keep their action: the ways out and the ways to find the others.
pub const RESERVED: &[(Key, Action)] = &[
    (Key::Char(':'), Action::CommandMode),
    (Key::Char('?'), Action::Help),
    (Key::Code(KeyCode::Esc), Action::Back),
    (Key::Ctrl('c'), Action::Quit),
];

/// The named keys a file may use, as it spells them and as help shows them.
const NAMED: &[(&str, KeyCode, &str)] = &[
    ("enter", KeyCode::Enter, "Enter"),
    ("esc", KeyCode::Esc, "Esc"),
    ("tab", KeyCode::Tab, "Tab"),
    ("backtab", KeyCode::BackTab, "S-Tab"),
    ("backspace", KeyCode::Backspace, "Bksp"),
    ("up", KeyCode::Up, "↑"),
    ("down", KeyCode::Down, "↓"),
    ("left", KeyCode::Left, "←"),
    ("right", KeyCode::Right, "→"),
    ("pageup", KeyCode::PageUp, "PgUp"),
    ("pagedown", KeyCode::PageDown, "PgDn"),
    ("home", KeyCode::Home, "Home"),
    ("end", KeyCode::End, "End"),
    ("delete", KeyCode::Delete, "Del"),
    ("insert", KeyCode::Insert, "Ins"),
];

/// Function keys a file may name (`f1` ..).
const FUNCTION_KEYS: u8 = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeymapError(pub String);

/// A key from its spelling in `keys.toml`: one character, `space`, `ctrl-X`, a named key or
/// `f1`..`f12` (names in any case).
pub fn parse_key(text: &str) -> Option<Key> {
    let mut chars = text.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return Some(Key::Char(c));
    }
    let lower = text.to_ascii_lowercase();
    if lower == "space" {
        return Some(Key::Char(' '));
    }
    if let Some(rest) = lower.strip_prefix("ctrl-") {
        let mut cs = rest.chars();
        return match (cs.next(), cs.next()) {
            (Some(c), None) if c.is_ascii_graphic() => Some(Key::Ctrl(c)),
            _ => None,
        };
    }
    if let Some((_, code, _)) = NAMED.iter().find(|(n, _, _)| *n == lower) {
        return Some(Key::Code(*code));
    }
    let n: u8 = lower.strip_prefix('f')?.parse().ok()?;
    (1..=FUNCTION_KEYS)
        .contains(&n)
        .then_some(Key::Code(KeyCode::F(n)))
}

/// A key as `keys.toml` spells it (what `avesa-console keys` prints).
pub fn key_spelling(key: Key) -> String {
    match key {
        Key::Char(' ') => "space".into(),
        Key::Char(c) => c.to_string(),
        Key::Ctrl(c) => format!("ctrl-{c}"),
        Key::Code(KeyCode::F(n)) => format!("f{n}"),
        Key::Code(code) => NAMED
            .iter()
            .find(|(_, c, _)| *c == code)
            .map_or_else(|| format!("{code:?}"), |(n, _, _)| (*n).to_string()),
    }
}

/// A key as help and hints show it (`space`, `Ctrl-R`, `PgUp`, `↑`).
pub fn key_label(key: Key) -> String {
    match key {
        Key::Char(' ') => "space".into(),
        Key::Char(c) => c.to_string(),
        Key::Ctrl(c) => format!("Ctrl-{}", c.to_ascii_uppercase()),
        Key::Code(KeyCode::F(n)) => format!("F{n}"),
        Key::Code(code) => NAMED
            .iter()
            .find(|(_, c, _)| *c == code)
            .map_or_else(|| format!("{code:?}"), |(_, _, l)| (*l).to_string()),
    }
}

/// One row of the map in effect: a row of the default table with its keys as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyBinding {
    pub keys: Vec<Key>,
    /// How help writes the keys: the table's own label unless remapped.
    pub label: String,
    pub action: Action,
    pub help: &'static str,
    /// `None`: every view.
    pub views: Option<&'static [View]>,
}

impl KeyBinding {
    fn applies(&self, view: View) -> bool {
        self.views.is_none_or(|vs| vs.contains(&view))
    }
}

impl From<&Binding> for KeyBinding {
    fn from(b: &Binding) -> KeyBinding {
        KeyBinding {
            keys: b.keys.to_vec(),
            label: b.label.to_string(),
            action: b.action,
            help: b.help,
            views: b.views,
        }
    }
}

/// The console's key and mouse settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Keymap {
    bindings: Vec<KeyBinding>,
    /// `mouse = true` in the file: click-to-select and wheel scroll (`--mouse` does it too).
    pub mouse: bool,
}

impl Default for Keymap {
    fn default() -> Keymap {
        Keymap {
            bindings: BINDINGS.iter().map(KeyBinding::from).collect(),
            mouse: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    mouse: Option<bool>,
    #[serde(default)]
    bindings: BTreeMap<String, toml::Spanned<toml::Value>>,
}

/// The line of byte `offset` in `text`, from 1.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Keymap {
    /// `keys.toml` in `dir`; the defaults when there is none.
    pub fn load(dir: &Path) -> Result<Keymap, KeymapError> {
        let path = dir.join(KEYS_FILE);
        if !path.exists() {
            return Ok(Keymap::default());
        }
        Keymap::load_file(&path)
    }

    /// One keys file, named in errors by its path.
    pub fn load_file(path: &Path) -> Result<Keymap, KeymapError> {
        let file = path.display().to_string();
        let text = crate::config::read_small_file(path, crate::config::MAX_CONFIG_FILE_BYTES)
            .map_err(|e| KeymapError(format!("cannot read {file}: {e}")))?;
        Keymap::parse(&file, &text)
    }

    /// The defaults with `text`'s remaps laid over them; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Keymap, KeymapError> {
        let parsed: KeysFile = toml::from_str(text).map_err(|e| {
            KeymapError(format!(
                "{file}: {}",
                e.to_string().trim().replace('\n', " ")
            ))
        })?;
        let mut map = Keymap {
            mouse: parsed.mouse.unwrap_or(false),
            ..Keymap::default()
        };
        for (name, value) in &parsed.bindings {
            let at = format!(
                "{file} line {}: bindings.{name}",
                line_of(text, value.span().start)
            );
            let action = map.action_named(name).ok_or_else(|| {
                KeymapError(format!(
                    "{at}: unknown action \"{name}\" (actions: {})",
                    map.action_names().join(", ")
                ))
            })?;
            let keys = keys_of_value(&at, value.get_ref())?;
            map.remap(&at, action, keys)?;
        }
        map.check()
            .map_err(|e| KeymapError(format!("{file}: {}", e.0)))?;
        Ok(map)
    }

    /// Every action the table binds, once, in table order.
    fn actions(&self) -> Vec<Action> {
        let mut out: Vec<Action> = Vec::new();
        for b in &self.bindings {
            if !out.contains(&b.action) {
                out.push(b.action);
            }
        }
        out
    }

    pub fn action_names(&self) -> Vec<String> {
        self.actions().iter().map(|a| a.name()).collect()
    }

    fn action_named(&self, name: &str) -> Option<Action> {
        self.actions().into_iter().find(|a| a.name() == name)
    }

    /// Gives `action` exactly `keys` (its reserved key kept first) in every row it has.
    fn remap(&mut self, at: &str, action: Action, mut keys: Vec<Key>) -> Result<(), KeymapError> {
        for key in &keys {
            if let Some((_, owner)) = RESERVED.iter().find(|(k, a)| k == key && *a != action) {
                return Err(KeymapError(format!(
                    "{at}: \"{}\" is kept for {} (the keys : ? Esc Ctrl-C cannot be rebound)",
                    key_spelling(*key),
                    owner.name()
                )));
            }
        }
        if let Some((reserved, _)) = RESERVED.iter().find(|(_, a)| *a == action) {
            keys.retain(|k| k != reserved);
            keys.insert(0, *reserved);
        }
        let label = keys
            .iter()
            .map(|k| key_label(*k))
            .collect::<Vec<_>>()
            .join(" ");
        for b in self.bindings.iter_mut().filter(|b| b.action == action) {
            b.keys.clone_from(&keys);
            b.label.clone_from(&label);
        }
        Ok(())
    }

    /// Refuses two actions that can fire in the same view on the same key.
    pub fn check(&self) -> Result<(), KeymapError> {
        for (i, a) in self.bindings.iter().enumerate() {
            for b in self.bindings[i + 1..]
                .iter()
                .filter(|b| b.action != a.action)
            {
                let Some(key) = a.keys.iter().find(|k| b.keys.contains(k)) else {
                    continue;
                };
                let Some(view) = shared_view(a, b) else {
                    continue;
                };
                return Err(KeymapError(format!(
                    "\"{}\" is bound to both {} and {} in {view}",
                    key_spelling(*key),
                    a.action.name(),
                    b.action.name()
                )));
            }
        }
        Ok(())
    }

    /// The action of a key in a view (normal mode).
    pub fn action_for(&self, view: View, ev: &KeyEvent) -> Option<Action> {
        self.bindings
            .iter()
            .filter(|b| b.applies(view))
            .find(|b| b.keys.iter().any(|k| k.matches(ev)))
            .map(|b| b.action)
    }

    /// The bindings help lists for a view: each action once, the view's own meaning first.
    pub fn help_for(&self, view: View) -> Vec<&KeyBinding> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for b in self.bindings.iter().filter(|b| b.applies(view)) {
            if !seen.contains(&b.action) {
                seen.push(b.action);
                out.push(b);
            }
        }
        out
    }

    /// The keys of `action` in `view` (empty when unbound there).
    pub fn keys(&self, view: View, action: Action) -> &[Key] {
        self.bindings
            .iter()
            .find(|b| b.action == action && b.applies(view))
            .map_or(&[], |b| b.keys.as_slice())
    }

    /// The first key of `action` in `view`, as hints show it.
    pub fn key_label(&self, view: View, action: Action) -> Option<String> {
        self.keys(view, action).first().map(|k| key_label(*k))
    }

    /// The key and name status messages use: `r (resume)`, or just the name when unbound.
    pub fn describe(&self, view: View, action: Action) -> String {
        let title = action.title();
        match self.key_label(view, action) {
            Some(key) => format!("{key} ({title})"),
            None => title.to_string(),
        }
    }

    /// The map as text, one row per binding: the view(s), the keys as the file spells them,
    /// the action's name and what it does (`avesa-console keys`).
    pub fn render(&self) -> String {
        let mut out = format!("mouse = {}\n", self.mouse);
        for b in &self.bindings {
            let views = match b.views {
                None => "every view".to_string(),
                Some(vs) => vs.iter().map(|v| v.name()).collect::<Vec<_>>().join(", "),
            };
            let keys: Vec<String> = b.keys.iter().map(|k| key_spelling(*k)).collect();
            out.push_str(&format!(
                "{:<18} {:<22} {:<28} {}\n",
                b.action.name(),
                keys.join(" "),
                views,
                b.help
            ));
        }
        out
    }
}

/// Where two rows both apply: a view name for the message.
fn shared_view(a: &KeyBinding, b: &KeyBinding) -> Option<String> {
    match (a.views, b.views) {
        (None, None) => Some("every view".into()),
        (Some(vs), None) | (None, Some(vs)) => vs.first().map(|v| format!("the {} view", v.name())),
        (Some(x), Some(y)) => x
            .iter()
            .find(|v| y.contains(v))
            .map(|v| format!("the {} view", v.name())),
    }
}

/// A binding's value: one key or a list of them.
fn keys_of_value(at: &str, value: &toml::Value) -> Result<Vec<Key>, KeymapError> {
    let texts: Vec<&toml::Value> = match value {
        toml::Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    let mut keys = Vec::new();
    for v in texts {
        let Some(text) = v.as_str() else {
            return Err(KeymapError(format!(
                "{at}: expected a key or a list of keys, found {v}"
            )));
        };
        let key = parse_key(text).ok_or_else(|| {
            KeymapError(format!(
                "{at}: cannot read the key \"{text}\" (a character, space, ctrl-X, f1-f{FUNCTION_KEYS}, or one of {})",
                NAMED.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", ")
            ))
        })?;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

#[cfg(test)]
#[path = "keymap_tests.rs"]
mod tests;
