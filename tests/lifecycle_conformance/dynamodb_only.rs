//! What only the DynamoDB backend needs checked: a job's verification results larger than a
//! transaction replace each other without leaving old generations behind (also those a
//! crashed or overtaken save left), and removing a job leaves nothing in its partition.

use avesa_console::domain::{AlertKind, JobMeta};
use avesa_console::store::AlertFilter;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{alert, backends, dynamodb, job, run, verification};

/// Every `sk` in the job's partition of the chunks table, sorted.
async fn partition(client: &aws_sdk_dynamodb::Client, table: &str, job_id: &str) -> Vec<String> {
    let out = client
        .query()
        .table_name(table)
        .consistent_read(true)
        .key_condition_expression("job_id = :j")
        .expression_attribute_values(":j", AttributeValue::S(job_id.into()))
        .send()
        .await
        .unwrap();
    let mut keys: Vec<String> = out
        .items()
        .iter()
        .map(|i| i["sk"].as_s().unwrap().clone())
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replaced_results_and_removed_jobs_leave_nothing_behind() {
    let Some(url) = backends::dynamodb_url() else {
        return;
    };
    run(dynamodb().await, |b| async move {
        let client = aws_sdk_dynamodb::Client::from_conf(backends::dynamodb_config(&url));
        let chunks = b.tables.as_ref().unwrap().table_names().1.to_string();
        let (j, c) = job("bf1");
        b.jobs.create_job(j, c, false).await.unwrap();
        let s = &b.life;
        // More results than a transaction (100 items) or one batch (25) holds.
        let many: Vec<_> = (0..130)
            .map(|seq| {
                let mut v = verification("bf1", "tickets", 0, 10, 10);
                v.key.seq = seq;
                v
            })
            .collect();
        s.save_verification("bf1", &many).await.unwrap();
        assert_eq!(s.verification("bf1").await.unwrap(), many);
        let few = vec![verification("bf1", "companies", 0, 3, 3)];
        s.save_verification("bf1", &few).await.unwrap();
        assert_eq!(s.verification("bf1").await.unwrap(), few);
        let verify_items = partition(&client, &chunks, "bf1")
            .await
            .into_iter()
            .filter(|sk| sk.starts_with("verify"))
            .count();
        assert_eq!(verify_items, 2, "the pointer and the one current result");

        s.put_job_meta(&JobMeta::default_for("bf1")).await.unwrap();
        s.raise_alert(&alert(
            AlertKind::LongRunningJob,
            "bf1",
            "acme",
            super::t(2),
        ))
        .await
        .unwrap();
        s.raise_alert(&alert(
            AlertKind::LongRunningJob,
            "bf9",
            "acme",
            super::t(2),
        ))
        .await
        .unwrap();
        assert!(s.delete_job("bf1").await.unwrap());
        assert_eq!(
            partition(&client, &chunks, "bf1").await,
            Vec::<String>::new()
        );
        let left = s.alerts(&AlertFilter::default()).await.unwrap();
        assert_eq!(left.len(), 1, "other jobs' alerts stay: {left:?}");
        assert_eq!(left[0].subject, "bf9");
        // The range is free again: the same plan makes a new job under the same id.
        let (j, c) = job("bf1");
        assert!(matches!(
            b.jobs.create_job(j, c, false).await.unwrap(),
            avesa_console::store::CreateOutcome::Created(_)
        ));
        // Ids that cannot be jobs are refused for writes and have nothing to read.
        assert!(
            s.finalize_job("lifecycle#markers", super::t(2))
                .await
                .is_err()
        );
        assert!(s.verification("a#b").await.unwrap().is_empty());
        assert!(!s.delete_job("a#b").await.unwrap());
    })
    .await;
}

/// The verification items of a job's partition: the pointer and every result of any generation.
async fn verify_items(client: &aws_sdk_dynamodb::Client, table: &str, job_id: &str) -> Vec<String> {
    partition(client, table, job_id)
        .await
        .into_iter()
        .filter(|sk| sk.starts_with("verify"))
        .collect()
}

/// A result item as a save that died before (or after) switching the pointer leaves it:
/// generation `gen` (time in hex, then 8 hex digits), the rest of the item irrelevant.
async fn put_raw(client: &aws_sdk_dynamodb::Client, table: &str, job_id: &str, sk: &str) {
    client
        .put_item()
        .table_name(table)
        .item("job_id", AttributeValue::S(job_id.into()))
        .item("sk", AttributeValue::S(sk.into()))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orphaned_and_overtaken_generations_do_not_stay() {
    let Some(url) = backends::dynamodb_url() else {
        return;
    };
    run(dynamodb().await, |b| async move {
        let client = aws_sdk_dynamodb::Client::from_conf(backends::dynamodb_config(&url));
        let chunks = b.tables.as_ref().unwrap().table_names().1.to_string();
        let (j, c) = job("bf1");
        b.jobs.create_job(j, c, false).await.unwrap();
        let s = &b.life;
        // A save that died between its results and the pointer, and one whose replaced
        // generation was never deleted: both older than any save from now on.
        for seq in 0..30 {
            let sk = format!("verify#100000000#tickets#{seq:06}");
            put_raw(&client, &chunks, "bf1", &sk).await;
        }
        put_raw(&client, &chunks, "bf1", "verify#2abcdef01#tickets#000000").await;
        let first = vec![verification("bf1", "tickets", 0, 10, 10)];
        s.save_verification("bf1", &first).await.unwrap();
        assert_eq!(s.verification("bf1").await.unwrap(), first);
        let left = verify_items(&client, &chunks, "bf1").await;
        assert_eq!(left.len(), 2, "the pointer and its one result: {left:?}");

        // A save overtaken by one that started later (the pointer names a generation from
        // the future) keeps nothing of its own and leaves the newer results current.
        client
            .put_item()
            .table_name(&chunks)
            .item("job_id", AttributeValue::S("bf1".into()))
            .item("sk", AttributeValue::S("verify".into()))
            .item(
                "generation",
                AttributeValue::S("ffffffffffffff00000000".into()),
            )
            .item("count", AttributeValue::N("0".into()))
            .item("gen_at", AttributeValue::N(u64::MAX.to_string()))
            .send()
            .await
            .unwrap();
        let overtaken = vec![verification("bf1", "companies", 0, 3, 3)];
        s.save_verification("bf1", &overtaken).await.unwrap();
        assert!(s.verification("bf1").await.unwrap().is_empty());
        let left = verify_items(&client, &chunks, "bf1").await;
        assert_eq!(
            left.len(),
            2,
            "the pointer and the result it replaced, no new generation: {left:?}"
        );
        // Back to a pointer of the time before `gen_at` existed: the next save replaces it.
        client
            .put_item()
            .table_name(&chunks)
            .item("job_id", AttributeValue::S("bf1".into()))
            .item("sk", AttributeValue::S("verify".into()))
            .item("generation", AttributeValue::S("100000000".into()))
            .item("count", AttributeValue::N("0".into()))
            .send()
            .await
            .unwrap();

        // Racing saves from other handles: one set wins whole, nothing else stays.
        let sets: Vec<Vec<_>> = (0..4u32)
            .map(|k| {
                (0..(5 + 10 * k))
                    .map(|seq| {
                        let mut v = verification("bf1", "tickets", 0, u64::from(k), 1);
                        v.key.seq = seq;
                        v
                    })
                    .collect()
            })
            .collect();
        let saves = sets.iter().map(|set| {
            let store = b.another();
            let set = set.clone();
            tokio::spawn(async move { store.save_verification("bf1", &set).await })
        });
        for done in futures::future::join_all(saves).await {
            done.unwrap().unwrap();
        }
        let current = s.verification("bf1").await.unwrap();
        assert!(sets.contains(&current), "{current:?}");
        let left = verify_items(&client, &chunks, "bf1").await;
        assert_eq!(left.len(), current.len() + 1, "{left:?}");

        // A crash's leftovers that no later save cleared go with the job.
        put_raw(&client, &chunks, "bf1", "verify#300000000#tickets#000001").await;
        assert!(s.delete_job("bf1").await.unwrap());
        assert_eq!(
            partition(&client, &chunks, "bf1").await,
            Vec::<String>::new()
        );
    })
    .await;
}
