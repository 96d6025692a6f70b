//! The synthetic Salesforce org: five sObjects with 18-character Ids, audit fields and
//! realistic values, derived deterministically from the org's username.
//!
//! Per (org, sObject) only the audit times are kept (`CreatedDate`, `LastModifiedDate`,
//! `SystemModstamp` of every record); every other field is a pure function of
//! (org seed, sObject, record index) and is rendered when asked for.
//!
//! Shape of the data (what the tests lean on):
//! - `SystemModstamp` lies in `[anchor - history_days, anchor)` and is never before `CreatedDate`;
//! - about one record in twelve sits exactly on a midnight (a chunk boundary);
//! - times are kept in epoch milliseconds, as Salesforce stamps them: a `SystemModstamp` has
//!   a millisecond part (`.000` on a midnight), `CreatedDate` and an older `LastModifiedDate`
//!   do not;
//! - about one in twenty shares its exact `SystemModstamp` (milliseconds included) with the
//!   record before it, and a run of several records every 97 does so where it can;
//! - Ids grow with `CreatedDate`, so `SystemModstamp` order and `Id` order differ.

use chrono::{DateTime, Utc};

use crate::sandbox::data::{DAY, History, hash, mix};
use crate::sandbox::words;

mod values;

pub(crate) use values::{Renderer, Times, rest_datetime};

/// The five sObjects the sandbox serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SObject {
    Account,
    Contact,
    Opportunity,
    Case,
    Lead,
}

/// How a field's values look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Id,
    Str,
    Num,
    Int,
    Bool,
    Date,
    DateTime,
}

const AUDIT: &[(&str, Kind)] = &[
    ("Id", Kind::Id),
    ("IsDeleted", Kind::Bool),
    ("OwnerId", Kind::Id),
    ("CreatedDate", Kind::DateTime),
    ("CreatedById", Kind::Id),
    ("LastModifiedDate", Kind::DateTime),
    ("LastModifiedById", Kind::Id),
    ("SystemModstamp", Kind::DateTime),
];

const ACCOUNT: &[(&str, Kind)] = &[
    ("Name", Kind::Str),
    ("Type", Kind::Str),
    ("Industry", Kind::Str),
    ("AnnualRevenue", Kind::Num),
    ("NumberOfEmployees", Kind::Int),
    ("BillingCity", Kind::Str),
    ("BillingState", Kind::Str),
    ("BillingCountry", Kind::Str),
    ("Phone", Kind::Str),
    ("Website", Kind::Str),
    ("Description", Kind::Str),
];

const CONTACT: &[(&str, Kind)] = &[
    ("FirstName", Kind::Str),
    ("LastName", Kind::Str),
    ("Name", Kind::Str),
    ("Email", Kind::Str),
    ("Title", Kind::Str),
    ("Phone", Kind::Str),
    ("AccountId", Kind::Id),
    ("LeadSource", Kind::Str),
    ("MailingCity", Kind::Str),
    ("HasOptedOutOfEmail", Kind::Bool),
];

const OPPORTUNITY: &[(&str, Kind)] = &[
    ("Name", Kind::Str),
    ("AccountId", Kind::Id),
    ("StageName", Kind::Str),
    ("Amount", Kind::Num),
    ("Probability", Kind::Num),
    ("CloseDate", Kind::Date),
    ("Type", Kind::Str),
    ("LeadSource", Kind::Str),
    ("IsClosed", Kind::Bool),
    ("IsWon", Kind::Bool),
    ("ForecastCategory", Kind::Str),
];

const CASE: &[(&str, Kind)] = &[
    ("CaseNumber", Kind::Str),
    ("Subject", Kind::Str),
    ("Description", Kind::Str),
    ("Status", Kind::Str),
    ("Priority", Kind::Str),
    ("Origin", Kind::Str),
    ("Type", Kind::Str),
    ("IsClosed", Kind::Bool),
    ("ClosedDate", Kind::DateTime),
    ("IsEscalated", Kind::Bool),
    ("AccountId", Kind::Id),
    ("ContactId", Kind::Id),
];

