//! The job commands: `trigger` (one range), `resume [--retry-failed]`, `cancel`, `pause` and
//! `unpause`, each with or without `--cloud`. Every one is a call to the operations API
//! (`engine::ops`); this module only picks its port (the local runner, `Hold` for a trigger
//! without `--run`, or Step Functions with `--cloud`) and prints what it answers.

use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use color_eyre::eyre::{Result, bail};
use serde_json::json;

use super::args::{deadline, exit_for, make_plan, page_size};
use super::print::print_json;
use super::runtime::{self, Wired};
use super::{
    CloudArgs, ConfirmArgs, ExecArgs, GlobalArgs, JobArgs, Output, ResumeArgs, TriggerArgs,
    cloud_cmd, output,
};
use crate::cloud::ops::{LaneOptions, StepFunctions};
use crate::config::Config;
use crate::domain::Trigger;
use crate::engine::chunking;
use crate::engine::ops::{Hints, Hold, JobAction, LocalRunner, Ops, Outcome, RunnerOptions, Start};
use crate::engine::planner::{self, Plan};
use crate::engine::{EngineOptions, RunOutcome};
use crate::workspace::Workspace;

/// Where an operations command runs its jobs.
enum Port {
    /// Starts nothing: the job stays pending for `run`.
    Hold,
    /// Runs them in this process, under the scheduling rules, until they end.
    Run(ExecOptions),
    /// Step Functions executions with these lanes.
    Cloud(LaneOptions),
}

/// How a run in this process goes.
#[derive(Clone, Copy, Default)]
struct ExecOptions {
    concurrency: Option<usize>,
    deadline: Option<tokio::time::Instant>,
}

impl ExecOptions {
    fn from_args(exec: &ExecArgs) -> Result<ExecOptions> {
        Ok(ExecOptions {
            concurrency: exec.concurrency,
            deadline: deadline(exec),
        })
    }
}

/// The operations API with its port, and what must stay alive while it works.
struct Wiring {
    ops: Ops,
    runner: Option<LocalRunner>,
    /// The local engine's sandbox, when one was started here.
    _wired: Option<Wired>,
}

async fn wire(
    global: &GlobalArgs,
    ws: &Workspace,
    config: Arc<Config>,
    cloud: &CloudArgs,
    port: Port,
) -> Result<Wiring> {
    if cloud.cloud {
        let Port::Cloud(lanes) = port else {
            bail!("--run runs the job in this process; with --cloud the workers run it");
        };
        let settings = cloud.settings.settings();
        let engine = runtime::cloud_engine(ws, config, &settings).await?;
        // A state machine, queue or bucket that is not there is one line naming it, before
        // any job is written (the queue and bucket when they are set: the workers use them).
        use crate::cloud::Setting::{Bucket, QueueUrl, StateMachineArn};
        let aws = crate::cloud::aws_config().await;
        let needs = [StateMachineArn, QueueUrl, Bucket];
        crate::cloud::deploy::require_resources(&aws, &settings, &needs).await?;
        let sfn = StepFunctions::new(
            cloud_cmd::dispatcher(&settings).await?,
            "stopped with `avesa-console cancel`",
            engine.clone(),
        )
        .with_lanes(lanes);
        return Ok(Wiring {
            ops: Ops::new(engine, Arc::new(sfn)),
            runner: None,
            _wired: None,
        });
    }
    let Port::Run(exec) = port else {
        return Ok(Wiring {
            ops: Ops::new(runtime::store_engine(ws, config)?, Arc::new(Hold)),
            runner: None,
            _wired: None,
        });
    };
    let options = EngineOptions {
        chunk_concurrency: exec.concurrency,
        ..EngineOptions::default()
    };
    let wired = runtime::wire_engine(global, ws, config, options).await?;
    let runner = LocalRunner::new(
        wired.engine.clone(),
        RunnerOptions {
            deadline: exec.deadline,
            ..RunnerOptions::default()
        },
    );
    Ok(Wiring {
        ops: Ops::new(wired.engine.clone(), Arc::new(runner.clone())),
        runner: Some(runner),
        _wired: Some(wired),
    })
}

/// The log level and destination of a job command: the workspace's log file when it runs
/// jobs here.
fn init_logging(global: &GlobalArgs, ws: &Workspace, cloud: &CloudArgs) -> Result<()> {
    if cloud.cloud {
        runtime::init_logging(&global.log_level, None)
    } else {
        ws.ensure()?;
        runtime::init_logging(&global.log_level, Some(ws))
    }
}

fn print_outcome(outcome: &Outcome, out: Output) -> Result<()> {
    if out == Output::Json {
        let mut value = json!({ "job_id": outcome.job_id(), "message": outcome.to_string() });
        if let Outcome::Triggered { job, created, .. } = outcome {
            value["created"] = json!(created);
            value["job"] = json!(job);
        }
        if let Some(start) = outcome.start() {
            value["start"] = json!(start);
        }
        return print_json(&value);
    }
    outln!("{outcome}");
    Ok(())
}

/// Waits for the runs this command handed to the local runner, and exits as `run` does.
async fn finish(runner: Option<LocalRunner>, outcome: &Outcome) -> Result<ExitCode> {
    let Some(runner) = runner else {
        return Ok(ExitCode::SUCCESS);
    };
    let done: RunOutcome = runner.wait_for(outcome.job_id()).await?;
    output::print_outcomes(std::slice::from_ref(&done));
    Ok(exit_for(&[done]))
}

