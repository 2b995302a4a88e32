//! The `parquet` format: the Kafka record envelope as Parquet columns, for data lakes
//! (DuckDB, Spark, pyarrow, Trino, …).
//!
//! | column           | Arrow type                                        | Parquet             |
//! |------------------|---------------------------------------------------|---------------------|
//! | `topic`          | `Utf8`, not null                                  | `BYTE_ARRAY (STRING)` |
//! | `partition`      | `Int32`, not null                                 | `INT32`             |
//! | `offset`         | `Int64`, not null                                 | `INT64`             |
//! | `timestamp`      | `Timestamp(Millisecond, "UTC")`, not null         | `INT64 (TIMESTAMP(MILLIS, UTC))` |
//! | `timestamp_type` | `Utf8`, not null: `create` or `log_append`        | `BYTE_ARRAY (STRING)` |
//! | `key`            | `Binary`, nullable                                | `BYTE_ARRAY`        |
//! | `value`          | `Binary`, nullable                                | `BYTE_ARRAY`        |
//! | `headers`        | `List<Struct<key: Utf8 not null, value: Binary>>`, not null | 3-level `LIST` |
//!
//! A null key/value/header value is a null, an empty one is an empty binary: the two are
//! never confused. Headers keep their order, repeats and nulls. Control records
//! (transaction markers) are not written: they are not data.
//!
//! Files are compressed with zstd (set explicitly: the Parquet default is uncompressed),
//! have page statistics (column and offset indexes) and carry the footer key-value metadata
//! `ferry.topic`, `ferry.partition`, `ferry.first_offset` and `ferry.next_offset` (the offset
//! span the segment covers, as decimal strings).
//!
//! Row groups are bounded by bytes: a row group is closed once the records it holds reach
//! [`ParquetOptions::row_group_bytes`] (counted as [`Record::size_hint`], capped at
//! [`MAX_ROW_GROUP_BYTES`] whatever is asked, and shrunk so that the open encoders of one
//! format buffer at most [`ROW_GROUP_BUDGET_BYTES`] together: an export's memory stays
//! bounded however many partitions it writes at once). The
//! encoder writes into an in-memory buffer that it drains after each row group, so bytes
//! go out as row groups complete; the footer comes with [`SegmentEncoder::finish`].
//!
//! Optionally ([`ParquetOptions::value`]) values are also decoded into typed columns of a
//! struct column beside the envelope: JSON values (`value_json` by default, with given or
//! inferred columns, see [`json`])
//! or Confluent Schema-Registry Avro values (`value_avro` by default, see [`avro`] and
//! [`crate::confluent`]).
//!
//! [`read_parquet`] and [`ParquetRecords`] read such files back into [`Record`]s (extra
//! columns are ignored).

use crate::confluent::AvroValues;
use crate::segment::{SegmentEncoder, SegmentFormat};
use ::parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use ::parquet::arrow::ArrowWriter;
use ::parquet::basic::{Compression, ZstdLevel};
use ::parquet::file::metadata::KeyValue;
use ::parquet::file::properties::{EnabledStatistics, WriterProperties};
use ::parquet::schema::types::ColumnPath;
use arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, Int32Array, Int64Array, ListArray, StringArray,
    StringBuilder, StructArray, TimestampMillisecondArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use avro::AvroColumns;
use bytes::Bytes;
use ferry_core::{Batch, ByteSize, Error, Header, Record, Result, TimestampType};
use json::infer::JsonInference;
use json::{JsonTyped, ValueColumns};
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

pub mod avro;
pub mod json;

/// File extension of Parquet segment objects.
pub const EXTENSION: &str = "parquet";

/// Name of the format in pipeline files and manifests.
pub const NAME: &str = "parquet";

/// Upper bound of the bytes buffered for one row group, whatever
/// [`ParquetOptions::row_group_bytes`] asks for.
pub const MAX_ROW_GROUP_BYTES: u64 = 32 * 1024 * 1024;

/// Row-group bytes all the open encoders of one [`ParquetFormat`] buffer together at most:
/// with many partitions open, each one's row groups get smaller (down to
/// [`MIN_ROW_GROUP_BYTES`]) so the export's memory stays bounded whatever is asked.
pub const ROW_GROUP_BUDGET_BYTES: usize = 48 * 1024 * 1024;

/// Smallest row group the budget shrinks an encoder's to.
pub const MIN_ROW_GROUP_BYTES: usize = 1024 * 1024;

/// Records are handed to the Parquet writer in Arrow batches of at most this many bytes.
const CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Footer key of the topic.
pub const META_TOPIC: &str = "ferry.topic";
/// Footer key of the partition.
pub const META_PARTITION: &str = "ferry.partition";
/// Footer key of the first offset the file covers.
pub const META_FIRST_OFFSET: &str = "ferry.first_offset";
/// Footer key of the offset after the last one the file covers.
pub const META_NEXT_OFFSET: &str = "ferry.next_offset";

