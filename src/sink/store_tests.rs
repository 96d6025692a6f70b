//! Tests of the raw sink's storage side: part naming, atomic puts, listing and clean-up.

use serde_json::Value;

use super::tests::{ints, jan, meta, read, ticket, tickets};
use super::*;

#[test]
fn part_paths_are_deterministic_and_empty_parts_are_skipped() {
    let m = meta("tickets", "2024-01-01T06:30:00Z", "2024-01-02T00:00:00Z");
    assert_eq!(
        RawSink::part_path(&m, 12).to_string(),
        "acme/raw/connectwise/tickets/20240101T063000Z-20240102T000000Z_00012.parquet"
    );
    assert_eq!(
        RawSink::part_path(&m, 12),
        RawSink::part_path(&m.clone(), 12)
    );
    assert_eq!(
        RawSink::table_prefix("acme", Service::Salesforce, "account").to_string(),
        "acme/raw/salesforce/account"
    );

    let mut w = PartWriter::new(m, &tickets()).unwrap();
    assert!(w.finish_part(0).unwrap().is_none());
    assert_eq!(w.append_page(vec![]).unwrap(), 0);
    assert!(w.finish_part(0).unwrap().is_none());
    w.append_page(vec![ticket(1, "2024-01-01T07:00:00Z", "New")])
        .unwrap();
    let part = w.finish_part(3).unwrap().unwrap();
    assert_eq!(
        part.path.filename(),
        Some("20240101T063000Z-20240102T000000Z_00003.parquet")
    );
    assert_eq!(
        (part.rows, w.buffered_rows(), w.buffered_bytes()),
        (1, 0, 0)
    );
    assert!(w.finish_part(4).unwrap().is_none());
    assert!(w.finish_part(4).unwrap().is_none());
    // The writer keeps working for the next part.
    w.append_page(vec![ticket(2, "2024-01-01T08:00:00Z", "New")])
        .unwrap();
    assert_eq!(
        ints(&read(w.finish_part(4).unwrap().unwrap().bytes), "id"),
        vec![Some(2)]
    );
}

async fn put_chunk(sink: &RawSink, m: &ChunkMeta, parts: u32) {
    for part in 0..parts {
        let mut w = sink.part_writer(m.clone(), &tickets()).unwrap();
        w.append_page(vec![ticket(i64::from(part), "2024-01-01T07:00:00Z", "New")])
            .unwrap();
        sink.put_part(w.finish_part(part).unwrap().unwrap())
            .await
            .unwrap();
    }
}

fn names(files: &[object_store::path::Path]) -> Vec<&str> {
    files.iter().map(|p| p.filename().unwrap()).collect()
}

#[tokio::test]
async fn remove_parts_from_touches_only_this_chunks_later_parts() {
    let dir = tempfile::tempdir().unwrap();
    let sink = RawSink::local(dir.path()).unwrap();
    let a = jan();
    let b = meta("tickets", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z");
    let other_table = meta(
        "time_entries",
        "2024-01-01T00:00:00Z",
        "2024-02-01T00:00:00Z",
    );
    // Same start, shorter window: another job's chunk that must stay untouched.
    let fortnight = meta("tickets", "2024-01-01T00:00:00Z", "2024-01-15T00:00:00Z");
    put_chunk(&sink, &a, 4).await;
    put_chunk(&sink, &b, 3).await;
    put_chunk(&sink, &other_table, 3).await;
    put_chunk(&sink, &fortnight, 2).await;
    assert_eq!(sink.remove_parts_from(&fortnight, 0).await.unwrap(), 2);

    assert_eq!(sink.remove_parts_from(&a, 2).await.unwrap(), 2);
    let files = sink
        .list_table_files("acme", Service::Connectwise, "tickets")
        .await
        .unwrap();
    assert_eq!(
        names(&files),
        vec![
            "20240101T000000Z-20240201T000000Z_00000.parquet",
            "20240101T000000Z-20240201T000000Z_00001.parquet",
            "20240201T000000Z-20240301T000000Z_00000.parquet",
            "20240201T000000Z-20240301T000000Z_00001.parquet",
            "20240201T000000Z-20240301T000000Z_00002.parquet",
        ]
    );
    let others = sink
        .list_table_files("acme", Service::Connectwise, "time_entries")
        .await
        .unwrap();
    assert_eq!(others.len(), 3);
    assert_eq!(sink.remove_parts_from(&a, 2).await.unwrap(), 0);
    assert_eq!(sink.remove_parts_from(&a, 0).await.unwrap(), 2);
    let files = sink
        .list_table_files("acme", Service::Connectwise, "tickets")
        .await
        .unwrap();
    assert_eq!(files.len(), 3);
    let empty = sink
        .list_table_files("nobody", Service::Connectwise, "tickets")
        .await
        .unwrap();
    assert!(empty.is_empty());
}

#[tokio::test]
async fn a_put_leaves_exactly_the_final_file_and_a_retry_overwrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let sink = RawSink::local(dir.path()).unwrap();
    let m = jan();
    put_chunk(&sink, &m, 1).await;
    let mut w = sink.part_writer(m.clone(), &tickets()).unwrap();
    let page: Vec<Value> = (10..20)
        .map(|i| ticket(i, "2024-01-01T07:00:00Z", "retry"))
        .collect();
    w.append_page(page).unwrap();
    let info = sink
        .put_part(w.finish_part(0).unwrap().unwrap())
        .await
        .unwrap();
    assert_eq!(info.rows, 10);

    let table_dir = dir.path().join("acme/raw/connectwise/tickets");
    let on_disk: Vec<String> = std::fs::read_dir(&table_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        on_disk,
        vec!["20240101T000000Z-20240201T000000Z_00000.parquet".to_owned()]
    );
    let bytes = std::fs::read(table_dir.join(&on_disk[0])).unwrap();
    assert_eq!(bytes.len() as u64, info.bytes);
    assert_eq!(ints(&read(bytes.into()), "id").len(), 10);
}

#[tokio::test]
async fn staging_files_left_by_a_killed_put_are_removed_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let sink = RawSink::local(dir.path()).unwrap();
    let m = jan();
    put_chunk(&sink, &m, 1).await;
    let table_dir = dir.path().join("acme/raw/connectwise/tickets");
    // What LocalFileSystem leaves when the process dies between write and rename.
    let staged = table_dir.join("20240101T000000Z-20240201T000000Z_00001.parquet#1");
    let other = table_dir.join("20240201T000000Z-20240301T000000Z_00000.parquet#1");
    std::fs::write(&staged, b"partial").unwrap();
    std::fs::write(&other, b"partial").unwrap();
    assert_eq!(sink.remove_parts_from(&m, 1).await.unwrap(), 1);
    assert!(!staged.exists());
    assert!(
        other.exists(),
        "another chunk's staging file is not this chunk's to remove"
    );
    assert!(
        table_dir
            .join("20240101T000000Z-20240201T000000Z_00000.parquet")
            .exists()
    );
}
