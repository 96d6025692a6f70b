//! `bench --rate-limit N`: how much of a strict server's limit a backfill uses. The sandbox
//! (a child process) enforces N requests per minute per tenant strictly (burst 1) and holds
//! every answer back `--latency-ms` (± `--jitter-ms`); the engine is configured at the same
//! N. The figures come from the sandbox's own measures: accepted requests as a share of
//! `N × minutes`, the fewest and most in any 60 s window, requests in flight (average and
//! peak), and the 429s the engine caused (rate limit or concurrency cap).
//!
//! The engine runs one job over the whole history in this process, or with `--processes P`
//! P jobs over disjoint ranges of it, each in its own `avesa-console run` process on the
//! bench's one workspace: P processes sharing one tenant's budget. `--matrix` runs every
//! cell of `MATRIX_LIMITS × MATRIX_LATENCIES_MS` for `--duration` each and prints a table.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use color_eyre::eyre::{Result, WrapErr, bail, eyre};
use serde_json::json;

use super::{BenchArgs, Child, create_job_over, sandbox_stats, sandbox_tenant, start_sandbox};
use crate::cli::GlobalArgs;
use crate::cli::runtime;
use crate::config::Config;
use crate::domain::Service;
use crate::engine::EngineOptions;
use crate::sandbox::window_extremes;
use crate::workspace::Workspace;

/// The limits (requests per minute) of `bench --matrix`.
pub const MATRIX_LIMITS: [u32; 4] = [60, 200, 1000, 6000];
/// The latencies (ms) of `bench --matrix`.
pub const MATRIX_LATENCIES_MS: [u64; 4] = [0, 300, 1500, 3000];
/// Records per page of the bench's tables: one request per 50 records.
const PAGE_SIZE: u32 = 50;
/// The bench's job reads these ConnectWise tables (dependencies as configured).
const TABLES: [&str; 4] = [
    "company/companies",
    "company/contacts",
    "service/tickets",
    "time/entries",
];

/// One cell: the server's limit and latency.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    pub limit: u32,
    pub latency_ms: u64,
    pub jitter_ms: u64,
}