/// Compression of Parquet pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParquetCompression {
    /// No compression.
    None,
    /// Snappy.
    Snappy,
    /// Zstandard (the default), at [`ParquetOptions::compression_level`].
    #[default]
    Zstd,
}

// One encoder per open partition buffers a row group: these bounds keep an export of many
// partitions within a few hundred MiB.
fn default_row_group_bytes() -> ByteSize {
    ByteSize(16 * 1024 * 1024)
}

// Level 1 wrote faster and (on Kafka payloads measured here) no larger than level 3.
fn default_level() -> i32 {
    1
}

/// Options of the `parquet` format.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetOptions {
    /// Close a row group once its records reach this many bytes (default 16MiB; at most
    /// 32MiB are buffered whatever is asked).
    #[serde(default = "default_row_group_bytes")]
    pub row_group_bytes: ByteSize,
    /// Page compression: `zstd` (default), `snappy` or `none`.
    #[serde(default)]
    pub compression: ParquetCompression,
    /// zstd level, 1 to 22 (default 1).
    #[serde(default = "default_level")]
    pub compression_level: i32,
    /// Typed columns decoded from the values (`{as: json, schema: [...]}`, or `{as: json}`
    /// to infer the columns from the first values, see [`json`]; or `{as: avro, registry:
    /// {url}}`, see [`avro`]), written in a struct column beside the envelope.
    #[serde(default)]
    pub value: Option<ValueColumns>,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            row_group_bytes: default_row_group_bytes(),
            compression: ParquetCompression::default(),
            compression_level: default_level(),
            value: None,
        }
    }
}

impl ParquetOptions {
    /// Checks the options (the zstd level).
    pub fn validate(&self) -> Result<()> {
        if self.compression == ParquetCompression::Zstd {
            ZstdLevel::try_new(self.compression_level).map_err(|e| {
                Error::config(format!(
                    "parquet compression_level {}: {e}",
                    self.compression_level
                ))
            })?;
        }
        if self.row_group_bytes.0 == 0 {
            return Err(Error::config("parquet row_group_bytes must be > 0"));
        }
        if let Some(v) = &self.value {
            v.validate()?;
        }
        Ok(())
    }

    /// The Arrow schema of the files as far as the options tell: the envelope, plus the
    /// typed JSON columns if given. Inferred JSON columns ([`json`]) and typed Avro
    /// columns (they depend on the reader schema, [`avro`]) are known only while encoding.
    pub fn schema(&self) -> SchemaRef {
        match &self.value {
            Some(ValueColumns::Json(v)) => match v.field() {
                Some(f) => with_typed(f),
                None => SCHEMA.clone(),
            },
            None | Some(ValueColumns::Avro(_)) => SCHEMA.clone(),
        }
    }

    /// The row group size in bytes the encoder uses: `row_group_bytes` capped at
    /// [`MAX_ROW_GROUP_BYTES`].
    pub fn effective_row_group_bytes(&self) -> usize {
        self.row_group_bytes.0.clamp(1, MAX_ROW_GROUP_BYTES) as usize
    }

    fn compression(&self) -> Compression {
        match self.compression {
            ParquetCompression::None => Compression::UNCOMPRESSED,
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::Zstd => {
                Compression::ZSTD(ZstdLevel::try_new(self.compression_level).unwrap_or_default())
            }
        }
    }

    /// Writer properties: compression, page statistics, the footer metadata known up front.
    fn properties(&self, topic: &str, partition: i32, first_offset: i64) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(self.compression())
            .set_statistics_enabled(EnabledStatistics::Page)
            // Row groups are closed by this encoder, by bytes.
            .set_max_row_group_row_count(None)
            .set_max_row_group_bytes(None)
            // Values are rarely repeated: skip the dictionary attempt.
            .set_column_dictionary_enabled(ColumnPath::from("value"), false)
            .set_key_value_metadata(Some(vec![
                KeyValue::new(META_TOPIC.to_string(), topic.to_string()),
                KeyValue::new(META_PARTITION.to_string(), partition.to_string()),
                KeyValue::new(META_FIRST_OFFSET.to_string(), first_offset.to_string()),
            ]))
            .build()
    }
}

/// The envelope schema plus a typed struct column.
fn with_typed(field: Field) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = SCHEMA.fields().iter().cloned().collect();
    fields.push(Arc::new(field));
    Arc::new(Schema::new(fields))
}

fn header_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Binary, true),
    ])
}

fn header_item() -> Arc<Field> {
    Arc::new(Field::new(
        "element",
        DataType::Struct(header_fields()),
        false,
    ))
}

/// The Arrow schema of the envelope.
pub static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("timestamp_type", DataType::Utf8, false),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
        Field::new("headers", DataType::List(header_item()), false),
    ]))
});

/// The `parquet` format.
#[derive(Debug, Clone, Default)]
pub struct ParquetFormat {
    /// Its options.
    pub options: ParquetOptions,
    /// The decoding state of `value: {as: avro}` shared by its encoders.
    values: Option<Arc<AvroValues>>,
    /// The inferred columns of `value: {as: json}` without `schema`, shared by its
    /// encoders (one set of columns per topic for the run).
    inference: Option<Arc<JsonInference>>,
    /// Encoders of this format alive now (they share [`ROW_GROUP_BUDGET_BYTES`]).
    open: Arc<AtomicUsize>,
}

