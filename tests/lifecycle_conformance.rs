//! One suite of `LifecycleStore` behaviour, for every backend (SQLite on a temp file;
//! DynamoDB Local at `AVESA_TEST_DYNAMODB_URL`, with tables of its own per test): markers only
//! move forward and refuse gaps, enablement history, job hints and finalisation, alerts once
//! per subject, verification results, job removal that keeps markers, failure runs shared by
//! every process, and racing writers.

// The DynamoDB endpoint, client settings and table prefixes are the job store suite's.
#[allow(dead_code)]
#[path = "store_conformance/backends.rs"]
mod backends;
#[path = "lifecycle_conformance/dynamodb_only.rs"]
mod dynamodb_only;
#[path = "lifecycle_conformance/racing.rs"]
mod racing;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use avesa_console::domain::{
    Alert, AlertKind, Checkpoint, Chunk, ChunkKey, ChunkVerification, Job, JobKind, JobMeta,
    JobStatus, Service, Trigger, Window,
};
use avesa_console::store::{
    AlertFilter, DynamoOptions, DynamoStore, HandoffClaim, JobStore, LifecycleStore, MarkerAdvance,
    SqliteStore, StoreError,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::FutureExt;
use racing::{
    racing_finishers_finalise_once, racing_runners_take_a_handoff_once,
    racing_writers_never_move_a_marker_back,
};

/// Both halves of a backend, and a way to open another handle on the same data (another
/// connection or client), as a second process would.
pub struct Backend {
    jobs: Arc<dyn JobStore>,
    life: Arc<dyn LifecycleStore>,
    reopen: Box<dyn Fn() -> Arc<dyn LifecycleStore> + Send + Sync>,
    /// DynamoDB: the store whose tables go at the end of the test.
    tables: Option<DynamoStore>,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    pub fn another(&self) -> Arc<dyn LifecycleStore> {
        (self.reopen)()
    }
}

async fn sqlite() -> Option<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    Some(Backend {
        jobs: store.clone(),
        life: store,
        reopen: Box::new(move || Arc::new(SqliteStore::open(&path).unwrap())),
        tables: None,
        _dir: Some(dir),
    })
}

async fn dynamodb() -> Option<Backend> {
    let url = backends::dynamodb_url()?;
    let config = backends::dynamodb_config(&url);
    let options = DynamoOptions {
        table_prefix: backends::unique_prefix(),
        ..Default::default()
    };
    let open = move || {
        DynamoStore::new(
            aws_sdk_dynamodb::Client::from_conf(config.clone()),
            options.clone(),
        )
    };
    let store = Arc::new(open());
    store.ensure_tables().await.unwrap();
    Some(Backend {
        jobs: store.clone(),
        life: store.clone(),
        tables: Some((*store).clone()),
        reopen: Box::new(move || Arc::new(open())),
        _dir: None,
    })
}

