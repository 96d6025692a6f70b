//! The composition root: loads configuration, opens the store, starts the in-process
//! sandbox where a connection asks for it, and wires sources into the engine.
//!
//! Locally `wire_engine` builds the engine over the workspace's SQLite file (job and lifecycle
//! store in one) and the local raw sink, starting the in-process sandbox when a connection says
//! `${SANDBOX_URL}`. For the cloud, `cloud_engine` builds an engine over the deployment's DynamoDB
//! stores that runs no chunk (the cloud console, `alerts --cloud`, `cleanup --cloud`), and
//! `cloud_data_engine` one with the S3 sink and the sources (workers, `verify --cloud`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use color_eyre::eyre::{Result, WrapErr, bail, eyre};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::GlobalArgs;
use crate::config::{
    Config, CredentialError, CredentialResolver, Credentials, Read, ServiceConnection,
};
use crate::domain::Service;
use crate::engine::metrics::JsonLinesMetrics;
use crate::engine::{Engine, EngineOptions, NoSource, SourceProvider};
use crate::sandbox::{Sandbox, SandboxConfig, SandboxTenant, TableCounts};
use crate::sink::RawSink;
use crate::sources::{self, Source};
use crate::store::{JobStore, LifecycleStore, SqliteStore};
use crate::workspace::Workspace;

pub const SANDBOX_PLACEHOLDER: &str = "${SANDBOX_URL}";

/// Reads the configuration: `--config-dir`, else the workspace's copy (seeded on first use).
pub fn load_config(global: &GlobalArgs, ws: &Workspace) -> Result<Arc<Config>> {
    let config = Config::load(&config_dir(global, ws)?)?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(Arc::new(config))
}

/// The configuration's folder: `--config-dir`, else the workspace's copy (seeded on first use).
pub fn config_dir(global: &GlobalArgs, ws: &Workspace) -> Result<std::path::PathBuf> {
    match &global.config_dir {
        Some(dir) => Ok(dir.clone()),
        None => {
            let dir = ws.config_dir();
            Config::seed(&dir).wrap_err_with(|| {
                format!(
                    "cannot write the default configuration to {}",
                    dir.display()
                )
            })?;
            Ok(dir)
        }
    }
}

/// Terminal logs at `level`; with a workspace, JSON lines in `logs/engine.jsonl` as well.
pub fn init_logging(level: &str, ws: Option<&Workspace>) -> Result<()> {
    init(level, ws, true, None)
}

/// JSON lines in the workspace only: the console owns the terminal, and a stray line on
/// stderr would tear its screen.
pub fn init_file_logging(ws: &Workspace) -> Result<()> {
    init("off", Some(ws), false, None)
}

/// As `init_logging`, and the same JSON lines shipped to CloudWatch Logs by `cloud` (this
/// crate's events only: the AWS SDK's own would feed back into the shipper).
pub fn init_logging_with(
    level: &str,
    ws: Option<&Workspace>,
    cloud: Option<crate::cloud::logs::CloudWatchWriter>,
) -> Result<()> {
    init(level, ws, true, cloud)
}

fn init(
    level: &str,
    ws: Option<&Workspace>,
    to_terminal: bool,
    cloud: Option<crate::cloud::logs::CloudWatchWriter>,
) -> Result<()> {
    let filter = EnvFilter::try_new(if to_terminal { level } else { "off" })
        .map_err(|e| eyre!("--log-level '{level}': {e}"))?;
    let terminal = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .compact()
        .with_filter(filter);
    let file = match ws {
        Some(ws) => {
            let path = ws.logs_dir().join("engine.jsonl");
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .wrap_err_with(|| format!("cannot open log file {}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(Mutex::new(file))
                    .with_filter(EnvFilter::new("info")),
            )
        }
        None => None,
    };
    let cloud = cloud.map(|writer| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(writer)
            .with_filter(EnvFilter::new("avesa_console=info"))
    });
    use tracing_subscriber::Layer as _;
    let _ = tracing_subscriber::registry()
        .with(terminal)
        .with(file)
        .with(cloud)
        .try_init();
    Ok(())
}

