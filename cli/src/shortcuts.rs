//! `ferry backup` (and the pieces `ferry restore` shares): everyday jobs as flags. Each builds the YAML pipeline
//! it stands for (print it with `--print-pipeline`) and runs it through the same registry
//! and runtime as `ferry run`, so the CLI and pipeline files cannot drift apart.

use anyhow::{bail, Context, Result};
use ferry_core::registry::Registry;
use serde_json::{json, Map, Value};

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
    /// azblob:// or memory://. Repeat it to keep the backup in several places at once (a
    /// `fanout` sink: each location a complete backup, the checkpoint advancing only when
    /// every one holds the data).
    #[arg(long, value_parser = parse_uri, value_name = "URI", required = true)]
    pub to: Vec<String>,
    /// Segment format: raw (Kafka batches as fetched, what restore reads best), or an export
    /// format (JSON lines, Avro or Parquet files; restorable too), or `iceberg`: rows of an
    /// Apache Iceberg table (with --catalog and --table; --to is then the warehouse).
    #[arg(long, default_value = "raw", value_parser = BACKUP_FORMATS)]
    pub format: String,
    /// With --format iceberg: the catalog, `sqlite:///PATH` (SQL catalog on a SQLite file,
    /// created when missing) or `http(s)://…` (REST catalog).
    #[arg(long, value_name = "URI", required_if_eq("format", "iceberg"))]
    pub catalog: Option<String>,
    /// With --format iceberg: the table as NAMESPACE.TABLE (created on first write).
    #[arg(long, value_name = "NS.TABLE", required_if_eq("format", "iceberg"))]
    pub table: Option<String>,
    /// With --format iceberg: how a new table is partitioned, e.g. `day(timestamp)`,
    /// `topic`, `identity(partition)`, `bucket(16, key)` (repeat for several).
    #[arg(long = "partition-by", value_name = "SPEC")]
    pub partition_by: Vec<String>,
    /// With --format iceberg: decode JSON object values into typed columns (struct
    /// `value_json`); new fields add columns.
    #[arg(long)]
    pub json_values: bool,
    /// With --format raw: store batches the producer sent uncompressed compressed with this
    /// codec (zstd, lz4, snappy, gzip), as Kafka does for a topic's `compression.type`:
    /// records byte for byte, only the codec of those batches changes.
    #[arg(long, value_name = "CODEC", value_parser = ["zstd", "lz4", "snappy", "gzip"])]
    pub recompress: Option<String>,
    /// Back up to the high watermarks and exit; without it the backup runs until
    /// SIGINT/SIGTERM, then flushes and exits 0.
    #[arg(long)]
    pub snapshot: bool,
    /// Where to start: checkpoint (the stored one, else the earliest offsets), earliest,
    /// latest, or a time (RFC 3339 or epoch ms).
    #[arg(long, default_value = "checkpoint", value_parser = parse_start, value_name = "WHERE")]
    pub start: String,
    /// Pipeline name (names the checkpoint in the backup). Default: `backup`.
    #[arg(long, default_value = "backup")]
    pub name: String,
    /// Encrypt the backup with this key (see `ferry keygen`).
    #[command(flatten)]
    pub keys: crate::keygen::KeyArgs,
    /// Lock every segment and manifest written with S3 Object Lock for this long:
    /// MODE:DAYS, e.g. `governance:30d` or `compliance:365d` (s3:// only; the bucket must
    /// have Object Lock enabled). A stolen credential can then not delete them, and
    /// `ferry prune` keeps them until the lock ends.
    #[arg(long, value_name = "MODE:DAYS", value_parser = parse_object_lock)]
    pub object_lock: Option<ferry_core::object_lock::ObjectLockConfig>,
    /// Print the pipeline this command runs, as YAML, and exit.
    #[arg(long)]
    pub print_pipeline: bool,
}

/// What `ferry backup --format` takes: the segment formats and `iceberg` (the `iceberg`
/// sink instead of the `storage` sink).
pub const BACKUP_FORMATS: [&str; 5] = ["raw", "jsonl", "avro", "parquet", "iceberg"];

/// Checks a storage URI flag (`--to`, `--from`, `--state`), so a mistake is reported
/// against the flag rather than inside the generated pipeline.
pub fn parse_uri(s: &str) -> std::result::Result<String, String> {
    ferry_core::storage::StorageUri::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("'{s}' is not a storage location: {e}"))
}

/// Parses an `--object-lock` value (`MODE:DAYS`).
pub(crate) fn parse_object_lock(
    s: &str,
) -> std::result::Result<ferry_core::object_lock::ObjectLockConfig, String> {
    s.parse()
}

