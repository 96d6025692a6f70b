//! The Table API routes: `GET /api/now/table/{table}` (offset pages with `Link` and
//! `X-Total-Count`) and `GET /api/now/table/{table}/{sys_id}`; and the Aggregate API's count,
//! `GET /api/now/stats/{table}?sysparm_count=true&sysparm_query=..`, answered
//! `{"result":{"stats":{"count":"N"}}}` (the count is a string, as ServiceNow sends it).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, Uri, header};
use axum::response::Response;
use chrono::Utc;

use super::auth::admit;
use super::data::{Display, RenderOpts, SnTable, hex32, render};
use super::query::EncodedQuery;
use super::{DEFAULT_LIMIT, SnState, error, ok, unauthenticated};
use crate::domain::Service;
use crate::sandbox::http::{FaultAnswers, Reply, link_with, planned_fault};
use crate::sandbox::{FaultAction, Outcome, Shared, Slot};

/// The query parameters of a table request.
struct Params {
    query: String,
    limit: usize,
    offset: usize,
    render: RenderOpts,
    suppress_pagination: bool,
    no_count: bool,
}

impl Params {
    fn parse(raw: &str, instance: &str) -> Params {
        let mut p = Params {
            query: String::new(),
            limit: DEFAULT_LIMIT,
            offset: 0,
            render: RenderOpts::default(),
            suppress_pagination: false,
            no_count: false,
        };
        let mut exclude_links = false;
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let flag = || value.trim().eq_ignore_ascii_case("true");
            match key.as_ref() {
                "sysparm_query" => p.query = value.to_string(),
                "sysparm_limit" => {
                    if let Ok(n) = value.trim().parse::<usize>()
                        && n > 0
                    {
                        p.limit = n;
                    }
                }
                "sysparm_offset" => p.offset = value.trim().parse().unwrap_or(0),
                "sysparm_fields" => {
                    let fields: Vec<String> = value
                        .split(',')
                        .map(|f| f.trim().to_string())
                        .filter(|f| !f.is_empty())
                        .collect();
                    if !fields.is_empty() {
                        p.render.fields = Some(fields);
                    }
                }
                "sysparm_display_value" => {
                    p.render.display = match value.trim().to_ascii_lowercase().as_str() {
                        "true" => Display::True,
                        "all" => Display::All,
                        _ => Display::False,
                    }
                }
                "sysparm_exclude_reference_link" => exclude_links = flag(),
                "sysparm_suppress_pagination_header" => p.suppress_pagination = flag(),
                "sysparm_no_count" => p.no_count = flag(),
                _ => {}
            }
        }
        if !exclude_links {
            p.render.links = Some(instance.to_string());
        }
        p
    }
}

/// `base?raw_query` with `sysparm_offset` set to `offset`, other parameters kept as sent.
fn offset_link(base: &str, raw_query: &str, offset: usize) -> String {
    link_with(
        base,
        raw_query,
        |k| k == "sysparm_offset",
        "sysparm_offset",
        offset,
    )
}

/// `Link` for an offset page: first, prev (not on the first page), next (not on the last),
/// last; `;rel=` without a space, as ServiceNow sends it.
fn link_header(base: &str, raw_query: &str, offset: usize, limit: usize, total: usize) -> String {
    let last = if total == 0 {
        0
    } else {
        (total - 1) / limit * limit
    };
    let mut parts = vec![format!(
        "<{}>;rel=\"first\"",
        offset_link(base, raw_query, 0)
    )];
    if offset > 0 {
        let prev = offset.saturating_sub(limit);
        parts.push(format!(
            "<{}>;rel=\"prev\"",
            offset_link(base, raw_query, prev)
        ));
    }
    if offset + limit < total {
        let next = offset + limit;
        parts.push(format!(
            "<{}>;rel=\"next\"",
            offset_link(base, raw_query, next)
        ));
    }
    parts.push(format!(
        "<{}>;rel=\"last\"",
        offset_link(base, raw_query, last)
    ));
    parts.join(",")
}

fn unknown_table(name: &str) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        Outcome::Other,
        &format!("Invalid table {name}"),
        None,
    )
}

/// The reset time sent with good answers: the end of the current hour.
fn hour_reset() -> i64 {
    let now = Utc::now().timestamp();
    (now.div_euclid(3600) + 1) * 3600
}

pub(super) async fn list(
    State(shared): State<Arc<Shared>>,
    Path(table): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let mut held = None;
    let reply = handle_list(&shared, &table, &headers, &uri, &mut held);
    reply.holding(held).finish(&shared).await
}

