//! Source APIs behind one trait: fetch one page of a table inside a window, continuing
//! after an opaque cursor. Sources classify errors; the engine decides what to retry.

pub mod connectwise;
pub mod refreshing;
pub mod salesforce;
pub mod servicenow;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{
    Credentials, DEFAULT_MAX_RESPONSE_MB, DEFAULT_REQUEST_TIMEOUT_SECONDS, DefaultSettings,
    EndpointDef, MissingCredential,
};
use crate::domain::{RecordsAt, Service, Window};

/// One page as the API sent it, and where the next page starts.
///
/// The body is kept as bytes: the sink reads records straight out of it, so a page is
/// never turned into an owned tree of values.
#[derive(Debug, Default)]
pub struct Page {
    pub body: Body,
    /// Where the records are inside `body`.
    pub records_at: RecordsAt,
    /// Cursor of the next page; `None` once the window is exhausted.
    pub next: Option<String>,
    /// Size of the response body, for throughput figures.
    pub bytes: usize,
    /// What the server said about its own request quota, if anything.
    pub usage: Option<ApiUsage>,
}

/// A server's statement about its request quota (ServiceNow `X-RateLimit-*`, Salesforce
/// `Sforce-Limit-Info` and `/limits`). The engine slows down as `used` nears `limit`, and a
/// job spends at most its share of what others leave (`engine::quota`).
#[derive(Clone, Debug, PartialEq)]
pub struct ApiUsage {
    /// Requests counted so far in the current period, when the server says.
    pub used: Option<u64>,
    /// Requests allowed per `period`.
    pub limit: u64,
    pub period: Duration,
    /// When the current period ends, when the server says.
    pub resets_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Per-service client settings that come from `backfill_config.json`.
#[derive(Clone, Debug)]
pub struct SourceSettings {
    /// Salesforce: a window whose `totalSize` exceeds this is read through a Bulk API 2.0
    /// query job instead of REST query paging.
    pub bulk_query_threshold: u64,
    /// How long a request may take and how large its answer may be.
    pub limits: ResponseLimits,
}

impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            bulk_query_threshold: 50_000,
            limits: ResponseLimits::default(),
        }
    }
}

/// What one API request may cost (`request_timeout_seconds`, `max_response_mb`): a request
/// still unanswered, or whose body is still arriving, after `timeout` fails as timed out
/// (worth another try); a body larger than `max_bytes` is not read further and fails the
/// request (not worth another: the server would send it again, so the chunk fails at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseLimits {
    pub timeout: Duration,
    pub max_bytes: u64,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        ResponseLimits {
            timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECONDS),
            max_bytes: DEFAULT_MAX_RESPONSE_MB << 20,
        }
    }
}

impl ResponseLimits {
    /// The limits `default_settings` of `backfill_config.json` set.
    pub fn from_settings(d: &DefaultSettings) -> Self {
        ResponseLimits {
            timeout: Duration::from_secs(d.request_timeout_seconds),
            max_bytes: d.max_response_mb.saturating_mul(1 << 20),
        }
    }

    /// "timed out after 120 s": what a request that ran out of time reports.
    fn timed_out(&self, what: &str) -> SourceError {
        SourceError::Transport(format!(
            "{what} timed out after {} s (request_timeout_seconds)",
            self.timeout.as_secs_f64()
        ))
    }

