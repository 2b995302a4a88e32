//! Restore planning: what a restore of a backup would do, before anything is written — the
//! plan `ferry restore --dry-run` prints and the console's restore wizard shows.
//!
//! A [`RestoreRequest`] says what to restore (backup, topics, renames, point in time, offsets,
//! partitioning, groups, target). Planning:
//! 1. reads the backup (descriptor, topics, manifests) and checks the request against it:
//!    topic names and renames must be ones the backup holds ([`selected_topics`],
//!    [`checked_renames`]);
//! 2. checks every segment about to be restored (size, CRC-32C, batch CRCs, keys) and
//!    refuses damaged ones, or narrows each damaged partition to the records before its first
//!    damaged segment when `skip_damaged` ([`resolve`]);
//! 3. names the restore by *what* is restored ([`identity_name`]) and builds its pipeline,
//!    source `backup` → `rename_topic` → sink `kafka` ([`restore_pipeline`]);
//! 4. runs that pipeline with a counting sink in place of the Kafka sink ([`probe`]): the
//!    plan counts exactly the records the restore would produce per target partition (after
//!    `until`, offsets, renames, aborted transactions), and nothing is written anywhere, not
//!    even a checkpoint;
//! 5. asks the real sink what it finds at the target ([`ferry_core::Sink::plan_targets`]):
//!    whether each target topic exists, holds records, and every reason it would refuse.

use super::segment::{check_key, DEFAULT_READ_CHUNK};
use super::verify::{verify_segment_with, Severity};
use super::Catalog;
use ferry_core::encryption::{EncryptionConfig, KeyProvider};
use ferry_core::transforms::filter::TimeBound;
use ferry_core::{
    Error, Pipeline, Registry, Result, Sink, Storage, TargetReport, TopicSelection, TopicSettings,
};
use ferry_formats::layout::SegmentManifest;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Segments checked at once before a restore.
const VERIFY_CONCURRENCY: usize = 4;

/// How restored records choose their target partition (the kafka sink's `partitioning`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Partitioning {
    /// Each record keeps its original partition.
    #[default]
    Preserve,
    /// Re-partition by key like the Java client (murmur2).
    Murmur2,
}

impl Partitioning {
    /// The kafka sink's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Partitioning::Preserve => "preserve",
            Partitioning::Murmur2 => "murmur2",
        }
    }
}

/// What to restore, where, and how: the flags of `ferry restore`, or the console wizard's
/// choices.
#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    /// The backup's location (a storage URI).
    pub from: String,
    /// Brokers of the target cluster.
    pub brokers: Vec<String>,
    /// Extra options of the kafka sink's connection (its `tls:` and `sasl:` blocks).
    pub connection: Map<String, Value>,
    /// Topics to restore: names or `/regex/` (empty: every topic of the backup).
    pub topics: Vec<String>,
    /// Restore topic OLD under the name NEW, in the order given.
    pub renames: Vec<(String, String)>,
    /// Point in time (RFC 3339 or epoch ms): per partition, every record before the first one
    /// stamped later.
    pub until: Option<String>,
    /// First original offset to restore (every partition).
    pub from_offset: Option<i64>,
    /// Original offset to stop before (every partition).
    pub to_offset: Option<i64>,
    /// Commit the backed-up consumer-group offsets of the restored topics, translated.
    pub groups: bool,
    /// Restore group OLD as NEW, in the order given.
    pub group_renames: Vec<(String, String)>,
    /// How records choose their target partition.
    pub partitioning: Partitioning,
    /// Explicit partition moves (`{0: 2}`) applied with `preserve`.
    pub partition_map: BTreeMap<i32, i32>,
    /// Append to target topics that already hold records this restore did not write.
    pub allow_existing: bool,
    /// Restore each partition with a damaged segment up to that segment.
    pub skip_damaged: bool,
    /// Where the restore keeps its checkpoint and offset map (default: a folder named after
    /// the backup under the local state folder, see
    /// [`ferry_core::checkpoint::default_restore_state`]).
    pub state: Option<String>,
    /// Pipeline name (default: [`identity_name`]).
    pub name: Option<String>,
    /// Key files of an encrypted backup, newest first.
    pub key_files: Vec<String>,
}

