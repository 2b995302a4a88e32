//! Produce: exact records (keys, values, headers, timestamps) as v2 batches, idempotent by
//! default (InitProducerId + per-partition sequences), retried in order.
//!
//! Kafka accepts exactly one record batch per partition in a Produce request (v3+), so a
//! partition with several batches to send sends them one request after the other; different
//! partitions of the same leader share requests, and leaders are written in parallel.

use crate::batch::{
    encode_batch, record_size_estimate, BatchProducer, ProduceRecord, BATCH_HEADER_LEN,
};
use crate::client::{clone_err, opt_uuid, topic_name, Client};
use crate::error::{ClientError, KafkaCode, Result};
use crate::produce_frame;
use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, ProduceRequest, ProducerId};
use kafka_protocol::records::Compression;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, warn};

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Idempotent producer (no duplicates on retry, order kept). Needs `acks = -1`.
    pub idempotent: bool,
    /// -1 (all in-sync replicas), 1 (leader) or 0 (no answer; offsets unknown).
    pub acks: i16,
    /// Codec of the batches Ferry writes.
    pub compression: Compression,
    /// How long the broker may take to replicate (and Ferry waits beyond it).
    pub request_timeout: Duration,
    /// Largest Produce request; a record that cannot fit is refused.
    pub max_request_bytes: usize,
    /// Produce requests are filled up to about this size (at least one batch each) and
    /// kept in flight: on Kafka, many ~1 MiB requests went faster than fewer large ones
    /// (the broker reads a connection's next request only after answering the last).
    pub target_request_bytes: usize,
    /// Target size of one record batch before compression (a bigger record gets its own).
    pub max_batch_bytes: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            idempotent: true,
            acks: -1,
            compression: Compression::None,
            request_timeout: Duration::from_secs(30),
            max_request_bytes: 1024 * 1024,
            target_request_bytes: 1024 * 1024,
            max_batch_bytes: 1024 * 1024,
        }
    }
}

/// Records for one partition. They go out in order, as one or more batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceBatch {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Records in order.
    pub records: Vec<ProduceRecord>,
}

/// A v2 record batch encoded elsewhere (read from a backup), produced as it is: only the
/// fields a producer owns change (base offset, leader epoch, producer id, epoch and
/// sequence, the transactional flag) and the CRC with them. Its records, timestamps and
/// compression stay byte for byte. [`EncodedBatch::new`] checks it and takes its own copy,
/// so the buffer the batch was read into is not held while it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    topic: String,
    partition: i32,
    /// The batch with the producer's fields cleared.
    bytes: Bytes,
    count: usize,
}

impl EncodedBatch {
    /// Checks a batch for `topic`/`partition`: a data batch (not control) with
    /// consecutive offsets (record count = last offset delta + 1: no compaction holes,
    /// which the broker would refuse).
    pub fn new(topic: impl Into<String>, partition: i32, bytes: &[u8]) -> Result<Self> {
        let (bytes, count) = producer_owned_fields_cleared(bytes)?;
        Ok(EncodedBatch {
            topic: topic.into(),
            partition,
            bytes,
            count,
        })
    }

    /// Bytes of the batch.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the batch has no bytes (never, for a checked batch).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// What one produce call carries for a partition: records to encode, or a batch encoded
/// already. Items of a partition land in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProduceItem {
    /// Records, encoded into batches by the producer.
    Records(ProduceBatch),
    /// A batch sent as it is (see [`EncodedBatch`]).
    Encoded(EncodedBatch),
}

/// Offsets given to a run of consecutive records of a [`ProduceBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRun {
    /// Index of the first record of the run in [`ProduceBatch::records`].
    pub first_index: usize,
    /// Records in the run.
    pub count: usize,
    /// Offset of the run's first record (-1 with acks=0). The others follow it.
    pub base_offset: i64,
}

/// Where a [`ProduceBatch`] landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceResult {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset of the first record (-1 with acks=0, an empty batch, or a batch the broker
    /// had already when a retry reached it, see below).
    pub base_offset: i64,
    /// Offsets per wire batch: a batch that had to be split may not be contiguous. A wire
    /// batch a dying leader wrote without answering, and whose retry came too late for the
    /// broker's duplicate check, has no run: its records are written, their offsets unknown.
    pub runs: Vec<OffsetRun>,
    /// Broker append time, when the topic uses LogAppendTime.
    pub log_append_time: Option<i64>,
}

impl ProduceResult {
    /// The offset record `index` of the batch got.
    pub fn offset_of(&self, index: usize) -> Option<i64> {
        self.runs
            .iter()
            .find(|r| index >= r.first_index && index < r.first_index + r.count)
            .map(|r| {
                if r.base_offset < 0 {
                    -1
                } else {
                    r.base_offset + (index - r.first_index) as i64
                }
            })
    }
}

struct State {
    producer_id: i64,
    epoch: i16,
    /// Per partition, the next batch's base sequence and its [`Stamp::order`] (how many
    /// batches this producer id and epoch stamped there).
    next: HashMap<(String, i32), (i32, u64)>,
    /// Counts initializations: batches of an earlier producer id or epoch carry an older one.
    generation: u64,
    initialized: bool,
    /// An earlier run's producer id and epoch to continue as (see [`Producer::take_over`]).
    take_over: Option<(i64, i16)>,
}

/// What concurrent calls share: the idempotence state and the order of the calls.
struct Shared {
    state: tokio::sync::Mutex<State>,
    turns: Turns,
    /// Per partition, the latest call (ticket) a batch of which landed on the fast path: a
    /// later call's batch landing proves an earlier call's batches are in the log.
    landed_by: std::sync::Mutex<HashMap<(String, i32), u64>>,
    /// Which partitions the broker holds state of this producer id and epoch for.
    landings: std::sync::Mutex<Landings>,
}

/// Where a batch stands among the batches this producer stamped for its partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Stamp {
    /// [`State::generation`] when stamped (0: not stamped, a producer that is not idempotent).
    generation: u64,
    /// Place among the partition's batches of that generation, from 0.
    order: u64,
}

/// Per partition, the first (lowest [`Stamp::order`]) batch of the current producer id and
/// epoch that a broker answered as written.
///
/// Why it matters: a broker that holds no state for a producer id on a partition takes a
/// batch with *any* sequence (KIP-360, Kafka 2.5+: so that a producer whose records
/// retention removed can go on). So until one of our batches has landed on a partition,
/// the broker's sequence check does not keep our batches in order there: if the first
/// batch is refused (a leader moving, NOT_ENOUGH_REPLICAS) and the second, already on the
/// wire or routed to the new leader, is taken, the first is lost, and its retry is answered
/// OUT_OF_ORDER_SEQUENCE_NUMBER exactly like a batch the broker has already. Hence: a
/// partition's batches go on the fast path only once one has landed (before that, one at a
/// time, the careful way), and an out-of-order answer counts as "written already" only for
/// a batch after one that landed (see [`BeyondWindow`]). Once a batch landed with acks=all,
/// every in-sync replica holds it, so a new leader holds the producer's state too — until
/// the broker drops the state of a producer that has not written for
/// `producer.id.expiration.ms` (a day by default): a partition with no landing for
/// [`STATE_MAY_BE_GONE`] starts again with one batch at a time.
#[derive(Debug, Default)]
struct Landings {
    generation: u64,
    /// Per partition: the lowest order that landed, and when a batch last landed.
    lowest: HashMap<(String, i32), (u64, std::time::Instant)>,
}

