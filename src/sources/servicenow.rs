//! ServiceNow Table API (`SOURCE_APIS.md` §2): `GET {instance}/api/now/table/{table}` with
//! Basic auth, or an OAuth token from `{instance}/oauth_token.do` (password or
//! client-credentials grant; neither has a refresh token here: an expired token, or one a
//! 401 refuses, is replaced by asking again).
//!
//! Windows are `sysparm_query` bounds on `sys_updated_on` (UTC `YYYY-MM-DD HH:MM:SS`),
//! ordered by (`sys_updated_on`, `sys_id`). Paging is by keyset, never by offset: the cursor
//! is the last record's pair. "After the pair" would take two blocks joined by `^NQ` (`^OR`
//! binds tighter than `^`), but how an instance orders rows across `^NQ` blocks is not
//! documented: one answering block by block puts the later times first and a page cut there
//! skips the ties. So every query is one block, which `ORDERBY` sorts as a whole:
//!
//! ```text
//! WINDOW^sys_updated_on>=LAST^ORDERBYsys_updated_on^ORDERBYsys_id
//! ```
//!
//! and the page's leading rows at or before the pair (the cursor's own record, ties already
//! read) are cut from the body before it is handed on. A full page of nothing but such rows
//! (more ties in one second than a page holds) is replaced by the ties alone,
//! `WINDOW^sys_updated_on=LAST^sys_id>LASTID^ORDERBYsys_id`; once they are read the cursor
//! says so (`sys_id` `PAST_TIES`) and the next query is `sys_updated_on>LAST`.
//!
//! A record edited while its window is read moves out of the window without shifting the
//! rows after it, so none is skipped (offset paging would skip one per edit).

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;

use super::{
    Page, ResponseLimits, Source, SourceError, credential_secrets, read_answer, request_error,
    retry_after,
};
use crate::config::{Credentials, EndpointDef, Grant};
use crate::domain::{Service, Window};
use crate::secret::{Secret, scrub};
use body::{List, PageKeys, is_envelope, read_page};
#[cfg(test)]
use body::{drop_leading_records, leading_records_end};
pub(crate) use body::{error_message, usage_from};

/// The Table API's date-time format (UTC).
const SN_TIME: &str = "%Y-%m-%d %H:%M:%S";
/// A token this close to its expiry (at most a quarter of its lifetime) is replaced before use.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);
const EMPTY_PAGE: &[u8] = b"{\"result\":[]}";
/// A cursor's `sys_id` once every record of its second has been read (none is greater).
const PAST_TIES: &str = "ffffffffffffffffffffffffffffffff";

pub struct ServiceNow {
    base_url: String,
    http: reqwest::Client,
    auth: Auth,
    secrets: Vec<String>,
    limits: ResponseLimits,
}

enum Auth {
    /// The whole `Authorization` header value.
    Basic(Secret),
    OAuth(OAuth),
}

struct OAuth {
    /// The form body of the grant.
    form: Secret,
    /// The current access token; fetched on first use, replaced on expiry or a 401.
    token: tokio::sync::Mutex<Option<Token>>,
}

#[derive(Clone)]
struct Token {
    value: Secret,
    /// When to replace it before it expires: `TOKEN_MARGIN` (at most a quarter of its
    /// lifetime) ahead of `expires_in`.
    renew_at: Option<Instant>,
    /// Counts tokens fetched, so that concurrent 401s replace a token only once.
    generation: u64,
}

/// Where the next page starts: the last record's (`sys_updated_on`, `sys_id`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub updated: NaiveDateTime,
    pub sys_id: String,
}

impl fmt::Display for Cursor {
    /// `2024-01-05 10:00:00|<sys_id>`: what the job store keeps between pages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}", self.updated.format(SN_TIME), self.sys_id)
    }
}

fn is_sys_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn parse_time(s: &str) -> Option<NaiveDateTime> {
    // Exactly `YYYY-MM-DD HH:MM:SS`: chrono alone would accept unpadded fields.
    (s.len() == 19)
        .then(|| NaiveDateTime::parse_from_str(s, SN_TIME).ok())
        .flatten()
}

impl Cursor {
    /// Parses a stored cursor and checks that it lies inside `window`.
    pub fn parse(text: &str, window: &Window) -> Result<Cursor, SourceError> {
        let bad = |why: &str| {
            SourceError::Config(format!(
                "invalid ServiceNow cursor '{}': {why}",
                text.escape_default()
            ))
        };
        let (time, id) = text
            .split_once('|')
            .ok_or_else(|| bad("expected 'YYYY-MM-DD HH:MM:SS|<sys_id>'"))?;
        let updated =
            parse_time(time).ok_or_else(|| bad("the time is not 'YYYY-MM-DD HH:MM:SS'"))?;
        if !is_sys_id(id) {
            return Err(bad("the sys_id is not 32 hexadecimal characters"));
        }
        if !window.contains(updated.and_utc()) {
            return Err(bad(&format!("the time is outside the window {window}")));
        }
        Ok(Cursor {
            updated,
            sys_id: id.to_string(),
        })
    }
}

