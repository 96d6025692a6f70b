//! SCD Type 2 builder and transform job tests over small hand-made batches.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{
    Array, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema};

use super::*;
use crate::config::{CanonicalColumn, ColumnDef, ColumnType};
use object_store::PutPayload;

const T0: i64 = 1_700_000_000_000_000;
const HOUR: i64 = 3_600_000_000;

fn endpoint() -> EndpointDef {
    EndpointDef {
        path: "service/tickets".into(),
        table_name: "tickets".into(),
        id_field: "id".into(),
        incremental_field: "_info__lastUpdated".into(),
        query_field: None,
        page_size: 100,
        columns: vec![
            ColumnDef {
                name: "id".into(),
                kind: ColumnType::Int64,
            },
            ColumnDef {
                name: "status__name".into(),
                kind: ColumnType::String,
            },
            ColumnDef {
                name: "_info__lastUpdated".into(),
                kind: ColumnType::Timestamp,
            },
        ],
    }
}

fn table() -> CanonicalTable {
    let mut columns = BTreeMap::new();
    columns.insert("status".to_string(), "status__name".to_string());
    columns.insert("updated_at".to_string(), "_info__lastUpdated".to_string());
    let mut sources = BTreeMap::new();
    sources.insert(
        Service::Connectwise,
        SourceMapping {
            table: "tickets".into(),
            columns,
        },
    );
    CanonicalTable {
        table: "tickets".into(),
        description: None,
        columns: vec![
            CanonicalColumn {
                name: "status".into(),
                kind: ColumnType::String,
            },
            CanonicalColumn {
                name: "updated_at".into(),
                kind: ColumnType::Timestamp,
            },
        ],
        sources,
    }
}

/// A raw batch: rows of (id, status, version time offset in hours, ingested offset).
fn raw(rows: &[(i64, &str, i64, i64)]) -> RecordBatch {
    let ts = || DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("status__name", DataType::Utf8, true),
        Field::new("_info__lastUpdated", ts(), true),
        Field::new("_avesa_job_id", DataType::Utf8, false),
        Field::new("_avesa_ingested_at", ts(), false),
    ]));
    let stamp = |v: Vec<i64>| Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
            stamp(rows.iter().map(|r| T0 + r.2 * HOUR).collect()),
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| format!("job{}", r.3))
                    .collect::<Vec<_>>(),
            )),
            stamp(rows.iter().map(|r| T0 + r.3 * HOUR).collect()),
        ],
    )
    .unwrap()
}

fn history(batches: &[RecordBatch]) -> (RecordBatch, Scd2Stats) {
    let (t, ep) = (table(), endpoint());
    let src = &t.sources[&Service::Connectwise];
    let mapped: Vec<_> = batches
        .iter()
        .map(|b| map_raw(b, &t, src, &ep, "test").unwrap())
        .collect();
    let ctx = Scd2Context {
        tenant_id: "acme",
        service: "connectwise",
        source_table: "tickets",
        table: &t,
        unhashed: vec!["updated_at".into()],
    };
    build_scd2(&mapped, &ctx).unwrap()
}

/// (record_id, status, start hours, end hours, current)
fn rows(b: &RecordBatch) -> Vec<(String, String, i64, Option<i64>, bool)> {
    let s = |n: &str| {
        b.column_by_name(n)
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone()
    };
    let t = |n: &str| {
        b.column_by_name(n)
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap()
            .clone()
    };
    let (ids, status, start, end) = (
        s("record_id"),
        s("status"),
        t("effective_start"),
        t("effective_end"),
    );
    let current = b
        .column_by_name("is_current")
        .unwrap()
        .as_any()
        .downcast_ref::<BooleanArray>()
        .unwrap()
        .clone();
    (0..b.num_rows())
        .map(|i| {
            (
                ids.value(i).to_string(),
                status.value(i).to_string(),
                (start.value(i) - T0) / HOUR,
                (!end.is_null(i)).then(|| (end.value(i) - T0) / HOUR),
                current.value(i),
            )
        })
        .collect()
}

