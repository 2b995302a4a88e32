//! `ferry backup` and `ferry restore`: everyday jobs as flags. Each builds the YAML pipeline
//! it stands for (print it with `--print-pipeline`) and runs it through the same registry
//! and runtime as `ferry run`, so the CLI and pipeline files cannot drift apart.

use anyhow::{bail, Context, Result};
use ferry_core::registry::Registry;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// How to reach a secured cluster: the `tls:` and `sasl:` options of the kafka source and
/// sink, as flags (shared by `backup`, `restore` and `topics`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SecurityArgs {
    /// Connect with TLS (implied by the other --tls-* flags); the system's root
    /// certificates are trusted unless --tls-ca-file is given.
    #[arg(long)]
    pub tls: bool,
    /// CA certificates (PEM) to trust instead of the system's.
    #[arg(long, value_name = "PEM")]
    pub tls_ca_file: Option<String>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, value_name = "PEM", requires = "tls_key_file")]
    pub tls_cert_file: Option<String>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, value_name = "PEM", requires = "tls_cert_file")]
    pub tls_key_file: Option<String>,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, value_name = "MECHANISM", requires = "sasl_username")]
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    #[arg(long, value_name = "USER", requires = "sasl_mechanism")]
    pub sasl_username: Option<String>,
    /// SASL password; better from the environment (FERRY_SASL_PASSWORD) than on the
    /// command line, where other users of the machine can see it.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "FERRY_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub sasl_password: Option<String>,
}

impl SecurityArgs {
    /// Adds `tls:` and `sasl:` blocks to a kafka source or sink block.
    pub fn apply(&self, block: &mut Map<String, Value>) {
        let tls_files = [
            ("ca_file", &self.tls_ca_file),
            ("cert_file", &self.tls_cert_file),
            ("key_file", &self.tls_key_file),
        ];
        if self.tls || tls_files.iter().any(|(_, f)| f.is_some()) {
            let mut tls = Map::new();
            for (k, f) in tls_files {
                if let Some(f) = f {
                    tls.insert(k.into(), json!(f));
                }
            }
            block.insert("tls".into(), Value::Object(tls));
        }
        if let (Some(mechanism), Some(username)) = (&self.sasl_mechanism, &self.sasl_username) {
            block.insert(
                "sasl".into(),
                json!({
                    "mechanism": mechanism,
                    "username": username,
                    "password": self.sasl_password.clone().unwrap_or_default(),
                }),
            );
        }
    }
}

/// `ferry backup`: back up topics to storage.
#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Brokers of the source cluster, host:port (repeat or comma-separate).
    #[arg(long, required = true, value_delimiter = ',')]
    pub brokers: Vec<String>,
    /// TLS and SASL settings of the source cluster.
    #[command(flatten)]
    pub security: SecurityArgs,
    /// Topic to back up: a name or /regex/ (repeat for several).
    #[arg(long = "topic", required = true)]
    pub topics: Vec<String>,
    /// Where to write: a local path, file://, s3://bucket/prefix?endpoint=…&region=…, gs://,
    /// azblob:// or memory://.
    #[arg(long)]
    pub to: String,
    /// Segment format: raw (Kafka batches, for restore), or an export format.
    #[arg(long, default_value = "raw")]
    pub format: String,
    /// Back up to the high watermarks and exit; without it the backup runs until
    /// SIGINT/SIGTERM, then flushes and exits 0.
    #[arg(long)]
    pub snapshot: bool,
    /// Where to start when no checkpoint exists: checkpoint (default), earliest, latest, or a time.
    #[arg(long, default_value = "checkpoint")]
    pub start: String,
    /// Pipeline name (names the checkpoint in the backup). Default: `backup`.
    #[arg(long, default_value = "backup")]
    pub name: String,
    /// Print the pipeline this command runs, as YAML, and exit.
    #[arg(long)]
    pub print_pipeline: bool,
}

