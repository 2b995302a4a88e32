//! A restore never silently writes into data it did not write: each refusal against the
//! dev environment's Apache Kafka (exit code, message, the target's offsets unchanged as an
//! independent client — librdkafka through confluent-kafka — sees them), a restore killed
//! and typed again in another order (nothing written twice), LogAppendTime topics and
//! damaged segments.

mod common;

use common::{create_topic, ferry_output};
use ferry_testkit::{dump_topic, py_produce_to, run_python_args, unique, KcatMsg, TestEnv};
use std::process::Output;

/// Low and high watermark of every partition, read with confluent-kafka.
fn watermarks(env: &TestEnv, topic: &str) -> Vec<(i64, i64)> {
    let script = r#"
import sys
from confluent_kafka import Consumer, TopicPartition
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "ferry-watermarks"})
md = c.list_topics(sys.argv[2], timeout=10)
t = md.topics[sys.argv[2]]
if t.error is not None:
    print("absent")
else:
    for p in sorted(t.partitions):
        lo, hi = c.get_watermark_offsets(TopicPartition(sys.argv[2], p), timeout=10)
        print(lo, hi)
"#;
    let out = run_python_args(env, script, &[&env.kafka, topic], b"");
    String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| *l != "absent")
        .map(|l| {
            let mut it = l.split_whitespace().map(|n| n.parse::<i64>().unwrap());
            (it.next().unwrap(), it.next().unwrap())
        })
        .collect()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ferry(args: &[&str]) -> Output {
    ferry_output(args, &[])
}

fn assert_refused(out: &Output, words: &[&str]) {
    let t = text(out);
    assert!(!out.status.success(), "expected a refusal:\n{t}");
    for w in words {
        assert!(t.contains(w), "missing {w:?} in:\n{t}");
    }
}

/// A topic of `partitions` partitions with `per_partition` records each, backed up to a
/// fresh folder; returns the folder.
fn backed_up(env: &TestEnv, topic: &str, partitions: i32, per_partition: i64) -> tempfile::TempDir {
    create_topic(env, topic, partitions, &[]);
    for p in 0..partitions {
        let msgs: Vec<KcatMsg> = (0..per_partition)
            .map(|i| {
                KcatMsg::new(
                    Some(format!("k{i}").as_bytes()),
                    Some(format!("p{p}-v{i}").as_bytes()),
                )
                .at(1_764_547_200_000 + i)
            })
            .collect();
        py_produce_to(env, &env.kafka, topic, Some(p), &msgs, "lz4", false);
    }
    let dir = tempfile::tempdir().unwrap();
    common::snapshot_backup(env, topic, dir.path().to_str().unwrap());
    dir
}

#[test]
fn restoring_over_the_live_topic_is_refused_and_allowed_only_on_purpose() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("live");
    let dir = backed_up(&env, &topic, 2, 30);
    let uri = dir.path().to_str().unwrap();
    let before = watermarks(&env, &topic);
    assert_eq!(before, vec![(0, 30), (0, 30)]);

    // No --rename: the target is the live source topic.
    let out = ferry(&["restore", "--from", uri, "--brokers", &env.kafka]);
    assert_refused(
        &out,
        &[
            &format!("target topic '{topic}'"),
            "60 record(s)",
            "partition 0: 30, partition 1: 30",
            "--allow-existing",
            "nothing was written",
        ],
    );
    assert_eq!(watermarks(&env, &topic), before);

    // The dry run shows the target as it is, and the same refusal.
    let out = ferry(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--dry-run",
    ]);
    assert_refused(&out, &["REFUSED: holds 60 record(s)", "would be refused"]);
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = plan.lines().find(|l| l.starts_with(&topic)).unwrap();
    assert!(
        row.contains(" yes ") && row.contains(" 2 ") && row.contains(" 60 "),
        "{row}"
    );

    // With the flag the plan says it appends, and the restore does.
    let out = ferry(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--dry-run",
        "--allow-existing",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("appending to 60 existing record(s)"),
        "{}",
        text(&out)
    );
    assert_eq!(watermarks(&env, &topic), before);
    let out = ferry(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--allow-existing",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(watermarks(&env, &topic), vec![(0, 60), (0, 60)]);
}

#[test]
fn too_few_target_partitions_are_refused_naming_both_counts() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("narrow");
    let dir = backed_up(&env, &topic, 3, 5);
    let target = format!("{topic}-one");
    create_topic(&env, &target, 1, &[]);
    let out = ferry(&[
        "restore",
        "--from",
        dir.path().to_str().unwrap(),
        "--brokers",
        &env.kafka,
        "--rename",
        &format!("{topic}={target}"),
    ]);
    assert_refused(
        &out,
        &[
            "has 1 partition(s)",
            "backup's topic has 3",
            "--partitioning murmur2",
        ],
    );
    assert_eq!(watermarks(&env, &target), vec![(0, 0)]);
}

#[test]
fn topic_and_rename_names_the_backup_does_not_hold_are_refused() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("names");
    let dir = backed_up(&env, &topic, 1, 3);
    let uri = dir.path().to_str().unwrap();
    let target = format!("{topic}-copy");
    let out = ferry(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &format!("nope={target}"),
    ]);
    assert_refused(&out, &["--rename 'nope=", "holds no topic 'nope'", &topic]);
    let out = ferry(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--topic",
        "nope",
        "--rename",
        &format!("{topic}={target}"),
    ]);
    assert_refused(&out, &["--topic 'nope'", &format!("it holds: {topic}")]);
    // Nothing was created under the new name either.
    assert!(watermarks(&env, &target).is_empty());
}

