//! Salesforce end to end on loopback: sandbox process → `trigger` → `run` → Parquet read
//! back, through REST query locators, Bulk API 2.0 jobs, records edited mid-read, request
//! limits, lost sessions and lost locators.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use avesa_console::domain::Window;
use avesa_console::engine::planner::chunk_windows;
use avesa_console::sandbox::salesforce::expected_salesforce;
use avesa_console::sandbox::{SandboxConfig, TableCounts};
use chrono::{DateTime, Utc};
use common::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// sObject → table name, as in `mappings/endpoints/salesforce.json`.
const TABLES: [(&str, &str); 5] = [
    ("Account", "accounts"),
    ("Contact", "contacts"),
    ("Opportunity", "opportunities"),
    ("Case", "cases"),
    ("Lead", "leads"),
];

type Keys = Vec<(String, DateTime<Utc>)>;

/// Fast retries, `rate` requests a minute and `page` records a page for Salesforce, and a
/// quick circuit-breaker cool-down. The orgs keep the sandbox's default daily API limit.
fn tune_salesforce(fx: &Fixture, rate: u32, page: u32) {
    fx.edit("backfill_config.json", |v| {
        v["service_settings"]["salesforce"]["rate_limit_requests_per_minute"] = rate.into();
        let d = &mut v["default_settings"];
        d["retry_backoff_seconds"] = 0.05.into();
        d["request_retries"] = 8.into();
        d["request_retry_min_delay_ms"] = 10.into();
        d["circuit_breaker_cooldown_seconds"] = 0.2.into();
    })
    .edit("endpoints/salesforce.json", |v| {
        for ep in v["endpoints"].as_array_mut().unwrap() {
            ep["page_size"] = page.into();
        }
    });
}

fn username(fx: &Fixture, tenant: &str) -> String {
    let path = fx
        .config_dir()
        .join(format!("credentials/{tenant}-salesforce.json"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["username"].as_str().unwrap().to_string()
}

fn sf_trigger<'a>(
    tenant: &'a str,
    tables: &[&'a str],
    start: &'a str,
    end: &'a str,
    chunk_days: &'a str,
) -> Vec<&'a str> {
    let mut args = vec!["trigger", "--tenant-id", tenant, "--service", "salesforce"];
    for t in tables {
        args.extend(["--table", t]);
    }
    args.extend([
        "--start-date",
        start,
        "--end-date",
        end,
        "--chunk-size-days",
        chunk_days,
        "--output",
        "json",
    ]);
    args
}

fn job_id(out: &std::process::Output) -> String {
    assert_ok(out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["job"]["job_id"].as_str().unwrap().to_string()
}

fn http_get(url: &str) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let body = ::reqwest::Client::new()
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    })
}

fn sf_stats(sandbox: &SandboxProc) -> serde_json::Value {
    http_get(&format!("{}/_sandbox/salesforce/stats", sandbox.url))
}

fn landed(fx: &Fixture, tenant: &str, table: &str) -> Keys {
    landed_keys(
        &fx.data_dir(),
        tenant,
        "salesforce",
        table,
        "Id",
        "SystemModstamp",
    )
    .0
}

fn expected(cfg: &SandboxConfig, user: &str, sobject: &str, windows: &[Window]) -> Keys {
    let mut all: Keys = windows
        .iter()
        .flat_map(|w| expected_salesforce(cfg, user, sobject, w))
        .collect();
    all.sort();
    all
}

/// Asserts `got` is exactly `want` (both sorted), naming a few differences.
fn assert_same(table: &str, got: &Keys, want: &Keys) {
    assert!(
        !want.is_empty(),
        "{table}: nothing expected, the test proves nothing"
    );
    let dupes: Vec<_> = got
        .windows(2)
        .filter(|p| p[0].0 == p[1].0)
        .take(3)
        .collect();
    assert!(dupes.is_empty(), "{table}: ids landed twice: {dupes:?}");
    if got != want {
        let missing: Vec<_> = want
            .iter()
            .filter(|k| got.binary_search(k).is_err())
            .take(5)
            .collect();
        let extra: Vec<_> = got
            .iter()
            .filter(|k| want.binary_search(k).is_err())
            .take(5)
            .collect();
        panic!(
            "{table}: {} landed, {} expected; missing {missing:?}, unexpected {extra:?}",
            got.len(),
            want.len()
        );
    }
}

