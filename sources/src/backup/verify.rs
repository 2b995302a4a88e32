//! `ferry verify`: re-reads every manifest and segment of a backup and checks them.
//!
//! For every segment: the object exists, its size and whole-file CRC-32C are the manifest's;
//! for `raw` segments every Kafka batch's CRC checks, the batches fill the object exactly,
//! their offsets lie in the manifest's span and the record count matches; `jsonl` segments
//! are parsed line by line and counted, `avro` and `parquet` segments decoded and counted;
//! every record must be of the manifest's partition and inside its offsets. Segments
//! without a manifest (and `pending/` markers of templated segments without one) are
//! reported as incomplete (a warning: restores ignore them). Memory stays bounded: segments
//! are streamed in ranged reads and the CRC is computed as they arrive; a `parquet` segment
//! is read whole (its footer is at its end), so checking one needs memory for the object.
//!
//! Encrypted segments: without the key, verify checks what it can see: the object's size and
//! CRC-32C against the manifest, the envelope header (its key id is the manifest's) and
//! that the chunk structure holds the manifest's plaintext size. With the key
//! ([`verify_backup_with`]) every chunk is decrypted (authenticated) and the plaintext gets
//! every check above. A key id none of the given keys has is an error, not damage.

use super::catalog::{parse_json, Catalog};
use super::segment::{
    decode_jsonl_line, AvroReader, ChunkedObject, LineReader, ParquetReader, RawReader,
    DEFAULT_READ_CHUNK,
};
use ferry_core::encryption::{EnvelopeHeader, KeyProvider};
use ferry_core::{Error, Result, Storage};
use ferry_formats::layout::{self, Entry, GroupsDocument, SegmentManifest, TopicDocument};
use futures::StreamExt;
use serde::Serialize;
use std::sync::Arc;

/// Segments checked at once.
const CONCURRENCY: usize = 4;
/// Manifests read at once.
const MANIFEST_CONCURRENCY: usize = 16;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Data is damaged or missing: a restore would fail or be wrong.
    Damage,
    /// Worth knowing, but restores are not affected (e.g. an incomplete segment).
    Warning,
}

/// One problem, naming the object it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Damage or warning.
    pub severity: Severity,
    /// Object key relative to the backup root.
    pub object: String,
    /// What is wrong.
    pub message: String,
}

/// What [`verify_backup`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The backup's URI (query string removed).
    pub uri: String,
    /// Topics with segments.
    pub topics: usize,
    /// Partitions with segments.
    pub partitions: usize,
    /// Segments (with a manifest) checked.
    pub segments: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Records counted.
    pub records: u64,
    /// Encrypted segments whose structure and CRC-32C were checked but not their records
    /// (no key given).
    #[serde(default)]
    pub encrypted_unopened: u64,
    /// Every problem found, in object order.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Number of damage problems.
    pub fn damaged(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Damage)
            .count()
    }

    /// Number of warnings.
    pub fn warnings(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
            .count()
    }

    /// Whether nothing is damaged.
    pub fn is_ok(&self) -> bool {
        self.damaged() == 0
    }
}

fn damage(object: &str, message: impl Into<String>) -> Problem {
    Problem {
        severity: Severity::Damage,
        object: object.to_string(),
        message: message.into(),
    }
}

fn warning(object: &str, message: impl Into<String>) -> Problem {
    Problem {
        severity: Severity::Warning,
        object: object.to_string(),
        message: message.into(),
    }
}

/// An error's message without the `corrupt data:` and `URI/key:` prefixes (the problem
/// names the object already).
fn message_of(e: &Error, storage: &Storage, key: &str) -> String {
    let text = match e {
        Error::Corrupt(m) => m.clone(),
        other => other.to_string(),
    };
    let name = format!("{storage}/{key}");
    match text.strip_prefix(&name) {
        Some(rest) => rest.trim_start_matches(':').trim_start().to_string(),
        None => text,
    }
}

/// How far a verification got (segments are most of the work: they are read in full).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct VerifyProgress {
    /// Segments checked so far.
    pub segments_checked: u64,
    /// Segments to check.
    pub segments_total: u64,
    /// Segment bytes read so far.
    pub bytes: u64,
}

