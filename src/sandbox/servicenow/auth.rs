//! Signing in to the ServiceNow simulator: Basic credentials, OAuth tokens from
//! `POST /oauth_token.do`, and the per-account rate limit with its `X-RateLimit-*` headers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::Response;
use chrono::Utc;

use super::{CONTENT_TYPE, RATE_RULE, SnAccount, SnState, Token, error, ok, unauthenticated};
use crate::domain::Service;
use crate::sandbox::http::{Reply, decode_basic};
use crate::sandbox::{Outcome, Shared, Slot, lock};
use crate::secret::Secret;

impl SnState {
    /// The account a request's `Authorization` header signs in as, and its bearer token.
    pub(super) fn authenticate(&self, headers: &HeaderMap) -> Result<(usize, Option<String>), ()> {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(())?;
        let (scheme, rest) = auth.split_once(' ').ok_or(())?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = decode_basic(rest).ok_or(())?;
            let (user, pass) = decoded.split_once(':').ok_or(())?;
            let idx = self
                .accounts
                .iter()
                .position(|a| {
                    let a = &a.account;
                    a.username == user && !pass.is_empty() && a.password.expose() == pass
                })
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

    /// A new access token for `account`, with a refresh token unless the grant was
    /// client credentials (ServiceNow issues none for it).
    fn issue_token(&self, account: usize, refreshable: bool) -> serde_json::Value {
        let token = random_hex();
        let ttl = self.accounts[account].account.token_ttl_secs;
        lock(&self.tokens).insert(
            token.clone(),
            Token {
                account,
                expires: Instant::now() + Duration::from_secs(ttl),
            },
        );
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
        let mut answer = serde_json::json!({
            "access_token": token,
            "scope": "useraccount",
            "token_type": "Bearer",
            "expires_in": ttl,
        });
        if refreshable {
            let refresh = random_hex();
            lock(&self.refresh_tokens).insert(refresh.clone(), account);
            answer["refresh_token"] = refresh.into();
        }
        answer
    }

    pub(super) fn revoke(&self, token: &str) {
        lock(&self.tokens).remove(token);
    }

    pub(super) fn rate_headers(&self, reset: i64) -> Vec<(HeaderName, String)> {
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

/// Sign-in and rate limit, shared by the table routes.
pub(super) fn admit(
    shared: &Shared,
    headers: &HeaderMap,
    held: &mut Option<Slot>,
) -> Result<(usize, Option<String>), Reply> {
    let sn = &shared.servicenow;
    let (account, token) = sn
        .authenticate(headers)
        .map_err(|()| unauthenticated(Outcome::Unauthorized))?;
    let user = &sn.accounts[account].account.username;
    if let Err(refusal) = shared.admit(Service::Servicenow, user, held) {
        let secs = refusal.retry_after_secs();
        let reset = Utc::now().timestamp() + secs as i64;
        return Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            refusal.outcome(),
            "Rate limit exceeded",
            Some("Too many requests: the rate limit rule for this user was exceeded"),
        )
        .header(header::RETRY_AFTER, secs)
        .headers(sn.rate_headers(reset)));
    }
    Ok((account, token))
}

/// `POST /oauth_token.do` with a form body.
pub(super) async fn oauth_token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let sn = &shared.servicenow;
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let client_ok = |a: &SnAccount| {
        a.client_id.as_deref() == Some(get("client_id"))
            && a.client_secret.as_ref().map(Secret::expose) == Some(get("client_secret"))
    };
    let account = match get("grant_type") {
        "password" => sn.accounts.iter().position(|a| {
            let a = &a.account;
            let password = a.password.expose();
            client_ok(a)
                && a.username == get("username")
                && !password.is_empty()
                && password == get("password")
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
        Some(i) => {
            let refreshable = get("grant_type") != "client_credentials";
            ok(serde_json::to_vec(&sn.issue_token(i, refreshable)).unwrap_or_default())
        }
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
