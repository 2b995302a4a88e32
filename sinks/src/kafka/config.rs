//! Options and factory of the `kafka` sink.

use super::KafkaSink;
use ferry_core::registry::{BuildContext, SinkFactory};
use ferry_core::{ByteSize, Error, Result, Sink};
use ferry_kafka::{CompressionCodec, ConnectionOptions};
use serde::Deserialize;
use std::collections::BTreeMap;

/// How records choose their target partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Partitioning {
    /// The original partition (or `partition_map`'s choice).
    #[default]
    Preserve,
    /// murmur2 of the key, as the Java client does (null keys keep their partition modulo
    /// the target's count).
    Murmur2,
}

/// Consumer-group offsets to commit on the target after the restore.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupOptions {
    /// Commit the source's group offsets, translated through the offset map.
    #[serde(default)]
    pub restore: bool,
    /// Rename groups on the target: `{old: new}`.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Only these groups (all when empty).
    #[serde(default)]
    pub only: Vec<String>,
}

/// Options of the `kafka` sink.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Brokers of the target cluster, client id, TLS, SASL, timeouts and the retry policy.
    #[serde(flatten)]
    pub connection: ConnectionOptions,
    /// preserve (default) or murmur2.
    #[serde(default)]
    pub partitioning: Partitioning,
    /// Explicit partition moves `{"0": 2}` applied with `preserve`.
    #[serde(default)]
    pub partition_map: BTreeMap<i32, i32>,
    /// Create missing topics with the source's partition count and configs (a
    /// LogAppendTime topic is created as CreateTime, so the original times survive).
    #[serde(default = "default_true")]
    pub create_topics: bool,
    /// Write into target topics that already hold records this sink did not write,
    /// appending after them. Off by default: such a topic stops the pipeline before
    /// anything is written (its own earlier records, known from the offset map, are fine).
    #[serde(default)]
    pub allow_existing: bool,
    /// Partition count for created topics (default: the source's).
    #[serde(default)]
    pub partitions: Option<i32>,
    /// Replication factor of created topics (default: the broker's).
    #[serde(default)]
    pub replication_factor: Option<i16>,
    /// Topic configs to set on created topics over the source's; an empty value drops one.
    #[serde(default)]
    pub topic_configs: BTreeMap<String, String>,
    /// Codec of produced batches: none (default), gzip, snappy, lz4 or zstd.
    #[serde(default)]
    pub compression: CompressionCodec,
    /// Records buffered before a produce request.
    #[serde(default = "default_buffer")]
    pub buffer_bytes: ByteSize,
    /// Where to keep the offset map (`offset-maps/<pipeline>.json`), needed to resume
    /// without duplicates and to translate group offsets. No map when absent.
    #[serde(default)]
    pub state: Option<String>,
    /// Consumer-group offsets to restore.
    #[serde(default)]
    pub groups: GroupOptions,
}

fn default_true() -> bool {
    true
}
fn default_buffer() -> ByteSize {
    ByteSize(8 * 1024 * 1024)
}

/// Factory of the `kafka` sink.
pub struct KafkaSinkFactory;

impl SinkFactory for KafkaSinkFactory {
    type Config = KafkaSinkConfig;

    fn name(&self) -> &'static str {
        "kafka"
    }

    fn description(&self) -> &'static str {
        "Produces records to Kafka exactly (idempotent), creates topics, writes an offset map, restores group offsets"
    }

    fn validate(&self, c: &KafkaSinkConfig) -> Result<()> {
        c.connection.validate().map_err(Error::config)?;
        if let Some(s) = &c.state {
            ferry_core::storage::StorageUri::parse(s)?;
        }
        if c.groups.restore && c.state.is_none() {
            return Err(Error::config(
                "groups.restore needs `state` (where the offset map is kept) to translate offsets",
            ));
        }
        if c.groups.restore && c.partitioning == Partitioning::Murmur2 {
            return Err(Error::config(
                "groups.restore cannot translate offsets when partitioning is murmur2 \
                 (one original partition spreads over several target partitions)",
            ));
        }
        if c.partitions.is_some_and(|p| p <= 0) {
            return Err(Error::config("partitions must be > 0"));
        }
        Ok(())
    }

    fn build(&self, c: KafkaSinkConfig, ctx: &BuildContext) -> Result<Box<dyn Sink>> {
        self.validate(&c)?;
        Ok(Box::new(KafkaSink::new(c, &ctx.pipeline)?))
    }
}
