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

mod bench;
mod commands;
mod console;
mod output;
mod runtime;
mod sandbox_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use runtime::sandbox_config;
pub use sandbox_cmd::listening_url;

/// Exit code when a time budget ran out before the work did: state is saved, run again.
pub const EXIT_CONTINUATION: u8 = 75;
/// Exit code when a job ended with failed chunks.
pub const EXIT_JOB_ERRORS: u8 = 3;

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
    /// Serve the simulated source APIs on loopback.
    Sandbox(sandbox_cmd::SandboxArgs),
    /// Measure end-to-end backfill throughput and memory against a local sandbox.
    Bench(bench::BenchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RangeArgs {
    #[arg(long)]
    pub tenant_id: String,
    #[arg(long)]
    pub service: String,
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
    #[arg(long)]
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
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub range: RangeArgs,
    /// Ask the source for each window's record count (costs one call per window).
    #[arg(long)]
    pub count: bool,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    /// Stop cleanly before this much time has passed (e.g. 90s, 10m, 1h30m); state is saved.
    #[arg(long, value_parser = parse_duration)]
    pub time_budget: Option<Duration>,
    /// Tables of one job worked on at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Only this job (default: every pending or running job).
    #[arg(long)]
    pub job_id: Option<String>,
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
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration like 90s, 10m or 1h30m: {e}"))?;
    if d.is_zero() {
        return Err("the time budget must be more than zero".into());
    }
    Ok(d)
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
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
