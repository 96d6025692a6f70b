//! The stack's IAM policies allow every AWS call the CLI and the worker make. Every `--cloud`
//! command (trigger, pause, unpause, status, logs, verify, alerts, resume, cancel, cleanup),
//! `cloud status` and a
//! worker run against the emulators with the AWS call log on (`AVESA_AWS_CALL_LOG`, which
//! records each SDK request and each S3 request of object_store as its IAM action); each
//! recorded action must be granted by the policy that process gets in
//! `infrastructure/backfill.yaml`: the commands by `OperatorPolicy`, the worker by `WorkerRole`.
//! Only actions are compared (with IAM's `*` wildcards, case-insensitive; a DynamoDB
//! transaction needs the actions of the parts it may hold); resources and conditions are not
//! modelled. The table of command → actions is printed.
//!
//! Needs `AVESA_TEST_MOTO_URL` and `AVESA_TEST_DYNAMODB_URL` (`scripts/test` starts both).

mod common;
#[allow(dead_code)]
#[path = "cloud_e2e/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use avesa_console::cloud::calls::CALL_LOG_ENV;
use avesa_console::cloud::permissions::{TEMPLATE, granted, matches, resource_text};
use common::*;
use harness::*;
use serde_json::Value;

const JOB: &str = "backfill_acme_connectwise_20250101";
const SECOND: &str = "backfill_acme_connectwise_20240101";

/// What IAM checks for a recorded call. DynamoDB has no action for a transaction: it checks
/// the actions of its parts, which the log does not see, so every part it may hold is needed.
fn iam_actions(call: &str) -> Vec<&str> {
    match call {
        "dynamodb:TransactWriteItems" => vec![
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:ConditionCheckItem",
        ],
        "dynamodb:TransactGetItems" => vec!["dynamodb:GetItem"],
        other => vec![other],
    }
}

/// The distinct actions a call log holds.
fn recorded(log: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

struct Run<'a> {
    dep: &'a Deployment,
    fx: &'a Fixture,
    sandbox: &'a SandboxProc,
}

impl Run<'_> {
    /// Runs a command with its call log at `{dir}/{name}.calls`; returns its JSON answer.
    fn cli(&self, name: &str, args: &[&str], json: bool) -> Value {
        let mut cmd = self.fx.command(Some(self.sandbox), args);
        self.dep.apply(&mut cmd);
        cmd.env(CALL_LOG_ENV, self.log(name));
        let out = cmd.output().unwrap();
        if name == "resume" {
            // A running job is refused, after the command asked Step Functions about it.
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() || said.contains("already running"),
                "{said}"
            );
            return Value::Null;
        }
        assert_ok(&out);
        if json {
            serde_json::from_slice(&out.stdout).unwrap()
        } else {
            Value::Null
        }
    }

    fn log(&self, name: &str) -> std::path::PathBuf {
        self.fx.dir.path().join(format!("{name}.calls"))
    }

    fn trigger(&self, start: &str, end: &str) -> Value {
        let mut args = trigger_args("acme", Some("tickets"), start, Some(end), &[]);
        args.extend_from_slice(&["--chunk-size-days", "30", "--cloud", "--output", "json"]);
        args.extend_from_slice(&["--heartbeat-seconds", "5"]);
        self.cli("trigger", &args, true)
    }

    fn status(&self, job: &str) -> Value {
        let args = ["status", "--cloud", "--job-id", job, "--output", "json"];
        self.cli("status", &args, true)
    }
}

/// Every command of the operator's, in an order that gives each something to do.
fn run_every_command(run: &Run) {
    let words = |line: &str| line.split(' ').map(str::to_string).collect::<Vec<_>>();
    let cli = |name: &str, line: &str, json: bool| {
        let args = words(line);
        run.cli(
            name,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            json,
        )
    };
    run.trigger("2025-01-01", "2026-01-01");
    cli("pause", &format!("pause {JOB} --cloud"), false);
    cli("unpause", &format!("unpause {JOB} --cloud"), false);
    // A lane that saw the pause ended its execution: `resume` starts the next one (and is
    // refused while one runs).
    let status = poll(Duration::from_secs(240), "the job to complete", || {
        let s = run.status(JOB);
        if s["job"]["status"] == "completed" {
            return Some(s);
        }
        if s["execution"]["status"] != "RUNNING" {
            cli("resume", &format!("resume {JOB} --cloud"), false);
        }
        None
    });
    assert_eq!(status["job"]["status"], "completed", "{status}");
    cli("logs", &format!("logs {JOB} --cloud"), false);
    let verified = cli(
        "verify",
        &format!("verify {JOB} --cloud --output json"),
        true,
    );
    assert_eq!(verified["verification"]["ok"], true, "{verified}");
    cli(
        "alerts",
        "alerts --cloud --tenant-id acme --output json",
        true,
    );
    run.trigger("2024-01-01", "2025-01-01");
    cli("resume", &format!("resume {SECOND} --cloud"), false);
    cli("cancel", &format!("cancel {SECOND} --cloud"), false);
    let cleanup = "cleanup --cloud --older-than-days 0 --output json";
    cli("cleanup", cleanup, true);
    cli("cloud-status", "cloud status", false);
}

