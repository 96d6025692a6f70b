//! `cloud status`'s permission check: one probe per action the stack's `OperatorPolicy`
//! grants, changing nothing. The list of actions is the policy's own, read from
//! `infrastructure/backfill.yaml` (compiled in): the same text tests/cloud_iam.rs checks every
//! recorded call of the CLI against, so the check cannot drift from the template.
//!
//! Each probe is a call IAM authorises before the service looks at it and that cannot succeed
//! or change anything, so the service's answer tells whether the caller may make it:
//! conditional DynamoDB writes on a sentinel key whose condition fails
//! (`ConditionalCheckFailedException` means allowed), DescribeExecution / StopExecution of an
//! execution name that does not exist under the state machine (`ExecutionDoesNotExist`),
//! StartExecution with an input that is not JSON (`InvalidExecutionInput`), reads of one item
//! or one page (a batch delete of the sentinel key, which never exists, writes nothing), and a
//! GetObject of a key that does not exist (`NotFound`). An access-denied answer means the
//! permission is missing; any other answer leaves the action "not checked", never "ok". The
//! credential reads (`secretsmanager`, `ssm`, `kms`) are not checked: which names they read
//! depends on the tenant registry.
//!
//! moto answers a StartExecution whose input is not JSON with the JSON parser's message and no
//! error code (the SDK reads `UnknownError`; AWS says `InvalidExecutionInput`); that answer is
//! read as the input's refusal.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, DeleteRequest, KeysAndAttributes};
use aws_sdk_dynamodb::types::{TransactWriteItem, WriteRequest};
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};

use super::{CloudSettings, Setting};

/// The CloudFormation template the stack is deployed from.
pub const TEMPLATE: &str = include_str!("../../infrastructure/backfill.yaml");
/// The managed policy the template makes for whoever dispatches and monitors backfills.
pub const OPERATOR_POLICY: &str = "OperatorPolicy";
/// The key of the item every DynamoDB probe names: no job has it (a job id has no `#`).
pub const SENTINEL_JOB_ID: &str = "avesa-console#permission-probe";
/// The execution name and object key the probes name, which nothing uses.
pub const SENTINEL_NAME: &str = "avesa-console-permission-probe";

/// The text of one top-level resource of the template (up to the next one).
pub fn resource_text(text: &str, resource: &str) -> String {
    let Some(start) = text.find(&format!("\n  {resource}:\n")) else {
        return String::new();
    };
    let body = &text[start + resource.len() + 4..];
    let end = body
        .lines()
        .scan(0, |at, line| {
            let here = *at;
            *at += line.len() + 1;
            Some((here, line))
        })
        // The resource ends where the next one (two spaces, a name, a colon) or a comment
        // before it starts.
        .find(|(_, l)| l.len() > 2 && l.starts_with("  ") && !l.starts_with("   "))
        .map_or(body.len(), |(at, _)| at);
    body[..end].to_string()
}

/// Every action the statements of `resource` allow: `Action: a`, `Action: [a, b]` or an
/// `Action:` followed by `- a` lines. (The template has no Deny and no NotAction.)
pub fn granted(text: &str, resource: &str) -> Vec<String> {
    let body = resource_text(text, resource);
    let mut out = Vec::new();
    let mut lines = body.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("Action:") else {
            continue;
        };
        let rest = rest.trim();
        if rest.is_empty() {
            while let Some(item) = lines.peek().and_then(|l| l.trim_start().strip_prefix("- ")) {
                out.push(item.trim().to_string());
                lines.next();
            }
        } else {
            let list = rest.trim_start_matches('[').trim_end_matches(']');
            out.extend(list.split(',').map(|a| a.trim().to_string()));
        }
    }
    out
}

