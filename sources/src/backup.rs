//! `backup` source: reads what a storage sink wrote, the reading half of a restore.
//!
//! ```yaml
//! source:
//!   type: backup
//!   uri: s3://backups/prod?endpoint=http://127.0.0.1:9000
//!   topics: [orders, "/payments\\..*/"] # default: every topic of the backup
//!   partitions: [0, 1]                   # default: every partition
//!   until: 2026-11-24T10:00:00Z          # point in time (RFC 3339 or epoch millis)
//!   from_offset: 1000                    # original offsets, every partition
//!   to_offset: 2000                      # exclusive
//!   offsets:                             # per-partition ranges, override from/to_offset
//!     "orders/0": { from: 10, to: 50 }
//!   include_aborted: false
//!   encryption: { key_file: /etc/ferry/backup.key }  # an encrypted backup's key(s)
//! ```
//!
//! Per partition, segments are read in offset order from the restore checkpoint (the next
//! original offset to restore), with ranged reads of `read_chunk` bytes split on whole Kafka
//! batches, so memory stays bounded whatever the segment size. Every batch's CRC is checked.
//! Partitions are interleaved round-robin. Batches carry decoded records with their original
//! topic, partition and offsets, and the original offset span they cover; transaction
//! markers and (unless `include_aborted`) aborted transactional data are dropped, but their
//! offsets stay covered so the checkpoint moves past them. When every partition is read the
//! source finishes.
//!
//! Exports are restorable too: `jsonl` and `avro` segments stream the same way (lines, Avro
//! blocks); a `parquet` segment is read whole, so it needs memory for one object (at most
//! the sink's `roll.max_bytes`) per partition being read (up to 32 partitions are read at
//! once). The whole-object CRC-32C of avro and parquet segments is checked against the
//! manifest. These formats hold data records only, with no transaction markers or flags:
//! what the export read is what is restored. Segments may be named by a sink `path:`
//! template: the manifest names the object.
//!
//! A transaction's outcome is read from its commit/abort marker in the data (see [`txn`]):
//! the source reads ahead of the restore position for it, so it is right for backups taken
//! with either fetch isolation (a `read_uncommitted` fetch carries no aborted-transaction
//! list) and when a restore resumes inside a transaction. Transactional data whose marker
//! is not in the backup (the transaction was open when the backup was taken) is not
//! restored, as a `read_committed` consumer would not have seen it. Partitions with
//! transactions are read about twice (the look-ahead reads headers and markers only).
//!
//! `until` follows Kafka's `offsetsForTimes` rule: a partition is restored up to (not
//! including) its first record whose timestamp is later than `until`, so each partition is
//! a clean prefix even when timestamps are out of order. Only records that are restored
//! decide the cut (transaction markers and aborted data do not).
//!
//! An encrypted backup (a storage sink with `encryption:`) needs its keys here too
//! (`key_files: [new, old]` after a rotation): before anything is handed on, every selected
//! segment's key id is checked against them, so a missing or wrong key stops a restore
//! before it writes. Segments are decrypted chunk by chunk as they are read.
//!
//! [`catalog`], [`inspect`] and [`verify`] are the building blocks of `ferry ls` and
//! `ferry verify`; [`plan`] is what `ferry restore --dry-run` and the console's restore
//! wizard show before a restore runs.

pub mod catalog;
pub mod inspect;
pub mod partition;
pub mod plan;
pub mod segment;
pub mod txn;
pub mod verify;

pub use catalog::Catalog;
pub use partition::{Bounds, PartitionReader, Span};

use async_trait::async_trait;
use ferry_core::registry::{BuildContext, SourceFactory};
use ferry_core::transforms::filter::TimeBound;
use ferry_core::{
    Batch, ByteSize, Error, GroupOffsets, Payload, RawBatches, Result, Source, SourceContext,
    SourceMetadata, Storage, TopicSelection,
};
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

const NAME: &str = "backup";

/// Records (approximate bytes) gathered into one emitted batch.
const TARGET_BATCH_BYTES: usize = 1 << 20;

/// Partitions read at once (round robin); the others wait their turn. Each holds about
/// one read chunk and one read ahead, so this bounds the source's memory.
const ACTIVE_PARTITIONS: usize = 32;

