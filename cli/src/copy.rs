//! `ferry copy`: a verified, incremental, resumable copy of a backup to another storage (a
//! second copy, an air-gapped vault pulling from the primary).

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use ferry_core::encryption::KeyProvider;
use ferry_core::object_lock::ObjectLockConfig;
use ferry_core::Storage;
use ferry_formats::layout::{self, Inventory, SegmentManifest};
use ferry_sources::backup::segment::{check_key, ChunkedObject, DEFAULT_READ_CHUNK};
use ferry_sources::backup::verify::verify_segment_with;
use futures::StreamExt;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// Copy a backup between storages (folder, S3, GCS, Azure), checking every segment against
/// its manifest.
///
/// Each segment is read from the source, checked against its manifest's size and CRC-32C
/// (a damaged source object is reported and not copied), written, and only then its
/// manifest: the copy never holds a manifest whose segment is missing or different. Objects
/// the destination already holds equal are skipped, so a run that was stopped (even by
/// SIGKILL) continues where it was, and a later run copies only what the backup added.
/// Topic documents, consumer-group snapshots, checkpoints and dead-letter files are copied
/// when missing or different. Segments without a manifest (a write in progress) and the
/// writer's lease are not copied. The copy is a complete backup: `ls`, `verify` and
/// `restore` work on it. Encrypted backups are copied as they are (no key needed); with
/// their keys, every segment the copy writes is also decrypted there and its records
/// checked before its manifest follows. With `--object-lock`, what the copy writes to S3 is
/// locked (S3 Object Lock), as the `storage` sink's `object_lock:` does.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup to copy: a local path, file://, s3://…, gs://…, azblob://…
    #[arg(value_parser = crate::shortcuts::parse_uri, value_name = "SRC")]
    pub src: String,
    /// Where the copy goes (created when missing).
    #[arg(value_parser = crate::shortcuts::parse_uri, value_name = "DST")]
    pub dst: String,
    /// Also read back every segment the copy holds — copied now or earlier — and check it
    /// against its manifest (a segment that differs is copied again).
    #[arg(long)]
    pub verify: bool,
    /// Delete objects in the copy that the backup no longer has (e.g. after `ferry prune`):
    /// manifests before their segments.
    #[arg(long)]
    pub delete_extraneous: bool,
    /// Show what would be copied or deleted; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keys of an encrypted backup: each segment the copy writes (with --verify, each it
    /// holds) is then decrypted from the copy and every batch checked, and a key that
    /// opens none of the backup's segments is refused before anything is written. Without
    /// keys an encrypted backup is copied and checked as stored (size and CRC-32C).
    #[command(flatten)]
    pub keys: crate::keygen::KeyArgs,
    /// Lock every segment and manifest the copy writes with S3 Object Lock for this long:
    /// MODE:DAYS, e.g. `governance:30d` (DST must be s3:// in a bucket with Object Lock
    /// enabled). A vault's copy then cannot be deleted with a stolen credential; prune it
    /// with `ferry prune`, which respects the locks.
    #[arg(long, value_name = "MODE:DAYS", value_parser = crate::shortcuts::parse_object_lock)]
    pub object_lock: Option<ObjectLockConfig>,
}

/// What a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Objects written (segments, manifests, other documents).
    pub copied: usize,
    /// Bytes written.
    pub bytes: u64,
    /// Objects the copy already held equal.
    pub skipped: usize,
    /// Segments of the copy read back and found equal (`--verify`).
    pub verified: usize,
    /// Objects deleted from the copy (`--delete-extraneous`).
    pub deleted: usize,
    /// Segments decrypted and checked batch by batch (`--encryption-key-file`).
    pub decrypted: usize,
}

/// Objects never copied: the writer's lease, markers of writes in progress, staged files.
fn is_transient(key: &str) -> bool {
    key.starts_with(ferry_sinks::storage::lease::LEASE_PREFIX)
        || key.starts_with(layout::PENDING_PREFIX)
        || key.starts_with(ferry_core::storage::TMP_DIR)
}

