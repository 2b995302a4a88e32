//! JSON lines as a segment format of the storage sink (see [`crate::jsonl`] for the line
//! encoding). Control records are skipped: they are transaction markers, not data.

use crate::segment::{SegmentEncoder, SegmentFormat};
use bytes::Bytes;
use ferry_core::{Batch, Result};

/// The `jsonl` segment format.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonlFormat;

impl SegmentFormat for JsonlFormat {
    fn kind(&self) -> crate::kind::FormatKind {
        crate::kind::FormatKind::Jsonl
    }

    fn encoder(&self, _topic: &str, _partition: i32, _first: i64) -> Box<dyn SegmentEncoder> {
        Box::new(JsonlEncoder::default())
    }
}

/// Encodes each batch's records as lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonlEncoder {
    written: u64,
}

impl SegmentEncoder for JsonlEncoder {
    fn encode(&mut self, batch: &Batch) -> Result<Bytes> {
        let records = batch.records()?;
        let mut out = Vec::with_capacity(records.iter().map(|r| r.size_hint() + 96).sum());
        for r in records.iter().filter(|r| !r.is_control) {
            crate::jsonl::encode_record(r, &mut out);
            self.written += 1;
        }
        Ok(Bytes::from(out))
    }

    fn finish(&mut self) -> Result<Bytes> {
        Ok(Bytes::new())
    }

    fn records_written(&self) -> Option<u64> {
        Some(self.written)
    }
}
