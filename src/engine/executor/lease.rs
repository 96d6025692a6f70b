//! The lease a runner holds on its chunk, as the runner's own writes last set it, and the one
//! rule for when it must be renewed.
//!
//! Every write under the lease extends it (the claim sets it, each checkpoint and renewal moves
//! it to `now + lease`), so a runner knows a lower bound of when its lease ends without asking
//! the store. A lease is renewed only when that end is near: the heartbeat (every quarter of the
//! lease) when no write has extended it for a quarter of the lease, and the renewal before a
//! part is put only when less than half the lease is left. A chunk that checkpoints often, or
//! that ends within a quarter of its lease (a one-page chunk), sends no renewal of its own; the
//! claim and the completion are its only chunk writes. A lost lease is still seen before a part
//! is written: by the heartbeat's refused renewal, or by the write that extends it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};

/// A runner's lease on one chunk.
#[derive(Debug)]
pub(super) struct HeldLease {
    lost: AtomicBool,
    until: Mutex<DateTime<Utc>>,
}

impl HeldLease {
    /// A lease that ends at `until` (the claim's).
    pub(super) fn new(until: DateTime<Utc>) -> Self {
        HeldLease {
            lost: AtomicBool::new(false),
            until: Mutex::new(until),
        }
    }

    /// Another runner took the chunk (a write under the lease was refused).
    pub(super) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    pub(super) fn mark_lost(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    /// A write under the lease moved its end to `until`.
    pub(super) fn extended(&self, until: DateTime<Utc>) {
        if let Ok(mut held) = self.until.lock() {
            *held = (*held).max(until);
        }
    }

    /// Whether the lease, of length `lease`, needs renewing at `now` for `why`.
    pub(super) fn due(&self, why: Renewal, lease: std::time::Duration, now: DateTime<Utc>) -> bool {
        let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let left = match self.until.lock() {
            Ok(until) => *until - now,
            Err(_) => return true,
        };
        let margin = match why {
            // No write extended it for a quarter of the lease.
            Renewal::Heartbeat => lease * 3 / 4,
            // A part is about to be put: it needs at least half the lease ahead of it.
            Renewal::BeforePart => lease / 2,
        };
        left < margin
    }
}

/// What a renewal is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Renewal {
    Heartbeat,
    BeforePart,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_are_due_only_when_the_lease_end_nears() {
        let lease = std::time::Duration::from_secs(60);
        let now = Utc::now();
        let held = HeldLease::new(now + chrono::Duration::seconds(60));
        // Just claimed: neither the heartbeat nor a part needs a renewal.
        assert!(!held.due(Renewal::Heartbeat, lease, now));
        assert!(!held.due(Renewal::BeforePart, lease, now));
        // 20 s later the heartbeat renews (no write for a quarter of the lease); a part
        // still has more than half the lease ahead of it.
        let later = now + chrono::Duration::seconds(20);
        assert!(held.due(Renewal::Heartbeat, lease, later));
        assert!(!held.due(Renewal::BeforePart, lease, later));
        // A checkpoint extended it: nothing is due.
        held.extended(later + chrono::Duration::seconds(60));
        assert!(!held.due(Renewal::Heartbeat, lease, later));
        // A stale, shorter end does not move it back.
        held.extended(now);
        assert!(!held.due(Renewal::BeforePart, lease, later));
        // 35 s without any write: a part needs a renewal first.
        let late = later + chrono::Duration::seconds(35);
        assert!(held.due(Renewal::BeforePart, lease, late));
    }
}
