//! A continuous backup commits what it holds every `commit_interval`, not only when a
//! segment rolls: against the dev environment's Apache Kafka, records a running backup
//! fetched are committed (listed by `ferry ls`, checked by `ferry verify`) long before the
//! segment is full or `roll.max_age` passes. Skips, printing why, without the dev
//! environment (fails with `FERRY_REQUIRE_ENV=1`).

mod common;

use common::create_topic;
use ferry_testkit::{py_produce_to, unique, KcatMsg};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Records `ferry ls --json` counts in the backup at `uri` (0 when it is not there yet).
fn listed_records(uri: &str) -> u64 {
    let out = common::ferry_output(&["ls", uri, "--json"], &[]);
    let Ok(ls) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return 0;
    };
    ls["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["partitions"].as_array().into_iter().flatten())
        .map(|p| p["records"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn a_continuous_backup_commits_every_commit_interval() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("commitinterval");
    create_topic(&env, &topic, 1, &[]);
    let msgs: Vec<KcatMsg> = (0..30)
        .map(|i| KcatMsg::new(Some(format!("k{i}").as_bytes()), Some(b"v")))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "none", false);
    let dir = tempfile::tempdir().expect("temp dir");
    let backup = dir.path().join("backup");
    let uri = backup.to_str().expect("utf-8 path").to_string();
    let pipeline = dir.path().join("continuous.yaml");
    // Segments would roll only after 1 hour or a million records: only the commit
    // interval can commit these 30 records.
    std::fs::write(
        &pipeline,
        format!(
            "name: continuous\nsource:\n  type: kafka\n  brokers: [\"{}\"]\n  topics: [\"{topic}\"]\n  stop: never\n\
             sink:\n  type: storage\n  uri: \"{uri}\"\n  commit_interval: 2s\n  roll: {{max_age: 1h}}\n\
             delivery:\n  checkpoint_interval: 1s\n",
            env.kafka
        ),
    )
    .expect("write the pipeline");
    let mut backup_run = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", pipeline.to_str().expect("utf-8 path")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the backup");
    let started = Instant::now();
    let mut listed = 0;
    while listed < 30 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(500));
        listed = listed_records(&uri);
    }
    let still_running = backup_run.try_wait().expect("poll the backup").is_none();
    backup_run.kill().expect("stop the backup");
    let _ = backup_run.wait();
    assert!(still_running, "the continuous backup exited on its own");
    assert_eq!(
        listed, 30,
        "records not committed within 30 s while the backup ran"
    );
    common::ferry_success(&["verify", &uri], &[]);
}
