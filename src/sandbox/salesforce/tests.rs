//! Tests of the Salesforce sandbox over real HTTP (reqwest against `Sandbox::start`).

mod bulk;
mod limits;
mod query;

use axum::http::HeaderMap;

use super::plan::parse_plan;
use super::*;
use crate::domain::{Service, Window};
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
        api_used_elsewhere: 0,
        elsewhere_frees_after: DAY,
        hidden_fields: Vec::new(),
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
                ("client_secret", a.client_secret.expose()),
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
