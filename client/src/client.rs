//! The client: bootstrap, metadata cache, connections per broker, ListOffsets and Fetch.

use crate::batch::{scan_batches, FetchedBatches};
use crate::conn::{BrokerHandle, ConnConfig, Connection};
use crate::error::{ClientError, KafkaCode, Result};
use crate::fetch_session::{FetchSessions, RequestKind};
use crate::retry::RetryPolicy;
use crate::security::{build_tls, SaslConfig, TlsConfig};
use ferry_model::AbortedTxn;
use futures::future::join_all;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, ListOffsetsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tracing::{debug, warn};
pub use uuid::Uuid;

/// How to reach and authenticate to a cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of one or more brokers to discover the cluster from.
    pub bootstrap: Vec<String>,
    /// Client id sent with every request (shows in broker logs and quotas).
    pub client_id: String,
    /// How long to wait for any response (Fetch waits this plus its `max_wait_ms`).
    pub request_timeout: Duration,
    /// How long to wait for a TCP connection (and the TLS handshake) to a broker.
    pub connect_timeout: Duration,
    /// How every retry loop of the client waits and when it gives up.
    pub retry: RetryPolicy,
    /// TLS, when the listener needs it.
    pub tls: Option<TlsConfig>,
    /// SASL credentials, when the listener needs them.
    pub sasl: Option<SaslConfig>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap: Vec::new(),
            client_id: "ferry".to_string(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            tls: None,
            sasl: None,
        }
    }
}

impl ClientConfig {
    /// A config for `bootstrap` with defaults for the rest. Entries may be comma-separated.
    pub fn new<S: AsRef<str>>(bootstrap: &[S]) -> Self {
        ClientConfig {
            bootstrap: bootstrap
                .iter()
                .flat_map(|s| s.as_ref().split(','))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            ..Default::default()
        }
    }
}

/// A broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    /// Node id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if configured.
    pub rack: Option<String>,
}

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition number.
    pub id: i32,
    /// Leader broker id (-1 when none).
    pub leader: i32,
    /// Leader epoch (-1 when unknown).
    pub leader_epoch: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isr: Vec<i32>,
    /// Error reported for the partition.
    pub error: Option<KafkaCode>,
}

/// A topic of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Name.
    pub name: String,
    /// Topic id (Kafka >= 2.8), `None` when the broker has none.
    pub id: Option<Uuid>,
    /// Internal topic (`__consumer_offsets`, `__transaction_state`).
    pub is_internal: bool,
    /// Partitions in partition order.
    pub partitions: Vec<PartitionMetadata>,
    /// Error reported for the topic.
    pub error: Option<KafkaCode>,
}

/// What a Metadata request returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterMetadata {
    /// Cluster id.
    pub cluster_id: Option<String>,
    /// Controller broker id (-1 when unknown).
    pub controller_id: i32,
    /// Brokers.
    pub brokers: Vec<BrokerMetadata>,
    /// Topics (sorted by name).
    pub topics: Vec<TopicMetadata>,
}

impl ClusterMetadata {
    /// The topic named `name`.
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.iter().find(|t| t.name == name)
    }
}

/// Which offset ListOffsets returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark (offset of the next record to be written).
    Latest,
    /// The first offset whose record timestamp is >= the given milliseconds (-1 when no
    /// record is that recent).
    Timestamp(i64),
}

/// Fetch isolation level.
///
/// Kafka returns the same batches either way (aborted ones included: clients filter them);
/// what differs is where the data stops and whether aborted transactions are listed:
/// tested against Kafka 4.4 in `tests/kafka.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Up to the high watermark (open transactions included); Kafka sends no list of
    /// aborted transactions at this level.
    #[default]
    ReadUncommitted,
    /// Up to the last stable offset, with the list of aborted transactions overlapping the
    /// returned data (what a backup needs to drop aborted records on restore).
    ReadCommitted,
}

/// One partition to fetch, from `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequestPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset to fetch from.
    pub offset: i64,
}

/// Fetch tuning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// How long the broker may wait for `min_bytes`.
    pub max_wait_ms: i32,
    /// Bytes the broker waits for before answering.
    pub min_bytes: i32,
    /// Bytes per response (per leader).
    pub max_bytes: i32,
    /// Bytes per partition.
    pub partition_max_bytes: i32,
    /// Isolation level.
    pub isolation: Isolation,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 8 * 1024 * 1024,
            isolation: Isolation::ReadUncommitted,
        }
    }
}

/// What one partition's fetch returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Error for this partition (OFFSET_OUT_OF_RANGE is reported here, never retried).
    pub error: Option<KafkaCode>,
    /// High watermark (-1 when unknown).
    pub high_watermark: i64,
    /// Last stable offset (-1 when unknown).
    pub last_stable_offset: i64,
    /// Log start offset (-1 when unknown).
    pub log_start_offset: i64,
    /// Aborted transactions overlapping the returned data (Kafka lists them to
    /// [`Isolation::ReadCommitted`] fetches only).
    pub aborted: Vec<AbortedTxn>,
    /// Whole batches, when any came back.
    pub data: Option<FetchedBatches>,
}

/// A topic's metadata and the generation it was fetched in.
pub(crate) struct CachedTopic {
    pub meta: TopicMetadata,
    pub generation: u64,
}

impl FetchedPartition {
    /// An answer without data or offsets, with `error`.
    pub fn empty(topic: &str, partition: i32, error: Option<KafkaCode>) -> Self {
        FetchedPartition {
            topic: topic.to_string(),
            partition,
            error,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted: Vec::new(),
            data: None,
        }
    }
}

pub(crate) struct Cache {
    pub brokers: HashMap<i32, String>,
    /// Topics by name. A retry loop drops only the topics its errors were about, and only
    /// if the entry is still the generation it used: a concurrent refresh is not thrown away.
    pub topics: HashMap<String, CachedTopic>,
    /// Incremented by every metadata answer stored.
    pub generation: u64,
    pub by_id: HashMap<Uuid, String>,
    pub controller: i32,
}

