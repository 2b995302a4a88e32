//! Ferry's record model, shared by the engine (`ferry-core`) and the Kafka client
//! (`ferry-kafka`) so the client builds without the engine's storage and metrics stacks.
//!
//! - [`Record`]: one Kafka record with everything a backup must keep.
//! - [`Batch`]: records (or raw Kafka batches) of one partition with their offset span and
//!   their [`Ack`].
//! - [`AckTracker`]: the per-partition durable watermark that acks drive.

#![warn(missing_docs)]

pub mod ack;
pub mod batch;
pub mod error;
pub mod record;

pub use ack::{Ack, AckTracker, Offsets};
pub use batch::{AbortedTxn, Batch, Payload, RawBatches, RawDecoder};
pub use error::Error;
pub use record::{Header, ProducerInfo, Record, TimestampType};
