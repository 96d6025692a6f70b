//! Everything under `/services/data/vXX.X/`: the version and session check, the per-minute
//! and daily API limits, routing, and REST queries with their query locators (Bulk API 2.0
//! jobs are in `bulk.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;

use super::auth::bearer;
use super::data::{self, Renderer, Times};
use super::plan::{AggColumn, Aggregate, Column, Plan, parse_plan};
use super::{
    Inner, LIMIT_INFO, Locator, MAX_BODY, MAX_LOCATORS, SfState, bad_request, error, fault_reply,
    invalid_session, json, not_found,
};
use crate::domain::Service;
use crate::sandbox::http::{FaultAnswers, Reply, planned_fault};
use crate::sandbox::{FaultAction, Outcome, Shared, Slot, lock};

/// Everything under `/services/data/`.
pub(super) async fn api(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let mut held = None;
    let reply = handle(&shared, &parts, &body, &mut held);
    reply.holding(held).finish(&shared).await
}

fn valid_version(v: &str) -> bool {
    v.strip_prefix('v')
        .and_then(|n| n.split_once('.'))
        .is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        })
}

fn handle(
    shared: &Shared,
    parts: &axum::http::request::Parts,
    body: &[u8],
    held: &mut Option<Slot>,
) -> Reply {
    let (method, uri, headers) = (&parts.method, &parts.uri, &parts.headers);
    let sf = &shared.salesforce;
    let Some(rest) = uri.path().strip_prefix("/services/data/") else {
        return not_found();
    };
    let (version, rest) = rest.split_once('/').unwrap_or((rest, ""));
    if !valid_version(version) {
        return not_found();
    }
    let token = bearer(headers).unwrap_or("").to_string();
    let Some(org) = sf.lock().tokens.get(&token).copied() else {
        return invalid_session();
    };
    let o = &sf.orgs[org];
    let limit = o.account.daily_api_limit;
    if method == Method::GET && rest.trim_end_matches('/') == "limits" {
        return limits(limit, lock(&o.usage).used());
    }
    if let Err(refusal) = shared.admit(Service::Salesforce, &o.account.username, held) {
        let used = lock(&o.usage).used();
        return error(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
        )
        .with_outcome(refusal.outcome())
        .header(header::RETRY_AFTER, refusal.retry_after_secs())
        .header(LIMIT_INFO, format!("api-usage={used}/{limit}"));
    }
    let taken = lock(&o.usage).take(limit);
    let used = match taken {
        Ok(used) => used,
        Err(used) => {
            return error(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            )
            .with_outcome(Outcome::RateLimited)
            .header(LIMIT_INFO, format!("api-usage={used}/{limit}"));
        }
    };
    let ctx = Ctx {
        shared,
        org,
        version,
        token: &token,
    };
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let reply = match (method, segments.as_slice()) {
        (&Method::GET, ["query" | "queryAll"]) => ctx.query(uri, headers),
        (&Method::GET, ["query" | "queryAll", locator]) => ctx.query_more(locator),
        (&Method::POST, ["jobs", "query"]) => ctx.create_job(body),
        (&Method::GET, ["sobjects", object, "describe"]) => ctx.describe(object),
        (&Method::GET, ["jobs", "query", id]) => ctx.job_info(id),
        (&Method::GET, ["jobs", "query", id, "results"]) => ctx.results(id, uri),
        (_, ["query" | "queryAll"] | ["query" | "queryAll", _] | ["jobs", "query", ..]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            &format!("HTTP Method '{method}' not allowed. Allowed are GET,HEAD"),
        ),
        _ => not_found(),
    };
    reply.header(LIMIT_INFO, format!("api-usage={used}/{limit}"))
}

/// `/limits`: the org's daily allocation as `DailyApiRequests` `Max` and `Remaining`, beside
/// two limits a real org also lists.
fn limits(max: u64, used: u64) -> Reply {
    let body = serde_json::json!({
        "ConcurrentAsyncGetReportInstances": { "Max": 200, "Remaining": 200 },
        "DailyApiRequests": { "Max": max, "Remaining": max.saturating_sub(used) },
        "DailyBulkV2QueryJobs": { "Max": 10000, "Remaining": 10000 },
    });
    json(serde_json::to_vec(&body).unwrap_or_default())
        .header(LIMIT_INFO, format!("api-usage={used}/{max}"))
}

/// One authenticated request.
pub(super) struct Ctx<'a> {
    pub(super) shared: &'a Shared,
    pub(super) org: usize,
    pub(super) version: &'a str,
    pub(super) token: &'a str,
}

pub(super) fn query_param(uri: &axum::http::Uri, key: &str) -> Option<String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// `Sforce-Query-Options: batchSize=N`, clamped to 200..=2000 (default 2000).
fn batch_size(headers: &HeaderMap) -> usize {
    headers
        .get("Sforce-Query-Options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("batchSize"))
                .and_then(|(_, n)| n.trim().parse::<usize>().ok())
        })
        .unwrap_or(2000)
        .clamp(200, 2000)
}