/// Partitions copied at once (each one's segments in order): object stores answer each
/// request with some delay, so several transfers in flight keep the link busy.
const PARTITIONS_IN_PARALLEL: usize = 4;

/// Bytes of a segment read (and written) at a time: a transfer holds about this much, and an
/// upload its part of the same size, whatever the segment's size.
const TRANSFER_CHUNK: u64 = 8 << 20;

/// The size and CRC-32C of an object, read in chunks (`None`: there is no such object).
async fn size_and_crc(storage: &Storage, key: &str) -> Result<Option<(u64, u32)>> {
    let Some(size) = storage.size(key).await? else {
        return Ok(None);
    };
    let mut object = ChunkedObject::new(storage.clone(), key, size, TRANSFER_CHUNK);
    let mut buf = BytesMut::new();
    while object.read_more(&mut buf, 0).await? {
        buf.clear();
    }
    Ok(Some((size, object.crc32c())))
}

struct Copier {
    src: Storage,
    dst: Storage,
    args_verify: bool,
    dry_run: bool,
    /// Keys to open the segments with and check their records (`--encryption-key-file`).
    keys: Option<Arc<dyn KeyProvider>>,
    /// S3 Object Lock for what the copy writes (`--object-lock`).
    lock: Option<ObjectLockConfig>,
    /// Counted by every transfer in flight.
    tally: Mutex<Tally>,
}

impl Copier {
    /// Adds to what the run did.
    fn count(&self, f: impl FnOnce(&mut Tally)) {
        if let Ok(mut t) = self.tally.lock() {
            f(&mut t);
        }
    }

    /// Counts an object written (logged only once written: a run killed mid-write never
    /// names the object it lost).
    fn copied(&self, key: &str, len: u64) {
        tracing::info!(object = %key, bytes = len, "copied");
        self.count(|t| {
            t.copied += 1;
            t.bytes += len;
        });
    }

