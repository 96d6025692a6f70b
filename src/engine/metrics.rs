//! Custom metrics as CloudWatch Embedded Metric Format (EMF) records: one JSON object per
//! line whose `_aws` member tells CloudWatch Logs which fields are metrics, so writing the
//! line to a log group is all it takes to publish them. Locally the lines go to a file.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::domain::{Alert, Job, JobKind};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "AvesaBackfill";

/// Every metric of the job records (progress, failed attempt, job ended): what the stack's
/// dashboard shows.
pub const JOB_METRICS: [&str; 10] = [
    "ChunksCompleted",
    "ChunksFailed",
    "ChunksTotal",
    "RecordsLanded",
    "ProgressPercent",
    "JobDurationSeconds",
    "ApiRequests",
    "RateLimited",
    "ConsecutiveFailures",
    "CompletionPercent",
];

/// Where metric records go. Implementations must not block for long: they are called from
/// the engine's tasks.
pub trait MetricsSink: Send + Sync {
    fn emit(&self, record: &Value);
}

/// The default: each record as an `info` event of target `avesa_metrics`, its JSON in
/// the `emf` field.
pub struct LogMetrics;

impl MetricsSink for LogMetrics {
    fn emit(&self, record: &Value) {
        tracing::info!(target: "avesa_metrics", emf = %record, "metrics");
    }
}

/// Appends each record as one line to a file (`logs/metrics.jsonl` in a workspace).
pub struct JsonLinesMetrics {
    file: std::sync::Mutex<std::fs::File>,
}

impl JsonLinesMetrics {
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(JsonLinesMetrics {
            file: std::sync::Mutex::new(file),
        })
    }
}

impl MetricsSink for JsonLinesMetrics {
    fn emit(&self, record: &Value) {
        use std::io::Write as _;
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writeln!(f, "{record}") {
            tracing::warn!(error = %e, "cannot write a metrics record");
        }
    }
}

/// One EMF record: `metrics` are `(name, value, unit)`; `dimensions` name fields of
/// `properties` (each listed dimension set becomes its own CloudWatch metric series).
pub fn emf(
    at: DateTime<Utc>,
    dimensions: &[&[&str]],
    metrics: &[(&str, f64, &str)],
    properties: &[(&str, Value)],
) -> Value {
    let mut record = serde_json::Map::new();
    record.insert(
        "_aws".into(),
        json!({
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimensions,
                "Metrics": metrics.iter().map(|(n, _, u)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (k, v) in properties {
        record.insert((*k).to_string(), v.clone());
    }
    for (n, v, _) in metrics {
        record.insert((*n).to_string(), json!(v));
    }
    Value::Object(record)
}

/// What the engine adds to a job's progress record: the source requests sent and the
/// refusals for limits (HTTP 429) since the previous record of this process, for the pair.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestCounts {
    pub requests: u64,
    pub rate_limited: u64,
}

fn job_properties(job: &Job, event: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("TenantId", json!(job.tenant_id)),
        ("Service", json!(job.service.as_str())),
        ("Kind", json!(JobKind::of(&job.job_id).as_str())),
        ("JobId", json!(job.job_id)),
        ("event", json!(event)),
    ]
}

/// The dimension sets of every job record: per tenant and service, per job kind, and one
/// series for the whole deployment (what the stack's alarms and dashboard read).
const JOB_DIMENSIONS: &[&[&str]] = &[&["TenantId", "Service"], &["Kind"], &[]];

/// Progress of a job: chunks done, failed and total, records landed, percent complete, how
/// long since the job was created, and the pair's requests and 429s since the last record.
pub fn progress_record(job: &Job, at: DateTime<Utc>, counts: RequestCounts) -> Value {
    let done = job.completed_chunks + job.failed_chunks;
    let percent = if job.total_chunks == 0 {
        100.0
    } else {
        f64::from(done) * 100.0 / f64::from(job.total_chunks)
    };
    let elapsed = (at - job.created_at).num_milliseconds().max(0) as f64 / 1000.0;
    emf(
        at,
        JOB_DIMENSIONS,
        &[
            ("ChunksCompleted", f64::from(job.completed_chunks), "Count"),
            ("ChunksFailed", f64::from(job.failed_chunks), "Count"),
            ("ChunksTotal", f64::from(job.total_chunks), "Count"),
            ("RecordsLanded", job.records as f64, "Count"),
            ("ProgressPercent", percent, "Percent"),
            ("JobDurationSeconds", elapsed, "Seconds"),
            ("ApiRequests", counts.requests as f64, "Count"),
            ("RateLimited", counts.rate_limited as f64, "Count"),
        ],
        &job_properties(job, "progress"),
    )
}

/// A failed chunk attempt: how many attempts of the job failed in a row now.
pub fn failure_record(job: &Job, run: u32, at: DateTime<Utc>) -> Value {
    emf(
        at,
        JOB_DIMENSIONS,
        &[("ConsecutiveFailures", f64::from(run), "Count")],
        &job_properties(job, "chunk_failed"),
    )
}

/// A job that ended: how long it worked (from its first claimed chunk) and the share of its
/// finished chunks that succeeded.
pub fn ended_record(job: &Job, started: DateTime<Utc>, at: DateTime<Utc>) -> Value {
    let finished = job.completed_chunks + job.failed_chunks;
    let completion = if finished == 0 {
        100.0
    } else {
        f64::from(job.completed_chunks) * 100.0 / f64::from(finished)
    };
    let took = (at - started).num_milliseconds().max(0) as f64 / 1000.0;
    let mut properties = job_properties(job, "job_ended");
    properties.push(("Status", json!(job.status.as_str())));
    emf(
        at,
        JOB_DIMENSIONS,
        &[
            ("JobDurationSeconds", took, "Seconds"),
            ("CompletionPercent", completion, "Percent"),
            ("ChunksCompleted", f64::from(job.completed_chunks), "Count"),
            ("ChunksFailed", f64::from(job.failed_chunks), "Count"),
            ("RecordsLanded", job.records as f64, "Count"),
        ],
        &properties,
    )
}

/// An alert as a metric (`Alert` = 1 with the kind as a dimension) and its details.
pub fn alert_record(alert: &Alert) -> Value {
    emf(
        alert.raised_at,
        &[&["AlertKind"], &["TenantId", "Service", "AlertKind"]],
        &[("Alert", 1.0, "Count")],
        &[
            ("AlertKind", json!(alert.kind.as_str())),
            ("TenantId", json!(alert.tenant_id)),
            ("Service", json!(alert.service.as_str())),
            ("JobId", json!(alert.job_id)),
            ("Subject", json!(alert.subject)),
            ("Message", json!(alert.message)),
            ("Value", json!(alert.value)),
            ("Threshold", json!(alert.threshold)),
            ("event", json!("alert")),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_records_name_their_metrics_and_carry_the_values() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let r = emf(
            at,
            &[&["TenantId"]],
            &[("RecordsLanded", 42.0, "Count")],
            &[("TenantId", json!("acme"))],
        );
        assert_eq!(r["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let cw = &r["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], NAMESPACE);
        assert_eq!(cw["Dimensions"][0][0], "TenantId");
        assert_eq!(cw["Metrics"][0]["Name"], "RecordsLanded");
        assert_eq!(r["RecordsLanded"], 42.0);
        assert_eq!(r["TenantId"], "acme");
    }
}
