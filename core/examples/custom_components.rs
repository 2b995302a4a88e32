//! Ferry as a library: your own source and sink, run from Rust and from YAML.
//!
//! ```sh
//! cargo run -p ferry-core --example custom_components
//! ```
//!
//! 1. A `countdown` source (emits N records, then finishes) and an `uppercase` sink (keeps
//!    values upper-cased in memory) are defined below.
//! 2. A pipeline is built in Rust with [`Pipeline::new`] and run.
//! 3. The same components are registered under YAML `type:` names and a pipeline is loaded
//!    from YAML text (with `${VAR:-default}` interpolation and a built-in transform) and run.

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::registry::{BuildContext, Registry, SinkFactory, SourceFactory};
use ferry_core::{Batch, Pipeline, Record, Result, Sink, Source, SourceContext};
use serde::Deserialize;
use std::sync::{Arc, Mutex};

// --- a source ---------------------------------------------------------------------------------

/// Emits `count` records `"n"` on partition 0 of `topic`, `batch` at a time, then finishes.
struct Countdown {
    topic: Arc<str>,
    count: i64,
    batch: i64,
    next: Option<i64>,
}

#[async_trait]
impl Source for Countdown {
    async fn next_batch(&mut self, ctx: &SourceContext) -> Result<Option<Batch>> {
        // Resume where the last run's checkpoint says (none here: this example keeps none).
        let next = *self
            .next
            .get_or_insert_with(|| ctx.resume_offset(&self.topic, 0).unwrap_or(0));
        if next >= self.count {
            return Ok(None);
        }
        let end = (next + self.batch).min(self.count);
        let records = (next..end)
            .map(|o| {
                let value = Bytes::from(format!("record {}", self.count - o));
                Record::new(self.topic.clone(), 0, o, Some(value))
            })
            .collect();
        self.next = Some(end);
        // Every batch carries an ack from the context; the sink resolves it once durable.
        let ack = ctx.ack(&self.topic, 0, next, end);
        Ok(Some(Batch::from_records(
            self.topic.clone(),
            0,
            next,
            end,
            records,
            ack,
        )))
    }
}

/// YAML options of `countdown` (no `type` field: the registry strips it).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CountdownConfig {
    /// Records to emit.
    count: i64,
    /// Topic name (default `countdown`).
    #[serde(default = "default_topic")]
    topic: String,
    /// Records per batch (default 10).
    #[serde(default = "default_batch")]
    batch: i64,
}

fn default_topic() -> String {
    "countdown".into()
}
fn default_batch() -> i64 {
    10
}

struct CountdownFactory;

impl SourceFactory for CountdownFactory {
    type Config = CountdownConfig;
    fn name(&self) -> &'static str {
        "countdown"
    }
    fn description(&self) -> &'static str {
        "Emits `count` records, then finishes"
    }
    fn validate(&self, c: &CountdownConfig) -> Result<()> {
        if c.count < 0 || c.batch < 1 {
            return Err(ferry_core::Error::config(
                "count must be >= 0 and batch >= 1",
            ));
        }
        Ok(())
    }
    fn build(&self, c: CountdownConfig, _ctx: &BuildContext) -> Result<Box<dyn Source>> {
        Ok(Box::new(Countdown {
            topic: Arc::from(c.topic.as_str()),
            count: c.count,
            batch: c.batch,
            next: None,
        }))
    }
}

// --- a sink -----------------------------------------------------------------------------------

/// Keeps upper-cased values (and their headers' count) in shared memory.
struct Uppercase {
    out: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Sink for Uppercase {
    async fn write(&mut self, batch: Batch) -> Result<()> {
        let records = batch.records()?;
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        for r in records.iter() {
            let v = r.value.as_deref().unwrap_or_default();
            out.push(format!(
                "{} (+{} headers)",
                String::from_utf8_lossy(v).to_uppercase(),
                r.headers.len()
            ));
        }
        drop(out);
        drop(records);
        // Memory is as durable as it gets here: resolve right away.
        batch.ack.resolve();
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct UppercaseConfig {}

/// Builds `uppercase` sinks that all append to one shared vector.
struct UppercaseFactory {
    out: Arc<Mutex<Vec<String>>>,
}

impl SinkFactory for UppercaseFactory {
    type Config = UppercaseConfig;
    fn name(&self) -> &'static str {
        "uppercase"
    }
    fn description(&self) -> &'static str {
        "Keeps upper-cased values in memory"
    }
    fn build(&self, _c: UppercaseConfig, _ctx: &BuildContext) -> Result<Box<dyn Sink>> {
        Ok(Box::new(Uppercase {
            out: self.out.clone(),
        }))
    }
}

// --- running both ways ------------------------------------------------------------------------

const PIPELINE: &str = r#"
name: example-yaml
source:
  type: countdown
  count: ${EXAMPLE_COUNT:-25}
  batch: 7
transforms:
  - type: insert_headers
    headers: [{ key: via, value: yaml }]
sink:
  type: uppercase
delivery:
  checkpoint: none
"#;

/// Runs the example; returns the values each pipeline produced.
pub async fn example() -> Result<(Vec<String>, Vec<String>)> {
    // 1. In Rust.
    let out = Arc::new(Mutex::new(Vec::new()));
    let pipeline = Pipeline::new(
        "example-rust",
        Box::new(Countdown {
            topic: Arc::from("countdown"),
            count: 5,
            batch: 2,
            next: None,
        }),
        Vec::new(),
        Box::new(Uppercase { out: out.clone() }),
    )
    .without_checkpoint();
    // `std::future::pending()` never asks to stop: the run ends when the source does.
    // Binaries use `ferry_core::run_until_signal` to drain on SIGINT/SIGTERM.
    let summary = ferry_core::run(pipeline, std::future::pending()).await?;
    println!(
        "in Rust: {} records in {} batches",
        summary.records, summary.batches
    );
    let from_rust = std::mem::take(&mut *out.lock().unwrap_or_else(|p| p.into_inner()));

    // 2. From YAML, through a registry.
    let mut registry = Registry::new();
    ferry_core::transforms::register(&mut registry); // built-in transforms
    registry.register_source(CountdownFactory);
    registry.register_sink(UppercaseFactory { out: out.clone() });
    registry.validate_pipeline(PIPELINE, "example.yaml")?;
    let pipeline = registry.load_pipeline(PIPELINE, "example.yaml")?;
    let summary = ferry_core::run(pipeline, std::future::pending()).await?;
    println!(
        "from YAML: {} records in {} batches",
        summary.records, summary.batches
    );
    let from_yaml = std::mem::take(&mut *out.lock().unwrap_or_else(|p| p.into_inner()));

    // Mistakes in YAML are reported with their position.
    let typo = PIPELINE.replace("batch: 7", "bacth: 7");
    if let Err(e) = registry.validate_pipeline(&typo, "example.yaml") {
        println!("a typo is caught: {e}");
    }
    Ok((from_rust, from_yaml))
}

#[tokio::main]
async fn main() -> Result<()> {
    let (from_rust, from_yaml) = example().await?;
    for v in from_rust.iter().chain(from_yaml.iter().take(3)) {
        println!("  {v}");
    }
    Ok(())
}
