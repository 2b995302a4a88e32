//! Unit tests of the `storage` sink on the memory and local-folder backends.

use super::*;
use bytes::Bytes;
use ferry_core::registry::SinkFactory;
use ferry_core::{Ack, AckTracker, Record};
use ferry_formats::layout::{PendingSegment, SegmentManifest};

fn config(uri: &str, yaml: serde_json::Value) -> StorageSinkConfig {
    let mut v = serde_json::json!({ "uri": uri });
    if let (Some(m), serde_json::Value::Object(extra)) = (v.as_object_mut(), yaml) {
        m.extend(extra);
    }
    serde_json::from_value(v).expect("config parses")
}

/// The manifest of partition 0 of topic `t` starting at `first`.
async fn manifest(storage: &Storage, first: i64) -> SegmentManifest {
    let bytes = storage
        .read(&layout::manifest_key("t", 0, first))
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn record(topic: &Arc<str>, offset: i64, ts: i64) -> Record {
    let mut r = Record::new(
        topic.clone(),
        0,
        offset,
        Some(Bytes::from(format!("{{\"n\":{offset}}}"))),
    );
    r.timestamp = ts;
    r
}

const DAY: i64 = 86_400_000;
const T0: i64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z

#[test]
fn object_lock_is_only_for_s3_and_its_block_is_checked() {
    let f = StorageSinkFactory;
    let lock = serde_json::json!({"object_lock": {"mode": "governance", "days": 30}});
    f.validate(&config(
        "s3://b/p?endpoint=http://127.0.0.1:1",
        lock.clone(),
    ))
    .expect("s3 takes object_lock");
    for uri in ["memory://o", "/tmp/backup", "gs://b/p"] {
        let e = f
            .validate(&config(uri, lock.clone()))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("object_lock: S3 Object Lock needs an s3:// location"),
            "{uri}: {e}"
        );
    }
    let e = f
        .validate(&config(
            "s3://b/p",
            serde_json::json!({"object_lock": {"mode": "governance", "days": 0}}),
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("between 1 and 36500"), "{e}");
    for bad in [
        serde_json::json!({"uri": "s3://b/p", "object_lock": {"mode": "legal", "days": 1}}),
        serde_json::json!({"uri": "s3://b/p", "object_lock": {"mode": "governance"}}),
        serde_json::json!({"uri": "s3://b/p", "object_lock": {"mode": "governance", "days": 1, "years": 1}}),
    ] {
        assert!(
            serde_json::from_value::<StorageSinkConfig>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn option_blocks_must_match_the_format() {
    let f = StorageSinkFactory;
    let ok = config(
        "memory://o",
        serde_json::json!({"format": "parquet", "parquet": {"compression": "snappy"}}),
    );
    f.validate(&ok).unwrap();
    let ok = config(
        "memory://o",
        serde_json::json!({"format": "avro", "avro": {"codec": "deflate"}}),
    );
    f.validate(&ok).unwrap();
    let bad = config(
        "memory://o",
        serde_json::json!({"format": "avro", "parquet": {}}),
    );
    let e = f.validate(&bad).unwrap_err().to_string();
    assert!(
        e.contains("'parquet:'") && e.contains("format is 'avro'"),
        "{e}"
    );
    let bad = config("memory://o", serde_json::json!({"avro": {}}));
    assert!(f
        .validate(&bad)
        .unwrap_err()
        .to_string()
        .contains("'avro:'"));
    let bad = config(
        "memory://o",
        serde_json::json!({"format": "parquet", "parquet": {"compression_level": 99}}),
    );
    assert!(f.validate(&bad).is_err());
    let bad = config(
        "memory://o",
        serde_json::json!({"format": "parquet", "parquet": {"value": {"as": "json", "schema": []}}}),
    );
    assert!(f.validate(&bad).is_err());
    let bad = serde_json::from_value::<StorageSinkConfig>(
        serde_json::json!({"uri": "x", "format": "parquet", "parquet": {"row_groups": 1}}),
    );
    assert!(bad.is_err(), "unknown option keys are refused");
}

#[test]
fn paths_are_checked() {
    let f = StorageSinkFactory;
    let raw_dated = config(
        "memory://p",
        serde_json::json!({"path": "d/{date}/{topic}/{partition}/{first_offset}"}),
    );
    assert!(f
        .validate(&raw_dated)
        .unwrap_err()
        .to_string()
        .contains("raw"));
    let raw_plain = config(
        "memory://p",
        serde_json::json!({"path": "d/{topic}/{partition}/{first_offset}"}),
    );
    f.validate(&raw_plain).unwrap();
    let missing = config(
        "memory://p",
        serde_json::json!({"format": "jsonl", "path": "d/{topic}/{first_offset}"}),
    );
    assert!(f
        .validate(&missing)
        .unwrap_err()
        .to_string()
        .contains("{partition}"));
    let default = config(
        "memory://p",
        serde_json::json!({"path": PathTemplate::DEFAULT}),
    );
    assert!(path_template(&default).unwrap().is_none());
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn dated_paths_roll_per_date_and_keep_manifests_in_the_layout() {
    rt().block_on(async {
        let uri = format!("memory://dated-{}", layout::now_ms());
        let c = config(&uri, serde_json::json!({
            "format": "jsonl",
            "path": "topic={topic}/date={date}/{partition}-{first_offset}",
        }));
        let mut sink = StorageSink::new(c).unwrap();
        sink.open().await.unwrap();
        let topic: Arc<str> = Arc::from("t");
        let tracker = AckTracker::new();
        // Day 0: offsets 0..3, day 1: 3..5, back to day 0: 5..6, in one batch and a second.
        let days = [0, 0, 0, 1, 1, 0];
        let recs: Vec<Record> = days.iter().enumerate().map(|(i, d)| record(&topic, i as i64, T0 + d * DAY + i as i64)).collect();
        let ack = tracker.issue(&topic, 0, 0, 4);
        sink.write(Batch::from_records(topic.clone(), 0, 0, 4, recs[..4].to_vec(), ack)).await.unwrap();
        let ack = tracker.issue(&topic, 0, 4, 6);
        sink.write(Batch::from_records(topic.clone(), 0, 4, 6, recs[4..].to_vec(), ack)).await.unwrap();
        sink.close().await.unwrap();
        assert_eq!(tracker.watermarks()["t"][&0], 6);
        let storage = sink.storage().clone();
        let mut keys = storage.list("topic=t/").await.unwrap();
        keys.sort();
        assert_eq!(keys, vec![
            "topic=t/date=2025-12-01/0-00000000000000000000.jsonl".to_string(),
            "topic=t/date=2025-12-01/0-00000000000000000005.jsonl".to_string(),
            "topic=t/date=2025-12-02/0-00000000000000000003.jsonl".to_string(),
        ]);
        assert!(storage.list(layout::PENDING_PREFIX).await.unwrap().is_empty());
        let spans: Vec<(i64, i64, u64)> = {
            let mut out = Vec::new();
            for f in [0, 3, 5] {
                let m = manifest(&storage, f).await;
                assert!(m.segment.starts_with("topic=t/date="));
                out.push((m.first_offset, m.next_offset, m.record_count));
            }
            out
        };
        assert_eq!(spans, vec![(0, 3, 3), (3, 5, 2), (5, 6, 1)]);
        // A restart resumes after the manifests.
        let mut again = StorageSink::new(config(&uri, serde_json::json!({"format": "jsonl", "path": "topic={topic}/date={date}/{partition}-{first_offset}"}))).unwrap();
        let durable = again.open().await.unwrap().unwrap();
        assert_eq!(durable["t"][&0], 6);
    });
}

#[test]
fn interrupted_templated_writes_are_removed_on_open() {
    rt().block_on(async {
        let uri = format!("memory://pending-{}", layout::now_ms());
        let c = || config(&uri, serde_json::json!({"format": "jsonl", "path": "data/{topic}/{partition}/{first_offset}"}));
        let mut sink = StorageSink::new(c()).unwrap();
        sink.open().await.unwrap();
        let topic: Arc<str> = Arc::from("t");
        let recs: Vec<Record> = (0..3).map(|i| record(&topic, i, T0)).collect();
        sink.write(Batch::from_records(topic.clone(), 0, 0, 3, recs, Ack::none())).await.unwrap();
        sink.close().await.unwrap();
        let storage = sink.storage().clone();
        let done = "data/t/0/00000000000000000000.jsonl";
        assert!(storage.exists(done).await.unwrap());
        // A crash after the object, before its manifest; and one after the manifest,
        // before the marker was removed.
        let orphan = "data/t/0/00000000000000000003.jsonl";
        storage.write(orphan, "x").await.unwrap();
        for (first, seg) in [(3, orphan), (0, done)] {
            let m = PendingSegment { segment: seg.to_string(), started_at_ms: 0 };
            storage.write(&layout::pending_key("t", 0, first), serde_json::to_vec(&m).unwrap()).await.unwrap();
        }
        let mut again = StorageSink::new(c()).unwrap();
        let durable = again.open().await.unwrap().unwrap();
        assert_eq!(durable["t"][&0], 3);
        assert!(!storage.exists(orphan).await.unwrap(), "orphan removed");
        assert!(storage.exists(done).await.unwrap(), "committed segment kept");
        assert!(storage.list(layout::PENDING_PREFIX).await.unwrap().is_empty());
    });
}

#[test]
fn parquet_manifests_count_data_records_only() {
    rt().block_on(async {
        let uri = format!("memory://pq-{}", layout::now_ms());
        let mut sink = StorageSink::new(config(
            &uri,
            serde_json::json!({"format": "parquet", "parquet": {"compression": "snappy"}}),
        ))
        .unwrap();
        sink.open().await.unwrap();
        let topic: Arc<str> = Arc::from("t");
        let mut recs: Vec<Record> = (0..4).map(|i| record(&topic, i, T0 + i)).collect();
        recs[3].is_control = true;
        sink.write(Batch::from_records(
            topic.clone(),
            0,
            0,
            4,
            recs,
            Ack::none(),
        ))
        .await
        .unwrap();
        sink.close().await.unwrap();
        let storage = sink.storage().clone();
        let m = manifest(&storage, 0).await;
        assert_eq!(
            (m.format.as_str(), m.record_count, m.next_offset),
            ("parquet", 3, 4)
        );
        assert_eq!(m.max_timestamp, Some(T0 + 2));
        let back =
            ferry_formats::parquet::read_parquet(storage.read(&m.segment).await.unwrap()).unwrap();
        assert_eq!(back.len(), 3);
    });
}

#[test]
fn values_that_do_not_fit_go_to_the_dead_letter_file() {
    rt().block_on(async {
        let uri = format!("memory://dl-{}", layout::now_ms());
        let mut sink = StorageSink::new(config(
            &uri,
            serde_json::json!({
                "format": "parquet",
                "dead_letter": "/rejects/",
                "parquet": {"value": {"as": "json", "on_error": "dead_letter",
                    "schema": [{"name": "n", "type": "int64"}]}},
            }),
        ))
        .unwrap();
        sink.open().await.unwrap();
        let topic: Arc<str> = Arc::from("t");
        let mut recs: Vec<Record> = (0..5).map(|i| record(&topic, 10 + i, T0 + i)).collect();
        recs[1].value = Some(Bytes::from_static(b"not json"));
        recs[3].value = Some(Bytes::from_static(br#"{"n": "seven"}"#));
        sink.write(Batch::from_records(
            topic.clone(),
            0,
            10,
            15,
            recs.clone(),
            Ack::none(),
        ))
        .await
        .unwrap();
        sink.close().await.unwrap();
        let storage = sink.storage().clone();
        let m = manifest(&storage, 10).await;
        assert_eq!(m.record_count, 5);
        let back =
            ferry_formats::parquet::read_parquet(storage.read(&m.segment).await.unwrap()).unwrap();
        assert_eq!(back, recs, "every record is in the parquet file");

        let key = dead_letter_key("rejects", "t", 0, 10);
        assert_eq!(key, "rejects/t/0/00000000000000000010.jsonl");
        let text = storage.read(&key).await.unwrap();
        let lines: Vec<serde_json::Value> = std::str::from_utf8(&text)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        for (line, want) in lines.iter().zip([&recs[1], &recs[3]]) {
            let mut jsonl = Vec::new();
            ferry_formats::jsonl::encode_record(want, &mut jsonl);
            let want_json: serde_json::Value = serde_json::from_slice(&jsonl).unwrap();
            assert_eq!(line["record"], want_json);
            assert_eq!(line["record"]["offset"], want.offset);
        }
        let reason = |i: usize| lines[i]["reason"].as_str().unwrap().to_string();
        assert!(reason(0).contains("not JSON"), "{}", reason(0));
        assert!(reason(1).contains("field `n`"), "{}", reason(1));
    });
}

#[test]
fn dead_letter_prefix_is_checked() {
    let f = StorageSinkFactory;
    let c = config("memory://d", serde_json::json!({}));
    assert_eq!(c.dead_letter_prefix().unwrap(), "dead-letter");
    for bad in ["", "/", "topics", "pending/x", "a//b", "../x"] {
        let c = config("memory://d", serde_json::json!({ "dead_letter": bad }));
        assert!(f.validate(&c).is_err(), "{bad}");
    }
}

/// A segment that is not full is committed by the first flush after `commit_interval`,
/// not before (so frequent checkpoints do not make tiny files).
#[test]
fn flush_commits_segments_open_for_commit_interval() {
    rt().block_on(async {
        let uri = format!("memory://commit-interval-{}", layout::now_ms());
        let mut sink = StorageSink::new(config(
            &uri,
            serde_json::json!({"commit_interval": "300ms"}),
        ))
        .unwrap();
        sink.open().await.unwrap();
        let topic: Arc<str> = Arc::from("t");
        let recs: Vec<Record> = (0..3).map(|i| record(&topic, i, T0)).collect();
        sink.write(Batch::from_records(
            topic.clone(),
            0,
            0,
            3,
            recs,
            Ack::none(),
        ))
        .await
        .unwrap();
        let key = layout::manifest_key("t", 0, 0);
        sink.flush().await.unwrap();
        assert!(
            !sink.storage().exists(&key).await.unwrap(),
            "committed too early"
        );
        tokio::time::sleep(std::time::Duration::from_millis(350)).await;
        sink.flush().await.unwrap();
        assert_eq!(manifest(sink.storage(), 0).await.next_offset, 3);
    });
}

/// Files a crashed run staged in `.ferry-tmp/` are removed when the next run takes the
/// location's lease; the committed data stays.
#[test]
fn staged_files_of_a_crashed_run_are_removed_on_open() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let uri = dir.path().join("b").display().to_string();
        let mut sink = StorageSink::new(config(&uri, serde_json::json!({}))).unwrap();
        sink.open().await.unwrap();
        let topic: Arc<str> = Arc::from("t");
        let recs: Vec<Record> = (0..3).map(|i| record(&topic, i, T0)).collect();
        sink.write(Batch::from_records(
            topic.clone(),
            0,
            0,
            3,
            recs,
            Ack::none(),
        ))
        .await
        .unwrap();
        sink.close().await.unwrap();
        let tmp = dir.path().join("b").join(ferry_core::storage::TMP_DIR);
        std::fs::write(tmp.join("half-written-segment"), vec![7u8; 4096]).unwrap();
        let mut again = StorageSink::new(config(&uri, serde_json::json!({}))).unwrap();
        assert_eq!(again.open().await.unwrap().unwrap()["t"][&0], 3);
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            0,
            "staged file left"
        );
        assert_eq!(manifest(again.storage(), 0).await.next_offset, 3);
        again.close().await.unwrap();
    });
}

/// Whether `needle` occurs in `haystack`.
fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn encrypted_segments_and_dead_letters_hold_no_plaintext_and_read_back() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        let key_id = ferry_core::encryption::write_new_key_file(&key).unwrap();
        let uri = format!("memory://enc-{}", layout::now_ms());
        let encryption = serde_json::json!({ "key_file": key.to_str().unwrap() });
        let mut sink = StorageSink::new(config(
            &uri,
            serde_json::json!({
                "format": "parquet",
                "parquet": {"value": {"as": "json", "on_error": "dead_letter",
                    "schema": [{"name": "n", "type": "int64"}]}},
                "encryption": encryption,
            }),
        ))
        .unwrap();
        sink.open().await.unwrap();
        let topic: Arc<str> = Arc::from("t");
        let secret = b"plaintext-that-must-not-be-stored";
        let mut recs: Vec<Record> = (0..50).map(|i| record(&topic, i, T0 + i)).collect();
        recs[7].value = Some(Bytes::from_static(secret));
        recs[9].key = Some(Bytes::from_static(secret));
        sink.write(Batch::from_records(
            topic.clone(),
            0,
            0,
            50,
            recs.clone(),
            Ack::none(),
        ))
        .await
        .unwrap();
        sink.close().await.unwrap();
        let storage = sink.storage().clone();
        let m = manifest(&storage, 0).await;
        let enc = m
            .encryption
            .clone()
            .expect("the manifest records the encryption");
        assert_eq!(enc.key_id, key_id);
        let stored = storage.read(&m.segment).await.unwrap();
        assert_eq!(stored.len() as u64, m.bytes);
        assert_eq!(crc32c::crc32c(&stored), m.crc32c);
        assert!(!holds(&stored, secret) && !holds(&stored, b"PAR1"));
        let dl_key = dead_letter_key("dead-letter", "t", 0, 0);
        let dl = storage.read(&dl_key).await.unwrap();
        assert!(!holds(&dl, secret), "the dead-letter file holds the value");
        let keys = ferry_core::encryption::EncryptionConfig::from_files(&[key
            .to_string_lossy()
            .into_owned()])
        .load()
        .unwrap();
        let plain = ferry_core::encryption::open_bytes(keys.as_ref(), &dl_key, &dl)
            .await
            .unwrap();
        assert!(holds(&plain, b"not JSON") || holds(&plain, b"reason"));
        assert_eq!(std::str::from_utf8(&plain).unwrap().lines().count(), 1);

        // The backup source reads it back with the key, and refuses without it.
        let source_config = |with_key: bool| {
            let mut c = serde_json::json!({ "uri": uri });
            if with_key {
                c["encryption"] = encryption.clone();
            }
            serde_json::from_value::<ferry_sources::backup::BackupSourceConfig>(c).unwrap()
        };
        let report = ferry_sources::backup::verify::verify_backup_with(
            storage.clone(),
            Some(4096),
            Some(keys.clone()),
        )
        .await
        .unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.records, 50);
        let report = ferry_sources::backup::verify::verify_backup(storage.clone(), None)
            .await
            .unwrap();
        assert!(
            report.is_ok() && report.encrypted_unopened == 1,
            "{report:?}"
        );
        let got = read_all(source_config(true)).await.unwrap();
        assert_eq!(got, recs);
        let e = read_all(source_config(false))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("is encrypted") && e.contains(&key_id), "{e}");

        // A flipped byte: damage without the key (CRC-32C) and with it (authentication).
        let mut flipped = stored.to_vec();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x01;
        storage.write(&m.segment, flipped).await.unwrap();
        let report = ferry_sources::backup::verify::verify_backup(storage.clone(), None)
            .await
            .unwrap();
        assert_eq!(report.damaged(), 1, "{report:?}");
        assert!(report.problems[0].message.contains("CRC-32C"), "{report:?}");
        let report =
            ferry_sources::backup::verify::verify_backup_with(storage.clone(), None, Some(keys))
                .await
                .unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.message.contains("fails authentication")),
            "{report:?}"
        );
        assert!(read_all(source_config(true)).await.is_err());
    });
}

