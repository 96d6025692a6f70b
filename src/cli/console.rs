//! `avesa-console` on a terminal: wires the engine behind its handle, the log feed and the
//! theme, then hands the screen to the console.
//!
//! Two modes. By default the workspace's jobs, run in this process, and its
//! `logs/engine.jsonl`. With `--cloud` (and the `AVESA_CLOUD_*` settings `trigger --cloud`
//! reads) the deployment's jobs from DynamoDB, dispatched to Step Functions the way
//! `trigger|cancel|resume --cloud` do, and their CloudWatch Logs. The flag is explicit, as for
//! every other command: settings left in a shell never turn a local console into a cloud one.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use color_eyre::eyre::{Result, WrapErr, bail, eyre};

use super::{ConsoleArgs, GlobalArgs, KeysArgs, runtime};
use crate::cloud::logs::CloudWatchLogSource;
use crate::cloud::ops::StepFunctions;
use crate::cloud::sfn::Dispatcher;
use crate::cloud::{CloudSettings, Setting, aws_config};
use crate::config::Config;
use crate::engine::EngineOptions;
use crate::engine::handle::{EngineHandle, RefreshPolicy, Snapshot};
use crate::engine::ops::RunnerCommand;
use crate::logs::LocalLogSource;
use crate::logs::local::{BATCH_BYTES, TAIL_BYTES};
use crate::tui::app::CloudMode;
use crate::tui::keymap::Keymap;
use crate::tui::logs::LogFeed;
use crate::tui::{ConsoleOptions, Theme};
use crate::workspace::Workspace;

/// What the console needs of a cloud deployment: the job tables, the state machine and the
/// log group (the queue and bucket are the workers' business).
const CLOUD_NEEDS: [Setting; 3] = [
    Setting::TablePrefix,
    Setting::StateMachineArn,
    Setting::LogGroup,
];

/// Each missing setting, naming its flag and variable.
fn missing(settings: &CloudSettings) -> Vec<String> {
    CLOUD_NEEDS
        .iter()
        .filter_map(|s| settings.require(*s).err().map(|e| e.to_string()))
        .collect()
}

/// What choosing cloud in a local console says.
fn why_not_cloud(settings: &CloudSettings) -> String {
    let missing = missing(settings);
    if missing.is_empty() {
        "this console shows the workspace's jobs; start it with --cloud to dispatch and watch \
         cloud jobs"
            .into()
    } else {
        format!(
            "not configured: {}; then start the console with --cloud",
            missing.join("; ")
        )
    }
}

/// Handle and log feed of a cloud console.
async fn wire_cloud(
    ws: &Workspace,
    config: Arc<Config>,
    settings: &CloudSettings,
) -> Result<(EngineHandle, LogFeed)> {
    let engine = runtime::cloud_engine(ws, config.clone(), settings).await?;
    let aws = aws_config().await;
    let dispatcher = Dispatcher::new(
        aws_sdk_sfn::Client::new(&aws),
        settings.require(Setting::StateMachineArn)?,
    );
    let sfn = StepFunctions::new(
        dispatcher,
        "cancelled in the avesa-console console",
        engine.clone(),
    );
    let handle = EngineHandle::spawn_cloud(engine, config, RefreshPolicy::default(), Arc::new(sfn));
    let logs = CloudWatchLogSource::new(
        aws_sdk_cloudwatchlogs::Client::new(&aws),
        settings.require(Setting::LogGroup)?,
    );
    Ok((handle, LogFeed::per_job(Arc::new(logs))))
}

