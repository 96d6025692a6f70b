//! The engine's boundary for front ends: a bounded command channel, the event broadcast and
//! a `watch` snapshot of jobs, chunks and rate health, kept by one task that owns the Engine.
//!
//! Front ends (the console) never see the `Engine` or the store. `EngineHandle::spawn` starts the
//! owner task and gives them three things:
//! - a bounded `mpsc` command channel: `Trigger {plan request, local|cloud}`, `Resume`,
//!   `RetryFailed`, `Cancel`, `Pause`, `Unpause`, `Watch {job}`, `Transform {tenant, service}`,
//!   `Verify {job}`; each command carries a `oneshot` reply (a line for the status bar, or why it
//!   was refused: `ops::Refusal`, the CLI's words). Job actions go through the operations API
//!   (`engine::ops`) with the local runner as its port, so the scheduling limits and the
//!   off-peak gate hold for the console's jobs as for `run`'s; a held job is answered
//!   `queued J (N chunks): waits for …`, listed in the snapshot's `waiting` and, for the
//!   off-peak gate, told once as `JobDeferred`. `Transform` and `Verify` run on tasks of their own
//!   and answer when done, one at a time per service or job; cloud mode refuses both (its workers
//!   transform, and the sources and data are not here);
//! - the event broadcast (`EngineEvent`): rates, ETAs, "chunk failed" messages, and the lifecycle
//!   events the console keeps until the store says the same (`MarkerAdvanced`,
//!   `TransformFinished`/`TransformFailed`, `Alert`, `JobDeferred`);
//! - a `watch` of `Arc<Snapshot>`: jobs, the watched job's chunks, jobs running here, tenants and
//!   their services, table names, rate health per tenant + service (`health`), and the lifecycle
//!   (`lifecycle`): detection decisions, stored alerts, sync markers, the watched job's hints and
//!   verification results, the scheduler's waiting jobs with why, the canonical tables, and the
//!   pulse: the last minutes of every job's recorded requests and records (`engine::pulse`,
//!   read from the store, so other processes' and cloud workers' jobs show too).
//!
//! The snapshot is rebuilt from the store when events say something changed (at most every
//! `min_refresh`) and every `idle` anyway, since other processes (`run`, `resume`) share the
//! store. Detection lists raw data and builds a client per service, so it runs on a task of its
//! own every `detect` and after a job of this console starts or ends, never in the console's
//! `update` or a view.
//!
//! Plan previews (`EngineHandle::preview`: planner, windows sized by counts as a trigger sizes
//! them, estimate) run on the caller's task, so the trigger form shows windows, records per
//! window, calls and duration before anything is created.
//!
//! In cloud mode (`spawn_cloud`) the engine's store is the deployment's and the operations
//! API's port is the cloud's dispatch (Step Functions executions), so nothing runs in this
//! process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::detect::Decision;
use super::planner::{self, Estimate, Plan, PlanRequest};
use super::quota::AllocationShare;
use super::{Engine, EngineEvent};
use crate::config::Config;
use crate::domain::{Alert, Chunk, Job, Service, SyncMarker};
use crate::engine::BreakerState;
use crate::engine::ops::{
    Confirmation, DetachedPort, Dispatch, LocalRunner, Ops, Refusal, RunnerCommand, RunnerOptions,
};
use crate::store::JobFilter;

mod commands;
mod health;
mod lifecycle;

use commands::Answer;
pub use lifecycle::{ALERTS_SHOWN, JobLifecycle};