#[test]
fn every_aws_call_of_the_cli_and_the_worker_is_allowed_by_its_policy() {
    let Some(emulators) = emulators("every_aws_call_is_allowed_by_its_policy") else {
        return;
    };
    let fx = Fixture::new();
    fx.tune(1200, 50);
    let sandbox = fx.start_sandbox(&[]);
    let dep = Deployment::create(emulators, "iam");
    let run = Run {
        dep: &dep,
        fx: &fx,
        sandbox: &sandbox,
    };
    let (mut cmd, log) = dep.worker_command(&fx, &sandbox, "worker");
    cmd.env(CALL_LOG_ENV, run.log("worker"));
    let worker = WorkerProc {
        child: cmd.spawn().unwrap(),
        log,
    };
    run_every_command(&run);
    drop(worker);

    let text = TEMPLATE;
    let operator = granted(text, "OperatorPolicy");
    let worker_role = granted(text, "WorkerRole");
    let commands = [
        "trigger",
        "pause",
        "unpause",
        "status",
        "logs",
        "verify",
        "alerts",
        "resume",
        "cancel",
        "cleanup",
        "cloud-status",
    ];
    let mut refused = Vec::new();
    let mut table = String::new();
    for (name, policy, grants) in commands
        .iter()
        .map(|c| (*c, "OperatorPolicy", &operator))
        .chain([("worker", "WorkerRole", &worker_role)])
    {
        let actions = recorded(&run.log(name));
        assert!(!actions.is_empty(), "{name} recorded no AWS call");
        for action in &actions {
            if !iam_actions(action)
                .iter()
                .all(|need| grants.iter().any(|g| matches(g, need)))
            {
                refused.push(format!("{name}: {action} (not in {policy})"));
            }
        }
        let list: Vec<_> = actions.into_iter().collect();
        table.push_str(&format!("{name:<13} {}\n", list.join(" ")));
    }
    eprintln!("AWS actions by command:\n{table}");
    // The log records what matters: the S3 reads of verify, the worker's queue and writes.
    for (name, action) in [
        ("verify", "s3:GetObject"),
        ("verify", "s3:ListBucket"),
        ("trigger", "states:StartExecution"),
        ("cancel", "states:StopExecution"),
        ("logs", "logs:FilterLogEvents"),
        ("worker", "sqs:ReceiveMessage"),
        ("worker", "s3:PutObject"),
    ] {
        assert!(
            recorded(&run.log(name)).contains(action),
            "{name} did not record {action}:\n{table}"
        );
    }
    assert!(
        refused.is_empty(),
        "refused by the template:\n{}\n{table}",
        refused.join("\n")
    );
}

#[test]
fn policy_actions_match_with_iam_wildcards() {
    assert!(matches("s3:GetObject", "s3:getobject"));
    assert!(matches("states:Describe*", "states:DescribeExecution"));
    assert!(matches("*", "sqs:ReceiveMessage"));
    assert!(!matches("s3:Get*", "s3:PutObject"));
    assert!(!matches("s3:GetObject", "s3:GetObjectAcl"));
    let text = TEMPLATE;
    for resource in ["OperatorPolicy", "WorkerRole"] {
        let body = resource_text(text, resource);
        assert!(!body.contains("NotAction") && !body.contains("Effect: Deny"));
    }
    let operator = granted(text, "OperatorPolicy");
    assert!(
        operator.iter().any(|a| a == "states:StartExecution"),
        "{operator:?}"
    );
    assert!(
        operator.iter().any(|a| a == "dynamodb:Query"),
        "{operator:?}"
    );
    assert!(
        operator.iter().any(|a| a == "logs:DescribeLogGroups"),
        "{operator:?}"
    );
    let worker = granted(text, "WorkerRole");
    assert!(
        worker.iter().any(|a| a == "sqs:ReceiveMessage"),
        "{worker:?}"
    );
    assert!(
        !worker.iter().any(|a| a == "logs:FilterLogEvents"),
        "{worker:?}"
    );
}
