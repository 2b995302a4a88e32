//! TLS (rustls) and SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).
//!
//! Credentials never reach logs: the config types redact them in `Debug`, and errors carry
//! the broker's message, never what Ferry sent.

use crate::conn::Connection;
use crate::error::{ClientError, KafkaCode, Result};
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256, Sha512};
use std::fmt;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpStream;

/// TLS settings for broker connections.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// PEM file of the CA certificates to trust; the Mozilla roots (webpki-roots) when `None`.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate. Only for tests: it disables all server authentication.
    pub insecure_skip_verify: bool,
    /// Name to verify the broker's certificate against, instead of the host of its address.
    pub server_name: Option<String>,
}

/// SASL mechanisms Ferry speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN` (use it only over TLS).
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl SaslMechanism {
    /// The mechanism's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// Parses `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Some(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(SaslMechanism::ScramSha512),
            _ => None,
        }
    }
}

/// SASL credentials. `Debug` prints the user name only.
#[derive(Clone)]
pub struct SaslConfig {
    /// Mechanism.
    pub mechanism: SaslMechanism,
    /// User name.
    pub username: String,
    /// Password (never logged).
    pub password: String,
}

impl fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// TLS

fn read_pem(path: &PathBuf, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| ClientError::Tls(format!("reading {what} {}: {e}", path.display())))
}

/// Builds the rustls client configuration from [`TlsConfig`].
pub(crate) fn build_tls(cfg: &TlsConfig) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let builder = if cfg.insecure_skip_verify {
        tracing::warn!("TLS server certificate verification is disabled (insecure_skip_verify)");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &cfg.ca_file {
            Some(ca) => {
                let pem = read_pem(ca, "CA file")?;
                let mut n = 0;
                for cert in rustls_pemfile::certs(&mut BufReader::new(pem.as_slice())) {
                    let cert = cert
                        .map_err(|e| ClientError::Tls(format!("CA file {}: {e}", ca.display())))?;
                    roots
                        .add(cert)
                        .map_err(|e| ClientError::Tls(format!("CA file {}: {e}", ca.display())))?;
                    n += 1;
                }
                if n == 0 {
                    return Err(ClientError::Tls(format!(
                        "CA file {} holds no certificate",
                        ca.display()
                    )));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert), Some(key)) => {
            let pem = read_pem(cert, "client certificate")?;
            let certs: Vec<CertificateDer<'static>> =
                rustls_pemfile::certs(&mut BufReader::new(pem.as_slice()))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| {
                        ClientError::Tls(format!("client certificate {}: {e}", cert.display()))
                    })?;
            let kpem = read_pem(key, "client key")?;
            let key_der: PrivateKeyDer<'static> =
                rustls_pemfile::private_key(&mut BufReader::new(kpem.as_slice()))
                    .map_err(|e| ClientError::Tls(format!("client key {}: {e}", key.display())))?
                    .ok_or_else(|| {
                        ClientError::Tls(format!(
                            "client key {} holds no private key",
                            key.display()
                        ))
                    })?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| ClientError::Tls(format!("client certificate: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(ClientError::Tls(
                "client certificate and key must be given together".into(),
            ))
        }
    };
    Ok(Arc::new(config))
}

/// Host part of `host:port` (IPv6 in brackets kept without them).
pub(crate) fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((h, _)) => h,
        None => addr,
    }
}

pub(crate) async fn tls_connect(
    config: Arc<rustls::ClientConfig>,
    addr: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let host = host_of(addr).to_string();
    let name = ServerName::try_from(host.clone())
        .map_err(|e| ClientError::Tls(format!("server name {host}: {e}")))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                // Certificate problems do not go away by retrying.
                ClientError::Tls(format!("broker {addr}: TLS handshake: {e}"))
            } else {
                ClientError::Io {
                    addr: addr.to_string(),
                    context: "TLS handshake".into(),
                    source: e,
                }
            }
        })
}

/// Accepts any certificate but still checks handshake signatures (`insecure_skip_verify`).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------------------------------------
// SASL

fn sasl_err(conn: &Connection, m: SaslMechanism, message: impl Into<String>) -> ClientError {
    ClientError::Sasl {
        addr: conn.addr().to_string(),
        mechanism: m.name().to_string(),
        message: message.into(),
    }
}

