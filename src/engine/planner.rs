//! The planner: pure functions from a backfill request to half-open UTC windows per table.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Serialize;

use crate::config::{BackfillConfig, CHUNK_SIZE_DAYS, Config, EndpointDef, ServiceEndpoints};
use crate::domain::{
    Chunk, ChunkKey, Job, JobKind, JobStatus, Service, SyncMarker, Window, validate_identifier,
};

/// What an operator asks for; `None` fields take their configured defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanRequest {
    pub tenant_id: String,
    pub service: Service,
    /// API paths or table names; empty means every endpoint, priority ones first.
    pub tables: Vec<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub chunk_size_days: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TablePlan {
    pub table: String,
    pub path: String,
    pub windows: Vec<Window>,
    /// The source's count of each window, when windows were sized by counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<u64>>,
    /// Declared columns the integration user cannot read, left out of the queries
    /// (`Engine::check_fields`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub kind: JobKind,
    pub tenant_id: String,
    pub service: Service,
    pub window: Window,
    /// The end was not given: it is the moment of planning, frozen into the job.
    pub end_is_default: bool,
    pub chunk_size_days: u32,
    pub rate_limit_per_minute: Option<u32>,
    pub max_attempts: u32,
    pub tables: Vec<TablePlan>,
    /// Count requests made while planning (windows sized by counts).
    pub count_calls: u64,
    /// The tables' readable fields were asked for (`Engine::check_fields`): a job created
    /// from the plan does not ask again.
    #[serde(skip)]
    pub fields_checked: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// Cuts `[start, end)` into consecutive windows of `days` days; the last one ends at `end`.
pub fn chunk_windows(window: Window, days: u32) -> Vec<Window> {
    let step = Duration::days(i64::from(days.max(1)));
    let mut out = Vec::new();
    let mut start = window.start;
    while start < window.end {
        let end = start
            .checked_add_signed(step)
            .map_or(window.end, |e| e.min(window.end));
        out.push(Window::new(start, end));
        start = end;
    }
    out
}

/// `backfill_{tenant}_{service}_{YYYYMMDD of the start}`: readable and stable for a range.
pub fn job_id(tenant_id: &str, service: Service, start: DateTime<Utc>) -> String {
    format!("backfill_{tenant_id}_{service}_{}", start.format("%Y%m%d"))
}

/// `sync_{tenant}_{service}_{YYYYMMDDHHMMSS of the end}`: syncs run often, so the second counts.
pub fn sync_job_id(tenant_id: &str, service: Service, end: DateTime<Utc>) -> String {
    format!("sync_{tenant_id}_{service}_{}", end.format("%Y%m%d%H%M%S"))
}

/// Whole seconds: sources filter at one-second precision, so every bound stays exact.
fn trunc_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::seconds(1)).unwrap_or(t)
}

/// The tenant's enabled connection and endpoint definitions for `service`, or why not.
fn checked_endpoints<'a>(
    config: &'a Config,
    tenant_id: &str,
    service: Service,
) -> Result<&'a ServiceEndpoints, PlanError> {
    validate_identifier("tenant id", tenant_id).map_err(|e| PlanError(e.to_string()))?;
    let (_, conn) = config
        .connection(tenant_id, service)
        .map_err(|e| PlanError(e.to_string()))?;
    if !conn.enabled {
        return Err(PlanError(format!(
            "tenant '{tenant_id}' has {service} disabled in the tenants registry"
        )));
    }
    config
        .endpoints(service)
        .ok_or_else(|| PlanError(format!("no endpoint definitions for {service}")))
}

