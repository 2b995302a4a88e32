//! The `avro` format: an Avro object container file with one Avro record per Kafka record.
//!
//! The envelope schema ([`SCHEMA_JSON`], record `io.ferry.KafkaRecord`):
//!
//! | field            | Avro type                                           |
//! |------------------|-----------------------------------------------------|
//! | `topic`          | `string`                                            |
//! | `partition`      | `int`                                               |
//! | `offset`         | `long`                                              |
//! | `timestamp`      | `long`, logical type `timestamp-millis`             |
//! | `timestamp_type` | `string`: `create` or `log_append`                  |
//! | `key`            | `["null", "bytes"]`                                 |
//! | `value`          | `["null", "bytes"]`                                 |
//! | `headers`        | array of record `Header {key: string, value: ["null", "bytes"]}` |
//!
//! A null key/value/header value is the `null` branch, an empty one is empty `bytes`: the
//! two are never confused. Headers keep their order, repeats and nulls. Control records
//! (transaction markers) are not written: they are not data.
//!
//! The file header carries the metadata `ferry.topic`, `ferry.partition` and
//! `ferry.first_offset` (UTF-8 strings). Blocks are compressed with the configured codec
//! ([`AvroCodec`], snappy by default) and hold about [`AvroOptions::block_bytes`] of encoded
//! records, so the encoder's memory stays bounded: [`AvroEncoder::encode`] returns the
//! header and every block that filled up, [`SegmentEncoder::finish`] the last block. The
//! container file is framed here ([`container`]); apache-avro encodes the records.
//!
//! **Decoded values.** With `value: {as: avro, registry: {url}}` ([`AvroFormatOptions`];
//! Confluent Schema-Registry Avro values, see [`crate::confluent`]) each record also gets
//! a field `value_avro` (the name is `column:`) of type `["null", <reader schema>]`: the
//! value decoded and resolved to the topic's reader schema, natively (not as bytes), or
//! null for a tombstone or a value that cannot be decoded (`on_error`). The envelope
//! fields are unchanged, so such files remain restorable ([`AvroRecords`] ignores fields
//! it does not know). The reader schema is embedded in the envelope schema: its types
//! without a namespace take the envelope's (`io.ferry`), so it may not define a type
//! `Header` or `KafkaRecord` without a namespace. A segment written entirely before its
//! topic had a reader schema has no `value_avro` field.
//!
//! [`read_avro`] and [`AvroRecords`] read such files back into [`Record`]s.

use crate::confluent::{AvroValueColumns, AvroValues, IdSchema};
use crate::segment::{SegmentEncoder, SegmentFormat};
use apache_avro::types::Value;
use apache_avro::{Codec, DeflateSettings, Schema, ZstandardSettings};
use bytes::Bytes;
use container::Container;
use ferry_core::{Batch, ByteSize, Error, Header, Record, Result, TimestampType};
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, LazyLock, Mutex};

mod container;

/// File extension of Avro segment objects.
pub const EXTENSION: &str = "avro";

/// Name of the format in pipeline files and manifests.
pub const NAME: &str = "avro";

/// The envelope schema written in every file.
pub const SCHEMA_JSON: &str = r#"{
  "type": "record",
  "name": "KafkaRecord",
  "namespace": "io.ferry",
  "doc": "One Kafka record, as exported by Ferry",
  "fields": [
    {"name": "topic", "type": "string"},
    {"name": "partition", "type": "int"},
    {"name": "offset", "type": "long"},
    {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "timestamp_type", "type": "string"},
    {"name": "key", "type": ["null", "bytes"]},
    {"name": "value", "type": ["null", "bytes"]},
    {"name": "headers", "type": {"type": "array", "items": {
      "type": "record",
      "name": "Header",
      "fields": [
        {"name": "key", "type": "string"},
        {"name": "value", "type": ["null", "bytes"]}
      ]
    }}}
  ]
}"#;

/// The parsed envelope schema.
pub static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    // The schema is a constant of this file, checked by the tests.
    Schema::parse_str(SCHEMA_JSON).expect("the Avro envelope schema is valid")
});

/// Compression codec of Avro blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AvroCodec {
    /// No compression.
    Null,
    /// Deflate (RFC 1951), the codec every Avro reader has.
    Deflate,
    /// Snappy, with the CRC-32 of each uncompressed block (the default: fast, and read by
    /// every Avro reader including DuckDB's extension, which cannot read zstd blocks).
    #[default]
    Snappy,
    /// Zstandard (smaller files, about 2.4× slower to write here).
    Zstd,
}

