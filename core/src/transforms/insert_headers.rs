//! `insert_headers`: appends fixed headers to every record.
//!
//! ```yaml
//! transforms:
//!   - type: insert_headers
//!     headers:
//!       - { key: restored-by, value: ferry }
//!       - { key: masked, value: null }
//! ```
//!
//! Headers are appended after the record's own, which stay as they are (Kafka headers may
//! repeat, so a record that already has `restored-by` then has two). Control records are not
//! touched.

use super::{config_error, edit_records};
use crate::batch::Batch;
use crate::component::Transform;
use crate::record::Header;
use crate::registry::{BuildContext, TransformFactory};
use crate::Result;
use bytes::Bytes;
use serde::Deserialize;

const NAME: &str = "insert_headers";

/// Configuration of the `insert_headers` transform.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InsertHeadersConfig {
    /// Headers appended to every record, in this order, e.g.
    /// `[{ key: restored-by, value: ferry }]`.
    pub headers: Vec<HeaderSpec>,
}

/// One header to insert.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderSpec {
    /// Header name.
    pub key: String,
    /// Header value as a UTF-8 string; `null` (or left out) writes a null value.
    pub value: Option<String>,
}

/// The `insert_headers` transform.
#[derive(Debug)]
pub struct InsertHeaders {
    headers: Vec<Header>,
}

impl InsertHeaders {
    /// Checks the configuration (at least one header).
    pub fn new(config: &InsertHeadersConfig) -> Result<Self> {
        if config.headers.is_empty() {
            return Err(config_error(NAME, "option `headers` lists no headers"));
        }
        Ok(InsertHeaders {
            headers: config
                .headers
                .iter()
                .map(|h| Header::new(h.key.clone(), h.value.clone().map(Bytes::from)))
                .collect(),
        })
    }
}

impl Transform for InsertHeaders {
    /// Appends the configured headers to every non-control record.
    fn apply(&mut self, mut batch: Batch) -> Result<Option<Batch>> {
        edit_records(&mut batch, |records| {
            let mut changed = false;
            for r in records.iter_mut().filter(|r| !r.is_control) {
                r.headers.extend(self.headers.iter().cloned());
                changed = true;
            }
            Ok(changed)
        })?;
        Ok(Some(batch))
    }
}

/// Factory of the `insert_headers` transform.
#[derive(Debug, Clone, Copy, Default)]
pub struct InsertHeadersFactory;

impl TransformFactory for InsertHeadersFactory {
    type Config = InsertHeadersConfig;

    fn name(&self) -> &'static str {
        NAME
    }

    fn description(&self) -> &'static str {
        "Appends fixed headers (string or null values) to every record, keeping the \
         record's own headers."
    }

    fn validate(&self, config: &InsertHeadersConfig) -> Result<()> {
        InsertHeaders::new(config).map(drop)
    }

    fn build(
        &self,
        config: InsertHeadersConfig,
        _ctx: &BuildContext,
    ) -> Result<Box<dyn Transform>> {
        Ok(Box::new(InsertHeaders::new(&config)?))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn insert(yaml: &str) -> InsertHeaders {
        let config: InsertHeadersConfig = serde_saphyr::from_str(yaml).expect("config parses");
        InsertHeaders::new(&config).expect("config is valid")
    }

    #[test]
    fn appends_after_existing_headers_keeping_repeats_and_nulls() {
        let mut t = insert(
            "headers:\n  - { key: origin, value: ferry }\n  - { key: flag, value: null }\n  - { key: bare }",
        );
        let mut r = rec("t", 3, Some("k"), Some("v"));
        r.headers = vec![
            hdr("origin", Some("app")),
            hdr("n", None),
            hdr("origin", None),
        ];
        let out = t
            .apply(batch("t", 3, 4, vec![r]))
            .expect("apply")
            .expect("batch");
        assert_eq!(
            records(&out)[0].headers,
            vec![
                hdr("origin", Some("app")),
                hdr("n", None),
                hdr("origin", None),
                hdr("origin", Some("ferry")),
                hdr("flag", None),
                hdr("bare", None),
            ]
        );
        assert_eq!((out.first_offset, out.next_offset), (3, 4));
    }

    #[test]
    fn control_records_untouched_and_raw_kept_when_only_control() {
        let mut t = insert("headers: [{ key: a, value: b }]");
        let mut marker = rec("t", 0, None, None);
        marker.is_control = true;
        let out = t
            .apply(raw_batch("t", 0, 1, vec![marker.clone()]))
            .expect("apply")
            .expect("batch");
        assert!(out.raw().is_some());
        let out = t
            .apply(batch("t", 0, 2, vec![marker, rec("t", 1, None, None)]))
            .expect("apply")
            .expect("batch");
        let recs = records(&out);
        assert!(recs[0].headers.is_empty());
        assert_eq!(recs[1].headers, vec![hdr("a", Some("b"))]);
    }

    #[test]
    fn empty_list_and_unknown_keys_are_rejected() {
        let config: InsertHeadersConfig = serde_saphyr::from_str("headers: []").expect("parses");
        let e = InsertHeaders::new(&config).expect_err("empty").to_string();
        assert!(e.contains("transform `insert_headers`"), "{e}");
        let r: std::result::Result<InsertHeadersConfig, _> =
            serde_saphyr::from_str("headers: [{ name: a, value: b }]");
        let e = r.expect_err("a header has key and value").to_string();
        assert!(e.contains("unknown field `name`"), "{e}");
    }
}
