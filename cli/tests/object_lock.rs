//! S3 Object Lock against moto (the dev environment's S3): `ferry backup --object-lock` locks
//! every segment and manifest (checked with boto3, an independent client: HeadObject shows
//! the mode and the date), the store refuses to delete a locked version, `ferry prune` keeps
//! locked segments and names them, and deletes every version of what it prunes; a bucket
//! without Object Lock is refused before anything is written. Not tested against AWS itself.

mod common;

use common::{create_topic, ferry_output, ferry_success};
use ferry_testkit::{env_or_skip, py_produce_to, run_python_args, unique, KcatMsg, TestEnv};
use std::time::{SystemTime, UNIX_EPOCH};

/// boto3 calls the tests make: `ENDPOINT KEY SECRET REGION COMMAND ARGS…`, one JSON line out.
const S3_SCRIPT: &str = r#"
import sys, json, datetime, boto3
from botocore.exceptions import ClientError
ep, ak, sk, region, cmd = sys.argv[1:6]
a = sys.argv[6:]
s3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id=ak, aws_secret_access_key=sk, region_name=region)
def out(v):
    print(json.dumps(v))
if cmd == "create-locked":
    s3.create_bucket(Bucket=a[0], ObjectLockEnabledForBucket=True)
    out("ok")
elif cmd == "head":
    h = s3.head_object(Bucket=a[0], Key=a[1])
    until = h.get("ObjectLockRetainUntilDate")
    out({"mode": h.get("ObjectLockMode"), "until": until.timestamp() if until else None})
elif cmd == "versions":
    r = s3.list_object_versions(Bucket=a[0], Prefix=a[1])
    out({"versions": [[v["Key"], v["VersionId"]] for v in r.get("Versions", [])],
         "markers": [[v["Key"], v["VersionId"]] for v in r.get("DeleteMarkers", [])]})
elif cmd == "delete-version":
    try:
        s3.delete_object(Bucket=a[0], Key=a[1], VersionId=a[2])
        out("deleted")
    except ClientError as e:
        out(e.response["Error"]["Code"])
elif cmd == "unlock":
    # Moto accepts a retain-until date in the past (AWS does not: there the lock has to end).
    for key in a[1:]:
        s3.put_object_retention(Bucket=a[0], Key=key, BypassGovernanceRetention=True,
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)})
    out("ok")
elif cmd == "list":
    r = s3.list_objects_v2(Bucket=a[0], Prefix=a[1])
    out([o["Key"] for o in r.get("Contents", [])])
"#;

fn s3(env: &TestEnv, args: &[&str]) -> serde_json::Value {
    let mut all = vec![
        env.s3_endpoint.as_str(),
        env.aws_access_key_id.as_str(),
        env.aws_secret_access_key.as_str(),
        env.aws_region.as_str(),
    ];
    all.extend_from_slice(args);
    let out = run_python_args(env, S3_SCRIPT, &all, b"");
    serde_json::from_slice(&out).expect("the S3 script prints JSON")
}