/// Where the console's own runs are, as a refusal names them.
pub const IN_THIS_CONSOLE: &str = "in this console";

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
    /// Rebuild a tenant's service's canonical tables from all its raw data.
    Transform {
        tenant_id: String,
        service: Service,
    },
    /// Count what a job landed per chunk against the source's own counts and store the
    /// results (read-only towards the data: it reads the source and writes results).
    Verify {
        job_id: String,
    },
    /// A command on a protected tenant, with the tenant id the operator typed
    /// (`ops::Confirmation::TenantId`).
    Confirmed {
        tenant_id: String,
        command: Box<Command>,
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
            | Command::Unpause { job_id }
            | Command::Verify { job_id } => Some(job_id),
            Command::Watch { job_id } => job_id.as_deref(),
            Command::Confirmed { command, .. } => command.job_id(),
            Command::Trigger { .. } | Command::Transform { .. } => None,
        }
    }

    /// The command itself and the confirmation it carries.
    pub fn unwrap_confirmed(self) -> (Command, Confirmation) {
        match self {
            Command::Confirmed { tenant_id, command } => (
                command.unwrap_confirmed().0,
                Confirmation::TenantId(tenant_id),
            ),
            c => (c, Confirmation::None),
        }
    }

    /// The command without its confirmation.
    pub fn inner(&self) -> &Command {
        match self {
            Command::Confirmed { command, .. } => command.inner(),
            c => c,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("the engine has stopped")]
    Closed,
    /// The command was understood and refused: the same refusal the CLI prints.
    #[error(transparent)]
    Refused(#[from] Refusal),
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
    /// Mutating actions need the tenant id typed (`ops::guard`).
    pub protected: bool,
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
    /// A pair nothing has been asked of yet: no requests, no 429, the breaker closed.
    pub fn idle(tenant_id: &str, service: Service, limit_per_minute: Option<u32>) -> Self {
        RateHealth {
            tenant_id: tenant_id.to_string(),
            service,
            limit_per_minute,
            used_last_minute: 0,
            server_used: None,
            server_limit: None,
            last_429: None,
            retry_after_ms: None,
            rate_limited_total: 0,
            breaker: BreakerState::Closed,
            consecutive_failures: 0,
            breaker_reason: None,
        }
    }

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
    /// `Engine::detect` for every tenant's service, sorted: whether it needs a backfill and
    /// why. Empty until the first detection (and in cloud mode, where the sources and the
    /// data are not here).
    pub detection: Arc<Vec<Decision>>,
    /// When the detection above finished.
    pub detected_at: Option<DateTime<Utc>>,
    /// Why the last detection failed (the decisions shown are then older).
    pub detection_error: Option<String>,
    /// Stored alerts, newest first (at most `ALERTS_SHOWN`).
    pub alerts: Arc<Vec<Alert>>,
    /// Every table's incremental sync marker.
    pub markers: Arc<Vec<SyncMarker>>,
    /// Watched jobs' hints (hand-off done?) and latest verification results.
    pub lifecycle: Arc<BTreeMap<String, JobLifecycle>>,
    /// Jobs the console queued that the scheduling rules hold back, with why.
    pub waiting: Arc<BTreeMap<String, String>>,
    /// Jobs waiting for their API quota (`Job::quota_wait`), and until when.
    pub quota_waits: Arc<BTreeMap<String, DateTime<Utc>>>,
    /// Canonical tables per service: what a transform of the service rebuilds.
    pub canonical: Arc<BTreeMap<Service, Vec<String>>>,
    /// Jobs whose detached runner process lives (this console's or an earlier one's), with
    /// its pid: they keep running when the console quits.
    pub runners: Arc<BTreeMap<String, u32>>,
    /// The last minutes of every job's recorded requests and records (`engine::pulse`).
    pub pulse: Arc<super::pulse::Pulse>,
}

/// A plan and what it will cost, for a preview before the confirm.
#[derive(Clone, Debug)]
pub struct PlanPreview {
    pub plan: Plan,
    pub estimate: Estimate,
    /// The calls as a share of the allocation left (`EngineHandle::with_allocation`), or why
    /// it could not be read; `None` when the API states no allocation.
    pub allocation: Option<Result<AllocationShare, String>>,
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
    /// Auto-detection runs this often, and after a job of this console starts or ends. It
    /// lists raw data and asks every source for a client, so not at the refresh rate.
    pub detect: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            idle: Duration::from_secs(2),
            min_refresh: Duration::from_millis(250),
            detect: Duration::from_secs(30),
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
    /// For plan previews only (counting records, asking a source about its allocation);
    /// commands go to the owner.
    engine: Engine,
}

impl EngineHandle {
    /// Starts the task that owns `engine`. Needs a tokio runtime.
    pub fn spawn(engine: Engine, config: Arc<Config>, policy: RefreshPolicy) -> EngineHandle {
        EngineHandle::start(engine, config, policy, Port::Here)
    }

    /// As `spawn`, but each job the scheduling rules start runs in a detached runner process
    /// (`ops::RunnerCommand`), which outlives this one; the snapshot lists the live runners.
    pub fn spawn_detached(
        engine: Engine,
        config: Arc<Config>,
        policy: RefreshPolicy,
        runners: RunnerCommand,
    ) -> EngineHandle {
        EngineHandle::start(engine, config, policy, Port::Detached(Arc::new(runners)))
    }

    /// As `spawn`, in cloud mode: `engine`'s store is the cloud deployment's, and job actions
    /// go to `cloud`, the deployment's dispatch port (nothing runs in this process).
    pub fn spawn_cloud(
        engine: Engine,
        config: Arc<Config>,
        policy: RefreshPolicy,
        cloud: Arc<dyn Dispatch>,
    ) -> EngineHandle {
        EngineHandle::start(engine, config, policy, Port::Cloud(cloud))
    }

    fn start(
        engine: Engine,
        config: Arc<Config>,
        policy: RefreshPolicy,
        port: Port,
    ) -> EngineHandle {
        // Commands come from key presses: a short queue is plenty, and a full one pushes
        // back on the sender instead of growing.
        let (tx, rx) = mpsc::channel(32);
        let first = Snapshot {
            tenants: Arc::new(tenant_infos(&config)),
            tables: Arc::new(table_names(&config)),
            canonical: Arc::new(lifecycle::canonical_tables(&config)),
            ..Snapshot::default()
        };
        let (snap_tx, snap_rx) = watch::channel(Arc::new(first));
        let events = engine.inner.events.clone();
        let previews = engine.clone();
        let owner = Owner::new(engine, config.clone(), snap_tx, policy, port);
        tokio::spawn(owner.run(rx));
        EngineHandle {
            commands: tx,
            snapshot: snap_rx,
            events,
            config,
            engine: previews,
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

    /// The plan of a request, its windows sized by the source's counts as a trigger will
    /// size them, and its estimated calls (count calls included) and duration; creates
    /// nothing.
    pub async fn preview(
        &self,
        request: &PlanRequest,
        now: DateTime<Utc>,
    ) -> Result<PlanPreview, planner::PlanError> {
        let mut plan = planner::plan(&self.config, request, now)?;
        self.engine
            .size_plan(&mut plan, request.chunk_size_days)
            .await;
        let estimate = planner::estimate(&plan, None, |t| {
            planner::page_size(&self.config, plan.service, t)
        });
        Ok(PlanPreview {
            plan,
            estimate,
            allocation: None,
        })
    }

    /// The preview with its calls as a share of the allocation its tenant's service has left,
    /// asked of the API now (`engine::quota`).
    pub async fn with_allocation(&self, mut preview: PlanPreview) -> PlanPreview {
        let (p, calls) = (&preview.plan, preview.estimate.api_calls);
        preview.allocation = self
            .engine
            .allocation_share(&p.tenant_id, p.service, calls)
            .await
            .transpose();
        preview
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
            protected: t.protected,
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

/// Where the owner's job actions run.
enum Port {
    /// Tasks of this process.
    Here,
    /// Runner processes of their own, started under this process's scheduling queue.
    Detached(Arc<RunnerCommand>),
    /// The cloud deployment's dispatch.
    Cloud(Arc<dyn Dispatch>),
}

/// What a task of the owner reports when it ends.
enum Done {
    /// A run of a job started here ended.
    Job,
    /// A transform or verification (by its key) ended.
    Task(String),
    /// A cloud call ended.
    Cloud,
    Detected(Result<Vec<Decision>, super::EngineError>),
}

/// The task that owns the engine: runs commands, keeps the snapshot fresh.
struct Owner {
    engine: Engine,
    config: Arc<Config>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    policy: RefreshPolicy,
    watched: Option<String>,
    health: health::HealthBook,
    jobs: Arc<Vec<Job>>,
    done_tx: mpsc::Sender<Done>,
    done_rx: Option<mpsc::Receiver<Done>>,
    /// Job actions, through the local runner or (cloud mode) the cloud's dispatch port.
    ops: Ops,
    /// The runner of this process's jobs; none in cloud mode.
    local: Option<LocalRunner>,
    /// Transforms and verifications in flight, by key.
    busy: BTreeSet<String>,
    /// How runner processes start, when jobs run in them.
    runners: Option<Arc<RunnerCommand>>,
    detection: lifecycle::Detection,
}

impl Owner {
    fn new(
        engine: Engine,
        config: Arc<Config>,
        snapshot: watch::Sender<Arc<Snapshot>>,
        policy: RefreshPolicy,
        port: Port,
    ) -> Owner {
        // One slot per job that can run at once is enough: finished runs report here.
        let (done_tx, done_rx) = mpsc::channel(64);
        let done = done_tx.clone();
        let options = RunnerOptions {
            here: IN_THIS_CONSOLE,
            on_end: Some(Arc::new(move |_: &str| {
                // Only a hint to look again: a full channel loses nothing.
                let _ = done.try_send(Done::Job);
            })),
            ..RunnerOptions::default()
        };
        let (local, port, runners): (_, Arc<dyn Dispatch>, _) = match port {
            Port::Cloud(cloud) => (None, cloud, None),
            Port::Here => {
                let runner = LocalRunner::new(engine.clone(), options);
                (Some(runner.clone()), Arc::new(runner), None)
            }
            Port::Detached(command) => {
                let run = command.clone().run_job(engine.clone());
                let queue = LocalRunner::with_engine(engine.clone(), run, options);
                let port = DetachedPort {
                    queue: queue.clone(),
                    command: command.clone(),
                };
                (Some(queue), Arc::new(port), Some(command))
            }
        };
        Owner {
            health: health::HealthBook::new(&config),
            ops: Ops::new(engine.clone(), port),
            local,
            engine,
            config,
            snapshot,
            policy,
            watched: None,
            jobs: Arc::new(Vec::new()),
            done_tx,
            done_rx: Some(done_rx),
            busy: BTreeSet::new(),
            runners,
            detection: lifecycle::Detection::default(),
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
                    match self.execute(command).await {
                        Ok(Answer::Now(text)) => {
                            let _ = reply.send(Ok(text));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                        Ok(Answer::Later { key, work }) => {
                            // Answered from its own task; the end marks the snapshot stale
                            // through `done` like a finished run.
                            if let Some(k) = &key {
                                self.busy.insert(k.clone());
                            }
                            let done = self.done_tx.clone();
                            tokio::spawn(async move {
                                let _ = reply.send(work.await);
                                let _ = done.send(key.map_or(Done::Cloud, Done::Task)).await;
                            });
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
                Some(done) = done_rx.recv() => {
                    match done {
                        Done::Job => self.detection.mark_stale(),
                        Done::Task(key) => {
                            self.busy.remove(&key);
                        }
                        Done::Cloud => {}
                        Done::Detected(result) => self.detection.finished(result),
                    }
                    dirty = true;
                }
                _ = tick.tick() => {
                    if let Some(local) = &self.local {
                        // The off-peak window may have opened.
                        local.pump();
                    }
                    if self.local.is_some() && self.detection.due(self.policy.detect) {
                        self.detect();
                    }
                    if dirty || last_refresh.elapsed() >= self.policy.idle {
                        self.refresh().await;
                        dirty = false;
                        last_refresh = tokio::time::Instant::now();
                    }
                }
            }
        }
    }

    /// Runs `Engine::detect` on a task: it lists raw data and builds a client per service,
    /// which must not hold up commands or snapshots.
    fn detect(&mut self) {
        self.detection.started();
        let (engine, done) = (self.engine.clone(), self.done_tx.clone());
        tokio::spawn(async move {
            let result = engine.detect(Utc::now()).await;
            let _ = done.send(Done::Detected(result)).await;
        });
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
        let loaded = lifecycle::load(&self.engine, self.watched.as_deref(), &self.jobs).await;
        let pulse = match self.engine.read_pulse(&self.jobs).await {
            Ok(p) => Arc::new(p),
            Err(e) => {
                error = error.or(Some(e.to_string()));
                self.snapshot.borrow().pulse.clone()
            }
        };
        let prev = self.snapshot.borrow().clone();
        let now = Utc::now();
        let snap = Snapshot {
            taken_at: Some(now),
            jobs: self.jobs.clone(),
            chunks: Arc::new(chunks),
            running_here: Arc::new(
                self.local
                    .as_ref()
                    .map(LocalRunner::running)
                    .unwrap_or_default(),
            ),
            tenants: prev.tenants.clone(),
            tables: prev.tables.clone(),
            health: Arc::new(self.health.rows(now)),
            error: error.or(loaded.error),
            detection: self.detection.decisions.clone(),
            detected_at: self.detection.at,
            detection_error: self.detection.error.clone(),
            alerts: Arc::new(loaded.alerts),
            markers: Arc::new(loaded.markers),
            lifecycle: Arc::new(loaded.jobs),
            quota_waits: Arc::new(loaded.quota_waits),
            waiting: Arc::new(
                self.local
                    .as_ref()
                    .map(LocalRunner::waiting)
                    .unwrap_or_default(),
            ),
            canonical: prev.canonical.clone(),
            runners: Arc::new(self.runners.as_ref().map(|r| r.live()).unwrap_or_default()),
            pulse,
        };
        self.snapshot.send_replace(Arc::new(snap));
    }
}

#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod tests;
