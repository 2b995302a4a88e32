//! Encryption at rest against the dev environment's Apache Kafka (and moto S3): an
//! encrypted backup restores equal to the source (compared through dumps made with
//! librdkafka), holds no plaintext of a known value in any stored file, and refuses a
//! missing or wrong key before anything is written; key rotation keeps old segments
//! readable with the old key given too.

mod common;

use common::{client, create_topic, ferry_output, ferry_success, rt, varied_topic};
use ferry_testkit::{dump_topic, py_produce_to, unique, DumpedRecord, KcatMsg, TestEnv};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

fn ferry_ok(args: &[&str]) -> String {
    ferry_success(args, &[]).0
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_refused(out: &Output, words: &[&str]) {
    let t = text(out);
    assert!(!out.status.success(), "expected a refusal:\n{t}");
    for w in words {
        assert!(t.contains(w), "missing {w:?} in:\n{t}");
    }
}

/// Records by partition without offsets: what must survive a restore exactly.
fn content(dump: &[DumpedRecord]) -> BTreeMap<i32, Vec<DumpedRecord>> {
    let mut out: BTreeMap<i32, Vec<DumpedRecord>> = BTreeMap::new();
    for r in dump {
        out.entry(r.partition).or_default().push(r.clone());
    }
    out
}

/// Every file under `dir` with its bytes, sorted by path.
fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether the cluster has `topic`.
fn topic_exists(env: &TestEnv, topic: &str) -> bool {
    let md = rt().block_on(client(env).metadata(None)).unwrap();
    md.topics
        .iter()
        .any(|t| t.name == topic && t.error.is_none())
}

/// A new key file in `dir`; returns its path and key id (as `ferry keygen` prints it).
fn keygen(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    let path = path.to_str().unwrap().to_string();
    let out = ferry_ok(&["keygen", &path]);
    let id = out
        .split("key id ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap()
        .to_string();
    (path, id)
}

/// Key ids recorded in the manifests under `dir`.
fn manifest_key_ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = common::files_under(&dir.join("topics"), "json")
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "topic.json"))
        .filter_map(|p| {
            let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            m["encryption"]["key_id"].as_str().map(str::to_string)
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn backup(env: &TestEnv, topic: &str, uri: &str, keys: &[&str]) -> Output {
    let mut args = vec![
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        topic,
        "--to",
        uri,
        "--snapshot",
    ];
    for k in keys {
        args.extend(["--encryption-key-file", k]);
    }
    ferry_output(&args, &[])
}

fn restore(env: &TestEnv, uri: &str, topic: &str, target: &str, keys: &[&str]) -> Output {
    let rename = format!("{topic}={target}");
    let mut args = vec![
        "restore",
        "--from",
        uri,
        "--brokers",
        &env.kafka,
        "--topic",
        topic,
        "--rename",
        &rename,
    ];
    for k in keys {
        args.extend(["--encryption-key-file", k]);
    }
    ferry_output(&args, &[])
}

#[test]
fn encrypted_backup_restores_the_varied_topic_and_stores_no_plaintext() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("enc-varied");
    let total = varied_topic(&env, &topic);
    // A known value, key and header, uncompressed, so plain segments hold their bytes.
    let secret = format!("SECRET-{}-value-that-must-not-leak", unique("v"));
    let msgs: Vec<KcatMsg> = (0..20)
        .map(|i| {
            KcatMsg::new(Some(secret.as_bytes()), Some(secret.as_bytes()))
                .header("h", Some(secret.as_bytes()))
                .at(1_764_547_200_000 + i)
        })
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(2), &msgs, "none", false);
    let total = total + msgs.len();
    let keys = tempfile::tempdir().unwrap();
    let (key, key_id) = keygen(keys.path(), "a.key");
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap();

    let out = backup(&env, &topic, uri, &[&key]);
    assert!(out.status.success(), "{}", text(&out));
    let files = all_files(dir.path());
    assert!(files.len() > 4, "{files:?}");
    for (path, bytes) in &files {
        assert!(
            !contains(bytes, secret.as_bytes()),
            "{} holds the known value in plaintext",
            path.display()
        );
    }
    assert_eq!(manifest_key_ids(dir.path()), vec![key_id.clone()]);
    // The same topic backed up without a key does hold the value: the check above can fail.
    let plain = tempfile::tempdir().unwrap();
    let out = backup(&env, &topic, plain.path().to_str().unwrap(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(all_files(plain.path())
        .iter()
        .any(|(_, b)| contains(b, secret.as_bytes())));

    // `ls` and a structural `verify` need no key; a full verify checks every batch.
    let ls: serde_json::Value = serde_json::from_str(&ferry_ok(&["ls", uri, "--json"])).unwrap();
    let parts = ls["topics"][0]["partitions"].as_array().unwrap();
    let records: u64 = parts.iter().map(|p| p["records"].as_u64().unwrap()).sum();
    assert_eq!(records as usize, total);
    assert_eq!(parts[0]["key_ids"][0].as_str(), Some(key_id.as_str()));
    assert!(ferry_ok(&["ls", uri]).contains(&format!("Encrypted with key id(s) {key_id}")));
    let v = ferry_ok(&["verify", uri]);
    assert!(v.contains("checked without the key"), "{v}");
    let v = ferry_ok(&["verify", uri, "--encryption-key-file", &key]);
    assert!(
        v.contains("all good") && !v.contains("without the key"),
        "{v}"
    );

    let restored = format!("{topic}-restored");
    let out = restore(&env, uri, &topic, &restored, &[&key]);
    assert!(out.status.success(), "{}", text(&out));
    let original = dump_topic(&env, &env.kafka, &topic);
    let copy = dump_topic(&env, &env.kafka, &restored);
    assert_eq!(original.len(), total);
    assert_eq!(content(&original), content(&copy));
}

#[test]
fn a_missing_or_wrong_key_is_refused_before_anything_is_written() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("enc-refuse");
    create_topic(&env, &topic, 2, &[]);
    let msgs: Vec<KcatMsg> = (0..30)
        .map(|i| KcatMsg::new(Some(b"k"), Some(format!("v{i}").as_bytes())).at(1_700_000_000_000))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "none", false);
    let keys = tempfile::tempdir().unwrap();
    let (key, key_id) = keygen(keys.path(), "right.key");
    let (wrong, wrong_id) = keygen(keys.path(), "wrong.key");
    // keygen never overwrites a key.
    let again = ferry_output(&["keygen", &key], &[]);
    assert_refused(&again, &["already exists"]);

    // A key file that is not there: nothing at all is written.
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("backup");
    let fresh_uri = fresh.to_str().unwrap();
    let missing = keys.path().join("missing.key");
    let out = backup(&env, &topic, fresh_uri, &[missing.to_str().unwrap()]);
    assert_refused(&out, &["missing.key", "cannot read"]);
    assert!(!fresh.exists(), "a refused backup created its folder");

    let out = backup(&env, &topic, fresh_uri, &[&key]);
    assert!(out.status.success(), "{}", text(&out));
    let before = all_files(&fresh);

    // Restores: without a key, with the wrong key. No target topic appears.
    let target = format!("{topic}-r");
    let out = restore(&env, fresh_uri, &topic, &target, &[]);
    assert_refused(&out, &["is encrypted", &key_id, "Nothing was written"]);
    let out = restore(&env, fresh_uri, &topic, &target, &[&wrong]);
    assert_refused(
        &out,
        &[&key_id, &wrong_id, "wrong.key", "Nothing was written"],
    );
    assert!(
        !topic_exists(&env, &target),
        "a refused restore created {target}"
    );
    // A verify with the wrong key is an error too (not a list of damaged segments).
    let out = ferry_output(&["verify", fresh_uri, "--encryption-key-file", &wrong], &[]);
    assert_refused(&out, &[&key_id, "wrong.key"]);

    // Continuing the backup with the wrong key, or without one: refused, nothing written.
    py_produce_to(&env, &env.kafka, &topic, Some(1), &msgs, "none", false);
    let out = backup(&env, &topic, fresh_uri, &[&wrong]);
    assert_refused(&out, &[&key_id, "none of the given keys", "wrong.key"]);
    let out = backup(&env, &topic, fresh_uri, &[]);
    assert_refused(&out, &["holds encrypted segments", &key_id]);
    // A plain backup is not continued encrypted either.
    let plain = dir.path().join("plain");
    let plain_uri = plain.to_str().unwrap();
    assert!(backup(&env, &topic, plain_uri, &[]).status.success());
    let out = backup(&env, &topic, plain_uri, &[&key]);
    assert_refused(&out, &["not encrypted"]);
    // Keys given for a plain backup: its segments are not what an encrypted backup writes.
    let out = restore(&env, plain_uri, &topic, &target, &[&key]);
    assert_refused(
        &out,
        &[
            "is not encrypted, but keys were given",
            "Nothing was written",
        ],
    );
    assert!(
        !topic_exists(&env, &target),
        "a refused restore created {target}"
    );
    assert_eq!(
        all_files(&fresh),
        before,
        "a refused run changed the backup"
    );
}

