//! Typed columns decoded from JSON values (`value: {as: json, schema: …}`).
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

use crate::confluent::AvroValueColumns;
use arrow::array::timezone::Tz;
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    StructArray, TimestampMillisecondBuilder,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use ferry_core::{Error, Record, Result};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;

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
    /// The columns, in order.
    pub schema: Vec<JsonField>,
    /// Name of the struct column that holds them (default `value_json`).
    #[serde(default = "default_column")]
    pub column: String,
    /// What a field of the wrong type gives: `null` (default), `fail` or `dead_letter`.
    #[serde(default)]
    pub on_error: OnError,
}

/// Names of the envelope columns, which the struct column may not take.
pub const ENVELOPE: [&str; 8] = [
    "topic",
    "partition",
    "offset",
    "timestamp",
    "timestamp_type",
    "key",
    "value",
    "headers",
];

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
        if self.schema.is_empty() {
            return Err(bad("`schema` lists no field".into()));
        }
        let mut seen = HashSet::new();
        for f in &self.schema {
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

    /// The struct column's fields.
    pub fn fields(&self) -> Fields {
        Fields::from(
            self.schema
                .iter()
                .map(|f| Field::new(&f.name, f.ty.data_type(), true))
                .collect::<Vec<_>>(),
        )
    }

    /// The struct column of the schema.
    pub fn field(&self) -> Field {
        Field::new(&self.column, DataType::Struct(self.fields()), true)
    }
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
    fn new(ty: JsonType) -> Self {
        match ty {
            JsonType::String | JsonType::Json => Builder::Str(StringBuilder::new()),
            JsonType::Int32 => Builder::I32(Int32Builder::new()),
            JsonType::Int64 => Builder::I64(Int64Builder::new()),
            JsonType::Float64 => Builder::F64(Float64Builder::new()),
            JsonType::Boolean => Builder::Bool(BooleanBuilder::new()),
            JsonType::TimestampMs => {
                Builder::Ts(TimestampMillisecondBuilder::new().with_timezone("UTC"))
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

/// Builders of the struct column for the records not yet written.
pub(crate) struct JsonColumns {
    config: JsonValueColumns,
    pointers: Vec<String>,
    builders: Vec<Builder>,
    valid: Vec<bool>,
    utc: Tz,
}

impl JsonColumns {
    pub(crate) fn new(config: &JsonValueColumns) -> Self {
        JsonColumns {
            pointers: config.schema.iter().map(JsonField::pointer).collect(),
            builders: config.schema.iter().map(|f| Builder::new(f.ty)).collect(),
            valid: Vec::new(),
            // An offset always parses (names need chrono-tz).
            utc: Tz::from_str("+00:00").expect("+00:00 is a time zone"),
            config: config.clone(),
        }
    }

    /// Name of the struct column.
    pub(crate) fn column(&self) -> &str {
        &self.config.column
    }

    /// The struct column's field.
    pub(crate) fn field(&self) -> Field {
        self.config.field()
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
        let doc = match r.value.as_deref().map(serde_json::from_slice::<Value>) {
            None => return None,
            Some(Ok(doc @ Value::Object(_))) => doc,
            Some(Ok(_)) => return Some("the value is not a JSON object".to_string()),
            Some(Err(e)) => return Some(format!("the value is not JSON: {e}")),
        };
        for (f, pointer) in self.config.schema.iter().zip(&self.pointers) {
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
        if self.config.on_error == OnError::DeadLetter {
            if let Some(reason) = self.check(r) {
                self.nulls();
                return Ok(Some(reason));
            }
        }
        self.push_fitting(r)?;
        Ok(None)
    }

    fn push_fitting(&mut self, r: &Record) -> Result<()> {
        let fail = self.config.on_error == OnError::Fail;
        let doc: Value = match r.value.as_deref().map(serde_json::from_slice::<Value>) {
            None => {
                self.nulls();
                return Ok(());
            }
            Some(Ok(doc @ Value::Object(_))) => doc,
            Some(Ok(_)) if fail => {
                return Err(Error::Other(format!(
                    "parquet value columns: the value at offset {} is not a JSON object",
                    r.offset
                )))
            }
            Some(Err(e)) if fail => {
                return Err(Error::Other(format!(
                    "parquet value columns: the value at offset {} is not JSON: {e}",
                    r.offset
                )))
            }
            Some(_) => {
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
                    match (self.config.schema[i].ty, v) {
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
                return Err(Error::Other(format!(
                    "parquet value columns: field `{}` at offset {}: {v} is not a {:?}",
                    self.config.schema[i].name, r.offset, self.config.schema[i].ty
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
        let a = StructArray::try_new(self.config.fields(), columns, nulls)
            .map_err(|e| Error::component("format parquet", e))?;
        Ok(Arc::new(a))
    }
}
