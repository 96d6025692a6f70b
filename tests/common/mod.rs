//! Shared pieces of the integration tests: a sandbox process on loopback, a configuration
//! fixture copied from `mappings/`, the real binary, and a Parquet reader.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use arrow_array::{Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use std::sync::Arc;

use avesa_console::config::Config;
use avesa_console::domain::{Service, Window};
use avesa_console::engine::planner::PlanRequest;
use avesa_console::engine::{Engine, EngineOptions, NoSource, SourceProvider};
use avesa_console::sandbox::{SandboxConfig, TableCounts};
use avesa_console::sink::RawSink;
use avesa_console::sources::Source;
use avesa_console::store::SqliteStore;
use chrono::{DateTime, TimeZone, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub mod skip;

pub const BIN: &str = env!("CARGO_BIN_EXE_avesa-console");

/// The fixed end of the sandbox's history in tests.
pub fn anchor() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

pub fn repo_mappings() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A temporary workspace and a copy of `mappings/` that a test may edit.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo_mappings(), &dir.path().join("config"));
        Fixture { dir }
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn workspace(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.workspace().join("data")
    }

    /// Edits one JSON file of the configuration copy.
    pub fn edit(&self, file: &str, f: impl FnOnce(&mut serde_json::Value)) -> &Self {
        let path = self.config_dir().join(file);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        self
    }

    /// Makes `tenant`'s `service` connection sign in with OAuth client credentials: its
    /// credentials file keeps `client_id` and `client_secret`, without user or password.
    pub fn client_credentials_only(&self, tenant: &str, service: &str) -> &Self {
        self.edit(&format!("credentials/{tenant}-{service}.json"), |v| {
            let fields = v.as_object_mut().unwrap();
            fields.remove("username");
            fields.remove("password");
        })
    }

    /// Sets every service's rate limit and every endpoint's page size, fast retries and a
    /// short circuit-breaker cool-down.
    pub fn tune(&self, rate_per_minute: u32, page_size: u32) -> &Self {
        self.edit("backfill_config.json", |v| {
            for service in ["connectwise", "servicenow", "salesforce"] {
                v["service_settings"][service]["rate_limit_requests_per_minute"] =
                    rate_per_minute.into();
            }
            v["default_settings"]["retry_backoff_seconds"] = 0.05.into();
            v["default_settings"]["request_retries"] = 2.into();
            v["default_settings"]["request_retry_min_delay_ms"] = 10.into();
            v["default_settings"]["circuit_breaker_cooldown_seconds"] = 0.2.into();
        });
        for service in ["connectwise", "servicenow", "salesforce"] {
            let file = format!("endpoints/{service}.json");
            self.edit(&file, |v| {
                for ep in v["endpoints"].as_array_mut().unwrap() {
                    ep["page_size"] = page_size.into();
                }
            });
        }
        self
    }

    pub fn config(&self) -> Config {
        Config::load(&self.config_dir()).unwrap()
    }

    /// Sets these fields of `default_settings` in `backfill_config.json`.
    pub fn defaults(&self, fields: &[(&str, serde_json::Value)]) -> &Self {
        self.edit("backfill_config.json", |v| {
            for (field, value) in fields {
                v["default_settings"][*field] = value.clone();
            }
        })
    }

    /// Why the configuration does not load.
    pub fn config_error(&self) -> String {
        Config::load(&self.config_dir()).unwrap_err().to_string()
    }

    /// An engine over this configuration, a SQLite store and a local sink in this folder,
    /// reading every tenant's service from `source`; requests unpaced, no automatic
    /// transform.
    pub fn engine_over(&self, source: Arc<dyn Source>) -> (Engine, Arc<SqliteStore>) {
        let store = Arc::new(SqliteStore::open(&self.dir.path().join("state.db")).unwrap());
        let options = EngineOptions {
            pace_requests: false,
            poll_interval: Duration::from_millis(10),
            auto_transform: false,
            ..EngineOptions::default()
        };
        let engine = Engine::new(
            Arc::new(self.config()),
            store.clone(),
            store.clone(),
            RawSink::local(&self.data_dir()).unwrap(),
            Arc::new(OneSource(source)),
            options,
        );
        (engine, store)
    }
}

/// Every tenant's every service reads from this one source.
pub struct OneSource(pub Arc<dyn Source>);

impl SourceProvider for OneSource {
    fn source(&self, _: &str, _: Service) -> Result<Arc<dyn Source>, NoSource> {
        Ok(self.0.clone())
    }
}

/// A job of acme's ConnectWise tickets: one chunk of 10 days from 2025-01-01; its id.
pub async fn one_chunk_job(engine: &Engine) -> String {
    let start = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    tickets_job(engine, start, 10, 10).await
}

