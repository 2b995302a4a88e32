//! `ferry ls` and `ferry verify` on backups written by the binary itself (generator →
//! storage sink, no Kafka), and the `backup` source reading them back.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .expect("ferry runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ferry_ok(args: &[&str]) -> String {
    let o = ferry(args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "ferry {args:?} failed:\n{out}\n{err}");
    out
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z

/// A raw backup written by the storage sink itself: 3 partitions of 100 records in Kafka
/// batches of 10 (every other one zstd), segments of at most 40 records. Record `o` of
/// partition `p` is stamped `T0 + 3 * o + p`.
fn raw_backup(dir: &Path) -> String {
    use ferry_core::{Ack, Batch, Payload, RawBatches, Sink};
    use ferry_kafka::batch::{build_batch, ProduceRecord};
    use ferry_kafka::{BatchDecoder, Compression};
    use ferry_sinks::storage::{StorageSink, StorageSinkConfig};
    use std::sync::Arc;

    let backup = dir.join("backup");
    let uri = backup.to_str().unwrap().to_string();
    let config: StorageSinkConfig = serde_json::from_value(serde_json::json!({
        "uri": uri, "format": "raw", "roll": { "max_records": 40 }
    }))
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut sink = StorageSink::new(config).unwrap();
        sink.open().await.unwrap();
        let topic: Arc<str> = Arc::from("generated");
        for base in (0..100i64).step_by(10) {
            for p in 0..3i32 {
                let recs: Vec<ProduceRecord> = (base..base + 10)
                    .map(|o| ProduceRecord {
                        key: Some(format!("key-{o}").into()),
                        value: Some(format!("value-{p}-{o}-{}", "x".repeat(20)).into()),
                        headers: vec![],
                        timestamp: T0 + 3 * o + p as i64,
                    })
                    .collect();
                let codec = if base % 20 == 0 {
                    Compression::None
                } else {
                    Compression::Zstd
                };
                let bytes = build_batch(base, &recs, codec, 0, None).unwrap();
                let raw = RawBatches {
                    bytes,
                    record_count: 10,
                    min_timestamp: Some(T0 + 3 * base + p as i64),
                    max_timestamp: Some(T0 + 3 * (base + 9) + p as i64),
                    aborted: vec![],
                    decoder: Arc::new(BatchDecoder),
                };
                let batch = Batch {
                    topic: topic.clone(),
                    partition: p,
                    first_offset: base,
                    next_offset: base + 10,
                    payload: Payload::Raw(raw),
                    ack: Ack::none(),
                };
                sink.write(batch).await.unwrap();
            }
        }
        sink.close().await.unwrap();
    });
    uri
}

