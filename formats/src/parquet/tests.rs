use super::*;
use crate::testdata::{assert_same, control, raw_segment_batch, sample_records, segment_batch};
use ::parquet::file::reader::{FileReader, SerializedFileReader};
use ::parquet::file::statistics::Statistics;

fn file_reader(bytes: &[u8]) -> SerializedFileReader<Bytes> {
    SerializedFileReader::new(Bytes::copy_from_slice(bytes)).unwrap()
}

#[test]
fn round_trip_every_compression() {
    let records = sample_records();
    for compression in [
        ParquetCompression::None,
        ParquetCompression::Snappy,
        ParquetCompression::Zstd,
    ] {
        let options = ParquetOptions {
            compression,
            ..ParquetOptions::default()
        };
        let bytes = encode(&options, "orders", 3, 0, &records).unwrap();
        assert_same(&read_parquet(Bytes::from(bytes)).unwrap(), &records);
    }
}

#[test]
fn footer_has_span_compression_and_statistics() {
    let records = sample_records();
    let mut enc = ParquetFormat::default().encoder("orders", 3, 0);
    let mut file = Vec::new();
    file.extend_from_slice(&enc.encode(&segment_batch(records.clone())).unwrap());
    // The batch span reaches past the last record (e.g. a trailing transaction marker).
    let mut tail = segment_batch(vec![]);
    tail.first_offset = 40;
    tail.next_offset = 42;
    file.extend_from_slice(&enc.encode(&tail).unwrap());
    file.extend_from_slice(&enc.finish().unwrap());

    let r = ParquetRecords::new(Bytes::from(file.clone())).unwrap();
    assert_eq!(r.metadata_value(META_TOPIC), Some("orders"));
    assert_eq!(r.metadata_value(META_PARTITION), Some("3"));
    assert_eq!(r.metadata_value(META_FIRST_OFFSET), Some("0"));
    assert_eq!(r.metadata_value(META_NEXT_OFFSET), Some("42"));

    let reader = file_reader(&file);
    let meta = reader.metadata();
    assert_eq!(meta.file_metadata().num_rows(), records.len() as i64);
    let rg = meta.row_group(0);
    for col in rg.columns() {
        assert!(
            matches!(col.compression(), Compression::ZSTD(_)),
            "{}: {:?}",
            col.column_path(),
            col.compression()
        );
    }
    let offset = rg
        .columns()
        .iter()
        .find(|c| c.column_path().string() == "offset")
        .unwrap();
    match offset.statistics() {
        Some(Statistics::Int64(s)) => {
            assert_eq!(s.min_opt(), Some(&0));
            assert_eq!(s.max_opt(), Some(&39));
        }
        other => panic!("offset statistics: {other:?}"),
    }
    // Page statistics: column and offset indexes are written.
    assert!(offset.column_index_offset().is_some());
    assert!(offset.offset_index_offset().is_some());
    // The schema: timestamp in UTC milliseconds, key/value optional binary.
    let schema = meta.file_metadata().schema_descr();
    let ts = schema.column(3);
    assert_eq!(ts.name(), "timestamp");
    assert!(format!("{:?}", ts.logical_type_ref()).contains("is_adjusted_to_u_t_c: true"));
}

#[test]
fn control_records_are_skipped_from_raw_batches() {
    let data: Vec<Record> = sample_records().into_iter().take(6).collect();
    // Raw Kafka batches: offsets are consecutive from the first record.
    let batch = raw_segment_batch(&data);
    let decoded = batch.records().unwrap().into_owned();
    assert_eq!(decoded.len(), data.len() + 1);
    assert!(decoded.last().unwrap().is_control);
    let mut enc = ParquetFormat::default().encoder("orders", 3, 0);
    let mut file = enc.encode(&batch).unwrap().to_vec();
    file.extend_from_slice(&enc.finish().unwrap());
    let want: Vec<Record> = decoded.iter().filter(|r| !r.is_control).cloned().collect();
    let r = ParquetRecords::new(Bytes::from(file.clone())).unwrap();
    assert_eq!(
        r.metadata_value(META_NEXT_OFFSET),
        Some(batch.next_offset.to_string().as_str())
    );
    assert_same(&read_parquet(Bytes::from(file)).unwrap(), &want);

    let mut with_marker = sample_records();
    with_marker.insert(3, control(3));
    let bytes = encode(&ParquetOptions::default(), "orders", 3, 0, &with_marker).unwrap();
    assert_same(
        &read_parquet(Bytes::from(bytes)).unwrap(),
        &sample_records(),
    );
}