#[test]
fn rotated_keys_keep_old_segments_readable_with_the_old_key_given() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("enc-rotate");
    create_topic(&env, &topic, 2, &[]);
    let batch = |from: i64| -> Vec<KcatMsg> {
        (from..from + 40)
            .map(|i| {
                KcatMsg::new(
                    Some(format!("k{i}").as_bytes()),
                    Some(format!("v{i}").as_bytes()),
                )
                .at(1_700_000_000_000 + i)
            })
            .collect()
    };
    for p in 0..2 {
        py_produce_to(&env, &env.kafka, &topic, Some(p), &batch(0), "lz4", false);
    }
    let keys = tempfile::tempdir().unwrap();
    let (a, a_id) = keygen(keys.path(), "a.key");
    let (b, b_id) = keygen(keys.path(), "b.key");
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap();
    assert!(backup(&env, &topic, uri, &[&a]).status.success());
    for p in 0..2 {
        py_produce_to(&env, &env.kafka, &topic, Some(p), &batch(40), "none", false);
    }
    // The new key first, the old one after it: new segments use the new key.
    let out = backup(&env, &topic, uri, &[&b, &a]);
    assert!(out.status.success(), "{}", text(&out));
    let mut both = vec![a_id.clone(), b_id.clone()];
    both.sort();
    assert_eq!(manifest_key_ids(dir.path()), both);

    let target = format!("{topic}-only-b");
    let out = restore(&env, uri, &topic, &target, &[&b]);
    assert_refused(&out, &[&a_id, "b.key", "Nothing was written"]);
    assert!(!topic_exists(&env, &target));

    let restored = format!("{topic}-restored");
    let out = restore(&env, uri, &topic, &restored, &[&b, &a]);
    assert!(out.status.success(), "{}", text(&out));
    let original = dump_topic(&env, &env.kafka, &topic);
    assert_eq!(original.len(), 160);
    assert_eq!(
        content(&original),
        content(&dump_topic(&env, &env.kafka, &restored))
    );
    // Once every partition wrote under the new key, it alone continues the backup.
    for p in 0..2 {
        py_produce_to(&env, &env.kafka, &topic, Some(p), &batch(80), "none", false);
    }
    let out = backup(&env, &topic, uri, &[&b]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn encrypted_backup_on_s3_round_trips() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("enc-s3");
    create_topic(&env, &topic, 2, &[]);
    let msgs: Vec<KcatMsg> = (0..30)
        .map(|i| {
            KcatMsg::new(Some(format!("k{i}").as_bytes()), Some(b"s3-value"))
                .header("h", None)
                .at(1_700_000_000_000 + i)
        })
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "zstd", true);
    py_produce_to(&env, &env.kafka, &topic, Some(1), &msgs, "none", false);
    let keys = tempfile::tempdir().unwrap();
    let (key, _) = keygen(keys.path(), "s3.key");
    let uri = format!(
        "s3://{}/{}?endpoint={}&region=us-east-1",
        env.s3_bucket,
        unique("enc-backup"),
        env.s3_endpoint
    );
    let aws = env.aws_vars();
    let ok = |args: &[&str]| ferry_success(args, &aws).0;
    ok(&[
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--to",
        &uri,
        "--snapshot",
        "--encryption-key-file",
        &key,
    ]);
    let v = ok(&["verify", &uri, "--encryption-key-file", &key]);
    assert!(v.contains("all good"), "{v}");
    let restored = format!("{topic}-s3");
    ok(&[
        "restore",
        "--from",
        &uri,
        "--brokers",
        &env.kafka,
        "--rename",
        &format!("{topic}={restored}"),
        "--encryption-key-file",
        &key,
    ]);
    assert_eq!(
        content(&dump_topic(&env, &env.kafka, &topic)),
        content(&dump_topic(&env, &env.kafka, &restored))
    );
}

