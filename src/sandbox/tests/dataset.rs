//! The synthetic dataset: declared columns and types, determinism, index walk, fault files.

use super::*;

#[tokio::test]
async fn rendering_is_deterministic_and_has_every_declared_column() {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let twin = start(cfg.clone()).await;
    let t = &cfg.tenants[0];
    let mapping: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/mappings/endpoints/connectwise.json"
        ))
        .unwrap(),
    )
    .unwrap();
    for endpoint in mapping["endpoints"].as_array().unwrap() {
        let path = endpoint["path"].as_str().unwrap();
        let params = [("pageSize", "200"), ("pageId", "1005")];
        let first = call(&url(&sb, path, &params), t, true).await;
        let second = call(&url(&sb, path, &params), t, true).await;
        let other = call(&url(&twin, path, &params), t, true).await;
        assert_eq!(first.status, 200);
        assert!(
            first.body == second.body && first.body == other.body,
            "{path} not deterministic"
        );
        let records = first.json();
        let records = records.as_array().unwrap();
        assert!(records.len() >= 40, "{path}");

        let mut null_closed = 0;
        for record in records {
            for column in endpoint["columns"].as_array().unwrap() {
                let name = column["name"].as_str().unwrap();
                let ty = column["type"].as_str().unwrap();
                let value = name
                    .split("__")
                    .try_fold(record, |v, key| v.get(key))
                    .unwrap_or_else(|| panic!("{path}: {name} missing in {record}"));
                let ok = match ty {
                    "int64" => value.is_i64(),
                    "float64" => value.is_f64(),
                    "bool" => value.is_boolean(),
                    "string" => value.is_string(),
                    "json" => value.is_array() || value.is_object(),
                    "timestamp" if value.is_null() && name == "closedDate" => {
                        null_closed += 1;
                        true
                    }
                    "timestamp" => value.as_str().is_some_and(|s| {
                        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ").is_ok()
                    }),
                    other => panic!("unknown type {other}"),
                };
                assert!(ok, "{path}: {name} should be {ty}, got {value}");
            }
        }
        let size = first.body.len() / records.len();
        let (lo, hi) = match path {
            "service/tickets" => (2100, 2800),
            "time/entries" => (450, 800),
            "company/companies" => (550, 900),
            _ => (380, 700),
        };
        assert!((lo..=hi).contains(&size), "{path}: {size} bytes per record");
        if path == "service/tickets" {
            assert!(null_closed > 0 && null_closed < records.len());
            let href = records[0]["_info"]["notes_href"].as_str().unwrap();
            assert!(
                href.ends_with(&format!("/service/tickets/{}/notes", records[0]["id"])),
                "{href}"
            );
        }
    }
    twin.shutdown().await;
    sb.shutdown().await;
}

#[test]
fn index_walk_agrees_with_a_brute_force_scan() {
    let cfg = config();
    let tenant = &cfg.tenants[0];
    let g = Generator::new(cfg.anchor, cfg.history_days, tenant, Table::Tickets);
    let data = TableData::new(g.clone());
    let anchor = cfg.anchor.timestamp();
    let start = anchor - 730 * 86_400;
    assert!(data.index.iter().all(|&(_, lu)| start <= lu && lu < anchor));
    let midnights = data
        .index
        .iter()
        .step_by(50)
        .filter(|&&(_, lu)| lu % 86_400 == 0)
        .count();
    assert!(midnights * 10 >= data.index.len() / 50 * 9, "{midnights}");
    for i in 0..g_count(&data) - 1 {
        assert!(g.date_entered(i) <= g.date_entered(i + 1));
    }
    let mut seed = 7u64;
    for _ in 0..200 {
        seed = super::data::mix(seed);
        let lo = start - 86_400 * 30 + (seed % (800 * 86_400)) as i64;
        let hi = lo + (seed >> 32) as i64 % (90 * 86_400);
        let bounds = Bounds { lo, hi };
        let brute: Vec<(i64, i64)> = data
            .index
            .iter()
            .copied()
            .filter(|&(_, lu)| lo <= lu && lu < hi)
            .collect();
        assert_eq!(data.page_after(bounds, None, usize::MAX), brute);
        assert_eq!(data.count(bounds), brute.len() as u64);
        if let Some(&(mid, _)) = brute.get(brute.len() / 2) {
            let tail: Vec<_> = brute.iter().copied().filter(|r| r.0 > mid).collect();
            assert_eq!(data.page_after(bounds, Some(mid), usize::MAX), tail);
        }
        let w = Window::new(
            DateTime::from_timestamp(lo, 0).unwrap(),
            DateTime::from_timestamp(hi, 0).unwrap(),
        );
        let expected: Vec<(i64, i64)> = expected_records(&cfg, "acme_demo", "tickets", &w)
            .into_iter()
            .map(|(id, t)| (id, t.timestamp()))
            .collect();
        assert_eq!(expected, brute);
    }
}

