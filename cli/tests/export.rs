//! Exports against the real Apache Kafka broker of the dev environment: Parquet and Avro
//! files written by `ferry backup --format …` and by the Hive-layout example pipeline are
//! read by independent readers (pyarrow, DuckDB, fastavro) and compared with a dump made by
//! librdkafka; restores from Parquet, Avro and jsonl exports give the same topic as a
//! restore from the raw backup.

mod common;

use common::{create_topic, varied_topic};
use ferry_testkit::{
    dump_topic, py_produce_to, run_python_args, unique, DumpedRecord, KcatMsg, TestEnv,
};
use std::path::Path;

fn ferry_ok(args: &[&str], vars: &[(&str, &str)]) -> String {
    common::ferry_success(args, vars).0
}

/// Reads every Parquet or Avro file under a folder with an independent reader and prints
/// each record as `[partition, offset, timestamp_ms, timestamp_type, key_hex, value_hex,
/// [[header_key, value_hex], …]]` (null for nulls), one JSON list per line, after a first
/// line with the number of files read.
const READ_EXPORT_PY: &str = r#"
import datetime, glob, json, os, sys
mode, root = sys.argv[1], sys.argv[2]

def hx(b):
    return None if b is None else bytes(b).hex()

def headers(hs):
    return [[h["key"], hx(h["value"])] for h in (hs or [])]

rows = []
if mode in ("pyarrow", "duckdb"):
    files = sorted(glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True))
    for f in files:
        if mode == "pyarrow":
            import pyarrow as pa, pyarrow.parquet as pq
            t = pq.read_table(f)
            ts = t.column("timestamp").cast(pa.int64()).to_pylist()
            d = t.to_pydict()
            for i in range(t.num_rows):
                rows.append([d["partition"][i], d["offset"][i], ts[i], d["timestamp_type"][i],
                             hx(d["key"][i]), hx(d["value"][i]), headers(d["headers"][i])])
        else:
            import duckdb
            q = ('SELECT "partition", "offset", epoch_ms("timestamp"), timestamp_type, key, value, headers '
                 "FROM read_parquet(?)")
            for r in duckdb.execute(q, [f]).fetchall():
                rows.append([r[0], r[1], r[2], r[3], hx(r[4]), hx(r[5]), headers(r[6])])
else:
    import fastavro
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    files = sorted(glob.glob(os.path.join(root, "**", "*.avro"), recursive=True))
    for f in files:
        with open(f, "rb") as fh:
            for r in fastavro.reader(fh):
                ts = r["timestamp"]
                if isinstance(ts, datetime.datetime):
                    ts = (ts - epoch) // datetime.timedelta(milliseconds=1)
                rows.append([r["partition"], r["offset"], ts, r["timestamp_type"],
                             hx(r["key"]), hx(r["value"]), headers(r["headers"])])
out = sys.stdout
out.write(json.dumps(len(files)) + "\n")
for r in rows:
    out.write(json.dumps(r) + "\n")
"#;

fn unhex(v: &serde_json::Value) -> Option<Vec<u8>> {
    let s = v.as_str()?;
    Some(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect(),
    )
}

/// `(files, records sorted by partition and offset)` as an independent reader sees them.
fn read_export(env: &TestEnv, mode: &str, dir: &Path) -> (usize, Vec<DumpedRecord>) {
    let out = run_python_args(env, READ_EXPORT_PY, &[mode, dir.to_str().unwrap()], b"");
    let text = String::from_utf8(out).expect("utf-8");
    let mut lines = text.lines();
    let files: usize = lines.next().expect("file count").parse().expect("a number");
    let mut records: Vec<DumpedRecord> = lines
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            DumpedRecord {
                partition: v[0].as_i64().expect("partition") as i32,
                offset: v[1].as_i64().expect("offset"),
                timestamp: v[2].as_i64().expect("timestamp"),
                timestamp_type: v[3].as_str().expect("timestamp_type").to_string(),
                key: unhex(&v[4]),
                value: unhex(&v[5]),
                headers: v[6]
                    .as_array()
                    .expect("headers")
                    .iter()
                    .map(|h| (h[0].as_str().expect("key").to_string(), unhex(&h[1])))
                    .collect(),
            }
        })
        .collect();
    records.sort_by_key(|r| (r.partition, r.offset));
    (files, records)
}

