//! A local stand-in for the third-party APIs: an in-process ConnectWise PSA REST 3.0
//! simulator on loopback, with deterministic synthetic data, rate limiting (burst or strict),
//! a per-tenant concurrent-request cap, response latency (`limits.rs` decides all three and
//! measures each tenant's load) and fault injection.
//!
//! The wire format follows `SOURCE_APIS.md` §1: Basic auth plus `clientId`, `conditions` on
//! `lastUpdated`, navigable (`page`) and forward-only (`pageId`) paging with `Link` headers,
//! a `/count` sibling, ConnectWise-shaped error bodies and 429 + `Retry-After`.
//! Records are never stored: each table keeps a compact `(id, lastUpdated)` index and renders
//! full JSON on demand, so identical requests always get byte-identical answers.

mod connectwise;
mod data;
mod faults;
mod http;
mod json;
mod limits;
mod render;
pub mod salesforce;
pub mod servicenow;
#[cfg(test)]
mod tests;
mod words;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::MissingCredential;
use crate::domain::Window;
use crate::secret::Secret;
pub use connectwise::CwLink;
use data::{Generator, Table, TableData};
pub use faults::{Fault, FaultError, FaultKind, FaultPlanError, load_faults};
pub(crate) use faults::{FaultAction, FaultPlan};
use http::json_response;
pub(crate) use limits::{Gate, Refusal, Slot};
pub use limits::{Latency, MAX_ARRIVALS, RateMode, TenantLoad, window_extremes};

/// One ConnectWise company the sandbox accepts credentials for, with its dataset size.
#[derive(Clone, Debug)]
pub struct SandboxTenant {
    pub company_id: String,
    pub public_key: String,
    pub private_key: Secret,
    pub client_id: String,
    pub counts: TableCounts,
}

impl SandboxTenant {
    /// The company the sandbox serves for a tenant whose registry entry points at it:
    /// `company_id`, `public_key`, `private_key` and `client_id`.
    pub fn from_credentials(
        creds: &crate::config::Credentials,
        counts: TableCounts,
    ) -> Result<Self, MissingCredential> {
        Ok(SandboxTenant {
            company_id: creds.field("company_id")?,
            public_key: creds.field("public_key")?,
            private_key: Secret::new(creds.field("private_key")?),
            client_id: creds.field("client_id")?,
            counts,
        })
    }
}

/// Why a tenant's credentials make no simulated account.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Missing(#[from] MissingCredential),
    #[error("credential field 'sandbox_daily_api_limit' is not a whole number: '{0}'")]
    DailyLimit(String),
}

/// How many records each table of a tenant holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCounts {
    pub tickets: u64,
    pub time_entries: u64,
    pub companies: u64,
    pub contacts: u64,
}

impl TableCounts {
    /// A small but realistic tenant: 4000 tickets, 8000 time entries, 200 companies, 800 contacts.
    pub fn demo() -> Self {
        TableCounts {
            tickets: 4000,
            time_entries: 8000,
            companies: 200,
            contacts: 800,
        }
    }

    /// The count for a `table_name` of `mappings/endpoints/connectwise.json`.
    pub fn get(&self, table: &str) -> Option<u64> {
        match table {
            "tickets" => Some(self.tickets),
            "time_entries" => Some(self.time_entries),
            "companies" => Some(self.companies),
            "contacts" => Some(self.contacts),
            _ => None,
        }
    }
}

/// Everything the sandbox serves and how it misbehaves.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// End of the synthetic history (exclusive): every `lastUpdated` is before it.
    pub anchor: DateTime<Utc>,
    /// History spans `[anchor - history_days, anchor)`; 0 is treated as 1.
    pub history_days: u32,
    pub tenants: Vec<SandboxTenant>,
    /// Requests per minute per tenant; `None` = unlimited.
    pub rate_limit_per_minute: Option<u32>,
    /// How strictly `rate_limit_per_minute` is enforced (see `limits`).
    pub rate_mode: RateMode,
    /// A tenant's requests served at once; one more is refused as over the rate limit.
    pub max_concurrent_per_tenant: Option<u32>,
    /// How long every API answer is held back; `None` = at once.
    pub latency: Option<Latency>,
    pub faults: Vec<Fault>,
    /// ServiceNow instances' users the sandbox accepts (Table API under `/api/now/`).
    pub servicenow: Vec<servicenow::SnAccount>,
    /// Salesforce orgs the sandbox accepts (`/services/oauth2/token`, `/services/data/`).
    pub salesforce: Vec<salesforce::SfAccount>,
    /// What ConnectWise's forward-only pages say in `Link` once nothing follows.
    pub connectwise_link: CwLink,
}

