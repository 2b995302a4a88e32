//! `ferry restore`: restores a backup into a cluster — a shortcut for a backup → kafka
//! pipeline (print it with `--print-pipeline`).
//!
//! Before the pipeline is built the backup is read (descriptor, topics, manifests) so that:
//! - `--topic` and `--rename` names are checked against what the backup holds;
//! - the restore's state (checkpoint and offset map) is named by *what* is restored — the
//!   backup, the topics and their target names, the range, the target cluster and the
//!   partitioning — not by how the command was typed, so the same restore typed again
//!   (flags reordered, brokers listed in another order) resumes;
//! - every segment about to be restored is checked (size, CRC-32C, batch CRCs) before
//!   anything is produced: a damaged segment stops the restore naming it, unless
//!   `--skip-damaged` restores each damaged partition up to its first damaged segment;
//! - an encrypted backup's segments are checked against the keys (`--encryption-key-file`)
//!   first: a missing or wrong key stops the restore naming the segment and the key id.
//!
//! The kafka sink then checks the target topics before writing (see the sink's `target`
//! module): existing records it did not write, too few partitions, LogAppendTime.

use crate::shortcuts::{load, print_pipeline, split_pair, SecurityArgs};
use anyhow::{bail, Context, Result};
use ferry_core::encryption::KeyProvider;
use ferry_core::transforms::filter::TimeBound;
use ferry_core::{Sink, Storage};
use ferry_formats::layout::SegmentManifest;
use ferry_sinks::kafka::{KafkaSink, KafkaSinkConfig, TargetTopic};
use ferry_sources::backup::segment::check_key;
use ferry_sources::backup::verify::{verify_segment_with, Severity};
use ferry_sources::backup::Catalog;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// How restored records choose their partition (the kafka sink's `partitioning`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PartitioningArg {
    /// Each record keeps its original partition.
    #[default]
    Preserve,
    /// Re-partition by key like the Java client (murmur2); null keys keep theirs modulo the
    /// target's count.
    Murmur2,
}

impl PartitioningArg {
    fn as_str(self) -> &'static str {
        match self {
            PartitioningArg::Preserve => "preserve",
            PartitioningArg::Murmur2 => "murmur2",
        }
    }
}

/// Checks a `--until` value, so a mistake is reported against the flag.
fn parse_until(s: &str) -> std::result::Result<String, String> {
    TimeBound::parse(s).map(|_| s.to_string()).map_err(|_| {
        format!("'{s}' is not an RFC 3339 time or epoch milliseconds, e.g. 2026-12-01T00:00:00Z")
    })
}

/// Segments checked at once before a restore.
const VERIFY_CONCURRENCY: usize = 4;

