//! A `raw` backup segment as a restore reads it: the object is read in ranged chunks by
//! `RawReader` (the chunk size from the first byte, so batches straddle chunk boundaries),
//! every batch's length, header and CRC checked, then its records decoded by `decode_raw`.
//! Inputs whose first byte has the high bit set get valid batch CRCs first, so the record
//! parser and the decompressors are reached.
//!
//! Checked beyond "no panic": a segment read to its end yields batches one after the other
//! from byte 0 to the last byte, and the reader's running CRC-32C is the object's.
#![no_main]

use bytes::Bytes;
use ferry_kafka_fuzz::{fix_batch_crcs, memory, put, runtime};
use ferry_sources::backup::segment::{decode_raw, ChunkedObject, RawReader};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

const KEY: &str = "topics/t/0/00000000000000000000.log";

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let chunk = 1 + u64::from(data[0] & 0x7f) * 5;
    let mut segment = data[1..].to_vec();
    if data[0] & 0x80 != 0 {
        fix_batch_crcs(&mut segment);
    }
    let segment = Bytes::from(segment);
    runtime().block_on(async {
        let storage = memory("fuzz-raw-segment");
        put(&storage, KEY, segment.clone()).await;
        let object = ChunkedObject::new(storage, KEY, segment.len() as u64, chunk);
        let mut reader = RawReader::new(object);
        let topic: Arc<str> = Arc::from("t");
        let mut next_position = 0u64;
        loop {
            match reader.next_batch().await {
                Ok(Some(batch)) => {
                    assert_eq!(batch.position, next_position, "batches are contiguous");
                    next_position += batch.bytes.len() as u64;
                    let _ = decode_raw(&reader.object().name(), &topic, 0, &batch);
                }
                Ok(None) => {
                    assert_eq!(next_position, segment.len() as u64, "read to the end");
                    assert_eq!(
                        reader.object().crc32c(),
                        crc32c::crc32c(&segment),
                        "running CRC of a segment read whole"
                    );
                    break;
                }
                Err(_) => break,
            }
        }
    });
});
