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
//! Only one writer may use a root at a time: reconciling deletes what another writer has
//! in progress.

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::registry::{BuildContext, SinkFactory};
use ferry_core::{
    Ack, Batch, ByteSize, Error, HumanDuration, Offsets, Result, Sink, SourceMetadata, Storage,
};
use ferry_formats::layout::{
    self, Descriptor, Gap, GroupsDocument, PathTemplate, PendingSegment, SegmentManifest,
};
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
fn default_dead_letter() -> String {
    "dead-letter".to_string()
}

/// First path components of the backup layout, which the dead-letter prefix may not use.
const RESERVED_PREFIXES: [&str; 3] = ["topics", "pending", "groups"];

/// Options of the `storage` sink.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageSinkConfig {
    /// Where to write: a local path, file://, s3://bucket/prefix?endpoint=…&region=…, gs://,
    /// azblob:// or memory://.
    pub uri: String,
    /// Segment format: raw (Kafka record batches, the backup format), jsonl, avro or
    /// parquet.
    #[serde(default = "default_format")]
    pub format: String,
    /// Options of `format: parquet`: row_group_bytes, compression (zstd, snappy, none),
    /// compression_level, and typed columns decoded from JSON values
    /// (`value: {as: json, schema: [{name, type, path}], column, on_error}`; without
    /// `schema` the columns are inferred per topic from the first `infer_records` values,
    /// default 1000, and logged as YAML to paste as `schema`) or from
    /// Schema-Registry Avro values (`value: {as: avro, registry: {url}, schemas, schema_id,
    /// column, on_error}`).
    #[serde(default)]
    pub parquet: Option<ferry_formats::parquet::ParquetOptions>,
    /// Options of `format: avro`: codec (snappy, zstd, deflate, null), block_bytes, and
    /// Schema-Registry Avro values decoded into a field (`value: {as: avro, …}`).
    #[serde(default)]
    pub avro: Option<ferry_formats::avro::AvroFormatOptions>,
    /// Segment object names: a template with `{topic}`, `{partition}`, `{first_offset}`
    /// (zero-padded to 20 digits), `{date}` (YYYY-MM-DD) and `{hour}` (HH) of the segment's
    /// first record in UTC; the format's extension is appended. E.g.
    /// `topic={topic}/date={date}/{partition}-{first_offset}`. Default: the backup layout
    /// (`topics/{topic}/{partition}/{first_offset}`). With `{date}` or `{hour}`, a segment
    /// rolls when a record's date/hour differs from its own.
    #[serde(default)]
    pub path: Option<String>,
    /// When segments roll.
    #[serde(default)]
    pub roll: RollConfig,
    /// Upload part size (multipart uploads on object stores).
    #[serde(default = "default_chunk")]
    pub chunk_size: ByteSize,
    /// Key prefix (in the same storage) of the dead-letter files of records whose values
    /// do not fit the typed columns (`parquet.value`/`avro.value` `on_error: dead_letter`):
    /// `<prefix>/<topic>/<partition>/<first_offset:020>.jsonl`. Default `dead-letter`.
    #[serde(default = "default_dead_letter")]
    pub dead_letter: String,
}

impl StorageSinkConfig {
    /// The dead-letter prefix without surrounding slashes; an error when empty or when it
    /// would land among the backup layout's own keys.
    pub fn dead_letter_prefix(&self) -> Result<&str> {
        let p = self.dead_letter.trim_matches('/');
        let first = p.split('/').next().unwrap_or_default();
        if p.is_empty()
            || RESERVED_PREFIXES.contains(&first)
            || p.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Error::config(format!(
                "dead_letter '{}': must be a key prefix like 'dead-letter', not empty, without '.'/'..'/empty parts, and not under {}",
                self.dead_letter,
                RESERVED_PREFIXES.join(", ")
            )));
        }
        Ok(p)
    }
}

/// Key of the dead-letter file of a segment.
pub fn dead_letter_key(prefix: &str, topic: &str, partition: i32, first_offset: i64) -> String {
    format!("{prefix}/{topic}/{partition}/{first_offset:020}.jsonl")
}

