//! The synthetic ServiceNow dataset: four tables per account, every record a pure function of
//! (username, table, index), rendered as the Table API sends it (all values strings).
//!
//! Update times (`sys_updated_on`, whole seconds, UTC) are spread over
//! `[anchor - history, anchor)`. On purpose:
//! - every 37th record (index ≡ 5) is updated exactly at a midnight, so chunk boundaries hold
//!   records;
//! - a quarter of the groups of six consecutive records share one update second (a bulk
//!   update), so keyset paging meets ties across page boundaries.

use std::fmt::Write as _;

use crate::sandbox::data::{History, hash, mix};
use crate::sandbox::json::string;
use crate::sandbox::words::{FIRST_NAMES, LAST_NAMES, SUMMARIES, TITLES, pick, prose};

mod render;

pub(crate) use render::{Display, RenderOpts, render};

pub(crate) const DAY: i64 = 86_400;
/// Upper bound (exclusive) of `sys_updated_on - sys_created_on` before tie grouping.
const MAX_LAG: i64 = 45 * DAY;
/// Consecutive records that may share one update second.
const TIE_GROUP: u64 = 6;

/// The tables the sandbox serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SnTable {
    Incident,
    ChangeRequest,
    Problem,
    SysUser,
}

impl SnTable {
    pub(crate) const ALL: [SnTable; 4] = [
        SnTable::Incident,
        SnTable::ChangeRequest,
        SnTable::Problem,
        SnTable::SysUser,
    ];

    /// The table's API name (`/api/now/table/{name}`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            SnTable::Incident => "incident",
            SnTable::ChangeRequest => "change_request",
            SnTable::Problem => "problem",
            SnTable::SysUser => "sys_user",
        }
    }

    /// The `table_name` of `mappings/endpoints/servicenow.json`.
    pub(crate) fn table_name(self) -> &'static str {
        match self {
            SnTable::Incident => "incidents",
            SnTable::ChangeRequest => "change_requests",
            SnTable::Problem => "problems",
            SnTable::SysUser => "users",
        }
    }

    /// By API name or storage table name.
    pub(crate) fn from_name(name: &str) -> Option<SnTable> {
        SnTable::ALL
            .into_iter()
            .find(|t| t.name() == name || t.table_name() == name)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    fn salt(self) -> u64 {
        match self {
            SnTable::Incident => 0x736e_696e_6369_6465,
            SnTable::ChangeRequest => 0x736e_6368_616e_6765,
            SnTable::Problem => 0x736e_7072_6f62_6c65,
            SnTable::SysUser => 0x736e_7573_6572_7321,
        }
    }

    pub(crate) fn approx_record_bytes(self) -> usize {
        match self {
            SnTable::Incident => 1500,
            SnTable::ChangeRequest => 1200,
            SnTable::Problem => 1100,
            SnTable::SysUser => 900,
        }
    }
}

/// How many records each table of an account holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnCounts {
    pub incident: u64,
    pub change_request: u64,
    pub problem: u64,
    pub sys_user: u64,
}