impl RestoreRequest {
    /// `until` as epoch milliseconds, when given and valid.
    fn until_ms(&self) -> Option<i64> {
        self.until
            .as_deref()
            .and_then(|u| TimeBound::parse(u).ok())
            .map(|t| t.0)
    }

    /// The keys, read now (a missing or malformed file is an error naming it).
    pub fn keys(&self) -> Result<Option<Arc<dyn KeyProvider>>> {
        if self.key_files.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            EncryptionConfig::from_files(&self.key_files)
                .load()
                .map_err(|e| Error::config(format!("{e}")))?,
        ))
    }
}

/// Per-partition original offset ranges, `"topic/partition"` → (from, to).
pub type Ranges = BTreeMap<String, (Option<i64>, Option<i64>)>;

/// What the restore found in the backup and decided before building its pipeline.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// The pipeline name: the request's or the restore's identity.
    pub name: String,
    /// Per-partition ranges (`"topic/partition"` → from, to) narrowed by `skip_damaged`.
    pub offsets: Ranges,
    /// The topics restored.
    pub selected: Vec<String>,
    /// Each restored topic's name on the target, when renamed.
    pub renames: BTreeMap<String, String>,
}

/// A segment that failed its check before the restore.
#[derive(Debug, Clone)]
struct Damaged {
    manifest: SegmentManifest,
    message: String,
}

fn holds(all: &[String]) -> String {
    if all.is_empty() {
        "no topics".to_string()
    } else {
        all.join(", ")
    }
}

/// The topics of `all` that `patterns` select (exact names or `/regex/`, anchored to the
/// whole name as every `topics:` list is, see [`ferry_core::topic_pattern`]); a name or regex
/// selecting nothing is an error naming it and listing what the backup holds.
pub fn selected_topics(patterns: &[String], all: &[String], uri: &str) -> Result<Vec<String>> {
    if patterns.is_empty() {
        return Ok(all.to_vec());
    }
    let mut out = BTreeSet::new();
    for p in patterns {
        let selection = TopicSelection::parse(std::slice::from_ref(p))
            .map_err(|e| Error::config(format!("--topic '{p}': {e}")))?;
        let matched: Vec<&String> = all.iter().filter(|t| selection.matches(t)).collect();
        if matched.is_empty() {
            return Err(Error::config(format!(
                "--topic '{p}': the backup at {uri} holds no such topic (it holds: {})",
                holds(all)
            )));
        }
        out.extend(matched.into_iter().cloned());
    }
    Ok(out.into_iter().collect())
}

/// Rename pairs, each checked: OLD must be a topic the restore selects.
pub fn checked_renames(
    renames: &[(String, String)],
    all: &[String],
    selected: &[String],
    uri: &str,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (old, new) in renames {
        let r = format!("{old}={new}");
        if old.is_empty() || new.is_empty() {
            return Err(Error::config(format!(
                "--rename expects OLD=NEW, got '{r}'"
            )));
        }
        if !all.contains(old) {
            return Err(Error::config(format!(
                "--rename '{r}': the backup at {uri} holds no topic '{old}' (it holds: {})",
                holds(all)
            )));
        }
        if !selected.contains(old) {
            return Err(Error::config(format!(
                "--rename '{r}': topic '{old}' is not restored (the --topic flags select: {})",
                selected.join(", ")
            )));
        }
        out.insert(old.clone(), new.clone());
    }
    Ok(out)
}

