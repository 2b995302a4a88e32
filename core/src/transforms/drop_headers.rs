//! `drop_headers`: removes headers by exact name and/or by a regex on the name.
//!
//! ```yaml
//! transforms:
//!   - type: drop_headers
//!     keys: [traceparent, b3]
//!     regex: "^x-internal-"
//! ```
//!
//! Every header whose name is listed or matches the regex is removed (all repeats of it);
//! the others keep their order, repeats and null values. Control records are not touched.

use super::{compile_regex, config_error, edit_records};
use crate::batch::Batch;
use crate::component::Transform;
use crate::registry::{BuildContext, TransformFactory};
use crate::Result;
use regex::Regex;
use serde::Deserialize;
use std::collections::HashSet;

const NAME: &str = "drop_headers";

/// Configuration of the `drop_headers` transform.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropHeadersConfig {
    /// Exact header names to remove, e.g. `[traceparent, b3]`.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Regex searched in header names (unanchored); matching headers are removed too.
    pub regex: Option<String>,
}

/// The `drop_headers` transform.
#[derive(Debug)]
pub struct DropHeaders {
    keys: HashSet<String>,
    regex: Option<Regex>,
}

impl DropHeaders {
    /// Compiles the configuration; a bad regex error names the transform and the pattern.
    pub fn new(config: &DropHeadersConfig) -> Result<Self> {
        if config.keys.is_empty() && config.regex.is_none() {
            return Err(config_error(NAME, "give `keys`, `regex`, or both"));
        }
        let regex = config
            .regex
            .as_deref()
            .map(|re| compile_regex(NAME, "regex", re))
            .transpose()?;
        Ok(DropHeaders {
            keys: config.keys.iter().cloned().collect(),
            regex,
        })
    }

    fn drops(&self, name: &str) -> bool {
        self.keys.contains(name) || self.regex.as_ref().is_some_and(|re| re.is_match(name))
    }
}

impl Transform for DropHeaders {
    /// Removes the matching headers of every non-control record.
    fn apply(&mut self, mut batch: Batch) -> Result<Option<Batch>> {
        edit_records(&mut batch, |records| {
            let mut changed = false;
            for r in records.iter_mut().filter(|r| !r.is_control) {
                let before = r.headers.len();
                r.headers.retain(|h| !self.drops(&h.key));
                changed |= r.headers.len() != before;
            }
            Ok(changed)
        })?;
        Ok(Some(batch))
    }
}

/// Factory of the `drop_headers` transform.
#[derive(Debug, Clone, Copy, Default)]
pub struct DropHeadersFactory;

impl TransformFactory for DropHeadersFactory {
    type Config = DropHeadersConfig;

    fn name(&self) -> &'static str {
        NAME
    }

    fn description(&self) -> &'static str {
        "Removes headers by exact name (`keys`) and/or a `regex` on the name; the others \
         keep their order, repeats and null values."
    }

    fn validate(&self, config: &DropHeadersConfig) -> Result<()> {
        DropHeaders::new(config).map(drop)
    }

    fn build(&self, config: DropHeadersConfig, _ctx: &BuildContext) -> Result<Box<dyn Transform>> {
        Ok(Box::new(DropHeaders::new(&config)?))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn drop_headers(yaml: &str) -> DropHeaders {
        let config: DropHeadersConfig = serde_saphyr::from_str(yaml).expect("config parses");
        DropHeaders::new(&config).expect("config is valid")
    }

    #[test]
    fn drops_exact_and_regex_keeping_order_repeats_and_nulls() {
        let mut t = drop_headers("{ keys: [b3], regex: '^x-internal-' }");
        let mut r = rec("t", 0, None, Some("v"));
        r.headers = vec![
            hdr("a", Some("1")),
            hdr("b3", Some("x")),
            hdr("a", None),
            hdr("x-internal-id", Some("9")),
            hdr("b3", None),
            hdr("b", Some("2")),
            hdr("a", Some("3")),
        ];
        let out = t
            .apply(batch("t", 0, 1, vec![r]))
            .expect("apply")
            .expect("batch");
        assert_eq!(
            records(&out)[0].headers,
            vec![
                hdr("a", Some("1")),
                hdr("a", None),
                hdr("b", Some("2")),
                hdr("a", Some("3"))
            ]
        );
    }

    #[test]
    fn raw_batch_kept_when_nothing_dropped() {
        let mut t = drop_headers("keys: [gone]");
        let mut r = rec("t", 0, None, None);
        r.headers = vec![hdr("stay", None)];
        let out = t
            .apply(raw_batch("t", 0, 1, vec![r.clone()]))
            .expect("apply")
            .expect("batch");
        assert!(out.raw().is_some());
        r.headers.push(hdr("gone", Some("x")));
        let out = t
            .apply(raw_batch("t", 0, 1, vec![r]))
            .expect("apply")
            .expect("batch");
        assert!(out.raw().is_none());
        assert_eq!(records(&out)[0].headers, vec![hdr("stay", None)]);
    }

    #[test]
    fn control_records_untouched() {
        let mut t = drop_headers("keys: [h]");
        let mut marker = rec("t", 0, None, None);
        marker.is_control = true;
        marker.headers = vec![hdr("h", None)];
        let out = t
            .apply(batch("t", 0, 1, vec![marker]))
            .expect("apply")
            .expect("batch");
        assert_eq!(records(&out)[0].headers, vec![hdr("h", None)]);
    }

    #[test]
    fn config_errors_name_the_transform_and_regex() {
        let config: DropHeadersConfig =
            serde_saphyr::from_str("regex: '(unclosed'").expect("parses");
        let e = DropHeaders::new(&config)
            .expect_err("bad regex")
            .to_string();
        assert!(
            e.contains("transform `drop_headers`") && e.contains("(unclosed"),
            "{e}"
        );
        let config: DropHeadersConfig = serde_saphyr::from_str("keys: []").expect("parses");
        let e = DropHeaders::new(&config)
            .expect_err("nothing to drop")
            .to_string();
        assert!(e.contains("give `keys`, `regex`, or both"), "{e}");
    }
}