/// Plans an incremental sync: per table, `[marker, now)` cut into chunks of the configured
/// size. `tables` empty means every table that has a marker. Tables already at `now` are
/// left out; a plan without tables means everything is up to date.
pub fn plan_sync(
    config: &Config,
    tenant_id: &str,
    service: Service,
    tables: &[String],
    markers: &[SyncMarker],
    now: DateTime<Utc>,
) -> Result<Plan, PlanError> {
    let endpoints = checked_endpoints(config, tenant_id, service)?;
    let bf = &config.backfill;
    let end = trunc_second(now);
    let marker_of = |table: &str| {
        markers
            .iter()
            .find(|m| m.tenant_id == tenant_id && m.service == service && m.table == table)
    };
    let mut defs: Vec<_> = if tables.is_empty() {
        endpoints
            .endpoints
            .iter()
            .filter(|d| marker_of(&d.table_name).is_some())
            .collect()
    } else {
        tables
            .iter()
            .map(|name| find_table(endpoints, service, name))
            .collect::<Result<_, _>>()?
    };
    if defs.is_empty() {
        return Err(PlanError(format!(
            "tenant '{tenant_id}' {service} has no sync marker yet: a completed backfill sets it \
             (avesa-console trigger --tenant-id {tenant_id} --service {service} --run)"
        )));
    }
    sort_by_priority(&mut defs, bf, service);
    let defs = order_by_dependencies(
        defs,
        |d| bf.table_dependencies(service, &d.table_name),
        |d| &d.table_name,
    );
    let chunk_size_days = bf.chunk_size_days(tenant_id, service);
    let mut table_plans = Vec::new();
    for d in defs {
        let marker = marker_of(&d.table_name).ok_or_else(|| {
            PlanError(format!(
                "table '{}' of tenant '{tenant_id}' {service} has no sync marker yet: backfill it first",
                d.table_name
            ))
        })?;
        let start = trunc_second(marker.last_updated);
        if start < end {
            table_plans.push(table_plan(
                d,
                chunk_windows(Window::new(start, end), chunk_size_days),
            ));
        }
    }
    let start = table_plans
        .iter()
        .filter_map(|t| t.windows.first().map(|w| w.start))
        .min()
        .unwrap_or(end);
    Ok(Plan {
        kind: JobKind::Sync,
        tenant_id: tenant_id.to_string(),
        service,
        window: Window::new(start, end),
        end_is_default: true,
        chunk_size_days,
        rate_limit_per_minute: bf.rate_limit_per_minute(tenant_id, service),
        max_attempts: bf.default_settings.retry_attempts,
        tables: table_plans,
        count_calls: 0,
        fields_checked: false,
    })
}

/// Moves each table after the tables it depends on, otherwise keeping the given order
/// (priority first). Dependencies outside the list are ignored; cycles were refused when
/// the configuration loaded.
pub fn order_by_dependencies<T>(
    items: Vec<T>,
    deps: impl Fn(&T) -> &[String],
    name: impl Fn(&T) -> &String,
) -> Vec<T> {
    let names: Vec<String> = items.iter().map(|i| name(i).clone()).collect();
    let mut pending: Vec<Option<T>> = items.into_iter().map(Some).collect();
    let mut placed: Vec<String> = Vec::new();
    let mut out = Vec::new();
    while out.len() < pending.len() {
        let ready = pending.iter().position(|slot| {
            slot.as_ref().is_some_and(|i| {
                deps(i)
                    .iter()
                    .all(|d| !names.contains(d) || placed.contains(d))
            })
        });
        // Without a ready one (impossible without a cycle), keep the given order.
        let at = ready.unwrap_or_else(|| pending.iter().position(Option::is_some).unwrap_or(0));
        if let Some(item) = pending[at].take() {
            placed.push(name(&item).clone());
            out.push(item);
        }
    }
    out
}

/// Builds the plan for `req` at the instant `now`.
pub fn plan(config: &Config, req: &PlanRequest, now: DateTime<Utc>) -> Result<Plan, PlanError> {
    let endpoints = checked_endpoints(config, &req.tenant_id, req.service)?;
    let bf = &config.backfill;
    let chunk_size_days = match req.chunk_size_days {
        Some(d) if !CHUNK_SIZE_DAYS.contains(&u64::from(d)) => {
            return Err(PlanError(format!(
                "--chunk-size-days must be at least {} and at most {} (got {d})",
                CHUNK_SIZE_DAYS.start(),
                CHUNK_SIZE_DAYS.end()
            )));
        }
        Some(d) => d,
        None => bf.chunk_size_days(&req.tenant_id, req.service),
    };
    let window = requested_window(bf, req, now)?;
    let defs = requested_tables(endpoints, bf, req)?;
    let defs = order_by_dependencies(
        defs,
        |d| bf.table_dependencies(req.service, &d.table_name),
        |d| &d.table_name,
    );
    let windows = chunk_windows(window, chunk_size_days);
    Ok(Plan {
        kind: JobKind::Backfill,
        tenant_id: req.tenant_id.clone(),
        service: req.service,
        window,
        end_is_default: req.end.is_none(),
        chunk_size_days,
        rate_limit_per_minute: bf.rate_limit_per_minute(&req.tenant_id, req.service),
        max_attempts: bf.default_settings.retry_attempts,
        tables: defs
            .into_iter()
            .map(|d| table_plan(d, windows.clone()))
            .collect(),
        count_calls: 0,
        fields_checked: false,
    })
}

