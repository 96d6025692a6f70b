//! The ConnectWise PSA REST 3.0 surface: routing, auth, `conditions` parsing, both paging
//! modes with their `Link` headers, `/count`, and ConnectWise-shaped error bodies.
//!
//! What a forward-only page says in `Link` when nothing follows is not in ConnectWise's
//! documentation: clients written against it stop on an empty header, others on a short
//! page. The sandbox leaves the header out on the last page unless told otherwise
//! (`CwLink`), so a client relying on the empty header is caught here, not in production.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use chrono::NaiveDateTime;

use super::data::{Bounds, Table, TableData};
use super::http::{Edit, FaultAnswers, Reply, decode_basic, link_with, planned_fault};
use super::render::render;
use super::{FaultAction, Outcome, Shared, Slot, TenantData};
use crate::domain::Service;

pub(crate) const API_PREFIX: &str = "/v4_6_release/apis/3.0/";
const DEFAULT_PAGE_SIZE: u64 = 25;
const MAX_PAGE_SIZE: u64 = 1000;

/// ConnectWise answers JSON in this content type, errors included.
const CONTENT_TYPE: &str = "application/json; charset=utf-8";

fn ok(body: Vec<u8>) -> Reply {
    Reply::ok(CONTENT_TYPE, body)
}

/// ConnectWise's error body `{"code":..,"message":..}`.
fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    let body = serde_json::json!({ "code": code, "message": message });
    Reply::refusal_json(status, CONTENT_TYPE, &body)
}

/// Axum fallback handler for every path other than `/_sandbox/stats`.
pub(crate) async fn api(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let mut held = None;
    let reply = handle(&shared, req.method(), req.uri(), req.headers(), &mut held);
    reply.holding(held).finish(&shared).await
}

/// `GET /login/companyinfo/{company}`: where a company's API lives, as ConnectWise answers
/// it without credentials (`Codebase` is the path segment before `apis/3.0`, with its
/// slash). A company the sandbox does not serve is answered 404 in ConnectWise's error shape.
pub(crate) async fn company_info(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(company): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let known = shared
        .tenants
        .iter()
        .find(|t| t.tenant.company_id.eq_ignore_ascii_case(&company));
    let reply = match known {
        None => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("Company {company} was not found"),
        ),
        Some(t) => {
            let site = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            let body = serde_json::json!({
                "CompanyName": t.tenant.company_id,
                "Codebase": API_PREFIX.trim_start_matches('/').trim_end_matches("apis/3.0/"),
                "VersionCode": "v2025.1",
                "VersionNumber": "v4.6",
                "CompanyID": t.tenant.company_id,
                "IsCloud": false,
                "SiteUrl": site,
            });
            ok(serde_json::to_vec(&body).unwrap_or_default())
        }
    };
    reply.finish(&shared).await
}

enum Route {
    List,
    Count,
    One(i64),
}

fn route(rest: &str) -> Option<(Table, Route)> {
    Table::ALL.into_iter().find_map(|table| {
        let tail = rest.strip_prefix(table.path())?;
        let route = match tail {
            "" => Route::List,
            "/count" => Route::Count,
            _ => {
                let id = tail.strip_prefix('/')?;
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Route::One(id.parse().ok()?)
            }
        };
        Some((table, route))
    })
}

