//! The `iceberg` sink run by `ferry worker`: two workers of one group share an export
//! pipeline to one table of the dev environment's Iceberg REST catalog
//! (`FERRY_ICEBERG_REST`), each task writing its own partitions and committing to the same
//! table. pyiceberg's `RestCatalog` then reads every record exactly once (equal to a dump made
//! by librdkafka), `ferry.offsets` of every snapshot never loses or lowers a partition
//! another task committed, and a second pipeline (no checkpoint of its own: it resumes from
//! the table's `ferry.offsets` alone) adds only the records produced since.

mod common;

use common::iceberg::{assert_same, read_table, sorted, Table};
use common::worker::{produce, Worker};
use ferry_testkit::{dump_topic, env_or_skip, unique, DumpedRecord, TestEnv};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// Reads the table with pyiceberg's `RestCatalog`; prints a head line `{"snapshots",
/// "history", "summary"}` (`history`: `ferry.offsets` of every snapshot, oldest first), then
/// each row as `[partition, offset, timestamp_ms, timestamp_type, key_hex, value_hex,
/// headers, null]`. Arguments: catalog URL, table.
const READ_TABLE_PY: &str = r#"
import datetime, json, sys
from pyiceberg.catalog import load_catalog
uri, name = sys.argv[1], sys.argv[2]
t = load_catalog("rest", type="rest", uri=uri).load_table(name)
snap = t.current_snapshot()
history = []
for s in sorted(t.metadata.snapshots, key=lambda s: s.sequence_number):
    history.append(json.loads(s.summary.additional_properties.get("ferry.offsets", "null")))
print(json.dumps({
    "snapshots": len(t.metadata.snapshots),
    "history": history,
    "summary": dict(snap.summary.additional_properties) if snap else {},
}))
epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
def hx(b):
    return None if b is None else bytes(b).hex()
for r in t.scan().to_arrow().to_pylist():
    ts = (r["timestamp"] - epoch) // datetime.timedelta(milliseconds=1)
    hs = [[h["key"], hx(h["value"])] for h in r["headers"]]
    print(json.dumps([r["partition"], r["offset"], ts, r["timestamp_type"], hx(r["key"]),
                      hx(r["value"]), hs, None]))
"#;

/// A worker of `group` on `port` (a short session, so the group settles quickly).
fn start(env: &TestEnv, group: &str, port: u16, dir: &Path) -> Worker {
    Worker::start(env, group, port, dir, &["--session-timeout", "6s"], &[])
}

fn status(w: &Worker, name: &str) -> Value {
    w.get(&format!("/pipelines/{name}/status"), None)
        .map(|(_, v)| v)
        .unwrap_or(Value::Null)
}

/// A snapshot export of `topic` to `table` through the REST catalog. Commits are small
/// (16 KiB of records, or at each 1 s checkpoint) so the two tasks commit many times, at
/// the same moments, and conflict.
fn pipeline_yaml(
    name: &str,
    env: &TestEnv,
    topic: &str,
    catalog: &str,
    warehouse: &str,
    ns: &str,
) -> String {
    format!(
        "name: {name}\n\
         source: {{type: kafka, brokers: [\"{brokers}\"], topics: [{topic}], stop: high_watermark}}\n\
         sink:\n  type: iceberg\n  catalog: {{type: rest, uri: \"{catalog}\", warehouse: \"{warehouse}\"}}\n  \
         namespace: {ns}\n  table: events\n  partition_by: [\"identity(partition)\"]\n  \
         commit: {{max_bytes: 16KiB, max_age: 1s}}\n\
         delivery: {{checkpoint_interval: 1s}}\n",
        brokers = env.kafka,
    )
}

