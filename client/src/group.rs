//! Consumer-group membership (the classic protocol): JoinGroup, SyncGroup, Heartbeat and
//! LeaveGroup, with the range and round-robin assignors of Kafka's Java client, so Ferry can
//! share partitions with other Ferry instances (or be watched by Kafka's group tools).
//!
//! The member does not heartbeat by itself: call [`GroupMember::heartbeat`] more often than
//! the session timeout (e.g. between fetches), and [`GroupMember::rejoin`] when it reports a
//! rebalance.
//!
//! The group protocol is pluggable ([`GroupProtocol`]): consumers use Kafka's `consumer`
//! protocol ([`Client::join_group`]); Ferry's workers share pipelines with a protocol type
//! of their own ([`Client::join_group_with`]), as Kafka Connect's workers use `connect`. The
//! coordinator only relays the bytes: each protocol decides what members say when they join
//! and what the leader hands each of them.

use crate::client::{topic_name, Client};
use crate::conn::Connection;
use crate::error::{ClientError, KafkaCode, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, GroupId, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;

/// What a group's members say when they join and how its leader divides the work.
pub trait GroupProtocol: Send + Sync {
    /// The protocol type every member of the group must share (`consumer`, `ferry-worker`).
    fn protocol_type(&self) -> &str;

    /// The protocols this member offers, preferred first, each with the metadata the leader
    /// will see for this member.
    fn protocols(&self) -> Result<Vec<(String, Bytes)>>;

    /// Leader only: given the chosen protocol and every member's `(member id, metadata)`,
    /// the assignment bytes of each member (members left out get an empty assignment).
    fn assign<'a>(
        &'a self,
        client: &'a Client,
        protocol: &'a str,
        members: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<BTreeMap<String, Bytes>>>;
}

/// How long the coordinator waits for members.
#[derive(Debug, Clone, Copy)]
pub struct GroupTimeouts {
    /// The coordinator drops a member it has not heard from for this long.
    pub session: Duration,
    /// How long members get to rejoin during a rebalance.
    pub rebalance: Duration,
}

/// How partitions are spread over the members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Assignor {
    /// Kafka's `range`: per topic, contiguous partition ranges, the first members get one more.
    #[default]
    Range,
    /// Kafka's `roundrobin`: all partitions of all topics dealt out in turn.
    RoundRobin,
}

impl Assignor {
    /// The protocol name Kafka uses.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            _ => None,
        }
    }
}

/// What a member needs to join a group.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Group id.
    pub group: String,
    /// Topics this member consumes.
    pub topics: Vec<String>,
    /// The coordinator drops a member it has not heard from for this long.
    pub session_timeout: Duration,
    /// How long members get to rejoin during a rebalance.
    pub rebalance_timeout: Duration,
    /// Assignors this member offers, preferred first.
    pub assignors: Vec<Assignor>,
}

impl GroupConfig {
    /// A config with Kafka's usual timeouts and both assignors (range preferred).
    pub fn new(group: impl Into<String>, topics: Vec<String>) -> Self {
        GroupConfig {
            group: group.into(),
            topics,
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            assignors: vec![Assignor::Range, Assignor::RoundRobin],
        }
    }
}

/// Partitions per topic.
pub type Assignment = BTreeMap<String, Vec<i32>>;

/// Outcome of a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// Still a member with the same assignment.
    Ok,
    /// The group is rebalancing: call [`GroupMember::rejoin`]. The member still holds its
    /// assignment until it rejoins.
    RebalanceNeeded,
    /// The coordinator no longer knows this member (it was dropped after the session
    /// timeout): its assignment may already belong to others. Stop using it, then call
    /// [`GroupMember::rejoin`].
    Expired,
    /// The member is known but a newer generation exists (it rejoined elsewhere, e.g. on
    /// another task of the same process): call [`GroupMember::rejoin`] to learn it.
    StaleGeneration,
}