fn handle(
    shared: &Shared,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    held: &mut Option<Slot>,
) -> Reply {
    let path = uri.path();
    let Some((table, route)) = path
        .strip_prefix(API_PREFIX)
        .map(|rest| rest.trim_end_matches('/'))
        .and_then(route)
    else {
        let message = format!("The requested resource {path} was not found");
        return error(StatusCode::NOT_FOUND, "NotFound", &message);
    };
    let rest = path[API_PREFIX.len()..].trim_end_matches('/');
    let tenant = match admit(shared, method, headers, held) {
        Ok(tenant) => tenant,
        Err(reply) => return reply,
    };
    let raw_query = uri.query().unwrap_or("");
    let query = match Query::parse(raw_query) {
        Ok(q) => q,
        Err(err) => return err.reply(),
    };
    let answers = FaultAnswers {
        status: injected_status,
        // ConnectWise keys do not expire; a revoked key looks like this.
        expire_token: || {
            error(
                StatusCode::UNAUTHORIZED,
                "ConnectWiseApi",
                "UserNotAuthenticated",
            )
        },
        touch: |n, edit| match edit {
            Edit::Move => shared.touch_records(tenant, table, query.bounds, (n, false)),
            Edit::MoveInside => shared.touch_records(tenant, table, query.bounds, (n, true)),
            Edit::Delete => shared.delete_records(tenant, table, query.bounds, n),
        },
    };
    let spoil = match planned_fault(
        shared,
        Service::Connectwise,
        rest,
        query.lower_bound,
        answers,
    ) {
        Ok(spoil) => spoil,
        Err(reply) => return reply,
    };
    let data = shared.table(tenant, table);
    let reply = match route {
        Route::Count => {
            let body = format!("{{\"count\":{}}}", data.count(query.bounds));
            ok(body.into_bytes())
        }
        Route::One(id) => one_record(data, table, id),
        Route::List => {
            let list = List {
                query: &query,
                raw_query,
                path,
                rest,
            };
            match list.page(shared, tenant, data, headers) {
                Ok(reply) => reply,
                Err(reply) => return reply,
            }
        }
    };
    if reply.status == StatusCode::OK {
        reply.spoiled_by(spoil)
    } else {
        reply
    }
}

/// The tenant a GET request is from, unless it is refused: another method, credentials
/// that are not a tenant's, or the tenant over its rate limit or concurrency cap (429, as
/// ConnectWise answers both).
fn admit<'a>(
    shared: &'a Shared,
    method: &Method,
    headers: &HeaderMap,
    held: &mut Option<Slot>,
) -> Result<&'a TenantData, Reply> {
    if method != Method::GET {
        let message = format!("Method {method} is not supported by the sandbox");
        return Err(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &message,
        ));
    }
    let tenant = authenticate(shared, headers).map_err(|message| {
        error(StatusCode::UNAUTHORIZED, "Unauthorized", message).with_outcome(Outcome::Unauthorized)
    })?;
    if let Err(refusal) = shared.admit(Service::Connectwise, &tenant.tenant.company_id, held) {
        return Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Rate limit exceeded",
        )
        .with_outcome(refusal.outcome())
        .header(header::RETRY_AFTER, refusal.retry_after_secs()));
    }
    Ok(tenant)
}

/// A fault plan's error status, as ConnectWise words it; a 429 also says when to come back.
fn injected_status(action: &FaultAction) -> Reply {
    if action.status == 429 {
        error(action.status_code(), "TooManyRequests", &action.message)
            .header(header::RETRY_AFTER, action.retry_after_secs)
    } else {
        error(action.status_code(), "ConnectWiseApi", &action.message)
    }
}

/// `GET {table}/{id}`.
fn one_record(data: &TableData, table: Table, id: i64) -> Reply {
    match data.last_updated_of(id) {
        Some(lu) => {
            let mut body = Vec::with_capacity(table.approx_record_bytes());
            render(
                &data.generator,
                (id - super::data::ID_BASE) as u64,
                lu,
                &mut body,
            );
            ok(body)
        }
        None => {
            let message = format!("{} with id {id} was not found", table.table_name());
            error(StatusCode::NOT_FOUND, "NotFound", &message)
        }
    }
}

/// A list request: its query and where it was sent.
struct List<'q> {
    query: &'q Query,
    raw_query: &'q str,
    path: &'q str,
    /// The path below the API prefix.
    rest: &'q str,
}

impl List<'_> {
    /// One page, forward-only or navigable as the request asks; notes the page as answered.
    /// `Err` is a refusal of the page parameters, sent as it is.
    fn page(
        &self,
        shared: &Shared,
        tenant: &TenantData,
        data: &TableData,
        headers: &HeaderMap,
    ) -> Result<Reply, Reply> {
        let query = self.query;
        let forward_only = headers
            .get("pagination-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("forward-only"));
        let base = format!("{}{}", shared.base_url(headers), self.path);
        let reply = if forward_only {
            forward_only_page(
                data,
                query,
                (&base, self.raw_query),
                shared.connectwise_link,
            )
        } else {
            navigable_page(data, query, &base, self.raw_query).map_err(|e| e.reply())?
        };
        let page_key = if forward_only {
            format!("fo:{:?}", query.page_id)
        } else {
            format!("nav:{}", query.page.as_deref().unwrap_or("1").trim())
        };
        let key = format!(
            "{}\n{}\n{}\n{page_key}\n{}",
            tenant.tenant.company_id,
            self.rest,
            query.conditions,
            query.page_size()
        );
        shared.note_page(key);
        Ok(reply)
    }
}

