//! Whether a table's backfill will run, proved with the backfill's own requests (`check`):
//! which declared fields the integration user can read (`Source::unreadable_columns`, judged
//! by `fields::verdict`), one read with the exact query the backfill sends for the oldest
//! window of the lookback (every column it will ask for, one record: `Source::probe`), and the
//! count over the whole lookback. Each request goes through the backfill's own request policy
//! (`fetch_with_policy`: the tenant's shared rate budget and breaker, a rate-limit answer
//! pausing every process of the pair, other passing errors tried again), gets the time it is
//! given, and a step gives up after a few of those; a failure keeps the API's own words and
//! says what to change (`advice`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::budget::RateBudget;
use super::fields;
use super::policy::{HasUsage, fetch_with_policy};
use crate::config::EndpointDef;
use crate::domain::{Service, Window};
use crate::engine::Engine;
use crate::sources::{Pace, Source, SourceError};

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
pub struct ProbeSettings {
    pub timeout: Duration,
    pub strict_fields: bool,
}

/// Probes `endpoint` of `tenant_id` over `lookback`, whose first window is `oldest`, with
/// `engine`'s request policy.
pub async fn probe_table(
    engine: &Engine,
    tenant_id: &str,
    source: &dyn Source,
    endpoint: &EndpointDef,
    (lookback, oldest): (Window, Window),
    settings: &ProbeSettings,
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
    let step = Step {
        engine,
        tenant_id,
        service: source.service(),
        table: &endpoint.table_name,
        settings,
    };
    // Discovery sends its first request on the policy's slot, any further one on its own.
    let pace = FollowUps::new(engine.budget(tenant_id, source.service()));
    let unreadable = step
        .send(&mut p.tries.fields, || async {
            source
                .unreadable_columns(endpoint, &pace)
                .await
                .map(Discovered)
        })
        .await;
    match unreadable {
        Ok(Discovered(u)) => p.unreadable_fields = u,
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
    match step
        .send(&mut p.tries.read, || source.probe(&reading, &oldest))
        .await
    {
        Ok(n) => p.read_records = Some(n),
        Err(e) => p.failures.push(failure("read", &e)),
    }
    match step
        .send(&mut p.tries.count, || source.count(endpoint, &lookback))
        .await
    {
        Ok(n) => p.records = Some(n),
        Err(e) => p.failures.push(failure("count", &e)),
    }
    p.millis = started.elapsed().as_millis() as u64;
    p
}

/// The requests of one table's probe.
struct Step<'a> {
    engine: &'a Engine,
    tenant_id: &'a str,
    service: Service,
    table: &'a str,
    settings: &'a ProbeSettings,
}

impl Step<'_> {
    /// `request` under the backfill's policy, each try within the timeout; the step gives
    /// up when `GIVE_UP_AFTER` timeouts have passed (rate-limit answers wait without using
    /// up a retry, so this bounds a server that keeps refusing), with the last error seen.
    async fn send<T, F, Fut>(&self, tries: &mut u32, mut request: F) -> Result<T, SourceError>
    where
        T: HasUsage,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SourceError>>,
    {
        let timeout = self.settings.timeout;
        let last = std::sync::Mutex::new(None::<SourceError>);
        let policy = fetch_with_policy(
            self.engine,
            self.tenant_id,
            self.service,
            self.table,
            || {
                *tries += 1;
                let sent = request();
                let last = &last;
                async move {
                    let result = match tokio::time::timeout(timeout, sent).await {
                        Ok(result) => result,
                        Err(_) => Err(SourceError::Transport(format!(
                            "no answer within {}",
                            humantime::format_duration(timeout)
                        ))),
                    };
                    if let Err(e) = &result {
                        *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                    }
                    result
                }
            },
        );
        match tokio::time::timeout(timeout * GIVE_UP_AFTER, policy).await {
            Ok(result) => result,
            Err(_) => Err(last
                .into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(|| {
                    SourceError::Transport(format!(
                        "no answer within {}",
                        humantime::format_duration(timeout * GIVE_UP_AFTER)
                    ))
                })),
        }
    }
}

/// A step gives up after this many request timeouts.
const GIVE_UP_AFTER: u32 = 3;

/// Discovery's answer, carrying no quota information.
struct Discovered(Option<Vec<String>>);

impl HasUsage for Discovered {
    fn usage(&self) -> Option<&crate::sources::ApiUsage> {
        None
    }
}

/// A pace whose first turn is free (the request policy already waited for it) and whose
/// next ones wait for the tenant's rate budget.
struct FollowUps {
    budget: Arc<RateBudget>,
    first: AtomicBool,
}

impl FollowUps {
    fn new(budget: Arc<RateBudget>) -> Self {
        FollowUps {
            budget,
            first: AtomicBool::new(true),
        }
    }
}

#[async_trait::async_trait]
impl Pace for FollowUps {
    async fn turn(&self) {
        if !self.first.swap(false, Ordering::Relaxed) {
            self.budget.acquire().await;
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
