//! Ferry's file formats: record batches ⇄ bytes, and the backup layout.
//!
//! | `format:` (storage sink, manifests) | module | what it is |
//! |---|---|---|
//! | `raw`     | [`raw`] (segment writer), [`segment`] (the encoder seam) | Kafka v2 record batches as fetched: the backup format |
//! | `jsonl`   | [`jsonl`] (records ⇄ lines), [`jsonl_segment`] (segment writer) | JSON lines, one object per record |
//! | `avro`    | [`avro`] | Avro object container files of envelope records |
//! | `parquet` | [`parquet`] (+ `parquet/json`, `parquet/avro` typed value columns) | Parquet files of envelope columns |
//!
//! [`FormatKind`] is the one list of formats and their capabilities (decodes records,
//! restorable, extension); components ask it instead of comparing names. Also here:
//! [`layout`] (backup object names, manifests: shared by the storage sink and the backup
//! source) and [`confluent`] (Schema-Registry Avro values).
//!
//! [`register`] lists the formats in a registry (for `ferry components`); the storage sink
//! builds them with their options.

pub mod avro;
pub mod confluent;
pub mod jsonl;
pub mod jsonl_segment;
pub mod kind;
pub mod layout;
pub mod parquet;
pub mod raw;
pub mod segment;
#[cfg(test)]
mod testdata;

pub use kind::FormatKind;

use ferry_core::Registry;

/// Registers the name and description of every format of this crate.
pub fn register(reg: &mut Registry) {
    for kind in FormatKind::ALL {
        reg.register_format(kind.name(), kind.description());
    }
}
