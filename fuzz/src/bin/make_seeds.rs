//! Writes seed corpora from real encodings into `<dir>/<target>/` (default dir: `corpus`).
//!
//! - `kafka_response`: responses of a real broker (`FERRY_KAFKA`, e.g. the dev environment's)
//!   to every request Ferry sends, at every version both sides support, recorded as they came
//!   off the socket; plus the consumer-protocol data kafka-protocol encodes.
//! - `backup_documents`, `checkpoint`, `raw_segment`: documents and segments as Ferry's own
//!   writers encode them.
//!
//! Run: `cargo +nightly fuzz build make_seeds`, then the binary it built (see README.md).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ferry_core::checkpoint::Checkpoint;
use ferry_formats::layout::{self, Descriptor, Gap, PendingSegment, SegmentManifest};
use ferry_kafka::batch::build_batch;
use ferry_kafka::{Compression, ProduceRecord};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Message, Request, StrBytes};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

type Res<T> = Result<T, String>;

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let mut written = 0;
    written += backup_seeds(&dir);
    written += consumer_protocol_seeds(&dir);
    match std::env::var("FERRY_KAFKA") {
        Ok(addr) => match capture(&dir, &addr) {
            Ok(n) => written += n,
            Err(e) => eprintln!("capturing broker responses from {addr}: {e}"),
        },
        Err(_) => eprintln!("FERRY_KAFKA not set: no broker responses captured"),
    }
    println!("{written} seeds written under {}", dir.display());
}

fn save(dir: &Path, target: &str, name: &str, data: &[u8]) -> usize {
    let d = dir.join(target);
    if let Err(e) = std::fs::create_dir_all(&d).and_then(|_| std::fs::write(d.join(name), data)) {
        eprintln!("writing seed {}/{name}: {e}", d.display());
        return 0;
    }
    1
}

// --- Backup documents, checkpoints and raw segments, as Ferry's writers encode them. ---

fn pretty<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut json = serde_json::to_vec_pretty(v).expect("serializing a seed");
    json.push(b'\n');
    json
}

fn backup_seeds(dir: &Path) -> usize {
    let mut n = 0;
    let manifest = SegmentManifest {
        format: "raw".into(),
        topic: "t".into(),
        partition: 0,
        first_offset: 5,
        next_offset: 105,
        record_count: 100,
        min_timestamp: Some(1_700_000_000_000),
        max_timestamp: Some(1_700_000_050_000),
        bytes: 9000,
        crc32c: 0x1234_5678,
        segment: layout::segment_key("t", 0, 5, "log"),
        aborted: Vec::new(),
        gaps: vec![Gap { from: 50, to: 52 }],
        written_at_ms: 1_700_000_060_000,
        encryption: None,
        source_bytes: None,
    };
    let with = |pick: u8, doc: Vec<u8>| {
        let mut v = vec![pick];
        v.extend(doc);
        v
    };
    n += save(dir, "backup_documents", "manifest", &with(0, pretty(&manifest)));
    let descriptor = Descriptor {
        layout_version: layout::LAYOUT_VERSION,
        created_by: "ferry 0.1.0".into(),
        created_at_ms: 1_700_000_000_000,
    };
    n += save(dir, "backup_documents", "descriptor", &with(1, pretty(&descriptor)));
    let topic_doc = br#"{"name":"t","latest":{"name":"t","partitions":3,"replication_factor":1,"configs":{"cleanup.policy":"delete","retention.ms":"604800000"}},"snapshots":[{"taken_at_ms":1700000000000,"metadata":{"name":"t","partitions":3,"replication_factor":1,"configs":{}}}]}"#;
    n += save(dir, "backup_documents", "topic", &with(2, topic_doc.to_vec()));
    let groups = br#"{"taken_at_ms":7,"groups":[{"group":"g1","offsets":{"t":{"0":100,"1":42}}}]}"#;
    n += save(dir, "backup_documents", "groups", &with(3, groups.to_vec()));
    let pending = PendingSegment {
        segment: "topic=t/date=2026-12-06/0-5.parquet".into(),
        started_at_ms: 1_700_000_000_000,
    };
    n += save(dir, "backup_documents", "pending", &with(4, pretty(&pending)));
    let names = [
        layout::topic_key("t"),
        layout::manifest_key("t", 0, 5),
        layout::segment_key("t", 0, 5, "log"),
        layout::segment_key("t", 1, 0, "parquet"),
        layout::pending_key("t", 2, 9),
        layout::groups_key(7),
        layout::checkpoint_key("p1"),
    ]
    .join("\n");
    n += save(dir, "backup_documents", "names", &with(5, names.into_bytes()));
    let template = "topic={topic}/date={date}/hour={hour}/{partition}-{first_offset}";
    n += save(dir, "backup_documents", "template", &with(6, template.as_bytes().to_vec()));

    let mut offsets = BTreeMap::new();
    offsets.insert("orders".to_string(), BTreeMap::from([(0, 1200i64), (1, 1187)]));
    n += save(dir, "checkpoint", "p1", &pretty(&Checkpoint::now("p1", offsets)));

    for (i, codec) in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let records: Vec<ProduceRecord> = (0..5)
            .map(|k| ProduceRecord {
                key: Some(Bytes::from(format!("key-{k}"))),
                value: (k != 3).then(|| Bytes::from(format!("value {k} of codec {i}"))),
                headers: Vec::new(),
                timestamp: 1_700_000_000_000 + k,
            })
            .collect();
        let mut segment = Vec::new();
        for base in [0i64, 5] {
            let batch = build_batch(base, &records, codec, 0, None).expect("building a batch");
            segment.extend_from_slice(&batch);
        }
        // First byte: a chunk size that splits batches; CRCs are already right.
        let mut seed = vec![0x07];
        seed.extend_from_slice(&segment);
        n += save(dir, "raw_segment", &format!("codec-{i}"), &seed);
    }
    n
}

