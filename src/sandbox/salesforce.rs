//! The Salesforce surface of the sandbox: OAuth password, refresh-token and
//! client-credentials grants (the last refused, as Salesforce does, when sent to
//! `login.salesforce.com` or `test.salesforce.com` rather than a My Domain host), REST
//! query with query locators, Bulk API 2.0 query jobs with CSV results, per-org API usage
//! (`Sforce-Limit-Info`), Salesforce error arrays, and the shared fault plan.
//!
//! Wire format: `SOURCE_APIS.md` §3. Choices of our own (documented for the client side):
//! - the per-minute limit (`rate_limit_per_minute`, per org) answers **403
//!   `REQUEST_LIMIT_EXCEEDED`** "ConcurrentRequests (Concurrent API Requests) Limit exceeded."
//!   like a real org under concurrency pressure, plus a `Retry-After` header (real orgs send
//!   none; clients must cope without it);
//! - the daily limit (`SfAccount::daily_api_limit`, default 15000) counts requests in a
//!   rolling 24 h window on tokio's clock, plus `api_used_elsewhere` (other integrations of
//!   the org), which leave the window `elsewhere_frees_after` the start; past it, 403
//!   `REQUEST_LIMIT_EXCEEDED` "TotalRequests Limit exceeded." without `Retry-After`, as real
//!   orgs do; refused requests do not count;
//! - `GET /services/data/vXX.X/limits` answers `DailyApiRequests` `Max` and `Remaining` (and a
//!   few other limits); it is not counted and answers past the daily limit too (our choice);
//! - fault-plan statuses answer with Salesforce error arrays: 401 `INVALID_SESSION_ID`,
//!   403 `REQUEST_LIMIT_EXCEEDED` "ConcurrentRequests" (with `Retry-After:
//!   retry_after_seconds`, default 1, so a burst is waited out at the plan's pace), 429 (with `Retry-After`), 5xx
//!   `SERVER_UNAVAILABLE`, 500 `UNKNOWN_EXCEPTION`;
//! - a REST query is a snapshot: the matching Ids are fixed when the query runs, and pages
//!   fetched later through its locator show the records' values at that later time (so a
//!   record edited mid-read shows its new `SystemModstamp`);
//! - at most 10 locators per org are kept (oldest dropped, like Salesforce's open-cursor
//!   limit); an unknown or dropped locator answers 400 `INVALID_QUERY_LOCATOR`;
//! - a Bulk API 2.0 job moves `UploadComplete` → `InProgress` → `JobComplete`, one step per
//!   status poll; its rows are fixed when it completes; results are CSV with every field
//!   quoted, nulls as empty fields, dateTimes as `2023-01-01T00:00:00.000Z`; the locator is
//!   the base64 text of the next row offset (`MTAwMDA` = 10000), `null` at the end;
//! - a record touched by a `touch_records` fault gets `SystemModstamp` (and
//!   `LastModifiedDate`) `max(anchor, window end) + 60 s × n`: edited "now", after the history.

mod auth;
mod bulk;
mod data;
mod describe;
mod plan;
mod records;
mod rest;
mod soql;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::Response;
use axum::routing::{any, get, post};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::http::{Reply, json_response};
use super::{AccountError, FaultAction, Outcome, SandboxConfig, Shared, lock};
use crate::secret::Secret;
use auth::token;
use bulk::BulkJob;
pub use data::SfCounts;
use data::{Audit, OrgKeys, SObject};
use plan::Plan;
pub use records::expected_salesforce;
use rest::api;

/// The daily API request limit of a sandbox org unless its account says otherwise.
pub const DEFAULT_DAILY_API_LIMIT: u64 = 15_000;
/// Open query locators kept per org.
const MAX_LOCATORS: usize = 10;
const MAX_BODY: usize = 1 << 20;

/// One Salesforce org (and its integration user) the sandbox accepts.
#[derive(Clone, Debug)]
pub struct SfAccount {
    pub tenant_id: String,
    /// The connected app's consumer key and secret.
    pub client_id: String,
    pub client_secret: Secret,
    pub username: String,
    /// Password grant: the password (with the security token appended, if any).
    pub password: Option<Secret>,
    /// Refresh-token grant.
    pub refresh_token: Option<Secret>,
    pub counts: SfCounts,
    /// API requests per 24 h before 403 `REQUEST_LIMIT_EXCEEDED`.
    pub daily_api_limit: u64,
    /// Requests other integrations of the org made in the last 24 h when the sandbox starts.
    pub api_used_elsewhere: u64,
    /// When those leave the rolling window, counted from the sandbox's start (tokio's clock,
    /// so paused-time tests can let them free up).
    pub elsewhere_frees_after: std::time::Duration,
    /// Fields the integration user cannot see (field-level security), as `Object.Field`
    /// (`Account.Industry`, `User.Name`): left out of describes, refused in queries.
    pub hidden_fields: Vec<String>,
}

