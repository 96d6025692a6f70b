//! What each command does, from parsed arguments to printed results and an exit code: the
//! dispatch to each command's module, and the commands small enough to live here (`plan`,
//! `run`, local `status`, `summary`).

use std::process::ExitCode;
use std::sync::Arc;

use color_eyre::eyre::{Result, WrapErr, eyre};

use super::args::{deadline, exit_for, make_plan, page_size};
use super::runtime;
use super::{
    Cli, CloudAction, CloudSettingArgs, Command, ConsoleArgs, GlobalArgs, JobArgs, LogsArgs,
    PlanArgs, ResumeArgs, RunArgs, StatusArgs, TriggerArgs, UsageError, cloud_cmd, deploy_cmd,
    lifecycle_cmd, ops_cmd, output, status,
};
use crate::config::Config;
use crate::engine::chunking;
use crate::engine::ops::JobAction;
use crate::engine::planner::{self, Plan};
use crate::engine::quota::AllocationShare;
use crate::engine::{EngineOptions, RateBudget};
use crate::store::JobFilter;
use crate::workspace::Workspace;

/// The cloud settings each `--cloud` command needs (the console and `worker` check their own).
fn check_cloud(command: Option<&Command>) -> Result<(), super::UsageError> {
    use crate::cloud::Setting::{Bucket, LogGroup, StateMachineArn, TablePrefix};
    let jobs = &[TablePrefix, StateMachineArn][..];
    let (name, cloud, needs) = match command {
        Some(Command::Trigger(a)) if a.auto_detect => (
            "trigger --auto-detect",
            &a.cloud,
            &[TablePrefix, Bucket, StateMachineArn][..],
        ),
        Some(Command::Trigger(a)) => ("trigger", &a.cloud, jobs),
        Some(Command::Resume(a)) => ("resume", &a.cloud, jobs),
        Some(Command::Cancel(a)) => ("cancel", &a.cloud, jobs),
        Some(Command::Pause(a)) => ("pause", &a.cloud, jobs),
        Some(Command::Unpause(a)) => ("unpause", &a.cloud, jobs),
        Some(Command::Status(a)) => ("status", &a.cloud, &[TablePrefix][..]),
        Some(Command::Logs(a)) => ("logs", &a.cloud, &[LogGroup][..]),
        Some(Command::Verify(a)) => ("verify", &a.cloud, &[TablePrefix, Bucket][..]),
        Some(Command::Cleanup(a)) => ("cleanup", &a.cloud, &[TablePrefix][..]),
        Some(Command::Alerts(a)) => ("alerts", &a.cloud, &[TablePrefix][..]),
        _ => return Ok(()),
    };
    cloud.check(name, needs)
}

/// The cloud settings of the command (those of `--cloud` only when it is given): each is filled
/// from the deployment's settings file where no flag or variable gives it.
fn fill_cloud_settings(cli: &mut Cli, ws: &Workspace) -> Result<(), UsageError> {
    let mut all: Vec<&mut CloudSettingArgs> = Vec::new();
    match &mut cli.command {
        Some(Command::Worker(a)) => all.push(&mut a.settings),
        Some(Command::Cloud(CloudAction::Status(a))) => all.push(&mut a.settings),
        Some(Command::Trigger(TriggerArgs { cloud: c, .. }))
        | Some(Command::Resume(ResumeArgs { cloud: c, .. }))
        | Some(Command::Cancel(JobArgs { cloud: c, .. }))
        | Some(Command::Pause(JobArgs { cloud: c, .. }))
        | Some(Command::Unpause(JobArgs { cloud: c, .. }))
        | Some(Command::Status(StatusArgs { cloud: c, .. }))
        | Some(Command::Logs(LogsArgs { cloud: c, .. }))
        | Some(Command::Verify(lifecycle_cmd::VerifyArgs { cloud: c, .. }))
        | Some(Command::Cleanup(lifecycle_cmd::CleanupArgs { cloud: c, .. }))
        | Some(Command::Alerts(lifecycle_cmd::AlertsArgs { cloud: c, .. }))
        | Some(Command::Console(ConsoleArgs { cloud: c, .. }))
            if c.cloud =>
        {
            all.push(&mut c.settings)
        }
        _ => {}
    }
    if cli.console.cloud.cloud {
        all.push(&mut cli.console.cloud.settings);
    }
    for settings in all {
        settings.fill_from_file(ws)?;
    }
    Ok(())
}

