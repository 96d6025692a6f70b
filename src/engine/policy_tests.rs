//! Request policy on paused tokio time: rate-limit waits, retries with backoff, fail-fast
//! errors and the circuit breaker, driven by a scripted source.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::policy::fetch_with_policy;
use super::{BreakerState, Engine, EngineEvent, EngineOptions, NoSource, SourceProvider};
use crate::config::Config;
use crate::domain::Service;
use crate::sink::RawSink;
use crate::sources::{Page, Source, SourceError};
use crate::store::sqlite::SqliteStore;

struct NoSources;
impl SourceProvider for NoSources {
    fn source(&self, _: &str, _: Service) -> Result<Arc<dyn Source>, NoSource> {
        Err(NoSource::new("not used"))
    }
}

fn engine(dir: &tempfile::TempDir, edit: impl FnOnce(&mut Config)) -> Engine {
    let mut config =
        Config::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")).unwrap();
    let d = &mut config.backfill.default_settings;
    d.request_retries = 3;
    d.request_retry_min_delay_ms = 1000;
    d.circuit_breaker_failures = 100;
    d.circuit_breaker_cooldown_seconds = 30.0;
    edit(&mut config);
    let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let sink = RawSink::local(&dir.path().join("data")).unwrap();
    Engine::new(
        Arc::new(config),
        store.clone(),
        store,
        sink,
        Arc::new(NoSources),
        EngineOptions {
            pace_requests: false,
            ..EngineOptions::default()
        },
    )
}

fn http(status: u16) -> SourceError {
    SourceError::Http {
        status,
        message: format!("status {status}"),
        retry_after: None,
    }
}

fn limited(secs: Option<u64>) -> SourceError {
    SourceError::RateLimited {
        status: 429,
        message: "Rate limit exceeded".into(),
        retry_after: secs.map(Duration::from_secs),
    }
}

/// Answers from a script, recording when each request was made.
#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<Result<Page, SourceError>>>>,
    at: Arc<Mutex<Vec<Duration>>>,
}

impl Script {
    fn new(answers: Vec<Result<Page, SourceError>>) -> Script {
        Script {
            answers: Arc::new(Mutex::new(answers.into())),
            at: Arc::default(),
        }
    }

    async fn run(&self, engine: &Engine, start: Instant) -> Result<Page, SourceError> {
        fetch_with_policy(engine, "acme", Service::Connectwise, "tickets", || {
            self.at.lock().unwrap().push(start.elapsed());
            let next = self.answers.lock().unwrap().pop_front();
            async move { next.unwrap_or_else(|| Ok(Page::default())) }
        })
        .await
    }

    fn times(&self) -> Vec<Duration> {
        self.at.lock().unwrap().clone()
    }
}

#[tokio::test(start_paused = true)]
async fn rate_limits_wait_for_retry_after_without_using_up_retries() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir, |_| {});
    let mut events = engine.subscribe();
    // Ten 429s in a row: far more than the 3 retries, yet the request succeeds.
    let mut answers: Vec<_> = (0..10).map(|_| Err(limited(Some(5)))).collect();
    answers.push(Ok(Page::default()));
    let script = Script::new(answers);
    let start = Instant::now();
    script
        .run(&engine, start)
        .await
        .expect("rate limits never fail a request");
    let t = script.times();
    assert_eq!(t.len(), 11);
    for pair in t.windows(2) {
        assert_eq!(pair[1] - pair[0], Duration::from_secs(5), "{t:?}");
    }
    let mut rate_limited = 0;
    while let Ok(e) = events.try_recv() {
        if let EngineEvent::RateLimited { retry_after_ms, .. } = e {
            assert_eq!(retry_after_ms, 5000);
            rate_limited += 1;
        }
    }
    assert_eq!(rate_limited, 10);
    assert_eq!(
        engine
            .budget("acme", Service::Connectwise)
            .snapshot()
            .rate_limited_total,
        10
    );
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_without_retry_after_backs_off_exponentially() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir, |_| {});
    let script = Script::new(vec![
        Err(limited(None)),
        Err(limited(None)),
        Err(limited(None)),
    ]);
    script.run(&engine, Instant::now()).await.unwrap();
    let secs: Vec<u64> = script.times().iter().map(|d| d.as_secs()).collect();
    assert_eq!(secs, vec![0, 1, 3, 7]);
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_with_growing_jittered_delays_then_fail() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir, |_| {});
    let script = Script::new((0..10).map(|_| Err(http(503))).collect());
    let err = script.run(&engine, Instant::now()).await.unwrap_err();
    assert!(matches!(err, SourceError::Http { status: 503, .. }));
    let t = script.times();
    assert_eq!(t.len(), 4, "one request and three retries: {t:?}");
    // backon's jitter adds up to one more delay: each wait is in [d, 2d) for d = 1, 2, 4 s.
    for (i, pair) in t.windows(2).enumerate() {
        let wait = (pair[1] - pair[0]).as_secs_f64();
        let d = f64::from(1u32 << i);
        assert!(
            wait >= d && wait < 2.0 * d + 1e-6,
            "retry {i}: waited {wait}s"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn client_errors_fail_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir, |_| {});
    for status in [400, 401, 403, 404] {
        let script = Script::new(vec![Err(http(status)), Ok(Page::default())]);
        let err = script.run(&engine, Instant::now()).await.unwrap_err();
        assert!(matches!(err, SourceError::Http { status: s, .. } if s == status));
        assert_eq!(script.times().len(), 1, "HTTP {status} was retried");
    }
    let script = Script::new(vec![Err(SourceError::Decode {
        message: "not JSON".into(),
        truncated: false,
    })]);
    assert!(script.run(&engine, Instant::now()).await.is_err());
    assert_eq!(
        script.times().len(),
        1,
        "a body that is not JSON is not retried"
    );
    let script = Script::new(vec![Err(SourceError::Decode {
        message: "cut".into(),
        truncated: true,
    })]);
    assert!(script.run(&engine, Instant::now()).await.is_ok());
    assert_eq!(script.times().len(), 2, "a truncated body is retried");
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_pauses_the_pair_and_closes_after_a_good_probe() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir, |c| {
        let d = &mut c.backfill.default_settings;
        d.circuit_breaker_failures = 3;
        d.circuit_breaker_cooldown_seconds = 30.0;
        d.request_retries = 2;
    });
    let mut events = engine.subscribe();
    let failing = Script::new((0..3).map(|_| Err(http(502))).collect());
    let start = Instant::now();
    assert!(failing.run(&engine, start).await.is_err());
    assert_eq!(
        engine
            .breaker("acme", Service::Connectwise)
            .snapshot()
            .state,
        BreakerState::Open
    );
    // Another tenant is not affected.
    let other = fetch_with_policy(
        &engine,
        "globex",
        Service::Connectwise,
        "tickets",
        || async { Ok(Page::default()) },
    );
    let before = Instant::now();
    other.await.unwrap();
    assert_eq!(before.elapsed(), Duration::ZERO);

    // The next request of the pair waits for the cool-down, then probes and closes it.
    let opened_at = Instant::now();
    let ok = Script::new(vec![Ok(Page::default())]);
    ok.run(&engine, start).await.unwrap();
    assert_eq!(opened_at.elapsed(), Duration::from_secs(30));
    let states: Vec<BreakerState> = std::iter::from_fn(|| events.try_recv().ok())
        .filter_map(|e| match e {
            EngineEvent::BreakerChanged {
                tenant_id, state, ..
            } if tenant_id == "acme" => Some(state),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        vec![
            BreakerState::Open,
            BreakerState::HalfOpen,
            BreakerState::Closed
        ]
    );
    assert_eq!(
        engine
            .health()
            .iter()
            .map(|h| h.tenant_id.as_str())
            .collect::<Vec<_>>(),
        vec!["acme", "globex"]
    );
}