#[test]
fn row_groups_are_flushed_by_bytes_and_streamed() {
    let options = ParquetOptions {
        row_group_bytes: ByteSize(256 * 1024),
        ..ParquetOptions::default()
    };
    let t: Arc<str> = Arc::from("big");
    let mut enc = ParquetFormat::new(options).encoder("big", 0, 0);
    let mut file = Vec::new();
    let mut streamed = 0;
    let mut max_buffered = 0;
    let mut all = Vec::new();
    for b in 0..100i64 {
        let records: Vec<Record> = (0..50)
            .map(|i| {
                let offset = b * 50 + i;
                let mut r = Record::new(
                    t.clone(),
                    0,
                    offset,
                    Some(Bytes::from(
                        (0..1000)
                            .map(|j| ((offset * 31 + j) % 251) as u8)
                            .collect::<Vec<u8>>(),
                    )),
                );
                r.timestamp = offset;
                r
            })
            .collect();
        all.extend(records.iter().cloned());
        let batch = Batch::from_records(
            t.clone(),
            0,
            b * 50,
            b * 50 + 50,
            records,
            ferry_core::Ack::none(),
        );
        let out = enc.encode(&batch).unwrap();
        if !out.is_empty() {
            streamed += 1;
        }
        max_buffered = max_buffered.max(enc.buffered_bytes());
        file.extend_from_slice(&out);
    }
    file.extend_from_slice(&enc.finish().unwrap());
    // ~5 MB of records in 256 KiB row groups: bytes leave the encoder as groups close.
    assert!(streamed >= 10, "streamed {streamed} times");
    assert!(
        max_buffered < 1024 * 1024,
        "buffered at most {max_buffered} bytes"
    );
    let reader = file_reader(&file);
    let groups = reader.metadata().num_row_groups();
    assert!((15..=25).contains(&groups), "{groups} row groups");
    for rg in reader.metadata().row_groups() {
        assert!(rg.num_rows() <= 300, "{} rows", rg.num_rows());
    }
    assert_same(&read_parquet(Bytes::from(file)).unwrap(), &all);
}

#[test]
fn row_group_size_is_capped() {
    let huge = ParquetOptions {
        row_group_bytes: ByteSize(1 << 40),
        ..ParquetOptions::default()
    };
    assert_eq!(
        huge.effective_row_group_bytes(),
        MAX_ROW_GROUP_BYTES as usize
    );
    assert_eq!(
        ParquetOptions::default().effective_row_group_bytes(),
        16 * 1024 * 1024
    );
    assert!(ParquetOptions {
        compression_level: 99,
        ..ParquetOptions::default()
    }
    .validate()
    .is_err());
    assert!(ParquetOptions::default().validate().is_ok());
}

#[test]
fn empty_segment_is_a_valid_file() {
    let mut enc = ParquetFormat::default().encoder("orders", 3, 5);
    let mut batch = segment_batch(vec![control(5)]);
    batch.first_offset = 5;
    batch.next_offset = 6;
    let mut file = enc.encode(&batch).unwrap().to_vec();
    file.extend_from_slice(&enc.finish().unwrap());
    assert!(file.starts_with(b"PAR1") && file.ends_with(b"PAR1"));
    let r = ParquetRecords::new(Bytes::from(file.clone())).unwrap();
    assert_eq!(r.metadata_value(META_NEXT_OFFSET), Some("6"));
    assert!(read_parquet(Bytes::from(file)).unwrap().is_empty());
}