/// IAM's match of an action against a granted pattern (`*` and `?`, case-insensitive).
pub fn matches(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], a) || (!a.is_empty() && go(p, &a[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => go(&p[1..], &a[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

/// The actions `OperatorPolicy` grants, in the template's order.
pub fn operator_actions() -> Vec<String> {
    granted(TEMPLATE, OPERATOR_POLICY)
}

/// What a probe found out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Denied: the service's answer.
    Missing(String),
    /// The answer says nothing about the permission (or no harmless probe exists): why.
    NotChecked(String),
}

/// A service's answer to a probe: success, or its error code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Error {
        code: Option<String>,
        message: String,
    },
}

impl Answer {
    /// The answer of an SDK call.
    pub fn of<T, E, R>(r: Result<T, SdkError<E, R>>) -> Answer
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match r {
            Ok(_) => Answer::Ok,
            Err(e) => Answer::Error {
                code: e.code().map(str::to_string),
                message: e.message().map_or_else(
                    || super::CloudError::aws("call", &e).to_string(),
                    str::to_string,
                ),
            },
        }
    }
}

/// Whether an error code is IAM's refusal.
fn is_denied(code: &str) -> bool {
    code.contains("AccessDenied")
        || matches!(
            code,
            "UnauthorizedOperation" | "AuthorizationError" | "NotAuthorized" | "Forbidden"
        )
}

/// The verdict an answer gives: success or one of the codes in `proves` (those the service
/// gives only once IAM has let the call through) mean allowed, an access-denied code missing.
pub fn classify(answer: &Answer, proves: &[&str]) -> Verdict {
    match answer {
        Answer::Ok => Verdict::Allowed,
        Answer::Error {
            code: Some(code),
            message,
        } if is_denied(code) => Verdict::Missing(format!("{code}: {message}")),
        Answer::Error {
            code: Some(code), ..
        } if proves.contains(&code.as_str()) => Verdict::Allowed,
        Answer::Error { code, message } => Verdict::NotChecked(format!(
            "the answer ({}: {message}) does not tell",
            code.as_deref().unwrap_or("no error code")
        )),
    }
}

/// One action checked on one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub action: String,
    /// The resource the call named (or `*`).
    pub resource: String,
    /// The setting that names the resource, when one does.
    pub setting: Option<Setting>,
    pub verdict: Verdict,
}

impl Probe {
    /// The line `cloud status` prints: what, on what, and for a missing one the setting and
    /// the fix.
    pub fn line(&self) -> String {
        let what = format!("permission {} on {}", self.action, self.resource);
        match &self.verdict {
            Verdict::Allowed => format!("ok       {what}"),
            Verdict::NotChecked(why) => format!("unchecked {what}: {why}"),
            Verdict::Missing(answer) => {
                let setting = self.setting.map_or_else(String::new, |s| {
                    let (desc, flag, env) = s.describe();
                    format!(" ({desc}, from {flag} or {env})")
                });
                let s3 = if self.action == "s3:GetObject" {
                    " (S3 also refuses a missing key so when s3:ListBucket is not granted)"
                } else {
                    ""
                };
                format!(
                    "missing  {what}{setting}: denied ({answer}){s3}; fix: attach the stack's \
                     {OPERATOR_POLICY} (output OperatorPolicyArn) to this identity, or grant \
                     {} on that resource",
                    self.action
                )
            }
        }
    }
}

/// The clients and names the probes use.
struct Ctx<'a> {
    config: &'a SdkConfig,
    settings: &'a CloudSettings,
}

/// Probes every action of `actions` (an action without a harmless probe is "not checked").
pub async fn probe_all(
    config: &SdkConfig,
    settings: &CloudSettings,
    actions: &[String],
) -> Vec<Probe> {
    let ctx = Ctx { config, settings };
    let mut out = Vec::new();
    for action in actions {
        out.extend(probe(&ctx, action).await);
    }
    out
}

async fn probe(ctx: &Ctx<'_>, action: &str) -> Vec<Probe> {
    let service = action.split(':').next().unwrap_or_default();
    match service {
        "states" => vec![probe_states(ctx, action).await],
        "dynamodb" => {
            let mut out = Vec::new();
            for table in ["jobs", "chunks"] {
                out.push(probe_dynamodb(ctx, action, table).await);
            }
            out
        }
        "sqs" | "logs" => vec![probe_queue_or_logs(ctx, action).await],
        "s3" => vec![probe_s3(ctx, action).await],
        _ => vec![Probe {
            action: action.to_string(),
            resource: "the tenants' credentials".into(),
            setting: None,
            verdict: Verdict::NotChecked(
                "not checked: the names read depend on the tenant registry (`avesa-console \
                 check` reads each tenant's)"
                    .into(),
            ),
        }],
    }
}

