//! Word lists and the fixed prose corpus that synthetic names and texts are drawn from.

use std::sync::OnceLock;

use super::data::hash;

pub(crate) fn pick<T: Copy>(list: &[T], h: u64) -> T {
    list[(h % list.len() as u64) as usize]
}

pub(crate) const SUMMARIES: &[&str] = &[
    "Printer offline on 3rd floor",
    "Cannot connect to VPN from home",
    "Outlook keeps asking for password",
    "New hire laptop setup",
    "User can't open \"Q3 Report.xlsx\"",
    "Mapped drive \\\\fileserver\\share missing",
    "Slow Wi-Fi in conference room",
    "Backup job failed overnight",
    "Firewall firmware update",
    "Phishing email reported by staff",
    "Replace failing hard drive",
    "Teams audio drops during calls",
    "Request access to finance folder",
    "Server disk space at 95%",
    "Install Adobe Acrobat Pro",
    "Password reset for café kiosk",
    "Monitor flickering at reception",
    "License renewal for antivirus",
    "Email bouncing from partner domain",
    "Quarterly patching window",
];
pub(crate) const TOPICS: &[&str] = &[
    "urgent",
    "follow-up",
    "recurring",
    "after hours",
    "site visit",
    "remote",
    "escalated",
    "vendor case open",
    "awaiting parts",
    "scheduled",
];
pub(crate) const BOARDS: &[(i64, &str)] = &[
    (1, "Help Desk"),
    (2, "Network Operations"),
    (3, "Projects"),
    (4, "Onboarding"),
    (5, "Security"),
];
pub(crate) const OPEN_STATUSES: &[(i64, &str)] = &[
    (10, "New"),
    (11, "In Progress"),
    (12, "Waiting on Customer"),
    (13, "Scheduled"),
];
pub(crate) const CLOSED_STATUSES: &[(i64, &str)] = &[(14, "Resolved"), (15, "Closed")];
pub(crate) const TYPES: &[(i64, &str)] = &[
    (20, "Incident"),
    (21, "Service Request"),
    (22, "Problem"),
    (23, "Change"),
];
pub(crate) const PRIORITIES: &[(i64, &str)] = &[
    (1, "Priority 1 - Critical"),
    (2, "Priority 2 - High"),
    (3, "Priority 3 - Medium"),
    (4, "Priority 4 - Low"),
];
pub(crate) const LEVELS: &[&str] = &["Low", "Medium", "High"];
pub(crate) const TEAMS: &[(i64, &str)] = &[(30, "Tier 1"), (31, "Tier 2"), (32, "Field Services")];
pub(crate) const MEMBERS: &[&str] = &[
    "jsmith",
    "akumar",
    "mgarcia",
    "lchen",
    "bwilliams",
    "opatel",
    "tnguyen",
    "rjohnson",
    "sbrown",
    "dmiller",
    "kdavis",
    "eobrien",
    "fmuller",
    "hkim",
    "iwilson",
    "zmoore",
];
pub(crate) const NAME_A: &[(&str, &str)] = &[
    ("Blue", "Blue"),
    ("Northern", "Northern"),
    ("Café", "Cafe"),
    ("O'Neil", "ONeil"),
    ("\"Zenith\"", "Zenith"),
    ("Summit", "Summit"),
    ("Back\\Slash", "BackSlash"),
    ("Golden", "Golden"),
    ("Riverside", "Riverside"),
    ("Pacific", "Pacific"),
    ("Granite", "Granite"),
    ("Evergreen", "Evergreen"),
];
pub(crate) const NAME_B: &[&str] = &[
    "Dental",
    "Logistics",
    "Legal",
    "Realty",
    "Manufacturing",
    "Clinic",
    "Bakery",
    "Foods",
    "Engineering",
    "Accounting",
    "Motors",
    "Studios",
];
pub(crate) const SUFFIXES: &[&str] = &["LLC", "Inc.", "& Sons", "Group", "Partners", "Co."];
pub(crate) const STREETS: &[&str] = &[
    "Main", "Oak", "Maple", "Cedar", "Elm", "Market", "Harbor", "Lake",
];
pub(crate) const STREET_TYPES: &[&str] = &["St", "Ave", "Blvd", "Rd", "Way"];
pub(crate) const CITIES: &[(&str, &str, &str)] = &[
    ("Tampa", "FL", "336"),
    ("Austin", "TX", "787"),
    ("Denver", "CO", "802"),
    ("Portland", "OR", "972"),
    ("Columbus", "OH", "432"),
    ("Raleigh", "NC", "276"),
    ("Boise", "ID", "837"),
    ("Albany", "NY", "122"),
];
pub(crate) const FIRST_NAMES: &[&str] = &[
    "Alice", "Bob", "Carmen", "Dmitri", "Zoë", "Farah", "Gus", "Hana", "Ivan", "José", "Kiri",
    "Liam", "Maya", "Noor", "Oscar", "Priya",
];
pub(crate) const LAST_NAMES: &[&str] = &[
    "Smith", "O'Brien", "Müller", "García", "Chen", "Okafor", "Kowalski", "Nguyen", "Patel",
    "Rossi", "Silva", "Tanaka", "Johnson", "Dubois",
];
pub(crate) const TITLES: &[&str] = &[
    "Office Manager",
    "CFO",
    "Owner",
    "IT Coordinator",
    "Receptionist",
    "Operations Lead",
    "Practice Manager",
    "Controller",
];
pub(crate) const BILLABLE: &[&str] = &["Billable", "DoNotBill", "NoCharge", "NoDefault"];
pub(crate) const WORK_TYPES: &[(i64, &str)] =
    &[(1, "Remote Support"), (2, "Onsite"), (3, "After Hours")];
