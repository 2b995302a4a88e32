//! Dropping aborted transactional data the way a `read_committed` Kafka consumer does.
//!
//! Walking a partition in offset order, a producer id becomes "aborted" when the walk reaches
//! the first offset of one of its aborted transactions (from the manifests); its
//! transactional data is dropped until its abort marker (a control batch) is seen.

use ferry_core::AbortedTxn;
use std::collections::{BTreeSet, HashSet};

/// Control record type of an abort marker (the key is `version: i16, type: i16`).
const ABORT_MARKER: i16 = 0;

/// Whether a control record key is an abort marker.
pub fn is_abort_marker(key: Option<&[u8]>) -> bool {
    matches!(key, Some(k) if k.len() >= 4 && i16::from_be_bytes([k[2], k[3]]) == ABORT_MARKER)
}

/// Tracks which producers are inside an aborted transaction.
#[derive(Debug, Default, Clone)]
pub struct AbortFilter {
    /// Aborted transactions not reached yet, ordered by first offset.
    pending: BTreeSet<(i64, i64)>,
    /// Producers whose current transaction was aborted.
    aborted: HashSet<i64>,
}

/// What a unit of data (a batch, or a single record) is, for [`AbortFilter::keep`].
#[derive(Debug, Clone, Copy)]
pub struct TxnUnit {
    /// Last offset of the unit.
    pub last_offset: i64,
    /// Producer id (-1 when none).
    pub producer_id: i64,
    /// Written inside a transaction.
    pub transactional: bool,
    /// A transaction marker.
    pub control: bool,
    /// The marker is an abort marker (only meaningful when `control`).
    pub abort_marker: bool,
}

impl AbortFilter {
    /// A filter knowing these aborted transactions (duplicates are fine).
    pub fn new(aborted: impl IntoIterator<Item = AbortedTxn>) -> Self {
        AbortFilter {
            pending: aborted
                .into_iter()
                .map(|a| (a.first_offset, a.producer_id))
                .collect(),
            aborted: HashSet::new(),
        }
    }

    /// Smallest first offset of a known aborted transaction, if any.
    pub fn earliest(&self) -> Option<i64> {
        self.pending.first().map(|(o, _)| *o)
    }

    /// Observes the next unit in offset order; `false` when its data belongs to an aborted
    /// transaction. Control units return `true` (they are dropped anyway, as markers).
    pub fn keep(&mut self, u: TxnUnit) -> bool {
        if u.producer_id < 0 {
            return true;
        }
        while let Some(&(first, pid)) = self.pending.first() {
            if first > u.last_offset {
                break;
            }
            self.pending.pop_first();
            self.aborted.insert(pid);
        }
        if u.control {
            if u.abort_marker {
                self.aborted.remove(&u.producer_id);
            }
            return true;
        }
        !(u.transactional && self.aborted.contains(&u.producer_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(last: i64, pid: i64) -> TxnUnit {
        TxnUnit {
            last_offset: last,
            producer_id: pid,
            transactional: true,
            control: false,
            abort_marker: false,
        }
    }

    fn marker(at: i64, pid: i64, abort: bool) -> TxnUnit {
        TxnUnit {
            last_offset: at,
            producer_id: pid,
            transactional: true,
            control: true,
            abort_marker: abort,
        }
    }

    #[test]
    fn drops_only_aborted_transactions() {
        let mut f = AbortFilter::new([AbortedTxn {
            producer_id: 7,
            first_offset: 10,
        }]);
        assert!(f.keep(data(4, 7)));
        assert!(f.keep(marker(5, 7, false)));
        assert!(!f.keep(data(12, 7)));
        assert!(f.keep(data(13, 8)));
        assert!(f.keep(marker(14, 7, true)));
        assert!(f.keep(data(16, 7)));
    }

    #[test]
    fn reads_marker_keys() {
        assert!(is_abort_marker(Some(&[0, 0, 0, 0])));
        assert!(!is_abort_marker(Some(&[0, 0, 0, 1])));
        assert!(!is_abort_marker(None));
    }
}
