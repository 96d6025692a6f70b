//! Renders one synthetic ConnectWise record as JSON, straight into a byte buffer.
//!
//! Every field is a pure function of (tenant seed, table, index), so the same request
//! always yields byte-identical JSON. Records carry every column declared in
//! `mappings/endpoints/connectwise.json` plus a few undeclared ones, as the real API does.

use super::data::{DAY, Generator, ID_BASE, Table, hash};
use super::json::{escaped, int, quarters, raw, string, string_parts, timestamp};
use super::words::{
    BILLABLE, BOARDS, CITIES, CLOSED_STATUSES, FIRST_NAMES, LAST_NAMES, LEVELS, MEMBERS, NAME_A,
    NAME_B, OPEN_STATUSES, PRIORITIES, STREET_TYPES, STREETS, SUFFIXES, SUMMARIES, TEAMS, TITLES,
    TOPICS, TYPES, WORK_TYPES, pick, prose,
};

/// Host used inside `_info.*_href` links; fixed so rendering never depends on the request.
const HREF_BASE: &str = "https://sandbox.connectwise.invalid/v4_6_release/apis/3.0";

// Field tags (see `data::hash`); 1 and 2 are taken by the generator.
const F_SUMMARY: u64 = 10;
const F_TOPIC: u64 = 11;
const F_RECORD_TYPE: u64 = 12;
const F_BOARD: u64 = 13;
const F_STATUS: u64 = 14;
const F_CONTACT: u64 = 15;
const F_TYPE: u64 = 16;
const F_PRIORITY: u64 = 17;
const F_SEVERITY: u64 = 18;
const F_TEAM: u64 = 19;
const F_OWNER: u64 = 20;
const F_CLOSED: u64 = 21;
const F_REQUIRED: u64 = 22;
const F_BUDGET: u64 = 23;
const F_ACTUAL: u64 = 24;
const F_TEXT_START: u64 = 25;
const F_TEXT_LEN: u64 = 26;
const F_CUSTOM: u64 = 27;
const F_UPDATED_BY: u64 = 28;
const F_ENTERED_BY: u64 = 29;
const F_COMPANY: u64 = 30;
const F_NAME_A: u64 = 31;
const F_NAME_B: u64 = 32;
const F_SUFFIX: u64 = 33;
const F_TICKET: u64 = 34;
const F_MEMBER: u64 = 35;
const F_BILLABLE: u64 = 36;
const F_GAP: u64 = 37;
const F_WORK_TYPE: u64 = 38;
const F_STREET: u64 = 39;
const F_CITY: u64 = 40;
const F_PHONE: u64 = 41;
const F_DELETED: u64 = 42;
const F_ACQUIRED: u64 = 43;
const F_FIRST: u64 = 44;
const F_LAST: u64 = 45;
const F_TITLE: u64 = 46;
const F_INACTIVE: u64 = 47;

fn id_name(out: &mut Vec<u8>, key: &str, (id, name): (i64, &str)) {
    raw(out, ",\"");
    raw(out, key);
    raw(out, "\":{\"id\":");
    int(out, id);
    raw(out, ",\"name\":");
    string(out, name);
    out.push(b'}');
}

fn member(h: u64) -> &'static str {
    pick(MEMBERS, h)
}

/// References between tables: a ticket's contact, a contact's company, a company's name.
struct Refs<'a>(&'a Generator);

