//! The request policy (`fetch_with_policy`): every request of a tenant + service pair, from any
//! job or table in the process, goes through
//! - the circuit breaker (`breaker`): after `circuit_breaker_failures` consecutive failed requests
//!   the pair's requests wait `circuit_breaker_cooldown_seconds`, then one probe goes through.
//!   Requests the caller got wrong (400, 404) are not failures, nor is a rate-limit answer,
//!   unless it comes again on the request that waited out the previous one's `Retry-After`
//!   (`counts_as_failure`). The breaker's state is shared by every process of the pair;
//! - the rate budget (`budget`): slots reserved on the pair's shared rate row at the configured
//!   rate, adjusted by the server's quota signals; a rate-limit answer pauses the whole pair, in
//!   every process, for its `Retry-After` (1, 2, 4 … 60 s without one) and never uses up a retry
//!   or fails a chunk;
//! - the classification (`SourceError`; sources classify, the engine decides): 5xx, 408,
//!   connection errors, timeouts and cut bodies are retried `request_retries` times with
//!   exponential backoff and jitter from `request_retry_min_delay_ms`, then the chunk attempt fails
//!   and the chunk is retried up to `retry_attempts` with its own backoff; 400, 401, 403, 404,
//!   JSON of the wrong shape and invalid records fail the chunk at once, naming tenant, service,
//!   table, HTTP status and the API's own message.
//!
//! Sources refresh OAuth tokens themselves on a 401 and answer `SessionRenewed`; the repeat
//! goes through here (breaker, budget) like any request, once per call.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use super::{BreakerState, Engine, EngineEvent, RateBudget, breaker};
use crate::domain::Service;
use crate::sources::{Page, SourceError};

/// Whether a failed request says something about the service's health (for the breaker).
/// `waited_out_a_limit`: this request follows a rate-limit answer whose wait it sat out, so
/// another rate limit means the server's `Retry-After` did not hold: that counts too.
fn counts_as_failure(e: &SourceError, waited_out_a_limit: bool) -> bool {
    match e {
        SourceError::Http { status, .. } => *status >= 500 || matches!(*status, 401 | 403 | 408),
        SourceError::Transport(_) | SourceError::Decode { .. } => true,
        SourceError::RateLimited { .. } => waited_out_a_limit,
        SourceError::Config(_)
        | SourceError::QuotaExhausted { .. }
        | SourceError::SessionRenewed { .. }
        | SourceError::CursorExpired { .. } => false,
    }
}

/// How a request's result counts for the breaker (`counts_as_failure`).
fn breaker_outcome<T>(
    result: &Result<T, SourceError>,
    waited_out_a_limit: bool,
) -> breaker::Outcome {
    match result {
        Ok(_) => breaker::Outcome::Success,
        Err(e) if counts_as_failure(e, waited_out_a_limit) => {
            let why = if e.is_rate_limited() {
                format!("{e} (again after waiting its Retry-After)")
            } else {
                e.to_string()
            };
            breaker::Outcome::Failure(why)
        }
        Err(_) => breaker::Outcome::Neutral,
    }
}

/// The waits between tries of a request that failed with an error that can pass: exponential
/// from `request_retry_min_delay_ms` up to a minute, with jitter, `request_retries` of them.
/// Every request to a source goes through `fetch_with_policy`, which uses it.
pub fn request_backoff(
    settings: &crate::config::DefaultSettings,
) -> impl Iterator<Item = Duration> + use<> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(settings.request_retry_min_delay_ms))
        .with_max_delay(Duration::from_secs(60))
        .with_max_times(settings.request_retries as usize)
        .with_jitter()
        .build()
}

