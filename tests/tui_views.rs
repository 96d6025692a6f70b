//! Every console view drawn on ratatui's TestBackend at 80x24 and 120x40 with fixed data and
//! a fake clock (insta snapshots), plus the colours of key cells, which text cannot show.

use std::sync::Arc;

use avesa_console::tui::app::{App, Route};
use avesa_console::tui::fixtures;
use avesa_console::tui::keymap::Keymap;
use avesa_console::tui::{Msg, Theme, update, views};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

fn keys(app: &mut App, keys: &str) {
    for c in keys.chars() {
        let code = match c {
            '\n' => KeyCode::Enter,
            '\t' => KeyCode::Tab,
            '→' => KeyCode::Right,
            c => KeyCode::Char(c),
        };
        update(app, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
    }
}

fn draw(app: &App, w: u16, h: u16) -> Buffer {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| views::render(f, app)).unwrap();
    term.backend().buffer().clone()
}

fn text(buf: &Buffer) -> String {
    let area = buf.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        for x in 0..area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A demo console at `w` x `h` after `setup` keys.
fn console(theme: Theme, w: u16, h: u16, setup: &str) -> App {
    let mut app = fixtures::app(theme);
    update(
        &mut app,
        Msg::Resize {
            width: w,
            height: h,
        },
    );
    keys(&mut app, setup);
    app.status = None;
    app
}

fn snapshot_each_size(name: &str, setup: &str) {
    for (w, h) in SIZES {
        let app = console(Theme::default(), w, h, setup);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), text(&draw(&app, w, h)));
    }
}

#[test]
fn tenants_view() {
    snapshot_each_size("tenants", "");
}

#[test]
fn jobs_view() {
    snapshot_each_size("jobs", ":jobs\n");
}

/// At 200 columns the jobs table has room for each run's duration, start and end, then the
/// tenant and service, and gives the rest to the ids.
#[test]
fn jobs_view_with_run_history_at_200_columns() {
    let (w, h) = (200, 50);
    let app = console(Theme::default(), w, h, ":jobs\n");
    let drawn = text(&draw(&app, w, h));
    insta::assert_snapshot!(format!("jobs_{w}x{h}"), drawn);
    for title in ["DURATION", "STARTED", "ENDED", "TENANT", "SERVICE"] {
        assert!(drawn.contains(title), "{title}:\n{drawn}");
    }
}

#[test]
fn job_detail_view_with_a_failed_chunk_selected() {
    snapshot_each_size("detail", ":jobs\n\nn");
}

/// The completed demo job's detail after its hand-off and a verification that found the
/// fifth tickets chunk two records short, with that chunk selected.
fn handed_off(theme: Theme, w: u16, h: u16) -> App {
    let mut app = console(theme, w, h, "");
    update(
        &mut app,
        Msg::Snapshot(Arc::new(fixtures::handed_off_snapshot())),
    );
    keys(&mut app, ":jobs\n");
    app.jobs.selected = app
        .job_rows
        .iter()
        .position(|&i| app.snap.jobs[i].job_id == "backfill_globex_connectwise_20250101")
        .unwrap();
    keys(&mut app, "\n→→→→");
    app.status = None;
    app
}

#[test]
fn job_detail_view_handed_off_and_verified() {
    for (w, h) in SIZES {
        let app = handed_off(Theme::default(), w, h);
        insta::assert_snapshot!(format!("detail_verified_{w}x{h}"), text(&draw(&app, w, h)));
    }
}

#[test]
fn logs_view_with_a_search() {
    snapshot_each_size("logs", ":logs\n/injected\n");
}

#[test]
fn health_view() {
    snapshot_each_size("health", ":health\n");
}

#[test]
fn pulse_view() {
    snapshot_each_size("pulse", ":pulse\n");
}

#[test]
fn help_overlay() {
    snapshot_each_size("help", ":jobs\n?");
}

#[test]
fn cancel_confirm() {
    snapshot_each_size("confirm", ":jobs\nc");
}