impl Refs<'_> {
    fn seed(&self, t: Table) -> u64 {
        self.0.seeds[t.index()]
    }

    fn company_of_contact(&self, contact: u64) -> u64 {
        hash(self.seed(Table::Contacts), contact, F_COMPANY) % self.0.counts.companies.max(1)
    }

    fn contact_of_ticket(&self, ticket: u64) -> u64 {
        hash(self.seed(Table::Tickets), ticket, F_CONTACT) % self.0.counts.contacts.max(1)
    }

    fn company_name(&self, company: u64, out: &mut Vec<u8>) {
        let s = self.seed(Table::Companies);
        let (a, _) = pick(NAME_A, hash(s, company, F_NAME_A));
        let b = pick(NAME_B, hash(s, company, F_NAME_B));
        let suffix = pick(SUFFIXES, hash(s, company, F_SUFFIX));
        string_parts(out, &[a, " ", b, " ", suffix]);
    }

    fn company_identifier(&self, company: u64, out: &mut Vec<u8>) {
        let s = self.seed(Table::Companies);
        let (_, a) = pick(NAME_A, hash(s, company, F_NAME_A));
        let b = pick(NAME_B, hash(s, company, F_NAME_B));
        out.push(b'"');
        raw(out, a);
        raw(out, b);
        int(out, ID_BASE + company as i64);
        out.push(b'"');
    }

    fn contact_name(&self, contact: u64, out: &mut Vec<u8>) {
        let s = self.seed(Table::Contacts);
        string_parts(
            out,
            &[
                pick(FIRST_NAMES, hash(s, contact, F_FIRST)),
                " ",
                pick(LAST_NAMES, hash(s, contact, F_LAST)),
            ],
        );
    }

    /// `,"company":{"id":..,"identifier":..,"name":..,"_info":{..}}` (name and href optional).
    fn company(&self, company: u64, with_name: bool, with_href: bool, out: &mut Vec<u8>) {
        raw(out, ",\"company\":{\"id\":");
        int(out, ID_BASE + company as i64);
        raw(out, ",\"identifier\":");
        self.company_identifier(company, out);
        if with_name {
            raw(out, ",\"name\":");
            self.company_name(company, out);
        }
        if with_href {
            raw(out, ",\"_info\":{\"company_href\":\"");
            raw(out, HREF_BASE);
            raw(out, "/company/companies/");
            int(out, ID_BASE + company as i64);
            raw(out, "\"}");
        }
        out.push(b'}');
    }
}

/// Appends record `i` (with its indexed `lastUpdated`) of `g`'s table as one JSON object.
pub(crate) fn render(g: &Generator, i: u64, last_updated: i64, out: &mut Vec<u8>) {
    match g.table {
        Table::Tickets => ticket(g, i, last_updated, out),
        Table::TimeEntries => time_entry(g, i, last_updated, out),
        Table::Companies => company(g, i, last_updated, out),
        Table::Contacts => contact(g, i, last_updated, out),
    }
}

fn ticket(g: &Generator, i: u64, lu: i64, out: &mut Vec<u8>) {
    let id = ID_BASE + i as i64;
    let de = g.date_entered(i);
    let h = |f| g.h(i, f);
    let summary = pick(SUMMARIES, h(F_SUMMARY));
    let closed = h(F_CLOSED) % 10 < 6;

    raw(out, "{\"id\":");
    int(out, id);
    ticket_heading(g, i, lu, summary, out);
    ticket_parties(g, i, closed, out);
    ticket_schedule(g, i, lu, closed, out);
    raw(out, ",\"initialDescription\":\"");
    escaped(out, summary);
    raw(out, ".\\n\\n");
    prose(out, h(F_TEXT_START), 480 + (h(F_TEXT_LEN) % 600) as usize);
    raw(out, "\",");
    ticket_custom_fields(h(F_CUSTOM), out);
    raw(out, ",");
    info(out, lu, h(F_UPDATED_BY), de, Some(h(F_ENTERED_BY)));
    raw(out, ",\"activities_href\":\"");
    raw(out, HREF_BASE);
    raw(out, "/sales/activities?conditions=ticket/id=");
    int(out, id);
    raw(out, "\",\"notes_href\":\"");
    raw(out, HREF_BASE);
    raw(out, "/service/tickets/");
    int(out, id);
    raw(out, "/notes\"}}");
}

