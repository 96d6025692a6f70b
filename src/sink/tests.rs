//! Tests of the raw sink: round trips through a LocalFileSystem, de-duplication, coercions,
//! refused pages, part naming and clean-up.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, TimeZone, Utc};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

use super::*;
use crate::config::{ColumnDef, ColumnType, EndpointDef, ServiceEndpoints};

pub(super) fn endpoint(id_kind: ColumnType, columns: &[(&str, ColumnType)]) -> EndpointDef {
    let mut cols = vec![ColumnDef {
        name: "id".into(),
        kind: id_kind,
    }];
    cols.extend(columns.iter().map(|(n, k)| ColumnDef {
        name: (*n).into(),
        kind: *k,
    }));
    EndpointDef {
        path: "service/tickets".into(),
        table_name: "tickets".into(),
        id_field: "id".into(),
        incremental_field: "_info__lastUpdated".into(),
        query_field: None,
        page_size: 1000,
        columns: cols,
    }
}

pub(super) fn tickets() -> EndpointDef {
    endpoint(
        ColumnType::Int64,
        &[
            ("summary", ColumnType::String),
            ("status__name", ColumnType::String),
            ("budgetHours", ColumnType::Float64),
            ("closedFlag", ColumnType::Bool),
            ("customFields", ColumnType::Json),
            ("_info__lastUpdated", ColumnType::Timestamp),
        ],
    )
}

pub(super) fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub(super) fn meta(table: &str, start: &str, end: &str) -> ChunkMeta {
    ChunkMeta {
        tenant_id: "acme".into(),
        service: Service::Connectwise,
        table: table.into(),
        job_id: "job-1".into(),
        chunk_seq: 0,
        window: Window::new(at(start), at(end)),
        ingested_at: Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap(),
    }
}

pub(super) fn jan() -> ChunkMeta {
    meta("tickets", "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z")
}

pub(super) fn ticket(id: i64, updated: &str, status: &str) -> Value {
    json!({
        "id": id,
        "summary": format!("ticket {id}"),
        "status": {"id": 5, "name": status},
        "budgetHours": 1.5,
        "closedFlag": false,
        "customFields": [{"id": 1, "value": "x"}],
        "_info": {"lastUpdated": updated, "updatedBy": "bot"}
    })
}

/// Encodes the pages as one part and decodes it again.
pub(super) fn round_trip(ep: &EndpointDef, pages: Vec<Vec<Value>>) -> RecordBatch {
    let mut w = PartWriter::new(jan(), ep).unwrap();
    for page in pages {
        w.append_page(page).unwrap();
    }
    let part = w.finish_part(0).unwrap().unwrap();
    read(part.bytes)
}

pub(super) fn read(bytes: bytes::Bytes) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(batches.len(), 1, "expected one batch");
    batches.into_iter().next().unwrap()
}

pub(super) fn strings(b: &RecordBatch, col: &str) -> Vec<Option<String>> {
    let a = b
        .column_by_name(col)
        .unwrap_or_else(|| panic!("no column {col}"));
    a.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect()
}

pub(super) fn ints(b: &RecordBatch, col: &str) -> Vec<Option<i64>> {
    b.column_by_name(col)
        .unwrap()
        .as_primitive::<Int64Type>()
        .iter()
        .collect()
}

pub(super) fn times(b: &RecordBatch, col: &str) -> Vec<Option<i64>> {
    let a = b.column_by_name(col).unwrap();
    a.as_primitive::<TimestampMicrosecondType>()
        .iter()
        .collect()
}

pub(super) fn micros(s: &str) -> Option<i64> {
    Some(at(s).timestamp_micros())
}

pub(super) fn invalid(ep: &EndpointDef, page: Vec<Value>) -> String {
    let mut w = PartWriter::new(jan(), ep).unwrap();
    w.append_page(vec![ticket(99, "2024-01-01T00:00:00Z", "New")])
        .unwrap();
    let err = w.append_page(page).unwrap_err();
    assert!(matches!(err, SinkError::InvalidRecord { .. }), "{err:?}");
    assert_eq!(w.buffered_rows(), 1, "a refused page must append nothing");
    err.to_string()
}

