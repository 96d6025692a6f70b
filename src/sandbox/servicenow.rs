//! The ServiceNow Table API surface of the sandbox (`SOURCE_APIS.md` §2).
//!
//! - `GET /api/now/table/{table}` (and `/api/now/v2/table/{table}`): `sysparm_query` (see
//!   `query.rs`), `sysparm_limit` (default 10000), `sysparm_offset`, `sysparm_fields`,
//!   `sysparm_display_value`, `sysparm_exclude_reference_link`,
//!   `sysparm_suppress_pagination_header`, `sysparm_no_count`; answers `{"result":[...]}`
//!   with `X-Total-Count` and a `Link` header (`<url>;rel="next"`, no space after `;`).
//!   `GET /api/now/table/{table}/{sys_id}` answers one record.
//! - Auth: Basic `username:password`, or `Bearer` tokens from `POST /oauth_token.do`
//!   (`grant_type` `password`, `refresh_token` or `client_credentials`). Tokens are random,
//!   expire after the account's `token_ttl_secs` (default 1800 s).
//! - Errors use `{"error":{"message","detail"},"status":"failure"}`; 429 comes with
//!   `Retry-After` and `X-RateLimit-Limit` / `-Reset` / `-Rule` (these also come on every
//!   answer to an account while a rate limit is configured).
//! - Records live in memory per (account, table), sorted by (`sys_updated_on`, `sys_id`),
//!   built on first use. `touch_records` faults move records out of the window being read;
//!   `GET /_sandbox/servicenow/moved` lists what moved, `GET /_sandbox/servicenow/stats`
//!   counts issued tokens and moves.

mod data;
mod query;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use chrono::{DateTime, Utc};

use super::http::{FaultAnswers, Reply, link_with, planned_fault};
use super::{CredFields, FaultAction, Outcome, RateLimits, SandboxConfig, Shared, lock};
use crate::domain::{Service, Window};
pub use data::SnCounts;
use data::{Display, Gen, Rec, RenderOpts, SnTable, hex32, render};
use query::{EncodedQuery, SortKey};

/// Default `sysparm_limit`.
const DEFAULT_LIMIT: usize = 10_000;
/// Default OAuth access-token lifetime.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 1800;
/// `X-RateLimit-Rule`: the sys_id of the (one) sandbox rate-limit rule.
const RATE_RULE: &str = "5f3a9c1e1b2d4e0f8a7b6c5d4e3f2a1b";

/// One ServiceNow user the sandbox accepts, with the size of its instance's tables.
///
/// The username identifies the account: each one sees its own deterministic records.
#[derive(Clone)]
pub struct SnAccount {
    pub tenant_id: String,
    pub username: String,
    pub password: String,
    /// OAuth client for `oauth_token.do`; `None`: Basic auth only.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub counts: SnCounts,
    /// Lifetime of issued access tokens.
    pub token_ttl_secs: u64,
}

impl fmt::Debug for SnAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnAccount")
            .field("tenant_id", &self.tenant_id)
            .field("username", &self.username)
            .field("password", &"***")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("counts", &self.counts)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .finish()
    }
}

impl SnCounts {
    /// Sizes derived from the ConnectWise-shaped demo counts: tickets → incident, time
    /// entries → change_request, companies → problem, contacts → sys_user.
    pub fn from_table_counts(c: super::TableCounts) -> SnCounts {
        SnCounts {
            incident: c.tickets,
            change_request: c.time_entries,
            problem: c.companies,
            sys_user: c.contacts,
        }
    }
}

impl SnAccount {
    /// A Basic-auth account.
    pub fn new(tenant_id: &str, username: &str, password: &str, counts: SnCounts) -> Self {
        SnAccount {
            tenant_id: tenant_id.to_string(),
            username: username.to_string(),
            password: password.to_string(),
            client_id: None,
            client_secret: None,
            counts,
            token_ttl_secs: DEFAULT_TOKEN_TTL_SECS,
        }
    }

    /// The same account, also reachable through an OAuth client.
    pub fn with_oauth(mut self, client_id: &str, client_secret: &str) -> Self {
        self.client_id = Some(client_id.to_string());
        self.client_secret = Some(client_secret.to_string());
        self
    }

