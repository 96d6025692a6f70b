//! The engine: turns plans into jobs, runs their chunks from sources into the raw sink,
//! keeps every state change in the job store and reports progress as events.
//!
//! It sees stores, sources and sinks only through their traits and types; it knows nothing
//! of terminals, SQLite or AWS.

pub mod alerts;
pub mod breaker;
pub mod budget;
pub mod chunking;
pub mod cleanup;
pub mod compact;
#[cfg(test)]
mod compact_tests;
mod dependencies;
pub mod detect;
pub mod events;
pub mod executor;
pub mod fields;
pub mod fleet;
pub mod handle;
pub mod handoff;
pub mod inflight;
pub mod metrics;
pub mod ops;
pub mod planner;
mod policy;
#[cfg(test)]
mod policy_tests;
pub mod probe;
pub mod pulse;
pub mod quota;
pub mod retry;
pub mod schedule;
pub mod step;
pub mod verify;
#[cfg(test)]
mod windows_tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::config::Config;
use crate::domain::Service;
use crate::sink::{RawSink, SinkError};
use crate::sources::Source;
use crate::store::{
    CreateOutcome, JobStore, LifecycleStore, MemoryRateStore, RateClock, RateStore, StoreError,
};
use crate::transform::TransformError;

pub use breaker::{BreakerSnapshot, CircuitBreaker};
pub use budget::{BudgetSnapshot, RateBudget};
pub use events::{BreakerState, EngineEvent};
pub use executor::{RunOutcome, StopReason};
pub use handle::EngineHandle;
pub use handoff::Handoff;
pub use inflight::{InFlight, InFlightSnapshot};
pub use ops::ScheduledRun;
pub use planner::{Plan, PlanError, PlanRequest};
pub use policy::request_backoff;
pub use step::{Deadline, Step, wait_before_retry};

/// Hands the engine a client for a tenant's service (the composition root decides how).
pub trait SourceProvider: Send + Sync {
    fn source(&self, tenant_id: &str, service: Service) -> Result<Arc<dyn Source>, NoSource>;
}

/// Why there is no client for a tenant's service (disabled, credentials not usable, run
/// elsewhere): a chunk of it fails for good, and detection does not select it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct NoSource {
    pub reason: String,
}

impl NoSource {
    pub fn new(reason: impl std::fmt::Display) -> Self {
        NoSource {
            reason: reason.to_string(),
        }
    }
}

impl From<String> for NoSource {
    fn from(reason: String) -> Self {
        NoSource { reason }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Transform(#[from] TransformError),
    /// The data's device is full: the run stopped, no chunk was marked failed for it.
    #[error("{0}; the run stopped and no chunk was marked failed: free space, then resume the job")]
    DiskFull(String),
    #[error("{0}")]
    Other(String),
}

#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Who this process is in leases: `host:pid:nonce`.
    pub owner: String,
    /// How long a claimed chunk stays ours without a heartbeat.
    pub lease: Duration,
    /// A part is written once it holds this many rows...
    pub part_max_rows: usize,
    /// ...or this many encoded bytes...
    pub part_max_bytes: usize,
    /// ...or when this long has passed since the last checkpoint. When requests are paced
    /// slower than `checkpoint_every_page_below`, every page is checkpointed: a write per
    /// page costs little next to the wait, and a resume then refetches nothing stored.
    pub checkpoint_interval: Duration,
    pub checkpoint_every_page_below: Duration,
    /// Pace requests at the configured rate limits (off only for benchmarks).
    pub pace_requests: bool,
    /// Overrides every service's `max_in_flight`: at most this many windows of a tenant's
    /// service in flight at once (`run --concurrency N`); `None` keeps the configured caps.
    pub chunk_concurrency: Option<usize>,
    /// How often a waiting runner looks again (backoffs, others' leases).
    pub poll_interval: Duration,
    /// Rebuild the canonical tables a job feeds when it completes (off for benchmarks).
    pub auto_transform: bool,
    /// Compact raw parts when a job completes (`compact`; off for benchmarks, which measure
    /// it on its own).
    pub auto_compact: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            owner: executor::local_owner_id(),
            lease: Duration::from_secs(60),
            part_max_rows: 50_000,
            part_max_bytes: 8 * 1024 * 1024,
            checkpoint_interval: Duration::from_secs(2),
            checkpoint_every_page_below: Duration::from_millis(50),
            pace_requests: true,
            chunk_concurrency: None,
            poll_interval: Duration::from_millis(500),
            auto_transform: true,
            auto_compact: true,
        }
    }
}

