//! The record model: one Kafka record with everything a backup must keep.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How a record's timestamp was set: by the producer, or by the broker on append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimestampType {
    /// Set by the producer (`CreateTime`).
    #[default]
    Create,
    /// Set by the broker when it appended the record (`LogAppendTime`).
    LogAppend,
}

impl TimestampType {
    /// The name used in files: `create` or `log_append`.
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampType::Create => "create",
            TimestampType::LogAppend => "log_append",
        }
    }

    /// Parses the name written by [`TimestampType::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "create" | "CreateTime" => Some(TimestampType::Create),
            "log_append" | "LogAppendTime" => Some(TimestampType::LogAppend),
            _ => None,
        }
    }
}

/// One record header. Keys may repeat; a `None` value is distinct from an empty one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Header value; `None` is a null value.
    pub value: Option<Bytes>,
}

impl Header {
    /// Builds a header from a name and a value.
    pub fn new(key: impl Into<String>, value: Option<Bytes>) -> Self {
        Header {
            key: key.into(),
            value,
        }
    }
}

/// Idempotent/transactional producer fields carried by a record's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerInfo {
    /// Producer id, -1 when none.
    pub producer_id: i64,
    /// Producer epoch, -1 when none.
    pub producer_epoch: i16,
    /// Sequence number of the record, -1 when none.
    pub sequence: i32,
}

impl Default for ProducerInfo {
    fn default() -> Self {
        ProducerInfo {
            producer_id: -1,
            producer_epoch: -1,
            sequence: -1,
        }
    }
}

/// One Kafka record as Ferry moves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Topic the record belongs to (shared, so cloning a record is cheap).
    pub topic: Arc<str>,
    /// Partition of the topic.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Whether the producer or the broker set the timestamp.
    pub timestamp_type: TimestampType,
    /// Key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Value; `None` is a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in their original order, repeats and null values kept.
    pub headers: Vec<Header>,
    /// Producer id, epoch and sequence.
    pub producer: ProducerInfo,
    /// Leader epoch of the batch, when known.
    pub leader_epoch: Option<i32>,
    /// The record was written inside a transaction.
    pub is_transactional: bool,
    /// The record is a transaction marker (commit/abort), not user data.
    pub is_control: bool,
}

impl Record {
    /// A plain record with the given coordinates and value; everything else defaulted.
    pub fn new(topic: Arc<str>, partition: i32, offset: i64, value: Option<Bytes>) -> Self {
        Record {
            topic,
            partition,
            offset,
            timestamp: 0,
            timestamp_type: TimestampType::Create,
            key: None,
            value,
            headers: Vec::new(),
            producer: ProducerInfo::default(),
            leader_epoch: None,
            is_transactional: false,
            is_control: false,
        }
    }

    /// Approximate bytes this record holds, for budgets and metrics.
    pub fn size_hint(&self) -> usize {
        let h: usize = self
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()) + 8)
            .sum();
        64 + self.key.as_ref().map_or(0, |k| k.len())
            + self.value.as_ref().map_or(0, |v| v.len())
            + h
    }
}
