//! The tenants registry: who the tenants are, what they connected, and where each
//! connection's credentials come from (environment variables, a file, an AWS Secrets Manager
//! secret or an SSM parameter; never inline). Values held in AWS are read through a
//! `SecretStore` the composition root gives (`credentials`), so this module knows no SDK.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::backfill::by_service;
use super::{ConfigError, decode, read_json};
use crate::domain::{Service, validate_identifier};
use crate::secret::Secret;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsRegistry {
    pub tenants: Vec<Tenant>,
    /// The file the registry was read from; credential files are relative to its folder.
    #[serde(skip)]
    pub file: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub tenant_id: String,
    pub display_name: String,
    /// Every mutating action on the tenant's jobs or data needs its id typed
    /// (`engine::ops::guard`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    #[serde(deserialize_with = "by_service")]
    pub services: BTreeMap<Service, ServiceConnection>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConnection {
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Base URL of the API. `${SANDBOX_URL}` stands for the built-in sandbox's address.
    pub base_url: String,
    pub credentials: CredentialSource,
}

fn enabled_default() -> bool {
    true
}

/// Where a connection's secret values come from.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialSource {
    /// Field name → environment variable name.
    Env(BTreeMap<String, String>),
    /// A JSON file of field name → value; relative paths are read from the registry's folder.
    File(PathBuf),
    /// An AWS Secrets Manager secret (name or ARN) whose value is a JSON object of field →
    /// value.
    SecretId(String),
    /// An AWS SSM parameter (a SecureString, read decrypted) whose value is a JSON object of
    /// field → value.
    SsmParameter(String),
}

impl CredentialSource {
    /// The secret or parameter in AWS the credentials are read from, if they are.
    pub fn remote(&self) -> Option<RemoteRef> {
        match self {
            CredentialSource::SecretId(id) => Some(RemoteRef::Secret(id.clone())),
            CredentialSource::SsmParameter(name) => Some(RemoteRef::Parameter(name.clone())),
            CredentialSource::Env(_) | CredentialSource::File(_) => None,
        }
    }
}

/// A secret value held in AWS: its name, never its value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RemoteRef {
    /// A Secrets Manager secret, by name or ARN.
    Secret(String),
    /// An SSM Parameter Store parameter, by name.
    Parameter(String),
}

impl std::fmt::Display for RemoteRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteRef::Secret(id) => write!(f, "Secrets Manager secret '{id}'"),
            RemoteRef::Parameter(name) => write!(f, "SSM parameter '{name}'"),
        }
    }
}

/// A required credential field that is not there or empty; names the field (and the secret
/// or parameter the credentials came from), never a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("credential field '{field}' is missing or empty{}", from.as_ref().map(|r| format!(" in {r}")).unwrap_or_default())]
pub struct MissingCredential {
    pub field: String,
    pub from: Option<RemoteRef>,
}

/// Resolved credential fields. Values are secrets: they never print.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    fields: BTreeMap<String, Secret>,
    /// The secret or parameter they were read from, for messages.
    from: Option<RemoteRef>,
}

impl Credentials {
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        Credentials {
            fields: pairs
                .into_iter()
                .map(|(k, v)| (k, Secret::new(v)))
                .collect(),
            from: None,
        }
    }

    /// These credentials, as read from `from` (which a missing field's error names).
    pub fn read_from(mut self, from: RemoteRef) -> Self {
        self.from = Some(from);
        self
    }

    /// A required field, or an error naming it (never its value).
    pub fn require(&self, field: &str) -> Result<&Secret, MissingCredential> {
        self.fields
            .get(field)
            .filter(|s| !s.expose().is_empty())
            .ok_or_else(|| MissingCredential {
                field: field.to_string(),
                from: self.from.clone(),
            })
    }

    /// The text of a required field, for a client that builds its requests from it.
    pub fn field(&self, field: &str) -> Result<String, MissingCredential> {
        self.require(field).map(|s| s.expose().to_string())
    }

    /// The text of a field that may be missing; empty counts as missing.
    pub fn optional(&self, field: &str) -> Option<String> {
        self.fields
            .get(field)
            .map(|s| s.expose().to_string())
            .filter(|s| !s.is_empty())
    }

    pub fn get(&self, field: &str) -> Option<&Secret> {
        self.fields.get(field)
    }

    /// Every secret value, so writers can scrub them from text before it is stored.
    pub fn secret_values(&self) -> impl Iterator<Item = &str> {
        self.fields.values().map(|s| s.expose())
    }
}

/// How a Salesforce or ServiceNow connection signs in. The credential fields present
/// choose it (`Grant::salesforce`, `Grant::servicenow`); `Grant::fields` lists what each
/// one requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// ServiceNow only: Basic auth.
    Basic,
    /// OAuth password grant.
    Password,
    /// OAuth refresh-token grant (Salesforce).
    RefreshToken,
    /// OAuth client-credentials grant: no user, no refresh token.
    ClientCredentials,
}

