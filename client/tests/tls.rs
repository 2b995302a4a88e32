//! TLS against an in-process fake broker behind rustls, with certificates made by the
//! `openssl` command at test time: CA verification, mutual TLS, and the explicit
//! `insecure_skip_verify` escape hatch.

use bytes::{Bytes, BytesMut};
use ferry_kafka::{Client, ClientConfig, TlsConfig};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, MetadataResponse, ResponseHeader,
};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable, StrBytes};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the TLS tests need the `openssl` command");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Certs {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=ferry-test-ca",
        ],
    );
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    std::fs::write(
        d.join("client.ext"),
        "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    for who in ["server", "client"] {
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{who}.key"),
                "-out",
                &format!("{who}.csr"),
                "-subj",
                &format!("/CN=ferry-{who}"),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{who}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{who}.ext"),
            ],
        );
    }
    Certs {
        ca: d.join("ca.pem"),
        server_cert: d.join("server.pem"),
        server_key: d.join("server.key"),
        client_cert: d.join("client.pem"),
        client_key: d.join("client.key"),
        _dir: dir,
    }
}

fn certs(path: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(path).unwrap(),
    ))
    .collect::<Result<_, _>>()
    .unwrap()
}

fn key(path: &Path) -> rustls::pki_types::PrivateKeyDer<'static> {
    rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(path).unwrap(),
    ))
    .unwrap()
    .unwrap()
}

/// A TLS broker answering ApiVersions and Metadata; `client_ca` demands client certificates.
async fn tls_broker(c: &Certs, client_ca: bool) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if client_ca {
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs(&c.ca) {
            roots.add(cert).unwrap();
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(certs(&c.server_cert), key(&c.server_key))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut io) = acceptor.accept(tcp).await else {
                    return;
                };
                loop {
                    let Ok(len) = io.read_i32().await else { return };
                    let mut buf = vec![0u8; len as usize];
                    if io.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    let mut frame = Bytes::from(buf);
                    let h = decode_request_header_from_buffer(&mut frame).unwrap();
                    let key = ApiKey::try_from(h.request_api_key).unwrap();
                    let v = h.request_api_version;
                    let mut body = BytesMut::new();
                    match key {
                        ApiKey::ApiVersions => ApiVersionsResponse::default()
                            .with_api_keys(vec![
                                ApiVersion::default().with_api_key(18).with_max_version(3),
                                ApiVersion::default().with_api_key(3).with_max_version(12),
                            ])
                            .encode(&mut body, v)
                            .unwrap(),
                        ApiKey::Metadata => MetadataResponse::default()
                            .with_brokers(vec![MetadataResponseBroker::default()
                                .with_node_id(BrokerId(1))
                                .with_host(StrBytes::from_static_str("127.0.0.1"))
                                .with_port(port as i32)])
                            .encode(&mut body, v)
                            .unwrap(),
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
                    if io.write_all(&framed).await.is_err() || io.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn cfg(port: u16, tls: TlsConfig) -> ClientConfig {
    let mut c = ClientConfig::new(&[format!("127.0.0.1:{port}")]);
    c.request_timeout = Duration::from_secs(5);
    c.tls = Some(tls);
    c
}

#[tokio::test]
async fn tls_with_ca_file() {
    let c = make_certs();
    let port = tls_broker(&c, false).await;
    let ok = Client::connect(cfg(
        port,
        TlsConfig {
            ca_file: Some(c.ca.clone()),
            ..Default::default()
        },
    ))
    .await;
    let md = ok.expect("TLS with the right CA");
    assert_eq!(md.metadata(None).await.unwrap().brokers.len(), 1);

    // The public roots do not know this CA.
    let err = Client::connect(cfg(port, TlsConfig::default()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TLS handshake") && err.contains(&port.to_string()),
        "{err}"
    );

    // Only an explicit option skips verification.
    Client::connect(cfg(
        port,
        TlsConfig {
            insecure_skip_verify: true,
            ..Default::default()
        },
    ))
    .await
    .expect("insecure_skip_verify connects");
}

#[tokio::test]
async fn mutual_tls() {
    let c = make_certs();
    let port = tls_broker(&c, true).await;
    let with_cert = TlsConfig {
        ca_file: Some(c.ca.clone()),
        cert_file: Some(c.client_cert.clone()),
        key_file: Some(c.client_key.clone()),
        ..Default::default()
    };
    Client::connect(cfg(port, with_cert))
        .await
        .expect("mTLS with a client certificate");
    let without = TlsConfig {
        ca_file: Some(c.ca.clone()),
        ..Default::default()
    };
    assert!(Client::connect(cfg(port, without)).await.is_err());
    // Half a key pair is a configuration error.
    let half = TlsConfig {
        cert_file: Some(c.client_cert.clone()),
        ..Default::default()
    };
    let err = Client::connect(cfg(port, half))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("together"), "{err}");
}