fn row(
    id: &str,
    status: &str,
    start: i64,
    end: Option<i64>,
) -> (String, String, i64, Option<i64>, bool) {
    (id.into(), status.into(), start, end, end.is_none())
}

#[test]
fn versions_chain_their_effective_dates_and_one_is_current() {
    let (out, stats) = history(&[raw(&[
        (1000, "New", 0, 0),
        (1000, "Open", 5, 0),
        (1000, "Closed", 9, 0),
        (999, "New", 2, 0),
    ])]);
    assert_eq!(
        rows(&out),
        vec![
            row("999", "New", 2, None),
            row("1000", "New", 0, Some(5)),
            row("1000", "Open", 5, Some(9)),
            row("1000", "Closed", 9, None),
        ],
        "numeric ids sort as numbers; each end is the next start"
    );
    assert_eq!((stats.versions, stats.records, stats.rows_in), (4, 2, 4));
}

#[test]
fn the_same_version_landed_twice_is_kept_once_from_the_latest_read() {
    // A backfill read (ingested at 1) and a sync read (ingested at 7) of version 5.
    let (out, stats) = history(&[
        raw(&[(1, "New", 0, 1), (1, "Open", 5, 1)]),
        raw(&[(1, "Open", 5, 7), (1, "Closed", 8, 7)]),
    ]);
    assert_eq!(
        rows(&out),
        vec![
            row("1", "New", 0, Some(5)),
            row("1", "Open", 5, Some(8)),
            row("1", "Closed", 8, None)
        ]
    );
    assert_eq!(stats.duplicates, 1);
    let jobs = out
        .column_by_name("source_job_id")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .clone();
    assert_eq!(jobs.value(1), "job7", "the later read of a version wins");
}

#[test]
fn unchanged_versions_fold_into_the_earliest_but_a_return_to_old_values_is_kept() {
    let (out, stats) = history(&[raw(&[
        (1, "Open", 0, 0),
        (1, "Open", 3, 0),
        (1, "Closed", 6, 0),
        (1, "Open", 9, 0),
        (1, "Open", 12, 0),
    ])]);
    assert_eq!(
        rows(&out),
        vec![
            row("1", "Open", 0, Some(6)),
            row("1", "Closed", 6, Some(9)),
            row("1", "Open", 9, None)
        ]
    );
    assert_eq!((stats.unchanged, stats.versions), (2, 3));
}

#[test]
fn input_order_never_changes_the_output_bytes() {
    let a = raw(&[
        (3, "A", 0, 0),
        (1, "B", 1, 0),
        (2, "C", 2, 0),
        (1, "D", 4, 0),
    ]);
    let b = raw(&[
        (1, "D", 4, 0),
        (2, "C", 2, 0),
        (1, "B", 1, 0),
        (3, "A", 0, 0),
    ]);
    let (x, _) = history(&[a.clone(), b.clone()]);
    let (y, _) = history(&[b, a]);
    assert_eq!(encode(&x).unwrap(), encode(&y).unwrap());
}

#[test]
fn record_hashes_ignore_the_version_time_but_not_the_values() {
    let (out, _) = history(&[raw(&[(1, "A", 0, 0), (2, "A", 5, 0), (3, "B", 0, 0)])]);
    let h = out
        .column_by_name("record_hash")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .clone();
    assert_eq!(h.value(0), h.value(1), "same values at another time");
    assert_ne!(h.value(0), h.value(2));
    assert_eq!(h.value(0).len(), 32);
}

/// Puts raw files under acme's ConnectWise tickets.
async fn put_raw(sink: &RawSink, files: Vec<(String, RecordBatch)>) {
    let store = sink.store();
    for (name, batch) in files {
        let path = RawSink::table_prefix("acme", Service::Connectwise, "tickets").join(name);
        store
            .put(&path, PutPayload::from_bytes(encode(&batch).unwrap()))
            .await
            .unwrap();
    }
}

