//! What a source makes of a hostile or misconfigured API: error messages (what ends up in
//! `last_error`, the logs and `check`) never carry a credential value, even when the API
//! echoes the request back, and a redirect to another host is an error naming both hosts,
//! with nothing sent there.

use std::sync::{Arc, Mutex};

use avesa_console::config::{ColumnDef, ColumnType, Credentials, EndpointDef};
use avesa_console::domain::{Service, Window};
use avesa_console::sources::{self, SourceError, SourceSettings};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::TimeZone;

/// One request as a listener saw it: its headers and body as text.
type Seen = Arc<Mutex<Vec<String>>>;

/// A listener on 127.0.0.1 that records every request and answers with `answer(request)`.
async fn listener(
    answer: impl Fn(&str) -> Response + Clone + Send + Sync + 'static,
) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (answer, log) = (answer.clone(), log.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let mut text = format!("{} {}\n", parts.method, parts.uri);
            for (k, v) in &parts.headers {
                text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
            }
            text.push_str(&String::from_utf8_lossy(&body));
            log.lock().unwrap().push(text.clone());
            answer(&text)
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("127.0.0.1:{}", addr.port()), seen)
}

fn text(status: StatusCode, body: String) -> Response {
    (status, body).into_response()
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    (status, h, body.to_string()).into_response()
}