/// A probe that could not be made because its setting is not set.
fn unset(action: &str, setting: Setting) -> Probe {
    Probe {
        action: action.to_string(),
        resource: setting.describe().0.to_string(),
        setting: Some(setting),
        verdict: Verdict::NotChecked(format!("not checked: {} is not set", setting.describe().0)),
    }
}

fn no_probe(action: &str, resource: String, setting: Setting) -> Probe {
    Probe {
        action: action.to_string(),
        resource,
        setting: Some(setting),
        verdict: Verdict::NotChecked("not checked: no harmless call makes it".into()),
    }
}

async fn probe_states(ctx: &Ctx<'_>, action: &str) -> Probe {
    let Ok(arn) = ctx.settings.require(Setting::StateMachineArn) else {
        return unset(action, Setting::StateMachineArn);
    };
    let sfn = aws_sdk_sfn::Client::new(ctx.config);
    let execution = super::sfn::execution_arn(arn, SENTINEL_NAME);
    let (resource, verdict) = match action {
        "states:StartExecution" => {
            let r = sfn
                .start_execution()
                .state_machine_arn(arn)
                .name(SENTINEL_NAME)
                .input("{not json")
                .send()
                .await;
            if let Ok(started) = &r {
                // Nothing should start an execution of it; if something did, it stops now.
                let stop = sfn.stop_execution().execution_arn(started.execution_arn());
                let _ = stop.send().await;
            }
            let answer = bad_input_answer(Answer::of(r));
            (
                arn.to_string(),
                classify(&answer, &["InvalidExecutionInput"]),
            )
        }
        "states:DescribeExecution" => {
            let r = sfn.describe_execution().execution_arn(&execution).send();
            (
                execution,
                classify(&Answer::of(r.await), &["ExecutionDoesNotExist"]),
            )
        }
        "states:StopExecution" => {
            let r = sfn.stop_execution().execution_arn(&execution).send();
            (
                execution,
                classify(&Answer::of(r.await), &["ExecutionDoesNotExist"]),
            )
        }
        "states:DescribeStateMachine" => {
            let r = sfn.describe_state_machine().state_machine_arn(arn).send();
            (arn.to_string(), classify(&Answer::of(r.await), &[]))
        }
        _ => return no_probe(action, arn.to_string(), Setting::StateMachineArn),
    };
    Probe {
        action: action.to_string(),
        resource,
        setting: Some(Setting::StateMachineArn),
        verdict,
    }
}

/// moto's refusal of an input that is not JSON has no code: it is the JSON parser's message.
fn bad_input_answer(answer: Answer) -> Answer {
    match answer {
        Answer::Error { code, message }
            if code.as_deref().is_none_or(|c| c == "UnknownError")
                && message.contains("line 1 column") =>
        {
            Answer::Error {
                code: Some("InvalidExecutionInput".into()),
                message,
            }
        }
        other => other,
    }
}

/// The sentinel item's key in the jobs table (`job_id`) or the chunks table (`job_id`, `sk`).
fn sentinel_key(table: &str) -> HashMap<String, AttributeValue> {
    let mut key = HashMap::from([(
        "job_id".to_string(),
        AttributeValue::S(SENTINEL_JOB_ID.into()),
    )]);
    if table == "chunks" {
        key.insert("sk".into(), AttributeValue::S(SENTINEL_NAME.into()));
    }
    key
}

