//! ConnectWise PSA (Manage) REST 3.0: Basic auth `company+public:private` with a `clientId`
//! header, `conditions` windows on `lastUpdated`, forward-only keyset paging by `pageId`.
//!
//! The end of a forward-only read: a `Link` header holding the next URL means more follows;
//! an empty one means the last page (what clients written against ConnectWise see). A page
//! without any `Link` is not documented (SOURCE_APIS.md marks it unconfirmed; one reading is
//! "forward-only not supported", which a navigable answer would show by its `rel="next"`
//! link without a `pageId`). It is read from the page itself: fewer records than the page
//! size asked for (1,000 at most, ConnectWise's documented maximum, so never cut shorter by
//! the server) is the last page; a full page goes on from its last `id`, since `pageId`
//! means `id > pageId`. That costs at most one more request, which comes back empty, and a
//! server ignoring `pageId` is caught by the check that paging advances.

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderValue};

use super::{
    Page, ResponseLimits, Source, SourceError, body_excerpt, credential_secrets, host_of,
    read_answer, request_error, retry_after, same_origin,
};
use crate::config::{Credentials, EndpointDef};
use crate::domain::{RecordsAt, Service, Window};
use crate::secret::{Secret, scrub};

pub struct ConnectWise {
    base_url: String,
    http: reqwest::Client,
    auth: Secret,
    client_id: Secret,
    secrets: Vec<String>,
    limits: ResponseLimits,
}

/// `lastUpdated >= [start] and lastUpdated < [end]`: the half-open window in CW syntax.
pub fn window_conditions(field: &str, window: &Window) -> String {
    format!(
        "{field} >= [{}] and {field} < [{}]",
        window.start.format("%Y-%m-%dT%H:%M:%SZ"),
        window.end.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// The URL a `Link` header points at (its first entry), as written.
fn link_target(link: &str) -> Option<&str> {
    Some(
        link.split(';')
            .next()?
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>'),
    )
}

/// The next `pageId` from a forward-only `Link` header; `None` when the header is empty.
pub fn next_page_id(link: &str) -> Option<String> {
    let query = link_target(link)?.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("pageId="))
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
}

impl ConnectWise {
    pub fn new(
        base_url: &str,
        creds: Credentials,
        http: reqwest::Client,
    ) -> Result<Self, SourceError> {
        let (company, public, private, client_id) = (
            creds.field("company_id")?,
            creds.field("public_key")?,
            creds.field("private_key")?,
            creds.field("client_id")?,
        );
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{company}+{public}:{private}"));
        // Every credential field (the `clientId` header too), and what is built from them.
        let mut secrets = credential_secrets(&creds);
        secrets.extend([token.clone(), format!("{public}:{private}")]);
        Ok(ConnectWise {
            base_url: base_url.trim_end_matches('/').to_string(),
            http,
            auth: Secret::new(format!("Basic {token}")),
            client_id: Secret::new(client_id),
            secrets,
            limits: ResponseLimits::default(),
        })
    }

    /// The same client, held to `limits` (the defaults otherwise).
    pub fn with_limits(mut self, limits: ResponseLimits) -> Self {
        self.limits = limits;
        self
    }

    fn headers(&self, forward_only: bool) -> Result<HeaderMap, SourceError> {
        let mut h = HeaderMap::new();
        let mut auth = HeaderValue::from_str(self.auth.expose()).map_err(|_| {
            SourceError::Config("credentials contain characters not allowed in a header".into())
        })?;
        auth.set_sensitive(true);
        h.insert(reqwest::header::AUTHORIZATION, auth);
        let mut cid = HeaderValue::from_str(self.client_id.expose()).map_err(|_| {
            SourceError::Config("client_id contains characters not allowed in a header".into())
        })?;
        cid.set_sensitive(true);
        h.insert("clientId", cid);
        h.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/vnd.connectwise.com+json; version=2021.1"),
        );
        if forward_only {
            h.insert("pagination-type", HeaderValue::from_static("forward-only"));
        }
        Ok(h)
    }

    async fn get(
        &self,
        url: url::Url,
        forward_only: bool,
    ) -> Result<(HeaderMap, super::Body), SourceError> {
        let asked = url.to_string();
        let resp = self
            .http
            .get(url)
            .headers(self.headers(forward_only)?)
            .timeout(self.limits.timeout)
            .send()
            .await
            .map_err(|e| request_error(e, &self.limits, |t| self.scrub(t)))?;
        let (status, headers, body) = read_answer(resp, "", &self.limits).await?;
        if !status.is_success() {
            let message = self.scrub(&format!(
                "{} ({})",
                error_message(&body, |t| self.scrub(t)),
                super::request_note("GET", &asked, &headers)
            ));
            return Err(SourceError::from_status(
                status.as_u16(),
                None,
                message,
                retry_after(&headers),
            ));
        }
        Ok((headers, body))
    }

    fn scrub(&self, text: &str) -> String {
        scrub(text, self.secrets.iter().map(String::as_str))
    }

    /// A `Link` to another host or port is refused, naming both, like a redirect there
    /// (`sources::CrossHostRedirect`): only its `pageId` is used, but an API pointing its
    /// next page elsewhere is not the API configured. A relative link is the API's own.
    fn check_link_host(&self, page: &url::Url, link: &str) -> Result<(), SourceError> {
        let Some(Ok(target)) = link_target(link).map(url::Url::parse) else {
            return Ok(());
        };
        if same_origin(page, &target) {
            return Ok(());
        }
        Err(SourceError::Config(self.scrub(&format!(
            "{} answered with a Link header pointing at another host, {}: \
             its next page is not followed",
            host_of(page),
            host_of(&target)
        ))))
    }

    fn url(&self, endpoint: &EndpointDef, suffix: &str) -> Result<url::Url, SourceError> {
        url::Url::parse(&format!("{}/{}{suffix}", self.base_url, endpoint.path))
            .map_err(|e| SourceError::Config(format!("base URL {}: {e}", self.base_url)))
    }
}

