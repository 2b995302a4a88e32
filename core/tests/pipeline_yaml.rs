//! Pipeline files through the registry: every error names file:line:column and the key or
//! variable at fault, secrets never show, and valid files build with their settings.

use async_trait::async_trait;
use ferry_core::config::CheckpointTarget;
use ferry_core::registry::{
    BuildContext, ComponentKind, ConfigInput, Registry, SinkFactory, SourceFactory,
};
use ferry_core::testing::{AckMode, TestSink, TestSource};
use ferry_core::{Batch, Error, Result, Sink, Source, SourceContext};
use serde::Deserialize;
use std::sync::Once;
use std::time::Duration;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct TestSourceConfig {
    /// Topics to read.
    topics: Vec<String>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    nested: Option<Nested>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Fast,
    Slow,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Nested {
    max: u32,
}

struct NoSource;

#[async_trait]
impl Source for NoSource {
    async fn next_batch(&mut self, _ctx: &SourceContext) -> Result<Option<Batch>> {
        Ok(None)
    }
}

struct TestSourceFactory;

impl SourceFactory for TestSourceFactory {
    type Config = TestSourceConfig;
    fn name(&self) -> &'static str {
        "test_source"
    }
    fn description(&self) -> &'static str {
        "a source for tests"
    }
    fn validate(&self, c: &TestSourceConfig) -> Result<()> {
        if let Some(r) = &c.regex {
            if r.contains('(') && !r.contains(')') {
                return Err(Error::config(format!(
                    "option `regex`: unclosed group in `{r}`"
                )));
            }
        }
        Ok(())
    }
    fn build(&self, _c: TestSourceConfig, _ctx: &BuildContext) -> Result<Box<dyn Source>> {
        Ok(Box::new(NoSource))
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct TestSinkConfig {
    /// Where.
    uri: String,
}

struct TestSinkFactory;

impl SinkFactory for TestSinkFactory {
    type Config = TestSinkConfig;
    fn name(&self) -> &'static str {
        "test_sink"
    }
    fn description(&self) -> &'static str {
        "a sink for tests"
    }
    fn validate(&self, c: &TestSinkConfig) -> Result<()> {
        if !c.uri.contains("://") {
            // Echoes the value on purpose: the registry must redact secrets from it.
            return Err(Error::config(format!("cannot use uri '{}'", c.uri)));
        }
        Ok(())
    }
    fn build(&self, _c: TestSinkConfig, _ctx: &BuildContext) -> Result<Box<dyn Sink>> {
        Ok(Box::new(TestSink::new(AckMode::Immediate)))
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register_source(TestSourceFactory);
    r.register_sink(TestSinkFactory);
    ferry_core::transforms::register(&mut r);
    r
}

const SECRET: &str = "hunter2-very-secret";

/// Variables every test may read; set once, before any test reads them.
fn env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("FERRY_YAML_TEST_SECRET", SECRET);
        std::env::set_var("FERRY_YAML_TEST_LONG", "1234567890123");
        std::env::set_var("FERRY_YAML_TEST_TOPIC", "orders");
        std::env::remove_var("FERRY_YAML_TEST_UNSET");
    });
}

