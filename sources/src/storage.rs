//! Reading JSON lines files back from storage: the `storage` source with `format: jsonl`,
//! and the reusable [`JsonlReader`] behind it.
//!
//! ```yaml
//! source:
//!   type: storage
//!   uri: file:///tmp/ferry-out
//!   format: jsonl
//!   topics: [orders]      # optional: only these topics (default: every topic found)
//!   batch_size: 1000      # records per batch
//! ```
//!
//! Reads `topics/<topic>/<partition>/<first_offset:020>.jsonl` files (as the `storage`
//! sink writes them) partition by partition in offset order, and finishes when all are read.
//! Offsets already emitted for a partition, or below the checkpoint, are dropped, so files
//! that overlap (left by an interrupted writer) still yield every offset once.

use async_trait::async_trait;
use ferry_core::registry::{BuildContext, SourceFactory};
use ferry_core::storage::StorageUri;
use ferry_core::{Batch, Error, Record, Result, Source, SourceContext, Storage, TopicSelection};
use ferry_formats::jsonl;
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// One JSON lines file of a partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Segment {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset, from the file name.
    pub first_offset: i64,
    /// Key in the storage.
    pub path: String,
}

/// Lists and reads JSON lines files under `topics/` of a storage.
#[derive(Debug, Clone)]
pub struct JsonlReader {
    storage: Storage,
}

impl JsonlReader {
    /// A reader of `storage`.
    pub fn new(storage: Storage) -> Self {
        JsonlReader { storage }
    }

    /// The storage read from.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Parses `topics/<topic>/<partition>/<first_offset>.jsonl`; other keys give `None`.
    pub fn parse_path(path: &str) -> Option<Segment> {
        let rest = path.strip_prefix("topics/")?;
        let mut parts = rest.rsplitn(3, '/');
        let file = parts.next()?;
        let partition = parts.next()?.parse().ok()?;
        let topic = parts.next()?;
        let first = file.strip_suffix(&format!(".{}", jsonl::EXTENSION))?;
        if topic.is_empty() || topic.contains('/') {
            return None;
        }
        Some(Segment {
            topic: topic.to_string(),
            partition,
            first_offset: first.parse().ok()?,
            path: path.to_string(),
        })
    }

    /// Every file, sorted by topic, partition and first offset.
    pub async fn list_segments(&self) -> Result<Vec<Segment>> {
        let mut segs: Vec<Segment> = self
            .storage
            .list("topics/")
            .await?
            .iter()
            .filter_map(|p| Self::parse_path(p))
            .collect();
        segs.sort();
        Ok(segs)
    }

    /// The records of one file.
    pub async fn read_segment(&self, seg: &Segment) -> Result<Vec<Record>> {
        let bytes = self.storage.read(&seg.path).await?;
        jsonl::decode(&bytes)
            .map_err(|e| Error::Corrupt(format!("{}/{}: {e}", self.storage, seg.path)))
    }
}

fn default_batch_size() -> usize {
    1000
}

/// Format names the `storage` source reads here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JsonlFormatName {
    /// JSON lines.
    Jsonl,
}

/// Options of the `storage` source (JSON lines).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageSourceConfig {
    /// Where the files are: a local path, `file:///…`, `s3://…`, `gs://…`, `azblob://…`,
    /// `memory://name`.
    pub uri: String,
    /// File format: `jsonl`.
    pub format: JsonlFormatName,
    /// Only these topics: exact names or `/regex/` (anchored, internal `__` topics only by
    /// exact name: the rule of every `topics:` list); default every topic found.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// Records per batch (default 1000).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

/// The `storage` source reading JSON lines.
pub struct StorageSource {
    reader: JsonlReader,
    topics: Option<TopicSelection>,
    batch_size: usize,
    segments: Option<VecDeque<Segment>>,
    /// Records of the current file not yet emitted.
    pending: VecDeque<Record>,
    /// Next offset to emit per topic-partition (checkpoint, then what was emitted).
    next: BTreeMap<(String, i32), i64>,
    topic_names: BTreeMap<String, Arc<str>>,
}

impl StorageSource {
    /// A source over `reader`'s files.
    pub fn new(reader: JsonlReader, topics: Option<TopicSelection>, batch_size: usize) -> Self {
        StorageSource {
            reader,
            topics,
            batch_size: batch_size.max(1),
            segments: None,
            pending: VecDeque::new(),
            next: BTreeMap::new(),
            topic_names: BTreeMap::new(),
        }
    }
}

