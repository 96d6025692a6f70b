//! `cloud up`, `cloud down` and `cloud status`: the deployment on the emulators (made by
//! `crate::cloud::deploy`), the CloudFormation commands for AWS, and a check of every resource
//! the settings name.

use std::path::Path;
use std::process::ExitCode;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use color_eyre::eyre::{Result, bail, eyre};
use futures::StreamExt;

use super::{CloudAction, CloudStatusArgs, DeployArgs};
use crate::cloud::deploy::{self, Emulators, Names};
use crate::cloud::{CloudSettings, Setting, aws_config};

pub async fn run(action: &CloudAction) -> Result<ExitCode> {
    match action {
        CloudAction::Up(args) if args.emulators => up_emulators(args).await,
        CloudAction::Up(args) => {
            print_aws_commands(&args.name);
            Ok(ExitCode::SUCCESS)
        }
        CloudAction::Down(args) if args.emulators => down_emulators(args).await,
        CloudAction::Down(args) => {
            outln!(
                "aws cloudformation delete-stack --stack-name {0} && \
                 aws cloudformation wait stack-delete-complete --stack-name {0}",
                args.name
            );
            eprintln!("the tables and the bucket are retained (DeletionPolicy: Retain)");
            Ok(ExitCode::SUCCESS)
        }
        CloudAction::Status(args) => status(args).await,
    }
}

/// The emulators' addresses: the flags (or `AVESA_TEST_*`), else `scripts/emulators`, started
/// when they are not running.
fn emulators(args: &DeployArgs) -> Result<Emulators> {
    if let (Some(moto), Some(dynamodb)) = (&args.moto_url, &args.dynamodb_url) {
        return Ok(Emulators {
            moto: moto.clone(),
            dynamodb: dynamodb.clone(),
        });
    }
    let script = Path::new("scripts/emulators");
    if !script.exists() {
        bail!(
            "--emulators: no --moto-url/--dynamodb-url (AVESA_TEST_MOTO_URL, AVESA_TEST_DYNAMODB_URL) \
             and no scripts/emulators in {}: run from the repository's root",
            std::env::current_dir().map_or_else(|_| ".".into(), |d| d.display().to_string())
        );
    }
    let running = std::process::Command::new(script)
        .arg("running")
        .status()
        .is_ok_and(|s| s.success());
    if !running {
        let start = std::process::Command::new(script)
            .arg("start")
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| eyre!("cannot run scripts/emulators start: {e}"))?;
        if !start.success() {
            bail!("scripts/emulators start failed ({start}); see its message above");
        }
    }
    let env = std::process::Command::new(script)
        .arg("env")
        .output()
        .map_err(|e| eyre!("cannot run scripts/emulators env: {e}"))?;
    let text = String::from_utf8_lossy(&env.stdout);
    let var = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .map(|v| v.trim().trim_matches('\'').to_string())
            .ok_or_else(|| eyre!("scripts/emulators env did not print {name}"))
    };
    Ok(Emulators {
        moto: var("AVESA_TEST_MOTO_URL")?,
        dynamodb: var("AVESA_TEST_DYNAMODB_URL")?,
    })
}

/// An SDK configuration for one emulator: its address, a region and dummy credentials.
pub async fn emulator_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("avesa", "avesa", None, None, "emulators"))
        .timeout_config(crate::cloud::timeout_config())
        .load()
        .await
}

/// The deployment the arguments name, on the emulators they lead to.
struct Target {
    names: Names,
    emulators: Emulators,
    aws: SdkConfig,
    dynamo: SdkConfig,
}

async fn target(args: &DeployArgs) -> Result<Target> {
    let names = Names::of(&args.name)?;
    let emulators = emulators(args)?;
    Ok(Target {
        names,
        aws: emulator_config(&emulators.moto).await,
        dynamo: emulator_config(&emulators.dynamodb).await,
        emulators,
    })
}

async fn up_emulators(args: &DeployArgs) -> Result<ExitCode> {
    let t = target(args).await?;
    let settings = deploy::up(&t.aws, &t.dynamo, &t.emulators, &t.names)
        .await
        .map_err(|e| eyre!("cloud up --emulators (moto {}): {e}", t.emulators.moto))?;
    for line in deploy::export_lines(&t.emulators, &settings) {
        outln!("{line}");
    }
    eprintln!(
        "deployment '{}' is up on the emulators; `eval` these lines to use it",
        args.name
    );
    Ok(ExitCode::SUCCESS)
}

