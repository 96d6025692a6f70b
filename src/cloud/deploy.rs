//! `cloud up / down / status` on the emulators: the resources of `infrastructure/backfill.yaml`
//! that moto and DynamoDB Local support, made with the SDK calls the stack would make, under
//! one deployment name, idempotently: the worker queue and its dead-letter queue (redrive after
//! five receives), the data bucket, the workers' and the state machine's log groups, the state
//! machine (the definition of `infrastructure/backfill.asl.json`, compiled in, with the queue
//! URL substituted as the template's `DefinitionSubstitutions` do) and the DynamoDB tables.
//! IAM roles, alarms and the dashboard exist only on AWS (the emulators enforce no permission
//! and this crate has no CloudWatch client); on AWS the template is deployed with
//! CloudFormation (README, "Cloud").
//!
//! The test harness deploys through the same function, so the laptop setup and the tests'
//! deployments cannot drift apart.

use aws_config::SdkConfig;
use aws_sdk_cloudwatchlogs::operation::create_log_group::CreateLogGroupError;
use aws_sdk_sqs::types::QueueAttributeName;

use super::{CloudError, CloudSettings, Setting};
use crate::store::{DynamoOptions, DynamoStore};

/// The state machine definition the stack deploys.
pub const ASL: &str = include_str!("../../infrastructure/backfill.asl.json");

/// The role ARN given to the emulated state machine (moto checks its shape only).
const EMULATED_ROLE: &str = "arn:aws:iam::123456789012:role/avesa-backfill";

/// Every name of one deployment, derived from its name as the template derives them from
/// the stack name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub queue: String,
    pub dead_letter_queue: String,
    pub bucket: String,
    pub log_group: String,
    pub state_machine_log_group: String,
    pub state_machine: String,
    pub table_prefix: String,
}

impl Names {
    /// The names of deployment `name` (letters, digits and `-`, 3 to 40 characters).
    pub fn of(name: &str) -> Result<Names, CloudError> {
        if !valid_name(name) {
            return Err(CloudError::Invalid(format!(
                "--name '{name}': use 3 to 40 lowercase letters, digits and inner '-' (it names the bucket)"
            )));
        }
        Ok(Names {
            queue: format!("{name}-work"),
            dead_letter_queue: format!("{name}-dlq"),
            bucket: format!("{name}-data"),
            log_group: format!("/avesa/{name}/workers"),
            state_machine_log_group: format!("/aws/vendedlogs/states/{name}-backfill"),
            state_machine: format!("{name}-backfill"),
            table_prefix: name.replace('-', "_"),
        })
    }
}

