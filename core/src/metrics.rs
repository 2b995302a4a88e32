//! Metric names, the per-pipeline handles the runtime updates, and the optional Prometheus
//! endpoint.
//!
//! Metrics go through the `metrics` crate facade, so an embedder can install any recorder;
//! without one every update is a no-op. `telemetry: { prometheus: 127.0.0.1:9464 }` installs
//! the Prometheus exporter (once per process) and serves `/metrics` there.
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `ferry_records_total` | counter | pipeline, stage | records that left the source / were written by the sink |
//! | `ferry_bytes_total` | counter | pipeline, stage | bytes (record size estimate) at each stage |
//! | `ferry_batches_total` | counter | pipeline, stage | batches at each stage |
//! | `ferry_in_flight_bytes` | gauge | pipeline | bytes read but not yet written |
//! | `ferry_checkpoint_offset` | gauge | pipeline, topic, partition | last committed next offset |
//! | `ferry_checkpoints_total` | counter | pipeline | checkpoints written |
//! | `ferry_errors_total` | counter | pipeline, kind | errors by kind (source, transform, sink, checkpoint, …) |
//! | `ferry_files_written_total` | counter | pipeline, sink | files written by storage sinks |
//! | `ferry_consumer_lag` | gauge | pipeline, topic, partition | high watermark minus next offset (Kafka sources) |

use crate::error::{Error, Result};
use metrics::{counter, gauge, Counter, Gauge};
use std::net::SocketAddr;
use std::sync::Mutex;

/// Records per stage.
pub const RECORDS_TOTAL: &str = "ferry_records_total";
/// Bytes per stage.
pub const BYTES_TOTAL: &str = "ferry_bytes_total";
/// Batches per stage.
pub const BATCHES_TOTAL: &str = "ferry_batches_total";
/// Bytes in flight.
pub const IN_FLIGHT_BYTES: &str = "ferry_in_flight_bytes";
/// Committed next offset per partition.
pub const CHECKPOINT_OFFSET: &str = "ferry_checkpoint_offset";
/// Checkpoints written.
pub const CHECKPOINTS_TOTAL: &str = "ferry_checkpoints_total";
/// Errors by kind.
pub const ERRORS_TOTAL: &str = "ferry_errors_total";
/// Files written by storage sinks (label `sink`).
pub const FILES_WRITTEN_TOTAL: &str = "ferry_files_written_total";
/// Consumer lag per partition (Kafka sources).
pub const CONSUMER_LAG: &str = "ferry_consumer_lag";

/// Describes every metric (help texts for Prometheus) to the installed recorder. Cheap and
/// idempotent: the runtime calls it at every start, so a recorder installed later still
/// gets the descriptions.
pub fn describe() {
    metrics::describe_counter!(
        RECORDS_TOTAL,
        "Records per pipeline stage (source: read, sink: written)"
    );
    metrics::describe_counter!(
        BYTES_TOTAL,
        metrics::Unit::Bytes,
        "Bytes per pipeline stage"
    );
    metrics::describe_counter!(BATCHES_TOTAL, "Batches per pipeline stage");
    metrics::describe_gauge!(
        IN_FLIGHT_BYTES,
        metrics::Unit::Bytes,
        "Bytes read but not yet written"
    );
    metrics::describe_gauge!(
        CHECKPOINT_OFFSET,
        "Last committed next offset per partition"
    );
    metrics::describe_counter!(CHECKPOINTS_TOTAL, "Checkpoints written");
    metrics::describe_counter!(ERRORS_TOTAL, "Errors by kind");
    metrics::describe_counter!(FILES_WRITTEN_TOTAL, "Files written by storage sinks");
    metrics::describe_gauge!(
        CONSUMER_LAG,
        "High watermark minus next offset per partition"
    );
}

/// Counts an error of `kind` for `pipeline`.
pub fn error(pipeline: &str, kind: &'static str) {
    counter!(ERRORS_TOTAL, "pipeline" => pipeline.to_string(), "kind" => kind).increment(1);
}

/// Sets the committed offset gauge of a partition.
pub fn checkpoint_offset(pipeline: &str, topic: &str, partition: i32, next_offset: i64) {
    gauge!(
        CHECKPOINT_OFFSET,
        "pipeline" => pipeline.to_string(),
        "topic" => topic.to_string(),
        "partition" => partition.to_string()
    )
    .set(next_offset as f64);
}

/// Handles for one pipeline's stage counters, registered once instead of per batch.
#[derive(Clone)]
pub(crate) struct StageMetrics {
    pub records: Counter,
    pub bytes: Counter,
    pub batches: Counter,
}

impl StageMetrics {
    pub fn new(pipeline: &str, stage: &'static str) -> Self {
        let p = pipeline.to_string();
        StageMetrics {
            records: counter!(RECORDS_TOTAL, "pipeline" => p.clone(), "stage" => stage),
            bytes: counter!(BYTES_TOTAL, "pipeline" => p.clone(), "stage" => stage),
            batches: counter!(BATCHES_TOTAL, "pipeline" => p, "stage" => stage),
        }
    }

    pub fn add(&self, records: u64, bytes: u64) {
        self.records.increment(records);
        self.bytes.increment(bytes);
        self.batches.increment(1);
    }
}

/// The in-flight bytes gauge of a pipeline.
pub(crate) fn in_flight(pipeline: &str) -> Gauge {
    gauge!(IN_FLIGHT_BYTES, "pipeline" => pipeline.to_string())
}

/// The address `install_prometheus` serves on, once it did.
static INSTALLED: Mutex<Option<SocketAddr>> = Mutex::new(None);
/// The recorder a worker installed to render `/metrics` itself.
static RECORDER: Mutex<Option<metrics_exporter_prometheus::PrometheusHandle>> = Mutex::new(None);

/// Installs a Prometheus recorder without a listener of its own (the worker renders its
/// `/metrics`) and returns its handle; `None` when another recorder was installed first.
pub fn install_recorder() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    let mut slot = RECORDER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = slot.as_ref() {
        return Some(h.clone());
    }
    if INSTALLED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_some()
    {
        return None;
    }
    match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        Ok(h) => {
            describe();
            *slot = Some(h.clone());
            Some(h)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the Prometheus recorder; /metrics stays empty");
            None
        }
    }
}

/// Installs the Prometheus exporter serving `http://addr/metrics`, once per process.
///
/// A second call with the same address is a no-op (several pipelines of one `ferry run`
/// may name it); a different address is an error, since a process has one global recorder.
/// Must be called inside a tokio runtime.
pub fn install_prometheus(addr: SocketAddr) -> Result<()> {
    if RECORDER.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
        // A worker serves every pipeline's metrics on its own `/metrics`.
        tracing::info!(%addr, "telemetry.prometheus ignored: the worker serves metrics at /metrics");
        return Ok(());
    }
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    match *installed {
        Some(a) if a == addr => return Ok(()),
        Some(a) => {
            return Err(Error::config(format!(
                "telemetry.prometheus: this process already serves metrics on {a}; every pipeline of one run must use the same address (asked for {addr})"
            )))
        }
        None => {}
    }
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| Error::internal(format!("cannot serve Prometheus metrics on {addr}: {e}")))?;
    describe();
    *installed = Some(addr);
    tracing::info!(%addr, "serving Prometheus metrics on http://{addr}/metrics");
    Ok(())
}
