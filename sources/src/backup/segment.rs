//! Reading one segment object with bounded memory: ranged reads of a few MiB, split on whole
//! units of the segment's format (Kafka batches for `raw`, lines for `jsonl`).
//!
//! Formats plug in through [`SegmentFormat`]: adding `avro` or `parquet` means adding a
//! variant and a reader that yields [`Piece`]s.

use bytes::{Bytes, BytesMut};
use ferry_core::{Error, Record, Result, Storage};
use ferry_formats::layout::SegmentManifest;
use ferry_kafka::batch::{decode_batches, verify_batches, BatchHeader};
use std::sync::Arc;

/// Default size of one ranged read.
pub const DEFAULT_READ_CHUNK: u64 = 4 << 20;
/// Bytes in front of a Kafka batch's length-counted part (base offset + length).
const LOG_OVERHEAD: usize = 12;

/// The formats a segment can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentFormat {
    /// Kafka v2 record batches, concatenated as fetched.
    Raw,
    /// One JSON document per line.
    Jsonl,
}

impl SegmentFormat {
    /// The format a manifest declares, or an error naming the manifest's segment.
    pub fn of(storage: &Storage, m: &SegmentManifest) -> Result<SegmentFormat> {
        match m.format.as_str() {
            "raw" => Ok(SegmentFormat::Raw),
            "jsonl" => Ok(SegmentFormat::Jsonl),
            other => Err(Error::Other(format!(
                "{storage}/{}: segment format '{other}' cannot be read by this Ferry yet (it reads raw and jsonl)",
                m.segment
            ))),
        }
    }
}

/// A segment object read front to back in ranged reads, with a CRC-32C of everything read.
pub struct ChunkedObject {
    storage: Storage,
    key: String,
    size: u64,
    read_pos: u64,
    chunk: u64,
    crc: u32,
}

impl ChunkedObject {
    /// Reads `key`, expected to be `size` bytes long, `chunk` bytes at a time.
    pub fn new(storage: Storage, key: impl Into<String>, size: u64, chunk: u64) -> Self {
        ChunkedObject {
            storage,
            key: key.into(),
            size,
            read_pos: 0,
            chunk: chunk.max(LOG_OVERHEAD as u64),
            crc: 0,
        }
    }

    /// The object's name as printed in messages (`URI/key`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.storage, self.key)
    }

    /// The object's key relative to the storage root.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes read so far.
    pub fn read_pos(&self) -> u64 {
        self.read_pos
    }

    /// Whether every byte has been read.
    pub fn at_end(&self) -> bool {
        self.read_pos >= self.size
    }

    /// CRC-32C of the bytes read so far (of the whole object once [`ChunkedObject::at_end`]).
    pub fn crc32c(&self) -> u32 {
        self.crc
    }

    /// Appends at least `min` more bytes (a chunk or more, never past the end) to `buf`.
    /// Returns `false` when the object is already read to its end.
    pub async fn read_more(&mut self, buf: &mut BytesMut, min: usize) -> Result<bool> {
        if self.at_end() {
            return Ok(false);
        }
        let want = (min as u64).max(self.chunk).min(self.size - self.read_pos);
        let range = self.read_pos..self.read_pos + want;
        let data = self
            .storage
            .operator()
            .read_with(&self.key)
            .range(range.clone())
            .await
            .map_err(|e| {
                Error::storage(
                    format!(
                        "reading bytes {}..{} of {}",
                        range.start,
                        range.end,
                        self.name()
                    ),
                    e,
                )
            })?;
        let got = data.len() as u64;
        if got != want {
            return Err(Error::Corrupt(format!(
                "{}: object is shorter than its manifest says ({} bytes): read {got} of {want} bytes at byte {}",
                self.name(),
                self.size,
                self.read_pos
            )));
        }
        buf.reserve(want as usize);
        for chunk in data {
            self.crc = crc32c::crc32c_append(self.crc, &chunk);
            buf.extend_from_slice(&chunk);
        }
        self.read_pos += got;
        Ok(true)
    }
}

/// One whole Kafka batch of a raw segment.
#[derive(Debug, Clone)]
pub struct RawBatch {
    /// Its parsed header.
    pub header: BatchHeader,
    /// The whole batch, header included.
    pub bytes: Bytes,
    /// Where it starts in the segment object.
    pub position: u64,
}

/// Reads the Kafka batches of a raw segment one by one, CRC checked.
pub struct RawReader {
    object: ChunkedObject,
    buf: BytesMut,
    /// Object position of `buf[0]`.
    buf_pos: u64,
}

impl RawReader {
    /// Reads `object` from its start.
    pub fn new(object: ChunkedObject) -> Self {
        RawReader {
            object,
            buf: BytesMut::new(),
            buf_pos: 0,
        }
    }

    /// The underlying object (its name, CRC and position).
    pub fn object(&self) -> &ChunkedObject {
        &self.object
    }