/// The shipped configuration with the test's one endpoint and canonical table.
fn test_config() -> crate::config::Config {
    let mut config = crate::config::Config::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"),
    )
    .unwrap();
    config.canonical = vec![table()];
    config.endpoints = vec![crate::config::ServiceEndpoints {
        service: Service::Connectwise,
        endpoints: vec![endpoint()],
    }];
    config
}

/// The current manifest of acme's ConnectWise tickets.
async fn manifest(sink: &RawSink) -> Manifest {
    layout::read_manifest(&sink.store(), "acme", "tickets", Service::Connectwise)
        .await
        .unwrap()
        .expect("a manifest")
}

/// The current rows of the canonical tickets (`resolve::read_current`, through the manifest).
async fn read_canonical(sink: &RawSink) -> Vec<RecordBatch> {
    read_current(&sink.store(), "acme", "tickets", Service::Connectwise)
        .await
        .unwrap()
}

fn request(mode: TransformMode) -> TransformRequest {
    TransformRequest {
        tenant_id: "acme".into(),
        tables: vec![],
        services: vec![],
        mode,
    }
}

/// Names of the files in the canonical tickets' folder.
fn names_in_table_dir(root: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("acme/canonical/tickets/connectwise"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_job_reads_raw_through_the_sink_and_a_full_rebuild_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let sink = RawSink::local(dir.path()).unwrap();
    put_raw(
        &sink,
        vec![
            (
                "a_00000.parquet".into(),
                raw(&[(1, "New", 0, 0), (2, "New", 1, 0)]),
            ),
            (
                "b_00000.parquet".into(),
                raw(&[(1, "Open", 3, 2), (2, "New", 1, 2)]),
            ),
        ],
    )
    .await;
    let config = test_config();
    let req = request(TransformMode::Incremental);
    let first = run(&config, &sink, &req).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].mode,
        TransformMode::Full,
        "no table yet: a full build"
    );
    assert_eq!(first[0].raw_files, 2);
    assert_eq!((first[0].stats.versions, first[0].stats.duplicates), (3, 1));
    assert_eq!(first[0].buckets, 1);
    assert_eq!(
        first[0].path.as_deref(),
        Some("acme/canonical/tickets/connectwise/_manifest.json")
    );
    let batches = read_canonical(&sink).await;
    assert_eq!(
        rows(&batches[0]),
        vec![
            row("1", "New", 0, Some(3)),
            row("1", "Open", 3, None),
            row("2", "New", 1, None)
        ]
    );
    // Nothing new: nothing read, nothing written.
    let again = run(&config, &sink, &req).await.unwrap();
    assert_eq!((again[0].raw_files, again[0].buckets_written), (0, 0));
    assert_eq!(again[0].generation, 1);
    assert_eq!(again[0].stats.versions, 3);

    let full = run(&config, &sink, &request(TransformMode::Full))
        .await
        .unwrap();
    assert_eq!((full[0].raw_files, full[0].generation), (2, 2));
    // The files differ in their rows' generation only.
    assert_eq!(
        read_canonical(&sink).await,
        batches,
        "a rebuild writes the same rows"
    );
    let m = manifest(&sink).await;
    assert_eq!(m.consumed.len(), 2);
    assert_file(&m.files[0].file, 0, 2, false);

    let unknown = TransformRequest {
        tables: vec!["tickts".into()],
        ..req
    };
    let err = run(&config, &sink, &unknown).await.unwrap_err().to_string();
    assert!(err.contains("tickts") && err.contains("tickets"), "{err}");
}

/// Versions of 300 records over 6 files: edits, re-reads of the same version and unchanged
/// versions, every record's versions spread over several files.
fn six_files() -> Vec<(String, RecordBatch)> {
    (0..6)
        .map(|f: i64| {
            let rows: Vec<(i64, &str, i64, i64)> = (0..300)
                .map(|id| {
                    let status = match (id + f) % 3 {
                        0 => "New",
                        1 => "Open",
                        _ => "Closed",
                    };
                    // Files 4 and 5 read again the versions files 2 and 3 landed.
                    let version = if f >= 4 { f - 2 } else { f };
                    (id, status, version * 10 + id % 7, f)
                })
                .collect();
            (format!("{f}_00000.parquet"), raw(&rows))
        })
        .collect()
}

