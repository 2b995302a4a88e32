//! `generator`: deterministic synthetic records, for demos, tests and benchmarks (no Kafka).
//!
//! ```yaml
//! source:
//!   type: generator
//!   count: 1000          # total records across restarts; omit for an endless stream
//!   rate: 500            # records per second; omit for as fast as possible
//!   topic: generated
//!   partitions: 3
//!   key_space: 100       # keys key-0 … key-99; omit for null keys
//!   payload_size: 100    # bytes of value
//!   seed: 0              # same seed, same records
//!   batch_size: 500
//!   timestamps: fixed    # fixed (deterministic) | now
//! ```
//!
//! Record content depends only on `(seed, partition, offset)`, so every run (and every
//! resumed run) produces the same records at the same offsets:
//!
//! - **Partitions.** With keys, key `key-K` always lands where Kafka's default partitioner
//!   puts it (murmur2 of the key bytes, as Java clients do); partitions no key hashes to stay
//!   empty. Without keys, every partition is used. Batches go round robin over the
//!   partitions in use; each batch holds one partition's consecutive offsets from 0.
//! - **Count.** `count` records in total, split evenly over the partitions in use (the first
//!   `count % n` get one more). A resumed run continues each partition from the checkpoint's
//!   next offset, so the total over all runs is still `count`.
//! - **Values** are `payload_size` printable ASCII bytes (letters and digits).
//! - **Timestamps** (`fixed`) start at 2024-01-01T00:00:00Z and grow by 1 ms per record
//!   in the order records would be produced round robin; `now` uses the wall clock.

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::registry::{BuildContext, SourceFactory};
use ferry_core::{Batch, Error, Record, Result, Source, SourceContext};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// First timestamp of `timestamps: fixed`: 2024-01-01T00:00:00Z in milliseconds.
pub const FIXED_START_MS: i64 = 1_704_067_200_000;

/// Largest `key_space` (keys are grouped by partition up front).
pub const MAX_KEY_SPACE: u64 = 10_000_000;

/// How record timestamps are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Timestamps {
    /// Deterministic: a fixed start plus 1 ms per record.
    #[default]
    Fixed,
    /// The wall clock when the record is generated.
    Now,
}

fn default_topic() -> String {
    "generated".into()
}
fn default_partitions() -> u32 {
    1
}
fn default_payload_size() -> usize {
    100
}
fn default_batch_size() -> usize {
    500
}

/// Options of the `generator` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Total records over all runs of the pipeline; omit for an endless stream.
    #[serde(default)]
    pub count: Option<u64>,
    /// Records per second; omit to generate as fast as the pipeline takes them.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Topic name of the records (default `generated`).
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Number of partitions (default 1).
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Number of distinct keys (`key-0` …); omit for null keys.
    #[serde(default)]
    pub key_space: Option<u64>,
    /// Bytes of each value (default 100).
    #[serde(default = "default_payload_size")]
    pub payload_size: usize,
    /// Seed of the content (default 0): the same seed gives the same records.
    #[serde(default)]
    pub seed: u64,
    /// Records per batch (default 500).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// `fixed` (default, deterministic) or `now`.
    #[serde(default)]
    pub timestamps: Timestamps,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            count: None,
            rate: None,
            topic: default_topic(),
            partitions: default_partitions(),
            key_space: None,
            payload_size: default_payload_size(),
            seed: 0,
            batch_size: default_batch_size(),
            timestamps: Timestamps::Fixed,
        }
    }
}

impl GeneratorConfig {
    /// Checks the options' ranges.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::config(m));
        if self.topic.is_empty() {
            return bad("'topic' must not be empty".into());
        }
        if self.partitions == 0 || self.partitions > 100_000 {
            return bad(format!(
                "'partitions' must be 1..=100000, not {}",
                self.partitions
            ));
        }
        if self.batch_size == 0 {
            return bad("'batch_size' must be at least 1".into());
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return bad(format!(
                    "'rate' must be a positive number of records per second, not {r}"
                ));
            }
        }
        if let Some(k) = self.key_space {
            if k == 0 || k > MAX_KEY_SPACE {
                return bad(format!("'key_space' must be 1..={MAX_KEY_SPACE}, not {k}"));
            }
        }
        if self.payload_size > 64 << 20 {
            return bad("'payload_size' must be at most 64MiB".into());
        }
        Ok(())
    }
}

/// Kafka's murmur2 hash (as in the Java client's `Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let len = data.len();
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a key.
pub fn kafka_partition(key: &[u8], partitions: u32) -> u32 {
    ((murmur2(key) as u32) & 0x7fff_ffff) % partitions
}

/// SplitMix64: a tiny, good-enough mixer for deterministic content.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const ALNUM: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// One partition in use.
#[derive(Debug)]
struct Lane {
    partition: i32,
    /// Position among the partitions in use (for timestamps and quotas).
    index: u64,
    /// Key ids that hash to this partition (empty when keys are null).
    keys: Vec<u64>,
    /// Next offset to generate.
    next: i64,
    /// Offsets this partition gets in total (`None`: endless).
    quota: Option<i64>,
}

