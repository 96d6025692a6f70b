//! What only the DynamoDB backend has: reaching it through the AWS default configuration
//! chain as production does, table creation, and recovery from a creator that died.

use std::panic::AssertUnwindSafe;
use std::process::Command;

use avesa_console::domain::{ChunkStatus, JobStatus};
use avesa_console::store::{Claim, CreateOutcome, DynamoOptions, DynamoStore, JobStore};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use chrono::{DateTime, Duration, Utc};
use futures::FutureExt;

use super::backends::{dynamodb_config, dynamodb_url, unique_prefix};
use super::{job, t0};

const CHILD: &str = "dynamodb_only::child_connects_through_the_default_chain";

/// Production builds the store from `cloud::aws_config()`, so `AWS_ENDPOINT_URL_DYNAMODB` and
/// dummy credentials in the environment must be enough to reach DynamoDB Local. The
/// environment is process-wide, so the check runs in a child process of this test binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_and_credentials_come_from_the_environment() {
    let Some(url) = dynamodb_url() else { return };
    let prefix = unique_prefix();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD, "--ignored", "--test-threads", "1"])
        .env("AVESA_CHILD_TABLE_PREFIX", &prefix)
        .env("AWS_ENDPOINT_URL_DYNAMODB", &url)
        .env("AWS_ACCESS_KEY_ID", "avesa")
        .env("AWS_SECRET_ACCESS_KEY", "avesa")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The child's job is in DynamoDB Local under the same credentials and region.
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(dynamodb_config(&url)),
        DynamoOptions {
            table_prefix: prefix,
            ..Default::default()
        },
    );
    let (j, _) = job(&["tickets"], 3);
    let found = store.get_job(&j.job_id).await;
    store.delete_tables().await.unwrap();
    assert_eq!(found.unwrap().map(|j| j.total_chunks), Some(3));
}

#[tokio::test]
#[ignore = "runs in a child process of endpoint_and_credentials_come_from_the_environment"]
async fn child_connects_through_the_default_chain() {
    let prefix = std::env::var("AVESA_CHILD_TABLE_PREFIX").expect("run by the parent test");
    let config = avesa_console::cloud::aws_config().await;
    let store = DynamoStore::from_config(
        &config,
        DynamoOptions {
            table_prefix: prefix,
            ..Default::default()
        },
    );
    store.ensure_tables().await.unwrap();
    let (j, c) = job(&["tickets"], 3);
    store.create_job(j, c, true).await.unwrap();
}

fn store_at(url: &str) -> DynamoStore {
    DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(dynamodb_config(url)),
        DynamoOptions {
            table_prefix: unique_prefix(),
            ..Default::default()
        },
    )
}

/// Marks a job as still being created, with a creation lease ending at `until`: what a
/// creator that died between writing the job and finishing its chunks leaves behind.
async fn pretend_creation_unfinished(store: &DynamoStore, job_id: &str, until: DateTime<Utc>) {
    let client = aws_sdk_dynamodb::Client::from_conf(dynamodb_config(&dynamodb_url().unwrap()));
    client
        .update_item()
        .table_name(store.table_names().0)
        .key("job_id", AttributeValue::S(job_id.into()))
        .update_expression("SET creating_until = :u")
        .expression_attribute_values(
            ":u",
            AttributeValue::S(until.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
        )
        .send()
        .await
        .unwrap();
}

/// A job whose creator is still within its creation lease is waited for; one whose creator
/// stopped renewing is abandoned (cancelled, range released) and the plan can run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_creation_is_waited_for_then_abandoned() {
    let Some(url) = dynamodb_url() else { return };
    let store = store_at(&url);
    store.ensure_tables().await.unwrap();
    let outcome = async {
        let (j, c) = job(&["tickets", "companies"], 4);
        store.create_job(j.clone(), c.clone(), true).await.unwrap();

        pretend_creation_unfinished(&store, &j.job_id, Utc::now() + Duration::seconds(60)).await;
        let now = t0();
        let lease = now + Duration::seconds(60);
        assert_eq!(
            store
                .claim_next_chunk(&j.job_id, "a", lease, now)
                .await
                .unwrap(),
            Claim::Wait { until: None },
            "chunks may still be arriving"
        );
        let again = store.create_job(j.clone(), c.clone(), true).await.unwrap();
        assert!(matches!(again, CreateOutcome::Existing(ref e) if e.job_id == j.job_id));

        pretend_creation_unfinished(&store, &j.job_id, Utc::now() - Duration::seconds(1)).await;
        assert_eq!(
            store
                .claim_next_chunk(&j.job_id, "a", lease, now)
                .await
                .unwrap(),
            Claim::Done(JobStatus::Cancelled)
        );
        let chunks = store.chunks(&j.job_id).await.unwrap();
        assert!(chunks.iter().all(|c| c.status == ChunkStatus::Cancelled));
        let next = store.create_job(j.clone(), c, true).await.unwrap();
        assert!(
            matches!(next, CreateOutcome::Created(ref n) if n.job_id == format!("{}_r2", j.job_id)),
            "{next:?}"
        );
    };
    let outcome = AssertUnwindSafe(outcome).catch_unwind().await;
    store.delete_tables().await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// `ensure_tables` twice is fine; a same-named table made by something else is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_tables_is_idempotent_and_refuses_foreign_tables() {
    let Some(url) = dynamodb_url() else { return };
    let store = store_at(&url);
    store.ensure_tables().await.unwrap();
    let twice = store.ensure_tables().await;
    store.delete_tables().await.unwrap();
    twice.unwrap();

    let client = aws_sdk_dynamodb::Client::from_conf(dynamodb_config(&url));
    let (jobs, _) = store.table_names();
    client
        .create_table()
        .table_name(jobs)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("job_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("job_id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let refused = store.ensure_tables().await;
    store.delete_tables().await.unwrap();
    let err = refused.unwrap_err().to_string();
    assert!(err.contains("by_tenant_status"), "{err}");
}
