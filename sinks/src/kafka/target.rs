//! What the target cluster already holds for the topics a restore writes, looked at before
//! anything is produced, and the rules that refuse a restore which would silently mix its
//! records with data it did not write.
//!
//! The rules (each refusal names the topic and what to do):
//! - a target topic that exists and holds records this restore did not write is refused
//!   unless `allow_existing` (`--allow-existing`) says to append after them; the restore's
//!   own records (its offset map says where it started) never count against it, so a
//!   resumed restore continues;
//! - under `partitioning: preserve`, a target topic with fewer partitions than the backup's
//!   partitions need is refused, naming both counts;
//! - a target topic that stamps records with the broker's clock
//!   (`message.timestamp.type=LogAppendTime`) is refused: every restored record would get
//!   the time of the restore. Topics the sink creates are created as CreateTime instead
//!   (carrying the original times, append times included), which the plan says.

use super::{kerr, Partitioning};
use ferry_core::{Error, Result, TopicSettings};
use ferry_kafka::{NewTopic, OffsetSpec, TopicResult};
use std::collections::BTreeMap;

/// Kafka's topic config naming whose clock stamps records.
pub const TIMESTAMP_TYPE: &str = "message.timestamp.type";
/// The value of [`TIMESTAMP_TYPE`] under which the broker stamps records itself.
pub const LOG_APPEND_TIME: &str = "LogAppendTime";

/// What the target holds for one topic the restore writes, and what the restore would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TargetTopic {
    /// Topic name on the target (after any rename).
    pub topic: String,
    /// Whether the topic exists on the target.
    pub exists: bool,
    /// Its partition count on the target (0 when it does not exist).
    pub partitions: i32,
    /// Records (offsets between the log start and the end) per target partition.
    pub records: BTreeMap<i32, i64>,
    /// Of those, the records this restore did not write (its offset map knows the rest).
    pub foreign_records: i64,
    /// The records this restore wrote in an earlier run (resumed now).
    pub own_records: i64,
    /// The target topic stamps records with the broker's clock.
    pub log_append_time: bool,
    /// Partition count of the backed-up topic, when the backup says.
    pub source_partitions: Option<i32>,
    /// Partitions the target needs under `preserve` (highest mapped partition + 1).
    pub needed_partitions: Option<i32>,
    /// Partitions the sink would create the topic with (when it does not exist).
    pub create_partitions: Option<i32>,
    /// The backed-up topic was LogAppendTime: the created topic is CreateTime instead,
    /// carrying the original append times.
    pub created_as_create_time: bool,
}

impl TargetTopic {
    /// Records on the target in all partitions.
    pub fn total_records(&self) -> i64 {
        self.records.values().sum()
    }