/// Bytes the active partitions' chunks and read-aheads may hold together when `read_chunk`
/// is not given: each partition's chunk is this shared out (4 MiB at most, 1 MiB at least),
/// so a restore of many partitions holds 64 MiB of reads, not 32 × 2 × 4 MiB.
const READ_BUDGET: u64 = 64 << 20;

/// Smallest chunk the shared budget gives a partition (smaller ranged reads would cost
/// more in requests to an object store than they save).
const MIN_SHARED_CHUNK: u64 = 1 << 20;

/// Each active partition's read chunk: `read_chunk` when given, else [`READ_BUDGET`]
/// shared by the `active` partitions, each with a chunk in hand and one read ahead.
fn chunk_for(configured: Option<u64>, active: usize) -> u64 {
    configured.unwrap_or_else(|| {
        (READ_BUDGET / (2 * active.max(1) as u64))
            .clamp(MIN_SHARED_CHUNK, segment::DEFAULT_READ_CHUNK)
    })
}

/// Configuration of the `backup` source.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupSourceConfig {
    /// Where the backup is: a local folder, `file:///path`, `s3://bucket/prefix?endpoint=…`,
    /// `gs://…`, `azblob://…` or `memory://name`.
    pub uri: String,
    /// Topics to restore: exact names or regexes between slashes (`"/orders\\..*/"`),
    /// anchored to the whole name, internal `__` topics only by exact name (the rule of every
    /// `topics:` list). Default: every topic of the backup. A name the backup does not hold is
    /// an error.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// Partitions to restore (of every selected topic). Default: all.
    #[serde(default)]
    pub partitions: Option<Vec<i32>>,
    /// Point in time: per partition, every record before the first record whose timestamp
    /// is later than this (RFC 3339 or milliseconds since the Unix epoch). Also picks the
    /// consumer-group snapshot taken at or before it.
    #[serde(default)]
    pub until: Option<TimeBound>,
    /// First original offset to restore, in every partition (inclusive).
    #[serde(default)]
    pub from_offset: Option<i64>,
    /// Original offset to stop before, in every partition (exclusive).
    #[serde(default)]
    pub to_offset: Option<i64>,
    /// Per-partition offset ranges keyed `"topic/partition"`; they replace `from_offset`
    /// and `to_offset` for that partition.
    #[serde(default)]
    pub offsets: BTreeMap<String, OffsetRange>,
    /// Keep the data of aborted (and never finished) transactions (default false: dropped,
    /// as a `read_committed` consumer would). Transaction markers are always dropped.
    #[serde(default)]
    pub include_aborted: bool,
    /// Bytes per ranged read of a segment. Default: 64 MiB shared by the partitions read
    /// at once (each with one chunk read ahead): 4 MiB for up to 8 partitions, down to 1 MiB
    /// for 32. A batch larger than this is read whole.
    #[serde(default)]
    pub read_chunk: Option<ByteSize>,
    /// The keys of an encrypted backup: `{key_file: PATH}`, `{key_env: VAR}`, or after a
    /// key rotation `{key_files: [new, old]}` (every key the selected segments were written
    /// with).
    #[serde(default)]
    pub encryption: Option<ferry_core::encryption::EncryptionConfig>,
}

/// An original offset range `from <= offset < to`; either bound may be left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OffsetRange {
    /// First offset to restore (inclusive).
    #[serde(default)]
    pub from: Option<i64>,
    /// Offset to stop before (exclusive).
    #[serde(default)]
    pub to: Option<i64>,
}

/// The config, checked and compiled.
#[derive(Debug, Clone)]
struct Resolved {
    storage: Storage,
    topics: Option<TopicSelection>,
    partitions: Option<Vec<i32>>,
    until: Option<i64>,
    range: OffsetRange,
    per_partition: BTreeMap<(String, i32), OffsetRange>,
    include_aborted: bool,
    /// `read_chunk`, when given (else shared out by [`chunk_for`]).
    chunk: Option<u64>,
}

fn check_range(what: &str, r: OffsetRange) -> Result<()> {
    if let (Some(f), Some(t)) = (r.from, r.to) {
        if f > t {
            return Err(Error::config(format!(
                "{what}: from {f} is after to {t}; the range is from (inclusive) to (exclusive)"
            )));
        }
    }
    if r.from.is_some_and(|f| f < 0) || r.to.is_some_and(|t| t < 0) {
        return Err(Error::config(format!("{what}: offsets cannot be negative")));
    }
    Ok(())
}

