//! Dispatch and monitoring on Step Functions: a job's executions are named
//! `backfill-{job_id}` and then `…-c1`, `…-c2` for each continuation or resume, so starting is
//! idempotent (a second start finds the first) and the newest execution is found by name. A
//! start skips names held by executions that have ended (an earlier run of a job with the same
//! id, re-triggered after `cleanup`: names stay reserved for 90 days).
//!
//! Continuation is a `continue` task: a worker starts `{name}-c{n+1}` with the same input
//! (idempotent by name) and the old execution ends. It is not the `states:startExecution`
//! integration because moto passes that integration's parameters to botocore in the wrong case
//! (`KeyError: 'StateMachineArn'`), so it could never run in the tests; the worker path runs the
//! same StartExecution call on AWS and on the emulator. `resume --cloud` uses the same numbering,
//! so `status --cloud` follows `-c1`, `-c2`… to the newest execution.

use aws_sdk_sfn::Client;
use aws_sdk_sfn::error::SdkError;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionError;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::CloudError;
use super::message::max_iterations_per_lane;

/// Execution names are at most 80 characters; continuations append `-c{n}`.
const MAX_BASE_NAME: usize = 68;

/// How far a start walks past names taken by ended executions before it gives up and reports
/// the last one.
const MAX_NAME_TRIES: u32 = 1000;

/// The execution's input: what every lane loop and continuation carries along.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutionInput {
    pub job_id: String,
    pub execution_name: String,
    /// One element per lane; the Map runs up to `max_concurrency` lanes at once.
    pub lanes: Vec<u32>,
    pub max_concurrency: u32,
    pub heartbeat_seconds: u64,
    /// Loops per lane before the execution continues as a new one.
    pub max_iterations: u32,
    pub continuation: u32,
}

impl ExecutionInput {
    /// A first execution for `job_id` with `lanes` chunk lanes.
    pub fn new(job_id: &str, lanes: u32, heartbeat_seconds: u64) -> Self {
        let lanes = lanes.max(1);
        ExecutionInput {
            job_id: job_id.to_string(),
            execution_name: base_name(job_id),
            lanes: (0..lanes).collect(),
            max_concurrency: lanes,
            heartbeat_seconds: heartbeat_seconds.max(1),
            max_iterations: max_iterations_per_lane(lanes),
            continuation: 0,
        }
    }
}

/// `backfill-{job_id}`, shortened with a stable hash when the id is long.
pub fn base_name(job_id: &str) -> String {
    let name = format!("backfill-{job_id}");
    if name.len() <= MAX_BASE_NAME {
        return name;
    }
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = job_id.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    format!("{}-{:08x}", &name[..MAX_BASE_NAME - 9], hash as u32)
}

/// The name of continuation `n` (0: the first execution).
pub fn execution_name(base: &str, n: u32) -> String {
    if n == 0 {
        base.to_string()
    } else {
        format!("{base}-c{n}")
    }
}

/// `arn:…:execution:{machine}:{name}` from `arn:…:stateMachine:{machine}`.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> String {
    format!(
        "{}:{name}",
        state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

/// What DescribeExecution says about one execution.
#[derive(Clone, Debug, Serialize)]
pub struct ExecutionInfo {
    pub arn: String,
    pub name: String,
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub cause: Option<String>,
    #[serde(skip)]
    pub input: Option<String>,
    /// Continuation number (`-c{n}`) of this execution.
    pub continuation: u32,
}

impl ExecutionInfo {
    pub fn is_running(&self) -> bool {
        self.status == "RUNNING"
    }
}

/// The outcome of a start.
#[derive(Clone, Debug, Serialize)]
pub struct Started {
    pub arn: String,
    pub name: String,
    /// An execution of that name existed already (this start found it).
    pub existing: bool,
}

fn to_utc(d: &aws_sdk_sfn::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(d.to_millis().ok()?)
}

/// Starts, finds and stops the executions of one state machine.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    client: Client,
    state_machine_arn: String,
}

impl Dispatcher {
    pub fn new(client: Client, state_machine_arn: &str) -> Self {
        Dispatcher {
            client,
            state_machine_arn: state_machine_arn.to_string(),
        }
    }

    pub fn state_machine_arn(&self) -> &str {
        &self.state_machine_arn
    }

    /// Starts the execution `input` names; when it exists and runs, returns it instead. A
    /// name held by an execution that has ended belongs to an earlier run of a job with the
    /// same id (names stay reserved for 90 days; `cleanup` removes jobs sooner, and a
    /// re-trigger makes the same id): the next name of the sequence is taken, so a start never
    /// answers "already started" for an execution that is over.
    pub async fn start(&self, input: &ExecutionInput) -> Result<Started, CloudError> {
        let mut input = input.clone();
        loop {
            let name = execution_name(&input.execution_name, input.continuation);
            // Looked up first: AWS refuses an ended execution's name (ExecutionAlreadyExists),
            // and an emulator may answer with the ended execution itself.
            match self.describe(&name).await? {
                Some(e) if !e.is_running() && input.continuation < MAX_NAME_TRIES => {
                    input.continuation += 1;
                }
                _ => {
                    return start_named(&self.client, &self.state_machine_arn, &name, &input).await;
                }
            }
        }
    }