/// ConnectWise's largest `pageSize`; a larger one is served as this many.
const MAX_PAGE_SIZE: u32 = 1000;

/// The next `pageId` of a forward-only page that came without a `Link` header (see the
/// module doc): none after a short page, else the last `id` of this one.
fn next_without_link(
    body: &[u8],
    page_size: u32,
    path: &str,
) -> Result<Option<String>, SourceError> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: i64,
    }
    let ids = serde_json::from_slice::<Vec<Id>>(body).map_err(|e| SourceError::Decode {
        message: format!("{path}: a page without a Link header: {e}"),
        truncated: e.is_eof(),
    })?;
    Ok(match ids.last() {
        Some(last) if ids.len() >= page_size as usize => Some(last.id.to_string()),
        _ => None,
    })
}

/// The API's own words from a CW error body (`{"code":..,"message":..}`), else the start
/// of the raw text, scrubbed by `scrub` before it is cut.
fn error_message(body: &[u8], scrub: impl Fn(&str) -> String) -> String {
    #[derive(serde::Deserialize)]
    struct CwError {
        code: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_slice::<CwError>(body) {
        // Empty parts are left out: `{"code":"","message":"not found"}` reads "not found".
        Ok(CwError { code, message }) if code.is_some() || message.is_some() => [code, message]
            .into_iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .collect::<Vec<_>>()
            .join(": "),
        _ => body_excerpt(body, scrub),
    }
}

#[async_trait]
impl Source for ConnectWise {
    fn service(&self) -> Service {
        Service::Connectwise
    }

    async fn fetch_page(
        &self,
        endpoint: &EndpointDef,
        window: &Window,
        cursor: Option<&str>,
    ) -> Result<Page, SourceError> {
        let mut url = self.url(endpoint, "")?;
        let page_size = endpoint.page_size.min(MAX_PAGE_SIZE);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair(
                "conditions",
                &window_conditions(endpoint.query_field(), window),
            );
            q.append_pair("pageSize", &page_size.to_string());
            if let Some(c) = cursor {
                q.append_pair("pageId", c);
            }
        }
        let (headers, body) = self.get(url.clone(), true).await?;
        let link = headers
            .get(reqwest::header::LINK)
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let next = match link {
            // Forward-only: an empty Link header marks the last page.
            Some(l) if l.trim().is_empty() => None,
            Some(l) => {
                self.check_link_host(&url, &l)?;
                Some(next_page_id(&l).ok_or_else(|| SourceError::Decode {
                    message: format!("Link header without a pageId: {l}"),
                    truncated: false,
                })?)
            }
            None => next_without_link(&body, page_size, &endpoint.path)?,
        };
        if let (Some(n), Some(c)) = (&next, cursor)
            && n.parse::<i64>().ok() <= c.parse::<i64>().ok()
        {
            return Err(SourceError::Decode {
                message: format!("pageId went from {c} to {n}: paging would not advance"),
                truncated: false,
            });
        }
        Ok(Page {
            bytes: body.len(),
            body,
            records_at: RecordsAt::Body,
            next,
            usage: None,
        })
    }

    async fn count(&self, endpoint: &EndpointDef, window: &Window) -> Result<u64, SourceError> {
        let mut url = self.url(endpoint, "/count")?;
        url.query_pairs_mut().append_pair(
            "conditions",
            &window_conditions(endpoint.query_field(), window),
        );
        let (_, body) = self.get(url, false).await?;
        #[derive(serde::Deserialize)]
        struct Count {
            count: u64,
        }
        serde_json::from_slice::<Count>(&body)
            .map(|c| c.count)
            .map_err(|e| SourceError::Decode {
                message: format!("{}/count: {e}", endpoint.path),
                truncated: e.is_eof(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn conditions_are_half_open_in_cw_syntax() {
        let w = Window::new(
            chrono::Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).unwrap(),
            chrono::Utc.with_ymd_and_hms(2023, 2, 1, 0, 0, 0).unwrap(),
        );
        assert_eq!(
            window_conditions("lastUpdated", &w),
            "lastUpdated >= [2023-01-01T00:00:00Z] and lastUpdated < [2023-02-01T00:00:00Z]"
        );
    }

    #[test]
    fn link_header_gives_the_next_page_id() {
        let l = "<https://x/v4_6_release/apis/3.0/service/tickets?conditions=a&pageSize=1000&pageId=20931>; rel=\"next\"";
        assert_eq!(next_page_id(l).as_deref(), Some("20931"));
        assert_eq!(
            next_page_id("<https://x/a?pageSize=10>; rel=\"next\""),
            None
        );
    }

    #[test]
    fn a_page_without_link_ends_when_short_and_goes_on_from_its_last_id_when_full() {
        let page = br#"[{"id":7,"summary":"a"},{"id":9,"_info":{}}]"#;
        assert_eq!(next_without_link(page, 3, "t").unwrap(), None);
        assert_eq!(
            next_without_link(page, 2, "t").unwrap().as_deref(),
            Some("9")
        );
        assert_eq!(next_without_link(b"[]", 2, "t").unwrap(), None);
        let err = next_without_link(b"{\"oops\":1}", 2, "service/tickets").unwrap_err();
        assert!(err.to_string().contains("service/tickets"), "{err}");
    }

    #[test]
    fn error_bodies_give_the_api_message() {
        let empty_code = br#"{"code":"","message":"not found"}"#;
        assert_eq!(error_message(empty_code, |s| s.to_string()), "not found");
        let body = br#"{"code":"Unauthorized","message":"UserNotAuthenticated"}"#;
        assert_eq!(
            error_message(body, str::to_string),
            "Unauthorized: UserNotAuthenticated"
        );
        assert_eq!(
            error_message(b"<html>bad gateway</html>", str::to_string),
            "<html>bad gateway</html>"
        );
    }

    #[test]
    fn credentials_never_reach_debug_output() {
        let creds = Credentials::from_pairs([
            ("company_id".to_string(), "acme".to_string()),
            ("public_key".to_string(), "pub".to_string()),
            ("private_key".to_string(), "very-secret-key".to_string()),
            ("client_id".to_string(), "cid-123".to_string()),
        ]);
        let cw =
            ConnectWise::new("http://127.0.0.1:1/apis/3.0", creds, reqwest::Client::new()).unwrap();
        let shown = format!("{:?} {}", cw.auth, cw.auth);
        assert!(
            !shown.contains("very-secret-key") && !shown.contains("cid-123"),
            "{shown}"
        );
        let missing = ConnectWise::new("http://h", Credentials::default(), reqwest::Client::new());
        assert!(matches!(missing, Err(SourceError::Config(m)) if m.contains("company_id")));
    }
}
