//! Typed columns decoded from Confluent Schema-Registry Avro values (`value: {as: avro}`;
//! decoding, schemas and `on_error` are described in [`crate::confluent`]).
//!
//! ```yaml
//! format: parquet
//! parquet:
//!   value:
//!     as: avro
//!     registry: { url: http://registry:8081 }
//!     on_error: dead_letter
//! ```
//!
//! The decoded value goes to a nullable struct column (default name `value_avro`) beside
//! the envelope, which is unchanged (the raw `value` stays, so files remain restorable).
//! Its fields are those of the reader schema, under their Avro names, so DuckDB reads
//! `value_avro.customer.city`. Avro types map to Arrow types as follows:
//!
//! | Avro                                   | Arrow                                      |
//! |----------------------------------------|--------------------------------------------|
//! | `null`                                 | `Null`                                     |
//! | `boolean`, `int`, `long`               | `Boolean`, `Int32`, `Int64`                |
//! | `float`, `double`                      | `Float32`, `Float64`                       |
//! | `string`, `enum` (the symbol), `uuid`  | `Utf8`                                     |
//! | `bytes`, `fixed`                       | `Binary`, `FixedSizeBinary(size)`          |
//! | `record`                               | `Struct` (field names kept)                |
//! | `array`                                | `List` (items named `element`)             |
//! | `map`                                  | `Map<Utf8, …>` (entries `key_value`, keys sorted) |
//! | `["null", T]` (either order)           | `T`, nullable                              |
//! | any other union, a recursive type      | `Utf8`: the value as JSON text (bytes in base64, decimals as unscaled integers) |
//! | `date`                                 | `Date32`                                   |
//! | `time-millis`, `time-micros`           | `Time32(ms)`, `Time64(µs)`                 |
//! | `timestamp-millis`/`-micros`/`-nanos`  | `Timestamp(unit, "UTC")`                   |
//! | `local-timestamp-millis`/`-micros`/`-nanos` | `Timestamp(unit)` (no time zone)      |
//! | `decimal(p, s)`                        | `Decimal128(p, s)` for p ≤ 38, `Decimal256(p, s)` for p ≤ 76 |
//! | `big-decimal`                          | `Utf8` (decimal text)                      |
//! | `duration`                             | `Struct<months, days, millis: UInt32>`     |
//!
//! Fields are nullable only when their Avro type admits null. A decimal that does not fit
//! its declared precision is an error of that value (handled by `on_error`).

