//! Record-batch parsing on arbitrary bytes: scanning, CRC verification and decoding must
//! return errors, never panic, and agree with each other.
//!
//! Inputs starting with a byte >= 0x80 are wrapped in a valid batch header (codec and
//! record count from the next bytes, CRC computed), so the record parser and the
//! decompressors are reached despite the CRC.
#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fn wrap(codec: u8, count: u8, attrs: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i64(100); // base offset
    b.put_i32((49 + payload.len()) as i32);
    b.put_i32(-1);
    b.put_i8(2);
    b.put_u32(0);
    b.put_i16(((codec % 5) | (attrs & 0x38)) as i16);
    b.put_i32(count as i32);
    b.put_i64(1_000);
    b.put_i64(2_000);
    b.put_i64(-1);
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i32(count as i32);
    b.put_slice(payload);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

fuzz_target!(|data: &[u8]| {
    let bytes = if data.len() >= 4 && data[0] >= 0x80 {
        wrap(data[1], data[2], data[3], &data[4..])
    } else {
        Bytes::copy_from_slice(data)
    };
    let topic: Arc<str> = Arc::from("fuzz");
    let scanned = ferry_kafka::scan_batches(&bytes);
    let _ = ferry_kafka::verify_batches(&bytes);
    if let Ok(records) = ferry_kafka::decode_batches(&bytes, &topic, 0) {
        // Decoding succeeded, so every whole batch parsed: the scan agrees on the count.
        let s = scanned.expect("scan fails where decode succeeds");
        let count = s.map_or(0, |s| s.record_count);
        assert_eq!(records.len() as u64, count);
        let _ = ferry_kafka::records_from(records, 5);
    }
});
