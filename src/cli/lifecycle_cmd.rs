//! Commands around a backfill's life: `sync`, `verify`, `transform`, `cleanup`, `alerts`
//! and `trigger --auto-detect`.

use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use clap::Args;
use color_eyre::eyre::{Result, bail, eyre};

use super::args::{budget_deadline, exit_for, parse_service};
use super::runtime::{self, Wired};
use super::{
    CloudArgs, EXIT_VERIFY_FAILED, GlobalArgs, Output, TriggerArgs, lifecycle_output as out,
};
use crate::cloud::ops::StepFunctions;
use crate::config::{Config, LOOKBACK_DAYS};
use crate::domain::{JobMeta, Trigger};
use crate::engine::EngineOptions;
use crate::engine::ops::{
    Confirmation, Hints, Hold, LocalRunner, Ops, Outcome, RunnerOptions, protection,
};
use crate::engine::planner::{self, PlanRequest};
use crate::store::{AlertFilter, CreateOutcome};
use crate::transform::{TransformMode, TransformRequest};
use crate::workspace::Workspace;

#[derive(Args, Debug)]
pub struct SyncArgs {
    #[arg(long)]
    pub tenant_id: String,
    #[arg(long)]
    pub service: String,
    /// API path or table name; repeat for several (default: every table with a marker).
    #[arg(long = "table")]
    pub tables: Vec<String>,
    /// Print the windows; create and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Stop cleanly before this much time has passed; `resume` continues the sync job.
    #[arg(long, value_parser = super::parse_duration)]
    pub time_budget: Option<std::time::Duration>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    pub job_id: String,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// A cloud job: its chunks from DynamoDB and its raw parts from the S3 bucket
    /// (`--bucket`/`AVESA_CLOUD_BUCKET`), counted against the sources configured here.
    #[command(flatten)]
    pub cloud: CloudArgs,
}

#[derive(Args, Debug)]
pub struct TransformArgs {
    #[arg(long)]
    pub tenant_id: String,
    /// Canonical table (`tickets`, `time_entries`, `companies`, `contacts`); repeat for
    /// several (default: all).
    #[arg(long = "table")]
    pub tables: Vec<String>,
    /// Only this service's records (default: every service with raw data).
    #[arg(long)]
    pub service: Option<String>,
    /// Rebuild every bucket from all raw data (and size the buckets anew) instead of merging
    /// the raw files not yet consumed.
    #[arg(long)]
    pub full: bool,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub confirm: super::ConfirmArgs,
}

#[derive(Args, Debug)]
pub struct CompactArgs {
    /// Only this tenant's raw data (default: every tenant with jobs in the store).
    #[arg(long)]
    pub tenant_id: Option<String>,
    #[arg(long)]
    pub service: Option<String>,
    /// Only this table (its name as in the endpoints file).
    #[arg(long)]
    pub table: Option<String>,
    /// Print what would be compacted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub confirm: super::ConfirmArgs,
}

