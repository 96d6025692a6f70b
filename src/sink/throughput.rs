//! A hand-run throughput check (ignored by default): ConnectWise-like tickets of ~2.4 KB,
//! parsed from JSON bytes and encoded into 50,000-row parts.
//!
//! `cargo test --release --lib sink::throughput -- --ignored --nocapture`

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use serde_json::Value;

use super::{ChunkMeta, RawSink};
use crate::config::ServiceEndpoints;
use crate::domain::{Service, Window};

const WORDS: &[&str] = &[
    "printer",
    "network",
    "user",
    "reports",
    "outlook",
    "cannot",
    "connect",
    "after",
    "update",
    "the",
    "server",
    "restart",
    "error",
    "message",
    "shows",
    "when",
    "opening",
    "shared",
    "drive",
    "license",
    "expired",
    "please",
    "advise",
    "urgent",
    "intermittent",
    "vpn",
    "drops",
    "every",
    "few",
    "minutes",
    "laptop",
    "battery",
    "replacement",
    "requested",
    "by",
    "manager",
    "on",
    "site",
    "visit",
    "scheduled",
    "for",
    "tomorrow",
    "morning",
    "backup",
    "job",
    "failed",
];

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn ticket_json(i: u64, out: &mut String) {
    let h = |f: u64| mix(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ f);
    let mut text = String::with_capacity(1900);
    let mut k = h(1);
    while text.len() < 620 + (h(2) % 560) as usize {
        k = mix(k);
        text.push_str(WORDS[(k % WORDS.len() as u64) as usize]);
        text.push_str(if k % 11 == 0 { ".\n" } else { " " });
    }
    let closed = h(3) % 10 < 6;
    let rec = serde_json::json!({
        "id": 250_000 + i, "summary": format!("Printer offline on floor {} (billing)", h(4) % 9),
        "recordType": "ServiceTicket",
        "board": {"id": 30 + h(5) % 5, "name": "Help Desk", "_info": {"board_href": format!("https://sandbox.connectwise.invalid/v4_6_release/apis/3.0/service/boards/{}", 30 + h(5) % 5)}},
        "status": {"id": h(6) % 8, "name": if closed { "Closed" } else { "In Progress" }},
        "company": {"id": 19_000 + h(7) % 500, "identifier": format!("Company{}", h(7) % 500), "name": format!("Company {} Ltd", h(7) % 500)},
        "site": {"id": 5000 + h(7) % 500, "name": "Main"},
        "contact": {"id": 90_000 + h(8) % 5000, "name": "Jane Dunn"},
        "type": {"id": 3, "name": "Incident"}, "priority": {"id": 2, "name": "Priority 2 - High"},
        "severity": "Medium", "impact": "Low", "team": {"id": 25, "name": "Tier 1"},
        "owner": {"id": 151, "identifier": "jdoe"}, "closedFlag": closed,
        "closedDate": if closed { Value::from("2024-02-03T10:11:12Z") } else { Value::Null },
        "requiredDate": "2024-02-10T00:00:00Z", "budgetHours": (h(9) % 40) as f64 / 4.0,
        "actualHours": (h(10) % 40) as f64 / 4.0, "initialDescription": text,
        "customFields": [
            {"id": 1, "caption": "Asset Tag", "type": "Text", "entryMethod": "EntryField", "numberOfDecimals": 0, "value": format!("AT-{}", h(11) % 90_000)},
            {"id": 2, "caption": "Billable", "type": "Checkbox", "entryMethod": "EntryField", "numberOfDecimals": 0, "value": h(12) % 2 == 0},
            {"id": 3, "caption": "Escalation Level", "type": "Number", "entryMethod": "EntryField", "numberOfDecimals": 0}
        ],
        "_info": {
            "lastUpdated": format!("2024-01-{:02}T{:02}:{:02}:{:02}Z", 1 + h(13) % 28, h(14) % 24, h(15) % 60, h(16) % 60),
            "updatedBy": "jdoe", "dateEntered": "2023-12-20T08:00:00Z", "enteredBy": "asmith",
            "activities_href": format!("https://sandbox.connectwise.invalid/v4_6_release/apis/3.0/sales/activities?conditions=ticket/id={}", 250_000 + i),
            "timeentries_href": format!("https://sandbox.connectwise.invalid/v4_6_release/apis/3.0/time/entries?conditions=chargeToId={}", 250_000 + i),
            "notes_href": format!("https://sandbox.connectwise.invalid/v4_6_release/apis/3.0/service/tickets/{}/notes", 250_000 + i)
        }
    });
    out.push_str(&rec.to_string());
}

/// CPU time (user + system) of the whole process, all threads.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn rss_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

const PAGES: u64 = 200;
const PAGE: u64 = 1000;

#[test]
#[ignore = "timing run, start by hand in release mode"]
fn encode_throughput() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("mappings/endpoints/connectwise.json");
    let defs = ServiceEndpoints::load(&path, Service::Connectwise).unwrap();
    let ep = defs.find("tickets").unwrap();
    let bodies = render_pages();
    let json_bytes: usize = bodies.iter().map(Vec::len).sum();
    println!("avg record: {} bytes", json_bytes as u64 / (8 * PAGE));
    time_writer(ep, &bodies);
    time_parse_and_drop(&bodies);
    time_flatten(ep, &bodies);
}