    /// `partition 0: 10, partition 1: 12` (partitions holding records only).
    pub fn records_by_partition(&self) -> String {
        let parts: Vec<String> = self
            .records
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(p, n)| format!("partition {p}: {n}"))
            .collect();
        parts.join(", ")
    }

    /// One line for a restore plan: what the restore finds and will do with this topic.
    pub fn plan_note(&self, allow_existing: bool) -> String {
        if !self.exists {
            let mut note = match self.create_partitions {
                Some(n) => format!("new: created with {n} partition(s)"),
                None => "new: created".to_string(),
            };
            if self.created_as_create_time {
                note.push_str(
                    ", as CreateTime carrying the original append times (the backed-up topic was LogAppendTime)",
                );
            }
            return note;
        }
        let mut parts = Vec::new();
        if self.own_records > 0 {
            parts.push(format!(
                "resuming: {} record(s) written by this restore",
                self.own_records
            ));
        }
        if self.foreign_records > 0 {
            parts.push(if allow_existing {
                format!("appending to {} existing record(s)", self.foreign_records)
            } else {
                format!(
                    "REFUSED: holds {} record(s) this restore did not write",
                    self.foreign_records
                )
            });
        }
        if parts.is_empty() {
            parts.push("exists, empty".to_string());
        }
        parts.join("; ")
    }

    /// Why the restore must not write to this topic, if it must not (every reason).
    pub fn refusals(&self, allow_existing: bool, brokers: &str) -> Vec<String> {
        let mut out = Vec::new();
        let topic = &self.topic;
        if self.exists && self.foreign_records > 0 && !allow_existing {
            out.push(format!(
                "target topic '{topic}' already exists on {brokers} and holds {} record(s) this \
                 restore did not write ({}): the restore would append the backup after them. \
                 Restore under another name (--rename {topic}=NEW), delete the topic, or \
                 append on purpose with --allow-existing (`allow_existing: true` on the kafka \
                 sink). If an earlier restore wrote them, run it again with the same backup, \
                 topics, renames, range, target and partitioning (or the same --name and \
                 --state) to resume it",
                self.foreign_records,
                self.records_by_partition()
            ));
        }
        if let Some(needed) = self.needed_partitions {
            if self.exists && self.partitions < needed {
                out.push(format!(
                    "target topic '{topic}' has {} partition(s), but the backup's topic has {} \
                     and partitioning is preserve (records keep their partition): add \
                     partitions to the target (to {needed}), map them (partition_map), or \
                     re-partition by key (--partitioning murmur2)",
                    self.partitions,
                    self.source_partitions
                        .map_or_else(|| needed.to_string(), |n| n.to_string()),
                ));
            }
        }
        if self.exists && self.log_append_time {
            out.push(format!(
                "target topic '{topic}' has {TIMESTAMP_TYPE}={LOG_APPEND_TIME}: the broker would \
                 stamp every restored record with the time of the restore and the original times \
                 would be lost. Set it to CreateTime first (kafka-configs --alter --entity-type \
                 topics --entity-name {topic} --add-config {TIMESTAMP_TYPE}=CreateTime), or \
                 restore into a topic Ferry creates (--rename {topic}=NEW), which it creates as \
                 CreateTime"
            ));
        }
        out
    }
}

/// Topics per CreateTopics request when a restore creates its topics up front: Kafka takes
/// many in one request; a bound keeps one request's size and the controller's work sane.
pub const CREATE_TOPICS_PER_REQUEST: usize = 200;

/// Waits until every partition of `topics` (`partitions` in all) has a leader (they take a
/// moment after creation), polling the metadata of all of them at once; returns their
/// partition counts.
async fn wait_for_leaders(
    client: &ferry_kafka::Client,
    topics: &[String],
    partitions: u64,
) -> Result<BTreeMap<String, i32>> {
    let mut counts = BTreeMap::new();
    client.invalidate_metadata();
    // Thousands of new partitions take the broker a while: 5 s at least, 5 ms per
    // partition created (a 6,000-partition restore gave up after about 6 s).
    let wait =
        std::time::Duration::from_secs(5).max(std::time::Duration::from_millis(5 * partitions));
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        let md = client.metadata(Some(topics)).await.map_err(kerr)?;
        counts.clear();
        for t in topics {
            if let Some(m) = md.topic(t) {
                if !m.partitions.is_empty() && m.partitions.iter().all(|p| p.leader >= 0) {
                    counts.insert(t.clone(), m.partitions.len() as i32);
                }
            }
        }
        if counts.len() == topics.len() {
            return wait_until_served(client, &counts).await.map(|()| counts);
        }
        client.invalidate_metadata();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let waiting: Vec<&String> = topics.iter().filter(|t| !counts.contains_key(*t)).collect();
    Err(Error::connection(
        "kafka",
        true,
        format!("topic(s) {waiting:?} were created but have no leaders yet"),
    ))
}

