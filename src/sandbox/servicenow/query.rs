//! The part of ServiceNow's encoded query language (`sysparm_query`) the sandbox evaluates.
//!
//! - `^` joins conditions with AND; `^OR` binds tighter (an alternative to the condition
//!   before it); `^NQ` starts a new block, and a record matches when any block matches.
//! - Conditions `field OP value` with `OP` one of `>=`, `<=`, `!=`, `>`, `<`, `=`, on
//!   `sys_updated_on`, `sys_created_on` (values `YYYY-MM-DD HH:MM:SS`, UTC) and `sys_id`.
//! - `ORDERBYfield` / `ORDERBYDESCfield` on those fields and `number`.
//!
//! Like a real instance without `glide.invalid_query.returns_no_rows`, anything else (other
//! fields, operators, unparsable dates) is silently ignored: it matches every record.

use super::data::{Rec, hex32, parse_sn_time};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Ge => ord != Less,
            Op::Gt => ord == Greater,
            Op::Le => ord != Greater,
            Op::Lt => ord == Less,
            Op::Eq => ord == Equal,
            Op::Ne => ord != Equal,
        }
    }
}

/// One understood condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cond {
    Updated(Op, i64),
    Created(Op, i64),
    SysId(Op, String),
    /// Not understood: matches everything.
    Ignored,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SortKey {
    Updated,
    Created,
    SysId,
    Number,
}

/// A parsed `sysparm_query`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EncodedQuery {
    /// OR of blocks; each block is an AND of terms; each term an OR of conditions.
    pub(crate) blocks: Vec<Vec<Vec<Cond>>>,
    /// `(key, descending)` in the order given.
    pub(crate) order: Vec<(SortKey, bool)>,
}

fn parse_cond(term: &str) -> Cond {
    let field_len = term
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(term.len());
    let (field, rest) = term.split_at(field_len);
    let Some((op, len)) = [
        (Op::Ge, ">="),
        (Op::Le, "<="),
        (Op::Ne, "!="),
        (Op::Gt, ">"),
        (Op::Lt, "<"),
        (Op::Eq, "="),
    ]
    .into_iter()
    .find_map(|(op, text)| rest.starts_with(text).then_some((op, text.len()))) else {
        return Cond::Ignored;
    };
    let value = &rest[len..];
    match field {
        "sys_updated_on" => parse_sn_time(value).map_or(Cond::Ignored, |t| Cond::Updated(op, t)),
        "sys_created_on" => parse_sn_time(value).map_or(Cond::Ignored, |t| Cond::Created(op, t)),
        "sys_id" => Cond::SysId(op, value.to_string()),
        _ => Cond::Ignored,
    }
}

impl EncodedQuery {
    pub(crate) fn parse(text: &str) -> EncodedQuery {
        let mut q = EncodedQuery::default();
        for block_text in text.split("^NQ") {
            let mut block: Vec<Vec<Cond>> = Vec::new();
            for term in block_text.split('^') {
                if term.is_empty() || term == "EQ" {
                    continue;
                }
                if let Some(field) = term.strip_prefix("ORDERBYDESC") {
                    if let Some(key) = sort_key(field) {
                        q.order.push((key, true));
                    }
                } else if let Some(field) = term.strip_prefix("ORDERBY") {
                    if let Some(key) = sort_key(field) {
                        q.order.push((key, false));
                    }
                } else if let Some(alt) = term.strip_prefix("OR") {
                    let cond = parse_cond(alt);
                    match block.last_mut() {
                        Some(last) => last.push(cond),
                        None => block.push(vec![cond]),
                    }
                } else {
                    block.push(vec![parse_cond(term)]);
                }
            }
            // A term that is only ignored alternatives is always true; drop it.
            block.retain(|alts| !alts.contains(&Cond::Ignored));
            q.blocks.push(block);
        }
        // A block without conditions matches everything, which makes the others moot.
        if q.blocks.iter().any(Vec::is_empty) {
            q.blocks = vec![Vec::new()];
        }
        q
    }

    /// Whether `rec` matches, for queries without `sys_created_on` conditions.
    #[cfg(test)]
    pub(crate) fn matches(&self, rec: &Rec) -> bool {
        self.matches_with(rec, |_| 0)
    }

