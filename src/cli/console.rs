//! `avesa-console` on a terminal: wires the engine behind its handle, the local log file
//! and the theme, then hands the screen to the console.

use std::process::ExitCode;

use color_eyre::eyre::{Result, WrapErr, eyre};

use super::{ConsoleArgs, GlobalArgs, runtime};
use crate::engine::EngineOptions;
use crate::engine::handle::{EngineHandle, RefreshPolicy};
use crate::tui::logs::JsonlFile;
use crate::tui::{ConsoleOptions, Theme};
use crate::workspace::Workspace;

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
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(eyre!(
            "the console needs a terminal and stdout is not one; `avesa-console summary` prints the summary as text"
        ));
    }
    runtime::init_file_logging(ws)?;
    let wired = runtime::wire_engine(global, ws, config.clone(), EngineOptions::default()).await?;
    let handle = EngineHandle::spawn(wired.engine, config, RefreshPolicy::default());
    let logs = JsonlFile::new(ws.logs_dir().join("engine.jsonl"));
    let mut snapshot = handle.snapshot();
    crate::tui::run(
        handle,
        Box::new(logs),
        ConsoleOptions {
            read_only: args.read_only,
            theme,
            themes_dir: Some(themes_dir),
            log_capacity: crate::tui::app::LOG_CAPACITY,
        },
    )
    .await
    .wrap_err("the console stopped")?;
    let running = snapshot.borrow_and_update().running_here.clone();
    if !running.is_empty() {
        eprintln!(
            "{} job(s) were running in the console and stop now; `avesa-console resume JOB_ID` continues them:",
            running.len()
        );
        for id in running.iter() {
            eprintln!("  {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
