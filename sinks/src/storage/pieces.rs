//! Pieces: a batch cut by time bucket (`{date}`/`{hour}` names), encoded on blocking
//! threads a few partitions at a time, then appended to their segments in order.

use super::segment::OpenSegment;
use super::{decodes, StorageSink};
use bytes::Bytes;
use ferry_core::{Ack, Batch, Error, Result};
use ferry_formats::layout::Gap;
use std::sync::Arc;

/// Pieces encoded on blocking threads at once (see `StorageSink::encoding`).
pub(super) const ENCODING_IN_PARALLEL: usize = 3;

/// Bytes of the pieces encoded at once, unless one piece alone is larger. Encoding copies a
/// record several times (column builder, page, compressed page, row group), so with 10 MiB
/// records three pieces at a time took a Parquet export past 512 MiB; pieces of ordinary
/// batches (about 1 MiB) never reach this.
pub(super) const ENCODING_BYTES: usize = 24 << 20;

/// A segment back from a blocking thread with the piece it encoded and the bytes to append.
type Encoded = (OpenSegment, Batch, Result<Bytes>);

/// Whether a piece of `bytes` may start encoding beside `count` pieces of `in_flight` bytes:
/// always when none is encoding, else within [`ENCODING_IN_PARALLEL`] and [`ENCODING_BYTES`].
fn room_to_encode(count: usize, in_flight: usize, bytes: usize) -> bool {
    count == 0 || (count < ENCODING_IN_PARALLEL && in_flight + bytes <= ENCODING_BYTES)
}

/// A partition's piece being encoded on a blocking thread.
pub(super) struct Encoding {
    key: (Arc<str>, i32),
    /// The piece's batch bytes.
    bytes: usize,
    task: tokio::task::JoinHandle<Encoded>,
}

/// A part of a batch that goes to one segment: records of one time bucket.
pub(super) struct Piece {
    pub(super) batch: Batch,
    /// Time bucket of its data records; `None` when it has none (it joins any segment).
    pub(super) bucket: Option<i64>,
    /// Timestamp of its first data record (of its first record when it has no data).
    pub(super) first_ts: i64,
}

impl StorageSink {
    /// Splits a decoded batch into runs of records of one time bucket (of `{date}`/`{hour}`),
    /// each with its share of the ack. Offsets stay contiguous: each run covers up to the
    /// next run's first record, the last one up to the batch's end.
    pub(super) fn split_by_time(&self, mut batch: Batch) -> Result<Vec<Piece>> {
        let Some(t) = self.template.as_ref().filter(|t| t.uses_time()) else {
            // Names do not depend on time: no need to look at (or decode) the records.
            return Ok(vec![Piece {
                batch,
                bucket: None,
                first_ts: 0,
            }]);
        };
        let records = std::mem::take(batch.records_mut()?);
        // (start index, bucket, first data timestamp) of each run.
        let mut runs: Vec<(usize, i64, i64)> = Vec::new();
        for (i, r) in records.iter().enumerate().filter(|(_, r)| !r.is_control) {
            let Some(b) = t.bucket(r.timestamp) else {
                continue;
            };
            if runs.last().is_none_or(|(_, last, _)| *last != b) {
                runs.push((if runs.is_empty() { 0 } else { i }, b, r.timestamp));
            }
        }
        let Batch {
            topic,
            partition,
            first_offset,
            next_offset,
            ack,
            ..
        } = batch;
        if runs.len() <= 1 {
            let (bucket, first_ts) = match runs.first() {
                Some((_, b, ts)) => (Some(*b), *ts),
                None => (None, records.first().map_or(0, |r| r.timestamp)),
            };
            return Ok(vec![Piece {
                batch: Batch::from_records(
                    topic,
                    partition,
                    first_offset,
                    next_offset,
                    records,
                    ack,
                ),
                bucket,
                first_ts,
            }]);
        }
        let mut acks = ack.split(runs.len());
        let mut rest = records;
        let mut pieces = Vec::with_capacity(runs.len());
        // Cut from the back so each split_off is cheap and indices stay valid.
        let mut end_offset = next_offset;
        for (start, bucket, first_ts) in runs.into_iter().rev() {
            let recs = rest.split_off(start);
            let first = if start == 0 {
                first_offset
            } else {
                recs.first().map_or(first_offset, |r| r.offset)
            };
            let ack = acks.pop().unwrap_or_else(Ack::none);
            pieces.push(Piece {
                batch: Batch::from_records(topic.clone(), partition, first, end_offset, recs, ack),
                bucket: Some(bucket),
                first_ts,
            });
            end_offset = first;
        }
        pieces.reverse();
        Ok(pieces)
    }