/// A joined member of a consumer group.
pub struct GroupMember {
    client: Client,
    /// A connection of its own to the coordinator: a broker answers the requests of one
    /// connection in order, so a JoinGroup waiting for a rebalance would hold up every
    /// heartbeat, commit or fetch sharing that connection (the Java client does the same).
    conn: tokio::sync::Mutex<Option<Arc<Connection>>>,
    group: String,
    timeouts: GroupTimeouts,
    protocol: Arc<dyn GroupProtocol>,
    member_id: String,
    generation: i32,
    leader: bool,
    /// What the leader sent this member, as sent.
    raw_assignment: Bytes,
    /// The same, decoded, for the `consumer` protocol.
    assignment: Assignment,
}

impl std::fmt::Debug for GroupMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupMember")
            .field("group", &self.group)
            .field("member_id", &self.member_id)
            .field("generation", &self.generation)
            .field("assignment", &self.assignment)
            .finish()
    }
}

fn gid(g: &str) -> GroupId {
    GroupId(StrBytes::from_string(g.to_string()))
}

/// `version (i16)` + the struct at that version: the embedded consumer-protocol format.
fn encode_versioned<T: Encodable>(v: &T, version: i16) -> Result<Bytes> {
    let mut b = BytesMut::new();
    b.put_i16(version);
    v.encode(&mut b, version)
        .map_err(|e| ClientError::Config(format!("encoding consumer protocol data: {e}")))?;
    Ok(b.freeze())
}

fn decode_versioned<T: Decodable + Default>(mut b: Bytes) -> std::result::Result<T, String> {
    if b.is_empty() {
        return Ok(T::default());
    }
    if b.remaining() < 2 {
        return Err("consumer protocol data shorter than its version".into());
    }
    // Newer versions only add fields at the end: read them as the newest known.
    let v = b.get_i16().clamp(0, 3);
    T::decode(&mut b, v).map_err(|e| e.to_string())
}

