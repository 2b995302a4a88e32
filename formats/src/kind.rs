//! The one list of Ferry's file formats and what each can do.
//!
//! Components ask a [`FormatKind`] what they need to know (does it decode records? can a
//! restore read it? may its paths be split by time? what extension do its objects get?)
//! instead of comparing format names as strings.

use std::fmt;
use std::sync::Arc;

use crate::segment::SegmentFormat;

/// A file format of Ferry: the value of a storage sink's `format:` and of a manifest's
/// `format` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FormatKind {
    /// Kafka v2 record batches exactly as fetched (a Kafka log segment's bytes).
    Raw,
    /// JSON lines: one object per record.
    Jsonl,
    /// Avro object container files of envelope records.
    Avro,
    /// Parquet files of envelope columns.
    Parquet,
}

impl FormatKind {
    /// Every format, in the order they are listed to users.
    pub const ALL: [FormatKind; 4] = [
        FormatKind::Raw,
        FormatKind::Jsonl,
        FormatKind::Avro,
        FormatKind::Parquet,
    ];

    /// The name used in pipeline files, flags and manifests.
    pub fn name(self) -> &'static str {
        match self {
            FormatKind::Raw => "raw",
            FormatKind::Jsonl => "jsonl",
            FormatKind::Avro => crate::avro::NAME,
            FormatKind::Parquet => crate::parquet::NAME,
        }
    }

    /// The format of a name, if Ferry knows it.
    pub fn from_name(name: &str) -> Option<FormatKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The names of every format, comma-separated (for error messages and help).
    pub fn names() -> String {
        Self::ALL.map(FormatKind::name).join(", ")
    }

    /// The extension of its segment objects.
    pub fn extension(self) -> &'static str {
        match self {
            FormatKind::Raw => crate::raw::RAW_EXTENSION,
            FormatKind::Jsonl => crate::jsonl::EXTENSION,
            FormatKind::Avro => crate::avro::EXTENSION,
            FormatKind::Parquet => crate::parquet::EXTENSION,
        }
    }

    /// Whether records are decoded before encoding. Only `raw` keeps the fetched bytes.
    pub fn decodes_records(self) -> bool {
        self != FormatKind::Raw
    }

    /// Whether a path template may split segments by record time (`{date}`, `{hour}`):
    /// raw segments keep whole Kafka batches, which span times, so they cannot be split.
    pub fn splits_by_time(self) -> bool {
        self.decodes_records()
    }

    /// Whether the backup source can read it back (a restore). Every format today keeps
    /// offsets, timestamps, keys, values and headers; only `raw` also keeps producer ids,
    /// compression and transaction markers byte for byte.
    pub fn restorable(self) -> bool {
        true
    }

    /// One line saying what the format is, for `ferry components`.
    pub fn description(self) -> &'static str {
        match self {
            FormatKind::Raw => "Kafka v2 record batches exactly as fetched (the bytes of a Kafka log segment): offsets, timestamps, producer ids, compression and transaction markers kept; the backup format",
            FormatKind::Jsonl => "JSON lines: one object per record (topic, partition, offset, timestamp, key, value, headers); bytes as UTF-8 strings or {\"base64\": …}",
            FormatKind::Avro => "Avro object container file: one record per Kafka record (topic, partition, offset, timestamp-millis, timestamp_type, key/value bytes|null, headers); snappy blocks by default; optional `value: {as: avro}` adds the Schema-Registry Avro value decoded (value_avro)",
            FormatKind::Parquet => "Parquet: the Kafka record envelope as columns (timestamp in UTC ms, key/value binary, headers list<struct>); zstd, row groups bounded by bytes, footer metadata ferry.topic/partition/first_offset/next_offset; optional `value:` typed struct column decoded from JSON (`as: json`, columns given or inferred from the first values) or Schema-Registry Avro (`as: avro`) values",
        }
    }

    /// The format with its default options.
    pub fn with_defaults(self) -> Arc<dyn SegmentFormat> {
        match self {
            FormatKind::Raw => Arc::new(crate::raw::RawFormat::default()),
            FormatKind::Jsonl => Arc::new(crate::jsonl_segment::JsonlFormat),
            FormatKind::Avro => Arc::new(crate::avro::AvroFormat::default()),
            FormatKind::Parquet => Arc::new(crate::parquet::ParquetFormat::default()),
        }
    }
}

impl fmt::Display for FormatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_the_formats() {
        for k in FormatKind::ALL {
            assert_eq!(FormatKind::from_name(k.name()), Some(k));
            let f = k.with_defaults();
            assert_eq!(f.kind(), k);
            assert_eq!(f.name(), k.name());
            assert_eq!(f.extension(), k.extension());
        }
        assert_eq!(FormatKind::from_name("csv"), None);
        assert_eq!(FormatKind::names(), "raw, jsonl, avro, parquet");
    }

    #[test]
    fn only_raw_keeps_fetched_bytes() {
        assert!(!FormatKind::Raw.decodes_records());
        assert!(!FormatKind::Raw.splits_by_time());
        for k in [FormatKind::Jsonl, FormatKind::Avro, FormatKind::Parquet] {
            assert!(k.decodes_records() && k.splits_by_time(), "{k}");
        }
    }
}
