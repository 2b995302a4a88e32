use crate::parquet::{
    read_parquet, ParquetEncoder, ParquetFormat, ParquetOptions, ParquetRecordBatchReaderBuilder,
};
use crate::segment::{SegmentEncoder, SegmentFormat};
use crate::testdata::{
    assert_same, avro_reply, fake_registry, schema_dir, segment_batch, value_record, wire,
};
use apache_avro::types::Value;
use apache_avro::{Days, Decimal, Duration, Millis, Months, Schema, Uuid};
use arrow::array::{Array, AsArray, RecordBatch, StructArray};
use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use arrow::util::display::array_value_to_string;
use bytes::Bytes;
use ferry_core::Record;
use std::collections::HashMap;
use std::sync::Arc;

const ALL: &str = r#"{"type": "record", "name": "All", "namespace": "t", "fields": [
    {"name": "n", "type": "null"},
    {"name": "b", "type": "boolean"},
    {"name": "i", "type": "int"},
    {"name": "l", "type": "long"},
    {"name": "f", "type": "float"},
    {"name": "d", "type": "double"},
    {"name": "s", "type": "string"},
    {"name": "by", "type": "bytes"},
    {"name": "fx", "type": {"type": "fixed", "name": "F4", "size": 4}},
    {"name": "e", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
    {"name": "rec", "type": {"type": "record", "name": "Inner", "fields": [
        {"name": "x", "type": "int"},
        {"name": "y", "type": ["null", "string"], "default": null}]}},
    {"name": "arr", "type": {"type": "array", "items": "long"}},
    {"name": "arr_rec", "type": {"type": "array", "items": "Inner"}},
    {"name": "m", "type": {"type": "map", "values": "int"}},
    {"name": "opt", "type": ["null", "long"], "default": null},
    {"name": "opt2", "type": ["string", "null"]},
    {"name": "multi", "type": ["null", "int", "string"]},
    {"name": "date", "type": {"type": "int", "logicalType": "date"}},
    {"name": "tms", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "tus", "type": {"type": "long", "logicalType": "time-micros"}},
    {"name": "tsm", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "tsu", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "tsn", "type": {"type": "long", "logicalType": "timestamp-nanos"}},
    {"name": "ltsm", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
    {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "decf", "type": {"type": "fixed", "name": "D16", "size": 16, "logicalType": "decimal", "precision": 38, "scale": 4}},
    {"name": "wide", "type": {"type": "bytes", "logicalType": "decimal", "precision": 50, "scale": 0}},
    {"name": "bigd", "type": {"type": "bytes", "logicalType": "big-decimal"}},
    {"name": "uuid", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "dur", "type": {"type": "fixed", "name": "Dur", "size": 12, "logicalType": "duration"}}
]}"#;

fn inner(x: i32, y: Option<&str>) -> Value {
    Value::Record(vec![
        ("x".into(), Value::Int(x)),
        (
            "y".into(),
            match y {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(s) => Value::Union(1, Box::new(Value::String(s.into()))),
            },
        ),
    ])
}