/// `ferry restore`: restore a backup into a cluster.
#[derive(clap::Args, Debug, Clone)]
pub struct RestoreArgs {
    /// The backup: a local path, file://, s3://…, gs://…, azblob://… or memory://.
    #[arg(long, value_parser = crate::shortcuts::parse_uri, value_name = "URI")]
    pub from: String,
    /// Brokers of the target cluster, host:port (repeat or comma-separate).
    #[arg(long, required = true, value_delimiter = ',')]
    pub brokers: Vec<String>,
    /// TLS and SASL settings of the target cluster.
    #[command(flatten)]
    pub security: SecurityArgs,
    /// Topic to restore: a name or /regex/ (repeat; default all topics of the backup). A
    /// name the backup does not hold, or a regex matching none, is an error.
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// Restore topic OLD under the name NEW (repeat). OLD must be a restored topic.
    #[arg(long = "rename", value_name = "OLD=NEW")]
    pub renames: Vec<String>,
    /// Point in time (RFC 3339 or epoch ms): per partition, every record before the first
    /// one stamped later.
    #[arg(long, value_parser = parse_until, value_name = "TIME")]
    pub until: Option<String>,
    /// First original offset to restore (every partition).
    #[arg(long, value_name = "OFFSET")]
    pub from_offset: Option<i64>,
    /// Original offset to stop before (every partition).
    #[arg(long, value_name = "OFFSET")]
    pub to_offset: Option<i64>,
    /// Commit the backed-up consumer-group offsets of the restored topics, translated.
    #[arg(long)]
    pub groups: bool,
    /// Restore group OLD as NEW (repeat).
    #[arg(long = "group-rename", value_name = "OLD=NEW")]
    pub group_renames: Vec<String>,
    /// How records choose their target partition.
    #[arg(long, value_enum, default_value_t = PartitioningArg::Preserve)]
    pub partitioning: PartitioningArg,
    /// Append to target topics that already hold records this restore did not write
    /// (refused by default, before anything is written).
    #[arg(long)]
    pub allow_existing: bool,
    /// Restore each partition with a damaged segment up to that segment, leaving out the
    /// rest of that partition (by default a damaged segment stops the restore before
    /// anything is written).
    #[arg(long)]
    pub skip_damaged: bool,
    /// Where the restore keeps its checkpoint and offset map (default: a folder named after
    /// the backup under $FERRY_STATE_DIR, $XDG_STATE_HOME/ferry or ~/.local/state/ferry;
    /// never the backup, which a restore only reads).
    #[arg(long, value_parser = crate::shortcuts::parse_uri, value_name = "URI")]
    pub state: Option<String>,
    /// Pipeline name (names checkpoint and offset map). Default: `restore-<16 hex digits>`,
    /// named by what is restored (the backup, topics, renames, range, target brokers,
    /// partitioning): the same restore typed again resumes; a restore of something else or
    /// anywhere else has its own state.
    #[arg(long)]
    pub name: Option<String>,
    /// Print the plan (target topics as they are, partitions, offsets, times, records) and
    /// write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the pipeline this command runs, as YAML, and exit.
    #[arg(long)]
    pub print_pipeline: bool,
    /// Keys of an encrypted backup.
    #[command(flatten)]
    pub keys: crate::keygen::KeyArgs,
}

/// Per-partition original offset ranges, `"topic/partition"` → (from, to).
pub type Ranges = BTreeMap<String, (Option<i64>, Option<i64>)>;

/// What the restore found in the backup and decided before building its pipeline.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// The pipeline name: `--name` or the restore's identity.
    pub name: String,
    /// Per-partition ranges (`"topic/partition"` → from, to) narrowed by `--skip-damaged`.
    pub offsets: Ranges,
}

/// A segment that failed its check before the restore.
#[derive(Debug, Clone)]
struct Damaged {
    manifest: SegmentManifest,
    message: String,
}

/// The topics of `all` that `patterns` select (exact names or `/regex/`, as the backup
/// source reads them); a name or regex selecting nothing is an error naming the flag.
pub fn selected_topics(patterns: &[String], all: &[String], uri: &str) -> Result<Vec<String>> {
    if patterns.is_empty() {
        return Ok(all.to_vec());
    }
    let holds = holds(all);
    let mut out = BTreeSet::new();
    for p in patterns {
        let matched: Vec<&String> = match p.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
            Some(re) if p.len() >= 2 => {
                let re = regex::Regex::new(re)
                    .with_context(|| format!("--topic '{p}': not a valid regex"))?;
                all.iter().filter(|t| re.is_match(t)).collect()
            }
            _ => all.iter().filter(|t| *t == p).collect(),
        };
        if matched.is_empty() {
            bail!("--topic '{p}': the backup at {uri} holds no such topic (it holds: {holds})");
        }
        out.extend(matched.into_iter().cloned());
    }
    Ok(out.into_iter().collect())
}

fn holds(all: &[String]) -> String {
    if all.is_empty() {
        "no topics".to_string()
    } else {
        all.join(", ")
    }
}

/// `--rename` pairs, each checked: OLD must be a topic the restore selects.
pub fn checked_renames(
    renames: &[String],
    all: &[String],
    selected: &[String],
    uri: &str,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for r in renames {
        let (old, new) = split_pair("--rename", r)?;
        if !all.contains(&old) {
            bail!(
                "--rename '{r}': the backup at {uri} holds no topic '{old}' (it holds: {})",
                holds(all)
            );
        }
        if !selected.contains(&old) {
            bail!(
                "--rename '{r}': topic '{old}' is not restored (the --topic flags select: {})",
                selected.join(", ")
            );
        }
        out.insert(old, new);
    }
    Ok(out)
}

