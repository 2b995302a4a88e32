//! The component registry: YAML `type:` names → factories that validate and build sources,
//! transforms and sinks. Embedders register their own components next to the built-in ones.
//!
//! A factory declares a `Config` type (serde + schemars, `#[serde(deny_unknown_fields)]`,
//! never a `type` field: the registry strips `type` before handing the map to the config).
//! The registry deserializes that config straight from the pipeline file's text, so an error
//! inside a component's options still names `file:line:column` and the key at fault:
//!
//! ```text
//! pipelines/x.yaml:7:5: unknown key 'topcs' in source (type kafka); expected one of: brokers, topics, …
//! ```
//!
//! ```
//! use ferry_core::registry::{BuildContext, Registry, SinkFactory};
//! use ferry_core::{Batch, Result, Sink};
//!
//! /// Drops everything (acks resolve as soon as a batch arrives).
//! struct Discard;
//! #[async_trait::async_trait]
//! impl Sink for Discard {
//!     async fn write(&mut self, batch: Batch) -> Result<()> { batch.ack.resolve(); Ok(()) }
//!     async fn flush(&mut self) -> Result<()> { Ok(()) }
//! }
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct DiscardConfig {}
//!
//! struct DiscardFactory;
//! impl SinkFactory for DiscardFactory {
//!     type Config = DiscardConfig;
//!     fn name(&self) -> &'static str { "discard" }
//!     fn description(&self) -> &'static str { "Drops every record" }
//!     fn build(&self, _c: DiscardConfig, _ctx: &BuildContext) -> Result<Box<dyn Sink>> {
//!         Ok(Box::new(Discard))
//!     }
//! }
//!
//! let mut reg = Registry::new();
//! reg.register_sink(DiscardFactory);
//! assert!(reg.components().iter().any(|c| c.name == "discard"));
//! ```

use crate::component::{Sink, Source, Transform};
use crate::config::{
    locate_path, parse_yaml_seed, path_string, DeliveryConfig, PathSeg, Pipeline, Telemetry,
    TelemetryConfig,
};
use crate::error::error_chain;
use crate::error::{Error, Location, Result};
use crate::interpolate::{interpolate, Interpolated};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IgnoredAny, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// What a factory knows about the pipeline it builds a component for.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// The pipeline's name.
    pub pipeline: String,
    /// The part of the pipeline this build runs, when a worker runs it as one task of a
    /// shared pipeline (`None` for `ferry run`: everything).
    pub scope: Option<crate::task::TaskScope>,
}

/// Which component of a pipeline file a [`ConfigInput`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Source,
    Transform(usize),
    Sink,
    /// The whole document is the component's map.
    Whole,
}

enum InputKind<'a> {
    Yaml {
        text: &'a str,
        file: &'a str,
        target: Target,
        describe: &'a dyn Fn(&[PathSeg]) -> String,
    },
    Json(&'a Value),
}

/// Opaque access to one component's configuration: a section of a YAML pipeline file, or a
/// JSON value built by a CLI command. Its `type` key, if any, is skipped.
pub struct ConfigInput<'a> {
    kind: InputKind<'a>,
}

impl fmt::Debug for ConfigInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            InputKind::Yaml { file, target, .. } => f
                .debug_struct("ConfigInput")
                .field("file", file)
                .field("target", target)
                .finish(),
            InputKind::Json(_) => f.write_str("ConfigInput(json)"),
        }
    }
}

impl<'a> ConfigInput<'a> {
    /// A component config given as JSON (e.g. assembled from CLI flags).
    pub fn json(value: &'a Value) -> Self {
        ConfigInput {
            kind: InputKind::Json(value),
        }
    }

    /// A YAML document that is one component's map (`file` names it in errors).
    pub fn yaml(text: &'a str, file: &'a str) -> Self {
        ConfigInput {
            kind: InputKind::Yaml {
                text,
                file,
                target: Target::Whole,
                describe: &describe_component_doc,
            },
        }
    }

    /// Deserializes the config, `type` skipped. YAML errors carry `file:line:column`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        match &self.kind {
            InputKind::Yaml {
                text,
                file,
                target,
                describe,
            } => parse_yaml_seed(
                text,
                file,
                PickSeed::<T> {
                    target: *target,
                    _t: PhantomData,
                },
                *describe,
            )?
            .ok_or_else(|| Error::config(format!("{file}: no {target:?} section"))),
            InputKind::Json(v) => {
                let mut v = (*v).clone();
                if let Value::Object(m) = &mut v {
                    m.remove("type");
                }
                serde_path_to_error::deserialize(v).map_err(|e| {
                    let path = e.path().to_string();
                    let inner = e.into_inner();
                    if path == "." || path.is_empty() {
                        Error::config(inner.to_string())
                    } else {
                        Error::config(format!("'{path}': {inner}"))
                    }
                })
            }
        }
    }
}

