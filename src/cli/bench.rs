//! `avesa-console bench`: backfills N ticket records from a sandbox in a child process,
//! with pacing off, and prints throughput and this process's peak memory. Rate mode
//! (`--rate-limit`, `--matrix`) is in `rate.rs`.

mod rate;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};

use chrono::{DateTime, Duration, Utc};
use color_eyre::eyre::{Result, WrapErr, bail, eyre};
use serde_json::json;

use super::GlobalArgs;
use super::args::ranged;
use super::runtime;
use super::sandbox_cmd::MAX_RECORDS;
use crate::config::{CHUNK_SIZE_DAYS, LOOKBACK_DAYS, MAX_IN_FLIGHT, RATE_PER_MINUTE};
use crate::domain::{Job, Service};
use crate::engine::planner::{self, PlanRequest};
use crate::engine::{Engine, EngineOptions};
use crate::workspace::Workspace;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Ticket records to backfill.
    #[arg(long, default_value_t = 1_000_000, value_parser = ranged::<u64>(1..=MAX_RECORDS))]
    pub records: u64,
    #[arg(long, default_value_t = 30, value_parser = ranged::<u32>(CHUNK_SIZE_DAYS))]
    pub chunk_size_days: u32,
    /// Days of history the records are spread over (more days: more chunks of the same size).
    #[arg(long, default_value_t = 730, value_parser = ranged::<u32>(LOOKBACK_DAYS))]
    pub history_days: u32,
    /// Keep the bench workspace (store and Parquet files) in this folder instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Rate mode: the sandbox enforces this many requests per minute per tenant strictly
    /// (burst 1) and the engine is configured at the same rate; prints the achieved share
    /// of the limit, requests in flight, API calls, records and the 429s the engine caused.
    #[arg(long, value_parser = ranged::<u32>(RATE_PER_MINUTE))]
    pub rate_limit: Option<u32>,
    /// Rate mode: every sandbox answer is held back this many ms.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub latency_ms: u64,
    /// Rate mode: the latency varies by up to this many ms either way (uniform).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub jitter_ms: u64,
    /// Rate mode: run the engine as this many `run` processes on the bench's workspace,
    /// sharing one job (default: in this process).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub processes: Option<usize>,
    /// Rate mode for every limit of 60, 200, 1000, 6000/min × latency 0, 300, 1500, 3000 ms,
    /// `--duration` each; prints a table of the shares of the limit.
    #[arg(long, conflicts_with = "rate_limit")]
    pub matrix: bool,
    /// Rate mode: how long to run (each cell of the matrix).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Windows in flight at most (in rate mode they share the tenant's budget); default: the
    /// service's `max_in_flight`.
    #[arg(long, value_parser = ranged::<usize>(MAX_IN_FLIGHT))]
    pub concurrency: Option<usize>,
    /// Raw Parquet MB per record-id bucket of the canonical transform (default: the shipped
    /// bucket size).
    #[arg(long, value_parser = ranged::<u64>(1..=1_048_576))]
    pub transform_bucket_mb: Option<u64>,
}

/// Starts this process's peak resident memory (VmHWM) over from its current size, so the
/// next reading is the peak of what runs from now on; false where Linux's `clear_refs` is
/// not there.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// Peak resident memory of this process (VmHWM), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM:")
}

/// Resident memory of this process now (VmRSS), in bytes: what a peak read after
/// `reset_peak_rss` starts from (memory the allocator kept from earlier steps included).
pub fn rss_bytes() -> Option<u64> {
    proc_status_bytes("VmRSS:")
}