fn err(text: &str) -> String {
    env();
    match registry().validate_pipeline(text, "p.yaml") {
        Ok(()) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unknown_key_inside_a_component() {
    let e = err("name: p\nsource:\n  type: test_source\n  topcs: [a]\nsink:\n  type: test_sink\n  uri: mem://x\n");
    assert_eq!(
        e,
        "p.yaml:4:3: unknown key 'topcs' in source (type test_source); expected one of: topics, count, regex, mode, nested"
    );
}

#[test]
fn unknown_top_level_key() {
    let e = err("name: p\nsource: { type: test_source, topics: [a] }\nsinks:\n  type: test_sink\n");
    assert!(e.starts_with("p.yaml:3:1: unknown key 'sinks' in the pipeline; expected one of: name, source, transforms, sink, delivery, telemetry"), "{e}");
}

#[test]
fn nested_unknown_key_in_a_transform() {
    let e = err("name: p\nsource: { type: test_source, topics: [a] }\ntransforms:\n  - type: insert_headers\n    headers: [{ key: a, value: b }]\n  - type: filter\n    predicate:\n      key_rgex: a\nsink: { type: test_sink, uri: mem://x }\n");
    assert!(
        e.starts_with(
            "p.yaml:8:7: unknown key 'key_rgex' in transforms[1].predicate (type filter)"
        ),
        "{e}"
    );
}

#[test]
fn wrong_type_names_the_key() {
    let e = err("name: p\nsource:\n  type: test_source\n  topics: [a]\n  count: many\nsink: { type: test_sink, uri: mem://x }\n");
    assert!(e.starts_with("p.yaml:5:10: "), "{e}");
    assert!(e.contains("'source.count'"), "{e}");
    let e = err("name: p\nsource:\n  type: test_source\n  topics: a-string\nsink: { type: test_sink, uri: mem://x }\n");
    assert!(e.starts_with("p.yaml:4:11: "), "{e}");
    assert!(e.contains("source.topics"), "{e}");
    let e = err("name: p\nsource:\n  type: test_source\n  topics: [a]\n  nested: { max: -3 }\nsink: { type: test_sink, uri: mem://x }\n");
    assert!(e.starts_with("p.yaml:5:"), "{e}");
    assert!(e.contains("source.nested.max"), "{e}");
}

#[test]
fn bad_indentation_is_located() {
    let e = err("name: p\nsource:\n  type: test_source\n  topics: [a]\n   count: 3\nsink: { type: test_sink, uri: mem://x }\n");
    assert!(e.starts_with("p.yaml:5:"), "{e}");
    assert!(e.contains("indentation"), "{e}");
    let e = err("name: p\nsource:\n  type: test_source\n topics: [a]\nsink: { type: test_sink, uri: mem://x }\n");
    assert!(e.starts_with("p.yaml:4:"), "{e}");
}

#[test]
fn missing_keys() {
    let e = err("name: p\nsource:\n  topics: [a]\nsink: { type: test_sink, uri: mem://x }\n");
    assert!(e.starts_with("p.yaml:"), "{e}");
    assert!(
        e.contains("missing key 'type'") && e.contains("source"),
        "{e}"
    );
    let e =
        err("name: p\nsource: { type: test_source }\nsink: { type: test_sink, uri: mem://x }\n");
    assert!(
        e.contains("missing key 'topics' in source (type test_source)"),
        "{e}"
    );
    let e = err(
        "source: { type: test_source, topics: [a] }\nsink: { type: test_sink, uri: mem://x }\n",
    );
    assert!(e.contains("missing key 'name'"), "{e}");
}

#[test]
fn unset_variable_names_variable_and_position() {
    let e = err("name: p\nsource:\n  type: test_source\n  topics: [\"${FERRY_YAML_TEST_UNSET}\"]\nsink: { type: test_sink, uri: mem://x }\n");
    assert!(
        e.starts_with("p.yaml:4:13: environment variable 'FERRY_YAML_TEST_UNSET' is not set"),
        "{e}"
    );
}

#[test]
fn defaults_and_escapes_interpolate() {
    env();
    let text = "name: p\nsource:\n  type: test_source\n  topics: [\"${FERRY_YAML_TEST_TOPIC}\", \"${FERRY_YAML_TEST_UNSET:-fallback}\", \"$${literal}\"]\n  # ${FERRY_YAML_TEST_UNSET} in a comment is ignored\nsink: { type: test_sink, uri: mem://x }\n";
    registry().validate_pipeline(text, "p.yaml").unwrap();
    let input_text = "topics: [\"${FERRY_YAML_TEST_TOPIC}\"]\n";
    let i = ferry_core::interpolate::interpolate(input_text, "x").unwrap();
    let c: TestSourceConfig = ConfigInput::yaml(&i.text, "x").deserialize().unwrap();
    assert_eq!(c.topics, vec!["orders".to_string()]);
}

#[test]
fn secrets_are_redacted_from_every_error() {
    // Echoed by the YAML layer (unknown variant) …
    let e = err("name: p\nsource:\n  type: test_source\n  topics: [a]\n  mode: ${FERRY_YAML_TEST_SECRET}\nsink: { type: test_sink, uri: mem://x }\n");
    assert!(!e.contains(SECRET), "{e}");
    assert!(e.contains("***"), "{e}");
    assert!(e.starts_with("p.yaml:5:"), "{e}");
    // … and by a component's own validation.
    let e = err("name: p\nsource: { type: test_source, topics: [a] }\nsink:\n  type: test_sink\n  uri: \"${FERRY_YAML_TEST_SECRET}\"\n");
    assert!(!e.contains(SECRET), "{e}");
    assert!(
        e.contains("sink (type test_sink): cannot use uri '***'"),
        "{e}"
    );
    assert!(e.starts_with("p.yaml:3:1: "), "{e}");
}

#[test]
fn columns_after_a_substitution_point_at_the_original_text() {
    // `topcs` sits after a 26-character reference replaced by a 13-character value.
    let text = "name: p\nsource: { type: test_source, count: ${FERRY_YAML_TEST_LONG}, topcs: [a] }\nsink: { type: test_sink, uri: mem://x }\n";
    let e = err(text);
    let col = text.lines().nth(1).unwrap().find("topcs").unwrap() + 1;
    assert!(
        e.starts_with(&format!("p.yaml:2:{col}: unknown key 'topcs'")),
        "{e}"
    );
}

#[test]
fn unknown_component_type_lists_known_ones() {
    let e = err("name: p\nsource: { type: test_source, topics: [a] }\ntransforms:\n  - type: filtr\nsink: { type: test_sink, uri: mem://x }\n");
    assert!(
        e.starts_with("p.yaml:4:5: unknown transform type 'filtr'"),
        "{e}"
    );
    assert!(e.contains("filter") && e.contains("rename_topic"), "{e}");
}

#[test]
fn component_validation_errors_are_placed_at_the_component() {
    let e = err("name: p\nsource:\n  type: test_source\n  topics: [a]\n  regex: \"(open\"\nsink: { type: test_sink, uri: mem://x }\n");
    assert!(
        e.starts_with("p.yaml:2:1: source (type test_source): option `regex`"),
        "{e}"
    );
}

#[test]
fn check_reports_every_component_problem() {
    env();
    let errors = registry().check_pipeline(
        "name: p\nsource: { type: test_source, topics: [a], cont: 1 }\nsink: { type: test_sink, uri: nope }\ndelivery: { channel_capacity: 0 }\n",
        "p.yaml",
    );
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 3, "{text:#?}");
    assert!(
        text.iter().any(|e| e.contains("unknown key 'cont'")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|e| e.contains("cannot use uri")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|e| e.starts_with("p.yaml:4:") && e.contains("delivery.channel_capacity")),
        "{text:#?}"
    );
}

#[test]
fn invalid_pipeline_name() {
    let e = err("name: \"a/b\"\nsource: { type: test_source, topics: [a] }\nsink: { type: test_sink, uri: mem://x }\n");
    assert!(
        e.starts_with("p.yaml:1:1: invalid pipeline name 'a/b'"),
        "{e}"
    );
}

#[test]
fn valid_file_builds_with_its_settings() {
    env();
    let p = registry()
        .load_pipeline(
            "name: full\nsource: { type: test_source, topics: [a] }\ntransforms:\n  - type: insert_headers\n    headers: [{ key: k, value: v }]\nsink: { type: test_sink, uri: mem://x }\ndelivery:\n  checkpoint: memory://cp\n  checkpoint_interval: 250ms\n  max_in_flight_bytes: 1KiB\n  channel_capacity: 3\ntelemetry:\n  prometheus: 127.0.0.1:9464\n",
            "p.yaml",
        )
        .unwrap();
    assert_eq!(p.name, "full");
    assert_eq!(p.transforms.len(), 1);
    assert!(matches!(&p.delivery.checkpoint, CheckpointTarget::Uri(u) if u == "memory://cp"));
    assert_eq!(p.delivery.checkpoint_interval, Duration::from_millis(250));
    assert_eq!(p.delivery.max_in_flight_bytes, 1024);
    assert_eq!(p.delivery.channel_capacity, 3);
    assert_eq!(
        p.telemetry.prometheus,
        Some("127.0.0.1:9464".parse().unwrap())
    );

    let p = registry()
        .load_pipeline(
            "name: d\nsource: { type: test_source, topics: [a] }\nsink: { type: test_sink, uri: mem://x }\ndelivery: { checkpoint: none, max_in_flight_bytes: 128MB }\n",
            "p.yaml",
        )
        .unwrap();
    assert!(matches!(p.delivery.checkpoint, CheckpointTarget::Disabled));
    assert_eq!(p.delivery.max_in_flight_bytes, 128_000_000);
    assert_eq!(p.delivery.checkpoint_interval, Duration::from_secs(5));

    let e = err("name: d\nsource: { type: test_source, topics: [a] }\nsink: { type: test_sink, uri: mem://x }\ntelemetry: { prometheus: localhost }\n");
    assert!(
        e.starts_with("p.yaml:4:") && e.contains("telemetry.prometheus"),
        "{e}"
    );
}

#[test]
fn json_config_input_skips_type() {
    let v = serde_json::json!({ "type": "test_source", "topics": ["x"], "count": 3 });
    let c: TestSourceConfig = ConfigInput::json(&v).deserialize().unwrap();
    assert_eq!(c.count, Some(3));
    let v = serde_json::json!({ "topics": ["x"], "nested": { "max": "no" } });
    let e = ConfigInput::json(&v)
        .deserialize::<TestSourceConfig>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("nested.max"), "{e}");
    let ctx = BuildContext {
        pipeline: "cli".into(),
        ..Default::default()
    };
    let v = serde_json::json!({ "uri": "mem://x" });
    assert!(registry()
        .build_sink("test_sink", &ConfigInput::json(&v), &ctx)
        .is_ok());
    assert!(registry()
        .build_sink("nope", &ConfigInput::json(&v), &ctx)
        .is_err());
}

