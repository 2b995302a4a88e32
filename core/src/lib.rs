//! Ferry's engine: the record model, the source/transform/sink traits, acks and checkpoints,
//! the runtime, YAML pipelines, the component registry, built-in transforms and storage.
//!
//! Core knows nothing of Kafka's wire format, Parquet or S3 specifics: those live in the
//! client, formats, sources and sinks crates, which plug in through the traits here.

pub mod checkpoint;
pub mod component;
pub mod config;
pub mod encryption;
pub mod error;
pub mod interpolate;
pub mod metadata;
pub mod metrics;
pub mod object_lock;
pub mod progress;
pub mod registry;
pub mod runtime;
pub mod storage;
pub mod task;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod tls;
pub mod topic_pattern;
pub mod transforms;

// The record model lives in its own crate (the Kafka client shares it); its modules stay
// reachable under their old paths (`ferry_core::batch::Batch`, `ferry_core::Record`).
pub use ferry_model::{ack, batch, record};

pub use ack::{Ack, AckTracker, Offsets};
pub use batch::{AbortedTxn, Batch, Payload, RawBatches, RawDecoder};
pub use component::{Sink, Source, SourceContext, Transform};
pub use config::{parse_yaml, ByteSize, Delivery, HumanDuration, Pipeline, Telemetry};
pub use error::{error_chain, Error, ErrorKind, Location, Result};
pub use metadata::{GroupOffsets, SourceMetadata, TargetReport, TargetTopicState, TopicSettings};
pub use record::{Header, ProducerInfo, Record, TimestampType};
pub use registry::{
    BuildContext, ConfigInput, Registry, SinkFactory, SourceFactory, TransformFactory,
};
pub use runtime::{run, run_until_signal, shutdown_signal, RunSummary};
pub use storage::Storage;
pub use task::{Fence, LastCheckpoint, PartitionProgress, TaskProgress, TaskScope};
pub use topic_pattern::{TopicPattern, TopicSelection};
