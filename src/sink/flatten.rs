//! Flattening: walks one JSON record with the lookup tree of the declared column names and
//! pushes its leaves straight into typed Arrow builders; undeclared leaves go to `_avesa_extra`.
//!
//! No string is built per key on the hot path: names are only assembled for undeclared
//! leaves, and then written directly into the `_avesa_extra` JSON text.

use std::fmt::Write as _;
use std::sync::Arc;

use super::lite::{Json, Obj};
use arrow_array::ArrayRef;
use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};

use super::coerce::{Mismatch, mismatch, to_bool, to_f64, to_i64, to_timestamp};
use super::json::{write_escaped, write_json};
use super::lookup::Lookup;
use crate::config::ColumnType;

/// A flattening failure: the declared column and what was wrong with its value.
#[derive(Debug)]
pub(crate) struct ColumnError {
    pub column: String,
    pub reason: String,
}

enum ColBuilder {
    Str(StringBuilder),
    Json(StringBuilder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
}

impl ColBuilder {
    fn new(kind: ColumnType, rows: usize, bytes: usize) -> Self {
        match kind {
            ColumnType::String => ColBuilder::Str(StringBuilder::with_capacity(rows, bytes)),
            ColumnType::Json => ColBuilder::Json(StringBuilder::with_capacity(rows, bytes)),
            ColumnType::Int64 => ColBuilder::I64(Int64Builder::with_capacity(rows)),
            ColumnType::Float64 => ColBuilder::F64(Float64Builder::with_capacity(rows)),
            ColumnType::Bool => ColBuilder::Bool(BooleanBuilder::with_capacity(rows)),
            ColumnType::Timestamp => ColBuilder::Ts(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            ),
        }
    }

    fn len(&self) -> usize {
        match self {
            ColBuilder::Str(b) | ColBuilder::Json(b) => b.len(),
            ColBuilder::I64(b) => b.len(),
            ColBuilder::F64(b) => b.len(),
            ColBuilder::Bool(b) => b.len(),
            ColBuilder::Ts(b) => b.len(),
        }
    }

    /// Appends nulls until the builder holds `rows` values.
    fn pad(&mut self, rows: usize) {
        let n = rows.saturating_sub(self.len());
        if n == 0 {
            return;
        }
        match self {
            ColBuilder::Str(b) | ColBuilder::Json(b) => b.append_nulls(n),
            ColBuilder::I64(b) => b.append_nulls(n),
            ColBuilder::F64(b) => b.append_nulls(n),
            ColBuilder::Bool(b) => b.append_nulls(n),
            ColBuilder::Ts(b) => b.append_nulls(n),
        }
    }

    /// Bytes of string data held, plus headroom: the capacity hint for the next page, so
    /// that its buffer is not regrown (and copied) when the next page is a little larger.
    fn value_bytes(&self) -> usize {
        match self {
            ColBuilder::Str(b) | ColBuilder::Json(b) => headroom(b.values_slice().len()),
            _ => 0,
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColBuilder::Str(b) | ColBuilder::Json(b) => Arc::new(b.finish()),
            ColBuilder::I64(b) => Arc::new(b.finish()),
            ColBuilder::F64(b) => Arc::new(b.finish()),
            ColBuilder::Bool(b) => Arc::new(b.finish()),
            ColBuilder::Ts(b) => Arc::new(b.finish()),
        }
    }
}

fn headroom(bytes: usize) -> usize {
    bytes + bytes / 4 + 1024
}

/// The typed builders of one page plus the `_avesa_extra` builder.
struct Columns {
    names: Vec<Box<str>>,
    kinds: Vec<ColumnType>,
    builders: Vec<ColBuilder>,
    /// String bytes per column on the previous page: capacity hints.
    hints: Vec<usize>,
    extra: StringBuilder,
    extra_hint: usize,
    /// Whether the current record has written `{` into `extra`.
    extra_open: bool,
    /// Rows completed in this page.
    rows: usize,
}

impl Columns {
    fn begin_page(&mut self, rows: usize) {
        for (i, kind) in self.kinds.iter().enumerate() {
            self.builders[i] = ColBuilder::new(*kind, rows, self.hints[i]);
        }
        self.extra = StringBuilder::with_capacity(rows, self.extra_hint);
        self.extra_open = false;
        self.rows = 0;
    }

