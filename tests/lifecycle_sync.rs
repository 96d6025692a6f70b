//! Backfill, then incremental syncs, against a sandbox whose records keep changing: raw holds
//! exactly the source (every record's current version, no version twice), the canonical
//! SCD Type 2 history chains its effective dates with one current row per record, and the
//! markers hand over from the backfill's frozen end to each sync's end without a gap.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use arrow_array::{Array, BooleanArray, StringArray, TimestampMicrosecondArray};
use avesa_console::sandbox::{MovedRecord, TableCounts, expected_records};
use chrono::{DateTime, Duration, Utc};
use common::*;

const START: &str = "2025-07-01T00:00:00Z";

fn moved(sandbox: &SandboxProc) -> Vec<MovedRecord> {
    serde_json::from_str(&common::reqwest::blocking_get(&format!(
        "{}/_sandbox/connectwise/moved",
        sandbox.url
    )))
    .unwrap()
}

fn edit(sandbox: &SandboxProc, company: &str, n: u32, at: DateTime<Utc>) -> Vec<MovedRecord> {
    let url = format!(
        "{}/_sandbox/connectwise/edit?company_id={company}&table=tickets&records={n}&at={}",
        sandbox.url,
        at.format("%Y-%m-%dT%H:%M:%SZ")
    );
    serde_json::from_str(&common::reqwest::blocking_post(&url)).unwrap()
}

fn sync(fx: &Fixture, sandbox: &SandboxProc) -> serde_json::Value {
    let out = fx.cli(
        Some(sandbox),
        &[
            "sync",
            "--tenant-id",
            "acme",
            "--service",
            "connectwise",
            "--output",
            "json",
        ],
    );
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["job"]["status"], "completed", "{v}");
    v
}

