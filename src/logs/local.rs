//! The workspace's `logs/engine.jsonl` as a `LogSource`: reads complete lines after the
//! cursor's byte offset, so following the file never returns a line twice or half a line.

use std::io::SeekFrom;
use std::path::PathBuf;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{LogCursor, LogError, LogLine, LogQuery, LogSource};

pub struct LocalLogSource {
    path: PathBuf,
}

impl LocalLogSource {
    pub fn new(path: PathBuf) -> Self {
        LocalLogSource { path }
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
        if len < cursor.offset {
            cursor.offset = 0; // the file was replaced: start again
        }
        file.seek(SeekFrom::Start(cursor.offset))
            .await
            .map_err(io)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).await.map_err(io)?;
        // Only whole lines: a writer may be in the middle of the last one.
        let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        cursor.offset += complete as u64;
        Ok(String::from_utf8_lossy(&buf[..complete])
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
}
