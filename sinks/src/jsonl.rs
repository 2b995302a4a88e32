//! JSON lines files in storage: the `storage` sink with `format: jsonl`, and the reusable
//! [`JsonlWriter`] behind it.
//!
//! ```yaml
//! sink:
//!   type: storage
//!   uri: file:///tmp/ferry-out          # any storage URI (s3://…, memory://…, a path)
//!   format: jsonl
//!   roll: { max_bytes: 128MiB, max_records: 1000000, max_age: 5m }
//! ```
//!
//! Files are `topics/<topic>/<partition>/<first_offset:020>.jsonl`, one partition and
//! contiguous offsets each, in the [`ferry_formats::jsonl`] encoding. A file is closed
//! ("rolled") when it reaches `max_bytes` or `max_records`, when it is older than
//! `max_age`, and at every flush (each checkpoint), so that a checkpoint only ever covers
//! files that exist. Files are written whole and create-only; the acks of their batches
//! resolve once the write returned.
//!
//! A file name depends only on topic, partition and first offset, so after a crash the
//! resumed run writes its first file of a partition under the same name as the interrupted
//! run did. If that name exists with different content (an interrupted run rolled at
//! another point), it is replaced, with a warning: the records at those offsets are the
//! same ones. Files of the interrupted run beyond the checkpoint may then overlap the new
//! ones; the jsonl storage source drops repeated offsets when it reads them back.

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::config::{ByteSize, HumanDuration};
use ferry_core::registry::{BuildContext, SinkFactory};
use ferry_core::storage::StorageUri;
use ferry_core::{Ack, Batch, Error, Result, Sink, Storage};
use ferry_formats::jsonl;
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When a file is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollPolicy {
    /// Close a file once it holds this many bytes.
    pub max_bytes: u64,
    /// Close a file once it holds this many records.
    pub max_records: u64,
    /// Close a file this long after its first record.
    pub max_age: Duration,
}

impl Default for RollPolicy {
    fn default() -> Self {
        RollPolicy {
            max_bytes: 128 << 20,
            max_records: 1_000_000,
            max_age: Duration::from_secs(300),
        }
    }
}

/// The `roll:` options.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollConfig {
    /// Close a file at this size (default `128MiB`).
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
    /// Close a file at this many records (default 1000000).
    #[serde(default)]
    pub max_records: Option<u64>,
    /// Close a file this long after it was opened (default `5m`).
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
}

impl RollConfig {
    /// The policy with defaults applied; zero values are errors.
    pub fn policy(&self) -> Result<RollPolicy> {
        let d = RollPolicy::default();
        let p = RollPolicy {
            max_bytes: self.max_bytes.map_or(d.max_bytes, |b| b.0),
            max_records: self.max_records.unwrap_or(d.max_records),
            max_age: self.max_age.map_or(d.max_age, |a| a.0),
        };
        if p.max_bytes == 0 || p.max_records == 0 || p.max_age.is_zero() {
            return Err(Error::config(
                "roll: max_bytes, max_records and max_age must be more than 0",
            ));
        }
        Ok(p)
    }
}

/// A file being filled for one partition.
struct OpenFile {
    topic: Arc<str>,
    partition: i32,
    first_offset: i64,
    next_offset: i64,
    buf: Vec<u8>,
    records: u64,
    opened: Instant,
    acks: Vec<Ack>,
}

/// Writes batches as rolling JSON lines files under `topics/` of a storage.
///
/// Reusable by other sinks: feed it batches with [`JsonlWriter::write`], call
/// [`JsonlWriter::flush`] to close every open file; acks resolve when their file is written.
pub struct JsonlWriter {
    storage: Storage,
    policy: RollPolicy,
    open: BTreeMap<(Arc<str>, i32), OpenFile>,
    files_written: u64,
    metric_files: metrics::Counter,
}

impl JsonlWriter {
    /// A writer into `storage` with `policy`.
    pub fn new(storage: Storage, policy: RollPolicy) -> Self {
        JsonlWriter {
            storage,
            policy,
            open: BTreeMap::new(),
            files_written: 0,
            metric_files: metrics::counter!(
                ferry_core::metrics::FILES_WRITTEN_TOTAL,
                "sink" => "storage",
                "format" => "jsonl"
            ),
        }
    }