async fn probe_dynamodb(ctx: &Ctx<'_>, action: &str, table: &str) -> Probe {
    let Ok(prefix) = ctx.settings.require(Setting::TablePrefix) else {
        return unset(action, Setting::TablePrefix);
    };
    let name = format!("{prefix}_{table}");
    let db = aws_sdk_dynamodb::Client::new(ctx.config);
    let key = sentinel_key(table);
    let exists = "attribute_exists(job_id)";
    const FAILED: &[&str] = &["ConditionalCheckFailedException"];
    let verdict = match action {
        "dynamodb:DescribeTable" => classify(
            &Answer::of(db.describe_table().table_name(&name).send().await),
            &[],
        ),
        "dynamodb:GetItem" => {
            let r = db.get_item().table_name(&name).set_key(Some(key)).send();
            classify(&Answer::of(r.await), &[])
        }
        "dynamodb:BatchGetItem" => {
            let keys = KeysAndAttributes::builder().keys(key).build();
            let r = match keys {
                Ok(keys) => db.batch_get_item().request_items(&name, keys).send().await,
                Err(e) => return built(action, name, e),
            };
            classify(&Answer::of(r), &[])
        }
        "dynamodb:Query" => {
            let r = db
                .query()
                .table_name(&name)
                .key_condition_expression("job_id = :id")
                .expression_attribute_values(":id", AttributeValue::S(SENTINEL_JOB_ID.into()))
                .limit(1)
                .send();
            classify(&Answer::of(r.await), &[])
        }
        "dynamodb:PutItem" => {
            let r = db.put_item().table_name(&name).set_item(Some(key));
            classify(
                &Answer::of(r.condition_expression(exists).send().await),
                FAILED,
            )
        }
        "dynamodb:UpdateItem" => {
            let r = db.update_item().table_name(&name).set_key(Some(key));
            let r = r
                .update_expression("SET probe = :v")
                .condition_expression(exists);
            let r = r.expression_attribute_values(":v", AttributeValue::Bool(true));
            classify(&Answer::of(r.send().await), FAILED)
        }
        "dynamodb:DeleteItem" => {
            let r = db.delete_item().table_name(&name).set_key(Some(key));
            classify(
                &Answer::of(r.condition_expression(exists).send().await),
                FAILED,
            )
        }
        "dynamodb:BatchWriteItem" | "dynamodb:ConditionCheckItem" => {
            return probe_dynamodb_batch(&db, action, name, key).await;
        }
        _ => return no_probe(action, name, Setting::TablePrefix),
    };
    Probe {
        action: action.to_string(),
        resource: name,
        setting: Some(Setting::TablePrefix),
        verdict,
    }
}

/// BatchWriteItem: deleting the sentinel key, which never exists, writes nothing.
/// ConditionCheckItem: a transaction of one condition check that fails.
async fn probe_dynamodb_batch(
    db: &aws_sdk_dynamodb::Client,
    action: &str,
    name: String,
    key: HashMap<String, AttributeValue>,
) -> Probe {
    let verdict = if action == "dynamodb:BatchWriteItem" {
        let delete = match DeleteRequest::builder().set_key(Some(key)).build() {
            Ok(d) => d,
            Err(e) => return built(action, name, e),
        };
        let request = WriteRequest::builder().delete_request(delete).build();
        let r = db.batch_write_item().request_items(&name, vec![request]);
        classify(&Answer::of(r.send().await), &[])
    } else {
        let check = ConditionCheck::builder()
            .table_name(&name)
            .set_key(Some(key))
            .condition_expression("attribute_exists(job_id)")
            .build();
        let check = match check {
            Ok(c) => TransactWriteItem::builder().condition_check(c).build(),
            Err(e) => return built(action, name, e),
        };
        let r = db.transact_write_items().transact_items(check).send().await;
        classify(&Answer::of(r), &["TransactionCanceledException"])
    };
    Probe {
        action: action.to_string(),
        resource: name,
        setting: Some(Setting::TablePrefix),
        verdict,
    }
}

fn built(action: &str, resource: String, e: impl std::fmt::Display) -> Probe {
    Probe {
        action: action.to_string(),
        resource,
        setting: Some(Setting::TablePrefix),
        verdict: Verdict::NotChecked(format!("not checked: the request could not be built: {e}")),
    }
}

