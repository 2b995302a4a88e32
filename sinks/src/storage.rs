//! The `storage` sink: writes each partition as rolling segment objects with a manifest,
//! in the backup layout of `ferry_formats::layout`.
//!
//! Write order is segment, then manifest, then (by the runtime) checkpoint, so a crash
//! leaves nothing that looks complete but is not. On start the sink reconciles: segments
//! without a manifest are deleted, and the offsets the manifests cover are reported as
//! durable so the source resumes after them — each offset is stored exactly once.

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::registry::{BuildContext, SinkFactory};
use ferry_core::{
    Ack, Batch, ByteSize, Error, HumanDuration, Offsets, Result, Sink, SourceMetadata, Storage,
};
use ferry_formats::layout::{self, Descriptor, Gap, GroupsDocument, SegmentManifest};
use ferry_formats::segment::{SegmentEncoder, SegmentFormat};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When a segment is closed and a new one begun.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollConfig {
    /// Close a segment once it holds this many bytes.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Close a segment once it holds this many records.
    #[serde(default = "default_max_records")]
    pub max_records: u64,
    /// Close a segment this long after it was opened.
    #[serde(default = "default_max_age")]
    pub max_age: HumanDuration,
}

impl Default for RollConfig {
    fn default() -> Self {
        RollConfig {
            max_bytes: default_max_bytes(),
            max_records: default_max_records(),
            max_age: default_max_age(),
        }
    }
}

fn default_max_bytes() -> ByteSize {
    ByteSize(128 * 1024 * 1024)
}
fn default_max_records() -> u64 {
    1_000_000
}
fn default_max_age() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn default_format() -> String {
    "raw".to_string()
}
fn default_chunk() -> ByteSize {
    ByteSize(8 * 1024 * 1024)
}

/// Options of the `storage` sink.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageSinkConfig {
    /// Where to write: a local path, file://, s3://bucket/prefix?endpoint=…&region=…, gs://,
    /// azblob:// or memory://.
    pub uri: String,
    /// Segment format: raw (Kafka record batches, the backup format) or jsonl.
    #[serde(default = "default_format")]
    pub format: String,
    /// When segments roll.
    #[serde(default)]
    pub roll: RollConfig,
    /// Upload part size (multipart uploads on object stores).
    #[serde(default = "default_chunk")]
    pub chunk_size: ByteSize,
}

/// Looks up a segment format by name.
pub fn segment_format(name: &str) -> Option<Arc<dyn SegmentFormat>> {
    match name {
        "raw" => Some(Arc::new(ferry_formats::raw::RawFormat)),
        "jsonl" => Some(Arc::new(ferry_formats::jsonl_segment::JsonlFormat)),
        ferry_formats::avro::NAME => Some(Arc::new(ferry_formats::avro::AvroFormat::default())),
        ferry_formats::parquet::NAME => {
            Some(Arc::new(ferry_formats::parquet::ParquetFormat::default()))
        }
        _ => None,
    }
}

/// Names accepted by [`segment_format`].
pub const FORMATS: &[&str] = &["raw", "jsonl", "avro", "parquet"];

/// Factory of the `storage` sink.
pub struct StorageSinkFactory;

impl SinkFactory for StorageSinkFactory {
    type Config = StorageSinkConfig;

    fn name(&self) -> &'static str {
        "storage"
    }

    fn description(&self) -> &'static str {
        "Writes rolling segments with manifests to local files, S3, GCS, Azure or memory (the backup layout)"
    }

    fn validate(&self, c: &StorageSinkConfig) -> Result<()> {
        ferry_core::storage::StorageUri::parse(&c.uri)?;
        if segment_format(&c.format).is_none() {
            return Err(Error::config(format!(
                "format '{}' is not one of: {}",
                c.format,
                FORMATS.join(", ")
            )));
        }
        if c.roll.max_records == 0 || c.roll.max_bytes.bytes() == 0 {
            return Err(Error::config(
                "roll.max_records and roll.max_bytes must be > 0",
            ));
        }
        Ok(())
    }

    fn build(&self, c: StorageSinkConfig, _ctx: &BuildContext) -> Result<Box<dyn Sink>> {
        self.validate(&c)?;
        Ok(Box::new(StorageSink::new(c)?))
    }
}

