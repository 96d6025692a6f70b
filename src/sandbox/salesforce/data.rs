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
//! - about one in twenty shares its `SystemModstamp` second with the record before it;
//! - Ids grow with `CreatedDate`, so `SystemModstamp` order and `Id` order differ.

use chrono::{DateTime, Utc};

use crate::sandbox::data::{DAY, hash, mix};
use crate::sandbox::words;

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

/// The audit times of every record of one (org, sObject), as first generated.
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
    let anchor_secs = anchor.timestamp();
    let last = if anchor.timestamp_subsec_nanos() > 0 {
        anchor_secs
    } else {
        anchor_secs - 1
    };
    let span = i64::from(history_days.max(1)) * DAY;
    let lo = anchor_secs - span;
    let n = count.max(1) as i128;
    let slot = (i128::from(span) / n).max(1) as u64;
    let mut audit = Audit {
        created: Vec::with_capacity(count as usize),
        modified: Vec::with_capacity(count as usize),
        modstamp: Vec::with_capacity(count as usize),
    };
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
        if i > 0 && h(F_SAME).is_multiple_of(20) {
            let prev = audit.modstamp[i as usize - 1];
            if prev >= created {
                stamp = prev;
            }
        }
        let modified = if stamp > created && h(F_LMD).is_multiple_of(3) {
            created + (h(F_LMD) >> 8) as i64 % (stamp - created)
        } else {
            stamp
        };
        audit.created.push(created);
        audit.modified.push(modified);
        audit.modstamp.push(stamp);
    }
    audit
}

/// One rendered field value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    Null,
    Str(String),
    Num(f64),
    Int(i64),
    Bool(bool),
    /// Days since the epoch.
    Date(i64),
    /// Seconds since the epoch.
    DateTime(i64),
}

impl Val {
    /// REST JSON.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Val::Null => out.extend_from_slice(b"null"),
            Val::Str(s) => crate::sandbox::json::string(out, s),
            Val::Num(x) => out.extend_from_slice(number(*x).as_bytes()),
            Val::Int(n) => crate::sandbox::json::int(out, *n),
            Val::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Val::Date(d) => {
                out.push(b'"');
                out.extend_from_slice(date(*d).as_bytes());
                out.push(b'"');
            }
            Val::DateTime(s) => {
                out.push(b'"');
                out.extend_from_slice(rest_datetime(*s).as_bytes());
                out.push(b'"');
            }
        }
    }

    /// Bulk API CSV text (`None`: an empty field).
    pub(crate) fn csv_text(&self) -> Option<String> {
        match self {
            Val::Null => None,
            Val::Str(s) => Some(s.clone()),
            Val::Num(x) => Some(number(*x)),
            Val::Int(n) => Some(n.to_string()),
            Val::Bool(b) => Some(b.to_string()),
            Val::Date(d) => Some(date(*d)),
            Val::DateTime(s) => Some(bulk_datetime(*s)),
        }
    }
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

