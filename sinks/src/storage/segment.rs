//! Segments: opening an object for a partition's run of offsets, appending encoded
//! bytes, and closing it (object, dead letters, manifest, then the acks) when it rolls.

use super::local_file::{LocalFile, SegmentWriter};
use super::pieces::Piece;
use super::StorageSink;
use bytes::Bytes;
use ferry_core::encryption::{envelope, Sealer};
use ferry_core::{Ack, Error, Result};
use ferry_formats::layout::{self, Gap, PendingSegment, SegmentEncryption, SegmentManifest};
use ferry_formats::segment::SegmentEncoder;
use std::sync::Arc;
use std::time::Instant;

/// Segments closed at once by [`StorageSink::close_all`]: enough to overlap the store's
/// latency (uploads, `fsync`s, manifests), few enough that their last parts fit in memory.
const CLOSES_IN_PARALLEL: usize = 16;

/// A segment being written: its object writer, encoder and what its manifest will say.
pub(super) struct OpenSegment {
    pub(super) first_offset: i64,
    pub(super) next_offset: i64,
    pub(super) records: u64,
    pub(super) min_ts: Option<i64>,
    pub(super) max_ts: Option<i64>,
    pub(super) bytes: u64,
    /// Bytes the records took in Kafka (see `SegmentManifest::source_bytes`).
    pub(super) source_bytes: u64,
    pub(super) crc: u32,
    pub(super) aborted: Vec<ferry_core::AbortedTxn>,
    pub(super) gaps: Vec<Gap>,
    pub(super) key: String,
    /// Time bucket of the object's name (`{date}`/`{hour}` templates only).
    pub(super) bucket: Option<i64>,
    /// Marker written before a templated object, removed after its manifest.
    pub(super) pending: Option<String>,
    pub(super) writer: SegmentWriter,
    pub(super) encoder: Box<dyn SegmentEncoder>,
    /// Encrypts the object as it is written (`encryption:` set); `bytes` and `crc` count
    /// the stored (encrypted) bytes.
    pub(super) sealer: Option<Sealer>,
    pub(super) acks: Vec<Ack>,
    pub(super) opened: Instant,
}

impl StorageSink {
    pub(super) async fn open_segment(&mut self, piece: &Piece) -> Result<OpenSegment> {
        self.ensure_descriptor().await?;
        let batch = &piece.batch;
        let ext = self.format.extension();
        let (key, pending) = match &self.template {
            None => (
                layout::segment_key(&batch.topic, batch.partition, batch.first_offset, ext),
                None,
            ),
            Some(t) => {
                let key = t.render(
                    &batch.topic,
                    batch.partition,
                    batch.first_offset,
                    piece.first_ts,
                    ext,
                );
                let marker = layout::pending_key(&batch.topic, batch.partition, batch.first_offset);
                let json = serde_json::to_vec_pretty(&PendingSegment {
                    segment: key.clone(),
                    started_at_ms: layout::now_ms(),
                })
                .map_err(|e| Error::internal(format!("encoding {marker}: {e}")))?;
                self.storage.write(&marker, json).await?;
                (key, Some(marker))
            }
        };
        // Before the object exists: a key provider that fails leaves nothing behind.
        let sealer = match &self.keys {
            Some(keys) => Some(Sealer::new(keys.as_ref(), &key).await?),
            None => None,
        };
        let writer = match self.storage.local_root() {
            // A new local file: Ferry's own writer, which holds no buffer per open segment
            // (see `local_file`). (An existing file — never the case after reconciling — is
            // appended to in place through opendal.)
            Some(root) if !self.storage.exists(&key).await? => {
                SegmentWriter::Local(LocalFile::create(root, &key).await.map_err(|e| {
                    self.storage
                        .fail(format!("creating {}/{key}", self.storage), e)
                })?)
            }
            _ => {
                let mut writer = self.storage.operator()?.writer_with(&key);
                if !self.local {
                    // Object stores upload in parts of this size.
                    writer = writer.chunk(self.config.chunk_size.bytes() as usize);
                }
                SegmentWriter::Opendal(writer.await.map_err(|e| {
                    self.storage
                        .fail(format!("opening {}/{key}", self.storage), e)
                })?)
            }
        };
        let bucket = match (&self.template, piece.bucket) {
            (Some(t), None) => t.bucket(piece.first_ts),
            (_, b) => b,
        };
        Ok(OpenSegment {
            first_offset: batch.first_offset,
            next_offset: batch.first_offset,
            records: 0,
            source_bytes: 0,
            min_ts: None,
            max_ts: None,
            bytes: 0,
            crc: 0,
            aborted: Vec::new(),
            gaps: Vec::new(),
            key,
            bucket,
            pending,
            writer,
            encoder: self
                .format
                .encoder(&batch.topic, batch.partition, batch.first_offset),
            sealer,
            acks: Vec::new(),
            opened: Instant::now(),
        })
    }