fn batches(fx: &Fixture, tenant: &str, table: &str) -> Vec<RecordBatch> {
    let (_, files) = landed_keys(
        &fx.data_dir(),
        tenant,
        "salesforce",
        table,
        "Id",
        "SystemModstamp",
    );
    files
        .iter()
        .flat_map(|f| {
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
        })
        .collect()
}

fn write_faults(fx: &Fixture, json: &str) -> String {
    let path = fx.dir.path().join("faults.json");
    std::fs::write(&path, json).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn rest_backfill_lands_every_record_once_with_typed_columns() {
    let fx = Fixture::new();
    tune_salesforce(&fx, 6000, 200);
    let sandbox = fx.start_sandbox(&[]);
    let (start, end) = ("2025-06-01T00:00:00Z", "2025-08-01T00:00:00Z");
    let out = fx.cli(Some(&sandbox), &sf_trigger("acme", &[], start, end, "20"));
    let job = job_id(&out);
    assert_eq!(job, "backfill_acme_salesforce_20250601");
    let out = fx.cli(Some(&sandbox), &["run"]);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{job}: completed")),
        "{}",
        text(&out)
    );

    let cfg = fx.sandbox_config(TableCounts::demo());
    let user = username(&fx, "acme");
    let chunks = chunk_windows(parse_window(start, end), 20);
    let mut boundary_hits = 0;
    let mut total = 0;
    let mut paged = 0;
    for (sobject, table) in TABLES {
        let want = expected(&cfg, &user, sobject, &chunks);
        let got = landed(&fx, "acme", table);
        assert_same(table, &got, &want);
        total += got.len();
        boundary_hits += got
            .iter()
            .filter(|(_, t)| chunks.iter().any(|w| w.start == *t))
            .count();
        paged += chunks
            .iter()
            .filter(|w| expected_salesforce(&cfg, &user, sobject, w).len() > 200)
            .count();
    }
    assert!(
        boundary_hits > 0,
        "no record on a chunk boundary was tested"
    );
    assert!(paged > 0, "no window needed a second page");

    // REST query locators were followed; no bulk job was needed.
    let stats = sf_stats(&sandbox);
    assert_eq!(stats["bulk_jobs"], 0, "{stats}");
    assert!(
        stats["query_more"].as_u64().unwrap() >= paged as u64,
        "{stats}"
    );
    // One sign-in by the trigger (which describes the objects), one by the run.
    assert_eq!(stats["logins"], 2, "{stats}");
    assert_eq!(sandbox.stats()["repeated_pages"], 0);

    // Typed columns; the nested owner flattened; `attributes` kept out of the columns.
    let b = &batches(&fx, "acme", "accounts")[0];
    let schema = b.schema();
    let ty = |name: &str| {
        schema
            .field_with_name(name)
            .unwrap_or_else(|_| panic!("no column {name}"))
            .data_type()
            .clone()
    };
    assert_eq!(ty("Id"), DataType::Utf8);
    assert_eq!(ty("AnnualRevenue"), DataType::Float64);
    assert_eq!(ty("NumberOfEmployees"), DataType::Int64);
    assert_eq!(ty("IsDeleted"), DataType::Boolean);
    assert_eq!(
        ty("SystemModstamp"),
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert!(schema.field_with_name("attributes__type").is_err());
    let owners = b.column_by_name("Owner__Name").unwrap();
    assert_eq!(
        owners.null_count(),
        0,
        "Owner.Name did not flatten into Owner__Name"
    );
    let revenue = b.column_by_name("AnnualRevenue").unwrap();
    assert!(revenue.null_count() < revenue.len());

    let status = job_status(&fx, &job);
    assert_eq!(status["job"]["status"], "completed");
    assert_eq!(status["job"]["records"].as_u64().unwrap(), total as u64);
    assert_eq!(
        status["job"]["completed_chunks"].as_u64().unwrap(),
        (chunks.len() * TABLES.len()) as u64
    );
}

#[test]
fn windows_above_the_bulk_threshold_are_read_through_bulk_jobs_exactly() {
    let fx = Fixture::new();
    tune_salesforce(&fx, 6000, 200);
    fx.edit("backfill_config.json", |v| {
        v["service_settings"]["salesforce"]["bulk_query_threshold"] = 100.into();
    });
    let sandbox = fx.start_sandbox(&[]);
    let (start, end) = ("2025-03-01T00:00:00Z", "2025-04-20T00:00:00Z");
    let job = job_id(&fx.cli(
        Some(&sandbox),
        &sf_trigger("initech", &[], start, end, "25"),
    ));
    assert_ok(&fx.cli(Some(&sandbox), &["run", "--job-id", &job]));
    assert_eq!(job_status(&fx, &job)["job"]["status"], "completed");

    let cfg = fx.sandbox_config(TableCounts::demo());
    let user = username(&fx, "initech");
    let chunks = chunk_windows(parse_window(start, end), 25);
    let (mut bulk_windows, mut result_pages, mut rest_windows) = (0u64, 0u64, 0u64);
    for (sobject, table) in TABLES {
        assert_same(
            table,
            &landed(&fx, "initech", table),
            &expected(&cfg, &user, sobject, &chunks),
        );
        for w in &chunks {
            let n = expected_salesforce(&cfg, &user, sobject, w).len() as u64;
            if n > 100 {
                bulk_windows += 1;
                result_pages += n.div_ceil(200);
            } else {
                rest_windows += 1;
            }
        }
    }
    assert!(
        bulk_windows > 0 && rest_windows > 0,
        "{bulk_windows} {rest_windows}"
    );
    let stats = sf_stats(&sandbox);
    assert_eq!(
        stats["bulk_jobs"], bulk_windows,
        "one job per big window: {stats}"
    );
    assert_eq!(stats["bulk_result_pages"], result_pages, "{stats}");
    assert!(
        stats["bulk_polls"].as_u64().unwrap() >= 2 * bulk_windows,
        "{stats}"
    );
    assert_eq!(
        stats["queries"],
        bulk_windows + rest_windows,
        "one REST query per window: {stats}"
    );
}

#[test]
fn records_edited_mid_read_leave_the_window_and_the_rest_lands_exactly_once() {
    let fx = Fixture::new();
    tune_salesforce(&fx, 6000, 200);
    let faults = write_faults(
        &fx,
        r#"{"faults":[{"service":"salesforce","path":"Account","kind":"touch_records","records":5,"times":3}]}"#,
    );
    // 20 000 accounts: ~550 a 20-day window, three REST pages each.
    let sandbox = fx.start_sandbox(&["--faults", &faults, "--companies", "2000"]);
    let (start, end) = ("2025-03-01T00:00:00Z", "2025-04-10T00:00:00Z");
    let job = job_id(&fx.cli(
        Some(&sandbox),
        &sf_trigger("acme", &["accounts"], start, end, "20"),
    ));
    assert_ok(&fx.cli(Some(&sandbox), &["run", "--job-id", &job]));
    assert_eq!(job_status(&fx, &job)["job"]["status"], "completed");

    let cfg = fx.sandbox_config(TableCounts {
        companies: 2000,
        ..TableCounts::demo()
    });
    let user = username(&fx, "acme");
    let chunks = chunk_windows(parse_window(start, end), 20);
    let want = expected(&cfg, &user, "Account", &chunks);
    let moved = http_get(&format!("{}/_sandbox/salesforce/moved", sandbox.url));
    let moved = moved.as_array().unwrap();
    assert_eq!(moved.len(), 15, "{moved:?}");
    let moved: BTreeMap<String, (DateTime<Utc>, DateTime<Utc>)> = moved
        .iter()
        .map(|m| {
            let t = |k: &str| m[k].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
            (m["id"].as_str().unwrap().to_string(), (t("from"), t("to")))
        })
        .collect();

    let got = landed(&fx, "acme", "accounts");
    let ids: BTreeSet<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), got.len(), "an id landed twice");
    let stayed: Keys = want
        .iter()
        .filter(|(id, _)| !moved.contains_key(id))
        .cloned()
        .collect();
    let got_stayed: Keys = got
        .iter()
        .filter(|(id, _)| !moved.contains_key(id))
        .cloned()
        .collect();
    assert_same("accounts (records that stayed)", &got_stayed, &stayed);
    // A moved record landed at most once, with the time it had when its page was read.
    for (id, t) in got.iter().filter(|(id, _)| moved.contains_key(id)) {
        let (from, to) = moved[id];
        assert!(
            *t == from || *t == to,
            "{id} landed at {t}, moved {from} → {to}"
        );
    }
    assert!(
        got.len() < want.len(),
        "records moved before their window's query was answered should not land"
    );
}

