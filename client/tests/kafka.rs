//! Integration tests against the dev environment's Apache Kafka broker (scripts/dev-env up).
//! They skip, printing why, when it is not there (and fail with `FERRY_REQUIRE_ENV=1`).

use bytes::Bytes;
use ferry_kafka::{
    decode_batches, records_from, verify_batches, Client, ClientConfig, Compression, FetchOptions,
    FetchRequestPartition, KafkaCode, NewTopic, OffsetSpec, ProduceBatch, ProduceRecord,
    ProducerConfig, TopicResult,
};
use ferry_model::{Header, Record, TimestampType};
use ferry_testkit::{dump_topic, py_produce_to, unique, DumpedRecord, KcatMsg};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The dev Kafka's address, or `None` (the test skips) when the dev environment is absent.
fn kafka() -> Option<String> {
    ferry_testkit::env_or_skip().map(|e| e.kafka)
}

async fn client(addr: &str) -> Client {
    let mut cfg = ClientConfig::new(&[addr]);
    cfg.request_timeout = Duration::from_secs(20);
    Client::connect(cfg)
        .await
        .expect("connect to the dev Kafka")
}

async fn create(c: &Client, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let res = c
        .create_topics(&[NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor: 1,
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }])
        .await
        .expect("create topic");
    assert_eq!(res, vec![(name.to_string(), TopicResult::Created)]);
}

/// Reads `topic`/`partition` from `from` up to its high watermark with Ferry's client.
async fn read_all(
    c: &Client,
    topic: &str,
    partition: i32,
    from: i64,
    opts: &FetchOptions,
) -> (Vec<Record>, Vec<Bytes>) {
    let name: Arc<str> = Arc::from(topic);
    let mut offset = from;
    let mut out = Vec::new();
    let mut raws = Vec::new();
    for _ in 0..200 {
        let fetched = c
            .fetch(
                &[FetchRequestPartition {
                    topic: topic.to_string(),
                    partition,
                    offset,
                }],
                opts,
            )
            .await
            .expect("fetch");
        let fp = &fetched[0];
        assert_eq!(
            fp.error, None,
            "fetch error for {topic}/{partition} at {offset}"
        );
        if let Some(d) = &fp.data {
            verify_batches(&d.bytes).expect("fetched batches verify");
            let recs = records_from(
                decode_batches(&d.bytes, &name, partition).expect("decode"),
                offset,
            );
            out.extend(recs);
            raws.push(d.bytes.clone());
            assert!(d.next_offset > offset, "fetch made progress");
            offset = d.next_offset;
        }
        if offset >= fp.high_watermark {
            return (out, raws);
        }
    }
    panic!("did not reach the high watermark of {topic}/{partition}");
}

fn test_messages(now: i64) -> Vec<KcatMsg> {
    let big = "compressible ".repeat(400).into_bytes();
    vec![
        KcatMsg::new(Some(b"k0"), Some(&big)).at(now),
        KcatMsg::new(None, Some(b"null key")).at(now - 40 * 86_400_000),
        KcatMsg::new(Some(b"k2"), None).at(now + 1),
        KcatMsg::new(Some(b""), Some(b"")).at(now + 2),
        KcatMsg::new(Some(b"h"), Some(&big))
            .header("dup", Some(b"1"))
            .header("nullable", None)
            .header("dup", Some(b"2"))
            .header("empty", Some(b""))
            .at(now + 3),
        KcatMsg::new(Some(b"older"), Some(b"x")).at(now - 35 * 86_400_000),
    ]
}

