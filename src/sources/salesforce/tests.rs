//! The client against the in-process sandbox: REST paging, locator loss, Bulk API 2.0,
//! session refresh, request limits, cursors.

use super::*;
use crate::config::ServiceEndpoints;
use crate::sandbox::salesforce::{
    DAY, DEFAULT_DAILY_API_LIMIT, SfAccount, SfCounts, expected_salesforce,
};
use crate::sandbox::{Fault, FaultKind, Sandbox, SandboxConfig, TableCounts};

const USER: &str = "integration@acme.example";
const PASSWORD: &str = "sandbox-only-sf-password";
const SECRET: &str = "sandbox-only-consumer-secret";

fn account() -> SfAccount {
    SfAccount {
        tenant_id: "acme".into(),
        client_id: "3MVG9acme".into(),
        client_secret: SECRET.into(),
        username: USER.into(),
        password: Some(PASSWORD.into()),
        refresh_token: None,
        counts: SfCounts::from_table_counts(TableCounts::demo()),
        daily_api_limit: DEFAULT_DAILY_API_LIMIT,
        api_used_elsewhere: 0,
        elsewhere_frees_after: DAY,
        hidden_fields: Vec::new(),
    }
}

fn config(faults: Vec<Fault>) -> SandboxConfig {
    let mut cfg = SandboxConfig::new("2025-01-01T00:00:00Z".parse().unwrap(), Vec::new());
    cfg.history_days = 365;
    cfg.salesforce = vec![account()];
    cfg.faults = faults;
    cfg
}

fn fault(path: &str, kind: FaultKind, status: Option<u16>, times: Option<u32>) -> Fault {
    Fault {
        service: Service::Salesforce,
        kind,
        status,
        times,
        retry_after_seconds: Some(1),
        ..Fault::status(path, status.unwrap_or(500))
    }
}

