//! REST queries: paging a window, the SOQL subset, and query locators as snapshots.

use super::*;

#[tokio::test]
async fn rest_query_pages_a_window_exactly_in_order_with_real_record_shapes() {
    let cfg = config(Vec::new());
    let sb = start(cfg.clone()).await;
    let api = Api::login(&sb).await;
    let w = window("2024-03-01T00:00:00Z", "2024-05-01T00:00:00Z");
    let expected = expected_salesforce(&cfg, USER, "Case", &w);
    assert!(
        expected.len() > 450,
        "{} cases: too few to page",
        expected.len()
    );
    let soql = window_soql(
        "Id, CaseNumber, Description, Owner.Name, Owner.Id, SystemModstamp",
        "Case",
        &w,
    );
    let (status, mut page) = api.query(&soql, Some(200)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["totalSize"], expected.len());
    let mut got = Vec::new();
    let mut pages = 1;
    loop {
        let records = &page["records"];
        assert!(records.as_array().unwrap().len() <= 200);
        let first = &records[0];
        assert_eq!(first["attributes"]["type"], "Case");
        assert_eq!(
            first["attributes"]["url"],
            format!(
                "/services/data/v60.0/sobjects/Case/{}",
                first["Id"].as_str().unwrap()
            )
        );
        assert_eq!(first["Owner"]["attributes"]["type"], "User");
        assert!(first["Owner"]["Name"].is_string() && first["Owner"]["Id"].is_string());
        let stamp = first["SystemModstamp"].as_str().unwrap();
        assert!(stamp.ends_with("+0000") && stamp.len() == 28, "{stamp}");
        got.extend(keys_of(records));
        if page["done"] == true {
            assert!(page.get("nextRecordsUrl").is_none());
            break;
        }
        let next = page["nextRecordsUrl"].as_str().unwrap().to_string();
        assert!(next.starts_with("/services/data/v60.0/query/01g"), "{next}");
        let (status, _, body) = api.get(&next, Some(200)).await;
        assert_eq!(status, 200);
        page = serde_json::from_slice(&body).unwrap();
        pages += 1;
    }
    assert_eq!(pages, expected.len().div_ceil(200));
    // Ordered by (SystemModstamp, Id), with ties and midnights inside.
    let mut sorted = got.clone();
    sorted.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    assert_eq!(got, sorted);
    assert!(
        got.windows(2).any(|p| p[0].1 == p[1].1),
        "no shared SystemModstamp"
    );
    assert!(
        got.iter().any(|(_, t)| t.timestamp() % 86_400 == 0),
        "no midnight"
    );
    got.sort();
    assert_eq!(got, expected);

    // COUNT() agrees, and the other org's data differs.
    let count = "SELECT COUNT() FROM Case WHERE SystemModstamp >= 2024-03-01T00:00:00Z AND SystemModstamp < 2024-05-01T00:00:00Z";
    let (status, body) = api.query(count, None).await;
    assert_eq!((status, &body["totalSize"]), (200, &expected.len().into()));
    assert_eq!(body["records"], serde_json::json!([]));
    assert_ne!(
        expected_salesforce(&cfg, "integration@initech.example", "Case", &w)[0],
        expected[0]
    );
    // Every answer carries the org's API usage.
    let (_, headers, _) = api
        .get(
            "/services/data/v60.0/query?q=SELECT+Id+FROM+Lead+LIMIT+1",
            None,
        )
        .await;
    let info = headers["Sforce-Limit-Info"].to_str().unwrap();
    assert_eq!(info, format!("api-usage={}/15000", pages + 2));
}