/// A window bound as the Table API reads it. Records carry whole seconds, so a bound with
/// a fraction is rounded up: `>= 10:00:00.5` and `>= 10:00:01` select the same records.
fn bound(t: DateTime<Utc>) -> String {
    let secs = t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0);
    DateTime::from_timestamp(secs, 0)
        .unwrap_or(t)
        .format(SN_TIME)
        .to_string()
}

/// `field>=START^field<END`: the half-open window.
pub fn window_query(field: &str, window: &Window) -> String {
    format!(
        "{field}>={}^{field}<{}",
        bound(window.start),
        bound(window.end)
    )
}

/// The `sysparm_query` of a page: the window ordered by (`field`, `sys_id`), from
/// `cursor`'s time on when given (one block; see the module doc).
pub fn page_query(field: &str, window: &Window, cursor: Option<&Cursor>) -> String {
    let w = window_query(field, window);
    let order = format!("^ORDERBY{field}^ORDERBYsys_id");
    match cursor {
        None => format!("{w}{order}"),
        Some(c) if c.sys_id == PAST_TIES => {
            format!("{w}^{field}>{}{order}", c.updated.format(SN_TIME))
        }
        Some(c) => format!("{w}^{field}>={}{order}", c.updated.format(SN_TIME)),
    }
}

/// The `sysparm_query` of the records sharing `cursor`'s time after its `sys_id`.
pub fn ties_query(field: &str, window: &Window, cursor: &Cursor) -> String {
    format!(
        "{}^{field}={}^sys_id>{}^ORDERBYsys_id",
        window_query(field, window),
        cursor.updated.format(SN_TIME),
        cursor.sys_id
    )
}

/// Percent-encodes a query value; spaces become `%20`, which every server reads as a space.
fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The query string of a page request.
pub fn page_query_string(
    field: &str,
    window: &Window,
    cursor: Option<&Cursor>,
    limit: u32,
) -> String {
    query_string(&page_query(field, window, cursor), limit)
}

fn query_string(query: &str, limit: u32) -> String {
    format!(
        "sysparm_query={}&sysparm_display_value=false&sysparm_exclude_reference_link=true\
         &sysparm_suppress_pagination_header=true&sysparm_limit={limit}",
        encode(query)
    )
}