/// `bench --rate-limit N` or `bench --matrix`.
pub async fn run(global: &GlobalArgs, args: &BenchArgs) -> Result<ExitCode> {
    if args.duration < std::time::Duration::from_secs(1) {
        bail!("--duration must be at least 1s");
    }
    if !args.matrix {
        let limit = args.rate_limit.unwrap_or(0);
        if limit == 0 {
            bail!("--rate-limit must be at least 1");
        }
        let cell = Cell {
            limit,
            latency_ms: args.latency_ms,
            jitter_ms: args.jitter_ms,
        };
        let report = run_cell(global, args, cell).await?;
        match args.json {
            true => outln!("{report}"),
            false => outln!("{}", describe(&report)),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Vec::new();
    for limit in MATRIX_LIMITS {
        for latency_ms in MATRIX_LATENCIES_MS {
            let cell = Cell {
                limit,
                latency_ms,
                jitter_ms: args.jitter_ms,
            };
            let report = run_cell(global, args, cell).await?;
            if !args.json {
                outln!("{}", describe(&report));
            }
            rows.push(report);
        }
    }
    match args.json {
        true => outln!("{}", serde_json::Value::Array(rows)),
        false => print_table(&rows),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs one cell in a fresh workspace and sandbox; the report as JSON.
async fn run_cell(global: &GlobalArgs, args: &BenchArgs, cell: Cell) -> Result<serde_json::Value> {
    let root = std::env::temp_dir().join(format!(
        "avesa-bench-rate-{}-{}-{}",
        std::process::id(),
        cell.limit,
        cell.latency_ms
    ));
    let _ = std::fs::remove_dir_all(&root);
    let ws = Workspace { root: root.clone() };
    ws.ensure()?;
    let result = run_in(global, args, cell, &ws).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn run_in(
    global: &GlobalArgs,
    args: &BenchArgs,
    cell: Cell,
    ws: &Workspace,
) -> Result<serde_json::Value> {
    let loaded = runtime::load_config(global, ws)?;
    let config_dir = write_config(&loaded.dir, &ws.root.join("bench-config"), cell.limit)?;
    let config = Arc::new(Config::load(&config_dir)?);
    let anchor = runtime::today();
    // Enough records that no table runs out of pages, whatever order they are read in.
    let minutes = args.duration.as_secs() / 60 + 2;
    let per_table = (u64::from(cell.limit) * minutes * u64::from(PAGE_SIZE)).to_string();
    let counts = [0; 4].map(|_| per_table.clone());
    let (sandbox, url) = start_sandbox(
        &config_dir,
        anchor,
        args.history_days,
        &counts,
        &sandbox_flags(cell),
    )?;
    let tenant_id = sandbox_tenant(&config)?.to_string();
    let mut global = global.clone();
    global.sandbox_url = Some(url.clone());
    global.config_dir = Some(config_dir.clone());
    let options = EngineOptions {
        chunk_concurrency: args.concurrency,
        ..EngineOptions::default()
    };
    let wired = runtime::wire_engine(&global, ws, config, options).await?;
    let mut jobs = Vec::new();
    for range in ranges(anchor, args) {
        jobs.push(create_job_over(&wired.engine, &tenant_id, &TABLES, args, range).await?);
    }
    let started = std::time::Instant::now();
    match args.processes {
        None => {
            let deadline = tokio::time::Instant::now() + args.duration;
            wired
                .engine
                .run_job(&jobs[0].job_id, Some(deadline))
                .await?;
        }
        Some(_) => run_processes(&global, ws, &jobs, args).await?,
    }
    let secs = started.elapsed().as_secs_f64();
    let stats = sandbox_stats(&url).await?;
    drop(sandbox);
    // Records landed, windows still running included (a job counts a window's records
    // when it completes).
    let mut records = 0;
    for job in &jobs {
        let chunks = wired.engine.store().chunks(&job.job_id).await?;
        records += chunks.iter().map(|c| c.checkpoint.records).sum::<u64>();
    }
    Ok(report(args, cell, secs, &stats, records))
}

/// The history split into one range per process (one range in this process).
fn ranges(anchor: DateTime<Utc>, args: &BenchArgs) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let p = args.processes.unwrap_or(1).max(1) as i64;
    let start = anchor - chrono::Duration::days(i64::from(args.history_days));
    let span = (anchor - start) / p as i32;
    (0..p)
        .map(|i| {
            let from = start + span * i as i32;
            let to = if i + 1 == p { anchor } else { from + span };
            (from, to)
        })
        .collect()
}

/// The sandbox's flags for `cell`: strict limit, latency.
fn sandbox_flags(cell: Cell) -> Vec<String> {
    vec![
        "--rate-limit".into(),
        cell.limit.to_string(),
        "--strict-rate-limit".into(),
        "--latency-ms".into(),
        format!("{},{}", cell.latency_ms, cell.jitter_ms),
    ]
}

/// A copy of the configuration in `from` with ConnectWise paced at `limit` per minute and
/// `PAGE_SIZE` records per page, for this process and the `run` processes alike.
fn write_config(from: &Path, to: &Path, limit: u32) -> Result<PathBuf> {
    copy_dir(from, to).wrap_err_with(|| format!("cannot copy {}", from.display()))?;
    edit_json(&to.join("backfill_config.json"), |v| {
        v["service_settings"]["connectwise"]["rate_limit_requests_per_minute"] = limit.into();
    })?;
    edit_json(&to.join("endpoints").join("connectwise.json"), |v| {
        if let Some(eps) = v["endpoints"].as_array_mut() {
            for ep in eps {
                ep["page_size"] = PAGE_SIZE.into();
            }
        }
    })?;
    Ok(to.to_path_buf())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .wrap_err_with(|| format!("cannot read {}", path.display()))?;
    let mut v: serde_json::Value =
        serde_json::from_str(&text).wrap_err_with(|| format!("{} is not JSON", path.display()))?;
    f(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v)?)
        .wrap_err_with(|| format!("cannot write {}", path.display()))
}

/// One `avesa-console run --job-id JOB` per job on the bench's workspace, each stopped by
/// the bench's duration; waits for all of them.
async fn run_processes(
    global: &GlobalArgs,
    ws: &Workspace,
    jobs: &[crate::domain::Job],
    args: &BenchArgs,
) -> Result<()> {
    let exe = std::env::current_exe().wrap_err("cannot find this program's path")?;
    let config_dir = global.config_dir.clone().unwrap_or_default();
    let url = global.sandbox_url.clone().unwrap_or_default();
    let budget = format!("{}ms", args.duration.as_millis());
    let concurrency: Vec<String> = args
        .concurrency
        .map(|n| vec!["--concurrency".into(), n.to_string()])
        .unwrap_or_default();
    let mut children = Vec::with_capacity(jobs.len());
    for job in jobs {
        let child = std::process::Command::new(&exe)
            .args(["run", "--job-id", &job.job_id, "--log-level", "warn"])
            .args(["--time-budget", &budget])
            .args(&concurrency)
            .arg("--workspace")
            .arg(&ws.root)
            .arg("--config-dir")
            .arg(&config_dir)
            .args(["--sandbox-url", &url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .wrap_err("cannot start a run process")?;
        children.push(Child(child));
    }
    for mut child in children {
        let status = tokio::task::spawn_blocking(move || child.0.wait())
            .await
            .map_err(|e| eyre!("waiting for a run process: {e}"))??;
        tracing::debug!(%status, "bench run process ended");
    }
    Ok(())
}

/// The tenant the bench's requests came from: the busiest one of the sandbox.
fn busiest_tenant(stats: &serde_json::Value) -> serde_json::Value {
    let prefix = format!("{}:", Service::Connectwise);
    stats["tenants"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v.clone())
        .max_by_key(|v| v["accepted"].as_u64().unwrap_or(0))
        .unwrap_or_default()
}

fn report(
    args: &BenchArgs,
    cell: Cell,
    secs: f64,
    stats: &serde_json::Value,
    records: u64,
) -> serde_json::Value {
    let load = busiest_tenant(stats);
    let get = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    let accepted = get(&load, "accepted");
    let arrivals: Vec<u32> =
        serde_json::from_value(load["arrivals_ms"].clone()).unwrap_or_default();
    let windows = window_extremes(&arrivals, 60_000);
    let self_caused = get(stats, "rate_limited") + get(stats, "concurrency_refused");
    // What reached the sandbox's gate: answered or not yet (a request cut by the deadline).
    let api_calls = accepted + get(&load, "rate_limited") + get(&load, "concurrency_refused");
    json!({
        "limit_per_minute": cell.limit,
        "latency_ms": cell.latency_ms,
        "jitter_ms": cell.jitter_ms,
        "processes": args.processes,
        "max_in_flight_flag": args.concurrency,
        "seconds": secs,
        "api_calls": api_calls,
        "accepted": accepted,
        "achieved_per_minute": accepted as f64 * 60.0 / secs,
        "share_of_limit": accepted as f64 / (f64::from(cell.limit) * secs / 60.0),
        "fewest_in_60s": windows.map(|w| w.0),
        "most_in_60s": windows.map(|w| w.1),
        "avg_in_flight": get(&load, "busy_ms") as f64 / (secs * 1000.0),
        "peak_in_flight": get(&load, "max_in_flight"),
        "self_caused_429": self_caused,
        "records": records,
    })
}

/// One line for a report.
fn describe(r: &serde_json::Value) -> String {
    let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
    let windows = match (r["fewest_in_60s"].as_u64(), r["most_in_60s"].as_u64()) {
        (Some(lo), Some(hi)) => format!(", {lo}..{hi} in any 60 s"),
        _ => String::new(),
    };
    format!(
        "limit {}/min, latency {} ± {} ms, {:.1} s: {} accepted ({:.1} % of the limit{windows}), in flight {:.2} avg / {} peak, {} self-caused 429, {} API calls, {} records",
        r["limit_per_minute"],
        r["latency_ms"],
        r["jitter_ms"],
        f("seconds"),
        r["accepted"],
        f("share_of_limit") * 100.0,
        f("avg_in_flight"),
        r["peak_in_flight"],
        r["self_caused_429"],
        r["api_calls"],
        r["records"],
    )
}

/// The matrix: one row per limit, one column per latency, each the share of the limit
/// (and the self-caused 429s when there were any).
fn print_table(rows: &[serde_json::Value]) {
    let mut header = format!("{:>10}", "limit/min");
    for l in MATRIX_LATENCIES_MS {
        header.push_str(&format!(" {:>17}", format!("{l} ms")));
    }
    outln!("{header}");
    for limit in MATRIX_LIMITS {
        let mut line = format!("{limit:>10}");
        for latency in MATRIX_LATENCIES_MS {
            let cell = rows.iter().find(|r| {
                r["limit_per_minute"].as_u64() == Some(u64::from(limit))
                    && r["latency_ms"].as_u64() == Some(latency)
            });
            let text = cell.map_or("-".to_string(), |r| {
                let share = r["share_of_limit"].as_f64().unwrap_or(0.0) * 100.0;
                match r["self_caused_429"].as_u64().unwrap_or(0) {
                    0 => format!("{share:.1} %"),
                    n => format!("{share:.1} % ({n}x429)"),
                }
            });
            line.push_str(&format!(" {text:>17}"));
        }
        outln!("{line}");
    }
}
