//! Iceberg exports through a REST catalog: Apache Iceberg 1.10's own REST catalog
//! (`scripts/IcebergRestServer.java`, run by `scripts/dev-env` on `FERRY_ICEBERG_REST`), the
//! topic from the dev environment's Apache Kafka, the table read back by pyiceberg's
//! `RestCatalog` from the same server: every record equal to a dump made by librdkafka, the
//! offsets in the snapshot summary, a second run adding nothing, typed JSON columns that
//! evolve, a warehouse on S3 (moto), and a table outside the warehouse refused. The server
//! keeps table metadata in memory; Ferry writes the data files, manifests and manifest lists
//! to the warehouse (a local folder, or S3) that pyiceberg reads.

mod common;

use common::iceberg::{assert_same, json_msgs, read_table, sorted, Table};
use common::{create_topic, varied_topic};
use ferry_testkit::{dump_topic, py_produce_to, run_python_args, unique, TestEnv};

/// Reads an Iceberg table with pyiceberg's `RestCatalog` and prints a first line with
/// `{"summary", "snapshots", "columns", "typed", "location"}`, then each row as
/// `[partition, offset, timestamp_ms, timestamp_type, key_hex, value_hex, headers,
/// value_json]`. Arguments: catalog URL, table, JSON of extra catalog properties (S3), and
/// an optional row filter whose row count is added as "filtered".
const READ_TABLE_PY: &str = r#"
import datetime, json, sys
from pyiceberg.catalog import load_catalog
uri, name, props = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
row_filter = sys.argv[4] if len(sys.argv) > 4 else None
cat = load_catalog("rest", type="rest", uri=uri, **props)
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
    "location": t.location(),
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

fn read_rest_table(env: &TestEnv, catalog: &str, table: &str, filter: Option<&str>) -> Table {
    read_table_with(env, catalog, table, serde_json::json!({}), filter)
}

fn read_table_with(
    env: &TestEnv,
    catalog: &str,
    table: &str,
    props: serde_json::Value,
    filter: Option<&str>,
) -> Table {
    let props = props.to_string();
    let mut args = vec![catalog, table, props.as_str()];
    args.extend(filter);
    read_table(env, READ_TABLE_PY, &args)
}

/// A namespace no other test run uses (the server outlives test runs).
fn namespace(prefix: &str) -> String {
    unique(prefix).replace('-', "_")
}

fn rest_backup(
    env: &TestEnv,
    catalog: &str,
    topic: &str,
    warehouse: &str,
    table: &str,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> String {
    let mut args = vec![
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        topic,
        "--format",
        "iceberg",
        "--catalog",
        catalog,
        "--to",
        warehouse,
        "--table",
        table,
        "--snapshot",
    ];
    args.extend_from_slice(extra);
    common::ferry_success(&args, vars).1
}

#[test]
fn a_rest_catalog_table_holds_every_record_and_a_second_run_adds_nothing() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let Some(catalog) = env.iceberg_rest_or_skip() else {
        return;
    };
    let topic = unique("iceberg-rest");
    let total = varied_topic(&env, &topic);
    let source = sorted(dump_topic(&env, &env.kafka, &topic));
    assert_eq!(source.len(), total);
    let dir = tempfile::tempdir().expect("dir");
    let warehouse = format!("file://{}", dir.path().join("warehouse").display());
    let ns = namespace("rest");
    let table = format!("{ns}.events");
    rest_backup(
        &env,
        &catalog,
        &topic,
        &warehouse,
        &table,
        &["--partition-by", "identity(partition)"],
        &[],
    );

    let read = read_rest_table(&env, &catalog, &table, None);
    assert_same("table read by pyiceberg's RestCatalog", &read.rows, &source);
    assert_eq!(
        read.head["location"],
        format!("{warehouse}/{ns}/events"),
        "the table lies in Ferry's warehouse, not the server's"
    );
    let offsets: serde_json::Value = serde_json::from_str(
        read.head["summary"]["ferry.offsets"]
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
    let files = common::files_under(&dir.path().join("warehouse"), "parquet");
    for p in 0..3 {
        assert!(
            files.iter().any(|f| f
                .to_string_lossy()
                .contains(&format!("/{ns}/events/data/partition={p}/"))),
            "a data file of partition {p} in the local warehouse: {files:?}"
        );
    }
    let snapshots = read.head["snapshots"].as_u64().expect("snapshots");

    // Run again: the offsets come back from the catalog, nothing is written twice.
    rest_backup(&env, &catalog, &topic, &warehouse, &table, &[], &[]);
    let again = read_rest_table(&env, &catalog, &table, None);
    assert_same("table after a second run", &again.rows, &source);
    assert_eq!(
        again.head["snapshots"], snapshots,
        "a second run commits nothing"
    );
}

#[test]
fn json_columns_evolve_through_a_rest_catalog() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let Some(catalog) = env.iceberg_rest_or_skip() else {
        return;
    };
    let topic = unique("iceberg-rest-json");
    create_topic(&env, &topic, 1, &[("retention.ms", "-1")]);
    py_produce_to(
        &env,
        &env.kafka,
        &topic,
        Some(0),
        &json_msgs(0, 40, |_| String::new()),
        "none",
        false,
    );
    let dir = tempfile::tempdir().expect("dir");
    let warehouse = format!("file://{}", dir.path().join("warehouse").display());
    let table = format!("{}.orders", namespace("rest_json"));
    rest_backup(
        &env,
        &catalog,
        &topic,
        &warehouse,
        &table,
        &["--json-values"],
        &[],
    );
    let first = read_rest_table(&env, &catalog, &table, Some("value_json.id >= 30"));
    assert_eq!(first.rows.len(), 40);
    assert_eq!(
        first.head["typed"],
        serde_json::json!([["id", "long"], ["name", "string"]])
    );
    assert_eq!(first.head["filtered"], 10, "typed columns are queryable");

    // A new field in the second run adds a column.
    py_produce_to(
        &env,
        &env.kafka,
        &topic,
        Some(0),
        &json_msgs(40, 20, |i| format!(",\"price\":{i}.5")),
        "none",
        false,
    );
    rest_backup(
        &env,
        &catalog,
        &topic,
        &warehouse,
        &table,
        &["--json-values"],
        &[],
    );
    let second = read_rest_table(&env, &catalog, &table, Some("value_json.price > 50"));
    assert_eq!(second.rows.len(), 60, "every record once across both runs");
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
        second.typed[45],
        serde_json::json!({"id": 45, "name": "n45", "price": 45.5})
    );
    let source = sorted(dump_topic(&env, &env.kafka, &topic));
    assert_same("JSON table read by pyiceberg", &second.rows, &source);
    let offsets: serde_json::Value = serde_json::from_str(
        second.head["summary"]["ferry.offsets"]
            .as_str()
            .expect("ferry.offsets"),
    )
    .expect("json");
    assert_eq!(offsets[&topic]["0"], 60);
}

