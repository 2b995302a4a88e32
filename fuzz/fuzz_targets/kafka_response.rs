//! Every response Ferry decodes with kafka-protocol, as a broker would send it: the first
//! byte picks the API, the second the version (within the versions kafka-protocol knows),
//! the rest is the response frame after its length prefix (response header, then body),
//! decoded by `ferry_kafka::wire::decode_response`, the one function the client uses.
//! Two more choices decode the consumer-protocol data group members exchange inside
//! JoinGroup/SyncGroup (a version, then the struct), as `client/src/group.rs` does.
//!
//! Errors are expected; a panic, an abort or an out-of-memory is a finding.
#![no_main]

use bytes::{Buf, Bytes};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Message, Request};
use libfuzzer_sys::fuzz_target;

/// Decodes `frame` as the response of `R`, at the version `pick` selects.
fn response<R: Request>(pick: u8, frame: Bytes) {
    let range = <R::Response as Message>::VERSIONS;
    let span = (range.max - range.min + 1) as u16;
    let version = range.min + (u16::from(pick) % span) as i16;
    let _ = ferry_kafka::wire::decode_response::<R>(frame, version);
}

/// The consumer-protocol data as `group.rs` decodes it: an i16 version (clamped to the
/// newest known), then the struct.
fn consumer_protocol<T: Decodable>(mut b: Bytes) {
    if b.remaining() < 2 {
        return;
    }
    let v = b.get_i16().clamp(0, 3);
    let _ = T::decode(&mut b, v);
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (api, pick) = (data[0], data[1]);
    let frame = Bytes::copy_from_slice(&data[2..]);
    match api % 23 {
        0 => response::<ApiVersionsRequest>(pick, frame),
        1 => response::<MetadataRequest>(pick, frame),
        2 => response::<FindCoordinatorRequest>(pick, frame),
        3 => response::<JoinGroupRequest>(pick, frame),
        4 => response::<SyncGroupRequest>(pick, frame),
        5 => response::<HeartbeatRequest>(pick, frame),
        6 => response::<LeaveGroupRequest>(pick, frame),
        7 => response::<OffsetFetchRequest>(pick, frame),
        8 => response::<OffsetCommitRequest>(pick, frame),
        9 => response::<ListGroupsRequest>(pick, frame),
        10 => response::<DescribeGroupsRequest>(pick, frame),
        11 => response::<CreateTopicsRequest>(pick, frame),
        12 => response::<DeleteTopicsRequest>(pick, frame),
        13 => response::<DescribeConfigsRequest>(pick, frame),
        14 => response::<CreatePartitionsRequest>(pick, frame),
        15 => response::<DeleteRecordsRequest>(pick, frame),
        16 => response::<ListOffsetsRequest>(pick, frame),
        17 => response::<InitProducerIdRequest>(pick, frame),
        18 => response::<ProduceRequest>(pick, frame),
        19 => response::<SaslHandshakeRequest>(pick, frame),
        20 => response::<SaslAuthenticateRequest>(pick, frame),
        21 => consumer_protocol::<ConsumerProtocolSubscription>(frame),
        _ => consumer_protocol::<ConsumerProtocolAssignment>(frame),
    }
});
