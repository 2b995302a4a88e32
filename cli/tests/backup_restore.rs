//! Backup and restore against the real Apache Kafka broker of the dev environment
//! (`scripts/dev-env up`), compared through dumps made with an independent client
//! (librdkafka through confluent-kafka).

mod common;

use common::{client, create_topic, rt, varied_topic};
use ferry_kafka::{Client, ClientConfig, NewTopic};
use ferry_testkit::{dump_topic, py_produce_to, run_python_args, unique, DumpedRecord, KcatMsg};
use std::collections::BTreeMap;
use std::process::{Command, Output};

fn ferry(args: &[&str]) -> Output {
    common::ferry_output(args, &[])
}

fn ferry_ok(args: &[&str]) -> String {
    common::ferry_success(args, &[]).0
}

/// Headers of every batch of a partition, in offset order, read with Ferry's client.
fn batches(
    env: &ferry_testkit::TestEnv,
    topic: &str,
    partition: i32,
) -> Vec<ferry_kafka::BatchHeader> {
    let c = client(env);
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let req = [ferry_kafka::FetchRequestPartition {
            topic: topic.to_string(),
            partition,
            offset,
        }];
        let fetched = rt()
            .block_on(c.fetch(&req, &ferry_kafka::FetchOptions::default()))
            .unwrap();
        let f = &fetched[0];
        let Some(d) = f.data.as_ref() else { break };
        for item in ferry_kafka::batch::BatchIter::new(&d.bytes) {
            let (h, _) = item.unwrap();
            if h.base_offset >= offset {
                out.push(h);
            }
            offset = offset.max(h.next_offset());
        }
        if offset >= f.high_watermark {
            break;
        }
    }
    out
}

/// Records by partition without offsets: what must survive a restore exactly.
fn content(dump: &[DumpedRecord]) -> BTreeMap<i32, Vec<DumpedRecord>> {
    let mut out: BTreeMap<i32, Vec<DumpedRecord>> = BTreeMap::new();
    for r in dump {
        out.entry(r.partition).or_default().push(r.clone());
    }
    out
}

#[test]
fn snapshot_backup_and_restore_under_a_new_name_is_identical() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("varied");
    let restored = format!("{topic}-restored");
    let total = varied_topic(&env, &topic);
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap();

    ferry_ok(&[
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--to",
        uri,
        "--snapshot",
    ]);
    ferry_ok(&["verify", uri]);
    let ls: serde_json::Value = serde_json::from_str(&ferry_ok(&["ls", uri, "--json"])).unwrap();
    let parts = ls["topics"][0]["partitions"].as_array().unwrap();
    let records: u64 = parts.iter().map(|p| p["records"].as_u64().unwrap()).sum();
    assert_eq!(records as usize, total);

    ferry_ok(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--rename",
        &format!("{topic}={restored}"),
    ]);
    let original = dump_topic(&env, &env.kafka, &topic);
    let copy = dump_topic(&env, &env.kafka, &restored);
    assert_eq!(original.len(), total);
    assert_eq!(copy.len(), total);
    // A fresh topic without transactions keeps even the offsets.
    assert_eq!(content(&original), content(&copy));
    // Batches outside transactions went to Kafka as they were backed up: same records,
    // same codec (transactional ones were decoded and written anew, uncompressed).
    for p in 0..3 {
        let src: Vec<(String, i32)> = batches(&env, &topic, p)
            .into_iter()
            .filter(|h| !h.is_transactional() && !h.is_control())
            .map(|h| (format!("{:?}", h.compression().unwrap()), h.record_count))
            .collect();
        let dst: Vec<(String, i32)> = batches(&env, &restored, p)
            .into_iter()
            .map(|h| (format!("{:?}", h.compression().unwrap()), h.record_count))
            .collect();
        let mut rest = dst.iter();
        assert!(
            src.iter().all(|b| rest.any(|d| d == b)),
            "partition {p}: source batches {src:?} not all in the restored {dst:?}"
        );
        for codec in ["Gzip", "Snappy", "Lz4", "Zstd"] {
            assert!(
                dst.iter().any(|(c, _)| c == codec),
                "no {codec} batch in {dst:?}"
            );
        }
    }

    // The same backup restored a second time, elsewhere: its own state, the whole topic
    // again (it once "resumed" the first restore's checkpoint and wrote nothing).
    let again = format!("{topic}-again");
    let restore_to = |target: &str| {
        ferry_ok(&[
            "restore",
            "--from",
            uri,
            "--brokers",
            &env.kafka,
            "--topic",
            &topic,
            "--rename",
            &format!("{topic}={target}"),
        ])
    };
    restore_to(&again);
    assert_eq!(
        content(&original),
        content(&dump_topic(&env, &env.kafka, &again))
    );
    // And the first restore run again finds it done: nothing is produced twice.
    restore_to(&restored);
    assert_eq!(dump_topic(&env, &env.kafka, &restored).len(), total);
}

