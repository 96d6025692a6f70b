//! The engine's boundary for front ends: a bounded command channel, the event broadcast and
//! a `watch` snapshot of jobs, chunks and rate health, kept by one task that owns the Engine.
//!
//! Front ends (the console) never touch the store: they send commands and read snapshots.
//! The snapshot is rebuilt from the store when events say something changed (at most every
//! `min_refresh`) and at a modest interval anyway, since other processes share the store.
//!
//! In cloud mode (`spawn_cloud`) the engine's store is the deployment's, and trigger,
//! cancel and resume go to a `CloudDispatch` (`cloud`) instead of tasks of this process.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::planner::{self, Estimate, Plan, PlanRequest};
use super::{Engine, EngineEvent};
use crate::config::Config;
use crate::domain::{Chunk, Job, JobStatus, Service};
use crate::engine::BreakerState;
use crate::store::JobFilter;

mod cloud;

pub use cloud::CloudDispatch;

/// Where a triggered job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Tokio tasks in this process.
    Local,
    /// Dispatched to cloud workers through Step Functions (a handle in cloud mode).
    Cloud,
}

/// What a front end may ask of the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Create the job of a plan request and run it.
    Trigger {
        request: PlanRequest,
        target: Target,
    },
    /// Continue a job from its checkpoints (unpausing it if paused).
    Resume {
        job_id: String,
    },
    /// Reopen a job's failed chunks only, and run it.
    RetryFailed {
        job_id: String,
    },
    Cancel {
        job_id: String,
    },
    Pause {
        job_id: String,
    },
    Unpause {
        job_id: String,
    },
    /// Keep this job's chunks in the snapshot (the console's detail view), or none.
    Watch {
        job_id: Option<String>,
    },
}

impl Command {
    /// The job a command is about, if any.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Command::Resume { job_id }
            | Command::RetryFailed { job_id }
            | Command::Cancel { job_id }
            | Command::Pause { job_id }
            | Command::Unpause { job_id } => Some(job_id),
            Command::Watch { job_id } => job_id.as_deref(),
            Command::Trigger { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HandleError {
    #[error("the engine has stopped")]
    Closed,
    /// The command was understood and refused; the text says why.
    #[error("{0}")]
    Refused(String),
}

/// One tenant's service as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceInfo {
    pub service: Service,
    pub enabled: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TenantInfo {
    pub tenant_id: String,
    pub display_name: String,
    pub services: Vec<ServiceInfo>,
}

/// Request budget and breaker of one tenant's service, from configuration and events.
#[derive(Clone, Debug, PartialEq)]
pub struct RateHealth {
    pub tenant_id: String,
    pub service: Service,
    /// The configured pace, requests per minute.
    pub limit_per_minute: Option<u32>,
    /// Pages fetched in the last minute (each is one request).
    pub used_last_minute: u32,
    /// What the server said about its own quota, when it says.
    pub server_used: Option<u64>,
    pub server_limit: Option<u64>,
    pub last_429: Option<DateTime<Utc>>,
    pub retry_after_ms: Option<u64>,
    pub rate_limited_total: u32,
    pub breaker: BreakerState,
    pub consecutive_failures: u32,
    pub breaker_reason: Option<String>,
}

impl RateHealth {
    /// Requests left in the current minute: the server's word if it gave one, else the pace.
    pub fn requests_left(&self) -> Option<u64> {
        if let (Some(used), Some(limit)) = (self.server_used, self.server_limit) {
            return Some(limit.saturating_sub(used));
        }
        self.limit_per_minute
            .map(|l| u64::from(l.saturating_sub(self.used_last_minute)))
    }
}

/// What the front end draws from: replaced whole on every refresh (cheap `Arc` clones).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub taken_at: Option<DateTime<Utc>>,
    /// Newest first.
    pub jobs: Arc<Vec<Job>>,
    /// Chunks of watched jobs, in table order then sequence.
    pub chunks: Arc<BTreeMap<String, Vec<Chunk>>>,
    /// Jobs that a task of this process is running now.
    pub running_here: Arc<BTreeSet<String>>,
    pub tenants: Arc<Vec<TenantInfo>>,
    /// Table names per service, in configuration order.
    pub tables: Arc<BTreeMap<Service, Vec<String>>>,
    pub health: Arc<Vec<RateHealth>>,
    /// The last store error, if the last refresh failed.
    pub error: Option<String>,
}

/// A plan and what it will cost, for a preview before the confirm.
#[derive(Clone, Debug)]
pub struct PlanPreview {
    pub plan: Plan,
    pub estimate: Estimate,
}

struct Envelope {
    command: Command,
    reply: oneshot::Sender<Result<String, HandleError>>,
}

/// How often the snapshot is rebuilt.
#[derive(Clone, Copy, Debug)]
pub struct RefreshPolicy {
    /// Without events, look at the store this often (other processes share it).
    pub idle: Duration,
    /// With events, at most this often.
    pub min_refresh: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            idle: Duration::from_secs(2),
            min_refresh: Duration::from_millis(250),
        }
    }
}

