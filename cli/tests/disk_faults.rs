//! Local-disk faults during a backup: a disk that fills up mid-run and a file system that is
//! read-only, each on a small tmpfs the test mounts (and unmounts when it ends, also when it
//! fails). Ferry must stop at once with one line naming the path, the cause and what to do,
//! claim nothing the disk does not hold, and complete the backup exactly when run again once
//! the disk has room or is writable.
//!
//! Mounting needs root (or CAP_SYS_ADMIN); where `mount` is refused the tests print why and
//! return, also under `FERRY_REQUIRE_ENV=1`: a mount is a privilege of the machine, not a
//! service of the dev environment.

mod common;

use common::{create_topic, ferry_output, ferry_success};
use ferry_testkit::{dump_topic, py_produce_to, unique, DumpedRecord, KcatMsg, TestEnv};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A tmpfs mounted on a fresh folder under a temporary directory; unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
    /// Holds the parent folder; removed after the unmount (fields drop after `drop`).
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. `6m`), or prints why it
    /// cannot and returns `None`.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "ferry-test"])
            .arg(&path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { path, _dir: dir }),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs on {} ({}: {}); these tests need root or CAP_SYS_ADMIN",
                    path.display(),
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    /// Remounts with `options` (e.g. `ro`, `rw`, `size=64m`); the test fails if refused.
    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "remount,{options} of {} failed: {}",
            self.path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The storage URI of the backup folder on this disk.
    fn uri(&self) -> String {
        self.path.join("backup").to_string_lossy().into_owned()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Busy (a ferry the failed test left running): detach it now, freed once unused.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

fn sorted(mut v: Vec<DumpedRecord>) -> Vec<DumpedRecord> {
    v.sort_by_key(|r| (r.partition, r.offset));
    v
}

/// Appends `count` records of 4 KB (uncompressed, so they take that room on disk) to each
/// of `partitions`, keys `{p}-{i}` from `from`.
fn produce(env: &TestEnv, topic: &str, partitions: i32, from: i64, count: i64) {
    let value = vec![b'd'; 4000];
    for p in 0..partitions {
        let msgs: Vec<KcatMsg> = (from..from + count)
            .map(|i| KcatMsg::new(Some(format!("{p}-{i}").as_bytes()), Some(&value)))
            .collect();
        py_produce_to(env, &env.kafka, topic, Some(p), &msgs, "none", false);
    }
}

/// Runs a snapshot backup of `topic` into `uri` (1 MiB segments, so many commit before a
/// fault) with `ferry run`; kills it and fails the test if it runs longer than `limit`.
/// Returns its exit status, its stderr and how long it ran.
fn backup(
    env: &TestEnv,
    topic: &str,
    uri: &str,
    limit: Duration,
) -> (ExitStatus, String, Duration) {
    run_backup(env, topic, uri, limit, "high_watermark")
}

/// As [`backup`], with the source's `stop:` (`never`: a continuous backup, which only a
/// fault ends).
fn run_backup(
    env: &TestEnv,
    topic: &str,
    uri: &str,
    limit: Duration,
    stop: &str,
) -> (ExitStatus, String, Duration) {
    let dir = tempfile::tempdir().expect("dir");
    let yaml = format!(
        "name: disk-faults\nsource: {{ type: kafka, brokers: [\"{}\"], topics: [\"{topic}\"], stop: {stop}, partition_max_bytes: 256KiB }}\nsink: {{ type: storage, uri: \"{uri}\", roll: {{ max_bytes: 1MiB }} }}\n",
        env.kafka
    );
    let file = dir.path().join("backup.yaml");
    std::fs::write(&file, yaml).expect("write");
    let log = dir.path().join("ferry.log");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", file.to_str().expect("path")])
        .env("FERRY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("ferry runs");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the backup still ran after {limit:?}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    (status, text, started.elapsed())
}

/// The last non-empty line of a log, and how many lines say `error:`.
fn last_line(text: &str) -> (&str, usize) {
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    (
        last,
        text.lines().filter(|l| l.starts_with("error:")).count(),
    )
}

/// Records `ferry ls --json` counts in a backup.
fn backed_up(uri: &str) -> u64 {
    let out = ferry_output(&["ls", uri, "--json"], &[]);
    assert!(out.status.success(), "ferry ls {uri} failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ls --json");
    v["topics"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .flat_map(|t| t["partitions"].as_array().cloned().unwrap_or_default())
                .map(|p| p["records"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// `ferry verify` of what a failed run left: nothing damaged (a segment the fault cut short
/// has no manifest, so it is at most a warning).
fn assert_verifies(uri: &str) -> String {
    let (v, _) = ferry_success(&["verify", uri], &[]);
    assert!(v.contains("all good") || v.contains("no damage"), "{v}");
    v
}

/// Verifies the backup, restores it under a new name and compares it with `source`.
fn assert_restores_equal(env: &TestEnv, uri: &str, topic: &str, source: &[DumpedRecord]) {
    let (v, _) = ferry_success(&["verify", uri], &[]);
    assert!(v.contains("all good"), "{v}");
    let target = format!("{topic}-restored");
    ferry_success(
        &[
            "restore",
            "--from",
            uri,
            "--brokers",
            &env.kafka,
            "--topic",
            topic,
            "--rename",
            &format!("{topic}={target}"),
        ],
        &[],
    );
    let restored = sorted(dump_topic(env, &env.kafka, &target));
    assert_eq!(restored.len(), source.len(), "every record once");
    assert!(restored == source, "the restore equals the topic");
}

/// Fails unless the message names a path under `root`.
fn assert_names_a_path(last: &str, root: &Path, text: &str) {
    assert!(
        last.contains(&*root.to_string_lossy()),
        "the last line names the path ({}):\n{text}",
        root.display()
    );
}

/// A backup run that met `what` (the outcome of [`backup`]): a non-zero exit within
/// seconds (not retried as a temporary fault), one error line, last, naming a path on `disk`
/// and saying each of `says` (the cause and what to do).
fn assert_fails_at_once_with_one_line(
    (status, text, took): (ExitStatus, String, Duration),
    disk: &Tmpfs,
    what: &str,
    says: &[&str],
) {
    eprintln!("the backup onto {what} exited {status} after {took:?}");
    assert!(!status.success(), "a backup onto {what} exited 0:\n{text}");
    assert!(
        took < Duration::from_secs(15),
        "took {took:?} to give up on {what}:\n{text}"
    );
    let (last, errors) = last_line(&text);
    eprintln!("its last line: {last}");
    assert_eq!(errors, 1, "one error line:\n{text}");
    assert!(
        last.starts_with("error:"),
        "the last line is the error:\n{text}"
    );
    assert_names_a_path(last, &disk.path, &text);
    for s in says {
        assert!(last.contains(s), "the last line says '{s}':\n{text}");
    }
}

#[test]
fn a_full_disk_fails_the_backup_at_once_with_one_line_and_a_rerun_with_room_completes_it() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    // 18 MB of records for a 6 MB disk.
    let Some(disk) = Tmpfs::mount("6m") else {
        return;
    };
    let topic = unique("disk-full");
    create_topic(&env, &topic, 3, &[("retention.ms", "-1")]);
    produce(&env, &topic, 3, 0, 1500);
    let source = sorted(dump_topic(&env, &env.kafka, &topic));
    assert_eq!(source.len(), 4500);
    let uri = disk.uri();

    // A full disk is not a temporary fault: no retries with backoff.
    assert_fails_at_once_with_one_line(
        backup(&env, &topic, &uri, Duration::from_secs(60)),
        &disk,
        "a full disk",
        &["the disk is full", "free space"],
    );
    // Nothing claimed that the disk does not hold: what is there verifies, and holds part
    // of the topic.
    assert_verifies(&uri);
    let partial = backed_up(&uri);
    eprintln!("the full disk holds {partial} of 4500 records");
    assert!(partial < 4500, "{partial} records on a 6 MB disk");

    // Room again: the re-run completes the backup exactly.
    disk.remount("size=64m");
    let (status, text, _) = backup(&env, &topic, &uri, Duration::from_secs(120));
    assert!(status.success(), "the re-run failed:\n{text}");
    assert_eq!(backed_up(&uri), 4500);
    assert_restores_equal(&env, &uri, &topic, &source);
}

#[test]
fn a_read_only_disk_fails_the_backup_at_once_with_one_line_and_a_rerun_once_writable_completes_it()
{
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let Some(disk) = Tmpfs::mount("64m") else {
        return;
    };
    let topic = unique("disk-ro");
    create_topic(&env, &topic, 3, &[("retention.ms", "-1")]);
    produce(&env, &topic, 3, 0, 500);
    let uri = disk.uri();
    // A first backup holds the first 1,500 records.
    let (status, text, _) = backup(&env, &topic, &uri, Duration::from_secs(120));
    assert!(status.success(), "the first backup failed:\n{text}");
    assert_eq!(backed_up(&uri), 1500);

    // More records, and the disk turns read-only (as a file system does after I/O errors).
    produce(&env, &topic, 3, 500, 500);
    let source = sorted(dump_topic(&env, &env.kafka, &topic));
    assert_eq!(source.len(), 3000);
    disk.remount("ro");
    assert_fails_at_once_with_one_line(
        backup(&env, &topic, &uri, Duration::from_secs(60)),
        &disk,
        "a read-only disk",
        &["read-only", "writable location"],
    );
    // Nothing new claimed: the backup still holds exactly the first run's records.
    assert_verifies(&uri);
    assert_eq!(backed_up(&uri), 1500);

    disk.remount("rw");
    let (status, text, _) = backup(&env, &topic, &uri, Duration::from_secs(120));
    assert!(status.success(), "the re-run failed:\n{text}");
    assert_eq!(backed_up(&uri), 3000);
    assert_restores_equal(&env, &uri, &topic, &source);
}

/// A continuous backup is restarted after storage outages for as long as they last, but a
/// full disk is not an outage: it stops at once with the same one line (a service manager
/// shows it failed; restarting it every minute would only fill the log), and a re-run with
/// room completes the backup exactly.
#[test]
fn a_full_disk_stops_a_continuous_backup_at_once_with_one_line() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let Some(disk) = Tmpfs::mount("6m") else {
        return;
    };
    let topic = unique("disk-full-cont");
    create_topic(&env, &topic, 3, &[("retention.ms", "-1")]);
    produce(&env, &topic, 3, 0, 1500);
    let source = sorted(dump_topic(&env, &env.kafka, &topic));
    assert_eq!(source.len(), 4500);
    let uri = disk.uri();
    let outcome = run_backup(&env, &topic, &uri, Duration::from_secs(60), "never");
    assert!(
        !outcome.1.contains("storage unavailable"),
        "not restarted as after an outage:\n{}",
        outcome.1
    );
    assert_fails_at_once_with_one_line(
        outcome,
        &disk,
        "a full disk (continuous)",
        &["the disk is full", "free space"],
    );
    assert_verifies(&uri);
    assert!(backed_up(&uri) < 4500);
    disk.remount("size=64m");
    let (status, text, _) = backup(&env, &topic, &uri, Duration::from_secs(120));
    assert!(status.success(), "the re-run failed:\n{text}");
    assert_eq!(backed_up(&uri), 4500);
    assert_restores_equal(&env, &uri, &topic, &source);
}
