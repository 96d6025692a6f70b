//! What the source clients make of a hostile API server: an endless body or a record larger
//! than `max_response_mb` stops at the cap with an error naming it and the URL path; deep
//! JSON nesting and invalid UTF-8 fail the chunk with a clear error (no stack overflow, no
//! panic); headers that never come and a body trickling in end as "timed out after N s"
//! (`request_timeout_seconds`); a `Link` next page on another host is refused naming both.
//! (A cross-host redirect: `source_secrets.rs`; huge and malformed `Retry-After` values:
//! `engine::policy`'s tests and `bounded_waits.rs`.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use avesa_console::config::{ColumnDef, ColumnType, Credentials, EndpointDef};
use avesa_console::domain::{ChunkStatus, Service, Window};
use avesa_console::sources::{self, Page, ResponseLimits, Source, SourceError, SourceSettings};
use avesa_console::store::JobStore;
use chrono::{TimeZone, Utc};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the hostile server answers every request.
#[derive(Clone)]
enum Hostile {
    /// A 200 whose chunked body never ends: an array whose records keep coming.
    Endless,
    /// A 200 with this body, its length announced unless `chunked`, and an empty `Link`
    /// (the last page).
    Body { body: Arc<Vec<u8>>, chunked: bool },
    /// Nothing after the request: no status line, no headers.
    Silent,
    /// Headers announcing 1,000 bytes, then one byte every 200 ms.
    Trickle,
    /// An empty page whose `Link` header is this, `SELF` replaced by the server's own
    /// `host:port`.
    Link(String),
}

/// A server on a loopback port answering every request as `how` says; its `host:port`.
async fn serve(how: Hostile) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(answer(conn, how.clone()));
        }
    });
    addr.to_string()
}

const HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n";

