//! Built-in transforms: what Kafka Connect's single message transforms give people.
//!
//! | YAML `type:`     | what it does |
//! |------------------|--------------|
//! | `filter`         | keeps records matching a predicate (topic, partition, key, headers, time; `all`/`any`/`not`) |
//! | `rename_topic`   | renames topics by an exact map and/or a regex with capture groups |
//! | `insert_headers` | appends fixed headers to every record |
//! | `drop_headers`   | removes headers by exact name and/or regex |
//! | `mask`           | replaces or drops fields of JSON values (test copies of production data) |
//! | `sample`         | keeps a deterministic share of records (by key hash, or every N-th offset) |
//!
//! Rules every transform here follows:
//!
//! - **Offsets and spans never change.** A transform that removes every record of a batch
//!   still returns the batch, with an empty record list and its `first_offset..next_offset`
//!   span intact, so the sink and the checkpoint see that the span was consumed. Transforms
//!   here never return `None`, so they never need to resolve an ack themselves.
//! - **Control records** (transaction markers) are not user data: they pass through every
//!   transform untouched (a filter or sample never drops them, headers and masks never touch
//!   them). Restore drops them itself.
//! - **Raw Kafka batches stay raw when nothing changed.** A raw batch is decoded to look at
//!   its records, but its untouched bytes are kept unless some record really changed (or was
//!   dropped), so the `raw` format still writes byte-exact Kafka batches behind, say, a filter
//!   that matched everything. `rename_topic` never needs to decode at all: Kafka record
//!   batches do not contain the topic name.
//! - **No user data in errors.** Errors name the transform, the record coordinates and what
//!   is wrong, never the key or value.

pub mod drop_headers;
pub mod filter;
pub mod insert_headers;
pub mod mask;
pub mod rename_topic;
pub mod sample;

pub use drop_headers::{DropHeaders, DropHeadersConfig, DropHeadersFactory};
pub use filter::{Filter, FilterConfig, FilterFactory, Predicate};
pub use insert_headers::{InsertHeaders, InsertHeadersConfig, InsertHeadersFactory};
pub use mask::{Mask, MaskConfig, MaskFactory};
pub use rename_topic::{RenameTopic, RenameTopicConfig, RenameTopicFactory};
pub use sample::{Sample, SampleConfig, SampleFactory};

use crate::batch::{Batch, Payload};
use crate::record::Record;
use crate::{Error, Result};
use regex::Regex;

/// Registers every built-in transform: `filter`, `rename_topic`, `insert_headers`,
/// `drop_headers`, `mask` and `sample`.
pub fn register(reg: &mut crate::registry::Registry) {
    reg.register_transform(FilterFactory);
    reg.register_transform(RenameTopicFactory);
    reg.register_transform(InsertHeadersFactory);
    reg.register_transform(DropHeadersFactory);
    reg.register_transform(MaskFactory);
    reg.register_transform(SampleFactory);
}

/// A configuration error that names the transform: `transform `NAME`: MESSAGE`.
pub(crate) fn config_error(transform: &str, message: impl std::fmt::Display) -> Error {
    Error::config(format!("transform `{transform}`: {message}"))
}

/// Compiles a user regex; the error names the transform, the option and the pattern.
pub(crate) fn compile_regex(transform: &str, option: &str, pattern: &str) -> Result<Regex> {
    Regex::new(pattern).map_err(|e| {
        config_error(
            transform,
            format!("option `{option}`: invalid regex `{pattern}`: {e}"),
        )
    })
}

/// Runs `edit` over the batch's records. `edit` returns whether it changed anything.
///
/// A decoded batch is edited in place. A raw batch is decoded into a scratch vector; the
/// decoded records replace the raw bytes only when `edit` reports a change, so untouched
/// raw batches keep their byte-exact Kafka form.
pub(crate) fn edit_records<F>(batch: &mut Batch, edit: F) -> Result<()>
where
    F: FnOnce(&mut Vec<Record>) -> Result<bool>,
{
    match &mut batch.payload {
        Payload::Records(records) => {
            edit(records)?;
        }
        Payload::Raw(_) => {
            let mut records = batch.records()?.into_owned();
            if edit(&mut records)? {
                batch.payload = Payload::Records(records);
            }
        }
    }
    Ok(())
}

