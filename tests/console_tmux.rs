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

/// The console on a fresh demo workspace in a tmux session of its own at 120x40, the
/// sandbox failing as `faults` (JSON) says; `env` are `NAME=value` settings for it. With
/// `shared`, the sandbox is a process of the test's own that every runner process of the
/// console shares (a fault that fails only once stays spent for the retry's runner).
fn start_console(
    fx: &Fixture,
    faults: &str,
    env: &[String],
    shared: bool,
) -> (Tmux, Option<SandboxProc>) {
    std::fs::create_dir_all(fx.workspace()).unwrap();
    let faults_file = fx.dir.path().join("faults.json");
    std::fs::write(&faults_file, faults).unwrap();
    let sandbox = shared.then(|| fx.start_sandbox(&["--faults", faults_file.to_str().unwrap()]));
    let source = match &sandbox {
        Some(s) => format!("--sandbox-url {}", s.url),
        None => format!("--sandbox-faults {}", faults_file.display()),
    };
    let command = format!(
        "{BIN} --workspace {} --config-dir {} {source}; echo console exited $?; sleep 600",
        fx.workspace().display(),
        fx.config_dir().display(),
    );
    let tmux = new_session(
        &format!("avesa-test-{}-{}", std::process::id(), env.len()),
        env,
        &command,
    );
    (tmux, sandbox)
}

/// Starts `command` under `env` (`NAME=value`) in a tmux session of its own at 120x40, on
/// server `socket`, with the variables that would point the console elsewhere unset.
fn new_session(socket: &str, env: &[String], command: &str) -> Tmux {
    let tmux = Tmux {
        socket: socket.to_string(),
        session: "console",
    };
    let mut args: Vec<&str> = vec![
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
    ];
    args.extend(env.iter().map(String::as_str));
    args.extend(["sh", "-c", command]);
    let started = tmux.run(&args);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    tmux
}

/// `t` on acme's ConnectWise: tickets from 2025-01-01 to 2025-04-01 in three 30-day windows,
/// confirmed; then the jobs view.
fn trigger_tickets(tmux: &Tmux, long: Duration) {
    tmux.wait_for("the tenants view", long, |s| {
        s.contains("Tenants (7)") && s.contains("acme") && s.contains("needs backfill")
    });
    tmux.keys(&["t"]);
    tmux.wait_for("the trigger form", long, |s| {
        s.contains("Trigger a backfill")
    });
    tmux.keys(&["Tab", "Tab"]);
    tmux.text("service/tickets");
    tmux.keys(&["Tab"]);
    tmux.text("2025-01-01");
    tmux.keys(&["Tab"]);
    tmux.text("2025-04-01");
    // Fixed 30-day windows (the fault is on the second one), not windows sized by counts.
    tmux.keys(&["Tab"]);
    tmux.text("30");
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
    tmux.keys(&[":"]);
    tmux.text("jobs");
    tmux.keys(&["Enter"]);
}

/// The second 30-day window of tickets fails: 400 is not worth a retry. `times` limits it.
fn tickets_fault(times: &str) -> String {
    format!(
        r#"{{"faults":[{{"path":"service/tickets","window_start":"2025-01-31T00:00:00Z","status":400,{times}
            "message":"Injected fault: tickets window 2025-01-31 is corrupt"}}]}}"#
    )
}

const JOB: &str = "backfill_acme_connectwise_20250101";
const FAULT_TEXT: &str = "Injected fault: tickets window 2025-01-31 is corrupt";

#[test]
fn console_triggers_a_backfill_and_shows_a_failed_chunks_logs() {
    if !tmux_available() {
        skip::skip(
            "console_triggers_a_backfill_and_shows_a_failed_chunks_logs",
            "tmux is not installed",
        );
        return;
    }
    let fx = Fixture::new();
    let (tmux, _) = start_console(&fx, &tickets_fault(""), &[], false);
    let long = Duration::from_secs(60);
    trigger_tickets(&tmux, long);

    // The jobs view: the job runs and ends; one chunk failed, so it is completed with errors.
    let job = JOB;
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
        s.contains(&format!("{job}/tickets#1 · d describes · l logs"))
    });
    tmux.keys(&["l"]);
    tmux.wait_for("the failed chunk's logs", long, |s| {
        s.contains("ERROR") && s.contains("chunk failed")
    });
    // The error is longer than the screen is wide: lines wrap by default.
    let logs = tmux.wait_for("the failed chunk's error text", long, |s| {
        unwrapped(s).contains(FAULT_TEXT)
    });
    assert!(logs.contains(&format!("chunk {job}/tickets#1")), "{logs}");
    assert!(
        !logs.contains("tickets#0") && !logs.contains("seq=0 "),
        "only chunk #1's lines: {logs}"
    );

    quit(&tmux, long);
}

