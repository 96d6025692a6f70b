//! Mouse input, when `--mouse` or `mouse = true` in `keys.toml` turned capture on: a left
//! click selects the row under it in the list views (tenants, jobs, the detail view's chunks,
//! the health view's budgets), the wheel scrolls. Clicks and the wheel move the cursor the way
//! the keys do; with the mouse off, or while a prompt or overlay is open, they do nothing.

use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};

use super::{Effect, actions};
use crate::tui::action::Action;
use crate::tui::app::{App, Mode, View};
use crate::tui::views;

pub(super) fn on_mouse(app: &mut App, ev: MouseEvent) -> Vec<Effect> {
    if !app.keymap.mouse || app.mode != Mode::Normal {
        return Vec::new();
    }
    // The detail view scrolls through the selected table's chunks, others their rows.
    let (back, forth) = match app.view() {
        View::Detail => (Action::Left, Action::Right),
        _ => (Action::Up, Action::Down),
    };
    let effects = match ev.kind {
        MouseEventKind::ScrollUp => actions::perform(app, back),
        MouseEventKind::ScrollDown => actions::perform(app, forth),
        MouseEventKind::Down(MouseButton::Left) => match views::row_at(app, ev.column, ev.row) {
            Some(i) => actions::select(app, i),
            None => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    app.dirty = true;
    effects
}
