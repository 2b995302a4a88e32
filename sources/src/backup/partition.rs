//! Reading one partition of a backup: its segments in offset order, from the resume point,
//! within the offset range and the `until` time, aborted and control records dropped.

use super::segment::{
    decode_jsonl_line, decode_raw, format_of, open_segment, AvroReader, ChunkedObject, LineReader,
    ParquetReader, RawBatch, RawReader,
};
use super::txn::{is_abort_marker, MarkerQueue};
use ferry_core::encryption::KeyProvider;
use ferry_core::{Record, Result, Storage};
use ferry_formats::layout::SegmentManifest;
use ferry_formats::FormatKind;
use std::collections::HashSet;
use std::sync::Arc;

/// Where a partition starts and stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    /// First original offset to restore (resume point or range start).
    pub start: Option<i64>,
    /// Offset to stop before (exclusive).
    pub end: Option<i64>,
    /// Restore every record before the first one whose timestamp is later than this.
    pub until: Option<i64>,
}

/// A span of a partition with the records to restore in it.
#[derive(Debug)]
pub struct Span {
    /// First offset covered.
    pub first_offset: i64,
    /// Offset after the last one covered.
    pub next_offset: i64,
    /// Records kept (control and aborted records removed).
    pub records: Vec<Record>,
    /// Instead of records: one Kafka batch of a raw segment, kept whole (in range, not
    /// transactional, not control), as it was backed up, so a sink can write it without
    /// decoding it. `records` is then empty.
    pub raw: Option<RawBatch>,
}

enum Cursor {
    Raw(RawReader),
    Lines(LineReader),
    Avro(AvroReader),
    Parquet(ParquetReader),
}

/// One unit read from a segment.
enum Piece {
    Raw(RawBatch),
    Record(Record),
}

/// Reads raw segments ahead of the main position for transaction markers only.
struct Lookahead {
    /// Index of the next segment to open.
    next: usize,
    reader: Option<RawReader>,
    done: bool,
    markers: MarkerQueue,
}

/// Reads one partition's segments, front to back.
pub struct PartitionReader {
    storage: Storage,
    topic: Arc<str>,
    partition: i32,
    segments: Vec<SegmentManifest>,
    /// Index of the next segment to open.
    next_segment: usize,
    current: Option<(SegmentManifest, Cursor)>,
    /// Next offset that may be restored; everything below is done or skipped.
    position: i64,
    bounds: Bounds,
    include_aborted: bool,
    lookahead: Option<Lookahead>,
    /// Producers already warned about for a transaction without a marker.
    warned_open: HashSet<i64>,
    chunk: u64,
    /// Keys of an encrypted backup.
    keys: Option<Arc<dyn KeyProvider>>,
    done: bool,
    /// A piece read but left for the next span.
    pushed_back: Option<(Piece, String)>,
}

impl PartitionReader {
    /// A reader over `manifests` (any order; sorted here). `include_aborted` keeps the data
    /// of aborted transactions.
    pub fn new(
        storage: Storage,
        topic: Arc<str>,
        partition: i32,
        mut manifests: Vec<SegmentManifest>,
        bounds: Bounds,
        include_aborted: bool,
        chunk: u64,
    ) -> Self {
        manifests.sort_by_key(|m| m.first_offset);
        let start = bounds.start.unwrap_or(i64::MIN);
        let segments: Vec<SegmentManifest> = manifests
            .into_iter()
            .filter(|m| m.next_offset > start)
            .filter(|m| bounds.end.is_none_or(|e| m.first_offset < e))
            .collect();
        let first = segments.first().map_or(start, |m| m.first_offset);
        PartitionReader {
            storage,
            topic,
            partition,
            done: segments.is_empty() || bounds.end.is_some_and(|e| start >= e),
            segments,
            next_segment: 0,
            current: None,
            position: start.max(first),
            bounds,
            include_aborted,
            lookahead: None,
            warned_open: HashSet::new(),
            pushed_back: None,
            chunk,
            keys: None,
        }
    }

    /// Decrypts encrypted segments with `keys` (without them an encrypted segment is an
    /// error naming it).
    pub fn with_keys(mut self, keys: Option<Arc<dyn KeyProvider>>) -> Self {
        self.keys = keys;
        self
    }

    /// Sets the bytes of each ranged read of the segments not opened yet.
    pub fn set_chunk(&mut self, chunk: u64) {
        self.chunk = chunk.max(1);
    }