impl ParquetFormat {
    /// The format with these options (see [`ParquetOptions::validate`]).
    pub fn new(options: ParquetOptions) -> Self {
        let values = match &options.value {
            Some(ValueColumns::Avro(a)) => Some(Arc::new(AvroValues::new(a.clone()))),
            _ => None,
        };
        let inference = match &options.value {
            Some(ValueColumns::Json(j)) if j.schema.is_none() => {
                Some(Arc::new(JsonInference::new(j)))
            }
            _ => None,
        };
        ParquetFormat {
            options,
            values,
            inference,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }
}

#[async_trait::async_trait]
impl SegmentFormat for ParquetFormat {
    fn kind(&self) -> crate::kind::FormatKind {
        crate::kind::FormatKind::Parquet
    }

    fn encoder(&self, topic: &str, partition: i32, first_offset: i64) -> Box<dyn SegmentEncoder> {
        Box::new(ParquetEncoder::with_shared(
            &self.options,
            Shared {
                avro: self.values.clone(),
                json: self.inference.clone(),
                open: Some(self.open.clone()),
            },
            topic,
            partition,
            first_offset,
        ))
    }

    async fn prepare(&self, batch: &Batch) -> Result<()> {
        match &self.values {
            Some(v) => v.prepare(batch).await,
            None => Ok(()),
        }
    }
}

/// The builders of the typed struct column.
enum Typed {
    Json(Box<JsonTyped>),
    Avro(Box<AvroColumns>),
}

/// State shared by the encoders of a format (each encoder makes its own without one).
#[derive(Default)]
struct Shared {
    /// Decoding state of `value: {as: avro}`.
    avro: Option<Arc<AvroValues>>,
    /// Inferred columns of `value: {as: json}` without `schema`.
    json: Option<Arc<JsonInference>>,
    /// The format's count of open encoders.
    open: Option<Arc<AtomicUsize>>,
}

fn arrow_error(e: arrow::error::ArrowError) -> Error {
    Error::component("format parquet", e)
}

fn parquet_error(e: ::parquet::errors::ParquetError) -> Error {
    Error::component("format parquet", e)
}

/// Column builders of the records not yet handed to the Parquet writer.
struct Columns {
    topic: StringBuilder,
    partition: Vec<i32>,
    offset: Vec<i64>,
    timestamp: Vec<i64>,
    timestamp_type: StringBuilder,
    key: BinaryBuilder,
    value: BinaryBuilder,
    header_offsets: Vec<i32>,
    header_keys: StringBuilder,
    header_values: BinaryBuilder,
    typed: Option<Typed>,
    bytes: usize,
    /// Bytes the builders were given room for by [`Columns::presize`] (0 after
    /// [`Columns::finish`]): held whether or not records fill them, so counted as buffered.
    reserved: usize,
}

impl Columns {
    fn new(options: &ParquetOptions, shared: Shared, topic: &str) -> Self {
        let typed = match &options.value {
            None => None,
            Some(ValueColumns::Json(j)) => {
                Some(Typed::Json(Box::new(JsonTyped::new(j, shared.json, topic))))
            }
            Some(ValueColumns::Avro(a)) => {
                let values = shared
                    .avro
                    .unwrap_or_else(|| Arc::new(AvroValues::new(a.clone())));
                Some(Typed::Avro(Box::new(AvroColumns::new(values, topic))))
            }
        };
        // Empty, not `new()` (room for 1,024 values and offsets each): an encoder is
        // made for every open segment, and six such builders were 30 KiB of each of
        // thousands (heaptrack: 140 MB of a 6,000-partition export), uncounted.
        Columns {
            topic: StringBuilder::with_capacity(0, 0),
            partition: Vec::new(),
            offset: Vec::new(),
            timestamp: Vec::new(),
            timestamp_type: StringBuilder::with_capacity(0, 0),
            key: BinaryBuilder::with_capacity(0, 0),
            value: BinaryBuilder::with_capacity(0, 0),
            header_offsets: vec![0],
            header_keys: StringBuilder::with_capacity(0, 0),
            header_values: BinaryBuilder::with_capacity(0, 0),
            typed,
            bytes: 0,
            reserved: 0,
        }
    }

    fn len(&self) -> usize {
        self.offset.len()
    }

    /// Name of the typed struct column, if any.
    fn typed_column(&self) -> &str {
        match &self.typed {
            None => "",
            Some(Typed::Json(j)) => j.column(),
            Some(Typed::Avro(a)) => a.column(),
        }
    }

    /// Whether the columns' schema is known (typed Avro columns wait for the topic's
    /// reader schema, until then every row's struct is null; inferred JSON columns wait
    /// for the topic's sample, until then rows are buffered).
    fn ready(&self) -> bool {
        match &self.typed {
            Some(Typed::Avro(a)) => !a.is_pending(),
            Some(Typed::Json(j)) => !j.is_pending(),
            None => true,
        }
    }