fn authenticate<'a>(
    shared: &'a Shared,
    headers: &HeaderMap,
) -> Result<&'a TenantData, &'static str> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .ok_or("Authorization header is missing")?
        .to_str()
        .map_err(|_| "Authorization header is not valid text")?;
    let encoded = auth
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, rest)| rest.trim())
        .ok_or("Authorization must use the Basic scheme")?;
    let decoded = decode_basic(encoded).ok_or("Authorization header is not valid base64")?;
    let (user, private_key) = decoded
        .split_once(':')
        .ok_or("Authorization credentials must be companyId+publicKey:privateKey")?;
    let (company_id, public_key) = user
        .split_once('+')
        .ok_or("Authorization credentials must be companyId+publicKey:privateKey")?;
    let client_id = headers
        .get("clientId")
        .and_then(|v| v.to_str().ok())
        .ok_or("clientId header is missing")?;
    shared
        .tenants
        .iter()
        .find(|t| {
            let t = &t.tenant;
            t.company_id == company_id
                && t.public_key == public_key
                && shared.private_key(t).expose() == private_key
                && t.client_id == client_id
        })
        .ok_or("The provided credentials or clientId are not valid for this server")
}

/// `base?raw_query` with parameter `key` (any case) replaced by (or set to) `value`.
fn link_to(base: &str, raw_query: &str, key: &str, value: i64) -> String {
    link_with(base, raw_query, |k| k.eq_ignore_ascii_case(key), key, value)
}

fn render_page(data: &TableData, rows: &[(i64, i64)]) -> Vec<u8> {
    let table = data.generator.table;
    let mut body = Vec::with_capacity(rows.len() * table.approx_record_bytes() + 2);
    body.push(b'[');
    for (n, &(id, lu)) in rows.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        render(
            &data.generator,
            (id - super::data::ID_BASE) as u64,
            lu,
            &mut body,
        );
    }
    body.push(b']');
    body
}

/// What forward-only pages carry in `Link` (`sandbox --connectwise-link`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CwLink {
    /// A next link on every full page; no `Link` header on the last (short) page.
    #[default]
    LastOmitted,
    /// A next link on every full page; an empty `Link` on the last page (as some clients expect).
    LastEmpty,
    /// No `Link` header on any page: the client must page on by the last id it got.
    Omitted,
}

fn forward_only_page(
    data: &TableData,
    query: &Query,
    (base, raw_query): (&str, &str),
    mode: CwLink,
) -> Reply {
    let size = query.page_size();
    let rows = data.page_after(query.bounds, query.page_id, size as usize);
    let link = match rows.last() {
        _ if mode == CwLink::Omitted => None,
        Some(&(last_id, _)) if rows.len() as u64 == size => Some(format!(
            "<{}>; rel=\"next\"",
            link_to(base, raw_query, "pageId", last_id)
        )),
        _ if mode == CwLink::LastEmpty => Some(String::new()),
        _ => None,
    };
    let reply = ok(render_page(data, &rows));
    match link {
        Some(link) => reply.header(header::LINK, link),
        None => reply,
    }
}

fn navigable_page(
    data: &TableData,
    query: &Query,
    base: &str,
    raw_query: &str,
) -> Result<Reply, QueryError> {
    let size = query.page_size();
    let page = match query.page.as_deref().map(str::trim) {
        None => 1,
        Some(text) => match text.parse::<i64>() {
            Ok(p) if p >= 1 => p as u64,
            _ => {
                let msg = format!("page must be an integer of 1 or more, got '{text}'");
                return Err(QueryError::param("page", msg));
            }
        },
    };
    let total = data.count(query.bounds);
    let last_page = total.div_ceil(size).max(1);
    let skip = (page - 1).saturating_mul(size);
    let rows = data.page_offset(query.bounds, skip, size as usize);
    let last = format!(
        "<{}>; rel=\"last\"",
        link_to(base, raw_query, "page", last_page as i64)
    );
    let link = if page < last_page {
        let next = link_to(base, raw_query, "page", page as i64 + 1);
        format!("<{next}>; rel=\"next\", {last}")
    } else {
        last
    };
    Ok(ok(render_page(data, &rows)).header(header::LINK, link))
}

