//! Cloud orchestration: Step Functions runs a job's chunks through an SQS queue to `worker`
//! processes anywhere (the same engine code as local runs), DynamoDB holds job state, S3 the
//! data and CloudWatch Logs the logs. The engine never sees an AWS type: this module adapts.
//!
//! AWS access goes through aws-config's default chain (environment, profiles, SSO, container
//! and instance roles) and its endpoint overrides (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_<SERVICE>`), so one binary talks to AWS or to local emulators.

pub mod lambda;
pub mod logs;
pub mod message;
pub mod ops;
pub mod s3;
pub mod sfn;
pub mod worker;

use aws_config::{BehaviorVersion, SdkConfig};

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

impl CloudSettings {
    /// The value of `setting`, or an error that names the flag and variable to set.
    pub fn require(&self, setting: Setting) -> Result<&str, CloudError> {
        let value = match setting {
            Setting::StateMachineArn => &self.state_machine_arn,
            Setting::QueueUrl => &self.queue_url,
            Setting::Bucket => &self.bucket,
            Setting::TablePrefix => &self.table_prefix,
            Setting::LogGroup => &self.log_group,
        };
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(CloudError::MissingSetting(setting))
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

/// Loads region, credentials and endpoints through the SDK's default chain.
///
/// The chain reads `AWS_REGION`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles,
/// web identity, container and instance credentials, and the endpoint overrides
/// `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` (e.g. `AWS_ENDPOINT_URL_DYNAMODB`),
/// which is how tests and local runs reach DynamoDB Local without a code path of their own.
/// Nothing is contacted here: credentials are resolved on a client's first request.
/// The store and every client of this module start from it.
pub async fn aws_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
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
