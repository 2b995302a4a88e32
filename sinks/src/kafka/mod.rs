//! The `kafka` sink: produces records to a cluster — the writing half of a restore, or of a
//! cluster-to-cluster copy.
//!
//! Records keep keys, values, headers (nulls and repeats) and timestamps exactly. The
//! producer is idempotent (acks=all). Acks resolve on `flush`, after the offset map is
//! saved, so a checkpoint never gets ahead of the map; on restart the map and the target's
//! end offsets tell which records already landed, and those are not produced again.
//!
//! This folder: `config.rs` (options and factory), `target.rs` (target topics: created when
//! missing, checked before the first write), `mod.rs` (the engine: partitioning, passthrough of
//! raw batches, produce calls in flight, the offset map, group offsets). Its integration tests
//! are `cli/tests/backup_restore.rs` and `cli/tests/restore_safety.rs`.

mod config;
mod target;

pub use config::{GroupOptions, KafkaSinkConfig, KafkaSinkFactory, Partitioning};

pub use target::TargetTopic;

use crate::offset_map::{OffsetMap, OffsetMapper, ProducerIdentity};
use crate::partitioner::java_partition;
use async_trait::async_trait;
use ferry_core::{
    Ack, Batch, Error, Offsets, Result, Sink, SourceMetadata, Storage, TopicSettings,
};
use ferry_kafka::batch::BatchIter;
use ferry_kafka::{
    Client, CompressionCodec, EncodedBatch, OffsetSpec, ProduceBatch, ProduceItem, ProduceRecord,
    Producer, ProducerConfig,
};
use std::collections::{BTreeMap, HashMap, HashSet};

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
    /// On resume, each mapped target partition's end when the sink opened, until this run's
    /// first write there: anything between is somebody else's (see `check_first_landing`).
    resumed_at: HashMap<(String, i32), i64>,
    produced: u64,
    /// Produce calls on the wire, oldest first (at most [`CALLS_IN_FLIGHT`]).
    in_flight: std::collections::VecDeque<tokio::task::JoinHandle<InFlightResult>>,
    /// Batches written since the last flush: (topic, source partition, next offset).
    advances: Vec<(String, i32, i64)>,
}

/// Where a produce request's batches landed, with the origin of each record.
type InFlightResult = ferry_kafka::Result<(Vec<ferry_kafka::ProduceResult>, Vec<Vec<(i32, i64)>>)>;

