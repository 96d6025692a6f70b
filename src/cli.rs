//! The command line: clap definitions and the dispatch to each command.

/// `println!` that ends the process quietly when stdout is closed (`| head`), as a
/// command-line tool should, instead of panicking on the broken pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod args;
mod bench;
mod check;
mod cloud_cmd;
mod commands;
mod console;
mod deploy_cmd;
mod lifecycle_cmd;
mod lifecycle_output;
mod ops_cmd;
mod output;
mod print;
mod runtime;
mod sandbox_cmd;
mod status;
mod tenant_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{CHUNK_SIZE_DAYS, MAX_IN_FLIGHT};

pub use runtime::sandbox_config;
pub use sandbox_cmd::listening_url;

/// Exit code when a time budget ran out before the work did: state is saved, run again.
pub const EXIT_CONTINUATION: u8 = 75;
/// Exit code when a job ended with failed chunks.
pub const EXIT_JOB_ERRORS: u8 = 3;
/// Exit code when verification found records missing, or the gap check found a gap.
pub const EXIT_VERIFY_FAILED: u8 = 4;
/// Exit code for a command line that clap accepted but that misses a required value.
pub const EXIT_USAGE: u8 = 2;
/// Exit code when the job's state does not allow the action (resume a completed job, cancel
/// a cancelled one…): the refusal is on stderr, worded as the console words it.
pub const EXIT_REFUSED: u8 = 5;

/// A command line missing something that depends on other flags (`--tenant-id` unless
/// `--auto-detect`): exits 2 like clap's own refusals.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[derive(Parser, Debug)]
#[command(name = "avesa-console", version, about = "Plan, run and watch SaaS backfills per tenant", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(flatten)]
    pub console: ConsoleArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Folder holding the job store, raw data, logs and (unless --config-dir) the configuration.
    #[arg(long, global = true, env = "AVESA_WORKSPACE")]
    pub workspace: Option<PathBuf>,
    /// Configuration folder laid out like `mappings/` (default: WORKSPACE/config, seeded from the built-in files).
    #[arg(long, global = true, env = "AVESA_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
    /// Address of a running sandbox, for connections whose base URL uses ${SANDBOX_URL}
    /// (default: start one inside this process).
    #[arg(long, global = true, env = "AVESA_SANDBOX_URL")]
    pub sandbox_url: Option<String>,
    /// Log filter for the terminal, e.g. `info`, `warn`, `avesa_console=debug`.
    #[arg(long, global = true, env = "AVESA_LOG", default_value = "info")]
    pub log_level: String,
    /// JSON fault plan for the sandbox started inside this process (as `sandbox --faults`).
    #[arg(long, global = true, env = "AVESA_SANDBOX_FAULTS")]
    pub sandbox_faults: Option<PathBuf>,
}

