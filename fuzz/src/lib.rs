//! Shared by the backup fuzz targets: one tokio runtime and an in-memory storage, so each
//! input goes through the same async readers a restore uses, without a disk. Built with the
//! `backup` feature only.
#![cfg(feature = "backup")]

use ferry_core::Storage;
use std::sync::OnceLock;
use tokio::runtime::Runtime;

/// A current-thread runtime built once per fuzzing process.
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the fuzz target")
    })
}

/// The in-memory storage `name` (shared by every `Storage` of that name in the process).
pub fn memory(name: &str) -> Storage {
    Storage::from_uri(&format!("memory://{name}")).expect("memory storage")
}

/// Writes `data` to `key`; a failure of the in-memory store is a harness bug, not a finding.
pub async fn put(storage: &Storage, key: &str, data: impl Into<bytes::Bytes>) {
    storage
        .write(key, data.into())
        .await
        .expect("writing to in-memory storage");
}

/// Sets the CRC of every whole Kafka v2 batch in `buf` (bytes 17..21 of a batch, over the
/// bytes from its attributes to its end), so that mutated inputs get past the CRC check and
/// reach the record parser, the decompressors and the readers' later checks.
pub fn fix_batch_crcs(buf: &mut [u8]) {
    let mut pos = 0usize;
    while pos + 61 <= buf.len() {
        let len = i32::from_be_bytes([buf[pos + 8], buf[pos + 9], buf[pos + 10], buf[pos + 11]]);
        if len < 49 {
            return;
        }
        let end = pos + 12 + len as usize;
        if end > buf.len() {
            return;
        }
        let crc = crc32c::crc32c(&buf[pos + 21..end]);
        buf[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}
