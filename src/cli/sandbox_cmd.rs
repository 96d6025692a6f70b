//! `avesa-console sandbox`: serves the simulated source APIs until interrupted.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use color_eyre::eyre::{Result, WrapErr, eyre};

use super::GlobalArgs;
use super::args::parse_instant;
use super::runtime;
use crate::sandbox::{Sandbox, TableCounts, load_faults};
use crate::workspace::Workspace;

#[derive(clap::Args, Debug)]
pub struct SandboxArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub bind: SocketAddr,
    /// End of the synthetic history (exclusive), RFC 3339 or YYYY-MM-DD; default today 00:00 UTC.
    #[arg(long)]
    pub anchor: Option<String>,
    #[arg(long, default_value_t = 730)]
    pub history_days: u32,
    /// Requests per minute per tenant before refusing with Retry-After: 429 (ConnectWise,
    /// ServiceNow) or 403 REQUEST_LIMIT_EXCEEDED (Salesforce). Default: unlimited.
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// JSON file of injected faults: {"faults":[{"path":..,"window_start":..,"status":..,"times":..,"message":..}]}.
    #[arg(long)]
    pub faults: Option<std::path::PathBuf>,
    /// Records per tenant (defaults: the demo sizes).
    #[arg(long)]
    pub tickets: Option<u64>,
    #[arg(long)]
    pub time_entries: Option<u64>,
    #[arg(long)]
    pub companies: Option<u64>,
    #[arg(long)]
    pub contacts: Option<u64>,
}

impl SandboxArgs {
    pub fn counts(&self) -> TableCounts {
        let d = TableCounts::demo();
        TableCounts {
            tickets: self.tickets.unwrap_or(d.tickets),
            time_entries: self.time_entries.unwrap_or(d.time_entries),
            companies: self.companies.unwrap_or(d.companies),
            contacts: self.contacts.unwrap_or(d.contacts),
        }
    }

    pub fn anchor(&self) -> Result<DateTime<Utc>> {
        self.anchor
            .as_deref()
            .map(|a| parse_instant("--anchor", a))
            .transpose()
            .map(|a| a.unwrap_or_else(runtime::today))
    }
}

/// The first line `sandbox` prints: what follows it is the address it serves.
const LISTENING: &str = "sandbox listening on ";

/// The sandbox's address from its first output line (for whoever started it as a process).
pub fn listening_url(line: &str) -> Option<&str> {
    line.trim().strip_prefix(LISTENING)
}

pub async fn run(global: &GlobalArgs, ws: &Workspace, args: SandboxArgs) -> Result<ExitCode> {
    let config = runtime::load_config(global, ws)?;
    let mut cfg =
        runtime::sandbox_config(&config, args.anchor()?, args.history_days, args.counts())?;
    if cfg.tenants.is_empty() && cfg.servicenow.is_empty() && cfg.salesforce.is_empty() {
        return Err(eyre!(
            "no tenant in {} points at ${{SANDBOX_URL}}: nothing to serve",
            config.dir.join("tenants.json").display()
        ));
    }
    cfg.rate_limit_per_minute = args.rate_limit;
    if let Some(path) = &args.faults {
        cfg.faults = load_faults(path).map_err(|e| eyre!(e))?;
    }
    let sandbox = Sandbox::start(cfg, args.bind)
        .await
        .wrap_err_with(|| format!("cannot listen on {}", args.bind))?;
    println!("{LISTENING}{}", sandbox.url());
    std::io::stdout().flush()?;
    shutdown_signal().await;
    sandbox.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