/// The default pipeline name: `restore-` and a 64-bit FNV-1a hash of what decides which
/// records go where — the backup (its creation time), each selected topic with its target
/// name, the range, per-partition limits, the target brokers (sorted) and the partitioning.
/// Spelling does not count: flag order, broker order, a topic list naming every topic and
/// `until` as RFC 3339 or milliseconds give the same name.
pub fn identity_name(
    r: &RestoreRequest,
    created_at_ms: i64,
    selected: &[String],
    renames: &BTreeMap<String, String>,
    offsets: &Ranges,
) -> String {
    let mut brokers: Vec<String> = r.brokers.iter().map(|b| b.trim().to_lowercase()).collect();
    brokers.sort();
    brokers.dedup();
    let targets: Vec<(&String, &String)> = selected
        .iter()
        .map(|t| (t, renames.get(t).unwrap_or(t)))
        .collect();
    let until = r.until_ms();
    let mut identity = format!(
        "{created_at_ms}|{targets:?}|{until:?}|{:?}|{:?}|{offsets:?}|{brokers:?}|{}",
        r.from_offset,
        r.to_offset,
        r.partitioning.as_str()
    );
    // Moved partitions send records elsewhere: another restore (absent, the name is the one
    // restores had before partition maps could be chosen).
    if !r.partition_map.is_empty() {
        identity.push_str(&format!("|{:?}", r.partition_map));
    }
    let hash = identity.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("restore-{hash:016x}")
}

/// The restore's pipeline: source `backup` → `rename_topic` (when renaming) → sink `kafka`.
pub fn restore_pipeline(r: &RestoreRequest, resolved: &Resolved) -> Result<Value> {
    let state = match &r.state {
        Some(s) => s.clone(),
        None => ferry_core::checkpoint::default_restore_state(&r.from)?,
    };
    let mut source = Map::new();
    source.insert("type".into(), json!("backup"));
    source.insert("uri".into(), json!(r.from));
    if !r.topics.is_empty() {
        source.insert("topics".into(), json!(r.topics));
    }
    if let Some(u) = &r.until {
        source.insert("until".into(), json!(u));
    }
    if let Some(o) = r.from_offset {
        source.insert("from_offset".into(), json!(o));
    }
    if let Some(o) = r.to_offset {
        source.insert("to_offset".into(), json!(o));
    }
    if !r.key_files.is_empty() {
        source.insert("encryption".into(), json!({ "key_files": r.key_files }));
    }
    if !resolved.offsets.is_empty() {
        let ranges: Map<String, Value> = resolved
            .offsets
            .iter()
            .map(|(k, (from, to))| (k.clone(), json!({ "from": from, "to": to })))
            .collect();
        source.insert("offsets".into(), Value::Object(ranges));
    }
    let mut transforms = Vec::new();
    if !r.renames.is_empty() {
        let mut map = Map::new();
        for (old, new) in &r.renames {
            map.insert(old.clone(), json!(new));
        }
        transforms.push(json!({ "type": "rename_topic", "map": map }));
    }
    let mut group_rename = Map::new();
    for (old, new) in &r.group_renames {
        group_rename.insert(old.clone(), json!(new));
    }
    let mut sink = json!({
            "type": "kafka",
            "brokers": r.brokers,
            "partitioning": r.partitioning.as_str(),
            "allow_existing": r.allow_existing,
            "state": state,
            // Smaller produce calls (3 stay in flight) cost no speed here and ~35 MiB of RSS.
            "buffer_bytes": "4MiB",
            "groups": { "restore": r.groups, "rename": group_rename },
    });
    if let Value::Object(block) = &mut sink {
        if !r.partition_map.is_empty() {
            let moves: Map<String, Value> = r
                .partition_map
                .iter()
                .map(|(from, to)| (from.to_string(), json!(to)))
                .collect();
            block.insert("partition_map".into(), Value::Object(moves));
        }
        for (k, v) in &r.connection {
            block.insert(k.clone(), v.clone());
        }
    }
    Ok(json!({
        "name": resolved.name,
        "source": source,
        "transforms": transforms,
        "sink": sink,
        // Decoded records pin the read buffers they were sliced from: a smaller budget keeps
        // a restore's memory low, and the pipelined producer keeps the broker busy anyway.
        "delivery": { "checkpoint": state, "max_in_flight_bytes": "32MiB" },
    }))
}

/// Whether a segment holds records the request's range and `until` ask for.
fn in_range(r: &RestoreRequest, until: Option<i64>, m: &SegmentManifest) -> bool {
    r.from_offset.is_none_or(|f| m.next_offset > f)
        && r.to_offset.is_none_or(|t| m.first_offset < t)
        && until.is_none_or(|u| m.min_timestamp.is_none_or(|t| t <= u))
}

