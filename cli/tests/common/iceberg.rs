//! What the Iceberg tests (iceberg.rs, iceberg_rest.rs) share: the table a pyiceberg script
//! prints, parsed; record comparisons; JSON values to produce.

use ferry_testkit::{run_python_args, DumpedRecord, KcatMsg, TestEnv};

/// A table as pyiceberg read it: the first line's JSON (summary, snapshots, columns, typed
/// fields …) and the rows, sorted by partition and offset, with their `value_json`.
pub struct Table {
    pub head: serde_json::Value,
    pub rows: Vec<DumpedRecord>,
    pub typed: Vec<serde_json::Value>,
}

fn unhex(v: &serde_json::Value) -> Option<Vec<u8>> {
    let s = v.as_str()?;
    Some(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect(),
    )
}

/// Runs a pyiceberg `script` with `args` and parses what it prints: a head line, then one
/// `[partition, offset, timestamp_ms, timestamp_type, key_hex, value_hex, headers,
/// value_json]` per row.
pub fn read_table(env: &TestEnv, script: &str, args: &[&str]) -> Table {
    let out = run_python_args(env, script, args, b"");
    let text = String::from_utf8(out).expect("utf-8");
    let mut lines = text.lines();
    let head: serde_json::Value = serde_json::from_str(lines.next().expect("head")).expect("json");
    let mut rows = Vec::new();
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("row");
        let record = DumpedRecord {
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
        };
        rows.push((record, v[7].clone()));
    }
    rows.sort_by_key(|(r, _)| (r.partition, r.offset));
    let (rows, typed) = rows.into_iter().unzip();
    Table { head, rows, typed }
}

/// Records sorted by partition and offset.
pub fn sorted(mut v: Vec<DumpedRecord>) -> Vec<DumpedRecord> {
    v.sort_by_key(|r| (r.partition, r.offset));
    v
}

/// Asserts two record lists are equal, naming the first difference briefly.
pub fn assert_same(what: &str, got: &[DumpedRecord], want: &[DumpedRecord]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g == w,
            "{what}: record {i} differs: got p{} @{} ts={} want p{} @{} ts={}",
            g.partition,
            g.offset,
            g.timestamp,
            w.partition,
            w.offset,
            w.timestamp
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: record count");
}

/// `n` JSON values `{"id": i, "name": "n<i>" <extra(i)>}` from `from`, keyed `k<i>`.
pub fn json_msgs(from: i64, n: i64, extra: impl Fn(i64) -> String) -> Vec<KcatMsg> {
    (from..from + n)
        .map(|i| {
            let v = format!("{{\"id\":{i},\"name\":\"n{i}\"{}}}", extra(i));
            KcatMsg::new(Some(format!("k{i}").as_bytes()), Some(v.as_bytes()))
                .at(1_764_547_200_000 + i)
        })
        .collect()
}