#[test]
fn rate_limits_server_errors_bad_bodies_and_lost_sessions_still_land_the_exact_dataset() {
    let fx = Fixture::new();
    tune_salesforce(&fx, 1200, 200);
    let faults = write_faults(
        &fx,
        r#"{"faults":[
            {"service":"salesforce","path":"Account","status":429,"times":4,"retry_after_seconds":1},
            {"service":"salesforce","path":"Case","status":403,"times":5},
            {"service":"salesforce","path":"Contact","kind":"truncate","times":2},
            {"service":"salesforce","path":"Opportunity","kind":"expire_token","times":1},
            {"service":"salesforce","path":"Lead","kind":"expire_token","times":1},
            {"service":"salesforce","path":"Lead","kind":"malformed","times":1},
            {"service":"salesforce","path":"*","status":503,"probability":0.3,"message":"Service temporarily unavailable"}
        ]}"#,
    );
    // Strict at the configured rate (burst 1): a request sooner than the pace is refused.
    // 1,200/min (50 ms apart, 25 ms of tolerance): a loaded machine's late timers stay
    // inside it, a budget per process or an unpaced re-send does not.
    let sandbox = fx.start_sandbox(&[
        "--faults",
        &faults,
        "--rate-limit",
        "1200",
        "--strict-rate-limit",
    ]);
    let (start, end) = ("2025-06-01T00:00:00Z", "2025-07-01T00:00:00Z");
    let job = job_id(&fx.cli(Some(&sandbox), &sf_trigger("acme", &[], start, end, "15")));
    let out = fx.cli(Some(&sandbox), &["run", "--job-id", &job]);
    assert_ok(&out);
    let status = job_status(&fx, &job);
    assert_eq!(status["job"]["status"], "completed", "{status}");

    let cfg = fx.sandbox_config(TableCounts::demo());
    let user = username(&fx, "acme");
    let chunks = chunk_windows(parse_window(start, end), 15);
    for (sobject, table) in TABLES {
        assert_same(
            table,
            &landed(&fx, "acme", table),
            &expected(&cfg, &user, sobject, &chunks),
        );
    }
    let stats = sandbox.stats();
    let sf = sf_stats(&sandbox);
    // 4 × 429, 5 × 403, 2 expired tokens, and the random 503s.
    assert!(stats["faults_injected"].as_u64().unwrap() >= 11, "{stats}");
    assert!(
        stats["rate_limited"].as_u64().unwrap() == 0,
        "no real limit was hit: {stats}"
    );
    assert_eq!(
        sf["logins"], 4,
        "the trigger's (it describes the objects), the run's, then one per expired token: {sf}"
    );
}

