//! The engine's one retry decision after a failed attempt (`decide`), and what that decision
//! means for a chunk now (`next_action`). The executor stores the decision in the chunk's last
//! error (`attempt 1/3, not retried: HTTP 400 is permanent: ...`), so every reader of the job
//! store (the console, `status`, another host) reads the same words; the console never judges
//! retries on its own.

use chrono::{DateTime, Utc};

use crate::domain::{Chunk, ChunkStatus, TABLE_FAILED};

/// What a final failure's stored error says after the attempt count.
pub const NOT_RETRIED: &str = ", not retried: ";

/// What the retry policy knows about a failed attempt.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    pub retryable: bool,
    pub table_wide: bool,
    pub attempts: u32,
    pub max_attempts: u32,
    /// Why another attempt would not help, when `retryable` is false (`HTTP 400 is
    /// permanent`); `None` says it generally.
    pub permanent_why: Option<&'a str>,
}

/// Why the failed attempt is the chunk's last, or `None` when another one follows.
pub fn decide(a: Attempt<'_>) -> Option<String> {
    if a.table_wide {
        Some("every window of the table would fail the same way".into())
    } else if !a.retryable {
        Some(
            a.permanent_why
                .unwrap_or("the error is permanent")
                .to_string(),
        )
    } else if a.attempts >= a.max_attempts {
        Some(format!("all {} attempts are used", a.max_attempts))
    } else {
        None
    }
}

/// The stored error of a failed attempt: its count, the decision when it is final, the cause.
pub fn attempt_message(a: Attempt<'_>, cause: &str) -> String {
    match decide(a) {
        Some(why) => format!(
            "attempt {}/{}{NOT_RETRIED}{why}: {cause}",
            a.attempts, a.max_attempts
        ),
        None => format!("attempt {}/{}: {cause}", a.attempts, a.max_attempts),
    }
}

/// Why a failed chunk was not retried, as its stored error says.
pub fn why_not_retried(chunk: &Chunk) -> Option<String> {
    let e = chunk.last_error.as_deref()?;
    if chunk.status != ChunkStatus::Failed {
        return None;
    }
    if e.starts_with(TABLE_FAILED) {
        return Some("the whole table failed; its other windows were not asked".into());
    }
    if let Some((_, rest)) = e.split_once(NOT_RETRIED) {
        return Some(
            rest.split_once(": ")
                .map_or(rest, |(why, _)| why)
                .to_string(),
        );
    }
    // Errors stored before the decision was written down.
    Some(format!("{} attempt(s) made", chunk.attempts))
}

/// What the engine will do next with the chunk: `not retried: HTTP 400 is permanent; R
/// retries`, `retrying in 8 s (attempt 2 of 3)`, `running attempt 1 of 3`.
pub fn next_action(chunk: &Chunk, max_attempts: u32, now: DateTime<Utc>) -> String {
    match chunk.status {
        ChunkStatus::Failed => format!(
            "not retried: {}; R retries",
            why_not_retried(chunk).unwrap_or_default()
        ),
        ChunkStatus::Pending if chunk.last_error.is_some() => {
            let next = chunk.attempts + 1;
            match chunk.not_before.map(|t| (t - now).num_seconds()) {
                Some(secs) if secs > 0 => {
                    format!("retrying in {secs} s (attempt {next} of {max_attempts})")
                }
                _ => format!(
                    "retrying as soon as a runner is free (attempt {next} of {max_attempts})"
                ),
            }
        }
        ChunkStatus::Pending => "waiting for its first attempt".into(),
        ChunkStatus::Running => format!("running attempt {} of {max_attempts}", chunk.attempts),
        ChunkStatus::Succeeded => "nothing: the chunk succeeded".into(),
        ChunkStatus::Cancelled => "nothing: the chunk was cancelled".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ChunkKey, Window};

    fn chunk(status: ChunkStatus, error: &str) -> Chunk {
        let t = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut c = Chunk::new(
            ChunkKey {
                job_id: "j".into(),
                table: "tickets".into(),
                seq: 0,
            },
            Window::new(t, t + chrono::Duration::days(1)),
        );
        c.status = status;
        c.attempts = 1;
        c.last_error = Some(error.into());
        c
    }

    #[test]
    fn a_permanent_error_says_it_is_not_retried() {
        let a = Attempt {
            retryable: false,
            table_wide: false,
            attempts: 1,
            max_attempts: 3,
            permanent_why: Some("HTTP 400 is permanent"),
        };
        let m = attempt_message(a, "acme connectwise tickets: HTTP 400: bad");
        assert_eq!(
            m,
            "attempt 1/3, not retried: HTTP 400 is permanent: acme connectwise tickets: HTTP 400: bad"
        );
        let c = chunk(ChunkStatus::Failed, &m);
        assert_eq!(
            next_action(&c, 3, Utc::now()),
            "not retried: HTTP 400 is permanent; R retries"
        );
        let retry = Attempt {
            retryable: true,
            ..a
        };
        assert_eq!(attempt_message(retry, "x"), "attempt 1/3: x");
        let used_up = Attempt {
            attempts: 3,
            ..retry
        };
        assert!(attempt_message(used_up, "x").contains("not retried: all 3 attempts are used"));
    }

    #[test]
    fn a_retrying_chunk_says_when() {
        let mut c = chunk(ChunkStatus::Pending, "attempt 1/3: HTTP 503");
        let now = Utc::now();
        c.not_before = Some(now + chrono::Duration::seconds(8));
        assert_eq!(next_action(&c, 3, now), "retrying in 8 s (attempt 2 of 3)");
    }
}