impl Ctx<'_> {
    pub(super) fn sf(&self) -> &SfState {
        &self.shared.salesforce
    }

    /// Applies the fault plan to a read of `plan`'s window: `Err` answers instead, `Ok(Some)`
    /// spoils the good answer.
    pub(super) fn fault(&self, plan: &Plan) -> Result<Option<FaultAction>, Reply> {
        let answers = FaultAnswers {
            status: fault_reply,
            expire_token: || {
                self.sf().lock().tokens.remove(self.token);
                invalid_session()
            },
            touch: |n, edit| self.sf().touch(self.org, plan, (n, edit)),
        };
        planned_fault(
            self.shared,
            Service::Salesforce,
            plan.sobject.name(),
            plan.window_start,
            answers,
        )
    }

    pub(super) fn page_seen(&self, key: String) {
        let key = format!("sf\n{}\n{key}", self.sf().orgs[self.org].account.username);
        self.shared.note_page(key);
    }

    fn query(&self, uri: &axum::http::Uri, headers: &HeaderMap) -> Reply {
        let sf = self.sf();
        sf.stats.queries.fetch_add(1, Ordering::Relaxed);
        let Some(text) = query_param(uri, "q").filter(|q| !q.trim().is_empty()) else {
            return bad_request("MALFORMED_QUERY", "A query string has to be specified");
        };
        let plan = match parse_plan(&text) {
            Ok(p) => Arc::new(p),
            Err(reply) => {
                sf.stats.refused_queries.fetch_add(1, Ordering::Relaxed);
                return reply;
            }
        };
        if let Err(reply) = self.refuse_hidden(&plan) {
            return reply;
        }
        let spoil = match self.fault(&plan) {
            Ok(s) => s,
            Err(reply) => return reply,
        };
        let batch = batch_size(headers);
        let mut inner = sf.lock();
        let rows = sf.evaluate(&inner, self.org, &plan);
        let total = rows.len();
        if let Some(agg) = &plan.aggregate {
            let body = self.render_aggregate(&inner, &plan, agg, &rows);
            drop(inner);
            return json(body).spoiled_by(spoil);
        }
        if plan.columns.is_none() {
            let body = format!("{{\"totalSize\":{total},\"done\":true,\"records\":[]}}");
            return json(body.into_bytes());
        }
        let rows = Arc::new(rows);
        let next = (total > batch).then(|| {
            let seq = SfState::next_seq(&mut inner);
            let id = data::make_id("01g", &sf.orgs[self.org].keys.pod, seq)[..15].to_string();
            inner.locators.insert(
                id.clone(),
                Locator {
                    org: self.org,
                    plan: plan.clone(),
                    rows: rows.clone(),
                    batch,
                },
            );
            inner.locator_order.push_back(id.clone());
            let mine: Vec<String> = inner
                .locator_order
                .iter()
                .filter(|l| inner.locators.get(*l).is_some_and(|l| l.org == self.org))
                .cloned()
                .collect();
            if mine.len() > MAX_LOCATORS {
                let oldest = &mine[0];
                inner.locators.remove(oldest);
                inner.locator_order.retain(|l| l != oldest);
            }
            format!("/services/data/{}/query/{id}-{batch}", self.version)
        });
        let body = self.render_page(&inner, &plan, &rows[..batch.min(total)], total, next);
        drop(inner);
        self.page_seen(format!("q\n{text}\n{batch}"));
        json(body).spoiled_by(spoil)
    }

    fn query_more(&self, locator: &str) -> Reply {
        let sf = self.sf();
        sf.stats.query_more.fetch_add(1, Ordering::Relaxed);
        let invalid = || bad_request("INVALID_QUERY_LOCATOR", "invalid query locator");
        let Some((id, offset)) = locator.rsplit_once('-') else {
            return invalid();
        };
        let Ok(offset) = offset.parse::<usize>() else {
            return invalid();
        };
        let (plan, rows, batch) = {
            let inner = sf.lock();
            match inner.locators.get(id).filter(|l| l.org == self.org) {
                Some(l) if offset <= l.rows.len() => (l.plan.clone(), l.rows.clone(), l.batch),
                _ => return invalid(),
            }
        };
        let spoil = match self.fault(&plan) {
            Ok(s) => s,
            Err(reply) => return reply,
        };
        let end = (offset + batch).min(rows.len());
        let next =
            (end < rows.len()).then(|| format!("/services/data/{}/query/{id}-{end}", self.version));
        let body = {
            let inner = sf.lock();
            self.render_page(&inner, &plan, &rows[offset..end], rows.len(), next)
        };
        self.page_seen(format!("more\n{id}\n{offset}"));
        json(body).spoiled_by(spoil)
    }

    /// An aggregate result: one `AggregateResult` record per group (in group order; Salesforce
    /// promises no order without ORDER BY), unaliased items named `expr0`, `expr1`, ... in
    /// SELECT order, all on one page (aggregate queries have no query locator). Without
    /// GROUP BY there is one row, even over no records.
    fn render_aggregate(
        &self,
        inner: &Inner,
        plan: &Plan,
        agg: &Aggregate,
        rows: &[u32],
    ) -> Vec<u8> {
        let mut groups: std::collections::BTreeMap<Vec<i64>, u64> = Default::default();
        if agg.group.is_empty() {
            groups.insert(Vec::new(), 0);
        }
        for &i in rows {
            let t = self.sf().times(inner, self.org, plan.sobject, i);
            let key: Vec<i64> = agg.group.iter().map(|p| p.of(&t)).collect();
            *groups.entry(key).or_default() += 1;
        }
        let limit = agg
            .limit
            .map_or(usize::MAX, |l| l.min(usize::MAX as u64) as usize);
        let records: Vec<serde_json::Value> = groups
            .iter()
            .take(limit)
            .map(|(key, n)| {
                let mut rec = serde_json::Map::new();
                rec.insert(
                    "attributes".into(),
                    serde_json::json!({"type": "AggregateResult"}),
                );
                for (k, col) in agg.select.iter().enumerate() {
                    let v = match col {
                        AggColumn::Group(g) => key[*g].into(),
                        AggColumn::Count => (*n).into(),
                    };
                    rec.insert(format!("expr{k}"), v);
                }
                serde_json::Value::Object(rec)
            })
            .collect();
        let body =
            serde_json::json!({"totalSize": records.len(), "done": true, "records": records});
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// `{"totalSize":..,"done":..,"nextRecordsUrl":..,"records":[..]}` with current values.
    fn render_page(
        &self,
        inner: &Inner,
        plan: &Plan,
        rows: &[u32],
        total: usize,
        next: Option<String>,
    ) -> Vec<u8> {
        let sf = self.sf();
        let columns = plan.columns.as_deref().unwrap_or(&[]);
        let mut out = Vec::with_capacity(64 + rows.len() * 90 * (columns.len() + 2));
        out.extend_from_slice(
            format!("{{\"totalSize\":{total},\"done\":{}", next.is_none()).as_bytes(),
        );
        if let Some(next) = &next {
            out.extend_from_slice(b",\"nextRecordsUrl\":");
            crate::sandbox::json::string(&mut out, next);
        }
        out.extend_from_slice(b",\"records\":[");
        let r = Renderer {
            keys: &sf.orgs[self.org].keys,
            sobject: plan.sobject,
        };
        // A record deleted since the query is left out of its page, as it is gone.
        let live = rows
            .iter()
            .filter(|&&i| !inner.deleted.contains(&(self.org, plan.sobject, i)));
        for (n, &i) in live.enumerate() {
            if n > 0 {
                out.push(b',');
            }
            let t = sf.times(inner, self.org, plan.sobject, i);
            self.render_record(&r, i, t, columns, &mut out);
        }
        out.extend_from_slice(b"]}");
        out
    }

    fn render_record(&self, r: &Renderer, i: u32, t: Times, columns: &[Column], out: &mut Vec<u8>) {
        let attributes = |out: &mut Vec<u8>, ty: &str, id: &str| {
            out.extend_from_slice(b"\"attributes\":{\"type\":\"");
            out.extend_from_slice(ty.as_bytes());
            out.extend_from_slice(b"\",\"url\":\"/services/data/");
            out.extend_from_slice(self.version.as_bytes());
            out.extend_from_slice(b"/sobjects/");
            out.extend_from_slice(ty.as_bytes());
            out.push(b'/');
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(b"\"}");
        };
        let id = self.sf().table(self.org, r.sobject).ids[i as usize].as_str();
        out.push(b'{');
        attributes(out, r.sobject.name(), id);
        let mut owner_done = false;
        for col in columns {
            match col {
                Column::Field(f) => {
                    out.extend_from_slice(b",\"");
                    out.extend_from_slice(f.as_bytes());
                    out.extend_from_slice(b"\":");
                    r.value(u64::from(i), f, t).write_json(out);
                }
                Column::Owner(_) if owner_done => {}
                Column::Owner(_) => {
                    owner_done = true;
                    let user = r.keys.user_id(r.owner(u64::from(i)));
                    out.extend_from_slice(b",\"Owner\":{");
                    attributes(out, "User", &user);
                    for c in columns {
                        if let Column::Owner(f) = c {
                            out.extend_from_slice(b",\"");
                            out.extend_from_slice(f.as_bytes());
                            out.extend_from_slice(b"\":");
                            r.owner_value(u64::from(i), f).write_json(out);
                        }
                    }
                    out.push(b'}');
                }
            }
        }
        out.push(b'}');
    }
}
