//! Iceberg exports against the real Apache Kafka of the dev environment, read back by
//! pyiceberg (PyPI) from the same SQLite catalog: every record equal to a dump made by
//! librdkafka, typed JSON columns queryable by name and evolving, a kill -9 during the
//! export then a resume giving every record once, and a warehouse on S3 (moto).

mod common;

use common::iceberg::{assert_same, json_msgs, read_table, sorted, Table};
use common::{create_topic, varied_topic};
use ferry_testkit::{dump_topic, py_produce_to, unique, KcatMsg, TestEnv};
use std::path::Path;
use std::time::{Duration, Instant};

/// Reads an Iceberg table with pyiceberg's `SqlCatalog` and prints a first line with
/// `{"summary", "snapshots", "columns", "typed"}` (the current snapshot's summary, the
/// snapshot count, the top-level columns and the fields of `value_json`), then each row as
/// `[partition, offset, timestamp_ms, timestamp_type, key_hex, value_hex, headers,
/// value_json]`. Arguments: catalog URI, warehouse, table, JSON of extra catalog
/// properties (S3), and an optional row filter whose row count is added as "filtered".
const READ_TABLE_PY: &str = r#"
import datetime, json, sys
from pyiceberg.catalog.sql import SqlCatalog
uri, warehouse, name, props = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
row_filter = sys.argv[5] if len(sys.argv) > 5 else None
cat = SqlCatalog("ferry", uri=uri, warehouse=warehouse, **props)
t = cat.load_table(name)
snap = t.current_snapshot()
schema = t.schema()
typed = []
for f in schema.fields:
    if f.name == "value_json":
        typed = [[c.name, str(c.field_type)] for c in f.field_type.fields]
head = {
    "summary": dict(snap.summary.additional_properties) if snap else {},
    "snapshots": len(t.metadata.snapshots),
    "columns": [f.name for f in schema.fields],
    "typed": typed,
}
if row_filter:
    head["filtered"] = t.scan(row_filter=row_filter).to_arrow().num_rows
print(json.dumps(head))
epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
def hx(b):
    return None if b is None else bytes(b).hex()
for r in t.scan().to_arrow().to_pylist():
    ts = (r["timestamp"] - epoch) // datetime.timedelta(milliseconds=1)
    hs = [[h["key"], hx(h["value"])] for h in r["headers"]]
    print(json.dumps([r["partition"], r["offset"], ts, r["timestamp_type"], hx(r["key"]),
                      hx(r["value"]), hs, r.get("value_json")]))
"#;

fn read_sql_table(
    env: &TestEnv,
    dir: &Path,
    warehouse: &str,
    props: serde_json::Value,
    filter: Option<&str>,
) -> Table {
    let catalog = format!("sqlite:///{}", dir.join("catalog.db").display());
    let props = props.to_string();
    let mut args = vec![catalog.as_str(), warehouse, "kafka.events", props.as_str()];
    args.extend(filter);
    read_table(env, READ_TABLE_PY, &args)
}

fn warehouse(dir: &Path) -> String {
    format!("file://{}", dir.join("warehouse").display())
}

