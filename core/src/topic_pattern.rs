//! Topic selection: the one rule for `topics:` lists and `topic:` predicates, everywhere.
//!
//! A selection is a list of entries; each entry is either
//!
//! - an **exact name** (`orders`): selects that topic, internal ones included
//!   (`__consumer_offsets` is selected only when named like this), or
//! - a **regex between slashes** (`/^payments\..*/` or `/payments\..*/`): anchored to the
//!   *whole* name (Ferry wraps it in `^(?:…)$`, as Kafka's Java consumer does for
//!   `subscribe(Pattern)`), and it never selects internal topics (names starting with `__`),
//!   so `/.*/` means "every user topic".
//!
//! The kafka source, the backup source (restores) and the `filter` transform all compile
//! their topic entries here, so one YAML list selects the same topics when backing up,
//! restoring and filtering. A test at the bottom of this file pins the rule, and each of those
//! components has a test that uses it.

use std::fmt;

use regex::Regex;

/// One entry of a topic selection: an exact name or an anchored regex.
#[derive(Debug, Clone)]
pub enum TopicPattern {
    /// A topic name, compared exactly.
    Exact(String),
    /// A regex matched against the whole name; never matches internal (`__`) topics.
    Regex {
        /// The entry as written, slashes included (for messages).
        source: String,
        /// The compiled, anchored regex.
        regex: Regex,
    },
}

impl TopicPattern {
    /// Parses one entry: `/regex/` or an exact name. The error says what is wrong with it.
    pub fn parse(entry: &str) -> Result<TopicPattern, String> {
        if entry.is_empty() {
            return Err("an empty topic name was given".into());
        }
        match entry.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
            Some(body) if entry.len() >= 2 => {
                if body.is_empty() {
                    return Err(format!(
                        "topic pattern {entry} is empty: write a regex between the slashes, \
                         e.g. /orders\\..*/"
                    ));
                }
                let regex = Regex::new(&format!("^(?:{body})$"))
                    .map_err(|e| format!("topic pattern {entry} is not a valid regex: {e}"))?;
                Ok(TopicPattern::Regex {
                    source: entry.to_string(),
                    regex,
                })
            }
            _ => Ok(TopicPattern::Exact(entry.to_string())),
        }
    }

    /// Whether this entry selects `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicPattern::Exact(name) => name == topic,
            TopicPattern::Regex { regex, .. } => !is_internal(topic) && regex.is_match(topic),
        }
    }

    /// The exact name, for entries that are one.
    pub fn exact(&self) -> Option<&str> {
        match self {
            TopicPattern::Exact(name) => Some(name),
            TopicPattern::Regex { .. } => None,
        }
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicPattern::Exact(name) => f.write_str(name),
            TopicPattern::Regex { source, .. } => f.write_str(source),
        }
    }
}

/// Whether a topic is one of Kafka's internal ones (`__consumer_offsets`, …).
pub fn is_internal(topic: &str) -> bool {
    topic.starts_with("__")
}

/// A non-empty list of [`TopicPattern`]s: a topic is selected when any entry matches it.
#[derive(Debug, Clone)]
pub struct TopicSelection {
    patterns: Vec<TopicPattern>,
}

impl TopicSelection {
    /// Parses a `topics:` list. Empty lists and bad entries are errors that name the entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TopicSelection, String> {
        if entries.is_empty() {
            return Err("`topics` is empty: name at least one topic or /regex/".into());
        }
        let patterns = entries
            .iter()
            .map(|e| TopicPattern::parse(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TopicSelection { patterns })
    }

    /// Whether any entry selects `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(topic))
    }

    /// The entries given as exact names (they must exist where the selection is applied).
    pub fn exact_names(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().filter_map(TopicPattern::exact)
    }

    /// The entries, in the order given.
    pub fn patterns(&self) -> &[TopicPattern] {
        &self.patterns
    }

    /// The topics of `all` this selection selects, in `all`'s order.
    pub fn select<'a>(&self, all: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        all.into_iter().filter(|t| self.matches(t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPICS: &[&str] = &[
        "orders",
        "orders.eu",
        "payments.card",
        "xorders",
        "__consumer_offsets",
        "__transaction_state",
    ];

    fn select(entries: &[&str]) -> Vec<&'static str> {
        TopicSelection::parse(entries)
            .expect("valid")
            .select(TOPICS.iter().copied())
    }

    #[test]
    fn regex_is_anchored_to_the_whole_name() {
        assert_eq!(select(&["/orders/"]), vec!["orders"]);
        assert_eq!(select(&["/orders.*/"]), vec!["orders", "orders.eu"]);
        assert_eq!(select(&["/^orders\\..*$/"]), vec!["orders.eu"]);
    }

    #[test]
    fn regex_never_selects_internal_topics_but_exact_names_do() {
        assert_eq!(
            select(&["/.*/"]),
            vec!["orders", "orders.eu", "payments.card", "xorders"]
        );
        assert_eq!(select(&["__consumer_offsets"]), vec!["__consumer_offsets"]);
        assert!(select(&["/__.*/"]).is_empty());
    }

    #[test]
    fn exact_names_and_regexes_combine() {
        let s = TopicSelection::parse(&["xorders", "/payments\\..*/"]).expect("valid");
        assert_eq!(
            s.select(TOPICS.iter().copied()),
            vec!["payments.card", "xorders"]
        );
        assert_eq!(s.exact_names().collect::<Vec<_>>(), vec!["xorders"]);
    }

    #[test]
    fn bad_entries_are_named() {
        let e = TopicSelection::parse(&["/(unclosed/"]).expect_err("bad regex");
        assert!(e.contains("/(unclosed/"), "{e}");
        let e = TopicSelection::parse::<&str>(&[]).expect_err("empty list");
        assert!(e.contains("empty"), "{e}");
        let e = TopicSelection::parse(&[""]).expect_err("empty name");
        assert!(e.contains("empty topic name"), "{e}");
        let e = TopicSelection::parse(&["//"]).expect_err("empty regex");
        assert!(e.contains("is empty"), "{e}");
        // A single slash is a (bad for Kafka, but not ours to judge here) exact name.
        assert!(TopicPattern::parse("/").expect("exact").exact().is_some());
    }
}
