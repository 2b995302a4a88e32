//! The backup layout: object names and the JSON documents beside the data.
//!
//! ```text
//! <root>/ferry.json                                          format version, created-by
//! <root>/topics/<topic>/topic.json                           partitions, configs, snapshots over time
//! <root>/topics/<topic>/<partition>/<first:020>.<ext>        a segment: one partition, contiguous offsets
//! <root>/topics/<topic>/<partition>/<first:020>.json         its manifest
//! <root>/groups/<time>.json                                  consumer-group offsets at a moment
//! <root>/checkpoints/<pipeline>.json                         next offset per partition
//! <root>/pending/<topic>/<partition>/<first:020>.json        a templated segment being written
//! ```
//! Names depend only on topic, partition and first offset, so a retry rewrites the same key.
//! Write order is segment, then manifest, then checkpoint: a segment without a manifest is
//! incomplete and is never read; the manifest is the commit record.
//!
//! Data-lake exports may name their segment objects with a [`PathTemplate`] instead
//! (`topic={topic}/date={date}/{partition}-{first_offset}`): manifests stay where they are
//! and name the object in [`SegmentManifest::segment`]. Because such objects can be anywhere
//! under the root, the writer first records the name in a [`PendingSegment`] marker at
//! [`pending_key`], writes the object, then the manifest, then removes the marker: a marker
//! whose manifest is missing names an incomplete object to delete.
//!
//! This is the only module that knows these names; the storage sink and the backup source
//! both go through it.

use ferry_core::{AbortedTxn, GroupOffsets, TopicSettings};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the layout written by this build. Readers refuse newer major versions.
pub const LAYOUT_VERSION: u32 = 1;

/// Name of the backup descriptor at the root.
pub const DESCRIPTOR: &str = "ferry.json";

/// The backup descriptor (`ferry.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Layout version ([`LAYOUT_VERSION`]).
    pub layout_version: u32,
    /// The program that created the backup, e.g. `ferry 0.1.0`.
    pub created_by: String,
    /// Creation time, milliseconds since the epoch.
    pub created_at_ms: i64,
}

/// A gap: offsets the source did not have when they were read (retention, compaction of
/// whole batches). Recorded, never silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// First missing offset.
    pub from: i64,
    /// First offset present again.
    pub to: i64,
}

/// The manifest of one segment: what it holds and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentManifest {
    /// Segment format: `raw`, `jsonl`, `avro` or `parquet`.
    pub format: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset the segment covers.
    pub first_offset: i64,
    /// Offset after the last one it covers.
    pub next_offset: i64,
    /// Records in the segment (control records included for `raw`).
    pub record_count: u64,
    /// Smallest record timestamp, milliseconds.
    pub min_timestamp: Option<i64>,
    /// Largest record timestamp, milliseconds.
    pub max_timestamp: Option<i64>,
    /// Size of the segment object in bytes.
    pub bytes: u64,
    /// CRC-32C of the whole segment object.
    pub crc32c: u32,
    /// Segment object name relative to the root.
    pub segment: String,
    /// Aborted transactions overlapping the segment (read_uncommitted backups).
    #[serde(default)]
    pub aborted: Vec<AbortedTxn>,
    /// Offsets missing before or inside the segment.
    #[serde(default)]
    pub gaps: Vec<Gap>,
    /// When the manifest was written, milliseconds since the epoch.
    pub written_at_ms: i64,
    /// How the segment object is encrypted; absent for a plain object. With it, `bytes` and
    /// `crc32c` are those of the stored (encrypted) object, so `ferry verify` checks them
    /// without the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<SegmentEncryption>,
    /// Bytes the segment's records took in Kafka: the fetched record batches for `raw`
    /// (before a recompression), the keys, values and headers for the decoded formats. Next
    /// to `bytes` it shows what compression and encoding saved. Absent in manifests written
    /// before Ferry recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_bytes: Option<u64>,
}

/// The `encryption` of a [`SegmentManifest`]: what a reader needs to find the key, nothing
/// about the records (no plaintext checksum: the envelope authenticates every chunk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEncryption {
    /// The envelope (`ferry-aes-256-gcm-chunked-v1`, see `ferry_core::encryption::envelope`).
    pub scheme: String,
    /// Id of the key-encryption key the segment's data key is wrapped with.
    pub key_id: String,
    /// Size of the segment's plaintext (the format's bytes) in bytes.
    pub plain_bytes: u64,
}

/// One snapshot of a topic's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSnapshot {
    /// When it was read, milliseconds since the epoch.
    pub taken_at_ms: i64,
    /// The topic's shape and settings then.
    pub metadata: TopicSettings,
}

