//! `backfill_config.json`: defaults, per-service settings, tenant overrides, scheduling
//! and monitoring thresholds.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use super::{ConfigError, ServiceEndpoints, TenantsRegistry, decode, read_json};
use crate::domain::Service;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillConfig {
    pub default_settings: DefaultSettings,
    #[serde(deserialize_with = "by_service")]
    pub service_settings: BTreeMap<Service, ServiceSettings>,
    #[serde(default, deserialize_with = "tenant_overrides_by_service")]
    pub tenant_overrides: BTreeMap<String, BTreeMap<Service, TenantOverride>>,
    pub scheduling: Scheduling,
    pub monitoring: Monitoring,
    #[serde(default)]
    pub smart_chunking: SmartChunking,
    #[serde(default)]
    pub compaction: Compaction,
}

/// Raw compaction after a job completes (`engine::compact`): small parts of finished windows
/// are rewritten into files of at least `target_file_mb` (or all that is left).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Compaction {
    /// Compact after every completed job (`avesa-console compact` works either way).
    pub enabled: bool,
    pub target_file_mb: u64,
}

/// `compaction.target_file_mb` when the configuration leaves it out.
pub const DEFAULT_COMPACT_TARGET_MB: u64 = 64;
/// Allowed `compaction.target_file_mb`.
pub const COMPACT_TARGET_MB: RangeInclusive<u64> = 1..=4096;

impl Default for Compaction {
    fn default() -> Self {
        Compaction {
            enabled: true,
            target_file_mb: DEFAULT_COMPACT_TARGET_MB,
        }
    }
}

/// Chunk sizes in days, wherever set (a default, a service, an override, `--chunk-size-days`).
pub const CHUNK_SIZE_DAYS: RangeInclusive<u64> = 1..=3650;
/// Lookbacks in days: a hundred years at most.
pub const LOOKBACK_DAYS: RangeInclusive<u64> = 1..=36_500;
/// Requests per minute of a rate limit.
pub const RATE_PER_MINUTE: RangeInclusive<u64> = 1..=1_000_000;

/// A map keyed by service, read through string keys so that an error inside it names the
/// service in its JSON path (an enum key would show as `?`).
pub(super) fn by_service<'de, D, V>(d: D) -> Result<BTreeMap<Service, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    BTreeMap::<String, V>::deserialize(d)?
        .into_iter()
        .map(|(key, v)| Ok((key.parse().map_err(serde::de::Error::custom)?, v)))
        .collect()
}

/// `tenant_overrides`: tenant → service → override, services read as `by_service` does.
fn tenant_overrides_by_service<'de, D>(
    d: D,
) -> Result<BTreeMap<String, BTreeMap<Service, TenantOverride>>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Services(#[serde(deserialize_with = "by_service")] BTreeMap<Service, TenantOverride>);
    Ok(BTreeMap::<String, Services>::deserialize(d)?
        .into_iter()
        .map(|(tenant, Services(services))| (tenant, services))
        .collect())
}

/// Windows sized by how many records they hold (on by default): the planner asks the source
/// for counts (one grouped query per table where the API has one, else a count of the whole
/// range), halves a stretch holding more than `target_records_per_window` (down to
/// `min_window_hours`) and merges neighbours while together they hold at most the target.
/// Without counts (disabled, or the count fails) windows are `chunk_size_days` long.
///
/// The default target, 20,000 records, is 20 full pages of the largest page ConnectWise and
/// ServiceNow serve (1,000) and 10 of Salesforce's (2,000): a window costs at most one call
/// beyond its records' pages (the closing page), so the overhead stays at or under 5-10 %,
/// while a table of a million records still gets 50 windows to run in parallel and a table
/// of 2,000 gets one.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmartChunking {
    pub enabled: bool,
    pub target_records_per_window: u64,
    pub min_window_hours: u32,
}

