//! The `kafka` sink: produces records to a cluster — the writing half of a restore, or of a
//! cluster-to-cluster copy.
//!
//! Records keep keys, values, headers (nulls and repeats) and timestamps exactly. The
//! producer is idempotent (acks=all). Acks resolve on `flush`, after the offset map is
//! saved, so a checkpoint never gets ahead of the map; on restart the map and the target's
//! end offsets tell which records already landed, and those are not produced again.

mod target;

pub use target::TargetTopic;

use crate::offset_map::{OffsetMap, OffsetMapper};
use crate::partitioner::java_partition;
use async_trait::async_trait;
use ferry_core::registry::{BuildContext, SinkFactory};
use ferry_core::{
    Ack, Batch, ByteSize, Error, Offsets, Result, Sink, SourceMetadata, Storage, TopicSettings,
};
use ferry_kafka::batch::BatchIter;
use ferry_kafka::{
    Client, CompressionCodec, ConnectionOptions, EncodedBatch, NewTopic, OffsetSpec, ProduceBatch,
    ProduceItem, ProduceRecord, Producer, ProducerConfig, TopicResult,
};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};

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

/// What waits to be produced to a partition, with where it came from.
enum Pending {
    /// A record, encoded into a batch by the producer.
    Record {
        source_partition: i32,
        source_offset: i64,
        record: ProduceRecord,
    },
    /// A backed-up batch produced as it is (see [`KafkaSink::passes_through`]).
    Encoded {
        source_partition: i32,
        base_offset: i64,
        count: i64,
        batch: EncodedBatch,
    },
}

/// The `kafka` sink.
pub struct KafkaSink {
    config: KafkaSinkConfig,
    pipeline: String,
    client: Option<Client>,
    producer: Option<std::sync::Arc<Producer>>,
    state: Option<Storage>,
    map: OffsetMapper,
    /// Target partitions of each topic already checked or created.
    topics: HashMap<String, i32>,
    /// Target topics whose existing content was checked (see [`target`]).
    checked: HashSet<String>,
    /// Source metadata by (renamed) topic name.
    source_topics: HashMap<String, TopicSettings>,
    groups: Vec<ferry_core::GroupOffsets>,
    pending: BTreeMap<(std::sync::Arc<str>, i32), Vec<Pending>>,
    pending_bytes: usize,
    acks: Vec<Ack>,
    /// Records per target partition known to have landed after the map was last saved.
    skip: HashMap<(String, i32), i64>,
    produced: u64,
    /// Produce calls on the wire, oldest first (at most [`CALLS_IN_FLIGHT`]).
    in_flight: std::collections::VecDeque<tokio::task::JoinHandle<InFlightResult>>,
    /// Batches written since the last flush: (topic, source partition, next offset).
    advances: Vec<(String, i32, i64)>,
}

/// Where a produce request's batches landed, with the origin of each record.
type InFlightResult = ferry_kafka::Result<(Vec<ferry_kafka::ProduceResult>, Vec<Vec<(i32, i64)>>)>;

/// A client error as Ferry's: a connection error (retriable when the client says so).
fn kerr(e: ferry_kafka::ClientError) -> Error {
    Error::connection("sink kafka", e.is_retriable(), e)
}

const MAP_PREFIX: &str = "offset-maps/";

/// Produce calls (of `buffer_bytes` each) the sink keeps on the wire at once: enough that
/// the broker always has the next request waiting while the sink fills the next buffer.
const CALLS_IN_FLIGHT: usize = 3;

impl KafkaSink {
    /// A sink for these options; connects on first use.
    pub fn new(config: KafkaSinkConfig, pipeline: &str) -> Result<Self> {
        let state = config.state.as_deref().map(Storage::from_uri).transpose()?;
        Ok(KafkaSink {
            config,
            pipeline: pipeline.to_string(),
            client: None,
            producer: None,
            state,
            map: OffsetMapper::default(),
            topics: HashMap::new(),
            checked: HashSet::new(),
            source_topics: HashMap::new(),
            groups: Vec::new(),
            pending: BTreeMap::new(),
            pending_bytes: 0,
            acks: Vec::new(),
            skip: HashMap::new(),
            produced: 0,
            in_flight: Default::default(),
            advances: Vec::new(),
        })
    }

