//! Reading a connection's credentials wherever they are: environment variables and files
//! directly, AWS Secrets Manager secrets and SSM parameters through a `SecretStore` that the
//! composition root gives (the AWS one is `cloud::secrets`), so configuration knows no SDK.
//!
//! Values read from a store are kept for `credentials_cache_seconds` and read again after
//! that; `reread` reads them again at once (what a source refused with a 401 does, once).
//! The value of a secret or parameter is a JSON object of field → string. Errors name the
//! tenant, the service, the secret or parameter and the field, never a value.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::tenants::{CredentialError, Credentials, RemoteRef, ServiceConnection, TenantsRegistry};
use crate::domain::Service;
use crate::secret::Secret;

/// Where secrets held outside the configuration are read from.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The text stored at `at`: a secret's `SecretString`, a parameter's decrypted value.
    async fn read(&self, at: &RemoteRef) -> Result<Secret, RemoteError>;
}

/// Why a secret or parameter could not be read: the service's own words (which name the
/// secret, never its value), and whether asking again may help.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{reason}")]
pub struct RemoteError {
    pub reason: String,
    /// Throttling, a timeout, a broken connection: worth another try.
    pub transient: bool,
}

/// Whether a cached value will do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// What was read within `credentials_cache_seconds`, else read now.
    Cached,
    /// Read now (the API refused what was cached).
    Again,
}

/// Reads credentials, keeping what it read from the `SecretStore` for `ttl`.
pub struct CredentialResolver {
    store: Option<Arc<dyn SecretStore>>,
    ttl: Duration,
    /// Per secret or parameter: when it was read and its text. Held across a read, so
    /// concurrent first uses of one secret read it once.
    cache: tokio::sync::Mutex<HashMap<RemoteRef, (Instant, Secret)>>,
}