#[test]
fn a_restore_killed_and_typed_again_differently_writes_nothing_twice() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("retyped");
    let dir = backed_up(&env, &topic, 2, 20_000);
    let uri = dir.path().to_str().unwrap().to_string();
    let target = format!("{topic}-copy");
    let port = env.kafka.rsplit_once(':').unwrap().1;
    let two_ways = format!("127.0.0.1:{port},localhost:{port}");
    let other_way = format!("localhost:{port},127.0.0.1:{port}");
    let rename = format!("{topic}={target}");

    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "restore",
            "--from",
            &uri,
            "--brokers",
            &two_ways,
            "--rename",
            &rename,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once records have landed (if it finishes first, the retyped run below must
    // still write nothing).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let landed: i64 = watermarks(&env, &target).iter().map(|(_, hi)| hi).sum();
        if landed > 0 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = first.kill();
    let _ = first.wait();

    // The same restore typed another way: flags reordered, brokers reversed, the topic
    // named although it is the backup's only one.
    let out = ferry(&[
        "restore",
        "--rename",
        &rename,
        "--topic",
        &topic,
        "--brokers",
        &other_way,
        "--from",
        &uri,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(watermarks(&env, &target), vec![(0, 20_000), (0, 20_000)]);
    let values: std::collections::BTreeSet<Vec<u8>> = dump_topic(&env, &env.kafka, &target)
        .into_iter()
        .filter_map(|r| r.value)
        .collect();
    assert_eq!(values.len(), 40_000, "every record once");

    // Under another state (another --name) the records are not this restore's: refused.
    let out = ferry(&[
        "restore",
        "--from",
        &uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &rename,
        "--name",
        "other",
    ]);
    assert_refused(&out, &["40000 record(s) this restore did not write"]);
    assert_eq!(watermarks(&env, &target), vec![(0, 20_000), (0, 20_000)]);
}

#[test]
fn log_append_time_topics_are_created_as_create_time_with_the_original_times() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("append");
    create_topic(
        &env,
        &topic,
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let msgs: Vec<KcatMsg> = (0..20)
        .map(|i| KcatMsg::new(Some(b"k"), Some(format!("v{i}").as_bytes())).at(1_000 + i))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "none", false);
    let original = dump_topic(&env, &env.kafka, &topic);
    assert!(original.iter().all(|r| r.timestamp_type == "log_append"));
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap();
    let out = ferry(&[
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--to",
        uri,
        "--snapshot",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let target = format!("{topic}-copy");
    let rename = format!("{topic}={target}");
    let out = ferry(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &rename,
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("as CreateTime carrying the original append times"),
        "{}",
        text(&out)
    );
    // Wait a moment so a restamped record could not carry the same time.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let out = ferry(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &rename,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let restored = dump_topic(&env, &env.kafka, &target);
    assert_eq!(restored.len(), 20);
    for (o, r) in original.iter().zip(&restored) {
        assert_eq!(r.timestamp_type, "create");
        assert_eq!(r.timestamp, o.timestamp, "the original append time");
    }
    // A target that is LogAppendTime itself would restamp everything: refused.
    let stamping = format!("{topic}-stamping");
    create_topic(
        &env,
        &stamping,
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let out = ferry(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &format!("{topic}={stamping}"),
    ]);
    assert_refused(
        &out,
        &["message.timestamp.type=LogAppendTime", "CreateTime"],
    );
    assert_eq!(watermarks(&env, &stamping), vec![(0, 0)]);
}

#[test]
fn a_damaged_segment_stops_the_restore_before_anything_is_written() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("damaged");
    let dir = backed_up(&env, &topic, 2, 200);
    let uri = dir.path().to_str().unwrap();
    let segs = common::files_under(dir.path(), "log");
    assert_eq!(segs.len(), 2, "{segs:?}");
    // Partition 1's segment (sorted paths: partition 0 first) gets a flipped bit at the end.
    let damaged = segs
        .iter()
        .find(|p| p.to_string_lossy().contains("/1/"))
        .unwrap_or(&segs[1])
        .clone();
    let name = damaged.file_name().unwrap().to_string_lossy().into_owned();
    let mut bytes = std::fs::read(&damaged).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0x01;
    std::fs::write(&damaged, &bytes).unwrap();
    let target = format!("{topic}-copy");
    let rename = format!("{topic}={target}");
    let out = ferry(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &rename,
    ]);
    assert_refused(
        &out,
        &[&name, "is damaged", "Nothing was written", "--skip-damaged"],
    );
    assert!(
        watermarks(&env, &target).is_empty(),
        "the target was not even created"
    );

    // A truncated object is caught the same way.
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let out = ferry(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &rename,
    ]);
    assert_refused(&out, &[&name, "manifest says"]);
    assert!(watermarks(&env, &target).is_empty());

    // --skip-damaged restores the sound partition and leaves the damaged one out.
    let out = ferry(&[
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &rename,
        "--skip-damaged",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let marks = watermarks(&env, &target);
    let damaged_partition = if damaged.to_string_lossy().contains("/1/") {
        1
    } else {
        0
    };
    assert_eq!(marks[damaged_partition], (0, 0));
    assert_eq!(marks[1 - damaged_partition], (0, 200));
}
