//! One TLS stack for the whole process: rustls with the `ring` crypto provider.
//!
//! The Kafka client builds its TLS configs with ring explicitly. HTTP clients (opendal's
//! object stores, the Schema Registry client) use reqwest, which is compiled without a
//! provider of its own (its default, aws-lc-rs, would add a second crypto library in C and
//! minutes to every fresh build), so ring must be the process default before the first
//! HTTP client is built: [`init`] does that, and installs opendal's HTTP transport.

use std::sync::Once;

/// Makes ring the process-wide rustls provider and installs opendal's reqwest transport.
/// Idempotent and cheap after the first call; called before any HTTP client is built.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // Err only when some other code installed a provider first, which is then used.
        let _ = rustls::crypto::ring::default_provider().install_default();
        opendal::init_default_registry();
        opendal::HttpTransporter::install_default(
            opendal_http_transport_reqwest::ReqwestTransport::default(),
        );
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn ring_is_the_process_provider_after_init() {
        super::init();
        super::init();
        let provider = rustls::crypto::CryptoProvider::get_default().expect("installed");
        // ring's provider lists its own cipher suites; compare with a fresh one.
        let ring = rustls::crypto::ring::default_provider();
        assert_eq!(
            provider.cipher_suites.len(),
            ring.cipher_suites.len(),
            "the installed provider is ring's"
        );
    }
}