    /// What a body larger than `max_bytes` reports.
    fn too_large(&self, what: &str) -> SourceError {
        SourceError::Decode {
            message: format!(
                "{what} is larger than max_response_mb ({} MB): not read further",
                self.max_bytes as f64 / f64::from(1u32 << 20)
            ),
            truncated: false,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// The API answered with an error status.
    #[error("HTTP {status}: {message}")]
    Http {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The server refused the request for its rate or request limits (429, Salesforce 403
    /// `REQUEST_LIMIT_EXCEEDED`): wait and ask again, never fail the chunk for it.
    #[error("rate limited (HTTP {status}): {message}")]
    RateLimited {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The request did not complete (connection refused or reset, timeout).
    #[error("request failed: {0}")]
    Transport(String),
    /// The body was cut short or is not what the API documents.
    #[error("unreadable response: {message}")]
    Decode { message: String, truncated: bool },
    #[error("{0}")]
    Config(String),
    /// The org's shared allocation is spent (Salesforce 403 `REQUEST_LIMIT_EXCEEDED`
    /// "TotalRequests"): no retry helps before calls free up; the engine's quota gate
    /// (`engine::quota`) releases the job until then.
    #[error("API allocation used up (HTTP {status}): {message}")]
    QuotaExhausted { status: u16, message: String },
    /// The cursor points at server-side state that is gone (an expired Bulk API job): the
    /// window must be read again from its start, dropping what was stored from it.
    #[error("cursor expired: {message}")]
    CursorExpired { message: String },
    /// The API refused the session (401) and the source obtained a new one: ask again. The
    /// request is not repeated behind the caller's back, so the repeat takes a rate slot like
    /// any request; a second refusal in a row stands as the `Http` error it is.
    #[error("session renewed after HTTP {status}: {message}")]
    SessionRenewed { status: u16, message: String },
}

/// How a 400 that refuses the query itself begins (the API's code, or ServiceNow's message):
/// a field, object or clause the API does not accept, the same for every window. Any other
/// 400 may come from one window's data or size and stays that window's.
pub const QUERY_REFUSED_400: [&str; 6] = [
    "INVALID_FIELD",
    "INVALID_TYPE",
    "MALFORMED_QUERY",
    "INVALID_QUERY_FILTER_OPERATOR",
    "InvalidObject",
    "Invalid table",
];

impl From<MissingCredential> for SourceError {
    fn from(e: MissingCredential) -> Self {
        SourceError::Config(e.to_string())
    }
}

impl SourceError {
    /// An error status as the API answered it, with the API's error code if it sent one:
    /// a 429, or a 403 `REQUEST_LIMIT_EXCEEDED` (Salesforce's request limits), is the server
    /// asking to wait; anything else an HTTP error (which `is_retryable` judges).
    pub fn from_status(
        status: u16,
        code: Option<&str>,
        message: String,
        retry_after: Option<Duration>,
    ) -> Self {
        let request_limit = status == 403 && code == Some("REQUEST_LIMIT_EXCEEDED");
        if request_limit && message.contains("TotalRequests") {
            SourceError::QuotaExhausted { status, message }
        } else if status == 429 || request_limit {
            SourceError::RateLimited {
                status,
                message,
                retry_after,
            }
        } else {
            SourceError::Http {
                status,
                message,
                retry_after,
            }
        }
    }

    /// Worth another try: rate limits, server errors, broken connections, cut bodies.
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Http { status, .. } => *status == 429 || *status == 408 || *status >= 500,
            SourceError::RateLimited { .. } => true,
            SourceError::Transport(_) | SourceError::SessionRenewed { .. } => true,
            SourceError::Decode { truncated, .. } => *truncated,
            SourceError::Config(_)
            | SourceError::CursorExpired { .. }
            | SourceError::QuotaExhausted { .. } => false,
        }
    }

    /// Whether every window of the table would get this answer, so the table fails once
    /// (`JobStore::fail_table`) instead of each window spending its attempts on it: the
    /// object refused (401 after the source renewed its session, which `SessionRenewed`
    /// retries first; a 403 that is no rate limit), its path unknown (404 on a window's first
    /// request), or the query refused on a window's first request (a 400 whose code says so:
    /// `QUERY_REFUSED_400`, e.g. Salesforce `INVALID_FIELD`). Any other 400, or one on a later
    /// page, stays the window's failure: it may come from that window's data.
    pub fn is_table_wide(&self, first_request: bool) -> bool {
        match self {
            SourceError::Http {
                status: 401 | 403, ..
            } => true,
            SourceError::Http { status: 404, .. } => first_request,
            SourceError::Http {
                status: 400,
                message,
                ..
            } => first_request && QUERY_REFUSED_400.iter().any(|c| message.starts_with(c)),
            _ => false,
        }
    }

    /// Why another attempt would not help, for errors `is_retryable` refuses: the words the
    /// stored error and the console give (`HTTP 400 is permanent`).
    pub fn why_permanent(&self) -> Option<String> {
        if self.is_retryable() {
            return None;
        }
        Some(match self {
            SourceError::Http { status, .. } => format!("HTTP {status} is permanent"),
            SourceError::Config(_) => "the configuration must change first".into(),
            SourceError::Decode { .. } => "the answer would be as unreadable again".into(),
            SourceError::QuotaExhausted { .. } => "the API's request quota is used up".into(),
            _ => "the error is permanent".into(),
        })
    }

    pub fn is_rate_limited(&self) -> bool {
        matches!(
            self,
            SourceError::RateLimited { .. } | SourceError::Http { status: 429, .. }
        )
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SourceError::Http { retry_after, .. }
            | SourceError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[async_trait]
pub trait Source: Send + Sync {
    fn service(&self) -> Service;
    /// Fetches the page of `endpoint` within `window` that follows `cursor` (`None`: the first).
    async fn fetch_page(
        &self,
        endpoint: &EndpointDef,
        window: &Window,
        cursor: Option<&str>,
    ) -> Result<Page, SourceError>;
    /// The source's own count of records in `window`.
    async fn count(&self, endpoint: &EndpointDef, window: &Window) -> Result<u64, SourceError>;
    /// Counts of `window` per UTC calendar month in one request, where the API has a grouped
    /// count (Salesforce SOQL `GROUP BY`): consecutive pieces covering `window` exactly, empty
    /// months included. `None` where it has not; the planner then uses `count`.
    async fn monthly_counts(
        &self,
        _endpoint: &EndpointDef,
        _window: &Window,
    ) -> Result<Option<Vec<(Window, u64)>>, SourceError> {
        Ok(None)
    }
    /// The shared API allocation as the server states it now (Salesforce `/limits`
    /// `DailyApiRequests`), for the quota reserve (`engine::quota`); `None` when the API has
    /// no such statement to ask for (its answers' headers may still carry one: `Page::usage`).
    async fn allocation(&self) -> Result<Option<ApiUsage>, SourceError> {
        Ok(None)
    }
    /// The declared columns of `endpoint` the integration user cannot read, by the API's own
    /// description of its schema (Salesforce `describe`), in declared order; `None` where the
    /// API has no such description to ask for (the query then names every declared field).
    /// `pace` is awaited before each request it sends (a schema may take several).
    async fn unreadable_columns(
        &self,
        _endpoint: &EndpointDef,
        _pace: &dyn Pace,
    ) -> Result<Option<Vec<String>>, SourceError> {
        Ok(None)
    }
    /// The first page of `window` with the backfill's own query of `endpoint` (every column it
    /// declares), asking for one record: proof the backfill's reads are accepted. Records in
    /// the answer.
    async fn probe(&self, endpoint: &EndpointDef, window: &Window) -> Result<u64, SourceError> {
        let one = EndpointDef {
            page_size: 1,
            ..endpoint.clone()
        };
        let page = self.fetch_page(&one, window, None).await?;
        records_in(&page)
    }
}

/// A request's turn under the tenant's rate budget, for a call of a source that sends several
/// requests (`Source::unreadable_columns`).
#[async_trait]
pub trait Pace: Send + Sync {
    async fn turn(&self);
}

/// No wait for a turn (`check`, tests).
pub struct Unpaced;

#[async_trait]
impl Pace for Unpaced {
    async fn turn(&self) {
        // No budget to wait for: the request goes at once.
    }
}

/// How many records a page holds (its `records_at` array).
pub fn records_in(page: &Page) -> Result<u64, SourceError> {
    let value: serde_json::Value =
        serde_json::from_slice(page.body.bytes()).map_err(|e| SourceError::Decode {
            message: format!("page body: {e}"),
            truncated: false,
        })?;
    let records = match page.records_at {
        RecordsAt::Body => Some(&value),
        RecordsAt::Member(name) => value.get(name),
    };
    records
        .and_then(serde_json::Value::as_array)
        .map(|a| a.len() as u64)
        .ok_or_else(|| SourceError::Decode {
            message: "page body holds no array of records".into(),
            truncated: false,
        })
}

/// Builds the client for `service` at `base_url`.
pub fn connect(
    service: Service,
    base_url: &str,
    credentials: Credentials,
    http: reqwest::Client,
    settings: &SourceSettings,
) -> Result<Arc<dyn Source>, SourceError> {
    Ok(match service {
        Service::Connectwise => Arc::new(
            connectwise::ConnectWise::new(base_url, credentials, http)?
                .with_limits(settings.limits),
        ),
        Service::Servicenow => Arc::new(
            servicenow::ServiceNow::new(base_url, credentials, http)?.with_limits(settings.limits),
        ),
        Service::Salesforce => Arc::new(salesforce::Salesforce::new(
            base_url,
            credentials,
            http,
            settings,
        )?),
    })
}

/// Parses `Retry-After`: delay seconds (the form these APIs use; fractions accepted) or an
/// HTTP date. Never panics: a malformed, negative or NaN value is ignored (`None`), a date in
/// the past is no wait, and a huge or infinite one is cut to a year (the engine then clamps
/// it to `max_retry_after_seconds`).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    const CEILING: f64 = 365.0 * 86_400.0;
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let secs = match value.parse::<f64>() {
        Ok(secs) => secs,
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            let ms = (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds();
            ms.max(0) as f64 / 1000.0
        }
    };
    // `+ 0.0` turns a `-0` into zero.
    (secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(CEILING) + 0.0))
}

/// Room reserved up front for a body from its `Content-Length`, at most.
const BODY_RESERVE_MAX: u64 = 16 << 20;
/// Bodies announced smaller than this take no place (`body_places`).
const PLACE_MIN_BYTES: u64 = 64 << 10;
/// The longest a body waits for a place before it is read without one.
const PLACE_WAIT_MAX: Duration = Duration::from_secs(2);

/// Large response bodies the process holds at once: two per core. A body of a page's size
/// takes its place before it is read and keeps it while it lives (a page's until the sink has
/// flattened it), so when the CPU is the limit, windows waiting for it leave their answers in
/// the socket instead of holding a page each. When the network is the limit, places are free.
/// Small bodies (errors, logins, counts) take none, and no body waits for a place longer than
/// `PLACE_WAIT_MAX`: a task that holds a body and reads another (a test collecting pages,
/// a 401 answer kept while signing in again) can never wait for ever on its own place.
fn body_places() -> &'static Arc<tokio::sync::Semaphore> {
    static PLACES: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    PLACES.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(tokio::sync::Semaphore::new(2 * cores))
    })
}

