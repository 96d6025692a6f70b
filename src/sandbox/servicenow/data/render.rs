//! Rendering a ServiceNow record as Table API JSON: `sysparm_fields`,
//! `sysparm_display_value` and reference links.

use super::*;

/// `sysparm_display_value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Display {
    False,
    True,
    All,
}

/// How a response renders records.
#[derive(Clone, Debug)]
pub(crate) struct RenderOpts {
    /// `sysparm_fields`; `None` = every field.
    pub(crate) fields: Option<Vec<String>>,
    pub(crate) display: Display,
    /// `Some(instance base)` when reference fields carry their `link`.
    pub(crate) links: Option<String>,
}

impl Default for RenderOpts {
    fn default() -> Self {
        RenderOpts {
            fields: None,
            display: Display::False,
            links: None,
        }
    }
}

/// Writes the members of one record object, honouring the render options.
struct W<'a> {
    out: &'a mut Vec<u8>,
    opts: &'a RenderOpts,
    first: bool,
}

impl W<'_> {
    fn wanted(&self, key: &str) -> bool {
        self.opts
            .fields
            .as_ref()
            .is_none_or(|f| f.iter().any(|x| x == key))
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        string(self.out, key);
        self.out.push(b':');
    }

    /// A plain field: a string value, whatever its type.
    fn s(&mut self, key: &str, v: &str) {
        if !self.wanted(key) {
            return;
        }
        self.key(key);
        if self.opts.display == Display::All {
            self.out.extend_from_slice(b"{\"display_value\":");
            string(self.out, v);
            self.out.extend_from_slice(b",\"value\":");
            string(self.out, v);
            self.out.push(b'}');
        } else {
            string(self.out, v);
        }
    }

    /// A field whose value is already escaped JSON string content.
    fn escaped_text(&mut self, key: &str, text: &[u8]) {
        if !self.wanted(key) {
            return;
        }
        self.key(key);
        let quoted = |out: &mut Vec<u8>| {
            out.push(b'"');
            out.extend_from_slice(text);
            out.push(b'"');
        };
        if self.opts.display == Display::All {
            self.out.extend_from_slice(b"{\"display_value\":");
            quoted(self.out);
            self.out.extend_from_slice(b",\"value\":");
            quoted(self.out);
            self.out.push(b'}');
        } else {
            quoted(self.out);
        }
    }

    /// A reference field: `sys_id` (and `link` unless excluded); empty references are `""`.
    /// A `sys_user` reference to user `j` of `g`, or an empty value.
    fn user(&mut self, g: &Gen, key: &str, j: Option<u64>) {
        match j {
            Some(j) => self.r(
                key,
                "sys_user",
                Some(g.sys_id_of(SnTable::SysUser, j)),
                || {
                    let (first, last) = g.user_names(j);
                    format!("{first} {last}")
                },
            ),
            None => self.s(key, ""),
        }
    }

    /// The `assignment_group` reference to group `group`.
    fn group(&mut self, g: &Gen, group: u64) {
        self.r(
            "assignment_group",
            "sys_user_group",
            Some(g.group_id(group)),
            || GROUPS[group as usize].to_string(),
        );
    }

    fn r(&mut self, key: &str, table: &str, id: Option<u128>, display: impl FnOnce() -> String) {
        let Some(id) = id else {
            return self.s(key, "");
        };
        if !self.wanted(key) {
            return;
        }
        let value = hex32(id);
        let link = self
            .opts
            .links
            .as_ref()
            .map(|base| format!("{base}/api/now/table/{table}/{value}"));
        self.key(key);
        let mode = self.opts.display;
        if mode == Display::False && link.is_none() {
            return string(self.out, &value);
        }
        if mode == Display::True && link.is_none() {
            return string(self.out, &display());
        }
        self.out.push(b'{');
        let mut first = true;
        let mut member = |out: &mut Vec<u8>, k: &str, v: &str| {
            if !first {
                out.push(b',');
            }
            first = false;
            string(out, k);
            out.push(b':');
            string(out, v);
        };
        if mode != Display::False {
            member(self.out, "display_value", &display());
        }
        if let Some(link) = &link {
            member(self.out, "link", link);
        }
        if mode != Display::True {
            member(self.out, "value", &value);
        }
        self.out.push(b'}');
    }
}

