//! The SOQL subset parser.

use super::*;

fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

#[test]
fn the_clients_window_and_keyset_queries_parse() {
    let q = parse(
        "SELECT Id, Name, Owner.Name, SystemModstamp FROM Account \
         WHERE SystemModstamp >= 2023-01-01T00:00:00Z AND SystemModstamp < 2023-02-01T00:00:00Z \
         AND (SystemModstamp > 2023-01-05T10:00:00Z OR (SystemModstamp = 2023-01-05T10:00:00Z AND Id > '001D000000IRFmaIAH')) \
         ORDER BY SystemModstamp, Id",
    )
    .unwrap();
    let Select::Fields(fields) = &q.select else {
        panic!("fields expected")
    };
    assert_eq!(fields[2].to_string(), "Owner.Name");
    assert_eq!(q.from, "Account");
    assert_eq!(q.order.len(), 2);
    let Some(Expr::And(parts)) = &q.filter else {
        panic!("{:?}", q.filter)
    };
    assert_eq!(parts.len(), 3);
    let Expr::Or(alts) = &parts[2] else {
        panic!("{:?}", parts[2])
    };
    assert_eq!(
        alts[1],
        Expr::And(vec![
            Expr::Cmp {
                field: FieldPath {
                    relationship: None,
                    name: "SystemModstamp".into()
                },
                op: Op::Eq,
                value: Lit::DateTime(ms("2023-01-05T10:00:00Z")),
            },
            Expr::Cmp {
                field: FieldPath {
                    relationship: None,
                    name: "Id".into()
                },
                op: Op::Gt,
                value: Lit::Str("001D000000IRFmaIAH".into()),
            },
        ])
    );
    let bounds = q.top_level("systemmodstamp");
    assert_eq!(
        bounds,
        vec![
            (Op::Ge, &Lit::DateTime(ms("2023-01-01T00:00:00Z"))),
            (Op::Lt, &Lit::DateTime(ms("2023-02-01T00:00:00Z")))
        ]
    );
}

#[test]
fn count_offsets_fractions_and_keywords_in_any_case() {
    let q = parse(
        "select count() from lead where SystemModstamp >= 2023-01-01T05:30:00.250+05:30 limit 10",
    )
    .unwrap();
    assert_eq!(q.select, Select::Count);
    assert_eq!(q.limit, Some(10));
    assert_eq!(
        q.top_level("SystemModstamp"),
        vec![(Op::Ge, &Lit::DateTime(ms("2023-01-01T00:00:00.250Z")))]
    );
    let q = parse("SELECT Id FROM Case WHERE Id != 'a\\'b' ORDER BY Id DESC NULLS LAST").unwrap();
    assert!(q.order[0].1, "DESC");
    assert_eq!(q.top_level("Id"), vec![(Op::Ne, &Lit::Str("a'b".into()))]);
}

#[test]
fn what_soql_refuses_is_refused() {
    for bad in [
        "",
        "SELECT FROM Account",
        "SELECT * FROM Account",
        "SELECT Id FROM",
        "SELECT Id, FROM Account",
        "SELECT Id FROM Account WHERE",
        "SELECT Id FROM Account WHERE SystemModstamp >= 2023-01-01",
        "SELECT Id FROM Account WHERE SystemModstamp >= '2023-01-01T00:00:00Z' AND",
        "SELECT Id FROM Account WHERE Id > 'a' AND Id < 'b' OR Id = 'c'",
        "SELECT Id FROM Account WHERE (Id > 'a'",
        "SELECT Id FROM Account WHERE Id > 'unterminated",
        "SELECT Id FROM Account ORDER Id",
        "SELECT Id FROM Account LIMIT ten",
        "SELECT Id FROM Account OFFSET 5",
        "SELECT Id FROM Account GROUP Name",
        "SELECT COUNT(Id FROM Account",
        "SELECT SUM(Id) FROM Account",
        "SELECT CALENDAR_YEAR() FROM Account",
        "SELECT Id FROM Account WHERE SystemModstamp >= 2023-13-01T00:00:00Z",
        "SELECT a.b.c FROM Account",
        "SELECT Id FROM Account; DELETE",
    ] {
        assert!(parse(bad).is_err(), "accepted: {bad:?}");
    }
    let err = parse("SELECT Id FROM Account WHERE Id > 'a' AND Id < 'b' OR Id = 'c'").unwrap_err();
    assert!(err.0.contains("unexpected token: 'OR'"), "{err}");
}

#[test]
fn aggregate_items_and_group_by_parse_in_order() {
    let q = parse(
        "SELECT CALENDAR_YEAR(SystemModstamp), calendar_month(SystemModstamp), COUNT(Id) \
         FROM Case WHERE SystemModstamp >= 2024-01-01T00:00:00Z \
         GROUP BY CALENDAR_YEAR(SystemModstamp), CALENDAR_MONTH(SystemModstamp)",
    )
    .unwrap();
    let f = |n: &str| FieldPath {
        relationship: None,
        name: n.into(),
    };
    assert_eq!(
        q.select,
        Select::Aggregate(vec![
            Item::Year(f("SystemModstamp")),
            Item::Month(f("SystemModstamp")),
            Item::CountOf(f("Id")),
        ])
    );
    assert_eq!(
        q.group_by,
        vec![
            Item::Year(f("SystemModstamp")),
            Item::Month(f("SystemModstamp"))
        ]
    );
    // Plain fields without GROUP BY stay an ordinary query.
    assert_eq!(
        parse("SELECT Id, Name FROM Account").unwrap().select,
        Select::Fields(vec![f("Id"), f("Name")])
    );
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any text, and near-misses of the subset's grammar, are parsed or refused with an
        /// error, never a panic.
        #[test]
        fn any_text_is_parsed_or_refused(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn near_miss_queries_are_parsed_or_refused(
            text in "(SELECT |FROM |WHERE |AND |OR |ORDER BY |GROUP BY |LIMIT |COUNT\\(\\)|Id|Name|SystemModstamp|CALENDAR_MONTH\\(|CALENDAR_YEAR\\(|>=|<=|<|>|=|'|\\(|\\)|,|[0-9]|T|Z|-|:| |é){0,60}",
        ) {
            let _ = parse(&text);
        }

        /// The client's keyset query parses for any instant and record id.
        #[test]
        fn the_clients_keyset_queries_parse(
            start in 0i64..4_000_000_000,
            len in 1i64..400_000_000,
            id in "[A-Za-z0-9]{15,18}",
        ) {
            let at = |s| chrono::DateTime::from_timestamp(s, 0).unwrap();
            let text = format!(
                "SELECT Id, SystemModstamp FROM Account WHERE SystemModstamp >= {} AND SystemModstamp < {} \
                 AND (SystemModstamp > {} OR (SystemModstamp = {} AND Id > {})) ORDER BY SystemModstamp, Id",
                crate::sources::salesforce::soql::bound_literal(at(start)),
                crate::sources::salesforce::soql::bound_literal(at(start + len)),
                crate::sources::salesforce::soql::exact_literal(at(start)),
                crate::sources::salesforce::soql::exact_literal(at(start)),
                crate::sources::salesforce::soql::quote(&id),
            );
            prop_assert!(parse(&text).is_ok(), "{}", text);
        }
    }
}