impl SfAccount {
    /// The org the sandbox serves for a tenant whose registry entry points at it.
    ///
    /// Reads `client_id`, `client_secret`, `username`, and `password` (plus an optional
    /// `security_token`) and/or `refresh_token`; with none of the last three, the org takes
    /// client credentials only and its client id stands for the user. The optional sandbox-only
    /// field `sandbox_daily_api_limit` sets the org's daily request limit (default 15000);
    /// `sandbox_hidden_fields` (`Account.Industry, User.Name`) the fields the user cannot see.
    /// Dataset sizes come from `counts` (see `SfCounts::from_table_counts`).
    pub fn from_credentials(
        tenant_id: &str,
        creds: &crate::config::Credentials,
        counts: super::TableCounts,
    ) -> Result<Self, AccountError> {
        let password = creds.optional("password").map(|p| {
            let token = creds.optional("security_token").unwrap_or_default();
            Secret::new(format!("{p}{token}"))
        });
        let refresh_token = creds.optional("refresh_token").map(Secret::new);
        let client_id = creds.field("client_id")?;
        // Client credentials only: the connected app's run-as user is named by its client id.
        let username = match creds.optional("username") {
            None if password.is_none() && refresh_token.is_none() => client_id.clone(),
            _ => creds.field("username")?,
        };
        let daily_api_limit = match creds.optional("sandbox_daily_api_limit") {
            None => DEFAULT_DAILY_API_LIMIT,
            Some(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| AccountError::DailyLimit(text))?,
        };
        Ok(SfAccount {
            tenant_id: tenant_id.to_string(),
            client_id,
            client_secret: Secret::new(creds.field("client_secret")?),
            username,
            password,
            refresh_token,
            counts: SfCounts::from_table_counts(counts),
            daily_api_limit,
            api_used_elsewhere: 0,
            elsewhere_frees_after: DAY,
            hidden_fields: creds
                .optional("sandbox_hidden_fields")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }
}

/// One sObject's records of one org: audit times as generated, and Ids.
struct SfTable {
    audit: Audit,
    ids: Vec<String>,
}

struct Org {
    account: SfAccount,
    keys: OrgKeys,
    tables: [OnceLock<SfTable>; 5],
    usage: Mutex<DailyUsage>,
}

/// The length of the daily limit's rolling window.
pub const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// An org's API requests in the rolling 24 h window, on tokio's clock: the sandbox's own
/// answers, and the calls used elsewhere, which leave the window all at once.
struct DailyUsage {
    calls: VecDeque<tokio::time::Instant>,
    elsewhere: u64,
    elsewhere_until: tokio::time::Instant,
}

impl DailyUsage {
    fn new(account: &SfAccount) -> Self {
        DailyUsage {
            calls: VecDeque::new(),
            elsewhere: account.api_used_elsewhere,
            elsewhere_until: tokio::time::Instant::now() + account.elsewhere_frees_after,
        }
    }

    /// Requests counted in the window now.
    fn used(&mut self) -> u64 {
        let now = tokio::time::Instant::now();
        while self
            .calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= DAY)
        {
            self.calls.pop_front();
        }
        let elsewhere = if now < self.elsewhere_until {
            self.elsewhere
        } else {
            0
        };
        self.calls.len() as u64 + elsewhere
    }

    /// Counts one more request if the limit allows: the count after it, or the count that
    /// refuses it.
    fn take(&mut self, limit: u64) -> Result<u64, u64> {
        let used = self.used();
        if used >= limit {
            return Err(used);
        }
        self.calls.push_back(tokio::time::Instant::now());
        Ok(used + 1)
    }
}

struct Locator {
    org: usize,
    plan: Arc<Plan>,
    rows: Arc<Vec<u32>>,
    batch: usize,
}

/// One record moved by a `touch_records` fault.
#[derive(Clone, Debug, Serialize)]
struct Moved {
    username: String,
    sobject: &'static str,
    id: String,
    from: String,
    to: String,
    /// Deleted by `delete_records` (`to` is then `from`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
}

#[derive(Default)]
struct Inner {
    /// Valid access tokens → org.
    tokens: HashMap<String, usize>,
    locators: HashMap<String, Locator>,
    locator_order: VecDeque<String>,
    jobs: HashMap<String, BulkJob>,
    /// Current `SystemModstamp` of touched records: (org, sObject, index) → epoch ms.
    touched: HashMap<(usize, SObject, u32), i64>,
    /// Records a `delete_records` fault deleted: (org, sObject, index).
    deleted: std::collections::HashSet<(usize, SObject, u32)>,
    moved: Vec<Moved>,
    seq: u64,
    touches: i64,
}

#[derive(Default, Serialize)]
struct SfStats {
    logins: AtomicU64,
    login_failures: AtomicU64,
    queries: AtomicU64,
    /// Queries refused as the org would (`MALFORMED_QUERY`, `INVALID_FIELD`, ...).
    refused_queries: AtomicU64,
    query_more: AtomicU64,
    bulk_jobs: AtomicU64,
    bulk_polls: AtomicU64,
    bulk_result_pages: AtomicU64,
    /// `sobjects/{Object}/describe` requests.
    describes: AtomicU64,
}

/// Per-sandbox Salesforce state.
pub(crate) struct SfState {
    anchor: DateTime<Utc>,
    history_days: u32,
    orgs: Vec<Org>,
    inner: Mutex<Inner>,
    stats: SfStats,
}

impl SfState {
    /// The orgs of `config.salesforce` (the sandbox's gate limits each per username).
    pub(crate) fn new(config: &SandboxConfig) -> std::io::Result<Self> {
        let accounts = &config.salesforce;
        Ok(SfState {
            anchor: config.anchor,
            history_days: config.history_days,
            orgs: accounts
                .iter()
                .map(|a| Org {
                    keys: OrgKeys::new(&a.username, a.counts),
                    account: a.clone(),
                    tables: Default::default(),
                    usage: Mutex::new(DailyUsage::new(a)),
                })
                .collect(),
            inner: Mutex::new(Inner::default()),
            stats: SfStats::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/services/oauth2/token", post(token))
        .route("/services/data/{*rest}", any(api))
        .route("/_sandbox/salesforce/moved", get(moved))
        .route("/_sandbox/salesforce/stats", get(stats))
        .route(
            "/_sandbox/salesforce/expire_locators",
            post(expire_locators),
        )
}

/// REST answers (errors included) are JSON in this content type.
const JSON: &str = "application/json;charset=UTF-8";
/// Bulk API 2.0 results.
const CSV: &str = "text/csv; charset=UTF-8";
/// The org's API usage, `api-usage=USED/LIMIT`, on every answer past sign-in.
const LIMIT_INFO: HeaderName = HeaderName::from_static("sforce-limit-info");

fn json(body: Vec<u8>) -> Reply {
    Reply::ok(JSON, body)
}

/// A Salesforce error array `[{"message":..,"errorCode":..}]`.
fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    let body = serde_json::json!([{ "message": message, "errorCode": code }]);
    Reply::refusal_json(status, JSON, &body)
}

fn bad_request(code: &str, message: &str) -> Reply {
    error(StatusCode::BAD_REQUEST, code, message)
}

fn not_found() -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested resource does not exist",
    )
}

fn invalid_session() -> Reply {
    error(
        StatusCode::UNAUTHORIZED,
        "INVALID_SESSION_ID",
        "Session expired or invalid",
    )
    .with_outcome(Outcome::Unauthorized)
}

/// The status and error array a `status` fault answers with.
fn fault_reply(action: &FaultAction) -> Reply {
    let status = action.status_code();
    match action.status {
        401 => invalid_session(),
        403 => error(
            status,
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
        )
        .header(header::RETRY_AFTER, action.retry_after_secs),
        429 => error(status, "REQUEST_LIMIT_EXCEEDED", &action.message)
            .header(header::RETRY_AFTER, action.retry_after_secs),
        400 => error(status, "INVALID_QUERY_FILTER_OPERATOR", &action.message),
        404 => error(status, "NOT_FOUND", &action.message),
        s if s > 500 => error(status, "SERVER_UNAVAILABLE", &action.message),
        _ => error(status, "UNKNOWN_EXCEPTION", &action.message),
    }
}

async fn moved(State(shared): State<Arc<Shared>>) -> Response {
    let body = serde_json::to_vec(&shared.salesforce.lock().moved).unwrap_or_default();
    json_response("application/json", body)
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let sf = &shared.salesforce;
    let mut v = serde_json::to_value(&sf.stats).unwrap_or_default();
    let usage: serde_json::Map<String, serde_json::Value> = sf
        .orgs
        .iter()
        .map(|o| (o.account.username.clone(), lock(&o.usage).used().into()))
        .collect();
    v["api_usage"] = usage.into();
    v["open_locators"] = sf.lock().locators.len().into();
    let body = serde_json::to_vec(&v).unwrap_or_default();
    json_response("application/json", body)
}

/// Drops every query locator, as an idle org does after 15 minutes.
async fn expire_locators(State(shared): State<Arc<Shared>>) -> Response {
    let mut inner = shared.salesforce.lock();
    let n = inner.locators.len();
    inner.locators.clear();
    inner.locator_order.clear();
    drop(inner);
    let body = serde_json::json!({ "expired": n }).to_string();
    json_response("application/json", body)
}