#[test]
fn ls_verify_and_restore_a_generated_backup() {
    let dir = tempfile::tempdir().unwrap();
    let backup = raw_backup(dir.path());

    let j: Value = serde_json::from_str(&ferry_ok(&["ls", "--json", &backup])).unwrap();
    assert_eq!(j["incomplete_segments"], 0);
    let topics = j["topics"].as_array().unwrap();
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0]["topic"], "generated");
    let parts = topics[0]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["partition"], i as i64);
        assert_eq!(p["first_offset"], 0);
        assert_eq!(p["next_offset"], 100);
        assert_eq!(p["records"], 100);
        assert!(p["segments"].as_u64().unwrap() >= 3, "{p}");
        assert!(p["bytes"].as_u64().unwrap() > 0);
        assert_eq!(p["min_timestamp"], T0 + i as i64);
        assert_eq!(p["max_timestamp"], T0 + 3 * 99 + i as i64);
        assert_eq!(p["gaps"], serde_json::json!([]));
    }

    let table = ferry_ok(&["ls", &backup]);
    assert!(
        table.contains("TOPIC") && table.contains("generated"),
        "{table}"
    );
    assert!(table.contains("2024-01-01T00:00:00"), "{table}");
    assert!(
        table.contains("3 partition(s)") && table.contains("300 record(s)"),
        "{table}"
    );

    let out = ferry_ok(&["verify", &backup]);
    assert!(out.contains("all good"), "{out}");
    assert!(out.contains("300 record(s)"), "{out}");

    // The backup source reads it back: `until` T0 + 149 ms keeps offsets 0..50 of every
    // partition.
    let restore = write(
        dir.path(),
        "restore.yaml",
        &format!(
            r#"
name: gen-restore
source:
  type: backup
  uri: "{backup}"
  until: 2024-01-01T00:00:00.149Z
sink:
  type: stdout
delivery:
  checkpoint: "{}"
"#,
            dir.path().join("state").display()
        ),
    );
    let lines = ferry_ok(&["run", &restore]);
    let records: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 150);
    assert!(records
        .iter()
        .all(|r| r["timestamp"].as_i64().unwrap() <= T0 + 149));
    for p in 0..3 {
        let offs: Vec<i64> = records
            .iter()
            .filter(|r| r["partition"] == p)
            .map(|r| r["offset"].as_i64().unwrap())
            .collect();
        assert_eq!(
            offs,
            (0..50).collect::<Vec<i64>>(),
            "partition {p} is a prefix"
        );
    }

    // One flipped byte in a segment: damage naming the object, exit 1.
    let seg = Path::new(&backup).join("topics/generated/0/00000000000000000000.log");
    let mut data = std::fs::read(&seg).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x40;
    std::fs::write(&seg, data).unwrap();
    let o = ferry(&["verify", &backup]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(
        out.contains("DAMAGED  topics/generated/0/00000000000000000000.log:"),
        "{out}"
    );
    assert!(err.contains("damaged"), "{err}");

    // A segment whose manifest is gone is incomplete: listed, warned, not damage.
    std::fs::remove_file(Path::new(&backup).join("topics/generated/1/00000000000000000000.json"))
        .unwrap();
    let j: Value = serde_json::from_str(&ferry_ok(&["ls", "--json", &backup])).unwrap();
    assert_eq!(j["incomplete_segments"], 1);
    let o = ferry(&["verify", "--json", &backup]);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p["severity"] == "warning"
        && p["object"] == "topics/generated/1/00000000000000000000.log"));
}

#[test]
fn jsonl_backups_written_by_the_storage_sink_verify_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup").to_str().unwrap().to_string();
    let p = write(
        dir.path(),
        "gen.yaml",
        &format!(
            "name: gen-jsonl\nsource: {{ type: generator, count: 300, partitions: 3, payload_size: 20, batch_size: 25 }}\nsink: {{ type: storage, uri: \"{backup}\", format: jsonl, roll: {{ max_records: 40 }} }}\n"
        ),
    );
    ferry_ok(&["run", &p]);
    let out = ferry_ok(&["verify", &backup]);
    assert!(
        out.contains("all good") && out.contains("300 record(s)"),
        "{out}"
    );
    let j: Value = serde_json::from_str(&ferry_ok(&["ls", "--json", &backup])).unwrap();
    let parts = j["topics"][0]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    assert!(parts
        .iter()
        .all(|p| p["records"] == 100 && p["formats"][0] == "jsonl"));

    let state = dir.path().join("state");
    let r = write(
        dir.path(),
        "read.yaml",
        &format!(
            "name: read-jsonl\nsource: {{ type: backup, uri: \"{backup}\", from_offset: 90 }}\nsink: {{ type: stdout }}\ndelivery: {{ checkpoint: \"{}\" }}\n",
            state.display()
        ),
    );
    let lines: Vec<Value> = ferry_ok(&["run", &r])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 30);
    assert!(lines.iter().all(|l| l["offset"].as_i64().unwrap() >= 90));
}

#[test]
fn no_backup_is_exit_1_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap();
    for cmd in ["ls", "verify"] {
        let o = ferry(&[cmd, uri]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {err}");
        assert!(err.contains("no Ferry backup at"), "{cmd}: {err}");
    }
}

