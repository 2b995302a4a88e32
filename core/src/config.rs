//! YAML pipeline files: parsing with precise errors, the `delivery` and `telemetry`
//! sections, and the [`Pipeline`] they describe.
//!
//! One file is one pipeline:
//!
//! ```yaml
//! name: demo                       # names the checkpoint and the metrics
//! source: { type: generator, count: 1000 }
//! transforms:                      # optional, applied in order
//!   - type: insert_headers
//!     headers: { env: demo }
//! sink:
//!   type: storage
//!   uri: ${OUT_DIR:-/tmp/ferry-demo}
//!   format: jsonl
//! delivery:                        # optional
//!   checkpoint: file:///var/lib/ferry   # default: the sink's storage, else the source's; `none` disables
//!   checkpoint_interval: 5s
//!   max_in_flight_bytes: 64MiB
//!   channel_capacity: 16
//! telemetry:                       # optional
//!   prometheus: 127.0.0.1:9464
//! ```
//!
//! The YAML crate (serde-saphyr) is used only through [`parse_yaml`] (and its seeded twin,
//! private to the crate), so it can be swapped without touching components. Every error
//! names `file:line:column` and the key at fault; component configs are deserialized from the
//! file's own text (see [`crate::registry`]), so their errors carry real positions too.

use crate::component::{Sink, Source, Transform};
use crate::error::{Error, Location, Result};
use crate::interpolate::Secrets;
use crate::storage::Storage;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{DeserializeOwned, DeserializeSeed, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// The YAML seam
// ---------------------------------------------------------------------------------------------

/// Parses YAML `text` (from `file`, used in errors) into `T`.
///
/// Errors are [`Error::Config`] with the `file:line:column` of the problem and a message
/// that names the key at fault, e.g. `unknown key 'topcs' in source; expected one of: …`.
/// Duplicate keys are errors. This is the only place that knows the YAML crate.
pub fn parse_yaml<T: DeserializeOwned>(text: &str, file: &str) -> Result<T> {
    parse_yaml_seed(text, file, PhantomData::<T>, &|path| describe_plain(path))
}

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Renders a path as `source.roll.max_bytes` / `transforms[1].regex`.
pub fn path_string(path: &[PathSeg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            PathSeg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn describe_plain(path: &[PathSeg]) -> String {
    if path.is_empty() {
        "the document".to_string()
    } else {
        format!("'{}'", path_string(path))
    }
}

/// [`parse_yaml`] with a seed, and a function that describes the section a path is in
/// (the pipeline loader adds the component type: `source (type kafka)`).
pub(crate) fn parse_yaml_seed<'de, S>(
    text: &'de str,
    file: &str,
    seed: S,
    describe: &dyn Fn(&[PathSeg]) -> String,
) -> Result<S::Value>
where
    S: DeserializeSeed<'de>,
{
    let mut options = serde_saphyr::Options::default();
    // Messages are one line (`file:line:col: message`); no source snippets (which could also
    // echo secrets from the interpolated text).
    options.with_snippet = false;
    let mut track = serde_path_to_error::Track::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        seed.deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
    });
    result.map_err(|e| {
        let path: Vec<PathSeg> = track
            .path()
            .iter()
            .map_while(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(PathSeg::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => {
                    Some(PathSeg::Key(variant.clone()))
                }
                serde_path_to_error::Segment::Seq { index } => Some(PathSeg::Index(*index)),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        yaml_error(&e, text, file, &path, describe)
    })
}

/// Turns a serde-saphyr error into a one-line message naming the key, with its location.
fn yaml_error(
    e: &serde_saphyr::Error,
    text: &str,
    file: &str,
    path: &[PathSeg],
    describe: &dyn Fn(&[PathSeg]) -> String,
) -> Error {
    use serde_saphyr::Error as E;
    let parent = &path[..path.len().saturating_sub(1)];
    let here = || {
        if path.is_empty() {
            describe(path)
        } else {
            format!("'{}'", path_string(path))
        }
    };
    let message = match e {
        E::SerdeUnknownField {
            field, expected, ..
        } => {
            // The path ends with the unknown key itself; the section is its parent.
            let within = if path.last() == Some(&PathSeg::Key(field.clone())) {
                parent
            } else {
                path
            };
            format!(
                "unknown key '{field}' in {}; expected one of: {}",
                describe(within),
                expected.join(", ")
            )
        }
        E::SerdeMissingField { field, .. } => {
            format!("missing key '{field}' in {}", describe(path))
        }
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => format!(
            "wrong type for {}: found {unexpected}, expected {expected}",
            here()
        ),
        E::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => format!(
            "invalid value for {}: found {unexpected}, expected {expected}",
            here()
        ),
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => format!(
            "unknown value '{variant}' for {}; expected one of: {}",
            here(),
            expected.join(", ")
        ),
        E::InvalidScalar { ty, .. } => {
            format!("invalid value for {}: expected {}", here(), scalar_name(ty))
        }
        E::DuplicateMappingKey { key, .. } => match key {
            Some(k) => format!("duplicate key '{k}' in {}", describe(parent)),
            None => format!("duplicate key in {}", describe(parent)),
        },
        E::Unexpected { expected, .. } => {
            let expected = match *expected {
                "mapping start" => "a map (key: value lines or { … })",
                "sequence start" => "a list (- item lines or [ … ])",
                "string scalar" => "a string",
                other => other,
            };
            if path.is_empty() {
                format!("expected {expected} at the top of the file")
            } else {
                format!("wrong type for {}: expected {expected}", here())
            }
        }
        E::Eof { .. } if text.trim().is_empty() => {
            "the file is empty: a pipeline needs at least name, source and sink".to_string()
        }
        E::MultipleDocuments { .. } => {
            "a pipeline file holds one YAML document, but a second one starts here ('---')"
                .to_string()
        }
        E::NullIntoString { .. } => {
            format!("wrong type for {}: found null, expected a string", here())
        }
        // A config that flattens shared options in (the Kafka connection settings) gets
        // serde's generic message for an unknown key, without its position: name the key
        // and place the error at it, as for any other unknown key.
        E::Message { msg, .. } if flattened_unknown_field(msg).is_some() => {
            let field = flattened_unknown_field(msg).unwrap_or_default();
            let mut at_key = path.to_vec();
            at_key.push(PathSeg::Key(field.to_string()));
            let (line, column) = locate_path(text, &at_key).unwrap_or((1, 1));
            return Error::Config {
                location: Some(Location {
                    file: file.to_string(),
                    line,
                    column,
                }),
                message: format!(
                    "unknown key '{field}' in {} (`ferry components` lists its keys)",
                    describe(path)
                ),
            };
        }
        E::Message { msg, .. } if !path.is_empty() => {
            format!("invalid value for {}: {msg}", here())
        }
        other => {
            let msg = strip_location(&other.to_string());
            if path.is_empty() {
                format!("{msg} (check indentation and quoting)")
            } else {
                format!(
                    "{msg} (under '{}': check indentation and quoting)",
                    path_string(path)
                )
            }
        }
    };
    let (line, column) = match e.location() {
        Some(l) if l.line() > 0 => (l.line(), l.column().max(1)),
        // Serde-generated errors from custom deserializers may come without a position:
        // fall back to where the path's key is in the text.
        _ => locate_path(text, path).unwrap_or((1, 1)),
    };
    Error::Config {
        location: Some(Location {
            file: file.to_string(),
            line,
            column,
        }),
        message,
    }
}

/// The key of serde's `unknown field `X`` message (what a flattened config reports).
fn flattened_unknown_field(msg: &str) -> Option<&str> {
    let rest = msg.trim().strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    Some(&rest[..end])
}

fn scalar_name(ty: &str) -> String {
    match ty {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "bool" => "true or false".into(),
        other => other.to_string(),
    }
}

/// Drops serde-saphyr's ` at line L, column C` suffix (the location is reported separately).
fn strip_location(msg: &str) -> String {
    let msg = msg.trim();
    let msg = msg.strip_prefix("error: ").unwrap_or(msg);
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(", column ") => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

/// Where a path's key is in block-style YAML text, as (line, column), by indentation.
/// Used to place errors that do not come from the parser (unknown component types, failed
/// validation). Falls back to the deepest key found.
pub(crate) fn locate_path(text: &str, path: &[PathSeg]) -> Option<(u64, u64)> {
    struct Line<'a> {
        no: u64,
        /// Column (0-based) of the key (after any `- ` item markers).
        key_col: usize,
        /// Column of the first `- ` marker, when the line starts a sequence item.
        dash_col: Option<usize>,
        content: &'a str,
    }
    let lines: Vec<Line> = text
        .lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "---" {
                return None;
            }
            let indent = raw.chars().take_while(|c| *c == ' ').count();
            let mut col = indent;
            let mut content = trimmed;
            let mut dash_col = None;
            while let Some(rest) =
                content
                    .strip_prefix("- ")
                    .or(if content == "-" { Some("") } else { None })
            {
                dash_col.get_or_insert(col);
                let pad = rest.len() - rest.trim_start().len();
                col += 2 + pad.saturating_sub(0);
                content = rest.trim_start();
                if content.is_empty() {
                    break;
                }
            }
            Some(Line {
                no: i as u64 + 1,
                key_col: col,
                dash_col,
                content,
            })
        })
        .collect();
    let key_of = |l: &Line| -> Option<String> {
        let c = l.content;
        let end = c.find(':')?;
        let after = &c[end + 1..];
        if !(after.is_empty() || after.starts_with(' ')) {
            return None;
        }
        Some(c[..end].trim().trim_matches(['"', '\'']).to_string())
    };
    let (mut lo, mut hi) = (0usize, lines.len());
    let mut found: Option<(u64, u64)> = None;
    for seg in path {
        if lo >= hi {
            break;
        }
        match seg {
            PathSeg::Key(k) => {
                let child = lines[lo].key_col;
                let Some(pos) = (lo..hi).find(|&i| {
                    lines[i].key_col == child && key_of(&lines[i]).as_deref() == Some(k.as_str())
                }) else {
                    break;
                };
                found = Some((lines[pos].no, child as u64 + 1));
                let end = (pos + 1..hi)
                    .find(|&i| {
                        lines[i].key_col <= child && lines[i].dash_col.is_none_or(|d| d <= child)
                    })
                    .unwrap_or(hi);
                (lo, hi) = (pos + 1, end);
                // A key whose value starts on its own line, or the nested block.
            }
            PathSeg::Index(n) => {
                let Some(dash) = lines[lo].dash_col else {
                    break;
                };
                let items: Vec<usize> = (lo..hi)
                    .filter(|&i| lines[i].dash_col == Some(dash))
                    .collect();
                let Some(&pos) = items.get(*n) else {
                    break;
                };
                found = Some((lines[pos].no, dash as u64 + 1));
                let end = items.get(n + 1).copied().unwrap_or(hi);
                // The item's own line holds its first key: keep it in range, as a plain line.
                (lo, hi) = (pos, end);
                // Re-scan from the item line, whose key column is the item content.
                if lines[pos].content.is_empty() {
                    lo = pos + 1;
                }
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Sizes and durations
// ---------------------------------------------------------------------------------------------

/// A size in bytes, written as a plain number or with a unit: `64MiB`, `128MB`, `512 KiB`.
///
/// Units: `B`; decimal `KB`, `MB`, `GB`, `TB` (powers of 1000); binary `KiB`, `MiB`, `GiB`,
/// `TiB` and the shorthands `K`, `M`, `G`, `T` (powers of 1024). Case-insensitive;
/// fractions allowed (`1.5GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `64MiB`, `128MB`, `1000`.
    pub fn parse(s: &str) -> std::result::Result<ByteSize, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let num = num.replace('_', "");
        let n: f64 = num
            .parse()
            .map_err(|_| format!("'{s}' is not a size: write e.g. 1048576, 64MiB or 128MB"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "mb" => 1000_u64.pow(2),
            "gb" => 1000_u64.pow(3),
            "tb" => 1000_u64.pow(4),
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            other => {
                return Err(format!(
                "unknown size unit '{other}' in '{s}': use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
            ))
            }
        };
        let bytes = n * mult as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(format!("size '{s}' is out of range"));
        }
        Ok(ByteSize(bytes.round() as u64))
    }

    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            // Sizes are powers of two: a multiple has no low bits set.
            if n >= size && n & (size - 1) == 0 {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}")
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 1048576, 64MiB or 128MB")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<ByteSize, E> {
                if v >= 0.0 && v.is_finite() {
                    Ok(ByteSize(v.round() as u64))
                } else {
                    Err(E::custom("a size cannot be negative"))
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "description": "A size in bytes: a number, or a string with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. `64MiB`.",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9][0-9_]*(\\.[0-9]+)?\\s*([kKmMgGtT]i?[bB]?|[bB])?\\s*$" }
            ]
        })
    }
}

