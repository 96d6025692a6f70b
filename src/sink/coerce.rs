//! Value coercions from the loosely typed JSON the APIs send to the declared column types.
//!
//! Every function returns `Ok(None)` for JSON null and for `""` in a non-string column, and
//! `Err(Mismatch)` (the JSON type found and the type expected) for anything it cannot read.

use super::lite::Json;
use chrono::{Datelike, NaiveDate};

/// Days from 0001-01-01 (CE) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// The JSON type name of a value, as shown in error messages.
pub(crate) fn json_type(v: &Json<'_>) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::I64(_) | Json::U64(_) | Json::F64(_) => "number",
        Json::Str(_) => "string",
        Json::Arr(_) => "array",
        Json::Obj(_) => "object",
    }
}

/// The JSON text of a value, cut to at most 80 characters.
pub(crate) fn snippet(v: &Json<'_>) -> String {
    const MAX: usize = 80;
    let text = v.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A value that does not fit the expected type: the type expected, the JSON type found and
/// (the start of) the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found} {snippet}")]
pub(crate) struct Mismatch {
    expected: &'static str,
    found: &'static str,
    snippet: String,
}

pub(crate) fn mismatch(expected: &'static str, v: &Json<'_>) -> Mismatch {
    Mismatch {
        expected,
        found: json_type(v),
        snippet: snippet(v),
    }
}

pub(crate) fn to_i64(v: &Json<'_>) -> Result<Option<i64>, Mismatch> {
    match v {
        Json::Null => Ok(None),
        Json::I64(n) => Ok(Some(*n)),
        Json::Str(s) if s.is_empty() => Ok(None),
        Json::Str(s) => s.parse::<i64>().map(Some).map_err(|_| mismatch("int64", v)),
        _ => Err(mismatch("int64", v)),
    }
}

pub(crate) fn to_f64(v: &Json<'_>) -> Result<Option<f64>, Mismatch> {
    match v {
        Json::Null => Ok(None),
        Json::I64(n) => Ok(Some(*n as f64)),
        Json::U64(n) => Ok(Some(*n as f64)),
        Json::F64(n) => Ok(Some(*n)),
        Json::Str(s) if s.is_empty() => Ok(None),
        Json::Str(s) => s
            .parse::<f64>()
            .map(Some)
            .map_err(|_| mismatch("float64", v)),
        _ => Err(mismatch("float64", v)),
    }
}

pub(crate) fn to_bool(v: &Json<'_>) -> Result<Option<bool>, Mismatch> {
    match v {
        Json::Null => Ok(None),
        Json::Bool(b) => Ok(Some(*b)),
        Json::Str(s) if s.is_empty() => Ok(None),
        Json::Str(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Json::Str(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        _ => Err(mismatch("bool", v)),
    }
}

pub(crate) fn to_timestamp(v: &Json<'_>) -> Result<Option<i64>, Mismatch> {
    match v {
        Json::Null => Ok(None),
        Json::Str(s) if s.is_empty() => Ok(None),
        Json::Str(s) => parse_timestamp_micros(s).map(Some).ok_or_else(|| {
            mismatch(
                "timestamp (RFC 3339, '2013-05-20T20:49:32.000+0000' or 'YYYY-MM-DD HH:MM:SS' UTC)",
                v,
            )
        }),
        _ => Err(mismatch("timestamp", v)),
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

/// Parses `YYYY-MM-DD[T ]HH:MM:SS[.fraction][Z|±HH:MM|±HHMM|±HH]` into microseconds since
/// the epoch, UTC. Without a zone the time is read as UTC. Digits past microseconds are cut.
pub(crate) fn parse_timestamp_micros(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;

    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                micros = micros * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..6 {
            micros *= 10;
        }
    }

    let offset_secs: i64 = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let rest = &b[i + 1..];
            let (h, m) = match rest.len() {
                2 => (digits(rest)?, 0),
                4 => (digits(&rest[0..2])?, digits(&rest[2..4])?),
                5 if rest[2] == b':' => (digits(&rest[0..2])?, digits(&rest[3..5])?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let secs = i64::from(h * 3600 + m * 60);
            if sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };

    let days = i64::from(date.num_days_from_ce()) - UNIX_EPOCH_DAYS_FROM_CE;
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    Some(secs * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    /// `json!` built as the sink's borrowed tree.
    macro_rules! json {
        ($($t:tt)+) => {
            crate::sink::lite::lite(serde_json::json!($($t)+))
        };
    }

    fn micros(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
            .timestamp_micros()
    }

    #[test]
    fn timestamps_in_every_source_format() {
        let want = micros("2013-05-20T20:49:32Z");
        assert_eq!(parse_timestamp_micros("2013-05-20T20:49:32Z"), Some(want));
        assert_eq!(
            parse_timestamp_micros("2013-05-20T20:49:32.000+0000"),
            Some(want)
        );
        assert_eq!(parse_timestamp_micros("2013-05-20 20:49:32"), Some(want));
        assert_eq!(
            parse_timestamp_micros("2013-05-20T22:49:32+02:00"),
            Some(want)
        );
        assert_eq!(parse_timestamp_micros("2013-05-20T18:49:32-02"), Some(want));
        assert_eq!(
            parse_timestamp_micros("2013-05-20T20:49:32.1234567Z"),
            Some(want + 123_456)
        );
        assert_eq!(
            parse_timestamp_micros("1969-12-31T23:59:59.5Z"),
            Some(-500_000)
        );
        for bad in [
            "2013-05-20",
            "2013-02-30T00:00:00Z",
            "2013-05-20T24:00:00Z",
            "2013-05-20T20:49:32.Z",
            "2013-05-20T20:49:32Zx",
            "2013-05-20T20:49:32+0",
            "20130520T204932Z",
            "yesterday at noon",
        ] {
            assert_eq!(parse_timestamp_micros(bad), None, "{bad}");
        }
    }

    #[test]
    fn coercions_accept_strings_and_refuse_other_types() {
        assert_eq!(to_i64(&json!("42")), Ok(Some(42)));
        assert_eq!(to_i64(&json!(42)), Ok(Some(42)));
        assert_eq!(to_i64(&json!("")), Ok(None));
        assert!(
            to_i64(&json!(1.5))
                .unwrap_err()
                .to_string()
                .contains("found number 1.5")
        );
        assert_eq!(to_f64(&json!("2.5")), Ok(Some(2.5)));
        assert_eq!(to_f64(&json!(3)), Ok(Some(3.0)));
        assert_eq!(to_bool(&json!("true")), Ok(Some(true)));
        assert_eq!(to_bool(&json!(false)), Ok(Some(false)));
        assert_eq!(to_bool(&json!("")), Ok(None));
        assert!(
            to_bool(&json!("yes"))
                .unwrap_err()
                .to_string()
                .contains("expected bool")
        );
        assert_eq!(to_timestamp(&json!("")), Ok(None));
        assert!(
            to_timestamp(&json!(12))
                .unwrap_err()
                .to_string()
                .contains("found number")
        );
    }

    #[test]
    fn snippets_are_cut_at_80_characters() {
        let long = json!("é".repeat(200));
        let s = snippet(&long);
        assert_eq!(s.chars().count(), 81);
        assert!(s.ends_with('…'));
    }
}