/// The first tenant's tickets and the data set's anchor (seconds).
fn tickets() -> (TableData, i64) {
    let cfg = config();
    let g = Generator::new(
        cfg.anchor,
        cfg.history_days,
        &cfg.tenants[0],
        Table::Tickets,
    );
    (TableData::new(g), cfg.anchor.timestamp())
}

#[test]
fn an_edit_of_the_newest_records_takes_the_highest_ids() {
    let (data, anchor) = tickets();
    let mut ids: Vec<i64> = data.index.iter().map(|&(id, _)| id).collect();
    ids.sort_unstable();
    let newest = data.edit_newest(3, anchor + 60);
    let edited: Vec<i64> = newest.iter().map(|e| e.0).collect();
    assert_eq!(edited, ids[ids.len() - 3..].to_vec());
    let times: Vec<i64> = newest.iter().map(|e| e.2).collect();
    assert_eq!(times, vec![anchor + 60, anchor + 61, anchor + 62]);
    let spread = data.edit(3, anchor + 120);
    assert_eq!(spread.len(), 3);
    assert!(
        spread[0].0 < ids[ids.len() / 2],
        "spread edits start at the oldest"
    );
    assert!(data.edit_newest(0, anchor).is_empty());
}

#[test]
fn moved_records_are_found_by_any_window_holding_their_new_time() {
    let (data, anchor) = tickets();
    let edited = data.edit(5, anchor + 3_600);
    assert_eq!(edited.len(), 5);
    // Brute force over the index with the edits applied, for windows before, across and
    // after the history's end, and with keyset cursors.
    let current: Vec<(i64, i64)> = data
        .index
        .iter()
        .map(|&(id, lu)| {
            let moved = edited.iter().find(|e| e.0 == id).map(|e| e.2);
            (id, moved.unwrap_or(lu))
        })
        .collect();
    for (lo, hi) in [
        (anchor - 400 * 86_400, anchor),
        (anchor - 30 * 86_400, anchor + 86_400),
        (anchor, anchor + 86_400),
        (anchor + 3_601, anchor + 3_604),
    ] {
        let bounds = Bounds { lo, hi };
        let brute: Vec<(i64, i64)> = current
            .iter()
            .copied()
            .filter(|&(_, lu)| lo <= lu && lu < hi)
            .collect();
        assert_eq!(
            data.page_after(bounds, None, usize::MAX),
            brute,
            "[{lo}, {hi})"
        );
        assert_eq!(data.count(bounds), brute.len() as u64);
        if let Some(&(mid, _)) = brute.get(brute.len() / 2) {
            let tail: Vec<_> = brute.iter().copied().filter(|r| r.0 > mid).collect();
            assert_eq!(data.page_after(bounds, Some(mid), usize::MAX), tail);
        }
    }
    let after_end = data.page_after(
        Bounds {
            lo: anchor,
            hi: anchor + 86_400,
        },
        None,
        100,
    );
    assert_eq!(
        after_end.len(),
        5,
        "only the edited records live after the history's end"
    );
}

fn g_count(data: &TableData) -> u64 {
    data.index.len() as u64
}