/// Every record a backup source reads.
async fn read_all(config: ferry_sources::backup::BackupSourceConfig) -> Result<Vec<Record>> {
    use ferry_core::Source;
    let mut source = ferry_sources::backup::BackupSource::new(config)?;
    let ctx = ferry_core::SourceContext::new("read-all");
    let mut out = Vec::new();
    while let Some(b) = source.next_batch(&ctx).await? {
        out.extend(b.records()?.iter().cloned());
    }
    Ok(out)
}

/// With many partitions each holding an open Parquet segment, the buffers of all of them
/// stay within `max_buffered_bytes`: the segments holding most are closed early, and every
/// record still ends up in exactly one segment, offsets contiguous.
#[test]
fn open_segments_are_closed_early_to_stay_within_max_buffered_bytes() {
    rt().block_on(async {
        let uri = format!("memory://buffer-budget-{}", layout::now_ms());
        let budget: u64 = 256 * 1024;
        let mut sink = StorageSink::new(config(
            &uri,
            serde_json::json!({"format": "parquet", "max_buffered_bytes": budget}),
        ))
        .unwrap();
        sink.open().await.unwrap();
        let topic: Arc<str> = Arc::from("t");
        let (partitions, rounds, per_batch) = (40, 4, 50i64);
        let value = "v".repeat(500);
        let mut largest_piece = 0u64;
        for round in 0..rounds {
            for p in 0..partitions {
                let first = round * per_batch;
                let recs: Vec<Record> = (first..first + per_batch)
                    .map(|o| {
                        let mut r = Record::new(
                            topic.clone(),
                            p,
                            o,
                            Some(Bytes::from(format!("{{\"n\":{o},\"v\":\"{value}{p}\"}}"))),
                        );
                        r.timestamp = T0 + o;
                        r
                    })
                    .collect();
                largest_piece = largest_piece.max(per_batch as u64 * 520);
                sink.write(Batch::from_records(
                    topic.clone(),
                    p,
                    first,
                    first + per_batch,
                    recs,
                    Ack::none(),
                ))
                .await
                .unwrap();
                sink.settle_all().await.unwrap();
                let held: u64 = sink.open.values().map(|s| sink.buffered(s)).sum();
                // Checked after every piece with fewer than 64 open segments: at most the
                // piece just added above the budget.
                assert!(
                    held <= budget + 4 * largest_piece,
                    "{held} bytes buffered with a budget of {budget}"
                );
            }
        }
        // Without the budget nothing would be closed before `close` (40 × 100 KB of rows
        // is far below the row group and roll sizes).
        let closed_early = (0..partitions)
            .filter(|p| sink.last_next.contains_key(&(topic.clone(), *p)))
            .count();
        assert!(closed_early > 0, "no segment was closed early");
        sink.close().await.unwrap();
        for p in 0..partitions {
            let mut first = 0;
            let mut records = 0;
            while first < rounds * per_batch {
                let bytes = sink
                    .storage()
                    .read(&layout::manifest_key("t", p, first))
                    .await
                    .unwrap_or_else(|e| panic!("partition {p}: no segment at {first}: {e}"));
                let m: SegmentManifest = serde_json::from_slice(&bytes).unwrap();
                records += m.record_count;
                first = m.next_offset;
            }
            assert_eq!(first, rounds * per_batch);
            assert_eq!(records, (rounds * per_batch) as u64);
        }
    });
}

