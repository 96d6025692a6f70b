//! The backends the suite runs on: SQLite on a temp file, DynamoDB Local at
//! `AVESA_TEST_DYNAMODB_URL` with tables of its own per test.

#[path = "../common/skip.rs"]
mod skip;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use avesa_console::store::{DynamoOptions, DynamoStore, JobStore, SqliteStore};
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use futures::FutureExt;

/// One test's store: every `open` is a separate store (connection, client) on the same data.
pub enum Fixture {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Dynamo {
        config: Box<aws_sdk_dynamodb::Config>,
        options: DynamoOptions,
    },
}

impl Fixture {
    pub fn open(&self) -> Arc<dyn JobStore> {
        match self {
            Fixture::Sqlite { path, .. } => Arc::new(SqliteStore::open(path).unwrap()),
            Fixture::Dynamo { .. } => Arc::new(self.dynamo().unwrap()),
        }
    }

    /// The DynamoDB store itself, for checks only DynamoDB has.
    pub fn dynamo(&self) -> Option<DynamoStore> {
        match self {
            Fixture::Dynamo { config, options } => Some(DynamoStore::new(
                aws_sdk_dynamodb::Client::from_conf((**config).clone()),
                options.clone(),
            )),
            Fixture::Sqlite { .. } => None,
        }
    }

    async fn teardown(&self) {
        if let Some(store) = self.dynamo() {
            store.delete_tables().await.unwrap();
        }
    }
}

pub async fn sqlite() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    Some(Fixture::Sqlite { _dir: dir, path })
}

/// The DynamoDB Local endpoint, or `None` when the tests are told to skip it.
///
/// A missing endpoint fails the test: a suite that silently skips its DynamoDB half would
/// report green while testing nothing.
pub fn dynamodb_url() -> Option<String> {
    if let Ok(url) = std::env::var("AVESA_TEST_DYNAMODB_URL") {
        return Some(url);
    }
    if std::env::var("AVESA_SKIP_EMULATORS").as_deref() == Ok("1") {
        let test = std::thread::current()
            .name()
            .unwrap_or("a DynamoDB test")
            .to_string();
        skip::skip(&test, "AVESA_SKIP_EMULATORS=1: no DynamoDB Local");
        return None;
    }
    panic!(
        "AVESA_TEST_DYNAMODB_URL is not set, so there is no DynamoDB Local to test against. \
         Run scripts/test (it starts DynamoDB Local and moto, then stops them), or start them \
         yourself with `scripts/emulators start && eval \"$(scripts/emulators env)\"` before \
         `cargo test`. To skip the emulator tests on purpose, set AVESA_SKIP_EMULATORS=1."
    )
}

/// Client settings for DynamoDB Local: fixed dummy credentials and region, because DynamoDB
/// Local keeps separate tables per access key and region.
pub fn dynamodb_config(url: &str) -> aws_sdk_dynamodb::Config {
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("avesa", "avesa", None, None, "tests"))
        .build()
}

/// A table prefix no other test (or test process) uses, so tests run in parallel against
/// one DynamoDB Local.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "t{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn dynamodb() -> Option<Fixture> {
    let url = dynamodb_url()?;
    let fixture = Fixture::Dynamo {
        config: Box::new(dynamodb_config(&url)),
        options: DynamoOptions {
            table_prefix: unique_prefix(),
            ..Default::default()
        },
    };
    fixture.dynamo().unwrap().ensure_tables().await.unwrap();
    Some(fixture)
}

/// Runs `body` on the fixture and always tears it down, also when the body panics.
pub async fn run<B, F>(fixture: Option<Fixture>, body: B)
where
    B: FnOnce(Arc<Fixture>) -> F,
    F: Future<Output = ()>,
{
    let Some(fixture) = fixture else { return };
    let fixture = Arc::new(fixture);
    let outcome = AssertUnwindSafe(body(fixture.clone())).catch_unwind().await;
    fixture.teardown().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