/// The cloud job store and its lifecycle store: the same DynamoDB tables hold both (markers,
/// hints, alerts and verification results beside the jobs and chunks), as one SQLite file
/// does locally. Engines that finish jobs (workers) or show their lifecycle need both.
pub async fn open_cloud_stores(
    settings: &crate::cloud::CloudSettings,
) -> Result<(Arc<dyn JobStore>, Arc<dyn LifecycleStore>)> {
    let prefix = settings.require(crate::cloud::Setting::TablePrefix)?;
    let config = crate::cloud::aws_config().await;
    crate::cloud::deploy::require_tables(&config, prefix).await?;
    let store = Arc::new(crate::store::DynamoStore::from_config(
        &config,
        crate::store::DynamoOptions {
            table_prefix: prefix.to_string(),
            ..crate::store::DynamoOptions::default()
        },
    ));
    Ok((store.clone(), store))
}

/// An engine over the cloud deployment's stores that runs no chunk itself (workers do):
/// for what reads and keeps the store (the cloud console, `alerts --cloud`, `cleanup
/// --cloud`).
pub async fn cloud_engine(
    ws: &Workspace,
    config: Arc<Config>,
    settings: &crate::cloud::CloudSettings,
) -> Result<Engine> {
    let (store, lifecycle) = open_cloud_stores(settings).await?;
    Ok(Engine::new(
        config,
        store,
        lifecycle,
        RawSink::local(&ws.data_dir())?,
        Arc::new(NoLocalRuns),
        EngineOptions::default(),
    ))
}

/// An engine over the cloud deployment's data: the DynamoDB stores, the raw parts in the S3
/// bucket and the configured sources (with the sandbox started here when the registry
/// needs one and no `--sandbox-url` names it). Workers run chunks with it; `verify --cloud`
/// counts the landed parts against the sources.
pub async fn cloud_data_engine(
    global: &GlobalArgs,
    config: Arc<Config>,
    settings: &crate::cloud::CloudSettings,
    options: EngineOptions,
) -> Result<Wired> {
    let bucket = settings.require(crate::cloud::Setting::Bucket)?;
    let aws = crate::cloud::aws_config().await;
    let (store, lifecycle) = open_cloud_stores(settings).await?;
    let sink = crate::cloud::s3::raw_sink(bucket, &aws)?;
    let (provider, sandbox) = provider(global, config.clone()).await?;
    // Every worker paces each tenant's service on one rate item of the chunks table.
    let rates = Arc::new(crate::store::DynamoStore::from_config(
        &aws,
        crate::store::DynamoOptions {
            table_prefix: settings
                .require(crate::cloud::Setting::TablePrefix)?
                .to_string(),
            ..crate::store::DynamoOptions::default()
        },
    ));
    Ok(Wired {
        engine: Engine::new(config, store, lifecycle, sink, provider, options)
            .with_rate_store(rates),
        _sandbox: sandbox,
    })
}

/// The sources of an engine over the cloud stores: none, since the workers run the chunks.
struct NoLocalRuns;

impl SourceProvider for NoLocalRuns {
    fn source(&self, tenant_id: &str, service: Service) -> Result<Arc<dyn Source>, NoSource> {
        Err(
            format!("{service} for {tenant_id} runs on the cloud deployment's workers, not here")
                .into(),
        )
    }
}

/// Refuses a command on `job_id` where the workspace has no job store yet, before anything
/// (a log, the store itself) is created there.
pub fn require_store(ws: &Workspace, job_id: &str) -> Result<()> {
    if !ws.store_path().exists() {
        bail!(
            "job '{job_id}' not found: no job store at {}",
            ws.store_path().display()
        );
    }
    Ok(())
}

/// A local job that must exist: an error naming it when the workspace has no job store
/// (which is not created) or the store does not know it.
pub async fn require_job(ws: &Workspace, job_id: &str) -> Result<()> {
    require_store(ws, job_id)?;
    if open_store(ws)?.get_job(job_id).await?.is_none() {
        bail!("job '{job_id}' not found");
    }
    Ok(())
}