pub async fn dispatch(mut cli: Cli) -> Result<ExitCode> {
    let ws = Workspace::resolve(cli.global.workspace.clone());
    fill_cloud_settings(&mut cli, &ws)?;
    check_cloud(cli.command.as_ref())?;
    let global = cli.global;
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::io::IsTerminal::is_terminal(&std::io::stdin());
    match cli.command {
        None if interactive => super::console::run(&global, &ws, cli.console).await,
        Some(Command::Console(args)) => {
            super::console::run(&global, &ws, console_args(args, cli.console)).await
        }
        None | Some(Command::Summary) => {
            quiet(&global)?;
            summary(&ws, runtime::load_config(&global, &ws)?.as_ref()).await
        }
        Some(Command::Sandbox(args)) => super::sandbox_cmd::run(logged(&global)?, &ws, args).await,
        Some(Command::Check(args)) => super::check::run(logged(&global)?, &ws, args).await,
        Some(Command::Tenant(args)) => super::tenant_cmd::run(logged(&global)?, &ws, args).await,
        Some(Command::Bench(args)) => super::bench::run(quiet(&global)?, args).await,
        Some(Command::Keys(args)) => super::console::keys(quiet(&global)?, &ws, &args),
        Some(Command::Plan(args)) => plan(logged(&global)?, &ws, &args).await,
        Some(Command::Trigger(args)) if args.auto_detect => {
            lifecycle_cmd::auto_detect(&global, &ws, &args).await
        }
        Some(Command::Trigger(args)) => ops_cmd::trigger(&global, &ws, &args).await,
        Some(Command::Run(args)) => run(&global, &ws, &args).await,
        Some(Command::Resume(args)) => ops_cmd::resume(&global, &ws, &args).await,
        Some(Command::Cancel(args)) => {
            ops_cmd::job_action(&global, &ws, &args, JobAction::Cancel).await
        }
        Some(Command::Pause(args)) => {
            ops_cmd::job_action(&global, &ws, &args, JobAction::Pause).await
        }
        Some(Command::Unpause(args)) => {
            ops_cmd::job_action(&global, &ws, &args, JobAction::Unpause).await
        }
        Some(Command::Status(args)) if args.cloud.cloud => {
            quiet(&global)?;
            // The admission limits say why queued jobs wait; without a readable
            // configuration the queue is shown without the reasons.
            let dir = global.config_dir.clone().unwrap_or_else(|| ws.config_dir());
            let limits = Config::load(&dir)
                .ok()
                .map(|c| crate::engine::schedule::Limits::from_config(&c.backfill));
            cloud_cmd::status(&args, limits).await
        }
        Some(Command::Status(args)) => {
            quiet(&global)?;
            // Status reads the store and works with any configuration (it is what an incident
            // needs); a configuration `trigger` would refuse is said, not hidden.
            // Nothing is written for it: a workspace without configuration has none to check.
            let dir = global.config_dir.clone().unwrap_or_else(|| ws.config_dir());
            if dir.exists()
                && let Err(e) = Config::load(&dir)
            {
                eprintln!("warning: the configuration would be refused by trigger and run: {e}");
            }
            local_status(&ws, &args).await
        }
        Some(Command::Sync(args)) => lifecycle_cmd::sync(&global, &ws, args).await,
        Some(Command::Verify(args)) => lifecycle_cmd::verify(&global, &ws, args).await,
        Some(Command::Transform(args)) => lifecycle_cmd::transform(&global, &ws, args).await,
        Some(Command::Compact(args)) => lifecycle_cmd::compact(&global, &ws, args).await,
        Some(Command::Cleanup(args)) => lifecycle_cmd::cleanup(&global, &ws, args).await,
        Some(Command::Alerts(args)) => lifecycle_cmd::alerts(&global, &ws, args).await,
        Some(Command::Logs(args)) => {
            quiet(&global)?;
            cloud_cmd::logs(&ws, &args).await
        }
        Some(Command::Worker(args)) => cloud_cmd::worker(&global, &ws, &args).await,
        Some(Command::Cloud(action)) => {
            runtime::init_logging(&global.log_level, None)?;
            deploy_cmd::run(&ws, &action).await
        }
    }
}

