//! The synthetic dataset: which ids exist, when each was entered and last updated.
//!
//! Nothing but a compact `(id, lastUpdated)` index is kept per table; every other field is a
//! pure function of (company seed, table, id) and is rendered on demand by `render.rs`.
//!
//! Invariants the query walk relies on:
//! - ids are `ID_BASE + i` for `i` in `0..count`, so the index position of an id is `id - ID_BASE`;
//! - `dateEntered(i)` is non-decreasing in `i` and lies in `[anchor - history, anchor)`;
//! - `dateEntered(i) <= lastUpdated(i) <= dateEntered(i) + MAX_LAG - 1` and `lastUpdated(i) < anchor`.
//!
//! So the rows of a window `[lo, hi)` all sit between the first `i` with
//! `dateEntered(i) + MAX_LAG > lo` and the first `i` with `dateEntered(i) >= hi`.

use super::{SandboxTenant, TableCounts};

pub(crate) const ID_BASE: i64 = 1000;
pub(crate) const DAY: i64 = 86_400;
/// Upper bound (exclusive) of `lastUpdated - dateEntered`.
pub(crate) const MAX_LAG: i64 = 60 * DAY;

/// The four ConnectWise tables the sandbox serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Table {
    Tickets,
    TimeEntries,
    Companies,
    Contacts,
}

impl Table {
    pub(crate) const ALL: [Table; 4] = [
        Table::Tickets,
        Table::TimeEntries,
        Table::Companies,
        Table::Contacts,
    ];

    pub(crate) fn path(self) -> &'static str {
        match self {
            Table::Tickets => "service/tickets",
            Table::TimeEntries => "time/entries",
            Table::Companies => "company/companies",
            Table::Contacts => "company/contacts",
        }
    }

    pub(crate) fn table_name(self) -> &'static str {
        match self {
            Table::Tickets => "tickets",
            Table::TimeEntries => "time_entries",
            Table::Companies => "companies",
            Table::Contacts => "contacts",
        }
    }

    pub(crate) fn from_table_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.table_name() == name)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Rough size of one rendered record, for pre-sizing response buffers.
    pub(crate) fn approx_record_bytes(self) -> usize {
        match self {
            Table::Tickets => 2600,
            Table::TimeEntries => 700,
            Table::Companies => 800,
            Table::Contacts => 600,
        }
    }

    fn salt(self) -> u64 {
        match self {
            Table::Tickets => 0x7469_636b_6574_7321,
            Table::TimeEntries => 0x7469_6d65_656e_7472,
            Table::Companies => 0x636f_6d70_616e_6965,
            Table::Contacts => 0x636f_6e74_6163_7473,
        }
    }
}

/// The splitmix64 finaliser: a fast, well-mixed 64-bit hash step.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Per-record hash of `(seed, i, field)`.
pub(crate) fn hash(seed: u64, i: u64, field: u64) -> u64 {
    mix(seed
        .wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(field.wrapping_mul(0xD1B5_4A32_D192_ED03)))
}

// Field tags for `hash`, so each field draws independent bits.
pub(crate) const F_JITTER: u64 = 1;
pub(crate) const F_LAG: u64 = 2;

/// The seconds a dataset's history covers: `[start, start + span)`, ending at the anchor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct History {
    pub(crate) start: i64,
    pub(crate) span: i64,
    /// The last second a record may carry: `anchor - 1s` (or the floor of a fractional anchor).
    pub(crate) last: i64,
}

impl History {
    /// `history_days` before `anchor`; 0 is treated as 1.
    pub(crate) fn new(anchor: chrono::DateTime<chrono::Utc>, history_days: u32) -> History {
        let anchor_secs = anchor.timestamp();
        let last = if anchor.timestamp_subsec_nanos() > 0 {
            anchor_secs
        } else {
            anchor_secs - 1
        };
        let span = i64::from(history_days.max(1)) * DAY;
        History {
            start: anchor_secs - span,
            span,
            last,
        }
    }
}

