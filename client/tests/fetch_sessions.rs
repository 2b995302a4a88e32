//! Incremental fetch sessions (KIP-227) against an in-process fake broker that keeps
//! sessions like Kafka does: a full request opens one, incremental ones name only changed
//! partitions and are answered only for partitions with something new, a lost session is
//! FETCH_SESSION_ID_NOT_FOUND, an epoch out of step INVALID_FETCH_SESSION_EPOCH. Also a broker
//! without sessions (Fetch v6) and one that declines to open any.

use bytes::{Bytes, BytesMut};
use ferry_kafka::batch::{build_batch, BatchIter};
use ferry_kafka::{
    Client, ClientConfig, Compression, FetchOptions, FetchRequestPartition, FetchSessions,
    KafkaCode, ProduceRecord,
};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse, MetadataResponse,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PARTITIONS: i32 = 4;

/// What the broker's session remembers of a partition.
#[derive(Clone, Copy)]
struct Cached {
    offset: i64,
    hwm: i64,
}

#[derive(Default)]
struct Session {
    next_epoch: i32,
    parts: BTreeMap<i32, Cached>,
}

/// One request as the broker saw it.
#[derive(Debug, Clone)]
struct Seen {
    session_id: i32,
    epoch: i32,
    named: Vec<i32>,
    forgotten: Vec<i32>,
    answered: Vec<i32>,
    error: i16,
}

struct Broker {
    port: Mutex<u16>,
    /// Highest Fetch version offered.
    max_fetch: i16,
    /// Open no session (answer full requests with session id 0).
    decline: bool,
    /// Records per partition (offsets 0..n, one record per batch).
    log_end: Mutex<Vec<i64>>,
    sessions: Mutex<HashMap<i32, Session>>,
    next_id: Mutex<i32>,
    seen: Mutex<Vec<Seen>>,
}

impl Broker {
    fn new(max_fetch: i16, decline: bool, log_end: Vec<i64>) -> Arc<Broker> {
        Arc::new(Broker {
            port: Mutex::new(0),
            max_fetch,
            decline,
            log_end: Mutex::new(log_end),
            sessions: Mutex::new(HashMap::new()),
            next_id: Mutex::new(100),
            seen: Mutex::new(Vec::new()),
        })
    }

    fn partition(&self, p: i32, offset: i64, partition_max: i32) -> (PartitionData, bool) {
        let end = self.log_end.lock().unwrap()[p as usize];
        let mut d = PartitionData::default()
            .with_partition_index(p)
            .with_high_watermark(end)
            .with_last_stable_offset(end)
            .with_log_start_offset(0);
        let has_data = offset < end;
        if has_data {
            // Up to two one-record batches, as many as fit the partition's byte limit.
            let mut b = BytesMut::new();
            for o in offset..(offset + 2).min(end) {
                let rec = ProduceRecord {
                    value: Some(Bytes::from(format!("p{p}-o{o}"))),
                    timestamp: 1000 + o,
                    ..ProduceRecord::default()
                };
                let batch = build_batch(o, &[rec], Compression::None, 0, None).unwrap();
                if !b.is_empty() && b.len() + batch.len() > partition_max as usize {
                    break;
                }
                b.extend_from_slice(&batch);
            }
            d = d.with_records(Some(b.freeze()));
        }
        (d, has_data)
    }