use crate::confluent::{AvroValues, Decoded};
use apache_avro::schema::{Name, Namespace, ResolvedSchema};
use apache_avro::types::Value;
use apache_avro::Schema;
use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder, ListArray,
    MapArray, NullArray, StringBuilder, StructArray, Time32MillisecondBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder, TimestampMillisecondBuilder,
    TimestampNanosecondBuilder, UInt32Builder,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{
    i256, DataType, Decimal128Type, Decimal256Type, DecimalType, Field, Fields, TimeUnit,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ferry_core::{Error, Record, Result};
use std::collections::HashMap;
use std::sync::Arc;

/// The builders of the typed struct column of one encoder.
pub(crate) struct AvroColumns {
    values: Arc<AvroValues>,
    topic: String,
    state: State,
}

enum State {
    /// The topic has no reader schema yet: this many rows, all null.
    Pending(usize),
    /// The struct column of the reader schema.
    Ready(Box<Col>),
}

impl AvroColumns {
    /// Builders for records of `topic`, decoded with the shared state `values`.
    pub(crate) fn new(values: Arc<AvroValues>, topic: &str) -> Self {
        AvroColumns {
            values,
            topic: topic.to_string(),
            state: State::Pending(0),
        }
    }

    /// Name of the struct column.
    pub(crate) fn column(&self) -> &str {
        &self.values.config().column
    }

    /// Whether the struct column is still unknown (no reader schema for the topic yet).
    pub(crate) fn is_pending(&self) -> bool {
        matches!(self.state, State::Pending(_))
    }

    /// Decodes one record's value into the columns; returns why it goes to the dead-letter
    /// files (`on_error: dead_letter`).
    pub(crate) fn push(&mut self, r: &Record) -> Result<Option<String>> {
        let (reader, decoded) = self.values.decode(&self.topic, r)?;
        if let (State::Pending(n), Some(reader)) = (&self.state, &reader) {
            let mut root = Col::root(&reader.schema).map_err(|e| {
                Error::config(format!(
                    "value (as: avro): reader schema id {} of topic {}: {e}",
                    reader.id, self.topic
                ))
            })?;
            for _ in 0..*n {
                root.append_null();
            }
            self.state = State::Ready(Box::new(root));
        }
        let decoded = match (&self.state, decoded) {
            (State::Ready(root), Decoded::Value(v)) => match root.check(&v) {
                Ok(()) => Decoded::Value(v),
                Err(why) => {
                    Decoded::Rejected(format!("the decoded value does not fit the columns: {why}"))
                }
            },
            (_, d) => d,
        };
        let settled = self.values.settle(r, decoded)?;
        match &mut self.state {
            State::Pending(n) => *n += 1,
            State::Ready(root) => match &settled.value {
                Some(v) => root.append(v),
                None => root.append_null(),
            },
        }
        Ok(settled.rejected)
    }

    /// The struct column's field, once the reader schema is known.
    pub(crate) fn field(&self) -> Option<Field> {
        match &self.state {
            State::Pending(_) => None,
            State::Ready(root) => Some(Field::new(
                &self.values.config().column,
                root.dt.clone(),
                true,
            )),
        }
    }

    /// The struct column of the rows pushed since the last call (`None` while pending:
    /// the rows are then forgotten, they were all null).
    pub(crate) fn finish(&mut self) -> Result<Option<ArrayRef>> {
        match &mut self.state {
            State::Pending(n) => {
                *n = 0;
                Ok(None)
            }
            State::Ready(root) => root
                .finish()
                .map(Some)
                .map_err(|e| Error::component("format parquet", e)),
        }
    }
}

/// How an Avro string-like value is turned into text.
#[derive(Debug, Clone, Copy)]
enum Text {
    String,
    Enum,
    Uuid,
    BigDecimal,
}

enum B {
    Null(usize),
    Bool(BooleanBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Bin(BinaryBuilder),
    Str(StringBuilder, Text),
    Fixed(FixedSizeBinaryBuilder, usize),
    Date(Date32Builder),
    TimeMs(Time32MillisecondBuilder),
    TimeUs(Time64MicrosecondBuilder),
    TsMs(TimestampMillisecondBuilder),
    TsUs(TimestampMicrosecondBuilder),
    TsNs(TimestampNanosecondBuilder),
    Dec128(Decimal128Builder, u8),
    Dec256(Decimal256Builder, u8),
    Duration([UInt32Builder; 3], Vec<bool>),
    Struct(Vec<(String, Col)>, Vec<bool>),
    List(Vec<i32>, Vec<bool>, Box<Col>),
    Map(Vec<i32>, Vec<bool>, StringBuilder, Box<Col>),
    Json(StringBuilder),
}

/// The builder of one column (at any depth) and its Arrow type.
struct Col {
    nullable: bool,
    dt: DataType,
    b: B,
}

fn utc() -> Option<Arc<str>> {
    Some("UTC".into())
}

/// Maps a reader schema to columns, following named-type references.
struct Planner {
    names: HashMap<Name, Schema>,
    /// Records being mapped: a reference to one of them is a recursive type.
    stack: Vec<Name>,
}

impl Col {
    fn new(b: B, dt: DataType, nullable: bool) -> Self {
        Col { nullable, dt, b }
    }

    /// The struct column of a record reader schema.
    fn root(schema: &Schema) -> std::result::Result<Col, String> {
        let resolved = ResolvedSchema::try_from(schema).map_err(|e| e.to_string())?;
        let names = resolved
            .get_names()
            .iter()
            .map(|(n, s)| (n.clone(), (*s).clone()))
            .collect();
        let mut planner = Planner {
            names,
            stack: Vec::new(),
        };
        let mut root = planner.col(schema, &None)?;
        if !matches!(root.b, B::Struct(..)) {
            return Err("the reader schema is not a record".into());
        }
        root.nullable = true;
        Ok(root)
    }

    fn check(&self, v: &Value) -> std::result::Result<(), String> {
        let v = strip(v);
        if matches!(v, Value::Null) {
            return if self.nullable || matches!(self.b, B::Null(_)) {
                Ok(())
            } else {
                Err(format!("null for a non-null {} column", self.dt))
            };
        }
        let fits = match (&self.b, v) {
            (B::Bool(_), Value::Boolean(_))
            | (B::I32(_), Value::Int(_))
            | (B::I64(_), Value::Int(_) | Value::Long(_))
            | (B::F32(_), Value::Float(_) | Value::Int(_) | Value::Long(_))
            | (B::F64(_), Value::Double(_) | Value::Float(_) | Value::Int(_) | Value::Long(_))
            | (B::Bin(_), Value::Bytes(_) | Value::String(_) | Value::Fixed(..))
            | (B::Str(_, Text::String), Value::String(_))
            | (B::Str(_, Text::Enum), Value::Enum(..) | Value::String(_))
            | (B::Str(_, Text::Uuid), Value::Uuid(_) | Value::String(_))
            | (B::Str(_, Text::BigDecimal), Value::BigDecimal(_) | Value::String(_))
            | (B::Date(_), Value::Date(_) | Value::Int(_))
            | (B::TimeMs(_), Value::TimeMillis(_) | Value::Int(_))
            | (B::TimeUs(_), Value::TimeMicros(_) | Value::Long(_))
            | (
                B::TsMs(_),
                Value::TimestampMillis(_) | Value::LocalTimestampMillis(_) | Value::Long(_),
            )
            | (
                B::TsUs(_),
                Value::TimestampMicros(_) | Value::LocalTimestampMicros(_) | Value::Long(_),
            )
            | (
                B::TsNs(_),
                Value::TimestampNanos(_) | Value::LocalTimestampNanos(_) | Value::Long(_),
            )
            | (B::Duration(..), Value::Duration(_))
            | (B::Json(_), _) => true,
            (B::Fixed(_, size), Value::Fixed(_, b) | Value::Bytes(b)) => {
                if b.len() != *size {
                    return Err(format!("{} bytes for a fixed({size}) column", b.len()));
                }
                true
            }
            (B::Dec128(_, p), _) => {
                let n = decimal_i128(v)?;
                if !Decimal128Type::is_valid_decimal_precision(n, *p) {
                    return Err(format!("decimal {n} (unscaled) has more than {p} digits"));
                }
                true
            }
            (B::Dec256(_, p), _) => {
                let n = decimal_i256(v)?;
                if !Decimal256Type::is_valid_decimal_precision(n, *p) {
                    return Err(format!("decimal {n} (unscaled) has more than {p} digits"));
                }
                true
            }
            (B::Struct(children, _), Value::Record(fields)) => {
                for (i, (name, child)) in children.iter().enumerate() {
                    match field_value(fields, i, name) {
                        Some(fv) => child.check(fv).map_err(|e| format!("{name}: {e}"))?,
                        None if child.nullable => {}
                        None => return Err(format!("{name}: missing")),
                    }
                }
                true
            }
            (B::List(_, _, item), Value::Array(items)) => {
                for (i, x) in items.iter().enumerate() {
                    item.check(x).map_err(|e| format!("[{i}]: {e}"))?;
                }
                true
            }
            (B::Map(_, _, _, values), Value::Map(m)) => {
                for (k, x) in m {
                    values.check(x).map_err(|e| format!("[{k:?}]: {e}"))?;
                }
                true
            }
            _ => false,
        };
        if fits {
            Ok(())
        } else {
            Err(format!("{} for a {} column", kind(v), self.dt))
        }
    }

    fn append_null(&mut self) {
        match &mut self.b {
            B::Null(n) => *n += 1,
            B::Bool(b) => b.append_null(),
            B::I32(b) => b.append_null(),
            B::I64(b) => b.append_null(),
            B::F32(b) => b.append_null(),
            B::F64(b) => b.append_null(),
            B::Bin(b) => b.append_null(),
            B::Str(b, _) | B::Json(b) => b.append_null(),
            B::Fixed(b, _) => b.append_null(),
            B::Date(b) => b.append_null(),
            B::TimeMs(b) => b.append_null(),
            B::TimeUs(b) => b.append_null(),
            B::TsMs(b) => b.append_null(),
            B::TsUs(b) => b.append_null(),
            B::TsNs(b) => b.append_null(),
            B::Dec128(b, _) => b.append_null(),
            B::Dec256(b, _) => b.append_null(),
            B::Duration(parts, valid) => {
                for p in parts {
                    p.append_null();
                }
                valid.push(false);
            }
            B::Struct(children, valid) => {
                for (_, c) in children {
                    c.append_null();
                }
                valid.push(false);
            }
            B::List(offsets, valid, _) | B::Map(offsets, valid, _, _) => {
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last);
                valid.push(false);
            }
        }
    }

    /// Appends a value that passed [`Col::check`] (anything else appends a null).
    fn append(&mut self, v: &Value) {
        let v = strip(v);
        if matches!(v, Value::Null) {
            self.append_null();
            return;
        }
        match (&mut self.b, v) {
            (B::Bool(b), Value::Boolean(x)) => b.append_value(*x),
            (B::I32(b), Value::Int(x)) => b.append_value(*x),
            (B::I64(b), Value::Int(x)) => b.append_value(i64::from(*x)),
            (B::I64(b), Value::Long(x)) => b.append_value(*x),
            (B::F32(b), Value::Float(x)) => b.append_value(*x),
            (B::F32(b), Value::Int(x)) => b.append_value(*x as f32),
            (B::F32(b), Value::Long(x)) => b.append_value(*x as f32),
            (B::F64(b), Value::Double(x)) => b.append_value(*x),
            (B::F64(b), Value::Float(x)) => b.append_value(f64::from(*x)),
            (B::F64(b), Value::Int(x)) => b.append_value(f64::from(*x)),
            (B::F64(b), Value::Long(x)) => b.append_value(*x as f64),
            (B::Bin(b), Value::Bytes(x) | Value::Fixed(_, x)) => b.append_value(x),
            (B::Bin(b), Value::String(x)) => b.append_value(x.as_bytes()),
            (B::Str(b, _), Value::String(x) | Value::Enum(_, x)) => b.append_value(x),
            (B::Str(b, _), Value::Uuid(x)) => b.append_value(x.to_string()),
            (B::Str(b, _), Value::BigDecimal(x)) => b.append_value(x.to_string()),
            (B::Fixed(b, _), Value::Fixed(_, x) | Value::Bytes(x)) => {
                if b.append_value(x).is_err() {
                    b.append_null();
                }
            }
            (B::Date(b), Value::Date(x) | Value::Int(x)) => b.append_value(*x),
            (B::TimeMs(b), Value::TimeMillis(x) | Value::Int(x)) => b.append_value(*x),
            (B::TimeUs(b), Value::TimeMicros(x) | Value::Long(x)) => b.append_value(*x),
            (
                B::TsMs(b),
                Value::TimestampMillis(x) | Value::LocalTimestampMillis(x) | Value::Long(x),
            ) => b.append_value(*x),
            (
                B::TsUs(b),
                Value::TimestampMicros(x) | Value::LocalTimestampMicros(x) | Value::Long(x),
            ) => b.append_value(*x),
            (
                B::TsNs(b),
                Value::TimestampNanos(x) | Value::LocalTimestampNanos(x) | Value::Long(x),
            ) => b.append_value(*x),
            (B::Dec128(b, _), v) => b.append_option(decimal_i128(v).ok()),
            (B::Dec256(b, _), v) => b.append_option(decimal_i256(v).ok()),
            (B::Duration(parts, valid), Value::Duration(d)) => {
                parts[0].append_value(u32::from(d.months()));
                parts[1].append_value(u32::from(d.days()));
                parts[2].append_value(u32::from(d.millis()));
                valid.push(true);
            }
            (B::Struct(children, valid), Value::Record(fields)) => {
                for (i, (name, child)) in children.iter_mut().enumerate() {
                    match field_value(fields, i, name) {
                        Some(fv) => child.append(fv),
                        None => child.append_null(),
                    }
                }
                valid.push(true);
            }
            (B::List(offsets, valid, item), Value::Array(items)) => {
                for x in items {
                    item.append(x);
                }
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last.saturating_add(i32::try_from(items.len()).unwrap_or(0)));
                valid.push(true);
            }
            (B::Map(offsets, valid, keys, values), Value::Map(m)) => {
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (k, x) in &entries {
                    keys.append_value(k);
                    values.append(x);
                }
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last.saturating_add(i32::try_from(entries.len()).unwrap_or(0)));
                valid.push(true);
            }
            (B::Json(b), v) => b.append_value(json(v).to_string()),
            _ => self.append_null(),
        }
    }

    fn finish(&mut self) -> std::result::Result<ArrayRef, arrow::error::ArrowError> {
        let dt = self.dt.clone();
        Ok(match &mut self.b {
            B::Null(n) => Arc::new(NullArray::new(std::mem::take(n))),
            B::Bool(b) => Arc::new(b.finish()),
            B::I32(b) => Arc::new(b.finish()),
            B::I64(b) => Arc::new(b.finish()),
            B::F32(b) => Arc::new(b.finish()),
            B::F64(b) => Arc::new(b.finish()),
            B::Bin(b) => Arc::new(b.finish()),
            B::Str(b, _) | B::Json(b) => Arc::new(b.finish()),
            B::Fixed(b, _) => Arc::new(b.finish()),
            B::Date(b) => Arc::new(b.finish()),
            B::TimeMs(b) => Arc::new(b.finish()),
            B::TimeUs(b) => Arc::new(b.finish()),
            B::TsMs(b) => Arc::new(b.finish()),
            B::TsUs(b) => Arc::new(b.finish()),
            B::TsNs(b) => Arc::new(b.finish()),
            B::Dec128(b, _) => Arc::new(b.finish()),
            B::Dec256(b, _) => Arc::new(b.finish()),
            B::Duration(parts, valid) => {
                let DataType::Struct(fields) = dt else {
                    unreachable_type(&dt)?
                };
                let arrays: Vec<ArrayRef> = parts
                    .iter_mut()
                    .map(|p| Arc::new(p.finish()) as ArrayRef)
                    .collect();
                Arc::new(StructArray::try_new(fields, arrays, nulls(valid))?)
            }
            B::Struct(children, valid) => {
                let DataType::Struct(fields) = dt else {
                    unreachable_type(&dt)?
                };
                let mut arrays = Vec::with_capacity(children.len());
                for (_, c) in children.iter_mut() {
                    arrays.push(c.finish()?);
                }
                Arc::new(StructArray::try_new(fields, arrays, nulls(valid))?)
            }
            B::List(offsets, valid, item) => {
                let DataType::List(field) = dt else {
                    unreachable_type(&dt)?
                };
                let offsets = std::mem::replace(offsets, vec![0]);
                Arc::new(ListArray::try_new(
                    field,
                    OffsetBuffer::new(offsets.into()),
                    item.finish()?,
                    nulls(valid),
                )?)
            }
            B::Map(offsets, valid, keys, values) => {
                let DataType::Map(field, _) = dt else {
                    unreachable_type(&dt)?
                };
                let DataType::Struct(entry_fields) = field.data_type().clone() else {
                    unreachable_type(field.data_type())?
                };
                let entries = StructArray::try_new(
                    entry_fields,
                    vec![Arc::new(keys.finish()) as ArrayRef, values.finish()?],
                    None,
                )?;
                let offsets = std::mem::replace(offsets, vec![0]);
                Arc::new(MapArray::try_new(
                    field,
                    OffsetBuffer::new(offsets.into()),
                    entries,
                    nulls(valid),
                    false,
                )?)
            }
        })
    }
}

