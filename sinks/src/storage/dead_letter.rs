//! Dead-letter files: records whose values do not fit the typed columns
//! (`on_error: dead_letter`), one JSON-lines file per segment that had any; with
//! `encryption:` the file is sealed in the same envelope as the segments.

use super::segment::OpenSegment;
use super::StorageSink;
use ferry_core::{Error, Result};

/// Key of the dead-letter file of a segment.
pub fn dead_letter_key(prefix: &str, topic: &str, partition: i32, first_offset: i64) -> String {
    format!("{prefix}/{topic}/{partition}/{first_offset:020}.jsonl")
}

/// One dead-letter line: `{"reason": "...", "record": <the jsonl object>}` and a newline.
pub(crate) fn dead_letter_line(
    record: &ferry_core::Record,
    reason: &str,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.extend_from_slice(b"{\"reason\":");
    serde_json::to_writer(&mut *out, reason)
        .map_err(|e| Error::internal(format!("encoding a dead-letter reason: {e}")))?;
    out.extend_from_slice(b",\"record\":");
    // A JSON object and its newline.
    ferry_formats::jsonl::encode_record(record, out);
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

impl StorageSink {
    /// Writes the records the encoder rejected (if any) to the segment's dead-letter file,
    /// before its manifest; a retry after a crash writes the same key again.
    pub(super) async fn write_dead_letters(
        &self,
        topic: &str,
        partition: i32,
        seg: &mut OpenSegment,
    ) -> Result<()> {
        let rejected = seg.encoder.take_rejected();
        if rejected.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        for (record, reason) in &rejected {
            dead_letter_line(record, reason, &mut out)?;
        }
        let key = dead_letter_key(
            self.config.dead_letter_prefix()?,
            topic,
            partition,
            seg.first_offset,
        );
        // They hold whole records: as encrypted as the segments when the sink encrypts.
        let out = match &self.keys {
            Some(keys) => ferry_core::encryption::seal_bytes(keys.as_ref(), &key, &out).await?,
            None => out,
        };
        self.storage.write(&key, out).await?;
        metrics::counter!("ferry_dead_letter_records_total").increment(rejected.len() as u64);
        tracing::warn!(file = %key, records = rejected.len(), "values that do not fit the typed columns written to the dead-letter file");
        Ok(())
    }
}
