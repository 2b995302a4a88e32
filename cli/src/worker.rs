//! `ferry worker`: runs Ferry as a service, one of a group of workers that share pipelines
//! through Kafka's group protocol, managed through a REST API.

use anyhow::Context;
use ferry_worker::WorkerConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Run a worker: join a group of workers on a Kafka cluster, serve the REST API, and run
/// the share of the group's pipelines the group gives this worker.
///
/// Settings come from `--config FILE` (YAML) and/or flags; a flag overrides the file.
/// `FERRY_API_TOKEN`, when set, is required as `Authorization: Bearer <token>` by every
/// request but `/healthz`. SIGINT/SIGTERM stop the tasks (each writes what it read), leave
/// the group and exit 0.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Worker file (YAML): brokers, group, listen, advertised_url, pipelines_dir,
    /// config_topic, status_topic, session_timeout, backups, and the connection options (tls, sasl …).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap brokers (comma-separated host:port) of the group's cluster.
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT")]
    pub brokers: Vec<String>,
    /// The group of workers to join.
    #[arg(long)]
    pub group: Option<String>,
    /// Where the REST API listens [default: 127.0.0.1:8083].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// How others reach this worker's API [default: http://<listen>].
    #[arg(long, value_name = "URL")]
    pub advertised_url: Option<String>,
    /// A folder of pipeline files kept in the group and reloaded when they change.
    #[arg(long = "pipelines", value_name = "DIR")]
    pub pipelines_dir: Option<PathBuf>,
    /// Topic of pipeline definitions [default: <group>-configs].
    #[arg(long, value_name = "TOPIC")]
    pub config_topic: Option<String>,
    /// Topic of task status [default: <group>-status].
    #[arg(long, value_name = "TOPIC")]
    pub status_topic: Option<String>,
    /// A worker not heard from for this long is dropped and its work moves [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub session_timeout: Option<std::time::Duration>,
    /// A backup location the console and `GET /backups` show (repeatable; adds to the
    /// file's `backups:`).
    #[arg(long = "backup", value_name = "URI")]
    pub backups: Vec<String>,
}

/// The worker's settings: the file, then the flags over it.
fn settings(args: Args) -> anyhow::Result<WorkerConfig> {
    let mut cfg = match &args.config {
        Some(path) => {
            let name = path.display().to_string();
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
            WorkerConfig::load(&text, &name)?
        }
        None => {
            if args.brokers.is_empty() || args.group.is_none() {
                anyhow::bail!(
                    "ferry worker needs --brokers and --group (or --config FILE naming them)"
                );
            }
            WorkerConfig::new(Vec::new(), "")
        }
    };
    if !args.brokers.is_empty() {
        cfg.connection.brokers = args.brokers;
    }
    if let Some(g) = args.group {
        cfg.group = g;
    }
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if args.advertised_url.is_some() {
        cfg.advertised_url = args.advertised_url;
    }
    if args.pipelines_dir.is_some() {
        cfg.pipelines_dir = args.pipelines_dir;
    }
    if args.config_topic.is_some() {
        cfg.config_topic = args.config_topic;
    }
    if args.status_topic.is_some() {
        cfg.status_topic = args.status_topic;
    }
    if let Some(t) = args.session_timeout {
        cfg.session_timeout = ferry_core::HumanDuration(t);
    }
    cfg.backups.extend(args.backups);
    if let Some(dir) = &cfg.pipelines_dir {
        if !dir.is_dir() {
            anyhow::bail!(
                "--pipelines {}: not a folder (create it, or leave the flag out)",
                dir.display()
            );
        }
    }
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("worker settings: {e}"))?;
    Ok(cfg)
}

/// Runs the worker until SIGINT/SIGTERM.
pub async fn main(args: Args) -> anyhow::Result<()> {
    let cfg = settings(args)?;
    ferry_worker::run(
        cfg,
        Arc::new(crate::registry()),
        ferry_core::shutdown_signal(),
    )
    .await?;
    Ok(())
}