    /// Starts one `"prefix__key__.."` member of the current record's extra object
    /// (no prefix at the record's top level).
    fn extra_key(&mut self, prefix: &str, keys: &[&str]) {
        let _ = self
            .extra
            .write_str(if self.extra_open { ",\"" } else { "{\"" });
        self.extra_open = true;
        write_escaped(&mut self.extra, prefix);
        for (i, key) in keys.iter().enumerate() {
            if i > 0 || !prefix.is_empty() {
                let _ = self.extra.write_str("__");
            }
            write_escaped(&mut self.extra, key);
        }
        let _ = self.extra.write_str("\":");
    }

    /// Records an undeclared value under `prefix__key`, flattening nested objects.
    fn extra_value<'a>(&mut self, prefix: &str, path: &mut Vec<&'a str>, v: &'a Json<'a>) {
        match v {
            Json::Obj(m) if !m.is_empty() => {
                for (k, inner) in m {
                    path.push(k.as_ref());
                    self.extra_value(prefix, path, inner);
                    path.pop();
                }
            }
            _ => {
                self.extra_key(prefix, path);
                write_json(&mut self.extra, v);
            }
        }
    }

    fn extra_leaf(&mut self, prefix: &str, key: &str, v: &Json<'_>) {
        if matches!(v, Json::Obj(m) if !m.is_empty()) {
            let mut path = vec![key];
            self.extra_value(prefix, &mut path, v);
        } else {
            self.extra_key(prefix, &[key]);
            write_json(&mut self.extra, v);
        }
    }

    /// Stores `v` in declared column `c` for the current row.
    fn set(&mut self, c: usize, v: &Json<'_>) -> Result<(), ColumnError> {
        let row = self.rows;
        if self.builders[c].len() > row {
            // The same column reached twice (`a__b` and `a.b` both present): keep the first,
            // record the second rather than drop it.
            let name = self.names[c].clone();
            self.extra_leaf("", &name, v);
            return Ok(());
        }
        if v.is_null() {
            return Ok(());
        }
        let fail = |reason: Mismatch| ColumnError {
            column: self.names[c].to_string(),
            reason: reason.to_string(),
        };
        let builder = &mut self.builders[c];
        match builder {
            ColBuilder::Str(b) => {
                match v {
                    Json::Str(s) => {
                        b.append_nulls(row - b.len());
                        b.append_value(s.as_ref());
                    }
                    Json::I64(_) | Json::U64(_) | Json::F64(_) | Json::Bool(_) => {
                        b.append_nulls(row - b.len());
                        write_json(b, v);
                        b.append_value("");
                    }
                    _ => return Err(fail(mismatch("string", v))),
                }
                return Ok(());
            }
            ColBuilder::Json(b) => {
                b.append_nulls(row - b.len());
                write_json(b, v);
                b.append_value("");
                return Ok(());
            }
            _ => {}
        }
        builder.pad(row);
        match builder {
            ColBuilder::I64(b) => {
                if let Some(x) = to_i64(v).map_err(fail)? {
                    b.append_value(x);
                }
            }
            ColBuilder::F64(b) => {
                if let Some(x) = to_f64(v).map_err(fail)? {
                    b.append_value(x);
                }
            }
            ColBuilder::Bool(b) => {
                if let Some(x) = to_bool(v).map_err(fail)? {
                    b.append_value(x);
                }
            }
            ColBuilder::Ts(b) => {
                if let Some(x) = to_timestamp(v).map_err(fail)? {
                    b.append_value(x);
                }
            }
            ColBuilder::Str(_) | ColBuilder::Json(_) => unreachable!("handled above"),
        }
        Ok(())
    }

    fn end_record(&mut self) {
        if self.extra_open {
            let _ = self.extra.write_str("}");
            self.extra.append_value("");
            self.extra_open = false;
        } else {
            self.extra.append_null();
        }
        self.rows += 1;
    }
}

/// Turns pages of JSON records into Arrow arrays for the declared columns and `_avesa_extra`.
pub(crate) struct Flattener {
    lookup: Lookup,
    cols: Columns,
}

impl Flattener {
    pub(crate) fn new(columns: &[(String, ColumnType)]) -> Self {
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        let kinds: Vec<ColumnType> = columns.iter().map(|(_, k)| *k).collect();
        Flattener {
            lookup: Lookup::new(&names),
            cols: Columns {
                names: names.iter().map(|n| (*n).into()).collect(),
                builders: kinds.iter().map(|k| ColBuilder::new(*k, 0, 0)).collect(),
                hints: vec![0; kinds.len()],
                kinds,
                extra: StringBuilder::new(),
                extra_hint: 0,
                extra_open: false,
                rows: 0,
            },
        }
    }

