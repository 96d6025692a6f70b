//! The console end to end: the real binary in tmux at 120x40 with the in-process sandbox,
//! driven by keys. It triggers a backfill from the form, waits for the job to finish,
//! verifies it and transforms its service, opens the logs of the chunk the sandbox failed
//! on purpose and finds its error text.
//!
//! Waits poll `capture-pane` for expected text; there is no fixed sleep.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// A tmux server of this test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
    session: &'static str,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(tmux_bin())
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.session];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success());
    }

    fn text(&self, text: &str) {
        assert!(
            self.run(&["send-keys", "-t", self.session, "-l", text])
                .status
                .success()
        );
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", self.session]).stdout)
            .into_owned()
    }

    /// Polls the screen until `ok` holds; fails with the last screen after `limit`.
    fn wait_for(&self, what: &str, limit: Duration, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < limit,
                "gave up waiting for {what} after {limit:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The screen's text with borders and line breaks turned into single spaces, so wrapped
/// lines read as one.
fn unwrapped(screen: &str) -> String {
    let joined = screen
        .lines()
        .map(|l| l.trim_matches(|c: char| c == '│' || c.is_whitespace()))
        .collect::<Vec<_>>()
        .join(" ");
    joined.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `tmux`, or the program `AVESA_TMUX` names (a missing one shows the skip path).
fn tmux_bin() -> String {
    std::env::var("AVESA_TMUX").unwrap_or_else(|_| "tmux".into())
}

fn tmux_available() -> bool {
    Command::new(tmux_bin())
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A workspace and the sandbox fault plan `faults`; `None` (the test skipped) without tmux.
fn workspace_with_faults(test: &str, faults: &str) -> Option<(Fixture, std::path::PathBuf)> {
    if !tmux_available() {
        skip::skip(test, "tmux is not installed");
        return None;
    }
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.workspace()).unwrap();
    let path = fx.dir.path().join("faults.json");
    std::fs::write(&path, faults).unwrap();
    Some((fx, path))
}

#[test]
fn console_triggers_a_backfill_and_shows_a_failed_chunks_logs() {
    // The second 30-day window of tickets fails for good: 400 is not worth a retry.
    let Some((fx, faults)) = workspace_with_faults(
        "console_triggers_a_backfill_and_shows_a_failed_chunks_logs",
        r#"{"faults":[{"path":"service/tickets","window_start":"2025-01-31T00:00:00Z","status":400,
            "message":"Injected fault: tickets window 2025-01-31 is corrupt"}]}"#,
    ) else {
        return;
    };
    let command = format!(
        "{BIN} --workspace {} --config-dir {} --sandbox-faults {}; echo console exited $?; sleep 600",
        fx.workspace().display(),
        fx.config_dir().display(),
        faults.display()
    );
    let tmux = tmux_session("", &command);
    let long = Duration::from_secs(60);

    // The console opens on the tenants of the demo workspace.
    tmux.wait_for("the tenants view", long, |s| {
        s.contains("Tenants (7)") && s.contains("acme") && s.contains("needs backfill")
    });

    // t: the form, preset to the selected tenant; fill in tables and dates.
    // Fixed 30-day windows (the fault is on the second one), not windows sized by counts.
    trigger_tickets(&tmux, "2025-04-01");
    let form = tmux.wait_for("the plan preview", long, |s| {
        s.contains("3 chunk(s): tickets 3")
    });
    assert!(
        form.contains("‹ acme ›") && form.contains("API calls"),
        "{form}"
    );
    tmux.keys(&["Enter"]);
    tmux.wait_for("the confirm", long, |s| {
        s.contains("Start the backfill of acme connectwise")
    });
    tmux.keys(&["y"]);

    // The jobs view: the job runs and ends; one chunk failed, so it is completed with errors.
    tmux.keys(&[":"]);
    tmux.text("jobs");
    tmux.keys(&["Enter"]);
    let job = "backfill_acme_connectwise_20250101";
    let jobs = tmux.wait_for("the job to complete", long, |s| {
        s.lines()
            .any(|l| l.contains(job) && l.contains("completed") && l.contains("3/3"))
    });
    assert!(
        jobs.lines()
            .any(|l| l.contains(job) && l.contains("(errors)")),
        "{jobs}"
    );

    // v: the ended job is verified against the sandbox's counts; the failed window's
    // records are missing. T: acme's ConnectWise canonical tables from what landed.
    tmux.keys(&["v"]);
    let verified = tmux.wait_for("the verification", long, |s| {
        s.contains(&format!("verified {job}:"))
    });
    assert!(
        verified.contains("missing in 1 of 3 chunk(s)"),
        "{verified}"
    );
    tmux.keys(&["T"]);
    tmux.wait_for("the transform", long, |s| {
        s.contains("transformed acme connectwise: ")
    });

    // Enter: the chunks (with landed/source counts now); n: the failed one; l: its logs,
    // with the error text.
    tmux.keys(&["Enter"]);
    tmux.wait_for("the job detail", long, |s| {
        s.contains("tickets: 3 chunk(s)") && s.contains("│tickets ") && s.contains("LANDED/SRC")
    });
    tmux.keys(&["n"]);
    tmux.wait_for("the failed chunk selected", long, |s| {
        s.contains(&format!("{job}/tickets#1 · l shows its logs"))
    });
    tmux.keys(&["l"]);
    tmux.wait_for("the failed chunk's logs", long, |s| {
        s.contains("ERROR") && s.contains("chunk failed")
    });
    // The error is longer than the screen is wide: w wraps it into view.
    tmux.keys(&["w"]);
    let logs = tmux.wait_for("the failed chunk's error text", long, |s| {
        unwrapped(s).contains("Injected fault: tickets window 2025-01-31 is corrupt")
    });
    assert!(logs.contains(&format!("chunk {job}/tickets#1")), "{logs}");
    assert!(
        !logs.contains("tickets#0") && !logs.contains("seq=0 "),
        "only chunk #1's lines: {logs}"
    );

    // :quit leaves cleanly.
    tmux.keys(&[":"]);
    tmux.text("quit");
    tmux.keys(&["Enter"]);
    let end = tmux.wait_for("the console to exit", long, |s| {
        s.contains("console exited")
    });
    assert!(end.contains("console exited 0"), "{end}");
    assert!(!end.contains("panicked"), "{end}");
}

