//! Reading Salesforce responses: `Sforce-Limit-Info`, error arrays, the keys of a REST query
//! page (without building its records), and Bulk API 2.0 CSV turned into a JSON array.

use std::fmt;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::sources::{ApiUsage, SourceError};

/// `api-usage=18/5000` (optionally followed by `; per-app-api-usage=...`) → 18 of 5000 per day.
pub fn parse_limit_info(value: &str) -> Option<ApiUsage> {
    let usage = value
        .split([';', ','])
        .map(str::trim)
        .find_map(|part| part.strip_prefix("api-usage="))?;
    let (used, limit) = usage.split_once('/')?;
    let limit: u64 = limit
        .trim()
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()?;
    Some(ApiUsage {
        used: Some(used.trim().parse().ok()?),
        limit,
        period: Duration::from_secs(24 * 3600),
        resets_at: None,
    })
}

/// The org's daily allocation from a `/limits` answer: `DailyApiRequests` `Max` and
/// `Remaining` (a rolling 24 h window; no reset time is given).
pub fn parse_limits(body: &[u8]) -> Result<ApiUsage, SourceError> {
    #[derive(serde::Deserialize)]
    struct Daily {
        #[serde(rename = "Max")]
        max: u64,
        #[serde(rename = "Remaining")]
        remaining: u64,
    }
    #[derive(serde::Deserialize)]
    struct Limits {
        #[serde(rename = "DailyApiRequests")]
        daily: Daily,
    }
    let limits: Limits = serde_json::from_slice(body).map_err(|e| SourceError::Decode {
        message: format!("/limits: no DailyApiRequests Max and Remaining: {e}"),
        truncated: false,
    })?;
    Ok(ApiUsage {
        used: Some(limits.daily.max.saturating_sub(limits.daily.remaining)),
        limit: limits.daily.max,
        period: Duration::from_secs(24 * 3600),
        resets_at: None,
    })
}

/// An error answer: its status and the API's own `errorCode` and `message`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: Option<String>,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// `scrub` cleans a body that is not in an error format before it is cut short.
    pub fn from_body(
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
        scrub: impl Fn(&str) -> String,
    ) -> ApiError {
        #[derive(serde::Deserialize)]
        struct Item {
            message: Option<String>,
            #[serde(rename = "errorCode")]
            error_code: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct OAuth {
            error: String,
            error_description: Option<String>,
        }
        let (code, message) = if let Ok(items) = serde_json::from_slice::<Vec<Item>>(body)
            && !items.is_empty()
        {
            let code = items.iter().find_map(|i| i.error_code.clone());
            let message = items
                .into_iter()
                .map(|i| match (i.error_code, i.message) {
                    (Some(c), Some(m)) => format!("{c}: {}", m.trim()),
                    (Some(c), None) => c,
                    (None, m) => m.unwrap_or_default(),
                })
                .collect::<Vec<_>>()
                .join("; ");
            (code, message)
        } else if let Ok(o) = serde_json::from_slice::<OAuth>(body) {
            let message = match o.error_description {
                Some(d) => format!("{}: {d}", o.error),
                None => o.error.clone(),
            };
            (Some(o.error), message)
        } else {
            let text = crate::sources::body_excerpt(body, scrub);
            (
                None,
                if text.trim().is_empty() {
                    "(empty body)".into()
                } else {
                    text
                },
            )
        };
        ApiError {
            status,
            code,
            message,
            retry_after,
        }
    }

    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// The error in the API's own words (scrubbed), classified by `SourceError::from_status`.
    pub fn into_source(self, scrub: impl Fn(&str) -> String) -> SourceError {
        let message = scrub(&self.message);
        SourceError::from_status(self.status, self.code.as_deref(), message, self.retry_after)
    }
}

/// What the client needs from a REST query page; records stay in the body for the sink.
#[derive(Debug, Default, PartialEq)]
pub struct QueryPage {
    pub total_size: u64,
    pub done: bool,
    pub next_records_url: Option<String>,
    /// Each record's id and update time, as sent.
    pub keys: Vec<(Option<String>, Option<String>)>,
}