/// One request under the pair's policies: the circuit breaker admits it, the rate budget
/// paces it, a rate-limit answer pauses the pair for the server's `Retry-After` (without
/// using up a retry: the server asked to wait, not to give up), other retryable errors are
/// retried with exponential backoff and jitter, the rest fail at once.
pub(crate) async fn fetch_with_policy<T, F, Fut>(
    engine: &Engine,
    tenant_id: &str,
    service: Service,
    table: &str,
    mut request: F,
) -> Result<T, SourceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SourceError>>,
    T: HasUsage,
{
    let settings = &engine.config().backfill.default_settings;
    let pair = Pair {
        engine,
        tenant_id,
        service,
    };
    let budget = engine.budget(tenant_id, service);
    let breaker = engine.breaker(tenant_id, service);
    let mut backoff = request_backoff(settings);
    let mut rate_limited_in_a_row = 0u32;
    let mut renewed = false;
    loop {
        let result = attempt(
            pair,
            &budget,
            &breaker,
            &mut request,
            rate_limited_in_a_row > 0,
        )
        .await;
        match result {
            Ok(value) => {
                if let Some(usage) = value.usage()
                    && budget.observe(usage)
                {
                    pair.pace_adjusted(usage, &budget);
                }
                return Ok(value);
            }
            // A new session: ask again at once, through the breaker and the budget; a
            // second refusal of a fresh session is the API's answer.
            Err(SourceError::SessionRenewed { status, message }) => {
                if renewed {
                    return Err(SourceError::Http {
                        status,
                        message,
                        retry_after: None,
                    });
                }
                renewed = true;
            }
            Err(e) if e.is_rate_limited() => {
                // Without a Retry-After, wait 1 s, 2 s, 4 s ... up to a minute.
                let fallback = Duration::from_secs(1 << rate_limited_in_a_row.min(6));
                rate_limited_in_a_row += 1;
                let retry_after = pair.bounded_retry_after(&e, &budget);
                budget.rate_limited(retry_after, fallback).await;
                pair.rate_limited(table, &e, retry_after.unwrap_or(fallback));
            }
            Err(e) if e.is_retryable() => match backoff.next() {
                Some(d) => {
                    let d = pair.bounded_retry_after(&e, &budget).unwrap_or(d);
                    tracing::warn!(tenant_id, %service, table, error = %e, wait_ms = d.as_millis() as u64,
                        "request failed; retrying");
                    tokio::time::sleep(d).await;
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

/// One request: admitted by the breaker, paced by the budget, sent; its latency sizes the
/// pair's windows in flight (`inflight`) and its outcome goes to the breaker.
async fn attempt<T, F, Fut>(
    pair: Pair<'_>,
    budget: &RateBudget,
    breaker: &breaker::CircuitBreaker,
    request: &mut F,
    waited_out_a_limit: bool,
) -> Result<T, SourceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SourceError>>,
{
    let report = |t| pair.breaker_changed(t);
    let admission = breaker.admit(report).await;
    budget.acquire().await;
    let sent = tokio::time::Instant::now();
    let result = request().await;
    if result.is_ok() {
        let inflight = pair.engine.inflight(pair.tenant_id, pair.service);
        inflight.observe(sent.elapsed());
    }
    let outcome = breaker_outcome(&result, waited_out_a_limit);
    if let Some(t) = breaker.record(admission, outcome).await {
        report(t);
    }
    result
}

/// A tenant's service as `fetch_with_policy` reports on it: to the log and as events.
#[derive(Clone, Copy)]
struct Pair<'a> {
    engine: &'a Engine,
    tenant_id: &'a str,
    service: Service,
}

impl Pair<'_> {
    /// The error's `Retry-After`, cut to `max_retry_after_seconds` (reported once per pair).
    fn bounded_retry_after(&self, e: &SourceError, budget: &RateBudget) -> Option<Duration> {
        let asked = e.retry_after()?;
        let max_secs = self
            .engine
            .config()
            .backfill
            .default_settings
            .max_retry_after_seconds;
        let (wait, first) = budget.clamp_retry_after(asked, Duration::from_secs(max_secs));
        if first {
            let (tenant_id, service) = (self.tenant_id, self.service);
            tracing::warn!(tenant_id, %service, asked_secs = asked.as_secs(), max_secs,
                "the server asked to wait longer than max_retry_after_seconds; waiting the maximum");
        }
        Some(wait)
    }

    fn breaker_changed(&self, t: breaker::Transition) {
        let (tenant_id, service) = (self.tenant_id, self.service);
        match t.state {
            BreakerState::Open => {
                tracing::error!(tenant_id, %service, failures = t.consecutive_failures,
                reason = t.reason.as_deref().unwrap_or(""), "circuit breaker opened; requests wait for the cool-down")
            }
            BreakerState::HalfOpen => {
                tracing::warn!(tenant_id, %service, "circuit breaker half-open; probing")
            }
            BreakerState::Closed => tracing::info!(tenant_id, %service, "circuit breaker closed"),
        }
        self.engine.emit(EngineEvent::BreakerChanged {
            tenant_id: tenant_id.to_string(),
            service,
            state: t.state,
            consecutive_failures: t.consecutive_failures,
            reason: t.reason,
        });
    }

    fn pace_adjusted(&self, usage: &crate::sources::ApiUsage, budget: &RateBudget) {
        let (tenant_id, service) = (self.tenant_id, self.service);
        tracing::info!(tenant_id, %service, used = ?usage.used, limit = usage.limit,
            period_secs = usage.period.as_secs(), pace_ms = budget.current_spacing().as_millis() as u64,
            "request pace adjusted to the server's quota");
        self.engine.emit(EngineEvent::ServerUsage {
            tenant_id: tenant_id.to_string(),
            service,
            used: usage.used,
            limit: usage.limit,
            period_secs: usage.period.as_secs(),
        });
    }

    fn rate_limited(&self, table: &str, e: &SourceError, wait: Duration) {
        let (tenant_id, service) = (self.tenant_id, self.service);
        self.engine.emit(EngineEvent::RateLimited {
            tenant_id: tenant_id.to_string(),
            service,
            retry_after_ms: wait.as_millis() as u64,
        });
        tracing::warn!(tenant_id, %service, table, error = %e, wait_ms = wait.as_millis() as u64,
            "rate limited by the server; the tenant's requests wait");
    }
}

/// Results that may carry the server's word on its quota.
pub(crate) trait HasUsage {
    fn usage(&self) -> Option<&crate::sources::ApiUsage>;
}

impl HasUsage for Page {
    fn usage(&self) -> Option<&crate::sources::ApiUsage> {
        self.usage.as_ref()
    }
}

impl HasUsage for u64 {
    fn usage(&self) -> Option<&crate::sources::ApiUsage> {
        None
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    /// `Retry-After` as the policy gets it from the sources' parser.
    fn retry_after(value: &str) -> Option<Duration> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, value.parse().unwrap());
        crate::sources::retry_after(&headers)
    }

    #[test]
    fn retry_after_never_panics_and_is_cut_to_a_year() {
        let year = Duration::from_secs(365 * 86_400);
        assert_eq!(retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(" 1.5 "), Some(Duration::from_millis(1500)));
        assert_eq!(retry_after("0"), Some(Duration::ZERO));
        assert_eq!(retry_after("-0"), Some(Duration::ZERO));
        assert_eq!(retry_after("1e300"), Some(year));
        assert_eq!(retry_after("999999999999"), Some(year));
        assert_eq!(retry_after("inf"), Some(year));
        assert_eq!(retry_after("-5"), None);
        assert_eq!(retry_after("NaN"), None);
        assert_eq!(retry_after("abc"), None);
        assert_eq!(retry_after(""), None);
        // HTTP dates: one in the past is no wait, one ahead is the time until then.
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let ahead = (Utc::now() + chrono::Duration::seconds(120))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let wait = retry_after(&ahead).unwrap();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        assert_eq!(retry_after("Fri, 31 Dec 9999 23:59:59 GMT"), Some(year));
        assert_eq!(retry_after("Wed, 32 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn a_retry_after_beyond_the_maximum_is_cut_and_reported_once() {
        let budget = RateBudget::new(None);
        let max = Duration::from_secs(900);
        let d = Duration::from_secs;
        assert_eq!(budget.clamp_retry_after(d(5), max), (d(5), false));
        assert_eq!(budget.clamp_retry_after(d(900), max), (d(900), false));
        assert_eq!(budget.clamp_retry_after(d(3600), max), (max, true));
        assert_eq!(budget.clamp_retry_after(d(7200), max), (max, false));
    }
}
