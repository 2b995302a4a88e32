//! What a pipeline needs to know when it runs as one *task* of a shared pipeline: a worker
//! of a group runs a pipeline on only some of its partitions ([`TaskScope`]), may lose them
//! to another worker at any moment ([`Fence`]), and reports how far each partition got
//! ([`TaskProgress`]).
//!
//! A pipeline run by `ferry run` has no scope: it reads every partition its source selects.

use crate::error::Result;
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

/// Checks, right before a component commits something others will trust (a manifest), that
/// this task still owns its partitions. A worker paused past its group's session timeout
/// (SIGSTOP, a long GC-like stall, a frozen VM) finds out here and stops, instead of writing
/// offsets its successor writes too.
#[async_trait]
pub trait Fence: Send + Sync {
    /// `Ok` while this task owns its partitions; a `Refused` error once it does not.
    async fn check(&self) -> Result<()>;
}

/// How far one partition of a task got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PartitionProgress {
    /// The next offset the task reads.
    pub offset: i64,
    /// The partition's high watermark when last seen (`-1` when not yet known).
    pub high_watermark: i64,
}

impl PartitionProgress {
    /// Records between the task's position and the high watermark (0 when unknown).
    pub fn lag(&self) -> i64 {
        if self.high_watermark < 0 {
            0
        } else {
            (self.high_watermark - self.offset).max(0)
        }
    }
}

/// Positions of a task's partitions, written by its source, read by whoever reports status;
/// and its last checkpoint, written by the runtime.
#[derive(Debug, Default)]
pub struct TaskProgress {
    partitions: Mutex<BTreeMap<(String, i32), PartitionProgress>>,
    checkpoint: Mutex<Option<LastCheckpoint>>,
}

/// The last checkpoint a task wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastCheckpoint {
    /// When it was written, milliseconds since the epoch.
    pub at_ms: i64,
    /// The offsets it holds summed over its partitions (records committed, for sources whose
    /// offsets start at 0).
    pub offsets_sum: i64,
    /// Partitions it holds offsets for.
    pub partitions: usize,
}

impl TaskProgress {
    /// Records that a checkpoint holding `offsets` was written now.
    pub fn checkpointed(&self, offsets: &crate::Offsets) {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let last = LastCheckpoint {
            at_ms,
            offsets_sum: offsets.values().flat_map(|ps| ps.values()).sum(),
            partitions: offsets.values().map(|ps| ps.len()).sum(),
        };
        *self.checkpoint.lock().unwrap_or_else(|p| p.into_inner()) = Some(last);
    }

    /// The last checkpoint written, if any.
    pub fn last_checkpoint(&self) -> Option<LastCheckpoint> {
        self.checkpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets a partition's position (and high watermark, when the source learnt it).
    pub fn set(&self, topic: &str, partition: i32, offset: i64, high_watermark: Option<i64>) {
        let mut map = match self.partitions.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let e = map
            .entry((topic.to_string(), partition))
            .or_insert(PartitionProgress {
                offset,
                high_watermark: -1,
            });
        e.offset = offset;
        if let Some(h) = high_watermark {
            e.high_watermark = h;
        }
    }

    /// Every partition's progress, in topic and partition order.
    pub fn snapshot(&self) -> BTreeMap<(String, i32), PartitionProgress> {
        match self.partitions.lock() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// The part of a shared pipeline one task runs.
#[derive(Clone, Default)]
pub struct TaskScope {
    /// The partitions this task reads (`None`: all of them, as `ferry run` does).
    pub partitions: Option<BTreeSet<(String, i32)>>,
    /// Checked before each commit of data others rely on.
    pub fence: Option<Arc<dyn Fence>>,
    /// Where the source reports its positions.
    pub progress: Arc<TaskProgress>,
}

impl TaskScope {
    /// Whether this task reads `topic`/`partition`.
    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        self.partitions
            .as_ref()
            .is_none_or(|ps| ps.contains(&(topic.to_string(), partition)))
    }

    /// `Ok` unless a fence says this task lost its partitions.
    pub async fn check_fence(&self) -> Result<()> {
        match &self.fence {
            Some(f) => f.check().await,
            None => Ok(()),
        }
    }
}

impl fmt::Debug for TaskScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskScope")
            .field("partitions", &self.partitions)
            .field("fenced", &self.fence.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_distance_to_the_high_watermark() {
        let p = TaskProgress::default();
        p.set("t", 0, 10, None);
        assert_eq!(p.snapshot()[&("t".to_string(), 0)].lag(), 0, "unknown hwm");
        p.set("t", 0, 10, Some(25));
        assert_eq!(p.snapshot()[&("t".to_string(), 0)].lag(), 15);
        p.set("t", 0, 25, None);
        let s = p.snapshot()[&("t".to_string(), 0)];
        assert_eq!((s.offset, s.high_watermark, s.lag()), (25, 25, 0));
    }

    #[test]
    fn a_scope_without_partitions_owns_everything() {
        let all = TaskScope::default();
        assert!(all.owns("any", 7));
        let some = TaskScope {
            partitions: Some(BTreeSet::from([("t".to_string(), 1)])),
            ..TaskScope::default()
        };
        assert!(some.owns("t", 1));
        assert!(!some.owns("t", 0));
        assert!(!some.owns("u", 1));
    }
}