#[test]
fn point_in_time_restore_is_the_offsets_for_times_prefix() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("pit");
    create_topic(&env, &topic, 2, &[]);
    let base = 1_700_000_000_000i64;
    // Partition 0: in order; partition 1: a record from the future sits before older ones.
    let p0: Vec<KcatMsg> = (0..20)
        .map(|i| KcatMsg::new(Some(b"k"), Some(format!("{i}").as_bytes())).at(base + i * 1000))
        .collect();
    let p1: Vec<KcatMsg> = [0, 1, 2, 50, 3, 4, 5]
        .iter()
        .map(|s| KcatMsg::new(None, Some(format!("{s}").as_bytes())).at(base + s * 1000))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &p0, "none", false);
    py_produce_to(&env, &env.kafka, &topic, Some(1), &p1, "lz4", false);
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap();
    ferry_ok(&[
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--to",
        uri,
        "--snapshot",
    ]);

    let until = base + 4_500; // after 4 s
    let restored = format!("{topic}-pit");
    ferry_ok(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &format!("{topic}={restored}"),
        "--until",
        &until.to_string(),
    ]);
    let copy = content(&dump_topic(&env, &env.kafka, &restored));
    // Partition 0: timestamps 0..=4 s → offsets 0..5.
    assert_eq!(copy[&0].len(), 5);
    // Partition 1: the record at 50 s is the first one later than `until`: stop before it.
    let values: Vec<Vec<u8>> = copy[&1].iter().map(|r| r.value.clone().unwrap()).collect();
    assert_eq!(values, vec![b"0".to_vec(), b"1".to_vec(), b"2".to_vec()]);
}

#[test]
fn consumer_group_offsets_come_back_translated() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("groups");
    create_topic(&env, &topic, 1, &[]);
    let msgs: Vec<KcatMsg> = (0..10)
        .map(|i| KcatMsg::new(None, Some(format!("{i}").as_bytes())).at(1_700_000_000_000 + i))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "none", false);
    let group = unique("group");
    let c = client(&env);
    let mut commit = BTreeMap::new();
    commit.insert((topic.clone(), 0), 7i64);
    rt().block_on(c.offset_commit(&group, &commit)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap();
    ferry_ok(&[
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--to",
        uri,
        "--snapshot",
    ]);
    // Restore only from offset 4: the restored topic holds originals 4..10 at 0..6, so
    // the group committed at 7 must resume at 3.
    let restored = format!("{topic}-r");
    let new_group = format!("{group}-r");
    ferry_ok(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &format!("{topic}={restored}"),
        "--from-offset",
        "4",
        "--groups",
        "--group-rename",
        &format!("{group}={new_group}"),
    ]);
    let got = rt()
        .block_on(c.offset_fetch(&new_group, Some(std::slice::from_ref(&restored))))
        .unwrap();
    assert_eq!(got.get(&(restored.clone(), 0)), Some(&3));
    let copy = dump_topic(&env, &env.kafka, &restored);
    assert_eq!(copy.len(), 6);
    assert_eq!(copy[3].value.as_deref(), Some(&b"7"[..]));
}

#[test]
fn verify_catches_a_flipped_byte_and_kafka_reads_the_segment() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("verify");
    create_topic(&env, &topic, 1, &[]);
    let msgs: Vec<KcatMsg> = (0..50)
        .map(|i| {
            KcatMsg::new(Some(b"k"), Some(format!("value-{i}").as_bytes()))
                .at(1_700_000_000_000 + i)
        })
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "gzip", false);
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap();
    ferry_ok(&[
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--to",
        uri,
        "--snapshot",
    ]);
    let segs = common::files_under(dir.path(), "log");
    assert_eq!(segs.len(), 1);

    // Kafka's own tool reads a raw segment as a log segment.
    let dump = Command::new(&env.java)
        .args([
            "-cp",
            &format!("{}/*", env.kafka_libs),
            "org.apache.kafka.tools.DumpLogSegments",
            "--files",
        ])
        .arg(&segs[0])
        .arg("--print-data-log")
        .output()
        .expect("DumpLogSegments runs");
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let payloads = text.matches("payload: value-").count();
    assert_eq!(payloads, 50, "DumpLogSegments output:\n{text}");

    ferry_ok(&["verify", uri]);
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x01;
    std::fs::write(&segs[0], bytes).unwrap();
    let out = ferry(&["verify", uri]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn round_trip_through_s3() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("s3");
    create_topic(&env, &topic, 2, &[]);
    let msgs: Vec<KcatMsg> = (0..30)
        .map(|i| {
            KcatMsg::new(Some(format!("k{i}").as_bytes()), Some(b"v"))
                .header("h", None)
                .at(1_700_000_000_000 + i)
        })
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "zstd", true);
    py_produce_to(&env, &env.kafka, &topic, Some(1), &msgs, "snappy", true);
    let uri = format!(
        "s3://{}/{}?endpoint={}&region=us-east-1",
        env.s3_bucket,
        unique("backup"),
        env.s3_endpoint
    );
    // Credentials from the environment, as a user gives them.
    let aws = env.aws_vars();
    let ferry_ok = |args: &[&str]| common::ferry_success(args, &aws).0;
    ferry_ok(&[
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--to",
        &uri,
        "--snapshot",
    ]);
    ferry_ok(&["verify", &uri]);
    let restored = format!("{topic}-s3");
    ferry_ok(&[
        "restore",
        "--from",
        &uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &format!("{topic}={restored}"),
    ]);
    assert_eq!(
        content(&dump_topic(&env, &env.kafka, &topic)),
        content(&dump_topic(&env, &env.kafka, &restored))
    );
}