impl SandboxConfig {
    /// 730 days of history, no rate limit, no latency, no faults.
    pub fn new(anchor: DateTime<Utc>, tenants: Vec<SandboxTenant>) -> Self {
        SandboxConfig {
            anchor,
            history_days: 730,
            tenants,
            rate_limit_per_minute: None,
            rate_mode: RateMode::Burst,
            max_concurrent_per_tenant: None,
            latency: None,
            faults: Vec::new(),
            servicenow: Vec::new(),
            salesforce: Vec::new(),
            connectwise_link: CwLink::default(),
        }
    }
}

/// Counters since start; `Sandbox::stats` and `GET /_sandbox/stats` return a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStats {
    pub requests: u64,
    pub ok: u64,
    /// Refused by the sandbox's own rate limiter (a fault plan's 429 is a fault, not this).
    pub rate_limited: u64,
    /// Refused because `max_concurrent_per_tenant` requests of the tenant were being served.
    pub concurrency_refused: u64,
    /// The most requests of one tenant served at once.
    pub max_in_flight: u64,
    pub unauthorized: u64,
    pub faults_injected: u64,
    /// 200 responses to a (company, path, conditions, pageId/page, pageSize) answered 200 before.
    pub repeated_pages: u64,
    pub bytes_sent: u64,
    /// Per tenant (`service:company` or `service:username`): its load and arrival times.
    pub tenants: std::collections::BTreeMap<String, TenantLoad>,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    ok: AtomicU64,
    rate_limited: AtomicU64,
    concurrency_refused: AtomicU64,
    unauthorized: AtomicU64,
    faults_injected: AtomicU64,
    repeated_pages: AtomicU64,
    bytes_sent: AtomicU64,
}

/// What a request amounted to, for the stats counters (every simulated API counts alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    RateLimited,
    ConcurrencyRefused,
    Unauthorized,
    Fault,
    Other,
}

impl Counters {
    /// Counts one answered request and the bytes of its body.
    pub(crate) fn record(&self, outcome: Outcome, body_bytes: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent
            .fetch_add(body_bytes as u64, Ordering::Relaxed);
        let counter = match outcome {
            Outcome::Ok => Some(&self.ok),
            Outcome::RateLimited => Some(&self.rate_limited),
            Outcome::ConcurrencyRefused => Some(&self.concurrency_refused),
            Outcome::Unauthorized => Some(&self.unauthorized),
            Outcome::Fault => Some(&self.faults_injected),
            Outcome::Other => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(&self, gate: &Gate) -> SandboxStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let tenants = gate.snapshot();
        SandboxStats {
            requests: get(&self.requests),
            ok: get(&self.ok),
            rate_limited: get(&self.rate_limited),
            concurrency_refused: get(&self.concurrency_refused),
            max_in_flight: tenants.values().map(|t| t.max_in_flight).max().unwrap_or(0),
            tenants,
            unauthorized: get(&self.unauthorized),
            faults_injected: get(&self.faults_injected),
            repeated_pages: get(&self.repeated_pages),
            bytes_sent: get(&self.bytes_sent),
        }
    }
}

/// Locks `m`, also when a panicking handler poisoned it (the state stays usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A tenant and its lazily built table indexes.
struct TenantData {
    tenant: SandboxTenant,
    tables: [OnceLock<TableData>; 4],
}

/// State shared by all request handlers.
pub(crate) struct Shared {
    anchor: DateTime<Utc>,
    history_days: u32,
    tenants: Vec<TenantData>,
    /// Admission of every API's requests: rate limit, concurrency cap, load measures.
    gate: Gate,
    latency: Option<Latency>,
    connectwise_link: CwLink,
    faults: FaultPlan,
    counters: Counters,
    seen_pages: Mutex<HashSet<String>>,
    /// ConnectWise records moved by `touch_records` faults.
    moved: Mutex<Vec<MovedRecord>>,
    /// ConnectWise records deleted by `delete_records` faults.
    deleted: Mutex<Vec<DeletedRecord>>,
    /// ConnectWise private keys replaced by `/_sandbox/connectwise/rotate`, by company: the
    /// key the company was configured with is refused from then on.
    rotated: Mutex<std::collections::HashMap<String, Secret>>,
    addr: SocketAddr,
    servicenow: servicenow::SnState,
    salesforce: salesforce::SfState,
}

impl Shared {
    /// The private key `tenant` is accepted with now.
    pub(crate) fn private_key(&self, tenant: &SandboxTenant) -> Secret {
        let rotated = self.rotated.lock().unwrap_or_else(|p| p.into_inner());
        rotated
            .get(&tenant.company_id)
            .cloned()
            .unwrap_or_else(|| tenant.private_key.clone())
    }