fn handle_list(
    shared: &Shared,
    table_name: &str,
    headers: &HeaderMap,
    uri: &Uri,
    held: &mut Option<Slot>,
) -> Reply {
    let sn = &shared.servicenow;
    let (account, token) = match admit(shared, headers, held) {
        Ok(a) => a,
        Err(reply) => return reply,
    };
    let Some(table) = SnTable::ALL.into_iter().find(|t| t.name() == table_name) else {
        return unknown_table(table_name);
    };
    let raw_query = uri.query().unwrap_or("");
    let instance = shared.base_url(headers);
    let params = Params::parse(raw_query, &instance);
    let q = EncodedQuery::parse(&params.query);
    let answers = FaultAnswers {
        status: |action: &FaultAction| injected_status(sn, action),
        expire_token: || {
            if let Some(token) = &token {
                sn.revoke(token);
            }
            unauthenticated(Outcome::Fault)
        },
        touch: |n, edit| {
            sn.touch(account, table, &q, params.offset, (n, edit));
        },
    };
    let spoil = match planned_fault(
        shared,
        Service::Servicenow,
        table.name(),
        q.window().0,
        answers,
    ) {
        Ok(spoil) => spoil,
        Err(reply) => return reply,
    };
    let (body, total) = result_page(sn, account, table, &q, &params);
    let username = &sn.accounts[account].account.username;
    let key = format!(
        "sn\n{username}\n{}\n{}\n{}\n{}\n{:?}",
        table.name(),
        params.query,
        params.offset,
        params.limit,
        params.render.fields
    );
    shared.note_page(key);
    let mut reply = ok(body);
    if !params.no_count {
        reply = reply.header(HeaderName::from_static("x-total-count"), total.to_string());
    }
    if !params.suppress_pagination {
        let base = format!("{instance}{}", uri.path());
        let link = link_header(&base, raw_query, params.offset, params.limit, total);
        reply = reply.header(header::LINK, link);
    }
    reply
        .headers(sn.rate_headers(hour_reset()))
        .spoiled_by(spoil)
}

/// A fault plan's error status, as ServiceNow words it; a 429 also says when to come back.
fn injected_status(sn: &SnState, action: &FaultAction) -> Reply {
    let reply = error(
        action.status_code(),
        Outcome::Fault,
        &action.message,
        Some("Injected by the sandbox"),
    );
    if action.status == 429 {
        let reset = Utc::now().timestamp() + action.retry_after_secs as i64;
        reply
            .header(header::RETRY_AFTER, action.retry_after_secs)
            .headers(sn.rate_headers(reset))
    } else {
        reply
    }
}

/// The `{"result":[...]}` body of one page of the query, and how many records match.
fn result_page(
    sn: &SnState,
    account: usize,
    table: SnTable,
    q: &EncodedQuery,
    params: &Params,
) -> (Vec<u8>, usize) {
    let data = sn
        .table(account, table)
        .read()
        .unwrap_or_else(|e| e.into_inner());
    let (rows, total) = sn.select(&data, q, params.offset, params.limit);
    let mut body = Vec::with_capacity(rows.len() * table.approx_record_bytes() + 16);
    body.extend_from_slice(b"{\"result\":[");
    for (n, rec) in rows.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        render(&data.generator, rec, &params.render, &mut body);
    }
    body.extend_from_slice(b"]}");
    (body, total)
}

pub(super) async fn one(
    State(shared): State<Arc<Shared>>,
    Path((table_name, sys_id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let mut held = None;
    let reply = (|| {
        let sn = &shared.servicenow;
        let (account, _) = match admit(&shared, &headers, &mut held) {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        let Some(table) = SnTable::ALL.into_iter().find(|t| t.name() == table_name) else {
            return unknown_table(&table_name);
        };
        let params = Params::parse(uri.query().unwrap_or(""), &shared.base_url(&headers));
        let data = sn
            .table(account, table)
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let Some(rec) = data.recs.iter().find(|r| hex32(r.sys_id) == sys_id) else {
            return error(
                StatusCode::NOT_FOUND,
                Outcome::Other,
                "No Record found",
                Some("Record doesn't exist or ACL restricts the record retrieval"),
            );
        };
        let mut body = b"{\"result\":".to_vec();
        render(&data.generator, rec, &params.render, &mut body);
        body.push(b'}');
        ok(body).headers(sn.rate_headers(hour_reset()))
    })();
    reply.holding(held).finish(&shared).await
}

pub(super) async fn stats(
    State(shared): State<Arc<Shared>>,
    Path(table_name): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let mut held = None;
    let reply = (|| {
        let sn = &shared.servicenow;
        let (account, _) = match admit(&shared, &headers, &mut held) {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        let Some(table) = SnTable::ALL.into_iter().find(|t| t.name() == table_name) else {
            return unknown_table(&table_name);
        };
        let raw = uri.query().unwrap_or("");
        let param = |key: &str| {
            url::form_urlencoded::parse(raw.as_bytes())
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        };
        let q = EncodedQuery::parse(&param("sysparm_query").unwrap_or_default());
        let stats = if param("sysparm_count").is_some_and(|v| v.trim() == "true") {
            let data = sn
                .table(account, table)
                .read()
                .unwrap_or_else(|e| e.into_inner());
            let (_, total) = sn.select(&data, &q, 0, 1);
            serde_json::json!({ "count": total.to_string() })
        } else {
            serde_json::json!({})
        };
        let body = serde_json::json!({ "result": { "stats": stats } });
        ok(serde_json::to_vec(&body).unwrap_or_default()).headers(sn.rate_headers(hour_reset()))
    })();
    reply.holding(held).finish(&shared).await
}