#[test]
fn retention_gap_is_recorded_and_restore_still_works() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("gap");
    create_topic(&env, &topic, 1, &[]);
    let batch = |from: i64| -> Vec<KcatMsg> {
        (from..from + 100)
            .map(|i| KcatMsg::new(None, Some(format!("{i}").as_bytes())).at(1_700_000_000_000 + i))
            .collect()
    };
    py_produce_to(&env, &env.kafka, &topic, Some(0), &batch(0), "none", false);
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap();
    ferry_ok(&[
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--to",
        uri,
        "--snapshot",
    ]);
    py_produce_to(
        &env,
        &env.kafka,
        &topic,
        Some(0),
        &batch(100),
        "none",
        false,
    );
    // Retention (here DeleteRecords) removes 100..150 before the next backup reads them.
    let c = client(&env);
    rt().block_on(c.delete_records(&topic, &BTreeMap::from([(0, 150i64)])))
        .expect("DeleteRecords");
    let (_, stderr) = common::ferry_success(
        &[
            "backup",
            "--brokers",
            &env.kafka,
            "--topic",
            &topic,
            "--to",
            uri,
            "--snapshot",
        ],
        &[],
    );
    // The alarm is loud: an error naming the lost offsets and what to check.
    assert!(
        stderr.contains("ERROR")
            && stderr.contains("records lost before they were backed up: offsets 100..150")
            && stderr.contains("retention.ms"),
        "{stderr}"
    );

    let ls: serde_json::Value = serde_json::from_str(&ferry_ok(&["ls", uri, "--json"])).unwrap();
    let p = &ls["topics"][0]["partitions"][0];
    assert_eq!(p["records"], 150);
    assert_eq!(p["next_offset"], 200);
    let gaps = p["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{ls}");
    assert_eq!(
        (gaps[0]["from"].as_i64(), gaps[0]["to"].as_i64()),
        (Some(100), Some(150))
    );
    ferry_ok(&["verify", uri]);

    let restored = format!("{topic}-r");
    ferry_ok(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &format!("{topic}={restored}"),
    ]);
    let values: Vec<i64> = dump_topic(&env, &env.kafka, &restored)
        .iter()
        .map(|r| {
            String::from_utf8(r.value.clone().unwrap())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let expected: Vec<i64> = (0..100).chain(150..200).collect();
    assert_eq!(values, expected);
}

#[test]
fn tansu_backup_and_restore_smoke() {
    // Tansu is a second, independent broker implementation (fast to start, in memory).
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("tansu");
    let c = rt()
        .block_on(Client::connect(ClientConfig::new(std::slice::from_ref(
            &env.tansu,
        ))))
        .expect("connect to Tansu");
    rt().block_on(c.create_topics(&[NewTopic {
        name: topic.clone(),
        partitions: 2,
        replication_factor: 1,
        configs: BTreeMap::new(),
    }]))
    .expect("create topic on Tansu");
    let msgs: Vec<KcatMsg> = (0..25)
        .map(|i| {
            KcatMsg::new(
                Some(format!("k{i}").as_bytes()),
                Some(format!("v{i}").as_bytes()),
            )
            .header("h", None)
            .at(1_700_000_000_000 + i)
        })
        .collect();
    py_produce_to(&env, &env.tansu, &topic, Some(0), &msgs, "none", false);
    py_produce_to(
        &env,
        &env.tansu,
        &topic,
        Some(1),
        &msgs[..10],
        "gzip",
        false,
    );
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap();
    ferry_ok(&[
        "backup",
        "--brokers",
        &env.tansu,
        "--topic",
        &topic,
        "--to",
        uri,
        "--snapshot",
    ]);
    let restored = format!("{topic}-r");
    ferry_ok(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.tansu,
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
    let strip = |d: Vec<DumpedRecord>| -> Vec<Seen> {
        d.into_iter()
            .map(|r| (r.partition, r.key, r.value, r.headers, r.timestamp))
            .collect()
    };
    let original = strip(dump_topic(&env, &env.tansu, &topic));
    assert_eq!(original.len(), 35);
    // What was produced, independently of any reader: keys, values, the null-valued header
    // and the timestamps given.
    for (i, r) in original.iter().filter(|r| r.0 == 0).enumerate() {
        assert_eq!(r.1.as_deref(), Some(format!("k{i}").as_bytes()));
        assert_eq!(r.2.as_deref(), Some(format!("v{i}").as_bytes()));
        assert_eq!(r.3, vec![("h".to_string(), None)]);
        assert_eq!(r.4, 1_700_000_000_000 + i as i64);
    }
    assert_eq!(original, strip(dump_topic(&env, &env.tansu, &restored)));
}

#[test]
fn compacted_topic_backs_up_and_restores() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("compacted");
    create_topic(
        &env,
        &topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "100"),
            ("min.compaction.lag.ms", "0"),
        ],
    );
    let round = |v: &str| -> Vec<KcatMsg> {
        (0..10)
            .map(|k| KcatMsg::new(Some(format!("k{k}").as_bytes()), Some(v.as_bytes())))
            .collect()
    };
    py_produce_to(
        &env,
        &env.kafka,
        &topic,
        Some(0),
        &round("old"),
        "none",
        false,
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    py_produce_to(
        &env,
        &env.kafka,
        &topic,
        Some(0),
        &round("new"),
        "none",
        false,
    );
    // Keep rolling segments until the cleaner has removed the superseded records (Kafka rolls
    // segments by record time, hence current timestamps here).
    let mut compacted = false;
    for i in 0..60 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let roll = [KcatMsg::new(
            Some(format!("roll{i}").as_bytes()),
            Some(b"x"),
        )];
        py_produce_to(&env, &env.kafka, &topic, Some(0), &roll, "none", false);
        if dump_topic(&env, &env.kafka, &topic)
            .iter()
            .all(|r| r.value.as_deref() != Some(&b"old"[..]))
        {
            compacted = true;
            break;
        }
    }
    assert!(
        compacted,
        "the broker did not compact the topic within 30 s"
    );
    let original = dump_topic(&env, &env.kafka, &topic);
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap();
    ferry_ok(&[
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--to",
        uri,
        "--snapshot",
    ]);
    ferry_ok(&["verify", uri]);
    let ls: serde_json::Value = serde_json::from_str(&ferry_ok(&["ls", uri, "--json"])).unwrap();
    let p = &ls["topics"][0]["partitions"][0];
    // The span covers every offset (compaction holes included); the records are what is left.
    assert_eq!(p["first_offset"], 0);
    assert_eq!(
        p["next_offset"].as_i64().unwrap(),
        original.last().unwrap().offset + 1
    );
    assert_eq!(p["records"].as_u64().unwrap() as usize, original.len());
    // Compaction holes are not retention gaps: every offset of the span was read.
    assert_eq!(
        p["gaps"]
            .as_array()
            .expect("ls lists the gaps of every partition"),
        &Vec::<serde_json::Value>::new(),
        "no gap expected in a compacted topic: {ls}"
    );
    assert!(
        original.first().unwrap().offset > 0,
        "offsets below the first kept record were compacted away"
    );

    let restored = format!("{topic}-r");
    ferry_ok(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &format!("{topic}={restored}"),
    ]);
    let copy = dump_topic(&env, &env.kafka, &restored);
    type Kv = (Option<Vec<u8>>, Option<Vec<u8>>);
    let kv = |d: &[DumpedRecord]| -> Vec<Kv> {
        d.iter().map(|r| (r.key.clone(), r.value.clone())).collect()
    };
    assert_eq!(kv(&copy), kv(&original));
}

