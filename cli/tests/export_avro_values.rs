//! Schema-Registry Avro values decoded into typed columns, against the real Apache Kafka
//! broker of the dev environment: values written by fastavro in the Confluent wire format
//! (plus one that is not, one with an unknown schema id and a tombstone) are exported by
//! the `ferry` binary with writer schemas from an in-test Schema Registry or from `<id>.avsc`
//! files, then read by DuckDB (Parquet) and fastavro (Avro); the bad records are in the
//! dead-letter files with their reasons, and the Avro export still restores.

mod common;

use common::create_topic;
use ferry_testkit::{dump_topic, py_produce_to, run_python_args, unique, KcatMsg, TestEnv};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const V1: &str = r#"{"type": "record", "name": "Order", "namespace": "com.example.shop", "fields": [
  {"name": "id", "type": "long"},
  {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [
    {"name": "name", "type": "string"},
    {"name": "email", "type": ["null", "string"], "default": null}]}},
  {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
  {"name": "paid", "type": "boolean"},
  {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
  {"name": "day", "type": {"type": "int", "logicalType": "date"}},
  {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "SHIPPED"]}},
  {"name": "tags", "type": {"type": "array", "items": "string"}},
  {"name": "attrs", "type": {"type": "map", "values": "long"}},
  {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}}
]}"#;

/// V1 plus `channel` (default "web").
fn v2() -> String {
    V1.replace(
        "\n]}",
        ",\n  {\"name\": \"channel\", \"type\": \"string\", \"default\": \"web\"}\n]}",
    )
}

