//! The real terminal: raw mode and the alternate screen on entry, and their undoing on exit,
//! on error and on panic, so a crash never leaves the operator's shell unusable.

use std::io::{self, Stdout};

use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::terminal::{
    Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

pub type Tui = Terminal<CrosstermBackend<Stdout>>;

/// Whether the console holds the screen (raw mode, alternate screen).
static HELD: AtomicBool = AtomicBool::new(false);
/// Whether the console captures the mouse while it holds the screen (`--mouse`).
static MOUSE: AtomicBool = AtomicBool::new(false);

/// The alternate screen and, when asked for, mouse capture.
fn take_screen(out: &mut Stdout) -> io::Result<()> {
    execute!(out, EnterAlternateScreen, cursor::Hide)?;
    if MOUSE.load(Ordering::SeqCst) {
        execute!(out, EnableMouseCapture)?;
    }
    Ok(())
}

/// Puts the terminal back as the shell expects it. Safe to call more than once: only the
/// first call after `enter` or `resume` touches the screen. The alternate screen is cleared
/// before it is left, so a terminal (or tmux pane) that kept it after a resize shows no
/// stale frame over the shell.
pub fn restore() -> io::Result<()> {
    if !HELD.swap(false, Ordering::SeqCst) {
        return Ok(());
    }
    let _ = disable_raw_mode();
    execute!(
        io::stdout(),
        Clear(ClearType::All),
        LeaveAlternateScreen,
        DisableMouseCapture,
        cursor::Show
    )
}

/// Restores the terminal before the previous panic hook prints the message, so it is
/// readable and the shell is usable afterwards.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = restore();
        previous(info);
    }));
}

/// Restores the terminal when dropped: on return, on `?` and on unwinding.
pub struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = restore();
    }
}

/// The OSC 52 sequence that sets the clipboard to `text`: terminals (and tmux with
/// `set-clipboard on`, the default `external` too) take it from the program's output, so it
/// reaches the operator's own clipboard over SSH.
pub fn osc52(text: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    format!("\x1b]52;c;{encoded}\x07")
}

/// Copies `text` to the clipboard through the terminal (OSC 52).
pub fn copy(text: &str) -> io::Result<()> {
    use std::io::Write as _;
    let mut out = io::stdout();
    out.write_all(osc52(text).as_bytes())?;
    out.flush()
}

/// Gives the screen back to the shell for a while (`$PAGER`): raw mode off, main screen.
pub fn suspend() -> io::Result<()> {
    restore()
}

/// Takes the screen again after `suspend`.
pub fn resume(term: &mut Tui) -> io::Result<()> {
    HELD.store(true, Ordering::SeqCst);
    enable_raw_mode()?;
    take_screen(&mut io::stdout())?;
    term.clear()
}

/// Shows `text` in `pager` (a shell command line, e.g. `less -R`): the text goes to a
/// temporary file, removed after, whose path is the command's last argument.
pub fn page(pager: &str, title: &str, text: &str) -> io::Result<std::process::ExitStatus> {
    use std::io::Write as _;
    let mut file = tempfile::Builder::new()
        .prefix("avesa-console-")
        .suffix(".log")
        .tempfile()?;
    writeln!(file, "# log lines of {title}")?;
    file.write_all(text.as_bytes())?;
    file.flush()?;
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{pager} \"$1\""))
        .arg("sh")
        .arg(file.path())
        .status()
}

/// The pager the operator chose: `$PAGER`, else `less`.
pub fn pager_command() -> String {
    std::env::var("PAGER")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "less".into())
}

/// Enters raw mode and the alternate screen, capturing the mouse when `mouse` (clicks and
/// the wheel then come as events; `restore` and `suspend` give the mouse back).
pub fn enter(mouse: bool) -> io::Result<(Tui, Guard)> {
    install_panic_hook();
    HELD.store(true, Ordering::SeqCst);
    MOUSE.store(mouse, Ordering::SeqCst);
    enable_raw_mode()?;
    let guard = Guard;
    let mut out = io::stdout();
    take_screen(&mut out)?;
    let terminal = Terminal::new(CrosstermBackend::new(out))?;
    Ok((terminal, guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn osc52_carries_the_text_in_base64() {
        assert_eq!(osc52("HTTP 400"), "\x1b]52;c;SFRUUCA0MDA=\x07");
    }

    #[test]
    fn the_pager_gets_the_text_in_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("paged.txt");
        // A pager that copies what it is given, as the tmux test's does.
        let script = dir.path().join("pager.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\ncat \"$1\" > {}\n", out.display()),
        )
        .unwrap();
        let status = page(&format!("sh {}", script.display()), "job j", "line one\n").unwrap();
        assert!(status.success());
        let paged = std::fs::read_to_string(&out).unwrap();
        assert_eq!(paged, "# log lines of job j\nline one\n");
    }
}