/// A duration written the humantime way: `5s`, `250ms`, `1m 30s`, `2h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Parses `5s`, `1m 30s`, `250ms`.
    pub fn parse(s: &str) -> std::result::Result<HumanDuration, String> {
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| format!("'{s}' is not a duration ({e}): write e.g. 5s, 250ms or 1m 30s"))
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 5s, 250ms or 1m 30s")
            }
            fn visit_u64<E: serde::de::Error>(
                self,
                v: u64,
            ) -> std::result::Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "'{v}' has no unit: write e.g. {v}s or {v}ms"
                )))
            }
            fn visit_i64<E: serde::de::Error>(
                self,
                v: i64,
            ) -> std::result::Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "'{v}' has no unit: write e.g. {v}s or {v}ms"
                )))
            }
            fn visit_str<E: serde::de::Error>(
                self,
                v: &str,
            ) -> std::result::Result<HumanDuration, E> {
                HumanDuration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "description": "A duration with units, e.g. `5s`, `250ms`, `1m 30s`, `2h`.",
            "type": "string"
        })
    }
}

// ---------------------------------------------------------------------------------------------
// delivery and telemetry sections
// ---------------------------------------------------------------------------------------------

/// Default time between checkpoints.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
/// Default global in-flight byte budget.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: u64 = 64 << 20;
/// Default capacity (in batches) of each channel between stages.
pub const DEFAULT_CHANNEL_CAPACITY: usize = 16;

