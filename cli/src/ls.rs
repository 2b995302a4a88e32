//! `ferry ls URI [--json]`: what a backup holds.

use anyhow::Context;
use ferry_core::Storage;
use ferry_sources::backup::inspect::{summarize, BackupSummary};
use ferry_sources::backup::Catalog;
use time::macros::format_description;

/// Show what a backup holds: topics, partitions with their offsets, record counts, time
/// ranges, sizes, segment counts and gaps, plus topic configs and consumer-group snapshots.
///
/// Reads only manifests and small documents, never segments (use `ferry verify` to check
/// those). Exits 1 when the URI holds no Ferry backup.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup: a local folder, file://, s3://bucket/prefix?endpoint=…, gs://, azblob://.
    #[arg(value_name = "URI")]
    pub uri: String,

    /// Print JSON instead of a table (timestamps in milliseconds since the epoch).
    #[arg(long)]
    pub json: bool,
}

/// Lists the backup at `args.uri`.
pub async fn main(args: Args) -> anyhow::Result<()> {
    let storage = Storage::open_read_only(&args.uri)?;
    let catalog = Catalog::open(storage).await?;
    let summary = summarize(&catalog)
        .await
        .with_context(|| format!("reading the backup at {}", catalog.storage()))?;
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        crate::output::print(&render(&summary))?;
    }
    Ok(())
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| format!("{ms}ms"))
}