#[test]
fn options_deserialize_with_defaults() {
    let o: ParquetOptions = serde_json::from_str(r#"{"row_group_bytes": "16MiB"}"#).unwrap();
    assert_eq!(o.row_group_bytes, ByteSize(16 * 1024 * 1024));
    assert_eq!(o.compression, ParquetCompression::Zstd);
    let o: ParquetOptions = serde_json::from_str(r#"{"compression": "snappy"}"#).unwrap();
    assert_eq!(o.compression, ParquetCompression::Snappy);
    assert!(serde_json::from_str::<ParquetOptions>(r#"{"nope": 1}"#).is_err());
}

#[test]
fn garbage_is_corrupt_not_a_panic() {
    assert!(matches!(
        read_parquet(Bytes::from_static(b"PAR1 not really PAR1")),
        Err(Error::Corrupt(_))
    ));
    let bytes = encode(&ParquetOptions::default(), "t", 0, 0, &sample_records()).unwrap();
    assert!(matches!(
        read_parquet(Bytes::copy_from_slice(&bytes[..bytes.len() / 2])),
        Err(Error::Corrupt(_))
    ));
}

fn json_options(on_error: &str) -> ParquetOptions {
    let yaml = format!(
        r#"{{"value": {{"as": "json", "on_error": "{on_error}", "schema": [
            {{"name": "id", "type": "int64"}},
            {{"name": "user", "type": "string", "path": "/user/name"}},
            {{"name": "amount", "type": "float64"}},
            {{"name": "ok", "type": "boolean"}},
            {{"name": "at", "type": "timestamp_ms"}},
            {{"name": "small", "type": "int32"}},
            {{"name": "tags", "type": "json"}}
        ]}}}}"#
    );
    let o: ParquetOptions = serde_json::from_str(&yaml).unwrap();
    o.validate().unwrap();
    o
}

fn json_record(offset: i64, value: Option<&str>) -> Record {
    Record::new(
        Arc::from("orders"),
        3,
        offset,
        value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
    )
}

