//! The ServiceNow Table API surface of the sandbox (`SOURCE_APIS.md` §2).
//!
//! - `GET /api/now/table/{table}` (and `/api/now/v2/table/{table}`): `sysparm_query` (see
//!   `query.rs`), `sysparm_limit` (default 10000), `sysparm_offset`, `sysparm_fields`,
//!   `sysparm_display_value`, `sysparm_exclude_reference_link`,
//!   `sysparm_suppress_pagination_header`, `sysparm_no_count`; answers `{"result":[...]}`
//!   with `X-Total-Count` and a `Link` header (`<url>;rel="next"`, no space after `;`).
//!   `GET /api/now/table/{table}/{sys_id}` answers one record. `GET /api/now/stats/{table}`
//!   with `sysparm_count=true` counts what `sysparm_query` selects (the Aggregate API).
//! - Auth: Basic `username:password`, or `Bearer` tokens from `POST /oauth_token.do`
//!   (`grant_type` `password`, `refresh_token` or `client_credentials`; the last answers no
//!   refresh token). Tokens are random, expire after the account's `token_ttl_secs`
//!   (default 1800 s). An account without a password takes neither Basic auth nor the
//!   password grant.
//! - Errors use `{"error":{"message","detail"},"status":"failure"}`; 429 comes with
//!   `Retry-After` and `X-RateLimit-Limit` / `-Reset` / `-Rule` (these also come on every
//!   answer to an account while a rate limit is configured).
//! - Records live in memory per (account, table), sorted by (`sys_updated_on`, `sys_id`),
//!   built on first use. `touch_records` faults move records out of the window being read;
//!   `GET /_sandbox/servicenow/moved` lists what moved, `GET /_sandbox/servicenow/stats`
//!   counts issued tokens and moves.

mod auth;
mod data;
mod query;
mod records;
mod table_api;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};

use super::http::Reply;
use super::{Outcome, SandboxConfig, Shared, lock};
use crate::config::{Grant, MissingCredential};
use crate::secret::Secret;
use auth::oauth_token;
pub use data::SnCounts;
use data::{Gen, Rec};
pub use records::expected_servicenow;
use table_api::{list, one};

/// Default `sysparm_limit`.
const DEFAULT_LIMIT: usize = 10_000;
/// Default OAuth access-token lifetime.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 1800;
/// `X-RateLimit-Rule`: the sys_id of the (one) sandbox rate-limit rule.
const RATE_RULE: &str = "5f3a9c1e1b2d4e0f8a7b6c5d4e3f2a1b";

/// One ServiceNow user the sandbox accepts, with the size of its instance's tables.
///
/// The username identifies the account: each one sees its own deterministic records.
#[derive(Clone, Debug)]
pub struct SnAccount {
    pub tenant_id: String,
    pub username: String,
    pub password: Secret,
    /// OAuth client for `oauth_token.do`; `None`: Basic auth only.
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub counts: SnCounts,
    /// Lifetime of issued access tokens.
    pub token_ttl_secs: u64,
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
            password: Secret::new(password),
            client_id: None,
            client_secret: None,
            counts,
            token_ttl_secs: DEFAULT_TOKEN_TTL_SECS,
        }
    }

    /// The same account, also reachable through an OAuth client.
    pub fn with_oauth(mut self, client_id: &str, client_secret: &str) -> Self {
        self.client_id = Some(client_id.to_string());
        self.client_secret = Some(Secret::new(client_secret));
        self
    }

    /// The account the sandbox serves for a tenant whose registry entry points at it:
    /// `username` and `password`, plus `client_id` and `client_secret` for OAuth; or only
    /// `client_id` and `client_secret` (client credentials), when the client id names the
    /// account (its records, its rate limit) and Basic auth and the password grant are off.
    pub fn from_credentials(
        tenant_id: &str,
        creds: &crate::config::Credentials,
        counts: super::TableCounts,
    ) -> Result<Self, MissingCredential> {
        let counts = SnCounts::from_table_counts(counts);
        let grant = Grant::servicenow(creds)?;
        let oauth = |a: SnAccount| -> Result<SnAccount, MissingCredential> {
            Ok(a.with_oauth(&creds.field("client_id")?, &creds.field("client_secret")?))
        };
        match grant {
            Grant::ClientCredentials => oauth(SnAccount::new(
                tenant_id,
                &creds.field("client_id")?,
                "",
                counts,
            )),
            _ => {
                let (user, password) = (creds.field("username")?, creds.field("password")?);
                let account = SnAccount::new(tenant_id, &user, &password, counts);
                match grant {
                    Grant::Basic => Ok(account),
                    _ => oauth(account),
                }
            }
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

/// A record a `touch_records` fault moved out of its window, or a `delete_records` fault
/// deleted (`deleted`; `to` is then `from`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Moved {
    pub username: String,
    pub table: String,
    pub sys_id: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    #[serde(default)]
    pub deleted: bool,
}

/// Per-sandbox ServiceNow state.
pub(crate) struct SnState {
    anchor: DateTime<Utc>,
    history_days: u32,
    accounts: Vec<AccountData>,
    per_hour: Option<u64>,
    tokens: Mutex<HashMap<String, Token>>,
    refresh_tokens: Mutex<HashMap<String, usize>>,
    moved: Mutex<Vec<Moved>>,
    move_seq: AtomicI64,
    tokens_issued: AtomicU64,
}

impl SnState {
    /// The instances of `config.servicenow` (the sandbox's gate limits each per username).
    pub(crate) fn new(config: &SandboxConfig) -> std::io::Result<Self> {
        let accounts = &config.servicenow;
        let rate_limit_per_minute = config.rate_limit_per_minute;
        Ok(SnState {
            anchor: config.anchor,
            history_days: config.history_days,
            accounts: accounts
                .iter()
                .map(|a| AccountData {
                    account: a.clone(),
                    tables: Default::default(),
                })
                .collect(),
            per_hour: rate_limit_per_minute.map(|n| u64::from(n) * 60),
            tokens: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
            moved: Mutex::new(Vec::new()),
            move_seq: AtomicI64::new(0),
            tokens_issued: AtomicU64::new(0),
        })
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/now/table/{table}", get(list))
        .route("/api/now/v2/table/{table}", get(list))
        .route("/api/now/table/{table}/{sys_id}", get(one))
        .route("/api/now/v2/table/{table}/{sys_id}", get(one))
        .route("/api/now/stats/{table}", get(table_api::stats))
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
