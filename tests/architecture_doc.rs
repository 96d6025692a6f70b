//! ARCHITECTURE.md stays a short map that agrees with the code.
//!
//! - At most `MAX_LINES` lines.
//! - Every crate of `Cargo.toml`'s `[dependencies]` and `[dev-dependencies]` has a row in the
//!   "Dependencies and why" table, and every crate the table names is one of them.
//! - Every number the page states is read from the code. The rule: a number is a run of
//!   digits (with `.` or `,` between digit groups: `5,475`, `1.94.1`) that stands alone, that is
//!   whose neighbours are not letters, digits, `_` or `-`. Digits glued to a name are part of
//!   the name (`S3`, `SCD2`, `base64`, `EC2`, `xxh3`, `5xx`, a date such as `2024-01-31`), the
//!   ordinal of a numbered list item (`1. ` at the start of a line) is not a statement, and
//!   URLs are skipped. Each stated number must sit inside one of the phrases `checked_phrases`
//!   builds from the code's own constants (`HTTP 429` from `SourceError::from_status`, ...):
//!   the page must contain each phrase, and once they are taken out no number may remain. So
//!   changing a number on the page, or the constant in the code, fails this test.
//! - Every repository path it names (`src/...`, `tests/...`, `scripts/...`) exists.
//! - Every link of the contents list points at a heading of the page.

use std::collections::BTreeSet;
use std::path::Path;

use avesa_console::sources::SourceError;
use avesa_console::store::DynamoOptions;

const MAX_LINES: usize = 300;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn doc() -> String {
    std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md is readable")
}

fn manifest() -> toml::Table {
    std::fs::read_to_string(root().join("Cargo.toml"))
        .expect("Cargo.toml is readable")
        .parse()
        .expect("Cargo.toml parses")
}

/// The phrases that carry every number the page states, each built from the code.
fn checked_phrases() -> Vec<(&'static str, String)> {
    let rate_limit_status = (100..600)
        .find(|s| SourceError::from_status(*s, None, String::new(), None).is_rate_limited())
        .expect("some HTTP status is a rate limit");
    let progress_every = DynamoOptions::default().progress_every_chunks;
    let rust_version = manifest()["package"]["rust-version"]
        .as_str()
        .expect("package.rust-version is a string")
        .to_string();
    vec![
        (
            "the status `SourceError::from_status` takes for a rate limit",
            format!("HTTP {rate_limit_status}"),
        ),
        (
            "how often the DynamoDB store rewrites a job item's counters (DynamoOptions::default)",
            format!("every {progress_every} finished chunks"),
        ),
        (
            "Cargo.toml's package.rust-version",
            format!("Rust {rust_version}"),
        ),
    ]
}

fn glued(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The numbers `text` states, by the rule in this file's header.
fn stated_numbers(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        // A numbered list item's ordinal.
        let trimmed = line.trim_start();
        let body = match trimmed.split_once(". ") {
            Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => rest,
            _ => line,
        };
        let words: Vec<&str> = body
            .split_whitespace()
            .filter(|w| !w.contains("http://") && !w.contains("https://"))
            .collect();
        let body = words.join(" ");
        let chars: Vec<char> = body.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if !chars[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (matches!(chars[i], '.' | ',')
                        && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit())))
            {
                i += 1;
            }
            let before = start.checked_sub(1).map(|j| chars[j]);
            let after = chars.get(i).copied();
            if !glued(before) && !glued(after) {
                found.push(chars[start..i].iter().collect());
            }
        }
    }
    found
}

#[test]
fn the_page_is_short() {
    let lines = doc().lines().count();
    assert!(
        lines <= MAX_LINES,
        "ARCHITECTURE.md has {lines} lines; a ten-minute map has at most {MAX_LINES}: move detail into the modules' //! headers"
    );
}

#[test]
fn every_dependency_has_a_row_and_every_row_is_a_dependency() {
    let manifest = manifest();
    let mut deps = BTreeSet::new();
    for section in ["dependencies", "dev-dependencies"] {
        if let Some(t) = manifest.get(section).and_then(|t| t.as_table()) {
            deps.extend(t.keys().cloned());
        }
    }
    let doc = doc();
    let section = doc
        .split("\n## Dependencies and why")
        .nth(1)
        .expect("a \"Dependencies and why\" section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let mut named = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with('|')) {
        let cell = row.split('|').nth(1).unwrap_or_default();
        for word in cell.split([',', ' ']).map(|w| w.trim_matches('`').trim()) {
            if !word.is_empty() && !matches!(word, "crate" | "(dev)") && !word.starts_with("---") {
                named.insert(word.to_string());
            }
        }
    }
    let missing: Vec<_> = deps.difference(&named).collect();
    assert!(
        missing.is_empty(),
        "crates in Cargo.toml without a row in ARCHITECTURE.md's dependencies table: {missing:?}"
    );
    let stale: Vec<_> = named.difference(&deps).collect();
    assert!(
        stale.is_empty(),
        "ARCHITECTURE.md's dependencies table names crates Cargo.toml does not have: {stale:?}"
    );
}

#[test]
fn every_number_on_the_page_is_read_from_the_code() {
    let mut text = doc();
    for (what, phrase) in checked_phrases() {
        assert!(
            text.contains(&phrase),
            "ARCHITECTURE.md should say \"{phrase}\" ({what}); the code and the page disagree"
        );
        text = text.replace(&phrase, " ");
    }
    let unchecked = stated_numbers(&text);
    assert!(
        unchecked.is_empty(),
        "ARCHITECTURE.md states numbers no test reads from the code: {unchecked:?}; remove them, \
         or add a phrase built from the code's constant to checked_phrases()"
    );
}

#[test]
fn the_number_rule_skips_names_dates_ordinals_and_urls() {
    assert!(
        stated_numbers(
            "1. S3, SCD2, base64, EC2, xxh3, 5xx, 2024-01-31, `aws-sdk-sfn` \
             (see http://127.0.0.1:8000/x)"
        )
        .is_empty()
    );
    assert_eq!(
        stated_numbers("waits 30 s, 5,475 chunks, Rust 1.94.1; 12. not a list item"),
        ["30", "5,475", "1.94.1", "12"]
    );
}

#[test]
fn every_path_it_names_exists() {
    const ROOTS: [&str; 7] = [
        "src/",
        "tests/",
        "benches/",
        "scripts/",
        "infrastructure/",
        "mappings/",
        "themes/",
    ];
    let doc = doc();
    let path_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-');
    let mut missing = Vec::new();
    let mut checked = 0;
    for (at, _) in doc.char_indices() {
        let rest = &doc[at..];
        if !ROOTS.iter().any(|r| rest.starts_with(r)) {
            continue;
        }
        if doc[..at].chars().next_back().is_some_and(path_char) {
            continue;
        }
        let path: String = rest.chars().take_while(|c| path_char(*c)).collect();
        let path = path.trim_end_matches(['.', '-']);
        checked += 1;
        if !root().join(path).exists() {
            missing.push(path.to_string());
        }
    }
    assert!(checked > 0, "the page names no path at all");
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}

#[test]
fn the_contents_list_points_at_headings() {
    let doc = doc();
    let slugs: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    let links: Vec<&str> = doc
        .split("](#")
        .skip(1)
        .filter_map(|s| s.split(')').next())
        .collect();
    assert!(
        !links.is_empty(),
        "a contents list of links to the sections"
    );
    for link in links {
        assert!(
            slugs.contains(link),
            "contents link #{link} matches no heading"
        );
    }
}