    /// Writes one small object (a manifest, a document) to the copy (not in a dry run).
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let len = bytes.len() as u64;
        if !self.dry_run {
            self.dst.write(key, bytes).await?;
        }
        self.copied(key, len);
        Ok(())
    }

    /// Copies a partition's segments, each followed by its manifest, in offset order;
    /// returns the names of the objects copied or already held.
    ///
    /// In order, so that a run killed between writing a manifest and locking it leaves that
    /// one unlocked at most: the last this partition's copy held when the next run starts,
    /// which that run then finds and locks.
    async fn copy_partition(&self, manifest_keys: &[String]) -> Result<Vec<String>> {
        let mut wanted = Vec::new();
        // The last segment (and its manifest) the copy held before this run.
        let mut held_last: Option<(String, &str)> = None;
        for key in manifest_keys {
            let Some((segment, had_manifest)) = self.copy_segment(key).await? else {
                continue;
            };
            if had_manifest {
                held_last = Some((segment.clone(), key));
            } else if let Some((seg, manifest)) = held_last.take() {
                self.relock(&seg, manifest).await?;
            }
            wanted.push(segment);
            wanted.push(key.clone());
        }
        if let Some((seg, manifest)) = held_last {
            self.relock(&seg, manifest).await?;
        }
        Ok(wanted)
    }

    /// Locks a segment and its manifest that a killed run may have left unlocked.
    async fn relock(&self, segment: &str, manifest_key: &str) -> Result<()> {
        self.lock_if_unlocked(segment).await?;
        self.lock_if_unlocked(manifest_key).await
    }

    /// Copies a segment and its manifest, unless the copy holds both already; returns the
    /// segment's object name and whether the copy held its manifest already (`None`: the
    /// manifest is gone, pruned since the listing).
    async fn copy_segment(&self, manifest_key: &str) -> Result<Option<(String, bool)>> {
        let Some(manifest_bytes) = self.src.read_opt(manifest_key).await? else {
            return Ok(None);
        };
        let m: SegmentManifest = serde_json::from_slice(&manifest_bytes)
            .with_context(|| format!("{}/{manifest_key}: not a manifest", self.src))?;
        let have_manifest =
            self.dst.read_opt(manifest_key).await?.as_deref() == Some(&manifest_bytes[..]);
        if have_manifest && !self.args_verify {
            self.count(|t| t.skipped += 2);
        } else {
            self.copy_segment_object(&m, have_manifest).await?;
            if have_manifest {
                self.count(|t| t.skipped += 1);
            } else {
                self.put(manifest_key, manifest_bytes).await?;
                self.lock(manifest_key).await?;
            }
        }
        Ok(Some((m.segment, have_manifest)))
    }

    /// Makes the copy hold the segment `m` describes — unless it holds it already (written
    /// by a run stopped before the manifest, or copied earlier: with --verify it is read
    /// back either way) — then checks its records with the keys and locks it.
    async fn copy_segment_object(&self, m: &SegmentManifest, have_manifest: bool) -> Result<()> {
        let held = size_and_crc(&self.dst, &m.segment).await?;
        if held == Some((m.bytes, m.crc32c)) {
            self.count(|t| {
                if have_manifest {
                    t.verified += 1;
                }
                t.skipped += 1;
            });
            self.check_records(m).await?;
            if !have_manifest {
                self.lock_if_unlocked(&m.segment).await?;
            }
            return Ok(());
        }
        if held.is_some() && have_manifest {
            tracing::warn!(object = %m.segment, "the copy's segment differs from its manifest: copying it again");
        }
        self.transfer(m).await?;
        if self.args_verify && !self.dry_run {
            if size_and_crc(&self.dst, &m.segment).await? != Some((m.bytes, m.crc32c)) {
                bail!(
                    "{}/{}: read back after copying, the segment does not match its manifest",
                    self.dst,
                    m.segment
                );
            }
            self.count(|t| t.verified += 1);
        }
        self.check_records(m).await?;
        self.lock(&m.segment).await
    }

    /// Streams the segment `m` names from the backup into the copy (only reads it in a dry
    /// run), checking its size and CRC-32C against the manifest on the way: a damaged
    /// segment is reported and its upload aborted, never completed.
    async fn transfer(&self, m: &SegmentManifest) -> Result<()> {
        let key = &m.segment;
        let Some(size) = self.src.size(key).await? else {
            bail!(
                "{}/{key}: missing, although its manifest exists: not copied; run `ferry verify {}`",
                self.src,
                self.src
            );
        };
        let mut writer = match self.dry_run {
            true => None,
            false => Some(self.dst.writer(key, TRANSFER_CHUNK as usize).await?),
        };
        // Read ahead while the last piece uploads; the object keeps the CRC-32C of what it read.
        let mut object = ChunkedObject::new(self.src.clone(), key.as_str(), size, TRANSFER_CHUNK);
        let streamed: Result<()> = async {
            let mut buf = BytesMut::new();
            while object.read_more(&mut buf, 0).await? {
                let piece = buf.split().freeze();
                if let Some(w) = writer.as_mut() {
                    w.write(piece)
                        .await
                        .map_err(|e| self.dst.fail(format!("writing {}/{key}", self.dst), e))?;
                }
            }
            Ok(())
        }
        .await;
        let crc = object.crc32c();
        if streamed.is_err() || size != m.bytes || crc != m.crc32c {
            // Never completed: a store keeps no object, a folder no file.
            if let Some(mut w) = writer {
                if let Err(e) = w.abort().await {
                    tracing::warn!(object = %key, error = %e, "aborting an unfinished upload failed");
                }
            }
            streamed?;
            bail!(
                "{}/{key}: the backup's segment does not match its manifest ({size} bytes, CRC-32C {crc:08x}; the manifest says {} bytes, {:08x}): not copied; run `ferry verify {}`",
                self.src,
                m.bytes,
                m.crc32c,
                self.src
            );
        }
        if let Some(mut w) = writer {
            w.close()
                .await
                .map_err(|e| self.dst.fail(format!("writing {}/{key}", self.dst), e))?;
        }
        self.copied(key, size);
        Ok(())
    }

    /// With keys, decrypts the segment where it now is (the copy; the backup in a dry run)
    /// and checks every batch and the record count against its manifest.
    async fn check_records(&self, m: &SegmentManifest) -> Result<()> {
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        let storage = if self.dry_run { &self.src } else { &self.dst };
        let check = verify_segment_with(
            storage.clone(),
            m.clone(),
            DEFAULT_READ_CHUNK,
            Some(keys.clone()),
        )
        .await;
        if let Some(p) = check.problems.first() {
            bail!(
                "{storage}/{}: {} (decrypted and checked after copying{}); run `ferry verify {storage} --encryption-key-file …`",
                p.object,
                p.message,
                if check.problems.len() > 1 {
                    format!(", {} more problem(s)", check.problems.len() - 1)
                } else {
                    String::new()
                }
            );
        }
        self.count(|t| t.decrypted += 1);
        Ok(())
    }

    /// Locks an object the copy just wrote (`--object-lock`) until now + its days.
    async fn lock(&self, key: &str) -> Result<()> {
        if let (Some(lock), false) = (&self.lock, self.dry_run) {
            let retention = lock.retention_from(layout::now_ms());
            self.dst.lock(key, &retention).await?;
            tracing::debug!(object = %key, %retention, "locked");
        }
        Ok(())
    }

    /// Locks an object of the copy that has no retention yet (`--object-lock`).
    async fn lock_if_unlocked(&self, key: &str) -> Result<()> {
        if self.lock.is_none() || self.dry_run || self.dst.retention(key).await?.is_some() {
            return Ok(());
        }
        tracing::warn!(object = %key, "locking an object of the copy that is not locked yet");
        self.lock(key).await
    }

    /// Copies any other object (documents, checkpoints, dead letters) when missing or
    /// different.
    async fn copy_document(&self, key: &str) -> Result<()> {
        let Some(bytes) = self.src.read_opt(key).await? else {
            return Ok(());
        };
        if self.dst.read_opt(key).await?.as_deref() == Some(&bytes[..]) {
            self.count(|t| t.skipped += 1);
            return Ok(());
        }
        self.put(key, bytes).await
    }
}

