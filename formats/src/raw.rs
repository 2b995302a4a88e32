//! The `raw` format: Kafka v2 record batches one after another, the byte format of a Kafka
//! log segment (Kafka's own `DumpLogSegments` reads it). Batches fetched from Kafka are
//! written untouched — producer compression, CRCs and control batches kept. Records changed
//! by a transform are encoded again into batches that keep their original offsets.
//!
//! With `raw: {compression: zstd}` (or `lz4`, `snappy`, `gzip`) on the storage sink, batches
//! the producer sent uncompressed are stored compressed, as Kafka does for a topic's
//! `compression.type`: the records are the same bytes once decompressed, every header field
//! is kept, only the codec, length and CRC of those batches change
//! ([`ferry_kafka::batch::recompress_batches`]).

use crate::segment::{SegmentEncoder, SegmentFormat};
use bytes::{Bytes, BytesMut};
use ferry_core::{Batch, Error, Payload, Record, Result, TimestampType};
use ferry_kafka::batch::build_batch;
use ferry_kafka::{Compression, ProduceRecord};

/// Extension of raw segment objects, as Kafka names its log segments.
pub const RAW_EXTENSION: &str = "log";

/// Codec for batches stored uncompressed (`raw: {compression: …}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawCompression {
    /// Keep every batch as it was fetched (the default).
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl RawCompression {
    fn codec(self) -> Compression {
        match self {
            RawCompression::None => Compression::None,
            RawCompression::Gzip => Compression::Gzip,
            RawCompression::Snappy => Compression::Snappy,
            RawCompression::Lz4 => Compression::Lz4,
            RawCompression::Zstd => Compression::Zstd,
        }
    }
}

/// Options of `format: raw` (the storage sink's `raw:` block).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOptions {
    /// Store batches the producer sent uncompressed compressed with this codec (`zstd`,
    /// `lz4`, `snappy`, `gzip`; default `none`: as fetched). Records stay byte for byte.
    #[serde(default)]
    pub compression: RawCompression,
}

/// The `raw` format.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawFormat {
    /// Its options.
    pub options: RawOptions,
}

impl SegmentFormat for RawFormat {
    fn kind(&self) -> crate::kind::FormatKind {
        crate::kind::FormatKind::Raw
    }

    fn encoder(&self, _topic: &str, _partition: i32, _first: i64) -> Box<dyn SegmentEncoder> {
        Box::new(RawEncoder {
            codec: self.options.compression.codec(),
        })
    }
}

/// Encoder of raw segments: passes fetched bytes through (recompressed when asked),
/// encodes decoded records.
#[derive(Debug, Clone, Copy)]
pub struct RawEncoder {
    codec: Compression,
}

impl Default for RawEncoder {
    fn default() -> Self {
        RawEncoder {
            codec: Compression::None,
        }
    }
}

impl SegmentEncoder for RawEncoder {
    fn encode(&mut self, batch: &Batch) -> Result<Bytes> {
        let bytes = match &batch.payload {
            Payload::Raw(raw) => raw.bytes.clone(),
            Payload::Records(records) => encode_records(records)?,
        };
        if self.codec == Compression::None {
            return Ok(bytes);
        }
        ferry_kafka::batch::recompress_batches(&bytes, self.codec)
            .map_err(|e| Error::component("format raw", e))
    }

    fn finish(&mut self) -> Result<Bytes> {
        Ok(Bytes::new())
    }
}

/// Encodes records into v2 batches, one per run of consecutive offsets with the same
/// timestamp type, so every record keeps its offset. Control records are not re-encoded
/// (they are transaction markers, meaningless once records were changed).
pub fn encode_records(records: &[Record]) -> Result<Bytes> {
    let mut out = BytesMut::new();
    let mut run: Vec<ProduceRecord> = Vec::new();
    let mut run_base = 0i64;
    let mut run_type = TimestampType::Create;
    let mut expected = i64::MIN;
    let flush = |out: &mut BytesMut,
                 run: &mut Vec<ProduceRecord>,
                 base: i64,
                 ty: TimestampType|
     -> Result<()> {
        if run.is_empty() {
            return Ok(());
        }
        let attrs = if ty == TimestampType::LogAppend {
            0x08
        } else {
            0
        };
        let b = build_batch(base, run, Compression::None, attrs, None)
            .map_err(|e| Error::component("format raw", e))?;
        out.extend_from_slice(&b);
        run.clear();
        Ok(())
    };
    for r in records.iter().filter(|r| !r.is_control) {
        if r.offset != expected || r.timestamp_type != run_type {
            flush(&mut out, &mut run, run_base, run_type)?;
            run_base = r.offset;
            run_type = r.timestamp_type;
        }
        run.push(ProduceRecord {
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
            timestamp: r.timestamp,
        });
        expected = r.offset + 1;
    }
    flush(&mut out, &mut run, run_base, run_type)?;
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::Header;
    use std::sync::Arc;

    #[test]
    fn records_keep_offsets_and_fields() {
        let t: Arc<str> = Arc::from("t");
        let mut a = Record::new(t.clone(), 0, 10, Some(Bytes::from_static(b"v")));
        a.key = Some(Bytes::new());
        a.timestamp = 1_000;
        a.headers = vec![
            Header::new("h", None),
            Header::new("h", Some(Bytes::from_static(b""))),
        ];
        let mut b = Record::new(t.clone(), 0, 11, None);
        b.timestamp = 4_000_000_000_000;
        let mut c = Record::new(t.clone(), 0, 15, Some(Bytes::from_static(b"after gap")));
        c.timestamp = 5;
        let bytes = encode_records(&[a.clone(), b.clone(), c.clone()]).unwrap();
        let summary = ferry_kafka::verify_batches(&bytes).unwrap();
        assert_eq!(summary.batches, 2);
        assert_eq!(summary.records, 3);
        let back = ferry_kafka::decode_batches(&bytes, &t, 0).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[0].offset, 10);
        assert_eq!(back[0].key, a.key);
        assert_eq!(back[0].headers, a.headers);
        assert_eq!(back[1].value, None);
        assert_eq!(back[1].timestamp, b.timestamp);
        assert_eq!(back[2].offset, 15);
    }
}
