//! The on-storage envelope of an encrypted object (segment, dead-letter file).
//!
//! ```text
//! header
//!   magic        8 bytes   "FERRYENC"
//!   version      1 byte    1
//!   chunk_size   4 bytes   plaintext bytes per chunk, big-endian (65536)
//!   nonce_prefix 7 bytes   random
//!   key_id_len   1 byte    K
//!   key_id       K bytes   id of the key-encryption key (ASCII)
//!   wrapped_len  2 bytes   W, big-endian
//!   wrapped_key  W bytes   the object's data key, wrapped by the key provider
//! chunks, until the end of the object
//!   AES-256-GCM(data key, nonce = nonce_prefix ‖ index (4 bytes BE) ‖ last (1 byte),
//!               aad = the whole header) of the next chunk_size plaintext bytes,
//!   then its 16-byte tag
//! ```
//!
//! - Every chunk holds exactly `chunk_size` plaintext bytes except the last, which holds 0
//!   to `chunk_size` and is sealed with `last = 1`; an empty object is one empty last chunk.
//!   So chunk `i` starts at `header_len + i × (chunk_size + 16)`: a reader can stream the
//!   object in ranged reads and decrypt chunk by chunk with bounded memory.
//! - The chunk index and the last flag are in the nonce (the STREAM construction): a
//!   reordered, dropped, repeated or appended chunk fails authentication, and so does an
//!   object cut at a chunk boundary (its new last chunk was sealed with `last = 0`).
//! - The header is the additional data of every chunk, so a changed key id, chunk size or
//!   wrapped key fails too. The data key is fresh per object and is wrapped with the
//!   object's name as context: an object copied under another name does not open.
//! - Nonces never repeat: a data key seals one object, and each chunk of it has its own
//!   index. The random prefix adds margin should a provider ever hand out a key twice.

use super::keys::{DataKey, KeyProvider};
use crate::error::{Error, Result};
use ring::aead::{Aad, LessSafeKey, Nonce, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// First bytes of an encrypted object.
pub const MAGIC: &[u8; 8] = b"FERRYENC";
/// Envelope version written by this build.
pub const VERSION: u8 = 1;
/// Name of the scheme in manifests.
pub const SCHEME: &str = "ferry-aes-256-gcm-chunked-v1";
/// Plaintext bytes per chunk written by this build: small enough that a writer buffers
/// little per open segment, large enough that the 16-byte tags cost 0.02%.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// Bytes of an AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Largest chunk size a reader accepts (a damaged header must not make it allocate much).
const MAX_CHUNK_SIZE: u32 = 16 << 20;
const PREFIX_LEN: usize = 7;
/// Magic, version, chunk size, nonce prefix, key id length.
const FIXED_LEN: usize = 8 + 1 + 4 + PREFIX_LEN + 1;

/// A parsed envelope header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// Id of the key-encryption key the data key is wrapped with.
    pub key_id: String,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    prefix: [u8; PREFIX_LEN],
    wrapped: Vec<u8>,
    /// The header as stored (the additional data of every chunk).
    encoded: Vec<u8>,
}

impl EnvelopeHeader {
    fn new(
        key_id: &str,
        chunk_size: u32,
        prefix: [u8; PREFIX_LEN],
        wrapped: Vec<u8>,
    ) -> Result<Self> {
        let id_len = u8::try_from(key_id.len())
            .map_err(|_| Error::internal("a key id is longer than 255 bytes"))?;
        let wrapped_len = u16::try_from(wrapped.len())
            .map_err(|_| Error::internal("a wrapped data key is longer than 65535 bytes"))?;
        let mut encoded = Vec::with_capacity(FIXED_LEN + key_id.len() + 2 + wrapped.len());
        encoded.extend_from_slice(MAGIC);
        encoded.push(VERSION);
        encoded.extend_from_slice(&chunk_size.to_be_bytes());
        encoded.extend_from_slice(&prefix);
        encoded.push(id_len);
        encoded.extend_from_slice(key_id.as_bytes());
        encoded.extend_from_slice(&wrapped_len.to_be_bytes());
        encoded.extend_from_slice(&wrapped);
        Ok(EnvelopeHeader {
            key_id: key_id.to_string(),
            chunk_size,
            prefix,
            wrapped,
            encoded,
        })
    }

