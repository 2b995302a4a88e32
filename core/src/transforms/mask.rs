//! `mask`: hides fields of JSON record values, for test-environment copies of production data.
//!
//! ```yaml
//! transforms:
//!   - type: mask
//!     fields: [user.email, card.number, items.price]
//!     action: replace        # replace (default) | drop
//!     replacement: "***"     # default "***"; any YAML/JSON value, e.g. 0 or null
//!     on_invalid: pass       # pass (default): non-JSON values pass unchanged | fail
//! ```
//!
//! A field is a dotted path into nested objects (`user.email`). Where the path meets an
//! array, it is applied to every element (`items.price` masks the price of each item; a
//! top-level array of objects works the same way). Paths that are absent are ignored, and
//! fields whose value is `null` stay `null` (nothing to hide). Keys containing a dot cannot
//! be addressed.
//!
//! Only records in which something was masked are re-encoded (compact JSON, key order kept);
//! all others keep their exact bytes. Null values (tombstones), keys, headers and control
//! records are never touched. Errors never quote the value.

use super::{config_error, edit_records};
use crate::batch::Batch;
use crate::component::Transform;
use crate::record::Record;
use crate::registry::{BuildContext, TransformFactory};
use crate::{Error, Result};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

const NAME: &str = "mask";

/// What to do with a masked field.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MaskAction {
    /// Replace the field's value by `replacement`.
    #[default]
    Replace,
    /// Remove the field from its object.
    Drop,
}

/// What to do with a value that is not JSON.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OnInvalid {
    /// Let the record through unchanged.
    #[default]
    Pass,
    /// Stop the pipeline with an error naming the record's topic, partition and offset.
    Fail,
}

fn default_replacement() -> Value {
    Value::String("***".into())
}

/// Configuration of the `mask` transform.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaskConfig {
    /// Dotted paths of the fields to mask, e.g. `[user.email, card.number]`; a path that
    /// meets an array applies to each of its elements.
    pub fields: Vec<String>,
    /// `replace` (default) puts `replacement` in place of the value; `drop` removes the field.
    #[serde(default)]
    pub action: MaskAction,
    /// Value written by `action: replace` (default `"***"`); any JSON value, e.g. `0`.
    #[serde(default = "default_replacement")]
    pub replacement: Value,
    /// Values that are not JSON: `pass` (default) lets them through unchanged, `fail`
    /// stops the pipeline.
    #[serde(default)]
    pub on_invalid: OnInvalid,
}

/// The `mask` transform.
#[derive(Debug)]
pub struct Mask {
    paths: Vec<Vec<String>>,
    action: MaskAction,
    replacement: Value,
    on_invalid: OnInvalid,
}

impl Mask {
    /// Checks the configuration: at least one field, no empty path segment.
    pub fn new(config: &MaskConfig) -> Result<Self> {
        if config.fields.is_empty() {
            return Err(config_error(NAME, "option `fields` lists no fields"));
        }
        let mut paths = Vec::with_capacity(config.fields.len());
        for (i, field) in config.fields.iter().enumerate() {
            let path: Vec<String> = field.split('.').map(str::to_owned).collect();
            if path.iter().any(String::is_empty) {
                return Err(config_error(
                    NAME,
                    format!(
                        "option `fields[{i}]`: `{field}` is not a dotted path like `user.email`"
                    ),
                ));
            }
            paths.push(path);
        }
        Ok(Mask {
            paths,
            action: config.action,
            replacement: config.replacement.clone(),
            on_invalid: config.on_invalid,
        })
    }

    /// Masks one JSON document in place; true when something changed.
    pub fn mask_value(&self, doc: &mut Value) -> bool {
        let mut changed = false;
        for path in &self.paths {
            changed |= self.apply_path(doc, path);
        }
        changed
    }