fn unreachable_type<T>(dt: &DataType) -> std::result::Result<T, arrow::error::ArrowError> {
    Err(arrow::error::ArrowError::SchemaError(format!(
        "typed Avro column: unexpected type {dt}"
    )))
}

fn nulls(valid: &mut Vec<bool>) -> Option<NullBuffer> {
    let valid = std::mem::take(valid);
    let nulls = NullBuffer::from(valid);
    (nulls.null_count() > 0).then_some(nulls)
}

impl Planner {
    /// The Arrow column (builder and type) for an Avro schema; `ns` resolves named types.
    fn col(&mut self, schema: &Schema, ns: &Namespace) -> std::result::Result<Col, String> {
        if let Some((b, dt)) = scalar_col(schema) {
            return Ok(Col::new(b, dt, false));
        }
        match schema {
            Schema::Null => Ok(Col::new(B::Null(0), DataType::Null, true)),
            Schema::Fixed(f) => {
                let size =
                    i32::try_from(f.size).map_err(|_| format!("fixed {} is too large", f.name))?;
                Ok(Col::new(
                    B::Fixed(FixedSizeBinaryBuilder::new(size), f.size),
                    DataType::FixedSizeBinary(size),
                    false,
                ))
            }
            Schema::Decimal(d) => decimal_col(d),
            Schema::Duration => Ok(duration_col()),
            Schema::Array(a) => self.array_col(a, ns),
            Schema::Map(m) => self.map_col(m, ns),
            Schema::Union(u) => self.union_col(u, ns),
            Schema::Record(r) => self.record_col(r, ns),
            Schema::Ref { name } => self.ref_col(name, ns),
            other => Err(format!("Avro type {other:?} has no column mapping")),
        }
    }