pub async fn run(global: &GlobalArgs, ws: &Workspace, args: ConsoleArgs) -> Result<ExitCode> {
    let config = runtime::load_config(global, ws)?;
    ws.ensure()?;
    let themes_dir = ws.root.join("themes");
    let mut theme = match &args.theme {
        Some(spec) => Theme::load(spec, Some(&themes_dir)).map_err(|e| eyre!("--theme: {e}"))?,
        None => Theme::default(),
    };
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        theme = theme.no_color();
    }
    // A bad keys.toml stops the console here, before the terminal, as a bad theme does.
    let mut keymap = Keymap::load(&runtime::config_dir(global, ws)?).map_err(|e| eyre!("{e}"))?;
    keymap.mouse |= args.mouse;
    let settings = args.cloud.settings.settings();
    // Settings are checked before the terminal: a console that cannot start says why plainly.
    if args.cloud.cloud {
        let missing = missing(&settings);
        if !missing.is_empty() {
            bail!("console --cloud needs {}", missing.join("; "));
        }
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(eyre!(
            "the console needs a terminal and stdout is not one; `avesa-console summary` prints the summary as text"
        ));
    }
    runtime::init_file_logging(ws)?;
    // Kept alive while the console runs: the sandbox a local console may start.
    let mut _wired = None;
    let (handle, logs, cloud) = if args.cloud.cloud {
        let (handle, logs) = wire_cloud(ws, config, &settings).await?;
        (handle, logs, CloudMode::On)
    } else {
        let wired =
            runtime::wire_engine(global, ws, config.clone(), EngineOptions::default()).await?;
        let handle = EngineHandle::spawn_detached(
            wired.engine.clone(),
            config,
            RefreshPolicy::default(),
            runner_command(global, ws)?,
        );
        _wired = Some(wired);
        let logs =
            LocalLogSource::tailing(ws.logs_dir().join("engine.jsonl"), TAIL_BYTES, BATCH_BYTES);
        let why = why_not_cloud(&settings);
        (
            handle,
            LogFeed::every_job(Arc::new(logs)),
            CloudMode::Off { why },
        )
    };
    let mut snapshot = handle.snapshot();
    crate::tui::run(
        handle,
        logs,
        ConsoleOptions {
            read_only: args.read_only,
            theme,
            themes_dir: Some(themes_dir),
            log_capacity: crate::tui::app::LOG_CAPACITY,
            cloud,
            keymap,
        },
    )
    .await
    .wrap_err("the console stopped")?;
    say_what_goes_on(&snapshot.borrow_and_update());
    Ok(ExitCode::SUCCESS)
}

/// `keys`: the keymap in effect, one binding a line; `--check FILE` validates a file.
pub fn keys(global: &GlobalArgs, ws: &Workspace, args: &KeysArgs) -> Result<ExitCode> {
    let keymap = match &args.check {
        Some(file) => Keymap::load_file(file),
        None => Keymap::load(&runtime::config_dir(global, ws)?),
    }
    .map_err(|e| eyre!("{e}"))?;
    match &args.check {
        Some(file) => println!("{}: ok", file.display()),
        None => print!("{}", keymap.render()),
    }
    Ok(ExitCode::SUCCESS)
}

/// How the console starts a job's runner process: this binary with the console's global
/// arguments (the runner starts its own sandbox when the configuration needs one, with the
/// same fault plan).
fn runner_command(global: &GlobalArgs, ws: &Workspace) -> Result<RunnerCommand> {
    let program = std::env::current_exe().wrap_err("cannot find this program to run jobs")?;
    let mut args: Vec<OsString> = vec!["--workspace".into(), ws.root.clone().into()];
    let flags = [
        (
            "--config-dir",
            global.config_dir.clone().map(OsString::from),
        ),
        (
            "--sandbox-url",
            global.sandbox_url.clone().map(OsString::from),
        ),
        (
            "--sandbox-faults",
            global.sandbox_faults.clone().map(OsString::from),
        ),
        ("--log-level", Some(global.log_level.clone().into())),
    ];
    for (flag, value) in flags {
        if let Some(value) = value {
            args.extend([flag.into(), value]);
        }
    }
    Ok(RunnerCommand {
        program,
        args,
        dir: ws.root.join("runners"),
    })
}

/// After the console: the jobs that keep running in their runner processes, and any that
/// were still running in this process or queued here and stop now.
fn say_what_goes_on(snap: &Snapshot) {
    if !snap.runners.is_empty() {
        eprintln!(
            "{} job(s) keep running in the background; `avesa-console status` or a new console shows them:",
            snap.runners.len()
        );
        for (id, pid) in snap.runners.iter() {
            eprintln!("  {id} (runner process {pid})");
        }
    }
    let stopped: Vec<&String> = snap
        .running_here
        .iter()
        .filter(|id| !snap.runners.contains_key(*id))
        .chain(snap.waiting.keys())
        .collect();
    if !stopped.is_empty() {
        eprintln!(
            "{} job(s) of the console stop or did not start; `avesa-console resume JOB_ID` continues them:",
            stopped.len()
        );
        for id in stopped {
            eprintln!("  {id}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_console_says_which_cloud_settings_are_missing() {
        let none = CloudSettings::default();
        let why = why_not_cloud(&none);
        for var in [
            "AVESA_CLOUD_TABLE_PREFIX",
            "AVESA_CLOUD_STATE_MACHINE_ARN",
            "AVESA_CLOUD_LOG_GROUP",
        ] {
            assert!(why.contains(var), "{why}");
        }
        assert!(!why.contains("AVESA_CLOUD_BUCKET"), "{why}");
        let all = CloudSettings {
            table_prefix: Some("p".into()),
            state_machine_arn: Some("arn".into()),
            log_group: Some("g".into()),
            ..CloudSettings::default()
        };
        assert!(missing(&all).is_empty());
        assert!(why_not_cloud(&all).contains("--cloud"));
    }
}