impl SnCounts {
    pub(crate) fn get(&self, t: SnTable) -> u64 {
        match t {
            SnTable::Incident => self.incident,
            SnTable::ChangeRequest => self.change_request,
            SnTable::Problem => self.problem,
            SnTable::SysUser => self.sys_user,
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

// Field tags for `hash` (independent bits per field).
const F_JITTER: u64 = 1;
const F_LAG: u64 = 2;
const F_TIE: u64 = 3;
const F_SYS_A: u64 = 4;
const F_SYS_B: u64 = 5;
const F_MOD: u64 = 6;
const F_SUMMARY: u64 = 10;
const F_STATE: u64 = 11;
const F_PRIORITY: u64 = 12;
const F_IMPACT: u64 = 13;
const F_URGENCY: u64 = 14;
const F_CATEGORY: u64 = 15;
const F_CALLER: u64 = 16;
const F_ASSIGNED: u64 = 17;
const F_GROUP: u64 = 18;
const F_OPENED_BY: u64 = 19;
const F_REASSIGN: u64 = 20;
const F_SLA: u64 = 21;
const F_TEXT: u64 = 22;
const F_CREATED_BY: u64 = 23;
const F_UPDATED_BY: u64 = 24;
const F_TYPE: u64 = 25;
const F_RISK: u64 = 26;
const F_APPROVAL: u64 = 27;
const F_COST: u64 = 28;
const F_START: u64 = 29;
const F_KNOWN: u64 = 30;
const F_INCIDENT: u64 = 31;
const F_FIRST: u64 = 32;
const F_LAST: u64 = 33;
const F_TITLE: u64 = 34;
const F_PHONE: u64 = 35;
const F_LOGIN: u64 = 36;
const F_VIP: u64 = 37;
const F_MANAGER: u64 = 38;
const F_ACTIVE: u64 = 39;
const F_FAILED: u64 = 40;

const CATEGORIES: &[&str] = &["inquiry", "software", "hardware", "network", "database"];
const GROUPS: &[&str] = &[
    "Service Desk",
    "Network",
    "Database",
    "Hardware",
    "Software",
    "Change Management",
    "Problem Analyzers",
];
const CHANGES: &[&str] = &[
    "Upgrade core switch firmware",
    "Rotate TLS certificates on the web tier",
    "Patch Windows servers (monthly)",
    "Migrate file share to new NAS",
    "Add VLAN for guest Wi-Fi",
    "Decommission legacy \"FIN-01\" server",
    "Increase mailbox quota for sales",
    "Replace UPS batteries in rack B",
];
const PROBLEMS: &[&str] = &[
    "Recurring VPN disconnects after sleep",
    "Printer queue stalls every Monday",
    "Intermittent DNS timeouts in branch office",
    "Backup job exceeds its window",
    "Outlook profile corruption after updates",
    "Slow logons on shared terminals",
];

/// Everything needed to derive any record of one (account, table).
#[derive(Clone, Debug)]
pub(crate) struct Gen {
    pub(crate) table: SnTable,
    account_seed: u64,
    seeds: [u64; 4],
    counts: [u64; 4],
    domain: String,
    hist_start: i64,
    span: i64,
    last_second: i64,
}

/// One record's index entry: what paging and the keyset need; everything else is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rec {
    pub(crate) updated: i64,
    pub(crate) sys_id: u128,
    pub(crate) i: u32,
    pub(crate) mod_count: u32,
}

impl Rec {
    pub(crate) fn key(&self) -> (i64, u128) {
        (self.updated, self.sys_id)
    }
}

impl Gen {
    pub(crate) fn new(
        anchor: chrono::DateTime<chrono::Utc>,
        history_days: u32,
        username: &str,
        counts: SnCounts,
        table: SnTable,
    ) -> Gen {
        let account_seed = mix(fnv1a(username.as_bytes()) ^ 0x5345_5256_4943_454e);
        let seeds = SnTable::ALL.map(|t| mix(account_seed ^ t.salt()));
        let history = History::new(anchor, history_days);
        let org = username
            .split(['.', '@', '_'])
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("example");
        let org: String = org
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        Gen {
            table,
            account_seed,
            seeds,
            counts: SnTable::ALL.map(|t| counts.get(t)),
            domain: format!("{org}.example.com"),
            hist_start: history.start,
            span: history.span,
            last_second: history.last,
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.counts[self.table.index()]
    }

    fn seed(&self) -> u64 {
        self.seeds[self.table.index()]
    }

    fn h(&self, i: u64, field: u64) -> u64 {
        hash(self.seed(), i, field)
    }

    /// `sys_created_on` of record `i`: spread evenly over the history, non-decreasing in `i`.
    pub(crate) fn created(&self, i: u64) -> i64 {
        let count = i128::from(self.count().max(1));
        let base = (i128::from(i) * i128::from(self.span) / count) as i64;
        let slot = (i128::from(self.span) / count) as i64;
        let jitter = if slot > 0 {
            (self.h(i, F_JITTER) % slot as u64) as i64
        } else {
            0
        };
        self.hist_start + base + jitter
    }

    fn own_update(&self, i: u64) -> i64 {
        let created = self.created(i);
        let room = (self.last_second - created).clamp(0, MAX_LAG - 1);
        let h = self.h(i, F_LAG);
        if i % 37 == 5 {
            let first_midnight = (created.div_euclid(DAY) + 1) * DAY;
            let last_midnight = (created + room).div_euclid(DAY) * DAY;
            if first_midnight <= last_midnight {
                let days = (last_midnight - first_midnight) / DAY + 1;
                return first_midnight + (h % days as u64) as i64 * DAY;
            }
        }
        created + (h % (room as u64 + 1)) as i64
    }

    /// The initial `sys_updated_on` of record `i` (never before its `sys_created_on`).
    pub(crate) fn updated(&self, i: u64) -> i64 {
        let group = i / TIE_GROUP;
        if hash(self.seed(), group, F_TIE).is_multiple_of(4) {
            // A bulk update: the whole group carries the update time of its last member,
            // whose creation time is the group's latest.
            let last = (group * TIE_GROUP + TIE_GROUP - 1).min(self.count().saturating_sub(1));
            return self.own_update(last);
        }
        self.own_update(i)
    }

    pub(crate) fn sys_id_of(&self, table: SnTable, i: u64) -> u128 {
        let s = self.seeds[table.index()];
        (u128::from(hash(s, i, F_SYS_A)) << 64) | u128::from(hash(s, i, F_SYS_B))
    }

    pub(crate) fn initial_rec(&self, i: u64) -> Rec {
        Rec {
            updated: self.updated(i),
            sys_id: self.sys_id_of(self.table, i),
            i: i as u32,
            mod_count: (self.h(i, F_MOD) % 12) as u32,
        }
    }

    /// Every record in its initial state, sorted by (`sys_updated_on`, `sys_id`).
    pub(crate) fn build(&self) -> Vec<Rec> {
        let mut recs: Vec<Rec> = (0..self.count()).map(|i| self.initial_rec(i)).collect();
        recs.sort_unstable_by_key(Rec::key);
        recs
    }

    fn user(&self, h: u64) -> Option<u64> {
        let n = self.counts[SnTable::SysUser.index()];
        (n > 0).then(|| h % n)
    }

    fn user_names(&self, j: u64) -> (&'static str, &'static str) {
        let s = self.seeds[SnTable::SysUser.index()];
        (
            pick(FIRST_NAMES, hash(s, j, F_FIRST)),
            pick(LAST_NAMES, hash(s, j, F_LAST)),
        )
    }

    fn user_name(&self, j: u64) -> String {
        let (first, last) = self.user_names(j);
        let ascii = |s: &str| -> String {
            s.chars()
                .map(|c| match c {
                    'á' | 'à' | 'ä' => 'a',
                    'é' | 'è' | 'ë' => 'e',
                    'í' | 'ï' => 'i',
                    'ó' | 'ö' => 'o',
                    'ú' | 'ü' => 'u',
                    'ç' => 'c',
                    other => other,
                })
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_lowercase()
        };
        let mut name = format!("{}.{}", ascii(first), ascii(last));
        if j >= 20 {
            let _ = write!(name, "{}", j % 1000);
        }
        name
    }

    fn group_id(&self, k: u64) -> u128 {
        (u128::from(hash(self.account_seed, k, F_SYS_A)) << 64)
            | u128::from(hash(self.account_seed, k, F_SYS_B))
    }

    fn by(&self, h: u64) -> String {
        match (h % 5, self.user(h / 5)) {
            (0, _) | (_, None) => "admin".to_string(),
            (1, _) => "system".to_string(),
            (_, Some(j)) => self.user_name(j),
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC), the Table API's raw date-time format.
pub(crate) fn sn_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Parses `YYYY-MM-DD HH:MM:SS` as UTC epoch seconds.
pub(crate) fn parse_sn_time(text: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

pub(crate) fn hex32(id: u128) -> String {
    format!("{id:032x}")
}