fn describe_component_doc(path: &[PathSeg]) -> String {
    if path.is_empty() {
        "the component".into()
    } else {
        format!("'{}'", path_string(path))
    }
}

// --- seeds that deserialize one component from the whole file -------------------------------

/// Picks the target component out of the top-level map; everything else is skipped.
struct PickSeed<T> {
    target: Target,
    _t: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for PickSeed<T> {
    type Value = Option<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Option<T>, D::Error> {
        if self.target == Target::Whole {
            return ComponentSeed::<T>(PhantomData).deserialize(d).map(Some);
        }
        d.deserialize_map(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for PickSeed<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a pipeline map")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Option<T>, A::Error> {
        let mut out = None;
        while let Some(key) = map.next_key::<String>()? {
            match (key.as_str(), self.target) {
                ("source", Target::Source) | ("sink", Target::Sink) => {
                    out = Some(map.next_value_seed(ComponentSeed::<T>(PhantomData))?);
                }
                ("transforms", Target::Transform(i)) => {
                    out = map.next_value_seed(IndexSeed::<T> {
                        index: i,
                        _t: PhantomData,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// Deserializes element `index` of a sequence as a component; skips the others.
struct IndexSeed<T> {
    index: usize,
    _t: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for IndexSeed<T> {
    type Value = Option<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Option<T>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for IndexSeed<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of transforms")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Option<T>, A::Error> {
        let mut out = None;
        let mut i = 0;
        loop {
            if i == self.index {
                match seq.next_element_seed(ComponentSeed::<T>(PhantomData))? {
                    Some(v) => out = Some(v),
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(out)
    }
}

/// Deserializes a component map into `T` with its `type` key skipped.
struct ComponentSeed<T>(PhantomData<T>);

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for ComponentSeed<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<T, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for ComponentSeed<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a component map with a `type` key")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(SkipType {
            inner: map,
        }))
    }
}

/// A map access that hides the `type` entry, so component configs never declare it and can
/// still deny unknown fields. Keys are passed through while the parser sits on them, so
/// errors about them keep their position.
struct SkipType<A> {
    inner: A,
}

enum Filtered<K, V> {
    /// The `type` key: the seed comes back unused.
    Type(K),
    /// Any other key, deserialized by the seed.
    Key(V),
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SkipType<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> std::result::Result<Option<K::Value>, A::Error> {
        let mut seed = seed;
        loop {
            match self.inner.next_key_seed(KeyFilter(seed))? {
                None => return Ok(None),
                Some(Filtered::Key(v)) => return Ok(Some(v)),
                Some(Filtered::Type(s)) => {
                    self.inner.next_value::<IgnoredAny>()?;
                    seed = s;
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> std::result::Result<V::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

struct KeyFilter<K>(K);

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeyFilter<K> {
    type Value = Filtered<K, K::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_str(KeyVisitor(self.0))
    }
}

struct KeyVisitor<K>(K);

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for KeyVisitor<K> {
    type Value = Filtered<K, K::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
        if v == "type" {
            return Ok(Filtered::Type(self.0));
        }
        self.0
            .deserialize(IntoDeserializer::<E>::into_deserializer(v))
            .map(Filtered::Key)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
        if v == "type" {
            return Ok(Filtered::Type(self.0));
        }
        self.0
            .deserialize(de::value::BorrowedStrDeserializer::<E>::new(v))
            .map(Filtered::Key)
    }
    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Self::Value, E> {
        self.visit_str(&v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
        self.visit_string(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
        self.visit_string(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Self::Value, E> {
        self.visit_string(v.to_string())
    }
}

// --- factories ---------------------------------------------------------------------------------

/// Builds a [`Source`] from its YAML config. Register with [`Registry::register_source`].
pub trait SourceFactory: Send + Sync + 'static {
    /// The options (never a `type` field; use `#[serde(deny_unknown_fields)]`).
    type Config: DeserializeOwned + JsonSchema + Send + 'static;
    /// The YAML `type:` name.
    fn name(&self) -> &'static str;
    /// One line for `ferry components`.
    fn description(&self) -> &'static str;
    /// Checks the config's meaning (regexes compile, URIs parse). Must not use the network.
    fn validate(&self, _config: &Self::Config) -> Result<()> {
        Ok(())
    }
    /// Builds the source.
    fn build(&self, config: Self::Config, ctx: &BuildContext) -> Result<Box<dyn Source>>;
}

/// Builds a [`Transform`] from its YAML config. Register with [`Registry::register_transform`].
pub trait TransformFactory: Send + Sync + 'static {
    /// The options (never a `type` field; use `#[serde(deny_unknown_fields)]`).
    type Config: DeserializeOwned + JsonSchema + Send + 'static;
    /// The YAML `type:` name.
    fn name(&self) -> &'static str;
    /// One line for `ferry components`.
    fn description(&self) -> &'static str;
    /// Checks the config's meaning. Must not use the network.
    fn validate(&self, _config: &Self::Config) -> Result<()> {
        Ok(())
    }
    /// Builds the transform.
    fn build(&self, config: Self::Config, ctx: &BuildContext) -> Result<Box<dyn Transform>>;
}

/// Builds a [`Sink`] from its YAML config. Register with [`Registry::register_sink`].
pub trait SinkFactory: Send + Sync + 'static {
    /// The options (never a `type` field; use `#[serde(deny_unknown_fields)]`).
    type Config: DeserializeOwned + JsonSchema + Send + 'static;
    /// The YAML `type:` name.
    fn name(&self) -> &'static str;
    /// One line for `ferry components`.
    fn description(&self) -> &'static str;
    /// Checks the config's meaning. Must not use the network.
    fn validate(&self, _config: &Self::Config) -> Result<()> {
        Ok(())
    }
    /// Builds the sink.
    fn build(&self, config: Self::Config, ctx: &BuildContext) -> Result<Box<dyn Sink>>;
}

/// A factory with its config type erased, so factories of different configs share a map.
trait Erased<Out: ?Sized>: Send + Sync {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    fn subschema(&self, g: &mut SchemaGenerator) -> Schema;
    fn root_schema(&self) -> Schema;
    fn check(&self, input: &ConfigInput<'_>) -> Result<()>;
    fn build(&self, input: &ConfigInput<'_>, ctx: &BuildContext) -> Result<Box<Out>>;
}

struct SourceEntry<F>(F);
struct TransformEntry<F>(F);
struct SinkEntry<F>(F);

macro_rules! erase {
    ($entry:ident, $factory:ident, $out:ident) => {
        impl<F: $factory> Erased<dyn $out> for $entry<F> {
            fn name(&self) -> &'static str {
                self.0.name()
            }
            fn description(&self) -> &'static str {
                self.0.description()
            }
            fn subschema(&self, g: &mut SchemaGenerator) -> Schema {
                g.subschema_for::<F::Config>()
            }
            fn root_schema(&self) -> Schema {
                schema_settings()
                    .into_generator()
                    .into_root_schema_for::<F::Config>()
            }
            fn check(&self, input: &ConfigInput<'_>) -> Result<()> {
                let config: F::Config = input.deserialize()?;
                self.0.validate(&config)
            }
            fn build(&self, input: &ConfigInput<'_>, ctx: &BuildContext) -> Result<Box<dyn $out>> {
                let config: F::Config = input.deserialize()?;
                self.0.validate(&config)?;
                self.0.build(config, ctx)
            }
        }
    };
}
erase!(SourceEntry, SourceFactory, Source);
erase!(TransformEntry, TransformFactory, Transform);
erase!(SinkEntry, SinkFactory, Sink);

fn schema_settings() -> SchemaSettings {
    SchemaSettings::draft2020_12().for_deserialize()
}

/// The kind of a registered component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// Produces batches.
    Source,
    /// Changes batches.
    Transform,
    /// Consumes batches.
    Sink,
    /// A file format sinks and sources can read or write.
    Format,
}

impl ComponentKind {
    /// `source`, `transform`, `sink` or `format`.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Source => "source",
            ComponentKind::Transform => "transform",
            ComponentKind::Sink => "sink",
            ComponentKind::Format => "format",
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One registered component, for `ferry components`.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentInfo {
    /// Source, transform, sink or format.
    pub kind: ComponentKind,
    /// The YAML `type:` (or `format:`) name.
    pub name: &'static str,
    /// One line.
    pub description: &'static str,
    /// JSON Schema of the options (self-contained, with `$defs`); none for formats.
    pub schema: Option<Value>,
}

type Map<T> = BTreeMap<&'static str, Arc<dyn Erased<T>>>;

/// Every component a pipeline file can name, by kind and `type:`.
#[derive(Default, Clone)]
pub struct Registry {
    sources: Map<dyn Source>,
    transforms: Map<dyn Transform>,
    sinks: Map<dyn Sink>,
    formats: BTreeMap<&'static str, &'static str>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("transforms", &self.transforms.keys().collect::<Vec<_>>())
            .field("sinks", &self.sinks.keys().collect::<Vec<_>>())
            .field("formats", &self.formats.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a source. A later registration of the same name replaces the earlier one
    /// (so an embedder can override a built-in).
    pub fn register_source<F: SourceFactory>(&mut self, f: F) {
        self.sources.insert(f.name(), Arc::new(SourceEntry(f)));
    }

    /// Registers a transform (same replacement rule).
    pub fn register_transform<F: TransformFactory>(&mut self, f: F) {
        self.transforms
            .insert(f.name(), Arc::new(TransformEntry(f)));
    }

    /// Registers a sink (same replacement rule).
    pub fn register_sink<F: SinkFactory>(&mut self, f: F) {
        self.sinks.insert(f.name(), Arc::new(SinkEntry(f)));
    }

    /// Registers a file format name (listed by `ferry components`; sinks check their own).
    pub fn register_format(&mut self, name: &'static str, description: &'static str) {
        self.formats.insert(name, description);
    }

    /// Names of registered sources.
    pub fn source_names(&self) -> Vec<&'static str> {
        self.sources.keys().copied().collect()
    }

    /// Names of registered transforms.
    pub fn transform_names(&self) -> Vec<&'static str> {
        self.transforms.keys().copied().collect()
    }

    /// Names of registered sinks.
    pub fn sink_names(&self) -> Vec<&'static str> {
        self.sinks.keys().copied().collect()
    }

    /// Names of registered formats.
    pub fn format_names(&self) -> Vec<&'static str> {
        self.formats.keys().copied().collect()
    }

    /// Every registered component with its description and option schema, sources first.
    pub fn components(&self) -> Vec<ComponentInfo> {
        let mut out = Vec::new();
        fn add<T: ?Sized>(out: &mut Vec<ComponentInfo>, kind: ComponentKind, m: &Map<T>) {
            for f in m.values() {
                out.push(ComponentInfo {
                    kind,
                    name: f.name(),
                    description: f.description(),
                    schema: Some(f.root_schema().to_value()),
                });
            }
        }
        add(&mut out, ComponentKind::Source, &self.sources);
        add(&mut out, ComponentKind::Transform, &self.transforms);
        add(&mut out, ComponentKind::Sink, &self.sinks);
        for (name, description) in &self.formats {
            out.push(ComponentInfo {
                kind: ComponentKind::Format,
                name,
                description,
                schema: None,
            });
        }
        out
    }

    /// The JSON Schema of pipeline files: components as `oneOf` by their `type`.
    pub fn pipeline_schema(&self) -> Value {
        let mut g = schema_settings().into_generator();
        fn branches<T: ?Sized>(g: &mut SchemaGenerator, m: &Map<T>) -> Vec<Value> {
            m.values()
                .map(|f| {
                    let sub = f.subschema(g).to_value();
                    with_type_const(g, sub, f.name(), f.description())
                })
                .collect()
        }
        let sources = branches(&mut g, &self.sources);
        let transforms = branches(&mut g, &self.transforms);
        let sinks = branches(&mut g, &self.sinks);
        let delivery = g.subschema_for::<DeliveryConfig>().to_value();
        let telemetry = g.subschema_for::<TelemetryConfig>().to_value();
        let defs: serde_json::Map<String, Value> = g.take_definitions(true);
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Ferry pipeline",
            "description": "One Ferry pipeline: a source, optional transforms, a sink.",
            "type": "object",
            "additionalProperties": false,
            "required": ["name", "source", "sink"],
            "properties": {
                "name": {
                    "description": "Pipeline name: names the checkpoint (checkpoints/<name>.json) and metrics. Letters, digits, '.', '_' and '-'.",
                    "type": "string",
                    "pattern": "^[A-Za-z0-9._-]+$"
                },
                "source": { "description": "Where records come from.", "oneOf": sources },
                "transforms": {
                    "description": "Applied in order to every batch.",
                    "type": "array",
                    "items": { "oneOf": transforms }
                },
                "sink": { "description": "Where records go.", "oneOf": sinks },
                "delivery": delivery,
                "telemetry": telemetry,
            },
            "$defs": defs,
        })
    }

    /// Builds a source from a config given outside a pipeline file (e.g. CLI flags).
    pub fn build_source(
        &self,
        type_name: &str,
        input: &ConfigInput<'_>,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Source>> {
        lookup(&self.sources, "source", type_name)?.build(input, ctx)
    }

    /// Builds a transform from a config given outside a pipeline file.
    pub fn build_transform(
        &self,
        type_name: &str,
        input: &ConfigInput<'_>,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Transform>> {
        lookup(&self.transforms, "transform", type_name)?.build(input, ctx)
    }

    /// Checks a sink config given outside a pipeline file (its options and their meaning)
    /// without building it: no network, nothing created.
    pub fn check_sink(&self, type_name: &str, input: &ConfigInput<'_>) -> Result<()> {
        lookup(&self.sinks, "sink", type_name)?.check(input)
    }

    /// Builds a sink from a config given outside a pipeline file.
    pub fn build_sink(
        &self,
        type_name: &str,
        input: &ConfigInput<'_>,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Sink>> {
        lookup(&self.sinks, "sink", type_name)?.build(input, ctx)
    }

    /// Parses, validates and builds the pipeline in `text` (`file` names it in errors).
    /// `${VAR}` references are interpolated from the environment first.
    pub fn load_pipeline(&self, text: &str, file: &str) -> Result<Pipeline> {
        self.load_pipeline_scoped(text, file, None)
    }

    /// [`Registry::load_pipeline`] for one task of a shared pipeline: the components learn
    /// their part of the work, their fence and where to report progress from `scope`.
    pub fn load_pipeline_scoped(
        &self,
        text: &str,
        file: &str,
        scope: Option<&crate::task::TaskScope>,
    ) -> Result<Pipeline> {
        let (errors, pipeline) = self.prepare(text, file, true, scope);
        match (errors.into_iter().next(), pipeline) {
            (Some(e), _) => Err(e),
            (None, Some(p)) => Ok(p),
            (None, None) => Err(Error::internal(format!("{file}: pipeline was not built"))),
        }
    }

    /// Parses and validates the pipeline in `text` without building it (no network).
    /// Returns the first problem; [`Registry::check_pipeline`] returns all of them.
    pub fn validate_pipeline(&self, text: &str, file: &str) -> Result<()> {
        match self.check_pipeline(text, file).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every problem found in the pipeline in `text` (empty when valid). A syntax error in
    /// the file stops checking there; otherwise each component is checked on its own.
    pub fn check_pipeline(&self, text: &str, file: &str) -> Vec<Error> {
        self.prepare(text, file, false, None).0
    }

    fn prepare(
        &self,
        text: &str,
        file: &str,
        build: bool,
        scope: Option<&crate::task::TaskScope>,
    ) -> (Vec<Error>, Option<Pipeline>) {
        let interp = match interpolate(text, file) {
            Ok(i) => i,
            Err(e) => return (vec![e], None),
        };
        let mut errors = Vec::new();
        let pipeline = self
            .prepare_interpolated(&interp, file, build, scope, &mut errors)
            .map(|p| p.with_secrets(interp.secrets().clone()));
        let errors: Vec<Error> = errors.into_iter().map(|e| interp.fix_error(e)).collect();
        if errors.is_empty() {
            (errors, pipeline)
        } else {
            (errors, None)
        }
    }

    fn prepare_interpolated(
        &self,
        interp: &Interpolated,
        file: &str,
        build: bool,
        scope: Option<&crate::task::TaskScope>,
        errors: &mut Vec<Error>,
    ) -> Option<Pipeline> {
        let text = interp.text.as_str();
        let head: PipelineHead = match parse_yaml_seed(
            text,
            file,
            PhantomData::<PipelineHead>,
            &|path: &[PathSeg]| {
                if path.is_empty() {
                    "the pipeline".into()
                } else {
                    format!("'{}'", path_string(path))
                }
            },
        ) {
            Ok(h) => h,
            Err(e) => {
                errors.push(e);
                return None;
            }
        };
        let at = |path: &[PathSeg]| -> Option<Location> {
            let (line, column) = locate_path(text, path)?;
            Some(Location {
                file: file.to_string(),
                line,
                column,
            })
        };
        let key = |k: &str| PathSeg::Key(k.to_string());

        if head.name.is_empty()
            || !head
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            || head.name.starts_with('.')
        {
            errors.push(Error::Config {
                location: at(&[key("name")]),
                message: format!(
                    "invalid pipeline name '{}': use letters, digits, '.', '_' and '-' (it names the checkpoint file)",
                    head.name
                ),
            });
        }
        let delivery = match head.delivery.resolve() {
            Ok(d) => Some(d),
            Err((field, message)) => {
                errors.push(Error::Config {
                    location: at(&[key("delivery"), key(field)]),
                    message: format!("invalid value for 'delivery.{field}': {message}"),
                });
                None
            }
        };

        let types: Vec<String> = std::iter::once(head.source.type_name.clone())
            .chain(head.transforms.iter().map(|h| h.type_name.clone()))
            .chain(std::iter::once(head.sink.type_name.clone()))
            .collect();
        let describe = |path: &[PathSeg]| -> String {
            let ty = match path {
                [] => return "the pipeline".into(),
                [PathSeg::Key(k), ..] if k == "source" => types.first(),
                [PathSeg::Key(k), ..] if k == "sink" => types.last(),
                [PathSeg::Key(k), PathSeg::Index(i), ..] if k == "transforms" => types.get(i + 1),
                _ => None,
            };
            match ty {
                Some(t) => format!("{} (type {t})", path_string(path)),
                None => format!("'{}'", path_string(path)),
            }
        };
        let ctx = BuildContext {
            pipeline: head.name.clone(),
            scope: scope.cloned(),
        };

        // One closure per kind would triplicate this; a small generic helper keeps the rules
        // (unknown type, config errors, validation and build errors placed at the component)
        // in one place.
        let file_ctx = FileCtx {
            text,
            file,
            describe: &describe,
            at: &at,
            build: if build { Some(&ctx) } else { None },
        };
        let source = file_ctx.component(
            &self.sources,
            "source",
            &head.source.type_name,
            Target::Source,
            vec![key("source")],
            errors,
        );
        let mut transforms = Vec::new();
        for (i, t) in head.transforms.iter().enumerate() {
            if let Some(t) = file_ctx.component(
                &self.transforms,
                "transform",
                &t.type_name,
                Target::Transform(i),
                vec![key("transforms"), PathSeg::Index(i)],
                errors,
            ) {
                transforms.push(t);
            }
        }
        let sink = file_ctx.component(
            &self.sinks,
            "sink",
            &head.sink.type_name,
            Target::Sink,
            vec![key("sink")],
            errors,
        );
        if !errors.is_empty() || !build {
            return None;
        }
        Some(Pipeline {
            name: head.name,
            source: source?,
            transforms,
            sink: sink?,
            delivery: delivery?,
            telemetry: Telemetry {
                prometheus: head.telemetry.prometheus.map(|a| a.0),
            },
            secrets: Default::default(),
        })
    }
}

/// What checking one component of a pipeline file needs to know about the file.
struct FileCtx<'a> {
    text: &'a str,
    file: &'a str,
    describe: &'a dyn Fn(&[PathSeg]) -> String,
    at: &'a dyn Fn(&[PathSeg]) -> Option<Location>,
    /// Build too (not only check), with this context.
    build: Option<&'a BuildContext>,
}

impl FileCtx<'_> {
    /// Checks (and builds) one component; problems go to `errors`.
    fn component<T: ?Sized>(
        &self,
        map: &Map<T>,
        kind: &str,
        type_name: &str,
        target: Target,
        path: Vec<PathSeg>,
        errors: &mut Vec<Error>,
    ) -> Option<Box<T>> {
        let mut type_path = path.clone();
        type_path.push(PathSeg::Key("type".into()));
        let Some(factory) = map.get(type_name) else {
            let known: Vec<&str> = map.keys().copied().collect();
            errors.push(Error::Config {
                location: (self.at)(&type_path).or_else(|| (self.at)(&path)),
                message: format!(
                    "unknown {kind} type '{type_name}' in {}; known {kind} types: {}",
                    path_string(&path),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            });
            return None;
        };
        let input = ConfigInput {
            kind: InputKind::Yaml {
                text: self.text,
                file: self.file,
                target,
                describe: self.describe,
            },
        };
        let placed = |e: Error| -> Error {
            match e {
                Error::Config {
                    location: Some(l),
                    message,
                } => Error::Config {
                    location: Some(l),
                    message,
                },
                Error::Config {
                    location: None,
                    message,
                } => Error::Config {
                    // A check that names its field first (`sasl.mechanism 'X' is not …`)
                    // points at that field's line, not at the component above it.
                    location: field_named_by(&message)
                        .and_then(|field| {
                            let mut p = path.clone();
                            p.extend(field.into_iter().map(PathSeg::Key));
                            (self.at)(&p)
                        })
                        .or_else(|| (self.at)(&path)),
                    message: format!("{}: {message}", (self.describe)(&path)),
                },
                other => Error::Config {
                    location: (self.at)(&path),
                    message: format!("{}: {}", (self.describe)(&path), error_chain(&other)),
                },
            }
        };
        match self.build {
            None => {
                self.check_all(factory.as_ref(), target, &path, &placed, errors);
                None
            }
            Some(ctx) => match factory.build(&input, ctx) {
                Ok(c) => Some(c),
                Err(e) => {
                    errors.push(placed(e));
                    None
                }
            },
        }
    }
}

impl FileCtx<'_> {
    /// Checks one component and reports every problem in it, not only the first: after an
    /// error at a key's line, that key (with whatever is nested under it) is blanked out of a
    /// copy of the text — lines and columns stay where they were — and the component is
    /// checked again, until it passes, an error has no line of its own, or a line repeats.
    fn check_all<T: ?Sized>(
        &self,
        factory: &dyn Erased<T>,
        target: Target,
        path: &[PathSeg],
        placed: &dyn Fn(Error) -> Error,
        errors: &mut Vec<Error>,
    ) {
        /// More problems than this in one component are not worth a longer wait.
        const MAX_PER_COMPONENT: usize = 20;
        let component_line = (self.at)(path).map(|l| l.line);
        let mut text = self.text.to_string();
        let mut seen_lines = Vec::new();
        for _ in 0..MAX_PER_COMPONENT {
            let input = ConfigInput {
                kind: InputKind::Yaml {
                    text: &text,
                    file: self.file,
                    target,
                    describe: self.describe,
                },
            };
            let Err(e) = factory.check(&input) else {
                return;
            };
            let e = self.unknown_field_at_its_line(e, path);
            // Only the parser's errors carry a line; a failed check after a clean parse is
            // the component's last word (blanking its field would only add "missing key").
            let line = match &e {
                Error::Config {
                    location: Some(l), ..
                } => Some(l.line),
                _ => None,
            };
            let message = e.to_string();
            errors.push(placed(e));
            let Some(line) = line.filter(|l| Some(*l) != component_line) else {
                return;
            };
            // The key blanked must be the one the error names: otherwise the error's line is
            // not its own (a flattened option set reports at the component's first key), and
            // blanking it would only make errors up.
            if seen_lines.contains(&line) || !blank_key_at(&mut text, line, &message) {
                return;
            }
            seen_lines.push(line);
        }
    }
}

impl FileCtx<'_> {
    /// serde's own "unknown field `x`" (from a component whose options are partly
    /// flattened, which loses the key's position) moved to the key's line and worded like
    /// the parser's other unknown-key errors.
    fn unknown_field_at_its_line(&self, e: Error, path: &[PathSeg]) -> Error {
        let Error::Config { location, message } = e else {
            return e;
        };
        let field = message
            .split_once("unknown field `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(f, _)| f.to_string());
        let mut key_path = path.to_vec();
        let found = field.as_ref().and_then(|f| {
            key_path.push(PathSeg::Key(f.clone()));
            (self.at)(&key_path)
        });
        match (field, found) {
            (Some(f), Some(at)) => Error::Config {
                location: Some(at),
                message: format!(
                    "unknown key '{f}' in {} (`ferry components` lists its keys)",
                    (self.describe)(path)
                ),
            },
            _ => Error::Config { location, message },
        }
    }
}

/// The field a validation message starts with (`sasl.mechanism 'X' is not …` →
/// `["sasl", "mechanism"]`), when its first word looks like a key path.
fn field_named_by(message: &str) -> Option<Vec<String>> {
    let first = message.split_whitespace().next()?;
    let first = first.trim_matches(|c| c == '\'' || c == '`' || c == ':');
    let valid = !first.is_empty()
        && first
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    valid.then(|| first.split('.').map(str::to_string).collect())
}

/// Replaces with spaces the key whose line (1-based) is `line` — or, when that line holds
/// only a value, the key above it — together with the lines nested under it. Returns false
/// when no key line is found.
fn blank_key_at(text: &mut String, line: u64, message: &str) -> bool {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let is_key = |l: &str| {
        l.trim_start().split_once(':').is_some_and(|(k, _)| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | '\''))
        })
    };
    let Some(mut at) = usize::try_from(line).ok().and_then(|l| l.checked_sub(1)) else {
        return false;
    };
    if at >= lines.len() {
        return false;
    }
    // A value on its own line (`key:\n    value`): the key is the nearest line above that is
    // indented less.
    while !is_key(&lines[at]) && !lines[at].trim_start().starts_with("- ") {
        let own = indent(&lines[at]);
        match (0..at)
            .rev()
            .find(|i| !lines[*i].trim().is_empty() && indent(&lines[*i]) < own)
        {
            Some(i) => at = i,
            None => return false,
        }
    }
    // A key inside a sequence item: blanking it could leave an empty item, a new error of
    // its own; stop at the first error there.
    if lines[at].trim_start().starts_with("- ") {
        return false;
    }
    let key = lines[at]
        .trim_start()
        .split_once(':')
        .map(|(k, _)| k.trim_matches(|c| c == '"' || c == '\''))
        .unwrap_or_default();
    if !message.contains(key) {
        return false;
    }
    let own = indent(&lines[at]);
    lines[at] = " ".repeat(lines[at].len());
    for l in lines.iter_mut().skip(at + 1) {
        if l.trim().is_empty() {
            continue;
        }
        if indent(l) <= own {
            break;
        }
        *l = " ".repeat(l.len());
    }
    *text = lines.join("\n");
    true
}

fn lookup<'m, T: ?Sized>(m: &'m Map<T>, kind: &str, name: &str) -> Result<&'m Arc<dyn Erased<T>>> {
    m.get(name).ok_or_else(|| {
        let known: Vec<&str> = m.keys().copied().collect();
        Error::config(format!(
            "unknown {kind} type '{name}'; known {kind} types: {}",
            known.join(", ")
        ))
    })
}

