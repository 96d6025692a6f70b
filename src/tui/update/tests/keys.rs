//! `keys.toml` remaps and the mouse, through `update`: a remapped key does what the old one
//! did and the old one nothing; clicks select the row drawn under them, the wheel scrolls,
//! and with the mouse off (the default) mouse events change nothing.

use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::*;
use crate::tui::keymap::Keymap;

fn remapped(text: &str) -> App {
    let mut a = app();
    a.keymap = Keymap::parse("keys.toml", text).unwrap();
    a
}

#[test]
fn a_remapped_key_triggers_its_action_and_the_old_key_no_longer_does() {
    let mut a = remapped("[bindings]\nretry_failed = \"F\"\n");
    jobs_at(&mut a, WITH_ERRORS);
    assert!(ch(&mut a, 'R').is_empty());
    assert_eq!(
        status(&a),
        "R: no action in the jobs view (? lists the keys)"
    );
    assert_eq!(
        job_cmd(&ch(&mut a, 'F')),
        vec![Command::RetryFailed {
            job_id: WITH_ERRORS.into()
        }]
    );
    // Messages name the key in effect.
    jobs_at(&mut a, COMPLETED);
    assert!(ch(&mut a, 'F').is_empty());
    assert_eq!(
        status(&a),
        format!("F: job {COMPLETED} has no failed chunks")
    );
}

fn mouse(a: &mut App, kind: MouseEventKind, column: u16, row: u16) -> Vec<Effect> {
    update(
        a,
        Msg::Mouse(MouseEvent {
            kind,
            column,
            row,
            modifiers: KeyModifiers::NONE,
        }),
    )
}

fn click(a: &mut App, column: u16, row: u16) {
    mouse(a, MouseEventKind::Down(MouseButton::Left), column, row);
}

/// The first screen row on which the console draws every one of `texts`.
fn drawn_with(a: &App, texts: &[&str]) -> u16 {
    let mut term = Terminal::new(TestBackend::new(a.width, a.height)).unwrap();
    term.draw(|f| crate::tui::views::render(f, a)).unwrap();
    let buf = term.backend().buffer();
    (0..a.height)
        .find(|&y| {
            let line: String = (0..a.width).map(|x| buf[(x, y)].symbol()).collect();
            texts.iter().all(|t| line.contains(t))
        })
        .unwrap_or_else(|| panic!("{texts:?} not on screen"))
}

fn drawn_at(a: &App, text: &str) -> u16 {
    drawn_with(a, &[text])
}

fn selected_job_id(a: &App) -> String {
    a.selected_job().unwrap().job_id.clone()
}

#[test]
fn a_click_selects_the_row_drawn_under_it() {
    for (w, h) in [(80, 24), (120, 40)] {
        let mut a = app();
        a.keymap.mouse = true;
        update(
            &mut a,
            Msg::Resize {
                width: w,
                height: h,
            },
        );
        jobs_at(&mut a, RUNNING);
        let y = drawn_at(&a, PAUSED);
        click(&mut a, 10, y);
        assert_eq!(selected_job_id(&a), PAUSED, "{w}x{h}");
        // The column titles and the border are no row.
        let before = a.jobs.selected;
        click(&mut a, 10, 2);
        click(&mut a, 0, y);
        assert_eq!(a.jobs.selected, before, "{w}x{h}");
    }
}

#[test]
fn a_click_selects_a_tenant_and_a_chunk() {
    let mut a = app();
    a.keymap.mouse = true;
    let row = &a.tenant_rows[2];
    let label = row.display_name.clone();
    let (tenant, service) = (row.tenant_id.clone(), row.service);
    let y = drawn_with(&a, &[&label, &service.to_string()]);
    click(&mut a, 5, y);
    let sel = &a.tenant_rows[a.tenants.selected];
    assert_eq!((sel.tenant_id.clone(), sel.service), (tenant, service));
    detail(&mut a);
    let y = drawn_at(&a, "SEQ") + 3;
    click(&mut a, 3, y);
    assert_eq!(a.detail_chunk, 2);
}

#[test]
fn the_wheel_scrolls() {
    let mut a = app();
    a.keymap.mouse = true;
    jobs_at(&mut a, RUNNING);
    let at = a.jobs.selected;
    mouse(&mut a, MouseEventKind::ScrollDown, 10, 10);
    assert_eq!(a.jobs.selected, at + 1);
    mouse(&mut a, MouseEventKind::ScrollUp, 10, 10);
    assert_eq!(a.jobs.selected, at);
    detail(&mut a);
    let chunk = a.detail_chunk;
    mouse(&mut a, MouseEventKind::ScrollDown, 10, 10);
    assert_eq!(a.detail_chunk, chunk + 1);
}

#[test]
fn with_the_mouse_off_mouse_events_change_nothing() {
    let mut a = app();
    assert!(!a.keymap.mouse);
    jobs_at(&mut a, RUNNING);
    let y = drawn_at(&a, PAUSED);
    let at = a.jobs.selected;
    a.dirty = false;
    click(&mut a, 10, y);
    mouse(&mut a, MouseEventKind::ScrollDown, 10, 10);
    assert_eq!(a.jobs.selected, at);
    assert!(!a.dirty);
}