async fn start(cfg: SandboxConfig) -> Sandbox {
    Sandbox::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn creds(password: &str) -> Credentials {
    Credentials::from_pairs(
        [
            ("client_id", "3MVG9acme"),
            ("client_secret", SECRET),
            ("username", USER),
            ("password", password),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

fn source(sb: &Sandbox, threshold: u64) -> Salesforce {
    Salesforce::new(
        &sb.url(),
        creds(PASSWORD),
        reqwest::Client::new(),
        &SourceSettings {
            bulk_query_threshold: threshold,
            ..SourceSettings::default()
        },
    )
    .unwrap()
    .with_poll_settings(PollSettings {
        first: Duration::from_millis(5),
        max: Duration::from_millis(20),
        give_up: Duration::from_secs(10),
    })
}

/// The shipped endpoint definition of `sobject`, with `page_size`.
fn endpoint(sobject: &str, page_size: u32) -> EndpointDef {
    let defs: ServiceEndpoints =
        serde_json::from_str(include_str!("../../../mappings/endpoints/salesforce.json")).unwrap();
    let mut ep = defs.find(sobject).unwrap().clone();
    ep.page_size = page_size;
    ep
}

fn window(a: &str, b: &str) -> Window {
    Window::new(a.parse().unwrap(), b.parse().unwrap())
}

/// `(Id, SystemModstamp)` of every record of a page, whatever its shape.
fn keys(page: &Page) -> Vec<(String, DateTime<Utc>)> {
    let v: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
    let records = match page.records_at {
        RecordsAt::Body => v,
        RecordsAt::Member(m) => v[m].clone(),
    };
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["Id"].as_str().unwrap().to_string(),
                parse_sf_time(r["SystemModstamp"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

/// Reads a window from `cursor` to its end: every key and every page.
async fn drain(
    src: &Salesforce,
    ep: &EndpointDef,
    w: &Window,
    mut cursor: Option<String>,
) -> (Vec<(String, DateTime<Utc>)>, Vec<Page>) {
    let mut got = Vec::new();
    let mut pages = Vec::new();
    loop {
        let page = src.fetch_page(ep, w, cursor.as_deref()).await.unwrap();
        got.extend(keys(&page));
        cursor = page.next.clone();
        pages.push(page);
        if cursor.is_none() {
            return (got, pages);
        }
        assert!(pages.len() < 1000, "paging does not end");
    }
}

async fn sf_stats(sb: &Sandbox) -> serde_json::Value {
    sandbox_json(sb, "stats").await
}

/// `GET /_sandbox/salesforce/{what}` as JSON.
/// A call to the sandbox's own `/_sandbox/salesforce/{what}` endpoint, its JSON answer.
async fn sandbox_call(sb: &Sandbox, method: reqwest::Method, what: &str) -> serde_json::Value {
    let body = reqwest::Client::new()
        .request(method, format!("{}/_sandbox/salesforce/{what}", sb.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

async fn sandbox_post(sb: &Sandbox, what: &str) -> serde_json::Value {
    sandbox_call(sb, reqwest::Method::POST, what).await
}

async fn sandbox_json(sb: &Sandbox, what: &str) -> serde_json::Value {
    sandbox_call(sb, reqwest::Method::GET, what).await
}

fn sorted(mut v: Vec<(String, DateTime<Utc>)>) -> Vec<(String, DateTime<Utc>)> {
    v.sort();
    v
}

#[tokio::test]
async fn rest_paging_reads_a_window_exactly_and_reports_usage() {
    let cfg = config(Vec::new());
    let sb = start(cfg.clone()).await;
    let src = source(&sb, 50_000);
    let ep = endpoint("Case", 200);
    let w = window("2024-03-01T00:00:00Z", "2024-05-01T00:00:00Z");
    let expected = expected_salesforce(&cfg, USER, "Case", &w);
    let (got, pages) = drain(&src, &ep, &w, None).await;
    assert_eq!(pages.len(), expected.len().div_ceil(200));
    assert!(pages.len() >= 3);
    assert_eq!(sorted(got), expected);
    let mut last_after: Option<After> = None;
    for (n, p) in pages.iter().enumerate() {
        assert_eq!(p.records_at, RecordsAt::Member("records"));
        let usage = p.usage.as_ref().unwrap();
        assert_eq!((usage.used, usage.limit), (Some(n as u64 + 1), 15_000));
        assert_eq!(usage.period, Duration::from_secs(86_400));
        if let Some(c) = &p.next {
            let Cursor::Rest { next, after, .. } = Cursor::decode(c).unwrap() else {
                panic!("{c}")
            };
            assert!(next.starts_with("/services/data/v60.0/query/"), "{next}");
            let after = after.unwrap();
            assert!(Some(&after) > last_after.as_ref());
            last_after = Some(after);
        }
    }
    let stats = sf_stats(&sb).await;
    assert_eq!(stats["logins"], 1, "one lazy login: {stats}");
    assert_eq!(stats["bulk_jobs"], 0);
    assert_eq!(src.count(&ep, &w).await.unwrap(), expected.len() as u64);
}

#[tokio::test]
async fn a_lost_locator_continues_by_keyset_without_gaps_or_repeats() {
    let cfg = config(Vec::new());
    let sb = start(cfg.clone()).await;
    let ep = endpoint("Lead", 200);
    let w = window("2024-05-01T00:00:00Z", "2024-07-01T00:00:00Z");
    let expected = expected_salesforce(&cfg, USER, "Lead", &w);
    let src = source(&sb, 50_000);
    let p1 = src.fetch_page(&ep, &w, None).await.unwrap();
    let p2 = src.fetch_page(&ep, &w, p1.next.as_deref()).await.unwrap();
    let cursor = p2.next.clone().unwrap();
    // The process dies; the org drops the locators; a new process resumes from the cursor.
    drop(src);
    let expired = sandbox_post(&sb, "expire_locators").await;
    assert!(expired["expired"].as_u64().unwrap() >= 1);
    let resumed = source(&sb, 50_000);
    let (rest, pages) = drain(&resumed, &ep, &w, Some(cursor)).await;
    let mut all = keys(&p1);
    all.extend(keys(&p2));
    all.extend(rest);
    let n = all.len();
    let all = sorted(all);
    assert_eq!(n, expected.len(), "nothing fetched twice");
    assert_eq!(all, expected, "nothing skipped");
    assert!(!pages.is_empty());
    let stats = sf_stats(&sb).await;
    assert_eq!(
        stats["queries"], 2,
        "the window query and one keyset query: {stats}"
    );
}

/// A window of Leads whose 200th and 201st records in `(SystemModstamp, Id)` order share one
/// stamp with milliseconds, and its expected records.
fn window_splitting_a_tie(cfg: &SandboxConfig) -> (Window, Vec<(String, DateTime<Utc>)>) {
    let from: DateTime<Utc> = "2024-03-01T00:00:00Z".parse().unwrap();
    (0..2000)
        .find_map(|h| {
            let start = from + chrono::Duration::hours(h);
            let w = Window::new(start, start + chrono::Duration::days(60));
            let expected = expected_salesforce(cfg, USER, "Lead", &w);
            let mut by_time: Vec<_> = expected.iter().map(|(id, t)| (*t, id)).collect();
            by_time.sort();
            let split = by_time.len() > 450
                && by_time[199].0 == by_time[200].0
                && by_time[200].0.timestamp_subsec_millis() != 0;
            split.then_some((w, expected))
        })
        .expect("no window splits a millisecond tie at the page boundary")
}

#[tokio::test]
async fn millisecond_stamps_shared_across_a_page_boundary_are_neither_skipped_nor_repeated() {
    let cfg = config(Vec::new());
    let sb = start(cfg.clone()).await;
    let ep = endpoint("Lead", 200);
    let (w, expected) = window_splitting_a_tie(&cfg);
    // Through nextRecordsUrl.
    let (all, pages) = drain(&source(&sb, 50_000), &ep, &w, None).await;
    assert!(pages.len() >= 3);
    assert_eq!(all.len(), expected.len(), "nothing fetched twice");
    assert_eq!(sorted(all), expected, "nothing skipped");
    // Through the keyset query: the locator is lost right after the tie is split.
    let src = source(&sb, 50_000);
    let p1 = src.fetch_page(&ep, &w, None).await.unwrap();
    let Cursor::Rest { after, .. } = Cursor::decode(p1.next.as_deref().unwrap()).unwrap() else {
        panic!("rest cursor expected")
    };
    assert_ne!(after.unwrap().ts.timestamp_subsec_millis(), 0);
    sandbox_post(&sb, "expire_locators").await;
    let before = sf_stats(&sb).await["queries"].as_u64().unwrap();
    let (rest, _) = drain(&src, &ep, &w, p1.next.clone()).await;
    assert_eq!(
        sf_stats(&sb).await["queries"].as_u64().unwrap(),
        before + 1,
        "one keyset query"
    );
    let mut all = keys(&p1);
    all.extend(rest);
    assert_eq!(all.len(), expected.len(), "nothing fetched twice");
    assert_eq!(sorted(all), expected, "nothing skipped");
}

#[tokio::test]
async fn records_deleted_mid_read_neither_fail_the_read_nor_hide_the_others() {
    // Deletions before the query is answered and between its pages (from the snapshot of
    // the query: gone from the pages not yet read).
    let cfg = config(vec![Fault {
        records: Some(30),
        ..fault("Lead", FaultKind::DeleteRecords, None, Some(3))
    }]);
    let sb = start(cfg.clone()).await;
    let ep = endpoint("Lead", 200);
    let w = window("2024-05-01T00:00:00Z", "2024-07-01T00:00:00Z");
    let initial = expected_salesforce(&cfg, USER, "Lead", &w);
    let (got, pages) = drain(&source(&sb, 50_000), &ep, &w, None).await;
    assert!(pages.len() >= 3);
    let moved: serde_json::Value = sandbox_json(&sb, "moved").await;
    let deleted: std::collections::BTreeSet<&str> = moved
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["deleted"] == true)
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(deleted.len(), 90, "{moved}");
    let ids: std::collections::BTreeSet<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), got.len(), "an id came twice");
    let now: Vec<_> = initial
        .iter()
        .filter(|(id, _)| !deleted.contains(id.as_str()))
        .collect();
    let skipped: Vec<_> = now
        .iter()
        .filter(|(id, _)| !ids.contains(id.as_str()))
        .collect();
    assert!(skipped.is_empty(), "skipped: {skipped:?}");
    // Anything else was read before its deletion; the first 30 went before the query.
    let extra = got.len() - now.len();
    assert!(
        got.iter().all(|g| initial.binary_search(g).is_ok()),
        "foreign records"
    );
    assert!(extra > 0 && extra < 60, "{extra} deleted records read");
}

#[tokio::test]
async fn records_moved_later_inside_the_window_are_all_read_none_skipped() {
    // Moves before the query and between its pages; the query locator's snapshot holds
    // every record, each shown with its time as it is now.
    let cfg = config(vec![Fault {
        records: Some(20),
        inside_window: true,
        ..fault("Lead", FaultKind::TouchRecords, None, Some(2))
    }]);
    let sb = start(cfg.clone()).await;
    let ep = endpoint("Lead", 200);
    let w = window("2024-05-01T00:00:00Z", "2024-07-01T00:00:00Z");
    let initial = expected_salesforce(&cfg, USER, "Lead", &w);
    let (all, _) = drain(&source(&sb, 50_000), &ep, &w, None).await;
    let moved = sandbox_json(&sb, "moved").await;
    let moved: Vec<&str> = moved
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let to: DateTime<Utc> = m["to"].as_str().unwrap().parse().unwrap();
            let from: DateTime<Utc> = m["from"].as_str().unwrap().parse().unwrap();
            assert!(to > from && w.contains(to), "{m}");
            m["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(moved.len(), 40);
    let got: Vec<String> = all.into_iter().map(|(id, _)| id).collect();
    let have: std::collections::BTreeSet<&str> = got.iter().map(String::as_str).collect();
    let want: std::collections::BTreeSet<&str> =
        initial.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(have, want, "every record there at the end, nothing else");
    // A record read twice is one that moved after it was read.
    let mut seen = std::collections::BTreeSet::new();
    let twice: Vec<&String> = got.iter().filter(|id| !seen.insert(*id)).collect();
    assert!(
        twice.iter().all(|id| moved.contains(&id.as_str())),
        "{twice:?}"
    );
}

#[tokio::test]
async fn records_edited_mid_read_do_not_move_the_keyset_position() {
    // The first fault (harmless) takes the window query; the second edits most of the
    // window just before page 2 is served, so page 2 shows them past the window's end.
    let cfg = config(vec![
        Fault {
            delay_ms: Some(1),
            ..fault("Lead", FaultKind::Slow, None, Some(1))
        },
        Fault {
            records: Some(1000),
            ..fault("Lead", FaultKind::TouchRecords, None, Some(1))
        },
    ]);
    let sb = start(cfg.clone()).await;
    let ep = endpoint("Lead", 200);
    let w = window("2024-05-01T00:00:00Z", "2024-07-01T00:00:00Z");
    let expected = expected_salesforce(&cfg, USER, "Lead", &w);
    let src = source(&sb, 50_000);
    let p1 = src.fetch_page(&ep, &w, None).await.unwrap();
    let p2 = src.fetch_page(&ep, &w, p1.next.as_deref()).await.unwrap();
    let last = keys(&p2).last().cloned().unwrap();
    assert!(
        !w.contains(last.1),
        "precondition: page 2 ends with an edited record"
    );
    let Cursor::Rest { after, .. } = Cursor::decode(p2.next.as_deref().unwrap()).unwrap() else {
        panic!("rest cursor expected")
    };
    assert!(w.contains(after.unwrap().ts));
    // The locator is lost; the keyset query goes on from the last record inside the window.
    sandbox_post(&sb, "expire_locators").await;
    let (rest, _) = drain(&src, &ep, &w, p2.next.clone()).await;
    let mut all = keys(&p1);
    all.extend(keys(&p2));
    all.extend(rest);
    let ids: std::collections::BTreeSet<&String> = all.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), all.len(), "an id came twice");
    let moved: serde_json::Value = sandbox_json(&sb, "moved").await;
    let moved: std::collections::BTreeSet<&str> = moved
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(moved.len() >= 1000);
    let stayed: Vec<_> = expected
        .iter()
        .filter(|(id, _)| !moved.contains(id.as_str()))
        .collect();
    assert!(stayed.len() > 100);
    for k in stayed {
        assert!(all.contains(k), "{k:?} was skipped");
    }
}

#[tokio::test]
async fn big_windows_go_through_bulk_jobs_whose_pages_can_be_read_again() {
    let cfg = config(Vec::new());
    let sb = start(cfg.clone()).await;
    let src = source(&sb, 100);
    let ep = endpoint("Account", 50);
    let w = window("2024-01-01T00:00:00Z", "2024-04-01T00:00:00Z");
    let expected = expected_salesforce(&cfg, USER, "Account", &w);
    assert!(expected.len() > 150, "{}", expected.len());
    let (got, pages) = drain(&src, &ep, &w, None).await;
    assert_eq!(sorted(got), expected);
    assert_eq!(pages.len(), expected.len().div_ceil(50));
    for p in &pages {
        assert_eq!(p.records_at, RecordsAt::Body);
        assert!(p.usage.is_some());
    }
    let first: serde_json::Value = serde_json::from_slice(&pages[0].body).unwrap();
    let r = &first[0];
    assert!(r["Owner"]["Name"].is_string(), "{r}");
    assert!(r.get("attributes").is_none());
    assert!(
        first
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["Description"].is_null()),
        "empty CSV fields become null"
    );
    let c = pages[1].next.clone().unwrap();
    assert!(
        matches!(Cursor::decode(&c).unwrap(), Cursor::Bulk { .. }),
        "{c}"
    );
    let again = src.fetch_page(&ep, &w, Some(&c)).await.unwrap();
    assert_eq!(
        again.body.bytes(),
        pages[2].body.bytes(),
        "a locator reads the same page again"
    );
    let stats = sf_stats(&sb).await;
    assert_eq!(stats["bulk_jobs"], 1, "{stats}");
    assert_eq!(stats["bulk_result_pages"], pages.len() + 1);
    assert_eq!(
        stats["queries"], 1,
        "only the first REST page, to learn totalSize"
    );
}

#[tokio::test]
async fn a_bulk_job_ending_failed_or_aborted_is_an_error_naming_it_and_a_new_job_reads_the_window()
{
    let cfg = config(vec![
        Fault {
            message: "InternalServerError: query timed out".into(),
            ..fault("Account", FaultKind::JobFailed, None, Some(1))
        },
        Fault {
            message: "Aborted by an administrator".into(),
            ..fault("Contact", FaultKind::JobAborted, None, None)
        },
    ]);
    let sb = start(cfg.clone()).await;
    let src = source(&sb, 100);
    let w = window("2024-01-01T00:00:00Z", "2024-04-01T00:00:00Z");
    let ep = endpoint("Account", 50);
    let err = src.fetch_page(&ep, &w, None).await.unwrap_err().to_string();
    assert!(
        err.contains("failed") && err.contains("query timed out"),
        "{err}"
    );
    // The next attempt starts a new job, which completes: the window lands exactly.
    let (got, _) = drain(&src, &ep, &w, None).await;
    let expected = expected_salesforce(&cfg, USER, "Account", &w);
    assert!(expected.len() > 150, "{}", expected.len());
    assert_eq!(got.len(), expected.len(), "nothing twice");
    assert_eq!(sorted(got), expected, "nothing skipped");
    assert_eq!(sf_stats(&sb).await["bulk_jobs"], 2);
    // Every job of the Contacts is aborted: every attempt is an error, no page comes back.
    let ep = endpoint("Contact", 50);
    for _ in 0..3 {
        let err = src.fetch_page(&ep, &w, None).await.unwrap_err().to_string();
        assert!(
            err.contains("aborted") && err.contains("Aborted by an administrator"),
            "{err}"
        );
    }
    let stats = sf_stats(&sb).await;
    assert_eq!(stats["bulk_jobs"], 5, "a new job each attempt: {stats}");
    assert_eq!(
        stats["bulk_result_pages"].as_u64(),
        Some(expected.len().div_ceil(50) as u64)
    );
}

#[tokio::test]
async fn a_retried_first_page_reuses_its_bulk_job() {
    let cfg = config(vec![fault(
        "Opportunity",
        FaultKind::Status,
        Some(503),
        Some(1),
    )]);
    let sb = start(cfg.clone()).await;
    let src = source(&sb, 10);
    let ep = endpoint("Opportunity", 2000);
    let w = window("2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z");
    // The 503 hits the first REST query; the retry creates the job.
    let err = src.fetch_page(&ep, &w, None).await.unwrap_err();
    assert!(
        matches!(err, SourceError::Http { status: 503, .. }),
        "{err:?}"
    );
    let page = src.fetch_page(&ep, &w, None).await.unwrap();
    assert_eq!(
        sorted(keys(&page)),
        expected_salesforce(&cfg, USER, "Opportunity", &w)
    );
    assert!(page.next.is_none());
    let again = src.fetch_page(&ep, &w, None).await.unwrap();
    assert_eq!(keys(&again).len(), keys(&page).len());
    let stats = sf_stats(&sb).await;
    assert_eq!(stats["bulk_jobs"], 2, "{stats}");
    assert_eq!(stats["queries"], 3, "{stats}");

    // A job whose results fail is not created again by the retry, nor is the REST query
    // repeated: the first fault (harmless) takes the REST query, the second cuts the results.
    let cfg = config(vec![
        Fault {
            delay_ms: Some(1),
            ..fault("Opportunity", FaultKind::Slow, None, Some(1))
        },
        Fault {
            window_start: Some(w.start),
            ..fault("Opportunity", FaultKind::Truncate, None, Some(1))
        },
    ]);
    let sb = start(cfg).await;
    let src = source(&sb, 10);
    // (A cut body reads as a broken transfer or as a reset before the headers were flushed.)
    let err = src.fetch_page(&ep, &w, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::Decode {
                truncated: true,
                ..
            } | SourceError::Transport(_)
        ),
        "{err:?}"
    );
    src.fetch_page(&ep, &w, None).await.unwrap();
    let stats = sf_stats(&sb).await;
    assert_eq!(stats["bulk_jobs"], 1, "{stats}");
    assert_eq!(stats["queries"], 1, "{stats}");
    assert_eq!(stats["bulk_result_pages"], 2, "{stats}");
}

#[tokio::test]
async fn a_rejected_session_logs_in_again_and_leaves_the_repeat_to_the_caller() {
    let cfg = config(vec![
        fault("Case", FaultKind::ExpireToken, None, Some(1)),
        fault("Lead", FaultKind::Status, Some(401), None),
    ]);
    let sb = start(cfg.clone()).await;
    let src = source(&sb, 50_000);
    let w = window("2024-02-01T00:00:00Z", "2024-02-08T00:00:00Z");
    let case = endpoint("Case", 2000);
    // The refused request is not repeated behind the caller's back (the repeat must take a
    // rate slot): the source logs in again and says so.
    match src.fetch_page(&case, &w, None).await {
        Err(SourceError::SessionRenewed { status: 401, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(sf_stats(&sb).await["logins"], 2);
    let page = src.fetch_page(&case, &w, None).await.unwrap();
    assert_eq!(
        sorted(keys(&page)),
        expected_salesforce(&cfg, USER, "Case", &w)
    );
    assert_eq!(sf_stats(&sb).await["logins"], 2, "the new session is kept");
    let err = src
        .fetch_page(&endpoint("Lead", 2000), &w, None)
        .await
        .unwrap_err();
    match &err {
        SourceError::SessionRenewed {
            status: 401,
            message,
        } => assert!(message.contains("INVALID_SESSION_ID"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sf_stats(&sb).await["logins"],
        3,
        "one new login per refusal, not a loop"
    );
}

#[tokio::test]
async fn request_limits_are_rate_limited_errors_and_other_errors_keep_the_apis_words() {
    let cfg = config(vec![
        fault("Account", FaultKind::Status, Some(403), Some(1)),
        fault("Account", FaultKind::Status, Some(429), Some(1)),
    ]);
    let sb = start(cfg).await;
    let src = source(&sb, 50_000);
    let ep = endpoint("Account", 2000);
    let w = window("2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z");
    let e = src.fetch_page(&ep, &w, None).await.unwrap_err();
    assert!(
        matches!(&e, SourceError::RateLimited { status: 403, message, .. } if message.starts_with("REQUEST_LIMIT_EXCEEDED")),
        "{e:?}"
    );
    let e = src.fetch_page(&ep, &w, None).await.unwrap_err();
    assert!(
        matches!(e, SourceError::RateLimited { status: 429, retry_after: Some(d), .. } if d == Duration::from_secs(1)),
        "{e:?}"
    );
    src.fetch_page(&ep, &w, None).await.unwrap();
    // A column the org does not know: the API's code and message, not retryable.
    let mut bad = ep.clone();
    bad.columns.push(crate::config::ColumnDef {
        name: "Region__c".into(),
        kind: crate::config::ColumnType::String,
    });
    let e = src.fetch_page(&bad, &w, None).await.unwrap_err();
    assert!(
        matches!(&e, SourceError::Http { status: 400, message, .. } if message.starts_with("INVALID_FIELD: No such column 'Region__c'")),
        "{e:?}"
    );
    // Then the request it answered, as ConnectWise's and ServiceNow's errors name theirs: the
    // path without the SOQL, and the id the answer carried.
    let SourceError::Http { message, .. } = &e else {
        unreachable!()
    };
    let note = message
        .rsplit_once(" (")
        .map(|(_, n)| n)
        .unwrap_or_default();
    assert!(
        note.starts_with("GET /services/data/v") && note.contains("/query; request id sbx-"),
        "{message}"
    );
    assert!(!note.contains("SELECT"), "{message}");
}

#[tokio::test]
async fn bad_cursors_and_bad_logins_fail_clearly_without_secrets() {
    let sb = start(config(Vec::new())).await;
    let src = source(&sb, 50_000);
    let ep = endpoint("Account", 2000);
    let w = window("2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z");
    let e = src.fetch_page(&ep, &w, Some("20931")).await.unwrap_err();
    assert!(
        matches!(&e, SourceError::Config(m) if m.contains("invalid Salesforce cursor \"20931\"")),
        "{e:?}"
    );
    let wrong = Salesforce::new(
        &sb.url(),
        creds("not-the-password"),
        reqwest::Client::new(),
        &SourceSettings::default(),
    )
    .unwrap();
    let e = wrong.fetch_page(&ep, &w, None).await.unwrap_err();
    let said = e.to_string();
    assert!(
        said.starts_with(
            "HTTP 400: login failed: invalid_grant: authentication failure (POST \
             /services/oauth2/token; request id sbx-"
        ),
        "{said}"
    );
    let missing = Salesforce::new(
        &sb.url(),
        Credentials::from_pairs([("client_id".to_string(), "x".to_string())]),
        reqwest::Client::new(),
        &SourceSettings::default(),
    );
    assert!(matches!(missing, Err(SourceError::Config(m)) if m.contains("client_secret")));
    let transport = Salesforce::new(
        "http://127.0.0.1:1",
        creds(PASSWORD),
        reqwest::Client::new(),
        &SourceSettings::default(),
    )
    .unwrap();
    let e = transport.fetch_page(&ep, &w, None).await.unwrap_err();
    assert!(matches!(e, SourceError::Transport(_)), "{e:?}");
    assert!(!format!("{e:?}").contains(PASSWORD) && !format!("{e:?}").contains(SECRET));
}

#[test]
fn monthly_counts_become_pieces_of_the_window_with_empty_months() {
    let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    let w = Window::new(t("2023-11-15T00:00:00Z"), t("2024-02-10T12:00:00Z"));
    let pieces = month_pieces(&w, &[(2024, 2, 7), (2023, 11, 3)]).unwrap();
    assert_eq!(
        pieces,
        vec![
            (Window::new(w.start, t("2023-12-01T00:00:00Z")), 3),
            (
                Window::new(t("2023-12-01T00:00:00Z"), t("2024-01-01T00:00:00Z")),
                0
            ),
            (
                Window::new(t("2024-01-01T00:00:00Z"), t("2024-02-01T00:00:00Z")),
                0
            ),
            (Window::new(t("2024-02-01T00:00:00Z"), w.end), 7),
        ]
    );
    assert!(
        month_pieces(&w, &[(2024, 3, 1)]).is_err(),
        "a month outside"
    );
    let body = br#"{"totalSize":1,"done":true,"records":[{"attributes":{"type":"AggregateResult"},"expr0":2024,"expr1":2,"expr2":7}]}"#;
    assert_eq!(
        wire::parse_monthly_counts(body).unwrap(),
        vec![(2024, 2, 7)]
    );
}

/// As Salesforce edits records, `SystemModstamp` becomes the edit's time: a record edited while
/// the window containing now is read shows a time past every unread record's. If the locator
/// is then lost, the keyset query must still start before the unread records.
#[tokio::test]
async fn records_edited_now_while_read_are_not_a_keyset_position_after_a_lost_locator() {
    let now = Utc::now();
    let mut cfg = config(vec![Fault {
        records: Some(20),
        inside_window: true,
        ..fault("Lead", FaultKind::TouchRecords, None, Some(2))
    }]);
    // The org's history ends now, so an edit inside the window is an edit to about now.
    cfg.anchor = now;
    let sb = start(cfg.clone()).await;
    let ep = endpoint("Lead", 200);
    let w = Window::new(
        now - chrono::Duration::days(60),
        now + chrono::Duration::days(1),
    );
    let initial = expected_salesforce(&cfg, USER, "Lead", &w);
    assert!(
        initial.len() > 400,
        "{} leads: too few pages",
        initial.len()
    );
    let src = source(&sb, 50_000);
    let p1 = src.fetch_page(&ep, &w, None).await.unwrap();
    let p2 = src.fetch_page(&ep, &w, p1.next.as_deref()).await.unwrap();
    let expired = sandbox_post(&sb, "expire_locators").await;
    assert!(expired["expired"].as_u64().unwrap() >= 1);
    let (rest, _) = drain(&source(&sb, 50_000), &ep, &w, p2.next.clone()).await;
    let mut got: Vec<String> = keys(&p1).into_iter().map(|(id, _)| id).collect();
    got.extend(keys(&p2).into_iter().map(|(id, _)| id));
    got.extend(rest.into_iter().map(|(id, _)| id));
    let have: std::collections::BTreeSet<&str> = got.iter().map(String::as_str).collect();
    let want: std::collections::BTreeSet<&str> =
        initial.iter().map(|(id, _)| id.as_str()).collect();
    let skipped: Vec<&&str> = want.difference(&have).take(5).collect();
    assert!(
        skipped.is_empty(),
        "skipped after the lost locator: {skipped:?}"
    );
    assert_eq!(have, want);
}

/// Field-level security: the sandbox leaves the user's hidden fields out of describes and
/// refuses a query naming one as Salesforce does; `unreadable_columns` finds them (through the
/// `Owner` relationship for `Owner.Name`, one describe per object), and the query without them
/// (the backfill's, `probe`) is accepted.
#[tokio::test]
async fn hidden_fields_are_found_by_describe_and_refused_in_queries() {
    let mut cfg = config(Vec::new());
    cfg.salesforce[0].hidden_fields = vec!["Account.Industry".into(), "User.Name".into()];
    let sb = start(cfg).await;
    let sf = source(&sb, u64::MAX);
    let ep = endpoint("Account", 200);
    let hidden = sf
        .unreadable_columns(&ep, &crate::sources::Unpaced)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hidden, ["Industry", "Owner__Name"]);
    assert_eq!(sf.lock_describes().len(), 2, "Account and User, each once");
    let w = window("2024-06-01T00:00:00Z", "2024-09-01T00:00:00Z");
    let refused = sf.fetch_page(&ep, &w, None).await.unwrap_err();
    let text = refused.to_string();
    assert!(text.contains("HTTP 400: INVALID_FIELD"), "{text}");
    assert!(
        text.contains("No such column 'Industry' on entity 'Account'"),
        "{text}"
    );
    let reading = crate::engine::fields::without(&ep, &["Industry", "Owner__Name"]);
    assert_eq!(sf.probe(&reading, &w).await.unwrap(), 1);
    let open = sf
        .unreadable_columns(&endpoint("Contact", 200), &crate::sources::Unpaced)
        .await
        .unwrap();
    assert_eq!(open, Some(Vec::new()));
}

/// An org whose connected app signs in with client credentials only (its run-as user is
/// named by the client id in the sandbox).
const CLIENT: &str = "3MVG9initechClientCredentials";

fn client_credentials() -> Credentials {
    Credentials::from_pairs(
        [("client_id", CLIENT), ("client_secret", SECRET)]
            .map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

fn client_source(url: &str, http: reqwest::Client) -> Salesforce {
    Salesforce::new(url, client_credentials(), http, &SourceSettings::default()).unwrap()
}

fn client_config(faults: Vec<Fault>) -> SandboxConfig {
    let mut cfg = config(faults);
    cfg.salesforce.push(SfAccount {
        tenant_id: "initech".into(),
        client_id: CLIENT.into(),
        username: CLIENT.into(),
        password: None,
        ..account()
    });
    cfg
}

#[tokio::test]
async fn client_credentials_log_in_at_my_domain_and_again_only_when_the_session_expires() {
    let cfg = client_config(vec![fault("Case", FaultKind::ExpireToken, None, Some(2))]);
    let sb = start(cfg.clone()).await;
    let src = client_source(&sb.url(), reqwest::Client::new());
    let w = window("2024-02-01T00:00:00Z", "2024-05-01T00:00:00Z");
    // One sObject read whole, then one whose first two requests meet expired sessions.
    let (accounts, pages) = drain(&src, &endpoint("Account", 200), &w, None).await;
    assert!(pages.len() > 2, "{} pages", pages.len());
    assert_eq!(
        sorted(accounts),
        expected_salesforce(&cfg, CLIENT, "Account", &w)
    );
    let case = endpoint("Case", 200);
    let mut renewed = 0;
    let first = loop {
        match src.fetch_page(&case, &w, None).await {
            Err(SourceError::SessionRenewed { status: 401, .. }) => renewed += 1,
            Err(e) => panic!("{e:?}"),
            Ok(page) => break page,
        }
    };
    assert_eq!(renewed, 2);
    let (mut cases, _) = drain(&src, &case, &w, first.next.clone()).await;
    cases.extend(keys(&first));
    assert_eq!(sorted(cases), expected_salesforce(&cfg, CLIENT, "Case", &w));
    // One login, then one per expired session: not one per page.
    let stats = sf_stats(&sb).await;
    assert_eq!(stats["logins"], 3, "{stats}");
    assert_eq!(stats["login_failures"], 0, "{stats}");
}

#[tokio::test]
async fn client_credentials_sent_to_the_shared_login_host_fail_naming_my_domain() {
    let sb = start(client_config(Vec::new())).await;
    let port = url::Url::parse(&sb.url()).unwrap().port().unwrap();
    // login.salesforce.com resolves to the sandbox, which answers as Salesforce does there.
    let http = reqwest::Client::builder()
        .resolve("login.salesforce.com", "127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap();
    let src = client_source(&format!("http://login.salesforce.com:{port}"), http);
    let w = window("2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z");
    let e = src
        .fetch_page(&endpoint("Account", 200), &w, None)
        .await
        .unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("invalid_grant: request not supported on this domain")
            && message.contains("org's My Domain")
            && message.contains(&format!("not http://login.salesforce.com:{port}")),
        "{message}"
    );
    assert!(!e.is_retryable(), "{e:?}");
    assert!(!message.contains(SECRET), "{message}");
    // The org's own host takes the same credentials.
    let ok = client_source(&sb.url(), reqwest::Client::new());
    ok.fetch_page(&endpoint("Account", 200), &w, None)
        .await
        .unwrap();
}
