//! Bulk API 2.0 query jobs: creation, the state machine polled by clients, and CSV results
//! paged by locator.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::{HeaderName, StatusCode};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::data::{self, Renderer, Times};
use super::plan::{Column, Plan, parse_plan};
use super::rest::{Ctx, query_param};
use super::{CSV, Reply, SfState, bad_request, error, json, not_found};
use crate::sandbox::FaultKind;

/// Rows in a results page.
const NUMBER_OF_RECORDS: HeaderName = HeaderName::from_static("sforce-numberofrecords");
/// The next results page's locator, `null` on the last.
const LOCATOR: HeaderName = HeaderName::from_static("sforce-locator");

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(super) enum JobState {
    UploadComplete,
    InProgress,
    JobComplete,
    /// Ended by a `job_failed` fault.
    Failed,
    /// Ended by a `job_aborted` fault.
    Aborted,
}

pub(super) struct BulkJob {
    pub(super) org: usize,
    pub(super) plan: Arc<Plan>,
    pub(super) operation: String,
    pub(super) version: String,
    pub(super) crlf: bool,
    pub(super) created: DateTime<Utc>,
    pub(super) state: JobState,
    /// Why a job ended `Failed` or `Aborted`.
    pub(super) error_message: Option<String>,
    /// Fixed at completion: record index and its times then.
    pub(super) rows: Arc<Vec<(u32, Times)>>,
}