impl AvroCodec {
    fn codec(self) -> Codec {
        match self {
            AvroCodec::Null => Codec::Null,
            AvroCodec::Deflate => Codec::Deflate(DeflateSettings::default()),
            AvroCodec::Snappy => Codec::Snappy,
            AvroCodec::Zstd => Codec::Zstandard(ZstandardSettings::default()),
        }
    }

    /// The name written in the file header (`avro.codec`).
    pub fn as_str(self) -> &'static str {
        match self {
            AvroCodec::Null => "null",
            AvroCodec::Deflate => "deflate",
            AvroCodec::Snappy => "snappy",
            AvroCodec::Zstd => "zstandard",
        }
    }
}

fn default_block_bytes() -> ByteSize {
    ByteSize(1024 * 1024)
}

/// Options of the `avro` format.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AvroOptions {
    /// Block compression: `snappy` (default), `zstd`, `deflate` or `null`.
    #[serde(default)]
    pub codec: AvroCodec,
    /// A block is written once its encoded records (before compression) reach this size
    /// (default 1MiB); it bounds the encoder's memory.
    #[serde(default = "default_block_bytes")]
    pub block_bytes: ByteSize,
}

impl Default for AvroOptions {
    fn default() -> Self {
        AvroOptions {
            codec: AvroCodec::default(),
            block_bytes: default_block_bytes(),
        }
    }
}

/// Names of the envelope fields, which the decoded-value field may not take.
pub const ENVELOPE_FIELDS: [&str; 8] = [
    "topic",
    "partition",
    "offset",
    "timestamp",
    "timestamp_type",
    "key",
    "value",
    "headers",
];

/// Decoded values of the `avro` format: `value: {as: avro, …}` (the only encoding it
/// decodes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(tag = "as", rename_all = "snake_case")]
pub enum AvroFormatValue {
    /// Confluent Schema-Registry Avro values, see [`crate::confluent`].
    Avro(AvroValueColumns),
}

/// Options of the `avro` format as pipeline files give them (`avro:` of the storage
/// sink): the block options and, optionally, decoded values.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AvroFormatOptions {
    /// Block compression: `snappy` (default), `zstd`, `deflate` or `null`.
    #[serde(default)]
    pub codec: AvroCodec,
    /// A block is written once its encoded records (before compression) reach this size
    /// (default 1MiB); it bounds the encoder's memory.
    #[serde(default = "default_block_bytes")]
    pub block_bytes: ByteSize,
    /// Confluent Schema-Registry Avro values decoded into a field of each record
    /// (`{as: avro, registry: {url}}`).
    #[serde(default)]
    pub value: Option<AvroFormatValue>,
}

impl Default for AvroFormatOptions {
    fn default() -> Self {
        AvroFormatOptions {
            codec: AvroCodec::default(),
            block_bytes: default_block_bytes(),
            value: None,
        }
    }
}

impl AvroFormatOptions {
    /// Checks the options (block size, decoded values).
    pub fn validate(&self) -> Result<()> {
        if self.block_bytes.bytes() == 0 {
            return Err(Error::config("avro block_bytes must be > 0"));
        }
        if let Some(AvroFormatValue::Avro(v)) = &self.value {
            v.validate("avro value", &ENVELOPE_FIELDS)?;
            let name_ok = v
                .column
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && v.column
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !name_ok {
                return Err(Error::config(format!(
                    "avro value (as: avro): `column: {}` is not an Avro field name ([A-Za-z_][A-Za-z0-9_]*)",
                    v.column
                )));
            }
        }
        Ok(())
    }

    /// The encoder options (codec and block size).
    pub fn options(&self) -> AvroOptions {
        AvroOptions {
            codec: self.codec,
            block_bytes: self.block_bytes,
        }
    }
}

/// The `avro` format.
#[derive(Debug, Clone, Default)]
pub struct AvroFormat {
    /// Its options.
    pub options: AvroOptions,
    /// The decoding state of `value: {as: avro}` shared by its encoders.
    values: Option<Arc<AvroValues>>,
}

impl AvroFormat {
    /// The format with these options.
    pub fn new(options: AvroOptions) -> Self {
        AvroFormat {
            options,
            values: None,
        }
    }

    /// The format as a pipeline file configures it (see [`AvroFormatOptions::validate`]).
    pub fn from_config(config: &AvroFormatOptions) -> Self {
        AvroFormat {
            options: config.options(),
            values: config.value.as_ref().map(|v| match v {
                AvroFormatValue::Avro(a) => Arc::new(AvroValues::new(a.clone())),
            }),
        }
    }
}

#[async_trait::async_trait]
impl SegmentFormat for AvroFormat {
    fn kind(&self) -> crate::kind::FormatKind {
        crate::kind::FormatKind::Avro
    }