    /// Whether the typed columns wait for a topic's Avro reader schema.
    fn avro_pending(&self) -> bool {
        matches!(&self.typed, Some(Typed::Avro(a)) if a.is_pending())
    }

    /// At the end of a segment: fixes inferred JSON columns from what the sample holds.
    fn settle(&mut self) -> Result<()> {
        match &mut self.typed {
            Some(Typed::Json(j)) => j.settle(),
            _ => Ok(()),
        }
    }

    /// Records rejected by `on_error: dead_letter` for rows buffered earlier (inferred
    /// JSON columns), with the reasons.
    fn take_rejected(&mut self) -> Vec<(Record, String)> {
        match &mut self.typed {
            Some(Typed::Json(j)) => j.take_rejected(),
            _ => Vec::new(),
        }
    }

    /// Bytes the typed columns hold beyond `bytes` (buffered JSON values).
    fn typed_buffered_bytes(&self) -> usize {
        match &self.typed {
            Some(Typed::Json(j)) => j.buffered_bytes(),
            _ => 0,
        }
    }

    /// The schema of the batches [`Columns::finish`] returns now.
    fn schema(&self) -> SchemaRef {
        let field = match &self.typed {
            None => None,
            Some(Typed::Json(j)) => j.field(),
            Some(Typed::Avro(a)) => a.field(),
        };
        match field {
            Some(f) => with_typed(f),
            None => SCHEMA.clone(),
        }
    }

    /// Buffers one record; returns why its value does not fit the typed columns when
    /// `on_error: dead_letter` rejects it.
    fn push(&mut self, r: &Record) -> Result<Option<String>> {
        let rejected = match &mut self.typed {
            Some(Typed::Json(json)) => json.push(r)?,
            Some(Typed::Avro(avro)) => avro.push(r)?,
            None => None,
        };
        self.topic.append_value(&*r.topic);
        self.partition.push(r.partition);
        self.offset.push(r.offset);
        self.timestamp.push(r.timestamp);
        self.timestamp_type.append_value(r.timestamp_type.as_str());
        self.key.append_option(r.key.as_deref());
        self.value.append_option(r.value.as_deref());
        for h in &r.headers {
            self.header_keys.append_value(&h.key);
            self.header_values.append_option(h.value.as_deref());
        }
        let last = self.header_offsets.last().copied().unwrap_or(0);
        let count = i32::try_from(r.headers.len())
            .ok()
            .and_then(|n| last.checked_add(n))
            .ok_or_else(|| Error::internal("parquet: too many headers in one batch"))?;
        self.header_offsets.push(count);
        self.bytes += r.size_hint();
        Ok(rejected)
    }

    /// The buffered records as an Arrow batch; the builders start over (empty: see
    /// [`Columns::presize`] for the chunks of a segment).
    fn finish(&mut self) -> Result<RecordBatch> {
        let header_offsets = std::mem::replace(&mut self.header_offsets, vec![0]);
        let headers = StructArray::try_new(
            header_fields(),
            vec![
                Arc::new(self.header_keys.finish()) as ArrayRef,
                Arc::new(self.header_values.finish()),
            ],
            None,
        )
        .map_err(arrow_error)?;
        let headers = ListArray::try_new(
            header_item(),
            OffsetBuffer::new(header_offsets.into()),
            Arc::new(headers),
            None,
        )
        .map_err(arrow_error)?;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.topic.finish()),
            Arc::new(Int32Array::from(std::mem::take(&mut self.partition))),
            Arc::new(Int64Array::from(std::mem::take(&mut self.offset))),
            Arc::new(
                TimestampMillisecondArray::from(std::mem::take(&mut self.timestamp))
                    .with_timezone("UTC"),
            ),
            Arc::new(self.timestamp_type.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.value.finish()),
            Arc::new(headers),
        ];
        let schema = self.schema();
        match &mut self.typed {
            Some(Typed::Json(json)) => columns.extend(json.finish()?),
            Some(Typed::Avro(avro)) => columns.extend(avro.finish()?),
            None => {}
        }
        self.bytes = 0;
        self.reserved = 0;
        RecordBatch::try_new(schema, columns).map_err(arrow_error)
    }

    /// Gives the (just emptied) builders room for `size` up front. Chunks of one
    /// partition are alike (they close at the same byte bound), so the next one fills this
    /// room instead of regrowing every buffer by doubling from empty: the export profile
    /// (benches/results/profile-export-2026-12-06.md) showed those regrowth copies and the
    /// fresh pages they fault in. The room is what the chunk just held, at most
    /// [`CHUNK_BYTES`] per column (chunks close at that bound or at the smaller row-group
    /// share of many open partitions). It is counted as buffered ([`Columns::reserved`]):
    /// untouched pages are not resident at first, but malloc hands freed, touched memory
    /// out again, so with thousands of open partitions the room did become resident
    /// (heaptrack of a 6,000-partition export: 120 MB of it at the peak).
    fn presize(&mut self, size: ChunkSize) {
        let rows = size.rows;
        // Fixed-width columns and the offsets of the variable-length ones: about 40 bytes
        // a row.
        self.reserved = rows * 40 + size.topic + size.timestamp_type + size.key + size.value;
        self.topic = StringBuilder::with_capacity(rows, size.topic);
        self.partition = Vec::with_capacity(rows);
        self.offset = Vec::with_capacity(rows);
        self.timestamp = Vec::with_capacity(rows);
        self.timestamp_type = StringBuilder::with_capacity(rows, size.timestamp_type);
        self.key = BinaryBuilder::with_capacity(rows, size.key);
        self.value = BinaryBuilder::with_capacity(rows, size.value);
        self.header_offsets.reserve(rows);
    }
}