/// `topics/<topic>/topic.json`: the latest settings and their history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDocument {
    /// Topic name.
    pub name: String,
    /// Latest known shape and settings.
    pub latest: TopicSettings,
    /// Every distinct snapshot seen, oldest first.
    #[serde(default)]
    pub snapshots: Vec<TopicSnapshot>,
}

/// `groups/<time>.json`: committed offsets of groups on the backed-up topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsDocument {
    /// When they were read, milliseconds since the epoch.
    pub taken_at_ms: i64,
    /// Groups and their offsets.
    pub groups: Vec<GroupOffsets>,
}

/// Key of a topic's document.
pub fn topic_key(topic: &str) -> String {
    format!("topics/{topic}/topic.json")
}

/// Folder holding a partition's segments.
pub fn partition_prefix(topic: &str, partition: i32) -> String {
    format!("topics/{topic}/{partition}/")
}

/// Key of a segment object.
pub fn segment_key(topic: &str, partition: i32, first_offset: i64, ext: &str) -> String {
    format!("topics/{topic}/{partition}/{first_offset:020}.{ext}")
}

/// Key of a segment's manifest.
pub fn manifest_key(topic: &str, partition: i32, first_offset: i64) -> String {
    format!("topics/{topic}/{partition}/{first_offset:020}.json")
}

/// Key of a groups snapshot; the time is zero-padded so names sort by time.
pub fn groups_key(taken_at_ms: i64) -> String {
    format!("groups/{taken_at_ms:015}.json")
}

/// Key of a pipeline's checkpoint.
pub fn checkpoint_key(pipeline: &str) -> String {
    format!("checkpoints/{pipeline}.json")
}

/// What an object name under `topics/` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A topic document.
    Topic {
        /// Topic.
        topic: String,
    },
    /// A segment manifest.
    Manifest {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// First offset.
        first_offset: i64,
    },
    /// A segment object.
    Segment {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// First offset.
        first_offset: i64,
        /// File extension (format).
        ext: String,
    },
}

/// Classifies an object name; `None` for names outside the layout, including names that are
/// not the one name the layout gives that object (`topics/t/00/…`, `+1`): otherwise a stray
/// object would be taken for a segment or manifest whose real key is another object's (a
/// manifest listed twice, an orphan whose re-derived key names a different object). Found by
/// the `backup_documents` fuzz target.
pub fn parse_key(key: &str) -> Option<Entry> {
    let entry = parse_key_fields(key)?;
    let canonical = match &entry {
        Entry::Topic { topic } => topic_key(topic),
        Entry::Manifest {
            topic,
            partition,
            first_offset,
        } => manifest_key(topic, *partition, *first_offset),
        Entry::Segment {
            topic,
            partition,
            first_offset,
            ext,
        } => segment_key(topic, *partition, *first_offset, ext),
    };
    (canonical == key).then_some(entry)
}

/// The fields of an object name under `topics/`, before the canonical-name check.
fn parse_key_fields(key: &str) -> Option<Entry> {
    let rest = key.strip_prefix("topics/")?;
    let mut parts = rest.split('/');
    let topic = parts.next()?.to_string();
    let second = parts.next()?;
    match parts.next() {
        None if second == "topic.json" => Some(Entry::Topic { topic }),
        None => None,
        Some(file) => {
            if parts.next().is_some() {
                return None;
            }
            let partition: i32 = second.parse().ok()?;
            let (stem, ext) = file.split_once('.')?;
            if stem.len() != 20 {
                return None;
            }
            let first_offset: i64 = stem.parse().ok()?;
            if ext == "json" {
                Some(Entry::Manifest {
                    topic,
                    partition,
                    first_offset,
                })
            } else {
                Some(Entry::Segment {
                    topic,
                    partition,
                    first_offset,
                    ext: ext.to_string(),
                })
            }
        }
    }
}

/// Manifests and orphan segments of a backup, from a listing of `topics/`.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    /// Topics with a topic document.
    pub topics_with_document: Vec<String>,
    /// Manifest keys per (topic, partition), sorted by first offset.
    pub manifests: BTreeMap<(String, i32), Vec<i64>>,
    /// Segment objects per (topic, partition, first offset) with their extension.
    pub segments: BTreeMap<(String, i32, i64), String>,
}