    /// Whether `b` starts like an encrypted object (the magic).
    pub fn is_encrypted(b: &[u8]) -> bool {
        b.starts_with(MAGIC)
    }

    /// Parses the header at the start of `b`: `Ok(None)` when `b` ends inside it; an error
    /// (the reason) when it is not a header this build reads.
    pub fn parse(b: &[u8]) -> std::result::Result<Option<EnvelopeHeader>, String> {
        let magic_seen = b.len().min(MAGIC.len());
        if b[..magic_seen] != MAGIC[..magic_seen] {
            return Err("not an encrypted Ferry object (no FERRYENC magic)".into());
        }
        if b.len() < FIXED_LEN {
            return Ok(None);
        }
        if b[8] != VERSION {
            return Err(format!(
                "encryption envelope version {} (this build reads version {VERSION}): upgrade Ferry",
                b[8]
            ));
        }
        let chunk_size = u32::from_be_bytes([b[9], b[10], b[11], b[12]]);
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(format!(
                "chunk size {chunk_size} in the header is out of range (damaged header)"
            ));
        }
        let mut prefix = [0u8; PREFIX_LEN];
        prefix.copy_from_slice(&b[13..13 + PREFIX_LEN]);
        let id_len = usize::from(b[FIXED_LEN - 1]);
        let id_end = FIXED_LEN + id_len;
        if b.len() < id_end + 2 {
            return Ok(None);
        }
        let key_id = std::str::from_utf8(&b[FIXED_LEN..id_end])
            .map_err(|_| "the key id in the header is not text (damaged header)".to_string())?
            .to_string();
        let wrapped_len = usize::from(u16::from_be_bytes([b[id_end], b[id_end + 1]]));
        let end = id_end + 2 + wrapped_len;
        if b.len() < end {
            return Ok(None);
        }
        Ok(Some(EnvelopeHeader {
            key_id,
            chunk_size,
            prefix,
            wrapped: b[id_end + 2..end].to_vec(),
            encoded: b[..end].to_vec(),
        }))
    }

    /// Bytes of the header as stored.
    pub fn len(&self) -> usize {
        self.encoded.len()
    }

    /// Always false: a header has a magic.
    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    /// Stored bytes of a full chunk (plaintext and tag).
    pub fn stored_chunk_len(&self) -> u64 {
        u64::from(self.chunk_size) + TAG_LEN as u64
    }

    /// The plaintext size of an object of `stored` bytes with this header, or why that size
    /// cannot be one (checks the chunk structure without the key).
    pub fn plain_len(&self, stored: u64) -> std::result::Result<u64, String> {
        let body = stored
            .checked_sub(self.len() as u64)
            .ok_or_else(|| format!("{stored} bytes cannot hold its own header"))?;
        if body < TAG_LEN as u64 {
            return Err("no last chunk: the object was cut short".into());
        }
        let full = self.stored_chunk_len();
        // Every chunk but the last is full; the last holds 0..=chunk_size bytes.
        let chunks = body.div_ceil(full).max(1);
        Ok(body - chunks * TAG_LEN as u64)
    }

    fn nonce(&self, index: u32, last: bool) -> Nonce {
        let mut n = [0u8; NONCE_LEN];
        n[..PREFIX_LEN].copy_from_slice(&self.prefix);
        n[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&index.to_be_bytes());
        n[NONCE_LEN - 1] = u8::from(last);
        Nonce::assume_unique_for_key(n)
    }
}

/// Encrypts one object as a stream: [`Sealer::push`] plaintext as it comes and store what
/// it returns, then store what [`Sealer::finish`] returns. Buffers at most one chunk.
pub struct Sealer {
    header: EnvelopeHeader,
    key: LessSafeKey,
    buf: Vec<u8>,
    index: u32,
    header_written: bool,
    plain_bytes: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.header.key_id)
            .field("plain_bytes", &self.plain_bytes)
            .finish()
    }
}