    fn encoder(&self, topic: &str, partition: i32, first_offset: i64) -> Box<dyn SegmentEncoder> {
        let mut enc = AvroEncoder::new(&self.options, topic, partition, first_offset);
        if let Some(values) = &self.values {
            enc = enc.with_values(values.clone());
        }
        Box::new(enc)
    }

    async fn prepare(&self, batch: &Batch) -> Result<()> {
        match &self.values {
            Some(v) => v.prepare(batch).await,
            None => Ok(()),
        }
    }
}

/// Bytes as Avro `bytes`.
struct AvroBytes<'a>(&'a [u8]);

impl Serialize for AvroBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

struct HeaderOut<'a>(&'a Header);

impl Serialize for HeaderOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Header", 2)?;
        st.serialize_field("key", &self.0.key)?;
        st.serialize_field("value", &self.0.value.as_deref().map(AvroBytes))?;
        st.end()
    }
}

struct HeadersOut<'a>(&'a [Header]);

impl Serialize for HeadersOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for h in self.0 {
            seq.serialize_element(&HeaderOut(h))?;
        }
        seq.end()
    }
}

/// One record as the envelope, serialized straight into the block buffer.
struct RecordOut<'a>(&'a Record);

impl Serialize for RecordOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let r = self.0;
        let mut st = s.serialize_struct("KafkaRecord", 8)?;
        st.serialize_field("topic", &*r.topic)?;
        st.serialize_field("partition", &r.partition)?;
        st.serialize_field("offset", &r.offset)?;
        st.serialize_field("timestamp", &r.timestamp)?;
        st.serialize_field("timestamp_type", r.timestamp_type.as_str())?;
        st.serialize_field("key", &r.key.as_deref().map(AvroBytes))?;
        st.serialize_field("value", &r.value.as_deref().map(AvroBytes))?;
        st.serialize_field("headers", &HeadersOut(&r.headers))?;
        st.end()
    }
}

fn avro_error(e: apache_avro::Error) -> Error {
    Error::component("format avro", e)
}

/// Encoder of one Avro segment: the file header, then a block each time
/// [`AvroOptions::block_bytes`] of records are buffered.
pub struct AvroEncoder {
    /// Started with the first record (or at the end): with decoded values, the envelope
    /// schema waits for the topic's reader schema.
    file: Option<Container>,
    codec: Codec,
    block: usize,
    metadata: [(&'static str, String); 3],
    typed: Option<TypedValues>,
}

/// The decoded-value field of an encoder.
struct TypedValues {
    values: Arc<AvroValues>,
    topic: String,
    /// Name of the decoded-value field.
    column: String,
    /// Records appended before the topic had a reader schema (their field is null).
    waiting: Vec<Record>,
    /// Records not fitting (`on_error: dead_letter`), with the reason.
    rejected: Vec<(Record, String)>,
    /// Bytes of `waiting` and `rejected`.
    bytes: usize,
}

impl std::fmt::Debug for AvroEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroEncoder")
            .field("buffered", &self.buffered_bytes())
            .finish_non_exhaustive()
    }
}

/// Envelope schemas with a decoded-value field, by their JSON: a [`Container`] borrows its
/// schema, so each distinct one is kept for the life of the process (one per reader
/// schema and column name).
static ENVELOPES: LazyLock<Mutex<HashMap<String, &'static Schema>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The envelope schema with the field `column: ["null", <reader schema>]`.
fn envelope_with(reader: &IdSchema, column: &str) -> Result<&'static Schema> {
    let fail = |m: String| {
        Error::config(format!(
            "avro value (as: avro): reader schema id {} cannot be embedded in the envelope schema io.ferry.KafkaRecord: {m}",
            reader.id
        ))
    };
    let reader_json = serde_json::to_value(&reader.schema).map_err(|e| fail(e.to_string()))?;
    let mut json: serde_json::Value =
        serde_json::from_str(SCHEMA_JSON).map_err(|e| fail(e.to_string()))?;
    if let Some(fields) = json.get_mut("fields").and_then(|f| f.as_array_mut()) {
        fields.push(serde_json::json!({
            "name": column,
            "type": ["null", reader_json],
            "default": null,
        }));
    }
    let key = json.to_string();
    let mut cache = ENVELOPES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = cache.get(&key) {
        return Ok(s);
    }
    let clash = |e: apache_avro::Error| {
        fail(format!(
            "{e} (its types without a namespace take io.ferry, so none may be named Header or KafkaRecord)"
        ))
    };
    let schema = Schema::parse(&json).map_err(clash)?;
    // Parsing does not see names defined twice; resolving them does.
    apache_avro::schema::ResolvedSchema::try_from(&schema).map_err(clash)?;
    let schema: &'static Schema = Box::leak(Box::new(schema));
    cache.insert(key, schema);
    Ok(schema)
}