/// A Schema Registry answering `GET /schemas/ids/{id}` like the real one (404 with
/// `error_code` 40403 for unknown ids); returns its URL and the paths requested.
fn registry(schemas: Vec<(u32, String)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf).to_string();
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            log.lock().unwrap().push(path.clone());
            let id = path
                .strip_prefix("/schemas/ids/")
                .and_then(|i| i.parse::<u32>().ok());
            // Every subject's latest version is the highest id.
            let latest = path
                .strip_prefix("/subjects/")
                .filter(|p| p.ends_with("/versions/latest"))
                .and_then(|_| schemas.iter().max_by_key(|(s, _)| *s));
            let (status, body) = if let Some((id, schema)) = latest {
                (
                    "200 OK",
                    json!({ "id": id, "version": 1, "schema": schema }).to_string(),
                )
            } else {
                match id.and_then(|i| schemas.iter().find(|(s, _)| *s == i)) {
                Some((_, schema)) => ("200 OK", json!({ "schema": schema }).to_string()),
                None => (
                    "404 Not Found",
                    json!({"error_code": 40403, "message": format!("Schema {} not found", id.unwrap_or(0))})
                        .to_string(),
                ),
                }
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

/// Encodes `[schema, id, record]` items with fastavro's schemaless_writer in the Confluent
/// wire format (`id` may differ from the schema's, to fake an unknown id).
const ENCODE_PY: &str = r#"
import decimal, io, json, sys
import fastavro
spec = json.load(sys.stdin)
schemas = {int(k): fastavro.parse_schema(json.loads(v)) for k, v in spec["schemas"].items()}
out = []
for schema, sid, rec in spec["items"]:
    rec["amount"] = decimal.Decimal(rec["amount"])
    buf = io.BytesIO()
    buf.write(b"\x00" + sid.to_bytes(4, "big"))
    fastavro.schemaless_writer(buf, schemas[schema], rec)
    out.append(buf.getvalue().hex())
print(json.dumps(out))
"#;

const D0: i64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z

fn order(id: i64, channel: Option<&str>) -> Value {
    let status = ["NEW", "PAID", "SHIPPED"][(id % 3) as usize];
    let mut o = json!({
        "id": id,
        "customer": {"name": format!("c{id}"), "email": if id % 2 == 0 { json!(format!("c{id}@example.com")) } else { Value::Null }},
        "amount": format!("{id}.25"),
        "paid": id % 2 == 0,
        "at": D0 + id * 1000,
        "day": 20_423 + id,
        "status": status,
        "tags": ["a", format!("t{id}")],
        "attrs": {"n": id, "twice": 2 * id},
        "ref": format!("00000000-0000-4000-8000-{id:012}"),
    });
    if let Some(c) = channel {
        o["channel"] = json!(c);
    }
    o
}

/// Produces the test topic: partition 0 holds offsets 0..=5 (v1, v1, not wire format,
/// tombstone, v2, unknown id 99), partition 1 offsets 0..=1 (v1).
fn produce(env: &TestEnv, topic: &str) {
    create_topic(env, topic, 2, &[]);
    let items = json!([
        [1, 1, order(1, None)],
        [1, 1, order(2, None)],
        [2, 2, order(3, Some("app"))],
        [1, 99, order(4, None)],
        [1, 1, order(10, None)],
        [1, 1, order(11, None)],
    ]);
    let spec = json!({"schemas": {"1": V1, "2": v2()}, "items": items});
    let out = run_python_args(env, ENCODE_PY, &[], spec.to_string().as_bytes());
    let encoded: Vec<String> = serde_json::from_slice(&out).expect("encoded values");
    let bytes: Vec<Vec<u8>> = encoded
        .iter()
        .map(|h| {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
                .collect()
        })
        .collect();
    let msg = |n: i64, value: Option<&[u8]>| {
        KcatMsg::new(Some(format!("k{n}").as_bytes()), value).at(D0 + n * 1000)
    };
    let p0 = [
        msg(1, Some(&bytes[0])),
        msg(2, Some(&bytes[1])),
        msg(9, Some(b"{\"id\": 9}")),
        msg(8, None),
        msg(3, Some(&bytes[2])),
        msg(4, Some(&bytes[3])),
    ];
    let p1 = [msg(10, Some(&bytes[4])), msg(11, Some(&bytes[5]))];
    py_produce_to(env, &env.kafka, topic, Some(0), &p0, "zstd", false);
    py_produce_to(env, &env.kafka, topic, Some(1), &p1, "none", false);
}

/// Runs `ferry`; returns its stdout and stderr.
fn ferry(args: &[&str], vars: &[(&str, &str)]) -> (String, String) {
    common::ferry_success(args, vars)
}

fn pipeline(
    dir: &Path,
    name: &str,
    env: &TestEnv,
    topic: &str,
    lake: &Path,
    sink: Value,
) -> PathBuf {
    let mut sink = sink;
    sink["type"] = json!("storage");
    sink["uri"] = json!(lake);
    let doc = json!({
        "name": name,
        "source": {"type": "kafka", "brokers": [env.kafka], "topics": [topic], "stop": "high_watermark"},
        "sink": sink,
    });
    let path = dir.join(format!("{name}.yaml"));
    // JSON is YAML.
    std::fs::write(&path, doc.to_string()).expect("write pipeline");
    path
}

/// The dead-letter lines of partition 0 (whose segment starts at offset 0): `(offset,
/// reason)`.
fn dead_letters(lake: &Path, topic: &str) -> Vec<(i64, String)> {
    let file = lake
        .join("dead-letter")
        .join(topic)
        .join("0")
        .join(format!("{:020}.jsonl", 0));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut out: Vec<(i64, String)> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json line");
            (
                v["record"]["offset"].as_i64().expect("offset"),
                v["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect();
    out.sort();
    assert!(
        !lake.join("dead-letter").join(topic).join("1").exists(),
        "partition 1 has no bad values"
    );
    out
}

const DUCKDB_PY: &str = r#"
import duckdb, json, sys
root, extra = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
src = f"read_parquet('{root}/**/*.parquet', hive_partitioning = true, union_by_name = true)"
types = con.execute(
    "SELECT typeof(value_avro.id), typeof(value_avro.customer), typeof(value_avro.amount), "
    "typeof(value_avro.at), typeof(value_avro.day), typeof(value_avro.status), "
    "typeof(value_avro.tags), typeof(value_avro.attrs), typeof(value_avro.ref) "
    f"FROM {src} WHERE value_avro IS NOT NULL LIMIT 1").fetchone()
cols = ("value_avro.id, value_avro.customer.name, value_avro.customer.email, "
        "value_avro.amount::VARCHAR, value_avro.paid, epoch_ms(value_avro.at), value_avro.day::VARCHAR, "
        "value_avro.status, value_avro.tags, value_avro.attrs['twice'], value_avro.ref")
if extra:
    cols += ", " + extra
rows = con.execute(
    f'SELECT "partition", "offset", value_avro IS NULL, value IS NULL, {cols} FROM {src} ORDER BY 1, 2').fetchall()
total = con.execute(f"SELECT sum(value_avro.amount)::VARCHAR FROM {src}").fetchone()[0]
print(json.dumps({"types": types, "rows": rows, "total": total}, default=str))
"#;

const FASTAVRO_PY: &str = r#"
import datetime, glob, json, os, sys
import fastavro
root = sys.argv[1]
epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
rows, field = [], None
for f in sorted(glob.glob(os.path.join(root, "**", "*.avro"), recursive=True)):
    with open(f, "rb") as fh:
        reader = fastavro.reader(fh)
        field = [x for x in reader.writer_schema["fields"] if x["name"] == "value_avro"][0]["type"]
        for r in reader:
            v = r["value_avro"]
            if v is not None:
                v = dict(v, amount=str(v["amount"]), at=(v["at"] - epoch) // datetime.timedelta(milliseconds=1),
                         day=v["day"].isoformat(), ref=str(v["ref"]))
            rows.append([r["partition"], r["offset"], v])
rows.sort(key=lambda r: (r[0], r[1]))
print(json.dumps({"field": field, "rows": rows}))
"#;

#[test]
fn registry_avro_values_become_typed_parquet_columns_and_avro_fields() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("avro-values");
    produce(&env, &topic);
    let (url, requests) = registry(vec![(1, V1.to_string()), (2, v2())]);
    let work = tempfile::tempdir().unwrap();

    // Parquet, through the example pipeline.
    let lake = work.path().join("lake");
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipelines/export-parquet-avro-registry.yaml");
    let (_, log) = ferry(
        &["run", example.to_str().unwrap()],
        &[
            ("FERRY_KAFKA", env.kafka.as_str()),
            ("FERRY_TOPIC", topic.as_str()),
            ("FERRY_LAKE", lake.to_str().unwrap()),
            ("FERRY_SCHEMA_REGISTRY", url.as_str()),
        ],
    );
    assert!(
        log.contains("reader schema of the topic is the writer schema of its first value"),
        "{log}"
    );
    let mut asked = requests.lock().unwrap().clone();
    asked.sort();
    assert_eq!(
        asked,
        ["/schemas/ids/1", "/schemas/ids/2", "/schemas/ids/99"],
        "each schema id is fetched once"
    );
    let out = run_python_args(&env, DUCKDB_PY, &[lake.to_str().unwrap(), ""], b"");
    let v: Value = serde_json::from_slice(&out).expect("duckdb output");
    assert_eq!(
        v["types"],
        json!([
            "BIGINT",
            "STRUCT(\"name\" VARCHAR, email VARCHAR)",
            "DECIMAL(10,2)",
            "TIMESTAMP WITH TIME ZONE",
            "DATE",
            "VARCHAR",
            "VARCHAR[]",
            "MAP(VARCHAR, BIGINT)",
            "VARCHAR"
        ])
    );
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    let row = |i: usize| rows[i].as_array().unwrap().clone();
    // [partition, offset, value_avro IS NULL, value IS NULL, id, name, email, amount,
    //  paid, at, day, status, tags, attrs['twice'], ref]
    assert_eq!(
        rows[0],
        json!([
            0,
            0,
            false,
            false,
            1,
            "c1",
            null,
            "1.25",
            false,
            D0 + 1000,
            "2025-12-02",
            "PAID",
            ["a", "t1"],
            2,
            "00000000-0000-4000-8000-000000000001"
        ])
    );
    assert_eq!(rows[1][6], "c2@example.com");
    // Not in the wire format, a tombstone: null struct, raw value kept (or null).
    assert_eq!(row(2)[2..4], [json!(true), json!(false)]);
    assert_eq!(row(3)[2..4], [json!(true), json!(true)]);
    // Written with v2 (schema id 2), read as v1 (the first value's schema).
    assert_eq!(
        row(4)[2..9],
        [
            json!(false),
            json!(false),
            json!(3),
            json!("c3"),
            json!(null),
            json!("3.25"),
            json!(false)
        ]
    );
    // Unknown schema id 99.
    assert_eq!(rows[5][2], true);
    assert_eq!(
        row(7)[..5],
        [json!(1), json!(1), json!(false), json!(false), json!(11)]
    );
    assert_eq!(v["total"], "28.25");
    let bad = dead_letters(&lake, &topic);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert_eq!(bad[0].0, 2);
    assert!(bad[0].1.contains("not the magic byte 0"), "{}", bad[0].1);
    assert_eq!(bad[1].0, 5);
    assert!(
        bad[1]
            .1
            .contains("schema id 99 is not in the schema registry")
            && bad[1].1.contains("40403"),
        "{}",
        bad[1].1
    );
    let (verify, _) = ferry(&["verify", lake.to_str().unwrap()], &[]);
    assert!(verify.contains("all good"), "{verify}");

    // Avro, read by fastavro: a native `value_avro` field; the export restores.
    let lake_avro = work.path().join("lake-avro");
    let file = pipeline(
        work.path(),
        "avro-registry",
        &env,
        &topic,
        &lake_avro,
        json!({"format": "avro", "avro": {"value": {"as": "avro", "registry": {"url": url}, "on_error": "dead_letter"}}}),
    );
    ferry(&["run", file.to_str().unwrap()], &[]);
    let out = run_python_args(&env, FASTAVRO_PY, &[lake_avro.to_str().unwrap()], b"");
    let v: Value = serde_json::from_slice(&out).expect("fastavro output");
    assert_eq!(v["field"][0], "null");
    assert!(
        v["field"][1]["name"].as_str().unwrap().ends_with("Order"),
        "{}",
        v["field"]
    );
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    assert_eq!(
        rows[0],
        json!([0, 0, {
            "id": 1, "customer": {"name": "c1", "email": null}, "amount": "1.25", "paid": false,
            "at": D0 + 1000, "day": "2025-12-02", "status": "PAID", "tags": ["a", "t1"],
            "attrs": {"n": 1, "twice": 2}, "ref": "00000000-0000-4000-8000-000000000001"
        }])
    );
    for (i, off) in [(2, 2), (3, 3), (5, 5)] {
        assert_eq!(rows[i][1], off);
        assert_eq!(rows[i][2], Value::Null, "offset {off}");
    }
    assert_eq!(rows[4][2]["id"], 3);
    assert!(rows[4][2].get("channel").is_none(), "read as v1");
    let bad = dead_letters(&lake_avro, &topic);
    assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), [2, 5]);
    let source = dump_topic(&env, &env.kafka, &topic);
    let restored = format!("{topic}-restored");
    ferry(
        &[
            "restore",
            "--from",
            lake_avro.to_str().unwrap(),
            "--brokers",
            &env.kafka,
            "--topic",
            &topic,
            "--rename",
            &format!("{topic}={restored}"),
        ],
        &[],
    );
    let mut got = dump_topic(&env, &env.kafka, &restored);
    let mut want = source;
    got.sort_by_key(|r| (r.partition, r.offset));
    want.sort_by_key(|r| (r.partition, r.offset));
    assert_eq!(got, want, "the Avro export restores the topic exactly");
}