/// How long after its last landing a partition's batches are pipelined: far below the
/// brokers' default `producer.id.expiration.ms` (1 day), so that a lowered one is covered too,
/// at the cost of one batch at a time on a partition that was idle this long.
const STATE_MAY_BE_GONE: std::time::Duration = std::time::Duration::from_secs(600);

impl Landings {
    /// A new producer id or epoch: the brokers hold no state of it anywhere yet.
    fn reset(&mut self, generation: u64) {
        self.generation = generation;
        self.lowest.clear();
    }

    /// The broker answered the batch stamped `stamp` for `key` as written.
    fn note(&mut self, key: &(String, i32), stamp: Stamp) {
        if stamp.generation != self.generation || stamp.generation == 0 {
            return;
        }
        let now = std::time::Instant::now();
        // Looked up before inserting: no key to build for every batch that lands.
        match self.lowest.get_mut(key) {
            Some(entry) => *entry = (entry.0.min(stamp.order), now),
            None => {
                self.lowest.insert(key.clone(), (stamp.order, now));
            }
        }
    }

    /// Whether a batch of the current producer id and epoch has landed on `key`, lately
    /// enough that the broker still holds the producer's state.
    fn any(&self, key: &(String, i32)) -> bool {
        self.lowest
            .get(key)
            .is_some_and(|(_, last)| last.elapsed() < STATE_MAY_BE_GONE)
    }

    /// Whether a batch stamped before `stamp` landed on `key`: then the broker had our
    /// state when anything after it was taken, and took it only in sequence.
    fn before(&self, key: &(String, i32), stamp: Stamp) -> bool {
        stamp.generation == self.generation
            && self.lowest.get(key).is_some_and(|(l, _)| *l < stamp.order)
    }
}

/// Writes records to Kafka. Made by [`Client::producer`]; clones share the producer id and
/// sequences. Calls are ordered by [`Producer::start`]: each call's requests go on the wire
/// after the previous call's, so several calls can be in flight at once, and their answers
/// are awaited with [`InFlight::finish`].
#[derive(Clone)]
pub struct Producer {
    client: Client,
    cfg: ProducerConfig,
    shared: Arc<Shared>,
}

/// The order of produce calls: each call takes a ticket when its requests go out, and a call
/// that must retry waits until every earlier call has finished (its retries must land after
/// theirs, or the broker's sequence check refuses them).
struct Turns {
    next: AtomicU64,
    /// Tickets finished out of order, and below the watermark every ticket finished.
    done: std::sync::Mutex<BTreeSet<u64>>,
    watermark: watch::Sender<u64>,
    /// Calls with a ticket below this fail instead of retrying: an earlier call failed, so
    /// their sequence numbers no longer follow what the broker has.
    poisoned_below: AtomicU64,
}

impl Turns {
    fn new() -> Self {
        Turns {
            next: AtomicU64::new(0),
            done: std::sync::Mutex::new(BTreeSet::new()),
            watermark: watch::Sender::new(0),
            poisoned_below: AtomicU64::new(0),
        }
    }