/// What a finished chunk of [`Columns`] held: rows and the bytes of its variable-length
/// columns.
#[derive(Debug, Clone, Copy)]
struct ChunkSize {
    rows: usize,
    topic: usize,
    timestamp_type: usize,
    key: usize,
    value: usize,
}

impl ChunkSize {
    /// The size of `columns`, each figure capped at [`CHUNK_BYTES`] (a chunk held back
    /// for a typed column's schema can be larger than chunks ever are after it).
    fn of(columns: &Columns) -> Self {
        let cap = |n: usize| n.min(CHUNK_BYTES);
        ChunkSize {
            rows: cap(columns.len()),
            topic: cap(columns.topic.values_slice().len()),
            timestamp_type: cap(columns.timestamp_type.values_slice().len()),
            key: cap(columns.key.values_slice().len()),
            value: cap(columns.value.values_slice().len()),
        }
    }
}

/// Encoder of one Parquet segment: row groups closed by bytes, drained as they complete.
pub struct ParquetEncoder {
    /// In a mutex only to be `Sync` (the Parquet writer is `Send` only); `&mut self`
    /// methods reach it without locking. Made with the first Arrow batch written (its
    /// schema is then known: typed Avro columns wait for the topic's reader schema).
    writer: Mutex<Option<ArrowWriter<Vec<u8>>>>,
    props: WriterProperties,
    columns: Columns,
    /// Record bytes in the open row group (handed to the writer or still in `columns`).
    row_group_bytes: usize,
    /// The row group size asked for (capped at [`MAX_ROW_GROUP_BYTES`]); see
    /// [`ParquetEncoder::limit`].
    limit: usize,
    /// Encoders open alongside this one (itself included).
    open: Arc<AtomicUsize>,
    next_offset: Option<i64>,
    finished: bool,
    /// Records whose values did not fit the typed columns (`on_error: dead_letter`), with
    /// the reason, not yet taken.
    rejected: Vec<(Record, String)>,
    /// Bytes of `rejected` (for memory accounting).
    rejected_bytes: usize,
}

impl std::fmt::Debug for ParquetEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetEncoder")
            .field("row_group_bytes", &self.row_group_bytes)
            .field("limit", &self.limit)
            .field("next_offset", &self.next_offset)
            .finish_non_exhaustive()
    }
}

impl Drop for ParquetEncoder {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ParquetEncoder {
    /// An encoder for a segment of `topic`/`partition` starting at `first_offset`. With
    /// `value: {as: avro}` it has its own decoding state, so only `schemas:` files give it
    /// writer schemas ([`ParquetFormat::encoder`] shares the format's, which
    /// [`SegmentFormat::prepare`] fills from the registry). With `value: {as: json}`
    /// without `schema` it infers the columns alone (the format's encoders share one
    /// inference per topic).
    pub fn new(options: &ParquetOptions, topic: &str, partition: i32, first_offset: i64) -> Self {
        Self::with_shared(options, Shared::default(), topic, partition, first_offset)
    }

    fn with_shared(
        options: &ParquetOptions,
        shared: Shared,
        topic: &str,
        partition: i32,
        first_offset: i64,
    ) -> Self {
        let open = shared
            .open
            .clone()
            .unwrap_or_else(|| Arc::new(AtomicUsize::new(0)));
        open.fetch_add(1, Ordering::Relaxed);
        ParquetEncoder {
            writer: Mutex::new(None),
            props: options.properties(topic, partition, first_offset),
            columns: Columns::new(options, shared, topic),
            row_group_bytes: 0,
            limit: options.effective_row_group_bytes(),
            open,
            next_offset: None,
            finished: false,
            rejected: Vec::new(),
            rejected_bytes: 0,
        }
    }

