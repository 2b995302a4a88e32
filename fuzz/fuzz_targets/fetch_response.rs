//! A Fetch response body as Ferry's client handles it: decoded by `ferry_kafka::wire`
//! (version from the first byte), then every partition's records scanned and decoded.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let version = 4 + (data[0] % 15) as i16; // 4..=18, the versions Ferry may negotiate
    let body = Bytes::copy_from_slice(&data[1..]);
    let Ok(resp) = ferry_kafka::wire::decode_fetch_response(body, version) else { return };
    let topic: Arc<str> = Arc::from("fuzz");
    for t in resp.topics {
        for p in t.partitions {
            if let Some(records) = p.records {
                if let Ok(Some(d)) = ferry_kafka::scan_batches(&records) {
                    let _ = ferry_kafka::decode_batches(&d.bytes, &topic, p.partition);
                }
            }
        }
    }
});
