//! The records of one ServiceNow account: its tables built on first use, the rows a query
//! selects in the order it asks for, and the moves `touch_records` faults make.

use std::collections::HashSet;
use std::sync::RwLock;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::data::{Gen, Rec, SnTable, hex32};
use super::query::{EncodedQuery, SortKey};
use super::{Moved, SnState, TableData};
use crate::domain::Window;
use crate::sandbox::http::Edit;
use crate::sandbox::{SandboxConfig, lock};

impl SnState {
    pub(super) fn table(&self, account: usize, table: SnTable) -> &RwLock<TableData> {
        let acc = &self.accounts[account];
        acc.tables[table.index()].get_or_init(|| {
            let generator = Gen::new(
                self.anchor,
                self.history_days,
                &acc.account.username,
                acc.account.counts,
                table,
            );
            let recs = generator.build();
            RwLock::new(TableData { generator, recs })
        })
    }

    /// The records of `q` in its order, and how many match in all.
    pub(super) fn select(
        &self,
        data: &TableData,
        q: &EncodedQuery,
        offset: usize,
        limit: usize,
    ) -> (Vec<Rec>, usize) {
        let rows = matching(data, q);
        let total = rows.len();
        let page = rows.into_iter().skip(offset).take(limit).collect();
        (page, total)
    }

    /// Moves `n` records of the window `q` reads to new update times after the anchor (or
    /// to later ones inside the window, or deletes them, as `edit` says): about two thirds from the part not yet read (from the
    /// keyset position or `offset` on), the rest from what was already read.
    pub(crate) fn touch(
        &self,
        account: usize,
        table: SnTable,
        q: &EncodedQuery,
        offset: usize,
        (n, edit): (u32, Edit),
    ) -> Vec<Moved> {
        let mut data = self
            .table(account, table)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let (lo, hi) = q.window();
        let (lo, hi) = (lo.unwrap_or(i64::MIN), hi.unwrap_or(i64::MAX));
        let unread: Vec<Rec> = matching(&data, q).into_iter().skip(offset).collect();
        let unread_ids: HashSet<u128> = unread.iter().map(|r| r.sys_id).collect();
        let read: Vec<Rec> = in_range(&data.recs, lo, hi)
            .iter()
            .filter(|r| !unread_ids.contains(&r.sys_id))
            .copied()
            .collect();
        let n = n as usize;
        let from_read = (n / 3).min(read.len());
        let from_unread = (n - from_read).min(unread.len());
        let from_read = (n - from_unread).min(read.len());
        let mut picked = spread(&unread, from_unread);
        picked.extend(spread(&read, from_read));
        let username = self.accounts[account].account.username.clone();
        let mut moved = Vec::with_capacity(picked.len());
        for rec in picked {
            let Ok(pos) = data.recs.binary_search_by_key(&rec.key(), Rec::key) else {
                continue;
            };
            let end = hi.min(self.anchor.timestamp());
            if edit == Edit::MoveInside && rec.updated + 1 >= end {
                continue;
            }
            let mut r = data.recs.remove(pos);
            if edit == Edit::Delete {
                let at = DateTime::from_timestamp(r.updated, 0).unwrap_or_default();
                moved.push(Moved {
                    username: username.clone(),
                    table: table.name().to_string(),
                    sys_id: hex32(r.sys_id),
                    from: at,
                    to: at,
                    deleted: true,
                });
                continue;
            }
            let seq = self.move_seq.fetch_add(1, Ordering::Relaxed);
            let from = r.updated;
            r.updated = if edit == Edit::MoveInside {
                (end - 1 - seq % 60).max(from + 1)
            } else {
                self.anchor.timestamp() + 3600 + seq
            };
            r.mod_count += 1;
            let at = data.recs.partition_point(|x| x.key() < r.key());
            data.recs.insert(at, r);
            moved.push(Moved {
                username: username.clone(),
                table: table.name().to_string(),
                sys_id: hex32(r.sys_id),
                from: DateTime::from_timestamp(from, 0).unwrap_or_default(),
                to: DateTime::from_timestamp(r.updated, 0).unwrap_or_default(),
                deleted: false,
            });
        }
        lock(&self.moved).extend(moved.iter().cloned());
        moved
    }
}

