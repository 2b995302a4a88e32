//! A compacted topic read as a table: the worker keeps its pipeline definitions and task
//! status in two of them (as Kafka Connect keeps its configs and status), so every worker
//! of the group, and a new one joining later, sees the same state.
//!
//! Each worker reads the whole topic from the start and then follows it; a write goes to
//! Kafka first and is seen by this worker (and the others) when its tail reaches it, so
//! every worker applies changes in the same order.

use bytes::Bytes;
use ferry_core::{Error, Result};
use ferry_kafka::{
    Client, FetchOptions, FetchRequestPartition, NewTopic, OffsetSpec, ProduceBatch, ProduceRecord,
    Producer, ProducerConfig, TopicResult,
};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// One key's latest value and the offset it was written at.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The value.
    pub value: Bytes,
    /// Its offset in the topic: grows with every write, so it versions the value.
    pub offset: i64,
}

/// A compacted single-partition topic as a key → value table.
#[derive(Clone)]
pub struct CompactedTopic {
    name: String,
    client: Client,
    producer: Producer,
    table: Arc<RwLock<BTreeMap<String, Entry>>>,
    /// The next offset the tail will read: everything below it is in `table`.
    applied: watch::Receiver<i64>,
}

fn kerr(what: String) -> impl FnOnce(ferry_kafka::ClientError) -> Error {
    move |e| Error::connection(what, e.is_retriable(), e)
}

impl CompactedTopic {
    /// Creates the topic if missing (one partition, compacted, the broker's replication),
    /// reads it to its end, then keeps following it in the background.
    pub async fn open(client: &Client, name: &str) -> Result<Self> {
        ensure_topic(client, name).await?;
        let producer = client
            .producer(ProducerConfig::default())
            .map_err(kerr(format!("producer for {name}")))?;
        let table = Arc::new(RwLock::new(BTreeMap::new()));
        let (tx, applied) = watch::channel(0i64);
        let end = client
            .list_offsets(name, &[0], OffsetSpec::Latest)
            .await
            .map_err(kerr(format!("end of topic {name}")))?
            .get(&0)
            .copied()
            .unwrap_or(0);
        // The follower long-polls (Fetch waits up to 500 ms for data) and a broker answers
        // one connection's requests in order: on a shared connection every write of this
        // worker would queue behind a waiting fetch. So the follower gets its own client.
        let follower = Client::connect(client.config().clone())
            .await
            .map_err(kerr(format!("reader of topic {name}")))?;
        tokio::spawn(follow(follower, name.to_string(), table.clone(), tx));
        let topic = CompactedTopic {
            name: name.to_string(),
            client: client.clone(),
            producer,
            table,
            applied,
        };
        topic.wait_applied(end).await?;
        Ok(topic)
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A copy of the table.
    pub fn entries(&self) -> BTreeMap<String, Entry> {
        match self.table.read() {
            Ok(t) => t.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// One key's entry.
    pub fn get(&self, key: &str) -> Option<Entry> {
        match self.table.read() {
            Ok(t) => t.get(key).cloned(),
            Err(p) => p.into_inner().get(key).cloned(),
        }
    }

    /// A receiver that changes whenever the tail applied more records.
    pub fn changes(&self) -> watch::Receiver<i64> {
        self.applied.clone()
    }

    /// Writes `key` (`None` deletes it) and waits until this worker's table holds the
    /// write, so a read right after sees it. Returns the write's offset.
    pub async fn put(&self, key: &str, value: Option<Bytes>) -> Result<i64> {
        let record = ProduceRecord {
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value,
            headers: Vec::new(),
            timestamp: crate::now_ms(),
        };
        let results = self
            .producer
            .produce(vec![ProduceBatch {
                topic: self.name.clone(),
                partition: 0,
                records: vec![record],
            }])
            .await
            .map_err(kerr(format!("writing to {}", self.name)))?;
        let offset = results
            .first()
            .map(|r| r.base_offset)
            .filter(|o| *o >= 0)
            .ok_or_else(|| {
                Error::internal(format!("{}: the write returned no offset", self.name))
            })?;
        self.wait_applied(offset + 1).await?;
        Ok(offset)
    }

    /// Waits until the tail has read everything below `offset`.
    async fn wait_applied(&self, offset: i64) -> Result<()> {
        let mut rx = self.applied.clone();
        let reached = tokio::time::timeout(Duration::from_secs(60), async {
            rx.wait_for(|applied| *applied >= offset).await.is_ok()
        })
        .await;
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::internal(format!(
                "the reader of {} stopped",
                self.name
            ))),
            Err(_) => Err(Error::connection(
                format!("topic {}", self.name),
                true,
                format!(
                    "could not read {} up to offset {offset} within 60s",
                    self.name
                ),
            )),
        }
    }

    /// The client this topic is read with.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Creates `name` as a compacted topic of one partition unless it exists.
async fn ensure_topic(client: &Client, name: &str) -> Result<()> {
    let topic = NewTopic {
        name: name.to_string(),
        partitions: 1,
        replication_factor: -1,
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
    };
    let results = client
        .create_topics(&[topic])
        .await
        .map_err(kerr(format!("creating topic {name}")))?;
    for (t, r) in results {
        if r == TopicResult::Created {
            tracing::info!(topic = %t, "created the worker topic (compacted, 1 partition)");
        }
    }
    Ok(())
}

/// Reads the topic from the start, forever, applying each record to the table (a null value
/// deletes its key) and publishing the next offset after each round.
async fn follow(
    client: Client,
    name: String,
    table: Arc<RwLock<BTreeMap<String, Entry>>>,
    applied: watch::Sender<i64>,
) {
    let topic: Arc<str> = Arc::from(name.as_str());
    let mut position = 0i64;
    let opts = FetchOptions {
        max_wait_ms: 500,
        ..FetchOptions::default()
    };
    let mut failures = 0u32;
    loop {
        if applied.is_closed() {
            return;
        }
        let req = [FetchRequestPartition {
            topic: name.clone(),
            partition: 0,
            offset: position,
        }];
        let fetched = match client.fetch(&req, &opts).await {
            Ok(f) => f,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures % 60 == 0 {
                    tracing::warn!(topic = %name, error = %e, "cannot read the worker topic; retrying");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        failures = 0;
        for part in fetched {
            if let Some(code) = part.error {
                if code == ferry_kafka::KafkaCode::OFFSET_OUT_OF_RANGE
                    && part.log_start_offset > position
                {
                    // Records before the log start were deleted: nothing to apply there.
                    position = part.log_start_offset;
                    continue;
                }
                tracing::debug!(topic = %name, error = %code.name(), "worker topic fetch error");
                client.invalidate_metadata();
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            if let Some(data) = part.data {
                match ferry_kafka::decode_batches(&data.bytes, &topic, 0) {
                    Ok(records) => {
                        let mut t = match table.write() {
                            Ok(t) => t,
                            Err(p) => p.into_inner(),
                        };
                        for r in records.iter().filter(|r| r.offset >= position) {
                            let Some(key) = r.key.as_ref() else { continue };
                            let key = String::from_utf8_lossy(key).into_owned();
                            match &r.value {
                                Some(v) => {
                                    t.insert(
                                        key,
                                        Entry {
                                            value: v.clone(),
                                            offset: r.offset,
                                        },
                                    );
                                }
                                None => {
                                    t.remove(&key);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(topic = %name, error = %e, "undecodable records in the worker topic; skipping them");
                    }
                }
                position = position.max(data.next_offset);
            }
            // Everything below `position` is in the table.
            let _ = applied.send(position);
        }
    }
}
