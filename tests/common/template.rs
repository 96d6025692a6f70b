//! The CloudFormation template as text, and one resource of it.

use std::path::Path;

pub fn template() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("infrastructure/backfill.yaml"),
    )
    .unwrap()
}

/// The text of one top-level resource of the template (up to the next one).
pub fn resource_text(text: &str, resource: &str) -> String {
    let start = text
        .find(&format!("\n  {resource}:\n"))
        .unwrap_or_else(|| panic!("no resource {resource}"));
    let body = &text[start + resource.len() + 4..];
    let end = body
        .lines()
        .scan(0, |at, line| {
            let here = *at;
            *at += line.len() + 1;
            Some((here, line))
        })
        // The resource ends where the next one (two spaces, a name, a colon) or a comment
        // before it starts.
        .find(|(_, l)| l.len() > 2 && l.starts_with("  ") && !l.starts_with("   "))
        .map_or(body.len(), |(at, _)| at);
    body[..end].to_string()
}