/// `trigger` for one range: plans it, stores the job and hands it to the port.
pub async fn trigger(global: &GlobalArgs, ws: &Workspace, args: &TriggerArgs) -> Result<ExitCode> {
    let config = runtime::load_config(global, ws)?;
    let plan = plan_for(global, ws, &config, args).await?;
    if args.dry_run {
        runtime::init_logging(&global.log_level, None)?;
        let est = planner::estimate(&plan, None, |t| page_size(&config, plan.service, t));
        output::print_plan(&plan, &est, &Ok(None), args.output)?;
        return Ok(ExitCode::SUCCESS);
    }
    let port = match (args.cloud.cloud, args.run) {
        (true, false) => Port::Cloud(LaneOptions {
            lanes: args.lanes,
            heartbeat_seconds: args.heartbeat_seconds,
            max_iterations: args.max_iterations,
        }),
        (_, true) => Port::Run(ExecOptions::default()),
        (false, false) => Port::Hold,
    };
    init_logging(global, ws, &args.cloud)?;
    let wiring = wire(global, ws, config, &args.cloud, port).await?;
    let hints = Hints {
        priority: args.priority.unwrap_or(1),
        trigger: Trigger::Manual,
        wait_off_peak: args.wait_off_peak,
    };
    let confirm = args.confirm.confirmation();
    let outcome = wiring
        .ops
        .trigger(&plan, hints, &confirm, Utc::now())
        .await?;
    print_outcome(&outcome, args.output)?;
    finish(wiring.runner, &outcome).await
}

/// The range's plan, its windows sized by the source's counts unless fixed ones were asked for,
/// with the declared fields the user cannot read (`Engine::check_fields`).
async fn plan_for(
    global: &GlobalArgs,
    ws: &Workspace,
    config: &Arc<Config>,
    args: &TriggerArgs,
) -> Result<Plan> {
    let mut plan = make_plan(config, &args.range)?;
    let rules = &config.backfill.smart_chunking;
    ws.ensure()?;
    runtime::init_logging(&global.log_level, Some(ws))?;
    let wired = runtime::wire_engine(global, ws, config.clone(), EngineOptions::default()).await?;
    if chunking::sized_by_counts(rules, args.range.chunk_size_days, args.smart_chunking) {
        wired.engine.refine_plan(&mut plan).await?;
    }
    // The fields the user cannot read, asked here: an engine without sources (`trigger`
    // without `--run`, `--cloud`) creates the job with the plan's list.
    wired.engine.check_fields(&mut plan).await?;
    Ok(plan)
}

/// `resume [--retry-failed]`: continues the job (reopening its failed chunks first) and, in
/// this process, runs it until it ends or the time budget does.
pub async fn resume(global: &GlobalArgs, ws: &Workspace, args: &ResumeArgs) -> Result<ExitCode> {
    let action = match args.retry_failed {
        true => JobAction::RetryFailed,
        false => JobAction::Resume,
    };
    let port = match args.cloud.cloud {
        true => Port::Cloud(LaneOptions::default()),
        false => Port::Run(ExecOptions::from_args(&args.exec)?),
    };
    act(
        global,
        ws,
        (&args.job_id, &args.cloud, &args.confirm, Output::Text),
        action,
        port,
    )
    .await
}

/// `cancel`, `pause`, `unpause`: a status change the job's runners read at their next lease
/// renewal; with `--cloud`, a cancel also stops the running execution and an unpause starts
/// the next one. A local unpause leaves the job pending for `run`.
pub async fn job_action(
    global: &GlobalArgs,
    ws: &Workspace,
    args: &JobArgs,
    action: JobAction,
) -> Result<ExitCode> {
    let port = match args.cloud.cloud {
        true => Port::Cloud(LaneOptions::default()),
        false => Port::Hold,
    };
    act(
        global,
        ws,
        (&args.job_id, &args.cloud, &args.confirm, args.output),
        action,
        port,
    )
    .await
}

/// The job a command names, where (`--cloud`), its tenant's confirmation and how it prints.
type Target<'a> = (&'a str, &'a CloudArgs, &'a ConfirmArgs, Output);

async fn act(
    global: &GlobalArgs,
    ws: &Workspace,
    (job_id, cloud, confirm, out): Target<'_>,
    action: JobAction,
    port: Port,
) -> Result<ExitCode> {
    let config = runtime::load_config(global, ws)?;
    if !cloud.cloud {
        runtime::require_store(ws, job_id)?;
    }
    init_logging(global, ws, cloud)?;
    let wiring = wire(global, ws, config, cloud, port).await?;
    let confirm = confirm.confirmation();
    let outcome = wiring.ops.act(action, job_id, &confirm, Utc::now()).await?;
    print_outcome(&outcome, out)?;
    finish(wiring.runner, &outcome).await
}

/// `run --job-id J`: the job as it is, through the local runner (its off-peak hint and the
/// limits apply) until it ends or the time budget does.
pub async fn run_one(
    global: &GlobalArgs,
    ws: &Workspace,
    job_id: &str,
    exec: &ExecArgs,
) -> Result<ExitCode> {
    let port = Port::Run(ExecOptions::from_args(exec)?);
    let config = runtime::load_config(global, ws)?;
    runtime::require_store(ws, job_id)?;
    let local = CloudArgs::default();
    init_logging(global, ws, &local)?;
    let wiring = wire(global, ws, config, &local, port).await?;
    let start = wiring.ops.start(job_id).await?;
    if let Start::Waiting { why } = &start {
        outln!("{job_id}: {why}");
    }
    let Some(runner) = wiring.runner else {
        return Ok(ExitCode::SUCCESS);
    };
    let done = runner.wait_for(job_id).await?;
    output::print_outcomes(std::slice::from_ref(&done));
    Ok(exit_for(&[done]))
}