/// Checks every segment the restore would read; returns the damaged ones, oldest first per
/// partition. A segment the keys cannot decrypt is an error (not damage to skip).
async fn find_damaged(
    catalog: &Catalog,
    storage: &Storage,
    r: &RestoreRequest,
    selected: &[String],
    keys: Option<Arc<dyn KeyProvider>>,
) -> Result<Vec<Damaged>> {
    let until = r.until_ms();
    let partitions: Vec<(String, i32)> = selected
        .iter()
        .flat_map(|t| catalog.partitions(t).into_iter().map(|p| (t.clone(), p)))
        .collect();
    let manifests: Vec<SegmentManifest> = catalog
        .manifests_of(partitions)
        .await?
        .into_iter()
        .flat_map(|(_, ms)| ms)
        .filter(|m| in_range(r, until, m))
        .collect();
    for m in &manifests {
        check_key(storage, m, keys.as_ref())
            .map_err(|e| Error::config(format!("{e}. Nothing was written")))?;
    }
    tracing::info!(
        segments = manifests.len(),
        "checking the segments to restore before writing anything"
    );
    let mut damaged: Vec<Damaged> = futures::stream::iter(manifests)
        .map(|m| {
            let keys = keys.clone();
            async move {
                let check =
                    verify_segment_with(storage.clone(), m.clone(), DEFAULT_READ_CHUNK, keys).await;
                let problems: Vec<String> = check
                    .problems
                    .into_iter()
                    .filter(|p| p.severity == Severity::Damage)
                    .map(|p| format!("{}: {}", p.object, p.message))
                    .collect();
                (!problems.is_empty()).then(|| Damaged {
                    manifest: m,
                    message: problems.join("; "),
                })
            }
        })
        .buffer_unordered(VERIFY_CONCURRENCY)
        .filter_map(|d| async move { d })
        .collect()
        .await;
    damaged.sort_by(|x, y| {
        (
            &x.manifest.topic,
            x.manifest.partition,
            x.manifest.first_offset,
        )
            .cmp(&(
                &y.manifest.topic,
                y.manifest.partition,
                y.manifest.first_offset,
            ))
    });
    Ok(damaged)
}

/// Refuses a restore with damaged segments, or (with `skip_damaged`) narrows each damaged
/// partition to the records before its first damaged segment.
fn handle_damaged(r: &RestoreRequest, damaged: &[Damaged]) -> Result<Ranges> {
    let describe = |d: &Damaged| {
        format!(
            "segment {} (topic '{}', partition {}, offsets {}..{}) is damaged: {}",
            d.manifest.segment,
            d.manifest.topic,
            d.manifest.partition,
            d.manifest.first_offset,
            d.manifest.next_offset,
            d.message
        )
    };
    if damaged.is_empty() {
        return Ok(BTreeMap::new());
    }
    if !r.skip_damaged {
        let list: Vec<String> = damaged.iter().map(describe).collect();
        return Err(Error::refused(format!(
            "{}. Nothing was written. `ferry verify {}` shows every problem; --skip-damaged \
             restores each damaged partition up to its first damaged segment",
            list.join("; "),
            r.from
        )));
    }
    let mut offsets = BTreeMap::new();
    for d in damaged {
        let key = format!("{}/{}", d.manifest.topic, d.manifest.partition);
        if offsets.contains_key(&key) {
            continue;
        }
        let to = r
            .to_offset
            .map_or(d.manifest.first_offset, |t| t.min(d.manifest.first_offset));
        tracing::warn!(
            "{}: restoring topic '{}' partition {} only below offset {to} (--skip-damaged)",
            describe(d),
            d.manifest.topic,
            d.manifest.partition
        );
        offsets.insert(key, (r.from_offset, Some(to)));
    }
    Ok(offsets)
}