struct OpenSegment {
    first_offset: i64,
    next_offset: i64,
    records: u64,
    min_ts: Option<i64>,
    max_ts: Option<i64>,
    bytes: u64,
    crc: u32,
    aborted: Vec<ferry_core::AbortedTxn>,
    gaps: Vec<Gap>,
    key: String,
    writer: opendal::Writer,
    encoder: Box<dyn SegmentEncoder>,
    acks: Vec<Ack>,
    opened: Instant,
}

/// The `storage` sink.
pub struct StorageSink {
    config: StorageSinkConfig,
    storage: Storage,
    format: Arc<dyn SegmentFormat>,
    open: HashMap<(Arc<str>, i32), OpenSegment>,
    /// Next offset after the last closed segment, per partition.
    last_next: HashMap<(Arc<str>, i32), i64>,
    last_groups: Option<Vec<ferry_core::GroupOffsets>>,
}

fn topic_of(t: &str) -> Arc<str> {
    Arc::from(t)
}

impl StorageSink {
    /// A sink for these options.
    pub fn new(config: StorageSinkConfig) -> Result<Self> {
        let storage = Storage::from_uri(&config.uri)?;
        let format = segment_format(&config.format)
            .ok_or_else(|| Error::config(format!("unknown format '{}'", config.format)))?;
        Ok(StorageSink {
            config,
            storage,
            format,
            open: HashMap::new(),
            last_next: HashMap::new(),
            last_groups: None,
        })
    }

    /// The storage this sink writes to.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    async fn write_descriptor(&self) -> Result<()> {
        match self.storage.read_opt(layout::DESCRIPTOR).await? {
            Some(bytes) => {
                let d: Descriptor = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Corrupt(format!("{}/{}: {e}", self.storage, layout::DESCRIPTOR))
                })?;
                if d.layout_version > layout::LAYOUT_VERSION {
                    return Err(Error::Other(format!(
                        "{} was written by a newer Ferry (layout {}); this build writes layout {}: upgrade Ferry",
                        self.storage, d.layout_version, layout::LAYOUT_VERSION
                    )));
                }
            }
            None => {
                let d = Descriptor {
                    layout_version: layout::LAYOUT_VERSION,
                    created_by: format!("ferry {}", env!("CARGO_PKG_VERSION")),
                    created_at_ms: layout::now_ms(),
                };
                let json = serde_json::to_vec_pretty(&d)
                    .map_err(|e| Error::Other(format!("encoding descriptor: {e}")))?;
                self.storage.write_new(layout::DESCRIPTOR, json).await?;
            }
        }
        Ok(())
    }

    async fn open_segment(&mut self, batch: &Batch) -> Result<OpenSegment> {
        let key = layout::segment_key(
            &batch.topic,
            batch.partition,
            batch.first_offset,
            self.format.extension(),
        );
        let writer = self
            .storage
            .operator()
            .writer_with(&key)
            .chunk(self.config.chunk_size.bytes() as usize)
            .await
            .map_err(|e| Error::storage(format!("opening {}/{key}", self.storage), e))?;
        Ok(OpenSegment {
            first_offset: batch.first_offset,
            next_offset: batch.first_offset,
            records: 0,
            min_ts: None,
            max_ts: None,
            bytes: 0,
            crc: 0,
            aborted: Vec::new(),
            gaps: Vec::new(),
            key,
            writer,
            encoder: self
                .format
                .encoder(&batch.topic, batch.partition, batch.first_offset),
            acks: Vec::new(),
            opened: Instant::now(),
        })
    }

    async fn append(&self, seg: &mut OpenSegment, bytes: Bytes) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        seg.crc = crc32c::crc32c_append(seg.crc, &bytes);
        seg.bytes += bytes.len() as u64;
        seg.writer
            .write(bytes)
            .await
            .map_err(|e| Error::storage(format!("writing {}/{}", self.storage, seg.key), e))
    }

    /// Closes a segment: rest of the bytes, the object, then its manifest, then the acks.
    async fn close_segment(
        &self,
        topic: &str,
        partition: i32,
        mut seg: OpenSegment,
    ) -> Result<i64> {
        let tail = seg.encoder.finish()?;
        self.append(&mut seg, tail).await?;
        seg.writer
            .close()
            .await
            .map_err(|e| Error::storage(format!("closing {}/{}", self.storage, seg.key), e))?;
        seg.aborted.sort_by_key(|a| (a.first_offset, a.producer_id));
        seg.aborted.dedup();
        let manifest = SegmentManifest {
            format: self.format.name().to_string(),
            topic: topic.to_string(),
            partition,
            first_offset: seg.first_offset,
            next_offset: seg.next_offset,
            record_count: seg.encoder.records_written().unwrap_or(seg.records),
            min_timestamp: seg.min_ts,
            max_timestamp: seg.max_ts,
            bytes: seg.bytes,
            crc32c: seg.crc,
            segment: seg.key.clone(),
            aborted: seg.aborted,
            gaps: seg.gaps,
            written_at_ms: layout::now_ms(),
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::Other(format!("encoding manifest: {e}")))?;
        let mkey = layout::manifest_key(topic, partition, seg.first_offset);
        if !self.storage.write_new(&mkey, json).await? {
            return Err(Error::Other(format!(
                "{}/{mkey} already exists: another writer is using this backup location",
                self.storage
            )));
        }
        metrics::counter!("ferry_segments_written_total").increment(1);
        tracing::debug!(segment = %seg.key, records = seg.records, bytes = seg.bytes, "segment written");
        for a in seg.acks {
            a.resolve();
        }
        Ok(seg.next_offset)
    }

    async fn close_where(&mut self, due: impl Fn(&OpenSegment) -> bool) -> Result<()> {
        let keys: Vec<(Arc<str>, i32)> = self
            .open
            .iter()
            .filter(|(_, s)| due(s))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some(seg) = self.open.remove(&k) {
                let next = self.close_segment(&k.0, k.1, seg).await?;
                self.last_next.insert(k, next);
            }
        }
        Ok(())
    }

    fn roll_due(&self, seg: &OpenSegment) -> bool {
        seg.bytes + seg.encoder.buffered_bytes() as u64 >= self.config.roll.max_bytes.bytes()
            || seg.records >= self.config.roll.max_records
            || seg.opened.elapsed() >= self.config.roll.max_age.get()
    }
}