struct PageSeed<'a> {
    id: &'a str,
    stamp: &'a str,
}

enum PageKey {
    TotalSize,
    Done,
    Next,
    Records,
    Other,
}

impl<'de> Visitor<'de> for PageSeed<'_> {
    type Value = QueryPage;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a query result object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<QueryPage, A::Error> {
        let mut page = QueryPage::default();
        let (mut total, mut done, mut records) = (false, false, false);
        while let Some(key) = map.next_key_seed(KeySeed(|k: &str| match k {
            "totalSize" => PageKey::TotalSize,
            "done" => PageKey::Done,
            "nextRecordsUrl" => PageKey::Next,
            "records" => PageKey::Records,
            _ => PageKey::Other,
        }))? {
            match key {
                PageKey::TotalSize => {
                    page.total_size = map.next_value()?;
                    total = true;
                }
                PageKey::Done => {
                    page.done = map.next_value()?;
                    done = true;
                }
                PageKey::Next => page.next_records_url = map.next_value()?,
                PageKey::Records => {
                    page.keys = map.next_value_seed(RecordsSeed {
                        id: self.id,
                        stamp: self.stamp,
                    })?;
                    records = true;
                }
                PageKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        for (present, name) in [(total, "totalSize"), (done, "done"), (records, "records")] {
            if !present {
                return Err(de::Error::missing_field(name));
            }
        }
        Ok(page)
    }
}

/// Maps an object key to a small enum without allocating.
struct KeySeed<F>(F);

impl<'de, T, F: FnOnce(&str) -> T> DeserializeSeed<'de> for KeySeed<F> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        struct V<F>(F);
        impl<'de, T, F: FnOnce(&str) -> T> Visitor<'de> for V<F> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
                Ok((self.0)(v))
            }
        }
        d.deserialize_str(V(self.0))
    }
}

struct RecordsSeed<'a> {
    id: &'a str,
    stamp: &'a str,
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_> {
    type Value = Vec<(Option<String>, Option<String>)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_> {
    type Value = Vec<(Option<String>, Option<String>)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(k) = seq.next_element_seed(RecordSeed {
            id: self.id,
            stamp: self.stamp,
        })? {
            out.push(k);
        }
        Ok(out)
    }
}

struct RecordSeed<'a> {
    id: &'a str,
    stamp: &'a str,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = (Option<String>, Option<String>);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = (Option<String>, Option<String>);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut id, mut stamp) = (None, None);
        while let Some(which) = map.next_key_seed(KeySeed(|k: &str| {
            if k == self.id {
                1u8
            } else if k == self.stamp {
                2
            } else {
                0
            }
        }))? {
            match which {
                1 => id = map.next_value::<Option<String>>()?,
                2 => stamp = map.next_value::<Option<String>>()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((id, stamp))
    }
}

/// A 200 body that is not what the API documents. A body cut short or not JSON at all (a
/// gateway's HTML page) is worth another try, as the sink treats such pages; valid JSON of
/// the wrong shape is not.
pub fn decode_error(context: &str, e: serde_json::Error) -> SourceError {
    SourceError::Decode {
        message: format!("{context}: {e}"),
        truncated: e.is_eof() || e.is_syntax(),
    }
}

/// The rows of a `GROUP BY CALENDAR_YEAR(f), CALENDAR_MONTH(f)` count: `(year, month,
/// count)` from an aggregate result (`{"totalSize":N,"done":true,"records":[{"attributes":
/// {"type":"AggregateResult"},"expr0":2024,"expr1":3,"expr2":12}, ...]}`; unaliased items are
/// named `expr0`, `expr1`, ... in SELECT order). Aggregate queries have no more pages.
pub fn parse_monthly_counts(body: &[u8]) -> Result<Vec<(i32, u32, u64)>, SourceError> {
    #[derive(serde::Deserialize)]
    struct Row {
        expr0: i32,
        expr1: u32,
        expr2: u64,
    }
    #[derive(serde::Deserialize)]
    struct Result {
        done: bool,
        records: Vec<Row>,
    }
    let r: Result = serde_json::from_slice(body).map_err(|e| decode_error("grouped count", e))?;
    if !r.done {
        return Err(SourceError::Decode {
            message: "grouped count: done is false, aggregate results have no further pages".into(),
            truncated: false,
        });
    }
    if let Some(bad) = r.records.iter().find(|x| !(1..=12).contains(&x.expr1)) {
        return Err(SourceError::Decode {
            message: format!("grouped count: month {} of {}", bad.expr1, bad.expr0),
            truncated: false,
        });
    }
    Ok(r.records
        .into_iter()
        .map(|x| (x.expr0, x.expr1, x.expr2))
        .collect())
}

