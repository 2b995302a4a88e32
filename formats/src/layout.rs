//! The backup layout: object names and the JSON documents beside the data.
//!
//! ```text
//! <root>/ferry.json                                          format version, created-by
//! <root>/topics/<topic>/topic.json                           partitions, configs, snapshots over time
//! <root>/topics/<topic>/<partition>/<first:020>.<ext>        a segment: one partition, contiguous offsets
//! <root>/topics/<topic>/<partition>/<first:020>.json         its manifest
//! <root>/groups/<time>.json                                  consumer-group offsets at a moment
//! <root>/checkpoints/<pipeline>.json                         next offset per partition
//! ```
//! Names depend only on topic, partition and first offset, so a retry rewrites the same key.
//! Write order is segment, then manifest, then checkpoint: a segment without a manifest is
//! incomplete and is never read; the manifest is the commit record.
//!
//! This is the only module that knows these names; the storage sink and the backup source
//! both go through it.

use ferry_core::{AbortedTxn, GroupOffsets, TopicMetadata};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the layout written by this build. Readers refuse newer major versions.
pub const LAYOUT_VERSION: u32 = 1;

/// Name of the backup descriptor at the root.
pub const DESCRIPTOR: &str = "ferry.json";

/// The backup descriptor (`ferry.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Layout version ([`LAYOUT_VERSION`]).
    pub layout_version: u32,
    /// The program that created the backup, e.g. `ferry 0.1.0`.
    pub created_by: String,
    /// Creation time, milliseconds since the epoch.
    pub created_at_ms: i64,
}

/// A gap: offsets the source did not have when they were read (retention, compaction of
/// whole batches). Recorded, never silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// First missing offset.
    pub from: i64,
    /// First offset present again.
    pub to: i64,
}

/// The manifest of one segment: what it holds and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentManifest {
    /// Segment format: `raw`, `jsonl`, `avro` or `parquet`.
    pub format: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset the segment covers.
    pub first_offset: i64,
    /// Offset after the last one it covers.
    pub next_offset: i64,
    /// Records in the segment (control records included for `raw`).
    pub record_count: u64,
    /// Smallest record timestamp, milliseconds.
    pub min_timestamp: Option<i64>,
    /// Largest record timestamp, milliseconds.
    pub max_timestamp: Option<i64>,
    /// Size of the segment object in bytes.
    pub bytes: u64,
    /// CRC-32C of the whole segment object.
    pub crc32c: u32,
    /// Segment object name relative to the root.
    pub segment: String,
    /// Aborted transactions overlapping the segment (read_uncommitted backups).
    #[serde(default)]
    pub aborted: Vec<AbortedTxn>,
    /// Offsets missing before or inside the segment.
    #[serde(default)]
    pub gaps: Vec<Gap>,
    /// When the manifest was written, milliseconds since the epoch.
    pub written_at_ms: i64,
}

/// One snapshot of a topic's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSnapshot {
    /// When it was read, milliseconds since the epoch.
    pub taken_at_ms: i64,
    /// The topic's shape and settings then.
    pub metadata: TopicMetadata,
}

/// `topics/<topic>/topic.json`: the latest settings and their history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDocument {
    /// Topic name.
    pub name: String,
    /// Latest known shape and settings.
    pub latest: TopicMetadata,
    /// Every distinct snapshot seen, oldest first.
    #[serde(default)]
    pub snapshots: Vec<TopicSnapshot>,
}

/// `groups/<time>.json`: committed offsets of groups on the backed-up topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsDocument {
    /// When they were read, milliseconds since the epoch.
    pub taken_at_ms: i64,
    /// Groups and their offsets.
    pub groups: Vec<GroupOffsets>,
}

/// Key of a topic's document.
pub fn topic_key(topic: &str) -> String {
    format!("topics/{topic}/topic.json")
}

/// Folder holding a partition's segments.
pub fn partition_prefix(topic: &str, partition: i32) -> String {
    format!("topics/{topic}/{partition}/")
}

/// Key of a segment object.
pub fn segment_key(topic: &str, partition: i32, first_offset: i64, ext: &str) -> String {
    format!("topics/{topic}/{partition}/{first_offset:020}.{ext}")
}

/// Key of a segment's manifest.
pub fn manifest_key(topic: &str, partition: i32, first_offset: i64) -> String {
    format!("topics/{topic}/{partition}/{first_offset:020}.json")
}

/// Key of a groups snapshot; the time is zero-padded so names sort by time.
pub fn groups_key(taken_at_ms: i64) -> String {
    format!("groups/{taken_at_ms:015}.json")
}

