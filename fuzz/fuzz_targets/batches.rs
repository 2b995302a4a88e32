//! Record-batch parsing on arbitrary bytes: scanning, CRC verification and decoding must
//! return errors, never panic, and agree with each other.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    let topic: Arc<str> = Arc::from("fuzz");
    let scanned = ferry_kafka::scan_batches(&bytes);
    let _ = ferry_kafka::verify_batches(data);
    if let Ok(records) = ferry_kafka::decode_batches(&bytes, &topic, 0) {
        // Decoding succeeded, so every whole batch parsed: the scan agrees on the count.
        let s = scanned.expect("scan fails where decode succeeds");
        let count = s.map_or(0, |s| s.record_count);
        assert_eq!(records.len() as u64, count);
        let _ = ferry_kafka::records_from(records, 5);
    }
});
