//! Inference of the typed columns of `value: {as: json}` when no `schema` is given (the
//! rules are in the [parent module's documentation](super)).
//!
//! [`infer_schema`] applies the rules to a list of values; [`JsonInference`] is the state
//! of one run (one sample, then one fixed schema, per topic), shared by the encoders of a
//! format.

use super::{as_timestamp_ms, utc, JsonField, JsonType, JsonValueColumns};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Default number of values of a topic looked at before its columns are fixed.
pub const DEFAULT_INFER_RECORDS: u64 = 1000;

/// The sample of a topic stops once its records (as [`ferry_core::Record::size_hint`])
/// reach this many bytes, whatever `infer_records` says: encoders buffer the records of
/// the sample until the columns are fixed.
pub const INFER_MAX_BYTES: usize = 16 * 1024 * 1024;

/// The JSON kind of one sampled field value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Int,
    Float,
    Bool,
    /// A string that is an RFC 3339 timestamp.
    Timestamp,
    /// Any other string.
    Text,
    /// An object or an array.
    Nested,
}

/// The kind of a field value, read without building it.
struct KindOf(Kind);

impl<'de> Deserialize<'de> for KindOf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor).map(KindOf)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }

    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
        Ok(Kind::Bool)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Kind, E> {
        Ok(Kind::Int)
    }

    fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
        // Beyond int64: only a float column holds it.
        Ok(if i64::try_from(v).is_ok() {
            Kind::Int
        } else {
            Kind::Float
        })
    }

    fn visit_f64<E>(self, _: f64) -> Result<Kind, E> {
        Ok(Kind::Float)
    }

    fn visit_str<E>(self, s: &str) -> Result<Kind, E> {
        Ok(if is_timestamp(s) {
            Kind::Timestamp
        } else {
            Kind::Text
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Kind::Nested)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Kind::Nested)
    }
}

/// A sampled value: the top-level fields of a JSON object in their order, or something
/// else (ignored by inference).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sampled {
    /// A JSON object: `(name, kind)` of each field, in document order.
    Object(Vec<(String, Kind)>),
    /// JSON that is not an object.
    Other,
}

impl Sampled {
    /// Reads a value: `Err` with serde_json's message when it is not JSON.
    pub(crate) fn parse(value: &[u8]) -> Result<Sampled, String> {
        serde_json::from_slice::<Sampled>(value).map_err(|e| e.to_string())
    }
}

impl<'de> Deserialize<'de> for Sampled {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SampledVisitor)
    }
}

struct SampledVisitor;