/// `t`, then the form: acme's tickets from 2025-01-01 to `end` in fixed 30-day windows.
fn trigger_tickets(tmux: &Tmux, end: &str) {
    tmux.keys(&["t"]);
    tmux.wait_for("the trigger form", Duration::from_secs(60), |s| {
        s.contains("Trigger a backfill")
    });
    tmux.keys(&["Tab", "Tab"]);
    tmux.text("service/tickets");
    tmux.keys(&["Tab"]);
    tmux.text("2025-01-01");
    tmux.keys(&["Tab"]);
    tmux.text(end);
    tmux.keys(&["Tab"]);
    tmux.text("30");
}

/// Starts `command` in a tmux session of the test's own (`tag` names its socket) at 120x40.
fn tmux_session(tag: &str, command: &str) -> Tmux {
    let tmux = Tmux {
        socket: format!("avesa-test-{}{tag}", std::process::id()),
        session: "console",
    };
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        tmux.session,
        "-x",
        "120",
        "-y",
        "40",
        "env",
        "-u",
        "AVESA_WORKSPACE",
        "-u",
        "AVESA_CONFIG_DIR",
        "-u",
        "AVESA_SANDBOX_URL",
        "-u",
        "NO_COLOR",
        "sh",
        "-c",
        command,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    tmux
}

#[test]
fn quitting_leaves_a_triggered_job_running_and_a_new_console_attaches() {
    // Every tickets page is held back, so the job is still running when the console quits.
    let Some((fx, faults)) = workspace_with_faults(
        "quitting_leaves_a_triggered_job_running_and_a_new_console_attaches",
        r#"{"faults":[{"path":"service/tickets","kind":"slow","delay_ms":15000}]}"#,
    ) else {
        return;
    };
    let console = format!(
        "{BIN} --workspace {} --config-dir {} --sandbox-faults {}",
        fx.workspace().display(),
        fx.config_dir().display(),
        faults.display()
    );
    // The first console; then, after a line is typed, a second one on the same workspace.
    let tmux = tmux_session(
        "-bg",
        &format!(
            "{console}; echo console exited $?; read next; {console}; echo second exited $?; sleep 600"
        ),
    );
    let long = Duration::from_secs(60);
    tmux.wait_for("the tenants view", long, |s| s.contains("Tenants (7)"));
    trigger_tickets(&tmux, "2025-03-02");
    tmux.wait_for("the plan preview", long, |s| {
        s.contains("2 chunk(s): tickets 2")
    });
    tmux.keys(&["Enter"]);
    tmux.wait_for("the confirm", long, |s| s.contains("Start the backfill"));
    tmux.keys(&["y"]);
    tmux.keys(&[":"]);
    tmux.text("jobs");
    tmux.keys(&["Enter"]);
    let job = "backfill_acme_connectwise_20250101";
    tmux.wait_for("the job running", long, |s| {
        s.lines().any(|l| l.contains(job) && l.contains("running"))
    });

    // q asks, and says the job keeps running; y quits and the runner process goes on.
    tmux.keys(&["q"]);
    let asked = tmux.wait_for("the quit question", long, |s| s.contains("Quit?"));
    let asked = unwrapped(&asked);
    assert!(
        asked.contains(&format!("1 job keeps running in the background: {job}")),
        "{asked}"
    );
    tmux.keys(&["y"]);
    let end = tmux.wait_for("the console to exit", long, |s| {
        s.contains("console exited")
    });
    assert!(end.contains("console exited 0"), "{end}");
    assert!(
        end.contains("1 job(s) keep running in the background") && end.contains(job),
        "{end}"
    );
    let store = fx.workspace().join("runners").join(format!("{job}.pid"));
    assert!(store.exists(), "the runner's pid file: {}", store.display());

    // A new console attaches through the store: the job progresses, then completes.
    tmux.keys(&["Enter"]);
    tmux.wait_for("the second console", long, |s| s.contains("Tenants (7)"));
    tmux.keys(&[":"]);
    tmux.text("job ");
    tmux.keys(&["Tab"]);
    tmux.wait_for("the job id completed", long, |s| {
        s.contains(&format!(":job {job}"))
    });
    tmux.keys(&["Enter"]);
    tmux.wait_for("the job still running, in its runner process", long, |s| {
        s.contains("tickets: 2 chunk(s)") && s.contains("running")
    });
    tmux.keys(&["Escape"]);
    tmux.wait_for("the job to complete", Duration::from_secs(120), |s| {
        s.lines()
            .any(|l| l.contains(job) && l.contains("completed") && l.contains("2/2"))
    });
    // Nothing of this console's own runs: q quits at once.
    tmux.keys(&["q"]);
    let end = tmux.wait_for("the second console to exit", long, |s| {
        s.contains("second exited")
    });
    assert!(end.contains("second exited 0"), "{end}");
    assert!(!end.contains("panicked"), "{end}");
}
