//! `GET /sobjects/{Object}/describe` and field-level security: the integration user's hidden
//! fields (`SfAccount::hidden_fields`, `Object.Field`) are left out of the describe, and a
//! query selecting one (directly, or through `Owner` when `OwnerId` or the `User` field is
//! hidden) is refused with 400 `INVALID_FIELD` "No such column", as Salesforce refuses it.
//! Described: the five sObjects and `User` (the `Owner` relationship's target, with the fields
//! queries may read through it).

use super::data::{self, Kind, SObject};
use super::plan::{Column, Plan, invalid_field};
use super::rest::Ctx;
use super::{Reply, SfAccount, json, not_found};

impl SfAccount {
    /// Whether the integration user cannot see `field` of `object` (names case-insensitive).
    pub(super) fn hides(&self, object: &str, field: &str) -> bool {
        self.hidden_fields.iter().any(|h| {
            h.split_once('.').is_some_and(|(o, f)| {
                o.eq_ignore_ascii_case(object) && f.eq_ignore_ascii_case(field)
            })
        })
    }

    /// Whether a selected column reads a hidden field.
    fn hides_column(&self, sobject: SObject, column: Column) -> bool {
        match column {
            Column::Field(f) => self.hides(sobject.name(), f),
            Column::Owner(f) => self.hides(sobject.name(), "OwnerId") || self.hides("User", f),
        }
    }
}

/// A reference field's relationship and target (`OwnerId` → `Owner`, `User`).
fn relationship(field: &str) -> Option<(&'static str, &'static str)> {
    Some(match field {
        "OwnerId" => ("Owner", "User"),
        "CreatedById" => ("CreatedBy", "User"),
        "LastModifiedById" => ("LastModifiedBy", "User"),
        "AccountId" => ("Account", "Account"),
        "ContactId" => ("Contact", "Contact"),
        _ => return None,
    })
}

/// The describe `type` of a field of `kind`.
fn type_name(kind: Kind, reference: bool) -> &'static str {
    match kind {
        Kind::Id if reference => "reference",
        Kind::Id => "id",
        Kind::Str => "string",
        Kind::Num => "double",
        Kind::Int => "int",
        Kind::Bool => "boolean",
        Kind::Date => "date",
        Kind::DateTime => "datetime",
    }
}

fn field_json(name: &str, kind: Kind) -> serde_json::Value {
    let rel = relationship(name);
    serde_json::json!({
        "name": name,
        "label": name,
        "type": type_name(kind, rel.is_some()),
        "nillable": name != "Id",
        "relationshipName": rel.map(|(r, _)| r),
        "referenceTo": rel.map(|(_, t)| vec![t]).unwrap_or_default(),
    })
}

impl Ctx<'_> {
    /// The fields of `object` the integration user can see; 404 `NOT_FOUND` for an object the
    /// sandbox does not serve.
    pub(super) fn describe(&self, object: &str) -> Reply {
        let stats = &self.sf().stats;
        stats
            .describes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let account = &self.sf().orgs[self.org].account;
        let (name, fields): (&str, Vec<(&str, Kind)>) = if object.eq_ignore_ascii_case("User") {
            let kind = |f: &str| if f == "Id" { Kind::Id } else { Kind::Str };
            let fields = data::OWNER_FIELDS.iter().map(|f| (*f, kind(f))).collect();
            ("User", fields)
        } else if let Some(s) = SObject::from_name(object) {
            (s.name(), s.fields().collect())
        } else {
            return not_found();
        };
        let fields: Vec<serde_json::Value> = fields
            .into_iter()
            .filter(|(f, _)| !account.hides(name, f))
            .map(|(f, kind)| field_json(f, kind))
            .collect();
        let body = serde_json::json!({
            "name": name,
            "label": name,
            "queryable": true,
            "fields": fields,
        });
        json(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// `Err` 400 `INVALID_FIELD` when `plan` selects a field the integration user cannot see.
    pub(super) fn refuse_hidden(&self, plan: &Plan) -> Result<(), Reply> {
        let account = &self.sf().orgs[self.org].account;
        let hidden = plan
            .columns
            .iter()
            .flatten()
            .find(|c| account.hides_column(plan.sobject, **c));
        match hidden {
            Some(c) => Err(invalid_field(plan.sobject, &c.header())),
            None => Ok(()),
        }
    }
}
