//! Salesforce: OAuth 2.0 login (password, refresh-token or client-credentials grant, chosen
//! by the credential fields: `Grant::salesforce`), SOQL windows on
//! `SystemModstamp` read through REST query locators, and Bulk API 2.0 query jobs for
//! windows above `bulk_query_threshold` records. Wire format: `SOURCE_APIS.md` §3.
//!
//! - Login is lazy; the token and `instance_url` live behind a lock. A 401
//!   `INVALID_SESSION_ID` logs in again once and repeats the request; a second 401 is an
//!   error. The source retries nothing else: the executor owns retries and pacing.
//! - REST pages are passed to the sink untouched (`RecordsAt::Member("records")`); only the
//!   paging fields and each record's `(Id, SystemModstamp)` are read here.
//! - The cursor (see `cursor.rs`) carries the `nextRecordsUrl` and the greatest
//!   `(SystemModstamp, Id)` delivered inside the window, so a lost locator
//!   (`INVALID_QUERY_LOCATOR`, e.g. after a crash and 15 idle minutes) is replaced by a
//!   keyset query that neither refetches nor skips. A locator's pages show each record's
//!   time as it is now, and Salesforce stamps an edit with the edit's time: a record edited
//!   while the window is read shows a time past its place in the query's order. So only
//!   records stamped before the query was sent (`since`, less `CLOCK_MARGIN`) move the
//!   position; the others may be read again after a lost locator, never skipped. Still a
//!   limit: an edit to a time inside a past window (the sandbox's `inside_window`, which
//!   Salesforce cannot produce) raises the position, and a lost locator then skips the
//!   records between.
//! - Bulk: on a window's first page, when `totalSize` exceeds the threshold, a query job is
//!   created (remembered per window, so a retried first page reuses it), polled until
//!   `JobComplete`, and its CSV results are paged by locator; each CSV page becomes a JSON
//!   array for the sink.

mod cursor;
mod describe;
pub(crate) mod soql;
mod wire;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};

use super::{
    ApiUsage, Page, ResponseLimits, Source, SourceError, SourceSettings, credential_secrets,
    request_error, retry_after,
};
use crate::config::{Credentials, EndpointDef, Grant};
use crate::domain::{RecordsAt, Service, Window};
use crate::secret::{Secret, scrub};
pub use cursor::{After, Cursor};
pub use soql::{NotAField, Spec, bound_literal, soql_field};
pub use wire::{ApiError, CsvError, csv_to_json, parse_limit_info, parse_limits};

/// The REST API version every request uses.
pub const API_VERSION: &str = "v60.0";

/// How a Bulk API 2.0 job is waited for.
#[derive(Clone, Copy, Debug)]
pub struct PollSettings {
    pub first: Duration,
    pub max: Duration,
    /// Give up waiting (the job stays remembered: a retry goes on polling it).
    pub give_up: Duration,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            first: Duration::from_millis(200),
            max: Duration::from_secs(5),
            give_up: Duration::from_secs(30 * 60),
        }
    }
}

#[derive(Clone)]
struct Session {
    token: Secret,
    instance_url: String,
    generation: u64,
}

/// A bulk job per (sObject, window), so a retried first page does not start another.
type BulkKey = (String, DateTime<Utc>, DateTime<Utc>);