#[test]
fn listing_and_schema() {
    let r = registry();
    let all = r.components();
    let src = all.iter().find(|c| c.name == "test_source").unwrap();
    assert_eq!(src.kind, ComponentKind::Source);
    let schema = src.schema.as_ref().unwrap();
    assert_eq!(
        schema["properties"]["topics"]["description"],
        "Topics to read."
    );

    let s = r.pipeline_schema();
    assert_eq!(s["required"], serde_json::json!(["name", "source", "sink"]));
    let sources = s["properties"]["source"]["oneOf"].as_array().unwrap();
    let t = sources
        .iter()
        .find(|b| b["properties"]["type"]["const"] == "test_source")
        .expect("test_source branch");
    assert_eq!(t["required"][0], "type");
    assert_eq!(t["additionalProperties"], false);
    assert!(t["properties"]["topics"].is_object());
    let transforms = s["properties"]["transforms"]["items"]["oneOf"]
        .as_array()
        .unwrap();
    assert!(transforms
        .iter()
        .any(|b| b["properties"]["type"]["const"] == "filter"));
    // Every `$ref` in the document resolves.
    let text = s.to_string();
    for r in text.split("\"$ref\":\"#/$defs/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        assert!(s["$defs"].get(name).is_some(), "dangling $ref {name}");
    }
}

