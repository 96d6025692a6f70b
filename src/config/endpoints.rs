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

/// A field of one endpoint definition (relative to it) and what is wrong with it.
type Problem = (String, String);

impl EndpointDef {
    /// The API path and the page size.
    fn check_request(&self) -> Result<(), Problem> {
        if self.path.is_empty() || self.path.starts_with('/') || self.path.contains("..") {
            let reason = format!("'{}' must be a relative API path", self.path);
            return Err(("path".into(), reason));
        }
        if self.page_size == 0 || self.page_size > 10_000 {
            let reason = format!("{} is outside 1..=10000", self.page_size);
            return Err(("page_size".into(), reason));
        }
        Ok(())
    }

    /// Column names: not empty, not reserved, each declared once.
    fn check_columns(&self) -> Result<(), Problem> {
        let mut names = HashSet::new();
        for (j, c) in self.columns.iter().enumerate() {
            let field = || format!("columns[{j}].name");
            if c.name.is_empty() || c.name.starts_with("_avesa") {
                let reason = format!("'{}' is empty or uses the reserved prefix _avesa", c.name);
                return Err((field(), reason));
            }
            if !names.insert(c.name.as_str()) {
                return Err((field(), format!("column '{}' is declared twice", c.name)));
            }
        }
        Ok(())
    }

    /// The id is a declared int64 or string column; the incremental field a timestamp one.
    fn check_key_fields(&self) -> Result<(), Problem> {
        let id = &self.id_field;
        match self.column(id).map(|c| c.kind) {
            Some(ColumnType::Int64 | ColumnType::String) => {}
            Some(other) => {
                let reason = format!("'{id}' is declared {other:?}; an id must be int64 or string");
                return Err(("id_field".into(), reason));
            }
            None => {
                return Err((
                    "id_field".into(),
                    format!("'{id}' is not a declared column"),
                ));
            }
        }
        if self.column(&self.incremental_field).map(|c| c.kind) != Some(ColumnType::Timestamp) {
            let reason = format!(
                "'{}' must be a declared column of type timestamp",
                self.incremental_field
            );
            return Err(("incremental_field".into(), reason));
        }
        Ok(())
    }

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
            let invalid = |(field, reason): Problem| {
                ConfigError::invalid(file, format!("$.endpoints[{i}].{field}"), reason)
            };
            validate_identifier("table_name", &ep.table_name)
                .map_err(|r| invalid(("table_name".into(), r.to_string())))?;
            if !tables.insert(ep.table_name.as_str()) {
                let reason = format!("'{}' is defined twice", ep.table_name);
                return Err(invalid(("table_name".into(), reason)));
            }
            ep.check_request()
                .and_then(|()| ep.check_columns())
                .and_then(|()| ep.check_key_fields())
                .map_err(invalid)?;
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
