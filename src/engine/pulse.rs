//! The pulse: what every job did in the last minutes, from counters the engine records, and
//! the ETA that follows from it.
//!
//! Recording: each page request a chunk's fetcher sends, each refusal of one for a rate limit
//! and each record landed in a part is added in memory to the bucket (`store::pulse`) of its
//! tenant, service and job. The counts go to the store as increments: a flush writes one row
//! per (job, bucket) touched since the last flush, started by the recording itself once
//! `FLUSH_EVERY` has passed (on a task of its own, so no request waits for it), and at the end
//! of `run_job` and of each cloud worker message. So the store's cost grows with flushes and
//! jobs, never with requests or chunks; a flush that fails keeps its counts for the next one.
//! The flusher prunes buckets older than `store::pulse::KEEP_SECS` every `PRUNE_EVERY`.
//!
//! Reading: `Engine::read_pulse` asks the store for the last `store::pulse::WINDOW_SECS` of
//! buckets of every job and process, and `build` (pure) turns them into per tenant + service
//! and per job series with their rates and ETAs, for the console's snapshot.
//!
//! The ETA (`eta`, `remaining_calls`) lives here alone: the calls a job still needs, as its
//! plan counts them (`planner::calls_for`: the pages of a window's records, plus the page that
//! proves it exhausted; one call per window before any window has finished), over the request
//! rate the job achieved in the last `RATE_SPAN_SECS`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::domain::{Job, JobStatus, Service};
use crate::engine::Engine;
use crate::engine::planner::calls_for;
use crate::store::pulse::{BUCKET_SECS, KEEP_SECS, WINDOW_SECS, bucket_of};
use crate::store::{PulseCounts, PulseRow};

/// How long counts wait in memory at most while requests go on (ms).
pub const FLUSH_EVERY_MS: i64 = 5_000;
/// How often a process prunes old buckets (ms).
const PRUNE_EVERY_MS: i64 = 600_000;
/// The span the achieved rates (and so the ETA) are measured over: the last complete buckets.
pub const RATE_SPAN_SECS: i64 = 120;
/// Buckets in the pulse window.
pub const BUCKETS: usize = (WINDOW_SECS / BUCKET_SECS) as usize;

/// Whose counts: a job of a tenant's service.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PulseJob {
    pub tenant_id: String,
    pub service: Service,
    pub job_id: String,
}

impl PulseJob {
    pub fn of(job: &Job) -> Self {
        PulseJob {
            tenant_id: job.tenant_id.clone(),
            service: job.service,
            job_id: job.job_id.clone(),
        }
    }
}

/// This process's counts not yet in the store.
#[derive(Default)]
pub(crate) struct Recorder {
    pending: Mutex<HashMap<(PulseJob, i64), PulseCounts>>,
    last_flush_ms: AtomicI64,
    last_prune_ms: AtomicI64,
    flushing: tokio::sync::Mutex<()>,
}

