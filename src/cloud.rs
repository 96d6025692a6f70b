//! Cloud orchestration: Step Functions runs a job's chunks through an SQS queue to `worker`
//! processes anywhere (the same engine code as local runs), DynamoDB holds job state, S3 the
//! data and CloudWatch Logs the logs. The engine never sees an AWS type: this module adapts.
//!
//! ```text
//! trigger --cloud ── job → DynamoDB ── StartExecution backfill-{job_id}
//!                                           │
//! Step Functions (infrastructure/backfill.asl.json)
//!   RunLanes: Map over $.lanes, MaxConcurrencyPath $.max_concurrency
//!     each lane: RunChunk ──▶ NextIteration ──▶ MoreWork ─(more)──▶ RunChunk
//!                  │ Catch                        ├─(continue_as_new)─▶ lane ends
//!                  ▼                              └─(done)────────────▶ lane ends
//!                RecordFailure ─▶ TooManyFailures (too many in a row: lane gives up) ─▶ RunChunk
//!   ShouldContinue ─(any lane asked)─▶ ContinueAsNew (a worker starts …-c{n+1}) ─▶ end
//!                  └──────────────────▶ Transform ─▶ Finalize ─▶ FinalStatus (Succeed / Fail)
//!         every Task: sqs:sendMessage.waitForTaskToken to the worker queue, HeartbeatSecondsPath,
//!         Retry [Worker.Retryable, States.Timeout, States.HeartbeatTimeout] with backoff
//!                                           │ SQS
//! worker processes (ECS/EC2/Lambda) ── step_job: claim + run one chunk ── DynamoDB store,
//! S3 sink (object_store), CloudWatch Logs ({job_id}/{worker} streams)
//! ```
//!
//! The state machine does not list chunks. A lane's task says "run the next chunk of job J"; the
//! worker claims the next claimable chunk from the store (the claim loop's own code), runs it and
//! answers `{"more", "continue_as_new", "chunk"}` (`message`). Chunk failures are the engine's
//! business (attempts, backoff, `failed` chunks) and do not fail the task; a task fails only for
//! the worker's own trouble: `Worker.Retryable` (store or S3 unreachable, worker shutting down),
//! `Worker.JobNotFound`, `Worker.BadMessage`, `Worker.Fatal`. Every DynamoDB write is a worker's
//! or the dispatcher's, none the state machine's: one writer keeps the conditional-write rules in
//! one place.
//!
//! AWS access goes through aws-config's default chain (environment, profiles, SSO, container
//! and instance roles) and its endpoint overrides (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_<SERVICE>`), so one binary talks to AWS or to local emulators. Every AWS
//! client comes from `aws_config()`, whose `TimeoutConfig` bounds each call (`CONNECT_TIMEOUT`,
//! `ATTEMPT_TIMEOUT`: an SQS long poll plus a margin, `OPERATION_TIMEOUT`: the standard retry
//! strategy's attempts and their backoff). Retries are the default chain's standard strategy
//! (`AWS_MAX_ATTEMPTS`, `AWS_RETRY_MODE` and profiles still apply), so a hung connection costs an
//! attempt, not a worker. The configuration files have no cloud section. object_store's S3
//! client (the sink, `s3`) keeps its own timeouts.
//!
//! What the emulator does differently (moto, found while building the tests): the
//! `states:startExecution` integration fails (see `sfn`); SendTaskHeartbeat can answer
//! `InvalidToken` for a task whose message was just sent (the worker asks again for a moment before
//! taking a message for stale; `TaskTimedOut`/`TaskDoesNotExist` mean stale at once);
//! StopExecution during a Map's callback ends the execution FAILED (`States.Runtime`) rather than
//! ABORTED. None of these change the code path on AWS.

pub mod calls;
pub mod deploy;
pub mod lambda;
pub mod logs;
pub mod message;
pub mod ops;
pub mod permissions;
pub mod s3;
pub mod secrets;
pub mod settings_file;
pub mod sfn;
pub mod worker;

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::engine::EngineError;
use crate::store::StoreError;

/// Where the cloud deployment is: what the stack's outputs name (`infrastructure/README`).
#[derive(Clone, Debug, Default)]
pub struct CloudSettings {
    pub state_machine_arn: Option<String>,
    pub queue_url: Option<String>,
    pub bucket: Option<String>,
    pub table_prefix: Option<String>,
    pub log_group: Option<String>,
}