/// Runs ferry under a pseudo-terminal (`script`), where it shows its progress line, and
/// returns what the terminal got.
fn ferry_on_a_terminal(args: &[&str]) -> String {
    let cmd = std::iter::once(env!("CARGO_BIN_EXE_ferry"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env("FERRY_LOG", "warn")
        .output()
        .expect("script (util-linux) runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "ferry {args:?} failed:\n{text}");
    text
}

#[test]
fn progress_line_knows_the_total_of_a_snapshot_and_of_a_restore() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("progress");
    create_topic(&env, &topic, 2, &[]);
    for p in 0..2 {
        let msgs: Vec<KcatMsg> = (0..150)
            .map(|i| KcatMsg::new(None, Some(format!("v{i}").as_bytes())))
            .collect();
        py_produce_to(&env, &env.kafka, &topic, Some(p), &msgs, "none", false);
    }
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap();
    let backup = ferry_on_a_terminal(&[
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--to",
        uri,
        "--snapshot",
    ]);
    // The last line: a full bar, every record of the known total, an ETA of nothing left.
    assert!(
        backup.contains("[########################] 100% 300/300 records")
            && backup.contains("ETA 0s"),
        "{backup}"
    );
    let restore = ferry_on_a_terminal(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &format!("{topic}={topic}-copy"),
    ]);
    assert!(
        restore.contains("100% 300/300 records") && restore.contains("ETA 0s"),
        "{restore}"
    );
    assert_eq!(
        dump_topic(&env, &env.kafka, &format!("{topic}-copy")).len(),
        300
    );
}

#[test]
fn log_append_time_batches_are_rewritten_with_their_append_times() {
    // Batches stamped by the broker cannot go out as they were (their records' own times
    // are not the ones consumers saw): the kafka sink decodes them and writes each record
    // with the append time as its CreateTime.
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("append-time");
    create_topic(
        &env,
        &topic,
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let msgs: Vec<KcatMsg> = (0..50)
        .map(|i| KcatMsg::new(Some(b"k"), Some(format!("v{i}").as_bytes())).at(1_000 + i))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "lz4", false);
    let original = dump_topic(&env, &env.kafka, &topic);
    assert!(original
        .iter()
        .all(|r| r.timestamp_type == "log_append" && r.timestamp > 1_000_000));
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap();
    ferry_ok(&[
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--to",
        uri,
        "--snapshot",
    ]);
    // A CreateTime target keeps what the restore writes.
    let restored = format!("{topic}-create-time");
    create_topic(
        &env,
        &restored,
        1,
        &[("message.timestamp.type", "CreateTime")],
    );
    ferry_ok(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &format!("{topic}={restored}"),
    ]);
    let copy = dump_topic(&env, &env.kafka, &restored);
    assert_eq!(copy.len(), original.len());
    for (o, c) in original.iter().zip(&copy) {
        assert_eq!(
            (c.timestamp, c.timestamp_type.as_str()),
            (o.timestamp, "create")
        );
        assert_eq!((&c.key, &c.value, c.offset), (&o.key, &o.value, o.offset));
    }
}

