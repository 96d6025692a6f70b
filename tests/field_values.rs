//! Field values end to end, for every table of every service: a small window is backfilled
//! from the sandbox by the real binary, the same records are fetched again straight from the
//! sandbox's HTTP API (its wire format, the tenant's credentials from the fixture's
//! configuration), flattened here as the README says (`__` between keys, typed by the
//! endpoint definitions, undeclared fields as JSON in `_avesa_extra`) and compared with every
//! column of every landed row, `_avesa_*` stamps included.
//!
//! Nothing of the engine's sources or sink is used for the reference: only plain HTTP,
//! `serde_json` and `chrono`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, TimeUnit};
use base64::Engine as _;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use common::*;
use futures::future::BoxFuture;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};

const TENANT: &str = "acme";
/// The window backfilled and re-read, in chunks of `CHUNK_DAYS`.
const START: &str = "2025-11-01T00:00:00Z";
const END: &str = "2025-12-01T00:00:00Z";
const CHUNK_DAYS: i64 = 10;
/// Small pages: several pages per chunk.
const PAGE_SIZE: u32 = 25;

/// One endpoint of `endpoints/{service}.json`, read as plain JSON.
struct Endpoint {
    path: String,
    table: String,
    id: String,
    incremental: String,
    query_field: String,
    /// (flattened name, declared type)
    columns: Vec<(String, String)>,
}

fn endpoints(fx: &Fixture, service: &str) -> Vec<Endpoint> {
    let text =
        std::fs::read_to_string(fx.config_dir().join(format!("endpoints/{service}.json"))).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let s = |e: &Value, k: &str| e[k].as_str().unwrap().to_string();
    v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Endpoint {
            path: s(e, "path"),
            table: s(e, "table_name"),
            id: s(e, "id_field"),
            incremental: s(e, "incremental_field"),
            query_field: e["query_field"]
                .as_str()
                .map_or_else(|| s(e, "incremental_field"), str::to_string),
            columns: e["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (s(c, "name"), s(c, "type")))
                .collect(),
        })
        .collect()
}

/// The tenant's credentials for `service`, from the file `tenants.json` names.
fn credentials(fx: &Fixture, service: &str) -> Value {
    let read =
        |p: &Path| -> Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let tenants = read(&fx.config_dir().join("tenants.json"));
    let tenant = tenants["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant_id"] == TENANT)
        .unwrap();
    let file = tenant["services"][service]["credentials"]["file"]
        .as_str()
        .unwrap();
    read(&fx.config_dir().join(file))
}

fn window() -> (DateTime<Utc>, DateTime<Utc>) {
    let p = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    (p(START), p(END))
}

/// A landed or expected value of one column.
#[derive(Clone, Debug)]
enum Cell {
    Null,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Microseconds since the epoch, UTC.
    Time(i64),
    Json(Value),
}

impl PartialEq for Cell {
    fn eq(&self, other: &Cell) -> bool {
        use Cell::*;
        match (self, other) {
            (Null, Null) => true,
            (Str(a), Str(b)) => a == b,
            (Int(a), Int(b)) | (Time(a), Time(b)) => a == b,
            (Float(a), Float(b)) => a == b,
            (Bool(a), Bool(b)) => a == b,
            (Json(a), Json(b)) => a == b,
            _ => false,
        }
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Null => f.write_str("null"),
            Cell::Str(s) => write!(f, "{s:?}"),
            Cell::Int(n) => write!(f, "{n}"),
            Cell::Float(x) => write!(f, "{x:?}"),
            Cell::Bool(b) => write!(f, "{b}"),
            Cell::Time(t) => match DateTime::from_timestamp_micros(*t) {
                Some(t) => write!(
                    f,
                    "{}",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                ),
                None => write!(f, "{t} µs"),
            },
            Cell::Json(v) => write!(f, "{v}"),
        }
    }
}

/// A timestamp as the sources write them: RFC 3339, Salesforce's `.000+0000`, or
/// ServiceNow's `YYYY-MM-DD HH:MM:SS` (UTC).
fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .map(|t| t.timestamp_micros())
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(|t| t.and_utc().timestamp_micros())
        })
}

