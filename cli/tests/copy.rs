//! `ferry copy` against the real Apache Kafka and S3 (moto) of the dev environment: a backup
//! copied folder → S3 → folder is a backup of its own that verifies and restores identical
//! to the source; a second run copies nothing; a flipped byte in the copy is caught by
//! `ferry verify` and repaired by `ferry copy --verify`; a copy killed with SIGKILL and run
//! again transfers each object once; `--delete-extraneous` follows a prune.

mod common;

use common::{create_topic, ferry_output, ferry_success, varied_topic};
use ferry_testkit::{dump_topic, py_produce_to, unique, DumpedRecord, KcatMsg, TestEnv};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn sorted(mut v: Vec<DumpedRecord>) -> Vec<DumpedRecord> {
    v.sort_by_key(|r| (r.partition, r.offset));
    v
}

fn s3(env: &TestEnv, prefix: &str) -> String {
    format!(
        "s3://{}/{prefix}?endpoint={}&region={}",
        env.s3_bucket, env.s3_endpoint, env.aws_region
    )
}

/// `ferry ls --json` without the location's name (to compare a backup with its copy).
fn ls(uri: &str, vars: &[(&str, &str)]) -> serde_json::Value {
    let (out, _) = ferry_success(&["ls", uri, "--json"], vars);
    let mut v: serde_json::Value = serde_json::from_str(&out).expect("ls json");
    if let Some(m) = v.as_object_mut() {
        m.remove("uri");
        m.remove("location");
    }
    v
}

#[test]
fn a_copy_through_s3_is_a_backup_that_verifies_and_restores_identically() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let vars = env.aws_vars();
    let topic = unique("copy");
    varied_topic(&env, &topic);
    let source = sorted(dump_topic(&env, &env.kafka, &topic));
    let dir = tempfile::tempdir().expect("dir");
    let backup = dir.path().join("backup");
    let backup = backup.to_str().expect("path");
    common::snapshot_backup(&env, &topic, backup);
    let on_s3 = s3(&env, &unique("copy"));
    let (out, _) = ferry_success(&["copy", backup, &on_s3], &vars);
    assert!(
        out.contains("already in the copy") && !out.contains("copied 0 object"),
        "{out}"
    );
    let (again, _) = ferry_success(&["copy", backup, &on_s3], &vars);
    assert!(
        again.contains("copied 0 object(s), 0 bytes"),
        "a second run copies nothing: {again}"
    );
    let back = dir.path().join("back");
    let back = back.to_str().expect("path");
    ferry_success(&["copy", &on_s3, back, "--verify"], &vars);
    for uri in [on_s3.as_str(), back] {
        let (v, _) = ferry_success(&["verify", uri], &vars);
        assert!(v.contains("all good"), "{uri}: {v}");
        assert_eq!(
            ls(uri, &vars),
            ls(backup, &[]),
            "{uri} lists like the backup"
        );
    }
    let target = format!("{topic}-from-copy");
    ferry_success(
        &[
            "restore",
            "--from",
            &on_s3,
            "--brokers",
            &env.kafka,
            "--topic",
            &topic,
            "--rename",
            &format!("{topic}={target}"),
        ],
        &vars,
    );
    let restored = sorted(dump_topic(&env, &env.kafka, &target));
    assert_eq!(restored.len(), source.len());
    assert!(
        restored == source,
        "the restore from the S3 copy equals the source"
    );
}

#[test]
fn a_flipped_byte_in_the_copy_is_caught_and_copy_verify_repairs_it() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("copy-flip");
    create_topic(&env, &topic, 1, &[("retention.ms", "-1")]);
    let msgs: Vec<KcatMsg> = (0..200)
        .map(|i| KcatMsg::new(None, Some(format!("value-{i}").as_bytes())))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "none", false);
    let dir = tempfile::tempdir().expect("dir");
    let (backup, copy) = (dir.path().join("b"), dir.path().join("c"));
    let (backup, copy) = (backup.to_str().expect("path"), copy.to_str().expect("path"));
    common::snapshot_backup(&env, &topic, backup);
    ferry_success(&["copy", backup, copy], &[]);
    let segment = common::files_under(Path::new(copy), "log")
        .into_iter()
        .next()
        .expect("a segment in the copy");
    let mut bytes = std::fs::read(&segment).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&segment, bytes).expect("write");
    let out = ferry_output(&["verify", copy], &[]);
    assert!(!out.status.success(), "verify catches the flipped byte");
    let (plain, _) = ferry_success(&["copy", backup, copy], &[]);
    assert!(
        plain.contains("copied 0 object"),
        "without --verify the manifest is trusted: {plain}"
    );
    let (fixed, log) = ferry_success(&["copy", backup, copy, "--verify"], &[]);
    assert!(fixed.contains("copied 1 object"), "{fixed}");
    assert!(log.contains("differs from its manifest"), "{log}");
    let (v, _) = ferry_success(&["verify", copy], &[]);
    assert!(v.contains("all good"), "{v}");
}

