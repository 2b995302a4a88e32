//! The table's shape: the envelope as an Iceberg schema (the columns of the `parquet`
//! export, see `ferry_formats::parquet`), `partition_by` parsed into a partition spec, and
//! Arrow batches made to fit the table's current schema.

use arrow::array::{new_null_array, Array, ArrayRef, ListArray, RecordBatch, StructArray};
use arrow::datatypes::{DataType, FieldRef, Schema as ArrowSchema};
use ferry_core::{Error, Result};
use iceberg::spec::{
    ListType, NestedField, PrimitiveType, Schema, StructType, Transform, Type, UnboundPartitionSpec,
};
use std::str::FromStr;
use std::sync::Arc;

/// The envelope columns, in order.
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

/// The envelope as an Iceberg schema (ids are placeholders: the catalog assigns fresh ones
/// when the table is created).
pub fn envelope_schema() -> Result<Schema> {
    let string = || Type::Primitive(PrimitiveType::String);
    let binary = || Type::Primitive(PrimitiveType::Binary);
    let header = Type::Struct(StructType::new(vec![
        NestedField::required(10, "key", string()).into(),
        NestedField::optional(11, "value", binary()).into(),
    ]));
    Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "topic", string()).into(),
            NestedField::required(2, "partition", Type::Primitive(PrimitiveType::Int)).into(),
            NestedField::required(3, "offset", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::required(4, "timestamp", Type::Primitive(PrimitiveType::Timestamptz))
                .into(),
            NestedField::required(5, "timestamp_type", string()).into(),
            NestedField::optional(6, "key", binary()).into(),
            NestedField::optional(7, "value", binary()).into(),
            NestedField::required(
                8,
                "headers",
                Type::List(ListType::new(
                    NestedField::list_element(9, header, true).into(),
                )),
            )
            .into(),
        ])
        .build()
        .map_err(|e| Error::internal(format!("iceberg envelope schema: {e}")))
}

/// One `partition_by` entry: a transform of a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionField {
    /// The source column.
    pub column: String,
    /// The transform.
    pub transform: Transform,
}

impl PartitionField {
    /// Parses `topic`, `identity(partition)`, `day(timestamp)`, `bucket(16, key)`,
    /// `truncate(4, topic)` and the like.
    pub fn parse(spec: &str) -> Result<PartitionField> {
        let bad = |why: &str| {
            Error::config(format!(
                "iceberg sink: partition_by `{spec}`: {why} (use e.g. topic, identity(partition), day(timestamp), hour(timestamp), bucket(16, key), truncate(4, topic))"
            ))
        };
        let s = spec.trim();
        let (transform, column) = match s.split_once('(') {
            None => (Transform::Identity, s.to_string()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix(')').ok_or_else(|| bad("missing `)`"))?;
                let name = name.trim().to_ascii_lowercase();
                match inner.split_once(',') {
                    Some((n, col)) => {
                        let n: u32 = n
                            .trim()
                            .parse()
                            .map_err(|_| bad("the width must be a whole number"))?;
                        let t = Transform::from_str(&format!("{name}[{n}]"))
                            .map_err(|_| bad("unknown transform"))?;
                        (t, col.trim().to_string())
                    }
                    None => {
                        let t = Transform::from_str(&name).map_err(|_| bad("unknown transform"))?;
                        if matches!(t, Transform::Bucket(_) | Transform::Truncate(_)) {
                            return Err(bad("bucket and truncate need a width"));
                        }
                        (t, inner.trim().to_string())
                    }
                }
            }
        };
        if !ENVELOPE.contains(&column.as_str()) || column == "headers" {
            return Err(bad(&format!(
                "`{column}` is not an envelope column that can partition (topic, partition, offset, timestamp, timestamp_type, key, value)"
            )));
        }
        if matches!(transform, Transform::Void | Transform::Unknown) {
            return Err(bad("unknown transform"));
        }
        Ok(PartitionField { column, transform })
    }

    /// The partition field's name: the column for identity, else `<column>_<transform>`
    /// (`timestamp_day`, `key_bucket`), as Iceberg's Java API names them.
    pub fn name(&self) -> String {
        let suffix = match self.transform {
            Transform::Identity => return self.column.clone(),
            Transform::Bucket(_) => "bucket",
            Transform::Truncate(_) => "trunc",
            Transform::Year => "year",
            Transform::Month => "month",
            Transform::Day => "day",
            Transform::Hour => "hour",
            Transform::Void | Transform::Unknown => "void",
        };
        format!("{}_{suffix}", self.column)
    }
}

/// The partition spec of `partition_by` over `schema`: a new table's first, spec id 0 (Java
/// REST catalogs refuse a spec without `spec-id` in a create-table request).
pub fn partition_spec(schema: &Schema, partition_by: &[String]) -> Result<UnboundPartitionSpec> {
    let mut builder = UnboundPartitionSpec::builder().with_spec_id(0);
    for spec in partition_by {
        let field = PartitionField::parse(spec)?;
        let source = schema
            .field_by_name(&field.column)
            .ok_or_else(|| Error::internal(format!("no column {}", field.column)))?;
        builder = builder
            .add_partition_field(source.id, field.name(), field.transform)
            .map_err(|e| Error::config(format!("iceberg sink: partition_by `{spec}`: {e}")))?;
    }
    Ok(builder.build())
}