#[test]
fn json_values_become_typed_columns() {
    use arrow::array::{AsArray, BooleanArray, Float64Array};
    use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
    let records = vec![
        json_record(
            0,
            Some(
                r#"{"id": 7, "user": {"name": "ann"}, "amount": 12.5, "ok": true,
                    "at": 1732442400123, "small": 5, "tags": ["a", {"b": 1}]}"#,
            ),
        ),
        json_record(
            1,
            Some(
                r#"{"id": "8", "user": {"name": 42}, "amount": "1e3", "ok": "yes",
                    "at": "2024-11-24T10:00:00.5Z", "small": 3000000000, "extra": 1}"#,
            ),
        ),
        json_record(2, Some(r#"{"id": null}"#)),
        json_record(3, None),
        json_record(4, Some("not json")),
        json_record(5, Some("[1, 2]")),
        json_record(6, Some(r#"{"id": 1.5, "at": "yesterday"}"#)),
    ];
    let bytes = encode(&json_options("null"), "orders", 3, 0, &records).unwrap();
    // The envelope reads back unchanged.
    assert_same(&read_parquet(Bytes::from(bytes.clone())).unwrap(), &records);

    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 1);
    let s = batches[0]
        .column_by_name("value_json")
        .expect("value_json column")
        .as_struct();
    assert_eq!(
        (0..7).map(|i| s.is_valid(i)).collect::<Vec<_>>(),
        [true, true, true, false, false, false, true]
    );
    let id = s.column_by_name("id").unwrap().as_primitive::<Int64Type>();
    assert_eq!(
        (0..7)
            .map(|i| id.is_valid(i).then(|| id.value(i)))
            .collect::<Vec<_>>(),
        [Some(7), Some(8), None, None, None, None, None]
    );
    let user = s.column_by_name("user").unwrap().as_string::<i32>();
    assert_eq!((user.value(0), user.value(1)), ("ann", "42"));
    let amount = s
        .column_by_name("amount")
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert_eq!((amount.value(0), amount.value(1)), (12.5, 1000.0));
    let _ = s
        .column_by_name("amount")
        .unwrap()
        .as_primitive::<Float64Type>();
    let ok = s
        .column_by_name("ok")
        .unwrap()
        .as_any()
        .downcast_ref::<BooleanArray>()
        .unwrap();
    assert!(ok.value(0) && ok.is_null(1));
    let at = s.column_by_name("at").unwrap();
    assert_eq!(
        at.data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
    );
    let at = at.as_primitive::<TimestampMillisecondType>();
    assert_eq!(at.value(0), 1_732_442_400_123);
    assert_eq!(at.value(1), 1_732_442_400_500);
    assert!(at.is_null(6));
    let small = s
        .column_by_name("small")
        .unwrap()
        .as_primitive::<Int32Type>();
    assert_eq!(small.value(0), 5);
    assert!(small.is_null(1), "out of the int32 range");
    let tags = s.column_by_name("tags").unwrap().as_string::<i32>();
    assert_eq!(tags.value(0), r#"["a",{"b":1}]"#);
    assert!(tags.is_null(1));
}

#[test]
fn json_on_error_fail_names_the_offset() {
    let ok = [json_record(0, Some(r#"{"id": 1}"#)), json_record(1, None)];
    encode(&json_options("fail"), "orders", 3, 0, &ok).unwrap();
    for (value, want) in [
        ("nope", "offset 9 is not JSON"),
        ("[1]", "offset 9 is not a JSON object"),
        (r#"{"id": "x"}"#, "field `id` at offset 9"),
    ] {
        let e = encode(
            &json_options("fail"),
            "orders",
            3,
            0,
            &[json_record(9, Some(value))],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(want), "{e}");
    }
}

#[test]
fn json_options_are_checked() {
    let check = |yaml: &str| {
        serde_json::from_str::<ParquetOptions>(yaml)
            .map_err(|e| e.to_string())
            .and_then(|o| o.validate().map_err(|e| e.to_string()))
    };
    assert!(
        check(r#"{"value": {"as": "json", "schema": [{"name": "a", "type": "int64"}]}}"#).is_ok()
    );
    let e = check(r#"{"value": {"as": "json", "schema": [{"name": "a", "type": "int64"}, {"name": "a", "type": "string"}]}}"#)
        .unwrap_err();
    assert!(e.contains("twice"), "{e}");
    let e = check(r#"{"value": {"as": "json", "column": "value", "schema": [{"name": "a", "type": "int64"}]}}"#)
        .unwrap_err();
    assert!(e.contains("column: value"), "{e}");
    let e = check(r#"{"value": {"as": "json", "schema": []}}"#).unwrap_err();
    assert!(e.contains("no field"), "{e}");
    let e = check(
        r#"{"value": {"as": "json", "schema": [{"name": "a", "type": "int64", "path": "a"}]}}"#,
    )
    .unwrap_err();
    assert!(e.contains("JSON pointer"), "{e}");
    assert!(check(r#"{"value": {"as": "avro", "schema": []}}"#).is_err());
    assert!(
        check(r#"{"value": {"as": "json", "schema": [{"name": "a", "type": "decimal"}]}}"#)
            .is_err()
    );
}

#[test]
fn json_on_error_dead_letter_keeps_rows_and_collects_rejects() {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    let options = json_options("dead_letter");
    let Some(json::ValueColumns::Json(config)) = &options.value else {
        panic!("JSON typed columns");
    };
    let columns = json::JsonColumns::new(
        config.schema.as_deref().unwrap(),
        &config.column,
        config.on_error,
    );
    assert_eq!(columns.check(&json_record(0, Some(r#"{"id": 1}"#))), None);
    assert_eq!(columns.check(&json_record(0, None)), None);
    let reason = columns
        .check(&json_record(0, Some(r#"{"small": 99999999999}"#)))
        .unwrap();
    assert!(reason.contains("field `small`"), "{reason}");

    let records = [
        json_record(0, Some(r#"{"id": 1, "user": {"name": "a"}}"#)),
        json_record(1, Some("nope")),
        json_record(2, Some("[1]")),
        json_record(3, Some(r#"{"id": "x", "user": {"name": "b"}}"#)),
        json_record(4, None),
        json_record(5, Some(r#"{"id": 5}"#)),
    ];
    let mut enc = ParquetEncoder::new(&options, "orders", 3, 0);
    let mut file = Vec::new();
    for r in &records {
        enc.append(r).unwrap();
        file.extend_from_slice(&enc.take().unwrap());
    }
    assert!(SegmentEncoder::buffered_bytes(&enc) > 0);
    file.extend_from_slice(&enc.finish_file().unwrap());
    let rejected = SegmentEncoder::take_rejected(&mut enc);
    let got: Vec<(i64, &str)> = rejected
        .iter()
        .map(|(r, why)| (r.offset, why.as_str()))
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].0, 1);
    assert!(got[0].1.contains("not JSON"), "{}", got[0].1);
    assert_eq!(got[1], (2, "the value is not a JSON object"));
    assert_eq!(got[2], (3, "field `id`: \"x\" is not a Int64"));
    assert_eq!(rejected[2].0, records[3]);
    assert!(SegmentEncoder::take_rejected(&mut enc).is_empty());

    // Every record is in the file; the rejected ones have a null struct.
    let file = Bytes::from(file);
    assert_eq!(read_parquet(file.clone()).unwrap(), records.to_vec());
    let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .collect::<std::result::Result<_, _>>()
        .unwrap();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let s = batch.column_by_name("value_json").unwrap().as_struct();
    let nulls: Vec<bool> = (0..6).map(|i| s.is_null(i)).collect();
    assert_eq!(nulls, [false, true, true, true, true, false]);
    let id = s.column_by_name("id").unwrap().as_primitive::<Int64Type>();
    assert_eq!((id.value(0), id.value(5)), (1, 5));
}

fn infer_options(on_error: &str, infer_records: u64) -> ParquetOptions {
    let o: ParquetOptions = serde_json::from_str(&format!(
        r#"{{"value": {{"as": "json", "on_error": "{on_error}", "infer_records": {infer_records}}}}}"#
    ))
    .unwrap();
    o.validate().unwrap();
    o
}

fn topic_record(topic: &str, partition: i32, offset: i64, value: Option<&str>) -> Record {
    Record::new(
        Arc::from(topic),
        partition,
        offset,
        value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
    )
}

/// Every row of a Parquet file as one Arrow batch.
fn file_batch(file: &[u8]) -> RecordBatch {
    let batches: Vec<RecordBatch> =
        ParquetRecordBatchReaderBuilder::try_new(Bytes::copy_from_slice(file))
            .unwrap()
            .build()
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
    let schema = ParquetRecordBatchReaderBuilder::try_new(Bytes::copy_from_slice(file))
        .unwrap()
        .schema()
        .clone();
    arrow::compute::concat_batches(&schema, &batches).unwrap()
}

/// `(name, Arrow type)` of the fields of the `value_json` struct column, `None` without one.
fn value_json_fields(file: &[u8]) -> Option<Vec<(String, DataType)>> {
    let batch = file_batch(file);
    let col = batch.schema().field_with_name("value_json").ok()?.clone();
    let DataType::Struct(fields) = col.data_type() else {
        panic!("value_json is {}", col.data_type());
    };
    Some(
        fields
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect(),
    )
}

fn ts_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Appends records one by one, collecting the bytes; then finishes.
fn encode_all(enc: &mut dyn SegmentEncoder, records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let batch = Batch::from_records(
            r.topic.clone(),
            r.partition,
            r.offset,
            r.offset + 1,
            vec![r.clone()],
            ferry_core::Ack::none(),
        );
        out.extend_from_slice(&enc.encode(&batch).unwrap());
    }
    out.extend_from_slice(&enc.finish().unwrap());
    out
}

#[test]
fn inferred_columns_are_fixed_after_infer_records_values() {
    use arrow::array::AsArray;
    use arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};
    let format = ParquetFormat::new(infer_options("dead_letter", 3));
    let mut enc = format.encoder("orders", 0, 0);
    let r = |o: i64, v: Option<&str>| topic_record("orders", 0, o, v);
    let sample = [
        r(
            0,
            Some(r#"{"id": 1, "amount": 2, "at": "2025-12-01T05:00:00Z", "tags": [1]}"#),
        ),
        r(1, None),
        r(2, Some("not json")),
        r(
            3,
            Some(r#"{"id": 2, "amount": 2.5, "user": "ann", "tags": {"a": 1}}"#),
        ),
    ];
    // Three values (the tombstone is not one) are looked at: nothing is written before.
    for rec in &sample[..3] {
        let batch = segment_batch(vec![rec.clone()]);
        assert!(enc.encode(&batch).unwrap().is_empty());
    }
    assert!(enc.buffered_bytes() > 0);
    let later = [
        r(4, Some(r#"{"id": "x", "amount": 1}"#)),
        r(
            5,
            Some(r#"{"id": 5, "amount": 1, "at": "2025-12-01T06:00:00.250+01:00", "new": 1}"#),
        ),
        r(6, Some("[1, 2]")),
        r(7, Some(r#"{"at": "yesterday"}"#)),
    ];
    let mut file = Vec::new();
    for rec in sample[3..].iter().chain(&later) {
        file.extend_from_slice(&enc.encode(&segment_batch(vec![rec.clone()])).unwrap());
    }
    file.extend_from_slice(&enc.finish().unwrap());
    let rejected: Vec<(i64, String)> = enc
        .take_rejected()
        .into_iter()
        .map(|(r, why)| (r.offset, why))
        .collect();
    // The sampled value that is not JSON is dead-lettered once the columns are fixed, like
    // later values that do not fit.
    assert_eq!(rejected.len(), 4, "{rejected:?}");
    assert_eq!(rejected[0].0, 2);
    assert!(
        rejected[0].1.starts_with("the value is not JSON"),
        "{rejected:?}"
    );
    assert_eq!(
        rejected[1..],
        [
            (4, "field `id`: \"x\" is not a Int64".to_string()),
            (6, "the value is not a JSON object".to_string()),
            (
                7,
                "field `at`: \"yesterday\" is not a TimestampMs".to_string()
            ),
        ]
    );

    let all: Vec<Record> = sample.iter().chain(&later).cloned().collect();
    assert_eq!(read_parquet(Bytes::from(file.clone())).unwrap(), all);
    assert_eq!(
        value_json_fields(&file).unwrap(),
        [
            ("id".to_string(), DataType::Int64),
            ("amount".to_string(), DataType::Float64),
            ("at".to_string(), ts_ms()),
            ("tags".to_string(), DataType::Utf8),
            ("user".to_string(), DataType::Utf8),
        ]
    );
    let batch = file_batch(&file);
    let s = batch.column_by_name("value_json").unwrap().as_struct();
    let valid: Vec<bool> = (0..8).map(|i| s.is_valid(i)).collect();
    assert_eq!(valid, [true, false, false, true, false, true, false, false]);
    let id = s.column(0).as_primitive::<Int64Type>();
    assert_eq!((id.value(0), id.value(3), id.value(5)), (1, 2, 5));
    let amount = s.column(1).as_primitive::<Float64Type>();
    assert_eq!((amount.value(0), amount.value(3)), (2.0, 2.5));
    let at = s.column(2).as_primitive::<TimestampMillisecondType>();
    assert_eq!(at.value(0), 1_764_565_200_000);
    assert_eq!(at.value(5), 1_764_565_200_250);
    let tags = s.column(3).as_string::<i32>();
    assert_eq!((tags.value(0), tags.value(3)), ("[1]", r#"{"a":1}"#));
    assert_eq!(s.column(4).as_string::<i32>().value(3), "ann");
}

#[test]
fn inferred_columns_are_shared_by_the_partitions_of_a_topic() {
    let format = ParquetFormat::new(infer_options("null", 4));
    let mut p0 = format.encoder("orders", 0, 0);
    let mut p1 = format.encoder("orders", 1, 0);
    let mut other = format.encoder("audit", 0, 0);
    let rec = |p: i32, o: i64, v: &str| topic_record("orders", p, o, Some(v));
    let encode_one = |enc: &mut Box<dyn SegmentEncoder>, r: Record| {
        let batch = Batch::from_records(
            r.topic.clone(),
            r.partition,
            r.offset,
            r.offset + 1,
            vec![r],
            ferry_core::Ack::none(),
        );
        enc.encode(&batch).unwrap()
    };
    // Partition 0 and 1 sample together: two values each.
    encode_one(&mut p0, rec(0, 0, r#"{"id": 1}"#));
    encode_one(&mut p1, rec(1, 0, r#"{"id": 2, "note": "x"}"#));
    encode_one(&mut p0, rec(0, 1, r#"{"id": 3, "score": 1}"#));
    // Another topic has its own sample (not complete: it ends with its segment).
    encode_one(
        &mut other,
        topic_record("audit", 0, 0, Some(r#"{"who": "ann"}"#)),
    );
    // The fourth value of `orders` completes the sample: `score` is float64 from both
    // partitions' values.
    encode_one(&mut p1, rec(1, 1, r#"{"id": 4, "score": 1.5}"#));
    // Later values do not change the columns.
    encode_one(&mut p0, rec(0, 2, r#"{"id": 5, "extra": true}"#));
    let f0 = [p0.finish().unwrap()].concat();
    let f1 = [p1.finish().unwrap()].concat();
    let want = vec![
        ("id".to_string(), DataType::Int64),
        ("note".to_string(), DataType::Utf8),
        ("score".to_string(), DataType::Float64),
    ];
    assert_eq!(value_json_fields(&f0).unwrap(), want);
    assert_eq!(value_json_fields(&f1).unwrap(), want);
    assert_eq!(read_parquet(Bytes::from(f0)).unwrap().len(), 3);
    // A later segment of the topic keeps the run's columns, whatever its values.
    let mut p0b = format.encoder("orders", 0, 3);
    let f = encode_all(
        p0b.as_mut(),
        &[rec(0, 3, r#"{"other": "2025-01-01T00:00:00Z"}"#)],
    );
    assert_eq!(value_json_fields(&f).unwrap(), want);
    let audit = [other.finish().unwrap()].concat();
    assert_eq!(
        value_json_fields(&audit).unwrap(),
        [("who".to_string(), DataType::Utf8)]
    );
}

#[test]
fn a_segment_closing_early_fixes_the_columns_from_what_it_has() {
    let format = ParquetFormat::new(infer_options("null", 1000));
    let first = encode_all(
        format.encoder("orders", 0, 0).as_mut(),
        &[
            topic_record("orders", 0, 0, Some(r#"{"id": 1, "on": true}"#)),
            topic_record(
                "orders",
                0,
                1,
                Some(r#"{"id": null, "on": false, "gone": null}"#),
            ),
        ],
    );
    let want = vec![
        ("id".to_string(), DataType::Int64),
        ("on".to_string(), DataType::Boolean),
        ("gone".to_string(), DataType::Utf8),
    ];
    assert_eq!(value_json_fields(&first).unwrap(), want);
    // Fixed for the run: another partition's values get these columns; a float for an
    // int64 field is a null (on_error: null).
    let second = encode_all(
        format.encoder("orders", 1, 0).as_mut(),
        &[topic_record("orders", 1, 0, Some(r#"{"id": 1.5, "x": 1}"#))],
    );
    assert_eq!(value_json_fields(&second).unwrap(), want);
}

#[test]
fn an_empty_segment_does_not_fix_the_columns() {
    let format = ParquetFormat::new(infer_options("null", 1000));
    // Only a transaction marker: no row, no typed column, nothing fixed.
    let mut marker = control(5);
    marker.topic = Arc::from("orders");
    let empty = encode_all(format.encoder("orders", 3, 5).as_mut(), &[marker]);
    assert_eq!(value_json_fields(&empty), None);
    assert!(read_parquet(Bytes::from(empty)).unwrap().is_empty());
    let f = encode_all(
        format.encoder("orders", 3, 6).as_mut(),
        &[topic_record("orders", 3, 6, Some(r#"{"id": 1}"#))],
    );
    assert_eq!(
        value_json_fields(&f).unwrap(),
        [("id".to_string(), DataType::Int64)]
    );
}

#[test]
fn without_json_objects_a_topic_has_no_typed_column_in_the_run() {
    let format = ParquetFormat::new(infer_options("fail", 3));
    let records = [
        topic_record("logs", 0, 0, Some("plain text")),
        topic_record("logs", 0, 1, None),
        topic_record("logs", 0, 2, Some("[1]")),
        topic_record("logs", 0, 3, Some("{}")),
        // After the sample: not checked (there are no columns to fit), even with `fail`.
        topic_record("logs", 0, 4, Some(r#"{"id": 1}"#)),
        topic_record("logs", 0, 5, Some("more text")),
    ];
    let mut enc = format.encoder("logs", 0, 0);
    let file = encode_all(enc.as_mut(), &records);
    assert!(enc.take_rejected().is_empty());
    assert_eq!(value_json_fields(&file), None);
    assert_eq!(read_parquet(Bytes::from(file)).unwrap(), records.to_vec());
    // The next segment of the run has no typed column either.
    let next = encode_all(
        format.encoder("logs", 0, 6).as_mut(),
        &[topic_record("logs", 0, 6, Some(r#"{"id": 2}"#))],
    );
    assert_eq!(value_json_fields(&next), None);
}

#[test]
fn inferred_columns_fail_on_a_sampled_misfit_once_fixed() {
    let options = infer_options("fail", 2);
    let mut enc = ParquetEncoder::new(&options, "orders", 3, 0);
    // Buffered while sampling…
    enc.append(&json_record(7, Some("nope"))).unwrap();
    // …and an error naming the offset once the columns are fixed.
    let e = enc
        .append(&json_record(8, Some(r#"{"id": 1}"#)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("offset 7 is not JSON"), "{e}");
    // Later values are checked against the columns as they come.
    let mut enc = ParquetEncoder::new(&options, "orders", 3, 0);
    enc.append(&json_record(0, Some(r#"{"id": 1}"#))).unwrap();
    enc.append(&json_record(1, Some(r#"{"id": 2}"#))).unwrap();
    let e = enc
        .append(&json_record(2, Some(r#"{"id": "two"}"#)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("field `id` at offset 2"), "{e}");
}

#[test]
fn inference_options_are_checked() {
    let check = |json: &str| {
        serde_json::from_str::<ParquetOptions>(json)
            .map_err(|e| e.to_string())
            .and_then(|o| o.validate().map_err(|e| e.to_string()))
    };
    check(r#"{"value": {"as": "json"}}"#).unwrap();
    check(r#"{"value": {"as": "json", "infer_records": 10, "column": "doc"}}"#).unwrap();
    let e = check(r#"{"value": {"as": "json", "infer_records": 0}}"#).unwrap_err();
    assert!(e.contains("must be > 0"), "{e}");
    let e = check(
        r#"{"value": {"as": "json", "infer_records": 5, "schema": [{"name": "a", "type": "int64"}]}}"#,
    )
    .unwrap_err();
    assert!(e.contains("drop `schema`"), "{e}");
    assert!(check(r#"{"value": {"as": "json", "infer_records": -1}}"#).is_err());
    // Without `schema` the options do not tell the typed columns.
    let o: ParquetOptions = serde_json::from_str(r#"{"value": {"as": "json"}}"#).unwrap();
    assert_eq!(o.schema(), SCHEMA.clone());
}

/// Row groups of one encoder writing `mib` MiB of 64 KiB records while `others` more
/// encoders of the same format are open.
fn row_groups_with_others_open(asked: u64, others: usize, mib: i64) -> usize {
    let format = ParquetFormat::new(ParquetOptions {
        row_group_bytes: ByteSize(asked),
        compression: ParquetCompression::None,
        ..ParquetOptions::default()
    });
    let _others: Vec<_> = (0..others)
        .map(|p| format.encoder("t", p as i32 + 1, 0))
        .collect();
    let mut enc = format.encoder("t", 0, 0);
    let t: Arc<str> = Arc::from("t");
    let mut file = Vec::new();
    for b in 0..mib {
        let records: Vec<Record> = (0..16)
            .map(|i| {
                let offset = b * 16 + i;
                Record::new(
                    t.clone(),
                    0,
                    offset,
                    Some(Bytes::from(vec![(offset % 251) as u8; 64 * 1024])),
                )
            })
            .collect();
        file.extend_from_slice(&enc.encode(&segment_batch(records)).unwrap());
    }
    file.extend_from_slice(&enc.finish().unwrap());
    file_reader(&file).metadata().num_row_groups()
}

#[test]
fn open_encoders_share_one_row_group_budget() {
    // Alone, an encoder keeps the 16 MiB asked: 40 MiB make 3 row groups.
    assert_eq!(row_groups_with_others_open(16 << 20, 0, 40), 3);
    // With 5 more open, its share of the 48 MiB budget is 8 MiB: 5 row groups.
    assert_eq!(row_groups_with_others_open(16 << 20, 5, 40), 5);
    // Asking for much more changes nothing (capped, then shared).
    assert_eq!(row_groups_with_others_open(1 << 40, 5, 40), 5);
    // Never under 1 MiB, however many are open.
    assert_eq!(row_groups_with_others_open(16 << 20, 200, 4), 4);
}

#[test]
fn room_made_for_the_next_chunk_counts_as_buffered() {
    let options = ParquetOptions {
        row_group_bytes: ByteSize(MIN_ROW_GROUP_BYTES as u64),
        ..ParquetOptions::default()
    };
    let mut enc = ParquetEncoder::new(&options, "orders", 3, 0);
    let value = "x".repeat(1024);
    let mut offset = 0;
    // Until the first row group is complete: the builders then have room for a chunk
    // like it, with no record in them yet.
    let mut file = Vec::new();
    while file.is_empty() {
        enc.append(&json_record(offset, Some(&value))).unwrap();
        offset += 1;
        assert!(offset < 10_000, "no row group was written");
        file.extend_from_slice(&enc.take().unwrap());
    }
    assert_eq!(enc.columns.len(), 0, "the row group took every record");
    assert!(
        enc.columns.reserved >= MIN_ROW_GROUP_BYTES / 2,
        "{}",
        enc.columns.reserved
    );
    assert!(
        SegmentEncoder::buffered_bytes(&enc) >= enc.columns.reserved,
        "the room counts as buffered"
    );
    file.extend_from_slice(&enc.finish_file().unwrap());
    assert_eq!(
        read_parquet(Bytes::from(file)).unwrap().len() as i64,
        offset
    );
}
