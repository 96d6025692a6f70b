//! Workers as a Lambda function with the queue as its event source. The decisions are plain
//! functions compiled into every build (and unit-tested there): which records of an SQS event
//! to work on, how long the work may take, and the partial-batch answer. Only the runtime
//! glue needs the `lambda` feature (the `lambda_runtime` crate), so CI builds without it.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use tokio::time::Instant;

use super::message::{self, Parsed};
use super::worker::{Handled, Worker};

/// Time kept back from the Lambda's deadline to release the chunk at its checkpoint and
/// answer the task.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
struct SqsEvent {
    #[serde(rename = "Records", default)]
    records: Vec<SqsRecord>,
}

#[derive(Debug, Deserialize)]
struct SqsRecord {
    #[serde(rename = "messageId")]
    message_id: String,
    #[serde(default)]
    body: String,
}

/// The Lambda was invoked with something other than an SQS event.
#[derive(Debug, thiserror::Error)]
#[error("not an SQS event: {0}")]
pub struct NotAnSqsEvent(#[source] serde_json::Error);

/// One record of the event and what it asks for.
#[derive(Debug, PartialEq)]
pub struct Action {
    pub message_id: String,
    pub parsed: Parsed,
}

/// The records of an SQS event, each parsed as a worker message.
pub fn actions(event: &Value) -> Result<Vec<Action>, NotAnSqsEvent> {
    let event: SqsEvent = serde_json::from_value(event.clone()).map_err(NotAnSqsEvent)?;
    Ok(event
        .records
        .into_iter()
        .map(|r| Action {
            parsed: message::parse(&r.body),
            message_id: r.message_id,
        })
        .collect())
}

/// How long the work of one invocation may run: its remaining time less the margin.
pub fn work_budget(remaining: Duration) -> Duration {
    remaining.saturating_sub(DEADLINE_MARGIN)
}

/// The answer for `ReportBatchItemFailures`: only messages whose answer could not be
/// delivered come back; every other one is done (answered, stale or stray).
pub fn batch_response(undelivered: &[String]) -> Value {
    json!({
        "batchItemFailures": undelivered
            .iter()
            .map(|id| json!({"itemIdentifier": id}))
            .collect::<Vec<_>>()
    })
}

/// Handles one SQS event as the Lambda does: every record is worked on through the worker
/// (taken and heartbeated at once; the worker's slots run them one at a time, as for
/// `worker`) within the remaining time less [`DEADLINE_MARGIN`], and the answer for
/// `ReportBatchItemFailures` names the messages whose answer could not be delivered.
/// `worker --lambda-event FILE` runs the same outside Lambda.
pub async fn handle_event(
    worker: &Worker,
    payload: &Value,
    remaining: Duration,
) -> Result<Value, NotAnSqsEvent> {
    let limit = Instant::now() + work_budget(remaining);
    let handled = futures::future::join_all(actions(payload)?.into_iter().map(|action| async {
        let h = worker.handle_parsed(action.parsed, None, Some(limit)).await;
        (action.message_id, h)
    }))
    .await;
    // No polling loop here: a job whose final step this batch answered frees its slot now.
    worker.admit_after_batch().await;
    let undelivered: Vec<String> = handled
        .into_iter()
        .filter(|(_, h)| matches!(h, Handled::Undelivered(_)))
        .map(|(id, _)| id)
        .collect();
    Ok(batch_response(&undelivered))
}

#[cfg(feature = "lambda")]
pub mod runtime {
    //! The `lambda_runtime` glue: builds a worker from the environment (the same settings
    //! as `avesa-console worker`) and hands each event to [`super::handle_event`].

    use std::sync::Arc;

    use lambda_runtime::{Error, LambdaEvent, service_fn};
    use serde_json::Value;

    use super::handle_event;
    use crate::cloud::logs::Shipper;
    use crate::cloud::worker::Worker;

    /// Serves events until the runtime stops. Logs are flushed after each event: Lambda
    /// freezes the process between invocations, and the shipping task with it.
    pub async fn run(worker: Worker, shipper: Option<Shipper>) -> Result<(), Error> {
        let worker = Arc::new(worker);
        let shipper = Arc::new(shipper);
        lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
            let (worker, shipper) = (worker.clone(), shipper.clone());
            async move {
                let remaining = event
                    .context
                    .deadline()
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default();
                let answer = handle_event(&worker, &event.payload, remaining).await;
                if let Some(shipper) = shipper.as_ref() {
                    shipper.flush().await;
                }
                Ok::<Value, Error>(answer?)
            }
        }))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::message::Task;

    #[test]
    fn an_sqs_event_becomes_one_action_per_record() {
        let chunk =
            r#"{"type":"finalize","job_id":"j1","heartbeat_seconds":60,"task_token":"tok"}"#;
        let event = json!({"Records": [
            {"messageId": "m1", "body": chunk, "receiptHandle": "r1", "eventSource": "aws:sqs"},
            {"messageId": "m2", "body": "{}"},
            {"messageId": "m3", "body": r#"{"type":"nope","task_token":"t3"}"#},
        ]});
        let acts = actions(&event).unwrap();
        assert_eq!(acts.len(), 3);
        assert_eq!(acts[0].message_id, "m1");
        assert!(matches!(
            &acts[0].parsed,
            Parsed::Work(m) if matches!(m.task, Task::Finalize(_)) && m.task_token == "tok"
        ));
        assert!(matches!(acts[1].parsed, Parsed::Stray { .. }));
        assert!(matches!(acts[2].parsed, Parsed::Unreadable { .. }));
        assert!(actions(&json!({"Records": 3})).is_err());
        assert!(actions(&json!({})).unwrap().is_empty());
    }

    #[test]
    fn only_undelivered_answers_come_back_and_time_is_kept_back() {
        assert_eq!(batch_response(&[]), json!({"batchItemFailures": []}));
        assert_eq!(
            batch_response(&["m2".into()]),
            json!({"batchItemFailures": [{"itemIdentifier": "m2"}]})
        );
        assert_eq!(
            work_budget(Duration::from_secs(900)),
            Duration::from_secs(870)
        );
        assert_eq!(work_budget(Duration::from_secs(10)), Duration::ZERO);
    }
}
