//! Shared AWS access: one place that loads the SDK configuration every AWS client starts from.
//!
//! The engine never imports an AWS SDK; `store` and `cloud` do, and they get their settings
//! here so that one set of environment variables points every client at AWS or at local
//! emulators alike.

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads region, credentials and endpoints through the SDK's default chain.
///
/// The chain reads `AWS_REGION`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles,
/// web identity, container and instance credentials, and the endpoint overrides
/// `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` (e.g. `AWS_ENDPOINT_URL_DYNAMODB`),
/// which is how tests and local runs reach DynamoDB Local without a code path of their own.
/// Nothing is contacted here: credentials are resolved on a client's first request.
pub async fn aws_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}