#[async_trait]
impl Sink for StorageSink {
    async fn open(&mut self) -> Result<Option<Offsets>> {
        self.storage.check().await?;
        self.write_descriptor().await?;
        let keys = self.storage.list("topics/").await?;
        let inv = layout::Inventory::from_keys(&keys);
        for (topic, partition, first, ext) in inv.orphans() {
            let key = layout::segment_key(&topic, partition, first, &ext);
            tracing::warn!(segment = %key, "removing a segment without manifest (an interrupted write)");
            self.storage.delete(&key).await?;
        }
        let mut durable = Offsets::new();
        for ((topic, partition), firsts) in &inv.manifests {
            let Some(last) = firsts.last() else { continue };
            let mkey = layout::manifest_key(topic, *partition, *last);
            let bytes = self.storage.read(&mkey).await?;
            let m: SegmentManifest = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Corrupt(format!("{}/{mkey}: {e}", self.storage)))?;
            self.last_next
                .insert((topic_of(topic), *partition), m.next_offset);
            durable
                .entry(topic.clone())
                .or_default()
                .insert(*partition, m.next_offset);
        }
        Ok(Some(durable))
    }

    async fn write(&mut self, mut batch: Batch) -> Result<()> {
        let key = (batch.topic.clone(), batch.partition);
        let prev = self
            .open
            .get(&key)
            .map(|s| s.next_offset)
            .or_else(|| self.last_next.get(&key).copied());
        if let Some(prev) = prev {
            if batch.next_offset <= prev {
                // Already stored (a re-delivery after a restart): nothing to write.
                batch.ack.resolve();
                return Ok(());
            }
            if batch.first_offset < prev {
                // Overlaps what is stored: keep only the new offsets, re-encoded.
                tracing::warn!(topic = %batch.topic, partition = batch.partition, from = batch.first_offset, stored_up_to = prev, "batch overlaps stored data; storing only new offsets");
                let records = batch.records_mut()?;
                records.retain(|r| r.offset >= prev);
                batch.first_offset = prev;
            }
        }
        if !self.open.contains_key(&key) {
            let seg = self.open_segment(&batch).await?;
            self.open.insert(key.clone(), seg);
        }
        let Some(mut seg) = self.open.remove(&key) else {
            return Err(Error::Other("segment vanished".into()));
        };
        if let Some(prev) = prev {
            if batch.first_offset > prev {
                seg.gaps.push(Gap {
                    from: prev,
                    to: batch.first_offset,
                });
                tracing::warn!(topic = %batch.topic, partition = batch.partition, from = prev, to = batch.first_offset, "gap recorded: offsets missing in the source");
            }
        }
        let result = async {
            let bytes = seg.encoder.encode(&batch)?;
            self.append(&mut seg, bytes).await
        }
        .await;
        if let Err(e) = result {
            let _ = seg.writer.abort().await;
            return Err(e);
        }
        let (count, min_ts, max_ts, aborted) = match batch.raw() {
            Some(raw) => (
                raw.record_count,
                raw.min_timestamp,
                raw.max_timestamp,
                raw.aborted.clone(),
            ),
            None => {
                let recs = batch.records()?;
                let min = recs.iter().map(|r| r.timestamp).filter(|t| *t >= 0).min();
                let max = recs.iter().map(|r| r.timestamp).filter(|t| *t >= 0).max();
                (recs.len() as u64, min, max, Vec::new())
            }
        };
        seg.records += count;
        seg.min_ts = match (seg.min_ts, min_ts) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        seg.max_ts = match (seg.max_ts, max_ts) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        seg.aborted.extend(aborted);
        seg.next_offset = batch.next_offset;
        seg.acks.push(batch.ack);
        metrics::counter!("ferry_sink_records_total", "sink" => "storage").increment(count);
        if self.roll_due(&seg) {
            let next = self.close_segment(&key.0, key.1, seg).await?;
            self.last_next.insert(key, next);
        } else {
            self.open.insert(key, seg);
        }
        Ok(())
    }

    async fn write_metadata(&mut self, meta: SourceMetadata) -> Result<()> {
        for t in &meta.topics {
            let key = layout::topic_key(&t.name);
            let mut doc = match self.storage.read_opt(&key).await? {
                Some(b) => serde_json::from_slice::<layout::TopicDocument>(&b)
                    .map_err(|e| Error::Corrupt(format!("{}/{key}: {e}", self.storage)))?,
                None => layout::TopicDocument {
                    name: t.name.clone(),
                    latest: t.clone(),
                    snapshots: Vec::new(),
                },
            };
            if doc.snapshots.last().map(|s| &s.metadata) != Some(t) {
                doc.latest = t.clone();
                doc.snapshots.push(layout::TopicSnapshot {
                    taken_at_ms: meta.taken_at_ms,
                    metadata: t.clone(),
                });
                let json = serde_json::to_vec_pretty(&doc)
                    .map_err(|e| Error::Other(format!("encoding topic document: {e}")))?;
                self.storage.write(&key, json).await?;
            }
        }
        if !meta.groups.is_empty() && self.last_groups.as_ref() != Some(&meta.groups) {
            let doc = GroupsDocument {
                taken_at_ms: meta.taken_at_ms,
                groups: meta.groups.clone(),
            };
            let json = serde_json::to_vec_pretty(&doc)
                .map_err(|e| Error::Other(format!("encoding groups: {e}")))?;
            self.storage
                .write_new(&layout::groups_key(meta.taken_at_ms), json)
                .await?;
            self.last_groups = Some(meta.groups);
        }
        Ok(())
    }

    /// Closes segments that reached their age; younger ones keep filling (so frequent
    /// checkpoints do not make tiny files). `close` writes everything.
    async fn flush(&mut self) -> Result<()> {
        let max_age = self.config.roll.max_age.get();
        self.close_where(|s| s.opened.elapsed() >= max_age).await
    }

    async fn close(&mut self) -> Result<()> {
        self.close_where(|_| true).await
    }

    fn checkpoint_storage(&self) -> Option<Storage> {
        Some(self.storage.clone())
    }
}