impl Sealer {
    /// A sealer for the object named `context` (its key relative to the storage root), with
    /// a fresh data key wrapped by `keys`' current key.
    pub async fn new(keys: &dyn KeyProvider, context: &str) -> Result<Sealer> {
        Self::with_chunk_size(keys, context, DEFAULT_CHUNK_SIZE).await
    }

    /// As [`Sealer::new`] with another chunk size (tests use small ones).
    pub async fn with_chunk_size(
        keys: &dyn KeyProvider,
        context: &str,
        chunk_size: u32,
    ) -> Result<Sealer> {
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(Error::internal(format!(
                "chunk size {chunk_size} out of range"
            )));
        }
        let data_key = DataKey::generate()?;
        let wrapped = keys.wrap(&data_key, context.as_bytes()).await?;
        let mut prefix = [0u8; PREFIX_LEN];
        SystemRandom::new()
            .fill(&mut prefix)
            .map_err(|_| Error::internal("the system's random number generator failed"))?;
        let header = EnvelopeHeader::new(keys.current_key_id(), chunk_size, prefix, wrapped)?;
        Ok(Sealer {
            header,
            key: data_key.aead_key()?,
            buf: Vec::new(),
            index: 0,
            header_written: false,
            plain_bytes: 0,
        })
    }

    /// Id of the key-encryption key.
    pub fn key_id(&self) -> &str {
        &self.header.key_id
    }

    /// Plaintext bytes pushed so far.
    pub fn plain_bytes(&self) -> u64 {
        self.plain_bytes
    }

    /// Plaintext bytes held back (at most one chunk, the one that may be the last).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes `data`; returns the stored bytes now ready (the header first, then every full
    /// chunk that is certainly not the last).
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        if !self.header_written {
            out.extend_from_slice(&self.header.encoded);
            self.header_written = true;
        }
        self.plain_bytes += data.len() as u64;
        self.buf.extend_from_slice(data);
        let chunk = self.header.chunk_size as usize;
        let mut start = 0;
        // Strictly more than a chunk: the last full chunk may turn out to be the last one.
        while self.buf.len() - start > chunk {
            out.reserve(chunk + TAG_LEN);
            let pos = out.len();
            out.extend_from_slice(&self.buf[start..start + chunk]);
            self.seal_into(&mut out, pos, false)?;
            start += chunk;
        }
        self.buf.drain(..start);
        Ok(out)
    }

    /// Seals what is left as the last chunk; returns the stored bytes still to write.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.header.len() + self.buf.len() + TAG_LEN);
        if !self.header_written {
            out.extend_from_slice(&self.header.encoded);
        }
        let pos = out.len();
        out.extend_from_slice(&self.buf);
        self.seal_into(&mut out, pos, true)?;
        Ok(out)
    }

    /// Seals `out[pos..]` in place as chunk `self.index` and appends its tag.
    fn seal_into(&mut self, out: &mut Vec<u8>, pos: usize, last: bool) -> Result<()> {
        let tag = self
            .key
            .seal_in_place_separate_tag(
                self.header.nonce(self.index, last),
                Aad::from(self.header.encoded.as_slice()),
                &mut out[pos..],
            )
            .map_err(|_| Error::internal("sealing a chunk failed"))?;
        out.extend_from_slice(tag.as_ref());
        self.index = self.index.checked_add(1).ok_or_else(|| {
            Error::invalid_data("an object too large to encrypt (over 2^32 chunks)")
        })?;
        Ok(())
    }
}

/// Decrypts one object chunk by chunk (see [`Opener::open_chunk`]).
pub struct Opener {
    header: EnvelopeHeader,
    key: LessSafeKey,
    index: u32,
    finished: bool,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("key_id", &self.header.key_id)
            .field("index", &self.index)
            .finish()
    }
}