/// One dead-letter line: `{"reason": "...", "record": <the jsonl object>}` and a newline.
fn dead_letter_line(record: &ferry_core::Record, reason: &str, out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(b"{\"reason\":");
    serde_json::to_writer(&mut *out, reason)
        .map_err(|e| Error::internal(format!("encoding a dead-letter reason: {e}")))?;
    out.extend_from_slice(b",\"record\":");
    // A JSON object and its newline.
    ferry_formats::jsonl::encode_record(record, out);
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// The segment format of a sink config, with its options. The option block of another
/// format than `format` is a config error.
pub fn configured_format(c: &StorageSinkConfig) -> Result<Arc<dyn SegmentFormat>> {
    let mismatch = |block: &str| {
        Error::config(format!(
            "sink option '{block}:' applies to 'format: {block}', but format is '{}': remove the block or set 'format: {block}'",
            c.format
        ))
    };
    if c.parquet.is_some() && c.format != ferry_formats::parquet::NAME {
        return Err(mismatch(ferry_formats::parquet::NAME));
    }
    if c.avro.is_some() && c.format != ferry_formats::avro::NAME {
        return Err(mismatch(ferry_formats::avro::NAME));
    }
    if let Some(o) = &c.parquet {
        o.validate()?;
        return Ok(Arc::new(ferry_formats::parquet::ParquetFormat::new(
            o.clone(),
        )));
    }
    if let Some(o) = &c.avro {
        o.validate()?;
        return Ok(Arc::new(ferry_formats::avro::AvroFormat::from_config(o)));
    }
    segment_format(&c.format).ok_or_else(|| {
        Error::config(format!(
            "format '{}' is not one of: {}",
            c.format,
            FORMATS.join(", ")
        ))
    })
}

/// The `path:` template of a config; `None` for the backup layout (unset or the default).
pub fn path_template(c: &StorageSinkConfig) -> Result<Option<PathTemplate>> {
    match &c.path {
        None => Ok(None),
        Some(p) => {
            let t = PathTemplate::parse(p).map_err(Error::config)?;
            Ok((!t.is_default()).then_some(t))
        }
    }
}

/// Looks up a segment format by name, with default options.
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
        let format = configured_format(c)?;
        if let Some(t) = path_template(c)? {
            if t.uses_time() && format.name() == "raw" {
                return Err(Error::config(format!(
                    "path '{}': {{date}} and {{hour}} need a record format (jsonl, avro, parquet); raw segments keep whole Kafka batches and cannot be split by time",
                    t.as_str()
                )));
            }
        }
        c.dead_letter_prefix()?;
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
    /// Time bucket of the object's name (`{date}`/`{hour}` templates only).
    bucket: Option<i64>,
    /// Marker written before a templated object, removed after its manifest.
    pending: Option<String>,
    writer: opendal::Writer,
    encoder: Box<dyn SegmentEncoder>,
    acks: Vec<Ack>,
    opened: Instant,
}

/// Pieces encoded on blocking threads at once (see `StorageSink::encoding`).
const ENCODING_IN_PARALLEL: usize = 3;

/// A segment back from a blocking thread with the piece it encoded and the bytes to append.
type Encoded = (OpenSegment, Batch, Result<Bytes>);

/// A partition's piece being encoded on a blocking thread.
type Encoding = ((Arc<str>, i32), tokio::task::JoinHandle<Encoded>);

/// A part of a batch that goes to one segment: records of one time bucket.
struct Piece {
    batch: Batch,
    /// Time bucket of its data records; `None` when it has none (it joins any segment).
    bucket: Option<i64>,
    /// Timestamp of its first data record (of its first record when it has no data).
    first_ts: i64,
}

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
    /// Oldest first, at most [`ENCODING_IN_PARALLEL`], one per partition.
    encoding: std::collections::VecDeque<Encoding>,
    /// Next offset after the last closed segment, per partition.
    last_next: HashMap<(Arc<str>, i32), i64>,
    last_groups: Option<Vec<ferry_core::GroupOffsets>>,
    /// The storage is a local folder.
    local: bool,
}

fn topic_of(t: &str) -> Arc<str> {
    Arc::from(t)
}

/// Whether records of a format are decoded before encoding (every format but `raw`, which
/// keeps fetched bytes).
fn decodes(format: &dyn SegmentFormat) -> bool {
    format.name() != "raw"
}

