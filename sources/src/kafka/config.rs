//! Options of the `kafka` source: where to start and stop, isolation, fetch sizes, the
//! connection (shared with the sink and the CLI) and the topic selection.

use ferry_core::transforms::filter::TimeBound;
use ferry_kafka::ConnectionOptions;
use serde::Deserialize;
use std::time::Duration;

/// Where a partition starts when the checkpoint does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// The stored checkpoint, else the earliest offset (the default).
    Checkpoint,
    /// The log start, ignoring any checkpoint.
    Earliest,
    /// The log end, ignoring any checkpoint.
    Latest,
    /// The first offset whose timestamp is at or after this time (ms), ignoring any checkpoint.
    Time(i64),
}

impl<'de> Deserialize<'de> for StartAt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "checkpoint" => Ok(StartAt::Checkpoint),
            "earliest" => Ok(StartAt::Earliest),
            "latest" => Ok(StartAt::Latest),
            other => TimeBound::parse(other)
                .map(|t| StartAt::Time(t.0))
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "start must be checkpoint, earliest, latest or a time: {e}"
                    ))
                }),
        }
    }
}

impl schemars::JsonSchema for StartAt {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StartAt".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "checkpoint (default), earliest, latest, or an RFC 3339 time / epoch milliseconds"
        })
    }
}

/// When the source finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopAt {
    /// Follow the topics until the pipeline is stopped (a continuous backup).
    #[default]
    Never,
    /// Stop each partition at the high watermark it had at the start (a snapshot).
    HighWatermark,
}

/// Which records a backup reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IsolationLevel {
    /// Everything up to the high watermark, transaction markers included (restore drops the
    /// data of aborted transactions by those markers). Kafka sends aborted-transaction lists
    /// only to read_committed fetches, so manifests of such backups list none.
    #[default]
    ReadUncommitted,
    /// Committed data only, up to the last stable offset.
    ReadCommitted,
}

/// Options of the `kafka` source.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Brokers, client id, TLS, SASL, timeouts and the retry policy.
    #[serde(flatten)]
    pub connection: ConnectionOptions,
    /// Topics: exact names or `/regex/` anchored to the whole name (internal `__` topics only
    /// by exact name): the rule of every `topics:` list (`ferry_core::topic_pattern`).
    pub topics: Vec<String>,
    /// checkpoint (default), earliest, latest, or a time.
    #[serde(default = "default_start")]
    pub start: StartAt,
    /// never (continuous, default) or high_watermark (snapshot).
    #[serde(default)]
    pub stop: StopAt,
    /// read_uncommitted (default: everything, markers included) or read_committed (up to the
    /// last stable offset, with the aborted-transaction lists in the manifests).
    #[serde(default)]
    pub isolation: IsolationLevel,
    /// Bytes per fetch response per broker.
    #[serde(default = "default_fetch_max")]
    pub fetch_max_bytes: ferry_core::ByteSize,
    /// Bytes per partition per fetch.
    #[serde(default = "default_partition_max")]
    pub partition_max_bytes: ferry_core::ByteSize,
    /// How long a broker may wait for data before answering, milliseconds.
    #[serde(default = "default_max_wait")]
    pub max_wait_ms: i32,
    /// Save committed offsets of consumer groups on these topics with the backup.
    #[serde(default = "default_true")]
    pub groups: bool,
    /// How often topic settings and group offsets are read again.
    #[serde(default = "default_metadata_interval")]
    pub metadata_interval: ferry_core::HumanDuration,
}

fn default_start() -> StartAt {
    StartAt::Checkpoint
}
// Responses stay in memory while their batches travel (raw batches are slices of them) and
// one more is prefetched: these sizes keep a backup well under 256 MiB.
fn default_fetch_max() -> ferry_core::ByteSize {
    ferry_core::ByteSize(16 * 1024 * 1024)
}
fn default_partition_max() -> ferry_core::ByteSize {
    ferry_core::ByteSize(2 * 1024 * 1024)
}
fn default_max_wait() -> i32 {
    500
}
fn default_true() -> bool {
    true
}
fn default_metadata_interval() -> ferry_core::HumanDuration {
    ferry_core::HumanDuration(Duration::from_secs(300))
}
impl KafkaSourceConfig {
    /// The client configuration. A continuous backup (`stop: never`) is a service: its
    /// client retries retriable errors for as long as they last (the policy's delays, no
    /// deadline), so a broker outage of any length is ridden out. A snapshot gives up after
    /// the policy's deadline.
    pub fn client_config(&self) -> std::result::Result<ferry_kafka::ClientConfig, String> {
        let mut cfg = self.connection.client_config()?;
        if self.stop == StopAt::Never {
            cfg.retry = cfg.retry.forever();
        }
        Ok(cfg)
    }
}
