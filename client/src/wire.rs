//! Decoding of what brokers send: [`decode_response`] for every response, and Ferry's own
//! decoder of Fetch responses (v4 to v18), the one response whose size and content come from
//! the data itself.
//!
//! kafka-protocol's generated decoders, as published, pre-allocate arrays from the lengths a
//! response declares, so one bad length asks for gigabytes and aborts the process (the fuzz
//! target `fetch_response` found this in seconds). Ferry builds a patched kafka-protocol
//! (third_party/kafka-protocol) that checks such lengths against the bytes received;
//! [`decode_response`] is the one entry point to it. Fetch has its own decoder for speed
//! and zero copy: every count is checked against the bytes actually left before anything is
//! allocated, records stay zero-copy slices of the frame, and the fields Ferry does not use
//! (tagged fields, node endpoints) are skipped by size.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Request};
use uuid::Uuid;

/// One partition of a Fetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionResponse {
    /// Partition.
    pub partition: i32,
    /// Error code (0: none).
    pub error_code: i16,
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset.
    pub last_stable_offset: i64,
    /// Log start offset (-1 before v5).
    pub log_start_offset: i64,
    /// Aborted transactions as (producer id, first offset); `None` when the broker sent null.
    pub aborted: Option<Vec<(i64, i64)>>,
    /// Record batches, a slice of the response frame.
    pub records: Option<Bytes>,
}

/// One topic of a Fetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopicResponse {
    /// Topic name (v4 to v12; empty after).
    pub name: String,
    /// Topic id (v13 and later; nil before).
    pub topic_id: Uuid,
    /// Partitions.
    pub partitions: Vec<FetchPartitionResponse>,
}

/// A decoded Fetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponseData {
    /// How long the broker asks the client to wait before its next request (quota).
    pub throttle_time_ms: i32,
    /// Top-level error code (v7+).
    pub error_code: i16,
    /// The fetch session the broker answered in (KIP-227, v7+): 0 when there is none.
    pub session_id: i32,
    /// Topics.
    pub topics: Vec<FetchTopicResponse>,
}

struct Reader {
    buf: Bytes,
    pos: usize,
}

type R<T> = Result<T, String>;

