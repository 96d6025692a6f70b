//! `POST /services/oauth2/token`: the password, refresh-token and client-credentials
//! grants, OAuth error bodies, and reading the bearer token of a REST request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use chrono::Utc;

use super::{JSON, MAX_BODY, json};
use crate::sandbox::http::Reply;
use crate::sandbox::{Outcome, Shared};

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Reply {
    let body = serde_json::json!({ "error": error, "error_description": description });
    Reply::refusal_json(status, JSON, &body).with_outcome(Outcome::Unauthorized)
}

/// `POST /services/oauth2/token`: password, refresh-token or client-credentials grant.
pub(super) async fn token(State(shared): State<Arc<Shared>>, req: Request) -> Response {
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
    if !matches!(grant, "password" | "refresh_token" | "client_credentials") {
        return fail("unsupported_grant_type", "grant type not supported");
    }
    if grant == "client_credentials" && !my_domain(headers) {
        return fail("invalid_grant", "request not supported on this domain");
    }
    let Some(org) = sf
        .orgs
        .iter()
        .position(|o| o.account.client_id == get("client_id"))
    else {
        return fail("invalid_client_id", "client identifier invalid");
    };
    let account = &sf.orgs[org].account;
    if account.client_secret.expose() != get("client_secret") {
        return fail("invalid_client", "invalid client credentials");
    }
    let ok = match grant {
        "password" => {
            account.username == get("username")
                && account
                    .password
                    .as_ref()
                    .is_some_and(|p| p.expose() == get("password"))
        }
        "client_credentials" => true,
        _ => account
            .refresh_token
            .as_ref()
            .is_some_and(|t| t.expose() == get("refresh_token")),
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

/// Whether the request came to an org's own host: Salesforce answers the
/// client-credentials grant only there, not at the shared login hosts.
fn my_domain(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    !matches!(
        name.to_ascii_lowercase().as_str(),
        "login.salesforce.com" | "test.salesforce.com"
    )
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth"))
        .then(|| token.trim())
}
