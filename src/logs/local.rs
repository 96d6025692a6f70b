//! The workspace's `logs/engine.jsonl` as a `LogSource`: reads complete lines after the
//! cursor's byte offset, so following the file never returns a line twice or half a line.
//!
//! The `logs` command reads a job's lines from the start of the file. The console follows the
//! file like `tail -F` (`LocalLogSource::tailing`): a new cursor starts `TAIL_BYTES` before the
//! end, on a line start; one read takes at most `BATCH_BYTES`; and a file that shrank (truncated
//! or replaced) is read again from its start, so a console opened on a file of a million lines
//! neither waits nor fills memory.

use std::io::SeekFrom;
use std::path::PathBuf;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{LogCursor, LogError, LogLine, LogQuery, LogSource};

/// How much of an existing file the console reads when it opens it.
pub const TAIL_BYTES: u64 = 4 << 20;
/// The most one read of a tailing source takes, so one batch stays small.
pub const BATCH_BYTES: u64 = 1 << 20;

pub struct LocalLogSource {
    path: PathBuf,
    /// A new cursor starts this far before the end (at the next line start); `None`: at 0.
    tail_bytes: Option<u64>,
    /// Bytes one read takes at most (a single longer line is still read whole).
    batch_bytes: Option<u64>,
}

impl LocalLogSource {
    /// The whole file from its start, in one read (the `logs` command).
    pub fn new(path: PathBuf) -> Self {
        LocalLogSource {
            path,
            tail_bytes: None,
            batch_bytes: None,
        }
    }

    /// The file followed from its last `tail_bytes`, at most `batch_bytes` per read.
    pub fn tailing(path: PathBuf, tail_bytes: u64, batch_bytes: u64) -> Self {
        LocalLogSource {
            path,
            tail_bytes: Some(tail_bytes),
            batch_bytes: Some(batch_bytes.max(1)),
        }
    }
}

#[async_trait]
impl LogSource for LocalLogSource {
    async fn read(
        &self,
        query: &LogQuery,
        cursor: &mut LogCursor,
    ) -> Result<Vec<LogLine>, LogError> {
        let io = |e: std::io::Error| LogError::Io(format!("{}: {e}", self.path.display()));
        let mut file = match tokio::fs::File::open(&self.path).await {
            Ok(f) => f,
            // No runner has written yet: nothing to show, and a follower keeps looking.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let len = file.metadata().await.map_err(io)?.len();
        // Reading from the byte before a tail's start and dropping everything up to the first
        // newline lands on a line start, whether or not the tail began on one.
        let mut skip_to_line = false;
        if !cursor.started {
            cursor.started = true;
            if let Some(tail) = self.tail_bytes
                && len > tail
            {
                cursor.offset = len - tail - 1;
                skip_to_line = true;
            }
        }
        if len < cursor.offset {
            cursor.offset = 0; // the file was replaced or truncated: start again
        }
        let from = cursor.offset;
        file.seek(SeekFrom::Start(from)).await.map_err(io)?;
        let mut buf = Vec::new();
        match self.batch_bytes {
            None => {
                file.read_to_end(&mut buf).await.map_err(io)?;
            }
            Some(batch) => loop {
                // A line longer than a batch is read on until it ends.
                let before = buf.len();
                (&mut file)
                    .take(batch)
                    .read_to_end(&mut buf)
                    .await
                    .map_err(io)?;
                let got_all = (buf.len() - before) < batch as usize;
                let has_line = buf[before..].contains(&b'\n')
                    && (!skip_to_line || buf.iter().filter(|b| **b == b'\n').count() > 1);
                if got_all || has_line {
                    break;
                }
            },
        }
        let begin = if skip_to_line {
            match buf.iter().position(|b| *b == b'\n') {
                Some(i) => i + 1,
                // No line has ended yet inside the tail: read on from here next time.
                None => {
                    cursor.offset = from;
                    cursor.started = false;
                    return Ok(Vec::new());
                }
            }
        } else {
            0
        };
        // Only whole lines: a writer may be in the middle of the last one.
        let complete = buf[begin..]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        cursor.offset = from + (begin + complete) as u64;
        Ok(String::from_utf8_lossy(&buf[begin..begin + complete])
            .lines()
            .filter_map(LogLine::parse)
            .filter(|l| l.matches(query))
            .collect())
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn follows_whole_lines_of_one_job() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.jsonl");
        let src = LocalLogSource::new(path.clone());
        let q = LogQuery::job("j1");
        let mut cur = LogCursor::default();
        assert!(
            src.read(&q, &mut cur).await.unwrap().is_empty(),
            "no file yet"
        );

        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, r#"{{"level":"INFO","message":"a","job_id":"j1"}}"#).unwrap();
        writeln!(f, r#"{{"level":"INFO","message":"other","job_id":"j2"}}"#).unwrap();
        write!(f, r#"{{"level":"INFO","message":"b","job_id""#).unwrap();
        f.flush().unwrap();
        let got = src.read(&q, &mut cur).await.unwrap();
        assert_eq!(
            got.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
            ["a"]
        );

        writeln!(f, r#":"j1"}}"#).unwrap();
        f.flush().unwrap();
        let got = src.read(&q, &mut cur).await.unwrap();
        assert_eq!(
            got.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        assert!(src.read(&q, &mut cur).await.unwrap().is_empty());
    }

    fn messages(lines: &[LogLine]) -> Vec<String> {
        lines.iter().map(|l| l.message.clone()).collect()
    }

    #[tokio::test]
    async fn a_tailing_reader_starts_at_a_line_near_the_end_and_reads_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        // Each line is 40 bytes: {"level":"INFO","message":"line 0000"}\n
        for i in 0..1000 {
            writeln!(f, r#"{{"level":"INFO","message":"line {i:04}"}}"#).unwrap();
        }
        f.flush().unwrap();
        let q = LogQuery::every_job();
        // The tail starts exactly on a line (byte before it is a newline): that line is kept.
        let src = LocalLogSource::tailing(path.clone(), 400, 1 << 20);
        let mut cur = LogCursor::default();
        let got = src.read(&q, &mut cur).await.unwrap();
        assert_eq!(got.len(), 10, "{:?}", messages(&got));
        assert_eq!(got[0].message, "line 0990");
        // Mid-line: the cut line is dropped.
        let src = LocalLogSource::tailing(path.clone(), 410, 1 << 20);
        let mut cur = LogCursor::default();
        assert_eq!(
            src.read(&q, &mut cur).await.unwrap()[0].message,
            "line 0990"
        );

        // Batches: 100 bytes take two whole lines, then the next read goes on from there.
        let src = LocalLogSource::tailing(path.clone(), 400, 100);
        let mut cur = LogCursor::default();
        let mut all = Vec::new();
        for _ in 0..20 {
            let got = src.read(&q, &mut cur).await.unwrap();
            assert!(got.len() <= 3, "{}", got.len());
            all.extend(got);
        }
        assert_eq!(all.len(), 10);
        assert_eq!(all[9].message, "line 0999");

        // Appends follow; a truncated file is read again from its start.
        writeln!(f, r#"{{"level":"INFO","message":"line 1000"}}"#).unwrap();
        f.flush().unwrap();
        assert_eq!(
            messages(&src.read(&q, &mut cur).await.unwrap()),
            ["line 1000"]
        );
        std::fs::write(&path, "{\"level\":\"WARN\",\"message\":\"fresh\"}\n").unwrap();
        assert_eq!(messages(&src.read(&q, &mut cur).await.unwrap()), ["fresh"]);
    }
}
