//! Retry logic against in-process fake brokers (no dev environment needed): a leader change
//! answered with NOT_LEADER_OR_FOLLOWER refreshes metadata and moves the fetch to the new
//! leader; a dropped connection is re-dialed; ApiVersions falls back when v3 is refused;
//! aborted-transaction lists and truncated tails come through the fetch path.

use bytes::{Bytes, BytesMut};
use ferry_kafka::batch::build_batch;
use ferry_kafka::{
    Client, ClientConfig, Compression, FetchOptions, FetchRequestPartition, KafkaCode,
    ProduceRecord,
};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse, MetadataResponse,
    ProducerId, ResponseHeader, TopicName,
};
use kafka_protocol::messages::{InitProducerIdResponse, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Default)]
struct Cluster {
    ports: Mutex<Vec<u16>>,
    leader: AtomicI32,
    metadata_calls: AtomicUsize,
    fetch_calls: [AtomicUsize; 3],
    connections: [AtomicUsize; 3],
    reject_api_versions_v3: AtomicBool,
    api_versions_seen: Mutex<Vec<i16>>,
    drop_first_fetch_on_2: AtomicBool,
    fetch_offsets_seen: Mutex<Vec<i64>>,
    init_producer_calls: AtomicUsize,
    produced: Mutex<Vec<(i32, Bytes)>>,
    produce_error_on_2: AtomicI32,
    next_offset: AtomicI32,
    /// Check idempotent sequences like Kafka: next expected sequence per producer id and
    /// partition; a gap is OUT_OF_ORDER_SEQUENCE_NUMBER, a repeat DUPLICATE_SEQUENCE_NUMBER.
    check_sequences: AtomicBool,
    sequences: Mutex<std::collections::HashMap<(i64, i32), i32>>,
    /// Answer the produce of this (1-based) batch with NOT_ENOUGH_REPLICAS, once.
    fail_batch_once: AtomicI32,
    batches_seen: AtomicI32,
    /// Answer every fetch with this partition error code (0: none).
    fetch_error_always: AtomicI32,
    /// Answer the next fetch with this partition error code, once (0: none).
    fetch_error_once: AtomicI32,
    /// throttle_time_ms of every fetch answer.
    fetch_throttle_ms: AtomicI32,
    /// When each fetch arrived.
    fetch_arrivals: Mutex<Vec<std::time::Instant>>,
    /// Broker 1 appends a produce (its followers have it) before answering
    /// NOT_LEADER_OR_FOLLOWER: a leader that died after replicating, before answering.
    appended_before_not_leader: AtomicBool,
    /// Kafka's duplicate window: only a repeat of one of the last 5 batches of a producer
    /// and partition is a duplicate; an older sequence is OUT_OF_ORDER_SEQUENCE_NUMBER.
    duplicate_window: AtomicBool,
    /// Base sequences of the last 5 batches per producer id and partition.
    last_batches: Mutex<std::collections::HashMap<(i64, i32), std::collections::VecDeque<i32>>>,
    /// Kafka 2.5+ (KIP-360): a producer id the partition holds no state for may start at any
    /// sequence (otherwise the fake wants 0).
    any_first_sequence: AtomicBool,
}

impl Cluster {
    /// Appends a produced batch if its sequence allows (what a follower replicated).
    fn append(&self, id: i32, partition: i32, bytes: Bytes) {
        if self.sequence_error(partition, &bytes).is_none() {
            let count = i32::from_be_bytes([bytes[57], bytes[58], bytes[59], bytes[60]]);
            self.next_offset.fetch_add(count, Ordering::SeqCst);
            self.produced.lock().unwrap().push((id, bytes));
        }
    }

    /// Kafka's idempotence check of one batch; accepts it (moving the expected sequence)
    /// or says why not.
    fn sequence_error(&self, partition: i32, b: &[u8]) -> Option<KafkaCode> {
        if !self.check_sequences.load(Ordering::SeqCst) {
            return None;
        }
        let pid = i64::from_be_bytes(b[43..51].try_into().unwrap());
        let seq = i32::from_be_bytes(b[53..57].try_into().unwrap());
        let count = i32::from_be_bytes(b[57..61].try_into().unwrap());
        let mut seqs = self.sequences.lock().unwrap();
        let first = if self.any_first_sequence.load(Ordering::SeqCst) {
            seq
        } else {
            0
        };
        let next = seqs.entry((pid, partition)).or_insert(first);
        let mut last = self.last_batches.lock().unwrap();
        let recent = last.entry((pid, partition)).or_default();
        if seq < *next {
            if self.duplicate_window.load(Ordering::SeqCst) && !recent.contains(&seq) {
                return Some(KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER);
            }
            return Some(KafkaCode::DUPLICATE_SEQUENCE_NUMBER);
        }
        if seq > *next {
            return Some(KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER);
        }
        *next += count;
        recent.push_back(seq);
        if recent.len() > 5 {
            recent.pop_front();
        }
        None
    }
}

fn batch_bytes() -> Bytes {
    let recs: Vec<ProduceRecord> = (0..3)
        .map(|i| ProduceRecord {
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: vec![],
            timestamp: 100 + i,
        })
        .collect();
    let whole = build_batch(5, &recs, Compression::None, 0x10, None).unwrap();
    let next = build_batch(8, &recs, Compression::None, 0, None).unwrap();
    let mut b = BytesMut::new();
    b.extend_from_slice(&whole);
    b.extend_from_slice(&next[..next.len() / 2]); // truncated tail
    b.freeze()
}