/// Runs one case and always removes the backend's tables, also when the case panics.
async fn run<C, F>(backend: Option<Backend>, case: C)
where
    C: FnOnce(Backend) -> F,
    F: Future<Output = ()>,
{
    let Some(backend) = backend else { return };
    let tables = backend.tables.clone();
    let outcome = AssertUnwindSafe(case(backend)).catch_unwind().await;
    if let Some(store) = tables {
        store.delete_tables().await.unwrap();
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

pub fn t(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, d, 0, 0, 0).unwrap()
}

pub fn adv(kind: JobKind, job: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> MarkerAdvance {
    MarkerAdvance {
        tenant_id: "acme".into(),
        service: Service::Connectwise,
        table: "tickets".into(),
        job_id: job.into(),
        kind,
        from,
        to,
        now: to,
    }
}

async fn markers_move_forward_and_refuse_gaps(b: Backend) {
    let s = &b.life;
    let err = s
        .advance_marker(&adv(JobKind::Sync, "sync_a", t(1), t(2)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "a sync needs a backfill first: {err}"
    );
    let m = s
        .advance_marker(&adv(JobKind::Backfill, "bf1", t(1), t(10)))
        .await
        .unwrap();
    assert_eq!((m.last_updated, m.backfill_end), (t(10), Some(t(10))));
    assert_eq!(m.backfill_job.as_deref(), Some("bf1"));
    // A sync that starts after the marker would leave a gap.
    let err = s
        .advance_marker(&adv(JobKind::Sync, "sync_gap", t(11), t(12)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sync_gap"), "{err}");
    let m = s
        .advance_marker(&adv(JobKind::Sync, "sync_1", t(10), t(12)))
        .await
        .unwrap();
    assert_eq!((m.last_updated, m.set_by_job.as_str()), (t(12), "sync_1"));
    assert_eq!(
        m.backfill_end,
        Some(t(10)),
        "the sync keeps the backfill it continues"
    );
    // An older backfill (a historical re-pull) never moves the marker back.
    let m = s
        .advance_marker(&adv(JobKind::Backfill, "bf_old", t(1), t(5)))
        .await
        .unwrap();
    assert_eq!((m.last_updated, m.backfill_end), (t(12), Some(t(10))));
    assert_eq!(m.set_by_job, "sync_1");
    // A sync overlapping the marker (started earlier) is fine and moves it on.
    let m = s
        .advance_marker(&adv(JobKind::Sync, "sync_2", t(11), t(14)))
        .await
        .unwrap();
    assert_eq!(m.last_updated, t(14));
    let all = s
        .markers(Some("acme"), Some(Service::Connectwise))
        .await
        .unwrap();
    assert_eq!(all, vec![m]);
    assert!(s.markers(Some("globex"), None).await.unwrap().is_empty());
}

async fn enablement_history_remembers_a_re_enabling(b: Backend) {
    let s = &b.life;
    let st = s
        .observe_service("acme", Service::Servicenow, true, t(1))
        .await
        .unwrap();
    assert!(st.enabled && st.last_disabled_at.is_none() && st.reenabled_at.is_none());
    let st = s
        .observe_service("acme", Service::Servicenow, true, t(2))
        .await
        .unwrap();
    assert_eq!(
        st.reenabled_at, None,
        "staying enabled is not a re-enabling"
    );
    let st = s
        .observe_service("acme", Service::Servicenow, false, t(3))
        .await
        .unwrap();
    assert!(!st.enabled);
    assert_eq!(st.last_disabled_at, Some(t(3)));
    let st = s
        .observe_service("acme", Service::Servicenow, false, t(4))
        .await
        .unwrap();
    assert_eq!(st.last_disabled_at, Some(t(4)));
    let st = s
        .observe_service("acme", Service::Servicenow, true, t(5))
        .await
        .unwrap();
    assert_eq!((st.enabled, st.reenabled_at), (true, Some(t(5))));
    let st = s
        .observe_service("acme", Service::Servicenow, true, t(6))
        .await
        .unwrap();
    assert_eq!(
        st.reenabled_at,
        Some(t(5)),
        "kept until a backfill completes"
    );
    s.clear_reenabled("acme", Service::Servicenow)
        .await
        .unwrap();
    let all = s.service_states().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].reenabled_at, all[0].first_seen_at), (None, t(1)));
    // First seen disabled.
    let st = s
        .observe_service("globex", Service::Salesforce, false, t(7))
        .await
        .unwrap();
    assert_eq!((st.enabled, st.last_disabled_at), (false, Some(t(7))));
}

async fn a_handoff_claim_lapses_is_renewed_released_and_ends_when_done(b: Backend) {
    let s = &b.life;
    let held = |owner: &str, until| HandoffClaim::Held {
        owner: owner.into(),
        until,
    };
    let claim = |owner: &'static str, now, until, breaking| {
        let s = s.clone();
        async move {
            s.claim_handoff("bf1", owner, now, until, breaking)
                .await
                .unwrap()
        }
    };
    assert_eq!(claim("a", t(1), t(3), None).await, HandoffClaim::Taken);
    assert_eq!(claim("b", t(2), t(4), None).await, held("a", t(3)));
    // Its holder renews it; another runner takes it once it has lapsed.
    assert_eq!(claim("a", t(2), t(5), None).await, HandoffClaim::Taken);
    assert_eq!(claim("b", t(4), t(6), None).await, held("a", t(5)));
    assert_eq!(claim("b", t(6), t(8), None).await, HandoffClaim::Taken);
    // A holder known dead is broken at once; a live one is not.
    assert_eq!(claim("a", t(7), t(9), Some("c")).await, held("b", t(8)));
    assert_eq!(claim("a", t(7), t(9), Some("b")).await, HandoffClaim::Taken);
    // A release by another owner does nothing; the holder's frees it at once.
    s.release_handoff("bf1", "b").await.unwrap();
    assert_eq!(claim("c", t(7), t(9), None).await, held("a", t(9)));
    s.release_handoff("bf1", "a").await.unwrap();
    assert_eq!(claim("c", t(7), t(9), None).await, HandoffClaim::Taken);
    // Once the hand-off is done, nobody takes it again.
    assert!(s.finalize_job("bf1", t(8)).await.unwrap());
    assert_eq!(claim("c", t(8), t(9), None).await, HandoffClaim::Done);
    assert_eq!(claim("d", t(20), t(21), None).await, HandoffClaim::Done);
}

async fn hints_are_kept_and_a_job_is_finalised_once(b: Backend) {
    let s = &b.life;
    let meta = JobMeta {
        priority: 7,
        trigger: Trigger::Auto,
        wait_off_peak: true,
        ..JobMeta::default_for("bf1")
    };
    s.put_job_meta(&meta).await.unwrap();
    let got = s.job_metas(&["bf1".into(), "nope".into()]).await.unwrap();
    assert_eq!(got, vec![meta.clone()]);
    assert!(s.finalize_job("bf1", t(2)).await.unwrap());
    assert!(!s.finalize_job("bf1", t(3)).await.unwrap(), "only once");
    // Hints written again keep the finalisation.
    s.put_job_meta(&meta).await.unwrap();
    let got = s.job_metas(&["bf1".into()]).await.unwrap();
    assert_eq!(got[0].finalized_at, Some(t(2)));
    // A job without hints can be finalised too.
    assert!(s.finalize_job("bf2", t(2)).await.unwrap());
    assert_eq!(
        s.job_metas(&["bf2".into()]).await.unwrap()[0].trigger,
        Trigger::Manual
    );
}

async fn a_quota_wait_is_noted_beside_the_hints_and_cleared(b: Backend) {
    let s = &b.life;
    let meta = JobMeta {
        priority: 3,
        wait_off_peak: true,
        ..JobMeta::default_for("bf1")
    };
    s.put_job_meta(&meta).await.unwrap();
    s.set_quota_wait("bf1", Some(t(4))).await.unwrap();
    let got = s.job_metas(&["bf1".into()]).await.unwrap();
    assert_eq!(got[0].quota_wait_until, Some(t(4)));
    assert_eq!(
        (got[0].priority, got[0].wait_off_peak),
        (3, true),
        "hints kept"
    );
    // Hints written again keep the note; a later note replaces it.
    s.put_job_meta(&meta).await.unwrap();
    s.set_quota_wait("bf1", Some(t(5))).await.unwrap();
    assert_eq!(
        s.job_metas(&["bf1".into()]).await.unwrap()[0].quota_wait_until,
        Some(t(5))
    );
    s.set_quota_wait("bf1", None).await.unwrap();
    assert_eq!(s.job_metas(&["bf1".into()]).await.unwrap(), vec![meta]);
    // A job without hints gets the defaults with its note.
    s.set_quota_wait("bf2", Some(t(6))).await.unwrap();
    let got = s.job_metas(&["bf2".into()]).await.unwrap();
    assert_eq!(
        got,
        vec![JobMeta {
            quota_wait_until: Some(t(6)),
            ..JobMeta::default_for("bf2")
        }]
    );
}

fn alert(kind: AlertKind, subject: &str, tenant: &str, at: DateTime<Utc>) -> Alert {
    Alert {
        kind,
        subject: subject.into(),
        tenant_id: tenant.into(),
        service: Service::Connectwise,
        job_id: Some(subject.into()),
        message: format!("{kind} on {subject}"),
        value: 4.0,
        threshold: 3.0,
        raised_at: at,
    }
}

async fn alerts_are_raised_once_per_kind_and_subject(b: Backend) {
    let s = &b.life;
    let a = alert(AlertKind::ConsecutiveChunkFailures, "bf1", "acme", t(1));
    assert!(s.raise_alert(&a).await.unwrap());
    assert!(!s.raise_alert(&a).await.unwrap());
    assert!(
        s.raise_alert(&alert(AlertKind::LongRunningJob, "bf1", "acme", t(2)))
            .await
            .unwrap()
    );
    assert!(
        s.raise_alert(&alert(AlertKind::LowCompletionRate, "bf9", "globex", t(3)))
            .await
            .unwrap()
    );
    let all = s.alerts(&AlertFilter::default()).await.unwrap();
    let kinds: Vec<AlertKind> = all.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        [
            AlertKind::LowCompletionRate,
            AlertKind::LongRunningJob,
            AlertKind::ConsecutiveChunkFailures
        ],
        "newest first"
    );
    assert_eq!(all[2], a);
    let acme = s
        .alerts(&AlertFilter {
            tenant_id: Some("acme".into()),
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(acme.len(), 2);
    let one = s
        .alerts(&AlertFilter {
            job_id: Some("bf1".into()),
            kind: Some(AlertKind::LongRunningJob),
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
}

fn verification(job: &str, table: &str, seq: u32, source: u64, landed: u64) -> ChunkVerification {
    ChunkVerification {
        key: ChunkKey {
            job_id: job.into(),
            table: table.into(),
            seq,
        },
        window: Window::new(t(1 + seq), t(2 + seq)),
        source_count: source,
        landed,
        verified_at: t(20),
    }
}

async fn verification_results_are_replaced_as_a_whole(b: Backend) {
    let s = &b.life;
    assert!(s.verification("bf1").await.unwrap().is_empty());
    let first = vec![
        verification("bf1", "tickets", 0, 10, 9),
        verification("bf1", "tickets", 1, 5, 5),
    ];
    s.save_verification("bf1", &first).await.unwrap();
    assert_eq!(s.verification("bf1").await.unwrap(), first);
    assert_eq!(first[0].missing(), 1);
    let second = vec![verification("bf1", "companies", 0, 3, 4)];
    s.save_verification("bf1", &second).await.unwrap();
    assert_eq!(s.verification("bf1").await.unwrap(), second);
    assert_eq!(second[0].moved_since(), 1);
}

fn job(id: &str) -> (Job, Vec<Chunk>) {
    let w = Window::new(t(1), t(11));
    let chunks = vec![Chunk::new(
        ChunkKey {
            job_id: id.into(),
            table: "tickets".into(),
            seq: 0,
        },
        w,
    )];
    let job = Job {
        job_id: id.into(),
        tenant_id: "acme".into(),
        service: Service::Connectwise,
        tables: vec!["tickets".into()],
        status: JobStatus::Pending,
        window: w,
        chunk_size_days: 10,
        max_attempts: 3,
        total_chunks: 1,
        completed_chunks: 0,
        failed_chunks: 0,
        records: 0,
        created_at: t(1),
        updated_at: t(1),
        finished_at: None,
        skipped_fields: Vec::new(),
    };
    (job, chunks)
}

async fn deleting_a_job_removes_its_rows_and_keeps_markers(b: Backend) {
    let (j, c) = job("bf1");
    b.jobs.create_job(j, c, false).await.unwrap();
    let claim = b
        .jobs
        .claim_next_chunk("bf1", "me:1:1", t(2) + Duration::minutes(1), t(2))
        .await
        .unwrap();
    assert!(matches!(claim, avesa_console::store::Claim::Chunk(_)));
    let key = ChunkKey {
        job_id: "bf1".into(),
        table: "tickets".into(),
        seq: 0,
    };
    b.jobs
        .complete_chunk(&key, "me:1:1", &Checkpoint::default(), t(2))
        .await
        .unwrap();
    let s = &b.life;
    s.put_job_meta(&JobMeta::default_for("bf1")).await.unwrap();
    s.save_verification("bf1", &[verification("bf1", "tickets", 0, 1, 1)])
        .await
        .unwrap();
    s.raise_alert(&alert(AlertKind::LowCompletionRate, "bf1", "acme", t(2)))
        .await
        .unwrap();
    s.advance_marker(&adv(JobKind::Backfill, "bf1", t(1), t(11)))
        .await
        .unwrap();
    assert_eq!(s.chunk_attempt_ended("bf1", true).await.unwrap(), 1);
    assert_eq!(s.chunk_attempt_ended("bf1", true).await.unwrap(), 2);
    let (other, oc) = job("bf2");
    b.jobs
        .create_job(other, oc, false)
        .await
        .unwrap_or_else(|_| panic!("second job"));

    assert!(s.delete_job("bf1").await.unwrap());
    assert!(!s.delete_job("bf1").await.unwrap(), "already gone");
    assert!(b.jobs.get_job("bf1").await.unwrap().is_none());
    assert!(b.jobs.chunks("bf1").await.is_err() || b.jobs.chunks("bf1").await.unwrap().is_empty());
    assert!(s.job_metas(&["bf1".into()]).await.unwrap().is_empty());
    assert!(s.verification("bf1").await.unwrap().is_empty());
    assert!(s.alerts(&AlertFilter::default()).await.unwrap().is_empty());
    assert_eq!(
        s.markers(None, None).await.unwrap().len(),
        1,
        "markers describe the data"
    );
    assert!(
        b.jobs.get_job("bf2").await.unwrap().is_some(),
        "other jobs stay"
    );
    assert_eq!(
        s.chunk_attempt_ended("bf1", true).await.unwrap(),
        1,
        "the failure run went with the job"
    );
}

/// Failed attempts from several processes make one run; a success anywhere ends it.
async fn failure_runs_are_counted_across_processes(b: Backend) {
    let handles: Vec<Arc<dyn LifecycleStore>> = vec![b.life.clone(), b.another(), b.another()];
    let mut tasks = Vec::new();
    for (i, h) in handles.iter().enumerate() {
        for _ in 0..8 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                (i, h.chunk_attempt_ended("bf1", true).await.unwrap())
            }));
        }
    }
    let mut runs = Vec::new();
    for t in tasks {
        runs.push(t.await.unwrap().1);
    }
    runs.sort_unstable();
    assert_eq!(
        runs,
        (1..=24).collect::<Vec<u32>>(),
        "every failure counted once"
    );
    assert_eq!(
        handles[1].chunk_attempt_ended("other", true).await.unwrap(),
        1,
        "runs are per job"
    );
    assert_eq!(
        handles[2].chunk_attempt_ended("bf1", false).await.unwrap(),
        0
    );
    assert_eq!(
        handles[0].chunk_attempt_ended("bf1", true).await.unwrap(),
        1
    );
    assert_eq!(
        handles[1].chunk_attempt_ended("bf1", false).await.unwrap(),
        0
    );
    assert_eq!(
        handles[1].chunk_attempt_ended("bf1", false).await.unwrap(),
        0
    );
    assert_eq!(
        handles[2].chunk_attempt_ended("other", true).await.unwrap(),
        2
    );
}

