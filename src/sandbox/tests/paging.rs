//! Paging in both modes, window bounds, `/count` and repeated-page accounting.

use super::*;

#[tokio::test]
async fn forward_only_paging_walks_a_window_exactly() {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let t = &cfg.tenants[0];
    let w = Window::new(ts("2024-03-01T00:00:00Z"), ts("2024-05-01T00:00:00Z"));
    let expected = expected_records(&cfg, "acme_demo", "tickets", &w);
    assert!(expected.len() > 200, "window too small: {}", expected.len());

    let pages = walk_forward_only(&sb, t, &w, "100").await;
    let got: Vec<_> = pages.iter().flat_map(|p| p.records()).collect();
    assert_eq!(got, expected);
    let ids: BTreeSet<i64> = got.iter().map(|r| r.0).collect();
    assert_eq!(ids.len(), got.len(), "duplicates");
    let last = pages.last().unwrap();
    assert_eq!(last.link, None, "the last page carries no Link by default");
    assert!(last.records().len() < 100);
    for page in &pages[..pages.len() - 1] {
        assert_eq!(page.records().len(), 100);
        let link = page.link.as_deref().unwrap();
        assert!(link.starts_with(&format!("<{}{API}service/tickets?", sb.url())));
        assert!(link.ends_with(">; rel=\"next\""), "{link}");
        let last_id = page.records().last().unwrap().0;
        assert!(link.contains(&format!("pageId={last_id}>")), "{link}");
    }

    // A full page that is exactly the last one: next link, then an empty page without Link.
    let exact = expected.len().to_string();
    let pages = walk_forward_only(&sb, t, &w, &exact).await;
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].records(), expected);
    assert!(pages[1].records().is_empty());
    assert_eq!(pages[1].link, None);

    // `page` is ignored in forward-only mode, and pageSize is clamped to 1000.
    let conditions = window_conditions(&w);
    let u = url(
        &sb,
        "service/tickets",
        &[
            ("conditions", &conditions),
            ("page", "7"),
            ("pageSize", "5000"),
        ],
    );
    let all = call(&u, t, true).await;
    assert_eq!(all.records(), expected);
    sb.shutdown().await;
}

#[tokio::test]
async fn the_last_forward_only_page_says_what_the_link_mode_asks() {
    let w = Window::new(ts("2024-03-01T00:00:00Z"), ts("2024-05-01T00:00:00Z"));
    for (mode, full, last) in [
        (CwLink::LastEmpty, true, Some("")),
        (CwLink::Omitted, false, None),
    ] {
        let mut cfg = config();
        cfg.connectwise_link = mode;
        let sb = start(cfg.clone()).await;
        let t = &cfg.tenants[0];
        let conditions = window_conditions(&w);
        let first = url(
            &sb,
            "service/tickets",
            &[("conditions", &conditions), ("pageSize", "100")],
        );
        let page = call(&first, t, true).await;
        assert_eq!(page.records().len(), 100);
        assert_eq!(page.link.is_some(), full, "{mode:?}: {:?}", page.link);
        let rest = url(
            &sb,
            "service/tickets",
            &[("conditions", &conditions), ("pageSize", "5000")],
        );
        let page = call(&rest, t, true).await;
        assert_eq!(page.link.as_deref(), last, "{mode:?}");
        sb.shutdown().await;
    }
}