fn assert_same(got: &Record, want: &KcatMsg, what: &str) {
    assert_eq!(got.key.as_deref(), want.key.as_deref(), "{what}: key");
    assert_eq!(got.value.as_deref(), want.value.as_deref(), "{what}: value");
    let headers: Vec<(String, Option<Vec<u8>>)> = got
        .headers
        .iter()
        .map(|h| (h.key.clone(), h.value.as_ref().map(|v| v.to_vec())))
        .collect();
    assert_eq!(headers, want.headers, "{what}: headers");
    assert_eq!(Some(got.timestamp), want.timestamp, "{what}: timestamp");
    assert_eq!(
        got.timestamp_type,
        TimestampType::Create,
        "{what}: timestamp type"
    );
    assert!(!got.is_control, "{what}: control");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[tokio::test]
async fn reads_what_confluent_kafka_wrote_in_every_codec() {
    let Some(e) = ferry_testkit::env_or_skip() else {
        return;
    };
    let c = client(&e.kafka).await;
    let now = now_ms();
    for (i, codec) in ["none", "gzip", "snappy", "lz4", "zstd"].iter().enumerate() {
        for idempotent in [false, true] {
            let topic = unique(&format!("codec-{codec}-{idempotent}"));
            create(&c, &topic, 1, &[]).await;
            let msgs = test_messages(now + i as i64);
            let acks = py_produce_to(&e, &e.kafka, &topic, Some(0), &msgs, codec, idempotent);
            let (got, raws) = read_all(&c, &topic, 0, 0, &FetchOptions::default()).await;
            assert_eq!(got.len(), msgs.len(), "{codec}: record count");
            for (j, (r, m)) in got.iter().zip(&msgs).enumerate() {
                assert_eq!(r.offset, acks[j].1, "{codec}: offset of {j}");
                assert_same(r, m, &format!("{codec} idempotent={idempotent} record {j}"));
                if idempotent {
                    assert!(r.producer.producer_id >= 0, "{codec}: producer id kept");
                    assert!(r.producer.sequence >= 0, "{codec}: sequence kept");
                }
            }
            // The codec really was used on the wire (librdkafka compresses compressible data).
            if *codec != "none" {
                let attrs = i16::from_be_bytes([raws[0][21], raws[0][22]]);
                assert_ne!(attrs & 7, 0, "{codec}: batch is compressed");
            }
            let earliest = c
                .list_offsets(&topic, &[0], OffsetSpec::Earliest)
                .await
                .unwrap();
            let latest = c
                .list_offsets(&topic, &[0], OffsetSpec::Latest)
                .await
                .unwrap();
            assert_eq!(earliest[&0], 0);
            assert_eq!(latest[&0], msgs.len() as i64);
        }
    }
}

fn produce_records(now: i64) -> Vec<ProduceRecord> {
    let big = Bytes::from("compressible ".repeat(300));
    vec![
        ProduceRecord {
            key: Some(Bytes::from_static(b"a")),
            value: Some(big.clone()),
            headers: vec![
                Header::new("dup", Some(Bytes::from_static(b"1"))),
                Header::new("n", None),
                Header::new("dup", Some(Bytes::from_static(b"2"))),
            ],
            timestamp: now,
        },
        ProduceRecord {
            key: None,
            value: None,
            headers: vec![],
            timestamp: now - 60 * 86_400_000,
        },
        ProduceRecord {
            key: Some(Bytes::new()),
            value: Some(Bytes::new()),
            headers: vec![Header::new("e", Some(Bytes::new()))],
            timestamp: now + 5,
        },
    ]
}

fn assert_dumped(got: &DumpedRecord, want: &ProduceRecord, what: &str) {
    assert_eq!(got.key.as_deref(), want.key.as_deref(), "{what}: key");
    assert_eq!(got.value.as_deref(), want.value.as_deref(), "{what}: value");
    let headers: Vec<(String, Option<Vec<u8>>)> = want
        .headers
        .iter()
        .map(|h| (h.key.clone(), h.value.as_ref().map(|v| v.to_vec())))
        .collect();
    assert_eq!(got.headers, headers, "{what}: headers");
    assert_eq!(got.timestamp, want.timestamp, "{what}: timestamp");
    assert_eq!(got.timestamp_type, "create", "{what}: timestamp type");
}

#[tokio::test]
async fn what_ferry_produces_an_independent_client_reads_exactly() {
    let Some(e) = ferry_testkit::env_or_skip() else {
        return;
    };
    let c = client(&e.kafka).await;
    let now = now_ms();
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let topic = unique(&format!("produce-{codec:?}").to_lowercase());
        create(&c, &topic, 2, &[]).await;
        let p = c
            .producer(ProducerConfig {
                compression: codec,
                ..Default::default()
            })
            .unwrap();
        let recs = produce_records(now);
        // Two calls, two partitions each: sequences continue across calls.
        let mut expected: Vec<(i32, i64, ProduceRecord)> = Vec::new();
        for round in 0..2 {
            let res = p
                .produce(vec![
                    ProduceBatch {
                        topic: topic.clone(),
                        partition: 0,
                        records: recs.clone(),
                    },
                    ProduceBatch {
                        topic: topic.clone(),
                        partition: 1,
                        records: recs[..1].to_vec(),
                    },
                ])
                .await
                .unwrap_or_else(|e| panic!("{codec:?} round {round}: {e}"));
            assert_eq!(res.len(), 2);
            for (i, r) in recs.iter().enumerate() {
                expected.push((0, res[0].offset_of(i).unwrap(), r.clone()));
            }
            expected.push((1, res[1].offset_of(0).unwrap(), recs[0].clone()));
        }
        expected.sort_by_key(|(p, o, _)| (*p, *o));
        let dumped = dump_topic(&e, &e.kafka, &topic);
        assert_eq!(dumped.len(), expected.len(), "{codec:?}: count");
        for (d, (p, o, r)) in dumped.iter().zip(&expected) {
            assert_eq!((d.partition, d.offset), (*p, *o), "{codec:?}: position");
            assert_dumped(d, r, &format!("{codec:?} {p}/{o}"));
        }
        // And Ferry reads its own batches back, with the producer fields it wrote.
        let (got, _) = read_all(&c, &topic, 0, 0, &FetchOptions::default()).await;
        assert_eq!(got.len(), 6);
        assert!(got.iter().all(|r| r.producer.producer_id >= 0));
        let seqs: Vec<i32> = got.iter().map(|r| r.producer.sequence).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5], "{codec:?}: sequences");
    }
}

