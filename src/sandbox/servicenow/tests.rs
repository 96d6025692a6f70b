//! Tests of the ServiceNow surface: the dataset, and the API over real HTTP (reqwest against
//! `Sandbox::start` on 127.0.0.1:0).

mod auth;
mod dataset;
mod faults;
mod paging;

use std::collections::BTreeSet;

use base64::Engine as _;
use chrono::{DateTime, Timelike, Utc};

use super::data::{DAY, Gen, SnTable, hex32, parse_sn_time, sn_time};
use super::query::EncodedQuery;
use super::*;
use crate::domain::{Service, Window};
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

/// The window from `last`'s second on (one block, sorted as a whole); the caller drops the
/// rows up to `last`.
fn keyset_query(w: &Window, last: Option<&(String, DateTime<Utc>)>) -> String {
    let win = window_query(w);
    let order = "^ORDERBYsys_updated_on^ORDERBYsys_id";
    match last {
        None => format!("{win}{order}"),
        Some((_, t)) => format!("{win}^sys_updated_on>={}{order}", sn_time(t.timestamp())),
    }
}

/// After the pair `last` in two blocks joined by `^NQ`.
fn nq_query(w: &Window, (id, t): &(String, DateTime<Utc>)) -> String {
    let win = window_query(w);
    let t = sn_time(t.timestamp());
    format!(
        "{win}^sys_updated_on>{t}^NQ{win}^sys_updated_on={t}^sys_id>{id}\
         ^ORDERBYsys_updated_on^ORDERBYsys_id"
    )
}

fn by_time(rows: &mut [(String, DateTime<Utc>)]) {
    rows.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
}

const TABLE: &str = "/api/now/table/incident";
