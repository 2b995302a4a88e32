//! Connection settings as pipeline files and CLI flags give them, shared by the `kafka`
//! source and the `kafka` sink.

use crate::client::ClientConfig;
use crate::security::{SaslConfig, SaslMechanism, TlsConfig};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// How to reach a cluster: brokers, client id, TLS and SASL.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionOptions {
    /// Brokers to bootstrap from, `host:port` (entries may be comma-separated).
    pub brokers: Vec<String>,
    /// Client id sent to the brokers.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Seconds to wait for any broker response.
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
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

fn default_timeout() -> u64 {
    30
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
            request_timeout_secs: default_timeout(),
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
        cfg.request_timeout = Duration::from_secs(self.request_timeout_secs.max(1));
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
}
