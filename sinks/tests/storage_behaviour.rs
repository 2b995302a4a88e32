//! One behaviour suite for the `storage` sink, run by every backend (memory, a local
//! folder, and on the dev environment S3 (moto), Azure Blob (Azurite) and GCS
//! (fake-gcs-server)) with every format (raw, jsonl, avro,
//! parquet): write, reopen (`Sink::open` reports the durable offsets), resume without
//! duplicates (the source re-sends offsets the sink holds), and read back through the
//! `backup` source equal to what was written.
//!
//! The S3, Azure and GCS cases need the dev environment (`scripts/dev-env up`); it skips, printing why,
//! when it is not there (and fails with `FERRY_REQUIRE_ENV=1`).

use ferry_core::testing::{varied_record, TestSink, TestSource};
use ferry_core::{run, Offsets, Pipeline, Record, Sink};
use ferry_formats::FormatKind;
use ferry_sinks::storage::{StorageSink, StorageSinkConfig};
use ferry_sources::backup::{BackupSource, BackupSourceConfig};
use std::collections::BTreeMap;
use std::sync::Arc;

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 2;
const PER_BATCH: i64 = 25;
/// Batches per partition of the first run; the resumed run writes as many again.
const BATCHES: i64 = 4;
/// Offsets the resumed source re-sends before the stored end (as a source that re-reads
/// after a crash does).
const REPLAY: i64 = 7;

fn sink_config(uri: &str, format: &str) -> StorageSinkConfig {
    serde_json::from_value(serde_json::json!({
        "uri": uri,
        "format": format,
        // Small segments: each run closes several, and the resumed run starts a new one.
        "roll": {"max_records": 40},
    }))
    .unwrap_or_else(|e| panic!("sink config for {format}: {e}"))
}

/// Runs a pipeline from `source` into a storage sink at `uri`; panics naming the case.
async fn write(uri: &str, format: &str, source: TestSource) -> u64 {
    let sink = StorageSink::new(sink_config(uri, format))
        .unwrap_or_else(|e| panic!("{format} at {uri}: building the sink: {e}"));
    let p = Pipeline::new("behaviour", Box::new(source), Vec::new(), Box::new(sink))
        .without_checkpoint();
    run(p, std::future::pending())
        .await
        .unwrap_or_else(|e| panic!("{format} at {uri}: writing: {e}"))
        .records
}

/// What a freshly opened sink reports as durable.
async fn durable(uri: &str, format: &str) -> Offsets {
    let mut sink = StorageSink::new(sink_config(uri, format))
        .unwrap_or_else(|e| panic!("{format} at {uri}: building the sink: {e}"));
    let durable = sink
        .open()
        .await
        .unwrap_or_else(|e| panic!("{format} at {uri}: opening: {e}"))
        .unwrap_or_default();
    // Closing releases the location's lease for the next writer.
    sink.close()
        .await
        .unwrap_or_else(|e| panic!("{format} at {uri}: closing: {e}"));
    durable
}

