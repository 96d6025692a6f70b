//! Item layout of the lifecycle items, all in the chunks table (`job_id`, `sk`):
//!
//! - what belongs to no job lives in three fixed partitions whose names contain `#`, so they
//!   can never be a job's partition (job ids have no `#`):
//!   - `lifecycle#markers`, `sk = {tenant}#{service}#{table}`: a sync marker;
//!   - `lifecycle#services`, `sk = {tenant}#{service}`: a service's enablement history;
//!   - `lifecycle#alerts`, `sk = {kind}#{subject}`: an alert (its job in `alert_job`, since
//!     `job_id` is the partition key here);
//! - what belongs to a job lives in the job's own partition beside its chunks, so removing a
//!   job is one query of its partition:
//!   - `sk = meta`: scheduling hints, `finalized_at` and `quota_wait_until`;
//!   - `sk = verify`: which generation of verification results is current, its size and its
//!     time (`gen_at`);
//!   - `sk = verify#{gen}#{table}#{seq:06}`: one chunk's verification result. A generation's
//!     name starts with its time (microseconds, hex) and ends with 8 random hex digits.
//!
//! Markers and service states carry a write counter `v`: every write is conditional on the
//! `v` it read, so racing writers cannot undo each other's moves.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::super::codec::{Fields, Item, JOB_ID, chunks_key, n, s, t};
use crate::domain::{
    Alert, AlertKind, ChunkKey, ChunkVerification, JobMeta, Service, ServiceState, SyncMarker,
    Trigger, Window,
};
use crate::store::StoreError;

pub(super) const MARKERS: &str = "lifecycle#markers";
pub(super) const SERVICES: &str = "lifecycle#services";
pub(super) const ALERTS: &str = "lifecycle#alerts";
pub(super) const META_SK: &str = "meta";
pub(super) const VERIFY_SK: &str = "verify";
/// The job's run of failed chunk attempts (`failed_in_a_row`), counted by every worker.
pub(super) const FAILURES_SK: &str = "failures";
/// Where a job's table frontiers start: they go last when a job is removed.
pub(super) const FRONTIER_PREFIX: &str = "table#";

/// Refuses a key part that would make keys ambiguous (`#` separates them).
pub(super) fn key_part<'a>(what: &str, value: &'a str) -> Result<&'a str, StoreError> {
    if value.is_empty() || value.contains('#') {
        return Err(StoreError::Backend(format!(
            "cannot store a {what} of '{value}' in DynamoDB: it must be non-empty without '#'"
        )));
    }
    Ok(value)
}

pub(super) fn marker_key(tenant: &str, service: Service, table: &str) -> Item {
    chunks_key(MARKERS, format!("{tenant}#{service}#{table}"))
}

pub(super) fn service_key(tenant: &str, service: Service) -> Item {
    chunks_key(SERVICES, format!("{tenant}#{service}"))
}

pub(super) fn alert_key(kind: AlertKind, subject: &str) -> Item {
    chunks_key(ALERTS, format!("{kind}#{subject}"))
}

pub(super) fn meta_key(job_id: &str) -> Item {
    chunks_key(job_id, META_SK.to_string())
}

pub(super) fn failures_key(job_id: &str) -> Item {
    chunks_key(job_id, FAILURES_SK.to_string())
}

pub(super) fn verify_key(job_id: &str) -> Item {
    chunks_key(job_id, VERIFY_SK.to_string())
}

/// Every result of one generation starts with this.
pub(super) fn generation_prefix(generation: &str) -> String {
    format!("{VERIFY_SK}#{generation}#")
}

/// Every result of every generation starts with this.
pub(super) fn results_prefix() -> String {
    format!("{VERIFY_SK}#")
}

/// A name for a new generation of results: its time in microseconds (hex) and 8 random hex
/// digits, unique without coordination.
pub(super) fn generation_name(micros: u64, nonce: u32) -> String {
    format!("{micros:x}{nonce:08x}")
}

/// When a generation was started (microseconds), read from its name; 0 (older than any) for
/// a name that is not one.
pub(super) fn generation_at(generation: &str) -> u64 {
    generation
        .len()
        .checked_sub(8)
        .filter(|&n| n > 0)
        .and_then(|n| u64::from_str_radix(&generation[..n], 16).ok())
        .unwrap_or(0)
}