impl Resolved {
    fn new(c: &BackupSourceConfig) -> Result<Resolved> {
        let storage = Storage::open_read_only(&c.uri)?;
        let topics = match &c.topics {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(Error::config(
                    "'topics' is empty: leave it out to restore every topic",
                ))
            }
            Some(list) => Some(
                TopicSelection::parse(list).map_err(|e| Error::config(format!("'topics': {e}")))?,
            ),
        };
        let range = OffsetRange {
            from: c.from_offset,
            to: c.to_offset,
        };
        check_range("'from_offset'/'to_offset'", range)?;
        let mut per_partition = BTreeMap::new();
        for (key, r) in &c.offsets {
            let parsed = key
                .rsplit_once('/')
                .and_then(|(t, p)| Some((t.to_string(), p.parse::<i32>().ok()?)))
                .filter(|(t, p)| !t.is_empty() && *p >= 0);
            let Some(tp) = parsed else {
                return Err(Error::config(format!(
                    "'offsets': key '{key}' is not \"topic/partition\" (e.g. \"orders/0\")"
                )));
            };
            check_range(&format!("'offsets.{key}'"), *r)?;
            per_partition.insert(tp, *r);
        }
        let chunk = c.read_chunk.map(ByteSize::bytes);
        if chunk == Some(0) {
            return Err(Error::config("'read_chunk' must be more than 0 bytes"));
        }
        if let Some(e) = &c.encryption {
            e.validate()?;
        }
        Ok(Resolved {
            storage,
            topics,
            partitions: c.partitions.clone(),
            until: c.until.map(|t| t.0),
            range,
            per_partition,
            include_aborted: c.include_aborted,
            chunk,
        })
    }

    /// The selected topics among those of the backup; a missing exact name is an error.
    fn select_topics(&self, catalog: &Catalog) -> Result<Vec<String>> {
        let all = catalog.topics();
        let Some(selection) = &self.topics else {
            return Ok(all);
        };
        for name in selection.exact_names() {
            if !all.iter().any(|t| t == name) {
                return Err(Error::config(format!(
                    "topic '{name}' is not in the backup at {} (it holds: {})",
                    self.storage,
                    if all.is_empty() {
                        "no topics".to_string()
                    } else {
                        all.join(", ")
                    }
                )));
            }
        }
        Ok(all.into_iter().filter(|t| selection.matches(t)).collect())
    }

    fn partition_selected(&self, p: i32) -> bool {
        self.partitions.as_ref().is_none_or(|l| l.contains(&p))
    }

    fn range_of(&self, topic: &str, partition: i32) -> OffsetRange {
        self.per_partition
            .get(&(topic.to_string(), partition))
            .copied()
            .unwrap_or(self.range)
    }
}

/// Factory of the `backup` source.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackupSourceFactory;

impl SourceFactory for BackupSourceFactory {
    type Config = BackupSourceConfig;

    fn name(&self) -> &'static str {
        NAME
    }

    fn description(&self) -> &'static str {
        "Reads a Ferry backup (raw, jsonl, avro or parquet segments) back as records, for restores: point in time, offset ranges, resumable"
    }

    fn validate(&self, config: &BackupSourceConfig) -> Result<()> {
        Resolved::new(config).map(|_| ())
    }

    fn build(&self, config: BackupSourceConfig, _ctx: &BuildContext) -> Result<Box<dyn Source>> {
        Ok(Box::new(BackupSource::new(config)?))
    }
}

/// Manifests of the selected partitions, per (topic, partition).
type PartitionManifests = Vec<((String, i32), Vec<ferry_formats::layout::SegmentManifest>)>;

/// What the source learned from storage on first use.
struct Opened {
    catalog: Catalog,
    topics: Vec<String>,
    /// The selected partitions' manifests (key ids checked), until the readers take them.
    manifests: Option<PartitionManifests>,
}

/// Reads a backup back as batches of records. See the [module docs](self).
pub struct BackupSource {
    config: Resolved,
    opened: Option<Opened>,
    /// Partitions being read, in round-robin order; `None` until the first batch.
    readers: Option<VecDeque<PartitionReader>>,
    /// Partitions waiting for a place among the active ones.
    waiting: VecDeque<PartitionReader>,
    metadata_sent: bool,
    /// Decodes raw batches handed on undecoded, for sinks and transforms that need records.
    decoder: Arc<ferry_kafka::BatchDecoder>,
    /// Keys of an encrypted backup (`encryption:`), read when the source is built.
    keys: Option<Arc<dyn ferry_core::encryption::KeyProvider>>,
}