    /// A list column of the items' column.
    fn array_col(
        &mut self,
        a: &apache_avro::schema::ArraySchema,
        ns: &Namespace,
    ) -> std::result::Result<Col, String> {
        let leaf = |b: B, dt: DataType| Ok(Col::new(b, dt, false));
        let item = self.col(&a.items, ns)?;
        let field = Field::new("element", item.dt.clone(), item.nullable);
        leaf(
            B::List(vec![0], Vec::new(), Box::new(item)),
            DataType::List(Arc::new(field)),
        )
    }

    /// A map column with string keys.
    fn map_col(
        &mut self,
        m: &apache_avro::schema::MapSchema,
        ns: &Namespace,
    ) -> std::result::Result<Col, String> {
        let leaf = |b: B, dt: DataType| Ok(Col::new(b, dt, false));
        let value = self.col(&m.types, ns)?;
        let entries = Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", value.dt.clone(), value.nullable),
        ]);
        let field = Field::new("key_value", DataType::Struct(entries), false);
        leaf(
            B::Map(
                vec![0],
                Vec::new(),
                StringBuilder::with_capacity(0, 0),
                Box::new(value),
            ),
            DataType::Map(Arc::new(field), false),
        )
    }

    /// A union: `[null, T]` is a nullable T, other unions are JSON text.
    fn union_col(
        &mut self,
        u: &apache_avro::schema::UnionSchema,
        ns: &Namespace,
    ) -> std::result::Result<Col, String> {
        let others: Vec<&Schema> = u
            .variants()
            .iter()
            .filter(|s| !matches!(s, Schema::Null))
            .collect();
        let has_null = others.len() < u.variants().len();
        match others.as_slice() {
            [] => Ok(Col::new(B::Null(0), DataType::Null, true)),
            [one] => {
                let mut c = self.col(one, ns)?;
                c.nullable |= has_null;
                Ok(c)
            }
            _ => Ok(Col::new(
                B::Json(StringBuilder::with_capacity(0, 0)),
                DataType::Utf8,
                has_null,
            )),
        }
    }

    /// A struct column of the fields' columns.
    fn record_col(
        &mut self,
        r: &apache_avro::schema::RecordSchema,
        ns: &Namespace,
    ) -> std::result::Result<Col, String> {
        let leaf = |b: B, dt: DataType| Ok(Col::new(b, dt, false));
        if r.fields.is_empty() {
            return Err(format!(
                "record {} has no fields (Parquet cannot store an empty struct)",
                r.name
            ));
        }
        let name = r.name.fully_qualified_name(ns);
        self.stack.push(name.clone());
        let inner = name.namespace.clone();
        let mut children = Vec::with_capacity(r.fields.len());
        for f in &r.fields {
            let c = self
                .col(&f.schema, &inner)
                .map_err(|e| format!("{}: {e}", f.name))?;
            children.push((f.name.clone(), c));
        }
        self.stack.pop();
        let fields = Fields::from(
            children
                .iter()
                .map(|(n, c)| Field::new(n, c.dt.clone(), c.nullable))
                .collect::<Vec<_>>(),
        );
        leaf(B::Struct(children, Vec::new()), DataType::Struct(fields))
    }

    /// A reference to a named type; a recursive one becomes JSON text.
    fn ref_col(
        &mut self,
        name: &apache_avro::schema::Name,
        ns: &Namespace,
    ) -> std::result::Result<Col, String> {
        let leaf = |b: B, dt: DataType| Ok(Col::new(b, dt, false));
        let full = name.fully_qualified_name(ns);
        if self.stack.contains(&full) {
            // A recursive type has no finite Arrow type: JSON text.
            return leaf(B::Json(StringBuilder::with_capacity(0, 0)), DataType::Utf8);
        }
        let target = self
            .names
            .get(&full)
            .or_else(|| self.names.get(name))
            .cloned()
            .ok_or_else(|| format!("unknown type {full}"))?;
        self.col(&target, &full.namespace)
    }
}