/// Whether `name` can name a deployment: 3 to 40 lowercase letters, digits and inner `-`
/// (it names the bucket, and the settings file).
pub fn valid_name(name: &str) -> bool {
    (3..=40).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Where the emulators answer.
#[derive(Clone, Debug)]
pub struct Emulators {
    pub moto: String,
    pub dynamodb: String,
}

/// Creates what is missing of deployment `names` on the emulators; answers its settings.
/// `aws` reaches moto, `dynamo` DynamoDB Local.
pub async fn up(
    aws: &SdkConfig,
    dynamo: &SdkConfig,
    emulators: &Emulators,
    names: &Names,
) -> Result<CloudSettings, CloudError> {
    let queue_url = queues(&aws_sdk_sqs::Client::new(aws), names).await?;
    bucket(&emulators.moto, &names.bucket).await?;
    let logs = aws_sdk_cloudwatchlogs::Client::new(aws);
    log_group(&logs, &names.log_group).await?;
    log_group(&logs, &names.state_machine_log_group).await?;
    let arn = state_machine(&aws_sdk_sfn::Client::new(aws), names, &queue_url).await?;
    store(dynamo, names).ensure_tables().await?;
    Ok(CloudSettings {
        state_machine_arn: Some(arn),
        queue_url: Some(queue_url),
        bucket: Some(names.bucket.clone()),
        table_prefix: Some(names.table_prefix.clone()),
        log_group: Some(names.log_group.clone()),
    })
}

fn store(dynamo: &SdkConfig, names: &Names) -> DynamoStore {
    DynamoStore::new(
        aws_sdk_dynamodb::Client::new(dynamo),
        DynamoOptions {
            table_prefix: names.table_prefix.clone(),
            ..DynamoOptions::default()
        },
    )
}

/// The dead-letter queue, then the worker queue redriving to it; the worker queue's URL.
async fn queues(sqs: &aws_sdk_sqs::Client, names: &Names) -> Result<String, CloudError> {
    let dlq = sqs
        .create_queue()
        .queue_name(&names.dead_letter_queue)
        .send()
        .await
        .map_err(|e| CloudError::aws("CreateQueue", e))?;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(dlq.queue_url().unwrap_or_default())
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| CloudError::aws("GetQueueAttributes", e))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| CloudError::Invalid("the dead-letter queue has no ARN".into()))?;
    let queue = sqs
        .create_queue()
        .queue_name(&names.queue)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"5"}}"#),
        )
        .send()
        .await
        .map_err(|e| CloudError::aws("CreateQueue", e))?;
    Ok(queue.queue_url().unwrap_or_default().to_string())
}

/// moto takes an unsigned PUT (no S3 SDK needed); an existing bucket of ours is fine.
async fn bucket(moto: &str, bucket: &str) -> Result<(), CloudError> {
    let url = format!("{}/{bucket}", moto.trim_end_matches('/'));
    let put = reqwest::Client::new()
        .put(&url)
        .send()
        .await
        .map_err(|e| CloudError::aws("CreateBucket", e))?;
    let status = put.status();
    let body = put.text().await.unwrap_or_default();
    if status.is_success() || body.contains("BucketAlreadyOwnedByYou") {
        return Ok(());
    }
    Err(CloudError::Aws {
        operation: "CreateBucket",
        detail: format!("bucket {bucket}: {status} {body}"),
    })
}

async fn log_group(logs: &aws_sdk_cloudwatchlogs::Client, group: &str) -> Result<(), CloudError> {
    match logs.create_log_group().log_group_name(group).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(CreateLogGroupError::is_resource_already_exists_exception) =>
        {
            Ok(())
        }
        Err(e) => Err(CloudError::aws("CreateLogGroup", e)),
    }
}

/// The state machine of this name, created or brought up to the current definition.
async fn state_machine(
    sfn: &aws_sdk_sfn::Client,
    names: &Names,
    queue_url: &str,
) -> Result<String, CloudError> {
    let definition = ASL.replace("${WorkerQueueUrl}", queue_url);
    if let Some(arn) = find_state_machine(sfn, &names.state_machine).await? {
        sfn.update_state_machine()
            .state_machine_arn(&arn)
            .definition(definition)
            .send()
            .await
            .map_err(|e| CloudError::aws("UpdateStateMachine", e))?;
        return Ok(arn);
    }
    let created = sfn
        .create_state_machine()
        .name(&names.state_machine)
        .definition(definition)
        .role_arn(EMULATED_ROLE)
        .send()
        .await
        .map_err(|e| CloudError::aws("CreateStateMachine", e))?;
    Ok(created.state_machine_arn().to_string())
}

async fn find_state_machine(
    sfn: &aws_sdk_sfn::Client,
    name: &str,
) -> Result<Option<String>, CloudError> {
    let mut token = None;
    loop {
        let page = sfn
            .list_state_machines()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| CloudError::aws("ListStateMachines", e))?;
        if let Some(m) = page.state_machines().iter().find(|m| m.name() == name) {
            return Ok(Some(m.state_machine_arn().to_string()));
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(None);
        }
    }
}