/// The `delivery:` section as written in a pipeline file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Storage URI where `checkpoints/<pipeline>.json` is kept, or `none` to keep no
    /// checkpoint. Default: the sink's storage (e.g. beside a backup), else the source's.
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// Time between checkpoints (each one flushes the sink first). Default `5s`.
    #[serde(default)]
    pub checkpoint_interval: Option<HumanDuration>,
    /// Bytes that may be read from the source but not yet written by the sink. Default `64MiB`.
    #[serde(default)]
    pub max_in_flight_bytes: Option<ByteSize>,
    /// Batches each channel between two stages holds. Default 16.
    #[serde(default)]
    pub channel_capacity: Option<usize>,
}

/// The `telemetry:` section as written in a pipeline file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Address of a Prometheus scrape endpoint to serve, e.g. `127.0.0.1:9464`.
    #[serde(default)]
    pub prometheus: Option<ListenAddr>,
}

/// A socket address (`host:port` with an IP host) to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.trim().parse().map(ListenAddr).map_err(|_| {
            serde::de::Error::custom(format!(
                "'{s}' is not an address to listen on: write IP:PORT, e.g. 127.0.0.1:9464"
            ))
        })
    }
}

impl JsonSchema for ListenAddr {
    fn schema_name() -> Cow<'static, str> {
        "ListenAddr".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "description": "IP:PORT to listen on, e.g. `127.0.0.1:9464`.",
            "type": "string"
        })
    }
}

