//! CloudWatch Logs: a writer that ships a worker's JSON log lines to the stream
//! `{job_id}/{worker}` of the deployment's log group, and a `LogSource` that reads one job's
//! lines back with FilterLogEvents (polled to follow).
//!
//! Lines go from tracing's formatter through a bounded channel (a full channel drops lines
//! and counts them rather than slow the engine) to one shipping task that batches them per
//! stream every second, in time order as PutLogEvents requires. The lines are the same JSON as
//! `logs/engine.jsonl`; lines that name no job are given the job the worker is on. Before
//! answering a job's final step the worker ships what it has, so a job's logs are complete when
//! its execution ends.
//!
//! Reading (`logs --cloud`, the console's logs pane in cloud mode) filters by stream prefix and
//! the job id as a quoted term, then checks each line exactly, since the emulator honours
//! neither prefixes nor JSON patterns.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::error::SdkError;
use aws_sdk_cloudwatchlogs::operation::create_log_stream::CreateLogStreamError;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing_subscriber::fmt::MakeWriter;

use super::CloudError;
use crate::logs::{LogCursor, LogError, LogLine, LogQuery, LogSource};

/// Lines waiting to be shipped before new ones are dropped.
const QUEUE_LINES: usize = 10_000;
/// PutLogEvents takes at most 10,000 events and 1 MB (each event counts 26 bytes more).
const BATCH_EVENTS: usize = 5_000;
const BATCH_BYTES: usize = 900_000;
/// An event holds at most 256 KB.
const MAX_EVENT_BYTES: usize = 200_000;
const SHIP_EVERY: Duration = Duration::from_secs(1);

/// The jobs a worker is working on: lines that name no job (a request retried by the source
/// client) belong to the job when there is exactly one.
#[derive(Clone, Debug, Default)]
pub struct CurrentJobs(Arc<Mutex<Vec<String>>>);

impl CurrentJobs {
    pub fn enter(&self, job_id: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(job_id.to_string());
    }

    pub fn leave(&self, job_id: &str) {
        let mut jobs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = jobs.iter().position(|j| j == job_id) {
            jobs.remove(i);
        }
    }

    fn only(&self) -> Option<String> {
        let jobs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let first = jobs.first()?;
        jobs.iter().all(|j| j == first).then(|| first.clone())
    }
}

/// One line for the shipping task: when written (ms), the text, and whether it is a metrics
/// record (which goes, as it is, to the worker's `metrics/` stream).
type Shipped = (i64, String, bool);

/// tracing's writer: each formatted line goes to the shipping task.
#[derive(Clone)]
pub struct CloudWatchWriter {
    tx: mpsc::Sender<Shipped>,
    dropped: Arc<AtomicU64>,
}

pub struct LineBuf {
    buf: Vec<u8>,
    tx: mpsc::Sender<Shipped>,
    dropped: Arc<AtomicU64>,
}

impl io::Write for LineBuf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuf {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.buf).trim_end().to_string();
        if line.is_empty() {
            return;
        }
        let now = chrono::Utc::now().timestamp_millis();
        if self.tx.try_send((now, line, false)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl CloudWatchWriter {
    /// The engine's metrics sink beside this writer: each Embedded Metric Format record is
    /// one event of the stream `metrics/{worker}`, exactly the record's JSON, so CloudWatch
    /// extracts its metrics on ingestion (no PutMetricData call).
    pub fn metrics(&self) -> CloudWatchMetrics {
        CloudWatchMetrics {
            tx: self.tx.clone(),
            dropped: self.dropped.clone(),
        }
    }
}

/// Metrics records to the log group (see `CloudWatchWriter::metrics`).
pub struct CloudWatchMetrics {
    tx: mpsc::Sender<Shipped>,
    dropped: Arc<AtomicU64>,
}

impl crate::engine::metrics::MetricsSink for CloudWatchMetrics {
    fn emit(&self, record: &Value) {
        let now = chrono::Utc::now().timestamp_millis();
        if self.tx.try_send((now, record.to_string(), true)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<'a> MakeWriter<'a> for CloudWatchWriter {
    type Writer = LineBuf;
    fn make_writer(&'a self) -> LineBuf {
        LineBuf {
            buf: Vec::new(),
            tx: self.tx.clone(),
            dropped: self.dropped.clone(),
        }
    }
}

/// Controls the shipping task.
#[derive(Clone)]
pub struct Shipper {
    flush_tx: mpsc::Sender<oneshot::Sender<()>>,
    dropped: Arc<AtomicU64>,
}

impl Shipper {
    /// Ships every line written so far; waits at most 10 s for CloudWatch.
    pub async fn ship_now(&self) {
        let (ack, done) = oneshot::channel();
        if self.flush_tx.send(ack).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), done).await;
        }
    }

    /// Ships every line written so far (before a worker exits), and says how many were
    /// dropped.
    pub async fn flush(&self) {
        self.ship_now().await;
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            eprintln!("CloudWatch Logs: {dropped} line(s) dropped while the queue was full");
        }
    }
}