#[tokio::test]
async fn five_mib_record_round_trips() {
    let Some(e) = ferry_testkit::env_or_skip() else {
        return;
    };
    let c = client(&e.kafka).await;
    let topic = unique("big");
    create(&c, &topic, 1, &[("max.message.bytes", "8388608")]).await;
    let cfgs = c.describe_configs(&topic).await.unwrap();
    let mmb = cfgs
        .iter()
        .find(|c| c.name == "max.message.bytes")
        .expect("max.message.bytes listed");
    assert_eq!(mmb.value.as_deref(), Some("8388608"));
    assert!(!mmb.is_default);
    assert!(cfgs
        .iter()
        .any(|c| c.name == "cleanup.policy" && c.is_default));

    let value: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let rec = ProduceRecord {
        key: Some(Bytes::from_static(b"big")),
        value: Some(Bytes::from(value.clone())),
        headers: vec![],
        timestamp: now_ms(),
    };
    // Too small a request limit is refused up front, naming topic and partition.
    let small = c.producer(ProducerConfig::default()).unwrap();
    let err = small
        .produce(vec![ProduceBatch {
            topic: topic.clone(),
            partition: 0,
            records: vec![rec.clone()],
        }])
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&topic) && msg.contains("/0") && msg.contains("max_request_bytes"),
        "{msg}"
    );

    let p = c
        .producer(ProducerConfig {
            max_request_bytes: 8 * 1024 * 1024,
            max_batch_bytes: 8 * 1024 * 1024,
            ..Default::default()
        })
        .unwrap();
    let res = p
        .produce(vec![ProduceBatch {
            topic: topic.clone(),
            partition: 0,
            records: vec![rec.clone()],
        }])
        .await
        .unwrap();
    assert_eq!(res[0].base_offset, 0);
    // A partition limit below the record size still returns the whole first batch (KIP-74).
    let opts = FetchOptions {
        partition_max_bytes: 1024 * 1024,
        ..Default::default()
    };
    let (got, _) = read_all(&c, &topic, 0, 0, &opts).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value.as_deref(), Some(&value[..]));
    let dumped = dump_topic(&e, &e.kafka, &topic);
    assert_eq!(dumped.len(), 1);
    assert_eq!(dumped[0].value.as_deref(), Some(&value[..]));
}