impl Grant {
    /// The credential fields the grant requires (Salesforce's password grant also reads an
    /// optional `security_token`).
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Grant::Basic => &["username", "password"],
            Grant::Password => &["client_id", "client_secret", "username", "password"],
            Grant::RefreshToken => &["client_id", "client_secret", "refresh_token"],
            Grant::ClientCredentials => &["client_id", "client_secret"],
        }
    }

    /// The form's `grant_type` (`None` for Basic auth).
    pub fn grant_type(self) -> Option<&'static str> {
        match self {
            Grant::Basic => None,
            Grant::Password => Some("password"),
            Grant::RefreshToken => Some("refresh_token"),
            Grant::ClientCredentials => Some("client_credentials"),
        }
    }

    /// Salesforce: `refresh_token` → refresh-token grant; else `username` or `password` →
    /// password grant; else client credentials. The error names a required field missing.
    pub fn salesforce(creds: &Credentials) -> Result<Grant, MissingCredential> {
        let grant = if creds.optional("refresh_token").is_some() {
            Grant::RefreshToken
        } else if creds.optional("username").is_some() || creds.optional("password").is_some() {
            Grant::Password
        } else {
            Grant::ClientCredentials
        };
        grant.check(creds)
    }

    /// ServiceNow: `username` or `password` → Basic auth, or the password grant when
    /// `client_id` or `client_secret` is there too; `client_id` or `client_secret` alone →
    /// client credentials; nothing → Basic auth (so the error names `username`).
    pub fn servicenow(creds: &Credentials) -> Result<Grant, MissingCredential> {
        let has = |f: &str| creds.optional(f).is_some();
        let user = has("username") || has("password");
        let grant = match (user, has("client_id") || has("client_secret")) {
            (true, true) => Grant::Password,
            (false, true) => Grant::ClientCredentials,
            _ => Grant::Basic,
        };
        grant.check(creds)
    }

    fn check(self, creds: &Credentials) -> Result<Grant, MissingCredential> {
        for field in self.fields() {
            creds.require(field)?;
        }
        Ok(self)
    }
}