struct Inner {
    config: Arc<Config>,
    store: Arc<dyn JobStore>,
    sink: RawSink,
    sources: Arc<dyn SourceProvider>,
    events: broadcast::Sender<EngineEvent>,
    options: EngineOptions,
    budgets: Mutex<HashMap<(String, Service), Arc<RateBudget>>>,
    breakers: Mutex<HashMap<(String, Service), Arc<CircuitBreaker>>>,
    inflight: Mutex<HashMap<(String, Service), Arc<InFlight>>>,
    lifecycle: Arc<dyn LifecycleStore>,
    metrics: OnceLock<Arc<dyn metrics::MetricsSink>>,
    /// Each job's quota state in this process (`quota`).
    quotas: quota::gate::Quotas,
    /// Which job tables have had a request succeed in this process (`executor::probe`).
    probes: executor::probe::TableProbes,
    /// Where budgets and breakers keep their shared rows (in memory unless set).
    rates: OnceLock<Arc<dyn RateStore>>,
    rate_clock: OnceLock<RateClock>,
    /// Pulse counts not yet in the store (`pulse`).
    pulse: pulse::Recorder,
}

/// The request health of one tenant's service: its rate budget and circuit breaker.
#[derive(Clone, Debug)]
pub struct PairHealth {
    pub tenant_id: String,
    pub service: Service,
    pub budget: BudgetSnapshot,
    pub breaker: BreakerSnapshot,
    pub in_flight: InFlightSnapshot,
}