/// The value a declared column of type `kind` must hold for the JSON value `v`.
fn typed(kind: &str, v: &Value) -> Result<Cell, String> {
    let cell = match (kind, v) {
        (_, Value::Null) => Some(Cell::Null),
        ("json", v) => Some(Cell::Json(v.clone())),
        ("string", Value::String(s)) => Some(Cell::Str(s.clone())),
        ("string", Value::Number(_) | Value::Bool(_)) => Some(Cell::Str(v.to_string())),
        (_, Value::String(s)) if s.is_empty() => Some(Cell::Null),
        ("int64", Value::Number(n)) => n.as_i64().map(Cell::Int),
        ("int64", Value::String(s)) => s.parse().ok().map(Cell::Int),
        ("float64", Value::Number(n)) => n.as_f64().map(Cell::Float),
        ("float64", Value::String(s)) => s.parse().ok().map(Cell::Float),
        ("bool", Value::Bool(b)) => Some(Cell::Bool(*b)),
        ("bool", Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(Cell::Bool(true)),
        ("bool", Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(Cell::Bool(false)),
        ("timestamp", Value::String(s)) => parse_time(s).map(Cell::Time),
        _ => None,
    };
    cell.ok_or_else(|| format!("a {kind} column cannot hold {v}"))
}

/// Every leaf of `obj` under its `__`-joined name; a declared `json` column keeps its value
/// whole, an empty object is a leaf.
fn flatten(
    prefix: &str,
    obj: &Map<String, Value>,
    json_cols: &[&str],
    out: &mut Vec<(String, Value)>,
) {
    for (k, v) in obj {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}__{k}")
        };
        match v {
            Value::Object(m) if !m.is_empty() && !json_cols.contains(&name.as_str()) => {
                flatten(&name, m, json_cols, out)
            }
            _ => out.push((name, v.clone())),
        }
    }
}

/// The row a record must land as: every declared column (null when absent) and
/// `_avesa_extra` (the undeclared leaves; null when there are none). A null under a name
/// that only prefixes declared columns (`Owner` of `Owner__Name`) is said by those columns.
fn expected_row(ep: &Endpoint, record: &Value) -> Result<BTreeMap<String, Cell>, String> {
    let json_cols: Vec<&str> = ep
        .columns
        .iter()
        .filter(|(_, k)| k == "json")
        .map(|(n, _)| n.as_str())
        .collect();
    let mut leaves = Vec::new();
    flatten("", record.as_object().unwrap(), &json_cols, &mut leaves);
    let mut row: BTreeMap<String, Cell> = ep
        .columns
        .iter()
        .map(|(n, _)| (n.clone(), Cell::Null))
        .collect();
    let mut extra = Map::new();
    for (name, v) in leaves {
        match ep.columns.iter().find(|(n, _)| *n == name) {
            Some((_, kind)) => {
                row.insert(
                    name.clone(),
                    typed(kind, &v).map_err(|e| format!("{name}: {e}"))?,
                );
            }
            None => {
                let prefix = format!("{name}__");
                let said = v.is_null() && ep.columns.iter().any(|(n, _)| n.starts_with(&prefix));
                if !said {
                    extra.insert(name, v);
                }
            }
        }
    }
    let extra = if extra.is_empty() {
        Cell::Null
    } else {
        Cell::Json(Value::Object(extra))
    };
    row.insert("_avesa_extra".into(), extra);
    Ok(row)
}

/// The value of row `i` of a landed column.
fn cell(col: &ArrayRef, i: usize, json: bool) -> Cell {
    if col.is_null(i) {
        return Cell::Null;
    }
    let any = col.as_any();
    match col.data_type() {
        DataType::Utf8 => {
            let s = any.downcast_ref::<StringArray>().unwrap().value(i);
            match json {
                true => Cell::Json(serde_json::from_str(s).unwrap_or(Value::String(s.into()))),
                false => Cell::Str(s.to_string()),
            }
        }
        DataType::Int64 => Cell::Int(any.downcast_ref::<Int64Array>().unwrap().value(i)),
        DataType::Float64 => Cell::Float(any.downcast_ref::<Float64Array>().unwrap().value(i)),
        DataType::Boolean => Cell::Bool(any.downcast_ref::<BooleanArray>().unwrap().value(i)),
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == "UTC" => Cell::Time(
            any.downcast_ref::<TimestampMicrosecondArray>()
                .unwrap()
                .value(i),
        ),
        other => panic!("unexpected column type {other}"),
    }
}

