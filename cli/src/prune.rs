//! `ferry prune`: deletes a backup's old segments (retention of the backups themselves).

use anyhow::{bail, Context, Result};
use ferry_core::object_lock::{ObjectVersion, Retention, VersionDelete};
use ferry_core::transforms::filter::TimeBound;
use ferry_core::Storage;
use ferry_formats::layout::{self, Inventory, SegmentManifest};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Delete the oldest segments of a backup: per partition, the segments from the start whose
/// every record is older than the bound, never the partition's newest segment.
///
/// Only a run of segments from the start of a partition goes, so what stays is still one
/// contiguous range of offsets: a restore to any time at or after the bound gives the same
/// records as before, from the first kept offset on. Each segment's manifest is deleted
/// before the segment object, so a crash in between leaves an object without manifest, which
/// the next backup run (or `ferry verify`) reports and removes — never a manifest that claims
/// missing data. Safe while a continuous backup writes the location (it only adds segments
/// at the end).
///
/// On S3, a segment still locked by S3 Object Lock (its object or its manifest) stays, and so
/// does everything after it in its partition; the output names the locked objects and when
/// their locks end. In a versioned bucket every version of a pruned segment and manifest is
/// deleted (a plain DELETE there only adds a delete marker).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup: a local path, file://, s3://…, gs://…, azblob://…
    #[arg(value_parser = crate::shortcuts::parse_uri, value_name = "URI")]
    pub uri: String,
    /// Delete segments whose records are all older than this time (RFC 3339 or epoch ms).
    #[arg(
        long,
        value_name = "TIME",
        conflicts_with = "keep",
        required_unless_present = "keep"
    )]
    pub before: Option<String>,
    /// Delete segments whose records are all older than this long ago (e.g. `30d`, `12h`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub keep: Option<Duration>,
    /// Show what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// One partition's outcome.
#[derive(Debug, Default, PartialEq, Eq)]
struct Pruned {
    segments: usize,
    records: u64,
    bytes: u64,
    /// The first offset that stays.
    kept_from: Option<i64>,
}

/// The bound in milliseconds since the epoch.
fn bound_ms(args: &Args) -> Result<i64> {
    if let Some(b) = &args.before {
        return TimeBound::parse(b).map(|t| t.0).map_err(|_| {
            anyhow::anyhow!(
                "--before '{b}' is not an RFC 3339 time or epoch milliseconds, e.g. 2026-12-01T00:00:00Z"
            )
        });
    }
    let keep = args.keep.context("give --before TIME or --keep DURATION")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    Ok(now - keep.as_millis() as i64)
}

/// The run of manifests, from the start of a partition, that can go: each one's records all
/// older than `bound`, never the last.
fn prunable(manifests: &[SegmentManifest], bound: i64) -> usize {
    let mut n = 0;
    for m in manifests.iter().take(manifests.len().saturating_sub(1)) {
        // A segment without timestamps (only empty batches) goes with its neighbours.
        if m.max_timestamp.is_some_and(|t| t >= bound) {
            break;
        }
        n += 1;
    }
    n
}

/// The objects of a segment (its manifest and its object) and, in a versioned bucket,
/// their versions.
struct SegmentObjects {
    /// `(key, versions)`, manifest first; versions are `None` unless the bucket is versioned.
    objects: Vec<(String, Option<Vec<ObjectVersion>>)>,
}

impl SegmentObjects {
    async fn read(storage: &Storage, keys: [String; 2], versioned: bool) -> Result<Self> {
        let mut objects = Vec::with_capacity(keys.len());
        for key in keys {
            let versions = if versioned {
                Some(storage.versions(&key).await?)
            } else {
                None
            };
            objects.push((key, versions));
        }
        Ok(SegmentObjects { objects })
    }

    /// The objects with a version whose S3 Object Lock retention is still in force, each
    /// with the lock that ends last.
    fn locked(&self, now_ms: i64) -> Vec<(&str, Retention)> {
        let mut out = Vec::new();
        for (key, versions) in &self.objects {
            let longest = versions
                .iter()
                .flatten()
                .filter_map(|v| v.retention)
                .filter(|r| r.in_force(now_ms))
                .max_by_key(|r| r.until_ms);
            if let Some(r) = longest {
                out.push((key.as_str(), r));
            }
        }
        out
    }

    /// Deletes the objects, manifest first: every version of each in a versioned bucket
    /// (a DELETE without a version id would only add a delete marker there and keep the
    /// data), else the object.
    async fn delete(&self, storage: &Storage, uri: &str) -> Result<()> {
        for (key, versions) in &self.objects {
            let Some(versions) = versions else {
                storage.delete(key).await?;
                continue;
            };
            for v in versions {
                if let VersionDelete::Refused(why) =
                    storage.delete_version(key, &v.version_id).await?
                {
                    bail!(
                        "{uri}/{key}: the store refused to delete version {} ({why}); nothing after it was deleted. Check that these credentials may delete object versions (s3:DeleteObjectVersion) and that the version is not locked (S3 Object Lock, legal hold)",
                        v.version_id
                    );
                }
            }
        }
        Ok(())
    }
}