#[test]
fn fault_plans_load_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("faults.json");
    std::fs::write(
        &good,
        r#"{"faults":[{"path":"service/tickets","window_start":"2024-02-01T00:00:00Z","status":500,"times":3,"message":"boom"},
                      {"path":"time/entries","status":429}]}"#,
    )
    .unwrap();
    let faults = load_faults(&good).unwrap();
    assert_eq!(faults.len(), 2);
    assert_eq!(faults[0].times, Some(3));
    assert_eq!(faults[0].window_start, Some(ts("2024-02-01T00:00:00Z")));
    assert_eq!((faults[1].times, faults[1].window_start), (None, None));

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"faults":[{"path":"service/tickets","status":"x"}]}"#,
    )
    .unwrap();
    let err = load_faults(&bad).unwrap_err().to_string();
    assert!(
        err.contains("bad.json") && err.contains("faults[0].status"),
        "{err}"
    );
    std::fs::write(
        &bad,
        r#"{"faults":[{"path":"service/tickets","status":42}]}"#,
    )
    .unwrap();
    let err = load_faults(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.json") && err.contains("42"), "{err}");
    let err = load_faults(&dir.path().join("missing.json"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.json"), "{err}");
}

#[test]
fn table_counts_by_table_name() {
    let c = TableCounts::demo();
    assert_eq!(c.get("tickets"), Some(4000));
    assert_eq!(c.get("time_entries"), Some(8000));
    assert_eq!(c.get("companies"), Some(200));
    assert_eq!(c.get("contacts"), Some(800));
    assert_eq!(c.get("incidents"), None);
    let debug = format!("{:?}", tenant("acme_demo", 0));
    assert!(!debug.contains("private-key-secret"), "{debug}");
}

/// Not a timed assertion: prints render throughput (`cargo test --release -- --ignored --nocapture`).
#[test]
#[ignore]
fn render_speed_report() {
    let mut cfg = config();
    cfg.tenants[0].counts.tickets = 1_000_000;
    let g = Generator::new(
        cfg.anchor,
        cfg.history_days,
        &cfg.tenants[0],
        Table::Tickets,
    );
    let started = std::time::Instant::now();
    let data = TableData::new(g);
    let built = started.elapsed();
    let started = std::time::Instant::now();
    let mut bytes = 0;
    let mut after = None;
    loop {
        let rows = data.page_after(Bounds::ALL, after, 1000);
        let Some(&(last, _)) = rows.last() else { break };
        let mut body = Vec::with_capacity(rows.len() * 2600);
        for &(id, lu) in &rows {
            super::render::render(&data.generator, (id - ID_BASE) as u64, lu, &mut body);
        }
        bytes += body.len();
        after = Some(last);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "index of 1M built in {built:?}; rendered 1M tickets ({} MB) in {secs:.2}s = {:.0} records/s",
        bytes / 1_000_000,
        1e6 / secs
    );
}

/// Not a timed assertion: prints end-to-end HTTP throughput of a forward-only pull of
/// 1M tickets, parsed by the client (`cargo test --release -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn http_pull_speed_report() {
    let mut cfg = config();
    cfg.tenants[0].counts.tickets = 1_000_000;
    let sb = start(cfg.clone()).await;
    let t = &cfg.tenants[0];
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let mut next = Some(url(&sb, "service/tickets", &[("pageSize", "1000")]));
    let mut records = 0usize;
    let (mut fetch, mut parse) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    while let Some(u) = next.take() {
        let t0 = std::time::Instant::now();
        let page = call_with(&client, &u, t, true).await;
        fetch += t0.elapsed();
        let t0 = std::time::Instant::now();
        let parsed: Vec<serde::de::IgnoredAny> = serde_json::from_slice(&page.body).unwrap();
        parse += t0.elapsed();
        records += parsed.len();
        next = next_link(page.link.as_deref().unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(records, 1_000_000);
    println!(
        "pulled {records} tickets ({} MB) over HTTP in {secs:.2}s = {:.0} records/s \
         (fetch {fetch:?}, client JSON validation {parse:?})",
        sb.stats().bytes_sent / 1_000_000,
        records as f64 / secs
    );
    sb.shutdown().await;
}