fn all(full: bool) -> Value {
    let u = |i: u32, v: Value| Value::Union(i, Box::new(v));
    let ten_pow_30: i128 = 10i128.pow(30);
    Value::Record(vec![
        ("n".into(), Value::Null),
        ("b".into(), Value::Boolean(full)),
        ("i".into(), Value::Int(-5)),
        ("l".into(), Value::Long(1 << 40)),
        ("f".into(), Value::Float(1.5)),
        ("d".into(), Value::Double(2.25)),
        ("s".into(), Value::String("héllo".into())),
        ("by".into(), Value::Bytes(vec![0, 255])),
        ("fx".into(), Value::Fixed(4, vec![1, 2, 3, 4])),
        ("e".into(), Value::Enum(1, "GREEN".into())),
        ("rec".into(), inner(7, Some("why"))),
        (
            "arr".into(),
            Value::Array(if full {
                vec![Value::Long(1), Value::Long(2), Value::Long(3)]
            } else {
                vec![]
            }),
        ),
        ("arr_rec".into(), Value::Array(vec![inner(1, None)])),
        (
            "m".into(),
            Value::Map(if full {
                HashMap::from([
                    ("b".to_string(), Value::Int(2)),
                    ("a".to_string(), Value::Int(1)),
                ])
            } else {
                HashMap::new()
            }),
        ),
        (
            "opt".into(),
            if full {
                u(1, Value::Long(42))
            } else {
                u(0, Value::Null)
            },
        ),
        (
            "opt2".into(),
            if full {
                u(0, Value::String("first".into()))
            } else {
                u(1, Value::Null)
            },
        ),
        (
            "multi".into(),
            if full {
                u(2, Value::String("text".into()))
            } else {
                u(1, Value::Int(3))
            },
        ),
        ("date".into(), Value::Date(19_000)),
        ("tms".into(), Value::TimeMillis(3_600_000)),
        ("tus".into(), Value::TimeMicros(1)),
        ("tsm".into(), Value::TimestampMillis(1_700_000_000_123)),
        ("tsu".into(), Value::TimestampMicros(1_700_000_000_123_456)),
        ("tsn".into(), Value::TimestampNanos(5)),
        ("ltsm".into(), Value::LocalTimestampMillis(7)),
        (
            "dec".into(),
            Value::Decimal(Decimal::from(vec![0x30, 0x39])),
        ),
        ("decf".into(), Value::Decimal(Decimal::from(vec![0xff; 16]))),
        (
            "wide".into(),
            Value::Decimal(Decimal::from(ten_pow_30.to_be_bytes().to_vec())),
        ),
        ("bigd".into(), Value::BigDecimal("12.5".parse().unwrap())),
        (
            "uuid".into(),
            Value::Uuid(Uuid::parse_str("123e4567-e89b-12d3-a456-426614174000").unwrap()),
        ),
        (
            "dur".into(),
            Value::Duration(Duration::new(Months::new(1), Days::new(2), Millis::new(3))),
        ),
    ])
}

fn options(dir: &std::path::Path, extra: serde_json::Value) -> ParquetOptions {
    let mut value = serde_json::json!({"as": "avro", "schemas": dir});
    if let (Some(v), Some(e)) = (value.as_object_mut(), extra.as_object()) {
        v.extend(e.clone());
    }
    let o: ParquetOptions = serde_json::from_value(serde_json::json!({ "value": value })).unwrap();
    o.validate().unwrap();
    o
}

fn encode_all(options: &ParquetOptions, records: &[Record]) -> (Bytes, Vec<(Record, String)>) {
    let mut enc = ParquetEncoder::new(options, "orders", 3, 0);
    let mut out = Vec::new();
    for r in records {
        enc.append(r).unwrap();
        out.extend_from_slice(&enc.take().unwrap());
    }
    out.extend_from_slice(&enc.finish_file().unwrap());
    let rejected = SegmentEncoder::take_rejected(&mut enc);
    (Bytes::from(out), rejected)
}