    fn apply_path(&self, v: &mut Value, path: &[String]) -> bool {
        match v {
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.apply_path(item, path) | changed),
            Value::Object(map) => {
                let Some((field, rest)) = path.split_first() else {
                    return false;
                };
                if !rest.is_empty() {
                    return map
                        .get_mut(field)
                        .is_some_and(|child| self.apply_path(child, rest));
                }
                match self.action {
                    MaskAction::Replace => match map.get_mut(field) {
                        Some(slot) if !slot.is_null() && *slot != self.replacement => {
                            *slot = self.replacement.clone();
                            true
                        }
                        _ => false,
                    },
                    MaskAction::Drop => map.shift_remove(field).is_some(),
                }
            }
            _ => false,
        }
    }

    /// Masks one record's value; true when it changed.
    fn mask_record(&self, r: &mut Record) -> Result<bool> {
        if r.is_control {
            return Ok(false);
        }
        let Some(bytes) = &r.value else {
            return Ok(false);
        };
        let mut doc: Value = match serde_json::from_slice(bytes) {
            Ok(doc) => doc,
            Err(e) => {
                return match self.on_invalid {
                    OnInvalid::Pass => Ok(false),
                    OnInvalid::Fail => Err(Error::component(
                        format!("transform {NAME}"),
                        format!(
                            "record {}/{}@{}: value is not JSON ({e}); set `on_invalid: pass` \
                             to let such records through",
                            r.topic, r.partition, r.offset
                        ),
                    )),
                };
            }
        };
        if !self.mask_value(&mut doc) {
            return Ok(false);
        }
        let out = serde_json::to_vec(&doc).map_err(|e| {
            Error::component(
                format!("transform {NAME}"),
                format!(
                    "record {}/{}@{}: re-encoding the masked value: {e}",
                    r.topic, r.partition, r.offset
                ),
            )
        })?;
        r.value = Some(Bytes::from(out));
        Ok(true)
    }
}

impl Transform for Mask {
    /// Masks the configured fields of every JSON value; offsets and the span never change.
    fn apply(&mut self, mut batch: Batch) -> Result<Option<Batch>> {
        edit_records(&mut batch, |records| {
            let mut changed = false;
            for r in records.iter_mut() {
                changed |= self.mask_record(r)?;
            }
            Ok(changed)
        })?;
        Ok(Some(batch))
    }
}

/// Factory of the `mask` transform.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaskFactory;

impl TransformFactory for MaskFactory {
    type Config = MaskConfig;