/// `"_info":{"lastUpdated":…,"updatedBy":…,"dateEntered":…[,"enteredBy":…]`, the object
/// left open. `updated_by` and `entered_by` are draws for `member`.
fn info(out: &mut Vec<u8>, lu: i64, updated_by: u64, de: i64, entered_by: Option<u64>) {
    raw(out, "\"_info\":{\"lastUpdated\":");
    timestamp(out, lu);
    raw(out, ",\"updatedBy\":");
    string(out, member(updated_by));
    raw(out, ",\"dateEntered\":");
    timestamp(out, de);
    if let Some(by) = entered_by {
        raw(out, ",\"enteredBy\":");
        string(out, member(by));
    }
}

/// A ticket's summary, record type and board.
fn ticket_heading(g: &Generator, i: u64, lu: i64, summary: &str, out: &mut Vec<u8>) {
    let h = |f| g.h(i, f);
    raw(out, ",\"summary\":");
    // A version edited after the history's end (a touched or edited record) reads
    // differently from every earlier one, as a real edit would.
    let edit = (lu > g.last_second()).then(|| format!(" [edited +{}s]", lu - g.last_second()));
    string_parts(
        out,
        &[
            summary,
            " (",
            pick(TOPICS, h(F_TOPIC)),
            ")",
            edit.as_deref().unwrap_or(""),
        ],
    );
    raw(out, ",\"recordType\":");
    raw(
        out,
        if h(F_RECORD_TYPE) % 8 == 0 {
            "\"ProjectTicket\""
        } else {
            "\"ServiceTicket\""
        },
    );
    let (board_id, board_name) = pick(BOARDS, h(F_BOARD));
    raw(out, ",\"board\":{\"id\":");
    int(out, board_id);
    raw(out, ",\"name\":");
    string(out, board_name);
    raw(out, ",\"_info\":{\"board_href\":\"");
    raw(out, HREF_BASE);
    raw(out, "/service/boards/");
    int(out, board_id);
    raw(out, "\"}}");
}

/// A ticket's status, company, site and contact, its classification and who works on it.
fn ticket_parties(g: &Generator, i: u64, closed: bool, out: &mut Vec<u8>) {
    let h = |f| g.h(i, f);
    let refs = Refs(g);
    let statuses = if closed {
        CLOSED_STATUSES
    } else {
        OPEN_STATUSES
    };
    id_name(out, "status", pick(statuses, h(F_STATUS)));
    let contact = refs.contact_of_ticket(i);
    let company = refs.company_of_contact(contact);
    refs.company(company, true, true, out);
    raw(out, ",\"site\":{\"id\":");
    int(out, 5000 + company as i64);
    raw(out, ",\"name\":\"Main\"}");
    raw(out, ",\"contact\":{\"id\":");
    int(out, ID_BASE + contact as i64);
    raw(out, ",\"name\":");
    refs.contact_name(contact, out);
    raw(out, "}");
    id_name(out, "type", pick(TYPES, h(F_TYPE)));
    id_name(out, "priority", pick(PRIORITIES, h(F_PRIORITY)));
    let sev = h(F_SEVERITY);
    raw(out, ",\"severity\":");
    string(out, pick(LEVELS, sev));
    raw(out, ",\"impact\":");
    string(out, pick(LEVELS, sev >> 8));
    id_name(out, "team", pick(TEAMS, h(F_TEAM)));
    let owner = h(F_OWNER) % MEMBERS.len() as u64;
    raw(out, ",\"owner\":{\"id\":");
    int(out, 150 + owner as i64);
    raw(out, ",\"identifier\":");
    string(out, MEMBERS[owner as usize]);
    raw(out, "}");
}

/// When a ticket closed and is due, and its budgeted and actual hours.
fn ticket_schedule(g: &Generator, i: u64, lu: i64, closed: bool, out: &mut Vec<u8>) {
    let h = |f| g.h(i, f);
    let de = g.date_entered(i);
    raw(out, ",\"closedFlag\":");
    if closed {
        raw(out, "true,\"closedDate\":");
        let frac = h(F_CLOSED) >> 8;
        timestamp(out, de + (frac % ((lu - de) as u64 + 1)) as i64);
    } else {
        raw(out, "false,\"closedDate\":null");
    }
    raw(out, ",\"requiredDate\":");
    timestamp(out, de + DAY * (1 + (h(F_REQUIRED) % 14) as i64));
    let budget = h(F_BUDGET) % 40;
    raw(out, ",\"budgetHours\":");
    quarters(out, budget);
    raw(out, ",\"actualHours\":");
    quarters(out, h(F_ACTUAL) % (budget + budget / 2 + 1));
}