fn batch_of(file: &Bytes) -> RecordBatch {
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(file.clone())
        .unwrap()
        .build()
        .unwrap()
        .collect::<std::result::Result<_, _>>()
        .unwrap();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn column(batch: &RecordBatch, name: &str) -> StructArray {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_struct()
        .clone()
}

fn text(s: &StructArray, field: &str, row: usize) -> String {
    let a = s
        .column_by_name(field)
        .unwrap_or_else(|| panic!("no field {field}"));
    if a.logical_nulls().is_some_and(|n| n.is_null(row)) {
        return "null".into();
    }
    if let DataType::Timestamp(_, Some(_)) = a.data_type() {
        // Displaying a named time zone needs chrono-tz: the number then.
        let n = arrow::compute::cast(a, &DataType::Int64).unwrap();
        return array_value_to_string(&n, row).unwrap();
    }
    array_value_to_string(a, row).unwrap()
}

#[test]
fn every_avro_type_maps_to_its_arrow_type() {
    let schema = Schema::parse_str(ALL).unwrap();
    let dir = schema_dir(&[(1, ALL)]);
    let records = vec![
        value_record(0, Some(wire(1, &schema, all(true)))),
        value_record(1, None),
        value_record(2, Some(wire(1, &schema, all(false)))),
    ];
    let (file, rejected) = encode_all(&options(dir.path(), serde_json::json!({})), &records);
    assert!(rejected.is_empty());
    // The envelope is unchanged: the file restores.
    assert_same(&read_parquet(file.clone()).unwrap(), &records);

    let batch = batch_of(&file);
    let field = batch
        .schema()
        .field_with_name("value_avro")
        .unwrap()
        .clone();
    assert!(field.is_nullable());
    let DataType::Struct(fields) = field.data_type() else {
        panic!("{field:?}");
    };
    let ty = |name: &str| {
        let f = fields.find(name).unwrap().1;
        (f.data_type().clone(), f.is_nullable())
    };
    let utc = Some(Arc::from("UTC"));
    let inner_fields = Fields::from(vec![
        Field::new("x", DataType::Int32, false),
        Field::new("y", DataType::Utf8, true),
    ]);
    let expected = [
        ("n", DataType::Null, true),
        ("b", DataType::Boolean, false),
        ("i", DataType::Int32, false),
        ("l", DataType::Int64, false),
        ("f", DataType::Float32, false),
        ("d", DataType::Float64, false),
        ("s", DataType::Utf8, false),
        ("by", DataType::Binary, false),
        ("fx", DataType::FixedSizeBinary(4), false),
        ("e", DataType::Utf8, false),
        ("rec", DataType::Struct(inner_fields.clone()), false),
        (
            "arr",
            DataType::List(Arc::new(Field::new("element", DataType::Int64, false))),
            false,
        ),
        (
            "arr_rec",
            DataType::List(Arc::new(Field::new(
                "element",
                DataType::Struct(inner_fields),
                false,
            ))),
            false,
        ),
        (
            "m",
            DataType::Map(
                Arc::new(Field::new(
                    "key_value",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", DataType::Utf8, false),
                        Field::new("value", DataType::Int32, false),
                    ])),
                    false,
                )),
                false,
            ),
            false,
        ),
        ("opt", DataType::Int64, true),
        ("opt2", DataType::Utf8, true),
        ("multi", DataType::Utf8, true),
        ("date", DataType::Date32, false),
        ("tms", DataType::Time32(TimeUnit::Millisecond), false),
        ("tus", DataType::Time64(TimeUnit::Microsecond), false),
        (
            "tsm",
            DataType::Timestamp(TimeUnit::Millisecond, utc.clone()),
            false,
        ),
        (
            "tsu",
            DataType::Timestamp(TimeUnit::Microsecond, utc.clone()),
            false,
        ),
        ("tsn", DataType::Timestamp(TimeUnit::Nanosecond, utc), false),
        (
            "ltsm",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        ("dec", DataType::Decimal128(10, 2), false),
        ("decf", DataType::Decimal128(38, 4), false),
        ("wide", DataType::Decimal256(50, 0), false),
        ("bigd", DataType::Utf8, false),
        ("uuid", DataType::Utf8, false),
        (
            "dur",
            DataType::Struct(Fields::from(vec![
                Field::new("months", DataType::UInt32, false),
                Field::new("days", DataType::UInt32, false),
                Field::new("millis", DataType::UInt32, false),
            ])),
            false,
        ),
    ];
    assert_eq!(fields.len(), expected.len());
    for (name, dt, nullable) in expected {
        assert_eq!(ty(name), (dt, nullable), "{name}");
    }

    let s = column(&batch, "value_avro");
    assert_eq!(
        (s.is_valid(0), s.is_valid(1), s.is_valid(2)),
        (true, false, true),
        "a tombstone is a null struct"
    );
    let row0: Vec<(&str, &str)> = vec![
        ("n", "null"),
        ("b", "true"),
        ("i", "-5"),
        ("l", "1099511627776"),
        ("f", "1.5"),
        ("d", "2.25"),
        ("s", "héllo"),
        ("by", "00ff"),
        ("fx", "01020304"),
        ("e", "GREEN"),
        ("rec", "{x: 7, y: why}"),
        ("arr", "[1, 2, 3]"),
        ("arr_rec", "[{x: 1, y: }]"),
        ("m", "{a: 1, b: 2}"),
        ("opt", "42"),
        ("opt2", "first"),
        ("multi", "\"text\""),
        ("date", "2022-01-08"),
        ("tms", "01:00:00"),
        ("tus", "00:00:00.000001"),
        ("tsm", "1700000000123"),
        ("tsu", "1700000000123456"),
        ("tsn", "5"),
        ("ltsm", "1970-01-01T00:00:00.007"),
        ("dec", "123.45"),
        ("decf", "-0.0001"),
        ("wide", "1000000000000000000000000000000"),
        ("bigd", "12.5"),
        ("uuid", "123e4567-e89b-12d3-a456-426614174000"),
        ("dur", "{months: 1, days: 2, millis: 3}"),
    ];
    for (name, want) in row0 {
        assert_eq!(text(&s, name, 0), want, "{name}");
    }
    let row2 = [
        ("b", "false"),
        ("arr", "[]"),
        ("m", "{}"),
        ("opt", "null"),
        ("opt2", "null"),
        ("multi", "3"),
    ];
    for (name, want) in row2 {
        assert_eq!(text(&s, name, 2), want, "{name}");
    }
}

