//! kill -9 during a backup and during a restore, then resume: nothing lost, nothing twice.
//! Against the real Apache Kafka broker of the dev environment.

mod common;

use ferry_testkit::{dump_topic, unique, DumpedRecord, TestEnv};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A topic whose generated records (fixed old timestamps) retention leaves alone.
fn create_topic(env: &TestEnv, name: &str, partitions: i32) {
    common::create_topic(env, name, partitions, &[]);
}

fn spawn_run(file: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run"])
        .arg(file)
        .env("FERRY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ferry runs")
}

/// Starts the pipeline, kills it with SIGKILL after each delay, then lets it finish.
fn run_with_kills(file: &Path, delays_ms: &[u64]) -> usize {
    let mut killed = 0;
    for d in delays_ms {
        let mut child = spawn_run(file);
        std::thread::sleep(Duration::from_millis(*d));
        match child.try_wait().expect("wait") {
            Some(_) => break, // finished before the kill: nothing left to interrupt
            None => {
                child.kill().expect("kill -9");
                child.wait().expect("reap");
                killed += 1;
            }
        }
    }
    let status = spawn_run(file).wait().expect("final run");
    assert!(status.success(), "the resumed run failed: {status:?}");
    killed
}

fn by_partition(dump: &[DumpedRecord]) -> BTreeMap<i32, Vec<DumpedRecord>> {
    let mut out: BTreeMap<i32, Vec<DumpedRecord>> = BTreeMap::new();
    for r in dump {
        out.entry(r.partition).or_default().push(r.clone());
    }
    out
}

/// Every manifest of every partition, in offset order: contiguous, never overlapping.
fn assert_manifests_contiguous(dir: &Path, topic: &str, expect_records: u64) {
    let mut total = 0;
    let tdir = dir.join("topics").join(topic);
    for entry in std::fs::read_dir(&tdir).expect("topic dir") {
        let p = entry.unwrap().path();
        if !p.is_dir() {
            continue;
        }
        let mut manifests: Vec<serde_json::Value> = std::fs::read_dir(&p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|f| f.extension().is_some_and(|x| x == "json"))
            .map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap())
            .collect();
        manifests.sort_by_key(|m| m["first_offset"].as_i64().unwrap());
        let mut next = None;
        for m in &manifests {
            let first = m["first_offset"].as_i64().unwrap();
            if let Some(n) = next {
                assert_eq!(first, n, "segments of {} not contiguous", p.display());
            }
            next = Some(m["next_offset"].as_i64().unwrap());
            total += m["record_count"].as_u64().unwrap();
        }
        // Every segment has its manifest: no orphan left behind by the kills.
        let logs = std::fs::read_dir(&p)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "log")
            })
            .count();
        assert_eq!(logs, manifests.len(), "orphan segments in {}", p.display());
    }
    assert_eq!(total, expect_records);
}

#[test]
fn killed_backup_and_restore_resume_exactly_once() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("crash");
    create_topic(&env, &topic, 3);
    let per_partition = 6000;
    // Ferry's own generator → kafka sink with a tiny buffer writes thousands of small
    // batches, so the backup below needs many fetches and commits to interrupt.
    let work = tempfile::tempdir().unwrap();
    let fill = work.path().join("fill.yaml");
    std::fs::write(
        &fill,
        format!(
            r#"name: crash-fill
source:
  type: generator
  count: {count}
  topic: "{topic}"
  partitions: 3
  key_space: 100
  payload_size: 80
  batch_size: 20
sink:
  type: kafka
  brokers: ["{kafka}"]
  buffer_bytes: 2KiB
delivery:
  checkpoint: none
"#,
            count = 3 * per_partition,
            kafka = env.kafka
        ),
    )
    .unwrap();
    let status = spawn_run(&fill).wait().unwrap();
    assert!(status.success());
    let total = 3 * per_partition as u64;
    let backup = work.path().join("backup");
    // Small fetches and segments make a long run with many commits to interrupt.
    let backup_yaml = work.path().join("backup.yaml");
    std::fs::write(
        &backup_yaml,
        format!(
            r#"name: crash-backup
source:
  type: kafka
  brokers: ["{kafka}"]
  topics: ["{topic}"]
  stop: high_watermark
  partition_max_bytes: 2KiB
  fetch_max_bytes: 6KiB
  max_wait_ms: 10
sink:
  type: storage
  uri: "{dir}"
  format: raw
  roll: {{ max_records: 300 }}
delivery:
  checkpoint_interval: 20ms
  max_in_flight_bytes: 64KiB
"#,
            kafka = env.kafka,
            dir = backup.display()
        ),
    )
    .unwrap();
    let killed = run_with_kills(&backup_yaml, &[150, 300, 500, 800]);
    assert!(
        killed >= 1,
        "the backup finished before any kill: make it slower"
    );
    assert_manifests_contiguous(&backup, &topic, total);

    let restored = format!("{topic}-r");
    let state = work.path().join("state");
    let restore_yaml = work.path().join("restore.yaml");
    std::fs::write(
        &restore_yaml,
        format!(
            r#"name: crash-restore
source:
  type: backup
  uri: "{backup}"
  read_chunk: 4KiB
transforms:
  - type: rename_topic
    map: {{ "{topic}": "{restored}" }}
sink:
  type: kafka
  brokers: ["{kafka}"]
  buffer_bytes: 2KiB
  state: "{state}"
delivery:
  checkpoint: "{state}"
  checkpoint_interval: 20ms
  max_in_flight_bytes: 16KiB
"#,
            kafka = env.kafka,
            backup = backup.display(),
            state = state.display()
        ),
    )
    .unwrap();
    let killed = run_with_kills(&restore_yaml, &[80, 160, 260, 400, 600]);
    assert!(
        killed >= 1,
        "the restore finished before any kill: make it slower"
    );

    let original = by_partition(&dump_topic(&env, &env.kafka, &topic));
    let copy = by_partition(&dump_topic(&env, &env.kafka, &restored));
    for p in 0..3 {
        let a = &copy[&p];
        let b = &original[&p];
        let first_diff = a.iter().zip(b.iter()).position(|(x, y)| x.value != y.value);
        assert!(
            a.len() == b.len() && first_diff.is_none(),
            "partition {p} differs after kills: restored {} records, original {}, first difference at index {first_diff:?}",
            a.len(),
            b.len()
        );
    }
}