async fn probe_queue_or_logs(ctx: &Ctx<'_>, action: &str) -> Probe {
    let (setting, verdict) = match action {
        "sqs:GetQueueAttributes" => {
            let Ok(url) = ctx.settings.require(Setting::QueueUrl) else {
                return unset(action, Setting::QueueUrl);
            };
            let sqs = aws_sdk_sqs::Client::new(ctx.config);
            let r = sqs.get_queue_attributes().queue_url(url).send().await;
            (Setting::QueueUrl, classify(&Answer::of(r), &[]))
        }
        "logs:FilterLogEvents" | "logs:DescribeLogGroups" => {
            let Ok(group) = ctx.settings.require(Setting::LogGroup) else {
                return unset(action, Setting::LogGroup);
            };
            let logs = aws_sdk_cloudwatchlogs::Client::new(ctx.config);
            let answer = if action == "logs:FilterLogEvents" {
                let r = logs.filter_log_events().log_group_name(group).limit(1);
                Answer::of(r.send().await)
            } else {
                let r = logs
                    .describe_log_groups()
                    .log_group_name_prefix(group)
                    .limit(1);
                Answer::of(r.send().await)
            };
            (Setting::LogGroup, classify(&answer, &[]))
        }
        _ => {
            let setting = if action.starts_with("sqs:") {
                Setting::QueueUrl
            } else {
                Setting::LogGroup
            };
            let resource = ctx.settings.require(setting).unwrap_or("*").to_string();
            return no_probe(action, resource, setting);
        }
    };
    Probe {
        action: action.to_string(),
        resource: ctx
            .settings
            .require(setting)
            .unwrap_or_default()
            .to_string(),
        setting: Some(setting),
        verdict,
    }
}

async fn probe_s3(ctx: &Ctx<'_>, action: &str) -> Probe {
    use futures::StreamExt;
    use object_store::ObjectStoreExt;
    let Ok(bucket) = ctx.settings.require(Setting::Bucket) else {
        return unset(action, Setting::Bucket);
    };
    let store = match super::s3::object_store(bucket, ctx.config) {
        Ok(store) => store,
        Err(e) => return no_probe(action, bucket.to_string(), Setting::Bucket).because(e),
    };
    let (resource, result) = match action {
        "s3:ListBucket" => (
            bucket.to_string(),
            store.list(None).next().await.transpose().map(|_| ()),
        ),
        "s3:GetObject" => {
            let key = object_store::path::Path::from(SENTINEL_NAME);
            (
                format!("{bucket}/{SENTINEL_NAME}"),
                store.get(&key).await.map(|_| ()),
            )
        }
        _ => return no_probe(action, bucket.to_string(), Setting::Bucket),
    };
    let verdict = s3_verdict(result);
    Probe {
        action: action.to_string(),
        resource,
        setting: Some(Setting::Bucket),
        verdict,
    }
}

/// What object_store's answer to a probe says. Its list errors are all `Generic`, with the
/// status and S3's error document in the text: a missing bucket says nothing of the permission.
pub fn s3_verdict(result: Result<(), object_store::Error>) -> Verdict {
    let Err(e) = result else {
        return Verdict::Allowed;
    };
    let text = e.to_string();
    if super::s3::no_such_bucket(&e) {
        return Verdict::NotChecked("not checked: the bucket does not exist".into());
    }
    match e {
        object_store::Error::NotFound { .. } => Verdict::Allowed,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Verdict::Missing(first_line(&text)),
        _ if text.contains("AccessDenied") || text.contains("403 Forbidden") => {
            Verdict::Missing(first_line(&text))
        }
        _ => Verdict::NotChecked(format!("the answer ({}) does not tell", first_line(&text))),
    }
}

impl Probe {
    fn because(mut self, e: impl std::fmt::Display) -> Probe {
        self.verdict = Verdict::NotChecked(format!("not checked: {e}"));
        self
    }
}

