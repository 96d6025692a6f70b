//! The deployment's settings file and `cloud status`'s checks, on the emulators:
//! `cloud up --stack-outputs -` takes the outputs JSON (keys read from the template's
//! `Outputs`, so the test and the template cannot drift), writes the settings file, and
//! `--cloud` commands with no `AVESA_CLOUD_*` variable use it; a flag or a variable overrides
//! it; `cloud status` says where each setting came from, finds every resource and every
//! permission of the operator policy allowed (moto enforces none); `trigger --cloud` with a
//! state machine, queue or bucket that does not exist says so in one line. A bad settings file
//! or outputs file exits 2 naming the file and the field (no emulator needed).
//!
//! Needs `AVESA_TEST_MOTO_URL` and `AVESA_TEST_DYNAMODB_URL` (`scripts/test` starts both).

mod common;
#[allow(dead_code)]
#[path = "cloud_e2e/harness.rs"]
mod harness;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use avesa_console::cloud::permissions::{TEMPLATE, operator_actions};
use avesa_console::cloud::settings_file::{OTHER_OUTPUTS, SETTING_OUTPUTS};
use avesa_console::store::{JobFilter, JobStore};
use common::*;
use harness::*;
use serde_json::{Value, json};

const SETTINGS: [&str; 6] = [
    "AVESA_CLOUD_STATE_MACHINE_ARN",
    "AVESA_CLOUD_QUEUE_URL",
    "AVESA_CLOUD_BUCKET",
    "AVESA_CLOUD_TABLE_PREFIX",
    "AVESA_CLOUD_LOG_GROUP",
    "AVESA_DEPLOYMENT",
];

/// The output names the template's `Outputs` section defines.
fn template_outputs() -> Vec<String> {
    let at = TEMPLATE
        .find("\nOutputs:\n")
        .expect("the template has Outputs");
    TEMPLATE[at + "\nOutputs:\n".len()..]
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.trim().trim_end_matches(':').to_string())
        .collect()
}

/// A fixture and a deployment of its own on the emulators (`None`: skipped without them).
fn deployment(test: &str, tag: &str) -> Option<(Fixture, Deployment)> {
    let emulators = emulators(test)?;
    Some((Fixture::new(), Deployment::create(emulators, tag)))
}

/// The binary with the emulators' endpoints and credentials but no cloud setting.
fn bare(fx: &Fixture, dep: &Deployment, args: &[&str]) -> Command {
    let mut cmd = fx.command(None, args);
    dep.apply(&mut cmd);
    for var in SETTINGS {
        cmd.env_remove(var);
    }
    cmd
}

fn run_with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The outputs JSON `describe-stacks --query 'Stacks[0].Outputs'` prints for `dep`.
fn outputs_of(dep: &Deployment) -> Value {
    let value = |key: &str| match key {
        "StateMachineArn" => dep.state_machine_arn.clone(),
        "QueueUrl" => dep.queue_url.clone(),
        "DataBucket" => dep.bucket.clone(),
        "TablePrefix" => dep.table_prefix.clone(),
        "LogGroup" => dep.log_group.clone(),
        other => format!("value-of-{other}"),
    };
    let list: Vec<Value> = template_outputs()
        .iter()
        .map(|k| json!({"OutputKey": k, "OutputValue": value(k), "Description": "d"}))
        .collect();
    Value::Array(list)
}

#[test]
fn the_binary_knows_every_output_of_the_template() {
    let mut known: Vec<String> = SETTING_OUTPUTS
        .iter()
        .map(|(k, _)| k.to_string())
        .chain(OTHER_OUTPUTS.iter().map(|k| k.to_string()))
        .collect();
    let mut defined = template_outputs();
    known.sort();
    defined.sort();
    assert_eq!(known, defined);
}

#[test]
fn stack_outputs_become_the_settings_the_cloud_commands_use() {
    let Some((fx, dep)) = deployment("stack_outputs_become_the_settings", "settings") else {
        return;
    };
    let name = "settings-test";
    let up = ["cloud", "up", "--name", name, "--stack-outputs", "-"];
    let out = run_with_stdin(bare(&fx, &dep, &up), &outputs_of(&dep).to_string());
    assert_ok(&out);
    let file = fx.workspace().join(format!("cloud/{name}.json"));
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        stored["table_prefix"],
        dep.table_prefix.as_str(),
        "{stored}"
    );
    assert_eq!(stored["region"], "us-east-1", "{stored}");

    // No variable, no flag: the file gives every setting.
    let status = [
        "status",
        "--cloud",
        "--deployment",
        name,
        "--output",
        "json",
    ];
    assert_ok(&bare(&fx, &dep, &status).output().unwrap());
    // Nor any AWS region: the file's is used.
    let mut cmd = bare(&fx, &dep, &status);
    cmd.env_remove("AWS_REGION")
        .env("AWS_CONFIG_FILE", fx.workspace().join("no-aws-config"));
    assert_ok(&cmd.output().unwrap());
    let out = bare(&fx, &dep, &["cloud", "status", "--deployment", name])
        .output()
        .unwrap();
    assert_ok(&out);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let origin = format!("(settings file {})", file.display());
    let setting_lines: Vec<_> = said.lines().filter(|l| l.starts_with("setting ")).collect();
    assert_eq!(setting_lines.len(), 5, "{said}");
    assert!(setting_lines.iter().all(|l| l.ends_with(&origin)), "{said}");
    assert_every_permission_ok(&said);

    // A flag, then a variable, overrides the file.
    let mut flagged = status.to_vec();
    flagged.extend(["--table-prefix", "flag_prefix"]);
    let out = bare(&fx, &dep, &flagged).output().unwrap();
    assert!(
        !out.status.success() && text(&out).contains("flag_prefix_jobs"),
        "{}",
        text(&out)
    );
    let mut cmd = bare(&fx, &dep, &status);
    cmd.env("AVESA_CLOUD_TABLE_PREFIX", "env_prefix");
    let out = cmd.output().unwrap();
    assert!(
        !out.status.success() && text(&out).contains("env_prefix_jobs"),
        "{}",
        text(&out)
    );
    let mut cmd = bare(&fx, &dep, &["cloud", "status", "--deployment", name]);
    cmd.env("AVESA_CLOUD_TABLE_PREFIX", &dep.table_prefix);
    cmd.args(["--bucket", &dep.bucket]);
    let said = String::from_utf8_lossy(&cmd.output().unwrap().stdout).to_string();
    let line = |flag: &str| said.lines().find(|l| l.contains(flag)).unwrap().to_string();
    assert!(
        line("--table-prefix =").ends_with("(AVESA_CLOUD_TABLE_PREFIX)"),
        "{said}"
    );
    assert!(line("--bucket =").ends_with("(--bucket)"), "{said}");
}