#[tokio::test]
async fn the_soql_subset_refuses_what_it_does_not_know_with_salesforce_errors() {
    let sb = start(config(Vec::new())).await;
    let api = Api::login(&sb).await;
    for (soql, code) in [
        ("SELECT * FROM Account", "MALFORMED_QUERY"),
        (
            "SELECT Id FROM Account WHERE Id > 'a' AND Id < 'b' OR Id = 'c'",
            "MALFORMED_QUERY",
        ),
        ("SELECT Id FROM Account GROUP BY Id", "MALFORMED_QUERY"),
        ("SELECT Id, Nonsense FROM Account", "INVALID_FIELD"),
        ("SELECT Id, Parent.Name FROM Account", "INVALID_FIELD"),
        ("SELECT Id FROM Widget__c", "INVALID_TYPE"),
        (
            "SELECT Id FROM Account WHERE SystemModstamp >= '2024-01-01T00:00:00Z'",
            "INVALID_QUERY_FILTER_OPERATOR",
        ),
        (
            "SELECT Id FROM Account WHERE Id > 5",
            "INVALID_QUERY_FILTER_OPERATOR",
        ),
        ("SELECT Id, Id FROM Account", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE Name = 'x'", "MALFORMED_QUERY"),
    ] {
        let (status, body) = api.query(soql, None).await;
        assert_eq!((status, error_code(&body)), (400, code), "{soql}: {body}");
        assert!(body[0]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Case-insensitive names, offsets and LIMIT are fine.
    let (status, body) = api
        .query(
            "select id, systemmodstamp from account where SystemModstamp >= 2024-01-01T01:00:00+01:00 order by SystemModstamp desc limit 3",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let keys = keys_of(&body["records"]);
    assert_eq!(keys.len(), 3);
    assert!(keys[0].1 >= keys[1].1 && keys[1].1 >= keys[2].1);
    assert!(
        body["records"][0].get("Id").is_some(),
        "canonical field names"
    );
    // Unknown paths and versions.
    let (status, _, body) = api.get("/services/data/v60.0/sobjects", None).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = api
        .get("/services/data/latest/query?q=SELECT+Id+FROM+Account", None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_query_locator_is_a_snapshot_showing_current_values() {
    let cfg = config(Vec::new());
    let sb = start(cfg.clone()).await;
    let api = Api::login(&sb).await;
    let w = window("2024-06-01T00:00:00Z", "2024-08-01T00:00:00Z");
    let expected = expected_salesforce(&cfg, USER, "Lead", &w);
    let soql = window_soql("Id, SystemModstamp, LastModifiedDate", "Lead", &w);
    let (_, first) = api.query(&soql, Some(200)).await;
    let total = first["totalSize"].as_u64().unwrap() as usize;
    assert_eq!(total, expected.len());
    // Edit 5 records of the window while it is being read.
    let plan = parse_plan(&soql).ok().unwrap();
    sb.shared
        .salesforce
        .touch(0, &plan, (5, crate::sandbox::http::Edit::Move));
    let moved: Vec<Moved> = sb.shared.salesforce.lock().moved.clone();
    assert_eq!(moved.len(), 5);
    let mut got = keys_of(&first["records"]);
    let mut next = first["nextRecordsUrl"].as_str().map(str::to_string);
    while let Some(url) = next {
        let (status, _, body) = api.get(&url, Some(200)).await;
        assert_eq!(status, 200);
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(page["totalSize"], total, "the snapshot keeps its size");
        for r in page["records"].as_array().unwrap() {
            if moved
                .iter()
                .any(|m| m.id == r["Id"] && m.to.as_str() < r["SystemModstamp"].as_str().unwrap())
            {
                assert_eq!(
                    r["SystemModstamp"], r["LastModifiedDate"],
                    "an edit moves both"
                );
            }
        }
        got.extend(keys_of(&page["records"]));
        next = page["nextRecordsUrl"].as_str().map(str::to_string);
    }
    assert_eq!(got.len(), total, "every snapshot Id once");
    // Moved records not yet delivered show their new SystemModstamp, after the history.
    for m in &moved {
        let (id, t) = got.iter().find(|(id, _)| *id == m.id).unwrap();
        let shown = t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        assert!(shown == m.from || shown == m.to, "{id}: {shown} vs {m:?}");
        assert!(m.to.as_str() > "2025-01-01", "{m:?}");
    }
    assert!(
        got.iter().any(|(_, t)| *t >= anchor()),
        "no moved record was shown with its new time"
    );
    // A new query no longer finds them.
    let (_, again) = api.query(&soql, Some(2000)).await;
    assert_eq!(again["totalSize"], total - 5);
    // A locator that is gone says so.
    let (status, _, body) = api
        .get("/services/data/v60.0/query/01gXXXXXXXXXXXX-200", None)
        .await;
    assert_eq!(status, 400);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error_code(&body), "INVALID_QUERY_LOCATOR");
}

#[tokio::test]
async fn grouped_counts_answer_per_month_as_aggregate_results() {
    let cfg = config(Vec::new());
    let sb = start(cfg.clone()).await;
    let api = Api::login(&sb).await;
    let w = window("2024-05-15T00:00:00Z", "2024-09-10T00:00:00Z");
    let soql = "SELECT CALENDAR_YEAR(SystemModstamp), CALENDAR_MONTH(SystemModstamp), COUNT(Id) \
         FROM Case WHERE SystemModstamp >= 2024-05-15T00:00:00Z AND SystemModstamp < 2024-09-10T00:00:00Z \
         GROUP BY CALENDAR_YEAR(SystemModstamp), CALENDAR_MONTH(SystemModstamp)";
    let (status, body) = api.query(soql, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["done"], true);
    let records = body["records"].as_array().unwrap();
    assert_eq!(body["totalSize"], records.len());
    assert_eq!(records.len(), 5, "May to September: {body}");
    for r in records {
        assert_eq!(
            r["attributes"],
            serde_json::json!({"type": "AggregateResult"})
        );
        let (y, m) = (r["expr0"].as_i64().unwrap(), r["expr1"].as_i64().unwrap());
        let start =
            chrono::TimeZone::with_ymd_and_hms(&Utc, y as i32, m as u32, 1, 0, 0, 0).unwrap();
        let end = if m == 12 {
            chrono::TimeZone::with_ymd_and_hms(&Utc, y as i32 + 1, 1, 1, 0, 0, 0).unwrap()
        } else {
            chrono::TimeZone::with_ymd_and_hms(&Utc, y as i32, m as u32 + 1, 1, 0, 0, 0).unwrap()
        };
        let month = Window::new(start.max(w.start), end.min(w.end));
        let expected = expected_salesforce(&cfg, USER, "Case", &month).len();
        assert_eq!(r["expr2"].as_u64().unwrap() as usize, expected, "{y}-{m}");
    }
    let total: u64 = records.iter().map(|r| r["expr2"].as_u64().unwrap()).sum();
    assert_eq!(
        total as usize,
        expected_salesforce(&cfg, USER, "Case", &w).len()
    );
}

#[tokio::test]
async fn aggregate_queries_are_refused_as_salesforce_refuses_them() {
    let cfg = config(Vec::new());
    let sb = start(cfg).await;
    let api = Api::login(&sb).await;
    for (soql, code, words) in [
        (
            "SELECT CALENDAR_YEAR(SystemModstamp), COUNT(Id) FROM Case",
            "MALFORMED_QUERY",
            "Field must be grouped or aggregated: CALENDAR_YEAR(SystemModstamp)",
        ),
        (
            "SELECT Id, COUNT(Id) FROM Case GROUP BY CALENDAR_YEAR(SystemModstamp)",
            "MALFORMED_QUERY",
            "Field must be grouped or aggregated: Id",
        ),
        (
            "SELECT COUNT() FROM Case GROUP BY CALENDAR_YEAR(SystemModstamp)",
            "MALFORMED_QUERY",
            "COUNT() cannot be used with GROUP BY",
        ),
        (
            "SELECT COUNT(Id) FROM Case GROUP BY COUNT(Id)",
            "MALFORMED_QUERY",
            "Grouped field should not be aggregated",
        ),
        (
            "SELECT COUNT(Nope) FROM Case",
            "INVALID_FIELD",
            "No such column 'Nope'",
        ),
        (
            "SELECT CALENDAR_MONTH(SystemModstamp), COUNT(Id) FROM Case GROUP BY CALENDAR_MONTH(SystemModstamp) ORDER BY Id",
            "MALFORMED_QUERY",
            "Ordered field must be grouped or aggregated: Id",
        ),
    ] {
        let (status, body) = api.query(soql, None).await;
        assert_eq!(status, 400, "{soql}: {body}");
        assert_eq!(error_code(&body), code, "{soql}: {body}");
        assert!(body.to_string().contains(words), "{soql}: {body}");
    }
    // Without GROUP BY, one row, even over nothing.
    let (status, body) = api
        .query(
            "SELECT COUNT(Id) FROM Case WHERE SystemModstamp < 1990-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["records"][0]["expr0"], 0);
    // Bulk API 2.0 refuses aggregates.
    let (status, body) = api
        .post_job(serde_json::json!({
            "operation": "query",
            "query": "SELECT CALENDAR_YEAR(SystemModstamp), COUNT(Id) FROM Case GROUP BY CALENDAR_YEAR(SystemModstamp)"
        }))
        .await;
    assert_eq!(status, 400, "{body}");
}