#[test]
fn a_permanent_401_fails_its_chunks_after_one_attempt_and_the_job_goes_on() {
    let fx = Fixture::new();
    tune_salesforce(&fx, 6000, 200);
    let faults = write_faults(
        &fx,
        r#"{"faults":[{"service":"salesforce","path":"Account","status":401}]}"#,
    );
    let sandbox = fx.start_sandbox(&["--faults", &faults]);
    let job = job_id(&fx.cli(
        Some(&sandbox),
        &sf_trigger(
            "acme",
            &["accounts", "contacts"],
            "2025-06-01T00:00:00Z",
            "2025-06-21T00:00:00Z",
            "10",
        ),
    ));
    let out = fx.cli(Some(&sandbox), &["run", "--job-id", &job]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "completed_with_errors exits 3: {}",
        text(&out)
    );
    let detail = job_status(&fx, &job);
    assert_eq!(detail["job"]["status"], "completed_with_errors");
    assert_eq!(detail["job"]["failed_chunks"], 2);
    for c in detail["chunks"].as_array().unwrap() {
        if c["key"]["table"] == "accounts" {
            assert_eq!(c["status"], "failed", "{c}");
            assert!(
                c["attempts"].as_u64().unwrap() <= 1,
                "a rejected session is not retried: {c}"
            );
            let err = c["last_error"].as_str().unwrap();
            for needle in [
                "acme",
                "salesforce",
                "accounts",
                "HTTP 401",
                "INVALID_SESSION_ID",
            ] {
                assert!(err.contains(needle), "last error {err:?} lacks {needle:?}");
            }
        } else {
            assert_eq!(c["status"], "succeeded", "{c}");
        }
    }
    // A refused session is renewed and the request asked again once (through the budget);
    // the second refusal stands: at most two new logins per failed chunk, never a loop (the
    // trigger's sign-in, to describe the objects, besides).
    let logins = sf_stats(&sandbox)["logins"].as_u64().unwrap();
    assert!((3..=6).contains(&logins), "{logins} logins");
    let cfg = fx.sandbox_config(TableCounts::demo());
    let user = username(&fx, "acme");
    let w = parse_window("2025-06-01T00:00:00Z", "2025-06-21T00:00:00Z");
    assert_same(
        "contacts",
        &landed(&fx, "acme", "contacts"),
        &expected(&cfg, &user, "Contact", &[w]),
    );
    assert!(landed(&fx, "acme", "accounts").is_empty());
    // No secret reached the store or the logs.
    let logs = std::fs::read_to_string(fx.workspace().join("logs/engine.jsonl")).unwrap();
    let everything = format!("{detail}{logs}{}", text(&out));
    for secret in [
        "sandbox-only-sf-password-acme",
        "sandbox-only-sf-consumer-secret-acme",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} was printed or stored"
        );
    }
}

