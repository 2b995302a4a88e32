//! Ferry's sinks: `storage` (rolling segments with manifests, for backups and exports),
//! `kafka` (restores and cluster-to-cluster copies) and `stdout`.
//!
//! Each module holds one sink and its factory; [`register`] adds them to a registry.

pub mod kafka;
pub mod offset_map;
pub mod partitioner;
pub mod stdout;
pub mod storage;

use ferry_core::Registry;

/// Registers every sink of this crate.
pub fn register(reg: &mut Registry) {
    reg.register_sink(storage::StorageSinkFactory);
    reg.register_sink(kafka::KafkaSinkFactory);
    reg.register_sink(stdout::StdoutFactory);
}
