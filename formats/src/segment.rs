//! The seam between the storage sink and the file formats: a [`SegmentEncoder`] turns the
//! batches of one partition into the bytes of one segment object.

use crate::kind::FormatKind;
use bytes::Bytes;
use ferry_core::{Batch, Record, Result};

/// Encodes the batches of one segment (one topic-partition, offset order) into bytes.
pub trait SegmentEncoder: Send + Sync {
    /// Bytes to append to the segment object for this batch. May be empty when the format
    /// buffers (e.g. until a Parquet row group is full).
    fn encode(&mut self, batch: &Batch) -> Result<Bytes>;

    /// Ends the segment: whatever is still buffered plus any footer.
    fn finish(&mut self) -> Result<Bytes>;

    /// Records written so far, when the format leaves some out (control records are not
    /// data in export formats). `None`: every record of every batch is in the file.
    fn records_written(&self) -> Option<u64> {
        None
    }

    /// Takes the records the format wrote but flagged as not fitting its schema, each with
    /// the reason (Parquet typed columns with `on_error: dead_letter`); the storage sink
    /// writes them to its dead-letter files when the segment closes.
    fn take_rejected(&mut self) -> Vec<(Record, String)> {
        Vec::new()
    }

    /// Bytes buffered inside the encoder and not yet returned (for memory accounting).
    fn buffered_bytes(&self) -> usize {
        0
    }
}

/// A file format the storage sink can write.
#[async_trait::async_trait]
pub trait SegmentFormat: Send + Sync {
    /// Which format this is (its name, extension and capabilities).
    fn kind(&self) -> FormatKind;

    /// Name used in pipeline files and manifests (`raw`, `jsonl`, …).
    fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// File extension of its segment objects.
    fn extension(&self) -> &'static str {
        self.kind().extension()
    }

    /// A fresh encoder for one segment of `topic`/`partition` starting at `first_offset`.
    fn encoder(&self, topic: &str, partition: i32, first_offset: i64) -> Box<dyn SegmentEncoder>;

    /// Loads what encoding `batch` will need and cannot wait for, since encoders are
    /// synchronous (writer schemas of Schema-Registry Avro values). The storage sink
    /// awaits it before it opens a segment for the batch or encodes it. Default: nothing.
    async fn prepare(&self, _batch: &Batch) -> Result<()> {
        Ok(())
    }
}
