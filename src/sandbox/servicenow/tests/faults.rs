//! Fault-plan answers, expired tokens, and records moved mid-read.

use super::*;

#[tokio::test]
async fn faults_answer_in_the_servicenow_envelope_and_expire_tokens() {
    let mut cfg = config();
    let mut storm = sn_fault(FaultKind::Status, Some(429), Some(1));
    storm.retry_after_seconds = Some(7);
    let mut busy = sn_fault(FaultKind::Status, Some(503), Some(1));
    busy.message = "Service temporarily unavailable".into();
    cfg.faults = vec![storm, busy, sn_fault(FaultKind::ExpireToken, None, Some(1))];
    let sb = start(cfg).await;
    let r = get(&sb, TABLE, &[], Some(&globex())).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("7"));
    let r = get(&sb, TABLE, &[], Some(&globex())).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json()["error"]["message"],
        "Service temporarily unavailable"
    );
    let bearer = acme_token(&sb).await;
    assert_eq!(get(&sb, TABLE, &[], Some(&bearer)).await.status, 401);
    // The fault is spent, but that token stays dead until a new one is issued.
    assert_eq!(get(&sb, TABLE, &[], Some(&bearer)).await.status, 401);
    let fresh = acme_token(&sb).await;
    assert_eq!(
        get(&sb, TABLE, &[("sysparm_limit", "2")], Some(&fresh))
            .await
            .status,
        200
    );
    assert_eq!(sb.stats().faults_injected, 3);
    sb.shutdown().await;
}

#[tokio::test]
async fn touch_faults_move_records_out_of_the_window_being_read() {
    let mut cfg = config();
    let mut touch = sn_fault(FaultKind::TouchRecords, None, Some(1));
    touch.records = Some(4);
    cfg.faults = vec![touch];
    let sb = start(cfg.clone()).await;
    let w = Window::new(ts("2024-03-01T00:00:00Z"), ts("2024-03-15T00:00:00Z"));
    let expected = expected_servicenow(&cfg, "globex.integration", "incident", &w);
    let q = keyset_query(&w, None);
    let r = get(&sb, TABLE, &[("sysparm_query", &q)], Some(&globex())).await;
    let got: BTreeSet<(String, DateTime<Utc>)> = r.keys().into_iter().collect();
    let moved: Vec<Moved> = serde_json::from_slice(
        &reqwest::get(format!("{}/_sandbox/servicenow/moved", sb.url()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(moved.len(), 4);
    for m in &moved {
        assert_eq!(
            (m.username.as_str(), m.table.as_str()),
            ("globex.integration", "incident")
        );
        assert!(w.contains(m.from));
        assert!(m.to >= cfg.anchor);
        assert!(expected.contains(&(m.sys_id.clone(), m.from)));
    }
    let stayed: BTreeSet<(String, DateTime<Utc>)> = expected
        .iter()
        .filter(|e| moved.iter().all(|m| m.sys_id != e.0))
        .cloned()
        .collect();
    assert_eq!(got, stayed);
    // The moved records are now after the anchor, with one more modification.
    let later = Window::new(cfg.anchor, cfg.anchor + chrono::Duration::days(1));
    let r = get(
        &sb,
        TABLE,
        &[("sysparm_query", &keyset_query(&later, None))],
        Some(&globex()),
    )
    .await;
    assert_eq!(r.result().len(), 4);
    sb.shutdown().await;
}

/// Reads a window page by page, with a `touch` of 3 records after the first page.
async fn walk_with_a_touch(
    keyset: bool,
) -> (
    Vec<(String, DateTime<Utc>)>,
    Vec<Moved>,
    Vec<(String, DateTime<Utc>)>,
) {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let w = Window::new(ts("2024-03-01T00:00:00Z"), ts("2024-03-15T00:00:00Z"));
    let expected = expected_servicenow(&cfg, "globex.integration", "incident", &w);
    let mut got: Vec<(String, DateTime<Utc>)> = Vec::new();
    let mut moved = Vec::new();
    for page in 0.. {
        let offset = if keyset { 0 } else { page * 10 };
        let q = if keyset {
            keyset_query(&w, got.last())
        } else {
            keyset_query(&w, None)
        };
        if page == 1 {
            let parsed = EncodedQuery::parse(&q);
            moved = sb.shared.servicenow.touch(
                0,
                SnTable::Incident,
                &parsed,
                offset,
                (3, crate::sandbox::http::Edit::Move),
            );
        }
        let r = get(
            &sb,
            TABLE,
            &[
                ("sysparm_query", &q),
                ("sysparm_limit", "10"),
                ("sysparm_offset", &offset.to_string()),
            ],
            Some(&globex()),
        )
        .await;
        let keys = r.keys();
        let last = got
            .last()
            .filter(|_| keyset)
            .map(|(id, t)| (*t, id.clone()));
        got.extend(
            keys.iter()
                .filter(|(id, t)| last.as_ref().is_none_or(|l| (*t, id.clone()) > *l))
                .cloned(),
        );
        if keys.len() < 10 {
            break;
        }
    }
    sb.shutdown().await;
    (got, moved, expected)
}

#[tokio::test]
async fn an_edit_mid_read_makes_offset_paging_skip_a_row_but_not_keyset_paging() {
    for keyset in [true, false] {
        let (got, moved, expected) = walk_with_a_touch(keyset).await;
        assert_eq!(moved.len(), 3);
        let ids: BTreeSet<&str> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(ids.len(), got.len(), "duplicates");
        let missing: Vec<_> = expected
            .iter()
            .filter(|e| moved.iter().all(|m| m.sys_id != e.0) && !ids.contains(e.0.as_str()))
            .collect();
        if keyset {
            assert!(missing.is_empty(), "keyset skipped {missing:?}");
        } else {
            // One already-read record left the window: every later row shifted down by one.
            assert_eq!(
                missing.len(),
                1,
                "offset paging should skip exactly one: {missing:?}"
            );
        }
    }
}