pub(crate) const WORDS: &[&str] = &[
    "the",
    "user",
    "reports",
    "that",
    "server",
    "printer",
    "network",
    "switch",
    "router",
    "firewall",
    "laptop",
    "desktop",
    "monitor",
    "keyboard",
    "mailbox",
    "calendar",
    "license",
    "backup",
    "restore",
    "password",
    "account",
    "locked",
    "after",
    "update",
    "windows",
    "driver",
    "error",
    "message",
    "shows",
    "when",
    "opening",
    "application",
    "again",
    "restarted",
    "service",
    "checked",
    "logs",
    "found",
    "timeout",
    "connection",
    "remote",
    "session",
    "vpn",
    "client",
    "office",
    "branch",
    "site",
    "ticket",
    "escalated",
    "vendor",
    "replaced",
    "cable",
    "port",
    "configured",
    "policy",
    "group",
    "access",
    "share",
    "folder",
    "permissions",
    "granted",
    "scheduled",
    "maintenance",
    "window",
    "tonight",
    "confirmed",
    "with",
    "customer",
    "working",
    "now",
    "please",
    "advise",
    "if",
    "issue",
    "returns",
    "and",
    "or",
    "for",
    "on",
    "in",
    "to",
    "of",
    "was",
    "is",
    "not",
    "slow",
    "intermittent",
    "since",
    "yesterday",
    "morning",
    "staff",
    "cannot",
    "print",
    "scan",
    "email",
    "attachments",
    "disk",
    "space",
    "low",
    "cleared",
    "temp",
    "files",
    "patched",
    "rebooted",
    "verified",
    "phone",
    "system",
    "voicemail",
    "wireless",
    "access-point",
    "signal",
    "weak",
    "conference",
    "room",
    "antivirus",
    "quarantined",
    "file",
    "database",
    "query",
    "slow",
    "migrated",
    "cloud",
    "storage",
    "quota",
    "exceeded",
    "certificate",
    "expired",
    "renewed",
    "dns",
    "record",
    "updated",
    "propagation",
];

/// A long, fixed text made of `WORDS`, stored pre-escaped, with the offsets where sentences start.
struct Corpus {
    text: Vec<u8>,
    /// Offsets where sentences start, plus the text length.
    starts: Vec<u32>,
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut text = Vec::with_capacity(140_000);
        let mut starts = Vec::with_capacity(2_000);
        let mut state = 0x5eed_u64;
        let mut next = || {
            state = state.wrapping_add(1);
            hash(0xC0FFEE, state, 0)
        };
        while text.len() < 128 * 1024 {
            let sentences = 2 + next() % 4;
            for _ in 0..sentences {
                starts.push(text.len() as u32);
                let words = 6 + next() % 12;
                for w in 0..words {
                    let word = pick(WORDS, next());
                    if w == 0 {
                        text.push(word.as_bytes()[0].to_ascii_uppercase());
                        text.extend_from_slice(&word.as_bytes()[1..]);
                    } else {
                        text.extend_from_slice(word.as_bytes());
                    }
                    text.push(b' ');
                }
                text.pop();
                text.extend_from_slice(b". ");
            }
            text.pop();
            text.extend_from_slice(b"\\n\\n");
        }
        starts.push(text.len() as u32);
        Corpus { text, starts }
    })
}

/// Appends (escaped, unquoted) whole sentences of corpus text, at least `len` bytes.
pub(crate) fn prose(out: &mut Vec<u8>, h: u64, len: usize) {
    let c = corpus();
    let last_start = c.text.len().saturating_sub(len + 64) as u32;
    let usable = c.starts.partition_point(|&s| s < last_start).max(1);
    let start = c.starts[(h % usable as u64) as usize] as usize;
    let end_pos = c.starts.partition_point(|&s| (s as usize) < start + len);
    let end = c.starts[end_pos.min(c.starts.len() - 1)] as usize;
    let mut slice = &c.text[start..end];
    while let Some(rest) = slice
        .strip_suffix(b" ")
        .or_else(|| slice.strip_suffix(b"\\n"))
    {
        slice = rest;
    }
    out.extend_from_slice(slice);
}
