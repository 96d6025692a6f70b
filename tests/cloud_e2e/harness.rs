//! A throwaway cloud deployment on the emulators, made by `cloud::deploy::up` (the code of
//! `cloud up --emulators`) under a name unique to the test: queue and dead-letter queue, bucket,
//! log groups, state machine and DynamoDB tables; worker processes of the real binary; readers
//! for S3 and the history.

use std::process::{Child, Command, Output, Stdio};

use crate::common::skip;
use std::sync::LazyLock;
use std::time::Duration;

use arrow_array::{Array, Int64Array, TimestampMicrosecondArray};
use avesa_console::cloud::deploy;
use avesa_console::store::{DynamoOptions, DynamoStore};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::{BIN, Fixture, Landed, SandboxProc};

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
});

/// Runs a future to completion from a synchronous test.
pub fn block<F: std::future::Future>(f: F) -> F::Output {
    RT.block_on(f)
}

pub struct Emulators {
    pub moto: String,
    pub dynamodb: String,
}

/// The emulators `scripts/test` started, or `None` (and a printed reason) when the caller
/// opted out with `AVESA_SKIP_EMULATORS=1`. Without either the test fails, saying how to run.
pub fn emulators(test: &str) -> Option<Emulators> {
    let moto = std::env::var("AVESA_TEST_MOTO_URL").ok();
    let dynamodb = std::env::var("AVESA_TEST_DYNAMODB_URL").ok();
    match (moto, dynamodb) {
        (Some(moto), Some(dynamodb)) => Some(Emulators { moto, dynamodb }),
        _ if std::env::var("AVESA_SKIP_EMULATORS").as_deref() == Ok("1") => {
            skip::skip(test, "AVESA_SKIP_EMULATORS=1: no moto or DynamoDB Local");
            None
        }
        _ => panic!(
            "{test} needs moto and DynamoDB Local: run it through scripts/test (which starts \
             them with scripts/emulators), or `eval \"$(scripts/emulators start && scripts/emulators env)\"` \
             first; AVESA_SKIP_EMULATORS=1 skips it"
        ),
    }
}

pub struct Deployment {
    pub emulators: Emulators,
    pub queue_url: String,
    pub bucket: String,
    pub log_group: String,
    pub state_machine_arn: String,
    pub table_prefix: String,
    pub aws: SdkConfig,
    pub dynamo: SdkConfig,
}

fn sdk(endpoint: &str) -> SdkConfig {
    block(
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("avesa", "avesa", None, None, "tests"))
            .load(),
    )
}

impl Deployment {
    /// Creates every resource under names unique to this test process and `tag`, as
    /// `cloud up --emulators --name …` does (the same code).
    pub fn create(emulators: Emulators, tag: &str) -> Deployment {
        Deployment::create_named(emulators, &format!("e2e{}{tag}", std::process::id()))
    }

    /// `cloud up --emulators --name NAME`: what is missing of that deployment is created.
    pub fn create_named(emulators: Emulators, name: &str) -> Deployment {
        let aws = sdk(&emulators.moto);
        let dynamo = sdk(&emulators.dynamodb);
        let names = deploy::Names::of(name).unwrap();
        let endpoints = deploy::Emulators {
            moto: emulators.moto.clone(),
            dynamodb: emulators.dynamodb.clone(),
        };
        let settings = block(deploy::up(&aws, &dynamo, &endpoints, &names)).unwrap();
        Deployment {
            emulators,
            queue_url: settings.queue_url.unwrap(),
            bucket: settings.bucket.unwrap(),
            log_group: settings.log_group.unwrap(),
            state_machine_arn: settings.state_machine_arn.unwrap(),
            table_prefix: settings.table_prefix.unwrap(),
            aws,
            dynamo,
        }
    }

