//! The deployment files: the state machine's shape (what the worker relies on), the template
//! embedding exactly `infrastructure/backfill.asl.json`, and cfn-lint on the template.

#[path = "common/skip.rs"]
mod skip;
#[path = "common/template.rs"]
mod template;

use std::path::{Path, PathBuf};
use std::process::Command;

use avesa_console::cloud::message::{ERROR_RETRYABLE, max_iterations_per_lane};
use serde_json::Value;
use template::{resource_text, template};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn asl() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(root().join("infrastructure/backfill.asl.json")).unwrap(),
    )
    .unwrap()
}

/// Every state of the machine, the Map's inner states included, by name.
fn states(asl: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, state) in asl["States"].as_object().unwrap() {
        out.push((name.clone(), state.clone()));
        if let Some(inner) = state.get("ItemProcessor") {
            out.extend(states(inner));
        }
    }
    out
}

fn state(asl: &Value, name: &str) -> Value {
    states(asl)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no state {name}"))
        .1
}

#[test]
fn worker_tasks_heartbeat_retry_and_catch_as_the_worker_expects() {
    let asl = asl();
    let tasks: Vec<_> = states(&asl)
        .into_iter()
        .filter(|(_, s)| s["Resource"] == "arn:aws:states:::sqs:sendMessage.waitForTaskToken")
        .collect();
    let names: Vec<_> = tasks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    for (name, task) in &tasks {
        let body = &task["Parameters"]["MessageBody"];
        let kind = body["type"].as_str().unwrap();
        assert!(
            ["chunk", "continue", "transform", "finalize"].contains(&kind),
            "{name}: a message type the worker does not know: {kind}"
        );
        assert_eq!(body["task_token.$"], "$$.Task.Token", "{name}");
        assert_eq!(
            task["Parameters"]["QueueUrl"], "${WorkerQueueUrl}",
            "{name}"
        );
        assert_eq!(
            task["HeartbeatSecondsPath"], "$.heartbeat_seconds",
            "{name}"
        );
        assert_eq!(body["heartbeat_seconds.$"], "$.heartbeat_seconds", "{name}");
        let retry = &task["Retry"][0];
        let errors: Vec<_> = retry["ErrorEquals"].as_array().unwrap().iter().collect();
        for e in [ERROR_RETRYABLE, "States.Timeout", "States.HeartbeatTimeout"] {
            assert!(errors.iter().any(|x| *x == e), "{name} does not retry {e}");
        }
        assert_eq!(retry["MaxAttempts"], 3, "{name}");
        assert_eq!(retry["BackoffRate"], 2.0, "{name}");
        assert_eq!(task["Catch"][0]["ErrorEquals"][0], "States.ALL", "{name}");
    }
}

#[test]
fn lanes_loop_while_more_and_hand_over_when_asked() {
    let asl = asl();
    let map = state(&asl, "RunLanes");
    assert_eq!(map["Type"], "Map");
    assert_eq!(map["ItemsPath"], "$.lanes");
    assert_eq!(map["MaxConcurrencyPath"], "$.max_concurrency");
    let run = state(&asl, "RunChunk");
    assert_eq!(run["Next"], "NextIteration");
    // A caught failure is recorded and the lane goes on, at most three times in a row.
    assert_eq!(run["Catch"][0]["Next"], "RecordFailure");
    assert_eq!(state(&asl, "RecordFailure")["Next"], "TooManyFailures");
    let give_up = &state(&asl, "TooManyFailures")["Choices"][0];
    assert_eq!(give_up["NumericGreaterThanEquals"], 3);
    assert_eq!(state(&asl, "TooManyFailures")["Default"], "RunChunk");
    let more = state(&asl, "MoreWork");
    assert_eq!(more["Choices"][0]["Variable"], "$.continue_as_new");
    assert_eq!(more["Choices"][0]["Next"], "LaneContinues");
    assert_eq!(more["Choices"][1]["Variable"], "$.more");
    assert_eq!(more["Choices"][1]["Next"], "RunChunk");
    // After the lanes: continue as new, or transform then finalize then the final status.
    assert_eq!(
        state(&asl, "ShouldContinue")["Choices"][0]["Next"],
        "ContinueAsNew"
    );
    assert_eq!(state(&asl, "ShouldContinue")["Default"], "Transform");
    assert_eq!(state(&asl, "ContinueAsNew")["End"], true);
    assert_eq!(state(&asl, "Transform")["Next"], "Finalize");
    assert_eq!(state(&asl, "Transform")["Catch"][0]["Next"], "Finalize");
    assert_eq!(state(&asl, "Finalize")["Next"], "FinalStatus");
    let finals = state(&asl, "FinalStatus");
    assert_eq!(finals["Choices"][0]["StringEquals"], "completed");
    assert_eq!(state(&asl, "Completed")["Type"], "Succeed");
    assert_eq!(state(&asl, "Unfinished")["Type"], "Fail");
    assert!(max_iterations_per_lane(1) > 100);
}

