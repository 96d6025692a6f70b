//! Error paths: auth, malformed queries, rate limiting, injected faults, unknown paths.

use super::*;

#[tokio::test]
async fn bad_credentials_get_401_without_echoing_keys() {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let t = &cfg.tenants[0];
    let u = url(&sb, "service/tickets", &[]);
    let client = reqwest::Client::new();

    let wrong_key = client
        .get(&u)
        .header(
            "Authorization",
            basic(&t.company_id, &t.public_key, "not-the-private-key"),
        )
        .header("clientId", &t.client_id);
    let no_client_id = client.get(&u).header(
        "Authorization",
        basic(&t.company_id, &t.public_key, t.private_key.expose()),
    );
    let other_tenants_client = client
        .get(&u)
        .header(
            "Authorization",
            basic(&t.company_id, &t.public_key, t.private_key.expose()),
        )
        .header("clientId", &cfg.tenants[1].client_id);
    let no_auth = client.get(&u).header("clientId", &t.client_id);
    for req in [wrong_key, no_client_id, other_tenants_client, no_auth] {
        let r = send(req).await;
        assert_eq!(r.status, 401);
        let body = String::from_utf8(r.body.clone()).unwrap();
        assert_eq!(r.json()["code"], "Unauthorized");
        assert!(r.json()["message"].as_str().unwrap().len() > 5);
        for secret in [
            t.private_key.expose(),
            t.public_key.as_str(),
            "not-the-private-key",
        ] {
            assert!(!body.contains(secret), "{body}");
        }
    }
    assert_eq!(sb.stats().unauthorized, 4);
    assert_eq!(call(&u, t, false).await.status, 200);
    sb.shutdown().await;
}

#[tokio::test]
async fn malformed_conditions_get_400_naming_the_bad_part() {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let t = &cfg.tenants[0];
    let good = "lastUpdated >= [2024-01-01T00:00:00Z]";
    for bad in [
        "lastUpdated >> [2024-01-01T00:00:00Z]",
        "summary = \"printer\"",
        "lastUpdated < [2024-13-01T00:00:00Z]",
        "lastUpdated < 2024-01-01T00:00:00Z",
        "lastUpdated < [2024-01-01 00:00:00]",
    ] {
        let conditions = format!("{good} and {bad}");
        let r = call(
            &url(&sb, "service/tickets", &[("conditions", &conditions)]),
            t,
            true,
        )
        .await;
        assert_eq!(r.status, 400, "{bad}");
        let v = r.json();
        assert_eq!(v["code"], "InvalidObject");
        let message = v["message"].as_str().unwrap();
        assert!(message.contains(bad), "{message} should name {bad}");
        assert!(message.ends_with("is invalid"), "{message}");
        assert!(!message.contains(good), "{message}");
        assert_eq!(v["errors"][0]["field"], "conditions");
    }
    let or = format!("{good} or lastUpdated < [2024-02-01T00:00:00Z]");
    let r = call(
        &url(&sb, "service/tickets", &[("conditions", &or)]),
        t,
        true,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains(" or "));

    let r = call(
        &url(&sb, "service/tickets", &[("pageSize", "ten")]),
        t,
        true,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"][0]["field"], "pageSize");
    let r = call(&url(&sb, "service/tickets", &[("page", "0")]), t, false).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"][0]["field"], "page");
    // Forward-only ignores `page` altogether.
    let r = call(&url(&sb, "service/tickets", &[("page", "zero")]), t, true).await;
    assert_eq!(r.status, 200);
    let r = call(
        &url(&sb, "service/tickets", &[("orderBy", "summary desc")]),
        t,
        true,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"][0]["field"], "orderBy");
    sb.shutdown().await;
}

#[tokio::test]
async fn over_the_rate_limit_gets_429_with_retry_after() {
    let mut cfg = config();
    cfg.rate_limit_per_minute = Some(2);
    let sb = start(cfg.clone()).await;
    let (a, b) = (&cfg.tenants[0], &cfg.tenants[1]);
    let u = url(&sb, "company/companies", &[]);
    assert_eq!(call(&u, a, false).await.status, 200);
    assert_eq!(call(&u, a, false).await.status, 200);
    let r = call(&u, a, false).await;
    assert_eq!(r.status, 429);
    let retry: u64 = r.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    assert_eq!(r.json()["code"], "TooManyRequests");
    assert_eq!(r.json()["message"], "Rate limit exceeded");
    // The limit is per tenant.
    assert_eq!(call(&u, b, false).await.status, 200);
    let stats = sb.stats();
    assert_eq!((stats.rate_limited, stats.ok, stats.requests), (1, 3, 4));
    sb.shutdown().await;
}

#[tokio::test]
async fn a_fault_with_a_budget_fails_exactly_that_many_times() {
    let mut cfg = config();
    let start_at = ts("2024-02-01T00:00:00Z");
    cfg.faults = vec![Fault {
        window_start: Some(start_at),
        times: Some(2),
        message: "Simulated outage".into(),
        ..Fault::status("service/tickets", 503)
    }];
    let sb = start(cfg.clone()).await;
    let t = &cfg.tenants[0];
    let w = Window::new(start_at, ts("2024-02-03T00:00:00Z"));
    let hit = url(
        &sb,
        "service/tickets",
        &[("conditions", &window_conditions(&w))],
    );
    let other = Window::new(ts("2024-02-03T00:00:00Z"), ts("2024-02-05T00:00:00Z"));
    let miss = url(
        &sb,
        "service/tickets",
        &[("conditions", &window_conditions(&other))],
    );

    assert_eq!(call(&miss, t, true).await.status, 200);
    for _ in 0..2 {
        let r = call(&hit, t, true).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.json()["code"], "ConnectWiseApi");
        assert_eq!(r.json()["message"], "Simulated outage");
    }
    assert_eq!(call(&hit, t, true).await.status, 200);
    assert_eq!(call(&hit, t, true).await.status, 200);
    assert_eq!(sb.stats().faults_injected, 2);
    sb.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_get_404_and_single_records_resolve() {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let t = &cfg.tenants[0];
    for path in ["service/boards", "service/ticketsx", "time/entries/abc"] {
        let r = call(&url(&sb, path, &[]), t, false).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["code"], "NotFound");
    }
    let r = send(reqwest::Client::new().get(format!("{}/nope", sb.url()))).await;
    assert_eq!(r.status, 404);
    let one = call(&url(&sb, "company/contacts/1010", &[]), t, false).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["id"], 1010);
    assert_eq!(
        call(&url(&sb, "company/contacts/999999", &[]), t, false)
            .await
            .status,
        404
    );
    sb.shutdown().await;
}