fn iceberg_backup(
    env: &TestEnv,
    topic: &str,
    dir: &Path,
    to: &str,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> String {
    let catalog = format!("sqlite://{}", dir.join("catalog.db").display());
    let mut args = vec![
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        topic,
        "--format",
        "iceberg",
        "--catalog",
        &catalog,
        "--to",
        to,
        "--table",
        "kafka.events",
        "--snapshot",
    ];
    args.extend_from_slice(extra);
    common::ferry_success(&args, vars).1
}

#[test]
fn an_iceberg_export_holds_every_record_as_pyiceberg_reads_it() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("iceberg");
    let total = varied_topic(&env, &topic);
    let source = sorted(dump_topic(&env, &env.kafka, &topic));
    assert_eq!(source.len(), total);
    let dir = tempfile::tempdir().expect("dir");
    let wh = warehouse(dir.path());
    iceberg_backup(
        &env,
        &topic,
        dir.path(),
        &wh,
        &[
            "--partition-by",
            "day(timestamp)",
            "--partition-by",
            "topic",
        ],
        &[],
    );
    let table = read_sql_table(&env, dir.path(), &wh, serde_json::json!({}), None);
    assert_same("table read by pyiceberg", &table.rows, &source);
    let offsets: serde_json::Value = serde_json::from_str(
        table.head["summary"]["ferry.offsets"]
            .as_str()
            .expect("ferry.offsets"),
    )
    .expect("json");
    for p in 0..3 {
        let next = source
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset + 1)
            .max()
            .expect("records");
        assert_eq!(
            offsets[&topic][p.to_string()],
            next,
            "ferry.offsets of partition {p}"
        );
    }
    let ranges = table.head["summary"]["ferry.ranges"]
        .as_str()
        .expect("ferry.ranges");
    assert!(ranges.contains(&topic), "{ranges}");
    // Records of 1970, 2025 and 2099: one folder per day and topic.
    let days: std::collections::BTreeSet<String> =
        common::files_under(&dir.path().join("warehouse"), "parquet")
            .iter()
            .filter_map(|f| {
                f.to_str()
                    .and_then(|s| s.split("timestamp_day=").nth(1))
                    .map(|s| s[..10].to_string())
            })
            .collect();
    assert!(
        days.contains("1970-01-01") && days.contains("2099-12-31"),
        "{days:?}"
    );

    // Run again: nothing new, nothing twice.
    iceberg_backup(&env, &topic, dir.path(), &wh, &[], &[]);
    let again = read_sql_table(&env, dir.path(), &wh, serde_json::json!({}), None);
    assert_eq!(again.rows.len(), total, "a second run adds nothing");
}

#[test]
fn json_fields_become_columns_that_evolve_and_changed_types_go_to_the_dead_letter_folder() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("iceberg-json");
    create_topic(&env, &topic, 1, &[("retention.ms", "-1")]);
    py_produce_to(
        &env,
        &env.kafka,
        &topic,
        Some(0),
        &json_msgs(0, 50, |_| String::new()),
        "none",
        false,
    );
    let dir = tempfile::tempdir().expect("dir");
    let base = dir.path().display().to_string();
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/export-iceberg.yaml");
    let pipeline = pipeline.to_str().expect("path");
    let vars = [
        ("FERRY_TOPIC", topic.as_str()),
        ("FERRY_KAFKA", env.kafka.as_str()),
        ("FERRY_ICEBERG", base.as_str()),
    ];
    common::ferry_success(&["run", pipeline], &vars);
    let wh = format!("file://{base}/warehouse");
    let first = read_sql_table(
        &env,
        dir.path(),
        &wh,
        serde_json::json!({}),
        Some("value_json.id >= 40"),
    );
    assert_eq!(first.rows.len(), 50);
    assert_eq!(
        first.head["typed"],
        serde_json::json!([["id", "long"], ["name", "string"]])
    );
    assert_eq!(
        first.head["filtered"], 10,
        "typed columns are queryable by name"
    );
    assert_eq!(first.typed[7], serde_json::json!({"id": 7, "name": "n7"}));

    // A new field mid-stream, and a field whose type changes.
    let mut more = json_msgs(50, 20, |i| format!(",\"price\":{i}.5"));
    more.push(
        KcatMsg::new(Some(b"bad"), Some(br#"{"id":"seventy","name":"x"}"#)).at(1_764_547_300_000),
    );
    py_produce_to(&env, &env.kafka, &topic, Some(0), &more, "none", false);
    common::ferry_success(&["run", pipeline], &vars);
    let second = read_sql_table(
        &env,
        dir.path(),
        &wh,
        serde_json::json!({}),
        Some("value_json.price > 60"),
    );
    assert_eq!(second.rows.len(), 71, "every record once across both runs");
    assert_eq!(
        second.head["typed"],
        serde_json::json!([["id", "long"], ["name", "string"], ["price", "double"]])
    );
    assert_eq!(second.head["filtered"], 10);
    assert_eq!(
        second.typed[7],
        serde_json::json!({"id": 7, "name": "n7", "price": null}),
        "older rows read the new column as null"
    );
    assert_eq!(
        second.typed[70],
        serde_json::json!({"id": null, "name": "x", "price": null})
    );
    assert_eq!(
        second.rows[70].value.as_deref(),
        Some(&br#"{"id":"seventy","name":"x"}"#[..]),
        "the raw value is kept"
    );
    let dead = dir
        .path()
        .join(format!("dead-letter/{topic}/0/00000000000000000070.jsonl"));
    let text = std::fs::read_to_string(&dead).unwrap_or_else(|e| panic!("{}: {e}", dead.display()));
    assert!(
        text.contains("field `id` is string here, but its column in value_json is long"),
        "{text}"
    );
    assert!(second.head["snapshots"].as_u64().expect("snapshots") >= 2);
}

#[test]
fn a_kill_during_the_export_then_a_resume_gives_every_record_once() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("iceberg-kill");
    create_topic(&env, &topic, 3, &[("retention.ms", "-1")]);
    let value = vec![b'v'; 100];
    for p in 0..3 {
        let msgs: Vec<KcatMsg> = (0..20_000)
            .map(|i: i64| {
                KcatMsg::new(Some(format!("{p}-{i}").as_bytes()), Some(&value))
                    .at(1_764_547_200_000 + i)
            })
            .collect();
        py_produce_to(&env, &env.kafka, &topic, Some(p), &msgs, "lz4", false);
    }
    let total = 60_000usize;
    let dir = tempfile::tempdir().expect("dir");
    let base = dir.path().display().to_string();
    let yaml = format!(
        r#"name: iceberg-kill
source: {{ type: kafka, brokers: ["{kafka}"], topics: ["{topic}"], stop: high_watermark, partition_max_bytes: 64KiB }}
sink:
  type: iceberg
  catalog: {{ type: sql, uri: "sqlite://{base}/catalog.db", warehouse: "{base}/warehouse" }}
  namespace: kafka
  table: events
  commit: {{ max_bytes: 64KiB }}
"#,
        kafka = env.kafka
    );
    let file = dir.path().join("kill.yaml");
    std::fs::write(&file, yaml).expect("write pipeline");
    let bin = env!("CARGO_BIN_EXE_ferry");
    let metadata = dir.path().join("warehouse/kafka/events/metadata");
    let mut child = std::process::Command::new(bin)
        .args(["run", file.to_str().expect("path")])
        .env("FERRY_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ferry runs");
    // Kill it once a few commits are in (each commit writes a metadata file).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let commits = std::fs::read_dir(&metadata)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".metadata.json"))
                })
                .count()
            })
            .unwrap_or(0);
        if commits >= 4 {
            break;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "ferry finished before it could be killed: make the topic bigger"
        );
        assert!(Instant::now() < deadline, "no commit within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    let wh = format!("file://{base}/warehouse");
    let partial = read_sql_table(&env, dir.path(), &wh, serde_json::json!({}), None);
    assert!(
        partial.rows.len() < total,
        "the kill came before the end ({} rows)",
        partial.rows.len()
    );
    common::ferry_success(&["run", file.to_str().expect("path")], &[]);
    let table = read_sql_table(&env, dir.path(), &wh, serde_json::json!({}), None);
    let distinct: std::collections::BTreeSet<(i32, i64)> =
        table.rows.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(table.rows.len(), total, "row count equals the topic's");
    assert_eq!(distinct.len(), total, "every (partition, offset) once");
}

