//! JSON values exported to Parquet with inferred typed columns, against the real Apache
//! Kafka broker of the dev environment: a pipeline with `value: {as: json}` and no schema
//! infers the columns from the first values of the topic (both partitions), logs them as
//! YAML, and DuckDB reads them by name with the inferred types; values that do not fit
//! the inferred columns go to the dead-letter files; the logged YAML, pasted as `schema:`,
//! gives the same columns and values.

mod common;

use common::create_topic;
use ferry_testkit::{py_produce_to, run_python_args, unique, KcatMsg, TestEnv};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Runs `ferry`; returns its stderr (the log).
fn ferry(args: &[&str]) -> String {
    common::ferry_success(args, &[]).1
}

/// A pipeline exporting `topic` to `lake` as Parquet with `value` as the typed columns
/// (YAML text).
fn pipeline(
    dir: &Path,
    name: &str,
    env: &TestEnv,
    topic: &str,
    lake: &Path,
    value: &str,
) -> PathBuf {
    let text = format!(
        "name: {name}
source:
  type: kafka
  brokers: [\"{}\"]
  topics: [\"{topic}\"]
  stop: high_watermark
sink:
  type: storage
  uri: \"{}\"
  format: parquet
  parquet:
    value:
{value}
",
        env.kafka,
        lake.display()
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).expect("write pipeline");
    path
}

/// An order document: every key in the same order, so the inferred columns do not depend
/// on which partition the sample starts with.
fn order(n: i64, amount: &str) -> String {
    format!(
        r#"{{"id":{n},"user":"u{n}","amount":{amount},"paid":{},"at":"2025-12-01T05:00:{:02}.{:03}Z","tags":["a",{n}],"meta":{{"k":{n}}},"note":null}}"#,
        n % 2 == 0,
        n % 60,
        n * 7 % 1000,
    )
}

fn msg(value: Option<&str>) -> KcatMsg {
    KcatMsg::new(Some(b"k".as_slice()), value.map(str::as_bytes))
}

/// The dead-letter lines of a lake: `(partition, offset, reason)`, sorted.
fn dead_letters(lake: &Path, topic: &str) -> Vec<(i64, i64, String)> {
    let mut out = Vec::new();
    let root = lake.join("dead-letter").join(topic);
    for p in 0..2 {
        let Ok(entries) = std::fs::read_dir(root.join(p.to_string())) else {
            continue;
        };
        for e in entries {
            let text = std::fs::read_to_string(e.expect("entry").path()).expect("read");
            for l in text.lines() {
                let v: Value = serde_json::from_str(l).expect("json line");
                out.push((
                    p,
                    v["record"]["offset"].as_i64().expect("offset"),
                    v["reason"].as_str().expect("reason").to_string(),
                ));
            }
        }
    }
    out.sort();
    out
}

const DUCKDB_PY: &str = r#"
import duckdb, json, sys
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
src = f"read_parquet('{sys.argv[1]}/**/*.parquet')"
fields = con.execute(f"SELECT * FROM {src} LIMIT 0").description
struct_type = [str(t) for (name, t, *_) in fields if name == "value_json"]
types = con.execute(
    "SELECT typeof(value_json.id), typeof(value_json.user), typeof(value_json.amount), "
    "typeof(value_json.paid), typeof(value_json.at), typeof(value_json.tags), "
    f"typeof(value_json.meta), typeof(value_json.note) FROM {src} LIMIT 1").fetchone()
rows = con.execute(
    'SELECT "partition", "offset", value_json IS NULL, value_json.id, value_json.user, '
    'value_json.amount, value_json.paid, epoch_ms(value_json.at), value_json.tags, '
    f'value_json.meta, value_json.note FROM {src} ORDER BY 1, 2').fetchall()
total = con.execute(f"SELECT sum(value_json.amount), count(value_json.id) FROM {src}").fetchone()
print(json.dumps({"struct": struct_type, "types": types, "rows": rows, "total": total}))
"#;

fn query(env: &TestEnv, lake: &Path) -> Value {
    let out = run_python_args(env, DUCKDB_PY, &[lake.to_str().expect("utf-8 path")], b"");
    serde_json::from_slice(&out).expect("query output")
}

/// The YAML of the `inferred schema for topic …` log line.
fn logged_schema(log: &str, topic: &str) -> String {
    let marker = format!("inferred schema for topic {topic} ");
    let line = log
        .lines()
        .find(|l| l.contains(&marker))
        .unwrap_or_else(|| panic!("no `{marker}` in the log:\n{log}"));
    let start = line.find("): [").expect("schema after the reason") + 3;
    let end = line[start..].find("] ").expect("end of the schema") + start + 1;
    line[start..end].to_string()
}

#[test]
fn json_values_get_inferred_typed_columns_that_duckdb_reads() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("inferred");
    create_topic(&env, &topic, 2, &[]);
    // Partition 0: two orders (amount an integer, then a float), a tombstone, four more
    // orders (six values: a sample of 6 always holds offsets 0 and 1, whichever partition
    // comes first), then values that do not fit the inferred columns and one with an extra
    // field.
    let p0: Vec<Option<String>> = vec![
        Some(order(0, "3")),
        Some(order(1, "1.5")),
        None,
        Some(order(3, "2")),
        Some(order(4, "4.25")),
        Some(order(5, "5")),
        Some(order(6, "6")),
        Some(r#"{"id":"abc","amount":1}"#.to_string()),
        Some("[1,2]".to_string()),
        Some(r#"{"id":9,"at":"yesterday"}"#.to_string()),
        Some(r#"{"id":10,"amount":10,"extra":true}"#.to_string()),
    ];
    // Partition 1: a value that is not JSON (in the sample or not), then orders.
    let p1: Vec<Option<String>> = vec![
        Some("not json".to_string()),
        Some(order(11, "11")),
        Some(order(12, "12.5")),
        Some(order(13, "13")),
    ];
    let msgs = |v: &[Option<String>]| v.iter().map(|v| msg(v.as_deref())).collect::<Vec<_>>();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs(&p0), "zstd", false);
    py_produce_to(&env, &env.kafka, &topic, Some(1), &msgs(&p1), "none", false);

    let work = tempfile::tempdir().expect("tempdir");
    let lake = work.path().join("lake");
    let file = pipeline(
        work.path(),
        "inferred",
        &env,
        &topic,
        &lake,
        "      as: json\n      infer_records: 6\n      on_error: dead_letter",
    );
    let log = ferry(&["run", file.to_str().expect("utf-8 path")]);

    // The columns, logged as YAML to paste into the pipeline.
    let yaml = logged_schema(&log, &topic);
    assert_eq!(
        yaml,
        "[{name: id, type: int64}, {name: user, type: string}, {name: amount, type: float64}, \
         {name: paid, type: boolean}, {name: at, type: timestamp_ms}, {name: tags, type: json}, \
         {name: meta, type: json}, {name: note, type: string}]"
    );

    let v = query(&env, &lake);
    assert_eq!(
        v["types"],
        json!([
            "BIGINT",
            "VARCHAR",
            "DOUBLE",
            "BOOLEAN",
            "TIMESTAMP WITH TIME ZONE",
            "VARCHAR",
            "VARCHAR",
            "VARCHAR"
        ])
    );
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 15);
    let at = |n: i64| 1_764_565_200_000 + (n % 60) * 1000 + n * 7 % 1000;
    assert_eq!(
        rows[1],
        json!([
            0,
            1,
            false,
            1,
            "u1",
            1.5,
            false,
            at(1),
            "[\"a\",1]",
            "{\"k\":1}",
            null
        ])
    );
    assert_eq!(
        rows[0],
        json!([
            0,
            0,
            false,
            0,
            "u0",
            3.0,
            true,
            at(0),
            "[\"a\",0]",
            "{\"k\":0}",
            null
        ])
    );
    // The tombstone and the values that do not fit have a null struct; the extra field of
    // offset 10 is not a column.
    for i in [2, 7, 8, 9] {
        assert_eq!(rows[i][2], true, "{}", rows[i]);
    }
    assert_eq!(
        rows[10],
        json!([0, 10, false, 10, null, 10.0, null, null, null, null, null])
    );
    assert_eq!(rows[11][2], true, "not JSON");
    assert_eq!(
        rows[13],
        json!([
            1,
            2,
            false,
            12,
            "u12",
            12.5,
            true,
            at(12),
            "[\"a\",12]",
            "{\"k\":12}",
            null
        ])
    );
    assert_eq!(v["total"], json!([68.25, 10]));

    let bad = dead_letters(&lake, &topic);
    assert_eq!(bad.len(), 4, "{bad:?}");
    assert_eq!(
        bad[..3],
        [
            (0, 7, "field `id`: \"abc\" is not a Int64".to_string()),
            (0, 8, "the value is not a JSON object".to_string()),
            (
                0,
                9,
                "field `at`: \"yesterday\" is not a TimestampMs".to_string()
            ),
        ]
    );
    assert_eq!((bad[3].0, bad[3].1), (1, 0));
    assert!(bad[3].2.starts_with("the value is not JSON"), "{bad:?}");

    // The logged YAML pasted as `schema:` pins the same columns.
    let pinned_lake = work.path().join("pinned");
    let file = pipeline(
        work.path(),
        "pinned",
        &env,
        &topic,
        &pinned_lake,
        &format!("      as: json\n      on_error: dead_letter\n      schema: {yaml}"),
    );
    let log = ferry(&["run", file.to_str().expect("utf-8 path")]);
    assert!(!log.contains("inferred schema"), "{log}");
    let pinned = query(&env, &pinned_lake);
    assert_eq!(pinned["struct"], v["struct"]);
    assert_eq!(pinned["rows"], v["rows"]);
    assert_eq!(dead_letters(&pinned_lake, &topic), bad);
}