    /// Whether `rec` matches; `created` gives its `sys_created_on` when a condition needs it.
    pub(crate) fn matches_with(&self, rec: &Rec, created: impl Fn(&Rec) -> i64) -> bool {
        self.blocks.iter().any(|block| {
            block.iter().all(|alts| {
                alts.iter().any(|c| match c {
                    Cond::Created(..) => cond_holds(c, rec, created(rec)),
                    _ => cond_holds(c, rec, 0),
                })
            })
        })
    }

    /// `[lo, hi)` on `sys_updated_on` outside which no record can match.
    pub(crate) fn updated_range(&self) -> (i64, i64) {
        let mut lo = i64::MAX;
        let mut hi = i64::MIN;
        for block in &self.blocks {
            let (mut b_lo, mut b_hi) = (i64::MIN, i64::MAX);
            for alts in block {
                if let [Cond::Updated(op, t)] = alts.as_slice() {
                    let t = *t;
                    match op {
                        Op::Ge => b_lo = b_lo.max(t),
                        Op::Gt => b_lo = b_lo.max(t.saturating_add(1)),
                        Op::Le => b_hi = b_hi.min(t.saturating_add(1)),
                        Op::Lt => b_hi = b_hi.min(t),
                        Op::Eq => {
                            b_lo = b_lo.max(t);
                            b_hi = b_hi.min(t.saturating_add(1));
                        }
                        Op::Ne => {}
                    }
                }
            }
            lo = lo.min(b_lo);
            hi = hi.max(b_hi);
        }
        if self.blocks.is_empty() {
            return (i64::MIN, i64::MAX);
        }
        (lo, hi)
    }

    /// The window the request reads: the first block's `sys_updated_on>=` and `<` bounds.
    pub(crate) fn window(&self) -> (Option<i64>, Option<i64>) {
        let mut lo = None;
        let mut hi = None;
        for alts in self.blocks.first().into_iter().flatten() {
            match alts.as_slice() {
                [Cond::Updated(Op::Ge, t)] if lo.is_none() => lo = Some(*t),
                [Cond::Updated(Op::Lt, t)] if hi.is_none() => hi = Some(*t),
                _ => {}
            }
        }
        (lo, hi)
    }

    /// True when the order is exactly the storage order: `sys_updated_on`, then `sys_id`.
    pub(crate) fn is_storage_order(&self) -> bool {
        self.order.len() >= 2
            && self.order[0] == (SortKey::Updated, false)
            && self.order[1] == (SortKey::SysId, false)
    }
}

fn sort_key(field: &str) -> Option<SortKey> {
    match field {
        "sys_updated_on" => Some(SortKey::Updated),
        "sys_created_on" => Some(SortKey::Created),
        "sys_id" => Some(SortKey::SysId),
        "number" => Some(SortKey::Number),
        _ => None,
    }
}