/// How the console looks and what it may do.
#[derive(Args, Debug, Clone, Default)]
pub struct ConsoleArgs {
    /// Watch only: every key that would change a job is refused.
    #[arg(long)]
    pub read_only: bool,
    /// Colour theme: dark (default), light, high-contrast, or a .toml file; NO_COLOR turns colour off.
    #[arg(long, env = "AVESA_THEME")]
    pub theme: Option<String>,
    /// Mouse: click selects a row, the wheel scrolls (also `mouse = true` in CONFIG_DIR/keys.toml).
    #[arg(long)]
    pub mouse: bool,
    /// With --cloud: the cloud deployment's jobs, dispatched to Step Functions, with their CloudWatch Logs.
    #[command(flatten)]
    pub cloud: CloudArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The interactive console (the default when stdout is a terminal).
    Console(ConsoleArgs),
    /// Tenants, their services and latest jobs as text (the default when stdout is not a terminal).
    Summary,
    /// Create a backfill job (or find the active one for the same range).
    Trigger(TriggerArgs),
    /// Show the exact chunk list of a backfill and its estimated API calls and duration.
    Plan(PlanArgs),
    /// Run pending jobs (or one job) until they finish or the time budget ends.
    Run(RunArgs),
    /// Continue a job from its last checkpoint.
    Resume(ResumeArgs),
    /// Jobs and their progress.
    Status(StatusArgs),
    /// Check each connected service of a tenant: credentials, connectivity, every table.
    Check(check::CheckArgs),
    /// Onboard a tenant's connection (`tenant add`) or take a tenant out (`tenant remove`).
    Tenant(tenant_cmd::TenantArgs),
    /// Serve the simulated source APIs on loopback.
    Sandbox(sandbox_cmd::SandboxArgs),
    /// Measure end-to-end backfill throughput and memory against a local sandbox.
    Bench(bench::BenchArgs),
    /// The console's keys in effect (defaults with CONFIG_DIR/keys.toml laid over them).
    Keys(KeysArgs),
    /// Run an incremental sync of a tenant's service: `[marker, now)` per table.
    Sync(lifecycle_cmd::SyncArgs),
    /// Compare each chunk's landed records with the source's own count.
    Verify(lifecycle_cmd::VerifyArgs),
    /// Rebuild a tenant's canonical tables (SCD Type 2) from its raw data.
    Transform(lifecycle_cmd::TransformArgs),
    /// Rewrite the small raw parts of finished windows into larger files (also done after
    /// every completed job); prints file counts and sizes before and after.
    Compact(lifecycle_cmd::CompactArgs),
    /// Remove completed jobs older than the cleanup age from the store (data is kept).
    Cleanup(lifecycle_cmd::CleanupArgs),
    /// Alerts raised by monitoring thresholds and the sync gap check.
    Alerts(lifecycle_cmd::AlertsArgs),
    /// Cancel a job: its chunks stop at their next checkpoint (with --cloud: also stop its execution).
    Cancel(JobArgs),
    /// Pause a job: its chunks in flight finish, no new one starts until `unpause` or `resume`.
    Pause(JobArgs),
    /// Let a paused job run again (with --cloud: in its next execution; locally: at the next `run`).
    Unpause(JobArgs),
    /// A job's log lines (local workspace, or CloudWatch Logs with --cloud).
    Logs(LogsArgs),
    /// Work on chunks the cloud state machine sends through the SQS queue.
    Worker(WorkerArgs),
    /// Create, remove or check the cloud deployment (on the emulators, or how to on AWS).
    #[command(subcommand)]
    Cloud(CloudAction),
}

