//! Batch decoding throughput per codec (MB/s of uncompressed record bytes), and the
//! header-only scan a raw backup does instead.
//!
//! `cargo bench -p ferry-kafka --bench decode`

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferry_kafka::batch::build_batch;
use ferry_kafka::{decode_batches, scan_batches, verify_batches, Compression, ProduceRecord};
use ferry_model::Header;
use std::sync::Arc;

/// 10 batches x 1000 records of ~1 KiB semi-random text (compressible like real JSON).
fn data(codec: Compression) -> (Bytes, u64) {
    let words = [
        "order",
        "id",
        "customer",
        "amount",
        "currency",
        "EUR",
        "status",
        "shipped",
        "2026-11-29",
    ];
    let mut seed = 0x9E37_79B9u64;
    let mut out = BytesMut::new();
    let mut raw = 0u64;
    for b in 0..10 {
        let recs: Vec<ProduceRecord> = (0..1000)
            .map(|i| {
                let mut v = String::with_capacity(1024);
                while v.len() < 1000 {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    v.push_str(words[(seed >> 33) as usize % words.len()]);
                    v.push_str(&format!("\":{},\"", seed >> 50));
                }
                raw += v.len() as u64 + 16;
                ProduceRecord {
                    key: Some(Bytes::from(format!("key-{i}"))),
                    value: Some(Bytes::from(v)),
                    headers: vec![Header::new("trace", Some(Bytes::from_static(b"abc")))],
                    timestamp: 1_790_000_000_000 + i,
                }
            })
            .collect();
        out.extend_from_slice(&build_batch(b * 1000, &recs, codec, 0, None).expect("encode"));
    }
    (out.freeze(), raw)
}

fn bench(c: &mut Criterion) {
    let topic: Arc<str> = Arc::from("bench");
    let mut g = c.benchmark_group("decode");
    g.sample_size(10);
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let (bytes, raw) = data(codec);
        g.throughput(Throughput::Bytes(raw));
        g.bench_with_input(
            BenchmarkId::new("records", format!("{codec:?}")),
            &bytes,
            |b, bytes| b.iter(|| decode_batches(bytes, &topic, 0).expect("decode").len()),
        );
        g.bench_with_input(
            BenchmarkId::new("scan_headers", format!("{codec:?}")),
            &bytes,
            |b, bytes| b.iter(|| scan_batches(bytes).expect("scan").map(|s| s.record_count)),
        );
        g.bench_with_input(
            BenchmarkId::new("verify_crc", format!("{codec:?}")),
            &bytes,
            |b, bytes| b.iter(|| verify_batches(bytes).expect("verify").records),
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
