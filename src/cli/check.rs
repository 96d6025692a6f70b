//! `check`: before a backfill, prove per table of each connected service of a tenant that the
//! backfill will run: the fields the integration user can read (schema discovery; left out
//! with a warning, or an error under `strict_fields`), one read with the exact query the
//! backfill sends for the oldest window of the lookback, and the count over the whole
//! lookback (`engine::probe`). Each failure shows the API's own error and what to change;
//! the exit code is 1 when any table would fail.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use color_eyre::eyre::{Result, bail, eyre};
use serde::Serialize;

use super::print::iso;
use super::{GlobalArgs, Output, runtime};
use crate::config::{Config, EndpointDef};
use crate::domain::{Service, Window};
use crate::engine::planner::{self, PlanRequest};
use crate::engine::probe::{ProbeSettings, TableProbe, probe_table};
use crate::engine::{Engine, EngineOptions};
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
    ok: bool,
    #[serde(flatten)]
    probe: TableProbe,
}
pub async fn run(global: &GlobalArgs, ws: &Workspace, args: CheckArgs) -> Result<ExitCode> {
    let config = runtime::load_config(global, ws)?;
    let tenant = config.tenant(&args.tenant_id).map_err(|e| eyre!(e))?;
    let services = services_to_check(&config, &args)?;
    // The workspace's engine: its requests share the tenant's rate budget and breaker with
    // every process running a backfill of it.
    let wired = runtime::wire_engine(global, ws, config.clone(), EngineOptions::default()).await?;
    let engine = &wired.engine;
    let now = Utc::now();
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
        match ready_to_count(&config, engine, &args.tenant_id, service, enabled) {
            Err(e) => report.error = Some(e.to_string()),
            Ok((source, endpoints)) => {
                let settings = ProbeSettings {
                    timeout: args.timeout,
                    strict_fields: config.backfill.strict_fields(service),
                };
                match lookback(&config, &args.tenant_id, service, now) {
                    Err(e) => report.error = Some(e.to_string()),
                    Ok(windows) => {
                        for ep in endpoints {
                            let Some((range, oldest)) = windows.get(&ep.table_name) else {
                                continue;
                            };
                            let windows = (*range, *oldest);
                            let probe = probe_table(
                                engine,
                                &args.tenant_id,
                                source.as_ref(),
                                ep,
                                windows,
                                &settings,
                            )
                            .await;
                            report.tables.push(TableReport {
                                ok: probe.ok(),
                                probe,
                            });
                        }
                        report.ok = report.tables.iter().all(|t| t.ok);
                    }
                }
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
    engine: &Engine,
    tenant_id: &str,
    service: Service,
    enabled: bool,
) -> Result<(Arc<dyn Source>, &'c [EndpointDef])> {
    if !enabled {
        bail!("{service} is disabled in the tenants registry");
    }
    let source = engine
        .source(tenant_id, service)
        .map_err(|e| eyre!(e.reason))?;
    let endpoints = config
        .endpoints(service)
        .ok_or_else(|| eyre!("no endpoint definitions for {service}"))?;
    Ok((source, &endpoints.endpoints))
}

/// Each table's lookback (the backfill's default range) and its first window, as the planner
/// cuts them.
fn lookback(
    config: &Config,
    tenant_id: &str,
    service: Service,
    now: chrono::DateTime<Utc>,
) -> Result<HashMap<String, (Window, Window)>> {
    let req = PlanRequest {
        tenant_id: tenant_id.to_string(),
        service,
        tables: Vec::new(),
        start: None,
        end: None,
        chunk_size_days: None,
    };
    let plan = planner::plan(config, &req, now)?;
    Ok(plan
        .tables
        .into_iter()
        .filter_map(|t| {
            let (first, last) = (*t.windows.first()?, *t.windows.last()?);
            Some((t.table, (Window::new(first.start, last.end), first)))
        })
        .collect())
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
            print_table(t);
        }
    }
    let failed = reports.iter().filter(|r| !r.ok).count();
    if failed == 0 {
        outln!(
            "all {} service(s) ready: every table was read with the backfill's own query",
            reports.len()
        );
    } else {
        outln!(
            "{failed} of {} service(s) would fail: fix what is shown above",
            reports.len()
        );
    }
}

fn print_table(t: &TableReport) {
    let p = &t.probe;
    let verdict = if t.ok { "ok" } else { "FAILED" };
    outln!(
        "    {:<16} {verdict:<7} {} ({} ms)",
        p.table,
        p.path,
        p.millis
    );
    if let Some(n) = p.records {
        outln!(
            "      {n} record(s) over the lookback {} .. {}",
            iso(p.lookback.start),
            iso(p.lookback.end)
        );
    }
    if let Some(n) = p.read_records {
        outln!(
            "      the backfill's query read {n} record(s) of the oldest window {} .. {}",
            iso(p.oldest_window.start),
            iso(p.oldest_window.end)
        );
    }
    match &p.unreadable_fields {
        None => outln!(
            "      fields: the API has no schema description; every declared field is asked for"
        ),
        Some(u) if u.is_empty() => {
            outln!("      fields: the integration user can read every declared field")
        }
        Some(_) if !p.skipped_fields.is_empty() => outln!(
            "      warning: the integration user cannot read {}: the backfill leaves them out \
             and their canonical columns stay null (strict_fields: true makes this an error)",
            p.skipped_fields.join(", ")
        ),
        Some(_) => {}
    }
    for f in &p.failures {
        outln!("      {} FAILED: {}", f.step, f.error);
        if !f.advice.is_empty() {
            outln!("        what to change: {}", f.advice);
        }
    }
}