#[derive(Subcommand, Debug)]
pub enum CloudAction {
    /// Create what is missing of the deployment on the emulators (--emulators) or record a
    /// deployed stack's outputs (--stack-outputs), in the deployment's settings file the
    /// `--cloud` commands read; without either: the CloudFormation commands for AWS.
    Up(DeployArgs),
    /// Remove the deployment from the emulators (data, job state and logs included).
    Down(DeployArgs),
    /// Check every resource of the deployment the settings name; one line per missing one.
    Status(CloudStatusArgs),
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// The local emulators (moto, DynamoDB Local) instead of AWS; started with
    /// `scripts/emulators start` when no URL is given.
    #[arg(long)]
    pub emulators: bool,
    /// The deployment's name (the stack name on AWS): it names the queue, bucket, log groups,
    /// state machine and tables.
    #[arg(long, env = "AVESA_DEPLOYMENT", default_value = "avesa")]
    pub name: String,
    /// moto's address (default: what `scripts/emulators env` prints).
    #[arg(long, env = "AVESA_TEST_MOTO_URL")]
    pub moto_url: Option<String>,
    /// DynamoDB Local's address (default: what `scripts/emulators env` prints).
    #[arg(long, env = "AVESA_TEST_DYNAMODB_URL")]
    pub dynamodb_url: Option<String>,
    /// The deployed stack's outputs (the JSON `aws cloudformation describe-stacks --query
    /// 'Stacks[0].Outputs'` prints; `-` for stdin): written to the deployment's settings file.
    #[arg(long, value_name = "FILE", conflicts_with = "emulators")]
    pub stack_outputs: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CloudStatusArgs {
    #[command(flatten)]
    pub settings: CloudSettingArgs,
}

/// Where the cloud deployment is; the stack's outputs give each value (see README).
#[derive(Args, Debug, Clone, Default)]
pub struct CloudSettingArgs {
    /// The backfill state machine (stack output StateMachineArn).
    #[arg(long, env = "AVESA_CLOUD_STATE_MACHINE_ARN")]
    pub state_machine_arn: Option<String>,
    /// The worker queue (stack output QueueUrl).
    #[arg(long, env = "AVESA_CLOUD_QUEUE_URL")]
    pub queue_url: Option<String>,
    /// The S3 bucket raw data lands in (stack output DataBucket).
    #[arg(long, env = "AVESA_CLOUD_BUCKET")]
    pub bucket: Option<String>,
    /// Prefix of the DynamoDB job tables `{prefix}_jobs` and `{prefix}_chunks` (stack output TablePrefix).
    #[arg(long, env = "AVESA_CLOUD_TABLE_PREFIX")]
    pub table_prefix: Option<String>,
    /// The CloudWatch Logs group workers write to (stack output LogGroup).
    #[arg(long, env = "AVESA_CLOUD_LOG_GROUP")]
    pub log_group: Option<String>,
    /// The deployment whose settings file (WORKSPACE/cloud/NAME.json, written by `cloud up`)
    /// gives what no flag or variable does.
    #[arg(long, env = "AVESA_DEPLOYMENT", default_value = "avesa")]
    pub deployment: String,
    /// The settings file that was read, if any, and the settings it gave.
    #[arg(skip)]
    pub file: Option<(PathBuf, Vec<crate::cloud::Setting>)>,
    /// The deployment's region as its settings file says (from its state machine's ARN).
    #[arg(skip)]
    pub region: Option<String>,
}

impl CloudSettingArgs {
    pub fn settings(&self) -> crate::cloud::CloudSettings {
        crate::cloud::CloudSettings {
            state_machine_arn: self.state_machine_arn.clone(),
            queue_url: self.queue_url.clone(),
            bucket: self.bucket.clone(),
            table_prefix: self.table_prefix.clone(),
            log_group: self.log_group.clone(),
        }
    }

    /// Fills each setting no flag or variable gives from the deployment's settings file, when
    /// there is one; a file that cannot be read is refused (naming it and the field).
    pub fn fill_from_file(&mut self, ws: &crate::workspace::Workspace) -> Result<(), UsageError> {
        use crate::cloud::settings_file::{DeploymentSettings, path};
        if !crate::cloud::deploy::valid_name(&self.deployment) {
            return Err(UsageError(format!(
                "--deployment '{}' (or AVESA_DEPLOYMENT): use 3 to 40 lowercase letters, digits \
                 and inner '-'",
                self.deployment
            )));
        }
        let file = path(&ws.root, &self.deployment);
        let stored = DeploymentSettings::read(&file).map_err(|e| UsageError(e.to_string()))?;
        let Some(stored) = stored else {
            return Ok(());
        };
        let mut settings = self.settings();
        let mut filled = Vec::new();
        for setting in crate::cloud::Setting::ALL {
            if settings.require(setting).is_err() {
                *settings.slot_mut(setting) = stored.get(setting).map(str::to_string);
                filled.push(setting);
            }
        }
        self.state_machine_arn = settings.state_machine_arn;
        self.queue_url = settings.queue_url;
        self.bucket = settings.bucket;
        self.table_prefix = settings.table_prefix;
        self.log_group = settings.log_group;
        self.region = stored.region;
        crate::cloud::use_deployment_region(self.region.clone());
        self.file = Some((file, filled));
        Ok(())
    }