/// A job of acme's ConnectWise tickets: `days` days from `start` in chunks of `chunk_days`;
/// its id.
pub async fn tickets_job(
    engine: &Engine,
    start: DateTime<Utc>,
    days: u32,
    chunk_days: u32,
) -> String {
    let request = PlanRequest {
        tenant_id: "acme".into(),
        service: Service::Connectwise,
        tables: vec!["tickets".into()],
        start: Some(start),
        end: Some(start + chrono::Duration::days(i64::from(days))),
        chunk_size_days: Some(chunk_days),
    };
    let plan = engine.plan(&request, Utc::now()).unwrap();
    let created = engine.create_job(&plan, Utc::now()).await.unwrap();
    created.job().job_id.clone()
}

impl Fixture {
    /// Runs the binary against this fixture's workspace and configuration.
    pub fn cli(&self, sandbox: Option<&SandboxProc>, args: &[&str]) -> Output {
        self.command(sandbox, args).output().unwrap()
    }

    pub fn command(&self, sandbox: Option<&SandboxProc>, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--workspace")
            .arg(self.workspace())
            .arg("--config-dir")
            .arg(self.config_dir())
            .arg("--log-level")
            .arg("warn")
            .args(args)
            .env_remove("AVESA_WORKSPACE")
            .env_remove("AVESA_CONFIG_DIR")
            .env_remove("AVESA_SANDBOX_URL")
            .stdin(Stdio::null());
        if let Some(s) = sandbox {
            cmd.arg("--sandbox-url").arg(&s.url);
        }
        cmd
    }

    /// The sandbox dataset this fixture's configuration describes.
    pub fn sandbox_config(&self, counts: TableCounts) -> SandboxConfig {
        avesa_console::cli::sandbox_config(&self.config(), anchor(), 730, counts).unwrap()
    }

    pub fn start_sandbox(&self, extra: &[&str]) -> SandboxProc {
        SandboxProc::start(&self.config_dir(), extra)
    }
}

/// `trigger` arguments for a ConnectWise range of one tenant (`table: None`: every table),
/// followed by `extra`.
pub fn trigger_args<'a>(
    tenant: &'a str,
    table: Option<&'a str>,
    start: &'a str,
    end: Option<&'a str>,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["trigger", "--tenant-id", tenant, "--service", "connectwise"];
    if let Some(t) = table {
        args.extend(["--table", t]);
    }
    args.extend(["--start-date", start]);
    if let Some(e) = end {
        args.extend(["--end-date", e]);
    }
    args.extend_from_slice(extra);
    args
}

/// The job most exactness tests run: two years of acme's tickets in 30-day windows
/// (`backfill_acme_connectwise_20240101`), stored and not run.
pub const TWO_YEARS_OF_TICKETS: &str = "backfill_acme_connectwise_20240101";

/// Triggers `TWO_YEARS_OF_TICKETS` (without running it) and asserts it was stored.
pub fn trigger_two_years_of_tickets(fx: &Fixture, sandbox: &SandboxProc) {
    let out = fx.cli(
        Some(sandbox),
        &trigger_args(
            "acme",
            Some("tickets"),
            "2024-01-01",
            Some("2026-01-01"),
            &["--chunk-size-days", "30"],
        ),
    );
    assert_ok(&out);
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn assert_ok(out: &Output) {
    assert!(out.status.success(), "command failed: {}", text(out));
}

/// `avesa-console sandbox` as a child process on an ephemeral loopback port.
pub struct SandboxProc {
    pub child: Child,
    pub url: String,
}

impl SandboxProc {
    pub fn start(config_dir: &Path, extra: &[&str]) -> SandboxProc {
        let anchor = anchor().to_rfc3339();
        let mut args = vec!["--history-days", "730", "--anchor", &anchor];
        args.extend_from_slice(extra);
        SandboxProc::serve(config_dir, &args)
    }

    /// `sandbox --bind 127.0.0.1:0` on this configuration with `args` (its history ending
    /// today unless they say otherwise).
    pub fn serve(config_dir: &Path, args: &[&str]) -> SandboxProc {
        let mut child = Command::new(BIN)
            .args(["sandbox", "--bind", "127.0.0.1:0", "--log-level", "warn"])
            .arg("--config-dir")
            .arg(config_dir)
            .args(args)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = avesa_console::cli::listening_url(&line)
            .unwrap_or_else(|| panic!("unexpected sandbox output {line:?}"))
            .to_string();
        SandboxProc { child, url }
    }

    pub fn stats(&self) -> serde_json::Value {
        let body = reqwest::blocking_get(&format!("{}/_sandbox/stats", self.url));
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for SandboxProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tiny blocking GET over a fresh runtime (tests are synchronous).
pub mod reqwest {
    pub fn blocking_get(url: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { ::reqwest::get(url).await.unwrap().text().await.unwrap() })
    }

    /// POSTs with an empty body; panics unless the answer is 2xx.
    pub fn blocking_post(url: &str) -> String {
        blocking_post_body(url, "")
    }

    /// POSTs `body`; panics unless the answer is 2xx.
    pub fn blocking_post_body(url: &str, body: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = ::reqwest::Client::new()
                .post(url)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.text().await.unwrap();
            assert!(status.is_success(), "POST {url}: {status} {body}");
            body
        })
    }
}

