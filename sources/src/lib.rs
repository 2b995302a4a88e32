//! Ferry's sources: `generator` (synthetic records), `storage` (files a storage sink wrote),
//! `backup` and `kafka`.
//!
//! Each module holds one source and its factory; [`register`] adds them to a registry.

pub mod backup;
pub mod generator;
pub mod jsonl;
pub mod kafka;

use ferry_core::Registry;

/// Registers every source of this crate.
pub fn register(reg: &mut Registry) {
    reg.register_source(generator::GeneratorFactory);
    reg.register_source(kafka::KafkaSourceFactory);
    reg.register_source(backup::BackupSourceFactory);
    reg.register_source(jsonl::JsonlSourceFactory);
}