type Row = (String, String, i64, Option<i64>, bool);

fn sorted_rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut all: Vec<Row> = batches.iter().flat_map(rows).collect();
    all.sort_by_key(|r| (r.0.parse::<i64>().unwrap(), r.2));
    all
}

#[tokio::test]
async fn a_history_built_in_many_buckets_is_the_history_built_in_one() {
    let config = test_config();
    let req = request(TransformMode::Full);
    let (one_dir, many_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (one, many) = (
        RawSink::local(one_dir.path()).unwrap(),
        RawSink::local(many_dir.path()).unwrap(),
    );
    put_raw(&one, six_files()).await;
    put_raw(&many, six_files()).await;

    let whole = run(&config, &one, &req).await.unwrap();
    // One raw byte per bucket: as many buckets as allowed.
    let parts = run_with(&config, &many, &req, 1).await.unwrap();
    assert_eq!(whole[0].buckets, 1);
    assert_eq!(parts[0].buckets, spill::MAX_BUCKETS as usize);
    assert_eq!(parts[0].stats, whole[0].stats);
    assert!(whole[0].stats.duplicates > 0 && whole[0].stats.unchanged > 0);
    assert_eq!(whole[0].stats.records, 300);
    let m = manifest(&many).await;
    assert_eq!(m.files.len(), parts[0].buckets_written);
    assert!(m.files.iter().all(|f| f.rows > 0 && f.records > 0));
    assert_eq!(m.rows(), whole[0].stats.versions);

    let whole_batches = read_canonical(&one).await;
    let part_batches = read_canonical(&many).await;
    assert_eq!(sorted_rows(&part_batches), sorted_rows(&whole_batches));
    // Each record's versions are in one bucket, in order.
    let mut seen = std::collections::BTreeSet::new();
    for w in part_batches
        .iter()
        .flat_map(rows)
        .collect::<Vec<_>>()
        .windows(2)
    {
        if w[0].0 == w[1].0 {
            assert!(w[0].2 < w[1].2 && w[0].3 == Some(w[1].2), "{w:?}");
        } else {
            assert!(seen.insert(w[0].0.clone()), "{} is split", w[0].0);
        }
    }
    run_with(&config, &many, &req, 1).await.unwrap();
    assert_eq!(
        read_canonical(&many).await,
        part_batches,
        "a rebuild writes the same rows"
    );
}

/// `part` with one more version (record 7 at hour 40).
fn retried_part(part: &RecordBatch) -> RecordBatch {
    arrow_select::concat::concat_batches(&part.schema(), [part, &raw(&[(7, "Open", 40, 9)])])
        .unwrap()
}

#[tokio::test]
async fn merging_raw_files_as_they_land_gives_the_rows_of_a_full_build() {
    let config = test_config();
    let (dir, full_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sink, full) = (
        RawSink::local(dir.path()).unwrap(),
        RawSink::local(full_dir.path()).unwrap(),
    );
    let files = six_files();
    let incremental = request(TransformMode::Incremental);
    // The first two files build the table (in several buckets at this bucket size), then the files
    // land one at a time, each followed by a merge.
    put_raw(&sink, files[..2].to_vec()).await;
    let first = run_with(&config, &sink, &incremental, 1_000).await.unwrap();
    let buckets = first[0].buckets;
    assert!(buckets > 4, "{buckets} bucket(s)");
    for (i, file) in files[2..].iter().enumerate() {
        put_raw(&sink, vec![file.clone()]).await;
        let r = run_with(&config, &sink, &incremental, 1_000).await.unwrap();
        assert_eq!(r[0].mode, TransformMode::Incremental);
        assert_eq!(
            (r[0].raw_files, r[0].buckets),
            (1, buckets),
            "only the new file"
        );
        assert_eq!(r[0].generation, i as u64 + 2);
        assert_eq!(r[0].stats.rows_in, 300);
    }
    // A raw part rewritten (a retried chunk, same name, other size: the versions it had and
    // one more) is read again.
    let retried = ("5_00000.parquet".to_string(), retried_part(&files[5].1));
    put_raw(&sink, vec![retried.clone()]).await;
    let r = run_with(&config, &sink, &incremental, 1_000).await.unwrap();
    assert_eq!((r[0].raw_files, r[0].stats.rows_in), (1, 301));
    // A single record's edit touches only its bucket, with a delta.
    put_raw(
        &sink,
        vec![("6_00000.parquet".into(), raw(&[(8, "Waiting", 90, 10)]))],
    )
    .await;
    let r = run_with(&config, &sink, &incremental, 1_000).await.unwrap();
    assert_eq!((r[0].buckets_written, r[0].deltas_written), (1, 1));
    assert!(
        r[0].bytes * 4 < r[0].table_bytes,
        "{} of {}",
        r[0].bytes,
        r[0].table_bytes
    );

    let mut all = six_files();
    all[5] = retried;
    all.push(("6_00000.parquet".into(), raw(&[(8, "Waiting", 90, 10)])));
    put_raw(&full, all).await;
    let f = run_with(&config, &full, &request(TransformMode::Full), 1_000)
        .await
        .unwrap();
    assert_eq!(f[0].stats.versions, r[0].stats.versions);
    let (merged, rebuilt) = (read_canonical(&sink).await, read_canonical(&full).await);
    assert_eq!(sorted_rows(&merged), sorted_rows(&rebuilt), "row for row");
    // Only the current version's files (bases and deltas of any generation) and the files of
    // the one before it are left.
    let m = manifest(&sink).await;
    let named: Vec<&str> = m
        .files
        .iter()
        .flat_map(|f| f.files().map(|(n, _)| n))
        .collect();
    for name in names_in_table_dir(dir.path()) {
        let g = layout::generation_of(&name).unwrap_or(m.generation);
        assert!(
            named.contains(&name.as_str()) || g + 1 >= m.generation,
            "{name} left behind"
        );
    }
}

#[tokio::test]
async fn a_table_of_the_single_file_layout_is_rebuilt_and_its_file_removed() {
    let dir = tempfile::tempdir().unwrap();
    let sink = RawSink::local(dir.path()).unwrap();
    put_raw(&sink, six_files()).await;
    let single = layout::single_file_path("acme", "tickets", Service::Connectwise);
    sink.store()
        .put(&single, PutPayload::from_static(b"old"))
        .await
        .unwrap();
    let r = run(&test_config(), &sink, &request(TransformMode::Incremental))
        .await
        .unwrap();
    assert_eq!(r[0].mode, TransformMode::Full);
    assert!(!dir.path().join(single.as_ref()).exists());
    // A manifest written under another mapping: rebuilt in full too.
    let mut m = manifest(&sink).await;
    m.mapping = "other".into();
    layout::write_manifest(
        &sink.store(),
        &layout::table_dir("acme", "tickets", Service::Connectwise),
        &m,
    )
    .await
    .unwrap();
    let r = run(&test_config(), &sink, &request(TransformMode::Incremental))
        .await
        .unwrap();
    assert_eq!((r[0].mode, r[0].raw_files), (TransformMode::Full, 6));
}

#[tokio::test]
async fn a_file_larger_than_a_part_goes_up_in_parts_and_leaves_nothing_else() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let sink = RawSink::local(dir.path()).unwrap();
    let store = sink.store();
    let name = layout::bucket_file_name(0, 1, &layout::writer_token());
    let path = layout::table_dir("acme", "tickets", Service::Connectwise).join(name.as_str());
    let content: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 % 251) as u8).collect();
    for part in [64 * 1024, 4 * 1024 * 1024] {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&content).unwrap();
        let sent = upload(&store, &path, file, part).await.unwrap();
        assert_eq!(sent, content.len() as u64);
        let got = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.as_ref(), content.as_slice(), "part size {part}");
        assert_eq!(
            names_in_table_dir(dir.path()),
            vec![name.clone()],
            "part size {part}"
        );
    }
}