/// Reads the totals, paging fields and record keys of a REST query page.
pub fn parse_query_page(body: &[u8], id: &str, stamp: &str) -> Result<QueryPage, SourceError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = de
        .deserialize_map(PageSeed { id, stamp })
        .and_then(|p| de.end().map(|_| p));
    result.map_err(|e| decode_error("query result", e))
}

/// Why a Bulk API CSV result cannot be read as records.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("CSV header '{0}' is not a field path")]
    NotAPath(String),
    #[error("CSV header '{0}' appears twice")]
    Twice(String),
    #[error("CSV header: {0}")]
    Header(String),
    /// Record `n` (from 1) is malformed.
    #[error("CSV record {n}: {reason}")]
    Record { n: usize, reason: String },
}

enum Node {
    Leaf(usize),
    Object(Vec<(String, Node)>),
}

/// Nests dotted header names: `Owner.Name` becomes member `Name` of object `Owner`.
fn header_tree(headers: &csv::StringRecord) -> Result<Vec<(String, Node)>, CsvError> {
    let mut root: Vec<(String, Node)> = Vec::new();
    for (col, name) in headers.iter().enumerate() {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(CsvError::NotAPath(name.to_string()));
        }
        let mut level = &mut root;
        for (depth, part) in parts.iter().enumerate() {
            let last = depth + 1 == parts.len();
            let pos = level.iter().position(|(n, _)| n == part);
            match (pos, last) {
                (None, true) => {
                    level.push((part.to_string(), Node::Leaf(col)));
                }
                (None, false) => {
                    level.push((part.to_string(), Node::Object(Vec::new())));
                    let Some((_, Node::Object(children))) = level.last_mut() else {
                        unreachable!("just pushed an object")
                    };
                    level = children;
                }
                (Some(p), false) if matches!(level[p].1, Node::Object(_)) => {
                    let Node::Object(children) = &mut level[p].1 else {
                        unreachable!("checked")
                    };
                    level = children;
                }
                (Some(_), _) => return Err(CsvError::Twice(name.to_string())),
            }
        }
    }
    Ok(root)
}

fn write_object(out: &mut Vec<u8>, nodes: &[(String, Node)], row: &csv::StringRecord) {
    out.push(b'{');
    for (n, (name, node)) in nodes.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, name).expect("writing to a Vec cannot fail");
        out.push(b':');
        match node {
            Node::Leaf(col) => match row.get(*col) {
                Some(v) if !v.is_empty() => {
                    serde_json::to_writer(&mut *out, v).expect("writing to a Vec cannot fail")
                }
                _ => out.extend_from_slice(b"null"),
            },
            Node::Object(children) => write_object(out, children, row),
        }
    }
    out.push(b'}');
}