fn bytes_value(b: &Option<Bytes>) -> Value {
    match b {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(b) => Value::Union(1, Box::new(Value::Bytes(b.to_vec()))),
    }
}

/// One record as the envelope with its decoded value, as an Avro value.
fn record_value(r: &Record, column: &str, decoded: Option<Value>) -> Value {
    let headers = r
        .headers
        .iter()
        .map(|h| {
            Value::Record(vec![
                ("key".to_string(), Value::String(h.key.clone())),
                ("value".to_string(), bytes_value(&h.value)),
            ])
        })
        .collect();
    let decoded = match decoded {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    };
    Value::Record(vec![
        ("topic".to_string(), Value::String(r.topic.to_string())),
        ("partition".to_string(), Value::Int(r.partition)),
        ("offset".to_string(), Value::Long(r.offset)),
        ("timestamp".to_string(), Value::TimestampMillis(r.timestamp)),
        (
            "timestamp_type".to_string(),
            Value::String(r.timestamp_type.as_str().to_string()),
        ),
        ("key".to_string(), bytes_value(&r.key)),
        ("value".to_string(), bytes_value(&r.value)),
        ("headers".to_string(), Value::Array(headers)),
        (column.to_string(), decoded),
    ])
}

impl AvroEncoder {
    /// An encoder for a segment of `topic`/`partition` starting at `first_offset`.
    pub fn new(options: &AvroOptions, topic: &str, partition: i32, first_offset: i64) -> Self {
        let block = usize::try_from(options.block_bytes.0)
            .unwrap_or(usize::MAX)
            .clamp(1024, 256 * 1024 * 1024);
        AvroEncoder {
            file: None,
            codec: options.codec.codec(),
            block,
            metadata: [
                ("ferry.topic", topic.to_string()),
                ("ferry.partition", partition.to_string()),
                ("ferry.first_offset", first_offset.to_string()),
            ],
            typed: None,
        }
    }

    /// Also writes each record's value decoded with `values` (`value: {as: avro}`) in the
    /// field `column` of its options.
    pub fn with_values(mut self, values: Arc<AvroValues>) -> Self {
        self.typed = Some(TypedValues {
            column: values.config().column.clone(),
            values,
            topic: self.metadata[0].1.clone(),
            waiting: Vec::new(),
            rejected: Vec::new(),
            bytes: 0,
        });
        self
    }

    /// The file, started with `schema` if there is none yet.
    fn file_for(&mut self, schema: &'static Schema) -> Result<&mut Container> {
        // Called per record: the container is looked at in place, never moved.
        Ok(match &mut self.file {
            Some(file) => file,
            slot @ None => slot.insert(Container::start(
                schema,
                self.codec,
                self.block,
                &self.metadata,
            )?),
        })
    }

    /// Appends one record (control records are skipped).
    pub fn append(&mut self, record: &Record) -> Result<()> {
        if record.is_control {
            return Ok(());
        }
        let Some(typed) = &mut self.typed else {
            return self.file_for(&SCHEMA)?.append_ser(&RecordOut(record));
        };
        let (reader, decoded) = typed.values.decode(&typed.topic, record)?;
        let settled = typed.values.settle(record, decoded)?;
        if let Some(why) = settled.rejected {
            typed.bytes += record.size_hint();
            typed.rejected.push((record.clone(), why));
        }
        if self.file.is_none() {
            let Some(reader) = reader else {
                typed.bytes += record.size_hint();
                typed.waiting.push(record.clone());
                return Ok(());
            };
            let waiting = std::mem::take(&mut typed.waiting);
            typed.bytes = typed.rejected.iter().map(|(r, _)| r.size_hint()).sum();
            let column = typed.column.clone();
            let schema = envelope_with(&reader, &column)?;
            let file = self.file_for(schema)?;
            for r in &waiting {
                file.append_value(&record_value(r, &column, None), avro_error)?;
            }
        }
        let column = self.typed.as_ref().map_or("", |t| t.column.as_str());
        let value = record_value(record, column, settled.value);
        let misfit = |e| {
            Error::invalid_data(format!(
                "avro: topic {} partition {} offset {}: the decoded value does not fit the file schema: {e}",
                record.topic, record.partition, record.offset
            ))
        };
        self.file
            .as_mut()
            .ok_or_else(|| Error::internal("avro: no file"))?
            .append_value(&value, misfit)
    }

    /// Takes the bytes written so far (header and complete blocks).
    pub fn take(&mut self) -> Bytes {
        self.file.as_mut().map_or_else(Bytes::new, Container::take)
    }