#[test]
fn a_resumed_chunk_whose_locator_is_gone_continues_by_keyset() {
    let fx = Fixture::new();
    // One request a second: the time budget stops the chunk after a few pages.
    tune_salesforce(&fx, 60, 200);
    let first = fx.start_sandbox(&[]);
    // ~1300 leads in one chunk: seven pages, about three of them within the budget.
    let (start, end) = ("2025-01-01T00:00:00Z", "2025-05-01T00:00:00Z");
    let job = job_id(&fx.cli(
        Some(&first),
        &sf_trigger("acme", &["leads"], start, end, "120"),
    ));
    let out = fx.cli(
        Some(&first),
        &["run", "--job-id", &job, "--time-budget", "2500ms"],
    );
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    let detail = job_status(&fx, &job);
    let cursor = detail["chunks"][0]["checkpoint"]["cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("no page was checkpointed: {detail}"))
        .to_string();
    assert!(cursor.contains("\"mode\":\"rest\""), "{cursor}");
    let stored_before = landed(&fx, "acme", "leads").len();
    assert!(stored_before > 0);

    // A new org process: same data, no query locators.
    drop(first);
    let second = fx.start_sandbox(&[]);
    assert_ok(&fx.cli(Some(&second), &["resume", &job]));
    assert_eq!(job_status(&fx, &job)["job"]["status"], "completed");
    let cfg = fx.sandbox_config(TableCounts::demo());
    let user = username(&fx, "acme");
    assert_same(
        "leads",
        &landed(&fx, "acme", "leads"),
        &expected(&cfg, &user, "Lead", &[parse_window(start, end)]),
    );
    let sf = sf_stats(&second);
    assert_eq!(
        sf["queries"], 1,
        "one keyset query replaced the lost locator: {sf}"
    );
    assert!(sf["query_more"].as_u64().unwrap() >= 1, "{sf}");
}

#[test]
fn a_resumed_bulk_chunk_whose_job_is_gone_starts_its_window_over_without_duplicates() {
    let fx = Fixture::new();
    tune_salesforce(&fx, 60, 200);
    fx.edit("backfill_config.json", |v| {
        v["service_settings"]["salesforce"]["bulk_query_threshold"] = 100.into();
    });
    let first = fx.start_sandbox(&[]);
    let (start, end) = ("2025-01-01T00:00:00Z", "2025-05-01T00:00:00Z");
    let job = job_id(&fx.cli(
        Some(&first),
        &sf_trigger("acme", &["leads"], start, end, "120"),
    ));
    let out = fx.cli(
        Some(&first),
        &["run", "--job-id", &job, "--time-budget", "4500ms"],
    );
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    let detail = job_status(&fx, &job);
    let cursor = detail["chunks"][0]["checkpoint"]["cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("no bulk page was checkpointed: {detail}"))
        .to_string();
    assert!(cursor.contains("\"mode\":\"bulk\""), "{cursor}");
    assert!(!landed(&fx, "acme", "leads").is_empty());

    // A new org process: same data, but the query job is gone.
    drop(first);
    let second = fx.start_sandbox(&[]);
    assert_ok(&fx.cli(Some(&second), &["resume", &job]));
    let detail = job_status(&fx, &job);
    assert_eq!(detail["job"]["status"], "completed", "{detail}");
    assert_eq!(
        detail["chunks"][0]["attempts"], 2,
        "the expired job cost one attempt, then the window was read again"
    );
    let cfg = fx.sandbox_config(TableCounts::demo());
    let user = username(&fx, "acme");
    assert_same(
        "leads",
        &landed(&fx, "acme", "leads"),
        &expected(&cfg, &user, "Lead", &[parse_window(start, end)]),
    );
}

#[test]
fn a_client_credentials_backfill_logs_in_again_only_when_its_session_expires_and_lands_exactly() {
    let fx = Fixture::new();
    tune_salesforce(&fx, 6000, 200);
    // Acme's connected app signs in with client credentials: no user, no password.
    fx.client_credentials_only("acme", "salesforce");
    let faults = write_faults(
        &fx,
        r#"{"faults":[
            {"service":"salesforce","path":"Contact","kind":"expire_token","times":1},
            {"service":"salesforce","path":"Lead","kind":"expire_token","times":1}
        ]}"#,
    );
    let sandbox = fx.start_sandbox(&["--faults", &faults]);
    let (start, end) = ("2025-06-01T00:00:00Z", "2025-07-01T00:00:00Z");
    let job = job_id(&fx.cli(Some(&sandbox), &sf_trigger("acme", &[], start, end, "10")));
    let out = fx.cli(Some(&sandbox), &["run", "--job-id", &job]);
    assert_ok(&out);
    let status = job_status(&fx, &job);
    assert_eq!(status["job"]["status"], "completed", "{status}");

    // The sandbox names a client-credentials org's run-as user by its client id.
    let cfg = fx.sandbox_config(TableCounts::demo());
    let user = "3MVG9acmeSandboxConsumerKey";
    let chunks = chunk_windows(parse_window(start, end), 10);
    for (sobject, table) in TABLES {
        assert_same(
            table,
            &landed(&fx, "acme", table),
            &expected(&cfg, user, sobject, &chunks),
        );
    }
    let sf = sf_stats(&sandbox);
    assert!(
        sf["queries"].as_u64().unwrap() + sf["query_more"].as_u64().unwrap() > 15,
        "{sf}"
    );
    assert_eq!(
        sf["logins"], 4,
        "one login for the trigger's field discovery, one for the run, then one per expired \
         session: {sf}"
    );
    assert_eq!(sf["login_failures"], 0, "{sf}");
    assert_eq!(sandbox.stats()["faults_injected"], 2);
}

