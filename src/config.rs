//! Configuration: backfill settings, endpoint definitions and the tenants registry.
//!
//! Every file is read as JSON, decoded with the JSON path of any decoding failure, then
//! checked; each error names the file, the JSON path and the reason.

mod backfill;
mod canonical;
mod credentials;
mod endpoints;
mod error;
mod tenants;

use std::path::{Path, PathBuf};

pub use backfill::{
    BackfillConfig, CHUNK_SIZE_DAYS, DefaultSettings, LOOKBACK_DAYS, MAX_IN_FLIGHT, Monitoring,
    RATE_PER_MINUTE, Scheduling, ServiceSettings, SmartChunking, TenantOverride,
};
pub use backfill::{
    CREDENTIALS_CACHE_SECONDS, DEFAULT_CREDENTIALS_CACHE_SECONDS, DEFAULT_MAX_RESPONSE_MB,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
};
pub use canonical::{CanonicalColumn, CanonicalTable, RESERVED_COLUMNS, SourceMapping, castable};
pub use credentials::{CredentialResolver, Read, RemoteError, SecretStore};
pub use endpoints::{ColumnDef, ColumnType, EndpointDef, ServiceEndpoints};
pub use error::ConfigError;
pub use tenants::{
    CredentialError, CredentialSource, Credentials, Grant, MissingCredential, RemoteRef,
    ServiceConnection, Tenant, TenantsRegistry,
};

use crate::domain::Service;

/// The configuration files shipped with the product, compiled in so a fresh workspace
/// can be seeded from them.
pub const BUILT_IN: &[(&str, &str)] = &[
    (
        "backfill_config.json",
        include_str!("../mappings/backfill_config.json"),
    ),
    ("tenants.json", include_str!("../mappings/tenants.json")),
    (
        "endpoints/connectwise.json",
        include_str!("../mappings/endpoints/connectwise.json"),
    ),
    (
        "credentials/acme-connectwise.json",
        include_str!("../mappings/credentials/acme-connectwise.json"),
    ),
    (
        "credentials/globex-connectwise.json",
        include_str!("../mappings/credentials/globex-connectwise.json"),
    ),
    (
        "credentials/initech-connectwise.json",
        include_str!("../mappings/credentials/initech-connectwise.json"),
    ),
    (
        "endpoints/servicenow.json",
        include_str!("../mappings/endpoints/servicenow.json"),
    ),
    (
        "endpoints/salesforce.json",
        include_str!("../mappings/endpoints/salesforce.json"),
    ),
    (
        "credentials/acme-servicenow.json",
        include_str!("../mappings/credentials/acme-servicenow.json"),
    ),
    (
        "credentials/globex-servicenow.json",
        include_str!("../mappings/credentials/globex-servicenow.json"),
    ),
    (
        "credentials/acme-salesforce.json",
        include_str!("../mappings/credentials/acme-salesforce.json"),
    ),
    (
        "credentials/initech-salesforce.json",
        include_str!("../mappings/credentials/initech-salesforce.json"),
    ),
    (
        "canonical/tickets.json",
        include_str!("../mappings/canonical/tickets.json"),
    ),
    (
        "canonical/time_entries.json",
        include_str!("../mappings/canonical/time_entries.json"),
    ),
    (
        "canonical/companies.json",
        include_str!("../mappings/canonical/companies.json"),
    ),
    (
        "canonical/contacts.json",
        include_str!("../mappings/canonical/contacts.json"),
    ),
];

/// A tenant or a tenant's service the registry does not have, naming the registry file.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("unknown tenant '{tenant_id}' (known: {known}; registry {})", registry.display())]
    UnknownTenant {
        tenant_id: String,
        known: String,
        registry: PathBuf,
    },
    #[error("tenant '{tenant_id}' has no {service} connection in {}", registry.display())]
    NoConnection {
        tenant_id: String,
        service: Service,
        registry: PathBuf,
    },
}

/// All configuration, loaded from one directory laid out like `mappings/`.
#[derive(Clone, Debug)]
pub struct Config {
    pub dir: PathBuf,
    pub backfill: BackfillConfig,
    pub endpoints: Vec<ServiceEndpoints>,
    pub tenants: TenantsRegistry,
    /// Canonical tables (`canonical/*.json`), sorted by file name.
    pub canonical: Vec<CanonicalTable>,
    /// What loaded but looks wrong (an override of a tenant the registry does not have), each
    /// naming its file and JSON path; the CLI prints them once.
    pub warnings: Vec<String>,
}

impl Config {
    /// Loads and cross-checks every file under `dir`.
    pub fn load(dir: &Path) -> Result<Config, ConfigError> {
        let backfill = BackfillConfig::load(&dir.join("backfill_config.json"))?;
        let mut endpoints = Vec::new();
        for service in Service::ALL {
            let file = dir
                .join("endpoints")
                .join(format!("{}.json", service.as_str()));
            if file.exists() {
                endpoints.push(ServiceEndpoints::load(&file, service)?);
            }
        }
        let tenants_file = dir.join("tenants.json");
        let tenants = TenantsRegistry::load(&tenants_file)?;
        for (i, tenant) in tenants.tenants.iter().enumerate() {
            for service in tenant.services.keys() {
                if !endpoints.iter().any(|e| e.service == *service) {
                    return Err(ConfigError::invalid(
                        &tenants_file,
                        format!("$.tenants[{i}].services.{service}"),
                        format!(
                            "no endpoint definitions for {service}: expected {}",
                            dir.join("endpoints")
                                .join(format!("{service}.json"))
                                .display()
                        ),
                    ));
                }
            }
        }
        let warnings =
            backfill.check_against(&dir.join("backfill_config.json"), &endpoints, &tenants)?;
        let canonical = canonical::load_dir(&dir.join("canonical"), &endpoints)?;
        Ok(Config {
            dir: dir.to_path_buf(),
            backfill,
            endpoints,
            tenants,
            canonical,
            warnings,
        })
    }