const LEAD: &[(&str, Kind)] = &[
    ("FirstName", Kind::Str),
    ("LastName", Kind::Str),
    ("Name", Kind::Str),
    ("Company", Kind::Str),
    ("Title", Kind::Str),
    ("Email", Kind::Str),
    ("Phone", Kind::Str),
    ("Status", Kind::Str),
    ("LeadSource", Kind::Str),
    ("Industry", Kind::Str),
    ("Rating", Kind::Str),
    ("AnnualRevenue", Kind::Num),
    ("NumberOfEmployees", Kind::Int),
    ("IsConverted", Kind::Bool),
    ("ConvertedDate", Kind::Date),
];

/// Fields of the `Owner` (User) relationship that queries may read (`Owner.Name`).
pub(crate) const OWNER_FIELDS: &[&str] = &["Id", "Name", "Email"];

impl SObject {
    pub(crate) const ALL: [SObject; 5] = [
        SObject::Account,
        SObject::Contact,
        SObject::Opportunity,
        SObject::Case,
        SObject::Lead,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            SObject::Account => "Account",
            SObject::Contact => "Contact",
            SObject::Opportunity => "Opportunity",
            SObject::Case => "Case",
            SObject::Lead => "Lead",
        }
    }

    /// sObject names are case-insensitive in SOQL.
    pub(crate) fn from_name(name: &str) -> Option<SObject> {
        SObject::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The key prefix of its record Ids.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            SObject::Account => "001",
            SObject::Contact => "003",
            SObject::Opportunity => "006",
            SObject::Case => "500",
            SObject::Lead => "00Q",
        }
    }

    fn own_fields(self) -> &'static [(&'static str, Kind)] {
        match self {
            SObject::Account => ACCOUNT,
            SObject::Contact => CONTACT,
            SObject::Opportunity => OPPORTUNITY,
            SObject::Case => CASE,
            SObject::Lead => LEAD,
        }
    }

    /// Every direct field: the audit fields, then its own.
    pub(crate) fn fields(self) -> impl Iterator<Item = (&'static str, Kind)> {
        AUDIT.iter().chain(self.own_fields()).copied()
    }

    /// The canonical name and kind of a direct field (case-insensitive lookup).
    pub(crate) fn field(self, name: &str) -> Option<(&'static str, Kind)> {
        AUDIT
            .iter()
            .chain(self.own_fields())
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .copied()
    }

    fn salt(self) -> u64 {
        match self {
            SObject::Account => 0x0001_4163_636f_756e,
            SObject::Contact => 0x0003_436f_6e74_6163,
            SObject::Opportunity => 0x0006_4f70_706f_7274,
            SObject::Case => 0x0500_4361_7365_5f5f,
            SObject::Lead => 0x000b_4c65_6164_5f5f,
        }
    }
}

/// Records per sObject of one org.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SfCounts {
    pub accounts: u64,
    pub contacts: u64,
    pub opportunities: u64,
    pub cases: u64,
    pub leads: u64,
}

impl SfCounts {
    /// Sizes derived from a ConnectWise-shaped `TableCounts`: 10 accounts per company,
    /// 5 contacts per contact, one opportunity per ticket, two cases per ticket, one lead
    /// per time entry (the demo sizes give 2000 / 4000 / 4000 / 8000 / 8000).
    pub fn from_table_counts(c: crate::sandbox::TableCounts) -> SfCounts {
        SfCounts {
            accounts: c.companies.saturating_mul(10),
            contacts: c.contacts.saturating_mul(5),
            opportunities: c.tickets,
            cases: c.tickets.saturating_mul(2),
            leads: c.time_entries,
        }
    }