    /// Appends one record (control records are skipped).
    pub fn append(&mut self, record: &Record) -> Result<()> {
        if self.finished {
            return Err(Error::internal("parquet: encoder already finished"));
        }
        if record.is_control {
            return Ok(());
        }
        let before = self.columns.bytes;
        let rejected = self.columns.push(record)?;
        self.take_typed_rejected();
        if let Some(reason) = rejected {
            self.rejected_bytes += record.size_hint();
            self.rejected.push((record.clone(), reason));
        }
        self.row_group_bytes += self.columns.bytes - before;
        if !self.columns.ready() {
            // Buffered until the typed columns' schema is known (or the segment ends).
            return Ok(());
        }
        let limit = self.limit();
        if self.row_group_bytes >= limit {
            self.write_columns(true)?;
            if let Some(w) = self.writer() {
                w.flush().map_err(parquet_error)?;
            }
            self.row_group_bytes = 0;
        } else if self.columns.bytes >= CHUNK_BYTES.min(limit) {
            self.write_columns(true)?;
        }
        Ok(())
    }

    /// The row group size now: the one asked for, or this encoder's share of
    /// [`ROW_GROUP_BUDGET_BYTES`] when that is smaller (never under [`MIN_ROW_GROUP_BYTES`]).
    fn limit(&self) -> usize {
        let open = self.open.load(Ordering::Relaxed).max(1);
        self.limit
            .min((ROW_GROUP_BUDGET_BYTES / open).max(MIN_ROW_GROUP_BYTES))
    }

    /// Moves the typed columns' rejections of earlier rows to `rejected`.
    fn take_typed_rejected(&mut self) {
        for (r, reason) in self.columns.take_rejected() {
            self.rejected_bytes += r.size_hint();
            self.rejected.push((r, reason));
        }
    }

    /// Sets the offset after the last one the segment covers (footer `ferry.next_offset`);
    /// by default the offset after the last record appended.
    pub fn set_next_offset(&mut self, next_offset: i64) {
        self.next_offset = Some(self.next_offset.map_or(next_offset, |n| n.max(next_offset)));
    }

    fn writer(&mut self) -> Option<&mut ArrowWriter<Vec<u8>>> {
        self.writer
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
    }

    /// The writer, made with `schema` if there is none yet.
    fn writer_for(&mut self, schema: SchemaRef) -> Result<&mut ArrowWriter<Vec<u8>>> {
        let slot = self.writer.get_mut().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            let w = ArrowWriter::try_new(Vec::new(), schema, Some(self.props.clone()))
                .map_err(parquet_error)?;
            *slot = Some(w);
        }
        slot.as_mut()
            .ok_or_else(|| Error::internal("parquet: no writer"))
    }

    /// Hands the buffered columns to the writer. `more`: records follow in this segment,
    /// so the builders are sized for a chunk like this one ([`Columns::presize`]); not at
    /// the segment's end, where the room would go unused.
    fn write_columns(&mut self, more: bool) -> Result<()> {
        if self.columns.len() == 0 {
            return Ok(());
        }
        let next = more.then(|| ChunkSize::of(&self.columns));
        let batch = self.columns.finish()?;
        if let Some(size) = next {
            self.columns.presize(size);
        }
        self.writer_for(batch.schema())?
            .write(&batch)
            .map_err(parquet_error)
    }

    /// Takes the records rejected so far by `on_error: dead_letter`, with their reasons.
    pub fn take_rejected(&mut self) -> Vec<(Record, String)> {
        self.rejected_bytes = 0;
        std::mem::take(&mut self.rejected)
    }

    /// Takes the bytes written so far (complete row groups).
    pub fn take(&mut self) -> Result<Bytes> {
        let Some(w) = self.writer() else {
            return Ok(Bytes::new());
        };
        w.sync()
            .map_err(|e| Error::internal(format!("parquet: {e}")))?;
        Ok(Bytes::from(std::mem::take(w.inner_mut())))
    }

    /// Writes what is buffered as a last row group and the footer; returns the rest of the
    /// file.
    pub fn finish_file(&mut self) -> Result<Bytes> {
        if self.finished {
            return Ok(Bytes::new());
        }
        self.columns.settle()?;
        self.take_typed_rejected();
        if self.columns.avro_pending() {
            tracing::warn!(
                column = self.columns.typed_column(),
                "parquet: the segment ends before its topic has a reader schema (no value could be decoded yet): written without the typed column"
            );
        }
        self.write_columns(false)?;
        let schema = self.columns.schema();
        let next = self.next_offset;
        let w = self.writer_for(schema)?;
        if let Some(next) = next {
            w.append_key_value_metadata(KeyValue::new(
                META_NEXT_OFFSET.to_string(),
                next.to_string(),
            ));
        }
        w.finish().map_err(parquet_error)?;
        self.finished = true;
        self.row_group_bytes = 0;
        self.take()
    }
}

impl SegmentEncoder for ParquetEncoder {
    fn encode(&mut self, batch: &Batch) -> Result<Bytes> {
        for r in batch.records()?.iter() {
            self.append(r)?;
        }
        self.set_next_offset(batch.next_offset);
        self.take()
    }

    fn finish(&mut self) -> Result<Bytes> {
        self.finish_file()
    }

    fn take_rejected(&mut self) -> Vec<(Record, String)> {
        ParquetEncoder::take_rejected(self)
    }