    /// The account the sandbox serves for a tenant whose registry entry points at it:
    /// `username` and `password`, plus `client_id` and `client_secret` for OAuth.
    pub fn from_credentials(
        tenant_id: &str,
        creds: &crate::config::Credentials,
        counts: super::TableCounts,
    ) -> Result<Self, String> {
        let fields = CredFields(creds);
        let account = SnAccount::new(
            tenant_id,
            &fields.required("username")?,
            &fields.required("password")?,
            SnCounts::from_table_counts(counts),
        );
        match (
            fields.optional("client_id"),
            fields.optional("client_secret"),
        ) {
            (None, None) => Ok(account),
            (Some(id), Some(secret)) => Ok(account.with_oauth(&id, &secret)),
            (Some(_), None) => Err("credential field 'client_secret' is missing or empty".into()),
            (None, Some(_)) => Err("credential field 'client_id' is missing or empty".into()),
        }
    }
}

/// One table of one account: its generator and its records, sorted by
/// (`sys_updated_on`, `sys_id`).
pub(crate) struct TableData {
    pub(crate) generator: Gen,
    pub(crate) recs: Vec<Rec>,
}

struct AccountData {
    account: SnAccount,
    tables: [OnceLock<RwLock<TableData>>; 4],
}

struct Token {
    account: usize,
    expires: Instant,
}

/// A record a `touch_records` fault moved out of its window.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Moved {
    pub username: String,
    pub table: String,
    pub sys_id: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Per-sandbox ServiceNow state.
pub(crate) struct SnState {
    anchor: DateTime<Utc>,
    history_days: u32,
    accounts: Vec<AccountData>,
    limits: RateLimits,
    per_hour: Option<u64>,
    tokens: Mutex<HashMap<String, Token>>,
    refresh_tokens: Mutex<HashMap<String, usize>>,
    moved: Mutex<Vec<Moved>>,
    move_seq: AtomicI64,
    tokens_issued: AtomicU64,
}

impl SnState {
    pub(crate) fn new(
        accounts: &[SnAccount],
        anchor: DateTime<Utc>,
        history_days: u32,
        rate_limit_per_minute: Option<u32>,
    ) -> std::io::Result<Self> {
        let limits = RateLimits::new(
            rate_limit_per_minute,
            accounts.iter().map(|a| a.username.as_str()),
        )?;
        Ok(SnState {
            anchor,
            history_days,
            accounts: accounts
                .iter()
                .map(|a| AccountData {
                    account: a.clone(),
                    tables: Default::default(),
                })
                .collect(),
            limits,
            per_hour: rate_limit_per_minute.map(|n| u64::from(n) * 60),
            tokens: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
            moved: Mutex::new(Vec::new()),
            move_seq: AtomicI64::new(0),
            tokens_issued: AtomicU64::new(0),
        })
    }

    fn table(&self, account: usize, table: SnTable) -> &RwLock<TableData> {
        let acc = &self.accounts[account];
        acc.tables[table.index()].get_or_init(|| {
            let generator = Gen::new(
                self.anchor,
                self.history_days,
                &acc.account.username,
                acc.account.counts,
                table,
            );
            let recs = generator.build();
            RwLock::new(TableData { generator, recs })
        })
    }