/// Copies `src` to `dst` as `ferry copy` does; returns what it did.
pub async fn copy(args: &Args) -> Result<Tally> {
    let keys = args.keys.load()?;
    if let Some(lock) = &args.object_lock {
        lock.validate(&args.dst, "--object-lock")?;
        if args.delete_extraneous {
            bail!(
                "--delete-extraneous with --object-lock: a locked copy is pruned with `ferry prune {}`, which keeps what is still locked and deletes every version of the rest; leave out --delete-extraneous",
                ferry_core::storage::redact_query(&args.dst)
            );
        }
    }
    let src = Storage::open_read_only(&args.src)?;
    let dst = Storage::from_uri(&args.dst)?;
    let Some(descriptor) = src.read_opt(layout::DESCRIPTOR).await? else {
        bail!(
            "{}: not a Ferry backup (no {}); nothing was copied",
            args.src,
            layout::DESCRIPTOR
        );
    };
    if let Some(theirs) = dst.read_opt(layout::DESCRIPTOR).await? {
        if theirs != descriptor {
            bail!(
                "{}: holds another backup (its {} differs from {}'s); copy into an empty location or a copy of this backup",
                args.dst,
                layout::DESCRIPTOR,
                args.src
            );
        }
    }
    if let Some(lock) = &args.object_lock {
        if !dst.object_lock_enabled().await? {
            bail!(
                "--object-lock: the bucket of {dst} does not have S3 Object Lock enabled, so the copy cannot be locked ({} for {} days asked); nothing was copied. Enable it on the bucket (a new bucket: `aws s3api create-bucket --object-lock-enabled-for-bucket`), copy to a bucket that has it, or leave out --object-lock",
                lock.mode,
                lock.days
            );
        }
    }
    let keys_listed = src.list("").await?;
    let inv = Inventory::from_keys(&keys_listed);
    if keys.is_some() {
        check_keys(&src, &inv, keys.as_ref()).await?;
    }
    let c = Copier {
        src,
        dst,
        args_verify: args.verify,
        dry_run: args.dry_run,
        keys,
        lock: args.object_lock,
        tally: Mutex::new(Tally::default()),
    };
    // The descriptor first: the location is then recognisably this backup's copy.
    c.copy_document(layout::DESCRIPTOR).await?;
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    wanted.insert(layout::DESCRIPTOR.to_string());
    let partitions: Vec<Vec<String>> = inv
        .manifests
        .iter()
        .map(|((topic, partition), firsts)| {
            firsts
                .iter()
                .map(|first| layout::manifest_key(topic, *partition, *first))
                .collect()
        })
        .collect();
    // Partitions in parallel, each one's segments in order. The first failure ends the run
    // (what is in flight then is dropped; see `copy_partition` for the locks).
    {
        let mut copies = std::pin::pin!(futures::stream::iter(&partitions)
            .map(|keys| c.copy_partition(keys))
            .buffer_unordered(PARTITIONS_IN_PARALLEL));
        while let Some(done) = copies.next().await {
            // A templated export's segments may be anywhere: the manifests name them.
            wanted.extend(done?);
        }
    }
    for key in &keys_listed {
        if is_transient(key) || wanted.contains(key) {
            continue;
        }
        if matches!(layout::parse_key(key), Some(layout::Entry::Segment { .. })) {
            // A segment's fate follows its manifest (copied above when it has one).
            continue;
        }
        wanted.insert(key.clone());
        c.copy_document(key).await?;
    }
    if args.delete_extraneous {
        delete_extraneous(&c, &keys_listed).await?;
    }
    Ok(c.tally.into_inner().unwrap_or_default())
}

