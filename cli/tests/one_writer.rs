//! One writer per backup location, against the dev environment's Apache Kafka: while a
//! continuous backup runs, a second backup into the same location refuses, naming the
//! first; after the first is killed (kill -9) its lease expires and a new run proceeds, and
//! `ferry verify` passes. Skips, printing why, without the dev environment (fails with
//! `FERRY_REQUIRE_ENV=1`).

mod common;

use common::create_topic;
use ferry_testkit::{py_produce_to, unique, KcatMsg};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A continuous backup of `topic` into `backup` with a short lease.
fn continuous_pipeline(dir: &Path, brokers: &str, topic: &str, backup: &Path) -> String {
    let path = dir.join(format!("{}.yaml", unique("continuous")));
    std::fs::write(
        &path,
        format!(
            "name: continuous\nsource:\n  type: kafka\n  brokers: [\"{brokers}\"]\n  topics: [\"{topic}\"]\n  \
             stop: never\nsink:\n  type: storage\n  uri: \"{}\"\n  lease_ttl: 3s\n",
            backup.display()
        ),
    )
    .expect("write the pipeline");
    path.display().to_string()
}

/// Waits up to `limit` for `done`.
fn wait_for(limit: Duration, what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_second_writer_refuses_and_a_killed_owners_lease_expires() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("onewriter");
    create_topic(&env, &topic, 1, &[]);
    let msgs: Vec<KcatMsg> = (0..50)
        .map(|i| KcatMsg::new(Some(format!("k{i}").as_bytes()), Some(b"v")))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "none", false);
    let dir = tempfile::tempdir().expect("temp dir");
    let backup = dir.path().join("backup");
    let pipeline = continuous_pipeline(dir.path(), &env.kafka, &topic, &backup);

    let mut first = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", &pipeline])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the first backup");
    let lease_dir = backup.join("lease");
    wait_for(Duration::from_secs(60), "the first backup's lease", || {
        std::fs::read_dir(&lease_dir).is_ok_and(|mut d| d.next().is_some())
    });

    // A second continuous backup, and a snapshot backup, into the same location refuse.
    let second = common::ferry_output(&["run", &pipeline], &[]);
    let snapshot_args = [
        "backup",
        "--brokers",
        env.kafka.as_str(),
        "--topic",
        topic.as_str(),
        "--to",
        backup.to_str().expect("utf-8 path"),
        "--snapshot",
    ];
    let snapshot = common::ferry_output(&snapshot_args, &[]);
    for (what, out) in [("continuous", &second), ("snapshot", &snapshot)] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "the second ({what}) backup ran:\n{err}"
        );
        assert!(
            err.contains("another Ferry is writing to this backup location")
                && err.contains(&format!("pid {}", first.id())),
            "the {what} refusal does not name the first backup (pid {}):\n{err}",
            first.id()
        );
    }

    // The owner dies without releasing its lease; once the lease expires, a run proceeds.
    first.kill().expect("kill -9 the first backup");
    first.wait().expect("reap it");
    std::thread::sleep(Duration::from_secs(4));
    common::ferry_success(&snapshot_args, &[]);
    common::ferry_success(&["verify", backup.to_str().expect("utf-8 path")], &[]);
    let ls: serde_json::Value = serde_json::from_str(
        &common::ferry_success(&["ls", backup.to_str().expect("utf-8 path"), "--json"], &[]).0,
    )
    .expect("ls --json");
    let records: u64 = ls["topics"][0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["records"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(records, 50, "every record backed up once:\n{ls:#}");
}
