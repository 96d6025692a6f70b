//! `avesa-console sandbox`: serves the simulated source APIs until interrupted.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use color_eyre::eyre::{Result, WrapErr, eyre};

use super::GlobalArgs;
use super::args::{parse_instant, ranged};
use super::runtime;
use crate::config::{LOOKBACK_DAYS, RATE_PER_MINUTE};
use crate::sandbox::{CwLink, Latency, RateMode, Sandbox, TableCounts, load_faults};
use crate::workspace::Workspace;

#[derive(clap::Args, Debug)]
pub struct SandboxArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub bind: SocketAddr,
    /// End of the synthetic history (exclusive), RFC 3339 or YYYY-MM-DD; default today 00:00 UTC.
    #[arg(long)]
    pub anchor: Option<String>,
    #[arg(long, default_value_t = 730, value_parser = ranged::<u32>(LOOKBACK_DAYS))]
    pub history_days: u32,
    /// Requests per minute per tenant before refusing with Retry-After: 429 (ConnectWise,
    /// ServiceNow) or 403 REQUEST_LIMIT_EXCEEDED (Salesforce). Default: unlimited.
    #[arg(long, value_parser = ranged::<u32>(RATE_PER_MINUTE))]
    pub rate_limit: Option<u32>,
    /// Enforce --rate-limit strictly: burst 1, requests at least 60/N s apart (half of that
    /// tolerated as network jitter), as strict servers do. Default: a burst of N.
    #[arg(long, requires = "rate_limit")]
    pub strict_rate_limit: bool,
    /// Requests of one tenant served at once; one more is refused with the API's rate-limit
    /// answer. Default: no cap.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_concurrent: Option<u32>,
    /// Hold every API answer back N ms, or N ± J ms (uniform, never below 0): `300` or `1500,500`.
    #[arg(long, value_name = "MS[,JITTER]", value_parser = parse_latency)]
    pub latency_ms: Option<Latency>,
    /// What ConnectWise forward-only pages carry in `Link` when nothing follows:
    /// `last-omitted` (no header on the last page), `last-empty` (an empty header there) or
    /// `omitted` (no `Link` on any page).
    #[arg(long, value_enum, default_value_t = CwLink::LastOmitted)]
    pub connectwise_link: CwLink,
    /// JSON file of injected faults: {"faults":[{"path":..,"window_start":..,"status":..,"times":..,"message":..}]}.
    #[arg(long)]
    pub faults: Option<std::path::PathBuf>,
    /// Records per tenant (defaults: the demo sizes).
    #[arg(long, value_parser = ranged::<u64>(0..=MAX_RECORDS))]
    pub tickets: Option<u64>,
    #[arg(long, value_parser = ranged::<u64>(0..=MAX_RECORDS))]
    pub time_entries: Option<u64>,
    #[arg(long, value_parser = ranged::<u64>(0..=MAX_RECORDS))]
    pub companies: Option<u64>,
    #[arg(long, value_parser = ranged::<u64>(0..=MAX_RECORDS))]
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

/// The most records per tenant and table a sandbox (or a bench) generates.
pub const MAX_RECORDS: u64 = 1_000_000_000;

/// The longest latency `--latency-ms` takes (base or jitter), in ms: ten minutes.
pub const MAX_LATENCY_MS: u64 = 600_000;

/// `N` or `N,J` milliseconds, each at most `MAX_LATENCY_MS`.
pub fn parse_latency(text: &str) -> std::result::Result<Latency, String> {
    let ms = |part: &str, what: &str| {
        let n: u64 = part.trim().parse().map_err(|_| {
            format!("the {what} '{part}' is not a whole number of milliseconds (want N or N,J)")
        })?;
        if n > MAX_LATENCY_MS {
            return Err(format!(
                "the {what} {n} ms is over the maximum {MAX_LATENCY_MS} ms"
            ));
        }
        Ok(std::time::Duration::from_millis(n))
    };
    let (base, jitter) = match text.split_once(',') {
        Some((b, j)) => (ms(b, "latency")?, ms(j, "jitter")?),
        None => (ms(text, "latency")?, std::time::Duration::ZERO),
    };
    Ok(Latency { base, jitter })
}

/// The first line `sandbox` prints: what follows it is the address it serves.
const LISTENING: &str = "sandbox listening on ";

/// The sandbox's address from its first output line (for whoever started it as a process).
pub fn listening_url(line: &str) -> Option<&str> {
    line.trim().strip_prefix(LISTENING)
}

pub async fn run(global: &GlobalArgs, ws: &Workspace, args: SandboxArgs) -> Result<ExitCode> {
    let config = runtime::load_config(global, ws)?;
    let resolver = runtime::credential_resolver(&config);
    let (anchor, days, counts) = (args.anchor()?, args.history_days, args.counts());
    let mut cfg =
        runtime::sandbox_config_resolved(&config, &resolver, anchor, days, counts).await?;
    if cfg.tenants.is_empty() && cfg.servicenow.is_empty() && cfg.salesforce.is_empty() {
        return Err(eyre!(
            "no tenant in {} points at ${{SANDBOX_URL}}: nothing to serve",
            config.dir.join("tenants.json").display()
        ));
    }
    cfg.rate_limit_per_minute = args.rate_limit;
    if args.strict_rate_limit {
        cfg.rate_mode = RateMode::Strict;
    }
    cfg.max_concurrent_per_tenant = args.max_concurrent;
    cfg.latency = args.latency_ms;
    cfg.connectwise_link = args.connectwise_link;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn latency_is_ms_or_ms_comma_jitter_and_bad_values_are_named() {
        let ms = Duration::from_millis;
        assert_eq!(
            parse_latency("1500,250"),
            Ok(Latency {
                base: ms(1500),
                jitter: ms(250)
            })
        );
        assert_eq!(
            parse_latency("300"),
            Ok(Latency {
                base: ms(300),
                jitter: Duration::ZERO
            })
        );
        let err = parse_latency("fast").unwrap_err();
        assert!(err.contains("'fast'"), "{err}");
        let err = parse_latency("100,-5").unwrap_err();
        assert!(err.contains("jitter '-5'"), "{err}");
        let err = parse_latency("600001").unwrap_err();
        assert!(err.contains("600001") && err.contains("600000"), "{err}");
    }
}
