//! The Lambda worker's handler on the emulators, with no worker process running: a cloud job
//! is triggered, and the test plays Lambda's SQS event source mapping — it receives the
//! queue's messages, wraps them in an SQS event, runs `worker --lambda-event` (the handler
//! the Lambda runs, `cloud::lambda::handle_event`) on it, and deletes the messages not named in
//! `batchItemFailures` — until the job's execution has SUCCEEDED and the job is completed with
//! exactly the sandbox's records in S3.
//!
//! Needs `AVESA_TEST_MOTO_URL` and `AVESA_TEST_DYNAMODB_URL` (`scripts/test` starts both).

mod common;
#[allow(dead_code)]
#[path = "cloud_e2e/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use avesa_console::cloud::sfn::Dispatcher;
use avesa_console::sandbox::TableCounts;
use avesa_console::store::JobStore;
use common::*;
use harness::*;
use serde_json::{Value, json};

const JOB: &str = "backfill_acme_connectwise_20250101";

/// The SQS event Lambda's event source mapping hands the function for these messages.
fn sqs_event(dep: &Deployment, messages: &[aws_sdk_sqs::types::Message]) -> Value {
    let arn = format!(
        "arn:aws:sqs:us-east-1:123456789012:{}",
        dep.queue_url.rsplit('/').next().unwrap()
    );
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id().unwrap(),
                "receiptHandle": m.receipt_handle().unwrap(),
                "body": m.body().unwrap_or_default(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body().unwrap_or_default(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    json!({ "Records": records })
}

/// One invocation: the event written to a file, `worker --lambda-event FILE`, its answer.
fn invoke(dep: &Deployment, fx: &Fixture, sandbox: &SandboxProc, event: &Value) -> Value {
    let path = fx.dir.path().join("event.json");
    std::fs::write(&path, event.to_string()).unwrap();
    let file = path.to_str().unwrap();
    let args = [
        "worker",
        "--lambda-event",
        file,
        "--lambda-remaining",
        "2m",
        "--lease",
        "3s",
        "--claim-wait",
        "30s",
    ];
    let out = dep.cli(fx, Some(sandbox), &args);
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The ids the answer sends back; every one must be a record of the event.
fn failures(answer: &Value, event: &Value) -> Vec<String> {
    let ids: Vec<&str> = event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["messageId"].as_str().unwrap())
        .collect();
    let items = answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("no batchItemFailures array: {answer}"));
    items
        .iter()
        .map(|i| {
            assert_eq!(i.as_object().map(|o| o.len()), Some(1), "{answer}");
            let id = i["itemIdentifier"].as_str().unwrap().to_string();
            assert!(ids.contains(&id.as_str()), "{id} is not in the event");
            id
        })
        .collect()
}

/// Receives, invokes and deletes as the event source mapping does until the job's execution
/// has SUCCEEDED (DescribeExecution): the job is `completed` by the Finalize task's worker, but
/// the execution ends only when the handler has sent that task's success too. Returns the
/// number of invocations and of messages handled.
fn drive(dep: &Deployment, fx: &Fixture, sandbox: &SandboxProc) -> (usize, usize) {
    let sqs = aws_sdk_sqs::Client::new(&dep.aws);
    let sfn = Dispatcher::new(aws_sdk_sfn::Client::new(&dep.aws), &dep.state_machine_arn);
    let store = dep.store();
    let started = Instant::now();
    let (mut invocations, mut handled) = (0, 0);
    loop {
        let job = block(store.get_job(JOB)).unwrap().unwrap();
        let execution = block(sfn.latest(JOB))
            .unwrap()
            .expect("the job's execution");
        if execution.status == "SUCCEEDED" {
            return (invocations, handled);
        }
        assert!(
            execution.is_running(),
            "the execution ended {} ({:?}: {:?}); the job is {}",
            execution.status,
            execution.error,
            execution.cause,
            job.status.as_str()
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the execution is still {} (the job {}) after {invocations} invocations",
            execution.status,
            job.status.as_str()
        );
        let received = block(
            sqs.receive_message()
                .queue_url(&dep.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .visibility_timeout(120)
                .send(),
        )
        .unwrap();
        let messages = received.messages();
        if messages.is_empty() {
            continue;
        }
        let event = sqs_event(dep, messages);
        let answer = invoke(dep, fx, sandbox, &event);
        let failed = failures(&answer, &event);
        assert!(failed.is_empty(), "every answer was delivered: {answer}");
        invocations += 1;
        handled += messages.len();
        for m in messages {
            if !failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
                let delete = sqs
                    .delete_message()
                    .queue_url(&dep.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap());
                block(delete.send()).unwrap();
            }
        }
    }
}

#[test]
fn sqs_events_through_the_lambda_handler_complete_a_cloud_job_exactly() {
    let Some(emulators) = emulators("sqs_events_through_the_lambda_handler") else {
        return;
    };
    let fx = Fixture::new();
    fx.tune(1200, 50);
    let sandbox = fx.start_sandbox(&[]);
    let dep = Deployment::create(emulators, "lambda");
    let args = trigger_args(
        "acme",
        Some("tickets"),
        "2025-01-01",
        Some("2026-01-01"),
        &["--chunk-size-days", "120", "--cloud", "--output", "json"],
    );
    let out = dep.cli(&fx, Some(&sandbox), &args);
    assert_ok(&out);
    let first: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first["created"], true, "{first}");
    let total = first["job"]["total_chunks"].as_u64().unwrap();
    assert_eq!(total, 4);

    let (invocations, handled) = drive(&dep, &fx, &sandbox);
    // One task per chunk at least (the job is completed with its last chunk).
    assert!(
        handled as u64 >= total,
        "{handled} messages for {total} chunks"
    );
    assert!(invocations >= 1, "{invocations}");

    let job = block(dep.store().get_job(JOB)).unwrap().unwrap();
    assert_eq!(job.status.as_str(), "completed", "{job:?}");
    assert_eq!(job.completed_chunks as u64, total, "{job:?}");
    let (landed, keys) = dep.landed("acme", "tickets");
    assert!(keys.iter().all(|k| k.ends_with(".parquet")), "{keys:?}");
    let window = parse_window("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let cfg = fx.sandbox_config(TableCounts::demo());
    assert_exact(&landed, &cfg, &company_of(&fx, "acme"), "tickets", &window);
    assert_eq!(job.records, landed.rows.len() as u64);

    // A record nobody waits for (no task token) is dropped, not sent back.
    let stray = json!({"Records": [
        {"messageId": "stray-1", "receiptHandle": "r", "body": "{}", "eventSource": "aws:sqs"}
    ]});
    let answer = invoke(&dep, &fx, &sandbox, &stray);
    assert_eq!(answer, json!({"batchItemFailures": []}));
}

/// Something other than an SQS event is refused, naming the file, before any AWS call.
#[test]
fn lambda_event_that_is_not_an_sqs_event_is_refused_naming_the_file() {
    let fx = Fixture::new();
    let path = fx.dir.path().join("not-sqs.json");
    let file = path.to_str().unwrap();
    for (content, says) in [(r#"{"Records": 3}"#, "not an SQS event"), ("{", "not JSON")] {
        std::fs::write(&path, content).unwrap();
        let out = fx
            .command(None, &["worker", "--lambda-event", file])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{content}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(file) && err.contains(says), "{err}");
    }
}
