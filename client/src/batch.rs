//! Kafka v2 record batches: header parsing, whole-batch scanning of fetched bytes, CRC
//! verification, record decoding (every codec) and batch encoding for produce.
//!
//! Ferry parses records itself instead of using kafka-protocol's `RecordBatchDecoder`
//! because that one keeps headers in a map: repeated header keys would be lost.

use crate::error::{ClientError, Result};
use bytes::{BufMut, Bytes, BytesMut};
use ferry_model::{Header, ProducerInfo, RawBatches, RawDecoder, Record, TimestampType};
use kafka_protocol::compression::Compressor;
use kafka_protocol::records::Compression;
use std::sync::Arc;

/// Size of a v2 batch header, from base offset to record count.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before the part the batch length counts (base offset + length).
const LOG_OVERHEAD: usize = 12;
/// Where the CRC-covered part starts (the attributes).
const CRC_START: usize = 21;

/// The fixed 61-byte header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record of the batch (as written, before compaction).
    pub base_offset: i64,
    /// Length of the batch after this field.
    pub batch_length: i32,
    /// Leader epoch of the partition when the batch was appended.
    pub partition_leader_epoch: i32,
    /// Format version; always 2 here.
    pub magic: i8,
    /// CRC32C of everything from the attributes to the end of the batch.
    pub crc: u32,
    /// Compression (bits 0-2), timestamp type (3), transactional (4), control (5).
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch (the append time with LogAppendTime).
    pub max_timestamp: i64,
    /// Producer id, -1 when none.
    pub producer_id: i64,
    /// Producer epoch, -1 when none.
    pub producer_epoch: i16,
    /// Sequence of the first record, -1 when none.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Parses the header at the start of `b` (at least [`BATCH_HEADER_LEN`] bytes).
    pub fn parse(b: &[u8]) -> Result<BatchHeader> {
        if b.len() < BATCH_HEADER_LEN {
            return Err(ClientError::Corrupt(format!(
                "batch header needs {BATCH_HEADER_LEN} bytes, {} left",
                b.len()
            )));
        }
        let magic = b[16] as i8;
        let h = BatchHeader {
            base_offset: be_i64(b, 0),
            batch_length: be_i32(b, 8),
            partition_leader_epoch: be_i32(b, 12),
            magic,
            crc: be_i32(b, 17) as u32,
            attributes: be_i16(b, 21),
            last_offset_delta: be_i32(b, 23),
            base_timestamp: be_i64(b, 27),
            max_timestamp: be_i64(b, 35),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
            record_count: be_i32(b, 57),
        };
        if magic != 2 {
            return Err(ClientError::Corrupt(format!(
                "batch at offset {} has message format v{magic}; Ferry reads only v2 (Kafka >= 0.11)",
                h.base_offset
            )));
        }
        if (h.batch_length as i64) < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(ClientError::Corrupt(format!(
                "batch at offset {} declares length {}",
                h.base_offset, h.batch_length
            )));
        }
        if h.record_count < 0 || h.last_offset_delta < 0 {
            return Err(ClientError::Corrupt(format!(
                "batch at offset {} declares {} records, last offset delta {}",
                h.base_offset, h.record_count, h.last_offset_delta
            )));
        }
        Ok(h)
    }

    /// Bytes the whole batch takes, header included.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// The offset after the batch: base offset + last offset delta + 1 (right under compaction).
    pub fn next_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(self.last_offset_delta as i64)
            .saturating_add(1)
    }

    /// The batch's compression codec.
    pub fn compression(&self) -> Result<Compression> {
        Ok(match self.attributes & 0x7 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            c => {
                return Err(ClientError::Corrupt(format!(
                    "batch at offset {} uses unknown compression codec {c}",
                    self.base_offset
                )))
            }
        })
    }

    /// CreateTime or LogAppendTime.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & 0x08 != 0 {
            TimestampType::LogAppend
        } else {
            TimestampType::Create
        }
    }

    /// Written inside a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// Holds transaction markers, not user records.
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// First timestamp of the batch as readers see it (the append time with LogAppendTime).
    pub fn first_timestamp(&self) -> i64 {
        match self.timestamp_type() {
            TimestampType::LogAppend => self.max_timestamp,
            TimestampType::Create => self.base_timestamp,
        }
    }
}

/// Walks the whole batches of a byte buffer. Stops at the end or at a truncated batch.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> BatchIter<'a> {
    /// Iterates over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter {
            buf,
            pos: 0,
            failed: false,
        }
    }

    /// Where the next (not yet returned) batch starts; after the last whole batch once the
    /// iterator is exhausted.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes after the last whole batch (a truncated batch, when non-zero).
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

impl Iterator for BatchIter<'_> {
    /// The header and the byte range of the whole batch.
    type Item = Result<(BatchHeader, std::ops::Range<usize>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = &self.buf[self.pos..];
        if rest.len() < LOG_OVERHEAD {
            return None;
        }
        let len = be_i32(rest, 8);
        if len < 0 {
            self.failed = true;
            return Some(Err(ClientError::Corrupt(format!(
                "negative batch length {len} at byte {}",
                self.pos
            ))));
        }
        let total = LOG_OVERHEAD + len as usize;
        if rest.len() < total {
            // A fetch response may end in a partial batch; the next fetch returns it whole.
            return None;
        }
        let h = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        let range = self.pos..self.pos + total;
        self.pos += total;
        Some(Ok((h, range)))
    }
}

/// Whole v2 batches of one fetched partition, and what a manifest needs from their headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedBatches {
    /// Whole batches only (a truncated trailing batch removed). They may start before the
    /// fetch offset: batches are kept whole because they are raw backup data.
    pub bytes: Bytes,
    /// Base offset of the first batch.
    pub first_offset: i64,
    /// Last batch's base offset + last offset delta + 1: where the next fetch starts.
    pub next_offset: i64,
    /// Records in these batches (control records included).
    pub record_count: u64,
    /// Smallest first timestamp (non-empty batches, non-negative timestamps).
    pub min_timestamp: Option<i64>,
    /// Largest max timestamp (non-empty batches, non-negative timestamps).
    pub max_timestamp: Option<i64>,
    /// At least one batch holds transaction markers.
    pub control_batches: bool,
}

