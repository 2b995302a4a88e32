//! Consumer-group offsets and admin APIs: coordinators, offset fetch/commit, group listing,
//! topic creation/deletion, configs, DeleteRecords, CreatePartitions.

use crate::client::{opt_uuid, read, topic_name, write, Client};
use crate::conn::Connection;
use crate::error::{ClientError, KafkaCode, Result};
use futures::future::join_all;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest, FindCoordinatorRequest,
    GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partitions (-1: the broker default).
    pub partitions: i32,
    /// Replication factor (-1: the broker default).
    pub replication_factor: i16,
    /// Topic configs (`cleanup.policy`, `retention.ms`, …).
    pub configs: BTreeMap<String, String>,
}

/// What happened to one topic of a CreateTopics call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicResult {
    /// The topic was created.
    Created,
    /// A topic of that name already existed (TOPIC_ALREADY_EXISTS); nothing was changed.
    AlreadyExists,
}

/// One config of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Config name.
    pub name: String,
    /// Value (`None` for sensitive configs or null values).
    pub value: Option<String>,
    /// Not set on the topic itself (broker default or broker-level override).
    pub is_default: bool,
    /// Cannot be changed.
    pub read_only: bool,
    /// Sensitive: the broker does not reveal the value.
    pub sensitive: bool,
    /// Kafka's config source (1 = set on the topic, 4 = static broker config, 5 = default, …).
    pub source: i8,
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    /// Group id.
    pub group: String,
    /// Protocol type (`consumer` for consumer groups).
    pub protocol_type: String,
    /// State, when the broker reports it (ListGroups v4+).
    pub state: Option<String>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group: String,
    /// State (`Empty`, `Stable`, `Dead`, …).
    pub state: String,
    /// Number of members.
    pub members: usize,
    /// Protocol type.
    pub protocol_type: String,
}

fn group_id(g: &str) -> GroupId {
    GroupId(StrBytes::from_string(g.to_string()))
}

fn kerr(
    api: &str,
    ctx: impl Into<String>,
    code: i16,
    msg: Option<StrBytes>,
    conn: &Connection,
) -> Option<ClientError> {
    KafkaCode::from_code(code)
        .map(|c| ClientError::kafka(api, ctx, c, msg.map(|m| m.to_string())).with_addr(conn.addr()))
}

impl Client {
    /// Connection to a broker given by id, host and port (adds it to the cache if new).
    async fn conn_to(&self, id: i32, host: &str, port: i32) -> Result<Arc<Connection>> {
        {
            let mut c = write(&self.inner.cache);
            c.brokers
                .entry(id)
                .or_insert_with(|| crate::client::format_addr(host, port));
        }
        self.conn(id).await
    }

    /// Connection to the controller (fresh metadata each time: admin calls are rare).
    async fn controller_conn(&self) -> Result<Arc<Connection>> {
        let md = self.metadata(Some(&[])).await?;
        if md.controller_id < 0 {
            return self.any_conn().await;
        }
        self.conn(md.controller_id).await
    }

    /// The broker coordinating `group`.
    pub async fn find_coordinator(&self, group: &str) -> Result<i32> {
        self.retry("FindCoordinator", || async {
            let conn = self.any_conn().await?;
            let v = conn.version(ApiKey::FindCoordinator)?;
            let mut req = FindCoordinatorRequest::default().with_key_type(0);
            if v >= 4 {
                req.coordinator_keys = vec![StrBytes::from_string(group.to_string())];
            } else {
                req.key = StrBytes::from_string(group.to_string());
            }
            let resp = conn.send(&req, v).await?;
            let (id, host, port, code, msg) =
                if v >= 4 {
                    let c = resp.coordinators.into_iter().next().ok_or_else(|| {
                        ClientError::Protocol {
                            addr: conn.addr().to_string(),
                            api: "FindCoordinator".into(),
                            message: "no coordinator in the answer".into(),
                        }
                    })?;
                    (c.node_id.0, c.host, c.port, c.error_code, c.error_message)
                } else {
                    (
                        resp.node_id.0,
                        resp.host,
                        resp.port,
                        resp.error_code,
                        resp.error_message,
                    )
                };
            if let Some(e) = kerr("FindCoordinator", group, code, msg, &conn) {
                return Err(e);
            }
            {
                let mut c = write(&self.inner.cache);
                c.brokers
                    .entry(id)
                    .or_insert_with(|| crate::client::format_addr(&host, port));
            }
            Ok(id)
        })
        .await
    }

