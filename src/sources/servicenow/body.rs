//! The Table API's list answers: the paging keys read from a body (`read_page`), the body
//! without the leading records already read (`drop_leading_records`), and whether a 404 is
//! the API's own answer (`is_envelope`), its error message and its rate-limit headers.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use chrono::DateTime;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::{Cursor, SN_TIME, is_sys_id, parse_time};
use crate::config::EndpointDef;
use crate::domain::{RecordsAt, Window};
use crate::sources::{ApiUsage, Page, SourceError, body_excerpt};

/// `body` (`{"result":[...]}`) without the first `n` records of `result`: cut out of the
/// bytes when the body starts as ServiceNow writes it, else rebuilt.
pub(super) fn drop_leading_records(body: &[u8], n: usize) -> Result<Vec<u8>, serde_json::Error> {
    if n == 0 {
        return Ok(body.to_vec());
    }
    if let Some(cut) = leading_records_end(body, n) {
        let mut out = Vec::with_capacity(body.len());
        out.extend_from_slice(&body[..cut.0]);
        out.extend_from_slice(&body[cut.1..]);
        return Ok(out);
    }
    let mut v: serde_json::Value = serde_json::from_slice(body)?;
    if let Some(rows) = v.get_mut("result").and_then(|r| r.as_array_mut()) {
        rows.drain(..n.min(rows.len()));
    }
    serde_json::to_vec(&v)
}

/// Where the `result` array's records start and where its `n + 1`-th starts (or `]`), for
/// a body beginning `{"result":[`.
pub(super) fn leading_records_end(body: &[u8], n: usize) -> Option<(usize, usize)> {
    let skip_ws = |at: &mut usize| {
        while body.get(*at).is_some_and(u8::is_ascii_whitespace) {
            *at += 1;
        }
    };
    let mut at = 0;
    for token in [&b"{"[..], b"\"result\"", b":", b"["] {
        skip_ws(&mut at);
        if !body.get(at..)?.starts_with(token) {
            return None;
        }
        at += token.len();
    }
    let start = at;
    for _ in 0..n {
        let mut one = serde_json::Deserializer::from_slice(body.get(at..)?)
            .into_iter::<serde::de::IgnoredAny>();
        one.next()?.ok()?;
        at += one.byte_offset();
        skip_ws(&mut at);
        match body.get(at) {
            Some(b',') => at += 1,
            Some(b']') => {}
            _ => return None,
        }
    }
    skip_ws(&mut at);
    Some((start, at))
}

/// The API's own words from `{"error":{"message","detail"}}`, else the start of the body,
/// scrubbed by `scrub` before it is cut.
pub(crate) fn error_message(body: &[u8], scrub: impl Fn(&str) -> String) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        error: Option<ErrorBody>,
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        message: Option<String>,
        detail: Option<String>,
    }
    let raw = || body_excerpt(body, &scrub);
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            error: Some(ErrorBody { message, detail }),
        }) => {
            let message = message.unwrap_or_default();
            match detail.filter(|d| !d.is_empty()) {
                Some(d) if !message.is_empty() => format!("{message}: {d}"),
                Some(d) => d,
                None if message.is_empty() => raw(),
                None => message,
            }
        }
        _ => raw(),
    }
}

/// True when a body is ServiceNow's error envelope (so a 404 is the API's "No Record
/// found", not some other server's page).
pub(super) fn is_envelope(body: &[u8]) -> bool {
    serde_json::from_slice::<std::collections::HashMap<Cow<'_, str>, serde::de::IgnoredAny>>(body)
        .is_ok_and(|members| members.contains_key("error"))
}

/// `X-RateLimit-Limit` (requests per hour), `X-RateLimit-Remaining` when sent (the hour's
/// budget left: used = limit − remaining) and `X-RateLimit-Reset` (UNIX seconds).
pub(crate) fn usage_from(headers: &HeaderMap) -> Option<ApiUsage> {
    let text = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    let limit = text("x-ratelimit-limit")?.parse::<u64>().ok()?;
    let used = text("x-ratelimit-remaining")
        .and_then(|s| s.parse::<u64>().ok())
        .map(|left| limit.saturating_sub(left));
    let resets_at = text("x-ratelimit-reset")
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| DateTime::from_timestamp(s, 0));
    Some(ApiUsage {
        used,
        limit,
        period: Duration::from_secs(3600),
        resets_at,
    })
}

