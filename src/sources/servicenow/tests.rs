//! The ServiceNow client: exact queries, cursors, error bodies, and real requests against
//! the sandbox (paging, 404 as empty, token refresh, rate limits, broken bodies).

use chrono::TimeZone;

use super::*;
use crate::config::{ColumnDef, ColumnType};
use crate::domain::RecordsAt;
use crate::sandbox::servicenow::{SnAccount, SnCounts, expected_servicenow};
use crate::sandbox::{Fault, FaultKind, Sandbox, SandboxConfig};
use crate::sources::ApiUsage;

fn utc(y: i32, m: u32, d: u32, hh: u32, mm: u32, ss: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, hh, mm, ss).unwrap()
}

fn jan() -> Window {
    Window::new(utc(2024, 1, 1, 0, 0, 0), utc(2024, 2, 1, 0, 0, 0))
}

const ID: &str = "9d385017c611228701d22104cc95c371";

fn endpoint(path: &str, page_size: u32) -> EndpointDef {
    EndpointDef {
        path: path.to_string(),
        table_name: format!("{path}s"),
        id_field: "sys_id".into(),
        incremental_field: "sys_updated_on".into(),
        query_field: Some("sys_updated_on".into()),
        page_size,
        columns: vec![
            ColumnDef {
                name: "sys_id".into(),
                kind: ColumnType::String,
            },
            ColumnDef {
                name: "sys_updated_on".into(),
                kind: ColumnType::Timestamp,
            },
        ],
    }
}

#[test]
fn window_and_keyset_queries_are_exact() {
    assert_eq!(
        page_query("sys_updated_on", &jan(), None),
        "sys_updated_on>=2024-01-01 00:00:00^sys_updated_on<2024-02-01 00:00:00\
         ^ORDERBYsys_updated_on^ORDERBYsys_id"
    );
    let c = Cursor::parse(&format!("2024-01-05 10:00:00|{ID}"), &jan()).unwrap();
    assert_eq!(
        page_query("sys_updated_on", &jan(), Some(&c)),
        "sys_updated_on>=2024-01-01 00:00:00^sys_updated_on<2024-02-01 00:00:00\
         ^sys_updated_on>=2024-01-05 10:00:00^ORDERBYsys_updated_on^ORDERBYsys_id"
    );
    assert_eq!(
        ties_query("sys_updated_on", &jan(), &c),
        format!(
            "sys_updated_on>=2024-01-01 00:00:00^sys_updated_on<2024-02-01 00:00:00\
             ^sys_updated_on=2024-01-05 10:00:00^sys_id>{ID}^ORDERBYsys_id"
        )
    );
    let past = Cursor::parse(&format!("2024-01-05 10:00:00|{PAST_TIES}"), &jan()).unwrap();
    assert_eq!(
        page_query("sys_updated_on", &jan(), Some(&past)),
        "sys_updated_on>=2024-01-01 00:00:00^sys_updated_on<2024-02-01 00:00:00\
         ^sys_updated_on>2024-01-05 10:00:00^ORDERBYsys_updated_on^ORDERBYsys_id"
    );
    // Fractional bounds round up to the next whole second (records carry whole seconds).
    let w = Window::new(
        utc(2024, 1, 1, 0, 0, 0) + chrono::Duration::milliseconds(500),
        utc(2024, 1, 2, 0, 0, 0) + chrono::Duration::milliseconds(1),
    );
    assert_eq!(
        window_query("sys_updated_on", &w),
        "sys_updated_on>=2024-01-01 00:00:01^sys_updated_on<2024-01-02 00:00:01"
    );
}

