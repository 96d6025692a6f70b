//! The cloud side of the commands: `status --cloud`, `logs` (either side) and `worker`; the
//! Step Functions dispatcher the job commands (`ops_cmd`) use with `--cloud`.

use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use color_eyre::eyre::{Result, bail, eyre};
use serde_json::json;

use super::runtime;
use super::status::print_status_list;
use super::{CloudArgs, LogsArgs, Output, StatusArgs, WorkerArgs, output};
use crate::cloud::logs::{CloudWatchLogSource, CurrentJobs};
use crate::cloud::sfn::{Dispatcher, ExecutionInfo};
use crate::cloud::worker::{Worker, WorkerOptions};
use crate::cloud::{CloudSettings, Setting, aws_config};
use crate::engine::EngineOptions;
use crate::engine::schedule::Limits;
use crate::logs::{LocalLogSource, LogCursor, LogQuery, LogSource};
use crate::store::FleetEntry;
use crate::workspace::Workspace;

pub(super) async fn dispatcher(settings: &CloudSettings) -> Result<Dispatcher> {
    let arn = settings.require(Setting::StateMachineArn)?;
    let config = aws_config().await;
    Ok(Dispatcher::new(aws_sdk_sfn::Client::new(&config), arn))
}

/// Jobs from DynamoDB with the sync markers and gaps, as local `status` prints them, then
/// the admission queue (queued jobs and why they wait, under `limits`); one job with its
/// newest execution (DescribeExecution) and its place in the queue.
pub async fn status(args: &StatusArgs, limits: Option<Limits>) -> Result<ExitCode> {
    let settings = args.cloud.settings.settings();
    let (store, lifecycle) = runtime::open_cloud_stores(&settings).await?;
    let queue = store.fleet().await?.entries;
    let Some(id) = &args.job_id else {
        print_status_list(
            store.as_ref(),
            lifecycle.as_ref(),
            args.tenant_id.as_deref(),
            args.output,
        )
        .await?;
        if args.output == Output::Text {
            print_queue(&queue, limits, None);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let job = store
        .get_job(id)
        .await?
        .ok_or_else(|| eyre!("job '{id}' not found"))?;
    let chunks = store.chunks(id).await?;
    let execution = match settings.state_machine_arn {
        Some(_) => dispatcher(&settings).await?.latest(id).await?,
        None => None,
    };
    let waits = super::status::quota_waits(lifecycle.as_ref(), std::slice::from_ref(&job)).await?;
    if args.output == Output::Json {
        let job = output::job_json(&job, waits.get(id).copied());
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "job": job, "chunks": chunks, "execution": execution })
            )?
        );
        return Ok(ExitCode::SUCCESS);
    }
    output::print_job_detail(&job, &waits, &chunks, Output::Text)?;
    match &execution {
        Some(e) => print_execution_status(e),
        None => outln!("\nexecution: none found"),
    }
    print_queue(&queue, limits, Some(id));
    Ok(ExitCode::SUCCESS)
}

/// The admission queue's waiting jobs (or only `only`), each with why it waits when the
/// limits are known.
fn print_queue(queue: &[FleetEntry], limits: Option<Limits>, only: Option<&str>) {
    let view = limits.map(|l| crate::engine::fleet::view(queue.to_vec(), &l, Utc::now()));
    let waiting: Vec<&FleetEntry> = queue
        .iter()
        .filter(|e| e.admitted_at.is_none() && only.is_none_or(|id| id == e.job_id))
        .collect();
    if waiting.is_empty() {
        return;
    }
    if only.is_none() {
        outln!("\nqueued for admission:");
    }
    for e in waiting {
        let why = view
            .as_ref()
            .and_then(|v| v.waiting.get(&e.job_id))
            .map_or_else(|| "waits for admission".to_string(), |w| w.to_string());
        match only {
            Some(_) => outln!(
                "\nqueued since {}: {why}",
                e.queued_at.format("%Y-%m-%dT%H:%M:%SZ")
            ),
            None => outln!("  {}  {}  {why}", e.job_id, e.tenant_id),
        }
    }
}

