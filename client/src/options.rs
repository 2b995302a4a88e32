//! Connection settings as pipeline files and CLI flags give them: one struct shared by the
//! `kafka` source, the `kafka` sink and the CLI.
//!
//! The source and sink configs take it with `#[serde(flatten)]`, so its keys (`brokers`,
//! `client_id`, `tls`, `sasl`, `request_timeout`, `connect_timeout`, `retry`) sit next to
//! theirs in a pipeline file. It must not deny unknown fields itself: the outer config
//! does, for all its keys and these.

use crate::client::ClientConfig;
use crate::retry::{duration, RetryPolicy};
use crate::security::{SaslConfig, SaslMechanism, TlsConfig};
use kafka_protocol::records::Compression;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How to reach a cluster: brokers, client id, TLS, SASL, timeouts and the retry policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct ConnectionOptions {
    /// Brokers to bootstrap from, `host:port` (entries may be comma-separated).
    pub brokers: Vec<String>,
    /// Client id sent to the brokers.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// How long to wait for any broker response (e.g. `30s`); a broker that accepts
    /// connections but never answers is reported after this.
    #[serde(default = "default_request_timeout", with = "duration")]
    #[schemars(with = "String")]
    pub request_timeout: Duration,
    /// How long to wait for a TCP connection and TLS handshake (e.g. `10s`).
    #[serde(default = "default_connect_timeout", with = "duration")]
    #[schemars(with = "String")]
    pub connect_timeout: Duration,
    /// How retriable errors are retried and when the client gives up.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// TLS settings; plaintext when absent.
    #[serde(default)]
    pub tls: Option<TlsOptions>,
    /// SASL authentication; none when absent.
    #[serde(default)]
    pub sasl: Option<SaslOptions>,
}