/// A backup and a restore through one of the dev broker's secured listeners (`brokers`),
/// the connection settings given as a YAML line (`sasl: {…}` or `tls: {…}`): every
/// request, metadata included, goes over those connections. With the `refused` settings
/// the backup fails with an error naming one of `refusal_words`, before anything is written.
fn secured_round_trip(brokers: &str, settings: &str, refused: &str, refusal_words: &[&str]) {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("secured");
    create_topic(&env, &topic, 2, &[]);
    for p in 0..2 {
        let msgs: Vec<KcatMsg> = (0..40)
            .map(|i| {
                KcatMsg::new(Some(format!("k{i}").as_bytes()), Some(b"v"))
                    .header("h", None)
                    .at(1_764_547_200_000 + i)
            })
            .collect();
        py_produce_to(&env, &env.kafka, &topic, Some(p), &msgs, "zstd", false);
    }
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    let backup_yaml = |name: &str, settings: &str| {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "name: {name}\nsource:\n  type: kafka\n  brokers: [\"{brokers}\"]\n  topics: [\"{topic}\"]\n  \
                 stop: high_watermark\n  {settings}\nsink:\n  type: storage\n  uri: \"{}\"\n",
                backup.display()
            ),
        )
        .unwrap();
        path
    };
    let wrong = ferry(&["run", backup_yaml("refused", refused).to_str().unwrap()]);
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr).to_lowercase();
    assert!(refusal_words.iter().any(|w| err.contains(w)), "{err}");
    // A refused login writes nothing at all: not even the backup's folder or descriptor.
    assert!(
        !backup.exists(),
        "a refused backup left {}",
        backup.display()
    );

    ferry_ok(&[
        "run",
        backup_yaml("secured-backup", settings).to_str().unwrap(),
    ]);
    let restored = format!("{topic}-restored");
    let restore_yaml = dir.path().join("restore.yaml");
    let write_restore = |path: &std::path::Path, settings: &str, state: &str| {
        std::fs::write(
            path,
            format!(
                "name: secured-restore\nsource:\n  type: backup\n  uri: \"{}\"\ntransforms:\n  - type: rename_topic\n    \
                 map: {{\"{topic}\": \"{restored}\"}}\nsink:\n  type: kafka\n  brokers: [\"{brokers}\"]\n  {settings}\n  \
                 state: \"{}\"\n",
                backup.display(),
                dir.path().join(state).display()
            ),
        )
        .unwrap();
    };
    // A refused login on the restore side writes nothing either: no state, no topic.
    let refused_restore = dir.path().join("refused-restore.yaml");
    write_restore(&refused_restore, refused, "state-refused");
    let wrong = ferry(&["run", refused_restore.to_str().unwrap()]);
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr).to_lowercase();
    assert!(refusal_words.iter().any(|w| err.contains(w)), "{err}");
    assert!(!dir.path().join("state-refused").exists());
    let md = rt().block_on(client(&env).metadata(None)).unwrap();
    assert!(
        md.topic(&restored).is_none(),
        "a refused restore created {restored}"
    );

    write_restore(&restore_yaml, settings, "state");
    ferry_ok(&["run", restore_yaml.to_str().unwrap()]);
    let original = dump_topic(&env, &env.kafka, &topic);
    assert_eq!(original.len(), 80);
    assert_eq!(
        content(&original),
        content(&dump_topic(&env, &env.kafka, &restored))
    );
}

/// [`secured_round_trip`] through the SASL_PLAINTEXT listener as `user`; a wrong password
/// is refused.
fn sasl_round_trip(mechanism: &str, user: &str, password: &str) {
    let sasl = |password: &str| {
        format!("sasl: {{mechanism: {mechanism}, username: {user}, password: \"{password}\"}}")
    };
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    secured_round_trip(
        &env.kafka_sasl,
        &sasl(password),
        &sasl("nope"),
        &["sasl", "authentication"],
    );
}

#[test]
fn backup_and_restore_through_sasl_plain() {
    sasl_round_trip("PLAIN", "ferry", "ferry-secret");
}

#[test]
fn backup_and_restore_through_sasl_scram() {
    // SCRAM users live in the cluster: made here through the Admin API (librdkafka).
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let user = unique("scram-user");
    run_python_args(
        &env,
        r#"
import sys
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)
a = AdminClient({"bootstrap.servers": sys.argv[1]})
for m in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
    up = UserScramCredentialUpsertion(sys.argv[2], ScramCredentialInfo(m, 4096), b"scram-secret")
    for f in a.alter_user_scram_credentials([up]).values():
        f.result()
# The broker learns new credentials from the metadata log a moment later: wait for them.
import time
for m in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
    deadline = time.time() + 20
    while True:
        c = AdminClient({"bootstrap.servers": sys.argv[3], "security.protocol": "SASL_PLAINTEXT",
                         "sasl.mechanisms": m, "sasl.username": sys.argv[2],
                         "sasl.password": "scram-secret"})
        try:
            c.list_topics(timeout=2)
            break
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
"#,
        &[&env.kafka, &user, &env.kafka_sasl],
        b"",
    );
    sasl_round_trip("SCRAM-SHA-256", &user, "scram-secret");
    sasl_round_trip("SCRAM-SHA-512", &user, "scram-secret");
}

#[test]
fn backup_and_restore_through_tls() {
    // The SSL listener's certificate is signed by the dev CA: trusted with `ca_file`; the
    // system roots alone do not know it, and the connection is refused.
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    secured_round_trip(
        &env.kafka_tls,
        &format!("tls: {{ca_file: \"{}\"}}", env.kafka_tls_ca),
        "tls: {}",
        &["certificate", "tls"],
    );
}