pub struct Salesforce {
    login_url: String,
    http: reqwest::Client,
    /// The token request's form fields.
    grant: Vec<(&'static str, Secret)>,
    kind: Grant,
    secrets: Vec<String>,
    session: tokio::sync::Mutex<Option<Session>>,
    /// The token of the current session, for scrubbing messages.
    current_token: std::sync::Mutex<Option<String>>,
    bulk_threshold: u64,
    bulk_jobs: std::sync::Mutex<HashMap<BulkKey, String>>,
    poll: PollSettings,
    limits: ResponseLimits,
    /// Each object's describe, asked once (`describe.rs`).
    describes: std::sync::Mutex<HashMap<String, std::sync::Arc<describe::Described>>>,
}

/// A good answer.
struct Reply {
    headers: HeaderMap,
    body: super::Body,
    usage: Option<ApiUsage>,
}

/// A failed call: the API's error (which callers may look into) or anything else.
enum CallError {
    Api(ApiError),
    Source(SourceError),
}

impl From<SourceError> for CallError {
    fn from(e: SourceError) -> Self {
        CallError::Source(e)
    }
}

impl Salesforce {
    pub fn new(
        base_url: &str,
        creds: Credentials,
        http: reqwest::Client,
        settings: &SourceSettings,
    ) -> Result<Self, SourceError> {
        let kind = Grant::salesforce(&creds).map_err(|e| match e.field.as_str() {
            "username" => SourceError::Config(format!(
                "{e} (the password grant needs it; or give 'refresh_token', or only 'client_id' and 'client_secret' for client credentials)"
            )),
            _ => e.into(),
        })?;
        // Every credential field (client_id and username too): the grant sends them all.
        let secrets = credential_secrets(&creds);
        let mut grant = vec![(
            "grant_type",
            Secret::new(kind.grant_type().unwrap_or_default()),
        )];
        for field in kind.fields() {
            let mut value = creds.field(field)?;
            if *field == "password" {
                value.push_str(&creds.optional("security_token").unwrap_or_default());
            }
            grant.push((*field, Secret::new(value)));
        }
        let login_url = base_url
            .trim_end_matches('/')
            .trim_end_matches("/services/oauth2/token")
            .to_string();
        url::Url::parse(&login_url)
            .map_err(|e| SourceError::Config(format!("login URL '{login_url}': {e}")))?;
        Ok(Salesforce {
            login_url,
            http,
            grant,
            kind,
            secrets,
            session: tokio::sync::Mutex::new(None),
            current_token: std::sync::Mutex::new(None),
            bulk_threshold: settings.bulk_query_threshold,
            bulk_jobs: std::sync::Mutex::new(HashMap::new()),
            poll: PollSettings::default(),
            limits: settings.limits,
            describes: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Overrides how bulk jobs are polled (tests use short intervals).
    pub fn with_poll_settings(mut self, poll: PollSettings) -> Self {
        self.poll = poll;
        self
    }

    fn scrub(&self, text: &str) -> String {
        let token = self
            .current_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        scrub(
            text,
            self.secrets
                .iter()
                .map(String::as_str)
                .chain(token.as_deref()),
        )
    }

    fn transport(&self, e: reqwest::Error) -> SourceError {
        request_error(e, &self.limits, |t| self.scrub(t))
    }

    async fn read_body(&self, resp: reqwest::Response) -> Result<super::Body, SourceError> {
        super::read_body(resp, "", &self.limits)
            .await
            .map_err(|e| match e {
                SourceError::Decode { message, truncated } => SourceError::Decode {
                    message: self.scrub(&message),
                    truncated,
                },
                other => other,
            })
    }

    /// `POST /services/oauth2/token` → a new session.
    async fn login(&self, generation: u64) -> Result<Session, SourceError> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.grant.iter().map(|(k, v)| (*k, v.expose())))
            .finish();
        let resp = self
            .http
            .post(format!("{}/services/oauth2/token", self.login_url))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(form)
            .timeout(self.limits.timeout)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let after = retry_after(resp.headers());
        let headers = resp.headers().clone();
        let body = self.read_body(resp).await?;
        if !(200..300).contains(&status) {
            let mut e = ApiError::from_body(status, &body, after, |t| self.scrub(t));
            let note = super::request_note("POST", "/services/oauth2/token", &headers);
            e.message = format!("login failed: {} ({note})", e.message);
            if self.kind == Grant::ClientCredentials
                && e.message.contains("not supported on this domain")
            {
                e.message.push_str(&format!(
                    " (the client-credentials grant is answered only at the org's My Domain: set base_url to https://<MyDomain>.my.salesforce.com, not {})",
                    self.login_url
                ));
            }
            return Err(e.into_source(|m| self.scrub(m)));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            access_token: String,
            instance_url: String,
        }
        let t: Token =
            serde_json::from_slice(&body).map_err(|e| wire::decode_error("token response", e))?;
        let instance = t.instance_url.trim_end_matches('/').to_string();
        match url::Url::parse(&instance) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.path() == "/" => {}
            _ => {
                return Err(SourceError::Decode {
                    message: format!("token response: instance_url '{instance}' is not a site URL"),
                    truncated: false,
                });
            }
        }
        *self.current_token.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(t.access_token.clone());
        tracing::debug!(instance_url = %instance, "salesforce login");
        Ok(Session {
            token: Secret::new(t.access_token),
            instance_url: instance,
            generation,
        })
    }

