//! The `storage` sink: writes each partition as rolling segment objects with a manifest,
//! in the backup layout of `ferry_formats::layout`.
//!
//! ```yaml
//! sink:
//!   type: storage
//!   uri: s3://lake/kafka?endpoint=http://127.0.0.1:9000
//!   format: parquet                 # raw (default), jsonl, avro, parquet
//!   path: "topic={topic}/date={date}/hour={hour}/{partition}-{first_offset}"
//!   roll: { max_bytes: 256MiB, max_records: 1000000, max_age: 15m }
//!   parquet:                        # only with format: parquet
//!     row_group_bytes: 16MiB        # default 16MiB, at most 32MiB
//!     compression: zstd             # zstd (default), snappy, none
//!     compression_level: 1          # zstd level 1..22 (default 1)
//!     value:                        # typed columns decoded from JSON values (or `as: avro`:
//!       as: json                    # Schema-Registry Avro, see ferry_formats::confluent)
//!       schema:                     # without it: inferred per topic from the first values
//!         - { name: id, type: int64 }
//!         - { name: user, type: string, path: /user/name }
//!       # infer_records: 1000       # (without `schema`) values looked at per topic
//!       column: value_json
//!       on_error: "null"            # or: fail, dead_letter
//!   dead_letter: dead-letter        # prefix of the dead-letter files (on_error: dead_letter)
//!   # avro: { codec: snappy, block_bytes: 1MiB, value: {as: avro, registry: {url: …}} }
//!   #                               # only with format: avro
//! ```
//!
//! Write order is segment, then manifest, then (by the runtime) checkpoint, so a crash
//! leaves nothing that looks complete but is not. On start the sink reconciles: segments
//! without a manifest are deleted, and the offsets the manifests cover are reported as
//! durable so the source resumes after them — each offset is stored exactly once.
//!
//! **Object names.** By default segments are `topics/<topic>/<partition>/<first:020>.<ext>`
//! (the backup layout). `path:` names them with a [`PathTemplate`] instead (placeholders
//! `{topic}`, `{partition}`, `{first_offset}`, `{date}`, `{hour}`; the extension is
//! appended), e.g. Hive-style folders for data lakes. `{date}`/`{hour}` are those of the
//! segment's first record (UTC), and a segment rolls whenever a record's date/hour differs
//! from its own, so every record sits under its own date (records out of time order make
//! small segments). Manifests stay at `topics/<topic>/<partition>/<first:020>.json` and name
//! the object, so `ferry ls`, `verify`, restores and resume work on such exports too.
//! Because a templated object can be anywhere under the root, the sink writes a marker
//! `pending/<topic>/<partition>/<first:020>.json` naming it before the object, and removes
//! the marker after the manifest; on start, an object whose marker has no manifest is
//! deleted (an interrupted write). Names depend only on topic, partition, first offset and
//! the first record's time, so a retry after a crash writes the same key.
//!
//! **Typed values.** With `parquet.value` (or `avro.value`), a value that does not fit the
//! declared types (JSON) or cannot be decoded (Schema-Registry Avro) is never dropped:
//! the envelope's raw `value` column always holds it, and
//! `on_error: null` (the default) only leaves the typed field null; `on_error: fail`
//! stops the pipeline at that record (nothing after it is acknowledged);
//! `on_error: dead_letter` leaves the typed fields null as well and also writes each such
//! record, as a line `{"reason": "...", "record": <its jsonl object>}`, to
//! `<dead_letter>/<topic>/<partition>/<first_offset:020>.jsonl` (one file per segment that
//! had any, in the same storage, written before the segment's manifest: a crash before the
//! manifest re-writes both on resume).
//!
//! Only one writer may use a root at a time (reconciling deletes what another writer has
//! in progress): the sink holds a lease in the root ([`lease`]), taken on open when the
//! root exists (before reconciling) and before the first object otherwise.
//!
//! **Where things are.** `config.rs`: the options, their checks and the factory;
//! `reconcile.rs`: what `open` does (descriptor, interrupted writes, durable offsets);
//! `pieces.rs`: a batch cut by time bucket and encoded on blocking threads;
//! `segment.rs`: a segment opened, appended to and closed with its manifest;
//! `dead_letter.rs`: the dead-letter files; `tests.rs`: unit tests. The behaviour suite
//! every backend and format runs is `sinks/tests/storage_behaviour.rs`.

mod config;
mod dead_letter;
mod encryption;
pub mod lease;
mod local_file;
mod pieces;
mod reconcile;
mod segment;
#[cfg(test)]
mod tests;