async fn serve(id: i32, listener: TcpListener, cluster: Arc<Cluster>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        cluster.connections[id as usize].fetch_add(1, Ordering::SeqCst);
        let cluster = cluster.clone();
        tokio::spawn(async move {
            loop {
                let Ok(len) = sock.read_i32().await else {
                    return;
                };
                let mut buf = vec![0u8; len as usize];
                if sock.read_exact(&mut buf).await.is_err() {
                    return;
                }
                let mut frame = Bytes::from(buf);
                let header = decode_request_header_from_buffer(&mut frame).unwrap();
                let key = ApiKey::try_from(header.request_api_key).unwrap();
                let v = header.request_api_version;
                let mut body = BytesMut::new();
                let mut resp_version = v;
                match key {
                    ApiKey::ApiVersions => {
                        cluster.api_versions_seen.lock().unwrap().push(v);
                        if v >= 3 && cluster.reject_api_versions_v3.load(Ordering::SeqCst) {
                            // What a broker that does not know v3 answers: a v0 body.
                            resp_version = 0;
                            ApiVersionsResponse::default()
                                .with_error_code(35)
                                .with_api_keys(vec![ApiVersion::default()
                                    .with_api_key(18)
                                    .with_min_version(0)
                                    .with_max_version(2)])
                                .encode(&mut body, 0)
                                .unwrap();
                        } else {
                            let keys = [
                                (18, 0, 3),
                                (3, 0, 12),
                                (1, 4, 12),
                                (2, 1, 7),
                                (0, 3, 9),
                                (22, 0, 4),
                            ];
                            ApiVersionsResponse::default()
                                .with_api_keys(
                                    keys.iter()
                                        .map(|(k, lo, hi)| {
                                            ApiVersion::default()
                                                .with_api_key(*k)
                                                .with_min_version(*lo)
                                                .with_max_version(*hi)
                                        })
                                        .collect(),
                                )
                                .encode(&mut body, v)
                                .unwrap();
                        }
                    }
                    ApiKey::Metadata => {
                        cluster.metadata_calls.fetch_add(1, Ordering::SeqCst);
                        let ports = cluster.ports.lock().unwrap().clone();
                        let leader = cluster.leader.load(Ordering::SeqCst);
                        MetadataResponse::default()
                            .with_brokers(
                                ports
                                    .iter()
                                    .enumerate()
                                    .map(|(i, p)| {
                                        MetadataResponseBroker::default()
                                            .with_node_id(BrokerId(i as i32 + 1))
                                            .with_host(StrBytes::from_static_str("127.0.0.1"))
                                            .with_port(*p as i32)
                                    })
                                    .collect(),
                            )
                            .with_controller_id(BrokerId(1))
                            .with_topics(vec![MetadataResponseTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                                .with_partitions(vec![MetadataResponsePartition::default()
                                    .with_partition_index(0)
                                    .with_leader_id(BrokerId(leader))
                                    .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                                    .with_isr_nodes(vec![BrokerId(1), BrokerId(2)])])])
                            .encode(&mut body, v)
                            .unwrap();
                    }
                    ApiKey::Fetch => {
                        let req = FetchRequest::decode(&mut frame, v).unwrap();
                        cluster.fetch_calls[id as usize].fetch_add(1, Ordering::SeqCst);
                        let offset = req.topics[0].partitions[0].fetch_offset;
                        cluster.fetch_offsets_seen.lock().unwrap().push(offset);
                        if id == 2 && cluster.drop_first_fetch_on_2.swap(false, Ordering::SeqCst) {
                            return; // drop the connection mid-request
                        }
                        cluster
                            .fetch_arrivals
                            .lock()
                            .unwrap()
                            .push(std::time::Instant::now());
                        let mut p = PartitionData::default().with_partition_index(0);
                        let forced = match cluster.fetch_error_always.load(Ordering::SeqCst) {
                            0 => cluster.fetch_error_once.swap(0, Ordering::SeqCst),
                            code => code,
                        };
                        if forced != 0 {
                            p = p.with_error_code(forced as i16);
                        } else if id != cluster.leader.load(Ordering::SeqCst) || id == 1 {
                            // Broker 1 lost leadership: the client must look it up again.
                            cluster.leader.store(2, Ordering::SeqCst);
                            p = p.with_error_code(KafkaCode::NOT_LEADER_OR_FOLLOWER.0);
                        } else {
                            p = p
                                .with_high_watermark(11)
                                .with_last_stable_offset(8)
                                .with_log_start_offset(0)
                                .with_aborted_transactions(Some(vec![AbortedTransaction::default(
                                )
                                .with_producer_id(ProducerId(42))
                                .with_first_offset(5)]))
                                .with_records(Some(batch_bytes()));
                        }
                        FetchResponse::default()
                            .with_throttle_time_ms(cluster.fetch_throttle_ms.load(Ordering::SeqCst))
                            .with_responses(vec![FetchableTopicResponse::default()
                                .with_topic(TopicName(StrBytes::from_static_str("t")))
                                .with_partitions(vec![p])])
                            .encode(&mut body, v)
                            .unwrap();
                    }
                    ApiKey::InitProducerId => {
                        cluster.init_producer_calls.fetch_add(1, Ordering::SeqCst);
                        let n = cluster.init_producer_calls.load(Ordering::SeqCst) as i64;
                        InitProducerIdResponse::default()
                            .with_producer_id(ProducerId(1000 + n))
                            .with_producer_epoch(0)
                            .encode(&mut body, v)
                            .unwrap();
                    }
                    ApiKey::Produce => {
                        let req = ProduceRequest::decode(&mut frame, v).unwrap();
                        let mut topics = Vec::new();
                        for t in req.topic_data {
                            let mut parts = Vec::new();
                            for p in t.partition_data {
                                let mut r = PartitionProduceResponse::default().with_index(p.index);
                                if id == 1 {
                                    if cluster.appended_before_not_leader.load(Ordering::SeqCst) {
                                        cluster.append(id, p.index, p.records.clone().unwrap());
                                    }
                                    cluster.leader.store(2, Ordering::SeqCst);
                                    r = r.with_error_code(KafkaCode::NOT_LEADER_OR_FOLLOWER.0);
                                } else if cluster.produce_error_on_2.load(Ordering::SeqCst) != 0 {
                                    r = r.with_error_code(
                                        cluster.produce_error_on_2.load(Ordering::SeqCst) as i16,
                                    );
                                } else if cluster.batches_seen.fetch_add(1, Ordering::SeqCst) + 1
                                    == cluster.fail_batch_once.load(Ordering::SeqCst)
                                {
                                    r = r.with_error_code(KafkaCode::NOT_ENOUGH_REPLICAS.0);
                                } else if let Some(code) =
                                    cluster.sequence_error(p.index, p.records.as_ref().unwrap())
                                {
                                    r = r.with_error_code(code.0);
                                } else {
                                    let bytes = p.records.unwrap();
                                    let count = i32::from_be_bytes([
                                        bytes[57], bytes[58], bytes[59], bytes[60],
                                    ]);
                                    let base =
                                        cluster.next_offset.fetch_add(count, Ordering::SeqCst);
                                    cluster.produced.lock().unwrap().push((id, bytes));
                                    r = r.with_base_offset(base as i64).with_log_append_time_ms(-1);
                                }
                                parts.push(r);
                            }
                            topics.push(
                                TopicProduceResponse::default()
                                    .with_name(t.name)
                                    .with_partition_responses(parts),
                            );
                        }
                        ProduceResponse::default()
                            .with_responses(topics)
                            .encode(&mut body, v)
                            .unwrap();
                    }
                    other => panic!("fake broker got {other:?}"),
                }
                let mut out = BytesMut::new();
                ResponseHeader::default()
                    .with_correlation_id(header.correlation_id)
                    .encode(&mut out, key.response_header_version(resp_version))
                    .unwrap();
                out.extend_from_slice(&body);
                let mut framed = (out.len() as i32).to_be_bytes().to_vec();
                framed.extend_from_slice(&out);
                if sock.write_all(&framed).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn start_cluster() -> Arc<Cluster> {
    let cluster = Arc::new(Cluster::default());
    cluster.leader.store(1, Ordering::SeqCst);
    for id in 1..=2 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        cluster
            .ports
            .lock()
            .unwrap()
            .push(l.local_addr().unwrap().port());
        tokio::spawn(serve(id, l, cluster.clone()));
    }
    cluster
}

fn config(cluster: &Cluster) -> ClientConfig {
    let port = cluster.ports.lock().unwrap()[0];
    let mut cfg = ClientConfig::new(&[format!("127.0.0.1:{port}")]);
    cfg.request_timeout = Duration::from_secs(5);
    cfg
}

fn req() -> Vec<FetchRequestPartition> {
    vec![FetchRequestPartition {
        topic: "t".into(),
        partition: 0,
        offset: 6,
    }]
}

#[tokio::test]
async fn leader_change_refreshes_metadata_and_fetches_from_the_new_leader() {
    let cluster = start_cluster().await;
    let client = Client::connect(config(&cluster)).await.unwrap();
    let before = cluster.metadata_calls.load(Ordering::SeqCst);
    let got = client
        .fetch(&req(), &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(
        cluster.fetch_calls[1].load(Ordering::SeqCst),
        1,
        "asked the old leader once"
    );
    assert_eq!(
        cluster.fetch_calls[2].load(Ordering::SeqCst),
        1,
        "then the new one"
    );
    assert!(
        cluster.metadata_calls.load(Ordering::SeqCst) > before,
        "metadata was refreshed"
    );
    let p = &got[0];
    assert_eq!(p.error, None);
    assert_eq!(
        (p.high_watermark, p.last_stable_offset, p.log_start_offset),
        (11, 8, 0)
    );
    assert_eq!(
        p.aborted,
        vec![ferry_model::AbortedTxn {
            producer_id: 42,
            first_offset: 5
        }]
    );
    let d = p.data.as_ref().unwrap();
    // The whole first batch (it starts before the fetch offset), the truncated one dropped.
    assert_eq!((d.first_offset, d.next_offset, d.record_count), (5, 8, 3));
    assert_eq!((d.min_timestamp, d.max_timestamp), (Some(100), Some(102)));
    let recs = ferry_kafka::records_from(
        ferry_kafka::decode_batches(&d.bytes, &Arc::from("t"), 0).unwrap(),
        6,
    );
    assert_eq!(
        recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![6, 7]
    );
    assert!(recs.iter().all(|r| r.is_transactional));
}

#[tokio::test]
async fn dropped_connection_is_redialed() {
    let cluster = start_cluster().await;
    cluster.leader.store(2, Ordering::SeqCst);
    cluster.drop_first_fetch_on_2.store(true, Ordering::SeqCst);
    let client = Client::connect(config(&cluster)).await.unwrap();
    let got = client
        .fetch(&req(), &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(got[0].error, None);
    assert!(got[0].data.is_some());
    assert_eq!(cluster.fetch_calls[2].load(Ordering::SeqCst), 2);
    assert_eq!(
        cluster.connections[2].load(Ordering::SeqCst),
        2,
        "re-dialed broker 2"
    );
}

#[tokio::test]
async fn api_versions_falls_back_when_v3_is_refused() {
    let cluster = start_cluster().await;
    cluster.reject_api_versions_v3.store(true, Ordering::SeqCst);
    let client = Client::connect(config(&cluster)).await.unwrap();
    let md = client.metadata(None).await.unwrap();
    assert_eq!(md.topics.len(), 1);
    assert_eq!(md.brokers.len(), 2);
    assert_eq!(cluster.api_versions_seen.lock().unwrap()[..2], [3, 2]);
}

#[tokio::test]
async fn unreachable_bootstrap_is_a_clear_error() {
    // A port nothing listens on (bound, then released).
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let mut cfg = ClientConfig::new(&[format!("127.0.0.1:{port}")]);
    cfg.request_timeout = Duration::from_secs(2);
    let err = Client::connect(cfg).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("connect"),
        "{err}"
    );
}

#[tokio::test]
async fn pipelined_requests_share_one_connection() {
    let cluster = start_cluster().await;
    let client = Client::connect(config(&cluster)).await.unwrap();
    let futs = (0..20).map(|_| client.metadata(None));
    for r in futures::future::join_all(futs).await {
        r.unwrap();
    }
    let conns: usize = cluster
        .connections
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .sum();
    // One per handle: the bootstrap address and the two broker ids.
    assert!(conns <= 3, "{conns} connections for 20 concurrent requests");
}

fn records(n: usize) -> Vec<ProduceRecord> {
    (0..n)
        .map(|i| ProduceRecord {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(vec![b'v'; 100])),
            headers: vec![],
            timestamp: 1_000 + i as i64,
        })
        .collect()
}

#[tokio::test]
async fn produce_follows_the_leader_and_keeps_sequences() {
    let cluster = start_cluster().await;
    let client = Client::connect(config(&cluster)).await.unwrap();
    // Small batches: 10 records of ~110 bytes split into several wire batches.
    let p = client
        .producer(ferry_kafka::ProducerConfig {
            max_batch_bytes: 400,
            ..Default::default()
        })
        .unwrap();
    let res = p
        .produce(vec![ferry_kafka::ProduceBatch {
            topic: "t".into(),
            partition: 0,
            records: records(10),
        }])
        .await
        .unwrap();
    let produced = cluster.produced.lock().unwrap().clone();
    assert!(produced.len() > 1, "split into several batches");
    assert!(
        produced.iter().all(|(id, _)| *id == 2),
        "written to the new leader only"
    );
    // Sequences continue from batch to batch, all with the one producer id.
    let mut expect_seq = 0;
    for (_, b) in &produced {
        let pid = i64::from_be_bytes(b[43..51].try_into().unwrap());
        let seq = i32::from_be_bytes(b[53..57].try_into().unwrap());
        let count = i32::from_be_bytes(b[57..61].try_into().unwrap());
        assert_eq!((pid, seq), (1001, expect_seq));
        expect_seq += count;
        ferry_kafka::verify_batches(b).unwrap();
    }
    assert_eq!(expect_seq, 10);
    // Every record's offset is known.
    assert_eq!(
        (0..10)
            .map(|i| res[0].offset_of(i).unwrap())
            .collect::<Vec<_>>(),
        (0..10).collect::<Vec<i64>>()
    );
    assert_eq!(cluster.init_producer_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn out_of_order_sequence_is_fatal_and_reinitializes() {
    let cluster = start_cluster().await;
    cluster.leader.store(2, Ordering::SeqCst);
    cluster.produce_error_on_2.store(
        KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER.0 as i32,
        Ordering::SeqCst,
    );
    let client = Client::connect(config(&cluster)).await.unwrap();
    let p = client
        .producer(ferry_kafka::ProducerConfig::default())
        .unwrap();
    let batch = || {
        vec![ferry_kafka::ProduceBatch {
            topic: "t".into(),
            partition: 0,
            records: records(3),
        }]
    };
    let err = p.produce(batch()).await.unwrap_err().to_string();
    assert!(
        err.contains("t/0")
            && err.contains("OUT_OF_ORDER_SEQUENCE_NUMBER")
            && err.contains("sequence"),
        "{err}"
    );
    cluster.produce_error_on_2.store(0, Ordering::SeqCst);
    p.produce(batch()).await.unwrap();
    assert_eq!(
        cluster.init_producer_calls.load(Ordering::SeqCst),
        2,
        "a new producer id after the fatal error"
    );
    let produced = cluster.produced.lock().unwrap().clone();
    let seq = i32::from_be_bytes(produced[0].1[53..57].try_into().unwrap());
    assert_eq!(seq, 0, "sequences restart with the new producer id");
}

#[tokio::test]
async fn concurrent_calls_land_in_order_when_an_early_batch_fails() {
    let cluster = start_cluster().await;
    cluster.leader.store(2, Ordering::SeqCst);
    cluster.check_sequences.store(true, Ordering::SeqCst);
    let client = Client::connect(config(&cluster)).await.unwrap();
    let p = client
        .producer(ferry_kafka::ProducerConfig {
            max_batch_bytes: 400,
            ..Default::default()
        })
        .unwrap();
    warm_up(&p, &client, &cluster, 2).await;
    // The second wire batch after the warm-up fails once: every batch after it, of this
    // call and of the calls already on the wire behind it, is refused as out of order and
    // must be sent again, after it, in order.
    let seen = cluster.batches_seen.load(Ordering::SeqCst);
    cluster.fail_batch_once.store(seen + 2, Ordering::SeqCst);
    let mut in_flight = Vec::new();
    for c in 0..3 {
        in_flight.push(p.start(ten_records(&p, c * 10)).await.unwrap());
    }
    let mut offsets = Vec::new();
    for f in in_flight {
        let res = f.finish().await.unwrap();
        offsets.extend((0..10).map(|i| res[0].offset_of(i).unwrap()));
    }
    // Each record once, in order, at consecutive offsets (after the warm-up's).
    assert_eq!(offsets, (1..31).collect::<Vec<i64>>());
    let produced = cluster.produced.lock().unwrap().clone();
    let want: Vec<String> = (0..30).map(|i| format!("{i:03}")).collect();
    assert_eq!(kept_values(&cluster), want);
    // Batches were refused on the way (the failure and the out-of-order ones behind it).
    let seen = cluster.batches_seen.load(Ordering::SeqCst) as usize;
    assert!(
        seen > produced.len() + 1,
        "{seen} batches seen, {} kept",
        produced.len()
    );
    assert_eq!(cluster.init_producer_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn encoded_batches_go_out_as_they_are_with_this_producers_fields() {
    let cluster = start_cluster().await;
    cluster.leader.store(2, Ordering::SeqCst);
    cluster.check_sequences.store(true, Ordering::SeqCst);
    let client = Client::connect(config(&cluster)).await.unwrap();
    let p = client
        .producer(ferry_kafka::ProducerConfig::default())
        .unwrap();
    // A transactional lz4 batch from another producer, at offset 500 of its old topic.
    let recs = records(4);
    let original = build_batch(
        500,
        &recs,
        Compression::Lz4,
        0x10,
        Some(ferry_model::ProducerInfo {
            producer_id: 77,
            producer_epoch: 3,
            sequence: 40,
        }),
    )
    .unwrap();
    let items = vec![
        ferry_kafka::ProduceItem::Records(ferry_kafka::ProduceBatch {
            topic: "t".into(),
            partition: 0,
            records: records(2),
        }),
        ferry_kafka::ProduceItem::Encoded(
            ferry_kafka::EncodedBatch::new("t", 0, &original).unwrap(),
        ),
    ];
    let res = p
        .send_prepared(p.prepare_items(items).unwrap())
        .await
        .unwrap();
    assert_eq!(res[0].offset_of(1), Some(1));
    assert_eq!(res[1].offset_of(0), Some(2));
    assert_eq!(res[1].offset_of(3), Some(5));
    let produced = cluster.produced.lock().unwrap().clone();
    assert_eq!(produced.len(), 2);
    let sent = &produced[1].1;
    ferry_kafka::verify_batches(sent).unwrap();
    let h = ferry_kafka::BatchHeader::parse(sent).unwrap();
    let o = ferry_kafka::BatchHeader::parse(&original).unwrap();
    // This producer's id and the sequence after the first batch's 2 records; no longer
    // transactional; base offset and leader epoch cleared; everything else as it was.
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (1001, 0, 2)
    );
    assert_eq!(h.attributes, o.attributes & !0x10);
    assert_eq!((h.base_offset, h.partition_leader_epoch), (0, -1));
    assert_eq!(h.compression().unwrap(), Compression::Lz4);
    assert_eq!(
        (h.base_timestamp, h.max_timestamp, h.record_count),
        (o.base_timestamp, o.max_timestamp, o.record_count)
    );
    assert_eq!(sent[61..], original[61..], "records untouched");

    // A batch with a compaction hole (4 records over 6 offsets) cannot keep its offsets.
    let mut holed = BytesMut::from(&original[..]);
    holed[23..27].copy_from_slice(&5i32.to_be_bytes());
    let err = ferry_kafka::EncodedBatch::new("t", 0, &holed)
        .unwrap_err()
        .to_string();
    assert!(err.contains("4 records over 6 offsets"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The retry policy, throttling, metadata generations and the errors a cluster answers while
// its leaders move.

/// A policy with fixed delays (no jitter) so the timings below are exact.
fn policy(attempts: Option<u32>, delay_ms: u64) -> ferry_kafka::RetryPolicy {
    ferry_kafka::RetryPolicy {
        initial_delay: Duration::from_millis(delay_ms),
        max_delay: Duration::from_millis(delay_ms * 4),
        factor: 2.0,
        jitter: 0.0,
        attempts,
        deadline: None,
    }
}

#[tokio::test]
async fn fetch_gives_up_when_the_retry_policy_says_so() {
    let cluster = start_cluster().await;
    cluster.leader.store(2, Ordering::SeqCst);
    cluster
        .fetch_error_always
        .store(KafkaCode::REQUEST_TIMED_OUT.0 as i32, Ordering::SeqCst);
    let mut cfg = config(&cluster);
    cfg.retry = policy(Some(3), 50);
    let client = Client::connect(cfg).await.unwrap();
    let started = std::time::Instant::now();
    let got = client
        .fetch(&req(), &FetchOptions::default())
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(got[0].error, Some(KafkaCode::REQUEST_TIMED_OUT));
    assert_eq!(
        cluster.fetch_calls[2].load(Ordering::SeqCst),
        3,
        "3 tries in all"
    );
    // Waits of 50 ms then 100 ms between the three tries.
    assert!(took >= Duration::from_millis(150), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn fetch_retries_until_the_deadline() {
    let cluster = start_cluster().await;
    cluster.leader.store(2, Ordering::SeqCst);
    cluster
        .fetch_error_always
        .store(KafkaCode::NOT_LEADER_OR_FOLLOWER.0 as i32, Ordering::SeqCst);
    let mut cfg = config(&cluster);
    cfg.retry = ferry_kafka::RetryPolicy {
        deadline: Some(Duration::from_millis(600)),
        ..policy(None, 50)
    };
    let client = Client::connect(cfg).await.unwrap();
    let started = std::time::Instant::now();
    let got = client
        .fetch(&req(), &FetchOptions::default())
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(got[0].error, Some(KafkaCode::NOT_LEADER_OR_FOLLOWER));
    // Waits of 50, 100, 200 ms; the next 200 ms wait would end past the 600 ms deadline
    // (at about 550 ms), so the loop gives up then, not later.
    assert!(
        took >= Duration::from_millis(300) && took <= Duration::from_millis(1200),
        "{took:?}"
    );
    // At least 4 tries.
    assert!(cluster.fetch_calls[2].load(Ordering::SeqCst) >= 4);
}

#[tokio::test]
async fn throttle_time_delays_the_next_request_to_that_broker() {
    let cluster = start_cluster().await;
    cluster.leader.store(2, Ordering::SeqCst);
    cluster.fetch_throttle_ms.store(400, Ordering::SeqCst);
    let client = Client::connect(config(&cluster)).await.unwrap();
    for _ in 0..2 {
        let got = client
            .fetch(&req(), &FetchOptions::default())
            .await
            .unwrap();
        assert_eq!(got[0].error, None);
    }
    let arrivals = cluster.fetch_arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 2);
    let gap = arrivals[1] - arrivals[0];
    assert!(
        gap >= Duration::from_millis(390),
        "the second fetch came {gap:?} after the first, inside the 400 ms throttle"
    );
}

#[tokio::test]
async fn no_throttle_means_no_wait() {
    let cluster = start_cluster().await;
    cluster.leader.store(2, Ordering::SeqCst);
    let client = Client::connect(config(&cluster)).await.unwrap();
    for _ in 0..2 {
        client
            .fetch(&req(), &FetchOptions::default())
            .await
            .unwrap();
    }
    let arrivals = cluster.fetch_arrivals.lock().unwrap().clone();
    assert!(arrivals[1] - arrivals[0] < Duration::from_millis(300));
}

#[tokio::test]
async fn an_old_generation_does_not_drop_newer_metadata() {
    let cluster = start_cluster().await;
    cluster.leader.store(2, Ordering::SeqCst);
    let client = Client::connect(config(&cluster)).await.unwrap();
    let g1 = client.metadata_generation("t").expect("cached by connect");
    client.metadata(None).await.unwrap();
    let g2 = client.metadata_generation("t").unwrap();
    assert!(g2 > g1);
    // A request routed with g1 failed: the entry is g2 by now, so it stays.
    client.invalidate_topic("t", g1);
    assert_eq!(client.metadata_generation("t"), Some(g2));
    let calls = cluster.metadata_calls.load(Ordering::SeqCst);
    client
        .fetch(&req(), &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(
        cluster.metadata_calls.load(Ordering::SeqCst),
        calls,
        "the cached leader was used"
    );
    client.invalidate_topic("t", g2);
    assert_eq!(client.metadata_generation("t"), None);
}

#[tokio::test]
async fn concurrent_leader_errors_refresh_the_topic_once() {
    let cluster = start_cluster().await;
    let client = Client::connect(config(&cluster)).await.unwrap();
    let before = cluster.metadata_calls.load(Ordering::SeqCst);
    let (r, opts) = (req(), FetchOptions::default());
    let futs = (0..8).map(|_| client.fetch(&r, &opts));
    for got in futures::future::join_all(futs).await {
        assert_eq!(got.unwrap()[0].error, None);
    }
    assert_eq!(
        cluster.metadata_calls.load(Ordering::SeqCst) - before,
        1,
        "eight fetches failed on the old leader with one generation: one refresh"
    );
}

/// FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH and REQUEST_TIMED_OUT on a fetch: the topic's
/// metadata is looked up again and the fetch retried, which then gets the data.
#[tokio::test]
async fn fetch_errors_of_a_moving_leader_are_retried() {
    for code in [
        KafkaCode::FENCED_LEADER_EPOCH,
        KafkaCode::UNKNOWN_LEADER_EPOCH,
        KafkaCode::REQUEST_TIMED_OUT,
        KafkaCode::NOT_LEADER_OR_FOLLOWER,
    ] {
        let cluster = start_cluster().await;
        cluster.leader.store(2, Ordering::SeqCst);
        let client = Client::connect(config(&cluster)).await.unwrap();
        cluster
            .fetch_error_once
            .store(code.0 as i32, Ordering::SeqCst);
        let before = cluster.metadata_calls.load(Ordering::SeqCst);
        let got = client
            .fetch(&req(), &FetchOptions::default())
            .await
            .unwrap();
        assert_eq!(got[0].error, None, "{code}");
        assert!(got[0].data.is_some(), "{code}");
        assert_eq!(cluster.fetch_calls[2].load(Ordering::SeqCst), 2, "{code}");
        assert_eq!(
            cluster.metadata_calls.load(Ordering::SeqCst) - before,
            1,
            "{code}: the topic was looked up again"
        );
    }
}

#[tokio::test]
async fn a_broker_that_never_answers_is_reported_within_the_request_timeout() {
    // Accepts connections, reads, never writes.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = l.accept().await {
            held.push(sock);
        }
    });
    let mut cfg = ClientConfig::new(&[format!("127.0.0.1:{port}")]);
    cfg.request_timeout = Duration::from_millis(700);
    let started = std::time::Instant::now();
    let err = Client::connect(cfg).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, ferry_kafka::ClientError::Timeout { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("timed out after"), "{err}");
    assert!(took < Duration::from_secs(3), "reported after {took:?}");
}

/// Values of the records the fake brokers kept, in the order they were appended.
/// One call's worth for t/0: records `first..first + 10`, valued "000", "001", ….
fn ten_records(p: &ferry_kafka::Producer, first: usize) -> ferry_kafka::Prepared {
    let recs: Vec<ProduceRecord> = (first..first + 10)
        .map(|i| ProduceRecord {
            key: None,
            value: Some(Bytes::from(format!("{i:03}"))),
            headers: vec![],
            timestamp: 1_000 + i as i64,
        })
        .collect();
    p.prepare(vec![ferry_kafka::ProduceBatch {
        topic: "t".into(),
        partition: 0,
        records: recs,
    }])
    .unwrap()
}

/// Values of the records the fake cluster kept, in order, without [`warm_up`]'s.
fn kept_values(cluster: &Cluster) -> Vec<String> {
    let produced = cluster.produced.lock().unwrap().clone();
    let topic: std::sync::Arc<str> = "t".into();
    produced
        .iter()
        .flat_map(|(_, b)| {
            ferry_kafka::decode_batches(b, &topic, 0)
                .unwrap()
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        })
        .filter(|v| v != "warm")
        .collect()
}

/// Lands one record ("warm", offset 0) on t/0, so that the broker holds the producer's
/// state there: only then are the partition's batches pipelined (before, a broker takes a
/// batch with any sequence, so the producer sends one at a time). Then makes broker
/// `leader` lead t/0, and the client look it up again.
async fn warm_up(p: &ferry_kafka::Producer, client: &Client, cluster: &Cluster, leader: i32) {
    p.produce(vec![ferry_kafka::ProduceBatch {
        topic: "t".into(),
        partition: 0,
        records: vec![ProduceRecord {
            key: None,
            value: Some(Bytes::from_static(b"warm")),
            headers: vec![],
            timestamp: 999,
        }],
    }])
    .await
    .unwrap();
    cluster.leader.store(leader, Ordering::SeqCst);
    client.invalidate_topic("t", u64::MAX);
}

/// The leader dies with a call in flight: the first call's batches are refused by the old
/// leader (NOT_LEADER_OR_FOLLOWER), the next call, routed after the leader moved, reaches the
/// new leader first and finds a sequence gap there. Both calls must land, in order, once,
/// with no OUT_OF_ORDER_SEQUENCE_NUMBER reaching the caller.
#[tokio::test]
async fn a_later_call_reaching_the_new_leader_first_waits_for_the_earlier_retries() {
    let cluster = start_cluster().await;
    cluster.check_sequences.store(true, Ordering::SeqCst);
    let client = Client::connect(config(&cluster)).await.unwrap();
    let p = client
        .producer(ferry_kafka::ProducerConfig {
            max_batch_bytes: 400,
            ..Default::default()
        })
        .unwrap();
    warm_up(&p, &client, &cluster, 1).await;
    // The first call goes to broker 1, which has lost the partition.
    let first = p.start(ten_records(&p, 0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Metadata moves on before the first call retries: the next calls go to broker 2.
    client.invalidate_topic("t", u64::MAX);
    let mut in_flight = vec![first];
    for c in 1..3 {
        in_flight.push(p.start(ten_records(&p, c * 10)).await.unwrap());
    }
    let mut offsets = Vec::new();
    for f in in_flight {
        let res = f.finish().await.unwrap();
        offsets.extend((0..10).map(|i| res[0].offset_of(i).unwrap()));
    }
    assert_eq!(offsets, (1..31).collect::<Vec<i64>>());
    let want: Vec<String> = (0..30).map(|i| format!("{i:03}")).collect();
    assert_eq!(kept_values(&cluster), want);
    // Broker 2 refused batches on the way (the later calls' gap), and nothing was fatal.
    let seen = cluster.batches_seen.load(Ordering::SeqCst) as usize;
    let kept = cluster.produced.lock().unwrap().len();
    assert!(seen > kept, "{seen} batches seen by broker 2, {kept} kept");
    assert_eq!(cluster.init_producer_calls.load(Ordering::SeqCst), 1);
}

/// A leader that replicated a call's batches and died before answering: the new leader
/// already has them. Kafka keeps only the last 5 batches of a producer for duplicate
/// detection, so the retry of a batch older than that is OUT_OF_ORDER_SEQUENCE_NUMBER.
/// The producer counts those batches as written once a later batch of the partition lands
/// (their offsets unknown) instead of failing with it.
#[tokio::test]
async fn batches_the_dead_leader_replicated_are_not_refused_on_retry() {
    let cluster = start_cluster().await;
    cluster.check_sequences.store(true, Ordering::SeqCst);
    cluster.duplicate_window.store(true, Ordering::SeqCst);
    cluster
        .appended_before_not_leader
        .store(true, Ordering::SeqCst);
    let client = Client::connect(config(&cluster)).await.unwrap();
    // One record per batch: ten batches of one call in flight for the partition.
    let p = client
        .producer(ferry_kafka::ProducerConfig {
            max_batch_bytes: 1,
            ..Default::default()
        })
        .unwrap();
    warm_up(&p, &client, &cluster, 1).await;
    let res = p.send_prepared(ten_records(&p, 0)).await;
    let want: Vec<String> = (0..10).map(|i| format!("{i:03}")).collect();
    assert_eq!(kept_values(&cluster), want, "every record once, in order");
    let res = res.unwrap();
    // The first 5 retries were out of the broker's window: written, offsets unknown.
    assert_eq!((res[0].base_offset, res[0].offset_of(0)), (-1, None));
    assert_eq!(res[0].offset_of(4), None);
    assert!(res[0].offset_of(9).is_some());
    assert_eq!(cluster.init_producer_calls.load(Ordering::SeqCst), 1);
}

/// As above, and the next call, routed after the leader moved, lands its batches on the new
/// leader before the first call retries: the first call's retries are all out of the
/// broker's duplicate window, and the later call's landing proves they are written.
#[tokio::test]
async fn a_later_call_landing_first_confirms_what_the_dead_leader_replicated() {
    let cluster = start_cluster().await;
    cluster.check_sequences.store(true, Ordering::SeqCst);
    cluster.duplicate_window.store(true, Ordering::SeqCst);
    cluster
        .appended_before_not_leader
        .store(true, Ordering::SeqCst);
    let client = Client::connect(config(&cluster)).await.unwrap();
    let p = client
        .producer(ferry_kafka::ProducerConfig {
            max_batch_bytes: 1,
            ..Default::default()
        })
        .unwrap();
    warm_up(&p, &client, &cluster, 1).await;
    let first = p.start(ten_records(&p, 0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.invalidate_topic("t", u64::MAX);
    // Finished side by side, as the kafka sink does.
    let second = tokio::spawn(p.start(ten_records(&p, 10)).await.unwrap().finish());
    // The second call's answers are in before the first call retries.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let first = first.finish().await.unwrap();
    let second = second.await.unwrap().unwrap();
    let want: Vec<String> = (0..20).map(|i| format!("{i:03}")).collect();
    assert_eq!(kept_values(&cluster), want, "every record once, in order");
    assert_eq!(first[0].offset_of(0), None, "written before the move");
    assert_eq!(
        second[0].offset_of(0),
        Some(11),
        "after the warm-up's and the first call's"
    );
    assert_eq!(cluster.init_producer_calls.load(Ordering::SeqCst), 1);
}

/// A broker that holds no state for a producer id on a partition takes a batch with any
/// sequence (KIP-360). The first batch of a new producer on a partition is refused
/// (NOT_ENOUGH_REPLICAS: not written); the batches behind it, of the same call and of the
/// calls started after it, must not be taken ahead of it, or it is lost while its retry is
/// answered OUT_OF_ORDER_SEQUENCE_NUMBER (or as a duplicate), exactly as if the broker had
/// it already. Seen on a three-node cluster: a fill running through a rolling restart
/// reported success with one batch of 20 records missing.
#[tokio::test]
async fn a_refused_first_batch_on_a_partition_is_not_overtaken_by_the_next() {
    for duplicate_window in [false, true] {
        let cluster = start_cluster().await;
        cluster.leader.store(2, Ordering::SeqCst);
        cluster.check_sequences.store(true, Ordering::SeqCst);
        cluster.any_first_sequence.store(true, Ordering::SeqCst);
        cluster
            .duplicate_window
            .store(duplicate_window, Ordering::SeqCst);
        cluster.fail_batch_once.store(1, Ordering::SeqCst);
        let client = Client::connect(config(&cluster)).await.unwrap();
        let p = client
            .producer(ferry_kafka::ProducerConfig {
                max_batch_bytes: 400,
                ..Default::default()
            })
            .unwrap();
        // Three calls on the wire before any answer is awaited, as the kafka sink does.
        let mut in_flight = Vec::new();
        for c in 0..3 {
            in_flight.push(p.start(ten_records(&p, c * 10)).await.unwrap());
        }
        let mut offsets = Vec::new();
        for f in in_flight {
            let res = f.finish().await.unwrap();
            offsets.extend((0..10).map(|i| res[0].offset_of(i)));
        }
        let want: Vec<String> = (0..30).map(|i| format!("{i:03}")).collect();
        assert_eq!(
            kept_values(&cluster),
            want,
            "every record once, in order (duplicate window {duplicate_window})"
        );
        assert_eq!(offsets, (0..30).map(Some).collect::<Vec<_>>());
        assert_eq!(cluster.init_producer_calls.load(Ordering::SeqCst), 1);
    }
}