/// A landed row: its file's name and every column.
struct Row {
    file: String,
    cells: BTreeMap<String, Cell>,
}

/// The columns and types a table's Parquet files must have: the declared columns typed as
/// declared, then the stamps.
fn landed_schema(ep: &Endpoint) -> Vec<(String, DataType)> {
    let time = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let arrow = |kind: &str| match kind {
        "string" | "json" => DataType::Utf8,
        "int64" => DataType::Int64,
        "float64" => DataType::Float64,
        "bool" => DataType::Boolean,
        "timestamp" => time.clone(),
        other => panic!("unknown column type {other}"),
    };
    let mut out: Vec<(String, DataType)> = ep
        .columns
        .iter()
        .map(|(n, k)| (n.clone(), arrow(k)))
        .collect();
    for m in avesa_console::sink::META_COLUMNS {
        let kind = if m.ends_with("_start") || m.ends_with("_end") || m.ends_with("_at") {
            "timestamp"
        } else {
            "string"
        };
        out.push((m.to_string(), arrow(kind)));
    }
    out
}

/// Every row of a table's Parquet files, after checking each file's columns and types.
fn landed_rows(fx: &Fixture, service: &str, ep: &Endpoint) -> Vec<Row> {
    let dir = fx
        .data_dir()
        .join(TENANT)
        .join("raw")
        .join(service)
        .join(&ep.table);
    assert!(dir.is_dir(), "{}", dir.display());
    assert_no_stray_files(&dir);
    let files = live_raw_files(&fx.data_dir(), TENANT, service.parse().unwrap(), &ep.table);
    let want = landed_schema(ep);
    let mut rows = Vec::new();
    for f in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        for batch in reader {
            let batch: RecordBatch = batch.unwrap();
            let names: Vec<(String, DataType)> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect();
            assert_eq!(names, want, "{}: columns of {file}", ep.table);
            for i in 0..batch.num_rows() {
                let cells = want
                    .iter()
                    .enumerate()
                    .map(|(c, (name, _))| {
                        let json = name == "_avesa_extra"
                            || ep.columns.get(c).is_some_and(|(_, k)| k == "json");
                        (name.clone(), cell(batch.column(c), i, json))
                    })
                    .collect();
                rows.push(Row {
                    file: file.clone(),
                    cells,
                });
            }
        }
    }
    rows
}

/// The record's id as text (ids are integers or strings).
fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn cell_id(c: &Cell) -> String {
    match c {
        Cell::Str(s) => s.clone(),
        Cell::Int(n) => n.to_string(),
        other => panic!("id {other:?}"),
    }
}

/// The chunk `[start, end)` the planner cuts around `t` (fixed windows from `START`).
fn chunk_of(t: i64) -> (i64, i64) {
    let (start, end) = window();
    let len = Duration::days(CHUNK_DAYS).num_microseconds().unwrap();
    let s = start.timestamp_micros();
    let k = (t - s).div_euclid(len);
    (s + k * len, (s + (k + 1) * len).min(end.timestamp_micros()))
}

fn compact(t: i64) -> String {
    DateTime::from_timestamp_micros(t)
        .unwrap()
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// What a fetch needs: the client, the sandbox's URL, the tenant's credentials and the
/// endpoint.
#[derive(Clone, Copy)]
struct Ask<'a> {
    client: &'a ::reqwest::Client,
    url: &'a str,
    creds: &'a Value,
    ep: &'a Endpoint,
}

/// Fetches one table's records in the window from the sandbox.
type Fetch = fn(&Ask) -> BoxFuture<'static, Vec<Value>>;

/// What one run of the binary was: its job and when it ran.
struct Run {
    service: String,
    job_id: String,
    before: i64,
    after: i64,
}

