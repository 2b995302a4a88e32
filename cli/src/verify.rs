//! `ferry verify URI`: re-reads and checks every manifest and segment of a backup.

use anyhow::bail;
use ferry_core::Storage;
use ferry_sources::backup::verify::{verify_backup_with, Severity};

/// Check a backup: every segment's size and CRC-32C against its manifest, every Kafka
/// batch's CRC, that batches fill each segment exactly within the manifest's offsets, and
/// record counts (JSON-lines segments are parsed and counted). Segments without a manifest
/// are reported as incomplete (a warning, not damage).
///
/// Encrypted segments: without --encryption-key-file, their size, CRC-32C and envelope
/// structure are checked; with it, every chunk is decrypted and every batch checked.
///
/// Prints one line per problem naming the object, then a summary. Exits 0 when nothing is
/// damaged, 1 otherwise. Memory stays bounded: segments are streamed in ranged reads.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup: a local folder, file://, s3://bucket/prefix?endpoint=…, gs://, azblob://.
    #[arg(value_name = "URI")]
    pub uri: String,

    /// Print the report as JSON instead of lines.
    #[arg(long)]
    pub json: bool,

    /// Keys of an encrypted backup.
    #[command(flatten)]
    pub keys: crate::keygen::KeyArgs,
}

/// Verifies the backup at `args.uri`.
pub async fn main(args: Args) -> anyhow::Result<()> {
    let storage = Storage::open_read_only(&args.uri)?;
    let report = verify_backup_with(storage, None, args.keys.load()?).await?;
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in &report.problems {
            let tag = match p.severity {
                Severity::Damage => "DAMAGED",
                Severity::Warning => "WARNING",
            };
            crate::outln!("{tag}  {}: {}", p.object, p.message);
        }
        crate::outln!(
            "{}: checked {} segment(s) in {} partition(s) of {} topic(s), {}, {} record(s): {}",
            report.uri,
            report.segments,
            report.partitions,
            report.topics,
            crate::ls::human_bytes(report.bytes),
            report.records,
            match (report.damaged(), report.warnings()) {
                (0, 0) => "all good".to_string(),
                (0, w) => format!("no damage, {w} warning(s)"),
                (d, w) => format!("{d} damaged, {w} warning(s)"),
            }
        );
        if report.encrypted_unopened > 0 {
            crate::outln!(
                "{} encrypted segment(s) checked without the key (size, CRC-32C, envelope; record counts from their manifests): give --encryption-key-file to check every batch",
                report.encrypted_unopened
            );
        }
    }
    if !report.is_ok() {
        bail!(
            "the backup at {} is damaged: {} problem(s)",
            report.uri,
            report.damaged()
        );
    }
    Ok(())
}