    /// The key of a file: `topics/<topic>/<partition>/<first_offset:020>.jsonl`.
    pub fn file_path(topic: &str, partition: i32, first_offset: i64) -> String {
        format!(
            "topics/{topic}/{partition}/{first_offset:020}.{}",
            jsonl::EXTENSION
        )
    }

    /// The storage written to.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Files written so far.
    pub fn files_written(&self) -> u64 {
        self.files_written
    }

    /// Appends a batch to its partition's open file (opening one if needed) and writes the
    /// file if it is due. Control records are skipped (they are not user data).
    pub async fn write(&mut self, mut batch: Batch) -> Result<()> {
        let key = (batch.topic.clone(), batch.partition);
        // A batch that does not continue the open file (a rewind) starts a new one.
        if self
            .open
            .get(&key)
            .is_some_and(|f| batch.first_offset < f.next_offset)
        {
            self.close_file(&key).await?;
        }
        let (topic, partition, first_offset) =
            (batch.topic.clone(), batch.partition, batch.first_offset);
        let records = batch.records_mut()?;
        let file = self.open.entry(key.clone()).or_insert_with(|| OpenFile {
            topic,
            partition,
            first_offset,
            next_offset: first_offset,
            buf: Vec::new(),
            records: 0,
            opened: Instant::now(),
            acks: Vec::new(),
        });
        for r in records.iter().filter(|r| !r.is_control) {
            jsonl::encode_record(r, &mut file.buf);
            file.records += 1;
        }
        file.next_offset = batch.next_offset;
        file.acks.push(std::mem::take(&mut batch.ack));
        let due = file.buf.len() as u64 >= self.policy.max_bytes
            || file.records >= self.policy.max_records;
        if due {
            self.close_file(&key).await?;
        }
        self.roll_aged().await
    }

    /// Writes every file older than `max_age`.
    pub async fn roll_aged(&mut self) -> Result<()> {
        let aged: Vec<_> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened.elapsed() >= self.policy.max_age)
            .map(|(k, _)| k.clone())
            .collect();
        for k in aged {
            self.close_file(&k).await?;
        }
        Ok(())
    }

    /// Writes every open file and resolves their acks.
    pub async fn flush(&mut self) -> Result<()> {
        let keys: Vec<_> = self.open.keys().cloned().collect();
        for k in keys {
            self.close_file(&k).await?;
        }
        Ok(())
    }

    async fn close_file(&mut self, key: &(Arc<str>, i32)) -> Result<()> {
        let Some(file) = self.open.remove(key) else {
            return Ok(());
        };
        if file.records == 0 {
            // Every record was filtered out: the span is done with, there is nothing to keep.
            file.acks.into_iter().for_each(Ack::resolve);
            return Ok(());
        }
        let path = Self::file_path(&file.topic, file.partition, file.first_offset);
        let data = Bytes::from(file.buf);
        if !self.storage.write_new(&path, data.clone()).await? {
            let existing = self.storage.read(&path).await?;
            if existing != data {
                tracing::warn!(
                    file = %format!("{}/{path}", self.storage),
                    "replacing a file left by an interrupted run (same first offset, different roll point)"
                );
                self.storage.write(&path, data).await?;
            }
        }
        self.files_written += 1;
        self.metric_files.increment(1);
        tracing::debug!(file = %path, records = file.records, "file written");
        file.acks.into_iter().for_each(Ack::resolve);
        Ok(())
    }
}

/// Format names the `storage` sink accepts here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JsonlFormatName {
    /// JSON lines.
    Jsonl,
}

/// Options of the `storage` sink (JSON lines).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonlSinkConfig {
    /// Where to write: a local path, `file:///…`, `s3://bucket/prefix?endpoint=…&region=…`,
    /// `gs://…`, `azblob://…` or `memory://name`.
    pub uri: String,
    /// File format: `jsonl`.
    pub format: JsonlFormatName,
    /// When files are closed.
    #[serde(default)]
    pub roll: RollConfig,
}

/// The `storage` sink writing JSON lines.
pub struct JsonlSink {
    writer: JsonlWriter,
}

impl JsonlSink {
    /// A sink around a writer.
    pub fn new(writer: JsonlWriter) -> Self {
        JsonlSink { writer }
    }
}

#[async_trait]
impl Sink for JsonlSink {
    async fn write(&mut self, batch: Batch) -> Result<()> {
        self.writer.write(batch).await
    }

