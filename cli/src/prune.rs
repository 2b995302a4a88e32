//! `ferry prune`: deletes a backup's old segments (retention of the backups themselves).

use anyhow::{bail, Context, Result};
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

/// Runs `ferry prune`.
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
    let keys = storage.list("topics/").await?;
    let inv = Inventory::from_keys(&keys);
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let (mut total_segments, mut total_records) = (0usize, 0u64);
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
        let mut p = Pruned {
            kept_from: manifests.get(n).map(|m| m.first_offset),
            ..Pruned::default()
        };
        for m in &manifests[..n] {
            if !args.dry_run {
                storage
                    .delete(&layout::manifest_key(topic, *partition, m.first_offset))
                    .await?;
                storage.delete(&m.segment).await?;
            }
            p.segments += 1;
            p.records += m.record_count;
            p.bytes += m.bytes;
        }
        total_segments += p.segments;
        total_records += p.records;
        crate::outln!(
            "{topic}/{partition}: {verb} {} segment(s), {} records, {} bytes; kept from offset {}",
            p.segments,
            p.records,
            p.bytes,
            p.kept_from.map_or("-".to_string(), |o| o.to_string())
        );
    }
    crate::outln!(
        "{}: {verb} {total_segments} segment(s) holding {total_records} records older than {}",
        args.uri,
        crate::ls::rfc3339(bound)
    );
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