    /// Topic.
    pub fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    /// Partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Whether the partition has nothing more to give.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn open(&self, m: &SegmentManifest) -> Result<ChunkedObject> {
        open_segment(&self.storage, m, self.chunk, self.keys.as_ref())
    }

    async fn next_piece(&mut self) -> Result<Option<(Piece, String)>> {
        if let Some(p) = self.pushed_back.take() {
            return Ok(Some(p));
        }
        loop {
            if self.current.is_none() {
                let Some(m) = self.segments.get(self.next_segment).cloned() else {
                    return Ok(None);
                };
                self.next_segment += 1;
                let object = self.open(&m)?;
                let cursor = match format_of(&self.storage, &m)? {
                    FormatKind::Raw => Cursor::Raw(RawReader::new(object)),
                    FormatKind::Jsonl => Cursor::Lines(LineReader::new(object)),
                    FormatKind::Avro => Cursor::Avro(AvroReader::new(
                        object,
                        self.topic.clone(),
                        self.partition,
                        Some(m.crc32c),
                    )),
                    FormatKind::Parquet => Cursor::Parquet(ParquetReader::new(
                        object,
                        self.topic.clone(),
                        self.partition,
                        Some(m.crc32c),
                    )),
                };
                self.current = Some((m, cursor));
            }
            let Some((m, cursor)) = self.current.as_mut() else {
                continue;
            };
            let piece = match cursor {
                Cursor::Raw(r) => r
                    .next_batch()
                    .await?
                    .map(|b| (Piece::Raw(b), r.object().name())),
                Cursor::Lines(r) => match r.next_line().await? {
                    Some(line) => {
                        let name = r.object().name();
                        let rec = decode_jsonl_line(&name, &line, &self.topic, self.partition)?;
                        Some((Piece::Record(rec), name))
                    }
                    None => None,
                },
                Cursor::Avro(r) => r
                    .next_record()
                    .await?
                    .map(|rec| (Piece::Record(rec), r.object().name())),
                Cursor::Parquet(r) => r
                    .next_record()
                    .await?
                    .map(|rec| (Piece::Record(rec), r.object().name())),
            };
            match piece {
                Some(p) => return Ok(Some(p)),
                None => {
                    // The segment is read: everything up to its end is covered.
                    let next = m.next_offset;
                    self.current = None;
                    self.advance(next);
                }
            }
        }
    }

    /// Whether the next piece can be had without reading storage.
    fn piece_buffered(&mut self) -> bool {
        if self.pushed_back.is_some() {
            return true;
        }
        match &mut self.current {
            Some((_, Cursor::Raw(r))) => r.has_buffered_batch(),
            Some((_, Cursor::Lines(r))) => r.has_buffered_line(),
            Some((_, Cursor::Avro(r))) => r.has_buffered_record(),
            Some((_, Cursor::Parquet(r))) => r.has_buffered_record(),
            None => false,
        }
    }

    /// Whether transactional data of `producer_id` at `offset` is to be restored: its
    /// transaction committed. Reads ahead for the marker when needed; a transaction with
    /// no marker in the backup (open when the backup was taken) is not restored, as a
    /// `read_committed` consumer would not have seen it.
    async fn committed(&mut self, producer_id: i64, offset: i64) -> Result<bool> {
        if self.include_aborted || producer_id < 0 {
            return Ok(true);
        }
        let current = self.next_segment.saturating_sub(1);
        let la = self.lookahead.get_or_insert_with(|| Lookahead {
            next: current,
            reader: None,
            done: false,
            markers: MarkerQueue::default(),
        });
        loop {
            if let Some(aborted) = la.markers.aborted(producer_id, offset) {
                return Ok(!aborted);
            }
            if la.done {
                if self.warned_open.insert(producer_id) {
                    tracing::warn!(
                        topic = %self.topic,
                        partition = self.partition,
                        producer_id,
                        offset,
                        "transactional records without a commit or abort marker in the backup \
                         (the transaction was open when the backup was taken): not restored"
                    );
                }
                return Ok(false);
            }
            let Some(reader) = la.reader.as_mut() else {
                match self.segments.get(la.next) {
                    None => la.done = true,
                    Some(m) => {
                        la.next += 1;
                        if m.format == "raw" {
                            let object =
                                open_segment(&self.storage, m, self.chunk, self.keys.as_ref())?;
                            la.reader = Some(RawReader::new(object));
                        }
                    }
                }
                continue;
            };
            match reader.next_batch().await? {
                None => la.reader = None,
                Some(b) if b.header.is_control() && b.header.producer_id >= 0 => {
                    let recs =
                        decode_raw(&reader.object().name(), &self.topic, self.partition, &b)?;
                    let aborted = recs
                        .first()
                        .is_some_and(|r| is_abort_marker(r.key.as_deref()));
                    la.markers
                        .push(b.header.producer_id, b.header.base_offset, aborted);
                }
                Some(_) => {}
            }
        }
    }

    /// Moves the position forward to `to` (never backward, never past the end bound).
    fn advance(&mut self, to: i64) {
        let to = self.bounds.end.map_or(to, |e| to.min(e));
        self.position = self.position.max(to);
        if self.bounds.end.is_some_and(|e| self.position >= e) {
            self.done = true;
        }
    }

    /// The next span, or `None` when the partition is finished. A span holds about
    /// `target_bytes` of records at most, and stops early rather than read storage again
    /// once it has something (so partitions interleave chunk by chunk). A span may hold no
    /// records (all dropped) but still moves the position.
    pub async fn next_span(&mut self, target_bytes: usize) -> Result<Option<Span>> {
        // Spans are contiguous: each one starts where the previous one ended, so offsets
        // between segments or batches (gaps, compaction, markers) are covered too.
        let span_start = self.position;
        let mut records: Vec<Record> = Vec::new();
        let mut size = 0usize;
        while !self.done && size < target_bytes {
            if self.position > span_start && !self.piece_buffered() {
                break;
            }
            let Some((piece, name)) = self.next_piece().await? else {
                self.done = true;
                break;
            };
            // Offsets below the segment's first offset are outside what it claims to hold.
            let seg_first = self
                .current
                .as_ref()
                .map_or(i64::MIN, |(m, _)| m.first_offset);
            let lower = self.position.max(seg_first);
            match piece {
                Piece::Raw(batch) => {
                    let h = batch.header;
                    if self.bounds.end.is_some_and(|e| h.base_offset >= e) {
                        self.done = true;
                        break;
                    }
                    if h.next_offset() <= lower {
                        continue; // before the resume point
                    }
                    let whole = !h.is_control()
                        && !h.is_transactional()
                        && h.base_offset >= lower
                        && self.bounds.end.is_none_or(|e| h.next_offset() <= e)
                        && self.bounds.until.is_none_or(|u| h.max_timestamp <= u);
                    if whole {
                        if !records.is_empty() {
                            // Not mixed with decoded records: it starts the next span.
                            self.pushed_back = Some((Piece::Raw(batch), name));
                            break;
                        }
                        self.advance(h.next_offset());
                        return Ok(Some(Span {
                            first_offset: span_start,
                            next_offset: self.position,
                            records,
                            raw: Some(batch),
                        }));
                    }
                    let keep = !h.is_control()
                        && (!h.is_transactional()
                            || self.committed(h.producer_id, h.base_offset).await?);
                    if keep {
                        let recs = decode_raw(&name, &self.topic, self.partition, &batch)?;
                        // A batch entirely at or before `until` needs no per-record check.
                        let until = self.bounds.until.filter(|u| h.max_timestamp > *u);
                        for r in recs {
                            if r.offset < lower {
                                continue;
                            }
                            if let Some(cut) = self.stop_at(&r, until) {
                                self.cut(cut);
                                break;
                            }
                            size += r.size_hint();
                            records.push(r);
                        }
                    }
                    if !self.done {
                        self.advance(h.next_offset());
                    }
                }
                Piece::Record(r) => {
                    if self.bounds.end.is_some_and(|e| r.offset >= e) {
                        self.done = true;
                        break;
                    }
                    if r.offset < lower {
                        continue;
                    }
                    let offset = r.offset;
                    let keep = !r.is_control
                        && (!r.is_transactional
                            || self.committed(r.producer.producer_id, offset).await?);
                    if keep {
                        if let Some(cut) = self.stop_at(&r, self.bounds.until) {
                            self.cut(cut);
                            break;
                        }
                        size += r.size_hint();
                        records.push(r);
                    }
                    if !self.done {
                        self.advance(offset + 1);
                    }
                }
            }
        }
        if self.position <= span_start {
            debug_assert!(records.is_empty(), "records without an offset span");
            return Ok(None);
        }
        Ok(Some(Span {
            first_offset: span_start,
            next_offset: self.position,
            records,
            raw: None,
        }))
    }

    /// Where a data record to restore stops the partition: at the end bound, or at the
    /// first record later than `until` (the `offsetsForTimes` rule).
    fn stop_at(&self, r: &Record, until: Option<i64>) -> Option<i64> {
        if let Some(e) = self.bounds.end {
            if r.offset >= e {
                return Some(e);
            }
        }
        match until {
            Some(u) if r.timestamp > u => Some(r.offset),
            _ => None,
        }
    }

    /// Ends the partition at `offset` (exclusive).
    fn cut(&mut self, offset: i64) {
        self.position = self.position.max(offset);
        self.done = true;
    }
}
