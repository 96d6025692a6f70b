//! The Salesforce surface of the sandbox: OAuth password and refresh-token grants, REST
//! query with query locators, Bulk API 2.0 query jobs with CSV results, per-org API usage
//! (`Sforce-Limit-Info`), Salesforce error arrays, and the shared fault plan.
//!
//! Wire format: `SOURCE_APIS.md` §3. Choices of our own (documented for the client side):
//! - the per-minute limit (`rate_limit_per_minute`, per org) answers **403
//!   `REQUEST_LIMIT_EXCEEDED`** "ConcurrentRequests (Concurrent API Requests) Limit exceeded."
//!   like a real org under concurrency pressure, plus a `Retry-After` header (real orgs send
//!   none; clients must cope without it);
//! - the daily limit (`SfAccount::daily_api_limit`, default 15000) answers 403
//!   `REQUEST_LIMIT_EXCEEDED` "TotalRequests Limit exceeded." without `Retry-After`, as real
//!   orgs do; refused requests do not count;
//! - fault-plan statuses answer with Salesforce error arrays: 401 `INVALID_SESSION_ID`,
//!   403 `REQUEST_LIMIT_EXCEEDED` (with `Retry-After: retry_after_seconds`, default 1, so a
//!   burst is waited out at the plan's pace), 429 (with `Retry-After`), 5xx
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

mod bulk;
mod data;
mod plan;
mod soql;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::{any, get, post};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::http::{FaultAnswers, Reply, json_response, planned_fault};
use super::{CredFields, FaultAction, Outcome, RateLimits, SandboxConfig, Shared, lock};
use crate::domain::{Service, Window};
use bulk::BulkJob;
pub use data::SfCounts;
use data::{Audit, OrgKeys, Renderer, SObject, Times, audit_times};
use plan::{Column, OrderKey, Plan, parse_plan};

/// The daily API request limit of a sandbox org unless its account says otherwise.
pub const DEFAULT_DAILY_API_LIMIT: u64 = 15_000;
/// Open query locators kept per org.
const MAX_LOCATORS: usize = 10;
const MAX_BODY: usize = 1 << 20;

/// One Salesforce org (and its integration user) the sandbox accepts.
#[derive(Clone)]
pub struct SfAccount {
    pub tenant_id: String,
    /// The connected app's consumer key and secret.
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    /// Password grant: the password (with the security token appended, if any).
    pub password: Option<String>,
    /// Refresh-token grant.
    pub refresh_token: Option<String>,
    pub counts: SfCounts,
    /// API requests per 24 h before 403 `REQUEST_LIMIT_EXCEEDED`.
    pub daily_api_limit: u64,
}

impl fmt::Debug for SfAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SfAccount")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .field("counts", &self.counts)
            .field("daily_api_limit", &self.daily_api_limit)
            .finish()
    }
}