/// `ferry restore`: restore a backup into a cluster.
#[derive(clap::Args, Debug, Clone)]
pub struct RestoreArgs {
    /// The backup: a local path, file://, s3://…, gs://…, azblob://… or memory://.
    #[arg(long)]
    pub from: String,
    /// Brokers of the target cluster, host:port (repeat or comma-separate).
    #[arg(long, required = true, value_delimiter = ',')]
    pub brokers: Vec<String>,
    /// TLS and SASL settings of the target cluster.
    #[command(flatten)]
    pub security: SecurityArgs,
    /// Topic to restore: a name or /regex/ (repeat; default all topics of the backup).
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// Restore topic OLD under the name NEW (repeat).
    #[arg(long = "rename", value_name = "OLD=NEW")]
    pub renames: Vec<String>,
    /// Point in time (RFC 3339 or epoch ms): per partition, every record before the first
    /// one stamped later.
    #[arg(long)]
    pub until: Option<String>,
    /// First original offset to restore (every partition).
    #[arg(long)]
    pub from_offset: Option<i64>,
    /// Original offset to stop before (every partition).
    #[arg(long)]
    pub to_offset: Option<i64>,
    /// Commit the backed-up consumer-group offsets of the restored topics, translated.
    #[arg(long)]
    pub groups: bool,
    /// Restore group OLD as NEW (repeat).
    #[arg(long = "group-rename", value_name = "OLD=NEW")]
    pub group_renames: Vec<String>,
    /// preserve (default) or murmur2 (re-partition by key like the Java client).
    #[arg(long, default_value = "preserve")]
    pub partitioning: String,
    /// Where the restore keeps its checkpoint and offset map (default: a folder named after
    /// the backup under $FERRY_STATE_DIR, $XDG_STATE_HOME/ferry or ~/.local/state/ferry;
    /// never the backup, which a restore only reads).
    #[arg(long)]
    pub state: Option<String>,
    /// Pipeline name (names checkpoint and offset map). Default: `restore-<8 hex digits>`,
    /// a hash of the destination (brokers, topics, renames, range, partitioning): the same
    /// restore run again resumes (or finds nothing left to do), a restore anywhere else
    /// starts with its own state.
    #[arg(long)]
    pub name: Option<String>,
    /// Print the plan (topics, partitions, offsets, times, records) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the pipeline this command runs, as YAML, and exit.
    #[arg(long)]
    pub print_pipeline: bool,
}

fn split_pair(flag: &str, s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_string(), b.to_string())),
        _ => bail!("{flag} expects OLD=NEW, got '{s}'"),
    }
}

/// The pipeline `ferry backup` runs.
pub fn backup_pipeline(a: &BackupArgs) -> Value {
    let mut source = json!({
        "type": "kafka",
        "brokers": a.brokers,
        "topics": a.topics,
        "start": a.start,
        "stop": if a.snapshot { "high_watermark" } else { "never" },
    });
    if let Value::Object(block) = &mut source {
        a.security.apply(block);
    }
    json!({
        "name": a.name,
        "source": source,
        "sink": { "type": "storage", "uri": a.to, "format": a.format },
    })
}

/// The pipeline `ferry restore` runs.
pub fn restore_pipeline(a: &RestoreArgs) -> Result<Value> {
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
            "partitioning": a.partitioning,
            "state": state,
            // Smaller produce calls (3 stay in flight) cost no speed here and ~35 MiB of RSS.
            "buffer_bytes": "4MiB",
            "groups": { "restore": a.groups, "rename": group_rename },
    });
    if let Value::Object(block) = &mut sink {
        a.security.apply(block);
    }
    Ok(json!({
        "name": a.name.clone().unwrap_or_else(|| default_restore_name(a)),
        "source": source,
        "transforms": transforms,
        "sink": sink,
        // Decoded records pin the read buffers they were sliced from: a smaller budget keeps
        // a restore's memory low, and the pipelined producer keeps the broker busy anyway.
        "delivery": { "checkpoint": state, "max_in_flight_bytes": "32MiB" },
    }))
}

/// `restore-<hash>`: the default restore name, a 32-bit FNV-1a hash of what decides where
/// records go. A restore's checkpoint and offset map are named after it, so they must not be
/// shared by restores into different places: restoring the same backup a second time into
/// another topic or cluster would otherwise "resume" the first one and write nothing.
fn default_restore_name(a: &RestoreArgs) -> String {
    let mut brokers = a.brokers.clone();
    brokers.sort();
    let mut topics = a.topics.clone();
    topics.sort();
    let mut renames = a.renames.clone();
    renames.sort();
    let identity = format!(
        "{brokers:?}|{topics:?}|{renames:?}|{:?}|{:?}|{:?}|{}",
        a.until, a.from_offset, a.to_offset, a.partitioning
    );
    let hash = identity.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("restore-{hash:08x}")
}

/// Loads a generated pipeline through the registry, exactly as a file would be.
pub fn load(registry: &Registry, pipeline: &Value, origin: &str) -> Result<ferry_core::Pipeline> {
    // JSON is YAML: the generated text goes through the one YAML seam and its checks.
    let text = serde_json::to_string_pretty(pipeline)?;
    registry
        .load_pipeline(&text, origin)
        .with_context(|| format!("building the pipeline of {origin}"))
}

/// Prints a generated pipeline as YAML-compatible JSON, passwords replaced by a reference
/// to `FERRY_SASL_PASSWORD` (so the printed pipeline can be saved and run as it is).
pub fn print_pipeline(pipeline: &Value) -> Result<()> {
    let mut shown = pipeline.clone();
    for stage in ["source", "sink"] {
        if let Some(p) = shown.pointer_mut(&format!("/{stage}/sasl/password")) {
            *p = json!("${FERRY_SASL_PASSWORD}");
        }
    }
    println!("{}", serde_json::to_string_pretty(&shown)?);
    Ok(())
}