/// The front end's side of the engine. Cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    commands: mpsc::Sender<Envelope>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    events: broadcast::Sender<EngineEvent>,
    config: Arc<Config>,
}

impl EngineHandle {
    /// Starts the task that owns `engine`. Needs a tokio runtime.
    pub fn spawn(engine: Engine, config: Arc<Config>, policy: RefreshPolicy) -> EngineHandle {
        EngineHandle::start(engine, config, policy, None)
    }

    /// As `spawn`, in cloud mode: `engine`'s store is the cloud deployment's, and trigger,
    /// cancel, resume, retry and unpause go to `cloud` (nothing runs in this process).
    pub fn spawn_cloud(
        engine: Engine,
        config: Arc<Config>,
        policy: RefreshPolicy,
        cloud: Arc<dyn CloudDispatch>,
    ) -> EngineHandle {
        EngineHandle::start(engine, config, policy, Some(cloud))
    }

    fn start(
        engine: Engine,
        config: Arc<Config>,
        policy: RefreshPolicy,
        cloud: Option<Arc<dyn CloudDispatch>>,
    ) -> EngineHandle {
        // Commands come from key presses: a short queue is plenty, and a full one pushes
        // back on the sender instead of growing.
        let (tx, rx) = mpsc::channel(32);
        let first = Snapshot {
            tenants: Arc::new(tenant_infos(&config)),
            tables: Arc::new(table_names(&config)),
            ..Snapshot::default()
        };
        let (snap_tx, snap_rx) = watch::channel(Arc::new(first));
        let events = engine.inner.events.clone();
        let mut owner = Owner::new(engine, config.clone(), snap_tx, policy);
        owner.cloud = cloud;
        tokio::spawn(owner.run(rx));
        EngineHandle {
            commands: tx,
            snapshot: snap_rx,
            events,
            config,
        }
    }

    /// Sends a command and waits for the engine's answer (a line for the status bar).
    pub async fn send(&self, command: Command) -> Result<String, HandleError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Envelope { command, reply })
            .await
            .map_err(|_| HandleError::Closed)?;
        answer.await.map_err(|_| HandleError::Closed)?
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.events.subscribe()
    }

    pub fn snapshot(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.clone()
    }

    /// The plan of a request and its estimated calls and duration; creates nothing.
    pub fn preview(
        &self,
        request: &PlanRequest,
        now: DateTime<Utc>,
    ) -> Result<PlanPreview, String> {
        let plan = planner::plan(&self.config, request, now).map_err(|e| e.0)?;
        let estimate = planner::estimate(&plan, None, |_| 1000);
        Ok(PlanPreview { plan, estimate })
    }
}

/// Tenants and their services, as the registry lists them.
pub fn tenant_infos(config: &Config) -> Vec<TenantInfo> {
    config
        .tenants
        .tenants
        .iter()
        .map(|t| TenantInfo {
            tenant_id: t.tenant_id.clone(),
            display_name: t.display_name.clone(),
            services: t
                .services
                .iter()
                .map(|(s, c)| ServiceInfo {
                    service: *s,
                    enabled: c.enabled,
                })
                .collect(),
        })
        .collect()
}

