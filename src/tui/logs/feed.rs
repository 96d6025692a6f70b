//! Where the pane's lines come from: `crate::logs::LogSource`, the one trait the `logs`
//! command reads too, so local files and CloudWatch Logs appear the same way here.
//!
//! A local file holds every job's lines: the feed follows all of it (the source tails the
//! file in bounded batches) and the pane filters by job and chunk in memory. CloudWatch Logs
//! is read one job at a time (FilterLogEvents by the job's id, polled to follow): the feed
//! reads the job the pane is filtered to, keeping a cursor per job so that going back to a
//! job, or between a job and its chunks, reads nothing twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Level, LogRecord};
use crate::logs::{LogCursor, LogError, LogLine, LogQuery, LogSource};

/// A local file is looked at this often.
const LOCAL_POLL: Duration = Duration::from_millis(250);
/// CloudWatch Logs: each look is an API call (and `logs --cloud --follow` polls as often).
const CLOUD_POLL: Duration = Duration::from_secs(2);

pub struct LogFeed {
    source: Arc<dyn LogSource>,
    /// Read one job at a time (CloudWatch) rather than every line (a local file).
    per_job: bool,
    /// The job the pane shows, when reading per job.
    job: Option<String>,
    /// Where each query stopped; the key is the job, empty for every job.
    cursors: HashMap<String, LogCursor>,
}

impl LogFeed {
    /// Every line of a source that holds them all (the workspace's `logs/engine.jsonl`).
    pub fn every_job(source: Arc<dyn LogSource>) -> LogFeed {
        LogFeed {
            source,
            per_job: false,
            job: None,
            cursors: HashMap::new(),
        }
    }

    /// A source read per job (CloudWatch Logs): nothing until `focus` names a job.
    pub fn per_job(source: Arc<dyn LogSource>) -> LogFeed {
        LogFeed {
            per_job: true,
            ..LogFeed::every_job(source)
        }
    }

    pub fn name(&self) -> String {
        self.source.describe()
    }

    pub fn is_per_job(&self) -> bool {
        self.per_job
    }

    /// The job the pane is filtered to; a per-job feed reads that job from now on.
    pub fn focus(&mut self, job_id: Option<&str>) {
        self.job = job_id.map(str::to_string);
    }

    /// How long to wait after a poll that found nothing.
    pub fn poll_every(&self) -> Duration {
        if self.per_job { CLOUD_POLL } else { LOCAL_POLL }
    }

    /// Lines that arrived since the last poll, as the pane's records (a bounded batch for a
    /// local file); empty when there are none or no job is chosen yet.
    pub async fn poll(&mut self) -> Result<Vec<LogRecord>, LogError> {
        let (key, query) = match (&self.job, self.per_job) {
            (_, false) => (String::new(), LogQuery::every_job()),
            (Some(job), true) => (job.clone(), LogQuery::job(job)),
            (None, true) => return Ok(Vec::new()),
        };
        let cursor = self.cursors.entry(key).or_default();
        let lines = self.source.read(&query, cursor).await?;
        Ok(lines.iter().map(record).collect())
    }
}

/// Fields that are shown in their own column or not at all.
const SKIPPED: [&str; 2] = ["target", "fields"];