/// Warnings only, on stderr: for commands whose output is the point.
fn quiet(g: &GlobalArgs) -> Result<&GlobalArgs> {
    runtime::init_logging("warn", None).map(|_| g)
}

/// The `--log-level` filter, on stderr.
fn logged(g: &GlobalArgs) -> Result<&GlobalArgs> {
    runtime::init_logging(&g.log_level, None).map(|_| g)
}

/// `--read-only`, `--theme` and `--mouse` may come before or after `console`.
fn console_args(args: ConsoleArgs, before: ConsoleArgs) -> ConsoleArgs {
    ConsoleArgs {
        read_only: args.read_only || before.read_only,
        mouse: args.mouse || before.mouse,
        theme: args.theme.or(before.theme),
        cloud: if args.cloud.cloud {
            args.cloud
        } else {
            before.cloud
        },
    }
}

/// `plan`: the chunk list, the calls it makes (exact with `--count`) and how long it takes
/// under the rate limit.
async fn plan(global: &GlobalArgs, ws: &Workspace, args: &PlanArgs) -> Result<ExitCode> {
    let config = runtime::load_config(global, ws)?;
    let mut plan = make_plan(&config, &args.range)?;
    let rules = &config.backfill.smart_chunking;
    // Only an engine over the workspace asks the sources (fixed windows write nothing there).
    if chunking::sized_by_counts(rules, args.range.chunk_size_days, args.smart_chunking) {
        let wired =
            runtime::wire_engine(global, ws, config.clone(), EngineOptions::default()).await?;
        wired.engine.refine_plan(&mut plan).await?;
        wired.engine.check_fields(&mut plan).await?;
    }
    let counts = if args.count {
        Some(count_windows(global, config.clone(), &plan).await?)
    } else {
        None
    };
    let est = planner::estimate(&plan, counts.as_deref(), |t| {
        page_size(&config, plan.service, t)
    });
    let allocation = plan_allocation(global, config.clone(), &plan, est.api_calls).await;
    output::print_plan(&plan, &est, &allocation, args.output)?;
    Ok(ExitCode::SUCCESS)
}

/// The plan's calls as a share of the allocation its tenant's service has left (asked of
/// the API now); `Ok(None)` when the API states none.
async fn plan_allocation(
    global: &super::GlobalArgs,
    config: Arc<Config>,
    plan: &Plan,
    calls: u64,
) -> Result<Option<AllocationShare>, String> {
    let share = config.backfill.max_api_share(plan.service);
    let (provider, _sandbox) = runtime::provider(global, config)
        .await
        .map_err(|e| e.to_string())?;
    let source = provider
        .source(&plan.tenant_id, plan.service)
        .map_err(|e| e.to_string())?;
    let usage = source.allocation().await.map_err(|e| e.to_string())?;
    Ok(usage.and_then(|u| AllocationShare::new(calls, &u, share)))
}