    /// Appends encoded bytes to the segment (encrypted first when the sink encrypts).
    pub(super) async fn append(&self, seg: &mut OpenSegment, bytes: Bytes) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let stored = match seg.sealer.as_mut() {
            Some(sealer) => Bytes::from(sealer.push(&bytes)?),
            None => bytes,
        };
        self.write_stored(seg, stored).await
    }

    /// Writes bytes as they are stored, counting them for the manifest.
    async fn write_stored(&self, seg: &mut OpenSegment, bytes: Bytes) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        seg.crc = crc32c::crc32c_append(seg.crc, &bytes);
        seg.bytes += bytes.len() as u64;
        // Through `fail`: a full or read-only disk is one line saying so and what to do.
        seg.writer.write(bytes).await.map_err(|e| {
            self.storage
                .fail(format!("writing {}/{}", self.storage, seg.key), e)
        })
    }

    /// Closes a segment: rest of the bytes, the object, then its manifest, then the acks.
    pub(super) async fn close_segment(
        &self,
        topic: &str,
        partition: i32,
        mut seg: OpenSegment,
    ) -> Result<i64> {
        let tail = match seg.encoder.finish() {
            Ok(t) => t,
            Err(e) => {
                let _ = seg.writer.abort().await;
                return Err(e);
            }
        };
        self.append(&mut seg, tail).await?;
        let encryption = match seg.sealer.take() {
            Some(sealer) => {
                let encryption = SegmentEncryption {
                    scheme: envelope::SCHEME.to_string(),
                    key_id: sealer.key_id().to_string(),
                    plain_bytes: sealer.plain_bytes(),
                };
                self.write_stored(&mut seg, Bytes::from(sealer.finish()?))
                    .await?;
                Some(encryption)
            }
            None => None,
        };
        // A task that lost its partitions must not even complete the object: its successor
        // may be writing the same key.
        if let Err(e) = self.check_writer().await {
            let _ = seg.writer.abort().await;
            return Err(e);
        }
        seg.writer.close().await.map_err(|e| {
            self.storage
                .fail(format!("closing {}/{}", self.storage, seg.key), e)
        })?;
        // Locked before its manifest commits it: a committed segment is always locked.
        self.lock_object(&seg.key).await?;
        self.write_dead_letters(topic, partition, &mut seg).await?;
        seg.aborted.sort_by_key(|a| (a.first_offset, a.producer_id));
        seg.aborted.dedup();
        let manifest = SegmentManifest {
            format: self.format.name().to_string(),
            topic: topic.to_string(),
            partition,
            first_offset: seg.first_offset,
            next_offset: seg.next_offset,
            record_count: seg.encoder.records_written().unwrap_or(seg.records),
            min_timestamp: seg.min_ts,
            max_timestamp: seg.max_ts,
            bytes: seg.bytes,
            crc32c: seg.crc,
            segment: seg.key.clone(),
            aborted: seg.aborted,
            gaps: seg.gaps,
            written_at_ms: layout::now_ms(),
            encryption,
            source_bytes: Some(seg.source_bytes),
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::internal(format!("encoding manifest: {e}")))?;
        let mkey = layout::manifest_key(topic, partition, seg.first_offset);
        self.check_writer().await?;
        if !self.storage.write_new(&mkey, json).await? {
            return Err(Error::refused(format!(
                "{}/{mkey} already exists: another writer is using this backup location",
                self.storage
            )));
        }
        // A crash before this leaves the newest manifest unlocked: the next open locks it.
        self.lock_object(&mkey).await?;
        if let Some(marker) = &seg.pending {
            // The manifest commits the segment; a marker left behind is removed on start.
            if let Err(e) = self.storage.delete(marker).await {
                tracing::warn!(marker = %marker, error = %e, "could not remove a pending-segment marker (removed on next start)");
            }
        }
        metrics::counter!("ferry_segments_written_total").increment(1);
        tracing::debug!(segment = %seg.key, records = seg.records, bytes = seg.bytes, "segment written");
        for a in seg.acks {
            a.resolve();
        }
        Ok(seg.next_offset)
    }

    /// Locks an object just written (S3 Object Lock) when the sink has `object_lock:`,
    /// until now + its days.
    pub(super) async fn lock_object(&self, key: &str) -> Result<()> {
        if let Some(lock) = &self.config.object_lock {
            let retention = lock.retention_from(layout::now_ms());
            self.storage.lock(key, &retention).await?;
            tracing::debug!(object = %key, %retention, "locked");
        }
        Ok(())
    }

    pub(super) async fn close_where(&mut self, due: impl Fn(&OpenSegment) -> bool) -> Result<()> {
        let keys: Vec<(Arc<str>, i32)> = self
            .open
            .iter()
            .filter(|(_, s)| due(s))
            .map(|(k, _)| k.clone())
            .collect();
        let segs: Vec<_> = keys
            .into_iter()
            .filter_map(|k| self.open.remove(&k).map(|seg| (k, seg)))
            .collect();
        self.close_all(segs).await
    }

    /// Closes `segs`, up to [`CLOSES_IN_PARALLEL`] at a time: each close waits on the store
    /// (the last part's upload, an `fsync`, the manifest), so a checkpoint or the end of a
    /// backup of thousands of partitions would otherwise wait for them one after another.
    /// Each segment's manifest still follows its own object; segments of different
    /// partitions have no order among them.
    pub(super) async fn close_all(
        &mut self,
        segs: Vec<((Arc<str>, i32), OpenSegment)>,
    ) -> Result<()> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let this = &*self;
        let closed: Vec<((Arc<str>, i32), i64)> = stream::iter(segs)
            .map(|(k, seg)| async move {
                let next = this.close_segment(&k.0, k.1, seg).await?;
                Ok::<_, Error>((k, next))
            })
            .buffer_unordered(CLOSES_IN_PARALLEL)
            .try_collect()
            .await?;
        self.last_next.extend(closed);
        Ok(())
    }

    /// Bytes `seg` holds in memory: what its encoder and sealer buffer, and on object
    /// stores the upload part being filled (local files are written through).
    pub(super) fn buffered(&self, seg: &OpenSegment) -> u64 {
        let part = if self.local {
            0
        } else {
            seg.bytes % self.config.chunk_size.bytes().max(1)
        };
        (seg.encoder.buffered_bytes() + seg.sealer.as_ref().map_or(0, Sealer::buffered)) as u64
            + part
    }

    /// Keeps the open segments' buffers within `max_buffered_bytes`: when they hold more,
    /// closes the segments holding most until half the budget is left. Adding the buffers
    /// up visits every open segment, so it is done every `open / 64` pieces (at most that
    /// many pieces past the budget before it is noticed), not after each one.
    pub(super) async fn bound_buffers(&mut self) -> Result<()> {
        self.pieces_since_check += 1;
        if self.pieces_since_check < (self.open.len() / 64).max(1) {
            return Ok(());
        }
        self.pieces_since_check = 0;
        let budget = self.config.max_buffered_bytes.bytes();
        let mut sizes: Vec<(u64, (Arc<str>, i32))> = self
            .open
            .iter()
            .map(|(k, s)| (self.buffered(s), k.clone()))
            .filter(|(b, _)| *b > 0)
            .collect();
        let mut total: u64 = sizes.iter().map(|(b, _)| b).sum();
        if total <= budget {
            return Ok(());
        }
        sizes.sort_by_key(|s| std::cmp::Reverse(s.0));
        let mut segs = Vec::new();
        for (size, k) in sizes {
            if total <= budget / 2 {
                break;
            }
            if let Some(seg) = self.open.remove(&k) {
                segs.push((k, seg));
                total -= size;
            }
        }
        let closed = segs.len();
        self.close_all(segs).await?;
        metrics::counter!("ferry_segments_closed_for_memory_total").increment(closed as u64);
        tracing::debug!(
            closed,
            open = self.open.len(),
            budget,
            left = total,
            "open segments held more than max_buffered_bytes: closed the largest"
        );
        Ok(())
    }

    pub(super) fn roll_due(&self, seg: &OpenSegment) -> bool {
        let buffered =
            seg.encoder.buffered_bytes() + seg.sealer.as_ref().map_or(0, Sealer::buffered);
        seg.bytes + buffered as u64 >= self.config.roll.max_bytes.bytes()
            || seg.records >= self.config.roll.max_records
            || seg.opened.elapsed() >= self.config.roll.max_age.get()
    }
}
