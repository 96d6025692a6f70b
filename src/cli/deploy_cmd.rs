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

use super::{CloudAction, CloudStatusArgs, DeployArgs, UsageError};
use crate::cloud::deploy::{self, Emulators, Names};
use crate::cloud::permissions::{self, Verdict};
use crate::cloud::settings_file::{self, DeploymentSettings};
use crate::cloud::{CloudSettings, Setting, aws_config};
use crate::workspace::Workspace;

pub async fn run(ws: &Workspace, action: &CloudAction) -> Result<ExitCode> {
    match action {
        CloudAction::Up(args) if args.emulators => up_emulators(ws, args).await,
        CloudAction::Up(args) => match &args.stack_outputs {
            Some(file) => up_from_outputs(ws, &args.name, file),
            None => {
                print_aws_commands(&args.name);
                Ok(ExitCode::SUCCESS)
            }
        },
        CloudAction::Down(args) if args.stack_outputs.is_some() => {
            Err(UsageError("cloud down: --stack-outputs is for `cloud up`".into()).into())
        }
        CloudAction::Down(args) if args.emulators => down_emulators(ws, args).await,
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

/// The deployment's name, checked before anything is written under it.
fn deployment_name(name: &str) -> Result<()> {
    if deploy::valid_name(name) {
        return Ok(());
    }
    Err(UsageError(format!(
        "--name '{name}' (or AVESA_DEPLOYMENT): use 3 to 40 lowercase letters, digits and inner '-'"
    ))
    .into())
}

/// `cloud up --stack-outputs FILE`: the deployed stack's outputs into the settings file.
fn up_from_outputs(ws: &Workspace, name: &str, file: &Path) -> Result<ExitCode> {
    deployment_name(name)?;
    let (origin, text) = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| UsageError(format!("--stack-outputs -: cannot read stdin: {e}")))?;
        ("--stack-outputs - (stdin)".to_string(), text)
    } else {
        let text = std::fs::read_to_string(file).map_err(|e| {
            UsageError(format!(
                "--stack-outputs {}: cannot read: {e}",
                file.display()
            ))
        })?;
        (format!("--stack-outputs {}", file.display()), text)
    };
    let stored = DeploymentSettings::from_stack_outputs(name, &origin, &text)
        .map_err(|e| UsageError(e.to_string()))?;
    let path = settings_file::path(&ws.root, name);
    stored.write(&path)?;
    outln!("{}", path.display());
    eprintln!(
        "deployment '{name}': its settings are in {} (flags and AVESA_CLOUD_* variables \
         override them); `avesa-console cloud status` checks every resource and permission",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
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

async fn up_emulators(ws: &Workspace, args: &DeployArgs) -> Result<ExitCode> {
    let t = target(args).await?;
    let settings = deploy::up(&t.aws, &t.dynamo, &t.emulators, &t.names)
        .await
        .map_err(|e| eyre!("cloud up --emulators (moto {}): {e}", t.emulators.moto))?;
    let path = settings_file::path(&ws.root, &args.name);
    DeploymentSettings::from_settings(&args.name, "emulators", &settings).write(&path)?;
    for line in deploy::export_lines(&t.emulators, &settings) {
        outln!("{line}");
    }
    eprintln!(
        "deployment '{}' is up on the emulators, its settings in {}; `eval` these lines for \
         the emulators' endpoints and credentials",
        args.name,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn down_emulators(ws: &Workspace, args: &DeployArgs) -> Result<ExitCode> {
    let t = target(args).await?;
    let mut removed = deploy::down(&t.aws, &t.dynamo, &t.emulators, &t.names)
        .await
        .map_err(|e| eyre!("cloud down --emulators: {e}"))?;
    let path = settings_file::path(&ws.root, &args.name);
    if std::fs::remove_file(&path).is_ok() {
        removed.push(path.display().to_string());
    }
    eprintln!("deployment '{}' removed: {}", args.name, removed.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// The commands that deploy the template on AWS and record its outputs as the settings.
fn print_aws_commands(stack: &str) {
    outln!(
        "# The stack (IAM roles included: --capabilities CAPABILITY_IAM):\n\
         aws cloudformation deploy --template-file infrastructure/backfill.yaml \
         --stack-name {stack} --capabilities CAPABILITY_IAM \
         --parameter-overrides AlarmTopicArn=\"${{ALARM_TOPIC_ARN:-}}\"\n\
         # Its outputs into the deployment's settings file, which the other commands read:\n\
         aws cloudformation describe-stacks --stack-name {stack} --query 'Stacks[0].Outputs' \
         | avesa-console cloud up --name {stack} --stack-outputs -\n\
         # Then check every resource and permission:\n\
         avesa-console cloud status --deployment {stack}"
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
    print_origins(&args.settings);
    let mut missing = 0;
    if let Some(line) = region_mismatch(&config, &args.settings) {
        missing += 1;
        outln!("{line}");
    }
    let checks = check_all(&config, &settings).await;
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
    let actions = permissions::operator_actions();
    let probes = permissions::probe_all(&config, &settings, &actions).await;
    for p in &probes {
        outln!("{}", p.line());
    }
    let denied = probes
        .iter()
        .filter(|p| matches!(p.verdict, Verdict::Missing(_)))
        .count();
    if missing + denied > 0 {
        eprintln!(
            "{missing} of {} resources missing or not allowed, {denied} of {} permissions missing",
            checks.len(),
            probes.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Each setting's value and where it came from: flag, variable or settings file.
fn print_origins(args: &super::CloudSettingArgs) {
    let settings = args.settings();
    for setting in Setting::ALL {
        let (_, flag, _) = setting.describe();
        let value = settings.require(setting).unwrap_or("-");
        outln!("setting  {flag} = {value} ({})", args.origin(setting));
    }
}

/// A deployment in another region than the one the AWS configuration gives: one line.
fn region_mismatch(config: &SdkConfig, args: &super::CloudSettingArgs) -> Option<String> {
    let want = args.region.as_deref()?;
    let have = config.region().map(|r| r.as_ref().to_string());
    if have.as_deref() == Some(want) {
        return None;
    }
    let file = args
        .file
        .as_ref()
        .map_or_else(String::new, |(f, _)| f.display().to_string());
    Some(format!(
        "missing  region: the deployment is in {want} (settings file {file}) but the AWS \
         configuration's region is {}: set AWS_REGION={want}",
        have.as_deref().unwrap_or("not set")
    ))
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
            Some(Err(e)) => Some(permissions::first_line(&e.to_string())),
            _ => None,
        },
    };
    Check::of(format!("S3 bucket {bucket}"), Setting::Bucket, problem)
}