fn print_execution_status(e: &ExecutionInfo) {
    let when = |t: Option<chrono::DateTime<Utc>>| {
        t.map_or_else(
            || "-".into(),
            |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
    };
    outln!(
        "\nexecution {}  {}  started {}  stopped {}",
        e.name,
        e.status,
        when(e.started_at),
        when(e.stopped_at)
    );
    if let Some(err) = &e.error {
        outln!("  {err}: {}", e.cause.as_deref().unwrap_or(""));
    }
}

async fn log_source(ws: &Workspace, cloud: &CloudArgs) -> Result<Box<dyn LogSource>> {
    if !cloud.cloud {
        return Ok(Box::new(LocalLogSource::new(
            ws.logs_dir().join("engine.jsonl"),
        )));
    }
    let settings = cloud.settings.settings();
    let group = settings.require(Setting::LogGroup)?;
    let config = aws_config().await;
    Ok(Box::new(CloudWatchLogSource::new(
        aws_sdk_cloudwatchlogs::Client::new(&config),
        group,
    )))
}

/// Prints a job's log lines; with `--follow`, keeps polling for new ones until Ctrl-C.
pub async fn logs(ws: &Workspace, args: &LogsArgs) -> Result<ExitCode> {
    let query = LogQuery {
        job_id: args.job_id.clone(),
        chunk: args
            .chunk
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| eyre!("--chunk: {e}"))?,
        min_level: args
            .level
            .parse()
            .map_err(|e: String| eyre!("--level: {e}"))?,
    };
    let source = log_source(ws, &args.cloud).await?;
    let poll = if args.cloud.cloud {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(500)
    };
    let mut cursor = LogCursor::default();
    let mut shown = 0usize;
    loop {
        for line in source.read(&query, &mut cursor).await? {
            shown += 1;
            match args.output {
                Output::Json => outln!("{}", serde_json::to_string(&line)?),
                Output::Text => outln!("{}", line.render()),
            }
        }
        if !args.follow {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    if shown == 0 && !args.follow {
        if !args.cloud.cloud {
            runtime::require_job(ws, &args.job_id).await?;
        }
        eprintln!(
            "no log lines for job {} in {}",
            args.job_id,
            source.describe()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A worker from the command line's settings: DynamoDB store, S3 sink, CloudWatch Logs
/// (when a log group is set), and the configured sources.
async fn build_worker(
    global: &super::GlobalArgs,
    ws: &Workspace,
    args: &WorkerArgs,
) -> Result<(Worker, Option<crate::cloud::logs::Shipper>)> {
    let settings = args.settings.settings();
    let queue_url = settings.require(Setting::QueueUrl)?.to_string();
    settings.require(Setting::Bucket)?;
    let config = aws_config().await;
    // A queue or bucket that is not there is one line, not a worker failing every poll.
    let needs = [Setting::QueueUrl, Setting::Bucket];
    crate::cloud::deploy::require_resources(&config, &settings, &needs).await?;
    let jobs = CurrentJobs::default();
    let options = EngineOptions {
        lease: args.lease,
        ..EngineOptions::default()
    };
    let mut metrics = None;
    let shipper = match &settings.log_group {
        Some(group) => {
            let (writer, shipper) = crate::cloud::logs::start_writer(
                aws_sdk_cloudwatchlogs::Client::new(&config),
                group.clone(),
                options.owner.clone(),
                jobs.clone(),
            );
            metrics = Some(writer.metrics());
            runtime::init_logging_with(&global.log_level, None, Some(writer))?;
            Some(shipper)
        }
        None => {
            runtime::init_logging(&global.log_level, None)?;
            None
        }
    };
    let engine_config = runtime::load_config(global, ws)?;
    // With the lifecycle store the transform step moves markers and finalises the job once,
    // and alerts are stored once per kind and subject, as in a local run.
    let wired = runtime::cloud_data_engine(global, engine_config, &settings, options).await?;
    if wired._sandbox.is_some() {
        bail!(
            "the registry's connections point at ${{SANDBOX_URL}}: give the worker the \
             deployment's sandbox with --sandbox-url (a worker never starts its own)"
        );
    }
    // Metrics records go to the log group as Embedded Metric Format events.
    let engine = match metrics {
        Some(m) => wired.engine.with_metrics(std::sync::Arc::new(m)),
        None => wired.engine,
    };
    let worker = Worker::new(
        engine,
        aws_sdk_sfn::Client::new(&config),
        aws_sdk_sqs::Client::new(&config),
        WorkerOptions {
            wait_seconds: args.wait_seconds,
            visibility_seconds: args.visibility_seconds.max(1),
            concurrency: args.concurrency.max(1),
            hold: args.hold,
            execution_window: args.execution_window,
            claim_wait: args.claim_wait,
            state_machine_arn: settings.state_machine_arn.clone(),
            ..WorkerOptions::new(&queue_url)
        },
        jobs,
    );
    let worker = match &shipper {
        Some(s) => worker.with_log_shipper(s.clone()),
        None => worker,
    };
    Ok((worker, shipper))
}

/// Runs a worker until SIGTERM or Ctrl-C.
pub async fn worker(
    global: &super::GlobalArgs,
    ws: &Workspace,
    args: &WorkerArgs,
) -> Result<ExitCode> {
    if let Some(path) = &args.lambda_event {
        return lambda_event(global, ws, args, path).await;
    }
    let (worker, shipper) = build_worker(global, ws, args).await?;
    let flag = worker.shutdown_flag();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("worker shutting down: chunks are released at their checkpoint");
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let result = worker.run().await;
    if let Some(shipper) = shipper {
        shipper.flush().await;
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// `worker --lambda-event FILE`: one SQS event handled as the Lambda handles it, by a worker
/// built as `worker` builds it; prints the batch response. The event is read (and checked to
/// be JSON) before anything is built, so bad input fails fast naming the file.
async fn lambda_event(
    global: &super::GlobalArgs,
    ws: &Workspace,
    args: &WorkerArgs,
    path: &std::path::Path,
) -> Result<ExitCode> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| eyre!("--lambda-event -: cannot read stdin: {e}"))?;
        ("stdin".to_string(), text)
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| eyre!("--lambda-event {}: cannot read: {e}", path.display()))?;
        (path.display().to_string(), text)
    };
    let payload: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| eyre!("--lambda-event {name}: not JSON: {e}"))?;
    // Refused before the worker (and its AWS clients) is built.
    crate::cloud::lambda::actions(&payload).map_err(|e| eyre!("--lambda-event {name}: {e}"))?;
    let (worker, shipper) = build_worker(global, ws, args).await?;
    let answer = crate::cloud::lambda::handle_event(&worker, &payload, args.lambda_remaining)
        .await
        .map_err(|e| eyre!("--lambda-event {name}: {e}"));
    if let Some(shipper) = shipper {
        shipper.flush().await;
    }
    outln!("{}", serde_json::to_string(&answer?)?);
    Ok(ExitCode::SUCCESS)
}

/// The worker as a Lambda function: each SQS event's messages handled as `worker` would.
#[cfg(feature = "lambda")]
pub async fn lambda(global: &super::GlobalArgs, ws: &Workspace, args: &WorkerArgs) -> Result<()> {
    let (worker, shipper) = build_worker(global, ws, args).await?;
    crate::cloud::lambda::runtime::run(worker, shipper)
        .await
        .map_err(|e| eyre!("{e}"))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
