//! Tests of the ServiceNow surface: the dataset, and the API over real HTTP (reqwest against
//! `Sandbox::start` on 127.0.0.1:0).

use std::collections::BTreeSet;

use base64::Engine as _;
use chrono::{DateTime, Timelike, Utc};

use super::data::{DAY, Gen, SnTable, hex32, parse_sn_time, sn_time};
use super::query::EncodedQuery;
use super::*;
use crate::sandbox::{Fault, FaultKind, Sandbox, SandboxConfig};

fn ts(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn counts() -> SnCounts {
    SnCounts {
        incident: 3000,
        change_request: 600,
        problem: 80,
        sys_user: 150,
    }
}

fn config() -> SandboxConfig {
    let mut cfg = SandboxConfig::new(ts("2025-01-01T00:00:00Z"), Vec::new());
    cfg.servicenow = vec![
        SnAccount::new("globex", "globex.integration", "globex-pass", counts()),
        SnAccount::new("acme", "acme.integration", "acme-pass", counts())
            .with_oauth("acme-client", "acme-client-secret"),
    ];
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

async fn start(cfg: SandboxConfig) -> Sandbox {
    Sandbox::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn basic(user: &str, pass: &str) -> String {
    let raw = format!("{user}:{pass}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn globex() -> String {
    basic("globex.integration", "globex-pass")
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    fn result(&self) -> Vec<serde_json::Value> {
        self.json()["result"].as_array().unwrap().clone()
    }

    /// `(sys_id, sys_updated_on)` of every record, in answer order.
    fn keys(&self) -> Vec<(String, DateTime<Utc>)> {
        self.result()
            .iter()
            .map(|r| {
                let t = parse_sn_time(r["sys_updated_on"].as_str().unwrap()).unwrap();
                (
                    r["sys_id"].as_str().unwrap().to_string(),
                    DateTime::from_timestamp(t, 0).unwrap(),
                )
            })
            .collect()
    }
}

async fn get(sb: &Sandbox, path: &str, params: &[(&str, &str)], auth: Option<&str>) -> Resp {
    let mut url = url::Url::parse(&format!("{}{path}", sb.url())).unwrap();
    if !params.is_empty() {
        url.query_pairs_mut().extend_pairs(params);
    }
    let mut req = reqwest::Client::new().get(url);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let r = req.send().await.unwrap();
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

async fn token_request(sb: &Sandbox, form: &[(&str, &str)]) -> Resp {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let r = reqwest::Client::new()
        .post(format!("{}/oauth_token.do", sb.url()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

async fn acme_token(sb: &Sandbox) -> String {
    let r = token_request(
        sb,
        &[
            ("grant_type", "password"),
            ("client_id", "acme-client"),
            ("client_secret", "acme-client-secret"),
            ("username", "acme.integration"),
            ("password", "acme-pass"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    format!("Bearer {}", r.json()["access_token"].as_str().unwrap())
}

fn window_query(w: &Window) -> String {
    format!(
        "sys_updated_on>={}^sys_updated_on<{}",
        sn_time(w.start.timestamp()),
        sn_time(w.end.timestamp())
    )
}

fn keyset_query(w: &Window, last: Option<&(String, DateTime<Utc>)>) -> String {
    let win = window_query(w);
    let order = "^ORDERBYsys_updated_on^ORDERBYsys_id";
    match last {
        None => format!("{win}{order}"),
        Some((id, t)) => {
            let t = sn_time(t.timestamp());
            format!("{win}^sys_updated_on>{t}^NQ{win}^sys_updated_on={t}^sys_id>{id}{order}")
        }
    }
}

fn by_time(rows: &mut [(String, DateTime<Utc>)]) {
    rows.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
}

const TABLE: &str = "/api/now/table/incident";

#[test]
fn the_dataset_has_midnights_ties_and_sane_times() {
    let cfg = config();
    let anchor = cfg.anchor.timestamp();
    for table in SnTable::ALL {
        let g = Gen::new(cfg.anchor, 730, "acme.integration", counts(), table);
        let recs = g.build();
        assert_eq!(recs.len() as u64, counts().get(table));
        let ids: BTreeSet<u128> = recs.iter().map(|r| r.sys_id).collect();
        assert_eq!(ids.len(), recs.len(), "{table:?}: sys_ids are unique");
        for r in &recs {
            let created = g.created(u64::from(r.i));
            assert!(created <= r.updated, "{table:?}: updated before created");
            assert!(anchor - 730 * DAY <= created && r.updated < anchor);
        }
        assert!(recs.windows(2).all(|p| p[0].key() < p[1].key()), "sorted");
        let midnights = recs.iter().filter(|r| r.updated % DAY == 0).count();
        assert!(
            midnights as u64 >= counts().get(table) / 60,
            "{table:?}: {midnights} at midnight"
        );
        let tied = recs
            .windows(2)
            .filter(|p| p[0].updated == p[1].updated)
            .count();
        assert!(
            tied as u64 >= counts().get(table) / 10,
            "{table:?}: {tied} ties"
        );
    }
    // Some tie groups sit exactly on a midnight, i.e. on chunk boundaries.
    let g = Gen::new(
        cfg.anchor,
        730,
        "acme.integration",
        counts(),
        SnTable::Incident,
    );
    let recs = g.build();
    assert!(
        recs.windows(2)
            .any(|p| p[0].updated == p[1].updated && p[0].updated % DAY == 0),
        "no tie on a midnight"
    );

    // expected_servicenow is the initial dataset, by sys_id.
    let w = Window::new(ts("2024-02-01T00:00:00Z"), ts("2024-03-01T00:00:00Z"));
    let mut expected: Vec<(String, DateTime<Utc>)> = recs
        .iter()
        .filter(|r| w.contains(DateTime::from_timestamp(r.updated, 0).unwrap()))
        .map(|r| {
            (
                hex32(r.sys_id),
                DateTime::from_timestamp(r.updated, 0).unwrap(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(
        expected_servicenow(&cfg, "acme.integration", "incident", &w),
        expected
    );
    assert_eq!(
        expected_servicenow(&cfg, "acme.integration", "incidents", &w),
        expected
    );
    assert!(expected_servicenow(&cfg, "nobody", "incident", &w).is_empty());
    assert!(expected_servicenow(&cfg, "acme.integration", "cmdb_ci", &w).is_empty());
}

#[tokio::test]
async fn records_are_all_strings_with_realistic_fields() {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let w = Window::new(ts("2024-06-01T00:00:00Z"), ts("2024-07-01T00:00:00Z"));
    let q = keyset_query(&w, None);
    for (table, number) in [
        ("incident", Some("INC")),
        ("change_request", Some("CHG")),
        ("problem", Some("PRB")),
        ("sys_user", None),
    ] {
        let params = [
            ("sysparm_query", q.as_str()),
            ("sysparm_exclude_reference_link", "true"),
        ];
        let r = get(
            &sb,
            &format!("/api/now/table/{table}"),
            &params,
            Some(&globex()),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json;charset=UTF-8")
        );
        let recs = r.result();
        assert!(!recs.is_empty() || table == "problem", "{table}");
        for rec in &recs {
            let obj = rec.as_object().unwrap();
            assert!(obj.values().all(|v| v.is_string()), "{table}: {rec}");
            let sys_id = obj["sys_id"].as_str().unwrap();
            assert!(sys_id.len() == 32 && sys_id.bytes().all(|b| b.is_ascii_hexdigit()));
            for f in ["sys_created_on", "sys_updated_on"] {
                assert!(parse_sn_time(obj[f].as_str().unwrap()).is_some(), "{f}");
            }
            assert!(
                obj["sys_mod_count"]
                    .as_str()
                    .unwrap()
                    .parse::<u32>()
                    .is_ok()
            );
            if let Some(prefix) = number {
                let n = obj["number"].as_str().unwrap();
                assert!(n.starts_with(prefix) && n.len() == 10, "{n}");
            }
        }
        let expected = expected_servicenow(&cfg, "globex.integration", table, &w);
        let mut got = r.keys();
        got.sort();
        assert_eq!(got, expected, "{table}");
    }
    // Incidents reference real users of the same instance.
    let users: BTreeSet<String> = get(&sb, "/api/now/table/sys_user", &[], Some(&globex()))
        .await
        .result()
        .iter()
        .map(|u| u["sys_id"].as_str().unwrap().to_string())
        .collect();
    let incidents = get(&sb, TABLE, &[("sysparm_limit", "50")], Some(&globex())).await;
    let callers: Vec<String> = incidents
        .result()
        .iter()
        .filter_map(|r| r["caller_id"]["value"].as_str().map(str::to_string))
        .collect();
    assert_eq!(callers.len(), 50, "references carry links by default");
    assert!(callers.iter().all(|c| users.contains(c)));
    sb.shutdown().await;
}

#[tokio::test]
async fn keyset_queries_resume_inside_a_tie_and_windows_are_half_open() {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let w = Window::new(ts("2024-03-01T00:00:00Z"), ts("2024-06-01T00:00:00Z"));
    let mut expected = expected_servicenow(&cfg, "globex.integration", "incident", &w);
    by_time(&mut expected);
    // The first tie of at least three records.
    let at = (0..expected.len() - 2)
        .find(|&i| expected[i].1 == expected[i + 2].1)
        .expect("a tie of three");
    let q = keyset_query(&w, Some(&expected[at]));
    let r = get(
        &sb,
        TABLE,
        &[("sysparm_query", &q), ("sysparm_limit", "5")],
        Some(&globex()),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.keys(), expected[at + 1..at + 6].to_vec());
    assert_eq!(
        r.header("x-total-count").unwrap(),
        (expected.len() - at - 1).to_string()
    );

    // A window from a midnight holds the records of that exact second; the previous one
    // (ending there) does not.
    let mut all = expected_servicenow(
        &cfg,
        "globex.integration",
        "incident",
        &Window::new(ts("2023-01-01T00:00:00Z"), cfg.anchor),
    );
    by_time(&mut all);
    let midnight = all
        .iter()
        .find(|(_, t)| t.num_seconds_from_midnight() == 0 && *t > ts("2024-01-01T00:00:00Z"))
        .unwrap()
        .1;
    let after = Window::new(midnight, midnight + chrono::Duration::days(1));
    let before = Window::new(midnight - chrono::Duration::days(1), midnight);
    for (win, has) in [(after, true), (before, false)] {
        let q = keyset_query(&win, None);
        let r = get(&sb, TABLE, &[("sysparm_query", &q)], Some(&globex())).await;
        assert_eq!(r.keys().iter().any(|(_, t)| *t == midnight), has, "{win}");
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn offset_pages_carry_link_and_total_count_headers() {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let w = Window::new(ts("2024-03-01T00:00:00Z"), ts("2024-03-15T00:00:00Z"));
    let mut expected = expected_servicenow(&cfg, "globex.integration", "incident", &w);
    by_time(&mut expected);
    let total = expected.len();
    assert!(total > 25, "{total}");
    let q = keyset_query(&w, None);
    let base = format!("{}{TABLE}", sb.url());
    let sbr = &sb;
    let page = |offset: usize| {
        let q = q.clone();
        let offset = offset.to_string();
        async move {
            get(
                sbr,
                TABLE,
                &[
                    ("sysparm_query", &q),
                    ("sysparm_limit", "10"),
                    ("sysparm_offset", &offset),
                ],
                Some(&globex()),
            )
            .await
        }
    };
    let first = page(0).await;
    assert_eq!(first.header("x-total-count").unwrap(), total.to_string());
    let link = first.header("link").unwrap();
    let encoded_q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sysparm_query", &q)
        .finish();
    let last = (total - 1) / 10 * 10;
    assert_eq!(
        link,
        format!(
            "<{base}?{encoded_q}&sysparm_limit=10&sysparm_offset=0>;rel=\"first\",\
             <{base}?{encoded_q}&sysparm_limit=10&sysparm_offset=10>;rel=\"next\",\
             <{base}?{encoded_q}&sysparm_limit=10&sysparm_offset={last}>;rel=\"last\""
        )
    );
    let mut walked = first.keys();
    let mut offset = 10;
    loop {
        let r = page(offset).await;
        let link = r.header("link").unwrap();
        assert!(
            link.contains(&format!("sysparm_offset={}>;rel=\"prev\"", offset - 10)),
            "{link}"
        );
        walked.extend(r.keys());
        if offset + 10 >= total {
            assert!(!link.contains("rel=\"next\""), "{link}");
            break;
        }
        assert!(
            link.contains(&format!("sysparm_offset={}>;rel=\"next\"", offset + 10)),
            "{link}"
        );
        offset += 10;
    }
    assert_eq!(walked, expected);

    // Headers can be turned off; the v2 path answers the same.
    let r = get(
        &sb,
        "/api/now/v2/table/incident",
        &[
            ("sysparm_query", &q),
            ("sysparm_suppress_pagination_header", "true"),
            ("sysparm_no_count", "true"),
        ],
        Some(&globex()),
    )
    .await;
    assert_eq!(r.header("link"), None);
    assert_eq!(r.header("x-total-count"), None);
    assert_eq!(r.keys(), expected);
    sb.shutdown().await;
}

#[tokio::test]
async fn fields_display_values_order_and_reference_links() {
    let sb = start(config()).await;
    let w = Window::new(ts("2024-03-01T00:00:00Z"), ts("2024-04-01T00:00:00Z"));
    let q = format!("{}^ORDERBYDESCsys_updated_on", window_query(&w));
    let r = get(
        &sb,
        TABLE,
        &[
            ("sysparm_query", q.as_str()),
            ("sysparm_fields", "sys_id,number,caller_id,sys_updated_on"),
            ("sysparm_exclude_reference_link", "false"),
        ],
        Some(&globex()),
    )
    .await;
    let recs = r.result();
    assert!(recs.len() > 20);
    let times: Vec<DateTime<Utc>> = r.keys().into_iter().map(|k| k.1).collect();
    assert!(times.windows(2).all(|p| p[0] >= p[1]), "ORDERBYDESC");
    for rec in &recs {
        let keys: BTreeSet<&str> = rec
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["sys_id", "number", "caller_id", "sys_updated_on"])
        );
        let caller = &rec["caller_id"];
        let value = caller["value"].as_str().unwrap();
        assert_eq!(
            caller["link"].as_str().unwrap(),
            format!("{}/api/now/table/sys_user/{value}", sb.url())
        );
    }
    let all = get(
        &sb,
        TABLE,
        &[
            ("sysparm_query", q.as_str()),
            ("sysparm_fields", "number,caller_id"),
            ("sysparm_display_value", "all"),
            ("sysparm_exclude_reference_link", "true"),
            ("sysparm_limit", "3"),
        ],
        Some(&globex()),
    )
    .await;
    for rec in all.result() {
        let n = &rec["number"];
        assert_eq!(n["display_value"], n["value"]);
        assert!(
            rec["caller_id"]["display_value"]
                .as_str()
                .unwrap()
                .contains(' ')
        );
        assert_eq!(rec["caller_id"]["value"].as_str().unwrap().len(), 32);
        assert!(rec["caller_id"].get("link").is_none());
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn basic_and_bearer_auth_and_error_envelopes() {
    let sb = start(config()).await;
    let failure = |r: &Resp, status: u16, message: &str| {
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(v["status"], "failure");
        assert_eq!(v["error"]["message"], message);
    };
    let no_auth = get(&sb, TABLE, &[], None).await;
    failure(&no_auth, 401, "User is not authenticated");
    assert_eq!(
        no_auth.json()["error"]["detail"],
        "Required to provide Auth information"
    );
    failure(
        &get(&sb, TABLE, &[], Some(&basic("globex.integration", "nope"))).await,
        401,
        "User is not authenticated",
    );
    failure(
        &get(&sb, TABLE, &[], Some("Bearer not-a-token")).await,
        401,
        "User is not authenticated",
    );
    failure(
        &get(&sb, "/api/now/table/nope", &[], Some(&globex())).await,
        400,
        "Invalid table nope",
    );
    assert_eq!(sb.stats().unauthorized, 3);

    // OAuth: wrong client secret, then the password grant and the refresh grant.
    let denied = token_request(
        &sb,
        &[
            ("grant_type", "password"),
            ("client_id", "acme-client"),
            ("client_secret", "wrong"),
            ("username", "acme.integration"),
            ("password", "acme-pass"),
        ],
    )
    .await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.json()["error_description"], "access_denied");
    // Globex has no OAuth client.
    let r = token_request(
        &sb,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", ""),
            ("client_secret", ""),
        ],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        token_request(&sb, &[("grant_type", "saml")]).await.status,
        400
    );
    let granted = token_request(
        &sb,
        &[
            ("grant_type", "password"),
            ("client_id", "acme-client"),
            ("client_secret", "acme-client-secret"),
            ("username", "acme.integration"),
            ("password", "acme-pass"),
        ],
    )
    .await
    .json();
    assert_eq!(granted["token_type"], "Bearer");
    assert_eq!(granted["expires_in"], 1800);
    let bearer = format!("Bearer {}", granted["access_token"].as_str().unwrap());
    let acme = get(&sb, TABLE, &[("sysparm_limit", "3")], Some(&bearer)).await;
    assert_eq!(acme.status, 200);
    // Acme's own data, not globex's.
    let basic_acme = get(
        &sb,
        TABLE,
        &[("sysparm_limit", "3")],
        Some(&basic("acme.integration", "acme-pass")),
    )
    .await;
    let basic_globex = get(&sb, TABLE, &[("sysparm_limit", "3")], Some(&globex())).await;
    assert_eq!(acme.keys(), basic_acme.keys());
    assert_ne!(acme.keys(), basic_globex.keys());
    let refreshed = token_request(
        &sb,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "acme-client"),
            ("client_secret", "acme-client-secret"),
            ("refresh_token", granted["refresh_token"].as_str().unwrap()),
        ],
    )
    .await
    .json();
    let second = format!("Bearer {}", refreshed["access_token"].as_str().unwrap());
    assert_ne!(second, bearer, "tokens are random per issue");
    assert_eq!(
        get(&sb, TABLE, &[("sysparm_limit", "1")], Some(&second))
            .await
            .status,
        200
    );

    // One record by sys_id, and a missing one.
    let id = acme.keys()[0].0.clone();
    let one = get(&sb, &format!("{TABLE}/{id}"), &[], Some(&bearer)).await;
    assert_eq!(one.json()["result"]["sys_id"], id.as_str());
    failure(
        &get(&sb, &format!("{TABLE}/{id}"), &[], Some(&globex())).await,
        404,
        "No Record found",
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn tokens_expire_after_their_lifetime() {
    let mut cfg = config();
    cfg.servicenow[1].token_ttl_secs = 1;
    let sb = start(cfg).await;
    let bearer = acme_token(&sb).await;
    assert_eq!(
        get(&sb, TABLE, &[("sysparm_limit", "1")], Some(&bearer))
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get(&sb, TABLE, &[("sysparm_limit", "1")], Some(&bearer))
            .await
            .status,
        401
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn over_the_rate_limit_answers_429_with_rate_limit_headers() {
    let mut cfg = config();
    cfg.rate_limit_per_minute = Some(2);
    let sb = start(cfg).await;
    for _ in 0..2 {
        let ok = get(&sb, TABLE, &[("sysparm_limit", "1")], Some(&globex())).await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.header("x-ratelimit-limit").as_deref(), Some("120"));
    }
    let r = get(&sb, TABLE, &[("sysparm_limit", "1")], Some(&globex())).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["message"], "Rate limit exceeded");
    assert_eq!(r.json()["status"], "failure");
    let wait: i64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("120"));
    let reset: i64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
    let now = Utc::now().timestamp();
    assert!(reset > now && reset <= now + 31, "{reset} vs {now}");
    assert_eq!(r.header("x-ratelimit-rule").unwrap().len(), 32);
    assert_eq!(sb.stats().rate_limited, 1);
    // Per user: acme still has its budget.
    let acme = get(
        &sb,
        TABLE,
        &[("sysparm_limit", "1")],
        Some(&basic("acme.integration", "acme-pass")),
    )
    .await;
    assert_eq!(acme.status, 200);
    sb.shutdown().await;
}

#[tokio::test]
async fn faults_answer_in_the_servicenow_envelope_and_expire_tokens() {
    let mut cfg = config();
    let mut storm = sn_fault(FaultKind::Status, Some(429), Some(1));
    storm.retry_after_seconds = Some(7);
    let mut busy = sn_fault(FaultKind::Status, Some(503), Some(1));
    busy.message = "Service temporarily unavailable".into();
    cfg.faults = vec![storm, busy, sn_fault(FaultKind::ExpireToken, None, Some(1))];
    let sb = start(cfg).await;
    let r = get(&sb, TABLE, &[], Some(&globex())).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("7"));
    let r = get(&sb, TABLE, &[], Some(&globex())).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json()["error"]["message"],
        "Service temporarily unavailable"
    );
    let bearer = acme_token(&sb).await;
    assert_eq!(get(&sb, TABLE, &[], Some(&bearer)).await.status, 401);
    // The fault is spent, but that token stays dead until a new one is issued.
    assert_eq!(get(&sb, TABLE, &[], Some(&bearer)).await.status, 401);
    let fresh = acme_token(&sb).await;
    assert_eq!(
        get(&sb, TABLE, &[("sysparm_limit", "2")], Some(&fresh))
            .await
            .status,
        200
    );
    assert_eq!(sb.stats().faults_injected, 3);
    sb.shutdown().await;
}

#[tokio::test]
async fn touch_faults_move_records_out_of_the_window_being_read() {
    let mut cfg = config();
    let mut touch = sn_fault(FaultKind::TouchRecords, None, Some(1));
    touch.records = Some(4);
    cfg.faults = vec![touch];
    let sb = start(cfg.clone()).await;
    let w = Window::new(ts("2024-03-01T00:00:00Z"), ts("2024-03-15T00:00:00Z"));
    let expected = expected_servicenow(&cfg, "globex.integration", "incident", &w);
    let q = keyset_query(&w, None);
    let r = get(&sb, TABLE, &[("sysparm_query", &q)], Some(&globex())).await;
    let got: BTreeSet<(String, DateTime<Utc>)> = r.keys().into_iter().collect();
    let moved: Vec<Moved> = serde_json::from_slice(
        &reqwest::get(format!("{}/_sandbox/servicenow/moved", sb.url()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(moved.len(), 4);
    for m in &moved {
        assert_eq!(
            (m.username.as_str(), m.table.as_str()),
            ("globex.integration", "incident")
        );
        assert!(w.contains(m.from));
        assert!(m.to >= cfg.anchor);
        assert!(expected.contains(&(m.sys_id.clone(), m.from)));
    }
    let stayed: BTreeSet<(String, DateTime<Utc>)> = expected
        .iter()
        .filter(|e| moved.iter().all(|m| m.sys_id != e.0))
        .cloned()
        .collect();
    assert_eq!(got, stayed);
    // The moved records are now after the anchor, with one more modification.
    let later = Window::new(cfg.anchor, cfg.anchor + chrono::Duration::days(1));
    let r = get(
        &sb,
        TABLE,
        &[("sysparm_query", &keyset_query(&later, None))],
        Some(&globex()),
    )
    .await;
    assert_eq!(r.result().len(), 4);
    sb.shutdown().await;
}

/// Reads a window page by page, with a `touch` of 3 records after the first page.
async fn walk_with_a_touch(
    keyset: bool,
) -> (
    Vec<(String, DateTime<Utc>)>,
    Vec<Moved>,
    Vec<(String, DateTime<Utc>)>,
) {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let w = Window::new(ts("2024-03-01T00:00:00Z"), ts("2024-03-15T00:00:00Z"));
    let expected = expected_servicenow(&cfg, "globex.integration", "incident", &w);
    let mut got: Vec<(String, DateTime<Utc>)> = Vec::new();
    let mut moved = Vec::new();
    for page in 0.. {
        let offset = if keyset { 0 } else { page * 10 };
        let q = if keyset {
            keyset_query(&w, got.last())
        } else {
            keyset_query(&w, None)
        };
        if page == 1 {
            let parsed = EncodedQuery::parse(&q);
            moved = sb
                .shared
                .servicenow
                .touch(0, SnTable::Incident, &parsed, offset, 3);
        }
        let r = get(
            &sb,
            TABLE,
            &[
                ("sysparm_query", &q),
                ("sysparm_limit", "10"),
                ("sysparm_offset", &offset.to_string()),
            ],
            Some(&globex()),
        )
        .await;
        let keys = r.keys();
        got.extend(keys.iter().cloned());
        if keys.len() < 10 {
            break;
        }
    }
    sb.shutdown().await;
    (got, moved, expected)
}

#[tokio::test]
async fn an_edit_mid_read_makes_offset_paging_skip_a_row_but_not_keyset_paging() {
    for keyset in [true, false] {
        let (got, moved, expected) = walk_with_a_touch(keyset).await;
        assert_eq!(moved.len(), 3);
        let ids: BTreeSet<&str> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(ids.len(), got.len(), "duplicates");
        let missing: Vec<_> = expected
            .iter()
            .filter(|e| moved.iter().all(|m| m.sys_id != e.0) && !ids.contains(e.0.as_str()))
            .collect();
        if keyset {
            assert!(missing.is_empty(), "keyset skipped {missing:?}");
        } else {
            // One already-read record left the window: every later row shifted down by one.
            assert_eq!(
                missing.len(),
                1,
                "offset paging should skip exactly one: {missing:?}"
            );
        }
    }
}
