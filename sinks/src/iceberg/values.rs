//! Typed columns from JSON values (`value: {as: json}`): the top-level fields of each
//! value that is a JSON object, in one struct column (`value_json` by default), the way the
//! `parquet` export infers them (nested objects and arrays are JSON text).
//!
//! The columns follow the data: a field never seen before becomes a new column of the
//! table (Iceberg schema evolution: older rows read it as null); a field whose value does
//! not fit its column's type (a string where a long was) is null in that row, and the
//! record goes to the dead-letter location with the reason. Nothing fails the pipeline.

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, StructArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields};
use ferry_core::{Error, Record, Result};
use iceberg::spec::{NestedField, PrimitiveType, Schema, StructType, Type};
use serde_json::{Map, Value};
use std::sync::Arc;

/// A column type inferred from JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// `true`/`false`.
    Boolean,
    /// Whole numbers that fit 64 bits.
    Long,
    /// Other numbers.
    Double,
    /// Strings, and objects or arrays as JSON text.
    String,
}

impl FieldType {
    /// The type of a JSON value; `None` for null (it fits any column).
    pub fn of(v: &Value) -> Option<FieldType> {
        match v {
            Value::Null => None,
            Value::Bool(_) => Some(FieldType::Boolean),
            Value::Number(n) if n.is_i64() => Some(FieldType::Long),
            Value::Number(_) => Some(FieldType::Double),
            Value::String(_) | Value::Array(_) | Value::Object(_) => Some(FieldType::String),
        }
    }

    /// The Iceberg type.
    pub fn iceberg(self) -> Type {
        Type::Primitive(match self {
            FieldType::Boolean => PrimitiveType::Boolean,
            FieldType::Long => PrimitiveType::Long,
            FieldType::Double => PrimitiveType::Double,
            FieldType::String => PrimitiveType::String,
        })
    }

    fn from_iceberg(t: &Type) -> Option<FieldType> {
        match t {
            Type::Primitive(PrimitiveType::Boolean) => Some(FieldType::Boolean),
            Type::Primitive(PrimitiveType::Long) => Some(FieldType::Long),
            Type::Primitive(PrimitiveType::Double) => Some(FieldType::Double),
            Type::Primitive(PrimitiveType::String) => Some(FieldType::String),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FieldType::Boolean => "boolean",
            FieldType::Long => "long",
            FieldType::Double => "double",
            FieldType::String => "string",
        }
    }

    /// Whether a value of type `found` can be stored in a column of this type (a whole
    /// number in a double column can; a double in a long column cannot).
    fn accepts(self, found: FieldType) -> bool {
        self == found || (self == FieldType::Double && found == FieldType::Long)
    }
}

/// The values of a batch, parsed once.
pub type Parsed = Vec<Option<Map<String, Value>>>;

/// Rows whose values did not fit their columns, with the reasons.
pub type Rejected = Vec<(usize, String)>;

/// The typed columns the table has now.
#[derive(Debug, Clone)]
pub struct JsonColumns {
    column: String,
    fields: Vec<(String, FieldType)>,
}

impl JsonColumns {
    /// The columns under `column` in the table's schema (none when it has no such column).
    pub fn from_schema(column: &str, schema: &Schema) -> JsonColumns {
        let fields = match schema.field_by_name(column).map(|f| f.field_type.as_ref()) {
            Some(Type::Struct(s)) => s
                .fields()
                .iter()
                .filter_map(|f| FieldType::from_iceberg(&f.field_type).map(|t| (f.name.clone(), t)))
                .collect(),
            _ => Vec::new(),
        };
        JsonColumns {
            column: column.to_string(),
            fields,
        }
    }

    /// No columns yet (the table is not loaded).
    pub fn empty(column: &str) -> JsonColumns {
        JsonColumns {
            column: column.to_string(),
            fields: Vec::new(),
        }
    }

    /// Whether the table has a column for the field `name`.
    pub fn has_field(&self, name: &str) -> bool {
        self.fields.iter().any(|(n, _)| n == name)
    }

    /// The struct column's name.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// Whether the table has the struct column yet.
    pub fn has_column(&self) -> bool {
        !self.fields.is_empty()
    }

    /// Parses the values of `records` (values that are not JSON objects give `None`).
    pub fn parse(records: &[Record]) -> Parsed {
        records
            .iter()
            .map(|r| {
                let v = r.value.as_deref()?;
                match serde_json::from_slice::<Value>(v) {
                    Ok(Value::Object(m)) => Some(m),
                    _ => None,
                }
            })
            .collect()
    }

    /// Fields of `parsed` the table has no column for, with the type of their first
    /// non-null value, in the order first seen.
    pub fn new_fields(&self, parsed: &Parsed) -> Vec<(String, FieldType)> {
        let mut out: Vec<(String, FieldType)> = Vec::new();
        for m in parsed.iter().flatten() {
            for (k, v) in m {
                if self.fields.iter().any(|(n, _)| n == k) || out.iter().any(|(n, _)| n == k) {
                    continue;
                }
                if let Some(t) = FieldType::of(v) {
                    out.push((k.clone(), t));
                }
            }
        }
        out
    }

    /// The Iceberg type of the whole struct column with these fields (to add it).
    pub fn struct_type(fields: &[(String, FieldType)]) -> Type {
        Type::Struct(StructType::new(
            fields
                .iter()
                .map(|(n, t)| NestedField::optional(0, n.clone(), t.iceberg()).into())
                .collect(),
        ))
    }