/// `run`: pending jobs (or one) through the local runner until done or out of time.
async fn run(global: &GlobalArgs, ws: &Workspace, args: &RunArgs) -> Result<ExitCode> {
    if let Some(job_id) = &args.job_id {
        if args.detached {
            ignore_hangups()?;
        }
        return ops_cmd::run_one(global, ws, job_id, &args.exec).await;
    }
    let concurrency = args.exec.concurrency;
    let config = runtime::load_config(global, ws)?;
    ws.ensure()?;
    runtime::init_logging(&global.log_level, Some(ws))?;
    let options = EngineOptions {
        chunk_concurrency: concurrency,
        ..EngineOptions::default()
    };
    let wired = runtime::wire_engine(global, ws, config, options).await?;
    let run = wired
        .engine
        .run_scheduled(deadline(&args.exec), args.wait_off_peak)
        .await?;
    for (job_id, until) in &run.deferred {
        outln!(
            "{job_id}: waits for the off-peak window (opens {}); run --wait-off-peak to wait for it",
            until.format("%Y-%m-%dT%H:%M:%SZ")
        );
    }
    if run.outcomes.is_empty() && !run.deferred.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    output::print_outcomes(&run.outcomes);
    Ok(exit_for(&run.outcomes))
}

/// A console's runner process outlives the console's terminal: SIGHUP is taken and
/// ignored (its own process group already keeps it out of the terminal's Ctrl-C).
fn ignore_hangups() -> Result<()> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .wrap_err("cannot take SIGHUP")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP ignored: this runner outlives the console that started it");
        }
    });
    Ok(())
}

/// Local `status`: the jobs with the sync markers and gaps, or one job with its chunks.
async fn local_status(ws: &Workspace, args: &StatusArgs) -> Result<ExitCode> {
    if let Some(id) = &args.job_id {
        runtime::require_store(ws, id)?;
    } else if !ws.store_path().exists() {
        return output::print_no_jobs(ws, args.output);
    }
    let store = runtime::open_store(ws)?;
    match &args.job_id {
        Some(id) => {
            let job = store
                .get_job(id)
                .await?
                .ok_or_else(|| eyre!("job '{id}' not found"))?;
            let chunks = store.chunks(id).await?;
            let lc = runtime::open_lifecycle(ws)?;
            let waits = status::quota_waits(lc.as_ref(), std::slice::from_ref(&job)).await?;
            output::print_job_detail(&job, &waits, &chunks, args.output)?;
        }
        None => {
            let lc = runtime::open_lifecycle(ws)?;
            status::print_status_list(
                store.as_ref(),
                lc.as_ref(),
                args.tenant_id.as_deref(),
                args.output,
            )
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the source for each window's record count, under the tenant's rate budget.
async fn count_windows(
    global: &super::GlobalArgs,
    config: Arc<Config>,
    plan: &Plan,
) -> Result<Vec<(String, Vec<u64>)>> {
    let (provider, _sandbox) = runtime::provider(global, config.clone()).await?;
    let source = provider
        .source(&plan.tenant_id, plan.service)
        .map_err(|e| eyre!(e))?;
    let budget = RateBudget::new(plan.rate_limit_per_minute);
    let mut out = Vec::new();
    for t in &plan.tables {
        let endpoint = config
            .endpoints(plan.service)
            .and_then(|e| e.find(&t.table))
            .ok_or_else(|| eyre!("table {} vanished from the configuration", t.table))?;
        let mut counts = Vec::new();
        for w in &t.windows {
            budget.acquire().await;
            counts.push(source.count(endpoint, w).await.map_err(|e| {
                eyre!(
                    "{} {} count of {} {w}: {e}",
                    plan.tenant_id,
                    plan.service,
                    t.table
                )
            })?);
        }
        out.push((t.table.clone(), counts));
    }
    Ok(out)
}

async fn summary(ws: &Workspace, config: &Config) -> Result<ExitCode> {
    let jobs = if ws.store_path().exists() {
        runtime::open_store(ws)?
            .list_jobs(&JobFilter::default())
            .await?
    } else {
        Vec::new()
    };
    output::print_summary(ws, config, &jobs);
    Ok(ExitCode::SUCCESS)
}