/// Runs `ferry backup`.
pub async fn backup(args: BackupArgs) -> Result<()> {
    let pipeline = backup_pipeline(&args);
    if args.print_pipeline {
        return print_pipeline(&pipeline);
    }
    let p = load(&crate::registry(), &pipeline, "ferry backup")?;
    crate::run::run_pipelines(vec![p]).await
}

/// Runs `ferry restore` (or prints its plan with `--dry-run`).
pub async fn restore(args: RestoreArgs) -> Result<()> {
    let pipeline = restore_pipeline(&args)?;
    if args.print_pipeline {
        return print_pipeline(&pipeline);
    }
    // Build it even for a dry run, so every flag is checked the same way.
    let p = load(&crate::registry(), &pipeline, "ferry restore")?;
    if args.dry_run {
        return dry_run(p).await;
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

/// A sink that only counts: the restore pipeline runs with it instead of the Kafka sink, so
/// the plan shows exactly what would be produced (after `--until`, offsets, renames,
/// aborted transactions) and nothing is written anywhere, not even a checkpoint.
struct PlanSink {
    rows: std::sync::Arc<std::sync::Mutex<BTreeMap<(String, i32), PlanRow>>>,
}

#[async_trait::async_trait]
impl ferry_core::Sink for PlanSink {
    async fn write(&mut self, batch: ferry_core::Batch) -> ferry_core::Result<()> {
        {
            let records = batch.records()?;
            let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
            let row = rows
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

    async fn flush(&mut self) -> ferry_core::Result<()> {
        Ok(())
    }
}

async fn dry_run(mut p: ferry_core::Pipeline) -> Result<()> {
    let rows = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    p.sink = Box::new(PlanSink { rows: rows.clone() });
    let p = p.without_checkpoint();
    crate::run::run_pipelines(vec![p]).await?;
    let rows = std::mem::take(&mut *rows.lock().unwrap_or_else(|p| p.into_inner()));
    println!("Restore plan (dry run: nothing was written)");
    println!(
        "{:<40} {:>9} {:>10} {:>22} {:>26} {:>26}",
        "TOPIC (on target)", "PARTITION", "RECORDS", "ORIGINAL OFFSETS", "FROM", "TO"
    );
    let mut total = 0;
    for ((topic, partition), r) in &rows {
        total += r.records;
        let offsets = match (r.first_offset, r.last_offset) {
            (Some(a), Some(b)) => format!("{a}..={b}"),
            _ => "-".to_string(),
        };
        let t = |v: Option<i64>| v.map(crate::ls::rfc3339).unwrap_or_else(|| "-".into());
        println!(
            "{topic:<40} {partition:>9} {:>10} {offsets:>22} {:>26} {:>26}",
            r.records,
            t(r.min_timestamp),
            t(r.max_timestamp)
        );
    }
    println!(
        "{total} record(s) in {} partition(s) would be restored",
        rows.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_flags_become_a_pipeline() {
        let a = RestoreArgs {
            from: "/b".into(),
            brokers: vec!["h:1".into()],
            security: SecurityArgs::default(),
            topics: vec!["orders".into()],
            renames: vec!["orders=orders2".into()],
            until: Some("2026-11-24T10:00:00Z".into()),
            from_offset: None,
            to_offset: Some(5),
            groups: true,
            group_renames: vec!["g=g2".into()],
            partitioning: "preserve".into(),
            state: None,
            name: None,
            dry_run: false,
            print_pipeline: false,
        };
        let p = restore_pipeline(&a).unwrap();
        assert_eq!(p["transforms"][0]["map"]["orders"], "orders2");
        assert_eq!(p["sink"]["groups"]["rename"]["g"], "g2");
        let state = p["sink"]["state"].as_str().unwrap();
        assert_eq!(
            state,
            ferry_core::checkpoint::default_restore_state("/b").unwrap()
        );
        assert_eq!(p["delivery"]["checkpoint"], state);
        assert_eq!(p["source"]["to_offset"], 5);
        // The default name follows the destination: same flags, same name; another target
        // topic, another name; an explicit name wins.
        let name = p["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("restore-") && name.len() == 16, "{name}");
        assert_eq!(restore_pipeline(&a).unwrap()["name"], name.as_str());
        let elsewhere = RestoreArgs {
            renames: vec!["orders=orders3".into()],
            ..a.clone()
        };
        assert_ne!(restore_pipeline(&elsewhere).unwrap()["name"], name.as_str());
        let named = RestoreArgs {
            name: Some("mine".into()),
            ..a.clone()
        };
        assert_eq!(restore_pipeline(&named).unwrap()["name"], "mine");
        let bad = RestoreArgs {
            renames: vec!["nope".into()],
            ..a.clone()
        };
        assert!(restore_pipeline(&bad)
            .unwrap_err()
            .to_string()
            .contains("--rename"));
    }
}
