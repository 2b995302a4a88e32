//! Reconciling on open: the descriptor (`ferry.json`), objects of interrupted writes
//! removed, and the offsets the manifests cover reported as durable.

use super::{topic_of, StorageSink};
use ferry_core::{Error, Offsets, Result};
use ferry_formats::layout::{self, Descriptor, PendingSegment, SegmentManifest};

impl StorageSink {
    /// Makes the location ready and reports what it durably holds: checks the storage and
    /// the descriptor (written later, with the first object), removes what interrupted writes left, and
    /// returns the next offset after the last manifest of each partition.
    pub(super) async fn reconcile(&mut self) -> Result<Offsets> {
        self.storage.check().await?;
        // Before anything is written: a bucket without Object Lock cannot keep the promise.
        self.check_object_lock().await?;
        self.check_descriptor().await?;
        let keys = self.storage.list("topics/").await?;
        let inv = layout::Inventory::from_keys(&keys);
        let mut lasts = Vec::with_capacity(inv.manifests.len());
        for ((topic, partition), firsts) in &inv.manifests {
            let Some(last) = firsts.last() else { continue };
            let Some(m) = self.read_manifest(topic, *partition, *last).await? else {
                return Err(Error::Corrupt(format!(
                    "{}/{}: listed but gone",
                    self.storage,
                    layout::manifest_key(topic, *partition, *last)
                )));
            };
            lasts.push((topic.clone(), *partition, m));
        }
        // Before the lease or any other write: the keys must fit what the location holds.
        self.check_encryption(lasts.iter().map(|(_, _, m)| m))?;
        if self.descriptor_written {
            // Before deleting anything: what looks interrupted may be another writer's.
            self.take_lease().await?;
        }
        self.reconcile_pending().await?;
        for (topic, partition, first, ext) in inv.orphans() {
            if !self.owns(&topic, partition) {
                // Another task's segment, possibly being written right now.
                continue;
            }
            let key = layout::segment_key(&topic, partition, first, &ext);
            tracing::warn!(segment = %key, "removing a segment without manifest (an interrupted write)");
            self.storage.delete(&key).await?;
        }
        self.relock_newest(&lasts).await?;
        let mut durable = Offsets::new();
        for (topic, partition, m) in lasts {
            self.last_next
                .insert((topic_of(&topic), partition), m.next_offset);
            durable
                .entry(topic)
                .or_default()
                .insert(partition, m.next_offset);
        }
        Ok(durable)
    }

    /// With `object_lock:`, checks that the bucket has S3 Object Lock enabled
    /// (GetObjectLockConfiguration), so nothing is written unlocked.
    async fn check_object_lock(&self) -> Result<()> {
        let Some(lock) = &self.config.object_lock else {
            return Ok(());
        };
        if self.storage.object_lock_enabled().await? {
            return Ok(());
        }
        Err(Error::config(format!(
            "object_lock: the bucket of {} does not have S3 Object Lock enabled, so its objects cannot be locked ({} for {} days asked). Enable it on the bucket (a new bucket: `aws s3api create-bucket --object-lock-enabled-for-bucket`; an existing one: enable versioning, then `aws s3api put-object-lock-configuration --object-lock-configuration ObjectLockEnabled=Enabled`), write to a bucket that has it, or remove object_lock",
            self.storage, lock.mode, lock.days
        )))
    }

    /// With `object_lock:`, locks the newest manifest and segment of each partition this
    /// writer owns when they have no retention: a crash between writing a manifest and
    /// locking it left them so (older ones were locked before the next was written).
    async fn relock_newest(&self, lasts: &[(String, i32, SegmentManifest)]) -> Result<()> {
        let Some(lock) = &self.config.object_lock else {
            return Ok(());
        };
        for (topic, partition, m) in lasts {
            if !self.owns(topic, *partition) {
                continue;
            }
            let manifest = layout::manifest_key(topic, *partition, m.first_offset);
            for key in [&m.segment, &manifest] {
                if self.storage.retention(key).await?.is_none() {
                    let retention = lock.retention_from(layout::now_ms());
                    tracing::warn!(object = %key, %retention, "locking an object a crashed run wrote but did not lock");
                    self.storage.lock(key, &retention).await?;
                }
            }
        }
        Ok(())
    }