    async fn session(&self) -> Result<Session, SourceError> {
        let mut s = self.session.lock().await;
        if let Some(s) = s.as_ref() {
            return Ok(s.clone());
        }
        let fresh = self.login(1).await?;
        *s = Some(fresh.clone());
        Ok(fresh)
    }

    /// Logs in again unless someone already replaced the session `stale` was using.
    async fn relogin(&self, stale: u64) -> Result<Session, SourceError> {
        let mut s = self.session.lock().await;
        if let Some(current) = s.as_ref()
            && current.generation != stale
        {
            return Ok(current.clone());
        }
        let fresh = self.login(stale + 1).await?;
        *s = Some(fresh.clone());
        Ok(fresh)
    }

    async fn send(
        &self,
        session: &Session,
        method: &Method,
        path: &str,
        accept: &'static str,
        batch: Option<u32>,
        json: Option<&[u8]>,
    ) -> Result<Reply, CallError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", session.token.expose()))
            .map_err(|_| SourceError::Decode {
                message: "the access token is not a valid header value".into(),
                truncated: false,
            })?;
        auth.set_sensitive(true);
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", session.instance_url))
            .header(AUTHORIZATION, auth)
            .header(ACCEPT, accept)
            .timeout(self.limits.timeout);
        if let Some(n) = batch {
            req = req.header("Sforce-Query-Options", format!("batchSize={n}"));
        }
        if let Some(body) = json {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = self.read_body(resp).await?;
        let usage = headers
            .get("Sforce-Limit-Info")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_limit_info);
        if !(200..300).contains(&status) {
            let mut e =
                ApiError::from_body(status, &body, retry_after(&headers), |t| self.scrub(t));
            // The request it answered, as the other sources name theirs: its path without the
            // query, and the id the answer carried, if any.
            let note = super::request_note(method.as_str(), path, &headers);
            e.message = format!("{} ({note})", e.message);
            return Err(CallError::Api(e));
        }
        Ok(Reply {
            headers,
            body,
            usage,
        })
    }

    /// One API call with the session. On 401 it logs in again and answers `SessionRenewed`:
    /// the caller asks again through the rate budget.
    async fn call(
        &self,
        method: Method,
        path: &str,
        accept: &'static str,
        batch: Option<u32>,
        json: Option<&[u8]>,
    ) -> Result<Reply, CallError> {
        let session = self.session().await?;
        match self
            .send(&session, &method, path, accept, batch, json)
            .await
        {
            Err(CallError::Api(e)) if e.status == 401 => {
                tracing::info!(code = ?e.code, "salesforce session rejected; logging in again");
                self.relogin(session.generation).await?;
                Err(CallError::Source(SourceError::SessionRenewed {
                    status: e.status,
                    message: self.scrub(&e.message),
                }))
            }
            other => other,
        }
    }

    fn fail(&self, e: CallError) -> SourceError {
        match e {
            CallError::Api(e) => e.into_source(|m| self.scrub(m)),
            CallError::Source(e) => e,
        }
    }

