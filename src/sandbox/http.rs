//! The handler scaffolding every simulated API shares: an answer under construction
//! (`Reply`) that is counted, held back and spoiled the same way everywhere, the fault-plan
//! guard, and small request helpers (base URL, Basic credentials, links, `_sandbox` JSON).
//!
//! What differs between the APIs (error envelopes, content types, which headers go with a
//! refusal) stays with each simulator; this module only carries it.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::{FaultAction, FaultKind, Outcome, Refusal, Shared, Slot, spoiled_body};
use crate::domain::Service;

/// The sandbox's request ids (`X-Request-Id: sbx-0000002a`), one per answer.
static REQUEST_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One answer of a simulated API, before it is sent.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) outcome: Outcome,
    content_type: &'static str,
    /// Sent after `Content-Type`, in this order; a value that is not valid header text is
    /// left out.
    headers: Vec<(HeaderName, String)>,
    pub(crate) body: Vec<u8>,
    /// A fault that spoils an otherwise good answer (slow, truncated, malformed); boxed to
    /// keep `Result<_, Reply>` small.
    spoil: Option<Box<FaultAction>>,
    /// The tenant's admission, held until the answer is sent (latency included); boxed to
    /// keep `Result<_, Reply>` small.
    slot: Option<Box<Slot>>,
}

impl Reply {
    /// A 200 answer.
    pub(crate) fn ok(content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status: StatusCode::OK,
            outcome: Outcome::Ok,
            content_type,
            headers: Vec::new(),
            body,
            spoil: None,
            slot: None,
        }
    }

    /// A refusal counted as neither a fault nor an auth or rate-limit failure (until
    /// `with_outcome` says otherwise).
    pub(crate) fn refusal(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            outcome: Outcome::Other,
            ..Reply::ok(content_type, body)
        }
    }

    /// A refusal whose body is `body` as JSON.
    pub(crate) fn refusal_json(
        status: StatusCode,
        content_type: &'static str,
        body: &serde_json::Value,
    ) -> Reply {
        Reply::refusal(
            status,
            content_type,
            serde_json::to_vec(body).unwrap_or_default(),
        )
    }

    pub(crate) fn with_outcome(mut self, outcome: Outcome) -> Reply {
        self.outcome = outcome;
        self
    }

    pub(crate) fn with_content_type(mut self, content_type: &'static str) -> Reply {
        self.content_type = content_type;
        self
    }

    pub(crate) fn header(mut self, name: HeaderName, value: impl ToString) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }

    pub(crate) fn headers(
        mut self,
        headers: impl IntoIterator<Item = (HeaderName, String)>,
    ) -> Reply {
        self.headers.extend(headers);
        self
    }

    /// The same answer, spoiled by `spoil` when it is sent.
    pub(crate) fn spoiled_by(mut self, spoil: Option<FaultAction>) -> Reply {
        self.spoil = spoil.map(Box::new);
        self
    }

    /// The same answer, counted in flight for its tenant until it is sent.
    pub(crate) fn holding(mut self, slot: Option<Slot>) -> Reply {
        self.slot = slot.map(Box::new);
        self
    }

    /// Holds the answer back for the sandbox's latency and a `slow` fault, counts it in the
    /// sandbox stats, and sends it.
    pub(crate) async fn finish(self, shared: &Shared) -> Response {
        if let Some(latency) = &shared.latency {
            tokio::time::sleep(latency.draw()).await;
        }
        if let Some(action) = &self.spoil
            && action.kind == FaultKind::Slow
        {
            tokio::time::sleep(action.delay).await;
        }
        shared.counters.record(self.outcome, self.body.len());
        self.into_response()
    }

    /// The response as sent, uncounted.
    pub(crate) fn into_response(self) -> Response {
        let (body, _) = spoiled_body(self.body, self.spoil.as_ref().map(|a| a.kind));
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        // Every answer names its request, as APIs do for their support desks.
        let id = REQUEST_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(v) = HeaderValue::from_str(&format!("sbx-{id:08x}")) {
            headers.insert(HeaderName::from_static("x-request-id"), v);
        }
        response
    }
}

impl Refusal {
    /// How the stats count this refusal.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Refusal::Rate { .. } => Outcome::RateLimited,
            Refusal::Concurrency => Outcome::ConcurrencyRefused,
        }
    }

    /// The `Retry-After` seconds that go with it (a concurrency refusal: 1).
    pub(crate) fn retry_after_secs(&self) -> u64 {
        match self {
            Refusal::Rate { retry_after_secs } => *retry_after_secs,
            Refusal::Concurrency => 1,
        }
    }
}

