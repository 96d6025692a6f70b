//! Injected failures: the fault plan's format (`Fault`, fault-plan files) and armed plans
//! with thread-safe budgets. (Rate limiting is the sandbox's own: `limits.rs`.)

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Service;

/// An injected failure. Matching requests (same service, path and, if set, window start)
/// misbehave as `kind` says, for the first `times` matches (`None` = always), each with
/// chance `probability` (default 1).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Which API: `connectwise` (the default), `servicenow` or `salesforce`.
    #[serde(default = "default_fault_service")]
    pub service: Service,
    /// ConnectWise: the path after `/v4_6_release/apis/3.0/` (`service/tickets`);
    /// ServiceNow: the table (`incident`); Salesforce: the sObject (`Account`). `*` = any.
    pub path: String,
    /// Matches requests whose window starts here; `None` = any request on `path`.
    #[serde(default)]
    pub window_start: Option<DateTime<Utc>>,
    #[serde(default)]
    pub kind: FaultKind,
    /// HTTP status for `kind: status` (429 comes with `Retry-After`).
    #[serde(default)]
    pub status: Option<u16>,
    /// `None` = permanent; `Some(n)` = only the first `n` matching requests misbehave.
    #[serde(default)]
    pub times: Option<u32>,
    /// Chance (0..=1) that a matching request misbehaves; default 1.
    #[serde(default)]
    pub probability: Option<f64>,
    /// `Retry-After` seconds sent with a 429 (default 1).
    #[serde(default)]
    pub retry_after_seconds: Option<u64>,
    /// `slow`: how long the answer is held back.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// `touch_records`: how many records of the requested window get a new update time
    /// (after the window's end: they leave it while it is being read); `delete_records`:
    /// how many are deleted.
    #[serde(default)]
    pub records: Option<u32>,
    /// `touch_records`: the new update times stay inside the window
    /// being read, later than the old ones, instead of past its end.
    #[serde(default)]
    pub inside_window: bool,
    #[serde(default = "default_fault_message")]
    pub message: String,
}

/// How a matching request misbehaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer `status` with the API's own error body.
    #[default]
    Status,
    /// Answer normally after `delay_ms`.
    Slow,
    /// Send the headers and half the body, then close the connection.
    Truncate,
    /// Answer 200 with a body that is not valid JSON.
    Malformed,
    /// Answer 200 with a body that never ends: an array whose records keep coming.
    Endless,
    /// The caller's token is expired: 401 until it signs in again (Salesforce, ServiceNow OAuth).
    ExpireToken,
    /// Move `records` records of the requested window past its end, then answer normally.
    TouchRecords,
    /// Delete `records` records of the requested window (spread over it, so
    /// some are already read and some not), then answer normally.
    DeleteRecords,
    /// Salesforce: a Bulk API 2.0 query job of the window ends `Failed` (errorMessage:
    /// `message`) at its next status poll. Fires on job polls only.
    JobFailed,
    /// Salesforce: the same, ending `Aborted`.
    JobAborted,
}

impl FaultKind {
    /// Whether the kind ends a Bulk API 2.0 job instead of answering a request.
    pub fn ends_a_job(self) -> bool {
        matches!(self, FaultKind::JobFailed | FaultKind::JobAborted)
    }
}

fn default_fault_service() -> Service {
    Service::Connectwise
}

fn default_fault_message() -> String {
    "Injected fault".to_string()
}

impl Fault {
    /// A fault answering `status` on every request to `path` of ConnectWise.
    pub fn status(path: &str, status: u16) -> Fault {
        Fault {
            service: Service::Connectwise,
            path: path.to_string(),
            window_start: None,
            kind: FaultKind::Status,
            status: Some(status),
            times: None,
            probability: None,
            retry_after_seconds: None,
            delay_ms: None,
            records: None,
            inside_window: false,
            message: default_fault_message(),
        }
    }

    /// Checks the fields `kind` needs; the error names the field.
    pub fn validate(&self) -> Result<(), FaultError> {
        if self.path.trim_matches('/').is_empty() {
            return Err(FaultError::EmptyPath);
        }
        if let Some(p) = self.probability
            && !(p.is_finite() && (0.0..=1.0).contains(&p))
        {
            return Err(FaultError::Probability(p));
        }
        match self.kind {
            FaultKind::Status => match self.status {
                None => Err(FaultError::NoStatus),
                Some(s) if !(400..=599).contains(&s) => Err(FaultError::NotAnErrorStatus(s)),
                Some(_) => Ok(()),
            },
            FaultKind::Slow if self.delay_ms.is_none() => Err(FaultError::NoDelay),
            FaultKind::TouchRecords | FaultKind::DeleteRecords
                if self.records.unwrap_or(0) == 0 =>
            {
                Err(FaultError::NoRecords)
            }
            _ if self.inside_window && self.kind != FaultKind::TouchRecords => {
                Err(FaultError::InsideWindow)
            }
            kind if kind.ends_a_job() && self.service != Service::Salesforce => {
                Err(FaultError::JobEndNotSalesforce)
            }
            _ => Ok(()),
        }
    }
}