/// A transform starts by removing the spill folders that transforms killed on this host left
/// in the temporary directory.
#[tokio::test]
async fn a_transform_removes_the_spill_folder_a_killed_one_left() {
    let host = crate::process::local_host();
    let left = std::env::temp_dir().join(format!("avesa-spill-{host}-4294967290"));
    std::fs::create_dir_all(left.join("spill-killed")).unwrap();
    std::fs::write(left.join("spill-killed").join("0000.parquet"), b"rows").unwrap();
    let data = tempfile::tempdir().unwrap();
    let req = request(TransformMode::Incremental);
    run(&test_config(), &RawSink::local(data.path()).unwrap(), &req)
        .await
        .unwrap();
    assert_eq!(left.exists(), !std::path::Path::new("/proc").is_dir());
}

/// A raw file is copied to a local file and read back a raw row group's worth of rows at a
/// time, each batch mapped and handed on before the next is read; an error from the
/// receiver stops the read.
#[tokio::test]
async fn a_raw_file_is_read_from_a_local_copy_a_batch_at_a_time() {
    use std::io::{Read, Seek};
    let dir = tempfile::tempdir().unwrap();
    let sink = RawSink::local(dir.path()).unwrap();
    let store = sink.store();
    let rows: Vec<(i64, &str, i64, i64)> = (0..20_000).map(|i| (i, "New", i, 0)).collect();
    let bytes = encode(&raw(&rows)).unwrap();
    let path = Path::from("acme/connectwise/tickets/big.parquet");
    store
        .put(&path, PutPayload::from(bytes.clone()))
        .await
        .unwrap();
    let mut local = download(&store, &path).await.unwrap();
    let mut copied = Vec::new();
    local.read_to_end(&mut copied).unwrap();
    local.rewind().unwrap();
    assert_eq!(copied, bytes.as_ref(), "the local copy is the object");
    let (t, ep) = (table(), endpoint());
    let src = t.sources[&Service::Connectwise].clone();
    let mut sizes = Vec::new();
    read_mapped(local, &t, &src, &ep, "big", |b| {
        sizes.push(b.num_rows());
        Ok(())
    })
    .unwrap();
    let last = 20_000 - 2 * RAW_BATCH_ROWS;
    assert_eq!(sizes, vec![RAW_BATCH_ROWS, RAW_BATCH_ROWS, last]);
    let local = download(&store, &path).await.unwrap();
    let mut calls = 0;
    let err = read_mapped(local, &t, &src, &ep, "big", |_| {
        calls += 1;
        Err(TransformError::Store("receiver full".into()))
    })
    .unwrap_err();
    assert!(err.to_string().contains("receiver full"), "{err}");
    assert_eq!(calls, 1);
}

