//! Process-wide progress counters: records and bytes the sinks have taken, for progress
//! displays (the CLI shows them on a terminal). Metrics carry the same numbers per pipeline.

use std::sync::atomic::{AtomicU64, Ordering};

static RECORDS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// Counts records and bytes written by a sink.
pub fn add(records: u64, bytes: u64) {
    RECORDS.fetch_add(records, Ordering::Relaxed);
    BYTES.fetch_add(bytes, Ordering::Relaxed);
}

/// Records and bytes written by every sink of this process so far.
pub fn totals() -> (u64, u64) {
    (
        RECORDS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}