#[test]
fn cli_flags_reach_secured_listeners() {
    // `ferry topics` and `ferry backup` over TLS with the dev CA, `ferry restore` over SASL
    // PLAIN with the password from FERRY_SASL_PASSWORD (not on the command line).
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("cli-secured");
    create_topic(&env, &topic, 1, &[]);
    let msgs: Vec<KcatMsg> = (0..25)
        .map(|i| KcatMsg::new(None, Some(format!("v{i}").as_bytes())).at(1_764_547_200_000 + i))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "none", false);
    let tls = ["--tls-ca-file", env.kafka_tls_ca.as_str()];
    let listed = ferry_ok(
        &[
            &["topics", "--brokers", env.kafka_tls.as_str(), "--json"][..],
            &tls[..],
        ]
        .concat(),
    );
    assert!(listed.contains(&topic), "{listed}");
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap();
    ferry_ok(
        &[
            &[
                "backup",
                "--brokers",
                env.kafka_tls.as_str(),
                "--topic",
                &topic,
            ][..],
            &["--to", uri, "--snapshot"][..],
            &tls[..],
        ]
        .concat(),
    );
    let restored = format!("{topic}-restored");
    let restore = [
        "restore",
        "--from",
        uri,
        "--brokers",
        env.kafka_sasl.as_str(),
        "--rename",
        &format!("{topic}={restored}"),
        "--sasl-mechanism",
        "PLAIN",
        "--sasl-username",
        "ferry",
    ];
    // The printed pipeline refers to the password, it does not show it.
    let printed = common::ferry_success(
        &[&restore[..], &["--print-pipeline"][..]].concat(),
        &[("FERRY_SASL_PASSWORD", "ferry-secret")],
    )
    .0;
    assert!(
        printed.contains("${FERRY_SASL_PASSWORD}") && !printed.contains("ferry-secret"),
        "{printed}"
    );
    common::ferry_success(&restore, &[("FERRY_SASL_PASSWORD", "ferry-secret")]);
    assert_eq!(dump_topic(&env, &env.kafka, &restored).len(), 25);
}

/// Every file under `dir` with its bytes, sorted by path: what a reading command may not
/// change.
fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((name, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A restore only reads its backup: its checkpoint and offset map go to the local state
/// folder (`FERRY_STATE_DIR` here), the backup's files stay byte for byte, and the same
/// restore run again resumes from that state (nothing written twice). A backup that fails
/// before its first record (the topic does not exist) leaves no folder behind.
#[test]
fn restore_keeps_its_state_locally_and_a_failed_backup_leaves_nothing() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("readonly");
    create_topic(&env, &topic, 2, &[]);
    let msgs: Vec<KcatMsg> = (0..20)
        .map(|i| KcatMsg::new(Some(format!("k{i}").as_bytes()), Some(b"v")))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "none", false);
    py_produce_to(&env, &env.kafka, &topic, Some(1), &msgs, "none", false);
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    let state = dir.path().join("state");
    let uri = backup.to_str().unwrap();
    let vars = [("FERRY_STATE_DIR", state.to_str().unwrap())];
    common::ferry_success(
        &[
            "backup",
            "--brokers",
            &env.kafka,
            "--topic",
            &topic,
            "--to",
            uri,
            "--snapshot",
        ],
        &vars,
    );
    let before = files(&backup);
    let restored = format!("{topic}-copy");
    let restore = [
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &format!("{topic}={restored}"),
    ];
    common::ferry_success(&restore, &vars);
    assert!(files(&backup) == before, "the restore changed its backup");
    let kept = files(&state);
    assert!(
        kept.iter().any(|(name, _)| name.contains("checkpoints/")),
        "no checkpoint in the state folder: {:?}",
        kept.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    assert_eq!(dump_topic(&env, &env.kafka, &restored).len(), 40);
    common::ferry_success(&restore, &vars);
    assert_eq!(
        dump_topic(&env, &env.kafka, &restored).len(),
        40,
        "the second run resumed from the local state"
    );

    let nothing = dir.path().join("never");
    let o = common::ferry_output(
        &[
            "backup",
            "--brokers",
            &env.kafka,
            "--topic",
            &unique("does-not-exist"),
            "--to",
            nothing.to_str().unwrap(),
            "--snapshot",
        ],
        &vars,
    );
    assert!(!o.status.success(), "a backup of a missing topic must fail");
    assert!(
        !nothing.exists(),
        "a failed backup left {:?}",
        files(&nothing).iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
}

#[test]
fn recompressed_raw_segments_are_smaller_restore_byte_for_byte_and_kafka_reads_them() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("recompress");
    create_topic(&env, &topic, 2, &[("retention.ms", "-1")]);
    let msgs: Vec<KcatMsg> = (0..2000)
        .map(|i| {
            let v = format!(
                "{{\"order\":{i},\"customer\":\"customer-{}\",\"status\":\"shipped\",\"items\":[{{\"sku\":\"sku-{}\",\"qty\":{}}}]}}",
                i % 97,
                i % 13,
                i % 5
            );
            KcatMsg::new(Some(format!("k{i}").as_bytes()), Some(v.as_bytes()))
                .header("h", Some(b"v"))
                .at(1_764_547_200_000 + i)
        })
        .collect();
    py_produce_to(&env, &env.kafka, &topic, None, &msgs, "none", true);
    let source = dump_topic(&env, &env.kafka, &topic);
    let dir = tempfile::tempdir().unwrap();
    let (plain, zstd) = (dir.path().join("plain"), dir.path().join("zstd"));
    for (to, extra) in [(&plain, None), (&zstd, Some("zstd"))] {
        let mut args = vec![
            "backup",
            "--brokers",
            &env.kafka,
            "--topic",
            &topic,
            "--to",
            to.to_str().unwrap(),
            "--snapshot",
        ];
        if let Some(codec) = extra {
            args.extend(["--recompress", codec]);
        }
        ferry_ok(&args);
        ferry_ok(&["verify", to.to_str().unwrap()]);
    }
    let size = |d: &std::path::Path| -> u64 {
        common::files_under(d, "log")
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum()
    };
    let (p, z) = (size(&plain), size(&zstd));
    assert!(z * 3 < p, "recompressed {z} bytes vs {p} stored as fetched");
    // `ferry ls` shows both sizes: stored, and what the records took in Kafka (the plain
    // backup's segments are the fetched batches, so that is what they add up to).
    let listing = |d: &std::path::Path| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["ls", d.to_str().unwrap(), "--json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let sum = |v: &serde_json::Value, field: &str| -> u64 {
        v["topics"][0]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[field].as_u64().expect(field))
            .sum()
    };
    let (lp, lz) = (listing(&plain), listing(&zstd));
    assert_eq!((sum(&lp, "bytes"), sum(&lp, "source_bytes")), (p, p));
    assert_eq!((sum(&lz, "bytes"), sum(&lz, "source_bytes")), (z, p));
    let table = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["ls", zstd.to_str().unwrap()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("IN KAFKA") && table.contains(" in Kafka)"),
        "{table}"
    );

    // Kafka's own tool reads the recompressed segments, codec zstd.
    let seg = &common::files_under(&zstd, "log")[0];
    let dump = Command::new(&env.java)
        .args([
            "-cp",
            &format!("{}/*", env.kafka_libs),
            "org.apache.kafka.tools.DumpLogSegments",
            "--files",
        ])
        .arg(seg)
        .arg("--print-data-log")
        .output()
        .expect("DumpLogSegments runs");
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(
        text.contains("compresscodec: zstd") || text.contains("compresscodec: ZSTD"),
        "{text}"
    );
    assert!(text.contains("\"status\":\"shipped\""), "{text}");

    let target = format!("{topic}-restored");
    ferry_ok(&[
        "restore",
        "--from",
        zstd.to_str().unwrap(),
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--rename",
        &format!("{topic}={target}"),
    ]);
    let mut restored = dump_topic(&env, &env.kafka, &target);
    let mut want = source.clone();
    restored.sort_by_key(|r| (r.partition, r.offset));
    want.sort_by_key(|r| (r.partition, r.offset));
    assert!(
        restored == want,
        "the restore from recompressed segments equals the topic"
    );
}