macro_rules! suite {
    ($backend:ident: $($case:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::run(super::$backend().await, super::$case).await;
                }
            )+
        }
    };
}

suite!(sqlite:
    markers_move_forward_and_refuse_gaps,
    enablement_history_remembers_a_re_enabling,
    hints_are_kept_and_a_job_is_finalised_once,
    a_quota_wait_is_noted_beside_the_hints_and_cleared,
    alerts_are_raised_once_per_kind_and_subject,
    verification_results_are_replaced_as_a_whole,
    deleting_a_job_removes_its_rows_and_keeps_markers,
    failure_runs_are_counted_across_processes,
    racing_writers_never_move_a_marker_back,
    racing_finishers_finalise_once,
    racing_runners_take_a_handoff_once,
    a_handoff_claim_lapses_is_renewed_released_and_ends_when_done,
);

suite!(dynamodb:
    markers_move_forward_and_refuse_gaps,
    enablement_history_remembers_a_re_enabling,
    hints_are_kept_and_a_job_is_finalised_once,
    a_quota_wait_is_noted_beside_the_hints_and_cleared,
    alerts_are_raised_once_per_kind_and_subject,
    verification_results_are_replaced_as_a_whole,
    deleting_a_job_removes_its_rows_and_keeps_markers,
    failure_runs_are_counted_across_processes,
    racing_writers_never_move_a_marker_back,
    racing_finishers_finalise_once,
    racing_runners_take_a_handoff_once,
    a_handoff_claim_lapses_is_renewed_released_and_ends_when_done,
);