/// Every file and folder under `dir`, relative, sorted: what a command may not change.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `ls` and `verify` only read: a missing path is not created, a folder that is not a
/// backup gets no `.ferry-tmp/`, and a backup is left byte for byte as it was.
#[test]
fn reading_commands_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-backup");
    let plain = dir.path().join("not-a-backup");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("notes.txt"), "hello").unwrap();
    for cmd in ["ls", "verify"] {
        let o = ferry(&[cmd, missing.to_str().unwrap()]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd} on a missing path: {err}");
        assert!(err.contains("no Ferry backup at"), "{cmd}: {err}");
        assert!(!missing.exists(), "{cmd} created {}", missing.display());

        let o = ferry(&[cmd, plain.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{cmd} on a plain folder");
        assert_eq!(
            tree(&plain),
            vec!["notes.txt".to_string()],
            "{cmd} wrote into a plain folder"
        );
    }
    let backup = raw_backup(dir.path());
    let before = tree(Path::new(&backup));
    let bytes_before: Vec<Vec<u8>> = before
        .iter()
        .filter(|p| Path::new(&backup).join(p).is_file())
        .map(|p| std::fs::read(Path::new(&backup).join(p)).unwrap())
        .collect();
    ferry_ok(&["ls", &backup]);
    ferry_ok(&["verify", &backup]);
    assert_eq!(
        tree(Path::new(&backup)),
        before,
        "ls/verify changed the backup's files"
    );
    let bytes_after: Vec<Vec<u8>> = before
        .iter()
        .filter(|p| Path::new(&backup).join(p).is_file())
        .map(|p| std::fs::read(Path::new(&backup).join(p)).unwrap())
        .collect();
    assert!(
        bytes_after == bytes_before,
        "ls/verify changed a file of the backup"
    );
}

/// Real Apache Kafka (dev env): a topic written by librdkafka with committed and aborted
/// transactions (zstd) and plain records is backed up with `ferry backup --snapshot`; `ferry ls --json` accounts for every offset, `ferry verify` passes, the backup
/// source gives back exactly what a read_committed consumer sees (or read_uncommitted with
/// `include_aborted`), and one flipped byte makes `ferry verify` exit 1.
#[test]
fn kafka_backup_with_transactions_lists_verifies_and_reads_back() {
    use ferry_kafka::{Client, ClientConfig, NewTopic};

    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = ferry_testkit::unique("lsverify");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = Client::connect(ClientConfig::new(std::slice::from_ref(&env.kafka)))
            .await
            .expect("connect to Kafka");
        c.create_topics(&[NewTopic {
            name: topic.clone(),
            partitions: 2,
            replication_factor: 1,
            configs: Default::default(),
        }])
        .await
        .expect("create topic");
    });
    const PRODUCE: &str = r#"
import sys
from confluent_kafka import Producer
broker, topic = sys.argv[1], sys.argv[2]
p = Producer({'bootstrap.servers': broker, 'transactional.id': 'ferry-' + topic,
              'compression.type': 'zstd', 'linger.ms': 5})
p.init_transactions()
def txn(prefix, n, commit):
    p.begin_transaction()
    for i in range(n):
        p.produce(topic, key=f'{prefix}-{i}'.encode(),
                  value=(f'{prefix}-{i}-' + 'x' * 300).encode(), partition=i % 2,
                  headers=[('h', b'1'), ('h', None)])
    p.flush()
    if commit:
        p.commit_transaction()
    else:
        p.abort_transaction()
txn('a', 10, True)
txn('b', 6, False)
plain = Producer({'bootstrap.servers': broker})
for i in range(5):
    plain.produce(topic, key=None, value=f'plain-{i}'.encode(), partition=i % 2)