fn partition_summary(uri: &str, vars: &[(&str, &str)]) -> (i64, i64, u64, u64) {
    let (out, _) = ferry_success(&["ls", uri, "--json"], vars);
    let ls: serde_json::Value = serde_json::from_str(&out).expect("ls json");
    let p = &ls["topics"][0]["partitions"][0];
    (
        p["first_offset"].as_i64().expect("first_offset"),
        p["next_offset"].as_i64().expect("next_offset"),
        p["records"].as_u64().expect("records"),
        p["segments"].as_u64().expect("segments"),
    )
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A bucket name S3 accepts (lowercase, at most 63 characters).
fn bucket_name(prefix: &str) -> String {
    let mut b = unique(prefix).to_ascii_lowercase();
    b.truncate(63);
    b
}

#[test]
fn backup_locks_segments_and_manifests_and_prune_keeps_them() {
    let Some(env) = env_or_skip() else { return };
    let vars = env.aws_vars();
    let bucket = bucket_name("ferry-lock");
    assert_eq!(s3(&env, &["create-locked", &bucket]), "ok");
    let prefix = "backup";
    let uri = format!(
        "s3://{bucket}/{prefix}?endpoint={}&region={}",
        env.s3_endpoint, env.aws_region
    );
    let topic = unique("object-lock");
    create_topic(&env, &topic, 1, &[]);
    // Three eras of 100 records (2001, 2011, 2021), each backed up by a run of its own: one
    // segment per era.
    let eras = [978_307_200_000i64, 1_293_840_000_000, 1_609_459_200_000];
    let started = now_s();
    for (e, ts) in eras.iter().enumerate() {
        let msgs: Vec<KcatMsg> = (0..100)
            .map(|i| {
                let v = format!("era{e}-{i}");
                KcatMsg::new(Some(v.as_bytes()), Some(v.as_bytes())).at(ts + i)
            })
            .collect();
        py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "none", true);
        ferry_success(
            &[
                "backup",
                "--brokers",
                &env.kafka,
                "--topic",
                &topic,
                "--to",
                &uri,
                "--snapshot",
                "--object-lock",
                "governance:2d",
            ],
            &vars,
        );
    }
    assert_eq!(partition_summary(&uri, &vars), (0, 300, 300, 3));

    // Every segment and manifest is locked in governance mode for two days; the lease and
    // the checkpoint are not.
    let key = |first: i64, ext: &str| format!("{prefix}/topics/{topic}/0/{first:020}.{ext}");
    let two_days = 2.0 * 86_400.0;
    for first in [0, 100, 200] {
        for ext in ["log", "json"] {
            let h = s3(&env, &["head", &bucket, &key(first, ext)]);
            assert_eq!(h["mode"], "GOVERNANCE", "{first}.{ext}: {h}");
            let until = h["until"].as_f64().expect("a retain-until date");
            assert!(
                until >= started + two_days - 60.0 && until <= now_s() + two_days + 60.0,
                "{first}.{ext}: locked until {until}, started at {started}"
            );
        }
    }
    let checkpoint = format!("{prefix}/checkpoints/backup.json");
    assert_eq!(
        s3(&env, &["head", &bucket, &checkpoint])["mode"],
        serde_json::Value::Null
    );

    // The store refuses to delete the locked version.
    let seg0 = key(0, "log");
    let versions = s3(&env, &["versions", &bucket, &seg0]);
    let vid = versions["versions"][0][1]
        .as_str()
        .expect("a version")
        .to_string();
    assert_eq!(
        s3(&env, &["delete-version", &bucket, &seg0, &vid]),
        "AccessDenied"
    );
    assert_eq!(
        s3(&env, &["versions", &bucket, &seg0])["versions"][0][1],
        vid.as_str()
    );

    // Prune: both older eras are older than the bound, both are locked; nothing goes, and
    // the output names the first locked segment's objects and their dates.
    let bound = "2021-01-01T00:00:00.050Z";
    let (out, _) = ferry_success(&["prune", &uri, "--before", bound, "--dry-run"], &vars);
    assert!(out.contains("still locked (S3 Object Lock)"), "{out}");
    assert!(
        out.contains(&format!(
            "topics/{topic}/0/{:020}.log (GOVERNANCE until ",
            0
        )),
        "{out}"
    );
    assert!(out.contains("would delete 0 segment(s)"), "{out}");
    assert!(
        out.contains("2 segment(s) older than the bound kept"),
        "{out}"
    );
    let (out, _) = ferry_success(&["prune", &uri, "--before", bound], &vars);
    assert!(out.contains("deleted 0 segment(s)"), "{out}");
    assert!(
        out.contains("the segment from offset 0 and 1 later segment(s)"),
        "{out}"
    );
    assert_eq!(partition_summary(&uri, &vars), (0, 300, 300, 3));

    // The first era's lock ends (moto lets the test set a past date): that segment goes,
    // every version of it, and the second, still locked, stays.
    assert_eq!(s3(&env, &["unlock", &bucket, &seg0, &key(0, "json")]), "ok");
    let (out, _) = ferry_success(&["prune", &uri, "--before", bound, "--dry-run"], &vars);
    assert!(
        out.contains("would delete 1 segment(s), 100 records"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "topics/{topic}/0/{:020}.log (GOVERNANCE until ",
            100
        )),
        "{out}"
    );
    assert_eq!(partition_summary(&uri, &vars), (0, 300, 300, 3));
    let (out, _) = ferry_success(&["prune", &uri, "--before", bound], &vars);
    assert!(out.contains("deleted 1 segment(s), 100 records"), "{out}");
    assert!(out.contains("kept from offset 100"), "{out}");
    assert!(
        out.contains("every version: the bucket is versioned"),
        "{out}"
    );
    assert!(
        out.contains("1 segment(s) older than the bound kept"),
        "{out}"
    );
    for gone in [seg0.clone(), key(0, "json")] {
        let v = s3(&env, &["versions", &bucket, &gone]);
        assert_eq!(v["versions"], serde_json::json!([]), "{gone}: {v}");
        assert_eq!(v["markers"], serde_json::json!([]), "{gone}: {v}");
    }
    assert_eq!(partition_summary(&uri, &vars), (100, 300, 200, 2));
    let (v, _) = ferry_success(&["verify", &uri], &vars);
    assert!(v.contains("all good"), "{v}");
}