/// Cuts fetched record bytes down to whole batches and summarizes their headers.
/// `None` when not one whole batch is there.
pub fn scan_batches(bytes: &Bytes) -> Result<Option<FetchedBatches>> {
    let mut it = BatchIter::new(bytes);
    let mut first: Option<i64> = None;
    let mut next = 0i64;
    let mut count = 0u64;
    let mut min_ts: Option<i64> = None;
    let mut max_ts: Option<i64> = None;
    let mut control = false;
    for item in &mut it {
        let (h, _) = item?;
        first.get_or_insert(h.base_offset);
        next = h.next_offset();
        count += h.record_count as u64;
        control |= h.is_control();
        if h.record_count > 0 {
            let lo = h.first_timestamp();
            if lo >= 0 {
                min_ts = Some(min_ts.map_or(lo, |m| m.min(lo)));
            }
            if h.max_timestamp >= 0 {
                max_ts = Some(max_ts.map_or(h.max_timestamp, |m| m.max(h.max_timestamp)));
            }
        }
    }
    let end = it.position();
    Ok(first.map(|first_offset| FetchedBatches {
        bytes: bytes.slice(0..end),
        first_offset,
        next_offset: next,
        record_count: count,
        min_timestamp: min_ts,
        max_timestamp: max_ts,
        control_batches: control,
    }))
}

/// What [`verify_batches`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSummary {
    /// Number of batches.
    pub batches: u64,
    /// Number of records (control records included).
    pub records: u64,
    /// Batches holding transaction markers.
    pub control_batches: u64,
    /// Base offset of the first batch.
    pub first_offset: Option<i64>,
    /// Offset after the last batch.
    pub next_offset: Option<i64>,
    /// Smallest first timestamp.
    pub min_timestamp: Option<i64>,
    /// Largest max timestamp.
    pub max_timestamp: Option<i64>,
    /// Bytes checked.
    pub bytes: u64,
}

/// Walks every batch of `bytes` (a raw segment), checks each CRC32C and that the batches fill
/// the buffer exactly (a truncated tail is an error here), and summarizes them.
pub fn verify_batches(bytes: &[u8]) -> Result<BatchSummary> {
    let mut s = BatchSummary::default();
    let mut it = BatchIter::new(bytes);
    for item in &mut it {
        let (h, range) = item?;
        let batch = &bytes[range.clone()];
        let actual = crc32c::crc32c(&batch[CRC_START..]);
        if actual != h.crc {
            return Err(ClientError::Corrupt(format!(
                "CRC mismatch in batch at offset {} (byte {}): stored {:08x}, computed {actual:08x}",
                h.base_offset, range.start, h.crc
            )));
        }
        if let Some(prev) = s.next_offset {
            if h.base_offset < prev {
                return Err(ClientError::Corrupt(format!(
                    "batch at offset {} goes backwards (previous batch ended at {prev})",
                    h.base_offset
                )));
            }
        }
        s.batches += 1;
        s.records += h.record_count as u64;
        if h.is_control() {
            s.control_batches += 1;
        }
        s.first_offset.get_or_insert(h.base_offset);
        s.next_offset = Some(h.next_offset());
        if h.record_count > 0 {
            let lo = h.first_timestamp();
            if lo >= 0 {
                s.min_timestamp = Some(s.min_timestamp.map_or(lo, |m| m.min(lo)));
            }
            if h.max_timestamp >= 0 {
                s.max_timestamp = Some(
                    s.max_timestamp
                        .map_or(h.max_timestamp, |m| m.max(h.max_timestamp)),
                );
            }
        }
    }
    if it.remaining() > 0 {
        return Err(ClientError::Corrupt(format!(
            "{} bytes after the last whole batch (truncated batch at byte {})",
            it.remaining(),
            it.position()
        )));
    }
    s.bytes = bytes.len() as u64;
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// Varints (zigzag, as Kafka's record format uses them)

struct Cursor {
    data: Bytes,
    pos: usize,
}

impl Cursor {
    fn corrupt(&self, what: &str) -> ClientError {
        ClientError::Corrupt(format!("{what} at byte {} of the records", self.pos))
    }

    fn u8(&mut self) -> Result<u8> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or_else(|| self.corrupt("records end early"))?;
        self.pos += 1;
        Ok(b)
    }

    fn varlong(&mut self) -> Result<i64> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.u8()?;
            if shift > 63 {
                return Err(self.corrupt("varint too long"));
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn varint(&mut self) -> Result<i32> {
        let v = self.varlong()?;
        i32::try_from(v).map_err(|_| self.corrupt("varint out of range"))
    }

    fn take(&mut self, n: usize) -> Result<Bytes> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let b = self.data.slice(self.pos..end);
                self.pos = end;
                Ok(b)
            }
            None => Err(self.corrupt(&format!("field of {n} bytes overruns the batch"))),
        }
    }

    /// A length-prefixed byte field; -1 is null.
    fn nullable(&mut self) -> Result<Option<Bytes>> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < 0 => Err(self.corrupt(&format!("negative length {n}"))),
            n => self.take(n as usize).map(Some),
        }
    }
}

