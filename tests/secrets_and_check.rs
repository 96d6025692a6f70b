//! `check` reports what is wrong with a tenant's connections, and no secret value ever
//! reaches output, logs, the job store or data files, even when requests fail.

mod common;

use std::path::{Path, PathBuf};

use arrow_array::{Array, StringArray};
use base64::Engine as _;
use common::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Fields of the credential files whose values are secret.
const SECRET_FIELDS: [&str; 5] = [
    "private_key",
    "password",
    "client_secret",
    "refresh_token",
    "public_key",
];

/// Every secret value of the fixture's credential files, plus the Basic auth header values
/// built from them (a leaked header is a leaked password).
fn secrets(fx: &Fixture) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(fx.config_dir().join("credentials")).unwrap() {
        let path = entry.unwrap().path();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let field = |k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_string);
        for k in SECRET_FIELDS {
            if let Some(s) = field(k) {
                out.push(s);
            }
        }
        let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
        if let (Some(c), Some(p), Some(k)) = (
            field("company_id"),
            field("public_key"),
            field("private_key"),
        ) {
            out.push(b64(format!("{c}+{p}:{k}")));
        }
        if let (Some(u), Some(p)) = (field("username"), field("password")) {
            out.push(b64(format!("{u}:{p}")));
        }
    }
    assert!(
        out.len() >= 6,
        "too few secrets found: the test proves nothing"
    );
    out
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Text values of every string column of a Parquet file (the bytes on disk are compressed).
fn parquet_strings(path: &Path) -> Vec<String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        for col in batch.columns() {
            if let Some(s) = col.as_any().downcast_ref::<StringArray>() {
                out.extend(
                    (0..s.len())
                        .filter(|i| !s.is_null(*i))
                        .map(|i| s.value(i).to_string()),
                );
            }
        }
    }
    out
}

fn assert_no_secret(what: &str, haystack: &str, secrets: &[String]) {
    for s in secrets {
        assert!(
            !haystack.contains(s.as_str()),
            "a secret value appears in {what}"
        );
    }
}

fn connected_services(fx: &Fixture, tenant: &str) -> Vec<String> {
    let cfg = fx.config();
    let t = cfg.tenant(tenant).unwrap();
    t.services.keys().map(|s| s.as_str().to_string()).collect()
}

#[test]
fn no_secret_reaches_output_logs_store_or_data_even_on_failures() {
    let fx = Fixture::new();
    fx.tune(6000, 50);
    let services = connected_services(&fx, "acme");
    let faults = fx.dir.path().join("faults.json");
    // One ConnectWise window answers 401 for good; its error text must still be clean.
    std::fs::write(
        &faults,
        r#"{"faults":[{"path":"company/companies","status":401,"message":"UserNotAuthenticated"}]}"#,
    )
    .unwrap();
    let sandbox = fx.start_sandbox(&["--faults", faults.to_str().unwrap()]);
    let mut outputs = String::new();
    for service in &services {
        let out = fx.cli(
            Some(&sandbox),
            &[
                "trigger",
                "--tenant-id",
                "acme",
                "--service",
                service,
                "--start-date",
                "2025-11-01",
                "--end-date",
                "2025-12-01",
                "--run",
            ],
        );
        outputs.push_str(&text(&out));
        let out = fx.cli(
            Some(&sandbox),
            &["status", "--tenant-id", "acme", "--output", "json"],
        );
        outputs.push_str(&text(&out));
    }
    let out = fx.cli(Some(&sandbox), &["check", "--tenant-id", "acme"]);
    outputs.push_str(&text(&out));
    assert!(
        outputs.contains("401"),
        "the injected 401 was not reported: the failure path was not exercised\n{outputs}"
    );

    let secrets = secrets(&fx);
    assert_no_secret("command output", &outputs, &secrets);
    let files = files_under(&fx.workspace());
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "parquet")),
        "no data landed"
    );
    assert!(
        files.iter().any(|f| f.ends_with("engine.jsonl")),
        "no log file written"
    );
    for f in files {
        let shown = f.display().to_string();
        if f.extension().is_some_and(|e| e == "parquet") {
            assert_no_secret(&shown, &parquet_strings(&f).join("\n"), &secrets);
        } else {
            let bytes = std::fs::read(&f).unwrap();
            assert_no_secret(&shown, &String::from_utf8_lossy(&bytes), &secrets);
        }
    }
}

