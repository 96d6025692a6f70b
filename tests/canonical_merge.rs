//! The canonical tables' incremental merge against the real binary: a backfill and three syncs
//! with edits, each followed by its hand-off's incremental transform, give the rows of
//! `transform --full` row for row; a transform killed between its bucket files and its
//! manifest leaves the previous version readable (never a mix), and the next transform gives
//! the rows of an uninterrupted one.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use arrow_array::{
    Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use avesa_console::transform::layout::MANIFEST_FILE;
use avesa_console::transform::{BUCKET_BYTES_ENV, MAX_DELTAS_ENV, MERGE_PAUSE_ENV, Manifest};
use chrono::{DateTime, Duration, Utc};
use common::*;

const START: &str = "2025-07-01T00:00:00Z";

/// Raw bytes per bucket: the demo tickets spread over several buckets.
const BUCKET_BYTES: &str = "16384";

fn table_dir(fx: &Fixture) -> PathBuf {
    fx.data_dir().join("acme/canonical/tickets/connectwise")
}

fn manifest(fx: &Fixture) -> Manifest {
    let path = table_dir(fx).join(MANIFEST_FILE);
    Manifest::parse(&std::fs::read(&path).unwrap(), "manifest").unwrap()
}

/// Delta files per bucket before a merge folds them into a new base: one, so a bucket that
/// two merges touch in a row is folded by the second.
const MAX_DELTAS: &str = "1";

/// Runs the binary with the test's bucket size and fold threshold.
fn cli(fx: &Fixture, sandbox: &SandboxProc, args: &[&str]) -> std::process::Output {
    fx.command(Some(sandbox), args)
        .env(BUCKET_BYTES_ENV, BUCKET_BYTES)
        .env(MAX_DELTAS_ENV, MAX_DELTAS)
        .output()
        .unwrap()
}

fn cell(a: &dyn Array, i: usize) -> String {
    if a.is_null(i) {
        return "∅".into();
    }
    let any = a.as_any();
    if let Some(v) = any.downcast_ref::<StringArray>() {
        format!("{:?}", v.value(i))
    } else if let Some(v) = any.downcast_ref::<Int64Array>() {
        v.value(i).to_string()
    } else if let Some(v) = any.downcast_ref::<Float64Array>() {
        v.value(i).to_string()
    } else if let Some(v) = any.downcast_ref::<BooleanArray>() {
        v.value(i).to_string()
    } else if let Some(v) = any.downcast_ref::<TimestampMicrosecondArray>() {
        v.value(i).to_string()
    } else {
        panic!("unexpected column type {}", a.data_type())
    }
}

/// Every row of every column, one string per row, sorted.
fn all_rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            (0..b.num_rows()).map(move |i| {
                b.columns()
                    .iter()
                    .map(|c| cell(c.as_ref(), i))
                    .collect::<Vec<_>>()
                    .join("|")
            })
        })
        .collect();
    rows.sort();
    rows
}

fn rows_now(fx: &Fixture) -> Vec<String> {
    all_rows(&canonical_batches(&fx.data_dir(), "acme", "tickets"))
}