    /// Ends the file: the records still waiting for a reader schema (written without the
    /// decoded-value field) and the last block.
    fn finish_file(&mut self) -> Result<Bytes> {
        if self.file.is_none() {
            let waiting = match &mut self.typed {
                Some(t) => std::mem::take(&mut t.waiting),
                None => Vec::new(),
            };
            if !waiting.is_empty() {
                tracing::warn!(
                    "avro: the segment ends before its topic has a reader schema (no value could be decoded yet): written without the decoded-value field"
                );
            }
            let file = self.file_for(&SCHEMA)?;
            for r in &waiting {
                file.append_ser(&RecordOut(r))?;
            }
        }
        match &mut self.file {
            Some(file) => file.finish(),
            None => Ok(Bytes::new()),
        }
    }
}

impl SegmentEncoder for AvroEncoder {
    fn encode(&mut self, batch: &Batch) -> Result<Bytes> {
        for r in batch.records()?.iter() {
            self.append(r)?;
        }
        Ok(self.take())
    }

    fn finish(&mut self) -> Result<Bytes> {
        self.finish_file()
    }

    fn take_rejected(&mut self) -> Vec<(Record, String)> {
        match &mut self.typed {
            Some(t) => {
                let rejected = std::mem::take(&mut t.rejected);
                t.bytes = t.waiting.iter().map(Record::size_hint).sum();
                rejected
            }
            None => Vec::new(),
        }
    }

    fn buffered_bytes(&self) -> usize {
        self.file.as_ref().map_or(0, Container::buffered)
            + self.typed.as_ref().map_or(0, |t| t.bytes)
    }
}

/// Encodes records into a complete Avro file (control records skipped).
pub fn encode(
    options: &AvroOptions,
    topic: &str,
    partition: i32,
    first_offset: i64,
    records: &[Record],
) -> Result<Vec<u8>> {
    let mut enc = AvroEncoder::new(options, topic, partition, first_offset);
    let mut out = Vec::new();
    for r in records {
        enc.append(r)?;
        out.extend_from_slice(&enc.take());
    }
    out.extend_from_slice(&enc.finish()?);
    Ok(out)
}

fn corrupt(message: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("avro: {message}"))
}

/// Records of an Avro envelope file, one at a time (memory: one block).
pub struct AvroRecords<'r, R: Read> {
    reader: apache_avro::Reader<'r, R>,
    topic: Option<Arc<str>>,
}

impl<R: Read> std::fmt::Debug for AvroRecords<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroRecords").finish_non_exhaustive()
    }
}

impl<R: Read> AvroRecords<'_, R> {
    /// Opens an Avro file: reads its header (schema, codec, metadata).
    pub fn new(reader: R) -> Result<Self> {
        let reader = apache_avro::Reader::new(reader).map_err(corrupt)?;
        Ok(AvroRecords {
            reader,
            topic: None,
        })
    }

    /// The file's user metadata (`ferry.topic`, `ferry.partition`, `ferry.first_offset`).
    pub fn metadata(&self) -> &std::collections::HashMap<String, Vec<u8>> {
        self.reader.user_metadata()
    }

    fn topic(&mut self, name: String) -> Arc<str> {
        match &self.topic {
            Some(t) if **t == *name => t.clone(),
            _ => {
                let t: Arc<str> = Arc::from(name);
                self.topic = Some(t.clone());
                t
            }
        }
    }

    fn record(&mut self, value: Value) -> Result<Record> {
        let Value::Record(fields) = value else {
            return Err(corrupt("a datum is not a record"));
        };
        let mut rec = Record::new(Arc::from(""), 0, 0, None);
        let (mut topic, mut partition, mut offset, mut timestamp) = (None, None, None, None);
        for (name, v) in fields {
            match name.as_str() {
                "topic" => topic = Some(string(v, "topic")?),
                "partition" => partition = Some(int(v, "partition")?),
                "offset" => offset = Some(long(v, "offset")?),
                "timestamp" => timestamp = Some(long(v, "timestamp")?),
                "timestamp_type" => {
                    let s = string(v, "timestamp_type")?;
                    rec.timestamp_type = TimestampType::parse(&s)
                        .ok_or_else(|| corrupt(format!("unknown timestamp_type `{s}`")))?;
                }
                "key" => rec.key = opt_bytes(v, "key")?,
                "value" => rec.value = opt_bytes(v, "value")?,
                "headers" => rec.headers = headers(v)?,
                _ => {}
            }
        }
        let missing = |f: &str| corrupt(format!("a record has no `{f}`"));
        rec.topic = self.topic(topic.ok_or_else(|| missing("topic"))?);
        rec.partition = partition.ok_or_else(|| missing("partition"))?;
        rec.offset = offset.ok_or_else(|| missing("offset"))?;
        rec.timestamp = timestamp.ok_or_else(|| missing("timestamp"))?;
        Ok(rec)
    }
}

