//! The `storage` sink's options (`StorageSinkConfig`), their checks, the segment
//! formats by name, and the factory the registry builds the sink with.

use super::StorageSink;
use ferry_core::registry::{BuildContext, SinkFactory};
use ferry_core::{ByteSize, Error, HumanDuration, Result, Sink};
use ferry_formats::layout::PathTemplate;
use ferry_formats::segment::SegmentFormat;
use ferry_formats::FormatKind;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

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
fn default_max_buffered() -> ByteSize {
    ByteSize(128 * 1024 * 1024)
}
fn default_commit_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_lease_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

/// First path components of the backup layout, which the dead-letter prefix may not use.
const RESERVED_PREFIXES: [&str; 5] = ["topics", "pending", "groups", "lease", "checkpoints"];

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
    /// Options of `format: raw`: `compression` (zstd, lz4, snappy, gzip; default none)
    /// stores batches the producer sent uncompressed compressed, records byte for byte.
    #[serde(default)]
    pub raw: Option<ferry_formats::raw::RawOptions>,
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
    /// The most bytes all open segments together may hold in memory (encoders' unwritten
    /// rows and blocks, upload parts not yet sent). Every partition has its own open
    /// segment, so with thousands of partitions the buffers, not the data rate, would set
    /// the memory used: above this the segments holding most are closed early (smaller
    /// files, bounded memory). Default 128MiB.
    #[serde(default = "default_max_buffered")]
    pub max_buffered_bytes: ByteSize,
    /// Key prefix (in the same storage) of the dead-letter files of records whose values
    /// do not fit the typed columns (`parquet.value`/`avro.value` `on_error: dead_letter`):
    /// `<prefix>/<topic>/<partition>/<first_offset:020>.jsonl`. Default `dead-letter`.
    #[serde(default = "default_dead_letter")]
    pub dead_letter: String,
    /// How long this writer's lease on the location lasts without renewal (it is renewed
    /// every third of it): a second writer is refused while it holds, and may take over
    /// once a crashed writer's lease expired. Default 60s.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl: HumanDuration,
    /// The longest a segment stays open across checkpoints: each checkpoint (every
    /// `delivery.checkpoint_interval`) closes and commits segments open at least this long,
    /// even when they are not full, so a crash loses at most this much of what was already
    /// fetched. Default 60s (`roll.max_age` still rolls a segment while records arrive).
    #[serde(default = "default_commit_interval")]
    pub commit_interval: HumanDuration,
    /// Encrypt every segment and dead-letter file on the client (AES-256-GCM, a fresh data
    /// key per object wrapped by the key-encryption key): `{key_file: PATH}`,
    /// `{key_env: VAR}`, or for key rotation `{key_files: [new, old]}` (the first encrypts;
    /// the others are the keys the backup was written with so far). Keys are one line of
    /// base64, as `ferry keygen FILE` writes.
    #[serde(default)]
    pub encryption: Option<ferry_core::encryption::EncryptionConfig>,
    /// S3 Object Lock (s3:// only; the bucket must have Object Lock enabled): every segment
    /// and manifest written is locked for `days` days in `mode` (`governance` or
    /// `compliance`), so a stolen credential cannot delete or overwrite them. The lease,
    /// checkpoints and markers stay unlocked (Ferry rewrites them). E.g.
    /// `{mode: governance, days: 30}`.
    #[serde(default)]
    pub object_lock: Option<ferry_core::object_lock::ObjectLockConfig>,
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
    if c.raw.is_some() && c.format != FormatKind::Raw.name() {
        return Err(mismatch(FormatKind::Raw.name()));
    }
    if let Some(o) = &c.raw {
        return Ok(Arc::new(ferry_formats::raw::RawFormat { options: *o }));
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
    FormatKind::from_name(&c.format)
        .map(FormatKind::with_defaults)
        .ok_or_else(|| {
            Error::config(format!(
                "format '{}' is not one of: {}",
                c.format,
                FormatKind::names()
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
            if t.uses_time() && !format.kind().splits_by_time() {
                return Err(Error::config(format!(
                    "path '{}': {{date}} and {{hour}} need a record format (jsonl, avro, parquet); raw segments keep whole Kafka batches and cannot be split by time",
                    t.as_str()
                )));
            }
        }
        c.dead_letter_prefix()?;
        if let Some(e) = &c.encryption {
            e.validate()?;
        }
        if let Some(lock) = &c.object_lock {
            lock.validate(&c.uri, "object_lock")?;
        }
        if c.max_buffered_bytes.bytes() == 0 {
            return Err(Error::config("max_buffered_bytes must be > 0"));
        }
        if c.roll.max_records == 0 || c.roll.max_bytes.bytes() == 0 {
            return Err(Error::config(
                "roll.max_records and roll.max_bytes must be > 0",
            ));
        }
        Ok(())
    }

    fn build(&self, c: StorageSinkConfig, ctx: &BuildContext) -> Result<Box<dyn Sink>> {
        self.validate(&c)?;
        Ok(Box::new(StorageSink::new(c)?.with_scope(ctx.scope.clone())))
    }
}