/// The stamp columns a landed row must hold (all but `_avesa_extra`), checked against `run`;
/// also the file name, which names the chunk.
fn check_stamps(run: &Run, ep: &Endpoint, row: &Row, out: &mut Vec<String>) {
    let id = cell_id(&row.cells[&ep.id]);
    let Cell::Time(updated) = row.cells[&ep.incremental] else {
        out.push(format!("{} {id}: no update time", ep.table));
        return;
    };
    let (cs, ce) = chunk_of(updated);
    let want = [
        ("_avesa_tenant_id", Cell::Str(TENANT.into())),
        ("_avesa_service", Cell::Str(run.service.clone())),
        ("_avesa_table", Cell::Str(ep.table.clone())),
        ("_avesa_job_id", Cell::Str(run.job_id.clone())),
        ("_avesa_chunk_start", Cell::Time(cs)),
        ("_avesa_chunk_end", Cell::Time(ce)),
    ];
    for (col, expected) in want {
        if row.cells[col] != expected {
            let landed = &row.cells[col];
            out.push(format!(
                "{} {id} {col}: landed {landed}, expected {expected}",
                ep.table
            ));
        }
    }
    match row.cells["_avesa_ingested_at"] {
        Cell::Time(t) if (run.before..=run.after).contains(&t) => {}
        ref other => out.push(format!(
            "{} {id} _avesa_ingested_at: landed {other}, expected between {} and {}",
            ep.table,
            Cell::Time(run.before),
            Cell::Time(run.after)
        )),
    }
    let prefix = format!("{}-{}_", compact(cs), compact(ce));
    if !row.file.starts_with(&prefix) {
        out.push(format!(
            "{} {id}: in file {}, expected {prefix}*",
            ep.table, row.file
        ));
    }
}

/// Every mismatch between the landed rows of `ep` and the records the API sent.
fn compare(run: &Run, ep: &Endpoint, landed: &[Row], sent: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    let mut want: BTreeMap<String, &Value> = BTreeMap::new();
    for r in sent {
        want.insert(id_text(&r[&ep.id]), r);
    }
    let mut seen = BTreeMap::new();
    for row in landed {
        let id = cell_id(&row.cells[&ep.id]);
        *seen.entry(id.clone()).or_insert(0) += 1;
        check_stamps(run, ep, row, &mut out);
        let Some(record) = want.get(&id) else {
            out.push(format!(
                "{} {id}: landed, but the API did not send it",
                ep.table
            ));
            continue;
        };
        let expected = match expected_row(ep, record) {
            Ok(e) => e,
            Err(e) => {
                out.push(format!(
                    "{} {id}: the API's value does not fit: {e}",
                    ep.table
                ));
                continue;
            }
        };
        for (col, e) in &expected {
            let l = &row.cells[col];
            if l != e {
                out.push(format!("{} {id} {col}: landed {l}, expected {e}", ep.table));
            }
        }
    }
    for id in want.keys().filter(|id| !seen.contains_key(*id)) {
        out.push(format!("{} {id}: sent by the API, never landed", ep.table));
    }
    for (id, n) in seen.iter().filter(|(_, n)| **n > 1) {
        out.push(format!("{} {id}: landed {n} times", ep.table));
    }
    out
}

/// Configures small pages and fast retries for `service`, backfills the window for every
/// table with the binary, and returns the run.
fn backfill(fx: &Fixture, sandbox: &SandboxProc, service: &str) -> Run {
    let window = format!("--start-date {START} --end-date {END} --chunk-size-days {CHUNK_DAYS}");
    let mut trigger = vec!["trigger", "--tenant-id", TENANT, "--service", service];
    trigger.extend(window.split(' '));
    trigger.extend(["--output", "json"]);
    let out = fx.cli(None, &trigger);
    assert_ok(&out);
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let job_id = created["job"]["job_id"].as_str().unwrap().to_string();
    let before = Utc::now().timestamp_micros();
    let out = fx.cli(Some(sandbox), &["run"]);
    let after = Utc::now().timestamp_micros();
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{job_id}: completed")),
        "{}",
        text(&out)
    );
    Run {
        service: service.into(),
        job_id,
        before,
        after,
    }
}

