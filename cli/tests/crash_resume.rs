//! kill -9 during a backup and during a restore, then resume: nothing lost, nothing twice.
//! Against the real Apache Kafka broker of the dev environment.

mod common;

use ferry_testkit::{dump_topic, unique, DumpedRecord, TestEnv};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Runs the pipeline up to `kills` times, each time killing it with SIGKILL as soon as it has
/// committed progress of its own (`progress` grew since the run started) plus `extra_ms`, then
/// lets a last run finish. Returns how many kills landed after such a commit while the run was
/// still working (a run that finished first is not counted), so the caller can assert that
/// the kills interrupted real work rather than a start-up.
fn run_with_kills(
    file: &Path,
    kills: usize,
    extra_ms: &[u64],
    progress: impl Fn() -> u64,
) -> usize {
    let mut landed = 0;
    for i in 0..kills {
        let before = progress();
        let mut child = spawn_run(file);
        let deadline = Instant::now() + Duration::from_secs(60);
        let finished = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "run {i} failed before its kill: {status:?}"
                );
                break true;
            }
            if progress() > before {
                break false;
            }
            assert!(
                Instant::now() < deadline,
                "run {i} made no progress in 60 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        if finished {
            break;
        }
        std::thread::sleep(Duration::from_millis(extra_ms[i % extra_ms.len()]));
        if child.try_wait().expect("wait").is_some() {
            break; // finished in the extra time: nothing left to interrupt
        }
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        landed += 1;
    }
    let status = spawn_run(file).wait().expect("final run");
    assert!(status.success(), "the resumed run failed: {status:?}");
    landed
}

/// Records the manifests of a backup's topic account for (what the storage sink committed).
fn committed_in_backup(dir: &Path, topic: &str) -> u64 {
    let Ok(parts) = std::fs::read_dir(dir.join("topics").join(topic)) else {
        return 0;
    };
    parts
        .flatten()
        .filter(|e| e.path().is_dir())
        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
        .filter(|f| f.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|f| std::fs::read(f.path()).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter_map(|m| m["record_count"].as_u64())
        .sum()
}

/// The sum of a checkpoint's next offsets (what a restore committed), 0 before the first.
fn committed_in_checkpoint(path: &Path) -> u64 {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|c| {
            c["offsets"].as_object().map(|topics| {
                topics
                    .values()
                    .filter_map(|parts| parts.as_object())
                    .flat_map(|parts| parts.values())
                    .filter_map(|o| o.as_u64())
                    .sum()
            })
        })
        .unwrap_or(0)
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
    let killed = run_with_kills(&backup_yaml, 4, &[0, 15, 40, 5], || {
        committed_in_backup(&backup, &topic)
    });
    assert!(
        killed >= 2,
        "only {killed} kill(s) landed after a commit and before the backup finished: make it slower"
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
    let checkpoint = state.join("checkpoints").join("crash-restore.json");
    let killed = run_with_kills(&restore_yaml, 5, &[0, 10, 25, 3, 50], || {
        committed_in_checkpoint(&checkpoint)
    });
    assert!(
        killed >= 2,
        "only {killed} kill(s) landed after a checkpoint and before the restore finished: make it slower"
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
