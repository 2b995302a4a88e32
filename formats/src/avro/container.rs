//! An Avro object container file, written block by block: the header once, then each
//! block (record count, byte length, compressed records, sync marker) as it fills.
//!
//! Why not apache-avro's `Writer`: it reserves a whole block (`block_bytes`, 1 MiB by
//! default) for every writer it makes. A storage sink keeps one encoder per open segment,
//! so a snapshot of 6,000 partitions held thousands of those reservations, and the pages
//! the records touched in them stayed with the process after they were freed: 1.3 GB
//! peak RSS to export 1 GB (heaptrack: the peak was `Writer` blocks). Here a block grows
//! with what it holds and is released once written, so an open segment costs what it
//! buffers, which the sink's `max_buffered_bytes` bounds. apache-avro still encodes every
//! datum and compresses every block, and writes the header.

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::types::Value;
use apache_avro::{Codec, GenericSingleObjectWriter, Schema, Writer};
use bytes::Bytes;
use ferry_core::{Error, Result};
use serde::Serialize;
use std::hash::BuildHasher;

use super::avro_error;

/// One container file being written: its header and complete blocks wait in `out` until
/// [`Container::take`]; the block being filled is `block`.
pub(super) struct Container {
    schema: &'static Schema,
    codec: Codec,
    /// A block is written once its encoded records reach this many bytes.
    block_size: usize,
    marker: [u8; 16],
    /// Encoded records of the block being filled.
    block: Vec<u8>,
    /// Records in `block`.
    count: usize,
    /// Header and blocks not taken yet.
    out: Vec<u8>,
    /// Encodes [`Value`]s against `schema`, resolved once (made on first use).
    values: Option<ValueEncoder>,
}

/// apache-avro's validated encoding of [`Value`]s with a schema resolved once. Its
/// single-object writer is the public API that does this; it puts the single-object
/// header (magic and fingerprint) before each datum, which is cut off again.
struct ValueEncoder {
    writer: GenericSingleObjectWriter,
    prefix: usize,
}

impl Container {
    /// Starts a file of `schema`: its header (with `metadata` as user metadata) is the
    /// first output.
    pub(super) fn start(
        schema: &'static Schema,
        codec: Codec,
        block_size: usize,
        metadata: &[(&'static str, String)],
    ) -> Result<Self> {
        let marker = sync_marker();
        let mut header = Writer::builder()
            .schema(schema)
            .writer(Vec::new())
            .codec(codec)
            .block_size(1)
            .marker(marker)
            .build();
        for (k, v) in metadata {
            header
                .add_user_metadata(k.to_string(), v)
                .map_err(avro_error)?;
        }
        // With no record appended, this writes the header only.
        let out = header.into_inner().map_err(avro_error)?;
        Ok(Container {
            schema,
            codec,
            block_size,
            marker,
            block: Vec::new(),
            count: 0,
            out,
            values: None,
        })
    }

    /// Appends a datum serialized with serde (the envelope without decoded values, whose
    /// schema defines every type inline, so no names need resolving).
    pub(super) fn append_ser<S: Serialize>(&mut self, datum: &S) -> Result<()> {
        let start = self.block.len();
        if let Err(e) = apache_avro::write_avro_datum_ref(self.schema, datum, &mut self.block) {
            // Serde writes as it goes: a datum that failed half-way leaves no bytes behind.
            self.block.truncate(start);
            return Err(avro_error(e));
        }
        self.appended()
    }

    /// Appends a [`Value`], validated against the schema: one that does not fit is
    /// reported through `misfit` (with apache-avro's reason) and leaves nothing behind.
    pub(super) fn append_value(
        &mut self,
        value: &Value,
        misfit: impl FnOnce(apache_avro::Error) -> Error,
    ) -> Result<()> {
        let values = match &mut self.values {
            Some(v) => v,
            None => {
                let writer = GenericSingleObjectWriter::new_with_capacity(self.schema, 1024)
                    .map_err(avro_error)?;
                let prefix = RabinFingerprintHeader::from_schema(self.schema)
                    .build_header()
                    .len();
                self.values.insert(ValueEncoder { writer, prefix })
            }
        };
        let start = self.block.len();
        values
            .writer
            .write_value_ref(value, &mut self.block)
            .map_err(misfit)?;
        self.block.drain(start..start + values.prefix);
        self.appended()
    }

    fn appended(&mut self) -> Result<()> {
        self.count += 1;
        if self.block.len() >= self.block_size {
            self.write_block()?;
            // This segment fills blocks: room for the next one at once, instead of
            // growing to it by doubling (an idle segment's next block starts empty).
            self.block = Vec::with_capacity(self.block_size + self.block_size / 16);
        }
        Ok(())
    }

    /// Moves the block being filled, compressed and framed, to the output.
    fn write_block(&mut self) -> Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        // Taken, not cleared: a segment that is finished or idle keeps no block.
        let mut data = std::mem::take(&mut self.block);
        self.codec.compress(&mut data).map_err(avro_error)?;
        write_long(&mut self.out, self.count as i64);
        write_long(&mut self.out, data.len() as i64);
        self.out.extend_from_slice(&data);
        self.out.extend_from_slice(&self.marker);
        self.count = 0;
        Ok(())
    }

    /// Takes what is written so far (the header, complete blocks).
    pub(super) fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.out))
    }

    /// Writes the last block and takes the rest of the file.
    pub(super) fn finish(&mut self) -> Result<Bytes> {
        self.write_block()?;
        self.block = Vec::new();
        Ok(self.take())
    }

    /// Bytes held for the block being filled (its allocation, not only its records).
    pub(super) fn buffered(&self) -> usize {
        self.block.capacity()
    }
}