/// The window a backfill asks for: `[start, end)` to the second, `end` defaulting to now and
/// `start` to the lookback before it. Refuses an empty window and one still open.
fn requested_window(
    bf: &BackfillConfig,
    req: &PlanRequest,
    now: DateTime<Utc>,
) -> Result<Window, PlanError> {
    let trunc = trunc_second;
    let end = trunc(req.end.unwrap_or(now));
    let start = match req.start {
        Some(s) => trunc(s),
        None => {
            let days = bf.lookback_days(&req.tenant_id, req.service);
            end.checked_sub_signed(Duration::days(i64::from(days)))
                .ok_or_else(|| {
                    PlanError(format!("a lookback of {days} days reaches before any date"))
                })?
        }
    };
    if start >= end {
        return Err(PlanError(format!(
            "start {} is not before end {}",
            start.to_rfc3339(),
            end.to_rfc3339()
        )));
    }
    if end > trunc(now) {
        return Err(PlanError(format!(
            "end {} is in the future; a backfill window must be closed (now is {})",
            end.to_rfc3339(),
            trunc(now).to_rfc3339()
        )));
    }
    Ok(Window::new(start, end))
}

/// The tables a backfill asks for, in the order asked; every table (priority first) when
/// none is named. Refuses unknown and repeated names.
fn requested_tables<'a>(
    endpoints: &'a ServiceEndpoints,
    bf: &BackfillConfig,
    req: &PlanRequest,
) -> Result<Vec<&'a EndpointDef>, PlanError> {
    if req.tables.is_empty() {
        let mut defs: Vec<_> = endpoints.endpoints.iter().collect();
        sort_by_priority(&mut defs, bf, req.service);
        return Ok(defs);
    }
    let mut defs: Vec<&EndpointDef> = Vec::new();
    for name in &req.tables {
        let def = find_table(endpoints, req.service, name)?;
        if defs.iter().any(|d| d.table_name == def.table_name) {
            return Err(PlanError(format!("table '{name}' is listed twice")));
        }
        defs.push(def);
    }
    Ok(defs)
}

/// The endpoint of table `name`, or an error listing the known ones.
fn find_table<'a>(
    endpoints: &'a ServiceEndpoints,
    service: Service,
    name: &str,
) -> Result<&'a EndpointDef, PlanError> {
    endpoints.find(name).ok_or_else(|| {
        PlanError(format!(
            "unknown table '{name}' for {service} (known: {})",
            endpoints.names().join(", ")
        ))
    })
}

/// The service's priority endpoints first, in their configured order; the rest after.
fn sort_by_priority(defs: &mut [&EndpointDef], bf: &BackfillConfig, service: Service) {
    let prio = bf.priority_endpoints(service);
    defs.sort_by_key(|d| prio.iter().position(|p| *p == d.path).unwrap_or(usize::MAX));
}

/// The page size of `table` of `service` (1,000 when unknown), for estimates.
pub fn page_size(config: &Config, service: Service, table: &str) -> u32 {
    config
        .endpoints(service)
        .and_then(|e| e.find(table))
        .map_or(1000, |e| e.page_size)
}

fn table_plan(d: &EndpointDef, windows: Vec<Window>) -> TablePlan {
    TablePlan {
        table: d.table_name.clone(),
        path: d.path.clone(),
        windows,
        records: None,
        skipped: Vec::new(),
    }
}

impl Plan {
    pub fn total_chunks(&self) -> usize {
        self.tables.iter().map(|t| t.windows.len()).sum()
    }

    /// The job and chunk rows this plan becomes.
    pub fn to_job(&self, now: DateTime<Utc>) -> (Job, Vec<Chunk>) {
        let id = match self.kind {
            JobKind::Backfill => job_id(&self.tenant_id, self.service, self.window.start),
            JobKind::Sync => sync_job_id(&self.tenant_id, self.service, self.window.end),
        };
        let chunks: Vec<Chunk> = self
            .tables
            .iter()
            .flat_map(|t| {
                let id = id.clone();
                t.windows.iter().enumerate().map(move |(i, w)| {
                    Chunk::new(
                        ChunkKey {
                            job_id: id.clone(),
                            table: t.table.clone(),
                            seq: i as u32,
                        },
                        *w,
                    )
                })
            })
            .collect();
        let job = Job {
            job_id: id,
            tenant_id: self.tenant_id.clone(),
            service: self.service,
            tables: self.tables.iter().map(|t| t.table.clone()).collect(),
            status: JobStatus::Pending,
            window: self.window,
            chunk_size_days: self.chunk_size_days,
            max_attempts: self.max_attempts,
            total_chunks: chunks.len() as u32,
            completed_chunks: 0,
            failed_chunks: 0,
            records: 0,
            created_at: now,
            updated_at: now,
            finished_at: None,
            skipped_fields: self
                .tables
                .iter()
                .flat_map(|t| t.skipped.iter().map(move |c| format!("{}.{c}", t.table)))
                .collect(),
        };
        (job, chunks)
    }
}