/// How long a resuming sink waits for records above a partition's high watermark to be
/// replicated or dropped. Kafka takes a silent follower out of the in-sync replicas after
/// `replica.lag.time.max.ms` (30 s by default); until then the high watermark stands still.
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The end of `topic`/`partition` once nothing in it is undecided. A run killed while its
/// Produce waited for replicas (a follower just died, say) leaves records the leader has
/// appended above the high watermark: they become readable once replicated, or vanish if
/// the leader fails first. Counting from the high watermark alone, a re-run would write
/// them again, and both copies would show once they are replicated (found by the kill -9
/// campaign on the 3-node cluster, `benches/chaos.sh --cluster`). So this waits until the
/// high watermark reaches the leader's log end, and returns it. `hw` is the high
/// watermark already read.
async fn settled_end(client: &Client, topic: &str, partition: i32, hw: i64) -> Result<i64> {
    let started = std::time::Instant::now();
    let mut hw = hw;
    let mut reported = false;
    loop {
        let leo = client
            .log_end_offsets(topic, &[partition])
            .await
            .map_err(kerr)?
            .get(&partition)
            .copied()
            .unwrap_or(hw);
        if leo <= hw {
            return Ok(hw);
        }
        if !reported {
            tracing::info!(
                topic,
                partition,
                high_watermark = hw,
                log_end = leo,
                "records an earlier run produced are not replicated yet; waiting until they are (or are dropped) before resuming"
            );
            reported = true;
        }
        if started.elapsed() > SETTLE_LIMIT {
            return Err(Error::connection(
                "sink kafka",
                true,
                format!(
                    "{topic}/{partition}: records at offsets {hw}..{leo} are still not replicated after                      {}s, so it cannot be told whether they will stay; check the partition's replicas                      (kafka-topics --describe), then run again",
                    SETTLE_LIMIT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        hw = client
            .list_offsets(topic, &[partition], OffsetSpec::Latest)
            .await
            .map_err(kerr)?
            .get(&partition)
            .copied()
            .unwrap_or(hw);
    }
}

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
            resumed_at: HashMap::new(),
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
        let request_timeout = cfg.request_timeout;
        let client = Client::connect(cfg).await.map_err(kerr)?;
        let producer = client
            .producer(ProducerConfig {
                // The sink's `request_timeout`, not the producer's default of 30 s: before, a
                // restore to brokers that accepted requests and never answered waited 35 s per
                // Produce whatever the pipeline said (found by the fault tests,
                // `restore_gives_up_on_silent_brokers_and_a_rerun_completes_it_exactly`).
                request_timeout,
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
            self.check_first_landing(res);
            for (i, (sp, so)) in origin.iter().enumerate() {
                if let Some(off) = res.offset_of(i) {
                    self.map.record(&res.topic, *sp, *so, res.partition, off);
                }
            }
            self.produced += origin.len() as u64;
        }
        Ok(())
    }

    /// On resume, the first records this run lands on a target partition must land at the
    /// end the sink saw when it opened. Further on means records arrived in between: most
    /// likely requests an earlier run left in flight (a stalled network delivers them late),
    /// which may duplicate records this run writes. They cannot be taken back, so they are
    /// reported loudly, with where they are.
    fn check_first_landing(&mut self, res: &ferry_kafka::ProduceResult) {
        // Empty except while a resumed run has not yet written everywhere: no key to build
        // per result on a fresh run or once every partition has had its first write.
        if self.resumed_at.is_empty() {
            return;
        }
        let key = (res.topic.clone(), res.partition);
        let Some(opened_at) = self.resumed_at.remove(&key) else {
            return;
        };
        if res.base_offset > opened_at {
            metrics::counter!("ferry_restore_foreign_records_total", "topic" => res.topic.clone())
                .increment((res.base_offset - opened_at) as u64);
            tracing::error!(
                topic = %res.topic,
                partition = res.partition,
                from = opened_at,
                to = res.base_offset,
                records = res.base_offset - opened_at,
                "records landed on the target between this run's start and its first write there \
                 (most likely requests an earlier run of this pipeline left in flight); they may \
                 duplicate restored records: check these offsets"
            );
        }
    }

    async fn save_map(&self) -> Result<()> {
        if let Some(state) = &self.state {
            let mut map = self
                .map
                .to_map(&self.pipeline, ferry_formats::layout::now_ms());
            // The producer id and epoch every write until the next save uses: a re-run
            // takes them over (see `open`).
            if let Some(producer) = &self.producer {
                map.producer = producer
                    .ensure_initialized()
                    .await
                    .map_err(kerr)?
                    .map(|(id, epoch)| ProducerIdentity { id, epoch });
            }
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
        let mut map: OffsetMap = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupt(format!("{state}/{}: {e}", self.map_key())))?;
        let earlier = map.producer.take();
        self.map = OffsetMapper::from_map(map);
        let client = self.client().await?;
        // Continue as the earlier run's producer id, one epoch on: requests that run left in
        // flight are then refused wherever this run has written (a stalled network can
        // deliver them minutes after it died).
        if let (Some(p), Some(producer)) = (earlier, &self.producer) {
            producer.take_over(p.id, p.epoch).await;
            tracing::info!(
                producer_id = p.id,
                epoch = p.epoch + 1,
                "continuing the earlier run's producer id with the next epoch: what it left in \
                 flight is refused where this run writes"
            );
        }
        // Records produced after the map was last saved: the target's end is past the map's.
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
            let hw = now.get(&partition).copied().unwrap_or(end);
            let latest = settled_end(&client, &topic, partition, hw).await?;
            self.resumed_at.insert((topic.clone(), partition), latest);
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
            self.create_missing(&unchecked).await?;
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

    async fn plan_targets(
        &mut self,
        source_topics: Vec<TopicSettings>,
        topics: &[String],
    ) -> Result<Option<ferry_core::TargetReport>> {
        self.note_source_topics(source_topics);
        let targets = self.inspect_targets(topics).await?;
        let refusals = self.refusals(&targets);
        let allow_existing = self.allows_existing();
        Ok(Some(ferry_core::TargetReport {
            topics: targets
                .iter()
                .map(|t| ferry_core::TargetTopicState {
                    topic: t.topic.clone(),
                    exists: t.exists,
                    partitions: t.partitions,
                    records: t.records.clone(),
                    total_records: t.total_records(),
                    note: t.plan_note(allow_existing),
                })
                .collect(),
            allow_existing,
            refusals,
        }))
    }
}