pub fn open_store(ws: &Workspace) -> Result<Arc<dyn JobStore>> {
    ws.ensure()?;
    Ok(Arc::new(SqliteStore::open(&ws.store_path())?))
}

/// The lifecycle store: the same SQLite file as the jobs.
pub fn open_lifecycle(ws: &Workspace) -> Result<Arc<dyn LifecycleStore>> {
    ws.ensure()?;
    Ok(Arc::new(SqliteStore::open(&ws.store_path())?))
}

/// The sandbox's dataset for every registry connection that points at `${SANDBOX_URL}`,
/// with credentials from the environment or files (a connection whose credentials are held
/// in AWS is skipped: `sandbox_config_resolved` reads those).
pub fn sandbox_config(
    config: &Config,
    anchor: DateTime<Utc>,
    history_days: u32,
    counts: TableCounts,
) -> Result<SandboxConfig> {
    sandbox_accounts(
        config,
        anchor,
        history_days,
        counts,
        |tenant, service, conn| config.tenants.resolve_credentials(tenant, service, conn),
    )
}

/// As `sandbox_config`, reading every connection's credentials through `resolver` (AWS
/// secrets and parameters too).
pub async fn sandbox_config_resolved(
    config: &Config,
    resolver: &CredentialResolver,
    anchor: DateTime<Utc>,
    history_days: u32,
    counts: TableCounts,
) -> Result<SandboxConfig> {
    let mut read = HashMap::new();
    for tenant in &config.tenants.tenants {
        for (service, conn) in &tenant.services {
            if conn.base_url.contains(SANDBOX_PLACEHOLDER) {
                let at = (tenant.tenant_id.as_str(), *service);
                let creds = resolver.read(&config.tenants, at, conn, Read::Cached).await;
                read.insert((tenant.tenant_id.clone(), *service), creds);
            }
        }
    }
    sandbox_accounts(
        config,
        anchor,
        history_days,
        counts,
        |tenant, service, _| {
            read.remove(&(tenant.to_string(), service))
                .expect("every sandbox connection was read")
        },
    )
}

fn sandbox_accounts(
    config: &Config,
    anchor: DateTime<Utc>,
    history_days: u32,
    counts: TableCounts,
    mut credentials: impl FnMut(
        &str,
        Service,
        &ServiceConnection,
    ) -> Result<Credentials, CredentialError>,
) -> Result<SandboxConfig> {
    let mut cfg = SandboxConfig::new(anchor, Vec::new());
    cfg.history_days = history_days;
    for tenant in &config.tenants.tenants {
        for (service, conn) in &tenant.services {
            if !conn.base_url.contains(SANDBOX_PLACEHOLDER) {
                continue;
            }
            // A tenant whose credentials cannot be read is not served; its runs will say why.
            let creds = match credentials(&tenant.tenant_id, *service, conn) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("sandbox skips tenant '{}': {e}", tenant.tenant_id);
                    continue;
                }
            };
            let id = &tenant.tenant_id;
            let wrap = |e: &dyn std::fmt::Display| eyre!("tenant '{id}' {service}: {e}");
            match service {
                Service::Connectwise => cfg
                    .tenants
                    .push(SandboxTenant::from_credentials(&creds, counts).map_err(|e| wrap(&e))?),
                Service::Servicenow => cfg.servicenow.push(
                    crate::sandbox::servicenow::SnAccount::from_credentials(id, &creds, counts)
                        .map_err(|e| wrap(&e))?,
                ),
                Service::Salesforce => cfg.salesforce.push(
                    crate::sandbox::salesforce::SfAccount::from_credentials(id, &creds, counts)
                        .map_err(|e| wrap(&e))?,
                ),
            }
        }
    }
    Ok(cfg)
}

fn uses_sandbox(config: &Config) -> bool {
    config
        .tenants
        .tenants
        .iter()
        .flat_map(|t| t.services.values())
        .any(|c| c.base_url.contains(SANDBOX_PLACEHOLDER))
}