#[tokio::test]
async fn retention_gap_is_reported_not_looped_on() {
    let Some(kafka) = kafka() else { return };
    let c = client(&kafka).await;
    let topic = unique("gap");
    create(&c, &topic, 1, &[]).await;
    let p = c.producer(ProducerConfig::default()).unwrap();
    let recs: Vec<ProduceRecord> = (0..10)
        .map(|i| ProduceRecord {
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: vec![],
            timestamp: now_ms(),
        })
        .collect();
    for r in recs {
        // One record per batch, so DeleteRecords can cut between batches.
        p.produce(vec![ProduceBatch {
            topic: topic.clone(),
            partition: 0,
            records: vec![r],
        }])
        .await
        .unwrap();
    }
    let low = c
        .delete_records(&topic, &BTreeMap::from([(0, 4)]))
        .await
        .unwrap();
    assert_eq!(low[&0], 4);
    let fetched = c
        .fetch(
            &[FetchRequestPartition {
                topic: topic.clone(),
                partition: 0,
                offset: 0,
            }],
            &FetchOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(fetched[0].error, Some(KafkaCode::OFFSET_OUT_OF_RANGE));
    let earliest = c
        .list_offsets(&topic, &[0], OffsetSpec::Earliest)
        .await
        .unwrap();
    assert_eq!(earliest[&0], 4);
    let (got, _) = read_all(&c, &topic, 0, 4, &FetchOptions::default()).await;
    assert_eq!(got.first().map(|r| r.offset), Some(4));
    assert_eq!(got.len(), 6);
    // Fetching mid-batch range works from any offset; records below it are dropped.
    let (got, _) = read_all(&c, &topic, 0, 7, &FetchOptions::default()).await;
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![7, 8, 9]
    );
}

#[tokio::test]
async fn admin_and_group_offsets() {
    let Some(kafka) = kafka() else { return };
    let c = client(&kafka).await;
    let topic = unique("admin");
    create(&c, &topic, 2, &[("cleanup.policy", "compact")]).await;
    // Creating it again is reported distinctly.
    let again = c
        .create_topics(&[NewTopic {
            name: topic.clone(),
            partitions: 2,
            replication_factor: 1,
            configs: BTreeMap::new(),
        }])
        .await
        .unwrap();
    assert_eq!(again, vec![(topic.clone(), TopicResult::AlreadyExists)]);

    let md = c
        .metadata(Some(std::slice::from_ref(&topic)))
        .await
        .unwrap();
    let t = md.topic(&topic).unwrap();
    assert_eq!(t.partitions.len(), 2);
    assert!(t.id.is_some(), "Kafka 4 has topic ids");
    assert!(t
        .partitions
        .iter()
        .all(|p| p.leader >= 0 && !p.replicas.is_empty()));

    c.create_partitions(&topic, 3).await.unwrap();
    // Metadata catches up with the controller shortly after.
    let mut n = 0;
    for _ in 0..50 {
        let md = c
            .metadata(Some(std::slice::from_ref(&topic)))
            .await
            .unwrap();
        n = md.topic(&topic).unwrap().partitions.len();
        if n == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(n, 3);

    let group = unique("group");
    let offsets = BTreeMap::from([((topic.clone(), 0), 5i64), ((topic.clone(), 2), 7i64)]);
    // Offsets past the end are accepted by Kafka for an empty group.
    c.offset_commit(&group, &offsets).await.unwrap();
    let got = c.offset_fetch(&group, None).await.unwrap();
    assert_eq!(got, offsets);
    let got = c
        .offset_fetch(&group, Some(std::slice::from_ref(&topic)))
        .await
        .unwrap();
    assert_eq!(got, offsets);
    let groups = c.list_groups().await.unwrap();
    assert!(groups.iter().any(|g| g.group == group), "{groups:?}");
    let d = c
        .describe_groups(std::slice::from_ref(&group))
        .await
        .unwrap();
    assert_eq!(d[0].group, group);
    assert_eq!(d[0].members, 0);
    assert_eq!(d[0].state, "Empty");

    c.delete_topics(std::slice::from_ref(&topic)).await.unwrap();
    let mut gone = false;
    for _ in 0..50 {
        if c.metadata(None).await.unwrap().topic(&topic).is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "deleted topic still listed");
}

#[tokio::test]
async fn fetch_many_partitions_of_many_topics_in_one_call() {
    let Some(kafka) = kafka() else { return };
    let c = client(&kafka).await;
    let t1 = unique("multi-a");
    let t2 = unique("multi-b");
    create(&c, &t1, 3, &[]).await;
    create(&c, &t2, 2, &[]).await;
    let p = c
        .producer(ProducerConfig {
            compression: Compression::Lz4,
            ..Default::default()
        })
        .unwrap();
    let mut batches = Vec::new();
    for (t, n) in [(&t1, 3), (&t2, 2)] {
        for part in 0..n {
            batches.push(ProduceBatch {
                topic: t.clone(),
                partition: part,
                records: (0..5)
                    .map(|i| ProduceRecord {
                        key: Some(Bytes::from(format!("{part}-{i}"))),
                        value: Some(Bytes::from(format!("{t}/{part}/{i}"))),
                        headers: vec![],
                        timestamp: 1_000 + i,
                    })
                    .collect(),
            });
        }
    }
    let res = p.produce(batches).await.unwrap();
    assert!(res.iter().all(|r| r.base_offset == 0));
    let reqs: Vec<FetchRequestPartition> = [(&t1, 3), (&t2, 2)]
        .iter()
        .flat_map(|(t, n)| {
            (0..*n).map(move |p| FetchRequestPartition {
                topic: (*t).clone(),
                partition: p,
                offset: 0,
            })
        })
        .collect();
    let fetched = c.fetch(&reqs, &FetchOptions::default()).await.unwrap();
    assert_eq!(fetched.len(), 5);
    for (f, r) in fetched.iter().zip(&reqs) {
        assert_eq!((&f.topic, f.partition), (&r.topic, r.partition));
        assert_eq!(f.error, None);
        assert_eq!(f.high_watermark, 5);
        let d = f.data.as_ref().expect("data");
        assert_eq!((d.first_offset, d.next_offset, d.record_count), (0, 5, 5));
        assert_eq!(
            (d.min_timestamp, d.max_timestamp),
            (Some(1_000), Some(1_004))
        );
        let recs = decode_batches(&d.bytes, &Arc::from(f.topic.as_str()), f.partition).unwrap();
        assert_eq!(
            recs[4].value.as_deref(),
            Some(format!("{}/{}/4", f.topic, f.partition).as_bytes())
        );
    }
    // Timestamps: the first record at or after 1_002 is offset 2.
    let at = c
        .list_offsets(&t1, &[0, 1, 2], OffsetSpec::Timestamp(1_002))
        .await
        .unwrap();
    assert_eq!(at, BTreeMap::from([(0, 2), (1, 2), (2, 2)]));
}

#[tokio::test]
async fn unknown_topic_is_a_clear_error() {
    let Some(kafka) = kafka() else { return };
    let c = client(&kafka).await;
    let err = c
        .list_offsets(&unique("missing"), &[0], OffsetSpec::Latest)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION),
        "{err}"
    );
    assert!(
        err.to_string().contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{err}"
    );
}

