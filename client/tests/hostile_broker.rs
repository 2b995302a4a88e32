//! A broker that answers with impossible lengths, through the client's real connection path
//! (no dev environment needed): the call fails with a protocol error naming the broker, the
//! API and the length, and the process goes on. Before kafka-protocol was patched
//! (third_party/kafka-protocol), each of these responses aborted the test process.

use bytes::{BufMut, Bytes, BytesMut};
use ferry_kafka::{Client, ClientConfig, ClientError};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, BrokerId, MetadataResponse};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable, StrBytes};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Versions the fake broker offers: ApiVersions, Metadata, ListGroups.
const VERSIONS: [(i16, i16, i16); 3] = [(18, 0, 3), (3, 0, 12), (16, 0, 4)];

/// An unsigned varint of `u32::MAX`: a compact array declaring 2^32 - 2 elements.
const HUGE_COMPACT: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];

/// Starts a broker on an ephemeral loopback port that answers ApiVersions truthfully and
/// `hostile` with a body whose first array declares 2^32 - 2 elements; other APIs get a
/// valid answer naming itself as the only broker.
async fn start_broker(hostile: ApiKey) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                while let Ok(len) = sock.read_i32().await {
                    let mut buf = vec![0u8; len.max(0) as usize];
                    if sock.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    let mut frame = Bytes::from(buf);
                    let Ok(header) = decode_request_header_from_buffer(&mut frame) else {
                        return;
                    };
                    let Ok(key) = ApiKey::try_from(header.request_api_key) else {
                        return;
                    };
                    let v = header.request_api_version;
                    let body = answer(key, v, hostile, port);
                    let mut out = BytesMut::new();
                    let header_len = if key.response_header_version(v) >= 1 {
                        5
                    } else {
                        4
                    };
                    out.put_i32((header_len + body.len()) as i32);
                    out.put_i32(header.correlation_id);
                    if header_len == 5 {
                        out.put_u8(0); // no tagged fields
                    }
                    out.put_slice(&body);
                    if sock.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("127.0.0.1:{port}")
}

/// The body answering `key` at version `v`.
fn answer(key: ApiKey, v: i16, hostile: ApiKey, port: u16) -> Vec<u8> {
    let mut body = BytesMut::new();
    if key == hostile {
        // Every response used here starts with throttle_time_ms (Metadata from v3, ListGroups
        // from v1, then its error code) and then the array.
        body.put_i32(0);
        if key == ApiKey::ListGroups {
            body.put_i16(0);
        }
        body.put_slice(&HUGE_COMPACT);
        return body.to_vec();
    }
    match key {
        ApiKey::ApiVersions => ApiVersionsResponse::default()
            .with_api_keys(
                VERSIONS
                    .iter()
                    .map(|&(k, min, max)| {
                        ApiVersion::default()
                            .with_api_key(k)
                            .with_min_version(min)
                            .with_max_version(max)
                    })
                    .collect(),
            )
            .encode(&mut body, v),
        _ => MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(i32::from(port))])
            .with_controller_id(BrokerId(1))
            .encode(&mut body, v),
    }
    .expect("the fake broker encodes its answers");
    body.to_vec()
}

fn config(addr: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(&[addr.to_string()]);
    cfg.request_timeout = Duration::from_secs(5);
    cfg
}

/// Asserts `err` is the protocol error of `api` from `addr` about the impossible length.
fn assert_refused(err: &ClientError, addr: &str, api: &str) {
    match err {
        ClientError::Protocol {
            addr: a,
            api: got,
            message,
        } => {
            assert_eq!(a, addr);
            assert_eq!(got, api);
            assert!(
                message.contains("Array length 4294967294 cannot fit in the"),
                "{message}"
            );
        }
        other => panic!("expected a protocol error of {api}, got: {other}"),
    }
    let text = err.to_string();
    assert!(text.contains(addr) && text.contains(api), "{text}");
}

#[tokio::test]
async fn metadata_declaring_a_huge_broker_list_is_a_protocol_error() {
    let addr = start_broker(ApiKey::Metadata).await;
    let err = tokio::time::timeout(Duration::from_secs(20), Client::connect(config(&addr)))
        .await
        .expect("refused at once, not retried until a timeout")
        .expect_err("a hostile Metadata answer must not connect");
    assert_refused(&err, &addr, "Metadata");
}

#[tokio::test]
async fn list_groups_declaring_a_huge_group_list_is_a_protocol_error() {
    let addr = start_broker(ApiKey::ListGroups).await;
    let client = Client::connect(config(&addr))
        .await
        .expect("metadata is valid");
    let err = tokio::time::timeout(Duration::from_secs(20), client.list_groups())
        .await
        .expect("refused at once, not retried until a timeout")
        .expect_err("a hostile ListGroups answer must be refused");
    assert_refused(&err, &addr, "ListGroups");
    // The client is still usable: the error was a decoding error, not a dead process.
    client
        .metadata(None)
        .await
        .expect("metadata after the refusal");
}
