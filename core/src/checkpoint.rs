//! Checkpoints: the authoritative resume point of a pipeline, `checkpoints/<pipeline>.json`.
//!
//! ```json
//! {
//!   "pipeline": "orders-backup",
//!   "updated_at": "2026-11-24T10:00:00.123Z",
//!   "offsets": { "orders": { "0": 1200, "1": 1187 } }
//! }
//! ```
//!
//! `offsets` holds, per topic and partition, the next offset to read: everything below it is
//! durable in the sink. The runtime writes a checkpoint only after `sink.flush()` returned,
//! and only from the ack tracker's contiguous watermarks merged over the loaded checkpoint,
//! so a checkpoint never claims data that is not durable.

use crate::ack::Offsets;
use crate::error::{Error, Result};
use crate::storage::Storage;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The content of `checkpoints/<pipeline>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The pipeline's name.
    pub pipeline: String,
    /// When it was written, RFC 3339 UTC.
    pub updated_at: String,
    /// Next offset per topic and partition.
    pub offsets: Offsets,
}

impl Checkpoint {
    /// A checkpoint of `offsets` stamped now.
    pub fn now(pipeline: &str, offsets: Offsets) -> Self {
        let updated_at = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string());
        Checkpoint {
            pipeline: pipeline.to_string(),
            updated_at,
            offsets,
        }
    }
}

/// Reads and writes one pipeline's checkpoint in a storage.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    storage: Storage,
    pipeline: String,
    shared: bool,
}

impl CheckpointStore {
    /// The checkpoint of `pipeline` in `storage`.
    pub fn new(storage: Storage, pipeline: impl Into<String>) -> Self {
        CheckpointStore {
            storage,
            pipeline: pipeline.into(),
            shared: false,
        }
    }

    /// A store several tasks write, each for its own partitions: [`CheckpointStore::save`]
    /// then keeps, per partition, the furthest of what is stored and what it is given, so
    /// one task never moves another's partitions back.
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }

    /// The object key: `checkpoints/<pipeline>.json`.
    pub fn key_for(pipeline: &str) -> String {
        format!("checkpoints/{pipeline}.json")
    }

    /// This store's object key.
    pub fn key(&self) -> String {
        Self::key_for(&self.pipeline)
    }

    /// The storage it lives in.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Loads the checkpoint, or `None` if none was written yet.
    pub async fn load(&self) -> Result<Option<Checkpoint>> {
        let key = self.key();
        let Some(bytes) = self.storage.read_opt(&key).await? else {
            return Ok(None);
        };
        let cp: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Corrupt(format!(
                "checkpoint {}/{key} is not valid JSON ({e}); fix or delete it to start over",
                self.storage
            ))
        })?;
        if cp.pipeline != self.pipeline {
            return Err(Error::Corrupt(format!(
                "checkpoint {}/{key} belongs to pipeline '{}', not '{}'",
                self.storage, cp.pipeline, self.pipeline
            )));
        }
        Ok(Some(cp))
    }

    /// Writes `offsets` as the checkpoint (replacing the previous one) and returns it.
    pub async fn save(&self, offsets: &Offsets) -> Result<Checkpoint> {
        let offsets = if self.shared {
            match self.load().await? {
                Some(stored) => furthest_offsets(&stored.offsets, offsets),
                None => offsets.clone(),
            }
        } else {
            offsets.clone()
        };
        let cp = Checkpoint::now(&self.pipeline, offsets);
        let mut json = serde_json::to_vec_pretty(&cp)
            .map_err(|e| Error::internal(format!("serializing checkpoint: {e}")))?;
        json.push(b'\n');
        self.storage.write(&self.key(), json).await?;
        Ok(cp)
    }
}

/// Per topic and partition, the larger offset of `a` and `b`.
pub fn furthest_offsets(a: &Offsets, b: &Offsets) -> Offsets {
    let mut out = a.clone();
    for (topic, parts) in b {
        let t = out.entry(topic.clone()).or_default();
        for (p, o) in parts {
            let e = t.entry(*p).or_insert(*o);
            *e = (*e).max(*o);
        }
    }
    out
}

/// `base` with every offset of `update` laid over it (per topic and partition).
pub fn merge_offsets(base: &Offsets, update: &Offsets) -> Offsets {
    let mut out = base.clone();
    for (topic, parts) in update {
        let t = out.entry(topic.clone()).or_default();
        for (p, o) in parts {
            t.insert(*p, *o);
        }
    }
    out
}

/// The local folder where Ferry keeps state that belongs to this machine's runs, not to
/// the data they read: `$FERRY_STATE_DIR`, else `$XDG_STATE_HOME/ferry`, else
/// `$HOME/.local/state/ferry`. An error when none of them is set.
pub fn local_state_dir() -> Result<std::path::PathBuf> {
    local_state_dir_from(|k| std::env::var_os(k).filter(|v| !v.is_empty()))
}

fn local_state_dir_from(
    var: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<std::path::PathBuf> {
    if let Some(d) = var("FERRY_STATE_DIR") {
        return Ok(d.into());
    }
    if let Some(d) = var("XDG_STATE_HOME") {
        return Ok(std::path::PathBuf::from(d).join("ferry"));
    }
    if let Some(home) = var("HOME") {
        return Ok(std::path::PathBuf::from(home).join(".local/state/ferry"));
    }
    Err(Error::config(
        "no local state folder: set FERRY_STATE_DIR, XDG_STATE_HOME or HOME, or give the restore --state (delivery.checkpoint)",
    ))
}

/// Where a restore from `backup_uri` keeps its checkpoint and offset map by default: a
/// folder of the [`local_state_dir`] named after the backup (a 64-bit FNV-1a hash of its
/// URI), never the backup itself, which a restore only reads (it may be read-only or
/// Object-Locked).
pub fn default_restore_state(backup_uri: &str) -> Result<String> {
    let dir = local_state_dir()?
        .join("restore")
        .join(format!("{:016x}", fnv1a64(backup_uri.trim().as_bytes())));
    Ok(dir.to_string_lossy().into_owned())
}

/// 64-bit FNV-1a: a stable name for a string (not a security hash).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_state_dir_follows_ferry_then_xdg_then_home() {
        let vars = |set: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                set.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        static ALL: [(&str, &str); 3] = [
            ("FERRY_STATE_DIR", "/f"),
            ("XDG_STATE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        let all = &ALL;
        assert_eq!(
            local_state_dir_from(vars(all)).unwrap(),
            std::path::PathBuf::from("/f")
        );
        assert_eq!(
            local_state_dir_from(vars(&all[1..])).unwrap(),
            std::path::PathBuf::from("/x/ferry")
        );
        assert_eq!(
            local_state_dir_from(vars(&all[2..])).unwrap(),
            std::path::PathBuf::from("/h/.local/state/ferry")
        );
        let none = local_state_dir_from(vars(&[])).unwrap_err().to_string();
        assert!(none.contains("--state"), "{none}");
    }

    #[test]
    fn restore_state_is_named_after_the_backup() {
        let a = default_restore_state("/backups/a").unwrap();
        let b = default_restore_state("/backups/b").unwrap();
        assert_ne!(a, b);
        assert_eq!(a, default_restore_state(" /backups/a ").unwrap());
        assert!(!a.starts_with("/backups"), "{a}");
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[tokio::test]
    async fn save_load_roundtrip() {
        let s = Storage::from_uri("memory://checkpoint-test").unwrap();
        let store = CheckpointStore::new(s.clone(), "p1");
        assert!(store.load().await.unwrap().is_none());
        let mut o = Offsets::new();
        o.entry("t".into()).or_default().insert(3, 42);
        store.save(&o).await.unwrap();
        let cp = store.load().await.unwrap().unwrap();
        assert_eq!(cp.offsets, o);
        let raw: serde_json::Value =
            serde_json::from_slice(&s.read("checkpoints/p1.json").await.unwrap()).unwrap();
        assert_eq!(raw["offsets"]["t"]["3"], 42);
        assert_eq!(raw["pipeline"], "p1");
        assert!(time::OffsetDateTime::parse(raw["updated_at"].as_str().unwrap(), &Rfc3339).is_ok());
        // Another pipeline's file is refused.
        let other = CheckpointStore::new(s.clone(), "p2");
        s.write("checkpoints/p2.json", serde_json::to_vec(&cp).unwrap())
            .await
            .unwrap();
        assert!(other.load().await.is_err());
    }

    #[test]
    fn merge_keeps_unmentioned_partitions() {
        let mut a = Offsets::new();
        a.entry("t".into()).or_default().insert(0, 10);
        a.entry("t".into()).or_default().insert(1, 5);
        let mut b = Offsets::new();
        b.entry("t".into()).or_default().insert(1, 7);
        b.entry("u".into()).or_default().insert(0, 1);
        let m = merge_offsets(&a, &b);
        assert_eq!(m["t"][&0], 10);
        assert_eq!(m["t"][&1], 7);
        assert_eq!(m["u"][&0], 1);
    }
}