impl Shared {
    /// Admits a request of `key` of `service` (see `limits::Gate`); on success its slot
    /// goes into `held`, for the handler to attach to its answer with `Reply::holding`.
    pub(crate) fn admit(
        &self,
        service: Service,
        key: &str,
        held: &mut Option<Slot>,
    ) -> Result<(), Refusal> {
        *held = Some(self.gate.admit(service, key)?);
        Ok(())
    }
}

/// What a `touch` does to the records it picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Edit {
    /// To new update times past the window's end.
    Move,
    /// To later update times inside the window.
    MoveInside,
    Delete,
}

/// What a simulator makes of the fault its request draws from the plan.
pub(crate) struct FaultAnswers<S, E, T> {
    /// The API's own error answer to a `status` fault.
    pub(crate) status: S,
    /// Forgets the caller's credentials and answers as to an expired one.
    pub(crate) expire_token: E,
    /// Moves this many records of the window being read past its end (`Edit::Move`) or
    /// deletes them (`Edit::Delete`).
    pub(crate) touch: T,
}

/// Applies the fault plan to a request on `path` of `service` whose window starts at
/// `window_start`: `Err` is the answer instead (counted as a fault), `Ok(Some)` spoils the
/// good answer, `Ok(None)` leaves it alone.
pub(crate) fn planned_fault<S, E, T>(
    shared: &Shared,
    service: Service,
    path: &str,
    window_start: Option<i64>,
    answers: FaultAnswers<S, E, T>,
) -> Result<Option<FaultAction>, Reply>
where
    S: FnOnce(&FaultAction) -> Reply,
    E: FnOnce() -> Reply,
    T: FnOnce(u32, Edit),
{
    let Some(action) = shared.faults.take(service, path, window_start) else {
        return Ok(None);
    };
    match action.kind {
        FaultKind::Status => Err((answers.status)(&action).with_outcome(Outcome::Fault)),
        FaultKind::ExpireToken => Err((answers.expire_token)().with_outcome(Outcome::Fault)),
        FaultKind::TouchRecords => {
            let edit = if action.inside_window {
                Edit::MoveInside
            } else {
                Edit::Move
            };
            (answers.touch)(action.records, edit);
            Ok(None)
        }
        FaultKind::DeleteRecords => {
            (answers.touch)(action.records, Edit::Delete);
            Ok(None)
        }
        FaultKind::Slow | FaultKind::Truncate | FaultKind::Malformed | FaultKind::Endless => {
            Ok(Some(action))
        }
        // Taken only by a job's status poll (`FaultPlan::take_job_end`).
        FaultKind::JobFailed | FaultKind::JobAborted => Ok(None),
    }
}

impl FaultAction {
    /// The status a `status` fault answers with (500 if it is not a valid one).
    pub(crate) fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl Shared {
    /// `http://host` of the current request (its `Host`, else the address the sandbox
    /// listens on), for links and instance URLs.
    pub(crate) fn base_url(&self, headers: &HeaderMap) -> String {
        match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
            Some(host) if !host.is_empty() => format!("http://{host}"),
            _ => format!("http://{}", self.addr),
        }
    }

    /// Records a 200 list page, counting it in `repeated_pages` when the same page was
    /// answered before.
    pub(crate) fn note_page(&self, key: String) {
        if self.page_seen_before(key) {
            self.counters
                .repeated_pages
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The `user:password` text of Basic credentials (`rest` is what follows `Basic `).
pub(crate) fn decode_basic(rest: &str) -> Option<String> {
    base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// `base?raw_query` with the parameter `is_key` recognises replaced by `key=value` at the
/// end, other parameters kept exactly as the client encoded them.
pub(crate) fn link_with(
    base: &str,
    raw_query: &str,
    is_key: impl Fn(&str) -> bool,
    key: &str,
    value: impl ToString,
) -> String {
    let mut url = String::with_capacity(base.len() + raw_query.len() + 24);
    url.push_str(base);
    url.push('?');
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let same_key = url::form_urlencoded::parse(pair.as_bytes())
            .next()
            .is_some_and(|(k, _)| is_key(&k));
        if !same_key {
            url.push_str(pair);
            url.push('&');
        }
    }
    url.push_str(key);
    url.push('=');
    url.push_str(&value.to_string());
    url
}

/// A 200 answer of a `/_sandbox/...` endpoint (not counted in the stats).
pub(crate) fn json_response(content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        body.into(),
    )
        .into_response()
}