/// SaslHandshake (v1) then SaslAuthenticate round trips on a fresh connection.
pub(crate) async fn authenticate(conn: &Connection, sasl: &SaslConfig) -> Result<()> {
    let m = sasl.mechanism;
    let hv = conn.version_capped(ApiKey::SaslHandshake, 1)?;
    if hv < 1 {
        return Err(sasl_err(
            conn,
            m,
            "broker lacks SaslHandshake v1 (Kafka < 1.0)",
        ));
    }
    let resp = conn
        .send(
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(m.name())),
            hv,
        )
        .await?;
    if let Some(code) = KafkaCode::from_code(resp.error_code) {
        let offered: Vec<String> = resp.mechanisms.iter().map(|s| s.to_string()).collect();
        return Err(sasl_err(
            conn,
            m,
            format!("handshake failed with {code}; broker offers {offered:?}"),
        ));
    }
    match m {
        SaslMechanism::Plain => {
            let mut msg = Vec::with_capacity(sasl.username.len() + sasl.password.len() + 2);
            msg.push(0);
            msg.extend_from_slice(sasl.username.as_bytes());
            msg.push(0);
            msg.extend_from_slice(sasl.password.as_bytes());
            sasl_round(conn, m, msg).await?;
            Ok(())
        }
        SaslMechanism::ScramSha256 => scram(conn, sasl, ScramHash::Sha256).await,
        SaslMechanism::ScramSha512 => scram(conn, sasl, ScramHash::Sha512).await,
    }
}

async fn sasl_round(conn: &Connection, m: SaslMechanism, msg: Vec<u8>) -> Result<Bytes> {
    let v = conn.version_capped(ApiKey::SaslAuthenticate, 2)?;
    let resp = conn
        .send(
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(msg)),
            v,
        )
        .await?;
    if let Some(code) = KafkaCode::from_code(resp.error_code) {
        let detail = resp
            .error_message
            .map(|s| s.to_string())
            .unwrap_or_default();
        return Err(sasl_err(
            conn,
            m,
            format!("authentication failed with {code}: {detail}"),
        ));
    }
    Ok(resp.auth_bytes)
}

fn scram_escape(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// The hash a SCRAM mechanism uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so `new_from_slice` cannot fail; map it anyway.
        match self {
            ScramHash::Sha256 => match <Hmac<Sha256> as Mac>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            },
            ScramHash::Sha512 => match <Hmac<Sha512> as Mac>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            },
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], rounds: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, rounds, &mut out);
                out
            }
            ScramHash::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, rounds, &mut out);
                out
            }
        }
    }
}

/// The client side of SCRAM (RFC 5802) without channel binding, as Kafka uses it.
pub(crate) struct ScramClient {
    nonce: String,
    first_bare: String,
}

impl ScramClient {
    pub(crate) fn new(user: &str, nonce: String) -> Self {
        ScramClient {
            first_bare: format!("n={},r={}", scram_escape(user), nonce),
            nonce,
        }
    }

    pub(crate) fn client_first(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    /// Returns the client-final message and the server signature expected in server-final.
    pub(crate) fn client_final(
        &self,
        hash: ScramHash,
        password: &str,
        server_first: &str,
    ) -> std::result::Result<(String, Vec<u8>), String> {
        let mut r = None;
        let mut s = None;
        let mut i = None;
        for part in server_first.split(',') {
            if let Some(v) = part.strip_prefix("r=") {
                r = Some(v);
            } else if let Some(v) = part.strip_prefix("s=") {
                s = Some(v);
            } else if let Some(v) = part.strip_prefix("i=") {
                i = Some(v);
            } else if let Some(v) = part.strip_prefix("e=") {
                return Err(format!("server error: {v}"));
            }
        }
        let (r, s, i) = match (r, s, i) {
            (Some(r), Some(s), Some(i)) => (r, s, i),
            _ => return Err("malformed server-first message".into()),
        };
        if !r.starts_with(&self.nonce) {
            return Err("server nonce does not extend the client nonce".into());
        }
        let salt = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| "salt is not base64".to_string())?;
        let iterations: u32 = i
            .parse()
            .map_err(|_| "iteration count is not a number".to_string())?;
        if iterations == 0 || iterations > 1_000_000 {
            return Err(format!("unreasonable iteration count {iterations}"));
        }
        let salted = hash.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored_key = hash.digest(&client_key);
        let without_proof = format!("c=biws,r={r}");
        let auth_message = format!("{},{},{}", self.first_bare, server_first, without_proof);
        let client_sig = hash.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_sig)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hash.hmac(&salted, b"Server Key");
        let server_sig = hash.hmac(&server_key, auth_message.as_bytes());
        let fin = format!(
            "{without_proof},p={}",
            base64::engine::general_purpose::STANDARD.encode(proof)
        );
        Ok((fin, server_sig))
    }
}

