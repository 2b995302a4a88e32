//! Reading one segment object with bounded memory: ranged reads of a few MiB, split on whole
//! units of the segment's format (Kafka batches for `raw`, lines for `jsonl`, Avro blocks
//! for `avro`). A `parquet` segment is read whole (its footer is at the end and row groups
//! may be anywhere), so reading one needs memory for the object: at most the sink's
//! `roll.max_bytes` (128MiB by default), plus one decoded batch of 8192 rows.
//!
//! `jsonl`, `avro` and `parquet` segments hold data records only, without transaction
//! flags or markers: what the export read is what is restored (a `read_committed` export
//! holds no aborted data).
//!
//! Formats are told apart by [`FormatKind`] (see [`format_of`]), with a reader per format.

use bytes::{Bytes, BytesMut};
use ferry_core::encryption::envelope::TAG_LEN;
use ferry_core::encryption::{EnvelopeHeader, KeyProvider, Opener};
use ferry_core::{Error, Record, Result, Storage};
use ferry_formats::avro::AvroRecords;
use ferry_formats::layout::SegmentManifest;
use ferry_formats::parquet::ParquetRecords;
use ferry_formats::FormatKind;
use ferry_kafka::batch::{decode_batches, verify_batches, BatchHeader};
use std::collections::VecDeque;
use std::sync::Arc;

/// Default size of one ranged read.
pub const DEFAULT_READ_CHUNK: u64 = 4 << 20;
/// Bytes in front of a Kafka batch's length-counted part (base offset + length).
const LOG_OVERHEAD: usize = 12;

/// The format a manifest declares, or an error naming the manifest's segment.
pub fn format_of(storage: &Storage, m: &SegmentManifest) -> Result<FormatKind> {
    FormatKind::from_name(&m.format)
        .filter(|k| k.restorable())
        .ok_or_else(|| {
            Error::internal(format!(
                "{storage}/{}: segment format '{}' cannot be read by this Ferry (it reads {}): upgrade Ferry",
                m.segment,
                m.format,
                FormatKind::names()
            ))
        })
}

/// A segment object read front to back in ranged reads, with a CRC-32C of everything read.
/// The next chunk is read ahead while the caller works on the last one, so a restore from
/// cold storage (a disk, S3) waits less for its reads.
///
/// An encrypted segment ([`open_segment`] with keys) is decrypted as it is read: callers
/// get the plaintext, while size, position and CRC-32C stay those of the stored object
/// (what the manifest records). Memory stays at about one read plus one envelope chunk.
pub struct ChunkedObject {
    storage: Storage,
    key: String,
    size: u64,
    read_pos: u64,
    chunk: u64,
    crc: u32,
    ahead: Option<ReadAhead>,
    decrypt: Option<Box<Decrypting>>,
}

/// The state of decrypting an object while it is read.
struct Decrypting {
    keys: Arc<dyn KeyProvider>,
    /// Stored bytes read but not decrypted yet (the header, then part of a chunk).
    stored: BytesMut,
    /// Object position of `stored[0]`.
    stored_pos: u64,
    /// Set once the header is read and the data key unwrapped.
    opener: Option<Opener>,
}

/// Opens the object of a segment for reading: decrypted with `keys` when its manifest says
/// it is encrypted. An encrypted segment without keys, or with none of the key its data
/// key was wrapped with, is a config error naming the segment and the key id.
pub fn open_segment(
    storage: &Storage,
    m: &SegmentManifest,
    chunk: u64,
    keys: Option<&Arc<dyn KeyProvider>>,
) -> Result<ChunkedObject> {
    check_key(storage, m, keys)?;
    let object = ChunkedObject::new(storage.clone(), m.segment.clone(), m.bytes, chunk);
    Ok(match (&m.encryption, keys) {
        (Some(_), Some(keys)) => object.decrypting(keys.clone()),
        _ => object,
    })
}