// --- Consumer-protocol data (group member metadata and assignments). ---

fn consumer_protocol_seeds(dir: &Path) -> usize {
    let tp = |t: &str, parts: Vec<i32>| (TopicName(StrBytes::from_string(t.into())), parts);
    let mut n = 0;
    for v in 0..=3i16 {
        let (name, parts) = tp("orders", vec![0, 1, 2]);
        let sub = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("orders")])
            .with_owned_partitions(vec![consumer_protocol_subscription::TopicPartition::default()
                .with_topic(name.clone())
                .with_partitions(parts.clone())])
            .with_generation_id(3);
        let asg = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            consumer_protocol_assignment::TopicPartition::default()
                .with_topic(name)
                .with_partitions(parts),
        ]);
        for (sel, enc) in [(21u8, encode(&sub, v)), (22, encode(&asg, v))] {
            if let Some(body) = enc {
                let mut seed = vec![sel, 0];
                seed.put_i16(v);
                seed.extend_from_slice(&body);
                n += save(dir, "kafka_response", &format!("consumer-{sel}-v{v}"), &seed);
            }
        }
    }
    n
}

fn encode<T: Encodable>(v: &T, version: i16) -> Option<Bytes> {
    let mut b = BytesMut::new();
    v.encode(&mut b, version).ok()?;
    Some(b.freeze())
}

// --- Responses of a real broker. ---

struct Broker {
    stream: TcpStream,
    versions: HashMap<i16, (i16, i16)>,
    corr: i32,
}

impl Broker {
    fn connect(addr: &str) -> Res<Broker> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        let mut b = Broker {
            stream,
            versions: HashMap::new(),
            corr: 0,
        };
        let frame = b.roundtrip(&ApiVersionsRequest::default(), 0)?;
        let mut body = frame.slice(4..);
        let resp = <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut body, 0)
            .map_err(|e| format!("ApiVersions: {e}"))?;
        for k in resp.api_keys {
            b.versions.insert(k.api_key, (k.min_version, k.max_version));
        }
        Ok(b)
    }

    /// Versions of `R` both the broker and kafka-protocol know.
    fn versions<R: Request>(&self) -> Vec<i16> {
        let ours = <R as Message>::VERSIONS;
        let Some(&(min, max)) = self.versions.get(&R::KEY) else { return Vec::new() };
        (min.max(ours.min)..=max.min(ours.max)).collect()
    }

    /// Sends `req` at `version`; the response frame after its length prefix.
    fn roundtrip<R: Request>(&mut self, req: &R, version: i16) -> Res<Bytes> {
        self.corr += 1;
        let key = ApiKey::try_from(R::KEY).map_err(|_| "unknown key".to_string())?;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.corr)
            .with_client_id(Some(StrBytes::from_static_str("ferry-fuzz-seeds")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, key.request_header_version(version))
            .map_err(|e| e.to_string())?;
        req.encode(&mut buf, version).map_err(|e| e.to_string())?;
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).map_err(|e| e.to_string())?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(|e| e.to_string())?;
        let mut frame = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        self.stream.read_exact(&mut frame).map_err(|e| e.to_string())?;
        let frame = Bytes::from(frame);
        let corr = frame.clone().get_i32();
        if corr != self.corr {
            return Err(format!("correlation id {corr}, expected {}", self.corr));
        }
        Ok(frame)
    }
}