    fn buffered_bytes(&self) -> usize {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let in_writer = writer
            .as_ref()
            .map_or(0, |w| w.memory_size() + w.inner().len());
        self.columns.bytes.max(self.columns.reserved)
            + self.columns.typed_buffered_bytes()
            + in_writer
            + self.rejected_bytes
    }
}

/// The records as one Arrow batch of the envelope columns ([`SCHEMA`]), control records
/// skipped: the columns the `iceberg` sink writes, the same as this format's.
pub fn envelope_batch(records: &[Record]) -> Result<RecordBatch> {
    let mut columns = Columns::new(&ParquetOptions::default(), Shared::default(), "");
    for r in records.iter().filter(|r| !r.is_control) {
        columns.push(r)?;
    }
    columns.finish()
}

/// Encodes records into a complete Parquet file (control records skipped); the footer's
/// `ferry.next_offset` is the offset after the last record.
pub fn encode(
    options: &ParquetOptions,
    topic: &str,
    partition: i32,
    first_offset: i64,
    records: &[Record],
) -> Result<Vec<u8>> {
    let mut enc = ParquetEncoder::new(options, topic, partition, first_offset);
    let mut out = Vec::new();
    for r in records {
        enc.append(r)?;
        enc.set_next_offset(r.offset + 1);
        out.extend_from_slice(&enc.take()?);
    }
    if records.is_empty() {
        enc.set_next_offset(first_offset);
    }
    out.extend_from_slice(&enc.finish_file()?);
    Ok(out)
}

fn corrupt(message: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("parquet: {message}"))
}

/// Records of a Parquet envelope file, one Arrow batch (8192 rows) in memory at a time.
pub struct ParquetRecords {
    reader: ParquetRecordBatchReader,
    pending: VecDeque<Record>,
    metadata: Vec<(String, String)>,
    topic: Option<Arc<str>>,
}

impl std::fmt::Debug for ParquetRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetRecords")
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

impl ParquetRecords {
    /// Opens a Parquet file held in memory (reads its footer).
    pub fn new(bytes: Bytes) -> Result<Self> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(corrupt)?;
        let metadata = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let reader = builder.with_batch_size(8192).build().map_err(corrupt)?;
        Ok(ParquetRecords {
            reader,
            pending: VecDeque::new(),
            metadata,
            topic: None,
        })
    }

    /// The footer's key-value metadata (`ferry.topic`, `ferry.partition`,
    /// `ferry.first_offset`, `ferry.next_offset`, and the writer's own).
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    /// The value of one footer key.
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn topic(&mut self, name: &str) -> Arc<str> {
        match &self.topic {
            Some(t) if **t == *name => t.clone(),
            _ => {
                let t: Arc<str> = Arc::from(name);
                self.topic = Some(t.clone());
                t
            }
        }
    }

    fn convert(&mut self, batch: &RecordBatch) -> Result<()> {
        let topic = column(batch, "topic", &DataType::Utf8)?;
        let topic = downcast::<StringArray>(&topic, "topic")?;
        let partition = column(batch, "partition", &DataType::Int32)?;
        let partition = downcast::<Int32Array>(&partition, "partition")?;
        let offset = column(batch, "offset", &DataType::Int64)?;
        let offset = downcast::<Int64Array>(&offset, "offset")?;
        let timestamp = timestamp_column(batch)?;
        let timestamp = downcast::<Int64Array>(&timestamp, "timestamp")?;
        let ts_type = optional_column(batch, "timestamp_type", &DataType::Utf8)?;
        let ts_type = match &ts_type {
            Some(a) => Some(downcast::<StringArray>(a, "timestamp_type")?),
            None => None,
        };
        let key = optional_column(batch, "key", &DataType::Binary)?;
        let key = match &key {
            Some(a) => Some(downcast::<BinaryArray>(a, "key")?),
            None => None,
        };
        let value = optional_column(batch, "value", &DataType::Binary)?;
        let value = match &value {
            Some(a) => Some(downcast::<BinaryArray>(a, "value")?),
            None => None,
        };
        let headers = match batch.column_by_name("headers") {
            Some(h) => Some(HeaderColumn::new(h)?),
            None => None,
        };
        for i in 0..batch.num_rows() {
            let not_null = |a: &dyn Array, name: &str| {
                if a.is_null(i) {
                    Err(corrupt(format!("`{name}` is null in row {i}")))
                } else {
                    Ok(())
                }
            };
            not_null(topic, "topic")?;
            not_null(partition, "partition")?;
            not_null(offset, "offset")?;
            not_null(timestamp, "timestamp")?;
            let mut r = Record::new(
                self.topic(topic.value(i)),
                partition.value(i),
                offset.value(i),
                None,
            );
            r.timestamp = timestamp.value(i);
            if let Some(t) = ts_type {
                if t.is_valid(i) {
                    r.timestamp_type = TimestampType::parse(t.value(i)).ok_or_else(|| {
                        corrupt(format!("unknown timestamp_type `{}`", t.value(i)))
                    })?;
                }
            }
            r.key = key.and_then(|k| opt_bytes(k, i));
            r.value = value.and_then(|v| opt_bytes(v, i));
            if let Some(h) = &headers {
                r.headers = h.row(i)?;
            }
            self.pending.push_back(r);
        }
        Ok(())
    }
}