/// Appends `rec` of `g`'s table as one JSON object.
pub(crate) fn render(g: &Gen, rec: &Rec, opts: &RenderOpts, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut w = W {
        out,
        opts,
        first: true,
    };
    let i = u64::from(rec.i);
    let d = Draw {
        g,
        rec,
        i,
        created: g.created(i),
    };
    w.s("sys_id", &hex32(rec.sys_id));
    match g.table {
        SnTable::Incident => incident(&mut w, &d),
        SnTable::ChangeRequest => change_request(&mut w, &d),
        SnTable::Problem => problem(&mut w, &d),
        SnTable::SysUser => sys_user(&mut w, &d),
    }
    w.s("sys_created_on", &sn_time(d.created));
    w.s("sys_created_by", &g.by(d.h(F_CREATED_BY)));
    w.s("sys_updated_on", &sn_time(rec.updated));
    w.s(
        "sys_updated_by",
        &g.by(d.h(F_UPDATED_BY).wrapping_add(u64::from(rec.mod_count))),
    );
    w.s("sys_mod_count", &rec.mod_count.to_string());
    w.s("sys_domain", "global");
    w.s("sys_tags", "");
    w.out.push(b'}');
}

/// One record being rendered: where it is, its creation time and its hash draws.
struct Draw<'a> {
    g: &'a Gen,
    rec: &'a Rec,
    i: u64,
    created: i64,
}

impl Draw<'_> {
    fn h(&self, field: u64) -> u64 {
        self.g.h(self.i, field)
    }

    /// The user a draw of `field` picks, if any.
    fn user(&self, field: u64) -> Option<u64> {
        self.g.user(self.h(field))
    }

    /// The record's number: `prefix` and seven digits counted from `base`.
    fn number(&self, prefix: &str, base: u64) -> String {
        format!("{prefix}{:07}", base + self.i)
    }
}

