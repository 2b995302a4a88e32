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
    assert!(read_parquet(Bytes::copy_from_slice(&bytes[..bytes.len() / 2])).is_err());
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
    let columns = json::JsonColumns::new(config);
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