impl Recorder {
    fn add(&self, who: &PulseJob, bucket: i64, delta: &PulseCounts) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.entry((who.clone(), bucket)).or_default().add(delta);
    }

    fn take(&self) -> Vec<PulseRow> {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        taken
            .into_iter()
            .map(|((who, bucket), counts)| PulseRow {
                tenant_id: who.tenant_id,
                service: who.service,
                job_id: who.job_id,
                bucket,
                counts,
            })
            .collect()
    }

    fn put_back(&self, rows: Vec<PulseRow>) {
        for r in rows {
            let who = PulseJob {
                tenant_id: r.tenant_id,
                service: r.service,
                job_id: r.job_id,
            };
            self.add(&who, r.bucket, &r.counts);
        }
    }

    /// Whether a flush is due at `now_ms`; claims it when so (one flush task at a time).
    fn claim_due(&self, now_ms: i64) -> bool {
        let last = self.last_flush_ms.load(Ordering::Relaxed);
        now_ms - last >= FLUSH_EVERY_MS
            && self
                .last_flush_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl Engine {
    fn recorder(&self) -> &Recorder {
        &self.inner.pulse
    }

    /// Adds `delta` to `who`'s bucket now; starts a flush when one is due.
    pub(crate) fn count_pulse(&self, who: &PulseJob, delta: PulseCounts) {
        let now_ms = self.rate_clock().now_ms();
        let rec = self.recorder();
        rec.add(who, bucket_of(now_ms.div_euclid(1000)), &delta);
        if rec.claim_due(now_ms) {
            let engine = self.clone();
            tokio::spawn(async move { engine.flush_pulse().await });
        }
    }

    /// A page request of `who` whose answer is `fut`: counted as sent, and as refused when
    /// the answer is a rate limit.
    pub(crate) async fn counted_request<T>(
        &self,
        who: &PulseJob,
        fut: impl std::future::Future<Output = Result<T, crate::sources::SourceError>>,
    ) -> Result<T, crate::sources::SourceError> {
        let result = fut.await;
        let limited = matches!(&result, Err(e) if e.is_rate_limited());
        self.count_pulse(
            who,
            PulseCounts {
                requests: 1,
                rate_limited: u64::from(limited),
                records: 0,
            },
        );
        result
    }

    /// Writes the counts kept in memory to the store as increments (a failed write keeps them
    /// for the next flush), and prunes old buckets when that is due.
    pub async fn flush_pulse(&self) {
        let rec = self.recorder();
        let _one = rec.flushing.lock().await;
        let now_ms = self.rate_clock().now_ms();
        rec.last_flush_ms.store(now_ms, Ordering::Relaxed);
        let rows = rec.take();
        if !rows.is_empty()
            && let Err(e) = self.store().add_pulse(&rows).await
        {
            tracing::warn!(error = %e, "cannot write the pulse counters; kept for the next flush");
            rec.put_back(rows);
            return;
        }
        let last = rec.last_prune_ms.load(Ordering::Relaxed);
        if now_ms - last >= PRUNE_EVERY_MS {
            rec.last_prune_ms.store(now_ms, Ordering::Relaxed);
            let before = bucket_of(now_ms.div_euclid(1000) - KEEP_SECS);
            if let Err(e) = self.store().prune_pulse(before).await {
                tracing::warn!(error = %e, "cannot prune old pulse counters");
            }
        }
    }

    /// The last `WINDOW_SECS` of every job's buckets, as the pulse view shows them.
    pub async fn read_pulse(&self, jobs: &[Job]) -> Result<Pulse, crate::store::StoreError> {
        let now = self.rate_clock().now_ms().div_euclid(1000);
        let rows = self
            .store()
            .pulse_since(bucket_of(now - WINDOW_SECS) + BUCKET_SECS)
            .await?;
        let config = self.config();
        Ok(build(
            &rows,
            jobs,
            now,
            |t, s| config.backfill.rate_limit_per_minute(t, s),
            |j| page_size_of(config, j),
        ))
    }
}

/// The page size of a job's first table, for its remaining calls.
fn page_size_of(config: &crate::config::Config, job: &Job) -> u32 {
    job.tables.first().map_or(1000, |t| {
        crate::engine::planner::page_size(config, job.service, t)
    })
}

/// The calls a job still needs as its plan counts them: per window left, the pages of the
/// records its finished windows averaged (`calls_for`), or one call per window before any
/// finished.
pub fn remaining_calls(job: &Job, page_size: u32) -> u64 {
    let done = job.completed_chunks + job.failed_chunks;
    let left = u64::from(job.total_chunks.saturating_sub(done));
    if left == 0 {
        return 0;
    }
    let per_window = match job.completed_chunks {
        0 => 1,
        n => calls_for(job.records / u64::from(n), page_size),
    };
    left.saturating_mul(per_window)
}

/// Time left for `remaining` calls at `requests_per_minute`; `None` without a rate to go by.
pub fn eta(remaining: u64, requests_per_minute: f64) -> Option<Duration> {
    if remaining == 0 {
        return Some(Duration::ZERO);
    }
    if requests_per_minute.is_nan() || requests_per_minute <= 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        (remaining as f64 * 60.0 / requests_per_minute).ceil(),
    ))
}

