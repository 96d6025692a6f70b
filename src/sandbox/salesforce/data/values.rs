//! Field values of the synthetic records: what each field of each sObject holds, and how a
//! value is written in REST JSON and in Bulk API CSV.

use super::*;

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
pub(crate) fn rest_datetime(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string())
        .unwrap_or_default()
}

/// `2023-01-01T00:00:00.000Z`, as Bulk API 2.0 CSV shows datetimes.
pub(crate) fn bulk_datetime(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
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

/// The audit times of one record as it is now, in epoch milliseconds.
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
        if let Some(v) = self.system_value(i, field, t) {
            return v;
        }
        let h = self.h(i, fnv1a(field.as_bytes()));
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
                        date(t.created.div_euclid(DAY * 1000))
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
            (SObject::Opportunity, _) => self.opportunity_value(i, field, h, t),
            (SObject::Case, _) => self.case_value(i, field, h, t),
            (SObject::Lead, _) => self.lead_value(i, field, h, t),
            _ => Val::Null,
        }
    }

    /// The fields every sObject has: id, deletion flag, owner and the audit fields.
    fn system_value(&self, i: u64, field: &str, t: Times) -> Option<Val> {
        Some(match field {
            "Id" => Val::Str(self.keys.record_id(self.sobject, i)),
            "IsDeleted" => Val::Bool(false),
            "OwnerId" => Val::Str(self.keys.user_id(self.owner(i))),
            "CreatedById" => Val::Str(self.keys.user_id(self.h(i, 41) % OrgKeys::USERS)),
            "LastModifiedById" => Val::Str(self.keys.user_id(self.h(i, 42) % OrgKeys::USERS)),
            "CreatedDate" => Val::DateTime(t.created),
            "LastModifiedDate" => Val::DateTime(t.modified),
            "SystemModstamp" => Val::DateTime(t.modstamp),
            _ => return None,
        })
    }

    /// An Opportunity's own fields, `h` drawn for `field`: its stage decides the rest.
    fn opportunity_value(&self, i: u64, field: &str, h: u64, t: Times) -> Val {
        let (stage, prob, closed, won, forecast) = words::pick(STAGES, self.h(i, 60));
        match field {
            "StageName" => Val::Str(stage.into()),
            "Probability" => Val::Num(prob),
            "IsClosed" => Val::Bool(closed),
            "IsWon" => Val::Bool(won),
            "ForecastCategory" => Val::Str(forecast.into()),
            "Amount" => Val::Num(((h >> 3) % 2_000) as f64 * 250.0 + 0.5 * (h % 2) as f64),
            "CloseDate" => Val::Date(t.created.div_euclid(DAY * 1000) + (h % 120) as i64),
            "Type" => Val::Str(words::pick(OPP_TYPES, h).into()),
            _ => Val::Null,
        }
    }

    /// A Case's own fields, `h` drawn for `field`: its status decides whether it is closed.
    fn case_value(&self, i: u64, field: &str, h: u64, t: Times) -> Val {
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

    /// A Lead's own fields, `h` drawn for `field`: its status decides conversion.
    fn lead_value(&self, i: u64, field: &str, h: u64, t: Times) -> Val {
        let status = words::pick(LEAD_STATUSES, self.h(i, 62));
        let converted = status == "Closed - Converted";
        match field {
            "Company" => Val::Str(self.company(self.h(i, 51))),
            "Status" => Val::Str(status.into()),
            "Rating" => Val::Str(words::pick(RATINGS, h).into()),
            "IsConverted" => Val::Bool(converted),
            "ConvertedDate" => {
                if converted {
                    Val::Date(t.modified.div_euclid(DAY * 1000))
                } else {
                    Val::Null
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