/// Short description of a record (values can be MiBs).
fn brief(r: &DumpedRecord) -> String {
    let b = |v: &Option<Vec<u8>>| match v {
        None => "null".to_string(),
        Some(v) if v.len() > 64 => format!("{} bytes", v.len()),
        Some(v) => format!("{:?}", String::from_utf8_lossy(v)),
    };
    format!(
        "p{} @{} ts={} {} key={} value={} headers={:?}",
        r.partition,
        r.offset,
        r.timestamp,
        r.timestamp_type,
        b(&r.key),
        b(&r.value),
        r.headers
            .iter()
            .map(|(k, v)| (k.clone(), b(v)))
            .collect::<Vec<_>>()
    )
}

/// Asserts two record lists are equal, naming the first difference briefly.
fn assert_same(what: &str, got: &[DumpedRecord], want: &[DumpedRecord]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g == w,
            "{what}: record {i} differs:\n got  {}\n want {}",
            brief(g),
            brief(w)
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: record count");
}

fn sorted(mut v: Vec<DumpedRecord>) -> Vec<DumpedRecord> {
    v.sort_by_key(|r| (r.partition, r.offset));
    v
}

fn backup(env: &TestEnv, topic: &str, to: &Path, format: &str) {
    ferry_ok(
        &[
            "backup",
            "--brokers",
            &env.kafka,
            "--topic",
            topic,
            "--to",
            to.to_str().unwrap(),
            "--format",
            format,
            "--snapshot",
        ],
        &[],
    );
    let verify = ferry_ok(&["verify", to.to_str().unwrap()], &[]);
    assert!(verify.contains("all good"), "{format}: {verify}");
}

fn restore(env: &TestEnv, from: &Path, topic: &str, to_topic: &str) -> Vec<DumpedRecord> {
    ferry_ok(
        &[
            "restore",
            "--from",
            from.to_str().unwrap(),
            "--brokers",
            &env.kafka,
            "--topic",
            topic,
            "--rename",
            &format!("{topic}={to_topic}"),
        ],
        &[],
    );
    sorted(dump_topic(env, &env.kafka, to_topic))
}

#[test]
fn parquet_and_avro_exports_hold_every_record_and_restore_like_raw() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("export");
    let total = varied_topic(&env, &topic);
    let source = sorted(dump_topic(&env, &env.kafka, &topic));
    assert_eq!(source.len(), total);

    let work = tempfile::tempdir().unwrap();
    let dir = |f: &str| work.path().join(f);
    for format in ["raw", "parquet", "avro", "jsonl"] {
        backup(&env, &topic, &dir(format), format);
    }
    let ls: serde_json::Value = serde_json::from_str(&ferry_ok(
        &["ls", dir("parquet").to_str().unwrap(), "--json"],
        &[],
    ))
    .unwrap();
    let parts = ls["topics"][0]["partitions"].as_array().unwrap();
    let records: u64 = parts.iter().map(|p| p["records"].as_u64().unwrap()).sum();
    assert_eq!(
        records as usize, total,
        "parquet manifests count every record"
    );
    assert_eq!(parts[0]["formats"][0], "parquet");

    for (mode, format, ext) in [
        ("pyarrow", "parquet", "parquet"),
        ("duckdb", "parquet", "parquet"),
        ("fastavro", "avro", "avro"),
    ] {
        let (files, got) = read_export(&env, mode, &dir(format));
        assert_eq!(files, common::files_under(&dir(format), ext).len());
        assert!(files >= 3, "{mode}: one file per partition at least");
        assert_same(&format!("{format} read by {mode}"), &got, &source);
    }

    let from_raw = restore(&env, &dir("raw"), &topic, &format!("{topic}-raw"));
    assert_same("restored from raw", &from_raw, &source);
    for format in ["parquet", "avro", "jsonl"] {
        let got = restore(&env, &dir(format), &topic, &format!("{topic}-{format}"));
        assert_same(&format!("restored from {format}"), &got, &from_raw);
    }
}

