//! Ferry's sinks, one module per YAML `type:`:
//!
//! | `type:`   | module | what it writes |
//! |-----------|--------|----------------|
//! | `storage` | [`storage`] | rolling segments with manifests (backups, exports) to files, S3, GCS, Azure, memory |
//! | `kafka`   | [`kafka`] (+ [`offset_map`], [`partitioner`]) | Kafka topics: restores and cluster-to-cluster copies |
//! | `stdout`  | [`stdout`] | JSON lines on standard output |
//! | `iceberg` | `iceberg` (feature `iceberg`, default) | Apache Iceberg v2 tables (SQL or REST catalog), exactly once |
//! | `fanout`  | [`fanout`] | every batch to several of the sinks above (a backup in two places) |
//!
//! [`register`] adds them to a registry.

pub mod fanout;
#[cfg(feature = "iceberg")]
pub mod iceberg;
pub mod kafka;
pub mod offset_map;
pub mod partitioner;
pub mod stdout;
pub mod storage;

use ferry_core::Registry;

/// Registers every sink of this crate.
pub fn register(reg: &mut Registry) {
    register_leaves(reg);
    // A fanout's children are any sink but another fanout: it builds them from its own
    // registry of the others.
    let mut leaves = Registry::new();
    register_leaves(&mut leaves);
    reg.register_sink(fanout::FanoutFactory::new(std::sync::Arc::new(leaves)));
}

/// Registers the sinks that write somewhere themselves (all but `fanout`).
fn register_leaves(reg: &mut Registry) {
    reg.register_sink(storage::StorageSinkFactory);
    reg.register_sink(kafka::KafkaSinkFactory);
    reg.register_sink(stdout::StdoutFactory);
    #[cfg(feature = "iceberg")]
    reg.register_sink(iceberg::IcebergSinkFactory);
}
