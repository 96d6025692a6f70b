//! `avesa-console bench`: backfills N ticket records from a sandbox in a child process,
//! with pacing off, and prints throughput and this process's peak memory.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};

use chrono::{Duration, Utc};
use color_eyre::eyre::{Result, WrapErr, bail, eyre};
use serde_json::json;

use super::GlobalArgs;
use super::runtime;
use crate::domain::Service;
use crate::engine::EngineOptions;
use crate::engine::planner::{self, PlanRequest};
use crate::workspace::Workspace;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Ticket records to backfill.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    #[arg(long, default_value_t = 30)]
    pub chunk_size_days: u32,
    /// Days of history the records are spread over (more days: more chunks of the same size).
    #[arg(long, default_value_t = 730)]
    pub history_days: u32,
    /// Keep the bench workspace (store and Parquet files) in this folder instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Rate mode: the sandbox enforces this many requests per minute per tenant and the
    /// engine is configured at the same rate; prints the achieved share and the 429s the
    /// engine caused.
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// Rate mode: how long to run.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Rate mode: tables read at once (they share the tenant's budget).
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Raw Parquet MB per record-id bucket of the canonical transform (default: the shipped
    /// bucket size).
    #[arg(long)]
    pub transform_bucket_mb: Option<u64>,
}