fn marker_of(v: &serde_json::Value, table: &str) -> DateTime<Utc> {
    let m = v["markers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["table"] == table)
        .unwrap_or_else(|| panic!("no marker for {table}: {v}"));
    m["last_updated"].as_str().unwrap().parse().unwrap()
}

/// One canonical row: (start, end, current, summary).
type Version = (i64, Option<i64>, bool, String);

fn canonical(fx: &Fixture) -> BTreeMap<i64, Vec<Version>> {
    let mut out: BTreeMap<i64, Vec<Version>> = BTreeMap::new();
    for b in canonical_batches(&fx.data_dir(), "acme", "tickets") {
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        let ids = col("record_id");
        let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
        let summary = col("summary");
        let summary = summary.as_any().downcast_ref::<StringArray>().unwrap();
        let (start, end) = (col("effective_start"), col("effective_end"));
        let start = start
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        let end = end
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        let current = col("is_current");
        let current = current.as_any().downcast_ref::<BooleanArray>().unwrap();
        for i in 0..b.num_rows() {
            out.entry(ids.value(i).parse().unwrap()).or_default().push((
                start.value(i) / 1_000_000,
                (!end.is_null(i)).then(|| end.value(i) / 1_000_000),
                current.value(i),
                summary.value(i).to_string(),
            ));
        }
    }
    out
}

#[test]
fn backfill_then_syncs_against_changing_records_land_exactly_the_source() {
    let fx = Fixture::new();
    fx.tune(6000, 20);
    let faults = fx.dir.path().join("faults.json");
    std::fs::write(
        &faults,
        r#"{"faults":[{"path":"service/tickets","kind":"touch_records","records":4,"times":6}]}"#,
    )
    .unwrap();
    let sandbox = fx.start_sandbox(&["--faults", faults.to_str().unwrap()]);
    let company = company_of(&fx, "acme");

    // 1. Backfill up to the history's end while records move out of the windows being read.
    let out = fx.cli(
        Some(&sandbox),
        &trigger_args(
            "acme",
            Some("tickets"),
            START,
            Some("2026-01-01T00:00:00Z"),
            &["--chunk-size-days", "15", "--run"],
        ),
    );
    assert_ok(&out);
    let touched = moved(&sandbox);
    assert!(touched.len() >= 12, "only {} records moved", touched.len());
    assert!(
        !canonical_files(&fx.data_dir(), "acme", "tickets").is_empty(),
        "the completed backfill triggered the canonical transform"
    );

    // 2. Users edit records after the backfill's end; the first sync reads from it.
    edit(&sandbox, &company, 7, anchor() + Duration::hours(6));
    let first = sync(&fx, &sandbox);
    let marker = marker_of(&first, "tickets");
    assert_eq!(
        first["job"]["window"]["start"], "2026-01-01T00:00:00Z",
        "the sync starts at the backfill's frozen end"
    );

    // 3. More edits at the first sync's end, then a second sync once the clock passed them.
    let second_edits = edit(&sandbox, &company, 3, marker);
    let last_edit = second_edits.iter().map(|m| m.to).max().unwrap();
    wait_for(
        std::time::Duration::from_secs(30),
        "the clock to pass the edits",
        || (Utc::now() - Duration::seconds(1) > last_edit).then_some(()),
    );
    let second = sync(&fx, &sandbox);
    assert_eq!(
        second["job"]["window"]["start"].as_str().unwrap(),
        marker.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "each sync starts where the previous one ended"
    );
    let end: DateTime<Utc> = second["job"]["window"]["end"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(marker_of(&second, "tickets"), end);

    // The source now: every record's current update time (the last move wins).
    let history = moved(&sandbox);
    let window = parse_window(START, "2100-01-01T00:00:00Z");
    let mut current: BTreeMap<i64, DateTime<Utc>> = expected_records(
        &fx.sandbox_config(TableCounts::demo()),
        &company,
        "tickets",
        &window,
    )
    .into_iter()
    .collect();
    let mut versions: BTreeMap<i64, BTreeSet<DateTime<Utc>>> = BTreeMap::new();
    for m in &history {
        current.insert(m.id, m.to);
        let v = versions.entry(m.id).or_default();
        v.insert(m.from);
        v.insert(m.to);
    }
    current.retain(|_, t| window.start <= *t && *t < end);
    assert!(current.len() > 500, "too few records to prove anything");

    // Raw: no version twice, every current version present, nothing that never existed.
    let landed = Landed::read(&fx.data_dir(), "acme", "tickets");
    let pairs: BTreeSet<(i64, DateTime<Utc>)> = landed.rows.iter().copied().collect();
    assert_eq!(
        pairs.len(),
        landed.rows.len(),
        "a version landed twice in raw"
    );
    let missing: Vec<_> = current
        .iter()
        .filter(|(id, t)| !pairs.contains(&(**id, **t)))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "current versions missing from raw: {missing:?}"
    );
    let unknown: Vec<_> = landed
        .rows
        .iter()
        .filter(|(id, t)| {
            current.get(id) != Some(t) && !versions.get(id).is_some_and(|v| v.contains(t))
        })
        .take(5)
        .collect();
    assert!(
        unknown.is_empty(),
        "raw rows the source never had: {unknown:?}"
    );
    assert!(
        landed.rows.len() > current.len(),
        "some records were read before an edit and again after: the history has versions"
    );

    // Canonical: the records of the source, each a chain of versions ending in one current.
    let canon = canonical(&fx);
    let ids: BTreeSet<i64> = canon.keys().copied().collect();
    let expected_ids: BTreeSet<i64> = current.keys().copied().collect();
    assert_eq!(ids, expected_ids);
    let mut with_history = 0;
    for (id, rows) in &canon {
        assert_eq!(
            rows.iter().filter(|r| r.2).count(),
            1,
            "record {id}: {rows:?}"
        );
        for pair in rows.windows(2) {
            assert_eq!(pair[0].1, Some(pair[1].0), "record {id}: {rows:?}");
            assert!(pair[0].0 < pair[1].0);
        }
        let last = rows.last().unwrap();
        assert!(
            last.2 && last.1.is_none(),
            "record {id}: the last version is current"
        );
        assert_eq!(
            last.0,
            current[id].timestamp(),
            "record {id}: current version"
        );
        if rows.len() > 1 {
            with_history += 1;
            assert!(last.3.contains("[edited +"), "record {id}: {rows:?}");
        }
    }
    assert!(with_history > 0, "no record has more than one version");

    // Hand-off: no gap reported, and the backfill verifies against the source's counts.
    let status = fx.cli(None, &["status", "--output", "json"]);
    assert_ok(&status);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["gaps"], serde_json::json!([]), "{status}");
    let out = fx.cli(
        Some(&sandbox),
        &[
            "verify",
            "backfill_acme_connectwise_20250701",
            "--output",
            "json",
        ],
    );
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verification"]["missing"], 0, "{v}");
    assert!(
        v["verification"]["moved_since"].as_u64().unwrap() > 0,
        "{v}"
    );
}