/// Values of the Hive export test: JSON documents, plus a value that is not JSON, one with
/// a field of the wrong type and a tombstone.
fn order(n: i64, ts: i64) -> KcatMsg {
    let value = match n {
        4 => "not json".to_string(),
        5 => format!("{{\"id\":\"abc\",\"amount\":{n}.5}}"),
        _ => format!(
            "{{\"id\":{n},\"user\":{{\"name\":\"u{n}\"}},\"amount\":{n}.5,\"paid\":{},\"at\":\"2025-12-01T05:00:0{}Z\",\"tags\":[\"a\",{n}]}}",
            n % 2 == 0,
            n % 10
        ),
    };
    let key = format!("k{n}");
    if n == 3 {
        return KcatMsg::new(Some(key.as_bytes()), None).at(ts);
    }
    KcatMsg::new(Some(key.as_bytes()), Some(value.as_bytes())).at(ts)
}

#[test]
fn hive_layout_parquet_with_typed_json_columns_reads_in_duckdb_and_restores() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("hive");
    create_topic(&env, &topic, 2, &[]);
    const HOUR: i64 = 3_600_000;
    const D0: i64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z
    const DAY: i64 = 24 * HOUR;
    // Partition 0: 2025-12-01 05h ×2, 06h; 2025-12-02 00h ×2; 2025-12-03 23h.
    let p0 = [
        D0 + 5 * HOUR,
        D0 + 5 * HOUR + 1,
        D0 + 6 * HOUR,
        D0 + DAY,
        D0 + DAY + 2,
        D0 + 2 * DAY + 23 * HOUR,
    ];
    // Partition 1: 2025-12-01 07h; 2025-12-02 00h, 01h; 2025-12-01 again (out of order).
    let p1 = [D0 + 7 * HOUR, D0 + DAY, D0 + DAY + HOUR, D0 + 8 * HOUR];
    let m0: Vec<KcatMsg> = p0
        .iter()
        .enumerate()
        .map(|(i, ts)| order(i as i64, *ts))
        .collect();
    let m1: Vec<KcatMsg> = p1
        .iter()
        .enumerate()
        .map(|(i, ts)| order(10 + i as i64, *ts))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &m0, "zstd", false);
    py_produce_to(&env, &env.kafka, &topic, Some(1), &m1, "lz4", false);
    let source = sorted(dump_topic(&env, &env.kafka, &topic));

    let work = tempfile::tempdir().unwrap();
    let lake = work.path().join("lake");
    let pipeline =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/export-parquet-hive-json.yaml");
    let vars = [
        ("FERRY_KAFKA", env.kafka.as_str()),
        ("FERRY_TOPIC", topic.as_str()),
        ("FERRY_LAKE", lake.to_str().unwrap()),
    ];
    ferry_ok(&["run", pipeline.to_str().unwrap()], &vars);

    // Every file sits under the date and hour of its records, named by partition and
    // first offset; nothing is left pending.
    let files = common::files_under(&lake, "parquet");
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&lake).unwrap().to_str().unwrap().to_string())
        .collect();
    let prefix = format!("topic={topic}/");
    let expected = [
        "date=2025-12-01/hour=05/0-00000000000000000000.parquet",
        "date=2025-12-01/hour=06/0-00000000000000000002.parquet",
        "date=2025-12-01/hour=07/1-00000000000000000000.parquet",
        "date=2025-12-01/hour=08/1-00000000000000000003.parquet",
        "date=2025-12-02/hour=00/0-00000000000000000003.parquet",
        "date=2025-12-02/hour=00/1-00000000000000000001.parquet",
        "date=2025-12-02/hour=01/1-00000000000000000002.parquet",
        "date=2025-12-03/hour=23/0-00000000000000000005.parquet",
    ];
    let want: Vec<String> = expected.iter().map(|e| format!("{prefix}{e}")).collect();
    assert_eq!(names, want);
    assert!(
        !lake.join("pending").exists()
            || common::files_under(&lake.join("pending"), "json").is_empty()
    );

    let query = r#"