/// Backfills `service`, fetches each table's window with `fetch` and compares every column.
fn check_service(service: &str, prepare: impl Fn(&Fixture), fetch: Fetch) -> Checked {
    let fx = Fixture::new();
    fx.tune(6000, PAGE_SIZE);
    // Each row is checked against the part its window wrote: keep the parts as written.
    fx.edit("backfill_config.json", |v| {
        v["compaction"]["enabled"] = false.into();
    });
    prepare(&fx);
    let sandbox = fx.start_sandbox(&[]);
    let run = backfill(&fx, &sandbox, service);
    let creds = credentials(&fx, service);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = ::reqwest::Client::new();
    let mut mismatches = Vec::new();
    let mut with_extra = 0;
    for ep in endpoints(&fx, service) {
        let ask = Ask {
            client: &client,
            url: &sandbox.url,
            creds: &creds,
            ep: &ep,
        };
        let sent = rt.block_on(fetch(&ask));
        let landed = landed_rows(&fx, service, &ep);
        assert!(
            !sent.is_empty(),
            "{service} {}: nothing in the window, the test proves nothing",
            ep.table
        );
        with_extra += landed
            .iter()
            .filter(|r| r.cells["_avesa_extra"] != Cell::Null)
            .count();
        let values: usize = landed
            .iter()
            .map(|r| r.cells.values().filter(|c| **c != Cell::Null).count())
            .sum();
        eprintln!(
            "{service} {}: {} rows landed, {} sent, {values} values compared",
            ep.table,
            landed.len(),
            sent.len()
        );
        mismatches.extend(compare(&run, &ep, &landed, &sent));
    }
    assert!(
        mismatches.is_empty(),
        "{service}: {} mismatches (table id column: landed, expected):\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    Checked {
        sandbox,
        with_extra,
        job_id: run.job_id,
        fx,
    }
}

/// What `check_service` leaves for its caller to look at.
struct Checked {
    sandbox: SandboxProc,
    fx: Fixture,
    job_id: String,
    /// Rows with a non-null `_avesa_extra`.
    with_extra: usize,
}

/// ConnectWise: navigable `page` paging (the engine uses forward-only), Basic
/// `company+public:private` and `clientId`.
fn connectwise(ask: &Ask) -> BoxFuture<'static, Vec<Value>> {
    let (client, url, creds, ep) = (ask.client, ask.url, ask.creds, ask.ep);
    let s = |k: &str| creds[k].as_str().unwrap().to_string();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}+{}:{}",
        s("company_id"),
        s("public_key"),
        s("private_key")
    ));
    let conditions = format!("{f} >= [{START}] and {f} < [{END}]", f = ep.query_field);
    let (client, client_id) = (client.clone(), s("client_id"));
    let list = format!("{url}/v4_6_release/apis/3.0/{}", ep.path);
    Box::pin(pages(
        move |n| {
            let page = (n / PAGE_SIZE as usize + 1).to_string();
            let params = [
                ("conditions", conditions.as_str()),
                ("orderBy", "id asc"),
                ("pageSize", &PAGE_SIZE.to_string()),
                ("page", &page),
            ];
            client
                .get(with_query(&list, &params))
                .header("Authorization", format!("Basic {basic}"))
                .header("clientId", &client_id)
        },
        |body| serde_json::from_value(body).unwrap(),
    ))
}

/// ServiceNow: Table API with raw values and no reference links (as the engine asks), Basic
/// auth, offset paging ordered by `sys_id`.
fn servicenow(ask: &Ask) -> BoxFuture<'static, Vec<Value>> {
    let (client, url, creds, ep) = (ask.client, ask.url, ask.creds, ask.ep);
    let (user, pass) = (
        creds["username"].as_str().unwrap().to_string(),
        creds["password"].as_str().unwrap().to_string(),
    );
    let sn = |s: &str| window_text(s, "%Y-%m-%d %H:%M:%S");
    let query = format!(
        "{f}>={}^{f}<{}^ORDERBYsys_id",
        sn(START),
        sn(END),
        f = ep.query_field
    );
    let client = client.clone();
    let list = format!("{url}/api/now/table/{}", ep.path);
    Box::pin(pages(
        move |n| {
            let params = [
                ("sysparm_query", query.as_str()),
                ("sysparm_display_value", "false"),
                ("sysparm_exclude_reference_link", "true"),
                ("sysparm_limit", &PAGE_SIZE.to_string()),
                ("sysparm_offset", &n.to_string()),
            ];
            client
                .get(with_query(&list, &params))
                .basic_auth(&user, Some(&pass))
        },
        |body| body["result"].as_array().unwrap().clone(),
    ))
}

