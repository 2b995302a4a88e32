//! Batches: the unit that travels through a pipeline, with its offset span and its ack.

use crate::ack::Ack;
use crate::record::Record;
use crate::Error;
use bytes::Bytes;
use std::fmt;
use std::sync::Arc;

/// A transaction that was aborted, as Kafka lists it in a fetch response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AbortedTxn {
    /// Producer that aborted.
    pub producer_id: i64,
    /// First offset of the aborted transaction.
    pub first_offset: i64,
}

/// Decodes raw Kafka record batches into records. Implemented by the Kafka client crate,
/// so core never needs to know the wire format.
pub trait RawDecoder: Send + Sync {
    /// Decodes every record (control records included, flagged) of `raw` for `topic`/`partition`.
    fn decode(
        &self,
        topic: &Arc<str>,
        partition: i32,
        raw: &RawBatches,
    ) -> Result<Vec<Record>, Error>;

    /// The batches of `raw` from `offset` on, byte for byte, when `offset` falls between two
    /// of them (no batch holds offsets on both sides of it); `None` otherwise, or when the
    /// decoder cannot tell. A sink handed a batch that overlaps what it already stored keeps
    /// the new batches as they were fetched instead of re-encoding their records.
    fn batches_from(&self, _raw: &RawBatches, _offset: i64) -> Option<RawBatches> {
        None
    }
}

/// Untouched Kafka v2 record batches as fetched, plus what a manifest needs without decoding.
#[derive(Clone)]
pub struct RawBatches {
    /// Concatenated record batches (the byte format of a Kafka log segment).
    pub bytes: Bytes,
    /// Number of records in those batches (control records included).
    pub record_count: u64,
    /// Smallest first-timestamp of the batches, milliseconds.
    pub min_timestamp: Option<i64>,
    /// Largest max-timestamp of the batches, milliseconds.
    pub max_timestamp: Option<i64>,
    /// Aborted transactions that overlap these batches (read_uncommitted backups).
    pub aborted: Vec<AbortedTxn>,
    /// Turns the bytes into records when a transform or a decoded format needs them.
    pub decoder: Arc<dyn RawDecoder>,
}

impl fmt::Debug for RawBatches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawBatches")
            .field("bytes", &self.bytes.len())
            .field("record_count", &self.record_count)
            .field("min_timestamp", &self.min_timestamp)
            .field("max_timestamp", &self.max_timestamp)
            .field("aborted", &self.aborted)
            .finish()
    }
}

/// What a batch carries: decoded records, or raw Kafka batches decoded only on demand.
#[derive(Debug, Clone)]
pub enum Payload {
    /// Decoded records in offset order.
    Records(Vec<Record>),
    /// Raw Kafka record batches, not yet decoded.
    Raw(RawBatches),
}

/// Records of one topic-partition in offset order, the offset span they cover and their ack.
///
/// The span (`first_offset..next_offset`) comes from Kafka batch headers, so offsets removed
/// by compaction or transaction markers inside the span are covered, not lost.
#[derive(Debug)]
pub struct Batch {
    /// Topic of every record in the batch.
    pub topic: Arc<str>,
    /// Partition of every record in the batch.
    pub partition: i32,
    /// First offset the batch covers.
    pub first_offset: i64,
    /// The offset after the last one the batch covers.
    pub next_offset: i64,
    /// Records or raw bytes.
    pub payload: Payload,
    /// Resolved once the batch is durable (or failed) downstream.
    pub ack: Ack,
}

impl Batch {
    /// A batch of decoded records.
    pub fn from_records(
        topic: Arc<str>,
        partition: i32,
        first_offset: i64,
        next_offset: i64,
        records: Vec<Record>,
        ack: Ack,
    ) -> Self {
        Batch {
            topic,
            partition,
            first_offset,
            next_offset,
            payload: Payload::Records(records),
            ack,
        }
    }

    /// Number of records (control records included).
    pub fn record_count(&self) -> u64 {
        match &self.payload {
            Payload::Records(r) => r.len() as u64,
            Payload::Raw(raw) => raw.record_count,
        }
    }

    /// Approximate bytes held, for the in-flight budget and metrics.
    pub fn size_bytes(&self) -> usize {
        match &self.payload {
            Payload::Records(r) => r.iter().map(Record::size_hint).sum(),
            Payload::Raw(raw) => raw.bytes.len(),
        }
    }

    /// The raw bytes, if the batch still has them untouched.
    pub fn raw(&self) -> Option<&RawBatches> {
        match &self.payload {
            Payload::Raw(raw) => Some(raw),
            Payload::Records(_) => None,
        }
    }

    /// Decoded records, decoding raw bytes on first use (the raw bytes are dropped then,
    /// because a transform may change records and the bytes would no longer match).
    pub fn records_mut(&mut self) -> Result<&mut Vec<Record>, Error> {
        if let Payload::Raw(raw) = &self.payload {
            let records = raw.decoder.decode(&self.topic, self.partition, raw)?;
            self.payload = Payload::Records(records);
        }
        match &mut self.payload {
            Payload::Records(r) => Ok(r),
            // Just replaced by records above; kept as an error rather than a panic.
            Payload::Raw(_) => Err(Error::Corrupt("batch could not be decoded".into())),
        }
    }

    /// Decoded records without dropping raw bytes (decodes into a new vector when raw).
    pub fn records(&self) -> Result<std::borrow::Cow<'_, [Record]>, Error> {
        match &self.payload {
            Payload::Records(r) => Ok(std::borrow::Cow::Borrowed(r)),
            Payload::Raw(raw) => Ok(std::borrow::Cow::Owned(raw.decoder.decode(
                &self.topic,
                self.partition,
                raw,
            )?)),
        }
    }
}