/// Waits until the leader of every partition of `counts` answers ListOffsets. A leader in
/// the metadata is not yet a leader that serves: a broker creating thousands of partitions
/// at once answers NOT_LEADER_OR_FOLLOWER for a while after the metadata names it (seen with
/// 6,000 partitions on one busy node), and the restore's first ListOffsets would give up.
/// Waits up to 30 s, or 20 ms per partition when that is longer.
async fn wait_until_served(
    client: &ferry_kafka::Client,
    counts: &BTreeMap<String, i32>,
) -> Result<()> {
    let total: u64 = counts.values().map(|n| (*n).max(0) as u64).sum();
    let wait = std::time::Duration::from_secs(30).max(std::time::Duration::from_millis(20 * total));
    let deadline = std::time::Instant::now() + wait;
    for (topic, n) in counts {
        let partitions: Vec<i32> = (0..*n).collect();
        loop {
            match client
                .list_offsets(topic, &partitions, OffsetSpec::Latest)
                .await
            {
                Ok(_) => break,
                Err(e) if e.is_retriable() && std::time::Instant::now() < deadline => {
                    tracing::debug!(topic, error = %e, "created topic not served yet");
                    client.invalidate_metadata();
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => return Err(kerr(e)),
            }
        }
    }
    Ok(())
}

/// Records per partition between the log start and the end, and how many of them this
/// restore wrote, given where it found each partition's end when it first wrote to it
/// (`bases`, empty when it never did).
pub fn split_records(
    starts: &BTreeMap<i32, i64>,
    ends: &BTreeMap<i32, i64>,
    bases: Option<&BTreeMap<i32, i64>>,
) -> (BTreeMap<i32, i64>, i64, i64) {
    let mut records = BTreeMap::new();
    let (mut foreign, mut own) = (0, 0);
    for (p, end) in ends {
        let start = starts.get(p).copied().unwrap_or(0).min(*end);
        records.insert(*p, end - start);
        match bases {
            // Below the base: there before this restore began; from it on: this restore's.
            Some(b) => {
                let base = b.get(p).copied().unwrap_or(start).clamp(start, *end);
                foreign += base - start;
                own += end - base;
            }
            None => foreign += end - start,
        }
    }
    (records, foreign, own)
}

/// Target topics: created when missing, checked before the first write.
impl super::KafkaSink {
    /// Makes sure a topic exists on the target and returns its partition count.
    pub(super) async fn ensure_topic(&mut self, topic: &str, min_partition: i32) -> Result<i32> {
        if let Some(n) = self.topics.get(topic) {
            return Ok(*n);
        }
        if !self.checked.contains(topic) {
            self.check_targets(&[topic.to_string()]).await?;
        }
        let client = self.client().await?;
        let md = client
            .metadata(Some(&[topic.to_string()]))
            .await
            .map_err(kerr)?;
        let existing = md
            .topic(topic)
            .filter(|t| t.error.is_none() && !t.partitions.is_empty())
            .map(|t| t.partitions.len() as i32);
        let count = match existing {
            Some(n) => n,
            None if self.config.create_topics => {
                let new = self.new_topic(topic, min_partition)?;
                let partitions = new.partitions;
                match client.create_topics(&[new]).await.map_err(kerr)?.first() {
                    Some((_, TopicResult::Created)) => {
                        tracing::info!(topic, partitions, "created topic on the target")
                    }
                    _ => tracing::info!(topic, "topic already exists on the target"),
                }
                let counts =
                    wait_for_leaders(&client, &[topic.to_string()], partitions.max(0) as u64)
                        .await?;
                counts.get(topic).copied().unwrap_or(0)
            }
            None => {
                return Err(Error::config(format!(
                    "topic '{topic}' does not exist on the target and create_topics is off: create it first"
                )))
            }
        };
        if self.state.is_some() && !self.map.has_base(topic) {
            // Remember where the target stood before this restore writes to it, and save
            // that before producing: records that land before the next save are then still
            // recognised on resume.
            let partitions: Vec<i32> = (0..count).collect();
            let ends = client
                .list_offsets(topic, &partitions, OffsetSpec::Latest)
                .await
                .map_err(kerr)?;
            for (p, end) in ends {
                self.map.set_base(topic, p, end);
            }
            self.save_map().await?;
        }
        self.topics.insert(topic.to_string(), count);
        Ok(count)
    }

    /// The topic the sink creates for `topic` (partitions from `partitions` or the source,
    /// the source's configs with `topic_configs` applied, CreateTime instead of
    /// LogAppendTime). `min_partition` is only for the message when the count is unknown.
    fn new_topic(&self, topic: &str, min_partition: i32) -> Result<NewTopic> {
        let src = self.source_topics.get(topic);
        let Some(partitions) = self.config.partitions.or(src.map(|s| s.partitions)) else {
            return Err(Error::config(format!(
                "topic '{topic}' does not exist on the target and the source does not say \
                 how many partitions it had (partition {min_partition} was seen): set \
                 `partitions` on the kafka sink or create the topic first"
            )));
        };
        let mut configs = src.map(|s| s.configs.clone()).unwrap_or_default();
        if self.creates_as_create_time(topic) {
            tracing::info!(
                topic,
                "the backed-up topic was LogAppendTime: creating it as CreateTime, so \
                 records keep their original append times"
            );
            configs.insert(TIMESTAMP_TYPE.into(), "CreateTime".into());
        }
        for (k, v) in &self.config.topic_configs {
            if v.is_empty() {
                configs.remove(k);
            } else {
                configs.insert(k.clone(), v.clone());
            }
        }
        Ok(NewTopic {
            name: topic.to_string(),
            partitions: partitions.max(1),
            replication_factor: self.config.replication_factor.unwrap_or(-1),
            configs,
        })
    }

    /// Creates the announced `topics` missing on the target in batched CreateTopics
    /// requests ([`CREATE_TOPICS_PER_REQUEST`] each), then waits for their leaders once.
    /// A restore of many topics would otherwise create them one request (and one wait for
    /// leaders) at a time, as each topic's first batch arrives. Topics whose partition
    /// count is unknown are left to [`Self::ensure_topic`] (which explains the problem).
    pub(super) async fn create_missing(&mut self, topics: &[String]) -> Result<()> {
        if !self.config.create_topics || topics.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        let md = client.metadata(Some(topics)).await.map_err(kerr)?;
        let missing: Vec<NewTopic> = topics
            .iter()
            .filter(|t| !self.topics.contains_key(*t))
            .filter(|t| {
                md.topic(t)
                    .is_none_or(|m| m.error.is_some() || m.partitions.is_empty())
            })
            .filter_map(|t| self.new_topic(t, 0).ok())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut created = Vec::new();
        let partitions: u64 = missing.iter().map(|t| t.partitions.max(0) as u64).sum();
        for chunk in missing.chunks(CREATE_TOPICS_PER_REQUEST) {
            let results = client.create_topics(chunk).await.map_err(kerr)?;
            let n = results
                .iter()
                .filter(|(_, r)| *r == TopicResult::Created)
                .count();
            tracing::info!(
                topics = chunk.len(),
                created = n,
                "created topics on the target in one CreateTopics request"
            );
            created.extend(chunk.iter().map(|t| t.name.clone()));
        }
        wait_for_leaders(&client, &created, partitions).await?;
        Ok(())
    }

    /// Whether a topic the sink creates gets CreateTime instead of the source's
    /// LogAppendTime (unless `topic_configs` sets the timestamp type itself): under
    /// LogAppendTime the broker would stamp every restored record with the time of the
    /// restore.
    fn creates_as_create_time(&self, topic: &str) -> bool {
        !self.config.topic_configs.contains_key(TIMESTAMP_TYPE)
            && self.source_topics.get(topic).is_some_and(|s| {
                s.configs.get(TIMESTAMP_TYPE).map(String::as_str) == Some(LOG_APPEND_TIME)
            })
    }

    /// Partitions a target topic needs under `preserve`: the highest partition the
    /// source's partitions map to, plus one (`None` when the source's count is unknown).
    fn needed_partitions(&self, topic: &str) -> Option<i32> {
        if self.config.partitioning != Partitioning::Preserve {
            return None;
        }
        let n = self.source_topics.get(topic)?.partitions;
        (0..n).map(|p| self.target_partition(p, None, n) + 1).max()
    }

    /// What the target holds for each of `topics` and what the sink would do there:
    /// existence, partitions, records (this sink's own, per its offset map, and others'),
    /// timestamp type. Reads only; a dry run prints it.
    pub async fn inspect_targets(&mut self, topics: &[String]) -> Result<Vec<TargetTopic>> {
        let client = self.client().await?;
        let md = client.metadata(Some(topics)).await.map_err(kerr)?;
        let mut out = Vec::new();
        for topic in topics {
            let mut t = TargetTopic {
                topic: topic.clone(),
                source_partitions: self.source_topics.get(topic).map(|s| s.partitions),
                needed_partitions: self.needed_partitions(topic),
                ..Default::default()
            };
            let partitions = md
                .topic(topic)
                .filter(|t| t.error.is_none() && !t.partitions.is_empty())
                .map(|t| t.partitions.len() as i32);
            match partitions {
                None => {
                    t.create_partitions = self.config.partitions.or(t.source_partitions);
                    t.created_as_create_time = self.creates_as_create_time(topic);
                }
                Some(n) => {
                    t.exists = true;
                    t.partitions = n;
                    let all: Vec<i32> = (0..n).collect();
                    let starts = client
                        .list_offsets(topic, &all, OffsetSpec::Earliest)
                        .await
                        .map_err(kerr)?;
                    let ends = client
                        .list_offsets(topic, &all, OffsetSpec::Latest)
                        .await
                        .map_err(kerr)?;
                    let bases = self.map.bases_of(topic);
                    let (records, foreign, own) = split_records(&starts, &ends, bases.as_ref());
                    t.records = records;
                    t.foreign_records = foreign;
                    t.own_records = own;
                    t.log_append_time = client
                        .describe_configs(topic)
                        .await
                        .map_err(kerr)?
                        .iter()
                        .any(|c| {
                            c.name == TIMESTAMP_TYPE && c.value.as_deref() == Some(LOG_APPEND_TIME)
                        });
                }
            }
            out.push(t);
        }
        Ok(out)
    }

    /// Why the sink must not write to these target topics (every reason of every topic).
    pub fn refusals(&self, targets: &[TargetTopic]) -> Vec<String> {
        let brokers = self.config.connection.brokers.join(",");
        targets
            .iter()
            .flat_map(|t| t.refusals(self.config.allow_existing, &brokers))
            .collect()
    }

    /// Learns the source's topics (partition counts, configs) without checking the target;
    /// a dry run uses it before [`KafkaSink::inspect_targets`].
    pub fn note_source_topics(&mut self, topics: impl IntoIterator<Item = TopicSettings>) {
        for t in topics {
            self.source_topics.insert(t.name.clone(), t);
        }
    }

    /// Whether this sink appends to topics holding records it did not write.
    pub fn allows_existing(&self) -> bool {
        self.config.allow_existing
    }

    /// Checks target topics before anything is written to them (see [`target`]); refuses
    /// with every reason at once.
    pub(super) async fn check_targets(&mut self, topics: &[String]) -> Result<()> {
        let targets = self.inspect_targets(topics).await?;
        let refusals = self.refusals(&targets);
        if !refusals.is_empty() {
            return Err(Error::config(format!(
                "nothing was written: {}",
                refusals.join("; and ")
            )));
        }
        for t in targets {
            self.checked.insert(t.topic);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(i32, i64)]) -> BTreeMap<i32, i64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn records_this_restore_did_not_write_are_foreign() {
        let starts = m(&[(0, 5), (1, 0)]);
        let ends = m(&[(0, 15), (1, 7)]);
        // Never written by this restore: everything is foreign.
        let (records, foreign, own) = split_records(&starts, &ends, None);
        assert_eq!(records, m(&[(0, 10), (1, 7)]));
        assert_eq!((foreign, own), (17, 0));
        // It began writing partition 0 at 15 and partition 1 at 0: nothing foreign.
        let bases = m(&[(0, 15), (1, 0)]);
        assert_eq!(split_records(&starts, &ends, Some(&bases)).1, 10);
        let bases = m(&[(0, 5), (1, 0)]);
        let (_, foreign, own) = split_records(&starts, &ends, Some(&bases));
        assert_eq!((foreign, own), (0, 17));
    }

    #[test]
    fn each_rule_refuses_with_what_to_do() {
        let t = TargetTopic {
            topic: "orders".into(),
            exists: true,
            partitions: 2,
            records: m(&[(0, 4), (1, 0)]),
            foreign_records: 4,
            log_append_time: true,
            source_partitions: Some(3),
            needed_partitions: Some(3),
            ..Default::default()
        };
        let r = t.refusals(false, "h:9092");
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(r[0].contains("4 record(s)") && r[0].contains("partition 0: 4"));
        assert!(r[0].contains("--allow-existing"));
        assert!(r[1].contains("has 2 partition(s)") && r[1].contains("has 3"));
        assert!(r[2].contains("LogAppendTime"));
        // Allowed: only the other two rules remain, and the plan says it appends.
        assert_eq!(t.refusals(true, "h:9092").len(), 2);
        assert_eq!(t.plan_note(true), "appending to 4 existing record(s)");
        let new = TargetTopic {
            topic: "n".into(),
            create_partitions: Some(3),
            created_as_create_time: true,
            ..Default::default()
        };
        assert!(new.refusals(false, "h").is_empty());
        assert!(new
            .plan_note(false)
            .contains("CreateTime carrying the original append times"));
    }
}