pub use config::{
    configured_format, path_template, RollConfig, StorageSinkConfig, StorageSinkFactory,
};
pub use dead_letter::dead_letter_key;
#[cfg(feature = "iceberg")] // the iceberg sink writes the same dead-letter lines
pub(crate) use dead_letter::dead_letter_line;

use async_trait::async_trait;
use ferry_core::{Batch, Error, Offsets, Result, Sink, SourceMetadata, Storage};
use ferry_formats::layout::{self, Gap, GroupsDocument, PathTemplate};
use ferry_formats::segment::SegmentFormat;
use pieces::Encoding;
use segment::OpenSegment;
use std::collections::HashMap;
use std::sync::Arc;

/// The `storage` sink.
pub struct StorageSink {
    config: StorageSinkConfig,
    storage: Storage,
    format: Arc<dyn SegmentFormat>,
    /// Object names when not the backup layout.
    template: Option<PathTemplate>,
    open: HashMap<(Arc<str>, i32), OpenSegment>,
    /// Segments whose latest piece a blocking thread is encoding, per partition: with a
    /// decoded format (Parquet, Avro, JSON lines: encoding is most of an export's work) the
    /// partitions encode in parallel while the sink goes on. A partition's next write,
    /// `flush` and `close` wait for it ([`StorageSink::settle`]).
    /// Oldest first, at most [`pieces::ENCODING_IN_PARALLEL`] and [`pieces::ENCODING_BYTES`],
    /// one per partition.
    encoding: std::collections::VecDeque<Encoding>,
    /// Pieces completed since open segments' buffers were last added up
    /// ([`StorageSink::bound_buffers`]).
    pieces_since_check: usize,
    /// Next offset after the last closed segment, per partition.
    last_next: HashMap<(Arc<str>, i32), i64>,
    last_groups: Option<Vec<ferry_core::GroupOffsets>>,
    /// The storage is a local folder.
    local: bool,
    /// `ferry.json` exists (found on open, or written before the first object).
    descriptor_written: bool,
    /// This writer's lease on the location: taken on open when the location exists, else
    /// before its first object.
    lease: Option<lease::Lease>,
    /// Key-encryption keys when the sink encrypts (`encryption:`), read when it is built.
    keys: Option<Arc<dyn ferry_core::encryption::KeyProvider>>,
    /// Set when this sink is one task of a pipeline a worker group shares: the group, not a
    /// lease, makes it the only writer of its partitions (see [`StorageSink::with_scope`]).
    scope: Option<ferry_core::TaskScope>,
}

fn topic_of(t: &str) -> Arc<str> {
    Arc::from(t)
}

/// Whether records of a format are decoded before encoding (every format but `raw`, which
/// keeps fetched bytes).
fn decodes(format: &dyn SegmentFormat) -> bool {
    format.kind().decodes_records()
}

impl StorageSink {
    /// A sink for these options.
    pub fn new(config: StorageSinkConfig) -> Result<Self> {
        // Keys first: a missing key must fail before the storage (a local folder) is made.
        let keys = config.encryption.as_ref().map(|e| e.load()).transpose()?;
        let storage = Storage::from_uri(&config.uri)?;
        let format = configured_format(&config)?;
        let template = path_template(&config)?;
        if template.as_ref().is_some_and(PathTemplate::uses_time) && !format.kind().splits_by_time()
        {
            return Err(Error::config(
                "path: {date} and {hour} need a record format (jsonl, avro, parquet), not raw",
            ));
        }
        let local = ferry_core::storage::StorageUri::parse(&config.uri)?.scheme == "file";
        Ok(StorageSink {
            config,
            storage,
            format,
            template,
            open: HashMap::new(),
            encoding: Default::default(),
            pieces_since_check: 0,
            last_next: HashMap::new(),
            last_groups: None,
            local,
            descriptor_written: false,
            lease: None,
            keys,
            scope: None,
        })
    }

    /// Makes this sink one task of a pipeline that workers of a group share. Several tasks
    /// then write the location at once, each its own partitions, so: no lease (the group
    /// decides who writes what); on open, only this task's partitions are cleaned of
    /// interrupted writes; and before each segment is closed and each manifest written the
    /// scope's fence must confirm the task still owns its partitions.
    pub fn with_scope(mut self, scope: Option<ferry_core::TaskScope>) -> Self {
        self.scope = scope;
        self
    }

    /// Whether this sink's task writes `topic`/`partition` (every partition without a scope).
    fn owns(&self, topic: &str, partition: i32) -> bool {
        self.scope.as_ref().is_none_or(|s| s.owns(topic, partition))
    }

    /// The storage this sink writes to.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }
}