impl<'de> Visitor<'de> for SampledVisitor {
    type Value = Sampled;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Sampled, A::Error> {
        let mut fields = Vec::new();
        while let Some((name, KindOf(kind))) = map.next_entry::<String, KindOf>()? {
            fields.push((name, kind));
        }
        Ok(Sampled::Object(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Sampled, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Sampled::Other)
    }

    fn visit_unit<E>(self) -> Result<Sampled, E> {
        Ok(Sampled::Other)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Sampled, E> {
        Ok(Sampled::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Sampled, E> {
        Ok(Sampled::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Sampled, E> {
        Ok(Sampled::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Sampled, E> {
        Ok(Sampled::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<Sampled, E> {
        Ok(Sampled::Other)
    }
}

/// Whether `s` is an RFC 3339 timestamp (`2024-11-24T10:00:00Z`,
/// `2024-11-24T10:00:00.5+01:00`; a space may replace the `T`) that the `timestamp_ms`
/// column reads.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let at = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    // YYYY-MM-DDTHH:MM:SS
    let shape = digits(0..4)
        && at(4, b"-")
        && digits(5..7)
        && at(7, b"-")
        && digits(8..10)
        && at(10, b"Tt ")
        && digits(11..13)
        && at(13, b":")
        && digits(14..16)
        && at(16, b":")
        && digits(17..19);
    if !shape {
        return false;
    }
    let mut i = 19;
    if at(i, b".") {
        let start = i + 1;
        i = start;
        while at(i, b"0123456789") {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    let zone = match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            i + 6 == b.len() && digits(i + 1..i + 3) && at(i + 3, b":") && digits(i + 4..i + 6)
        }
        _ => false,
    };
    zone && as_timestamp_ms(&serde_json::Value::String(s.to_string()), &utc()).is_some()
}

/// The kinds seen for one field.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    int: bool,
    float: bool,
    bool: bool,
    timestamp: bool,
    text: bool,
    nested: bool,
}

impl Seen {
    fn add(&mut self, kind: Kind) {
        match kind {
            Kind::Null => {}
            Kind::Int => self.int = true,
            Kind::Float => self.float = true,
            Kind::Bool => self.bool = true,
            Kind::Timestamp => self.timestamp = true,
            Kind::Text => self.text = true,
            Kind::Nested => self.nested = true,
        }
    }

    fn ty(&self) -> JsonType {
        let number = self.int || self.float;
        let string = self.timestamp || self.text;
        let families = [number, self.bool, string, self.nested]
            .iter()
            .filter(|x| **x)
            .count();
        match families {
            0 => JsonType::String,
            1 if self.int && !self.float => JsonType::Int64,
            1 if number => JsonType::Float64,
            1 if self.bool => JsonType::Boolean,
            1 if string && !self.text => JsonType::TimestampMs,
            1 if string => JsonType::String,
            _ => JsonType::Json,
        }
    }
}

/// The sample of one topic.
#[derive(Debug, Default)]
struct Sample {
    /// Fields in first-seen order, with the kinds seen.
    fields: Vec<(String, Seen)>,
    index: HashMap<String, usize>,
    /// Non-null values looked at.
    values: u64,
    /// Of which JSON objects.
    objects: u64,
    /// Bytes of the records looked at (tombstones too).
    bytes: usize,
}

impl Sample {
    fn add(&mut self, sampled: &Sampled) {
        self.values += 1;
        let Sampled::Object(fields) = sampled else {
            return;
        };
        self.objects += 1;
        for (name, kind) in fields {
            if name.is_empty() {
                // Not a column name (and `/` is the pointer of the whole document).
                continue;
            }
            let i = match self.index.get(name) {
                Some(i) => *i,
                None => {
                    self.index.insert(name.clone(), self.fields.len());
                    self.fields.push((name.clone(), Seen::default()));
                    self.fields.len() - 1
                }
            };
            if let Some((_, seen)) = self.fields.get_mut(i) {
                seen.add(*kind);
            }
        }
    }

    fn schema(&self) -> Vec<JsonField> {
        self.fields
            .iter()
            .map(|(name, seen)| JsonField {
                name: name.clone(),
                ty: seen.ty(),
                path: None,
            })
            .collect()
    }
}

/// The columns the inference rules give for these values (`None`: a null value, which
/// inference ignores; values that are not JSON objects are ignored too). An empty list
/// means no value was a JSON object with a named field.
pub fn infer_schema<'a>(values: impl IntoIterator<Item = Option<&'a [u8]>>) -> Vec<JsonField> {
    let mut sample = Sample::default();
    for v in values.into_iter().flatten() {
        if let Ok(s) = Sampled::parse(v) {
            sample.add(&s);
        } else {
            sample.values += 1;
        }
    }
    sample.schema()
}

/// The inferred columns of a topic, fixed for the run (empty: no typed column, since no
/// sampled value was a JSON object).
pub type InferredFields = Arc<Vec<JsonField>>;

enum TopicState {
    Sampling(Sample),
    Fixed(InferredFields),
}

/// The inference state of one run: per topic, the sample so far or the fixed columns.
/// Shared by the encoders of a format, so every partition of a topic gets the same
/// columns.
pub struct JsonInference {
    column: String,
    infer_records: u64,
    max_bytes: usize,
    topics: Mutex<HashMap<String, TopicState>>,
}

impl fmt::Debug for JsonInference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonInference")
            .field("column", &self.column)
            .field("infer_records", &self.infer_records)
            .finish_non_exhaustive()
    }
}

impl JsonInference {
    /// The state of a run with these options (nothing sampled yet).
    pub fn new(config: &JsonValueColumns) -> Self {
        Self::with_limits(config, INFER_MAX_BYTES)
    }

    /// [`JsonInference::new`] with another byte bound of the samples.
    pub fn with_limits(config: &JsonValueColumns, max_bytes: usize) -> Self {
        JsonInference {
            column: config.column.clone(),
            infer_records: config.infer_records.unwrap_or(DEFAULT_INFER_RECORDS).max(1),
            max_bytes: max_bytes.max(1),
            topics: Mutex::new(HashMap::new()),
        }
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, TopicState>> {
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a record of `topic` to its sample: `sampled` is its value (`None`: a null
    /// value), `bytes` its size. Returns the topic's columns once they are fixed (by this
    /// record completing the sample, or earlier); the record is then not sampled.
    pub(crate) fn observe(
        &self,
        topic: &str,
        sampled: Option<&Sampled>,
        bytes: usize,
    ) -> Option<InferredFields> {
        let mut topics = self.topics();
        let state = topics
            .entry(topic.to_string())
            .or_insert_with(|| TopicState::Sampling(Sample::default()));
        let sample = match state {
            TopicState::Fixed(f) => return Some(f.clone()),
            TopicState::Sampling(s) => s,
        };
        if let Some(s) = sampled {
            sample.add(s);
        }
        sample.bytes = sample.bytes.saturating_add(bytes);
        let why = if sample.values >= self.infer_records {
            Some(format!("{} values", sample.values))
        } else if sample.bytes >= self.max_bytes {
            Some(format!(
                "{} values ({} bytes of records, the sample's bound)",
                sample.values, sample.bytes
            ))
        } else {
            None
        };
        why.map(|why| self.fix_locked(topic, state, &why))
    }

    /// The columns of `topic` if fixed.
    pub(crate) fn fixed(&self, topic: &str) -> Option<InferredFields> {
        match self.topics().get(topic) {
            Some(TopicState::Fixed(f)) => Some(f.clone()),
            _ => None,
        }
    }

    /// Fixes the columns of `topic` from its sample so far (a segment closes before the
    /// sample is complete); returns them.
    pub(crate) fn fix(&self, topic: &str) -> InferredFields {
        let mut topics = self.topics();
        let state = topics
            .entry(topic.to_string())
            .or_insert_with(|| TopicState::Sampling(Sample::default()));
        if let TopicState::Fixed(f) = state {
            return f.clone();
        }
        self.fix_locked(
            topic,
            state,
            "the values seen when a segment closed before the sample was complete",
        )
    }

    fn fix_locked(&self, topic: &str, state: &mut TopicState, why: &str) -> InferredFields {
        let (fields, values, objects) = match state {
            TopicState::Fixed(f) => return f.clone(),
            TopicState::Sampling(s) => (Arc::new(s.schema()), s.values, s.objects),
        };
        if fields.is_empty() {
            tracing::warn!(
                topic = %topic,
                values,
                column = %self.column,
                "value (as: json): no sampled value of topic {topic} is a JSON object with fields (looked at {why}): its files have no `{}` column in this run; give `schema:` to choose the columns",
                self.column
            );
        } else {
            let yaml = schema_yaml(&fields);
            tracing::info!(
                topic = %topic,
                values,
                objects,
                "value (as: json): inferred schema for topic {topic} (from {why}): {yaml} — put it in the pipeline as `schema:` to pin it"
            );
        }
        *state = TopicState::Fixed(fields.clone());
        fields
    }
}

/// A YAML scalar for a field name: plain when safe, else double-quoted (a JSON string is a
/// valid YAML double-quoted scalar).
fn yaml_name(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !matches!(
            name.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        name.to_string()
    } else {
        serde_json::Value::String(name.to_string()).to_string()
    }
}

fn type_name(ty: JsonType) -> &'static str {
    match ty {
        JsonType::String => "string",
        JsonType::Int32 => "int32",
        JsonType::Int64 => "int64",
        JsonType::Float64 => "float64",
        JsonType::Boolean => "boolean",
        JsonType::TimestampMs => "timestamp_ms",
        JsonType::Json => "json",
    }
}

/// The columns as a YAML flow sequence, ready to paste as `schema:`
/// (`[{name: id, type: int64}, …]`).
pub fn schema_yaml(fields: &[JsonField]) -> String {
    let items: Vec<String> = fields
        .iter()
        .map(|f| match &f.path {
            Some(p) => format!(
                "{{name: {}, type: {}, path: {}}}",
                yaml_name(&f.name),
                type_name(f.ty),
                serde_json::Value::String(p.clone())
            ),
            None => format!(
                "{{name: {}, type: {}}}",
                yaml_name(&f.name),
                type_name(f.ty)
            ),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(values: &[&str]) -> Vec<(String, JsonType)> {
        infer_schema(values.iter().map(|v| Some(v.as_bytes())))
            .into_iter()
            .map(|f| {
                assert_eq!(f.path, None);
                (f.name, f.ty)
            })
            .collect()
    }

    fn fields(list: &[(&str, JsonType)]) -> Vec<(String, JsonType)> {
        list.iter().map(|(n, t)| (n.to_string(), *t)).collect()
    }

    #[test]
    fn types_follow_the_rules() {
        use JsonType::*;
        let got = infer(&[
            r#"{"int": 1, "mixed_num": 1, "float": 1.5, "bool": true, "ts": "2024-11-24T10:00:00Z",
                "text": "a", "ts_and_text": "2024-11-24T10:00:00Z", "obj": {"a": 1}, "arr": [1],
                "num_and_text": 1, "bool_and_num": true, "null": null, "huge": 1, "epoch": 1732442400123,
                "negative": -5, "date": "2024-11-24", "obj_and_null": {"b": 2}}"#,
            r#"{"int": 2, "mixed_num": 2.25, "float": 3.0, "bool": false,
                "ts": "2024-11-24 10:00:00.123+01:00", "text": "b", "ts_and_text": "soon",
                "obj": {}, "arr": [], "num_and_text": "1", "bool_and_num": 0, "null": null,
                "huge": 18446744073709551615, "negative": -7, "obj_and_null": null,
                "late": "2024-11-24T10:00:00.5z"}"#,
        ]);
        assert_eq!(
            got,
            fields(&[
                ("int", Int64),
                ("mixed_num", Float64),
                ("float", Float64),
                ("bool", Boolean),
                ("ts", TimestampMs),
                ("text", String),
                ("ts_and_text", String),
                ("obj", Json),
                ("arr", Json),
                ("num_and_text", Json),
                ("bool_and_num", Json),
                ("null", String),
                ("huge", Float64),
                ("epoch", Int64),
                ("negative", Int64),
                ("date", String),
                ("obj_and_null", Json),
                ("late", TimestampMs),
            ])
        );
    }

    #[test]
    fn fields_come_in_first_seen_order_and_other_values_are_ignored() {
        use JsonType::*;
        let got = infer(&[
            "not json",
            "[1, 2]",
            "\"text\"",
            "42",
            "null",
            r#"{"b": 1, "a": "x", "": 5}"#,
            r#"{"c": true, "a": "y"}"#,
            r#"{"z": 1} trailing"#,
        ]);
        assert_eq!(got, fields(&[("b", Int64), ("a", String), ("c", Boolean)]));
        // A field repeated in one object merges its kinds.
        assert_eq!(infer(&[r#"{"d": 1, "d": "x"}"#]), fields(&[("d", Json)]));
        // Tombstones are ignored.
        assert_eq!(
            infer_schema([None, Some(&br#"{"k": 1}"#[..])])
                .iter()
                .map(|f| f.ty)
                .collect::<Vec<_>>(),
            [Int64]
        );
    }

    #[test]
    fn without_objects_there_is_no_column() {
        assert!(infer(&["1", "\"a\"", "[]", "nope", "{}"]).is_empty());
        assert!(infer(&[]).is_empty());
    }

    #[test]
    fn rfc3339_timestamps_only() {
        for ok in [
            "2024-11-24T10:00:00Z",
            "2024-11-24T10:00:00.123456789Z",
            "2024-11-24T10:00:00-05:30",
            "2024-11-24 10:00:00+00:00",
        ] {
            assert!(is_timestamp(ok), "{ok}");
        }
        for no in [
            "2024-11-24",
            "2024-11-24T10:00:00",
            "2024-11-24T10:00Z",
            "2024-13-24T10:00:00Z",
            "2024-11-24T10:00:00.Z",
            "2024-11-24T10:00:00+0100",
            "2024-11-24T10:00:00Z ",
            "1732442400123",
            "",
        ] {
            assert!(!is_timestamp(no), "{no}");
        }
    }

    #[test]
    fn the_schema_is_logged_as_yaml_to_paste() {
        let schema = infer_schema([Some(
            &br#"{"id": 1, "at": "2024-11-24T10:00:00Z", "user name": "a", "yes": true, "a/b": [1], "9lives": 1.5}"#[..],
        )]);
        assert_eq!(
            schema_yaml(&schema),
            r#"[{name: id, type: int64}, {name: at, type: timestamp_ms}, {name: "user name", type: string}, {name: "yes", type: boolean}, {name: "a/b", type: json}, {name: "9lives", type: float64}]"#
        );
        let given = [JsonField {
            name: "user".into(),
            ty: JsonType::String,
            path: Some("/user/name".into()),
        }];
        assert_eq!(
            schema_yaml(&given),
            r#"[{name: user, type: string, path: "/user/name"}]"#
        );
    }

    fn config(infer_records: u64) -> JsonValueColumns {
        serde_json::from_value(serde_json::json!({"infer_records": infer_records})).unwrap()
    }

    fn sampled(v: &str) -> Sampled {
        Sampled::parse(v.as_bytes()).unwrap()
    }

    #[test]
    fn a_sample_ends_after_infer_records_values_or_its_byte_bound() {
        let inference = JsonInference::with_limits(&config(3), 1000);
        let one = sampled(r#"{"a": 1}"#);
        assert_eq!(inference.observe("t", Some(&one), 10), None);
        // Tombstones are not values, but count as bytes.
        assert_eq!(inference.observe("t", None, 10), None);
        assert_eq!(inference.observe("t", Some(&Sampled::Other), 10), None);
        assert_eq!(inference.fixed("t"), None);
        let fields = inference
            .observe("t", Some(&sampled(r#"{"a": 2.5, "b": "x"}"#)), 10)
            .expect("the third value fixes the columns");
        assert_eq!(
            fields
                .iter()
                .map(|f| (f.name.as_str(), f.ty))
                .collect::<Vec<_>>(),
            [("a", JsonType::Float64), ("b", JsonType::String)]
        );
        // Later values are not sampled.
        let later = inference
            .observe("t", Some(&sampled(r#"{"c": 1}"#)), 10)
            .unwrap();
        assert_eq!(later, fields);
        assert_eq!(inference.fix("t"), fields);

        // 1000 bytes of records end the sample of another topic first.
        assert_eq!(inference.observe("u", Some(&one), 600), None);
        assert!(inference.observe("u", None, 400).is_some());
        // A topic fixed before its sample is complete (a segment closed).
        assert_eq!(inference.observe("v", Some(&one), 1), None);
        assert_eq!(inference.fix("v").len(), 1);
        assert!(inference.fix("never seen").is_empty());
    }

    #[test]
    fn the_default_is_1000_values() {
        let c: JsonValueColumns = serde_json::from_str("{}").unwrap();
        let inference = JsonInference::new(&c);
        let v = sampled(r#"{"a": 1}"#);
        for _ in 0..999 {
            assert_eq!(inference.observe("t", Some(&v), 100), None);
        }
        assert!(inference.observe("t", Some(&v), 100).is_some());
    }
}
