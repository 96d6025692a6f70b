//! Latency, the strict limiter, the concurrency cap and the load measures, over HTTP.

use std::time::Duration;

use super::*;

fn with_latency(cfg: &mut SandboxConfig, ms: u64) {
    cfg.latency = Some(Latency {
        base: Duration::from_millis(ms),
        jitter: Duration::ZERO,
    });
}

#[tokio::test(start_paused = true)]
async fn every_api_answer_is_held_back_for_the_latency_and_counted_in_flight() {
    let mut cfg = config();
    with_latency(&mut cfg, 1500);
    let sb = start(cfg.clone()).await;
    let t = &cfg.tenants[0];
    let u = url(&sb, "company/companies", &[]);
    let started = tokio::time::Instant::now();
    assert_eq!(call(&u, t, false).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // A refusal is held back too.
    let started = tokio::time::Instant::now();
    let stranger = tenant("initech", 0);
    assert_eq!(call(&u, &stranger, false).await.status, 401);
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // The sandbox's own endpoints answer at once.
    let started = tokio::time::Instant::now();
    let body = reqwest::get(format!("{}/_sandbox/stats", sb.url()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let stats: SandboxStats = serde_json::from_slice(&body).unwrap();
    assert!(started.elapsed() < Duration::from_millis(1500));
    let load = &stats.tenants["connectwise:acme_demo"];
    assert_eq!((load.accepted, load.max_in_flight), (1, 1));
    assert!(load.busy_ms >= 1500, "{load:?}");
    assert_eq!(load.arrivals_ms.len(), 1);
    drop(sb);
}

#[tokio::test]
async fn a_request_over_the_concurrency_cap_gets_the_rate_limit_answer() {
    let mut cfg = config();
    cfg.max_concurrent_per_tenant = Some(1);
    // The first answer is held back long enough that it is still being served when the
    // second request comes (a slow answer holds its slot as the latency does).
    cfg.faults = vec![Fault {
        kind: FaultKind::Slow,
        delay_ms: Some(60_000),
        times: Some(1),
        ..Fault::status("company/companies", 500)
    }];
    let sb = start(cfg.clone()).await;
    let t = cfg.tenants[0].clone();
    let u = url(&sb, "company/companies", &[]);
    let first = tokio::spawn({
        let (u, t) = (u.clone(), t.clone());
        async move { call(&u, &t, false).await }
    });
    while sb.stats().max_in_flight == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = call(&u, &t, false).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["code"], "TooManyRequests");
    assert!(r.retry_after.is_some());
    let stats = sb.stats();
    assert_eq!(
        (
            stats.concurrency_refused,
            stats.rate_limited,
            stats.max_in_flight
        ),
        (1, 0, 1)
    );
    assert_eq!(
        stats.tenants["connectwise:acme_demo"].concurrency_refused,
        1
    );
    first.abort();
    drop(sb);
}

#[tokio::test]
async fn the_strict_limiter_refuses_a_second_request_at_once_and_a_fault_429_is_not_a_limit() {
    let mut cfg = config();
    cfg.rate_limit_per_minute = Some(60);
    cfg.rate_mode = RateMode::Strict;
    cfg.faults = vec![Fault {
        times: Some(1),
        ..Fault::status("service/tickets", 429)
    }];
    let sb = start(cfg.clone()).await;
    let t = &cfg.tenants[0];
    let u = url(&sb, "company/companies", &[]);
    assert_eq!(call(&u, t, false).await.status, 200);
    let r = call(&u, t, false).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    // The fault plan's 429 (for another tenant, inside its limit) is a fault.
    let other = &cfg.tenants[1];
    let r = call(&url(&sb, "service/tickets", &[]), other, false).await;
    assert_eq!(r.status, 429);
    let stats = sb.stats();
    assert_eq!(
        (stats.rate_limited, stats.faults_injected, stats.ok),
        (1, 1, 1)
    );
    assert_eq!(stats.tenants["connectwise:acme_demo"].rate_limited, 1);
    sb.shutdown().await;
}