#[test]
fn the_encrypted_example_pipeline_takes_its_key_from_the_environment() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("enc-env");
    create_topic(&env, &topic, 1, &[]);
    let msgs: Vec<KcatMsg> = (0..25)
        .map(|i| {
            KcatMsg::new(None, Some(format!("env-value-{i}").as_bytes())).at(1_700_000_000_000)
        })
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "none", false);
    let keys = tempfile::tempdir().unwrap();
    let (key, key_id) = keygen(keys.path(), "env.key");
    let key_text = std::fs::read_to_string(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("b");
    let uri = uri.to_str().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/backup-encrypted.yaml");
    let example = example.to_str().unwrap();
    let vars = [
        ("FERRY_KAFKA", env.kafka.as_str()),
        ("FERRY_TOPIC", topic.as_str()),
        ("FERRY_BACKUP", uri),
    ];
    // Without the variable: refused, naming it, and nothing is written.
    let out = ferry_output(&["run", example], &vars);
    assert_refused(&out, &["FERRY_BACKUP_KEY", "is not set"]);
    assert!(!Path::new(uri).exists());
    let mut with_key = vars.to_vec();
    with_key.push(("FERRY_BACKUP_KEY", key_text.as_str()));
    ferry_success(&["run", example], &with_key);
    assert_eq!(manifest_key_ids(Path::new(uri)), vec![key_id]);
    assert!(!all_files(Path::new(uri))
        .iter()
        .any(|(_, b)| contains(b, b"env-value-1")));
    let restored = format!("{topic}-r");
    let out = restore(&env, uri, &topic, &restored, &[&key]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        content(&dump_topic(&env, &env.kafka, &topic)),
        content(&dump_topic(&env, &env.kafka, &restored))
    );
}