/// `"customFields":[…]`: asset tag, billable, and an escalation level that may be unset.
fn ticket_custom_fields(custom: u64, out: &mut Vec<u8>) {
    raw(
        out,
        "\"customFields\":[{\"id\":1,\"caption\":\"Asset Tag\",\"type\":\"Text\",\"entryMethod\":\"EntryField\",\"numberOfDecimals\":0,\"value\":\"AT-",
    );
    int(out, (custom % 90_000) as i64 + 10_000);
    raw(
        out,
        "\"},{\"id\":2,\"caption\":\"Billable\",\"type\":\"Checkbox\",\"entryMethod\":\"EntryField\",\"numberOfDecimals\":0,\"value\":",
    );
    raw(
        out,
        if custom & (1 << 40) != 0 {
            "true"
        } else {
            "false"
        },
    );
    raw(
        out,
        "},{\"id\":3,\"caption\":\"Escalation Level\",\"type\":\"Number\",\"entryMethod\":\"EntryField\",\"numberOfDecimals\":0",
    );
    if custom & (1 << 41) != 0 {
        raw(out, ",\"value\":");
        int(out, ((custom >> 42) % 4) as i64);
    }
    raw(out, "}]");
}

fn time_entry(g: &Generator, i: u64, lu: i64, out: &mut Vec<u8>) {
    let id = ID_BASE + i as i64;
    let de = g.date_entered(i);
    let h = |f| g.h(i, f);
    let refs = Refs(g);
    let ticket = h(F_TICKET) % g.counts.tickets.max(1);
    let company = refs.company_of_contact(refs.contact_of_ticket(ticket));
    let hours = 1 + h(F_ACTUAL) % 32;
    let time_end = de - (h(F_GAP) % (2 * 3600)) as i64;
    let time_start = time_end - hours as i64 * 900;
    let m = h(F_MEMBER) % MEMBERS.len() as u64;

    raw(out, "{\"id\":");
    int(out, id);
    refs.company(company, false, false, out);
    raw(out, ",\"chargeToId\":");
    int(out, ID_BASE + ticket as i64);
    raw(
        out,
        ",\"chargeToType\":\"ServiceTicket\",\"member\":{\"id\":",
    );
    int(out, 150 + m as i64);
    raw(out, ",\"identifier\":");
    string(out, MEMBERS[m as usize]);
    raw(out, "},\"timeStart\":");
    timestamp(out, time_start);
    raw(out, ",\"timeEnd\":");
    timestamp(out, time_end);
    raw(out, ",\"actualHours\":");
    quarters(out, hours);
    raw(out, ",\"billableOption\":");
    string(out, pick(BILLABLE, h(F_BILLABLE)));
    id_name(out, "workType", pick(WORK_TYPES, h(F_WORK_TYPE)));
    raw(out, ",\"notes\":\"");
    prose(out, h(F_TEXT_START), 60 + (h(F_TEXT_LEN) % 160) as usize);
    raw(out, "\",");
    info(out, lu, h(F_UPDATED_BY), de, None);
    raw(out, ",\"chargeToMovedFlag\":false}}");
}

