//! Produce request bodies as a list of byte slices: the record batches, nearly all of a
//! Produce request's bytes, go to the socket as they are instead of being copied into one
//! request frame (`kafka-protocol` encodes into a single buffer). The layout follows the
//! Produce request schema, versions 3 to 13 (flexible from 9, topic ids from 13); a test
//! checks the bytes against `kafka-protocol`'s encoder for every version.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::protocol::Message;

/// One partition's record batch.
pub(crate) struct PartitionData {
    /// Partition index.
    pub index: i32,
    /// One v2 record batch.
    pub records: Bytes,
}

/// One topic's partitions.
pub(crate) struct TopicData {
    /// Topic name (versions up to 12).
    pub name: String,
    /// Topic id (version 13 on).
    pub topic_id: uuid::Uuid,
    /// Its partitions.
    pub partitions: Vec<PartitionData>,
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_len(buf: &mut BytesMut, flexible: bool, len: usize) -> Result<(), String> {
    if flexible {
        put_uvarint(buf, len as u64 + 1);
    } else {
        let len = i32::try_from(len).map_err(|_| format!("length {len} does not fit"))?;
        buf.put_i32(len);
    }
    Ok(())
}

/// The body of a Produce request (no transactional id) at `version`, as slices in order.
pub(crate) fn encode_body(
    version: i16,
    acks: i16,
    timeout_ms: i32,
    topics: &[TopicData],
) -> Result<Vec<Bytes>, String> {
    let range = ProduceRequest::VERSIONS;
    if version < range.min || version > range.max {
        return Err(format!("Produce v{version} is not supported"));
    }
    let flexible = version >= 9;
    let mut parts =
        Vec::with_capacity(1 + 2 * topics.iter().map(|t| t.partitions.len()).sum::<usize>());
    let mut buf = BytesMut::with_capacity(256);
    // transactional_id: null.
    if flexible {
        put_uvarint(&mut buf, 0);
    } else {
        buf.put_i16(-1);
    }
    buf.put_i16(acks);
    buf.put_i32(timeout_ms);
    put_len(&mut buf, flexible, topics.len())?;
    for t in topics {
        if version <= 12 {
            let name = t.name.as_bytes();
            if flexible {
                put_uvarint(&mut buf, name.len() as u64 + 1);
            } else {
                let len = i16::try_from(name.len())
                    .map_err(|_| format!("topic name of {} bytes", name.len()))?;
                buf.put_i16(len);
            }
            buf.put_slice(name);
        } else {
            buf.put_slice(t.topic_id.as_bytes());
        }
        put_len(&mut buf, flexible, t.partitions.len())?;
        for p in &t.partitions {
            buf.put_i32(p.index);
            put_len(&mut buf, flexible, p.records.len())?;
            parts.push(buf.split().freeze());
            parts.push(p.records.clone());
            if flexible {
                put_uvarint(&mut buf, 0); // partition tagged fields
            }
        }
        if flexible {
            put_uvarint(&mut buf, 0); // topic tagged fields
        }
    }
    if flexible {
        put_uvarint(&mut buf, 0); // request tagged fields
    }
    parts.push(buf.freeze());
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn same_bytes_as_kafka_protocol_for_every_version() {
        let batch = |n: u8| Bytes::from(vec![n; 300 + n as usize]);
        let topics = vec![
            TopicData {
                name: "orders".into(),
                topic_id: uuid::Uuid::from_u128(7),
                partitions: vec![
                    PartitionData {
                        index: 0,
                        records: batch(1),
                    },
                    PartitionData {
                        index: 3,
                        records: batch(2),
                    },
                ],
            },
            TopicData {
                name: "payments-é".into(),
                topic_id: uuid::Uuid::from_u128(9),
                partitions: vec![PartitionData {
                    index: 1,
                    records: batch(3),
                }],
            },
        ];
        for version in 3..=13 {
            let ours: Vec<u8> = encode_body(version, -1, 30_000, &topics).unwrap().concat();
            let req = ProduceRequest::default()
                .with_transactional_id(None)
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(
                    topics
                        .iter()
                        .map(|t| {
                            TopicProduceData::default()
                                .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                                .with_topic_id(t.topic_id)
                                .with_partition_data(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            PartitionProduceData::default()
                                                .with_index(p.index)
                                                .with_records(Some(p.records.clone()))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            let mut theirs = BytesMut::new();
            req.encode(&mut theirs, version).unwrap();
            assert_eq!(ours, theirs.to_vec(), "Produce v{version}");
        }
        assert!(encode_body(14, -1, 1, &topics).is_err());
    }
}
