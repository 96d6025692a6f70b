//! The raw sink on S3: object_store's S3 client, signed with credentials from aws-config's
//! default chain, so parts land at `s3://{bucket}/{tenant_id}/raw/{service}/{table}/...`
//! through the same `RawSink` code as local files.

use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::{CredentialProvider, ObjectStore};

use super::{CloudError, endpoint_override};
use crate::sink::RawSink;

/// Hands object_store the credentials aws-config resolves (profiles, SSO, roles...), which
/// object_store's own chain does not all know; aws-config caches and refreshes them.
#[derive(Debug)]
struct SdkCredentials(SharedCredentialsProvider);

#[async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let c = self
            .0
            .provide_credentials()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(Arc::new(AwsCredential {
            key_id: c.access_key_id().to_string(),
            secret_key: c.secret_access_key().to_string(),
            token: c.session_token().map(str::to_string),
        }))
    }
}

/// An S3 object store for `bucket`: the SDK configuration's region, credentials and S3
/// endpoint override (path-style addressing, which emulators on loopback need and AWS takes).
pub fn object_store(bucket: &str, config: &SdkConfig) -> Result<Arc<dyn ObjectStore>, CloudError> {
    let region = config.region().map(|r| r.to_string()).ok_or_else(|| {
        CloudError::Invalid("no AWS region: set AWS_REGION or a profile's region".into())
    })?;
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(region)
        .with_virtual_hosted_style_request(false);
    if let Some(provider) = config.credentials_provider() {
        builder = builder.with_credentials(Arc::new(SdkCredentials(provider)));
    }
    if let Some(recording) = super::calls::s3_connector() {
        builder = builder.with_http_connector(recording);
    }
    if let Some(endpoint) = endpoint_override(config, "s3", "AWS_ENDPOINT_URL_S3") {
        builder = builder
            .with_allow_http(endpoint.starts_with("http://"))
            .with_endpoint(endpoint);
    }
    let store = builder
        .build()
        .map_err(|e| CloudError::Invalid(format!("S3 bucket '{bucket}': {e}")))?;
    Ok(Arc::new(store))
}

/// Whether an object_store error says the bucket does not exist: S3's `NoSuchBucket` (a list
/// request's error is `Generic`, with S3's error document in its text).
pub fn no_such_bucket(e: &object_store::Error) -> bool {
    e.to_string().contains("NoSuchBucket")
}

/// The raw sink writing to `s3://{bucket}/`.
pub fn raw_sink(bucket: &str, config: &SdkConfig) -> Result<RawSink, CloudError> {
    Ok(RawSink::new(object_store(bucket, config)?))
}
