//! Records for the unit tests of the envelope formats (Avro, Parquet).

use bytes::Bytes;
use ferry_core::{Ack, Batch, Header, Payload, RawBatches, Record, TimestampType};
use ferry_kafka::batch::build_batch;
use ferry_kafka::{BatchDecoder, Compression, ProduceRecord};
use std::sync::Arc;

/// 2100-01-01T00:00:00Z in milliseconds.
pub const YEAR_2100_MS: i64 = 4_102_444_800_000;

fn b(s: &[u8]) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(s))
}

/// Records of `orders`/3 from offset 0 that cover the corner cases: null vs empty key and
/// value, binary (non UTF-8) bytes, headers with nulls and repeated keys, timestamps from
/// 1970 to 2100 and -1, both timestamp types, a gap in the offsets.
pub fn sample_records() -> Vec<Record> {
    let t: Arc<str> = Arc::from("orders");
    let mut out = Vec::new();
    let mut push = |offset: i64,
                    ts: i64,
                    ty: TimestampType,
                    key: Option<Bytes>,
                    value: Option<Bytes>,
                    headers: Vec<Header>| {
        let mut r = Record::new(t.clone(), 3, offset, value);
        r.timestamp = ts;
        r.timestamp_type = ty;
        r.key = key;
        r.headers = headers;
        out.push(r);
    };
    use TimestampType::{Create, LogAppend};
    push(0, 0, Create, None, None, vec![]);
    push(1, 1, LogAppend, b(b""), b(b""), vec![]);
    push(2, -1, Create, b(b"k"), None, vec![Header::new("h", None)]);
    push(
        3,
        1_732_442_400_123,
        Create,
        None,
        b(b"v"),
        vec![
            Header::new("trace", b(b"a")),
            Header::new("trace", None),
            Header::new("trace", b(b"")),
            Header::new("", b(b"empty key")),
            Header::new("ünï", b(&[0xff, 0x00, 0xfe])),
        ],
    );
    push(
        4,
        YEAR_2100_MS,
        LogAppend,
        b(&[0x00, 0xff, 0x80]),
        b(&[0xc3, 0x28, 0x00]),
        vec![],
    );
    push(
        7,
        YEAR_2100_MS - 1,
        Create,
        b(b"after gap"),
        b(b"x"),
        vec![],
    );
    for i in 8..40 {
        push(
            i,
            1_700_000_000_000 + i,
            Create,
            Some(Bytes::from(format!("key-{i}"))),
            Some(Bytes::from(vec![b'a' + (i % 26) as u8; 100 + i as usize])),
            vec![Header::new("n", Some(Bytes::from(i.to_string())))],
        );
    }
    out
}

/// A control record (transaction marker) at `offset`.
pub fn control(offset: i64) -> Record {
    let mut r = Record::new(Arc::from("orders"), 3, offset, b(&[0, 0, 0, 0, 0, 0]));
    r.key = b(&[0, 0, 0, 1]);
    r.is_control = true;
    r.is_transactional = true;
    r
}

/// A batch of decoded records of `orders`/3 covering their offsets.
pub fn segment_batch(records: Vec<Record>) -> Batch {
    let first = records.first().map_or(0, |r| r.offset);
    let next = records.last().map_or(0, |r| r.offset + 1);
    Batch::from_records(Arc::from("orders"), 3, first, next, records, Ack::none())
}

/// A raw batch (real Kafka v2 bytes): `records` as a data batch, then a commit marker.
pub fn raw_segment_batch(records: &[Record]) -> Batch {
    let first = records.first().map_or(0, |r| r.offset);
    let produce: Vec<ProduceRecord> = records
        .iter()
        .map(|r| ProduceRecord {
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
            timestamp: r.timestamp,
        })
        .collect();
    let mut bytes = build_batch(first, &produce, Compression::None, 0, None)
        .expect("data batch")
        .to_vec();
    let marker = ProduceRecord {
        key: b(&[0, 0, 0, 1]),
        value: b(&[0, 0, 0, 0, 0, 0]),
        headers: vec![],
        timestamp: 0,
    };
    let marker_offset = first + records.len() as i64;
    bytes.extend_from_slice(
        &build_batch(marker_offset, &[marker], Compression::None, 0x30, None).expect("marker"),
    );
    let mut batch = segment_batch(Vec::new());
    batch.first_offset = first;
    batch.next_offset = marker_offset + 1;
    batch.payload = Payload::Raw(RawBatches {
        bytes: Bytes::from(bytes),
        record_count: records.len() as u64 + 1,
        min_timestamp: None,
        max_timestamp: None,
        aborted: Vec::new(),
        decoder: Arc::new(BatchDecoder),
    });
    batch
}

/// Asserts that `got` holds exactly the envelope fields of `want`.
pub fn assert_same(got: &[Record], want: &[Record]) {
    assert_eq!(got.len(), want.len(), "record count");
    for (g, w) in got.iter().zip(want) {
        let at = w.offset;
        assert_eq!(&*g.topic, &*w.topic, "topic at {at}");
        assert_eq!(g.partition, w.partition, "partition at {at}");
        assert_eq!(g.offset, w.offset, "offset");
        assert_eq!(g.timestamp, w.timestamp, "timestamp at {at}");
        assert_eq!(g.timestamp_type, w.timestamp_type, "timestamp type at {at}");
        assert_eq!(g.key, w.key, "key at {at}");
        assert_eq!(g.value, w.value, "value at {at}");
        assert_eq!(g.headers, w.headers, "headers at {at}");
    }
}