/// The builder and type of a scalar Avro type (primitives and logical types without
/// parameters); `None` for the others. Builders start empty, not with arrow's `new()`
/// room for 1,024 values: there is a set per open segment, thousands with many partitions.
fn scalar_col(schema: &Schema) -> Option<(B, DataType)> {
    Some(match schema {
        Schema::Boolean => (B::Bool(BooleanBuilder::with_capacity(0)), DataType::Boolean),
        Schema::Int => (B::I32(Int32Builder::with_capacity(0)), DataType::Int32),
        Schema::Long => (B::I64(Int64Builder::with_capacity(0)), DataType::Int64),
        Schema::Float => (B::F32(Float32Builder::with_capacity(0)), DataType::Float32),
        Schema::Double => (B::F64(Float64Builder::with_capacity(0)), DataType::Float64),
        Schema::Bytes => (B::Bin(BinaryBuilder::with_capacity(0, 0)), DataType::Binary),
        Schema::String => (
            B::Str(StringBuilder::with_capacity(0, 0), Text::String),
            DataType::Utf8,
        ),
        Schema::Enum(_) => (
            B::Str(StringBuilder::with_capacity(0, 0), Text::Enum),
            DataType::Utf8,
        ),
        Schema::Uuid => (
            B::Str(StringBuilder::with_capacity(0, 0), Text::Uuid),
            DataType::Utf8,
        ),
        Schema::BigDecimal => (
            B::Str(StringBuilder::with_capacity(0, 0), Text::BigDecimal),
            DataType::Utf8,
        ),
        Schema::Date => (B::Date(Date32Builder::with_capacity(0)), DataType::Date32),
        Schema::TimeMillis => (
            B::TimeMs(Time32MillisecondBuilder::with_capacity(0)),
            DataType::Time32(TimeUnit::Millisecond),
        ),
        Schema::TimeMicros => (
            B::TimeUs(Time64MicrosecondBuilder::with_capacity(0)),
            DataType::Time64(TimeUnit::Microsecond),
        ),
        Schema::TimestampMillis => (
            B::TsMs(TimestampMillisecondBuilder::with_capacity(0).with_timezone_opt(utc())),
            DataType::Timestamp(TimeUnit::Millisecond, utc()),
        ),
        Schema::TimestampMicros => (
            B::TsUs(TimestampMicrosecondBuilder::with_capacity(0).with_timezone_opt(utc())),
            DataType::Timestamp(TimeUnit::Microsecond, utc()),
        ),
        Schema::TimestampNanos => (
            B::TsNs(TimestampNanosecondBuilder::with_capacity(0).with_timezone_opt(utc())),
            DataType::Timestamp(TimeUnit::Nanosecond, utc()),
        ),
        Schema::LocalTimestampMillis => (
            B::TsMs(TimestampMillisecondBuilder::with_capacity(0)),
            DataType::Timestamp(TimeUnit::Millisecond, None),
        ),
        Schema::LocalTimestampMicros => (
            B::TsUs(TimestampMicrosecondBuilder::with_capacity(0)),
            DataType::Timestamp(TimeUnit::Microsecond, None),
        ),
        Schema::LocalTimestampNanos => (
            B::TsNs(TimestampNanosecondBuilder::with_capacity(0)),
            DataType::Timestamp(TimeUnit::Nanosecond, None),
        ),
        _ => return None,
    })
}