/// Kafka's range assignor. `members`: member id -> subscribed topics; `partitions`: topic ->
/// partition count.
pub fn assign_range(
    members: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (topic, &n) in partitions {
        let subs: Vec<&String> = members
            .iter()
            .filter(|(_, t)| t.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if subs.is_empty() || n <= 0 {
            continue;
        }
        let per = n as usize / subs.len();
        let extra = n as usize % subs.len();
        let mut next = 0i32;
        for (i, m) in subs.iter().enumerate() {
            let count = per + usize::from(i < extra);
            if count == 0 {
                continue;
            }
            let parts: Vec<i32> = (next..next + count as i32).collect();
            next += count as i32;
            if let Some(a) = out.get_mut(*m) {
                a.insert(topic.clone(), parts);
            }
        }
    }
    out
}

/// Kafka's round-robin assignor.
pub fn assign_round_robin(
    members: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    let ids: Vec<&String> = members.keys().collect();
    if ids.is_empty() {
        return out;
    }
    let mut cursor = 0usize;
    for (topic, &n) in partitions {
        for p in 0..n.max(0) {
            // The next member (in turn) that subscribes to the topic.
            for step in 0..ids.len() {
                let m = ids[(cursor + step) % ids.len()];
                if members[m].contains(topic) {
                    out.entry(m.clone())
                        .or_default()
                        .entry(topic.clone())
                        .or_default()
                        .push(p);
                    cursor = (cursor + step + 1) % ids.len();
                    break;
                }
            }
        }
    }
    out
}

/// Kafka's `consumer` protocol: members subscribe to topics, the leader spreads their
/// partitions with the range or round-robin assignor.
struct ConsumerProtocol {
    topics: Vec<String>,
    assignors: Vec<Assignor>,
}

impl GroupProtocol for ConsumerProtocol {
    fn protocol_type(&self) -> &str {
        "consumer"
    }

    fn protocols(&self) -> Result<Vec<(String, Bytes)>> {
        let subscription = encode_versioned(
            &ConsumerProtocolSubscription::default().with_topics(
                self.topics
                    .iter()
                    .map(|t| StrBytes::from_string(t.clone()))
                    .collect(),
            ),
            0,
        )?;
        Ok(self
            .assignors
            .iter()
            .map(|a| (a.name().to_string(), subscription.clone()))
            .collect())
    }

    fn assign<'a>(
        &'a self,
        client: &'a Client,
        protocol: &'a str,
        members: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<BTreeMap<String, Bytes>>> {
        Box::pin(async move {
            let assignor = Assignor::parse(protocol).unwrap_or(self.assignors[0]);
            let mut subscriptions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (id, metadata) in members {
                let sub: ConsumerProtocolSubscription = decode_versioned(metadata.clone())
                    .map_err(|e| ClientError::Protocol {
                        addr: String::new(),
                        api: "JoinGroup".into(),
                        message: format!("subscription of member {id}: {e}"),
                    })?;
                subscriptions.insert(
                    id.clone(),
                    sub.topics.iter().map(|t| t.to_string()).collect(),
                );
            }
            let topics: Vec<String> = subscriptions
                .values()
                .flatten()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let md = client.metadata(Some(&topics)).await?;
            let counts: BTreeMap<String, i32> = md
                .topics
                .iter()
                .filter(|t| t.error.is_none())
                .map(|t| (t.name.clone(), t.partitions.len() as i32))
                .collect();
            let plan = match assignor {
                Assignor::Range => assign_range(&subscriptions, &counts),
                Assignor::RoundRobin => assign_round_robin(&subscriptions, &counts),
            };
            let mut out = BTreeMap::new();
            for (member, a) in plan {
                let data = ConsumerProtocolAssignment::default().with_assigned_partitions(
                    a.into_iter()
                        .map(|(t, ps)| {
                            AssignedTopic::default()
                                .with_topic(topic_name(&t))
                                .with_partitions(ps)
                        })
                        .collect(),
                );
                out.insert(member, encode_versioned(&data, 0)?);
            }
            Ok(out)
        })
    }
}

/// What a Heartbeat answer means for the member (an error code not about membership is
/// returned as is).
fn heartbeat_outcome(error_code: i16) -> std::result::Result<Heartbeat, KafkaCode> {
    match KafkaCode::from_code(error_code) {
        None => Ok(Heartbeat::Ok),
        Some(KafkaCode::REBALANCE_IN_PROGRESS) => Ok(Heartbeat::RebalanceNeeded),
        Some(KafkaCode::ILLEGAL_GENERATION) | Some(KafkaCode::UNKNOWN_MEMBER_ID) => {
            Ok(Heartbeat::Expired)
        }
        Some(code) => Err(code),
    }
}

/// Decodes a `consumer` protocol assignment into partitions per topic.
fn decode_consumer_assignment(raw: Bytes) -> std::result::Result<Assignment, String> {
    let a: ConsumerProtocolAssignment = decode_versioned(raw)?;
    Ok(a.assigned_partitions
        .into_iter()
        .map(|t| {
            let mut ps = t.partitions;
            ps.sort_unstable();
            (t.topic.0.to_string(), ps)
        })
        .collect())
}

impl Client {
    /// Joins `cfg.group` as a consumer and waits for this member's assignment.
    pub async fn join_group(&self, cfg: GroupConfig) -> Result<GroupMember> {
        if cfg.assignors.is_empty() {
            return Err(ClientError::Config(
                "a group member needs at least one assignor".into(),
            ));
        }
        let protocol = ConsumerProtocol {
            topics: cfg.topics,
            assignors: cfg.assignors,
        };
        let timeouts = GroupTimeouts {
            session: cfg.session_timeout,
            rebalance: cfg.rebalance_timeout,
        };
        self.join_group_with(cfg.group, Arc::new(protocol), timeouts)
            .await
    }

    /// Joins `group` with a protocol of the caller's and waits for this member's assignment
    /// ([`GroupMember::raw_assignment`]).
    pub async fn join_group_with(
        &self,
        group: impl Into<String>,
        protocol: Arc<dyn GroupProtocol>,
        timeouts: GroupTimeouts,
    ) -> Result<GroupMember> {
        let mut m = GroupMember {
            client: self.clone(),
            conn: tokio::sync::Mutex::new(None),
            group: group.into(),
            timeouts,
            protocol,
            member_id: String::new(),
            generation: -1,
            leader: false,
            raw_assignment: Bytes::new(),
            assignment: Assignment::new(),
        };
        m.rejoin().await?;
        Ok(m)
    }
}

impl Client {
    /// One Heartbeat for `member_id` of `group` in `generation`, over the client's own
    /// connection to the coordinator: lets a task check its worker is still a member in that
    /// generation (a fence) while the member itself is busy rejoining.
    pub async fn heartbeat_as(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
    ) -> Result<Heartbeat> {
        let conn = self.coordinator_conn(group).await?;
        let v = conn.version(ApiKey::Heartbeat)?;
        let req = HeartbeatRequest::default()
            .with_group_id(gid(group))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id.to_string()));
        let resp = conn.send(&req, v).await?;
        heartbeat_outcome(resp.error_code).map_err(|code| {
            ClientError::kafka("Heartbeat", group, code, None).with_addr(conn.addr())
        })
    }
}

