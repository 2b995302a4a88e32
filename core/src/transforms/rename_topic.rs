//! `rename_topic`: renames topics by an exact map and/or a regex with capture groups.
//!
//! ```yaml
//! transforms:
//!   - type: rename_topic
//!     map: { orders: orders-restored, payments: payments-restored }
//!     regex: "^prod\\.(.*)$"
//!     replacement: "test.$1"
//! ```
//!
//! The map is checked first; a topic it does not name is tried against the regex, whose
//! first match is replaced (`$1`, `${name}` refer to capture groups; write `${1}x` when a
//! letter or digit follows). Topics neither renames stay as they are. The new name must be a
//! legal Kafka topic name. Only `Batch::topic` and each record's topic change (one shared
//! `Arc<str>` per batch): partitions, offsets and the ack stay with the source topic, so
//! checkpoints keep tracking what was read. A raw batch stays raw: Kafka record batches do
//! not contain the topic name.

use super::{compile_regex, config_error};
use crate::batch::{Batch, Payload};
use crate::component::Transform;
use crate::registry::{BuildContext, TransformFactory};
use crate::Result;
use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const NAME: &str = "rename_topic";

/// Configuration of the `rename_topic` transform.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameTopicConfig {
    /// Exact renames, `old: new`. Checked before `regex`.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// Regex searched in topic names the map does not name, e.g. `"^prod\\.(.*)$"`; its
    /// first match is replaced by `replacement`.
    pub regex: Option<String>,
    /// Replacement for the regex match; `$1` or `${name}` insert capture groups
    /// (e.g. `"test.$1"`). Required with `regex`.
    pub replacement: Option<String>,
}

