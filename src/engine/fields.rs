//! Which declared columns a job's queries name. The endpoint file says what is wanted; the
//! API's description of its schema (`Source::unreadable_columns`: Salesforce `describe`) says
//! what the integration user may read. A declared column the user cannot read is left out of
//! the queries with a warning and listed in the job (`Job::skipped_fields`), so its raw and
//! canonical columns stay null; with `strict_fields` it is an error instead. The id and
//! update-time columns can never be left out: without them no window can be read.
//!
//! `verdict` is the rule (pure); `Engine::check_fields` applies it to a plan as a job is
//! created, `check` prints it, and the executor reads each chunk with `without`.

use crate::config::EndpointDef;
use crate::engine::Engine;
use crate::engine::planner::Plan;
use crate::sources::{Pace, Source};

/// The columns of `endpoint` to leave out, given those the user cannot read (`unreadable`), or
/// why the table cannot be read as declared.
pub fn verdict(
    endpoint: &EndpointDef,
    unreadable: &[String],
    strict: bool,
) -> Result<Vec<String>, String> {
    let table = &endpoint.table_name;
    let keys = [&endpoint.id_field, &endpoint.incremental_field];
    if let Some(key) = unreadable.iter().find(|c| keys.contains(c)) {
        return Err(format!(
            "table {table}: the integration user cannot read '{key}', which every query of the \
             table needs: grant the user read access to it (field-level security)"
        ));
    }
    if strict && !unreadable.is_empty() {
        return Err(format!(
            "table {table}: the integration user cannot read {} (strict_fields): grant read \
             access to them (field-level security), remove them from the endpoint file, or set \
             strict_fields to false to leave them out (their canonical columns stay null)",
            unreadable.join(", ")
        ));
    }
    Ok(unreadable.to_vec())
}

/// The columns of `skipped` (`table.column`, as a job lists them) that belong to `table`.
pub fn skipped_of<'a>(skipped: &'a [String], table: &str) -> Vec<&'a str> {
    skipped
        .iter()
        .filter_map(|s| s.split_once('.'))
        .filter(|(t, _)| *t == table)
        .map(|(_, c)| c)
        .collect()
}

/// `endpoint` without the columns in `skipped`: what the source is asked to read.
pub fn without(endpoint: &EndpointDef, skipped: &[&str]) -> EndpointDef {
    let mut out = endpoint.clone();
    out.columns.retain(|c| !skipped.contains(&c.name.as_str()));
    out
}

impl Engine {
    /// Asks the source which declared columns of each table of `plan` the user cannot read and
    /// records the ones to leave out (`verdict`); a table that cannot be read as declared is an
    /// error naming its columns. When the source cannot answer now, a warning says so and
    /// every declared column is asked for (a refused column then fails the chunks with the
    /// API's own error). An engine without sources keeps the plan's list.
    pub async fn check_fields(&self, plan: &mut Plan) -> Result<(), crate::engine::EngineError> {
        let (tenant_id, service) = (plan.tenant_id.clone(), plan.service);
        let Ok(source) = self.source(&tenant_id, service) else {
            return Ok(());
        };
        let strict = self.config().backfill.strict_fields(service);
        for t in &mut plan.tables {
            let Some(endpoint) = self
                .config()
                .endpoints(service)
                .and_then(|e| e.find(&t.table))
            else {
                continue;
            };
            let pace = BudgetPace(self.budget(&tenant_id, service));
            let unreadable = match unreadable(source.as_ref(), endpoint, &pace).await {
                Ok(Some(u)) => u,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(%tenant_id, %service, table = %t.table, error = %e,
                        "readable fields could not be asked for; every declared field is queried");
                    continue;
                }
            };
            t.skipped = verdict(endpoint, &unreadable, strict)
                .map_err(|e| crate::engine::EngineError::Other(format!("{service}: {e}")))?;
            if !t.skipped.is_empty() {
                tracing::warn!(%tenant_id, %service, table = %t.table, skipped = %t.skipped.join(", "),
                    "the integration user cannot read these fields: left out of the queries, their canonical columns stay null");
            }
        }
        plan.fields_checked = true;
        Ok(())
    }
}

/// Each describe request waits for its turn in the tenant's rate budget, as the backfill's do.
struct BudgetPace(std::sync::Arc<crate::engine::budget::RateBudget>);

#[async_trait::async_trait]
impl Pace for BudgetPace {
    async fn turn(&self) {
        self.0.acquire().await;
    }
}

/// `Source::unreadable_columns`, once more after a renewed session.
async fn unreadable(
    source: &dyn Source,
    endpoint: &EndpointDef,
    pace: &dyn Pace,
) -> Result<Option<Vec<String>>, crate::sources::SourceError> {
    match source.unreadable_columns(endpoint, pace).await {
        Err(crate::sources::SourceError::SessionRenewed { .. }) => {
            source.unreadable_columns(endpoint, pace).await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> EndpointDef {
        serde_json::from_value(serde_json::json!({
            "path": "Account", "table_name": "accounts", "id_field": "Id",
            "incremental_field": "SystemModstamp", "page_size": 200,
            "columns": [
                {"name": "Id", "type": "string"}, {"name": "SystemModstamp", "type": "timestamp"},
                {"name": "Industry", "type": "string"}, {"name": "Owner__Name", "type": "string"}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn unreadable_columns_are_left_out_unless_strict_and_keys_never() {
        let ep = endpoint();
        let hidden = vec!["Industry".to_string(), "Owner__Name".to_string()];
        assert_eq!(verdict(&ep, &hidden, false).unwrap(), hidden);
        let strict = verdict(&ep, &hidden, true).unwrap_err();
        assert!(strict.contains("Industry, Owner__Name"), "{strict}");
        assert!(strict.contains("strict_fields"), "{strict}");
        let key = verdict(&ep, &["SystemModstamp".to_string()], false).unwrap_err();
        assert!(key.contains("'SystemModstamp'"), "{key}");
        assert_eq!(verdict(&ep, &[], true).unwrap(), Vec::<String>::new());
        let skipped = vec!["accounts.Industry".to_string(), "leads.Rating".to_string()];
        let mine = skipped_of(&skipped, "accounts");
        assert_eq!(mine, vec!["Industry"]);
        let names: Vec<String> = without(&ep, &mine)
            .columns
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["Id", "SystemModstamp", "Owner__Name"]);
    }
}