/// Reads the request's head, then misbehaves. Write errors (the client hung up) end it.
async fn answer(mut conn: TcpStream, how: Hostile) -> std::io::Result<()> {
    let (mut head, mut buf) = (Vec::new(), [0u8; 4096]);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await? {
            0 => return Ok(()),
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    match how {
        Hostile::Endless => {
            let start = format!("{HEAD}link: \r\ntransfer-encoding: chunked\r\n\r\n1\r\n[\r\n");
            conn.write_all(start.as_bytes()).await?;
            let records = r#"{"id":1,"summary":"endless"},"#.repeat(2048);
            let chunk = format!("{:x}\r\n{records}\r\n", records.len());
            loop {
                conn.write_all(chunk.as_bytes()).await?;
            }
        }
        Hostile::Body { body, chunked } => {
            let head = match chunked {
                true => format!("{HEAD}link: \r\ntransfer-encoding: chunked\r\n\r\n"),
                false => format!("{HEAD}link: \r\ncontent-length: {}\r\n\r\n", body.len()),
            };
            conn.write_all(head.as_bytes()).await?;
            if chunked {
                conn.write_all(format!("{:x}\r\n", body.len()).as_bytes())
                    .await?;
            }
            conn.write_all(&body).await?;
            if chunked {
                conn.write_all(b"\r\n0\r\n\r\n").await?;
            }
        }
        Hostile::Silent => tokio::time::sleep(Duration::from_secs(60)).await,
        Hostile::Trickle => {
            let head = format!("{HEAD}link: \r\ncontent-length: 1000\r\n\r\n");
            conn.write_all(head.as_bytes()).await?;
            for _ in 0..1000 {
                conn.write_all(b" ").await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Hostile::Link(link) => {
            let link = link.replace("SELF", &conn.local_addr()?.to_string());
            let head = format!("{HEAD}link: {link}\r\ncontent-length: 2\r\n\r\n[]");
            conn.write_all(head.as_bytes()).await?;
        }
    }
    conn.shutdown().await
}

const PREFIX: &str = "/v4_6_release/apis/3.0";
const PATH: &str = "/v4_6_release/apis/3.0/service/tickets";
const PRIVATE_KEY: &str = "cw-private-key-0123456789";

/// Each service's credential fields, and the base URL's path below the host.
fn setup(service: Service) -> (&'static [(&'static str, &'static str)], &'static str) {
    match service {
        Service::Connectwise => (
            &[
                ("company_id", "acmecorp"),
                ("public_key", "cw-public-key-0001"),
                ("private_key", PRIVATE_KEY),
                ("client_id", "cw-client-id-7f3e9a2b"),
            ],
            PREFIX,
        ),
        Service::Servicenow => (&[("username", "sn.user"), ("password", PRIVATE_KEY)], ""),
        Service::Salesforce => (
            &[
                ("client_id", "sf-consumer-key"),
                ("client_secret", PRIVATE_KEY),
                ("username", "sf@example.com"),
                ("password", "sf-password"),
            ],
            "",
        ),
    }
}

/// A client of `service` for the server at `host`, held to `limits`.
fn client(service: Service, host: &str, limits: ResponseLimits) -> Arc<dyn Source> {
    let (fields, prefix) = setup(service);
    let creds = Credentials::from_pairs(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = SourceSettings {
        limits,
        ..SourceSettings::default()
    };
    let base = format!("http://{host}{prefix}");
    sources::connect(service, &base, creds, sources::http_client(), &settings).unwrap()
}

/// A ConnectWise client of the server at `host`, held to `limits`.
fn connectwise(host: &str, limits: ResponseLimits) -> Arc<dyn Source> {
    client(Service::Connectwise, host, limits)
}

/// A 1 MB cap and a total time of `timeout_secs`.
fn limits(timeout_secs: u64) -> ResponseLimits {
    ResponseLimits {
        timeout: Duration::from_secs(timeout_secs),
        max_bytes: 1 << 20,
    }
}

fn tickets() -> EndpointDef {
    let column = |name: &str, kind| ColumnDef {
        name: name.into(),
        kind,
    };
    EndpointDef {
        path: "service/tickets".into(),
        table_name: "tickets".into(),
        id_field: "id".into(),
        incremental_field: "lastUpdated".into(),
        query_field: None,
        page_size: 100,
        columns: vec![
            column("id", ColumnType::String),
            column("lastUpdated", ColumnType::Timestamp),
        ],
    }
}

/// The first page of tickets from `source`, within 20 s whatever the server does.
async fn first_page(source: &dyn Source) -> Result<Page, SourceError> {
    first_page_of(source, &tickets()).await
}

/// The first page of `endpoint` from `source`, within 20 s whatever the server does.
async fn first_page_of(source: &dyn Source, endpoint: &EndpointDef) -> Result<Page, SourceError> {
    let w = Window::new(
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2025, 1, 11, 0, 0, 0).unwrap(),
    );
    tokio::time::timeout(
        Duration::from_secs(20),
        source.fetch_page(endpoint, &w, None),
    )
    .await
    .expect("the request outlived every limit")
}

/// The error the first page ends in.
async fn first_page_error(how: Hostile, limits: ResponseLimits) -> SourceError {
    let host = serve(how).await;
    match first_page(connectwise(&host, limits).as_ref()).await {
        Err(e) => e,
        Ok(page) => panic!("the page 'succeeded' ({} bytes)", page.bytes),
    }
}

/// Checks `e` names the cap and the URL path, is not retried and shows no secret.
fn assert_over_the_cap(e: &SourceError) {
    let message = e.to_string();
    assert!(
        message.contains("max_response_mb (1 MB)") && message.contains(PATH),
        "{message}"
    );
    assert!(!e.is_retryable(), "{e:?}");
    assert!(!message.contains(PRIVATE_KEY), "{message}");
}

#[tokio::test]
async fn an_endless_body_stops_at_the_cap_naming_it_and_the_path() {
    let e = first_page_error(Hostile::Endless, limits(10)).await;
    assert_over_the_cap(&e);
}

/// Servicenow and Salesforce (whose sign-in answer comes first): the endless answer stops at
/// the cap and silence times out, each naming the path it came on.
#[tokio::test]
async fn every_source_caps_an_endless_answer_and_times_out_a_silent_one() {
    for (service, path) in [
        (Service::Servicenow, "/api/now/table/incident"),
        (Service::Salesforce, "/services/oauth2/token"),
    ] {
        let endpoint = EndpointDef {
            path: "incident".into(),
            id_field: "sys_id".into(),
            query_field: Some("sys_updated_on".into()),
            ..tickets()
        };
        for (how, timeout_secs, what) in [
            (Hostile::Endless, 10, "max_response_mb (1 MB)"),
            (Hostile::Silent, 1, "timed out after 1 s"),
        ] {
            let host = serve(how).await;
            let source = client(service, &host, limits(timeout_secs));
            let e = match first_page_of(source.as_ref(), &endpoint).await {
                Err(e) => e,
                Ok(page) => panic!("{service:?}: the page 'succeeded' ({} bytes)", page.bytes),
            };
            let message = e.to_string();
            assert!(
                message.contains(what) && message.contains(path),
                "{service:?}: {message}"
            );
            assert!(!message.contains(PRIVATE_KEY), "{message}");
        }
    }
}

#[tokio::test]
async fn a_single_record_larger_than_the_cap_is_refused_announced_or_not() {
    let record = format!(r#"[{{"id":1,"summary":"{}"}}]"#, "x".repeat(2 << 20));
    let body = Arc::new(record.into_bytes());
    for chunked in [false, true] {
        let how = Hostile::Body {
            body: body.clone(),
            chunked,
        };
        let e = first_page_error(how, limits(10)).await;
        assert_over_the_cap(&e);
    }
    // Just under the cap is read whole.
    let body = Arc::new(format!(r#"[{{"id":1,"s":"{}"}}]"#, "x".repeat(1_000_000)).into_bytes());
    let host = serve(Hostile::Body {
        body: body.clone(),
        chunked: true,
    })
    .await;
    let page = first_page(connectwise(&host, limits(10)).as_ref())
        .await
        .unwrap();
    assert_eq!(&page.body[..], &body[..]);
}

/// Checks `e` is a timeout after 1 s, worth another try.
fn assert_timed_out(e: &SourceError) {
    let message = e.to_string();
    assert!(message.contains("timed out after 1 s"), "{message}");
    assert!(message.contains(PATH), "{message}");
    assert!(e.is_retryable(), "{e:?}");
}

#[tokio::test]
async fn headers_that_never_come_time_out_saying_so() {
    let e = first_page_error(Hostile::Silent, limits(1)).await;
    assert_timed_out(&e);
}

#[tokio::test]
async fn a_body_trickling_in_past_the_timeout_times_out_saying_so() {
    let e = first_page_error(Hostile::Trickle, limits(1)).await;
    assert_timed_out(&e);
}

#[tokio::test]
async fn a_link_to_another_host_is_refused_naming_both_hosts() {
    let other = serve(Hostile::Endless).await;
    let link = format!("<http://{other}{PATH}?pageSize=100&pageId=5>; rel=\"next\"");
    let host = serve(Hostile::Link(link)).await;
    let e = match first_page(connectwise(&host, limits(10)).as_ref()).await {
        Err(e) => e,
        Ok(page) => panic!("the other host's page was taken: next {:?}", page.next),
    };
    let message = e.to_string();
    assert!(
        message.contains(&host) && message.contains(&other),
        "the error names both hosts ({host}, {other}): {message}"
    );
    assert!(!e.is_retryable(), "{e:?}");
    // A link to the API's own host (absolute or relative) is followed as before.
    for link in [
        format!("<http://SELF{PATH}?pageSize=100&pageId=5>; rel=\"next\""),
        format!("<{PATH}?pageSize=100&pageId=5>; rel=\"next\""),
    ] {
        let same = serve(Hostile::Link(link.clone())).await;
        let page = first_page(connectwise(&same, limits(10)).as_ref()).await;
        assert_eq!(page.unwrap().next.as_deref(), Some("5"), "{link}");
    }
}

/// Runs a one-chunk job of tickets against a server answering `how`, with
/// `max_response_mb` 1, one attempt and no request retries; the chunk as it ends.
async fn run_one_chunk(how: Hostile) -> avesa_console::domain::Chunk {
    let fx = Fixture::new();
    fx.defaults(&[
        ("max_response_mb", 1.into()),
        ("request_timeout_seconds", 10.into()),
        ("retry_attempts", 1.into()),
        ("request_retries", 0.into()),
    ]);
    let limits = ResponseLimits::from_settings(&fx.config().backfill.default_settings);
    let (engine, store) = fx.engine_over(connectwise(&serve(how).await, limits));
    let job_id = one_chunk_job(&engine).await;
    tokio::time::timeout(Duration::from_secs(30), engine.run_job(&job_id, None))
        .await
        .expect("the run outlived every limit")
        .unwrap();
    let mut chunks = store.chunks(&job_id).await.unwrap();
    assert_eq!(chunks.len(), 1);
    chunks.remove(0)
}

/// Checks the chunk ended as a failed attempt whose error says `what`.
fn assert_failed_saying(chunk: &avesa_console::domain::Chunk, what: &str) {
    assert_eq!(chunk.status, ChunkStatus::Failed, "{chunk:?}");
    assert_eq!(chunk.attempts, 1, "{chunk:?}");
    assert!(chunk.lease_owner.is_none(), "a lease was left: {chunk:?}");
    let error = chunk.last_error.as_deref().unwrap_or_default();
    assert!(error.contains(what), "'{what}' not in: {error}");
}

#[tokio::test]
async fn a_chunk_reading_an_endless_body_ends_failed_naming_the_cap() {
    let chunk = run_one_chunk(Hostile::Endless).await;
    assert_failed_saying(&chunk, "max_response_mb (1 MB)");
    assert_failed_saying(&chunk, PATH);
}

#[tokio::test]
async fn deeply_nested_json_fails_the_chunk_with_a_decode_error() {
    let depth = 100_000;
    let body = format!(
        r#"[{{"id":1,"lastUpdated":"2025-01-02T00:00:00Z","deep":{}{}}}]"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let how = Hostile::Body {
        body: Arc::new(body.into_bytes()),
        chunked: false,
    };
    let chunk = run_one_chunk(how).await;
    assert_failed_saying(&chunk, "recursion limit");
}

#[tokio::test]
async fn invalid_utf8_in_a_body_fails_the_chunk_with_a_decode_error() {
    let mut body = br#"[{"id":1,"lastUpdated":"2025-01-02T00:00:00Z","summary":"caf"#.to_vec();
    body.extend_from_slice(b"\xe9\xff\"}]");
    let how = Hostile::Body {
        body: Arc::new(body),
        chunked: false,
    };
    let chunk = run_one_chunk(how).await;
    assert_failed_saying(&chunk, "unicode");
}

#[test]
fn run_against_the_sandbox_s_endless_answer_fails_the_chunk_naming_the_cap() {
    let fx = Fixture::new();
    fx.defaults(&[
        ("max_response_mb", 2.into()),
        ("retry_attempts", 1.into()),
        ("request_retries", 0.into()),
    ]);
    let faults = fx.dir.path().join("faults.json");
    let fault = r#"{"faults":[{"path":"service/tickets","kind":"endless"}]}"#;
    std::fs::write(&faults, fault).unwrap();
    let sandbox = fx.start_sandbox(&["--faults", faults.to_str().unwrap()]);
    let range = ("2025-01-01", Some("2025-01-20"));
    let args = trigger_args("acme", Some("tickets"), range.0, range.1, &[]);
    assert_ok(&fx.cli(Some(&sandbox), &args));
    let job_id = "backfill_acme_connectwise_20250101";
    let out = fx.cli(Some(&sandbox), &["run", "--job-id", job_id]);
    let detail = job_status(&fx, job_id);
    let chunks = detail["chunks"].as_array().unwrap();
    assert!(!chunks.is_empty(), "{}", text(&out));
    for chunk in chunks {
        assert_eq!(chunk["status"], "failed", "{detail}");
        let error = chunk["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("max_response_mb (2 MB)") && error.contains(PATH),
            "{error}"
        );
    }
}

/// The error loading the configuration with `default_settings.{field}` set to `value`.
fn refused(field: &str, value: u64) -> String {
    Fixture::new()
        .defaults(&[(field, value.into())])
        .config_error()
}

#[test]
fn max_response_mb_and_request_timeout_seconds_are_range_checked() {
    let cases = [
        ("max_response_mb", 0, "at least 1 and at most 4096 (got 0)"),
        ("max_response_mb", 5000, "at most 4096 (got 5000)"),
        (
            "request_timeout_seconds",
            0,
            "at least 1 and at most 3600 (got 0)",
        ),
    ];
    for (field, value, said) in cases {
        let err = refused(field, value);
        let path = format!("$.default_settings.{field}");
        assert!(
            err.contains("backfill_config.json") && err.contains(&path) && err.contains(said),
            "{err}"
        );
    }
}