/// Adds `type: {const: name}` to a component's schema (inlining a `$ref` to its definition).
fn with_type_const(g: &mut SchemaGenerator, sub: Value, name: &str, description: &str) -> Value {
    // Resolve `{"$ref": "#/$defs/X"}` to the definition, so `type` can be added next to the
    // other properties (the config denies unknown fields, so an `allOf` would not do).
    let mut schema = match sub.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let def = r.rsplit('/').next().unwrap_or_default().to_string();
            g.definitions().get(&def).cloned().unwrap_or(sub)
        }
        None => sub,
    };
    let type_prop = json!({ "const": name, "description": description });
    match schema.as_object_mut() {
        Some(obj)
            if obj.contains_key("properties") || obj.get("type") == Some(&json!("object")) =>
        {
            obj.entry("properties")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|p| p.insert("type".into(), type_prop));
            let req = obj.entry("required").or_insert_with(|| json!([]));
            if let Some(a) = req.as_array_mut() {
                a.insert(0, json!("type"));
            }
            obj.insert("title".into(), json!(name));
            schema
        }
        _ => json!({
            "title": name,
            "allOf": [
                { "type": "object", "properties": { "type": type_prop }, "required": ["type"] },
                schema
            ]
        }),
    }
}

// --- the first pass over a pipeline file ----------------------------------------------------