/// The selector of each API in the `kafka_response` target.
fn selector(key: i16) -> Option<u8> {
    let order = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::FindCoordinator,
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::Heartbeat,
        ApiKey::LeaveGroup,
        ApiKey::OffsetFetch,
        ApiKey::OffsetCommit,
        ApiKey::ListGroups,
        ApiKey::DescribeGroups,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
        ApiKey::DescribeConfigs,
        ApiKey::CreatePartitions,
        ApiKey::DeleteRecords,
        ApiKey::ListOffsets,
        ApiKey::InitProducerId,
        ApiKey::Produce,
        ApiKey::SaslHandshake,
        ApiKey::SaslAuthenticate,
    ];
    order.iter().position(|k| *k as i16 == key).map(|i| i as u8)
}

struct Capture<'a> {
    dir: &'a Path,
    addr: &'a str,
    broker: Broker,
    written: usize,
}

impl Capture<'_> {
    /// Sends `req` at `version` and saves the response as a seed; the frame, if any.
    fn one<R: Request>(&mut self, req: &R, version: i16, tag: &str) -> Option<Bytes> {
        let frame = match self.broker.roundtrip(req, version) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{:?} v{version}: {e}", ApiKey::try_from(R::KEY));
                // The broker closes the connection on a request it cannot parse.
                if let Ok(b) = Broker::connect(&self.addr) {
                    self.broker = b;
                }
                return None;
            }
        };
        let sel = selector(R::KEY)?;
        let pick = (version - <R::Response as Message>::VERSIONS.min) as u8;
        let mut seed = vec![sel, pick];
        seed.extend_from_slice(&frame);
        let name = format!("{:?}-v{version}{tag}", ApiKey::try_from(R::KEY).ok()?);
        self.written += save(self.dir, "kafka_response", &name, &seed);
        Some(frame)
    }

    /// `req` at every version both sides know.
    fn all<R: Request>(&mut self, req: &R) {
        for v in self.broker.versions::<R>() {
            self.one(req, v, "");
        }
    }
}

fn capture(dir: &Path, addr: &str) -> Res<usize> {
    let broker = Broker::connect(addr)?;
    let mut c = Capture {
        dir,
        addr,
        broker,
        written: 0,
    };
    let uniq = std::process::id();
    let topic = format!("ferry-fuzz-seeds-{uniq}");
    let tname = || TopicName(StrBytes::from_string(topic.clone()));
    let group = format!("ferry-fuzz-seeds-{uniq}");
    let gid = || GroupId(StrBytes::from_string(group.clone()));

    c.all(&ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("ferry"))
        .with_client_software_version(StrBytes::from_static_str("0.1.0")));
    let create = CreateTopicsRequest::default()
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(tname())
            .with_num_partitions(3)
            .with_replication_factor(1)])
        .with_timeout_ms(10_000);
    // The first creates it (configs in the answer from v5); the others say it exists.
    let mut versions = c.broker.versions::<CreateTopicsRequest>();
    versions.reverse();
    for v in versions {
        c.one(&create, v, "");
    }
    // Every topic of the broker (other tests' topics make it a large, real answer).
    c.all(&MetadataRequest::default());
    c.all(&DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.clone())),
    ]));
    // Fields differ across versions: each form fails to encode where it does not apply.
    c.all(&FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.clone())));
    c.all(&FindCoordinatorRequest::default()
        .with_coordinator_keys(vec![StrBytes::from_string(group.clone())]));
    c.all(&ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(tname())
            .with_partitions(
                (0..3)
                    .map(|p| {
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(-1)
                    })
                    .collect(),
            )]));
    c.all(&InitProducerIdRequest::default()
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1));
    let records: Vec<ProduceRecord> = (0..3)
        .map(|i| ProduceRecord {
            key: None,
            value: Some(Bytes::from(format!("seed {i}"))),
            headers: Vec::new(),
            timestamp: 1_700_000_000_000,
        })
        .collect();
    if let Ok(batch) = build_batch(0, &records, Compression::None, 0, None) {
        c.all(&ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(tname())
                .with_partition_data(vec![produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch))])]));
    }
    join_and_leave(&mut c, &topic, &group);
    c.all(&ListGroupsRequest::default());
    c.all(&DescribeGroupsRequest::default().with_groups(vec![gid()]));
    c.all(&OffsetFetchRequest::default()
        .with_group_id(gid())
        .with_topics(None));
    c.all(&OffsetFetchRequest::default()
        .with_topics(None)
        .with_groups(vec![offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(gid())
            .with_topics(None)]));
    c.all(&CreatePartitionsRequest::default()
        .with_topics(vec![create_partitions_request::CreatePartitionsTopic::default()
            .with_name(tname())
            .with_count(4)])
        .with_timeout_ms(10_000));
    c.all(&DeleteRecordsRequest::default()
        .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
            .with_name(tname())
            .with_partitions(vec![delete_records_request::DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(1)])])
        .with_timeout_ms(10_000));
    c.all(&SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")));
    // The newest deletes it; the others answer that it is gone.
    let mut versions = c.broker.versions::<DeleteTopicsRequest>();
    versions.reverse();
    for v in versions {
        let by_name = DeleteTopicsRequest::default().with_timeout_ms(10_000);
        let req = if v >= 6 {
            by_name.with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(tname()))
            ])
        } else {
            by_name.with_topic_names(vec![tname()])
        };
        c.one(&req, v, "");
    }
    Ok(c.written)
}