/// The stream a line belongs to, and the line with its job named (so a job's lines can be
/// found by its id even when the event itself did not carry one). Metrics records go as they
/// are to `metrics/{worker}`: an added field would be one CloudWatch does not expect, and the
/// job's log stream stays readable.
fn route(shipped: Shipped, worker: &str, current: &CurrentJobs) -> (String, i64, String) {
    let (ts, line, metric) = shipped;
    if metric {
        return (format!("metrics/{worker}"), ts, line);
    }
    let (stream, text) = route_line(&line, worker, current);
    (stream, ts, text)
}

fn route_line(line: &str, worker: &str, current: &CurrentJobs) -> (String, String) {
    let mut parsed: Option<serde_json::Map<String, Value>> = serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        });
    let named = parsed.as_ref().and_then(|m| {
        LogLine::parse(&Value::Object(m.clone()).to_string())
            .and_then(|l| l.job_id().map(str::to_string))
    });
    match (named, current.only()) {
        (Some(job), _) => (format!("{job}/{worker}"), line.to_string()),
        (None, Some(job)) => {
            let text = match parsed.as_mut() {
                Some(m) => {
                    m.insert("job_id".into(), Value::String(job.clone()));
                    Value::Object(m.clone()).to_string()
                }
                None => line.to_string(),
            };
            (format!("{job}/{worker}"), text)
        }
        (None, None) => (format!("worker/{worker}"), line.to_string()),
    }
}

/// Starts the shipping task; returns the writer for tracing and the task's handle.
pub fn start_writer(
    client: Client,
    group: String,
    worker: String,
    current: CurrentJobs,
) -> (CloudWatchWriter, Shipper) {
    let (tx, mut rx) = mpsc::channel::<Shipped>(QUEUE_LINES);
    let (flush_tx, mut flush_rx) = mpsc::channel::<oneshot::Sender<()>>(4);
    let dropped = Arc::new(AtomicU64::new(0));
    let worker = worker.replace([':', '*'], "-");
    tokio::spawn(async move {
        let mut shipper = Batches {
            client,
            group,
            known: HashSet::new(),
            pending: BTreeMap::new(),
            bytes: 0,
        };
        let mut tick = tokio::time::interval(SHIP_EVERY);
        loop {
            tokio::select! {
                line = rx.recv() => match line {
                    Some(shipped) => {
                        let (stream, ts, text) = route(shipped, &worker, &current);
                        shipper.push(stream, ts, text);
                        if shipper.full() {
                            shipper.ship().await;
                        }
                    }
                    None => {
                        shipper.ship().await;
                        return;
                    }
                },
                _ = tick.tick() => shipper.ship().await,
                ack = flush_rx.recv() => {
                    while let Ok(shipped) = rx.try_recv() {
                        let (stream, ts, text) = route(shipped, &worker, &current);
                        shipper.push(stream, ts, text);
                    }
                    shipper.ship().await;
                    if let Some(ack) = ack {
                        let _ = ack.send(());
                    }
                }
            }
        }
    });
    (
        CloudWatchWriter {
            tx,
            dropped: dropped.clone(),
        },
        Shipper { flush_tx, dropped },
    )
}

struct Batches {
    client: Client,
    group: String,
    known: HashSet<String>,
    pending: BTreeMap<String, Vec<(i64, String)>>,
    bytes: usize,
}

