//! Canonical mappings (`canonical/{table}.json`): the columns of one canonical table and, per
//! service, which raw table feeds it and which raw column fills each canonical column.
//!
//! The record id and the version time are not mapped here: they are the raw table's
//! `id_field` and `incremental_field` from the endpoint definitions, so the two files cannot
//! disagree about what identifies a record or orders its versions.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::backfill::by_service;
use super::{ColumnType, ConfigError, ServiceEndpoints, decode, read_json};
use crate::domain::{Service, validate_identifier};

/// Column names the SCD Type 2 builder adds; a mapping may not use them.
pub const RESERVED_COLUMNS: [&str; 9] = [
    "tenant_id",
    "source_service",
    "record_id",
    "effective_start",
    "effective_end",
    "is_current",
    "record_hash",
    "source_table",
    "source_job_id",
];

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanonicalColumn {
    pub name: String,
    /// `string`, `int64`, `float64`, `bool` or `timestamp` (`json` is kept as text).
    #[serde(rename = "type")]
    pub kind: ColumnType,
}

/// How one service's raw table fills a canonical table.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceMapping {
    /// The raw table (`table_name` of the service's endpoint definitions).
    pub table: String,
    /// Canonical column → raw column (flattened name). Canonical columns a service does not
    /// map are null for its records.
    pub columns: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanonicalTable {
    /// The canonical table name: `{tenant}/canonical/{table}/`.
    pub table: String,
    #[serde(default)]
    pub description: Option<String>,
    pub columns: Vec<CanonicalColumn>,
    #[serde(deserialize_with = "by_service")]
    pub sources: BTreeMap<Service, SourceMapping>,
}

impl CanonicalTable {
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let table: CanonicalTable = decode(file, read_json(file)?)?;
        table.validate(file)?;
        Ok(table)
    }

    fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        validate_identifier("table", &self.table)
            .map_err(|r| ConfigError::invalid(file, "$.table", r.to_string()))?;
        if let Some(stem) = file.file_stem().and_then(|s| s.to_str())
            && stem != self.table
        {
            return Err(ConfigError::invalid(
                file,
                "$.table",
                format!("says '{}' but the file is named {stem}.json", self.table),
            ));
        }
        if self.columns.is_empty() {
            return Err(ConfigError::invalid(
                file,
                "$.columns",
                "must list at least one column",
            ));
        }
        let mut names = HashSet::new();
        for (i, c) in self.columns.iter().enumerate() {
            let at = format!("$.columns[{i}].name");
            validate_identifier("column", &c.name)
                .map_err(|r| ConfigError::invalid(file, &at, r.to_string()))?;
            if RESERVED_COLUMNS.contains(&c.name.as_str()) {
                return Err(ConfigError::invalid(
                    file,
                    at,
                    format!(
                        "'{}' is added by the SCD Type 2 builder (reserved: {})",
                        c.name,
                        RESERVED_COLUMNS.join(", ")
                    ),
                ));
            }
            if !names.insert(c.name.as_str()) {
                return Err(ConfigError::invalid(
                    file,
                    at,
                    format!("column '{}' is declared twice", c.name),
                ));
            }
        }
        if self.sources.is_empty() {
            return Err(ConfigError::invalid(
                file,
                "$.sources",
                "must map at least one service",
            ));
        }
        for (svc, src) in &self.sources {
            for canonical in src.columns.keys() {
                if !names.contains(canonical.as_str()) {
                    return Err(ConfigError::invalid(
                        file,
                        format!("$.sources.{svc}.columns.{canonical}"),
                        format!("'{canonical}' is not a column of $.columns"),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn column(&self, name: &str) -> Option<&CanonicalColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Checks each service's mapping against its endpoint definitions: the raw table exists,
    /// every mapped raw column is declared, and its type can become the canonical type.
    /// Services without endpoint definitions are left for when they are configured.
    pub(super) fn check_against(
        &self,
        file: &Path,
        endpoints: &[ServiceEndpoints],
    ) -> Result<(), ConfigError> {
        for (svc, src) in &self.sources {
            let Some(defs) = endpoints.iter().find(|e| e.service == *svc) else {
                continue;
            };
            let Some(ep) = defs.endpoints.iter().find(|e| e.table_name == src.table) else {
                let known: Vec<&str> = defs
                    .endpoints
                    .iter()
                    .map(|e| e.table_name.as_str())
                    .collect();
                return Err(ConfigError::invalid(
                    file,
                    format!("$.sources.{svc}.table"),
                    format!(
                        "'{}' is not a table of {svc} (known: {})",
                        src.table,
                        known.join(", ")
                    ),
                ));
            };
            for (canonical, raw) in &src.columns {
                let at = format!("$.sources.{svc}.columns.{canonical}");
                let Some(raw_col) = ep.column(raw) else {
                    return Err(ConfigError::invalid(
                        file,
                        at,
                        format!(
                            "'{raw}' is not a declared column of {svc} table '{}'",
                            src.table
                        ),
                    ));
                };
                let target = self.column(canonical).map(|c| c.kind);
                if let Some(target) = target
                    && !castable(raw_col.kind, target)
                {
                    return Err(ConfigError::invalid(
                        file,
                        at,
                        format!(
                            "'{raw}' is {:?} and cannot become {:?}",
                            raw_col.kind, target
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Which raw types a canonical column of type `to` accepts: the same type, anything as
/// text, and whole numbers as floats. Nothing that could fail or lose meaning row by row.
pub fn castable(from: ColumnType, to: ColumnType) -> bool {
    use ColumnType::*;
    matches!(
        (from, to),
        (
            String | Json | Int64 | Float64 | Bool | Timestamp,
            String | Json
        ) | (Int64, Int64)
            | (Int64 | Float64, Float64)
            | (Bool, Bool)
            | (Timestamp, Timestamp)
    )
}

/// Loads every `*.json` of `dir` (sorted by name); a missing folder is no mappings.
pub fn load_dir(
    dir: &Path,
    endpoints: &[ServiceEndpoints],
) -> Result<Vec<CanonicalTable>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ConfigError::Io {
                file: dir.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut tables: Vec<CanonicalTable> = Vec::new();
    for file in files {
        let table = CanonicalTable::load(&file)?;
        table.check_against(&file, endpoints)?;
        tables.push(table);
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_allow_only_safe_conversions() {
        use ColumnType::*;
        assert!(castable(Int64, String));
        assert!(castable(Timestamp, String));
        assert!(castable(Int64, Float64));
        assert!(!castable(String, Int64));
        assert!(!castable(Float64, Int64));
        assert!(!castable(Bool, Timestamp));
    }
}