/// Everything needed to derive any record of one (tenant, table).
#[derive(Clone, Debug)]
pub(crate) struct Generator {
    pub(crate) table: Table,
    /// Seeds of all four tables of this tenant, indexed by `Table::index`, so records can
    /// reference each other consistently (a ticket's contact really belongs to its company).
    pub(crate) seeds: [u64; 4],
    pub(crate) counts: TableCounts,
    count: u64,
    hist_start: i64,
    span: i64,
    /// The last second a record may carry: `anchor - 1s` (or the floor of a fractional anchor).
    last_second: i64,
}

impl Generator {
    pub(crate) fn new(
        anchor: chrono::DateTime<chrono::Utc>,
        history_days: u32,
        tenant: &SandboxTenant,
        table: Table,
    ) -> Generator {
        let company = fnv1a(tenant.company_id.as_bytes());
        let seeds = Table::ALL.map(|t| mix(company ^ t.salt()));
        let history = History::new(anchor, history_days);
        Generator {
            table,
            seeds,
            counts: tenant.counts,
            count: tenant.counts.get(table.table_name()).unwrap_or(0),
            hist_start: history.start,
            span: history.span,
            last_second: history.last,
        }
    }

    /// The last second any generated record may carry.
    pub(crate) fn last_second(&self) -> i64 {
        self.last_second
    }

    pub(crate) fn seed(&self) -> u64 {
        self.seeds[self.table.index()]
    }

    pub(crate) fn h(&self, i: u64, field: u64) -> u64 {
        hash(self.seed(), i, field)
    }

    /// `_info.dateEntered` of record `i`: spread evenly over the history, with jitter
    /// inside each record's slot so the sequence stays non-decreasing.
    pub(crate) fn date_entered(&self, i: u64) -> i64 {
        let count = i128::from(self.count.max(1));
        let base = (i128::from(i) * i128::from(self.span) / count) as i64;
        let slot = (i128::from(self.span) / count) as i64;
        let jitter = if slot > 0 {
            (self.h(i, F_JITTER) % slot as u64) as i64
        } else {
            0
        };
        self.hist_start + base + jitter
    }

    /// `_info.lastUpdated` of record `i`: up to 60 days after `dateEntered`, before the
    /// anchor; every 50th record lands exactly on a midnight.
    pub(crate) fn last_updated(&self, i: u64) -> i64 {
        let de = self.date_entered(i);
        let room = (self.last_second - de).clamp(0, MAX_LAG - 1);
        let h = self.h(i, F_LAG);
        if i.is_multiple_of(50) {
            let first_midnight = (de.div_euclid(DAY) + 1) * DAY;
            let last_midnight = (de + room).div_euclid(DAY) * DAY;
            if first_midnight <= last_midnight {
                let days = (last_midnight - first_midnight) / DAY + 1;
                return first_midnight + (h % days as u64) as i64 * DAY;
            }
        }
        de + (h % (room as u64 + 1)) as i64
    }

    /// The sorted `(id, lastUpdated)` index of the whole table.
    pub(crate) fn build_index(&self) -> Vec<(i64, i64)> {
        (0..self.count)
            .map(|i| (ID_BASE + i as i64, self.last_updated(i)))
            .collect()
    }

    /// Index positions `[from, to)` that can hold rows with `lo <= lastUpdated < hi`.
    pub(crate) fn candidate_range(&self, lo: i64, hi: i64) -> (u64, u64) {
        if lo >= hi {
            return (0, 0);
        }
        let from = self.partition(|de| de.saturating_add(MAX_LAG) <= lo);
        let to = self.partition(|de| de < hi);
        (from, to.max(from))
    }