fn table_names(config: &Config) -> BTreeMap<Service, Vec<String>> {
    config
        .endpoints
        .iter()
        .map(|e| {
            (
                e.service,
                e.endpoints.iter().map(|d| d.table_name.clone()).collect(),
            )
        })
        .collect()
}

/// A tenant's service.
type Pair = (String, Service);

/// Health bookkeeping per tenant + service.
#[derive(Default)]
struct HealthBook {
    rows: BTreeMap<(String, Service), RateHealth>,
    /// Pages seen per pair with their time, for the last minute's count.
    pages: HashMap<Pair, Vec<(DateTime<Utc>, u32)>>,
    /// Last page count per chunk, to turn cumulative progress into deltas.
    chunk_pages: HashMap<(String, String, u32), u32>,
}

impl HealthBook {
    fn new(config: &Config) -> HealthBook {
        let mut book = HealthBook::default();
        for t in &config.tenants.tenants {
            for s in t.services.keys() {
                book.rows.insert(
                    (t.tenant_id.clone(), *s),
                    RateHealth {
                        tenant_id: t.tenant_id.clone(),
                        service: *s,
                        limit_per_minute: config.backfill.rate_limit_per_minute(&t.tenant_id, *s),
                        used_last_minute: 0,
                        server_used: None,
                        server_limit: None,
                        last_429: None,
                        retry_after_ms: None,
                        rate_limited_total: 0,
                        breaker: BreakerState::Closed,
                        consecutive_failures: 0,
                        breaker_reason: None,
                    },
                );
            }
        }
        book
    }

    fn row(&mut self, tenant: &str, service: Service) -> &mut RateHealth {
        self.rows
            .entry((tenant.to_string(), service))
            .or_insert_with(|| RateHealth {
                tenant_id: tenant.to_string(),
                service,
                limit_per_minute: None,
                used_last_minute: 0,
                server_used: None,
                server_limit: None,
                last_429: None,
                retry_after_ms: None,
                rate_limited_total: 0,
                breaker: BreakerState::Closed,
                consecutive_failures: 0,
                breaker_reason: None,
            })
    }

    fn record(&mut self, event: &EngineEvent, jobs: &[Job], now: DateTime<Utc>) {
        match event {
            EngineEvent::RateLimited {
                tenant_id,
                service,
                retry_after_ms,
            } => {
                let row = self.row(tenant_id, *service);
                row.last_429 = Some(now);
                row.retry_after_ms = Some(*retry_after_ms);
                row.rate_limited_total += 1;
            }
            EngineEvent::BreakerChanged {
                tenant_id,
                service,
                state,
                consecutive_failures,
                reason,
            } => {
                let row = self.row(tenant_id, *service);
                row.breaker = *state;
                row.consecutive_failures = *consecutive_failures;
                row.breaker_reason = reason.clone();
            }
            EngineEvent::ServerUsage {
                tenant_id,
                service,
                used,
                limit,
                ..
            } => {
                let row = self.row(tenant_id, *service);
                row.server_used = *used;
                row.server_limit = Some(*limit);
            }
            EngineEvent::ChunkProgress { key, pages, .. } => {
                let Some(job) = jobs.iter().find(|j| j.job_id == key.job_id) else {
                    return;
                };
                let last = self
                    .chunk_pages
                    .insert((key.job_id.clone(), key.table.clone(), key.seq), *pages)
                    .unwrap_or(0);
                let delta = pages.saturating_sub(last);
                if delta > 0 {
                    self.pages
                        .entry((job.tenant_id.clone(), job.service))
                        .or_default()
                        .push((now, delta));
                }
            }
            _ => {}
        }
    }

    fn rows(&mut self, now: DateTime<Utc>) -> Vec<RateHealth> {
        let minute_ago = now - chrono::Duration::seconds(60);
        for (pair, samples) in &mut self.pages {
            samples.retain(|(t, _)| *t > minute_ago);
            let used: u32 = samples.iter().map(|(_, n)| n).sum();
            if let Some(row) = self.rows.get_mut(pair) {
                row.used_last_minute = used;
            }
        }
        self.rows.values().cloned().collect()
    }
}

