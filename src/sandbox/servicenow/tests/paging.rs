//! Keyset and offset paging, `Link` and `X-Total-Count`, fields and display values.

use super::*;

/// The incidents `q` selects for globex, at most `limit`.
async fn globex_query(sb: &Sandbox, q: &str, limit: &str) -> Resp {
    get(
        sb,
        TABLE,
        &[("sysparm_query", q), ("sysparm_limit", limit)],
        Some(&globex()),
    )
    .await
}

#[tokio::test]
async fn keyset_queries_resume_inside_a_tie_and_windows_are_half_open() {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let w = Window::new(ts("2024-03-01T00:00:00Z"), ts("2024-06-01T00:00:00Z"));
    let mut expected = expected_servicenow(&cfg, "globex.integration", "incident", &w);
    by_time(&mut expected);
    // The first tie of at least three records.
    let at = (0..expected.len() - 2)
        .find(|&i| expected[i].1 == expected[i + 2].1)
        .expect("a tie of three");
    let q = keyset_query(&w, Some(&expected[at]));
    let r = globex_query(&sb, &q, "5").await;
    assert_eq!(r.status, 200);
    let from = expected.partition_point(|e| e.1 < expected[at].1);
    assert_eq!(r.keys(), expected[from..from + 5].to_vec());
    assert_eq!(
        r.header("x-total-count").unwrap(),
        (expected.len() - from).to_string()
    );
    // Two `^NQ` blocks are answered block by block: the later seconds first, then the rest
    // of the tie, each sorted; a page cut after the first block leaves the tie out.
    let ties_end = expected.partition_point(|e| e.1 <= expected[at].1);
    let mut block_order = expected[ties_end..].to_vec();
    block_order.extend_from_slice(&expected[at + 1..ties_end]);
    let q = nq_query(&w, &expected[at]);
    let all = globex_query(&sb, &q, "10000").await;
    assert_eq!(all.keys(), block_order);
    let r = globex_query(&sb, &q, "5").await;
    assert_eq!(r.keys(), expected[ties_end..ties_end + 5].to_vec());

    // A window from a midnight holds the records of that exact second; the previous one
    // (ending there) does not.
    let mut all = expected_servicenow(
        &cfg,
        "globex.integration",
        "incident",
        &Window::new(ts("2023-01-01T00:00:00Z"), cfg.anchor),
    );
    by_time(&mut all);
    let midnight = all
        .iter()
        .find(|(_, t)| t.num_seconds_from_midnight() == 0 && *t > ts("2024-01-01T00:00:00Z"))
        .unwrap()
        .1;
    let after = Window::new(midnight, midnight + chrono::Duration::days(1));
    let before = Window::new(midnight - chrono::Duration::days(1), midnight);
    for (win, has) in [(after, true), (before, false)] {
        let q = keyset_query(&win, None);
        let r = get(&sb, TABLE, &[("sysparm_query", &q)], Some(&globex())).await;
        assert_eq!(r.keys().iter().any(|(_, t)| *t == midnight), has, "{win}");
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn offset_pages_carry_link_and_total_count_headers() {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let w = Window::new(ts("2024-03-01T00:00:00Z"), ts("2024-03-15T00:00:00Z"));
    let mut expected = expected_servicenow(&cfg, "globex.integration", "incident", &w);
    by_time(&mut expected);
    let total = expected.len();
    assert!(total > 25, "{total}");
    let q = keyset_query(&w, None);
    let base = format!("{}{TABLE}", sb.url());
    let sbr = &sb;
    let page = |offset: usize| {
        let q = q.clone();
        let offset = offset.to_string();
        async move {
            get(
                sbr,
                TABLE,
                &[
                    ("sysparm_query", &q),
                    ("sysparm_limit", "10"),
                    ("sysparm_offset", &offset),
                ],
                Some(&globex()),
            )
            .await
        }
    };
    let first = page(0).await;
    assert_eq!(first.header("x-total-count").unwrap(), total.to_string());
    let link = first.header("link").unwrap();
    let encoded_q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sysparm_query", &q)
        .finish();
    let last = (total - 1) / 10 * 10;
    assert_eq!(
        link,
        format!(
            "<{base}?{encoded_q}&sysparm_limit=10&sysparm_offset=0>;rel=\"first\",\
             <{base}?{encoded_q}&sysparm_limit=10&sysparm_offset=10>;rel=\"next\",\
             <{base}?{encoded_q}&sysparm_limit=10&sysparm_offset={last}>;rel=\"last\""
        )
    );
    let mut walked = first.keys();
    let mut offset = 10;
    loop {
        let r = page(offset).await;
        let link = r.header("link").unwrap();
        assert!(
            link.contains(&format!("sysparm_offset={}>;rel=\"prev\"", offset - 10)),
            "{link}"
        );
        walked.extend(r.keys());
        if offset + 10 >= total {
            assert!(!link.contains("rel=\"next\""), "{link}");
            break;
        }
        assert!(
            link.contains(&format!("sysparm_offset={}>;rel=\"next\"", offset + 10)),
            "{link}"
        );
        offset += 10;
    }
    assert_eq!(walked, expected);

    // Headers can be turned off; the v2 path answers the same.
    let r = get(
        &sb,
        "/api/now/v2/table/incident",
        &[
            ("sysparm_query", &q),
            ("sysparm_suppress_pagination_header", "true"),
            ("sysparm_no_count", "true"),
        ],
        Some(&globex()),
    )
    .await;
    assert_eq!(r.header("link"), None);
    assert_eq!(r.header("x-total-count"), None);
    assert_eq!(r.keys(), expected);
    sb.shutdown().await;
}

#[tokio::test]
async fn fields_display_values_order_and_reference_links() {
    let sb = start(config()).await;
    let w = Window::new(ts("2024-03-01T00:00:00Z"), ts("2024-04-01T00:00:00Z"));
    let q = format!("{}^ORDERBYDESCsys_updated_on", window_query(&w));
    let r = get(
        &sb,
        TABLE,
        &[
            ("sysparm_query", q.as_str()),
            ("sysparm_fields", "sys_id,number,caller_id,sys_updated_on"),
            ("sysparm_exclude_reference_link", "false"),
        ],
        Some(&globex()),
    )
    .await;
    let recs = r.result();
    assert!(recs.len() > 20);
    let times: Vec<DateTime<Utc>> = r.keys().into_iter().map(|k| k.1).collect();
    assert!(times.windows(2).all(|p| p[0] >= p[1]), "ORDERBYDESC");
    for rec in &recs {
        let keys: BTreeSet<&str> = rec
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["sys_id", "number", "caller_id", "sys_updated_on"])
        );
        let caller = &rec["caller_id"];
        let value = caller["value"].as_str().unwrap();
        assert_eq!(
            caller["link"].as_str().unwrap(),
            format!("{}/api/now/table/sys_user/{value}", sb.url())
        );
    }
    let all = get(
        &sb,
        TABLE,
        &[
            ("sysparm_query", q.as_str()),
            ("sysparm_fields", "number,caller_id"),
            ("sysparm_display_value", "all"),
            ("sysparm_exclude_reference_link", "true"),
            ("sysparm_limit", "3"),
        ],
        Some(&globex()),
    )
    .await;
    for rec in all.result() {
        let n = &rec["number"];
        assert_eq!(n["display_value"], n["value"]);
        assert!(
            rec["caller_id"]["display_value"]
                .as_str()
                .unwrap()
                .contains(' ')
        );
        assert_eq!(rec["caller_id"]["value"].as_str().unwrap().len(), 32);
        assert!(rec["caller_id"].get("link").is_none());
    }
    sb.shutdown().await;
}