fn date(days: i64) -> String {
    DateTime::from_timestamp(days * DAY, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// `2013-05-20T20:49:32.000+0000`, as REST JSON shows datetimes.
pub(crate) fn rest_datetime(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S.000+0000").to_string())
        .unwrap_or_default()
}

/// `2023-01-01T00:00:00.000Z`, as Bulk API 2.0 CSV shows datetimes.
pub(crate) fn bulk_datetime(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S.000Z").to_string())
        .unwrap_or_default()
}

const INDUSTRIES: &[&str] = &[
    "Healthcare",
    "Manufacturing",
    "Technology",
    "Finance",
    "Retail",
    "Education",
    "Construction",
    "Legal",
    "Hospitality",
];
const ACCOUNT_TYPES: &[&str] = &[
    "Customer - Direct",
    "Customer - Channel",
    "Prospect",
    "Partner",
    "Other",
];
const STAGES: &[(&str, f64, bool, bool, &str)] = &[
    ("Prospecting", 10.0, false, false, "Pipeline"),
    ("Qualification", 10.0, false, false, "Pipeline"),
    ("Needs Analysis", 20.0, false, false, "Pipeline"),
    ("Proposal/Price Quote", 75.0, false, false, "Best Case"),
    ("Negotiation/Review", 90.0, false, false, "Commit"),
    ("Closed Won", 100.0, true, true, "Closed"),
    ("Closed Lost", 0.0, true, false, "Omitted"),
];
const OPP_TYPES: &[&str] = &["New Customer", "Existing Customer - Upgrade", "Renewal"];
const LEAD_SOURCES: &[&str] = &[
    "Web",
    "Phone Inquiry",
    "Partner Referral",
    "Trade Show",
    "Other",
];
const CASE_STATUSES: &[(&str, bool)] = &[
    ("New", false),
    ("Working", false),
    ("Escalated", false),
    ("On Hold", false),
    ("Closed", true),
    ("Closed", true),
];
const CASE_PRIORITIES: &[&str] = &["Low", "Medium", "High", "Critical"];
const CASE_ORIGINS: &[&str] = &["Phone", "Email", "Web"];
const CASE_TYPES: &[&str] = &["Problem", "Question", "Feature Request"];
const CASE_STEPS: &[&str] = &[
    "Steps: rebooted, cleared cache, \"still failing\".",
    "Customer says: it worked yesterday, then stopped.\nAttached logs, screenshots.",
    "Reported via portal; see thread #4411, replies 2, 5 and 7.",
    "Line one.\r\nLine two, with a comma.",
    "",
];
const LEAD_STATUSES: &[&str] = &[
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
];
const RATINGS: &[&str] = &["Hot", "Warm", "Cold"];
const COUNTRIES: &[&str] = &["USA", "United States", "US"];

/// Renders values of one sObject's records for one org.
pub(crate) struct Renderer<'a> {
    pub(crate) keys: &'a OrgKeys,
    pub(crate) sobject: SObject,
}

/// The audit times of one record as it is now.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Times {
    pub(crate) created: i64,
    pub(crate) modified: i64,
    pub(crate) modstamp: i64,
}