#[tokio::test]
async fn two_pages_round_trip_through_the_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let sink = RawSink::local(&dir.path().join("lake")).unwrap();
    let ep = tickets();
    let mut w = sink.part_writer(jan(), &ep).unwrap();
    let mut first = ticket(1, "2024-01-02T03:04:05Z", "New");
    first["board"] = json!({"id": 30, "_info": {"board_href": "https://b/30"}});
    first["tags"] = json!(["a", "b"]);
    assert_eq!(
        w.append_page(vec![first, ticket(2, "2024-01-03T00:00:00Z", "Open")])
            .unwrap(),
        2
    );
    let mut third = ticket(3, "2024-01-04T00:00:00.250Z", "Closed");
    third["status"] = Value::Null;
    third["customFields"] = Value::Null;
    assert_eq!(w.append_page(vec![third]).unwrap(), 1);
    assert_eq!(w.buffered_rows(), 3);
    assert!(w.buffered_bytes() > 0);

    let part = w.finish_part(0).unwrap().unwrap();
    assert_eq!(part.rows, 3);
    let info = sink.put_part(part).await.unwrap();
    assert_eq!(
        info.path,
        "acme/raw/connectwise/tickets/20240101T000000Z-20240201T000000Z_00000.parquet"
    );
    assert_eq!(info.rows, 3);

    let files = sink
        .list_table_files("acme", Service::Connectwise, "tickets")
        .await
        .unwrap();
    assert_eq!(
        files.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        vec![info.path.clone()]
    );
    let bytes = sink
        .store()
        .get(&files[0])
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.len() as u64, info.bytes);
    let b = read(bytes);

    let names: Vec<&str> = b
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let mut want = vec![
        "id",
        "summary",
        "status__name",
        "budgetHours",
        "closedFlag",
        "customFields",
    ];
    want.push("_info__lastUpdated");
    want.extend(META_COLUMNS);
    assert_eq!(names, want);
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    for col in [
        "_info__lastUpdated",
        "_avesa_chunk_start",
        "_avesa_chunk_end",
        "_avesa_ingested_at",
    ] {
        assert_eq!(
            b.schema().field_with_name(col).unwrap().data_type(),
            &utc,
            "{col}"
        );
    }

    assert_eq!(ints(&b, "id"), vec![Some(1), Some(2), Some(3)]);
    assert_eq!(
        strings(&b, "status__name"),
        vec![Some("New".into()), Some("Open".into()), None]
    );
    assert_eq!(
        strings(&b, "customFields")[0].as_deref(),
        Some(r#"[{"id":1,"value":"x"}]"#)
    );
    assert_eq!(strings(&b, "customFields")[2], None);
    let hours = b
        .column_by_name("budgetHours")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(hours.value(1), 1.5);
    assert!(
        !b.column_by_name("closedFlag")
            .unwrap()
            .as_boolean()
            .value(0)
    );
    assert_eq!(
        times(&b, "_info__lastUpdated"),
        vec![
            micros("2024-01-02T03:04:05Z"),
            micros("2024-01-03T00:00:00Z"),
            micros("2024-01-04T00:00:00.25Z"),
        ]
    );

    assert_eq!(
        strings(&b, "_avesa_tenant_id"),
        vec![Some("acme".into()); 3]
    );
    assert_eq!(
        strings(&b, "_avesa_service"),
        vec![Some("connectwise".into()); 3]
    );
    assert_eq!(strings(&b, "_avesa_table"), vec![Some("tickets".into()); 3]);
    assert_eq!(strings(&b, "_avesa_job_id"), vec![Some("job-1".into()); 3]);
    assert_eq!(
        times(&b, "_avesa_chunk_start"),
        vec![micros("2024-01-01T00:00:00Z"); 3]
    );
    assert_eq!(
        times(&b, "_avesa_chunk_end"),
        vec![micros("2024-02-01T00:00:00Z"); 3]
    );
    assert_eq!(
        times(&b, "_avesa_ingested_at"),
        vec![micros("2024-03-01T12:00:00Z"); 3]
    );
    assert_eq!(
        b.column_by_name("_avesa_tenant_id").unwrap().null_count(),
        0
    );

    let extra: Vec<Value> = strings(&b, "_avesa_extra")
        .into_iter()
        .map(|s| serde_json::from_str(&s.unwrap()).unwrap())
        .collect();
    assert_eq!(
        extra[0],
        json!({"_info__updatedBy": "bot", "board___info__board_href": "https://b/30",
               "board__id": 30, "status__id": 5, "tags": ["a", "b"]})
    );
    assert_eq!(extra[2], json!({"_info__updatedBy": "bot"}));
}

#[test]
fn extra_is_null_when_every_leaf_is_declared() {
    let ep = endpoint(
        ColumnType::Int64,
        &[("_info__lastUpdated", ColumnType::Timestamp)],
    );
    let b = round_trip(
        &ep,
        vec![vec![
            json!({"id": 1, "_info": {"lastUpdated": "2024-01-01T00:00:00Z"}}),
        ]],
    );
    assert_eq!(strings(&b, "_avesa_extra"), vec![None]);
}