/// Reads the backup, checks the request against it and the segments to restore, and names
/// the restore.
pub async fn resolve(r: &RestoreRequest) -> Result<Resolved> {
    let storage = Storage::from_uri(&r.from)
        .map_err(|e| Error::config(format!("--from '{}': {e}", r.from)))?;
    let catalog = Catalog::open(storage.clone()).await?;
    let all = catalog.topics();
    let selected = selected_topics(&r.topics, &all, &r.from)?;
    let renames = checked_renames(&r.renames, &all, &selected, &r.from)?;
    let keys = r.keys()?;
    let damaged = find_damaged(&catalog, &storage, r, &selected, keys).await?;
    let offsets = handle_damaged(r, &damaged)?;
    let name = match &r.name {
        Some(n) => n.clone(),
        None => identity_name(
            r,
            catalog.descriptor.created_at_ms,
            &selected,
            &renames,
            &offsets,
        ),
    };
    Ok(Resolved {
        name,
        offsets,
        selected,
        renames,
    })
}

/// What the restore would produce into one target partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionPlan {
    /// The topic on the target (after renames).
    pub topic: String,
    /// The partition records keep their original number in (before partitioning).
    pub partition: i32,
    /// Records restored.
    pub records: u64,
    /// First original offset restored.
    pub first_offset: Option<i64>,
    /// Last original offset restored.
    pub last_offset: Option<i64>,
    /// Earliest timestamp restored (epoch ms).
    pub min_timestamp: Option<i64>,
    /// Latest timestamp restored (epoch ms).
    pub max_timestamp: Option<i64>,
}

/// One consumer group of the backup's metadata and what the restore does with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupPlan {
    /// The group in the backup.
    pub group: String,
    /// Its name on the target.
    pub target: String,
    /// Whether its offsets are committed on the target (translated).
    pub restored: bool,
    /// Partitions it has offsets for, among the restored topics.
    pub partitions: usize,
}

/// A restore's plan: what it would write where, as the target is now.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    /// The pipeline name (names its checkpoint and offset map).
    pub name: String,
    /// The pipeline that restores it (source `backup`, sink `kafka`).
    pub pipeline: Value,
    /// The backup's topics restored, with their target names.
    pub topics: Vec<TopicRename>,
    /// What the target holds for each topic the restore writes, and what it would do.
    pub targets: TargetReport,
    /// Per target partition: the records restored.
    pub partitions: Vec<PartitionPlan>,
    /// Records restored in all.
    pub total_records: u64,
    /// The backup's consumer groups with offsets on the restored topics.
    pub groups: Vec<GroupPlan>,
    /// The point in time as epoch ms, when one was asked.
    pub until_ms: Option<i64>,
}

/// A restored topic and its name on the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicRename {
    /// The topic in the backup.
    pub topic: String,
    /// Its name on the target.
    pub target: String,
}

/// What the counting sink saw: rows per target partition and the source's metadata.
#[derive(Default)]
struct Seen {
    rows: BTreeMap<(String, i32), PartitionPlan>,
    topics: BTreeMap<String, TopicSettings>,
    groups: BTreeMap<String, BTreeSet<(String, i32)>>,
}

/// A sink that only counts: the restore pipeline runs with it instead of the Kafka sink, so
/// the plan shows exactly what would be produced and nothing is written anywhere.
struct PlanSink {
    seen: Arc<Mutex<Seen>>,
}

fn lock(seen: &Mutex<Seen>) -> MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait::async_trait]
impl Sink for PlanSink {
    async fn write(&mut self, batch: ferry_core::Batch) -> Result<()> {
        {
            let records = batch.records()?;
            let mut seen = lock(&self.seen);
            let row = seen
                .rows
                .entry((batch.topic.to_string(), batch.partition))
                .or_insert_with(|| PartitionPlan {
                    topic: batch.topic.to_string(),
                    partition: batch.partition,
                    ..Default::default()
                });
            for r in records.iter().filter(|r| !r.is_control) {
                row.records += 1;
                row.first_offset.get_or_insert(r.offset);
                row.last_offset = Some(r.offset);
                row.min_timestamp = Some(
                    row.min_timestamp
                        .map_or(r.timestamp, |t| t.min(r.timestamp)),
                );
                row.max_timestamp = Some(
                    row.max_timestamp
                        .map_or(r.timestamp, |t| t.max(r.timestamp)),
                );
            }
        }
        batch.ack.resolve();
        Ok(())
    }