    fn complete(&self, ticket: u64) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.insert(ticket);
        let mut w = *self.watermark.borrow();
        while done.remove(&w) {
            w += 1;
        }
        self.watermark.send_replace(w);
    }

    /// Marks every call started so far as failed.
    fn poison(&self) {
        self.poisoned_below
            .fetch_max(self.next.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    async fn wait_turn(&self, ticket: u64) {
        let mut rx = self.watermark.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = rx.wait_for(|w| *w >= ticket).await;
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("cfg", &self.cfg).finish()
    }
}

struct Wire {
    batch_index: usize,
    first_index: usize,
    count: usize,
    bytes: Bytes,
    stamp: Stamp,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire")
            .field("records", &self.count)
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Kafka's sequence arithmetic: wraps from i32::MAX to 0.
fn next_sequence(seq: i32, n: usize) -> i32 {
    ((seq as i64 + n as i64) % (i32::MAX as i64 + 1)) as i32
}

impl Client {
    /// A producer writing through this client.
    pub fn producer(&self, cfg: ProducerConfig) -> Result<Producer> {
        if cfg.idempotent && cfg.acks != -1 {
            return Err(ClientError::Config(
                "the idempotent producer needs acks = -1 (all)".into(),
            ));
        }
        if !matches!(cfg.acks, -1..=1) {
            return Err(ClientError::Config(format!(
                "acks must be -1, 0 or 1, not {}",
                cfg.acks
            )));
        }
        Ok(Producer {
            client: self.clone(),
            cfg,
            shared: Arc::new(Shared {
                state: tokio::sync::Mutex::new(State {
                    producer_id: -1,
                    epoch: -1,
                    next: HashMap::new(),
                    generation: 0,
                    initialized: false,
                    take_over: None,
                }),
                turns: Turns::new(),
                landed_by: std::sync::Mutex::new(HashMap::new()),
                landings: std::sync::Mutex::new(Landings::default()),
            }),
        })
    }
}

impl Producer {
    /// The configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.cfg
    }

    /// The producer id and epoch, once the idempotent producer is initialized.
    pub async fn producer_id(&self) -> Option<(i64, i16)> {
        let s = self.shared.state.lock().await;
        s.initialized.then_some((s.producer_id, s.epoch))
    }

    /// Makes this producer continue as an earlier run's `producer_id` with the epoch after
    /// `epoch` (sequences from 0), instead of asking the cluster for a new id: once it has
    /// written to a partition, the broker refuses there whatever the earlier run still had
    /// in flight (a request of an older epoch is fenced, `INVALID_PRODUCER_EPOCH`), so a
    /// late delivery cannot land after this run's records. This is the epoch bump KIP-360
    /// gives idempotent producers, done across runs. Ignored when the epoch cannot grow
    /// (a new id is asked for then, as it is after a failed call).
    pub async fn take_over(&self, producer_id: i64, epoch: i16) {
        let mut st = self.shared.state.lock().await;
        if producer_id >= 0 && (0..i16::MAX - 1).contains(&epoch) {
            st.take_over = Some((producer_id, epoch));
            st.initialized = false;
        }
    }

    /// The producer id and epoch this producer writes with, asking the cluster for them
    /// first when it has none yet (an idempotent producer only; `None` otherwise).
    pub async fn ensure_initialized(&self) -> Result<Option<(i64, i16)>> {
        if !self.cfg.idempotent {
            return Ok(None);
        }
        let mut st = self.shared.state.lock().await;
        if !st.initialized {
            self.init(&mut st).await?;
        }
        Ok(Some((st.producer_id, st.epoch)))
    }

    async fn init(&self, st: &mut State) -> Result<()> {
        if let Some((id, epoch)) = st.take_over.take() {
            st.producer_id = id;
            st.epoch = epoch + 1;
            self.new_generation(st);
            debug!(
                producer_id = id,
                epoch = st.epoch,
                "idempotent producer continues an earlier run's id with the next epoch"
            );
            return Ok(());
        }
        let client = &self.client;
        let resp =
            client
                .retry("InitProducerId", || async {
                    let conn = client.any_conn().await?;
                    let v = conn.version(ApiKey::InitProducerId)?;
                    let req = InitProducerIdRequest::default()
                        .with_transactional_id(None)
                        .with_transaction_timeout_ms(60_000)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1);
                    let r = conn.send(&req, v).await?;
                    match KafkaCode::from_code(r.error_code) {
                        None => Ok(r),
                        Some(code) => Err(ClientError::kafka("InitProducerId", "", code, None)
                            .with_addr(conn.addr())),
                    }
                })
                .await?;
        st.producer_id = resp.producer_id.0;
        st.epoch = resp.producer_epoch;
        self.new_generation(st);
        debug!(
            producer_id = st.producer_id,
            epoch = st.epoch,
            "idempotent producer initialized"
        );
        Ok(())
    }

    /// Starts the sequences of a new producer id or epoch, which no broker holds state of.
    fn new_generation(&self, st: &mut State) {
        st.next.clear();
        st.generation += 1;
        st.initialized = true;
        self.landings().reset(st.generation);
    }

    fn landings(&self) -> std::sync::MutexGuard<'_, Landings> {
        self.shared
            .landings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Produces `batches` and returns, per batch, where its records landed. All batches to
    /// the same leader share Produce requests; batches of one partition keep their order.
    pub async fn produce(&self, batches: Vec<ProduceBatch>) -> Result<Vec<ProduceResult>> {
        let prepared = self.prepare(batches)?;
        self.send_prepared(prepared).await
    }

    /// Checks and encodes `batches` into wire batches without touching the producer's state,
    /// so a caller can prepare the next call while the previous one waits for its answers.
    /// Calls to [`Producer::send_prepared`] must come in the order the data must land.
    pub fn prepare(&self, batches: Vec<ProduceBatch>) -> Result<Prepared> {
        self.prepare_items(batches.into_iter().map(ProduceItem::Records).collect())
    }

    /// [`Producer::prepare`] for records and already encoded batches; the result of an
    /// [`ProduceItem::Encoded`] item counts its records from index 0.
    pub fn prepare_items(&self, items: Vec<ProduceItem>) -> Result<Prepared> {
        let limit = self.cfg.max_request_bytes;
        let fits = |topic: &str, partition: i32, size: usize| {
            if size > limit {
                return Err(ClientError::RecordTooLarge {
                    topic: topic.to_string(),
                    partition,
                    size,
                    max: limit,
                });
            }
            Ok(())
        };
        // Refuse what can never be sent before sending anything.
        for item in &items {
            match item {
                ProduceItem::Records(b) => {
                    let overhead = BATCH_HEADER_LEN + 128 + b.topic.len();
                    for r in &b.records {
                        fits(&b.topic, b.partition, record_size_estimate(r) + overhead)?;
                    }
                }
                ProduceItem::Encoded(e) => {
                    fits(&e.topic, e.partition, e.bytes.len() + 128 + e.topic.len())?;
                }
            }
        }
        let mut encoded = Vec::new();
        let mut targets = Vec::with_capacity(items.len());
        for (bi, item) in items.into_iter().enumerate() {
            match item {
                ProduceItem::Records(b) => {
                    self.encode_wires(bi, &b, &mut encoded)?;
                    // The records are in `encoded` now: let go of them (and of the buffers
                    // their bytes may be slices of) while the call waits.
                    targets.push((b.topic, b.partition));
                }
                ProduceItem::Encoded(e) => {
                    // An idempotent producer stamps its fields and the CRC when it sends.
                    let bytes = if self.cfg.idempotent {
                        e.bytes
                    } else {
                        stamp_producer(e.bytes, BatchProducer::default())
                    };
                    encoded.push((
                        (e.topic.clone(), e.partition),
                        Wire {
                            batch_index: bi,
                            first_index: 0,
                            count: e.count,
                            bytes,
                            stamp: Stamp::default(),
                        },
                    ));
                    targets.push((e.topic, e.partition));
                }
            }
        }
        Ok(Prepared { targets, encoded })
    }

    /// Sends what [`Producer::prepare`] encoded and waits for the answers.
    pub async fn send_prepared(&self, prepared: Prepared) -> Result<Vec<ProduceResult>> {
        self.start(prepared).await?.finish().await
    }

    /// Stamps producer id, epoch and sequence numbers on what [`Producer::prepare`] encoded
    /// and puts all of it on the wire, behind every earlier call's requests. The answers are
    /// awaited with [`InFlight::finish`], so the caller can start the next call meanwhile;
    /// calls to `start` must come in the order the data must land.
    pub async fn start(&self, prepared: Prepared) -> Result<InFlight> {
        let Prepared { targets, encoded } = prepared;
        let mut guard = self.shared.state.lock().await;
        let st = &mut *guard;
        if self.cfg.idempotent && !st.initialized {
            self.init(st).await?;
        }
        let turns = &self.shared.turns;
        let ticket = turns.next.fetch_add(1, Ordering::SeqCst);
        let turn = Turn {
            shared: self.shared.clone(),
            ticket,
            finished: false,
        };
        let results: Vec<ProduceResult> = targets
            .into_iter()
            .map(|(topic, partition)| ProduceResult {
                topic,
                partition,
                base_offset: -1,
                runs: Vec::new(),
                log_append_time: None,
            })
            .collect();
        // Stamp producer id, epoch and sequence in order (the header fields are outside the
        // record data; the CRC is computed again).
        let mut queues: BTreeMap<(String, i32), VecDeque<Wire>> = BTreeMap::new();
        for (key, mut w) in encoded {
            if self.cfg.idempotent {
                let (seq, order) = st.next.entry(key.clone()).or_insert((0, 0));
                let producer = BatchProducer {
                    producer_id: st.producer_id,
                    producer_epoch: st.epoch,
                    base_sequence: *seq,
                };
                w.stamp = Stamp {
                    generation: st.generation,
                    order: *order,
                };
                *seq = next_sequence(*seq, w.count);
                *order += 1;
                w.bytes = stamp_producer(w.bytes, producer);
            }
            queues.entry(key).or_default().push_back(w);
        }
        let sent = self.enqueue_all(&queues).await;
        drop(guard);
        Ok(InFlight {
            producer: self.clone(),
            turn,
            results,
            queues,
            sent,
        })
    }
    /// Splits a batch's records into wire batches of at most `max_batch_bytes` and encodes
    /// them, in order, without producer fields (see [`stamp_producer`]).
    fn encode_wires(
        &self,
        bi: usize,
        b: &ProduceBatch,
        out: &mut Vec<((String, i32), Wire)>,
    ) -> Result<()> {
        let batch_limit = self
            .cfg
            .max_batch_bytes
            .min(self.cfg.max_request_bytes)
            .max(1);
        let mut start = 0;
        while start < b.records.len() {
            let mut size = 0;
            let mut end = start;
            while end < b.records.len() {
                let s = record_size_estimate(&b.records[end]);
                if end > start && size + s > batch_limit {
                    break;
                }
                size += s;
                end += 1;
            }
            let key = (b.topic.clone(), b.partition);
            let bytes = encode_batch(
                &b.records[start..end],
                self.cfg.compression,
                BatchProducer::default(),
            )?;
            out.push((
                key,
                Wire {
                    batch_index: bi,
                    first_index: start,
                    count: end - start,
                    bytes,
                    stamp: Stamp::default(),
                },
            ));
            start = end;
        }
        Ok(())
    }

    /// The careful path for what the pipelined requests did not land: round by round, one
    /// request per leader holding the head batch of each partition, with retries. Every
    /// earlier batch has landed by then, so an OUT_OF_ORDER_SEQUENCE_NUMBER answer means the
    /// broker has the batch already (see [`BeyondWindow`]) — provided a batch before it
    /// landed, so that the broker was checking our sequences (see [`Landings`]); otherwise
    /// the answer is an error.
    async fn careful(
        &self,
        ticket: u64,
        queues: &mut BTreeMap<(String, i32), VecDeque<Wire>>,
        results: &mut [ProduceResult],
    ) -> Result<()> {
        // Rounds until every queue is empty; retriable errors wait out the client's retry
        // policy, which gives up with the last of them.
        let mut backoff = self.client.config().retry.start();
        let mut beyond = BeyondWindow::default();
        while queues.values().any(|q| !q.is_empty()) {
            let mut round = CarefulRound::default();
            // Heads of every partition, grouped by leader.
            let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
            for (key, q) in queues.iter() {
                if q.is_empty() {
                    continue;
                }
                match backoff.attempt(self.client.leader_gen(&key.0, key.1)).await {
                    Ok((l, generation)) => {
                        round.seen.insert(key.0.clone(), generation);
                        by_leader.entry(l).or_default().push(key.clone());
                    }
                    Err(e) if e.is_retriable() => round.retry(key, e),
                    Err(e) => return Err(e),
                }
            }
            let sends = by_leader.into_iter().map(|(leader, keys)| {
                let heads: Vec<((String, i32), Bytes)> = keys
                    .iter()
                    .filter_map(|k| {
                        queues
                            .get(k)
                            .and_then(|q| q.front())
                            .map(|w| (k.clone(), w.bytes.clone()))
                    })
                    .collect();
                async move { (self.send_leader(leader, heads.clone()).await, heads) }
            });
            for (outcome, heads) in backoff.attempt(join_all(sends)).await {
                match outcome {
                    Ok(answers) => {
                        for (key, ans) in answers {
                            let Some(q) = queues.get_mut(&key) else {
                                continue;
                            };
                            match ans {
                                Ok((base, append_time)) => {
                                    if let Some(w) = q.pop_front() {
                                        self.landings().note(&key, w.stamp);
                                        beyond.confirm(&key);
                                        landed(results, &w, base, append_time);
                                    }
                                }
                                Err(e) if e.is_retriable() => round.retry(&key, e),
                                Err(e)
                                    if is_out_of_order(&e)
                                        && q.front().is_some_and(|w| {
                                            self.landings().before(&key, w.stamp)
                                        }) =>
                                {
                                    if let Some(w) = q.pop_front() {
                                        beyond.suspect(&key, w, e);
                                    }
                                }
                                Err(e) => return Err(self.fatal(&key, e)),
                            }
                        }
                    }
                    Err(e) if e.is_retriable() => {
                        warn!(error = %e, "produce request failed; retrying");
                        for (key, _) in &heads {
                            round.retry(key, clone_err(&e));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(last) = round.last else {
                continue;
            };
            let Some(delay) = backoff.next_delay() else {
                return Err(last);
            };
            for t in &round.topics {
                self.client
                    .invalidate_topic(t, round.seen.get(t).copied().unwrap_or(u64::MAX));
            }
            tokio::time::sleep(delay).await;
        }
        match beyond.unconfirmed(|key| self.landed_after(key, ticket)) {
            Some((key, e)) => Err(self.fatal(&key, e)),
            None => Ok(()),
        }
    }

    /// Notes that a batch of `key` from call `ticket` landed (see [`Shared::landed_by`]).
    fn note_landed(&self, key: &(String, i32), ticket: u64) {
        let mut by = self
            .shared
            .landed_by
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let latest = by.entry(key.clone()).or_insert(ticket);
        *latest = (*latest).max(ticket);
    }

    /// Whether a call started after call `ticket` has landed a batch of `key`.
    fn landed_after(&self, key: &(String, i32), ticket: u64) -> bool {
        let by = self
            .shared
            .landed_by
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        by.get(key).is_some_and(|t| *t > ticket)
    }

    fn fatal(&self, key: &(String, i32), e: ClientError) -> ClientError {
        match e.code() {
            // Not a lost sequence: a newer run took this producer id over (see
            // `Producer::take_over`) and the broker refuses this one's writes from now on.
            Some(KafkaCode::INVALID_PRODUCER_EPOCH) => ClientError::Fenced(format!(
                "{}/{}: a newer producer with this producer id wrote here, so the broker refuses \
                 this one's older epoch ({e}); a later run of the same pipeline took over, and \
                 nothing of this request was written",
                key.0, key.1
            )),
            Some(KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER)
            | Some(KafkaCode::UNKNOWN_PRODUCER_ID) => ClientError::Producer(format!(
                "{}/{}: the broker rejected the idempotent producer's sequence ({e}); records \
                     may be missing or duplicated around this point. The producer re-initializes \
                     on the next call",
                key.0, key.1
            )),
            Some(KafkaCode::MESSAGE_TOO_LARGE) | Some(KafkaCode::RECORD_LIST_TOO_LARGE) => {
                ClientError::Producer(format!(
                    "{}/{}: a batch is larger than the topic's max.message.bytes or the broker's \
                 message.max.bytes ({e}); lower max_batch_bytes or raise the topic limit",
                    key.0, key.1
                ))
            }
            _ => e,
        }
    }

    /// The fast path: puts every wire batch on the wire at once, round `r` carrying the
    /// `r`-th waiting batch of each partition, one request per leader and lane per round
    /// (Kafka takes one batch per partition per request and answers a connection's requests
    /// in order; a partition always uses the same lane, so its batches stay in order). Stops at the first request it cannot enqueue; what was not enqueued stays in
    /// `queues` for [`Producer::careful`].
    async fn enqueue_all(
        &self,
        queues: &BTreeMap<(String, i32), VecDeque<Wire>>,
    ) -> Vec<(Vec<(String, i32)>, PendingAnswers)> {
        let mut in_flight = Vec::new();
        if self.cfg.acks == 0 {
            return in_flight;
        }
        // A partition no batch of this producer id and epoch has landed on yet goes the
        // careful way, one batch at a time, until one lands (see [`Landings`]).
        let untried: HashSet<(String, i32)> = if self.cfg.idempotent {
            let landings = self.landings();
            queues
                .keys()
                .filter(|k| !landings.any(k))
                .cloned()
                .collect()
        } else {
            HashSet::new()
        };
        // Each partition keeps to one connection lane of its leader, so its batches stay in
        // order while the broker works on the lanes' requests side by side.
        let mut by_lane: BTreeMap<(i32, u8), Vec<(String, i32)>> = BTreeMap::new();
        for (key, q) in queues.iter() {
            if q.is_empty() || untried.contains(key) {
                continue;
            }
            match self.client.leader(&key.0, key.1).await {
                Ok(l) => by_lane
                    .entry((l, lane_of(key.1)))
                    .or_default()
                    .push(key.clone()),
                Err(_) => return in_flight,
            }
        }
        let depth = queues.values().map(VecDeque::len).max().unwrap_or(0);
        for d in 0..depth {
            for ((leader, lane), keys) in &by_lane {
                let heads: Vec<((String, i32), Bytes)> = keys
                    .iter()
                    .filter_map(|k| {
                        queues
                            .get(k)
                            .and_then(|q| q.get(d))
                            .map(|w| (k.clone(), w.bytes.clone()))
                    })
                    .collect();
                if heads.is_empty() {
                    continue;
                }
                let keys: Vec<(String, i32)> = heads.iter().map(|(k, _)| k.clone()).collect();
                match self.enqueue_leader(*leader, *lane, heads).await {
                    Ok(answers) => in_flight.push((keys, answers)),
                    Err(e) => {
                        debug!(error = %e, "could not enqueue a produce request; retrying carefully");
                        return in_flight;
                    }
                }
            }
        }
        in_flight
    }

    /// One Produce request per leader (more if the heads exceed `max_request_bytes`), sent
    /// and answered.
    async fn send_leader(
        &self,
        leader: i32,
        heads: Vec<((String, i32), Bytes)>,
    ) -> Result<Vec<Answer>> {
        self.enqueue_leader(leader, 0, heads).await?.await
    }

    /// Puts the Produce request(s) for `heads` on the leader's connection now and returns
    /// the future of their answers: requests enqueued one after another reach the broker in
    /// that order, so several rounds can be in flight at once.
    async fn enqueue_leader(
        &self,
        leader: i32,
        lane: u8,
        heads: Vec<((String, i32), Bytes)>,
    ) -> Result<PendingAnswers> {
        let conn = self.client.conn_lane(leader, lane).await?;
        // A throttled broker gets nothing new until its throttle time has passed (KIP-219).
        conn.wait_throttle().await;
        let (ids, v) = self
            .topic_ids(&heads, conn.version(ApiKey::Produce)?)
            .await?;
        let limit = self
            .cfg
            .target_request_bytes
            .min(self.cfg.max_request_bytes)
            .max(1);
        let timeout_ms = self.cfg.request_timeout.as_millis().min(i32::MAX as u128) as i32;
        let mut unanswered = Vec::new();
        let mut started = Vec::new();
        for part in pack_requests(heads, limit) {
            if self.cfg.acks == 0 {
                let req = ProduceRequest::default()
                    .with_transactional_id(None)
                    .with_acks(self.cfg.acks)
                    .with_timeout_ms(timeout_ms)
                    .with_topic_data(produce_topics(&part, &ids, v));
                conn.send_no_response(&req, v)?;
                unanswered.extend(part.into_iter().map(|(k, _)| (k, Ok((-1, -1)))));
                continue;
            }
            // The batches go to the socket as they are, not copied into a request buffer.
            let body = produce_frame::encode_body(
                v,
                self.cfg.acks,
                timeout_ms,
                &frame_topics(&part, &ids),
            )
            .map_err(|m| ClientError::Protocol {
                addr: conn.addr().to_string(),
                api: "Produce".into(),
                message: m,
            })?;
            let fut = conn.start_request_parts::<ProduceRequest>(
                body,
                v,
                self.cfg.request_timeout + Duration::from_secs(5),
            )?;
            started.push((fut, part));
        }
        let conn = conn.clone();
        Ok(Box::pin(async move {
            let mut out = unanswered;
            for (fut, part) in started {
                let resp = fut.await?;
                conn.throttle(resp.throttle_time_ms);
                out.extend(produce_answers(resp, v, &ids, part, conn.addr()));
            }
            Ok(out)
        }))
    }

    /// Topic ids of the topics in `heads` for Produce v13+, and the version to use: v12 at
    /// most when a topic has no id (an older cluster).
    async fn topic_ids(
        &self,
        heads: &[((String, i32), Bytes)],
        mut v: i16,
    ) -> Result<(HashMap<String, crate::client::Uuid>, i16)> {
        let mut ids = HashMap::new();
        for ((t, _), _) in heads {
            if !ids.contains_key(t) {
                match self.client.topic_meta(t).await?.id.and_then(opt_uuid) {
                    Some(id) => {
                        ids.insert(t.clone(), id);
                    }
                    None => v = v.min(12),
                }
            }
        }
        Ok((ids, v))
    }
}

/// Packs `heads` into requests of about `limit` bytes each (at least one batch each), in
/// order.
fn pack_requests(
    heads: Vec<((String, i32), Bytes)>,
    limit: usize,
) -> Vec<Vec<((String, i32), Bytes)>> {
    let mut requests: Vec<Vec<((String, i32), Bytes)>> = vec![Vec::new()];
    let mut size = 0;
    for h in heads {
        let s = h.1.len() + h.0 .0.len() + 32;
        if size + s > limit && requests.last().is_some_and(|r| !r.is_empty()) {
            requests.push(Vec::new());
            size = 0;
        }
        size += s;
        if let Some(last) = requests.last_mut() {
            last.push(h);
        }
    }
    requests.retain(|r| !r.is_empty());
    requests
}

/// The topics of one copy-free Produce request: partitions grouped by topic, in order.
fn frame_topics(
    part: &[((String, i32), Bytes)],
    ids: &HashMap<String, crate::client::Uuid>,
) -> Vec<produce_frame::TopicData> {
    let mut topics: Vec<produce_frame::TopicData> = Vec::new();
    for ((t, p), bytes) in part {
        let pd = produce_frame::PartitionData {
            index: *p,
            records: bytes.clone(),
        };
        match topics.iter_mut().find(|x| x.name == *t) {
            Some(x) => x.partitions.push(pd),
            None => topics.push(produce_frame::TopicData {
                name: t.clone(),
                topic_id: ids.get(t).copied().unwrap_or_default(),
                partitions: vec![pd],
            }),
        }
    }
    topics
}

/// One partition's answer: base offset and log-append time, DUPLICATE_SEQUENCE_NUMBER
/// counted as written (the idempotent producer's retry of a batch that had landed), any
/// other code an error with the broker's messages.
fn partition_answer(
    name: &str,
    p: kafka_protocol::messages::produce_response::PartitionProduceResponse,
    addr: &str,
) -> Result<(i64, i64)> {
    match KafkaCode::from_code(p.error_code) {
        None => Ok((p.base_offset, p.log_append_time_ms)),
        Some(KafkaCode::DUPLICATE_SEQUENCE_NUMBER) => {
            warn!(topic = %name, partition = p.index, "broker reports a duplicate batch; already written");
            Ok((p.base_offset, p.log_append_time_ms))
        }
        Some(code) => {
            let mut msg = p.error_message.map(|m| m.to_string());
            if let Some(first) = p.record_errors.first() {
                let detail = format!(
                    "record {}: {}",
                    first.batch_index,
                    first
                        .batch_index_error_message
                        .as_ref()
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                );
                msg = Some(msg.map_or(detail.clone(), |m| format!("{m}; {detail}")));
            }
            Err(
                ClientError::kafka("Produce", format!("{name}/{}", p.index), code, msg)
                    .with_addr(addr),
            )
        }
    }
}

/// The answers of one Produce request for the partitions of `part`, in `part` order; a
/// partition the broker did not answer is a protocol error.
fn produce_answers(
    resp: kafka_protocol::messages::ProduceResponse,
    v: i16,
    ids: &HashMap<String, crate::client::Uuid>,
    part: Vec<((String, i32), Bytes)>,
    addr: &str,
) -> Vec<Answer> {
    let mut answered: HashMap<(String, i32), Result<(i64, i64)>> = HashMap::new();
    for t in resp.responses {
        let name = if v >= 13 {
            ids.iter()
                .find(|(_, id)| **id == t.topic_id)
                .map(|(n, _)| n.clone())
                .unwrap_or_default()
        } else {
            t.name.0.to_string()
        };
        for p in t.partition_responses {
            let key = (name.clone(), p.index);
            answered.insert(key, partition_answer(&name, p, addr));
        }
    }
    part.into_iter()
        .map(|(k, _)| {
            let r = answered.remove(&k).unwrap_or_else(|| {
                Err(ClientError::Protocol {
                    addr: addr.to_string(),
                    api: "Produce".into(),
                    message: format!("no answer for {}/{}", k.0, k.1),
                })
            });
            (k, r)
        })
        .collect()
}

/// Connections per broker the fast path spreads partitions over.
const PRODUCE_LANES: i32 = 2;

/// The connection lane of a partition (see [`Client::conn_lane`]).
fn lane_of(partition: i32) -> u8 {
    partition.rem_euclid(PRODUCE_LANES) as u8
}

/// The topics of a Produce request built with `kafka-protocol` (acks=0, which has no
/// answer to wait for and is rare enough not to need the copy-free path).
fn produce_topics(
    part: &[((String, i32), Bytes)],
    ids: &HashMap<String, crate::client::Uuid>,
    v: i16,
) -> Vec<TopicProduceData> {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for ((t, p), bytes) in part {
        let pd = PartitionProduceData::default()
            .with_index(*p)
            .with_records(Some(bytes.clone()));
        match topics.iter_mut().find(|x| x.name.0.as_str() == t) {
            Some(x) => x.partition_data.push(pd),
            None => {
                let mut x = TopicProduceData::default()
                    .with_name(topic_name(t))
                    .with_partition_data(vec![pd]);
                if v >= 13 {
                    x.topic_id = ids.get(t).copied().unwrap_or_default();
                }
                topics.push(x);
            }
        }
    }
    topics
}

/// A produce call whose requests are on the wire (see [`Producer::start`]).
#[must_use = "a produce call is only done once `finish` returned"]
pub struct InFlight {
    producer: Producer,
    turn: Turn,
    results: Vec<ProduceResult>,
    queues: BTreeMap<(String, i32), VecDeque<Wire>>,
    sent: Vec<(Vec<(String, i32)>, PendingAnswers)>,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("ticket", &self.turn.ticket)
            .field("requests", &self.sent.len())
            .finish_non_exhaustive()
    }
}

impl InFlight {
    /// Waits for the answers; what failed is retried in order once every earlier call has
    /// finished. Returns, per batch of the call, where its records landed.
    pub async fn finish(mut self) -> Result<Vec<ProduceResult>> {
        let res = self.land().await;
        if res.is_err() {
            self.producer.shared.turns.poison();
            if self.producer.cfg.idempotent {
                // Sequences may now disagree with the broker: start over with a new
                // producer id on the next call.
                self.producer.shared.state.lock().await.initialized = false;
            }
        }
        self.turn.finish();
        res.map(|()| std::mem::take(&mut self.results))
    }

    async fn land(&mut self) -> Result<()> {
        // Answers in the order the requests went out: a partition's batches land in order,
        // and after its first failure nothing more of it counts here.
        let mut failed: HashSet<(String, i32)> = HashSet::new();
        // The retry deadline counts from this call's first failure: from then on, the
        // answers still awaited and the careful path that follows give up by it, however
        // their own timeouts and retry loops nest.
        let policy = self.producer.client.config().retry.clone();
        let mut give_up_at = None;
        for (keys, answers) in std::mem::take(&mut self.sent) {
            let answers = crate::retry::give_up_by(give_up_at, answers).await;
            if answers
                .as_ref()
                .map_or(true, |a| a.iter().any(|(_, r)| r.is_err()))
            {
                give_up_at = give_up_at.or_else(|| policy.give_up_at());
            }
            match answers {
                Ok(answers) => {
                    for (key, ans) in answers {
                        if failed.contains(&key) {
                            continue;
                        }
                        match ans {
                            Ok((base, append_time)) => {
                                self.producer.note_landed(&key, self.turn.ticket);
                                if let Some(w) =
                                    self.queues.get_mut(&key).and_then(|q| q.pop_front())
                                {
                                    self.producer.landings().note(&key, w.stamp);
                                    landed(&mut self.results, &w, base, append_time);
                                }
                            }
                            Err(e) => {
                                debug!(topic = %key.0, partition = key.1, error = %e, "pipelined produce failed; retrying carefully");
                                failed.insert(key);
                            }
                        }
                    }
                }
                Err(e) => {
                    debug!(error = %e, "pipelined produce request failed; retrying carefully");
                    failed.extend(keys);
                }
            }
        }
        if self.queues.values().all(VecDeque::is_empty) {
            return Ok(());
        }
        // Retries go out after every earlier call's data, in order.
        let turns = &self.producer.shared.turns;
        turns.wait_turn(self.turn.ticket).await;
        if self.turn.ticket < turns.poisoned_below.load(Ordering::SeqCst) {
            return Err(ClientError::Producer(
                "an earlier produce call failed, so this one cannot keep its order; the \
                 producer starts over with a new producer id on the next call"
                    .into(),
            ));
        }
        for (key, _) in self.queues.iter().filter(|(_, q)| !q.is_empty()) {
            // Routed with whatever was cached then: the careful path looks the leader up again.
            self.producer.client.invalidate_topic(&key.0, u64::MAX);
        }
        let _order = self.producer.shared.state.lock().await;
        let (queues, results) = (&mut self.queues, &mut self.results);
        crate::retry::give_up_by(
            give_up_at,
            self.producer.careful(self.turn.ticket, queues, results),
        )
        .await
    }
}

/// A call's place in [`Turns`]; a call dropped before it finished fails every call
/// started so far (their order can no longer be kept).
struct Turn {
    shared: Arc<Shared>,
    ticket: u64,
    finished: bool,
}

impl Turn {
    fn finish(&mut self) {
        self.finished = true;
        self.shared.turns.complete(self.ticket);
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.turns.poison();
            self.shared.turns.complete(self.ticket);
        }
    }
}

/// Writes producer id, epoch and base sequence into an encoded batch's header and updates
/// its CRC (see [`edit_header`]).
fn stamp_producer(bytes: Bytes, p: BatchProducer) -> Bytes {
    let mut m = bytes
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    edit_header(&mut m, |h| {
        h[43..51].copy_from_slice(&p.producer_id.to_be_bytes());
        h[51..53].copy_from_slice(&p.producer_epoch.to_be_bytes());
        h[53..57].copy_from_slice(&p.base_sequence.to_be_bytes());
    });
    m.freeze()
}

/// Where the CRC-covered header fields end (attributes to base sequence: 21..57).
const CRC_HEADER_END: usize = 57;

/// Lets `edit` change a batch's header and updates its CRC without reading the records
/// again: CRC-32C is linear, so the CRC of the edited batch is the old one XOR the CRC
/// difference of the edited header bytes shifted over the bytes that follow them
/// (`crc32c_combine` with a zero second part does the shift). The old CRC must be right;
/// the batch's own bytes after byte 57 must not change.
fn edit_header(m: &mut [u8], edit: impl FnOnce(&mut [u8])) {
    if m.len() < BATCH_HEADER_LEN {
        edit(m);
        return;
    }
    let before = crc32c::crc32c(&m[21..CRC_HEADER_END]);
    edit(m);
    let after = crc32c::crc32c(&m[21..CRC_HEADER_END]);
    let old = u32::from_be_bytes([m[17], m[18], m[19], m[20]]);
    let shifted = crc32c::crc32c_combine(before ^ after, 0, m.len() - CRC_HEADER_END);
    m[17..21].copy_from_slice(&(old ^ shifted).to_be_bytes());
}

/// Checks a batch encoded elsewhere and clears what a producer owns: base offset 0, leader
/// epoch -1, producer id/epoch/sequence -1 and the transactional flag (this producer is
/// idempotent, not transactional; [`stamp_producer`] sets its own fields and the CRC).
/// Returns a copy of the batch and its record count.
fn producer_owned_fields_cleared(bytes: &[u8]) -> Result<(Bytes, usize)> {
    let h = crate::batch::BatchHeader::parse(bytes)?;
    if h.total_len() != bytes.len() {
        return Err(ClientError::Corrupt(format!(
            "an encoded batch of {} bytes declares {}",
            bytes.len(),
            h.total_len()
        )));
    }
    if h.is_control() || h.record_count != h.last_offset_delta.saturating_add(1) {
        return Err(ClientError::Config(format!(
            "the batch at offset {} cannot be produced as it is ({}): decode its records instead",
            h.base_offset,
            if h.is_control() {
                "a control batch".to_string()
            } else {
                format!(
                    "{} records over {} offsets",
                    h.record_count,
                    h.last_offset_delta.saturating_add(1)
                )
            }
        )));
    }
    let mut m = BytesMut::from(bytes);
    m[0..8].copy_from_slice(&0i64.to_be_bytes());
    m[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    let attributes = h.attributes & !ATTR_TRANSACTIONAL;
    let p = BatchProducer::default();
    // The batch's CRC was checked when it was read: keep it right for the new header.
    edit_header(&mut m, |m| {
        m[21..23].copy_from_slice(&attributes.to_be_bytes());
        m[43..51].copy_from_slice(&p.producer_id.to_be_bytes());
        m[51..53].copy_from_slice(&p.producer_epoch.to_be_bytes());
        m[53..57].copy_from_slice(&p.base_sequence.to_be_bytes());
    });
    Ok((m.freeze(), h.record_count as usize))
}

/// The transactional bit of a batch's attributes.
const ATTR_TRANSACTIONAL: i16 = 0x10;

/// Batches checked and encoded by [`Producer::prepare`], ready for [`Producer::send_prepared`].
#[derive(Debug)]
pub struct Prepared {
    /// Topic and partition of each batch, in order.
    targets: Vec<(String, i32)>,
    encoded: Vec<((String, i32), Wire)>,
}

/// Records where a batch landed in its [`ProduceResult`].
fn landed(results: &mut [ProduceResult], w: &Wire, base: i64, append_time: i64) {
    let Some(r) = results.get_mut(w.batch_index) else {
        return;
    };
    // The first record's offset: unknown (-1) when its wire batch landed without one.
    if w.first_index == 0 {
        r.base_offset = base;
    }
    r.runs.push(OffsetRun {
        first_index: w.first_index,
        count: w.count,
        base_offset: base,
    });
    if append_time >= 0 {
        r.log_append_time = Some(append_time);
    }
}

/// Whether a produce answer is OUT_OF_ORDER_SEQUENCE_NUMBER.
fn is_out_of_order(e: &ClientError) -> bool {
    e.code() == Some(KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER)
}

/// Retried batches the broker answered with OUT_OF_ORDER_SEQUENCE_NUMBER although every
/// batch before them had landed: the broker then has them already, further back than the
/// last 5 batches it keeps for duplicate detection (a leader that replicated a run of
/// batches and died before answering). The broker takes a producer's batches only in
/// sequence order, so they count as written once a later batch of the partition lands (or
/// is a duplicate), of this call or of a later one; their offsets are unknown. Unconfirmed
/// at the end, they are an error. Only batches after one that landed are set aside: before
/// that the broker takes any sequence, and the same answer means a later batch was taken
/// ahead of this one (see [`Landings`]).
#[derive(Default)]
struct BeyondWindow {
    suspects: BTreeMap<(String, i32), (Vec<Wire>, ClientError)>,
}

impl BeyondWindow {
    /// Sets `w` aside until a later batch of `key` lands.
    fn suspect(&mut self, key: &(String, i32), w: Wire, e: ClientError) {
        debug!(topic = %key.0, partition = key.1, error = %e, "retried batch out of order: the broker may have it already");
        let entry = self
            .suspects
            .entry(key.clone())
            .or_insert_with(|| (Vec::new(), e));
        entry.0.push(w);
    }

    /// A later batch of `key` landed: the batches set aside before it are written, at
    /// offsets the broker did not say (no [`OffsetRun`] for them).
    fn confirm(&mut self, key: &(String, i32)) {
        let Some((wires, _)) = self.suspects.remove(key) else {
            return;
        };
        let records: usize = wires.iter().map(|w| w.count).sum();
        warn!(
            topic = %key.0,
            partition = key.1,
            batches = wires.len(),
            records,
            "retried batches were written already (before the leader moved); their offsets are unknown"
        );
    }

    /// A partition whose set-aside batches no later batch confirmed, with the broker's
    /// answer; `landed_later` says whether a later call landed a batch of a partition,
    /// which confirms them too.
    fn unconfirmed(
        mut self,
        landed_later: impl Fn(&(String, i32)) -> bool,
    ) -> Option<((String, i32), ClientError)> {
        let confirmed: Vec<(String, i32)> = self
            .suspects
            .keys()
            .filter(|k| landed_later(k))
            .cloned()
            .collect();
        for key in &confirmed {
            self.confirm(key);
        }
        self.suspects.into_iter().next().map(|(k, (_, e))| (k, e))
    }
}

/// One partition's answer: base offset and log-append time, or the error.
/// What one round of [`Producer::careful`] must retry: the topics to look up again (with
/// the metadata generation they were routed with) and the last retriable error.
#[derive(Default)]
struct CarefulRound {
    seen: HashMap<String, u64>,
    topics: std::collections::BTreeSet<String>,
    last: Option<ClientError>,
}

impl CarefulRound {
    fn retry(&mut self, key: &(String, i32), e: ClientError) {
        debug!(topic = %key.0, partition = key.1, error = %e, "produce retry");
        self.topics.insert(key.0.clone());
        self.last = Some(e);
    }
}

type Answer = ((String, i32), Result<(i64, i64)>);

/// Answers of requests already on the wire.
type PendingAnswers =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Answer>>> + Send>>;

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::ProduceResponse;
    use kafka_protocol::protocol::StrBytes;

    fn head(topic: &str, partition: i32, size: usize) -> ((String, i32), Bytes) {
        ((topic.to_string(), partition), Bytes::from(vec![0u8; size]))
    }

    #[test]
    fn requests_are_packed_up_to_the_limit_in_order_at_least_one_batch_each() {
        let heads = vec![
            head("t", 0, 100),
            head("t", 1, 100),
            head("t", 2, 500),
            head("u", 0, 10),
        ];
        let packed = pack_requests(heads, 300);
        let keys: Vec<Vec<i32>> = packed
            .iter()
            .map(|r| r.iter().map(|(k, _)| k.1).collect())
            .collect();
        // 133 + 133 fit in 300; the 533-byte batch goes alone; the small one after it.
        assert_eq!(keys, vec![vec![0, 1], vec![2], vec![0]]);
        assert!(pack_requests(Vec::new(), 300).is_empty());
    }

    #[test]
    fn frame_topics_group_partitions_and_carry_ids() {
        let id = crate::client::Uuid::from_u128(5);
        let ids = HashMap::from([("a".to_string(), id)]);
        let part = vec![head("a", 0, 1), head("b", 3, 1), head("a", 1, 1)];
        let topics = frame_topics(&part, &ids);
        assert_eq!(topics.len(), 2);
        assert_eq!(topics[0].name, "a");
        assert_eq!(topics[0].topic_id, id);
        let idx: Vec<i32> = topics[0].partitions.iter().map(|p| p.index).collect();
        assert_eq!(idx, vec![0, 1]);
        assert_eq!(topics[1].topic_id, crate::client::Uuid::nil());
    }

    #[test]
    fn produce_answers_map_codes_and_report_missing_partitions() {
        let ok = PartitionProduceResponse::default()
            .with_index(0)
            .with_base_offset(40)
            .with_log_append_time_ms(-1);
        let dup = PartitionProduceResponse::default()
            .with_index(1)
            .with_error_code(KafkaCode::DUPLICATE_SEQUENCE_NUMBER.0)
            .with_base_offset(12);
        let bad = PartitionProduceResponse::default()
            .with_index(2)
            .with_error_code(KafkaCode::NOT_ENOUGH_REPLICAS.0)
            .with_error_message(Some(StrBytes::from_static_str("isr too small")))
            .with_record_errors(vec![BatchIndexAndErrorMessage::default()
                .with_batch_index(3)
                .with_batch_index_error_message(Some(StrBytes::from_static_str("why")))]);
        let resp = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
            .with_name(topic_name("t"))
            .with_partition_responses(vec![ok, dup, bad])]);
        let part = vec![
            head("t", 0, 1),
            head("t", 1, 1),
            head("t", 2, 1),
            head("t", 9, 1),
        ];
        let got = produce_answers(resp, 9, &HashMap::new(), part, "b:1");
        assert_eq!(got[0].1.as_ref().unwrap(), &(40, -1));
        assert_eq!(
            got[1].1.as_ref().unwrap().0,
            12,
            "a duplicate counts as written"
        );
        let e = got[2].1.as_ref().unwrap_err();
        assert_eq!(e.code(), Some(KafkaCode::NOT_ENOUGH_REPLICAS));
        assert!(e.is_retriable());
        let msg = e.to_string();
        assert!(
            msg.contains("b:1")
                && msg.contains("t/2")
                && msg.contains("isr too small; record 3: why"),
            "{msg}"
        );
        let missing = got[3].1.as_ref().unwrap_err().to_string();
        assert!(missing.contains("no answer for t/9"), "{missing}");
    }

    #[test]
    fn header_edits_keep_the_crc_right_without_reading_the_records() {
        for (n, codec) in [
            (1, Compression::None),
            (50, Compression::None),
            (7, Compression::Lz4),
            (300, Compression::Zstd),
        ] {
            let records: Vec<ProduceRecord> = (0..n)
                .map(|i| ProduceRecord {
                    key: (i % 3 != 0).then(|| Bytes::from(format!("k{i}"))),
                    value: Some(Bytes::from(vec![b'a' + (i % 26) as u8; 10 + i * 37])),
                    headers: vec![],
                    timestamp: 1_000 + i as i64,
                })
                .collect();
            let bytes = encode_batch(&records, codec, BatchProducer::default()).unwrap();
            crate::batch::verify_batches(&bytes).unwrap();
            let stamped = stamp_producer(
                bytes.clone(),
                BatchProducer {
                    producer_id: 123_456_789,
                    producer_epoch: 7,
                    base_sequence: i32::MAX - 3,
                },
            );
            crate::batch::verify_batches(&stamped).unwrap();
            let full = crc32c::crc32c(&stamped[21..]);
            assert_eq!(
                u32::from_be_bytes(stamped[17..21].try_into().unwrap()),
                full
            );
            // Clearing the fields of a transactional batch read from a backup.
            let mut txn = BytesMut::from(&stamped[..]);
            edit_header(&mut txn, |h| {
                h[21..23].copy_from_slice(&0x10i16.to_be_bytes())
            });
            crate::batch::verify_batches(&txn).unwrap();
            let (cleared, count) = producer_owned_fields_cleared(&txn).unwrap();
            assert_eq!(count, n);
            crate::batch::verify_batches(&cleared).unwrap();
            let h = crate::batch::BatchHeader::parse(&cleared).unwrap();
            assert!(!h.is_transactional());
            assert_eq!((h.producer_id, h.base_sequence), (-1, -1));
        }
    }

    #[test]
    fn landings_vouch_only_for_batches_after_one_that_landed_in_this_generation() {
        let key = ("t".to_string(), 0);
        let at = |generation, order| Stamp { generation, order };
        let mut l = Landings::default();
        l.reset(1);
        assert!(!l.any(&key));
        assert!(
            !l.before(&key, at(1, 3)),
            "nothing landed: the broker takes any sequence"
        );
        l.note(&key, at(1, 2));
        assert!(l.any(&key));
        assert!(l.before(&key, at(1, 3)));
        assert!(!l.before(&key, at(1, 2)), "not itself");
        assert!(
            !l.before(&key, at(1, 1)),
            "an earlier batch than the one that landed"
        );
        l.note(&key, at(1, 0));
        assert!(l.before(&key, at(1, 1)), "the lowest landing counts");
        // A batch of an older producer id or epoch neither counts nor is vouched for.
        l.reset(2);
        assert!(!l.any(&key));
        l.note(&key, at(1, 0));
        assert!(!l.any(&key));
        l.note(&key, at(2, 0));
        assert!(!l.before(&key, at(1, 5)));
        assert!(l.before(&key, at(2, 5)));
        // A partition idle for long: the broker may have dropped the producer's state.
        if let Some(long_ago) = std::time::Instant::now()
            .checked_sub(STATE_MAY_BE_GONE + std::time::Duration::from_secs(1))
        {
            l.lowest.insert(key.clone(), (0, long_ago));
            assert!(!l.any(&key), "idle too long: one batch at a time again");
            l.note(&key, at(2, 7));
            assert!(l.any(&key));
        }
        // Unstamped batches (a producer that is not idempotent) never count.
        let mut none = Landings::default();
        none.note(&key, Stamp::default());
        assert!(!none.any(&key));
    }

    #[test]
    fn sequence_wraps_like_kafka() {
        assert_eq!(next_sequence(0, 5), 5);
        assert_eq!(next_sequence(i32::MAX, 1), 0);
        assert_eq!(next_sequence(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn offset_runs() {
        let r = ProduceResult {
            topic: "t".into(),
            partition: 0,
            base_offset: 10,
            runs: vec![
                OffsetRun {
                    first_index: 0,
                    count: 2,
                    base_offset: 10,
                },
                OffsetRun {
                    first_index: 2,
                    count: 3,
                    base_offset: 20,
                },
            ],
            log_append_time: None,
        };
        assert_eq!(r.offset_of(1), Some(11));
        assert_eq!(r.offset_of(2), Some(20));
        assert_eq!(r.offset_of(4), Some(22));
        assert_eq!(r.offset_of(5), None);
    }
}
