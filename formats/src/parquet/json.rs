//! Typed columns decoded from JSON values (`value: {as: json}`), with the columns given
//! (`schema: …`) or inferred from the first values (see [Inferred columns](#inferred-columns)).
//!
//! ```yaml
//! format: parquet
//! parquet:
//!   value:
//!     as: json
//!     schema:
//!       - { name: id, type: int64 }
//!       - { name: user, type: string, path: /user/name }
//!       - { name: amount, type: float64 }
//!       - { name: at, type: timestamp_ms }
//!       - { name: tags, type: json }
//!     on_error: "null"            # or: fail, dead_letter
//! ```
//!
//! Each record value is parsed as JSON and the declared fields are written to a nullable
//! struct column (default name `value_json`) next to the envelope, which is unchanged: the
//! raw `value` stays, so files remain restorable byte for byte. A field is taken at its
//! `path` (a JSON pointer, `/<name>` by default); missing or JSON `null` gives a null.
//!
//! | type           | from JSON                                              | Arrow            |
//! |----------------|--------------------------------------------------------|------------------|
//! | `string`       | a string (other values: their JSON text)               | `Utf8`           |
//! | `int32`/`int64`| an integer, or a string holding one                    | `Int32`/`Int64`  |
//! | `float64`      | a number, or a string holding one                      | `Float64`        |
//! | `boolean`      | `true`/`false`                                         | `Boolean`        |
//! | `timestamp_ms` | epoch milliseconds, or an RFC 3339 / ISO 8601 string   | `Timestamp(ms, UTC)` |
//! | `json`         | anything, kept as JSON text                            | `Utf8`           |
//!
//! A value that is not a JSON object (or is null, a tombstone) gives a null struct. With
//! `on_error: null` (the default) a field of the wrong type is null; with `on_error: fail`
//! it fails the segment, naming the offset and the field; with `on_error: dead_letter` a
//! value that does not fit (not JSON, not an object, or a field of the wrong type) gets a
//! null struct and the encoder keeps the record with the reason for the storage sink's
//! dead-letter files ([`crate::segment::SegmentEncoder::take_rejected`]).
//!
//! ## Inferred columns
//!
//! Without `schema`, the columns of each topic are inferred from its first values of the
//! run:
//!
//! ```yaml
//! value:
//!   as: json
//!   infer_records: 1000           # the default: values looked at per topic
//!   on_error: dead_letter
//! ```
//!
//! - The columns are the top-level fields of the sampled values that are JSON objects, in
//!   first-seen order (a field named `""` is skipped). Null values (tombstones), values
//!   that are not JSON and JSON that is not an object give no column.
//! - A field's type comes from all its sampled non-null values: only integers → `int64`;
//!   integers and floats (or only floats) → `float64`; only booleans → `boolean`; only
//!   strings that are all RFC 3339 timestamps (`2024-11-24T10:00:00.5Z`, with `Z` or an
//!   offset; a space may replace the `T`) → `timestamp_ms`; other strings → `string`;
//!   objects, arrays, or a mix of kinds (numbers and strings, …) → `json` (the JSON text);
//!   a field only ever null → `string`. Integers beyond the int64 range count as floats;
//!   epoch numbers stay `int64` (give `schema` to read them as `timestamp_ms`).
//! - The sample of a topic is shared by the encoders of all its partitions (through the
//!   format) and ends after `infer_records` non-null values ([`infer::DEFAULT_INFER_RECORDS`])
//!   or once its records reach [`infer::INFER_MAX_BYTES`] (16 MiB), whichever comes first.
//!   Until then the encoders buffer their records (nothing of the segment is written yet).
//!   A segment that closes before the sample is complete fixes the columns from what the
//!   sample holds then (an empty segment, e.g. only transaction markers, does not).
//! - Once fixed, the columns of a topic stay the same for the whole run, so every file of
//!   the topic in the run has the same schema. They are logged at info as YAML to paste
//!   into the pipeline as `schema:` (e.g. `inferred schema for topic orders: [{name: id,
//!   type: int64}, {name: at, type: timestamp_ms}]`); they may differ from run to run,
//!   since they come from each run's first values: pin them for stable columns.
//! - Values that do not fit the inferred columns (a field of another type, a value that
//!   is not JSON or not an object, sampled or not) are handled by `on_error` exactly as
//!   with a given schema.
//! - If no sampled value is a JSON object with a field, the topic's files have no typed
//!   struct column in this run (Parquet has no struct without fields), with a warning;
//!   its values are then not checked (no `on_error`).