#[tokio::test(start_paused = true)]
async fn server_quota_reports_slow_the_pair_down() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir, |_| {});
    let budget = engine.budget("acme", Service::Connectwise);
    assert_eq!(budget.current_spacing(), Duration::ZERO, "unpaced engine");
    let page = Page {
        usage: Some(crate::sources::ApiUsage {
            used: Some(10),
            limit: 3600,
            period: Duration::from_secs(3600),
            resets_at: None,
        }),
        ..Page::default()
    };
    let script = Script::new(vec![Ok(page)]);
    script.run(&engine, Instant::now()).await.unwrap();
    assert_eq!(budget.current_spacing(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn rate_limits_that_outlast_their_retry_after_open_the_breaker() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir, |c| {
        let d = &mut c.backfill.default_settings;
        d.circuit_breaker_failures = 2;
        d.circuit_breaker_cooldown_seconds = 30.0;
    });
    let mut events = engine.subscribe();
    // The first 429 is the server's word: wait 5 s. The next two come on requests that waited
    // it out: the limit did not hold, and the second of those opens the breaker.
    let script = Script::new((0..3).map(|_| Err(limited(Some(5)))).collect());
    script.run(&engine, Instant::now()).await.unwrap();
    let secs: Vec<u64> = script.times().iter().map(|d| d.as_secs()).collect();
    assert_eq!(
        secs,
        vec![0, 5, 10, 40],
        "the fourth request waited the cool-down"
    );
    let opened: Vec<String> = std::iter::from_fn(|| events.try_recv().ok())
        .filter_map(|e| match e {
            EngineEvent::BreakerChanged {
                state: BreakerState::Open,
                reason,
                ..
            } => reason,
            _ => None,
        })
        .collect();
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert!(opened[0].contains("again after waiting"), "{opened:?}");
    let snap = engine.breaker("acme", Service::Connectwise).snapshot();
    assert_eq!((snap.state, snap.opened_total), (BreakerState::Closed, 1));
}

fn renewed() -> SourceError {
    SourceError::SessionRenewed {
        status: 401,
        message: "INVALID_SESSION_ID: Session expired or invalid".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_renewed_session_is_asked_again_once_through_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        Config::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")).unwrap();
    config
        .backfill
        .service_settings
        .get_mut(&Service::Connectwise)
        .unwrap()
        .rate_limit_requests_per_minute = 60;
    let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let engine = Engine::new(
        Arc::new(config),
        store.clone(),
        store,
        RawSink::local(&dir.path().join("data")).unwrap(),
        Arc::new(NoSources),
        EngineOptions::default(),
    );
    // The repeat after a new session takes its own rate slot: 1 s after the first at 60/min.
    let script = Script::new(vec![Err(renewed()), Ok(Page::default())]);
    script.run(&engine, Instant::now()).await.unwrap();
    let t = script.times();
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(t[1] - t[0] >= Duration::from_secs(1), "{t:?}");
    // A fresh session refused again: the 401 stands, no third request, no breaker failure.
    let script = Script::new(vec![Err(renewed()), Err(renewed()), Ok(Page::default())]);
    let err = script.run(&engine, Instant::now()).await.unwrap_err();
    assert!(
        matches!(err, SourceError::Http { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(script.times().len(), 2);
}