    fn fetch(&self, req: FetchRequest) -> FetchResponse {
        let named: Vec<(i32, i64, i32)> = req
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.partition, p.fetch_offset, p.partition_max_bytes))
            .collect();
        let forgotten: Vec<i32> = req
            .forgotten_topics_data
            .iter()
            .flat_map(|f| f.partitions.iter().copied())
            .collect();
        let mut seen = Seen {
            session_id: req.session_id,
            epoch: req.session_epoch,
            named: named.iter().map(|n| n.0).collect(),
            forgotten: forgotten.clone(),
            answered: Vec::new(),
            error: 0,
        };
        let mut out = Vec::new();
        let mut session_id = 0;
        let mut sessions = self.sessions.lock().unwrap();
        if req.session_epoch == -1 || req.session_epoch == 0 {
            // Sessionless or full: answer for every partition named.
            if req.session_id != 0 {
                sessions.remove(&req.session_id);
            }
            let mut s = Session {
                next_epoch: 1,
                ..Session::default()
            };
            for &(p, offset, max) in &named {
                let (d, _) = self.partition(p, offset, max);
                s.parts.insert(
                    p,
                    Cached {
                        offset,
                        hwm: d.high_watermark,
                    },
                );
                seen.answered.push(p);
                out.push(d);
            }
            if req.session_epoch == 0 && !self.decline {
                let mut id = self.next_id.lock().unwrap();
                *id += 1;
                session_id = *id;
                sessions.insert(session_id, s);
            }
        } else {
            match sessions.get_mut(&req.session_id) {
                None => seen.error = KafkaCode::FETCH_SESSION_ID_NOT_FOUND.0,
                Some(s) if s.next_epoch != req.session_epoch => {
                    seen.error = KafkaCode::INVALID_FETCH_SESSION_EPOCH.0
                }
                Some(s) => {
                    s.next_epoch += 1;
                    session_id = req.session_id;
                    for p in &forgotten {
                        s.parts.remove(p);
                    }
                    for &(p, offset, _) in &named {
                        let hwm = s.parts.get(&p).map_or(-1, |c| c.hwm);
                        s.parts.insert(p, Cached { offset, hwm });
                    }
                    // Answer only partitions with data or a moved watermark.
                    for (p, c) in s.parts.iter_mut() {
                        let (d, has_data) = self.partition(*p, c.offset, i32::MAX);
                        if has_data || d.high_watermark != c.hwm {
                            c.hwm = d.high_watermark;
                            seen.answered.push(*p);
                            out.push(d);
                        }
                    }
                }
            }
        }
        let error = seen.error;
        self.seen.lock().unwrap().push(seen);
        let mut resp = FetchResponse::default()
            .with_error_code(error)
            .with_session_id(session_id);
        if error == 0 && !out.is_empty() {
            resp = resp.with_responses(vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(out)]);
        }
        resp
    }

    fn answer(&self, key: ApiKey, v: i16, frame: &mut Bytes, body: &mut BytesMut) {
        match key {
            ApiKey::ApiVersions => {
                let keys = [(18, 0, 3), (3, 0, 12), (1, 4, self.max_fetch)];
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
                    .encode(body, v)
                    .unwrap();
            }
            ApiKey::Metadata => {
                let port = *self.port.lock().unwrap();
                MetadataResponse::default()
                    .with_brokers(vec![MetadataResponseBroker::default()
                        .with_node_id(BrokerId(1))
                        .with_host(StrBytes::from_static_str("127.0.0.1"))
                        .with_port(port as i32)])
                    .with_controller_id(BrokerId(1))
                    .with_topics(vec![MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                        .with_partitions(
                            (0..PARTITIONS)
                                .map(|p| {
                                    MetadataResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_leader_id(BrokerId(1))
                                        .with_replica_nodes(vec![BrokerId(1)])
                                        .with_isr_nodes(vec![BrokerId(1)])
                                })
                                .collect(),
                        )])
                    .encode(body, v)
                    .unwrap();
            }
            ApiKey::Fetch => {
                let req = FetchRequest::decode(frame, v).unwrap();
                self.fetch(req).encode(body, v).unwrap();
            }
            other => panic!("fake broker got {other:?}"),
        }
    }
}

async fn start(broker: Arc<Broker>) -> Client {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    *broker.port.lock().unwrap() = port;
    let b = broker.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = l.accept().await else {
                return;
            };
            let b = b.clone();
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
                    b.answer(key, v, &mut frame, &mut body);
                    let mut out = BytesMut::new();
                    ResponseHeader::default()
                        .with_correlation_id(header.correlation_id)
                        .encode(&mut out, key.response_header_version(v))
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
    });
    let mut cfg = ClientConfig::new(&[format!("127.0.0.1:{port}")]);
    cfg.request_timeout = Duration::from_secs(5);
    Client::connect(cfg).await.unwrap()
}

