//! Table creation and removal: on-demand tables with the keys and indexes the store queries.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::BuildError;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::delete_table::DeleteTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus,
};

use super::DynamoStore;
use super::codec::{BY_CREATED, BY_TENANT, JOB_ID, LIST_PK, SK};
use super::io::backend;
use crate::store::StoreError;

/// Creating a table with indexes on AWS takes seconds to a few minutes.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(600);

fn built(e: BuildError) -> StoreError {
    StoreError::Backend(format!("DynamoDB request: {e}"))
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(built)
}

fn text_attr(name: &str) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(built)
}

/// Both indexes copy whole job items: job items change rarely (status changes and a counter
/// refresh every few chunks), so the copies are cheap and listing needs no second read.
fn index(name: &str, hash: &str, range: &str) -> Result<GlobalSecondaryIndex, StoreError> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash)?)
        .key_schema(key(range, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(built)
}

impl DynamoStore {
    /// Creates the jobs and chunks tables (on-demand capacity) unless they exist, and waits
    /// until both and their indexes are ACTIVE. Safe to call every time the store is opened.
    pub async fn ensure_tables(&self) -> Result<(), StoreError> {
        let jobs = self
            .client
            .create_table()
            .table_name(&self.jobs)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(text_attr(JOB_ID)?)
            .attribute_definitions(text_attr("tenant_id")?)
            .attribute_definitions(text_attr("status")?)
            .attribute_definitions(text_attr(LIST_PK)?)
            .attribute_definitions(text_attr("created_at")?)
            .key_schema(key(JOB_ID, KeyType::Hash)?)
            .global_secondary_indexes(index(BY_TENANT, "tenant_id", "status")?)
            .global_secondary_indexes(index(BY_CREATED, LIST_PK, "created_at")?);
        let chunks = self
            .client
            .create_table()
            .table_name(&self.chunks)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(text_attr(JOB_ID)?)
            .attribute_definitions(text_attr(SK)?)
            .key_schema(key(JOB_ID, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?);
        for (name, request) in [(&self.jobs, jobs), (&self.chunks, chunks)] {
            match request.send().await {
                Ok(_) => tracing::info!(table = %name, "created DynamoDB table"),
                Err(e)
                    if matches!(
                        e.as_service_error(),
                        Some(CreateTableError::ResourceInUseException(_))
                    ) => {}
                Err(e) => return Err(backend(&format!("CreateTable {name}"), e)),
            }
        }
        self.wait_active(&self.jobs, &[BY_TENANT, BY_CREATED])
            .await?;
        self.wait_active(&self.chunks, &[]).await
    }

    async fn wait_active(&self, table: &str, indexes: &[&str]) -> Result<(), StoreError> {
        let started = Instant::now();
        loop {
            let out = self
                .client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| backend(&format!("DescribeTable {table}"), e))?;
            let desc = out.table.ok_or_else(|| {
                StoreError::Backend(format!("DescribeTable {table}: no description returned"))
            })?;
            let mut ready = desc.table_status() == Some(&TableStatus::Active);
            for name in indexes {
                // A table of the same name made by something else would be queried wrongly.
                let Some(gsi) = desc
                    .global_secondary_indexes()
                    .iter()
                    .find(|g| g.index_name() == Some(name))
                else {
                    return Err(StoreError::Backend(format!(
                        "DynamoDB table {table} exists without the index {name}: it was not made by this store; choose another table prefix"
                    )));
                };
                ready &= gsi.index_status() == Some(&IndexStatus::Active);
            }
            if ready {
                return Ok(());
            }
            if started.elapsed() > ACTIVE_TIMEOUT {
                return Err(StoreError::Backend(format!(
                    "DynamoDB table {table} is not ACTIVE after {} s",
                    ACTIVE_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Deletes both tables and everything in them (tests; tearing down an environment).
    /// Tables that do not exist are fine.
    pub async fn delete_tables(&self) -> Result<(), StoreError> {
        for name in [&self.jobs, &self.chunks] {
            match self.client.delete_table().table_name(name).send().await {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.as_service_error(),
                        Some(DeleteTableError::ResourceNotFoundException(_))
                    ) => {}
                Err(e) => return Err(backend(&format!("DeleteTable {name}"), e)),
            }
        }
        Ok(())
    }
}
