//! The console's cloud mode against the emulators (moto: Step Functions running
//! `infrastructure/backfill.asl.json`, CloudWatch Logs; DynamoDB Local), through the same
//! `EngineHandle` the console drives: `t` with target cloud creates the job in DynamoDB and
//! starts the execution `backfill-{job_id}` (a second `t` finds both), the snapshot lists the
//! job, `c` cancels it and stops the execution, `r` starts the next execution of a stopped
//! one, and the log pane's feed reads the job's lines from CloudWatch Logs.
//!
//! No worker runs: executions wait on their first task, which is all these checks need.
//! Needs `AVESA_TEST_MOTO_URL` and `AVESA_TEST_DYNAMODB_URL` (`scripts/test` starts both);
//! without them it fails saying how to start them, unless `AVESA_SKIP_EMULATORS=1`.

mod common;
#[allow(dead_code)]
#[path = "cloud_e2e/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::Duration;

use avesa_console::cloud::logs::CloudWatchLogSource;
use avesa_console::cloud::ops::{LaneOptions, StepFunctions};
use avesa_console::cloud::sfn::{Dispatcher, execution_arn};
use avesa_console::config::Config;
use avesa_console::domain::{JobStatus, Service};
use avesa_console::engine::handle::{Command, EngineHandle, HandleError, RefreshPolicy, Target};
use avesa_console::engine::ops::Refusal;
use avesa_console::engine::planner::PlanRequest;
use avesa_console::engine::{Engine, EngineOptions, NoSource, SourceProvider};
use avesa_console::sink::RawSink;
use avesa_console::sources::Source;
use avesa_console::store::JobStore;
use avesa_console::tui::logs::LogFeed;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use chrono::{TimeZone, Utc};
use harness::*;

struct NoSources;

impl SourceProvider for NoSources {
    fn source(&self, _: &str, service: Service) -> Result<Arc<dyn Source>, NoSource> {
        Err(format!("{service}: the cloud console runs nothing itself").into())
    }
}

fn request(start_month: u32) -> PlanRequest {
    PlanRequest {
        tenant_id: "acme".into(),
        service: Service::Connectwise,
        tables: vec!["tickets".into()],
        start: Some(Utc.with_ymd_and_hms(2025, start_month, 1, 0, 0, 0).unwrap()),
        end: Some(
            Utc.with_ymd_and_hms(2025, start_month + 2, 1, 0, 0, 0)
                .unwrap(),
        ),
        chunk_size_days: Some(30),
    }
}

/// The status of one execution, by name.
async fn execution_status(dep: &Deployment, name: &str) -> Option<String> {
    let sfn = aws_sdk_sfn::Client::new(&dep.aws);
    let out = sfn
        .describe_execution()
        .execution_arn(execution_arn(&dep.state_machine_arn, name))
        .send()
        .await
        .ok()?;
    Some(out.status().as_str().to_string())
}

/// Waits for a stopped execution to end and returns its status: moto applies a stop when
/// the task it waits on next wakes (its heartbeat timeout).
async fn ended(dep: &Deployment, name: &str) -> String {
    for _ in 0..300 {
        let status = execution_status(dep, name).await.unwrap();
        if status != "RUNNING" {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("execution {name} still running 30 s after StopExecution");
}

/// Puts JSON lines into the job's worker stream, as a worker's log shipper does.
async fn ship(dep: &Deployment, stream: &str, lines: &[String]) {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&dep.aws);
    logs.create_log_stream()
        .log_group_name(&dep.log_group)
        .log_stream_name(stream)
        .send()
        .await
        .unwrap();
    let now = Utc::now().timestamp_millis();
    let events = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            InputLogEvent::builder()
                .timestamp(now + i as i64)
                .message(l)
                .build()
                .unwrap()
        })
        .collect();
    logs.put_log_events()
        .log_group_name(&dep.log_group)
        .log_stream_name(stream)
        .set_log_events(Some(events))
        .send()
        .await
        .unwrap();
}