/// A cheap, cloneable handle on one engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// An engine over `store` (jobs and chunks) and `lifecycle` (markers, hints, alerts,
    /// verification results: the same SQLite file or DynamoDB tables as the jobs).
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn JobStore>,
        lifecycle: Arc<dyn LifecycleStore>,
        sink: RawSink,
        sources: Arc<dyn SourceProvider>,
        options: EngineOptions,
    ) -> Self {
        let (events, _) = broadcast::channel(4096);
        Engine {
            inner: Arc::new(Inner {
                config,
                store,
                sink,
                sources,
                events,
                options,
                budgets: Mutex::new(HashMap::new()),
                breakers: Mutex::new(HashMap::new()),
                inflight: Mutex::new(HashMap::new()),
                lifecycle,
                metrics: OnceLock::new(),
                quotas: Default::default(),
                probes: Default::default(),
                rates: OnceLock::new(),
                rate_clock: OnceLock::new(),
                pulse: Default::default(),
            }),
        }
    }

    /// Sends metric records (CloudWatch Embedded Metric Format) here instead of the log.
    pub fn with_metrics(self, sink: Arc<dyn metrics::MetricsSink>) -> Self {
        let _ = self.inner.metrics.set(sink);
        self
    }

    /// Shares rate budgets and breakers through `rates` (the workspace's SQLite file, the
    /// deployment's DynamoDB table) with every other process using it. Set before the first
    /// request; without it they are this process's alone.
    pub fn with_rate_store(self, rates: Arc<dyn RateStore>) -> Self {
        let _ = self.inner.rates.set(rates);
        self
    }

    /// The store of the shared rate rows.
    pub fn rate_store(&self) -> &Arc<dyn RateStore> {
        self.inner
            .rates
            .get_or_init(|| Arc::new(MemoryRateStore::new()))
    }

    /// "Now" for rate rows, anchored when first asked (inside the runtime that runs requests).
    fn rate_clock(&self) -> RateClock {
        *self.inner.rate_clock.get_or_init(RateClock::now)
    }

    /// The lifecycle store: markers, hints, alerts, verification results.
    pub fn lifecycle(&self) -> &Arc<dyn LifecycleStore> {
        &self.inner.lifecycle
    }

    /// Stores a job's scheduling hints (priority, trigger, off-peak wait).
    pub async fn set_job_meta(&self, meta: &crate::domain::JobMeta) -> Result<(), EngineError> {
        self.lifecycle().put_job_meta(meta).await?;
        Ok(())
    }

    fn metrics(&self) -> &dyn metrics::MetricsSink {
        match self.inner.metrics.get() {
            Some(m) => m.as_ref(),
            None => &metrics::LogMetrics,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    pub(crate) fn probes(&self) -> &executor::probe::TableProbes {
        &self.inner.probes
    }

    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.inner.store
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    pub fn sink(&self) -> &RawSink {
        &self.inner.sink
    }

    pub fn source(&self, tenant_id: &str, service: Service) -> Result<Arc<dyn Source>, NoSource> {
        self.inner.sources.source(tenant_id, service)
    }

    fn emit(&self, event: EngineEvent) {
        // Nobody listening is fine: events are for watchers, the store is the record.
        let _ = self.inner.events.send(event);
    }

    pub fn plan(&self, req: &PlanRequest, now: DateTime<Utc>) -> Result<Plan, EngineError> {
        Ok(planner::plan(&self.inner.config, req, now)?)
    }

    /// Stores the plan as a job, or returns the active job that already covers it.
    pub async fn create_job(
        &self,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> Result<CreateOutcome, EngineError> {
        let mut plan = plan.clone();
        if !plan.fields_checked {
            self.check_fields(&mut plan).await?;
        }
        let (job, chunks) = plan.to_job(now);
        let outcome = self
            .inner
            .store
            .create_job(job, chunks, plan.end_is_default)
            .await?;
        if let CreateOutcome::Created(job) = &outcome {
            tracing::info!(job_id = %job.job_id, tenant_id = %job.tenant_id, service = %job.service,
                chunks = job.total_chunks, window = %job.window, "job created");
            self.emit(EngineEvent::JobCreated {
                job_id: job.job_id.clone(),
            });
        }
        Ok(outcome)
    }

    /// The shared request budget of a tenant's service.
    pub fn budget(&self, tenant_id: &str, service: Service) -> Arc<RateBudget> {
        let mut budgets = self.inner.budgets.lock().unwrap_or_else(|p| p.into_inner());
        budgets
            .entry((tenant_id.to_string(), service))
            .or_insert_with(|| {
                let rate = if self.inner.options.pace_requests {
                    self.inner
                        .config
                        .backfill
                        .rate_limit_per_minute(tenant_id, service)
                } else {
                    None
                };
                Arc::new(RateBudget::shared(
                    rate,
                    self.rate_store().clone(),
                    tenant_id,
                    service,
                    self.rate_clock(),
                ))
            })
            .clone()
    }

    /// The cap on a tenant's service's windows in flight: `--concurrency`, else the
    /// service's `max_in_flight`.
    pub fn max_in_flight(&self, service: Service) -> u32 {
        match self.inner.options.chunk_concurrency {
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX).max(1),
            None => self.inner.config.backfill.max_in_flight(service),
        }
    }

    /// The in-flight controller of a tenant's service (shared by all its jobs here).
    pub fn inflight(&self, tenant_id: &str, service: Service) -> Arc<InFlight> {
        let mut all = self
            .inner
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        all.entry((tenant_id.to_string(), service))
            .or_insert_with(|| {
                let rate = if self.inner.options.pace_requests {
                    self.inner
                        .config
                        .backfill
                        .rate_limit_per_minute(tenant_id, service)
                } else {
                    None
                };
                Arc::new(InFlight::new(rate, self.max_in_flight(service)))
            })
            .clone()
    }

    /// The circuit breaker of a tenant's service.
    pub fn breaker(&self, tenant_id: &str, service: Service) -> Arc<CircuitBreaker> {
        let mut breakers = self
            .inner
            .breakers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        breakers
            .entry((tenant_id.to_string(), service))
            .or_insert_with(|| {
                let d = &self.inner.config.backfill.default_settings;
                Arc::new(CircuitBreaker::shared(
                    d.circuit_breaker_failures,
                    Duration::from_secs_f64(d.circuit_breaker_cooldown_seconds),
                    self.rate_store().clone(),
                    tenant_id,
                    service,
                    self.rate_clock(),
                ))
            })
            .clone()
    }

    /// Rate budgets and breakers of every pair that has made requests, sorted.
    pub fn health(&self) -> Vec<PairHealth> {
        let budgets: Vec<_> = {
            let b = self.inner.budgets.lock().unwrap_or_else(|p| p.into_inner());
            b.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let mut out: Vec<PairHealth> = budgets
            .into_iter()
            .map(|((tenant_id, service), budget)| PairHealth {
                breaker: self.breaker(&tenant_id, service).snapshot(),
                in_flight: self.inflight(&tenant_id, service).snapshot(),
                budget: budget.snapshot(),
                tenant_id,
                service,
            })
            .collect();
        out.sort_by(|a, b| (&a.tenant_id, a.service).cmp(&(&b.tenant_id, b.service)));
        out
    }
}