    /// First `i` for which `pred(dateEntered(i))` is false (`pred` must be monotone).
    fn partition(&self, pred: impl Fn(i64) -> bool) -> u64 {
        let (mut lo, mut hi) = (0u64, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.date_entered(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// Half-open `[lo, hi)` bounds on `lastUpdated`, in epoch seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) lo: i64,
    pub(crate) hi: i64,
}

impl Bounds {
    pub(crate) const ALL: Bounds = Bounds {
        lo: i64::MIN,
        hi: i64::MAX,
    };
}

/// One table of one tenant: its generator, its `(id, lastUpdated)` index, and the records
/// edited since start (`touch_records` faults), whose new `lastUpdated` overrides the index.
/// The `lastUpdated` a deleted record is kept at: it matches no query and is not found.
const DELETED: i64 = i64::MIN;

#[derive(Debug)]
pub(crate) struct TableData {
    pub(crate) generator: Generator,
    pub(crate) index: Vec<(i64, i64)>,
    moved: std::sync::RwLock<std::collections::HashMap<i64, i64>>,
}

impl TableData {
    pub(crate) fn new(generator: Generator) -> TableData {
        let index = generator.build_index();
        TableData {
            generator,
            index,
            moved: Default::default(),
        }
    }

    fn moved(&self) -> std::collections::HashMap<i64, i64> {
        self.moved.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Gives up to `n` records inside `bounds` a new `lastUpdated` after the end of the
    /// history (past any backfill's end), spread over the window so some are already read
    /// and some not yet. Returns `(id, old, new)` per moved record.
    ///
    /// Moved records are found by any window that contains their new time, so an
    /// incremental sync after the history's end reads them. With `inside`, the new time is
    /// later but still inside `bounds` (near its end); a record already at the end stays.
    pub(crate) fn touch(&self, bounds: Bounds, n: u32, inside: bool) -> Vec<(i64, i64, i64)> {
        let rows: Vec<(i64, i64)> = self.matching(bounds, None).collect();
        if rows.is_empty() || n == 0 {
            return Vec::new();
        }
        let step = (rows.len() / n as usize).max(1);
        let mut moved = self.moved.write().unwrap_or_else(|e| e.into_inner());
        let base = self.generator.last_second() + 1 + moved.len() as i64;
        let end = bounds.hi.min(self.generator.last_second() + 1);
        rows.iter()
            .step_by(step)
            .take(n as usize)
            .enumerate()
            .filter_map(|(k, &(id, old))| {
                let new = if inside {
                    (end - 1 - k as i64).max(old + 1)
                } else {
                    base + k as i64
                };
                (!inside || new < end).then(|| {
                    moved.insert(id, new);
                    (id, old, new)
                })
            })
            .collect()
    }

    /// Deletes up to `n` records inside `bounds`, spread over the window like `touch`.
    /// Returns `(id, lastUpdated)` per deleted record.
    pub(crate) fn delete(&self, bounds: Bounds, n: u32) -> Vec<(i64, i64)> {
        let rows: Vec<(i64, i64)> = self.matching(bounds, None).collect();
        if rows.is_empty() || n == 0 {
            return Vec::new();
        }
        let step = (rows.len() / n as usize).max(1);
        let mut moved = self.moved.write().unwrap_or_else(|e| e.into_inner());
        let picked: Vec<(i64, i64)> = rows.into_iter().step_by(step).take(n as usize).collect();
        for &(id, _) in &picked {
            moved.insert(id, DELETED);
        }
        picked
    }

    /// Edits `n` records spread over the whole table: each gets the update time `at + k`
    /// seconds (`k` = 0, 1, ...), as if users changed them then. Returns `(id, old, new)`.
    pub(crate) fn edit(&self, n: u32, at: i64) -> Vec<(i64, i64, i64)> {
        let step = (self.index.len() / n.max(1) as usize).max(1);
        self.edit_at((0..self.index.len()).step_by(step).take(n as usize), at)
    }

    /// `edit` of the `n` records created last (the highest ids) instead of records spread
    /// over the table.
    pub(crate) fn edit_newest(&self, n: u32, at: i64) -> Vec<(i64, i64, i64)> {
        let count = self.index.len();
        self.edit_at(count.saturating_sub(n as usize)..count, at)
    }

    /// Edits the records at index positions `picked`, the `k`th to update time `at + k`.
    fn edit_at(&self, picked: impl Iterator<Item = usize>, at: i64) -> Vec<(i64, i64, i64)> {
        let mut moved = self.moved.write().unwrap_or_else(|e| e.into_inner());
        picked
            .enumerate()
            .map(|(k, pos)| {
                let (id, original) = self.index[pos];
                let old = moved.get(&id).copied().unwrap_or(original);
                let new = at + k as i64;
                moved.insert(id, new);
                (id, old, new)
            })
            .collect()
    }

    fn matching(&self, bounds: Bounds, after_id: Option<i64>) -> impl Iterator<Item = (i64, i64)> {
        let moved = self.moved();
        let (from, to) = self.generator.candidate_range(bounds.lo, bounds.hi);
        let to = to.min(self.index.len() as u64);
        // Moved records whose index position lies outside the candidate range but whose new
        // time is inside the bounds: the dateEntered walk cannot find them, so add them.
        let mut outside: Vec<(i64, i64)> = moved
            .iter()
            .filter(|&(&id, &lu)| {
                let pos = (id - ID_BASE) as u64;
                (pos < from || pos >= to)
                    && lu != DELETED
                    && bounds.lo <= lu
                    && lu < bounds.hi
                    && after_id.is_none_or(|a| id > a)
            })
            .map(|(&id, &lu)| (id, lu))
            .collect();
        outside.sort_unstable();
        let from = match after_id {
            Some(after) => {
                let next = after.saturating_add(1).saturating_sub(ID_BASE).max(0) as u64;
                from.max(next)
            }
            None => from,
        };
        let to = to as usize;
        let from = (from as usize).min(to);
        let inside = self.index[from..to]
            .iter()
            .map(move |&(id, lu)| (id, moved.get(&id).copied().unwrap_or(lu)))
            .filter(move |&(_, lu)| lu != DELETED && bounds.lo <= lu && lu < bounds.hi);
        merge_by_id(inside, outside.into_iter())
    }

    /// Up to `limit` matching rows with `id > after_id`, ascending by id.
    pub(crate) fn page_after(
        &self,
        bounds: Bounds,
        after_id: Option<i64>,
        limit: usize,
    ) -> Vec<(i64, i64)> {
        self.matching(bounds, after_id).take(limit).collect()
    }

    /// Up to `limit` matching rows after skipping the first `skip`, ascending by id.
    pub(crate) fn page_offset(&self, bounds: Bounds, skip: u64, limit: usize) -> Vec<(i64, i64)> {
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        self.matching(bounds, None).skip(skip).take(limit).collect()
    }

    pub(crate) fn count(&self, bounds: Bounds) -> u64 {
        self.matching(bounds, None).count() as u64
    }

    /// The `lastUpdated` of `id`, if the record exists.
    pub(crate) fn last_updated_of(&self, id: i64) -> Option<i64> {
        let pos = usize::try_from(id.checked_sub(ID_BASE)?).ok()?;
        let lu = self.index.get(pos).map(|&(_, lu)| lu)?;
        Some(self.moved().get(&id).copied().unwrap_or(lu)).filter(|&lu| lu != DELETED)
    }
}

/// Merges two id-ascending streams with disjoint ids into one id-ascending stream.
fn merge_by_id(
    a: impl Iterator<Item = (i64, i64)>,
    b: impl Iterator<Item = (i64, i64)>,
) -> impl Iterator<Item = (i64, i64)> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x.0 <= y.0 => a.next(),
        (Some(_), Some(_)) => b.next(),
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}
