//! A pipeline checkpoint (`checkpoints/<pipeline>.json`) as a resuming pipeline reads it:
//! `CheckpointStore::load` from storage, then its offsets merged with newer ones as the
//! runtime does. Errors are expected; a panic is a finding. A loaded checkpoint belongs to
//! the pipeline that asked for it.
#![no_main]

use ferry_core::checkpoint::{merge_offsets, CheckpointStore};
use ferry_kafka_fuzz::{memory, put, runtime};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let storage = memory("fuzz-checkpoint");
        let store = CheckpointStore::new(storage.clone(), "p1");
        put(&storage, &store.key(), data.to_vec()).await;
        if let Ok(Some(cp)) = store.load().await {
            assert_eq!(cp.pipeline, "p1", "load refuses another pipeline's checkpoint");
            let merged = merge_offsets(&cp.offsets, &cp.offsets);
            assert_eq!(merged, cp.offsets, "merging offsets with themselves changes nothing");
        }
    });
});