impl Renderer<'_> {
    fn h(&self, i: u64, field: u64) -> u64 {
        hash(self.keys.table_seed(self.sobject), i, field)
    }

    fn company(&self, h: u64) -> String {
        let (a, _) = words::pick(words::NAME_A, h);
        format!(
            "{a} {} {}",
            words::pick(words::NAME_B, h >> 12),
            words::pick(words::SUFFIXES, h >> 24)
        )
    }

    fn person(&self, h: u64) -> (&'static str, &'static str) {
        (
            words::pick(words::FIRST_NAMES, h),
            words::pick(words::LAST_NAMES, h >> 16),
        )
    }

    fn email(first: &str, last: &str, h: u64) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase()
        };
        format!(
            "{}.{}@{}.example.com",
            clean(first),
            clean(last),
            words::pick(&["mail", "corp", "contoso", "fabrikam"], h)
        )
    }

    fn phone(h: u64) -> String {
        format!(
            "({:03}) {:03}-{:04}",
            200 + h % 700,
            (h >> 10) % 1000,
            (h >> 20) % 10_000
        )
    }

    fn reference(&self, target: SObject, h: u64) -> Val {
        let n = self.keys.counts.get(target);
        if n == 0 {
            return Val::Null;
        }
        Val::Str(self.keys.record_id(target, h % n))
    }

    /// The owner (a user index) of record `i`.
    pub(crate) fn owner(&self, i: u64) -> u64 {
        self.h(i, 40) % OrgKeys::USERS
    }

    /// The value of direct field `field` (canonical name) of record `i`.
    pub(crate) fn value(&self, i: u64, field: &str, t: Times) -> Val {
        let h = self.h(i, fnv1a(field.as_bytes()));
        match field {
            "Id" => return Val::Str(self.keys.record_id(self.sobject, i)),
            "IsDeleted" => return Val::Bool(false),
            "OwnerId" => return Val::Str(self.keys.user_id(self.owner(i))),
            "CreatedById" => return Val::Str(self.keys.user_id(self.h(i, 41) % OrgKeys::USERS)),
            "LastModifiedById" => {
                return Val::Str(self.keys.user_id(self.h(i, 42) % OrgKeys::USERS));
            }
            "CreatedDate" => return Val::DateTime(t.created),
            "LastModifiedDate" => return Val::DateTime(t.modified),
            "SystemModstamp" => return Val::DateTime(t.modstamp),
            _ => {}
        }
        let person = self.person(self.h(i, 50));
        match (self.sobject, field) {
            (SObject::Account, "Name") => Val::Str(self.company(self.h(i, 51))),
            (SObject::Account, "Type") => Val::Str(words::pick(ACCOUNT_TYPES, h).into()),
            (SObject::Account | SObject::Lead, "Industry") => {
                if h.is_multiple_of(7) {
                    Val::Null
                } else {
                    Val::Str(words::pick(INDUSTRIES, h >> 3).into())
                }
            }
            (SObject::Account | SObject::Lead, "AnnualRevenue") => {
                if h.is_multiple_of(5) {
                    Val::Null
                } else {
                    Val::Num(((h >> 4) % 5_000) as f64 * 10_000.0)
                }
            }
            (SObject::Account | SObject::Lead, "NumberOfEmployees") => {
                Val::Int(1 + ((h >> 4) % 2_500) as i64)
            }
            (SObject::Account, "BillingCity") | (SObject::Contact, "MailingCity") => {
                Val::Str(words::pick(words::CITIES, h).0.into())
            }
            (SObject::Account, "BillingState") => Val::Str(words::pick(words::CITIES, h).1.into()),
            (SObject::Account, "BillingCountry") => Val::Str(words::pick(COUNTRIES, h).into()),
            (_, "Phone") => Val::Str(Self::phone(h)),
            (SObject::Account, "Website") => Val::Str(format!(
                "https://www.{}.example.com",
                words::pick(words::NAME_B, h).to_ascii_lowercase()
            )),
            (SObject::Account, "Description") => {
                if h.is_multiple_of(3) {
                    Val::Null
                } else {
                    Val::Str(format!(
                        "{}, {}; account since {}",
                        words::pick(words::SUMMARIES, h >> 2),
                        words::pick(words::TOPICS, h >> 9),
                        date(t.created.div_euclid(DAY))
                    ))
                }
            }
            (SObject::Contact | SObject::Lead, "FirstName") => Val::Str(person.0.into()),
            (SObject::Contact | SObject::Lead, "LastName") => Val::Str(person.1.into()),
            (SObject::Contact | SObject::Lead, "Name") => {
                Val::Str(format!("{} {}", person.0, person.1))
            }
            (SObject::Contact | SObject::Lead, "Email") => {
                Val::Str(Self::email(person.0, person.1, h))
            }
            (SObject::Contact | SObject::Lead, "Title") => {
                Val::Str(words::pick(words::TITLES, h).into())
            }
            (SObject::Contact | SObject::Opportunity | SObject::Case, "AccountId") => {
                self.reference(SObject::Account, h)
            }
            (_, "LeadSource") => Val::Str(words::pick(LEAD_SOURCES, h).into()),
            (SObject::Contact, "HasOptedOutOfEmail") => Val::Bool(h.is_multiple_of(9)),
            (SObject::Opportunity, "Name") => Val::Str(format!(
                "{} - {}",
                self.company(self.h(i, 51)),
                words::pick(OPP_TYPES, h)
            )),
            (SObject::Opportunity, _) => {
                let (stage, prob, closed, won, forecast) = words::pick(STAGES, self.h(i, 60));
                match field {
                    "StageName" => Val::Str(stage.into()),
                    "Probability" => Val::Num(prob),
                    "IsClosed" => Val::Bool(closed),
                    "IsWon" => Val::Bool(won),
                    "ForecastCategory" => Val::Str(forecast.into()),
                    "Amount" => Val::Num(((h >> 3) % 2_000) as f64 * 250.0 + 0.5 * (h % 2) as f64),
                    "CloseDate" => Val::Date(t.created.div_euclid(DAY) + (h % 120) as i64),
                    "Type" => Val::Str(words::pick(OPP_TYPES, h).into()),
                    _ => Val::Null,
                }
            }
            (SObject::Case, _) => {
                let (status, closed) = words::pick(CASE_STATUSES, self.h(i, 61));
                match field {
                    "CaseNumber" => Val::Str(format!("{:08}", 1_000 + i)),
                    "Subject" => Val::Str(words::pick(words::SUMMARIES, h).into()),
                    "Description" => {
                        let steps = words::pick(CASE_STEPS, h >> 5);
                        if steps.is_empty() {
                            Val::Null
                        } else {
                            Val::Str(format!("{}\n{steps}", words::pick(words::SUMMARIES, h)))
                        }
                    }
                    "Status" => Val::Str(status.into()),
                    "IsClosed" => Val::Bool(closed),
                    "ClosedDate" => {
                        if closed {
                            Val::DateTime(t.modified)
                        } else {
                            Val::Null
                        }
                    }
                    "IsEscalated" => Val::Bool(status == "Escalated"),
                    "Priority" => Val::Str(words::pick(CASE_PRIORITIES, h).into()),
                    "Origin" => Val::Str(words::pick(CASE_ORIGINS, h).into()),
                    "Type" => Val::Str(words::pick(CASE_TYPES, h).into()),
                    "ContactId" => self.reference(SObject::Contact, h),
                    _ => Val::Null,
                }
            }
            (SObject::Lead, _) => {
                let status = words::pick(LEAD_STATUSES, self.h(i, 62));
                let converted = status == "Closed - Converted";
                match field {
                    "Company" => Val::Str(self.company(self.h(i, 51))),
                    "Status" => Val::Str(status.into()),
                    "Rating" => Val::Str(words::pick(RATINGS, h).into()),
                    "IsConverted" => Val::Bool(converted),
                    "ConvertedDate" => {
                        if converted {
                            Val::Date(t.modified.div_euclid(DAY))
                        } else {
                            Val::Null
                        }
                    }
                    _ => Val::Null,
                }
            }
            _ => Val::Null,
        }
    }

    /// The value of `Owner.<field>` of record `i`.
    pub(crate) fn owner_value(&self, i: u64, field: &str) -> Val {
        let k = self.owner(i);
        match field {
            "Id" => Val::Str(self.keys.user_id(k)),
            "Name" => Val::Str(self.keys.user_name(k)),
            "Email" => {
                let name = self.keys.user_name(k);
                let (first, last) = name.split_once(' ').unwrap_or((&name, ""));
                Val::Str(Self::email(first, last, k))
            }
            _ => Val::Null,
        }
    }
}

