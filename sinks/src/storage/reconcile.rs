//! Reconciling on open: the descriptor (`ferry.json`), objects of interrupted writes
//! removed, and the offsets the manifests cover reported as durable.

use super::{topic_of, StorageSink};
use ferry_core::{Error, Offsets, Result};
use ferry_formats::layout::{self, Descriptor, PendingSegment, SegmentManifest};

impl StorageSink {
    /// Makes the location ready and reports what it durably holds: checks the storage,
    /// writes (or checks) the descriptor, removes what interrupted writes left, and
    /// returns the next offset after the last manifest of each partition.
    pub(super) async fn reconcile(&mut self) -> Result<Offsets> {
        self.storage.check().await?;
        self.write_descriptor().await?;
        self.reconcile_pending().await?;
        let keys = self.storage.list("topics/").await?;
        let inv = layout::Inventory::from_keys(&keys);
        for (topic, partition, first, ext) in inv.orphans() {
            let key = layout::segment_key(&topic, partition, first, &ext);
            tracing::warn!(segment = %key, "removing a segment without manifest (an interrupted write)");
            self.storage.delete(&key).await?;
        }
        let mut durable = Offsets::new();
        for ((topic, partition), firsts) in &inv.manifests {
            let Some(last) = firsts.last() else { continue };
            let Some(m) = self.read_manifest(topic, *partition, *last).await? else {
                return Err(Error::Corrupt(format!(
                    "{}/{}: listed but gone",
                    self.storage,
                    layout::manifest_key(topic, *partition, *last)
                )));
            };
            self.last_next
                .insert((topic_of(topic), *partition), m.next_offset);
            durable
                .entry(topic.clone())
                .or_default()
                .insert(*partition, m.next_offset);
        }
        Ok(durable)
    }

    async fn write_descriptor(&self) -> Result<()> {
        match self.storage.read_opt(layout::DESCRIPTOR).await? {
            Some(bytes) => {
                let d: Descriptor = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Corrupt(format!("{}/{}: {e}", self.storage, layout::DESCRIPTOR))
                })?;
                if d.layout_version > layout::LAYOUT_VERSION {
                    return Err(Error::config(format!(
                        "{} was written by a newer Ferry (layout {}); this build writes layout {}: upgrade Ferry",
                        self.storage, d.layout_version, layout::LAYOUT_VERSION
                    )));
                }
            }
            None => {
                let d = Descriptor {
                    layout_version: layout::LAYOUT_VERSION,
                    created_by: format!("ferry {}", env!("CARGO_PKG_VERSION")),
                    created_at_ms: layout::now_ms(),
                };
                let json = serde_json::to_vec_pretty(&d)
                    .map_err(|e| Error::internal(format!("encoding descriptor: {e}")))?;
                self.storage.write_new(layout::DESCRIPTOR, json).await?;
            }
        }
        Ok(())
    }

    /// Deletes what interrupted templated writes left: objects named by a `pending/` marker
    /// whose manifest is missing (or names another object), then the markers.
    async fn reconcile_pending(&self) -> Result<()> {
        for key in self.storage.list(layout::PENDING_PREFIX).await? {
            let Some((topic, partition, first)) = layout::parse_pending_key(&key) else {
                continue;
            };
            let Some(bytes) = self.storage.read_opt(&key).await? else {
                continue;
            };
            let marker: PendingSegment = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Corrupt(format!(
                    "{}/{key}: not a pending-segment marker ({e}); if no Ferry writes to this location, delete it",
                    self.storage
                ))
            })?;
            let committed = self
                .read_manifest(&topic, partition, first)
                .await?
                .is_some_and(|m| m.segment == marker.segment);
            if !committed {
                tracing::warn!(segment = %marker.segment, "removing a segment without manifest (an interrupted write)");
                self.storage.delete(&marker.segment).await?;
            }
            self.storage.delete(&key).await?;
        }
        Ok(())
    }

    /// The manifest of a partition's segment starting at `first`, if there is one.
    async fn read_manifest(
        &self,
        topic: &str,
        partition: i32,
        first: i64,
    ) -> Result<Option<SegmentManifest>> {
        let key = layout::manifest_key(topic, partition, first);
        let Some(bytes) = self.storage.read_opt(&key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt(format!("{}/{key}: {e}", self.storage)))
    }
}
