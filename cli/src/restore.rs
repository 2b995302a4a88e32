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

//! The planning (what is restored, the pipeline, the dry run's counts and target checks)
//! lives in [`ferry_sources::backup::plan`], shared with the worker's restore wizard; this
//! module turns the flags into a request and prints the plan.

use crate::shortcuts::{load, print_pipeline, split_pair, SecurityArgs};
use anyhow::{bail, Result};
use ferry_core::transforms::filter::TimeBound;
use ferry_sources::backup::plan::{self, Partitioning, RestorePlan, RestoreRequest};
use serde_json::Map;

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

impl From<PartitioningArg> for Partitioning {
    fn from(p: PartitioningArg) -> Self {
        match p {
            PartitioningArg::Preserve => Partitioning::Preserve,
            PartitioningArg::Murmur2 => Partitioning::Murmur2,
        }
    }
}

/// Checks a `--until` value, so a mistake is reported against the flag.
fn parse_until(s: &str) -> std::result::Result<String, String> {
    TimeBound::parse(s).map(|_| s.to_string()).map_err(|_| {
        format!("'{s}' is not an RFC 3339 time or epoch milliseconds, e.g. 2026-12-01T00:00:00Z")
    })
}

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

/// The request the flags describe (`OLD=NEW` pairs split and checked for their shape).
pub fn request(a: &RestoreArgs) -> Result<RestoreRequest> {
    let pairs = |flag: &str, values: &[String]| -> Result<Vec<(String, String)>> {
        values.iter().map(|v| split_pair(flag, v)).collect()
    };
    let mut connection = Map::new();
    a.security.apply(&mut connection);
    Ok(RestoreRequest {
        from: a.from.clone(),
        brokers: a.brokers.clone(),
        connection,
        topics: a.topics.clone(),
        renames: pairs("--rename", &a.renames)?,
        until: a.until.clone(),
        from_offset: a.from_offset,
        to_offset: a.to_offset,
        groups: a.groups,
        group_renames: pairs("--group-rename", &a.group_renames)?,
        partitioning: a.partitioning.into(),
        partition_map: Default::default(),
        allow_existing: a.allow_existing,
        skip_damaged: a.skip_damaged,
        state: a.state.clone(),
        name: a.name.clone(),
        key_files: a.keys.key_files.clone(),
    })
}

/// Runs `ferry restore` (or prints its plan with `--dry-run`).
pub async fn main(args: RestoreArgs) -> Result<()> {
    let request = request(&args)?;
    let resolved = plan::resolve(&request).await?;
    let pipeline = plan::restore_pipeline(&request, &resolved)?;
    if args.print_pipeline {
        return print_pipeline(&pipeline);
    }
    // Build it even for a dry run, so every flag is checked the same way.
    let p = load(&crate::registry(), &pipeline, "ferry restore")?;
    if args.dry_run {
        let (p, probe) = plan::probe(p);
        crate::run::run_pipelines(vec![crate::run::Job::once(p)]).await?;
        let plan = probe.finish(&request, &resolved, pipeline).await?;
        print_plan(&plan);
        let refusals = &plan.targets.refusals;
        if !refusals.is_empty() {
            bail!("the restore would be refused: {}", refusals.join("; and "));
        }
        return Ok(());
    }
    crate::run::run_pipelines(vec![crate::run::Job::once(p)]).await
}

fn print_plan(plan: &RestorePlan) {
    crate::outln!("Restore plan (dry run: nothing was written)");
    crate::outln!(
        "{:<40} {:>7} {:>10} {:>12}  PLAN",
        "TARGET TOPIC",
        "EXISTS",
        "PARTITIONS",
        "RECORDS NOW"
    );
    for t in &plan.targets.topics {
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
                t.total_records.to_string()
            } else {
                "-".into()
            },
            t.note
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
    for r in &plan.partitions {
        let offsets = match (r.first_offset, r.last_offset) {
            (Some(a), Some(b)) => format!("{a}..={b}"),
            _ => "-".to_string(),
        };
        let t = |v: Option<i64>| v.map(crate::ls::rfc3339).unwrap_or_else(|| "-".into());
        crate::outln!(
            "{:<40} {:>9} {:>10} {offsets:>22} {:>26} {:>26}",
            r.topic,
            r.partition,
            r.records,
            t(r.min_timestamp),
            t(r.max_timestamp)
        );
    }
    crate::outln!(
        "{} record(s) in {} partition(s) would be restored",
        plan.total_records,
        plan.partitions.len()
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

    #[test]
    fn restore_flags_become_a_pipeline() {
        let a = args();
        let resolved = plan::Resolved {
            name: "n".into(),
            ..Default::default()
        };
        let p = plan::restore_pipeline(&request(&a).unwrap(), &resolved).unwrap();
        assert_eq!(p["transforms"][0]["map"]["orders"], "orders2");
        assert_eq!(p["sink"]["groups"]["rename"]["g"], "g2");
        assert_eq!(p["sink"]["partitioning"], "preserve");
        assert_eq!(p["source"]["to_offset"], 5);
        let bad = RestoreArgs {
            renames: vec!["nope".into()],
            ..a.clone()
        };
        assert!(request(&bad).unwrap_err().to_string().contains("--rename"));
        let bad = RestoreArgs {
            group_renames: vec!["=x".into()],
            ..a.clone()
        };
        assert!(request(&bad)
            .unwrap_err()
            .to_string()
            .contains("--group-rename"));
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