/// The `generator` source.
#[derive(Debug)]
pub struct Generator {
    config: GeneratorConfig,
    topic: Arc<str>,
    lanes: Vec<Lane>,
    started: bool,
    cursor: usize,
    /// Records emitted by this run, and when it started (for `rate`).
    emitted: u64,
    clock: Option<tokio::time::Instant>,
    metadata_sent: bool,
}

impl Generator {
    /// A generator for `config` (call [`GeneratorConfig::validate`] first).
    pub fn new(config: GeneratorConfig) -> Self {
        let topic: Arc<str> = Arc::from(config.topic.as_str());
        let mut lanes: Vec<Lane> = (0..config.partitions as i32)
            .map(|p| Lane {
                partition: p,
                index: 0,
                keys: Vec::new(),
                next: 0,
                quota: None,
            })
            .collect();
        if let Some(ks) = config.key_space {
            for k in 0..ks {
                let p = kafka_partition(key_text(k).as_bytes(), config.partitions);
                lanes[p as usize].keys.push(k);
            }
            lanes.retain(|l| !l.keys.is_empty());
        }
        let n = lanes.len() as u64;
        for (i, lane) in lanes.iter_mut().enumerate() {
            lane.index = i as u64;
            lane.quota = config
                .count
                .map(|c| (c / n + u64::from((i as u64) < c % n)) as i64);
        }
        Generator {
            config,
            topic,
            lanes,
            started: false,
            cursor: 0,
            emitted: 0,
            clock: None,
            metadata_sent: false,
        }
    }

    /// The record at `offset` of lane `lane`.
    fn record(&self, lane: &Lane, offset: i64, now_ms: i64) -> Record {
        let h = mix(self.config.seed ^ mix((lane.partition as u64) << 40 ^ offset as u64));
        let mut value = Vec::with_capacity(self.config.payload_size);
        let mut state = h;
        while value.len() < self.config.payload_size {
            state = mix(state);
            for b in state.to_le_bytes() {
                if value.len() == self.config.payload_size {
                    break;
                }
                value.push(ALNUM[(b & 63) as usize]);
            }
        }
        let mut r = Record::new(
            self.topic.clone(),
            lane.partition,
            offset,
            Some(Bytes::from(value)),
        );
        if !lane.keys.is_empty() {
            let k = lane.keys[(h % lane.keys.len() as u64) as usize];
            r.key = Some(Bytes::from(key_text(k)));
        }
        r.timestamp = match self.config.timestamps {
            Timestamps::Fixed => {
                FIXED_START_MS + offset * self.lanes.len() as i64 + lane.index as i64
            }
            Timestamps::Now => now_ms,
        };
        r
    }
}