    fn map_key(&self) -> String {
        format!("{MAP_PREFIX}{}.json", self.pipeline)
    }

    async fn client(&mut self) -> Result<Client> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let cfg = self
            .config
            .connection
            .client_config()
            .map_err(Error::config)?;
        let client = Client::connect(cfg).await.map_err(kerr)?;
        let producer = client
            .producer(ProducerConfig {
                idempotent: true,
                acks: -1,
                compression: self.config.compression.codec(),
                max_request_bytes: 64 * 1024 * 1024,
                max_batch_bytes: 1024 * 1024,
                ..Default::default()
            })
            .map_err(kerr)?;
        self.client = Some(client.clone());
        self.producer = Some(std::sync::Arc::new(producer));
        Ok(client)
    }

    /// Makes sure a topic exists on the target and returns its partition count.
    async fn ensure_topic(&mut self, topic: &str, min_partition: i32) -> Result<i32> {
        if let Some(n) = self.topics.get(topic) {
            return Ok(*n);
        }
        if !self.checked.contains(topic) {
            self.check_targets(&[topic.to_string()]).await?;
        }
        let client = self.client().await?;
        let md = client
            .metadata(Some(&[topic.to_string()]))
            .await
            .map_err(kerr)?;
        let existing = md
            .topic(topic)
            .filter(|t| t.error.is_none() && !t.partitions.is_empty())
            .map(|t| t.partitions.len() as i32);
        let count = match existing {
            Some(n) => n,
            None if self.config.create_topics => {
                let src = self.source_topics.get(topic);
                let Some(partitions) = self.config.partitions.or(src.map(|s| s.partitions)) else {
                    return Err(Error::config(format!(
                        "topic '{topic}' does not exist on the target and the source does not say \
                         how many partitions it had (partition {min_partition} was seen): set \
                         `partitions` on the kafka sink or create the topic first"
                    )));
                };
                let partitions = partitions.max(1);
                let mut configs = src.map(|s| s.configs.clone()).unwrap_or_default();
                if self.creates_as_create_time(topic) {
                    tracing::info!(
                        topic,
                        "the backed-up topic was LogAppendTime: creating it as CreateTime, so \
                         records keep their original append times"
                    );
                    configs.insert(target::TIMESTAMP_TYPE.into(), "CreateTime".into());
                }
                for (k, v) in &self.config.topic_configs {
                    if v.is_empty() {
                        configs.remove(k);
                    } else {
                        configs.insert(k.clone(), v.clone());
                    }
                }
                let new = NewTopic {
                    name: topic.to_string(),
                    partitions,
                    replication_factor: self.config.replication_factor.unwrap_or(-1),
                    configs,
                };
                match client.create_topics(&[new]).await.map_err(kerr)?.first() {
                    Some((_, TopicResult::Created)) => {
                        tracing::info!(topic, partitions, "created topic on the target")
                    }
                    _ => tracing::info!(topic, "topic already exists on the target"),
                }
                client.invalidate_metadata();
                // Leaders take a moment to be elected after creation.
                let mut n = 0;
                for _ in 0..250 {
                    let md = client
                        .metadata(Some(&[topic.to_string()]))
                        .await
                        .map_err(kerr)?;
                    if let Some(t) = md.topic(topic) {
                        if !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader >= 0) {
                            n = t.partitions.len() as i32;
                            break;
                        }
                    }
                    client.invalidate_metadata();
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                if n == 0 {
                    return Err(Error::connection("kafka", true, format!(
                        "topic '{topic}' was created but has no leaders yet"
                    )));
                }
                n
            }
            None => {
                return Err(Error::config(format!(
                    "topic '{topic}' does not exist on the target and create_topics is off: create it first"
                )))
            }
        };
        if self.state.is_some() && !self.map.has_base(topic) {
            // Remember where the target stood before this restore writes to it, and save
            // that before producing: records that land before the next save are then still
            // recognised on resume.
            let partitions: Vec<i32> = (0..count).collect();
            let ends = client
                .list_offsets(topic, &partitions, OffsetSpec::Latest)
                .await
                .map_err(kerr)?;
            for (p, end) in ends {
                self.map.set_base(topic, p, end);
            }
            self.save_map().await?;
        }
        self.topics.insert(topic.to_string(), count);
        Ok(count)
    }

    /// Whether a topic the sink creates gets CreateTime instead of the source's
    /// LogAppendTime (unless `topic_configs` sets the timestamp type itself): under
    /// LogAppendTime the broker would stamp every restored record with the time of the
    /// restore.
    fn creates_as_create_time(&self, topic: &str) -> bool {
        !self
            .config
            .topic_configs
            .contains_key(target::TIMESTAMP_TYPE)
            && self.source_topics.get(topic).is_some_and(|s| {
                s.configs.get(target::TIMESTAMP_TYPE).map(String::as_str)
                    == Some(target::LOG_APPEND_TIME)
            })
    }

    /// Partitions a target topic needs under `preserve`: the highest partition the
    /// source's partitions map to, plus one (`None` when the source's count is unknown).
    fn needed_partitions(&self, topic: &str) -> Option<i32> {
        if self.config.partitioning != Partitioning::Preserve {
            return None;
        }
        let n = self.source_topics.get(topic)?.partitions;
        (0..n).map(|p| self.target_partition(p, None, n) + 1).max()
    }

    /// What the target holds for each of `topics` and what the sink would do there:
    /// existence, partitions, records (this sink's own, per its offset map, and others'),
    /// timestamp type. Reads only; a dry run prints it.
    pub async fn inspect_targets(&mut self, topics: &[String]) -> Result<Vec<TargetTopic>> {
        let client = self.client().await?;
        let md = client.metadata(Some(topics)).await.map_err(kerr)?;
        let mut out = Vec::new();
        for topic in topics {
            let mut t = TargetTopic {
                topic: topic.clone(),
                source_partitions: self.source_topics.get(topic).map(|s| s.partitions),
                needed_partitions: self.needed_partitions(topic),
                ..Default::default()
            };
            let partitions = md
                .topic(topic)
                .filter(|t| t.error.is_none() && !t.partitions.is_empty())
                .map(|t| t.partitions.len() as i32);
            match partitions {
                None => {
                    t.create_partitions = self.config.partitions.or(t.source_partitions);
                    t.created_as_create_time = self.creates_as_create_time(topic);
                }
                Some(n) => {
                    t.exists = true;
                    t.partitions = n;
                    let all: Vec<i32> = (0..n).collect();
                    let starts = client
                        .list_offsets(topic, &all, OffsetSpec::Earliest)
                        .await
                        .map_err(kerr)?;
                    let ends = client
                        .list_offsets(topic, &all, OffsetSpec::Latest)
                        .await
                        .map_err(kerr)?;
                    let bases = self.map.bases_of(topic);
                    let (records, foreign, own) =
                        target::split_records(&starts, &ends, bases.as_ref());
                    t.records = records;
                    t.foreign_records = foreign;
                    t.own_records = own;
                    t.log_append_time = client
                        .describe_configs(topic)
                        .await
                        .map_err(kerr)?
                        .iter()
                        .any(|c| {
                            c.name == target::TIMESTAMP_TYPE
                                && c.value.as_deref() == Some(target::LOG_APPEND_TIME)
                        });
                }
            }
            out.push(t);
        }
        Ok(out)
    }

    /// Why the sink must not write to these target topics (every reason of every topic).
    pub fn refusals(&self, targets: &[TargetTopic]) -> Vec<String> {
        let brokers = self.config.connection.brokers.join(",");
        targets
            .iter()
            .flat_map(|t| t.refusals(self.config.allow_existing, &brokers))
            .collect()
    }

    /// Learns the source's topics (partition counts, configs) without checking the target;
    /// a dry run uses it before [`KafkaSink::inspect_targets`].
    pub fn note_source_topics(&mut self, topics: impl IntoIterator<Item = TopicSettings>) {
        for t in topics {
            self.source_topics.insert(t.name.clone(), t);
        }
    }

    /// Whether this sink appends to topics holding records it did not write.
    pub fn allows_existing(&self) -> bool {
        self.config.allow_existing
    }

    /// Checks target topics before anything is written to them (see [`target`]); refuses
    /// with every reason at once.
    async fn check_targets(&mut self, topics: &[String]) -> Result<()> {
        let targets = self.inspect_targets(topics).await?;
        let refusals = self.refusals(&targets);
        if !refusals.is_empty() {
            return Err(Error::config(format!(
                "nothing was written: {}",
                refusals.join("; and ")
            )));
        }
        for t in targets {
            self.checked.insert(t.topic);
        }
        Ok(())
    }

    fn target_partition(&self, source_partition: i32, key: Option<&[u8]>, count: i32) -> i32 {
        match (self.config.partitioning, key) {
            (Partitioning::Murmur2, Some(k)) => java_partition(k, count),
            (Partitioning::Murmur2, None) => source_partition.rem_euclid(count.max(1)),
            (Partitioning::Preserve, _) => *self
                .config
                .partition_map
                .get(&source_partition)
                .unwrap_or(&source_partition),
        }
    }

    /// Whether `batch` can be produced as the raw Kafka batches it carries, skipping the
    /// decoding and encoding of every record: raw bytes (no transform changed a record), no
    /// aborted transactions among them, each source partition going to one target partition
    /// (`preserve`), no `compression` asked for (batches keep their own codec), nothing of
    /// it already produced, and no crash reconciliation under way. Batches that cannot keep
    /// their offsets or timestamps are still decoded, one by one (see `take_raw`).
    fn passes_through(&self, batch: &Batch, done_below: i64) -> bool {
        batch
            .raw()
            .is_some_and(|raw| raw.aborted.is_empty() && batch.first_offset >= done_below)
            && self.config.partitioning == Partitioning::Preserve
            && self.config.compression == CompressionCodec::None
            && self.skip.is_empty()
    }

    /// Queues the batches of a raw payload: as they are where Kafka will keep them byte for
    /// byte (CreateTime, consecutive offsets), decoded otherwise; control batches dropped.
    fn take_raw(
        &mut self,
        topic: &std::sync::Arc<str>,
        sp: i32,
        raw: &ferry_core::RawBatches,
    ) -> Result<()> {
        let tp = self.target_partition(sp, None, i32::MAX);
        let queue = self.pending.entry((topic.clone(), tp)).or_default();
        for item in BatchIter::new(&raw.bytes) {
            let (h, range) = item.map_err(kerr)?;
            if h.is_control() {
                continue;
            }
            let whole = h.record_count == h.last_offset_delta.saturating_add(1);
            if whole && h.timestamp_type() == ferry_core::TimestampType::Create {
                // A copy now, so the read buffer it sits in is not held while it waits.
                let batch = EncodedBatch::new(&**topic, tp, &raw.bytes[range]).map_err(kerr)?;
                self.pending_bytes += batch.len();
                queue.push(Pending::Encoded {
                    source_partition: sp,
                    base_offset: h.base_offset,
                    count: i64::from(h.record_count),
                    batch,
                });
                continue;
            }
            // Compaction holes (the broker wants consecutive offsets in a batch) or
            // LogAppendTime (the append time becomes the record's CreateTime): re-encode.
            for r in
                ferry_kafka::decode_batches(&raw.bytes.slice(range), topic, sp).map_err(kerr)?
            {
                if r.is_control {
                    continue;
                }
                self.pending_bytes += r.size_hint();
                queue.push(Pending::Record {
                    source_partition: sp,
                    source_offset: r.offset,
                    record: ProduceRecord {
                        key: r.key,
                        value: r.value,
                        headers: r.headers,
                        timestamp: r.timestamp,
                    },
                });
            }
        }
        Ok(())
    }

    /// Produces everything buffered and records where it landed.
    async fn produce_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.client().await?;
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let mut origins = Vec::new();
        let mut items = Vec::new();
        for ((topic, partition), pending) in pending {
            let topic = topic.to_string();
            let mut records = Vec::new();
            let mut origin = Vec::new();
            for p in pending {
                match p {
                    Pending::Record {
                        source_partition,
                        source_offset,
                        record,
                    } => {
                        origin.push((source_partition, source_offset));
                        records.push(record);
                    }
                    Pending::Encoded {
                        source_partition,
                        base_offset,
                        count,
                        batch,
                    } => {
                        if !records.is_empty() {
                            items.push(ProduceItem::Records(ProduceBatch {
                                topic: topic.clone(),
                                partition,
                                records: std::mem::take(&mut records),
                            }));
                            origins.push(std::mem::take(&mut origin));
                        }
                        items.push(ProduceItem::Encoded(batch));
                        origins.push(
                            (base_offset..base_offset + count)
                                .map(|o| (source_partition, o))
                                .collect(),
                        );
                    }
                }
            }
            if !records.is_empty() {
                items.push(ProduceItem::Records(ProduceBatch {
                    topic,
                    partition,
                    records,
                }));
                origins.push(origin);
            }
        }
        let Some(producer) = self.producer.clone() else {
            return Err(Error::internal("producer not started"));
        };
        // Encode now, while earlier calls still wait for their answers; put it on the wire
        // right behind them (the broker's sequence check wants that order), and record
        // where each call landed in the same order.
        let prepared = producer.prepare_items(items).map_err(kerr)?;
        while self.in_flight.len() >= CALLS_IN_FLIGHT {
            self.await_oldest().await?;
        }
        let call = producer.start(prepared).await.map_err(kerr)?;
        self.in_flight.push_back(tokio::spawn(async move {
            let results = call.finish().await?;
            Ok((results, origins))
        }));
        Ok(())
    }

    /// Waits for every produce call in flight and records where their records landed.
    async fn await_in_flight(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.await_oldest().await?;
        }
        Ok(())
    }

    /// Waits for the oldest produce call in flight and records where its records landed.
    async fn await_oldest(&mut self) -> Result<()> {
        let Some(handle) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let (results, origins) = handle
            .await
            .map_err(|e| Error::internal(format!("produce task failed: {e}")))?
            .map_err(kerr)?;
        for (res, origin) in results.iter().zip(origins) {
            for (i, (sp, so)) in origin.iter().enumerate() {
                if let Some(off) = res.offset_of(i) {
                    self.map.record(&res.topic, *sp, *so, res.partition, off);
                }
            }
            self.produced += origin.len() as u64;
        }
        Ok(())
    }

    async fn save_map(&self) -> Result<()> {
        if let Some(state) = &self.state {
            let map = self
                .map
                .to_map(&self.pipeline, ferry_formats::layout::now_ms());
            let json = serde_json::to_vec(&map)
                .map_err(|e| Error::internal(format!("encoding offset map: {e}")))?;
            state.write(&self.map_key(), json).await?;
        }
        Ok(())
    }

    async fn restore_groups(&mut self) -> Result<()> {
        if !self.config.groups.restore || self.groups.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        let groups = std::mem::take(&mut self.groups);
        for g in groups {
            if !self.config.groups.only.is_empty() && !self.config.groups.only.contains(&g.group) {
                continue;
            }
            let target = self
                .config
                .groups
                .rename
                .get(&g.group)
                .cloned()
                .unwrap_or_else(|| g.group.clone());
            let mut offsets = BTreeMap::new();
            for (topic, parts) in &g.offsets {
                for (p, o) in parts {
                    match self.map.translate(topic, *p, *o) {
                        Some((tp, to)) => {
                            offsets.insert((topic.clone(), tp), to);
                        }
                        None => {
                            tracing::warn!(group = %g.group, topic, partition = p, "no restored records to translate this group offset to; left out")
                        }
                    }
                }
            }
            if offsets.is_empty() {
                continue;
            }
            let desc = match client.describe_groups(std::slice::from_ref(&target)).await {
                Ok(d) => d,
                // A group the target has never seen has no members.
                Err(e) if e.code() == Some(ferry_kafka::KafkaCode::GROUP_ID_NOT_FOUND) => {
                    Vec::new()
                }
                Err(e) => return Err(kerr(e)),
            };
            if let Some(d) = desc.iter().find(|d| d.group == target && d.members > 0) {
                return Err(Error::refused(format!(
                    "consumer group '{target}' has {} active member(s) on the target: stop its consumers, \
                     or restore it under another name (groups.rename / --group-rename)",
                    d.members
                )));
            }
            client
                .offset_commit(&target, &offsets)
                .await
                .map_err(kerr)?;
            tracing::info!(group = %target, partitions = offsets.len(), "restored consumer-group offsets");
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn open(&mut self) -> Result<Option<Offsets>> {
        let Some(state) = self.state.clone() else {
            // Without a map a rerun cannot tell its own records from others': a target that
            // holds records is refused then (unless allow_existing), so nothing is doubled
            // silently.
            tracing::debug!("kafka sink has no `state`: no offset map");
            return Ok(None);
        };
        let Some(bytes) = state.read_opt(&self.map_key()).await? else {
            return Ok(None);
        };
        let map: OffsetMap = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupt(format!("{state}/{}: {e}", self.map_key())))?;
        self.map = OffsetMapper::from_map(map);
        // Records produced after the map was last saved: the target's end is past the map's.
        let client = self.client().await?;
        for ((topic, partition), end) in self.map.target_ends() {
            let now = match client
                .list_offsets(&topic, &[partition], OffsetSpec::Latest)
                .await
            {
                Ok(now) => now,
                Err(e) if e.code() == Some(ferry_kafka::KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
                    // Resuming would skip what the map says is done, but it is gone.
                    return Err(Error::refused(format!(
                        "{state}/{key} belongs to an earlier run of pipeline '{pipeline}' that \
                         wrote to topic '{topic}', which no longer exists on the target: that run \
                         cannot be resumed. Start afresh under another pipeline name (`ferry \
                         restore --name …`, or `name:` in the pipeline file), or delete \
                         {key} and checkpoints/{pipeline}.json from {state}",
                        key = self.map_key(),
                        pipeline = self.pipeline,
                    )));
                }
                Err(e) => return Err(kerr(e)),
            };
            let latest = now.get(&partition).copied().unwrap_or(end);
            if latest > end {
                tracing::warn!(topic, partition, records = latest - end, "records landed after the last saved offset map; they will not be produced again");
                self.skip.insert((topic, partition), latest - end);
            }
        }
        // Resume positions live in the map, keyed by the topic as the sink sees it, which
        // may differ from the source's (a rename): the runtime's checkpoint stays in charge,
        // and `write` drops what the map already covers.
        Ok(None)
    }

    async fn write(&mut self, batch: Batch) -> Result<()> {
        let topic = batch.topic.to_string();
        let sp = batch.partition;
        let done_below = self.map.source_next(&topic, sp).unwrap_or(i64::MIN);
        let needs_topic = match batch.raw() {
            // Batch headers say it without decoding.
            Some(raw) => BatchIter::new(&raw.bytes).any(|item| {
                item.map_or(true, |(h, _)| {
                    !h.is_control() && h.next_offset() > done_below
                })
            }),
            None => batch
                .records()?
                .iter()
                .any(|r| !r.is_control && r.offset >= done_below),
        };
        let count = if needs_topic {
            self.ensure_topic(&topic, sp).await?
        } else {
            0
        };
        if self.config.partitioning == Partitioning::Preserve && needs_topic {
            let tp = self.target_partition(sp, None, count);
            if tp >= count || tp < 0 {
                return Err(Error::config(format!(
                    "{topic}: partition {sp} maps to {tp}, but the target topic has {count} partition(s): \
                     add partitions, set partition_map, or use partitioning: murmur2"
                )));
            }
        }
        if needs_topic && self.passes_through(&batch, done_below) {
            if let Some(raw) = batch.raw() {
                self.take_raw(&batch.topic, sp, raw)?;
            }
            self.advances.push((topic, sp, batch.next_offset));
            self.acks.push(batch.ack);
            if self.pending_bytes >= self.config.buffer_bytes.bytes() as usize {
                self.produce_pending().await?;
            }
            return Ok(());
        }
        let records = batch.records()?;
        for r in records.iter() {
            if r.is_control || r.offset < done_below {
                continue;
            }
            let tp = self.target_partition(sp, r.key.as_deref(), count);
            // Only after a crash: records that landed before it are mapped, not produced.
            if let Some(n) = (!self.skip.is_empty())
                .then(|| self.skip.get_mut(&(topic.clone(), tp)))
                .flatten()
            {
                if *n > 0 {
                    // Landed before the crash: map it to where it landed, do not produce.
                    *n -= 1;
                    let end = self
                        .map
                        .target_ends()
                        .get(&(topic.clone(), tp))
                        .copied()
                        .unwrap_or(0);
                    self.map.record(&topic, sp, r.offset, tp, end);
                    continue;
                }
            }
            self.pending_bytes += r.size_hint();
            self.pending
                .entry((batch.topic.clone(), tp))
                .or_default()
                .push(Pending::Record {
                    source_partition: sp,
                    source_offset: r.offset,
                    record: ProduceRecord {
                        key: r.key.clone(),
                        value: r.value.clone(),
                        headers: r.headers.clone(),
                        timestamp: r.timestamp,
                    },
                });
        }
        drop(records);
        // The map may say a batch is done only once all of it has landed (see `flush`).
        self.advances.push((topic, sp, batch.next_offset));
        self.acks.push(batch.ack);
        if self.pending_bytes >= self.config.buffer_bytes.bytes() as usize {
            self.produce_pending().await?;
        }
        Ok(())
    }

    async fn write_metadata(&mut self, meta: SourceMetadata) -> Result<()> {
        let unchecked: Vec<String> = meta
            .topics
            .iter()
            .filter(|t| !self.checked.contains(&t.name))
            .map(|t| t.name.clone())
            .collect();
        self.note_source_topics(meta.topics);
        // Every topic the source announces is checked before its first batch arrives, so a
        // refusal of one topic comes before anything is written to another.
        if !unchecked.is_empty() {
            self.check_targets(&unchecked).await?;
        }
        if !meta.groups.is_empty() {
            self.groups = meta.groups;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        self.produce_pending().await?;
        self.await_in_flight().await?;
        for (topic, sp, next) in std::mem::take(&mut self.advances) {
            self.map.advance(&topic, sp, next);
        }
        self.save_map().await?;
        for a in self.acks.drain(..) {
            a.resolve();
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        self.flush().await?;
        self.restore_groups().await?;
        tracing::info!(records = self.produced, "kafka sink closed");
        Ok(())
    }
}