    pub fn store(&self) -> DynamoStore {
        DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&self.dynamo),
            DynamoOptions {
                table_prefix: self.table_prefix.clone(),
                ..DynamoOptions::default()
            },
        )
    }

    /// The environment a process needs to reach this deployment (and nothing of the host's): the
    /// dummy credentials `cloud up --emulators` prints (DynamoDB Local keeps one database per key).
    pub fn apply(&self, cmd: &mut Command) {
        for var in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"] {
            cmd.env_remove(var);
        }
        cmd.env("AWS_ACCESS_KEY_ID", "avesa")
            .env("AWS_SECRET_ACCESS_KEY", "avesa")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", &self.emulators.moto)
            .env("AWS_ENDPOINT_URL_DYNAMODB", &self.emulators.dynamodb)
            .env("AVESA_CLOUD_STATE_MACHINE_ARN", &self.state_machine_arn)
            .env("AVESA_CLOUD_QUEUE_URL", &self.queue_url)
            .env("AVESA_CLOUD_BUCKET", &self.bucket)
            .env("AVESA_CLOUD_TABLE_PREFIX", &self.table_prefix)
            .env("AVESA_CLOUD_LOG_GROUP", &self.log_group);
    }

    /// The binary with this deployment's settings.
    pub fn cli(&self, fx: &Fixture, sandbox: Option<&SandboxProc>, args: &[&str]) -> Output {
        let mut cmd = fx.command(sandbox, args);
        self.apply(&mut cmd);
        cmd.output().unwrap()
    }

    /// A `worker` process with a short lease and poll, as tests need.
    pub fn worker(&self, fx: &Fixture, sandbox: &SandboxProc, name: &str) -> WorkerProc {
        let (mut cmd, log) = self.worker_command(fx, sandbox, name);
        WorkerProc {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    /// The command `worker` spawns, and the file its stderr goes to.
    pub fn worker_command(
        &self,
        fx: &Fixture,
        sandbox: &SandboxProc,
        name: &str,
    ) -> (Command, std::path::PathBuf) {
        let log = fx.dir.path().join(format!("{name}.log"));
        let mut cmd = Command::new(BIN);
        cmd.arg("--config-dir")
            .arg(fx.config_dir())
            .arg("--workspace")
            .arg(fx.workspace())
            .args(["--sandbox-url", &sandbox.url, "--log-level", "info"])
            .args(["worker", "--lease", "3s", "--wait-seconds", "1"])
            .args(["--visibility-seconds", "10", "--claim-wait", "30s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        self.apply(&mut cmd);
        (cmd, log)
    }

    /// Every `(id, lastUpdated)` in the table's objects, and the object keys.
    /// Every object key under `prefix` in the bucket, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let store = avesa_console::cloud::s3::object_store(&self.bucket, &self.aws).unwrap();
        let prefix = object_store::path::Path::from(prefix);
        block(async {
            let mut keys: Vec<String> = store
                .list(Some(&prefix))
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .unwrap();
            keys.sort();
            keys
        })
    }

    pub fn landed(&self, tenant: &str, table: &str) -> (Landed, Vec<String>) {
        let store = avesa_console::cloud::s3::object_store(&self.bucket, &self.aws).unwrap();
        // The raw files as every reader sees them: compacted files with their records applied.
        let sink = avesa_console::sink::RawSink::new(store.clone());
        block(async {
            let mut keys: Vec<_> = sink
                .list_table_objects(tenant, avesa_console::domain::Service::Connectwise, table)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.location)
                .collect();
            keys.sort();
            let mut rows = Vec::new();
            let mut batches = Vec::new();
            for key in &keys {
                let bytes = store.get(key).await.unwrap().bytes().await.unwrap();
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .unwrap()
                    .build()
                    .unwrap();
                for batch in reader {
                    let batch = batch.unwrap();
                    let ids = batch
                        .column_by_name("id")
                        .unwrap()
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .clone();
                    let upd = batch
                        .column_by_name("_info__lastUpdated")
                        .unwrap()
                        .as_any()
                        .downcast_ref::<TimestampMicrosecondArray>()
                        .unwrap()
                        .clone();
                    for i in 0..batch.num_rows() {
                        assert!(!ids.is_null(i));
                        let t: DateTime<Utc> =
                            DateTime::from_timestamp_micros(upd.value(i)).unwrap();
                        rows.push((ids.value(i), t));
                    }
                    batches.push(batch);
                }
            }
            rows.sort();
            let names = keys.iter().map(|k| k.to_string()).collect();
            (
                Landed {
                    rows,
                    files: Vec::new(),
                    batches,
                },
                names,
            )
        })
    }

    /// The history of one execution (all pages).
    pub fn history(&self, execution_arn: &str) -> Vec<aws_sdk_sfn::types::HistoryEvent> {
        let sfn = aws_sdk_sfn::Client::new(&self.aws);
        block(async {
            let mut out = Vec::new();
            let mut token = None;
            loop {
                let page = sfn
                    .get_execution_history()
                    .execution_arn(execution_arn)
                    .max_results(1000)
                    .set_next_token(token)
                    .send()
                    .await
                    .unwrap();
                out.extend(page.events().iter().cloned());
                token = page.next_token().map(str::to_string);
                if token.is_none() {
                    return out;
                }
            }
        })
    }
}

/// A worker child process; killed when dropped.
pub struct WorkerProc {
    pub child: Child,
    pub log: std::path::PathBuf,
}

impl WorkerProc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls every 200 ms until `f` gives a value, or panics naming `what` after `timeout`.
pub fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