/// Refuses keys that cannot open the backup before anything is copied: each segment's key
/// id must be one of them (and a plain backup takes no keys).
async fn check_keys(
    src: &Storage,
    inv: &Inventory,
    keys: Option<&Arc<dyn KeyProvider>>,
) -> Result<()> {
    for ((topic, partition), firsts) in &inv.manifests {
        for first in firsts {
            let key = layout::manifest_key(topic, *partition, *first);
            let Some(bytes) = src.read_opt(&key).await? else {
                continue;
            };
            let m: SegmentManifest = serde_json::from_slice(&bytes)
                .with_context(|| format!("{src}/{key}: not a manifest"))?;
            check_key(src, &m, keys).context("nothing was copied")?;
        }
    }
    Ok(())
}

/// Deletes from the copy what the backup does not hold: manifests first, then the rest.
async fn delete_extraneous(c: &Copier, src_keys: &[String]) -> Result<()> {
    let keep: BTreeSet<&str> = src_keys.iter().map(String::as_str).collect();
    let theirs = c.dst.list("").await?;
    let (manifests, rest): (Vec<&String>, Vec<&String>) = theirs
        .iter()
        .filter(|k| !keep.contains(k.as_str()) && !is_transient(k))
        .partition(|k| matches!(layout::parse_key(k), Some(layout::Entry::Manifest { .. })));
    for key in manifests.into_iter().chain(rest) {
        tracing::info!(object = %key, "deleted from the copy");
        c.count(|t| t.deleted += 1);
        if !c.dry_run {
            c.dst.delete(key).await?;
        }
    }
    Ok(())
}

/// Runs `ferry copy`.
pub async fn main(args: Args) -> Result<()> {
    let t = copy(&args).await?;
    let verb = if args.dry_run { "would copy" } else { "copied" };
    let mut line = format!(
        "{} → {}: {verb} {} object(s), {} bytes; {} already in the copy",
        ferry_core::storage::redact_query(&args.src),
        ferry_core::storage::redact_query(&args.dst),
        t.copied,
        t.bytes,
        t.skipped
    );
    if args.verify {
        line.push_str(&format!(
            "; {} segment(s) read back and verified",
            t.verified
        ));
    }
    if t.decrypted > 0 {
        line.push_str(&format!(
            "; {} segment(s) decrypted and checked",
            t.decrypted
        ));
    }
    if args.delete_extraneous {
        line.push_str(&format!(
            "; {} {} extraneous object(s)",
            if args.dry_run {
                "would delete"
            } else {
                "deleted"
            },
            t.deleted
        ));
    }
    crate::outln!("{line}");
    Ok(())
}
