//! How commands behave as parts of shell pipelines.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::*;

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let fx = Fixture::new();
    // One-day chunks over four tables: far more output than a pipe buffers.
    let mut child = fx
        .command(
            None,
            &trigger_args(
                "acme",
                None,
                "2024-01-01",
                Some("2026-01-01"),
                &["--chunk-size-days", "1", "--dry-run"],
            ),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("acme connectwise"), "{first}");
    // The reader is gone now, as with `| head -1`.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}: {stderr}",
        out.status.code()
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `bench` proves its count by reading the Parquet back: the distinct ids in the files.
#[test]
fn bench_reads_back_the_ids_it_landed() {
    let fx = Fixture::new();
    let out = fx.cli(None, &["bench", "--records", "2500", "--json"]);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(report["landed_distinct_ids"], 2500, "{report}");
    assert_eq!(report["records"], 2500, "{report}");
}