/// `ferry copy` with the key decrypts what it copied and checks every batch: a wrong key or
/// keys for a plain backup are refused with nothing copied, and a segment altered together
/// with its manifest (manifests are not signed), which size and CRC-32C cannot catch, is.
#[test]
fn copy_with_the_key_checks_every_record_and_refuses_a_wrong_key() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("enc-copy");
    create_topic(&env, &topic, 2, &[]);
    let msgs: Vec<KcatMsg> = (0..40)
        .map(|i| KcatMsg::new(Some(format!("k{i}").as_bytes()), Some(b"copied-value")))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "lz4", true);
    py_produce_to(&env, &env.kafka, &topic, Some(1), &msgs, "none", false);
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "a.key");
    let (wrong, wrong_id) = keygen(dir.path(), "wrong.key");
    let src = dir.path().join("backup");
    let src = src.to_str().unwrap();
    let out = backup(&env, &topic, src, &[&key]);
    assert!(out.status.success(), "{}", text(&out));

    // A wrong key: refused before anything is written.
    let refused = dir.path().join("refused");
    let refused = refused.to_str().unwrap();
    let out = ferry_output(
        &["copy", src, refused, "--encryption-key-file", &wrong],
        &[],
    );
    assert_refused(
        &out,
        &["none of the given keys", &wrong_id, "nothing was copied"],
    );
    assert!(!Path::new(refused).exists() || all_files(Path::new(refused)).is_empty());

    // The right key, to S3: every segment decrypted there and checked; the copy restores.
    let aws = env.aws_vars();
    let on_s3 = format!(
        "s3://{}/{}?endpoint={}&region={}",
        env.s3_bucket,
        unique("enc-copy"),
        env.s3_endpoint,
        env.aws_region
    );
    let (out, _) = ferry_success(&["copy", src, &on_s3, "--encryption-key-file", &key], &aws);
    assert!(out.contains("2 segment(s) decrypted and checked"), "{out}");
    let restored = format!("{topic}-copy");
    let rename = format!("{topic}={restored}");
    ferry_success(
        &[
            "restore",
            "--from",
            &on_s3,
            "--brokers",
            &env.kafka,
            "--rename",
            &rename,
            "--encryption-key-file",
            &key,
        ],
        &aws,
    );
    assert_eq!(
        content(&dump_topic(&env, &env.kafka, &topic)),
        content(&dump_topic(&env, &env.kafka, &restored))
    );

    // A segment altered with its manifest made to match: copied without the key (its size
    // and CRC-32C agree), refused with it, the manifest not written.
    let seg = common::files_under(&Path::new(src).join("topics").join(&topic).join("0"), "log")
        .into_iter()
        .next()
        .expect("a segment of partition 0");
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let manifest = seg.with_extension("json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["crc32c"] = crc32c::crc32c(&bytes).into();
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let blind = dir.path().join("blind");
    let blind = blind.to_str().unwrap();
    ferry_success(&["copy", src, blind], &[]);
    let checked = dir.path().join("checked");
    let checked = checked.to_str().unwrap();
    let out = ferry_output(&["copy", src, checked, "--encryption-key-file", &key], &[]);
    assert_refused(&out, &[&format!("topics/{topic}/0/"), "ferry verify"]);
    let copied_manifest = Path::new(checked)
        .join("topics")
        .join(&topic)
        .join("0")
        .join(manifest.file_name().unwrap());
    assert!(
        !copied_manifest.exists(),
        "no manifest for a segment that failed its check"
    );

    // Keys for a plain backup are refused too.
    let plain = dir.path().join("plain");
    let plain = plain.to_str().unwrap();
    assert!(backup(&env, &topic, plain, &[]).status.success());
    let out = ferry_output(
        &["copy", plain, refused, "--encryption-key-file", &key],
        &[],
    );
    assert_refused(&out, &["is not encrypted", "nothing was copied"]);
}