/// A rejected query parameter, answered as ConnectWise's `InvalidObject` 400.
#[derive(Debug)]
struct QueryError {
    field: &'static str,
    summary: String,
    detail: String,
}

impl QueryError {
    fn param(field: &'static str, detail: String) -> QueryError {
        QueryError {
            field,
            summary: format!("{field} is invalid"),
            detail,
        }
    }

    fn condition(part: &str, detail: String) -> QueryError {
        QueryError {
            field: "conditions",
            summary: format!("conditions '{part}' is invalid"),
            detail,
        }
    }

    fn reply(self) -> Reply {
        let body = serde_json::json!({
            "code": "InvalidObject",
            "message": self.summary,
            "errors": [{
                "code": "InvalidValue",
                "message": self.detail,
                "resource": "query",
                "field": self.field,
            }],
        });
        Reply::refusal_json(StatusCode::BAD_REQUEST, CONTENT_TYPE, &body)
    }
}

/// The query parameters the sandbox understands.
#[derive(Debug)]
struct Query {
    conditions: String,
    bounds: Bounds,
    /// The value of the (first) `>=` clause, which fault plans match on.
    lower_bound: Option<i64>,
    /// Raw `page`: validated only in navigable mode, since forward-only ignores it.
    page: Option<String>,
    page_size: Option<u64>,
    page_id: Option<i64>,
}

impl Query {
    fn parse(raw: &str) -> Result<Query, QueryError> {
        let mut q = Query {
            conditions: String::new(),
            bounds: Bounds::ALL,
            lower_bound: None,
            page: None,
            page_size: None,
            page_id: None,
        };
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let int = |field: &'static str| {
                value.trim().parse::<i64>().map_err(|_| {
                    QueryError::param(field, format!("{field} must be an integer, got '{value}'"))
                })
            };
            if key.eq_ignore_ascii_case("conditions") {
                q.conditions = value.to_string();
            } else if key.eq_ignore_ascii_case("pageSize") {
                let n = int("pageSize")?;
                if n < 1 {
                    let msg = format!("pageSize must be between 1 and {MAX_PAGE_SIZE}, got {n}");
                    return Err(QueryError::param("pageSize", msg));
                }
                q.page_size = Some((n as u64).min(MAX_PAGE_SIZE));
            } else if key.eq_ignore_ascii_case("pageId") {
                q.page_id = Some(int("pageId")?);
            } else if key.eq_ignore_ascii_case("page") {
                q.page = Some(value.to_string());
            } else if key.eq_ignore_ascii_case("orderBy") {
                let normalized = value.split_whitespace().collect::<Vec<_>>().join(" ");
                if !(normalized.eq_ignore_ascii_case("id")
                    || normalized.eq_ignore_ascii_case("id asc"))
                {
                    let msg = format!("the sandbox only supports orderBy=id asc, got '{value}'");
                    return Err(QueryError::param("orderBy", msg));
                }
            }
        }
        let (bounds, lower_bound) = parse_conditions(&q.conditions)?;
        q.bounds = bounds;
        q.lower_bound = lower_bound;
        Ok(q)
    }

    fn page_size(&self) -> u64 {
        self.page_size.unwrap_or(DEFAULT_PAGE_SIZE)
    }
}

