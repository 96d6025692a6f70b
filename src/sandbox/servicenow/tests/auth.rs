//! Basic and OAuth sign-in, token lifetimes, the rate limit and error envelopes.

use std::time::Duration;

use super::*;

#[tokio::test]
async fn basic_and_bearer_auth_and_error_envelopes() {
    let sb = start(config()).await;
    let failure = |r: &Resp, status: u16, message: &str| {
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(v["status"], "failure");
        assert_eq!(v["error"]["message"], message);
    };
    let no_auth = get(&sb, TABLE, &[], None).await;
    failure(&no_auth, 401, "User is not authenticated");
    assert_eq!(
        no_auth.json()["error"]["detail"],
        "Required to provide Auth information"
    );
    failure(
        &get(&sb, TABLE, &[], Some(&basic("globex.integration", "nope"))).await,
        401,
        "User is not authenticated",
    );
    failure(
        &get(&sb, TABLE, &[], Some("Bearer not-a-token")).await,
        401,
        "User is not authenticated",
    );
    failure(
        &get(&sb, "/api/now/table/nope", &[], Some(&globex())).await,
        400,
        "Invalid table nope",
    );
    assert_eq!(sb.stats().unauthorized, 3);

    // OAuth: wrong client secret, then the password grant and the refresh grant.
    let denied = token_request(
        &sb,
        &[
            ("grant_type", "password"),
            ("client_id", "acme-client"),
            ("client_secret", "wrong"),
            ("username", "acme.integration"),
            ("password", "acme-pass"),
        ],
    )
    .await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.json()["error_description"], "access_denied");
    // Globex has no OAuth client.
    let r = token_request(
        &sb,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", ""),
            ("client_secret", ""),
        ],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        token_request(&sb, &[("grant_type", "saml")]).await.status,
        400
    );
    let granted = token_request(
        &sb,
        &[
            ("grant_type", "password"),
            ("client_id", "acme-client"),
            ("client_secret", "acme-client-secret"),
            ("username", "acme.integration"),
            ("password", "acme-pass"),
        ],
    )
    .await
    .json();
    assert_eq!(granted["token_type"], "Bearer");
    assert_eq!(granted["expires_in"], 1800);
    let bearer = format!("Bearer {}", granted["access_token"].as_str().unwrap());
    let acme = get(&sb, TABLE, &[("sysparm_limit", "3")], Some(&bearer)).await;
    assert_eq!(acme.status, 200);
    // Acme's own data, not globex's.
    let basic_acme = get(
        &sb,
        TABLE,
        &[("sysparm_limit", "3")],
        Some(&basic("acme.integration", "acme-pass")),
    )
    .await;
    let basic_globex = get(&sb, TABLE, &[("sysparm_limit", "3")], Some(&globex())).await;
    assert_eq!(acme.keys(), basic_acme.keys());
    assert_ne!(acme.keys(), basic_globex.keys());
    let refreshed = token_request(
        &sb,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "acme-client"),
            ("client_secret", "acme-client-secret"),
            ("refresh_token", granted["refresh_token"].as_str().unwrap()),
        ],
    )
    .await
    .json();
    let second = format!("Bearer {}", refreshed["access_token"].as_str().unwrap());
    assert_ne!(second, bearer, "tokens are random per issue");
    assert_eq!(
        get(&sb, TABLE, &[("sysparm_limit", "1")], Some(&second))
            .await
            .status,
        200
    );

    // One record by sys_id, and a missing one.
    let id = acme.keys()[0].0.clone();
    let one = get(&sb, &format!("{TABLE}/{id}"), &[], Some(&bearer)).await;
    assert_eq!(one.json()["result"]["sys_id"], id.as_str());
    failure(
        &get(&sb, &format!("{TABLE}/{id}"), &[], Some(&globex())).await,
        404,
        "No Record found",
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn tokens_expire_after_their_lifetime() {
    let mut cfg = config();
    cfg.servicenow[1].token_ttl_secs = 1;
    let sb = start(cfg).await;
    let bearer = acme_token(&sb).await;
    assert_eq!(
        get(&sb, TABLE, &[("sysparm_limit", "1")], Some(&bearer))
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get(&sb, TABLE, &[("sysparm_limit", "1")], Some(&bearer))
            .await
            .status,
        401
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn over_the_rate_limit_answers_429_with_rate_limit_headers() {
    let mut cfg = config();
    cfg.rate_limit_per_minute = Some(2);
    let sb = start(cfg).await;
    for _ in 0..2 {
        let ok = get(&sb, TABLE, &[("sysparm_limit", "1")], Some(&globex())).await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.header("x-ratelimit-limit").as_deref(), Some("120"));
    }
    let r = get(&sb, TABLE, &[("sysparm_limit", "1")], Some(&globex())).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["message"], "Rate limit exceeded");
    assert_eq!(r.json()["status"], "failure");
    let wait: i64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("120"));
    let reset: i64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
    let now = Utc::now().timestamp();
    assert!(reset > now && reset <= now + 31, "{reset} vs {now}");
    assert_eq!(r.header("x-ratelimit-rule").unwrap().len(), 32);
    assert_eq!(sb.stats().rate_limited, 1);
    // Per user: acme still has its budget.
    let acme = get(
        &sb,
        TABLE,
        &[("sysparm_limit", "1")],
        Some(&basic("acme.integration", "acme-pass")),
    )
    .await;
    assert_eq!(acme.status, 200);
    sb.shutdown().await;
}

#[tokio::test]
async fn a_client_credentials_user_has_no_refresh_token_no_basic_auth_and_no_password_grant() {
    let mut cfg = config();
    let creds = crate::config::Credentials::from_pairs(
        [
            ("client_id", "initech-client"),
            ("client_secret", "initech-secret"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let account =
        SnAccount::from_credentials("initech", &creds, crate::sandbox::TableCounts::demo())
            .unwrap();
    assert_eq!(account.username, "initech-client");
    cfg.servicenow.push(account);
    let sb = start(cfg).await;
    let granted = token_request(
        &sb,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "initech-client"),
            ("client_secret", "initech-secret"),
        ],
    )
    .await;
    assert_eq!(granted.status, 200);
    let granted = granted.json();
    assert_eq!(granted["token_type"], "Bearer");
    assert_eq!(granted["expires_in"], 1800);
    assert!(granted.get("refresh_token").is_none(), "{granted}");
    let bearer = format!("Bearer {}", granted["access_token"].as_str().unwrap());
    let ok = get(&sb, TABLE, &[("sysparm_limit", "1")], Some(&bearer)).await;
    assert_eq!(ok.status, 200);
    // The user has no password: neither Basic auth nor the password grant signs in as it.
    let basic_empty = get(&sb, TABLE, &[], Some(&basic("initech-client", ""))).await;
    assert_eq!(basic_empty.status, 401);
    let password = token_request(
        &sb,
        &[
            ("grant_type", "password"),
            ("client_id", "initech-client"),
            ("client_secret", "initech-secret"),
            ("username", "initech-client"),
            ("password", ""),
        ],
    )
    .await;
    assert_eq!(password.status, 401);
    sb.shutdown().await;
}
