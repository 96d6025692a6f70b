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
    let body = avesa_console::cloud::permissions::resource_text(text, resource);
    assert!(!body.is_empty(), "no resource {resource}");
    body
}