/// Builds acme's tickets from `base` (one bucket at the shipped bucket size), then merges
/// each of `syncs` in turn; returns the merges' reports, and checks the merged rows equal a
/// full build's of the same raw files.
/// `name` is a base (or a delta) file of `bucket` written at `generation`.
fn assert_file(name: &str, bucket: usize, generation: u64, delta: bool) {
    assert_eq!(layout::generation_of(name), Some(generation), "{name}");
    assert!(name.starts_with(&format!("b{bucket:04}-")), "{name}");
    assert_eq!(name.ends_with("-delta.parquet"), delta, "{name}");
}

async fn merge_syncs(
    base: Vec<(i64, &str, i64, i64)>,
    syncs: Vec<Vec<(i64, &str, i64, i64)>>,
) -> (Vec<TransformReport>, Vec<Manifest>) {
    let config = test_config();
    let (dir, full_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sink, full) = (
        RawSink::local(dir.path()).unwrap(),
        RawSink::local(full_dir.path()).unwrap(),
    );
    let mut files = vec![("base_00000.parquet".to_string(), raw(&base))];
    put_raw(&sink, files.clone()).await;
    let incremental = request(TransformMode::Incremental);
    run(&config, &sink, &incremental).await.unwrap();
    let (mut reports, mut manifests) = (Vec::new(), vec![manifest(&sink).await]);
    for (i, rows) in syncs.iter().enumerate() {
        let file = (format!("sync{i}_00000.parquet"), raw(rows));
        put_raw(&sink, vec![file.clone()]).await;
        files.push(file);
        let r = run(&config, &sink, &incremental).await.unwrap();
        assert_eq!(r[0].mode, TransformMode::Incremental);
        reports.push(r[0].clone());
        manifests.push(manifest(&sink).await);
    }
    put_raw(&full, files).await;
    run(&config, &full, &request(TransformMode::Full))
        .await
        .unwrap();
    let (merged, rebuilt) = (read_canonical(&sink).await, read_canonical(&full).await);
    assert_eq!(sorted_rows(&merged), sorted_rows(&rebuilt), "row for row");
    let m = manifests.last().unwrap();
    assert_eq!(
        m.rows(),
        merged.iter().map(|b| b.num_rows() as u64).sum::<u64>()
    );
    let current = merged.iter().flat_map(rows).filter(|r| r.4).count() as u64;
    assert_eq!(
        m.records(),
        current,
        "records are the resolved current rows"
    );
    (reports, manifests)
}