import duckdb, json, sys
glob = sys.argv[1] + "/**/*.parquet"
src = f"read_parquet('{glob}', hive_partitioning = true)"
per_date = duckdb.sql(f"SELECT date::VARCHAR, count(*) FROM {src} GROUP BY 1 ORDER BY 1").fetchall()
misplaced = duckdb.sql(
    f'SELECT count(*) FROM {src} WHERE epoch_ms("timestamp") // 86400000 <> date - DATE \'1970-01-01\' '
    f'OR (epoch_ms("timestamp") % 86400000) // 3600000 <> hour').fetchone()[0]
types = duckdb.sql(
    f"SELECT typeof(value_json.id), typeof(value_json.amount), typeof(value_json.paid), "
    f"typeof(value_json.at), typeof(value_json.user) FROM {src} LIMIT 1").fetchone()
typed = duckdb.sql(
    f'SELECT "partition", "offset", value_json.id, value_json.user, value_json.amount, value_json.paid, '
    f'epoch_ms(value_json.at), value_json.tags, value IS NULL FROM {src} ORDER BY 1, 2').fetchall()
print(json.dumps({"per_date": per_date, "misplaced": misplaced, "types": types, "typed": typed}))
"#;
    let out = run_python_args(&env, query, &[lake.to_str().unwrap()], b"");
    let v: serde_json::Value = serde_json::from_slice(&out).expect("query output");
    assert_eq!(
        v["per_date"],
        serde_json::json!([["2025-12-01", 5], ["2025-12-02", 4], ["2025-12-03", 1]])
    );
    assert_eq!(
        v["misplaced"], 0,
        "every record sits under its own date and hour"
    );
    assert_eq!(
        v["types"],
        serde_json::json!([
            "BIGINT",
            "DOUBLE",
            "BOOLEAN",
            "TIMESTAMP WITH TIME ZONE",
            "VARCHAR"
        ])
    );
    let typed = v["typed"].as_array().unwrap();
    assert_eq!(typed.len(), 10);
    // Partition 0, offset 0: a full document.
    assert_eq!(
        typed[0],
        serde_json::json!([0, 0, 0, "u0", 0.5, true, D0 + 5 * HOUR, "[\"a\",0]", false])
    );
    // Offset 3 is a tombstone, offset 4 is not JSON, offset 5 has a string id: typed fields
    // are null, the raw value is kept.
    assert_eq!(typed[3][2], serde_json::Value::Null);
    assert_eq!(typed[3][8], true);
    assert_eq!(typed[4][2], serde_json::Value::Null);
    assert_eq!(typed[4][8], false);
    assert_eq!(typed[5][2], serde_json::Value::Null);
    assert_eq!(typed[5][4], 5.5);
    // Partition 1 holds n = 10..=13.
    assert_eq!(
        typed[6],
        serde_json::json!([
            1,
            0,
            10,
            "u10",
            10.5,
            true,
            D0 + 5 * HOUR,
            "[\"a\",10]",
            false
        ])
    );

    // The export is a backup too: verified, restorable, and a second run adds nothing.
    let verify = ferry_ok(&["verify", lake.to_str().unwrap()], &[]);
    assert!(verify.contains("all good"), "{verify}");
    ferry_ok(&["run", pipeline.to_str().unwrap()], &vars);
    assert_eq!(common::files_under(&lake, "parquet").len(), expected.len());
    let restored = restore(&env, &lake, &topic, &format!("{topic}-restored"));
    assert_same("restored from the Hive export", &restored, &source);
}