#[tokio::test]
async fn tansu_smoke() {
    let Some(e) = ferry_testkit::env_or_skip() else {
        return;
    };
    let c = client(&e.tansu).await;
    let topic = unique("tansu");
    create(&c, &topic, 1, &[]).await;
    let p = c.producer(ProducerConfig::default()).unwrap();
    let recs = produce_records(now_ms());
    p.produce(vec![ProduceBatch {
        topic: topic.clone(),
        partition: 0,
        records: recs.clone(),
    }])
    .await
    .unwrap();
    let (got, _) = read_all(&c, &topic, 0, 0, &FetchOptions::default()).await;
    assert_eq!(got.len(), recs.len());
    for (g, r) in got.iter().zip(&recs) {
        assert_eq!(g.key, r.key);
        assert_eq!(g.value, r.value);
        assert_eq!(g.headers, r.headers);
        assert_eq!(g.timestamp, r.timestamp);
    }
}

/// What `ferry topics --json` prints ([`Client::topic_offsets`]) agrees with librdkafka's
/// watermark query (what `kcat -Q`/ListOffsets return) on a topic produced one record per
/// batch by kcat, with a retention gap at the start of one partition.
#[tokio::test]
async fn topic_offsets_agree_with_librdkafka() {
    let Some(e) = ferry_testkit::env_or_skip() else {
        return;
    };
    let c = client(&e.kafka).await;
    let topic = unique("topics-cmd");
    create(&c, &topic, 2, &[]).await;
    for i in 0..5 {
        // One kcat run per message: one record per batch.
        let msg = KcatMsg::new(None, Some(format!("m{i}").as_bytes()));
        ferry_testkit::kcat_produce(&e, &e.kafka, &topic, Some(i % 2), "none", &[msg]);
    }
    c.delete_records(&topic, &BTreeMap::from([(0, 1)]))
        .await
        .unwrap();
    let all = c.topic_offsets().await.unwrap();
    assert!(
        all.iter()
            .any(|t| t.topic == "__consumer_offsets" && t.internal)
            || !all.iter().any(|t| t.topic.starts_with("__"))
    );
    let ours = all
        .into_iter()
        .find(|t| t.topic == topic)
        .expect("topic listed");
    assert!(!ours.internal);
    let json = serde_json::to_string(&ours).unwrap();
    assert_eq!(
        json,
        format!(
            r#"{{"topic":"{topic}","partitions":[{{"partition":0,"earliest":1,"latest":3}},{{"partition":1,"earliest":0,"latest":2}}]}}"#
        )
    );
    let script = r#"
import json, sys
from confluent_kafka import Consumer, TopicPartition
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "ferry-topics-test"})
out = []
for p in (0, 1):
    lo, hi = c.get_watermark_offsets(TopicPartition(sys.argv[2], p), timeout=30)
    out.append({"partition": p, "earliest": lo, "latest": hi})