fn creds(pairs: &[(&str, &str)]) -> Credentials {
    Credentials::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

/// A service's credential fields and values.
type Fields = &'static [(&'static str, &'static str)];

const CW: Fields = &[
    ("company_id", "acmecorp-company"),
    ("public_key", "cw-public-key-0001"),
    ("private_key", "cw-private-key-0123456789"),
    ("client_id", "cw-client-id-7f3e9a2b"),
];
const SN_BASIC: Fields = &[
    ("username", "sn.integration.user"),
    ("password", "sn-password-0123456789"),
];
const SN_OAUTH: Fields = &[
    ("username", "sn.integration.user"),
    ("password", "sn-password-0123456789"),
    ("client_id", "sn-client-id-4c1d8e"),
    ("client_secret", "sn-client-secret-9a8b7c"),
];
const SN_CLIENT: Fields = &[
    ("client_id", "sn-client-id-4c1d8e"),
    ("client_secret", "sn-client-secret-9a8b7c"),
];
const SF_CLIENT: Fields = &[
    ("client_id", "sf-consumer-key-3MVG9abcdef"),
    ("client_secret", "sf-consumer-secret-5566"),
];
const SF: Fields = &[
    ("client_id", "sf-consumer-key-3MVG9abcdef"),
    ("client_secret", "sf-consumer-secret-5566"),
    ("username", "sf.integration@example.com"),
    ("password", "sf-password-0123456789"),
    ("security_token", "sf-security-token-xyz"),
];

/// The path each service reads, and where its base URL points below the host.
fn service_setup(service: Service) -> (&'static str, &'static str) {
    match service {
        Service::Connectwise => ("service/tickets", "/v4_6_release/apis/3.0"),
        Service::Servicenow => ("incident", ""),
        Service::Salesforce => ("Account", ""),
    }
}

fn endpoint(service: Service) -> EndpointDef {
    let (path, _) = service_setup(service);
    let (id, updated) = match service {
        Service::Connectwise => ("id", "lastUpdated"),
        Service::Servicenow => ("sys_id", "sys_updated_on"),
        Service::Salesforce => ("Id", "SystemModstamp"),
    };
    EndpointDef {
        path: path.into(),
        table_name: "t".into(),
        id_field: id.into(),
        incremental_field: updated.into(),
        query_field: Some(updated.into()),
        page_size: 100,
        columns: vec![
            ColumnDef {
                name: id.into(),
                kind: ColumnType::String,
            },
            ColumnDef {
                name: updated.into(),
                kind: ColumnType::Timestamp,
            },
        ],
    }
}

/// Reads the first page of the service's endpoint at `host`; the error it ends in.
async fn first_page_error(
    service: Service,
    host: &str,
    credentials: &[(&str, &str)],
) -> SourceError {
    let (_, prefix) = service_setup(service);
    let source = sources::connect(
        service,
        &format!("http://{host}{prefix}"),
        creds(credentials),
        sources::http_client(),
        &SourceSettings::default(),
    )
    .unwrap();
    let w = Window::new(
        chrono::Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
        chrono::Utc.with_ymd_and_hms(2024, 2, 1, 0, 0, 0).unwrap(),
    );
    match source.fetch_page(&endpoint(service), &w, None).await {
        Err(e) => e,
        Ok(page) => panic!(
            "{service:?}: the page 'succeeded' ({} bytes): {:?}",
            page.bytes, page.body
        ),
    }
}

fn assert_no_credential(service: Service, message: &str, credentials: &[(&str, &str)]) {
    for (field, value) in credentials {
        assert!(
            !message.contains(value),
            "{service:?}: '{field}' leaked into the error: {message}"
        );
    }
}

#[tokio::test]
async fn an_api_echoing_the_request_into_its_error_leaks_no_credential() {
    let cases: [(Service, Fields); 6] = [
        (Service::Connectwise, CW),
        (Service::Servicenow, SN_BASIC),
        (Service::Servicenow, SN_OAUTH),
        (Service::Servicenow, SN_CLIENT),
        (Service::Salesforce, SF),
        (Service::Salesforce, SF_CLIENT),
    ];
    for (service, credentials) in cases {
        // The API's own error format, so the message is shown whole.
        let (host, seen) = listener(move |req| {
            let echo = format!("you sent: {req}");
            json(
                StatusCode::UNAUTHORIZED,
                match service {
                    Service::Connectwise => serde_json::json!({"code": "Echo", "message": echo}),
                    Service::Servicenow => serde_json::json!({"error": {"message": echo}}),
                    Service::Salesforce => {
                        serde_json::json!({"error": "echo", "error_description": echo})
                    }
                },
            )
        })
        .await;
        let e = first_page_error(service, &host, credentials).await;
        assert!(!seen.lock().unwrap().is_empty());
        let message = e.to_string();
        assert!(message.contains("you sent:"), "{service:?}: {message}");
        assert_no_credential(service, &message, credentials);
    }
}

#[tokio::test]
async fn a_credential_straddling_the_cut_of_a_raw_error_body_is_fully_redacted() {
    let cases: [(Service, Fields, &str); 6] = [
        (Service::Connectwise, CW, "cw-client-id-7f3e9a2b"),
        (Service::Connectwise, CW, "cw-private-key-0123456789"),
        (Service::Servicenow, SN_BASIC, "sn-password-0123456789"),
        (Service::Servicenow, SN_CLIENT, "sn-client-secret-9a8b7c"),
        (Service::Salesforce, SF, "sf-consumer-secret-5566"),
        (Service::Salesforce, SF_CLIENT, "sf-consumer-secret-5566"),
    ];
    for (service, credentials, key) in cases {
        // Not the API's error format: only the first 300 bytes are shown, and the key
        // starts 10 bytes before the cut.
        let body = format!("{}{key} and the rest of the page", "x".repeat(290));
        let (host, _) = listener(move |_| text(StatusCode::BAD_GATEWAY, body.clone())).await;
        let message = first_page_error(service, &host, credentials)
            .await
            .to_string();
        assert!(message.contains("xxxxxxxxxx"), "{service:?}: {message}");
        assert!(
            !message.contains(&key[..10]),
            "{service:?}: half of the key is shown: {message}"
        );
        assert_no_credential(service, &message, credentials);
    }
}

#[tokio::test]
async fn a_redirect_to_another_host_fails_naming_both_and_sends_nothing_there() {
    let cases: [(Service, Fields); 6] = [
        (Service::Connectwise, CW),
        (Service::Servicenow, SN_BASIC),
        (Service::Servicenow, SN_OAUTH),
        (Service::Servicenow, SN_CLIENT),
        (Service::Salesforce, SF),
        (Service::Salesforce, SF_CLIENT),
    ];
    for (service, credentials) in cases {
        // The other host answers an empty last page (or a token), as if all were well.
        let (other, other_seen) = listener(move |req| {
            if req.contains("oauth") {
                json(
                    StatusCode::OK,
                    serde_json::json!({"access_token": "tok-from-other-host", "instance_url": "http://127.0.0.1:9", "expires_in": 3600}),
                )
            } else {
                let mut h = HeaderMap::new();
                h.insert(header::LINK, "".parse().unwrap());
                h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
                (StatusCode::OK, h, "{\"result\":[]}").into_response()
            }
        })
        .await;
        let target = other.clone();
        let (host, seen) = listener(move |_| {
            let mut h = HeaderMap::new();
            h.insert(
                header::LOCATION,
                format!("http://{target}/elsewhere").parse().unwrap(),
            );
            (StatusCode::FOUND, h).into_response()
        })
        .await;
        let e = first_page_error(service, &host, credentials).await;
        let message = e.to_string();
        assert!(!seen.lock().unwrap().is_empty(), "{service:?}");
        assert!(
            message.contains(&host) && message.contains(&other),
            "{service:?}: the error names both hosts ({host}, {other}): {message}"
        );
        assert!(!e.is_retryable(), "{service:?}: {e:?}");
        let reached = other_seen.lock().unwrap();
        assert!(
            reached.is_empty(),
            "{service:?}: the other host was sent: {reached:?}"
        );
        assert_no_credential(service, &message, credentials);
    }
}