#[async_trait]
impl Sink for StorageSink {
    async fn open(&mut self) -> Result<Option<Offsets>> {
        self.reconcile().await.map(Some)
    }

    async fn write(&mut self, mut batch: Batch) -> Result<()> {
        let key = (batch.topic.clone(), batch.partition);
        // The partition's previous piece must be in its segment before this one.
        self.settle(&key).await?;
        let prev = self
            .open
            .get(&key)
            .map(|s| s.next_offset)
            .or_else(|| self.last_next.get(&key).copied());
        if prev.is_some_and(|prev| batch.next_offset <= prev) {
            // Already stored (a re-delivery after a restart): nothing to write.
            batch.ack.resolve();
            return Ok(());
        }
        // Decoded formats decode on the encoding thread (`write_piece`), once: the encoder
        // and the counts borrow the records.
        let mut gap = None;
        if let Some(prev) = prev {
            if batch.first_offset < prev {
                // Overlaps what is stored (a copy of a `fanout` behind the others, a
                // re-delivery): keep only the new offsets — the fetched batches from there
                // byte for byte when the stored data ends between two of them, else the new
                // records re-encoded.
                let kept = batch.raw().and_then(|r| r.decoder.batches_from(r, prev));
                if let Some(raw) = kept {
                    tracing::debug!(topic = %batch.topic, partition = batch.partition, from = batch.first_offset, stored_up_to = prev, "batch overlaps stored data; storing the batches after it");
                    batch.payload = ferry_core::Payload::Raw(raw);
                } else {
                    tracing::warn!(topic = %batch.topic, partition = batch.partition, from = batch.first_offset, stored_up_to = prev, "batch overlaps stored data mid-batch; storing only new offsets, re-encoded");
                    let records = batch.records_mut()?;
                    records.retain(|r| r.offset >= prev);
                }
                batch.first_offset = prev;
            }
            if batch.first_offset > prev {
                gap = Some(Gap {
                    from: prev,
                    to: batch.first_offset,
                });
                // The human mistake a backup exists for (retention shortened, records deleted
                // before they were read): loud, counted, and recorded in the manifest.
                tracing::error!(
                    topic = %batch.topic, partition = batch.partition, from = prev, to = batch.first_offset,
                    "records lost before they were backed up: offsets {prev}..{} of {}/{} were deleted in the source (Kafka retention or DeleteRecords) before this backup read them; check the topic's retention.ms / retention.bytes. The gap is recorded in the manifest",
                    batch.first_offset, batch.topic, batch.partition
                );
                metrics::counter!(
                    "ferry_backup_gap_offsets_total",
                    "topic" => batch.topic.to_string(),
                    "partition" => batch.partition.to_string()
                )
                .increment((batch.first_offset - prev).max(0) as u64);
            }
        }
        // E.g. fetch the schemas of Schema-Registry Avro values: encoders are synchronous.
        self.format.prepare(&batch).await?;
        for piece in self.split_by_time(batch)? {
            self.write_piece(piece, gap.take()).await?;
        }
        Ok(())
    }

    async fn write_metadata(&mut self, meta: SourceMetadata) -> Result<()> {
        self.ensure_descriptor().await?;
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
                    .map_err(|e| Error::internal(format!("encoding topic document: {e}")))?;
                self.storage.write(&key, json).await?;
            }
        }
        if !meta.groups.is_empty() && self.last_groups.as_ref() != Some(&meta.groups) {
            let doc = GroupsDocument {
                taken_at_ms: meta.taken_at_ms,
                groups: meta.groups.clone(),
            };
            let json = serde_json::to_vec_pretty(&doc)
                .map_err(|e| Error::internal(format!("encoding groups: {e}")))?;
            self.storage
                .write_new(&layout::groups_key(meta.taken_at_ms), json)
                .await?;
            self.last_groups = Some(meta.groups);
        }
        Ok(())
    }

    /// Closes segments open for `commit_interval` (or `roll.max_age`, if shorter); younger
    /// ones keep filling (so frequent checkpoints do not make tiny files). `close` writes
    /// everything.
    async fn flush(&mut self) -> Result<()> {
        self.settle_all().await?;
        let due = self
            .config
            .roll
            .max_age
            .get()
            .min(self.config.commit_interval.get());
        self.close_where(|s| s.opened.elapsed() >= due).await
    }

    async fn close(&mut self) -> Result<()> {
        self.settle_all().await?;
        self.close_where(|_| true).await?;
        if let Some(lease) = self.lease.take() {
            lease.release().await?;
        }
        Ok(())
    }

    fn checkpoint_storage(&self) -> Option<Storage> {
        Some(self.storage.clone())
    }
}