fn company(g: &Generator, i: u64, lu: i64, out: &mut Vec<u8>) {
    let id = ID_BASE + i as i64;
    let de = g.date_entered(i);
    let h = |f| g.h(i, f);
    let refs = Refs(g);
    let (city, state, zip) = pick(CITIES, h(F_CITY));
    let phone = h(F_PHONE);
    let deleted = h(F_DELETED) % 50 == 0;

    raw(out, "{\"id\":");
    int(out, id);
    raw(out, ",\"identifier\":");
    refs.company_identifier(i, out);
    raw(out, ",\"name\":");
    refs.company_name(i, out);
    if deleted {
        id_name(out, "status", (2, "Inactive"));
    } else {
        id_name(out, "status", (1, "Active"));
    }
    raw(out, ",\"addressLine1\":\"");
    int(out, 100 + (h(F_STREET) % 9800) as i64);
    raw(out, " ");
    raw(out, pick(STREETS, h(F_STREET) >> 16));
    raw(out, " ");
    raw(out, pick(STREET_TYPES, h(F_STREET) >> 32));
    raw(out, "\",\"city\":");
    string(out, city);
    raw(out, ",\"state\":");
    string(out, state);
    raw(out, ",\"zip\":\"");
    raw(out, zip);
    int(out, 10 + (phone % 90) as i64);
    raw(
        out,
        "\",\"country\":{\"id\":1,\"name\":\"United States\"},\"phoneNumber\":\"555",
    );
    int(out, 1_000_000 + (phone >> 8) as i64 % 9_000_000);
    raw(out, "\",\"faxNumber\":\"\",\"website\":\"www.company");
    int(out, id);
    raw(
        out,
        ".example.com\",\"market\":{\"id\":2,\"name\":\"Professional Services\"},\"deletedFlag\":",
    );
    raw(out, if deleted { "true" } else { "false" });
    raw(out, ",\"dateAcquired\":");
    timestamp(out, de - DAY * (h(F_ACQUIRED) % 3650) as i64);
    raw(out, ",\"types\":[{\"id\":1,\"name\":\"Client\"}]");
    raw(out, ",");
    info(out, lu, h(F_UPDATED_BY), de, Some(h(F_ENTERED_BY)));
    raw(out, ",\"contacts_href\":\"");
    raw(out, HREF_BASE);
    raw(out, "/company/contacts?conditions=company/id=");
    int(out, id);
    raw(out, "\"}}");
}

fn contact(g: &Generator, i: u64, lu: i64, out: &mut Vec<u8>) {
    let id = ID_BASE + i as i64;
    let de = g.date_entered(i);
    let h = |f| g.h(i, f);
    let refs = Refs(g);
    let company = refs.company_of_contact(i);

    raw(out, "{\"id\":");
    int(out, id);
    raw(out, ",\"firstName\":");
    string(out, pick(FIRST_NAMES, h(F_FIRST)));
    raw(out, ",\"lastName\":");
    string(out, pick(LAST_NAMES, h(F_LAST)));
    refs.company(company, true, false, out);
    raw(out, ",\"title\":");
    string(out, pick(TITLES, h(F_TITLE)));
    raw(out, ",\"inactiveFlag\":");
    raw(
        out,
        if h(F_INACTIVE) % 20 == 0 {
            "true"
        } else {
            "false"
        },
    );
    raw(out, ",\"communicationItems\":[{\"id\":");
    int(out, id * 2);
    raw(
        out,
        ",\"type\":{\"id\":1,\"name\":\"Email\"},\"value\":\"contact",
    );
    int(out, id);
    raw(out, "@company");
    int(out, ID_BASE + company as i64);
    raw(out, ".example.com\",\"defaultFlag\":true},{\"id\":");
    int(out, id * 2 + 1);
    raw(
        out,
        ",\"type\":{\"id\":2,\"name\":\"Direct\"},\"value\":\"555",
    );
    int(out, 1_000_000 + (h(F_PHONE) % 9_000_000) as i64);
    raw(out, "\",\"defaultFlag\":true}]");
    raw(out, ",\"_info\":{\"lastUpdated\":");
    timestamp(out, lu);
    raw(out, ",\"dateEntered\":");
    timestamp(out, de);
    raw(out, ",\"updatedBy\":");
    string(out, member(h(F_UPDATED_BY)));
    raw(out, "}}");
}
