//! The org quota reserve end to end, on paused tokio time: a Salesforce org with a daily
//! allocation of 15,000 calls, 12,000 of them used by other integrations. The job spends its
//! share (half of the 3,000 left: 1,500 calls), stops at a page boundary, shows
//! `waiting_for_quota` with the time it looks again, and completes by itself once the
//! sandbox's rolling window frees the other integrations' calls; the data is exact.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use avesa_console::config::{Config, Credentials};
use avesa_console::domain::{JobStatus, Service, Window};
use avesa_console::engine::planner::PlanRequest;
use avesa_console::engine::{Engine, EngineEvent, EngineOptions, NoSource, SourceProvider};
use avesa_console::sandbox::salesforce::{SfAccount, SfCounts, expected_salesforce};
use avesa_console::sandbox::{Sandbox, SandboxConfig, TableCounts};
use avesa_console::sink::RawSink;
use avesa_console::sources::{self, Source, SourceSettings};
use avesa_console::store::{CreateOutcome, LifecycleStore, SqliteStore};
use chrono::Utc;
use common::{anchor, landed_keys, repo_mappings};

const USER: &str = "integration@acme.example";
/// Days of history, one window (and so at least one call) each: more calls than the share.
const DAYS: i64 = 1_700;

fn credentials() -> Credentials {
    Credentials::from_pairs(
        [
            ("client_id", "3MVG9acmeSandboxConsumerKey"),
            ("client_secret", "sandbox-only-sf-consumer-secret-acme"),
            ("username", USER),
            ("password", "sandbox-only-sf-password-acme"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

fn sandbox_config() -> SandboxConfig {
    let mut account =
        SfAccount::from_credentials("acme", &credentials(), TableCounts::demo()).unwrap();
    account.counts = SfCounts {
        accounts: 3_000,
        contacts: 0,
        opportunities: 0,
        cases: 0,
        leads: 0,
    };
    account.daily_api_limit = 15_000;
    account.api_used_elsewhere = 12_000;
    account.elsewhere_frees_after = Duration::from_secs(2 * 3600);
    let mut cfg = SandboxConfig::new(anchor(), Vec::new());
    cfg.history_days = DAYS as u32;
    cfg.salesforce = vec![account];
    cfg
}

struct Provider(Arc<dyn Source>);

impl SourceProvider for Provider {
    fn source(&self, _tenant_id: &str, _service: Service) -> Result<Arc<dyn Source>, NoSource> {
        Ok(self.0.clone())
    }
}

fn engine(dir: &Path, sandbox_url: &str) -> (Engine, Arc<SqliteStore>) {
    let config = Config::load(&repo_mappings()).unwrap();
    let source = sources::connect(
        Service::Salesforce,
        sandbox_url,
        credentials(),
        sources::http_client(),
        &SourceSettings::default(),
    )
    .unwrap();
    let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    let options = EngineOptions {
        poll_interval: Duration::from_secs(30),
        auto_transform: false,
        ..EngineOptions::default()
    };
    let engine = Engine::new(
        Arc::new(config),
        store.clone(),
        store.clone(),
        RawSink::local(&dir.join("data")).unwrap(),
        Arc::new(Provider(source)),
        options,
    );
    (engine, store)
}

async fn api_usage(url: &str) -> u64 {
    let body = reqwest::get(format!("{url}/_sandbox/salesforce/stats"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["api_usage"][USER].as_u64().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_job_stops_at_its_share_of_the_org_quota_and_completes_when_calls_free() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sandbox_config();
    let sandbox = Sandbox::start(cfg.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (engine, store) = engine(dir.path(), &sandbox.url());
    let window = Window::new(anchor() - chrono::Duration::days(DAYS), anchor());
    let plan = engine
        .plan(
            &PlanRequest {
                tenant_id: "acme".into(),
                service: Service::Salesforce,
                tables: vec!["accounts".into()],
                start: Some(window.start),
                end: Some(window.end),
                chunk_size_days: Some(1),
            },
            Utc::now(),
        )
        .unwrap();
    let CreateOutcome::Created(job) = engine.create_job(&plan, Utc::now()).await.unwrap() else {
        panic!("a new job");
    };
    // The creation's describes (Account, User) count for the org like other integrations'.
    let describes = api_usage(&sandbox.url()).await - 12_000;
    assert_eq!(describes, 2);
    let mut events = engine.subscribe();
    let run = {
        let (engine, id) = (engine.clone(), job.job_id.clone());
        tokio::spawn(async move { engine.run_job(&id, None).await })
    };
    let until = loop {
        match events.recv().await.unwrap() {
            EngineEvent::WaitingForQuota { until, .. } => break until,
            EngineEvent::JobFinished { status, .. } => panic!("finished without waiting: {status}"),
            _ => {}
        }
    };
    // Stopped at its share: half of what the 12,000 used elsewhere and the describes left.
    assert_eq!(api_usage(&sandbox.url()).await, 13_500 + describes / 2);
    let waiting = store.get_job_meta(&job.job_id).await;
    assert_eq!(waiting, Some(until), "the wait is stored with its time");
    let stored = avesa_console::store::JobStore::get_job(store.as_ref(), &job.job_id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.status.is_active(), "{}", stored.status);
    assert_eq!(stored.failed_chunks, 0);

    let outcome = run.await.unwrap().unwrap();
    assert_eq!(outcome.status, JobStatus::Completed);
    let done = avesa_console::store::JobStore::get_job(store.as_ref(), &job.job_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.completed_chunks, done.total_chunks);
    assert_eq!(store.get_job_meta(&job.job_id).await, None, "note cleared");
    let (mut got, _) = landed_keys(
        &dir.path().join("data"),
        "acme",
        "salesforce",
        "accounts",
        "Id",
        "SystemModstamp",
    );
    got.sort();
    let mut want = expected_salesforce(&cfg, USER, "Account", &window);
    want.sort();
    assert_eq!(got.len(), 3_000);
    assert!(got == want, "landed records differ from the org's");
}

/// The stored wait note of a job.
trait WaitNote {
    async fn get_job_meta(&self, job_id: &str) -> Option<chrono::DateTime<Utc>>;
}

impl WaitNote for SqliteStore {
    async fn get_job_meta(&self, job_id: &str) -> Option<chrono::DateTime<Utc>> {
        self.job_metas(&[job_id.to_string()])
            .await
            .unwrap()
            .pop()
            .and_then(|m| m.quota_wait_until)
    }
}

/// `status`, `status --output json` and `status --job-id` show a job with a wait note ahead of
/// now as `waiting_for_quota` with the time; once the time has passed, its own status again.
#[tokio::test]
async fn status_shows_a_job_waiting_for_its_quota_with_the_time() {
    let fx = common::Fixture::new();
    let out = fx.cli(
        None,
        &[
            "trigger",
            "--tenant-id",
            "acme",
            "--service",
            "connectwise",
            "--start-date",
            "2025-01-01",
            "--end-date",
            "2025-02-01",
        ],
    );
    common::assert_ok(&out);
    let store = SqliteStore::open(&fx.workspace().join("state.db")).unwrap();
    let job = avesa_console::store::JobStore::list_jobs(&store, &Default::default())
        .await
        .unwrap()
        .pop()
        .unwrap();
    let until = chrono::DateTime::from_timestamp(Utc::now().timestamp() + 3600, 0).unwrap();
    let until_text = until.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    store
        .set_quota_wait(&job.job_id, Some(until))
        .await
        .unwrap();

    let text = common::text(&fx.cli(None, &["status"]));
    let row = text.lines().find(|l| l.starts_with(&job.job_id)).unwrap();
    assert!(row.contains("waiting_for_quota"), "{text}");
    assert!(text.contains(&until_text), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&fx.cli(None, &["status", "--output", "json"]).stdout).unwrap();
    let shown = &json["jobs"][0];
    assert_eq!(shown["status"], "waiting_for_quota", "{json}");
    assert_eq!(shown["quota_wait_until"], until_text.as_str());
    assert_eq!(shown["stored_status"], "pending");
    let detail = common::text(&fx.cli(None, &["status", "--job-id", &job.job_id]));
    assert!(detail.contains("waiting_for_quota"), "{detail}");

    // A note whose time has passed (its process died) says nothing any more.
    let past = Utc::now() - chrono::Duration::seconds(5);
    store.set_quota_wait(&job.job_id, Some(past)).await.unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&fx.cli(None, &["status", "--output", "json"]).stdout).unwrap();
    assert_eq!(json["jobs"][0]["status"], "pending", "{json}");
}

/// `plan` asks the org for its allocation and shows the calls the job needs as a share of
/// what is left (the in-process sandbox's org: 15,000 a day, none used yet).
#[test]
fn plan_shows_the_calls_as_a_share_of_the_allocation_left() {
    let fx = common::Fixture::new();
    let args = [
        "plan",
        "--tenant-id",
        "acme",
        "--service",
        "salesforce",
        "--start-date",
        "2025-01-01",
        "--end-date",
        "2025-03-01",
    ];
    let out = fx.cli(None, &args);
    common::assert_ok(&out);
    let text = common::text(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("quota:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("API calls =")
            && line.contains("of the 15,000 left today (share limit 50 %)"),
        "{line}"
    );
    let json: serde_json::Value = serde_json::from_slice(
        &fx.cli(None, &[&args[..], &["--output", "json"]].concat())
            .stdout,
    )
    .unwrap();
    assert_eq!(json["allocation"]["left"], 15_000, "{json}");
    assert_eq!(json["allocation"]["share_limit"], 0.5);
}

/// Answers a page after the window's start, then refuses once for the org's daily total
/// (403 `REQUEST_LIMIT_EXCEEDED` "TotalRequests"), then the last page; records each cursor.
struct RefusesOnce {
    asked: std::sync::Mutex<Vec<Option<String>>>,
}

#[async_trait::async_trait]
impl Source for RefusesOnce {
    fn service(&self) -> Service {
        Service::Connectwise
    }

    async fn fetch_page(
        &self,
        _: &avesa_console::config::EndpointDef,
        _: &Window,
        cursor: Option<&str>,
    ) -> Result<avesa_console::sources::Page, avesa_console::sources::SourceError> {
        let n = {
            let mut asked = self.asked.lock().unwrap();
            asked.push(cursor.map(str::to_string));
            asked.len()
        };
        if n == 2 {
            return Err(avesa_console::sources::SourceError::from_status(
                403,
                Some("REQUEST_LIMIT_EXCEEDED"),
                "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.".into(),
                None,
            ));
        }
        Ok(avesa_console::sources::Page {
            body: bytes::Bytes::from_static(b"[]").into(),
            records_at: avesa_console::domain::RecordsAt::Body,
            next: (n == 1).then(|| "page-2".to_string()),
            bytes: 2,
            usage: None,
        })
    }

    async fn count(
        &self,
        _: &avesa_console::config::EndpointDef,
        _: &Window,
    ) -> Result<u64, avesa_console::sources::SourceError> {
        Ok(0)
    }
}

/// An engine whose only source is `RefusesOnce`, and a one-chunk job of tickets.
struct Rig {
    _dir: tempfile::TempDir,
    engine: Engine,
    store: Arc<SqliteStore>,
    source: Arc<RefusesOnce>,
    job_id: String,
}

async fn refusing_rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let source = Arc::new(RefusesOnce {
        asked: Default::default(),
    });
    let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let engine = Engine::new(
        Arc::new(Config::load(&repo_mappings()).unwrap()),
        store.clone(),
        store.clone(),
        RawSink::local(&dir.path().join("data")).unwrap(),
        Arc::new(Provider(source.clone())),
        EngineOptions {
            pace_requests: false,
            auto_transform: false,
            ..EngineOptions::default()
        },
    );
    let start = anchor() - chrono::Duration::days(10);
    let plan = engine
        .plan(
            &PlanRequest {
                tenant_id: "acme".into(),
                service: Service::Connectwise,
                tables: vec!["tickets".into()],
                start: Some(start),
                end: Some(anchor()),
                chunk_size_days: Some(10),
            },
            Utc::now(),
        )
        .unwrap();
    let job_id = engine
        .create_job(&plan, Utc::now())
        .await
        .unwrap()
        .job()
        .job_id
        .clone();
    Rig {
        _dir: dir,
        engine,
        store,
        source,
        job_id,
    }
}

/// Issue 15: a refusal for the daily total is not retried into errors while the job shows
/// `running`: the chunk is released at its page, the job waits (noted, with the time) and
/// goes on by itself from the same cursor, with no attempt used up and no error kept.
#[tokio::test(start_paused = true)]
async fn a_refusal_for_the_daily_total_waits_instead_of_retrying() {
    let Rig {
        _dir,
        engine,
        store,
        source,
        job_id,
    } = refusing_rig().await;
    let mut events = engine.subscribe();
    let run = {
        let (engine, id) = (engine.clone(), job_id.clone());
        tokio::spawn(async move { engine.run_job(&id, None).await })
    };
    let until = loop {
        match events.recv().await.unwrap() {
            EngineEvent::WaitingForQuota { until, .. } => break until,
            EngineEvent::JobFinished { status, .. } => panic!("finished without waiting: {status}"),
            _ => {}
        }
    };
    assert_eq!(store.get_job_meta(&job_id).await, Some(until));
    // Another process (a cloud worker, a second `run`) holds the job by the stored note.
    let other = Engine::new(
        Arc::new(Config::load(&repo_mappings()).unwrap()),
        store.clone(),
        store.clone(),
        RawSink::local(&_dir.path().join("data")).unwrap(),
        Arc::new(Provider(source.clone())),
        EngineOptions::default(),
    );
    let step = other
        .step_job(&job_id, &avesa_console::engine::Deadline::default())
        .await
        .unwrap();
    assert_eq!(
        step,
        avesa_console::engine::Step::Wait { until: Some(until) }
    );
    let t0 = tokio::time::Instant::now();
    let outcome = run.await.unwrap().unwrap();
    assert_eq!(outcome.status, JobStatus::Completed);
    assert!(t0.elapsed() >= avesa_console::engine::quota::FIRST_RECHECK);
    let chunks = avesa_console::store::JobStore::chunks(store.as_ref(), &job_id)
        .await
        .unwrap();
    assert_eq!(chunks[0].attempts, 1, "no attempt used up");
    assert_eq!(chunks[0].last_error, None);
    let asked = source.asked.lock().unwrap().clone();
    let page_2 = Some("page-2".to_string());
    assert_eq!(
        asked,
        [None, page_2.clone(), page_2],
        "the refused page is asked again"
    );
    assert_eq!(store.get_job_meta(&job_id).await, None, "note cleared");
}

/// A job waiting for its quota can be paused: its runner stops at the next look instead of
/// waiting out the quota (tokio's paused clock: well before the first re-check).
#[tokio::test(start_paused = true)]
async fn a_job_waiting_for_its_quota_can_be_paused() {
    let Rig {
        _dir,
        engine,
        store,
        source,
        job_id,
    } = refusing_rig().await;
    let mut events = engine.subscribe();
    let run = {
        let (engine, id) = (engine.clone(), job_id.clone());
        tokio::spawn(async move { engine.run_job(&id, None).await })
    };
    while !matches!(
        events.recv().await.unwrap(),
        EngineEvent::WaitingForQuota { .. }
    ) {}
    let t0 = tokio::time::Instant::now();
    avesa_console::store::JobStore::set_job_status(
        store.as_ref(),
        &job_id,
        JobStatus::Paused,
        Utc::now(),
    )
    .await
    .unwrap();
    let outcome = run.await.unwrap().unwrap();
    assert_eq!(outcome.status, JobStatus::Paused);
    assert!(
        t0.elapsed() < avesa_console::engine::quota::FIRST_RECHECK,
        "waited out the quota"
    );
    assert_eq!(
        source.asked.lock().unwrap().len(),
        2,
        "nothing asked after the pause"
    );
}