/// One setting: what it is, and the flag and environment variable that give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    StateMachineArn,
    QueueUrl,
    Bucket,
    TablePrefix,
    LogGroup,
}

impl Setting {
    pub const ALL: [Setting; 5] = [
        Setting::StateMachineArn,
        Setting::QueueUrl,
        Setting::Bucket,
        Setting::TablePrefix,
        Setting::LogGroup,
    ];

    pub fn describe(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Setting::StateMachineArn => (
                "the state machine ARN",
                "--state-machine-arn",
                "AVESA_CLOUD_STATE_MACHINE_ARN",
            ),
            Setting::QueueUrl => (
                "the worker queue URL",
                "--queue-url",
                "AVESA_CLOUD_QUEUE_URL",
            ),
            Setting::Bucket => ("the data bucket", "--bucket", "AVESA_CLOUD_BUCKET"),
            Setting::TablePrefix => (
                "the DynamoDB table prefix",
                "--table-prefix",
                "AVESA_CLOUD_TABLE_PREFIX",
            ),
            Setting::LogGroup => ("the log group", "--log-group", "AVESA_CLOUD_LOG_GROUP"),
        }
    }
}

impl Setting {
    /// The setting's field in the settings file (`settings_file`).
    pub fn field(self) -> &'static str {
        match self {
            Setting::StateMachineArn => "state_machine_arn",
            Setting::QueueUrl => "queue_url",
            Setting::Bucket => "bucket",
            Setting::TablePrefix => "table_prefix",
            Setting::LogGroup => "log_group",
        }
    }
}

impl CloudSettings {
    /// The value of `setting`, or an error that names the flag and variable to set.
    pub fn require(&self, setting: Setting) -> Result<&str, CloudError> {
        self.slot(setting)
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(CloudError::MissingSetting(setting))
    }

    fn slot(&self, setting: Setting) -> &Option<String> {
        match setting {
            Setting::StateMachineArn => &self.state_machine_arn,
            Setting::QueueUrl => &self.queue_url,
            Setting::Bucket => &self.bucket,
            Setting::TablePrefix => &self.table_prefix,
            Setting::LogGroup => &self.log_group,
        }
    }