/// PUTs the pipeline through `a`, waits until it is FINISHED, and returns the workers that
/// ran a task of it.
fn run_to_finish(a: &Worker, b: &Worker, name: &str, yaml: &str) -> BTreeSet<String> {
    let (code, body) = a
        .request(
            "PUT",
            &format!("/pipelines/{name}"),
            None,
            Some(("application/yaml", yaml)),
        )
        .expect("answer");
    assert_eq!(code, 201, "{body}");
    a.wait_until(Duration::from_secs(120), "showed FINISHED", |w| {
        let s = status(w, name);
        assert_ne!(s["state"], "FAILED", "the pipeline failed: {s}");
        s["state"] == "FINISHED"
    });
    status(b, name)["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["worker"].as_str().map(String::from))
        .collect()
}

/// The next offset of every partition of `records`.
fn end_offsets(records: &[DumpedRecord]) -> BTreeMap<String, i64> {
    let mut ends = BTreeMap::new();
    for r in records {
        let e = ends.entry(r.partition.to_string()).or_insert(0);
        *e = (*e).max(r.offset + 1);
    }
    ends
}

/// Every row once, equal to the topic, and `ferry.offsets` of the current snapshot equal to
/// the topic's end offsets; across snapshots no partition's offset is ever lowered or
/// dropped (a task's commit keeps what the other task committed).
fn check_table(what: &str, read: &Table, topic: &str, source: &[DumpedRecord]) {
    let distinct: BTreeSet<(i32, i64)> =
        read.rows.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(
        distinct.len(),
        read.rows.len(),
        "{what}: a (partition, offset) read twice"
    );
    assert_same(what, &read.rows, source);
    let offsets: Value = serde_json::from_str(
        read.head["summary"]["ferry.offsets"]
            .as_str()
            .expect("ferry.offsets in the current snapshot"),
    )
    .expect("json");
    let want = end_offsets(source);
    let got: BTreeMap<String, i64> = offsets[topic]
        .as_object()
        .expect("the topic's offsets")
        .iter()
        .map(|(p, o)| (p.clone(), o.as_i64().expect("offset")))
        .collect();
    assert_eq!(got, want, "{what}: ferry.offsets of the current snapshot");
    let mut seen: BTreeMap<String, i64> = BTreeMap::new();
    for (i, h) in read.head["history"]
        .as_array()
        .expect("history")
        .iter()
        .enumerate()
    {
        let now = h[topic].as_object().cloned().unwrap_or_default();
        for (p, before) in &seen {
            let after = now.get(p).and_then(Value::as_i64);
            assert!(
                after.is_some_and(|a| a >= *before),
                "{what}: snapshot {i} has partition {p} at {after:?}, an earlier one at {before}: a commit dropped another task's offsets ({h})"
            );
        }
        for (p, o) in now {
            seen.insert(p, o.as_i64().expect("offset"));
        }
    }
}

#[test]
fn two_workers_share_an_iceberg_export_and_a_second_run_adds_only_new_records() {
    let Some(env) = env_or_skip() else { return };
    let Some(catalog) = env.iceberg_rest_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = unique("iceberg-worker");
    common::create_topic(&env, &topic, 6, &[("retention.ms", "-1")]);
    produce(&env, &topic, 0, 6000);
    let warehouse = format!("file://{}", dir.path().join("warehouse").display());
    // A namespace no other run uses (the catalog server outlives test runs).
    let ns = unique("worker").replace('-', "_");
    let table = format!("{ns}.events");
    let group = unique("wg-iceberg");
    let a = start(&env, &group, 18691, dir.path());
    let b = start(&env, &group, 18692, dir.path());

    // Both tasks find no table and create it at once: one creates, the other loads it.
    let yaml = pipeline_yaml("ice1", &env, &topic, &catalog, &warehouse, &ns);
    let workers = run_to_finish(&a, &b, "ice1", &yaml);
    assert_eq!(workers.len(), 2, "both workers had a share: {workers:?}");
    let source = sorted(dump_topic(&env, &env.kafka, &topic));
    assert_eq!(source.len(), 6000);
    let first = read_table(&env, READ_TABLE_PY, &[&catalog, &table]);
    check_table("first run", &first, &topic, &source);
    let snapshots = first.head["snapshots"].as_u64().expect("snapshots");
    assert!(
        snapshots >= 4,
        "the tasks committed several times each (the test is about concurrent commits): {snapshots} snapshots"
    );

    // More records, and a second pipeline: it has no checkpoint of its own, so each task
    // resumes its partitions from the table's `ferry.offsets` alone.
    produce(&env, &topic, 6000, 3000);
    let yaml = pipeline_yaml("ice2", &env, &topic, &catalog, &warehouse, &ns);
    let workers = run_to_finish(&a, &b, "ice2", &yaml);
    assert_eq!(workers.len(), 2, "both workers had a share: {workers:?}");
    let source = sorted(dump_topic(&env, &env.kafka, &topic));
    assert_eq!(source.len(), 9000);
    let second = read_table(&env, READ_TABLE_PY, &[&catalog, &table]);
    check_table("second run", &second, &topic, &source);
    let ranges: Value = serde_json::from_str(
        second.head["summary"]["ferry.ranges"]
            .as_str()
            .expect("ferry.ranges"),
    )
    .expect("json");
    for (p, range) in ranges[&topic].as_object().expect("ranges of the topic") {
        let from = range[0].as_i64().expect("first offset");
        assert!(
            first.head["summary"]["ferry.offsets"]
                .as_str()
                .and_then(|o| serde_json::from_str::<Value>(o).ok())
                .and_then(|o| o[&topic][p].as_i64())
                .is_some_and(|end| from >= end),
            "the second run's last commit starts partition {p} at {from}, inside what the first run wrote"
        );
    }
    a.stop();
    b.stop();
}
