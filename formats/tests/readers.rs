//! Independent readers: Parquet and Avro files written by Ferry's segment encoders are read
//! by pyarrow, DuckDB and fastavro (the dev environment's Python venv), and every field
//! must equal what was written. Needs the dev environment (scripts/dev-env up); skips,
//! printing why, when it is not there (fails with `FERRY_REQUIRE_ENV=1`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use ferry_core::ByteSize;
use ferry_core::{Ack, Batch, Header, Record, TimestampType};
use ferry_formats::avro::{AvroCodec, AvroFormat, AvroOptions};
use ferry_formats::parquet::{ParquetCompression, ParquetFormat, ParquetOptions};
use ferry_formats::segment::SegmentFormat;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

const TOPIC: &str = "lake.orders";
const PARTITION: i32 = 7;
const YEAR_2100_MS: i64 = 4_102_444_800_000;

/// Corner cases first (null vs empty, binary, headers with nulls and repeats, 1970 to 2100,
/// both timestamp types, an offset gap), then enough records for several row groups and
/// blocks.
fn records() -> Vec<Record> {
    let t: Arc<str> = Arc::from(TOPIC);
    let b = |s: &[u8]| Some(Bytes::copy_from_slice(s));
    let mut out = Vec::new();
    let mut push = |offset: i64,
                    ts: i64,
                    ty: TimestampType,
                    key: Option<Bytes>,
                    value: Option<Bytes>,
                    headers: Vec<Header>| {
        let mut r = Record::new(t.clone(), PARTITION, offset, value);
        r.timestamp = ts;
        r.timestamp_type = ty;
        r.key = key;
        r.headers = headers;
        out.push(r);
    };
    use TimestampType::{Create, LogAppend};
    push(100, 0, Create, None, None, vec![]);
    push(101, 1, LogAppend, b(b""), b(b""), vec![]);
    push(102, -1, Create, b(b"k"), None, vec![Header::new("h", None)]);
    push(
        103,
        1_732_442_400_123,
        Create,
        None,
        b(b"{\"json\": true}"),
        vec![
            Header::new("trace", b(b"a")),
            Header::new("trace", None),
            Header::new("trace", b(b"")),
            Header::new("", b(b"empty key")),
            Header::new("ünïcødé", b(&[0xff, 0x00, 0xfe])),
        ],
    );
    push(
        104,
        YEAR_2100_MS,
        LogAppend,
        b(&[0x00, 0xff, 0x80]),
        b(&[0xc3, 0x28, 0x00]),
        vec![],
    );
    push(
        110,
        YEAR_2100_MS - 1,
        Create,
        b(b"after gap"),
        b(b"x"),
        vec![],
    );
    for offset in 111..400 {
        push(
            offset,
            1_700_000_000_000 + offset * 1000,
            if offset % 3 == 0 { LogAppend } else { Create },
            Some(Bytes::from(format!("user-{}", offset % 17))),
            Some(Bytes::from(
                (0..400 + offset as usize % 100)
                    .map(|j| (j as i64 * 7 + offset) as u8)
                    .collect::<Vec<u8>>(),
            )),
            vec![
                Header::new("n", Some(Bytes::from(offset.to_string()))),
                Header::new("maybe", (offset % 2 == 0).then(Bytes::new)),
            ],
        );
    }
    out
}

/// Encodes `records` through the format's segment encoder, in batches of 50 records, plus a
/// control record (transaction marker) after each batch that the formats must skip.
fn write_segment(format: &dyn SegmentFormat, records: &[Record], path: &Path) -> i64 {
    let t: Arc<str> = Arc::from(TOPIC);
    let first = records[0].offset;
    let mut enc = format.encoder(TOPIC, PARTITION, first);
    let mut file = Vec::new();
    let mut next = first;
    for chunk in records.chunks(50) {
        let mut batch_records = chunk.to_vec();
        let last = chunk[chunk.len() - 1].offset;
        let mut marker = Record::new(
            t.clone(),
            PARTITION,
            last + 1,
            Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
        );
        marker.key = Some(Bytes::from_static(&[0, 0, 0, 1]));
        marker.is_control = true;
        batch_records.push(marker);
        next = last + 2;
        let batch = Batch::from_records(
            t.clone(),
            PARTITION,
            chunk[0].offset,
            next,
            batch_records,
            Ack::none(),
        );
        file.extend_from_slice(&enc.encode(&batch).expect("encode"));
    }
    file.extend_from_slice(&enc.finish().expect("finish"));
    std::fs::write(path, &file).expect("write file");
    next
}