fn default_client_id() -> String {
    "ferry".to_string()
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Codec of produced record batches, as pipeline files name it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CompressionCodec {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl CompressionCodec {
    /// The codec of the batch encoder.
    pub fn codec(self) -> Compression {
        match self {
            CompressionCodec::None => Compression::None,
            CompressionCodec::Gzip => Compression::Gzip,
            CompressionCodec::Snappy => Compression::Snappy,
            CompressionCodec::Lz4 => Compression::Lz4,
            CompressionCodec::Zstd => Compression::Zstd,
        }
    }
}

/// TLS through rustls.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// PEM file of CA certificates to trust (the Mozilla roots when absent).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate. Disables server authentication: tests only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Name to check the broker certificate against instead of the broker host.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// SASL credentials. Use `${VAR}` in pipeline files so secrets stay out of them.
#[derive(Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaslOptions {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// User name.
    pub username: String,
    /// Password (never logged).
    pub password: String,
}

impl std::fmt::Debug for SaslOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslOptions")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

impl ConnectionOptions {
    /// Options for plaintext brokers with defaults for the rest.
    pub fn plaintext(brokers: Vec<String>) -> Self {
        ConnectionOptions {
            brokers,
            client_id: default_client_id(),
            request_timeout: default_request_timeout(),
            connect_timeout: default_connect_timeout(),
            retry: RetryPolicy::default(),
            tls: None,
            sasl: None,
        }
    }

    /// Checks what can be checked without connecting; the message names the option.
    pub fn validate(&self) -> Result<(), String> {
        let cfg = ClientConfig::new(&self.brokers);
        if cfg.bootstrap.is_empty() {
            return Err("`brokers` is empty: give at least one host:port".into());
        }
        for b in &cfg.bootstrap {
            match b.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {}
                _ => return Err(format!("broker '{b}' is not host:port")),
            }
        }
        if self.request_timeout.is_zero() {
            return Err("`request_timeout` must be above 0 (e.g. 30s)".into());
        }
        if self.connect_timeout.is_zero() {
            return Err("`connect_timeout` must be above 0 (e.g. 10s)".into());
        }
        self.retry.validate()?;
        if let Some(s) = &self.sasl {
            if SaslMechanism::parse(&s.mechanism).is_none() {
                return Err(format!(
                    "sasl.mechanism '{}' is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
                    s.mechanism
                ));
            }
        }
        Ok(())
    }

    /// The client configuration these options describe.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        self.validate()?;
        let mut cfg = ClientConfig::new(&self.brokers);
        cfg.client_id = self.client_id.clone();
        cfg.request_timeout = self.request_timeout;
        cfg.connect_timeout = self.connect_timeout;
        cfg.retry = self.retry.clone();
        cfg.tls = self.tls.as_ref().map(|t| TlsConfig {
            ca_file: t.ca_file.clone(),
            cert_file: t.cert_file.clone(),
            key_file: t.key_file.clone(),
            insecure_skip_verify: t.insecure_skip_verify,
            server_name: t.server_name.clone(),
        });
        if let Some(s) = &self.sasl {
            let mechanism = SaslMechanism::parse(&s.mechanism)
                .ok_or_else(|| format!("unknown sasl.mechanism '{}'", s.mechanism))?;
            cfg.sasl = Some(SaslConfig {
                mechanism,
                username: s.username.clone(),
                password: s.password.clone(),
            });
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_brokers_and_mechanism() {
        assert!(ConnectionOptions::plaintext(vec!["127.0.0.1:9092".into()])
            .validate()
            .is_ok());
        assert!(ConnectionOptions::plaintext(vec!["nohost".into()])
            .validate()
            .is_err());
        assert!(ConnectionOptions::plaintext(vec![]).validate().is_err());
        let mut o = ConnectionOptions::plaintext(vec!["a:1,b:2".into()]);
        assert_eq!(o.client_config().unwrap().bootstrap, vec!["a:1", "b:2"]);
        o.sasl = Some(SaslOptions {
            mechanism: "GSSAPI".into(),
            username: "u".into(),
            password: "secret".into(),
        });
        assert!(o.validate().unwrap_err().contains("GSSAPI"));
        assert!(!format!("{:?}", o).contains("secret"));
    }

    /// What a component config looks like with the options flattened in.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(flatten)]
        connection: ConnectionOptions,
        #[serde(default)]
        topics: Vec<String>,
    }

    #[test]
    fn flattened_keys_read_and_unknown_keys_are_refused() {
        let o: Outer = serde_json::from_value(serde_json::json!({
            "brokers": ["a:1"], "topics": ["t"], "request_timeout": "5s",
            "retry": {"attempts": 3, "deadline": null}
        }))
        .unwrap();
        assert_eq!(o.topics, vec!["t"]);
        let cfg = o.connection.client_config().unwrap();
        assert_eq!(cfg.request_timeout, Duration::from_secs(5));
        assert_eq!(cfg.connect_timeout, Duration::from_secs(10));
        assert_eq!(cfg.retry.attempts, Some(3));
        assert_eq!(cfg.retry.deadline, None);
        // Today's keys alone keep working.
        let o: Outer = serde_json::from_value(serde_json::json!({
            "brokers": ["a:1"], "client_id": "x", "tls": {}, "sasl": null
        }))
        .unwrap();
        assert_eq!(o.connection.client_id, "x");
        assert!(o.connection.tls.is_some());
        let e = serde_json::from_value::<Outer>(serde_json::json!({
            "brokers": ["a:1"], "request_timeout_secs": 5
        }))
        .unwrap_err()
        .to_string();
        assert!(e.contains("request_timeout_secs"), "{e}");
        let e = serde_json::from_value::<Outer>(serde_json::json!({
            "brokers": ["a:1"], "request_timeout": 5
        }))
        .unwrap_err()
        .to_string();
        assert!(e.contains("has no unit"), "{e}");
    }

    #[test]
    fn compression_names() {
        let c: CompressionCodec = serde_json::from_str("\"zstd\"").unwrap();
        assert_eq!(c.codec(), Compression::Zstd);
        let e = serde_json::from_str::<CompressionCodec>("\"brotli\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("brotli") && e.contains("zstd"), "{e}");
    }
}