impl GroupMember {
    /// Partitions assigned to this member (the `consumer` protocol; empty for others).
    pub fn assignment(&self) -> &Assignment {
        &self.assignment
    }

    /// The assignment bytes the leader sent this member, as sent.
    pub fn raw_assignment(&self) -> &Bytes {
        &self.raw_assignment
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The member id the coordinator gave.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The group generation of the current assignment.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Whether this member computed the assignment of the current generation.
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    async fn coordinator(&self) -> Result<Arc<Connection>> {
        let mut cur = self.conn.lock().await;
        if let Some(c) = cur.as_ref() {
            if c.is_alive() {
                return Ok(c.clone());
            }
        }
        let id = self.client.find_coordinator(&self.group).await?;
        let addr = crate::client::read(&self.client.inner.cache)
            .brokers
            .get(&id)
            .cloned()
            .ok_or_else(|| {
                ClientError::Metadata(format!("coordinator {id} is not in the cluster metadata"))
            })?;
        let c = Connection::connect(&addr, &self.client.inner.conn_cfg).await?;
        *cur = Some(c.clone());
        Ok(c)
    }

    /// Drops the coordinator connection after errors that mean it moved.
    async fn forget_coordinator(&self, e: &ClientError) {
        if e.is_network()
            || matches!(
                e.code(),
                Some(KafkaCode::NOT_COORDINATOR) | Some(KafkaCode::COORDINATOR_NOT_AVAILABLE)
            )
        {
            if let Some(c) = self.conn.lock().await.take() {
                c.close("coordinator moved");
            }
        }
    }

    fn err(&self, api: &str, code: KafkaCode, conn: &Connection) -> ClientError {
        ClientError::kafka(api, self.group.as_str(), code, None).with_addr(conn.addr())
    }

    /// (Re)joins the group: JoinGroup (twice when the coordinator first hands out a member
    /// id), the leader's assignment, SyncGroup.
    pub async fn rejoin(&mut self) -> Result<()> {
        let mut backoff = self.client.config().retry.start();
        loop {
            let e = match self.join_once().await {
                Ok(()) => return Ok(()),
                Err(e) if self.retry_join(&e) => e,
                Err(e) => return Err(e),
            };
            let Some(delay) = backoff.next_delay() else {
                return Err(e);
            };
            self.forget_coordinator(&e).await;
            debug!(group = %self.group, error = %e, ?delay, "rejoining");
            tokio::time::sleep(delay).await;
        }
    }

    fn retry_join(&mut self, e: &ClientError) -> bool {
        match e.code() {
            Some(KafkaCode::UNKNOWN_MEMBER_ID) | Some(KafkaCode::ILLEGAL_GENERATION) => {
                self.member_id.clear();
                self.generation = -1;
                true
            }
            Some(KafkaCode::REBALANCE_IN_PROGRESS) | Some(KafkaCode::MEMBER_ID_REQUIRED) => true,
            _ => e.is_retriable(),
        }
    }

    async fn join_once(&mut self) -> Result<()> {
        let conn = self.coordinator().await?;
        let jv = conn.version(ApiKey::JoinGroup)?;
        let protocols = self
            .protocol
            .protocols()?
            .into_iter()
            .map(|(name, metadata)| {
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_string(name))
                    .with_metadata(metadata)
            })
            .collect::<Vec<_>>();
        let protocol_type = self.protocol.protocol_type().to_string();
        let timeout = self.timeouts.rebalance + self.client.inner.cfg.request_timeout;
        let resp = loop {
            let mut req = JoinGroupRequest::default()
                .with_group_id(gid(&self.group))
                .with_session_timeout_ms(self.timeouts.session.as_millis() as i32)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_protocol_type(StrBytes::from_string(protocol_type.clone()))
                .with_protocols(protocols.clone());
            if jv >= 1 {
                req.rebalance_timeout_ms = self.timeouts.rebalance.as_millis() as i32;
            }
            let resp = conn.send_timeout(&req, jv, timeout).await?;
            match KafkaCode::from_code(resp.error_code) {
                // Since JoinGroup v4 the first join only hands out the member id.
                Some(KafkaCode::MEMBER_ID_REQUIRED) => {
                    self.member_id = resp.member_id.to_string();
                    continue;
                }
                Some(code) => return Err(self.err("JoinGroup", code, &conn)),
                None => break resp,
            }
        };
        self.member_id = resp.member_id.to_string();
        self.generation = resp.generation_id;
        self.leader = resp.leader.as_str() == resp.member_id.as_str();
        let protocol = resp
            .protocol_name
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();

        let mut assignments = Vec::new();
        if self.leader && !resp.skip_assignment {
            let members: Vec<(String, Bytes)> = resp
                .members
                .iter()
                .map(|m| (m.member_id.to_string(), m.metadata.clone()))
                .collect();
            let plan = self
                .protocol
                .assign(&self.client, &protocol, &members)
                .await
                .map_err(|e| e.with_addr(conn.addr()))?;
            for (member, data) in plan {
                assignments.push(
                    SyncGroupRequestAssignment::default()
                        .with_member_id(StrBytes::from_string(member))
                        .with_assignment(data),
                );
            }
        }
        let sv = conn.version(ApiKey::SyncGroup)?;
        let mut req = SyncGroupRequest::default()
            .with_group_id(gid(&self.group))
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_assignments(assignments);
        if sv >= 5 {
            req.protocol_type = Some(StrBytes::from_string(protocol_type.clone()));
            req.protocol_name = Some(StrBytes::from_string(protocol.clone()));
        }
        let resp = conn.send_timeout(&req, sv, timeout).await?;
        if let Some(code) = KafkaCode::from_code(resp.error_code) {
            return Err(self.err("SyncGroup", code, &conn));
        }
        self.raw_assignment = resp.assignment.clone();
        if protocol_type == "consumer" {
            self.assignment =
                decode_consumer_assignment(resp.assignment).map_err(|e| ClientError::Protocol {
                    addr: conn.addr().to_string(),
                    api: "SyncGroup".into(),
                    message: format!("assignment: {e}"),
                })?;
        }
        debug!(group = %self.group, member = %self.member_id, generation = self.generation, ?self.assignment, "joined");
        Ok(())
    }

