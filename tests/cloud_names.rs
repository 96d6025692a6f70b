//! Execution names on Step Functions (moto) stay reserved after an execution ends, and a job
//! id comes back after `cleanup` and a re-trigger: a start never reports an execution that is
//! over as "already started", it takes the next name of the job's sequence.
//!
//! Needs `AVESA_TEST_MOTO_URL` and `AVESA_TEST_DYNAMODB_URL` (`scripts/test` starts both).

mod common;
// The harness is shared with cloud_e2e, which uses all of it.
#[allow(dead_code)]
#[path = "cloud_e2e/harness.rs"]
mod harness;

use avesa_console::cloud::sfn::{Dispatcher, ExecutionInput};
use harness::*;

#[test]
fn a_start_after_an_ended_execution_of_the_same_job_id_takes_the_next_name() {
    let test = "a_start_after_an_ended_execution_of_the_same_job_id_takes_the_next_name";
    let Some(emulators) = emulators(test) else {
        return;
    };
    let dep = Deployment::create(emulators, "names");
    block(async {
        let dispatcher =
            Dispatcher::new(aws_sdk_sfn::Client::new(&dep.aws), &dep.state_machine_arn);
        // No worker takes its task: with a 1 s heartbeat the execution ends by itself soon.
        let input = ExecutionInput::new("backfill_acme_connectwise_20250101", 1, 1);
        let first = dispatcher.start(&input).await.unwrap();
        assert!(!first.existing, "{first:?}");
        // It ends by itself (no worker answers its task).
        let waiting = std::time::Instant::now();
        while dispatcher
            .describe(&first.name)
            .await
            .unwrap()
            .is_some_and(|e| e.is_running())
        {
            assert!(
                waiting.elapsed().as_secs() < 300,
                "the execution never ended"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // The job was cleaned up and triggered again: same id, same first name.
        let retriggered = dispatcher.start(&input).await.unwrap();
        assert!(
            !retriggered.existing,
            "reported the ended execution: {retriggered:?}"
        );
        assert_eq!(retriggered.name, format!("{}-c1", first.name));
        let latest = dispatcher
            .latest("backfill_acme_connectwise_20250101")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(latest.name, retriggered.name);
    });
}