/// Per-bucket counts over the pulse window, oldest first (`BUCKETS` of them, the current,
/// still filling bucket last).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub buckets: Vec<PulseCounts>,
    /// Requests in the last minute of complete buckets (how an API's per-minute limit counts).
    pub requests_last_minute: u64,
    /// Requests per minute and records per second over `RATE_SPAN_SECS`.
    pub requests_per_minute: f64,
    pub records_per_second: f64,
    /// Refusals for a rate limit in the window.
    pub rate_limited: u64,
}

impl Series {
    fn empty() -> Self {
        Series {
            buckets: vec![PulseCounts::default(); BUCKETS],
            ..Series::default()
        }
    }

    fn finish(&mut self) {
        let complete = &self.buckets[..BUCKETS - 1];
        let minute = (60 / BUCKET_SECS) as usize;
        let span = (RATE_SPAN_SECS / BUCKET_SECS) as usize;
        let sum = |n: usize, f: fn(&PulseCounts) -> u64| -> u64 {
            complete.iter().rev().take(n).map(f).sum()
        };
        self.requests_last_minute = sum(minute, |c| c.requests);
        let span_secs = (span as i64 * BUCKET_SECS) as f64;
        self.requests_per_minute = sum(span, |c| c.requests) as f64 * 60.0 / span_secs;
        self.records_per_second = sum(span, |c| c.records) as f64 / span_secs;
        self.rate_limited = self.buckets.iter().map(|c| c.rate_limited).sum();
    }
}

/// One tenant's service in the pulse.
#[derive(Clone, Debug, PartialEq)]
pub struct PairPulse {
    pub tenant_id: String,
    pub service: Service,
    /// The configured requests per minute (`None`: not paced).
    pub limit_per_minute: Option<u32>,
    pub series: Series,
}

/// One job in the pulse.
#[derive(Clone, Debug, PartialEq)]
pub struct JobPulse {
    pub job_id: String,
    pub tenant_id: String,
    pub service: Service,
    pub status: Option<JobStatus>,
    pub series: Series,
    pub remaining_calls: Option<u64>,
    pub eta: Option<Duration>,
}

/// What the pulse view shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pulse {
    /// The current bucket's start (seconds since the epoch); 0: never read.
    pub now_bucket: i64,
    pub pairs: Vec<PairPulse>,
    /// Running jobs first, then the others with counts in the window, each by id.
    pub jobs: Vec<JobPulse>,
}