impl Inventory {
    /// Builds the inventory from object names.
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a String>) -> Self {
        let mut inv = Inventory::default();
        for k in keys {
            match parse_key(k) {
                Some(Entry::Topic { topic }) => inv.topics_with_document.push(topic),
                Some(Entry::Manifest {
                    topic,
                    partition,
                    first_offset,
                }) => inv
                    .manifests
                    .entry((topic, partition))
                    .or_default()
                    .push(first_offset),
                Some(Entry::Segment {
                    topic,
                    partition,
                    first_offset,
                    ext,
                }) => {
                    inv.segments.insert((topic, partition, first_offset), ext);
                }
                None => {}
            }
        }
        for v in inv.manifests.values_mut() {
            v.sort_unstable();
        }
        inv
    }

    /// Segments that have no manifest: incomplete writes, never to be read.
    pub fn orphans(&self) -> Vec<(String, i32, i64, String)> {
        self.segments
            .iter()
            .filter(|((t, p, f), _)| {
                self.manifests
                    .get(&(t.clone(), *p))
                    .is_none_or(|m| m.binary_search(f).is_err())
            })
            .map(|((t, p, f), e)| (t.clone(), *p, *f, e.clone()))
            .collect()
    }
}

/// Folder of the markers of templated segments being written.
pub const PENDING_PREFIX: &str = "pending/";

/// Key of the marker written before a templated segment object (see [`PendingSegment`]).
pub fn pending_key(topic: &str, partition: i32, first_offset: i64) -> String {
    format!("{PENDING_PREFIX}{topic}/{partition}/{first_offset:020}.json")
}

/// `(topic, partition, first_offset)` of a [`pending_key`], `None` for other names.
pub fn parse_pending_key(key: &str) -> Option<(String, i32, i64)> {
    let rest = key.strip_prefix(PENDING_PREFIX)?;
    let mut parts = rest.split('/');
    let (topic, partition, file) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || topic.is_empty() {
        return None;
    }
    let partition: i32 = partition.parse().ok()?;
    let stem = file.strip_suffix(".json")?;
    if stem.len() != 20 {
        return None;
    }
    let first: i64 = stem.parse().ok()?;
    // Only the one name `pending_key` gives (see `parse_key`).
    (pending_key(topic, partition, first) == key).then(|| (topic.to_string(), partition, first))
}

/// `pending/<topic>/<partition>/<first:020>.json`: a templated segment object is being
/// written under [`PendingSegment::segment`]. Written before the object and removed after
/// its manifest, so on restart a marker without a manifest names an object to delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSegment {
    /// The segment object's key relative to the root.
    pub segment: String,
    /// When the write began, milliseconds since the epoch.
    pub started_at_ms: i64,
}

/// One piece of a [`PathTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Topic,
    Partition,
    FirstOffset,
    Date,
    Hour,
}

/// A template for segment object names (the storage sink's `path:`), e.g.
/// `topic={topic}/date={date}/hour={hour}/{partition}-{first_offset}`; the format's
/// extension is appended.
///
/// | placeholder      | becomes                                                        |
/// |------------------|----------------------------------------------------------------|
/// | `{topic}`        | the topic                                                      |
/// | `{partition}`    | the partition number                                           |
/// | `{first_offset}` | the segment's first offset, zero-padded to 20 digits           |
/// | `{date}`         | `YYYY-MM-DD` of the segment's first record timestamp, UTC       |
/// | `{hour}`         | `HH` (00–23) of that timestamp, UTC                            |
///
/// `{topic}`, `{partition}` and `{first_offset}` are required, so names are unique and a
/// retry writes the same key. A template may not start in a folder of the backup layout
/// (`topics/`, `groups/`, `checkpoints/`, `pending/`) unless it is the default,
/// [`PathTemplate::DEFAULT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
    parts: Vec<Part>,
}

/// Folders of the layout that a custom template may not write into.
const RESERVED: [&str; 5] = ["topics/", "groups/", "checkpoints/", "pending/", DESCRIPTOR];

impl PathTemplate {
    /// The backup layout's own segment names ([`segment_key`] without the extension).
    pub const DEFAULT: &'static str = "topics/{topic}/{partition}/{first_offset}";