async fn scram(conn: &Connection, sasl: &SaslConfig, hash: ScramHash) -> Result<()> {
    let m = sasl.mechanism;
    let nonce: String = {
        let raw: [u8; 24] = rand::random();
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(raw)
    };
    let client = ScramClient::new(&sasl.username, nonce);
    let server_first = sasl_round(conn, m, client.client_first().into_bytes()).await?;
    let server_first = std::str::from_utf8(&server_first)
        .map_err(|_| sasl_err(conn, m, "server-first is not UTF-8"))?;
    let (fin, expected) = client
        .client_final(hash, &sasl.password, server_first)
        .map_err(|e| sasl_err(conn, m, e))?;
    let server_final = sasl_round(conn, m, fin.into_bytes()).await?;
    let server_final = std::str::from_utf8(&server_final)
        .map_err(|_| sasl_err(conn, m, "server-final is not UTF-8"))?;
    if let Some(e) = server_final.strip_prefix("e=") {
        return Err(sasl_err(conn, m, format!("server error: {e}")));
    }
    let v = server_final
        .strip_prefix("v=")
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.split(',').next().unwrap_or(v))
                .ok()
        })
        .ok_or_else(|| sasl_err(conn, m, "malformed server-final message"))?;
    if v != expected {
        return Err(sasl_err(
            conn,
            m,
            "server signature does not match: the broker may not know the password",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_password() {
        let c = SaslConfig {
            mechanism: SaslMechanism::Plain,
            username: "alice".into(),
            password: "hunter2".into(),
        };
        let s = format!("{c:?}");
        assert!(s.contains("alice") && !s.contains("hunter2"), "{s}");
    }

    #[test]
    fn host_parsing() {
        assert_eq!(host_of("broker-1:9093"), "broker-1");
        assert_eq!(host_of("[::1]:9093"), "::1");
        assert_eq!(host_of("plain"), "plain");
    }

    /// RFC 7677's SCRAM-SHA-256 test vector.
    #[test]
    fn scram_sha256_rfc7677() {
        let c = ScramClient::new("user", "rOprNGfwEbeRWgbNEkqO".into());
        assert_eq!(c.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let (fin, sig) = c
            .client_final(ScramHash::Sha256, "pencil", server_first)
            .unwrap();
        assert_eq!(
            fin,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    // --- SASL against an in-process fake broker over an in-memory stream -------------------

    use crate::conn::{ConnConfig, Connection};
    use bytes::BytesMut;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{
        ApiVersionsResponse, ResponseHeader, SaslAuthenticateResponse, SaslHandshakeResponse,
    };
    use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A broker that knows one user and speaks PLAIN and SCRAM; returns whether it authenticated.
    async fn fake_sasl_broker(
        mut io: tokio::io::DuplexStream,
        user: &'static str,
        password: &'static str,
    ) -> bool {
        let mut mechanism = String::new();
        let mut scram: Option<(ScramHash, String, String)> = None; // hash, client-first-bare, server-first
        let salt = b"0123456789abcdef";
        loop {
            let Ok(len) = io.read_i32().await else {
                return false;
            };
            let mut buf = vec![0u8; len as usize];
            if io.read_exact(&mut buf).await.is_err() {
                return false;
            }
            let mut frame = Bytes::from(buf);
            let h = decode_request_header_from_buffer(&mut frame).unwrap();
            let key = ApiKey::try_from(h.request_api_key).unwrap();
            let v = h.request_api_version;
            let mut body = BytesMut::new();
            let mut done = None;
            match key {
                ApiKey::ApiVersions => ApiVersionsResponse::default()
                    .with_api_keys(vec![
                        ApiVersion::default().with_api_key(18).with_max_version(3),
                        ApiVersion::default().with_api_key(17).with_max_version(1),
                        ApiVersion::default().with_api_key(36).with_max_version(2),
                    ])
                    .encode(&mut body, v)
                    .unwrap(),
                ApiKey::SaslHandshake => {
                    let r = SaslHandshakeRequest::decode(&mut frame, v).unwrap();
                    mechanism = r.mechanism.to_string();
                    SaslHandshakeResponse::default()
                        .with_mechanisms(vec![
                            StrBytes::from_static_str("PLAIN"),
                            StrBytes::from_static_str("SCRAM-SHA-256"),
                            StrBytes::from_static_str("SCRAM-SHA-512"),
                        ])
                        .encode(&mut body, v)
                        .unwrap()
                }
                ApiKey::SaslAuthenticate => {
                    let r = SaslAuthenticateRequest::decode(&mut frame, v).unwrap();
                    let msg = String::from_utf8_lossy(&r.auth_bytes).to_string();
                    let mut resp = SaslAuthenticateResponse::default();
                    let fail = |resp: SaslAuthenticateResponse| {
                        resp.with_error_code(KafkaCode::SASL_AUTHENTICATION_FAILED.0)
                            .with_error_message(Some(StrBytes::from_static_str(
                                "Authentication failed: Invalid credentials",
                            )))
                    };
                    match mechanism.as_str() {
                        "PLAIN" => {
                            let ok = msg == format!("\0{user}\0{password}");
                            resp = if ok { resp } else { fail(resp) };
                            done = Some(ok);
                        }
                        _ if scram.is_none() => {
                            let hash = if mechanism == "SCRAM-SHA-256" {
                                ScramHash::Sha256
                            } else {
                                ScramHash::Sha512
                            };
                            let bare = msg.strip_prefix("n,,").unwrap().to_string();
                            let cnonce = bare.split(",r=").nth(1).unwrap().to_string();
                            assert!(bare.starts_with(&format!("n={user},")));
                            let first = format!(
                                "r={cnonce}SERVERNONCE,s={},i=4096",
                                base64::engine::general_purpose::STANDARD.encode(salt)
                            );
                            resp = resp.with_auth_bytes(Bytes::from(first.clone()));
                            scram = Some((hash, bare, first));
                        }
                        _ => {
                            let (hash, bare, first) = scram.clone().unwrap();
                            let (without_proof, proof) = msg.rsplit_once(",p=").unwrap();
                            let proof = base64::engine::general_purpose::STANDARD
                                .decode(proof)
                                .unwrap();
                            let salted = hash.salted_password(password.as_bytes(), salt, 4096);
                            let stored = hash.digest(&hash.hmac(&salted, b"Client Key"));
                            let auth = format!("{bare},{first},{without_proof}");
                            let sig = hash.hmac(&stored, auth.as_bytes());
                            let client_key: Vec<u8> =
                                proof.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
                            let ok = hash.digest(&client_key) == stored;
                            if ok {
                                let server_sig =
                                    hash.hmac(&hash.hmac(&salted, b"Server Key"), auth.as_bytes());
                                resp = resp.with_auth_bytes(Bytes::from(format!(
                                    "v={}",
                                    base64::engine::general_purpose::STANDARD.encode(server_sig)
                                )));
                            } else {
                                resp = fail(resp);
                            }
                            done = Some(ok);
                        }
                    }
                    resp.encode(&mut body, v).unwrap()
                }
                other => panic!("unexpected {other:?}"),
            }
            let mut out = BytesMut::new();
            ResponseHeader::default()
                .with_correlation_id(h.correlation_id)
                .encode(&mut out, key.response_header_version(v))
                .unwrap();
            out.extend_from_slice(&body);
            let mut framed = (out.len() as i32).to_be_bytes().to_vec();
            framed.extend_from_slice(&out);
            io.write_all(&framed).await.unwrap();
            if let Some(ok) = done {
                return ok;
            }
        }
    }

    async fn login(mechanism: SaslMechanism, password: &str) -> (Result<()>, bool) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let srv = tokio::spawn(fake_sasl_broker(server, "alice", "s3cret"));
        let cfg = ConnConfig {
            client_id: StrBytes::from_static_str("test"),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            retry: crate::retry::RetryPolicy::default(),
            tls: None,
            sasl: Some(SaslConfig {
                mechanism,
                username: "alice".into(),
                password: password.into(),
            }),
        };
        let conn = Connection::start("fake:9092", Box::new(client), &cfg);
        let res = conn.setup(&cfg).await;
        (res, srv.await.unwrap_or(false))
    }

    #[tokio::test]
    async fn sasl_mechanisms_authenticate() {
        for m in [
            SaslMechanism::Plain,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
        ] {
            let (res, server_ok) = login(m, "s3cret").await;
            assert!(res.is_ok(), "{m:?}: {res:?}");
            assert!(server_ok, "{m:?}: the broker accepted the proof");
        }
    }

    #[tokio::test]
    async fn wrong_password_is_a_clear_error_without_the_password() {
        for m in [
            SaslMechanism::Plain,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
        ] {
            let (res, server_ok) = login(m, "wrong-pw").await;
            assert!(!server_ok);
            let e = res.unwrap_err().to_string();
            assert!(
                e.contains(m.name()) && e.contains("SASL_AUTHENTICATION_FAILED"),
                "{e}"
            );
            assert!(!e.contains("wrong-pw") && !e.contains("s3cret"), "{e}");
        }
    }
}