    /// Checks the descriptor of a location that has one (a newer layout is refused) and
    /// notes whether it exists: a new location gets it with its first object
    /// ([`StorageSink::ensure_descriptor`]), so a run that fails before writing anything
    /// leaves nothing behind.
    async fn check_descriptor(&mut self) -> Result<()> {
        let Some(bytes) = self.storage.read_opt(layout::DESCRIPTOR).await? else {
            self.descriptor_written = false;
            return Ok(());
        };
        let d: Descriptor = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupt(format!("{}/{}: {e}", self.storage, layout::DESCRIPTOR)))?;
        if d.layout_version > layout::LAYOUT_VERSION {
            return Err(Error::config(format!(
                "{} was written by a newer Ferry (layout {}); this build writes layout {}: upgrade Ferry",
                self.storage, d.layout_version, layout::LAYOUT_VERSION
            )));
        }
        self.descriptor_written = true;
        Ok(())
    }

    /// Takes this location's lease (see [`super::lease`]) unless held already.
    async fn take_lease(&mut self) -> Result<()> {
        if self.scope.is_some() {
            // A task of a worker group: the group's assignment and fence make it the only
            // writer of its partitions, and the other tasks write beside it.
            return Ok(());
        }
        if self.lease.is_none() {
            let ttl = self.config.lease_ttl.get();
            self.lease = Some(super::lease::Lease::acquire(&self.storage, ttl).await?);
            // Under the lease, what is staged in `.ferry-tmp/` is no other writer's: it is
            // what a crashed run of this location left.
            self.remove_staged_leftovers();
            // Likewise the unfinished multipart uploads of an S3 location. (Tasks of a
            // worker group hold no lease and leave them: another task may be uploading.)
            match self.storage.abort_incomplete_uploads().await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(location = %self.storage, uploads = n, "aborted the unfinished multipart uploads a crashed run left")
                }
                Err(e) => {
                    tracing::warn!(location = %self.storage, error = %ferry_core::error_chain(&e), "could not look for unfinished multipart uploads (they stay until the bucket's lifecycle rule removes them)")
                }
            }
        }
        Ok(())
    }

    /// Deletes the files of `.ferry-tmp/` (writes a crashed run staged but never renamed
    /// into place). Best effort: a file that cannot be removed is logged.
    fn remove_staged_leftovers(&self) {
        let Some(root) = self.storage.local_root() else {
            return;
        };
        let tmp = root.join(ferry_core::storage::TMP_DIR);
        let Ok(entries) = std::fs::read_dir(&tmp) else {
            return;
        };
        let (mut files, mut bytes) = (0u64, 0u64);
        for entry in entries.flatten() {
            let path = entry.path();
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    files += 1;
                    bytes += size;
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "could not remove a staged file of a crashed run")
                }
            }
        }
        if files > 0 {
            tracing::info!(folder = %tmp.display(), files, bytes, "removed staged files of a crashed run");
        }
    }

    /// An error when this writer lost its lease, or (a task of a worker group) its
    /// partitions: nothing more may be committed.
    pub(super) async fn check_writer(&self) -> Result<()> {
        self.lease
            .as_ref()
            .map_or(Ok(()), super::lease::Lease::check)?;
        match &self.scope {
            Some(scope) => scope.check_fence().await,
            None => Ok(()),
        }
    }

    /// Takes the lease and writes the descriptor (`ferry.json`) before the first object of
    /// a new location.
    pub(super) async fn ensure_descriptor(&mut self) -> Result<()> {
        self.take_lease().await?;
        if self.descriptor_written {
            return Ok(());
        }
        let d = Descriptor {
            layout_version: layout::LAYOUT_VERSION,
            created_by: format!("ferry {}", env!("CARGO_PKG_VERSION")),
            created_at_ms: layout::now_ms(),
        };
        let json = serde_json::to_vec_pretty(&d)
            .map_err(|e| Error::internal(format!("encoding descriptor: {e}")))?;
        // Create-only: another writer's descriptor (the same layout) is as good as ours.
        self.storage.write_new(layout::DESCRIPTOR, json).await?;
        self.descriptor_written = true;
        Ok(())
    }

    /// Deletes what interrupted templated writes left: objects named by a `pending/` marker
    /// whose manifest is missing (or names another object), then the markers.
    async fn reconcile_pending(&self) -> Result<()> {
        for key in self.storage.list(layout::PENDING_PREFIX).await? {
            let Some((topic, partition, first)) = layout::parse_pending_key(&key) else {
                continue;
            };
            if !self.owns(&topic, partition) {
                continue;
            }
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
