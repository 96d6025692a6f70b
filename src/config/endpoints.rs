//! Endpoint definitions: which tables a service has, their ids, incremental fields and
//! the declared raw columns (flattened names, `__` between nesting levels).

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{ConfigError, decode, read_json};
use crate::domain::{Service, validate_identifier};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Int64,
    Float64,
    Bool,
    /// An ISO-8601 instant, stored as microseconds since the epoch, UTC.
    Timestamp,
    /// Any JSON value (arrays, free-form objects), stored as its JSON text.
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointDef {
    /// The API path below the service's base URL, e.g. `service/tickets`.
    pub path: String,
    /// The table name used in storage paths, e.g. `tickets`.
    pub table_name: String,
    /// Flattened name of the record id column.
    pub id_field: String,
    /// Flattened name of the update-time column the windows are cut on.
    pub incremental_field: String,
    /// How the incremental field is named in the API's query language, if it differs.
    #[serde(default)]
    pub query_field: Option<String>,
    pub page_size: u32,
    pub columns: Vec<ColumnDef>,
}

impl EndpointDef {
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn query_field(&self) -> &str {
        self.query_field
            .as_deref()
            .unwrap_or(&self.incremental_field)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceEndpoints {
    pub service: Service,
    pub endpoints: Vec<EndpointDef>,
}

impl ServiceEndpoints {
    pub fn load(file: &Path, expected: Service) -> Result<Self, ConfigError> {
        let defs: ServiceEndpoints = decode(file, read_json(file)?)?;
        if defs.service != expected {
            return Err(ConfigError::invalid(
                file,
                "$.service",
                format!("says '{}' but the file is for {expected}", defs.service),
            ));
        }
        defs.validate(file)?;
        Ok(defs)
    }

    fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::invalid(
                file,
                "$.endpoints",
                "must list at least one endpoint",
            ));
        }
        let mut tables = HashSet::new();
        for (i, ep) in self.endpoints.iter().enumerate() {
            let at = |field: &str| format!("$.endpoints[{i}].{field}");
            validate_identifier("table_name", &ep.table_name)
                .map_err(|r| ConfigError::invalid(file, at("table_name"), r.to_string()))?;
            if !tables.insert(ep.table_name.as_str()) {
                return Err(ConfigError::invalid(
                    file,
                    at("table_name"),
                    format!("'{}' is defined twice", ep.table_name),
                ));
            }
            if ep.path.is_empty() || ep.path.starts_with('/') || ep.path.contains("..") {
                return Err(ConfigError::invalid(
                    file,
                    at("path"),
                    format!("'{}' must be a relative API path", ep.path),
                ));
            }
            if ep.page_size == 0 || ep.page_size > 10_000 {
                return Err(ConfigError::invalid(
                    file,
                    at("page_size"),
                    format!("{} is outside 1..=10000", ep.page_size),
                ));
            }
            let mut names = HashSet::new();
            for (j, c) in ep.columns.iter().enumerate() {
                if c.name.is_empty() || c.name.starts_with("_avesa") {
                    return Err(ConfigError::invalid(
                        file,
                        format!("$.endpoints[{i}].columns[{j}].name"),
                        format!("'{}' is empty or uses the reserved prefix _avesa", c.name),
                    ));
                }
                if !names.insert(c.name.as_str()) {
                    return Err(ConfigError::invalid(
                        file,
                        format!("$.endpoints[{i}].columns[{j}].name"),
                        format!("column '{}' is declared twice", c.name),
                    ));
                }
            }
            match ep.column(&ep.id_field).map(|c| c.kind) {
                Some(ColumnType::Int64 | ColumnType::String) => {}
                Some(other) => {
                    return Err(ConfigError::invalid(
                        file,
                        at("id_field"),
                        format!(
                            "'{}' is declared {other:?}; an id must be int64 or string",
                            ep.id_field
                        ),
                    ));
                }
                None => {
                    return Err(ConfigError::invalid(
                        file,
                        at("id_field"),
                        format!("'{}' is not a declared column", ep.id_field),
                    ));
                }
            }
            if ep.column(&ep.incremental_field).map(|c| c.kind) != Some(ColumnType::Timestamp) {
                return Err(ConfigError::invalid(
                    file,
                    at("incremental_field"),
                    format!(
                        "'{}' must be a declared column of type timestamp",
                        ep.incremental_field
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Finds an endpoint by API path (`service/tickets`) or table name (`tickets`).
    pub fn find(&self, name: &str) -> Option<&EndpointDef> {
        self.endpoints
            .iter()
            .find(|e| e.path == name || e.table_name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.endpoints.iter().map(|e| e.path.as_str()).collect()
    }
}
