//! Tenant credentials held in AWS, on the emulators: one tenant's ConnectWise credentials
//! are a Secrets Manager secret, another's an SSM SecureString parameter. A cloud backfill of
//! each (moto's Step Functions, SQS, S3, two `worker` processes) lands every record once, and
//! no credential value appears in a log line, a command's output, a stored file or the data.
//! A local run whose secret is rotated mid-run (in moto, then at the API) carries on: the
//! refused request reads the secret again and is asked again with the new key.
//!
//! Needs `AVESA_TEST_MOTO_URL` and `AVESA_TEST_DYNAMODB_URL` (`scripts/test` starts both).

mod common;
#[allow(dead_code)]
#[path = "cloud_e2e/harness.rs"]
mod harness;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use arrow_array::{Array, StringArray};
use avesa_console::sandbox::TableCounts;
use common::*;
use harness::*;
use serde_json::{Value, json};

/// Credentials the sandbox accepts, unique to this run, so finding one anywhere means it
/// leaked (and no other test's values match).
fn unique_credentials(company: &str, n: u32) -> Value {
    let tag = format!("{}x{n}", std::process::id());
    json!({
        "company_id": company,
        "public_key": format!("pub-{tag}-visible-nowhere"),
        "private_key": format!("priv-{tag}-never-printed"),
        "client_id": format!("client-{tag}-kept-quiet"),
    })
}

/// The values a leak check looks for: every field but the company (which names the data).
fn secret_values(creds: &Value) -> Vec<String> {
    ["public_key", "private_key", "client_id"]
        .iter()
        .map(|f| creds[f].as_str().unwrap().to_string())
        .collect()
}

/// The source side: a configuration whose ConnectWise credentials for `acme` and `globex`
/// are files holding `acme` and `globex`, and the sandbox serving it.
fn source_side(acme: &Value, globex: &Value) -> (Fixture, SandboxProc) {
    let fx = Fixture::new();
    for (file, creds) in [("acme", acme), ("globex", globex)] {
        let path = fx
            .config_dir()
            .join(format!("credentials/{file}-connectwise.json"));
        std::fs::write(path, creds.to_string()).unwrap();
    }
    let sandbox = fx.start_sandbox(&[]);
    (fx, sandbox)
}

/// The backfill side: its registry reads acme's ConnectWise credentials from `secret` and
/// globex's from `parameter`; their files are gone.
fn backfill_side(secret: &str, parameter: &str) -> Fixture {
    let fx = Fixture::new();
    fx.tune(1200, 50);
    fx.edit("tenants.json", |v| {
        for t in v["tenants"].as_array_mut().unwrap() {
            let creds = match t["tenant_id"].as_str().unwrap() {
                "acme" => json!({ "secret_id": secret }),
                "globex" => json!({ "ssm_parameter": parameter }),
                _ => continue,
            };
            t["services"]["connectwise"]["credentials"] = creds;
        }
    });
    for file in ["acme", "globex"] {
        let path = fx
            .config_dir()
            .join(format!("credentials/{file}-connectwise.json"));
        std::fs::remove_file(path).unwrap();
    }
    fx
}

fn put_secret(dep: &Deployment, id: &str, value: &Value) {
    let sm = aws_sdk_secretsmanager::Client::new(&dep.aws);
    block(async {
        match sm
            .create_secret()
            .name(id)
            .secret_string(value.to_string())
            .send()
            .await
        {
            Ok(_) => {}
            Err(_) => {
                sm.put_secret_value()
                    .secret_id(id)
                    .secret_string(value.to_string())
                    .send()
                    .await
                    .unwrap();
            }
        }
    });
}

fn put_parameter(dep: &Deployment, name: &str, value: &Value) {
    let ssm = aws_sdk_ssm::Client::new(&dep.aws);
    block(
        ssm.put_parameter()
            .name(name)
            .value(value.to_string())
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send(),
    )
    .unwrap();
}