    /// Parses and checks a template; the error says what is wrong and how to write it.
    pub fn parse(text: &str) -> std::result::Result<PathTemplate, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            if rest[i..].starts_with('}') {
                return Err(format!(
                    "path '{text}': a '}}' without '{{' (placeholders are {{topic}}, {{partition}}, {{first_offset}}, {{date}}, {{hour}})"
                ));
            }
            let Some(end) = rest[i..].find('}') else {
                return Err(format!("path '{text}': a '{{' without '}}'"));
            };
            let name = &rest[i + 1..i + end];
            let part = match name {
                "topic" => Part::Topic,
                "partition" => Part::Partition,
                "first_offset" => Part::FirstOffset,
                "date" => Part::Date,
                "hour" => Part::Hour,
                other => {
                    return Err(format!(
                        "path '{text}': unknown placeholder {{{other}}}; use {{topic}}, {{partition}}, {{first_offset}}, {{date}} or {{hour}}"
                    ))
                }
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &rest[i + end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let t = PathTemplate {
            text: text.to_string(),
            parts,
        };
        for (p, name) in [
            (Part::Topic, "{topic}"),
            (Part::Partition, "{partition}"),
            (Part::FirstOffset, "{first_offset}"),
        ] {
            if !t.parts.contains(&p) {
                return Err(format!(
                    "path '{text}' has no {name}: {{topic}}, {{partition}} and {{first_offset}} are required so that every segment gets its own name"
                ));
            }
        }
        if text.starts_with('/') || text.ends_with('/') || text.contains("//") {
            return Err(format!(
                "path '{text}' must be relative to the sink's uri, without a leading or trailing '/' or empty folders"
            ));
        }
        if text.contains('\\') || text.split('/').any(|s| s == "." || s == "..") {
            return Err(format!(
                "path '{text}': '\\', '.' and '..' are not allowed in object names"
            ));
        }
        if !t.is_default() && RESERVED.iter().any(|r| text.starts_with(r)) {
            return Err(format!(
                "path '{text}' starts in a folder of the backup layout ({}); choose another prefix (e.g. 'data/…') or leave path out for the backup layout",
                RESERVED.join(", ")
            ));
        }
        Ok(t)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is the backup layout's own naming ([`PathTemplate::DEFAULT`]).
    pub fn is_default(&self) -> bool {
        self.text == Self::DEFAULT
    }

    /// Whether names depend on record time (`{date}` or `{hour}`).
    pub fn uses_time(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Date | Part::Hour))
    }

    /// The time bucket of a timestamp: records of one bucket share a name's `{date}` and
    /// `{hour}`. `None` when the template has neither.
    pub fn bucket(&self, timestamp_ms: i64) -> Option<i64> {
        if self.parts.contains(&Part::Hour) {
            Some(timestamp_ms.div_euclid(3_600_000))
        } else if self.parts.contains(&Part::Date) {
            Some(timestamp_ms.div_euclid(86_400_000))
        } else {
            None
        }
    }

    /// The object name of a segment: the template filled in, plus `.<ext>`.
    /// `first_timestamp_ms` is the segment's first record's timestamp (for `{date}`/`{hour}`).
    pub fn render(
        &self,
        topic: &str,
        partition: i32,
        first_offset: i64,
        first_timestamp_ms: i64,
        ext: &str,
    ) -> String {
        let (y, m, d, h) = utc_date_hour(first_timestamp_ms);
        let mut out = String::with_capacity(self.text.len() + 32);
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Topic => out.push_str(topic),
                Part::Partition => out.push_str(&partition.to_string()),
                Part::FirstOffset => out.push_str(&format!("{first_offset:020}")),
                Part::Date => out.push_str(&format!("{y:04}-{m:02}-{d:02}")),
                Part::Hour => out.push_str(&format!("{h:02}")),
            }
        }
        out.push('.');
        out.push_str(ext);
        out
    }
}