impl std::fmt::Debug for BackupSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupSource")
            .field("storage", &self.config.storage)
            .field("partitions_left", &self.readers.as_ref().map(VecDeque::len))
            .finish()
    }
}

impl BackupSource {
    /// A source for `config` (nothing is read until the first batch or metadata request).
    pub fn new(config: BackupSourceConfig) -> Result<Self> {
        let keys = config.encryption.as_ref().map(|e| e.load()).transpose()?;
        Ok(BackupSource {
            keys,
            config: Resolved::new(&config)?,
            opened: None,
            readers: None,
            waiting: VecDeque::new(),
            metadata_sent: false,
            decoder: Arc::new(ferry_kafka::BatchDecoder),
        })
    }

    async fn open(&mut self) -> Result<&Opened> {
        if self.opened.is_none() {
            let catalog = Catalog::open(self.config.storage.clone()).await?;
            let topics = self.config.select_topics(&catalog)?;
            let manifests =
                selected_manifests(&self.config, self.keys.as_ref(), &catalog, &topics).await?;
            self.opened = Some(Opened {
                catalog,
                topics,
                manifests: Some(manifests),
            });
        }
        match self.opened.as_ref() {
            Some(o) => Ok(o),
            None => Err(Error::internal("backup source: catalog not opened")),
        }
    }

    async fn build_readers(&mut self, ctx: &SourceContext) -> Result<VecDeque<PartitionReader>> {
        self.open().await?;
        let config = self.config.clone();
        let keys = self.keys.clone();
        let Some(opened) = self.opened.as_mut() else {
            return Err(Error::internal("backup source: catalog not opened"));
        };
        let mut readers = VecDeque::new();
        let mut names: BTreeMap<String, Arc<str>> = BTreeMap::new();
        for ((topic, partition), manifests) in opened.manifests.take().unwrap_or_default() {
            // Refuse a format restore cannot read now, not when the partition gets there.
            for m in &manifests {
                segment::format_of(&config.storage, m)?;
            }
            let range = config.range_of(&topic, partition);
            let start = match (ctx.resume_offset(&topic, partition), range.from) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let name = names
                .entry(topic.clone())
                .or_insert_with(|| Arc::from(topic.as_str()))
                .clone();
            // What the progress display expects: the records of the segments in range.
            let lo = start.unwrap_or(i64::MIN);
            let hi = range.to.unwrap_or(i64::MAX);
            ferry_core::progress::expect(
                manifests
                    .iter()
                    .filter(|m| m.next_offset > lo && m.first_offset < hi)
                    .filter(|m| {
                        config
                            .until
                            .is_none_or(|u| m.min_timestamp.is_none_or(|t| t <= u))
                    })
                    .map(|m| m.record_count)
                    .sum(),
            );
            let reader = PartitionReader::new(
                config.storage.clone(),
                name,
                partition,
                manifests,
                Bounds {
                    start,
                    end: range.to,
                    until: config.until,
                },
                config.include_aborted,
                segment::DEFAULT_READ_CHUNK,
            )
            .with_keys(keys.clone());
            if !reader.is_done() {
                readers.push_back(reader);
            }
        }
        let chunk = chunk_for(config.chunk, readers.len().min(ACTIVE_PARTITIONS));
        for r in readers.iter_mut() {
            r.set_chunk(chunk);
        }
        tracing::info!(
            backup = %config.storage,
            topics = opened.topics.len(),
            partitions = readers.len(),
            read_chunk = chunk,
            "reading backup"
        );
        Ok(readers)
    }
}