/// Reads every partition to its end like the kafka source does (positions move with the
/// data, a partition at its end is no longer asked for); returns the values read per
/// partition. `between` runs after each round.
async fn read_all(
    client: &Client,
    sessions: &FetchSessions,
    ends: &[i64],
    mut between: impl FnMut(usize),
) -> Vec<Vec<String>> {
    let mut pos = vec![0i64; ends.len()];
    let mut got = vec![Vec::new(); ends.len()];
    let topic: Arc<str> = Arc::from("t");
    for round in 0..100 {
        let req: Vec<FetchRequestPartition> = (0..ends.len())
            .filter(|&p| pos[p] < ends[p])
            .map(|p| FetchRequestPartition {
                topic: "t".into(),
                partition: p as i32,
                offset: pos[p],
            })
            .collect();
        if req.is_empty() {
            return got;
        }
        let answers = client
            .fetch_in_sessions(sessions, &req, &FetchOptions::default())
            .await
            .unwrap();
        assert_eq!(
            answers.len(),
            req.len(),
            "one answer per partition asked for"
        );
        for (r, a) in req.iter().zip(&answers) {
            assert_eq!((a.partition, a.error), (r.partition, None));
            let p = r.partition as usize;
            assert_eq!(
                a.high_watermark, ends[p],
                "watermark of {p}, answered or remembered"
            );
            if let Some(d) = &a.data {
                for item in BatchIter::new(&d.bytes) {
                    let (h, range) = item.unwrap();
                    let recs =
                        ferry_kafka::decode_batches(&d.bytes.slice(range), &topic, r.partition)
                            .unwrap();
                    for rec in recs {
                        assert_eq!(rec.offset, pos[p], "in order, no gap, no repeat");
                        got[p].push(String::from_utf8(rec.value.unwrap().to_vec()).unwrap());
                        pos[p] += 1;
                    }
                    assert_eq!(pos[p], h.next_offset());
                }
            }
        }
        between(round);
    }
    panic!("not done after 100 rounds");
}

fn expected(ends: &[i64]) -> Vec<Vec<String>> {
    ends.iter()
        .enumerate()
        .map(|(p, &n)| (0..n).map(|o| format!("p{p}-o{o}")).collect())
        .collect()
}

#[tokio::test]
async fn a_session_sends_only_changed_partitions_and_forgets_finished_ones() {
    let ends = vec![9, 1, 3, 0];
    let broker = Broker::new(12, false, ends.clone());
    let client = start(broker.clone()).await;
    let sessions = FetchSessions::new();
    let got = read_all(&client, &sessions, &ends, |_| {}).await;
    assert_eq!(got, expected(&ends));

    let seen = broker.seen.lock().unwrap().clone();
    // Full first (session 0, epoch 0), naming partitions 0..2 (3 was empty from the start).
    assert_eq!((seen[0].session_id, seen[0].epoch), (0, 0));
    assert_eq!(seen[0].named, vec![0, 1, 2]);
    let id = 101;
    // Then incremental with epochs 1, 2, … in the same session.
    for (i, s) in seen.iter().enumerate().skip(1) {
        assert_eq!((s.session_id, s.epoch, s.error), (id, i as i32, 0), "{s:?}");
    }
    // Round 2: 1 is done (forgotten), 0 and 2 moved on (named again).
    assert_eq!(seen[1].named, vec![0, 2]);
    assert_eq!(seen[1].forgotten, vec![1]);
    // Later rounds name only partition 0, the one still moving.
    assert!(seen[3..].iter().all(|s| s.named == vec![0]), "{seen:?}");
    let stats = sessions.stats();
    assert_eq!((stats.full, stats.incremental), (1, seen.len() as u64 - 1));
    assert_eq!((stats.sessionless, stats.resets), (0, 0));
    assert_eq!(
        stats.partitions_sent,
        seen.iter().map(|s| s.named.len() as u64).sum::<u64>()
    );
}