    /// Where a setting's value came from: the settings file, the variable, or the flag.
    pub fn origin(&self, setting: crate::cloud::Setting) -> String {
        let (_, flag, env) = setting.describe();
        if let Some((file, filled)) = &self.file
            && filled.contains(&setting)
        {
            return format!("settings file {}", file.display());
        }
        let Ok(value) = self.settings().require(setting).map(str::to_string) else {
            return "not set".into();
        };
        match std::env::var(env) {
            Ok(v) if v.trim() == value => env.to_string(),
            _ => flag.to_string(),
        }
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct CloudArgs {
    /// Use the cloud deployment (DynamoDB, Step Functions, CloudWatch Logs) instead of this workspace.
    #[arg(long)]
    pub cloud: bool,
    #[command(flatten)]
    pub settings: CloudSettingArgs,
}

impl CloudArgs {
    /// With `--cloud`, every setting in `needs` must be given (by flag or environment
    /// variable): otherwise one line naming each missing one, its flag and its variable. A
    /// `--cloud` command never runs half-configured, nor falls back to the workspace.
    pub fn check(&self, command: &str, needs: &[crate::cloud::Setting]) -> Result<(), UsageError> {
        if !self.cloud {
            return Ok(());
        }
        let settings = self.settings.settings();
        let missing: Vec<String> = needs
            .iter()
            .filter_map(|s| settings.require(*s).err().map(|e| e.to_string()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(UsageError(format!(
            "{command} --cloud needs {} (the stack's outputs give each: `avesa-console cloud up \
             --stack-outputs` writes them to the deployment's settings file, read for \
             --deployment '{}')",
            missing.join("; "),
            self.settings.deployment
        )))
    }
}

/// The typed tenant id a change to a protected tenant needs (`engine::ops::guard`).
#[derive(Args, Debug, Clone, Default)]
pub struct ConfirmArgs {
    /// The tenant's id, repeated to confirm a change to a protected tenant (`protected: true`
    /// in the tenants registry).
    #[arg(long, value_name = "TENANT_ID")]
    pub confirm_tenant: Option<String>,
}

impl ConfirmArgs {
    pub fn confirmation(&self) -> crate::engine::ops::Confirmation {
        use crate::engine::ops::Confirmation;
        self.confirm_tenant
            .clone()
            .map_or(Confirmation::None, Confirmation::TenantId)
    }
}

#[derive(Args, Debug)]
pub struct JobArgs {
    pub job_id: String,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub cloud: CloudArgs,
    #[command(flatten)]
    pub confirm: ConfirmArgs,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    pub job_id: String,
    /// Only this chunk, as TABLE#SEQ (e.g. tickets#3).
    #[arg(long)]
    pub chunk: Option<String>,
    /// Keep reading new lines as they are written (Ctrl-C to stop).
    #[arg(long)]
    pub follow: bool,
    /// Lowest level shown: trace, debug, info, warn, error.
    #[arg(long, default_value = "trace")]
    pub level: String,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub settings: CloudSettingArgs,
    /// Lease on a claimed chunk, renewed while it runs; a dead worker's chunk is taken over
    /// once its lease expires.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub lease: Duration,
    /// Long-poll wait of one receive (0 to 20 seconds).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i32).range(0..=20))]
    pub wait_seconds: i32,
    /// Seconds a received message stays hidden from other workers; renewed with each heartbeat.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(i32).range(1..=43_200))]
    pub visibility_seconds: i32,
    /// Messages worked on at once (1 to 64).
    #[arg(long, default_value_t = 1, value_parser = args::ranged::<usize>(1..=64))]
    pub concurrency: usize,
    /// Messages held beyond those worked on, heartbeated while they wait for a free slot, so a
    /// task waiting behind busy lanes does not time out (0 to 256).
    #[arg(long, default_value_t = 16, value_parser = args::ranged::<usize>(0..=256))]
    pub hold: usize,
    /// How long a lane waits for a claimable chunk before letting the state machine loop.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub claim_wait: Duration,
    /// An execution older than this continues as a new one (the limit is 24 hours).
    #[arg(long, value_parser = parse_duration, default_value = "23h")]
    pub execution_window: Duration,
    /// Handle this one SQS event (a JSON file, `-` for stdin) as the Lambda worker does,
    /// print its batch response (`batchItemFailures`) and exit, instead of polling the queue.
    #[arg(long, value_name = "FILE")]
    pub lambda_event: Option<PathBuf>,
    /// With `--lambda-event`: the invocation's remaining time, as Lambda's deadline gives it
    /// (its work stops that much less the margin kept back to answer).
    #[arg(long, value_parser = parse_duration, default_value = "15m", requires = "lambda_event")]
    pub lambda_remaining: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct RangeArgs {
    /// Required unless `trigger --auto-detect`.
    #[arg(long)]
    pub tenant_id: Option<String>,
    /// Required unless `trigger --auto-detect`.
    #[arg(long)]
    pub service: Option<String>,
    /// API path or table name; repeat for several (default: every table, priority first).
    #[arg(long = "table")]
    pub tables: Vec<String>,
    /// RFC 3339 instant or YYYY-MM-DD (UTC). Default: end minus the configured lookback.
    #[arg(long)]
    pub start_date: Option<String>,
    /// RFC 3339 instant or YYYY-MM-DD (UTC). Default: now, frozen into the job.
    #[arg(long)]
    pub end_date: Option<String>,
    /// Days per chunk (default: tenant override, else service setting, else default).
    #[arg(long, value_parser = args::ranged::<u32>(CHUNK_SIZE_DAYS))]
    pub chunk_size_days: Option<u32>,
}

#[derive(Args, Debug)]
pub struct TriggerArgs {
    #[command(flatten)]
    pub range: RangeArgs,
    /// Print the plan; create nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run the job right away in this process.
    #[arg(long)]
    pub run: bool,
    /// Decide for every tenant's service whether it needs a backfill, print why, and create
    /// jobs for those that do (`--dry-run`: decide only). Auto-triggered jobs wait for the
    /// off-peak window when the configuration says so.
    #[arg(long, conflicts_with_all = ["tables", "start_date", "end_date", "run"])]
    pub auto_detect: bool,
    /// Start the job only inside the off-peak window (manual triggers run at once otherwise).
    #[arg(long)]
    pub wait_off_peak: bool,
    /// Higher runs first when slots are scarce (manual default 1, auto-detected 0).
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Size windows by record counts (asks the source for counts while planning).
    #[arg(long)]
    pub smart_chunking: bool,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub cloud: CloudArgs,
    #[command(flatten)]
    pub confirm: ConfirmArgs,
    /// With --cloud: chunk lanes the state machine runs at once (different tables in parallel).
    #[arg(long, default_value_t = 1, value_parser = args::ranged::<u32>(1..=64))]
    pub lanes: u32,
    /// With --cloud: seconds a worker task may go without a heartbeat before it is retried.
    #[arg(long, default_value_t = 60, value_parser = args::ranged::<u64>(1..=86_400))]
    pub heartbeat_seconds: u64,
    /// With --cloud: loops per lane before the execution continues as a new one (default:
    /// what keeps its history under 20,000 events).
    #[arg(long, value_parser = args::ranged::<u32>(1..=25_000))]
    pub max_iterations: Option<u32>,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub range: RangeArgs,
    /// Ask the source for each window's record count (costs one call per window).
    #[arg(long)]
    pub count: bool,
    /// Size windows by record counts: split crowded ones, merge sparse ones.
    #[arg(long)]
    pub smart_chunking: bool,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    /// Stop cleanly before this much time has passed (e.g. 90s, 10m, 1h30m); state is saved.
    #[arg(long, value_parser = parse_duration)]
    pub time_budget: Option<Duration>,
    /// Windows of one tenant's service in flight at most (1 to 64), overriding the
    /// service's `max_in_flight` (default 8; Salesforce at most 25). Below that cap, as many
    /// as the rate limit needs at the observed latency run at once, across the job's tables.
    #[arg(long, value_parser = args::ranged::<usize>(MAX_IN_FLIGHT))]
    pub concurrency: Option<usize>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Only this job (default: every pending or running job).
    #[arg(long)]
    pub job_id: Option<String>,
    /// Sleep until the off-peak window opens for jobs that wait for it (within the time budget).
    #[arg(long)]
    pub wait_off_peak: bool,
    /// A console's runner process: SIGHUP (a closed terminal) does not stop it.
    #[arg(long, hide = true, requires = "job_id")]
    pub detached: bool,
    #[command(flatten)]
    pub exec: ExecArgs,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    pub job_id: String,
    /// Also retry chunks that failed for good, with fresh attempts.
    #[arg(long)]
    pub retry_failed: bool,
    #[command(flatten)]
    pub exec: ExecArgs,
    #[command(flatten)]
    pub cloud: CloudArgs,
    #[command(flatten)]
    pub confirm: ConfirmArgs,
}

#[derive(Args, Debug)]
pub struct KeysArgs {
    /// Check this keys file instead (exit 1 with the error when the console would refuse it).
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(long)]
    pub tenant_id: Option<String>,
    /// One job with its chunks.
    #[arg(long)]
    pub job_id: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// Why a `--time-budget` (or `--lease`) value is refused.
#[derive(Debug, thiserror::Error)]
enum DurationError {
    #[error("'{value}' is not a duration like 90s, 10m or 1h30m: {source}")]
    Unreadable {
        value: String,
        source: humantime::DurationError,
    },
    #[error("the time budget must be more than zero")]
    Zero,
}

fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let d = humantime::parse_duration(s).map_err(|source| DurationError::Unreadable {
        value: s.to_string(),
        source,
    })?;
    if d.is_zero() {
        return Err(DurationError::Zero);
    }
    Ok(d)
}

/// The Lambda entry point (`bootstrap`): a worker whose settings come from the environment
/// (`AVESA_CLOUD_*`, `AVESA_CONFIG_DIR`, `AVESA_LOG`) as `avesa-console worker` reads them.
#[cfg(feature = "lambda")]
pub fn lambda_main() -> ExitCode {
    let cli = Cli::parse_from(["bootstrap", "worker"]);
    let Some(Command::Worker(args)) = &cli.command else {
        return ExitCode::FAILURE;
    };
    let ws = crate::workspace::Workspace::resolve(cli.global.workspace.clone());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cloud_cmd::lambda(&cli.global, &ws, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A change to a protected tenant without its id confirmed: a usage error naming the flag.
fn protected_usage(err: &color_eyre::eyre::Report) -> Option<String> {
    use crate::engine::ops::Refusal;
    match err.downcast_ref::<Refusal>()? {
        Refusal::Protected { tenant_id, what } => Some(format!(
            "tenant {tenant_id} is protected: pass --confirm-tenant {tenant_id} to {what}"
        )),
        Refusal::WrongTenantId {
            tenant_id,
            typed,
            what,
        } => Some(format!(
            "tenant {tenant_id} is protected and --confirm-tenant '{typed}' is not its id: \
             pass --confirm-tenant {tenant_id} to {what}"
        )),
        _ => None,
    }
}

/// Runs the command line and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
        Err(err) if err.downcast_ref::<UsageError>().is_some() => {
            eprintln!("error: {err}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(err) if let Some(text) = protected_usage(&err) => {
            eprintln!("error: {text}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(err)
            if err
                .downcast_ref::<crate::engine::ops::Refusal>()
                .is_some_and(|r| r.is_refusal()) =>
        {
            eprintln!("refused: {err}");
            ExitCode::from(EXIT_REFUSED)
        }
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