/// Every action of the operator policy has its line, each `ok` (moto allows everything) but
/// the credential reads, which no probe can make harmlessly.
fn assert_every_permission_ok(said: &str) {
    let lines: Vec<&str> = said.lines().filter(|l| l.contains("permission ")).collect();
    for action in operator_actions() {
        let mine: Vec<_> = lines
            .iter()
            .filter(|l| l.contains(&format!("permission {action} on ")))
            .collect();
        assert!(!mine.is_empty(), "no line for {action}:\n{said}");
        let credentials = ["secretsmanager:", "ssm:", "kms:"]
            .iter()
            .any(|s| action.starts_with(s));
        for l in mine {
            if credentials {
                assert!(l.starts_with("unchecked "), "{l}");
            } else {
                assert!(l.starts_with("ok "), "{l}\n{said}");
            }
        }
    }
    assert!(!said.contains("missing "), "{said}");
}

#[test]
fn trigger_with_a_missing_state_machine_queue_or_bucket_is_one_line() {
    let Some((fx, dep)) = deployment("trigger_with_a_missing_resource", "missing") else {
        return;
    };
    let gone_machine = dep.state_machine_arn.replace("-backfill", "-gone");
    let gone_queue = format!("{}-gone", dep.queue_url);
    for (flag, value, env) in [
        (
            "--state-machine-arn",
            gone_machine.as_str(),
            "AVESA_CLOUD_STATE_MACHINE_ARN",
        ),
        ("--queue-url", gone_queue.as_str(), "AVESA_CLOUD_QUEUE_URL"),
        ("--bucket", "avesa-no-such-bucket", "AVESA_CLOUD_BUCKET"),
    ] {
        let mut args = trigger_args(
            "acme",
            Some("tickets"),
            "2025-01-01",
            Some("2025-02-01"),
            &[],
        );
        args.extend(["--cloud", flag, value]);
        let out = dep.cli(&fx, None, &args);
        assert!(!out.status.success(), "{flag}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .find(|l| l.contains(value))
            .unwrap_or_else(|| panic!("{value} is not named: {err}"));
        assert!(line.contains("does not exist"), "{line}");
        assert!(line.contains(env) && line.contains(flag), "{line}");
        assert!(line.contains("cloud up --emulators"), "{line}");
        assert!(err.len() < 700, "one line, not the SDK's answer: {err}");
    }
    // No job was written for them.
    assert!(
        block(dep.store().list_jobs(&JobFilter::default()))
            .unwrap()
            .is_empty()
    );
}

/// A settings file or an outputs file that cannot be read: exit 2 naming the file and field.
#[test]
fn bad_settings_and_outputs_files_exit_2_naming_the_file_and_the_field() {
    let fx = Fixture::new();
    let dir = fx.workspace().join("cloud");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.json");
    let good = json!({"deployment": "broken", "origin": "stack outputs", "state_machine_arn": "a",
        "queue_url": "q", "bucket": "b", "table_prefix": "t", "log_group": "l"});
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("bucket");
    let mut typed = good.clone();
    typed["queue_url"] = json!(7);
    for (content, says) in [
        ("{".to_string(), "not JSON".to_string()),
        (missing.to_string(), "field `bucket` is missing".to_string()),
        (typed.to_string(), "field `queue_url`".to_string()),
    ] {
        std::fs::write(&file, &content).unwrap();
        let mut cmd = fx.command(None, &["status", "--cloud", "--deployment", "broken"]);
        for var in SETTINGS {
            cmd.env_remove(var);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{content}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&file.display().to_string()) && err.contains(&says),
            "{err}"
        );
    }

    let outputs = |list: Value| {
        let up = ["cloud", "up", "--name", "fresh", "--stack-outputs", "-"];
        run_with_stdin(fx.command(None, &up), &list.to_string())
    };
    let mut list: Vec<Value> = template_outputs()
        .iter()
        .map(|k| json!({"OutputKey": k, "OutputValue": "v"}))
        .collect();
    list.retain(|o| o["OutputKey"] != "QueueUrl");
    list.push(json!({"OutputKey": "Unexpected", "OutputValue": "v"}));
    let out = outputs(Value::Array(list.clone()));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--stack-outputs -") && err.contains("unknown output 'Unexpected'"),
        "{err}"
    );
    list.pop();
    let out = outputs(Value::Array(list));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("missing output QueueUrl"),
        "{}",
        text(&out)
    );
    assert!(!fx.workspace().join("cloud/fresh.json").exists());
}