fn put_varlong(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

fn varlong_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Most bytes one batch may decompress to. A guard against decompression bombs: far above
/// anything a broker accepts (its limits apply to compressed batches, and real data
/// compresses less than 100:1), far below what would exhaust memory.
pub const MAX_DECOMPRESSED_BATCH: usize = 512 * 1024 * 1024;

/// Snappy framing of Java's xerial snappy-java (what Kafka clients write).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";

fn read_limited(mut r: impl std::io::Read, hint: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut out = Vec::with_capacity(hint.min(MAX_DECOMPRESSED_BATCH));
    (&mut r)
        .take(MAX_DECOMPRESSED_BATCH as u64 + 1)
        .read_to_end(&mut out)?;
    if out.len() > MAX_DECOMPRESSED_BATCH {
        return Err(std::io::Error::other(format!(
            "decompresses to more than {MAX_DECOMPRESSED_BATCH} bytes"
        )));
    }
    Ok(out)
}

/// The most a snappy block can decompress to per byte: its densest element, a 3-byte copy,
/// writes 64 bytes.
const SNAPPY_MAX_RATIO: usize = 22;

fn snappy_raw(block: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), String> {
    let n = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
    // The length is the block's own claim: checked before the output is allocated (and
    // zeroed), or a few damaged bytes would cost hundreds of megabytes each.
    if n > block.len().saturating_mul(SNAPPY_MAX_RATIO) {
        return Err(format!(
            "a snappy block of {} bytes declares {n} bytes, more than snappy can encode in it",
            block.len()
        ));
    }
    if out.len().saturating_add(n) > MAX_DECOMPRESSED_BATCH {
        return Err(format!(
            "decompresses to more than {MAX_DECOMPRESSED_BATCH} bytes"
        ));
    }
    let start = out.len();
    out.resize(start + n, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn snappy(payload: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    // xerial: 8-byte magic, two 4-byte versions, then (u32 length, raw block)*. Anything
    // else is raw snappy, as the Java client also accepts.
    if payload.len() >= 16 && &payload[..8] == XERIAL_MAGIC {
        let mut rest = &payload[16..];
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err("truncated snappy block length".into());
            }
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            rest = &rest[4..];
            if rest.len() < n {
                return Err(format!("snappy block of {n} bytes, {} left", rest.len()));
            }
            snappy_raw(&rest[..n], &mut out)?;
            rest = &rest[n..];
        }
    } else {
        snappy_raw(payload, &mut out)?;
    }
    Ok(out)
}

fn decompress(h: &BatchHeader, payload: Bytes) -> Result<Bytes> {
    let codec = h.compression()?;
    let hint = payload.len().saturating_mul(4);
    let out = match codec {
        Compression::None => return Ok(payload),
        Compression::Gzip => read_limited(flate2::read::MultiGzDecoder::new(&payload[..]), hint)
            .map_err(|e| e.to_string()),
        Compression::Snappy => snappy(&payload),
        Compression::Lz4 => lz4::Decoder::new(&payload[..])
            .and_then(|d| read_limited(d, hint))
            .map_err(|e| e.to_string()),
        Compression::Zstd => zstd::stream::read::Decoder::new(&payload[..])
            .and_then(|d| read_limited(d, hint))
            .map_err(|e| e.to_string()),
    };
    out.map(Bytes::from).map_err(|e| {
        ClientError::Corrupt(format!(
            "batch at offset {}: decompressing {codec:?}: {e}",
            h.base_offset
        ))
    })
}

/// Kafka's sequence arithmetic: wraps from i32::MAX to 0. No sequence (-1) without a base
/// sequence, or for a record whose offset delta is negative (a damaged batch: the
/// `raw_segment` fuzz target found that `i32::MAX - delta` overflowed on one).
fn add_sequence(base: i32, delta: i32) -> i32 {
    if base < 0 || delta < 0 {
        return -1;
    }
    let wrapped = (i64::from(base) + i64::from(delta)) % (i64::from(i32::MAX) + 1);
    // Below 2^31 by the modulo, so it fits.
    wrapped as i32
}

/// Decodes one whole batch (bytes from base offset to its end) into records.
fn decode_one(
    batch: Bytes,
    h: &BatchHeader,
    topic: &Arc<str>,
    partition: i32,
    out: &mut Vec<Record>,
) -> Result<()> {
    let actual = crc32c::crc32c(&batch[CRC_START..]);
    if actual != h.crc {
        return Err(ClientError::Corrupt(format!(
            "CRC mismatch in batch at offset {}: stored {:08x}, computed {actual:08x}",
            h.base_offset, h.crc
        )));
    }
    let data = decompress(h, batch.slice(BATCH_HEADER_LEN..))?;
    let ts_type = h.timestamp_type();
    let producer_base = ProducerInfo {
        producer_id: h.producer_id,
        producer_epoch: h.producer_epoch,
        sequence: -1,
    };
    let leader_epoch = (h.partition_leader_epoch >= 0).then_some(h.partition_leader_epoch);
    let mut c = Cursor { data, pos: 0 };
    // Every record takes at least 7 bytes; never trust the count for the allocation.
    out.reserve((h.record_count as usize).min(c.data.len() / 7 + 1));
    for _ in 0..h.record_count {
        let len = c.varint()?;
        if len < 0 {
            return Err(c.corrupt(&format!("negative record length {len}")));
        }
        let end = c
            .pos
            .checked_add(len as usize)
            .filter(|&e| e <= c.data.len())
            .ok_or_else(|| c.corrupt(&format!("record of {len} bytes overruns the batch")))?;
        let _attributes = c.u8()?;
        let ts_delta = c.varlong()?;
        let off_delta = c.varint()?;
        let key = c.nullable()?;
        let value = c.nullable()?;
        let n_headers = c.varint()?;
        if n_headers < 0 {
            return Err(c.corrupt(&format!("negative header count {n_headers}")));
        }
        let mut headers =
            Vec::with_capacity((n_headers as usize).min(end.saturating_sub(c.pos) / 2 + 1));
        for _ in 0..n_headers {
            let k = c.nullable()?.ok_or_else(|| c.corrupt("null header key"))?;
            let v = c.nullable()?;
            let key = match std::str::from_utf8(&k) {
                Ok(s) => s.to_string(),
                Err(_) => {
                    tracing::warn!(topic = %topic, partition, "header key is not UTF-8; replaced invalid bytes");
                    String::from_utf8_lossy(&k).into_owned()
                }
            };
            headers.push(Header { key, value: v });
        }
        if c.pos != end {
            return Err(c.corrupt(&format!(
                "record declares {len} bytes but holds {}",
                len as i64 + (c.pos as i64 - end as i64)
            )));
        }
        let timestamp = match ts_type {
            TimestampType::LogAppend => h.max_timestamp,
            TimestampType::Create => h.base_timestamp.wrapping_add(ts_delta),
        };
        out.push(Record {
            topic: topic.clone(),
            partition,
            offset: h.base_offset.wrapping_add(off_delta as i64),
            timestamp,
            timestamp_type: ts_type,
            key,
            value,
            headers,
            producer: ProducerInfo {
                sequence: add_sequence(h.base_sequence, off_delta),
                ..producer_base
            },
            leader_epoch,
            is_transactional: h.is_transactional(),
            is_control: h.is_control(),
        });
    }
    Ok(())
}

/// Decodes every record of every whole batch in `bytes` (a truncated tail is ignored), CRCs
/// checked, control records included and flagged.
pub fn decode_batches(bytes: &Bytes, topic: &Arc<str>, partition: i32) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for item in BatchIter::new(bytes) {
        let (h, range) = item?;
        decode_one(bytes.slice(range), &h, topic, partition, &mut out)?;
    }
    Ok(out)
}