/// One log line as the pane shows it: time, level, then the message and its fields, the
/// error first (it is what a reader looks for, and long lines get cut) and the chunk's own
/// fields last (the filter usually says them already).
pub fn record(line: &LogLine) -> LogRecord {
    let time = line
        .timestamp
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_default();
    let level = match line.level {
        crate::logs::Level::Trace => Level::Trace,
        crate::logs::Level::Debug => Level::Debug,
        crate::logs::Level::Info => Level::Info,
        crate::logs::Level::Warn => Level::Warn,
        crate::logs::Level::Error => Level::Error,
    };
    let rank = |k: &str| match k {
        "error" => 0,
        "job_id" | "table" | "seq" => 2,
        _ => 1,
    };
    let mut fields: Vec<_> = line
        .fields
        .iter()
        .filter(|(k, _)| !SKIPPED.contains(&k.as_str()))
        .collect();
    fields.sort_by_key(|(k, _)| rank(k));
    let mut text = line.message.clone();
    for (k, v) in fields {
        text.push(' ');
        text.push_str(k);
        text.push('=');
        match v {
            serde_json::Value::String(s) => text.push_str(s),
            other => text.push_str(&other.to_string()),
        }
    }
    // CloudWatch: which worker's stream the line came from.
    if let Some(origin) = &line.origin {
        text.push_str(" [");
        text.push_str(origin);
        text.push(']');
    }
    let chunk = line.chunk();
    LogRecord {
        time: time.into(),
        level,
        text: text.into(),
        job_id: line.job_id().map(Box::from),
        table: chunk.as_ref().map(|c| Box::from(c.table.as_str())),
        seq: chunk.map(|c| c.seq),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LocalLogSource;
    use std::io::Write;

    fn parse(line: &str) -> LogRecord {
        record(&LogLine::parse(line).unwrap())
    }

    #[test]
    fn log_lines_become_the_panes_records() {
        let r = parse(
            r#"{"timestamp":"2026-01-01T12:03:04.5Z","level":"ERROR","message":"chunk failed","job_id":"j1","table":"tickets","seq":3,"error":"HTTP 400: bad"}"#,
        );
        assert_eq!(&*r.time, "12:03:04");
        assert_eq!(r.level, Level::Error);
        assert_eq!(r.seq, Some(3));
        assert_eq!(r.table.as_deref(), Some("tickets"));
        assert_eq!(
            &*r.text, "chunk failed error=HTTP 400: bad job_id=j1 seq=3 table=tickets",
            "the error first, the chunk's own fields last"
        );

        let c = parse(r#"{"level":"WARN","message":"lease lost","chunk":"j1/tickets#7"}"#);
        assert_eq!((c.job_id.as_deref(), c.seq), (Some("j1"), Some(7)));
        assert_eq!(c.table.as_deref(), Some("tickets"));

        let mut cloud =
            LogLine::parse(r#"{"level":"INFO","message":"chunk started","job_id":"j1"}"#).unwrap();
        cloud.origin = Some("j1/w1".into());
        assert_eq!(&*record(&cloud).text, "chunk started job_id=j1 [j1/w1]");
    }

    fn write_lines(path: &std::path::Path, n: usize) -> u64 {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        for i in 0..n {
            writeln!(f, r#"{{"level":"INFO","message":"line {i:07}"}}"#).unwrap();
        }
        f.flush().unwrap();
        std::fs::metadata(path).unwrap().len()
    }

    /// A console opened on a million-line file reads its tail, one bounded batch at a time,
    /// never the whole file.
    #[tokio::test]
    async fn the_local_feed_tails_a_large_file_without_reading_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.jsonl");
        let n = 1_000_000;
        let len = write_lines(&path, n);
        let line_len = len / n as u64;
        let source = LocalLogSource::tailing(path.clone(), 4 << 20, 1 << 20);
        let mut feed = LogFeed::every_job(Arc::new(source));
        let first = feed.poll().await.unwrap();
        // At most one batch (1 MB) of lines, all from the last 4 MB, whole lines only.
        assert!(!first.is_empty());
        assert!(
            first.len() as u64 <= (1 << 20) / line_len + 1,
            "{} lines in the first batch",
            first.len()
        );
        let first_no: usize = first[0].text[5..12].parse().unwrap();
        let tail_lines = (4 << 20) / line_len as usize;
        assert!(
            first_no >= n - tail_lines - 1,
            "the first line read is line {first_no}, before the tail"
        );
        // Further polls go on to the end, then wait for more.
        let mut total = first.len();
        let mut last = first.last().unwrap().text.to_string();
        for _ in 0..10 {
            let batch = feed.poll().await.unwrap();
            if batch.is_empty() {
                break;
            }
            total += batch.len();
            last = batch.last().unwrap().text.to_string();
        }
        assert!(last.starts_with(&format!("line {:07}", n - 1)), "{last}");
        assert!(total <= tail_lines + 1, "{total}");
        assert!(feed.poll().await.unwrap().is_empty());
    }

    /// A source read per job: nothing without a job; a cursor per job.
    #[tokio::test]
    async fn a_per_job_feed_reads_the_focused_job_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"level":"INFO","message":"a1","job_id":"a"}"#,
                "\n",
                r#"{"level":"INFO","message":"b1","job_id":"b"}"#,
                "\n"
            ),
        )
        .unwrap();
        let mut feed = LogFeed::per_job(Arc::new(LocalLogSource::new(path.clone())));
        assert!(feed.poll().await.unwrap().is_empty(), "no job chosen");
        feed.focus(Some("a"));
        let got = feed.poll().await.unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].text.starts_with("a1"));
        feed.focus(Some("b"));
        assert!(feed.poll().await.unwrap()[0].text.starts_with("b1"));
        feed.focus(Some("a"));
        assert!(feed.poll().await.unwrap().is_empty(), "a's cursor is kept");
        assert_eq!(feed.poll_every(), CLOUD_POLL);
    }
}
