//! The generated dataset and the shape of the records the Table API renders.

use super::*;

#[test]
fn the_dataset_has_midnights_ties_and_sane_times() {
    let cfg = config();
    let anchor = cfg.anchor.timestamp();
    for table in SnTable::ALL {
        let g = Gen::new(cfg.anchor, 730, "acme.integration", counts(), table);
        let recs = g.build();
        assert_eq!(recs.len() as u64, counts().get(table));
        let ids: BTreeSet<u128> = recs.iter().map(|r| r.sys_id).collect();
        assert_eq!(ids.len(), recs.len(), "{table:?}: sys_ids are unique");
        for r in &recs {
            let created = g.created(u64::from(r.i));
            assert!(created <= r.updated, "{table:?}: updated before created");
            assert!(anchor - 730 * DAY <= created && r.updated < anchor);
        }
        assert!(recs.windows(2).all(|p| p[0].key() < p[1].key()), "sorted");
        let midnights = recs.iter().filter(|r| r.updated % DAY == 0).count();
        assert!(
            midnights as u64 >= counts().get(table) / 60,
            "{table:?}: {midnights} at midnight"
        );
        let tied = recs
            .windows(2)
            .filter(|p| p[0].updated == p[1].updated)
            .count();
        assert!(
            tied as u64 >= counts().get(table) / 10,
            "{table:?}: {tied} ties"
        );
    }
    // Some tie groups sit exactly on a midnight, i.e. on chunk boundaries.
    let g = Gen::new(
        cfg.anchor,
        730,
        "acme.integration",
        counts(),
        SnTable::Incident,
    );
    let recs = g.build();
    assert!(
        recs.windows(2)
            .any(|p| p[0].updated == p[1].updated && p[0].updated % DAY == 0),
        "no tie on a midnight"
    );

    // expected_servicenow is the initial dataset, by sys_id.
    let w = Window::new(ts("2024-02-01T00:00:00Z"), ts("2024-03-01T00:00:00Z"));
    let mut expected: Vec<(String, DateTime<Utc>)> = recs
        .iter()
        .filter(|r| w.contains(DateTime::from_timestamp(r.updated, 0).unwrap()))
        .map(|r| {
            (
                hex32(r.sys_id),
                DateTime::from_timestamp(r.updated, 0).unwrap(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(
        expected_servicenow(&cfg, "acme.integration", "incident", &w),
        expected
    );
    assert_eq!(
        expected_servicenow(&cfg, "acme.integration", "incidents", &w),
        expected
    );
    assert!(expected_servicenow(&cfg, "nobody", "incident", &w).is_empty());
    assert!(expected_servicenow(&cfg, "acme.integration", "cmdb_ci", &w).is_empty());
}

#[tokio::test]
async fn records_are_all_strings_with_realistic_fields() {
    let cfg = config();
    let sb = start(cfg.clone()).await;
    let w = Window::new(ts("2024-06-01T00:00:00Z"), ts("2024-07-01T00:00:00Z"));
    let q = keyset_query(&w, None);
    for (table, number) in [
        ("incident", Some("INC")),
        ("change_request", Some("CHG")),
        ("problem", Some("PRB")),
        ("sys_user", None),
    ] {
        let params = [
            ("sysparm_query", q.as_str()),
            ("sysparm_exclude_reference_link", "true"),
        ];
        let r = get(
            &sb,
            &format!("/api/now/table/{table}"),
            &params,
            Some(&globex()),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json;charset=UTF-8")
        );
        let recs = r.result();
        assert!(!recs.is_empty() || table == "problem", "{table}");
        for rec in &recs {
            let obj = rec.as_object().unwrap();
            assert!(obj.values().all(|v| v.is_string()), "{table}: {rec}");
            let sys_id = obj["sys_id"].as_str().unwrap();
            assert!(sys_id.len() == 32 && sys_id.bytes().all(|b| b.is_ascii_hexdigit()));
            for f in ["sys_created_on", "sys_updated_on"] {
                assert!(parse_sn_time(obj[f].as_str().unwrap()).is_some(), "{f}");
            }
            assert!(
                obj["sys_mod_count"]
                    .as_str()
                    .unwrap()
                    .parse::<u32>()
                    .is_ok()
            );
            if let Some(prefix) = number {
                let n = obj["number"].as_str().unwrap();
                assert!(n.starts_with(prefix) && n.len() == 10, "{n}");
            }
        }
        let expected = expected_servicenow(&cfg, "globex.integration", table, &w);
        let mut got = r.keys();
        got.sort();
        assert_eq!(got, expected, "{table}");
    }
    // Incidents reference real users of the same instance.
    let users: BTreeSet<String> = get(&sb, "/api/now/table/sys_user", &[], Some(&globex()))
        .await
        .result()
        .iter()
        .map(|u| u["sys_id"].as_str().unwrap().to_string())
        .collect();
    let incidents = get(&sb, TABLE, &[("sysparm_limit", "50")], Some(&globex())).await;
    let callers: Vec<String> = incidents
        .result()
        .iter()
        .filter_map(|r| r["caller_id"]["value"].as_str().map(str::to_string))
        .collect();
    assert_eq!(callers.len(), 50, "references carry links by default");
    assert!(callers.iter().all(|c| users.contains(c)));
    sb.shutdown().await;
}