    async fn flush(&mut self) -> Result<()> {
        self.writer.flush().await
    }

    fn checkpoint_storage(&self) -> Option<Storage> {
        Some(self.writer.storage().clone())
    }
}

/// Registers the `storage` sink for `format: jsonl`.
pub struct JsonlSinkFactory;

impl SinkFactory for JsonlSinkFactory {
    type Config = JsonlSinkConfig;

    fn name(&self) -> &'static str {
        "storage"
    }

    fn description(&self) -> &'static str {
        "Rolling files in a storage (local, S3, GCS, Azure, memory): topics/<topic>/<partition>/<first_offset>.jsonl; keeps the checkpoint beside them"
    }

    fn validate(&self, config: &JsonlSinkConfig) -> Result<()> {
        StorageUri::parse(&config.uri)?;
        config.roll.policy()?;
        Ok(())
    }

    fn build(&self, config: JsonlSinkConfig, _ctx: &BuildContext) -> Result<Box<dyn Sink>> {
        let storage = Storage::from_uri(&config.uri)?;
        Ok(Box::new(JsonlSink::new(JsonlWriter::new(
            storage,
            config.roll.policy()?,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::{AckTracker, Record};

    fn batch(tracker: &AckTracker, p: i32, first: i64, n: i64) -> Batch {
        let topic: Arc<str> = Arc::from("t");
        let records = (first..first + n)
            .map(|o| Record::new(topic.clone(), p, o, Some(Bytes::from(format!("v{o}")))))
            .collect();
        let ack = tracker.issue(&topic, p, first, first + n);
        Batch::from_records(topic, p, first, first + n, records, ack)
    }

    #[tokio::test]
    async fn rolls_by_records_and_on_flush_and_resolves_acks() {
        let storage = Storage::from_uri("memory://jsonl-writer-test").unwrap();
        let mut w = JsonlWriter::new(
            storage.clone(),
            RollPolicy {
                max_records: 25,
                ..Default::default()
            },
        );
        let tracker = AckTracker::new();
        for i in 0..3 {
            w.write(batch(&tracker, 0, i * 10, 10)).await.unwrap();
        }
        // 30 records: the first file rolled at 30 ≥ 25 and covers 0..30.
        assert_eq!(tracker.watermarks()["t"][&0], 30);
        w.write(batch(&tracker, 0, 30, 5)).await.unwrap();
        w.write(batch(&tracker, 1, 0, 5)).await.unwrap();
        assert_eq!(tracker.watermarks()["t"][&0], 30);
        w.flush().await.unwrap();
        assert_eq!(tracker.watermarks()["t"][&0], 35);
        assert_eq!(tracker.watermarks()["t"][&1], 5);
        let files = storage.list("topics/").await.unwrap();
        assert_eq!(
            files,
            vec![
                "topics/t/0/00000000000000000000.jsonl".to_string(),
                "topics/t/0/00000000000000000030.jsonl".to_string(),
                "topics/t/1/00000000000000000000.jsonl".to_string(),
            ]
        );
        let first = storage.read(&files[0]).await.unwrap();
        let recs = jsonl::decode(&first).unwrap();
        assert_eq!(recs.len(), 30);
        assert_eq!(recs[29].offset, 29);
        assert_eq!(w.files_written(), 3);
    }

    #[tokio::test]
    async fn same_name_same_content_is_a_no_op_and_different_is_replaced() {
        let storage = Storage::from_uri("memory://jsonl-writer-rewrite").unwrap();
        let tracker = AckTracker::new();
        let mut w = JsonlWriter::new(storage.clone(), RollPolicy::default());
        w.write(batch(&tracker, 0, 0, 10)).await.unwrap();
        w.flush().await.unwrap();
        let mut w2 = JsonlWriter::new(storage.clone(), RollPolicy::default());
        w2.write(batch(&tracker, 0, 0, 10)).await.unwrap();
        w2.flush().await.unwrap();
        let mut w3 = JsonlWriter::new(storage.clone(), RollPolicy::default());
        w3.write(batch(&tracker, 0, 0, 12)).await.unwrap();
        w3.flush().await.unwrap();
        let recs = jsonl::decode(
            &storage
                .read("topics/t/0/00000000000000000000.jsonl")
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(recs.len(), 12);
    }
}