/// The number after `field=` in a log line.
fn log_field(line: &str, field: &str) -> Option<u64> {
    let at = line.find(&format!(" {field}="))? + field.len() + 2;
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// A snapshot backup of a 12-partition topic whose partitions need different numbers of
/// fetch rounds uses one incremental fetch session (KIP-227) against Kafka 4.4: one full
/// request, then requests naming only the partitions that moved on; the backup and its
/// restore stay exact.
#[test]
fn a_multi_partition_backup_fetches_in_an_incremental_session() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("sessions");
    let restored = format!("{topic}-restored");
    create_topic(&env, &topic, 12, &[]);
    let c = client(&env);
    let producer = c
        .producer(ferry_kafka::ProducerConfig::default())
        .expect("producer");
    // Partitions 0..4 get 8 batches of 25 records, the others one. With a 1 KiB partition
    // limit a fetch returns one batch per partition (Kafka hands an oversized batch only to
    // the first partition with data in a response): the busy four need 8 rounds or more
    // while the rest are done early.
    let rec = |p: i32, round: usize, i: usize| ferry_kafka::ProduceRecord {
        key: Some(bytes::Bytes::from(format!("p{p}-r{round}-{i}"))),
        value: Some(bytes::Bytes::from(vec![b'x'; 1000])),
        headers: vec![],
        timestamp: 1_764_547_200_000 + i as i64,
    };
    let mut total = 0;
    for round in 0..8 {
        let batches: Vec<ferry_kafka::ProduceBatch> = (0..12)
            .filter(|&p| p < 4 || round == 0)
            .map(|p| ferry_kafka::ProduceBatch {
                topic: topic.clone(),
                partition: p,
                records: (0..25).map(|i| rec(p, round, i)).collect(),
            })
            .collect();
        total += batches.len() * 25;
        rt().block_on(producer.produce(batches)).expect("produce");
    }
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    let yaml = dir.path().join("backup.yaml");
    std::fs::write(
        &yaml,
        format!(
            "name: sessions\nsource:\n  type: kafka\n  brokers: [\"{}\"]\n  topics: [\"{topic}\"]\n  \
             stop: high_watermark\n  partition_max_bytes: 1KiB\nsink:\n  type: storage\n  uri: \"{}\"\n",
            env.kafka,
            backup.display()
        ),
    )
    .unwrap();
    let (_, stderr) = common::ferry_success(&["run", yaml.to_str().unwrap()], &[]);
    let line = stderr
        .lines()
        .find(|l| l.contains("kafka source finished"))
        .unwrap_or_else(|| panic!("no fetch summary in the log:\n{stderr}"));
    eprintln!("{line}");
    let field = |f: &str| log_field(line, f).unwrap_or_else(|| panic!("no {f} in {line}"));
    assert_eq!(field("full"), 1, "{line}");
    assert_eq!(field("session_resets"), 0, "{line}");
    assert_eq!(field("sessionless"), 0, "{line}");
    let incremental = field("incremental");
    assert!(incremental >= 7, "{line}");
    // Without a session every request names every partition not yet done: 12 in the first
    // round, 4 in each later one. With one, a later request names only those that moved.
    let requests = 1 + incremental;
    assert!(
        field("partitions_sent") <= 12 + 4 * (requests - 1),
        "{line}"
    );

    let uri = backup.to_str().unwrap();
    ferry_ok(&["verify", uri]);
    let ls: serde_json::Value = serde_json::from_str(&ferry_ok(&["ls", uri, "--json"])).unwrap();
    let records: u64 = ls["topics"][0]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["records"].as_u64().unwrap())
        .sum();
    assert_eq!(records as usize, total);
    ferry_ok(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--rename",
        &format!("{topic}={restored}"),
    ]);
    let original = dump_topic(&env, &env.kafka, &topic);
    assert_eq!(original.len(), total);
    assert_eq!(
        content(&original),
        content(&dump_topic(&env, &env.kafka, &restored))
    );
}