/// `(year, month, day, hour)` in UTC of a time in milliseconds since the epoch (negative
/// times are before 1970).
pub fn utc_date_hour(ms: i64) -> (i64, u32, u32, u32) {
    let days = ms.div_euclid(86_400_000);
    let hour = (ms.rem_euclid(86_400_000) / 3_600_000) as u32;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, hour)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let s = segment_key("orders", 3, 42, "log");
        assert_eq!(s, "topics/orders/3/00000000000000000042.log");
        assert_eq!(
            parse_key(&s),
            Some(Entry::Segment {
                topic: "orders".into(),
                partition: 3,
                first_offset: 42,
                ext: "log".into()
            })
        );
        assert_eq!(
            parse_key(&manifest_key("a.b", 0, 7)),
            Some(Entry::Manifest {
                topic: "a.b".into(),
                partition: 0,
                first_offset: 7
            })
        );
        assert_eq!(
            parse_key("topics/x/topic.json"),
            Some(Entry::Topic { topic: "x".into() })
        );
        assert_eq!(parse_key("topics/x/y/z"), None);
        assert_eq!(parse_key("checkpoints/p.json"), None);
    }

    #[test]
    fn inventory_finds_orphans() {
        let keys: Vec<String> = vec![
            segment_key("t", 0, 0, "log"),
            manifest_key("t", 0, 0),
            segment_key("t", 0, 10, "log"),
            topic_key("t"),
        ];
        let inv = Inventory::from_keys(&keys);
        assert_eq!(
            inv.orphans(),
            vec![("t".to_string(), 0, 10, "log".to_string())]
        );
        assert_eq!(inv.manifests[&("t".to_string(), 0)], vec![0]);
        assert_eq!(inv.topics_with_document, vec!["t".to_string()]);
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(utc_date_hour(0), (1970, 1, 1, 0));
        assert_eq!(utc_date_hour(-1), (1969, 12, 31, 23));
        assert_eq!(utc_date_hour(951_782_400_000), (2000, 2, 29, 0));
        assert_eq!(
            utc_date_hour(1_764_547_200_000 + 5 * 3_600_000),
            (2025, 12, 1, 5)
        );
        assert_eq!(utc_date_hour(4_102_444_800_000 - 1), (2099, 12, 31, 23));
        assert_eq!(utc_date_hour(4_102_444_800_000), (2100, 1, 1, 0));
    }

    #[test]
    fn templates_render_and_bucket() {
        let t =
            PathTemplate::parse("topic={topic}/date={date}/hour={hour}/{partition}-{first_offset}")
                .unwrap();
        assert!(t.uses_time());
        let ts = 1_764_547_200_000 + 5 * 3_600_000 + 1;
        assert_eq!(
            t.render("orders", 2, 42, ts, "parquet"),
            "topic=orders/date=2025-12-01/hour=05/2-00000000000000000042.parquet"
        );
        assert_eq!(t.bucket(ts), t.bucket(ts + 3_000_000));
        assert_ne!(t.bucket(ts), t.bucket(ts + 3_600_000));
        let d = PathTemplate::parse("d/{date}/{topic}/{partition}/{first_offset}").unwrap();
        assert_eq!(d.bucket(ts), d.bucket(ts + 3_600_000));
        let plain = PathTemplate::parse("x/{topic}/{partition}/{first_offset}").unwrap();
        assert!(!plain.uses_time());
        assert_eq!(plain.bucket(ts), None);
        let def = PathTemplate::parse(PathTemplate::DEFAULT).unwrap();
        assert!(def.is_default());
        assert_eq!(
            def.render("t", 1, 7, 0, "avro"),
            segment_key("t", 1, 7, "avro")
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            "{topic}/{first_offset}",
            "{topic}/{partition}",
            "{partition}/{first_offset}",
            "{topic}/{partition}/{first_offset}/{day}",
            "{topic}/{partition}/{first_offset",
            "{topic}/{partition}/first_offset}",
            "/{topic}/{partition}/{first_offset}",
            "{topic}//{partition}/{first_offset}",
            "{topic}/../{partition}/{first_offset}",
            "topics/{topic}/x/{partition}/{first_offset}",
            "pending/{topic}/{partition}/{first_offset}",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn pending_keys_round_trip() {
        let k = pending_key("a.b", 3, 12);
        assert_eq!(k, "pending/a.b/3/00000000000000000012.json");
        assert_eq!(parse_pending_key(&k), Some(("a.b".to_string(), 3, 12)));
        assert_eq!(parse_pending_key("pending/a/3/12.json"), None);
        assert_eq!(
            parse_pending_key("pending/a/3/00000000000000000012.parquet"),
            None
        );
    }

    /// Regression (fuzz target `backup_documents`): `topics/t/00/…` parsed as partition 0,
    /// whose key is `topics/t/0/…`, another object. Only the layout's own names are entries.
    #[test]
    fn names_other_than_the_layouts_are_not_entries() {
        for key in [
            "topics/t/00/00000000000000000005.log",
            "topics/t/+1/00000000000000000005.json",
            "topics/t/1/+0000000000000000005.json",
            "topics/t/-0/00000000000000000005.log",
        ] {
            assert_eq!(parse_key(key), None, "{key}");
        }
        assert_eq!(
            parse_pending_key("pending/t/01/00000000000000000005.json"),
            None
        );
        assert_eq!(
            parse_pending_key("pending/t/+1/00000000000000000005.json"),
            None
        );
        // Negative offsets keep their one name.
        let k = manifest_key("t", 1, -1);
        assert_eq!(
            parse_key(&k),
            Some(Entry::Manifest {
                topic: "t".into(),
                partition: 1,
                first_offset: -1
            })
        );
        let keys = vec![
            segment_key("t", 0, 5, "log"),
            "topics/t/00/00000000000000000005.log".to_string(),
            manifest_key("t", 0, 5),
            "topics/t/00/00000000000000000005.json".to_string(),
        ];
        let inv = Inventory::from_keys(&keys);
        assert_eq!(inv.manifests.get(&("t".to_string(), 0)), Some(&vec![5]));
        assert!(inv.orphans().is_empty());
    }
}