/// Where a pipeline keeps its checkpoint.
#[derive(Debug, Clone, Default)]
pub enum CheckpointTarget {
    /// The sink's `checkpoint_storage()`, else the source's, else none (with a warning).
    #[default]
    Auto,
    /// No checkpoint: every run starts where the source's own configuration says.
    Disabled,
    /// A storage URI, opened when the pipeline starts.
    Uri(String),
    /// An already opened storage.
    Storage(Storage),
}

/// How a pipeline delivers: checkpoints and flow control.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Where `checkpoints/<pipeline>.json` lives.
    pub checkpoint: CheckpointTarget,
    /// Time between checkpoints.
    pub checkpoint_interval: Duration,
    /// Global budget of bytes read but not yet written.
    pub max_in_flight_bytes: u64,
    /// Batches each channel between stages holds.
    pub channel_capacity: usize,
    /// Several tasks (workers of a group) write this pipeline's checkpoint, each for its
    /// own partitions: each write keeps the furthest offset of every partition stored.
    pub shared_checkpoint: bool,
    /// Told when a checkpoint is written (a worker's task reports it in its status); not
    /// configuration.
    pub progress: Option<std::sync::Arc<crate::task::TaskProgress>>,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            checkpoint: CheckpointTarget::Auto,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
            shared_checkpoint: false,
            progress: None,
        }
    }
}

