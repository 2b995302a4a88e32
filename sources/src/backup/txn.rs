//! Dropping aborted transactional data, decided by the transaction markers in the data.
//!
//! A transaction's outcome is the first commit/abort marker (control batch) of its producer
//! at or after its data. The backup source finds it by reading ahead of the restore position
//! (batch headers and markers only, nothing decoded but markers), so the outcome is right
//! whatever the backup's fetch isolation was, and when a restore resumes inside a
//! transaction. The aborted-transaction lists of manifests are not needed for this (a
//! `read_uncommitted` fetch never returns them).

use std::collections::{HashMap, VecDeque};

/// Control record type of an abort marker (the key is `version: i16, type: i16`).
const ABORT_MARKER: i16 = 0;

/// How many remembered markers trigger a clean-up of the ones already passed.
const PRUNE_AT: usize = 16_384;

/// Whether a control record key is an abort marker.
pub fn is_abort_marker(key: Option<&[u8]>) -> bool {
    matches!(key, Some(k) if k.len() >= 4 && i16::from_be_bytes([k[2], k[3]]) == ABORT_MARKER)
}

/// Markers seen ahead of the reading position, per producer, in offset order.
#[derive(Debug, Default, Clone)]
pub struct MarkerQueue {
    markers: HashMap<i64, VecDeque<(i64, bool)>>,
    len: usize,
}

impl MarkerQueue {
    /// Remembers a marker of `producer_id` at `offset` (`aborted` for an abort marker).
    /// Markers must be pushed in offset order.
    pub fn push(&mut self, producer_id: i64, offset: i64, aborted: bool) {
        self.markers
            .entry(producer_id)
            .or_default()
            .push_back((offset, aborted));
        self.len += 1;
    }

    /// The outcome of `producer_id`'s transactional data at `offset`: `Some(true)` when the
    /// first marker after it aborts, `Some(false)` when it commits, `None` when no marker
    /// after it is known (yet). Reads must come in offset order: markers before `offset`
    /// are forgotten.
    pub fn aborted(&mut self, producer_id: i64, offset: i64) -> Option<bool> {
        if self.len > PRUNE_AT {
            let mut len = 0;
            self.markers.retain(|_, q| {
                q.retain(|(o, _)| *o >= offset);
                len += q.len();
                !q.is_empty()
            });
            self.len = len;
        }
        let q = self.markers.get_mut(&producer_id)?;
        while q.front().is_some_and(|(o, _)| *o < offset) {
            q.pop_front();
            self.len -= 1;
        }
        q.front().map(|(_, a)| *a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_marker_after_the_data_decides() {
        let mut m = MarkerQueue::default();
        m.push(7, 4, true);
        m.push(8, 6, false);
        m.push(7, 9, false);
        assert_eq!(m.aborted(7, 1), Some(true));
        assert_eq!(m.aborted(8, 2), Some(false));
        assert_eq!(m.aborted(7, 3), Some(true));
        assert_eq!(m.aborted(7, 7), Some(false));
        assert_eq!(m.aborted(7, 10), None);
        assert_eq!(m.aborted(9, 10), None);
    }

    #[test]
    fn reads_marker_keys() {
        assert!(is_abort_marker(Some(&[0, 0, 0, 0])));
        assert!(!is_abort_marker(Some(&[0, 0, 0, 1])));
        assert!(!is_abort_marker(None));
    }
}
