//! Tests of the Salesforce sandbox over real HTTP (reqwest against `Sandbox::start`).

use super::*;
use crate::sandbox::{Fault, FaultKind, Sandbox, SandboxConfig, TableCounts};

pub(crate) const USER: &str = "integration@acme.example";
pub(crate) const PASSWORD: &str = "sandbox-only-password";

fn anchor() -> DateTime<Utc> {
    "2025-01-01T00:00:00Z".parse().unwrap()
}

pub(crate) fn account(username: &str) -> SfAccount {
    SfAccount {
        tenant_id: "acme".into(),
        client_id: format!("3MVG9{username}"),
        client_secret: "consumer-secret".into(),
        username: username.into(),
        password: Some(PASSWORD.into()),
        refresh_token: Some("5Aep-refresh-token".into()),
        counts: SfCounts::from_table_counts(TableCounts::demo()),
        daily_api_limit: DEFAULT_DAILY_API_LIMIT,
    }
}

pub(crate) fn config(faults: Vec<Fault>) -> SandboxConfig {
    let mut cfg = SandboxConfig::new(anchor(), Vec::new());
    cfg.history_days = 365;
    cfg.salesforce = vec![account(USER), account("integration@initech.example")];
    cfg.faults = faults;
    cfg
}

pub(crate) fn sf_fault(
    path: &str,
    kind: FaultKind,
    status: Option<u16>,
    times: Option<u32>,
) -> Fault {
    Fault {
        service: Service::Salesforce,
        kind,
        status,
        times,
        ..Fault::status(path, status.unwrap_or(500))
    }
}