#[tokio::test]
async fn window_bounds_are_half_open() {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let t = &cfg.tenants[0];
    let history = Window::new(cfg.anchor - chrono::Duration::days(730), cfg.anchor);
    let all = expected_records(&cfg, "acme_demo", "tickets", &history);
    let &(id, lu) = all
        .iter()
        .find(|(id, lu)| {
            (id - ID_BASE) % 50 == 0 && lu.num_seconds_from_midnight() == 0 && *id > 1500
        })
        .expect("a record on a midnight");
    let day = chrono::Duration::days(1);
    for (w, want) in [
        (Window::new(lu, lu + day), true),
        (Window::new(lu - day, lu), false),
    ] {
        let u = url(
            &sb,
            "service/tickets",
            &[("conditions", &window_conditions(&w)), ("pageSize", "1000")],
        );
        let got = call(&u, t, true).await.records();
        assert_eq!(got.iter().any(|r| r.0 == id), want, "{w}");
        assert_eq!(got, expected_records(&cfg, "acme_demo", "tickets", &w));
    }

    // `>` excludes the bound, `<=` includes it, `=` selects exactly that second.
    for (conditions, want) in [
        (
            format!(
                "lastUpdated > [{}] and lastUpdated < [{}]",
                fmt(lu),
                fmt(lu + day)
            ),
            false,
        ),
        (
            format!(
                "_info/lastUpdated >= [{}] AND lastUpdated <= [{}]",
                fmt(lu - day),
                fmt(lu)
            ),
            true,
        ),
        (format!("lastUpdated = [{}]", fmt(lu)), true),
    ] {
        let u = url(
            &sb,
            "service/tickets",
            &[("conditions", &conditions), ("pageSize", "1000")],
        );
        let got = call(&u, t, true).await.records();
        assert_eq!(got.iter().any(|r| r.0 == id), want, "{conditions}");
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn navigable_paging_has_next_and_last_links() {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let t = &cfg.tenants[1];
    let w = Window::new(ts("2024-06-01T00:00:00Z"), ts("2024-06-20T00:00:00Z"));
    let expected = expected_records(&cfg, "globex_demo", "tickets", &w);
    let conditions = window_conditions(&w);
    let size = 20usize;
    let last_page = expected.len().div_ceil(size);
    assert!(last_page >= 3);

    let mut got = Vec::new();
    for page in 1..=last_page {
        let u = url(
            &sb,
            "service/tickets",
            &[
                ("conditions", &conditions),
                ("orderBy", "id asc"),
                ("pageSize", "20"),
                ("page", &page.to_string()),
            ],
        );
        let r = call(&u, t, false).await;
        assert_eq!(r.status, 200);
        let link = r.link.clone().unwrap();
        let parts: Vec<&str> = link.split(", ").collect();
        let last_part = parts.last().unwrap();
        assert!(
            last_part.ends_with(&format!("page={last_page}>; rel=\"last\"")),
            "{link}"
        );
        if page < last_page {
            assert_eq!(parts.len(), 2, "{link}");
            assert!(parts[0].starts_with(&format!("<{}{API}service/tickets?", sb.url())));
            assert!(
                parts[0].ends_with(&format!("page={}>; rel=\"next\"", page + 1)),
                "{link}"
            );
            assert_eq!(r.records().len(), size);
        } else {
            assert_eq!(parts.len(), 1, "no next on the last page: {link}");
        }
        got.extend(r.records());
    }
    assert_eq!(got, expected);

    // Default page size is 25.
    let u = url(&sb, "service/tickets", &[("conditions", &conditions)]);
    assert_eq!(call(&u, t, false).await.records().len(), 25);
    sb.shutdown().await;
}

#[tokio::test]
async fn count_matches_expected_records() {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let t = &cfg.tenants[1];
    let w = Window::new(ts("2023-11-15T12:00:00Z"), ts("2024-02-01T00:00:00Z"));
    for table in Table::ALL {
        let u = url(
            &sb,
            &format!("{}/count", table.path()),
            &[("conditions", &window_conditions(&w))],
        );
        let r = call(&u, t, false).await;
        assert_eq!(r.status, 200);
        let want = expected_records(&cfg, "globex_demo", table.table_name(), &w).len();
        assert!(want > 0, "{table:?}");
        assert_eq!(r.json(), serde_json::json!({ "count": want }));
    }
    let all = call(&url(&sb, "time/entries/count", &[]), t, false)
        .await
        .json();
    assert_eq!(all["count"], 2007);
    sb.shutdown().await;
}

#[tokio::test]
async fn repeated_pages_are_counted() {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let t = &cfg.tenants[0];
    let conditions =
        "lastUpdated >= [2024-01-01T00:00:00Z] and lastUpdated < [2024-03-01T00:00:00Z]";
    let p1 = url(
        &sb,
        "service/tickets",
        &[("conditions", conditions), ("pageSize", "50")],
    );
    let p2 = url(
        &sb,
        "service/tickets",
        &[
            ("conditions", conditions),
            ("pageSize", "50"),
            ("pageId", "1500"),
        ],
    );
    assert_eq!(call(&p1, t, true).await.status, 200);
    assert_eq!(call(&p2, t, true).await.status, 200);
    assert_eq!(sb.stats().repeated_pages, 0);
    let again = call(&p1, t, true).await;
    assert_eq!(again.status, 200);
    assert_eq!(sb.stats().repeated_pages, 1);
    // The other tenant's identical page is not a repeat.
    assert_eq!(call(&p1, &cfg.tenants[1], true).await.status, 200);
    assert_eq!(sb.stats().repeated_pages, 1);

    let stats: SandboxStats = reqwest::get(format!("{}/_sandbox/stats", sb.url()))
        .await
        .unwrap()
        .json_bytes()
        .await;
    assert_eq!(stats, sb.stats());
    assert_eq!(stats.requests, 4);
    assert!(stats.bytes_sent > 4 * 50 * 2000);
    sb.shutdown().await;
}

trait JsonBytes {
    async fn json_bytes<T: serde::de::DeserializeOwned>(self) -> T;
}

impl JsonBytes for reqwest::Response {
    async fn json_bytes<T: serde::de::DeserializeOwned>(self) -> T {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}
