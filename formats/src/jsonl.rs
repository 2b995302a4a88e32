//! JSON lines: one JSON object per record, one record per line.
//!
//! ```json
//! {"topic":"orders","partition":0,"offset":42,"timestamp":1732442400000,"timestamp_type":"create","key":"user-7","value":{"base64":"AAEC"},"headers":[{"key":"trace","value":null}]}
//! ```
//!
//! Bytes (`key`, `value`, header values) are written as a JSON string when they are valid
//! UTF-8, and as `{"base64": "…"}` (standard alphabet, padded) otherwise. `null` is a null
//! key/value/header value; `""` is an empty one: the two are never confused, so decoding
//! what was encoded gives back exactly the same bytes. Headers keep their order, repeats and
//! nulls.
//!
//! Not carried: producer id/epoch/sequence, leader epoch and the transactional/control
//! flags (this is an export format; use `raw` for byte-exact backups). Writers should skip
//! control records, which are not user data.
//!
//! When decoding, `key`, `value`, `headers` and `timestamp_type` may be missing (null, null,
//! none, `create`); unknown fields are ignored.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use ferry_core::{Header, Record, TimestampType};
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// File extension of JSON lines files.
pub const EXTENSION: &str = "jsonl";

/// A line that is not a record.
#[derive(Debug, thiserror::Error)]
#[error("JSON lines, line {line}: {message}")]
pub struct JsonlError {
    /// 1-based line number in the decoded text.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl From<JsonlError> for ferry_core::Error {
    fn from(e: JsonlError) -> Self {
        ferry_core::Error::Corrupt(e.to_string())
    }
}

/// Bytes as a UTF-8 string or a `{"base64": …}` object.
struct BytesOut<'a>(&'a [u8]);

impl Serialize for BytesOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("base64", &STANDARD.encode(self.0))?;
                m.end()
            }
        }
    }
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    key: &'a str,
    value: Option<BytesOut<'a>>,
}

#[derive(Serialize)]
struct RecordOut<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: i64,
    timestamp_type: &'static str,
    key: Option<BytesOut<'a>>,
    value: Option<BytesOut<'a>>,
    headers: Vec<HeaderOut<'a>>,
}

/// Appends one record as a JSON line (with its `\n`) to `out`.
pub fn encode_record(record: &Record, out: &mut Vec<u8>) {
    let r = RecordOut {
        topic: &record.topic,
        partition: record.partition,
        offset: record.offset,
        timestamp: record.timestamp,
        timestamp_type: record.timestamp_type.as_str(),
        key: record.key.as_deref().map(BytesOut),
        value: record.value.as_deref().map(BytesOut),
        headers: record
            .headers
            .iter()
            .map(|h| HeaderOut {
                key: &h.key,
                value: h.value.as_deref().map(BytesOut),
            })
            .collect(),
    };
    // Serializing plain strings and numbers into a Vec cannot fail.
    serde_json::to_writer(&mut *out, &r).expect("JSON encoding of a record cannot fail");
    out.push(b'\n');
}

/// Encodes records as JSON lines.
pub fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.size_hint() + 96).sum());
    for r in records {
        encode_record(r, &mut out);
    }
    out
}

/// Bytes read back from a string or a `{"base64": …}` object.
struct BytesIn(Bytes);