#[async_trait]
impl Source for BackupSource {
    async fn next_batch(&mut self, ctx: &SourceContext) -> Result<Option<Batch>> {
        if self.readers.is_none() {
            let mut all = self.build_readers(ctx).await?;
            let rest = all.split_off(all.len().min(ACTIVE_PARTITIONS));
            self.waiting = rest;
            self.readers = Some(all);
        }
        let Some(readers) = self.readers.as_mut() else {
            return Ok(None);
        };
        while let Some(mut reader) = readers.pop_front() {
            let span = reader.next_span(TARGET_BATCH_BYTES).await?;
            let topic = reader.topic().clone();
            let partition = reader.partition();
            if !reader.is_done() {
                readers.push_back(reader);
            } else if let Some(next) = self.waiting.pop_front() {
                readers.push_back(next);
            }
            if let Some(span) = span {
                let ack = ctx.ack(&topic, partition, span.first_offset, span.next_offset);
                if let Some(b) = span.raw {
                    // A whole batch as it was backed up: sinks that can take it raw (a
                    // restore keeping partitions, a raw copy of the backup) skip decoding.
                    let h = b.header;
                    return Ok(Some(Batch {
                        topic,
                        partition,
                        first_offset: span.first_offset,
                        next_offset: span.next_offset,
                        payload: Payload::Raw(RawBatches {
                            bytes: b.bytes,
                            record_count: u64::try_from(h.record_count).unwrap_or(0),
                            min_timestamp: Some(h.first_timestamp()),
                            max_timestamp: Some(h.max_timestamp),
                            aborted: Vec::new(),
                            decoder: self.decoder.clone(),
                        }),
                        ack,
                    }));
                }
                return Ok(Some(Batch::from_records(
                    topic,
                    partition,
                    span.first_offset,
                    span.next_offset,
                    span.records,
                    ack,
                )));
            }
        }
        Ok(None)
    }

    async fn metadata(&mut self) -> Result<Option<SourceMetadata>> {
        if self.metadata_sent {
            return Ok(None);
        }
        self.open().await?;
        let Some(opened) = self.opened.as_ref() else {
            return Ok(None);
        };
        let mut topics = Vec::new();
        for t in &opened.topics {
            if let Some(doc) = opened.catalog.topic_document(t).await? {
                topics.push(doc.latest);
            }
        }
        let groups_doc = opened.catalog.groups_at(self.config.until).await?;
        let taken_at_ms = groups_doc
            .as_ref()
            .map_or_else(ferry_formats::layout::now_ms, |g| g.taken_at_ms);
        let groups = groups_doc
            .map(|d| filter_groups(d.groups, &opened.topics, &self.config))
            .unwrap_or_default();
        self.metadata_sent = true;
        Ok(Some(SourceMetadata {
            taken_at_ms,
            topics,
            groups,
        }))
    }
}

/// The manifests of the selected partitions. Before anything is read or handed on (a
/// restore creates topics from the metadata), every key id is checked against the keys.
async fn selected_manifests(
    config: &Resolved,
    keys: Option<&Arc<dyn ferry_core::encryption::KeyProvider>>,
    catalog: &Catalog,
    topics: &[String],
) -> Result<PartitionManifests> {
    let selected: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|t| {
            catalog
                .partitions(t)
                .into_iter()
                .filter(|p| config.partition_selected(*p))
                .map(move |p| (t.clone(), p))
        })
        .collect();
    let manifests = catalog.manifests_of(selected).await?;
    for m in manifests.iter().flat_map(|(_, ms)| ms) {
        segment::check_key(&config.storage, m, keys)?;
    }
    Ok(manifests)
}

/// Keeps the offsets of selected topics and partitions; groups left with none are dropped.
fn filter_groups(
    groups: Vec<GroupOffsets>,
    topics: &[String],
    config: &Resolved,
) -> Vec<GroupOffsets> {
    groups
        .into_iter()
        .filter_map(|mut g| {
            g.offsets.retain(|t, parts| {
                parts.retain(|p, _| config.partition_selected(*p));
                topics.contains(t) && !parts.is_empty()
            });
            (!g.offsets.is_empty()).then_some(g)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_budget_is_shared_by_the_active_partitions() {
        const MIB: u64 = 1 << 20;
        assert_eq!(
            chunk_for(None, 1),
            4 * MIB,
            "a few partitions keep 4 MiB reads"
        );
        assert_eq!(chunk_for(None, 8), 4 * MIB);
        assert_eq!(chunk_for(None, 16), 2 * MIB);
        assert_eq!(chunk_for(None, ACTIVE_PARTITIONS), MIB);
        assert!(2 * ACTIVE_PARTITIONS as u64 * chunk_for(None, ACTIVE_PARTITIONS) <= READ_BUDGET);
        assert_eq!(chunk_for(None, 0), 4 * MIB);
        assert_eq!(chunk_for(Some(123), 32), 123, "read_chunk given wins");
    }
}