impl TenantsRegistry {
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let mut reg: TenantsRegistry = decode(file, read_json(file)?)?;
        reg.file = file.to_path_buf();
        reg.validate()?;
        Ok(reg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let file = &self.file;
        let mut seen = std::collections::HashSet::new();
        for (i, t) in self.tenants.iter().enumerate() {
            validate_identifier("tenant_id", &t.tenant_id).map_err(|r| {
                ConfigError::invalid(file, format!("$.tenants[{i}].tenant_id"), r.to_string())
            })?;
            if !seen.insert(t.tenant_id.as_str()) {
                return Err(ConfigError::invalid(
                    file,
                    format!("$.tenants[{i}].tenant_id"),
                    format!("'{}' appears twice", t.tenant_id),
                ));
            }
            for (svc, conn) in &t.services {
                let at = |f: &str| format!("$.tenants[{i}].services.{svc}.{f}");
                let url = conn
                    .base_url
                    .replace("${SANDBOX_URL}", "http://sandbox.invalid");
                match url::Url::parse(&url) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                    _ => {
                        return Err(ConfigError::invalid(
                            file,
                            at("base_url"),
                            format!("'{}' is not an http(s) URL", conn.base_url),
                        ));
                    }
                }
                let empty = match &conn.credentials {
                    CredentialSource::Env(map) if map.is_empty() => {
                        Some(("credentials.env", "names no variables"))
                    }
                    CredentialSource::SecretId(id) if id.trim().is_empty() => {
                        Some(("credentials.secret_id", "is empty"))
                    }
                    CredentialSource::SsmParameter(name) if name.trim().is_empty() => {
                        Some(("credentials.ssm_parameter", "is empty"))
                    }
                    _ => None,
                };
                if let Some((field, reason)) = empty {
                    return Err(ConfigError::invalid(file, at(field), reason));
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, tenant_id: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.tenant_id == tenant_id)
    }

    /// Reads a connection's credentials from the environment or its file. Credentials held
    /// in AWS are read by a `CredentialResolver` (which calls this for the others).
    pub fn resolve_credentials(
        &self,
        tenant_id: &str,
        service: Service,
        conn: &ServiceConnection,
    ) -> Result<Credentials, CredentialError> {
        let (tenant, service) = (tenant_id.to_string(), service);
        match &conn.credentials {
            CredentialSource::Env(map) => {
                let mut pairs = Vec::new();
                for (field, var) in map {
                    let value = std::env::var(var).map_err(|_| CredentialError::NoVariable {
                        tenant: tenant.clone(),
                        service,
                        field: field.clone(),
                        var: var.clone(),
                    })?;
                    pairs.push((field.clone(), value));
                }
                Ok(Credentials::from_pairs(pairs))
            }
            CredentialSource::File(path) => {
                let path = if path.is_absolute() {
                    path.clone()
                } else {
                    self.file.parent().unwrap_or(Path::new(".")).join(path)
                };
                let text = match super::read_small_file(&path, super::MAX_CREDENTIALS_FILE_BYTES) {
                    Ok(text) => text,
                    Err(e) => {
                        let reason = e.to_string();
                        return Err(CredentialError::Unreadable {
                            tenant,
                            service,
                            path,
                            reason,
                        });
                    }
                };
                // serde_json's message quotes no input values for type errors on maps of
                // strings, but a syntax error may; keep only the position.
                let map: BTreeMap<String, String> = match serde_json::from_str(&text) {
                    Ok(map) => map,
                    Err(e) => {
                        let (line, column) = (e.line(), e.column());
                        return Err(CredentialError::NotAnObject {
                            tenant,
                            service,
                            path,
                            line,
                            column,
                        });
                    }
                };
                Ok(Credentials::from_pairs(map))
            }
            CredentialSource::SecretId(_) | CredentialSource::SsmParameter(_) => {
                let from = conn.credentials.remote().expect("a reference to AWS");
                Err(CredentialError::Remote {
                    tenant,
                    service,
                    from,
                    reason: "credentials held in AWS are read through the credential resolver"
                        .into(),
                    transient: false,
                })
            }
        }
    }
}

/// Why a connection's credentials cannot be resolved; names the tenant and service, never
/// a value.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "tenant '{tenant}' {service}: credential field '{field}' expects environment variable {var}, which is not set"
    )]
    NoVariable {
        tenant: String,
        service: Service,
        field: String,
        var: String,
    },
    #[error("tenant '{tenant}' {service}: cannot read credentials file {}: {reason}", path.display())]
    Unreadable {
        tenant: String,
        service: Service,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "tenant '{tenant}' {service}: credentials file {} is not a JSON object of strings (line {line}, column {column})",
        path.display()
    )]
    NotAnObject {
        tenant: String,
        service: Service,
        path: PathBuf,
        line: usize,
        column: usize,
    },
    #[error("tenant '{tenant}' {service}: cannot read {from}: {reason}")]
    Remote {
        tenant: String,
        service: Service,
        from: RemoteRef,
        reason: String,
        /// Asking again may help (throttling, a timeout).
        transient: bool,
    },
    #[error(
        "tenant '{tenant}' {service}: the value of {from} is not a JSON object of strings (line {line}, column {column})"
    )]
    RemoteNotAnObject {
        tenant: String,
        service: Service,
        from: RemoteRef,
        line: usize,
        column: usize,
    },
}

impl CredentialError {
    /// Whether asking again may help: an AWS read that was throttled or timed out.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CredentialError::Remote {
                transient: true,
                ..
            }
        )
    }
}

#[cfg(test)]
mod grant_tests {
    use super::*;

    fn creds(fields: &[&str]) -> Credentials {
        Credentials::from_pairs(fields.iter().map(|f| (f.to_string(), format!("{f}-value"))))
    }

    #[test]
    fn the_fields_present_choose_the_grant_and_a_missing_one_is_named() {
        let sf = |f: &[&str]| Grant::salesforce(&creds(f)).map_err(|e| e.field);
        let sn = |f: &[&str]| Grant::servicenow(&creds(f)).map_err(|e| e.field);
        let pair = ["client_id", "client_secret"];
        assert_eq!(sf(&pair), Ok(Grant::ClientCredentials));
        assert_eq!(sn(&pair), Ok(Grant::ClientCredentials));
        let all = ["client_id", "client_secret", "username", "password"];
        assert_eq!(sf(&all), Ok(Grant::Password));
        assert_eq!(sn(&all), Ok(Grant::Password));
        assert_eq!(sn(&all[2..]), Ok(Grant::Basic));
        let refresh = ["client_id", "client_secret", "refresh_token", "username"];
        assert_eq!(sf(&refresh), Ok(Grant::RefreshToken));
        // Half of a pair is an error naming the other half, not another grant.
        assert_eq!(
            sf(&["client_id", "client_secret", "password"]),
            Err("username".into())
        );
        assert_eq!(sn(&["client_id"]), Err("client_secret".into()));
        assert_eq!(sn(&["username", "client_secret"]), Err("client_id".into()));
        assert_eq!(sf(&[]), Err("client_id".into()));
        assert_eq!(sn(&[]), Err("username".into()));
        assert_eq!(
            Grant::ClientCredentials.grant_type(),
            Some("client_credentials")
        );
        assert_eq!(Grant::Basic.grant_type(), None);
    }
}
