//! Builds small backups by hand for the backup source, `ls` and `verify` tests.
#![allow(dead_code)]

use bytes::Bytes;
use ferry_core::{
    AbortedTxn, Batch, Payload, ProducerInfo, Record, Source, SourceContext, Storage,
};
use ferry_formats::layout::{self, Descriptor, Gap, SegmentManifest};
use ferry_kafka::batch::{build_batch, verify_batches, ProduceRecord};
use ferry_kafka::Compression;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh in-memory storage URI.
pub fn mem_uri(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "memory://{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Writes `ferry.json` with the given layout version.
pub async fn write_descriptor(s: &Storage, version: u32) {
    let d = Descriptor {
        layout_version: version,
        created_by: "ferry test".into(),
        created_at_ms: 1_700_000_000_000,
    };
    s.write(layout::DESCRIPTOR, serde_json::to_vec(&d).unwrap())
        .await
        .unwrap();
}

/// A plain record value `v<offset>`-style: (value, timestamp).
pub fn recs(values: &[(&str, i64)]) -> Vec<ProduceRecord> {
    values
        .iter()
        .map(|(v, ts)| ProduceRecord {
            key: Some(Bytes::from(format!("k-{v}"))),
            value: Some(Bytes::from(v.to_string())),
            headers: vec![],
            timestamp: *ts,
        })
        .collect()
}

/// A non-transactional batch.
pub fn batch(base: i64, values: &[(&str, i64)]) -> Bytes {
    build_batch(base, &recs(values), Compression::None, 0, None).unwrap()
}

/// A zstd-compressed batch.
pub fn zstd_batch(base: i64, values: &[(&str, i64)]) -> Bytes {
    build_batch(base, &recs(values), Compression::Zstd, 0, None).unwrap()
}

fn producer(pid: i64) -> Option<ProducerInfo> {
    Some(ProducerInfo {
        producer_id: pid,
        producer_epoch: 0,
        sequence: 0,
    })
}

/// A transactional data batch of producer `pid`.
pub fn txn_batch(base: i64, pid: i64, values: &[(&str, i64)]) -> Bytes {
    build_batch(base, &recs(values), Compression::None, 0x10, producer(pid)).unwrap()
}

/// A transaction marker (control batch) of producer `pid`: commit or abort.
pub fn marker(base: i64, pid: i64, commit: bool, ts: i64) -> Bytes {
    let r = ProduceRecord {
        key: Some(Bytes::from(vec![0, 0, 0, u8::from(commit)])),
        value: Some(Bytes::from(vec![0, 0, 0, 0, 0, 0])),
        headers: vec![],
        timestamp: ts,
    };
    build_batch(base, &[r], Compression::None, 0x30, producer(pid)).unwrap()
}

/// Writes a raw segment of `batches` and its manifest (unless `with_manifest` is false).
pub async fn write_segment(
    s: &Storage,
    topic: &str,
    partition: i32,
    batches: &[Bytes],
    aborted: Vec<AbortedTxn>,
    gaps: Vec<Gap>,
    with_manifest: bool,
) -> SegmentManifest {
    let mut data = Vec::new();
    for b in batches {
        data.extend_from_slice(b);
    }
    let summary = verify_batches(&data).unwrap();
    let first = summary.first_offset.unwrap();
    let key = layout::segment_key(topic, partition, first, "log");
    let m = SegmentManifest {
        format: "raw".into(),
        topic: topic.into(),
        partition,
        first_offset: first,
        next_offset: summary.next_offset.unwrap(),
        record_count: summary.records,
        min_timestamp: summary.min_timestamp,
        max_timestamp: summary.max_timestamp,
        bytes: data.len() as u64,
        crc32c: crc32c::crc32c(&data),
        segment: key.clone(),
        aborted,
        gaps,
        written_at_ms: 1_700_000_000_000,
        encryption: None,
        source_bytes: None,
    };
    s.write(&key, data).await.unwrap();
    if with_manifest {
        s.write(
            &layout::manifest_key(topic, partition, first),
            serde_json::to_vec(&m).unwrap(),
        )
        .await
        .unwrap();
    }
    m
}

/// Reads every batch of a source, resolving acks; returns the batches' (topic, partition,
/// first, next) spans and their records.
pub async fn drain(
    src: &mut dyn Source,
    ctx: &SourceContext,
) -> Vec<(String, i32, i64, i64, Vec<Record>)> {
    let mut out = Vec::new();
    let mut n = 0;
    while let Some(b) = src.next_batch(ctx).await.unwrap() {
        n += 1;
        assert!(n < 100_000, "source does not finish");
        out.push(take(b));
    }
    out
}

/// Splits a batch into its span and records, resolving its ack.
pub fn take(b: Batch) -> (String, i32, i64, i64, Vec<Record>) {
    let Batch {
        topic,
        partition,
        first_offset,
        next_offset,
        payload,
        ack,
    } = b;
    ack.resolve();
    let records = match payload {
        Payload::Records(r) => r,
        // A whole batch handed on undecoded: never a control or transactional one.
        Payload::Raw(raw) => {
            let records = raw.decoder.decode(&topic, partition, &raw).unwrap();
            assert!(records.iter().all(|r| !r.is_control && !r.is_transactional));
            assert_eq!(records.len() as u64, raw.record_count);
            records
        }
    };
    (
        topic.to_string(),
        partition,
        first_offset,
        next_offset,
        records,
    )
}

/// Offsets of the records of one partition, in emitted order.
pub fn offsets_of(
    batches: &[(String, i32, i64, i64, Vec<Record>)],
    topic: &str,
    partition: i32,
) -> Vec<i64> {
    batches
        .iter()
        .filter(|b| b.0 == topic && b.1 == partition)
        .flat_map(|b| b.4.iter().map(|r| r.offset))
        .collect()
}

/// Values (as strings) of one partition's records.
pub fn values_of(
    batches: &[(String, i32, i64, i64, Vec<Record>)],
    topic: &str,
    partition: i32,
) -> Vec<String> {
    batches
        .iter()
        .filter(|b| b.0 == topic && b.1 == partition)
        .flat_map(|b| {
            b.4.iter().map(|r| {
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
            })
        })
        .collect()
}

/// The spans of one partition, checking they are contiguous and increasing.
pub fn spans_of(
    batches: &[(String, i32, i64, i64, Vec<Record>)],
    topic: &str,
    partition: i32,
) -> Vec<(i64, i64)> {
    let spans: Vec<(i64, i64)> = batches
        .iter()
        .filter(|b| b.0 == topic && b.1 == partition)
        .map(|b| (b.2, b.3))
        .collect();
    for w in spans.windows(2) {
        assert_eq!(w[0].1, w[1].0, "spans must be contiguous: {spans:?}");
    }
    for s in &spans {
        assert!(s.0 < s.1, "empty span {s:?}");
    }
    spans
}

/// Writes a `jsonl` segment of records `(offset, value, timestamp)` and its manifest, the
/// manifest's span being `first..next`.
pub async fn write_jsonl_segment(
    s: &Storage,
    topic: &str,
    partition: i32,
    first: i64,
    next: i64,
    records: &[(i64, &str, i64)],
) -> SegmentManifest {
    let t: std::sync::Arc<str> = std::sync::Arc::from(topic);
    let recs: Vec<Record> = records
        .iter()
        .map(|(o, v, ts)| {
            let mut r = Record::new(t.clone(), partition, *o, Some(Bytes::from(v.to_string())));
            r.timestamp = *ts;
            r
        })
        .collect();
    let data = ferry_formats::jsonl::encode(&recs);
    let key = layout::segment_key(topic, partition, first, "jsonl");
    let m = SegmentManifest {
        format: "jsonl".into(),
        topic: topic.into(),
        partition,
        first_offset: first,
        next_offset: next,
        record_count: recs.len() as u64,
        min_timestamp: records.iter().map(|r| r.2).min(),
        max_timestamp: records.iter().map(|r| r.2).max(),
        bytes: data.len() as u64,
        crc32c: crc32c::crc32c(&data),
        segment: key.clone(),
        aborted: vec![],
        gaps: vec![],
        written_at_ms: 1_700_000_000_000,
        encryption: None,
        source_bytes: None,
    };
    s.write(&key, data).await.unwrap();
    s.write(
        &layout::manifest_key(topic, partition, first),
        serde_json::to_vec(&m).unwrap(),
    )
    .await
    .unwrap();
    m
}