async fn start(cfg: SandboxConfig) -> Sandbox {
    Sandbox::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

struct Api {
    url: String,
    http: reqwest::Client,
    token: String,
}

impl Api {
    async fn login(sb: &Sandbox) -> Api {
        let http = reqwest::Client::new();
        let a = account(USER);
        let (status, body) = token_request(
            &http,
            &sb.url(),
            &[
                ("grant_type", "password"),
                ("client_id", &a.client_id),
                ("client_secret", &a.client_secret),
                ("username", USER),
                ("password", PASSWORD),
            ],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["instance_url"], sb.url());
        assert_eq!(body["token_type"], "Bearer");
        Api {
            url: sb.url(),
            http,
            token: body["access_token"].as_str().unwrap().to_string(),
        }
    }

    async fn get(&self, path: &str, batch: Option<u32>) -> (u16, HeaderMap, Vec<u8>) {
        let mut req = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(n) = batch {
            req = req.header("Sforce-Query-Options", format!("batchSize={n}"));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.bytes().await.unwrap().to_vec())
    }

    async fn query(&self, soql: &str, batch: Option<u32>) -> (u16, serde_json::Value) {
        let q: String = url::form_urlencoded::byte_serialize(soql.as_bytes()).collect();
        let (status, _, body) = self
            .get(&format!("/services/data/v60.0/query?q={q}"), batch)
            .await;
        (status, serde_json::from_slice(&body).unwrap())
    }

    async fn post_job(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(format!("{}/services/data/v60.0/jobs/query", self.url))
            .bearer_auth(&self.token)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (
            status,
            serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap(),
        )
    }
}

async fn token_request(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let resp = http
        .post(format!("{url}/services/oauth2/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap(),
    )
}

fn window(a: &str, b: &str) -> Window {
    Window::new(a.parse().unwrap(), b.parse().unwrap())
}

fn window_soql(select: &str, sobject: &str, w: &Window) -> String {
    format!(
        "SELECT {select} FROM {sobject} WHERE SystemModstamp >= {} AND SystemModstamp < {} ORDER BY SystemModstamp, Id",
        w.start.format("%Y-%m-%dT%H:%M:%SZ"),
        w.end.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

fn error_code(body: &serde_json::Value) -> &str {
    body[0]["errorCode"].as_str().unwrap_or("")
}

fn keys_of(records: &serde_json::Value) -> Vec<(String, DateTime<Utc>)> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let ts = r["SystemModstamp"].as_str().unwrap();
            let t = DateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%S%.3f%z")
                .unwrap_or_else(|_| DateTime::parse_from_rfc3339(ts).unwrap())
                .with_timezone(&Utc);
            (r["Id"].as_str().unwrap().to_string(), t)
        })
        .collect()
}

#[tokio::test]
async fn rest_query_pages_a_window_exactly_in_order_with_real_record_shapes() {
    let cfg = config(Vec::new());
    let sb = start(cfg.clone()).await;
    let api = Api::login(&sb).await;
    let w = window("2024-03-01T00:00:00Z", "2024-05-01T00:00:00Z");
    let expected = expected_salesforce(&cfg, USER, "Case", &w);
    assert!(
        expected.len() > 450,
        "{} cases: too few to page",
        expected.len()
    );
    let soql = window_soql(
        "Id, CaseNumber, Description, Owner.Name, Owner.Id, SystemModstamp",
        "Case",
        &w,
    );
    let (status, mut page) = api.query(&soql, Some(200)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["totalSize"], expected.len());
    let mut got = Vec::new();
    let mut pages = 1;
    loop {
        let records = &page["records"];
        assert!(records.as_array().unwrap().len() <= 200);
        let first = &records[0];
        assert_eq!(first["attributes"]["type"], "Case");
        assert_eq!(
            first["attributes"]["url"],
            format!(
                "/services/data/v60.0/sobjects/Case/{}",
                first["Id"].as_str().unwrap()
            )
        );
        assert_eq!(first["Owner"]["attributes"]["type"], "User");
        assert!(first["Owner"]["Name"].is_string() && first["Owner"]["Id"].is_string());
        let stamp = first["SystemModstamp"].as_str().unwrap();
        assert!(stamp.ends_with(".000+0000") && stamp.len() == 28, "{stamp}");
        got.extend(keys_of(records));
        if page["done"] == true {
            assert!(page.get("nextRecordsUrl").is_none());
            break;
        }
        let next = page["nextRecordsUrl"].as_str().unwrap().to_string();
        assert!(next.starts_with("/services/data/v60.0/query/01g"), "{next}");
        let (status, _, body) = api.get(&next, Some(200)).await;
        assert_eq!(status, 200);
        page = serde_json::from_slice(&body).unwrap();
        pages += 1;
    }
    assert_eq!(pages, expected.len().div_ceil(200));
    // Ordered by (SystemModstamp, Id), with ties and midnights inside.
    let mut sorted = got.clone();
    sorted.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    assert_eq!(got, sorted);
    assert!(
        got.windows(2).any(|p| p[0].1 == p[1].1),
        "no shared SystemModstamp"
    );
    assert!(
        got.iter().any(|(_, t)| t.timestamp() % 86_400 == 0),
        "no midnight"
    );
    got.sort();
    assert_eq!(got, expected);

    // COUNT() agrees, and the other org's data differs.
    let count = "SELECT COUNT() FROM Case WHERE SystemModstamp >= 2024-03-01T00:00:00Z AND SystemModstamp < 2024-05-01T00:00:00Z";
    let (status, body) = api.query(count, None).await;
    assert_eq!((status, &body["totalSize"]), (200, &expected.len().into()));
    assert_eq!(body["records"], serde_json::json!([]));
    assert_ne!(
        expected_salesforce(&cfg, "integration@initech.example", "Case", &w)[0],
        expected[0]
    );
    // Every answer carries the org's API usage.
    let (_, headers, _) = api
        .get(
            "/services/data/v60.0/query?q=SELECT+Id+FROM+Lead+LIMIT+1",
            None,
        )
        .await;
    let info = headers["Sforce-Limit-Info"].to_str().unwrap();
    assert_eq!(info, format!("api-usage={}/15000", pages + 2));
}

#[tokio::test]
async fn the_soql_subset_refuses_what_it_does_not_know_with_salesforce_errors() {
    let sb = start(config(Vec::new())).await;
    let api = Api::login(&sb).await;
    for (soql, code) in [
        ("SELECT * FROM Account", "MALFORMED_QUERY"),
        (
            "SELECT Id FROM Account WHERE Id > 'a' AND Id < 'b' OR Id = 'c'",
            "MALFORMED_QUERY",
        ),
        ("SELECT Id FROM Account GROUP BY Id", "MALFORMED_QUERY"),
        ("SELECT Id, Nonsense FROM Account", "INVALID_FIELD"),
        ("SELECT Id, Parent.Name FROM Account", "INVALID_FIELD"),
        ("SELECT Id FROM Widget__c", "INVALID_TYPE"),
        (
            "SELECT Id FROM Account WHERE SystemModstamp >= '2024-01-01T00:00:00Z'",
            "INVALID_QUERY_FILTER_OPERATOR",
        ),
        (
            "SELECT Id FROM Account WHERE Id > 5",
            "INVALID_QUERY_FILTER_OPERATOR",
        ),
        ("SELECT Id, Id FROM Account", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE Name = 'x'", "MALFORMED_QUERY"),
    ] {
        let (status, body) = api.query(soql, None).await;
        assert_eq!((status, error_code(&body)), (400, code), "{soql}: {body}");
        assert!(body[0]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Case-insensitive names, offsets and LIMIT are fine.
    let (status, body) = api
        .query(
            "select id, systemmodstamp from account where SystemModstamp >= 2024-01-01T01:00:00+01:00 order by SystemModstamp desc limit 3",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let keys = keys_of(&body["records"]);
    assert_eq!(keys.len(), 3);
    assert!(keys[0].1 >= keys[1].1 && keys[1].1 >= keys[2].1);
    assert!(
        body["records"][0].get("Id").is_some(),
        "canonical field names"
    );
    // Unknown paths and versions.
    let (status, _, body) = api.get("/services/data/v60.0/sobjects", None).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = api
        .get("/services/data/latest/query?q=SELECT+Id+FROM+Account", None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_query_locator_is_a_snapshot_showing_current_values() {
    let cfg = config(Vec::new());
    let sb = start(cfg.clone()).await;
    let api = Api::login(&sb).await;
    let w = window("2024-06-01T00:00:00Z", "2024-08-01T00:00:00Z");
    let expected = expected_salesforce(&cfg, USER, "Lead", &w);
    let soql = window_soql("Id, SystemModstamp, LastModifiedDate", "Lead", &w);
    let (_, first) = api.query(&soql, Some(200)).await;
    let total = first["totalSize"].as_u64().unwrap() as usize;
    assert_eq!(total, expected.len());
    // Edit 5 records of the window while it is being read.
    let plan = parse_plan(&soql).ok().unwrap();
    sb.shared.salesforce.touch(0, &plan, 5);
    let moved: Vec<Moved> = sb.shared.salesforce.lock().moved.clone();
    assert_eq!(moved.len(), 5);
    let mut got = keys_of(&first["records"]);
    let mut next = first["nextRecordsUrl"].as_str().map(str::to_string);
    while let Some(url) = next {
        let (status, _, body) = api.get(&url, Some(200)).await;
        assert_eq!(status, 200);
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(page["totalSize"], total, "the snapshot keeps its size");
        for r in page["records"].as_array().unwrap() {
            if moved
                .iter()
                .any(|m| m.id == r["Id"] && m.to.as_str() < r["SystemModstamp"].as_str().unwrap())
            {
                assert_eq!(
                    r["SystemModstamp"], r["LastModifiedDate"],
                    "an edit moves both"
                );
            }
        }
        got.extend(keys_of(&page["records"]));
        next = page["nextRecordsUrl"].as_str().map(str::to_string);
    }
    assert_eq!(got.len(), total, "every snapshot Id once");
    // Moved records not yet delivered show their new SystemModstamp, after the history.
    for m in &moved {
        let (id, t) = got.iter().find(|(id, _)| *id == m.id).unwrap();
        let shown = t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        assert!(shown == m.from || shown == m.to, "{id}: {shown} vs {m:?}");
        assert!(m.to.as_str() > "2025-01-01", "{m:?}");
    }
    assert!(
        got.iter().any(|(_, t)| *t >= anchor()),
        "no moved record was shown with its new time"
    );
    // A new query no longer finds them.
    let (_, again) = api.query(&soql, Some(2000)).await;
    assert_eq!(again["totalSize"], total - 5);
    // A locator that is gone says so.
    let (status, _, body) = api
        .get("/services/data/v60.0/query/01gXXXXXXXXXXXX-200", None)
        .await;
    assert_eq!(status, 400);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error_code(&body), "INVALID_QUERY_LOCATOR");
}

#[tokio::test]
async fn bulk_jobs_move_through_their_states_and_page_csv_by_locator() {
    let cfg = config(Vec::new());
    let sb = start(cfg.clone()).await;
    let api = Api::login(&sb).await;
    let w = window("2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z");
    let expected = expected_salesforce(&cfg, USER, "Account", &w);
    let query = format!(
        "SELECT Id, Name, Owner.Name, AnnualRevenue, Description, SystemModstamp FROM Account WHERE SystemModstamp >= {} AND SystemModstamp < {}",
        "2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z"
    );
    let (status, job) = api
        .post_job(serde_json::json!({"operation":"query","query":query,"contentType":"CSV","columnDelimiter":"COMMA","lineEnding":"LF"}))
        .await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["state"], "UploadComplete");
    assert_eq!(job["object"], "Account");
    let id = job["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("750") && id.len() == 18, "{id}");
    let results = |loc: Option<&str>| {
        let mut p = format!("/services/data/v60.0/jobs/query/{id}/results?maxRecords=40");
        if let Some(l) = loc {
            p.push_str(&format!("&locator={l}"));
        }
        p
    };
    let (status, _, body) = api.get(&results(None), None).await;
    assert_eq!(status, 412);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error_code(&body), "JOB_NOT_COMPLETE");
    let poll = format!("/services/data/v60.0/jobs/query/{id}");
    let (_, _, body) = api.get(&poll, None).await;
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["state"], "InProgress");
    assert_eq!(info["jobType"], "V2Query");
    assert_eq!(api.get(&results(None), None).await.0, 412);
    let (_, _, body) = api.get(&poll, None).await;
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["state"], "JobComplete");
    assert_eq!(info["numberRecordsProcessed"], expected.len());

    let mut got = Vec::new();
    let mut locator: Option<String> = None;
    let mut pages = 0;
    loop {
        let (status, headers, body) = api.get(&results(locator.as_deref()), None).await;
        assert_eq!(status, 200);
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let text = String::from_utf8(body).unwrap();
        if pages == 0 {
            assert!(
                text.starts_with("\"Id\",\"Name\",\"Owner.Name\",\"AnnualRevenue\",\"Description\",\"SystemModstamp\"\n"),
                "{text}"
            );
        }
        let mut rd = csv::Reader::from_reader(text.as_bytes());
        let mut n = 0;
        for row in rd.records() {
            let row = row.unwrap();
            let ts = &row[5];
            assert!(ts.ends_with(".000Z"), "{ts}");
            got.push((row[0].to_string(), ts.parse::<DateTime<Utc>>().unwrap()));
            n += 1;
        }
        assert_eq!(
            headers["Sforce-NumberOfRecords"].to_str().unwrap(),
            n.to_string()
        );
        pages += 1;
        let loc = headers["Sforce-Locator"].to_str().unwrap().to_string();
        if loc == "null" {
            break;
        }
        locator = Some(loc);
    }
    assert_eq!(pages, expected.len().div_ceil(40));
    got.sort();
    assert_eq!(got, expected);
    // A locator can be read again; other versions and unknown jobs cannot.
    let (status, _, again) = api.get(&results(Some("NDA")), None).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8(again).unwrap().lines().count() > 1);
    let other = format!("/services/data/v59.0/jobs/query/{id}/results");
    assert_eq!(api.get(&other, None).await.0, 409);
    assert_eq!(
        api.get("/services/data/v60.0/jobs/query/750000000000000AAA", None)
            .await
            .0,
        404
    );
    // Aggregates and unknown operations are refused.
    let (status, body) = api
        .post_job(serde_json::json!({"operation":"query","query":"SELECT COUNT() FROM Account"}))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api
        .post_job(serde_json::json!({"operation":"delete","query":"SELECT Id FROM Account"}))
        .await;
    assert_eq!((status, error_code(&body)), (400, "INVALIDJOB"));
}

#[tokio::test]
async fn logins_tokens_and_limits_behave_like_an_org() {
    let mut cfg = config(vec![sf_fault(
        "Contact",
        FaultKind::ExpireToken,
        None,
        Some(1),
    )]);
    cfg.salesforce[0].daily_api_limit = 6;
    let sb = start(cfg).await;
    let http = reqwest::Client::new();
    let a = account(USER);
    // Bad credentials, each with OAuth's own error.
    for (form, error) in [
        (
            vec![("grant_type", "password"), ("client_id", "nope")],
            "invalid_client_id",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", a.client_id.as_str()),
                ("client_secret", "x"),
            ],
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", a.client_id.as_str()),
                ("client_secret", a.client_secret.as_str()),
                ("username", USER),
                ("password", "wrong"),
            ],
            "invalid_grant",
        ),
        (
            vec![("grant_type", "client_magic")],
            "unsupported_grant_type",
        ),
    ] {
        let (status, body) = token_request(&http, &sb.url(), &form).await;
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            (400, error),
            "{body}"
        );
    }
    let (status, body) = token_request(
        &http,
        &sb.url(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &a.client_id),
            ("client_secret", &a.client_secret),
            ("refresh_token", "5Aep-refresh-token"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let mut api = Api::login(&sb).await;
    let (status, _, body) = api
        .get(
            "/services/data/v60.0/query?q=SELECT+Id+FROM+Lead+LIMIT+1",
            None,
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // The fault expires this token: 401 until a new login.
    let q = "/services/data/v60.0/query?q=SELECT+Id+FROM+Contact+LIMIT+1";
    for _ in 0..2 {
        let (status, _, body) = api.get(q, None).await;
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, error_code(&body)), (401, "INVALID_SESSION_ID"));
    }
    api.token = Api::login(&sb).await.token;
    assert_eq!(api.get(q, None).await.0, 200);
    // Daily limit 6 (the 401 after the fault counted, the one without a session did not):
    // requests 4..=6 pass, then 403 REQUEST_LIMIT_EXCEEDED.
    for n in 4..=6 {
        let (status, headers, _) = api.get(q, None).await;
        assert_eq!(status, 200);
        assert_eq!(
            headers["Sforce-Limit-Info"].to_str().unwrap(),
            format!("api-usage={n}/6")
        );
    }
    let (status, headers, body) = api.get(q, None).await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, error_code(&body)), (403, "REQUEST_LIMIT_EXCEEDED"));
    assert_eq!(body[0]["message"], "TotalRequests Limit exceeded.");
    assert_eq!(
        headers["Sforce-Limit-Info"].to_str().unwrap(),
        "api-usage=6/6"
    );
    let stats = sb.stats();
    assert_eq!(stats.unauthorized, 5, "{stats:?}");
    assert_eq!(stats.rate_limited, 1, "{stats:?}");
}