/// Bytes for people: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The human-readable listing.
pub fn render(s: &BackupSummary) -> String {
    let mut out = format!(
        "Backup {} (layout {}, created by {} at {})\n",
        s.uri,
        s.layout_version,
        s.created_by,
        rfc3339(s.created_at_ms)
    );
    let mut rows = vec![[
        "TOPIC",
        "PARTITION",
        "FIRST",
        "NEXT",
        "RECORDS",
        "BYTES",
        "IN KAFKA",
        "SEGMENTS",
        "MIN TIME",
        "MAX TIME",
        "GAPS",
    ]
    .iter()
    .map(|h| h.to_string())
    .collect::<Vec<_>>()];
    let (mut records, mut bytes, mut segments, mut partitions) = (0u64, 0u64, 0usize, 0usize);
    let mut in_kafka = Some(0u64);
    for t in &s.topics {
        for p in &t.partitions {
            records += p.records;
            bytes += p.bytes;
            in_kafka = in_kafka.zip(p.source_bytes).map(|(a, b)| a + b);
            segments += p.segments;
            partitions += 1;
            let gaps = if p.gaps.is_empty() {
                "-".to_string()
            } else {
                let mut g: Vec<String> = p
                    .gaps
                    .iter()
                    .take(3)
                    .map(|g| format!("{}..{}", g.from, g.to))
                    .collect();
                if p.gaps.len() > 3 {
                    g.push(format!("(+{} more)", p.gaps.len() - 3));
                }
                g.join(" ")
            };
            rows.push(vec![
                t.topic.clone(),
                p.partition.to_string(),
                p.first_offset.to_string(),
                p.next_offset.to_string(),
                p.records.to_string(),
                human_bytes(p.bytes),
                p.source_bytes.map_or("-".into(), human_bytes),
                p.segments.to_string(),
                p.min_timestamp.map_or("-".into(), rfc3339),
                p.max_timestamp.map_or("-".into(), rfc3339),
                gaps,
            ]);
        }
    }
    out.push('\n');
    if rows.len() > 1 {
        out.push_str(&table(&rows));
    } else {
        out.push_str("(no complete segments)\n");
    }
    out.push_str(&format!(
        "\n{} topic(s), {partitions} partition(s), {segments} segment(s), {records} record(s), {} stored{}\n",
        s.topics.len(),
        human_bytes(bytes),
        in_kafka.filter(|_| partitions > 0).map_or(String::new(), |k| format!(
            " ({} in Kafka)",
            human_bytes(k)
        ))
    ));

    let with_docs: Vec<_> = s
        .topics
        .iter()
        .filter(|t| t.partition_count.is_some() || !t.configs.is_empty())
        .collect();
    if !with_docs.is_empty() {
        out.push_str("\nTopic configs:\n");
        for t in with_docs {
            let shape = t
                .partition_count
                .map(|n| format!(" ({n} partitions)"))
                .unwrap_or_default();
            let configs = if t.configs.is_empty() {
                "(defaults)".to_string()
            } else {
                t.configs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push_str(&format!("  {}{shape}: {configs}\n", t.topic));
        }
    }
    if s.groups.is_empty() {
        out.push_str("\nConsumer-group snapshots: none\n");
    } else {
        out.push_str(&format!(
            "\nConsumer-group snapshots ({}):\n",
            s.groups.len()
        ));
        let shown = s.groups.len().saturating_sub(10);
        if shown > 0 {
            out.push_str(&format!("  … {shown} older\n"));
        }
        for g in &s.groups[shown..] {
            let names = if g.groups.len() > 8 {
                format!(
                    "{}, … ({} groups)",
                    g.groups[..8].join(", "),
                    g.groups.len()
                )
            } else {
                g.groups.join(", ")
            };
            out.push_str(&format!("  {}  {names}\n", rfc3339(g.taken_at_ms)));
        }
    }
    out.push_str(&encryption_line(s));
    if s.incomplete_segments > 0 {
        out.push_str(&format!(
            "\n{} incomplete segment(s) without a manifest (interrupted writes; restores ignore them, `ferry verify` names them)\n",
            s.incomplete_segments
        ));
    }
    out
}

/// `Encrypted: key id(s) …` when any segment is encrypted (the keys' ids, never the keys).
fn encryption_line(s: &BackupSummary) -> String {
    let mut ids: Vec<&str> = s
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .flat_map(|p| &p.key_ids)
        .map(String::as_str)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return String::new();
    }
    format!(
        "\nEncrypted with key id(s) {}: restore and a full verify need the key (--encryption-key-file)\n",
        ids.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_formats::layout::Gap;
    use ferry_sources::backup::inspect::{GroupSnapshotSummary, PartitionSummary, TopicSummary};

    #[test]
    fn renders_partitions_configs_groups_and_incomplete_segments() {
        let s = BackupSummary {
            uri: "s3://b/p?…".into(),
            layout_version: 1,
            created_by: "ferry 0.1.0".into(),
            created_at_ms: 0,
            topics: vec![TopicSummary {
                topic: "orders".into(),
                partitions: vec![PartitionSummary {
                    partition: 0,
                    first_offset: 10,
                    next_offset: 110,
                    records: 95,
                    bytes: 2048,
                    source_bytes: Some(6144),
                    segments: 2,
                    min_timestamp: Some(1_700_000_000_000),
                    max_timestamp: None,
                    gaps: vec![Gap { from: 50, to: 55 }],
                    formats: vec!["raw".into()],
                    key_ids: vec!["3f2a9c1d0b7e6a55".into()],
                }],
                partition_count: Some(3),
                configs: [("cleanup.policy".to_string(), "compact".to_string())].into(),
            }],
            groups: vec![GroupSnapshotSummary {
                taken_at_ms: 1_700_000_000_123,
                groups: vec!["billing".into(), "search".into()],
            }],
            incomplete_segments: 2,
        };
        let out = render(&s);
        let row = out.lines().find(|l| l.starts_with("orders")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            vec![
                "orders",
                "0",
                "10",
                "110",
                "95",
                "2.0",
                "KiB",
                "6.0",
                "KiB",
                "2",
                "2023-11-14T22:13:20.000Z",
                "-",
                "50..55"
            ]
        );
        assert!(
            out.contains("  orders (3 partitions): cleanup.policy=compact"),
            "{out}"
        );
        assert!(
            out.contains("  2023-11-14T22:13:20.123Z  billing, search"),
            "{out}"
        );
        assert!(out.contains("2 incomplete segment(s)"), "{out}");
        assert!(
            out.contains("Encrypted with key id(s) 3f2a9c1d0b7e6a55"),
            "{out}"
        );
    }

    #[test]
    fn formats_times_and_sizes() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
