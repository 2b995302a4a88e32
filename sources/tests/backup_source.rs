//! The `backup` source against hand-built raw segments in `memory://` storage.

mod backup_util;

use backup_util::*;
use ferry_core::{
    AbortedTxn, ConfigInput, GroupOffsets, Registry, Source, SourceContext, Storage, TopicSettings,
};
use ferry_formats::layout::{self, GroupsDocument, TopicDocument};
use ferry_sources::backup::{BackupSource, BackupSourceConfig, BackupSourceFactory};
use serde_json::json;
use std::collections::BTreeMap;

fn source(config: serde_json::Value) -> BackupSource {
    let c: BackupSourceConfig = serde_json::from_value(config).unwrap();
    BackupSource::new(c).unwrap()
}

fn ctx_at(checkpoint: &[(&str, i32, i64)]) -> SourceContext {
    let mut ctx = SourceContext::new("restore-test");
    if !checkpoint.is_empty() {
        let mut c: ferry_core::Offsets = BTreeMap::new();
        for (t, p, o) in checkpoint {
            c.entry(t.to_string()).or_default().insert(*p, *o);
        }
        ctx.checkpoint = Some(c);
    }
    ctx
}

/// Two partitions, two segments on partition 0 (the second zstd), one on partition 1.
async fn simple_backup() -> (String, Storage) {
    let uri = mem_uri("simple");
    let s = Storage::from_uri(&uri).unwrap();
    write_descriptor(&s, layout::LAYOUT_VERSION).await;
    write_segment(
        &s,
        "orders",
        0,
        &[batch(0, &[("a", 1), ("b", 2)]), batch(2, &[("c", 3)])],
        vec![],
        vec![],
        true,
    )
    .await;
    write_segment(
        &s,
        "orders",
        0,
        &[zstd_batch(3, &[("d", 4), ("e", 5), ("f", 6)])],
        vec![],
        vec![],
        true,
    )
    .await;
    write_segment(
        &s,
        "orders",
        1,
        &[batch(10, &[("x", 7), ("y", 8)])],
        vec![],
        vec![],
        true,
    )
    .await;
    (uri, s)
}