impl<R: Read> Iterator for AvroRecords<'_, R> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        let value = match self.reader.next()? {
            Ok(v) => v,
            Err(e) => return Some(Err(corrupt(e))),
        };
        Some(self.record(value))
    }
}

/// A union branch or the plain value.
fn unwrap_union(v: Value) -> Value {
    match v {
        Value::Union(_, inner) => *inner,
        v => v,
    }
}

fn string(v: Value, field: &str) -> Result<String> {
    match unwrap_union(v) {
        Value::String(s) | Value::Enum(_, s) => Ok(s),
        Value::Bytes(b) => {
            String::from_utf8(b).map_err(|_| corrupt(format!("`{field}` is not UTF-8")))
        }
        other => Err(corrupt(format!("`{field}` is {other:?}, not a string"))),
    }
}

fn int(v: Value, field: &str) -> Result<i32> {
    match unwrap_union(v) {
        Value::Int(i) => Ok(i),
        Value::Long(l) => {
            i32::try_from(l).map_err(|_| corrupt(format!("`{field}` {l} is out of range")))
        }
        other => Err(corrupt(format!("`{field}` is {other:?}, not an int"))),
    }
}

fn long(v: Value, field: &str) -> Result<i64> {
    match unwrap_union(v) {
        Value::Long(l) | Value::TimestampMillis(l) | Value::LocalTimestampMillis(l) => Ok(l),
        Value::Int(i) => Ok(i64::from(i)),
        other => Err(corrupt(format!("`{field}` is {other:?}, not a long"))),
    }
}

fn opt_bytes(v: Value, field: &str) -> Result<Option<Bytes>> {
    match unwrap_union(v) {
        Value::Null => Ok(None),
        Value::Bytes(b) | Value::Fixed(_, b) => Ok(Some(Bytes::from(b))),
        Value::String(s) => Ok(Some(Bytes::from(s))),
        other => Err(corrupt(format!("`{field}` is {other:?}, not bytes"))),
    }
}

fn headers(v: Value) -> Result<Vec<Header>> {
    let items = match unwrap_union(v) {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => return Err(corrupt(format!("`headers` is {other:?}, not an array"))),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Record(fields) = unwrap_union(item) else {
            return Err(corrupt("a header is not a record"));
        };
        let mut key = None;
        let mut value = None;
        for (name, v) in fields {
            match name.as_str() {
                "key" => key = Some(string(v, "headers.key")?),
                "value" => value = opt_bytes(v, "headers.value")?,
                _ => {}
            }
        }
        let key = key.ok_or_else(|| corrupt("a header has no `key`"))?;
        out.push(Header { key, value });
    }
    Ok(out)
}