print(json.dumps(out))
"#;
    let out = ferry_testkit::run_python_args(&e, script, &[&e.kafka, &topic], b"");
    let theirs: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(serde_json::to_value(&ours.partitions).unwrap(), theirs);
}

/// A transactional producer (confluent-kafka) aborts one transaction and commits another.
/// Kafka lists aborted transactions only to read_committed fetches (which stop at the last
/// stable offset but still return the aborted batches); read_uncommitted gets the same
/// batches without the list. Both come through Ferry's fetch unchanged.
#[tokio::test]
async fn transactions_aborted_list_and_control_batches() {
    let Some(e) = ferry_testkit::env_or_skip() else {
        return;
    };
    let c = client(&e.kafka).await;
    let topic = unique("txn");
    create(&c, &topic, 1, &[]).await;
    let script = r#"
import sys
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": sys.argv[1], "transactional.id": sys.argv[2]})
p.init_transactions(30)
p.begin_transaction()
for i in range(3):
    p.produce(sys.argv[3], value=b"aborted-%d" % i, partition=0)
p.flush(30)
p.abort_transaction(30)
p.begin_transaction()
for i in range(2):
    p.produce(sys.argv[3], value=b"committed-%d" % i, partition=0)
p.commit_transaction(30)
"#;
    ferry_testkit::run_python_args(&e, script, &[&e.kafka, &unique("txid"), &topic], b"");
    let name: Arc<str> = Arc::from(topic.as_str());
    for iso in [
        ferry_kafka::Isolation::ReadCommitted,
        ferry_kafka::Isolation::ReadUncommitted,
    ] {
        let opts = FetchOptions {
            isolation: iso,
            ..Default::default()
        };
        let f = c
            .fetch(
                &[FetchRequestPartition {
                    topic: topic.clone(),
                    partition: 0,
                    offset: 0,
                }],
                &opts,
            )
            .await
            .unwrap();
        let p = &f[0];
        assert_eq!(p.error, None);
        // 3 aborted + abort marker + 2 committed + commit marker.
        assert_eq!(p.high_watermark, 7, "{iso:?}");
        assert_eq!(p.last_stable_offset, 7, "{iso:?}");
        let d = p.data.as_ref().expect("data");
        assert!(d.control_batches);
        assert_eq!(d.next_offset, 7, "{iso:?}");
        let recs = decode_batches(&d.bytes, &name, 0).unwrap();
        assert_eq!(
            recs.len(),
            7,
            "{iso:?}: aborted records and markers are returned"
        );
        assert!(recs.iter().all(|r| r.is_transactional));
        assert_eq!(recs.iter().filter(|r| r.is_control).count(), 2);
        assert!(recs[3].is_control && recs[6].is_control);
        let pid = recs[0].producer.producer_id;
        if iso == ferry_kafka::Isolation::ReadCommitted {
            assert_eq!(
                p.aborted,
                vec![ferry_model::AbortedTxn {
                    producer_id: pid,
                    first_offset: 0
                }]
            );
        } else {
            assert!(
                p.aborted.is_empty(),
                "Kafka lists aborted transactions to read_committed only"
            );
        }
    }
}