fn edit(sandbox: &SandboxProc, company: &str, n: u32, at: DateTime<Utc>) -> DateTime<Utc> {
    let url = format!(
        "{}/_sandbox/connectwise/edit?company_id={company}&table=tickets&records={n}&at={}",
        sandbox.url,
        at.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let moved: serde_json::Value =
        serde_json::from_str(&common::reqwest::blocking_post(&url)).unwrap();
    let last = moved
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["to"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap())
        .max()
        .unwrap();
    // A sync reads up to now: wait until the clock passed the edits.
    wait_for(
        std::time::Duration::from_secs(60),
        "the clock to pass the edits",
        || (Utc::now() - Duration::seconds(1) > last).then_some(()),
    );
    last
}

const SYNC: [&str; 7] = [
    "sync",
    "--tenant-id",
    "acme",
    "--service",
    "connectwise",
    "--output",
    "json",
];

fn backfill(fx: &Fixture, sandbox: &SandboxProc) {
    let args = trigger_args(
        "acme",
        Some("tickets"),
        START,
        Some("2026-01-01T00:00:00Z"),
        &["--chunk-size-days", "30", "--run"],
    );
    let out = cli(
        fx,
        sandbox,
        &args.iter().map(|s| s.as_ref()).collect::<Vec<_>>(),
    );
    assert_ok(&out);
}

/// `transform --full` of acme's tickets.
fn full_transform(fx: &Fixture, sandbox: &SandboxProc) {
    let args = [
        "transform",
        "--tenant-id",
        "acme",
        "--table",
        "tickets",
        "--full",
    ];
    assert_ok(&cli(fx, sandbox, &args));
}

/// The generations of the files the manifest names, bases and deltas.
fn generations(m: &Manifest) -> BTreeSet<u64> {
    m.files
        .iter()
        .flat_map(|f| f.files().map(|(_, g)| g).collect::<Vec<_>>())
        .collect()
}

/// The names of the files the manifest names, bases and deltas.
fn file_names(m: &Manifest) -> Vec<String> {
    m.files
        .iter()
        .flat_map(|f| {
            f.files()
                .map(|(name, _)| name.to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// (buckets that got a delta, buckets whose deltas were folded into a new base) from `before`
/// to `after`.
fn deltas_and_folds(before: &Manifest, after: &Manifest) -> (usize, usize) {
    let (mut deltas, mut folds) = (0, 0);
    for (b, a) in before.files.iter().zip(&after.files) {
        assert_eq!(a.bucket, b.bucket);
        deltas += usize::from(a.file == b.file && a.deltas.len() == b.deltas.len() + 1);
        folds += usize::from(a.file != b.file && !b.deltas.is_empty() && a.deltas.is_empty());
    }
    (deltas, folds)
}

#[test]
fn a_backfill_and_three_syncs_merged_incrementally_give_the_rows_of_a_full_build() {
    let fx = Fixture::new();
    fx.tune(6000, 100);
    let sandbox = fx.start_sandbox(&[]);
    let company = company_of(&fx, "acme");
    backfill(&fx, &sandbox);
    let built = manifest(&fx);
    assert!(built.buckets >= 4, "{} bucket(s)", built.buckets);
    let mut at = anchor() + Duration::hours(6);
    let (mut deltas, mut folds) = (0, 0);
    let mut before = built.clone();
    for round in 0..3u64 {
        edit(&sandbox, &company, 5 + round as u32, at);
        let out = cli(&fx, &sandbox, &SYNC);
        assert_ok(&out);
        // The next edits come at this sync's end, where the next one reads from.
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let marker = v["markers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["table"] == "tickets")
            .unwrap_or_else(|| panic!("no tickets marker: {v}"));
        at = marker["last_updated"].as_str().unwrap().parse().unwrap();
        let m = manifest(&fx);
        assert_eq!(m.generation, round + 2, "each sync's hand-off merged");
        assert_eq!(m.buckets, built.buckets, "the bucket count stays");
        let (d, f) = deltas_and_folds(&before, &m);
        (deltas, folds) = (deltas + d, folds + f);
        before = m;
    }
    // The spread edits start at the same record each round: its bucket gets a delta, then
    // (past `MAX_DELTAS`) a new base, then a delta again.
    assert!(
        deltas >= 2 && folds >= 1,
        "{deltas} delta(s), {folds} fold(s)"
    );
    let merged = manifest(&fx);
    // Untouched buckets kept their files: the last merge did not rewrite everything.
    assert!(generations(&merged).len() > 1, "{merged:?}");
    let incremental = rows_now(&fx);
    assert!(incremental.len() > 500, "{} rows", incremental.len());

    full_transform(&fx, &sandbox);
    assert_eq!(generations(&manifest(&fx)), BTreeSet::from([5]));
    let full = rows_now(&fx);
    assert_eq!(incremental.len(), full.len());
    for (a, b) in incremental.iter().zip(&full) {
        assert_eq!(a, b, "incremental vs full");
    }
}

/// Waits until the transform of `child` wrote a bucket file (base or delta) of `generation`
/// (it pauses there).
fn wait_for_a_bucket_of(dir: &Path, generation: u64) {
    wait_for(
        std::time::Duration::from_secs(120),
        "a bucket file of the new generation",
        || {
            std::fs::read_dir(dir)
                .ok()?
                .flatten()
                .any(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    avesa_console::transform::layout::generation_of(&name) == Some(generation)
                })
                .then_some(())
        },
    );
}

#[test]
fn a_transform_killed_mid_merge_leaves_the_old_version_and_the_next_one_completes_it() {
    let fx = Fixture::new();
    fx.tune(6000, 100);
    let sandbox = fx.start_sandbox(&[]);
    let company = company_of(&fx, "acme");
    backfill(&fx, &sandbox);
    let before = rows_now(&fx);
    let old = manifest(&fx);
    edit(&sandbox, &company, 40, anchor() + Duration::hours(6));

    // The sync's hand-off merges and pauses after its first bucket file.
    let mut child = fx
        .command(Some(&sandbox), &SYNC)
        .env(BUCKET_BYTES_ENV, BUCKET_BYTES)
        .env(MERGE_PAUSE_ENV, "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_a_bucket_of(&table_dir(&fx), old.generation + 1);
    // A reader now sees the old version whole.
    assert_eq!(manifest(&fx), old);
    assert_eq!(rows_now(&fx), before, "a reader during the merge");
    child.kill().unwrap(); // SIGKILL
    assert!(!child.wait().unwrap().success(), "finished before the kill");
    assert_eq!(rows_now(&fx), before, "a reader after the kill");

    let out = cli(
        &fx,
        &sandbox,
        &["transform", "--tenant-id", "acme", "--table", "tickets"],
    );
    assert_ok(&out);
    let resumed = manifest(&fx);
    assert_eq!(resumed.generation, old.generation + 1);
    assert!(
        resumed.files.iter().any(|f| !f.deltas.is_empty()),
        "the merge wrote deltas: {resumed:?}"
    );
    let after = rows_now(&fx);
    assert_ne!(after, before, "the edits were merged");
    // Besides the two versions' files, only the killed transform's are left (same generation,
    // another writer: it could have been a transform still writing).
    left_over_files(&fx, &[&resumed, &old], Some(resumed.generation));

    full_transform(&fx, &sandbox);
    assert_eq!(after, rows_now(&fx), "the rows of an uninterrupted run");
    // The next version removes them.
    left_over_files(&fx, &[&manifest(&fx), &resumed], None);
}

/// Asserts every file in the table's folder is named by one of `versions`, or is of
/// generation `unnamed` (at least one such file, when given).
fn left_over_files(fx: &Fixture, versions: &[&Manifest], unnamed: Option<u64>) {
    let named: BTreeSet<String> = versions
        .iter()
        .flat_map(|m| file_names(m))
        .chain([MANIFEST_FILE.to_string()])
        .collect();
    let mut others = 0;
    for e in std::fs::read_dir(table_dir(fx)).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if named.contains(&name) {
            continue;
        }
        let generation = avesa_console::transform::layout::generation_of(&name);
        assert!(
            unnamed.is_some() && generation == unnamed,
            "{name} is named by no manifest"
        );
        others += 1;
    }
    assert_eq!(others > 0, unnamed.is_some(), "{others} unnamed file(s)");
}

/// The README's DuckDB query ("Reading a canonical table"), run as written (only its folder
/// substituted) on a backfilled table a sync then merged deltas into: it reads the manifest's
/// bases and deltas, applies the resolution rule, and counts the current rows the crate's
/// resolver reads; without the rule the rows a delta supersedes count twice.
#[test]
fn the_readmes_duckdb_query_reads_the_current_rows() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/tools/venv/bin/python");
    let has_duckdb = std::process::Command::new(&python)
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_duckdb {
        skip::skip(
            "the_readmes_duckdb_query_reads_the_current_rows",
            "duckdb is not installed in .ci/tools/venv (scripts/emulators start installs it)",
        );
        return;
    }
    let fx = Fixture::new();
    fx.tune(6000, 100);
    let sandbox = fx.start_sandbox(&[]);
    let company = company_of(&fx, "acme");
    backfill(&fx, &sandbox);
    edit(&sandbox, &company, 8, anchor() + Duration::hours(6));
    assert_ok(&cli(&fx, &sandbox, &SYNC));
    assert!(
        manifest(&fx).files.iter().any(|f| !f.deltas.is_empty()),
        "the sync wrote deltas"
    );
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme.find("**Reading a canonical table.**").unwrap()..];
    let start = section.find("```python\n").unwrap() + "```python\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let dir = format!("{}/", table_dir(&fx).display());
    let script = block
        .lines()
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n")
        .replace("workspace/data/acme/canonical/tickets/connectwise/", &dir)
        + "\nprint('CURRENT', duckdb.sql(f\"SELECT count(*) FROM ({current}) WHERE is_current\").fetchone()[0])\n"
        + "print('UNRESOLVED', duckdb.sql(f\"SELECT count(*) FROM read_parquet({files}) WHERE is_current\").fetchone()[0])\n";
    let out = std::process::Command::new(&python)
        .args(["-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let current: usize = canonical_batches(&fx.data_dir(), "acme", "tickets")
        .iter()
        .map(|b| {
            let c = b.column_by_name("is_current").unwrap();
            let c = c.as_any().downcast_ref::<BooleanArray>().unwrap();
            c.iter().filter(|v| *v == Some(true)).count()
        })
        .sum();
    assert!(current > 0);
    assert!(stdout.contains(&format!("CURRENT {current}\n")), "{stdout}");
    assert!(
        !stdout.contains(&format!("UNRESOLVED {current}\n")),
        "superseded rows are in the files: {stdout}"
    );
    assert!(stdout.contains("status"), "the query's table: {stdout}");
}