impl DeliveryConfig {
    /// The runtime settings, defaults applied. Checks values without touching storage.
    pub fn resolve(&self) -> std::result::Result<Delivery, (&'static str, String)> {
        let checkpoint = match self.checkpoint.as_deref().map(str::trim) {
            None => CheckpointTarget::Auto,
            Some("none") | Some("off") => CheckpointTarget::Disabled,
            Some(uri) => {
                crate::storage::StorageUri::parse(uri)
                    .map_err(|e| ("checkpoint", e.to_string()))?;
                CheckpointTarget::Uri(uri.to_string())
            }
        };
        let interval = self
            .checkpoint_interval
            .map_or(DEFAULT_CHECKPOINT_INTERVAL, HumanDuration::get);
        if interval.is_zero() {
            return Err(("checkpoint_interval", "must be more than 0".into()));
        }
        let budget = self
            .max_in_flight_bytes
            .map_or(DEFAULT_MAX_IN_FLIGHT_BYTES, ByteSize::bytes);
        if budget == 0 {
            return Err(("max_in_flight_bytes", "must be more than 0".into()));
        }
        let cap = self.channel_capacity.unwrap_or(DEFAULT_CHANNEL_CAPACITY);
        if cap == 0 {
            return Err(("channel_capacity", "must be at least 1".into()));
        }
        Ok(Delivery {
            checkpoint,
            checkpoint_interval: interval,
            max_in_flight_bytes: budget,
            channel_capacity: cap,
            shared_checkpoint: false,
            progress: None,
        })
    }
}

/// Observability settings of a pipeline.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    /// Serve Prometheus metrics on this address.
    pub prometheus: Option<SocketAddr>,
}

// ---------------------------------------------------------------------------------------------
// The pipeline
// ---------------------------------------------------------------------------------------------