/// The demo console with tenant acme protected (`protected: true` in the registry), at
/// `w` x `h` after `setup` keys.
fn protected_console(w: u16, h: u16, setup: &str) -> App {
    let mut app = console(Theme::default(), w, h, "");
    let mut snap = (*app.snap).clone();
    let mut tenants = (*snap.tenants).clone();
    tenants[0].protected = true;
    snap.tenants = Arc::new(tenants);
    update(&mut app, Msg::Snapshot(Arc::new(snap)));
    keys(&mut app, setup);
    app.status = None;
    app
}

#[test]
fn a_protected_tenants_cancel_asks_for_its_id() {
    for (w, h) in SIZES {
        let app = protected_console(
            w,
            h,
            ":jobs
cacm",
        );
        let name = format!("protected_prompt_{w}x{h}");
        insta::assert_snapshot!(name, text(&draw(&app, w, h)));
    }
}

#[test]
fn protected_tenants_are_marked_in_the_tenants_view() {
    for (w, h) in SIZES {
        let app = protected_console(w, h, "");
        let name = format!("tenants_protected_{w}x{h}");
        insta::assert_snapshot!(name, text(&draw(&app, w, h)));
    }
}

#[test]
fn quit_question_while_the_consoles_jobs_run() {
    snapshot_each_size("quit", ":jobs\nq");
}

#[test]
fn a_bare_command_prompt_lists_the_commands() {
    snapshot_each_size("command_prompt", ":");
}

#[test]
fn tab_cycles_the_job_ids_of_job() {
    snapshot_each_size("command_job", ":job \t\t");
}

#[test]
fn trigger_form_with_its_plan_preview() {
    use avesa_console::tui::app::Mode;
    use avesa_console::tui::form::PreviewSummary;
    for (w, h) in SIZES {
        let mut app = console(
            Theme::default(),
            w,
            h,
            "t\t\ttickets\t2025-01-01\t2025-03-01",
        );
        if let Mode::Form(form) = &mut app.mode {
            form.preview = Some(Ok(PreviewSummary {
                window: "[2025-01-01T00:00:00Z, 2025-03-01T00:00:00Z)".into(),
                chunks: 2,
                tables: vec![("tickets".into(), 2)],
                api_calls: 2,
                duration_secs: Some(0.6),
                rate_per_minute: Some(200),
                first_windows: vec![
                    "[2025-01-01T00:00:00Z, 2025-01-31T00:00:00Z)".into(),
                    "[2025-01-31T00:00:00Z, 2025-03-01T00:00:00Z)".into(),
                ],
                quota: Some(
                    "≈ 1,240 API calls = 41 % of the 3,000 left today (share limit 50 %)".into(),
                ),
            }));
        }
        insta::assert_snapshot!(format!("form_{w}x{h}"), text(&draw(&app, w, h)));
    }
}

#[test]
fn read_only_is_shown_in_the_header() {
    let mut app = console(Theme::default(), 120, 40, "");
    app.read_only = true;
    let t = text(&draw(&app, 120, 40));
    assert!(t.lines().next().unwrap().contains("READ-ONLY"), "{t}");
    assert!(t.lines().last().unwrap().starts_with("read-only"), "{t}");
}

#[test]
fn cloud_mode_is_shown_in_the_header_and_its_logs_pane_asks_for_a_job() {
    let mut app = console(Theme::default(), 120, 40, ":logs\n");
    app.cloud = avesa_console::tui::app::CloudMode::On;
    app.logs = avesa_console::tui::logs::LogPane::new(100);
    app.logs.source_name = "CloudWatch Logs group /avesa/backfill".into();
    app.logs.per_job = true;
    let t = text(&draw(&app, 120, 40));
    assert!(t.lines().next().unwrap().contains("CLOUD"), "{t}");
    assert!(
        t.contains("Logs: CloudWatch Logs group /avesa/backfill"),
        "{t}"
    );
    assert!(t.contains("cloud logs are read one job at a time"), "{t}");
    let local = text(&draw(&console(Theme::default(), 120, 40, ""), 120, 40));
    assert!(!local.lines().next().unwrap().contains("CLOUD"), "{local}");
}