    pub(crate) fn get(&self, s: SObject) -> u64 {
        match s {
            SObject::Account => self.accounts,
            SObject::Contact => self.contacts,
            SObject::Opportunity => self.opportunities,
            SObject::Case => self.cases,
            SObject::Lead => self.leads,
        }
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The 3-character case-safe suffix that turns a 15-character Id into its 18-character form.
pub(crate) fn id_suffix(id15: &[u8]) -> [u8; 3] {
    const MAP: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let mut out = [0u8; 3];
    for (chunk, slot) in id15.chunks(5).zip(out.iter_mut()) {
        let flags = chunk
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_ascii_uppercase())
            .fold(0usize, |acc, (j, _)| acc | (1 << j));
        *slot = MAP[flags];
    }
    out
}

/// An 18-character Id: key prefix, 2-character pod, a reserved `0`, 9 base-62 digits of
/// `number`, and the case-safe suffix. Ids of one prefix and pod sort like their numbers.
pub(crate) fn make_id(prefix: &str, pod: &[u8; 2], number: u64) -> String {
    let mut id = Vec::with_capacity(18);
    id.extend_from_slice(prefix.as_bytes());
    id.extend_from_slice(pod);
    id.push(b'0');
    let mut digits = [b'0'; 9];
    let mut n = number;
    for d in digits.iter_mut().rev() {
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
    id.extend_from_slice(&digits);
    let suffix = id_suffix(&id);
    id.extend_from_slice(&suffix);
    String::from_utf8(id).expect("ASCII")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// What identifies one org's data: its seed, Id pod and users.
#[derive(Clone, Debug)]
pub(crate) struct OrgKeys {
    pub(crate) seed: u64,
    pub(crate) pod: [u8; 2],
    pub(crate) org_id: String,
    pub(crate) counts: SfCounts,
}

impl OrgKeys {
    pub(crate) fn new(username: &str, counts: SfCounts) -> OrgKeys {
        let seed = mix(fnv1a(username.as_bytes()));
        let pod = [
            BASE62[(seed % 26 + 10) as usize],
            BASE62[((seed >> 8) % 10) as usize],
        ];
        let org_id = make_id("00D", &pod, (seed >> 16) % 1_000_000);
        OrgKeys {
            seed,
            pod,
            org_id,
            counts,
        }
    }

    pub(crate) fn table_seed(&self, s: SObject) -> u64 {
        mix(self.seed ^ s.salt())
    }

    /// Record number of record `i` of `s` (grows with `i`, leaves gaps like a real org).
    fn number(&self, s: SObject, i: u64) -> u64 {
        1_000 + (self.table_seed(s) % 5_000) + i * 3 + hash(self.table_seed(s), i, 99) % 3
    }

    pub(crate) fn record_id(&self, s: SObject, i: u64) -> String {
        make_id(s.prefix(), &self.pod, self.number(s, i))
    }

    pub(crate) const USERS: u64 = 9;

    pub(crate) fn user_id(&self, k: u64) -> String {
        make_id("005", &self.pod, 500 + k * 17)
    }

    pub(crate) fn user_name(&self, k: u64) -> String {
        let h = hash(self.seed, k, 77);
        format!(
            "{} {}",
            words::pick(words::FIRST_NAMES, h),
            words::pick(words::LAST_NAMES, h >> 20)
        )
    }
}

// Field tags for `hash`.
const F_CREATED: u64 = 11;
const F_LAG_KIND: u64 = 12;
const F_LAG: u64 = 13;
const F_MIDNIGHT: u64 = 14;
const F_SAME: u64 = 15;
const F_LMD: u64 = 16;
const F_MILLI: u64 = 17;

/// The audit times of every record of one (org, sObject), as first generated, in epoch ms.
#[derive(Clone, Debug)]
pub(crate) struct Audit {
    pub(crate) created: Vec<i64>,
    pub(crate) modified: Vec<i64>,
    pub(crate) modstamp: Vec<i64>,
}

/// Generates the audit times of `count` records over `[anchor - history_days, anchor)`.
pub(crate) fn audit_times(
    seed: u64,
    count: u64,
    anchor: DateTime<Utc>,
    history_days: u32,
) -> Audit {
    let History {
        start: lo,
        span,
        last,
    } = History::new(anchor, history_days);
    let n = count.max(1) as i128;
    let slot = (i128::from(span) / n).max(1) as u64;
    let mut audit = Audit {
        created: Vec::with_capacity(count as usize),
        modified: Vec::with_capacity(count as usize),
        modstamp: Vec::with_capacity(count as usize),
    };
    let (mut prev, mut prev_ms) = (i64::MIN, 0);
    for i in 0..count {
        let h = |f: u64| hash(seed, i, f);
        let base = (i128::from(i) * i128::from(span) / n) as i64;
        let created = (lo + base + (h(F_CREATED) % slot) as i64).min(last);
        let room = (last - created).max(0) as u64;
        let lag = match h(F_LAG_KIND) % 100 {
            0..35 => 0,
            35..80 => h(F_LAG) % (7 * DAY as u64).min(room + 1),
            _ => h(F_LAG) % (90 * DAY as u64).min(room + 1),
        };
        let mut stamp = created + lag as i64;
        if h(F_MIDNIGHT).is_multiple_of(12) {
            let floor = stamp.div_euclid(DAY) * DAY;
            let ceil = if floor == stamp { floor } else { floor + DAY };
            if floor >= created && floor >= lo {
                stamp = floor;
            } else if ceil <= last {
                stamp = ceil;
            }
        }
        let mut stamp_ms = if stamp.rem_euclid(DAY) == 0 {
            stamp * 1000
        } else {
            stamp * 1000 + (h(F_MILLI) % 1000) as i64
        };
        let tie = h(F_SAME).is_multiple_of(20) || (1..=4).contains(&(i % 97));
        if i > 0 && tie && prev >= created {
            (stamp, stamp_ms) = (prev, prev_ms);
        }
        let modified = if stamp > created && h(F_LMD).is_multiple_of(3) {
            (created + (h(F_LMD) >> 8) as i64 % (stamp - created)) * 1000
        } else {
            stamp_ms
        };
        (prev, prev_ms) = (stamp, stamp_ms);
        audit.created.push(created * 1000);
        audit.modified.push(modified);
        audit.modstamp.push(stamp_ms);
    }
    audit
}

#[cfg(test)]
mod tests {
    use super::values::{Val, bulk_datetime};
    use super::*;

    #[test]
    fn ids_have_the_real_shape_and_checksum() {
        // The suffix of a real Id from the Salesforce docs.
        assert_eq!(&id_suffix(b"001D000000IRFma"), b"IAH");
        let keys = OrgKeys::new(
            "integration@acme.example",
            SfCounts::from_table_counts(crate::sandbox::TableCounts::demo()),
        );
        let a = keys.record_id(SObject::Account, 0);
        let b = keys.record_id(SObject::Account, 1);
        assert_eq!(a.len(), 18);
        assert!(a.starts_with("001"), "{a}");
        assert!(a < b, "ids grow with the record index: {a} {b}");
        assert_eq!(&a.as_bytes()[15..], id_suffix(&a.as_bytes()[..15]));
        assert!(keys.record_id(SObject::Lead, 5).starts_with("00Q"));
        assert!(keys.record_id(SObject::Case, 5).starts_with("500"));
        let other = OrgKeys::new("integration@initech.example", keys.counts);
        assert_ne!(other.record_id(SObject::Account, 0), a, "orgs differ");
    }

    #[test]
    fn audit_times_cover_boundaries_and_ties() {
        let anchor: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let a = audit_times(42, 8000, anchor, 730);
        let lo = (anchor.timestamp() - 730 * DAY) * 1000;
        let mut midnights = 0;
        let (mut ties, mut fractions) = (0, 0);
        for i in 0..8000 {
            let (c, m, s) = (a.created[i], a.modified[i], a.modstamp[i]);
            assert!(c <= m && m <= s, "record {i}: {c} {m} {s}");
            assert!(
                lo <= s && s < anchor.timestamp_millis(),
                "record {i} outside history"
            );
            midnights += usize::from(s % (DAY * 1000) == 0);
            fractions += usize::from(s % 1000 != 0);
            ties += usize::from(i > 0 && s == a.modstamp[i - 1]);
        }
        assert!(midnights > 300, "{midnights} records on a midnight");
        assert!(
            ties > 200,
            "{ties} records share their stamp with the previous one"
        );
        assert!(fractions > 6000, "{fractions} stamps with milliseconds");
        assert_eq!(audit_times(42, 8000, anchor, 730).modstamp, a.modstamp);
    }

    #[test]
    fn values_render_as_rest_json_and_bulk_csv() {
        assert_eq!(
            rest_datetime(1_369_082_972_000),
            "2013-05-20T20:49:32.000+0000"
        );
        assert_eq!(
            rest_datetime(1_369_082_972_047),
            "2013-05-20T20:49:32.047+0000"
        );
        assert_eq!(bulk_datetime(1_672_531_200_000), "2023-01-01T00:00:00.000Z");
        assert_eq!(bulk_datetime(1_672_531_200_999), "2023-01-01T00:00:00.999Z");
        let mut out = Vec::new();
        Val::Num(350_000.0).write_json(&mut out);
        assert_eq!(out, b"350000.0");
        assert_eq!(Val::Date(19_358).csv_text().as_deref(), Some("2023-01-01"));
        assert_eq!(Val::Null.csv_text(), None);
    }
}