/// Checks a `--start` value.
fn parse_start(s: &str) -> std::result::Result<String, String> {
    if matches!(s, "checkpoint" | "earliest" | "latest")
        || ferry_core::transforms::filter::TimeBound::parse(s).is_ok()
    {
        return Ok(s.to_string());
    }
    Err(format!(
        "'{s}' is not checkpoint, earliest, latest, an RFC 3339 time or epoch milliseconds, \
         e.g. 2026-12-01T00:00:00Z"
    ))
}

/// Splits an `OLD=NEW` flag value.
pub fn split_pair(flag: &str, s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_string(), b.to_string())),
        _ => bail!("{flag} expects OLD=NEW, got '{s}'"),
    }
}

/// The `iceberg` sink of `ferry backup --format iceberg`.
fn iceberg_sink(a: &BackupArgs) -> Result<Value> {
    let (Some(catalog), Some(table)) = (&a.catalog, &a.table) else {
        bail!("--format iceberg needs --catalog URI and --table NAMESPACE.TABLE");
    };
    let [warehouse] = a.to.as_slice() else {
        bail!(
            "--to: --format iceberg writes one table, so give one warehouse location (got {})",
            a.to.len()
        );
    };
    if a.keys.block().is_some() {
        bail!("--encryption-key-file: Iceberg tables are read by other tools and are not encrypted; back up with --format raw to encrypt");
    }
    let Some((namespace, name)) = table.rsplit_once('.') else {
        bail!("--table '{table}': give it as NAMESPACE.TABLE, e.g. kafka.orders");
    };
    let catalog = if catalog.starts_with("sqlite:") {
        json!({ "type": "sql", "uri": catalog, "warehouse": warehouse })
    } else if catalog.starts_with("http://") || catalog.starts_with("https://") {
        json!({ "type": "rest", "uri": catalog, "warehouse": warehouse })
    } else {
        bail!(
            "--catalog '{catalog}': use sqlite:///PATH (SQL catalog) or http(s)://… (REST catalog)"
        );
    };
    let mut sink = json!({
        "type": "iceberg",
        "catalog": catalog,
        "namespace": namespace,
        "table": name,
    });
    if let Value::Object(block) = &mut sink {
        if !a.partition_by.is_empty() {
            block.insert("partition_by".into(), json!(a.partition_by));
        }
        if a.json_values {
            block.insert("value".into(), json!({ "as": "json" }));
        }
    }
    Ok(sink)
}

/// The `storage` sink of `ferry backup` writing to `uri`.
fn storage_sink(a: &BackupArgs, uri: &str) -> Result<Value> {
    let mut sink = json!({ "type": "storage", "uri": uri, "format": a.format });
    if let (Some(codec), Value::Object(sink)) = (&a.recompress, &mut sink) {
        sink.insert("raw".into(), json!({ "compression": codec }));
    }
    if let (Some(block), Value::Object(sink)) = (a.keys.block(), &mut sink) {
        sink.insert("encryption".into(), block);
    }
    if let (Some(lock), Value::Object(sink)) = (&a.object_lock, &mut sink) {
        sink.insert("object_lock".into(), serde_json::to_value(lock)?);
    }
    Ok(sink)
}

/// The pipeline `ferry backup` runs.
pub fn backup_pipeline(a: &BackupArgs) -> Result<Value> {
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
    if a.recompress.is_some() && a.format != "raw" {
        bail!(
            "--recompress applies to --format raw (the other formats choose their own compression)"
        );
    }
    if let Some(lock) = &a.object_lock {
        if a.format == "iceberg" {
            bail!("--object-lock applies to the storage sink's segments and manifests; Iceberg tables are written by their own commit protocol and are not locked");
        }
        for uri in &a.to {
            lock.validate(uri, "--object-lock")?;
        }
    }
    let sink = if a.format == "iceberg" {
        iceberg_sink(a)?
    } else {
        let copies: Vec<Value> =
            a.to.iter()
                .map(|uri| storage_sink(a, uri))
                .collect::<Result<_>>()?;
        match <[Value; 1]>::try_from(copies) {
            Ok([one]) => one,
            Err(copies) => json!({ "type": "fanout", "sinks": copies }),
        }
    };
    Ok(json!({
        "name": a.name,
        "source": source,
        "sink": sink,
    }))
}

