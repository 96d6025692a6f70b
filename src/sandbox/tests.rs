//! Tests of the sandbox over real HTTP (reqwest against `Sandbox::start` on 127.0.0.1:0):
//! shared helpers here, the tests themselves in `tests/`.

mod dataset;
mod errors;
mod load;
mod paging;

use std::collections::BTreeSet;

use base64::Engine;
use chrono::{DateTime, Timelike, Utc};

use super::data::{Bounds, Generator, ID_BASE, Table, TableData};
use super::*;
use crate::domain::Window;

const API: &str = "/v4_6_release/apis/3.0/";

fn ts(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn fmt(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn tenant(company: &str, n: u64) -> SandboxTenant {
    SandboxTenant {
        company_id: company.to_string(),
        public_key: format!("{company}-public"),
        private_key: Secret::new(format!("{company}-private-key-secret")),
        client_id: format!("client-{company}"),
        counts: TableCounts {
            tickets: 3000,
            time_entries: 2000 + n,
            companies: 60,
            contacts: 150,
        },
    }
}

fn config() -> SandboxConfig {
    SandboxConfig::new(
        ts("2025-01-01T00:00:00Z"),
        vec![tenant("acme_demo", 0), tenant("globex_demo", 7)],
    )
}

async fn start(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn window_conditions(w: &Window) -> String {
    format!(
        "lastUpdated >= [{}] and lastUpdated < [{}]",
        fmt(w.start),
        fmt(w.end)
    )
}

fn url(sb: &Sandbox, path: &str, params: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&format!("{}{API}{path}", sb.url())).unwrap();
    if !params.is_empty() {
        u.query_pairs_mut().extend_pairs(params);
    }
    u.to_string()
}

fn basic(company: &str, public: &str, private: &str) -> String {
    let raw = format!("{company}+{public}:{private}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[derive(Debug)]
struct Resp {
    status: u16,
    link: Option<String>,
    retry_after: Option<String>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn records(&self) -> Vec<(i64, DateTime<Utc>)> {
        let v = self.json();
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let lu = r["_info"]["lastUpdated"].as_str().unwrap();
                (r["id"].as_i64().unwrap(), ts(lu))
            })
            .collect()
    }
}

async fn send(req: reqwest::RequestBuilder) -> Resp {
    let r = req.send().await.unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (link, retry_after) = (header("link"), header("retry-after"));
    Resp {
        status: r.status().as_u16(),
        link,
        retry_after,
        body: r.bytes().await.unwrap().to_vec(),
    }
}

async fn call(url: &str, t: &SandboxTenant, forward_only: bool) -> Resp {
    call_with(&reqwest::Client::new(), url, t, forward_only).await
}

async fn call_with(
    client: &reqwest::Client,
    url: &str,
    t: &SandboxTenant,
    forward_only: bool,
) -> Resp {
    let mut req = client
        .get(url)
        .header(
            "Authorization",
            basic(&t.company_id, &t.public_key, t.private_key.expose()),
        )
        .header("clientId", &t.client_id);
    if forward_only {
        req = req.header("pagination-type", "forward-only");
    }
    send(req).await
}

/// `<url>; rel="next"` → url (forward-only Link).
fn next_link(link: &str) -> Option<String> {
    link.split(", ").find_map(|part| {
        let (url, rel) = part.split_once("; ")?;
        (rel == "rel=\"next\"").then(|| url.trim_matches(['<', '>']).to_string())
    })
}

async fn walk_forward_only(sb: &Sandbox, t: &SandboxTenant, w: &Window, size: &str) -> Vec<Resp> {
    let conditions = window_conditions(w);
    let mut next = Some(url(
        sb,
        "service/tickets",
        &[("conditions", &conditions), ("pageSize", size)],
    ));
    let mut pages = Vec::new();
    while let Some(u) = next.take() {
        let page = call(&u, t, true).await;
        assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
        // No Link (the sandbox's default on the last page) ends the walk as an empty one.
        next = page.link.as_deref().and_then(next_link);
        pages.push(page);
        assert!(pages.len() < 10_000);
    }
    pages
}