/// Every file under `dir`, as text (lossy).
fn files_text(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            out.push_str(&files_text(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    out
}

/// Every string value of the landed records.
fn landed_strings(landed: &Landed) -> String {
    let mut out = String::new();
    for batch in &landed.batches {
        for column in batch.columns() {
            if let Some(strings) = column.as_any().downcast_ref::<StringArray>() {
                for i in 0..strings.len() {
                    if !strings.is_null(i) {
                        out.push_str(strings.value(i));
                        out.push('\n');
                    }
                }
            }
        }
    }
    out
}

fn assert_no_leak(what: &str, text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(
            !text.contains(s.as_str()),
            "a credential value is in {what}"
        );
    }
}

fn trigger_cloud(dep: &Deployment, fx: &Fixture, sandbox: &SandboxProc, tenant: &str) -> Value {
    let args = trigger_args(
        tenant,
        Some("tickets"),
        "2025-01-01",
        Some("2026-01-01"),
        &["--chunk-size-days", "30", "--cloud", "--output", "json"],
    );
    let out = dep.cli(fx, Some(sandbox), &args);
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn cloud_job(dep: &Deployment, fx: &Fixture, job: &str) -> Value {
    let out = dep.cli(
        fx,
        None,
        &["status", "--cloud", "--job-id", job, "--output", "json"],
    );
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Both sides on the emulators: acme's credentials in a Secrets Manager secret, globex's
/// in an SSM parameter, unique to `n`.
struct Setup {
    acme: Value,
    globex: Value,
    source: Fixture,
    sandbox: SandboxProc,
    dep: Deployment,
    secret: String,
    fx: Fixture,
}

fn setup(test: &str, tag: &str, n: u32) -> Option<Setup> {
    let emulators = emulators(test)?;
    let acme = unique_credentials("acme_demo", n);
    let globex = unique_credentials("globex_demo", n + 1);
    let (source, sandbox) = source_side(&acme, &globex);
    let dep = Deployment::create(emulators, tag);
    let secret = format!("avesa/{}/acme-connectwise", dep.table_prefix);
    let parameter = format!("/avesa/{}/globex-connectwise", dep.table_prefix);
    put_secret(&dep, &secret, &acme);
    put_parameter(&dep, &parameter, &globex);
    let fx = backfill_side(&secret, &parameter);
    Some(Setup {
        acme,
        globex,
        source,
        sandbox,
        dep,
        secret,
        fx,
    })
}

#[test]
fn tenants_with_credentials_in_secrets_manager_and_ssm_backfill_exactly_on_the_cloud() {
    let Some(Setup {
        acme,
        globex,
        source,
        sandbox,
        dep,
        fx,
        ..
    }) = setup("credentials_in_aws_backfill_exactly", "sec", 1)
    else {
        return;
    };
    let _w1 = dep.worker(&fx, &sandbox, "w1");
    let _w2 = dep.worker(&fx, &sandbox, "w2");

    let mut printed = String::new();
    let mut jobs = Vec::new();
    for tenant in ["acme", "globex"] {
        let started = trigger_cloud(&dep, &fx, &sandbox, tenant);
        assert_eq!(started["created"], true, "{started}");
        printed.push_str(&started.to_string());
        jobs.push(started["job_id"].as_str().unwrap().to_string());
    }
    let cfg = source.sandbox_config(TableCounts::demo());
    let window = parse_window("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let secrets: Vec<String> = [secret_values(&acme), secret_values(&globex)].concat();
    for (tenant, job) in ["acme", "globex"].iter().zip(&jobs) {
        let status = poll(Duration::from_secs(300), "the execution to end", || {
            let s = cloud_job(&dep, &fx, job);
            (s["execution"]["status"] != "RUNNING").then_some(s)
        });
        assert_eq!(status["execution"]["status"], "SUCCEEDED", "{status}");
        assert_eq!(status["job"]["status"], "completed", "{status}");
        let (landed, _) = dep.landed(tenant, "tickets");
        assert_exact(
            &landed,
            &cfg,
            &company_of(&source, tenant),
            "tickets",
            &window,
        );
        printed.push_str(&status.to_string());
        let strings = landed_strings(&landed);
        assert!(strings.len() > 1000, "the records' text was read");
        assert_no_leak("the landed records", &strings, &secrets);
        let out = dep.cli(&fx, None, &["logs", job, "--cloud"]);
        assert_ok(&out);
        printed.push_str(&text(&out));
    }
    assert_no_leak("the commands' output", &printed, &secrets);
    let worker_logs = format!("{}{}", _w1.log_text(), _w2.log_text());
    assert!(
        worker_logs.contains("chunk"),
        "the workers logged their chunks"
    );
    assert_no_leak("the workers' logs", &worker_logs, &secrets);
    assert_no_leak("the workspace", &files_text(&fx.workspace()), &secrets);
    assert_no_leak("the configuration", &files_text(&fx.config_dir()), &secrets);
}

#[test]
fn a_secret_rotated_mid_run_is_read_again_and_the_run_carries_on() {
    let Some(Setup {
        acme,
        source,
        sandbox,
        dep,
        secret,
        fx,
        ..
    }) = setup("a_secret_rotated_mid_run", "rot", 3)
    else {
        return;
    };
    // Slow enough to rotate between chunks; the cache outlives the run, so only the refusal
    // makes the new key be read.
    fx.tune(600, 50)
        .defaults(&[("credentials_cache_seconds", 3600.into())]);
    let args = trigger_args(
        "acme",
        Some("tickets"),
        "2024-01-01",
        Some("2026-01-01"),
        &["--chunk-size-days", "30", "--run"],
    );
    let mut cmd = fx.command(Some(&sandbox), &args);
    dep.apply(&mut cmd);
    let run = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job = "backfill_acme_connectwise_20240101";
    wait_for(Duration::from_secs(120), "a chunk to complete", || {
        let out = fx.cli(None, &["status", "--job-id", job, "--output", "json"]);
        let s: Value = serde_json::from_slice(&out.stdout).ok()?;
        (s["job"]["completed_chunks"].as_u64()? >= 2).then_some(())
    });
    // The new key is stored first, then the old one is revoked, as a rotation does.
    let mut rotated = acme.clone();
    rotated["private_key"] = unique_credentials("acme_demo", 5)["private_key"].clone();
    put_secret(&dep, &secret, &rotated);
    common::reqwest::blocking_post_body(
        &format!(
            "{}/_sandbox/connectwise/rotate?company_id=acme_demo",
            sandbox.url
        ),
        rotated["private_key"].as_str().unwrap(),
    );
    let out = run.wait_with_output().unwrap();
    assert_ok(&out);
    let status = job_status(&fx, job);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    assert!(
        status["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["attempts"].as_u64() == Some(1)),
        "no chunk failed for the rotation: {status}"
    );
    let landed = Landed::read(&fx.data_dir(), "acme", "tickets");
    let window = parse_window("2024-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let cfg = source.sandbox_config(TableCounts::demo());
    assert_exact(
        &landed,
        &cfg,
        &company_of(&source, "acme"),
        "tickets",
        &window,
    );
    let secrets: Vec<String> = [secret_values(&acme), secret_values(&rotated)].concat();
    assert_no_leak("the run's output", &text(&out), &secrets);
    assert_no_leak("the workspace", &files_text(&fx.workspace()), &secrets);
    let log = std::fs::read_to_string(fx.workspace().join("logs/engine.jsonl")).unwrap();
    assert!(
        log.contains("credentials changed"),
        "the refusal read the secret again"
    );
}

#[test]
fn a_missing_or_unusable_secret_is_named_without_its_value() {
    let Some(emulators) = emulators("a_missing_or_unusable_secret_is_named") else {
        return;
    };
    let acme = unique_credentials("acme_demo", 6);
    let (_, sandbox) = source_side(&acme, &unique_credentials("globex_demo", 7));
    let dep = Deployment::create(emulators, "bad");
    let missing = format!("avesa/{}/nobody", dep.table_prefix);
    let incomplete = format!("avesa/{}/incomplete", dep.table_prefix);
    let plain = format!("/avesa/{}/plain", dep.table_prefix);
    let mut partial = acme.clone();
    partial.as_object_mut().unwrap().remove("private_key");
    put_secret(&dep, &incomplete, &partial);
    block(
        aws_sdk_ssm::Client::new(&dep.aws)
            .put_parameter()
            .name(&plain)
            .value(acme.to_string())
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send(),
    )
    .unwrap();
    let cases = [
        (
            json!({ "secret_id": missing }),
            vec![
                format!("Secrets Manager secret '{missing}'"),
                "ResourceNotFoundException".to_string(),
            ],
        ),
        (
            json!({ "secret_id": incomplete }),
            vec![format!(
                "credential field 'private_key' is missing or empty in Secrets Manager secret '{incomplete}'"
            )],
        ),
        (
            json!({ "ssm_parameter": plain }),
            vec![
                format!("SSM parameter '{plain}'"),
                "not a SecureString".to_string(),
            ],
        ),
    ];
    for (creds, needles) in cases {
        let fx = Fixture::new();
        fx.edit("tenants.json", |v| {
            v["tenants"][0]["services"]["connectwise"]["credentials"] = creds.clone();
        });
        let args = ["check", "--tenant-id", "acme", "--service", "connectwise"];
        let mut cmd = fx.command(Some(&sandbox), &args);
        dep.apply(&mut cmd);
        let out = cmd.output().unwrap();
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(1), "{creds}: {shown}");
        for n in &needles {
            assert!(shown.contains(n.as_str()), "{creds}: lacks {n:?}: {shown}");
        }
        assert_no_leak("the error", &shown, &secret_values(&acme));
    }
}