/// A segment of about 20 MB — more than one transfer chunk (8 MiB), so it streams in
/// pieces and uploads in parts — copies exactly to S3 and Azure Blob; with a byte flipped in the middle of
/// the backup's segment, the copy refuses it and S3 holds neither it nor its manifest (the
/// upload is aborted, not completed).
#[test]
fn a_large_segment_streams_in_pieces_and_a_damaged_one_is_never_completed() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("copy-large");
    create_topic(&env, &topic, 1, &[("retention.ms", "-1")]);
    let value = vec![b'L'; 4000];
    let msgs: Vec<KcatMsg> = (0..5000)
        .map(|i| KcatMsg::new(Some(format!("k{i}").as_bytes()), Some(&value)))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "none", false);
    let dir = tempfile::tempdir().expect("dir");
    let backup = dir.path().join("b");
    let backup = backup.to_str().expect("path");
    common::snapshot_backup(&env, &topic, backup);
    let segments = common::files_under(Path::new(backup), "log");
    assert_eq!(segments.len(), 1);
    let size = std::fs::metadata(&segments[0]).expect("stat").len();
    assert!(size > 2 * (8 << 20), "a segment of {size} bytes");

    // Uploaded in parts (S3 multipart uploads, Azure blocks). Not to GCS: opendal uploads
    // there in parts through GCS's XML multipart API, which fake-gcs-server does not have
    // ("invalid uploadType").
    let vars = env.store_vars();
    let prefix = unique("copy-large");
    for to in [s3(&env, &prefix), env.azure_uri(&prefix)] {
        let (out, _) = ferry_success(&["copy", backup, &to, "--verify"], &vars);
        assert!(
            out.contains("1 segment(s) read back and verified"),
            "{to}: {out}"
        );
        assert_eq!(ls(&to, &vars), ls(backup, &vars), "{to}");
        let (v, _) = ferry_success(&["verify", &to], &vars);
        assert!(v.contains("all good"), "{to}: {v}");
    }

    let mut bytes = std::fs::read(&segments[0]).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&segments[0], bytes).expect("write");
    let damaged = unique("copy-damaged");
    let out = ferry_output(&["copy", backup, &s3(&env, &damaged)], &vars);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("does not match its manifest") && err.contains("not copied"),
        "{err}"
    );
    let segment_name = segments[0]
        .strip_prefix(backup)
        .expect("under the backup")
        .to_str()
        .expect("utf-8")
        .trim_start_matches('/')
        .to_string();
    // A completed object without its manifest would be listed as an incomplete segment.
    let out = ferry_output(&["verify", &s3(&env, &damaged)], &vars);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(&segment_name), "{text}");
    assert!(!text.contains("incomplete segment"), "{text}");
}