    fn name(&self) -> &'static str {
        NAME
    }

    fn description(&self) -> &'static str {
        "Replaces or drops fields (dotted paths, through arrays) of JSON record values, for \
         test copies of production data; non-JSON values pass unchanged unless \
         `on_invalid: fail`."
    }

    fn validate(&self, config: &MaskConfig) -> Result<()> {
        Mask::new(config).map(drop)
    }

    fn build(&self, config: MaskConfig, _ctx: &BuildContext) -> Result<Box<dyn Transform>> {
        Ok(Box::new(Mask::new(&config)?))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;
    use serde_json::json;

    fn mask(yaml: &str) -> Mask {
        let config: MaskConfig = serde_saphyr::from_str(yaml).expect("config parses");
        Mask::new(&config).expect("config is valid")
    }

    fn run(m: &mut Mask, values: &[&str]) -> Vec<Option<String>> {
        let recs = values
            .iter()
            .enumerate()
            .map(|(i, v)| rec("t", i as i64, Some("k"), Some(v)))
            .collect();
        let out = m
            .apply(batch("t", 0, values.len() as i64, recs))
            .expect("apply")
            .expect("batch");
        records(&out)
            .into_iter()
            .map(|r| {
                r.value
                    .map(|v| String::from_utf8(v.to_vec()).expect("utf-8"))
            })
            .collect()
    }

    fn json_of(s: &Option<String>) -> Value {
        serde_json::from_str(s.as_deref().expect("value")).expect("json")
    }

    const DOC: &str = r#"{"id":7,"user":{"name":"Ann","email":"ann@example.com"},
        "items":[{"sku":"a","card":{"number":"4111"}},{"sku":"b","card":{"number":"5500"}},{"sku":"c"}],
        "note":null}"#;

    #[test]
    fn replace_in_nested_objects_and_arrays() {
        let mut m = mask("fields: [user.email, items.card.number, note, missing.path]");
        let out = run(&mut m, &[DOC]);
        assert_eq!(
            json_of(&out[0]),
            json!({"id":7,"user":{"name":"Ann","email":"***"},
                "items":[{"sku":"a","card":{"number":"***"}},{"sku":"b","card":{"number":"***"}},{"sku":"c"}],
                "note":null})
        );
    }

    #[test]
    fn drop_in_nested_objects_and_arrays_keeps_key_order() {
        let mut m = mask("{ fields: [user.email, items.card], action: drop }");
        let out = run(&mut m, &[DOC]);
        assert_eq!(
            out[0].as_deref(),
            Some(
                r#"{"id":7,"user":{"name":"Ann"},"items":[{"sku":"a"},{"sku":"b"},{"sku":"c"}],"note":null}"#
            )
        );
    }

    #[test]
    fn custom_replacement_and_top_level_array() {
        let mut m = mask("{ fields: [card.number], replacement: 0 }");
        let out = run(&mut m, &[r#"[{"card":{"number":4111}},{"card":{}}]"#]);
        assert_eq!(json_of(&out[0]), json!([{"card":{"number":0}},{"card":{}}]));
    }

    #[test]
    fn non_json_and_untouched_values_keep_their_bytes() {
        let mut m = mask("fields: [user.email]");
        let spaced = r#"{ "user" : { "name" : "x" } }"#;
        let out = run(&mut m, &["not json {", spaced, "42"]);
        assert_eq!(out[0].as_deref(), Some("not json {"));
        assert_eq!(out[1].as_deref(), Some(spaced));
        assert_eq!(out[2].as_deref(), Some("42"));
    }

    #[test]
    fn tombstones_and_control_records_pass() {
        let mut m = mask("fields: [a]");
        let mut marker = rec("t", 1, None, Some(r#"{"a":1}"#));
        marker.is_control = true;
        let out = m
            .apply(batch("t", 0, 2, vec![rec("t", 0, Some("k"), None), marker]))
            .expect("apply")
            .expect("batch");
        let recs = records(&out);
        assert_eq!(recs[0].value, None);
        assert_eq!(recs[1].value.as_deref(), Some(&br#"{"a":1}"#[..]));
    }

    #[test]
    fn on_invalid_fail_names_the_record_not_the_value() {
        let mut m = mask("{ fields: [a], on_invalid: fail }");
        let b = batch(
            "orders",
            0,
            6,
            vec![rec("orders", 5, None, Some("secret-data"))],
        );
        let e = m.apply(b).expect_err("not json").to_string();
        assert!(e.contains("mask") && e.contains("orders/0@5"), "{e}");
        assert!(!e.contains("secret-data"), "{e}");
    }

    #[test]
    fn raw_batch_kept_when_nothing_masked() {
        let mut m = mask("fields: [secret]");
        let out = m
            .apply(raw_batch(
                "t",
                0,
                1,
                vec![rec("t", 0, None, Some(r#"{"a":1}"#))],
            ))
            .expect("apply")
            .expect("batch");
        assert!(out.raw().is_some());
        let out = m
            .apply(raw_batch(
                "t",
                0,
                1,
                vec![rec("t", 0, None, Some(r#"{"secret":1}"#))],
            ))
            .expect("apply")
            .expect("batch");
        assert!(out.raw().is_none());
        assert_eq!(
            records(&out)[0].value.as_deref(),
            Some(&br#"{"secret":"***"}"#[..])
        );
    }

    #[test]
    fn config_errors() {
        let bad = |yaml: &str| {
            let config: MaskConfig = serde_saphyr::from_str(yaml).expect("parses");
            Mask::new(&config).expect_err("invalid").to_string()
        };
        assert!(bad("fields: []").contains("transform `mask`"));
        assert!(bad("fields: [user..email]").contains("user..email"));
        let r: std::result::Result<MaskConfig, _> =
            serde_saphyr::from_str("{ fields: [a], action: hash }");
        let e = r.expect_err("hash is not an action").to_string();
        assert!(e.contains("hash"), "{e}");
    }
}