/// Reads every record of an Avro envelope file (as written by [`AvroEncoder`]).
pub fn read_avro(bytes: &[u8]) -> Result<Vec<Record>> {
    AvroRecords::new(bytes)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{assert_same, control, raw_segment_batch, sample_records, segment_batch};

    fn opts(codec: AvroCodec) -> AvroOptions {
        AvroOptions {
            codec,
            ..AvroOptions::default()
        }
    }

    #[test]
    fn schema_parses_and_names_every_field() {
        let Schema::Record(r) = &*SCHEMA else {
            panic!("not a record schema");
        };
        let names: Vec<&str> = r.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "topic",
                "partition",
                "offset",
                "timestamp",
                "timestamp_type",
                "key",
                "value",
                "headers"
            ]
        );
    }

    #[test]
    fn round_trip_every_codec() {
        let records = sample_records();
        for codec in [
            AvroCodec::Null,
            AvroCodec::Deflate,
            AvroCodec::Snappy,
            AvroCodec::Zstd,
        ] {
            let bytes = encode(&opts(codec), "orders", 3, 0, &records).unwrap();
            let back = read_avro(&bytes).unwrap();
            assert_same(&back, &records);
            let r = AvroRecords::new(&bytes[..]).unwrap();
            assert_eq!(r.metadata()["ferry.topic"], b"orders");
            assert_eq!(r.metadata()["ferry.partition"], b"3");
            assert_eq!(r.metadata()["ferry.first_offset"], b"0");
        }
    }

    #[test]
    fn encoder_streams_blocks_and_skips_control_records() {
        let mut records = sample_records();
        records.insert(2, control(records[1].offset + 1));
        let options = AvroOptions {
            codec: AvroCodec::Snappy,
            block_bytes: ByteSize(1024),
        };
        let mut enc = AvroFormat::new(options).encoder("orders", 3, 0);
        let mut file = Vec::new();
        let mut outputs = 0;
        for chunk in records.chunks(2) {
            let batch = segment_batch(chunk.to_vec());
            let out = enc.encode(&batch).unwrap();
            if !out.is_empty() {
                outputs += 1;
            }
            assert!(enc.buffered_bytes() < 64 * 1024);
            file.extend_from_slice(&out);
        }
        file.extend_from_slice(&enc.finish().unwrap());
        assert!(outputs > 1, "blocks are returned while encoding");
        let want: Vec<Record> = records.iter().filter(|r| !r.is_control).cloned().collect();
        assert_same(&read_avro(&file).unwrap(), &want);
    }

    #[test]
    fn a_segments_first_batch_counts_as_buffered_until_its_block_is_written() {
        let records = sample_records();
        let options = AvroOptions {
            codec: AvroCodec::Snappy,
            block_bytes: ByteSize(1024 * 1024),
        };
        let mut enc = AvroFormat::new(options).encoder("orders", 3, 0);
        let out = enc.encode(&segment_batch(records.clone())).unwrap();
        assert!(!out.is_empty(), "the header is returned");
        let payload: usize = records
            .iter()
            .filter(|r| !r.is_control)
            .map(|r| {
                r.value.as_ref().map_or(0, |v| v.len()) + r.key.as_ref().map_or(0, |k| k.len())
            })
            .sum();
        let held = enc.buffered_bytes();
        assert!(
            held >= payload && held <= 4 * payload + 4096,
            "the block of the first batch is still buffered: {held} bytes for {payload} of keys and values"
        );
        let rest = enc.finish().unwrap();
        assert!(!rest.is_empty());
        assert_eq!(enc.buffered_bytes(), 0);
    }

    #[test]
    fn control_records_of_raw_batches_are_skipped() {
        let data: Vec<Record> = sample_records().into_iter().take(6).collect();
        let batch = raw_segment_batch(&data);
        let decoded = batch.records().unwrap().into_owned();
        assert_eq!(decoded.iter().filter(|r| r.is_control).count(), 1);
        let mut enc = AvroFormat::default().encoder("orders", 3, 0);
        let mut file = enc.encode(&batch).unwrap().to_vec();
        file.extend_from_slice(&enc.finish().unwrap());
        let want: Vec<Record> = decoded.into_iter().filter(|r| !r.is_control).collect();
        assert_eq!(want.len(), 6);
        assert_same(&read_avro(&file).unwrap(), &want);
    }

    #[test]
    fn options_deserialize_with_defaults() {
        let o: AvroOptions = serde_json::from_str(r#"{"codec": "deflate"}"#).unwrap();
        assert_eq!(o.codec, AvroCodec::Deflate);
        assert_eq!(o.block_bytes, ByteSize(1024 * 1024));
        let o: AvroOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(o, AvroOptions::default());
        assert_eq!(o.codec, AvroCodec::Snappy);
        let e = serde_json::from_str::<AvroOptions>(r#"{"codec": "lzma"}"#)
            .expect_err("lzma is not a codec")
            .to_string();
        assert!(e.contains("lzma"), "{e}");
    }

    #[test]
    fn empty_segment_is_a_valid_file() {
        let mut enc = AvroEncoder::new(&AvroOptions::default(), "t", 0, 5);
        let batch = segment_batch(vec![control(5)]);
        let mut file = enc.encode(&batch).unwrap().to_vec();
        file.extend_from_slice(&enc.finish().unwrap());
        assert!(file.starts_with(b"Obj\x01"));
        assert!(read_avro(&file).unwrap().is_empty());
    }

    const ORDER: &str = r#"{"type": "record", "name": "Order", "namespace": "shop", "fields": [
        {"name": "id", "type": "long"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "note", "type": ["null", "string"], "default": null}
    ]}"#;

    fn order(id: i64) -> Value {
        Value::Record(vec![
            ("id".into(), Value::Long(id)),
            (
                "tags".into(),
                Value::Array(vec![Value::String(format!("t{id}"))]),
            ),
            (
                "note".into(),
                Value::Union(1, Box::new(Value::String("n".into()))),
            ),
        ])
    }

    fn typed_format(dir: &std::path::Path, on_error: &str) -> AvroFormat {
        let config: AvroFormatOptions = serde_json::from_value(serde_json::json!({
            "codec": "null",
            "value": {"as": "avro", "schemas": dir, "on_error": on_error}
        }))
        .unwrap();
        config.validate().unwrap();
        AvroFormat::from_config(&config)
    }

    fn encode_segment(format: &AvroFormat, records: &[Record]) -> (Vec<u8>, Vec<(Record, String)>) {
        let mut enc = format.encoder("orders", 3, 0);
        let mut file = enc
            .encode(&segment_batch(records.to_vec()))
            .unwrap()
            .to_vec();
        file.extend_from_slice(&enc.finish().unwrap());
        (file, enc.take_rejected())
    }

    fn field_names(file: &[u8]) -> Vec<String> {
        let reader = apache_avro::Reader::new(file).unwrap();
        let Schema::Record(r) = reader.writer_schema() else {
            panic!("not a record");
        };
        r.fields.iter().map(|f| f.name.clone()).collect()
    }

    #[test]
    fn decoded_values_are_a_native_field_and_files_still_restore() {
        use crate::testdata::{schema_dir, value_record, wire};
        let schema = Schema::parse_str(ORDER).unwrap();
        let dir = schema_dir(&[(4, ORDER)]);
        let records = vec![
            value_record(0, None),
            value_record(1, Some(b"not avro".to_vec())),
            value_record(2, Some(wire(4, &schema, order(2)))),
            value_record(3, Some(wire(4, &schema, order(3)))),
        ];
        let (file, rejected) = encode_segment(&typed_format(dir.path(), "dead_letter"), &records);
        assert_same(&read_avro(&file).unwrap(), &records);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0.offset, 1);
        assert!(rejected[0].1.contains("magic byte"), "{}", rejected[0].1);
        assert_eq!(
            field_names(&file).last().map(String::as_str),
            Some("value_avro")
        );
        let values: Vec<Value> = apache_avro::Reader::new(&file[..])
            .unwrap()
            .map(|v| match v.unwrap() {
                Value::Record(fields) => fields
                    .into_iter()
                    .find(|(n, _)| n == "value_avro")
                    .map(|(_, v)| v)
                    .unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        let null = Value::Union(0, Box::new(Value::Null));
        assert_eq!(values[0], null, "a tombstone");
        assert_eq!(values[1], null, "a rejected value");
        assert_eq!(values[2], Value::Union(1, Box::new(order(2))));
        assert_eq!(values[3], Value::Union(1, Box::new(order(3))));

        // A segment that never had a decodable value has no such field, and still reads.
        let bad = vec![value_record(0, None), value_record(1, Some(b"x".to_vec()))];
        let (file, _) = encode_segment(&typed_format(dir.path(), "null"), &bad);
        assert_same(&read_avro(&file).unwrap(), &bad);
        assert!(!field_names(&file).contains(&"value_avro".to_string()));
    }

    #[test]
    fn reader_schemas_that_clash_with_the_envelope_are_clear_errors() {
        use crate::testdata::{schema_dir, value_record, wire};
        let text =
            r#"{"type": "record", "name": "Header", "fields": [{"name": "id", "type": "long"}]}"#;
        let schema = Schema::parse_str(text).unwrap();
        let dir = schema_dir(&[(6, text)]);
        let format = typed_format(dir.path(), "null");
        let mut enc = format.encoder("orders", 3, 0);
        let value = Value::Record(vec![("id".into(), Value::Long(1))]);
        let batch = segment_batch(vec![value_record(0, Some(wire(6, &schema, value)))]);
        let e = enc.encode(&batch).unwrap_err().to_string();
        assert!(
            e.contains("reader schema id 6 cannot be embedded") && e.contains("Header"),
            "{e}"
        );
    }

    #[test]
    fn value_options_are_checked() {
        let check = |v: serde_json::Value| {
            serde_json::from_value::<AvroFormatOptions>(v)
                .map_err(|e| e.to_string())
                .and_then(|o| o.validate().map_err(|e| e.to_string()))
        };
        check(serde_json::json!({"value": {"as": "avro", "schemas": "/s"}})).unwrap();
        let e = check(serde_json::json!({"value": {"as": "json", "schema": []}})).unwrap_err();
        assert!(e.contains("json"), "{e}");
        let e = check(serde_json::json!({"value": {"as": "avro"}})).unwrap_err();
        assert!(e.contains("registry"), "{e}");
        let e = check(
            serde_json::json!({"value": {"as": "avro", "schemas": "/s", "column": "headers"}}),
        )
        .unwrap_err();
        assert!(e.contains("column: headers"), "{e}");
        let e =
            check(serde_json::json!({"value": {"as": "avro", "schemas": "/s", "column": "a-b"}}))
                .unwrap_err();
        assert!(e.contains("not an Avro field name"), "{e}");
        let e = check(serde_json::json!({"block_bytes": 0})).unwrap_err();
        assert!(e.contains("block_bytes"), "{e}");
        let o: AvroFormatOptions = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(o, AvroFormatOptions::default());
        assert_eq!(o.options(), AvroOptions::default());
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let bytes = encode(&AvroOptions::default(), "t", 0, 0, &sample_records()).unwrap();
        assert!(matches!(read_avro(b"nope"), Err(Error::Corrupt(_))));
        let cut = &bytes[..bytes.len() - 20];
        assert!(matches!(read_avro(cut), Err(Error::Corrupt(_))));
    }
}
