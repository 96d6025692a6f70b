//! `verify` catches a deliberately dropped record; the gap check flags a backfill whose
//! failed chunk leaves a hole; `cleanup` removes old completed jobs and keeps their data.

mod common;

use arrow_array::RecordBatch;
use common::*;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

const JOB: &str = "backfill_acme_connectwise_20251001";

fn verify(fx: &Fixture, sandbox: &SandboxProc) -> (Option<i32>, Value, String) {
    let out = fx.cli(Some(sandbox), &["verify", JOB, "--output", "json"]);
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let txt = fx.cli(Some(sandbox), &["verify", JOB]);
    (
        out.status.code(),
        v,
        String::from_utf8_lossy(&txt.stdout).into_owned(),
    )
}

/// Backfills `JOB`: two months of acme's tickets in four 20-day windows.
fn backfill_two_months(fx: &Fixture, sandbox: &SandboxProc) -> std::process::Output {
    fx.cli(
        Some(sandbox),
        &trigger_args(
            "acme",
            Some("tickets"),
            "2025-10-01",
            Some("2025-12-01"),
            &["--chunk-size-days", "20", "--run"],
        ),
    )
}

/// Rewrites `file` without its first row.
fn drop_first_row(file: &std::path::Path) {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let schema = batches[0].schema();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema, None).unwrap();
    let first = &batches[0];
    w.write(&first.slice(1, first.num_rows() - 1)).unwrap();
    for b in &batches[1..] {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    std::fs::write(file, out).unwrap();
}

#[test]
fn verify_matches_the_source_and_catches_a_dropped_record() {
    let fx = Fixture::new();
    fx.tune(6000, 100);
    // The test edits one chunk's own part: keep the parts as the chunks wrote them.
    fx.edit("backfill_config.json", |v| {
        v["compaction"]["enabled"] = false.into();
    });
    let sandbox = fx.start_sandbox(&[]);
    let out = backfill_two_months(&fx, &sandbox);
    assert_ok(&out);
    let (code, v, txt) = verify(&fx, &sandbox);
    assert_eq!(code, Some(0), "{v}");
    let chunks = v["verification"]["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 4);
    for c in chunks {
        assert!(c["source_count"].as_u64().unwrap() > 0, "{c}");
        assert_eq!(c["landed"], c["source_count"], "{c}");
    }
    assert!(txt.contains(": verified"), "{txt}");

    // Take one record out of the second chunk's raw part.
    let dir = fx.data_dir().join("acme/raw/connectwise/tickets");
    let part = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("20251021T000000Z-20251110T000000Z_")
        })
        .expect("the second chunk's part");
    drop_first_row(&part);
    let (code, v, txt) = verify(&fx, &sandbox);
    assert_eq!(code, Some(4), "verification failure exits 4: {v}");
    assert_eq!(v["verification"]["missing"], 1);
    assert_eq!(v["verification"]["ok"], false);
    let short: Vec<&Value> = v["verification"]["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["landed"] != c["source_count"])
        .collect();
    assert_eq!(short.len(), 1, "{v}");
    assert_eq!(short[0]["key"]["seq"], 1);
    assert!(
        txt.contains("MISSING 1") && txt.contains("NOT VERIFIED"),
        "{txt}"
    );
}