async fn down_emulators(args: &DeployArgs) -> Result<ExitCode> {
    let t = target(args).await?;
    let removed = deploy::down(&t.aws, &t.dynamo, &t.emulators, &t.names)
        .await
        .map_err(|e| eyre!("cloud down --emulators: {e}"))?;
    eprintln!("deployment '{}' removed: {}", args.name, removed.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// The commands that deploy the template on AWS and turn its outputs into settings.
fn print_aws_commands(stack: &str) {
    outln!(
        "# The stack (IAM roles included: --capabilities CAPABILITY_IAM):\n\
         aws cloudformation deploy --template-file infrastructure/backfill.yaml \
         --stack-name {stack} --capabilities CAPABILITY_IAM \
         --parameter-overrides AlarmTopicArn=\"${{ALARM_TOPIC_ARN:-}}\"\n\
         # Its outputs as the settings the other commands read:\n\
         eval \"$(aws cloudformation describe-stacks --stack-name {stack} \
         --query 'Stacks[0].Outputs[?starts_with(Description, `AVESA_`)].[Description, OutputValue]' \
         --output text | awk '{{print \"export \" $1 \"=\" $2}}')\"\n\
         # Then check it:\n\
         avesa-console cloud status"
    );
}

/// One resource checked: its description, the setting that names it, and what went wrong.
struct Check {
    what: String,
    setting: Setting,
    problem: Option<String>,
}

async fn status(args: &CloudStatusArgs) -> Result<ExitCode> {
    let settings = args.settings.settings();
    let config = aws_config().await;
    let checks = check_all(&config, &settings).await;
    let mut missing = 0;
    for c in &checks {
        let (_, flag, env) = c.setting.describe();
        match &c.problem {
            None => outln!("ok       {}", c.what),
            Some(p) => {
                missing += 1;
                outln!(
                    "missing  {}: {p} (set {flag} or {env}; on the emulators `avesa-console cloud up --emulators` creates it)",
                    c.what
                );
            }
        }
    }
    if missing > 0 {
        eprintln!(
            "{missing} of {} resources missing or not allowed",
            checks.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The service's code and message of a failed call, or why it could not be made.
fn short<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: &aws_sdk_sqs::error::SdkError<E, R>,
) -> String {
    match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => crate::cloud::CloudError::aws("call", e).to_string(),
    }
}

impl Check {
    fn of(what: String, setting: Setting, problem: Option<String>) -> Check {
        Check {
            what,
            setting,
            problem,
        }
    }

    /// The setting is not given: the resource cannot be looked for.
    fn unset(setting: Setting) -> Check {
        Check::of(
            setting.describe().0.to_string(),
            setting,
            Some("not set".into()),
        )
    }
}

async fn check_all(config: &SdkConfig, s: &CloudSettings) -> Vec<Check> {
    let sfn = aws_sdk_sfn::Client::new(config);
    let machine = match s.require(Setting::StateMachineArn) {
        Err(_) => Check::unset(Setting::StateMachineArn),
        Ok(arn) => {
            let r = sfn.describe_state_machine().state_machine_arn(arn).send();
            let problem = r.await.err().map(|e| short(&e));
            Check::of(
                format!("state machine {arn}"),
                Setting::StateMachineArn,
                problem,
            )
        }
    };
    let sqs = aws_sdk_sqs::Client::new(config);
    let queue = match s.require(Setting::QueueUrl) {
        Err(_) => Check::unset(Setting::QueueUrl),
        Ok(url) => {
            let r = sqs.get_queue_attributes().queue_url(url).send();
            let problem = r.await.err().map(|e| short(&e));
            Check::of(format!("queue {url}"), Setting::QueueUrl, problem)
        }
    };
    let mut out = vec![machine, queue, check_log_group(config, s).await];
    out.extend(check_tables(config, s).await);
    out.push(check_bucket(config, s).await);
    out
}

async fn check_log_group(config: &SdkConfig, s: &CloudSettings) -> Check {
    let Ok(group) = s.require(Setting::LogGroup) else {
        return Check::unset(Setting::LogGroup);
    };
    let logs = aws_sdk_cloudwatchlogs::Client::new(config);
    let r = logs
        .describe_log_groups()
        .log_group_name_prefix(group)
        .send()
        .await;
    let problem = match r {
        Err(e) => Some(short(&e)),
        Ok(o)
            if o.log_groups()
                .iter()
                .any(|g| g.log_group_name() == Some(group)) =>
        {
            None
        }
        Ok(_) => Some("no such log group".into()),
    };
    Check::of(format!("log group {group}"), Setting::LogGroup, problem)
}

async fn check_tables(config: &SdkConfig, s: &CloudSettings) -> Vec<Check> {
    let Ok(prefix) = s.require(Setting::TablePrefix) else {
        return vec![Check::unset(Setting::TablePrefix)];
    };
    let dynamo = aws_sdk_dynamodb::Client::new(config);
    let mut out = Vec::new();
    for table in [format!("{prefix}_jobs"), format!("{prefix}_chunks")] {
        let r = dynamo.describe_table().table_name(&table).send().await;
        let problem = r.err().map(|e| short(&e));
        out.push(Check::of(
            format!("DynamoDB table {table}"),
            Setting::TablePrefix,
            problem,
        ));
    }
    out
}

async fn check_bucket(config: &SdkConfig, s: &CloudSettings) -> Check {
    let Ok(bucket) = s.require(Setting::Bucket) else {
        return Check::unset(Setting::Bucket);
    };
    let problem = match crate::cloud::s3::object_store(bucket, config) {
        Err(e) => Some(e.to_string()),
        Ok(store) => match store.list(None).next().await {
            Some(Err(e)) => Some(first_line(&e.to_string())),
            _ => None,
        },
    };
    Check::of(format!("S3 bucket {bucket}"), Setting::Bucket, problem)
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(300).collect()
}