fn cond_holds(c: &Cond, rec: &Rec, created: i64) -> bool {
    match c {
        Cond::Updated(op, t) => op.holds(rec.updated.cmp(t)),
        Cond::Created(op, t) => op.holds(created.cmp(t)),
        Cond::SysId(op, v) => op.holds(hex32(rec.sys_id).as_str().cmp(v.as_str())),
        Cond::Ignored => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(updated: &str, id: u128) -> Rec {
        Rec {
            updated: parse_sn_time(updated).unwrap(),
            sys_id: id,
            i: 0,
            mod_count: 0,
        }
    }

    #[test]
    fn window_and_keyset_blocks_parse_and_match() {
        let q = EncodedQuery::parse(
            "sys_updated_on>=2024-01-01 00:00:00^sys_updated_on<2024-01-08 00:00:00\
             ^sys_updated_on>2024-01-03 10:00:00\
             ^NQsys_updated_on>=2024-01-01 00:00:00^sys_updated_on<2024-01-08 00:00:00\
             ^sys_updated_on=2024-01-03 10:00:00^sys_id>00000000000000000000000000000005\
             ^ORDERBYsys_updated_on^ORDERBYsys_id",
        );
        assert_eq!(q.blocks.len(), 2);
        assert_eq!(q.blocks[1].len(), 4);
        assert!(q.is_storage_order());
        assert_eq!(
            q.window(),
            (
                parse_sn_time("2024-01-01 00:00:00"),
                parse_sn_time("2024-01-08 00:00:00")
            )
        );
        assert!(!q.matches(&rec("2024-01-03 10:00:00", 5)));
        assert!(q.matches(&rec("2024-01-03 10:00:00", 6)));
        assert!(!q.matches(&rec("2024-01-03 09:59:59", 99)));
        assert!(q.matches(&rec("2024-01-03 10:00:01", 0)));
        assert!(!q.matches(&rec("2024-01-08 00:00:00", 0)));
        let (lo, hi) = q.updated_range();
        assert_eq!(lo, parse_sn_time("2024-01-03 10:00:00").unwrap());
        assert_eq!(hi, parse_sn_time("2024-01-08 00:00:00").unwrap());
    }

    #[test]
    fn or_binds_tighter_than_and_and_unknown_parts_are_ignored() {
        // (updated < A OR updated >= B) AND junk
        let q = EncodedQuery::parse(
            "sys_updated_on<2024-01-02 00:00:00^ORsys_updated_on>=2024-01-05 00:00:00\
             ^short_descriptionLIKEprinter^priority=1^sys_updated_on>=yesterday",
        );
        assert_eq!(q.blocks.len(), 1);
        assert_eq!(q.blocks[0].len(), 1);
        assert!(q.matches(&rec("2024-01-01 00:00:00", 1)));
        assert!(!q.matches(&rec("2024-01-03 00:00:00", 1)));
        assert!(q.matches(&rec("2024-01-05 00:00:00", 1)));
        assert_eq!(q.updated_range(), (i64::MIN, i64::MAX));

        let all = EncodedQuery::parse("");
        assert!(all.matches(&rec("1999-01-01 00:00:00", 0)));
        let desc = EncodedQuery::parse("ORDERBYDESCsys_updated_on^ORDERBYnumber^ORDERBYbogus");
        assert_eq!(
            desc.order,
            vec![(SortKey::Updated, true), (SortKey::Number, false)]
        );
        assert!(!desc.is_storage_order());
    }

    #[test]
    fn operators_compare_as_documented() {
        let r = rec("2024-01-03 10:00:00", 0x10);
        let id = hex32(0x10);
        for (text, want) in [
            ("sys_updated_on>=2024-01-03 10:00:00", true),
            ("sys_updated_on>2024-01-03 10:00:00", false),
            ("sys_updated_on<=2024-01-03 10:00:00", true),
            ("sys_updated_on<2024-01-03 10:00:00", false),
            ("sys_updated_on=2024-01-03 10:00:00", true),
            ("sys_updated_on!=2024-01-03 10:00:00", false),
            (&format!("sys_id={id}"), true),
            (&format!("sys_id>{id}"), false),
            (&format!("sys_id<{}", hex32(0x11)), true),
        ] {
            assert_eq!(EncodedQuery::parse(text).matches(&r), want, "{text}");
        }
    }

    mod fuzz {
        use chrono::DateTime;
        use proptest::prelude::*;

        use super::super::EncodedQuery;
        use crate::domain::Window;
        use crate::sources::servicenow::Cursor;

        proptest! {
            /// Any encoded query, including near-misses of the real syntax, is read without
            /// a panic.
            #[test]
            fn any_encoded_query_is_read(
                text in "(sys_updated_on|sys_id|>=|<|>|=|\\^|\\^NQ|\\^OR|ORDERBY|ORDERBYDESC|javascript:gs.dateGenerate\\(|'|,|\\)|[0-9]|-|:| |é){0,50}",
            ) {
                let _ = EncodedQuery::parse(&text);
            }

            /// Any stored cursor text is accepted or refused with an error that names it,
            /// never a panic.
            #[test]
            fn any_cursor_text_is_accepted_or_named(text in "\\PC{0,80}") {
                let at = |s| DateTime::from_timestamp(s, 0).unwrap();
                let w = Window::new(at(1_600_000_000), at(1_700_000_000));
                if let Err(e) = Cursor::parse(&text, &w) {
                    prop_assert!(e.to_string().contains(&text.escape_default().to_string()), "{}", e);
                }
            }
        }
    }
}
