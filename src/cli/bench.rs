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

pub async fn run(global: &GlobalArgs, args: BenchArgs) -> Result<ExitCode> {
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
                &args.history_days.to_string(),
            ])
            .arg("--config-dir")
            .arg(&config_dir)
            .arg("--anchor")
            .arg(anchor.to_rfc3339())
            .args([
                "--tickets",
                &args.records.to_string(),
                "--time-entries",
                "0",
                "--companies",
                "0",
                "--contacts",
                "0",
            ])
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

    let mut global = global.clone();
    global.sandbox_url = Some(url.clone());
    let options = EngineOptions {
        pace_requests: false,
        ..EngineOptions::default()
    };
    let wired = runtime::wire_engine(&global, &ws, config.clone(), options).await?;
    let tenant_id = config
        .tenants
        .tenants
        .iter()
        .find(|t| {
            t.services
                .get(&Service::Connectwise)
                .is_some_and(|c| c.base_url.contains(runtime::SANDBOX_PLACEHOLDER))
        })
        .map(|t| t.tenant_id.clone())
        .ok_or_else(|| eyre!("no tenant in the registry uses the sandbox"))?;
    let req = PlanRequest {
        tenant_id,
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

    let stats: serde_json::Value = serde_json::from_slice(
        &reqwest::get(format!("{url}/_sandbox/stats"))
            .await?
            .bytes()
            .await?,
    )?;
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
    }
    Ok(ExitCode::SUCCESS)
}
