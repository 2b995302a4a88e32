//! Metadata that travels beside the data: topic settings and consumer-group offsets.
//!
//! A Kafka source reads it from the cluster, a storage sink saves it with the backup; a
//! backup source reads it back and a Kafka sink uses it to create topics and translate
//! consumer-group offsets. Core only defines the neutral shape.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One topic's shape and settings as a backup keeps them (not the client's
/// `ferry_kafka::TopicMetadata`, which is what a Metadata response says).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSettings {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replication factor, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i16>,
    /// Configs set on the topic that differ from the broker defaults.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// The topic id on the source cluster, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
}

/// Committed offsets of one consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOffsets {
    /// Group id.
    pub group: String,
    /// Next offset to consume, per topic and partition.
    pub offsets: BTreeMap<String, BTreeMap<i32, i64>>,
}

/// Metadata a source offers, taken at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMetadata {
    /// When it was read, milliseconds since the epoch.
    pub taken_at_ms: i64,
    /// Topics the source reads.
    #[serde(default)]
    pub topics: Vec<TopicSettings>,
    /// Consumer groups with offsets on those topics.
    #[serde(default)]
    pub groups: Vec<GroupOffsets>,
}

/// What a sink finds at one target topic before it writes anything (a restore plan shows
/// it; see [`crate::Sink::plan_targets`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetTopicState {
    /// The topic's name on the target (after any rename).
    pub topic: String,
    /// Whether it exists there.
    pub exists: bool,
    /// Its partition count there (0 when it does not exist).
    pub partitions: i32,
    /// Records it holds now per partition (log start to end).
    pub records: BTreeMap<i32, i64>,
    /// Records it holds now in all partitions.
    pub total_records: i64,
    /// One line: what the sink finds and will do (`new: created with 3 partition(s)`,
    /// `REFUSED: holds 60 record(s) this restore did not write`, …).
    pub note: String,
}

/// What a sink finds at its targets before writing: each topic, and every reason it would
/// refuse to write (empty when it would write).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetReport {
    /// One entry per target topic, in the order asked.
    pub topics: Vec<TargetTopicState>,
    /// Whether the sink appends to topics holding records it did not write.
    pub allow_existing: bool,
    /// Why it would refuse (every reason of every topic).
    pub refusals: Vec<String>,
}