    /// Whether the next batch is already buffered (no storage read needed to return it).
    pub fn has_buffered_batch(&self) -> bool {
        self.buf.len() >= LOG_OVERHEAD && {
            let len = i32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]]);
            len >= 0 && self.buf.len() >= LOG_OVERHEAD + len as usize
        }
    }

    /// The next whole batch with a good CRC, `None` at the end of the object. A truncated
    /// last batch or a bad CRC is an error naming the object and the offset.
    pub async fn next_batch(&mut self) -> Result<Option<RawBatch>> {
        loop {
            let need = if self.buf.len() >= LOG_OVERHEAD {
                let len =
                    i32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]]);
                if len < 0 {
                    return Err(Error::Corrupt(format!(
                        "{}: negative batch length {len} at byte {}",
                        self.object.name(),
                        self.buf_pos
                    )));
                }
                let total = LOG_OVERHEAD + len as usize;
                if self.buf.len() >= total {
                    let bytes = self.buf.split_to(total).freeze();
                    let position = self.buf_pos;
                    self.buf_pos += total as u64;
                    let header = BatchHeader::parse(&bytes).map_err(|e| {
                        Error::Corrupt(format!("{} at byte {position}: {e}", self.object.name()))
                    })?;
                    verify_batches(&bytes).map_err(|e| {
                        Error::Corrupt(format!(
                            "{}: batch at offset {} (byte {position}): {e}",
                            self.object.name(),
                            header.base_offset
                        ))
                    })?;
                    return Ok(Some(RawBatch {
                        header,
                        bytes,
                        position,
                    }));
                }
                total - self.buf.len()
            } else {
                LOG_OVERHEAD - self.buf.len()
            };
            if !self.object.read_more(&mut self.buf, need).await? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let declared = if self.buf.len() >= LOG_OVERHEAD {
                    let len =
                        i32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]]);
                    format!(" declares {} bytes but", LOG_OVERHEAD as i64 + len as i64)
                } else {
                    String::new()
                };
                return Err(Error::Corrupt(format!(
                    "{}: the batch at byte {}{declared} only {} bytes are left (a truncated segment or a damaged batch length)",
                    self.object.name(),
                    self.buf_pos,
                    self.buf.len(),
                )));
            }
        }
    }
}

/// Decodes a raw batch into records (control records included, flagged); errors name the
/// object.
pub fn decode_raw(
    name: &str,
    topic: &Arc<str>,
    partition: i32,
    batch: &RawBatch,
) -> Result<Vec<Record>> {
    decode_batches(&batch.bytes, topic, partition).map_err(|e| {
        Error::Corrupt(format!(
            "{name}: batch at offset {} (byte {}): {e}",
            batch.header.base_offset, batch.position
        ))
    })
}

/// One line of a line-oriented segment.
#[derive(Debug, Clone)]
pub struct Line {
    /// The line without its line break.
    pub bytes: Bytes,
    /// 1-based line number.
    pub number: usize,
    /// Where the line starts in the object.
    pub position: u64,
}

/// Reads the lines of a line-oriented segment one by one.
pub struct LineReader {
    object: ChunkedObject,
    buf: BytesMut,
    /// Object position of `buf[0]`.
    buf_pos: u64,
    /// How far into `buf` no newline was found yet.
    scanned: usize,
    /// Lines returned or skipped so far.
    lines: usize,
}

impl LineReader {
    /// Reads `object` from its start.
    pub fn new(object: ChunkedObject) -> Self {
        LineReader {
            object,
            buf: BytesMut::new(),
            buf_pos: 0,
            scanned: 0,
            lines: 0,
        }
    }

    /// The underlying object.
    pub fn object(&self) -> &ChunkedObject {
        &self.object
    }

    /// Whether the next line is already buffered (no storage read needed to return it).
    pub fn has_buffered_line(&self) -> bool {
        self.buf[self.scanned..].contains(&b'\n')
    }

    /// The next line that is not blank, `None` at the end. A last line without a line
    /// break is returned too.
    pub async fn next_line(&mut self) -> Result<Option<Line>> {
        loop {
            let (mut bytes, position) =
                match self.buf[self.scanned..].iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        let end = self.scanned + i;
                        let mut line = self.buf.split_to(end + 1);
                        line.truncate(end);
                        let pos = self.buf_pos;
                        self.buf_pos += end as u64 + 1;
                        self.scanned = 0;
                        (line.freeze(), pos)
                    }
                    None => {
                        self.scanned = self.buf.len();
                        if self.object.read_more(&mut self.buf, 0).await? {
                            continue;
                        }
                        if self.buf.is_empty() {
                            return Ok(None);
                        }
                        let line = std::mem::take(&mut self.buf).freeze();
                        let pos = self.buf_pos;
                        self.buf_pos += line.len() as u64;
                        self.scanned = 0;
                        (line, pos)
                    }
                };
            self.lines += 1;
            if bytes.last() == Some(&b'\r') {
                bytes.truncate(bytes.len() - 1);
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(Line {
                bytes,
                number: self.lines,
                position,
            }));
        }
    }
}

/// Decodes one line of a `jsonl` segment into a record of `topic`/`partition`; errors name
/// the object, the line and its byte position.
pub fn decode_jsonl_line(
    name: &str,
    line: &Line,
    topic: &Arc<str>,
    partition: i32,
) -> Result<Record> {
    let mut r = ferry_formats::jsonl::decode_line(&line.bytes, line.number)
        .map_err(|e| Error::Corrupt(format!("{name} (byte {}): {e}", line.position)))?;
    if *r.topic != **topic || r.partition != partition {
        return Err(Error::Corrupt(format!(
            "{name}, line {} (byte {}): record of {}/{} in a segment of {topic}/{partition}",
            line.number, line.position, r.topic, r.partition
        )));
    }
    r.topic = topic.clone();
    Ok(r)
}