/// `:quit` leaves cleanly.
fn quit(tmux: &Tmux, long: Duration) {
    tmux.keys(&[":"]);
    tmux.text("quit");
    tmux.keys(&["Enter"]);
    let end = tmux.wait_for("the console to exit", long, |s| {
        s.contains("console exited")
    });
    assert!(end.contains("console exited 0"), "{end}");
    assert!(!end.contains("panicked"), "{end}");
}

/// A failure one key away: `!` from the tenants, jobs, logs and health views describes the
/// failed chunk with its full error and the engine's next step; `y` copies the error through
/// OSC 52 (tmux keeps it as a paste buffer); `o` hands the chunk's logs to `$PAGER` and the
/// console comes back; `R` retries the chunk to success and the alert bar goes.
#[test]
fn bang_reaches_the_error_from_every_view_and_r_retries_it() {
    if !tmux_available() {
        skip::skip(
            "bang_reaches_the_error_from_every_view_and_r_retries_it",
            "tmux is not installed",
        );
        return;
    }
    let fx = Fixture::new();
    // The pager copies what it is given and exits at once.
    let paged = fx.dir.path().join("paged.txt");
    let pager = fx.dir.path().join("pager.sh");
    std::fs::write(
        &pager,
        format!("#!/bin/sh\ncat \"$1\" > {}\n", paged.display()),
    )
    .unwrap();
    let env = [format!("PAGER=sh {}", pager.display())];
    // Only the first request of the window fails: a retry succeeds.
    let (tmux, _sandbox) = start_console(&fx, &tickets_fault(r#""times":1,"#), &env, true);
    assert!(
        tmux.run(&["set", "-g", "set-clipboard", "on"])
            .status
            .success()
    );
    let long = Duration::from_secs(60);
    trigger_tickets(&tmux, long);
    tmux.wait_for("the alert bar", long, |s| {
        // Named by its chunk, or by its job while only the job's counters tell of it (the
        // chunk ran in a runner process whose events this console does not hear).
        s.contains(JOB) && s.contains(" failed") && s.contains("! open · a ack")
    });
    let described = |s: &str| {
        let text = unwrapped(s);
        text.contains(FAULT_TEXT)
            && text.contains("not retried: HTTP 400 is permanent; R retries")
            && text
                .contains("GET /v4_6_release/apis/3.0/service/tickets → HTTP 400 · request id sbx-")
    };
    for view in ["tenants", "jobs", "logs", "health"] {
        tmux.keys(&[":"]);
        tmux.text(view);
        tmux.keys(&["Enter"]);
        tmux.keys(&["!"]);
        tmux.wait_for(
            &format!("the failure described from {view}"),
            long,
            described,
        );
        tmux.keys(&["Escape"]);
    }
    // y: the error through OSC 52, which tmux keeps as its newest paste buffer.
    tmux.keys(&["!"]);
    tmux.wait_for("the failure described", long, described);
    tmux.keys(&["y"]);
    tmux.wait_for("the copy confirmed", long, |s| {
        s.contains("copied the error")
    });
    let buffer = String::from_utf8_lossy(&tmux.run(&["show-buffer"]).stdout).into_owned();
    assert!(buffer.contains(FAULT_TEXT), "{buffer:?}");
    assert!(
        buffer.starts_with("attempt 1/3, not retried: HTTP 400 is permanent"),
        "{buffer:?}"
    );
    // o: the chunk's log lines in the pager; the console is back after.
    tmux.keys(&["o"]);
    tmux.wait_for("the console back after the pager", long, |s| {
        s.contains("paged the log lines of")
    });
    let text = std::fs::read_to_string(&paged).unwrap();
    assert!(
        text.contains(&format!("# log lines of {JOB}/tickets#1")),
        "{text}"
    );
    assert!(text.contains("chunk failed"), "{text}");
    // R in the detail view under the description: the chunk runs again and succeeds.
    tmux.keys(&["Escape"]);
    tmux.keys(&["R"]);
    let done = tmux.wait_for("the retried job to complete", long, |s| {
        s.contains(&format!("Job {JOB}")) && s.contains("completed ") && !s.contains("(errors)")
    });
    assert!(
        !done.contains("! open · a ack"),
        "the alert bar went: {done}"
    );
    quit(&tmux, long);
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

/// `t`, then the form: acme's tickets from 2025-01-01 to `end` in fixed 30-day windows.
fn fill_trigger_form(tmux: &Tmux, end: &str) {
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
    new_session(
        &format!("avesa-test-{}{tag}", std::process::id()),
        &[],
        command,
    )
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
    fill_trigger_form(&tmux, "2025-03-02");
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
