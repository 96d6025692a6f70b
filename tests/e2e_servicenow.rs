//! ServiceNow end to end on loopback: sandbox process (Table API wire format) → `trigger` →
//! `run` → Parquet read back and compared with the sandbox's own dataset.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use arrow_schema::{DataType, TimeUnit};
use avesa_console::domain::{Service, Window};
use avesa_console::engine::planner::chunk_windows;
use avesa_console::sandbox::TableCounts;
use avesa_console::sandbox::servicenow::{Moved, expected_servicenow};
use avesa_console::secret::scrub;
use chrono::{DateTime, Utc};
use common::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// (API table, storage table) of `mappings/endpoints/servicenow.json`.
const TABLES: [(&str, &str); 4] = [
    ("incident", "incidents"),
    ("change_request", "change_requests"),
    ("problem", "problems"),
    ("sys_user", "users"),
];

type Keys = Vec<(String, DateTime<Utc>)>;

/// Fast retries, ServiceNow's rate limit and every ServiceNow page size.
fn tune(fx: &Fixture, rate_per_minute: u32, page_size: u32, request_retries: u32) {
    fx.edit("backfill_config.json", |v| {
        v["service_settings"]["servicenow"]["rate_limit_requests_per_minute"] =
            rate_per_minute.into();
        v["default_settings"]["retry_backoff_seconds"] = 0.05.into();
        v["default_settings"]["request_retries"] = request_retries.into();
        v["default_settings"]["request_retry_min_delay_ms"] = 10.into();
        // 429s that come again after their Retry-After open the breaker: keep its cool-down
        // short, as the other end-to-end tests do.
        v["default_settings"]["circuit_breaker_cooldown_seconds"] = 0.2.into();
    })
    .edit("endpoints/servicenow.json", |v| {
        for ep in v["endpoints"].as_array_mut().unwrap() {
            ep["page_size"] = page_size.into();
        }
    });
}

fn trigger(
    fx: &Fixture,
    tenant: &str,
    table: Option<&str>,
    start: &str,
    end: &str,
    chunk_days: &str,
) {
    let mut args = vec!["trigger", "--tenant-id", tenant, "--service", "servicenow"];
    if let Some(t) = table {
        args.extend(["--table", t]);
    }
    args.extend([
        "--start-date",
        start,
        "--end-date",
        end,
        "--chunk-size-days",
        chunk_days,
    ]);
    assert_ok(&fx.cli(None, &args));
}

fn username(fx: &Fixture, tenant: &str) -> String {
    let cfg = fx.config();
    let conn = &cfg.tenants.get(tenant).unwrap().services[&Service::Servicenow];
    cfg.tenants
        .resolve_credentials(tenant, Service::Servicenow, conn)
        .unwrap()
        .get("username")
        .unwrap()
        .expose()
        .to_string()
}

fn landed(fx: &Fixture, tenant: &str, table: &str) -> Keys {
    landed_keys(
        &fx.data_dir(),
        tenant,
        "servicenow",
        table,
        "sys_id",
        "sys_updated_on",
    )
    .0
}

fn duplicates(rows: &Keys) -> Vec<String> {
    let mut seen = BTreeMap::new();
    for (id, _) in rows {
        *seen.entry(id.clone()).or_insert(0) += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(id, _)| id)
        .collect()
}

fn http_get(url: &str) -> Vec<u8> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            ::reqwest::get(url)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec()
        })
}

fn moved(sandbox: &SandboxProc) -> Vec<Moved> {
    serde_json::from_slice(&http_get(&format!(
        "{}/_sandbox/servicenow/moved",
        sandbox.url
    )))
    .unwrap()
}

fn sn_stats(sandbox: &SandboxProc) -> serde_json::Value {
    serde_json::from_slice(&http_get(&format!(
        "{}/_sandbox/servicenow/stats",
        sandbox.url
    )))
    .unwrap()
}

fn write_faults(fx: &Fixture, json: &str) -> String {
    let path = fx.dir.path().join("faults.json");
    std::fs::write(&path, json).unwrap();
    path.to_str().unwrap().to_string()
}

/// Every table of `tenant` landed exactly as the sandbox holds it in `window`.
fn assert_exact_tables(fx: &Fixture, tenant: &str, window: &Window) -> usize {
    let cfg = fx.sandbox_config(TableCounts::demo());
    let user = username(fx, tenant);
    let mut total = 0;
    for (api, table) in TABLES {
        let expected = expected_servicenow(&cfg, &user, api, window);
        let got = landed(fx, tenant, table);
        assert_eq!(
            duplicates(&got),
            Vec::<String>::new(),
            "{tenant} {table}: duplicates"
        );
        let missing: Vec<_> = expected
            .iter()
            .filter(|e| got.binary_search(e).is_err())
            .take(5)
            .collect();
        let extra: Vec<_> = got
            .iter()
            .filter(|g| expected.binary_search(g).is_err())
            .take(5)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{tenant} {table}: missing {missing:?}, unexpected {extra:?}"
        );
        assert_eq!(got.len(), expected.len());
        total += got.len();
    }
    total
}