struct OneSourceFactory;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Empty {}

impl SourceFactory for OneSourceFactory {
    type Config = Empty;
    fn name(&self) -> &'static str {
        "one"
    }
    fn description(&self) -> &'static str {
        "one record"
    }
    fn build(&self, _c: Empty, _ctx: &BuildContext) -> Result<Box<dyn Source>> {
        Ok(Box::new(TestSource::new(1, 1)))
    }
}

/// Fails every write with a message that quotes its URI.
struct QuotingSink(String);

#[async_trait]
impl Sink for QuotingSink {
    async fn write(&mut self, _batch: Batch) -> Result<()> {
        Err(Error::internal(format!("cannot write to {}", self.0)))
    }
    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

struct QuotingSinkFactory;

impl SinkFactory for QuotingSinkFactory {
    type Config = TestSinkConfig;
    fn name(&self) -> &'static str {
        "quoting"
    }
    fn description(&self) -> &'static str {
        "fails, quoting its uri"
    }
    fn build(&self, c: TestSinkConfig, _ctx: &BuildContext) -> Result<Box<dyn Sink>> {
        Ok(Box::new(QuotingSink(c.uri)))
    }
}

#[tokio::test]
async fn runtime_errors_are_redacted_too() {
    env();
    let mut r = registry();
    r.register_source(OneSourceFactory);
    r.register_sink(QuotingSinkFactory);
    let p = r
        .load_pipeline(
            "name: r\nsource: { type: one }\nsink:\n  type: quoting\n  uri: \"s3://bucket/?key=${FERRY_YAML_TEST_SECRET}\"\ndelivery: { checkpoint: none }\n",
            "p.yaml",
        )
        .unwrap();
    let e = ferry_core::run(p, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(e, "cannot write to s3://bucket/?key=***");
}