    /// The account a request's `Authorization` header signs in as, and its bearer token.
    fn authenticate(&self, headers: &HeaderMap) -> Result<(usize, Option<String>), ()> {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(())?;
        let (scheme, rest) = auth.split_once(' ').ok_or(())?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(())?;
            let (user, pass) = decoded.split_once(':').ok_or(())?;
            let idx = self
                .accounts
                .iter()
                .position(|a| a.account.username == user && a.account.password == pass)
                .ok_or(())?;
            Ok((idx, None))
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let mut tokens = lock(&self.tokens);
            let account = match tokens.get(rest) {
                Some(t) if t.expires > Instant::now() => t.account,
                Some(_) => {
                    tokens.remove(rest);
                    return Err(());
                }
                None => return Err(()),
            };
            Ok((account, Some(rest.to_string())))
        } else {
            Err(())
        }
    }

    fn issue_token(&self, account: usize) -> serde_json::Value {
        let token = random_hex();
        let refresh = random_hex();
        let ttl = self.accounts[account].account.token_ttl_secs;
        lock(&self.tokens).insert(
            token.clone(),
            Token {
                account,
                expires: Instant::now() + Duration::from_secs(ttl),
            },
        );
        lock(&self.refresh_tokens).insert(refresh.clone(), account);
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
        serde_json::json!({
            "access_token": token,
            "refresh_token": refresh,
            "scope": "useraccount",
            "token_type": "Bearer",
            "expires_in": ttl,
        })
    }

    fn revoke(&self, token: &str) {
        lock(&self.tokens).remove(token);
    }

    /// The records of `q` in its order, and how many match in all.
    fn select(
        &self,
        data: &TableData,
        q: &EncodedQuery,
        offset: usize,
        limit: usize,
    ) -> (Vec<Rec>, usize) {
        let rows = matching(data, q);
        let total = rows.len();
        let page = rows.into_iter().skip(offset).take(limit).collect();
        (page, total)
    }

    /// Moves `n` records of the window `q` reads to new update times after the anchor: about
    /// two thirds from the part not yet read (from the keyset position or `offset` on),
    /// the rest from what was already read.
    pub(crate) fn touch(
        &self,
        account: usize,
        table: SnTable,
        q: &EncodedQuery,
        offset: usize,
        n: u32,
    ) -> Vec<Moved> {
        let mut data = self
            .table(account, table)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let (lo, hi) = q.window();
        let (lo, hi) = (lo.unwrap_or(i64::MIN), hi.unwrap_or(i64::MAX));
        let unread: Vec<Rec> = matching(&data, q).into_iter().skip(offset).collect();
        let unread_ids: std::collections::HashSet<u128> = unread.iter().map(|r| r.sys_id).collect();
        let read: Vec<Rec> = in_range(&data.recs, lo, hi)
            .iter()
            .filter(|r| !unread_ids.contains(&r.sys_id))
            .copied()
            .collect();
        let n = n as usize;
        let from_read = (n / 3).min(read.len());
        let from_unread = (n - from_read).min(unread.len());
        let from_read = (n - from_unread).min(read.len());
        let mut picked = spread(&unread, from_unread);
        picked.extend(spread(&read, from_read));
        let username = self.accounts[account].account.username.clone();
        let mut moved = Vec::with_capacity(picked.len());
        for rec in picked {
            let Ok(pos) = data.recs.binary_search_by_key(&rec.key(), Rec::key) else {
                continue;
            };
            let mut r = data.recs.remove(pos);
            let seq = self.move_seq.fetch_add(1, Ordering::Relaxed);
            let from = r.updated;
            r.updated = self.anchor.timestamp() + 3600 + seq;
            r.mod_count += 1;
            let at = data.recs.partition_point(|x| x.key() < r.key());
            data.recs.insert(at, r);
            moved.push(Moved {
                username: username.clone(),
                table: table.name().to_string(),
                sys_id: hex32(r.sys_id),
                from: DateTime::from_timestamp(from, 0).unwrap_or_default(),
                to: DateTime::from_timestamp(r.updated, 0).unwrap_or_default(),
            });
        }
        lock(&self.moved).extend(moved.iter().cloned());
        moved
    }

    fn rate_headers(&self, reset: i64) -> Vec<(HeaderName, String)> {
        match self.per_hour {
            Some(limit) => vec![
                (
                    HeaderName::from_static("x-ratelimit-limit"),
                    limit.to_string(),
                ),
                (
                    HeaderName::from_static("x-ratelimit-reset"),
                    reset.to_string(),
                ),
                (
                    HeaderName::from_static("x-ratelimit-rule"),
                    RATE_RULE.to_string(),
                ),
            ],
            None => Vec::new(),
        }
    }
}

fn random_hex() -> String {
    let (a, b): (u128, u128) = (rand::random(), rand::random());
    format!("{a:032x}{b:032x}")
}

/// `n` records spread evenly over `recs`.
fn spread(recs: &[Rec], n: usize) -> Vec<Rec> {
    if n == 0 || recs.is_empty() {
        return Vec::new();
    }
    (0..n).map(|k| recs[k * recs.len() / n]).collect()
}

fn in_range(recs: &[Rec], lo: i64, hi: i64) -> &[Rec] {
    if lo >= hi {
        return &[];
    }
    let from = recs.partition_point(|r| r.updated < lo);
    let to = recs.partition_point(|r| r.updated < hi);
    &recs[from..to.max(from)]
}