/// A response body, holding its place among the bodies the process holds (`body_places`)
/// until it is dropped. Reads as bytes.
#[derive(Debug, Default)]
pub struct Body {
    bytes: bytes::Bytes,
    _place: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Body {
    pub fn bytes(&self) -> &bytes::Bytes {
        &self.bytes
    }
}

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// A body made here (a test's, a converted one): it holds no place.
impl From<bytes::Bytes> for Body {
    fn from(bytes: bytes::Bytes) -> Self {
        Body {
            bytes,
            _place: None,
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        bytes::Bytes::from(bytes).into()
    }
}

/// Why a body was not read whole.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// It is (or was announced) larger than the limit.
    TooLarge,
    /// The connection broke or the request ran out of time.
    Read(reqwest::Error),
}

impl From<reqwest::Error> for BodyError {
    fn from(e: reqwest::Error) -> Self {
        BodyError::Read(e)
    }
}

/// A body read whole into one buffer as its chunks arrive, once it has a place, and never
/// beyond `max_bytes`: an answer announcing more is not read at all, and one that grows past
/// it (an endless body) is dropped at the limit. The buffer grows by doubling but never past
/// the limit. (`Response::bytes` keeps every chunk until the end and then copies them into
/// one buffer: twice a page's size at its peak.)
pub(crate) async fn read_bytes(
    mut resp: reqwest::Response,
    max_bytes: u64,
) -> Result<Body, BodyError> {
    let announced = resp.content_length();
    if announced.is_some_and(|n| n > max_bytes) {
        return Err(BodyError::TooLarge);
    }
    let place = match announced {
        Some(n) if n < PLACE_MIN_BYTES => None,
        _ => tokio::time::timeout(PLACE_WAIT_MAX, body_places().clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok),
    };
    let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let reserve = announced.unwrap_or(0).min(BODY_RESERVE_MAX) as usize;
    let mut body = Vec::with_capacity(reserve);
    while let Some(chunk) = resp.chunk().await? {
        let len = body.len() + chunk.len();
        if len > max {
            return Err(BodyError::TooLarge);
        }
        if len > body.capacity() {
            body.reserve_exact(len.max(2 * body.capacity()).min(max) - body.len());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Body {
        bytes: bytes::Bytes::from(body),
        _place: place,
    })
}

/// The path of a request's URL, for messages: no host, no query (which may carry a
/// session's parameters).
fn path_of(url: Option<&url::Url>) -> &str {
    url.map_or("the API", url::Url::path)
}

/// The body of `resp` read whole within `limits`. A body cut short is a truncated decode
/// error (worth another try), one that runs out of time a timeout (worth one too), one larger
/// than the limit an error naming it (not worth one); `context` prefixes the message.
pub(crate) async fn read_body(
    resp: reqwest::Response,
    context: &str,
    limits: &ResponseLimits,
) -> Result<Body, SourceError> {
    let path = path_of(Some(resp.url())).to_string();
    read_bytes(resp, limits.max_bytes)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => limits.too_large(&format!("{context}the answer to {path}")),
            BodyError::Read(e) if e.is_timeout() => {
                limits.timed_out(&format!("{context}the request to {path}"))
            }
            BodyError::Read(e) => SourceError::Decode {
                message: format!("{context}body cut short: {}", e.without_url()),
                truncated: true,
            },
        })
}