/// A handful of distinct pages as JSON arrays, rendered before anything is timed.
fn render_pages() -> Vec<Vec<u8>> {
    (0..8)
        .map(|p| {
            let mut s = String::from("[");
            for i in 0..PAGE {
                if i > 0 {
                    s.push(',');
                }
                ticket_json(p * PAGE + i, &mut s);
            }
            s.push(']');
            s.into_bytes()
        })
        .collect()
}

/// Parses `PAGES` pages and encodes them into parts on this thread, as a chunk's run does.
fn time_writer(ep: &crate::config::EndpointDef, bodies: &[Vec<u8>]) {
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let meta = ChunkMeta {
        tenant_id: "acme".into(),
        service: Service::Connectwise,
        table: "tickets".into(),
        job_id: "bench".into(),
        chunk_seq: 0,
        window: Window::new(start, start + chrono::Duration::days(31)),
        ingested_at: Utc::now(),
    };
    let mut w =
        RawSink::part_writer(&RawSink::local(&std::env::temp_dir()).unwrap(), meta, ep).unwrap();
    let (mut parse, mut encode) = (Duration::ZERO, Duration::ZERO);
    let (wall, cpu) = (Instant::now(), process_cpu());
    println!(
        "RSS before the loop (test data included): {:?} KiB",
        rss_kib("VmRSS:")
    );
    let (mut parts, mut bytes, mut max_buffered) = (0u32, 0usize, 0usize);
    for p in 0..PAGES {
        let t = Instant::now();
        let page: Vec<Value> = serde_json::from_slice(&bodies[(p % 8) as usize]).unwrap();
        parse += t.elapsed();
        let t = Instant::now();
        w.append_page(page).unwrap();
        max_buffered = max_buffered.max(w.buffered_bytes());
        if w.buffered_rows() >= 50_000 || w.buffered_bytes() >= 24 << 20 || p + 1 == PAGES {
            let part = w.finish_part(parts).unwrap().unwrap();
            bytes += part.bytes.len();
            parts += 1;
        }
        encode += t.elapsed();
    }
    let (wall, cpu) = (wall.elapsed(), process_cpu() - cpu);
    let n = (PAGES * PAGE) as f64;
    println!(
        "wall {:.0} rec/s; CPU per record: {:.1} us in all, {:.1} us without parsing",
        n / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / n,
        (cpu.saturating_sub(parse)).as_secs_f64() * 1e6 / n
    );
    println!(
        "{} records: parse {:.0} rec/s, append+finish on the calling thread {:.0} rec/s, both {:.0} rec/s",
        n,
        n / parse.as_secs_f64(),
        n / encode.as_secs_f64(),
        n / (parse + encode).as_secs_f64()
    );
    println!(
        "{parts} parts, {:.1} MB parquet ({:.1} bytes/record), max buffered {:.1} MB, peak RSS {:?} KiB",
        bytes as f64 / 1e6,
        bytes as f64 / n,
        max_buffered as f64 / 1e6,
        rss_kib("VmHWM:")
    );
}

/// The cost any consumer of Vec<Value> pays: parsing and dropping, with no sink at all.
fn time_parse_and_drop(bodies: &[Vec<u8>]) {
    let t = Instant::now();
    for p in 0..40 {
        let page = super::lite::parse_page(&bodies[p % 8], super::RecordsAt::Body).unwrap();
        drop(std::hint::black_box(page));
    }
    println!(
        "parse + drop alone: {:.2} us/rec",
        t.elapsed().as_secs_f64() * 1e6 / (40 * PAGE) as f64
    );
}

/// Where the sink's time goes: flattening alone, and dropping the parsed records.
fn time_flatten(ep: &crate::config::EndpointDef, bodies: &[Vec<u8>]) {
    let columns: Vec<(String, crate::config::ColumnType)> = ep
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.kind))
        .collect();
    let mut f = super::flatten::Flattener::new(&columns);
    let (mut flat, mut drop_t) = (Duration::ZERO, Duration::ZERO);
    for p in 0..40 {
        let page = super::lite::parse_page(&bodies[p % 8], super::RecordsAt::Body).unwrap();
        let t = Instant::now();
        f.begin_page(page.len());
        for r in &page {
            f.append(r.as_obj().unwrap()).unwrap();
        }
        std::hint::black_box(f.finish_page());
        flat += t.elapsed();
        let t = Instant::now();
        drop(page);
        drop_t += t.elapsed();
    }
    let n = 40.0 * PAGE as f64;
    println!(
        "flatten only {:.0} rec/s ({:.2} us/rec), drop (cold) {:.2} us/rec",
        n / flat.as_secs_f64(),
        flat.as_secs_f64() * 1e6 / n,
        drop_t.as_secs_f64() * 1e6 / n
    );
}