/// `ferry decrypt` opens what an encrypted backup sealed: a dead-letter file (stored without
/// the bad value's bytes) gives back its JSON lines, and a raw segment becomes a Kafka log
/// segment again that Kafka's own DumpLogSegments reads; a wrong key, a plain object and an
/// existing output file are refused.
#[test]
fn ferry_decrypt_opens_dead_letters_and_segments_of_an_encrypted_backup() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("enc-decrypt");
    create_topic(&env, &topic, 1, &[]);
    let secret = "not-json-secret-4711";
    let values = [r#"{"id":1}"#, r#"{"id":2}"#, secret, r#"{"id":4}"#];
    let msgs: Vec<KcatMsg> = values
        .iter()
        .map(|v| KcatMsg::new(Some(b"k"), Some(v.as_bytes())))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "none", true);
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "a.key");
    let (wrong, wrong_id) = keygen(dir.path(), "wrong.key");
    let lake = dir.path().join("lake");
    let yaml = format!(
        "name: sealed\nsource: {{ type: kafka, brokers: [\"{}\"], topics: [\"{topic}\"], stop: high_watermark }}\nsink:\n  type: storage\n  uri: \"{}\"\n  format: parquet\n  encryption: {{ key_file: \"{key}\" }}\n  parquet:\n    value:\n      as: json\n      schema: [{{name: id, type: int64}}]\n      on_error: dead_letter\n",
        env.kafka,
        lake.display()
    );
    let file = dir.path().join("sealed.yaml");
    std::fs::write(&file, yaml).unwrap();
    ferry_ok(&["run", file.to_str().unwrap()]);
    let files = common::files_under(&lake.join("dead-letter"), "jsonl");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(!contains(
        &std::fs::read(&files[0]).unwrap(),
        secret.as_bytes()
    ));
    // Its name in the location, as the dead-letter warning logs it.
    let dead = format!("dead-letter/{topic}/0/{:020}.jsonl", 0);
    let dead = dead.as_str();
    let lake = lake.to_str().unwrap();

    let plain = ferry_ok(&["decrypt", lake, dead, "--encryption-key-file", &key]);
    let lines: Vec<serde_json::Value> = plain
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{plain}");
    assert_eq!(lines[0]["record"]["offset"], 2, "{plain}");
    assert_eq!(lines[0]["record"]["value"], secret, "{plain}");
    assert!(lines[0]["reason"].as_str().is_some_and(|r| !r.is_empty()));

    let out = ferry_output(
        &["decrypt", lake, dead, "--encryption-key-file", &wrong],
        &[],
    );
    assert_refused(&out, &[&wrong_id]);
    let out = ferry_output(&["decrypt", lake, dead], &[]);
    assert_refused(&out, &["--encryption-key-file"]);
    // The name is authenticated: the same bytes under another name do not open.
    let moved = format!("dead-letter/{topic}/0/{:020}.jsonl", 1);
    std::fs::copy(&files[0], Path::new(lake).join(&moved)).unwrap();
    let out = ferry_output(
        &["decrypt", lake, &moved, "--encryption-key-file", &key],
        &[],
    );
    assert_refused(&out, &["moved from another name"]);
    let out = ferry_output(
        &[
            "decrypt",
            lake,
            "dead-letter/none.jsonl",
            "--encryption-key-file",
            &key,
        ],
        &[],
    );
    assert_refused(&out, &["no such object"]);

    // A raw segment, decrypted into a file, is a Kafka log segment again.
    let backup_dir = dir.path().join("backup");
    let out = backup(&env, &topic, backup_dir.to_str().unwrap(), &[&key]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(common::files_under(&backup_dir, "log").len(), 1);
    let backup_uri = backup_dir.to_str().unwrap();
    let seg = format!("topics/{topic}/0/{:020}.log", 0);
    let seg = seg.as_str();
    let log = dir.path().join("00000000000000000000.log");
    let logs = log.to_str().unwrap();
    ferry_ok(&[
        "decrypt",
        backup_uri,
        seg,
        "--encryption-key-file",
        &key,
        "-o",
        logs,
    ]);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "plaintext for its owner only");
    }
    let dump = std::process::Command::new(&env.java)
        .args([
            "-cp",
            &format!("{}/*", env.kafka_libs),
            "org.apache.kafka.tools.DumpLogSegments",
            "--files",
            logs,
            "--print-data-log",
        ])
        .output()
        .expect("DumpLogSegments runs");
    let dumped = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(dumped.contains(&format!("payload: {secret}")), "{dumped}");
    assert_eq!(dumped.matches("payload: ").count(), 4, "{dumped}");

    // An existing output file is never overwritten; a plain object is not decrypted.
    let before = std::fs::read(&log).unwrap();
    let out = ferry_output(
        &[
            "decrypt",
            backup_uri,
            seg,
            "--encryption-key-file",
            &key,
            "-o",
            logs,
        ],
        &[],
    );
    assert_refused(&out, &["never overwritten"]);
    assert_eq!(std::fs::read(&log).unwrap(), before);
    let work = dir.path().to_str().unwrap();
    let out = ferry_output(
        &[
            "decrypt",
            work,
            "00000000000000000000.log",
            "--encryption-key-file",
            &key,
        ],
        &[],
    );
    assert_refused(&out, &["is not encrypted"]);
}