/// Bulk API 2.0 CSV (header row, comma-separated, quoted as needed) → a JSON array of
/// records: values stay strings, an empty field is null, `Owner.Name` nests as
/// `{"Owner":{"Name":..}}` so flattening names it `Owner__Name`. Returns the JSON and the
/// number of records.
pub fn csv_to_json(body: &[u8]) -> Result<(Vec<u8>, usize), CsvError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(body);
    let mut out = Vec::with_capacity(body.len() + body.len() / 2 + 2);
    out.push(b'[');
    let headers = reader
        .headers()
        .map_err(|e| CsvError::Header(e.to_string()))?
        .clone();
    if headers.is_empty() {
        out.push(b']');
        return Ok((out, 0));
    }
    let tree = header_tree(&headers)?;
    let mut row = csv::StringRecord::new();
    let mut n = 0;
    while reader.read_record(&mut row).map_err(|e| CsvError::Record {
        n: n + 1,
        reason: e.to_string(),
    })? {
        if n > 0 {
            out.push(b',');
        }
        write_object(&mut out, &tree, &row);
        n += 1;
    }
    out.push(b']');
    Ok((out, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_info_gives_daily_usage() {
        let u = parse_limit_info("api-usage=18/5000").unwrap();
        assert_eq!(
            u,
            ApiUsage {
                used: Some(18),
                limit: 5000,
                period: Duration::from_secs(86_400),
                resets_at: None
            }
        );
        let u =
            parse_limit_info("api-usage=25/15000; per-app-api-usage=17/250(appName=x)").unwrap();
        assert_eq!((u.used, u.limit), (Some(25), 15000));
        assert_eq!(
            parse_limit_info("per-app-api-usage=17/250(appName=x)"),
            None,
            "the per-app figure is not the org's"
        );
        assert_eq!(parse_limit_info("api-usage=x/5000"), None);
        assert_eq!(parse_limit_info(""), None);
    }

    #[test]
    fn limits_give_the_daily_allocation() {
        let body = br#"{"ConcurrentAsyncGetReportInstances":{"Max":200,"Remaining":200},
            "DailyApiRequests":{"Max":15000,"Remaining":3000,"Ant Migration Tool":{"Max":0,"Remaining":0}}}"#;
        let u = parse_limits(body).unwrap();
        assert_eq!((u.used, u.limit), (Some(12_000), 15_000));
        assert_eq!(u.period, Duration::from_secs(24 * 3600));
        let e = parse_limits(br#"{"DailyBulkApiBatches":{"Max":1,"Remaining":1}}"#).unwrap_err();
        assert!(e.to_string().contains("DailyApiRequests"), "{e}");
    }

    #[test]
    fn error_arrays_give_code_and_message() {
        let body = br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
        let e = ApiError::from_body(403, body, None, str::to_string);
        assert!(e.has_code("REQUEST_LIMIT_EXCEEDED"));
        match e.into_source(str::to_string) {
            SourceError::QuotaExhausted {
                status: 403,
                message,
            } => assert_eq!(
                message,
                "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."
            ),
            other => panic!("the daily total is the quota, not a rate: {other:?}"),
        }
        let body = br#"[{"message":"ConcurrentRequests (Concurrent API Requests) Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
        assert!(matches!(
            ApiError::from_body(403, body, None, str::to_string).into_source(str::to_string),
            SourceError::RateLimited { status: 403, .. }
        ));
        // A 403 for anything else is a plain error.
        let body = br#"[{"message":"The REST API is not enabled for this Organization.","errorCode":"API_DISABLED_FOR_ORG"}]"#;
        assert!(matches!(
            ApiError::from_body(403, body, None, str::to_string).into_source(str::to_string),
            SourceError::Http { status: 403, .. }
        ));
        let e = ApiError::from_body(
            429,
            b"slow down",
            Some(Duration::from_secs(3)),
            str::to_string,
        );
        assert!(matches!(
            e.into_source(str::to_string),
            SourceError::RateLimited { status: 429, retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        let body =
            br#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;
        let e = ApiError::from_body(401, body, None, str::to_string).into_source(str::to_string);
        assert_eq!(
            e.to_string(),
            "HTTP 401: INVALID_SESSION_ID: Session expired or invalid"
        );
        let body = br#"{"error":"invalid_grant","error_description":"authentication failure"}"#;
        let e = ApiError::from_body(400, body, None, str::to_string);
        assert_eq!(e.code.as_deref(), Some("invalid_grant"));
        assert_eq!(e.message, "invalid_grant: authentication failure");
        let e = ApiError::from_body(503, b"<html>down</html>", None, str::to_string);
        assert_eq!((e.code, e.message.as_str()), (None, "<html>down</html>"));
        let e = ApiError::from_body(
            500,
            br#"[{"message":"x secret-value y","errorCode":"E"}]"#,
            None,
            str::to_string,
        )
        .into_source(|m| m.replace("secret-value", "***"));
        assert_eq!(e.to_string(), "HTTP 500: E: x *** y");
    }

    #[test]
    fn query_pages_yield_paging_fields_and_keys_only() {
        let body = br#"{"totalSize":3,"done":false,"nextRecordsUrl":"/services/data/v60.0/query/01gX-2",
            "records":[{"attributes":{"type":"Account","url":"/x"},"Id":"001A","Name":"A","SystemModstamp":"2013-05-20T20:49:32.000+0000","Owner":{"Name":"x","Id":"005"}},
                       {"Id":"001B","SystemModstamp":null}]}"#;
        let p = parse_query_page(body, "Id", "SystemModstamp").unwrap();
        assert_eq!(p.total_size, 3);
        assert!(!p.done);
        assert_eq!(
            p.next_records_url.as_deref(),
            Some("/services/data/v60.0/query/01gX-2")
        );
        assert_eq!(
            p.keys,
            vec![
                (
                    Some("001A".into()),
                    Some("2013-05-20T20:49:32.000+0000".into())
                ),
                (Some("001B".into()), None)
            ]
        );
        let cut = parse_query_page(&body[..body.len() / 2], "Id", "SystemModstamp").unwrap_err();
        assert!(
            matches!(
                cut,
                SourceError::Decode {
                    truncated: true,
                    ..
                }
            ),
            "{cut:?}"
        );
        // A gateway's HTML page is worth another try; JSON of the wrong shape is not.
        let html = parse_query_page(b"<html>", "Id", "SystemModstamp").unwrap_err();
        assert!(html.is_retryable(), "{html:?}");
        let shape = br#"{"totalSize":"many","done":true,"records":[]}"#;
        let shape = parse_query_page(shape, "Id", "SystemModstamp").unwrap_err();
        assert!(!shape.is_retryable(), "{shape:?}");
        let missing = parse_query_page(br#"{"done":true}"#, "Id", "SystemModstamp").unwrap_err();
        assert!(missing.to_string().contains("totalSize"), "{missing}");
    }

    #[test]
    fn csv_becomes_a_json_array_of_string_records() {
        let body = "\"Id\",\"Name\",\"Owner.Name\",\"Owner.Id\",\"AnnualRevenue\",\"Description\"\n\
                    \"001A\",\"Acme, \"\"Inc.\"\"\",\"Jane Dunn\",\"005X\",\"350000.0\",\"line 1\nline 2, more\"\n\
                    \"001B\",\"Zoë\",\"\",\"\",\"\",\"\"\n";
        let (json, n) = csv_to_json(body.as_bytes()).unwrap();
        assert_eq!(n, 2);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"Id":"001A","Name":"Acme, \"Inc.\"","Owner":{"Name":"Jane Dunn","Id":"005X"},
                 "AnnualRevenue":"350000.0","Description":"line 1\nline 2, more"},
                {"Id":"001B","Name":"Zoë","Owner":{"Name":null,"Id":null},
                 "AnnualRevenue":null,"Description":null}
            ])
        );
        // Unquoted CSV and CRLF line endings read the same.
        let (json, n) = csv_to_json(b"Id,Name\r\n001A,Acme\r\n").unwrap();
        assert_eq!(
            (json.as_slice(), n),
            (br#"[{"Id":"001A","Name":"Acme"}]"#.as_slice(), 1)
        );
        assert_eq!(csv_to_json(b"\"Id\"\n").unwrap(), (b"[]".to_vec(), 0));
        assert_eq!(csv_to_json(b"").unwrap(), (b"[]".to_vec(), 0));
        // A row cut short, a repeated header, a name that is both a value and an object.
        assert!(csv_to_json(b"Id,Name\n001A\n").is_err());
        assert!(csv_to_json(b"Id,Owner.Name,Owner.Name\n1,2,3\n").is_err());
        assert!(csv_to_json(b"Id,Owner,Owner.Name\n1,2,3\n").is_err());
    }
}
