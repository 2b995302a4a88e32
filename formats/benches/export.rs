//! Export throughput: 100k records of 1 KiB (key, 3 headers) encoded to Parquet and Avro
//! through the segment encoders the storage sink uses, in batches of 500 records. Parquet
//! with zstd level 3 (default), zstd level 1 and snappy; Avro with zstd and snappy.
//!
//! `cargo bench -p ferry-formats --bench export` prints the time per 100k records and the
//! throughput in records/s (`elem/s`) and bytes/s of records (`MiB/s`); the size of each
//! file is printed once before the runs.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferry_core::{Ack, Batch, Header, Record, TimestampType};
use ferry_formats::avro::{AvroCodec, AvroFormat, AvroOptions};
use ferry_formats::parquet::{ParquetCompression, ParquetFormat, ParquetOptions};
use ferry_formats::segment::SegmentFormat;
use std::hint::black_box;
use std::sync::Arc;

const RECORDS: i64 = 100_000;
const VALUE_BYTES: usize = 1024;
const BATCH: i64 = 500;

/// Semi-compressible JSON-like values, like real events.
fn batches() -> Vec<Batch> {
    let topic: Arc<str> = Arc::from("bench");
    let mut out = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for first in (0..RECORDS).step_by(BATCH as usize) {
        let records: Vec<Record> = (first..first + BATCH)
            .map(|offset| {
                let mut value = format!(
                    r#"{{"id":{offset},"user":"user-{}","event":"click","payload":""#,
                    offset % 977
                )
                .into_bytes();
                while value.len() < VALUE_BYTES - 2 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    value.push(b'a' + (seed % 16) as u8);
                }
                value.extend_from_slice(b"\"}");
                let mut r = Record::new(topic.clone(), 0, offset, Some(Bytes::from(value)));
                r.key = Some(Bytes::from(format!("user-{}", offset % 977)));
                r.timestamp = 1_732_442_400_000 + offset;
                r.timestamp_type = TimestampType::Create;
                r.headers = vec![
                    Header::new("trace-id", Some(Bytes::from(format!("{seed:016x}")))),
                    Header::new("source", Some(Bytes::from_static(b"bench"))),
                    Header::new("nullable", None),
                ];
                r
            })
            .collect();
        out.push(Batch::from_records(
            topic.clone(),
            0,
            first,
            first + BATCH,
            records,
            Ack::none(),
        ));
    }
    out
}

fn encode_all(format: &dyn SegmentFormat, batches: &[Batch]) -> usize {
    let mut enc = format.encoder("bench", 0, 0);
    let mut bytes = 0;
    for b in batches {
        bytes += enc.encode(b).expect("encode").len();
    }
    bytes + enc.finish().expect("finish").len()
}

fn bench(c: &mut Criterion) {
    let batches = batches();
    let record_bytes: u64 = batches.iter().map(|b| b.size_bytes() as u64).sum();
    let formats: Vec<(&str, Box<dyn SegmentFormat>)> = vec![
        (
            "parquet_zstd",
            Box::new(ParquetFormat::new(ParquetOptions::default())),
        ),
        (
            "parquet_zstd1",
            Box::new(ParquetFormat::new(ParquetOptions {
                compression_level: 1,
                ..ParquetOptions::default()
            })),
        ),
        (
            "parquet_snappy",
            Box::new(ParquetFormat::new(ParquetOptions {
                compression: ParquetCompression::Snappy,
                ..ParquetOptions::default()
            })),
        ),
        (
            "avro_zstd",
            Box::new(AvroFormat::new(AvroOptions::default())),
        ),
        (
            "avro_snappy",
            Box::new(AvroFormat::new(AvroOptions {
                codec: AvroCodec::Snappy,
                ..AvroOptions::default()
            })),
        ),
    ];
    for (name, f) in &formats {
        let size = encode_all(f.as_ref(), &batches);
        println!(
            "{name}: {RECORDS} records, {:.1} MiB in, {:.1} MiB out",
            record_bytes as f64 / 1048576.0,
            size as f64 / 1048576.0
        );
    }
    for (unit, throughput) in [
        ("records", Throughput::Elements(RECORDS as u64)),
        ("bytes", Throughput::Bytes(record_bytes)),
    ] {
        let mut group = c.benchmark_group(format!("export_100k_1KiB_{unit}"));
        group.sample_size(10);
        group.throughput(throughput);
        for (name, f) in &formats {
            group.bench_function(*name, |b| {
                b.iter_batched(
                    || (),
                    |()| black_box(encode_all(f.as_ref(), &batches)),
                    BatchSize::PerIteration,
                )
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