impl Default for SmartChunking {
    fn default() -> Self {
        SmartChunking {
            enabled: true,
            target_records_per_window: 20_000,
            min_window_hours: 1,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultSettings {
    pub chunk_size_days: u32,
    pub max_concurrent_jobs: u32,
    pub retry_attempts: u32,
    pub timeout_hours: u32,
    #[serde(default = "default_lookback")]
    pub lookback_days: u32,
    /// First retry delay of a failed chunk; doubles on each further attempt.
    #[serde(default = "default_backoff")]
    pub retry_backoff_seconds: f64,
    /// Retries of one API request on retryable errors (429, 5xx, resets) before the chunk
    /// attempt fails.
    #[serde(default = "default_request_retries")]
    pub request_retries: u32,
    /// First delay between request retries; doubles each time, with jitter, unless the
    /// server says `Retry-After`.
    #[serde(default = "default_request_retry_ms")]
    pub request_retry_min_delay_ms: u64,
    /// Consecutive failed requests to one tenant's service that open its circuit breaker.
    #[serde(default = "default_breaker_failures")]
    pub circuit_breaker_failures: u32,
    /// How long an open breaker waits before letting one probe request through.
    #[serde(default = "default_breaker_cooldown")]
    pub circuit_breaker_cooldown_seconds: f64,
    /// The longest a server's `Retry-After` is obeyed; a longer one is cut to this.
    #[serde(default = "default_max_retry_after")]
    pub max_retry_after_seconds: u64,
    /// The largest API answer read, in MB: a body announced or grown beyond it is not read
    /// further and fails the request (an endless or absurd answer never grows the process).
    #[serde(default = "default_max_response_mb")]
    pub max_response_mb: u64,
    /// The longest one API request may take, from sending it to the last byte of its body.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// How long credentials read from AWS Secrets Manager or SSM Parameter Store are used
    /// before they are read again (a 401 reads them again at once); 0 reads them for every
    /// connection.
    #[serde(default = "default_credentials_cache")]
    pub credentials_cache_seconds: u64,
}

/// The longest first retry delay of a failed chunk (it doubles from there), one day: a longer
/// one would push the retry past any date the clock can hold.
pub const MAX_RETRY_BACKOFF_SECONDS: f64 = 86_400.0;

/// `max_daily_api_share` when a service's settings leave it out.
pub const DEFAULT_MAX_API_SHARE: f64 = 0.5;

fn default_max_retry_after() -> u64 {
    900
}

/// `max_response_mb` when the file leaves it out: well above the largest page the APIs serve
/// (a thousand wide records), far below what would strain the host.
pub const DEFAULT_MAX_RESPONSE_MB: u64 = 64;
/// `max_response_mb`'s range.
pub const MAX_RESPONSE_MB: RangeInclusive<u64> = 1..=4096;
/// `request_timeout_seconds` when the file leaves it out.
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: u64 = 120;
/// `request_timeout_seconds`' range.
pub const REQUEST_TIMEOUT_SECONDS: RangeInclusive<u64> = 1..=3600;

/// `credentials_cache_seconds` when the file leaves it out.
pub const DEFAULT_CREDENTIALS_CACHE_SECONDS: u64 = 300;
/// `credentials_cache_seconds`' range: at most a day.
pub const CREDENTIALS_CACHE_SECONDS: RangeInclusive<u64> = 0..=86_400;

fn default_credentials_cache() -> u64 {
    DEFAULT_CREDENTIALS_CACHE_SECONDS
}

fn default_max_response_mb() -> u64 {
    DEFAULT_MAX_RESPONSE_MB
}
fn default_request_timeout() -> u64 {
    DEFAULT_REQUEST_TIMEOUT_SECONDS
}

fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> f64 {
    30.0
}

fn default_request_retries() -> u32 {
    5
}
fn default_request_retry_ms() -> u64 {
    500
}

fn default_lookback() -> u32 {
    365
}
fn default_backoff() -> f64 {
    2.0
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    pub default_lookback_days: u32,
    pub chunk_size_days: u32,
    pub rate_limit_requests_per_minute: u32,
    #[serde(default)]
    pub priority_endpoints: Vec<String>,
    /// Salesforce only: windows holding more records than this are read with a Bulk API 2.0
    /// query job.
    #[serde(default)]
    pub bulk_query_threshold: Option<u64>,
    /// The most of the API allocation left to it (the org's daily requests, ServiceNow's
    /// hourly budget) that one job may spend: its own calls ≤ share × (limit − calls used by
    /// others). Default 0.5; range (0, 1].
    #[serde(default)]
    pub max_daily_api_share: Option<f64>,
    /// Table name → tables of the same service whose chunks must all finish first (the
    /// tickets of a company refer to it: `"tickets": ["companies"]`).
    #[serde(default)]
    pub table_dependencies: BTreeMap<String, Vec<String>>,
    /// Requests of this service in flight at once per tenant (windows of a table run in
    /// parallel up to what the rate limit and the observed latency need). Salesforce allows
    /// at most 25 concurrent long-running requests per org.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// Raw pulls of a table wait until its `table_dependencies` have landed (otherwise the
    /// dependencies order only the transform and the hand-off).
    #[serde(default)]
    pub strict_table_order: bool,
    /// A declared field the integration user cannot read (by the API's schema description)
    /// fails the job's creation and `check`, instead of being left out of the query with a
    /// warning (its canonical column then stays null).
    #[serde(default)]
    pub strict_fields: bool,
}

fn default_max_in_flight() -> u32 {
    8
}

/// `max_in_flight`'s range, and Salesforce's cap (its concurrent long-running requests).
pub const MAX_IN_FLIGHT: RangeInclusive<u64> = 1..=64;
pub const SALESFORCE_MAX_IN_FLIGHT: u64 = 25;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantOverride {
    pub lookback_days: Option<u32>,
    pub chunk_size_days: Option<u32>,
    pub rate_limit_requests_per_minute: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheduling {
    /// Off-peak window start, `HH:MM` in UTC.
    pub off_peak_start: String,
    /// Off-peak window end, `HH:MM` in UTC (may be before the start: the window wraps midnight).
    pub off_peak_end: String,
    pub max_parallel_tenants: u32,
    pub auto_triggered_wait_for_off_peak: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    pub progress_update_frequency_chunks: u32,
    pub alert_consecutive_chunk_failures: u32,
    pub alert_job_duration_hours: u32,
    pub alert_completion_rate_below: f64,
    pub cleanup_completed_jobs_after_days: u32,
}

/// A JSON path in the file and what is wrong there.
type Problem = (String, String);

/// An integer setting: its JSON path, value and allowed range.
type Setting = (String, u64, RangeInclusive<u64>);

/// The problem at `path`, for the `check_*` steps of `validate`.
fn err(path: String, reason: &str) -> Result<(), Problem> {
    Err((path, reason.to_string()))
}

/// The problem at `path` when `value` is outside `range`, naming the range.
fn check_range(path: String, value: u64, range: RangeInclusive<u64>) -> Result<(), Problem> {
    if range.contains(&value) {
        return Ok(());
    }
    let reason = format!(
        "must be at least {} and at most {} (got {value})",
        range.start(),
        range.end()
    );
    Err((path, reason))
}

impl BackfillConfig {
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let cfg: BackfillConfig = decode(file, read_json(file)?)?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        self.check_integers()
            .and_then(|()| self.check_defaults())
            .and_then(|()| self.check_schedule_and_monitoring())
            .map_err(|(path, reason)| ConfigError::invalid(file, path, reason))
    }

    fn check_defaults(&self) -> Result<(), Problem> {
        let d = &self.default_settings;
        if !(d.circuit_breaker_cooldown_seconds.is_finite()
            && (0.0..=86_400.0).contains(&d.circuit_breaker_cooldown_seconds))
        {
            return err(
                "$.default_settings.circuit_breaker_cooldown_seconds".into(),
                "must be a number of seconds between 0 and 86400",
            );
        }
        let backoff = d.retry_backoff_seconds;
        if !(backoff.is_finite() && (0.0..=MAX_RETRY_BACKOFF_SECONDS).contains(&backoff)) {
            return err(
                "$.default_settings.retry_backoff_seconds".into(),
                &format!(
                    "must be a number of seconds between 0 and {MAX_RETRY_BACKOFF_SECONDS} (got {backoff})"
                ),
            );
        }
        for (svc, s) in &self.service_settings {
            if let Some(share) = s.max_daily_api_share
                && !(share.is_finite() && share > 0.0 && share <= 1.0)
            {
                return err(
                    format!("$.service_settings.{svc}.max_daily_api_share"),
                    &format!("{share} is out of range: must be above 0 and at most 1"),
                );
            }
        }
        Ok(())
    }

    /// Every integer setting within its range.
    fn check_integers(&self) -> Result<(), Problem> {
        let all = (self.default_integers().into_iter())
            .chain(self.service_integers())
            .chain(self.override_integers())
            .chain(self.schedule_and_monitoring_integers());
        for (path, value, range) in all {
            check_range(path, value, range)?;
        }
        Ok(())
    }

    fn default_integers(&self) -> Vec<Setting> {
        let d = &self.default_settings;
        let at =
            |field: &str, value: u64, range| (format!("$.default_settings.{field}"), value, range);
        vec![
            at("chunk_size_days", d.chunk_size_days.into(), CHUNK_SIZE_DAYS),
            at(
                "max_concurrent_jobs",
                d.max_concurrent_jobs.into(),
                1..=1000,
            ),
            at("retry_attempts", d.retry_attempts.into(), 1..=100),
            at("timeout_hours", d.timeout_hours.into(), 0..=8760),
            at("lookback_days", d.lookback_days.into(), LOOKBACK_DAYS),
            at("request_retries", d.request_retries.into(), 0..=100),
            at(
                "request_retry_min_delay_ms",
                d.request_retry_min_delay_ms,
                0..=3_600_000,
            ),
            at(
                "circuit_breaker_failures",
                d.circuit_breaker_failures.into(),
                0..=1_000_000,
            ),
            at(
                "max_retry_after_seconds",
                d.max_retry_after_seconds,
                1..=86_400,
            ),
            at("max_response_mb", d.max_response_mb, MAX_RESPONSE_MB),
            at(
                "request_timeout_seconds",
                d.request_timeout_seconds,
                REQUEST_TIMEOUT_SECONDS,
            ),
            at(
                "credentials_cache_seconds",
                d.credentials_cache_seconds,
                CREDENTIALS_CACHE_SECONDS,
            ),
        ]
    }

    fn service_integers(&self) -> Vec<Setting> {
        let mut all = Vec::new();
        for (svc, s) in &self.service_settings {
            let at = |field: &str, value: u64, range| {
                (format!("$.service_settings.{svc}.{field}"), value, range)
            };
            all.extend([
                at(
                    "default_lookback_days",
                    s.default_lookback_days.into(),
                    LOOKBACK_DAYS,
                ),
                at("chunk_size_days", s.chunk_size_days.into(), CHUNK_SIZE_DAYS),
                at(
                    "rate_limit_requests_per_minute",
                    s.rate_limit_requests_per_minute.into(),
                    RATE_PER_MINUTE,
                ),
            ]);
            if let Some(t) = s.bulk_query_threshold {
                all.push(at("bulk_query_threshold", t, 0..=1_000_000_000));
            }
            let in_flight = match svc {
                Service::Salesforce => 1..=SALESFORCE_MAX_IN_FLIGHT,
                _ => MAX_IN_FLIGHT,
            };
            all.push(at("max_in_flight", s.max_in_flight.into(), in_flight));
        }
        all
    }

    /// The values a tenant override sets (an unset one takes the service's).
    fn override_integers(&self) -> Vec<Setting> {
        let mut all = Vec::new();
        for (tenant, services) in &self.tenant_overrides {
            for (svc, o) in services {
                for (field, value, range) in [
                    ("lookback_days", o.lookback_days, LOOKBACK_DAYS),
                    ("chunk_size_days", o.chunk_size_days, CHUNK_SIZE_DAYS),
                    (
                        "rate_limit_requests_per_minute",
                        o.rate_limit_requests_per_minute,
                        RATE_PER_MINUTE,
                    ),
                ] {
                    if let Some(v) = value {
                        let path = format!("$.tenant_overrides.{tenant}.{svc}.{field}");
                        all.push((path, v.into(), range));
                    }
                }
            }
        }
        all
    }

    fn schedule_and_monitoring_integers(&self) -> Vec<Setting> {
        let (m, sc) = (&self.monitoring, &self.smart_chunking);
        let at = |path: &str, value: u64, range| (path.to_string(), value, range);
        vec![
            at(
                "$.scheduling.max_parallel_tenants",
                self.scheduling.max_parallel_tenants.into(),
                0..=10_000,
            ),
            at(
                "$.monitoring.progress_update_frequency_chunks",
                m.progress_update_frequency_chunks.into(),
                1..=1_000_000,
            ),
            at(
                "$.monitoring.alert_consecutive_chunk_failures",
                m.alert_consecutive_chunk_failures.into(),
                0..=1_000_000,
            ),
            at(
                "$.monitoring.alert_job_duration_hours",
                m.alert_job_duration_hours.into(),
                0..=87_600,
            ),
            at(
                "$.monitoring.cleanup_completed_jobs_after_days",
                m.cleanup_completed_jobs_after_days.into(),
                0..=36_500,
            ),
            at(
                "$.smart_chunking.target_records_per_window",
                sc.target_records_per_window,
                1..=1_000_000_000,
            ),
            at(
                "$.smart_chunking.min_window_hours",
                sc.min_window_hours.into(),
                1..=87_600,
            ),
            at(
                "$.compaction.target_file_mb",
                self.compaction.target_file_mb,
                COMPACT_TARGET_MB,
            ),
        ]
    }

    fn check_schedule_and_monitoring(&self) -> Result<(), Problem> {
        for (field, value) in [
            ("off_peak_start", &self.scheduling.off_peak_start),
            ("off_peak_end", &self.scheduling.off_peak_end),
        ] {
            if chrono::NaiveTime::parse_from_str(value, "%H:%M").is_err() {
                return err(
                    format!("$.scheduling.{field}"),
                    &format!("'{value}' is not a time of day HH:MM"),
                );
            }
        }
        let rate = self.monitoring.alert_completion_rate_below;
        if !(0.0..=1.0).contains(&rate) {
            return err(
                "$.monitoring.alert_completion_rate_below".into(),
                "must be between 0 and 1",
            );
        }
        Ok(())
    }

    /// Checks names that refer to other files: priority endpoints (an unknown one is an
    /// error) and overridden tenants (an unknown one is a warning, returned: removing a tenant
    /// from the registry must not need an edit here too; its overrides apply to nothing).
    pub(super) fn check_against(
        &self,
        file: &Path,
        endpoints: &[ServiceEndpoints],
        tenants: &TenantsRegistry,
    ) -> Result<Vec<String>, ConfigError> {
        for (svc, s) in &self.service_settings {
            let Some(defs) = endpoints.iter().find(|e| e.service == *svc) else {
                continue;
            };
            let is_table = |t: &str| defs.endpoints.iter().any(|e| e.table_name == t);
            let tables: Vec<&str> = defs
                .endpoints
                .iter()
                .map(|e| e.table_name.as_str())
                .collect();
            for (table, deps) in &s.table_dependencies {
                let at = format!("$.service_settings.{svc}.table_dependencies.{table}");
                if !is_table(table) {
                    return Err(ConfigError::invalid(
                        file,
                        at,
                        format!(
                            "'{table}' is not a table of {svc} (known: {})",
                            tables.join(", ")
                        ),
                    ));
                }
                for (i, d) in deps.iter().enumerate() {
                    if !is_table(d) || d == table {
                        return Err(ConfigError::invalid(
                            file,
                            format!("{at}[{i}]"),
                            format!(
                                "'{d}' is not another table of {svc} (known: {})",
                                tables.join(", ")
                            ),
                        ));
                    }
                }
            }
            if let Some(cycle) = dependency_cycle(&s.table_dependencies) {
                return Err(ConfigError::invalid(
                    file,
                    format!("$.service_settings.{svc}.table_dependencies"),
                    format!(
                        "tables depend on each other in a circle: {}",
                        cycle.join(" -> ")
                    ),
                ));
            }
            for (i, name) in s.priority_endpoints.iter().enumerate() {
                if defs.find(name).is_none() {
                    return Err(ConfigError::invalid(
                        file,
                        format!("$.service_settings.{svc}.priority_endpoints[{i}]"),
                        format!(
                            "'{name}' is not an endpoint of {svc} (known: {})",
                            defs.names().join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(self
            .tenant_overrides
            .keys()
            .filter(|tenant| tenants.get(tenant).is_none())
            .map(|tenant| {
                format!(
                    "{}: $.tenant_overrides.{tenant}: tenant '{tenant}' is not in the tenants \
                     registry; its overrides are ignored",
                    file.display()
                )
            })
            .collect())
    }

    fn override_for(&self, tenant: &str, service: Service) -> Option<&TenantOverride> {
        self.tenant_overrides
            .get(tenant)
            .and_then(|m| m.get(&service))
    }

    /// Chunk size: tenant override, else service setting, else the default.
    pub fn chunk_size_days(&self, tenant: &str, service: Service) -> u32 {
        self.override_for(tenant, service)
            .and_then(|o| o.chunk_size_days)
            .or_else(|| {
                self.service_settings
                    .get(&service)
                    .map(|s| s.chunk_size_days)
            })
            .unwrap_or(self.default_settings.chunk_size_days)
    }

    pub fn lookback_days(&self, tenant: &str, service: Service) -> u32 {
        self.override_for(tenant, service)
            .and_then(|o| o.lookback_days)
            .or_else(|| {
                self.service_settings
                    .get(&service)
                    .map(|s| s.default_lookback_days)
            })
            .unwrap_or(self.default_settings.lookback_days)
    }

    /// Requests per minute, or `None` where no limit is configured for the service.
    pub fn rate_limit_per_minute(&self, tenant: &str, service: Service) -> Option<u32> {
        self.override_for(tenant, service)
            .and_then(|o| o.rate_limit_requests_per_minute)
            .or_else(|| {
                self.service_settings
                    .get(&service)
                    .map(|s| s.rate_limit_requests_per_minute)
            })
    }

    /// Tables of `service` that must finish before `table` starts within a job.
    /// The share of the API allocation left to it that one job of `service` may spend
    /// (`max_daily_api_share`, default 0.5).
    pub fn max_api_share(&self, service: Service) -> f64 {
        self.service_settings
            .get(&service)
            .and_then(|s| s.max_daily_api_share)
            .unwrap_or(DEFAULT_MAX_API_SHARE)
    }

    pub fn table_dependencies(&self, service: Service, table: &str) -> &[String] {
        self.service_settings
            .get(&service)
            .and_then(|s| s.table_dependencies.get(table))
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }

    /// Requests of `service` a tenant may have in flight at once (8 when unconfigured).
    pub fn max_in_flight(&self, service: Service) -> u32 {
        self.service_settings
            .get(&service)
            .map_or_else(default_max_in_flight, |s| s.max_in_flight)
    }

    /// Whether raw pulls of `service`'s tables wait for their dependencies.
    pub fn strict_table_order(&self, service: Service) -> bool {
        self.service_settings
            .get(&service)
            .is_some_and(|s| s.strict_table_order)
    }

    /// Whether a declared field the integration user cannot read is an error (else it is
    /// left out of the query with a warning).
    pub fn strict_fields(&self, service: Service) -> bool {
        self.service_settings
            .get(&service)
            .is_some_and(|s| s.strict_fields)
    }

    pub fn priority_endpoints(&self, service: Service) -> &[String] {
        self.service_settings
            .get(&service)
            .map(|s| s.priority_endpoints.as_slice())
            .unwrap_or(&[])
    }
}

/// A circle in a dependency map, as the tables walked (first repeated at the end).
fn dependency_cycle(deps: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit<'a>(
        t: &'a str,
        deps: &'a BTreeMap<String, Vec<String>>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::HashSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| *p == t) {
            let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
            cycle.push(t.to_string());
            return Some(cycle);
        }
        if !done.insert(t) {
            return None;
        }
        path.push(t);
        for d in deps.get(t).into_iter().flatten() {
            if let Some(c) = visit(d, deps, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = std::collections::HashSet::new();
    deps.keys()
        .find_map(|t| visit(t, deps, &mut Vec::new(), &mut done))
}