    /// The struct column of `parsed` (absent while the table has no field), and the rows
    /// whose values did not fit, with the reasons.
    pub fn build(&self, parsed: &Parsed) -> Result<(Option<ArrayRef>, Rejected)> {
        if self.fields.is_empty() {
            return Ok((None, Vec::new()));
        }
        let mut builders: Vec<Builder> =
            self.fields.iter().map(|(_, t)| Builder::new(*t)).collect();
        let mut rejected = Vec::new();
        let mut valid = Vec::with_capacity(parsed.len());
        for (row, m) in parsed.iter().enumerate() {
            valid.push(m.is_some());
            let mut reasons = Vec::new();
            for ((name, t), b) in self.fields.iter().zip(builders.iter_mut()) {
                let v = m.as_ref().and_then(|m| m.get(name));
                match v.and_then(|v| FieldType::of(v).map(|found| (v, found))) {
                    None => b.null(),
                    Some((v, found)) if t.accepts(found) => b.push(v),
                    Some((_, found)) => {
                        b.null();
                        reasons.push(format!(
                            "field `{name}` is {} here, but its column in {} is {}",
                            found.name(),
                            self.column,
                            t.name()
                        ));
                    }
                }
            }
            if !reasons.is_empty() {
                rejected.push((row, reasons.join("; ")));
            }
        }
        let fields: Fields = self
            .fields
            .iter()
            .map(|(n, t)| Field::new(n, data_type(*t), true))
            .collect();
        let arrays: Vec<ArrayRef> = builders.into_iter().map(Builder::finish).collect();
        let array = StructArray::try_new(fields, arrays, Some(NullBuffer::from(valid)))
            .map_err(|e| Error::internal(format!("iceberg: typed columns: {e}")))?;
        Ok((Some(Arc::new(array)), rejected))
    }
}

fn data_type(t: FieldType) -> DataType {
    match t {
        FieldType::Boolean => DataType::Boolean,
        FieldType::Long => DataType::Int64,
        FieldType::Double => DataType::Float64,
        FieldType::String => DataType::Utf8,
    }
}

enum Builder {
    Boolean(BooleanBuilder),
    Long(Int64Builder),
    Double(Float64Builder),
    String(StringBuilder),
}

impl Builder {
    fn new(t: FieldType) -> Builder {
        match t {
            FieldType::Boolean => Builder::Boolean(BooleanBuilder::new()),
            FieldType::Long => Builder::Long(Int64Builder::new()),
            FieldType::Double => Builder::Double(Float64Builder::new()),
            FieldType::String => Builder::String(StringBuilder::new()),
        }
    }

    fn null(&mut self) {
        match self {
            Builder::Boolean(b) => b.append_null(),
            Builder::Long(b) => b.append_null(),
            Builder::Double(b) => b.append_null(),
            Builder::String(b) => b.append_null(),
        }
    }

    /// Appends a value already known to fit (see [`FieldType::accepts`]).
    fn push(&mut self, v: &Value) {
        match (self, v) {
            (Builder::Boolean(b), Value::Bool(x)) => b.append_value(*x),
            (Builder::Long(b), Value::Number(n)) => b.append_option(n.as_i64()),
            (Builder::Double(b), Value::Number(n)) => b.append_option(n.as_f64()),
            (Builder::String(b), Value::String(s)) => b.append_value(s),
            (Builder::String(b), other) => b.append_value(other.to_string()),
            (b, _) => b.null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Boolean(mut b) => Arc::new(b.finish()),
            Builder::Long(mut b) => Arc::new(b.finish()),
            Builder::Double(mut b) => Arc::new(b.finish()),
            Builder::String(mut b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    fn records(values: &[&str]) -> Vec<Record> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                Record::new(
                    "t".into(),
                    0,
                    i as i64,
                    Some(bytes::Bytes::copy_from_slice(v.as_bytes())),
                )
            })
            .collect()
    }

    #[test]
    fn new_fields_take_the_type_of_their_first_value() {
        let cols = JsonColumns {
            column: "value_json".into(),
            fields: vec![("id".into(), FieldType::Long)],
        };
        let parsed = JsonColumns::parse(&records(&[
            r#"{"id": 1, "note": null}"#,
            r#"{"id": 2, "note": "x", "price": 1.5, "tags": [1]}"#,
            "not json",
        ]));
        assert_eq!(
            cols.new_fields(&parsed),
            [
                ("note".to_string(), FieldType::String),
                ("price".to_string(), FieldType::Double),
                ("tags".to_string(), FieldType::String)
            ]
        );
    }

    #[test]
    fn a_value_of_another_type_is_null_and_rejected_with_its_reason() {
        let cols = JsonColumns {
            column: "value_json".into(),
            fields: vec![
                ("id".into(), FieldType::Long),
                ("p".into(), FieldType::Double),
            ],
        };
        let parsed = JsonColumns::parse(&records(&[
            r#"{"id": 1, "p": 2}"#,
            r#"{"id": "one", "p": 2.5}"#,
            "[1, 2]",
        ]));
        let (array, rejected) = cols.build(&parsed).expect("build");
        let array = array.expect("column");
        let s = array.as_struct();
        let ids = s.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(ids.value(0), 1);
        assert!(ids.is_null(1));
        let p = s.column(1).as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!((p.value(0), p.value(1)), (2.0, 2.5));
        assert!(
            s.is_null(2),
            "a value that is not an object leaves the struct null"
        );
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, 1);
        assert!(
            rejected[0].1.contains("`id` is string"),
            "{}",
            rejected[0].1
        );
    }
}