#[test]
fn an_iceberg_warehouse_on_s3_is_read_by_pyiceberg() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("iceberg-s3");
    create_topic(&env, &topic, 2, &[("retention.ms", "-1")]);
    for p in 0..2 {
        py_produce_to(
            &env,
            &env.kafka,
            &topic,
            Some(p),
            &json_msgs(p as i64 * 100, 100, |_| String::new()),
            "zstd",
            false,
        );
    }
    let source = sorted(dump_topic(&env, &env.kafka, &topic));
    let dir = tempfile::tempdir().expect("dir");
    let prefix = unique("wh");
    let to = format!(
        "s3://{}/{prefix}?endpoint={}&region={}",
        env.s3_bucket, env.s3_endpoint, env.aws_region
    );
    iceberg_backup(
        &env,
        &topic,
        dir.path(),
        &to,
        &["--partition-by", "identity(partition)", "--json-values"],
        &env.aws_vars(),
    );
    let props = serde_json::json!({
        "s3.endpoint": env.s3_endpoint,
        "s3.access-key-id": env.aws_access_key_id,
        "s3.secret-access-key": env.aws_secret_access_key,
        "s3.region": env.aws_region,
    });
    let table = read_sql_table(
        &env,
        dir.path(),
        &format!("s3://{}/{prefix}", env.s3_bucket),
        props,
        Some("value_json.id < 10"),
    );
    assert_same("S3 table read by pyiceberg", &table.rows, &source);
    assert_eq!(table.head["filtered"], 10);
    assert!(
        !dir.path().join("warehouse").exists(),
        "nothing written locally but the catalog"
    );
}
