//! Each refusal of the operations API reads the same from the CLI (stderr, exit 5) and from
//! the console (the handle's answer, shown in the status bar): both call `engine::ops`.

mod common;

use std::sync::Arc;

use avesa_console::config::Config;
use avesa_console::domain::Service;
use avesa_console::engine::handle::{Command, EngineHandle, HandleError, RefreshPolicy};
use avesa_console::engine::ops::Refusal;
use avesa_console::engine::{Engine, EngineOptions, NoSource, SourceProvider};
use avesa_console::sink::RawSink;
use avesa_console::sources::Source;
use avesa_console::store::SqliteStore;
use common::{Fixture, assert_ok, text, trigger_args};

struct NoSources;

impl SourceProvider for NoSources {
    fn source(&self, _: &str, service: Service) -> Result<Arc<dyn Source>, NoSource> {
        Err(NoSource::new(format!(
            "{service}: nothing runs in this test"
        )))
    }
}

/// The console's answer to `command` over the fixture's workspace.
fn console_says(fx: &Fixture, command: Command) -> Result<String, HandleError> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = Arc::new(Config::load(&fx.config_dir()).unwrap());
        let store = Arc::new(SqliteStore::open(&fx.workspace().join("state.db")).unwrap());
        let engine = Engine::new(
            config.clone(),
            store.clone(),
            store,
            RawSink::local(&fx.data_dir()).unwrap(),
            Arc::new(NoSources),
            EngineOptions::default(),
        );
        let h = EngineHandle::spawn(engine, config, RefreshPolicy::default());
        h.send(command).await
    })
}

/// The CLI's refusal: exit 5 and `refused: …` on stderr.
fn cli_refusal(fx: &Fixture, args: &[&str]) -> String {
    let out = fx.cli(None, args);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    err.trim()
        .strip_prefix("refused: ")
        .unwrap_or_else(|| panic!("no refusal on stderr: {}", text(&out)))
        .to_string()
}

#[test]
fn every_refusal_reads_the_same_from_the_cli_and_the_console() {
    let fx = Fixture::new();
    const PENDING: &str = "backfill_acme_connectwise_20250101";
    const CANCELLED: &str = "backfill_acme_connectwise_20250201";
    for start in ["2025-01-01", "2025-02-01"] {
        assert_ok(&fx.cli(
            None,
            &trigger_args("acme", Some("tickets"), start, Some("2025-03-01"), &[]),
        ));
    }
    assert_ok(&fx.cli(None, &["cancel", CANCELLED]));
    let job = |id: &str| id.to_string();
    let cases: Vec<(Vec<&str>, Command)> = vec![
        (
            vec!["resume", CANCELLED],
            Command::Resume {
                job_id: job(CANCELLED),
            },
        ),
        (
            vec!["cancel", CANCELLED],
            Command::Cancel {
                job_id: job(CANCELLED),
            },
        ),
        (
            vec!["pause", CANCELLED],
            Command::Pause {
                job_id: job(CANCELLED),
            },
        ),
        (
            vec!["unpause", PENDING],
            Command::Unpause {
                job_id: job(PENDING),
            },
        ),
        (
            vec!["resume", PENDING, "--retry-failed"],
            Command::RetryFailed {
                job_id: job(PENDING),
            },
        ),
    ];
    for (args, command) in cases {
        let cli = cli_refusal(&fx, &args);
        let console = match console_says(&fx, command) {
            Err(HandleError::Refused(r)) => {
                assert!(r.is_refusal(), "{r:?}");
                r.to_string()
            }
            other => panic!("{args:?}: the console did not refuse: {other:?}"),
        };
        assert_eq!(cli, console, "{args:?}");
    }
    // An unknown job is an error (exit 1) with the same words on both sides.
    let out = fx.cli(None, &["pause", "backfill_nobody"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let console = console_says(
        &fx,
        Command::Pause {
            job_id: job("backfill_nobody"),
        },
    );
    assert!(
        matches!(&console, Err(HandleError::Refused(Refusal::NotFound(_)))),
        "{console:?}"
    );
    let said = console.unwrap_err().to_string();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&said),
        "{said}\n{}",
        text(&out)
    );
}

/// The CLI's usage error: exit 2 and `error: …` on stderr.
fn cli_usage_error(fx: &Fixture, args: &[&str]) -> String {
    let out = fx.cli(None, args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

#[test]
fn a_protected_tenant_needs_its_id_confirmed_from_the_cli_and_the_console() {
    let fx = Fixture::new();
    fx.edit("tenants.json", |v| {
        v["tenants"][0]["protected"] = true.into()
    });
    const JOB: &str = "backfill_acme_connectwise_20250101";
    let trigger = trigger_args(
        "acme",
        Some("tickets"),
        "2025-01-01",
        Some("2025-03-01"),
        &[],
    );
    let said = cli_usage_error(&fx, &trigger);
    assert_eq!(
        said,
        "error: tenant acme is protected: pass --confirm-tenant acme to trigger a backfill of \
         connectwise"
    );
    // Nothing was stored.
    let status = fx.cli(None, &["status", "--job-id", JOB]);
    assert_ne!(status.status.code(), Some(0), "{}", text(&status));
    let wrong = [&trigger[..], &["--confirm-tenant", "globex"]].concat();
    assert!(cli_usage_error(&fx, &wrong).contains("--confirm-tenant 'globex' is not its id"));
    assert_ok(&fx.cli(
        None,
        &[&trigger[..], &["--confirm-tenant", "acme"]].concat(),
    ));
    for verb in ["pause", "cancel"] {
        let said = cli_usage_error(&fx, &[verb, JOB]);
        assert_eq!(
            said,
            format!("error: tenant acme is protected: pass --confirm-tenant acme to {verb} {JOB}")
        );
    }
    let console = console_says(&fx, Command::Pause { job_id: JOB.into() });
    assert!(
        matches!(
            &console,
            Err(HandleError::Refused(Refusal::Protected { .. }))
        ),
        "{console:?}"
    );
    let confirmed = Command::Confirmed {
        tenant_id: "acme".into(),
        command: Box::new(Command::Pause { job_id: JOB.into() }),
    };
    assert!(console_says(&fx, confirmed).is_ok());
    assert_ok(&fx.cli(None, &["cancel", JOB, "--confirm-tenant", "acme"]));
    let transform = ["transform", "--tenant-id", "acme"];
    assert!(cli_usage_error(&fx, &transform).contains("--confirm-tenant acme to transform"));
}
