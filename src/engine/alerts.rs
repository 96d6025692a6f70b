//! Alerts from `monitoring`: more consecutive chunk failures than allowed, a job running
//! too long, a completion rate below the floor. Each is raised once per job: stored, sent
//! as an `Alert` event, logged, and written as an Embedded Metric Format record.
//!
//! The decisions are pure functions of a job's state, its chunks and an instant, so tests
//! drive them with any clock. They run on chunk events, when a job ends, every minute while
//! `run_scheduled` runs jobs, and by the `alerts` command; the store keeps one alert per (kind,
//! subject). A retried attempt leaves no trace in the job store, so the run of failed attempts is
//! a counter of its own in the lifecycle store (`chunk_attempt_ended`: an atomic increment per
//! failure, a reset per success), shared by every process working the job; an engine without a
//! lifecycle store counts in memory. The completion rate is judged once the job has ended or
//! `progress_update_frequency_chunks` chunks have finished.

use chrono::{DateTime, Utc};

use super::{Engine, EngineError, EngineEvent, metrics};
use crate::config::Monitoring;
use crate::domain::{Alert, AlertKind, Chunk, Job};

/// `> alert_consecutive_chunk_failures` failures in a row.
pub fn consecutive_failures(
    job: &Job,
    run: u32,
    m: &Monitoring,
    now: DateTime<Utc>,
) -> Option<Alert> {
    (run > m.alert_consecutive_chunk_failures).then(|| Alert {
        kind: AlertKind::ConsecutiveChunkFailures,
        subject: job.job_id.clone(),
        tenant_id: job.tenant_id.clone(),
        service: job.service,
        job_id: Some(job.job_id.clone()),
        message: format!(
            "{}: {run} chunk attempts failed in a row (alert above {})",
            job.job_id, m.alert_consecutive_chunk_failures
        ),
        value: f64::from(run),
        threshold: f64::from(m.alert_consecutive_chunk_failures),
        raised_at: now,
    })
}

/// When the job began working: its first claimed chunk, else its creation.
pub fn started_at(job: &Job, chunks: &[Chunk]) -> DateTime<Utc> {
    chunks
        .iter()
        .filter_map(|c| c.started_at)
        .min()
        .unwrap_or(job.created_at)
}

/// An active job that has been running for more than `alert_job_duration_hours`.
pub fn long_running(
    job: &Job,
    chunks: &[Chunk],
    m: &Monitoring,
    now: DateTime<Utc>,
) -> Option<Alert> {
    if !job.status.is_active() || chunks.iter().all(|c| c.started_at.is_none()) {
        return None;
    }
    let hours = (now - started_at(job, chunks)).num_seconds() as f64 / 3600.0;
    (hours > f64::from(m.alert_job_duration_hours)).then(|| Alert {
        kind: AlertKind::LongRunningJob,
        subject: job.job_id.clone(),
        tenant_id: job.tenant_id.clone(),
        service: job.service,
        job_id: Some(job.job_id.clone()),
        message: format!(
            "{}: running for {hours:.1} h (alert above {} h), {}/{} chunks done",
            job.job_id,
            m.alert_job_duration_hours,
            job.completed_chunks + job.failed_chunks,
            job.total_chunks
        ),
        value: hours,
        threshold: f64::from(m.alert_job_duration_hours),
        raised_at: now,
    })
}

/// Succeeded chunks over finished ones below `alert_completion_rate_below`. Judged once the
/// job is over, or once `progress_update_frequency_chunks` chunks have finished, so one early
/// failure does not read as a 0 % rate.
pub fn completion_rate(job: &Job, m: &Monitoring, now: DateTime<Utc>) -> Option<Alert> {
    let finished = job.completed_chunks + job.failed_chunks;
    let enough = job.status.is_terminal() || finished >= m.progress_update_frequency_chunks;
    if finished == 0 || !enough {
        return None;
    }
    let rate = f64::from(job.completed_chunks) / f64::from(finished);
    (rate < m.alert_completion_rate_below).then(|| Alert {
        kind: AlertKind::LowCompletionRate,
        subject: job.job_id.clone(),
        tenant_id: job.tenant_id.clone(),
        service: job.service,
        job_id: Some(job.job_id.clone()),
        message: format!(
            "{}: {:.0} % of finished chunks succeeded ({} of {}; alert below {:.0} %)",
            job.job_id,
            rate * 100.0,
            job.completed_chunks,
            finished,
            m.alert_completion_rate_below * 100.0
        ),
        value: rate,
        threshold: m.alert_completion_rate_below,
        raised_at: now,
    })
}