    fn rotate_key(&self, company_id: &str, key: Secret) {
        let mut rotated = self.rotated.lock().unwrap_or_else(|p| p.into_inner());
        rotated.insert(company_id.to_string(), key);
    }

    fn table<'a>(&self, tenant: &'a TenantData, table: Table) -> &'a TableData {
        tenant.tables[table.index()].get_or_init(|| {
            TableData::new(Generator::new(
                self.anchor,
                self.history_days,
                &tenant.tenant,
                table,
            ))
        })
    }

    /// Records a 200 list page; true when the same page was already answered before.
    fn page_seen_before(&self, key: String) -> bool {
        let mut seen = lock(&self.seen_pages);
        !seen.insert(key)
    }
}

impl Shared {
    /// Gives `n` records of `table` inside `bounds` a new update time past the window's end
    /// (as if someone edited them while the backfill reads the window).
    fn touch_records(
        &self,
        tenant: &TenantData,
        table: Table,
        bounds: data::Bounds,
        (n, inside): (u32, bool),
    ) {
        let moved = self.table(tenant, table).touch(bounds, n, inside);
        self.log_moved(tenant, table, moved);
    }

    fn delete_records(&self, tenant: &TenantData, table: Table, bounds: data::Bounds, n: u32) {
        let deleted = self.table(tenant, table).delete(bounds, n);
        lock(&self.deleted).extend(deleted.into_iter().map(|(id, lu)| DeletedRecord {
            company_id: tenant.tenant.company_id.clone(),
            table: table.table_name().to_string(),
            id,
            last_updated: DateTime::from_timestamp(lu, 0).unwrap_or_default(),
        }));
    }

    fn log_moved(
        &self,
        tenant: &TenantData,
        table: Table,
        moved: Vec<(i64, i64, i64)>,
    ) -> Vec<MovedRecord> {
        let records: Vec<MovedRecord> = moved
            .into_iter()
            .map(|(id, from, to)| MovedRecord {
                company_id: tenant.tenant.company_id.clone(),
                table: table.table_name().to_string(),
                id,
                from: DateTime::from_timestamp(from, 0).unwrap_or_default(),
                to: DateTime::from_timestamp(to, 0).unwrap_or_default(),
            })
            .collect();
        let mut log = lock(&self.moved);
        log.extend(records.iter().cloned());
        records
    }

    /// Edits `n` ConnectWise records of a table, spread over it, to update times `at`,
    /// `at + 1s`, ... (see `TableData::edit`).
    fn edit_records(
        &self,
        company_id: &str,
        table: &str,
        n: u32,
        at: DateTime<Utc>,
        newest: bool,
    ) -> Result<Vec<MovedRecord>, EditError> {
        let tenant = self
            .tenants
            .iter()
            .find(|t| t.tenant.company_id == company_id)
            .ok_or_else(|| EditError::NoCompany(company_id.to_string()))?;
        let table =
            Table::from_table_name(table).ok_or_else(|| EditError::NoTable(table.to_string()))?;
        let data = self.table(tenant, table);
        let moved = if newest {
            data.edit_newest(n, at.timestamp())
        } else {
            data.edit(n, at.timestamp())
        };
        Ok(self.log_moved(tenant, table, moved))
    }
}