    /// One execution by name, or `None` when there is none.
    pub async fn describe(&self, name: &str) -> Result<Option<ExecutionInfo>, CloudError> {
        let arn = execution_arn(&self.state_machine_arn, name);
        match self
            .client
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ExecutionInfo {
                arn,
                name: out.name().unwrap_or(name).to_string(),
                status: out.status().as_str().to_string(),
                started_at: to_utc(out.start_date()),
                stopped_at: out.stop_date().and_then(to_utc),
                error: out.error().map(str::to_string),
                cause: out.cause().map(str::to_string),
                input: out.input().map(str::to_string),
                continuation: 0,
            })),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), DescribeExecutionError::ExecutionDoesNotExist(_)) =>
            {
                Ok(None)
            }
            Err(e) => Err(CloudError::aws("DescribeExecution", e)),
        }
    }

    /// The newest execution of a job: the first one, then each `-c{n}` while it exists.
    pub async fn latest(&self, job_id: &str) -> Result<Option<ExecutionInfo>, CloudError> {
        let base = base_name(job_id);
        let Some(mut latest) = self.describe(&base).await? else {
            return Ok(None);
        };
        for n in 1.. {
            match self.describe(&execution_name(&base, n)).await? {
                Some(mut next) => {
                    next.continuation = n;
                    latest = next;
                }
                None => break,
            }
        }
        Ok(Some(latest))
    }

    /// Starts the next execution of a job whose newest one has ended (resume), with that
    /// execution's lanes and settings.
    pub async fn start_next(
        &self,
        job_id: &str,
        previous: &ExecutionInfo,
    ) -> Result<Started, CloudError> {
        let mut input: ExecutionInput = previous
            .input
            .as_deref()
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or_else(|| ExecutionInput::new(job_id, 1, 60));
        input.execution_name = base_name(job_id);
        input.continuation = previous.continuation + 1;
        self.start(&input).await
    }

    pub async fn stop(&self, arn: &str, cause: &str) -> Result<(), CloudError> {
        self.client
            .stop_execution()
            .execution_arn(arn)
            .error("Job.Cancelled")
            .cause(cause)
            .send()
            .await
            .map_err(|e| CloudError::aws("StopExecution", e))?;
        Ok(())
    }
}

/// StartExecution under `name`; `ExecutionAlreadyExists` means an earlier start (or a worker
/// continuing the same execution) got there first, which is the same outcome.
pub async fn start_named(
    client: &Client,
    state_machine_arn: &str,
    name: &str,
    input: &ExecutionInput,
) -> Result<Started, CloudError> {
    let body = serde_json::to_string(input).map_err(|e| CloudError::Invalid(e.to_string()))?;
    match client
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(name)
        .input(body)
        .send()
        .await
    {
        Ok(out) => Ok(Started {
            arn: out.execution_arn().to_string(),
            name: name.to_string(),
            existing: false,
        }),
        Err(SdkError::ServiceError(e))
            if matches!(e.err(), StartExecutionError::ExecutionAlreadyExists(_)) =>
        {
            Ok(Started {
                arn: execution_arn(state_machine_arn, name),
                name: name.to_string(),
                existing: true,
            })
        }
        Err(e) => Err(CloudError::aws("StartExecution", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_names_are_stable_and_fit() {
        assert_eq!(base_name("backfill_acme_connectwise_20240101").len(), 43);
        assert_eq!(execution_name("backfill-j", 0), "backfill-j");
        assert_eq!(execution_name("backfill-j", 3), "backfill-j-c3");
        let long = "t".repeat(64) + "_connectwise_20240101";
        let a = base_name(&long);
        assert_eq!(
            a,
            base_name(&long),
            "the same job always gets the same name"
        );
        assert_ne!(
            a,
            base_name(&(long.clone() + "_r2")),
            "ids that differ keep apart"
        );
        assert!(execution_name(&a, 9999).len() <= 80, "{a}");
        assert_eq!(
            execution_arn(
                "arn:aws:states:us-east-1:123:stateMachine:bf",
                "backfill-j-c1"
            ),
            "arn:aws:states:us-east-1:123:execution:bf:backfill-j-c1"
        );
    }

    #[test]
    fn inputs_spread_the_loop_budget_over_lanes() {
        let one = ExecutionInput::new("j", 1, 60);
        assert_eq!((one.lanes.clone(), one.max_concurrency), (vec![0], 1));
        let three = ExecutionInput::new("j", 3, 60);
        assert_eq!(three.lanes, vec![0, 1, 2]);
        assert_eq!(three.max_iterations, one.max_iterations / 3);
        let json = serde_json::to_value(&three).unwrap();
        for key in [
            "job_id",
            "execution_name",
            "lanes",
            "max_concurrency",
            "heartbeat_seconds",
            "max_iterations",
            "continuation",
        ] {
            assert!(json.get(key).is_some(), "the state machine reads $.{key}");
        }
    }
}