/// A sync of 1 % of a table's records writes a delta per bucket it touches, a small share of
/// the table's bytes, and leaves the bases as they were.
#[tokio::test]
async fn a_one_percent_sync_writes_small_deltas_and_keeps_the_bases() {
    // Statuses of many values, as a real table's columns have: the base does not compress to
    // next to nothing.
    let statuses: Vec<String> = (0..40_000u64)
        .map(|id| format!("status {:x}", id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40))
        .collect();
    let base: Vec<_> = (0..40_000)
        .map(|id| (id, statuses[id as usize].as_str(), id % 500, 0))
        .collect();
    let sync: Vec<_> = (0..400)
        .map(|i| (i * 100 + 7, "Reopened", 600 + i, 1))
        .collect();
    let (reports, manifests) = merge_syncs(base, vec![sync]).await;
    let (r, before, after) = (&reports[0], &manifests[0], &manifests[1]);
    assert_eq!((r.buckets_written, r.deltas_written), (1, 1), "{r:?}");
    assert_eq!(after.files[0].file, before.files[0].file, "the base stays");
    assert_eq!(after.files[0].deltas.len(), 1);
    let delta = &after.files[0].deltas[0];
    assert_file(&delta.file, 0, 2, true);
    // The 400 new versions and the 400 versions they closed.
    assert_eq!((delta.rows, delta.generation), (800, 2));
    assert_eq!(r.bytes, delta.bytes);
    assert!(
        r.bytes * 100 < 5 * r.table_bytes,
        "{} bytes written of {}",
        r.bytes,
        r.table_bytes
    );
    assert_eq!(after.rows(), 40_400);
    assert_eq!(after.records(), 40_000);
}

/// Deltas that reach `FOLD_SHARE_PERCENT` of a bucket's rows are folded into a new base.
#[tokio::test]
async fn deltas_past_their_share_are_folded_into_a_new_base() {
    let base: Vec<_> = (0..100).map(|id| (id, "New", 0, 0)).collect();
    let edit = |from: i64, hour: i64| -> Vec<_> {
        (from..from + 30)
            .map(|id| (id, "Open", hour, hour))
            .collect()
    };
    let (reports, manifests) = merge_syncs(base, vec![edit(0, 1), edit(30, 2), edit(60, 3)]).await;
    // 60 delta rows of 130: a delta. 60 more: 120 of 160, past the share: a base.
    assert_eq!(reports[0].deltas_written, 1);
    assert_eq!(manifests[1].files[0].delta_rows(), 60);
    assert_eq!(reports[1].deltas_written, 0, "folded");
    assert_file(&manifests[2].files[0].file, 0, 3, false);
    assert!(manifests[2].files[0].deltas.is_empty());
    assert_eq!(manifests[2].files[0].rows, 160);
    // Deltas start again over the new base.
    assert_eq!(reports[2].deltas_written, 1);
    assert_eq!(manifests[3].files[0].deltas.len(), 1);
}