/// Objects named in `copied` log lines.
fn copied_objects(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" copied "))
        .filter_map(|l| l.split("object=").nth(1))
        .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_killed_copy_resumes_transferring_each_object_once_and_follows_a_prune() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let vars = env.aws_vars();
    let topic = unique("copy-kill");
    // One segment per partition (a segment holds whole fetched batches): 40 partitions.
    create_topic(&env, &topic, 40, &[("retention.ms", "-1")]);
    let value = vec![b'x'; 2000];
    let msgs: Vec<KcatMsg> = (0..4000)
        .map(|i| KcatMsg::new(Some(format!("k{i}").as_bytes()), Some(&value)))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, None, &msgs, "none", false);
    let dir = tempfile::tempdir().expect("dir");
    let backup = dir.path().join("b");
    let backup = backup.to_str().expect("path");
    common::snapshot_backup(&env, &topic, backup);
    let segments = common::files_under(Path::new(backup), "log").len();
    assert!(segments >= 30, "{segments} segments");

    let dst = s3(&env, &unique("copy-kill"));
    let log_path = dir.path().join("killed.log");
    let log_file = std::fs::File::create(&log_path).expect("log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["copy", backup, &dst])
        .env("FERRY_LOG", "info")
        .envs(vars.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("ferry runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = copied_objects(&std::fs::read_to_string(&log_path).unwrap_or_default()).len();
        if done >= 10 {
            break;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the copy finished before it could be killed"
        );
        assert!(
            Instant::now() < deadline,
            "the copy made no progress in 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let first = copied_objects(&std::fs::read_to_string(&log_path).expect("log"));
    let (out, log) = ferry_success(&["copy", backup, &dst], &vars);
    let second = copied_objects(&log);
    let mut times: BTreeMap<&str, usize> = BTreeMap::new();
    for o in first.iter().chain(&second) {
        *times.entry(o.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "objects transferred twice: {twice:?}");
    // An object written just before the kill but not yet logged is found held by the second
    // run and kept (not copied again): one per partition in flight at most (4 at once).
    assert!(
        times.len() + 4 >= 2 * segments,
        "every segment and manifest copied: {} objects logged, {segments} segments ({out})",
        times.len()
    );
    let (v, _) = ferry_success(&["verify", &dst], &vars);
    assert!(v.contains("all good"), "{v}");
    assert_eq!(ls(&dst, &vars), ls(backup, &[]));

    // More records, a second backup run (a second segment per partition), a copy, a prune
    // of the backup (the first segments go), then a copy with --delete-extraneous: the two
    // agree again.
    py_produce_to(&env, &env.kafka, &topic, None, &msgs[..400], "none", false);
    common::snapshot_backup(&env, &topic, backup);
    let (more, _) = ferry_success(&["copy", backup, &dst], &vars);
    assert!(
        !more.contains("copied 0 object"),
        "the new segments are copied: {more}"
    );
    let (pruned, _) = ferry_success(&["prune", backup, "--before", "2100-01-01T00:00:00Z"], &[]);
    assert!(!pruned.contains("deleted 0 segment"), "{pruned}");
    let (dry, _) = ferry_success(
        &["copy", backup, &dst, "--delete-extraneous", "--dry-run"],
        &vars,
    );
    assert!(dry.contains("would delete"), "{dry}");
    assert_ne!(
        ls(&dst, &vars),
        ls(backup, &[]),
        "a dry run deletes nothing"
    );
    ferry_success(&["copy", backup, &dst, "--delete-extraneous"], &vars);
    assert_eq!(
        ls(&dst, &vars),
        ls(backup, &[]),
        "the copy follows the prune"
    );
    let (v, _) = ferry_success(&["verify", &dst], &vars);
    assert!(v.contains("all good"), "{v}");
}

#[test]
fn copy_refuses_what_is_not_a_backup_and_a_location_holding_another() {
    let dir = tempfile::tempdir().expect("dir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).expect("dir");
    let out = ferry_output(
        &["copy", a.to_str().expect("path"), b.to_str().expect("path")],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a Ferry backup"), "{err}");
    assert!(!b.exists(), "nothing was written");
    std::fs::write(
        a.join("ferry.json"),
        br#"{"layout_version":1,"created_at_ms":1}"#,
    )
    .expect("write");
    std::fs::create_dir_all(&b).expect("dir");
    std::fs::write(
        b.join("ferry.json"),
        br#"{"layout_version":1,"created_at_ms":2}"#,
    )
    .expect("write");
    let out = ferry_output(
        &["copy", a.to_str().expect("path"), b.to_str().expect("path")],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds another backup"));
}

/// What a backup holds per partition, from `ferry ls --json`: (topic, partition, first
/// offset, next offset, records, bytes) — how it is cut into segments aside.
fn held(uri: &str, vars: &[(&str, &str)]) -> Vec<(String, i64, i64, i64, u64, u64)> {
    let listing = ls(uri, vars);
    let mut out = Vec::new();
    for t in listing["topics"].as_array().expect("topics") {
        for p in t["partitions"].as_array().expect("partitions") {
            out.push((
                t["topic"].as_str().expect("topic").to_string(),
                p["partition"].as_i64().expect("partition"),
                p["first_offset"].as_i64().expect("first"),
                p["next_offset"].as_i64().expect("next"),
                p["records"].as_u64().expect("records"),
                p["bytes"].as_u64().expect("bytes"),
            ));
        }
    }
    out
}

/// `ferry backup --to A --to B` (a `fanout` sink): both places are complete backups that
/// list alike and verify; the S3 copy restores equal to the topic; after the local copy is
/// wiped and more records arrive, the next run fills it again from the start while the S3
/// copy only gains the new records; a second place that cannot be written fails the backup
/// without a checkpoint claiming anything.
#[test]
fn a_backup_to_two_places_keeps_both_complete_and_refills_a_lost_one() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let vars = env.aws_vars();
    let topic = unique("fanout");
    create_topic(&env, &topic, 2, &[("retention.ms", "-1")]);
    let first: Vec<KcatMsg> = (0..300)
        .map(|i| {
            KcatMsg::new(
                Some(format!("k{i}").as_bytes()),
                Some(format!("first-{i}").as_bytes()),
            )
        })
        .collect();
    py_produce_to(&env, &env.kafka, &topic, None, &first, "none", false);
    let dir = tempfile::tempdir().expect("dir");
    let local = dir.path().join("local");
    let local = local.to_str().expect("path");
    let vault = s3(&env, &unique("fanout"));
    let backup = |extra: &[&str]| {
        let mut args = vec![
            "backup",
            "--brokers",
            &env.kafka,
            "--topic",
            &topic,
            "--to",
            &vault,
            "--to",
            local,
            "--snapshot",
        ];
        args.extend_from_slice(extra);
        ferry_success(&args, &vars)
    };
    backup(&[]);
    for uri in [local, vault.as_str()] {
        let (v, _) = ferry_success(&["verify", uri], &vars);
        assert!(v.contains("all good"), "{uri}: {v}");
    }
    let both = held(&vault, &vars);
    assert_eq!(held(local, &[]), both, "both places hold the same");
    assert_eq!(both.iter().map(|h| h.4).sum::<u64>(), 300, "{both:?}");
    assert!(both.iter().all(|h| h.2 == 0), "from the start: {both:?}");

    // The local copy is lost; more records arrive; the next run refills it from offset 0.
    std::fs::remove_dir_all(local).expect("wipe the local copy");
    let second: Vec<KcatMsg> = (0..100)
        .map(|i| KcatMsg::new(None, Some(format!("second-{i}").as_bytes())))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, None, &second, "none", false);
    // The checkpoint is in the first place (S3) and says 300: the run must still start from
    // what the wiped copy holds (nothing), and must not re-encode what S3 already has.
    let (_, log) = backup(&[]);
    assert!(
        log.contains("not from the checkpoint"),
        "resuming before the checkpoint is said: {log}"
    );
    assert!(
        !log.contains("re-encoded"),
        "overlaps are cut between batches: {log}"
    );
    let refilled = held(local, &[]);
    assert_eq!(
        refilled,
        held(&vault, &vars),
        "the refilled copy holds what the other does"
    );
    assert_eq!(
        refilled.iter().map(|h| h.4).sum::<u64>(),
        400,
        "{refilled:?}"
    );
    assert!(
        refilled.iter().all(|h| h.2 == 0),
        "refilled from the start: {refilled:?}"
    );
    let source = sorted(dump_topic(&env, &env.kafka, &topic));
    assert_eq!(source.len(), 400);
    for (name, uri) in [("local", local), ("s3", vault.as_str())] {
        let (v, _) = ferry_success(&["verify", uri], &vars);
        assert!(v.contains("all good"), "{uri}: {v}");
        let target = format!("{topic}-{name}");
        ferry_success(
            &[
                "restore",
                "--from",
                uri,
                "--brokers",
                &env.kafka,
                "--topic",
                &topic,
                "--rename",
                &format!("{topic}={target}"),
            ],
            &vars,
        );
        let restored = sorted(dump_topic(&env, &env.kafka, &target));
        assert_eq!(restored.len(), source.len(), "{name}: every record once");
        assert!(restored == source, "{name}: the restore equals the topic");
    }

    // A second place that cannot be written (a bucket that does not exist): the backup
    // fails, naming it, and the first place gains no checkpoint past what it held.
    let fresh = dir.path().join("fresh");
    let fresh = fresh.to_str().expect("path");
    let missing = format!(
        "s3://{}/x?endpoint={}&region={}",
        unique("no-such-bucket"),
        env.s3_endpoint,
        env.aws_region
    );
    let out = ferry_output(
        &[
            "backup",
            "--brokers",
            &env.kafka,
            "--topic",
            &topic,
            "--to",
            fresh,
            "--to",
            &missing,
            "--snapshot",
        ],
        &vars,
    );
    assert!(
        !out.status.success(),
        "a place that cannot be written fails the backup"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-bucket"),
        "the error names the place: {err}"
    );
    assert!(
        !Path::new(fresh).join("checkpoints").exists(),
        "no checkpoint claims what the other place lacks"
    );
}