/// Key of a pipeline's checkpoint.
pub fn checkpoint_key(pipeline: &str) -> String {
    format!("checkpoints/{pipeline}.json")
}

/// What an object name under `topics/` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A topic document.
    Topic {
        /// Topic.
        topic: String,
    },
    /// A segment manifest.
    Manifest {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// First offset.
        first_offset: i64,
    },
    /// A segment object.
    Segment {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// First offset.
        first_offset: i64,
        /// File extension (format).
        ext: String,
    },
}

/// Classifies an object name; `None` for names outside the layout.
pub fn parse_key(key: &str) -> Option<Entry> {
    let rest = key.strip_prefix("topics/")?;
    let mut parts = rest.split('/');
    let topic = parts.next()?.to_string();
    let second = parts.next()?;
    match parts.next() {
        None if second == "topic.json" => Some(Entry::Topic { topic }),
        None => None,
        Some(file) => {
            if parts.next().is_some() {
                return None;
            }
            let partition: i32 = second.parse().ok()?;
            let (stem, ext) = file.split_once('.')?;
            if stem.len() != 20 {
                return None;
            }
            let first_offset: i64 = stem.parse().ok()?;
            if ext == "json" {
                Some(Entry::Manifest {
                    topic,
                    partition,
                    first_offset,
                })
            } else {
                Some(Entry::Segment {
                    topic,
                    partition,
                    first_offset,
                    ext: ext.to_string(),
                })
            }
        }
    }
}

/// Manifests and orphan segments of a backup, from a listing of `topics/`.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    /// Topics with a topic document.
    pub topics_with_document: Vec<String>,
    /// Manifest keys per (topic, partition), sorted by first offset.
    pub manifests: BTreeMap<(String, i32), Vec<i64>>,
    /// Segment objects per (topic, partition, first offset) with their extension.
    pub segments: BTreeMap<(String, i32, i64), String>,
}

impl Inventory {
    /// Builds the inventory from object names.
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a String>) -> Self {
        let mut inv = Inventory::default();
        for k in keys {
            match parse_key(k) {
                Some(Entry::Topic { topic }) => inv.topics_with_document.push(topic),
                Some(Entry::Manifest {
                    topic,
                    partition,
                    first_offset,
                }) => inv
                    .manifests
                    .entry((topic, partition))
                    .or_default()
                    .push(first_offset),
                Some(Entry::Segment {
                    topic,
                    partition,
                    first_offset,
                    ext,
                }) => {
                    inv.segments.insert((topic, partition, first_offset), ext);
                }
                None => {}
            }
        }
        for v in inv.manifests.values_mut() {
            v.sort_unstable();
        }
        inv
    }

    /// Segments that have no manifest: incomplete writes, never to be read.
    pub fn orphans(&self) -> Vec<(String, i32, i64, String)> {
        self.segments
            .iter()
            .filter(|((t, p, f), _)| {
                !self
                    .manifests
                    .get(&(t.clone(), *p))
                    .is_some_and(|m| m.binary_search(f).is_ok())
            })
            .map(|((t, p, f), e)| (t.clone(), *p, *f, e.clone()))
            .collect()
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let s = segment_key("orders", 3, 42, "log");
        assert_eq!(s, "topics/orders/3/00000000000000000042.log");
        assert_eq!(
            parse_key(&s),
            Some(Entry::Segment {
                topic: "orders".into(),
                partition: 3,
                first_offset: 42,
                ext: "log".into()
            })
        );
        assert_eq!(
            parse_key(&manifest_key("a.b", 0, 7)),
            Some(Entry::Manifest {
                topic: "a.b".into(),
                partition: 0,
                first_offset: 7
            })
        );
        assert_eq!(
            parse_key("topics/x/topic.json"),
            Some(Entry::Topic { topic: "x".into() })
        );
        assert_eq!(parse_key("topics/x/y/z"), None);
        assert_eq!(parse_key("checkpoints/p.json"), None);
    }

    #[test]
    fn inventory_finds_orphans() {
        let keys: Vec<String> = vec![
            segment_key("t", 0, 0, "log"),
            manifest_key("t", 0, 0),
            segment_key("t", 0, 10, "log"),
            topic_key("t"),
        ];
        let inv = Inventory::from_keys(&keys);
        assert_eq!(
            inv.orphans(),
            vec![("t".to_string(), 0, 10, "log".to_string())]
        );
        assert_eq!(inv.manifests[&("t".to_string(), 0)], vec![0]);
        assert_eq!(inv.topics_with_document, vec!["t".to_string()]);
    }
}