/// Two Ferry members share a topic's partitions through Kafka's classic group protocol, and
/// the survivor takes everything over when the other leaves.
#[tokio::test]
async fn group_members_split_and_rebalance() {
    use ferry_kafka::{Assignor, GroupConfig, Heartbeat};
    let Some(kafka) = kafka() else { return };
    let c = client(&kafka).await;
    let topic = unique("grp-topic");
    create(&c, &topic, 4, &[]).await;
    for assignor in [Assignor::Range, Assignor::RoundRobin] {
        let group = unique("grp");
        let mut cfg = GroupConfig::new(group.clone(), vec![topic.clone()]);
        cfg.assignors = vec![assignor];
        cfg.rebalance_timeout = Duration::from_secs(20);
        let mut a = c.join_group(cfg.clone()).await.unwrap();
        assert_eq!(a.assignment()[&topic], vec![0, 1, 2, 3]);
        assert!(a.is_leader());
        // B joins in the background; A learns of the rebalance by heartbeat and rejoins.
        let c2 = c.clone();
        let cfg2 = cfg.clone();
        let b = tokio::spawn(async move { c2.join_group(cfg2).await });
        let mut rejoined = false;
        for _ in 0..100 {
            if a.heartbeat().await.unwrap() == Heartbeat::RebalanceNeeded {
                a.rejoin().await.unwrap();
                rejoined = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(rejoined, "A saw the rebalance");
        let b = b.await.unwrap().unwrap();
        assert_eq!(a.generation(), b.generation());
        let mut all: Vec<i32> = a.assignment()[&topic]
            .iter()
            .chain(&b.assignment()[&topic])
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3], "{assignor:?}: disjoint and complete");
        assert_eq!(a.assignment()[&topic].len(), 2);
        if assignor == Assignor::RoundRobin {
            let mut both = [
                a.assignment()[&topic].clone(),
                b.assignment()[&topic].clone(),
            ];
            both.sort();
            assert_eq!(both, [vec![0, 2], vec![1, 3]]);
        }
        // A member commits with its generation.
        b.commit(&BTreeMap::from([(
            (topic.clone(), b.assignment()[&topic][0]),
            1,
        )]))
        .await
        .unwrap();
        let d = c
            .describe_groups(std::slice::from_ref(&group))
            .await
            .unwrap();
        assert_eq!((d[0].state.as_str(), d[0].members), ("Stable", 2));
        b.leave().await.unwrap();
        let mut took_over = false;
        for _ in 0..100 {
            if a.heartbeat().await.unwrap() == Heartbeat::RebalanceNeeded {
                a.rejoin().await.unwrap();
                took_over = a.assignment()[&topic] == vec![0, 1, 2, 3];
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(took_over, "A owns every partition after B left");
        a.leave().await.unwrap();
    }
}

#[tokio::test]
async fn fetch_of_an_unknown_topic_reports_the_code() {
    let Some(kafka) = kafka() else { return };
    let c = client(&kafka).await;
    let topic = unique("nope");
    let f = c
        .fetch(
            &[FetchRequestPartition {
                topic: topic.clone(),
                partition: 0,
                offset: 0,
            }],
            &FetchOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(f[0].error, Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION));
    assert!(f[0].data.is_none());
}

#[tokio::test]
async fn a_producer_taking_over_an_earlier_id_fences_what_that_one_still_sends() {
    let Some(addr) = kafka() else { return };
    let c = client(&addr).await;
    let topic = unique("take-over");
    create(&c, &topic, 1, &[]).await;
    let batch = |value: &str| ProduceBatch {
        topic: topic.clone(),
        partition: 0,
        records: vec![ProduceRecord {
            key: None,
            value: Some(Bytes::from(value.to_string())),
            headers: Vec::new(),
            timestamp: now_ms(),
        }],
    };
    // The earlier run: writes once, then stands for a run whose requests are still on the way.
    let earlier = c.producer(ProducerConfig::default()).expect("producer");
    earlier
        .produce(vec![batch("one")])
        .await
        .expect("first write");
    let (id, epoch) = earlier.producer_id().await.expect("initialized");

    // The re-run continues as the same id, one epoch on, and writes.
    let rerun = c.producer(ProducerConfig::default()).expect("producer");
    rerun.take_over(id, epoch).await;
    assert_eq!(
        rerun.ensure_initialized().await.expect("no request needed"),
        Some((id, epoch + 1))
    );
    rerun
        .produce(vec![batch("two")])
        .await
        .expect("re-run writes");

    // What the earlier run sends now is refused, not appended.
    let late = earlier.produce(vec![batch("late")]).await;
    let err = late.expect_err("the earlier epoch is fenced");
    assert!(
        matches!(err, ferry_kafka::ClientError::Fenced(_))
            && err.to_string().contains("INVALID_PRODUCER_EPOCH"),
        "refused as an older epoch: {err}"
    );
    let (records, _) = read_all(&c, &topic, 0, 0, &FetchOptions::default()).await;
    let values: Vec<&[u8]> = records.iter().filter_map(|r| r.value.as_deref()).collect();
    assert_eq!(values, vec![&b"one"[..], &b"two"[..]]);
}