    pub(crate) async fn coordinator_conn(&self, group: &str) -> Result<Arc<Connection>> {
        let id = self.find_coordinator(group).await?;
        let addr = read(&self.inner.cache).brokers.get(&id).cloned();
        match addr {
            Some(_) => self.conn(id).await,
            None => self.conn_to(id, "", 0).await,
        }
    }

    /// Committed offsets of `group` (for `topics`, or every topic it committed when `None`).
    /// Partitions without a committed offset are left out.
    pub async fn offset_fetch(
        &self,
        group: &str,
        topics: Option<&[String]>,
    ) -> Result<BTreeMap<(String, i32), i64>> {
        // With explicit topics older versions need the partition list.
        let mut wanted: Option<Vec<(String, Vec<i32>)>> = None;
        if let Some(ts) = topics {
            let mut w = Vec::new();
            for t in ts {
                let meta = self.topic_meta(t).await?;
                w.push((t.clone(), meta.partitions.iter().map(|p| p.id).collect()));
            }
            wanted = Some(w);
        }
        self.retry("OffsetFetch", || async {
            let conn = self.coordinator_conn(group).await?;
            // v10 names topics by id only; 9 keeps names.
            let v = conn.version_capped(ApiKey::OffsetFetch, 9)?;
            let mut out = BTreeMap::new();
            // One partition's answer, the same in both request shapes.
            let take = |out: &mut BTreeMap<(String, i32), i64>,
                        topic: &str,
                        partition: i32,
                        code: i16,
                        committed: i64|
             -> Result<()> {
                if let Some(e) = kerr(
                    "OffsetFetch",
                    format!("{group} {topic}/{partition}"),
                    code,
                    None,
                    &conn,
                ) {
                    return Err(e);
                }
                if committed >= 0 {
                    out.insert((topic.to_string(), partition), committed);
                }
                Ok(())
            };
            if v >= 8 {
                let g = OffsetFetchRequestGroup::default()
                    .with_group_id(group_id(group))
                    .with_topics(wanted.as_ref().map(|w| {
                        w.iter()
                            .map(|(t, ps)| {
                                OffsetFetchRequestTopics::default()
                                    .with_name(topic_name(t))
                                    .with_partition_indexes(ps.clone())
                            })
                            .collect()
                    }));
                let req = OffsetFetchRequest::default().with_groups(vec![g]);
                let resp = conn.send(&req, v).await?;
                for g in resp.groups {
                    if let Some(e) = kerr("OffsetFetch", group, g.error_code, None, &conn) {
                        return Err(e);
                    }
                    for t in g.topics {
                        for p in t.partitions {
                            take(
                                &mut out,
                                &t.name.0,
                                p.partition_index,
                                p.error_code,
                                p.committed_offset,
                            )?;
                        }
                    }
                }
            } else {
                let req = OffsetFetchRequest::default()
                    .with_group_id(group_id(group))
                    .with_topics(wanted.as_ref().map(|w| {
                        w.iter()
                            .map(|(t, ps)| {
                                OffsetFetchRequestTopic::default()
                                    .with_name(topic_name(t))
                                    .with_partition_indexes(ps.clone())
                            })
                            .collect()
                    }));
                let resp = conn.send(&req, v).await?;
                if let Some(e) = kerr("OffsetFetch", group, resp.error_code, None, &conn) {
                    return Err(e);
                }
                for t in resp.topics {
                    for p in t.partitions {
                        take(
                            &mut out,
                            &t.name.0,
                            p.partition_index,
                            p.error_code,
                            p.committed_offset,
                        )?;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Commits `offsets` for `group` as an admin would: generation -1 and no member id, which
    /// Kafka accepts for a group without active members.
    pub async fn offset_commit(
        &self,
        group: &str,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<()> {
        self.offset_commit_as(group, -1, "", offsets).await
    }

    /// Commits `offsets` for `group` as the member `member_id` of `generation`.
    pub(crate) async fn offset_commit_as(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<()> {
        let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
        for ((t, p), o) in offsets {
            let part = OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(StrBytes::new()));
            match topics.iter_mut().find(|x| x.name.0.as_str() == t) {
                Some(x) => x.partitions.push(part),
                None => topics.push(
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(vec![part]),
                ),
            }
        }
        self.retry("OffsetCommit", || async {
            let conn = self.coordinator_conn(group).await?;
            let v = conn.version_capped(ApiKey::OffsetCommit, 9)?;
            let mut req = OffsetCommitRequest::default()
                .with_group_id(group_id(group))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(StrBytes::from_string(member_id.to_string()))
                .with_topics(topics.clone());
            if v <= 4 {
                req.retention_time_ms = -1;
            }
            let resp = conn.send(&req, v).await?;
            for t in resp.topics {
                for p in t.partitions {
                    if let Some(e) = kerr(
                        "OffsetCommit",
                        format!("{group} {}/{}", t.name.0, p.partition_index),
                        p.error_code,
                        None,
                        &conn,
                    ) {
                        return Err(e);
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// Every group of the cluster (each broker lists the groups it coordinates).
    pub async fn list_groups(&self) -> Result<Vec<ListedGroup>> {
        let md = self.metadata(Some(&[])).await?;
        let futs = md.brokers.iter().map(|b| async move {
            let conn = self.conn(b.id).await?;
            let v = conn.version(ApiKey::ListGroups)?;
            let resp = conn.send(&ListGroupsRequest::default(), v).await?;
            if let Some(e) = kerr("ListGroups", "", resp.error_code, None, &conn) {
                return Err(e);
            }
            Ok(resp
                .groups
                .into_iter()
                .map(|g| ListedGroup {
                    group: g.group_id.0.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    state: (v >= 4).then(|| g.group_state.to_string()),
                })
                .collect::<Vec<_>>())
        });
        let mut out = Vec::new();
        for r in join_all(futs).await {
            out.extend(r?);
        }
        out.sort_by(|a, b| a.group.cmp(&b.group));
        out.dedup_by(|a, b| a.group == b.group);
        Ok(out)
    }

    /// State, member count and protocol type of `groups` (each asked of its coordinator).
    pub async fn describe_groups(&self, groups: &[String]) -> Result<Vec<GroupDescription>> {
        let mut out = Vec::new();
        for g in groups {
            let d = self
                .retry("DescribeGroups", || async {
                    let conn = self.coordinator_conn(g).await?;
                    let v = conn.version(ApiKey::DescribeGroups)?;
                    let resp = conn
                        .send(
                            &DescribeGroupsRequest::default().with_groups(vec![group_id(g)]),
                            v,
                        )
                        .await?;
                    let d =
                        resp.groups
                            .into_iter()
                            .next()
                            .ok_or_else(|| ClientError::Protocol {
                                addr: conn.addr().to_string(),
                                api: "DescribeGroups".into(),
                                message: format!("no answer for group {g}"),
                            })?;
                    if let Some(e) = kerr(
                        "DescribeGroups",
                        g.as_str(),
                        d.error_code,
                        d.error_message.clone(),
                        &conn,
                    ) {
                        return Err(e);
                    }
                    Ok(GroupDescription {
                        group: d.group_id.0.to_string(),
                        state: d.group_state.to_string(),
                        members: d.members.len(),
                        protocol_type: d.protocol_type.to_string(),
                    })
                })
                .await?;
            out.push(d);
        }
        Ok(out)
    }

    /// Creates topics. TOPIC_ALREADY_EXISTS comes back as [`TopicResult::AlreadyExists`];
    /// other errors fail the call, naming the topic.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<Vec<(String, TopicResult)>> {
        let res = self
            .retry("CreateTopics", || async {
                let conn = self.controller_conn().await?;
                let v = conn.version(ApiKey::CreateTopics)?;
                let req = CreateTopicsRequest::default()
                    .with_timeout_ms(
                        self.inner
                            .cfg
                            .request_timeout
                            .as_millis()
                            .min(i32::MAX as u128) as i32,
                    )
                    .with_validate_only(false)
                    .with_topics(
                        topics
                            .iter()
                            .map(|t| {
                                CreatableTopic::default()
                                    .with_name(topic_name(&t.name))
                                    .with_num_partitions(t.partitions)
                                    .with_replication_factor(t.replication_factor)
                                    .with_configs(
                                        t.configs
                                            .iter()
                                            .map(|(k, v)| {
                                                CreatableTopicConfig::default()
                                                    .with_name(StrBytes::from_string(k.clone()))
                                                    .with_value(Some(StrBytes::from_string(
                                                        v.clone(),
                                                    )))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    );
                let resp = conn.send(&req, v).await?;
                let mut out = Vec::new();
                for t in resp.topics {
                    let name = t.name.0.to_string();
                    match KafkaCode::from_code(t.error_code) {
                        None => out.push((name, TopicResult::Created)),
                        Some(KafkaCode::TOPIC_ALREADY_EXISTS) => {
                            out.push((name, TopicResult::AlreadyExists))
                        }
                        Some(code) => {
                            return Err(ClientError::kafka(
                                "CreateTopics",
                                name,
                                code,
                                t.error_message.map(|m| m.to_string()),
                            )
                            .with_addr(conn.addr()))
                        }
                    }
                }
                Ok(out)
            })
            .await;
        self.invalidate_metadata();
        res
    }

    /// Deletes topics.
    pub async fn delete_topics(&self, topics: &[String]) -> Result<()> {
        let res = self
            .retry("DeleteTopics", || async {
                let conn = self.controller_conn().await?;
                let v = conn.version(ApiKey::DeleteTopics)?;
                let mut req = DeleteTopicsRequest::default().with_timeout_ms(
                    self.inner
                        .cfg
                        .request_timeout
                        .as_millis()
                        .min(i32::MAX as u128) as i32,
                );
                if v >= 6 {
                    req.topics = topics
                        .iter()
                        .map(|t| DeleteTopicState::default().with_name(Some(topic_name(t))))
                        .collect();
                } else {
                    req.topic_names = topics.iter().map(|t| topic_name(t)).collect();
                }
                let resp = conn.send(&req, v).await?;
                for r in resp.responses {
                    let name = r
                        .name
                        .map(|n| n.0.to_string())
                        .or_else(|| opt_uuid(r.topic_id).map(|u| u.to_string()))
                        .unwrap_or_default();
                    if let Some(e) =
                        kerr("DeleteTopics", name, r.error_code, r.error_message, &conn)
                    {
                        return Err(e);
                    }
                }
                Ok(())
            })
            .await;
        self.invalidate_metadata();
        res
    }

    /// Configs of `topic` as the broker resolves them (defaults included, flagged).
    pub async fn describe_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>> {
        self.retry("DescribeConfigs", || async {
            let conn = self.any_conn().await?;
            let v = conn.version(ApiKey::DescribeConfigs)?;
            let req = DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(topic.to_string()))
                    .with_configuration_keys(None),
            ]);
            let resp = conn.send(&req, v).await?;
            let mut out = Vec::new();
            for r in resp.results {
                if let Some(e) = kerr(
                    "DescribeConfigs",
                    topic,
                    r.error_code,
                    r.error_message,
                    &conn,
                ) {
                    return Err(e);
                }
                for c in r.configs {
                    out.push(ConfigEntry {
                        name: c.name.to_string(),
                        value: c.value.map(|s| s.to_string()),
                        is_default: c.config_source != 1,
                        read_only: c.read_only,
                        sensitive: c.is_sensitive,
                        source: c.config_source,
                    });
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    /// Deletes records below the given offset of each partition (what retention does);
    /// returns the new low watermark per partition.
    pub async fn delete_records(
        &self,
        topic: &str,
        offsets: &BTreeMap<i32, i64>,
    ) -> Result<BTreeMap<i32, i64>> {
        let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
        for (p, o) in offsets {
            let l = self
                .retry("DeleteRecords", || self.leader(topic, *p))
                .await?;
            by_leader.entry(l).or_default().push((*p, *o));
        }
        let futs = by_leader.into_iter().map(|(leader, parts)| async move {
            let conn = self.conn(leader).await?;
            let v = conn.version(ApiKey::DeleteRecords)?;
            let req = DeleteRecordsRequest::default()
                .with_timeout_ms(
                    self.inner
                        .cfg
                        .request_timeout
                        .as_millis()
                        .min(i32::MAX as u128) as i32,
                )
                .with_topics(vec![DeleteRecordsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|(p, o)| {
                                DeleteRecordsPartition::default()
                                    .with_partition_index(*p)
                                    .with_offset(*o)
                            })
                            .collect(),
                    )]);
            let resp = conn.send(&req, v).await?;
            let mut out = Vec::new();
            for t in resp.topics {
                for p in t.partitions {
                    if let Some(e) = kerr(
                        "DeleteRecords",
                        format!("{topic}/{}", p.partition_index),
                        p.error_code,
                        None,
                        &conn,
                    ) {
                        return Err(e);
                    }
                    out.push((p.partition_index, p.low_watermark));
                }
            }
            Ok(out)
        });
        let mut out = BTreeMap::new();
        for r in join_all(futs).await {
            out.extend(r?);
        }
        Ok(out)
    }

    /// Grows `topic` to `total_partitions` partitions.
    pub async fn create_partitions(&self, topic: &str, total_partitions: i32) -> Result<()> {
        let res = self
            .retry("CreatePartitions", || async {
                let conn = self.controller_conn().await?;
                let v = conn.version(ApiKey::CreatePartitions)?;
                let req = CreatePartitionsRequest::default()
                    .with_timeout_ms(
                        self.inner
                            .cfg
                            .request_timeout
                            .as_millis()
                            .min(i32::MAX as u128) as i32,
                    )
                    .with_validate_only(false)
                    .with_topics(vec![CreatePartitionsTopic::default()
                        .with_name(topic_name(topic))
                        .with_count(total_partitions)
                        .with_assignments(None)]);
                let resp = conn.send(&req, v).await?;
                for r in resp.results {
                    if let Some(e) = kerr(
                        "CreatePartitions",
                        topic,
                        r.error_code,
                        r.error_message,
                        &conn,
                    ) {
                        return Err(e);
                    }
                }
                Ok(())
            })
            .await;
        self.invalidate_metadata();
        res
    }
}

/// Offsets of one partition, as `ferry topics` prints them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionOffsets {
    /// Partition number.
    pub partition: i32,
    /// Log start offset.
    pub earliest: i64,
    /// High watermark (the offset the next record gets).
    pub latest: i64,
}

/// A topic with the offsets of its partitions, as `ferry topics` prints them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicOffsets {
    /// Topic name.
    pub topic: String,
    /// Kafka's internal topics (`__consumer_offsets`, …); serialized only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// Partitions in order.
    pub partitions: Vec<PartitionOffsets>,
}

impl Client {
    /// Every topic (internal ones included and marked) with the earliest and latest offset
    /// of each partition, sorted by name. Topics are asked concurrently.
    pub async fn topic_offsets(&self) -> Result<Vec<TopicOffsets>> {
        let md = self.metadata(None).await?;
        let futs = md.topics.iter().map(|t| async move {
            let parts: Vec<i32> = t.partitions.iter().map(|p| p.id).collect();
            let earliest = self
                .list_offsets(&t.name, &parts, crate::OffsetSpec::Earliest)
                .await?;
            let latest = self
                .list_offsets(&t.name, &parts, crate::OffsetSpec::Latest)
                .await?;
            Ok::<_, ClientError>(TopicOffsets {
                topic: t.name.clone(),
                internal: t.is_internal || t.name.starts_with("__"),
                partitions: parts
                    .iter()
                    .map(|p| PartitionOffsets {
                        partition: *p,
                        earliest: earliest.get(p).copied().unwrap_or(-1),
                        latest: latest.get(p).copied().unwrap_or(-1),
                    })
                    .collect(),
            })
        });
        let mut out = Vec::new();
        for r in join_all(futs).await {
            out.push(r?);
        }
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        Ok(out)
    }
}
