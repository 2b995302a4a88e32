//! Process-wide progress counters: records and bytes the sinks have taken, for progress
//! displays (the CLI shows them on a terminal). Metrics carry the same numbers per pipeline.

use std::sync::atomic::{AtomicU64, Ordering};

static RECORDS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static EXPECTED: AtomicU64 = AtomicU64::new(0);

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

/// Adds records a source expects to deliver before it ends (a snapshot's offsets up to the
/// high watermarks, a restore's records in range), so a display can show how far along a
/// job is. Continuous sources expect nothing.
pub fn expect(records: u64) {
    EXPECTED.fetch_add(records, Ordering::Relaxed);
}

/// Records the sources of this process expect in all, when any said (an estimate: offsets
/// removed by compaction or transactions are counted but never delivered).
pub fn expected() -> Option<u64> {
    match EXPECTED.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}