impl CredentialResolver {
    /// `store` reads secret and parameter references; `None` refuses them (with an error
    /// naming the reference).
    pub fn new(store: Option<Arc<dyn SecretStore>>, ttl: Duration) -> Self {
        CredentialResolver {
            store,
            ttl,
            cache: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The credentials of `conn`. `Read::Cached`: a secret or parameter read within the last
    /// `ttl` is not read again; `Read::Again`: read now whatever the cache holds (and kept).
    pub async fn read(
        &self,
        registry: &TenantsRegistry,
        (tenant_id, service): (&str, Service),
        conn: &ServiceConnection,
        how: Read,
    ) -> Result<Credentials, CredentialError> {
        let Some(at) = conn.credentials.remote() else {
            return registry.resolve_credentials(tenant_id, service, conn);
        };
        let failed = |reason: String, transient: bool| CredentialError::Remote {
            tenant: tenant_id.to_string(),
            service,
            from: at.clone(),
            reason,
            transient,
        };
        let Some(store) = &self.store else {
            return Err(failed("no AWS secret store is configured".into(), false));
        };
        let text = {
            let mut cache = self.cache.lock().await;
            match cache.get(&at) {
                Some((when, text)) if how == Read::Cached && when.elapsed() < self.ttl => {
                    text.clone()
                }
                _ => {
                    let text = store
                        .read(&at)
                        .await
                        .map_err(|e| failed(e.reason, e.transient))?;
                    cache.insert(at.clone(), (Instant::now(), text.clone()));
                    text
                }
            }
        };
        // serde_json's message for a map of strings quotes no value for a type error, but a
        // syntax error may: keep only the position.
        let map: BTreeMap<String, String> = serde_json::from_str(text.expose()).map_err(|e| {
            CredentialError::RemoteNotAnObject {
                tenant: tenant_id.to_string(),
                service,
                from: at.clone(),
                line: e.line(),
                column: e.column(),
            }
        })?;
        Ok(Credentials::from_pairs(map).read_from(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A store over a map, counting reads.
    #[derive(Default)]
    struct MapStore {
        values: Mutex<HashMap<RemoteRef, String>>,
        reads: Mutex<u32>,
    }

    #[async_trait]
    impl SecretStore for MapStore {
        async fn read(&self, at: &RemoteRef) -> Result<Secret, RemoteError> {
            *self.reads.lock().unwrap() += 1;
            let values = self.values.lock().unwrap();
            values
                .get(at)
                .map(|v| Secret::new(v.clone()))
                .ok_or_else(|| RemoteError {
                    reason: format!("{at} not found"),
                    transient: false,
                })
        }
    }

    fn registry(source: &str) -> (TenantsRegistry, ServiceConnection) {
        let conn: ServiceConnection = serde_json::from_value(serde_json::json!({
            "base_url": "http://h",
            "credentials": serde_json::from_str::<serde_json::Value>(source).unwrap(),
        }))
        .unwrap();
        let reg = TenantsRegistry {
            tenants: Vec::new(),
            file: "tenants.json".into(),
        };
        (reg, conn)
    }

    fn store(at: RemoteRef, value: &str) -> Arc<MapStore> {
        let store = Arc::new(MapStore::default());
        store.values.lock().unwrap().insert(at, value.into());
        store
    }

    #[tokio::test]
    async fn a_secret_is_read_once_per_ttl_and_again_on_demand() {
        let at = RemoteRef::Secret("avesa/acme".into());
        let s = store(at.clone(), r#"{"username":"u","password":"old-pass"}"#);
        let r = CredentialResolver::new(Some(s.clone()), Duration::from_secs(60));
        let (reg, conn) = registry(r#"{"secret_id":"avesa/acme"}"#);
        let sn = Service::Servicenow;
        let c = r
            .read(&reg, ("acme", sn), &conn, Read::Cached)
            .await
            .unwrap();
        assert_eq!(c.field("password").unwrap(), "old-pass");
        s.values
            .lock()
            .unwrap()
            .insert(at, r#"{"password":"new-pass"}"#.into());
        let c = r
            .read(&reg, ("acme", sn), &conn, Read::Cached)
            .await
            .unwrap();
        assert_eq!(c.field("password").unwrap(), "old-pass", "cached");
        assert_eq!(*s.reads.lock().unwrap(), 1);
        let c = r
            .read(&reg, ("acme", sn), &conn, Read::Again)
            .await
            .unwrap();
        assert_eq!(c.field("password").unwrap(), "new-pass");
        let c = r
            .read(&reg, ("acme", sn), &conn, Read::Cached)
            .await
            .unwrap();
        assert_eq!(
            c.field("password").unwrap(),
            "new-pass",
            "the re-read is kept"
        );
        // A missing field names the secret it was looked for in.
        let e = c.field("username").unwrap_err().to_string();
        assert_eq!(
            e,
            "credential field 'username' is missing or empty in Secrets Manager secret 'avesa/acme'"
        );
    }

    #[tokio::test]
    async fn a_zero_ttl_reads_every_time() {
        let at = RemoteRef::Parameter("/avesa/acme".into());
        let s = store(at, r#"{"k":"v1"}"#);
        let r = CredentialResolver::new(Some(s.clone()), Duration::ZERO);
        let (reg, conn) = registry(r#"{"ssm_parameter":"/avesa/acme"}"#);
        for _ in 0..3 {
            r.read(&reg, ("acme", Service::Connectwise), &conn, Read::Cached)
                .await
                .unwrap();
        }
        assert_eq!(*s.reads.lock().unwrap(), 3);
    }

    #[tokio::test]
    async fn errors_name_the_secret_and_never_its_value() {
        let at = RemoteRef::Parameter("/avesa/acme".into());
        let s = store(at, "{\"private_key\": \"hunter2-private\" oops");
        let r = CredentialResolver::new(Some(s), Duration::from_secs(60));
        let (reg, conn) = registry(r#"{"ssm_parameter":"/avesa/acme"}"#);
        let e = r
            .read(&reg, ("acme", Service::Connectwise), &conn, Read::Cached)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("SSM parameter '/avesa/acme'"), "{e}");
        assert!(e.contains("not a JSON object of strings"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let (reg, conn) = registry(r#"{"secret_id":"avesa/missing"}"#);
        let e = r
            .read(&reg, ("acme", Service::Connectwise), &conn, Read::Cached)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "tenant 'acme' connectwise: cannot read Secrets Manager secret 'avesa/missing'"
            ),
            "{e}"
        );
        let none = CredentialResolver::new(None, Duration::ZERO);
        let e = none
            .read(&reg, ("acme", Service::Connectwise), &conn, Read::Cached)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("avesa/missing"), "{e}");
    }
}