impl Opener {
    /// An opener of the object named `context` whose header is `header`: unwraps its data
    /// key with `keys`. A key id `keys` does not hold is a config error naming it.
    pub async fn new(
        keys: &dyn KeyProvider,
        header: EnvelopeHeader,
        context: &str,
    ) -> Result<Opener> {
        let data_key = keys
            .unwrap(&header.key_id, &header.wrapped, context.as_bytes())
            .await?;
        Ok(Opener {
            key: data_key.aead_key()?,
            header,
            index: 0,
            finished: false,
        })
    }

    /// The header.
    pub fn header(&self) -> &EnvelopeHeader {
        &self.header
    }

    /// Whether the last chunk was opened.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Decrypts the next chunk in place (`stored`: its ciphertext and tag, `last`: whether
    /// it ends the object) and returns its plaintext, a prefix of `stored`.
    pub fn open_chunk<'a>(&mut self, stored: &'a mut [u8], last: bool) -> Result<&'a [u8]> {
        let index = self.index;
        if self.finished {
            return Err(Error::Corrupt(
                "bytes follow the last chunk (the object was changed)".into(),
            ));
        }
        if stored.len() < TAG_LEN || stored.len() as u64 > self.header.stored_chunk_len() {
            return Err(Error::Corrupt(format!(
                "chunk {index} is {} bytes, not a chunk of this object (damaged or cut short)",
                stored.len()
            )));
        }
        let plain = self
            .key
            .open_in_place(
                self.header.nonce(index, last),
                Aad::from(self.header.encoded.as_slice()),
                stored,
            )
            .map_err(|_| {
                Error::Corrupt(format!(
                    "chunk {index} fails authentication: the object was changed, cut short, or its chunks reordered"
                ))
            })?;
        self.index = index.wrapping_add(1);
        self.finished = last;
        Ok(plain)
    }
}

/// Encrypts a whole object at once (small objects: dead-letter files).
pub async fn seal_bytes(keys: &dyn KeyProvider, context: &str, plain: &[u8]) -> Result<Vec<u8>> {
    let mut s = Sealer::new(keys, context).await?;
    let mut out = s.push(plain)?;
    out.extend(s.finish()?);
    Ok(out)
}

/// Decrypts a whole object at once; errors name `context`.
pub async fn open_bytes(keys: &dyn KeyProvider, context: &str, stored: &[u8]) -> Result<Vec<u8>> {
    let header = match EnvelopeHeader::parse(stored) {
        Ok(Some(h)) => h,
        Ok(None) => {
            return Err(Error::Corrupt(format!(
                "{context}: the encryption header is cut short"
            )))
        }
        Err(e) => return Err(Error::Corrupt(format!("{context}: {e}"))),
    };
    let full = header.stored_chunk_len() as usize;
    let mut pos = header.len();
    let mut opener = Opener::new(keys, header, context).await?;
    let mut out = Vec::with_capacity(stored.len());
    loop {
        let rest = stored.len() - pos;
        let this = rest.min(full);
        let last = this == rest;
        let mut chunk = stored[pos..pos + this].to_vec();
        let plain = opener
            .open_chunk(&mut chunk, last)
            .map_err(|e| Error::Corrupt(format!("{context}: {}", corrupt_text(&e))))?;
        out.extend_from_slice(plain);
        pos += this;
        if last {
            return Ok(out);
        }
    }
}

