//! The JSON documents and object names of a backup as Ferry reads them: the first byte
//! picks what the rest is —
//!
//! 0. a segment manifest, read by `Catalog::read_manifest` (with its checks that it
//!    describes the segment its name says);
//! 1. the backup descriptor `ferry.json`, read by `Catalog::open`;
//! 2. a topic document, read by `Catalog::topic_document`;
//! 3. a consumer-groups snapshot, read by `Catalog::groups_document`;
//! 4. a pending-segment marker, parsed as the storage sink's reconciliation does;
//! 5. object names, one per line, parsed by `layout::parse_key` / `parse_pending_key` and
//!    `Inventory::from_keys` (what a listing of the backup becomes);
//! 6. a sink `path:` template, parsed by `PathTemplate::parse` and rendered.
//!
//! Errors are expected; a panic is a finding. Checkpoints have their own target.
#![no_main]

use ferry_formats::layout::{self, Entry, Inventory, PathTemplate, PendingSegment};
use ferry_kafka_fuzz::{memory, put, runtime};
use ferry_sources::backup::Catalog;
use libfuzzer_sys::fuzz_target;

const DESCRIPTOR: &str = r#"{"layout_version":1,"created_by":"ferry fuzz","created_at_ms":0}"#;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let (pick, doc) = (data[0] % 7, &data[1..]);
    match pick {
        0..=3 => runtime().block_on(read_document(pick, doc)),
        4 => {
            let _ = serde_json::from_slice::<PendingSegment>(doc);
        }
        5 => names(doc),
        _ => template(doc),
    }
});

async fn read_document(pick: u8, doc: &[u8]) {
    let storage = memory("fuzz-backup-documents");
    let descriptor = if pick == 1 {
        doc.to_vec()
    } else {
        DESCRIPTOR.as_bytes().to_vec()
    };
    put(&storage, layout::DESCRIPTOR, descriptor).await;
    let Ok(catalog) = Catalog::open(storage.clone()).await else {
        assert_eq!(pick, 1, "a valid descriptor opens");
        return;
    };
    match pick {
        0 => {
            put(&storage, &layout::manifest_key("t", 0, 5), doc.to_vec()).await;
            if let Ok(m) = catalog.read_manifest("t", 0, 5).await {
                assert!(m.topic == "t" && m.partition == 0 && m.first_offset == 5);
                assert!(m.next_offset >= m.first_offset, "checked by read_manifest");
            }
        }
        2 => {
            put(&storage, &layout::topic_key("t"), doc.to_vec()).await;
            let _ = catalog.topic_document("t").await;
        }
        3 => {
            put(&storage, &layout::groups_key(7), doc.to_vec()).await;
            let _ = catalog.groups_document(7).await;
        }
        _ => {}
    }
}

fn names(doc: &[u8]) {
    let text = String::from_utf8_lossy(doc);
    let keys: Vec<String> = text.lines().map(str::to_string).collect();
    for k in &keys {
        // A name the layout recognises is the one name the layout gives that object: two
        // names for one segment would let a stray object pass for a manifest or segment.
        match layout::parse_key(k) {
            Some(Entry::Topic { topic }) => assert_eq!(layout::topic_key(&topic), *k),
            Some(Entry::Manifest {
                topic,
                partition,
                first_offset,
            }) => assert_eq!(layout::manifest_key(&topic, partition, first_offset), *k),
            Some(Entry::Segment {
                topic,
                partition,
                first_offset,
                ext,
            }) => assert_eq!(
                layout::segment_key(&topic, partition, first_offset, &ext),
                *k
            ),
            None => {}
        }
        if let Some((topic, partition, first)) = layout::parse_pending_key(k) {
            assert_eq!(layout::pending_key(&topic, partition, first), *k, "round trip");
        }
    }
    let inventory = Inventory::from_keys(&keys);
    let _ = inventory.orphans();
}

fn template(doc: &[u8]) {
    let Ok(text) = std::str::from_utf8(doc) else { return };
    if let Ok(t) = PathTemplate::parse(text) {
        let _ = t.bucket(1_700_000_000_000);
        let _ = t.render("t", 3, 42, 1_700_000_000_000, "log");
    }
}