impl StorageSink {
    /// A sink for these options.
    pub fn new(config: StorageSinkConfig) -> Result<Self> {
        let storage = Storage::from_uri(&config.uri)?;
        let format = configured_format(&config)?;
        let template = path_template(&config)?;
        if template.as_ref().is_some_and(PathTemplate::uses_time) && !decodes(&*format) {
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
            last_next: HashMap::new(),
            last_groups: None,
            local,
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
                    return Err(Error::config(format!(
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
                    .map_err(|e| Error::internal(format!("encoding descriptor: {e}")))?;
                self.storage.write_new(layout::DESCRIPTOR, json).await?;
            }
        }
        Ok(())
    }

    /// Deletes what interrupted templated writes left: objects named by a `pending/` marker
    /// whose manifest is missing (or names another object), then the markers.
    async fn reconcile_pending(&self) -> Result<()> {
        for key in self.storage.list(layout::PENDING_PREFIX).await? {
            let Some((topic, partition, first)) = layout::parse_pending_key(&key) else {
                continue;
            };
            let Some(bytes) = self.storage.read_opt(&key).await? else {
                continue;
            };
            let marker: PendingSegment = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Corrupt(format!(
                    "{}/{key}: not a pending-segment marker ({e}); if no Ferry writes to this location, delete it",
                    self.storage
                ))
            })?;
            let committed = self
                .read_manifest(&topic, partition, first)
                .await?
                .is_some_and(|m| m.segment == marker.segment);
            if !committed {
                tracing::warn!(segment = %marker.segment, "removing a segment without manifest (an interrupted write)");
                self.storage.delete(&marker.segment).await?;
            }
            self.storage.delete(&key).await?;
        }
        Ok(())
    }

    async fn open_segment(&mut self, piece: &Piece) -> Result<OpenSegment> {
        let batch = &piece.batch;
        let ext = self.format.extension();
        let (key, pending) = match &self.template {
            None => (
                layout::segment_key(&batch.topic, batch.partition, batch.first_offset, ext),
                None,
            ),
            Some(t) => {
                let key = t.render(
                    &batch.topic,
                    batch.partition,
                    batch.first_offset,
                    piece.first_ts,
                    ext,
                );
                let marker = layout::pending_key(&batch.topic, batch.partition, batch.first_offset);
                let json = serde_json::to_vec_pretty(&PendingSegment {
                    segment: key.clone(),
                    started_at_ms: layout::now_ms(),
                })
                .map_err(|e| Error::internal(format!("encoding {marker}: {e}")))?;
                self.storage.write(&marker, json).await?;
                (key, Some(marker))
            }
        };
        let mut writer = self.storage.operator().writer_with(&key);
        if !self.local {
            // Object stores upload in parts of this size; local files are written through
            // (buffering a chunk per open partition would only cost memory).
            writer = writer.chunk(self.config.chunk_size.bytes() as usize);
        }
        let writer = writer
            .await
            .map_err(|e| Error::storage(format!("opening {}/{key}", self.storage), e))?;
        let bucket = match (&self.template, piece.bucket) {
            (Some(t), None) => t.bucket(piece.first_ts),
            (_, b) => b,
        };
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
            bucket,
            pending,
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
        let tail = match seg.encoder.finish() {
            Ok(t) => t,
            Err(e) => {
                let _ = seg.writer.abort().await;
                return Err(e);
            }
        };
        self.append(&mut seg, tail).await?;
        seg.writer
            .close()
            .await
            .map_err(|e| Error::storage(format!("closing {}/{}", self.storage, seg.key), e))?;
        self.write_dead_letters(topic, partition, &mut seg).await?;
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
            .map_err(|e| Error::internal(format!("encoding manifest: {e}")))?;
        let mkey = layout::manifest_key(topic, partition, seg.first_offset);
        if !self.storage.write_new(&mkey, json).await? {
            return Err(Error::refused(format!(
                "{}/{mkey} already exists: another writer is using this backup location",
                self.storage
            )));
        }
        if let Some(marker) = &seg.pending {
            // The manifest commits the segment; a marker left behind is removed on start.
            if let Err(e) = self.storage.delete(marker).await {
                tracing::warn!(marker = %marker, error = %e, "could not remove a pending-segment marker (removed on next start)");
            }
        }
        metrics::counter!("ferry_segments_written_total").increment(1);
        tracing::debug!(segment = %seg.key, records = seg.records, bytes = seg.bytes, "segment written");
        for a in seg.acks {
            a.resolve();
        }
        Ok(seg.next_offset)
    }