/// What is wrong with one fault; the text starts with the field it names.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FaultError {
    #[error("path is empty")]
    EmptyPath,
    #[error("probability {0} is not between 0 and 1")]
    Probability(f64),
    #[error("status is required for kind \"status\"")]
    NoStatus,
    #[error("status {0} is not an HTTP error status (400-599)")]
    NotAnErrorStatus(u16),
    #[error("delay_ms is required for kind \"slow\"")]
    NoDelay,
    #[error("records (at least 1) is required for kinds \"touch_records\" and \"delete_records\"")]
    NoRecords,
    #[error("inside_window needs kind \"touch_records\"")]
    InsideWindow,
    #[error("kinds \"job_failed\" and \"job_aborted\" need service \"salesforce\"")]
    JobEndNotSalesforce,
}

/// Why a fault plan file cannot be used; names the file.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FaultPlanError {
    #[error("cannot read fault plan {file}: {reason}")]
    Read { file: String, reason: String },
    #[error("invalid fault plan {file}: at {at}: {reason}")]
    Malformed {
        file: String,
        at: String,
        reason: String,
    },
    #[error("invalid fault plan {file}: faults[{index}].{fault}")]
    Fault {
        file: String,
        index: usize,
        fault: FaultError,
    },
}

/// What one request must suffer, as decided by the fault plan.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FaultAction {
    pub(crate) kind: FaultKind,
    /// For `Status`: the status to answer.
    pub(crate) status: u16,
    pub(crate) message: String,
    /// For a 429: the `Retry-After` to send.
    pub(crate) retry_after_secs: u64,
    /// For `Slow`: the hold-back.
    pub(crate) delay: Duration,
    /// For `TouchRecords`: how many records to move.
    pub(crate) records: u32,
    /// For `TouchRecords`: to later times inside the window.
    pub(crate) inside_window: bool,
}

/// A fault plus what is left of its budget (`None` = permanent).
#[derive(Debug)]
struct ArmedFault {
    fault: Fault,
    window_start: Option<i64>,
    remaining: Option<AtomicU32>,
}

/// All faults of a sandbox, checked in plan order.
#[derive(Debug, Default)]
pub(crate) struct FaultPlan {
    faults: Vec<ArmedFault>,
}

impl FaultPlan {
    pub(crate) fn new(faults: &[Fault]) -> FaultPlan {
        FaultPlan {
            faults: faults
                .iter()
                .map(|f| ArmedFault {
                    fault: f.clone(),
                    window_start: f.window_start.map(|t| t.timestamp()),
                    remaining: f.times.map(AtomicU32::new),
                })
                .collect(),
        }
    }

    /// The fault to apply to a request, consuming one unit of its budget.
    ///
    /// `path` is the API path, table or sObject the request reads; `lower_bound` is the
    /// start of the request's window (unix seconds), if it has one.
    /// Faults that end Bulk API 2.0 jobs are left for `take_job_end`.
    pub(crate) fn take(
        &self,
        service: Service,
        path: &str,
        lower_bound: Option<i64>,
    ) -> Option<FaultAction> {
        self.take_where(service, path, lower_bound, |k| !k.ends_a_job())
    }

    /// Like `take`, for the status poll of a Bulk API 2.0 job: only faults ending a job.
    pub(crate) fn take_job_end(
        &self,
        service: Service,
        path: &str,
        lower_bound: Option<i64>,
    ) -> Option<FaultAction> {
        self.take_where(service, path, lower_bound, FaultKind::ends_a_job)
    }