#[test]
fn the_template_embeds_exactly_the_state_machine_file() {
    let text = template();
    let begin = text
        .find("# BEGIN backfill.asl.json")
        .expect("BEGIN marker");
    let end = text.find("# END backfill.asl.json").expect("END marker");
    let block = &text[begin..end];
    let json = &block[block.find("Definition:").expect("Definition") + "Definition:".len()..];
    let embedded: Value = serde_json::from_str(json.trim()).unwrap_or_else(|e| {
        panic!("the embedded definition is not JSON ({e}): run scripts/sync-asl")
    });
    assert!(
        embedded == asl(),
        "infrastructure/backfill.yaml holds another definition than backfill.asl.json: run scripts/sync-asl"
    );
    // The tables have the names, keys and indexes of the DynamoDB store.
    for needle in [
        "${TablePrefix}_jobs",
        "${TablePrefix}_chunks",
        "IndexName: by_tenant_status",
        "IndexName: by_created",
        "AttributeName: list_pk",
        "AttributeName: sk",
    ] {
        assert!(text.contains(needle), "template lacks {needle}");
    }
}

fn cfn_lint() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("AVESA_CFN_LINT") {
        return Some(PathBuf::from(p));
    }
    let venv = root().join(".ci/tools/venv/bin/cfn-lint");
    if venv.exists() {
        return Some(venv);
    }
    Command::new("cfn-lint")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| PathBuf::from("cfn-lint"))
}