/// The generation a result's `sk` belongs to.
pub(super) fn generation_of(sk: &str) -> Option<&str> {
    sk.strip_prefix(VERIFY_SK)?
        .strip_prefix('#')?
        .split('#')
        .next()
}

fn opt_t(item: &mut Item, field: &str, v: Option<chrono::DateTime<chrono::Utc>>) {
    if let Some(at) = v {
        item.insert(field.to_string(), t(at));
    }
}

fn opt_s(item: &mut Item, field: &str, v: Option<&str>) {
    if let Some(text) = v {
        item.insert(field.to_string(), s(text));
    }
}

pub(super) fn marker_item(m: &SyncMarker, v: u64) -> Item {
    let mut item = marker_key(&m.tenant_id, m.service, &m.table);
    item.extend([
        ("tenant_id".to_string(), s(&m.tenant_id)),
        ("service".to_string(), s(m.service.as_str())),
        ("table".to_string(), s(&m.table)),
        ("last_updated".to_string(), t(m.last_updated)),
        ("set_by_job".to_string(), s(&m.set_by_job)),
        ("updated_at".to_string(), t(m.updated_at)),
        ("v".to_string(), n(v)),
    ]);
    opt_s(&mut item, "backfill_job", m.backfill_job.as_deref());
    opt_t(&mut item, "backfill_end", m.backfill_end);
    item
}

/// A marker and its write counter.
pub(super) fn decode_marker(item: &Item) -> Result<(SyncMarker, u64), StoreError> {
    let f = Fields::new(item, "sync marker");
    Ok((
        SyncMarker {
            tenant_id: f.s("tenant_id")?.to_string(),
            service: f.parsed("service")?,
            table: f.s("table")?.to_string(),
            last_updated: f.ts("last_updated")?,
            set_by_job: f.s("set_by_job")?.to_string(),
            backfill_job: f.opt_s("backfill_job")?.map(str::to_string),
            backfill_end: f.opt_ts("backfill_end")?,
            updated_at: f.ts("updated_at")?,
        },
        f.n("v")?,
    ))
}

pub(super) fn service_item(st: &ServiceState, v: u64) -> Item {
    let mut item = service_key(&st.tenant_id, st.service);
    item.extend([
        ("tenant_id".to_string(), s(&st.tenant_id)),
        ("service".to_string(), s(st.service.as_str())),
        ("enabled".to_string(), AttributeValue::Bool(st.enabled)),
        ("first_seen_at".to_string(), t(st.first_seen_at)),
        ("v".to_string(), n(v)),
    ]);
    opt_t(&mut item, "last_disabled_at", st.last_disabled_at);
    opt_t(&mut item, "reenabled_at", st.reenabled_at);
    item
}

fn bool_field(item: &Item, what: &str, field: &str) -> Result<bool, StoreError> {
    match item.get(field) {
        Some(AttributeValue::Bool(b)) => Ok(*b),
        other => Err(StoreError::Backend(format!(
            "stored {what} has a bad '{field}': {other:?} is not a boolean"
        ))),
    }
}

/// A service state and its write counter.
pub(super) fn decode_service(item: &Item) -> Result<(ServiceState, u64), StoreError> {
    let f = Fields::new(item, "service state");
    Ok((
        ServiceState {
            tenant_id: f.s("tenant_id")?.to_string(),
            service: f.parsed("service")?,
            enabled: bool_field(item, "service state", "enabled")?,
            first_seen_at: f.ts("first_seen_at")?,
            last_disabled_at: f.opt_ts("last_disabled_at")?,
            reenabled_at: f.opt_ts("reenabled_at")?,
        },
        f.n("v")?,
    ))
}

pub(super) fn trigger_text(t: Trigger) -> &'static str {
    match t {
        Trigger::Manual => "manual",
        Trigger::Auto => "auto",
    }
}