    fn take_where(
        &self,
        service: Service,
        path: &str,
        lower_bound: Option<i64>,
        kinds: impl Fn(FaultKind) -> bool,
    ) -> Option<FaultAction> {
        self.faults.iter().find_map(|armed| {
            let f = &armed.fault;
            let wanted = f.path.trim_matches('/');
            if f.service != service || (wanted != "*" && wanted != path) || !kinds(f.kind) {
                return None;
            }
            if armed.window_start.is_some() && armed.window_start != lower_bound {
                return None;
            }
            if let Some(p) = f.probability
                && rand::random::<f64>() >= p
            {
                return None;
            }
            let available = match &armed.remaining {
                None => true,
                Some(left) => left
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                    .is_ok(),
            };
            available.then(|| FaultAction {
                kind: f.kind,
                status: f.status.unwrap_or(500),
                message: f.message.clone(),
                retry_after_secs: f.retry_after_seconds.unwrap_or(1),
                delay: Duration::from_millis(f.delay_ms.unwrap_or(0)),
                records: f.records.unwrap_or(0),
                inside_window: f.inside_window,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(times: Option<u32>, window_start: Option<&str>) -> Fault {
        Fault {
            window_start: window_start.map(|s| s.parse().unwrap()),
            times,
            message: "boom".into(),
            ..Fault::status("service/tickets", 500)
        }
    }

    fn status_of(a: Option<FaultAction>) -> Option<(u16, String)> {
        a.map(|a| (a.status, a.message))
    }

    #[test]
    fn budgets_count_down_and_windows_must_match() {
        let plan = FaultPlan::new(&[fault(Some(2), Some("2024-01-01T00:00:00Z"))]);
        let lo = Some(1_704_067_200);
        let cw = Service::Connectwise;
        let boom = Some((500, "boom".to_string()));
        assert_eq!(plan.take(cw, "time/entries", lo), None);
        assert_eq!(plan.take(Service::Servicenow, "service/tickets", lo), None);
        assert_eq!(plan.take(cw, "service/tickets", None), None);
        assert_eq!(plan.take(cw, "service/tickets", Some(0)), None);
        assert_eq!(status_of(plan.take(cw, "service/tickets", lo)), boom);
        assert_eq!(status_of(plan.take(cw, "service/tickets", lo)), boom);
        assert_eq!(plan.take(cw, "service/tickets", lo), None);

        let permanent = FaultPlan::new(&[fault(None, None)]);
        for _ in 0..5 {
            assert!(permanent.take(cw, "service/tickets", None).is_some());
        }
    }

    #[test]
    fn job_ending_faults_are_salesforce_only_and_taken_by_job_polls_only() {
        let ends = Fault {
            service: Service::Salesforce,
            kind: FaultKind::JobAborted,
            ..fault(None, None)
        };
        assert!(ends.validate().is_ok());
        let elsewhere = Fault {
            service: Service::Connectwise,
            ..ends.clone()
        };
        assert!(matches!(
            elsewhere.validate(),
            Err(FaultError::JobEndNotSalesforce)
        ));
        let plan = FaultPlan::new(&[Fault {
            path: "Account".into(),
            ..ends
        }]);
        let sf = Service::Salesforce;
        assert!(
            plan.take(sf, "Account", None).is_none(),
            "a query is left alone"
        );
        let taken = plan.take_job_end(sf, "Account", None).map(|a| a.kind);
        assert_eq!(taken, Some(FaultKind::JobAborted));
    }

    #[test]
    fn probability_lets_a_share_through_and_star_matches_any_path() {
        let plan = FaultPlan::new(&[Fault {
            path: "*".into(),
            probability: Some(0.3),
            ..Fault::status("x", 503)
        }]);
        let hits = (0..10_000)
            .filter(|_| {
                plan.take(Service::Connectwise, "company/companies", None)
                    .is_some()
            })
            .count();
        assert!((2_500..3_500).contains(&hits), "{hits} of 10000 at p=0.3");
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultFile {
    faults: Vec<Fault>,
}

/// Loads a fault plan from a JSON file `{"faults":[Fault,...]}`.
pub fn load_faults(path: &std::path::Path) -> Result<Vec<Fault>, FaultPlanError> {
    let file = path.display().to_string();
    let text = crate::config::read_small_file(path, crate::config::MAX_CONFIG_FILE_BYTES).map_err(
        |e| FaultPlanError::Read {
            file: file.clone(),
            reason: e.to_string(),
        },
    )?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    let plan: FaultFile =
        serde_path_to_error::deserialize(de).map_err(|e| FaultPlanError::Malformed {
            file: file.clone(),
            at: e.path().to_string(),
            reason: e.inner().to_string(),
        })?;
    for (index, fault) in plan.faults.iter().enumerate() {
        fault.validate().map_err(|fault| FaultPlanError::Fault {
            file: file.clone(),
            index,
            fault,
        })?;
    }
    Ok(plan.faults)
}