#[test]
fn check_reports_working_services_and_exits_zero() {
    let fx = Fixture::new();
    let sandbox = fx.start_sandbox(&[]);
    let out = fx.cli(
        Some(&sandbox),
        &["check", "--tenant-id", "acme", "--output", "json"],
    );
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = report.as_array().unwrap();
    assert_eq!(services.len(), connected_services(&fx, "acme").len());
    for s in services {
        assert_eq!(s["ok"], true, "{s}");
        let tables = s["tables"].as_array().unwrap();
        assert!(!tables.is_empty());
        assert!(tables.iter().all(|t| t["records"].is_u64()), "{s}");
        assert!(tables.iter().all(|t| t["read_records"].is_u64()), "{s}");
    }
}

#[test]
fn check_names_the_service_and_http_status_of_bad_credentials() {
    let fx = Fixture::new();
    let sandbox = fx.start_sandbox(&[]);
    // The sandbox knows the real key; the tenant's file now holds a wrong one.
    let wrong = "definitely-not-the-private-key";
    fx.edit("credentials/acme-connectwise.json", |v| {
        v["private_key"] = wrong.into();
    });
    let out = fx.cli(
        Some(&sandbox),
        &["check", "--tenant-id", "acme", "--service", "connectwise"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("connectwise  FAILED"), "{stdout}");
    assert!(stdout.contains("HTTP 401"), "{stdout}");
    assert!(!text(&out).contains(wrong), "the key was printed");
}

#[test]
fn check_names_a_missing_environment_variable() {
    let fx = Fixture::new();
    fx.edit("tenants.json", |v| {
        let acme = v["tenants"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|t| t["tenant_id"] == "acme")
            .unwrap();
        acme["services"]["connectwise"]["credentials"] = serde_json::json!({"env": {
            "company_id": "AVESA_TEST_CW_COMPANY",
            "public_key": "AVESA_TEST_CW_PUBLIC",
            "private_key": "AVESA_TEST_CW_PRIVATE_UNSET",
            "client_id": "AVESA_TEST_CW_CLIENT"
        }});
    });
    let out = fx
        .command(
            None,
            &["check", "--tenant-id", "acme", "--service", "connectwise"],
        )
        .env("AVESA_TEST_CW_COMPANY", "acme_demo")
        .env("AVESA_TEST_CW_PUBLIC", "pub")
        .env("AVESA_TEST_CW_CLIENT", "cid")
        .env_remove("AVESA_TEST_CW_PRIVATE_UNSET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("AVESA_TEST_CW_PRIVATE_UNSET"),
        "{}",
        text(&out)
    );
}

#[test]
fn check_refuses_an_unknown_tenant_or_unconnected_service() {
    let fx = Fixture::new();
    let out = fx.cli(None, &["check", "--tenant-id", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("unknown tenant 'nobody'"),
        "{}",
        text(&out)
    );
    let out = fx.cli(
        None,
        &["check", "--tenant-id", "acme", "--service", "workday"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("workday"), "{}", text(&out));
}

/// A cut body and a 502 on one table's count are tried again, as the backfill's requests are:
/// the table is reported ok, with the tries it took.
#[test]
fn check_tries_a_passing_error_again() {
    let fx = Fixture::new();
    let faults = fx.dir.path().join("faults.json");
    std::fs::write(
        &faults,
        r#"{"faults":[
            {"path":"service/tickets/count","kind":"truncate","times":1},
            {"path":"service/tickets/count","status":502,"times":1}
        ]}"#,
    )
    .unwrap();
    let sandbox = fx.start_sandbox(&["--faults", faults.to_str().unwrap()]);
    let out = fx.cli(
        Some(&sandbox),
        &[
            "check",
            "--tenant-id",
            "acme",
            "--service",
            "connectwise",
            "--output",
            "json",
        ],
    );
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tickets = report[0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "tickets")
        .unwrap()
        .clone();
    assert_eq!(tickets["ok"], true, "{report}");
    assert_eq!(tickets["tries"]["count"], 3, "{report}");
}

/// An integration user who cannot see two fields (`User.Name`, read by `Owner.Name`, and
/// `Lead.AnnualRevenue`): `check` names the columns that read them and warns (exit 0, the
/// backfill leaves them out); under `strict_fields` the same tables fail and it exits 1.
#[test]
fn check_names_fields_the_user_cannot_see_and_fails_under_strict_fields() {
    let fx = Fixture::new();
    fx.edit("credentials/acme-salesforce.json", |v| {
        v["sandbox_hidden_fields"] = "User.Name, Lead.AnnualRevenue".into();
    });
    let sandbox = fx.start_sandbox(&[]);
    let args = [
        "check",
        "--tenant-id",
        "acme",
        "--service",
        "salesforce",
        "--output",
        "json",
    ];
    let out = fx.cli(Some(&sandbox), &args);
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let table = |name: &str| {
        report[0]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name)
            .unwrap()
            .clone()
    };
    let leads = table("leads");
    assert_eq!(leads["ok"], true, "{report}");
    assert_eq!(
        leads["skipped_fields"],
        serde_json::json!(["AnnualRevenue", "Owner__Name"]),
        "{report}"
    );
    // The backfill's query was accepted (the oldest window of the lookback may hold nothing).
    assert!(leads["read_records"].is_u64(), "{report}");
    assert!(leads["records"].as_u64().unwrap() > 0, "{report}");
    let accounts = table("accounts");
    assert_eq!(
        accounts["skipped_fields"],
        serde_json::json!(["Owner__Name"])
    );
    assert_eq!(table("contacts")["skipped_fields"], serde_json::json!([]));
    let out = fx.cli(Some(&sandbox), &args[..5]);
    assert_ok(&out);
    let shown = text(&out);
    assert!(
        shown.contains("warning: the integration user cannot read AnnualRevenue, Owner__Name"),
        "{shown}"
    );

    fx.edit("backfill_config.json", |v| {
        v["service_settings"]["salesforce"]["strict_fields"] = true.into();
    });
    let out = fx.cli(Some(&sandbox), &args[..5]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("salesforce   FAILED"), "{shown}");
    assert!(
        shown.contains("cannot read AnnualRevenue, Owner__Name (strict_fields)"),
        "{shown}"
    );
    assert!(
        shown.contains("table accounts: the integration user cannot read Owner__Name"),
        "{shown}"
    );
    assert!(shown.contains("    contacts         ok"), "{shown}");
}

/// `check` sends through the tenant's shared rate budget, as a backfill does: against a
/// strict server (burst 1, one request per 100 ms), its requests are spaced and none is
/// refused; sent at once, back to back, they were refused and retried.
#[test]
fn check_is_paced_by_the_tenants_rate_budget() {
    let fx = Fixture::new();
    fx.tune(600, 40);
    let sandbox = fx.start_sandbox(&["--rate-limit", "600", "--strict-rate-limit"]);
    let out = fx.cli(
        Some(&sandbox),
        &["check", "--tenant-id", "acme", "--service", "connectwise"],
    );
    assert_ok(&out);
    let stats = sandbox.stats();
    assert!(
        stats["requests"].as_u64().unwrap() >= 8,
        "too few requests to tell: {stats}"
    );
    assert_eq!(stats["rate_limited"], 0, "the server refused: {stats}");
}