/// An Avro `long`: zig-zag, then 7 bits a byte, least significant first.
fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A random 16-byte sync marker (from the standard library's randomly keyed hasher: the
/// marker only has to be unlikely to occur in the data).
fn sync_marker() -> [u8; 16] {
    let hasher = std::collections::hash_map::RandomState::new();
    let mut marker = [0u8; 16];
    marker[..8].copy_from_slice(&hasher.hash_one(1u8).to_le_bytes());
    marker[8..].copy_from_slice(&hasher.hash_one(2u8).to_le_bytes());
    marker
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_are_zig_zag_varints() {
        let enc = |n: i64| {
            let mut v = Vec::new();
            write_long(&mut v, n);
            v
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(-1), [1]);
        assert_eq!(enc(1), [2]);
        assert_eq!(enc(63), [0x7e]);
        assert_eq!(enc(64), [0x80, 0x01]);
        assert_eq!(enc(-65), [0x81, 0x01]);
        for n in [0, 1, -1, 300, -300, i64::MAX, i64::MIN, 1 << 40] {
            let want = apache_avro::to_avro_datum(&Schema::Long, Value::Long(n)).unwrap();
            assert_eq!(enc(n), want, "{n}");
        }
    }

    #[test]
    fn a_datum_that_fails_leaves_nothing_in_the_block() {
        let schema: &'static Schema = Box::leak(Box::new(Schema::parse_str(
            r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}, {"name": "b", "type": "long"}]}"#,
        ).unwrap()));
        #[derive(Serialize)]
        struct Good<'a> {
            a: &'a str,
            b: i64,
        }
        #[derive(Serialize)]
        struct Bad<'a> {
            a: &'a str,
            b: &'a str,
        }
        let mut c = Container::start(schema, Codec::Null, 1 << 20, &[]).unwrap();
        c.append_ser(&Good { a: "x", b: 1 }).unwrap();
        let held = c.block.len();
        c.append_ser(&Bad {
            a: "y",
            b: "not a long",
        })
        .expect_err("a string is not a long");
        assert_eq!(
            c.block.len(),
            held,
            "the failed datum's first field is gone too"
        );
        assert_eq!(c.count, 1);
    }

    #[test]
    fn markers_differ_between_files() {
        assert_ne!(sync_marker(), sync_marker());
    }

    #[test]
    fn blocks_are_framed_and_a_finished_file_keeps_no_buffer() {
        let schema: &'static Schema = Box::leak(Box::new(Schema::String));
        let mut c = Container::start(schema, Codec::Null, 64, &[]).unwrap();
        assert!(c.take().starts_with(b"Obj\x01"));
        let misfit = |e: apache_avro::Error| Error::invalid_data(e.to_string());
        c.append_value(&Value::String("x".repeat(10)), misfit)
            .unwrap();
        assert!(c.buffered() > 0);
        assert!(c.take().is_empty(), "no block is complete yet");
        c.append_value(&Value::String("y".repeat(100)), misfit)
            .unwrap();
        assert_eq!(
            c.buffered(),
            68,
            "the full block was written and room made for the next"
        );
        let block = c.take();
        assert_eq!(block[0], 4, "two records");
        assert!(block.ends_with(&c.marker));
        let e = c
            .append_value(&Value::Int(1), misfit)
            .expect_err("an int is not a string");
        assert!(matches!(e, Error::InvalidData(_)), "{e}");
        assert_eq!(c.count, 0, "a value that does not fit is not counted");
        assert!(c.finish().unwrap().is_empty(), "nothing left to write");
        assert_eq!(c.buffered(), 0, "a finished file keeps no block");
    }
}
