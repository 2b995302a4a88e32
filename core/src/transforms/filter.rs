//! `filter`: keeps the records that match a predicate (or, with `negate`, those that don't).
//!
//! ```yaml
//! transforms:
//!   - type: filter
//!     predicate:
//!       all:
//!         - topic: "/orders\\..*/"
//!         - any:
//!             - key_regex: "^user-"
//!             - header_equals: { name: source, value: web }
//!         - not: { header_present: test-run }
//!         - timestamp: { from: "2026-11-01T00:00:00Z", to: 1764547200000 }
//!     negate: false
//! ```
//!
//! A predicate is a map of conditions; several keys in one map must all hold (so
//! `{ topic: orders, partition: [0] }` is the same as an `all` of the two). Control records
//! always pass. A batch whose records are all dropped is still returned, empty, with its
//! offset span, so the checkpoint moves past it.

use super::{compile_regex, config_error, retain_records};
use crate::batch::Batch;
use crate::component::Transform;
use crate::record::Record;
use crate::registry::{BuildContext, TransformFactory};
use crate::topic_pattern::TopicPattern;
use crate::Result;
use regex::Regex;
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;

const NAME: &str = "filter";

/// Configuration of the `filter` transform.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Condition a record must meet to be kept, e.g. `{ key_regex: "^user-" }`. Keys:
    /// `topic`, `partition`, `key_regex`, `header_present`, `header_equals`, `timestamp`,
    /// `all`, `any`, `not`; several keys in one map must all hold.
    pub predicate: Predicate,
    /// Keep the records that do NOT match the predicate instead (default false).
    #[serde(default)]
    pub negate: bool,
}

/// A condition on a record. Every key given must hold; at least one key is required.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Predicate {
    /// Topic name, exact (`orders`), or a regex between slashes (`"/orders\\..*/"`),
    /// anchored to the whole name and never matching internal `__` topics: the same rule as
    /// every `topics:` list (see `ferry_core::topic_pattern`).
    pub topic: Option<String>,
    /// Partitions to match, e.g. `[0, 2]`.
    pub partition: Option<Vec<i32>>,
    /// Regex searched in the key read as UTF-8 (unanchored). A null key, or one that is not
    /// valid UTF-8, never matches.
    pub key_regex: Option<String>,
    /// Matches when the record has at least one header with this exact name.
    pub header_present: Option<String>,
    /// Matches when some header has this name and this value (compared as UTF-8 bytes;
    /// `value: null` matches a null header value).
    pub header_equals: Option<HeaderEquals>,
    /// Matches record timestamps in `from <= t < to` (either bound may be left out).
    pub timestamp: Option<TimeRange>,
    /// Matches when every predicate of the list matches.
    pub all: Option<Vec<Predicate>>,
    /// Matches when at least one predicate of the list matches.
    pub any: Option<Vec<Predicate>>,
    /// Matches when the inner predicate does not.
    pub not: Option<Box<Predicate>>,
}

/// A header name and value to compare with.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderEquals {
    /// Header name (exact).
    pub name: String,
    /// Expected value as a string, or `null` to match a null header value. Required.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schemars(required, schema_with = "nullable_string")]
    pub value: Option<String>,
}

/// Schema of a required value that may be null.
fn nullable_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["string", "null"] })
}

/// A half-open time range `from <= timestamp < to`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    /// Inclusive lower bound: RFC 3339 (`2026-11-24T10:00:00Z`) or milliseconds since the
    /// Unix epoch. Left out: no lower bound.
    pub from: Option<TimeBound>,
    /// Exclusive upper bound: RFC 3339 or milliseconds since the Unix epoch. Left out: no
    /// upper bound.
    pub to: Option<TimeBound>,
}

/// A point in time, read from RFC 3339 text or from milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBound(
    /// Milliseconds since the Unix epoch.
    pub i64,
);

impl TimeBound {
    /// Parses RFC 3339 text or a decimal count of milliseconds.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if let Ok(ms) = s.parse::<i64>() {
            return Ok(TimeBound(ms));
        }
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                format!(
                    "`{s}` is neither RFC 3339 (e.g. 2026-11-24T10:00:00Z) nor milliseconds: {e}"
                )
            })?;
        let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
        i64::try_from(ms)
            .map(TimeBound)
            .map_err(|_| format!("`{s}` is out of range"))
    }
}