#[test]
fn the_query_string_is_percent_encoded_with_the_fixed_parameters() {
    assert_eq!(
        page_query_string("sys_updated_on", &jan(), None, 50),
        "sysparm_query=sys_updated_on%3E%3D2024-01-01%2000%3A00%3A00%5Esys_updated_on%3C2024-02-01%2000%3A00%3A00\
         %5EORDERBYsys_updated_on%5EORDERBYsys_id\
         &sysparm_display_value=false&sysparm_exclude_reference_link=true\
         &sysparm_suppress_pagination_header=true&sysparm_limit=50"
    );
    let c = Cursor::parse(&format!("2024-01-05 10:00:00|{ID}"), &jan()).unwrap();
    let qs = page_query_string("sys_updated_on", &jan(), Some(&c), 1000);
    let decoded: Vec<(String, String)> = url::form_urlencoded::parse(qs.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(decoded[0].0, "sysparm_query");
    assert_eq!(decoded[0].1, page_query("sys_updated_on", &jan(), Some(&c)));
    assert!(!qs.contains("NQ"), "one block: {qs}");
    assert!(!qs.contains('+') && !qs.contains(' '), "{qs}");
    assert!(qs.ends_with("&sysparm_limit=1000"));
}

#[test]
fn cursors_round_trip_and_bad_ones_name_themselves() {
    let text = format!("2024-01-05 10:00:00|{ID}");
    let c = Cursor::parse(&text, &jan()).unwrap();
    assert_eq!(c.to_string(), text);
    assert_eq!(c.sys_id, ID);
    for bad in [
        "garbage".to_string(),
        format!("2024-01-05T10:00:00Z|{ID}"),
        format!("2024-1-5 10:00:00|{ID}"),
        "2024-01-05 10:00:00|not-a-sys-id".to_string(),
        format!("2024-01-05 10:00:00|{ID}^ORsys_id>0"),
        format!("2024-03-05 10:00:00|{ID}"),
        format!("2023-12-31 23:59:59|{ID}"),
    ] {
        match Cursor::parse(&bad, &jan()) {
            Err(SourceError::Config(m)) => {
                assert!(m.contains("invalid ServiceNow cursor"), "{m}");
                assert!(m.contains(&bad.escape_default().to_string()), "{m}");
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn error_envelopes_give_the_api_message() {
    assert_eq!(
        error_message(
            br#"{"error":{"message":"User is not authenticated","detail":"Required to provide Auth information"},"status":"failure"}"#,
            str::to_string
        ),
        "User is not authenticated: Required to provide Auth information"
    );
    assert_eq!(
        error_message(
            br#"{"error":{"message":"Invalid table foo","detail":null},"status":"failure"}"#,
            str::to_string
        ),
        "Invalid table foo"
    );
    assert_eq!(
        error_message(b"<html>bad gateway</html>", str::to_string),
        "<html>bad gateway</html>"
    );
    assert!(is_envelope(
        br#"{"error":{"message":"No Record found"},"status":"failure"}"#
    ));
    assert!(!is_envelope(b"<html>Not Found</html>"));
}

#[test]
fn leading_records_are_cut_from_the_bytes_or_from_a_rebuilt_body() {
    let body =
        br#"{ "result" : [ {"sys_id":"a","x":[1,{"y":"]"}]} , {"sys_id":"b"},{"sys_id":"c"} ] }"#;
    let ids = |b: &[u8]| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
        v["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["sys_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(&drop_leading_records(body, 0).unwrap()),
        ["a", "b", "c"]
    );
    assert_eq!(ids(&drop_leading_records(body, 2).unwrap()), ["c"]);
    assert!(ids(&drop_leading_records(body, 3).unwrap()).is_empty());
    assert!(leading_records_end(body, 1).is_some());
    // Another member first: rebuilt rather than cut.
    let other = br#"{"x":1,"result":[{"sys_id":"a"},{"sys_id":"b"}]}"#;
    assert!(leading_records_end(other, 1).is_none());
    assert_eq!(ids(&drop_leading_records(other, 1).unwrap()), ["b"]);
}

#[test]
fn page_bodies_give_count_and_cursor_without_trusting_the_server() {
    let ep = endpoint("incident", 2);
    let body = format!(
        r#"{{"result":[{{"sys_id":"{ID}","sys_updated_on":"2024-01-02 00:00:00","number":"INC1","opened_by":{{"value":"x"}}}},
        {{"sys_id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","sys_updated_on":"2024-01-03 04:05:06","short_description":"a \"quoted\" text"}}]}}"#
    );
    let keys = read_page(body.as_bytes(), &ep, &jan(), None).unwrap();
    assert_eq!((keys.count, keys.repeated), (2, 0));
    assert_eq!(
        keys.last.unwrap().to_string(),
        "2024-01-03 04:05:06|aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    );
    // The cursor's own record leads the page: it was read already.
    let c = Cursor::parse(&format!("2024-01-02 00:00:00|{ID}"), &jan()).unwrap();
    let keys = read_page(body.as_bytes(), &ep, &jan(), Some(&c)).unwrap();
    assert_eq!((keys.count, keys.repeated), (2, 1));
    let kept = drop_leading_records(body.as_bytes(), 1).unwrap();
    let kept: serde_json::Value = serde_json::from_slice(&kept).unwrap();
    assert_eq!(kept["result"].as_array().unwrap().len(), 1);
    assert_eq!(kept["result"][0]["short_description"], "a \"quoted\" text");
    let keys = read_page(br#"{"result":[]}"#, &ep, &jan(), None).unwrap();
    assert_eq!((keys.count, keys.last), (0, None));
    let decode_err = |body: &str| match read_page(body.as_bytes(), &ep, &jan(), None) {
        Err(SourceError::Decode { message, truncated }) => (message, truncated),
        other => panic!("{body}: {other:?}"),
    };
    let (m, cut) = decode_err(r#"{"result":[{"sys_id":"#);
    assert!(cut, "{m}");
    let (m, cut) = decode_err(r#"{"records":[]}"#);
    assert!(!cut && m.contains("result"), "{m}");
    let (m, _) = decode_err(&format!(
        r#"{{"result":[{{"sys_id":"{ID}","sys_updated_on":"2025-01-01 00:00:00"}}]}}"#
    ));
    assert!(m.contains("outside the window"), "{m}");
    let (m, _) = decode_err(
        r#"{"result":[{"sys_id":"x^ORsys_id>0","sys_updated_on":"2024-01-02 00:00:00"}]}"#,
    );
    assert!(m.contains("sys_id"), "{m}");
}

#[test]
fn rate_limit_headers_become_usage() {
    let mut h = HeaderMap::new();
    assert_eq!(usage_from(&h), None);
    h.insert("x-ratelimit-limit", HeaderValue::from_static("6000"));
    h.insert("x-ratelimit-reset", HeaderValue::from_static("1704067200"));
    h.insert("x-ratelimit-rule", HeaderValue::from_static(ID));
    assert_eq!(
        usage_from(&h),
        Some(ApiUsage {
            used: None,
            limit: 6000,
            period: Duration::from_secs(3600),
            resets_at: Some(utc(2024, 1, 1, 0, 0, 0)),
        })
    );
    // What is left of the hour tells how much is used.
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("250"));
    assert_eq!(usage_from(&h).unwrap().used, Some(5750));
}

#[test]
fn credentials_choose_the_auth_and_never_print() {
    let basic = Credentials::from_pairs([
        ("username".to_string(), "globex.integration".to_string()),
        ("password".to_string(), "very-secret-pass".to_string()),
    ]);
    let sn = ServiceNow::new("http://127.0.0.1:1/", basic, reqwest::Client::new()).unwrap();
    assert!(matches!(sn.auth, Auth::Basic(_)));
    assert_eq!(sn.base_url, "http://127.0.0.1:1");
    assert_eq!(
        sn.scrub(
            "echo very-secret-pass and globex.integration:very-secret-pass",
            None
        ),
        "echo *** and ***"
    );
    let oauth = Credentials::from_pairs([
        ("username".to_string(), "u".to_string()),
        ("password".to_string(), "p4ssword".to_string()),
        ("client_id".to_string(), "cid".to_string()),
        (
            "client_secret".to_string(),
            "client-secret-value".to_string(),
        ),
    ]);
    let sn = ServiceNow::new("http://h", oauth, reqwest::Client::new()).unwrap();
    assert!(matches!(sn.auth, Auth::OAuth(_)));
    let missing = ServiceNow::new("http://h", Credentials::default(), reqwest::Client::new());
    assert!(matches!(missing, Err(SourceError::Config(m)) if m.contains("username")));
    let half = Credentials::from_pairs([
        ("username".to_string(), "u".to_string()),
        ("password".to_string(), "p".to_string()),
        ("client_id".to_string(), "cid".to_string()),
    ]);
    let half = ServiceNow::new("http://h", half, reqwest::Client::new());
    assert!(matches!(half, Err(SourceError::Config(m)) if m.contains("client_secret")));
}

// ---- against the sandbox ----

const ANCHOR: (i32, u32, u32) = (2025, 1, 1);

fn counts() -> SnCounts {
    SnCounts {
        incident: 3000,
        change_request: 500,
        problem: 60,
        sys_user: 200,
    }
}

fn basic_account() -> SnAccount {
    SnAccount::new("globex", "globex.integration", "globex-pass-1234", counts())
}

fn oauth_account() -> SnAccount {
    SnAccount::new("acme", "acme.integration", "acme-pass-1234", counts())
        .with_oauth("acme-client", "acme-client-secret")
}

fn config(faults: Vec<Fault>) -> SandboxConfig {
    let mut cfg = SandboxConfig::new(utc(ANCHOR.0, ANCHOR.1, ANCHOR.2, 0, 0, 0), Vec::new());
    cfg.servicenow = vec![basic_account(), oauth_account()];
    cfg.faults = faults;
    cfg
}

fn sn_fault(kind: FaultKind, status: Option<u16>, times: Option<u32>) -> Fault {
    Fault {
        service: Service::Servicenow,
        kind,
        status,
        times,
        ..Fault::status("incident", 500)
    }
}

fn creds(a: &SnAccount) -> Credentials {
    let mut pairs = vec![
        ("username".to_string(), a.username.clone()),
        ("password".to_string(), a.password.expose().to_string()),
    ];
    if let (Some(id), Some(secret)) = (&a.client_id, &a.client_secret) {
        pairs.push(("client_id".to_string(), id.clone()));
        pairs.push(("client_secret".to_string(), secret.expose().to_string()));
    }
    Credentials::from_pairs(pairs)
}

async fn start(cfg: SandboxConfig) -> Sandbox {
    Sandbox::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn client(sb: &Sandbox, a: &SnAccount) -> ServiceNow {
    ServiceNow::new(&sb.url(), creds(a), reqwest::Client::new()).unwrap()
}

async fn sn_stats(sb: &Sandbox) -> serde_json::Value {
    let url = format!("{}/_sandbox/servicenow/stats", sb.url());
    serde_json::from_slice(&reqwest::get(url).await.unwrap().bytes().await.unwrap()).unwrap()
}

/// Every page of `window`, following the client's own cursors.
async fn walk(
    sn: &ServiceNow,
    ep: &EndpointDef,
    w: &Window,
) -> (Vec<(String, DateTime<Utc>)>, usize) {
    #[derive(Deserialize)]
    struct Body {
        result: Vec<serde_json::Map<String, serde_json::Value>>,
    }
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = sn.fetch_page(ep, w, cursor.as_deref()).await.unwrap();
        assert_eq!(page.records_at, RecordsAt::Member("result"));
        pages += 1;
        let body: Body = serde_json::from_slice(&page.body).unwrap();
        for r in body.result {
            let t = parse_time(r["sys_updated_on"].as_str().unwrap())
                .unwrap()
                .and_utc();
            rows.push((r["sys_id"].as_str().unwrap().to_string(), t));
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
        assert!(pages < 10_000);
    }
    (rows, pages)
}

#[tokio::test]
async fn keyset_paging_reads_every_record_once_across_ties_for_both_auths() {
    let cfg = config(Vec::new());
    let sb = start(cfg.clone()).await;
    let w = Window::new(utc(2024, 3, 1, 0, 0, 0), utc(2024, 6, 1, 0, 0, 0));
    let ep = endpoint("incident", 7);
    for account in [basic_account(), oauth_account()] {
        let expected = expected_servicenow(&cfg, &account.username, "incident", &w);
        assert!(expected.len() > 300, "{}", expected.len());
        let (mut got, pages) = walk(&client(&sb, &account), &ep, &w).await;
        // Ties of the same second must straddle page boundaries somewhere, or this proves little.
        let mut in_order = got.clone();
        in_order.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        assert_eq!(
            got, in_order,
            "pages are ordered by (sys_updated_on, sys_id)"
        );
        // Pages after the first repeat the records of the cursor's second up to it (cut from
        // the body): at most 6 new records each, fewer when a tie straddles the boundary.
        let ties = (1..got.len()).filter(|&i| got[i - 1].1 == got[i].1).count();
        assert!(ties > 10, "too few ties to prove anything: {ties}");
        assert!(
            pages > (expected.len() - 7) / 6 + 1,
            "no tie straddled a page boundary"
        );
        assert!(pages < expected.len() / 4, "{pages} pages");
        got.sort();
        assert_eq!(got, expected, "{}", account.username);
    }
    // The two accounts see different data.
    let a = expected_servicenow(&cfg, "acme.integration", "incident", &w);
    let b = expected_servicenow(&cfg, "globex.integration", "incident", &w);
    assert!(a.iter().all(|r| b.binary_search(r).is_err()));
    assert_eq!(sb.stats().repeated_pages, 0);
    assert_eq!(
        sn_stats(&sb).await["tokens_issued"],
        1,
        "one token for all pages"
    );

    let count = client(&sb, &oauth_account()).count(&ep, &w).await.unwrap();
    assert_eq!(
        count as usize,
        expected_servicenow(&cfg, "acme.integration", "incident", &w).len()
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn pages_smaller_than_a_tie_and_nq_answered_block_by_block_still_read_every_record_once() {
    // The sandbox answers `^NQ` blocks block by block; the client sends one block. With two
    // records a page, a second holding three or more records fills whole pages with records
    // already read, and the ties are read by their own query.
    let cfg = config(Vec::new());
    let sb = start(cfg.clone()).await;
    let w = Window::new(utc(2024, 3, 1, 0, 0, 0), utc(2024, 4, 1, 0, 0, 0));
    let account = basic_account();
    let expected = expected_servicenow(&cfg, &account.username, "incident", &w);
    let mut by_time = expected.clone();
    by_time.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    assert!(
        (2..by_time.len()).any(|i| by_time[i - 2].1 == by_time[i].1),
        "no second holds three records: the test proves little"
    );
    let (got, _) = walk(&client(&sb, &account), &endpoint("incident", 2), &w).await;
    let ids: std::collections::BTreeSet<&String> = got.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), got.len(), "a record came twice");
    assert_eq!(got, by_time, "every record once, in order");
    sb.shutdown().await;
}

#[tokio::test]
async fn a_404_list_is_an_empty_last_page() {
    let mut fault = sn_fault(FaultKind::Status, Some(404), None);
    fault.message = "No Record found".into();
    let sb = start(config(vec![fault])).await;
    let sn = client(&sb, &basic_account());
    let page = sn
        .fetch_page(&endpoint("incident", 50), &jan(), None)
        .await
        .unwrap();
    assert_eq!(&page.body[..], EMPTY_PAGE);
    assert_eq!(page.next, None);
    // A table without records in the window answers 200 with an empty result.
    let empty = Window::new(utc(2030, 1, 1, 0, 0, 0), utc(2030, 2, 1, 0, 0, 0));
    let page = sn
        .fetch_page(&endpoint("problem", 50), &empty, None)
        .await
        .unwrap();
    assert_eq!(&page.body[..], EMPTY_PAGE);
    assert_eq!(page.next, None);
    sb.shutdown().await;
}

#[tokio::test]
async fn an_expired_token_is_replaced_once_and_a_refused_one_fails_with_401() {
    let w = Window::new(utc(2024, 6, 1, 0, 0, 0), utc(2024, 6, 3, 0, 0, 0));
    let ep = endpoint("incident", 1000);
    // The token is revoked by the first list request: one new token, same answer.
    let cfg = config(vec![sn_fault(FaultKind::ExpireToken, None, Some(1))]);
    let sb = start(cfg.clone()).await;
    let sn = client(&sb, &oauth_account());
    // The source does not repeat the request behind the caller's back: it says so.
    match sn.fetch_page(&ep, &w, None).await {
        Err(SourceError::SessionRenewed { status: 401, .. }) => {}
        other => panic!("{other:?}"),
    }
    let page = sn.fetch_page(&ep, &w, None).await.unwrap();
    let expected = expected_servicenow(&cfg, "acme.integration", "incident", &w);
    assert!(!expected.is_empty());
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&page.body).unwrap()["result"]
            .as_array()
            .unwrap()
            .len(),
        expected.len()
    );
    assert_eq!(sn_stats(&sb).await["tokens_issued"], 2);
    // Later pages keep using the new token.
    sn.fetch_page(&ep, &w, None).await.unwrap();
    assert_eq!(sn_stats(&sb).await["tokens_issued"], 2);
    sb.shutdown().await;

    // A permanent 401: one new token, and the caller's repeat is refused again (the request
    // policy lets that one stand as the 401 it is).
    let sb = start(config(vec![sn_fault(FaultKind::Status, Some(401), None)])).await;
    let sn = client(&sb, &oauth_account());
    match sn.fetch_page(&ep, &w, None).await {
        Err(SourceError::SessionRenewed { status: 401, .. }) => {}
        other => panic!("{other:?}"),
    }
    match sn.fetch_page(&ep, &w, None).await {
        Err(SourceError::SessionRenewed {
            status: 401,
            message,
            ..
        }) => {
            assert!(message.contains("Injected fault"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sn_stats(&sb).await["tokens_issued"], 3);
    assert_eq!(sb.stats().faults_injected, 2);
    sb.shutdown().await;
}

#[tokio::test]
async fn tokens_are_reused_and_replaced_shortly_before_they_expire() {
    let mut cfg = config(Vec::new());
    cfg.servicenow[1].token_ttl_secs = 2; // renewed half a second before it expires
    let sb = start(cfg).await;
    let sn = client(&sb, &oauth_account());
    let ep = endpoint("problem", 100);
    for _ in 0..3 {
        sn.fetch_page(&ep, &jan(), None).await.unwrap();
    }
    assert_eq!(sn_stats(&sb).await["tokens_issued"], 1);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    sn.fetch_page(&ep, &jan(), None).await.unwrap();
    assert_eq!(sn_stats(&sb).await["tokens_issued"], 2);
    assert_eq!(
        sb.stats().unauthorized,
        0,
        "replaced before the server refused it"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn wrong_credentials_fail_with_401_and_no_secret_in_the_message() {
    let sb = start(config(Vec::new())).await;
    let ep = endpoint("incident", 10);
    let mut wrong = basic_account();
    wrong.password = "not-the-password".into();
    match client(&sb, &wrong).fetch_page(&ep, &jan(), None).await {
        Err(SourceError::Http {
            status: 401,
            message,
            ..
        }) => {
            // The API's words, then the request they answered and its id.
            assert!(
                message.starts_with(
                    "User is not authenticated: Required to provide Auth information (GET /api/now/"
                ) && message.ends_with(')')
                    && message.contains("; request id sbx-"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let mut wrong = oauth_account();
    wrong.client_secret = Some("wrong-client-secret".into());
    match client(&sb, &wrong).fetch_page(&ep, &jan(), None).await {
        Err(SourceError::Http {
            status: 401,
            message,
            ..
        }) => {
            assert!(
                message.contains("oauth_token.do") && message.contains("access_denied"),
                "{message}"
            );
            assert!(!message.contains("wrong-client-secret"));
        }
        other => panic!("{other:?}"),
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn rate_limits_are_rate_limited_errors_and_usage_is_reported() {
    let mut cfg = config(Vec::new());
    cfg.rate_limit_per_minute = Some(2);
    let sb = start(cfg).await;
    let sn = client(&sb, &basic_account());
    let ep = endpoint("problem", 100);
    let page = sn.fetch_page(&ep, &jan(), None).await.unwrap();
    let usage = page.usage.expect("X-RateLimit-* headers");
    assert_eq!(usage.limit, 120);
    assert_eq!(usage.period, Duration::from_secs(3600));
    assert!(usage.resets_at.unwrap() > Utc::now());
    sn.fetch_page(&ep, &jan(), None).await.unwrap();
    match sn.fetch_page(&ep, &jan(), None).await {
        Err(e @ SourceError::RateLimited { status: 429, .. }) => {
            assert!(e.to_string().contains("Rate limit exceeded"), "{e}");
            let wait = e.retry_after().unwrap();
            assert!(
                wait >= Duration::from_secs(1) && wait <= Duration::from_secs(30),
                "{wait:?}"
            );
            assert!(e.is_retryable());
        }
        other => panic!("{other:?}"),
    }
    // Another account has its own budget.
    client(&sb, &oauth_account())
        .fetch_page(&ep, &jan(), None)
        .await
        .unwrap();
    sb.shutdown().await;
}

#[tokio::test]
async fn broken_bodies_are_decode_errors_and_only_cut_ones_retryable() {
    let sb = start(config(vec![
        sn_fault(FaultKind::Truncate, None, Some(1)),
        sn_fault(FaultKind::Malformed, None, Some(1)),
        sn_fault(FaultKind::Status, Some(503), Some(1)),
    ]))
    .await;
    // A fresh client each time: a connection broken mid-body may linger in a pool.
    let sn = || client(&sb, &basic_account());
    let ep = endpoint("incident", 1000);
    let w = Window::new(utc(2024, 6, 1, 0, 0, 0), utc(2024, 6, 20, 0, 0, 0));
    // Cut mid-body: a cut body, or a broken exchange when hyper had not flushed the headers.
    match sn().fetch_page(&ep, &w, None).await {
        Err(
            e @ (SourceError::Decode {
                truncated: true, ..
            }
            | SourceError::Transport(_)),
        ) => {
            assert!(e.is_retryable())
        }
        other => panic!("{other:?}"),
    }
    match sn().fetch_page(&ep, &w, None).await {
        Err(
            e @ SourceError::Decode {
                truncated: false, ..
            },
        ) => assert!(!e.is_retryable()),
        other => panic!("{other:?}"),
    }
    match sn().fetch_page(&ep, &w, None).await {
        Err(e @ SourceError::Http { status: 503, .. }) => assert!(e.is_retryable()),
        other => panic!("{other:?}"),
    }
    assert!(sn().fetch_page(&ep, &w, None).await.is_ok());
    sb.shutdown().await;
}

#[tokio::test]
async fn endpoints_that_cannot_be_keyset_paged_are_refused() {
    let sn = ServiceNow::new(
        "http://127.0.0.1:1",
        creds(&basic_account()),
        reqwest::Client::new(),
    )
    .unwrap();
    let mut ep = endpoint("incident", 10);
    ep.id_field = "number".into();
    assert!(matches!(
        sn.fetch_page(&ep, &jan(), None).await,
        Err(SourceError::Config(m)) if m.contains("sys_id")
    ));
}

/// An instance user reached only through an OAuth client (client credentials): the
/// sandbox names it by its client id.
fn client_account() -> SnAccount {
    SnAccount::new("initech", "initech-client", "", counts())
        .with_oauth("initech-client", "initech-client-secret")
}

#[tokio::test]
async fn client_credentials_sign_in_without_a_user_and_ask_again_only_when_a_token_expires() {
    let mut cfg = config(vec![sn_fault(FaultKind::ExpireToken, None, Some(2))]);
    cfg.servicenow.push(client_account());
    let sb = start(cfg.clone()).await;
    let creds = Credentials::from_pairs(
        [
            ("client_id", "initech-client"),
            ("client_secret", "initech-client-secret"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let sn = ServiceNow::new(&sb.url(), creds, reqwest::Client::new()).unwrap();
    let form = match &sn.auth {
        Auth::OAuth(o) => o.form.expose().to_string(),
        Auth::Basic(_) => panic!("client credentials made Basic auth"),
    };
    assert_eq!(
        form,
        "grant_type=client_credentials&client_id=initech-client&client_secret=initech-client-secret"
    );
    // A table read first, then one whose first two requests meet expired tokens.
    let w = Window::new(utc(2024, 3, 1, 0, 0, 0), utc(2024, 6, 1, 0, 0, 0));
    let (mut problems, _) = walk(&sn, &endpoint("problem", 10), &w).await;
    problems.sort();
    assert_eq!(
        problems,
        expected_servicenow(&cfg, "initech-client", "problem", &w)
    );
    let ep = endpoint("incident", 20);
    let mut renewed = 0;
    loop {
        match sn.fetch_page(&ep, &w, None).await {
            Err(SourceError::SessionRenewed { status: 401, .. }) => renewed += 1,
            Err(e) => panic!("{e:?}"),
            Ok(_) => break,
        }
    }
    assert_eq!(renewed, 2);
    let (mut incidents, pages) = walk(&sn, &ep, &w).await;
    incidents.sort();
    assert_eq!(
        incidents,
        expected_servicenow(&cfg, "initech-client", "incident", &w)
    );
    assert!(pages > 10, "{pages} pages");
    // One token, then one per expired token: not one per page.
    assert_eq!(sn_stats(&sb).await["tokens_issued"], 3);
    sb.shutdown().await;
}