/// Removes deployment `names` from the emulators, objects and items included; answers what
/// was removed (what did not exist is skipped).
pub async fn down(
    aws: &SdkConfig,
    dynamo: &SdkConfig,
    emulators: &Emulators,
    names: &Names,
) -> Result<Vec<String>, CloudError> {
    let mut removed = Vec::new();
    let sfn = aws_sdk_sfn::Client::new(aws);
    if let Some(arn) = find_state_machine(&sfn, &names.state_machine).await? {
        sfn.delete_state_machine()
            .state_machine_arn(&arn)
            .send()
            .await
            .map_err(|e| CloudError::aws("DeleteStateMachine", e))?;
        removed.push(names.state_machine.clone());
    }
    let sqs = aws_sdk_sqs::Client::new(aws);
    for queue in [&names.queue, &names.dead_letter_queue] {
        if let Ok(found) = sqs.get_queue_url().queue_name(queue).send().await {
            sqs.delete_queue()
                .queue_url(found.queue_url().unwrap_or_default())
                .send()
                .await
                .map_err(|e| CloudError::aws("DeleteQueue", e))?;
            removed.push(queue.clone());
        }
    }
    let logs = aws_sdk_cloudwatchlogs::Client::new(aws);
    for group in [&names.log_group, &names.state_machine_log_group] {
        if logs
            .delete_log_group()
            .log_group_name(group)
            .send()
            .await
            .is_ok()
        {
            removed.push(group.clone());
        }
    }
    let tables = aws_sdk_dynamodb::Client::new(dynamo);
    for table in ["jobs", "chunks"].map(|t| format!("{}_{t}", names.table_prefix)) {
        if tables
            .delete_table()
            .table_name(&table)
            .send()
            .await
            .is_ok()
        {
            removed.push(table);
        }
    }
    if remove_bucket(aws, &emulators.moto, &names.bucket).await? {
        removed.push(names.bucket.clone());
    }
    Ok(removed)
}

/// Empties the bucket and deletes it; false when there was none.
async fn remove_bucket(aws: &SdkConfig, moto: &str, bucket: &str) -> Result<bool, CloudError> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let store = super::s3::object_store(bucket, aws)?;
    let keys: Vec<_> = match store.list(None).map_ok(|m| m.location).try_collect().await {
        Ok(keys) => keys,
        Err(object_store::Error::NotFound { .. }) => return Ok(false),
        Err(e) => {
            return Err(CloudError::Aws {
                operation: "ListObjects",
                detail: e.to_string(),
            });
        }
    };
    for key in keys {
        store.delete(&key).await.map_err(|e| CloudError::Aws {
            operation: "DeleteObject",
            detail: e.to_string(),
        })?;
    }
    let url = format!("{}/{bucket}", moto.trim_end_matches('/'));
    let r = reqwest::Client::new()
        .delete(&url)
        .send()
        .await
        .map_err(|e| CloudError::aws("DeleteBucket", e))?;
    Ok(r.status().is_success())
}

/// Fails with one line naming the table, the setting and the fix when a job table of
/// `prefix` does not exist (instead of the SDK's whole answer at the first item call). Any
/// other answer (no permission to describe tables, say) is left to the calls that follow.
pub async fn require_tables(dynamo: &SdkConfig, prefix: &str) -> Result<(), CloudError> {
    let client = aws_sdk_dynamodb::Client::new(dynamo);
    for table in [format!("{prefix}_jobs"), format!("{prefix}_chunks")] {
        let r = client.describe_table().table_name(&table).send().await;
        if let Err(e) = r
            && e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception())
        {
            let what = format!("DynamoDB table {table}");
            return Err(does_not_exist(&what, Setting::TablePrefix, prefix));
        }
    }
    Ok(())
}