    async fn query(&self, soql: &str, batch: u32) -> Result<Reply, CallError> {
        let q: String = url::form_urlencoded::byte_serialize(soql.as_bytes()).collect();
        let path = format!("/services/data/{API_VERSION}/query?q={q}");
        self.call(Method::GET, &path, "application/json", Some(batch), None)
            .await
    }

    /// A REST page: the body for the sink, the next cursor from the page's keys (`since`: when
    /// its query was sent, `query_sent`).
    fn rest_page(
        &self,
        spec: &Spec,
        window: &Window,
        reply: Reply,
        mut after: Option<After>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Page, SourceError> {
        let page = wire::parse_query_page(&reply.body, &spec.id, &spec.stamp)?;
        for (id, stamp) in &page.keys {
            let (Some(id), Some(stamp)) = (id, stamp) else {
                continue;
            };
            let Some(ts) = parse_sf_time(stamp) else {
                return Err(SourceError::Decode {
                    message: format!("record {id}: {} '{stamp}' is not a dateTime", spec.stamp),
                    truncated: false,
                });
            };
            // A record edited after the query shows its new time, past its place in the
            // query's order (outside the window, or at or after `since`): it says nothing
            // about how far the window has been read.
            if window.contains(ts) && since.is_none_or(|s| ts < s) {
                let here = After { ts, id: id.clone() };
                if after.as_ref().is_none_or(|a| here > *a) {
                    after = Some(here);
                }
            }
        }
        let next = if page.done {
            None
        } else {
            let next = page.next_records_url.ok_or_else(|| SourceError::Decode {
                message: "query result says done:false without a nextRecordsUrl".into(),
                truncated: false,
            })?;
            if !cursor::is_data_path(&next) {
                return Err(SourceError::Decode {
                    message: format!("nextRecordsUrl '{next}' is not a /services/data/ path"),
                    truncated: false,
                });
            }
            Some(Cursor::Rest { next, after, since }.encode())
        };
        Ok(Page {
            bytes: reply.body.len(),
            body: reply.body,
            records_at: RecordsAt::Member("records"),
            next,
            usage: reply.usage,
        })
    }

    async fn first_page(
        &self,
        spec: &Spec,
        window: &Window,
        batch: u32,
        max_records: u32,
    ) -> Result<Page, SourceError> {
        let key = (spec.sobject.clone(), window.start, window.end);
        let known_job = self
            .bulk_jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if let Some(job) = known_job {
            return self
                .bulk_first_page(spec, window, key, Some(job), max_records)
                .await;
        }
        let sent = Utc::now();
        let reply = self
            .query(&spec.window_query(window), batch)
            .await
            .map_err(|e| self.fail(e))?;
        let total = wire::parse_query_page(&reply.body, &spec.id, &spec.stamp)?.total_size;
        if total > self.bulk_threshold {
            tracing::info!(sobject = %spec.sobject, %window, total, threshold = self.bulk_threshold,
                "window above the bulk threshold; reading it with a Bulk API 2.0 query job");
            return self
                .bulk_first_page(spec, window, key, None, max_records)
                .await;
        }
        self.rest_page(spec, window, reply, None, Some(query_sent(sent)))
    }

    async fn rest_more(
        &self,
        spec: &Spec,
        window: &Window,
        next: &str,
        after: Option<After>,
        since: Option<DateTime<Utc>>,
        batch: u32,
    ) -> Result<Page, SourceError> {
        match self
            .call(Method::GET, next, "application/json", Some(batch), None)
            .await
        {
            Ok(reply) => self.rest_page(spec, window, reply, after, since),
            Err(CallError::Api(e))
                if matches!(e.status, 400 | 404) && e.has_code("INVALID_QUERY_LOCATOR") =>
            {
                tracing::warn!(sobject = %spec.sobject, %window, after = ?after,
                    "query locator is gone; continuing the window with a keyset query");
                let soql = match &after {
                    Some(a) => spec.keyset_query(window, a.ts, &a.id),
                    None => spec.window_query(window),
                };
                let sent = Utc::now();
                let reply = self.query(&soql, batch).await.map_err(|e| self.fail(e))?;
                self.rest_page(spec, window, reply, after, Some(query_sent(sent)))
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn jobs_path(job: Option<&str>) -> String {
        match job {
            Some(id) => format!("/services/data/{API_VERSION}/jobs/query/{id}"),
            None => format!("/services/data/{API_VERSION}/jobs/query"),
        }
    }

    async fn create_job(&self, spec: &Spec, window: &Window) -> Result<String, SourceError> {
        let body = serde_json::json!({
            "operation": "query",
            "query": spec.bulk_query(window),
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        });
        let body = serde_json::to_vec(&body).expect("a JSON value serializes");
        let reply = self
            .call(
                Method::POST,
                &Self::jobs_path(None),
                "application/json",
                None,
                Some(&body),
            )
            .await
            .map_err(|e| self.fail(e))?;
        #[derive(serde::Deserialize)]
        struct Created {
            id: String,
        }
        let created: Created = serde_json::from_slice(&reply.body)
            .map_err(|e| wire::decode_error("bulk job creation", e))?;
        if created.id.is_empty() || !created.id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(SourceError::Decode {
                message: format!("bulk job creation: job id '{}' is not an Id", created.id),
                truncated: false,
            });
        }
        tracing::info!(sobject = %spec.sobject, %window, job = %created.id, "bulk query job created");
        Ok(created.id)
    }

    /// Polls a job until `JobComplete`, sleeping `first`, then twice as long, up to `max`.
    /// The flag says the job itself ended badly (`Failed`, `Aborted`).
    async fn wait_for_job(&self, job: &str) -> Result<(), (SourceError, bool)> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Info {
            state: String,
            #[serde(default)]
            error_message: Option<String>,
        }
        let started = tokio::time::Instant::now();
        let mut delay = self.poll.first;
        loop {
            let reply = self
                .call(
                    Method::GET,
                    &Self::jobs_path(Some(job)),
                    "application/json",
                    None,
                    None,
                )
                .await
                .map_err(|e| (self.fail(e), false))?;
            let info: Info = serde_json::from_slice(&reply.body).map_err(|e| {
                (
                    wire::decode_error(&format!("bulk job {job} status"), e),
                    false,
                )
            })?;
            let why = || self.scrub(info.error_message.as_deref().unwrap_or("no errorMessage"));
            match info.state.as_str() {
                "JobComplete" => return Ok(()),
                // Worth another attempt with a new job.
                "Failed" => {
                    let e = SourceError::Http {
                        status: 500,
                        message: format!("Bulk API 2.0 query job {job} failed: {}", why()),
                        retry_after: None,
                    };
                    return Err((e, true));
                }
                // Someone stopped it on purpose.
                "Aborted" => {
                    let e = SourceError::Decode {
                        message: format!("Bulk API 2.0 query job {job} was aborted: {}", why()),
                        truncated: false,
                    };
                    return Err((e, true));
                }
                "UploadComplete" | "InProgress" | "Open" => {}
                other => {
                    let e = SourceError::Decode {
                        message: format!("bulk job {job} is in unknown state '{other}'"),
                        truncated: false,
                    };
                    return Err((e, true));
                }
            }
            if started.elapsed() >= self.poll.give_up {
                let e = SourceError::Transport(format!(
                    "bulk job {job} still {} after {:?}",
                    info.state, self.poll.give_up
                ));
                return Err((e, false));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.poll.max);
        }
    }

    async fn bulk_first_page(
        &self,
        spec: &Spec,
        window: &Window,
        key: BulkKey,
        job: Option<String>,
        max_records: u32,
    ) -> Result<Page, SourceError> {
        let job = match job {
            Some(j) => j,
            None => {
                let j = self.create_job(spec, window).await?;
                self.bulk_jobs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone(), j.clone());
                j
            }
        };
        if let Err((e, ended)) = self.wait_for_job(&job).await {
            // A failed or aborted job is not waited for again: the next attempt starts anew.
            if ended {
                self.forget_job(&key);
            }
            return Err(e);
        }
        self.bulk_results(spec, window, &job, None, max_records)
            .await
    }

    fn forget_job(&self, key: &BulkKey) {
        self.bulk_jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    async fn bulk_results(
        &self,
        spec: &Spec,
        window: &Window,
        job: &str,
        locator: Option<&str>,
        batch: u32,
    ) -> Result<Page, SourceError> {
        let mut path = format!("{}/results?maxRecords={batch}", Self::jobs_path(Some(job)));
        if let Some(l) = locator {
            path.push_str("&locator=");
            path.extend(url::form_urlencoded::byte_serialize(l.as_bytes()));
        }
        let reply = self
            .call(Method::GET, &path, "text/csv", None, None)
            .await
            .map_err(|e| self.fail(e))?;
        let header = |name: &str| {
            reply
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
        };
        let next_locator = header("Sforce-Locator").ok_or_else(|| SourceError::Decode {
            message: format!("bulk job {job} results without a Sforce-Locator header"),
            truncated: false,
        })?;
        let (json, rows) = csv_to_json(&reply.body).map_err(|m| SourceError::Decode {
            message: format!("bulk job {job} results: {m}"),
            truncated: true,
        })?;
        if let Some(n) = header("Sforce-NumberOfRecords").and_then(|n| n.parse::<usize>().ok())
            && n != rows
        {
            return Err(SourceError::Decode {
                message: format!(
                    "bulk job {job} results: Sforce-NumberOfRecords says {n}, the CSV holds {rows}"
                ),
                truncated: true,
            });
        }
        let next = if next_locator.is_empty() || next_locator == "null" {
            self.forget_job(&(spec.sobject.clone(), window.start, window.end));
            None
        } else {
            Some(
                Cursor::Bulk {
                    job: job.to_string(),
                    locator: next_locator,
                }
                .encode(),
            )
        };
        Ok(Page {
            bytes: reply.body.len(),
            body: bytes::Bytes::from(json).into(),
            records_at: RecordsAt::Body,
            next,
            usage: reply.usage,
        })
    }
}

/// `Sforce-Query-Options: batchSize` allows 200..=2000.
fn batch_size(endpoint: &EndpointDef) -> u32 {
    endpoint.page_size.clamp(200, 2000)
}

/// A Salesforce dateTime as REST (`2013-05-20T20:49:32.000+0000`) or Bulk (`...000Z`) shows it.
fn parse_sf_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// How far before a query's sending its `since` is put: the org's clock and ours may differ
/// by this much. Records stamped within it only re-read, never skip, after a lost locator.
const CLOCK_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// The `since` of a query sent at `sent` (`Cursor::Rest`).
fn query_sent(sent: DateTime<Utc>) -> DateTime<Utc> {
    sent - CLOCK_MARGIN
}

#[async_trait]
impl Source for Salesforce {
    fn service(&self) -> Service {
        Service::Salesforce
    }

    async fn fetch_page(
        &self,
        endpoint: &EndpointDef,
        window: &Window,
        cursor: Option<&str>,
    ) -> Result<Page, SourceError> {
        let spec = Spec::new(endpoint)?;
        let batch = batch_size(endpoint);
        // Bulk results pages hold `page_size` records (maxRecords has no 2000 cap).
        let max_records = endpoint.page_size.max(1);
        match cursor.map(Cursor::decode).transpose()? {
            None => self.first_page(&spec, window, batch, max_records).await,
            Some(Cursor::Rest { next, after, since }) => {
                self.rest_more(&spec, window, &next, after, since, batch)
                    .await
            }
            Some(Cursor::Bulk { job, locator }) => {
                match self
                    .bulk_results(&spec, window, &job, Some(&locator), max_records)
                    .await
                {
                    // Jobs live 7 days; a resume after that (or after a sandbox restart)
                    // cannot continue the job's row order, only start the window again.
                    Err(SourceError::Http {
                        status: 404,
                        message,
                        ..
                    }) => Err(SourceError::CursorExpired {
                        message: format!("Bulk API 2.0 query job {job} is gone: {message}"),
                    }),
                    other => other,
                }
            }
        }
    }

    async fn count(&self, endpoint: &EndpointDef, window: &Window) -> Result<u64, SourceError> {
        let spec = Spec::new(endpoint)?;
        let reply = self
            .query(&spec.count_query(window), batch_size(endpoint))
            .await
            .map_err(|e| self.fail(e))?;
        Ok(wire::parse_query_page(&reply.body, &spec.id, &spec.stamp)?.total_size)
    }

    async fn monthly_counts(
        &self,
        endpoint: &EndpointDef,
        window: &Window,
    ) -> Result<Option<Vec<(Window, u64)>>, SourceError> {
        let spec = Spec::new(endpoint)?;
        let reply = self
            .query(&spec.monthly_count_query(window), batch_size(endpoint))
            .await
            .map_err(|e| self.fail(e))?;
        let rows = wire::parse_monthly_counts(&reply.body)?;
        month_pieces(window, &rows).map(Some)
    }

    /// `GET /sobjects/{Object}/describe` of the endpoint's object and of each relationship's
    /// target (`describe.rs`).
    async fn unreadable_columns(
        &self,
        endpoint: &EndpointDef,
        pace: &dyn super::Pace,
    ) -> Result<Option<Vec<String>>, SourceError> {
        self.unreadable(endpoint, pace).await.map(Some)
    }

    /// The window's REST query, as the backfill sends it, with `LIMIT 1`: never a Bulk job.
    async fn probe(&self, endpoint: &EndpointDef, window: &Window) -> Result<u64, SourceError> {
        let spec = Spec::new(endpoint)?;
        let soql = format!("{} LIMIT 1", spec.window_query(window));
        let reply = self
            .query(&soql, batch_size(endpoint))
            .await
            .map_err(|e| self.fail(e))?;
        let page = wire::parse_query_page(&reply.body, &spec.id, &spec.stamp)?;
        Ok(page.keys.len() as u64)
    }

    /// `GET /limits`: the org's `DailyApiRequests`.
    async fn allocation(&self) -> Result<Option<ApiUsage>, SourceError> {
        let path = format!("/services/data/{API_VERSION}/limits");
        let reply = self
            .call(Method::GET, &path, "application/json", None, None)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(Some(parse_limits(&reply.body)?))
    }
}

/// `window` cut at UTC month starts, each piece with its month's count from `rows` (0 for a
/// month without a row). A row for a month outside the window is an error.
fn month_pieces(
    window: &Window,
    rows: &[(i32, u32, u64)],
) -> Result<Vec<(Window, u64)>, SourceError> {
    use chrono::{Datelike, TimeZone};
    let month_start = |y: i32, m: u32| Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single();
    let next = |y: i32, m: u32| if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let mut pieces = Vec::new();
    let mut used = 0;
    let (mut y, mut m) = (window.start.year(), window.start.month());
    let mut at = window.start;
    while at < window.end {
        let (ny, nm) = next(y, m);
        let end = month_start(ny, nm).map_or(window.end, |e| e.min(window.end));
        let n: Vec<u64> = rows
            .iter()
            .filter(|r| (r.0, r.1) == (y, m))
            .map(|r| r.2)
            .collect();
        used += n.len();
        pieces.push((Window::new(at, end), n.iter().sum()));
        (y, m, at) = (ny, nm, end);
    }
    if used != rows.len() {
        return Err(SourceError::Decode {
            message: format!("grouped count of {window}: a row names a month outside the window"),
            truncated: false,
        });
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests;