/// A restore of 100 topics creates them up front in batched CreateTopics requests (one
/// here), not one request per topic as each topic's first batch arrives; every record lands.
#[test]
fn a_restore_of_100_topics_creates_them_in_batched_requests() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let prefix = unique("many");
    let names: Vec<String> = (0..100).map(|i| format!("{prefix}-{i:03}")).collect();
    let c = client(&env);
    let configs: BTreeMap<String, String> = common::ANY_TIMESTAMP
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let new: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic {
            name: n.clone(),
            partitions: 2,
            replication_factor: 1,
            configs: configs.clone(),
        })
        .collect();
    rt().block_on(c.create_topics(&new))
        .expect("create source topics");
    let producer = c
        .producer(ferry_kafka::ProducerConfig::default())
        .expect("producer");
    let batches: Vec<ferry_kafka::ProduceBatch> = names
        .iter()
        .flat_map(|n| {
            (0..2).map(move |p| ferry_kafka::ProduceBatch {
                topic: n.clone(),
                partition: p,
                records: vec![ferry_kafka::ProduceRecord {
                    key: Some(bytes::Bytes::from(format!("{n}/{p}"))),
                    value: Some(bytes::Bytes::from_static(b"v")),
                    headers: vec![],
                    timestamp: 1_764_547_200_000,
                }],
            })
        })
        .collect();
    // Leaders of fresh topics take a moment: retry until the records are in.
    let mut produced = false;
    for _ in 0..50 {
        if rt().block_on(producer.produce(batches.clone())).is_ok() {
            produced = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(produced, "could not produce to the source topics");

    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("backup");
    let uri = uri.to_str().unwrap();
    ferry_ok(&[
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        &format!("/{prefix}-.*/"),
        "--to",
        uri,
        "--snapshot",
    ]);
    let map: Vec<String> = names
        .iter()
        .map(|n| format!("\"{n}\": \"{n}-r\""))
        .collect();
    let yaml = dir.path().join("restore.yaml");
    std::fs::write(
        &yaml,
        format!(
            "name: many-restore\nsource:\n  type: backup\n  uri: \"{uri}\"\ntransforms:\n  - type: rename_topic\n    \
             map: {{{}}}\nsink:\n  type: kafka\n  brokers: [\"{}\"]\n  state: \"{}\"\n",
            map.join(", "),
            env.kafka,
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let (_, stderr) = common::ferry_success(&["run", yaml.to_str().unwrap()], &[]);
    let creates: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("CreateTopics request"))
        .collect();
    assert_eq!(
        creates.len(),
        1,
        "CreateTopics requests: {creates:?}\n{stderr}"
    );
    assert_eq!(
        log_field(creates[0], "created"),
        Some(100),
        "{}",
        creates[0]
    );
    assert!(
        !stderr.contains("created topic on the target"),
        "a topic was created on its own:\n{stderr}"
    );
    let md = rt().block_on(c.metadata(None)).unwrap();
    for n in &names {
        let t = md
            .topic(&format!("{n}-r"))
            .unwrap_or_else(|| panic!("{n}-r missing"));
        assert_eq!(t.partitions.len(), 2);
        let ends = rt()
            .block_on(c.list_offsets(&t.name, &[0, 1], ferry_kafka::OffsetSpec::Latest))
            .unwrap();
        assert_eq!(ends.values().sum::<i64>(), 2, "{}", t.name);
    }
}

/// A topic deleted and created again between two runs of a backup is not taken for a
/// truncated log (which a running backup rides out, `faults_cluster.rs`): the resumed run
/// refuses, naming both possibilities, and writes nothing more.
#[test]
fn a_topic_recreated_between_runs_is_refused() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("recreated");
    create_topic(&env, &topic, 1, &[]);
    let batch = |n: i64| -> Vec<KcatMsg> {
        (0..n)
            .map(|i| KcatMsg::new(None, Some(format!("{i}").as_bytes())))
            .collect()
    };
    py_produce_to(
        &env,
        &env.kafka,
        &topic,
        Some(0),
        &batch(100),
        "none",
        false,
    );
    let dir = tempfile::tempdir().expect("dir");
    let uri = dir.path().to_str().expect("path");
    let args = [
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--to",
        uri,
        "--snapshot",
    ];
    ferry_ok(&args);
    let c = client(&env);
    rt().block_on(c.delete_topics(std::slice::from_ref(&topic)))
        .expect("delete topic");
    // Deletion completes in the background: create again until the broker takes it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let created = rt().block_on(c.create_topics(&[NewTopic {
            name: topic.clone(),
            partitions: 1,
            replication_factor: 1,
            configs: BTreeMap::new(),
        }]));
        if created.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{topic} not created again: {created:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    py_produce_to(&env, &env.kafka, &topic, Some(0), &batch(10), "none", false);
    let out = common::ferry_output(&args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("beyond the log end 10") && stderr.contains("deleted and created again"),
        "{stderr}"
    );
    let ls: serde_json::Value = serde_json::from_str(&ferry_ok(&["ls", uri, "--json"])).unwrap();
    assert_eq!(ls["topics"][0]["partitions"][0]["records"], 100, "{ls}");
}