/// An answer read whole: its status, headers and body (`read_body`).
pub(crate) async fn read_answer(
    resp: reqwest::Response,
    context: &str,
    limits: &ResponseLimits,
) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Body), SourceError> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = read_body(resp, context, limits).await?;
    Ok((status, headers, body))
}

/// Response headers by which APIs name a request for their support (the first one present
/// is quoted in an error).
pub const REQUEST_ID_HEADERS: [&str; 4] = [
    "x-request-id",
    "x-correlation-id",
    "x-transaction-id",
    "sforce-request-id",
];

/// The request an error answered, for its message: `GET /path; request id abc` (the path
/// only: the query may carry filters the message does not need).
pub(crate) fn request_note(
    method: &str,
    url: &str,
    headers: &reqwest::header::HeaderMap,
) -> String {
    let path = url::Url::parse(url).map_or_else(
        |_| url.split('?').next().unwrap_or_default().to_string(),
        |u| u.path().to_string(),
    );
    let id = REQUEST_ID_HEADERS
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()));
    match id {
        Some(id) => format!("{method} {path}; request id {id}"),
        None => format!("{method} {path}; no request id"),
    }
}

/// How much of an error body that is not in the API's error format a message shows.
const BODY_EXCERPT_BYTES: usize = 300;

/// The start of an error body that is not in the API's error format, for a message. The
/// whole body is scrubbed before it is cut, so a secret straddling the cut is not half shown.
pub(crate) fn body_excerpt(body: &[u8], scrub: impl Fn(&str) -> String) -> String {
    crate::secret::cut(scrub(&String::from_utf8_lossy(body)), BODY_EXCERPT_BYTES)
}