/// The keys of one record; every other field is skipped without being built.
#[derive(Deserialize)]
struct Keys<'a> {
    #[serde(borrow, default)]
    sys_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sys_updated_on: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sys_created_on: Option<Cow<'a, str>>,
}

/// The keys of every record of a `result` array, in order.
struct Tail<'a> {
    keys: Vec<Keys<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Tail<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Tail<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of records")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut tail = Tail { keys: Vec::new() };
                while let Some(keys) = seq.next_element::<Keys<'a>>()? {
                    tail.keys.push(keys);
                }
                Ok(tail)
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct ListBody<'a> {
    #[serde(borrow)]
    result: Tail<'a>,
}

/// What a list body says about paging.
#[derive(Debug)]
pub(super) struct PageKeys {
    pub(super) count: usize,
    /// The pair of the last record.
    pub(super) last: Option<Cursor>,
    /// How many leading records are at or before the request's cursor (already read).
    pub(super) repeated: usize,
}

/// Reads a list body: the number of records, the cursor after the last one, and how many
/// leading records `cursor` already covers.
pub(super) fn read_page(
    body: &[u8],
    endpoint: &EndpointDef,
    window: &Window,
    cursor: Option<&Cursor>,
) -> Result<PageKeys, SourceError> {
    let parsed: ListBody<'_> = serde_json::from_slice(body).map_err(|e| SourceError::Decode {
        message: format!("{}: not a {{\"result\":[...]}} body: {e}", endpoint.path),
        truncated: e.is_eof(),
    })?;
    let keys = parsed.result.keys;
    let repeated = match cursor {
        Some(c) => keys
            .iter()
            .take_while(|k| record_pair(k, endpoint).is_ok_and(|p| p <= *c))
            .count(),
        None => 0,
    };
    let Some(last) = keys.last() else {
        return Ok(PageKeys {
            count: 0,
            last: None,
            repeated,
        });
    };
    let last = record_pair(last, endpoint)?;
    if !window.contains(last.updated.and_utc()) {
        return Err(SourceError::Decode {
            message: format!(
                "{}: a record updated at {} is outside the window {window}: the query was not applied",
                endpoint.path,
                last.updated.format(SN_TIME)
            ),
            truncated: false,
        });
    }
    Ok(PageKeys {
        count: keys.len(),
        last: Some(last),
        repeated,
    })
}

/// A record's (time, `sys_id`) pair, checked.
fn record_pair(keys: &Keys<'_>, endpoint: &EndpointDef) -> Result<Cursor, SourceError> {
    let decode = |message: String| SourceError::Decode {
        message: format!("{}: {message}", endpoint.path),
        truncated: false,
    };
    let time = match endpoint.query_field() {
        "sys_created_on" => keys.sys_created_on.as_deref(),
        _ => keys.sys_updated_on.as_deref(),
    };
    let time =
        time.ok_or_else(|| decode(format!("the last record has no {}", endpoint.query_field())))?;
    let updated = parse_time(time).ok_or_else(|| {
        decode(format!(
            "{} '{}' is not 'YYYY-MM-DD HH:MM:SS'",
            endpoint.query_field(),
            time.escape_default()
        ))
    })?;
    let id = keys
        .sys_id
        .as_deref()
        .ok_or_else(|| decode("the last record has no sys_id".into()))?;
    if !is_sys_id(id) {
        return Err(decode(format!(
            "sys_id '{}' is not 32 hexadecimal characters",
            id.escape_default()
        )));
    }
    Ok(Cursor {
        updated,
        sys_id: id.to_string(),
    })
}

/// A list answer and what it says about paging.
pub(super) struct List {
    pub(super) body: crate::sources::Body,
    pub(super) keys: PageKeys,
    pub(super) usage: Option<ApiUsage>,
    /// The size of the answer as it came.
    pub(super) bytes: usize,
}

impl List {
    /// The page handed on: without the leading records already read.
    pub(super) fn page(
        self,
        next: Option<String>,
        endpoint: &EndpointDef,
    ) -> Result<Page, SourceError> {
        let body = if self.keys.repeated == 0 {
            self.body
        } else {
            let kept = drop_leading_records(&self.body, self.keys.repeated).map_err(|e| {
                SourceError::Decode {
                    message: format!("{}: {e}", endpoint.path),
                    truncated: false,
                }
            })?;
            bytes::Bytes::from(kept).into()
        };
        Ok(Page {
            bytes: self.bytes,
            body,
            records_at: RecordsAt::Member("result"),
            next,
            usage: self.usage,
        })
    }
}