    /// Tells the coordinator this member is alive.
    pub async fn heartbeat(&self) -> Result<Heartbeat> {
        let res = self.heartbeat_once().await;
        if let Err(e) = &res {
            self.forget_coordinator(e).await;
        }
        res
    }

    async fn heartbeat_once(&self) -> Result<Heartbeat> {
        let conn = self.coordinator().await?;
        let v = conn.version(ApiKey::Heartbeat)?;
        let req = HeartbeatRequest::default()
            .with_group_id(gid(&self.group))
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()));
        let resp = conn.send(&req, v).await?;
        heartbeat_outcome(resp.error_code).map_err(|code| self.err("Heartbeat", code, &conn))
    }

    /// Commits offsets as this member (its generation and member id).
    pub async fn commit(&self, offsets: &BTreeMap<(String, i32), i64>) -> Result<()> {
        self.client
            .offset_commit_as(&self.group, self.generation, &self.member_id, offsets)
            .await
    }

    /// Leaves the group, so the others rebalance at once instead of after the session timeout.
    pub async fn leave(self) -> Result<()> {
        let conn = self.coordinator().await?;
        let v = conn.version(ApiKey::LeaveGroup)?;
        let mut req = LeaveGroupRequest::default().with_group_id(gid(&self.group));
        if v >= 3 {
            req.members = vec![MemberIdentity::default()
                .with_member_id(StrBytes::from_string(self.member_id.clone()))];
        } else {
            req.member_id = StrBytes::from_string(self.member_id.clone());
        }
        let resp = conn.send(&req, v).await?;
        let code = KafkaCode::from_code(resp.error_code).or_else(|| {
            resp.members
                .iter()
                .find_map(|m| KafkaCode::from_code(m.error_code))
        });
        match code {
            None | Some(KafkaCode::UNKNOWN_MEMBER_ID) => Ok(()),
            Some(code) => Err(self.err("LeaveGroup", code, &conn)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(spec: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        spec.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn counts(spec: &[(&str, i32)]) -> BTreeMap<String, i32> {
        spec.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn range_like_kafka() {
        // Kafka's RangeAssignor docs: t0, t1 with 3 partitions each, C0 and C1.
        let a = assign_range(
            &members(&[("C0", &["t0", "t1"]), ("C1", &["t0", "t1"])]),
            &counts(&[("t0", 3), ("t1", 3)]),
        );
        assert_eq!(
            a["C0"],
            BTreeMap::from([("t0".into(), vec![0, 1]), ("t1".into(), vec![0, 1])])
        );
        assert_eq!(
            a["C1"],
            BTreeMap::from([("t0".into(), vec![2]), ("t1".into(), vec![2])])
        );
        // More members than partitions: the last gets nothing.
        let a = assign_range(
            &members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]),
            &counts(&[("t", 2)]),
        );
        assert_eq!(a["a"]["t"], vec![0]);
        assert_eq!(a["b"]["t"], vec![1]);
        assert!(a["c"].is_empty());
    }

    #[test]
    fn round_robin_like_kafka() {
        // Kafka's RoundRobinAssignor docs: C0: t0p0, t0p2, t1p1; C1: t0p1, t1p0, t1p2.
        let a = assign_round_robin(
            &members(&[("C0", &["t0", "t1"]), ("C1", &["t0", "t1"])]),
            &counts(&[("t0", 3), ("t1", 3)]),
        );
        assert_eq!(
            a["C0"],
            BTreeMap::from([("t0".into(), vec![0, 2]), ("t1".into(), vec![1])])
        );
        assert_eq!(
            a["C1"],
            BTreeMap::from([("t0".into(), vec![1]), ("t1".into(), vec![0, 2])])
        );
        // Members only get topics they subscribe to.
        let a = assign_round_robin(
            &members(&[("a", &["t0"]), ("b", &["t0", "t1"])]),
            &counts(&[("t0", 2), ("t1", 2)]),
        );
        assert_eq!(a["a"], BTreeMap::from([("t0".into(), vec![0])]));
        assert_eq!(
            a["b"],
            BTreeMap::from([("t0".into(), vec![1]), ("t1".into(), vec![0, 1])])
        );
    }

    #[test]
    fn consumer_protocol_round_trip() {
        let sub = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("orders")]);
        let b = encode_versioned(&sub, 0).unwrap();
        assert_eq!(&b[..2], &[0, 0]);
        let back: ConsumerProtocolSubscription = decode_versioned(b).unwrap();
        assert_eq!(back.topics, sub.topics);
        assert!(decode_versioned::<ConsumerProtocolAssignment>(Bytes::from_static(&[0])).is_err());
        assert!(decode_versioned::<ConsumerProtocolAssignment>(Bytes::new())
            .unwrap()
            .assigned_partitions
            .is_empty());
    }
}
