//! A string that never prints: credentials travel as `Secret` so no log line, error or
//! stored field can show them by accident.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it (an auth header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replaces every occurrence of any secret value in `text` with `***`.
///
/// Error bodies from APIs can echo request headers or keys back; anything that is stored
/// (chunk errors, logs) goes through this first.
/// Longer values go first, so a value that contains another (`user:pass` and `pass`) is
/// replaced whole rather than leaving its other part behind.
pub fn scrub<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut secrets: Vec<&str> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in secrets {
        out = out.replace(s, "***");
    }
    out
}

/// `text` cut to at most `max` bytes, on a character boundary. Only ever cut text that
/// is already scrubbed: a secret straddling the cut would otherwise be half shown, and
/// half a secret matches no secret.
pub fn cut(mut out: String, max: usize) -> String {
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2-private");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.expose(), "hunter2-private");
        assert_eq!(
            scrub("key=hunter2-private!", ["hunter2-private"]),
            "key=***!"
        );
    }

    #[test]
    fn longer_secrets_are_replaced_before_the_ones_they_contain() {
        assert_eq!(
            scrub("auth pub-key:priv-key", ["priv-key", "pub-key:priv-key"]),
            "auth ***"
        );
    }

    #[test]
    fn a_secret_straddling_the_cut_is_fully_redacted() {
        let key = "straddling-private-key";
        let text = format!("{}{key} and more", "x".repeat(290));
        let shown = cut(scrub(&text, [key]), 300);
        assert_eq!(shown, format!("{}*** and mo", "x".repeat(290)));
        assert!(!shown.contains("straddling"), "{shown}");
        assert_eq!(cut("é-é".into(), 2), "é");
    }
}
