//! Tenant credentials held in AWS: Secrets Manager secrets (`GetSecretValue`, the
//! `SecretString`) and SSM Parameter Store SecureString parameters (`GetParameter` with
//! decryption), read for `config::CredentialResolver`.
//!
//! The clients come from `aws_config()` (so `AWS_ENDPOINT_URL` and its per-service forms
//! apply, as for every client here) and are made on the first read: a run whose registry
//! names no secret never loads the AWS configuration. Errors keep the service's code and
//! message, which name the secret, never its value.

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::types::ParameterType;

use crate::config::{RemoteError, RemoteRef, SecretStore};
use crate::secret::Secret;

/// Reads secrets and parameters through the shared AWS configuration.
#[derive(Default)]
pub struct AwsSecretStore {
    clients: tokio::sync::OnceCell<Clients>,
}

struct Clients {
    secrets: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
}

impl AwsSecretStore {
    async fn clients(&self) -> &Clients {
        self.clients
            .get_or_init(|| async {
                let config = super::aws_config().await;
                Clients {
                    secrets: aws_sdk_secretsmanager::Client::new(&config),
                    ssm: aws_sdk_ssm::Client::new(&config),
                }
            })
            .await
    }

    async fn secret(&self, id: &str) -> Result<Secret, RemoteError> {
        let out = self
            .clients()
            .await
            .secrets
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| failed("GetSecretValue", e))?;
        out.secret_string()
            .map(Secret::from)
            .ok_or_else(|| RemoteError {
                reason: "it holds no SecretString (a binary secret is not read)".into(),
                transient: false,
            })
    }

    async fn parameter(&self, name: &str) -> Result<Secret, RemoteError> {
        let out = self
            .clients()
            .await
            .ssm
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| failed("GetParameter", e))?;
        let parameter = out.parameter().ok_or_else(|| RemoteError {
            reason: "GetParameter answered without the parameter".into(),
            transient: true,
        })?;
        if parameter.r#type() != Some(&ParameterType::SecureString) {
            return Err(RemoteError {
                reason: "it is not a SecureString parameter: store credentials encrypted".into(),
                transient: false,
            });
        }
        parameter
            .value()
            .map(Secret::from)
            .ok_or_else(|| RemoteError {
                reason: "the parameter has no value".into(),
                transient: false,
            })
    }
}

#[async_trait]
impl SecretStore for AwsSecretStore {
    async fn read(&self, at: &RemoteRef) -> Result<Secret, RemoteError> {
        match at {
            RemoteRef::Secret(id) => self.secret(id).await,
            RemoteRef::Parameter(name) => self.parameter(name).await,
        }
    }
}

/// Service error codes that mean "ask again later".
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "InternalServiceError",
    "InternalServerError",
    "ServiceUnavailable",
];

/// An SDK error as `operation: code: message`; no request or response body is quoted.
fn failed<E, R>(operation: &str, e: SdkError<E, R>) -> RemoteError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match &e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or("error");
            RemoteError {
                reason: format!("{operation}: {code}: {}", err.message().unwrap_or("")),
                transient: TRANSIENT_CODES.contains(&code),
            }
        }
        SdkError::TimeoutError(_) => RemoteError {
            reason: format!("{operation}: timed out"),
            transient: true,
        },
        // The causes of these are the client's own (connection, credentials, region).
        SdkError::DispatchFailure(d) => RemoteError {
            transient: d.is_io() || d.is_timeout(),
            reason: format!("{operation}: {}", DisplayErrorContext(&e)),
        },
        SdkError::ConstructionFailure(_) => RemoteError {
            reason: format!("{operation}: {}", DisplayErrorContext(&e)),
            transient: false,
        },
        _ => RemoteError {
            reason: format!("{operation}: the answer could not be read"),
            transient: true,
        },
    }
}