/// Drops the records below `offset` (whole batches may start before the fetch offset).
pub fn records_from(mut records: Vec<Record>, offset: i64) -> Vec<Record> {
    records.retain(|r| r.offset >= offset);
    records
}

/// [`RawDecoder`] for Ferry's core: decodes raw Kafka v2 batches into records.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchDecoder;

impl RawDecoder for BatchDecoder {
    fn decode(
        &self,
        topic: &Arc<str>,
        partition: i32,
        raw: &RawBatches,
    ) -> std::result::Result<Vec<Record>, ferry_model::Error> {
        decode_batches(&raw.bytes, topic, partition)
            .map_err(|e| ferry_model::Error::decode("kafka", e))
    }

    fn batches_from(&self, raw: &RawBatches, offset: i64) -> Option<RawBatches> {
        let start = batch_boundary_at(&raw.bytes, offset)?;
        let kept = raw.bytes.slice(start..);
        let scanned = scan_batches(&kept).ok()?;
        Some(RawBatches {
            record_count: scanned.as_ref().map_or(0, |s| s.record_count),
            min_timestamp: scanned.as_ref().and_then(|s| s.min_timestamp),
            max_timestamp: scanned.as_ref().and_then(|s| s.max_timestamp),
            bytes: kept,
            // Kept whole: an aborted transaction that began before `offset` can still cover
            // the batches kept, and a restore only drops what these batches hold.
            aborted: raw.aborted.clone(),
            decoder: raw.decoder.clone(),
        })
    }
}

