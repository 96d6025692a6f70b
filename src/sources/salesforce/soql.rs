//! SOQL for one endpoint: the SELECT list from its declared columns and the window,
//! keyset, bulk and count queries.

use chrono::{DateTime, SubsecRound, Utc};

use crate::config::EndpointDef;
use crate::domain::Window;
use crate::sources::SourceError;

/// Suffixes of custom names that contain `__` themselves (`Region__c`, `Parent__r`).
const CUSTOM_SUFFIXES: &[&str] = &[
    "c", "r", "s", "e", "x", "b", "mdt", "kav", "ka", "pc", "pr", "hd", "hst", "chn",
];

/// Whether `s` is a SOQL name: a letter, then letters, digits and single underscores.
pub(crate) fn is_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.ends_with('_')
}

/// A column whose name makes no Salesforce field path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column '{0}' is not a Salesforce field name")]
pub struct NotAField(pub String);

/// The SOQL path of a flattened column: `Owner__Name` → `Owner.Name`, while custom names
/// keep their suffix: `Region__c` → `Region__c`, `Parent__r__Name` → `Parent__r.Name`.
pub fn soql_field(column: &str) -> Result<String, NotAField> {
    let mut parts: Vec<String> = Vec::new();
    for seg in column.split("__") {
        match parts.last_mut() {
            Some(last) if CUSTOM_SUFFIXES.contains(&seg) => {
                last.push_str("__");
                last.push_str(seg);
            }
            _ => parts.push(seg.to_string()),
        }
    }
    if parts.iter().all(|p| is_name(p.replace("__", "_").as_str())) && !parts.is_empty() {
        Ok(parts.join("."))
    } else {
        Err(NotAField(column.to_string()))
    }
}

/// What the queries of one endpoint need, checked once.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub sobject: String,
    /// `Id, Name, Owner.Name, ...` in declared column order.
    pub select: String,
    /// The id field as named in SOQL and in REST records (`Id`).
    pub id: String,
    /// The update-time field (`SystemModstamp`), a direct field.
    pub stamp: String,
}