#[tokio::test]
async fn reads_every_partition_in_order_interleaved_and_finishes() {
    let (uri, _s) = simple_backup().await;
    let mut src = source(json!({ "uri": uri, "read_chunk": 16 }));
    let ctx = ctx_at(&[]);
    let out = drain(&mut src, &ctx).await;
    assert_eq!(
        values_of(&out, "orders", 0),
        vec!["a", "b", "c", "d", "e", "f"]
    );
    assert_eq!(offsets_of(&out, "orders", 0), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(offsets_of(&out, "orders", 1), vec![10, 11]);
    let spans = spans_of(&out, "orders", 0);
    assert_eq!(spans.first().unwrap().0, 0);
    assert_eq!(spans.last().unwrap().1, 6);
    assert_eq!(spans_of(&out, "orders", 1), vec![(10, 12)]);
    // Round-robin, one read chunk at a time: partition 1 comes before partition 0 is done.
    let order: Vec<i32> = out.iter().map(|b| b.1).collect();
    assert_eq!(&order[..3], &[0, 1, 0], "{order:?}");
    // Records keep their original coordinates, keys and timestamps.
    let r = &out.iter().find(|b| b.1 == 0).unwrap().4[0];
    assert_eq!(&*r.topic, "orders");
    assert_eq!(r.key.as_deref(), Some(&b"k-a"[..]));
    assert_eq!(r.timestamp, 1);
    // Finished: None again, and acks moved the watermark to the end of every partition.
    assert!(src.next_batch(&ctx).await.unwrap().is_none());
    let w = ctx.acks.watermarks();
    assert_eq!(w["orders"][&0], 6);
    assert_eq!(w["orders"][&1], 12);
    assert!(src.checkpoint_storage().is_none());
}

#[tokio::test]
async fn until_takes_a_clean_prefix_with_out_of_order_timestamps() {
    let uri = mem_uri("until");
    let s = Storage::from_uri(&uri).unwrap();
    write_descriptor(&s, 1).await;
    // Timestamps out of order: 10, 20 | 15, 50, 12 | 5. Until 25: the first record later
    // than 25 is offset 3 (ts 50), so offsets 0..3 are restored, not offset 4 (ts 12) or 5.
    write_segment(
        &s,
        "t",
        0,
        &[
            batch(0, &[("a", 10), ("b", 20)]),
            batch(2, &[("c", 15), ("d", 50), ("e", 12)]),
            batch(5, &[("f", 5)]),
        ],
        vec![],
        vec![],
        true,
    )
    .await;
    // Partition 1: every record before `until`.
    write_segment(
        &s,
        "t",
        1,
        &[batch(0, &[("x", 1), ("y", 2)])],
        vec![],
        vec![],
        true,
    )
    .await;
    // Partition 2: the first record is already too late: nothing to restore.
    write_segment(&s, "t", 2, &[batch(0, &[("z", 100)])], vec![], vec![], true).await;

    let mut src = source(json!({ "uri": uri, "until": 25 }));
    let ctx = ctx_at(&[]);
    let out = drain(&mut src, &ctx).await;
    assert_eq!(values_of(&out, "t", 0), vec!["a", "b", "c"]);
    assert_eq!(
        spans_of(&out, "t", 0).last().unwrap().1,
        3,
        "span ends at the cut"
    );
    assert_eq!(values_of(&out, "t", 1), vec!["x", "y"]);
    assert!(
        out.iter().all(|b| b.1 != 2),
        "partition 2 has nothing before until"
    );

    // RFC 3339 works too (1970-01-01T00:00:00.016Z = 16 ms).
    let mut src =
        source(json!({ "uri": uri, "until": "1970-01-01T00:00:00.016Z", "partitions": [0] }));
    let out = drain(&mut src, &ctx_at(&[])).await;
    assert_eq!(values_of(&out, "t", 0), vec!["a"]);
}

#[tokio::test]
async fn offset_ranges_global_and_per_partition() {
    let uri = mem_uri("ranges");
    let s = Storage::from_uri(&uri).unwrap();
    write_descriptor(&s, 1).await;
    let values: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    let vs: Vec<(&str, i64)> = values.iter().map(|v| (v.as_str(), 1)).collect();
    for p in 0..2 {
        write_segment(
            &s,
            "t",
            p,
            &[batch(0, &vs[..5]), batch(5, &vs[5..])],
            vec![],
            vec![],
            true,
        )
        .await;
    }
    let mut src = source(json!({
        "uri": uri, "from_offset": 3, "to_offset": 7,
        "offsets": { "t/1": { "from": 8 } }
    }));
    let out = drain(&mut src, &ctx_at(&[])).await;
    assert_eq!(offsets_of(&out, "t", 0), vec![3, 4, 5, 6]);
    assert_eq!(spans_of(&out, "t", 0).first().unwrap().0, 3);
    assert_eq!(spans_of(&out, "t", 0).last().unwrap().1, 7);
    assert_eq!(offsets_of(&out, "t", 1), vec![8, 9]);
    assert_eq!(spans_of(&out, "t", 1), vec![(8, 10)]);
}

#[tokio::test]
async fn resumes_from_a_checkpoint_mid_batch_and_mid_partition() {
    let (uri, _s) = simple_backup().await;
    // Partition 0 resumes inside the zstd batch (offset 4), partition 1 is already done.
    let ctx = ctx_at(&[("orders", 0, 4), ("orders", 1, 12)]);
    let mut src = source(json!({ "uri": uri }));
    let out = drain(&mut src, &ctx).await;
    assert_eq!(values_of(&out, "orders", 0), vec!["e", "f"]);
    assert_eq!(spans_of(&out, "orders", 0), vec![(4, 6)]);
    assert!(out.iter().all(|b| b.1 != 1));

    // A checkpoint inside the first segment skips the rest of it and reads the second.
    let ctx = ctx_at(&[("orders", 0, 2)]);
    let mut src = source(json!({ "uri": uri, "partitions": [0] }));
    let out = drain(&mut src, &ctx).await;
    assert_eq!(values_of(&out, "orders", 0), vec!["c", "d", "e", "f"]);
    assert_eq!(spans_of(&out, "orders", 0).first().unwrap().0, 2);
}

/// Producer 7 aborts a transaction (offsets 1..3, marker at 4) interleaved with producer 8's
/// committed one (offsets 2, 5, marker 6); then producer 7 commits (7..8, marker 9).
async fn txn_backup() -> String {
    let uri = mem_uri("txn");
    let s = Storage::from_uri(&uri).unwrap();
    write_descriptor(&s, 1).await;
    let batches = [
        batch(0, &[("plain0", 1)]),
        txn_batch(1, 7, &[("aborted1", 2)]),
        txn_batch(2, 8, &[("committed2", 3)]),
        txn_batch(3, 7, &[("aborted3", 4)]),
        marker(4, 7, false, 5),
        txn_batch(5, 8, &[("committed5", 6)]),
        marker(6, 8, true, 7),
    ];
    let aborted = vec![AbortedTxn {
        producer_id: 7,
        first_offset: 1,
    }];
    write_segment(&s, "t", 0, &batches, aborted, vec![], true).await;
    write_segment(
        &s,
        "t",
        0,
        &[
            txn_batch(7, 7, &[("committed7", 8), ("committed8", 8)]),
            marker(9, 7, true, 9),
            batch(10, &[("plain10", 10)]),
        ],
        vec![],
        vec![],
        true,
    )
    .await;
    uri
}

#[tokio::test]
async fn aborted_transactions_and_control_records_are_dropped() {
    let uri = txn_backup().await;
    let mut src = source(json!({ "uri": uri }));
    let ctx = ctx_at(&[]);
    let out = drain(&mut src, &ctx).await;
    assert_eq!(
        values_of(&out, "t", 0),
        vec![
            "plain0",
            "committed2",
            "committed5",
            "committed7",
            "committed8",
            "plain10"
        ]
    );
    assert!(out.iter().flat_map(|b| &b.4).all(|r| !r.is_control));
    // The spans still cover every offset, markers included.
    let spans = spans_of(&out, "t", 0);
    assert_eq!((spans[0].0, spans.last().unwrap().1), (0, 11));
    assert_eq!(ctx.acks.watermarks()["t"][&0], 11);

    // include_aborted keeps the aborted data, never the markers.
    let mut src = source(json!({ "uri": uri, "include_aborted": true }));
    let out = drain(&mut src, &ctx_at(&[])).await;
    assert_eq!(
        values_of(&out, "t", 0),
        vec![
            "plain0",
            "aborted1",
            "committed2",
            "aborted3",
            "committed5",
            "committed7",
            "committed8",
            "plain10"
        ]
    );
}

#[tokio::test]
async fn abort_state_survives_a_resume() {
    let uri = txn_backup().await;
    // Resume at 3: inside producer 7's aborted transaction, which started at 1.
    let out = drain(&mut source(json!({ "uri": uri })), &ctx_at(&[("t", 0, 3)])).await;
    assert_eq!(
        values_of(&out, "t", 0),
        vec!["committed5", "committed7", "committed8", "plain10"]
    );
    // Resume at 7: the abort marker (4) is behind us, producer 7's next transaction commits.
    let out = drain(&mut source(json!({ "uri": uri })), &ctx_at(&[("t", 0, 7)])).await;
    assert_eq!(
        values_of(&out, "t", 0),
        vec!["committed7", "committed8", "plain10"]
    );
    assert_eq!(spans_of(&out, "t", 0).first().unwrap().0, 7);
}

#[tokio::test]
async fn a_batch_whose_records_are_all_dropped_still_moves_the_checkpoint() {
    let uri = mem_uri("empty-span");
    let s = Storage::from_uri(&uri).unwrap();
    write_descriptor(&s, 1).await;
    write_segment(
        &s,
        "t",
        0,
        &[txn_batch(0, 3, &[("gone", 1)]), marker(1, 3, false, 2)],
        vec![AbortedTxn {
            producer_id: 3,
            first_offset: 0,
        }],
        vec![],
        true,
    )
    .await;
    let ctx = ctx_at(&[]);
    let out = drain(&mut source(json!({ "uri": uri })), &ctx).await;
    assert_eq!(out.len(), 1);
    assert!(out[0].4.is_empty());
    assert_eq!((out[0].2, out[0].3), (0, 2));
    assert_eq!(ctx.acks.watermarks()["t"][&0], 2);
}

#[tokio::test]
async fn orphan_segments_are_ignored() {
    let (uri, s) = simple_backup().await;
    // A segment written without its manifest (a crash between the two writes).
    write_segment(
        &s,
        "orders",
        0,
        &[batch(6, &[("orphan", 9)])],
        vec![],
        vec![],
        false,
    )
    .await;
    write_segment(
        &s,
        "orders",
        2,
        &[batch(0, &[("orphan", 9)])],
        vec![],
        vec![],
        false,
    )
    .await;
    let out = drain(&mut source(json!({ "uri": uri })), &ctx_at(&[])).await;
    assert_eq!(
        values_of(&out, "orders", 0),
        vec!["a", "b", "c", "d", "e", "f"]
    );
    assert!(out.iter().all(|b| b.1 != 2));
}

#[tokio::test]
async fn topic_selection_by_name_and_regex() {
    let uri = mem_uri("select");
    let s = Storage::from_uri(&uri).unwrap();
    write_descriptor(&s, 1).await;
    for t in ["orders", "payments.eu", "payments.us", "x.payments.eu"] {
        write_segment(&s, t, 0, &[batch(0, &[(t, 1)])], vec![], vec![], true).await;
    }
    // The regex is anchored to the whole name (the rule of every `topics:` list), so
    // `x.payments.eu` is not selected even though the pattern occurs in it.
    let out = drain(
        &mut source(json!({ "uri": uri, "topics": ["orders", "/payments\\.e.*/"] })),
        &ctx_at(&[]),
    )
    .await;
    let mut topics: Vec<&str> = out.iter().map(|b| b.0.as_str()).collect();
    topics.sort();
    assert_eq!(topics, vec!["orders", "payments.eu"]);

    let err = source(json!({ "uri": uri, "topics": ["nope"] }))
        .next_batch(&ctx_at(&[]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("topic 'nope' is not in the backup"), "{err}");
}

#[tokio::test]
async fn missing_or_newer_backups_are_refused() {
    let uri = mem_uri("nothing");
    let err = source(json!({ "uri": uri }))
        .next_batch(&ctx_at(&[]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no Ferry backup at"), "{err}");

    let s = Storage::from_uri(&uri).unwrap();
    write_descriptor(&s, layout::LAYOUT_VERSION + 1).await;
    let err = source(json!({ "uri": uri }))
        .next_batch(&ctx_at(&[]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layout version 2") && err.contains("upgrade Ferry"),
        "{err}"
    );
}

#[tokio::test]
async fn a_corrupt_batch_is_an_error_naming_object_and_offset() {
    let (uri, s) = simple_backup().await;
    let key = layout::segment_key("orders", 0, 3, "log");
    let mut data = s.read(&key).await.unwrap().to_vec();
    let last = data.len() - 1;
    data[last] ^= 0xff;
    s.write(&key, data).await.unwrap();
    let mut src = source(json!({ "uri": uri, "partitions": [0] }));
    let ctx = ctx_at(&[]);
    let mut err = None;
    for _ in 0..10 {
        match src.next_batch(&ctx).await {
            Ok(Some(b)) => b.ack.resolve(),
            Ok(None) => break,
            Err(e) => {
                err = Some(e.to_string());
                break;
            }
        }
    }
    let err = err.expect("corruption must be detected");
    assert!(err.contains(&key), "{err}");
    assert!(err.contains("offset 3") && err.contains("CRC"), "{err}");
}

#[tokio::test]
async fn batches_larger_than_the_read_chunk_are_read_whole() {
    let uri = mem_uri("big");
    let s = Storage::from_uri(&uri).unwrap();
    write_descriptor(&s, 1).await;
    let big = "x".repeat(10_000);
    let vs: Vec<(&str, i64)> = (0..5).map(|_| (big.as_str(), 1)).collect();
    write_segment(
        &s,
        "t",
        0,
        &[batch(0, &vs), batch(5, &vs[..2]), batch(7, &[("tail", 2)])],
        vec![],
        vec![],
        true,
    )
    .await;
    let out = drain(
        &mut source(json!({ "uri": uri, "read_chunk": 100 })),
        &ctx_at(&[]),
    )
    .await;
    assert_eq!(offsets_of(&out, "t", 0), (0..8).collect::<Vec<i64>>());
}

#[tokio::test]
async fn metadata_gives_topic_settings_and_the_groups_snapshot_before_until() {
    let (uri, s) = simple_backup().await;
    write_segment(
        &s,
        "other",
        0,
        &[batch(0, &[("o", 1)])],
        vec![],
        vec![],
        true,
    )
    .await;
    let meta = |name: &str| TopicSettings {
        name: name.into(),
        partitions: 2,
        replication_factor: Some(1),
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
        topic_id: None,
    };
    for t in ["orders", "other"] {
        let doc = TopicDocument {
            name: t.into(),
            latest: meta(t),
            snapshots: vec![],
        };
        s.write(&layout::topic_key(t), serde_json::to_vec(&doc).unwrap())
            .await
            .unwrap();
    }
    for (at, off) in [(1000, 3), (2000, 5)] {
        let doc = GroupsDocument {
            taken_at_ms: at,
            groups: vec![GroupOffsets {
                group: "g".into(),
                offsets: BTreeMap::from([
                    ("orders".to_string(), BTreeMap::from([(0, off), (1, 11)])),
                    ("other".to_string(), BTreeMap::from([(0, 1)])),
                ]),
            }],
        };
        s.write(&layout::groups_key(at), serde_json::to_vec(&doc).unwrap())
            .await
            .unwrap();
    }
    let mut src =
        source(json!({ "uri": uri, "topics": ["orders"], "partitions": [0], "until": 1500 }));
    let m = src
        .metadata()
        .await
        .unwrap()
        .expect("metadata on the first call");
    assert_eq!(m.taken_at_ms, 1000);
    assert_eq!(m.topics, vec![meta("orders")]);
    assert_eq!(m.groups.len(), 1);
    assert_eq!(
        m.groups[0].offsets,
        BTreeMap::from([("orders".to_string(), BTreeMap::from([(0, 3)]))])
    );
    assert!(src.metadata().await.unwrap().is_none(), "only once");

    // Without until: the latest snapshot.
    let m = source(json!({ "uri": uri }))
        .metadata()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.taken_at_ms, 2000);
    assert_eq!(m.topics.len(), 2);
    assert_eq!(m.groups[0].offsets["orders"][&0], 5);
}

#[test]
fn registered_with_checked_config() {
    let mut reg = Registry::new();
    reg.register_source(BackupSourceFactory);
    assert!(reg.source_names().contains(&"backup"));
    let ctx = ferry_core::BuildContext {
        pipeline: "p".into(),
        ..Default::default()
    };
    let ok = json!({ "type": "backup", "uri": "memory://x", "until": "2026-01-01T00:00:00Z" });
    assert!(reg
        .build_source("backup", &ConfigInput::json(&ok), &ctx)
        .is_ok());
    let bad = json!({ "type": "backup", "uri": "memory://x", "topcs": ["a"] });
    let err = reg
        .build_source("backup", &ConfigInput::json(&bad), &ctx)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("topcs"), "{err}");
    for bad in [
        json!({ "uri": "memory://x", "from_offset": 5, "to_offset": 2 }),
        json!({ "uri": "memory://x", "offsets": { "orders": { "from": 1 } } }),
        json!({ "uri": "memory://x", "topics": ["/(/"] }),
    ] {
        assert!(
            reg.build_source("backup", &ConfigInput::json(&bad), &ctx)
                .is_err(),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn jsonl_segments_are_read_too() {
    let uri = mem_uri("jsonl");
    let s = Storage::from_uri(&uri).unwrap();
    write_descriptor(&s, 1).await;
    // Offsets 1 and 4 are missing (compaction); the manifest covers 0..6.
    write_jsonl_segment(
        &s,
        "j",
        0,
        0,
        6,
        &[(0, "a", 10), (2, "b", 20), (3, "c", 40), (5, "d", 15)],
    )
    .await;
    write_jsonl_segment(&s, "j", 0, 6, 8, &[(6, "e", 16), (7, "f", 17)]).await;
    let ctx = ctx_at(&[]);
    let out = drain(&mut source(json!({ "uri": uri, "read_chunk": 8 })), &ctx).await;
    assert_eq!(values_of(&out, "j", 0), vec!["a", "b", "c", "d", "e", "f"]);
    assert_eq!(ctx.acks.watermarks()["j"][&0], 8);
    let spans = spans_of(&out, "j", 0);
    assert_eq!((spans[0].0, spans.last().unwrap().1), (0, 8));

    // until 30 cuts at offset 3 (ts 40); resume at 2 starts from b.
    let out = drain(
        &mut source(json!({ "uri": uri, "until": 30 })),
        &ctx_at(&[("j", 0, 2)]),
    )
    .await;
    assert_eq!(values_of(&out, "j", 0), vec!["b"]);
    assert_eq!(spans_of(&out, "j", 0), vec![(2, 3)]);
}

#[tokio::test]
async fn markers_decide_even_without_aborted_lists_and_across_segments() {
    // As a read_uncommitted backup has it: no aborted lists in the manifests. Producer 5's
    // transaction spans two segments and aborts in the second; producer 6 commits there;
    // producer 7's transaction has no marker at all (open when the backup was taken).
    let uri = mem_uri("markers");
    let s = Storage::from_uri(&uri).unwrap();
    write_descriptor(&s, 1).await;
    write_segment(
        &s,
        "t",
        0,
        &[
            txn_batch(0, 5, &[("aborted0", 1)]),
            txn_batch(1, 6, &[("committed1", 1)]),
            batch(2, &[("plain2", 1)]),
        ],
        vec![],
        vec![],
        true,
    )
    .await;
    write_segment(
        &s,
        "t",
        0,
        &[
            txn_batch(3, 5, &[("aborted3", 1)]),
            marker(4, 6, true, 1),
            marker(5, 5, false, 1),
            txn_batch(6, 7, &[("open6", 1)]),
            batch(7, &[("plain7", 1)]),
        ],
        vec![],
        vec![],
        true,
    )
    .await;
    let out = drain(
        &mut source(json!({ "uri": uri, "read_chunk": 10 })),
        &ctx_at(&[]),
    )
    .await;
    assert_eq!(
        values_of(&out, "t", 0),
        vec!["committed1", "plain2", "plain7"]
    );
    let spans = spans_of(&out, "t", 0);
    assert_eq!((spans[0].0, spans.last().unwrap().1), (0, 8));

    // Resumed inside the aborted transaction: still dropped.
    let out = drain(&mut source(json!({ "uri": uri })), &ctx_at(&[("t", 0, 3)])).await;
    assert_eq!(values_of(&out, "t", 0), vec!["plain7"]);

    let out = drain(
        &mut source(json!({ "uri": uri, "include_aborted": true })),
        &ctx_at(&[]),
    )
    .await;
    assert_eq!(
        values_of(&out, "t", 0),
        vec![
            "aborted0",
            "committed1",
            "plain2",
            "aborted3",
            "open6",
            "plain7"
        ]
    );
}

#[tokio::test]
async fn many_partitions_take_turns() {
    let uri = mem_uri("many");
    let s = Storage::from_uri(&uri).unwrap();
    write_descriptor(&s, 1).await;
    for p in 0..40 {
        write_segment(
            &s,
            "wide",
            p,
            &[batch(0, &[("a", 1), ("b", 2)])],
            vec![],
            vec![],
            true,
        )
        .await;
    }
    let ctx = ctx_at(&[]);
    let out = drain(&mut source(json!({ "uri": uri })), &ctx).await;
    assert_eq!(out.len(), 40);
    let w = ctx.acks.watermarks();
    assert!((0..40).all(|p| w["wide"][&p] == 2));
}

#[tokio::test]
async fn overlapping_segments_never_repeat_offsets() {
    let uri = mem_uri("overlap");
    let s = Storage::from_uri(&uri).unwrap();
    write_descriptor(&s, 1).await;
    let vs: Vec<String> = (0..8).map(|i| format!("v{i}")).collect();
    let v = |r: std::ops::Range<usize>| -> Vec<(&str, i64)> {
        vs[r].iter().map(|x| (x.as_str(), 1)).collect()
    };
    write_segment(&s, "t", 0, &[batch(0, &v(0..5))], vec![], vec![], true).await;
    write_segment(&s, "t", 0, &[batch(3, &v(3..8))], vec![], vec![], true).await;
    let out = drain(&mut source(json!({ "uri": uri })), &ctx_at(&[])).await;
    assert_eq!(offsets_of(&out, "t", 0), (0..8).collect::<Vec<i64>>());
    let r = ferry_sources::backup::verify::verify_backup(s, None)
        .await
        .unwrap();
    assert!(r.is_ok());
    assert_eq!(r.warnings(), 1, "{:?}", r.problems);
    assert!(r.problems[0].message.contains("overlap"));
}