#[test]
fn schema_files_and_schema_id_choose_the_reader_schema() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("avro-files");
    produce(&env, &topic);
    let work = tempfile::tempdir().unwrap();
    let schemas = work.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    std::fs::write(schemas.join("1.avsc"), V1).unwrap();
    std::fs::write(schemas.join("2.avsc"), v2()).unwrap();
    let lake = work.path().join("lake");
    let file = pipeline(
        work.path(),
        "avro-files",
        &env,
        &topic,
        &lake,
        json!({"format": "parquet", "parquet": {"value": {
            "as": "avro", "schemas": schemas, "schema_id": 2, "on_error": "dead_letter"
        }}}),
    );
    let (_, log) = ferry(&["run", file.to_str().unwrap()], &[]);
    assert!(log.contains("reader schema from schema_id"), "{log}");
    let bad = assert_read_with_v2(&env, &lake, &topic);
    assert!(bad[1].1.contains("no file 99.avsc"), "{}", bad[1].1);
}

#[test]
fn a_registry_subject_chooses_the_reader_schema() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("avro-subject");
    produce(&env, &topic);
    let (url, requests) = registry(vec![(1, V1.to_string()), (2, v2())]);
    let work = tempfile::tempdir().unwrap();
    let lake = work.path().join("lake");
    let file = pipeline(
        work.path(),
        "avro-subject",
        &env,
        &topic,
        &lake,
        json!({"format": "parquet", "parquet": {"value": {
            "as": "avro", "registry": {"url": url}, "subject": "orders-value",
            "on_error": "dead_letter"
        }}}),
    );
    let (_, log) = ferry(&["run", file.to_str().unwrap()], &[]);
    assert!(log.contains("latest version of the subject"), "{log}");
    assert_eq!(
        requests.lock().unwrap()[0],
        "/subjects/orders-value/versions/latest"
    );
    let bad = assert_read_with_v2(&env, &lake, &topic);
    assert!(
        bad[1]
            .1
            .contains("schema id 99 is not in the schema registry"),
        "{}",
        bad[1].1
    );
}