/// The task that owns the engine: runs commands, keeps the snapshot fresh.
struct Owner {
    engine: Engine,
    config: Arc<Config>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    policy: RefreshPolicy,
    watched: Option<String>,
    running: BTreeSet<String>,
    health: HealthBook,
    jobs: Arc<Vec<Job>>,
    done_tx: mpsc::Sender<String>,
    done_rx: Option<mpsc::Receiver<String>>,
    /// Cloud mode: where trigger, cancel and resume go.
    cloud: Option<Arc<dyn CloudDispatch>>,
}

impl Owner {
    fn new(
        engine: Engine,
        config: Arc<Config>,
        snapshot: watch::Sender<Arc<Snapshot>>,
        policy: RefreshPolicy,
    ) -> Owner {
        // One slot per job that can run at once is enough: finished runs report here.
        let (done_tx, done_rx) = mpsc::channel(64);
        Owner {
            health: HealthBook::new(&config),
            engine,
            config,
            snapshot,
            policy,
            watched: None,
            running: BTreeSet::new(),
            jobs: Arc::new(Vec::new()),
            done_tx,
            done_rx: Some(done_rx),
            cloud: None,
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Envelope>) {
        let mut events = self.engine.subscribe();
        let mut done_rx = self.done_rx.take().expect("run once");
        let mut tick = tokio::time::interval(self.policy.min_refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty = true;
        let mut last_refresh = tokio::time::Instant::now();
        loop {
            tokio::select! {
                envelope = commands.recv() => {
                    let Some(Envelope { command, reply }) = envelope else { return };
                    let routed = self
                        .cloud
                        .as_ref()
                        .and_then(|c| cloud::route(c, &self.config, &command, Utc::now()));
                    match routed {
                        Some(call) => {
                            // Answered from its own task; the finished call marks the
                            // snapshot stale through `done` like a finished run.
                            let done = self.done_tx.clone();
                            let job_id = command.job_id().unwrap_or_default().to_string();
                            tokio::spawn(async move {
                                let _ = reply.send(call.await);
                                let _ = done.send(job_id).await;
                            });
                        }
                        None => {
                            let answer = self.execute(command).await;
                            let _ = reply.send(answer);
                        }
                    }
                    dirty = true;
                }
                event = events.recv() => {
                    match event {
                        Ok(event) => self.health.record(&event, &self.jobs, Utc::now()),
                        // Missed events only cost health samples; the store is the record.
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                    dirty = true;
                }
                Some(job_id) = done_rx.recv() => {
                    self.running.remove(&job_id);
                    dirty = true;
                }
                _ = tick.tick() => {
                    if dirty || last_refresh.elapsed() >= self.policy.idle {
                        self.refresh().await;
                        dirty = false;
                        last_refresh = tokio::time::Instant::now();
                    }
                }
            }
        }
    }

    async fn refresh(&mut self) {
        let store = self.engine.store().clone();
        let mut error = None;
        match store.list_jobs(&JobFilter::default()).await {
            Ok(jobs) => self.jobs = Arc::new(jobs),
            Err(e) => error = Some(e.to_string()),
        }
        let mut chunks = BTreeMap::new();
        if let Some(id) = &self.watched {
            match store.chunks(id).await {
                Ok(c) => {
                    chunks.insert(id.clone(), c);
                }
                Err(e) => error = Some(e.to_string()),
            }
        }
        let prev = self.snapshot.borrow().clone();
        let snap = Snapshot {
            taken_at: Some(Utc::now()),
            jobs: self.jobs.clone(),
            chunks: Arc::new(chunks),
            running_here: Arc::new(self.running.clone()),
            tenants: prev.tenants.clone(),
            tables: prev.tables.clone(),
            health: Arc::new(self.health.rows(Utc::now())),
            error,
        };
        self.snapshot.send_replace(Arc::new(snap));
    }

    async fn job(&self, job_id: &str) -> Result<Job, HandleError> {
        self.engine
            .store()
            .get_job(job_id)
            .await
            .map_err(|e| HandleError::Refused(e.to_string()))?
            .ok_or_else(|| HandleError::Refused(format!("job {job_id} not found")))
    }

    fn start(&mut self, job_id: &str) {
        if !self.running.insert(job_id.to_string()) {
            return;
        }
        let engine = self.engine.clone();
        let done = self.done_tx.clone();
        let id = job_id.to_string();
        tokio::spawn(async move {
            if let Err(e) = engine.run_job(&id, None).await {
                tracing::error!(job_id = %id, error = %e, "console run of the job stopped");
            }
            let _ = done.send(id).await;
        });
    }

    async fn execute(&mut self, command: Command) -> Result<String, HandleError> {
        let store = self.engine.store().clone();
        let refused = |e: crate::store::StoreError| HandleError::Refused(e.to_string());
        let now = Utc::now();
        match command {
            Command::Watch { job_id } => {
                self.watched = job_id;
                Ok(String::new())
            }
            Command::Trigger { request, target } => {
                if target == Target::Cloud {
                    return Err(HandleError::Refused(
                        "cloud dispatch is not configured: start the console with --cloud".into(),
                    ));
                }
                let plan = planner::plan(&self.config, &request, now)
                    .map_err(|e| HandleError::Refused(e.0))?;
                let outcome = self
                    .engine
                    .create_job(&plan, now)
                    .await
                    .map_err(|e| HandleError::Refused(e.to_string()))?;
                let job = outcome.job().clone();
                self.start(&job.job_id);
                Ok(match outcome {
                    crate::store::CreateOutcome::Created(_) => {
                        format!("started {} ({} chunks)", job.job_id, job.total_chunks)
                    }
                    crate::store::CreateOutcome::Existing(_) => format!(
                        "{} already covers this range ({}); running it",
                        job.job_id, job.status
                    ),
                })
            }
            Command::Resume { job_id } => {
                let job = self.job(&job_id).await?;
                if self.running.contains(&job_id) {
                    return Err(HandleError::Refused(format!(
                        "job {job_id} is already running in this console"
                    )));
                }
                match job.status {
                    JobStatus::Paused => {
                        store
                            .set_job_status(&job_id, JobStatus::Pending, now)
                            .await
                            .map_err(refused)?;
                    }
                    s if s.is_terminal() => {
                        return Err(HandleError::Refused(format!(
                            "job {job_id} is {s}; nothing to resume"
                        )));
                    }
                    _ => {}
                }
                self.start(&job_id);
                Ok(format!("resumed {job_id}"))
            }
            Command::RetryFailed { job_id } => {
                let n = store.retry_failed(&job_id, now).await.map_err(refused)?;
                if n == 0 {
                    return Err(HandleError::Refused(format!(
                        "job {job_id} has no failed chunks"
                    )));
                }
                self.start(&job_id);
                Ok(format!("retrying {n} failed chunk(s) of {job_id}"))
            }
            Command::Cancel { job_id } => {
                let job = self.job(&job_id).await?;
                if job.status.is_terminal() {
                    return Err(HandleError::Refused(format!(
                        "job {job_id} is already {}",
                        job.status
                    )));
                }
                store
                    .set_job_status(&job_id, JobStatus::Cancelled, now)
                    .await
                    .map_err(refused)?;
                Ok(format!("cancelled {job_id}"))
            }
            Command::Pause { job_id } => {
                let job = self.job(&job_id).await?;
                if job.status.is_terminal() {
                    return Err(HandleError::Refused(format!(
                        "job {job_id} is {}; nothing to pause",
                        job.status
                    )));
                }
                store
                    .set_job_status(&job_id, JobStatus::Paused, now)
                    .await
                    .map_err(refused)?;
                Ok(format!("paused {job_id}; chunks in flight finish first"))
            }
            Command::Unpause { job_id } => {
                let job = self.job(&job_id).await?;
                if job.status != JobStatus::Paused {
                    return Err(HandleError::Refused(format!(
                        "job {job_id} is {}, not paused",
                        job.status
                    )));
                }
                store
                    .set_job_status(&job_id, JobStatus::Pending, now)
                    .await
                    .map_err(refused)?;
                self.start(&job_id);
                Ok(format!("unpaused {job_id}"))
            }
        }
    }
}

#[cfg(test)]
mod tests;