/// Checks that `keys` can decrypt the segment of `m`, and that a plain segment is read
/// without keys; the error names the segment, its key id and the keys given.
pub fn check_key(
    storage: &Storage,
    m: &SegmentManifest,
    keys: Option<&Arc<dyn KeyProvider>>,
) -> Result<()> {
    let Some(e) = &m.encryption else {
        // A location is written all encrypted or all plain: a plain segment where keys are
        // expected was not written by the encrypted backup (manifests are not signed).
        return match keys {
            Some(k) => Err(Error::config(format!(
                "{storage}/{} is not encrypted, but keys were given ({}): an encrypted backup holds only encrypted segments, so this one was put there by something else; leave out the keys to read a plain backup",
                m.segment,
                k.describe()
            ))),
            None => Ok(()),
        };
    };
    match keys {
        None => Err(Error::config(format!(
            "{storage}/{} is encrypted (key id {}): give its key with --encryption-key-file or \
             `encryption: {{key_file: …}}`",
            m.segment, e.key_id
        ))),
        Some(k) if !k.has_key(&e.key_id) => Err(Error::config(format!(
            "{storage}/{} was encrypted with key id {}, which none of the given keys is ({}): \
             give the key it was written with (after a rotation, give the old key too)",
            m.segment,
            e.key_id,
            k.describe()
        ))),
        Some(_) => Ok(()),
    }
}