/// What an edit of ConnectWise records names that the sandbox does not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("no ConnectWise company '{0}'")]
    NoCompany(String),
    #[error("no ConnectWise table '{0}'")]
    NoTable(String),
}

/// Query of `POST /_sandbox/connectwise/edit`.
#[derive(Deserialize)]
struct EditQuery {
    company_id: String,
    table: String,
    records: u32,
    at: DateTime<Utc>,
    /// Edit the records created last rather than records spread over the table.
    #[serde(default)]
    newest: bool,
}

/// `POST /_sandbox/connectwise/rotate?company_id=C` with the new private key as the body:
/// what rotating a member's API key does (the old key is refused at once).
async fn rotate_handler(
    State(shared): State<std::sync::Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<RotateQuery>,
    key: String,
) -> Response {
    if !shared
        .tenants
        .iter()
        .any(|t| t.tenant.company_id == q.company_id)
    {
        return (StatusCode::NOT_FOUND, "no such company").into_response();
    }
    shared.rotate_key(&q.company_id, Secret::new(key.trim()));
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct RotateQuery {
    company_id: String,
}

async fn edit_handler(
    State(shared): State<std::sync::Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<EditQuery>,
) -> Response {
    match shared.edit_records(&q.company_id, &q.table, q.records, q.at, q.newest) {
        Ok(moved) => json_response(SANDBOX_JSON, serde_json::to_vec(&moved).unwrap_or_default()),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// The body of a good answer as a fault spoils it: `Truncate` sends the first half and then
/// breaks the connection, `Malformed` sends text that is not JSON. Returns the body and the
/// number of bytes it will send.
pub(crate) fn spoiled_body(body: Vec<u8>, spoil: Option<FaultKind>) -> (axum::body::Body, usize) {
    match spoil {
        Some(FaultKind::Truncate) => {
            let half = body.len() / 2;
            let mut first = body;
            first.truncate(half);
            let stream = futures::stream::iter(vec![
                Ok::<_, std::io::Error>(bytes::Bytes::from(first)),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "sandbox fault: body truncated",
                )),
            ]);
            (axum::body::Body::from_stream(stream), half)
        }
        Some(FaultKind::Malformed) => {
            let text = b"<html><body><h1>Service Unavailable</h1></body></html>\n".to_vec();
            let n = text.len();
            (axum::body::Body::from(text), n)
        }
        Some(FaultKind::Endless) => {
            // 64 KB of records at a time, for as long as the client reads.
            let records = bytes::Bytes::from(r#"{"id":1,"summary":"endless"},"#.repeat(2048));
            let chunks = std::iter::once(bytes::Bytes::from_static(b"["))
                .chain(std::iter::repeat(records))
                .map(Ok::<_, std::io::Error>);
            (
                axum::body::Body::from_stream(futures::stream::iter(chunks)),
                0,
            )
        }
        _ => {
            let n = body.len();
            (axum::body::Body::from(body), n)
        }
    }
}

/// The content type of the sandbox's own `/_sandbox/...` answers.
const SANDBOX_JSON: &str = "application/json; charset=utf-8";

/// A running sandbox server. Dropping it stops the server abruptly; prefer `shutdown`.
pub struct Sandbox {
    addr: SocketAddr,
    shared: std::sync::Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox").field("addr", &self.addr).finish()
    }
}

impl Sandbox {
    /// Binds `bind` (use `127.0.0.1:0` for an ephemeral port) and serves on a tokio task.
    pub async fn start(config: SandboxConfig, bind: SocketAddr) -> std::io::Result<Sandbox> {
        let gate = Gate::new(
            config.rate_limit_per_minute,
            config.rate_mode,
            config.max_concurrent_per_tenant,
        )?;
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let servicenow = servicenow::SnState::new(&config)?;
        let salesforce = salesforce::SfState::new(&config)?;
        let shared = std::sync::Arc::new(Shared {
            anchor: config.anchor,
            history_days: config.history_days,
            tenants: config
                .tenants
                .into_iter()
                .map(|tenant| TenantData {
                    tenant,
                    tables: Default::default(),
                })
                .collect(),
            gate,
            latency: config.latency,
            connectwise_link: config.connectwise_link,
            faults: FaultPlan::new(&config.faults),
            counters: Counters::default(),
            seen_pages: Mutex::new(HashSet::new()),
            moved: Mutex::new(Vec::new()),
            deleted: Mutex::new(Vec::new()),
            rotated: Mutex::new(std::collections::HashMap::new()),
            addr,
            servicenow,
            salesforce,
        });
        let app = Router::new()
            .route("/_sandbox/stats", get(stats_handler))
            .route(
                "/login/companyinfo/{company}",
                get(connectwise::company_info),
            )
            .route("/_sandbox/connectwise/moved", get(moved_handler))
            .route("/_sandbox/connectwise/deleted", get(deleted_handler))
            .route(
                "/_sandbox/connectwise/edit",
                axum::routing::post(edit_handler),
            )
            .route(
                "/_sandbox/connectwise/rotate",
                axum::routing::post(rotate_handler),
            )
            .merge(servicenow::routes())
            .merge(salesforce::routes())
            .fallback(connectwise::api)
            .with_state(shared.clone());
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(err) = server.await {
                tracing::warn!(%err, "sandbox server stopped with an error");
            }
        });
        tracing::debug!(%addr, "sandbox listening");
        Ok(Sandbox {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://IP:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> SandboxStats {
        self.shared.counters.snapshot(&self.shared.gate)
    }

    /// Edits `n` records of a ConnectWise table (spread over it) to update times `at`,
    /// `at + 1s`, ...: what a sync after the history's end should pick up.
    pub fn edit_records(
        &self,
        company_id: &str,
        table: &str,
        n: u32,
        at: DateTime<Utc>,
    ) -> Result<Vec<MovedRecord>, EditError> {
        self.shared.edit_records(company_id, table, n, at, false)
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), then stops the server.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A ConnectWise record whose `lastUpdated` a `touch_records` fault moved.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MovedRecord {
    pub company_id: String,
    pub table: String,
    pub id: i64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// A ConnectWise record a `delete_records` fault deleted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeletedRecord {
    pub company_id: String,
    pub table: String,
    pub id: i64,
    pub last_updated: DateTime<Utc>,
}

async fn deleted_handler(State(shared): State<std::sync::Arc<Shared>>) -> Response {
    let deleted = lock(&shared.deleted).clone();
    let body = serde_json::to_vec(&deleted).unwrap_or_default();
    json_response(SANDBOX_JSON, body)
}

async fn moved_handler(State(shared): State<std::sync::Arc<Shared>>) -> Response {
    let moved = lock(&shared.moved).clone();
    let body = serde_json::to_vec(&moved).unwrap_or_default();
    json_response(SANDBOX_JSON, body)
}

async fn stats_handler(State(shared): State<std::sync::Arc<Shared>>) -> Response {
    let body = serde_json::to_vec(&shared.counters.snapshot(&shared.gate)).unwrap_or_default();
    json_response(SANDBOX_JSON, body)
}

/// The exact dataset, for tests: every `(id, lastUpdated)` of `table` for `company_id`
/// whose `lastUpdated` is in `window`, ascending by id. Unknown tenant or table → empty.
pub fn expected_records(
    config: &SandboxConfig,
    company_id: &str,
    table: &str,
    window: &Window,
) -> Vec<(i64, DateTime<Utc>)> {
    let (Some(tenant), Some(table)) = (
        config.tenants.iter().find(|t| t.company_id == company_id),
        Table::from_table_name(table),
    ) else {
        return Vec::new();
    };
    let generator = Generator::new(config.anchor, config.history_days, tenant, table);
    // Whole-second superset of the window, then the exact half-open test on DateTimes.
    let lo = window.start.timestamp();
    let hi = window.end.timestamp().saturating_add(1);
    let (from, to) = generator.candidate_range(lo, hi);
    (from..to)
        .filter_map(|i| {
            let lu = DateTime::from_timestamp(generator.last_updated(i), 0)?;
            window
                .contains(lu)
                .then_some((data::ID_BASE + i as i64, lu))
        })
        .collect()
}