/// Every value of `credentials` as it may come back in an error body: as given, and
/// form-encoded (as it was sent in a form or query). Each source adds what it builds from
/// them (Basic auth tokens, `user:pass`).
pub(crate) fn credential_secrets(credentials: &Credentials) -> Vec<String> {
    let mut out = Vec::new();
    for value in credentials.secret_values() {
        out.push(value.to_string());
        let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        if encoded != value {
            out.push(encoded);
        }
    }
    out
}

/// A redirect to another host (or port). The clients never follow one: the request's
/// credentials would go to the other host, or the answer would come without them.
#[derive(Debug, thiserror::Error)]
#[error("{from} redirected to another host, {to}: cross-host redirects are not followed")]
pub struct CrossHostRedirect {
    pub from: String,
    pub to: String,
}

/// `host` or `host:port`, as the URL gives it.
pub(crate) fn host_of(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Whether two URLs name the same host and port.
pub(crate) fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    let origin = |u: &url::Url| (u.host_str().map(str::to_string), u.port_or_known_default());
    origin(a) == origin(b)
}

/// Same-host redirects are followed (at most 10, as reqwest's default); a redirect to
/// another host or port is an error naming both.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(from) = attempt.previous().last() else {
            return attempt.follow();
        };
        if !same_origin(from, attempt.url()) {
            let e = CrossHostRedirect {
                from: host_of(from),
                to: host_of(attempt.url()),
            };
            attempt.error(e)
        } else if attempt.previous().len() > 10 {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

/// The error for a request that got no answer: a refused cross-host redirect is a
/// configuration problem (the chunk fails, no retry); one that ran out of time says after how
/// long; anything else a transport error. `scrub` cleans the text of the source's secrets.
pub(crate) fn request_error(
    e: reqwest::Error,
    limits: &ResponseLimits,
    scrub: impl Fn(&str) -> String,
) -> SourceError {
    if e.is_timeout() && e.is_connect() {
        let limits = ResponseLimits {
            timeout: limits.timeout.min(CONNECT_TIMEOUT),
            ..*limits
        };
        return limits.timed_out(&format!("connecting for {}", path_of(e.url())));
    } else if e.is_timeout() {
        return limits.timed_out(&format!("the request to {}", path_of(e.url())));
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<CrossHostRedirect>() {
            return SourceError::Config(scrub(&r.to_string()));
        }
        cause = c.source();
    }
    SourceError::Transport(scrub(&e.without_url().to_string()))
}

/// The longest a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A shared HTTP client: rustls, connection pooling, bounded timeouts, no redirect to
/// another host. Each request sets its own total timeout (`ResponseLimits`); the client's
/// is the default's, for a request that sets none.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(redirect_policy())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(ResponseLimits::default().timeout)
        .pool_max_idle_per_host(8)
        .user_agent(concat!("avesa-console/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client's fixed settings are valid")
}

#[cfg(test)]
mod body_tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One HTTP answer with `body` on a loopback port; its URL.
    async fn answer_once(body: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request).await;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            conn.write_all(head.as_bytes()).await.unwrap();
            conn.write_all(body.as_bytes()).await.unwrap();
        });
        url
    }

    #[tokio::test]
    async fn a_body_read_from_an_answer_holds_a_place_until_it_is_dropped() {
        let page: &'static str = Box::leak(format!("[{}0]", "1,".repeat(40_000)).into_boxed_str());
        let answer = reqwest::get(&answer_once(page).await).await.unwrap();
        let body = read_bytes(answer, 1 << 20).await.unwrap();
        assert_eq!(&body[..], page.as_bytes());
        assert!(body._place.is_some(), "a page-sized body holds a place");
        let answer = reqwest::get(&answer_once("[1,2,3]").await).await.unwrap();
        let small = read_bytes(answer, 1 << 20).await.unwrap();
        assert_eq!(&small[..], b"[1,2,3]");
        assert!(small._place.is_none(), "a small body holds none");
        let made: Body = bytes::Bytes::from_static(b"[]").into();
        assert!(made._place.is_none(), "a body made here holds none");
    }
}

