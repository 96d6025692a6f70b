//! Where log lines come from: one `LogSource` trait, so local files and cloud logs look the
//! same in the pane. The local source follows the engine's JSON-lines file.

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{Level, LogRecord};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
}

/// A stream of log records, polled by the console's runtime (never by a view).
#[async_trait]
pub trait LogSource: Send {
    /// Shown in the pane's title, e.g. the file being followed.
    fn name(&self) -> String;
    /// Records that arrived since the last call (at most a bounded batch); empty when none.
    async fn poll(&mut self) -> Result<Vec<LogRecord>, LogError>;
}

/// Follows a JSON-lines log file (`logs/engine.jsonl`) like `tail -f`: starts near the end,
/// reads what is appended, starts over when the file is truncated or replaced.
pub struct JsonlFile {
    path: PathBuf,
    offset: Option<u64>,
    /// A line whose end has not been written yet.
    partial: Vec<u8>,
    /// How much of an existing file is read at start.
    tail_bytes: u64,
    /// At most this much is read per poll, so one batch stays small.
    batch_bytes: u64,
}

impl JsonlFile {
    pub fn new(path: PathBuf) -> JsonlFile {
        JsonlFile {
            path,
            offset: None,
            partial: Vec::new(),
            tail_bytes: 4 << 20,
            batch_bytes: 1 << 20,
        }
    }

    pub fn with_limits(mut self, tail_bytes: u64, batch_bytes: u64) -> JsonlFile {
        self.tail_bytes = tail_bytes;
        self.batch_bytes = batch_bytes.max(1);
        self
    }
}

#[async_trait]
impl LogSource for JsonlFile {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    async fn poll(&mut self) -> Result<Vec<LogRecord>, LogError> {
        let read_err = |e: std::io::Error| LogError::Read {
            path: self.path.display().to_string(),
            message: e.to_string(),
        };
        let mut file = match tokio::fs::File::open(&self.path).await {
            Ok(f) => f,
            // Not written yet: nothing to show, not an error.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(read_err(e)),
        };
        let len = file.metadata().await.map_err(read_err)?.len();
        let mut skip_first_line = false;
        let offset = match self.offset {
            Some(o) if o <= len => o,
            // Truncated or replaced: read it again from the start.
            Some(_) => {
                self.partial.clear();
                0
            }
            None => {
                let start = len.saturating_sub(self.tail_bytes);
                skip_first_line = start > 0;
                start
            }
        };
        if offset == len {
            self.offset = Some(offset);
            return Ok(Vec::new());
        }
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(read_err)?;
        let want = (len - offset).min(self.batch_bytes);
        let mut buf = Vec::with_capacity(want as usize);
        (&mut file)
            .take(want)
            .read_to_end(&mut buf)
            .await
            .map_err(read_err)?;
        self.offset = Some(offset + buf.len() as u64);
        let mut data = std::mem::take(&mut self.partial);
        data.extend_from_slice(&buf);
        let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        let rest = lines.pop().unwrap_or_default().to_vec();
        if skip_first_line && !lines.is_empty() {
            lines.remove(0);
        }
        let out = lines
            .into_iter()
            .filter(|l| !l.is_empty())
            .map(|l| parse_line(&String::from_utf8_lossy(l)))
            .collect();
        self.partial = rest;
        Ok(out)
    }
}

/// Fields that are shown in their own column or not at all.
const SKIPPED: [&str; 5] = ["timestamp", "level", "message", "target", "fields"];