impl Engine {
    fn monitoring(&self) -> &Monitoring {
        &self.config().backfill.monitoring
    }

    /// Stores an alert (once per kind and subject) and, when new, tells watchers, the log
    /// and the metrics.
    pub(super) async fn raise(&self, alert: Alert) -> Result<bool, EngineError> {
        let new = self.lifecycle().raise_alert(&alert).await?;
        if new {
            tracing::warn!(kind = %alert.kind, tenant_id = %alert.tenant_id, service = %alert.service,
                job_id = alert.job_id.as_deref().unwrap_or(""), value = alert.value,
                threshold = alert.threshold, "alert: {}", alert.message);
            self.metrics().emit(&metrics::alert_record(&alert));
            self.emit(EngineEvent::Alert { alert });
        }
        Ok(new)
    }

    /// A chunk attempt failed: counts it and raises the consecutive-failures alert. The run
    /// is counted in the lifecycle store, so the attempts of every process working the job
    /// (cloud workers, several `run`s) make one run.
    pub(super) async fn on_chunk_failed(&self, job: &Job) -> Result<(), EngineError> {
        let run = self
            .lifecycle()
            .chunk_attempt_ended(&job.job_id, true)
            .await?;
        self.metrics()
            .emit(&metrics::failure_record(job, run, Utc::now()));
        if let Some(a) = consecutive_failures(job, run, self.monitoring(), Utc::now()) {
            self.raise(a).await?;
        }
        Ok(())
    }

    /// A chunk succeeded: the failure run ends; every `progress_update_frequency_chunks`
    /// finished chunks, progress metrics go out and the completion rate is judged.
    pub(super) async fn on_chunk_succeeded(&self, job: &Job) -> Result<(), EngineError> {
        self.lifecycle()
            .chunk_attempt_ended(&job.job_id, false)
            .await?;
        let every = self.monitoring().progress_update_frequency_chunks.max(1);
        let finished = job.completed_chunks + job.failed_chunks;
        if finished.is_multiple_of(every) || finished == job.total_chunks {
            let (requests, rate_limited) =
                self.budget(&job.tenant_id, job.service).take_unreported();
            let counts = metrics::RequestCounts {
                requests,
                rate_limited,
            };
            self.metrics()
                .emit(&metrics::progress_record(job, Utc::now(), counts));
            if let Some(a) = completion_rate(job, self.monitoring(), Utc::now()) {
                self.raise(a).await?;
            }
        }
        Ok(())
    }

    /// Checks one job against every threshold at `now` (used when a job ends and by the
    /// periodic sweep); returns the alerts raised now.
    pub async fn evaluate_alerts(
        &self,
        job_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Alert>, EngineError> {
        let Some(job) = self.store().get_job(job_id).await? else {
            return Ok(Vec::new());
        };
        let chunks = self.store().chunks(job_id).await?;
        let mut raised = Vec::new();
        let m = self.monitoring().clone();
        for alert in [
            long_running(&job, &chunks, &m, now),
            completion_rate(&job, &m, now),
        ]
        .into_iter()
        .flatten()
        {
            if self.raise(alert.clone()).await? {
                raised.push(alert);
            }
        }
        Ok(raised)
    }

    /// A job has ended (run here, or finalized by a cloud worker): its final metrics record
    /// (duration from its first claimed chunk, completion percent) and the end-of-job alerts.
    pub async fn report_job_ended(
        &self,
        job_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Alert>, EngineError> {
        if let Some(job) = self.store().get_job(job_id).await? {
            let chunks = self.store().chunks(job_id).await?;
            self.metrics()
                .emit(&metrics::ended_record(&job, started_at(&job, &chunks), now));
        }
        self.evaluate_alerts(job_id, now).await
    }

    /// Sweeps every active job for the duration threshold (run periodically while jobs run).
    pub async fn sweep_alerts(&self, now: DateTime<Utc>) -> Result<Vec<Alert>, EngineError> {
        let mut raised = Vec::new();
        for job in self.store().list_jobs(&Default::default()).await? {
            if job.status.is_active() {
                raised.extend(self.evaluate_alerts(&job.job_id, now).await?);
            }
        }
        Ok(raised)
    }
}