/// A ranged read running in the background; aborted when dropped unused.
struct ReadAhead {
    range: std::ops::Range<u64>,
    task: tokio::task::JoinHandle<opendal::Result<opendal::Buffer>>,
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.task.abort();
    }
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
            ahead: None,
            decrypt: None,
        }
    }

    /// The object is encrypted (see `ferry_core::encryption::envelope`): decrypt it with
    /// `keys` as it is read.
    pub fn decrypting(mut self, keys: Arc<dyn KeyProvider>) -> Self {
        self.decrypt = Some(Box::new(Decrypting {
            keys,
            stored: BytesMut::new(),
            stored_pos: 0,
            opener: None,
        }));
        self
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

    /// Whether every byte has been read (and, encrypted, decrypted).
    pub fn at_end(&self) -> bool {
        self.read_pos >= self.size && self.decrypt.as_ref().is_none_or(|d| d.stored.is_empty())
    }

    /// CRC-32C of the bytes read so far (of the whole object once [`ChunkedObject::at_end`]).
    pub fn crc32c(&self) -> u32 {
        self.crc
    }

    /// Appends at least `min` more bytes (a chunk or more, never past the end) to `buf`:
    /// plaintext, for an encrypted object. Returns `false` when the object is already read
    /// to its end.
    pub async fn read_more(&mut self, buf: &mut BytesMut, min: usize) -> Result<bool> {
        let Some(mut d) = self.decrypt.take() else {
            return self.read_stored(buf, min).await;
        };
        let result = self.read_decrypted(&mut d, buf, min).await;
        self.decrypt = Some(d);
        result
    }

    /// Appends at least `min` bytes of plaintext (fewer only at the end) to `buf`,
    /// decrypting whole envelope chunks as their stored bytes arrive.
    async fn read_decrypted(
        &mut self,
        d: &mut Decrypting,
        buf: &mut BytesMut,
        min: usize,
    ) -> Result<bool> {
        let start = buf.len();
        let want = min.max(1);
        loop {
            if d.opener.is_none() {
                match EnvelopeHeader::parse(&d.stored) {
                    Err(e) => return Err(Error::Corrupt(format!("{}: {e}", self.name()))),
                    Ok(None) => {
                        if !self.read_stored(&mut d.stored, 0).await? {
                            return Err(Error::Corrupt(format!(
                                "{}: the encryption header is cut short",
                                self.name()
                            )));
                        }
                        continue;
                    }
                    Ok(Some(header)) => {
                        let len = header.len();
                        let opener = Opener::new(d.keys.as_ref(), header, &self.key)
                            .await
                            .map_err(|e| self.with_name(e))?;
                        let _ = d.stored.split_to(len);
                        d.stored_pos += len as u64;
                        d.opener = Some(opener);
                    }
                }
            }
            let Some(opener) = d.opener.as_mut() else {
                continue;
            };
            let full = opener.header().stored_chunk_len();
            // Room for all the plaintext of what is stored (a little less than its size) at
            // once: grown chunk by chunk, `buf` would double (and be copied) several times
            // per read, and batches handed on from it keep its whole allocation alive.
            buf.reserve(d.stored.len());
            // Every whole chunk read so far; a chunk is the last when it ends the object.
            while d.stored_pos < self.size {
                let this = (self.size - d.stored_pos).min(full);
                if (d.stored.len() as u64) < this {
                    break;
                }
                let last = d.stored_pos + this == self.size;
                let mut chunk = d.stored.split_to(this as usize);
                let plain = opener.open_chunk(&mut chunk, last).map_err(|e| {
                    Error::Corrupt(format!(
                        "{}: at stored byte {}: {}",
                        self.name(),
                        d.stored_pos,
                        corrupt_text(&e)
                    ))
                })?;
                buf.extend_from_slice(plain);
                d.stored_pos += this;
            }
            if buf.len() - start >= want {
                return Ok(true);
            }
            if d.stored_pos >= self.size {
                if !opener.finished() {
                    return Err(Error::Corrupt(format!(
                        "{}: no last chunk: the object was cut short",
                        self.name()
                    )));
                }
                return Ok(buf.len() > start);
            }
            // The rest of the next chunk, and more when the caller wants more.
            let missing = (want - (buf.len() - start)) as u64;
            let need = full.max(missing + missing / full * TAG_LEN as u64 + TAG_LEN as u64);
            let need = need.saturating_sub(d.stored.len() as u64) as usize;
            if !self.read_stored(&mut d.stored, need).await? {
                return Err(Error::Corrupt(format!(
                    "{}: the object ends before its last chunk",
                    self.name()
                )));
            }
        }
    }

    /// An error about this object: its message prefixed with the object's name.
    fn with_name(&self, e: Error) -> Error {
        match e {
            Error::Corrupt(m) => Error::Corrupt(format!("{}: {m}", self.name())),
            Error::Config { message, .. } => Error::config(format!("{}: {message}", self.name())),
            other => other,
        }
    }

    /// Appends at least `min` more stored bytes (a chunk or more, never past the end) to
    /// `buf`. Returns `false` when the object is already read to its end.
    async fn read_stored(&mut self, buf: &mut BytesMut, min: usize) -> Result<bool> {
        if self.read_pos >= self.size {
            return Ok(false);
        }
        let want = (min as u64).max(self.chunk).min(self.size - self.read_pos);
        let range = self.read_pos..self.read_pos + want;
        let op = self.storage.operator()?.clone();
        let read = match self.ahead.take() {
            Some(mut a) if a.range == range => match (&mut a.task).await {
                Ok(r) => r,
                Err(e) => {
                    return Err(Error::internal(format!(
                        "reading ahead in {}: {e}",
                        self.name()
                    )))
                }
            },
            // Not the range read ahead (a batch bigger than a chunk): read it now.
            _ => op.read_with(&self.key).range(range.clone()).await,
        };
        let next = range.end..(range.end + self.chunk).min(self.size);
        if !next.is_empty() && tokio::runtime::Handle::try_current().is_ok() {
            let key = self.key.clone();
            let r = next.clone();
            self.ahead = Some(ReadAhead {
                range: next,
                task: tokio::spawn(async move { op.read_with(&key).range(r).await }),
            });
        }
        let data = read.map_err(|e| {
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

/// The message of a corrupt-data error without its `corrupt data:` prefix.
fn corrupt_text(e: &Error) -> String {
    match e {
        Error::Corrupt(m) => m.clone(),
        other => other.to_string(),
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

/// Checks that a record read from a segment belongs to its partition, and shares the
/// partition reader's topic name.
fn own_record(name: &str, mut r: Record, topic: &Arc<str>, partition: i32) -> Result<Record> {
    if *r.topic != **topic || r.partition != partition {
        return Err(Error::Corrupt(format!(
            "{name}: record of {}/{} at offset {} in a segment of {topic}/{partition}",
            r.topic, r.partition, r.offset
        )));
    }
    r.topic = topic.clone();
    Ok(r)
}

/// The message of a decoder's error without the `corrupt data:` prefix (the caller adds
/// the object's name).
fn inner(e: Error) -> String {
    match e {
        Error::Corrupt(m) => m,
        other => other.to_string(),
    }
}

/// Checks the whole-object CRC-32C once an object is read to its end.
fn check_crc(object: &ChunkedObject, expected: Option<u32>) -> Result<()> {
    match expected {
        Some(want) if object.at_end() && object.crc32c() != want => Err(Error::Corrupt(format!(
            "{}: CRC-32C of the object is {:08x}, its manifest says {want:08x} (the segment was changed or damaged; `ferry verify` lists every damaged segment)",
            object.name(),
            object.crc32c()
        ))),
        _ => Ok(()),
    }
}

/// Decoded Avro blocks are handed out this many bytes (of encoded blocks) at a time.
const AVRO_DECODE_BYTES: usize = 1 << 20;
/// Length of an Avro sync marker.
const AVRO_SYNC: usize = 16;

/// An Avro `long` (zig-zag varint) at the start of `b`: `None` when `b` ends inside it.
fn avro_long(b: &[u8]) -> std::result::Result<Option<(i64, usize)>, String> {
    let mut n: u64 = 0;
    for (i, byte) in b.iter().enumerate() {
        if i >= 10 {
            return Err("a varint is longer than 10 bytes".into());
        }
        n |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((((n >> 1) as i64) ^ -((n & 1) as i64), i + 1)));
        }
    }
    Ok(None)
}

/// A non-negative Avro `long` at `b[*pos..]`, moving `pos` past it.
fn avro_len(b: &[u8], pos: &mut usize, what: &str) -> std::result::Result<Option<usize>, String> {
    let Some((v, n)) = avro_long(&b[*pos..])? else {
        return Ok(None);
    };
    *pos += n;
    usize::try_from(v)
        .map(Some)
        .map_err(|_| format!("negative {what} {v}"))
}

/// Length and sync marker of the Avro file header at the start of `b`, `None` when `b`
/// does not hold all of it yet.
fn avro_header(b: &[u8]) -> std::result::Result<Option<(usize, [u8; AVRO_SYNC])>, String> {
    if b.len() < 4 {
        return Ok(None);
    }
    if &b[..4] != b"Obj\x01" {
        return Err("not an Avro object container file (no `Obj` magic)".into());
    }
    let mut pos = 4;
    loop {
        let Some((count, n)) = avro_long(&b[pos..])? else {
            return Ok(None);
        };
        pos += n;
        if count == 0 {
            break;
        }
        if count < 0 {
            // A negative count is followed by the block's size in bytes.
            let Some((_, n)) = avro_long(&b[pos..])? else {
                return Ok(None);
            };
            pos += n;
        }
        for _ in 0..count.unsigned_abs() {
            for what in ["metadata key length", "metadata value length"] {
                let Some(len) = avro_len(b, &mut pos, what)? else {
                    return Ok(None);
                };
                pos = pos.saturating_add(len);
                if pos > b.len() {
                    return Ok(None);
                }
            }
        }
    }
    if b.len() < pos + AVRO_SYNC {
        return Ok(None);
    }
    let mut sync = [0u8; AVRO_SYNC];
    sync.copy_from_slice(&b[pos..pos + AVRO_SYNC]);
    Ok(Some((pos + AVRO_SYNC, sync)))
}

/// Length of the Avro data block at the start of `b` (count, size, data, sync), `None`
/// when `b` does not hold all of it yet; the sync marker must be `sync`.
fn avro_block(b: &[u8], sync: &[u8; AVRO_SYNC]) -> std::result::Result<Option<usize>, String> {
    let mut pos = 0;
    let Some(_count) = avro_len(b, &mut pos, "block record count")? else {
        return Ok(None);
    };
    let Some(size) = avro_len(b, &mut pos, "block size")? else {
        return Ok(None);
    };
    let end = pos.saturating_add(size).saturating_add(AVRO_SYNC);
    if b.len() < end {
        return Ok(None);
    }
    if &b[end - AVRO_SYNC..end] != sync {
        return Err("a block does not end with the file's sync marker".into());
    }
    Ok(Some(end))
}

/// Reads the records of an Avro segment in ranged reads, a few blocks at a time: each
/// group of whole blocks is decoded behind a copy of the file header, so memory stays at
/// about one read chunk plus the decoded records of about [`AVRO_DECODE_BYTES`].
pub struct AvroReader {
    object: ChunkedObject,
    topic: Arc<str>,
    partition: i32,
    expected_crc: Option<u32>,
    buf: BytesMut,
    /// Object position of `buf[0]`.
    buf_pos: u64,
    header: Option<(Bytes, [u8; AVRO_SYNC])>,
    pending: VecDeque<Record>,
}

impl AvroReader {
    /// Reads `object`, a segment of `topic`/`partition`; at its end the object's CRC-32C
    /// must be `expected_crc` when given.
    pub fn new(
        object: ChunkedObject,
        topic: Arc<str>,
        partition: i32,
        expected_crc: Option<u32>,
    ) -> Self {
        AvroReader {
            object,
            topic,
            partition,
            expected_crc,
            buf: BytesMut::new(),
            buf_pos: 0,
            header: None,
            pending: VecDeque::new(),
        }
    }

    /// The underlying object.
    pub fn object(&self) -> &ChunkedObject {
        &self.object
    }

    /// Whether the next record is already decoded.
    pub fn has_buffered_record(&self) -> bool {
        !self.pending.is_empty()
    }

    fn corrupt(&self, at: u64, message: impl std::fmt::Display) -> Error {
        Error::Corrupt(format!("{}: at byte {at}: {message}", self.object.name()))
    }

    /// The next record, `None` at the end of the object.
    pub async fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            if let Some(r) = self.pending.pop_front() {
                return Ok(Some(r));
            }
            let Some((header, sync)) = self.header.clone() else {
                match avro_header(&self.buf).map_err(|e| self.corrupt(0, e))? {
                    Some((len, sync)) => {
                        let header = self.buf.split_to(len).freeze();
                        self.buf_pos = len as u64;
                        self.header = Some((header, sync));
                    }
                    None => {
                        if !self.object.read_more(&mut self.buf, 0).await? {
                            return Err(self.corrupt(0, "the Avro file header is truncated"));
                        }
                    }
                }
                continue;
            };
            // Whole blocks at the front of the buffer, up to about AVRO_DECODE_BYTES.
            let mut end = 0;
            while let Some(len) = avro_block(&self.buf[end..], &sync)
                .map_err(|e| self.corrupt(self.buf_pos + end as u64, e))?
            {
                end += len;
                if end >= AVRO_DECODE_BYTES {
                    break;
                }
            }
            if end == 0 {
                if self.object.read_more(&mut self.buf, 0).await? {
                    continue;
                }
                if self.buf.is_empty() {
                    check_crc(&self.object, self.expected_crc)?;
                    return Ok(None);
                }
                return Err(self.corrupt(
                    self.buf_pos,
                    format!(
                        "the last block is truncated ({} bytes left)",
                        self.buf.len()
                    ),
                ));
            }
            let at = self.buf_pos;
            let blocks = self.buf.split_to(end);
            self.buf_pos += end as u64;
            let mut file = Vec::with_capacity(header.len() + end);
            file.extend_from_slice(&header);
            file.extend_from_slice(&blocks);
            let name = self.object.name();
            let records = AvroRecords::new(&file[..])
                .map_err(|e| self.corrupt(at, inner(e)))?
                .map(|r| {
                    r.map_err(|e| self.corrupt(at, inner(e)))
                        .and_then(|r| own_record(&name, r, &self.topic, self.partition))
                })
                .collect::<Result<Vec<Record>>>()?;
            self.pending.extend(records);
        }
    }
}

/// Reads the records of a Parquet segment: the whole object is read (in ranged reads,
/// CRC-32C checked), then decoded 8192 rows at a time.
pub struct ParquetReader {
    object: ChunkedObject,
    topic: Arc<str>,
    partition: i32,
    expected_crc: Option<u32>,
    records: Option<std::iter::Peekable<ParquetRecords>>,
}

impl ParquetReader {
    /// Reads `object`, a segment of `topic`/`partition`; its CRC-32C must be
    /// `expected_crc` when given.
    pub fn new(
        object: ChunkedObject,
        topic: Arc<str>,
        partition: i32,
        expected_crc: Option<u32>,
    ) -> Self {
        ParquetReader {
            object,
            topic,
            partition,
            expected_crc,
            records: None,
        }
    }

    /// The underlying object.
    pub fn object(&self) -> &ChunkedObject {
        &self.object
    }

    /// Whether the next record can be had without reading storage.
    pub fn has_buffered_record(&mut self) -> bool {
        self.records.as_mut().is_some_and(|r| r.peek().is_some())
    }

    /// The next record, `None` at the end of the object.
    pub async fn next_record(&mut self) -> Result<Option<Record>> {
        if self.records.is_none() {
            let mut buf = BytesMut::new();
            while self.object.read_more(&mut buf, 0).await? {}
            check_crc(&self.object, self.expected_crc)?;
            let records = ParquetRecords::new(buf.freeze())
                .map_err(|e| Error::Corrupt(format!("{}: {}", self.object.name(), inner(e))))?;
            self.records = Some(records.peekable());
        }
        let name = self.object.name();
        match self.records.as_mut().and_then(Iterator::next) {
            None => Ok(None),
            Some(Err(e)) => Err(Error::Corrupt(format!("{name}: {}", inner(e)))),
            Some(Ok(r)) => own_record(&name, r, &self.topic, self.partition).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_formats::avro::{AvroCodec, AvroOptions};
    use ferry_formats::parquet::ParquetOptions;

    fn records(topic: &Arc<str>, n: i64) -> Vec<Record> {
        (0..n)
            .map(|i| {
                let mut r = Record::new(
                    topic.clone(),
                    2,
                    100 + i,
                    (i % 5 != 0).then(|| Bytes::from(vec![b'v'; (i as usize * 37) % 3000])),
                );
                r.timestamp = 1_700_000_000_000 + i;
                r.key = (i % 3 != 0).then(|| Bytes::from(format!("k{i}")));
                r
            })
            .collect()
    }

    async fn put(name: &str, bytes: Vec<u8>) -> (ChunkedObject, u32) {
        let storage =
            Storage::from_uri(&format!("memory://seg-{name}-{}", std::process::id())).unwrap();
        let crc = crc32c::crc32c(&bytes);
        let size = bytes.len() as u64;
        storage.write(name, bytes).await.unwrap();
        // Small chunks: blocks and the header straddle reads.
        (ChunkedObject::new(storage, name, size, 1000), crc)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn avro_segments_stream_block_by_block() {
        rt().block_on(async {
            let topic: Arc<str> = Arc::from("t");
            let want = records(&topic, 500);
            for codec in [
                AvroCodec::Null,
                AvroCodec::Deflate,
                AvroCodec::Snappy,
                AvroCodec::Zstd,
            ] {
                let opts = AvroOptions {
                    codec,
                    block_bytes: ferry_core::ByteSize(4096),
                };
                let file = ferry_formats::avro::encode(&opts, "t", 2, 100, &want).unwrap();
                let (object, crc) = put(&format!("a-{}.avro", codec.as_str()), file).await;
                let mut r = AvroReader::new(object, topic.clone(), 2, Some(crc));
                let mut got = Vec::new();
                while let Some(rec) = r.next_record().await.unwrap() {
                    got.push(rec);
                }
                assert_eq!(got.len(), want.len());
                for (a, b) in got.iter().zip(&want) {
                    assert_eq!(
                        (a.offset, a.timestamp, &a.key, &a.value),
                        (b.offset, b.timestamp, &b.key, &b.value)
                    );
                }
            }
        });
    }

    #[test]
    fn avro_damage_and_wrong_partition_are_errors() {
        rt().block_on(async {
            let topic: Arc<str> = Arc::from("t");
            let file = ferry_formats::avro::encode(
                &AvroOptions::default(),
                "t",
                2,
                100,
                &records(&topic, 50),
            )
            .unwrap();
            let (object, crc) = put("cut.avro", file[..file.len() - 5].to_vec()).await;
            let mut r = AvroReader::new(object, topic.clone(), 2, Some(crc));
            let mut res = Ok(None);
            for _ in 0..100 {
                res = r.next_record().await;
                if !matches!(res, Ok(Some(_))) {
                    break;
                }
            }
            assert!(matches!(res, Err(Error::Corrupt(_))), "{res:?}");
            let (object, crc) = put("other.avro", file.clone()).await;
            let mut r = AvroReader::new(object, topic.clone(), 3, Some(crc));
            assert!(r
                .next_record()
                .await
                .unwrap_err()
                .to_string()
                .contains("in a segment of t/3"));
            let (object, _) = put("crc.avro", file).await;
            let mut r = AvroReader::new(object, topic.clone(), 2, Some(1));
            let mut res = Ok(None);
            for _ in 0..100 {
                res = r.next_record().await;
                if !matches!(res, Ok(Some(_))) {
                    break;
                }
            }
            assert!(res.unwrap_err().to_string().contains("CRC-32C"));
        });
    }

    #[test]
    fn parquet_segments_read_back() {
        rt().block_on(async {
            let topic: Arc<str> = Arc::from("t");
            let want = records(&topic, 300);
            let file =
                ferry_formats::parquet::encode(&ParquetOptions::default(), "t", 2, 100, &want)
                    .unwrap();
            let (object, crc) = put("p.parquet", file).await;
            let mut r = ParquetReader::new(object, topic.clone(), 2, Some(crc));
            assert!(!r.has_buffered_record());
            let mut got = Vec::new();
            while let Some(rec) = r.next_record().await.unwrap() {
                got.push(rec);
            }
            assert_eq!(got.len(), 300);
            assert_eq!(got[299].offset, 399);
            assert_eq!(got[7].value, want[7].value);
            assert!(Arc::ptr_eq(&got[0].topic, &topic));
        });
    }

    /// Seals `plain` as the object `name` in envelope chunks of `chunk` bytes.
    async fn seal(keys: &dyn KeyProvider, name: &str, plain: &[u8], chunk: u32) -> Vec<u8> {
        let mut s = ferry_core::encryption::Sealer::with_chunk_size(keys, name, chunk)
            .await
            .unwrap();
        let mut out = s.push(plain).unwrap();
        out.extend(s.finish().unwrap());
        out
    }

    /// Every batch of a raw object, or the first error.
    async fn batches_of(object: ChunkedObject) -> Result<Vec<RawBatch>> {
        let mut r = RawReader::new(object);
        let mut out = Vec::new();
        while let Some(b) = r.next_batch().await? {
            out.push(b);
        }
        Ok(out)
    }

    #[test]
    fn encrypted_segments_decrypt_in_ranged_reads_and_damage_is_caught() {
        rt().block_on(async {
            let topic: Arc<str> = Arc::from("t");
            let plain = ferry_formats::raw::encode_records(&records(&topic, 200)).unwrap();
            let keys: Arc<dyn KeyProvider> = Arc::new(
                ferry_core::encryption::StaticKeys::from_keys(vec![("test key".into(), [5; 32])])
                    .unwrap(),
            );
            let name = "topics/t/2/00000000000000000100.log";
            let stored = seal(keys.as_ref(), name, &plain, 1000).await;
            let storage =
                Storage::from_uri(&format!("memory://enc-seg-{}", std::process::id())).unwrap();
            let open = |bytes: Vec<u8>, read: u64| {
                let storage = storage.clone();
                let keys = keys.clone();
                async move {
                    let size = bytes.len() as u64;
                    storage.write(name, bytes).await.unwrap();
                    ChunkedObject::new(storage, name, size, read).decrypting(keys)
                }
            };
            let want = verify_batches(&plain).unwrap();
            // Reads smaller and larger than an envelope chunk, straddling its boundaries.
            for read in [12, 333, 1016, 4096, 1 << 20] {
                let got = batches_of(open(stored.clone(), read).await).await.unwrap();
                let bytes: Vec<u8> = got.iter().flat_map(|b| b.bytes.to_vec()).collect();
                assert_eq!(bytes, plain, "read chunk {read}");
                assert_eq!(got.len() as u64, want.batches);
            }
            let object = open(stored.clone(), 333).await;
            let mut reader = RawReader::new(object);
            while reader.next_batch().await.unwrap().is_some() {}
            assert_eq!(reader.object().crc32c(), crc32c::crc32c(&stored));
            assert!(reader.object().at_end());

            let header = EnvelopeHeader::parse(&stored).unwrap().unwrap().len();
            let full = 1000 + TAG_LEN;
            let mut flipped = stored.clone();
            flipped[header + full + 10] ^= 0x40;
            let e = batches_of(open(flipped, 333).await).await.unwrap_err();
            assert!(
                e.to_string().contains("chunk 1 fails authentication"),
                "{e}"
            );
            let cut = stored[..header + 2 * full].to_vec();
            let e = batches_of(open(cut, 333).await).await.unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
            let mut swapped = stored.clone();
            swapped[header..header + full]
                .copy_from_slice(&stored[header + full..header + 2 * full]);
            swapped[header + full..header + 2 * full]
                .copy_from_slice(&stored[header..header + full]);
            assert!(batches_of(open(swapped, 4096).await).await.is_err());
            // A plain segment given to the decrypting reader is refused, not misread.
            let e = batches_of(open(plain.to_vec(), 4096).await)
                .await
                .unwrap_err();
            assert!(e.to_string().contains("FERRYENC"), "{e}");
        });
    }
}