impl ServiceNow {
    /// Basic auth from `username` + `password`; OAuth when the credentials also hold
    /// `client_id` and `client_secret` (password grant), or hold only those (client
    /// credentials): see `Grant::servicenow`.
    pub fn new(
        base_url: &str,
        creds: Credentials,
        http: reqwest::Client,
    ) -> Result<Self, SourceError> {
        let grant = Grant::servicenow(&creds)?;
        // Every credential field (username and client_id too), and what is built from them.
        let mut secrets = credential_secrets(&creds);
        let auth = match grant.grant_type() {
            None => {
                let (username, password) = (creds.field("username")?, creds.field("password")?);
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                secrets.extend([
                    format!("{username}:{password}"),
                    encode(&password),
                    token.clone(),
                ]);
                Auth::Basic(Secret::new(format!("Basic {token}")))
            }
            Some(grant_type) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", grant_type);
                for field in grant.fields() {
                    let value = creds.field(field)?;
                    secrets.push(encode(&value));
                    form.append_pair(field, &value);
                }
                Auth::OAuth(OAuth {
                    form: Secret::new(form.finish()),
                    token: tokio::sync::Mutex::new(None),
                })
            }
        };
        let base_url = base_url.trim_end_matches('/').to_string();
        url::Url::parse(&base_url)
            .map_err(|e| SourceError::Config(format!("base URL {base_url}: {e}")))?;
        Ok(ServiceNow {
            base_url,
            http,
            auth,
            secrets,
            limits: ResponseLimits::default(),
        })
    }

    /// The same client, held to `limits` (the defaults otherwise).
    pub fn with_limits(mut self, limits: ResponseLimits) -> Self {
        self.limits = limits;
        self
    }

    fn scrub(&self, text: &str, extra: Option<&str>) -> String {
        scrub(text, self.secrets.iter().map(String::as_str).chain(extra))
    }

    /// The current token, or a new one when there is none, it is about to expire, or it
    /// is the one a 401 refused (`refused`).
    async fn token(&self, oauth: &OAuth, refused: Option<u64>) -> Result<Token, SourceError> {
        let mut current = oauth.token.lock().await;
        if let Some(t) = current.as_ref() {
            let fresh = t.renew_at.is_none_or(|at| Instant::now() < at);
            if fresh && refused != Some(t.generation) {
                return Ok(t.clone());
            }
        }
        let generation = current.as_ref().map_or(1, |t| t.generation + 1);
        let token = self.sign_in(oauth, generation).await?;
        *current = Some(token.clone());
        Ok(token)
    }

    /// `POST /oauth_token.do` with the grant's form.
    async fn sign_in(&self, oauth: &OAuth, generation: u64) -> Result<Token, SourceError> {
        let url = format!("{}/oauth_token.do", self.base_url);
        let resp = self
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(oauth.form.expose().to_string())
            .timeout(self.limits.timeout)
            .send()
            .await
            .map_err(|e| request_error(e, &self.limits, |t| self.scrub(t, None)))?;
        let (status, headers, body) = read_answer(resp, "oauth_token.do: ", &self.limits).await?;
        if !status.is_success() {
            #[derive(Deserialize)]
            struct OAuthError {
                error: Option<String>,
                error_description: Option<String>,
            }
            let what = match serde_json::from_slice::<OAuthError>(&body) {
                Ok(OAuthError {
                    error,
                    error_description,
                }) if error.is_some() || error_description.is_some() => format!(
                    "{} ({})",
                    error_description.unwrap_or_default(),
                    error.unwrap_or_default()
                ),
                _ => error_message(&body, |t| self.scrub(t, None)),
            };
            let message = self.scrub(
                &format!("OAuth sign-in at oauth_token.do refused: {what}"),
                None,
            );
            return Err(SourceError::from_status(
                status.as_u16(),
                None,
                message,
                retry_after(&headers),
            ));
        }
        #[derive(Deserialize)]
        struct Granted {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let granted: Granted = serde_json::from_slice(&body).map_err(|e| SourceError::Decode {
            message: format!("oauth_token.do: no access_token in the answer: {e}"),
            truncated: e.is_eof(),
        })?;
        Ok(Token {
            value: Secret::new(granted.access_token),
            renew_at: granted.expires_in.map(|s| {
                let lifetime = Duration::from_secs(s);
                Instant::now() + lifetime - TOKEN_MARGIN.min(lifetime / 4)
            }),
            generation,
        })
    }

    /// One GET with `authorization`; the status, headers and body as they came.
    async fn get_once(
        &self,
        url: &str,
        authorization: &str,
        token: Option<&str>,
    ) -> Result<(StatusCode, HeaderMap, super::Body), SourceError> {
        let mut auth = HeaderValue::from_str(authorization).map_err(|_| {
            SourceError::Config("credentials contain characters not allowed in a header".into())
        })?;
        auth.set_sensitive(true);
        let resp = self
            .http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.limits.timeout)
            .send()
            .await
            .map_err(|e| request_error(e, &self.limits, |t| self.scrub(t, token)))?;
        read_answer(resp, "", &self.limits).await
    }

    /// A GET under the configured auth. With OAuth, a 401 gets a new token and answers
    /// `SessionRenewed` (the token expired or was revoked): the caller asks again through the
    /// rate budget, and a second 401 stands.
    async fn get(
        &self,
        url: &str,
    ) -> Result<(StatusCode, HeaderMap, super::Body, Option<String>), SourceError> {
        match &self.auth {
            Auth::Basic(header) => {
                let (s, h, b) = self.get_once(url, header.expose(), None).await?;
                Ok((s, h, b, None))
            }
            Auth::OAuth(oauth) => {
                let token = self.token(oauth, None).await?;
                let value = token.value.expose();
                let (s, h, b) = self
                    .get_once(url, &format!("Bearer {value}"), Some(value))
                    .await?;
                if s != StatusCode::UNAUTHORIZED {
                    return Ok((s, h, b, Some(value.to_string())));
                }
                let refused = self.status_error((s, url), &h, &b, Some(value)).to_string();
                self.token(oauth, Some(token.generation)).await?;
                Err(SourceError::SessionRenewed {
                    status: s.as_u16(),
                    message: refused,
                })
            }
        }
    }

    /// The error for a non-2xx answer: 429 is `RateLimited`, anything else `Http` with the
    /// API's own message.
    fn status_error(
        &self,
        (status, url): (StatusCode, &str),
        headers: &HeaderMap,
        body: &[u8],
        token: Option<&str>,
    ) -> SourceError {
        let message = format!(
            "{} ({})",
            error_message(body, |t| self.scrub(t, token)),
            super::request_note("GET", url, headers)
        );
        let message = self.scrub(&message, token);
        SourceError::from_status(status.as_u16(), None, message, retry_after(headers))
    }

    /// One list request of `query`; a 404 "No Record found" is an empty list, as older
    /// releases answer one.
    async fn list(
        &self,
        endpoint: &EndpointDef,
        window: &Window,
        query: &str,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<List, SourceError> {
        let url = self.table_url(endpoint, &query_string(query, limit));
        let (status, headers, body, token) = self.get(&url).await?;
        let usage = usage_from(&headers);
        let bytes = body.len();
        if status == StatusCode::NOT_FOUND && is_envelope(&body) {
            let keys = PageKeys {
                count: 0,
                last: None,
                repeated: 0,
            };
            let body = bytes::Bytes::from_static(EMPTY_PAGE).into();
            return Ok(List {
                body,
                keys,
                usage,
                bytes,
            });
        }
        if !status.is_success() {
            return Err(self.status_error((status, &url), &headers, &body, token.as_deref()));
        }
        let keys = read_page(&body, endpoint, window, cursor)?;
        Ok(List {
            body,
            keys,
            usage,
            bytes,
        })
    }

    fn table_url(&self, endpoint: &EndpointDef, query: &str) -> String {
        format!(
            "{}/api/now/table/{}?{query}",
            self.base_url,
            endpoint.path.trim_matches('/')
        )
    }

    fn check_endpoint(endpoint: &EndpointDef) -> Result<(), SourceError> {
        if endpoint.id_field != "sys_id"
            || !matches!(endpoint.query_field(), "sys_updated_on" | "sys_created_on")
        {
            return Err(SourceError::Config(format!(
                "servicenow endpoint '{}': keyset paging needs id_field 'sys_id' and a \
                 query_field of 'sys_updated_on' or 'sys_created_on'",
                endpoint.path
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Source for ServiceNow {
    fn service(&self) -> Service {
        Service::Servicenow
    }

    async fn fetch_page(
        &self,
        endpoint: &EndpointDef,
        window: &Window,
        cursor: Option<&str>,
    ) -> Result<Page, SourceError> {
        Self::check_endpoint(endpoint)?;
        let cursor = cursor.map(|c| Cursor::parse(c, window)).transpose()?;
        let limit = endpoint.page_size.clamp(1, 10_000);
        let field = endpoint.query_field();
        let query = page_query(field, window, cursor.as_ref());
        let list = self
            .list(endpoint, window, &query, limit, cursor.as_ref())
            .await?;
        let full = list.keys.count >= limit as usize;
        if let Some(c) = &cursor
            && full
            && list.keys.repeated == list.keys.count
        {
            // Nothing but records already read: more ties in one second than a page holds.
            let ties = ties_query(field, window, c);
            let list = self.list(endpoint, window, &ties, limit, None).await?;
            let next = match &list.keys.last {
                Some(last) if list.keys.count >= limit as usize => last.to_string(),
                _ => Cursor {
                    updated: c.updated,
                    sys_id: PAST_TIES.to_string(),
                }
                .to_string(),
            };
            return list.page(Some(next), endpoint);
        }
        let next = match &list.keys.last {
            Some(last) if full => {
                if let Some(c) = &cursor
                    && last <= c
                {
                    return Err(SourceError::Decode {
                        message: format!(
                            "{}: the page after {c} ends at {last}: paging would not advance",
                            endpoint.path
                        ),
                        truncated: false,
                    });
                }
                Some(last.to_string())
            }
            _ => None,
        };
        let page = list.page(next, endpoint)?;
        Ok(page)
    }

    /// The Aggregate API's count (`/api/now/stats/{table}?sysparm_count=true`): one request
    /// that reads no record.
    async fn count(&self, endpoint: &EndpointDef, window: &Window) -> Result<u64, SourceError> {
        Self::check_endpoint(endpoint)?;
        let url = format!(
            "{}/api/now/stats/{}?sysparm_count=true&sysparm_query={}",
            self.base_url,
            endpoint.path.trim_matches('/'),
            encode(&window_query(endpoint.query_field(), window))
        );
        let (status, headers, body, token) = self.get(&url).await?;
        if !status.is_success() {
            return Err(self.status_error((status, &url), &headers, &body, token.as_deref()));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            result: Stats,
        }
        #[derive(serde::Deserialize)]
        struct Stats {
            stats: Count,
        }
        #[derive(serde::Deserialize)]
        struct Count {
            count: String,
        }
        let bad = |message: String, truncated| SourceError::Decode { message, truncated };
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("{} stats: {e}", endpoint.path), e.is_eof()))?;
        let n = answer.result.stats.count;
        n.trim().parse().map_err(|_| {
            bad(
                format!("{} stats: count '{n}' is not a number", endpoint.path),
                false,
            )
        })
    }
}

mod body;
#[cfg(test)]
mod tests;