#[test]
fn a_failed_chunk_is_a_gap_in_status_and_alerts() {
    let fx = Fixture::new();
    fx.tune(6000, 100);
    let faults = fx.dir.path().join("faults.json");
    std::fs::write(
        &faults,
        r#"{"faults":[{"path":"service/tickets","window_start":"2025-10-21T00:00:00Z","status":400,"message":"this window's data is refused"}]}"#,
    )
    .unwrap();
    // A 400 without a code that refuses the query fails its window only (a 401 would fail
    // the table).
    let sandbox = fx.start_sandbox(&["--faults", faults.to_str().unwrap()]);
    let out = backfill_two_months(&fx, &sandbox);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let status = fx.cli(None, &["status", "--output", "json"]);
    assert_ok(&status);
    let v: Value = serde_json::from_slice(&status.stdout).unwrap();
    let gaps = v["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{v}");
    assert_eq!(gaps[0]["job_id"], JOB);
    assert!(
        gaps[0]["reason"]
            .as_str()
            .unwrap()
            .contains("1 failed chunk"),
        "{v}"
    );
    assert_eq!(
        v["markers"],
        serde_json::json!([]),
        "no marker after a backfill with a hole"
    );
    let text_status = fx.cli(None, &["status"]);
    assert!(String::from_utf8_lossy(&text_status.stdout).contains("GAP acme connectwise tickets"));
    // The sync has nothing to start from.
    let out = fx.cli(
        Some(&sandbox),
        &["sync", "--tenant-id", "acme", "--service", "connectwise"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no sync marker"),
        "{}",
        text(&out)
    );
    let alerts = fx.cli(Some(&sandbox), &["alerts", "--output", "json"]);
    assert_ok(&alerts);
    let a: Value = serde_json::from_slice(&alerts.stdout).unwrap();
    let kinds: Vec<&str> = a["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"sync_gap"), "{a}");
    assert!(kinds.contains(&"low_completion_rate"), "3 of 4 chunks: {a}");
}

#[test]
fn cleanup_removes_old_completed_jobs_and_keeps_their_data() {
    let fx = Fixture::new();
    fx.tune(6000, 100);
    let sandbox = fx.start_sandbox(&[]);
    let out = fx.cli(
        Some(&sandbox),
        &trigger_args(
            "acme",
            Some("tickets"),
            "2025-10-01",
            Some("2025-11-01"),
            &["--run"],
        ),
    );
    assert_ok(&out);
    let jobs = |fx: &Fixture| -> Value {
        let out = fx.cli(None, &["status", "--output", "json"]);
        assert_ok(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // The default age (30 days) keeps a job finished just now.
    let out = fx.cli(Some(&sandbox), &["cleanup", "--output", "json"]);
    assert_ok(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            v["older_than_days"].as_u64(),
            v["jobs"].as_array().unwrap().len()
        ),
        (Some(30), 0)
    );
    let out = fx.cli(
        Some(&sandbox),
        &["cleanup", "--older-than-days", "0", "--dry-run"],
    );
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("would remove {JOB}")));
    assert_eq!(
        jobs(&fx)["jobs"].as_array().unwrap().len(),
        1,
        "a dry run removes nothing"
    );
    let out = fx.cli(Some(&sandbox), &["cleanup", "--older-than-days", "0"]);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed 1 completed job"));
    let after = jobs(&fx);
    assert_eq!(after["jobs"], serde_json::json!([]));
    assert_eq!(
        after["markers"].as_array().unwrap().len(),
        1,
        "the marker stays"
    );
    assert_eq!(
        after["gaps"],
        serde_json::json!([]),
        "a removed job is no gap"
    );
    assert!(
        std::fs::read_dir(fx.data_dir().join("acme/raw/connectwise/tickets"))
            .unwrap()
            .count()
            > 0
    );
    assert!(!canonical_files(&fx.data_dir(), "acme", "tickets").is_empty());
    let out = fx.cli(Some(&sandbox), &["cleanup", "--older-than-days", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--older-than-days"));
}

/// A verification that meets a passing error (a 502, a cut body) on one window's count
/// retries it as the backfill would, and one that still cannot count a window reports that
/// window and verifies the others.
#[test]
fn verify_retries_a_passing_error_and_reports_a_window_it_cannot_count() {
    let fx = Fixture::new();
    fx.tune(6000, 100);
    let sandbox = fx.start_sandbox(&[]);
    let out = backfill_two_months(&fx, &sandbox);
    assert_ok(&out);
    let faults = fx.dir.path().join("faults.json");
    std::fs::write(
        &faults,
        r#"{"faults":[
            {"path":"service/tickets/count","window_start":"2025-10-21T00:00:00Z","status":502,"times":1},
            {"path":"service/tickets/count","window_start":"2025-10-01T00:00:00Z","kind":"truncate","times":1},
            {"path":"service/tickets/count","window_start":"2025-11-30T00:00:00Z","status":403,"message":"no count for you"}
        ]}"#,
    )
    .unwrap();
    let flaky = fx.start_sandbox(&["--faults", faults.to_str().unwrap()]);
    let (code, v, txt) = verify(&fx, &flaky);
    let chunks = v["verification"]["chunks"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(
        chunks.len(),
        3,
        "the 502 and the cut body were retried: {v}"
    );
    for c in chunks {
        assert!(c["source_count"].as_u64().unwrap() > 0, "{c}");
        assert_eq!(c["landed"], c["source_count"], "{c}");
    }
    let uncounted = v["verification"]["uncounted"].as_array().unwrap();
    assert_eq!(uncounted.len(), 1, "{v}");
    assert_eq!(uncounted[0]["key"]["seq"], 3, "{v}");
    let error = uncounted[0]["error"].as_str().unwrap();
    assert!(error.contains("no count for you"), "{error}");
    assert_eq!(v["verification"]["ok"], false, "{v}");
    assert_eq!(
        code,
        Some(1),
        "a window left uncounted is not verified: {v}"
    );
    assert!(txt.contains("NOT COUNTED"), "{txt}");
    assert!(txt.contains("NOT VERIFIED"), "{txt}");
}
