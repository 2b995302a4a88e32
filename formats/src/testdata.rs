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

/// A value in the Confluent wire format: magic byte 0, the schema id, the Avro datum.
pub fn wire(id: u32, schema: &apache_avro::Schema, value: apache_avro::types::Value) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&apache_avro::to_avro_datum(schema, value).expect("datum"));
    out
}

/// A record of `orders`/3 with this value.
pub fn value_record(offset: i64, value: Option<Vec<u8>>) -> Record {
    Record::new(Arc::from("orders"), 3, offset, value.map(Bytes::from))
}

/// A directory of `<id>.avsc` files.
pub fn schema_dir(schemas: &[(u32, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (id, text) in schemas {
        std::fs::write(dir.path().join(format!("{id}.avsc")), text).expect("write schema");
    }
    dir
}

/// What the test registry answers to `GET /schemas/ids/{id}`.
pub struct FakeRegistry {
    /// Its base URL.
    pub url: String,
    /// Requests received, as `METHOD path`.
    pub requests: Arc<std::sync::Mutex<Vec<String>>>,
}

/// A Schema Registry on 127.0.0.1 answering `GET /schemas/ids/{id}` like the real one:
/// `{"schema": …}` (plus `schemaType` when not Avro) for the ids of `schemas`, 404
/// `{"error_code":40403,…}` for others; `GET /subjects/{s}/versions/latest` with the highest
/// id of `schemas` (404 `40401` for subjects starting with `missing`); a plain 404 for other
/// paths; 401 without the `auth` basic credentials when
/// set; 500 for the first `failures` requests.
pub async fn fake_registry(
    schemas: Vec<(u32, serde_json::Value)>,
    auth: Option<(&str, &str)>,
    failures: usize,
) -> FakeRegistry {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = requests.clone();
    let expected = auth.map(|(u, p)| {
        format!(
            "authorization: basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
        .to_lowercase()
    });
    let schemas: std::collections::HashMap<u32, serde_json::Value> = schemas.into_iter().collect();
    tokio::spawn(async move {
        let mut failures = failures;
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf).to_string();
            let line = head.lines().next().unwrap_or("").to_string();
            let path = line.split(' ').nth(1).unwrap_or("").to_string();
            seen.lock()
                .unwrap()
                .push(format!("{} {path}", line.split(' ').next().unwrap_or("")));
            let (status, body) = if failures > 0 {
                failures -= 1;
                (
                    500,
                    r#"{"error_code":50001,"message":"Error in the backend"}"#.to_string(),
                )
            } else if expected
                .as_ref()
                .is_some_and(|a| !head.to_lowercase().contains(a.as_str()))
            {
                (
                    401,
                    r#"{"error_code":401,"message":"Unauthorized"}"#.to_string(),
                )
            } else if let Some(subject) = path
                .strip_prefix("/subjects/")
                .and_then(|p| p.strip_suffix("/versions/latest"))
            {
                // Every subject's latest version is the highest id, but `missing…` ones.
                match schemas.keys().max() {
                    Some(id) if !subject.starts_with("missing") => (
                        200,
                        serde_json::json!({"subject": subject, "version": 1, "id": id,
                            "schema": schemas[id]["schema"]})
                        .to_string(),
                    ),
                    _ => (
                        404,
                        format!(
                            r#"{{"error_code":40401,"message":"Subject '{subject}' not found."}}"#
                        ),
                    ),
                }
            } else {
                let id = path
                    .strip_prefix("/schemas/ids/")
                    .and_then(|i| i.parse::<u32>().ok());
                match (id, id.and_then(|i| schemas.get(&i))) {
                    (_, Some(reply)) => (200, reply.to_string()),
                    (Some(id), None) => (
                        404,
                        format!(r#"{{"error_code":40403,"message":"Schema {id} not found"}}"#),
                    ),
                    (None, None) => (
                        404,
                        r#"{"error_code":404,"message":"HTTP 404 Not Found"}"#.to_string(),
                    ),
                }
            };
            let reason = match status {
                200 => "OK",
                401 => "Unauthorized",
                404 => "Not Found",
                _ => "Internal Server Error",
            };
            let resp = format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
    });
    FakeRegistry { url, requests }
}

/// The registry's reply for an Avro schema.
pub fn avro_reply(schema: &str) -> serde_json::Value {
    serde_json::json!({ "schema": schema })
}
