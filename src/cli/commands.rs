//! What each command does, from parsed arguments to printed results and an exit code.

use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use color_eyre::eyre::{Result, bail, eyre};
use tokio::time::Instant;

use super::runtime::{self, Wired};
use super::{Cli, Command, EXIT_CONTINUATION, EXIT_JOB_ERRORS, ExecArgs, RangeArgs, output};
use crate::config::Config;
use crate::domain::{JobMeta, JobStatus, Service};
use crate::engine::planner::{self, Plan, PlanRequest};
use crate::engine::{EngineOptions, RateBudget, RunOutcome, StopReason};
use crate::store::{CreateOutcome, JobFilter};
use crate::workspace::Workspace;

pub async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let ws = Workspace::resolve(cli.global.workspace.clone());
    let global = cli.global;
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::io::IsTerminal::is_terminal(&std::io::stdin());
    match cli.command {
        None if interactive => super::console::run(&global, &ws, cli.console).await,
        Some(Command::Console(args)) => {
            // `--read-only` and `--theme` may come before or after `console`.
            let args = super::ConsoleArgs {
                read_only: args.read_only || cli.console.read_only,
                theme: args.theme.or(cli.console.theme),
                cloud: if args.cloud.cloud {
                    args.cloud
                } else {
                    cli.console.cloud
                },
            };
            super::console::run(&global, &ws, args).await
        }
        None | Some(Command::Summary) => {
            runtime::init_logging("warn", None)?;
            let config = runtime::load_config(&global, &ws)?;
            summary(&ws, &config).await
        }
        Some(Command::Sandbox(args)) => {
            runtime::init_logging(&global.log_level, None)?;
            super::sandbox_cmd::run(&global, &ws, args).await
        }
        Some(Command::Check(args)) => {
            runtime::init_logging(&global.log_level, None)?;
            super::check::run(&global, &ws, args).await
        }
        Some(Command::Bench(args)) => {
            runtime::init_logging("warn", None)?;
            super::bench::run(&global, args).await
        }
        Some(Command::Plan(args)) => {
            runtime::init_logging(&global.log_level, None)?;
            let config = runtime::load_config(&global, &ws)?;
            let mut plan = make_plan(&config, &args.range)?;
            if args.smart_chunking || config.backfill.smart_chunking.enabled {
                let wired =
                    runtime::wire_engine(&global, &ws, config.clone(), EngineOptions::default())
                        .await?;
                wired.engine.refine_plan(&mut plan).await?;
            }
            let counts = if args.count {
                Some(count_windows(&global, config.clone(), &plan).await?)
            } else {
                None
            };
            let est = planner::estimate(&plan, counts.as_deref(), |t| {
                page_size(&config, plan.service, t)
            });
            output::print_plan(&plan, &est, args.output)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Trigger(args)) if args.auto_detect => {
            super::lifecycle_cmd::auto_detect(&global, &ws, &args).await
        }
        Some(Command::Trigger(args)) => {
            let config = runtime::load_config(&global, &ws)?;
            let mut plan = make_plan(&config, &args.range)?;
            if args.smart_chunking || config.backfill.smart_chunking.enabled {
                ws.ensure()?;
                runtime::init_logging(&global.log_level, Some(&ws))?;
                let wired =
                    runtime::wire_engine(&global, &ws, config.clone(), EngineOptions::default())
                        .await?;
                wired.engine.refine_plan(&mut plan).await?;
            }
            if args.dry_run {
                runtime::init_logging(&global.log_level, None)?;
                let est = planner::estimate(&plan, None, |t| page_size(&config, plan.service, t));
                output::print_plan(&plan, &est, args.output)?;
                return Ok(ExitCode::SUCCESS);
            }
            if args.cloud.cloud {
                runtime::init_logging(&global.log_level, None)?;
                return super::cloud_cmd::trigger(&args, &plan).await;
            }
            ws.ensure()?;
            runtime::init_logging(&global.log_level, Some(&ws))?;
            let wired =
                runtime::wire_engine(&global, &ws, config, EngineOptions::default()).await?;
            let outcome = wired.engine.create_job(&plan, Utc::now()).await?;
            if created(&outcome) {
                let meta = JobMeta {
                    priority: args.priority.unwrap_or(1),
                    wait_off_peak: args.wait_off_peak,
                    ..JobMeta::default_for(&outcome.job().job_id)
                };
                wired.engine.set_job_meta(&meta).await?;
            }
            output::print_trigger(&outcome, args.output)?;
            if args.run {
                let job_id = outcome.job().job_id.clone();
                let done = wired.engine.run_job(&job_id, None).await?;
                return Ok(exit_for(&[done]));
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Run(args)) => {
            let config = runtime::load_config(&global, &ws)?;
            ws.ensure()?;
            runtime::init_logging(&global.log_level, Some(&ws))?;
            let wired = wire(&global, &ws, config, &args.exec).await?;
            let deadline = deadline(&args.exec);
            let outcomes = match &args.job_id {
                Some(id) => vec![wired.engine.run_job(id, deadline).await?],
                None => {
                    let run = wired
                        .engine
                        .run_scheduled(deadline, args.wait_off_peak)
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
                    run.outcomes
                }
            };
            output::print_outcomes(&outcomes);
            Ok(exit_for(&outcomes))
        }
        Some(Command::Resume(args)) if args.cloud.cloud => {
            runtime::init_logging(&global.log_level, None)?;
            super::cloud_cmd::resume(&args).await
        }
        Some(Command::Resume(args)) => {
            let config = runtime::load_config(&global, &ws)?;
            ws.ensure()?;
            runtime::init_logging(&global.log_level, Some(&ws))?;
            let wired = wire(&global, &ws, config, &args.exec).await?;
            let store = wired.engine.store().clone();
            let job = store.get_job(&args.job_id).await?.ok_or_else(|| {
                eyre!(
                    "job '{}' not found in {}",
                    args.job_id,
                    ws.store_path().display()
                )
            })?;
            if args.retry_failed {
                let n = store.retry_failed(&job.job_id, Utc::now()).await?;
                eprintln!("{n} failed chunk(s) of {} will be tried again", job.job_id);
            } else if job.status == JobStatus::Paused {
                store
                    .set_job_status(&job.job_id, JobStatus::Pending, Utc::now())
                    .await?;
            } else if job.status.is_terminal() {
                outln!("job {} is {}; nothing to resume", job.job_id, job.status);
                return Ok(ExitCode::SUCCESS);
            }
            let outcome = wired
                .engine
                .run_job(&job.job_id, deadline(&args.exec))
                .await?;
            output::print_outcomes(std::slice::from_ref(&outcome));
            Ok(exit_for(&[outcome]))
        }
        Some(Command::Status(args)) if args.cloud.cloud => {
            runtime::init_logging("warn", None)?;
            super::cloud_cmd::status(&args).await
        }
        Some(Command::Status(args)) => {
            runtime::init_logging("warn", None)?;
            if !ws.store_path().exists() {
                return output::print_no_jobs(&ws, args.output);
            }
            let store = runtime::open_store(&ws)?;
            match &args.job_id {
                Some(id) => {
                    let job = store
                        .get_job(id)
                        .await?
                        .ok_or_else(|| eyre!("job '{id}' not found"))?;
                    let chunks = store.chunks(id).await?;
                    output::print_job_detail(&job, &chunks, args.output)?;
                }
                None => {
                    let lc = runtime::open_lifecycle(&ws)?;
                    print_status_list(
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
        Some(Command::Sync(args)) => super::lifecycle_cmd::sync(&global, &ws, args).await,
        Some(Command::Verify(args)) => super::lifecycle_cmd::verify(&global, &ws, args).await,
        Some(Command::Transform(args)) => super::lifecycle_cmd::transform(&global, &ws, args).await,
        Some(Command::Cleanup(args)) => super::lifecycle_cmd::cleanup(&global, &ws, args).await,
        Some(Command::Alerts(args)) => super::lifecycle_cmd::alerts(&global, &ws, args).await,
        Some(Command::Cancel(args)) if args.cloud.cloud => {
            runtime::init_logging("warn", None)?;
            super::cloud_cmd::cancel(&args).await
        }
        Some(Command::Cancel(args)) => {
            runtime::init_logging("warn", None)?;
            if !ws.store_path().exists() {
                bail!(
                    "job '{}' not found: no job store at {}",
                    args.job_id,
                    ws.store_path().display()
                );
            }
            let store = runtime::open_store(&ws)?;
            cancel_in(store.as_ref(), &args.job_id).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Logs(args)) => {
            runtime::init_logging("warn", None)?;
            super::cloud_cmd::logs(&ws, &args).await
        }
        Some(Command::Worker(args)) => super::cloud_cmd::worker(&global, &ws, &args).await,
    }
}

/// `status` without a job, locally and with `--cloud`: the jobs, then the sync markers and
/// what the gap check finds in them.
pub async fn print_status_list(
    store: &dyn crate::store::JobStore,
    lifecycle: &dyn crate::store::LifecycleStore,
    tenant_id: Option<&str>,
    out: super::Output,
) -> Result<()> {
    let filter = JobFilter {
        tenant_id: tenant_id.map(str::to_string),
        ..JobFilter::default()
    };
    let jobs = store.list_jobs(&filter).await?;
    let markers = lifecycle.markers(tenant_id, None).await?;
    let gaps = crate::engine::handoff::gap_check(&markers, &jobs);
    output::print_jobs_with_handoff(&jobs, out, &markers, &gaps)
}

/// Marks a job cancelled in `store`; its runners stop at their next lease renewal.
pub async fn cancel_in(store: &dyn crate::store::JobStore, job_id: &str) -> Result<()> {
    let job = store
        .get_job(job_id)
        .await?
        .ok_or_else(|| eyre!("job '{job_id}' not found"))?;
    if job.status.is_terminal() {
        bail!(
            "job {job_id} is {}; only pending, running or paused jobs can be cancelled",
            job.status
        );
    }
    let job = store
        .set_job_status(job_id, JobStatus::Cancelled, Utc::now())
        .await?;
    outln!(
        "job {} cancelled ({} of {} chunks completed, {} records)",
        job.job_id,
        job.completed_chunks,
        job.total_chunks,
        job.records
    );
    Ok(())
}

async fn wire(
    global: &super::GlobalArgs,
    ws: &Workspace,
    config: Arc<Config>,
    exec: &ExecArgs,
) -> Result<Wired> {
    if exec.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let options = EngineOptions {
        chunk_concurrency: exec.concurrency,
        ..EngineOptions::default()
    };
    runtime::wire_engine(global, ws, config, options).await
}

fn deadline(exec: &ExecArgs) -> Option<Instant> {
    // Keep a margin to save state and exit: a tenth of the budget, at most 30 s.
    exec.time_budget
        .map(|b| Instant::now() + b - (b / 10).min(std::time::Duration::from_secs(30)))
}

pub fn exit_for(outcomes: &[RunOutcome]) -> ExitCode {
    if outcomes
        .iter()
        .any(|o| o.stop == StopReason::ContinuationNeeded)
    {
        ExitCode::from(EXIT_CONTINUATION)
    } else if outcomes
        .iter()
        .any(|o| matches!(o.status, JobStatus::CompletedWithErrors | JobStatus::Failed))
    {
        ExitCode::from(EXIT_JOB_ERRORS)
    } else {
        ExitCode::SUCCESS
    }
}

/// Reads `--start-date` / `--end-date`: an RFC 3339 instant or a plain UTC date.
pub fn parse_instant(flag: &str, value: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    bail!(
        "{flag} '{value}' is not an RFC 3339 instant (2023-01-01T00:00:00Z) or a date (2023-01-01)"
    )
}

/// A flag's value, or the usage error naming it.
pub fn required<'a>(flag: &str, value: &'a Option<String>) -> Result<&'a str> {
    value
        .as_deref()
        .ok_or_else(|| super::UsageError(format!("{flag} is required")).into())
}

pub fn parse_service(value: &str) -> Result<Service> {
    value.parse().map_err(|e: String| eyre!("--service: {e}"))
}

pub fn make_plan(config: &Config, range: &RangeArgs) -> Result<Plan> {
    let tenant_id = required("--tenant-id", &range.tenant_id)?;
    let service = parse_service(required("--service", &range.service)?)?;
    let req = PlanRequest {
        tenant_id: tenant_id.to_string(),
        service,
        tables: range.tables.clone(),
        start: range
            .start_date
            .as_deref()
            .map(|v| parse_instant("--start-date", v))
            .transpose()?,
        end: range
            .end_date
            .as_deref()
            .map(|v| parse_instant("--end-date", v))
            .transpose()?,
        chunk_size_days: range.chunk_size_days,
    };
    Ok(planner::plan(config, &req, Utc::now())?)
}

fn page_size(config: &Config, service: Service, table: &str) -> u32 {
    config
        .endpoints(service)
        .and_then(|e| e.find(table))
        .map_or(1000, |e| e.page_size)
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

pub fn created(outcome: &CreateOutcome) -> bool {
    matches!(outcome, CreateOutcome::Created(_))
}