/// Only Parquet parts in a raw table's folder, and in its `compacted/` folder only compacted
/// files and their records: no staging file or partial part is ever visible.
pub fn assert_no_stray_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && path.file_name().is_some_and(|n| n == "compacted") {
            for inner in std::fs::read_dir(&path).unwrap().flatten() {
                let ext = inner
                    .path()
                    .extension()
                    .map(|e| e.to_string_lossy().into_owned());
                assert!(
                    matches!(ext.as_deref(), Some("parquet" | "json")),
                    "stray file {}",
                    inner.path().display()
                );
            }
            continue;
        }
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some("parquet"),
            "stray file {}",
            path.display()
        );
    }
}

/// A table's raw files as every reader sees them (`RawSink::list_table_objects`: compacted
/// files with their records applied), sorted.
pub fn live_raw_files(
    data_dir: &Path,
    tenant: &str,
    service: Service,
    table: &str,
) -> Vec<PathBuf> {
    let store = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(data_dir).unwrap());
    let sink = RawSink::new(store);
    let (tenant, table) = (tenant.to_string(), table.to_string());
    let live = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(sink.list_table_objects(&tenant, service, &table))
            .unwrap()
    })
    .join()
    .unwrap();
    let mut files: Vec<PathBuf> = live
        .iter()
        .map(|m| data_dir.join(m.location.as_ref()))
        .collect();
    files.sort();
    files
}

/// Every row of a table's Parquet files: id → lastUpdated, and how often each id appears.
pub struct Landed {
    pub rows: Vec<(i64, DateTime<Utc>)>,
    pub files: Vec<PathBuf>,
    pub batches: Vec<RecordBatch>,
}

impl Landed {
    pub fn read(data_dir: &Path, tenant: &str, table: &str) -> Landed {
        let dir = data_dir
            .join(tenant)
            .join("raw")
            .join("connectwise")
            .join(table);
        assert_no_stray_files(&dir);
        let files = live_raw_files(data_dir, tenant, Service::Connectwise, table);
        let mut rows = Vec::new();
        let mut batches = Vec::new();
        for f in &files {
            let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
                .unwrap()
                .build()
                .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let ids = batch
                    .column_by_name("id")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .clone();
                let upd = batch
                    .column_by_name("_info__lastUpdated")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .unwrap()
                    .clone();
                for i in 0..batch.num_rows() {
                    assert!(!ids.is_null(i));
                    rows.push((
                        ids.value(i),
                        DateTime::from_timestamp_micros(upd.value(i)).unwrap(),
                    ));
                }
                batches.push(batch);
            }
        }
        rows.sort();
        Landed {
            rows,
            files,
            batches,
        }
    }

    /// Ids that appear more than once.
    pub fn duplicates(&self) -> Vec<i64> {
        let mut seen = BTreeMap::new();
        for (id, _) in &self.rows {
            *seen.entry(*id).or_insert(0) += 1;
        }
        seen.into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(id, _)| id)
            .collect()
    }
}

/// Asserts that `landed` is exactly the sandbox's records of `table` in `window`.
pub fn assert_exact(
    landed: &Landed,
    cfg: &SandboxConfig,
    company_id: &str,
    table: &str,
    window: &Window,
) {
    let expected = avesa_console::sandbox::expected_records(cfg, company_id, table, window);
    assert!(
        !expected.is_empty(),
        "the sandbox has no {table} records in {window}: the test proves nothing"
    );
    assert_eq!(
        landed.duplicates(),
        Vec::<i64>::new(),
        "duplicated ids in {table}"
    );
    let missing: Vec<_> = expected
        .iter()
        .filter(|e| landed.rows.binary_search(e).is_err())
        .take(5)
        .collect();
    let extra: Vec<_> = landed
        .rows
        .iter()
        .filter(|r| expected.binary_search(r).is_err())
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{table}: missing {missing:?}, unexpected {extra:?}"
    );
    assert_eq!(landed.rows.len(), expected.len());
}