/// Checks Kafka's topic name rules: 1 to 249 characters of `[A-Za-z0-9._-]`, not `.`/`..`.
pub fn check_topic_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("the new topic name is empty".into());
    }
    if name.len() > 249 {
        return Err(format!(
            "the new topic name `{name}` is longer than 249 characters"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a legal topic name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "the new topic name `{name}` contains `{c}`: Kafka allows only ASCII letters, \
             digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

/// The `rename_topic` transform.
#[derive(Debug)]
pub struct RenameTopic {
    map: HashMap<String, Arc<str>>,
    regex: Option<(Regex, String)>,
    /// Source topic → its new name (`None`: unchanged), so every batch of a topic shares
    /// one `Arc<str>` and the regex runs once per topic.
    cache: HashMap<Arc<str>, Option<Arc<str>>>,
}

impl RenameTopic {
    /// Compiles the configuration; errors name the option and, for the regex, the pattern.
    pub fn new(config: &RenameTopicConfig) -> Result<Self> {
        let mut map = HashMap::new();
        for (old, new) in &config.map {
            check_topic_name(new)
                .map_err(|e| config_error(NAME, format!("option `map.{old}`: {e}")))?;
            map.insert(old.clone(), Arc::from(new.as_str()));
        }
        let regex = match (&config.regex, &config.replacement) {
            (Some(re), Some(rep)) => Some((compile_regex(NAME, "regex", re)?, rep.clone())),
            (Some(_), None) => {
                return Err(config_error(
                    NAME,
                    "option `regex` needs `replacement` (e.g. \"test.$1\")",
                ))
            }
            (None, Some(_)) => {
                return Err(config_error(NAME, "option `replacement` needs `regex`"))
            }
            (None, None) => None,
        };
        if map.is_empty() && regex.is_none() {
            return Err(config_error(
                NAME,
                "give `map`, `regex` with `replacement`, or both",
            ));
        }
        Ok(RenameTopic {
            map,
            regex,
            cache: HashMap::new(),
        })
    }

    /// The new name of `topic`, or `None` when it keeps its name.
    pub fn rename(&mut self, topic: &Arc<str>) -> Result<Option<Arc<str>>> {
        if let Some(hit) = self.cache.get(topic) {
            return Ok(hit.clone());
        }
        let new = if let Some(new) = self.map.get(&**topic) {
            Some(new.clone())
        } else if let Some((re, rep)) = &self.regex {
            if re.is_match(topic) {
                let name = re.replace(topic, rep.as_str());
                check_topic_name(&name).map_err(|e| {
                    config_error(
                        NAME,
                        format!("renaming topic `{topic}` with regex `{}`: {e}", re.as_str()),
                    )
                })?;
                Some(Arc::from(name.as_ref()))
            } else {
                None
            }
        } else {
            None
        };
        let new = new.filter(|n| n != topic);
        self.cache.insert(topic.clone(), new.clone());
        Ok(new)
    }
}

impl Transform for RenameTopic {
    /// Renames the batch's topic and its records' topics; offsets, partition and ack stay.
    fn apply(&mut self, mut batch: Batch) -> Result<Option<Batch>> {
        if let Some(new) = self.rename(&batch.topic)? {
            if let Payload::Records(records) = &mut batch.payload {
                for r in records.iter_mut() {
                    r.topic = new.clone();
                }
            }
            batch.topic = new;
        }
        Ok(Some(batch))
    }

    /// Renames `topics[].name` and the topic keys of every group's offsets the way
    /// [`Transform::apply`] renames records. Two topics renamed to one name are merged: the
    /// topic keeps the first entry (with the larger partition count), a group keeps, per
    /// partition, the larger committed offset. A topic whose new name is illegal keeps its
    /// name here (with a warning); its records fail in `apply`.
    fn apply_metadata(
        &mut self,
        mut metadata: crate::metadata::SourceMetadata,
    ) -> crate::metadata::SourceMetadata {
        let topics = std::mem::take(&mut metadata.topics);
        let mut index: HashMap<String, usize> = HashMap::new();
        for mut t in topics {
            t.name = self.new_name(&t.name);
            match index.get(&t.name) {
                Some(&i) => {
                    let kept = &mut metadata.topics[i];
                    kept.partitions = kept.partitions.max(t.partitions);
                }
                None => {
                    index.insert(t.name.clone(), metadata.topics.len());
                    metadata.topics.push(t);
                }
            }
        }
        for g in &mut metadata.groups {
            let offsets = std::mem::take(&mut g.offsets);
            for (topic, partitions) in offsets {
                let merged = g.offsets.entry(self.new_name(&topic)).or_default();
                for (p, o) in partitions {
                    let e = merged.entry(p).or_insert(o);
                    *e = (*e).max(o);
                }
            }
        }
        metadata
    }
}

impl RenameTopic {
    /// The name `topic` gets, as a string (itself when unchanged or when renaming fails).
    fn new_name(&mut self, topic: &str) -> String {
        match self.rename(&Arc::from(topic)) {
            Ok(Some(new)) => new.to_string(),
            Ok(None) => topic.to_string(),
            Err(e) => {
                tracing::warn!(topic, error = %e, "metadata keeps the topic name");
                topic.to_string()
            }
        }
    }
}

/// Factory of the `rename_topic` transform.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenameTopicFactory;

impl TransformFactory for RenameTopicFactory {
    type Config = RenameTopicConfig;

    fn name(&self) -> &'static str {
        NAME
    }

    fn description(&self) -> &'static str {
        "Renames topics by an exact `map` and/or a `regex` + `replacement` with capture \
         groups ($1); offsets, partitions and checkpoints stay with the source topic."
    }

    fn validate(&self, config: &RenameTopicConfig) -> Result<()> {
        RenameTopic::new(config).map(drop)
    }

    fn build(&self, config: RenameTopicConfig, _ctx: &BuildContext) -> Result<Box<dyn Transform>> {
        Ok(Box::new(RenameTopic::new(&config)?))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn rename(yaml: &str) -> RenameTopic {
        let config: RenameTopicConfig = serde_saphyr::from_str(yaml).expect("config parses");
        RenameTopic::new(&config).expect("config is valid")
    }

    fn rename_err(yaml: &str) -> String {
        let config: RenameTopicConfig = serde_saphyr::from_str(yaml).expect("config parses");
        RenameTopic::new(&config)
            .expect_err("config is invalid")
            .to_string()
    }

    fn two(topic: &str) -> Batch {
        batch(
            topic,
            5,
            9,
            vec![
                rec(topic, 5, Some("a"), Some("1")),
                rec(topic, 7, None, None),
            ],
        )
    }

    #[test]
    fn map_renames_batch_and_records_sharing_one_arc() {
        let mut t = rename("map: { orders: orders-copy }");
        let out = t.apply(two("orders")).expect("apply").expect("batch");
        assert_eq!(&*out.topic, "orders-copy");
        assert_eq!(
            (out.partition, out.first_offset, out.next_offset),
            (0, 5, 9)
        );
        let recs = match &out.payload {
            Payload::Records(r) => r,
            Payload::Raw(_) => panic!("expected records"),
        };
        assert_eq!(
            recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![5, 7]
        );
        for r in recs {
            assert!(Arc::ptr_eq(&r.topic, &out.topic));
        }
        let other = t.apply(two("payments")).expect("apply").expect("batch");
        assert_eq!(&*other.topic, "payments");
    }

    #[test]
    fn regex_with_capture_groups() {
        let mut t = rename(r#"{ regex: "^prod\\.(.*)$", replacement: "test.$1" }"#);
        let out = t
            .apply(two("prod.orders.eu"))
            .expect("apply")
            .expect("batch");
        assert_eq!(&*out.topic, "test.orders.eu");
        assert!(records(&out).iter().all(|r| &*r.topic == "test.orders.eu"));
        let untouched = t
            .apply(two("staging.orders"))
            .expect("apply")
            .expect("batch");
        assert_eq!(&*untouched.topic, "staging.orders");

        let mut named = rename(
            r#"{ regex: "^(?P<env>[a-z]+)\\.(?P<name>.+)$", replacement: "${name}-from-${env}" }"#,
        );
        assert_eq!(
            named
                .rename(&Arc::from("prod.orders"))
                .expect("rename")
                .as_deref(),
            Some("orders-from-prod")
        );
    }

    #[test]
    fn map_wins_over_regex_and_results_are_cached() {
        let mut t = rename(
            r#"{ map: { prod.special: kept-special }, regex: "^prod\\.", replacement: "dev." }"#,
        );
        assert_eq!(
            t.rename(&Arc::from("prod.special"))
                .expect("rename")
                .as_deref(),
            Some("kept-special")
        );
        let a = t
            .rename(&Arc::from("prod.x"))
            .expect("rename")
            .expect("renamed");
        let b = t
            .rename(&Arc::from("prod.x"))
            .expect("rename")
            .expect("renamed");
        assert_eq!(&*a, "dev.x");
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn raw_batch_stays_raw_and_decodes_with_new_topic() {
        let mut t = rename("map: { orders: restored }");
        let b = raw_batch("orders", 0, 2, vec![rec("orders", 0, None, Some("v"))]);
        let out = t.apply(b).expect("apply").expect("batch");
        assert!(out.raw().is_some());
        assert_eq!(&*out.topic, "restored");
        assert_eq!(&*records(&out)[0].topic, "restored");
    }

    #[test]
    fn illegal_new_names_are_rejected() {
        let e = rename_err("map: { orders: 'bad/name' }");
        assert!(
            e.contains("transform `rename_topic`") && e.contains("map.orders"),
            "{e}"
        );
        let mut t = rename(r#"{ regex: "^(.*)$", replacement: "$2" }"#);
        let e = t.apply(two("orders")).expect_err("empty name").to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn metadata_topics_and_group_offsets_are_renamed() {
        use crate::metadata::{GroupOffsets, SourceMetadata, TopicSettings};
        let topic = |name: &str, partitions| TopicSettings {
            name: name.into(),
            partitions,
            replication_factor: Some(3),
            configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
            topic_id: None,
        };
        let offsets = |entries: &[(&str, &[(i32, i64)])]| -> BTreeMap<String, BTreeMap<i32, i64>> {
            entries
                .iter()
                .map(|(t, p)| (t.to_string(), p.iter().copied().collect()))
                .collect()
        };
        let mut t = rename(
            r#"{ map: { orders: orders-copy }, regex: "^prod\\.(.*)$", replacement: "test.$1" }"#,
        );
        let meta = SourceMetadata {
            taken_at_ms: 42,
            topics: vec![topic("orders", 3), topic("prod.pay", 2), topic("other", 1)],
            groups: vec![
                GroupOffsets {
                    group: "g1".into(),
                    offsets: offsets(&[
                        ("orders", &[(0, 10), (2, 7)]),
                        ("prod.pay", &[(1, 5)]),
                        ("other", &[(0, 1)]),
                    ]),
                },
                GroupOffsets {
                    group: "g2".into(),
                    offsets: offsets(&[("prod.pay", &[(0, 3)])]),
                },
            ],
        };
        let out = t.apply_metadata(meta);
        assert_eq!(out.taken_at_ms, 42);
        let names: Vec<&str> = out.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["orders-copy", "test.pay", "other"]);
        assert_eq!(out.topics[0].partitions, 3);
        assert_eq!(out.topics[0].configs["cleanup.policy"], "compact");
        assert_eq!(
            out.groups[0].offsets,
            offsets(&[
                ("orders-copy", &[(0, 10), (2, 7)]),
                ("test.pay", &[(1, 5)]),
                ("other", &[(0, 1)]),
            ])
        );
        assert_eq!(out.groups[1].group, "g2");
        assert_eq!(out.groups[1].offsets, offsets(&[("test.pay", &[(0, 3)])]));
        // Records of a renamed topic get the same name as its metadata.
        let b = t.apply(two("prod.pay")).expect("apply").expect("batch");
        assert_eq!(&*b.topic, "test.pay");
    }

    #[test]
    fn metadata_of_topics_renamed_to_one_name_is_merged() {
        use crate::metadata::{GroupOffsets, SourceMetadata, TopicSettings};
        let topic = |name: &str, partitions| TopicSettings {
            name: name.into(),
            partitions,
            replication_factor: None,
            configs: BTreeMap::new(),
            topic_id: None,
        };
        let mut t = rename("map: { a: merged, b: merged }");
        let out = t.apply_metadata(SourceMetadata {
            taken_at_ms: 0,
            topics: vec![topic("a", 2), topic("b", 4)],
            groups: vec![GroupOffsets {
                group: "g".into(),
                offsets: BTreeMap::from([
                    ("a".to_string(), BTreeMap::from([(0, 9), (1, 1)])),
                    ("b".to_string(), BTreeMap::from([(0, 3), (3, 8)])),
                ]),
            }],
        });
        assert_eq!(out.topics.len(), 1);
        assert_eq!(
            (out.topics[0].name.as_str(), out.topics[0].partitions),
            ("merged", 4)
        );
        assert_eq!(
            out.groups[0].offsets,
            BTreeMap::from([(
                "merged".to_string(),
                BTreeMap::from([(0, 9), (1, 1), (3, 8)])
            )])
        );
    }

    #[test]
    fn config_errors() {
        let e = rename_err(r#"{ regex: "^prod\\.(", replacement: "x" }"#);
        assert!(e.contains("transform `rename_topic`"), "{e}");
        assert!(e.contains(r"^prod\.("), "{e}");
        assert!(rename_err(r#"{ regex: "a" }"#).contains("replacement"));
        assert!(rename_err(r#"{ replacement: "a" }"#).contains("needs `regex`"));
        assert!(rename_err("{}").contains("give `map`"));
    }
}