pub(crate) struct Inner {
    pub cfg: ClientConfig,
    pub conn_cfg: Arc<ConnConfig>,
    bootstrap: Vec<Arc<BrokerHandle>>,
    /// Connection handles by broker id and lane (lane 0 for everything; producers spread
    /// partitions over more lanes, see [`Client::conn_lane`]).
    handles: RwLock<HashMap<(i32, u8), Arc<BrokerHandle>>>,
    pub cache: RwLock<Cache>,
    refresh: tokio::sync::Mutex<()>,
}

/// A Kafka client. Cheap to clone: clones share connections and the metadata cache.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.inner.cfg.bootstrap)
            .finish()
    }
}

pub(crate) fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
pub(crate) fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub(crate) fn opt_uuid(u: Uuid) -> Option<Uuid> {
    (!u.is_nil()).then_some(u)
}

impl Client {
    /// Builds a client and checks that a bootstrap broker answers (fetching cluster metadata).
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let client = Self::new(config)?;
        // One try through the bootstrap list, no retry loop: a cluster unreachable at start
        // is reported within the connect timeout.
        client.metadata_once(None).await?;
        Ok(client)
    }

    /// Builds a client without contacting any broker (connections are made on first use).
    pub fn new(config: ClientConfig) -> Result<Client> {
        if config.bootstrap.is_empty() {
            return Err(ClientError::Config("no bootstrap brokers given".into()));
        }
        config.retry.validate().map_err(ClientError::Config)?;
        let tls = config.tls.as_ref().map(build_tls).transpose()?;
        let conn_cfg = Arc::new(ConnConfig {
            client_id: StrBytes::from_string(config.client_id.clone()),
            request_timeout: config.request_timeout,
            connect_timeout: config.connect_timeout,
            retry: config.retry.clone(),
            tls,
            sasl: config.sasl.clone(),
        });
        let bootstrap = config
            .bootstrap
            .iter()
            .map(|a| Arc::new(BrokerHandle::new(a.clone(), conn_cfg.clone())))
            .collect();
        Ok(Client {
            inner: Arc::new(Inner {
                cfg: config,
                conn_cfg,
                bootstrap,
                handles: RwLock::new(HashMap::new()),
                cache: RwLock::new(Cache {
                    brokers: HashMap::new(),
                    topics: HashMap::new(),
                    by_id: HashMap::new(),
                    generation: 0,
                    controller: -1,
                }),
                refresh: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The configuration the client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    // -----------------------------------------------------------------------------------------
    // Connections

    /// The connection handle for broker `id` (from the metadata cache).
    pub(crate) fn broker(&self, id: i32) -> Result<Arc<BrokerHandle>> {
        self.broker_lane(id, 0)
    }

    fn broker_lane(&self, id: i32, lane: u8) -> Result<Arc<BrokerHandle>> {
        let addr = read(&self.inner.cache)
            .brokers
            .get(&id)
            .cloned()
            .ok_or_else(|| {
                ClientError::Metadata(format!("broker {id} is not in the cluster metadata"))
            })?;
        if let Some(h) = read(&self.inner.handles).get(&(id, lane)) {
            if h.addr() == addr {
                return Ok(h.clone());
            }
        }
        let mut handles = write(&self.inner.handles);
        let h = handles
            .entry((id, lane))
            .and_modify(|h| {
                if h.addr() != addr {
                    *h = Arc::new(BrokerHandle::new(addr.clone(), self.inner.conn_cfg.clone()));
                }
            })
            .or_insert_with(|| {
                Arc::new(BrokerHandle::new(addr.clone(), self.inner.conn_cfg.clone()))
            });
        Ok(h.clone())
    }

    /// A connection to broker `id`.
    pub(crate) async fn conn(&self, id: i32) -> Result<Arc<Connection>> {
        self.broker(id)?.get().await
    }

    /// Connection `lane` to broker `id`: lane 0 is [`Client::conn`]'s, others are opened on
    /// first use. Kafka handles one request of a connection at a time, so a producer that
    /// keeps each partition on one lane (its order kept) lets the broker work on several
    /// requests at once.
    pub(crate) async fn conn_lane(&self, id: i32, lane: u8) -> Result<Arc<Connection>> {
        self.broker_lane(id, lane)?.get().await
    }

    /// A connection to any broker: known brokers first, then the bootstrap list.
    pub(crate) async fn any_conn(&self) -> Result<Arc<Connection>> {
        let mut ids: Vec<i32> = read(&self.inner.cache).brokers.keys().copied().collect();
        ids.sort_unstable();
        if !ids.is_empty() {
            let start = rand::random::<u32>() as usize % ids.len();
            ids.rotate_left(start);
        }
        let mut last = None;
        for id in ids {
            match self.conn(id).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        for h in &self.inner.bootstrap {
            match h.get().await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Config("no brokers".into())))
    }

    /// Runs `op` until it succeeds, fails with a non-retriable error, or the retry policy
    /// gives up. Errors that mean the cluster changed refresh the broker list and controller
    /// (a metadata request for no topics) before the next try; the topic cache is kept.
    pub(crate) async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut backoff = self.inner.cfg.retry.start();
        loop {
            let e = match backoff.attempt(op()).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retriable() => e,
                Err(e) => return Err(e),
            };
            let Some(delay) = backoff.next_delay() else {
                return Err(e);
            };
            debug!(what, failures = backoff.failures(), ?delay, error = %e, "retrying");
            if e.code().is_some_and(|c| c.needs_metadata_refresh())
                || matches!(e, ClientError::Metadata(_))
            {
                self.refresh_brokers().await;
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// Asks any broker for the broker list and controller (no topics), best effort.
    async fn refresh_brokers(&self) {
        if let Err(e) = self.metadata_once(Some(&[])).await {
            debug!(error = %e, "refreshing the broker list failed");
        }
    }

    // -----------------------------------------------------------------------------------------
    // Metadata

    /// Forgets all cached topic metadata so the next lookup asks the cluster again.
    pub fn invalidate_metadata(&self) {
        let mut c = write(&self.inner.cache);
        c.topics.clear();
    }

    /// Forgets `topic`'s cached metadata if it is still of `generation` (or older): the
    /// generation a failed request was routed with. A newer entry, stored by a refresh since,
    /// stays.
    pub fn invalidate_topic(&self, topic: &str, generation: u64) {
        let mut c = write(&self.inner.cache);
        if c.topics
            .get(topic)
            .is_some_and(|t| t.generation <= generation)
        {
            c.topics.remove(topic);
        }
    }

    /// The generation of `topic`'s cached metadata, `None` when it is not cached.
    pub fn metadata_generation(&self, topic: &str) -> Option<u64> {
        read(&self.inner.cache)
            .topics
            .get(topic)
            .map(|t| t.generation)
    }

    /// Fetches cluster metadata for `topics` (all topics when `None`) and refreshes the cache.
    pub async fn metadata(&self, topics: Option<&[String]>) -> Result<ClusterMetadata> {
        self.retry("Metadata", || self.metadata_once(topics)).await
    }

    async fn metadata_once(&self, topics: Option<&[String]>) -> Result<ClusterMetadata> {
        let conn = self.any_conn().await?;
        let v = conn.version(ApiKey::Metadata)?;
        let mut req = MetadataRequest::default();
        req.topics = match topics {
            None if v == 0 => Some(Vec::new()),
            None => None,
            Some(ts) => Some(
                ts.iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect(),
            ),
        };
        if v >= 4 {
            req.allow_auto_topic_creation = false;
        }
        let resp = conn.send(&req, v).await?;
        conn.throttle(resp.throttle_time_ms);
        if let Some(code) = KafkaCode::from_code(resp.error_code) {
            return Err(ClientError::kafka("Metadata", "", code, None).with_addr(conn.addr()));
        }
        let mut md = ClusterMetadata {
            cluster_id: resp.cluster_id.map(|s| s.to_string()),
            controller_id: resp.controller_id.0,
            brokers: resp
                .brokers
                .into_iter()
                .map(|b| BrokerMetadata {
                    id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|r| r.to_string()),
                })
                .collect(),
            topics: Vec::new(),
        };
        for t in resp.topics {
            let Some(name) = t.name else { continue };
            let mut partitions: Vec<PartitionMetadata> = t
                .partitions
                .into_iter()
                .map(|p| PartitionMetadata {
                    id: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    error: KafkaCode::from_code(p.error_code),
                })
                .collect();
            partitions.sort_by_key(|p| p.id);
            md.topics.push(TopicMetadata {
                name: name.to_string(),
                id: opt_uuid(t.topic_id),
                is_internal: t.is_internal,
                partitions,
                error: KafkaCode::from_code(t.error_code),
            });
        }
        md.topics.sort_by(|a, b| a.name.cmp(&b.name));
        self.update_cache(&md, topics.is_none());
        Ok(md)
    }

    fn update_cache(&self, md: &ClusterMetadata, all_topics: bool) {
        let mut c = write(&self.inner.cache);
        if !md.brokers.is_empty() {
            c.brokers = md
                .brokers
                .iter()
                .map(|b| (b.id, format_addr(&b.host, b.port)))
                .collect();
        }
        c.controller = md.controller_id;
        c.generation += 1;
        let generation = c.generation;
        if all_topics {
            c.topics.clear();
            c.by_id.clear();
        }
        for t in &md.topics {
            match t.error {
                Some(code)
                    if code == KafkaCode::UNKNOWN_TOPIC_OR_PARTITION || t.partitions.is_empty() =>
                {
                    c.topics.remove(&t.name);
                }
                _ => {
                    if let Some(id) = t.id {
                        c.by_id.insert(id, t.name.clone());
                    }
                    c.topics.insert(
                        t.name.clone(),
                        CachedTopic {
                            meta: t.clone(),
                            generation,
                        },
                    );
                }
            }
        }
    }

    /// Cached metadata of `topic`, fetched when missing.
    pub(crate) async fn topic_meta(&self, topic: &str) -> Result<TopicMetadata> {
        Ok(self.topic_meta_gen(topic).await?.0)
    }

    fn cached_topic(&self, topic: &str) -> Option<(TopicMetadata, u64)> {
        read(&self.inner.cache)
            .topics
            .get(topic)
            .map(|t| (t.meta.clone(), t.generation))
    }

    /// Cached metadata of `topic` and its generation, fetched when missing.
    pub(crate) async fn topic_meta_gen(&self, topic: &str) -> Result<(TopicMetadata, u64)> {
        if let Some(t) = self.cached_topic(topic) {
            return Ok(t);
        }
        let _guard = self.inner.refresh.lock().await;
        // Another task may have refreshed while this one waited.
        if let Some(t) = self.cached_topic(topic) {
            return Ok(t);
        }
        let md = self.metadata_once(Some(&[topic.to_string()])).await?;
        let generation = read(&self.inner.cache).generation;
        match md.topic(topic) {
            Some(t) if t.error.is_none() || !t.partitions.is_empty() => Ok((t.clone(), generation)),
            Some(t) => Err(ClientError::kafka(
                "Metadata",
                topic,
                t.error.unwrap_or(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION),
                None,
            )),
            None => Err(ClientError::kafka(
                "Metadata",
                topic,
                KafkaCode::UNKNOWN_TOPIC_OR_PARTITION,
                None,
            )),
        }
    }

    /// Leader broker id of `topic`/`partition`.
    pub(crate) async fn leader(&self, topic: &str, partition: i32) -> Result<i32> {
        Ok(self.leader_gen(topic, partition).await?.0)
    }

    /// Leader broker id of `topic`/`partition` and the metadata generation it came from.
    pub(crate) async fn leader_gen(&self, topic: &str, partition: i32) -> Result<(i32, u64)> {
        let (t, generation) = self.topic_meta_gen(topic).await?;
        let p = t
            .partitions
            .iter()
            .find(|p| p.id == partition)
            .ok_or_else(|| {
                ClientError::kafka(
                    "Metadata",
                    format!("{topic}/{partition}"),
                    KafkaCode::UNKNOWN_TOPIC_OR_PARTITION,
                    None,
                )
            })?;
        if p.leader < 0 {
            // No leader right now (an election): ask again on the next lookup.
            self.invalidate_topic(topic, generation);
            return Err(ClientError::kafka(
                "Metadata",
                format!("{topic}/{partition}"),
                KafkaCode::LEADER_NOT_AVAILABLE,
                None,
            ));
        }
        Ok((p.leader, generation))
    }

    /// Topic id of `topic` (`None` if the cluster has no topic ids).
    pub async fn topic_id(&self, topic: &str) -> Result<Option<Uuid>> {
        Ok(self.topic_meta(topic).await?.id)
    }

    /// Topic name for a topic id, from the cache.
    pub fn topic_name_of(&self, id: Uuid) -> Option<String> {
        read(&self.inner.cache).by_id.get(&id).cloned()
    }

    /// Groups `items` by the leader of their partition. Items whose leader cannot be found
    /// come back in the error list.
    async fn by_leader<T: Clone>(
        &self,
        items: &[T],
        key: impl Fn(&T) -> (&str, i32),
    ) -> Routing<T> {
        let mut routing = Routing {
            groups: BTreeMap::new(),
            failed: Vec::new(),
            seen: HashMap::new(),
        };
        for it in items {
            let (t, p) = key(it);
            match self.leader_gen(t, p).await {
                Ok((l, generation)) => {
                    routing.seen.insert(t.to_string(), generation);
                    routing.groups.entry(l).or_default().push(it.clone());
                }
                Err(e) => routing.failed.push((it.clone(), e)),
            }
        }
        routing
    }

    /// Drops the cached metadata of `topics` that a round routed with `seen` generations
    /// (topics it could not route at all are dropped whatever their generation).
    fn invalidate_routed<'a>(
        &self,
        topics: impl IntoIterator<Item = &'a str>,
        seen: &HashMap<String, u64>,
    ) {
        for t in topics {
            self.invalidate_topic(t, seen.get(t).copied().unwrap_or(u64::MAX));
        }
    }

    // -----------------------------------------------------------------------------------------
    // ListOffsets

    /// Offsets of `partitions` of `topic` per `spec`, asking each partition's leader (one
    /// request per leader, in parallel).
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<i32, i64>> {
        let mut out = BTreeMap::new();
        let mut todo: Vec<i32> = partitions.to_vec();
        let mut backoff = self.inner.cfg.retry.start();
        loop {
            let items: Vec<(String, i32)> = todo.iter().map(|p| (topic.to_string(), *p)).collect();
            let routing = backoff
                .attempt(self.by_leader(&items, |(t, p)| (t.as_str(), *p)))
                .await;
            let mut retry: Vec<(i32, ClientError)> = routing
                .failed
                .into_iter()
                .map(|((_, p), e)| (p, e))
                .collect();
            let futs = routing.groups.into_iter().map(|(leader, items)| {
                let parts: Vec<i32> = items.iter().map(|(_, p)| *p).collect();
                async move {
                    (
                        parts.clone(),
                        self.list_offsets_leader(leader, topic, &parts, spec).await,
                    )
                }
            });
            for (parts, res) in backoff.attempt(join_all(futs)).await {
                match res {
                    Ok(results) => {
                        for (p, r) in results {
                            match r {
                                Ok(o) => {
                                    out.insert(p, o);
                                }
                                Err(e) => retry.push((p, e)),
                            }
                        }
                    }
                    Err(e) if !e.is_retriable() => return Err(e),
                    Err(e) => {
                        let msg = e.to_string();
                        for p in parts {
                            retry.push((p, ClientError::Metadata(msg.clone())));
                        }
                    }
                }
            }
            if retry.is_empty() {
                return Ok(out);
            }
            if let Some((_, e)) = retry.iter().find(|(_, e)| !e.is_retriable()) {
                return Err(clone_err(e));
            }
            let Some(delay) = backoff.next_delay() else {
                let (_, e) = retry.swap_remove(0);
                return Err(e);
            };
            debug!(topic, partitions = retry.len(), ?delay, error = %retry[0].1, "list offsets retry");
            self.invalidate_routed([topic], &routing.seen);
            tokio::time::sleep(delay).await;
            todo = retry.into_iter().map(|(p, _)| p).collect();
        }
    }

    async fn list_offsets_leader(
        &self,
        leader: i32,
        topic: &str,
        parts: &[i32],
        spec: OffsetSpec,
    ) -> Result<Vec<(i32, Result<i64>)>> {
        let conn = self.conn(leader).await?;
        let v = conn.version(ApiKey::ListOffsets)?;
        let ts = match spec {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        };
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(0)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    parts
                        .iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(ts)
                        })
                        .collect(),
                )]);
        let resp = conn.send(&req, v).await?;
        conn.throttle(resp.throttle_time_ms);
        let mut out = Vec::new();
        for t in resp.topics {
            for p in t.partitions {
                let r = match KafkaCode::from_code(p.error_code) {
                    None => Ok(p.offset),
                    Some(code) => Err(ClientError::kafka(
                        "ListOffsets",
                        format!("{topic}/{}", p.partition_index),
                        code,
                        None,
                    )
                    .with_addr(conn.addr())),
                };
                out.push((p.partition_index, r));
            }
        }
        for p in parts {
            if !out.iter().any(|(q, _)| q == p) {
                out.push((
                    *p,
                    Err(ClientError::Protocol {
                        addr: conn.addr().to_string(),
                        api: "ListOffsets".into(),
                        message: format!("no answer for {topic}/{p}"),
                    }),
                ));
            }
        }
        Ok(out)
    }

    /// The log end offsets of `partitions` of `topic` on their leaders: one past the last
    /// record each leader appended, replicated or not, where [`Client::list_offsets`] with
    /// [`OffsetSpec::Latest`] says the high watermark (what is replicated and readable).
    /// Between the two lie records whose fate is open: a produce request that a dying
    /// writer left behind and that waits for its replicas. Asked with OffsetForLeaderEpoch
    /// for each leader's current epoch (KIP-320), whose end offset is the leader's log end.
    pub async fn log_end_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>> {
        self.retry("OffsetForLeaderEpoch", || async {
            let md = self.metadata_once(Some(&[topic.to_string()])).await?;
            let meta = md.topic(topic).ok_or_else(|| {
                ClientError::kafka(
                    "OffsetForLeaderEpoch",
                    topic,
                    KafkaCode::UNKNOWN_TOPIC_OR_PARTITION,
                    None,
                )
            })?;
            let mut by_leader: BTreeMap<i32, Vec<(i32, i32)>> = BTreeMap::new();
            for p in partitions {
                let pm = meta.partitions.iter().find(|m| m.id == *p).ok_or_else(|| {
                    ClientError::kafka(
                        "OffsetForLeaderEpoch",
                        format!("{topic}/{p}"),
                        KafkaCode::UNKNOWN_TOPIC_OR_PARTITION,
                        None,
                    )
                })?;
                if pm.leader < 0 || pm.leader_epoch < 0 {
                    return Err(ClientError::kafka(
                        "OffsetForLeaderEpoch",
                        format!("{topic}/{p}"),
                        KafkaCode::LEADER_NOT_AVAILABLE,
                        None,
                    ));
                }
                by_leader
                    .entry(pm.leader)
                    .or_default()
                    .push((*p, pm.leader_epoch));
            }
            let mut out = BTreeMap::new();
            for (leader, parts) in by_leader {
                out.extend(self.log_end_offsets_leader(leader, topic, &parts).await?);
            }
            Ok(out)
        })
        .await
    }

    async fn log_end_offsets_leader(
        &self,
        leader: i32,
        topic: &str,
        parts: &[(i32, i32)],
    ) -> Result<Vec<(i32, i64)>> {
        use kafka_protocol::messages::offset_for_leader_epoch_request::{
            OffsetForLeaderPartition, OffsetForLeaderTopic,
        };
        let conn = self.conn(leader).await?;
        // v3+ names the asker: -1 is a consumer (not a follower).
        let v = conn.version(ApiKey::OffsetForLeaderEpoch)?;
        let req = kafka_protocol::messages::OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(
                    parts
                        .iter()
                        .map(|(p, epoch)| {
                            OffsetForLeaderPartition::default()
                                .with_partition(*p)
                                .with_current_leader_epoch(*epoch)
                                .with_leader_epoch(*epoch)
                        })
                        .collect(),
                )]);
        let resp = conn.send(&req, v).await?;
        conn.throttle(resp.throttle_time_ms);
        let mut out = Vec::new();
        for t in resp.topics {
            for p in t.partitions {
                if let Some(code) = KafkaCode::from_code(p.error_code) {
                    // A leader that moved (fenced or unknown epoch, not the leader any more)
                    // is retried with fresh metadata by the caller's loop.
                    return Err(ClientError::kafka(
                        "OffsetForLeaderEpoch",
                        format!("{topic}/{}", p.partition),
                        code,
                        None,
                    )
                    .with_addr(conn.addr()));
                }
                out.push((p.partition, p.end_offset));
            }
        }
        if out.len() != parts.len() {
            return Err(ClientError::Protocol {
                addr: conn.addr().to_string(),
                api: "OffsetForLeaderEpoch".into(),
                message: format!(
                    "answered {} of {} partitions of {topic}",
                    out.len(),
                    parts.len()
                ),
            });
        }
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------
    // Fetch

    /// Fetches `requests`: one multi-partition Fetch per leader, leaders in parallel. Leader
    /// changes and network errors are retried after a metadata refresh; other per-partition
    /// errors (OFFSET_OUT_OF_RANGE among them) come back in [`FetchedPartition::error`].
    /// The result holds one entry per request, in request order.
    ///
    /// Every request names every partition (no fetch session): for a reader that fetches
    /// the same partitions again and again, [`Client::fetch_in_sessions`] sends less.
    pub async fn fetch(
        &self,
        requests: &[FetchRequestPartition],
        opts: &FetchOptions,
    ) -> Result<Vec<FetchedPartition>> {
        self.fetch_inner(requests, opts, None).await
    }

    /// Like [`Client::fetch`], in `sessions` (KIP-227): with brokers of Fetch v7+ the first
    /// request to a broker opens a session, later ones name only the partitions that are new
    /// or moved on and drop the ones no longer asked for, and the broker answers only for
    /// partitions with something new. A partition the broker left out comes back without
    /// data or error, with the watermarks it last answered. A session the broker lost or
    /// refuses is replaced by a full request at once; older brokers are fetched without one.
    ///
    /// Calls with the same `sessions` must not overlap with different partition lists for
    /// the same broker to be useful (they are serialized per broker, and each one's list
    /// replaces the other's in the session).
    pub async fn fetch_in_sessions(
        &self,
        sessions: &FetchSessions,
        requests: &[FetchRequestPartition],
        opts: &FetchOptions,
    ) -> Result<Vec<FetchedPartition>> {
        self.fetch_inner(requests, opts, Some(sessions)).await
    }

    async fn fetch_inner(
        &self,
        requests: &[FetchRequestPartition],
        opts: &FetchOptions,
        mut sessions: Option<&FetchSessions>,
    ) -> Result<Vec<FetchedPartition>> {
        let mut done: HashMap<(String, i32), FetchedPartition> = HashMap::new();
        let mut todo: Vec<FetchRequestPartition> = requests.to_vec();
        let mut backoff = self.inner.cfg.retry.start();
        loop {
            let routing = backoff
                .attempt(self.by_leader(&todo, |r| (r.topic.as_str(), r.partition)))
                .await;
            let mut retry: Vec<FetchRetry> = Vec::new();
            for (r, e) in routing.failed {
                if !e.is_retriable() {
                    return Err(e);
                }
                let code = e.code();
                retry.push((r, code, e));
            }
            // Retries (a subset of the partitions, after a leader moved) go without a
            // session: in one they would drop the partitions not retried from it.
            let session = sessions.take();
            let futs = routing
                .groups
                .into_iter()
                .map(|(leader, parts)| async move {
                    let res = match session {
                        Some(s) => self.fetch_leader_in_session(leader, &parts, opts, s).await,
                        None => self.fetch_leader(leader, &parts, opts).await,
                    };
                    (parts, res)
                });
            for (parts, res) in backoff.attempt(join_all(futs)).await {
                match res {
                    Ok(results) => sort_fetch_answers(parts, results, &mut done, &mut retry),
                    Err(e) if e.is_retriable() => {
                        let msg = e.to_string();
                        for r in parts {
                            retry.push((r, None, ClientError::Metadata(msg.clone())));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            if retry.is_empty() {
                break;
            }
            let Some(delay) = backoff.next_delay() else {
                give_up_fetch(retry, &mut done)?;
                break;
            };
            for (r, _, e) in &retry {
                debug!(topic = %r.topic, partition = r.partition, error = %e, ?delay, "fetch retry");
            }
            self.invalidate_routed(
                retry.iter().map(|(r, _, _)| r.topic.as_str()),
                &routing.seen,
            );
            tokio::time::sleep(delay).await;
            todo = retry.into_iter().map(|(r, _, _)| r).collect();
        }
        Ok(requests
            .iter()
            .map(|r| {
                done.remove(&(r.topic.clone(), r.partition))
                    .unwrap_or_else(|| FetchedPartition::empty(&r.topic, r.partition, None))
            })
            .collect())
    }

    /// One Fetch to `leader` for `parts`; the answers come back in `parts` order.
    async fn fetch_leader(
        &self,
        leader: i32,
        parts: &[FetchRequestPartition],
        opts: &FetchOptions,
    ) -> Result<Vec<FetchedPartition>> {
        let conn = self.conn(leader).await?;
        let (ids, v) = self
            .fetch_topic_ids(parts, conn.version(ApiKey::Fetch)?)
            .await?;
        let req = build_fetch_request(parts, opts, &ids, v);
        let timeout =
            self.inner.cfg.request_timeout + Duration::from_millis(opts.max_wait_ms.max(0) as u64);
        let body = conn.send_raw_timeout(&req, v, timeout).await?;
        let resp = crate::wire::decode_fetch_response(body, v).map_err(|message| {
            ClientError::Protocol {
                addr: conn.addr().to_string(),
                api: "Fetch".into(),
                message: format!("decoding v{v} response: {message}"),
            }
        })?;
        conn.throttle(resp.throttle_time_ms);
        Ok(fetch_answers(resp, v, &ids, parts, conn.addr()))
    }

    /// One Fetch to `leader` for `parts` in `sessions`' session with it; the answers come
    /// back in `parts` order (see [`Client::fetch_in_sessions`]).
    async fn fetch_leader_in_session(
        &self,
        leader: i32,
        parts: &[FetchRequestPartition],
        opts: &FetchOptions,
        sessions: &FetchSessions,
    ) -> Result<Vec<FetchedPartition>> {
        let conn = self.conn(leader).await?;
        let (ids, v) = self
            .fetch_topic_ids(parts, conn.version(ApiKey::Fetch)?)
            .await?;
        let timeout =
            self.inner.cfg.request_timeout + Duration::from_millis(opts.max_wait_ms.max(0) as u64);
        let session = sessions.broker(leader);
        let mut s = session.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let plan = s.plan(parts, opts.partition_max_bytes, v, &ids);
            let mut req = build_fetch_request(&plan.send, opts, &ids, v);
            if plan.kind != RequestKind::Sessionless {
                req.session_id = plan.session_id;
                req.session_epoch = plan.epoch;
                req.forgotten_topics_data = s.forgotten(&plan.forget, v);
            }
            sessions.count(plan.kind, plan.send.len());
            // Whatever the broker made of a request we got no answer to, the session is
            // no longer known: start over with a full request.
            let body = match conn.send_raw_timeout(&req, v, timeout).await {
                Ok(b) => b,
                Err(e) => {
                    s.reset();
                    return Err(e);
                }
            };
            let resp = match crate::wire::decode_fetch_response(body, v) {
                Ok(r) => r,
                Err(message) => {
                    s.reset();
                    return Err(ClientError::Protocol {
                        addr: conn.addr().to_string(),
                        api: "Fetch".into(),
                        message: format!("decoding v{v} response: {message}"),
                    });
                }
            };
            conn.throttle(resp.throttle_time_ms);
            let top = KafkaCode::from_code(resp.error_code);
            if let Some(code) = top.filter(|c| is_session_error(*c)) {
                s.reset();
                sessions.count_reset();
                debug!(broker = conn.addr(), session = plan.session_id, epoch = plan.epoch, error = %code.name(), "fetch session lost: full fetch");
                if attempt < 2 {
                    continue;
                }
            }
            let session_id = resp.session_id;
            let mut answers = answers_by_partition(resp, v, &ids, conn.addr());
            let incremental = plan.kind == RequestKind::Incremental && top.is_none();
            if top.is_some() {
                // A request refused as a whole may or may not have moved the session on.
                s.reset();
            } else {
                s.apply(
                    &plan,
                    v,
                    opts.partition_max_bytes,
                    session_id,
                    &ids,
                    &answers,
                );
            }
            return Ok(parts
                .iter()
                .map(|r| {
                    answers
                        .remove(&(r.topic.clone(), r.partition))
                        .unwrap_or_else(|| {
                            if incremental {
                                s.unchanged(r)
                            } else {
                                FetchedPartition::empty(&r.topic, r.partition, top)
                            }
                        })
                })
                .collect());
        }
    }

    /// Topic ids of the topics in `parts` for Fetch v13+, and the version to use: v12 at
    /// most when a topic has no id (an older cluster).
    async fn fetch_topic_ids(
        &self,
        parts: &[FetchRequestPartition],
        mut v: i16,
    ) -> Result<(HashMap<String, Uuid>, i16)> {
        let mut ids: HashMap<String, Uuid> = HashMap::new();
        for r in parts {
            if !ids.contains_key(&r.topic) {
                match self.topic_meta(&r.topic).await?.id {
                    Some(id) => {
                        ids.insert(r.topic.clone(), id);
                    }
                    None => v = v.min(12),
                }
            }
        }
        Ok((ids, v))
    }
}

/// The Fetch request of `version` for `parts` (partitions grouped by topic, in order; topic
/// ids from `ids` for v13+), without a session (the caller sets the session fields).
pub(crate) fn build_fetch_request(
    parts: &[FetchRequestPartition],
    opts: &FetchOptions,
    ids: &HashMap<String, Uuid>,
    version: i16,
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for r in parts {
        let fp = FetchPartition::default()
            .with_partition(r.partition)
            .with_fetch_offset(r.offset)
            .with_current_leader_epoch(-1)
            .with_last_fetched_epoch(-1)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(opts.partition_max_bytes);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == r.topic) {
            Some(t) => t.partitions.push(fp),
            None => {
                let mut t = FetchTopic::default()
                    .with_topic(topic_name(&r.topic))
                    .with_partitions(vec![fp]);
                if version >= 13 {
                    t.topic_id = ids.get(&r.topic).copied().unwrap_or_default();
                }
                topics.push(t);
            }
        }
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(opts.max_wait_ms)
        .with_min_bytes(opts.min_bytes)
        .with_max_bytes(opts.max_bytes)
        .with_isolation_level(match opts.isolation {
            Isolation::ReadUncommitted => 0,
            Isolation::ReadCommitted => 1,
        })
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// One partition of a Fetch response as [`FetchedPartition`]: whole batches scanned (a
/// corrupt one becomes CORRUPT_MESSAGE), aborted transactions listed.
fn fetched_partition(
    topic: &str,
    p: crate::wire::FetchPartitionResponse,
    addr: &str,
) -> FetchedPartition {
    let mut error = KafkaCode::from_code(p.error_code);
    let data = match &p.records {
        Some(bytes) if !bytes.is_empty() => match scan_batches(bytes) {
            Ok(d) => d,
            Err(e) => {
                warn!(broker = addr, topic, partition = p.partition, error = %e, "corrupt fetch data");
                error.get_or_insert(KafkaCode::CORRUPT_MESSAGE);
                None
            }
        },
        _ => None,
    };
    let aborted = p
        .aborted
        .unwrap_or_default()
        .into_iter()
        .map(|(producer_id, first_offset)| AbortedTxn {
            producer_id,
            first_offset,
        })
        .collect();
    FetchedPartition {
        topic: topic.to_string(),
        partition: p.partition,
        error,
        high_watermark: p.high_watermark,
        last_stable_offset: p.last_stable_offset,
        log_start_offset: p.log_start_offset,
        aborted,
        data,
    }
}

/// The answers of a decoded Fetch response for `parts`, in `parts` order. Topics are named
/// by id for v13+ (an id not asked for is skipped); a partition the broker left out gets the
/// response's top-level error.
pub(crate) fn fetch_answers(
    resp: crate::wire::FetchResponseData,
    version: i16,
    ids: &HashMap<String, Uuid>,
    parts: &[FetchRequestPartition],
    addr: &str,
) -> Vec<FetchedPartition> {
    let top_error = KafkaCode::from_code(resp.error_code);
    let mut answers = answers_by_partition(resp, version, ids, addr);
    parts
        .iter()
        .map(|r| {
            answers
                .remove(&(r.topic.clone(), r.partition))
                .unwrap_or_else(|| FetchedPartition::empty(&r.topic, r.partition, top_error))
        })
        .collect()
}

/// Errors that mean the fetch session is gone or out of step (the next request must be a
/// full one).
fn is_session_error(code: KafkaCode) -> bool {
    matches!(
        code,
        KafkaCode::FETCH_SESSION_ID_NOT_FOUND
            | KafkaCode::INVALID_FETCH_SESSION_EPOCH
            | KafkaCode::FETCH_SESSION_TOPIC_ID_ERROR
    )
}

/// The partitions a decoded Fetch response answered for, by topic and partition.
fn answers_by_partition(
    resp: crate::wire::FetchResponseData,
    version: i16,
    ids: &HashMap<String, Uuid>,
    addr: &str,
) -> HashMap<(String, i32), FetchedPartition> {
    let by_id: HashMap<Uuid, &String> = ids.iter().map(|(n, i)| (*i, n)).collect();
    let mut answers: HashMap<(String, i32), FetchedPartition> = HashMap::new();
    for t in resp.topics {
        let name = if version >= 13 {
            match by_id.get(&t.topic_id) {
                Some(n) => (*n).clone(),
                None => {
                    warn!(broker = addr, topic_id = %t.topic_id, "fetch answer for a topic id not asked for");
                    continue;
                }
            }
        } else {
            t.name
        };
        for p in t.partitions {
            let fp = fetched_partition(&name, p, addr);
            answers.insert((name.clone(), fp.partition), fp);
        }
    }
    answers
}

/// `host:port`, with brackets for IPv6 hosts.
pub(crate) fn format_addr(host: &str, port: i32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A partition to fetch again, the error code its leader answered (`None`: the request
/// failed as a whole) and the error to report if retries run out.
type FetchRetry = (FetchRequestPartition, Option<KafkaCode>, ClientError);

/// Files one leader's answers: done, or to be retried after a metadata refresh (leader
/// moved, epoch fenced or unknown, request timed out on the broker).
fn sort_fetch_answers(
    parts: Vec<FetchRequestPartition>,
    results: Vec<FetchedPartition>,
    done: &mut HashMap<(String, i32), FetchedPartition>,
    retry: &mut Vec<FetchRetry>,
) {
    for (req, fp) in parts.into_iter().zip(results) {
        let key = (req.topic.clone(), req.partition);
        match fp.error {
            Some(code) if code.needs_metadata_refresh() || code == KafkaCode::REQUEST_TIMED_OUT => {
                let e = ClientError::kafka(
                    "Fetch",
                    format!("{}/{}", req.topic, req.partition),
                    code,
                    None,
                );
                // Keep the answer: if retries run out it is reported as is.
                done.insert(key, fp);
                retry.push((req, Some(code), e));
            }
            _ => {
                done.insert(key, fp);
            }
        }
    }
}

/// Retries ran out: partitions whose leader answered with an error code report it in
/// their answer; a request that failed as a whole (network) is the error.
fn give_up_fetch(
    retry: Vec<FetchRetry>,
    done: &mut HashMap<(String, i32), FetchedPartition>,
) -> Result<()> {
    let mut network = None;
    for (r, code, e) in retry {
        match code {
            Some(code) => {
                done.entry((r.topic.clone(), r.partition))
                    .or_insert_with(|| FetchedPartition::empty(&r.topic, r.partition, Some(code)));
            }
            None => network = Some(e),
        }
    }
    match network {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Items grouped by the leader of their partition, what could not be routed, and the
/// metadata generation each topic was routed with.
struct Routing<T> {
    groups: BTreeMap<i32, Vec<T>>,
    failed: Vec<(T, ClientError)>,
    seen: HashMap<String, u64>,
}

/// A copy of an error for reporting (errors are not `Clone` because of `io::Error`).
pub(crate) fn clone_err(e: &ClientError) -> ClientError {
    match e {
        ClientError::Kafka {
            addr,
            api,
            context,
            code,
            message,
        } => ClientError::Kafka {
            addr: addr.clone(),
            api: api.clone(),
            context: context.clone(),
            code: *code,
            message: message.clone(),
        },
        other => ClientError::Metadata(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    //! Request building and response handling of Fetch, without a broker.

    use super::*;
    use crate::batch::{build_batch, ProduceRecord};
    use crate::wire::{FetchPartitionResponse, FetchResponseData, FetchTopicResponse};
    use bytes::Bytes;
    use kafka_protocol::records::Compression;

    fn part(topic: &str, partition: i32, offset: i64) -> FetchRequestPartition {
        FetchRequestPartition {
            topic: topic.into(),
            partition,
            offset,
        }
    }

    fn answer(partition: i32, error_code: i16, records: Option<Bytes>) -> FetchPartitionResponse {
        FetchPartitionResponse {
            partition,
            error_code,
            high_watermark: 10,
            last_stable_offset: 9,
            log_start_offset: 1,
            aborted: Some(vec![(7, 3)]),
            records,
        }
    }

    #[test]
    fn fetch_request_groups_partitions_by_topic_and_names_ids_from_v13() {
        let parts = [part("a", 0, 5), part("b", 1, 7), part("a", 2, 9)];
        let id = Uuid::from_u128(42);
        let ids = HashMap::from([("a".to_string(), id)]);
        let opts = FetchOptions {
            isolation: Isolation::ReadCommitted,
            ..FetchOptions::default()
        };
        let req = build_fetch_request(&parts, &opts, &ids, 13);
        assert_eq!(req.isolation_level, 1);
        assert_eq!(req.max_wait_ms, opts.max_wait_ms);
        assert_eq!(req.topics.len(), 2);
        assert_eq!(req.topics[0].topic.0.as_str(), "a");
        assert_eq!(req.topics[0].topic_id, id);
        let a: Vec<(i32, i64)> = req.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition, p.fetch_offset))
            .collect();
        assert_eq!(a, vec![(0, 5), (2, 9)]);
        assert_eq!(req.topics[1].topic_id, Uuid::nil(), "b has no id");
        // Before v13 no topic id is sent.
        let req = build_fetch_request(&parts, &opts, &ids, 12);
        assert_eq!(req.topics[0].topic_id, Uuid::nil());
    }

    #[test]
    fn fetch_answers_come_back_in_request_order_with_the_top_error_for_missing_ones() {
        let batch = build_batch(
            3,
            &[ProduceRecord {
                value: Some(Bytes::from_static(b"v")),
                ..ProduceRecord::default()
            }],
            Compression::None,
            0,
            None,
        )
        .unwrap();
        let resp = FetchResponseData {
            throttle_time_ms: 0,
            error_code: KafkaCode::UNKNOWN_SERVER_ERROR.0,
            session_id: 0,
            topics: vec![FetchTopicResponse {
                name: "a".into(),
                topic_id: Uuid::nil(),
                partitions: vec![
                    answer(2, 0, Some(batch)),
                    answer(0, KafkaCode::NOT_LEADER_OR_FOLLOWER.0, None),
                ],
            }],
        };
        let parts = [part("a", 0, 0), part("a", 2, 3), part("a", 5, 0)];
        let got = fetch_answers(resp, 12, &HashMap::new(), &parts, "b:1");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].error, Some(KafkaCode::NOT_LEADER_OR_FOLLOWER));
        assert_eq!(got[1].partition, 2);
        assert_eq!(got[1].error, None);
        assert_eq!(got[1].high_watermark, 10);
        assert_eq!(
            got[1].aborted,
            vec![AbortedTxn {
                producer_id: 7,
                first_offset: 3
            }]
        );
        let d = got[1].data.as_ref().expect("the batch");
        assert_eq!((d.first_offset, d.next_offset), (3, 4));
        assert_eq!(got[2].error, Some(KafkaCode::UNKNOWN_SERVER_ERROR));
        assert_eq!(got[2].high_watermark, -1);
    }

    #[test]
    fn fetch_answers_name_topics_by_id_from_v13_and_flag_corrupt_data() {
        let id = Uuid::from_u128(7);
        let ids = HashMap::from([("a".to_string(), id)]);
        let resp = FetchResponseData {
            throttle_time_ms: 0,
            error_code: 0,
            session_id: 0,
            topics: vec![
                FetchTopicResponse {
                    name: String::new(),
                    topic_id: id,
                    partitions: vec![answer(0, 0, Some(Bytes::from(vec![0u8; 80])))],
                },
                FetchTopicResponse {
                    name: String::new(),
                    topic_id: Uuid::from_u128(99),
                    partitions: vec![answer(1, 0, None)],
                },
            ],
        };
        let got = fetch_answers(resp, 13, &ids, &[part("a", 0, 0)], "b:1");
        assert_eq!(got[0].topic, "a");
        assert_eq!(got[0].error, Some(KafkaCode::CORRUPT_MESSAGE));
        assert!(got[0].data.is_none());
    }
}