/// A real member joining (twice: the broker first asks for a member id), syncing,
/// heartbeating, committing and leaving, at the newest version of each.
fn join_and_leave(c: &mut Capture<'_>, topic: &str, group: &str) {
    let gid = || GroupId(StrBytes::from_string(group.to_string()));
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_string(topic.to_string())]);
    let Some(metadata) = encode(&sub, 1).map(|b| {
        let mut m = BytesMut::new();
        m.put_i16(1);
        m.put_slice(&b);
        m.freeze()
    }) else {
        return;
    };
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(gid())
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(StrBytes::from_string(member.to_string()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(metadata.clone())])
    };
    let Some(&v) = c.broker.versions::<JoinGroupRequest>().last() else { return };
    let Some(first) = c.one(&join(""), v, "-member-id-required") else { return };
    let decode = |frame: Bytes| {
        ferry_kafka::wire::decode_response::<JoinGroupRequest>(frame, v).ok()
    };
    let Some(member) = decode(first).map(|r| r.member_id.to_string()) else { return };
    let Some(joined) = c.one(&join(&member), v, "-joined").and_then(decode) else { return };
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        consumer_protocol_assignment::TopicPartition::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![0, 1, 2]),
    ]);
    let assignment = encode(&assignment, 1).map(|b| {
        let mut m = BytesMut::new();
        m.put_i16(1);
        m.put_slice(&b);
        m.freeze()
    });
    if let (Some(&sv), Some(assignment)) =
        (c.broker.versions::<SyncGroupRequest>().last(), assignment)
    {
        c.one(
            &SyncGroupRequest::default()
                .with_group_id(gid())
                .with_generation_id(joined.generation_id)
                .with_member_id(StrBytes::from_string(member.clone()))
                .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                .with_protocol_name(Some(StrBytes::from_static_str("range")))
                .with_assignments(vec![sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member.clone()))
                    .with_assignment(assignment)]),
            sv,
            "",
        );
    }
    if let Some(&hv) = c.broker.versions::<HeartbeatRequest>().last() {
        c.one(
            &HeartbeatRequest::default()
                .with_group_id(gid())
                .with_generation_id(joined.generation_id)
                .with_member_id(StrBytes::from_string(member.clone())),
            hv,
            "",
        );
    }
    if let Some(&ov) = c.broker.versions::<OffsetCommitRequest>().last() {
        c.one(
            &OffsetCommitRequest::default()
                .with_group_id(gid())
                .with_generation_id_or_member_epoch(joined.generation_id)
                .with_member_id(StrBytes::from_string(member.clone()))
                .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(2),
                    ])]),
            ov,
            "",
        );
    }
    // Described while it has a member (then empty, after leaving).
    if let Some(&dv) = c.broker.versions::<DescribeGroupsRequest>().last() {
        c.one(
            &DescribeGroupsRequest::default().with_groups(vec![gid()]),
            dv,
            "-with-member",
        );
    }
    if let Some(&lv) = c.broker.versions::<LeaveGroupRequest>().last() {
        c.one(
            &LeaveGroupRequest::default()
                .with_group_id(gid())
                .with_member_id(StrBytes::from_string(member.clone()))
                .with_members(vec![leave_group_request::MemberIdentity::default()
                    .with_member_id(StrBytes::from_string(member))]),
            lv,
            "",
        );
    }
}
