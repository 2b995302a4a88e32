//! `verify` and the `ls` summary against hand-built backups (a local folder and memory).

mod backup_util;

use backup_util::*;
use ferry_core::{AbortedTxn, Storage};
use ferry_formats::layout::{self, Gap, GroupsDocument, TopicDocument};
use ferry_sources::backup::inspect::summarize;
use ferry_sources::backup::verify::{verify_backup, Severity};
use ferry_sources::backup::Catalog;

async fn local_backup() -> (tempfile::TempDir, Storage) {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::from_uri(dir.path().to_str().unwrap()).unwrap();
    write_descriptor(&s, 1).await;
    write_segment(
        &s,
        "orders",
        0,
        &[
            batch(0, &[("a", 100), ("b", 300)]),
            zstd_batch(2, &[("c", 200)]),
        ],
        vec![],
        vec![],
        true,
    )
    .await;
    write_segment(
        &s,
        "orders",
        0,
        &[txn_batch(5, 9, &[("d", 400)]), marker(6, 9, false, 450)],
        vec![AbortedTxn {
            producer_id: 9,
            first_offset: 5,
        }],
        vec![Gap { from: 3, to: 5 }],
        true,
    )
    .await;
    write_segment(
        &s,
        "orders",
        1,
        &[batch(0, &[("x", 50)])],
        vec![],
        vec![],
        true,
    )
    .await;
    (dir, s)
}

#[tokio::test]
async fn a_good_backup_verifies_clean() {
    let (_dir, s) = local_backup().await;
    let r = verify_backup(s, Some(32)).await.unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!((r.topics, r.partitions, r.segments), (1, 2, 3));
    assert_eq!(r.records, 3 + 2 + 1);
}

#[tokio::test]
async fn a_flipped_byte_is_damage_naming_the_object() {
    let (dir, s) = local_backup().await;
    let key = layout::segment_key("orders", 0, 0, "log");
    let path = dir.path().join(&key);
    let mut data = std::fs::read(&path).unwrap();
    data[70] ^= 0x01; // inside the first batch's records
    std::fs::write(&path, data).unwrap();
    let r = verify_backup(s, None).await.unwrap();
    assert!(!r.is_ok());
    let p: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Damage)
        .collect();
    assert!(p.iter().all(|p| p.object == key), "{p:?}");
    assert!(
        p.iter()
            .any(|p| p.message.contains("CRC mismatch") && p.message.contains("offset 0")),
        "{p:?}"
    );
}

#[tokio::test]
async fn truncation_missing_objects_and_wrong_counts_are_damage() {
    let (dir, s) = local_backup().await;
    // Truncated segment: size differs from the manifest.
    let k0 = layout::segment_key("orders", 0, 0, "log");
    let p0 = dir.path().join(&k0);
    let data = std::fs::read(&p0).unwrap();
    std::fs::write(&p0, &data[..data.len() - 3]).unwrap();
    // Missing segment.
    let k1 = layout::segment_key("orders", 1, 0, "log");
    std::fs::remove_file(dir.path().join(&k1)).unwrap();
    // A manifest whose record count is wrong.
    let mk = layout::manifest_key("orders", 0, 5);
    let mut m: layout::SegmentManifest =
        serde_json::from_slice(&s.read(&mk).await.unwrap()).unwrap();
    m.record_count = 99;
    s.write(&mk, serde_json::to_vec(&m).unwrap()).await.unwrap();
    // A manifest that is not JSON.
    let bad = layout::manifest_key("orders", 2, 0);
    s.write(&bad, "{oops").await.unwrap();

    let r = verify_backup(s, None).await.unwrap();
    assert_eq!(r.damaged(), 4, "{:#?}", r.problems);
    let msg = |obj: &str| {
        r.problems
            .iter()
            .find(|p| p.object == obj)
            .map(|p| p.message.clone())
            .unwrap_or_default()
    };
    assert!(
        msg(&k0).contains("bytes, its manifest says"),
        "{}",
        msg(&k0)
    );
    assert!(msg(&k1).contains("missing"), "{}", msg(&k1));
    assert!(msg(&m.segment).contains("holds 2 records, its manifest says 99"));
    assert!(msg(&bad).contains("not a valid document"), "{}", msg(&bad));
}

#[tokio::test]
async fn incomplete_segments_are_warnings_not_damage() {
    let (_dir, s) = local_backup().await;
    write_segment(
        &s,
        "orders",
        1,
        &[batch(1, &[("y", 60)])],
        vec![],
        vec![],
        false,
    )
    .await;
    let r = verify_backup(s, None).await.unwrap();
    assert!(r.is_ok());
    assert_eq!(r.warnings(), 1);
    assert_eq!(
        r.problems[0].object,
        layout::segment_key("orders", 1, 1, "log")
    );
    assert!(r.problems[0].message.contains("incomplete segment"));
}