/// Polls `f` until it returns Some, or panics after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `status --job-id` as JSON.
pub fn job_status(fx: &Fixture, job_id: &str) -> serde_json::Value {
    let out = fx.cli(None, &["status", "--job-id", job_id, "--output", "json"]);
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn company_of(fx: &Fixture, tenant: &str) -> String {
    let cfg = fx.config();
    let t = cfg.tenants.get(tenant).unwrap();
    let conn = &t.services[&avesa_console::domain::Service::Connectwise];
    cfg.tenants
        .resolve_credentials(tenant, avesa_console::domain::Service::Connectwise, conn)
        .unwrap()
        .get("company_id")
        .unwrap()
        .expose()
        .to_string()
}

pub fn parse_window(start: &str, end: &str) -> Window {
    Window::new(
        DateTime::parse_from_rfc3339(start)
            .unwrap()
            .with_timezone(&Utc),
        DateTime::parse_from_rfc3339(end)
            .unwrap()
            .with_timezone(&Utc),
    )
}

/// Every `(id, update time)` landed for a table of any service, ids as text, sorted; plus the
/// files read. For sources whose ids are strings (ServiceNow `sys_id`, Salesforce `Id`).
pub fn landed_keys(
    data_dir: &Path,
    tenant: &str,
    service: &str,
    table: &str,
    id_col: &str,
    ts_col: &str,
) -> (Vec<(String, DateTime<Utc>)>, Vec<PathBuf>) {
    use arrow_array::StringArray;
    let dir = data_dir.join(tenant).join("raw").join(service).join(table);
    assert_no_stray_files(&dir);
    let files = live_raw_files(data_dir, tenant, service.parse().unwrap(), table);
    let mut rows = Vec::new();
    for f in &files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let col = batch
                .column_by_name(id_col)
                .unwrap_or_else(|| panic!("{} has no column {id_col}", f.display()));
            let ids: Vec<String> = if let Some(s) = col.as_any().downcast_ref::<StringArray>() {
                (0..s.len()).map(|i| s.value(i).to_string()).collect()
            } else {
                let n = col.as_any().downcast_ref::<Int64Array>().unwrap();
                (0..n.len()).map(|i| n.value(i).to_string()).collect()
            };
            let upd = batch
                .column_by_name(ts_col)
                .unwrap_or_else(|| panic!("{} has no column {ts_col}", f.display()))
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap()
                .clone();
            for (i, id) in ids.into_iter().enumerate() {
                rows.push((id, DateTime::from_timestamp_micros(upd.value(i)).unwrap()));
            }
        }
    }
    rows.sort();
    (rows, files)
}

/// The manifest of a canonical table in a local workspace's data folder and the table's folder;
/// `None` when the table was never built.
fn canonical_manifest(
    data_dir: &Path,
    tenant: &str,
    table: &str,
) -> Option<(avesa_console::transform::Manifest, PathBuf)> {
    let dir = data_dir
        .join(tenant)
        .join("canonical")
        .join(table)
        .join("connectwise");
    let manifest = dir.join(avesa_console::transform::layout::MANIFEST_FILE);
    let bytes = std::fs::read(&manifest).ok()?;
    let m =
        avesa_console::transform::Manifest::parse(&bytes, &manifest.display().to_string()).unwrap();
    Some((m, dir))
}

/// The files of the current version of a canonical table (bases and deltas) in a local
/// workspace's data folder, as its manifest names them (`transform::layout`); empty when the
/// table was never built.
pub fn canonical_files(data_dir: &Path, tenant: &str, table: &str) -> Vec<PathBuf> {
    canonical_manifest(data_dir, tenant, table)
        .map(|(m, dir)| {
            m.files
                .iter()
                .flat_map(|f| {
                    f.files()
                        .map(|(name, _)| dir.join(name))
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The current rows of a canonical table, a batch per bucket: each bucket's files read and
/// resolved by the crate's rule (`transform::resolve`).
pub fn canonical_batches(data_dir: &Path, tenant: &str, table: &str) -> Vec<RecordBatch> {
    let Some((m, dir)) = canonical_manifest(data_dir, tenant, table) else {
        return Vec::new();
    };
    m.files
        .iter()
        .filter_map(|bucket| {
            let files = bucket
                .files()
                .map(|(name, generation)| {
                    let path = dir.join(name);
                    let bytes =
                        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    (bytes.into(), generation, path.display().to_string())
                })
                .collect();
            avesa_console::transform::resolve::resolve_files(files).unwrap()
        })
        .collect()
}
