//! `trigger --auto-detect`: each of the four checks decides for some tenant's service, and
//! the reason says which and why.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use serde_json::Value;

fn detect(fx: &Fixture, dry_run: bool) -> Value {
    let mut args = vec!["trigger", "--auto-detect", "--output", "json"];
    if dry_run {
        args.push("--dry-run");
    }
    let out = fx.cli(None, &args);
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn decision<'a>(v: &'a Value, tenant: &str, service: &str) -> &'a Value {
    v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["tenant_id"] == tenant && d["service"] == service)
        .unwrap_or_else(|| panic!("no decision for {tenant} {service}: {v}"))
}

fn assert_decision(
    v: &Value,
    tenant: &str,
    service: &str,
    selected: bool,
    check: &str,
    reason: &str,
) {
    let d = decision(v, tenant, service);
    assert_eq!(d["selected"], selected, "{tenant} {service}: {d}");
    assert_eq!(d["check"], check, "{tenant} {service}: {d}");
    let why = d["reason"].as_str().unwrap();
    assert!(
        why.contains(reason),
        "{tenant} {service}: {why:?} lacks {reason:?}"
    );
}

fn set_enabled(fx: &Fixture, tenant: &str, service: &str, enabled: bool) {
    fx.edit("tenants.json", |v| {
        for t in v["tenants"].as_array_mut().unwrap() {
            if t["tenant_id"] == tenant {
                t["services"][service]["enabled"] = enabled.into();
            }
        }
    });
}

#[test]
fn each_check_decides_and_says_why() {
    let fx = Fixture::new();
    fx.tune(6000, 100);
    // globex's ServiceNow credentials come from a variable nobody set.
    fx.edit("tenants.json", |v| {
        for t in v["tenants"].as_array_mut().unwrap() {
            if t["tenant_id"] == "globex" {
                t["services"]["servicenow"]["credentials"] = serde_json::json!({
                    "env": {"instance": "AVESA_TEST_UNSET_INSTANCE", "username": "AVESA_TEST_UNSET_USER",
                            "password": "AVESA_TEST_UNSET_PASSWORD"}
                });
            }
        }
    });
    // acme's ConnectWise has a completed backfill.
    let out = fx.cli(
        None,
        &trigger_args(
            "acme",
            Some("tickets"),
            "2025-11-01",
            Some("2025-12-01"),
            &["--run"],
        ),
    );
    assert_ok(&out);
    // globex's ConnectWise has raw data from ten days ago but no backfill in the store
    // (cleaned up, or landed by an older pipeline).
    let acme_raw = fx.data_dir().join("acme/raw/connectwise/tickets");
    let part = std::fs::read_dir(&acme_raw)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let globex_raw = fx.data_dir().join("globex/raw/connectwise/tickets");
    std::fs::create_dir_all(&globex_raw).unwrap();
    let copy = globex_raw.join(part.file_name().unwrap());
    std::fs::copy(&part, &copy).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(10 * 86_400))
        .unwrap();

    let v = detect(&fx, true);
    assert_decision(
        &v,
        "acme",
        "connectwise",
        false,
        "history",
        "backfill_acme_connectwise_20251101 completed",
    );
    assert_decision(
        &v,
        "globex",
        "connectwise",
        false,
        "freshness",
        "older than 7 days",
    );
    assert_decision(
        &v,
        "initech",
        "connectwise",
        true,
        "freshness",
        "no completed backfill and no raw data: newly connected",
    );
    assert_decision(
        &v,
        "globex",
        "servicenow",
        false,
        "configured",
        "AVESA_TEST_UNSET_",
    );
    assert_eq!(
        v["created"],
        serde_json::json!([]),
        "a dry run creates nothing"
    );

    // Raw data only two days old: still newly connected.
    std::fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(2 * 86_400))
        .unwrap();
    let v = detect(&fx, true);
    assert_decision(
        &v,
        "globex",
        "connectwise",
        true,
        "freshness",
        "under 7 days",
    );

    // acme's ConnectWise is switched off, then on again: new, whatever its history says.
    set_enabled(&fx, "acme", "connectwise", false);
    let v = detect(&fx, true);
    assert_decision(&v, "acme", "connectwise", false, "configured", "disabled");
    set_enabled(&fx, "acme", "connectwise", true);
    let v = detect(&fx, true);
    assert_decision(&v, "acme", "connectwise", true, "reenabled", "re-enabled");
    assert!(
        decision(&v, "acme", "connectwise")["reason"]
            .as_str()
            .unwrap()
            .contains("last seen disabled")
    );

    // Without --dry-run the selected services get jobs, and the text lists every decision.
    let v = detect(&fx, false);
    let created: Vec<&str> = v["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert!(
        created
            .iter()
            .any(|j| j.starts_with("backfill_acme_connectwise_")),
        "{created:?}"
    );
    assert!(
        created
            .iter()
            .any(|j| j.starts_with("backfill_initech_connectwise_")),
        "{created:?}"
    );
    assert!(
        !created.iter().any(|j| j.contains("globex_servicenow")),
        "{created:?}"
    );
    let text = fx.cli(None, &["trigger", "--auto-detect", "--dry-run"]);
    assert_ok(&text);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("SELECTED") && text.contains("already pending"),
        "{text}"
    );

    // --auto-detect decides for everyone: naming a tenant is a usage error.
    let out = fx.cli(None, &["trigger", "--auto-detect", "--tenant-id", "acme"]);
    assert_eq!(out.status.code(), Some(2), "{}", text_of(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tenant-id"));
    // And without it, --tenant-id is required.
    let out = fx.cli(None, &["trigger", "--service", "connectwise"]);
    assert_eq!(out.status.code(), Some(2), "{}", text_of(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tenant-id is required"));
}

fn text_of(out: &std::process::Output) -> String {
    common::text(out)
}
