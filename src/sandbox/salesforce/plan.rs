//! Queries checked against an sObject: the selected columns (or an aggregate query's groups
//! and counts), the WHERE clause, the order, and the window bounds fault plans and record
//! edits go by. Aggregate queries are refused as Salesforce refuses them: an item neither
//! grouped nor aggregated, `COUNT()` with `GROUP BY`, an aggregate in `GROUP BY`, an order on
//! an ungrouped field; the sandbox groups only by `CALENDAR_YEAR` / `CALENDAR_MONTH` of an
//! audit time.

use super::data::{self, Kind, SObject, Times};
use super::soql::{self, Expr, Item, Lit, Op, Select};
use super::{Reply, bad_request};

/// A selected column: a direct field, or a field of the `Owner` relationship.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Column {
    Field(&'static str),
    Owner(&'static str),
}

impl Column {
    pub(super) fn header(self) -> String {
        match self {
            Column::Field(f) => f.to_string(),
            Column::Owner(f) => format!("Owner.{f}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TimeField {
    Created,
    Modified,
    Modstamp,
}

/// A WHERE clause checked against the sObject.
#[derive(Clone, Debug)]
pub(super) enum Pred {
    And(Vec<Pred>),
    Or(Vec<Pred>),
    Time(TimeField, Op, i64),
    Id(Op, String),
}

#[derive(Clone, Copy, Debug)]
pub(super) enum OrderKey {
    Id,
    Time(TimeField),
}

/// A part of an audit time an aggregate query groups by (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DatePart {
    Year(TimeField),
    Month(TimeField),
}

impl DatePart {
    /// The year or month (1-12) of `t` in UTC.
    pub(super) fn of(self, t: &Times) -> i64 {
        use chrono::Datelike;
        let at =
            |f: TimeField| chrono::DateTime::from_timestamp_millis(f.of(t)).unwrap_or_default();
        match self {
            DatePart::Year(f) => i64::from(at(f).year()),
            DatePart::Month(f) => i64::from(at(f).month()),
        }
    }
}

/// A column of an aggregate result: a grouped part (index into `group`) or the count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AggColumn {
    Group(usize),
    Count,
}

/// An aggregate query: rows grouped by `group`, one result row per group with `select`.
#[derive(Clone, Debug)]
pub(super) struct Aggregate {
    pub(super) group: Vec<DatePart>,
    pub(super) select: Vec<AggColumn>,
    /// `LIMIT` applies to result rows.
    pub(super) limit: Option<u64>,
}

/// A query the sandbox can run.
#[derive(Clone, Debug)]
pub(super) struct Plan {
    pub(super) sobject: SObject,
    /// `None`: `SELECT COUNT()` or an aggregate query.
    pub(super) columns: Option<Vec<Column>>,
    pub(super) aggregate: Option<Aggregate>,
    pub(super) filter: Option<Pred>,
    pub(super) order: Vec<(OrderKey, bool)>,
    pub(super) limit: Option<u64>,
    /// Start of the window (`SystemModstamp >= X`, unix seconds), for fault plans.
    pub(super) window_start: Option<i64>,
    /// `[lo, hi)` of `SystemModstamp` in epoch millis from the top-level comparisons.
    pub(super) bounds: (i64, i64),
}

impl TimeField {
    pub(super) fn of(self, t: &Times) -> i64 {
        match self {
            TimeField::Created => t.created,
            TimeField::Modified => t.modified,
            TimeField::Modstamp => t.modstamp,
        }
    }
}

impl Pred {
    pub(super) fn holds(&self, id: &str, t: &Times) -> bool {
        match self {
            Pred::And(p) => p.iter().all(|p| p.holds(id, t)),
            Pred::Or(p) => p.iter().any(|p| p.holds(id, t)),
            Pred::Time(f, op, ms) => op.holds(f.of(t).cmp(ms)),
            Pred::Id(op, v) => op.holds(id.cmp(v.as_str())),
        }
    }
}

pub(super) fn invalid_field(sobject: SObject, name: &str) -> Reply {
    bad_request(
        "INVALID_FIELD",
        &format!(
            "No such column '{name}' on entity '{}'. If you are attempting to use a custom field, \
             be sure to append the '__c' after the custom field name. Please reference your WSDL \
             or the describe call for the appropriate names.",
            sobject.name()
        ),
    )
}

pub(super) fn time_field(sobject: SObject, name: &str) -> Option<TimeField> {
    match sobject.field(name)?.0 {
        "CreatedDate" => Some(TimeField::Created),
        "LastModifiedDate" => Some(TimeField::Modified),
        "SystemModstamp" => Some(TimeField::Modstamp),
        _ => None,
    }
}

pub(super) fn compile_filter(sobject: SObject, e: &Expr) -> Result<Pred, Reply> {
    Ok(match e {
        Expr::And(p) => Pred::And(
            p.iter()
                .map(|e| compile_filter(sobject, e))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Or(p) => Pred::Or(
            p.iter()
                .map(|e| compile_filter(sobject, e))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Cmp { field, op, value } => {
            if field.relationship.is_some() {
                return Err(bad_request(
                    "MALFORMED_QUERY",
                    &format!("the sandbox cannot filter on the relationship field {field}"),
                ));
            }
            let Some((name, _)) = sobject.field(&field.name) else {
                return Err(invalid_field(sobject, &field.name));
            };
            let filter_type = |ty: &str, quoted: &str| {
                bad_request(
                    "INVALID_QUERY_FILTER_OPERATOR",
                    &format!(
                        "value of filter criterion for field '{name}' must be of type {ty} and should {quoted}be enclosed in quotes"
                    ),
                )
            };
            if let Some(tf) = time_field(sobject, name) {
                match value {
                    Lit::DateTime(ms) => Pred::Time(tf, *op, *ms),
                    _ => return Err(filter_type("dateTime", "not ")),
                }
            } else if name == "Id" {
                match value {
                    Lit::Str(s) => Pred::Id(*op, s.clone()),
                    _ => return Err(filter_type("id", "")),
                }
            } else {
                return Err(bad_request(
                    "MALFORMED_QUERY",
                    &format!(
                        "the sandbox filters only on Id, CreatedDate, LastModifiedDate and SystemModstamp, not {name}"
                    ),
                ));
            }
        }
    })
}

/// Checks a parsed query against the sObject and turns it into a runnable plan.
pub(super) fn compile(q: soql::Query) -> Result<Plan, Reply> {
    let Some(sobject) = SObject::from_name(&q.from) else {
        return Err(bad_request(
            "INVALID_TYPE",
            &format!(
                "sObject type '{}' is not supported. If you are attempting to use a custom object, \
                 be sure to append the '__c' after the entity name.",
                q.from
            ),
        ));
    };
    let (columns, aggregate) = match &q.select {
        Select::Count if !q.group_by.is_empty() => {
            return Err(bad_request(
                "MALFORMED_QUERY",
                "COUNT() cannot be used with GROUP BY: use COUNT(fieldName)",
            ));
        }
        Select::Count => (None, None),
        Select::Fields(fields) => (Some(compile_columns(sobject, fields)?), None),
        Select::Aggregate(items) => (None, Some(compile_aggregate(sobject, items, &q)?)),
    };
    let filter = q
        .filter
        .as_ref()
        .map(|e| compile_filter(sobject, e))
        .transpose()?;
    let order = compile_order(sobject, &q.order)?;
    let (bounds, window_start) = modstamp_bounds(&q);
    Ok(Plan {
        sobject,
        columns,
        filter,
        order,
        limit: if aggregate.is_some() { None } else { q.limit },
        aggregate,
        window_start,
        bounds,
    })
}

/// An aggregate query's groups and result columns, refused as Salesforce refuses them.
fn compile_aggregate(
    sobject: SObject,
    items: &[Item],
    q: &soql::Query,
) -> Result<Aggregate, Reply> {
    let malformed = |m: String| bad_request("MALFORMED_QUERY", &m);
    let part = |item: &Item| -> Result<Option<DatePart>, Reply> {
        let (f, year) = match item {
            Item::Year(f) => (f, true),
            Item::Month(f) => (f, false),
            Item::Field(_) | Item::CountOf(_) => return Ok(None),
        };
        let name = match (&f.relationship, sobject.field(&f.name)) {
            (None, Some((name, _))) => name,
            _ => return Err(invalid_field(sobject, &f.to_string())),
        };
        let Some(tf) = time_field(sobject, name) else {
            return Err(malformed(format!(
                "{item}: the sandbox's date functions take CreatedDate, LastModifiedDate or SystemModstamp"
            )));
        };
        Ok(Some(if year {
            DatePart::Year(tf)
        } else {
            DatePart::Month(tf)
        }))
    };
    let mut group = Vec::new();
    for item in &q.group_by {
        match (item, part(item)?) {
            (Item::CountOf(_), _) => {
                return Err(malformed(format!(
                    "Grouped field should not be aggregated: {item}"
                )));
            }
            (_, Some(p)) => group.push(p),
            (_, None) => {
                return Err(malformed(format!(
                    "the sandbox groups only by CALENDAR_YEAR or CALENDAR_MONTH, not {item}"
                )));
            }
        }
    }
    let mut select = Vec::new();
    for item in items {
        let column = match (item, part(item)?) {
            (Item::CountOf(f), _) => {
                if f.relationship.is_some() || sobject.field(&f.name).is_none() {
                    return Err(invalid_field(sobject, &f.to_string()));
                }
                AggColumn::Count
            }
            (_, Some(p)) if group.contains(&p) => {
                AggColumn::Group(group.iter().position(|g| *g == p).expect("contained"))
            }
            (Item::Field(f), _) if f.relationship.is_none() && sobject.field(&f.name).is_none() => {
                return Err(invalid_field(sobject, &f.name));
            }
            _ => {
                return Err(malformed(format!(
                    "Field must be grouped or aggregated: {item}"
                )));
            }
        };
        select.push(column);
    }
    if let Some((f, _)) = q.order.first() {
        return Err(malformed(format!(
            "Ordered field must be grouped or aggregated: {f}"
        )));
    }
    Ok(Aggregate {
        group,
        select,
        limit: q.limit,
    })
}

/// The selected fields as output columns: the sObject's own fields and `Owner.*`.
fn compile_columns(sobject: SObject, fields: &[soql::FieldPath]) -> Result<Vec<Column>, Reply> {
    let mut cols: Vec<Column> = Vec::with_capacity(fields.len());
    for f in fields {
        let col = match &f.relationship {
            None => Column::Field(
                sobject
                    .field(&f.name)
                    .ok_or_else(|| invalid_field(sobject, &f.name))?
                    .0,
            ),
            Some(rel) if rel.eq_ignore_ascii_case("Owner") => Column::Owner(
                data::OWNER_FIELDS
                    .iter()
                    .find(|n| n.eq_ignore_ascii_case(&f.name))
                    .copied()
                    .ok_or_else(|| invalid_field(sobject, &f.to_string()))?,
            ),
            Some(rel) => {
                return Err(bad_request(
                    "INVALID_FIELD",
                    &format!(
                        "Didn't understand relationship '{rel}' in field path. If you are attempting \
                         to use a custom relationship, be sure to append the '__r' after the custom \
                         relationship name."
                    ),
                ));
            }
        };
        if cols.contains(&col) {
            return Err(bad_request(
                "MALFORMED_QUERY",
                &format!("duplicate field selected: {}", col.header()),
            ));
        }
        cols.push(col);
    }
    Ok(cols)
}

/// `ORDER BY` keys: Id or one of the audit times.
fn compile_order(
    sobject: SObject,
    order: &[(soql::FieldPath, bool)],
) -> Result<Vec<(OrderKey, bool)>, Reply> {
    let mut keys = Vec::with_capacity(order.len());
    for (f, desc) in order {
        let key = match (f.relationship.as_ref(), sobject.field(&f.name)) {
            (None, Some(("Id", _))) => OrderKey::Id,
            (None, Some((name, Kind::DateTime))) if time_field(sobject, name).is_some() => {
                OrderKey::Time(time_field(sobject, name).expect("checked"))
            }
            (None, None) => return Err(invalid_field(sobject, &f.name)),
            _ => {
                return Err(bad_request(
                    "MALFORMED_QUERY",
                    &format!(
                        "the sandbox orders only by Id, CreatedDate, LastModifiedDate or SystemModstamp, not {f}"
                    ),
                ));
            }
        };
        keys.push((key, *desc));
    }
    Ok(keys)
}

/// The `SystemModstamp` range the top-level conditions allow, in ms `[lo, hi)`, and the
/// window start (s) a `>=` names, which fault plans match on.
fn modstamp_bounds(q: &soql::Query) -> ((i64, i64), Option<i64>) {
    let mut bounds = (i64::MIN, i64::MAX);
    let mut window_start = None;
    for (op, lit) in q.top_level("SystemModstamp") {
        let Lit::DateTime(ms) = lit else { continue };
        match op {
            Op::Ge => {
                bounds.0 = bounds.0.max(*ms);
                window_start.get_or_insert(ms.div_euclid(1000));
            }
            Op::Gt => bounds.0 = bounds.0.max(ms.saturating_add(1)),
            Op::Lt => bounds.1 = bounds.1.min(*ms),
            Op::Le => bounds.1 = bounds.1.min(ms.saturating_add(1)),
            Op::Eq => {
                bounds.0 = bounds.0.max(*ms);
                bounds.1 = bounds.1.min(ms.saturating_add(1));
            }
            Op::Ne => {}
        }
    }
    (bounds, window_start)
}

pub(super) fn parse_plan(text: &str) -> Result<Plan, Reply> {
    let q =
        soql::parse(text).map_err(|e| bad_request("MALFORMED_QUERY", &format!("\n{text}\n{e}")))?;
    compile(q)
}