#[test]
fn backfill_lands_every_record_once_for_oauth_and_basic_auth() {
    let fx = Fixture::new();
    tune(&fx, 600, 50, 2);
    // Strict at the configured rate (burst 1): a request sooner than the pace is refused.
    // 600/min (100 ms apart, 50 ms of tolerance): a loaded machine's late timers (a slot's
    // request sent 30 ms late, the next one on time) stay inside it, a budget per process or an
    // unpaced re-send does not.
    let sandbox = fx.start_sandbox(&["--rate-limit", "600", "--strict-rate-limit"]);
    let (start, end) = ("2025-10-01T00:00:00Z", "2025-11-15T00:00:00Z");
    let window = parse_window(start, end);
    let chunks = chunk_windows(window, 5);
    for tenant in ["acme", "globex"] {
        trigger(&fx, tenant, None, start, end, "5");
    }
    let out = fx.cli(Some(&sandbox), &["run", "--concurrency", "4"]);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for job in [
        "backfill_acme_servicenow_20251001",
        "backfill_globex_servicenow_20251001",
    ] {
        assert!(
            stdout.contains(&format!("{job}: completed")),
            "{}",
            text(&out)
        );
    }

    // What the data has to offer: records on chunk boundaries, ties across page boundaries.
    let cfg = fx.sandbox_config(TableCounts::demo());
    let (mut on_boundary, mut straddling) = (0, 0);
    for tenant in ["acme", "globex"] {
        let user = username(&fx, tenant);
        for (api, _) in TABLES {
            for w in &chunks {
                let mut rows = expected_servicenow(&cfg, &user, api, w);
                rows.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
                on_boundary += rows.iter().filter(|r| r.1 == w.start).count();
                straddling += (1..=rows.len() / 50)
                    .filter(|p| p * 50 < rows.len() && rows[p * 50 - 1].1 == rows[p * 50].1)
                    .count();
            }
        }
    }
    assert!(
        on_boundary > 0,
        "no record on a chunk boundary: the test proves less"
    );
    assert!(
        straddling > 0,
        "no tie across a page boundary: the test proves less"
    );

    let acme = assert_exact_tables(&fx, "acme", &window);
    let globex = assert_exact_tables(&fx, "globex", &window);
    assert!(acme > 500 && globex > 500, "{acme} {globex}");
    let a: BTreeSet<String> = landed(&fx, "acme", "incidents")
        .into_iter()
        .map(|r| r.0)
        .collect();
    let g: BTreeSet<String> = landed(&fx, "globex", "incidents")
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert!(a.is_disjoint(&g), "tenants share records");

    // Typed columns from ServiceNow's all-string values.
    let (_, files) = landed_keys(
        &fx.data_dir(),
        "acme",
        "servicenow",
        "change_requests",
        "sys_id",
        "sys_updated_on",
    );
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&files[0]).unwrap()).unwrap();
    let schema = reader.schema().clone();
    let ty = |name: &str| {
        schema
            .field_with_name(name)
            .unwrap_or_else(|_| panic!("no column {name}"))
            .data_type()
            .clone()
    };
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    assert_eq!(ty("sys_id"), DataType::Utf8);
    assert_eq!(ty("sys_updated_on"), ts);
    assert_eq!(ty("start_date"), ts);
    assert_eq!(ty("state"), DataType::Int64);
    assert_eq!(ty("sys_mod_count"), DataType::Int64);
    assert_eq!(ty("active"), DataType::Boolean);
    assert_eq!(ty("u_estimated_cost"), DataType::Float64);
    assert_eq!(ty("assigned_to"), DataType::Utf8);

    let stats = sandbox.stats();
    assert_eq!(stats["rate_limited"], 0, "{stats}");
    assert_eq!(stats["repeated_pages"], 0, "{stats}");
    assert_eq!(stats["unauthorized"], 0, "{stats}");
    // Acme signs in once (OAuth) for the whole run; globex uses Basic auth.
    assert_eq!(sn_stats(&sandbox)["tokens_issued"], 1);
    let status = job_status(&fx, "backfill_acme_servicenow_20251001");
    assert_eq!(status["job"]["status"], "completed");
    assert_eq!(status["job"]["records"].as_u64().unwrap(), acme as u64);
}

