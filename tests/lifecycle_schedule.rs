//! Scheduling on paused tokio time: 8 tenants x 2 services triggered at once run through
//! the real local runner (the one `run`, `trigger --run` and the console use) with jobs of
//! different lengths. Never more than `max_concurrent_jobs`
//! run, never more than `max_parallel_tenants` tenants, and turns are fair: a tenant never
//! starts another job while a tenant that could start runs fewer.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use avesa_console::domain::JobStatus;
use avesa_console::engine::ops::{LocalRunner, RanAll, RunJob, RunnerOptions};
use avesa_console::engine::schedule::{Candidate, Limits, OffPeak};
use avesa_console::engine::{Handoff, RunOutcome, StopReason};
use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use tokio::time::Instant;

#[derive(Default)]
struct Log {
    running: HashMap<String, usize>,
    waiting: HashMap<String, usize>,
    max_running: usize,
    max_tenants: usize,
    starts: Vec<(String, usize)>,
    violations: Vec<String>,
}

/// Which job started at which wall-clock instant.
type Starts = Arc<Mutex<Vec<(String, DateTime<Utc>)>>>;

fn candidates(created: DateTime<Utc>) -> Vec<Candidate> {
    let mut out = Vec::new();
    for t in 0..8 {
        for service in ["connectwise", "servicenow"] {
            out.push(Candidate {
                job_id: format!("backfill_t{t}_{service}_20260101"),
                tenant_id: format!("t{t}"),
                priority: 0,
                wait_off_peak: false,
                created_at: created,
            });
        }
    }
    out
}

/// A finished run of `job_id`.
fn finished(job_id: String) -> RunOutcome {
    RunOutcome {
        job_id,
        status: JobStatus::Completed,
        stop: StopReason::Finished,
        handoff: Handoff::NotDue,
    }
}

/// Runs `jobs` through a local runner whose jobs are `run`, on a clock that follows tokio's.
async fn run_all(
    limits: Limits,
    now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static,
    jobs: Vec<Candidate>,
    wait_off_peak: bool,
    run: impl Fn(String) -> futures::future::BoxFuture<'static, ()> + Send + Sync + 'static,
) -> RanAll {
    let run: RunJob = Arc::new(move |job_id: String, _deadline| {
        let work = run(job_id.clone());
        Box::pin(async move {
            work.await;
            Ok(finished(job_id))
        })
    });
    let options = RunnerOptions {
        clock: Arc::new(now),
        ..RunnerOptions::default()
    };
    LocalRunner::with_run(limits, run, options)
        .run_all(jobs, wait_off_peak)
        .await
}

/// Runs 16 jobs through the local runner and returns what was observed.
async fn run(limits: Limits, base: DateTime<Utc>) -> Log {
    let log = Arc::new(Mutex::new(Log::default()));
    {
        let mut l = log.lock().unwrap();
        for t in 0..8 {
            l.waiting.insert(format!("t{t}"), 2);
        }
    }
    let start = Instant::now();
    let now = move || base + Duration::from_std(Instant::now() - start).unwrap();
    let max_tenants = limits.max_tenants;
    let l2 = log.clone();
    let done = run_all(
        limits,
        now,
        candidates(base),
        false,
        move |job_id: String| {
            let log = l2.clone();
            // Bookkeeping when the runner decides, not when the task first runs.
            let tenant = job_id.split('_').nth(1).unwrap().to_string();
            {
                let mut guard = log.lock().unwrap();
                let l = &mut *guard;
                let mine = l.running.get(&tenant).copied().unwrap_or(0);
                let tenants_running = l.running.values().filter(|n| **n > 0).count();
                // Fairness: nobody who could start runs fewer jobs than this tenant.
                for (other, waiting) in &l.waiting {
                    let theirs = l.running.get(other).copied().unwrap_or(0);
                    let admissible = theirs > 0 || tenants_running < max_tenants;
                    if other != &tenant && *waiting > 0 && admissible && theirs < mine {
                        l.violations.push(format!(
                            "{tenant} started job #{} while {other} waited running {theirs}",
                            mine + 1
                        ));
                    }
                }
                *l.running.entry(tenant.clone()).or_default() += 1;
                *l.waiting.get_mut(&tenant).unwrap() -= 1;
                let total: usize = l.running.values().sum();
                let tenants = l.running.values().filter(|n| **n > 0).count();
                l.max_running = l.max_running.max(total);
                l.max_tenants = l.max_tenants.max(tenants);
                l.starts.push((tenant.clone(), mine + 1));
            }
            Box::pin(async move {
                // Jobs take 10 to 32 minutes, differently per job.
                let n: u64 = job_id.bytes().map(u64::from).sum();
                tokio::time::sleep(std::time::Duration::from_secs(60 * (10 + n % 23))).await;
                let mut l = log.lock().unwrap();
                *l.running.get_mut(&tenant).unwrap() -= 1;
            })
        },
    )
    .await;
    assert_eq!(done.outcomes.len(), 16, "every job ran");
    assert!(done.deferred.is_empty());
    std::mem::take(&mut *log.lock().unwrap())
}

fn shipped_limits() -> Limits {
    let cfg = avesa_console::config::Config::load(&common::repo_mappings()).unwrap();
    let limits = Limits::from_config(&cfg.backfill);
    assert_eq!(limits.max_jobs, 5, "the shipped max_concurrent_jobs");
    limits
}

fn midday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap()
}