#[test]
fn the_console_dispatches_cancels_resumes_and_reads_cloud_logs() {
    let Some(emulators) = emulators("the_console_dispatches_cancels_resumes_and_reads_cloud_logs")
    else {
        return;
    };
    let dep = Deployment::create(emulators, "console");
    let data = tempfile::tempdir().unwrap();
    block(async {
        let config = Arc::new(Config::load(&common::repo_mappings()).unwrap());
        let dynamo = Arc::new(dep.store());
        let store: Arc<dyn JobStore> = dynamo.clone();
        let dispatcher =
            Dispatcher::new(aws_sdk_sfn::Client::new(&dep.aws), &dep.state_machine_arn);
        let engine = Engine::new(
            config.clone(),
            store.clone(),
            dynamo,
            RawSink::local(data.path()).unwrap(),
            Arc::new(NoSources),
            EngineOptions::default(),
        );
        let policy = RefreshPolicy {
            idle: Duration::from_millis(200),
            min_refresh: Duration::from_millis(50),
            ..RefreshPolicy::default()
        };
        // A short heartbeat: moto applies a stop when the waiting task next wakes.
        let sfn = StepFunctions::new(
            dispatcher.clone(),
            "cancelled in the console test",
            engine.clone(),
        )
        .with_lanes(LaneOptions {
            heartbeat_seconds: 2,
            ..LaneOptions::default()
        });
        let h = EngineHandle::spawn_cloud(engine, config, policy, Arc::new(sfn));

        // t, target cloud: the job in DynamoDB, the execution started in Step Functions.
        let id = "backfill_acme_connectwise_20250101";
        let name = format!("backfill-{id}");
        let started = h
            .send(Command::Trigger {
                request: request(1),
                target: Target::Cloud,
            })
            .await
            .unwrap();
        assert_eq!(
            started,
            format!("started {id} (2 chunks) in execution {name}")
        );
        assert_eq!(
            execution_status(&dep, &name).await.as_deref(),
            Some("RUNNING")
        );
        let job = store
            .get_job(id)
            .await
            .unwrap()
            .expect("the job is in DynamoDB");
        assert_eq!((job.status, job.total_chunks), (JobStatus::Pending, 2));
        // Again: found, not doubled.
        let again = h
            .send(Command::Trigger {
                request: request(1),
                target: Target::Cloud,
            })
            .await
            .unwrap();
        assert!(
            again.contains("already covers this range")
                && again.contains(&format!("running in execution {name}")),
            "{again}"
        );
        // The snapshot reads the cloud store: the console lists the job like a local one.
        let mut snap = h.snapshot();
        tokio::time::timeout(Duration::from_secs(20), async {
            while !snap.borrow_and_update().jobs.iter().any(|j| j.job_id == id) {
                snap.changed().await.unwrap();
            }
        })
        .await
        .expect("the snapshot lists the cloud job");
        // A local run is refused in cloud mode.
        let local = h
            .send(Command::Trigger {
                request: request(1),
                target: Target::Local,
            })
            .await;
        assert!(matches!(local, Err(HandleError::Refused(_))), "{local:?}");

        // The log pane's feed: the job's lines from CloudWatch Logs, others' left out.
        let line = |job: &str, msg: &str, seq: u32| {
            format!(
                r#"{{"timestamp":"2026-01-15T12:00:0{seq}Z","level":"INFO","message":"{msg}","job_id":"{job}","table":"tickets","seq":{seq}}}"#
            )
        };
        ship(
            &dep,
            &format!("{id}/w1"),
            &[line(id, "chunk started", 0), line(id, "chunk succeeded", 0)],
        )
        .await;
        ship(
            &dep,
            "other_job/w1",
            &[line("other_job", "not this one", 1)],
        )
        .await;
        let source = CloudWatchLogSource::new(
            aws_sdk_cloudwatchlogs::Client::new(&dep.aws),
            &dep.log_group,
        );
        let mut feed = LogFeed::per_job(Arc::new(source));
        assert!(feed.poll().await.unwrap().is_empty(), "no job chosen yet");
        feed.focus(Some(id));
        let got = feed.poll().await.unwrap();
        let texts: Vec<&str> = got.iter().map(|r| &*r.text).collect();
        assert_eq!(got.len(), 2, "{texts:?}");
        assert!(texts[0].starts_with("chunk started"), "{texts:?}");
        assert!(texts[1].contains(&format!("[{id}/w1]")), "{texts:?}");
        assert_eq!((got[0].job_id.as_deref(), got[0].seq), (Some(id), Some(0)));
        // Followed: only what is new.
        assert!(feed.poll().await.unwrap().is_empty());
        ship(&dep, &format!("{id}/w2"), &[line(id, "chunk failed", 1)]).await;
        let more = feed.poll().await.unwrap();
        assert_eq!(more.len(), 1, "{more:?}");
        assert!(more[0].text.starts_with("chunk failed"));

        // c: cancelled in DynamoDB, the execution stopped (moto ends a stopped Map FAILED
        // rather than ABORTED).
        let cancelled = h.send(Command::Cancel { job_id: id.into() }).await.unwrap();
        assert_eq!(
            cancelled,
            format!(
                "cancelled {id} (0 of 2 chunks completed, 0 records); stopped execution {name}"
            )
        );
        let status = ended(&dep, &name).await;
        assert!(
            status == "ABORTED" || status == "FAILED",
            "StopExecution ends the execution: {status}"
        );
        let job = store.get_job(id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Cancelled);
        let again = h.send(Command::Cancel { job_id: id.into() }).await;
        assert!(
            matches!(
                &again,
                Err(HandleError::Refused(Refusal::AlreadyEnded { .. }))
            ),
            "{again:?}"
        );
        let resume = h.send(Command::Resume { job_id: id.into() }).await;
        assert!(
            matches!(
                &resume,
                Err(HandleError::Refused(Refusal::NothingToResume { .. }))
            ),
            "{resume:?}"
        );

        // r: a job whose execution stopped (not cancelled) gets the next execution.
        let id2 = "backfill_acme_connectwise_20250301";
        let name2 = format!("backfill-{id2}");
        h.send(Command::Trigger {
            request: request(3),
            target: Target::Cloud,
        })
        .await
        .unwrap();
        let arn2 = execution_arn(&dep.state_machine_arn, &name2);
        dispatcher.stop(&arn2, "stopped by the test").await.unwrap();
        ended(&dep, &name2).await;
        let resumed = h
            .send(Command::Resume { job_id: id2.into() })
            .await
            .unwrap();
        assert_eq!(resumed, format!("resumed {id2} in execution {name2}-c1"));
        assert_eq!(
            execution_status(&dep, &format!("{name2}-c1"))
                .await
                .as_deref(),
            Some("RUNNING")
        );
        let running = h.send(Command::Resume { job_id: id2.into() }).await;
        assert!(
            matches!(
                &running,
                Err(HandleError::Refused(Refusal::AlreadyRunning { .. }))
            ),
            "{running:?}"
        );
        h.send(Command::Cancel { job_id: id2.into() })
            .await
            .unwrap();
    });
}