/// Every record of numbered pages: `request(n)` asks for the page after the first `n`
/// records, `records` takes them out of its body; a page shorter than `PAGE_SIZE` is the last.
async fn pages(
    mut request: impl FnMut(usize) -> ::reqwest::RequestBuilder,
    records: fn(Value) -> Vec<Value>,
) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let page = records(body_json(request(all.len()).send().await.unwrap()).await);
        let short = page.len() < PAGE_SIZE as usize;
        all.extend(page);
        if short {
            return all;
        }
    }
}

/// `base` with these query parameters, URL-encoded.
fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(base).unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url.to_string()
}

/// A 2xx answer's JSON body.
async fn body_json(resp: ::reqwest::Response) -> Value {
    let status = resp.status();
    let url = resp.url().to_string();
    let body = resp.bytes().await.unwrap();
    assert!(
        status.is_success(),
        "{url}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap()
}

fn window_text(rfc3339: &str, format: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
        .format(format)
        .to_string()
}

/// Salesforce: OAuth password grant, then a REST query of the declared fields
/// (`Owner__Name` is `Owner.Name`) followed through `nextRecordsUrl`.
fn salesforce(ask: &Ask) -> BoxFuture<'static, Vec<Value>> {
    let (client, url, creds, ep) = (ask.client, ask.url, ask.creds, ask.ep);
    let form: Vec<(String, String)> = ["client_id", "client_secret", "username", "password"]
        .iter()
        .map(|k| (k.to_string(), creds[*k].as_str().unwrap().to_string()))
        .chain([("grant_type".to_string(), "password".to_string())])
        .collect();
    let fields: Vec<String> = ep
        .columns
        .iter()
        .map(|(n, _)| n.replace("__", "."))
        .collect();
    let soql = format!(
        "SELECT {} FROM {} WHERE {f} >= {START} AND {f} < {END} ORDER BY {f}, Id",
        fields.join(", "),
        ep.path,
        f = ep.query_field
    );
    let (client, login) = (client.clone(), format!("{url}/services/oauth2/token"));
    Box::pin(async move {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form)
            .finish();
        let token = client
            .post(&login)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let token = body_json(token).await;
        let bearer = token["access_token"]
            .as_str()
            .expect("an access token")
            .to_string();
        let instance = token["instance_url"].as_str().unwrap().to_string();
        let mut next = format!(
            "/services/data/v60.0/query?q={}",
            url::form_urlencoded::byte_serialize(soql.as_bytes()).collect::<String>()
        );
        let mut all = Vec::new();
        loop {
            let resp = client
                .get(format!("{instance}{next}"))
                .bearer_auth(&bearer)
                .header("Sforce-Query-Options", format!("batchSize={PAGE_SIZE}"))
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{next}: {}", resp.status());
            let body = body_json(resp).await;
            all.extend(body["records"].as_array().unwrap().iter().cloned());
            match body["nextRecordsUrl"].as_str() {
                Some(n) if body["done"] == false => next = n.to_string(),
                _ => break,
            }
        }
        all
    })
}

fn sf_stats(sandbox: &SandboxProc) -> Value {
    let url = format!("{}/_sandbox/salesforce/stats", sandbox.url);
    serde_json::from_str(&common::reqwest::blocking_get(&url)).unwrap()
}

/// The records the REST query sends, without the `attributes` envelope of each record and
/// relationship: Bulk API CSV has none (it has only the selected fields).
fn salesforce_fields_only(ask: &Ask) -> BoxFuture<'static, Vec<Value>> {
    fn strip(v: &mut Value) {
        if let Value::Object(m) = v {
            m.remove("attributes");
            m.values_mut().for_each(strip);
        }
    }
    let rest = salesforce(ask);
    Box::pin(async move {
        let mut records = rest.await;
        records.iter_mut().for_each(strip);
        records
    })
}

/// `check_service` with the engine's own settings, where rows carry undeclared fields.
fn check_with_extra(service: &str, fetch: Fetch) -> Checked {
    let checked = check_service(service, |_| {}, fetch);
    let rows = checked.with_extra;
    assert!(
        rows > 0,
        "{service}: no undeclared field, the test proves less"
    );
    checked
}

