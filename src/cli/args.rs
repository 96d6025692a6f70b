//! Reading the command line's values: dates, services, ranges into plans, time budgets, and
//! the exit code of finished runs. A leaf: the command modules use it, it uses none of them.

use std::ops::RangeInclusive;
use std::process::ExitCode;

use clap::builder::RangedU64ValueParser;

use chrono::{DateTime, NaiveDate, Utc};
use color_eyre::eyre::{Result, bail, eyre};
use tokio::time::Instant;

use super::{EXIT_CONTINUATION, EXIT_JOB_ERRORS, ExecArgs, RangeArgs, UsageError};
use crate::config::Config;
use crate::domain::{JobStatus, Service};
use crate::engine::planner::{self, Plan, PlanRequest};
use crate::engine::{Handoff, RunOutcome, StopReason};

/// The parser of a whole-number flag allowed only in `range`: clap refuses anything else
/// (exit 2, naming the flag, the value and the range) before the command writes anything.
pub fn ranged<T>(range: RangeInclusive<u64>) -> RangedU64ValueParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    RangedU64ValueParser::new().range(range)
}

/// Reads `--start-date` / `--end-date`: an RFC 3339 instant or a plain UTC date.
pub fn parse_instant(flag: &str, value: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    bail!(
        "{flag} '{value}' is not an RFC 3339 instant (2023-01-01T00:00:00Z) or a date (2023-01-01)"
    )
}

/// A flag's value, or the usage error naming it.
pub fn required<'a>(flag: &str, value: &'a Option<String>) -> Result<&'a str> {
    value
        .as_deref()
        .ok_or_else(|| UsageError(format!("{flag} is required")).into())
}

pub fn parse_service(value: &str) -> Result<Service> {
    value.parse().map_err(|e: String| eyre!("--service: {e}"))
}

pub fn make_plan(config: &Config, range: &RangeArgs) -> Result<Plan> {
    let tenant_id = required("--tenant-id", &range.tenant_id)?;
    let service = parse_service(required("--service", &range.service)?)?;
    let req = PlanRequest {
        tenant_id: tenant_id.to_string(),
        service,
        tables: range.tables.clone(),
        start: range
            .start_date
            .as_deref()
            .map(|v| parse_instant("--start-date", v))
            .transpose()?,
        end: range
            .end_date
            .as_deref()
            .map(|v| parse_instant("--end-date", v))
            .transpose()?,
        chunk_size_days: range.chunk_size_days,
    };
    Ok(planner::plan(config, &req, Utc::now())?)
}

pub fn page_size(config: &Config, service: Service, table: &str) -> u32 {
    planner::page_size(config, service, table)
}

pub fn deadline(exec: &ExecArgs) -> Option<Instant> {
    budget_deadline(exec.time_budget)
}

/// When work must stop to fit a `--time-budget`: a margin to save state and exit is kept, a
/// tenth of the budget, at most 30 s.
pub fn budget_deadline(budget: Option<std::time::Duration>) -> Option<Instant> {
    budget.map(|b| Instant::now() + b - (b / 10).min(std::time::Duration::from_secs(30)))
}

pub fn exit_for(outcomes: &[RunOutcome]) -> ExitCode {
    if outcomes
        .iter()
        .any(|o| o.stop == StopReason::ContinuationNeeded)
    {
        ExitCode::from(EXIT_CONTINUATION)
    } else if outcomes.iter().any(|o| {
        matches!(o.status, JobStatus::CompletedWithErrors | JobStatus::Failed)
            || matches!(o.handoff, Handoff::Failed { .. })
    }) {
        ExitCode::from(EXIT_JOB_ERRORS)
    } else {
        ExitCode::SUCCESS
    }
}