plain.flush()
txn('c', 10, True)
txn('d', 4, False)
"#;
    ferry_testkit::run_python_args(&env, PRODUCE, &[&env.kafka, &topic], b"");

    // Back up with `ferry backup` (kafka source → storage sink, raw).
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup").to_str().unwrap().to_string();
    ferry_ok(&[
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--to",
        &backup,
        "--snapshot",
    ]);

    // ls: every offset accounted for (10 + 6 + 5 + 10 + 4 data records and 8 markers).
    let j: Value = serde_json::from_str(&ferry_ok(&["ls", "--json", &backup])).unwrap();
    let parts = j["topics"][0]["partitions"].as_array().unwrap().clone();
    assert_eq!(parts.len(), 2, "{j}");
    let total: u64 = parts.iter().map(|p| p["records"].as_u64().unwrap()).sum();
    assert_eq!(total, 35 + 8, "{j}");
    for p in &parts {
        assert_eq!(p["first_offset"], 0);
        assert_eq!(p["next_offset"].as_u64(), p["records"].as_u64(), "{p}");
        assert!(p["segments"].as_u64().unwrap() >= 1, "{p}");
    }
    let out = ferry_ok(&["verify", &backup]);
    assert!(out.contains("all good"), "{out}");

    // Read back through the backup source: what consumers see.
    let read_back = |include_aborted: bool| -> Vec<(i32, i64, Option<String>, String, i64)> {
        let state = tempfile::tempdir().unwrap();
        let p = write(
            state.path(),
            "restore.yaml",
            &format!(
                "name: lsverify-read\nsource: {{ type: backup, uri: \"{backup}\", include_aborted: {include_aborted} }}\nsink: {{ type: stdout }}\ndelivery: {{ checkpoint: \"{}\" }}\n",
                state.path().display()
            ),
        );
        let mut out: Vec<_> = ferry_ok(&["run", &p])
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["partition"].as_i64().unwrap() as i32,
                    v["offset"].as_i64().unwrap(),
                    v["key"].as_str().map(str::to_string),
                    v["value"].as_str().unwrap().to_string(),
                    v["timestamp"].as_i64().unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    };
    let dumped = |committed: bool| -> Vec<(i32, i64, Option<String>, String, i64)> {
        ferry_testkit::dump_topic_with(&env, &env.kafka, &topic, committed)
            .into_iter()
            .map(|r| {
                (
                    r.partition,
                    r.offset,
                    r.key.map(|k| String::from_utf8(k).unwrap()),
                    String::from_utf8(r.value.unwrap()).unwrap(),
                    r.timestamp,
                )
            })
            .collect()
    };
    let committed = read_back(false);
    assert_eq!(committed.len(), 25);
    assert_eq!(committed, dumped(true));
    let all = read_back(true);
    assert_eq!(all.len(), 35);
    assert_eq!(all, dumped(false));

    // Restored into Kafka: only the committed records come back (aborted data and markers
    // are dropped), with their keys, values, headers and timestamps, partition by partition
    // in order; even a read_uncommitted consumer sees nothing of the aborted transactions.
    let restored = format!("{topic}-restored");
    ferry_ok(&[
        "restore",
        "--from",
        &backup,
        "--brokers",
        &env.kafka,
        "--rename",
        &format!("{topic}={restored}"),
    ]);
    type Seen = (
        i32,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(String, Option<Vec<u8>>)>,
        i64,
    );
    let content = |t: &str, committed: bool| -> Vec<Seen> {
        ferry_testkit::dump_topic_with(&env, &env.kafka, t, committed)
            .into_iter()
            .map(|r| (r.partition, r.key, r.value, r.headers, r.timestamp))
            .collect()
    };
    let source_committed = content(&topic, true);
    assert_eq!(source_committed.len(), 25);
    assert!(
        source_committed.iter().any(|r| r.3.len() == 2),
        "headers were produced"
    );
    assert_eq!(content(&restored, true), source_committed);
    assert_eq!(content(&restored, false), source_committed);

    // One flipped byte in a segment: exit 1, naming it.
    let seg_dir = Path::new(&backup).join(format!("topics/{topic}/0"));
    let mut segs: Vec<_> = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segs.sort();
    let mut data = std::fs::read(&segs[0]).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0x01;
    std::fs::write(&segs[0], data).unwrap();
    let o = ferry(&["verify", &backup]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    let name = segs[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        out.lines()
            .any(|l| l.starts_with("DAMAGED") && l.contains(&name) && l.contains("CRC")),
        "{out}"
    );
}