/// Cells whose symbol is `s`, with their position.
fn cells<'a>(
    buf: &'a Buffer,
    s: &'a str,
) -> impl Iterator<Item = (u16, u16, &'a ratatui::buffer::Cell)> + 'a {
    let area = buf.area;
    (0..area.height).flat_map(move |y| {
        (0..area.width).filter_map(move |x| {
            let c = &buf[(x, y)];
            (c.symbol() == s).then_some((x, y, c))
        })
    })
}

/// The first cell where `needle` starts on screen.
fn find(buf: &Buffer, needle: &str) -> Option<(u16, u16)> {
    let t = text(buf);
    t.lines().enumerate().find_map(|(y, line)| {
        line.find(needle)
            .map(|byte| (line[..byte].chars().count() as u16, y as u16))
    })
}

#[test]
fn a_failed_chunk_is_drawn_in_the_themes_error_colour() {
    for name in Theme::names() {
        let theme = Theme::built_in(name).unwrap();
        let app = console(theme.clone(), 120, 40, ":jobs\n\n");
        let buf = draw(&app, 120, 40);
        let failed: Vec<_> = cells(&buf, "✗").collect();
        // The heatmap's failed chunk and the legend.
        assert!(failed.len() >= 2, "{name}");
        for (x, y, c) in failed {
            assert_eq!(c.fg, theme.error, "{name}: ✗ at {x},{y}");
        }
        // The chunk table's "failed" status cell too.
        let (x, y) = find(&buf, "failed    1 ✗").unwrap();
        assert_eq!(buf[(x, y)].fg, theme.error, "{name}");
        // Done chunks in ok, the running one in running (the heatmap's row).
        let (_, y, _) = cells(&buf, "▶").next().unwrap();
        let row: Vec<_> = (0..120).map(|x| &buf[(x, y)]).collect();
        assert!(
            row.iter().any(|c| c.symbol() == "█" && c.fg == theme.ok),
            "{name}"
        );
        assert!(
            row.iter()
                .any(|c| c.symbol() == "▶" && c.fg == theme.running),
            "{name}"
        );
    }
}

#[test]
fn a_verification_mismatch_is_drawn_in_the_themes_error_colour() {
    for name in Theme::names() {
        let theme = Theme::built_in(name).unwrap();
        let app = handed_off(theme.clone(), 120, 40);
        let buf = draw(&app, 120, 40);
        // The tickets chunk #4: 252 landed of the 254 the source holds.
        let (x, y) = find(&buf, "252/254").unwrap();
        for dx in 0..7 {
            assert_eq!(
                buf[(x + dx, y)].fg,
                theme.selection_fg,
                "{name}: selected row"
            );
        }
        let (x, y) = find(&buf, "verified 01-15 11:58: 252 landed").unwrap();
        assert_eq!(buf[(x, y)].fg, theme.error, "{name}: the chunk's verdict");
        let (x, y) = find(&buf, "tickets ✗ 2 missing").unwrap();
        assert_eq!(buf[(x, y)].fg, theme.error, "{name}: the table's verdict");
        // A matching chunk in ok, one whose records moved since in warn.
        let (x, y) = find(&buf, "213/213").unwrap();
        assert_eq!(buf[(x, y)].fg, theme.ok, "{name}");
        let (x, y) = find(&buf, "time_entries ↻ 1 moved since").unwrap();
        assert_eq!(buf[(x, y)].fg, theme.warn, "{name}");
        // Off the cursor, the mismatch row's count is in the error colour too.
        let mut app = app;
        keys(&mut app, "→");
        let buf = draw(&app, 120, 40);
        let (x, y) = find(&buf, "252/254").unwrap();
        assert_eq!(buf[(x, y)].fg, theme.error, "{name}: the LANDED/SRC cell");
    }
    // NO_COLOR: no colour, the mark still reads.
    let app = handed_off(Theme::default().no_color(), 120, 40);
    let buf = draw(&app, 120, 40);
    assert!(text(&buf).contains("tickets ✗ 2 missing"));
    for c in buf.content() {
        assert_eq!(c.fg, Color::Reset, "{:?}", c.symbol());
    }
}

#[test]
fn status_colours_selection_and_search_matches() {
    let theme = Theme::default();
    let app = console(theme.clone(), 120, 40, ":jobs\n");
    let buf = draw(&app, 120, 40);
    let (x, y) = find(&buf, "completed (errors)").unwrap();
    assert_eq!(buf[(x, y)].fg, theme.warn);
    let (x, y) = find(&buf, "backfill_acme_connectwise_20240101").unwrap();
    assert_eq!(buf[(x, y)].bg, theme.selection_bg, "the selected row");
    let line = text(&buf).lines().nth(y as usize).unwrap().to_string();
    let x = line[..line.find("running").unwrap()].chars().count() as u16;
    assert_eq!(
        buf[(x, y)].fg,
        theme.selection_fg,
        "selection wins over the status colour"
    );

    let app = console(theme.clone(), 120, 40, ":logs\n/injected\n");
    let buf = draw(&app, 120, 40);
    let (x, y) = find(&buf, "Injected").unwrap();
    assert_eq!(buf[(x, y)].bg, theme.match_bg, "a match is highlighted");
    assert_eq!(buf[(x + 8, y)].bg, Color::Reset, "and only the match");

    let app = console(theme.clone(), 120, 40, ":health\n");
    let buf = draw(&app, 120, 40);
    let (x, y) = find(&buf, "OPEN").unwrap();
    assert_eq!(buf[(x, y)].fg, theme.error);
}

#[test]
fn no_color_draws_without_colours() {
    let theme = Theme::default().no_color();
    for setup in [
        "",
        ":jobs\n",
        ":jobs\n\n",
        ":logs\n/injected\n",
        ":health\n",
        ":pulse\n",
    ] {
        let app = console(theme.clone(), 120, 40, setup);
        let buf = draw(&app, 120, 40);
        for c in buf.content() {
            assert_eq!(
                (c.fg, c.bg),
                (Color::Reset, Color::Reset),
                "{setup:?}: {:?}",
                c.symbol()
            );
        }
    }
}

#[test]
fn the_route_stack_is_the_breadcrumb_trail() {
    let app = console(Theme::default(), 120, 40, "\n\nnl");
    assert_eq!(app.route(), &Route::Logs);
    let t = text(&draw(&app, 120, 40));
    let header = t.lines().next().unwrap();
    assert!(
        header.contains(
            "tenants › jobs acme/connectwise › backfill_acme_connectwise_20240101 › logs"
        ),
        "{header}"
    );
}

/// A job whose share of the API allocation is used up reads `waiting_for_quota` in the jobs
/// table (in the warning colour) and, in its detail, until when.
#[test]
fn a_job_waiting_for_its_quota_shows_it_with_the_time() {
    use avesa_console::domain::JobStatus;
    let theme = Theme::default();
    let mut app = console(theme.clone(), 120, 40, ":jobs\n");
    let running = app
        .snap
        .jobs
        .iter()
        .find(|j| j.status == JobStatus::Running)
        .unwrap()
        .job_id
        .clone();
    let until = chrono::DateTime::parse_from_rfc3339("2026-01-15T14:35:00Z")
        .unwrap()
        .to_utc();
    let mut snap = (*app.snap).clone();
    snap.quota_waits = Arc::new([(running.clone(), until)].into_iter().collect());
    app.snap = Arc::new(snap);
    let buf = draw(&app, 120, 40);
    let (x, y) = find(&buf, "waiting_for_quota").unwrap_or_else(|| panic!("{}", text(&buf)));
    assert!(
        text(&buf)
            .lines()
            .nth(y as usize)
            .unwrap()
            .contains(&running[..20])
    );
    // Its colour, seen with the selection (whose style hides it) on another row.
    let selected = buf[(x, y)].fg != theme.warn;
    if selected {
        keys(&mut app, "j");
    }
    let buf = draw(&app, 120, 40);
    let (x, y) = find(&buf, "waiting_for_quota").unwrap();
    assert_eq!(buf[(x, y)].fg, theme.warn, "{}", text(&buf));
    if selected {
        keys(&mut app, "k");
    }
    keys(&mut app, "\n");
    let t = text(&draw(&app, 120, 40));
    assert!(t.contains("waiting_for_quota until 14:35 UTC"), "{t}");
}

#[test]
fn describe_view_of_the_failed_chunk() {
    snapshot_each_size("describe", ":jobs\n\nnd");
}

#[test]
fn bang_from_the_tenants_view_opens_the_failure() {
    snapshot_each_size("failure", "!");
}

#[test]
fn health_view_after_the_alert_bar_is_acknowledged() {
    snapshot_each_size("health_acknowledged", ":health\na");
}

#[test]
fn the_alert_bar_and_the_header_show_a_running_jobs_failure() {
    for (w, h) in SIZES {
        let app = console(Theme::default(), w, h, "");
        let screen = text(&draw(&app, w, h));
        let lines: Vec<&str> = screen.lines().collect();
        assert!(lines[0].contains("✗ 1 chunk failing"), "{w}x{h}:\n{screen}");
        let bar = lines[lines.len() - 2];
        assert!(
            bar.starts_with("✗ chunk backfill_acme_connectwise_20240101/tickets#9 failed")
                && bar.ends_with("! open · a ack"),
            "{w}x{h}: {bar:?}"
        );
        // The tenants row of the job's service carries the mark too.
        assert!(screen.contains("✗ 1 failed"), "{w}x{h}:\n{screen}");
    }
}

/// Without colour a failed chunk still reads apart from a done one, and a bar fills only
/// once every chunk ended.
#[test]
fn no_color_bars_mark_failures_and_do_not_round_up() {
    let app = console(Theme::default().no_color(), 120, 40, ":jobs\n");
    let screen = text(&draw(&app, 120, 40));
    assert!(screen.contains("█████✗░░░░ 15/24"), "{screen}");
    assert!(screen.contains("█████████✗ 20/20"), "{screen}");
}

/// At 80 columns the hint line keeps "? help" and a long message ends in `…`.
#[test]
fn narrow_screens_cut_with_an_ellipsis_and_keep_help() {
    let app = console(Theme::default(), 80, 24, ":jobs\n");
    let screen = text(&draw(&app, 80, 24));
    let last = screen.lines().last().unwrap();
    assert!(last.ends_with("? help"), "{last:?}");
    assert!(last.contains('…'), "{last:?}");
    let mut app = app;
    app.set_status(avesa_console::tui::app::StatusKind::Info, "x".repeat(200));
    let screen = text(&draw(&app, 80, 24));
    assert!(screen.lines().last().unwrap().ends_with('…'));
}

/// A `keys.toml` that moves the job actions and the alert bar's keys.
const REMAP: &str = r#"
[bindings]
resume = "ctrl-r"
retry_failed = "F"
cancel = ["x", "delete"]
open_failure = "f1"
acknowledge = "A"
"#;

/// Remapped keys show their new keys in the hint line, the alert bar and `?` help.
#[test]
fn hints_and_help_with_remapped_keys() {
    for (w, h) in SIZES {
        let mut app = console(Theme::default(), w, h, "");
        app.keymap = Keymap::parse("keys.toml", REMAP).unwrap();
        keys(&mut app, ":jobs\n");
        app.status = None;
        let screen = text(&draw(&app, w, h));
        let lines: Vec<&str> = screen.lines().collect();
        let (bar, hint) = (lines[lines.len() - 2], lines[lines.len() - 1]);
        assert!(hint.contains("Ctrl-R F x p"), "{hint:?}");
        assert!(hint.ends_with("? help"), "{hint:?}");
        assert!(bar.ends_with("F1 open · A ack"), "{bar:?}");
        insta::assert_snapshot!(format!("hints_remapped_{w}x{h}"), screen);
        keys(&mut app, "?");
        let screen = text(&draw(&app, w, h));
        assert!(screen.contains("x Del  cancel"), "{screen}");
        assert!(screen.contains("F  retry failed chunks only"), "{screen}");
        insta::assert_snapshot!(format!("help_remapped_{w}x{h}"), screen);
    }
}