/// The default pipeline name: `restore-` and a 64-bit FNV-1a hash of what decides which
/// records go where — the backup (its creation time), each selected topic with its target
/// name, the range, per-partition limits, the target brokers (sorted) and the partitioning.
/// Spelling does not count: flag order, broker order, a `--topic` list naming every topic
/// and `--until` as RFC 3339 or milliseconds give the same name.
pub fn identity_name(
    a: &RestoreArgs,
    created_at_ms: i64,
    selected: &[String],
    renames: &BTreeMap<String, String>,
    offsets: &Ranges,
) -> String {
    let mut brokers: Vec<String> = a.brokers.iter().map(|b| b.trim().to_lowercase()).collect();
    brokers.sort();
    brokers.dedup();
    let targets: Vec<(&String, &String)> = selected
        .iter()
        .map(|t| (t, renames.get(t).unwrap_or(t)))
        .collect();
    let until = a
        .until
        .as_deref()
        .and_then(|u| TimeBound::parse(u).ok())
        .map(|t| t.0);
    let identity = format!(
        "{created_at_ms}|{targets:?}|{until:?}|{:?}|{:?}|{offsets:?}|{brokers:?}|{}",
        a.from_offset,
        a.to_offset,
        a.partitioning.as_str()
    );
    let hash = identity.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("restore-{hash:016x}")
}

