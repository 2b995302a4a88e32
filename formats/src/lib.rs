//! Ferry's file formats: record batches ⇄ bytes. `raw` Kafka segments, `jsonl` (JSON lines),
//! `avro` and `parquet` exports (optionally with values decoded into typed columns:
//! JSON, or Confluent Schema-Registry Avro through [`confluent`]), and the backup layout.
//!
//! [`register`] lists the format names in a registry (for `ferry components`); sinks and
//! sources choose their format themselves.

pub mod avro;
pub mod confluent;
pub mod jsonl;
pub mod jsonl_segment;
pub mod layout;
pub mod parquet;
pub mod raw;
pub mod segment;
#[cfg(test)]
mod testdata;

use ferry_core::Registry;

/// Registers the name and description of every format of this crate.
pub fn register(reg: &mut Registry) {
    reg.register_format(
        avro::NAME,
        "Avro object container file: one record per Kafka record (topic, partition, offset, timestamp-millis, timestamp_type, key/value bytes|null, headers); snappy blocks by default; optional `value: {as: avro}` adds the Schema-Registry Avro value decoded (value_avro)",
    );
    reg.register_format(
        parquet::NAME,
        "Parquet: the Kafka record envelope as columns (timestamp in UTC ms, key/value binary, headers list<struct>); zstd, row groups bounded by bytes, footer metadata ferry.topic/partition/first_offset/next_offset; optional `value:` typed struct column decoded from JSON (`as: json`, columns given or inferred from the first values) or Schema-Registry Avro (`as: avro`) values",
    );
    reg.register_format(
        "jsonl",
        "JSON lines: one object per record (topic, partition, offset, timestamp, key, value, headers); bytes as UTF-8 strings or {\"base64\": …}",
    );
}