/// API calls and time a plan needs under its rate limit.
#[derive(Clone, Debug, Serialize)]
pub struct Estimate {
    /// Calls when record counts are known (given, or the plan's own from sizing windows by
    /// counts), else the floor of one call per window; count calls included.
    pub api_calls: u64,
    /// Count requests among `api_calls`: those that size the windows (made again by a trigger).
    pub count_calls: u64,
    pub counted: bool,
    pub records: Option<u64>,
    /// Seconds at the configured rate, `None` without a limit.
    pub duration_secs: Option<f64>,
}

/// The fewest calls that read `records` with forward-only pages of `page_size`: every full
/// page, plus the short (possibly empty) page that proves the window is exhausted.
pub fn calls_for(records: u64, page_size: u32) -> u64 {
    (records / u64::from(page_size.max(1))).saturating_add(1)
}

/// The plan's cost: with `counts` (one per window, asked for separately) or the plan's own
/// counts (every table's windows sized by counts), the pages those records take plus the
/// count requests that sized the windows; otherwise one call per window.
pub fn estimate(
    plan: &Plan,
    counts: Option<&[(String, Vec<u64>)]>,
    page_size_of: impl Fn(&str) -> u32,
) -> Estimate {
    let own: Option<Vec<(String, Vec<u64>)>> = plan
        .tables
        .iter()
        .map(|t| t.records.clone().map(|r| (t.table.clone(), r)))
        .collect();
    let counts = counts.or(own.as_deref());
    // The job's own count calls (a trigger sizes its windows the same way); counts asked
    // for only to estimate (`plan --count`) are not the job's.
    let count_calls = plan.count_calls;
    let (page_calls, records) = match counts {
        Some(counts) => {
            let mut calls = 0;
            let mut records = 0;
            for (table, per_window) in counts {
                let ps = page_size_of(table);
                // Counts come from the source: saturating, so no answer overflows the sums.
                for n in per_window {
                    calls = calls_for(*n, ps).saturating_add(calls);
                    records = n.saturating_add(records);
                }
            }
            (calls, Some(records))
        }
        None => (plan.total_chunks() as u64, None),
    };
    let api_calls = page_calls.saturating_add(count_calls);
    Estimate {
        api_calls,
        count_calls,
        counted: counts.is_some(),
        records,
        duration_secs: plan
            .rate_limit_per_minute
            .map(|rpm| api_calls as f64 * 60.0 / f64::from(rpm)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    fn assert_exact_cover(outer: Window, windows: &[Window]) {
        assert_eq!(windows.first().unwrap().start, outer.start);
        assert_eq!(windows.last().unwrap().end, outer.end);
        for pair in windows.windows(2) {
            assert_eq!(
                pair[0].end, pair[1].start,
                "gap or overlap between {} and {}",
                pair[0], pair[1]
            );
        }
        assert!(windows.iter().all(|w| w.start < w.end));
    }

    #[test]
    fn a_step_past_the_last_date_ends_at_the_window_end() {
        let outer = Window::new(
            DateTime::<Utc>::MAX_UTC - Duration::days(10),
            DateTime::<Utc>::MAX_UTC,
        );
        let w = chunk_windows(outer, u32::MAX);
        assert_eq!(w, vec![outer]);
    }

    #[test]
    fn uneven_ranges_end_with_a_short_window() {
        let outer = Window::new(t(2023, 1, 1), t(2023, 3, 15));
        let w = chunk_windows(outer, 30);
        assert_eq!(w.len(), 3);
        assert_eq!(w[1], Window::new(t(2023, 1, 31), t(2023, 3, 2)));
        assert_eq!(w[2], Window::new(t(2023, 3, 2), t(2023, 3, 15)));
        assert_exact_cover(outer, &w);
    }

    #[test]
    fn leap_days_are_covered_once() {
        let outer = Window::new(t(2024, 2, 27), t(2024, 3, 3));
        let w = chunk_windows(outer, 1);
        assert_eq!(w.len(), 5);
        assert!(
            w.iter()
                .any(|w| w.start == t(2024, 2, 29) && w.end == t(2024, 3, 1))
        );
        assert_exact_cover(outer, &w);
        // A range across a leap year: 366 one-day windows.
        assert_eq!(
            chunk_windows(Window::new(t(2024, 1, 1), t(2025, 1, 1)), 1).len(),
            366
        );
    }

    #[test]
    fn odd_instants_are_kept_exactly() {
        let start = Utc.with_ymd_and_hms(2023, 5, 17, 13, 45, 7).unwrap();
        let end = Utc.with_ymd_and_hms(2023, 9, 2, 2, 3, 4).unwrap();
        let w = chunk_windows(Window::new(start, end), 7);
        assert_exact_cover(Window::new(start, end), &w);
        let total: i64 = w.iter().map(|w| (w.end - w.start).num_seconds()).sum();
        assert_eq!(total, (end - start).num_seconds());
    }

    #[test]
    fn every_chunk_size_covers_exactly() {
        let outer = Window::new(t(2022, 12, 31), t(2024, 3, 1));
        for days in [1, 2, 7, 13, 30, 31, 365, 10_000] {
            let w = chunk_windows(outer, days);
            assert_exact_cover(outer, &w);
            assert!(
                w.iter()
                    .all(|x| x.end - x.start <= Duration::days(days as i64))
            );
        }
    }

    #[test]
    fn counts_at_the_top_of_the_range_saturate_instead_of_overflowing() {
        let outer = Window::new(t(2024, 1, 1), t(2024, 3, 1));
        let mut plan = Plan {
            kind: JobKind::Backfill,
            tenant_id: "acme".into(),
            service: Service::Connectwise,
            window: outer,
            end_is_default: false,
            chunk_size_days: 30,
            rate_limit_per_minute: Some(60),
            max_attempts: 3,
            tables: vec![],
            count_calls: u64::MAX,
            fields_checked: false,
        };
        let windows = chunk_windows(outer, 30);
        let records = Some(vec![u64::MAX; windows.len()]);
        plan.tables.push(TablePlan {
            table: "tickets".into(),
            path: "service/tickets".into(),
            windows,
            records,
            skipped: Vec::new(),
        });
        let est = estimate(&plan, None, |_| 1);
        assert_eq!((est.api_calls, est.records), (u64::MAX, Some(u64::MAX)));
    }

    #[test]
    fn minimum_calls_count_the_closing_page() {
        assert_eq!(calls_for(0, 1000), 1);
        assert_eq!(calls_for(999, 1000), 1);
        assert_eq!(calls_for(1000, 1000), 2);
        assert_eq!(calls_for(2500, 1000), 3);
    }

    #[test]
    fn tables_follow_their_dependencies_and_keep_priority_otherwise() {
        let t = |name: &str, deps: &[&str]| -> (String, Vec<String>) {
            (name.into(), deps.iter().map(|d| d.to_string()).collect())
        };
        let names = |v: Vec<(String, Vec<String>)>| -> Vec<String> {
            v.into_iter().map(|(n, _)| n).collect()
        };
        let ordered = order_by_dependencies(
            vec![
                t("tickets", &["companies", "contacts"]),
                t("time_entries", &["tickets"]),
                t("companies", &[]),
                t("contacts", &["companies"]),
            ],
            |(_, d)| d.as_slice(),
            |(n, _)| n,
        );
        assert_eq!(
            names(ordered),
            ["companies", "contacts", "tickets", "time_entries"]
        );
        // A dependency outside the job is ignored.
        let ordered = order_by_dependencies(
            vec![
                t("time_entries", &["tickets"]),
                t("contacts", &["companies"]),
            ],
            |(_, d)| d.as_slice(),
            |(n, _)| n,
        );
        assert_eq!(names(ordered), ["time_entries", "contacts"]);
    }

    #[test]
    fn job_ids_are_readable() {
        assert_eq!(
            job_id("tenant123", Service::Connectwise, t(2024, 1, 1)),
            "backfill_tenant123_connectwise_20240101"
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// Fixed windows cover `[start, end)` exactly, in order, none empty or longer than
            /// the chunk size, for arbitrary instants (to the second) and chunk sizes.
            #[test]
            fn fixed_windows_cover_the_range_exactly(
                start in -2_000_000_000i64..4_000_000_000,
                len in 1i64..2_000_000_000,
                days in 0u32..=u32::MAX,
            ) {
                let s = DateTime::from_timestamp(start, 0).unwrap();
                let w = Window::new(s, DateTime::from_timestamp(start + len, 0).unwrap());
                let out = chunk_windows(w, days);
                prop_assert_eq!(out.first().unwrap().start, w.start);
                prop_assert_eq!(out.last().unwrap().end, w.end);
                for pair in out.windows(2) {
                    prop_assert_eq!(pair[0].end, pair[1].start);
                }
                let step = Duration::days(i64::from(days.max(1)));
                for c in &out {
                    prop_assert!(c.start < c.end && c.end - c.start <= step, "{}", c);
                }
            }
        }
    }
}