    /// Discards anything appended and prepares builders for about `rows` records.
    pub(crate) fn begin_page(&mut self, rows: usize) {
        self.cols.begin_page(rows);
    }

    /// Appends one record. On error the page is in an undefined state: call `begin_page`.
    pub(crate) fn append(&mut self, obj: &Obj<'_>) -> Result<(), ColumnError> {
        walk(&self.lookup, &mut self.cols, 0, obj)?;
        self.cols.end_record();
        Ok(())
    }

    /// The declared columns' arrays (in declared order) and the `_avesa_extra` array.
    pub(crate) fn finish_page(&mut self) -> (Vec<ArrayRef>, ArrayRef) {
        let rows = self.cols.rows;
        let mut arrays = Vec::with_capacity(self.cols.builders.len());
        for (i, b) in self.cols.builders.iter_mut().enumerate() {
            b.pad(rows);
            self.cols.hints[i] = b.value_bytes();
            arrays.push(b.finish());
        }
        self.cols.extra_hint = headroom(self.cols.extra.values_slice().len());
        let extra: ArrayRef = Arc::new(self.cols.extra.finish());
        self.cols.rows = 0;
        (arrays, extra)
    }
}

fn walk(
    lookup: &Lookup,
    cols: &mut Columns,
    node: usize,
    obj: &Obj<'_>,
) -> Result<(), ColumnError> {
    let here = lookup.node(node);
    for (key, v) in obj {
        let Some(entry) = here.get(key.as_ref()) else {
            cols.extra_leaf(&here.prefix, key, v);
            continue;
        };
        if let Some(c) = entry.column {
            let c = c as usize;
            let descend = entry.child.is_some() && v.is_object();
            if cols.kinds[c] == ColumnType::Json || !descend {
                cols.set(c, v)?;
                continue;
            }
        }
        match (entry.child, v) {
            (Some(child), Json::Obj(inner)) => walk(lookup, cols, child as usize, inner)?,
            (_, Json::Null) => {}
            // A scalar or array where only deeper columns are declared: keep it in extra.
            _ => cols.extra_leaf(&here.prefix, key, v),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::lite::lite;
    use arrow_array::{Array, Int64Array, StringArray};
    use serde_json::{Value, json};

    fn flatten(columns: &[(&str, ColumnType)], record: Value) -> (Vec<ArrayRef>, ArrayRef) {
        let record = lite(record);
        let cols: Vec<(String, ColumnType)> =
            columns.iter().map(|(n, k)| (n.to_string(), *k)).collect();
        let mut f = Flattener::new(&cols);
        f.begin_page(1);
        f.append(record.as_obj().unwrap()).unwrap();
        f.finish_page()
    }

    #[test]
    fn underscored_keys_reach_their_columns() {
        let (arrays, extra) = flatten(
            &[
                ("board___info__board_href", ColumnType::String),
                ("board__id", ColumnType::Int64),
                ("a___b", ColumnType::String),
            ],
            json!({"board": {"id": 7, "_info": {"board_href": "h", "x": 1}}, "a_": {"b": "ab"}}),
        );
        let s = |i: usize| {
            arrays[i]
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(0)
                .to_owned()
        };
        assert_eq!(s(0), "h");
        assert_eq!(
            arrays[1]
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0),
            7
        );
        assert_eq!(s(2), "ab");
        let extra = extra.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(extra.value(0), r#"{"board___info__x":1}"#);
    }

    #[test]
    fn undeclared_leaves_are_kept_with_escaped_names() {
        let (_, extra) = flatten(
            &[
                ("id", ColumnType::Int64),
                ("contact__id", ColumnType::Int64),
            ],
            json!({"id": 1, "q\"k": {"n": [1, 2], "e": {}, "": 3}, "contact": "gone", "z": null}),
        );
        let extra = extra.as_any().downcast_ref::<StringArray>().unwrap();
        let parsed: Value = serde_json::from_str(extra.value(0)).unwrap();
        assert_eq!(
            parsed,
            json!({"q\"k__n": [1, 2], "q\"k__e": {}, "q\"k__": 3, "contact": "gone", "z": null})
        );
    }
}