fn key_text(k: u64) -> String {
    format!("key-{k}")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[async_trait]
impl Source for Generator {
    /// The generated topic's shape, once, so a Kafka sink can create it with the right
    /// partition count.
    async fn metadata(&mut self) -> Result<Option<ferry_core::SourceMetadata>> {
        if self.metadata_sent {
            return Ok(None);
        }
        self.metadata_sent = true;
        Ok(Some(ferry_core::SourceMetadata {
            taken_at_ms: now_ms(),
            topics: vec![ferry_core::TopicSettings {
                name: self.config.topic.clone(),
                partitions: self.config.partitions as i32,
                replication_factor: None,
                configs: Default::default(),
                topic_id: None,
            }],
            groups: Vec::new(),
        }))
    }

    async fn next_batch(&mut self, ctx: &SourceContext) -> Result<Option<Batch>> {
        if !self.started {
            for lane in &mut self.lanes {
                if let Some(o) = ctx.resume_offset(&self.config.topic, lane.partition) {
                    lane.next = o.max(0);
                }
            }
            self.started = true;
        }
        // The next lane with records left, round robin.
        let n = self.lanes.len();
        let Some(li) = (0..n)
            .map(|i| (self.cursor + i) % n)
            .find(|&i| self.lanes[i].quota.is_none_or(|q| self.lanes[i].next < q))
        else {
            return Ok(None);
        };
        let mut size = self.config.batch_size;
        if let Some(rate) = self.config.rate {
            // About ten batches a second, so a low rate is smooth rather than bursty.
            size = size.min(((rate / 10.0).ceil() as usize).max(1));
            let clock = *self.clock.get_or_insert_with(tokio::time::Instant::now);
            let due = clock + Duration::from_secs_f64(self.emitted as f64 / rate);
            // Cancel-safe: nothing has changed yet if this sleep is dropped.
            tokio::time::sleep_until(due).await;
        }
        let lane = &self.lanes[li];
        let first = lane.next;
        let mut next = first + size as i64;
        if let Some(q) = lane.quota {
            next = next.min(q);
        }
        let now = match self.config.timestamps {
            Timestamps::Now => now_ms(),
            Timestamps::Fixed => 0,
        };
        let records: Vec<Record> = (first..next).map(|o| self.record(lane, o, now)).collect();
        let partition = lane.partition;
        self.lanes[li].next = next;
        self.cursor = (li + 1) % n;
        self.emitted += (next - first) as u64;
        let ack = ctx.ack(&self.topic, partition, first, next);
        Ok(Some(Batch::from_records(
            self.topic.clone(),
            partition,
            first,
            next,
            records,
            ack,
        )))
    }
}

/// Registers `generator`.
pub struct GeneratorFactory;

impl SourceFactory for GeneratorFactory {
    type Config = GeneratorConfig;

    fn name(&self) -> &'static str {
        "generator"
    }

    fn description(&self) -> &'static str {
        "Deterministic synthetic records (count, rate, partitions, keys, payload size); resumes from its checkpoint"
    }

    fn validate(&self, config: &GeneratorConfig) -> Result<()> {
        config.validate()
    }

    fn build(&self, config: GeneratorConfig, _ctx: &BuildContext) -> Result<Box<dyn Source>> {
        config.validate()?;
        Ok(Box::new(Generator::new(config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn murmur2_matches_kafka() {
        // Vectors from Kafka's UtilsTest.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    async fn drain(g: &mut Generator, ctx: &SourceContext) -> Vec<Record> {
        let mut out = Vec::new();
        while let Some(b) = g.next_batch(ctx).await.unwrap() {
            assert_eq!(b.next_offset - b.first_offset, b.record_count() as i64);
            let recs = b.records().unwrap().into_owned();
            b.ack.resolve();
            out.extend(recs);
        }
        out
    }

    #[tokio::test]
    async fn count_is_split_over_partitions_and_keys_follow_kafka() {
        let config = GeneratorConfig {
            count: Some(1001),
            partitions: 4,
            key_space: Some(50),
            batch_size: 64,
            payload_size: 10,
            ..Default::default()
        };
        let mut g = Generator::new(config.clone());
        let ctx = SourceContext::new("t");
        let recs = drain(&mut g, &ctx).await;
        assert_eq!(recs.len(), 1001);
        let mut per: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for r in &recs {
            let key = r.key.as_ref().unwrap();
            assert_eq!(kafka_partition(key, 4) as i32, r.partition);
            assert_eq!(r.value.as_ref().unwrap().len(), 10);
            per.entry(r.partition).or_default().push(r.offset);
        }
        for offsets in per.values() {
            assert_eq!(*offsets, (0..offsets.len() as i64).collect::<Vec<_>>());
        }
        // Deterministic.
        let again = drain(&mut Generator::new(config), &SourceContext::new("t")).await;
        assert_eq!(again, recs);
    }

    #[tokio::test]
    async fn resumes_from_checkpoint_so_count_is_total() {
        let config = GeneratorConfig {
            count: Some(100),
            partitions: 2,
            batch_size: 7,
            ..Default::default()
        };
        let all = drain(
            &mut Generator::new(config.clone()),
            &SourceContext::new("t"),
        )
        .await;
        let mut ctx = SourceContext::new("t");
        let mut cp = ferry_core::Offsets::new();
        cp.entry("generated".into()).or_default().insert(0, 20);
        cp.entry("generated".into()).or_default().insert(1, 49);
        ctx.checkpoint = Some(cp);
        let rest = drain(&mut Generator::new(config), &ctx).await;
        assert_eq!(rest.len(), 30 + 1);
        let expected: Vec<&Record> = all
            .iter()
            .filter(|r| {
                (r.partition == 0 && r.offset >= 20) || (r.partition == 1 && r.offset >= 49)
            })
            .collect();
        let mut rest_sorted: Vec<&Record> = rest.iter().collect();
        rest_sorted.sort_by_key(|r| (r.partition, r.offset));
        let mut exp_sorted = expected.clone();
        exp_sorted.sort_by_key(|r| (r.partition, r.offset));
        assert_eq!(rest_sorted, exp_sorted);
    }

    #[tokio::test]
    async fn rate_limits() {
        let config = GeneratorConfig {
            count: Some(60),
            rate: Some(100.0),
            ..Default::default()
        };
        let start = std::time::Instant::now();
        let n = drain(&mut Generator::new(config), &SourceContext::new("t"))
            .await
            .len();
        assert_eq!(n, 60);
        let took = start.elapsed();
        // 60 records at 100/s in batches of 10: the last batch is due after 0.5 s.
        assert!(took >= Duration::from_millis(450), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn validation() {
        let bad = |c: GeneratorConfig| c.validate().unwrap_err().to_string();
        assert!(bad(GeneratorConfig {
            partitions: 0,
            ..Default::default()
        })
        .contains("partitions"));
        assert!(bad(GeneratorConfig {
            rate: Some(-1.0),
            ..Default::default()
        })
        .contains("rate"));
        assert!(bad(GeneratorConfig {
            key_space: Some(0),
            ..Default::default()
        })
        .contains("key_space"));
        assert!(GeneratorConfig::default().validate().is_ok());
    }
}