impl Iterator for ParquetRecords {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        loop {
            if let Some(r) = self.pending.pop_front() {
                return Some(Ok(r));
            }
            let batch = match self.reader.next()? {
                Ok(b) => b,
                Err(e) => return Some(Err(corrupt(e))),
            };
            if let Err(e) = self.convert(&batch) {
                return Some(Err(e));
            }
        }
    }
}

fn opt_bytes(a: &BinaryArray, i: usize) -> Option<Bytes> {
    a.is_valid(i).then(|| Bytes::copy_from_slice(a.value(i)))
}

/// A column cast to `ty` (so files rewritten by other tools, with views, large or
/// dictionary types, read too).
fn column(batch: &RecordBatch, name: &str, ty: &DataType) -> Result<ArrayRef> {
    optional_column(batch, name, ty)?.ok_or_else(|| corrupt(format!("no column `{name}`")))
}

fn optional_column(batch: &RecordBatch, name: &str, ty: &DataType) -> Result<Option<ArrayRef>> {
    let Some(a) = batch.column_by_name(name) else {
        return Ok(None);
    };
    cast(a, ty, name).map(Some)
}

fn cast(a: &ArrayRef, ty: &DataType, name: &str) -> Result<ArrayRef> {
    if a.data_type() == ty {
        return Ok(a.clone());
    }
    arrow::compute::cast(a, ty)
        .map_err(|e| corrupt(format!("column `{name}` ({}): {e}", a.data_type())))
}

/// `timestamp` as milliseconds since the epoch, whatever its unit or time zone.
fn timestamp_column(batch: &RecordBatch) -> Result<ArrayRef> {
    let a = batch
        .column_by_name("timestamp")
        .ok_or_else(|| corrupt("no column `timestamp`"))?;
    let ms = match a.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) | DataType::Int64 => a.clone(),
        DataType::Timestamp(_, _) => cast(
            a,
            &DataType::Timestamp(TimeUnit::Millisecond, None),
            "timestamp",
        )?,
        _ => a.clone(),
    };
    cast(&ms, &DataType::Int64, "timestamp")
}

fn downcast<'a, T: 'static>(a: &'a ArrayRef, name: &str) -> Result<&'a T> {
    a.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| corrupt(format!("column `{name}` has type {}", a.data_type())))
}

/// The `headers` column: list offsets plus the key and value children.
struct HeaderColumn {
    list: ListArray,
    keys: ArrayRef,
    values: Option<ArrayRef>,
}

impl HeaderColumn {
    fn new(a: &ArrayRef) -> Result<Self> {
        let list = match a.data_type() {
            DataType::List(_) => downcast::<ListArray>(a, "headers")?.clone(),
            DataType::LargeList(f) | DataType::ListView(f) | DataType::LargeListView(f) => {
                let ty = DataType::List(f.clone());
                let cast = cast(a, &ty, "headers")?;
                downcast::<ListArray>(&cast, "headers")?.clone()
            }
            other => return Err(corrupt(format!("column `headers` has type {other}"))),
        };
        let items = list
            .values()
            .as_any()
            .downcast_ref::<StructArray>()
            .ok_or_else(|| corrupt("`headers` items are not structs"))?;
        let keys = items
            .column_by_name("key")
            .ok_or_else(|| corrupt("`headers` items have no `key`"))?;
        let keys = cast(keys, &DataType::Utf8, "headers.key")?;
        let values = match items.column_by_name("value") {
            Some(v) => Some(cast(v, &DataType::Binary, "headers.value")?),
            None => None,
        };
        if items.null_count() > 0 {
            return Err(corrupt("`headers` has a null item"));
        }
        Ok(HeaderColumn { list, keys, values })
    }

    fn row(&self, i: usize) -> Result<Vec<Header>> {
        if self.list.is_null(i) {
            return Ok(Vec::new());
        }
        let keys = downcast::<StringArray>(&self.keys, "headers.key")?;
        let values = match &self.values {
            Some(v) => Some(downcast::<BinaryArray>(v, "headers.value")?),
            None => None,
        };
        let offsets = self.list.value_offsets();
        let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
        let mut out = Vec::with_capacity(end - start);
        for j in start..end {
            if keys.is_null(j) {
                return Err(corrupt(format!("a header key is null in row {i}")));
            }
            out.push(Header {
                key: keys.value(j).to_string(),
                value: values.and_then(|v| opt_bytes(v, j)),
            });
        }
        Ok(out)
    }
}

/// Reads every record of a Parquet envelope file (as written by [`ParquetEncoder`]).
pub fn read_parquet(bytes: Bytes) -> Result<Vec<Record>> {
    ParquetRecords::new(bytes)?.collect()
}

#[cfg(test)]
mod tests;
