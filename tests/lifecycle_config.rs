//! The lifecycle's configuration refuses what it cannot honour, naming file, JSON path and
//! reason: canonical mappings, table dependencies, smart chunking bounds. The shipped files
//! seed a fresh workspace.

mod common;

use avesa_console::config::Config;
use common::*;

fn load_err(fx: &Fixture) -> String {
    Config::load(&fx.config_dir())
        .expect_err("the configuration should be refused")
        .to_string()
}

fn assert_names(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "{p:?} missing from {err:?}");
    }
}

#[test]
fn canonical_mappings_are_checked_against_the_endpoints() {
    let fx = Fixture::new();
    let shipped = fx.config();
    let names: Vec<&str> = shipped.canonical.iter().map(|c| c.table.as_str()).collect();
    assert_eq!(names, ["companies", "contacts", "tickets", "time_entries"]);
    let tickets = shipped.canonical_table("tickets").unwrap();
    let services: Vec<String> = tickets.sources.keys().map(|s| s.to_string()).collect();
    assert_eq!(services, ["connectwise", "servicenow", "salesforce"]);

    fx.edit("canonical/tickets.json", |v| {
        v["sources"]["connectwise"]["columns"]["status"] = "status__nam".into();
    });
    assert_names(
        &load_err(&fx),
        &[
            "canonical/tickets.json",
            "$.sources.connectwise.columns.status",
            "'status__nam' is not a declared column of connectwise table 'tickets'",
        ],
    );

    let fx = Fixture::new();
    fx.edit("canonical/companies.json", |v| {
        v["sources"]["salesforce"]["table"] = "acounts".into();
    });
    assert_names(
        &load_err(&fx),
        &[
            "canonical/companies.json",
            "$.sources.salesforce.table",
            "'acounts'",
            "accounts",
        ],
    );

    let fx = Fixture::new();
    fx.edit("canonical/contacts.json", |v| {
        // A text column cannot become a number row by row.
        v["columns"][0]["type"] = "int64".into();
    });
    assert_names(
        &load_err(&fx),
        &[
            "canonical/contacts.json",
            "$.sources.",
            "cannot become Int64",
        ],
    );

    let fx = Fixture::new();
    fx.edit("canonical/tickets.json", |v| {
        v["columns"][0]["name"] = "is_current".into();
    });
    assert_names(&load_err(&fx), &["$.columns[0].name", "reserved"]);
}

#[test]
fn dependencies_and_smart_chunking_are_validated() {
    let fx = Fixture::new();
    fx.edit("backfill_config.json", |v| {
        v["service_settings"]["connectwise"]["table_dependencies"]["companies"] =
            serde_json::json!(["time_entries"]);
    });
    assert_names(
        &load_err(&fx),
        &[
            "backfill_config.json",
            "$.service_settings.connectwise.table_dependencies",
            "circle",
        ],
    );
    let fx = Fixture::new();
    fx.edit("backfill_config.json", |v| {
        v["service_settings"]["connectwise"]["table_dependencies"]["tickets"] =
            serde_json::json!(["companys"]);
    });
    assert_names(
        &load_err(&fx),
        &[
            "$.service_settings.connectwise.table_dependencies.tickets[0]",
            "'companys'",
        ],
    );
    let fx = Fixture::new();
    fx.edit("backfill_config.json", |v| {
        v["smart_chunking"]["target_records_per_window"] = 0.into();
    });
    assert_names(
        &load_err(&fx),
        &["$.smart_chunking.target_records_per_window"],
    );
}

#[test]
fn a_fresh_workspace_is_seeded_with_the_canonical_mappings() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .arg("--workspace")
        .arg(dir.path())
        .env_remove("AVESA_CONFIG_DIR")
        .env_remove("AVESA_WORKSPACE")
        .output()
        .unwrap();
    assert_ok(&out);
    for table in ["tickets", "time_entries", "companies", "contacts"] {
        let f = dir.path().join(format!("config/canonical/{table}.json"));
        assert!(f.exists(), "{} was not seeded", f.display());
    }
}