/// A decimal column: Decimal128 up to 38 digits, Decimal256 up to 76.
fn decimal_col(d: &apache_avro::schema::DecimalSchema) -> std::result::Result<Col, String> {
    let leaf = |b: B, dt: DataType| Ok(Col::new(b, dt, false));
    let bad = || {
        format!(
            "decimal({}, {}) is not supported (precision 1 to 76, scale 0 to precision)",
            d.precision, d.scale
        )
    };
    let p = u8::try_from(d.precision).map_err(|_| bad())?;
    let s = i8::try_from(d.scale).map_err(|_| bad())?;
    if p <= 38 {
        let b = Decimal128Builder::with_capacity(0)
            .with_precision_and_scale(p, s)
            .map_err(|_| bad())?;
        leaf(B::Dec128(b, p), DataType::Decimal128(p, s))
    } else if p <= 76 {
        let b = Decimal256Builder::with_capacity(0)
            .with_precision_and_scale(p, s)
            .map_err(|_| bad())?;
        leaf(B::Dec256(b, p), DataType::Decimal256(p, s))
    } else {
        Err(bad())
    }
}

/// Avro's duration (months, days, millis) as a struct of three uint32.
fn duration_col() -> Col {
    let fields = Fields::from(
        ["months", "days", "millis"]
            .map(|n| Field::new(n, DataType::UInt32, false))
            .to_vec(),
    );
    Col::new(
        B::Duration(
            [
                UInt32Builder::with_capacity(0),
                UInt32Builder::with_capacity(0),
                UInt32Builder::with_capacity(0),
            ],
            Vec::new(),
        ),
        DataType::Struct(fields),
        false,
    )
}