#[test]
fn records_edited_during_the_backfill_never_hide_the_ones_that_stayed() {
    let fx = Fixture::new();
    tune(&fx, 6000, 20, 2);
    // Three pages in a row of one incident chunk, and the first two change_request pages.
    let faults = write_faults(
        &fx,
        r#"{"faults":[
            {"service":"servicenow","path":"incident","window_start":"2025-10-15T00:00:00Z","kind":"touch_records","records":5,"times":3},
            {"service":"servicenow","path":"change_request","kind":"touch_records","records":4,"times":2}
        ]}"#,
    );
    let sandbox = fx.start_sandbox(&["--faults", &faults]);
    let (start, end) = ("2025-10-01T00:00:00Z", "2025-11-12T00:00:00Z");
    let window = parse_window(start, end);
    trigger(&fx, "acme", Some("incident"), start, end, "14");
    trigger(&fx, "globex", Some("change_request"), start, end, "14");
    let out = fx.cli(Some(&sandbox), &["run"]);
    assert_ok(&out);

    let moves = moved(&sandbox);
    let cfg = fx.sandbox_config(TableCounts::demo());
    for (tenant, api, table, count) in [
        ("acme", "incident", "incidents", 15),
        ("globex", "change_request", "change_requests", 8),
    ] {
        let user = username(&fx, tenant);
        let mine: Vec<&Moved> = moves
            .iter()
            .filter(|m| m.username == user && m.table == api)
            .collect();
        assert_eq!(mine.len(), count, "{mine:?}");
        assert!(
            mine.iter()
                .all(|m| window.contains(m.from) && !window.contains(m.to))
        );
        let initial = expected_servicenow(&cfg, &user, api, &window);
        let got = landed(&fx, tenant, table);
        assert_eq!(
            duplicates(&got),
            Vec::<String>::new(),
            "{table}: duplicates"
        );
        let moved_ids: BTreeSet<&str> = mine.iter().map(|m| m.sys_id.as_str()).collect();
        let missing: Vec<_> = initial
            .iter()
            .filter(|r| !moved_ids.contains(r.0.as_str()) && got.binary_search(r).is_err())
            .collect();
        assert!(
            missing.is_empty(),
            "{table}: records that stayed were skipped: {missing:?}"
        );
        let foreign: Vec<_> = got
            .iter()
            .filter(|g| initial.binary_search(g).is_err())
            .collect();
        assert!(foreign.is_empty(), "{table}: {foreign:?}");
        // Some moves hit records already read: they stay landed with their old update time.
        assert!(got.len() >= initial.len() - count);
    }
    // The incident chunk was touched while being read: moves from the part already read.
    let first_page_done = moves.iter().filter(|m| m.table == "incident").any(|m| {
        landed(&fx, "acme", "incidents")
            .iter()
            .any(|(id, _)| *id == m.sys_id)
    });
    assert!(first_page_done, "no move hit a record after it was read");
}

#[test]
fn storms_of_faults_are_absorbed_and_the_data_is_exact() {
    let fx = Fixture::new();
    tune(&fx, 6000, 50, 5);
    let (sandbox, out, window) = acme_october_under(
        &fx,
        r#"{"faults":[
            {"service":"servicenow","path":"*","status":429,"times":20,"retry_after_seconds":1,"message":"Rate limit exceeded"},
            {"service":"servicenow","path":"incident","kind":"truncate","times":2},
            {"service":"servicenow","path":"change_request","kind":"expire_token","times":1},
            {"service":"servicenow","path":"*","status":503,"probability":0.3,"message":"Service Unavailable"}
        ]}"#,
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("backfill_acme_servicenow_20251001: completed"),
        "{}",
        text(&out)
    );
    assert_exact_tables(&fx, "acme", &window);
    let stats = sandbox.stats();
    let injected = stats["faults_injected"].as_u64().unwrap();
    assert!(injected >= 23, "{stats}");
    assert!(
        sn_stats(&sandbox)["tokens_issued"].as_u64().unwrap() >= 2,
        "the expired token was replaced"
    );
    let detail = job_status(&fx, "backfill_acme_servicenow_20251001");
    assert_eq!(detail["job"]["status"], "completed");
    // How long each 429 pauses the tenant (its Retry-After) is checked on paused time in
    // `engine::policy_tests`, not by the wall clock here.
}