#[test]
fn recursive_types_become_json_text() {
    let text_schema = r#"{"type": "record", "name": "Node", "fields": [
        {"name": "v", "type": "int"},
        {"name": "next", "type": ["null", "Node"]}
    ]}"#;
    let schema = Schema::parse_str(text_schema).unwrap();
    let node = |v: i32, next: Option<Value>| {
        Value::Record(vec![
            ("v".into(), Value::Int(v)),
            (
                "next".into(),
                match next {
                    None => Value::Union(0, Box::new(Value::Null)),
                    Some(n) => Value::Union(1, Box::new(n)),
                },
            ),
        ])
    };
    let dir = schema_dir(&[(3, text_schema)]);
    let records = [value_record(
        0,
        Some(wire(
            3,
            &schema,
            node(1, Some(node(2, Some(node(3, None))))),
        )),
    )];
    let (file, _) = encode_all(&options(dir.path(), serde_json::json!({})), &records);
    let s = column(&batch_of(&file), "value_avro");
    assert_eq!(
        s.column_by_name("next").unwrap().data_type(),
        &DataType::Utf8
    );
    assert_eq!(text(&s, "v", 0), "1");
    assert_eq!(text(&s, "next", 0), r#"{"v":2,"next":{"v":3,"next":null}}"#);
}

const SMALL: &str = r#"{"type": "record", "name": "Pay", "fields": [
    {"name": "id", "type": "long"},
    {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}}
]}"#;

fn pay(id: i64, cents: i16) -> Vec<u8> {
    let schema = Schema::parse_str(SMALL).unwrap();
    wire(
        5,
        &schema,
        Value::Record(vec![
            ("id".into(), Value::Long(id)),
            (
                "amount".into(),
                Value::Decimal(Decimal::from(cents.to_be_bytes().to_vec())),
            ),
        ]),
    )
}

#[test]
fn dead_letter_keeps_rows_with_null_structs_and_collects_reasons() {
    let dir = schema_dir(&[(5, SMALL)]);
    let records = vec![
        value_record(0, Some(pay(1, 1234))),
        value_record(1, Some(b"{\"json\": true}".to_vec())),
        value_record(2, Some(pay(2, 12345))),
        value_record(3, None),
        value_record(4, Some(vec![0, 0, 0, 0, 9, 1])),
        value_record(5, Some(pay(3, -99))),
        value_record(6, Some(vec![0, 0, 0, 0, 5, 2])),
    ];
    let o = options(dir.path(), serde_json::json!({"on_error": "dead_letter"}));
    let (file, rejected) = encode_all(&o, &records);
    let got: Vec<(i64, &str)> = rejected
        .iter()
        .map(|(r, why)| (r.offset, why.as_str()))
        .collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0].0, 1);
    assert!(got[0].1.contains("starts with byte 0x7b"), "{}", got[0].1);
    assert_eq!(got[1].0, 2);
    assert!(
        got[1].1.contains("does not fit the columns") && got[1].1.contains("more than 4 digits"),
        "{}",
        got[1].1
    );
    assert_eq!(got[2].0, 4);
    assert!(got[2].1.contains("no file 9.avsc"), "{}", got[2].1);
    assert_eq!(got[3].0, 6);
    assert!(got[3].1.contains("does not decode"), "{}", got[3].1);
    assert_eq!(rejected[1].0, records[2]);

    assert_same(&read_parquet(file.clone()).unwrap(), &records);
    let s = column(&batch_of(&file), "value_avro");
    let valid: Vec<bool> = (0..7).map(|i| s.is_valid(i)).collect();
    assert_eq!(valid, [true, false, false, false, false, true, false]);
    assert_eq!(text(&s, "amount", 0), "12.34");
    assert_eq!(text(&s, "amount", 5), "-0.99");

    // `null` gives the same file without rejects; `fail` stops at the first bad value.
    let (same, none) = encode_all(&options(dir.path(), serde_json::json!({})), &records);
    assert!(none.is_empty());
    assert_eq!(batch_of(&same), batch_of(&file));
    let mut enc = ParquetEncoder::new(
        &options(dir.path(), serde_json::json!({"on_error": "fail"})),
        "orders",
        3,
        0,
    );
    enc.append(&records[0]).unwrap();
    let e = enc.append(&records[1]).unwrap_err().to_string();
    assert!(
        e.contains("topic orders partition 3 offset 1:") && e.contains("magic byte"),
        "{e}"
    );
}

