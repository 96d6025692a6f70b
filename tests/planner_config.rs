//! The planner with real configuration: chunk size and lookback precedence, table order.

mod common;

use avesa_console::domain::Service;
use avesa_console::engine::planner::{PlanRequest, plan};
use chrono::{Duration, TimeZone, Utc};
use common::Fixture;

fn req(tenant: &str) -> PlanRequest {
    PlanRequest {
        tenant_id: tenant.into(),
        service: Service::Connectwise,
        tables: vec![],
        start: None,
        end: None,
        chunk_size_days: None,
    }
}

#[test]
fn chunk_size_comes_from_override_then_service_then_default() {
    let fx = Fixture::new();
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 30, 15).unwrap();
    let cfg = fx.config();
    // globex has a tenant override (14 days, 365-day lookback); acme takes the service's 30/730.
    let g = plan(&cfg, &req("globex"), now).unwrap();
    assert_eq!(g.chunk_size_days, 14);
    assert_eq!(g.window.end, now);
    assert_eq!(g.window.start, now - Duration::days(365));
    assert!(g.end_is_default);
    let a = plan(&cfg, &req("acme"), now).unwrap();
    assert_eq!(
        (a.chunk_size_days, a.window.start),
        (30, now - Duration::days(730))
    );
    // An explicit flag beats everything.
    let mut explicit = req("globex");
    explicit.chunk_size_days = Some(3);
    assert_eq!(plan(&cfg, &explicit, now).unwrap().chunk_size_days, 3);
    // Without service settings, the defaults apply.
    fx.edit("backfill_config.json", |v| {
        v["service_settings"]
            .as_object_mut()
            .unwrap()
            .remove("connectwise");
        v["tenant_overrides"] = serde_json::json!({});
        v["default_settings"]["chunk_size_days"] = 21.into();
        v["default_settings"]["lookback_days"] = 100.into();
    });
    let d = plan(&fx.config(), &req("globex"), now).unwrap();
    assert_eq!(
        (d.chunk_size_days, d.window.start),
        (21, now - Duration::days(100))
    );
}

#[test]
fn every_table_is_planned_priority_first_and_ends_are_whole_seconds() {
    let fx = Fixture::new();
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 30, 15).unwrap() + Duration::milliseconds(737);
    // The shipped dependencies come first: companies before contacts before tickets.
    let p = plan(&fx.config(), &req("acme"), now).unwrap();
    let order: Vec<&str> = p.tables.iter().map(|t| t.table.as_str()).collect();
    assert_eq!(order, ["companies", "contacts", "tickets", "time_entries"]);
    // Without them, priority decides.
    fx.edit("backfill_config.json", |v| {
        v["service_settings"]["connectwise"]
            .as_object_mut()
            .unwrap()
            .remove("table_dependencies");
    });
    let p = plan(&fx.config(), &req("acme"), now).unwrap();
    let order: Vec<&str> = p.tables.iter().map(|t| t.path.as_str()).collect();
    assert_eq!(
        order,
        [
            "service/tickets",
            "time/entries",
            "company/companies",
            "company/contacts"
        ]
    );
    assert_eq!(
        p.window.end.timestamp_subsec_nanos(),
        0,
        "sources filter by the second"
    );
    assert!(
        p.tables
            .iter()
            .all(|t| t.windows.last().unwrap().end == p.window.end)
    );
    let (job, chunks) = p.to_job(now);
    assert_eq!(
        job.job_id,
        format!(
            "backfill_acme_connectwise_{}",
            p.window.start.format("%Y%m%d")
        )
    );
    assert_eq!(chunks.len(), p.total_chunks());
    assert_eq!(job.total_chunks as usize, 4 * p.tables[0].windows.len());
}

#[test]
fn disabled_services_are_refused() {
    let fx = Fixture::new();
    fx.edit("tenants.json", |v| {
        v["tenants"][0]["services"]["connectwise"]["enabled"] = false.into()
    });
    let err = plan(&fx.config(), &req("acme"), Utc::now()).unwrap_err();
    assert!(err.to_string().contains("disabled"), "{err}");
}

#[test]
fn chunk_size_flag_outside_its_range_is_refused() {
    let fx = Fixture::new();
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 30, 15).unwrap();
    let cfg = fx.config();
    for days in [0, 3651, u32::MAX] {
        let mut r = req("acme");
        r.chunk_size_days = Some(days);
        let e = plan(&cfg, &r, now).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("--chunk-size-days must be at least 1 and at most 3650 (got {days})")
        );
    }
    let mut r = req("acme");
    r.chunk_size_days = Some(3650);
    assert_eq!(plan(&cfg, &r, now).unwrap().chunk_size_days, 3650);
}

#[test]
fn override_values_outside_their_range_name_the_path() {
    let fx = Fixture::new();
    fx.edit("backfill_config.json", |v| {
        v["tenant_overrides"]["globex"]["connectwise"]["lookback_days"] = 36_501.into()
    });
    let e = avesa_console::config::Config::load(&fx.config_dir())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("backfill_config.json")
            && e.contains("$.tenant_overrides.globex.connectwise.lookback_days")
            && e.contains("at most 36500 (got 36501)"),
        "{e}"
    );
}

#[test]
fn max_in_flight_is_range_checked_and_salesforce_capped_at_25() {
    for (svc, value, said) in [
        ("connectwise", 0, "at least 1 and at most 64 (got 0)"),
        ("connectwise", 65, "at most 64 (got 65)"),
        ("salesforce", 26, "at most 25 (got 26)"),
    ] {
        let fx = Fixture::new();
        fx.edit("backfill_config.json", |v| {
            v["service_settings"][svc]["max_in_flight"] = value.into()
        });
        let e = avesa_console::config::Config::load(&fx.config_dir())
            .unwrap_err()
            .to_string();
        let path = format!("$.service_settings.{svc}.max_in_flight");
        assert!(
            e.contains("backfill_config.json") && e.contains(&path) && e.contains(said),
            "{e}"
        );
    }
    let fx = Fixture::new();
    let cfg = avesa_console::config::Config::load(&fx.config_dir()).unwrap();
    assert_eq!(cfg.backfill.max_in_flight(Service::Salesforce), 8);
    assert!(!cfg.backfill.strict_table_order(Service::Connectwise));
}