/// The message of a corrupt-data error without its kind prefix.
fn corrupt_text(e: &Error) -> String {
    match e {
        Error::Corrupt(m) => m.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::{StaticKeys, KEY_LEN};
    use super::*;

    fn keys(n: u8) -> StaticKeys {
        StaticKeys::from_keys(vec![(format!("key {n}"), [n; KEY_LEN])]).unwrap()
    }

    /// Seals `plain` in pushes of `step` bytes with chunks of `chunk` bytes.
    async fn seal(k: &StaticKeys, plain: &[u8], chunk: u32, step: usize) -> Vec<u8> {
        let mut s = Sealer::with_chunk_size(k, "obj", chunk).await.unwrap();
        let mut out = Vec::new();
        for piece in plain.chunks(step.max(1)) {
            out.extend(s.push(piece).unwrap());
        }
        assert!(s.buffered() <= chunk as usize);
        out.extend(s.finish().unwrap());
        out
    }

    fn header_len(stored: &[u8]) -> usize {
        EnvelopeHeader::parse(stored).unwrap().unwrap().len()
    }

    #[tokio::test]
    async fn round_trips_at_every_size_around_chunk_boundaries() {
        let k = keys(7);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 64, 999] {
            for step in [1, 7, 16, 100] {
                let stored = seal(&k, &data[..len], 16, step).await;
                let h = EnvelopeHeader::parse(&stored).unwrap().unwrap();
                assert_eq!(h.plain_len(stored.len() as u64).unwrap(), len as u64);
                let back = open_bytes(&k, "obj", &stored).await.unwrap();
                assert_eq!(back, &data[..len], "len {len} step {step}");
                // No plaintext run of 8 bytes survives in the stored bytes.
                if len >= 32 {
                    assert!(!stored.windows(8).any(|w| w == &data[8..16]));
                }
            }
        }
    }

    #[tokio::test]
    async fn tampering_truncating_reordering_and_appending_are_caught() {
        let k = keys(7);
        let data = vec![42u8; 100];
        let stored = seal(&k, &data, 16, 10).await;
        let h = header_len(&stored);
        let full = 16 + TAG_LEN;
        // A flipped byte anywhere: in the header, in a chunk, in a tag.
        for at in [3, 10, h - 1, h, h + 20, stored.len() - 1] {
            let mut bad = stored.clone();
            bad[at] ^= 0x01;
            assert!(open_bytes(&k, "obj", &bad).await.is_err(), "flip at {at}");
        }
        // Cut at a chunk boundary (the new last chunk was not sealed as last) and inside one.
        for cut in [h + full, h + 2 * full, stored.len() - 1, h] {
            assert!(
                open_bytes(&k, "obj", &stored[..cut]).await.is_err(),
                "cut at {cut}"
            );
        }
        // Two chunks swapped.
        let mut swapped = stored.clone();
        let (a, b) = (h, h + full);
        let first = stored[a..a + full].to_vec();
        swapped.copy_within(b..b + full, a);
        swapped[b..b + full].copy_from_slice(&first);
        let e = open_bytes(&k, "obj", &swapped).await.unwrap_err();
        assert!(e.to_string().contains("chunk 0"), "{e}");
        // A chunk appended after the last one.
        let mut longer = stored.clone();
        longer.extend_from_slice(&stored[h..h + full]);
        assert!(open_bytes(&k, "obj", &longer).await.is_err());
        // Another object's name (moved object) and another key.
        assert!(open_bytes(&k, "other", &stored).await.is_err());
        let e = open_bytes(&keys(8), "obj", &stored).await.unwrap_err();
        assert!(e.to_string().contains(&key_id(7)), "{e}");
        // And the untouched object opens.
        assert_eq!(open_bytes(&k, "obj", &stored).await.unwrap(), data);
    }

    fn key_id(n: u8) -> String {
        super::super::keys::key_id_of(&[n; KEY_LEN])
    }

    #[test]
    fn headers_parse_incrementally_and_refuse_other_files() {
        let h = EnvelopeHeader::new("abcd", 16, [1; PREFIX_LEN], vec![9; 60]).unwrap();
        for cut in 0..h.len() {
            assert_eq!(EnvelopeHeader::parse(&h.encoded[..cut]), Ok(None), "{cut}");
        }
        assert_eq!(EnvelopeHeader::parse(&h.encoded), Ok(Some(h.clone())));
        assert!(EnvelopeHeader::parse(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00").is_err());
        let mut newer = h.encoded.clone();
        newer[8] = 2;
        assert!(EnvelopeHeader::parse(&newer)
            .unwrap_err()
            .contains("upgrade"));
        assert!(h.plain_len(h.len() as u64 + 5).is_err());
        assert_eq!(h.plain_len(h.len() as u64 + 16), Ok(0));
        assert_eq!(h.plain_len(h.len() as u64 + 32 + 20), Ok(16 + 4));
    }
}