/// Where in `bytes` the first batch at or after `offset` begins, when no batch before it
/// reaches `offset` (so cutting there splits no batch); `None` when one does or the bytes
/// cannot be walked.
fn batch_boundary_at(bytes: &Bytes, offset: i64) -> Option<usize> {
    let mut it = BatchIter::new(bytes);
    loop {
        let pos = it.position();
        match it.next() {
            None => return Some(pos),
            Some(Err(_)) => return None,
            Some(Ok((h, _))) if h.base_offset >= offset => return Some(pos),
            Some(Ok((h, _))) if h.next_offset() > offset => return None,
            Some(Ok(_)) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// One record to produce. Everything is written exactly as given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProduceRecord {
    /// Key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Value; `None` is a null value (tombstone).
    pub value: Option<Bytes>,
    /// Headers in order, repeats and null values kept.
    pub headers: Vec<Header>,
    /// Timestamp, milliseconds since the epoch (CreateTime).
    pub timestamp: i64,
}

fn nullable_len(b: &Option<Bytes>) -> usize {
    match b {
        None => varlong_len(-1),
        Some(b) => varlong_len(b.len() as i64) + b.len(),
    }
}

fn record_body_len(r: &ProduceRecord, ts_delta: i64, off_delta: i32) -> usize {
    let mut n = 1 + varlong_len(ts_delta) + varlong_len(off_delta as i64);
    n += nullable_len(&r.key) + nullable_len(&r.value);
    n += varlong_len(r.headers.len() as i64);
    for h in &r.headers {
        n += varlong_len(h.key.len() as i64) + h.key.len() + nullable_len(&h.value);
    }
    n
}

/// Upper bound of the bytes a record takes in a batch (uncompressed), for splitting.
pub(crate) fn record_size_estimate(r: &ProduceRecord) -> usize {
    // Deltas take at most 10 and 5 bytes.
    let body = record_body_len(r, i64::MAX, i32::MAX);
    body + varlong_len(body as i64)
}

fn put_nullable(buf: &mut BytesMut, b: &Option<Bytes>) {
    match b {
        None => put_varlong(buf, -1),
        Some(b) => {
            put_varlong(buf, b.len() as i64);
            buf.put_slice(b);
        }
    }
}

/// Producer fields of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl Default for BatchProducer {
    fn default() -> Self {
        BatchProducer {
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }
}

/// Encodes `records` as one v2 batch (base offset 0: the broker assigns offsets).
pub(crate) fn encode_batch(
    records: &[ProduceRecord],
    compression: Compression,
    producer: BatchProducer,
) -> Result<Bytes> {
    if records.is_empty() {
        return Err(ClientError::Config("cannot encode an empty batch".into()));
    }
    let count = i32::try_from(records.len())
        .map_err(|_| ClientError::Config("too many records for one batch".into()))?;
    let base_ts = records[0].timestamp;
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(base_ts);

    let mut body = BytesMut::with_capacity(records.iter().map(record_size_estimate).sum());
    for (i, r) in records.iter().enumerate() {
        let ts_delta = r.timestamp.wrapping_sub(base_ts);
        let off = i as i32;
        put_varlong(&mut body, record_body_len(r, ts_delta, off) as i64);
        body.put_u8(0);
        put_varlong(&mut body, ts_delta);
        put_varlong(&mut body, off as i64);
        put_nullable(&mut body, &r.key);
        put_nullable(&mut body, &r.value);
        put_varlong(&mut body, r.headers.len() as i64);
        for h in &r.headers {
            put_varlong(&mut body, h.key.len() as i64);
            body.put_slice(h.key.as_bytes());
            put_nullable(&mut body, &h.value);
        }
    }

    let mut buf = BytesMut::with_capacity(BATCH_HEADER_LEN + body.len());
    buf.put_i64(0); // base offset
    buf.put_i32(0); // length, filled below
    buf.put_i32(-1); // partition leader epoch
    buf.put_i8(2); // magic
    buf.put_u32(0); // crc, filled below
    buf.put_i16(compression as i16);
    buf.put_i32(count - 1);
    buf.put_i64(base_ts);
    buf.put_i64(max_ts);
    buf.put_i64(producer.producer_id);
    buf.put_i16(producer.producer_epoch);
    buf.put_i32(producer.base_sequence);
    buf.put_i32(count);
    let mut body = body.freeze();
    let res = match compression {
        Compression::None => {
            buf.put_slice(&body);
            Ok(())
        }
        Compression::Gzip => {
            kafka_protocol::compression::Gzip::compress(&mut buf, |t: &mut BytesMut| {
                t.put_slice(&body);
                Ok(())
            })
        }
        Compression::Snappy => {
            kafka_protocol::compression::Snappy::compress(&mut buf, |t: &mut BytesMut| {
                t.put_slice(&body);
                Ok(())
            })
        }
        Compression::Lz4 => {
            kafka_protocol::compression::Lz4::compress(&mut buf, |t: &mut BytesMut| {
                t.put_slice(&body);
                Ok(())
            })
        }
        Compression::Zstd => {
            kafka_protocol::compression::Zstd::compress(&mut buf, |t: &mut BytesMut| {
                t.put_slice(&body);
                Ok(())
            })
        }
    };
    body.clear();
    res.map_err(|e| ClientError::Config(format!("compressing batch with {compression:?}: {e}")))?;
    let len = i32::try_from(buf.len() - LOG_OVERHEAD)
        .map_err(|_| ClientError::Config("batch larger than 2 GiB".into()))?;
    buf[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(buf.freeze())
}

/// The batches of `bytes` (a run of v2 batches) with every uncompressed data batch
/// compressed with `codec`, as Kafka does for a topic's `compression.type`: the records'
/// bytes are exactly those of the original batch once decompressed (offsets, timestamps,
/// keys, values, headers), and every header field is kept (base offset, leader epoch,
/// producer id, epoch and sequence, transactional and timestamp-type bits); only the codec
/// bits, the length and the CRC change. Batches already compressed, control batches, and
/// batches that would not get smaller are kept as they are.
pub fn recompress_batches(bytes: &Bytes, codec: Compression) -> Result<Bytes> {
    if codec == Compression::None {
        return Ok(bytes.clone());
    }
    let mut out = BytesMut::with_capacity(bytes.len());
    let mut pos = 0usize;
    while pos < bytes.len() {
        let header = BatchHeader::parse(&bytes[pos..])?;
        let len = header.total_len();
        let end = pos
            .checked_add(len)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| ClientError::Corrupt("record batch runs past its segment".into()))?;
        let batch = &bytes[pos..end];
        match recompress_one(batch, &header, codec)? {
            Some(b) => out.extend_from_slice(&b),
            None => out.extend_from_slice(batch),
        }
        pos = end;
    }
    Ok(out.freeze())
}

/// One batch compressed with `codec`, or `None` when it is kept as it is.
fn recompress_one(
    batch: &[u8],
    header: &BatchHeader,
    codec: Compression,
) -> Result<Option<BytesMut>> {
    if header.is_control()
        || header.compression()? != Compression::None
        || batch.len() <= BATCH_HEADER_LEN
    {
        return Ok(None);
    }
    let records = &batch[BATCH_HEADER_LEN..];
    let mut buf = BytesMut::with_capacity(batch.len());
    buf.put_slice(&batch[..BATCH_HEADER_LEN]);
    let put = |t: &mut BytesMut| {
        t.put_slice(records);
        Ok(())
    };
    let res = match codec {
        Compression::None => return Ok(None),
        Compression::Gzip => kafka_protocol::compression::Gzip::compress(&mut buf, put),
        Compression::Snappy => kafka_protocol::compression::Snappy::compress(&mut buf, put),
        Compression::Lz4 => kafka_protocol::compression::Lz4::compress(&mut buf, put),
        Compression::Zstd => kafka_protocol::compression::Zstd::compress(&mut buf, put),
    };
    res.map_err(|e| ClientError::Config(format!("compressing a batch with {codec:?}: {e}")))?;
    if buf.len() >= batch.len() {
        return Ok(None);
    }
    let len = i32::try_from(buf.len() - LOG_OVERHEAD)
        .map_err(|_| ClientError::Config("batch larger than 2 GiB".into()))?;
    buf[8..12].copy_from_slice(&len.to_be_bytes());
    let attrs = (be_i16(&buf, 21) & !0x07) | codec as i16;
    buf[21..23].copy_from_slice(&attrs.to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(Some(buf))
}

/// Sets the base offset of an encoded batch in place (tests and tools build logs with it;
/// the base offset is outside the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    if batch.len() >= 8 {
        batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Builds one v2 batch from records, for tests, tools and benches: base offset, codec and
/// producer fields given; attributes may add transactional (0x10) / control (0x20) /
/// LogAppendTime (0x08) bits.
pub fn build_batch(
    base_offset: i64,
    records: &[ProduceRecord],
    compression: Compression,
    extra_attributes: i16,
    producer: Option<ProducerInfo>,
) -> Result<Bytes> {
    let p = producer.map_or(BatchProducer::default(), |p| BatchProducer {
        producer_id: p.producer_id,
        producer_epoch: p.producer_epoch,
        base_sequence: p.sequence,
    });
    let b = encode_batch(records, compression, p)?;
    let mut m = BytesMut::from(&b[..]);
    set_base_offset(&mut m, base_offset);
    if extra_attributes != 0 {
        let attrs = be_i16(&m, 21) | extra_attributes;
        m[21..23].copy_from_slice(&attrs.to_be_bytes());
        let crc = crc32c::crc32c(&m[CRC_START..]);
        m[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    Ok(m.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Record as KpRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType as KpTs,
    };

    const DAY: i64 = 86_400_000;

    /// Found by the `batches` fuzz target: a snappy block is its declared length (a varint)
    /// and then its elements; five bytes declaring 400 MiB made the decoder allocate and zero
    /// 400 MiB before failing. The claim is now checked against what the block can hold.
    #[test]
    fn a_snappy_block_declaring_more_than_it_can_hold_is_refused_before_allocating() {
        let mut block = Vec::new();
        let mut n: u32 = 400 << 20;
        while n >= 0x80 {
            block.push((n as u8) | 0x80);
            n >>= 7;
        }
        block.push(n as u8);
        block.extend_from_slice(&[0, 1, 2]);
        let e = snappy(&block).expect_err("refused");
        assert!(e.contains("declares 419430400 bytes"), "{e}");
        // A real block, compressed as densely as snappy can, still decodes.
        let plain = vec![b'x'; 1 << 20];
        let dense = snap::raw::Encoder::new()
            .compress_vec(&plain)
            .expect("compress");
        assert!(
            plain.len() <= dense.len() * SNAPPY_MAX_RATIO,
            "{}",
            dense.len()
        );
        assert_eq!(snappy(&dense).expect("decodes"), plain);
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn rec(key: Option<&str>, value: Option<&str>, ts: i64) -> ProduceRecord {
        ProduceRecord {
            key: key.map(|k| Bytes::from(k.to_string())),
            value: value.map(|v| Bytes::from(v.to_string())),
            headers: vec![],
            timestamp: ts,
        }
    }

    fn topic() -> Arc<str> {
        Arc::from("t")
    }

    #[test]
    fn batches_from_keeps_whole_batches_after_a_boundary_and_refuses_to_split_one() {
        let three: Vec<ProduceRecord> = (0..3).map(|i| rec(None, Some("v"), DAY + i)).collect();
        let mut bytes = BytesMut::new();
        // Offsets 10..13, then 13..16 (zstd), then 20..23 (16..20 compacted away).
        bytes.extend_from_slice(&build_batch(10, &three, Compression::None, 0, None).unwrap());
        bytes.extend_from_slice(&build_batch(13, &three, Compression::Zstd, 0, None).unwrap());
        let last = build_batch(20, &three, Compression::None, 0, None).unwrap();
        bytes.extend_from_slice(&last);
        let raw = RawBatches {
            bytes: bytes.freeze(),
            record_count: 9,
            min_timestamp: Some(DAY),
            max_timestamp: Some(DAY + 2),
            aborted: Vec::new(),
            decoder: Arc::new(BatchDecoder),
        };
        let at13 = BatchDecoder
            .batches_from(&raw, 13)
            .expect("13 is a boundary");
        assert_eq!(at13.record_count, 6);
        assert_eq!(
            &at13.bytes[..],
            &raw.bytes[raw.bytes.len() - at13.bytes.len()..]
        );
        let offsets: Vec<i64> = decode_batches(&at13.bytes, &topic(), 0)
            .unwrap()
            .iter()
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, vec![13, 14, 15, 20, 21, 22]);
        // 18 lies in the compacted-away gap: the last batch, byte for byte.
        let at18 = BatchDecoder
            .batches_from(&raw, 18)
            .expect("18 is between batches");
        assert_eq!(at18.bytes, last);
        assert_eq!(at18.record_count, 3);
        assert!(
            BatchDecoder.batches_from(&raw, 14).is_none(),
            "14 is inside a batch"
        );
        assert!(BatchDecoder
            .batches_from(&raw, 10)
            .is_some_and(|r| r.bytes == raw.bytes));
        let none = BatchDecoder.batches_from(&raw, 23).expect("past the end");
        assert_eq!((none.bytes.len(), none.record_count), (0, 0));
    }

    #[test]
    fn recompressed_batches_hold_the_same_records_and_header_fields() {
        let records: Vec<ProduceRecord> = (0..50)
            .map(|i| {
                rec(
                    Some("k"),
                    Some(&format!("{{\"n\":{i},\"text\":\"aaaaaaaaaaaaaaaaaaaa\"}}")),
                    DAY + i,
                )
            })
            .collect();
        let producer = ProducerInfo {
            producer_id: 7,
            producer_epoch: 2,
            sequence: 40,
        };
        let plain = build_batch(100, &records, Compression::None, 0x10, Some(producer)).unwrap();
        let zipped = build_batch(150, &records, Compression::Gzip, 0, None).unwrap();
        let both = concat(&[&plain, &zipped]);
        for codec in [Compression::Zstd, Compression::Lz4] {
            let out = recompress_batches(&both, codec).unwrap();
            assert!(out.len() < both.len());
            let first = BatchHeader::parse(&out).unwrap();
            assert_eq!(first.compression().unwrap(), codec);
            assert_eq!(first.base_offset, 100);
            assert!(first.is_transactional());
            assert_eq!(
                (first.producer_id, first.producer_epoch, first.base_sequence),
                (7, 2, 40)
            );
            // The already-compressed batch is kept byte for byte.
            assert_eq!(&out[first.total_len()..], &zipped[..]);
            verify_batches(&out).unwrap();
            assert_eq!(
                decode_batches(&out, &topic(), 0).unwrap(),
                decode_batches(&both, &topic(), 0).unwrap()
            );
        }
        assert_eq!(recompress_batches(&both, Compression::None).unwrap(), both);
    }

    fn concat(parts: &[&Bytes]) -> Bytes {
        let mut b = BytesMut::new();
        for p in parts {
            b.extend_from_slice(p);
        }
        b.freeze()
    }

    #[test]
    fn round_trip_every_codec_with_exact_fields() {
        let now = 1_790_000_000_000;
        let mut records = vec![
            rec(Some("k"), Some("v"), now - 40 * DAY),
            rec(None, Some("null key"), now),
            rec(Some(""), None, now + 1),
            rec(Some("e"), Some(""), now - 1),
        ];
        records[0].headers = vec![
            Header::new("dup", Some(Bytes::from_static(b"1"))),
            Header::new("null", None),
            Header::new("dup", Some(Bytes::from_static(b"2"))),
            Header::new("empty", Some(Bytes::new())),
        ];
        for codec in CODECS {
            let producer = Some(ProducerInfo {
                producer_id: 77,
                producer_epoch: 3,
                sequence: 10,
            });
            let b = build_batch(100, &records, codec, 0, producer).unwrap();
            let got = decode_batches(&b, &topic(), 4).unwrap();
            assert_eq!(got.len(), 4, "{codec:?}");
            for (i, (g, r)) in got.iter().zip(&records).enumerate() {
                assert_eq!(g.offset, 100 + i as i64);
                assert_eq!(g.partition, 4);
                assert_eq!(g.key, r.key, "{codec:?} {i}");
                assert_eq!(g.value, r.value, "{codec:?} {i}");
                assert_eq!(g.headers, r.headers, "{codec:?} {i}");
                assert_eq!(
                    g.timestamp, r.timestamp,
                    "{codec:?} {i}: timestamps over 40 days apart"
                );
                assert_eq!(g.timestamp_type, TimestampType::Create);
                assert_eq!(g.producer.producer_id, 77);
                assert_eq!(g.producer.producer_epoch, 3);
                assert_eq!(g.producer.sequence, 10 + i as i32);
                assert_eq!(g.leader_epoch, None);
                assert!(!g.is_control && !g.is_transactional);
            }
            let s = scan_batches(&b).unwrap().unwrap();
            assert_eq!(
                (s.first_offset, s.next_offset, s.record_count),
                (100, 104, 4)
            );
            assert_eq!(
                (s.min_timestamp, s.max_timestamp),
                (Some(now - 40 * DAY), Some(now + 1))
            );
            let v = verify_batches(&b).unwrap();
            assert_eq!(
                (v.batches, v.records, v.first_offset, v.next_offset),
                (1, 4, Some(100), Some(104))
            );
        }
    }

    #[test]
    fn truncated_trailing_batch_is_dropped() {
        let a = build_batch(
            0,
            &[rec(None, Some("a"), 1), rec(None, Some("b"), 2)],
            Compression::None,
            0,
            None,
        )
        .unwrap();
        let b = build_batch(2, &[rec(None, Some("c"), 3)], Compression::Gzip, 0, None).unwrap();
        let c = build_batch(3, &[rec(None, Some("d"), 4)], Compression::None, 0, None).unwrap();
        let whole = concat(&[&a, &b]);
        for cut in [1, 11, 12, 30, 61, c.len() - 1] {
            let fetched = concat(&[&a, &b, &c.slice(0..cut)]);
            let s = scan_batches(&fetched).unwrap().unwrap();
            assert_eq!(s.bytes, whole, "cut at {cut}");
            assert_eq!((s.first_offset, s.next_offset, s.record_count), (0, 3, 3));
            assert_eq!(decode_batches(&fetched, &topic(), 0).unwrap().len(), 3);
            // A raw segment must not end in a partial batch.
            let err = verify_batches(&fetched).unwrap_err().to_string();
            assert!(err.contains("truncated"), "{err}");
        }
        // Nothing whole at all.
        assert_eq!(scan_batches(&a.slice(0..20)).unwrap(), None);
        assert_eq!(scan_batches(&Bytes::new()).unwrap(), None);
    }

    /// Records as another encoder (kafka-protocol's) writes them.
    fn kp(offset: i64, ts: i64, key: &str, headers: &[(&str, Option<&str>)]) -> KpRecord {
        let mut h = IndexMap::new();
        for (k, v) in headers {
            h.insert(
                StrBytes::from_string(k.to_string()),
                v.map(|v| Bytes::from(v.to_string())),
            );
        }
        KpRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 5,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: KpTs::Creation,
            offset,
            // kafka-protocol starts a new batch when offset - sequence changes.
            sequence: (offset - 10) as i32,
            timestamp: ts,
            key: Some(Bytes::from(key.to_string())),
            value: Some(Bytes::from(format!("value of {key}"))),
            headers: h,
        }
    }

    #[test]
    fn compaction_gaps_take_next_offset_from_the_header() {
        for codec in CODECS {
            // A compacted batch: offsets 10, 12, 15 survive of 10..=17; last offset delta 7.
            let recs = [
                kp(10, 1_000, "a", &[("x", None)]),
                kp(12, 1_000 - 31 * DAY, "b", &[]),
                kp(15, 2_000, "c", &[]),
            ];
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &recs,
                &RecordEncodeOptions {
                    version: 2,
                    compression: codec,
                },
            )
            .unwrap();
            let mut raw = buf.to_vec();
            raw[23..27].copy_from_slice(&7i32.to_be_bytes());
            let crc = crc32c::crc32c(&raw[CRC_START..]);
            raw[17..21].copy_from_slice(&crc.to_be_bytes());
            let raw = Bytes::from(raw);
            let s = scan_batches(&raw).unwrap().unwrap();
            assert_eq!(
                (s.first_offset, s.next_offset, s.record_count),
                (10, 18, 3),
                "{codec:?}"
            );
            let got = decode_batches(&raw, &topic(), 0).unwrap();
            assert_eq!(
                got.iter().map(|r| r.offset).collect::<Vec<_>>(),
                vec![10, 12, 15]
            );
            assert_eq!(
                got[1].timestamp,
                1_000 - 31 * DAY,
                "{codec:?}: negative delta over 31 days"
            );
            assert_eq!(got[0].headers, vec![Header::new("x", None)]);
            assert_eq!(got[0].leader_epoch, Some(5));
            assert_eq!(got[2].value.as_deref(), Some(&b"value of c"[..]));
            // Records below a fetch offset inside the batch are the caller's to drop.
            let from = records_from(got, 12);
            assert_eq!(
                from.iter().map(|r| r.offset).collect::<Vec<_>>(),
                vec![12, 15]
            );
        }
    }

    #[test]
    fn kafka_protocol_reads_what_ferry_encodes() {
        for codec in CODECS {
            let mut r = rec(Some("k"), Some("v"), 5);
            r.headers = vec![Header::new("h", Some(Bytes::from_static(b"1")))];
            let b = build_batch(42, &[r, rec(None, None, 9)], codec, 0, None).unwrap();
            let mut buf = b.clone();
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            assert_eq!(set.records.len(), 2);
            assert_eq!(set.records[0].offset, 42);
            assert_eq!(set.records[0].key.as_deref(), Some(&b"k"[..]));
            assert_eq!(set.records[1].key, None);
            assert_eq!(set.records[1].value, None);
            assert_eq!(set.records[1].timestamp, 9);
        }
    }

    #[test]
    fn control_and_transactional_batches_are_flagged() {
        // An abort marker: key = version 0, type 0 (ABORT); value = version 0, coordinator epoch.
        let marker = ProduceRecord {
            key: Some(Bytes::from_static(&[0, 0, 0, 0])),
            value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 7])),
            headers: vec![],
            timestamp: 50,
        };
        let pinfo = Some(ProducerInfo {
            producer_id: 9,
            producer_epoch: 1,
            sequence: -1,
        });
        let data = build_batch(
            0,
            &[rec(None, Some("aborted"), 40)],
            Compression::None,
            0x10,
            pinfo,
        )
        .unwrap();
        let ctrl = build_batch(1, &[marker], Compression::None, 0x30, pinfo).unwrap();
        let both = concat(&[&data, &ctrl]);
        let s = scan_batches(&both).unwrap().unwrap();
        assert!(s.control_batches);
        assert_eq!(s.next_offset, 2);
        let got = decode_batches(&both, &topic(), 0).unwrap();
        assert!(got[0].is_transactional && !got[0].is_control);
        assert!(got[1].is_transactional && got[1].is_control);
        assert_eq!(got[1].producer.sequence, -1);
        assert_eq!(verify_batches(&both).unwrap().control_batches, 1);
        assert!(!scan_batches(&data).unwrap().unwrap().control_batches);
    }

    #[test]
    fn log_append_time_uses_the_batch_max_timestamp() {
        let mut b = BytesMut::from(
            &build_batch(
                0,
                &[rec(None, Some("a"), 1), rec(None, Some("b"), 2)],
                Compression::Lz4,
                0x08,
                None,
            )
            .unwrap()[..],
        );
        // The broker sets max timestamp to the append time.
        b[35..43].copy_from_slice(&777i64.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let b = b.freeze();
        let got = decode_batches(&b, &topic(), 0).unwrap();
        assert!(got
            .iter()
            .all(|r| r.timestamp == 777 && r.timestamp_type == TimestampType::LogAppend));
        let s = scan_batches(&b).unwrap().unwrap();
        assert_eq!((s.min_timestamp, s.max_timestamp), (Some(777), Some(777)));
    }

    #[test]
    fn crc_catches_a_flipped_byte() {
        let b = build_batch(
            0,
            &[rec(Some("key"), Some("value"), 1)],
            Compression::None,
            0,
            None,
        )
        .unwrap();
        for at in [21, 30, 60, b.len() - 1] {
            let mut m = b.to_vec();
            m[at] ^= 0x01;
            let m = Bytes::from(m);
            let e = verify_batches(&m).unwrap_err().to_string();
            assert!(e.contains("CRC mismatch"), "byte {at}: {e}");
            assert!(decode_batches(&m, &topic(), 0).is_err(), "byte {at}");
        }
        // The base offset is outside the CRC (brokers rewrite it); flipping it still verifies.
        let mut m = b.to_vec();
        m[7] ^= 1;
        assert!(verify_batches(&m).is_ok());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let b = build_batch(
            0,
            &[rec(Some("key"), Some("value"), 1)],
            Compression::Gzip,
            0,
            None,
        )
        .unwrap();
        // Old message formats are refused by name.
        let mut m = b.to_vec();
        m[16] = 1;
        assert!(verify_batches(&m)
            .unwrap_err()
            .to_string()
            .contains("format v1"));
        // Negative and tiny lengths.
        let mut m = b.to_vec();
        m[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(scan_batches(&Bytes::from(m)).is_err());
        let mut m = b.to_vec();
        m[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert!(scan_batches(&Bytes::from(m)).is_err());
        // Garbage compressed payload with a valid CRC.
        let mut m = b.to_vec();
        for x in m[BATCH_HEADER_LEN..].iter_mut() {
            *x = 0xAB;
        }
        let crc = crc32c::crc32c(&m[CRC_START..]);
        m[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(decode_batches(&Bytes::from(m), &topic(), 0).is_err());
        // A huge record count with no records.
        let mut m = build_batch(0, &[rec(None, None, 1)], Compression::None, 0, None)
            .unwrap()
            .to_vec();
        m[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&m[CRC_START..]);
        m[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(decode_batches(&Bytes::from(m), &topic(), 0).is_err());
    }

    #[test]
    fn decoder_trait_decodes_raw_batches() {
        let b = build_batch(
            3,
            &[rec(Some("k"), Some("v"), 1)],
            Compression::Zstd,
            0,
            None,
        )
        .unwrap();
        let raw = RawBatches {
            bytes: b,
            record_count: 1,
            min_timestamp: Some(1),
            max_timestamp: Some(1),
            aborted: vec![],
            decoder: Arc::new(BatchDecoder),
        };
        let got = BatchDecoder.decode(&topic(), 0, &raw).unwrap();
        assert_eq!(got[0].offset, 3);
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(add_sequence(5, 2), 7);
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(-1, 3), -1);
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(add_sequence(i32::MAX, i32::MAX), i32::MAX - 1);
    }

    /// Regression (fuzz target `raw_segment`): a record whose offset delta is negative, in a
    /// batch with a base sequence and a valid CRC, panicked with an overflow in
    /// `add_sequence`; it decodes, with no sequence for that record.
    #[test]
    fn a_negative_offset_delta_does_not_panic() {
        let records = [ProduceRecord {
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Vec::new(),
            timestamp: 1,
        }];
        let producer = ProducerInfo {
            producer_id: 7,
            producer_epoch: 0,
            sequence: 5,
        };
        let batch = build_batch(100, &records, Compression::None, 0, Some(producer)).unwrap();
        let mut b = batch.to_vec();
        // The record: length, attributes, timestamp delta 0, offset delta 0 (zigzag).
        let off_delta = BATCH_HEADER_LEN + 3;
        assert_eq!(b[off_delta], 0, "offset delta of the first record");
        b[off_delta] = 1; // zigzag for -1
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let got = decode_batches(&Bytes::from(b), &topic(), 0).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].offset, got[0].producer.sequence), (99, -1));
    }
}
