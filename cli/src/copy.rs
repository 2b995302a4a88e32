//! `ferry copy`: a verified, incremental, resumable copy of a backup to another storage (a
//! second copy, an air-gapped vault pulling from the primary).

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use ferry_core::encryption::KeyProvider;
use ferry_core::object_lock::ObjectLockConfig;
use ferry_core::Storage;
use ferry_formats::layout::{self, Inventory, SegmentManifest};
use ferry_sources::backup::segment::{check_key, DEFAULT_READ_CHUNK};
use ferry_sources::backup::verify::verify_segment_with;
use std::collections::BTreeSet;
use std::sync::Arc;

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

/// Whether `bytes` is the segment its manifest describes.
fn matches(m: &SegmentManifest, bytes: &[u8]) -> bool {
    bytes.len() as u64 == m.bytes && crc32c::crc32c(bytes) == m.crc32c
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
    tally: Tally,
}

impl Copier {
    /// Writes one object to the copy (not in a dry run), counting it.
    async fn put(&mut self, key: &str, bytes: Bytes) -> Result<()> {
        let len = bytes.len();
        if !self.dry_run {
            self.dst.write(key, bytes).await?;
        }
        // Logged once written: a run killed mid-write never names the object it lost.
        tracing::info!(object = %key, bytes = len, "copied");
        self.tally.copied += 1;
        self.tally.bytes += len as u64;
        Ok(())
    }

    /// Copies a segment and its manifest, unless the copy holds both already; returns the
    /// segment's object name. `newest`: the partition's newest manifest, whose lock a
    /// killed run may not have set yet.
    async fn copy_segment(&mut self, manifest_key: &str, newest: bool) -> Result<Option<String>> {
        let Some(manifest_bytes) = self.src.read_opt(manifest_key).await? else {
            // Pruned since the listing.
            return Ok(None);
        };
        let m: SegmentManifest = serde_json::from_slice(&manifest_bytes)
            .with_context(|| format!("{}/{manifest_key}: not a manifest", self.src))?;
        let have_manifest =
            self.dst.read_opt(manifest_key).await?.as_deref() == Some(&manifest_bytes[..]);
        if have_manifest && !self.args_verify {
            self.tally.skipped += 2;
        } else {
            self.copy_segment_object(&m, have_manifest).await?;
            if have_manifest {
                self.tally.skipped += 1;
            } else {
                self.put(manifest_key, manifest_bytes).await?;
                self.lock(manifest_key).await?;
            }
        }
        if have_manifest && newest {
            // A run killed between writing these and locking them left them unlocked
            // (older ones were locked before the next segment was written).
            self.lock_if_unlocked(&m.segment).await?;
            self.lock_if_unlocked(manifest_key).await?;
        }
        Ok(Some(m.segment))
    }

    /// Makes the copy hold the segment `m` describes — unless it holds it already (written
    /// by a run stopped before the manifest, or copied earlier: with --verify it is read
    /// back either way) — then checks its records with the keys and locks it.
    async fn copy_segment_object(
        &mut self,
        m: &SegmentManifest,
        have_manifest: bool,
    ) -> Result<()> {
        let held = self.dst.read_opt(&m.segment).await?;
        if held.as_deref().is_some_and(|b| matches(m, b)) {
            if have_manifest {
                self.tally.verified += 1;
            }
            self.tally.skipped += 1;
            self.check_records(m).await?;
            if !have_manifest {
                self.lock_if_unlocked(&m.segment).await?;
            }
            return Ok(());
        }
        if held.is_some() && have_manifest {
            tracing::warn!(object = %m.segment, "the copy's segment differs from its manifest: copying it again");
        }
        let bytes = self.src.read(&m.segment).await?;
        if !matches(m, &bytes) {
            bail!(
                "{}/{}: the backup's segment does not match its manifest ({} bytes, CRC-32C {:08x}; the manifest says {} bytes, {:08x}): not copied; run `ferry verify {}`",
                self.src,
                m.segment,
                bytes.len(),
                crc32c::crc32c(&bytes),
                m.bytes,
                m.crc32c,
                self.src
            );
        }
        self.put(&m.segment, bytes).await?;
        if self.args_verify && !self.dry_run {
            let back = self.dst.read(&m.segment).await?;
            if !matches(m, &back) {
                bail!(
                    "{}/{}: read back after copying, the segment does not match its manifest",
                    self.dst,
                    m.segment
                );
            }
            self.tally.verified += 1;
        }
        self.check_records(m).await?;
        self.lock(&m.segment).await
    }

    /// With keys, decrypts the segment where it now is (the copy; the backup in a dry run)
    /// and checks every batch and the record count against its manifest.
    async fn check_records(&mut self, m: &SegmentManifest) -> Result<()> {
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
        self.tally.decrypted += 1;
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
    async fn copy_document(&mut self, key: &str) -> Result<()> {
        let Some(bytes) = self.src.read_opt(key).await? else {
            return Ok(());
        };
        if self.dst.read_opt(key).await?.as_deref() == Some(&bytes[..]) {
            self.tally.skipped += 1;
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
    let mut c = Copier {
        src,
        dst,
        args_verify: args.verify,
        dry_run: args.dry_run,
        keys,
        lock: args.object_lock,
        tally: Tally::default(),
    };
    // The descriptor first: the location is then recognisably this backup's copy.
    c.copy_document(layout::DESCRIPTOR).await?;
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    wanted.insert(layout::DESCRIPTOR.to_string());
    for ((topic, partition), firsts) in &inv.manifests {
        for (i, first) in firsts.iter().enumerate() {
            let key = layout::manifest_key(topic, *partition, *first);
            // A templated export's segments may be anywhere: the manifest names them.
            if let Some(segment) = c.copy_segment(&key, i + 1 == firsts.len()).await? {
                wanted.insert(segment);
            }
            wanted.insert(key);
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
        delete_extraneous(&mut c, &keys_listed).await?;
    }
    Ok(c.tally)
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
async fn delete_extraneous(c: &mut Copier, src_keys: &[String]) -> Result<()> {
    let keep: BTreeSet<&str> = src_keys.iter().map(String::as_str).collect();
    let theirs = c.dst.list("").await?;
    let (manifests, rest): (Vec<&String>, Vec<&String>) = theirs
        .iter()
        .filter(|k| !keep.contains(k.as_str()) && !is_transient(k))
        .partition(|k| matches!(layout::parse_key(k), Some(layout::Entry::Manifest { .. })));
    for key in manifests.into_iter().chain(rest) {
        tracing::info!(object = %key, "deleted from the copy");
        c.tally.deleted += 1;
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