    /// Writes the built-in files into `dir` where they are missing (never overwrites). Each
    /// file appears whole: it is written beside its place and linked there only if nothing is
    /// there yet, so processes started together on a fresh machine (a worker, the sandbox, a
    /// command) never read a file another one is still writing.
    pub fn seed(dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        for (name, text) in BUILT_IN {
            let path = dir.join(name);
            if path.exists() {
                continue;
            }
            let parent = path.parent().unwrap_or(dir);
            std::fs::create_dir_all(parent)?;
            let mut file = tempfile::NamedTempFile::new_in(parent)?;
            file.write_all(text.as_bytes())?;
            match file.persist_noclobber(&path) {
                Ok(_) => {}
                Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.error),
            }
        }
        Ok(())
    }

    pub fn canonical_table(&self, table: &str) -> Option<&CanonicalTable> {
        self.canonical.iter().find(|c| c.table == table)
    }

    /// Canonical tables that `service`'s raw `table` feeds.
    pub fn canonical_fed_by(&self, service: Service, table: &str) -> Vec<&CanonicalTable> {
        self.canonical
            .iter()
            .filter(|c| c.sources.get(&service).is_some_and(|s| s.table == table))
            .collect()
    }

    pub fn endpoints(&self, service: Service) -> Option<&ServiceEndpoints> {
        self.endpoints.iter().find(|e| e.service == service)
    }

    pub fn tenant(&self, tenant_id: &str) -> Result<&Tenant, LookupError> {
        self.tenants
            .get(tenant_id)
            .ok_or_else(|| LookupError::UnknownTenant {
                tenant_id: tenant_id.to_string(),
                known: self
                    .tenants
                    .tenants
                    .iter()
                    .map(|t| t.tenant_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                registry: self.dir.join("tenants.json"),
            })
    }

    /// The tenant's connection to `service`, or why there is none.
    pub fn connection(
        &self,
        tenant_id: &str,
        service: Service,
    ) -> Result<(&Tenant, &ServiceConnection), LookupError> {
        let tenant = self.tenant(tenant_id)?;
        let conn = tenant
            .services
            .get(&service)
            .ok_or_else(|| LookupError::NoConnection {
                tenant_id: tenant_id.to_string(),
                service,
                registry: self.dir.join("tenants.json"),
            })?;
        Ok((tenant, conn))
    }
}

/// The most a configuration file (settings, endpoints, mappings, a theme, a fault plan) may
/// hold.
pub const MAX_CONFIG_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// The most a credentials file may hold.
pub const MAX_CREDENTIALS_FILE_BYTES: u64 = 1024 * 1024;

/// The text of a small file the operator points at. Anything but a regular file is refused
/// before it is opened (a FIFO would block the read, a device such as `/dev/zero` never
/// ends), and so is a file of more than `max_bytes`; the error says which.
pub fn read_small_file(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let not_regular = || Error::new(ErrorKind::InvalidInput, "not a regular file");
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::File::open(path)?;
    // Checked again on the open file, in case the path changed in between.
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    let mut text = String::new();
    file.take(max_bytes + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max_bytes {
        return Err(Error::new(
            ErrorKind::FileTooLarge,
            format!("larger than the {max_bytes} bytes allowed"),
        ));
    }
    Ok(text)
}

pub(crate) fn read_json(file: &Path) -> Result<serde_json::Value, ConfigError> {
    let text = read_small_file(file, MAX_CONFIG_FILE_BYTES).map_err(|e| ConfigError::Io {
        file: file.to_path_buf(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| ConfigError::Syntax {
        file: file.to_path_buf(),
        line: e.line(),
        column: e.column(),
        reason: e.to_string(),
    })
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    file: &Path,
    value: serde_json::Value,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ConfigError::invalid(file, json_path(&path), e.into_inner().to_string())
    })
}

fn json_path(serde_path: &str) -> String {
    if serde_path == "." || serde_path.is_empty() {
        "$".to_string()
    } else if serde_path.starts_with('[') {
        format!("${serde_path}")
    } else {
        format!("$.{serde_path}")
    }
}

#[cfg(test)]
mod seed_tests {
    use super::*;

    /// Processes started together on a fresh machine each seed the configuration folder and
    /// load it at once: none reads a file another is still writing.
    #[test]
    fn seeding_at_once_never_shows_a_half_written_file() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let failures: Vec<String> = std::thread::scope(|s| {
                let seeders: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| {
                            Config::seed(dir.path()).map_err(|e| e.to_string())?;
                            Config::load(dir.path())
                                .map(|_| ())
                                .map_err(|e| e.to_string())
                        })
                    })
                    .collect();
                seeders
                    .into_iter()
                    .filter_map(|t| t.join().unwrap().err())
                    .collect()
            });
            assert!(failures.is_empty(), "round {round}: {failures:?}");
            let left: Vec<_> = std::fs::read_dir(dir.path().join("endpoints"))
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .filter(|n| !n.to_string_lossy().ends_with(".json"))
                .collect();
            assert!(left.is_empty(), "temporary files left: {left:?}");
        }
    }
}