/// Checks a whole backup. Errors only when the backup cannot be opened or listed; damage is
/// reported in the [`VerifyReport`]. Encrypted segments are checked without their key (see
/// the [module docs](self)).
pub async fn verify_backup(storage: Storage, chunk: Option<u64>) -> Result<VerifyReport> {
    verify_backup_with(storage, chunk, None).await
}

/// As [`verify_backup`], decrypting encrypted segments with `keys` to check their records.
/// A segment encrypted with a key `keys` does not hold is an error.
pub async fn verify_backup_with(
    storage: Storage,
    chunk: Option<u64>,
    decrypt: Option<Arc<dyn KeyProvider>>,
) -> Result<VerifyReport> {
    verify_backup_with_progress(storage, chunk, decrypt, |_| {}).await
}

/// As [`verify_backup_with`], calling `progress` once the segments are known and after each
/// one is checked (the console shows a progress bar with it).
pub async fn verify_backup_with_progress(
    storage: Storage,
    chunk: Option<u64>,
    decrypt: Option<Arc<dyn KeyProvider>>,
    progress: impl Fn(VerifyProgress) + Send + Sync,
) -> Result<VerifyReport> {
    let chunk = chunk.unwrap_or(DEFAULT_READ_CHUNK);
    let catalog = Catalog::open(storage.clone()).await?;
    let mut report = VerifyReport {
        uri: storage.to_string(),
        ..Default::default()
    };
    let mut problems = Vec::new();

    for topic in &catalog.inventory.topics_with_document {
        let key = layout::topic_key(topic);
        match storage.read(&key).await {
            Ok(b) => {
                if let Err(e) = parse_json::<TopicDocument>(&storage, &key, &b) {
                    problems.push(damage(&key, message_of(&e, &storage, &key)));
                }
            }
            Err(e) => problems.push(damage(&key, message_of(&e, &storage, &key))),
        }
    }
    for t in &catalog.group_snapshots {
        let key = layout::groups_key(*t);
        match storage.read(&key).await {
            Ok(b) => {
                if let Err(e) = parse_json::<GroupsDocument>(&storage, &key, &b) {
                    problems.push(damage(&key, message_of(&e, &storage, &key)));
                }
            }
            Err(e) => problems.push(damage(&key, message_of(&e, &storage, &key))),
        }
    }
    for (t, p, f, ext) in catalog.orphans() {
        let key = layout::segment_key(&t, p, f, &ext);
        problems.push(warning(
            &key,
            "incomplete segment: no manifest (an interrupted write; restores ignore it)",
        ));
    }
    for (t, p, f) in catalog.incomplete_pending() {
        let key = layout::pending_key(&t, p, f);
        let object = match storage.read_opt(&key).await {
            Ok(Some(b)) => serde_json::from_slice::<layout::PendingSegment>(&b)
                .map(|m| m.segment)
                .unwrap_or_else(|_| key.clone()),
            _ => key.clone(),
        };
        problems.push(warning(
            &object,
            format!("incomplete segment: {key} marks a write that has no manifest (interrupted, or still running; restores ignore it and the sink removes it on its next start)"),
        ));
    }

    let mut topics = std::collections::BTreeSet::new();
    let keys: Vec<(String, i32, i64)> = catalog
        .inventory
        .manifests
        .iter()
        .flat_map(|((t, p), firsts)| firsts.iter().map(move |f| (t.clone(), *p, *f)))
        .collect();
    report.partitions = catalog.inventory.manifests.len();
    let manifests: Vec<_> = futures::stream::iter(keys)
        .map(|(t, p, f)| {
            let catalog = &catalog;
            async move {
                let m = catalog.read_manifest(&t, p, f).await;
                (t, p, f, m)
            }
        })
        .buffered(MANIFEST_CONCURRENCY)
        .collect()
        .await;
    let mut jobs = Vec::new();
    let mut prev: Option<(String, i32, i64, String)> = None;
    for (topic, partition, first, m) in manifests {
        topics.insert(topic.clone());
        let key = layout::manifest_key(&topic, partition, first);
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                problems.push(damage(&key, message_of(&e, &storage, &key)));
                continue;
            }
        };
        if let Some((pt, pp, prev_next, prev_key)) = &prev {
            if *pt == topic && *pp == partition && m.first_offset < *prev_next {
                problems.push(warning(
                    &key,
                    format!(
                        "segment starts at offset {} but {prev_key} already covers up to {prev_next} (overlap; restores skip the repeated offsets)",
                        m.first_offset
                    ),
                ));
            }
        }
        let next = match &prev {
            Some((pt, pp, n, _)) if *pt == topic && *pp == partition => (*n).max(m.next_offset),
            _ => m.next_offset,
        };
        prev = Some((topic, partition, next, key));
        if decrypt.is_some() {
            super::segment::check_key(&storage, &m, decrypt.as_ref())?;
        }
        jobs.push(m);
    }
    report.topics = topics.len();

    let mut done = VerifyProgress {
        segments_total: jobs.len() as u64,
        ..Default::default()
    };
    progress(done);
    let mut results = std::pin::pin!(futures::stream::iter(jobs)
        .map(|m| verify_segment_with(storage.clone(), m, chunk, decrypt.clone()))
        .buffered(CONCURRENCY));
    while let Some(r) = results.next().await {
        report.segments += 1;
        report.encrypted_unopened += u64::from(r.encrypted_unopened);
        report.bytes += r.bytes;
        report.records += r.records;
        problems.extend(r.problems);
        done.segments_checked += 1;
        done.bytes += r.bytes;
        progress(done);
    }
    problems.sort_by(|a, b| a.object.cmp(&b.object));
    report.problems = problems;
    Ok(report)
}