impl Ctx<'_> {
    pub(super) fn job_json(&self, id: &str, job: &BulkJob) -> Vec<u8> {
        let keys = &self.sf().orgs[self.org].keys;
        let created = data::rest_datetime(job.created.timestamp_millis());
        let body = serde_json::json!({
            "id": id,
            "operation": job.operation,
            "object": job.plan.sobject.name(),
            "createdById": keys.user_id(0),
            "createdDate": created,
            "systemModstamp": created,
            "state": job.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": job.version.trim_start_matches('v').parse::<f64>().unwrap_or(60.0),
            "jobType": "V2Query",
            "lineEnding": if job.crlf { "CRLF" } else { "LF" },
            "columnDelimiter": "COMMA",
            "numberRecordsProcessed": job.rows.len(),
            "retries": 0,
            "totalProcessingTime": if job.state == JobState::JobComplete { 250 } else { 0 },
        });
        let mut body = body;
        if let Some(why) = &job.error_message {
            body["errorMessage"] = why.as_str().into();
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }

    pub(super) fn create_job(&self, body: &[u8]) -> Reply {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Create {
            operation: String,
            query: String,
            #[serde(default)]
            content_type: Option<String>,
            #[serde(default)]
            column_delimiter: Option<String>,
            #[serde(default)]
            line_ending: Option<String>,
        }
        let invalid = |m: &str| bad_request("INVALIDJOB", m);
        let spec: Create = match serde_json::from_slice(body) {
            Ok(s) => s,
            Err(e) => return invalid(&format!("Unable to parse the job request: {e}")),
        };
        if spec.operation != "query" && spec.operation != "queryAll" {
            return invalid(&format!(
                "Invalid operation '{}': expected query or queryAll",
                spec.operation
            ));
        }
        if spec.content_type.as_deref().is_some_and(|c| c != "CSV") {
            return invalid("contentType must be CSV");
        }
        if spec
            .column_delimiter
            .as_deref()
            .is_some_and(|c| c != "COMMA")
        {
            return invalid("the sandbox supports only columnDelimiter COMMA");
        }
        let crlf = match spec.line_ending.as_deref() {
            None | Some("LF") => false,
            Some("CRLF") => true,
            Some(other) => return invalid(&format!("Invalid lineEnding '{other}'")),
        };
        let plan = match parse_plan(&spec.query) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        if let Err(reply) = self.refuse_hidden(&plan) {
            return reply;
        }
        if plan.columns.is_none() {
            return bad_request(
                "API_ERROR",
                "Aggregate queries (COUNT()) are not supported by Bulk API 2.0 query jobs",
            );
        }
        let sf = self.sf();
        let mut inner = sf.lock();
        let seq = SfState::next_seq(&mut inner);
        let id = data::make_id("750", &sf.orgs[self.org].keys.pod, seq);
        let job = BulkJob {
            org: self.org,
            plan: Arc::new(plan),
            operation: spec.operation,
            version: self.version.to_string(),
            crlf,
            created: Utc::now(),
            state: JobState::UploadComplete,
            error_message: None,
            rows: Arc::new(Vec::new()),
        };
        let body = self.job_json(&id, &job);
        inner.jobs.insert(id, job);
        sf.stats.bulk_jobs.fetch_add(1, Ordering::Relaxed);
        json(body)
    }

    pub(super) fn job_info(&self, id: &str) -> Reply {
        let sf = self.sf();
        sf.stats.bulk_polls.fetch_add(1, Ordering::Relaxed);
        let mut inner = sf.lock();
        let Some(state) = inner
            .jobs
            .get(id)
            .filter(|j| j.org == self.org)
            .map(|j| j.state)
        else {
            return not_found();
        };
        if matches!(state, JobState::UploadComplete | JobState::InProgress)
            && let Some(reply) = self.end_job(&mut inner, id)
        {
            return reply;
        }
        // One step per poll; the rows are fixed when the job completes.
        let next = match state {
            JobState::UploadComplete => JobState::InProgress,
            JobState::InProgress | JobState::JobComplete => JobState::JobComplete,
            ended => ended,
        };
        let rows = (state == JobState::InProgress).then(|| {
            let plan = &inner.jobs[id].plan;
            sf.evaluate(&inner, self.org, plan)
                .into_iter()
                .map(|i| (i, sf.times(&inner, self.org, plan.sobject, i)))
                .collect::<Vec<_>>()
        });
        let job = inner.jobs.get_mut(id).expect("found above");
        job.state = next;
        if let Some(rows) = rows {
            job.rows = Arc::new(rows);
        }
        let job = &inner.jobs[id];
        json(self.job_json(id, job))
    }

    /// Ends a running job as a `job_failed` / `job_aborted` fault says: its status then.
    fn end_job(&self, inner: &mut super::Inner, id: &str) -> Option<Reply> {
        let job = inner.jobs.get_mut(id)?;
        let action = self.shared.faults.take_job_end(
            crate::domain::Service::Salesforce,
            job.plan.sobject.name(),
            job.plan.window_start,
        )?;
        job.state = if action.kind == FaultKind::JobFailed {
            JobState::Failed
        } else {
            JobState::Aborted
        };
        job.error_message = Some(action.message);
        let job = &inner.jobs[id];
        Some(json(self.job_json(id, job)).with_outcome(super::Outcome::Fault))
    }

    pub(super) fn results(&self, id: &str, uri: &axum::http::Uri) -> Reply {
        let sf = self.sf();
        let (plan, rows, crlf) = {
            let inner = sf.lock();
            let Some(job) = inner.jobs.get(id).filter(|j| j.org == self.org) else {
                return not_found();
            };
            if job.version != self.version {
                return error(
                    StatusCode::CONFLICT,
                    "API_VERSION_MISMATCH",
                    &format!(
                        "Job {id} was created with API version {} and is read with that version only",
                        job.version
                    ),
                );
            }
            if job.state != JobState::JobComplete {
                return error(
                    StatusCode::PRECONDITION_FAILED,
                    "JOB_NOT_COMPLETE",
                    &format!("Job {id} is not complete: results are available once it is"),
                );
            }
            (job.plan.clone(), job.rows.clone(), job.crlf)
        };
        let max = match query_param(uri, "maxRecords") {
            None => 50_000,
            Some(m) => match m.trim().parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return bad_request(
                        "INVALIDREQUEST",
                        &format!("maxRecords must be a positive integer, got '{m}'"),
                    );
                }
            },
        };
        let offset = match query_param(uri, "locator").filter(|l| !l.is_empty()) {
            None => 0,
            Some(l) => match base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(l.trim_end_matches('='))
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|&o| o <= rows.len())
            {
                Some(o) => o,
                None => {
                    return bad_request("INVALIDLOCATOR", &format!("Invalid locator '{l}'"));
                }
            },
        };
        let spoil = match self.fault(&plan) {
            Ok(s) => s,
            Err(reply) => return reply,
        };
        sf.stats.bulk_result_pages.fetch_add(1, Ordering::Relaxed);
        let end = (offset + max).min(rows.len());
        let locator = if end < rows.len() {
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(end.to_string())
        } else {
            "null".to_string()
        };
        let body = render_csv(sf, self.org, &plan, &rows[offset..end], crlf);
        self.page_seen(format!("bulk\n{id}\n{offset}\n{max}"));
        json(body)
            .with_content_type(CSV)
            .header(NUMBER_OF_RECORDS, end - offset)
            .header(LOCATOR, locator)
            .spoiled_by(spoil)
    }
}

fn render_csv(sf: &SfState, org: usize, plan: &Plan, rows: &[(u32, Times)], crlf: bool) -> Vec<u8> {
    let columns = plan.columns.as_deref().unwrap_or(&[]);
    let mut w = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .terminator(if crlf {
            csv::Terminator::CRLF
        } else {
            csv::Terminator::Any(b'\n')
        })
        .from_writer(Vec::with_capacity(rows.len() * 60 * (columns.len() + 1)));
    let _ = w.write_record(columns.iter().map(|c| c.header()));
    let r = Renderer {
        keys: &sf.orgs[org].keys,
        sobject: plan.sobject,
    };
    for &(i, t) in rows {
        let fields = columns.iter().map(|c| {
            match c {
                Column::Field(f) => r.value(u64::from(i), f, t),
                Column::Owner(f) => r.owner_value(u64::from(i), f),
            }
            .csv_text()
            .unwrap_or_default()
        });
        let _ = w.write_record(fields);
    }
    w.into_inner().unwrap_or_default()
}