/// One tracing JSON line (`{"timestamp":..,"level":..,"message":..,"job_id":..}`) as a
/// record; a line that is not JSON is kept as plain text.
pub fn parse_line(line: &str) -> LogRecord {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(line) else {
        return LogRecord {
            time: "".into(),
            level: Level::Info,
            text: line.trim_end().into(),
            job_id: None,
            table: None,
            seq: None,
        };
    };
    let s = |k: &str| map.get(k).and_then(|v| v.as_str());
    let time = s("timestamp")
        .and_then(|t| t.get(11..19))
        .unwrap_or("")
        .into();
    let level = s("level").map_or(Level::Info, Level::parse);
    let mut text = s("message").unwrap_or("").to_string();
    // The error first: it is what a reader is looking for, and long lines get cut.
    // Which chunk a line is about is known from its fields (and often from the filter):
    // it goes last.
    let rank = |k: &str| match k {
        "error" => 0,
        "job_id" | "table" | "seq" => 2,
        _ => 1,
    };
    let mut fields: Vec<_> = map.iter().collect();
    fields.sort_by_key(|(k, _)| rank(k));
    for (k, v) in fields {
        if SKIPPED.contains(&k.as_str()) {
            continue;
        }
        text.push(' ');
        text.push_str(k);
        text.push('=');
        match v {
            serde_json::Value::String(s) => text.push_str(s),
            other => text.push_str(&other.to_string()),
        }
    }
    let (mut job_id, mut table, mut seq) = (
        s("job_id").map(Box::from),
        s("table").map(Box::from),
        map.get("seq").and_then(|v| v.as_u64()).map(|n| n as u32),
    );
    // Some lines name the chunk as `job/table#seq` in one field.
    if let Some((job, rest)) = s("chunk").and_then(|c| c.split_once('/'))
        && let Some((t, n)) = rest.rsplit_once('#')
    {
        job_id.get_or_insert_with(|| job.into());
        table.get_or_insert_with(|| t.into());
        if seq.is_none() {
            seq = n.parse().ok();
        }
    }
    LogRecord {
        time,
        level,
        text: text.into(),
        job_id,
        table,
        seq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tracing_json_lines_become_records() {
        let r = parse_line(
            r#"{"timestamp":"2026-01-01T12:03:04.5Z","level":"ERROR","message":"chunk failed","job_id":"j1","table":"tickets","seq":3,"error":"HTTP 400: bad"}"#,
        );
        assert_eq!(&*r.time, "12:03:04");
        assert_eq!(r.level, Level::Error);
        assert_eq!(r.seq, Some(3));
        assert_eq!(r.table.as_deref(), Some("tickets"));
        assert!(r.text.starts_with("chunk failed"), "{}", r.text);
        assert_eq!(
            &*r.text, "chunk failed error=HTTP 400: bad job_id=j1 seq=3 table=tickets",
            "the error first, the chunk's own fields last"
        );

        let c = parse_line(r#"{"level":"WARN","message":"lease lost","chunk":"j1/tickets#7"}"#);
        assert_eq!((c.job_id.as_deref(), c.seq), (Some("j1"), Some(7)));
        assert_eq!(parse_line("not json").text.as_ref(), "not json");
    }

    #[tokio::test]
    async fn the_file_is_followed_across_appends_partial_lines_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.jsonl");
        let mut src = JsonlFile::new(path.clone()).with_limits(1 << 20, 64);
        assert!(src.poll().await.unwrap().is_empty(), "no file yet");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, r#"{{"level":"INFO","message":"one"}}"#).unwrap();
        write!(f, r#"{{"level":"INFO","mess"#).unwrap();
        f.flush().unwrap();
        let got = src.poll().await.unwrap();
        assert_eq!(got.len(), 1);
        writeln!(f, r#"age":"two"}}"#).unwrap();
        f.flush().unwrap();
        let mut got = Vec::new();
        for _ in 0..4 {
            got.extend(src.poll().await.unwrap());
        }
        assert_eq!(got.len(), 1);
        assert_eq!(&*got[0].text, "two");
        std::fs::write(&path, "{\"message\":\"fresh\"}\n").unwrap();
        let got = src.poll().await.unwrap();
        assert_eq!(&*got[0].text, "fresh");
    }

    #[tokio::test]
    async fn a_large_file_is_read_from_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        for i in 0..1000 {
            writeln!(f, r#"{{"level":"INFO","message":"line {i}"}}"#).unwrap();
        }
        f.flush().unwrap();
        let mut src = JsonlFile::new(path).with_limits(400, 1 << 20);
        let got = src.poll().await.unwrap();
        assert!(!got.is_empty() && got.len() < 20, "{}", got.len());
        assert_eq!(&*got.last().unwrap().text, "line 999");
        assert!(got[0].text.starts_with("line "), "no cut line first");
    }
}