/// A version that lands after a later one of its record, with the later one's values, makes
/// the later one unchanged: its row leaves the history, which a delta cannot say, so the
/// bucket gets a new base.
#[tokio::test]
async fn a_late_version_that_removes_a_row_rewrites_the_base() {
    let base: Vec<_> = (0..50)
        .flat_map(|id| [(id, "New", 0, 0), (id, "Open", 10, 0)])
        .collect();
    let (reports, manifests) = merge_syncs(base, vec![vec![(3, "Open", 5, 1)]]).await;
    assert_eq!(
        (reports[0].buckets_written, reports[0].deltas_written),
        (1, 0)
    );
    let bucket = &manifests[1].files[0];
    assert_file(&bucket.file, 0, 2, false);
    assert!(bucket.deltas.is_empty());
    assert_eq!(
        bucket.rows, 100,
        "record 3's version at 10 folded into the one at 5"
    );
}

/// A sync that brings only versions the table has (read again) writes nothing.
#[tokio::test]
async fn versions_read_again_write_no_file() {
    let base: Vec<_> = (0..50).map(|id| (id, "New", 0, 0)).collect();
    let (reports, manifests) = merge_syncs(base, vec![vec![(3, "New", 0, 0)]]).await;
    assert_eq!(reports[0].buckets_written, 0);
    assert_eq!(manifests[1].files, manifests[0].files);
}

/// Two transforms of one table at once (two processes) build the same generation from the
/// same version; each writes files of its own, so the manifest put last names files holding
/// exactly the versions it says it read. Here W reads two syncs and puts its manifest last;
/// L, started before the second sync landed, writes and puts in between.
#[tokio::test]
async fn two_transforms_building_one_generation_never_write_each_others_files() {
    let config = test_config();
    let (dir, full_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sink, full) = (
        RawSink::local(dir.path()).unwrap(),
        RawSink::local(full_dir.path()).unwrap(),
    );
    let rows: Vec<_> = (0..50).map(|id| (id, "New", 0, 0)).collect();
    let base = ("base_00000.parquet".to_string(), raw(&rows));
    let s1 = ("s1_00000.parquet".to_string(), raw(&[(1, "Open", 5, 1)]));
    let s2 = ("s2_00000.parquet".to_string(), raw(&[(3, "Closed", 6, 2)]));
    let incremental = request(TransformMode::Incremental);
    put_raw(&sink, vec![base.clone()]).await;
    run(&config, &sink, &incremental).await.unwrap();
    let (store, table) = (
        sink.store(),
        layout::table_dir("acme", "tickets", Service::Connectwise),
    );
    let first = manifest(&sink).await;
    put_raw(&sink, vec![s1.clone(), s2.clone()]).await;
    run(&config, &sink, &incremental).await.unwrap();
    let w = manifest(&sink).await;
    // L: from the same version, without the second sync.
    let s2_path =
        RawSink::table_prefix("acme", Service::Connectwise, "tickets").join(s2.0.as_str());
    store.delete(&s2_path).await.unwrap();
    layout::write_manifest(&store, &table, &first)
        .await
        .unwrap();
    run(&config, &sink, &incremental).await.unwrap();
    let l = manifest(&sink).await;
    assert_eq!((l.generation, w.generation), (2, 2));
    assert_ne!(l.files[0].deltas, w.files[0].deltas);
    // W's manifest is put last.
    put_raw(&sink, vec![s2.clone()]).await;
    layout::write_manifest(&store, &table, &w).await.unwrap();

    put_raw(&full, vec![base, s1, s2]).await;
    run(&config, &full, &request(TransformMode::Full))
        .await
        .unwrap();
    assert_eq!(
        sorted_rows(&read_canonical(&sink).await),
        sorted_rows(&read_canonical(&full).await),
        "W's files hold W's versions"
    );
    let next = run(&config, &sink, &incremental).await.unwrap();
    assert_eq!(next[0].raw_files, 0, "W read every raw file");
}