#[test]
fn a_bucket_without_object_lock_is_refused_before_anything_is_written() {
    let Some(env) = env_or_skip() else { return };
    let vars = env.aws_vars();
    let topic = unique("object-lock-refused");
    create_topic(&env, &topic, 1, &[]);
    let msgs = vec![KcatMsg::new(Some(b"k"), Some(b"v"))];
    py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "none", true);
    let prefix = unique("no-lock");
    let uri = env.s3_uri(&prefix);
    let out = ferry_output(
        &[
            "backup",
            "--brokers",
            &env.kafka,
            "--topic",
            &topic,
            "--to",
            &uri,
            "--snapshot",
            "--object-lock",
            "compliance:1d",
        ],
        &vars,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("does not have S3 Object Lock enabled")
            && stderr.contains("put-object-lock-configuration"),
        "{stderr}"
    );
    assert_eq!(
        s3(&env, &["list", &env.s3_bucket, &format!("{prefix}/")]),
        serde_json::json!([]),
        "nothing written"
    );
}

#[test]
fn object_lock_options_are_checked() {
    // No environment needed: these fail (or print) before any connection.
    let base = [
        "backup",
        "--brokers",
        "127.0.0.1:1",
        "--topic",
        "t",
        "--print-pipeline",
    ];
    let run = |extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        ferry_output(&args, &[])
    };
    let out = run(&[
        "--to",
        "/tmp/ferry-lock-local",
        "--object-lock",
        "governance:30d",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--object-lock: S3 Object Lock needs an s3:// location"),
        "{err}"
    );
    let out = run(&["--to", "s3://b/p", "--object-lock", "forever"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("MODE:DAYS"), "{err}");
    let out = run(&["--to", "s3://b/p", "--object-lock", "compliance:0d"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 1 and 36500"));
    let (yaml, _) = ferry_success(
        &[
            &base[..],
            &["--to", "s3://b/p", "--object-lock", "Compliance:7"],
        ]
        .concat(),
        &[],
    );
    assert!(yaml.contains("object_lock:"), "{yaml}");
    assert!(
        yaml.contains("mode: compliance") && yaml.contains("days: 7"),
        "{yaml}"
    );

    // The same check on a pipeline file.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        "name: p\nsource: {type: generator, count: 1}\nsink: {type: storage, uri: /tmp/x, object_lock: {mode: governance, days: 3}}\n",
    )
    .expect("write");
    let out = ferry_output(&["validate", file.to_str().expect("utf-8")], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("object_lock: S3 Object Lock needs an s3:// location"),
        "{err}"
    );
}

/// `ferry copy --object-lock`: an air-gapped vault's copy on S3 is locked like a backup
/// written there (every segment and manifest; documents not), a newest segment a killed
/// copy left unlocked is locked by the next run, and a bucket without Object Lock, a local
/// destination and `--delete-extraneous` are refused with nothing written.
#[test]
fn a_copy_with_object_lock_locks_what_it_writes() {
    let Some(env) = env_or_skip() else { return };
    let vars = env.aws_vars();
    let topic = unique("copy-lock");
    create_topic(&env, &topic, 1, &[]);
    let dir = tempfile::tempdir().expect("dir");
    let src = dir.path().join("backup");
    let src = src.to_str().expect("path");
    let backup_run = |n: usize| {
        let msgs: Vec<KcatMsg> = (0..50)
            .map(|i| KcatMsg::new(Some(format!("{n}-{i}").as_bytes()), Some(b"vault")))
            .collect();
        py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "none", true);
        common::snapshot_backup(&env, &topic, src);
    };
    backup_run(0);
    backup_run(1);
    let bucket = bucket_name("ferry-vault");
    assert_eq!(s3(&env, &["create-locked", &bucket]), "ok");
    let vault = format!(
        "s3://{bucket}/vault?endpoint={}&region={}",
        env.s3_endpoint, env.aws_region
    );
    let key = |first: i64, ext: &str| format!("vault/topics/{topic}/0/{first:020}.{ext}");
    let started = now_s();
    ferry_success(
        &["copy", src, &vault, "--object-lock", "governance:3d"],
        &vars,
    );
    let three_days = 3.0 * 86_400.0;
    for first in [0, 50] {
        for ext in ["log", "json"] {
            let h = s3(&env, &["head", &bucket, &key(first, ext)]);
            assert_eq!(h["mode"], "GOVERNANCE", "{first}.{ext}: {h}");
            let until = h["until"].as_f64().expect("a retain-until date");
            assert!(
                until >= started + three_days - 60.0 && until <= now_s() + three_days + 60.0,
                "{first}.{ext}: locked until {until}"
            );
        }
    }
    assert_eq!(
        s3(&env, &["head", &bucket, "vault/ferry.json"])["mode"],
        serde_json::Value::Null,
        "documents are not locked"
    );
    let seg = key(0, "log");
    let vid = s3(&env, &["versions", &bucket, &seg])["versions"][0][1]
        .as_str()
        .expect("a version")
        .to_string();
    assert_eq!(
        s3(&env, &["delete-version", &bucket, &seg, &vid]),
        "AccessDenied"
    );

    // A third segment copied without the lock (as a copy killed between writing and
    // locking leaves it): the next locked run locks it, and copies nothing.
    backup_run(2);
    ferry_success(&["copy", src, &vault], &vars);
    assert_eq!(
        s3(&env, &["head", &bucket, &key(100, "log")])["mode"],
        serde_json::Value::Null
    );
    let (out, _) = ferry_success(
        &["copy", src, &vault, "--object-lock", "governance:3d"],
        &vars,
    );
    assert!(out.contains("copied 0 object(s)"), "{out}");
    for ext in ["log", "json"] {
        assert_eq!(
            s3(&env, &["head", &bucket, &key(100, ext)])["mode"],
            "GOVERNANCE",
            "100.{ext}"
        );
    }
    let (v, _) = ferry_success(&["verify", &vault], &vars);
    assert!(v.contains("all good"), "{v}");

    // Refusals, nothing written.
    let plain = unique("copy-no-lock");
    let out = ferry_output(
        &[
            "copy",
            src,
            &env.s3_uri(&plain),
            "--object-lock",
            "compliance:1d",
        ],
        &vars,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--object-lock") && err.contains("does not have S3 Object Lock enabled"),
        "{err}"
    );
    assert_eq!(
        s3(&env, &["list", &env.s3_bucket, &format!("{plain}/")]),
        serde_json::json!([]),
        "nothing written"
    );
    let local = dir.path().join("local-copy");
    let out = ferry_output(
        &[
            "copy",
            src,
            local.to_str().expect("path"),
            "--object-lock",
            "governance:1d",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("needs an s3:// location"),
        "{err}"
    );
    assert!(!local.exists(), "nothing written");
    let out = ferry_output(
        &[
            "copy",
            src,
            &vault,
            "--object-lock",
            "governance:1d",
            "--delete-extraneous",
        ],
        &vars,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("ferry prune"),
        "{err}"
    );
}