    /// Appends one piece to its partition's segment, rolling first when its time bucket
    /// differs from the segment's, and after when the segment is full.
    pub(super) async fn write_piece(&mut self, piece: Piece, gap: Option<Gap>) -> Result<()> {
        let key = (piece.batch.topic.clone(), piece.batch.partition);
        // The previous piece (of this batch, with time buckets) must be in the segment first.
        self.settle(&key).await?;
        let other_bucket = self
            .open
            .get(&key)
            .is_some_and(|s| piece.bucket.is_some() && s.bucket != piece.bucket);
        if other_bucket {
            if let Some(seg) = self.open.remove(&key) {
                let next = self.close_segment(&key.0, key.1, seg).await?;
                self.last_next.insert(key.clone(), next);
            }
        }
        let mut seg = match self.open.remove(&key) {
            Some(seg) => seg,
            None => self.open_segment(&piece).await?,
        };
        if let Some(g) = gap {
            seg.gaps.push(g);
        }
        let mut batch = piece.batch;
        if decodes(&*self.format) {
            // A few at a time: each piece in flight holds its batch, the buffers its
            // records are slices of and the encoder's copies.
            let bytes = batch.size_bytes();
            while !room_to_encode(self.encoding.len(), self.encoding_bytes(), bytes) {
                // The oldest first: it is the likeliest to be done.
                self.settle_oldest().await?;
            }
            let task = tokio::task::spawn_blocking(move || {
                let bytes = match batch.records_mut() {
                    Ok(_) => seg.encoder.encode(&batch),
                    Err(e) => Err(e.into()),
                };
                (seg, batch, bytes)
            });
            // `write_piece` settled this partition first: it is not in the queue.
            self.encoding.push_back(Encoding { key, bytes, task });
            return Ok(());
        }
        let bytes = seg.encoder.encode(&batch);
        self.complete_piece(key, seg, batch, bytes).await
    }

    /// Waits for the piece of `key` being encoded, if any, and completes it.
    pub(super) async fn settle(&mut self, key: &(Arc<str>, i32)) -> Result<()> {
        match self.encoding.iter().position(|e| e.key == *key) {
            Some(i) => self.settle_at(i).await,
            None => Ok(()),
        }
    }

    /// Completes the oldest piece being encoded, if any.
    async fn settle_oldest(&mut self) -> Result<()> {
        if self.encoding.is_empty() {
            return Ok(());
        }
        self.settle_at(0).await
    }

    async fn settle_at(&mut self, i: usize) -> Result<()> {
        let Some(Encoding { key, task, .. }) = self.encoding.remove(i) else {
            return Ok(());
        };
        let (seg, batch, bytes) = task.await.map_err(|e| {
            Error::internal(format!(
                "encoding a segment of {}/{} failed: {e}",
                key.0, key.1
            ))
        })?;
        self.complete_piece(key, seg, batch, bytes).await
    }

    /// Batch bytes of the pieces being encoded.
    fn encoding_bytes(&self) -> usize {
        self.encoding.iter().map(|e| e.bytes).sum()
    }

    /// [`StorageSink::settle`] for every partition.
    pub(super) async fn settle_all(&mut self) -> Result<()> {
        while !self.encoding.is_empty() {
            self.settle_oldest().await?;
        }
        Ok(())
    }

    /// Appends an encoded piece to its segment and counts it; closes the segment when it
    /// is full.
    async fn complete_piece(
        &mut self,
        key: (Arc<str>, i32),
        mut seg: OpenSegment,
        batch: Batch,
        bytes: Result<Bytes>,
    ) -> Result<()> {
        let result = match bytes {
            Ok(bytes) => self.append(&mut seg, bytes).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let _ = seg.writer.abort().await;
            return Err(e);
        }
        let (count, min_ts, max_ts, aborted) = match batch.raw() {
            Some(raw) => (
                raw.record_count,
                raw.min_timestamp,
                raw.max_timestamp,
                raw.aborted.clone(),
            ),
            None => {
                let recs = batch.records()?;
                // Decoded formats leave control records out of the file.
                let data = |r: &&ferry_core::Record| !decodes(&*self.format) || !r.is_control;
                let count = recs.iter().filter(data).count() as u64;
                let stamps = || {
                    recs.iter()
                        .filter(data)
                        .map(|r| r.timestamp)
                        .filter(|t| *t >= 0)
                };
                (count, stamps().min(), stamps().max(), Vec::new())
            }
        };
        seg.records += count;
        seg.source_bytes += batch.size_bytes() as u64;
        seg.min_ts = match (seg.min_ts, min_ts) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        seg.max_ts = match (seg.max_ts, max_ts) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        seg.aborted.extend(aborted);
        seg.next_offset = batch.next_offset;
        seg.acks.push(batch.ack);
        metrics::counter!("ferry_sink_records_total", "sink" => "storage").increment(count);
        if self.roll_due(&seg) {
            let next = self.close_segment(&key.0, key.1, seg).await?;
            self.last_next.insert(key, next);
        } else {
            self.open.insert(key, seg);
            self.bound_buffers().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_encode_a_few_at_a_time_within_a_byte_budget() {
        const MIB: usize = 1 << 20;
        assert!(room_to_encode(0, 0, 100 * MIB), "one piece always starts");
        assert!(
            room_to_encode(2, 2 * MIB, MIB),
            "ordinary batches: three at a time"
        );
        assert!(!room_to_encode(3, 3 * MIB, MIB));
        assert!(
            room_to_encode(1, 10 * MIB, 10 * MIB),
            "two 10 MiB pieces fit"
        );
        assert!(!room_to_encode(2, 20 * MIB, 10 * MIB), "a third does not");
        assert!(
            !room_to_encode(1, 30 * MIB, MIB),
            "nothing beside a piece over the budget"
        );
    }
}