    /// Where one setting's value is kept, to fill it in.
    pub fn slot_mut(&mut self, setting: Setting) -> &mut Option<String> {
        match setting {
            Setting::StateMachineArn => &mut self.state_machine_arn,
            Setting::QueueUrl => &mut self.queue_url,
            Setting::Bucket => &mut self.bucket,
            Setting::TablePrefix => &mut self.table_prefix,
            Setting::LogGroup => &mut self.log_group,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("{}: set {} or {}", .0.describe().0, .0.describe().1, .0.describe().2)]
    MissingSetting(Setting),
    /// A call to an AWS service failed; `detail` holds the service's own message.
    #[error("{operation}: {detail}")]
    Aws {
        operation: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Invalid(String),
}

impl CloudError {
    /// Wraps an SDK error with its whole cause chain (the service's code and message).
    pub fn aws(operation: &'static str, e: impl std::error::Error) -> CloudError {
        let mut detail = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        CloudError::Aws { operation, detail }
    }
}

/// The longest SQS long poll the worker asks for (`WaitTimeSeconds`; SQS allows no more).
pub const SQS_MAX_WAIT: Duration = Duration::from_secs(20);

/// How long one connection may take to open (the SDK's own default).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(3_100);
/// How long one attempt of a call may take, retries not counted: the longest SQS long poll
/// plus 10 s for the connection and the answer, so a hung connection fails the attempt (and
/// the standard retry strategy tries again) instead of stalling a worker for good.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a call may take with all its attempts: the standard retry strategy's 3 attempts
/// of at most `ATTEMPT_TIMEOUT` each, and its backoff between them (at most 1 s, then 2 s).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(100);

/// The timeouts every AWS client of this crate gets.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// Loads region, credentials and endpoints through the SDK's default chain.
///
/// The chain reads `AWS_REGION`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles,
/// web identity, container and instance credentials, and the endpoint overrides
/// `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` (e.g. `AWS_ENDPOINT_URL_DYNAMODB`),
/// which is how tests and local runs reach DynamoDB Local without a code path of their own.
/// Nothing is contacted here: credentials are resolved on a client's first request.
/// The store and every client of this module start from it.
///
/// Every call gets `timeout_config()`. Retries stay the chain's: the SDK's standard strategy
/// (3 attempts with jittered backoff), which `AWS_MAX_ATTEMPTS` and `AWS_RETRY_MODE` (or the
/// profile) may change; the operation timeout bounds a call whatever the attempts.
/// With `AVESA_AWS_CALL_LOG` set, every client's requests are recorded (`calls`).
///
/// The region is the chain's (`AWS_REGION`, `AWS_DEFAULT_REGION`, the profile); when the
/// chain gives none, the deployment's settings file's (`use_deployment_region`), so a
/// settings file written by `cloud up` is enough on a machine with no AWS configuration.
pub async fn aws_config() -> SdkConfig {
    let chain = aws_config::meta::region::RegionProviderChain::default_provider()
        .or_else(DEPLOYMENT_REGION.get().cloned().flatten().map(Region::new));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeout_config())
        .region(chain);
    if let Some(client) = calls::sdk_http_client() {
        loader = loader.http_client(client);
    }
    loader.load().await
}

/// The region of the deployment's settings file, set once by the command that read it.
static DEPLOYMENT_REGION: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// The region `aws_config()` falls back to when the AWS configuration names none (the
/// settings file's); the first call wins (a process works on one deployment).
pub fn use_deployment_region(region: Option<String>) {
    let _ = DEPLOYMENT_REGION.set(region);
}

/// The endpoint override for one service, as aws-config resolves it for SDK clients:
/// `AWS_ENDPOINT_URL_<SERVICE>`, the profile's `endpoint_url`, then `AWS_ENDPOINT_URL`.
/// (object_store builds its own S3 client, so it is told explicitly.)
pub fn endpoint_override(config: &SdkConfig, service_id: &str, env: &str) -> Option<String> {
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id(service_id)
        .profile("endpoint_url")
        .env(env)
        .build()
        .ok()?;
    config
        .service_config()
        .and_then(|c| c.load_config(key))
        .or_else(|| config.endpoint_url().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_let_a_long_poll_finish_and_bound_every_retry() {
        // A ReceiveMessage long poll of 20 s must not be cut off by the attempt timeout.
        assert!(ATTEMPT_TIMEOUT >= SQS_MAX_WAIT + Duration::from_secs(5));
        assert!(CONNECT_TIMEOUT < ATTEMPT_TIMEOUT);
        // Three standard attempts and their backoff (at most 1 s, then 2 s) fit.
        assert!(OPERATION_TIMEOUT >= ATTEMPT_TIMEOUT * 3 + Duration::from_secs(3));
        let t = timeout_config();
        assert_eq!(t.connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(t.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
        assert_eq!(t.operation_timeout(), Some(OPERATION_TIMEOUT));
        assert_eq!(t.read_timeout(), None, "a long poll reads nothing for 20 s");
    }

    #[tokio::test]
    async fn the_shared_config_has_the_timeouts_and_standard_retries() {
        let config = aws_config().await;
        let t = config.timeout_config().expect("timeouts are set");
        assert_eq!(t.connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(t.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
        assert_eq!(t.operation_timeout(), Some(OPERATION_TIMEOUT));
        let retry = config.retry_config().expect("a retry configuration");
        if std::env::var_os("AWS_RETRY_MODE").is_none() {
            assert_eq!(retry.mode(), aws_config::retry::RetryMode::Standard);
        }
        if std::env::var_os("AWS_MAX_ATTEMPTS").is_none() {
            assert_eq!(retry.max_attempts(), 3);
        }
    }

    #[test]
    fn a_missing_setting_names_its_flag_and_variable() {
        let s = CloudSettings {
            bucket: Some("  ".into()),
            ..CloudSettings::default()
        };
        let e = s.require(Setting::Bucket).unwrap_err().to_string();
        assert_eq!(e, "the data bucket: set --bucket or AVESA_CLOUD_BUCKET");
        let e = s.require(Setting::StateMachineArn).unwrap_err().to_string();
        assert!(e.contains("AVESA_CLOUD_STATE_MACHINE_ARN"), "{e}");
    }
}