#[tokio::test]
async fn no_backup_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::from_uri(dir.path().to_str().unwrap()).unwrap();
    let err = verify_backup(s.clone(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no Ferry backup at"), "{err}");
    let err = Catalog::open(s).await.unwrap_err().to_string();
    assert!(err.contains("ferry.json not found"), "{err}");
}

#[tokio::test]
async fn summary_numbers() {
    let (_dir, s) = local_backup().await;
    // A hole between partition 1's segments that no manifest records.
    write_segment(
        &s,
        "orders",
        1,
        &[batch(4, &[("z", 70)])],
        vec![],
        vec![],
        true,
    )
    .await;
    write_segment(
        &s,
        "orders",
        1,
        &[batch(9, &[("orphan", 1)])],
        vec![],
        vec![],
        false,
    )
    .await;
    let doc = TopicDocument {
        name: "orders".into(),
        latest: ferry_core::TopicSettings {
            name: "orders".into(),
            partitions: 2,
            replication_factor: Some(3),
            configs: [("retention.ms".to_string(), "-1".to_string())].into(),
            topic_id: None,
        },
        snapshots: vec![],
    };
    s.write(
        &layout::topic_key("orders"),
        serde_json::to_vec(&doc).unwrap(),
    )
    .await
    .unwrap();
    let g = GroupsDocument {
        taken_at_ms: 1_700_000_000_123,
        groups: vec![
            ferry_core::GroupOffsets {
                group: "b".into(),
                offsets: Default::default(),
            },
            ferry_core::GroupOffsets {
                group: "a".into(),
                offsets: Default::default(),
            },
        ],
    };
    s.write(
        &layout::groups_key(g.taken_at_ms),
        serde_json::to_vec(&g).unwrap(),
    )
    .await
    .unwrap();

    let cat = Catalog::open(s).await.unwrap();
    let sum = summarize(&cat).await.unwrap();
    assert_eq!(sum.incomplete_segments, 1);
    assert_eq!(sum.topics.len(), 1);
    let t = &sum.topics[0];
    assert_eq!(t.configs["retention.ms"], "-1");
    assert_eq!(t.partition_count, Some(2));
    let p0 = &t.partitions[0];
    assert_eq!(
        (p0.first_offset, p0.next_offset, p0.records, p0.segments),
        (0, 7, 5, 2)
    );
    assert_eq!((p0.min_timestamp, p0.max_timestamp), (Some(100), Some(450)));
    assert_eq!(
        p0.gaps,
        vec![Gap { from: 3, to: 5 }],
        "recorded gap, hole not listed twice"
    );
    let p1 = &t.partitions[1];
    assert_eq!(
        (p1.first_offset, p1.next_offset, p1.records, p1.segments),
        (0, 5, 2, 2)
    );
    assert_eq!(p1.gaps, vec![Gap { from: 1, to: 4 }]);
    let seg_bytes: u64 = cat.all_manifests().await.unwrap()[&("orders".to_string(), 0)]
        .iter()
        .map(|m| m.bytes)
        .sum();
    assert_eq!(p0.bytes, seg_bytes);
    assert_eq!(sum.groups.len(), 1);
    assert_eq!(sum.groups[0].taken_at_ms, 1_700_000_000_123);
    assert_eq!(sum.groups[0].groups, vec!["a", "b"]);

    let j = serde_json::to_value(&sum).unwrap();
    assert_eq!(j["topics"][0]["partitions"][0]["records"], 5);
    assert_eq!(j["topics"][0]["partitions"][1]["gaps"][0]["from"], 1);
    assert_eq!(j["incomplete_segments"], 1);
}

#[tokio::test]
async fn jsonl_segments_are_parsed_and_counted() {
    let uri = mem_uri("verify-jsonl");
    let s = Storage::from_uri(&uri).unwrap();
    write_descriptor(&s, 1).await;
    write_jsonl_segment(&s, "j", 0, 0, 3, &[(0, "a", 1), (2, "b", 2)]).await;
    let m = write_jsonl_segment(&s, "j", 1, 0, 2, &[(0, "a", 1), (1, "b", 2)]).await;
    let r = verify_backup(s.clone(), Some(5)).await.unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.records, 4);

    // A line that is not a record: damage naming the object, with a matching size and CRC
    // so only the parse finds it.
    let text = String::from_utf8(s.read(&m.segment).await.unwrap().to_vec()).unwrap();
    let broken = text.replacen("\"offset\":1", "\"offset\":\"x\"", 1);
    let mut m2 = m.clone();
    m2.bytes = broken.len() as u64;
    m2.crc32c = crc32c::crc32c(broken.as_bytes());
    s.write(&m.segment, broken).await.unwrap();
    s.write(
        &layout::manifest_key("j", 1, 0),
        serde_json::to_vec(&m2).unwrap(),
    )
    .await
    .unwrap();
    let r = verify_backup(s, None).await.unwrap();
    assert_eq!(r.damaged(), 1, "{:?}", r.problems);
    assert_eq!(r.problems[0].object, m.segment);
    assert!(
        r.problems[0].message.contains("line 2"),
        "{}",
        r.problems[0].message
    );
}