#[cfg(test)]
mod tests {
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
        let lo = anchor.timestamp() - 730 * DAY;
        let mut midnights = 0;
        let mut ties = 0;
        for i in 0..8000 {
            let (c, m, s) = (a.created[i], a.modified[i], a.modstamp[i]);
            assert!(c <= m && m <= s, "record {i}: {c} {m} {s}");
            assert!(
                lo <= s && s < anchor.timestamp(),
                "record {i} outside history"
            );
            midnights += usize::from(s % DAY == 0);
            ties += usize::from(i > 0 && s == a.modstamp[i - 1]);
        }
        assert!(midnights > 300, "{midnights} records on a midnight");
        assert!(
            ties > 200,
            "{ties} records share their second with the previous one"
        );
        assert_eq!(audit_times(42, 8000, anchor, 730).modstamp, a.modstamp);
    }

    #[test]
    fn values_render_as_rest_json_and_bulk_csv() {
        assert_eq!(rest_datetime(1_369_082_972), "2013-05-20T20:49:32.000+0000");
        assert_eq!(bulk_datetime(1_672_531_200), "2023-01-01T00:00:00.000Z");
        let mut out = Vec::new();
        Val::Num(350_000.0).write_json(&mut out);
        assert_eq!(out, b"350000.0");
        assert_eq!(Val::Date(19_358).csv_text().as_deref(), Some("2023-01-01"));
        assert_eq!(Val::Null.csv_text(), None);
    }
}