/// A built pipeline, ready for [`crate::runtime::run`]: one source, transforms in order, one
/// sink, and how to deliver.
///
/// Build one from YAML with [`crate::registry::Registry::load_pipeline`], or in Rust:
///
/// ```no_run
/// # use ferry_core::config::Pipeline;
/// # fn copy(source: Box<dyn ferry_core::Source>, sink: Box<dyn ferry_core::Sink>) {
/// let pipeline = Pipeline::new("copy", source, Vec::new(), sink)
///     .with_checkpoint_uri("file:///var/lib/ferry")
///     .with_checkpoint_interval(std::time::Duration::from_secs(10));
/// # }
/// ```
pub struct Pipeline {
    /// Name: checkpoint key and metrics label.
    pub name: String,
    /// Where batches come from.
    pub source: Box<dyn Source>,
    /// Applied in order to every batch.
    pub transforms: Vec<Box<dyn Transform>>,
    /// Where batches go.
    pub sink: Box<dyn Sink>,
    /// Checkpoints and flow control.
    pub delivery: Delivery,
    /// Metrics endpoint.
    pub telemetry: Telemetry,
    /// Values interpolated from the environment into the pipeline file: the runtime
    /// redacts them from the errors it returns.
    pub secrets: Secrets,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("transforms", &self.transforms.len())
            .field("delivery", &self.delivery)
            .field("telemetry", &self.telemetry)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline with default delivery settings and no telemetry.
    pub fn new(
        name: impl Into<String>,
        source: Box<dyn Source>,
        transforms: Vec<Box<dyn Transform>>,
        sink: Box<dyn Sink>,
    ) -> Self {
        Pipeline {
            name: name.into(),
            source,
            transforms,
            sink,
            delivery: Delivery::default(),
            telemetry: Telemetry::default(),
            secrets: Secrets::default(),
        }
    }

    /// Appends a transform.
    pub fn with_transform(mut self, t: Box<dyn Transform>) -> Self {
        self.transforms.push(t);
        self
    }

    /// Replaces all delivery settings.
    pub fn with_delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// Keeps the checkpoint in this storage.
    pub fn with_checkpoint_storage(mut self, storage: Storage) -> Self {
        self.delivery.checkpoint = CheckpointTarget::Storage(storage);
        self
    }

    /// Keeps the checkpoint in the storage this URI names.
    pub fn with_checkpoint_uri(mut self, uri: impl Into<String>) -> Self {
        self.delivery.checkpoint = CheckpointTarget::Uri(uri.into());
        self
    }

    /// Keeps no checkpoint.
    pub fn without_checkpoint(mut self) -> Self {
        self.delivery.checkpoint = CheckpointTarget::Disabled;
        self
    }

    /// Time between checkpoints.
    pub fn with_checkpoint_interval(mut self, interval: Duration) -> Self {
        self.delivery.checkpoint_interval = interval;
        self
    }

    /// Global in-flight byte budget.
    pub fn with_max_in_flight_bytes(mut self, bytes: u64) -> Self {
        self.delivery.max_in_flight_bytes = bytes.max(1);
        self
    }

    /// Capacity of each channel between stages, in batches.
    pub fn with_channel_capacity(mut self, batches: usize) -> Self {
        self.delivery.channel_capacity = batches.max(1);
        self
    }