/// The export of [`produce`]'s values read with the v2 schema (which adds `channel`): v1
/// values get its default, the v2 value keeps its own, the two bad values are dead letters
/// (returned: offset and reason).
fn assert_read_with_v2(env: &TestEnv, lake: &Path, topic: &str) -> Vec<(i64, String)> {
    let out = run_python_args(
        env,
        DUCKDB_PY,
        &[lake.to_str().unwrap(), "value_avro.channel"],
        b"",
    );
    let v: Value = serde_json::from_slice(&out).expect("duckdb output");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    // v1 values get the reader's default, the v2 value keeps its own.
    let channel: Vec<(i64, i64, Value)> = rows
        .iter()
        .map(|r| {
            (
                r[0].as_i64().unwrap(),
                r[1].as_i64().unwrap(),
                r[15].clone(),
            )
        })
        .collect();
    assert_eq!(
        channel,
        [
            (0, 0, json!("web")),
            (0, 1, json!("web")),
            (0, 2, Value::Null),
            (0, 3, Value::Null),
            (0, 4, json!("app")),
            (0, 5, Value::Null),
            (1, 0, json!("web")),
            (1, 1, json!("web")),
        ]
    );
    assert_eq!(rows[6][4], 10);
    let bad = dead_letters(lake, topic);
    assert_eq!(bad.len(), 2, "{bad:?}");
    bad
}