/// Peak resident memory of this process (VmHWM), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `avesa-console sandbox` as a child process; returns it and its URL.
fn start_sandbox(
    config_dir: &std::path::Path,
    anchor: chrono::DateTime<Utc>,
    history_days: u32,
    counts: &[String; 4],
    extra: &[String],
) -> Result<(Child, String)> {
    let exe = std::env::current_exe().wrap_err("cannot find this program's path")?;
    let mut child = Child(
        std::process::Command::new(exe)
            .args([
                "sandbox",
                "--bind",
                "127.0.0.1:0",
                "--log-level",
                "warn",
                "--history-days",
                &history_days.to_string(),
            ])
            .arg("--config-dir")
            .arg(config_dir)
            .arg("--anchor")
            .arg(anchor.to_rfc3339())
            .args(["--tickets", &counts[0], "--time-entries", &counts[1]])
            .args(["--companies", &counts[2], "--contacts", &counts[3]])
            .args(extra)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .wrap_err("cannot start the sandbox process")?,
    );
    let stdout = child
        .0
        .stdout
        .take()
        .ok_or_else(|| eyre!("sandbox has no stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = super::listening_url(&line)
        .ok_or_else(|| eyre!("unexpected sandbox output: {line}"))?
        .to_string();
    Ok((child, url))
}

fn sandbox_tenant(config: &crate::config::Config) -> Result<String> {
    config
        .tenants
        .tenants
        .iter()
        .find(|t| {
            t.services
                .get(&Service::Connectwise)
                .is_some_and(|c| c.base_url.contains(runtime::SANDBOX_PLACEHOLDER))
        })
        .map(|t| t.tenant_id.clone())
        .ok_or_else(|| eyre!("no tenant in the registry uses the sandbox"))
}

async fn sandbox_stats(url: &str) -> Result<serde_json::Value> {
    Ok(serde_json::from_slice(
        &reqwest::get(format!("{url}/_sandbox/stats"))
            .await?
            .bytes()
            .await?,
    )?)
}

pub async fn run(global: &GlobalArgs, args: BenchArgs) -> Result<ExitCode> {
    if let Some(n) = args.rate_limit {
        return run_rate(global, &args, n).await;
    }
    if args.records == 0 || args.history_days == 0 {
        bail!("--records and --history-days must be at least 1");
    }
    let root = args.keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("avesa-bench-{}", std::process::id()))
    });
    if root.join("state.db").exists() {
        bail!(
            "{} already holds a job store; give an empty folder",
            root.display()
        );
    }
    let ws = Workspace { root: root.clone() };
    ws.ensure()?;
    let config = runtime::load_config(global, &ws)?;
    let anchor = runtime::today();
    let config_dir = config.dir.clone();

    let counts = [args.records.to_string(), "0".into(), "0".into(), "0".into()];
    let (child, url) = start_sandbox(&config_dir, anchor, args.history_days, &counts, &[])?;
    let mut global = global.clone();
    global.sandbox_url = Some(url.clone());
    let options = EngineOptions {
        pace_requests: false,
        // Measured on its own below, after the backfill's memory peak is read.
        auto_transform: false,
        ..EngineOptions::default()
    };
    let wired = runtime::wire_engine(&global, &ws, config.clone(), options).await?;
    let tenant_id = sandbox_tenant(&config)?;
    let req = PlanRequest {
        tenant_id: tenant_id.clone(),
        service: Service::Connectwise,
        tables: vec!["service/tickets".into()],
        start: Some(anchor - Duration::days(i64::from(args.history_days))),
        end: Some(anchor),
        chunk_size_days: Some(args.chunk_size_days),
    };
    let plan = planner::plan(&config, &req, Utc::now())?;
    let job = wired
        .engine
        .create_job(&plan, Utc::now())
        .await?
        .job()
        .clone();

    let started = std::time::Instant::now();
    let outcome = wired.engine.run_job(&job.job_id, None).await?;
    let secs = started.elapsed().as_secs_f64();

    let stats = sandbox_stats(&url).await?;
    let job = wired
        .engine
        .store()
        .get_job(&job.job_id)
        .await?
        .ok_or_else(|| eyre!("bench job vanished"))?;
    if job.records != args.records {
        bail!(
            "bench landed {} records of {} ({})",
            job.records,
            args.records,
            outcome.status
        );
    }
    let bytes = stats["bytes_sent"].as_u64().unwrap_or(0);
    let requests = stats["requests"].as_u64().unwrap_or(0);
    let peak = peak_rss_bytes().unwrap_or(0);
    let parquet = dir_size(&ws.data_dir());
    // The canonical transform of what landed: whole-history SCD Type 2 of the tickets.
    let t0 = std::time::Instant::now();
    let bucket_bytes = args
        .transform_bucket_mb
        .map_or(crate::transform::BUCKET_RAW_BYTES, |mb| {
            mb.max(1) * 1024 * 1024
        });
    let transformed = crate::transform::run_with(
        wired.engine.config(),
        wired.engine.sink(),
        &crate::transform::TransformRequest {
            tenant_id,
            tables: vec!["tickets".into()],
            services: vec![Service::Connectwise],
            mode: crate::transform::TransformMode::Backfill,
        },
        bucket_bytes,
    )
    .await?;
    let t_secs = t0.elapsed().as_secs_f64();
    let t_rows: u64 = transformed.iter().map(|r| r.stats.rows_in).sum();
    let t_bytes: u64 = transformed.iter().map(|r| r.bytes).sum();
    let t_buckets: usize = transformed.iter().map(|r| r.buckets).sum();
    let t_peak = peak_rss_bytes().unwrap_or(0);
    let report = json!({
        "records": job.records,
        "seconds": secs,
        "records_per_sec": job.records as f64 / secs,
        "json_mb_per_sec": bytes as f64 / 1e6 / secs,
        "json_bytes": bytes,
        "bytes_per_record": bytes as f64 / job.records as f64,
        "api_calls": requests,
        "chunks": job.total_chunks,
        "history_days": args.history_days,
        "peak_rss_mb": peak as f64 / 1048576.0,
        "parquet_mb": parquet as f64 / 1048576.0,
        "transform_rows": t_rows,
        "transform_seconds": t_secs,
        "transform_rows_per_sec": t_rows as f64 / t_secs,
        "transform_buckets": t_buckets,
        "canonical_mb": t_bytes as f64 / 1048576.0,
        "transform_peak_rss_mb": t_peak as f64 / 1048576.0,
    });
    drop(wired);
    drop(child);
    if args.keep.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    if args.json {
        outln!("{report}");
    } else {
        outln!(
            "backfilled {} records in {:.2} s: {:.0} records/s, {:.1} MB/s of JSON ({:.0} B/record), {} API calls, peak RSS {:.1} MB, Parquet {:.1} MB",
            job.records,
            secs,
            report["records_per_sec"].as_f64().unwrap_or(0.0),
            report["json_mb_per_sec"].as_f64().unwrap_or(0.0),
            report["bytes_per_record"].as_f64().unwrap_or(0.0),
            requests,
            report["peak_rss_mb"].as_f64().unwrap_or(0.0),
            report["parquet_mb"].as_f64().unwrap_or(0.0),
        );
        outln!(
            "canonical transform of {t_rows} rows in {t_buckets} bucket(s), {t_secs:.2} s: {:.0} rows/s, {:.1} MB of canonical Parquet, peak RSS {:.1} MB",
            report["transform_rows_per_sec"].as_f64().unwrap_or(0.0),
            report["canonical_mb"].as_f64().unwrap_or(0.0),
            report["transform_peak_rss_mb"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Rate mode: both sides at `n` requests per minute; how close does the engine get, and
/// does it ever overrun the server?
async fn run_rate(global: &GlobalArgs, args: &BenchArgs, n: u32) -> Result<ExitCode> {
    if n == 0 {
        bail!("--rate-limit must be at least 1");
    }
    let root = std::env::temp_dir().join(format!("avesa-bench-rate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let ws = Workspace { root: root.clone() };
    ws.ensure()?;
    let loaded = runtime::load_config(global, &ws)?;
    let anchor = runtime::today();
    // Enough records that the run never runs out of pages: one page per request.
    let page_size = 50u32;
    let per_table = u64::from(n) * (args.duration.as_secs() / 60 + 2) * u64::from(page_size);
    let counts = [
        per_table.to_string(),
        per_table.to_string(),
        "0".into(),
        "0".into(),
    ];
    let (child, url) = start_sandbox(
        &loaded.dir,
        anchor,
        args.history_days,
        &counts,
        &["--rate-limit".into(), n.to_string()],
    )?;
    let mut config = (*loaded).clone();
    let tenant_id = sandbox_tenant(&config)?;
    if let Some(eps) = config
        .endpoints
        .iter_mut()
        .find(|e| e.service == Service::Connectwise)
    {
        for ep in &mut eps.endpoints {
            ep.page_size = page_size;
        }
    }
    config
        .backfill
        .tenant_overrides
        .entry(tenant_id.clone())
        .or_default()
        .entry(Service::Connectwise)
        .or_default()
        .rate_limit_requests_per_minute = Some(n);
    let config = std::sync::Arc::new(config);
    let mut global = global.clone();
    global.sandbox_url = Some(url.clone());
    let options = EngineOptions {
        chunk_concurrency: args.concurrency.max(1),
        ..EngineOptions::default()
    };
    let wired = runtime::wire_engine(&global, &ws, config.clone(), options).await?;
    let req = PlanRequest {
        tenant_id,
        service: Service::Connectwise,
        tables: vec!["service/tickets".into(), "time/entries".into()],
        start: Some(anchor - Duration::days(i64::from(args.history_days))),
        end: Some(anchor),
        chunk_size_days: Some(args.chunk_size_days),
    };
    let plan = planner::plan(&config, &req, Utc::now())?;
    let job = wired
        .engine
        .create_job(&plan, Utc::now())
        .await?
        .job()
        .clone();
    let started = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + args.duration;
    wired.engine.run_job(&job.job_id, Some(deadline)).await?;
    let secs = started.elapsed().as_secs_f64();
    let stats = sandbox_stats(&url).await?;
    drop(wired);
    drop(child);
    let _ = std::fs::remove_dir_all(&root);
    let requests = stats["requests"].as_u64().unwrap_or(0);
    let refused = stats["rate_limited"].as_u64().unwrap_or(0);
    let accepted = requests - refused;
    // The first request is free at t=0; after that one per 60/n seconds.
    let allowed = 1.0 + secs * f64::from(n) / 60.0;
    let share = accepted as f64 / allowed;
    let report = json!({
        "limit_per_minute": n,
        "seconds": secs,
        "requests": requests,
        "accepted": accepted,
        "achieved_per_minute": accepted as f64 * 60.0 / secs,
        "share_of_limit": share,
        "self_caused_429": refused,
        "tables_in_parallel": args.concurrency.max(1),
    });
    if args.json {
        outln!("{report}");
    } else {
        outln!(
            "limit {n}/min for {secs:.1} s: {accepted} requests accepted ({:.1}/min, {:.1} % of the limit), {refused} refused with 429 (caused by the engine)",
            accepted as f64 * 60.0 / secs,
            share * 100.0
        );
    }
    Ok(ExitCode::SUCCESS)
}