/// The `type` of the source and of the sink of the pipeline in `text` (`${VAR}` references
/// interpolated first), without checking or building anything else: enough to tell a restore
/// (a `backup` source into a `kafka` sink) before any runtime starts.
pub fn pipeline_ends(text: &str, file: &str) -> Result<(String, String)> {
    let interp = interpolate(text, file)?;
    let head: PipelineHead = parse_yaml_seed(
        &interp.text,
        file,
        PhantomData::<PipelineHead>,
        &|path: &[PathSeg]| path_string(path),
    )?;
    Ok((head.source.type_name, head.sink.type_name))
}

/// The pipeline file with components reduced to their `type` (first pass).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineHead {
    name: String,
    source: Head,
    #[serde(default)]
    transforms: Vec<Head>,
    sink: Head,
    #[serde(default)]
    delivery: DeliveryConfig,
    #[serde(default)]
    telemetry: TelemetryConfig,
}

/// A component map seen only for its `type`.
struct Head {
    type_name: String,
}

impl<'de> Deserialize<'de> for Head {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Head;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a component map with a `type` key")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Head, A::Error> {
                let mut type_name = None;
                while let Some(k) = map.next_key::<String>()? {
                    if k == "type" {
                        type_name = Some(map.next_value::<String>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                type_name
                    .map(|type_name| Head { type_name })
                    .ok_or_else(|| de::Error::missing_field("type"))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_faulty_key_is_blanked_with_what_is_nested_under_it() {
        let mut text = "sink:\n  a: 1\n  roll:\n    x: 2\n    y: 3\n  b: 4\n".to_string();
        // Only the key the error names.
        assert!(!blank_key_at(&mut text, 2, "unknown key 'roll'"));
        assert!(blank_key_at(&mut text, 3, "unknown key 'roll'"));
        assert_eq!(text, "sink:\n  a: 1\n       \n        \n        \n  b: 4\n");
        // A value on its own line: its key goes.
        let mut text = "sink:\n  p:\n    presrve\n  b: 4\n".to_string();
        assert!(blank_key_at(
            &mut text,
            3,
            "unknown value 'presrve' for 'sink.p'"
        ));
        assert_eq!(text, "sink:\n    \n           \n  b: 4\n");
        // Inside a sequence item: not touched.
        let mut text = "t:\n  - type: x\n".to_string();
        assert!(!blank_key_at(&mut text, 2, "type"));
        assert!(!blank_key_at(&mut text, 9, "type"));
    }

    #[test]
    fn a_check_naming_its_field_first_is_placed_there() {
        assert_eq!(
            field_named_by("sasl.mechanism 'PLAN' is not one of PLAIN"),
            Some(vec!["sasl".to_string(), "mechanism".to_string()])
        );
        assert_eq!(
            field_named_by("compression 'x' is not one of none"),
            Some(vec!["compression".to_string()])
        );
        assert_eq!(field_named_by("Topic 'x' is wrong"), None);
    }
}