/// The pulse of `rows` at `now` (seconds since the epoch): a series per pair and per job that
/// ran in the window or runs now (`jobs` gives their status and plan).
pub fn build(
    rows: &[PulseRow],
    jobs: &[Job],
    now: i64,
    limit_of: impl Fn(&str, Service) -> Option<u32>,
    page_size_of: impl Fn(&Job) -> u32,
) -> Pulse {
    let now_bucket = bucket_of(now);
    let first = now_bucket - (BUCKETS as i64 - 1) * BUCKET_SECS;
    let mut pairs: BTreeMap<(String, Service), Series> = BTreeMap::new();
    let mut per_job: BTreeMap<&str, (PulseJob, Series)> = BTreeMap::new();
    for j in jobs.iter().filter(|j| j.status == JobStatus::Running) {
        per_job.insert(&j.job_id, (PulseJob::of(j), Series::empty()));
    }
    for r in rows
        .iter()
        .filter(|r| r.bucket >= first && r.bucket <= now_bucket)
    {
        let at = ((r.bucket - first) / BUCKET_SECS) as usize;
        let pair = pairs
            .entry((r.tenant_id.clone(), r.service))
            .or_insert_with(Series::empty);
        pair.buckets[at].add(&r.counts);
        let (_, s) = per_job.entry(&r.job_id).or_insert_with(|| {
            let who = PulseJob {
                tenant_id: r.tenant_id.clone(),
                service: r.service,
                job_id: r.job_id.clone(),
            };
            (who, Series::empty())
        });
        s.buckets[at].add(&r.counts);
    }
    let by_id: HashMap<&str, &Job> = jobs.iter().map(|j| (j.job_id.as_str(), j)).collect();
    let mut job_rows: Vec<JobPulse> = per_job
        .into_values()
        .map(|(who, mut series)| {
            series.finish();
            let job = by_id.get(who.job_id.as_str());
            let remaining = job.map(|j| remaining_calls(j, page_size_of(j)));
            JobPulse {
                eta: remaining.and_then(|r| eta(r, series.requests_per_minute)),
                remaining_calls: remaining,
                status: job.map(|j| j.status),
                job_id: who.job_id,
                tenant_id: who.tenant_id,
                service: who.service,
                series,
            }
        })
        .collect();
    job_rows.sort_by_key(|j| j.status != Some(JobStatus::Running));
    let pairs = pairs
        .into_iter()
        .map(|((tenant_id, service), mut series)| {
            series.finish();
            PairPulse {
                limit_per_minute: limit_of(&tenant_id, service),
                tenant_id,
                service,
                series,
            }
        })
        .collect();
    Pulse {
        now_bucket,
        pairs,
        jobs: job_rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn job(total: u32, completed: u32, failed: u32, records: u64) -> Job {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        Job {
            job_id: "backfill_acme_connectwise_20250101".into(),
            tenant_id: "acme".into(),
            service: Service::Connectwise,
            tables: vec!["tickets".into()],
            status: JobStatus::Running,
            window: crate::domain::Window::new(t, t),
            chunk_size_days: 10,
            max_attempts: 3,
            total_chunks: total,
            completed_chunks: completed,
            failed_chunks: failed,
            records,
            created_at: t,
            updated_at: t,
            finished_at: None,
            skipped_fields: Vec::new(),
        }
    }

    #[test]
    fn remaining_calls_follow_the_plans_page_rule() {
        // Nothing finished: one call per window (the plan's floor).
        assert_eq!(remaining_calls(&job(10, 0, 0, 0), 100), 10);
        // 4 windows done with 1,000 records each: 10 full pages + the last one = 11 a window.
        assert_eq!(remaining_calls(&job(10, 4, 1, 4_000), 100), 5 * 11);
        assert_eq!(remaining_calls(&job(10, 9, 1, 9_000), 100), 0);
    }

    #[test]
    fn eta_is_remaining_calls_over_the_achieved_rate() {
        assert_eq!(eta(600, 120.0), Some(Duration::from_secs(300)));
        assert_eq!(eta(1, 7.0), Some(Duration::from_secs(9)));
        assert_eq!(eta(0, 0.0), Some(Duration::ZERO));
        assert_eq!(eta(10, 0.0), None);
    }

    #[test]
    fn build_sums_pairs_and_jobs_and_measures_complete_buckets() {
        let now = 1_767_225_605; // 5 s into a bucket
        let nb = bucket_of(now);
        let row = |job: &str, back: i64, requests: u64| PulseRow {
            tenant_id: "acme".into(),
            service: Service::Connectwise,
            job_id: job.into(),
            bucket: nb - back * BUCKET_SECS,
            counts: PulseCounts {
                requests,
                rate_limited: 1,
                records: requests * 10,
            },
        };
        // 12 complete buckets (two minutes) of 10 requests, the current one with 50, and
        // one bucket too old to show.
        let mut rows: Vec<PulseRow> = (1..=12).map(|b| row("j1", b, 10)).collect();
        rows.push(row("j1", 0, 50));
        rows.push(row("j2", 3, 6));
        rows.push(row("j1", BUCKETS as i64, 1000));
        let mut j1 = job(10, 0, 0, 0);
        j1.job_id = "j1".into();
        let p = build(&rows, &[j1], now, |_, _| Some(200), |_| 100);
        assert_eq!(p.pairs.len(), 1);
        let pair = &p.pairs[0].series;
        assert_eq!(pair.buckets.len(), BUCKETS);
        assert_eq!(pair.buckets[BUCKETS - 1].requests, 50);
        assert_eq!(pair.requests_last_minute, 66);
        assert_eq!(pair.rate_limited, 14);
        let j1 = &p.jobs[0];
        assert_eq!(j1.job_id, "j1");
        assert_eq!(j1.series.requests_per_minute, 60.0);
        assert_eq!(j1.series.records_per_second, 10.0);
        assert_eq!(j1.eta, Some(Duration::from_secs(10)));
        assert_eq!(p.jobs[1].eta, None, "a job not in the list has no plan");
    }
}