/// Runs `ferry prune`.
///
/// On S3, a segment whose manifest or object has a version still locked by S3 Object Lock
/// is not deleted, and neither is anything after it in its partition (what stays must be
/// one contiguous range of offsets, which `ls`, `verify` and restores rely on); the output
/// names the locked objects and when their locks end. In a versioned bucket (every bucket
/// with Object Lock is), prune deletes every version of what it prunes: a plain DELETE
/// there only adds a delete marker, leaving the data stored (and billed).
pub async fn main(args: Args) -> Result<()> {
    let bound = bound_ms(&args)?;
    let storage = Storage::from_uri(&args.uri)?;
    if storage.read_opt(layout::DESCRIPTOR).await?.is_none() {
        bail!(
            "{}: not a Ferry backup (no {})",
            args.uri,
            layout::DESCRIPTOR
        );
    }
    let uri = storage.to_string();
    let versioned = storage.versioned().await?;
    let now = layout::now_ms();
    let keys = storage.list("topics/").await?;
    let inv = Inventory::from_keys(&keys);
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let (mut total_segments, mut total_records, mut total_locked) = (0usize, 0u64, 0usize);
    for ((topic, partition), firsts) in &inv.manifests {
        let mut manifests = Vec::with_capacity(firsts.len());
        for first in firsts {
            let key = layout::manifest_key(topic, *partition, *first);
            let Some(bytes) = storage.read_opt(&key).await? else {
                continue;
            };
            let m: SegmentManifest = serde_json::from_slice(&bytes)
                .with_context(|| format!("{}/{key}: not a manifest", args.uri))?;
            manifests.push(m);
        }
        let n = prunable(&manifests, bound);
        if n == 0 {
            continue;
        }
        let mut p = Pruned::default();
        let mut kept = n;
        for (i, m) in manifests[..n].iter().enumerate() {
            let objects = SegmentObjects::read(
                &storage,
                [
                    layout::manifest_key(topic, *partition, m.first_offset),
                    m.segment.clone(),
                ],
                versioned,
            )
            .await?;
            let locked = objects.locked(now);
            if !locked.is_empty() {
                kept = i;
                let names: Vec<String> = locked
                    .iter()
                    .map(|(key, r)| format!("{key} ({r})"))
                    .collect();
                crate::outln!(
                    "{topic}/{partition}: still locked (S3 Object Lock): {}; the segment from offset {} and {} later segment(s) older than the bound stay",
                    names.join(", "),
                    m.first_offset,
                    n - i - 1
                );
                break;
            }
            if !args.dry_run {
                objects.delete(&storage, &uri).await?;
            }
            p.segments += 1;
            p.records += m.record_count;
            p.bytes += m.bytes;
        }
        p.kept_from = manifests.get(kept).map(|m| m.first_offset);
        total_locked += n - kept;
        total_segments += p.segments;
        total_records += p.records;
        if p.segments > 0 {
            crate::outln!(
                "{topic}/{partition}: {verb} {} segment(s), {} records, {} bytes; kept from offset {}",
                p.segments,
                p.records,
                p.bytes,
                p.kept_from.map_or("-".to_string(), |o| o.to_string())
            );
        }
    }
    let mut summary = format!(
        "{}: {verb} {total_segments} segment(s) holding {total_records} records older than {}",
        args.uri,
        crate::ls::rfc3339(bound)
    );
    if versioned && total_segments > 0 {
        summary.push_str(" (every version: the bucket is versioned)");
    }
    if total_locked > 0 {
        summary.push_str(&format!(
            "; {total_locked} segment(s) older than the bound kept: still locked by S3 Object Lock, or after a locked one"
        ));
    }
    crate::outln!("{summary}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(first: i64, max_ts: Option<i64>) -> SegmentManifest {
        serde_json::from_value(serde_json::json!({
            "format": "raw", "topic": "t", "partition": 0, "first_offset": first,
            "next_offset": first + 10, "record_count": 10, "min_timestamp": max_ts,
            "max_timestamp": max_ts, "bytes": 100, "crc32c": 0, "segment": "s",
            "aborted": [], "gaps": [], "written_at_ms": 0
        }))
        .expect("manifest")
    }

    #[test]
    fn a_segment_is_locked_while_any_version_of_its_objects_is() {
        use ferry_core::object_lock::LockMode;
        let version = |id: &str, until_ms: Option<i64>| ObjectVersion {
            version_id: id.into(),
            delete_marker: false,
            retention: until_ms.map(|until_ms| Retention {
                mode: LockMode::Governance,
                until_ms,
            }),
        };
        let objects = SegmentObjects {
            objects: vec![
                ("m".into(), Some(vec![version("1", Some(50))])),
                (
                    "s".into(),
                    Some(vec![
                        version("2", Some(200)),
                        version("3", None),
                        version("4", Some(300)),
                    ]),
                ),
            ],
        };
        // At 100: the manifest's lock has ended, the segment's older version still holds
        // (and the longest lock of its versions is shown).
        let locked = objects.locked(100);
        assert_eq!(locked.len(), 1);
        assert_eq!(locked[0].0, "s");
        assert_eq!(locked[0].1.until_ms, 300);
        assert!(objects.locked(300).is_empty());
        // An unversioned bucket: no versions read, nothing locked.
        let plain = SegmentObjects {
            objects: vec![("m".into(), None), ("s".into(), None)],
        };
        assert!(plain.locked(0).is_empty());
    }

    #[test]
    fn only_a_run_from_the_start_goes_and_never_the_newest() {
        let ms = vec![
            manifest(0, Some(10)),
            manifest(10, Some(20)),
            manifest(20, Some(100)),
            manifest(30, Some(15)), // old records after a newer segment: kept (not a prefix)
            manifest(40, Some(5)),
        ];
        assert_eq!(prunable(&ms, 50), 2);
        assert_eq!(prunable(&ms, 5), 0);
        // Everything old: the newest segment stays.
        assert_eq!(prunable(&ms[..2], 1000), 1);
        assert_eq!(prunable(&ms[..1], 1000), 0);
        assert_eq!(prunable(&[], 1000), 0);
    }
}