    async fn write_metadata(&mut self, meta: ferry_core::SourceMetadata) -> Result<()> {
        let mut seen = lock(&self.seen);
        for t in meta.topics {
            seen.topics.insert(t.name.clone(), t);
        }
        for g in meta.groups {
            let parts = seen.groups.entry(g.group).or_default();
            for (topic, offsets) in g.offsets {
                parts.extend(offsets.into_keys().map(|p| (topic.clone(), p)));
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A restore pipeline whose sink was swapped for a counting one: run the pipeline (without
/// its checkpoint), then [`Probe::finish`] asks the real sink about the target.
pub struct Probe {
    seen: Arc<Mutex<Seen>>,
    sink: Box<dyn Sink>,
    name: String,
}

/// Prepares `p` (built from [`restore_pipeline`]) for a plan: its sink counts instead of
/// writing and its checkpoint is neither read nor written. Run the returned pipeline to its
/// end, then call [`Probe::finish`].
pub fn probe(mut p: Pipeline) -> (Pipeline, Probe) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = std::mem::replace(&mut p.sink, Box::new(PlanSink { seen: seen.clone() }));
    let name = p.name.clone();
    (
        p.without_checkpoint(),
        Probe {
            seen,
            sink,
            name: name.clone(),
        },
    )
}

impl Probe {
    /// After the probed pipeline ran: the plan, with what the real sink finds at the target
    /// (reading only).
    pub async fn finish(
        mut self,
        request: &RestoreRequest,
        resolved: &Resolved,
        pipeline: Value,
    ) -> Result<RestorePlan> {
        let seen = std::mem::take(&mut *lock(&self.seen));
        let names: BTreeSet<String> = seen
            .topics
            .keys()
            .cloned()
            .chain(seen.rows.keys().map(|(t, _)| t.clone()))
            .collect();
        let names: Vec<String> = names.into_iter().collect();
        self.sink.open().await?;
        let targets = self
            .sink
            .plan_targets(seen.topics.values().cloned().collect(), &names)
            .await?
            .unwrap_or_default();
        let renamed = |t: &String| resolved.renames.get(t).unwrap_or(t).clone();
        let group_renames: BTreeMap<&String, &String> =
            request.group_renames.iter().map(|(a, b)| (a, b)).collect();
        let selected: BTreeSet<&String> = resolved.selected.iter().collect();
        let groups = seen
            .groups
            .iter()
            .filter_map(|(g, parts)| {
                let n = parts
                    .iter()
                    .filter(|(t, _)| selected.contains(t) || names.contains(t))
                    .count();
                (n > 0).then(|| GroupPlan {
                    group: g.clone(),
                    target: group_renames
                        .get(g)
                        .map_or_else(|| g.clone(), |n| (*n).clone()),
                    restored: request.groups,
                    partitions: n,
                })
            })
            .collect();
        let partitions: Vec<PartitionPlan> = seen.rows.into_values().collect();
        tracing::debug!(pipeline = %self.name, partitions = partitions.len(), "restore planned");
        Ok(RestorePlan {
            name: resolved.name.clone(),
            pipeline,
            topics: resolved
                .selected
                .iter()
                .map(|t| TopicRename {
                    topic: t.clone(),
                    target: renamed(t),
                })
                .collect(),
            targets,
            total_records: partitions.iter().map(|p| p.records).sum(),
            partitions,
            groups,
            until_ms: request.until_ms(),
        })
    }
}

/// Plans a restore: resolves the request, builds its pipeline through `registry`, runs it
/// with the counting sink and asks the target. Writes nothing.
pub async fn plan(registry: &Registry, request: &RestoreRequest) -> Result<RestorePlan> {
    let resolved = resolve(request).await?;
    let pipeline = restore_pipeline(request, &resolved)?;
    let text = serde_json::to_string_pretty(&pipeline)
        .map_err(|e| Error::internal(format!("writing the restore pipeline: {e}")))?;
    let p = registry.load_pipeline(&text, "the restore plan")?;
    let (p, probe) = probe(p);
    ferry_core::run(p, std::future::pending::<()>()).await?;
    probe.finish(request, &resolved, pipeline).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RestoreRequest {
        RestoreRequest {
            from: "/b".into(),
            brokers: vec!["h:1".into(), "g:2".into()],
            topics: vec!["orders".into()],
            renames: vec![("orders".into(), "orders2".into())],
            until: Some("2026-11-24T10:00:00Z".into()),
            to_offset: Some(5),
            groups: true,
            group_renames: vec![("g".into(), "g2".into())],
            ..Default::default()
        }
    }

    fn name_of(r: &RestoreRequest, all: &[String]) -> String {
        let selected = selected_topics(&r.topics, all, &r.from).unwrap();
        let renames = checked_renames(&r.renames, all, &selected, &r.from).unwrap();
        identity_name(r, 7, &selected, &renames, &BTreeMap::new())
    }

    #[test]
    fn a_request_becomes_a_pipeline() {
        let r = RestoreRequest {
            partition_map: BTreeMap::from([(0, 2)]),
            ..request()
        };
        let resolved = Resolved {
            name: "n".into(),
            ..Default::default()
        };
        let p = restore_pipeline(&r, &resolved).unwrap();
        assert_eq!(p["transforms"][0]["map"]["orders"], "orders2");
        assert_eq!(p["sink"]["groups"]["rename"]["g"], "g2");
        assert_eq!(p["sink"]["partition_map"]["0"], 2);
        let state = p["sink"]["state"].as_str().unwrap();
        assert_eq!(
            state,
            ferry_core::checkpoint::default_restore_state("/b").unwrap()
        );
        assert_eq!(p["delivery"]["checkpoint"], state);
        assert_eq!(p["sink"]["allow_existing"], false);
        assert_eq!(p["source"]["to_offset"], 5);
    }

    #[test]
    fn the_name_follows_what_is_restored_not_how_it_was_typed() {
        let all = vec!["orders".to_string(), "payments".to_string()];
        let r = request();
        let name = name_of(&r, &all);
        assert!(name.starts_with("restore-") && name.len() == 24, "{name}");
        let retyped = RestoreRequest {
            brokers: vec!["g:2".into(), "h:1".into(), "h:1".into()],
            until: Some("1795514400000".into()),
            ..r.clone()
        };
        assert_eq!(name_of(&retyped, &all), name);
        let every = RestoreRequest {
            topics: vec![],
            renames: vec![],
            ..r.clone()
        };
        let named = RestoreRequest {
            topics: vec!["payments".into(), "/ord.*/".into()],
            renames: vec![],
            ..r.clone()
        };
        assert_eq!(name_of(&every, &all), name_of(&named, &all));
        for other in [
            RestoreRequest {
                renames: vec![("orders".into(), "orders3".into())],
                ..r.clone()
            },
            RestoreRequest {
                brokers: vec!["x:1".into()],
                ..r.clone()
            },
            RestoreRequest {
                to_offset: Some(6),
                ..r.clone()
            },
            RestoreRequest {
                partition_map: BTreeMap::from([(0, 1)]),
                ..r.clone()
            },
        ] {
            assert_ne!(name_of(&other, &all), name);
        }
    }

    #[test]
    fn names_the_backup_does_not_hold_are_refused_listing_what_it_holds() {
        let all = vec!["orders".to_string(), "payments".to_string()];
        let e = selected_topics(&["order".into()], &all, "/b").unwrap_err();
        assert!(
            e.to_string().contains("--topic 'order'") && e.to_string().contains("orders, payments"),
            "{e}"
        );
        // Anchored, as the backup source reads it: `/ord/` is not `orders`.
        assert!(selected_topics(&["/ord/".into()], &all, "/b").is_err());
        assert!(selected_topics(&["/^x/".into()], &all, "/b").is_err());
        let pair = |a: &str, b: &str| vec![(a.to_string(), b.to_string())];
        let e = checked_renames(&pair("nope", "x"), &all, &all, "/b").unwrap_err();
        assert!(
            e.to_string().contains("--rename 'nope=x'")
                && e.to_string().contains("orders, payments"),
            "{e}"
        );
        let e = checked_renames(&pair("payments", "x"), &all, &all[..1], "/b").unwrap_err();
        assert!(e.to_string().contains("not restored"), "{e}");
    }
}
