//! `check`: before a backfill, ask each connected service of a tenant whether the
//! credentials work and every configured table can be read, and say what is wrong.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use color_eyre::eyre::{Result, bail, eyre};
use serde::Serialize;

use super::{GlobalArgs, Output, runtime};
use crate::config::{Config, EndpointDef};
use crate::domain::{Service, Window};
use crate::engine::SourceProvider;
use crate::engine::request_backoff;
use crate::sources::Source;
use crate::workspace::Workspace;

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[arg(long)]
    pub tenant_id: String,
    /// Only this service (default: every connected service).
    #[arg(long)]
    pub service: Option<String>,
    /// Give up on one request after this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Serialize, Debug)]
struct ServiceReport {
    service: Service,
    enabled: bool,
    ok: bool,
    /// Why the service could not be checked at all (credentials, configuration).
    error: Option<String>,
    tables: Vec<TableReport>,
}

#[derive(Serialize, Debug)]
struct TableReport {
    table: String,
    path: String,
    ok: bool,
    /// Records the source counts in the last 24 hours.
    records_last_day: Option<u64>,
    millis: u64,
    /// Requests sent: errors that can pass (5xx, cut bodies, resets, rate limits, no
    /// answer in time) are tried again as the backfill's requests are (`request_backoff`).
    tries: u32,
    error: Option<String>,
}

pub async fn run(global: &GlobalArgs, ws: &Workspace, args: CheckArgs) -> Result<ExitCode> {
    let config = runtime::load_config(global, ws)?;
    let tenant = config.tenant(&args.tenant_id).map_err(|e| eyre!(e))?;
    let services = services_to_check(&config, &args)?;
    let (provider, _sandbox) = runtime::provider(global, config.clone()).await?;
    let now = Utc::now();
    let window = Window::new(now - chrono::Duration::hours(24), now);
    let mut reports = Vec::new();
    for service in services {
        let enabled = tenant.services.get(&service).is_some_and(|c| c.enabled);
        let mut report = ServiceReport {
            service,
            enabled,
            ok: false,
            error: None,
            tables: Vec::new(),
        };
        match ready_to_count(
            &config,
            provider.as_ref(),
            &args.tenant_id,
            service,
            enabled,
        ) {
            Err(e) => report.error = Some(e.to_string()),
            Ok((source, endpoints)) => {
                for ep in endpoints {
                    let settings = &config.backfill.default_settings;
                    let table =
                        check_table(source.as_ref(), ep, &window, args.timeout, settings).await;
                    report.tables.push(table);
                }
                report.ok = report.tables.iter().all(|t| t.ok);
            }
        }
        reports.push(report);
    }
    let all_ok = reports.iter().all(|r| r.ok);
    match args.output {
        Output::Json => outln!("{}", serde_json::to_string_pretty(&reports)?),
        Output::Text => print_text(&args.tenant_id, &tenant.display_name, &reports),
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--service`, or every service the tenant has connected.
fn services_to_check(config: &Config, args: &CheckArgs) -> Result<Vec<Service>> {
    let tenant = config.tenant(&args.tenant_id).map_err(|e| eyre!(e))?;
    let services: Vec<Service> = match &args.service {
        Some(s) => {
            let service: Service = s.parse().map_err(|e: String| eyre!("--service: {e}"))?;
            config
                .connection(&args.tenant_id, service)
                .map_err(|e| eyre!(e))?;
            vec![service]
        }
        None => tenant.services.keys().copied().collect(),
    };
    if services.is_empty() {
        return Err(eyre!(
            "tenant '{}' has no connected services",
            args.tenant_id
        ));
    }
    Ok(services)
}

/// The service's source and its endpoints, or why its tables cannot be counted.
fn ready_to_count<'c>(
    config: &'c Config,
    provider: &dyn SourceProvider,
    tenant_id: &str,
    service: Service,
    enabled: bool,
) -> Result<(Arc<dyn Source>, &'c [EndpointDef])> {
    if !enabled {
        bail!("{service} is disabled in the tenants registry");
    }
    let source = provider.source(tenant_id, service).map_err(|e| eyre!(e))?;
    let endpoints = config
        .endpoints(service)
        .ok_or_else(|| eyre!("no endpoint definitions for {service}"))?;
    Ok((source, &endpoints.endpoints))
}

/// The count over the window, each request within the timeout, an error that can pass tried
/// again as the backfill's requests are.
async fn check_table(
    source: &dyn Source,
    ep: &EndpointDef,
    window: &Window,
    timeout: Duration,
    settings: &crate::config::DefaultSettings,
) -> TableReport {
    let started = Instant::now();
    let mut backoff = request_backoff(settings);
    let mut tries = 0;
    let result = loop {
        tries += 1;
        let error = match tokio::time::timeout(timeout, source.count(ep, window)).await {
            Ok(Ok(n)) => break Ok(n),
            Ok(Err(e)) if e.is_retryable() => e.to_string(),
            Ok(Err(e)) => break Err(e.to_string()),
            Err(_) => format!("no answer within {}", humantime::format_duration(timeout)),
        };
        match backoff.next() {
            Some(wait) => {
                tracing::warn!(table = %ep.table_name, %error, tries, "count failed; trying again");
                tokio::time::sleep(wait).await;
            }
            None => break Err(error),
        }
    };
    let millis = started.elapsed().as_millis() as u64;
    TableReport {
        table: ep.table_name.clone(),
        path: ep.path.clone(),
        ok: result.is_ok(),
        records_last_day: result.as_ref().ok().copied(),
        millis,
        tries,
        error: result.err(),
    }
}

fn print_text(tenant_id: &str, display_name: &str, reports: &[ServiceReport]) {
    outln!("tenant {tenant_id} ({display_name})");
    for r in reports {
        let verdict = if r.ok { "ok" } else { "FAILED" };
        outln!("  {:<12} {verdict}", r.service.as_str());
        if let Some(e) = &r.error {
            outln!("    {e}");
        }
        for t in &r.tables {
            match (&t.error, t.records_last_day) {
                (None, Some(n)) => outln!(
                    "    {:<16} ok      {n} records updated in the last 24 h ({} ms)",
                    t.table,
                    t.millis
                ),
                (Some(e), _) => {
                    outln!("    {:<16} FAILED  {} ({}): {e}", t.table, t.path, t.millis)
                }
                (None, None) => outln!("    {:<16} ?", t.table),
            }
        }
    }
    let failed = reports.iter().filter(|r| !r.ok).count();
    if failed == 0 {
        outln!(
            "all {} service(s) reachable with working credentials",
            reports.len()
        );
    } else {
        outln!("{failed} of {} service(s) have problems", reports.len());
    }
}