/// A field the org does not have, declared after the job was created, is refused the same way
/// in every window: the table fails once, with one refused query, while the other table
/// completes; `resume --retry-failed` after the fix reads it.
#[test]
fn a_permanent_invalid_field_fails_its_table_once_and_retry_failed_reads_it_after_the_fix() {
    let fx = Fixture::new();
    tune_salesforce(&fx, 6000, 200);
    let columns = |add: bool| {
        move |v: &mut serde_json::Value| {
            let ep = &mut v["endpoints"][0];
            assert_eq!(ep["path"], "Account");
            let cols = ep["columns"].as_array_mut().unwrap();
            cols.retain(|c| c["name"] != "Region__c");
            if add {
                cols.push(serde_json::json!({"name": "Region__c", "type": "string"}));
            }
        }
    };
    let sandbox = fx.start_sandbox(&[]);
    let (start, end) = ("2025-06-01T00:00:00Z", "2025-08-30T00:00:00Z");
    let job = job_id(&fx.cli(
        Some(&sandbox),
        &sf_trigger("acme", &["accounts", "contacts"], start, end, "10"),
    ));
    // Declared after the job was created, so the trigger's field discovery (which would leave a
    // field the org lacks out of the query) did not see it: every window's query names it.
    fx.edit("endpoints/salesforce.json", columns(true));
    let out = fx.cli(Some(&sandbox), &["run", "--job-id", &job]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(
        sf_stats(&sandbox)["refused_queries"],
        1,
        "one refused query for the table, not one per window"
    );
    let detail = job_status(&fx, &job);
    assert_eq!(detail["job"]["status"], "completed_with_errors");
    assert_eq!(detail["job"]["failed_chunks"], 9);
    for c in detail["chunks"].as_array().unwrap() {
        if c["key"]["table"] == "accounts" {
            assert_eq!(c["status"], "failed", "{c}");
            let err = c["last_error"].as_str().unwrap();
            assert!(
                err.starts_with("table failed: acme salesforce accounts: HTTP 400: INVALID_FIELD"),
                "{err}"
            );
            assert!(err.contains("Region__c"), "{err}");
        } else {
            assert_eq!(c["status"], "succeeded", "{c}");
        }
    }
    let status = text(&fx.cli(None, &["status", "--job-id", &job]));
    assert!(
        status.contains("table accounts failed (9 windows, the same for each): acme salesforce accounts: HTTP 400: INVALID_FIELD"),
        "{status}"
    );
    // Fixed, then retried: the table is read.
    fx.edit("endpoints/salesforce.json", columns(false));
    let out = fx.cli(Some(&sandbox), &["resume", &job, "--retry-failed"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(job_status(&fx, &job)["job"]["status"], "completed");
    let cfg = fx.sandbox_config(TableCounts::demo());
    let w = parse_window(start, end);
    assert_same(
        "accounts",
        &landed(&fx, "acme", "accounts"),
        &expected(&cfg, &username(&fx, "acme"), "Account", &[w]),
    );
}