/// A `kB` line of `/proc/self/status`, in bytes.
fn proc_status_bytes(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
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

fn sandbox_tenant(config: &crate::config::Config) -> Result<&str> {
    config
        .tenants
        .tenants
        .iter()
        .find(|t| {
            t.services
                .get(&Service::Connectwise)
                .is_some_and(|c| c.base_url.contains(runtime::SANDBOX_PLACEHOLDER))
        })
        .map(|t| t.tenant_id.as_str())
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

/// The bench's ConnectWise job over `tables` of the sandbox tenant's last `history_days`.
async fn create_job(
    engine: &Engine,
    tenant_id: &str,
    tables: &[&str],
    args: &BenchArgs,
    anchor: DateTime<Utc>,
) -> Result<Job> {
    let start = anchor - Duration::days(i64::from(args.history_days));
    create_job_over(engine, tenant_id, tables, args, (start, anchor)).await
}

/// A ConnectWise job over `tables` of the sandbox tenant in `[range.0, range.1)`.
async fn create_job_over(
    engine: &Engine,
    tenant_id: &str,
    tables: &[&str],
    args: &BenchArgs,
    range: (DateTime<Utc>, DateTime<Utc>),
) -> Result<Job> {
    let req = PlanRequest {
        tenant_id: tenant_id.to_string(),
        service: Service::Connectwise,
        tables: tables.iter().map(|t| t.to_string()).collect(),
        start: Some(range.0),
        end: Some(range.1),
        chunk_size_days: Some(args.chunk_size_days),
    };
    let plan = planner::plan(engine.config(), &req, Utc::now())?;
    Ok(engine.create_job(&plan, Utc::now()).await?.job().clone())
}

pub async fn run(global: &GlobalArgs, args: BenchArgs) -> Result<ExitCode> {
    if args.rate_limit.is_some() || args.matrix {
        return rate::run(global, &args).await;
    }
    if args.processes.is_some() || args.latency_ms > 0 || args.jitter_ms > 0 {
        bail!("--processes, --latency-ms and --jitter-ms need --rate-limit N or --matrix");
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
    let anchor = history_end(runtime::today(), args.records);

    let counts = [args.records.to_string(), "0".into(), "0".into(), "0".into()];
    let (child, url) = start_sandbox(&config.dir, anchor, args.history_days, &counts, &[])?;
    let mut global = global.clone();
    global.sandbox_url = Some(url.clone());
    let options = EngineOptions {
        pace_requests: false,
        // Measured on its own below, after the backfill's memory peak is read.
        auto_transform: false,
        auto_compact: false,
        chunk_concurrency: args.concurrency,
        ..EngineOptions::default()
    };
    let wired = runtime::wire_engine(&global, &ws, config.clone(), options).await?;
    let tenant_id = sandbox_tenant(&config)?;
    let job = create_job(
        &wired.engine,
        tenant_id,
        &["service/tickets"],
        &args,
        anchor,
    )
    .await?;
    let backfill = measure_backfill(&wired.engine, &job, &url, &ws, args.records).await?;
    let mut compaction = measure_compaction(&wired.engine, tenant_id).await?;
    let transform = measure_transform(&wired.engine, tenant_id, args.transform_bucket_mb).await?;
    let (sync, sync_newest) = measure_syncs(&wired.engine, tenant_id, &url, &args, anchor).await?;
    // Read back after both peaks were taken: the engine's counter is not the proof.
    let landed = landed_distinct_ids(&wired.engine, tenant_id).await?;
    if landed != args.records {
        bail!(
            "bench read back {landed} distinct ticket ids from the Parquet, not {}",
            args.records
        );
    }
    let mut report = backfill.report(&transform, args.history_days);
    report["landed_distinct_ids"] = json!(landed);
    add_compaction_peak(&mut report, &mut compaction);
    report["raw_compaction"] = json!(compaction);
    report["sync"] = sync.report();
    report["sync_newest"] = sync_newest.report();
    drop(wired);
    drop(child);
    if args.keep.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    if args.json {
        outln!("{report}");
    } else {
        print_backfill(&report, &backfill, &transform);
        print_compaction(&compaction);
        print_memory(&report["memory"]);
        sync.print();
        sync_newest.print();
    }
    Ok(ExitCode::SUCCESS)
}

/// What the backfill of the bench job did.
struct Backfill {
    job: Job,
    secs: f64,
    bytes: u64,
    requests: u64,
    peak: u64,
    parquet: u64,
}

/// What the canonical transform of the landed tickets did.
struct Transform {
    rows: u64,
    secs: f64,
    bytes: u64,
    buckets: usize,
    peak: u64,
    /// Whether `peak` is the transform's own (else the process's, backfill included).
    own_peak: bool,
    /// Resident memory when the transform started.
    start_rss: u64,
}

/// Runs the bench job to its end; every record must land.
async fn measure_backfill(
    engine: &Engine,
    job: &Job,
    url: &str,
    ws: &Workspace,
    records: u64,
) -> Result<Backfill> {
    let started = std::time::Instant::now();
    let outcome = engine.run_job(&job.job_id, None).await?;
    let secs = started.elapsed().as_secs_f64();

    let stats = sandbox_stats(url).await?;
    let job = engine
        .store()
        .get_job(&job.job_id)
        .await?
        .ok_or_else(|| eyre!("bench job vanished"))?;
    if job.records != records {
        bail!(
            "bench landed {} records of {} ({})",
            job.records,
            records,
            outcome.status
        );
    }
    Ok(Backfill {
        job,
        secs,
        bytes: stats["bytes_sent"].as_u64().unwrap_or(0),
        requests: stats["requests"].as_u64().unwrap_or(0),
        peak: peak_rss_bytes().unwrap_or(0),
        parquet: dir_size(&ws.data_dir()),
    })
}

/// Distinct values of the `id` column over the raw tickets readers see (the listing with
/// compaction applied), read back from the files (only that column).
async fn landed_distinct_ids(engine: &Engine, tenant_id: &str) -> Result<u64> {
    use arrow_array::{Array, Int64Array};
    use object_store::ObjectStoreExt;
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut ids = std::collections::HashSet::new();
    let sink = engine.sink();
    let files = sink
        .list_table_files(tenant_id, Service::Connectwise, "tickets")
        .await?;
    for path in files {
        let bytes = sink.store().get(&path).await?.bytes().await?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
        let column = builder
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.name() == "id")
            .ok_or_else(|| eyre!("{path}: no id column"))?;
        let mask = ProjectionMask::leaves(builder.parquet_schema(), [column]);
        for batch in builder.with_projection(mask).build()? {
            let batch = batch?;
            let col = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| eyre!("{path}: id is not a 64-bit integer"))?;
            ids.extend(col.iter().flatten());
        }
    }
    Ok(ids.len() as u64)
}

/// Raw compaction of the landed tickets: files and sizes before and after.
/// Its own time and peak memory too (the process's VmHWM is reset before it starts).
async fn measure_compaction(engine: &Engine, tenant_id: &str) -> Result<serde_json::Value> {
    let own_peak = reset_peak_rss();
    // What the process held already (the peak cannot go below it).
    let rss_at_start = rss_bytes().unwrap_or(0);
    let t0 = std::time::Instant::now();
    let tables = engine
        .compact(&crate::engine::compact::CompactRequest {
            tenant_id: Some(tenant_id.to_string()),
            service: Some(Service::Connectwise),
            table: Some("tickets".into()),
            dry_run: false,
        })
        .await?;
    let t = tables
        .first()
        .ok_or_else(|| eyre!("the bench job's tickets were not found for compaction"))?;
    Ok(json!({
        "seconds": t0.elapsed().as_secs_f64(),
        "files_before": t.before.files,
        "median_bytes_before": t.before.median_bytes,
        "bytes_before": t.before.bytes,
        "files_after": t.after.files,
        "median_bytes_after": t.after.median_bytes,
        "bytes_after": t.after.bytes,
        "compacted_files": t.compacted.len(),
        "peak_rss_mb": peak_rss_bytes().unwrap_or(0) as f64 / 1048576.0,
        "peak_is_its_own": own_peak,
        "rss_at_start_mb": rss_at_start as f64 / 1048576.0,
    }))
}

/// The peak of backfill, compaction and transform together (`run_peak_rss_mb` is the
/// backfill's and the transform's), as `trigger --run` has them one after the other; and
/// each step's peak beside it (`memory`).
fn add_compaction_peak(report: &mut serde_json::Value, compaction: &mut serde_json::Value) {
    let peak = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let run = peak(&report["run_peak_rss_mb"]).max(peak(&compaction["peak_rss_mb"]));
    report["run_with_compaction_peak_rss_mb"] = json!(run);
    compaction["run_peak_rss_mb"] = json!(run);
    report["memory"] = memory_summary(report, compaction);
}

/// Each step's own peak RSS as `trigger --run` has them one after the other (backfill, raw
/// compaction at hand-off, canonical transform), and the peak of the three.
fn memory_summary(report: &serde_json::Value, compaction: &serde_json::Value) -> serde_json::Value {
    json!({
        "backfill_peak_rss_mb": report["peak_rss_mb"],
        "compaction_peak_rss_mb": compaction["peak_rss_mb"],
        "transform_peak_rss_mb": report["transform_peak_rss_mb"],
        "transform_start_rss_mb": report["transform_start_rss_mb"],
        "run_peak_rss_mb": report["run_with_compaction_peak_rss_mb"],
    })
}

fn print_memory(m: &serde_json::Value) {
    let mb = |k: &str| m[k].as_f64().unwrap_or(0.0);
    outln!(
        "peak RSS: backfill {:.1} MB, raw compaction {:.1} MB, canonical transform {:.1} MB (from {:.1} MB resident at its start); the whole run (backfill + compaction + transform) {:.1} MB",
        mb("backfill_peak_rss_mb"),
        mb("compaction_peak_rss_mb"),
        mb("transform_peak_rss_mb"),
        mb("transform_start_rss_mb"),
        mb("run_peak_rss_mb"),
    );
}

fn print_compaction(c: &serde_json::Value) {
    let mb = |k: &str| c[k].as_u64().unwrap_or(0) as f64 / 1_048_576.0;
    outln!(
        "raw compaction in {:.2} s: {} files (median {:.2} MB, {:.1} MB) -> {} files (median {:.2} MB, {:.1} MB), peak RSS {:.1} MB{} (RSS {:.1} MB when it started); backfill + compaction + transform peak RSS {:.1} MB",
        c["seconds"].as_f64().unwrap_or(0.0),
        c["files_before"],
        mb("median_bytes_before"),
        mb("bytes_before"),
        c["files_after"],
        mb("median_bytes_after"),
        mb("bytes_after"),
        c["peak_rss_mb"].as_f64().unwrap_or(0.0),
        if c["peak_is_its_own"].as_bool() == Some(true) {
            " (its own)"
        } else {
            " (the process's)"
        },
        c["rss_at_start_mb"].as_f64().unwrap_or(0.0),
        c["run_peak_rss_mb"].as_f64().unwrap_or(0.0),
    );
}

/// The incremental transform of the sandbox tenant's canonical tickets.
fn tickets_transform(tenant_id: &str) -> crate::transform::TransformRequest {
    crate::transform::TransformRequest {
        tenant_id: tenant_id.to_string(),
        tables: vec!["tickets".into()],
        services: vec![Service::Connectwise],
        mode: crate::transform::TransformMode::Incremental,
    }
}

/// The canonical transform of what landed: whole-history SCD Type 2 of the tickets.
async fn measure_transform(
    engine: &Engine,
    tenant_id: &str,
    bucket_mb: Option<u64>,
) -> Result<Transform> {
    // The transform's own peak, not the backfill's before it.
    let own_peak = reset_peak_rss();
    let start_rss = rss_bytes().unwrap_or(0);
    let t0 = std::time::Instant::now();
    let bucket_bytes = bucket_mb.map_or(crate::transform::BUCKET_RAW_BYTES, |mb| {
        mb.max(1) * 1024 * 1024
    });
    let transformed = crate::transform::run_with(
        engine.config(),
        engine.sink(),
        &tickets_transform(tenant_id),
        bucket_bytes,
    )
    .await?;
    Ok(Transform {
        secs: t0.elapsed().as_secs_f64(),
        rows: transformed.iter().map(|r| r.stats.rows_in).sum(),
        bytes: transformed.iter().map(|r| r.bytes).sum(),
        buckets: transformed.iter().map(|r| r.buckets).sum(),
        peak: peak_rss_bytes().unwrap_or(0),
        own_peak,
        start_rss,
    })
}

impl Backfill {
    fn report(&self, t: &Transform, history_days: u32) -> serde_json::Value {
        let (job, secs) = (&self.job, self.secs);
        json!({
            "records": job.records,
            "seconds": secs,
            "records_per_sec": job.records as f64 / secs,
            "json_mb_per_sec": self.bytes as f64 / 1e6 / secs,
            "json_bytes": self.bytes,
            "bytes_per_record": self.bytes as f64 / job.records as f64,
            "api_calls": self.requests,
            "chunks": job.total_chunks,
            "history_days": history_days,
            "peak_rss_mb": self.peak as f64 / 1048576.0,
            "parquet_mb": self.parquet as f64 / 1048576.0,
            "transform_rows": t.rows,
            "transform_seconds": t.secs,
            "transform_rows_per_sec": t.rows as f64 / t.secs,
            "transform_buckets": t.buckets,
            "canonical_mb": t.bytes as f64 / 1048576.0,
            "transform_peak_rss_mb": t.peak as f64 / 1048576.0,
            "transform_peak_is_its_own": t.own_peak,
            "transform_start_rss_mb": t.start_rss as f64 / 1048576.0,
            "run_peak_rss_mb": self.peak.max(t.peak) as f64 / 1048576.0,
        })
    }
}

fn print_backfill(report: &serde_json::Value, b: &Backfill, t: &Transform) {
    outln!(
        "read back {} distinct ticket ids from the Parquet parts",
        report["landed_distinct_ids"]
    );
    outln!(
        "backfilled {} records in {:.2} s: {:.0} records/s, {:.1} MB/s of JSON ({:.0} B/record), {} API calls, peak RSS {:.1} MB, Parquet {:.1} MB",
        b.job.records,
        b.secs,
        report["records_per_sec"].as_f64().unwrap_or(0.0),
        report["json_mb_per_sec"].as_f64().unwrap_or(0.0),
        report["bytes_per_record"].as_f64().unwrap_or(0.0),
        b.requests,
        report["peak_rss_mb"].as_f64().unwrap_or(0.0),
        report["parquet_mb"].as_f64().unwrap_or(0.0),
    );
    outln!(
        "canonical transform of {} rows in {} bucket(s), {:.2} s: {:.0} rows/s, {:.1} MB of canonical Parquet, peak RSS {:.1} MB{} from {:.1} MB resident at its start; backfill + transform peak RSS {:.1} MB",
        t.rows,
        t.buckets,
        t.secs,
        report["transform_rows_per_sec"].as_f64().unwrap_or(0.0),
        report["canonical_mb"].as_f64().unwrap_or(0.0),
        report["transform_peak_rss_mb"].as_f64().unwrap_or(0.0),
        if t.own_peak {
            " (its own)"
        } else {
            " (the process's)"
        },
        report["transform_start_rss_mb"].as_f64().unwrap_or(0.0),
        report["run_peak_rss_mb"].as_f64().unwrap_or(0.0),
    );
}

/// A sync after the transform: 1 % of the tickets edited, synced, and merged into the
/// canonical table incrementally.
struct SyncMeasure {
    /// The tickets created last were edited, not tickets spread over the table.
    newest: bool,
    edited: u64,
    synced: u64,
    /// Where the edits' update times end: a later sync's edits start after it.
    ends: DateTime<Utc>,
    secs: f64,
    buckets_written: usize,
    /// Of the files written, deltas (the rest are new bases).
    deltas_written: usize,
    buckets: usize,
    bytes_written: u64,
    table_bytes: u64,
    /// The incremental transform's own peak RSS, and the resident memory at its start.
    peak: u64,
    start_rss: u64,
}

/// Where the bench's history ends: far enough before `today` that the two 1 % syncs after it
/// (`measure_syncs`: edits one second apart, each sync's window ending a second after its last
/// edit) end in the past, as the planner requires of a job, at any time of day.
fn history_end(today: DateTime<Utc>, records: u64) -> DateTime<Utc> {
    let edited = (records / 100).max(1) as i64;
    let syncs = Duration::seconds(2 * (edited + 2));
    today - Duration::days(syncs.num_days() + 1)
}

/// A 1 % sync of tickets spread over the table after `anchor`, then one of the newest.
async fn measure_syncs(
    engine: &Engine,
    tenant_id: &str,
    url: &str,
    args: &BenchArgs,
    anchor: DateTime<Utc>,
) -> Result<(SyncMeasure, SyncMeasure)> {
    let spread = (anchor + Duration::seconds(1), false);
    let sync = measure_sync(engine, tenant_id, url, args, spread).await?;
    let newest = (sync.ends + Duration::seconds(1), true);
    let sync_newest = measure_sync(engine, tenant_id, url, args, newest).await?;
    Ok((sync, sync_newest))
}

/// Edits 1 % of the tickets from `edit.0` on (`edit.1`: the ones created last, else spread
/// over the whole table), syncs them and measures the incremental transform that follows.
async fn measure_sync(
    engine: &Engine,
    tenant_id: &str,
    url: &str,
    args: &BenchArgs,
    edit: (DateTime<Utc>, bool),
) -> Result<SyncMeasure> {
    let (at, newest) = edit;
    let edited = (args.records / 100).max(1);
    let config = engine.config();
    let conn = &config.tenant(tenant_id)?.services[&Service::Connectwise];
    let company = config
        .tenants
        .resolve_credentials(tenant_id, Service::Connectwise, conn)?
        .get("company_id")
        .ok_or_else(|| eyre!("the sandbox tenant has no company_id"))?
        .expose()
        .to_string();
    let edit = format!(
        "{url}/_sandbox/connectwise/edit?company_id={company}&table=tickets&records={edited}&at={}&newest={newest}",
        at.format("%Y-%m-%dT%H:%M:%SZ")
    );
    reqwest::Client::new()
        .post(edit)
        .send()
        .await?
        .error_for_status()?;
    let ends = at + Duration::seconds(edited as i64 + 1);
    let job = create_job_over(engine, tenant_id, &["service/tickets"], args, (at, ends)).await?;
    engine.run_job(&job.job_id, None).await?;
    let synced = engine
        .store()
        .get_job(&job.job_id)
        .await?
        .map_or(0, |j| j.records);
    let own_peak = reset_peak_rss();
    let start_rss = rss_bytes().unwrap_or(0);
    let t0 = std::time::Instant::now();
    let reports =
        crate::transform::run(config, engine.sink(), &tickets_transform(tenant_id)).await?;
    let r = reports
        .first()
        .ok_or_else(|| eyre!("the sync's transform reported nothing"))?;
    Ok(SyncMeasure {
        newest,
        edited,
        synced,
        ends,
        secs: t0.elapsed().as_secs_f64(),
        buckets_written: r.buckets_written,
        deltas_written: r.deltas_written,
        buckets: r.buckets,
        bytes_written: r.bytes,
        table_bytes: r.table_bytes,
        peak: if own_peak {
            peak_rss_bytes().unwrap_or(0)
        } else {
            0
        },
        start_rss,
    })
}

impl SyncMeasure {
    fn share(&self) -> f64 {
        100.0 * self.bytes_written as f64 / self.table_bytes.max(1) as f64
    }

    /// Merges between two folds of a bucket's deltas, each writing this sync's share, within
    /// both fold limits (`transform::MAX_DELTAS`, `FOLD_SHARE_PERCENT`).
    fn deltas_per_fold(&self) -> u64 {
        let by_share =
            (crate::transform::FOLD_SHARE_PERCENT as f64 / self.share().max(1e-9)).floor();
        (crate::transform::MAX_DELTAS as f64).min(by_share) as u64
    }

    /// Percent of the table written per sync like this one, amortised over a fold cycle:
    /// `deltas_per_fold` deltas, then a new base (the whole table).
    fn amortised_share(&self) -> f64 {
        let k = self.deltas_per_fold() as f64;
        (k * self.share() + 100.0) / (k + 1.0)
    }

    fn which(&self) -> &'static str {
        if self.newest {
            "created last"
        } else {
            "spread over the table"
        }
    }

    fn report(&self) -> serde_json::Value {
        json!({
            "edited": self.edited,
            "edited_records": self.which(),
            "synced_records": self.synced,
            "transform_seconds": self.secs,
            "transform_peak_rss_mb": self.peak as f64 / 1048576.0,
            "transform_start_rss_mb": self.start_rss as f64 / 1048576.0,
            "buckets_written": self.buckets_written,
            "delta_files_written": self.deltas_written,
            "base_files_written": self.buckets_written - self.deltas_written,
            "buckets": self.buckets,
            "bytes_written": self.bytes_written,
            "canonical_bytes": self.table_bytes,
            "rewritten_percent": self.share(),
            "amortised_rewritten_percent": self.amortised_share(),
        })
    }

    fn print(&self) {
        outln!(
            "sync of {} edited tickets ({}; {} records synced): incremental transform {:.2} s, peak RSS {:.1} MB from {:.1} MB resident at its start, {}/{} buckets written ({} delta, {} base files), {:.1} MB of {:.1} MB canonical ({:.1} %; amortised with a fold after {} such syncs, computed from the fold limits: {:.1} %)",
            self.edited,
            self.which(),
            self.synced,
            self.secs,
            self.peak as f64 / 1048576.0,
            self.start_rss as f64 / 1048576.0,
            self.buckets_written,
            self.buckets,
            self.deltas_written,
            self.buckets_written - self.deltas_written,
            self.bytes_written as f64 / 1048576.0,
            self.table_bytes as f64 / 1048576.0,
            self.share(),
            self.deltas_per_fold(),
            self.amortised_share(),
        );
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_syncs_after_the_history_end_before_today_at_any_size() {
        let today = Utc.with_ymd_and_hms(2026, 12, 6, 0, 0, 0).unwrap();
        for records in [2_500, 1_000_000, 3_000_000, 10_000_000, 100_000_000] {
            let end = history_end(today, records);
            let edited = (records / 100).max(1) as i64;
            // As `measure_syncs` places them: the first sync's edits from a second after the
            // history, its window ending a second after its last edit; the second's likewise.
            let sync = Duration::seconds(1 + edited + 1);
            let second_ends = end + sync + sync;
            assert!(
                second_ends <= today,
                "{records} records: the syncs end at {second_ends}, after {today}"
            );
        }
    }
}