/// Loads a generated pipeline through the registry, exactly as a file would be.
pub fn load(registry: &Registry, pipeline: &Value, origin: &str) -> Result<ferry_core::Pipeline> {
    // JSON is YAML: the generated text goes through the one YAML seam and its checks.
    let text = serde_json::to_string_pretty(pipeline)?;
    registry
        .load_pipeline(&text, origin)
        .with_context(|| format!("building the pipeline of {origin}"))
}

/// A generated pipeline as a job that a storage outage does not end when it is continuous
/// (see [`crate::run::Job::from_text`]).
pub fn job(pipeline: &Value, origin: &str) -> Result<crate::run::Job> {
    let text = serde_json::to_string_pretty(pipeline)?;
    crate::run::Job::from_text(text, origin.to_string())
        .with_context(|| format!("building the pipeline of {origin}"))
}

/// A generated pipeline as YAML, passwords replaced by a reference to
/// `FERRY_SASL_PASSWORD` (so the printed pipeline can be saved and run as it is).
pub fn pipeline_yaml(pipeline: &Value) -> Result<String> {
    let mut shown = pipeline.clone();
    for stage in ["source", "sink"] {
        if let Some(p) = shown.pointer_mut(&format!("/{stage}/sasl/password")) {
            *p = json!("${FERRY_SASL_PASSWORD}");
        }
    }
    let mut yaml = serde_saphyr::to_string(&shown).context("writing the pipeline as YAML")?;
    if !yaml.ends_with('\n') {
        yaml.push('\n');
    }
    Ok(yaml)
}

/// Prints a generated pipeline as YAML (see [`pipeline_yaml`]).
pub fn print_pipeline(pipeline: &Value) -> Result<()> {
    crate::output::print(&pipeline_yaml(pipeline)?)
}

/// Runs `ferry backup`.
pub async fn backup(args: BackupArgs) -> Result<()> {
    let pipeline = backup_pipeline(&args)?;
    if args.print_pipeline {
        return print_pipeline(&pipeline);
    }
    // Before the pipeline is built: building the storage sink may create its folder.
    check_topics_exist(&args).await?;
    let job = job(&pipeline, "ferry backup")?;
    crate::run::run_pipelines(vec![job]).await
}

/// Connects to the cluster of `brokers` with the security flags.
pub async fn connect(brokers: &[String], security: &SecurityArgs) -> Result<ferry_kafka::Client> {
    let mut options = Map::new();
    options.insert("brokers".into(), json!(brokers));
    security.apply(&mut options);
    let config = serde_json::from_value::<ferry_kafka::ConnectionOptions>(options.into())
        .context("connection flags")?
        .client_config()
        .map_err(anyhow::Error::msg)?;
    ferry_kafka::Client::connect(config)
        .await
        .with_context(|| format!("connecting to {}", brokers.join(",")))
}

/// Refuses, before anything is written, `--topic` names the cluster does not have (and, for
/// a snapshot, patterns that match none): a backup of nothing would leave an empty backup.
async fn check_topics_exist(args: &BackupArgs) -> Result<()> {
    let client = connect(&args.brokers, &args.security).await?;
    let md = client
        .metadata(None)
        .await
        .context("listing the cluster's topics")?;
    let names: Vec<&str> = md
        .topics
        .iter()
        .filter(|t| t.error.is_none())
        .map(|t| t.name.as_str())
        .collect();
    let missing = missing_topics(&args.topics, &names, args.snapshot)?;
    if let Some(t) = missing.first() {
        let hint = crate::components::nearest(t, &names)
            .map(|n| format!("did you mean '{n}'? "))
            .unwrap_or_default();
        bail!(
            "--topic '{t}': {} on {}: {hint}(`ferry topics --brokers {}` lists them). Nothing \
             was written",
            if t.starts_with('/') {
                "no topic matches it"
            } else {
                "no such topic"
            },
            args.brokers.join(","),
            args.brokers.join(",")
        );
    }
    Ok(())
}

/// The `--topic` values that select nothing among `names`: exact names always, `/regex/`
/// patterns only for a snapshot (a continuous backup may wait for topics to appear).
pub fn missing_topics(patterns: &[String], names: &[&str], snapshot: bool) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for p in patterns {
        let found = match p.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
            Some(re) if p.len() >= 2 => {
                let re = regex::Regex::new(re)
                    .with_context(|| format!("--topic '{p}': not a valid regex"))?;
                !snapshot || names.iter().any(|n| re.is_match(n))
            }
            _ => names.contains(&p.as_str()),
        };
        if !found {
            missing.push(p.clone());
        }
    }
    Ok(missing)
}