/// Today's midnight, UTC: the in-process sandbox's history ends there, so it is stable all day.
pub fn today() -> DateTime<Utc> {
    Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
}

/// Everything a command that talks to sources needs.
pub struct Wired {
    pub engine: Engine,
    /// Kept alive for the command's duration when started here.
    pub _sandbox: Option<Sandbox>,
}

/// An engine over this workspace's stores that runs no chunk (no sources, no sandbox): for
/// commands that only change a job's state (`cancel`, `pause`, `trigger` without `--run`).
pub fn store_engine(ws: &Workspace, config: Arc<Config>) -> Result<Engine> {
    ws.ensure()?;
    let store = Arc::new(SqliteStore::open(&ws.store_path())?);
    let sink = RawSink::local(&ws.data_dir())?;
    Ok(Engine::new(
        config,
        store.clone(),
        store,
        sink,
        Arc::new(NoLocalRuns),
        EngineOptions::default(),
    ))
}

pub async fn wire_engine(
    global: &GlobalArgs,
    ws: &Workspace,
    config: Arc<Config>,
    options: EngineOptions,
) -> Result<Wired> {
    ws.ensure()?;
    let store = Arc::new(SqliteStore::open(&ws.store_path())?);
    let sink = RawSink::local(&ws.data_dir())?;
    let (provider, sandbox) = provider(global, config.clone()).await?;
    let metrics_file = ws.logs_dir().join("metrics.jsonl");
    let metrics = JsonLinesMetrics::open(&metrics_file)
        .wrap_err_with(|| format!("cannot open {}", metrics_file.display()))?;
    let paced = options.pace_requests;
    let engine = Engine::new(
        config,
        store.clone(),
        store.clone(),
        sink,
        provider,
        options,
    )
    .with_metrics(Arc::new(metrics));
    // Every process on this workspace paces each tenant's service on one shared rate row.
    let engine = if paced {
        engine.with_rate_store(store)
    } else {
        engine
    };
    Ok(Wired {
        engine,
        _sandbox: sandbox,
    })
}

/// Sources for every tenant, with the sandbox they may need (started here if not given).
pub async fn provider(
    global: &GlobalArgs,
    config: Arc<Config>,
) -> Result<(Arc<dyn SourceProvider>, Option<Sandbox>)> {
    let resolver = credential_resolver(&config);
    let (sandbox_url, sandbox) = resolve_sandbox(global, &config, &resolver).await?;
    let provider = Arc::new(Provider {
        config,
        sandbox_url,
        http: sources::http_client(),
        cache: Mutex::new(HashMap::new()),
        resolver,
    });
    Ok((provider, sandbox))
}

/// Reads credentials from the environment, files, and AWS (Secrets Manager and SSM, through
/// the shared AWS configuration), keeping AWS values for `credentials_cache_seconds`.
pub fn credential_resolver(config: &Config) -> Arc<CredentialResolver> {
    let ttl = config.backfill.default_settings.credentials_cache_seconds;
    Arc::new(CredentialResolver::new(
        Some(Arc::new(crate::cloud::secrets::AwsSecretStore::default())),
        std::time::Duration::from_secs(ttl),
    ))
}

/// The sandbox address: given, or a sandbox started in this process when the registry needs one.
pub async fn resolve_sandbox(
    global: &GlobalArgs,
    config: &Config,
    resolver: &CredentialResolver,
) -> Result<(Option<String>, Option<Sandbox>)> {
    if let Some(url) = &global.sandbox_url {
        url::Url::parse(url).map_err(|e| eyre!("--sandbox-url '{url}': {e}"))?;
        return Ok((Some(url.trim_end_matches('/').to_string()), None));
    }
    if !uses_sandbox(config) {
        return Ok((None, None));
    }
    let mut cfg =
        sandbox_config_resolved(config, resolver, today(), 730, TableCounts::demo()).await?;
    if let Some(path) = &global.sandbox_faults {
        cfg.faults = crate::sandbox::load_faults(path).map_err(|e| eyre!(e))?;
    }
    let sandbox = Sandbox::start(
        cfg,
        "127.0.0.1:0".parse().expect("a valid loopback address"),
    )
    .await
    .wrap_err("cannot start the built-in sandbox")?;
    tracing::info!(url = %sandbox.url(), "built-in sandbox serving the demo tenants");
    Ok((Some(sandbox.url()), Some(sandbox)))
}