#[tokio::test]
async fn the_per_minute_limit_answers_403_with_retry_after() {
    let mut cfg = config(Vec::new());
    cfg.rate_limit_per_minute = Some(3);
    let sb = start(cfg).await;
    let api = Api::login(&sb).await;
    let q = "/services/data/v60.0/query?q=SELECT+Id+FROM+Lead+LIMIT+1";
    for _ in 0..3 {
        assert_eq!(api.get(q, None).await.0, 200);
    }
    let (status, headers, body) = api.get(q, None).await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, error_code(&body)), (403, "REQUEST_LIMIT_EXCEEDED"));
    assert!(
        body[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("ConcurrentRequests")
    );
    let wait: u64 = headers["Retry-After"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
}

#[tokio::test]
async fn status_faults_answer_with_salesforce_error_arrays() {
    let faults = vec![
        sf_fault("Account", FaultKind::Status, Some(403), Some(1)),
        sf_fault("Account", FaultKind::Status, Some(429), Some(1)),
        sf_fault("Account", FaultKind::Status, Some(503), Some(1)),
        sf_fault("Account", FaultKind::Status, Some(401), Some(1)),
        sf_fault("Account", FaultKind::Malformed, None, Some(1)),
    ];
    let sb = start(config(faults)).await;
    let api = Api::login(&sb).await;
    let q = "/services/data/v60.0/query?q=SELECT+Id+FROM+Account+LIMIT+1";
    for (status, code) in [
        (403, "REQUEST_LIMIT_EXCEEDED"),
        (429, "REQUEST_LIMIT_EXCEEDED"),
        (503, "SERVER_UNAVAILABLE"),
        (401, "INVALID_SESSION_ID"),
    ] {
        let (got, headers, body) = api.get(q, None).await;
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((got, error_code(&body)), (status, code));
        assert!(headers.contains_key("Sforce-Limit-Info"));
        assert_eq!(
            headers.contains_key("Retry-After"),
            status == 429 || status == 403
        );
    }
    let (status, _, body) = api.get(q, None).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());
    assert_eq!(api.get(q, None).await.0, 200);
    // Spoiled good answers count as good ones, as for ConnectWise.
    assert_eq!(sb.stats().faults_injected, 4);
}