/// Every record matching `q`, in the order it asks for (creation order when it asks none).
fn matching(data: &TableData, q: &EncodedQuery) -> Vec<Rec> {
    let (lo, hi) = q.updated_range();
    let g = &data.generator;
    let mut rows: Vec<Rec> = in_range(&data.recs, lo, hi)
        .iter()
        .filter(|r| q.matches_with(r, |r| g.created(u64::from(r.i))))
        .copied()
        .collect();
    if !q.is_storage_order() {
        rows.sort_by_key(|r| r.i);
        if !q.order.is_empty() {
            rows.sort_by(|a, b| {
                for &(key, desc) in &q.order {
                    let o = match key {
                        SortKey::Updated => a.updated.cmp(&b.updated),
                        SortKey::Created => {
                            g.created(u64::from(a.i)).cmp(&g.created(u64::from(b.i)))
                        }
                        SortKey::SysId => a.sys_id.cmp(&b.sys_id),
                        SortKey::Number => a.i.cmp(&b.i),
                    };
                    let o = if desc { o.reverse() } else { o };
                    if o.is_ne() {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
        }
    }
    rows
}

/// The exact initial dataset, for tests: every `(sys_id, sys_updated_on)` of `table` (API
/// name `incident` or table name `incidents`) of the account `username` whose update time is
/// in `window`, sorted by `sys_id`. Unknown account or table → empty. Records moved by
/// `touch_records` faults are listed by `GET /_sandbox/servicenow/moved`.
pub fn expected_servicenow(
    config: &SandboxConfig,
    username: &str,
    table: &str,
    window: &Window,
) -> Vec<(String, DateTime<Utc>)> {
    let (Some(account), Some(table)) = (
        config.servicenow.iter().find(|a| a.username == username),
        SnTable::from_name(table),
    ) else {
        return Vec::new();
    };
    let g = Gen::new(
        config.anchor,
        config.history_days,
        username,
        account.counts,
        table,
    );
    let mut rows: Vec<(String, DateTime<Utc>)> = (0..g.count())
        .filter_map(|i| {
            let at = DateTime::from_timestamp(g.updated(i), 0)?;
            window
                .contains(at)
                .then(|| (hex32(g.sys_id_of(table, i)), at))
        })
        .collect();
    rows.sort();
    rows
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/now/table/{table}", get(list))
        .route("/api/now/v2/table/{table}", get(list))
        .route("/api/now/table/{table}/{sys_id}", get(one))
        .route("/api/now/v2/table/{table}/{sys_id}", get(one))
        .route("/oauth_token.do", post(oauth_token))
        .route("/_sandbox/servicenow/moved", get(moved_handler))
        .route("/_sandbox/servicenow/stats", get(stats_handler))
}

/// The Table API answers JSON in this content type, errors included.
const CONTENT_TYPE: &str = "application/json;charset=UTF-8";

/// `{"error":{"message":..,"detail":..},"status":"failure"}`.
fn envelope(message: &str, detail: Option<&str>) -> Vec<u8> {
    let body = serde_json::json!({
        "error": { "message": message, "detail": detail },
        "status": "failure",
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

fn ok(body: Vec<u8>) -> Reply {
    Reply::ok(CONTENT_TYPE, body)
}

fn error(status: StatusCode, outcome: Outcome, message: &str, detail: Option<&str>) -> Reply {
    Reply::refusal(status, CONTENT_TYPE, envelope(message, detail)).with_outcome(outcome)
}

fn unauthenticated(outcome: Outcome) -> Reply {
    error(
        StatusCode::UNAUTHORIZED,
        outcome,
        "User is not authenticated",
        Some("Required to provide Auth information"),
    )
}

/// The query parameters of a table request.
struct Params {
    query: String,
    limit: usize,
    offset: usize,
    render: RenderOpts,
    suppress_pagination: bool,
    no_count: bool,
}

impl Params {
    fn parse(raw: &str, instance: &str) -> Params {
        let mut p = Params {
            query: String::new(),
            limit: DEFAULT_LIMIT,
            offset: 0,
            render: RenderOpts::default(),
            suppress_pagination: false,
            no_count: false,
        };
        let mut exclude_links = false;
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let flag = || value.trim().eq_ignore_ascii_case("true");
            match key.as_ref() {
                "sysparm_query" => p.query = value.to_string(),
                "sysparm_limit" => {
                    if let Ok(n) = value.trim().parse::<usize>()
                        && n > 0
                    {
                        p.limit = n;
                    }
                }
                "sysparm_offset" => p.offset = value.trim().parse().unwrap_or(0),
                "sysparm_fields" => {
                    let fields: Vec<String> = value
                        .split(',')
                        .map(|f| f.trim().to_string())
                        .filter(|f| !f.is_empty())
                        .collect();
                    if !fields.is_empty() {
                        p.render.fields = Some(fields);
                    }
                }
                "sysparm_display_value" => {
                    p.render.display = match value.trim().to_ascii_lowercase().as_str() {
                        "true" => Display::True,
                        "all" => Display::All,
                        _ => Display::False,
                    }
                }
                "sysparm_exclude_reference_link" => exclude_links = flag(),
                "sysparm_suppress_pagination_header" => p.suppress_pagination = flag(),
                "sysparm_no_count" => p.no_count = flag(),
                _ => {}
            }
        }
        if !exclude_links {
            p.render.links = Some(instance.to_string());
        }
        p
    }
}

/// `base?raw_query` with `sysparm_offset` set to `offset`, other parameters kept as sent.
fn offset_link(base: &str, raw_query: &str, offset: usize) -> String {
    link_with(
        base,
        raw_query,
        |k| k == "sysparm_offset",
        "sysparm_offset",
        offset,
    )
}

/// `Link` for an offset page: first, prev (not on the first page), next (not on the last),
/// last; `;rel=` without a space, as ServiceNow sends it.
fn link_header(base: &str, raw_query: &str, offset: usize, limit: usize, total: usize) -> String {
    let last = if total == 0 {
        0
    } else {
        (total - 1) / limit * limit
    };
    let mut parts = vec![format!(
        "<{}>;rel=\"first\"",
        offset_link(base, raw_query, 0)
    )];
    if offset > 0 {
        let prev = offset.saturating_sub(limit);
        parts.push(format!(
            "<{}>;rel=\"prev\"",
            offset_link(base, raw_query, prev)
        ));
    }
    if offset + limit < total {
        let next = offset + limit;
        parts.push(format!(
            "<{}>;rel=\"next\"",
            offset_link(base, raw_query, next)
        ));
    }
    parts.push(format!(
        "<{}>;rel=\"last\"",
        offset_link(base, raw_query, last)
    ));
    parts.join(",")
}

/// Sign-in and rate limit, shared by the table routes.
fn admit(shared: &Shared, headers: &HeaderMap) -> Result<(usize, Option<String>), Reply> {
    let sn = &shared.servicenow;
    let (account, token) = sn
        .authenticate(headers)
        .map_err(|()| unauthenticated(Outcome::Unauthorized))?;
    if let Err(secs) = sn.limits.check(&sn.accounts[account].account.username) {
        let reset = Utc::now().timestamp() + secs as i64;
        return Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            Outcome::RateLimited,
            "Rate limit exceeded",
            Some("Too many requests: the rate limit rule for this user was exceeded"),
        )
        .header(header::RETRY_AFTER, secs)
        .headers(sn.rate_headers(reset)));
    }
    Ok((account, token))
}

fn unknown_table(name: &str) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        Outcome::Other,
        &format!("Invalid table {name}"),
        None,
    )
}

/// The reset time sent with good answers: the end of the current hour.
fn hour_reset() -> i64 {
    let now = Utc::now().timestamp();
    (now.div_euclid(3600) + 1) * 3600
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Path(table): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let reply = handle_list(&shared, &table, &headers, &uri);
    reply.finish(&shared).await
}

fn handle_list(shared: &Shared, table_name: &str, headers: &HeaderMap, uri: &Uri) -> Reply {
    let sn = &shared.servicenow;
    let (account, token) = match admit(shared, headers) {
        Ok(a) => a,
        Err(reply) => return reply,
    };
    let Some(table) = SnTable::ALL.into_iter().find(|t| t.name() == table_name) else {
        return unknown_table(table_name);
    };
    let raw_query = uri.query().unwrap_or("");
    let instance = shared.base_url(headers);
    let params = Params::parse(raw_query, &instance);
    let q = EncodedQuery::parse(&params.query);
    let answers = FaultAnswers {
        status: |action: &FaultAction| {
            let reply = error(
                action.status_code(),
                Outcome::Fault,
                &action.message,
                Some("Injected by the sandbox"),
            );
            if action.status == 429 {
                let reset = Utc::now().timestamp() + action.retry_after_secs as i64;
                reply
                    .header(header::RETRY_AFTER, action.retry_after_secs)
                    .headers(sn.rate_headers(reset))
            } else {
                reply
            }
        },
        expire_token: || {
            if let Some(token) = &token {
                sn.revoke(token);
            }
            unauthenticated(Outcome::Fault)
        },
        touch: |n| {
            sn.touch(account, table, &q, params.offset, n);
        },
    };
    let spoil = match planned_fault(
        shared,
        Service::Servicenow,
        table.name(),
        q.window().0,
        answers,
    ) {
        Ok(spoil) => spoil,
        Err(reply) => return reply,
    };
    let data = sn
        .table(account, table)
        .read()
        .unwrap_or_else(|e| e.into_inner());
    let (rows, total) = sn.select(&data, &q, params.offset, params.limit);
    let mut body = Vec::with_capacity(rows.len() * table.approx_record_bytes() + 16);
    body.extend_from_slice(b"{\"result\":[");
    for (n, rec) in rows.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        render(&data.generator, rec, &params.render, &mut body);
    }
    body.extend_from_slice(b"]}");
    drop(data);
    let username = &sn.accounts[account].account.username;
    let key = format!(
        "sn\n{username}\n{}\n{}\n{}\n{}\n{:?}",
        table.name(),
        params.query,
        params.offset,
        params.limit,
        params.render.fields
    );
    shared.note_page(key);
    let mut reply = ok(body);
    if !params.no_count {
        reply = reply.header(HeaderName::from_static("x-total-count"), total.to_string());
    }
    if !params.suppress_pagination {
        let base = format!("{instance}{}", uri.path());
        let link = link_header(&base, raw_query, params.offset, params.limit, total);
        reply = reply.header(header::LINK, link);
    }
    reply
        .headers(sn.rate_headers(hour_reset()))
        .spoiled_by(spoil)
}

async fn one(
    State(shared): State<Arc<Shared>>,
    Path((table_name, sys_id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let reply = (|| {
        let sn = &shared.servicenow;
        let (account, _) = match admit(&shared, &headers) {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        let Some(table) = SnTable::ALL.into_iter().find(|t| t.name() == table_name) else {
            return unknown_table(&table_name);
        };
        let params = Params::parse(uri.query().unwrap_or(""), &shared.base_url(&headers));
        let data = sn
            .table(account, table)
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let Some(rec) = data.recs.iter().find(|r| hex32(r.sys_id) == sys_id) else {
            return error(
                StatusCode::NOT_FOUND,
                Outcome::Other,
                "No Record found",
                Some("Record doesn't exist or ACL restricts the record retrieval"),
            );
        };
        let mut body = b"{\"result\":".to_vec();
        render(&data.generator, rec, &params.render, &mut body);
        body.push(b'}');
        ok(body).headers(sn.rate_headers(hour_reset()))
    })();
    reply.finish(&shared).await
}

/// `POST /oauth_token.do` with a form body.
async fn oauth_token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let sn = &shared.servicenow;
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let client_ok = |a: &SnAccount| {
        a.client_id.as_deref() == Some(get("client_id"))
            && a.client_secret.as_deref() == Some(get("client_secret"))
    };
    let account = match get("grant_type") {
        "password" => sn.accounts.iter().position(|a| {
            let a = &a.account;
            client_ok(a) && a.username == get("username") && a.password == get("password")
        }),
        "client_credentials" => sn.accounts.iter().position(|a| client_ok(&a.account)),
        "refresh_token" => lock(&sn.refresh_tokens)
            .get(get("refresh_token"))
            .copied()
            .filter(|&i| client_ok(&sn.accounts[i].account)),
        other => {
            let body = serde_json::json!({
                "error": "unsupported_grant_type",
                "error_description": format!("grant_type '{other}' is not supported"),
            });
            let reply = Reply::refusal_json(StatusCode::BAD_REQUEST, CONTENT_TYPE, &body);
            return reply.finish(&shared).await;
        }
    };
    let reply = match account {
        Some(i) => ok(serde_json::to_vec(&sn.issue_token(i)).unwrap_or_default()),
        // What an instance answers to wrong OAuth credentials.
        None => Reply::refusal(
            StatusCode::UNAUTHORIZED,
            CONTENT_TYPE,
            br#"{"error_description":"access_denied","error":"server_error"}"#.to_vec(),
        )
        .with_outcome(Outcome::Unauthorized),
    };
    reply.finish(&shared).await
}

async fn moved_handler(State(shared): State<Arc<Shared>>) -> Response {
    let moved = lock(&shared.servicenow.moved).clone();
    ok(serde_json::to_vec(&moved).unwrap_or_default()).into_response()
}

async fn stats_handler(State(shared): State<Arc<Shared>>) -> Response {
    let sn = &shared.servicenow;
    let body = serde_json::json!({
        "tokens_issued": sn.tokens_issued.load(Ordering::Relaxed),
        "moved": lock(&sn.moved).len(),
    });
    ok(serde_json::to_vec(&body).unwrap_or_default()).into_response()
}