    /// Values to redact from the run's errors (e.g. credentials the embedder put in configs).
    pub fn with_secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = secrets;
        self
    }

    /// Serves Prometheus metrics on `addr` while the pipeline runs.
    pub fn with_prometheus(mut self, addr: SocketAddr) -> Self {
        self.telemetry.prometheus = Some(addr);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        #[serde(default)]
        delivery: DeliveryConfig,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        id: u32,
    }

    fn err(text: &str) -> String {
        parse_yaml::<Doc>(text, "x.yaml").unwrap_err().to_string()
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(ByteSize::parse("64MiB").unwrap().0, 64 << 20);
        assert_eq!(ByteSize::parse("128MB").unwrap().0, 128_000_000);
        assert_eq!(ByteSize::parse("1.5 KiB").unwrap().0, 1536);
        assert_eq!(ByteSize::parse("1000").unwrap().0, 1000);
        assert!(ByteSize::parse("12 parsecs").is_err());
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
        assert_eq!(
            HumanDuration::parse("1m 30s").unwrap().0,
            Duration::from_secs(90)
        );
        let d: Doc = parse_yaml(
            "name: a\ndelivery:\n  max_in_flight_bytes: 1KiB\n  checkpoint_interval: 250ms\n",
            "x.yaml",
        )
        .unwrap();
        let r = d.delivery.resolve().unwrap();
        assert_eq!(r.max_in_flight_bytes, 1024);
        assert_eq!(r.checkpoint_interval, Duration::from_millis(250));
        let d: Doc = parse_yaml("name: a\ndelivery: { max_in_flight_bytes: 2048 }\n", "x").unwrap();
        assert_eq!(d.delivery.resolve().unwrap().max_in_flight_bytes, 2048);
    }

    #[test]
    fn unknown_key_names_position_and_key() {
        let e = err("name: a\ndelivery:\n  checkpoint_intervall: 5s\n");
        assert!(
            e.starts_with("x.yaml:3:3: unknown key 'checkpoint_intervall' in 'delivery'"),
            "{e}"
        );
        assert!(
            e.contains("expected one of: checkpoint, checkpoint_interval"),
            "{e}"
        );
        let e = err("name: a\nnmae: b\n");
        assert!(
            e.starts_with("x.yaml:2:1: unknown key 'nmae' in the document"),
            "{e}"
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        let e = err("name: a\nitems:\n  - id: 1\n  - id: many\n");
        assert!(e.starts_with("x.yaml:4:9: "), "{e}");
        assert!(e.contains("'items[1].id'"), "{e}");
        let e = err("name: a\ndelivery:\n  max_in_flight_bytes: 12 parsecs\n");
        assert!(e.starts_with("x.yaml:3:"), "{e}");
        assert!(
            e.contains("delivery.max_in_flight_bytes") && e.contains("parsecs"),
            "{e}"
        );
        let e = err("name: a\ndelivery:\n  checkpoint_interval: 5\n");
        assert!(e.contains("'5' has no unit"), "{e}");
    }

    #[test]
    fn bad_indentation_and_duplicates() {
        let e = err("name: a\ndelivery:\n  checkpoint: x\n   channel_capacity: 5\n");
        assert!(e.starts_with("x.yaml:4:"), "{e}");
        assert!(e.contains("delivery"), "{e}");
        let e = err("name: a\nname: b\n");
        assert!(e.starts_with("x.yaml:2:1: duplicate key 'name'"), "{e}");
        let e = err("items: []\n");
        assert!(e.contains("missing key 'name'"), "{e}");
    }

    #[test]
    fn odd_files_get_plain_messages() {
        assert!(
            err("").ends_with("the file is empty: a pipeline needs at least name, source and sink")
        );
        let e = err("- a\n- b\n");
        assert!(e.starts_with("x.yaml:1:1: expected a map"), "{e}");
        let e = err("name: a\nitems: foo\n");
        assert!(
            e.starts_with("x.yaml:2:8: wrong type for 'items': expected a list"),
            "{e}"
        );
        let e = err("name: a\n---\nname: b\n");
        assert!(e.contains("one YAML document"), "{e}");
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut t = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            t.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        t.push_str("name: x\n");
        let start = std::time::Instant::now();
        assert!(parse_yaml::<serde_json::Value>(&t, "bomb.yaml").is_err());
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn locate_path_by_indentation() {
        let t = "name: a\nsource:\n  type: g\n  roll:\n    max: 1\ntransforms:\n  - type: a\n  - type: b\n    regex: x\nsink:\n  type: s\n";
        let k = |s: &str| PathSeg::Key(s.into());
        assert_eq!(locate_path(t, &[k("source")]), Some((2, 1)));
        assert_eq!(
            locate_path(t, &[k("source"), k("roll"), k("max")]),
            Some((5, 5))
        );
        assert_eq!(
            locate_path(t, &[k("transforms"), PathSeg::Index(1)]),
            Some((8, 3))
        );
        assert_eq!(
            locate_path(t, &[k("transforms"), PathSeg::Index(1), k("regex")]),
            Some((9, 5))
        );
        assert_eq!(
            locate_path(t, &[k("transforms"), PathSeg::Index(1), k("type")]),
            Some((8, 5))
        );
        assert_eq!(locate_path(t, &[k("sink"), k("type")]), Some((11, 3)));
        // Sequences at the parent's indentation.
        let t2 = "transforms:\n- type: a\n- type: b\n";
        assert_eq!(
            locate_path(t2, &[k("transforms"), PathSeg::Index(1), k("type")]),
            Some((3, 3))
        );
    }
}
