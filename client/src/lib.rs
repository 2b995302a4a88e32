//! Ferry's native Kafka client, built on `kafka-protocol`.
//!
//! - [`Client`]: bootstrap, metadata cache, pipelined connections per broker, ListOffsets,
//!   Fetch (one multi-partition request per leader, in incremental fetch sessions when
//!   asked: [`FetchSessions`]), groups and admin APIs.
//! - [`Producer`]: idempotent produce of exact records (keys, values, headers, timestamps).
//! - [`batch`]: Kafka v2 record batches: whole-batch scanning of fetched bytes, CRC
//!   verification, decoding of every codec into [`ferry_model::Record`], encoding.
//!
//! Versions are negotiated with ApiVersions per broker, never hard-coded; see docs/ARCHITECTURE.md §10
//! for the traps this client avoids.

#![warn(missing_docs)]

pub mod admin;
pub mod batch;
pub mod client;
mod conn;
pub mod error;
pub mod fetch_session;
pub mod group;
pub mod options;
mod produce_frame;
pub mod producer;
pub mod retry;
pub mod security;
pub mod wire;

pub use admin::{
    ConfigEntry, GroupDescription, ListedGroup, NewTopic, PartitionOffsets, TopicOffsets,
    TopicResult,
};
pub use batch::{
    decode_batches, records_from, scan_batches, verify_batches, BatchDecoder, BatchHeader,
    BatchSummary, FetchedBatches, ProduceRecord,
};
pub use client::{
    BrokerMetadata, Client, ClientConfig, ClusterMetadata, FetchOptions, FetchRequestPartition,
    FetchedPartition, Isolation, OffsetSpec, PartitionMetadata, TopicMetadata, Uuid,
};
pub use conn::CONNECTED_GAUGE;
pub use error::{ClientError, KafkaCode, Result};
pub use fetch_session::{FetchSessionStats, FetchSessions};
pub use group::{Assignor, GroupConfig, GroupMember, GroupProtocol, GroupTimeouts, Heartbeat};
pub use kafka_protocol::records::Compression;
pub use options::{CompressionCodec, ConnectionOptions, SaslOptions, TlsOptions};
pub use producer::{
    EncodedBatch, InFlight, Prepared, ProduceBatch, ProduceItem, ProduceResult, Producer,
    ProducerConfig,
};
pub use retry::{Backoff, RetryPolicy};
pub use security::{SaslConfig, SaslMechanism, TlsConfig};