pub(super) fn decode_meta(item: &Item) -> Result<JobMeta, StoreError> {
    let f = Fields::new(item, "job hints");
    Ok(JobMeta {
        job_id: f.s(JOB_ID)?.to_string(),
        priority: f.n("priority")?,
        trigger: match f.s("trigger")? {
            "auto" => Trigger::Auto,
            _ => Trigger::Manual,
        },
        wait_off_peak: bool_field(item, "job hints", "wait_off_peak")?,
        finalized_at: f.opt_ts("finalized_at")?,
        quota_wait_until: f.opt_ts("quota_wait_until")?,
    })
}

/// Measured values and thresholds are kept as text: a ratio can be NaN or infinite, which a
/// DynamoDB number cannot hold, and nothing queries them.
fn float(v: f64) -> AttributeValue {
    s(v.to_string())
}

fn decode_float(f: &Fields<'_>, field: &str) -> Result<f64, StoreError> {
    f.s(field)?
        .parse()
        .map_err(|e| StoreError::Backend(format!("stored alert has a bad '{field}': {e}")))
}

pub(super) fn alert_item(a: &Alert) -> Item {
    let mut item = alert_key(a.kind, &a.subject);
    item.extend([
        ("kind".to_string(), s(a.kind.as_str())),
        ("subject".to_string(), s(&a.subject)),
        ("tenant_id".to_string(), s(&a.tenant_id)),
        ("service".to_string(), s(a.service.as_str())),
        ("message".to_string(), s(&a.message)),
        ("value".to_string(), float(a.value)),
        ("threshold".to_string(), float(a.threshold)),
        ("raised_at".to_string(), t(a.raised_at)),
    ]);
    opt_s(&mut item, "alert_job", a.job_id.as_deref());
    item
}

pub(super) fn decode_alert(item: &Item) -> Result<Alert, StoreError> {
    let f = Fields::new(item, "alert");
    Ok(Alert {
        kind: f.parsed("kind")?,
        subject: f.s("subject")?.to_string(),
        tenant_id: f.s("tenant_id")?.to_string(),
        service: f.parsed("service")?,
        job_id: f.opt_s("alert_job")?.map(str::to_string),
        message: f.s("message")?.to_string(),
        value: decode_float(&f, "value")?,
        threshold: decode_float(&f, "threshold")?,
        raised_at: f.ts("raised_at")?,
    })
}

pub(super) fn result_item(job_id: &str, generation: &str, v: &ChunkVerification) -> Item {
    let sk = format!(
        "{}{}#{:06}",
        generation_prefix(generation),
        v.key.table,
        v.key.seq
    );
    let mut item = chunks_key(job_id, sk);
    item.extend([
        ("table".to_string(), s(&v.key.table)),
        ("seq".to_string(), n(v.key.seq)),
        ("window_start".to_string(), t(v.window.start)),
        ("window_end".to_string(), t(v.window.end)),
        ("source_count".to_string(), n(v.source_count)),
        ("landed".to_string(), n(v.landed)),
        ("verified_at".to_string(), t(v.verified_at)),
    ]);
    item
}

pub(super) fn decode_result(item: &Item) -> Result<ChunkVerification, StoreError> {
    let f = Fields::new(item, "verification result");
    Ok(ChunkVerification {
        key: ChunkKey {
            job_id: f.s(JOB_ID)?.to_string(),
            table: f.s("table")?.to_string(),
            seq: f.n("seq")?,
        },
        window: Window::new(f.ts("window_start")?, f.ts("window_end")?),
        source_count: f.n("source_count")?,
        landed: f.n("landed")?,
        verified_at: f.ts("verified_at")?,
    })
}

/// The current generation of a job's verification results, how many there are and when the
/// generation was started (`gen_at`: the pointer only ever moves to a later one).
pub(super) fn pointer_item(job_id: &str, generation: &str, count: usize) -> Item {
    let mut item = verify_key(job_id);
    item.extend([
        ("generation".to_string(), s(generation)),
        ("count".to_string(), n(count)),
        ("gen_at".to_string(), n(generation_at(generation))),
    ]);
    item
}

pub(super) fn decode_pointer(item: &Item) -> Result<(String, usize), StoreError> {
    let f = Fields::new(item, "verification pointer");
    Ok((f.s("generation")?.to_string(), f.n("count")?))
}

