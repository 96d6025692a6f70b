//! Logins and tokens, the daily and per-minute API limits, and fault-plan answers.

use super::*;

#[tokio::test]
async fn logins_tokens_and_limits_behave_like_an_org() {
    let mut cfg = config(vec![sf_fault(
        "Contact",
        FaultKind::ExpireToken,
        None,
        Some(1),
    )]);
    cfg.salesforce[0].daily_api_limit = 6;
    let sb = start(cfg).await;
    let http = reqwest::Client::new();
    let a = account(USER);
    // Bad credentials, each with OAuth's own error.
    for (form, error) in [
        (
            vec![("grant_type", "password"), ("client_id", "nope")],
            "invalid_client_id",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", a.client_id.as_str()),
                ("client_secret", "x"),
            ],
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", a.client_id.as_str()),
                ("client_secret", a.client_secret.expose()),
                ("username", USER),
                ("password", "wrong"),
            ],
            "invalid_grant",
        ),
        (
            vec![("grant_type", "client_magic")],
            "unsupported_grant_type",
        ),
    ] {
        let (status, body) = token_request(&http, &sb.url(), &form).await;
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            (400, error),
            "{body}"
        );
    }
    let (status, body) = token_request(
        &http,
        &sb.url(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &a.client_id),
            ("client_secret", a.client_secret.expose()),
            ("refresh_token", "5Aep-refresh-token"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let mut api = Api::login(&sb).await;
    let (status, _, body) = api
        .get(
            "/services/data/v60.0/query?q=SELECT+Id+FROM+Lead+LIMIT+1",
            None,
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // The fault expires this token: 401 until a new login.
    let q = "/services/data/v60.0/query?q=SELECT+Id+FROM+Contact+LIMIT+1";
    for _ in 0..2 {
        let (status, _, body) = api.get(q, None).await;
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, error_code(&body)), (401, "INVALID_SESSION_ID"));
    }
    api.token = Api::login(&sb).await.token;
    assert_eq!(api.get(q, None).await.0, 200);
    // Daily limit 6 (the 401 after the fault counted, the one without a session did not):
    // requests 4..=6 pass, then 403 REQUEST_LIMIT_EXCEEDED.
    for n in 4..=6 {
        let (status, headers, _) = api.get(q, None).await;
        assert_eq!(status, 200);
        assert_eq!(
            headers["Sforce-Limit-Info"].to_str().unwrap(),
            format!("api-usage={n}/6")
        );
    }
    let (status, headers, body) = api.get(q, None).await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, error_code(&body)), (403, "REQUEST_LIMIT_EXCEEDED"));
    assert_eq!(body[0]["message"], "TotalRequests Limit exceeded.");
    assert_eq!(
        headers["Sforce-Limit-Info"].to_str().unwrap(),
        "api-usage=6/6"
    );
    let stats = sb.stats();
    assert_eq!(stats.unauthorized, 5, "{stats:?}");
    assert_eq!(stats.rate_limited, 1, "{stats:?}");
}

#[tokio::test]
async fn the_per_minute_limit_answers_403_with_retry_after() {
    let mut cfg = config(Vec::new());
    cfg.rate_limit_per_minute = Some(3);
    let sb = start(cfg).await;
    let api = Api::login(&sb).await;
    let q = "/services/data/v60.0/query?q=SELECT+Id+FROM+Lead+LIMIT+1";
    for _ in 0..3 {
        assert_eq!(api.get(q, None).await.0, 200);
    }
    let (status, headers, body) = api.get(q, None).await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, error_code(&body)), (403, "REQUEST_LIMIT_EXCEEDED"));
    assert!(
        body[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("ConcurrentRequests")
    );
    let wait: u64 = headers["Retry-After"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
}

#[tokio::test]
async fn status_faults_answer_with_salesforce_error_arrays() {
    let faults = vec![
        sf_fault("Account", FaultKind::Status, Some(403), Some(1)),
        sf_fault("Account", FaultKind::Status, Some(429), Some(1)),
        sf_fault("Account", FaultKind::Status, Some(503), Some(1)),
        sf_fault("Account", FaultKind::Status, Some(401), Some(1)),
        sf_fault("Account", FaultKind::Malformed, None, Some(1)),
    ];
    let sb = start(config(faults)).await;
    let api = Api::login(&sb).await;
    let q = "/services/data/v60.0/query?q=SELECT+Id+FROM+Account+LIMIT+1";
    for (status, code) in [
        (403, "REQUEST_LIMIT_EXCEEDED"),
        (429, "REQUEST_LIMIT_EXCEEDED"),
        (503, "SERVER_UNAVAILABLE"),
        (401, "INVALID_SESSION_ID"),
    ] {
        let (got, headers, body) = api.get(q, None).await;
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((got, error_code(&body)), (status, code));
        assert!(headers.contains_key("Sforce-Limit-Info"));
        assert_eq!(
            headers.contains_key("Retry-After"),
            status == 429 || status == 403
        );
    }
    let (status, _, body) = api.get(q, None).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());
    assert_eq!(api.get(q, None).await.0, 200);
    // Spoiled good answers count as good ones, as for ConnectWise.
    assert_eq!(sb.stats().faults_injected, 4);
}

/// `/limits` states the daily allocation; calls used elsewhere leave the rolling window at
/// their offset, the sandbox's own after 24 h (tokio's clock: paused here).
#[tokio::test(start_paused = true)]
async fn limits_state_the_rolling_daily_window_with_calls_used_elsewhere() {
    let mut cfg = config(Vec::new());
    cfg.salesforce[0].daily_api_limit = 10;
    cfg.salesforce[0].api_used_elsewhere = 8;
    cfg.salesforce[0].elsewhere_frees_after = std::time::Duration::from_secs(3600);
    let sb = start(cfg).await;
    let api = Api::login(&sb).await;
    let daily = |body: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        let d = &v["DailyApiRequests"];
        (d["Max"].as_u64().unwrap(), d["Remaining"].as_u64().unwrap())
    };
    let limits = "/services/data/v60.0/limits";
    let (status, _, body) = api.get(limits, None).await;
    assert_eq!((status, daily(&body)), (200, (10, 2)));
    let q = "/services/data/v60.0/query?q=SELECT+Id+FROM+Lead+LIMIT+1";
    for _ in 0..2 {
        assert_eq!(api.get(q, None).await.0, 200);
    }
    let (status, _, body) = api.get(q, None).await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, body[0]["message"].as_str()),
        (403, Some("TotalRequests Limit exceeded."))
    );
    // `/limits` is not counted and answers past the limit.
    assert_eq!(daily(&api.get(limits, None).await.2), (10, 0));
    tokio::time::advance(std::time::Duration::from_secs(3600)).await;
    assert_eq!(
        daily(&api.get(limits, None).await.2),
        (10, 8),
        "elsewhere calls freed"
    );
    tokio::time::advance(std::time::Duration::from_secs(23 * 3600)).await;
    assert_eq!(
        daily(&api.get(limits, None).await.2),
        (10, 10),
        "own calls left the window"
    );
}