impl Spec {
    pub fn new(endpoint: &EndpointDef) -> Result<Spec, SourceError> {
        let bad =
            |m: String| SourceError::Config(format!("salesforce endpoint {}: {m}", endpoint.path));
        if !is_name(&endpoint.path) {
            return Err(bad(
                "the path must be an sObject name such as Account".into()
            ));
        }
        let fields = endpoint
            .columns
            .iter()
            .map(|c| soql_field(&c.name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let id = soql_field(&endpoint.id_field).map_err(|e| bad(e.to_string()))?;
        let stamp = endpoint.query_field().to_string();
        if id.contains('.') || !is_name(&stamp) {
            return Err(bad(format!(
                "id field '{id}' and update-time field '{stamp}' must be direct fields"
            )));
        }
        Ok(Spec {
            sobject: endpoint.path.clone(),
            select: fields.join(", "),
            id,
            stamp,
        })
    }

    /// `SystemModstamp >= A AND SystemModstamp < B`.
    pub fn window_filter(&self, window: &Window) -> String {
        format!(
            "{f} >= {} AND {f} < {}",
            bound_literal(window.start),
            bound_literal(window.end),
            f = self.stamp
        )
    }

    /// The window, ordered by (update time, id): what REST paging reads.
    pub fn window_query(&self, window: &Window) -> String {
        format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {}, {}",
            self.select,
            self.sobject,
            self.window_filter(window),
            self.stamp,
            self.id
        )
    }

    /// The rest of the window after `(stamp, id)`, in the same order: what a lost query
    /// locator is replaced with.
    pub fn keyset_query(&self, window: &Window, stamp: DateTime<Utc>, id: &str) -> String {
        let at = exact_literal(stamp);
        format!(
            "SELECT {sel} FROM {obj} WHERE {w} AND ({f} > {at} OR ({f} = {at} AND {idf} > {q})) ORDER BY {f}, {idf}",
            sel = self.select,
            obj = self.sobject,
            w = self.window_filter(window),
            f = self.stamp,
            idf = self.id,
            q = quote(id),
        )
    }

    /// The window for a Bulk API 2.0 job: no ORDER BY (it would disable PK chunking).
    pub fn bulk_query(&self, window: &Window) -> String {
        format!(
            "SELECT {} FROM {} WHERE {}",
            self.select,
            self.sobject,
            self.window_filter(window)
        )
    }

    /// The window's records per UTC calendar month (date functions read UTC unless
    /// `convertTimezone()` is asked for): rows of `expr0` year, `expr1` month, `expr2` count.
    pub fn monthly_count_query(&self, window: &Window) -> String {
        let (f, id) = (&self.stamp, &self.id);
        format!(
            "SELECT CALENDAR_YEAR({f}), CALENDAR_MONTH({f}), COUNT({id}) FROM {} WHERE {} \
             GROUP BY CALENDAR_YEAR({f}), CALENDAR_MONTH({f})",
            self.sobject,
            self.window_filter(window)
        )
    }

    pub fn count_query(&self, window: &Window) -> String {
        format!(
            "SELECT COUNT() FROM {} WHERE {}",
            self.sobject,
            self.window_filter(window)
        )
    }
}

/// A window bound as an unquoted UTC literal at whole seconds. Salesforce datetimes are
/// whole seconds, so a record is in `[s, e)` exactly when it is in `[ceil(s), ceil(e))`;
/// neighbouring windows share the bound and stay disjoint.
pub fn bound_literal(t: DateTime<Utc>) -> String {
    let whole = t.trunc_subsecs(0);
    let up = if whole < t {
        whole + chrono::Duration::seconds(1)
    } else {
        whole
    };
    up.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A record's own time as a literal, with milliseconds only when it has them.
pub fn exact_literal(t: DateTime<Utc>) -> String {
    if t.timestamp_subsec_nanos() == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}

/// A SOQL string literal: quotes and backslashes escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ColumnDef, ColumnType};

    fn endpoint(path: &str, cols: &[&str]) -> EndpointDef {
        EndpointDef {
            path: path.into(),
            table_name: "accounts".into(),
            id_field: "Id".into(),
            incremental_field: "SystemModstamp".into(),
            query_field: Some("SystemModstamp".into()),
            page_size: 2000,
            columns: cols
                .iter()
                .map(|c| ColumnDef {
                    name: c.to_string(),
                    kind: if *c == "SystemModstamp" {
                        ColumnType::Timestamp
                    } else {
                        ColumnType::String
                    },
                })
                .collect(),
        }
    }

    fn window(a: &str, b: &str) -> Window {
        Window::new(a.parse().unwrap(), b.parse().unwrap())
    }

    #[test]
    fn columns_map_to_soql_paths() {
        assert_eq!(soql_field("Owner__Name").unwrap(), "Owner.Name");
        assert_eq!(soql_field("Region__c").unwrap(), "Region__c");
        assert_eq!(soql_field("Parent__r__Name").unwrap(), "Parent__r.Name");
        assert_eq!(
            soql_field("Account__Owner__Name").unwrap(),
            "Account.Owner.Name"
        );
        for bad in ["", "__x", "a b", "x__", "Name;DROP", "9lives"] {
            assert!(soql_field(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn window_queries_are_exact_strings() {
        let spec = Spec::new(&endpoint(
            "Account",
            &["Id", "Name", "Owner__Name", "SystemModstamp"],
        ))
        .unwrap();
        let w = window("2023-01-01T00:00:00Z", "2023-02-01T00:00:00Z");
        assert_eq!(
            spec.window_query(&w),
            "SELECT Id, Name, Owner.Name, SystemModstamp FROM Account \
             WHERE SystemModstamp >= 2023-01-01T00:00:00Z AND SystemModstamp < 2023-02-01T00:00:00Z \
             ORDER BY SystemModstamp, Id"
        );
        assert_eq!(
            spec.bulk_query(&w),
            "SELECT Id, Name, Owner.Name, SystemModstamp FROM Account \
             WHERE SystemModstamp >= 2023-01-01T00:00:00Z AND SystemModstamp < 2023-02-01T00:00:00Z"
        );
        assert_eq!(
            spec.count_query(&w),
            "SELECT COUNT() FROM Account \
             WHERE SystemModstamp >= 2023-01-01T00:00:00Z AND SystemModstamp < 2023-02-01T00:00:00Z"
        );
        assert_eq!(
            spec.keyset_query(
                &w,
                "2023-01-05T10:20:30Z".parse().unwrap(),
                "001D000000IRFmaIAH"
            ),
            "SELECT Id, Name, Owner.Name, SystemModstamp FROM Account \
             WHERE SystemModstamp >= 2023-01-01T00:00:00Z AND SystemModstamp < 2023-02-01T00:00:00Z \
             AND (SystemModstamp > 2023-01-05T10:20:30Z OR (SystemModstamp = 2023-01-05T10:20:30Z \
             AND Id > '001D000000IRFmaIAH')) ORDER BY SystemModstamp, Id"
        );
    }

    #[test]
    fn fractional_bounds_round_up_and_literals_are_escaped() {
        let w = window("2023-01-01T00:00:00.250Z", "2023-01-02T00:00:00.999Z");
        let spec = Spec::new(&endpoint("Lead", &["Id", "SystemModstamp"])).unwrap();
        assert_eq!(
            spec.window_filter(&w),
            "SystemModstamp >= 2023-01-01T00:00:01Z AND SystemModstamp < 2023-01-02T00:00:01Z"
        );
        assert_eq!(
            exact_literal("2023-01-01T00:00:00.250Z".parse().unwrap()),
            "2023-01-01T00:00:00.250Z"
        );
        assert_eq!(quote(r"a'b\c"), r"'a\'b\\c'");
    }

    #[test]
    fn bad_endpoints_are_config_errors() {
        for (path, cols) in [
            ("Account Where", vec!["Id", "SystemModstamp"]),
            ("Account", vec!["Id", "Bad Name", "SystemModstamp"]),
        ] {
            let err = Spec::new(&endpoint(path, &cols)).unwrap_err();
            assert!(matches!(err, SourceError::Config(_)), "{err:?}");
        }
    }
}