/// The table's Arrow schema (with Iceberg's field ids, which its Parquet writer needs).
pub fn arrow_schema(schema: &Schema) -> Result<Arc<ArrowSchema>> {
    iceberg::arrow::schema_to_arrow_schema(schema)
        .map(Arc::new)
        .map_err(|e| Error::internal(format!("iceberg schema to arrow: {e}")))
}

/// `batch`'s columns matched by name to `target` (the table's current schema): types cast
/// where they differ (millisecond to microsecond timestamps, binary to large binary), nested
/// fields renamed and numbered like the table's, columns the batch lacks null.
pub fn fit(batch: &RecordBatch, target: &Arc<ArrowSchema>) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let columns = target
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => fit_array(c, f),
            None => Ok(new_null_array(f.data_type(), rows)),
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(target.clone(), columns)
        .map_err(|e| Error::internal(format!("iceberg: batch does not fit the table: {e}")))
}

fn fit_array(array: &ArrayRef, field: &FieldRef) -> Result<ArrayRef> {
    let arrow_err = |e: arrow::error::ArrowError| {
        Error::internal(format!("iceberg: column {}: {e}", field.name()))
    };
    if array.data_type() == field.data_type() {
        return Ok(array.clone());
    }
    match (array.data_type(), field.data_type()) {
        (DataType::Struct(_), DataType::Struct(fields)) => {
            let s = array
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or_else(|| Error::internal("iceberg: not a struct array"))?;
            let children = fields
                .iter()
                .map(|f| match s.column_by_name(f.name()) {
                    Some(c) => fit_array(c, f),
                    None => Ok(new_null_array(f.data_type(), s.len())),
                })
                .collect::<Result<Vec<_>>>()?;
            let out = StructArray::try_new(fields.clone(), children, s.nulls().cloned())
                .map_err(arrow_err)?;
            Ok(Arc::new(out))
        }
        (DataType::List(_), DataType::List(item)) => {
            let l = array
                .as_any()
                .downcast_ref::<ListArray>()
                .ok_or_else(|| Error::internal("iceberg: not a list array"))?;
            let values = fit_array(l.values(), item)?;
            let out = ListArray::try_new(
                item.clone(),
                l.offsets().clone(),
                values,
                l.nulls().cloned(),
            )
            .map_err(arrow_err)?;
            Ok(Arc::new(out))
        }
        _ => arrow::compute::cast(array, field.data_type()).map_err(arrow_err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_by_entries_parse_into_transforms() {
        let p = |s| PartitionField::parse(s).expect(s);
        assert_eq!(p("topic").transform, Transform::Identity);
        assert_eq!(p("identity(partition)").column, "partition");
        assert_eq!(p("day(timestamp)").transform, Transform::Day);
        assert_eq!(p("day(timestamp)").name(), "timestamp_day");
        assert_eq!(p("bucket(16, key)").transform, Transform::Bucket(16));
        assert_eq!(p("truncate(4,topic)").transform, Transform::Truncate(4));
        for bad in [
            "day(nope)",
            "fortnight(timestamp)",
            "bucket(key)",
            "day(timestamp",
            "headers",
        ] {
            let e = PartitionField::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn the_partition_spec_names_the_envelope_columns() {
        let schema = envelope_schema().expect("schema");
        let spec = partition_spec(
            &schema,
            &[
                "day(timestamp)".into(),
                "topic".into(),
                "identity(partition)".into(),
            ],
        )
        .expect("spec");
        let names: Vec<_> = spec.fields().iter().map(|f| f.name.clone()).collect();
        assert_eq!(names, ["timestamp_day", "topic", "partition"]);
    }

    #[test]
    fn an_envelope_batch_fits_the_table_schema() {
        let mut rec = ferry_core::Record::new("t".into(), 3, 7, None);
        rec.timestamp = 1_700_000_000_123;
        rec.key = Some(bytes::Bytes::from_static(b"k"));
        rec.headers = vec![ferry_core::Header {
            key: "h".into(),
            value: Some(bytes::Bytes::from_static(b"v")),
        }];
        let batch = ferry_formats::parquet::envelope_batch(&[rec]).expect("batch");
        let schema = envelope_schema().expect("schema");
        let target = arrow_schema(&schema).expect("arrow");
        let fitted = fit(&batch, &target).expect("fit");
        assert_eq!(fitted.num_rows(), 1);
        let ts = fitted
            .column_by_name("timestamp")
            .expect("timestamp")
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .expect("micros")
            .value(0);
        assert_eq!(ts, 1_700_000_000_123_000);
    }
}