use crate::confluent::AvroValueColumns;
use arrow::array::timezone::Tz;
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    StructArray, TimestampMillisecondBuilder,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use bytes::Bytes;
use ferry_core::{Error, Record, Result};
use infer::{InferredFields, JsonInference, Sampled};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

pub mod infer;

/// Type of a typed column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JsonType {
    /// UTF-8 string.
    String,
    /// 32-bit integer.
    Int32,
    /// 64-bit integer.
    Int64,
    /// 64-bit float.
    Float64,
    /// Boolean.
    Boolean,
    /// Milliseconds since the epoch, UTC (from a number or an RFC 3339 string).
    TimestampMs,
    /// Any JSON, kept as its text.
    Json,
}

impl JsonType {
    fn data_type(self) -> DataType {
        match self {
            JsonType::String | JsonType::Json => DataType::Utf8,
            JsonType::Int32 => DataType::Int32,
            JsonType::Int64 => DataType::Int64,
            JsonType::Float64 => DataType::Float64,
            JsonType::Boolean => DataType::Boolean,
            JsonType::TimestampMs => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        }
    }
}

/// One typed column.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonField {
    /// Column name inside the struct.
    pub name: String,
    /// Column type.
    #[serde(rename = "type")]
    pub ty: JsonType,
    /// JSON pointer to the value (RFC 6901, e.g. `/user/id`); `/<name>` by default.
    #[serde(default)]
    pub path: Option<String>,
}

impl JsonField {
    fn pointer(&self) -> String {
        match &self.path {
            Some(p) => p.clone(),
            None => format!("/{}", self.name.replace('~', "~0").replace('/', "~1")),
        }
    }
}

/// What a value (or a field) that does not fit the typed columns gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// A null (the default).
    #[default]
    Null,
    /// An error that fails the segment.
    Fail,
    /// A null struct, and the record with the reason goes to the dead-letter files.
    DeadLetter,
}

fn default_column() -> String {
    "value_json".to_string()
}

/// Typed columns decoded from record values, by encoding of the values (`as:`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(tag = "as", rename_all = "snake_case")]
pub enum ValueColumns {
    /// JSON documents (objects): `{as: json, schema: [...]}`, see [this module](self).
    Json(JsonValueColumns),
    /// Confluent Schema-Registry Avro: `{as: avro, registry: {url}}`, see
    /// [`crate::confluent`] and [`super::avro`].
    Avro(AvroValueColumns),
}

impl ValueColumns {
    /// Checks the options.
    pub fn validate(&self) -> Result<()> {
        match self {
            ValueColumns::Json(j) => j.validate(),
            ValueColumns::Avro(a) => a.validate("parquet value", &ENVELOPE),
        }
    }

    /// What a value that does not fit gives.
    pub fn on_error(&self) -> OnError {
        match self {
            ValueColumns::Json(j) => j.on_error,
            ValueColumns::Avro(a) => a.on_error,
        }
    }

    /// Name of the struct column.
    pub fn column(&self) -> &str {
        match self {
            ValueColumns::Json(j) => &j.column,
            ValueColumns::Avro(a) => &a.column,
        }
    }
}

/// Typed columns decoded from JSON values (`value: {as: json, …}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonValueColumns {
    /// The columns, in order. Without it they are inferred per topic from the first
    /// `infer_records` values of the run (top-level fields of JSON objects; all integers:
    /// int64, integers and floats: float64, booleans: boolean, RFC 3339 strings:
    /// timestamp_ms, other strings: string, objects/arrays/mixed kinds: json) and logged
    /// at info as YAML to paste here.
    #[serde(default)]
    pub schema: Option<Vec<JsonField>>,
    /// Without `schema`: how many non-null values of each topic to infer the columns from
    /// (default 1000, > 0; the sample also ends at 16MiB of records).
    #[serde(default)]
    pub infer_records: Option<u64>,
    /// Name of the struct column that holds them (default `value_json`).
    #[serde(default = "default_column")]
    pub column: String,
    /// What a field of the wrong type gives: `null` (default), `fail` or `dead_letter`.
    #[serde(default)]
    pub on_error: OnError,
}

/// Names of the envelope columns, which the struct column may not take (the same names as
/// the Avro envelope's fields).
pub use crate::avro::ENVELOPE_FIELDS as ENVELOPE;