/// `"true"` or `"false"`, as the Table API sends booleans.
fn flag(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// Impact and urgency (1 high to 3 low) and the priority they make.
fn triage(w: &mut W<'_>, d: &Draw<'_>) {
    let (impact, urgency) = (1 + d.h(F_IMPACT) % 3, 1 + d.h(F_URGENCY) % 3);
    w.s("impact", &impact.to_string());
    w.s("urgency", &urgency.to_string());
    w.s("priority", &(impact + urgency - 1).to_string());
}

fn incident(w: &mut W<'_>, d: &Draw<'_>) {
    w.s("number", &d.number("INC", 10_000));
    w.s("short_description", pick(SUMMARIES, d.h(F_SUMMARY)));
    let mut text = Vec::with_capacity(400);
    prose(&mut text, d.h(F_TEXT), 120 + (d.h(F_TEXT) % 300) as usize);
    w.escaped_text("description", &text);
    // 1 New, 2 In Progress, 3 On Hold, 6 Resolved, 7 Closed, 8 Canceled.
    let state = [1, 2, 3, 6, 7, 7, 7, 8][(d.h(F_STATE) % 8) as usize];
    let open = state <= 3;
    w.s("state", &state.to_string());
    w.s("incident_state", &state.to_string());
    w.s("active", flag(open));
    triage(w, d);
    w.s("category", pick(CATEGORIES, d.h(F_CATEGORY)));
    w.user(d.g, "caller_id", d.user(F_CALLER));
    let assigned = d
        .user(F_ASSIGNED)
        .filter(|_| !(state == 1 && d.h(F_ASSIGNED).is_multiple_of(3)));
    w.user(d.g, "assigned_to", assigned);
    w.group(d.g, d.h(F_GROUP) % GROUPS.len() as u64);
    w.user(d.g, "opened_by", d.user(F_OPENED_BY));
    w.s("opened_at", &sn_time(d.created));
    let resolved = (state >= 6 && state != 8)
        .then(|| d.created + (d.rec.updated.max(d.created) - d.created) * 2 / 3);
    w.s("resolved_at", &resolved.map(sn_time).unwrap_or_default());
    let closed = (state >= 7).then(|| d.rec.updated.max(d.created));
    w.s("closed_at", &closed.map(sn_time).unwrap_or_default());
    w.s(
        "calendar_stc",
        &resolved
            .map(|r| (r - d.created).to_string())
            .unwrap_or_default(),
    );
    w.s("reassignment_count", &(d.h(F_REASSIGN) % 5).to_string());
    w.s("made_sla", flag(!d.h(F_SLA).is_multiple_of(5)));
    w.s("sys_class_name", "incident");
}

fn change_request(w: &mut W<'_>, d: &Draw<'_>) {
    w.s("number", &d.number("CHG", 30_000));
    w.s("short_description", pick(CHANGES, d.h(F_SUMMARY)));
    w.s(
        "type",
        ["normal", "standard", "emergency"][(d.h(F_TYPE) % 3) as usize],
    );
    // -5 New, -4 Assess, -3 Authorize, -2 Scheduled, -1 Implement, 0 Review, 3 Closed, 4 Canceled.
    let state = [-5, -4, -3, -2, -1, 0, 3, 3, 3, 4][(d.h(F_STATE) % 10) as usize];
    w.s("state", &state.to_string());
    w.s("active", flag(state < 3));
    w.s("risk", &(2 + d.h(F_RISK) % 3).to_string());
    w.s("impact", &(1 + d.h(F_IMPACT) % 3).to_string());
    w.s("priority", &(1 + d.h(F_PRIORITY) % 4).to_string());
    w.s(
        "approval",
        [
            "not requested",
            "requested",
            "approved",
            "approved",
            "rejected",
        ][(d.h(F_APPROVAL) % 5) as usize],
    );
    w.user(d.g, "requested_by", d.user(F_CALLER));
    w.user(d.g, "assigned_to", d.user(F_ASSIGNED));
    w.group(d.g, d.h(F_GROUP) % GROUPS.len() as u64);
    let start = d.created + DAY + (d.h(F_START) % (14 * DAY as u64)) as i64;
    w.s("start_date", &sn_time(start));
    w.s(
        "end_date",
        &sn_time(start + 3600 * (1 + (d.h(F_START) % 8) as i64)),
    );
    let cents = d.h(F_COST) % 2_000_000;
    w.s(
        "u_estimated_cost",
        &format!("{}.{:02}", cents / 100, cents % 100),
    );
    w.s("on_hold", flag(d.h(F_STATE).is_multiple_of(13)));
    w.s("sys_class_name", "change_request");
}

fn problem(w: &mut W<'_>, d: &Draw<'_>) {
    w.s("number", &d.number("PRB", 40_000));
    w.s("short_description", pick(PROBLEMS, d.h(F_SUMMARY)));
    // 101 New, 102 Assess, 103 Root Cause Analysis, 104 Fix in Progress, 106 Resolved, 107 Closed.
    let state = [101, 102, 103, 104, 106, 107, 107][(d.h(F_STATE) % 7) as usize];
    w.s("state", &state.to_string());
    w.s("active", flag(state < 106));
    triage(w, d);
    w.user(d.g, "assigned_to", d.user(F_ASSIGNED));
    w.group(d.g, d.h(F_GROUP) % GROUPS.len() as u64);
    w.user(d.g, "opened_by", d.user(F_OPENED_BY));
    w.s("opened_at", &sn_time(d.created));
    w.s("known_error", flag(d.h(F_KNOWN).is_multiple_of(4)));
    let incidents = d.g.counts[SnTable::Incident.index()];
    let first = (incidents > 0 && !d.h(F_INCIDENT).is_multiple_of(3)).then(|| {
        d.g.sys_id_of(SnTable::Incident, d.h(F_INCIDENT) % incidents.max(1))
    });
    w.r("first_reported_by_task", "incident", first, || {
        format!("INC{:07}", 10_000 + d.h(F_INCIDENT) % incidents.max(1))
    });
    w.s("sys_class_name", "problem");
}

fn sys_user(w: &mut W<'_>, d: &Draw<'_>) {
    let (first, last) = d.g.user_names(d.i);
    let user_name = d.g.user_name(d.i);
    w.s("user_name", &user_name);
    w.s("first_name", first);
    w.s("last_name", last);
    w.s("name", &format!("{first} {last}"));
    w.s("email", &format!("{user_name}@{}", d.g.domain));
    w.s("title", pick(TITLES, d.h(F_TITLE)));
    let phone = d.h(F_PHONE);
    w.s(
        "phone",
        &format!("+1 555 {:03} {:04}", phone % 1000, (phone / 1000) % 10_000),
    );
    let active = !d.h(F_ACTIVE).is_multiple_of(10);
    w.s("active", flag(active));
    w.s(
        "locked_out",
        flag(!active && d.h(F_ACTIVE).is_multiple_of(3)),
    );
    w.s("vip", flag(d.h(F_VIP).is_multiple_of(15)));
    w.s("failed_attempts", &(d.h(F_FAILED) % 4).to_string());
    let login = (!d.h(F_LOGIN).is_multiple_of(5))
        .then(|| d.created + (d.rec.updated.max(d.created) - d.created) / 2);
    w.s("last_login_time", &login.map(sn_time).unwrap_or_default());
    w.user(
        d.g,
        "manager",
        d.g.user(d.h(F_MANAGER)).filter(|&j| j != d.i),
    );
    w.s("sys_class_name", "sys_user");
}