struct Provider {
    config: Arc<Config>,
    sandbox_url: Option<String>,
    http: reqwest::Client,
    cache: Mutex<HashMap<(String, Service), Arc<dyn Source>>>,
    resolver: Arc<CredentialResolver>,
}

impl SourceProvider for Provider {
    fn source(&self, tenant_id: &str, service: Service) -> Result<Arc<dyn Source>, NoSource> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(src) = cache.get(&(tenant_id.to_string(), service)) {
            return Ok(src.clone());
        }
        let (_, conn) = self
            .config
            .connection(tenant_id, service)
            .map_err(NoSource::new)?;
        if !conn.enabled {
            return Err(format!("{service} is disabled for tenant '{tenant_id}'").into());
        }
        let base = if conn.base_url.contains(SANDBOX_PLACEHOLDER) {
            let url = self.sandbox_url.as_deref().ok_or_else(|| {
                format!(
                    "the base URL of {service} uses {SANDBOX_PLACEHOLDER} but no sandbox is running"
                )
            })?;
            conn.base_url.replace(SANDBOX_PLACEHOLDER, url)
        } else {
            conn.base_url.clone()
        };
        let mut settings = sources::SourceSettings {
            limits: sources::ResponseLimits::from_settings(&self.config.backfill.default_settings),
            ..sources::SourceSettings::default()
        };
        if let Some(n) = self
            .config
            .backfill
            .service_settings
            .get(&service)
            .and_then(|s| s.bulk_query_threshold)
        {
            settings.bulk_query_threshold = n;
        }
        let src: Arc<dyn Source> = if conn.credentials.remote().is_some() {
            // Read when first used and again as they age or are refused (`Refreshing`).
            let feed = Arc::new(ConnectionFeed {
                config: self.config.clone(),
                resolver: self.resolver.clone(),
                tenant_id: tenant_id.to_string(),
                service,
            });
            let http = self.http.clone();
            let connect = Box::new(move |creds: Credentials| {
                sources::connect(service, &base, creds, http.clone(), &settings)
            });
            Arc::new(sources::refreshing::Refreshing::new(service, feed, connect))
        } else {
            let creds = self
                .config
                .tenants
                .resolve_credentials(tenant_id, service, conn)
                .map_err(NoSource::new)?;
            sources::connect(service, &base, creds, self.http.clone(), &settings)
                .map_err(NoSource::new)?
        };
        cache.insert((tenant_id.to_string(), service), src.clone());
        Ok(src)
    }
}

/// One connection's credentials through the resolver, for a `Refreshing` source.
struct ConnectionFeed {
    config: Arc<Config>,
    resolver: Arc<CredentialResolver>,
    tenant_id: String,
    service: Service,
}

impl ConnectionFeed {
    async fn read(&self, how: Read) -> Result<Credentials, sources::SourceError> {
        let (_, conn) = self
            .config
            .connection(&self.tenant_id, self.service)
            .map_err(|e| sources::SourceError::Config(e.to_string()))?;
        let at = (self.tenant_id.as_str(), self.service);
        let read = self
            .resolver
            .read(&self.config.tenants, at, conn, how)
            .await;
        read.map_err(|e| match e.is_transient() {
            true => sources::SourceError::Transport(e.to_string()),
            false => sources::SourceError::Config(e.to_string()),
        })
    }
}

#[async_trait::async_trait]
impl sources::refreshing::CredentialFeed for ConnectionFeed {
    async fn current(&self) -> Result<Credentials, sources::SourceError> {
        self.read(Read::Cached).await
    }

    async fn reread(&self) -> Result<Credentials, sources::SourceError> {
        self.read(Read::Again).await
    }
}