fn b64(b: &Option<Bytes>) -> Value {
    b.as_ref()
        .map_or(Value::Null, |b| Value::String(B64.encode(b)))
}

/// The records as the Python script prints them.
fn expected(records: &[Record]) -> Value {
    Value::Array(
        records
            .iter()
            .map(|r| {
                json!({
                    "topic": &*r.topic,
                    "partition": r.partition,
                    "offset": r.offset,
                    "timestamp": r.timestamp,
                    "timestamp_type": r.timestamp_type.as_str(),
                    "key": b64(&r.key),
                    "value": b64(&r.value),
                    "headers": r.headers.iter().map(|h| json!([h.key, b64(&h.value)])).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

const SCRIPT: &str = r#"
import base64, datetime, json, sys
import duckdb, fastavro
import fastavro.read
import pyarrow as pa
import pyarrow.parquet as pq

def b64(b):
    return None if b is None else base64.b64encode(bytes(b)).decode()

def headers(hs):
    return [[h["key"], b64(h["value"])] for h in hs]

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

def ms(dt):
    return (dt - EPOCH) // datetime.timedelta(milliseconds=1)

def text(v):
    return v.decode() if isinstance(v, (bytes, bytearray)) else v

out = {"parquet": {}, "avro": {}}
for arg in sys.argv[1:]:
    kind, name, path = arg.split("=", 2)
    if kind == "typed":
        t = pq.read_table(path)
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(
            'SELECT "offset", value_json.id, value_json.user, value_json.amount, epoch_ms(value_json.at), value_json IS NULL '
            'FROM read_parquet(?) ORDER BY "offset"', [path]).fetchall()
        total = con.execute('SELECT sum(value_json.amount), count(value_json.id) FROM read_parquet(?)', [path]).fetchone()
        out["typed"] = dict(
            pyarrow_type=str(t.schema.field("value_json").type),
            pyarrow_rows=t.column("value_json").to_pylist()[:2],
            duckdb_rows=[list(r) for r in rows],
            duckdb_total=list(total),
        )
    elif kind == "parquet":
        # pyarrow
        t = pq.read_table(path)
        ts = t.column("timestamp").cast(pa.int64()).to_pylist()
        rows = t.select(["topic", "partition", "offset", "timestamp_type", "key", "value", "headers"]).to_pylist()
        recs = [dict(topic=r["topic"], partition=r["partition"], offset=r["offset"], timestamp=ts[i],
                     timestamp_type=r["timestamp_type"], key=b64(r["key"]), value=b64(r["value"]),
                     headers=headers(r["headers"])) for i, r in enumerate(rows)]
        md = pq.read_metadata(path)
        rg0 = md.row_group(0)
        offset_col = [rg0.column(i) for i in range(rg0.num_columns) if rg0.column(i).path_in_schema == "offset"][0]
        pyarrow_out = dict(
            records=recs,
            types={f.name: str(f.type) for f in t.schema},
            nullable={f.name: f.nullable for f in t.schema},
            metadata={k.decode(): v.decode() for k, v in (md.metadata or {}).items() if k.startswith(b"ferry.")},
            row_groups=md.num_row_groups,
            compression=sorted({rg0.column(i).compression for i in range(rg0.num_columns)}),
            offset_stats=[offset_col.statistics.min, offset_col.statistics.max] if offset_col.is_stats_set else None,
            page_index=offset_col.has_column_index and offset_col.has_offset_index,
        )
        # DuckDB
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        agg = con.execute(
            'SELECT count(*), min("offset"), max("offset"), min(epoch_ms("timestamp")), max(epoch_ms("timestamp")) FROM read_parquet(?)',
            [path]).fetchone()
        rows = con.execute(
            'SELECT topic, "partition", "offset", epoch_ms("timestamp"), timestamp_type, "key", "value", headers '
            'FROM read_parquet(?) ORDER BY "offset"', [path]).fetchall()
        types = con.execute(
            'SELECT typeof("timestamp"), typeof("key"), typeof(headers), typeof("partition") FROM read_parquet(?) LIMIT 1',
            [path]).fetchone()
        kv = con.execute("SELECT decode(key), decode(value) FROM parquet_kv_metadata(?)", [path]).fetchall()
        duck_out = dict(
            count=agg[0], min_offset=agg[1], max_offset=agg[2], min_ts=agg[3], max_ts=agg[4],
            records=[dict(topic=r[0], partition=r[1], offset=r[2], timestamp=r[3], timestamp_type=r[4],
                          key=b64(r[5]), value=b64(r[6]), headers=headers(r[7])) for r in rows],
            types=list(types),
            metadata={k: v for k, v in kv if k.startswith("ferry.")},
        )
        out["parquet"][name] = {"pyarrow": pyarrow_out, "duckdb": duck_out}
    else:
        with open(path, "rb") as f:
            rd = fastavro.reader(f)
            recs = [dict(topic=r["topic"], partition=r["partition"], offset=r["offset"],
                         timestamp=ms(r["timestamp"]), timestamp_type=r["timestamp_type"],
                         key=b64(r["key"]), value=b64(r["value"]), headers=headers(r["headers"]))
                    for r in rd]
            meta = {k: text(v) for k, v in rd.metadata.items() if k.startswith("ferry.") or k == "avro.codec"}
        with open(path, "rb") as f:
            blocks = sum(1 for _ in fastavro.block_reader(f))
        out["avro"][name] = dict(records=recs, metadata=meta, blocks=blocks)
print(json.dumps(out, default=str))
"#;

#[test]
fn pyarrow_duckdb_and_fastavro_read_what_ferry_writes() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let records = records();
    let want = expected(&records);
    let first = records[0].offset;
    let mut args = Vec::new();

    let parquet = [
        ("zstd", ParquetCompression::Zstd),
        ("snappy", ParquetCompression::Snappy),
    ];
    let mut parquet_next = 0;
    for (name, compression) in parquet {
        let path = dir.path().join(format!("{name}.parquet"));
        let format = ParquetFormat::new(ParquetOptions {
            row_group_bytes: ByteSize(32 * 1024),
            compression,
            ..ParquetOptions::default()
        });
        parquet_next = write_segment(&format, &records, &path);
        args.push(format!("parquet={name}={}", path.display()));
    }
    let codecs = [
        ("null", AvroCodec::Null),
        ("deflate", AvroCodec::Deflate),
        ("snappy", AvroCodec::Snappy),
        ("zstd", AvroCodec::Zstd),
    ];
    for (name, codec) in codecs {
        let path = dir.path().join(format!("{name}.avro"));
        let format = AvroFormat::new(AvroOptions {
            codec,
            block_bytes: ByteSize(16 * 1024),
        });
        write_segment(&format, &records, &path);
        args.push(format!("avro={name}={}", path.display()));
    }

    // Typed columns decoded from JSON values.
    let typed_path = dir.path().join("typed.parquet");
    let typed: Vec<Record> = (0..4i64)
        .map(|i| {
            let value = match i {
                3 => None,
                2 => Some(Bytes::from_static(b"not json")),
                _ => Some(Bytes::from(format!(
                    r#"{{"id": {i}, "user": {{"name": "u{i}"}}, "amount": {}.25, "at": "2100-01-01T00:00:0{i}Z"}}"#,
                    i * 10
                ))),
            };
            Record::new(Arc::from(TOPIC), PARTITION, i, value)
        })
        .collect();
    let typed_options: ParquetOptions = serde_json::from_str(
        r#"{"value": {"as": "json", "schema": [
            {"name": "id", "type": "int64"},
            {"name": "user", "type": "string", "path": "/user/name"},
            {"name": "amount", "type": "float64"},
            {"name": "at", "type": "timestamp_ms"}]}}"#,
    )
    .expect("typed options");
    write_segment(&ParquetFormat::new(typed_options), &typed, &typed_path);
    args.push(format!("typed=typed={}", typed_path.display()));

    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let stdout = ferry_testkit::run_python_args(&env, SCRIPT, &arg_refs, b"");
    let got: Value = serde_json::from_slice(&stdout).expect("python prints JSON");

    let min_ts = records.iter().map(|r| r.timestamp).min().expect("records");
    let max_ts = records.iter().map(|r| r.timestamp).max().expect("records");
    let last = records[records.len() - 1].offset;
    let ferry_meta = json!({
        "ferry.topic": TOPIC,
        "ferry.partition": PARTITION.to_string(),
        "ferry.first_offset": first.to_string(),
        "ferry.next_offset": parquet_next.to_string(),
    });
    for (name, _) in parquet {
        let pa = &got["parquet"][name]["pyarrow"];
        assert_eq!(pa["records"], want, "pyarrow records of {name}.parquet");
        assert_eq!(
            pa["types"],
            json!({
                "topic": "string",
                "partition": "int32",
                "offset": "int64",
                "timestamp": "timestamp[ms, tz=UTC]",
                "timestamp_type": "string",
                "key": "binary",
                "value": "binary",
                "headers": "list<element: struct<key: string not null, value: binary> not null>",
            }),
            "pyarrow types of {name}.parquet"
        );
        assert_eq!(
            pa["nullable"],
            json!({
                "topic": false, "partition": false, "offset": false, "timestamp": false,
                "timestamp_type": false, "key": true, "value": true, "headers": false,
            })
        );
        assert_eq!(pa["metadata"], ferry_meta, "footer of {name}.parquet");
        let groups = pa["row_groups"].as_u64().expect("row groups");
        assert!(groups > 3, "{name}.parquet has {groups} row groups");
        assert_eq!(pa["compression"], json!([name.to_uppercase()]));
        assert_eq!(pa["offset_stats"][0], json!(first));
        assert_eq!(pa["page_index"], json!(true));

        let duck = &got["parquet"][name]["duckdb"];
        assert_eq!(duck["records"], want, "DuckDB records of {name}.parquet");
        assert_eq!(duck["count"], json!(records.len()));
        assert_eq!(duck["min_offset"], json!(first));
        assert_eq!(duck["max_offset"], json!(last));
        assert_eq!(duck["min_ts"], json!(min_ts));
        assert_eq!(duck["max_ts"], json!(max_ts));
        assert_eq!(
            duck["types"],
            json!([
                "TIMESTAMP WITH TIME ZONE",
                "BLOB",
                "STRUCT(\"key\" VARCHAR, \"value\" BLOB)[]",
                "INTEGER"
            ])
        );
        assert_eq!(
            duck["metadata"], ferry_meta,
            "DuckDB footer of {name}.parquet"
        );
    }
    let typed = &got["typed"];
    assert_eq!(
        typed["pyarrow_type"],
        json!("struct<id: int64, user: string, amount: double, at: timestamp[ms, tz=UTC]>")
    );
    assert_eq!(typed["pyarrow_rows"][1]["user"], json!("u1"));
    assert_eq!(
        typed["duckdb_rows"],
        json!([
            [0, 0, "u0", 0.25, YEAR_2100_MS, false],
            [1, 1, "u1", 10.25, YEAR_2100_MS + 1000, false],
            [2, null, null, null, null, true],
            [3, null, null, null, null, true],
        ])
    );
    assert_eq!(typed["duckdb_total"], json!([10.5, 2]));

    for (name, _) in codecs {
        let av = &got["avro"][name];
        assert_eq!(av["records"], want, "fastavro records of {name}.avro");
        let codec = if name == "zstd" { "zstandard" } else { name };
        assert_eq!(
            av["metadata"],
            json!({
                "avro.codec": codec,
                "ferry.topic": TOPIC,
                "ferry.partition": PARTITION.to_string(),
                "ferry.first_offset": first.to_string(),
            }),
            "header of {name}.avro"
        );
        let blocks = av["blocks"].as_u64().expect("blocks");
        assert!(blocks > 3, "{name}.avro has {blocks} blocks");
    }
}

#[test]
fn ferry_reads_back_what_it_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let records = records();
    let p = dir.path().join("r.parquet");
    write_segment(&ParquetFormat::default(), &records, &p);
    let back = ferry_formats::parquet::read_parquet(Bytes::from(std::fs::read(&p).expect("read")))
        .expect("read parquet");
    assert_eq!(expected(&back), expected(&records));
    let a = dir.path().join("r.avro");
    write_segment(&AvroFormat::default(), &records, &a);
    let back =
        ferry_formats::avro::read_avro(&std::fs::read(&a).expect("read")).expect("read avro");
    assert_eq!(expected(&back), expected(&records));
}
