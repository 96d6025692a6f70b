//! The printing primitives every command's output shares: instants as RFC 3339 seconds, and
//! pretty JSON on stdout. A leaf: the output modules use it, it uses none of them.

use color_eyre::eyre::Result;

/// An instant as `2026-01-15T12:00:00Z`.
pub fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `value` as pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