#[tokio::test]
async fn an_idle_partition_left_out_of_the_answer_keeps_its_watermark() {
    // Partition 1 has nothing new after the first round but is still asked for: it is
    // not named again and the broker does not answer for it, yet the client reports it.
    let broker = Broker::new(12, false, vec![6, 1]);
    let client = start(broker.clone()).await;
    let sessions = FetchSessions::new();
    let req = |o0: i64| {
        vec![
            FetchRequestPartition {
                topic: "t".into(),
                partition: 0,
                offset: o0,
            },
            FetchRequestPartition {
                topic: "t".into(),
                partition: 1,
                offset: 1,
            },
        ]
    };
    let opts = FetchOptions::default();
    client
        .fetch_in_sessions(&sessions, &req(0), &opts)
        .await
        .unwrap();
    client
        .fetch_in_sessions(&sessions, &req(2), &opts)
        .await
        .unwrap();
    let a = client
        .fetch_in_sessions(&sessions, &req(4), &opts)
        .await
        .unwrap();
    let seen = broker.seen.lock().unwrap().clone();
    assert_eq!(seen[2].named, vec![0]);
    assert_eq!(seen[2].answered, vec![0]);
    assert_eq!(
        (a[1].partition, a[1].error, a[1].high_watermark),
        (1, None, 1)
    );
    assert!(a[1].data.is_none());
    assert_eq!(a[0].high_watermark, 6);
}

#[tokio::test]
async fn a_lost_session_falls_back_to_a_full_fetch_at_once() {
    let ends = vec![11, 5, 3, 9];
    let broker = Broker::new(12, false, ends.clone());
    let client = start(broker.clone()).await;
    let sessions = FetchSessions::new();
    let b = broker.clone();
    let got = read_all(&client, &sessions, &ends, |round| match round {
        // The broker evicts the session…
        1 => b.sessions.lock().unwrap().clear(),
        // …and later is out of step on the epoch.
        3 => {
            for s in b.sessions.lock().unwrap().values_mut() {
                s.next_epoch += 5;
            }
        }
        _ => {}
    })
    .await;
    assert_eq!(got, expected(&ends), "nothing lost or repeated");
    let seen = broker.seen.lock().unwrap().clone();
    let errors: Vec<i16> = seen.iter().map(|s| s.error).filter(|&e| e != 0).collect();
    assert_eq!(
        errors,
        vec![
            KafkaCode::FETCH_SESSION_ID_NOT_FOUND.0,
            KafkaCode::INVALID_FETCH_SESSION_EPOCH.0
        ]
    );
    // Each error is followed by a full request closing the old session and naming all.
    for (i, s) in seen.iter().enumerate() {
        if s.error != 0 {
            let next = &seen[i + 1];
            assert_eq!(next.epoch, 0, "{next:?}");
            assert_eq!(next.session_id, s.session_id, "closes the old session");
        }
    }
    let stats = sessions.stats();
    assert_eq!((stats.resets, stats.full), (2, 3));
    assert!(stats.incremental > 0);
}

#[tokio::test]
async fn brokers_without_sessions_are_fetched_as_before() {
    let ends = vec![4, 2, 0, 3];
    // Fetch v6: no sessions in the protocol.
    let broker = Broker::new(6, false, ends.clone());
    let client = start(broker.clone()).await;
    let sessions = FetchSessions::new();
    assert_eq!(
        read_all(&client, &sessions, &ends, |_| {}).await,
        expected(&ends)
    );
    let seen = broker.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s.session_id == 0 && s.epoch == -1));
    let stats = sessions.stats();
    assert_eq!((stats.full, stats.incremental), (0, 0));
    assert_eq!(stats.sessionless, seen.len() as u64);

    // A broker that declines to open a session: full requests every time.
    let broker = Broker::new(12, true, ends.clone());
    let client = start(broker.clone()).await;
    let sessions = FetchSessions::new();
    assert_eq!(
        read_all(&client, &sessions, &ends, |_| {}).await,
        expected(&ends)
    );
    let seen = broker.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s.session_id == 0 && s.epoch == 0));
    assert_eq!(sessions.stats().incremental, 0);
}