/// The first line of an error, at most 300 characters (object_store's errors run long).
pub fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied() -> Answer {
        Answer::Error {
            code: Some("AccessDeniedException".into()),
            message: "User: arn:aws:iam::1:user/op is not authorized to perform: \
                      states:StartExecution"
                .into(),
        }
    }

    #[test]
    fn answers_are_classified_and_a_missing_one_is_one_line_with_the_fix() {
        let proves = ["ExecutionDoesNotExist"];
        assert_eq!(classify(&Answer::Ok, &proves), Verdict::Allowed);
        let gone = Answer::Error {
            code: Some("ExecutionDoesNotExist".into()),
            message: "Execution Does Not Exist".into(),
        };
        assert_eq!(classify(&gone, &proves), Verdict::Allowed);
        let throttled = Answer::Error {
            code: Some("ThrottlingException".into()),
            message: "slow down".into(),
        };
        assert!(matches!(
            classify(&throttled, &proves),
            Verdict::NotChecked(_)
        ));
        let verdict = classify(&denied(), &proves);
        assert!(matches!(verdict, Verdict::Missing(_)), "{verdict:?}");
        let probe = Probe {
            action: "states:StartExecution".into(),
            resource: "arn:aws:states:eu-west-1:1:stateMachine:prod-backfill".into(),
            setting: Some(Setting::StateMachineArn),
            verdict,
        };
        let line = probe.line();
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with("missing  permission states:StartExecution on arn:"),
            "{line}"
        );
        for needle in [
            "AVESA_CLOUD_STATE_MACHINE_ARN",
            "--state-machine-arn",
            "AccessDeniedException",
            "attach the stack's OperatorPolicy",
            "grant states:StartExecution",
        ] {
            assert!(line.contains(needle), "{needle}: {line}");
        }
        let s3 = Answer::Error {
            code: Some("AccessDenied".into()),
            message: "Access Denied".into(),
        };
        assert!(matches!(classify(&s3, &[]), Verdict::Missing(_)));
    }

    #[test]
    fn s3_answers_are_classified() {
        let generic = |text: &str| object_store::Error::Generic {
            store: "S3",
            source: text.to_string().into(),
        };
        let denied = generic(
            "Error performing list request: Server returned non-2xx status code: 403 Forbidden: <Error><Code>AccessDenied</Code></Error>",
        );
        assert!(matches!(s3_verdict(Err(denied)), Verdict::Missing(_)));
        let gone = generic(
            "Server returned non-2xx status code: 404 Not Found: <?xml?>\n<Error><Code>NoSuchBucket</Code></Error>",
        );
        assert!(matches!(s3_verdict(Err(gone)), Verdict::NotChecked(_)));
        let key = object_store::Error::NotFound {
            path: SENTINEL_NAME.into(),
            source: "404 Not Found: <Code>NoSuchKey</Code>".into(),
        };
        assert_eq!(s3_verdict(Err(key)), Verdict::Allowed);
        assert_eq!(s3_verdict(Ok(())), Verdict::Allowed);
    }

    #[test]
    fn moto_s_code_less_refusal_of_the_input_reads_as_the_input_refused() {
        let moto = Answer::Error {
            code: Some("UnknownError".into()),
            message: "Expecting property name enclosed in double quotes: line 1 column 2".into(),
        };
        let answer = bad_input_answer(moto);
        assert_eq!(
            classify(&answer, &["InvalidExecutionInput"]),
            Verdict::Allowed
        );
        let other = Answer::Error {
            code: None,
            message: "connection refused".into(),
        };
        let answer = bad_input_answer(other);
        assert!(matches!(
            classify(&answer, &["InvalidExecutionInput"]),
            Verdict::NotChecked(_)
        ));
    }

    #[test]
    fn the_operator_policy_is_read_from_the_template() {
        // Only Allow statements with Action lists: what `granted` reads is the whole grant.
        let body = resource_text(TEMPLATE, OPERATOR_POLICY);
        assert!(
            !body.contains("NotAction") && !body.contains("Effect: Deny"),
            "{body}"
        );
        let actions = operator_actions();
        for a in [
            "states:StartExecution",
            "dynamodb:PutItem",
            "logs:FilterLogEvents",
        ] {
            assert!(actions.iter().any(|x| x == a), "{a}: {actions:?}");
        }
        assert!(matches("states:Describe*", "states:DescribeExecution"));
        assert!(!matches("s3:GetObject", "s3:GetObjectAcl"));
    }
}