/// One line: the resource, the setting that named it (and its value), and the fix.
fn does_not_exist(what: &str, setting: Setting, value: &str) -> CloudError {
    let (desc, flag, env) = setting.describe();
    CloudError::Invalid(format!(
        "{what} does not exist ({desc} '{value}' from {flag}, {env} or the deployment's settings \
         file): deploy infrastructure/backfill.yaml, or `avesa-console cloud up --emulators` on \
         the emulators; `avesa-console cloud status` checks every resource"
    ))
}

/// Fails with one line naming the resource, the setting and the fix when the state machine,
/// queue or bucket of `needs` does not exist (the tables: `require_tables`). Any other answer
/// (no permission to look, say) is left to the calls that follow.
pub async fn require_resources(
    config: &SdkConfig,
    settings: &CloudSettings,
    needs: &[Setting],
) -> Result<(), CloudError> {
    for &setting in needs {
        let Ok(value) = settings.require(setting) else {
            continue;
        };
        let gone = match setting {
            Setting::StateMachineArn => {
                let sfn = aws_sdk_sfn::Client::new(config);
                let r = sfn.describe_state_machine().state_machine_arn(value).send();
                r.await.err().is_some_and(|e| {
                    e.as_service_error()
                        .is_some_and(|e| e.is_state_machine_does_not_exist())
                })
            }
            Setting::QueueUrl => {
                let sqs = aws_sdk_sqs::Client::new(config);
                let r = sqs.get_queue_attributes().queue_url(value).send().await;
                r.err().is_some_and(|e| {
                    use aws_sdk_sqs::error::ProvideErrorMetadata;
                    e.as_service_error()
                        .is_some_and(|e| e.is_queue_does_not_exist())
                        || e.code().is_some_and(|c| c.contains("NonExistentQueue"))
                })
            }
            Setting::Bucket => bucket_is_missing(config, value).await,
            Setting::TablePrefix | Setting::LogGroup => false,
        };
        if gone {
            let what = match setting {
                Setting::StateMachineArn => format!("Step Functions state machine {value}"),
                Setting::QueueUrl => format!("SQS queue {value}"),
                _ => format!("S3 bucket {value}"),
            };
            return Err(does_not_exist(&what, setting, value));
        }
    }
    Ok(())
}

async fn bucket_is_missing(config: &SdkConfig, bucket: &str) -> bool {
    use futures::StreamExt;
    let Ok(store) = super::s3::object_store(bucket, config) else {
        return false;
    };
    matches!(store.list(None).next().await, Some(Err(e)) if super::s3::no_such_bucket(&e))
}

/// The `export` lines a shell needs to use deployment `settings` on the emulators: the
/// endpoints, a region and the emulators' dummy credentials, and the deployment's settings.
pub fn export_lines(emulators: &Emulators, settings: &CloudSettings) -> Vec<String> {
    let mut vars = vec![
        ("AWS_ENDPOINT_URL", emulators.moto.clone()),
        ("AWS_ENDPOINT_URL_DYNAMODB", emulators.dynamodb.clone()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "avesa".into()),
        ("AWS_SECRET_ACCESS_KEY", "avesa".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ];
    for setting in Setting::ALL {
        if let Ok(v) = settings.require(setting) {
            vars.push((setting.describe().2, v.to_string()));
        }
    }
    vars.into_iter()
        .map(|(k, v)| format!("export {k}='{}'", v.replace('\'', r"'\''")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_template_and_refuse_what_a_bucket_cannot_be() {
        let n = Names::of("avesa-dev").unwrap();
        assert_eq!(n.bucket, "avesa-dev-data");
        assert_eq!(n.log_group, "/avesa/avesa-dev/workers");
        assert_eq!(n.table_prefix, "avesa_dev");
        let e = Names::of("Avesa_Dev").unwrap_err().to_string();
        assert!(e.contains("--name 'Avesa_Dev'"), "{e}");
        assert!(Names::of("ab").is_err());
    }

    #[test]
    fn the_definition_has_the_placeholder_the_deployment_fills() {
        assert!(ASL.contains("${WorkerQueueUrl}"));
    }
}