#[test]
fn the_template_passes_cfn_lint() {
    let Some(lint) = cfn_lint() else {
        skip::skip(
            "the_template_passes_cfn_lint",
            "cfn-lint is not installed (scripts/emulators start installs it)",
        );
        return;
    };
    let out = Command::new(&lint)
        .arg(root().join("infrastructure/backfill.yaml"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", lint.display()));
    assert!(
        out.status.success(),
        "cfn-lint found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The IAM actions the DynamoDB store's item calls need: each SDK operation it sends, and
/// for TransactWriteItems the actions of the parts it builds (IAM has no action of its own
/// for a transaction; each Put, Update, Delete and ConditionCheck is authorised as
/// PutItem, UpdateItem, DeleteItem and ConditionCheckItem). Table management
/// (`ensure_tables`, for tests and local setups) is left out: the stack makes the tables.
fn store_actions() -> Vec<&'static str> {
    let mut sources = rust_files(&root().join("src/store/dynamodb"));
    sources.push(root().join("src/store/dynamodb.rs"));
    let code: String = sources
        .iter()
        .filter(|p| !p.ends_with("schema.rs"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let calls = [
        (".get_item()", "dynamodb:GetItem"),
        (".batch_get_item()", "dynamodb:BatchGetItem"),
        (".query()", "dynamodb:Query"),
        (".scan()", "dynamodb:Scan"),
        (".put_item()", "dynamodb:PutItem"),
        (".update_item()", "dynamodb:UpdateItem"),
        (".delete_item()", "dynamodb:DeleteItem"),
        (".batch_write_item()", "dynamodb:BatchWriteItem"),
        ("Put::builder()", "dynamodb:PutItem"),
        ("Update::builder()", "dynamodb:UpdateItem"),
        ("Delete::builder()", "dynamodb:DeleteItem"),
        ("ConditionCheck::builder()", "dynamodb:ConditionCheckItem"),
        (".transact_get_items()", "dynamodb:GetItem"),
    ];
    let mut out: Vec<_> = calls
        .iter()
        .filter(|(call, _)| code.contains(call))
        .map(|(_, action)| *action)
        .collect();
    out.sort_unstable();
    out.dedup();
    assert!(
        out.contains(&"dynamodb:Query") && out.contains(&"dynamodb:DeleteItem"),
        "the store's calls were not found: {out:?}"
    );
    out
}

/// The DynamoDB actions of statement `sid` in the template's resource `resource`.
fn policy_actions(text: &str, resource: &str, sid: &str) -> Vec<String> {
    let resource_text = resource_text(text, resource);
    let at = resource_text
        .find(&format!("Sid: {sid}"))
        .unwrap_or_else(|| panic!("{resource} has no statement {sid}"));
    resource_text[at..]
        .lines()
        .skip(1)
        .skip_while(|l| !l.trim_start().starts_with("- dynamodb:"))
        .take_while(|l| l.trim_start().starts_with("- dynamodb:"))
        .map(|l| l.trim_start().trim_start_matches("- ").to_string())
        .collect()
}

#[test]
fn the_operator_and_worker_may_make_every_dynamodb_call_of_the_store() {
    let text = template();
    let needed = store_actions();
    // The operator's commands (trigger, cancel, resume --retry-failed, the cloud console)
    // create jobs, give up range claims (DeleteItem) and reopen chunks in transactions;
    // workers claim, checkpoint, finish chunks, abandon stalled creations and write the
    // lifecycle items. Both open the whole store, so both may make every item call.
    for (resource, sid) in [("OperatorPolicy", "JobState"), ("WorkerRole", "JobState")] {
        let granted = policy_actions(&text, resource, sid);
        for action in &needed {
            assert!(
                granted.iter().any(|g| g == action),
                "{resource} ({sid}) lacks {action}; it has {granted:?}"
            );
        }
    }
}

#[test]
fn alarms_watch_the_workers_metrics_the_queue_and_the_executions() {
    let text = template();
    // moto's CloudFormation has no `Arn` attribute for a state machine; `Ref` is its ARN on
    // AWS and on moto alike.
    assert!(
        !text.contains("BackfillStateMachine.Arn"),
        "use !Ref BackfillStateMachine for the ARN"
    );
    for (alarm, metric, threshold, comparison) in [
        (
            "ConsecutiveFailuresAlarm",
            "ConsecutiveFailures",
            "AlarmConsecutiveFailures",
            "GreaterThanThreshold",
        ),
        (
            "LongRunningJobAlarm",
            "JobDurationSeconds",
            "AlarmJobDurationHours",
            "GreaterThanThreshold",
        ),
        (
            "LowCompletionAlarm",
            "CompletionPercent",
            "AlarmCompletionPercentBelow",
            "LessThanThreshold",
        ),
        (
            "DeadLetterQueueAlarm",
            "ApproximateNumberOfMessagesVisible",
            "0",
            "GreaterThanThreshold",
        ),
        (
            "FailedExecutionsAlarm",
            "ExecutionsFailed",
            "0",
            "GreaterThanThreshold",
        ),
    ] {
        let body = resource_text(&text, alarm);
        assert!(body.contains("Type: AWS::CloudWatch::Alarm"), "{alarm}");
        assert!(
            body.contains(&format!("MetricName: {metric}")),
            "{alarm}: {body}"
        );
        let limit = if threshold == "0" {
            "Threshold: 0".to_string()
        } else {
            format!("Threshold: !Ref {threshold}")
        };
        assert!(body.contains(&limit), "{alarm}: {body}");
        assert!(
            body.contains(&format!("ComparisonOperator: {comparison}")),
            "{alarm}"
        );
        assert!(
            body.contains(
                "AlarmActions: !If [NotifyAlarms, [!Ref AlarmTopicArn], !Ref AWS::NoValue]"
            ),
            "{alarm} notifies the optional topic"
        );
    }
    // The seed's thresholds are the parameters' defaults.
    for (param, default) in [
        ("AlarmConsecutiveFailures", "3"),
        ("AlarmJobDurationHours", "20"),
        ("AlarmCompletionPercentBelow", "90"),
    ] {
        let at = text.find(&format!("\n  {param}:\n")).expect(param);
        let default_line = text[at..].lines().find(|l| l.contains("Default:")).unwrap();
        assert_eq!(
            default_line.trim(),
            format!("Default: {default}"),
            "{param}"
        );
    }
    let machine = resource_text(&text, "BackfillStateMachine");
    assert!(
        machine.contains("LogGroupArn: !GetAtt StateMachineLogGroup.Arn"),
        "the state machine logs its executions"
    );
}

#[test]
fn the_dashboard_is_json_and_shows_every_metric_the_workers_write() {
    let text = template();
    let body = resource_text(&text, "BackfillDashboard");
    let json_start = body.find("- |\n").expect("a literal dashboard body") + 4;
    let json_end = body.find("        - Machine:").expect("substitutions");
    // Fill the `!Sub` placeholders as CloudFormation would.
    let mut json = body[json_start..json_end].to_string();
    for placeholder in [
        "${AWS::Region}",
        "${Machine}",
        "${DeadLetters}",
        "${AWS::Partition}",
        "${AWS::AccountId}",
        "${AWS::StackName}",
    ] {
        json = json.replace(placeholder, "x");
    }
    let dashboard: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let shown = dashboard.to_string();
    for metric in avesa_console::engine::metrics::JOB_METRICS {
        assert!(shown.contains(metric), "the dashboard lacks {metric}");
    }
}

#[test]
fn the_data_bucket_aborts_multipart_uploads_a_killed_process_left() {
    let bucket = resource_text(&template(), "DataBucket");
    let rule = bucket
        .split("- Id: ")
        .find(|r| r.contains("AbortIncompleteMultipartUpload"))
        .unwrap_or_else(|| panic!("DataBucket has no rule aborting incomplete uploads:\n{bucket}"));
    assert!(rule.contains("Status: Enabled"), "{rule}");
    let days: u32 = rule
        .split("DaysAfterInitiation:")
        .nth(1)
        .and_then(|d| d.split_whitespace().next())
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no DaysAfterInitiation in {rule}"));
    assert!((1..=7).contains(&days), "{days} days");
}
