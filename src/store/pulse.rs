//! The pulse counters: what the engine did per tenant + service + job in fixed time buckets
//! (requests sent, requests refused for a rate limit, records landed), so the console's pulse
//! view shows what every process and worker did, not what this process saw.
//!
//! Buckets are `BUCKET_SECS` wide, keyed by their start (seconds since the Unix epoch). The
//! engine adds to them in memory and writes one increment per (pair, job, bucket) per flush
//! (`engine::pulse`); the store adds it to what is stored (an upsert that adds), so any
//! number of processes can write the same bucket. Readers ask for the buckets since a time;
//! buckets older than `KEEP_SECS` are pruned by the writers now and then.

use crate::domain::Service;

/// The width of one bucket (seconds).
pub const BUCKET_SECS: i64 = 10;
/// What the pulse view reads: the last ten minutes.
pub const WINDOW_SECS: i64 = 600;
/// Buckets older than this are pruned (seconds).
pub const KEEP_SECS: i64 = 3600;

/// The start of the bucket holding `secs` (seconds since the epoch).
pub fn bucket_of(secs: i64) -> i64 {
    secs.div_euclid(BUCKET_SECS) * BUCKET_SECS
}

/// Counts of one bucket (or an increment of one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PulseCounts {
    pub requests: u64,
    pub rate_limited: u64,
    pub records: u64,
}

impl PulseCounts {
    pub fn add(&mut self, other: &PulseCounts) {
        self.requests += other.requests;
        self.rate_limited += other.rate_limited;
        self.records += other.records;
    }

    pub fn is_zero(&self) -> bool {
        *self == PulseCounts::default()
    }
}

/// One bucket of one job: as stored, or an increment to add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulseRow {
    pub tenant_id: String,
    pub service: Service,
    pub job_id: String,
    /// The bucket's start (seconds since the epoch, a multiple of `BUCKET_SECS`).
    pub bucket: i64,
    pub counts: PulseCounts,
}
