//! Acknowledgements and the per-partition contiguous watermark they drive.
//!
//! A source asks the [`AckTracker`] for an [`Ack`] for every batch it emits, in offset order
//! per partition. The ack travels with the batch; the sink resolves it once the batch is
//! durable. The tracker only advances a partition's watermark over a prefix of resolved
//! batches, so a later batch resolved first never moves the checkpoint past an earlier one.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Next offset to read per topic and partition: what a checkpoint stores.
pub type Offsets = BTreeMap<String, BTreeMap<i32, i64>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Pending,
    Done,
    Failed,
}

#[derive(Debug)]
struct Slot {
    first: i64,
    next: i64,
    state: SlotState,
}

#[derive(Debug, Default)]
struct PartitionQueue {
    /// Next offset below which everything is durable.
    watermark: Option<i64>,
    slots: VecDeque<Slot>,
}

#[derive(Debug, Default)]
struct TrackerState {
    partitions: HashMap<(Arc<str>, i32), PartitionQueue>,
    failures: u64,
}

/// Issues acks and computes the durable watermark of every partition.
#[derive(Debug, Clone, Default)]
pub struct AckTracker {
    state: Arc<Mutex<TrackerState>>,
    changed: Arc<tokio::sync::Notify>,
}

impl AckTracker {
    /// A tracker with nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, TrackerState> {
        // A panic while holding this lock cannot leave the queues half-updated in a way that
        // matters more than losing the process, so a poisoned lock is simply taken over.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seeds a partition's watermark (e.g. from a loaded checkpoint) before any ack is issued.
    pub fn seed(&self, topic: &Arc<str>, partition: i32, next_offset: i64) {
        let mut st = self.lock();
        let q = st.partitions.entry((topic.clone(), partition)).or_default();
        if q.slots.is_empty() {
            q.watermark = Some(next_offset);
        }
    }

    /// Issues the ack for a batch covering `first..next` of a partition. Batches of one
    /// partition must be issued in offset order.
    pub fn issue(&self, topic: &Arc<str>, partition: i32, first: i64, next: i64) -> Ack {
        let mut st = self.lock();
        let q = st.partitions.entry((topic.clone(), partition)).or_default();
        q.slots.push_back(Slot {
            first,
            next,
            state: SlotState::Pending,
        });
        Ack {
            shared: Some(Arc::new(AckShared {
                tracker: self.clone(),
                topic: topic.clone(),
                partition,
                first,
                remaining: AtomicUsize::new(1),
                failed: AtomicBool::new(false),
            })),
        }
    }

    fn complete(&self, topic: &Arc<str>, partition: i32, first: i64, ok: bool) {
        let mut st = self.lock();
        if !ok {
            st.failures += 1;
        }
        let Some(q) = st.partitions.get_mut(&(topic.clone(), partition)) else {
            return;
        };
        if let Some(slot) = q.slots.iter_mut().find(|s| s.first == first) {
            slot.state = if ok {
                SlotState::Done
            } else {
                SlotState::Failed
            };
        }
        while q.slots.front().map(|s| s.state) == Some(SlotState::Done) {
            if let Some(s) = q.slots.pop_front() {
                q.watermark = Some(s.next);
            }
        }
        drop(st);
        self.changed.notify_waiters();
    }

    /// The durable watermark (next offset) of every partition that has one.
    pub fn watermarks(&self) -> Offsets {
        let st = self.lock();
        let mut out = Offsets::new();
        for ((topic, partition), q) in &st.partitions {
            if let Some(w) = q.watermark {
                out.entry(topic.to_string())
                    .or_default()
                    .insert(*partition, w);
            }
        }
        out
    }

    /// Number of acks issued but not yet resolved as durable.
    pub fn pending(&self) -> usize {
        self.lock().partitions.values().map(|q| q.slots.len()).sum()
    }

    /// Number of acks resolved as failed since the tracker was created.
    pub fn failures(&self) -> u64 {
        self.lock().failures
    }

    /// Waits until some ack is resolved.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

#[derive(Debug)]
struct AckShared {
    tracker: AckTracker,
    topic: Arc<str>,
    partition: i32,
    first: i64,
    remaining: AtomicUsize,
    failed: AtomicBool,
}

impl AckShared {
    fn resolve_piece(&self, ok: bool) {
        if !ok {
            self.failed.store(true, Ordering::SeqCst);
        }
        if self.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            let ok = !self.failed.load(Ordering::SeqCst);
            self.tracker
                .complete(&self.topic, self.partition, self.first, ok);
        }
    }
}

/// Travels with a batch; resolve it when the batch is durable (or failed).
///
/// Dropping an unresolved ack counts as a failure: data that was never confirmed durable
/// must never be checkpointed.
#[derive(Debug, Default)]
pub struct Ack {
    shared: Option<Arc<AckShared>>,
}

impl Ack {
    /// An ack that tracks nothing (for batches built outside a pipeline, e.g. in tests).
    pub fn none() -> Self {
        Ack { shared: None }
    }

    /// Splits into `n` acks; the original resolves when all of them have, and fails if any
    /// of them fails.
    pub fn split(mut self, n: usize) -> Vec<Ack> {
        let Some(shared) = self.shared.take() else {
            return (0..n).map(|_| Ack::none()).collect();
        };
        if n == 0 {
            shared.resolve_piece(true);
            return Vec::new();
        }
        shared.remaining.fetch_add(n - 1, Ordering::SeqCst);
        (0..n)
            .map(|_| Ack {
                shared: Some(shared.clone()),
            })
            .collect()
    }

    /// Marks the batch durable.
    pub fn resolve(mut self) {
        if let Some(s) = self.shared.take() {
            s.resolve_piece(true);
        }
    }

    /// Marks the batch failed: the watermark of its partition will not pass it.
    pub fn fail(mut self) {
        if let Some(s) = self.shared.take() {
            s.resolve_piece(false);
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(s) = self.shared.take() {
            s.resolve_piece(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_ack_first_does_not_move_watermark() {
        let t = AckTracker::new();
        let topic: Arc<str> = Arc::from("t");
        let a = t.issue(&topic, 0, 0, 10);
        let b = t.issue(&topic, 0, 10, 20);
        b.resolve();
        assert!(t.watermarks().is_empty());
        a.resolve();
        assert_eq!(t.watermarks()["t"][&0], 20);
    }

    #[test]
    fn failure_blocks_and_split_waits_for_all_pieces() {
        let t = AckTracker::new();
        let topic: Arc<str> = Arc::from("t");
        t.seed(&topic, 0, 5);
        let mut pieces = t.issue(&topic, 0, 5, 10).split(2);
        let p2 = pieces.pop().unwrap();
        let p1 = pieces.pop().unwrap();
        p1.resolve();
        assert_eq!(t.watermarks()["t"][&0], 5);
        p2.resolve();
        assert_eq!(t.watermarks()["t"][&0], 10);
        drop(t.issue(&topic, 0, 10, 12));
        let c = t.issue(&topic, 0, 12, 15);
        c.resolve();
        assert_eq!(t.watermarks()["t"][&0], 10);
        assert_eq!(t.failures(), 1);
    }

    #[test]
    fn gaps_between_batches_are_covered() {
        let t = AckTracker::new();
        let topic: Arc<str> = Arc::from("t");
        t.issue(&topic, 1, 0, 3).resolve();
        t.issue(&topic, 1, 7, 9).resolve();
        assert_eq!(t.watermarks()["t"][&1], 9);
    }
}
