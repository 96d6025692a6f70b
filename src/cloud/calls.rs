//! The AWS call log: with `AVESA_AWS_CALL_LOG=FILE` set, every AWS request the process sends is
//! appended to FILE as its IAM action, one `service:Operation` a line (`dynamodb:Query`,
//! `states:StartExecution`, `s3:GetObject`...), so a test (or an operator writing a policy) can
//! see what a command needs. Unset, nothing is wrapped and nothing is written.
//!
//! SDK clients: `aws_config()` gives every client an HTTP client that records each request
//! (retried attempts included) before sending it: the service is the signing name of the
//! request's SigV4 credential scope (which is the IAM prefix) and the operation the
//! `x-amz-target` header's last part. S3 goes through object_store, whose HTTP connector
//! (`s3::object_store`) maps each request to the action IAM checks: GET/HEAD of an object →
//! `s3:GetObject`, GET of the bucket (a list) → `s3:ListBucket`, PUT and multipart calls →
//! `s3:PutObject` (a copy also reads its source: `s3:GetObject`), DELETE and bulk delete →
//! `s3:DeleteObject`. Nothing of a request but its method, path and those headers is read:
//! no credential or body reaches the log.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use object_store::client::{
    ClientOptions, HttpClient as StoreHttpClient, HttpError, HttpRequest as StoreRequest,
    HttpResponse as StoreResponse, HttpService, ReqwestConnector,
};

/// The environment variable naming the call log.
pub const CALL_LOG_ENV: &str = "AVESA_AWS_CALL_LOG";

/// The call log's file, when `CALL_LOG_ENV` names one.
pub fn call_log() -> Option<PathBuf> {
    std::env::var_os(CALL_LOG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Appends `actions` to the log (one line each; a line is written whole, so processes may
/// share a file). A log that cannot be written is reported, not fatal.
fn record(actions: &[String]) {
    let Some(path) = call_log() else { return };
    let lines: String = actions.iter().map(|a| format!("{a}\n")).collect();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(lines.as_bytes()));
    if let Err(e) = written {
        tracing::warn!("{CALL_LOG_ENV} {}: {e}", path.display());
    }
}

/// The IAM action of an SDK request, from its `authorization` and `x-amz-target` headers.
pub fn sdk_action(authorization: Option<&str>, target: Option<&str>) -> String {
    // "AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, ..."
    let service = authorization
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown");
    let operation = target
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("unknown");
    format!("{service}:{operation}")
}

/// The IAM actions an S3 request needs, from its method, query and headers.
pub fn s3_actions(method: &str, path: &str, query: &str, copy_source: bool) -> Vec<&'static str> {
    let has = |key: &str| {
        query
            .split('&')
            .any(|p| p == key || p.starts_with(&format!("{key}=")))
    };
    // Path-style "/bucket" or "/bucket/" is the bucket; "/bucket/key..." an object.
    let on_bucket = !path.trim_matches('/').contains('/');
    match method {
        "GET" | "HEAD" if on_bucket => vec!["s3:ListBucket"],
        "GET" | "HEAD" => vec!["s3:GetObject"],
        "PUT" if copy_source => vec!["s3:GetObject", "s3:PutObject"],
        "PUT" => vec!["s3:PutObject"],
        "POST" if has("delete") => vec!["s3:DeleteObject"],
        "POST" => vec!["s3:PutObject"],
        "DELETE" if has("uploadId") => vec!["s3:AbortMultipartUpload"],
        "DELETE" => vec!["s3:DeleteObject"],
        _ => vec!["s3:unknown"],
    }
}

/// The SDK HTTP client for `aws_config()`: the default one, recording when the log is on.
pub fn sdk_http_client() -> Option<SharedHttpClient> {
    call_log()?;
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let inner = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .build_https();
    Some(SharedHttpClient::new(Recording(inner)))
}

#[derive(Debug)]
struct Recording<T>(T);

impl HttpClient for Recording<SharedHttpClient> {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let inner = self.0.http_connector(settings, components);
        SharedHttpConnector::new(Recording(inner))
    }
}

impl HttpConnector for Recording<SharedHttpConnector> {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let headers = request.headers();
        record(&[sdk_action(
            headers.get("authorization"),
            headers.get("x-amz-target"),
        )]);
        self.0.call(request)
    }
}

/// object_store's HTTP connector for S3: the default one, recording when the log is on.
pub fn s3_connector() -> Option<S3Recording> {
    call_log().map(|_| S3Recording)
}

/// Connects object_store's default client, wrapped to record each request.
#[derive(Debug)]
pub struct S3Recording;

impl object_store::client::HttpConnector for S3Recording {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<StoreHttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(StoreHttpClient::new(Recording(Arc::new(inner))))
    }
}

#[async_trait]
impl HttpService for Recording<Arc<StoreHttpClient>> {
    async fn call(&self, req: StoreRequest) -> Result<StoreResponse, HttpError> {
        let actions = s3_actions(
            req.method().as_str(),
            req.uri().path(),
            req.uri().query().unwrap_or(""),
            req.headers().contains_key("x-amz-copy-source"),
        );
        record(&actions.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        self.0.execute(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sdk_request_is_named_by_its_signing_service_and_target() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/states/aws4_request, \
                    SignedHeaders=host, Signature=abc";
        assert_eq!(
            sdk_action(Some(auth), Some("AWSStepFunctions.StartExecution")),
            "states:StartExecution"
        );
        assert_eq!(
            sdk_action(Some(auth), Some("DynamoDB_20120810.Query")),
            "states:Query"
        );
        assert_eq!(sdk_action(None, None), "unknown:unknown");
    }

    #[test]
    fn s3_requests_map_to_the_actions_iam_checks() {
        assert_eq!(
            s3_actions("GET", "/b", "list-type=2&prefix=t/", false),
            ["s3:ListBucket"]
        );
        assert_eq!(
            s3_actions("GET", "/b/t/raw/x.jsonl", "", false),
            ["s3:GetObject"]
        );
        assert_eq!(s3_actions("HEAD", "/b/t/x", "", false), ["s3:GetObject"]);
        assert_eq!(s3_actions("PUT", "/b/t/x", "", false), ["s3:PutObject"]);
        assert_eq!(
            s3_actions("PUT", "/b/t/x", "", true),
            ["s3:GetObject", "s3:PutObject"]
        );
        assert_eq!(
            s3_actions("POST", "/b", "delete", false),
            ["s3:DeleteObject"]
        );
        assert_eq!(
            s3_actions("POST", "/b/t/x", "uploads", false),
            ["s3:PutObject"]
        );
        assert_eq!(
            s3_actions("DELETE", "/b/t/x", "", false),
            ["s3:DeleteObject"]
        );
        assert_eq!(
            s3_actions("DELETE", "/b/t/x", "uploadId=1", false),
            ["s3:AbortMultipartUpload"]
        );
    }
}