/// What checking one segment found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentCheck {
    /// Bytes read.
    pub bytes: u64,
    /// Records counted.
    pub records: u64,
    /// An encrypted segment checked without its key (structure and CRC-32C only).
    pub encrypted_unopened: bool,
    /// Problems found.
    pub problems: Vec<Problem>,
}

/// Checks one segment against its manifest (an encrypted one without its key: see the
/// [module docs](self)).
pub async fn verify_segment(storage: Storage, m: SegmentManifest, chunk: u64) -> SegmentCheck {
    verify_segment_with(storage, m, chunk, None).await
}

/// Checks one segment against its manifest, decrypting it with `keys` when it is encrypted.
pub async fn verify_segment_with(
    storage: Storage,
    m: SegmentManifest,
    chunk: u64,
    keys: Option<Arc<dyn KeyProvider>>,
) -> SegmentCheck {
    let key = m.segment.clone();
    let mut out = SegmentCheck::default();
    let manifest_key = layout::manifest_key(&m.topic, m.partition, m.first_offset);
    match layout::parse_key(&key) {
        Some(Entry::Segment {
            topic,
            partition,
            first_offset,
            ..
        }) if topic == m.topic && partition == m.partition && first_offset == m.first_offset => {}
        // A name from a sink `path:` template (outside the layout's folders).
        None if templated_name_ok(&key) => {}
        _ => {
            out.problems.push(damage(
                &manifest_key,
                format!(
                    "names segment '{key}', which is not this partition's segment from offset {}",
                    m.first_offset
                ),
            ));
            return out;
        }
    }
    let op = match storage.operator() {
        Ok(op) => op,
        Err(e) => {
            out.problems.push(damage(&key, e.to_string()));
            return out;
        }
    };
    let size = match op.stat(&key).await {
        Ok(meta) => meta.content_length(),
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => {
            out.problems.push(damage(
                &key,
                format!("missing (its manifest {manifest_key} exists)"),
            ));
            return out;
        }
        Err(e) => {
            out.problems.push(damage(&key, format!("cannot stat: {e}")));
            return out;
        }
    };
    if size != m.bytes {
        out.problems.push(damage(
            &key,
            format!("object is {size} bytes, its manifest says {}", m.bytes),
        ));
        return out;
    }
    let object = ChunkedObject::new(storage.clone(), key.clone(), size, chunk);
    let object = match (&m.encryption, keys) {
        (Some(_), Some(keys)) => object.decrypting(keys),
        (Some(_), None) => {
            out.encrypted_unopened = true;
            let result = check_envelope(object, &m, &mut out).await;
            report_crc(&storage, &m, result, &mut out);
            return out;
        }
        (None, _) => object,
    };
    let result = match m.format.as_str() {
        "raw" => check_raw(&storage, &m, RawReader::new(object), &mut out).await,
        "jsonl" => check_jsonl(&storage, &m, LineReader::new(object), &mut out).await,
        ferry_formats::avro::NAME | ferry_formats::parquet::NAME => {
            check_records(&storage, &m, object, &mut out).await
        }
        _ => check_bytes_only(object, &mut out).await,
    };
    report_crc(&storage, &m, result, &mut out);
    out
}