/// A raw backup to a local folder keeps no slice of a fetched buffer once it is written:
/// every partition's batches are slices of the same fetch response, and an open segment
/// holding on to its last slice kept the whole response alive (memory grew with the
/// partition count).
#[test]
fn local_raw_segments_do_not_hold_on_to_the_fetched_buffer() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut sink =
            StorageSink::new(config(dir.path().to_str().unwrap(), serde_json::json!({}))).unwrap();
        sink.open().await.unwrap();
        let topic: Arc<str> = Arc::from("t");
        // One "fetch response": a batch per partition, back to back.
        let mut frame = Vec::new();
        let mut spans = Vec::new();
        for p in 0..8 {
            let rec = ferry_kafka::ProduceRecord {
                value: Some(Bytes::from(format!("value of {p}"))),
                timestamp: T0,
                ..Default::default()
            };
            let b =
                ferry_kafka::batch::build_batch(0, &[rec], ferry_kafka::Compression::None, 0, None)
                    .unwrap();
            spans.push(frame.len()..frame.len() + b.len());
            frame.extend_from_slice(&b);
        }
        let frame = Bytes::from(frame);
        for (p, span) in spans.into_iter().enumerate() {
            let mut batch =
                Batch::from_records(topic.clone(), p as i32, 0, 1, Vec::new(), Ack::none());
            batch.payload = ferry_core::Payload::Raw(ferry_core::RawBatches {
                bytes: frame.slice(span),
                record_count: 1,
                min_timestamp: Some(T0),
                max_timestamp: Some(T0),
                aborted: Vec::new(),
                decoder: Arc::new(ferry_kafka::BatchDecoder),
            });
            sink.write(batch).await.unwrap();
        }
        assert_eq!(sink.open.len(), 8, "the segments are still open");
        assert!(
            frame.is_unique(),
            "an open segment still holds a slice of the fetched buffer"
        );
        sink.close().await.unwrap();
        for p in 0..8 {
            let m: SegmentManifest = serde_json::from_slice(
                &sink
                    .storage()
                    .read(&layout::manifest_key("t", p, 0))
                    .await
                    .unwrap(),
            )
            .unwrap();
            assert_eq!((m.record_count, m.next_offset), (1, 1));
        }
    });
}