impl Batches {
    fn push(&mut self, stream: String, ts: i64, mut text: String) {
        if text.len() > MAX_EVENT_BYTES {
            let mut cut = MAX_EVENT_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        self.bytes += text.len() + 26;
        self.pending.entry(stream).or_default().push((ts, text));
    }

    fn full(&self) -> bool {
        self.bytes >= BATCH_BYTES || self.pending.values().any(|v| v.len() >= BATCH_EVENTS)
    }

    async fn ship(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.bytes = 0;
        for (stream, mut events) in pending {
            // Events of one call must be in time order; lines from several threads may not be.
            events.sort_by_key(|(ts, _)| *ts);
            if let Err(e) = self.put(&stream, events).await {
                // Not through tracing: these lines would come back here.
                eprintln!("CloudWatch Logs: lines for {stream} lost: {e}");
            }
        }
    }

    async fn put(&mut self, stream: &str, events: Vec<(i64, String)>) -> Result<(), CloudError> {
        if !self.known.contains(stream) {
            match self
                .client
                .create_log_stream()
                .log_group_name(&self.group)
                .log_stream_name(stream)
                .send()
                .await
            {
                Ok(_) => {}
                Err(SdkError::ServiceError(e))
                    if matches!(
                        e.err(),
                        CreateLogStreamError::ResourceAlreadyExistsException(_)
                    ) => {}
                Err(e) => return Err(CloudError::aws("CreateLogStream", e)),
            }
            self.known.insert(stream.to_string());
        }
        let events = events
            .into_iter()
            .map(|(ts, text)| {
                InputLogEvent::builder()
                    .timestamp(ts)
                    .message(text)
                    .build()
                    .map_err(|e| CloudError::aws("PutLogEvents", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.client
            .put_log_events()
            .log_group_name(&self.group)
            .log_stream_name(stream)
            .set_log_events(Some(events))
            .send()
            .await
            .map_err(|e| CloudError::aws("PutLogEvents", e))?;
        Ok(())
    }
}

/// One job's lines in the deployment's log group.
pub struct CloudWatchLogSource {
    client: Client,
    group: String,
}

impl CloudWatchLogSource {
    pub fn new(client: Client, group: &str) -> Self {
        CloudWatchLogSource {
            client,
            group: group.to_string(),
        }
    }
}

#[async_trait]
impl LogSource for CloudWatchLogSource {
    async fn read(
        &self,
        query: &LogQuery,
        cursor: &mut LogCursor,
    ) -> Result<Vec<LogLine>, LogError> {
        let mut events = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // The stream prefix narrows the search on AWS; the quoted term (the job id appears
            // in every line the writer ships for it) does it where prefixes are not honoured.
            // Either way each line is checked again below, exactly.
            let mut req = self
                .client
                .filter_log_events()
                .log_group_name(&self.group)
                .log_stream_name_prefix(format!("{}/", query.job_id))
                .filter_pattern(format!("\"{}\"", query.job_id))
                .set_next_token(token.take());
            if cursor.after_ms > 0 {
                req = req.start_time(cursor.after_ms);
            }
            let out = req.send().await.map_err(|e| {
                LogError::Remote(format!(
                    "CloudWatch Logs group {}: {}",
                    self.group,
                    crate::cloud::CloudError::aws("FilterLogEvents", e)
                ))
            })?;
            events.extend(out.events().iter().cloned());
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        events.sort_by_key(|e| (e.timestamp().unwrap_or(0), e.ingestion_time().unwrap_or(0)));
        let mut lines = Vec::new();
        for e in events {
            let ts = e.timestamp().unwrap_or(0);
            let id = e.event_id().unwrap_or_default().to_string();
            if ts < cursor.after_ms || (ts == cursor.after_ms && cursor.seen.contains(&id)) {
                continue;
            }
            if ts > cursor.after_ms {
                cursor.after_ms = ts;
                cursor.seen.clear();
            }
            cursor.seen.push(id);
            let Some(mut line) = e.message().and_then(LogLine::parse) else {
                continue;
            };
            line.origin = e.log_stream_name().map(str::to_string);
            if line.matches(query) {
                lines.push(line);
            }
        }
        Ok(lines)
    }

    fn describe(&self) -> String {
        format!("CloudWatch Logs group {}", self.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_go_to_their_jobs_stream_and_name_it() {
        let current = CurrentJobs::default();
        let line =
            r#"{"level":"INFO","message":"chunk succeeded","job_id":"j1","table":"t","seq":0}"#;
        assert_eq!(route_line(line, "w1", &current).0, "j1/w1");
        let chunk = r#"{"level":"WARN","message":"lease lost","chunk":"j2/t#1"}"#;
        assert_eq!(route_line(chunk, "w1", &current).0, "j2/w1");

        let anon = r#"{"level":"WARN","message":"request failed; retrying","table":"t"}"#;
        assert_eq!(route_line(anon, "w1", &current).0, "worker/w1");
        current.enter("j3");
        let (stream, text) = route_line(anon, "w1", &current);
        assert_eq!(stream, "j3/w1");
        let l = LogLine::parse(&text).unwrap();
        assert_eq!(
            l.job_id(),
            Some("j3"),
            "the job is named in the shipped line"
        );
        current.enter("j4");
        assert_eq!(
            route_line(anon, "w1", &current).0,
            "worker/w1",
            "two jobs: unknown"
        );
        current.leave("j4");
        current.leave("j3");
        assert_eq!(route_line("plain text", "w1", &current).0, "worker/w1");
    }

    #[tokio::test]
    async fn metrics_records_go_as_they_are_to_the_metrics_stream() {
        let (tx, mut rx) = mpsc::channel(4);
        let writer = CloudWatchWriter {
            tx,
            dropped: Arc::default(),
        };
        let current = CurrentJobs::default();
        current.enter("j1");
        let record = serde_json::json!({"_aws": {"CloudWatchMetrics": []}, "JobId": "j1", "ApiRequests": 3.0});
        crate::engine::metrics::MetricsSink::emit(&writer.metrics(), &record);
        let (stream, _, text) = route(rx.recv().await.unwrap(), "w1", &current);
        assert_eq!(stream, "metrics/w1");
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            record,
            "no field added"
        );
    }
}