/// Records the outcome of reading a segment: a CRC-32C that is not the manifest's, or the
/// error that stopped the read.
fn report_crc(storage: &Storage, m: &SegmentManifest, result: Result<u32>, out: &mut SegmentCheck) {
    let key = &m.segment;
    match result {
        Ok(crc) => {
            if crc != m.crc32c {
                out.problems.push(damage(
                    key,
                    format!(
                        "CRC-32C of the object is {crc:08x}, its manifest says {:08x}",
                        m.crc32c
                    ),
                ));
            }
        }
        Err(e) => out.problems.push(damage(key, message_of(&e, storage, key))),
    }
}

/// Checks an encrypted segment without its key: reads it for its CRC-32C, and checks the
/// envelope header (the manifest's key id) and that its chunks hold the manifest's
/// plaintext size. Returns the CRC-32C.
async fn check_envelope(
    mut object: ChunkedObject,
    m: &SegmentManifest,
    out: &mut SegmentCheck,
) -> Result<u32> {
    let name = object.name();
    let mut buf = bytes::BytesMut::new();
    let mut header: Option<EnvelopeHeader> = None;
    while object.read_more(&mut buf, 0).await? {
        if header.is_none() {
            header =
                EnvelopeHeader::parse(&buf).map_err(|e| Error::Corrupt(format!("{name}: {e}")))?;
            if header.is_none() {
                continue;
            }
        }
        buf.clear();
    }
    let Some(header) = header else {
        return Err(Error::Corrupt(format!(
            "{name}: the encryption header is cut short"
        )));
    };
    if let Some(e) = &m.encryption {
        if header.key_id != e.key_id {
            out.problems.push(damage(
                &m.segment,
                format!(
                    "the envelope names key id {}, its manifest says {}",
                    header.key_id, e.key_id
                ),
            ));
        }
        match header.plain_len(object.read_pos()) {
            Ok(n) if n == e.plain_bytes => {}
            Ok(n) => out.problems.push(damage(
                &m.segment,
                format!(
                    "its chunks hold {n} bytes, its manifest says {}",
                    e.plain_bytes
                ),
            )),
            Err(why) => out.problems.push(damage(&m.segment, why)),
        }
    }
    out.bytes += object.read_pos();
    out.records += m.record_count;
    Ok(object.crc32c())
}

/// Walks the batches of a raw segment; returns the whole-object CRC-32C.
async fn check_raw(
    storage: &Storage,
    m: &SegmentManifest,
    mut r: RawReader,
    out: &mut SegmentCheck,
) -> Result<u32> {
    let key = &m.segment;
    let mut records = 0u64;
    let mut prev_next: Option<i64> = None;
    let mut reported_range = false;
    while let Some(b) = r.next_batch().await? {
        let h = b.header;
        let next = h.next_offset();
        records += h.record_count as u64;
        // The first batch may start before the manifest's first offset (a backup that began
        // inside a batch keeps it whole), but it must reach into the span.
        let starts_ok = match prev_next {
            None => next > m.first_offset || (m.first_offset == m.next_offset),
            Some(p) => h.base_offset >= p && h.base_offset >= m.first_offset,
        };
        if prev_next.is_some_and(|p| h.base_offset < p) {
            return Err(Error::Corrupt(format!(
                "{storage}/{key}: batch at offset {} (byte {}) goes backwards (previous batch ended at {})",
                h.base_offset,
                b.position,
                prev_next.unwrap_or_default()
            )));
        }
        if (!starts_ok || next > m.next_offset) && !reported_range {
            reported_range = true;
            out.problems.push(damage(
                key,
                format!(
                    "batch {}..{} (byte {}) lies outside the manifest's offsets {}..{}",
                    h.base_offset, next, b.position, m.first_offset, m.next_offset
                ),
            ));
        }
        prev_next = Some(next);
    }
    out.bytes += r.object().read_pos();
    out.records += records;
    if records != m.record_count {
        out.problems.push(damage(
            key,
            format!(
                "holds {records} records, its manifest says {}",
                m.record_count
            ),
        ));
    }
    Ok(r.object().crc32c())
}