impl JsonValueColumns {
    /// Checks names (non-empty, unique, not an envelope column) and paths.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Error::config(format!("parquet value columns: {m}"));
        if self.column.is_empty() || ENVELOPE.contains(&self.column.as_str()) {
            return Err(bad(format!(
                "`column: {}` must be a new column name (not one of {})",
                self.column,
                ENVELOPE.join(", ")
            )));
        }
        if self.infer_records == Some(0) {
            return Err(bad("`infer_records` must be > 0".into()));
        }
        let Some(schema) = &self.schema else {
            return Ok(());
        };
        if self.infer_records.is_some() {
            return Err(bad(
                "`infer_records` is for inferring the columns: drop it, or drop `schema`".into(),
            ));
        }
        if schema.is_empty() {
            return Err(bad("`schema` lists no field".into()));
        }
        let mut seen = HashSet::new();
        for f in schema {
            if f.name.is_empty() {
                return Err(bad("a field has an empty name".into()));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(bad(format!("field `{}` is listed twice", f.name)));
            }
            if let Some(p) = &f.path {
                if !(p.is_empty() || p.starts_with('/')) {
                    return Err(bad(format!(
                        "field `{}`: path `{p}` is not a JSON pointer (it starts with `/`)",
                        f.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// The struct column of the given schema (`None` when the columns are inferred while
    /// encoding).
    pub fn field(&self) -> Option<Field> {
        self.schema
            .as_deref()
            .map(|schema| struct_field(&self.column, schema))
    }
}

/// The fields of the struct column of `schema`.
fn struct_fields(schema: &[JsonField]) -> Fields {
    Fields::from(
        schema
            .iter()
            .map(|f| Field::new(&f.name, f.ty.data_type(), true))
            .collect::<Vec<_>>(),
    )
}

/// The struct column `column` of `schema`.
fn struct_field(column: &str, schema: &[JsonField]) -> Field {
    Field::new(column, DataType::Struct(struct_fields(schema)), true)
}

enum Builder {
    Str(StringBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMillisecondBuilder),
}

impl Builder {
    /// An empty builder (not arrow's `new()`, which makes room for 1,024 values: there is
    /// one per column of every open segment, thousands with many partitions).
    fn new(ty: JsonType) -> Self {
        match ty {
            JsonType::String | JsonType::Json => Builder::Str(StringBuilder::with_capacity(0, 0)),
            JsonType::Int32 => Builder::I32(Int32Builder::with_capacity(0)),
            JsonType::Int64 => Builder::I64(Int64Builder::with_capacity(0)),
            JsonType::Float64 => Builder::F64(Float64Builder::with_capacity(0)),
            JsonType::Boolean => Builder::Bool(BooleanBuilder::with_capacity(0)),
            JsonType::TimestampMs => {
                Builder::Ts(TimestampMillisecondBuilder::with_capacity(0).with_timezone("UTC"))
            }
        }
    }

    fn null(&mut self) {
        match self {
            Builder::Str(b) => b.append_null(),
            Builder::I32(b) => b.append_null(),
            Builder::I64(b) => b.append_null(),
            Builder::F64(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Ts(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Ts(b) => Arc::new(b.finish()),
        }
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= i64::MIN as f64 && *f <= i64::MAX as f64)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_timestamp_ms(v: &Value, utc: &Tz) -> Option<i64> {
    match v {
        Value::Number(_) => as_i64(v),
        Value::String(s) => arrow::compute::kernels::cast_utils::string_to_datetime(utc, s)
            .ok()
            .map(|d| d.timestamp_millis()),
        _ => None,
    }
}

/// UTC as an offset (an offset always parses; names would need chrono-tz).
fn utc() -> Tz {
    static UTC: LazyLock<Tz> =
        LazyLock::new(|| Tz::from_str("+00:00").expect("+00:00 is a time zone"));
    *UTC
}

/// Why a value is not a JSON object (so it cannot fill the typed columns).
enum Misfit {
    NotJson(String),
    NotObject,
}

impl Misfit {
    /// The reason given to the dead-letter files.
    fn reason(&self) -> String {
        match self {
            Misfit::NotJson(e) => format!("the value is not JSON: {e}"),
            Misfit::NotObject => "the value is not a JSON object".to_string(),
        }
    }

    /// The error of `on_error: fail`.
    fn error(&self, offset: i64) -> Error {
        Error::invalid_data(match self {
            Misfit::NotJson(e) => {
                format!("parquet value columns: the value at offset {offset} is not JSON: {e}")
            }
            Misfit::NotObject => {
                format!("parquet value columns: the value at offset {offset} is not a JSON object")
            }
        })
    }
}

/// A value parsed as a JSON object (`Ok(None)`: a null value).
fn parse_object(value: Option<&[u8]>) -> std::result::Result<Option<Value>, Misfit> {
    match value.map(serde_json::from_slice::<Value>) {
        None => Ok(None),
        Some(Ok(doc @ Value::Object(_))) => Ok(Some(doc)),
        Some(Ok(_)) => Err(Misfit::NotObject),
        Some(Err(e)) => Err(Misfit::NotJson(e.to_string())),
    }
}

/// Builders of the struct column for the records not yet written, for a known schema.
pub(crate) struct JsonColumns {
    schema: Vec<JsonField>,
    column: String,
    on_error: OnError,
    pointers: Vec<String>,
    builders: Vec<Builder>,
    valid: Vec<bool>,
    utc: Tz,
}

impl JsonColumns {
    /// Builders of the struct column `column` holding `schema`.
    pub(crate) fn new(schema: &[JsonField], column: &str, on_error: OnError) -> Self {
        JsonColumns {
            pointers: schema.iter().map(JsonField::pointer).collect(),
            builders: schema.iter().map(|f| Builder::new(f.ty)).collect(),
            valid: Vec::new(),
            utc: utc(),
            schema: schema.to_vec(),
            column: column.to_string(),
            on_error,
        }
    }

    /// The struct column's field.
    pub(crate) fn field(&self) -> Field {
        struct_field(&self.column, &self.schema)
    }

    fn nulls(&mut self) {
        self.valid.push(false);
        for b in &mut self.builders {
            b.null();
        }
    }

    /// Why a record's value does not fit the schema (not JSON, not an object, or a field
    /// of the wrong type); `None` when it fits (a null value fits: a null struct).
    /// Builders are left alone.
    pub(crate) fn check(&self, r: &Record) -> Option<String> {
        let doc = match parse_object(r.value.as_deref()) {
            Ok(None) => return None,
            Ok(Some(doc)) => doc,
            Err(m) => return Some(m.reason()),
        };
        for (f, pointer) in self.schema.iter().zip(&self.pointers) {
            let v = match doc.pointer(pointer) {
                None | Some(Value::Null) => continue,
                Some(v) => v,
            };
            let fits = match f.ty {
                JsonType::String | JsonType::Json => true,
                JsonType::Int32 => as_i64(v).is_some_and(|n| i32::try_from(n).is_ok()),
                JsonType::Int64 => as_i64(v).is_some(),
                JsonType::Float64 => as_f64(v).is_some(),
                JsonType::Boolean => v.as_bool().is_some(),
                JsonType::TimestampMs => as_timestamp_ms(v, &self.utc).is_some(),
            };
            if !fits {
                return Some(format!("field `{}`: {v} is not a {:?}", f.name, f.ty));
            }
        }
        None
    }

    /// Decodes one record's value. With `on_error: dead_letter`, a value that does not
    /// fit gets a null struct and its reason is returned.
    pub(crate) fn push(&mut self, r: &Record) -> Result<Option<String>> {
        if self.on_error == OnError::DeadLetter {
            if let Some(reason) = self.check(r) {
                self.nulls();
                return Ok(Some(reason));
            }
        }
        self.push_value(r.value.as_deref(), r.offset, self.on_error == OnError::Fail)?;
        Ok(None)
    }

    /// Decodes a value; with `fail`, a value or field that does not fit is an error (else
    /// a null).
    fn push_value(&mut self, value: Option<&[u8]>, offset: i64, fail: bool) -> Result<()> {
        let doc = match parse_object(value) {
            Ok(Some(doc)) => doc,
            Err(m) if fail => return Err(m.error(offset)),
            Ok(None) | Err(_) => {
                self.nulls();
                return Ok(());
            }
        };
        self.valid.push(true);
        for (i, b) in self.builders.iter_mut().enumerate() {
            let v = match doc.pointer(&self.pointers[i]) {
                None | Some(Value::Null) => {
                    b.null();
                    continue;
                }
                Some(v) => v,
            };
            let ok = match b {
                Builder::Str(s) => {
                    match (self.schema[i].ty, v) {
                        (JsonType::String, Value::String(t)) => s.append_value(t),
                        (_, v) => s.append_value(v.to_string()),
                    }
                    true
                }
                Builder::I32(x) => {
                    let n = as_i64(v).and_then(|n| i32::try_from(n).ok());
                    x.append_option(n);
                    n.is_some()
                }
                Builder::I64(x) => {
                    let n = as_i64(v);
                    x.append_option(n);
                    n.is_some()
                }
                Builder::F64(x) => {
                    let n = as_f64(v);
                    x.append_option(n);
                    n.is_some()
                }
                Builder::Bool(x) => {
                    let n = v.as_bool();
                    x.append_option(n);
                    n.is_some()
                }
                Builder::Ts(x) => {
                    let n = as_timestamp_ms(v, &self.utc);
                    x.append_option(n);
                    n.is_some()
                }
            };
            if !ok && fail {
                return Err(Error::invalid_data(format!(
                    "parquet value columns: field `{}` at offset {offset}: {v} is not a {:?}",
                    self.schema[i].name, self.schema[i].ty
                )));
            }
        }
        Ok(())
    }

    /// The struct column of the records pushed since the last call.
    pub(crate) fn finish(&mut self) -> Result<ArrayRef> {
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        let valid = std::mem::take(&mut self.valid);
        let nulls = NullBuffer::from(valid);
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        let a = StructArray::try_new(struct_fields(&self.schema), columns, nulls)
            .map_err(|e| Error::component("format parquet", e))?;
        Ok(Arc::new(a))
    }
}

/// A record buffered while its topic's columns are being inferred.
enum PendingRow {
    /// A null struct (a null value).
    Null,
    /// A JSON object of the sample (a copy of the value: the batch's buffer is not kept).
    Object(i64, Bytes),
    /// A value that is not a JSON object: `on_error` applies once the columns are fixed.
    Misfit(Box<Record>, Misfit),
}

enum JsonState {
    /// The columns of the topic are not fixed yet: the rows so far.
    Pending {
        inference: Arc<JsonInference>,
        rows: Vec<PendingRow>,
        /// Bytes of the value copies in `rows`.
        bytes: usize,
    },
    /// The struct column of the given or inferred columns.
    Ready(JsonColumns),
    /// The inferred columns are empty (no sampled value was an object): no typed column.
    Absent,
}

/// The typed JSON struct column of one encoder: given columns, or inferred ones (buffered
/// until the topic's columns are fixed, see [Inferred columns](self#inferred-columns)).
pub(crate) struct JsonTyped {
    column: String,
    on_error: OnError,
    topic: String,
    state: JsonState,
    /// Records of earlier rows that `on_error: dead_letter` rejected when the columns were
    /// fixed, with the reasons, not yet taken.
    rejected: Vec<(Record, String)>,
}

impl JsonTyped {
    /// The column of `config` for records of `topic`; inferred columns come from
    /// `inference` (shared by a format's encoders), or from a state of its own.
    pub(crate) fn new(
        config: &JsonValueColumns,
        inference: Option<Arc<JsonInference>>,
        topic: &str,
    ) -> Self {
        let state = match &config.schema {
            Some(schema) => {
                JsonState::Ready(JsonColumns::new(schema, &config.column, config.on_error))
            }
            None => JsonState::Pending {
                inference: inference.unwrap_or_else(|| Arc::new(JsonInference::new(config))),
                rows: Vec::new(),
                bytes: 0,
            },
        };
        JsonTyped {
            column: config.column.clone(),
            on_error: config.on_error,
            topic: topic.to_string(),
            state,
            rejected: Vec::new(),
        }
    }

    /// Name of the struct column.
    pub(crate) fn column(&self) -> &str {
        &self.column
    }

    /// Whether the columns are still being inferred (rows are then buffered).
    pub(crate) fn is_pending(&self) -> bool {
        matches!(self.state, JsonState::Pending { .. })
    }

    /// The struct column's field, once known (`None` while pending, or when the topic has
    /// no typed column in this run).
    pub(crate) fn field(&self) -> Option<Field> {
        match &self.state {
            JsonState::Ready(c) => Some(c.field()),
            JsonState::Pending { .. } | JsonState::Absent => None,
        }
    }

    /// Bytes held for rows not yet decoded (value copies and records of deferred
    /// rejections).
    pub(crate) fn buffered_bytes(&self) -> usize {
        let rejected: usize = self.rejected.iter().map(|(r, _)| r.size_hint()).sum();
        match &self.state {
            JsonState::Pending { bytes, .. } => bytes + rejected,
            _ => rejected,
        }
    }

    /// Decodes (or buffers) one record's value; returns why it goes to the dead-letter
    /// files (`on_error: dead_letter`). Rejections of rows buffered earlier are collected
    /// for [`JsonTyped::take_rejected`].
    pub(crate) fn push(&mut self, r: &Record) -> Result<Option<String>> {
        let (inference, rows, bytes) = match &mut self.state {
            JsonState::Ready(c) => return c.push(r),
            JsonState::Absent => return Ok(None),
            JsonState::Pending {
                inference,
                rows,
                bytes,
            } => (inference, rows, bytes),
        };
        let sampled = r.value.as_deref().map(Sampled::parse);
        let observed = match &sampled {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(_)) => Some(&Sampled::Other),
        };
        if let Some(fields) = inference.observe(&self.topic, observed, r.size_hint()) {
            // The columns are fixed (by this record completing the sample, or earlier by
            // another encoder): the rows buffered here are decoded, then this record like
            // any later one, with `on_error`.
            self.resolve(fields)?;
            return self.push(r);
        }
        let row = match (r.value.as_deref(), sampled) {
            (Some(v), Some(Ok(Sampled::Object(_)))) => {
                *bytes += v.len();
                PendingRow::Object(r.offset, Bytes::copy_from_slice(v))
            }
            (_, Some(Ok(_))) => PendingRow::Misfit(Box::new(r.clone()), Misfit::NotObject),
            (_, Some(Err(e))) => PendingRow::Misfit(Box::new(r.clone()), Misfit::NotJson(e)),
            (_, None) => PendingRow::Null,
        };
        rows.push(row);
        Ok(None)
    }

    /// Decodes the buffered rows with the topic's fixed columns (rows that are not JSON
    /// objects get `on_error` now); later records are decoded as they come.
    fn resolve(&mut self, fields: InferredFields) -> Result<()> {
        let rows = match std::mem::replace(&mut self.state, JsonState::Absent) {
            JsonState::Pending { rows, .. } => rows,
            other => {
                self.state = other;
                return Ok(());
            }
        };
        if fields.is_empty() {
            // No typed column: nothing is decoded or checked (the state stays Absent).
            return Ok(());
        }
        let mut cols = JsonColumns::new(&fields, &self.column, self.on_error);
        for row in rows {
            match row {
                PendingRow::Null => cols.nulls(),
                // Sampled objects fit the columns inferred from them.
                PendingRow::Object(offset, v) => cols.push_value(Some(&v), offset, false)?,
                PendingRow::Misfit(record, why) => match self.on_error {
                    OnError::Null => cols.nulls(),
                    OnError::Fail => return Err(why.error(record.offset)),
                    OnError::DeadLetter => {
                        cols.nulls();
                        self.rejected.push((*record, why.reason()));
                    }
                },
            }
        }
        self.state = JsonState::Ready(cols);
        Ok(())
    }

    /// At the end of a segment: fixes the topic's columns from its sample so far if this
    /// segment has buffered rows (an empty segment only takes columns already fixed), and
    /// decodes the rows.
    pub(crate) fn settle(&mut self) -> Result<()> {
        let JsonState::Pending {
            inference, rows, ..
        } = &self.state
        else {
            return Ok(());
        };
        let fields = if rows.is_empty() {
            inference.fixed(&self.topic)
        } else {
            Some(inference.fix(&self.topic))
        };
        match fields {
            Some(f) => self.resolve(f),
            None => Ok(()),
        }
    }

    /// Takes the records rejected (`on_error: dead_letter`) when buffered rows were
    /// decoded, with their reasons.
    pub(crate) fn take_rejected(&mut self) -> Vec<(Record, String)> {
        std::mem::take(&mut self.rejected)
    }

    /// The struct column of the rows pushed since the last call: `None` without a typed
    /// column (not fixed yet: only called then for a segment without rows; or none for
    /// this topic in this run).
    pub(crate) fn finish(&mut self) -> Result<Option<ArrayRef>> {
        match &mut self.state {
            JsonState::Ready(c) => c.finish().map(Some),
            JsonState::Absent => Ok(None),
            JsonState::Pending { rows, bytes, .. } => {
                rows.clear();
                *bytes = 0;
                Ok(None)
            }
        }
    }
}