/// Keeps the records for which `keep` is true (control records always stay); keeps a raw
/// batch raw when nothing was dropped. The batch's offset span never changes.
pub(crate) fn retain_records<F>(batch: &mut Batch, mut keep: F) -> Result<()>
where
    F: FnMut(&Record) -> bool,
{
    edit_records(batch, |records| {
        let before = records.len();
        records.retain(|r| r.is_control || keep(r));
        Ok(records.len() != before)
    })
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use crate::registry::{BuildContext, ConfigInput, Registry};

    fn registry() -> Registry {
        let mut reg = Registry::new();
        super::register(&mut reg);
        reg
    }

    fn ctx() -> BuildContext {
        BuildContext {
            pipeline: "test".into(),
            ..Default::default()
        }
    }

    #[test]
    fn registers_all_six() {
        let mut names = registry().transform_names();
        names.sort_unstable();
        assert_eq!(
            names,
            vec![
                "drop_headers",
                "filter",
                "insert_headers",
                "mask",
                "rename_topic",
                "sample"
            ]
        );
    }

    #[test]
    fn builds_from_yaml_through_the_registry() {
        let reg = registry();
        let yaml = "type: filter\npredicate: { key_regex: '^user-' }\n";
        let mut t = reg
            .build_transform("filter", &ConfigInput::yaml(yaml, "t.yaml"), &ctx())
            .expect("builds");
        let b = batch(
            "t",
            0,
            2,
            vec![
                rec("t", 0, Some("user-1"), None),
                rec("t", 1, Some("x"), None),
            ],
        );
        let out = t.apply(b).expect("apply").expect("batch");
        assert_eq!(offsets(&out), vec![0]);
    }

    #[test]
    fn registry_reports_bad_regex_and_unknown_option() {
        let reg = registry();
        let yaml = "type: drop_headers\nregex: 'x-(['\n";
        let e = reg
            .build_transform("drop_headers", &ConfigInput::yaml(yaml, "t.yaml"), &ctx())
            .err()
            .expect("bad regex")
            .to_string();
        assert!(e.contains("drop_headers") && e.contains("x-(["), "{e}");
        let yaml = "type: sample\npercnt: 10\n";
        let e = reg
            .build_transform("sample", &ConfigInput::yaml(yaml, "t.yaml"), &ctx())
            .err()
            .expect("unknown option")
            .to_string();
        assert!(e.contains("percnt"), "{e}");
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Hand-built batches for the transform tests.

    use crate::ack::Ack;
    use crate::batch::{Batch, RawBatches, RawDecoder};
    use crate::record::{Header, Record};
    use bytes::Bytes;
    use std::sync::Arc;

    /// A record of topic `t` partition 0 at `offset` with the given key and value.
    pub fn rec(topic: &str, offset: i64, key: Option<&str>, value: Option<&str>) -> Record {
        let mut r = Record::new(
            Arc::from(topic),
            0,
            offset,
            value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        );
        r.key = key.map(|k| Bytes::copy_from_slice(k.as_bytes()));
        r
    }

    /// A header with a UTF-8 value (or null).
    pub fn hdr(key: &str, value: Option<&str>) -> Header {
        Header::new(key, value.map(|v| Bytes::copy_from_slice(v.as_bytes())))
    }

    /// A batch of `records` on partition 0 covering `first..next`.
    pub fn batch(topic: &str, first: i64, next: i64, records: Vec<Record>) -> Batch {
        Batch::from_records(Arc::from(topic), 0, first, next, records, Ack::none())
    }

    /// The records of a batch (decoded).
    pub fn records(batch: &Batch) -> Vec<Record> {
        batch.records().expect("decode").into_owned()
    }

    /// The offsets of a batch's records.
    pub fn offsets(batch: &Batch) -> Vec<i64> {
        records(batch).iter().map(|r| r.offset).collect()
    }

    /// A decoder that hands back fixed records (with the topic it is asked for), to test
    /// raw batches without the Kafka wire format.
    struct FixedDecoder(Vec<Record>);

    impl RawDecoder for FixedDecoder {
        fn decode(
            &self,
            topic: &Arc<str>,
            _partition: i32,
            _raw: &RawBatches,
        ) -> Result<Vec<Record>, ferry_model::Error> {
            Ok(self
                .0
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.topic = topic.clone();
                    r
                })
                .collect())
        }
    }

    /// A raw batch whose decoder yields `records`.
    pub fn raw_batch(topic: &str, first: i64, next: i64, records: Vec<Record>) -> Batch {
        let count = records.len() as u64;
        let mut b = batch(topic, first, next, Vec::new());
        b.payload = crate::batch::Payload::Raw(RawBatches {
            bytes: Bytes::from_static(b"raw kafka batch bytes"),
            record_count: count,
            min_timestamp: None,
            max_timestamp: None,
            aborted: Vec::new(),
            decoder: Arc::new(FixedDecoder(records)),
        });
        b
    }
}