#[async_trait]
impl Source for StorageSource {
    async fn next_batch(&mut self, ctx: &SourceContext) -> Result<Option<Batch>> {
        if self.segments.is_none() {
            let mut segs = self.reader.list_segments().await?;
            if let Some(t) = &self.topics {
                segs.retain(|s| t.matches(&s.topic));
            }
            tracing::info!(files = segs.len(), storage = %self.reader.storage(), "reading JSON lines files");
            self.segments = Some(segs.into());
        }
        while self.pending.is_empty() {
            let Some(seg) = self.segments.as_ref().and_then(|s| s.front()).cloned() else {
                return Ok(None);
            };
            // Read before popping: if this future is dropped mid-read, nothing is lost.
            let records = self.reader.read_segment(&seg).await?;
            if let Some(s) = self.segments.as_mut() {
                s.pop_front();
            }
            let key = (seg.topic.clone(), seg.partition);
            let from = *self.next.entry(key).or_insert_with(|| {
                ctx.resume_offset(&seg.topic, seg.partition)
                    .unwrap_or(i64::MIN)
            });
            self.pending.extend(records.into_iter().filter(|r| {
                r.offset >= from && *r.topic == *seg.topic && r.partition == seg.partition
            }));
        }
        let Some(first) = self.pending.front() else {
            return Ok(None);
        };
        let (topic, partition) = (first.topic.to_string(), first.partition);
        let mut records = Vec::with_capacity(self.batch_size.min(self.pending.len()));
        let mut last = i64::MIN;
        while records.len() < self.batch_size {
            match self.pending.front() {
                // Offsets must grow within a batch; a repeat (overlapping files) is dropped.
                Some(r) if r.offset > last => {
                    last = r.offset;
                    records.extend(self.pending.pop_front());
                }
                Some(_) => {
                    self.pending.pop_front();
                }
                None => break,
            }
        }
        let first_offset = records.first().map_or(0, |r| r.offset);
        let next_offset = last + 1;
        self.next.insert((topic.clone(), partition), next_offset);
        let topic: Arc<str> = self
            .topic_names
            .entry(topic)
            .or_insert_with_key(|t| Arc::from(t.as_str()))
            .clone();
        for r in &mut records {
            r.topic = topic.clone();
        }
        let ack = ctx.ack(&topic, partition, first_offset, next_offset);
        Ok(Some(Batch::from_records(
            topic,
            partition,
            first_offset,
            next_offset,
            records,
            ack,
        )))
    }

    fn checkpoint_storage(&self) -> Option<Storage> {
        Some(self.reader.storage().clone())
    }
}

/// The compiled `topics:` option (none: every topic).
fn topic_selection(topics: &Option<Vec<String>>) -> Result<Option<TopicSelection>> {
    topics
        .as_deref()
        .map(|t| TopicSelection::parse(t).map_err(|e| Error::config(format!("'topics': {e}"))))
        .transpose()
}

/// Registers the `storage` source for `format: jsonl`.
pub struct StorageSourceFactory;

impl SourceFactory for StorageSourceFactory {
    type Config = StorageSourceConfig;

    fn name(&self) -> &'static str {
        "storage"
    }

    fn description(&self) -> &'static str {
        "Reads files a storage sink wrote (topics/<topic>/<partition>/…), partition by partition in offset order"
    }

    fn validate(&self, config: &StorageSourceConfig) -> Result<()> {
        StorageUri::parse(&config.uri)?;
        if config.batch_size == 0 {
            return Err(Error::config("'batch_size' must be at least 1"));
        }
        topic_selection(&config.topics)?;
        Ok(())
    }

    fn build(&self, config: StorageSourceConfig, _ctx: &BuildContext) -> Result<Box<dyn Source>> {
        let storage = Storage::from_uri(&config.uri)?;
        Ok(Box::new(StorageSource::new(
            JsonlReader::new(storage),
            topic_selection(&config.topics)?,
            config.batch_size,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn recs(topic: &str, p: i32, offsets: std::ops::Range<i64>) -> Vec<Record> {
        offsets
            .map(|o| Record::new(Arc::from(topic), p, o, Some(Bytes::from(format!("{o}")))))
            .collect()
    }

    #[test]
    fn parses_paths() {
        let s = JsonlReader::parse_path("topics/a.b-c/3/00000000000000000042.jsonl").unwrap();
        assert_eq!(
            (s.topic.as_str(), s.partition, s.first_offset),
            ("a.b-c", 3, 42)
        );
        assert!(JsonlReader::parse_path("topics/a/3/00000000000000000042.json").is_none());
        assert!(JsonlReader::parse_path("checkpoints/x.json").is_none());
    }

    #[tokio::test]
    async fn reads_in_order_drops_overlaps_and_resumes() {
        let storage = Storage::from_uri("memory://jsonl-source-test").unwrap();
        let put = |path: &str, r: Vec<Record>| {
            let s = storage.clone();
            let path = path.to_string();
            async move { s.write(&path, jsonl::encode(&r)).await.unwrap() }
        };
        put("topics/t/0/00000000000000000000.jsonl", recs("t", 0, 0..10)).await;
        // Overlaps the first file (an interrupted writer rolled elsewhere).
        put("topics/t/0/00000000000000000005.jsonl", recs("t", 0, 5..15)).await;
        put("topics/t/1/00000000000000000000.jsonl", recs("t", 1, 0..3)).await;
        put("topics/u/0/00000000000000000000.jsonl", recs("u", 0, 0..3)).await;

        let mut src = StorageSource::new(
            JsonlReader::new(storage.clone()),
            topic_selection(&Some(vec!["t".into()])).unwrap(),
            4,
        );
        let ctx = SourceContext::new("x");
        let mut seen = Vec::new();
        while let Some(b) = src.next_batch(&ctx).await.unwrap() {
            assert!(b.record_count() <= 4);
            for r in b.records().unwrap().iter() {
                seen.push((r.partition, r.offset));
            }
            b.ack.resolve();
        }
        let expected: Vec<(i32, i64)> = (0..15)
            .map(|o| (0, o))
            .chain((0..3).map(|o| (1, o)))
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(ctx.acks.watermarks()["t"][&0], 15);

        let mut ctx = SourceContext::new("x");
        let mut cp = ferry_core::Offsets::new();
        cp.entry("t".into()).or_default().insert(0, 12);
        ctx.checkpoint = Some(cp);
        let mut src = StorageSource::new(
            JsonlReader::new(storage),
            topic_selection(&Some(vec!["t".into()])).unwrap(),
            100,
        );
        let b = src.next_batch(&ctx).await.unwrap().unwrap();
        assert_eq!((b.first_offset, b.next_offset), (12, 15));
    }
}
