//! Whether a table's backfill will run, proved with the backfill's own requests (`check`):
//! which declared fields the integration user can read (`Source::unreadable_columns`, judged
//! by `fields::verdict`), one read with the exact query the backfill sends for the oldest
//! window of the lookback (every column it will ask for, one record: `Source::probe`), and the
//! count over the whole lookback. Each request gets the time it is given and is tried again on
//! an error that can pass, as the backfill's requests are (`request_backoff`); a failure keeps
//! the API's own words and says what to change (`advice`).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::fields;
use super::request_backoff;
use crate::config::{DefaultSettings, EndpointDef};
use crate::domain::Window;
use crate::sources::{Source, SourceError};

/// One step of a table's probe that failed: the error as the API gave it, and what to change.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProbeFailure {
    /// `fields`, `read` or `count`.
    pub step: &'static str,
    pub error: String,
    pub advice: String,
}

/// What the probe of one table found.
#[derive(Clone, Debug, Serialize)]
pub struct TableProbe {
    pub table: String,
    pub path: String,
    /// The backfill's whole range (the lookback) and its first window.
    pub lookback: Window,
    pub oldest_window: Window,
    /// Declared columns the user cannot read; `None` where the API has no schema description.
    pub unreadable_fields: Option<Vec<String>>,
    /// Of those, the ones the backfill leaves out (not under `strict_fields`).
    pub skipped_fields: Vec<String>,
    /// Records the read of the oldest window returned (at most one).
    pub read_records: Option<u64>,
    /// The source's count over the lookback.
    pub records: Option<u64>,
    pub failures: Vec<ProbeFailure>,
    /// Requests sent per step, tries again included.
    pub tries: Tries,
    pub millis: u64,
}

impl TableProbe {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Tries of each step (a step whose API has nothing to ask, such as fields without a schema
/// description, still counts one).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Tries {
    pub fields: u32,
    pub read: u32,
    pub count: u32,
}

/// How a table is probed.
pub struct ProbeSettings<'a> {
    pub timeout: Duration,
    pub strict_fields: bool,
    pub retries: &'a DefaultSettings,
}

/// Probes `endpoint` over `lookback`, whose first window is `oldest`.
pub async fn probe_table(
    source: &dyn Source,
    endpoint: &EndpointDef,
    lookback: Window,
    oldest: Window,
    settings: &ProbeSettings<'_>,
) -> TableProbe {
    let started = Instant::now();
    let mut p = TableProbe {
        table: endpoint.table_name.clone(),
        path: endpoint.path.clone(),
        lookback,
        oldest_window: oldest,
        unreadable_fields: None,
        skipped_fields: Vec::new(),
        read_records: None,
        records: None,
        failures: Vec::new(),
        tries: Tries::default(),
        millis: 0,
    };
    let unreadable = patiently(&mut p.tries.fields, settings, || {
        source.unreadable_columns(endpoint, &crate::sources::Unpaced)
    })
    .await;
    match unreadable {
        Ok(u) => p.unreadable_fields = u,
        Err(e) => p.failures.push(failure("fields", &e)),
    }
    if let Some(u) = &p.unreadable_fields {
        match fields::verdict(endpoint, u, settings.strict_fields) {
            Ok(skipped) => p.skipped_fields = skipped,
            Err(e) => p.failures.push(ProbeFailure {
                step: "fields",
                error: e,
                // The verdict says what to change.
                advice: String::new(),
            }),
        }
    }
    // The backfill's query: every declared column it reads (the skipped ones left out).
    let skipped: Vec<&str> = p.skipped_fields.iter().map(String::as_str).collect();
    let reading = fields::without(endpoint, &skipped);
    match patiently(&mut p.tries.read, settings, || {
        source.probe(&reading, &oldest)
    })
    .await
    {
        Ok(n) => p.read_records = Some(n),
        Err(e) => p.failures.push(failure("read", &e)),
    }
    match patiently(&mut p.tries.count, settings, || {
        source.count(endpoint, &lookback)
    })
    .await
    {
        Ok(n) => p.records = Some(n),
        Err(e) => p.failures.push(failure("count", &e)),
    }
    p.millis = started.elapsed().as_millis() as u64;
    p
}

/// `request` within `timeout`, tried again on an error that can pass (a renewed session, a
/// rate limit, a server error, no answer in time) as the backfill's requests are.
async fn patiently<T, F, Fut>(
    tries: &mut u32,
    settings: &ProbeSettings<'_>,
    mut request: F,
) -> Result<T, SourceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SourceError>>,
{
    let mut backoff = request_backoff(settings.retries);
    loop {
        *tries += 1;
        let error = match tokio::time::timeout(settings.timeout, request()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if e.is_retryable() => e,
            Ok(Err(e)) => return Err(e),
            Err(_) => SourceError::Transport(format!(
                "no answer within {}",
                humantime::format_duration(settings.timeout)
            )),
        };
        match backoff.next() {
            Some(wait) => {
                tracing::warn!(error = %error, tries = *tries, "check request failed; trying again");
                tokio::time::sleep(wait).await;
            }
            None => return Err(error),
        }
    }
}

fn failure(step: &'static str, e: &SourceError) -> ProbeFailure {
    ProbeFailure {
        step,
        error: e.to_string(),
        advice: advice(e).into(),
    }
}

/// What to change for an error, by its kind and the API's error code.
pub fn advice(e: &SourceError) -> &'static str {
    let text = e.to_string();
    match e {
        _ if text.contains("INVALID_FIELD") || text.contains("No such column") => {
            "the integration user cannot read a field the query names: grant read access to it \
             (field-level security) or remove the column from the endpoint file and the \
             canonical mapping"
        }
        SourceError::Http { status: 401, .. } | SourceError::SessionRenewed { .. } => {
            "the credentials were refused: renew them in the tenant's credentials file"
        }
        SourceError::Http { status: 403, .. } => {
            "the integration user may not read this table: grant it read access (profile or \
             permission set, ACL, security role)"
        }
        SourceError::Http { status: 404, .. } => {
            "the table is not there: check the endpoint's path and the service's base URL"
        }
        SourceError::Http { status: 400, .. } => {
            "the API refused the query: check the endpoint's path, fields and query field"
        }
        SourceError::RateLimited { .. } | SourceError::QuotaExhausted { .. } => {
            "the API's request limits are spent now: try again later or raise the allocation"
        }
        SourceError::Transport(_) => "check the service's base URL and that it can be reached",
        SourceError::Decode { .. } => "the answer is not the API's: check the base URL",
        SourceError::Config(_) => "fix the configuration or credentials it names",
        _ => "see the API's error above",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_follows_the_apis_error() {
        let field = SourceError::Http {
            status: 400,
            message: "INVALID_FIELD: No such column 'Owner.Name' on entity 'Account'".into(),
            retry_after: None,
        };
        assert!(advice(&field).contains("field-level security"));
        let denied = SourceError::Http {
            status: 403,
            message: "INSUFFICIENT_ACCESS".into(),
            retry_after: None,
        };
        assert!(advice(&denied).contains("read access"));
    }
}