#[test]
fn a_table_the_server_placed_outside_the_warehouse_is_refused_before_any_write() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let Some(catalog) = env.iceberg_rest_or_skip() else {
        return;
    };
    // A table another client created at the server's default location.
    let ns = namespace("rest_elsewhere");
    let table = format!("{ns}.other");
    let create = r#"
import sys
import pyarrow as pa
from pyiceberg.catalog import load_catalog
cat = load_catalog("rest", type="rest", uri=sys.argv[1])
ns, name = sys.argv[2].split(".")
cat.create_namespace(ns)
print(cat.create_table(sys.argv[2], schema=pa.schema([("a", pa.int64())])).location())
"#;
    let out = run_python_args(&env, create, &[&catalog, &table], b"");
    let location = String::from_utf8(out).expect("utf-8");
    let topic = unique("iceberg-rest-elsewhere");
    create_topic(&env, &topic, 1, &[]);
    py_produce_to(
        &env,
        &env.kafka,
        &topic,
        Some(0),
        &json_msgs(0, 3, |_| String::new()),
        "none",
        false,
    );
    let dir = tempfile::tempdir().expect("dir");
    let warehouse = format!("file://{}", dir.path().join("warehouse").display());
    let out = common::ferry_output(
        &[
            "backup",
            "--brokers",
            &env.kafka,
            "--topic",
            &topic,
            "--format",
            "iceberg",
            "--catalog",
            &catalog,
            "--to",
            &warehouse,
            "--table",
            &table,
            "--snapshot",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ferry must refuse: {stderr}");
    assert!(
        stderr.contains("outside the warehouse") && stderr.contains(location.trim()),
        "{stderr}"
    );
    assert!(
        common::files_under(&dir.path().join("warehouse"), "parquet").is_empty(),
        "no data file written"
    );
}

#[test]
fn a_rest_catalog_table_with_its_warehouse_on_s3_is_read_by_pyiceberg() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let Some(catalog) = env.iceberg_rest_or_skip() else {
        return;
    };
    let topic = unique("iceberg-rest-s3");
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
    let prefix = unique("rest-wh");
    let to = format!(
        "s3://{}/{prefix}?endpoint={}&region={}",
        env.s3_bucket, env.s3_endpoint, env.aws_region
    );
    let ns = namespace("rest_s3");
    let table = format!("{ns}.events");
    rest_backup(
        &env,
        &catalog,
        &topic,
        &to,
        &table,
        &["--json-values"],
        &env.aws_vars(),
    );
    let props = serde_json::json!({
        "s3.endpoint": env.s3_endpoint,
        "s3.access-key-id": env.aws_access_key_id,
        "s3.secret-access-key": env.aws_secret_access_key,
        "s3.region": env.aws_region,
    });
    let read = read_table_with(&env, &catalog, &table, props, Some("value_json.id < 10"));
    assert_same(
        "S3 table read by pyiceberg's RestCatalog",
        &read.rows,
        &source,
    );
    assert_eq!(read.head["filtered"], 10);
    assert_eq!(
        read.head["location"],
        format!("s3://{}/{prefix}/{ns}/events", env.s3_bucket)
    );
}
