//! Reading the engine's logs of one job, wherever they are: one `LogSource` trait, read by
//! the CLI's `logs` command and the console alike, with a reader for the workspace's
//! `logs/engine.jsonl` (`local`) and one for CloudWatch Logs (`cloud::logs`).
//!
//! Both hold the same lines: the engine's tracing events as flat JSON objects
//! (`timestamp`, `level`, `message`, then fields such as `job_id`, `table`, `seq`, `chunk`).

pub mod local;

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

pub use local::LocalLogSource;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "trace" => Ok(Level::Trace),
            "debug" => Ok(Level::Debug),
            "info" => Ok(Level::Info),
            "warn" | "warning" => Ok(Level::Warn),
            "error" => Ok(Level::Error),
            _ => Err(format!(
                "unknown log level '{s}' (expected trace, debug, info, warn or error)"
            )),
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        })
    }
}

/// One chunk of a job, as `TABLE#SEQ` on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    pub table: String,
    pub seq: u32,
}

impl FromStr for ChunkRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not a chunk like tickets#3 (table, '#', sequence number)");
        let (table, seq) = s.rsplit_once('#').ok_or_else(bad)?;
        if table.is_empty() {
            return Err(bad());
        }
        Ok(ChunkRef {
            table: table.to_string(),
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// Which lines to read: one job, optionally one of its chunks, at or above a level.
#[derive(Clone, Debug)]
pub struct LogQuery {
    /// Empty: every line, whatever job it names (the console following the whole local
    /// file). CloudWatch Logs is only ever read for one job.
    pub job_id: String,
    pub chunk: Option<ChunkRef>,
    pub min_level: Level,
}

impl LogQuery {
    pub fn job(job_id: &str) -> Self {
        LogQuery {
            job_id: job_id.to_string(),
            chunk: None,
            min_level: Level::Trace,
        }
    }

    /// Every line of the log, with or without a job.
    pub fn every_job() -> Self {
        LogQuery::job("")
    }
}

/// One log line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogLine {
    pub timestamp: Option<DateTime<Utc>>,
    pub level: Level,
    pub message: String,
    /// Every other field of the event (`job_id`, `table`, `seq`, `records`...).
    pub fields: Map<String, Value>,
    /// Where it was read: the CloudWatch log stream (`{job_id}/{worker}`); none for a local file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl LogLine {
    /// Reads one JSON line of the engine's log; `None` for anything else.
    pub fn parse(line: &str) -> Option<LogLine> {
        let Value::Object(mut fields) = serde_json::from_str::<Value>(line.trim()).ok()? else {
            return None;
        };
        let level = fields
            .remove("level")
            .and_then(|l| l.as_str().and_then(|s| s.parse().ok()))?;
        let message = match fields.remove("message") {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let timestamp = fields
            .remove("timestamp")
            .and_then(|t| {
                t.as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            })
            .map(|t| t.with_timezone(&Utc));
        fields.remove("target");
        Some(LogLine {
            timestamp,
            level,
            message,
            fields,
            origin: None,
        })
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }

    /// The job the line is about: its `job_id` field, else the job of its `chunk` field
    /// (`{job_id}/{table}#{seq}`).
    pub fn job_id(&self) -> Option<&str> {
        self.text("job_id").or_else(|| {
            self.text("chunk")
                .and_then(|c| c.split_once('/').map(|(j, _)| j))
        })
    }

    /// The chunk the line is about: `table` and `seq` fields, else the `chunk` field.
    pub fn chunk(&self) -> Option<ChunkRef> {
        if let (Some(table), Some(seq)) = (
            self.text("table"),
            self.fields.get("seq").and_then(Value::as_u64),
        ) {
            return Some(ChunkRef {
                table: table.to_string(),
                seq: u32::try_from(seq).ok()?,
            });
        }
        let (_, rest) = self.text("chunk")?.split_once('/')?;
        rest.parse().ok()
    }

    pub fn matches(&self, q: &LogQuery) -> bool {
        self.level >= q.min_level
            && (q.job_id.is_empty() || self.job_id() == Some(q.job_id.as_str()))
            && q.chunk
                .as_ref()
                .is_none_or(|c| self.chunk().as_ref() == Some(c))
    }

    /// `2026-01-01T10:00:00.123Z INFO  chunk succeeded  job_id=… table=tickets seq=0 …`
    pub fn render(&self) -> String {
        let ts = self
            .timestamp
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_else(|| "-".into());
        let mut out = format!("{ts} {:<5} {}", self.level.to_string(), self.message);
        for (k, v) in &self.fields {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(&format!("  {k}={v}"));
        }
        if let Some(origin) = &self.origin {
            out.push_str(&format!("  [{origin}]"));
        }
        out
    }
}

/// Where a reader stopped, so the next read (`--follow`) returns only newer lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogCursor {
    /// Local files: bytes already read.
    pub(crate) offset: u64,
    /// Local files: a first read happened (a tailing reader starts near the end only once).
    pub(crate) started: bool,
    /// CloudWatch: the newest event time read (ms since the epoch), and the ids of the events
    /// read at that millisecond (a later query starts there again and skips them).
    pub(crate) after_ms: i64,
    pub(crate) seen: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Remote(String),
}

/// Reads one job's log lines from wherever its runners wrote them.
#[async_trait]
pub trait LogSource: Send + Sync {
    /// The lines matching `query` written after `cursor` (the beginning when new), oldest
    /// first; moves `cursor` past them, so calling again follows the log.
    async fn read(
        &self,
        query: &LogQuery,
        cursor: &mut LogCursor,
    ) -> Result<Vec<LogLine>, LogError>;

    /// Where the lines come from, for messages (`logs/engine.jsonl`, `CloudWatch Logs group …`).
    fn describe(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK_DONE: &str = r#"{"timestamp":"2026-01-01T10:00:00.123456Z","level":"INFO","message":"chunk succeeded","job_id":"j1","table":"tickets","seq":2,"records":40,"target":"avesa_console::engine::executor"}"#;
    const LEASE: &str = r#"{"timestamp":"2026-01-01T10:00:01Z","level":"WARN","message":"lease lost","chunk":"j1/time_entries#0"}"#;

    #[test]
    fn lines_name_their_job_and_chunk_either_way() {
        let a = LogLine::parse(CHUNK_DONE).unwrap();
        assert_eq!(a.job_id(), Some("j1"));
        assert_eq!(a.chunk(), Some("tickets#2".parse().unwrap()));
        assert!(!a.fields.contains_key("target"));
        let b = LogLine::parse(LEASE).unwrap();
        assert_eq!(b.job_id(), Some("j1"));
        assert_eq!(b.chunk(), Some("time_entries#0".parse().unwrap()));
        assert_eq!(b.level, Level::Warn);
        assert!(LogLine::parse("not json").is_none());
        assert!(LogLine::parse(r#"{"message":"no level"}"#).is_none());
    }

    #[test]
    fn queries_filter_by_job_chunk_and_level() {
        let a = LogLine::parse(CHUNK_DONE).unwrap();
        let b = LogLine::parse(LEASE).unwrap();
        let mut q = LogQuery::job("j1");
        assert!(a.matches(&q) && b.matches(&q));
        q.min_level = Level::Warn;
        assert!(!a.matches(&q) && b.matches(&q));
        q.min_level = Level::Info;
        q.chunk = Some("tickets#2".parse().unwrap());
        assert!(a.matches(&q) && !b.matches(&q));
        assert!(!a.matches(&LogQuery::job("j")), "job ids match exactly");
        let other = LogLine::parse(r#"{"level":"INFO","message":"sandbox up"}"#).unwrap();
        assert!(other.matches(&LogQuery::every_job()) && a.matches(&LogQuery::every_job()));
        assert!(!other.matches(&LogQuery::job("j1")));
        let text = a.render();
        assert!(
            text.starts_with("2026-01-01T10:00:00.123Z INFO  chunk succeeded"),
            "{text}"
        );
        assert!(text.contains("records=40"), "{text}");
    }

    #[test]
    fn chunk_refs_and_levels_parse_or_say_why_not() {
        assert_eq!(
            "service/tickets#12".parse::<ChunkRef>().unwrap(),
            ChunkRef {
                table: "service/tickets".into(),
                seq: 12
            }
        );
        for bad in ["tickets", "#3", "tickets#x", "tickets#-1"] {
            let e = bad.parse::<ChunkRef>().unwrap_err();
            assert!(e.contains("tickets#3"), "{e}");
        }
        assert_eq!("Warning".parse::<Level>(), Ok(Level::Warn));
        assert!("loud".parse::<Level>().is_err());
    }
}