/// `n` records spread evenly over `recs`.
fn spread(recs: &[Rec], n: usize) -> Vec<Rec> {
    if n == 0 || recs.is_empty() {
        return Vec::new();
    }
    (0..n).map(|k| recs[k * recs.len() / n]).collect()
}

fn in_range(recs: &[Rec], lo: i64, hi: i64) -> &[Rec] {
    if lo >= hi {
        return &[];
    }
    let from = recs.partition_point(|r| r.updated < lo);
    let to = recs.partition_point(|r| r.updated < hi);
    &recs[from..to.max(from)]
}

/// Every record matching `q`, in the order it asks for (creation order when it asks none).
/// Blocks joined by `^NQ` are answered block by block, each in that order, as a ServiceNow
/// instance may (SOURCE_APIS.md leaves the order across blocks unconfirmed): a client paging
/// on such a query's last row skips the later blocks' rows.
fn matching(data: &TableData, q: &EncodedQuery) -> Vec<Rec> {
    if q.blocks.len() < 2 {
        return matching_sorted(data, q);
    }
    let mut seen = HashSet::new();
    let mut rows = Vec::new();
    for block in &q.blocks {
        let one = EncodedQuery {
            blocks: vec![block.clone()],
            order: q.order.clone(),
        };
        rows.extend(
            matching_sorted(data, &one)
                .into_iter()
                .filter(|r| seen.insert(r.i)),
        );
    }
    rows
}

/// `matching` for a query of one block (or as if its blocks were one): sorted as a whole.
fn matching_sorted(data: &TableData, q: &EncodedQuery) -> Vec<Rec> {
    let (lo, hi) = q.updated_range();
    let g = &data.generator;
    let mut rows: Vec<Rec> = in_range(&data.recs, lo, hi)
        .iter()
        .filter(|r| q.matches_with(r, |r| g.created(u64::from(r.i))))
        .copied()
        .collect();
    if !q.is_storage_order() {
        rows.sort_by_key(|r| r.i);
        if !q.order.is_empty() {
            rows.sort_by(|a, b| {
                for &(key, desc) in &q.order {
                    let o = match key {
                        SortKey::Updated => a.updated.cmp(&b.updated),
                        SortKey::Created => {
                            g.created(u64::from(a.i)).cmp(&g.created(u64::from(b.i)))
                        }
                        SortKey::SysId => a.sys_id.cmp(&b.sys_id),
                        SortKey::Number => a.i.cmp(&b.i),
                    };
                    let o = if desc { o.reverse() } else { o };
                    if o.is_ne() {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
        }
    }
    rows
}

/// The exact initial dataset, for tests: every `(sys_id, sys_updated_on)` of `table` (API
/// name `incident` or table name `incidents`) of the account `username` whose update time is
/// in `window`, sorted by `sys_id`. Unknown account or table → empty. Records moved by
/// `touch_records` faults are listed by `GET /_sandbox/servicenow/moved`.
pub fn expected_servicenow(
    config: &SandboxConfig,
    username: &str,
    table: &str,
    window: &Window,
) -> Vec<(String, DateTime<Utc>)> {
    let (Some(account), Some(table)) = (
        config.servicenow.iter().find(|a| a.username == username),
        SnTable::from_name(table),
    ) else {
        return Vec::new();
    };
    let g = Gen::new(
        config.anchor,
        config.history_days,
        username,
        account.counts,
        table,
    );
    let mut rows: Vec<(String, DateTime<Utc>)> = (0..g.count())
        .filter_map(|i| {
            let at = DateTime::from_timestamp(g.updated(i), 0)?;
            window
                .contains(at)
                .then(|| (hex32(g.sys_id_of(table, i)), at))
        })
        .collect();
    rows.sort();
    rows
}
