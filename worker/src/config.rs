//! The worker's settings: `ferry worker --config worker.yaml`, or the same as flags.

use ferry_core::{Error, HumanDuration, Result};
use ferry_kafka::ConnectionOptions;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of one worker. Every worker of a group should use the same `group`,
/// `config_topic` and `status_topic`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// The Kafka cluster that holds the group and the worker topics: brokers, client id,
    /// TLS, SASL, timeouts, retries.
    #[serde(flatten)]
    pub connection: ConnectionOptions,
    /// The group the workers share pipelines in.
    pub group: String,
    /// Where the REST API listens. Default 127.0.0.1:8083.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How other workers and clients reach this one (default `http://<listen>`).
    #[serde(default)]
    pub advertised_url: Option<String>,
    /// A folder of pipeline files (`*.yaml`, `*.yml`) kept in the group, reloaded when they
    /// change.
    #[serde(default)]
    pub pipelines_dir: Option<PathBuf>,
    /// The compacted topic of pipeline definitions (default `<group>-configs`).
    #[serde(default)]
    pub config_topic: Option<String>,
    /// The compacted topic of task status (default `<group>-status`).
    #[serde(default)]
    pub status_topic: Option<String>,
    /// The coordinator drops a worker it has not heard from for this long; its partitions
    /// then move to the others. Default 10s.
    #[serde(default = "default_session_timeout")]
    pub session_timeout: HumanDuration,
    /// How long workers get to rejoin during a rebalance. Default 60s.
    #[serde(default = "default_rebalance_timeout")]
    pub rebalance_timeout: HumanDuration,
    /// Backup locations the console and `GET /backups` show (`--backup URI`, repeatable).
    #[serde(default)]
    pub backups: Vec<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8083))
}

fn default_session_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

fn default_rebalance_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

impl WorkerConfig {
    /// Settings with defaults for everything but the brokers and the group.
    pub fn new(brokers: Vec<String>, group: impl Into<String>) -> Self {
        WorkerConfig {
            connection: ConnectionOptions::plaintext(brokers),
            group: group.into(),
            listen: default_listen(),
            advertised_url: None,
            pipelines_dir: None,
            config_topic: None,
            status_topic: None,
            session_timeout: default_session_timeout(),
            rebalance_timeout: default_rebalance_timeout(),
            backups: Vec::new(),
        }
    }

    /// Reads a worker file (`${VAR}` interpolated from the environment).
    pub fn load(text: &str, file: &str) -> Result<Self> {
        let interpolated = ferry_core::interpolate::interpolate(text, file)?;
        let cfg: WorkerConfig = ferry_core::parse_yaml(&interpolated.text, file)
            .map_err(|e| interpolated.fix_error(e))?;
        cfg.validate()
            .map_err(|e| Error::config(format!("{file}: {e}")))?;
        Ok(cfg)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.connection.validate()?;
        if self.group.trim().is_empty() {
            return Err("`group` is empty: name the group the workers share".into());
        }
        for (field, topic) in [
            ("config_topic", self.config_topic()),
            ("status_topic", self.status_topic()),
        ] {
            if !valid_topic_name(&topic) {
                return Err(format!(
                    "`{field}` '{topic}' is not a valid Kafka topic name (letters, digits, '.', '_', '-', at most 249)"
                ));
            }
        }
        if self.session_timeout.get() < Duration::from_secs(1) {
            return Err("`session_timeout` must be at least 1s".into());
        }
        for (i, uri) in self.backups.iter().enumerate() {
            // The URI itself is not echoed: its query may hold credentials.
            ferry_core::Storage::open_read_only(uri)
                .map_err(|e| format!("`backups[{i}]` (--backup #{}): {e}", i + 1))?;
        }
        if let Some(url) = &self.advertised_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "`advertised_url` '{url}' must start with http:// or https://"
                ));
            }
        }
        Ok(())
    }

    /// The pipeline-definitions topic.
    pub fn config_topic(&self) -> String {
        self.config_topic
            .clone()
            .unwrap_or_else(|| format!("{}-configs", self.group))
    }

    /// The status topic.
    pub fn status_topic(&self) -> String {
        self.status_topic
            .clone()
            .unwrap_or_else(|| format!("{}-status", self.group))
    }

    /// How this worker is reached.
    pub fn url(&self) -> String {
        self.advertised_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }
}

fn valid_topic_name(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_file_with_defaults() {
        let c = WorkerConfig::load("brokers: [\"127.0.0.1:9092\"]\ngroup: g\n", "w.yaml").unwrap();
        assert_eq!(c.config_topic(), "g-configs");
        assert_eq!(c.status_topic(), "g-status");
        assert_eq!(c.url(), "http://127.0.0.1:8083");
        assert_eq!(c.session_timeout.get(), Duration::from_secs(10));
    }

    #[test]
    fn backup_locations_are_checked_without_showing_them() {
        let c = WorkerConfig::load(
            "brokers: [\"h:1\"]\ngroup: g\nbackups: [/var/backups/a, \"s3://b/p?endpoint=http://s3:9000\"]\n",
            "w.yaml",
        )
        .unwrap();
        assert_eq!(c.backups.len(), 2);
        let e = WorkerConfig::load(
            "brokers: [\"h:1\"]\ngroup: g\nbackups: [/ok, \"ftp://host/x?password=hunter2\"]\n",
            "w.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("backups[1]") && e.contains("--backup #2"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn mistakes_name_the_field() {
        let e = WorkerConfig::load("brokers: [\"h:1\"]\ngroup: g\nlisten_on: x\n", "w.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("w.yaml") && e.contains("listen_on"), "{e}");
        let e = WorkerConfig::load(
            "brokers: [\"h:1\"]\ngroup: g\nconfig_topic: 'a b'\n",
            "w.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("config_topic"), "{e}");
        let e = WorkerConfig::load("brokers: [\"h:1\"]\ngroup: \" \"\n", "w.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("group"), "{e}");
    }
}