/// Parses `clause and clause ...` where each clause is `lastUpdated OP [yyyy-MM-ddTHH:mm:ssZ]`.
fn parse_conditions(text: &str) -> Result<(Bounds, Option<i64>), QueryError> {
    let mut bounds = Bounds::ALL;
    let mut lower_bound = None;
    if text.trim().is_empty() {
        return Ok((bounds, lower_bound));
    }
    let mut clauses: Vec<Vec<&str>> = vec![Vec::new()];
    for token in text.split_whitespace() {
        if token.eq_ignore_ascii_case("and") {
            clauses.push(Vec::new());
        } else if let Some(current) = clauses.last_mut() {
            current.push(token);
        }
    }
    for clause in clauses {
        let clause = clause.join(" ");
        if clause.is_empty() {
            let msg = "'and' must join two clauses".to_string();
            return Err(QueryError::condition(text.trim(), msg));
        }
        let (op, at) = parse_clause(&clause)?;
        match op {
            ">=" => {
                bounds.lo = bounds.lo.max(at);
                lower_bound.get_or_insert(at);
            }
            ">" => bounds.lo = bounds.lo.max(at.saturating_add(1)),
            "<" => bounds.hi = bounds.hi.min(at),
            "<=" => bounds.hi = bounds.hi.min(at.saturating_add(1)),
            _ => {
                bounds.lo = bounds.lo.max(at);
                bounds.hi = bounds.hi.min(at.saturating_add(1));
            }
        }
    }
    Ok((bounds, lower_bound))
}

fn parse_clause(clause: &str) -> Result<(&'static str, i64), QueryError> {
    let field_len = clause
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '/'))
        .unwrap_or(clause.len());
    let field = &clause[..field_len];
    if !(field.eq_ignore_ascii_case("lastUpdated")
        || field.eq_ignore_ascii_case("_info/lastUpdated"))
    {
        let msg = format!(
            "unsupported field '{field}': the sandbox filters on lastUpdated or _info/lastUpdated"
        );
        return Err(QueryError::condition(clause, msg));
    }
    let rest = clause[field_len..].trim_start();
    let Some(op) = [">=", "<=", ">", "<", "="]
        .into_iter()
        .find(|op| rest.starts_with(op))
    else {
        let msg = "expected one of the operators >=, >, <, <=, =".to_string();
        return Err(QueryError::condition(clause, msg));
    };
    let value = rest[op.len()..].trim();
    let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) else {
        let msg = format!("expected a date as [yyyy-MM-ddTHH:mm:ssZ], got '{value}'");
        return Err(QueryError::condition(clause, msg));
    };
    let at = NaiveDateTime::parse_from_str(inner.trim(), "%Y-%m-%dT%H:%M:%SZ")
        .map_err(|e| {
            let msg = format!("'{inner}' is not a UTC date as yyyy-MM-ddTHH:mm:ssZ: {e}");
            QueryError::condition(clause, msg)
        })?
        .and_utc()
        .timestamp();
    Ok((op, at))
}

#[cfg(test)]
mod fuzz {
    use chrono::DateTime;
    use proptest::prelude::*;

    use super::*;
    use crate::domain::Window;

    proptest! {
        /// Any query string is parsed or refused with an error, never a panic.
        #[test]
        fn any_query_string_is_parsed_or_refused(raw in "\\PC{0,200}") {
            let _ = Query::parse(&raw);
        }

        /// Near-misses of the conditions syntax are parsed or refused, never a panic.
        #[test]
        fn near_miss_conditions_are_parsed_or_refused(
            text in "(lastUpdated|_info/lastUpdated|id| and | or |>=|<=|<|>|=|\\[|\\]|[0-9]|T|Z|-|:| |é){0,40}",
        ) {
            let _ = parse_conditions(&text);
        }

        /// The client's window conditions read back as exactly its half-open window.
        #[test]
        fn the_clients_conditions_read_back_as_the_window(
            start in -2_000_000_000i64..4_000_000_000,
            len in 1i64..400_000_000,
        ) {
            let at = |s| DateTime::from_timestamp(s, 0).unwrap();
            let w = Window::new(at(start), at(start + len));
            let text = crate::sources::connectwise::window_conditions("lastUpdated", &w);
            let (bounds, lower) = parse_conditions(&text).unwrap();
            prop_assert_eq!((bounds.lo, bounds.hi, lower), (start, start + len, Some(start)));
        }

        /// Any `Link` header gives a page id or none, never a panic; a real one gives its id.
        #[test]
        fn link_headers_give_their_page_id(link in "\\PC{0,120}", id in 1u64..u64::MAX) {
            let _ = crate::sources::connectwise::next_page_id(&link);
            let real = format!("<https://x.test/v4_6_release/apis/3.0/service/tickets?pageSize=50&pageId={id}>; rel=\"next\"");
            prop_assert_eq!(crate::sources::connectwise::next_page_id(&real), Some(id.to_string()));
        }
    }
}