    /// Writes the records the encoder rejected (if any) to the segment's dead-letter file,
    /// before its manifest; a retry after a crash writes the same key again.
    async fn write_dead_letters(
        &self,
        topic: &str,
        partition: i32,
        seg: &mut OpenSegment,
    ) -> Result<()> {
        let rejected = seg.encoder.take_rejected();
        if rejected.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        for (record, reason) in &rejected {
            dead_letter_line(record, reason, &mut out)?;
        }
        let key = dead_letter_key(
            self.config.dead_letter_prefix()?,
            topic,
            partition,
            seg.first_offset,
        );
        self.storage.write(&key, out).await?;
        metrics::counter!("ferry_dead_letter_records_total").increment(rejected.len() as u64);
        tracing::warn!(file = %key, records = rejected.len(), "values that do not fit the typed columns written to the dead-letter file");
        Ok(())
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

    /// Splits a decoded batch into runs of records of one time bucket (of `{date}`/`{hour}`),
    /// each with its share of the ack. Offsets stay contiguous: each run covers up to the
    /// next run's first record, the last one up to the batch's end.
    fn split_by_time(&self, mut batch: Batch) -> Result<Vec<Piece>> {
        let Some(t) = self.template.as_ref().filter(|t| t.uses_time()) else {
            // Names do not depend on time: no need to look at (or decode) the records.
            return Ok(vec![Piece {
                batch,
                bucket: None,
                first_ts: 0,
            }]);
        };
        let records = std::mem::take(batch.records_mut()?);
        // (start index, bucket, first data timestamp) of each run.
        let mut runs: Vec<(usize, i64, i64)> = Vec::new();
        for (i, r) in records.iter().enumerate().filter(|(_, r)| !r.is_control) {
            let Some(b) = t.bucket(r.timestamp) else {
                continue;
            };
            if runs.last().is_none_or(|(_, last, _)| *last != b) {
                runs.push((if runs.is_empty() { 0 } else { i }, b, r.timestamp));
            }
        }
        let Batch {
            topic,
            partition,
            first_offset,
            next_offset,
            ack,
            ..
        } = batch;
        if runs.len() <= 1 {
            let (bucket, first_ts) = match runs.first() {
                Some((_, b, ts)) => (Some(*b), *ts),
                None => (None, records.first().map_or(0, |r| r.timestamp)),
            };
            return Ok(vec![Piece {
                batch: Batch::from_records(
                    topic,
                    partition,
                    first_offset,
                    next_offset,
                    records,
                    ack,
                ),
                bucket,
                first_ts,
            }]);
        }
        let mut acks = ack.split(runs.len());
        let mut rest = records;
        let mut pieces = Vec::with_capacity(runs.len());
        // Cut from the back so each split_off is cheap and indices stay valid.
        let mut end_offset = next_offset;
        for (start, bucket, first_ts) in runs.into_iter().rev() {
            let recs = rest.split_off(start);
            let first = if start == 0 {
                first_offset
            } else {
                recs.first().map_or(first_offset, |r| r.offset)
            };
            let ack = acks.pop().unwrap_or_else(Ack::none);
            pieces.push(Piece {
                batch: Batch::from_records(topic.clone(), partition, first, end_offset, recs, ack),
                bucket: Some(bucket),
                first_ts,
            });
            end_offset = first;
        }
        pieces.reverse();
        Ok(pieces)
    }

    /// Appends one piece to its partition's segment, rolling first when its time bucket
    /// differs from the segment's, and after when the segment is full.
    async fn write_piece(&mut self, piece: Piece, gap: Option<Gap>) -> Result<()> {
        let key = (piece.batch.topic.clone(), piece.batch.partition);
        // The previous piece (of this batch, with time buckets) must be in the segment first.
        self.settle(&key).await?;
        let other_bucket = self
            .open
            .get(&key)
            .is_some_and(|s| piece.bucket.is_some() && s.bucket != piece.bucket);
        if other_bucket {
            if let Some(seg) = self.open.remove(&key) {
                let next = self.close_segment(&key.0, key.1, seg).await?;
                self.last_next.insert(key.clone(), next);
            }
        }
        let mut seg = match self.open.remove(&key) {
            Some(seg) => seg,
            None => self.open_segment(&piece).await?,
        };
        if let Some(g) = gap {
            seg.gaps.push(g);
        }
        let mut batch = piece.batch;
        if decodes(&*self.format) {
            // A few at a time: each piece in flight holds its batch and the buffers its
            // records are slices of.
            while self.encoding.len() >= ENCODING_IN_PARALLEL {
                // The oldest first: it is the likeliest to be done.
                self.settle_oldest().await?;
            }
            let task = tokio::task::spawn_blocking(move || {
                let bytes = match batch.records_mut() {
                    Ok(_) => seg.encoder.encode(&batch),
                    Err(e) => Err(e.into()),
                };
                (seg, batch, bytes)
            });
            // `write_piece` settled this partition first: it is not in the queue.
            self.encoding.push_back((key, task));
            return Ok(());
        }
        let bytes = seg.encoder.encode(&batch);
        self.complete_piece(key, seg, batch, bytes).await
    }

    /// The manifest of a partition's segment starting at `first`, if there is one.
    async fn read_manifest(
        &self,
        topic: &str,
        partition: i32,
        first: i64,
    ) -> Result<Option<SegmentManifest>> {
        let key = layout::manifest_key(topic, partition, first);
        let Some(bytes) = self.storage.read_opt(&key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt(format!("{}/{key}: {e}", self.storage)))
    }

    /// Waits for the piece of `key` being encoded, if any, and completes it.
    async fn settle(&mut self, key: &(Arc<str>, i32)) -> Result<()> {
        match self.encoding.iter().position(|(k, _)| k == key) {
            Some(i) => self.settle_at(i).await,
            None => Ok(()),
        }
    }

    /// Completes the oldest piece being encoded, if any.
    async fn settle_oldest(&mut self) -> Result<()> {
        if self.encoding.is_empty() {
            return Ok(());
        }
        self.settle_at(0).await
    }

    async fn settle_at(&mut self, i: usize) -> Result<()> {
        let Some((key, task)) = self.encoding.remove(i) else {
            return Ok(());
        };
        let (seg, batch, bytes) = task.await.map_err(|e| {
            Error::internal(format!(
                "encoding a segment of {}/{} failed: {e}",
                key.0, key.1
            ))
        })?;
        self.complete_piece(key, seg, batch, bytes).await
    }

    /// [`StorageSink::settle`] for every partition.
    async fn settle_all(&mut self) -> Result<()> {
        while !self.encoding.is_empty() {
            self.settle_oldest().await?;
        }
        Ok(())
    }

    /// Appends an encoded piece to its segment and counts it; closes the segment when it
    /// is full.
    async fn complete_piece(
        &mut self,
        key: (Arc<str>, i32),
        mut seg: OpenSegment,
        batch: Batch,
        bytes: Result<Bytes>,
    ) -> Result<()> {
        let result = match bytes {
            Ok(bytes) => self.append(&mut seg, bytes).await,
            Err(e) => Err(e),
        };
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
                // Decoded formats leave control records out of the file.
                let data = |r: &&ferry_core::Record| !decodes(&*self.format) || !r.is_control;
                let count = recs.iter().filter(data).count() as u64;
                let stamps = || {
                    recs.iter()
                        .filter(data)
                        .map(|r| r.timestamp)
                        .filter(|t| *t >= 0)
                };
                (count, stamps().min(), stamps().max(), Vec::new())
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
}

#[async_trait]
impl Sink for StorageSink {
    async fn open(&mut self) -> Result<Option<Offsets>> {
        self.storage.check().await?;
        self.write_descriptor().await?;
        self.reconcile_pending().await?;
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
            let Some(m) = self.read_manifest(topic, *partition, *last).await? else {
                return Err(Error::Corrupt(format!(
                    "{}/{}: listed but gone",
                    self.storage,
                    layout::manifest_key(topic, *partition, *last)
                )));
            };
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
                // Overlaps what is stored: keep only the new offsets, re-encoded.
                tracing::warn!(topic = %batch.topic, partition = batch.partition, from = batch.first_offset, stored_up_to = prev, "batch overlaps stored data; storing only new offsets");
                let records = batch.records_mut()?;
                records.retain(|r| r.offset >= prev);
                batch.first_offset = prev;
            }
            if batch.first_offset > prev {
                gap = Some(Gap {
                    from: prev,
                    to: batch.first_offset,
                });
                tracing::warn!(topic = %batch.topic, partition = batch.partition, from = prev, to = batch.first_offset, "gap recorded: offsets missing in the source");
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

    /// Closes segments that reached their age; younger ones keep filling (so frequent
    /// checkpoints do not make tiny files). `close` writes everything.
    async fn flush(&mut self) -> Result<()> {
        self.settle_all().await?;
        let max_age = self.config.roll.max_age.get();
        self.close_where(|s| s.opened.elapsed() >= max_age).await
    }

    async fn close(&mut self) -> Result<()> {
        self.settle_all().await?;
        self.close_where(|_| true).await
    }

    fn checkpoint_storage(&self) -> Option<Storage> {
        Some(self.storage.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::{AckTracker, Record};

    fn config(uri: &str, yaml: serde_json::Value) -> StorageSinkConfig {
        let mut v = serde_json::json!({ "uri": uri });
        if let (Some(m), serde_json::Value::Object(extra)) = (v.as_object_mut(), yaml) {
            m.extend(extra);
        }
        serde_json::from_value(v).expect("config parses")
    }

    /// The manifest of partition 0 of topic `t` starting at `first`.
    async fn manifest(storage: &Storage, first: i64) -> SegmentManifest {
        let bytes = storage
            .read(&layout::manifest_key("t", 0, first))
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn record(topic: &Arc<str>, offset: i64, ts: i64) -> Record {
        let mut r = Record::new(
            topic.clone(),
            0,
            offset,
            Some(Bytes::from(format!("{{\"n\":{offset}}}"))),
        );
        r.timestamp = ts;
        r
    }

    const DAY: i64 = 86_400_000;
    const T0: i64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z

    #[test]
    fn option_blocks_must_match_the_format() {
        let f = StorageSinkFactory;
        let ok = config(
            "memory://o",
            serde_json::json!({"format": "parquet", "parquet": {"compression": "snappy"}}),
        );
        f.validate(&ok).unwrap();
        let ok = config(
            "memory://o",
            serde_json::json!({"format": "avro", "avro": {"codec": "deflate"}}),
        );
        f.validate(&ok).unwrap();
        let bad = config(
            "memory://o",
            serde_json::json!({"format": "avro", "parquet": {}}),
        );
        let e = f.validate(&bad).unwrap_err().to_string();
        assert!(
            e.contains("'parquet:'") && e.contains("format is 'avro'"),
            "{e}"
        );
        let bad = config("memory://o", serde_json::json!({"avro": {}}));
        assert!(f
            .validate(&bad)
            .unwrap_err()
            .to_string()
            .contains("'avro:'"));
        let bad = config(
            "memory://o",
            serde_json::json!({"format": "parquet", "parquet": {"compression_level": 99}}),
        );
        assert!(f.validate(&bad).is_err());
        let bad = config(
            "memory://o",
            serde_json::json!({"format": "parquet", "parquet": {"value": {"as": "json", "schema": []}}}),
        );
        assert!(f.validate(&bad).is_err());
        let bad = serde_json::from_value::<StorageSinkConfig>(
            serde_json::json!({"uri": "x", "format": "parquet", "parquet": {"row_groups": 1}}),
        );
        assert!(bad.is_err(), "unknown option keys are refused");
    }

    #[test]
    fn paths_are_checked() {
        let f = StorageSinkFactory;
        let raw_dated = config(
            "memory://p",
            serde_json::json!({"path": "d/{date}/{topic}/{partition}/{first_offset}"}),
        );
        assert!(f
            .validate(&raw_dated)
            .unwrap_err()
            .to_string()
            .contains("raw"));
        let raw_plain = config(
            "memory://p",
            serde_json::json!({"path": "d/{topic}/{partition}/{first_offset}"}),
        );
        f.validate(&raw_plain).unwrap();
        let missing = config(
            "memory://p",
            serde_json::json!({"format": "jsonl", "path": "d/{topic}/{first_offset}"}),
        );
        assert!(f
            .validate(&missing)
            .unwrap_err()
            .to_string()
            .contains("{partition}"));
        let default = config(
            "memory://p",
            serde_json::json!({"path": PathTemplate::DEFAULT}),
        );
        assert!(path_template(&default).unwrap().is_none());
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn dated_paths_roll_per_date_and_keep_manifests_in_the_layout() {
        rt().block_on(async {
            let uri = format!("memory://dated-{}", layout::now_ms());
            let c = config(&uri, serde_json::json!({
                "format": "jsonl",
                "path": "topic={topic}/date={date}/{partition}-{first_offset}",
            }));
            let mut sink = StorageSink::new(c).unwrap();
            sink.open().await.unwrap();
            let topic: Arc<str> = Arc::from("t");
            let tracker = AckTracker::new();
            // Day 0: offsets 0..3, day 1: 3..5, back to day 0: 5..6, in one batch and a second.
            let days = [0, 0, 0, 1, 1, 0];
            let recs: Vec<Record> = days.iter().enumerate().map(|(i, d)| record(&topic, i as i64, T0 + d * DAY + i as i64)).collect();
            let ack = tracker.issue(&topic, 0, 0, 4);
            sink.write(Batch::from_records(topic.clone(), 0, 0, 4, recs[..4].to_vec(), ack)).await.unwrap();
            let ack = tracker.issue(&topic, 0, 4, 6);
            sink.write(Batch::from_records(topic.clone(), 0, 4, 6, recs[4..].to_vec(), ack)).await.unwrap();
            sink.close().await.unwrap();
            assert_eq!(tracker.watermarks()["t"][&0], 6);
            let storage = sink.storage().clone();
            let mut keys = storage.list("topic=t/").await.unwrap();
            keys.sort();
            assert_eq!(keys, vec![
                "topic=t/date=2025-12-01/0-00000000000000000000.jsonl".to_string(),
                "topic=t/date=2025-12-01/0-00000000000000000005.jsonl".to_string(),
                "topic=t/date=2025-12-02/0-00000000000000000003.jsonl".to_string(),
            ]);
            assert!(storage.list(layout::PENDING_PREFIX).await.unwrap().is_empty());
            let spans: Vec<(i64, i64, u64)> = {
                let mut out = Vec::new();
                for f in [0, 3, 5] {
                    let m = manifest(&storage, f).await;
                    assert!(m.segment.starts_with("topic=t/date="));
                    out.push((m.first_offset, m.next_offset, m.record_count));
                }
                out
            };
            assert_eq!(spans, vec![(0, 3, 3), (3, 5, 2), (5, 6, 1)]);
            // A restart resumes after the manifests.
            let mut again = StorageSink::new(config(&uri, serde_json::json!({"format": "jsonl", "path": "topic={topic}/date={date}/{partition}-{first_offset}"}))).unwrap();
            let durable = again.open().await.unwrap().unwrap();
            assert_eq!(durable["t"][&0], 6);
        });
    }

    #[test]
    fn interrupted_templated_writes_are_removed_on_open() {
        rt().block_on(async {
            let uri = format!("memory://pending-{}", layout::now_ms());
            let c = || config(&uri, serde_json::json!({"format": "jsonl", "path": "data/{topic}/{partition}/{first_offset}"}));
            let mut sink = StorageSink::new(c()).unwrap();
            sink.open().await.unwrap();
            let topic: Arc<str> = Arc::from("t");
            let recs: Vec<Record> = (0..3).map(|i| record(&topic, i, T0)).collect();
            sink.write(Batch::from_records(topic.clone(), 0, 0, 3, recs, Ack::none())).await.unwrap();
            sink.close().await.unwrap();
            let storage = sink.storage().clone();
            let done = "data/t/0/00000000000000000000.jsonl";
            assert!(storage.exists(done).await.unwrap());
            // A crash after the object, before its manifest; and one after the manifest,
            // before the marker was removed.
            let orphan = "data/t/0/00000000000000000003.jsonl";
            storage.write(orphan, "x").await.unwrap();
            for (first, seg) in [(3, orphan), (0, done)] {
                let m = PendingSegment { segment: seg.to_string(), started_at_ms: 0 };
                storage.write(&layout::pending_key("t", 0, first), serde_json::to_vec(&m).unwrap()).await.unwrap();
            }
            let mut again = StorageSink::new(c()).unwrap();
            let durable = again.open().await.unwrap().unwrap();
            assert_eq!(durable["t"][&0], 3);
            assert!(!storage.exists(orphan).await.unwrap(), "orphan removed");
            assert!(storage.exists(done).await.unwrap(), "committed segment kept");
            assert!(storage.list(layout::PENDING_PREFIX).await.unwrap().is_empty());
        });
    }

    #[test]
    fn parquet_manifests_count_data_records_only() {
        rt().block_on(async {
            let uri = format!("memory://pq-{}", layout::now_ms());
            let mut sink = StorageSink::new(config(
                &uri,
                serde_json::json!({"format": "parquet", "parquet": {"compression": "snappy"}}),
            ))
            .unwrap();
            sink.open().await.unwrap();
            let topic: Arc<str> = Arc::from("t");
            let mut recs: Vec<Record> = (0..4).map(|i| record(&topic, i, T0 + i)).collect();
            recs[3].is_control = true;
            sink.write(Batch::from_records(
                topic.clone(),
                0,
                0,
                4,
                recs,
                Ack::none(),
            ))
            .await
            .unwrap();
            sink.close().await.unwrap();
            let storage = sink.storage().clone();
            let m = manifest(&storage, 0).await;
            assert_eq!(
                (m.format.as_str(), m.record_count, m.next_offset),
                ("parquet", 3, 4)
            );
            assert_eq!(m.max_timestamp, Some(T0 + 2));
            let back =
                ferry_formats::parquet::read_parquet(storage.read(&m.segment).await.unwrap())
                    .unwrap();
            assert_eq!(back.len(), 3);
        });
    }

    #[test]
    fn values_that_do_not_fit_go_to_the_dead_letter_file() {
        rt().block_on(async {
            let uri = format!("memory://dl-{}", layout::now_ms());
            let mut sink = StorageSink::new(config(
                &uri,
                serde_json::json!({
                    "format": "parquet",
                    "dead_letter": "/rejects/",
                    "parquet": {"value": {"as": "json", "on_error": "dead_letter",
                        "schema": [{"name": "n", "type": "int64"}]}},
                }),
            ))
            .unwrap();
            sink.open().await.unwrap();
            let topic: Arc<str> = Arc::from("t");
            let mut recs: Vec<Record> = (0..5).map(|i| record(&topic, 10 + i, T0 + i)).collect();
            recs[1].value = Some(Bytes::from_static(b"not json"));
            recs[3].value = Some(Bytes::from_static(br#"{"n": "seven"}"#));
            sink.write(Batch::from_records(
                topic.clone(),
                0,
                10,
                15,
                recs.clone(),
                Ack::none(),
            ))
            .await
            .unwrap();
            sink.close().await.unwrap();
            let storage = sink.storage().clone();
            let m = manifest(&storage, 10).await;
            assert_eq!(m.record_count, 5);
            let back =
                ferry_formats::parquet::read_parquet(storage.read(&m.segment).await.unwrap())
                    .unwrap();
            assert_eq!(back, recs, "every record is in the parquet file");

            let key = dead_letter_key("rejects", "t", 0, 10);
            assert_eq!(key, "rejects/t/0/00000000000000000010.jsonl");
            let text = storage.read(&key).await.unwrap();
            let lines: Vec<serde_json::Value> = std::str::from_utf8(&text)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(lines.len(), 2);
            for (line, want) in lines.iter().zip([&recs[1], &recs[3]]) {
                let mut jsonl = Vec::new();
                ferry_formats::jsonl::encode_record(want, &mut jsonl);
                let want_json: serde_json::Value = serde_json::from_slice(&jsonl).unwrap();
                assert_eq!(line["record"], want_json);
                assert_eq!(line["record"]["offset"], want.offset);
            }
            let reason = |i: usize| lines[i]["reason"].as_str().unwrap().to_string();
            assert!(reason(0).contains("not JSON"), "{}", reason(0));
            assert!(reason(1).contains("field `n`"), "{}", reason(1));
        });
    }

    #[test]
    fn dead_letter_prefix_is_checked() {
        let f = StorageSinkFactory;
        let c = config("memory://d", serde_json::json!({}));
        assert_eq!(c.dead_letter_prefix().unwrap(), "dead-letter");
        for bad in ["", "/", "topics", "pending/x", "a//b", "../x"] {
            let c = config("memory://d", serde_json::json!({ "dead_letter": bad }));
            assert!(f.validate(&c).is_err(), "{bad}");
        }
    }
}