#[test]
fn a_permanent_401_fails_the_table_once_and_says_why() {
    let fx = Fixture::new();
    tune(&fx, 6000, 50, 2);
    let faults = write_faults(
        &fx,
        r#"{"faults":[
            {"service":"servicenow","path":"incident","window_start":"2025-10-08T00:00:00Z","status":401,"message":"User is not authenticated"}
        ]}"#,
    );
    let sandbox = fx.start_sandbox(&["--faults", &faults]);
    let (start, end) = ("2025-10-01T00:00:00Z", "2025-10-22T00:00:00Z");
    trigger(&fx, "acme", Some("incident"), start, end, "7");
    let out = fx.cli(Some(&sandbox), &["run"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "completed_with_errors exits 3: {}",
        text(&out)
    );
    let detail = job_status(&fx, "backfill_acme_servicenow_20251001");
    assert_eq!(detail["job"]["status"], "completed_with_errors");
    // A 401 is the object refused, the same for every window: the table fails once. Windows
    // that had read before it (or were reading) keep what they landed.
    let chunks = detail["chunks"].as_array().unwrap();
    let failed: Vec<_> = chunks.iter().filter(|c| c["status"] == "failed").collect();
    assert!(failed.iter().any(|c| c["key"]["seq"] == 1), "{detail}");
    let mut windows = Vec::new();
    for c in chunks {
        if c["status"] == "succeeded" {
            windows.push(parse_window(
                c["window"]["start"].as_str().unwrap(),
                c["window"]["end"].as_str().unwrap(),
            ));
            continue;
        }
        assert_eq!(c["status"], "failed", "{c}");
        assert!(
            c["attempts"].as_u64().unwrap() <= 1,
            "a 401 is not retried: {c}"
        );
        let err = c["last_error"].as_str().unwrap();
        for needle in [
            "table failed",
            "acme",
            "servicenow",
            "incident",
            "HTTP 401",
            "User is not authenticated",
        ] {
            assert!(err.contains(needle), "last error {err:?} lacks {needle:?}");
        }
    }
    // One request, one new token, one repeat: then the 401 stands, and no other window asks.
    assert_eq!(sandbox.stats()["faults_injected"], 2);

    // The windows that succeeded landed exactly.
    let cfg = fx.sandbox_config(TableCounts::demo());
    let user = username(&fx, "acme");
    let mut expected = Vec::new();
    for w in &windows {
        expected.extend(expected_servicenow(&cfg, &user, "incident", w));
    }
    expected.sort();
    assert_eq!(landed(&fx, "acme", "incidents"), expected);

    // No credential reached the store's view of the job, the logs or the terminal.
    let creds: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fx.config_dir().join("credentials/acme-servicenow.json")).unwrap(),
    )
    .unwrap();
    let secrets = [
        creds["password"].as_str().unwrap(),
        creds["client_secret"].as_str().unwrap(),
    ];
    let logs = std::fs::read_to_string(fx.workspace().join("logs/engine.jsonl")).unwrap();
    let everything = format!("{detail}{logs}{}", text(&out));
    assert_eq!(
        scrub(&everything, secrets),
        everything,
        "a secret was printed or stored"
    );
}

/// Backfills every table of acme for October 2025 in 7-day chunks, four at once, under
/// `faults` (JSON); the sandbox, the run's output and the window.
fn acme_october_under(fx: &Fixture, faults: &str) -> (SandboxProc, std::process::Output, Window) {
    let faults = write_faults(fx, faults);
    let sandbox = fx.start_sandbox(&["--faults", &faults]);
    let (start, end) = ("2025-10-01T00:00:00Z", "2025-11-01T00:00:00Z");
    trigger(fx, "acme", None, start, end, "7");
    let out = fx.cli(Some(&sandbox), &["run", "--concurrency", "4"]);
    assert_ok(&out);
    (sandbox, out, parse_window(start, end))
}

/// Backfills acme's incidents from 2025-10-01 to 2025-11-12 in 14-day chunks of 20-record
/// pages under `faults` (JSON); the sandbox and the window.
fn acme_incidents_under(fx: &Fixture, faults: &str) -> (SandboxProc, Window) {
    tune(fx, 6000, 20, 2);
    let faults = write_faults(fx, faults);
    let sandbox = fx.start_sandbox(&["--faults", &faults]);
    let (start, end) = ("2025-10-01T00:00:00Z", "2025-11-12T00:00:00Z");
    trigger(fx, "acme", Some("incident"), start, end, "14");
    assert_ok(&fx.cli(Some(&sandbox), &["run"]));
    (sandbox, parse_window(start, end))
}