/// The value inside a union branch.
fn strip(v: &Value) -> &Value {
    match v {
        Value::Union(_, inner) => strip(inner),
        v => v,
    }
}

/// The value of field `name`, at `i` in reader order or else by name.
fn field_value<'a>(fields: &'a [(String, Value)], i: usize, name: &str) -> Option<&'a Value> {
    match fields.get(i) {
        Some((n, v)) if n == name => Some(v),
        _ => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
    }
}

fn kind(v: &Value) -> String {
    format!("{:?}", apache_avro::schema::SchemaKind::from(v)).to_lowercase()
}

/// The two's-complement big-endian bytes of a decimal value.
fn decimal_bytes(v: &Value) -> std::result::Result<Vec<u8>, String> {
    match v {
        Value::Decimal(d) => Vec::<u8>::try_from(d).map_err(|e| e.to_string()),
        Value::Bytes(b) | Value::Fixed(_, b) => Ok(b.clone()),
        other => Err(format!("{} for a decimal column", kind(other))),
    }
}

/// Sign-extends big-endian two's-complement bytes to `N` bytes (`None`: too large).
fn sign_extend<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
    let negative = b.first().is_some_and(|x| x & 0x80 != 0);
    let fill = if negative { 0xff } else { 0 };
    let mut out = [fill; N];
    if b.len() > N {
        let (head, tail) = b.split_at(b.len() - N);
        let same_sign = tail.first().is_some_and(|x| (x & 0x80 != 0) == negative);
        if !(head.iter().all(|x| *x == fill) && same_sign) {
            return None;
        }
        out.copy_from_slice(tail);
    } else {
        out[N - b.len()..].copy_from_slice(b);
    }
    Some(out)
}

