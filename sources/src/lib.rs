//! Ferry's sources, one module per YAML `type:`:
//!
//! | `type:`     | module | what it reads |
//! |-------------|--------|---------------|
//! | `kafka`     | [`kafka`] | Kafka topics: raw record batches, continuously or as a snapshot |
//! | `backup`    | [`backup`] (folder: catalog, partition, segment, txn, verify, inspect) | what a storage sink wrote, for restores (any format) |
//! | `storage`   | [`storage`] | JSON lines files a storage sink wrote (`format: jsonl`) |
//! | `generator` | [`generator`] | synthetic records, for demos and tests |
//!
//! [`register`] adds them to a registry.

pub mod backup;
pub mod generator;
pub mod kafka;
pub mod storage;

use ferry_core::Registry;

/// Registers every source of this crate.
pub fn register(reg: &mut Registry) {
    reg.register_source(generator::GeneratorFactory);
    reg.register_source(kafka::KafkaSourceFactory);
    reg.register_source(backup::BackupSourceFactory);
    reg.register_source(storage::StorageSourceFactory);
}
