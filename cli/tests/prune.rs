//! `ferry prune` on a backup of the dev environment's Kafka: old segments go, from the start
//! of each partition only, never the newest; `ls` agrees; a restore of what stays equals the
//! source from the first kept offset; `--dry-run` deletes nothing.

mod common;

use ferry_testkit::{dump_topic, env_or_skip, py_produce_to, unique, KcatMsg};
use std::path::Path;

fn ls_json(dir: &Path) -> serde_json::Value {
    let (out, _) = common::ferry_success(&["ls", "--json", dir.to_str().expect("utf-8")], &[]);
    serde_json::from_str(&out).expect("ls --json")
}

/// Restores the backup at `b` under a new name and checks it holds the source's `records`
/// records from offset `first` on (keys, values, timestamps).
fn assert_restores_from(
    env: &ferry_testkit::TestEnv,
    b: &str,
    topic: &str,
    first: i64,
    records: usize,
) {
    let target = unique("prune-restored");
    common::ferry_success(
        &[
            "restore",
            "--brokers",
            &env.kafka,
            "--from",
            b,
            "--topic",
            topic,
            "--rename",
            &format!("{topic}={target}"),
        ],
        &[],
    );
    let source: Vec<_> = dump_topic(env, &env.kafka, topic)
        .into_iter()
        .filter(|r| r.offset >= first)
        .map(|r| (r.key, r.value, r.timestamp))
        .collect();
    let restored: Vec<_> = dump_topic(env, &env.kafka, &target)
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect();
    assert_eq!(source.len(), records);
    assert_eq!(source, restored);
}

#[test]
fn prune_deletes_old_segments_from_the_start_and_what_stays_restores() {
    let Some(env) = env_or_skip() else { return };
    let topic = unique("prune");
    common::create_topic(&env, &topic, 1, &[]);
    // Three eras, 100 records each: 2001, 2011 and 2021.
    let eras = [978_307_200_000i64, 1_293_840_000_000, 1_609_459_200_000];
    for (e, ts) in eras.iter().enumerate() {
        let msgs: Vec<KcatMsg> = (0..100)
            .map(|i| {
                let v = format!("era{e}-{i}");
                KcatMsg::new(Some(v.as_bytes()), Some(v.as_bytes())).at(ts + i)
            })
            .collect();
        py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "none", true);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let backup = dir.path().join("b");
    let b = backup.to_str().expect("utf-8");
    // One produce call per era is one batch of 100: with segments of at most 50 records, each
    // era is a segment of its own (segments hold whole batches).
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        format!(
            "name: prune\nsource: {{type: kafka, brokers: [\"{}\"], topics: [{topic}], stop: high_watermark}}\nsink: {{type: storage, uri: \"file://{b}\", roll: {{max_records: 50}}}}\n",
            env.kafka
        ),
    )
    .expect("write");
    common::ferry_success(&["run", file.to_str().expect("utf-8")], &[]);
    assert_eq!(common::files_under(&backup, "log").len(), 3);

    // A dry run names what would go and deletes nothing.
    let (out, _) = common::ferry_success(
        &[
            "prune",
            b,
            "--before",
            "2011-01-01T00:00:00.050Z",
            "--dry-run",
        ],
        &[],
    );
    assert!(
        out.contains("would delete 1 segment(s), 100 records"),
        "{out}"
    );
    assert_eq!(common::files_under(&backup, "log").len(), 3);

    // The bound falls inside the second era's first segment: only the first era goes.
    let (out, _) =
        common::ferry_success(&["prune", b, "--before", "2011-01-01T00:00:00.050Z"], &[]);
    assert!(out.contains("deleted 1 segment(s), 100 records"), "{out}");
    assert!(out.contains("kept from offset 100"), "{out}");
    assert_eq!(common::files_under(&backup, "log").len(), 2);
    assert_eq!(
        common::files_under(&backup.join("topics"), "json").len(),
        2 + 1,
        "2 manifests + topic.json"
    );
    assert_eq!(partition_range(&backup), (Some(100), Some(300), Some(200)));
    common::ferry_success(&["verify", b], &[]);

    // What stays restores as the source from offset 100 on.
    assert_restores_from(&env, b, &topic, 100, 200);

    // Everything old: the newest segment of the partition stays.
    let (out, _) = common::ferry_success(&["prune", b, "--keep", "1s"], &[]);
    assert!(out.contains("deleted 1 segment(s)"), "{out}");
    assert_eq!(common::files_under(&backup, "log").len(), 1);
    common::ferry_success(&["verify", b], &[]);

    // Mistakes are named.
    let out = common::ferry_output(&["prune", b, "--before", "yesterday"], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--before 'yesterday'"),
        "{out:?}"
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let out = common::ferry_output(
        &["prune", empty.to_str().expect("utf-8"), "--keep", "1d"],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a Ferry backup"),
        "{out:?}"
    );
}