/// Parses every line of a jsonl segment; returns the whole-object CRC-32C.
async fn check_jsonl(
    storage: &Storage,
    m: &SegmentManifest,
    mut r: LineReader,
    out: &mut SegmentCheck,
) -> Result<u32> {
    let key = &m.segment;
    let mut records = 0u64;
    let topic: std::sync::Arc<str> = std::sync::Arc::from(m.topic.as_str());
    let name = format!("{storage}/{key}");
    while let Some(line) = r.next_line().await? {
        let rec = decode_jsonl_line(&name, &line, &topic, m.partition)?;
        if rec.offset < m.first_offset || rec.offset >= m.next_offset {
            return Err(Error::Corrupt(format!(
                "{name}, line {} (byte {}): offset {} is outside the manifest's offsets {}..{}",
                line.number, line.position, rec.offset, m.first_offset, m.next_offset
            )));
        }
        records += 1;
    }
    out.bytes += r.object().read_pos();
    out.records += records;
    if records != m.record_count {
        out.problems.push(damage(
            key,
            format!(
                "holds {records} records, its manifest says {}",
                m.record_count
            ),
        ));
    }
    Ok(r.object().crc32c())
}

/// Whether a segment name that is not a layout name can be a templated one: relative,
/// without `.`/`..` folders, outside the layout's own folders.
fn templated_name_ok(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('/')
        && !key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        && !["topics/", "groups/", "checkpoints/", layout::PENDING_PREFIX]
            .iter()
            .any(|p| key.starts_with(p))
        && key != layout::DESCRIPTOR
}

/// A record reader of an `avro` or `parquet` segment.
enum RecordReader {
    Avro(AvroReader),
    Parquet(ParquetReader),
}

/// Decodes every record of an avro or parquet segment, checks partition and offsets, and
/// counts them; returns the whole-object CRC-32C.
async fn check_records(
    storage: &Storage,
    m: &SegmentManifest,
    object: ChunkedObject,
    out: &mut SegmentCheck,
) -> Result<u32> {
    let key = &m.segment;
    let name = format!("{storage}/{key}");
    let topic: std::sync::Arc<str> = std::sync::Arc::from(m.topic.as_str());
    // The CRC is compared by the caller, to report it as its own problem.
    let mut reader = if m.format == ferry_formats::avro::NAME {
        RecordReader::Avro(AvroReader::new(object, topic, m.partition, None))
    } else {
        RecordReader::Parquet(ParquetReader::new(object, topic, m.partition, None))
    };
    let mut records = 0u64;
    let mut prev: Option<i64> = None;
    loop {
        let rec = match &mut reader {
            RecordReader::Avro(r) => r.next_record().await?,
            RecordReader::Parquet(r) => r.next_record().await?,
        };
        let Some(rec) = rec else { break };
        if rec.offset < m.first_offset || rec.offset >= m.next_offset {
            return Err(Error::Corrupt(format!(
                "{name}: offset {} is outside the manifest's offsets {}..{}",
                rec.offset, m.first_offset, m.next_offset
            )));
        }
        if prev.is_some_and(|p| rec.offset <= p) {
            return Err(Error::Corrupt(format!(
                "{name}: offset {} follows offset {} (records out of order)",
                rec.offset,
                prev.unwrap_or_default()
            )));
        }
        prev = Some(rec.offset);
        records += 1;
    }
    let object = match &reader {
        RecordReader::Avro(r) => r.object(),
        RecordReader::Parquet(r) => r.object(),
    };
    out.bytes += object.read_pos();
    out.records += records;
    if records != m.record_count {
        out.problems.push(damage(
            key,
            format!(
                "holds {records} records, its manifest says {}",
                m.record_count
            ),
        ));
    }
    Ok(object.crc32c())
}

/// Reads a segment of a format not inspected here, for its CRC-32C.
async fn check_bytes_only(mut object: ChunkedObject, out: &mut SegmentCheck) -> Result<u32> {
    let mut buf = bytes::BytesMut::new();
    while object.read_more(&mut buf, 0).await? {
        buf.clear();
    }
    out.bytes += object.read_pos();
    Ok(object.crc32c())
}