#[derive(Args, Debug)]
pub struct CleanupArgs {
    /// Remove completed jobs that finished more than this many days ago (default:
    /// `monitoring.cleanup_completed_jobs_after_days`).
    #[arg(long, value_parser = super::args::ranged::<u32>(0..=*LOOKBACK_DAYS.end()))]
    pub older_than_days: Option<u32>,
    /// List what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

#[derive(Args, Debug)]
pub struct AlertsArgs {
    #[arg(long)]
    pub tenant_id: Option<String>,
    #[arg(long)]
    pub job_id: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

async fn wired(global: &GlobalArgs, ws: &Workspace) -> Result<Wired> {
    let config = runtime::load_config(global, ws)?;
    ws.ensure()?;
    runtime::init_logging(&global.log_level, Some(ws))?;
    runtime::wire_engine(global, ws, config, EngineOptions::default()).await
}

/// The configuration for a `--cloud` command, with logging to the terminal only (the
/// workspace's log file is the local runs').
fn cloud_config(global: &GlobalArgs, ws: &Workspace) -> Result<Arc<Config>> {
    let config = runtime::load_config(global, ws)?;
    runtime::init_logging(&global.log_level, None)?;
    Ok(config)
}

/// The workspace's engine, or with `--cloud` one over the deployment's DynamoDB stores
/// (which runs no chunk: the commands using it only read and keep the store).
async fn wired_or_cloud(global: &GlobalArgs, ws: &Workspace, cloud: &CloudArgs) -> Result<Wired> {
    if !cloud.cloud {
        return wired(global, ws).await;
    }
    let config = cloud_config(global, ws)?;
    let engine = runtime::cloud_engine(ws, config, &cloud.settings.settings()).await?;
    Ok(Wired {
        engine,
        _sandbox: None,
    })
}

pub async fn sync(global: &GlobalArgs, ws: &Workspace, args: SyncArgs) -> Result<ExitCode> {
    let service = parse_service(&args.service)?;
    let w = wired(global, ws).await?;
    let engine = &w.engine;
    let now = Utc::now();
    if args.dry_run {
        let markers = engine
            .lifecycle()
            .markers(Some(&args.tenant_id), Some(service))
            .await?;
        let plan = planner::plan_sync(
            engine.config(),
            &args.tenant_id,
            service,
            &args.tables,
            &markers,
            now,
        )?;
        let est = planner::estimate(&plan, None, |_| 1000);
        super::output::print_plan(&plan, &est, &Ok(None), args.output)?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(outcome) = engine
        .create_sync(&args.tenant_id, service, &args.tables, now)
        .await?
    else {
        out::print_up_to_date(&args.tenant_id, service, args.output)?;
        return Ok(ExitCode::SUCCESS);
    };
    if let CreateOutcome::Created(job) = &outcome {
        engine
            .set_job_meta(&JobMeta {
                priority: 2,
                ..JobMeta::default_for(&job.job_id)
            })
            .await?;
    }
    // Through the local runner, as every run of this process: the scheduling rules apply.
    let runner = LocalRunner::new(
        engine.clone(),
        RunnerOptions {
            deadline: budget_deadline(args.time_budget),
            ..RunnerOptions::default()
        },
    );
    let job_id = outcome.job().job_id.clone();
    Ops::new(engine.clone(), Arc::new(runner.clone()))
        .start(&job_id)
        .await?;
    let done = runner.wait_for(&job_id).await?;
    let job = engine
        .store()
        .get_job(&job_id)
        .await?
        .ok_or_else(|| eyre!("job {job_id} vanished"))?;
    let markers = engine
        .lifecycle()
        .markers(Some(&args.tenant_id), Some(service))
        .await?;
    out::print_sync(&job, &done, &markers, args.output)?;
    Ok(exit_for(&[done]))
}

pub async fn verify(global: &GlobalArgs, ws: &Workspace, args: VerifyArgs) -> Result<ExitCode> {
    let w = if args.cloud.cloud {
        let config = cloud_config(global, ws)?;
        let settings = args.cloud.settings.settings();
        runtime::cloud_data_engine(global, config, &settings, EngineOptions::default()).await?
    } else {
        runtime::require_store(ws, &args.job_id)?;
        wired(global, ws).await?
    };
    let report = w.engine.verify(&args.job_id).await?;
    let gaps: Vec<_> = w
        .engine
        .check_gaps(Some(&report.tenant_id))
        .await?
        .into_iter()
        .filter(|g| g.service == report.service)
        .collect();
    out::print_verify(&report, &gaps, args.output)?;
    Ok(if !report.uncounted.is_empty() {
        // Not a finding about the data: the verification itself could not finish.
        ExitCode::FAILURE
    } else if report.ok && gaps.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_VERIFY_FAILED)
    })
}

pub async fn transform(
    global: &GlobalArgs,
    ws: &Workspace,
    args: TransformArgs,
) -> Result<ExitCode> {
    let w = wired(global, ws).await?;
    w.engine
        .config()
        .tenant(&args.tenant_id)
        .map_err(|e| eyre!("--tenant-id: {e}"))?;
    let services = match &args.service {
        Some(s) => vec![parse_service(s)?],
        None => Vec::new(),
    };
    let what = match &args.service {
        Some(s) => format!("transform {s}"),
        None => "transform its data".to_string(),
    };
    let confirm = args.confirm.confirmation();
    protection(w.engine.config(), &args.tenant_id, &what, &confirm)?;
    let reports = w
        .engine
        .transform(&TransformRequest {
            tenant_id: args.tenant_id.clone(),
            tables: args.tables.clone(),
            services,
            mode: if args.full {
                TransformMode::Full
            } else {
                TransformMode::Incremental
            },
        })
        .await
        .map_err(|e| eyre!("--table: {e}"))?;
    out::print_transform(&reports, args.output)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn compact(global: &GlobalArgs, ws: &Workspace, args: CompactArgs) -> Result<ExitCode> {
    let w = wired(global, ws).await?;
    if let Some(t) = &args.tenant_id {
        w.engine
            .config()
            .tenant(t)
            .map_err(|e| eyre!("--tenant-id: {e}"))?;
    }
    if !args.dry_run {
        // Every protected tenant the compaction covers needs its id confirmed: without
        // --tenant-id, that is each of them (compact them one at a time).
        let (config, confirm) = (w.engine.config(), args.confirm.confirmation());
        let covered = config
            .tenants
            .tenants
            .iter()
            .filter(|t| args.tenant_id.as_ref().is_none_or(|id| *id == t.tenant_id));
        for t in covered {
            protection(config, &t.tenant_id, "compact its raw data", &confirm)?;
        }
    }
    let service = args.service.as_deref().map(parse_service).transpose()?;
    if let Some(table) = &args.table {
        let known = |s: crate::domain::Service| {
            w.engine
                .config()
                .endpoints(s)
                .is_some_and(|e| e.find(table).is_some())
        };
        let services = service.map_or_else(|| crate::domain::Service::ALL.to_vec(), |s| vec![s]);
        if !services.into_iter().any(known) {
            bail!("--table: '{table}' is not a table of the configured endpoints");
        }
    }
    let req = crate::engine::compact::CompactRequest {
        tenant_id: args.tenant_id.clone(),
        service,
        table: args.table.clone(),
        dry_run: args.dry_run,
    };
    let tables = w.engine.compact(&req).await?;
    out::print_compact(&tables, args.dry_run, args.output)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn cleanup(global: &GlobalArgs, ws: &Workspace, args: CleanupArgs) -> Result<ExitCode> {
    let w = wired_or_cloud(global, ws, &args.cloud).await?;
    let days = args.older_than_days.unwrap_or(
        w.engine
            .config()
            .backfill
            .monitoring
            .cleanup_completed_jobs_after_days,
    );
    let removed = w.engine.cleanup(days, Utc::now(), args.dry_run).await?;
    out::print_cleanup(&removed, days, args.dry_run, args.output)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn alerts(global: &GlobalArgs, ws: &Workspace, args: AlertsArgs) -> Result<ExitCode> {
    if !args.cloud.cloud && !ws.store_path().exists() {
        // Nothing ran here yet: no alerts, and no store created to say so.
        if let Some(job_id) = &args.job_id {
            runtime::require_store(ws, job_id)?;
        }
        out::print_alerts(&[], args.output)?;
        return Ok(ExitCode::SUCCESS);
    }
    let w = wired_or_cloud(global, ws, &args.cloud).await?;
    // Judge what can be judged from the store right now before listing.
    w.engine.sweep_alerts(Utc::now()).await?;
    w.engine.check_gaps(args.tenant_id.as_deref()).await?;
    let list = w
        .engine
        .lifecycle()
        .alerts(&AlertFilter {
            tenant_id: args.tenant_id.clone(),
            job_id: args.job_id.clone(),
            kind: None,
        })
        .await?;
    out::print_alerts(&list, args.output)?;
    Ok(ExitCode::SUCCESS)
}

/// Where `trigger --auto-detect` decides and what starts the backfills it creates: locally
/// the workspace's stores, the jobs left for `run` (or the console) to start under the
/// scheduling rules; with `--cloud` the deployment's stores and bucket, each job started as
/// a Step Functions execution.
async fn detection_port(
    global: &GlobalArgs,
    ws: &Workspace,
    cloud: &CloudArgs,
) -> Result<(Wired, Ops)> {
    if !cloud.cloud {
        let w = wired(global, ws).await?;
        let ops = Ops::new(w.engine.clone(), Arc::new(Hold));
        return Ok((w, ops));
    }
    let config = cloud_config(global, ws)?;
    let settings = cloud.settings.settings();
    let w = runtime::cloud_data_engine(global, config, &settings, EngineOptions::default()).await?;
    let sfn = StepFunctions::new(
        super::cloud_cmd::dispatcher(&settings).await?,
        "stopped with `avesa-console cancel`",
        w.engine.clone(),
    );
    let ops = Ops::new(w.engine.clone(), Arc::new(sfn));
    Ok((w, ops))
}

/// `trigger --auto-detect`: decide for every tenant's service, print each decision with its
/// reason, and (unless `--dry-run`) create a backfill for each selected one.
pub async fn auto_detect(
    global: &GlobalArgs,
    ws: &Workspace,
    args: &TriggerArgs,
) -> Result<ExitCode> {
    if args.range.tenant_id.is_some() || args.range.service.is_some() {
        bail!(super::UsageError(
            "--auto-detect decides for every tenant and service: drop --tenant-id and --service"
                .into()
        ));
    }
    let (w, ops) = detection_port(global, ws, &args.cloud).await?;
    let engine = &w.engine;
    let now = Utc::now();
    let decisions = engine.detect(now).await?;
    let mut created = Vec::new();
    if !args.dry_run {
        let wait = engine
            .config()
            .backfill
            .scheduling
            .auto_triggered_wait_for_off_peak
            || args.wait_off_peak;
        for d in decisions.iter().filter(|d| d.selected) {
            let mut plan = planner::plan(
                engine.config(),
                &PlanRequest {
                    tenant_id: d.tenant_id.clone(),
                    service: d.service,
                    tables: Vec::new(),
                    start: None,
                    end: None,
                    chunk_size_days: args.range.chunk_size_days,
                },
                now,
            )?;
            engine
                .size_plan(&mut plan, args.range.chunk_size_days)
                .await;
            let hints = Hints {
                priority: args.priority.unwrap_or(0),
                trigger: Trigger::Auto,
                wait_off_peak: wait,
            };
            // Auto-detected jobs are the configuration's decision: no confirmation (`guard`).
            let none = Confirmation::None;
            if let Outcome::Triggered { job, .. } = ops.trigger(&plan, hints, &none, now).await? {
                created.push(job);
            }
        }
    }
    out::print_detection(&decisions, &created, args.dry_run, args.output)?;
    Ok(ExitCode::SUCCESS)
}