/// Only the key attributes of items, for deleting them.
pub(super) fn keys_of(items: &[Item]) -> Vec<Item> {
    items
        .iter()
        .map(|i| {
            i.iter()
                .filter(|(k, _)| *k == JOB_ID || *k == super::super::codec::SK)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    #[test]
    fn lifecycle_items_round_trip() {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let m = SyncMarker {
            tenant_id: "acme".into(),
            service: Service::Connectwise,
            table: "tickets".into(),
            last_updated: at,
            set_by_job: "sync_1".into(),
            backfill_job: Some("bf1".into()),
            backfill_end: Some(at),
            updated_at: at,
        };
        assert_eq!(decode_marker(&marker_item(&m, 3)).unwrap(), (m, 3));
        let st = ServiceState {
            tenant_id: "acme".into(),
            service: Service::Salesforce,
            enabled: false,
            first_seen_at: at,
            last_disabled_at: Some(at),
            reenabled_at: None,
        };
        assert_eq!(decode_service(&service_item(&st, 1)).unwrap(), (st, 1));
        let a = Alert {
            kind: AlertKind::LowCompletionRate,
            subject: "acme/connectwise/tickets".into(),
            tenant_id: "acme".into(),
            service: Service::Connectwise,
            job_id: None,
            message: "m".into(),
            value: f64::NAN,
            threshold: 0.25,
            raised_at: at,
        };
        let back = decode_alert(&alert_item(&a)).unwrap();
        assert!(back.value.is_nan());
        assert_eq!(
            (back.threshold, back.subject.as_str(), back.job_id),
            (0.25, "acme/connectwise/tickets", None)
        );
        let v = ChunkVerification {
            key: ChunkKey {
                job_id: "bf1".into(),
                table: "tickets".into(),
                seq: 12,
            },
            window: Window::new(at, at),
            source_count: 10,
            landed: 9,
            verified_at: at,
        };
        let item = result_item("bf1", "g1", &v);
        assert_eq!(
            item.get("sk"),
            Some(&s("verify#g1#tickets#000012")),
            "a generation's results share a prefix"
        );
        assert_eq!(decode_result(&item).unwrap(), v);
        assert_eq!(keys_of(&[item])[0].len(), 2);
    }

    #[test]
    fn generations_are_ordered_by_the_time_in_their_name() {
        let g = generation_name(0x6_4000_0000_0001, 0xdead_beef);
        assert_eq!(g, "6400000000001deadbeef");
        assert_eq!(generation_at(&g), 0x6_4000_0000_0001);
        assert!(generation_at(&generation_name(2, 0)) > generation_at(&generation_name(1, !0)));
        // Names that are not generations are older than any.
        for odd in ["", "g1", "deadbeef", "zz00000000"] {
            assert_eq!(generation_at(odd), 0, "{odd}");
        }
        let item = result_item(
            "bf1",
            &g,
            &ChunkVerification {
                key: ChunkKey {
                    job_id: "bf1".into(),
                    table: "tickets".into(),
                    seq: 3,
                },
                window: Window::new(Utc::now(), Utc::now()),
                source_count: 1,
                landed: 1,
                verified_at: Utc::now(),
            },
        );
        let sk = item["sk"].as_s().unwrap();
        assert!(sk.starts_with(&results_prefix()));
        assert_eq!(generation_of(sk), Some(g.as_str()));
        assert_eq!(generation_of(VERIFY_SK), None, "the pointer is no result");
        assert_eq!(generation_of("meta"), None);
        let pointer = pointer_item("bf1", &g, 4);
        assert_eq!(pointer["gen_at"], n(0x6_4000_0000_0001u64));
        assert_eq!(decode_pointer(&pointer).unwrap(), (g, 4));
    }

    #[test]
    fn lifecycle_partitions_are_no_job_and_key_parts_refuse_separators() {
        for p in [MARKERS, SERVICES, ALERTS] {
            assert!(p.contains('#'), "{p} could be a job id");
        }
        assert!(key_part("tenant id", "acme").is_ok());
        assert!(key_part("tenant id", "a#b").is_err());
        assert!(key_part("job id", "").is_err());
    }
}