impl<'de> Deserialize<'de> for TimeBound {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = TimeBound;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an RFC 3339 time or milliseconds since the Unix epoch")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<TimeBound, E> {
                Ok(TimeBound(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<TimeBound, E> {
                i64::try_from(v)
                    .map(TimeBound)
                    .map_err(|_| E::custom(format!("{v} milliseconds is out of range")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<TimeBound, E> {
                TimeBound::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for TimeBound {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("TimeBound")
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "RFC 3339 time (e.g. 2026-11-24T10:00:00Z) or milliseconds since the Unix epoch",
            "anyOf": [
                { "type": "string", "format": "date-time" },
                { "type": "integer" }
            ]
        })
    }
}

/// A compiled predicate.
#[derive(Debug)]
enum Matcher {
    Topic(TopicPattern),
    Partitions(Vec<i32>),
    KeyRegex(Regex),
    HeaderPresent(String),
    HeaderEquals(String, Option<Vec<u8>>),
    Timestamp { from: Option<i64>, to: Option<i64> },
    All(Vec<Matcher>),
    Any(Vec<Matcher>),
    Not(Box<Matcher>),
}

impl Matcher {
    /// Compiles `p`, found at `path` in the config (for error messages).
    fn compile(p: &Predicate, path: &str) -> Result<Matcher> {
        let mut parts = Vec::new();
        if let Some(topic) = &p.topic {
            let opt = format!("{path}.topic");
            let pattern = TopicPattern::parse(topic)
                .map_err(|e| config_error(NAME, format!("option `{opt}`: {e}")))?;
            parts.push(Matcher::Topic(pattern));
        }
        if let Some(partitions) = &p.partition {
            if partitions.is_empty() {
                return Err(config_error(
                    NAME,
                    format!("option `{path}.partition` lists no partitions"),
                ));
            }
            if let Some(bad) = partitions.iter().find(|p| **p < 0) {
                return Err(config_error(
                    NAME,
                    format!("option `{path}.partition`: partition {bad} is negative"),
                ));
            }
            parts.push(Matcher::Partitions(partitions.clone()));
        }
        if let Some(re) = &p.key_regex {
            let opt = format!("{path}.key_regex");
            parts.push(Matcher::KeyRegex(compile_regex(NAME, &opt, re)?));
        }
        if let Some(name) = &p.header_present {
            parts.push(Matcher::HeaderPresent(name.clone()));
        }
        if let Some(h) = &p.header_equals {
            parts.push(Matcher::HeaderEquals(
                h.name.clone(),
                h.value.as_ref().map(|v| v.as_bytes().to_vec()),
            ));
        }
        if let Some(range) = &p.timestamp {
            let from = range.from.map(|b| b.0);
            let to = range.to.map(|b| b.0);
            if from.is_none() && to.is_none() {
                return Err(config_error(
                    NAME,
                    format!("option `{path}.timestamp` needs `from`, `to` or both"),
                ));
            }
            if let (Some(f), Some(t)) = (from, to) {
                if f >= t {
                    return Err(config_error(
                        NAME,
                        format!(
                            "option `{path}.timestamp`: `from` ({f} ms) must be before `to` ({t} ms)"
                        ),
                    ));
                }
            }
            parts.push(Matcher::Timestamp { from, to });
        }
        if let Some(list) = &p.all {
            parts.push(Matcher::All(Self::compile_list(
                list,
                &format!("{path}.all"),
            )?));
        }
        if let Some(list) = &p.any {
            parts.push(Matcher::Any(Self::compile_list(
                list,
                &format!("{path}.any"),
            )?));
        }
        if let Some(inner) = &p.not {
            parts.push(Matcher::Not(Box::new(Self::compile(
                inner,
                &format!("{path}.not"),
            )?)));
        }
        match parts.len() {
            0 => Err(config_error(
                NAME,
                format!(
                    "option `{path}` is empty: give one of topic, partition, key_regex, \
                     header_present, header_equals, timestamp, all, any, not"
                ),
            )),
            1 => Ok(parts.remove(0)),
            _ => Ok(Matcher::All(parts)),
        }
    }

    fn compile_list(list: &[Predicate], path: &str) -> Result<Vec<Matcher>> {
        if list.is_empty() {
            return Err(config_error(
                NAME,
                format!("option `{path}` needs at least one predicate"),
            ));
        }
        list.iter()
            .enumerate()
            .map(|(i, p)| Self::compile(p, &format!("{path}[{i}]")))
            .collect()
    }

    fn matches(&self, r: &Record) -> bool {
        match self {
            Matcher::Topic(pattern) => pattern.matches(&r.topic),
            Matcher::Partitions(ps) => ps.contains(&r.partition),
            Matcher::KeyRegex(re) => r
                .key
                .as_ref()
                .and_then(|k| std::str::from_utf8(k).ok())
                .is_some_and(|k| re.is_match(k)),
            Matcher::HeaderPresent(name) => r.headers.iter().any(|h| h.key == *name),
            Matcher::HeaderEquals(name, value) => r
                .headers
                .iter()
                .any(|h| h.key == *name && h.value.as_deref() == value.as_deref()),
            Matcher::Timestamp { from, to } => {
                from.is_none_or(|f| r.timestamp >= f) && to.is_none_or(|t| r.timestamp < t)
            }
            Matcher::All(ms) => ms.iter().all(|m| m.matches(r)),
            Matcher::Any(ms) => ms.iter().any(|m| m.matches(r)),
            Matcher::Not(m) => !m.matches(r),
        }
    }
}

/// The `filter` transform: keeps records matching its predicate (or not matching, negated).
#[derive(Debug)]
pub struct Filter {
    matcher: Matcher,
    negate: bool,
}

impl Filter {
    /// Compiles the configuration; errors name the option and, for regexes, the pattern.
    pub fn new(config: &FilterConfig) -> Result<Self> {
        Ok(Filter {
            matcher: Matcher::compile(&config.predicate, "predicate")?,
            negate: config.negate,
        })
    }

    /// Whether a (non-control) record is kept.
    pub fn keeps(&self, r: &Record) -> bool {
        self.matcher.matches(r) != self.negate
    }
}

impl Transform for Filter {
    /// Drops the records that fail the predicate; control records always stay. The batch is
    /// returned even when it ends up empty, with its offset span unchanged.
    fn apply(&mut self, mut batch: Batch) -> Result<Option<Batch>> {
        retain_records(&mut batch, |r| self.keeps(r))?;
        Ok(Some(batch))
    }
}

/// Factory of the `filter` transform.
#[derive(Debug, Clone, Copy, Default)]
pub struct FilterFactory;

impl TransformFactory for FilterFactory {
    type Config = FilterConfig;

    fn name(&self) -> &'static str {
        NAME
    }

    fn description(&self) -> &'static str {
        "Keeps records matching a predicate on topic, partition, key, headers or timestamp \
         (combinable with all/any/not); `negate` keeps the others. Control records always pass."
    }

    fn validate(&self, config: &FilterConfig) -> Result<()> {
        Filter::new(config).map(drop)
    }

    fn build(
        &self,
        config: FilterConfig,
        _ctx: &BuildContext,
    ) -> Result<Box<dyn crate::component::Transform>> {
        Ok(Box::new(Filter::new(&config)?))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn filter(yaml: &str) -> Filter {
        let config: FilterConfig = serde_saphyr::from_str(yaml).expect("config parses");
        Filter::new(&config).expect("config is valid")
    }

    fn filter_err(yaml: &str) -> String {
        let config: FilterConfig = serde_saphyr::from_str(yaml).expect("config parses");
        Filter::new(&config)
            .expect_err("config is invalid")
            .to_string()
    }

    fn kept(f: &mut Filter, records: Vec<Record>) -> Vec<i64> {
        let n = records.len() as i64;
        let out = f
            .apply(batch("t", 0, n.max(1), records))
            .expect("apply")
            .expect("batch returned");
        offsets(&out)
    }

    fn keyed(keys: &[Option<&str>]) -> Vec<Record> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| rec("t", i as i64, *k, Some("v")))
            .collect()
    }

    #[test]
    fn key_regex_keeps_matching_keys_and_never_null_keys() {
        let mut f = filter("predicate: { key_regex: '^user-' }");
        let recs = keyed(&[Some("user-1"), Some("admin-1"), None, Some("user-2")]);
        assert_eq!(kept(&mut f, recs), vec![0, 3]);
    }

    #[test]
    fn key_regex_ignores_non_utf8_keys() {
        let mut f = filter("predicate: { key_regex: '.*' }");
        let mut r = rec("t", 0, None, Some("v"));
        r.key = Some(bytes::Bytes::from_static(&[0xff, 0xfe]));
        assert_eq!(kept(&mut f, vec![r, rec("t", 1, Some("k"), None)]), vec![1]);
    }

    #[test]
    fn negate_keeps_the_others() {
        let mut f = filter("predicate: { key_regex: '^user-' }\nnegate: true");
        let recs = keyed(&[Some("user-1"), Some("admin-1"), None, Some("user-2")]);
        assert_eq!(kept(&mut f, recs), vec![1, 2]);
    }

    #[test]
    fn topic_exact_and_regex() {
        let mut exact = filter("predicate: { topic: orders }");
        let mut re = filter("predicate: { topic: '/^orders\\..*/' }");
        let recs = || {
            vec![
                rec("orders", 0, None, None),
                rec("orders.eu", 1, None, None),
                rec("x.orders.eu", 2, None, None),
            ]
        };
        assert_eq!(kept(&mut exact, recs()), vec![0]);
        assert_eq!(kept(&mut re, recs()), vec![1]);
        // The regex is anchored to the whole name, as in every `topics:` list.
        let mut unanchored = filter("predicate: { topic: '/orders/' }");
        assert_eq!(kept(&mut unanchored, recs()), vec![0]);
    }

    #[test]
    fn partition_list() {
        let mut f = filter("predicate: { partition: [0, 2] }");
        let recs: Vec<Record> = (0..4)
            .map(|p| {
                let mut r = rec("t", p as i64, None, None);
                r.partition = p;
                r
            })
            .collect();
        assert_eq!(kept(&mut f, recs), vec![0, 2]);
    }

    #[test]
    fn header_present_and_equals_with_null_values() {
        let mut r0 = rec("t", 0, None, None);
        r0.headers = vec![hdr("src", Some("web"))];
        let mut r1 = rec("t", 1, None, None);
        r1.headers = vec![hdr("src", None)];
        let mut r2 = rec("t", 2, None, None);
        r2.headers = vec![hdr("other", Some("web")), hdr("src", Some("app"))];
        let r3 = rec("t", 3, None, None);
        let recs = || vec![r0.clone(), r1.clone(), r2.clone(), r3.clone()];

        let mut present = filter("predicate: { header_present: src }");
        assert_eq!(kept(&mut present, recs()), vec![0, 1, 2]);
        let mut eq_web = filter("predicate: { header_equals: { name: src, value: web } }");
        assert_eq!(kept(&mut eq_web, recs()), vec![0]);
        let mut eq_null = filter("predicate: { header_equals: { name: src, value: null } }");
        assert_eq!(kept(&mut eq_null, recs()), vec![1]);
    }

    #[test]
    fn header_equals_requires_value() {
        let r: std::result::Result<FilterConfig, _> =
            serde_saphyr::from_str("predicate: { header_equals: { name: src } }");
        let e = r.expect_err("value is required").to_string();
        assert!(e.contains("value"), "{e}");
    }

    #[test]
    fn timestamp_range_is_half_open_and_takes_rfc3339_or_millis() {
        // 2026-11-24T10:00:00Z = 1795514400000 ms.
        let mut f =
            filter("predicate: { timestamp: { from: '2026-11-24T10:00:00Z', to: 1795514400010 } }");
        let recs: Vec<Record> = [1795514399999, 1795514400000, 1795514400009, 1795514400010]
            .iter()
            .enumerate()
            .map(|(i, ts)| {
                let mut r = rec("t", i as i64, None, None);
                r.timestamp = *ts;
                r
            })
            .collect();
        assert_eq!(kept(&mut f, recs), vec![1, 2]);
        let mut open = filter("predicate: { timestamp: { to: '1970-01-01T00:00:01+00:00' } }");
        let mut early = rec("t", 0, None, None);
        early.timestamp = 999;
        let mut late = rec("t", 1, None, None);
        late.timestamp = 1000;
        assert_eq!(kept(&mut open, vec![early, late]), vec![0]);
        // Unquoted RFC 3339 in YAML is a plain string too.
        let mut plain = filter("predicate: { timestamp: { from: 2026-11-24T10:00:00Z } }");
        let mut r = rec("t", 0, None, None);
        r.timestamp = 1795514400000;
        assert_eq!(kept(&mut plain, vec![r]), vec![0]);
    }

    #[test]
    fn combined_predicates() {
        let yaml = r#"
predicate:
  all:
    - topic: "/orders.*/"
    - any:
        - key_regex: "^vip-"
        - header_equals: { name: source, value: web }
    - not: { header_present: test-run }
"#;
        let mut f = filter(yaml);
        let mk = |off: i64, topic: &str, key: &str, headers: Vec<crate::record::Header>| {
            let mut r = rec(topic, off, Some(key), Some("v"));
            r.headers = headers;
            r
        };
        let recs = vec![
            mk(0, "orders", "vip-1", vec![]),                           // kept
            mk(1, "orders", "std-1", vec![hdr("source", Some("web"))]), // kept
            mk(2, "orders", "std-2", vec![hdr("source", Some("app"))]), // no any
            mk(3, "payments", "vip-2", vec![]),                         // wrong topic
            mk(4, "orders", "vip-3", vec![hdr("test-run", None)]),      // not fails
        ];
        assert_eq!(kept(&mut f, recs), vec![0, 1]);
    }

    #[test]
    fn several_keys_in_one_map_must_all_hold() {
        let mut f = filter("predicate: { topic: orders, key_regex: '^a' }");
        let recs = vec![
            rec("orders", 0, Some("a1"), None),
            rec("orders", 1, Some("b1"), None),
            rec("other", 2, Some("a2"), None),
        ];
        assert_eq!(kept(&mut f, recs), vec![0]);
    }

    #[test]
    fn control_records_always_pass() {
        let mut f = filter("predicate: { key_regex: '^never$' }");
        let mut marker = rec("t", 1, None, None);
        marker.is_control = true;
        let recs = vec![rec("t", 0, Some("a"), None), marker];
        assert_eq!(kept(&mut f, recs), vec![1]);
        let mut neg = filter("predicate: { topic: t }\nnegate: true");
        let mut marker = rec("t", 1, None, None);
        marker.is_control = true;
        assert_eq!(kept(&mut neg, vec![marker]), vec![1]);
    }

    #[test]
    fn empty_result_keeps_offset_span() {
        let mut f = filter("predicate: { key_regex: '^never$' }");
        let b = batch("t", 100, 110, keyed(&[Some("a"), Some("b")]));
        let out = f.apply(b).expect("apply").expect("batch returned");
        assert_eq!(out.record_count(), 0);
        assert_eq!((out.first_offset, out.next_offset), (100, 110));
        assert_eq!(&*out.topic, "t");
    }

    #[test]
    fn raw_batch_stays_raw_when_everything_passes() {
        let mut f = filter("predicate: { topic: t }");
        let out = f
            .apply(raw_batch("t", 0, 2, keyed(&[Some("a"), Some("b")])))
            .expect("apply")
            .expect("batch");
        assert!(out.raw().is_some());
        let mut f = filter("predicate: { key_regex: a }");
        let out = f
            .apply(raw_batch("t", 0, 2, keyed(&[Some("a"), Some("b")])))
            .expect("apply")
            .expect("batch");
        assert!(out.raw().is_none());
        assert_eq!(offsets(&out), vec![0]);
        assert_eq!((out.first_offset, out.next_offset), (0, 2));
    }

    #[test]
    fn bad_regex_error_names_transform_option_and_regex() {
        let e = filter_err("predicate: { any: [ { topic: a }, { key_regex: 'user-(' } ] }");
        assert!(e.contains("transform `filter`"), "{e}");
        assert!(e.contains("predicate.any[1].key_regex"), "{e}");
        assert!(e.contains("user-("), "{e}");
        let e = filter_err("predicate: { topic: '/[a-/' }");
        assert!(e.contains("transform `filter`") && e.contains("[a-"), "{e}");
    }

    #[test]
    fn invalid_configs_are_rejected() {
        assert!(filter_err("predicate: {}").contains("is empty"));
        assert!(filter_err("predicate: { any: [] }").contains("at least one"));
        assert!(filter_err("predicate: { partition: [] }").contains("no partitions"));
        assert!(filter_err("predicate: { timestamp: {} }").contains("from"));
        assert!(filter_err("predicate: { timestamp: { from: 10, to: 5 } }").contains("before"));
        let unknown: std::result::Result<FilterConfig, _> =
            serde_saphyr::from_str("predicate: { key_rgex: a }");
        let e = unknown.expect_err("unknown key").to_string();
        assert!(e.contains("key_rgex"), "{e}");
        let bad_time: std::result::Result<FilterConfig, _> =
            serde_saphyr::from_str("predicate: { timestamp: { from: yesterday } }");
        let e = bad_time.expect_err("bad time").to_string();
        assert!(e.contains("RFC 3339"), "{e}");
    }
}
