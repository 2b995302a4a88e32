//! What `ferry ls` shows: per partition offsets, records, times, bytes, segments and gaps,
//! topic configs and consumer-group snapshots. Built from manifests only (no segment reads).

use super::catalog::Catalog;
use ferry_core::Result;
use ferry_formats::layout::{Gap, SegmentManifest};
use serde::Serialize;
use std::collections::BTreeMap;

/// A backup at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupSummary {
    /// The backup's URI (query string removed).
    pub uri: String,
    /// Layout version from `ferry.json`.
    pub layout_version: u32,
    /// Program that created the backup.
    pub created_by: String,
    /// When the backup was created, milliseconds since the epoch.
    pub created_at_ms: i64,
    /// Topics, sorted by name.
    pub topics: Vec<TopicSummary>,
    /// Consumer-group snapshots, oldest first.
    pub groups: Vec<GroupSnapshotSummary>,
    /// Segments without a manifest (incomplete writes, ignored by restores).
    pub incomplete_segments: usize,
}

/// One topic of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicSummary {
    /// Topic name.
    pub topic: String,
    /// Partitions with segments, sorted.
    pub partitions: Vec<PartitionSummary>,
    /// Partition count on the source cluster (from `topic.json`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_count: Option<i32>,
    /// Topic configs (from `topic.json`; empty when it has none).
    pub configs: BTreeMap<String, String>,
}

/// One partition of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionSummary {
    /// Partition.
    pub partition: i32,
    /// First offset of the first segment.
    pub first_offset: i64,
    /// Offset after the last segment.
    pub next_offset: i64,
    /// Records (control records included for raw segments).
    pub records: u64,
    /// Bytes of the segment objects.
    pub bytes: u64,
    /// Bytes the records took in Kafka (sum of the manifests' `source_bytes`; `None` when
    /// a manifest does not say, as those of older Ferry versions).
    pub source_bytes: Option<u64>,
    /// Number of complete segments.
    pub segments: usize,
    /// Smallest record timestamp, milliseconds.
    pub min_timestamp: Option<i64>,
    /// Largest record timestamp, milliseconds.
    pub max_timestamp: Option<i64>,
    /// Offsets missing: recorded by the backup, plus holes between segments.
    pub gaps: Vec<Gap>,
    /// Segment formats present (e.g. `raw`).
    pub formats: Vec<String>,
    /// Ids of the keys the encrypted segments were written with (empty: not encrypted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_ids: Vec<String>,
}

/// One consumer-group snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupSnapshotSummary {
    /// When it was taken, milliseconds since the epoch.
    pub taken_at_ms: i64,
    /// Groups in it, sorted.
    pub groups: Vec<String>,
}

/// Summarizes one partition's manifests (sorted by first offset).
pub fn summarize_partition(
    partition: i32,
    manifests: &[SegmentManifest],
) -> Option<PartitionSummary> {
    let first = manifests.first()?;
    let mut s = PartitionSummary {
        partition,
        first_offset: first.first_offset,
        next_offset: first.next_offset,
        records: 0,
        bytes: 0,
        source_bytes: Some(0),
        segments: manifests.len(),
        min_timestamp: None,
        max_timestamp: None,
        gaps: Vec::new(),
        formats: Vec::new(),
        key_ids: Vec::new(),
    };
    let mut recorded: Vec<Gap> = Vec::new();
    let mut holes: Vec<Gap> = Vec::new();
    let mut prev_next: Option<i64> = None;
    for m in manifests {
        s.first_offset = s.first_offset.min(m.first_offset);
        s.next_offset = s.next_offset.max(m.next_offset);
        s.records += m.record_count;
        s.bytes += m.bytes;
        s.source_bytes = s.source_bytes.zip(m.source_bytes).map(|(a, b)| a + b);
        if let Some(t) = m.min_timestamp {
            s.min_timestamp = Some(s.min_timestamp.map_or(t, |x| x.min(t)));
        }
        if let Some(t) = m.max_timestamp {
            s.max_timestamp = Some(s.max_timestamp.map_or(t, |x| x.max(t)));
        }
        if !s.formats.contains(&m.format) {
            s.formats.push(m.format.clone());
        }
        if let Some(e) = &m.encryption {
            if !s.key_ids.contains(&e.key_id) {
                s.key_ids.push(e.key_id.clone());
            }
        }
        recorded.extend(m.gaps.iter().copied());
        if let Some(p) = prev_next {
            if m.first_offset > p {
                holes.push(Gap {
                    from: p,
                    to: m.first_offset,
                });
            }
        }
        prev_next = Some(prev_next.map_or(m.next_offset, |p| p.max(m.next_offset)));
    }
    // A hole between segments that the backup already recorded is not listed twice.
    for h in holes {
        if !recorded.iter().any(|g| g.from <= h.from && g.to >= h.to) {
            recorded.push(h);
        }
    }
    recorded.sort_by_key(|g| (g.from, g.to));
    recorded.dedup();
    s.gaps = recorded;
    Some(s)
}

/// Reads every manifest, topic document and groups snapshot of a backup and summarizes them.
pub async fn summarize(catalog: &Catalog) -> Result<BackupSummary> {
    let manifests = catalog.all_manifests().await?;
    let mut topics = Vec::new();
    for topic in catalog.topics() {
        let partitions: Vec<PartitionSummary> = manifests
            .iter()
            .filter(|((t, _), _)| *t == topic)
            .filter_map(|((_, p), ms)| summarize_partition(*p, ms))
            .collect();
        let doc = catalog.topic_document(&topic).await?;
        topics.push(TopicSummary {
            partition_count: doc.as_ref().map(|d| d.latest.partitions),
            configs: doc.map(|d| d.latest.configs).unwrap_or_default(),
            topic,
            partitions,
        });
    }
    let groups = catalog
        .all_groups_documents()
        .await?
        .into_iter()
        .map(|d| {
            let mut groups: Vec<String> = d.groups.into_iter().map(|g| g.group).collect();
            groups.sort();
            GroupSnapshotSummary {
                taken_at_ms: d.taken_at_ms,
                groups,
            }
        })
        .collect();
    Ok(BackupSummary {
        uri: catalog.storage().to_string(),
        layout_version: catalog.descriptor.layout_version,
        created_by: catalog.descriptor.created_by.clone(),
        created_at_ms: catalog.descriptor.created_at_ms,
        topics,
        groups,
        incomplete_segments: catalog.orphans().len() + catalog.incomplete_pending().len(),
    })
}