#[test]
fn connectwise_rows_hold_the_values_the_api_sent() {
    check_with_extra("connectwise", connectwise);
}

#[test]
fn servicenow_rows_hold_the_values_the_api_sent() {
    check_with_extra("servicenow", servicenow);
}

#[test]
fn salesforce_rows_hold_the_values_the_api_sent() {
    let checked = check_with_extra("salesforce", salesforce);
    let stats = sf_stats(&checked.sandbox);
    assert_eq!(stats["bulk_jobs"], 0, "{stats}");
}

/// Windows read through Bulk API 2.0 query jobs (CSV) land the same values as REST pages.
#[test]
fn salesforce_bulk_rows_hold_the_values_the_api_sent() {
    let bulk = |fx: &Fixture| {
        fx.edit("backfill_config.json", |v| {
            v["service_settings"]["salesforce"]["bulk_query_threshold"] = 0.into();
        });
    };
    let checked = check_service("salesforce", bulk, salesforce_fields_only);
    let stats = sf_stats(&checked.sandbox);
    assert!(stats["bulk_jobs"].as_u64().unwrap() > 0, "{stats}");
}

/// Fields the integration user cannot see (`User.Name`, behind every `Owner.Name`, and
/// `Lead.AnnualRevenue`), hidden by the sandbox's field-level security.
const HIDDEN: &str = "User.Name, Lead.AnnualRevenue";

/// The declared columns those hide, as the job lists them.
const SKIPPED: [&str; 5] = [
    "accounts.Owner__Name",
    "opportunities.Owner__Name",
    "cases.Owner__Name",
    "leads.AnnualRevenue",
    "leads.Owner__Name",
];

/// The Salesforce REST query of the columns the user can see.
fn salesforce_visible(ask: &Ask) -> BoxFuture<'static, Vec<Value>> {
    let ep = Endpoint {
        path: ask.ep.path.clone(),
        table: ask.ep.table.clone(),
        id: ask.ep.id.clone(),
        incremental: ask.ep.incremental.clone(),
        query_field: ask.ep.query_field.clone(),
        columns: ask
            .ep
            .columns
            .iter()
            .filter(|(c, _)| !SKIPPED.contains(&format!("{}.{c}", ask.ep.table).as_str()))
            .cloned()
            .collect(),
    };
    salesforce(&Ask { ep: &ep, ..*ask })
}

/// A user who cannot see two fields: the backfill leaves the columns that read them out of its
/// queries (the sandbox refuses a query naming one), lists them in the job, lands them null
/// and every other column exactly as the API sends it.
#[test]
fn salesforce_fields_the_user_cannot_see_land_null_and_the_job_lists_them() {
    let hide = |fx: &Fixture| {
        fx.edit("credentials/acme-salesforce.json", |v| {
            v["sandbox_hidden_fields"] = HIDDEN.into();
        });
    };
    let checked = check_service("salesforce", hide, salesforce_visible);
    let status = job_status(&checked.fx, &checked.job_id);
    let listed: Vec<&str> = status["job"]["skipped_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut want = SKIPPED.to_vec();
    want.sort();
    let mut got = listed.clone();
    got.sort();
    assert_eq!(got, want, "{status}");
    for ep in endpoints(&checked.fx, "salesforce") {
        let rows = landed_rows(&checked.fx, "salesforce", &ep);
        for skipped in SKIPPED
            .iter()
            .filter_map(|s| s.strip_prefix(&format!("{}.", ep.table)))
        {
            assert!(!rows.is_empty(), "{}: nothing landed", ep.table);
            let filled = rows
                .iter()
                .filter(|r| r.cells[skipped] != Cell::Null)
                .count();
            assert_eq!(filled, 0, "{} {skipped}: values landed", ep.table);
        }
    }
    let out = checked.fx.cli(
        Some(&checked.sandbox),
        &["status", "--job-id", &checked.job_id],
    );
    assert!(
        text(&out).contains("leads.AnnualRevenue"),
        "status does not list the skipped fields: {}",
        text(&out)
    );
}