fn decimal_i128(v: &Value) -> std::result::Result<i128, String> {
    let b = decimal_bytes(v)?;
    sign_extend::<16>(&b)
        .map(i128::from_be_bytes)
        .ok_or_else(|| "the decimal does not fit 128 bits".to_string())
}

fn decimal_i256(v: &Value) -> std::result::Result<i256, String> {
    let b = decimal_bytes(v)?;
    sign_extend::<32>(&b)
        .map(i256::from_be_bytes)
        .ok_or_else(|| "the decimal does not fit 256 bits".to_string())
}

/// An Avro value as JSON: bytes in base64, decimals as their unscaled integers, logical
/// types as their underlying numbers (uuids and big decimals as text).
pub(crate) fn json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    let float = |f: f64| {
        serde_json::Number::from_f64(f)
            .map(J::Number)
            .unwrap_or_else(|| J::String(f.to_string()))
    };
    match v {
        Value::Null => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Int(x) | Value::Date(x) | Value::TimeMillis(x) => J::from(*x),
        Value::Long(x)
        | Value::TimeMicros(x)
        | Value::TimestampMillis(x)
        | Value::TimestampMicros(x)
        | Value::TimestampNanos(x)
        | Value::LocalTimestampMillis(x)
        | Value::LocalTimestampMicros(x)
        | Value::LocalTimestampNanos(x) => J::from(*x),
        Value::Float(f) => float(f64::from(*f)),
        Value::Double(f) => float(*f),
        Value::Bytes(b) | Value::Fixed(_, b) => J::String(B64.encode(b)),
        Value::String(s) | Value::Enum(_, s) => J::String(s.clone()),
        Value::Union(_, inner) => json(inner),
        Value::Array(items) => J::Array(items.iter().map(json).collect()),
        Value::Map(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            J::Object(
                entries
                    .into_iter()
                    .map(|(k, x)| (k.clone(), json(x)))
                    .collect(),
            )
        }
        Value::Record(fields) => {
            J::Object(fields.iter().map(|(k, x)| (k.clone(), json(x))).collect())
        }
        Value::Decimal(_) => match decimal_i128(v) {
            Ok(n) => J::String(n.to_string()),
            Err(_) => match decimal_i256(v) {
                Ok(n) => J::String(n.to_string()),
                Err(_) => J::Null,
            },
        },
        Value::BigDecimal(d) => J::String(d.to_string()),
        Value::Uuid(u) => J::String(u.to_string()),
        Value::Duration(d) => serde_json::json!({
            "months": u32::from(d.months()),
            "days": u32::from(d.days()),
            "millis": u32::from(d.millis()),
        }),
    }
}

#[cfg(test)]
mod tests;
