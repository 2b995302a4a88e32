//! A Fetch response as Ferry's client handles it: kafka-protocol decodes the response
//! (version from the first byte), then every partition's records are scanned and decoded.
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::protocol::Decodable;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let version = 4 + (data[0] % 14) as i16; // 4..=17, the versions Ferry may negotiate
    let mut body = Bytes::copy_from_slice(&data[1..]);
    let Ok(resp) = FetchResponse::decode(&mut body, version) else { return };
    let topic: Arc<str> = Arc::from("fuzz");
    for t in resp.responses {
        for p in t.partitions {
            if let Some(records) = p.records {
                if let Ok(Some(d)) = ferry_kafka::scan_batches(&records) {
                    let _ = ferry_kafka::decode_batches(&d.bytes, &topic, p.partition_index);
                }
            }
        }
    }
});