impl<'de> Deserialize<'de> for BytesIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BytesIn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or {\"base64\": \"…\"}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BytesIn, E> {
                Ok(BytesIn(Bytes::copy_from_slice(v.as_bytes())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<BytesIn, E> {
                Ok(BytesIn(Bytes::from(v.into_bytes())))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BytesIn, A::Error> {
                let mut out = None;
                while let Some(k) = map.next_key::<String>()? {
                    if k == "base64" {
                        let s: String = map.next_value()?;
                        let b = STANDARD
                            .decode(s.as_bytes())
                            .map_err(|e| de::Error::custom(format!("invalid base64: {e}")))?;
                        out = Some(BytesIn(Bytes::from(b)));
                    } else {
                        return Err(de::Error::unknown_field(&k, &["base64"]));
                    }
                }
                out.ok_or_else(|| de::Error::missing_field("base64"))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct HeaderIn {
    key: String,
    #[serde(default)]
    value: Option<BytesIn>,
}

#[derive(Deserialize)]
struct RecordIn {
    topic: String,
    partition: i32,
    offset: i64,
    timestamp: i64,
    #[serde(default)]
    timestamp_type: Option<String>,
    #[serde(default)]
    key: Option<BytesIn>,
    #[serde(default)]
    value: Option<BytesIn>,
    #[serde(default)]
    headers: Vec<HeaderIn>,
}

/// Decodes one line (without its `\n`). `line_no` (1-based) is used in errors.
pub fn decode_line(line: &[u8], line_no: usize) -> Result<Record, JsonlError> {
    let r: RecordIn = serde_json::from_slice(line).map_err(|e| JsonlError {
        line: line_no,
        message: e.to_string(),
    })?;
    let timestamp_type = match r.timestamp_type.as_deref() {
        None => TimestampType::Create,
        Some(s) => TimestampType::parse(s).ok_or_else(|| JsonlError {
            line: line_no,
            message: format!("unknown timestamp_type '{s}' (expected create or log_append)"),
        })?,
    };
    let mut rec = Record::new(
        Arc::from(r.topic),
        r.partition,
        r.offset,
        r.value.map(|b| b.0),
    );
    rec.timestamp = r.timestamp;
    rec.timestamp_type = timestamp_type;
    rec.key = r.key.map(|b| b.0);
    rec.headers = r
        .headers
        .into_iter()
        .map(|h| Header::new(h.key, h.value.map(|b| b.0)))
        .collect();
    Ok(rec)
}

/// Decodes JSON lines. Blank lines are skipped; a final line without `\n` is accepted.
pub fn decode(bytes: &[u8]) -> Result<Vec<Record>, JsonlError> {
    let mut out = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.push(decode_line(line, i + 1)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64) -> Record {
        let mut r = Record::new(
            Arc::from("orders"),
            3,
            offset,
            Some(Bytes::from_static(b"v")),
        );
        r.timestamp = 1_732_442_400_000 + offset;
        r
    }

    #[test]
    fn roundtrip_keeps_null_empty_binary_and_header_order() {
        let mut a = rec(0);
        a.key = None;
        a.value = None;
        let mut b = rec(1);
        b.key = Some(Bytes::new());
        b.value = Some(Bytes::new());
        b.timestamp_type = TimestampType::LogAppend;
        let mut c = rec(2);
        c.key = Some(Bytes::from_static(&[0xff, 0x00, 0x80]));
        c.value = Some(Bytes::from("héllo \"quoted\"\n line"));
        c.headers = vec![
            Header::new("h", Some(Bytes::from_static(b"1"))),
            Header::new("h", None),
            Header::new("bin", Some(Bytes::from_static(&[0xc3]))),
            Header::new("empty", Some(Bytes::new())),
        ];
        let records = vec![a, b, c];
        let text = encode(&records);
        assert_eq!(text.iter().filter(|b| **b == b'\n').count(), 3);
        assert_eq!(decode(&text).unwrap(), records);
    }

    #[test]
    fn documented_shape() {
        let mut r = rec(42);
        r.key = Some(Bytes::from_static(b"user-7"));
        r.value = Some(Bytes::from_static(&[0xff, 0x00, 0x01]));
        r.headers = vec![Header::new("trace", None)];
        let line = String::from_utf8(encode(&[r])).unwrap();
        assert_eq!(
            line,
            "{\"topic\":\"orders\",\"partition\":3,\"offset\":42,\"timestamp\":1732442400042,\"timestamp_type\":\"create\",\"key\":\"user-7\",\"value\":{\"base64\":\"/wAB\"},\"headers\":[{\"key\":\"trace\",\"value\":null}]}\n"
        );
    }

    #[test]
    fn lenient_reading_and_errors_name_the_line() {
        let recs = decode(
            b"\n{\"topic\":\"t\",\"partition\":0,\"offset\":5,\"timestamp\":1,\"extra\":true}",
        )
        .unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].key, None);
        assert_eq!(recs[0].value, None);
        let e = decode(b"{\"topic\":\"t\",\"partition\":0,\"offset\":5,\"timestamp\":1}\n{oops}\n")
            .unwrap_err();
        assert_eq!(e.line, 2);
        let e = decode(b"{\"topic\":\"t\",\"partition\":0,\"offset\":5,\"timestamp\":1,\"value\":{\"base64\":\"!!\"}}").unwrap_err();
        assert!(e.message.contains("base64"), "{e}");
    }
}