#[test]
fn the_connectwise_mapping_flattens_a_ticket() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("mappings/endpoints/connectwise.json");
    let defs = ServiceEndpoints::load(&path, Service::Connectwise).unwrap();
    let ep = defs.find("tickets").unwrap();
    let rec = json!({
        "id": 945370, "summary": "Printer", "recordType": "ServiceTicket",
        "board": {"id": 30, "name": "Help Desk", "_info": {"board_href": "https://x/boards/30"}},
        "status": {"id": 1, "name": "New"}, "closedFlag": false, "actualHours": 2,
        "customFields": [{"id": 7, "caption": "Asset", "value": null}],
        "_info": {"lastUpdated": "2022-09-15T08:30:12Z", "dateEntered": "2022-09-07T09:46:58Z",
                  "updatedBy": "user", "notes_href": "https://x/notes"},
        "source": {"id": 2, "name": "Email"}
    });
    let b = round_trip(ep, vec![vec![rec]]);
    assert_eq!(
        strings(&b, "board___info__board_href"),
        vec![Some("https://x/boards/30".into())]
    );
    assert_eq!(strings(&b, "status__name"), vec![Some("New".into())]);
    assert_eq!(
        times(&b, "_info__lastUpdated"),
        vec![micros("2022-09-15T08:30:12Z")]
    );
    assert_eq!(
        strings(&b, "_info__notes_href"),
        vec![Some("https://x/notes".into())]
    );
    assert_eq!(
        strings(&b, "customFields"),
        vec![Some(r#"[{"caption":"Asset","id":7,"value":null}]"#.into())]
    );
    assert_eq!(
        strings(&b, "_avesa_extra"),
        vec![Some(r#"{"source__id":2,"source__name":"Email"}"#.into())]
    );
    assert_eq!(b.num_columns(), ep.columns.len() + META_COLUMNS.len());
}

#[test]
fn dedupe_keeps_the_latest_version_in_page_order() {
    let ep = tickets();
    let page = vec![
        ticket(1, "2024-01-05T00:00:00Z", "latest"),
        ticket(2, "2024-01-01T00:00:00Z", "two-old"),
        ticket(1, "2024-01-02T00:00:00Z", "older"),
        ticket(3, "2024-01-01T00:00:00Z", "three"),
        ticket(2, "2024-01-01T00:00:00Z", "two-tie-later"),
    ];
    let mut w = PartWriter::new(jan(), &ep).unwrap();
    assert_eq!(w.append_page(page).unwrap(), 3);
    let b = read(w.finish_part(0).unwrap().unwrap().bytes);
    assert_eq!(ints(&b, "id"), vec![Some(1), Some(3), Some(2)]);
    assert_eq!(
        strings(&b, "status__name"),
        vec![
            Some("latest".into()),
            Some("three".into()),
            Some("two-tie-later".into())
        ]
    );
}

#[test]
fn servicenow_strings_and_every_timestamp_form_are_coerced() {
    let mut ep = endpoint(
        ColumnType::String,
        &[
            ("sys_mod_count", ColumnType::Int64),
            ("active", ColumnType::Bool),
            ("price", ColumnType::Float64),
            ("opened_at", ColumnType::Timestamp),
            ("number", ColumnType::String),
            ("_info__lastUpdated", ColumnType::Timestamp),
        ],
    );
    ep.id_field = "sys_id".into();
    ep.columns[0].name = "sys_id".into();
    let rec = |id: &str, updated: &str, count: &str, active: &str, price: &str, opened: &str| {
        json!({"sys_id": id, "sys_mod_count": count, "active": active, "price": price,
               "opened_at": opened, "number": 42, "_info": {"lastUpdated": updated}})
    };
    let page = vec![
        rec(
            "a1",
            "2024-10-09 13:57:19",
            "3",
            "true",
            "2.50",
            "2013-05-20T20:49:32.000+0000",
        ),
        rec("b2", "2013-05-20T20:49:32.000+0000", "", "", "", ""),
        rec(
            "c3",
            "2024-01-02T03:04:05.5+01:00",
            "-7",
            "FALSE",
            "1e3",
            "2024-10-09 13:50:02",
        ),
    ];
    let b = round_trip(&ep, vec![page]);
    assert_eq!(
        strings(&b, "sys_id"),
        vec![Some("a1".into()), Some("b2".into()), Some("c3".into())]
    );
    assert_eq!(ints(&b, "sys_mod_count"), vec![Some(3), None, Some(-7)]);
    let active: Vec<Option<bool>> = b
        .column_by_name("active")
        .unwrap()
        .as_boolean()
        .iter()
        .collect();
    assert_eq!(active, vec![Some(true), None, Some(false)]);
    let price: Vec<Option<f64>> = b
        .column_by_name("price")
        .unwrap()
        .as_primitive::<Float64Type>()
        .iter()
        .collect();
    assert_eq!(price, vec![Some(2.5), None, Some(1000.0)]);
    assert_eq!(
        times(&b, "_info__lastUpdated"),
        vec![
            micros("2024-10-09T13:57:19Z"),
            micros("2013-05-20T20:49:32Z"),
            micros("2024-01-02T02:04:05.5Z")
        ]
    );
    assert_eq!(
        times(&b, "opened_at"),
        vec![
            micros("2013-05-20T20:49:32Z"),
            None,
            micros("2024-10-09T13:50:02Z")
        ]
    );
    assert_eq!(strings(&b, "number"), vec![Some("42".into()); 3]);
}

#[test]
fn a_bad_value_refuses_the_page_and_names_column_and_id() {
    let ep = tickets();
    let mut bad = ticket(7, "2024-01-02T00:00:00Z", "New");
    bad["budgetHours"] = json!({"hours": 3});
    let msg = invalid(&ep, vec![ticket(6, "2024-01-02T00:00:00Z", "ok"), bad]);
    assert!(
        msg.contains("'tickets'") && msg.contains("id 7") && msg.contains("'budgetHours'"),
        "{msg}"
    );
    assert!(
        msg.contains("expected float64, found object {\"hours\":3}"),
        "{msg}"
    );

    let mut bad = ticket(8, "2024-01-02T00:00:00Z", "New");
    bad["status"]["name"] = json!(["x"]);
    let msg = invalid(&ep, vec![bad]);
    assert!(
        msg.contains("id 8") && msg.contains("'status__name'") && msg.contains("found array"),
        "{msg}"
    );

    let mut bad = ticket(9, "2024-01-02T00:00:00Z", "New");
    bad["closedFlag"] = json!("maybe");
    let msg = invalid(&ep, vec![bad]);
    assert!(
        msg.contains("'closedFlag'") && msg.contains("expected bool, found string \"maybe\""),
        "{msg}"
    );
}

#[test]
fn missing_id_or_incremental_field_is_refused() {
    let ep = tickets();
    let mut no_id = ticket(1, "2024-01-02T00:00:00Z", "New");
    no_id.as_object_mut().unwrap().remove("id");
    let msg = invalid(&ep, vec![ticket(5, "2024-01-02T00:00:00Z", "ok"), no_id]);
    assert!(
        msg.contains("record #1") && msg.contains("id unknown") && msg.contains("column 'id'"),
        "{msg}"
    );

    let msg = invalid(
        &ep,
        vec![json!({"id": "abc", "_info": {"lastUpdated": "2024-01-02T00:00:00Z"}})],
    );
    assert!(
        msg.contains("column 'id'") && msg.contains("expected int64, found string \"abc\""),
        "{msg}"
    );

    let mut no_inc = ticket(4, "2024-01-02T00:00:00Z", "New");
    no_inc["_info"] = json!({"updatedBy": "x"});
    let msg = invalid(&ep, vec![no_inc]);
    assert!(
        msg.contains("id 4") && msg.contains("'_info__lastUpdated'") && msg.contains("missing"),
        "{msg}"
    );

    let msg = invalid(&ep, vec![ticket(5, "last tuesday", "New")]);
    assert!(
        msg.contains("id 5")
            && msg.contains("'_info__lastUpdated'")
            && msg.contains("last tuesday"),
        "{msg}"
    );

    let msg = invalid(&ep, vec![json!([1, 2])]);
    assert!(
        msg.contains("record #0") && msg.contains("expected a JSON object, found array"),
        "{msg}"
    );
}

#[test]
fn sink_errors_read_as_one_line() {
    let e = SinkError::InvalidRecord {
        table: "incident".into(),
        position: 4,
        id: Some("9d38".into()),
        column: "sys_updated_on".into(),
        reason: "expected timestamp, found number 5".into(),
    };
    assert_eq!(
        e.to_string(),
        "invalid record in table 'incident' (id 9d38, record #4 of the page), column 'sys_updated_on': expected timestamp, found number 5"
    );
    let _: Arc<dyn std::error::Error + Send + Sync> = Arc::new(e);
}

#[test]
fn writers_can_move_between_threads() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<PartWriter>();
    assert_send::<RawSink>();
    assert_send::<EncodedPart>();
}