/// `(first_offset, next_offset, records)` of the only partition in `ls --json`.
fn partition_range(dir: &Path) -> (Option<i64>, Option<i64>, Option<u64>) {
    let ls = ls_json(dir);
    let p = &ls["topics"][0]["partitions"][0];
    (
        p["first_offset"].as_i64(),
        p["next_offset"].as_i64(),
        p["records"].as_u64(),
    )
}

/// Prune beside a running continuous backup of the same location: the old era goes while
/// the backup goes on writing new segments, the backup exits cleanly, a restart does not
/// refill what was pruned, and what stays restores as the source from the first kept offset.
#[test]
fn prune_works_while_a_continuous_backup_writes() {
    let Some(env) = env_or_skip() else { return };
    let topic = unique("prune-live");
    common::create_topic(&env, &topic, 1, &[]);
    let era = |e: usize, ts: i64| {
        let msgs: Vec<KcatMsg> = (0..100)
            .map(|i| {
                let v = format!("era{e}-{i}");
                KcatMsg::new(Some(v.as_bytes()), Some(v.as_bytes())).at(ts + i)
            })
            .collect();
        py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "none", true);
    };
    era(0, 978_307_200_000);
    era(1, 1_293_840_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let backup = dir.path().join("b");
    let b = backup.to_str().expect("utf-8");
    let file = dir.path().join("live.yaml");
    std::fs::write(
        &file,
        format!(
            "name: live\nsource: {{type: kafka, brokers: [\"{}\"], topics: [{topic}]}}\nsink: {{type: storage, uri: \"file://{b}\", roll: {{max_records: 50}}, commit_interval: 1s}}\ndelivery: {{checkpoint_interval: 1s}}\n",
            env.kafka
        ),
    )
    .expect("write");
    let log = dir.path().join("ferry.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", file.to_str().expect("utf-8")])
        .env("FERRY_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("ferry runs");
    let wait_for = |want: (i64, i64, u64)| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let got = if backup.join("ferry.json").exists() {
                partition_range(&backup)
            } else {
                (None, None, None)
            };
            if got == (Some(want.0), Some(want.1), Some(want.2)) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the backup holds {got:?}, not {want:?}, after 60 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    wait_for((0, 200, 200));

    // The first era goes while the backup runs; then new records arrive and are backed up.
    let (out, _) =
        common::ferry_success(&["prune", b, "--before", "2011-01-01T00:00:00.050Z"], &[]);
    assert!(out.contains("deleted 1 segment(s), 100 records"), "{out}");
    era(2, 1_609_459_200_000);
    wait_for((100, 300, 200));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the continuous backup is still running:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("reaped");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{text}");
    assert!(!text.contains("ERROR"), "{text}");

    // A restart resumes after what it holds; it does not fetch the pruned era again.
    let snapshot = dir.path().join("snapshot.yaml");
    std::fs::write(
        &snapshot,
        std::fs::read_to_string(&file)
            .expect("read")
            .replace("topics: [", "stop: high_watermark, topics: ["),
    )
    .expect("write");
    common::ferry_success(&["run", snapshot.to_str().expect("utf-8")], &[]);
    assert_eq!(partition_range(&backup), (Some(100), Some(300), Some(200)));
    common::ferry_success(&["verify", b], &[]);
    assert_restores_from(&env, b, &topic, 100, 200);
}