#[cfg(test)]
mod classification_tests {
    use super::*;

    #[test]
    fn table_wide_failures_are_the_object_refused_or_the_first_request_refused() {
        let http = |status, message: &str| SourceError::Http {
            status,
            message: message.into(),
            retry_after: None,
        };
        let field = http(400, "INVALID_FIELD: No such column 'Region__c'");
        assert!(field.is_table_wide(true));
        assert!(
            !field.is_table_wide(false),
            "a later page's 400 is the window's"
        );
        assert!(
            !http(400, "ConnectWiseApi: tickets window 2025-01-31 is corrupt").is_table_wide(true)
        );
        assert!(
            http(
                400,
                "InvalidObject: conditions refer to a field tickets lack"
            )
            .is_table_wide(true)
        );
        assert!(http(400, "Invalid table incidentz").is_table_wide(true));
        assert!(http(401, "INVALID_SESSION_ID").is_table_wide(false));
        assert!(http(403, "INSUFFICIENT_ACCESS").is_table_wide(false));
        assert!(http(404, "NotFound").is_table_wide(true));
        assert!(!http(404, "NotFound").is_table_wide(false));
        assert!(!http(500, "boom").is_table_wide(true));
        let limited = SourceError::from_status(
            403,
            Some("REQUEST_LIMIT_EXCEEDED"),
            "ConcurrentPerOrgLongTxn".into(),
            None,
        );
        assert!(
            !limited.is_table_wide(true),
            "a rate limit is no table failure"
        );
    }
}
