//! The offset map of a restore: where each original offset landed on the target.
//!
//! Offsets change on restore (compaction gaps close, aborted records vanish, partitions may
//! be remapped). The map keeps runs of consecutive original offsets that landed on
//! consecutive target offsets, so it stays small, and translates consumer-group offsets:
//! a group committed at original offset `O` resumes at the restored position of the first
//! record whose original offset is `>= O`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A run: `count` records from `source_first` on landed from `target_first` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// First original offset of the run.
    pub source_first: i64,
    /// Records in the run (original and target offsets both consecutive).
    pub count: i64,
    /// Target partition.
    pub target_partition: i32,
    /// Target offset of the run's first record.
    pub target_first: i64,
}

/// Runs of one source partition, in original offset order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMap {
    /// Topic the records were written to (after any rename).
    pub topic: String,
    /// Original partition.
    pub source_partition: i32,
    /// Next original offset after the last mapped record (skipped records included).
    pub source_next: i64,
    /// Runs in original offset order.
    pub runs: Vec<Run>,
}

/// The end offset a target partition had before the restore first wrote to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetBase {
    /// Target topic.
    pub topic: String,
    /// Target partition.
    pub partition: i32,
    /// Its end offset then.
    pub offset: i64,
}

/// The whole offset map, as stored in `offset-maps/<pipeline>.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetMap {
    /// Pipeline that wrote it.
    pub pipeline: String,
    /// Last update, milliseconds since the epoch.
    pub updated_at_ms: i64,
    /// One entry per (topic, original partition).
    pub partitions: Vec<PartitionMap>,
    /// Where each target partition stood before the restore wrote to it, so records that
    /// landed before the first map with runs was saved are recognised on resume too.
    #[serde(default)]
    pub target_bases: Vec<TargetBase>,
    /// The idempotent producer id and epoch the run that saved this map writes with: a
    /// re-run continues as that id with the next epoch, which fences what the earlier run
    /// still had in flight (absent in maps of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<ProducerIdentity>,
}

/// An idempotent producer's id and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdentity {
    /// Producer id the cluster gave out.
    pub id: i64,
    /// Its epoch.
    pub epoch: i16,
}

/// In-memory form of the map with fast appends.
#[derive(Debug, Clone, Default)]
pub struct OffsetMapper {
    /// By topic, then original partition (looked up by `&str`: no allocation per record).
    parts: BTreeMap<String, BTreeMap<i32, PartitionMap>>,
    bases: BTreeMap<(String, i32), i64>,
}

impl OffsetMapper {
    /// Loads a stored map.
    pub fn from_map(map: OffsetMap) -> Self {
        let mut parts = BTreeMap::new();
        for p in map.partitions {
            parts
                .entry(p.topic.clone())
                .or_insert_with(BTreeMap::new)
                .insert(p.source_partition, p);
        }
        let bases = map
            .target_bases
            .into_iter()
            .map(|b| ((b.topic, b.partition), b.offset))
            .collect();
        OffsetMapper { parts, bases }
    }

    /// The storable form.
    pub fn to_map(&self, pipeline: &str, now_ms: i64) -> OffsetMap {
        OffsetMap {
            pipeline: pipeline.to_string(),
            updated_at_ms: now_ms,
            partitions: self
                .parts
                .values()
                .flat_map(|m| m.values().cloned())
                .collect(),
            target_bases: self
                .bases
                .iter()
                .map(|((topic, partition), offset)| TargetBase {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *offset,
                })
                .collect(),
            producer: None,
        }
    }

    /// Whether the starting end offsets of a target topic are known.
    pub fn has_base(&self, topic: &str) -> bool {
        self.bases.keys().any(|(t, _)| t == topic)
    }

    /// Where each partition of a target topic stood before the restore first wrote to it;
    /// `None` when it never did.
    pub fn bases_of(&self, topic: &str) -> Option<BTreeMap<i32, i64>> {
        let bases: BTreeMap<i32, i64> = self
            .bases
            .iter()
            .filter(|((t, _), _)| t == topic)
            .map(|((_, p), o)| (*p, *o))
            .collect();
        (!bases.is_empty()).then_some(bases)
    }

    /// Notes where a target partition stood before the restore wrote to it.
    pub fn set_base(&mut self, topic: &str, partition: i32, offset: i64) {
        self.bases
            .entry((topic.to_string(), partition))
            .or_insert(offset);
    }