#[test]
fn rows_before_the_reader_schema_is_known_are_null_and_a_file_without_one_has_no_column() {
    let dir = schema_dir(&[(5, SMALL)]);
    let o = options(dir.path(), serde_json::json!({}));
    let records = vec![
        value_record(0, None),
        value_record(1, Some(b"text".to_vec())),
        value_record(2, Some(pay(1, 5))),
        value_record(3, None),
    ];
    let (file, _) = encode_all(&o, &records);
    assert_same(&read_parquet(file.clone()).unwrap(), &records);
    let s = column(&batch_of(&file), "value_avro");
    let valid: Vec<bool> = (0..4).map(|i| s.is_valid(i)).collect();
    assert_eq!(valid, [false, false, true, false]);
    assert_eq!(text(&s, "id", 2), "1");

    let bad = vec![
        value_record(0, None),
        value_record(1, Some(b"text".to_vec())),
    ];
    let (file, _) = encode_all(&o, &bad);
    assert_same(&read_parquet(file.clone()).unwrap(), &bad);
    assert!(batch_of(&file).column_by_name("value_avro").is_none());
}

#[test]
fn unsupported_reader_schemas_are_clear_errors() {
    let empty = r#"{"type": "record", "name": "Empty", "fields": [
        {"name": "e", "type": {"type": "record", "name": "Nothing", "fields": []}}]}"#;
    let schema = Schema::parse_str(empty).unwrap();
    let dir = schema_dir(&[(8, empty)]);
    let mut enc = ParquetEncoder::new(&options(dir.path(), serde_json::json!({})), "orders", 3, 0);
    let value = Value::Record(vec![("e".into(), Value::Record(vec![]))]);
    let e = enc
        .append(&value_record(0, Some(wire(8, &schema, value))))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("reader schema id 8 of topic orders: e: record Nothing has no fields"),
        "{e}"
    );
}

#[tokio::test]
async fn the_format_fetches_schemas_from_the_registry_before_encoding() {
    let reg = fake_registry(vec![(5, avro_reply(SMALL))], None, 0).await;
    let o: ParquetOptions = serde_json::from_value(serde_json::json!({
        "value": {"as": "avro", "registry": {"url": reg.url}, "column": "pay"}
    }))
    .unwrap();
    o.validate().unwrap();
    let format = ParquetFormat::new(o);
    let batch = segment_batch(vec![
        value_record(0, Some(pay(1, 100))),
        value_record(1, Some(pay(2, 250))),
    ]);
    format.prepare(&batch).await.unwrap();
    // A second segment of the same run fetches nothing.
    format.prepare(&batch).await.unwrap();
    assert_eq!(reg.requests.lock().unwrap().len(), 1);
    let mut enc = format.encoder("orders", 3, 0);
    let mut file = enc.encode(&batch).unwrap().to_vec();
    file.extend_from_slice(&enc.finish().unwrap());
    let s = column(&batch_of(&Bytes::from(file)), "pay");
    assert_eq!(
        (text(&s, "id", 1), text(&s, "amount", 1)),
        ("2".into(), "2.50".into())
    );

    // Without the prepare step, an encoder cannot reach the registry: an error, not a null.
    let fresh = ParquetFormat::new(format.options.clone());
    let mut enc = fresh.encoder("orders", 3, 0);
    let e = enc.encode(&batch).unwrap_err().to_string();
    assert!(e.contains("was not fetched"), "{e}");
}