#[tokio::test(start_paused = true)]
async fn eight_tenants_two_services_never_exceed_the_limits_and_take_fair_turns() {
    let limits = shipped_limits();
    let log = run(limits, midday()).await;
    assert_eq!(
        log.max_running, 5,
        "never more than 5 running, and the slots are used"
    );
    assert!(
        log.max_tenants <= limits.max_tenants,
        "{} tenants at once",
        log.max_tenants
    );
    assert_eq!(log.violations, Vec::<String>::new());
    assert!(
        log.starts.iter().all(|(_, k)| *k <= 2),
        "no tenant ran a third job"
    );

    // With room for every tenant, each one runs a job before any runs a second.
    let wide = Limits {
        max_tenants: 8,
        ..limits
    };
    let log = run(wide, midday()).await;
    assert_eq!(log.max_running, 5);
    assert_eq!(log.violations, Vec::<String>::new());
    let mut first: Vec<&String> = log.starts[..8].iter().map(|(t, _)| t).collect();
    first.sort();
    first.dedup();
    assert_eq!(
        first.len(),
        8,
        "every tenant's first job before anyone's second: {:?}",
        log.starts
    );
}

#[tokio::test(start_paused = true)]
async fn off_peak_waiters_start_when_the_window_opens_and_manual_jobs_at_once() {
    let limits = Limits {
        max_jobs: 5,
        max_tenants: 5,
        off_peak: OffPeak {
            start: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(6, 0, 0).unwrap(),
        },
    };
    let base = midday();
    let auto = |id: &str| Candidate {
        job_id: id.into(),
        tenant_id: id.into(),
        priority: 0,
        wait_off_peak: true,
        created_at: base,
    };
    let manual = Candidate {
        wait_off_peak: false,
        ..auto("manual")
    };
    let started: Starts = Arc::default();
    let t0 = Instant::now();
    let now = move || base + Duration::from_std(Instant::now() - t0).unwrap();
    let s2 = started.clone();
    let run = move |job_id: String| -> futures::future::BoxFuture<'static, ()> {
        let s = s2.clone();
        Box::pin(async move {
            s.lock().unwrap().push((job_id, now()));
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        })
    };
    // Without waiting, the auto jobs are reported deferred until 22:00.
    let done = run_all(
        limits,
        now,
        vec![auto("a1"), manual.clone()],
        false,
        run.clone(),
    )
    .await;
    assert_eq!(done.outcomes.len(), 1);
    let night = Utc.with_ymd_and_hms(2026, 3, 10, 22, 0, 0).unwrap();
    assert_eq!(done.deferred, vec![("a1".to_string(), night)]);
    // Waiting, they start exactly when the window opens.
    started.lock().unwrap().clear();
    let done = run_all(limits, now, vec![auto("a1"), auto("a2"), manual], true, run).await;
    assert_eq!(done.outcomes.len(), 3);
    let s = started.lock().unwrap().clone();
    assert_eq!(s[0].0, "manual");
    assert!(s[0].1 < night);
    assert!(s[1..].iter().all(|(_, at)| *at == night), "{s:?}");
}

/// A fixture whose off-peak window opens in two hours (returned), so "now" is outside it
/// whenever the test runs.
fn outside_the_off_peak_window() -> (common::Fixture, DateTime<Utc>) {
    let fx = common::Fixture::new();
    fx.tune(6000, 100);
    let opens = Utc::now() + Duration::hours(2);
    fx.edit("backfill_config.json", |v| {
        v["scheduling"]["off_peak_start"] = opens.format("%H:%M").to_string().into();
        v["scheduling"]["off_peak_end"] = (opens + Duration::hours(1))
            .format("%H:%M")
            .to_string()
            .into();
    });
    (fx, opens)
}

#[test]
fn run_leaves_off_peak_waiters_for_their_window_and_runs_manual_triggers_at_once() {
    let (fx, opens) = outside_the_off_peak_window();
    let sandbox = fx.start_sandbox(&[]);
    let trigger = |tenant: &str, extra: &[&str]| {
        let args = common::trigger_args(
            tenant,
            Some("tickets"),
            "2025-11-01",
            Some("2025-12-01"),
            extra,
        );
        common::assert_ok(&fx.cli(Some(&sandbox), &args));
    };
    trigger("acme", &["--wait-off-peak"]);
    trigger("globex", &["--priority", "5"]);
    let out = fx.cli(Some(&sandbox), &["run"]);
    common::assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("backfill_globex_connectwise_20251101: completed"),
        "{text}"
    );
    let waits = format!(
        "backfill_acme_connectwise_20251101: waits for the off-peak window (opens {}",
        opens.format("%Y-%m-%dT%H:%M:00Z")
    );
    assert!(text.contains(&waits), "{text}\nexpected {waits}");
    let acme = common::job_status(&fx, "backfill_acme_connectwise_20251101");
    assert_eq!(acme["job"]["status"], "pending");
}

#[test]
fn trigger_run_outside_the_off_peak_window_waits_instead_of_starting() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let (fx, _) = outside_the_off_peak_window();
    let sandbox = fx.start_sandbox(&[]);
    let args = common::trigger_args(
        "acme",
        Some("tickets"),
        "2025-11-01",
        Some("2025-12-01"),
        &["--wait-off-peak", "--run"],
    );
    let mut child = fx
        .command(Some(&sandbox), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let id = "backfill_acme_connectwise_20251101";
    assert!(
        first.starts_with(&format!(
            "queued {id} (1 chunk): waits for the off-peak window"
        )),
        "{first}"
    );
    // It keeps waiting: nothing claimed, nothing fetched.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let still = child.try_wait().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(still.is_none(), "the command ended: {still:?}");
    let detail = common::job_status(&fx, id);
    assert_eq!(detail["job"]["status"], "pending");
    assert!(
        detail["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["attempts"] == 0 && c["status"] == "pending"),
        "{detail}"
    );
}