/// The pipeline `ferry restore` runs.
pub fn restore_pipeline(a: &RestoreArgs, resolved: &Resolved) -> Result<Value> {
    let state = match &a.state {
        Some(s) => s.clone(),
        None => ferry_core::checkpoint::default_restore_state(&a.from)?,
    };
    let mut source = Map::new();
    source.insert("type".into(), json!("backup"));
    source.insert("uri".into(), json!(a.from));
    if !a.topics.is_empty() {
        source.insert("topics".into(), json!(a.topics));
    }
    if let Some(u) = &a.until {
        source.insert("until".into(), json!(u));
    }
    if let Some(o) = a.from_offset {
        source.insert("from_offset".into(), json!(o));
    }
    if let Some(o) = a.to_offset {
        source.insert("to_offset".into(), json!(o));
    }
    if let Some(block) = a.keys.block() {
        source.insert("encryption".into(), block);
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
    if !a.renames.is_empty() {
        let mut map = Map::new();
        for r in &a.renames {
            let (old, new) = split_pair("--rename", r)?;
            map.insert(old, json!(new));
        }
        transforms.push(json!({ "type": "rename_topic", "map": map }));
    }
    let mut group_rename = Map::new();
    for r in &a.group_renames {
        let (old, new) = split_pair("--group-rename", r)?;
        group_rename.insert(old, json!(new));
    }
    let mut sink = json!({
            "type": "kafka",
            "brokers": a.brokers,
            "partitioning": a.partitioning.as_str(),
            "allow_existing": a.allow_existing,
            "state": state,
            // Smaller produce calls (3 stay in flight) cost no speed here and ~35 MiB of RSS.
            "buffer_bytes": "4MiB",
            "groups": { "restore": a.groups, "rename": group_rename },
    });
    if let Value::Object(block) = &mut sink {
        a.security.apply(block);
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

/// Whether a segment holds records the restore's range and `--until` ask for.
fn in_range(a: &RestoreArgs, until: Option<i64>, m: &SegmentManifest) -> bool {
    a.from_offset.is_none_or(|f| m.next_offset > f)
        && a.to_offset.is_none_or(|t| m.first_offset < t)
        && until.is_none_or(|u| m.min_timestamp.is_none_or(|t| t <= u))
}

/// Checks every segment the restore would read; returns the damaged ones, oldest first per
/// partition. A segment the keys cannot decrypt is an error (not damage to skip).
async fn find_damaged(
    catalog: &Catalog,
    storage: &Storage,
    a: &RestoreArgs,
    selected: &[String],
    keys: Option<Arc<dyn KeyProvider>>,
) -> Result<Vec<Damaged>> {
    let until = a
        .until
        .as_deref()
        .and_then(|u| TimeBound::parse(u).ok())
        .map(|t| t.0);
    let partitions: Vec<(String, i32)> = selected
        .iter()
        .flat_map(|t| catalog.partitions(t).into_iter().map(|p| (t.clone(), p)))
        .collect();
    let manifests: Vec<SegmentManifest> = catalog
        .manifests_of(partitions)
        .await?
        .into_iter()
        .flat_map(|(_, ms)| ms)
        .filter(|m| in_range(a, until, m))
        .collect();
    for m in &manifests {
        check_key(storage, m, keys.as_ref())
            .map_err(|e| anyhow::anyhow!("{e}. Nothing was written"))?;
    }
    tracing::info!(
        segments = manifests.len(),
        "checking the segments to restore before writing anything"
    );
    let chunk = ferry_sources::backup::segment::DEFAULT_READ_CHUNK;
    let mut damaged: Vec<Damaged> = futures::stream::iter(manifests)
        .map(|m| {
            let keys = keys.clone();
            async move {
                let check = verify_segment_with(storage.clone(), m.clone(), chunk, keys).await;
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

/// Refuses a restore with damaged segments, or (with `--skip-damaged`) narrows each damaged
/// partition to the records before its first damaged segment.
fn handle_damaged(a: &RestoreArgs, damaged: &[Damaged]) -> Result<Ranges> {
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
    if !a.skip_damaged {
        let list: Vec<String> = damaged.iter().map(describe).collect();
        bail!(
            "{}. Nothing was written. `ferry verify {}` shows every problem; --skip-damaged \
             restores each damaged partition up to its first damaged segment",
            list.join("; "),
            a.from
        );
    }
    let mut offsets = BTreeMap::new();
    for d in damaged {
        let key = format!("{}/{}", d.manifest.topic, d.manifest.partition);
        if offsets.contains_key(&key) {
            continue;
        }
        let to = a
            .to_offset
            .map_or(d.manifest.first_offset, |t| t.min(d.manifest.first_offset));
        tracing::warn!(
            "{}: restoring topic '{}' partition {} only below offset {to} (--skip-damaged)",
            describe(d),
            d.manifest.topic,
            d.manifest.partition
        );
        offsets.insert(key, (a.from_offset, Some(to)));
    }
    Ok(offsets)
}

/// Reads the backup, checks the flags against it and the segments to restore, and names
/// the restore.
async fn resolve(a: &RestoreArgs) -> Result<Resolved> {
    let storage = Storage::from_uri(&a.from).with_context(|| format!("--from '{}'", a.from))?;
    let catalog = Catalog::open(storage.clone()).await?;
    let all = catalog.topics();
    let selected = selected_topics(&a.topics, &all, &a.from)?;
    let renames = checked_renames(&a.renames, &all, &selected, &a.from)?;
    let keys = a.keys.load()?;
    let damaged = find_damaged(&catalog, &storage, a, &selected, keys).await?;
    let offsets = handle_damaged(a, &damaged)?;
    let name = match &a.name {
        Some(n) => n.clone(),
        None => identity_name(
            a,
            catalog.descriptor.created_at_ms,
            &selected,
            &renames,
            &offsets,
        ),
    };
    Ok(Resolved { name, offsets })
}

/// Runs `ferry restore` (or prints its plan with `--dry-run`).
pub async fn main(args: RestoreArgs) -> Result<()> {
    let resolved = resolve(&args).await?;
    let pipeline = restore_pipeline(&args, &resolved)?;
    if args.print_pipeline {
        return print_pipeline(&pipeline);
    }
    // Build it even for a dry run, so every flag is checked the same way.
    let p = load(&crate::registry(), &pipeline, "ferry restore")?;
    if args.dry_run {
        return dry_run(p, &pipeline).await;
    }
    crate::run::run_pipelines(vec![p]).await
}

/// What a dry run found for one target partition.
#[derive(Debug, Default, serde::Serialize)]
struct PlanRow {
    records: u64,
    first_offset: Option<i64>,
    last_offset: Option<i64>,
    min_timestamp: Option<i64>,
    max_timestamp: Option<i64>,
}

/// What the plan sink saw: rows per target partition and the source's topic metadata.
#[derive(Default)]
struct Seen {
    rows: BTreeMap<(String, i32), PlanRow>,
    topics: BTreeMap<String, ferry_core::TopicSettings>,
}

/// A sink that only counts: the restore pipeline runs with it instead of the Kafka sink, so
/// the plan shows exactly what would be produced (after `--until`, offsets, renames,
/// aborted transactions) and nothing is written anywhere, not even a checkpoint.
struct PlanSink {
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
}

impl PlanSink {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl ferry_core::Sink for PlanSink {
    async fn write(&mut self, batch: ferry_core::Batch) -> ferry_core::Result<()> {
        {
            let records = batch.records()?;
            let mut seen = self.seen();
            let row = seen
                .rows
                .entry((batch.topic.to_string(), batch.partition))
                .or_default();
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

    async fn write_metadata(&mut self, meta: ferry_core::SourceMetadata) -> ferry_core::Result<()> {
        let mut seen = self.seen();
        for t in meta.topics {
            seen.topics.insert(t.name.clone(), t);
        }
        Ok(())
    }

    async fn flush(&mut self) -> ferry_core::Result<()> {
        Ok(())
    }
}

async fn dry_run(mut p: ferry_core::Pipeline, pipeline: &Value) -> Result<()> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
    p.sink = Box::new(PlanSink { seen: seen.clone() });
    let name = p.name.clone();
    let p = p.without_checkpoint();
    crate::run::run_pipelines(vec![p]).await?;
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
    let targets = inspect_targets(pipeline, &name, &seen).await?;
    print_plan(&seen, &targets.0, targets.1);
    let refusals = targets.2;
    if !refusals.is_empty() {
        bail!("the restore would be refused: {}", refusals.join("; and "));
    }
    Ok(())
}

/// Looks at the target topics as the kafka sink would before writing (reading only):
/// what each holds, whether appending is allowed, and every refusal.
async fn inspect_targets(
    pipeline: &Value,
    name: &str,
    seen: &Seen,
) -> Result<(Vec<TargetTopic>, bool, Vec<String>)> {
    let mut options = pipeline["sink"].clone();
    if let Value::Object(block) = &mut options {
        block.remove("type");
    }
    let config: KafkaSinkConfig =
        serde_json::from_value(options).context("reading the restore's kafka sink options")?;
    let mut sink = KafkaSink::new(config, name)?;
    sink.open().await?;
    sink.note_source_topics(seen.topics.values().cloned());
    let names: BTreeSet<String> = seen
        .topics
        .keys()
        .cloned()
        .chain(seen.rows.keys().map(|(t, _)| t.clone()))
        .collect();
    let names: Vec<String> = names.into_iter().collect();
    let targets = sink.inspect_targets(&names).await?;
    let refusals = sink.refusals(&targets);
    Ok((targets, sink.allows_existing(), refusals))
}

fn print_plan(seen: &Seen, targets: &[TargetTopic], allow_existing: bool) {
    crate::outln!("Restore plan (dry run: nothing was written)");
    crate::outln!(
        "{:<40} {:>7} {:>10} {:>12}  PLAN",
        "TARGET TOPIC",
        "EXISTS",
        "PARTITIONS",
        "RECORDS NOW"
    );
    for t in targets {
        crate::outln!(
            "{:<40} {:>7} {:>10} {:>12}  {}",
            t.topic,
            if t.exists { "yes" } else { "no" },
            if t.exists {
                t.partitions.to_string()
            } else {
                "-".into()
            },
            if t.exists {
                t.total_records().to_string()
            } else {
                "-".into()
            },
            t.plan_note(allow_existing)
        );
    }
    crate::outln!();
    crate::outln!(
        "{:<40} {:>9} {:>10} {:>22} {:>26} {:>26}",
        "TOPIC (on target)",
        "PARTITION",
        "RECORDS",
        "ORIGINAL OFFSETS",
        "FROM",
        "TO"
    );
    let mut total = 0;
    for ((topic, partition), r) in &seen.rows {
        total += r.records;
        let offsets = match (r.first_offset, r.last_offset) {
            (Some(a), Some(b)) => format!("{a}..={b}"),
            _ => "-".to_string(),
        };
        let t = |v: Option<i64>| v.map(crate::ls::rfc3339).unwrap_or_else(|| "-".into());
        crate::outln!(
            "{topic:<40} {partition:>9} {:>10} {offsets:>22} {:>26} {:>26}",
            r.records,
            t(r.min_timestamp),
            t(r.max_timestamp)
        );
    }
    crate::outln!(
        "{total} record(s) in {} partition(s) would be restored",
        seen.rows.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> RestoreArgs {
        RestoreArgs {
            from: "/b".into(),
            brokers: vec!["h:1".into(), "g:2".into()],
            security: SecurityArgs::default(),
            topics: vec!["orders".into()],
            renames: vec!["orders=orders2".into()],
            until: Some("2026-11-24T10:00:00Z".into()),
            from_offset: None,
            to_offset: Some(5),
            groups: true,
            group_renames: vec!["g=g2".into()],
            partitioning: PartitioningArg::Preserve,
            allow_existing: false,
            skip_damaged: false,
            state: None,
            name: None,
            dry_run: false,
            print_pipeline: false,
            keys: Default::default(),
        }
    }

    fn name_of(a: &RestoreArgs, all: &[String]) -> String {
        let selected = selected_topics(&a.topics, all, &a.from).unwrap();
        let renames = checked_renames(&a.renames, all, &selected, &a.from).unwrap();
        identity_name(a, 7, &selected, &renames, &BTreeMap::new())
    }

    #[test]
    fn restore_flags_become_a_pipeline() {
        let a = args();
        let resolved = Resolved {
            name: "n".into(),
            ..Default::default()
        };
        let p = restore_pipeline(&a, &resolved).unwrap();
        assert_eq!(p["transforms"][0]["map"]["orders"], "orders2");
        assert_eq!(p["sink"]["groups"]["rename"]["g"], "g2");
        let state = p["sink"]["state"].as_str().unwrap();
        assert_eq!(
            state,
            ferry_core::checkpoint::default_restore_state("/b").unwrap()
        );
        assert_eq!(p["delivery"]["checkpoint"], state);
        assert_eq!(p["sink"]["allow_existing"], false);
        assert_eq!(p["source"]["to_offset"], 5);
        let bad = RestoreArgs {
            renames: vec!["nope".into()],
            ..a.clone()
        };
        assert!(restore_pipeline(&bad, &resolved)
            .unwrap_err()
            .to_string()
            .contains("--rename"));
    }

    #[test]
    fn the_name_follows_what_is_restored_not_how_it_was_typed() {
        let all = vec!["orders".to_string(), "payments".to_string()];
        let a = args();
        let name = name_of(&a, &all);
        assert!(name.starts_with("restore-") && name.len() == 24, "{name}");
        // Brokers in another order, the time as milliseconds: the same restore.
        let retyped = RestoreArgs {
            brokers: vec!["g:2".into(), "h:1".into(), "h:1".into()],
            until: Some("1795514400000".into()),
            ..a.clone()
        };
        assert_eq!(name_of(&retyped, &all), name);
        // No --topic and every topic named: the same selection.
        let every = RestoreArgs {
            topics: vec![],
            renames: vec![],
            ..a.clone()
        };
        let named = RestoreArgs {
            topics: vec!["payments".into(), "/ord/".into()],
            renames: vec![],
            ..a.clone()
        };
        assert_eq!(name_of(&every, &all), name_of(&named, &all));
        // Another target name, cluster or range: another restore.
        for other in [
            RestoreArgs {
                renames: vec!["orders=orders3".into()],
                ..a.clone()
            },
            RestoreArgs {
                brokers: vec!["x:1".into()],
                ..a.clone()
            },
            RestoreArgs {
                to_offset: Some(6),
                ..a.clone()
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
        assert!(selected_topics(&["/^x/".into()], &all, "/b").is_err());
        let e = checked_renames(&["nope=x".into()], &all, &all, "/b").unwrap_err();
        assert!(
            e.to_string().contains("--rename 'nope=x'")
                && e.to_string().contains("orders, payments"),
            "{e}"
        );
        let e = checked_renames(&["payments=x".into()], &all, &all[..1], "/b").unwrap_err();
        assert!(e.to_string().contains("not restored"), "{e}");
    }

    #[test]
    fn until_is_checked_as_a_flag() {
        let e = parse_until("yesterday").unwrap_err();
        assert_eq!(
            e,
            "'yesterday' is not an RFC 3339 time or epoch milliseconds, e.g. 2026-12-01T00:00:00Z"
        );
        assert!(parse_until("2026-12-01T00:00:00Z").is_ok());
        assert!(parse_until("1764547200000").is_ok());
    }
}
