//! The chunk cursor: compact JSON stored in the job store, so it must make sense to a new
//! process after a crash.
//!
//! - REST: `{"mode":"rest","next":"/services/data/v60.0/query/01g…-2000","after":{"ts":…,"id":…}}`:
//!   the query locator to follow, and the greatest `(SystemModstamp, Id)` inside the window
//!   delivered so far, for a keyset query when the locator is gone.
//! - Bulk: `{"mode":"bulk","job":"750…","locator":"MTAwMDA"}`: a job's results page, which
//!   can be fetched again for as long as the job exists.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::sources::SourceError;

/// The last record delivered inside the window.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct After {
    pub ts: DateTime<Utc>,
    pub id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum Cursor {
    Rest {
        next: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<After>,
        /// When the query being paged was sent, less a margin for clock skew: a record stamped
        /// at or after it was edited while the query was read (Salesforce sets
        /// `SystemModstamp` to the edit's time) and shows a time past its place in the
        /// query's order, so it does not move `after`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<DateTime<Utc>>,
    },
    Bulk {
        job: String,
        locator: String,
    },
}

/// Whether `s` is a path below `/services/data/` that the token may be sent to.
pub fn is_data_path(s: &str) -> bool {
    s.starts_with("/services/data/")
        && !s.contains("..")
        && !s.contains("//")
        && s.bytes().all(|b| b.is_ascii_graphic())
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'+' | b'/'))
}

impl Cursor {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a cursor always serializes")
    }

    pub fn decode(text: &str) -> Result<Cursor, SourceError> {
        let bad = |reason: String| {
            let shown: String = text.chars().take(200).collect();
            SourceError::Config(format!("invalid Salesforce cursor {shown:?}: {reason}"))
        };
        let cursor: Cursor = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        match &cursor {
            Cursor::Rest { next, after, .. } => {
                if !is_data_path(next) {
                    return Err(bad("next is not a /services/data/ path".into()));
                }
                if after.as_ref().is_some_and(|a| !is_token(&a.id)) {
                    return Err(bad("after.id is not a record Id".into()));
                }
            }
            Cursor::Bulk { job, locator } => {
                if !is_token(job) || !is_token(locator) || job.contains('/') {
                    return Err(bad("job and locator must be plain identifiers".into()));
                }
            }
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any stored cursor text is accepted or refused with an error that shows it, never a
        /// panic.
        #[test]
        fn any_cursor_text_is_accepted_or_named(text in "\\PC{0,120}") {
            if let Err(e) = Cursor::decode(&text) {
                let shown: String = text.chars().take(200).collect();
                proptest::prop_assert!(e.to_string().contains(&format!("{shown:?}")), "{}", e);
            }
        }
    }

    #[test]
    fn cursors_round_trip() {
        for c in [
            Cursor::Rest {
                next: "/services/data/v60.0/query/01gD000000ABCDE-2000".into(),
                after: Some(After {
                    ts: "2023-01-05T10:20:30Z".parse().unwrap(),
                    id: "001D000000IRFmaIAH".into(),
                }),
                since: Some("2023-01-06T00:00:00.123Z".parse().unwrap()),
            },
            Cursor::Rest {
                next: "/services/data/v60.0/query/01gD000000ABCDE-200".into(),
                after: None,
                since: None,
            },
            Cursor::Bulk {
                job: "750R0000000zlh9IAA".into(),
                locator: "MTAwMDA".into(),
            },
        ] {
            let text = c.encode();
            assert_eq!(Cursor::decode(&text).unwrap(), c, "{text}");
        }
        assert_eq!(
            Cursor::Bulk {
                job: "750x".into(),
                locator: "MTA".into()
            }
            .encode(),
            r#"{"mode":"bulk","job":"750x","locator":"MTA"}"#
        );
    }

    #[test]
    fn bad_cursors_are_config_errors_naming_the_cursor() {
        for bad in [
            "",
            "20931",
            r#"{"mode":"rest"}"#,
            r#"{"mode":"soap","next":"/services/data/x"}"#,
            r#"{"mode":"rest","next":"https://evil.example/services/data/v60.0/query/x"}"#,
            r#"{"mode":"rest","next":"/services/data/../../oauth2/token"}"#,
            r#"{"mode":"rest","next":"/services/data/v60.0/query/x","after":{"ts":"yesterday","id":"001"}}"#,
            r#"{"mode":"bulk","job":"750/../x","locator":"MTA"}"#,
            r#"{"mode":"bulk","job":"750","locator":"MTA","extra":1}"#,
        ] {
            match Cursor::decode(bad) {
                Err(SourceError::Config(m)) => {
                    assert!(m.contains("invalid Salesforce cursor"), "{m}")
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}