#[test]
fn records_deleted_during_the_backfill_neither_fail_it_nor_hide_the_others() {
    let fx = Fixture::new();
    // Deletions before a window's first page and between its pages, the cursor's own
    // record among the candidates.
    let (sandbox, window) = acme_incidents_under(
        &fx,
        r#"{"faults":[{"service":"servicenow","path":"incident","kind":"delete_records","records":4,"times":6}]}"#,
    );
    let deleted: BTreeSet<String> = moved(&sandbox)
        .into_iter()
        .filter(|m| m.deleted)
        .map(|m| m.sys_id)
        .collect();
    assert!(deleted.len() >= 20, "only {} deleted", deleted.len());
    let cfg = fx.sandbox_config(TableCounts::demo());
    let user = username(&fx, "acme");
    let initial = expected_servicenow(&cfg, &user, "incident", &window);
    let got = landed(&fx, "acme", "incidents");
    assert_eq!(duplicates(&got), Vec::<String>::new());
    // The source's records as they are now: every one landed.
    let missing: Vec<_> = initial
        .iter()
        .filter(|r| !deleted.contains(&r.0) && got.binary_search(r).is_err())
        .collect();
    assert!(missing.is_empty(), "skipped: {missing:?}");
    // Anything else landed was read before it was deleted; some deletions came first.
    let extra: Vec<_> = got
        .iter()
        .filter(|g| deleted.contains(&g.0) || initial.binary_search(g).is_err())
        .collect();
    assert!(extra.iter().all(|g| deleted.contains(&g.0)), "{extra:?}");
    assert!(
        extra.len() < deleted.len(),
        "{} of {}",
        extra.len(),
        deleted.len()
    );
}

#[test]
fn records_moved_later_inside_the_window_being_read_are_all_landed_none_skipped() {
    let fx = Fixture::new();
    let (sandbox, window) = acme_incidents_under(
        &fx,
        r#"{"faults":[{"service":"servicenow","path":"incident","kind":"touch_records","inside_window":true,"records":5,"times":6}]}"#,
    );
    let moves = moved(&sandbox);
    assert!(moves.len() >= 20, "only {} moved", moves.len());
    assert!(moves.iter().all(|m| m.to > m.from && window.contains(m.to)));
    let cfg = fx.sandbox_config(TableCounts::demo());
    let initial = expected_servicenow(&cfg, &username(&fx, "acme"), "incident", &window);
    let got = landed(&fx, "acme", "incidents");
    // Every record there at the end landed, in one version or another; nothing else did.
    let want: BTreeSet<&str> = initial.iter().map(|r| r.0.as_str()).collect();
    let have: BTreeSet<&str> = got.iter().map(|r| r.0.as_str()).collect();
    let skipped: Vec<_> = want.difference(&have).collect();
    assert!(skipped.is_empty(), "skipped: {skipped:?}");
    assert_eq!(have, want);
    // A record read twice is one that moved after it was read.
    let moved_ids: BTreeSet<&str> = moves.iter().map(|m| m.sys_id.as_str()).collect();
    let twice = duplicates(&got);
    assert!(
        twice.iter().all(|id| moved_ids.contains(id.as_str())),
        "{twice:?}"
    );
}

#[test]
fn a_client_credentials_backfill_asks_again_only_when_its_token_expires_and_lands_exactly() {
    let fx = Fixture::new();
    tune(&fx, 6000, 20, 2);
    // Acme's OAuth client signs in with client credentials: no user, no password.
    fx.client_credentials_only("acme", "servicenow");
    let (sandbox, out, window) = acme_october_under(
        &fx,
        r#"{"faults":[
            {"service":"servicenow","path":"change_request","kind":"expire_token","times":1},
            {"service":"servicenow","path":"sys_user","kind":"expire_token","times":1}
        ]}"#,
    );
    let job = "backfill_acme_servicenow_20251001";
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{job}: completed")),
        "{}",
        text(&out)
    );

    // The sandbox names the client-credentials user by its client id.
    let cfg = fx.sandbox_config(TableCounts::demo());
    let mut total = 0;
    for (api, table) in TABLES {
        let mut got = landed(&fx, "acme", table);
        got.sort();
        let expected = expected_servicenow(&cfg, "acme-sn-oauth-client", api, &window);
        assert!(!expected.is_empty(), "{table}: nothing expected");
        assert_eq!(got, expected, "{table}");
        total += got.len();
    }
    let stats = sandbox.stats();
    assert!(stats["requests"].as_u64().unwrap() > 30, "{stats}");
    assert_eq!(stats["faults_injected"], 2, "{stats}");
    // One token, then one per expired token: not one per page.
    assert_eq!(sn_stats(&sandbox)["tokens_issued"], 3);
    let status = job_status(&fx, job);
    assert_eq!(status["job"]["records"].as_u64().unwrap(), total as u64);
}