impl Reader {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> R<&[u8]> {
        if self.left() < n {
            return Err(format!(
                "needs {n} bytes at byte {}, {} left",
                self.pos,
                self.left()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn slice(&mut self, n: usize) -> R<Bytes> {
        if self.left() < n {
            return Err(format!(
                "field of {n} bytes at byte {}, {} left",
                self.pos,
                self.left()
            ));
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    fn i16(&mut self) -> R<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> R<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> R<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn uvarint(&mut self) -> R<u32> {
        let mut v: u32 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.take(1)?[0];
            v |= ((b & 0x7f) as u32) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("unsigned varint too long at byte {}", self.pos))
    }

    /// Array length (`None` for null), checked against the bytes left: every element takes
    /// at least `min_size` bytes.
    fn array_len(&mut self, compact: bool, min_size: usize) -> R<Option<usize>> {
        let n: i64 = if compact {
            self.uvarint()? as i64 - 1
        } else {
            self.i32()? as i64
        };
        if n < 0 {
            return Ok(None);
        }
        let n = n as usize;
        if n.saturating_mul(min_size.max(1)) > self.left() {
            return Err(format!(
                "array of {n} elements at byte {} cannot fit in {} bytes",
                self.pos,
                self.left()
            ));
        }
        Ok(Some(n))
    }

    fn string(&mut self, compact: bool) -> R<String> {
        let n: i64 = if compact {
            self.uvarint()? as i64 - 1
        } else {
            self.i16()? as i64
        };
        if n < 0 {
            return Ok(String::new());
        }
        let b = self.take(n as usize)?;
        String::from_utf8(b.to_vec()).map_err(|_| "topic name is not UTF-8".to_string())
    }

    fn bytes(&mut self, compact: bool) -> R<Option<Bytes>> {
        let n: i64 = if compact {
            self.uvarint()? as i64 - 1
        } else {
            self.i32()? as i64
        };
        if n < 0 {
            return Ok(None);
        }
        self.slice(n as usize).map(Some)
    }

    fn skip_tagged(&mut self) -> R<()> {
        let n = self.uvarint()?;
        for _ in 0..n {
            let _tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
}

/// Decodes the body (after the response header) of a Fetch response of `version`.
pub fn decode_fetch_response(body: Bytes, version: i16) -> Result<FetchResponseData, String> {
    if !(4..=18).contains(&version) {
        return Err(format!("Fetch v{version} is not supported"));
    }
    let flexible = version >= 12;
    let mut r = Reader { buf: body, pos: 0 };
    let throttle_time_ms = r.i32()?;
    let (error_code, session_id) = if version >= 7 {
        (r.i16()?, r.i32()?)
    } else {
        (0, 0)
    };
    let n_topics = r.array_len(flexible, 2)?.unwrap_or(0);
    let mut topics = Vec::with_capacity(n_topics);
    for _ in 0..n_topics {
        let name = if version <= 12 {
            r.string(flexible)?
        } else {
            String::new()
        };
        let topic_id = if version >= 13 {
            let b = r.take(16)?;
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Uuid::from_bytes(a)
        } else {
            Uuid::nil()
        };
        // A partition takes at least 4 + 2 + 8 + 8 + 1 + 1 bytes.
        let n_parts = r.array_len(flexible, 24)?.unwrap_or(0);
        let mut partitions = Vec::with_capacity(n_parts);
        for _ in 0..n_parts {
            let partition = r.i32()?;
            let error_code = r.i16()?;
            let high_watermark = r.i64()?;
            let last_stable_offset = r.i64()?;
            let log_start_offset = if version >= 5 { r.i64()? } else { -1 };
            let aborted = match r.array_len(flexible, 16)? {
                None => None,
                Some(n) => {
                    let mut v = Vec::with_capacity(n);
                    for _ in 0..n {
                        let pid = r.i64()?;
                        let first = r.i64()?;
                        if flexible {
                            r.skip_tagged()?;
                        }
                        v.push((pid, first));
                    }
                    Some(v)
                }
            };
            if version >= 11 {
                let _preferred_read_replica = r.i32()?;
            }
            let records = r.bytes(flexible)?;
            if flexible {
                r.skip_tagged()?;
            }
            partitions.push(FetchPartitionResponse {
                partition,
                error_code,
                high_watermark,
                last_stable_offset,
                log_start_offset,
                aborted,
                records,
            });
        }
        if flexible {
            r.skip_tagged()?;
        }
        topics.push(FetchTopicResponse {
            name,
            topic_id,
            partitions,
        });
    }
    if flexible {
        r.skip_tagged()?;
    }
    Ok(FetchResponseData {
        throttle_time_ms,
        error_code,
        session_id,
        topics,
    })
}

/// Decodes a response frame of `R` (response header, then body) at `version`.
///
/// Every response Ferry receives is decoded here (Fetch bodies, after their header, by
/// [`decode_fetch_response`]). The kafka-protocol Ferry builds is patched (third_party/kafka-protocol) so that
/// every array, string and bytes length a response declares is checked against the bytes
/// received before anything is allocated: a broken or hostile broker gets a protocol error,
/// not an allocation of gigabytes that aborts the process.
pub fn decode_response<R: Request>(
    mut frame: Bytes,
    version: i16,
) -> std::result::Result<R::Response, String> {
    let key = ApiKey::try_from(R::KEY).map_err(|_| "unknown api key".to_string())?;
    ResponseHeader::decode(&mut frame, key.response_header_version(version))
        .map_err(|e| format!("decoding response header: {e}"))?;
    R::Response::decode(&mut frame, version)
        .map_err(|e| format!("decoding v{version} response: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint,
        PartitionData,
    };
    use kafka_protocol::messages::{BrokerId, FetchResponse, ProducerId, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn sample(version: i16) -> FetchResponse {
        let mut p = PartitionData::default()
            .with_partition_index(3)
            .with_error_code(0)
            .with_high_watermark(100)
            .with_last_stable_offset(90)
            .with_log_start_offset(7)
            .with_aborted_transactions(Some(vec![AbortedTransaction::default()
                .with_producer_id(ProducerId(5))
                .with_first_offset(40)]))
            .with_records(Some(Bytes::from_static(b"batches here")));
        if version >= 12 {
            // Tagged fields Ferry skips.
            p = p
                .with_diverging_epoch(EpochEndOffset::default().with_epoch(4).with_end_offset(9))
                .with_current_leader(
                    LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(2))
                        .with_leader_epoch(8),
                );
        }
        let empty = PartitionData::default()
            .with_partition_index(4)
            .with_error_code(1)
            .with_records(None);
        let mut t = FetchableTopicResponse::default().with_partitions(vec![p, empty]);
        if version >= 13 {
            t.topic_id = Uuid::from_u128(0x1234);
        } else {
            t.topic = TopicName(StrBytes::from_static_str("orders"));
        }
        let mut r = FetchResponse::default().with_responses(vec![t]);
        if version >= 7 {
            r.error_code = 0;
        }
        if version >= 16 {
            r.node_endpoints = vec![NodeEndpoint::default()
                .with_node_id(BrokerId(2))
                .with_host(StrBytes::from_static_str("h"))
                .with_port(9092)];
        }
        r
    }

    #[test]
    fn decodes_what_kafka_protocol_encodes_in_every_version() {
        for v in 4..=18 {
            let mut b = BytesMut::new();
            sample(v).encode(&mut b, v).unwrap();
            let d = decode_fetch_response(b.freeze(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
            assert_eq!(d.topics.len(), 1);
            let t = &d.topics[0];
            if v >= 13 {
                assert_eq!(t.topic_id, Uuid::from_u128(0x1234));
            } else {
                assert_eq!(t.name, "orders");
            }
            let p = &t.partitions[0];
            assert_eq!(
                (p.partition, p.high_watermark, p.last_stable_offset),
                (3, 100, 90),
                "v{v}"
            );
            assert_eq!(p.log_start_offset, if v >= 5 { 7 } else { -1 });
            assert_eq!(p.aborted, Some(vec![(5, 40)]));
            assert_eq!(p.records.as_deref(), Some(&b"batches here"[..]));
            assert_eq!(
                (t.partitions[1].error_code, t.partitions[1].records.clone()),
                (1, None)
            );
        }
    }

    #[test]
    fn impossible_counts_are_errors_not_allocations() {
        // v4: throttle, then a topic array claiming 2^31-1 elements.
        let mut b = vec![0, 0, 0, 0];
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_fetch_response(Bytes::from(b), 4)
            .unwrap_err()
            .contains("cannot fit"));
        // Truncated everywhere.
        let mut full = BytesMut::new();
        sample(12).encode(&mut full, 12).unwrap();
        for cut in 0..full.len() {
            assert!(
                decode_fetch_response(full.clone().freeze().slice(0..cut), 12).is_err(),
                "cut {cut}"
            );
        }
    }
}

#[cfg(test)]
mod response_tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::metadata_response::{
        MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{
        ApiVersionsRequest, BrokerId, CreatePartitionsRequest, CreateTopicsRequest,
        DeleteRecordsRequest, DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest,
        FindCoordinatorRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
        ListOffsetsRequest, MetadataRequest, MetadataResponse, OffsetCommitRequest,
        OffsetFetchRequest, ProduceRequest, SyncGroupRequest, TopicName,
    };
    use kafka_protocol::protocol::{Encodable, StrBytes};

    /// A response frame of `R` at `version`: correlation id 7, the header's tagged fields
    /// when the header is flexible, then `body`.
    fn frame_of<R: Request>(version: i16, body: &[u8]) -> Bytes {
        let key = ApiKey::try_from(R::KEY).expect("test uses known api keys");
        let mut b = BytesMut::new();
        b.put_i32(7);
        if key.response_header_version(version) >= 1 {
            b.put_u8(0);
        }
        b.put_slice(body);
        b.freeze()
    }

    /// `prefix`, an array length (`count`; compact when `flexible`), then `suffix`.
    fn body_with_array(prefix: &[u8], count: u32, flexible: bool, suffix: &[u8]) -> Vec<u8> {
        let mut b = prefix.to_vec();
        if flexible {
            // Unsigned varint of count + 1.
            let mut v = u64::from(count) + 1;
            while v >= 0x80 {
                b.push((v as u8 & 0x7f) | 0x80);
                v >>= 7;
            }
            b.push(v as u8);
        } else {
            b.extend_from_slice(&(count as i32).to_be_bytes());
        }
        b.extend_from_slice(suffix);
        b
    }

    /// The response of `R` at `version` decodes with the array at `prefix` empty, and is
    /// refused with a protocol error naming the impossible length when that array declares
    /// 2^31-1 (or 2^32-2, compact) elements: no allocation of what it declares.
    fn huge_array_is_refused<R: Request>(
        version: i16,
        flexible: bool,
        prefix: &[u8],
        suffix: &[u8],
    ) {
        let api = ApiKey::try_from(R::KEY).map_or("?".into(), |k| format!("{k:?}"));
        let empty = frame_of::<R>(version, &body_with_array(prefix, 0, flexible, suffix));
        if let Err(e) = decode_response::<R>(empty, version) {
            panic!("{api} v{version} with an empty array should decode: {e}");
        }
        let huge = if flexible {
            u32::MAX - 1
        } else {
            i32::MAX as u32
        };
        let bad = frame_of::<R>(version, &body_with_array(prefix, huge, flexible, suffix));
        match decode_response::<R>(bad, version) {
            Ok(_) => panic!("{api} v{version}: a huge array length was accepted"),
            Err(e) => assert!(
                e.contains(&format!("Array length {huge} cannot fit in the")),
                "{api} v{version}: {e}"
            ),
        }
    }

    const THROTTLE: [u8; 4] = [0, 0, 0, 0];
    const TAGS: [u8; 1] = [0];

    #[test]
    fn metadata_declaring_a_huge_array_is_a_protocol_error() {
        // v1: brokers first; then controller id and an empty topics array.
        huge_array_is_refused::<MetadataRequest>(1, false, &[], &[0; 8]);
        // v12: the partitions of the one topic (nested two arrays deep).
        let mut prefix = THROTTLE.to_vec();
        prefix.push(1); // no brokers
        prefix.push(0); // null cluster id
        prefix.extend_from_slice(&[0, 0, 0, 1]); // controller id
        prefix.push(2); // one topic:
        prefix.extend_from_slice(&[0, 0]); // error code
        prefix.extend_from_slice(&[2, b't']); // name
        prefix.extend_from_slice(&[0; 16]); // topic id
        prefix.push(0); // is_internal
        let suffix = [0, 0, 0, 0, 0, 0]; // authorized operations, topic tags, response tags
        huge_array_is_refused::<MetadataRequest>(12, true, &prefix, &suffix);
    }

    #[test]
    fn group_responses_declaring_a_huge_array_are_protocol_errors() {
        // JoinGroup v5: throttle, error, generation, protocol name, leader, member id, members.
        let mut v5 = THROTTLE.to_vec();
        v5.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        huge_array_is_refused::<JoinGroupRequest>(5, false, &v5, &[]);
        // JoinGroup v7: protocol type, protocol name, leader and member id as empty strings.
        let mut v7 = THROTTLE.to_vec();
        v7.extend_from_slice(&[0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
        huge_array_is_refused::<JoinGroupRequest>(7, true, &v7, &TAGS);
        huge_array_is_refused::<DescribeGroupsRequest>(5, true, &THROTTLE, &TAGS);
        let list = [0, 0, 0, 0, 0, 0];
        huge_array_is_refused::<ListGroupsRequest>(3, true, &list, &TAGS);
        huge_array_is_refused::<FindCoordinatorRequest>(4, true, &THROTTLE, &TAGS);
        huge_array_is_refused::<OffsetFetchRequest>(8, true, &THROTTLE, &TAGS);
        huge_array_is_refused::<OffsetCommitRequest>(8, true, &THROTTLE, &TAGS);
        huge_array_is_refused::<LeaveGroupRequest>(4, true, &[0, 0, 0, 0, 0, 0], &TAGS);
    }

    #[test]
    fn admin_and_produce_responses_declaring_a_huge_array_are_protocol_errors() {
        huge_array_is_refused::<CreateTopicsRequest>(5, true, &THROTTLE, &TAGS);
        huge_array_is_refused::<DeleteTopicsRequest>(4, true, &THROTTLE, &TAGS);
        huge_array_is_refused::<DescribeConfigsRequest>(4, true, &THROTTLE, &TAGS);
        huge_array_is_refused::<CreatePartitionsRequest>(2, true, &THROTTLE, &TAGS);
        huge_array_is_refused::<DeleteRecordsRequest>(2, true, &THROTTLE, &TAGS);
        huge_array_is_refused::<ListOffsetsRequest>(6, true, &THROTTLE, &TAGS);
        huge_array_is_refused::<ListOffsetsRequest>(1, false, &[], &[]);
        // ApiVersions v3: error code, api keys, throttle, tags.
        huge_array_is_refused::<ApiVersionsRequest>(3, true, &[0, 0], &[0, 0, 0, 0, 0]);
        // Produce v9: responses, throttle, tags.
        huge_array_is_refused::<ProduceRequest>(9, true, &[], &[0, 0, 0, 0, 0]);
    }

    #[test]
    fn huge_bytes_and_strings_are_protocol_errors() {
        // SyncGroup v3: throttle, error, then an assignment declaring 2^31-1 bytes.
        let mut body = THROTTLE.to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&i32::MAX.to_be_bytes());
        let err = decode_response::<SyncGroupRequest>(frame_of::<SyncGroupRequest>(3, &body), 3)
            .expect_err("a huge assignment must be refused");
        assert!(err.contains("decoding v3 response"), "{err}");
        // Metadata v1: a broker whose host declares 32767 bytes.
        let mut body = 1i32.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0, 1]); // node id
        body.extend_from_slice(&i16::MAX.to_be_bytes());
        let err = decode_response::<MetadataRequest>(frame_of::<MetadataRequest>(1, &body), 1)
            .expect_err("a host longer than the frame must be refused");
        assert!(err.contains("decoding v1 response"), "{err}");
    }

    #[test]
    fn arrays_longer_than_the_preallocation_still_decode_whole() {
        // More partitions than the patched decoder allocates ahead (1024): the vector grows.
        let partitions: Vec<_> = (0..3000)
            .map(|i| {
                MetadataResponsePartition::default()
                    .with_partition_index(i)
                    .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
            })
            .collect();
        let topic = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
            .with_partitions(partitions);
        let resp = MetadataResponse::default().with_topics(vec![topic]);
        for version in [1, 12] {
            let mut body = BytesMut::new();
            resp.encode(&mut body, version).expect("encodes");
            let back = decode_response::<MetadataRequest>(
                frame_of::<MetadataRequest>(version, &body),
                version,
            )
            .expect("decodes");
            assert_eq!(back.topics[0].partitions.len(), 3000, "v{version}");
            assert_eq!(back.topics[0].partitions[2999].partition_index, 2999);
            assert_eq!(back.topics[0].partitions[2999].replica_nodes.len(), 2);
        }
    }
}