    /// Records that original `offset` of `topic`/`source_partition` landed at
    /// `target_partition`/`target_offset`.
    pub fn record(
        &mut self,
        topic: &str,
        source_partition: i32,
        offset: i64,
        target_partition: i32,
        target_offset: i64,
    ) {
        let p = self.partition_mut(topic, source_partition);
        p.source_next = p.source_next.max(offset + 1);
        if let Some(last) = p.runs.last_mut() {
            if last.target_partition == target_partition
                && last.source_first + last.count == offset
                && last.target_first + last.count == target_offset
            {
                last.count += 1;
                return;
            }
        }
        p.runs.push(Run {
            source_first: offset,
            count: 1,
            target_partition,
            target_first: target_offset,
        });
    }

    fn partition_mut(&mut self, topic: &str, source_partition: i32) -> &mut PartitionMap {
        if !self.parts.contains_key(topic) {
            self.parts.insert(topic.to_string(), BTreeMap::new());
        }
        let by_partition = self.parts.get_mut(topic).expect("inserted just above");
        by_partition
            .entry(source_partition)
            .or_insert_with(|| PartitionMap {
                topic: topic.to_string(),
                source_partition,
                source_next: 0,
                runs: Vec::new(),
            })
    }

    /// Notes that original offsets below `next` were dealt with (e.g. skipped control records).
    pub fn advance(&mut self, topic: &str, source_partition: i32, next: i64) {
        let p = self.partition_mut(topic, source_partition);
        p.source_next = p.source_next.max(next);
    }

    /// Next original offset not yet restored, for a source partition.
    pub fn source_next(&self, topic: &str, source_partition: i32) -> Option<i64> {
        self.parts
            .get(topic)
            .and_then(|m| m.get(&source_partition))
            .map(|p| p.source_next)
    }

    /// End (next offset) of what the map says was written to each target partition.
    pub fn target_ends(&self) -> BTreeMap<(String, i32), i64> {
        let mut out: BTreeMap<(String, i32), i64> = self.bases.clone();
        for p in self.parts.values().flat_map(|m| m.values()) {
            for r in &p.runs {
                let e = out
                    .entry((p.topic.clone(), r.target_partition))
                    .or_insert(0);
                *e = (*e).max(r.target_first + r.count);
            }
        }
        out
    }

    /// Where a consumer committed at original `offset` should resume: the target position
    /// of the first restored record with original offset `>= offset`, or the end of what was
    /// restored when there is none. `None` when nothing of the partition was restored or its
    /// records went to several target partitions (a key-hash restore).
    pub fn translate(&self, topic: &str, source_partition: i32, offset: i64) -> Option<(i32, i64)> {
        let p = self.parts.get(topic)?.get(&source_partition)?;
        let first = p.runs.first()?;
        if p.runs
            .iter()
            .any(|r| r.target_partition != first.target_partition)
        {
            return None;
        }
        for r in &p.runs {
            if r.source_first + r.count > offset {
                let pos = if r.source_first >= offset {
                    r.target_first
                } else {
                    r.target_first + (offset - r.source_first)
                };
                return Some((r.target_partition, pos));
            }
        }
        let last = p.runs.last()?;
        Some((last.target_partition, last.target_first + last.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_and_translate() {
        let mut m = OffsetMapper::default();
        // Originals 10,11,12 then a compaction gap, then 20,21.
        for (i, o) in [10, 11, 12, 20, 21].iter().enumerate() {
            m.record("t", 0, *o, 0, 100 + i as i64);
        }
        let map = m.to_map("p", 0);
        assert_eq!(map.partitions[0].runs.len(), 2);
        assert_eq!(m.translate("t", 0, 0), Some((0, 100)));
        assert_eq!(m.translate("t", 0, 11), Some((0, 101)));
        // 15 was not restored: resume at the first restored record >= 15 (original 20).
        assert_eq!(m.translate("t", 0, 15), Some((0, 103)));
        assert_eq!(m.translate("t", 0, 22), Some((0, 105)));
        assert_eq!(m.translate("t", 1, 0), None);
        assert_eq!(m.source_next("t", 0), Some(22));
        assert_eq!(m.target_ends()[&("t".to_string(), 0)], 105);
        let back = OffsetMapper::from_map(map);
        assert_eq!(back.translate("t", 0, 11), Some((0, 101)));
    }

    #[test]
    fn hashed_partitions_do_not_translate() {
        let mut m = OffsetMapper::default();
        m.record("t", 0, 0, 0, 0);
        m.record("t", 0, 1, 1, 0);
        assert_eq!(m.translate("t", 0, 1), None);
    }
}