impl SfAccount {
    /// The org the sandbox serves for a tenant whose registry entry points at it.
    ///
    /// Reads `client_id`, `client_secret`, `username`, and `password` (plus an optional
    /// `security_token`) and/or `refresh_token`. The optional sandbox-only field
    /// `sandbox_daily_api_limit` sets the org's daily request limit (default 15000).
    /// Dataset sizes come from `counts` (see `SfCounts::from_table_counts`).
    pub fn from_credentials(
        tenant_id: &str,
        creds: &crate::config::Credentials,
        counts: super::TableCounts,
    ) -> Result<Self, String> {
        let fields = CredFields(creds);
        let password = fields.optional("password").map(|p| {
            format!(
                "{p}{}",
                fields.optional("security_token").unwrap_or_default()
            )
        });
        let refresh_token = fields.optional("refresh_token");
        if password.is_none() && refresh_token.is_none() {
            return Err(
                "credential field 'password' (or 'refresh_token') is missing or empty".into(),
            );
        }
        let daily_api_limit = match fields.optional("sandbox_daily_api_limit") {
            None => DEFAULT_DAILY_API_LIMIT,
            Some(text) => text.trim().parse::<u64>().map_err(|_| {
                format!(
                    "credential field 'sandbox_daily_api_limit' is not a whole number: '{text}'"
                )
            })?,
        };
        Ok(SfAccount {
            tenant_id: tenant_id.to_string(),
            client_id: fields.required("client_id")?,
            client_secret: fields.required("client_secret")?,
            username: fields.required("username")?,
            password,
            refresh_token,
            counts: SfCounts::from_table_counts(counts),
            daily_api_limit,
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
    used: AtomicU64,
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
}

#[derive(Default)]
struct Inner {
    /// Valid access tokens → org.
    tokens: HashMap<String, usize>,
    locators: HashMap<String, Locator>,
    locator_order: VecDeque<String>,
    jobs: HashMap<String, BulkJob>,
    /// Current `SystemModstamp` of touched records: (org, sObject, index) → seconds.
    touched: HashMap<(usize, SObject, u32), i64>,
    moved: Vec<Moved>,
    seq: u64,
    touches: i64,
}

#[derive(Default, Serialize)]
struct SfStats {
    logins: AtomicU64,
    login_failures: AtomicU64,
    queries: AtomicU64,
    query_more: AtomicU64,
    bulk_jobs: AtomicU64,
    bulk_polls: AtomicU64,
    bulk_result_pages: AtomicU64,
}

/// Per-sandbox Salesforce state.
pub(crate) struct SfState {
    anchor: DateTime<Utc>,
    history_days: u32,
    orgs: Vec<Org>,
    limits: RateLimits,
    inner: Mutex<Inner>,
    stats: SfStats,
}

impl SfState {
    pub(crate) fn new(
        accounts: &[SfAccount],
        anchor: DateTime<Utc>,
        history_days: u32,
        rate_limit_per_minute: Option<u32>,
    ) -> std::io::Result<Self> {
        let limits = RateLimits::new(
            rate_limit_per_minute,
            accounts.iter().map(|a| a.username.as_str()),
        )?;
        Ok(SfState {
            anchor,
            history_days,
            orgs: accounts
                .iter()
                .map(|a| Org {
                    keys: OrgKeys::new(&a.username, a.counts),
                    account: a.clone(),
                    tables: Default::default(),
                    used: AtomicU64::new(0),
                })
                .collect(),
            limits,
            inner: Mutex::new(Inner::default()),
            stats: SfStats::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    fn table(&self, org: usize, s: SObject) -> &SfTable {
        let o = &self.orgs[org];
        o.tables[s.index()].get_or_init(|| build_table(&o.keys, s, self.anchor, self.history_days))
    }

    fn times(&self, inner: &Inner, org: usize, s: SObject, i: u32) -> Times {
        let a = &self.table(org, s).audit;
        let i_us = i as usize;
        match inner.touched.get(&(org, s, i)) {
            Some(&now) => Times {
                created: a.created[i_us],
                modified: now,
                modstamp: now,
            },
            None => Times {
                created: a.created[i_us],
                modified: a.modified[i_us],
                modstamp: a.modstamp[i_us],
            },
        }
    }

    fn next_seq(inner: &mut Inner) -> u64 {
        inner.seq += 1;
        inner.seq
    }

    /// The rows of `plan` as they are now, in its order.
    fn evaluate(&self, inner: &Inner, org: usize, plan: &Plan) -> Vec<u32> {
        let table = self.table(org, plan.sobject);
        let n = table.ids.len() as u32;
        let mut rows: Vec<(u32, Times)> = (0..n)
            .map(|i| (i, self.times(inner, org, plan.sobject, i)))
            .filter(|(i, t)| {
                plan.filter
                    .as_ref()
                    .is_none_or(|p| p.holds(&table.ids[*i as usize], t))
            })
            .collect();
        if !plan.order.is_empty() {
            rows.sort_by(|a, b| {
                for (key, desc) in &plan.order {
                    let ord = match key {
                        OrderKey::Id => table.ids[a.0 as usize].cmp(&table.ids[b.0 as usize]),
                        OrderKey::Time(f) => f.of(&a.1).cmp(&f.of(&b.1)),
                    };
                    let ord = if *desc { ord.reverse() } else { ord };
                    if ord.is_ne() {
                        return ord;
                    }
                }
                std::cmp::Ordering::Equal
            });
        }
        if let Some(limit) = plan.limit {
            rows.truncate(limit.min(usize::MAX as u64) as usize);
        }
        rows.into_iter().map(|(i, _)| i).collect()
    }

    /// Moves `n` records now inside `plan`'s `SystemModstamp` bounds past the window's end.
    fn touch(&self, org: usize, plan: &Plan, n: u32) {
        let mut inner = self.lock();
        let table = self.table(org, plan.sobject);
        let (lo, hi) = plan.bounds;
        let mut inside: Vec<(i64, u32)> = (0..table.ids.len() as u32)
            .map(|i| (self.times(&inner, org, plan.sobject, i).modstamp, i))
            .filter(|(s, _)| (lo..hi).contains(&s.saturating_mul(1000)))
            .collect();
        inside.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| table.ids[a.1 as usize].cmp(&table.ids[b.1 as usize]))
        });
        if inside.is_empty() {
            return;
        }
        let n = (n as usize).min(inside.len());
        let after = if hi == i64::MAX {
            self.anchor.timestamp()
        } else {
            self.anchor.timestamp().max(hi.div_euclid(1000) + 1)
        };
        for k in 0..n {
            let (from, i) = inside[(2 * k + 1) * inside.len() / (2 * n)];
            inner.touches += 1;
            let to = after + 60 * inner.touches;
            inner.touched.insert((org, plan.sobject, i), to);
            let fmt = |s: i64| {
                DateTime::from_timestamp(s, 0)
                    .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default()
            };
            inner.moved.push(Moved {
                username: self.orgs[org].account.username.clone(),
                sobject: plan.sobject.name(),
                id: table.ids[i as usize].clone(),
                from: fmt(from),
                to: fmt(to),
            });
        }
    }
}

fn build_table(keys: &OrgKeys, s: SObject, anchor: DateTime<Utc>, history_days: u32) -> SfTable {
    let count = keys.counts.get(s);
    SfTable {
        audit: audit_times(keys.table_seed(s), count, anchor, history_days),
        ids: (0..count).map(|i| keys.record_id(s, i)).collect(),
    }
}

/// The exact dataset, for tests: every `(Id, SystemModstamp)` of `sobject` in the org of
/// `username` whose initial `SystemModstamp` is in `window`, sorted. Unknown → empty.
pub fn expected_salesforce(
    config: &SandboxConfig,
    username: &str,
    sobject: &str,
    window: &Window,
) -> Vec<(String, DateTime<Utc>)> {
    let (Some(account), Some(s)) = (
        config.salesforce.iter().find(|a| a.username == username),
        SObject::from_name(sobject),
    ) else {
        return Vec::new();
    };
    let keys = OrgKeys::new(&account.username, account.counts);
    let table = build_table(&keys, s, config.anchor, config.history_days);
    let mut out: Vec<_> = table
        .audit
        .modstamp
        .iter()
        .zip(table.ids)
        .filter_map(|(&stamp, id)| {
            let t = DateTime::from_timestamp(stamp, 0)?;
            window.contains(t).then_some((id, t))
        })
        .collect();
    out.sort();
    out
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

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Reply {
    let body = serde_json::json!({ "error": error, "error_description": description });
    Reply::refusal_json(status, JSON, &body).with_outcome(Outcome::Unauthorized)
}

/// `POST /services/oauth2/token`: password or refresh-token grant.
async fn token(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let reply = login(&shared, &parts.headers, &body);
    reply.finish(&shared).await
}

fn login(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Reply {
    let sf = &shared.salesforce;
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let fail = |error: &str, description: &str| {
        sf.stats.login_failures.fetch_add(1, Ordering::Relaxed);
        oauth_error(StatusCode::BAD_REQUEST, error, description)
    };
    let grant = get("grant_type");
    if grant != "password" && grant != "refresh_token" {
        return fail("unsupported_grant_type", "grant type not supported");
    }
    let Some(org) = sf
        .orgs
        .iter()
        .position(|o| o.account.client_id == get("client_id"))
    else {
        return fail("invalid_client_id", "client identifier invalid");
    };
    let account = &sf.orgs[org].account;
    if account.client_secret != get("client_secret") {
        return fail("invalid_client", "invalid client credentials");
    }
    let ok = match grant {
        "password" => {
            account.username == get("username")
                && account
                    .password
                    .as_deref()
                    .is_some_and(|p| p == get("password"))
        }
        _ => account
            .refresh_token
            .as_deref()
            .is_some_and(|t| t == get("refresh_token")),
    };
    if !ok {
        let description = if grant == "password" {
            "authentication failure"
        } else {
            "expired access/refresh token"
        };
        return fail("invalid_grant", description);
    }
    let keys = &sf.orgs[org].keys;
    let token = format!(
        "{}!AQ{:016x}{:016x}",
        &keys.org_id[..15],
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    sf.lock().tokens.insert(token.clone(), org);
    sf.stats.logins.fetch_add(1, Ordering::Relaxed);
    let instance = shared.base_url(headers);
    let issued = Utc::now().timestamp_millis().to_string();
    let signature = base64::engine::general_purpose::STANDARD
        .encode(format!("{}{issued}", rand::random::<u64>()));
    let body = serde_json::json!({
        "access_token": token,
        "instance_url": instance,
        "id": format!("{instance}/id/{}/{}", keys.org_id, keys.user_id(0)),
        "token_type": "Bearer",
        "issued_at": issued,
        "signature": signature,
    });
    json(serde_json::to_vec(&body).unwrap_or_default())
}

/// Everything under `/services/data/`.
async fn api(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let reply = handle(&shared, &parts.method, &parts.uri, &parts.headers, &body);
    reply.finish(&shared).await
}

fn valid_version(v: &str) -> bool {
    v.strip_prefix('v')
        .and_then(|n| n.split_once('.'))
        .is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth"))
        .then(|| token.trim())
}

fn handle(
    shared: &Shared,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let sf = &shared.salesforce;
    let Some(rest) = uri.path().strip_prefix("/services/data/") else {
        return not_found();
    };
    let (version, rest) = rest.split_once('/').unwrap_or((rest, ""));
    if !valid_version(version) {
        return not_found();
    }
    let token = bearer(headers).unwrap_or("").to_string();
    let Some(org) = sf.lock().tokens.get(&token).copied() else {
        return invalid_session();
    };
    let o = &sf.orgs[org];
    let limit = o.account.daily_api_limit;
    if let Err(secs) = sf.limits.check(&o.account.username) {
        let used = o.used.load(Ordering::Relaxed);
        return error(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
        )
        .with_outcome(Outcome::RateLimited)
        .header(header::RETRY_AFTER, secs)
        .header(LIMIT_INFO, format!("api-usage={used}/{limit}"));
    }
    let used = match o
        .used
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
            (u < limit).then_some(u + 1)
        }) {
        Ok(before) => before + 1,
        Err(used) => {
            return error(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            )
            .with_outcome(Outcome::RateLimited)
            .header(LIMIT_INFO, format!("api-usage={used}/{limit}"));
        }
    };
    let ctx = Ctx {
        shared,
        org,
        version,
        token: &token,
    };
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let reply = match (method, segments.as_slice()) {
        (&Method::GET, ["query" | "queryAll"]) => ctx.query(uri, headers),
        (&Method::GET, ["query" | "queryAll", locator]) => ctx.query_more(locator),
        (&Method::POST, ["jobs", "query"]) => ctx.create_job(body),
        (&Method::GET, ["jobs", "query", id]) => ctx.job_info(id),
        (&Method::GET, ["jobs", "query", id, "results"]) => ctx.results(id, uri),
        (_, ["query" | "queryAll"] | ["query" | "queryAll", _] | ["jobs", "query", ..]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            &format!("HTTP Method '{method}' not allowed. Allowed are GET,HEAD"),
        ),
        _ => not_found(),
    };
    reply.header(LIMIT_INFO, format!("api-usage={used}/{limit}"))
}

/// One authenticated request.
struct Ctx<'a> {
    shared: &'a Shared,
    org: usize,
    version: &'a str,
    token: &'a str,
}

fn query_param(uri: &axum::http::Uri, key: &str) -> Option<String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// `Sforce-Query-Options: batchSize=N`, clamped to 200..=2000 (default 2000).
fn batch_size(headers: &HeaderMap) -> usize {
    headers
        .get("Sforce-Query-Options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("batchSize"))
                .and_then(|(_, n)| n.trim().parse::<usize>().ok())
        })
        .unwrap_or(2000)
        .clamp(200, 2000)
}

/// The status and error array a `status` fault answers with.
fn fault_reply(action: &FaultAction) -> Reply {
    let status = action.status_code();
    match action.status {
        401 => invalid_session(),
        403 => error(
            status,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
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

impl Ctx<'_> {
    fn sf(&self) -> &SfState {
        &self.shared.salesforce
    }

    /// Applies the fault plan to a read of `plan`'s window: `Err` answers instead, `Ok(Some)`
    /// spoils the good answer.
    fn fault(&self, plan: &Plan) -> Result<Option<FaultAction>, Reply> {
        let answers = FaultAnswers {
            status: fault_reply,
            expire_token: || {
                self.sf().lock().tokens.remove(self.token);
                invalid_session()
            },
            touch: |n| self.sf().touch(self.org, plan, n),
        };
        planned_fault(
            self.shared,
            Service::Salesforce,
            plan.sobject.name(),
            plan.window_start,
            answers,
        )
    }

    fn page_seen(&self, key: String) {
        let key = format!("sf\n{}\n{key}", self.sf().orgs[self.org].account.username);
        self.shared.note_page(key);
    }

    fn query(&self, uri: &axum::http::Uri, headers: &HeaderMap) -> Reply {
        let sf = self.sf();
        sf.stats.queries.fetch_add(1, Ordering::Relaxed);
        let Some(text) = query_param(uri, "q").filter(|q| !q.trim().is_empty()) else {
            return bad_request("MALFORMED_QUERY", "A query string has to be specified");
        };
        let plan = match parse_plan(&text) {
            Ok(p) => Arc::new(p),
            Err(reply) => return reply,
        };
        let spoil = match self.fault(&plan) {
            Ok(s) => s,
            Err(reply) => return reply,
        };
        let batch = batch_size(headers);
        let mut inner = sf.lock();
        let rows = sf.evaluate(&inner, self.org, &plan);
        let total = rows.len();
        if plan.columns.is_none() {
            let body = format!("{{\"totalSize\":{total},\"done\":true,\"records\":[]}}");
            return json(body.into_bytes());
        }
        let rows = Arc::new(rows);
        let next = (total > batch).then(|| {
            let seq = SfState::next_seq(&mut inner);
            let id = data::make_id("01g", &sf.orgs[self.org].keys.pod, seq)[..15].to_string();
            inner.locators.insert(
                id.clone(),
                Locator {
                    org: self.org,
                    plan: plan.clone(),
                    rows: rows.clone(),
                    batch,
                },
            );
            inner.locator_order.push_back(id.clone());
            let mine: Vec<String> = inner
                .locator_order
                .iter()
                .filter(|l| inner.locators.get(*l).is_some_and(|l| l.org == self.org))
                .cloned()
                .collect();
            if mine.len() > MAX_LOCATORS {
                let oldest = &mine[0];
                inner.locators.remove(oldest);
                inner.locator_order.retain(|l| l != oldest);
            }
            format!("/services/data/{}/query/{id}-{batch}", self.version)
        });
        let body = self.render_page(&inner, &plan, &rows[..batch.min(total)], total, next);
        drop(inner);
        self.page_seen(format!("q\n{text}\n{batch}"));
        json(body).spoiled_by(spoil)
    }

    fn query_more(&self, locator: &str) -> Reply {
        let sf = self.sf();
        sf.stats.query_more.fetch_add(1, Ordering::Relaxed);
        let invalid = || bad_request("INVALID_QUERY_LOCATOR", "invalid query locator");
        let Some((id, offset)) = locator.rsplit_once('-') else {
            return invalid();
        };
        let Ok(offset) = offset.parse::<usize>() else {
            return invalid();
        };
        let (plan, rows, batch) = {
            let inner = sf.lock();
            match inner.locators.get(id).filter(|l| l.org == self.org) {
                Some(l) if offset <= l.rows.len() => (l.plan.clone(), l.rows.clone(), l.batch),
                _ => return invalid(),
            }
        };
        let spoil = match self.fault(&plan) {
            Ok(s) => s,
            Err(reply) => return reply,
        };
        let end = (offset + batch).min(rows.len());
        let next =
            (end < rows.len()).then(|| format!("/services/data/{}/query/{id}-{end}", self.version));
        let body = {
            let inner = sf.lock();
            self.render_page(&inner, &plan, &rows[offset..end], rows.len(), next)
        };
        self.page_seen(format!("more\n{id}\n{offset}"));
        json(body).spoiled_by(spoil)
    }

    /// `{"totalSize":..,"done":..,"nextRecordsUrl":..,"records":[..]}` with current values.
    fn render_page(
        &self,
        inner: &Inner,
        plan: &Plan,
        rows: &[u32],
        total: usize,
        next: Option<String>,
    ) -> Vec<u8> {
        let sf = self.sf();
        let columns = plan.columns.as_deref().unwrap_or(&[]);
        let mut out = Vec::with_capacity(64 + rows.len() * 90 * (columns.len() + 2));
        out.extend_from_slice(
            format!("{{\"totalSize\":{total},\"done\":{}", next.is_none()).as_bytes(),
        );
        if let Some(next) = &next {
            out.extend_from_slice(b",\"nextRecordsUrl\":");
            crate::sandbox::json::string(&mut out, next);
        }
        out.extend_from_slice(b",\"records\":[");
        let r = Renderer {
            keys: &sf.orgs[self.org].keys,
            sobject: plan.sobject,
        };
        for (n, &i) in rows.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            let t = sf.times(inner, self.org, plan.sobject, i);
            self.render_record(&r, i, t, columns, &mut out);
        }
        out.extend_from_slice(b"]}");
        out
    }

    fn render_record(&self, r: &Renderer, i: u32, t: Times, columns: &[Column], out: &mut Vec<u8>) {
        let attributes = |out: &mut Vec<u8>, ty: &str, id: &str| {
            out.extend_from_slice(b"\"attributes\":{\"type\":\"");
            out.extend_from_slice(ty.as_bytes());
            out.extend_from_slice(b"\",\"url\":\"/services/data/");
            out.extend_from_slice(self.version.as_bytes());
            out.extend_from_slice(b"/sobjects/");
            out.extend_from_slice(ty.as_bytes());
            out.push(b'/');
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(b"\"}");
        };
        let id = self.sf().table(self.org, r.sobject).ids[i as usize].as_str();
        out.push(b'{');
        attributes(out, r.sobject.name(), id);
        let mut owner_done = false;
        for col in columns {
            match col {
                Column::Field(f) => {
                    out.extend_from_slice(b",\"");
                    out.extend_from_slice(f.as_bytes());
                    out.extend_from_slice(b"\":");
                    r.value(u64::from(i), f, t).write_json(out);
                }
                Column::Owner(_) if owner_done => {}
                Column::Owner(_) => {
                    owner_done = true;
                    let user = r.keys.user_id(r.owner(u64::from(i)));
                    out.extend_from_slice(b",\"Owner\":{");
                    attributes(out, "User", &user);
                    for c in columns {
                        if let Column::Owner(f) = c {
                            out.extend_from_slice(b",\"");
                            out.extend_from_slice(f.as_bytes());
                            out.extend_from_slice(b"\":");
                            r.owner_value(u64::from(i), f).write_json(out);
                        }
                    }
                    out.push(b'}');
                }
            }
        }
        out.push(b'}');
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
        .map(|o| {
            (
                o.account.username.clone(),
                o.used.load(Ordering::Relaxed).into(),
            )
        })
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
