//! The records of one org: sObject tables built on first use, the rows a SOQL plan selects
//! as they are now, and the moves `touch_records` faults make.

use chrono::{DateTime, Utc};

use super::data::{OrgKeys, SObject, Times, audit_times};
use super::plan::{OrderKey, Plan};
use super::{Inner, Moved, SfState, SfTable};
use crate::domain::Window;
use crate::sandbox::SandboxConfig;
use crate::sandbox::http::Edit;

impl SfState {
    pub(super) fn table(&self, org: usize, s: SObject) -> &SfTable {
        let o = &self.orgs[org];
        o.tables[s.index()].get_or_init(|| build_table(&o.keys, s, self.anchor, self.history_days))
    }

    pub(super) fn times(&self, inner: &Inner, org: usize, s: SObject, i: u32) -> Times {
        let a = &self.table(org, s).audit;
        let i_us = i as usize;
        match inner.touched.get(&(org, s, i)) {
            Some(&now) => Times {
                created: a.created[i_us],
                modified: now,
                modstamp: now,
            },
            None => Times {
                created: a.created[i_us],
                modified: a.modified[i_us],
                modstamp: a.modstamp[i_us],
            },
        }
    }

    pub(super) fn next_seq(inner: &mut Inner) -> u64 {
        inner.seq += 1;
        inner.seq
    }

    /// The rows of `plan` as they are now, in its order.
    pub(super) fn evaluate(&self, inner: &Inner, org: usize, plan: &Plan) -> Vec<u32> {
        let table = self.table(org, plan.sobject);
        let n = table.ids.len() as u32;
        let mut rows: Vec<(u32, Times)> = (0..n)
            .filter(|i| !inner.deleted.contains(&(org, plan.sobject, *i)))
            .map(|i| (i, self.times(inner, org, plan.sobject, i)))
            .filter(|(i, t)| {
                plan.filter
                    .as_ref()
                    .is_none_or(|p| p.holds(&table.ids[*i as usize], t))
            })
            .collect();
        if !plan.order.is_empty() {
            rows.sort_by(|a, b| {
                for (key, desc) in &plan.order {
                    let ord = match key {
                        OrderKey::Id => table.ids[a.0 as usize].cmp(&table.ids[b.0 as usize]),
                        OrderKey::Time(f) => f.of(&a.1).cmp(&f.of(&b.1)),
                    };
                    let ord = if *desc { ord.reverse() } else { ord };
                    if ord.is_ne() {
                        return ord;
                    }
                }
                std::cmp::Ordering::Equal
            });
        }
        if let Some(limit) = plan.limit {
            rows.truncate(limit.min(usize::MAX as u64) as usize);
        }
        rows.into_iter().map(|(i, _)| i).collect()
    }

    /// Moves `n` records now inside `plan`'s `SystemModstamp` bounds past the window's end,
    /// to later times inside it (`Edit::MoveInside`), or deletes them (`Edit::Delete`).
    pub(super) fn touch(&self, org: usize, plan: &Plan, (n, edit): (u32, Edit)) {
        let mut inner = self.lock();
        let table = self.table(org, plan.sobject);
        let (lo, hi) = plan.bounds;
        let mut inside: Vec<(i64, u32)> = (0..table.ids.len() as u32)
            .filter(|i| !inner.deleted.contains(&(org, plan.sobject, *i)))
            .map(|i| (self.times(&inner, org, plan.sobject, i).modstamp, i))
            .filter(|(s, _)| (lo..hi).contains(s))
            .collect();
        inside.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| table.ids[a.1 as usize].cmp(&table.ids[b.1 as usize]))
        });
        if inside.is_empty() {
            return;
        }
        let n = (n as usize).min(inside.len());
        let after = if hi == i64::MAX {
            self.anchor.timestamp_millis()
        } else {
            self.anchor
                .timestamp_millis()
                .max(hi.div_euclid(1000) * 1000 + 1000)
        };
        for k in 0..n {
            let (from, i) = inside[(2 * k + 1) * inside.len() / (2 * n)];
            let deleted = edit == Edit::Delete;
            let to = if deleted {
                inner.deleted.insert((org, plan.sobject, i));
                from
            } else if edit == Edit::MoveInside {
                // Later, still inside the window (its last second); a record there stays.
                let end = hi.min(self.anchor.timestamp_millis());
                let to = (end - 1 - k as i64 * 7).max(from + 1);
                if to >= end {
                    continue;
                }
                inner.touched.insert((org, plan.sobject, i), to);
                to
            } else {
                inner.touches += 1;
                let to = after + 60_000 * inner.touches;
                inner.touched.insert((org, plan.sobject, i), to);
                to
            };
            inner.moved.push(Moved {
                username: self.orgs[org].account.username.clone(),
                sobject: plan.sobject.name(),
                id: table.ids[i as usize].clone(),
                from: fmt_ms(from),
                to: fmt_ms(to),
                deleted,
            });
        }
    }
}

fn fmt_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

pub(super) fn build_table(
    keys: &OrgKeys,
    s: SObject,
    anchor: DateTime<Utc>,
    history_days: u32,
) -> SfTable {
    let count = keys.counts.get(s);
    SfTable {
        audit: audit_times(keys.table_seed(s), count, anchor, history_days),
        ids: (0..count).map(|i| keys.record_id(s, i)).collect(),
    }
}

/// The exact dataset, for tests: every `(Id, SystemModstamp)` of `sobject` in the org of
/// `username` whose initial `SystemModstamp` is in `window`, sorted. Unknown → empty.
pub fn expected_salesforce(
    config: &SandboxConfig,
    username: &str,
    sobject: &str,
    window: &Window,
) -> Vec<(String, DateTime<Utc>)> {
    let (Some(account), Some(s)) = (
        config.salesforce.iter().find(|a| a.username == username),
        SObject::from_name(sobject),
    ) else {
        return Vec::new();
    };
    let keys = OrgKeys::new(&account.username, account.counts);
    let table = build_table(&keys, s, config.anchor, config.history_days);
    let mut out: Vec<_> = table
        .audit
        .modstamp
        .iter()
        .zip(table.ids)
        .filter_map(|(&stamp, id)| {
            let t = DateTime::from_timestamp_millis(stamp)?;
            window.contains(t).then_some((id, t))
        })
        .collect();
    out.sort();
    out
}