/// Every record of the backup at `uri`, read through the `backup` source.
async fn read_back(uri: &str, format: &str) -> Vec<Record> {
    let config: BackupSourceConfig = serde_json::from_value(serde_json::json!({ "uri": uri }))
        .unwrap_or_else(|e| panic!("backup source config: {e}"));
    let source = BackupSource::new(config)
        .unwrap_or_else(|e| panic!("{format} at {uri}: building the backup source: {e}"));
    let (sink, records) = TestSink::collecting();
    let p = Pipeline::new("read-back", Box::new(source), Vec::new(), Box::new(sink))
        .without_checkpoint();
    run(p, std::future::pending())
        .await
        .unwrap_or_else(|e| panic!("{format} at {uri}: reading back: {e}"));
    let mut out = records
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// The fields a backup keeps, in a form that compares and prints well.
type Kept = (
    i32,
    i64,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

fn kept(r: &Record) -> Kept {
    (
        r.partition,
        r.offset,
        r.timestamp,
        r.key.as_ref().map(|b| b.to_vec()),
        r.value.as_ref().map(|b| b.to_vec()),
        r.headers
            .iter()
            .map(|h| (h.key.clone(), h.value.as_ref().map(|b| b.to_vec())))
            .collect(),
    )
}

/// The whole suite on one location, for one format.
async fn behaves(uri: &str, format: &str) {
    let topic: Arc<str> = Arc::from(TOPIC);
    let end = BATCHES * PER_BATCH;

    // Write.
    let first = TestSource::varied(TOPIC, PARTITIONS, BATCHES, PER_BATCH);
    let written = write(uri, format, first).await;
    assert_eq!(
        written,
        (end * PARTITIONS as i64) as u64,
        "{format} at {uri}: first run"
    );

    // Reopen: the sink reports what it holds.
    let expected: Offsets = BTreeMap::from([(
        TOPIC.to_string(),
        (0..PARTITIONS).map(|p| (p, end)).collect(),
    )]);
    assert_eq!(
        durable(uri, format).await,
        expected,
        "{format} at {uri}: durable after the first run"
    );

    // Resume, with the source re-sending the last REPLAY offsets of each partition.
    let mut again = TestSource::varied(TOPIC, PARTITIONS, 2 * BATCHES, PER_BATCH);
    again.replay = REPLAY;
    write(uri, format, again).await;
    let expected: Offsets = BTreeMap::from([(
        TOPIC.to_string(),
        (0..PARTITIONS).map(|p| (p, 2 * end)).collect(),
    )]);
    assert_eq!(
        durable(uri, format).await,
        expected,
        "{format} at {uri}: durable after resuming"
    );

    // Read back: every offset once, every field as written.
    let got: Vec<Kept> = read_back(uri, format).await.iter().map(kept).collect();
    let want: Vec<Kept> = (0..PARTITIONS)
        .flat_map(|p| (0..2 * end).map(move |o| (p, o)))
        .map(|(p, o)| kept(&varied_record(&topic, p, o, 0)))
        .collect();
    assert_eq!(
        got.len(),
        want.len(),
        "{format} at {uri}: record count read back"
    );
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "{format} at {uri}: record {}/{}", w.0, w.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_with_every_format() {
    for format in FormatKind::ALL.map(FormatKind::name) {
        let uri = format!(
            "memory://{}",
            ferry_testkit::unique(&format!("behaviour-{format}"))
        );
        behaves(&uri, format).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_folder_with_every_format() {
    for format in FormatKind::ALL.map(FormatKind::name) {
        let dir = tempfile::tempdir().expect("temp dir");
        let uri = dir.path().join("backup").display().to_string();
        behaves(&uri, format).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_with_every_format() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    for format in FormatKind::ALL.map(FormatKind::name) {
        let uri = format!(
            "s3://{}/{}?endpoint={}&region={}&access_key_id={}&secret_access_key={}",
            env.s3_bucket,
            ferry_testkit::unique(&format!("behaviour-{format}")),
            env.s3_endpoint,
            env.aws_region,
            env.aws_access_key_id,
            env.aws_secret_access_key,
        );
        behaves(&uri, format).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_blob_with_every_format() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    for format in FormatKind::ALL.map(FormatKind::name) {
        // The key in the URI (`account_key=`), not AZURE_STORAGE_KEY: this process's
        // environment is not changed.
        let uri = format!(
            "{}&account_key={}",
            env.azure_uri(&ferry_testkit::unique(&format!("behaviour-{format}"))),
            env.azure_key
        );
        behaves(&uri, format).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_with_every_format() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    for format in FormatKind::ALL.map(FormatKind::name) {
        let uri = env.gcs_uri(&ferry_testkit::unique(&format!("behaviour-{format}")));
        behaves(&uri, format).await;
    }
}
