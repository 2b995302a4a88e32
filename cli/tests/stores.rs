//! Every object store for real, on the dev environment: Azure Blob against Azurite and GCS
//! against fake-gcs-server, as S3 against moto is tested elsewhere (backup_restore.rs,
//! copy.rs). For each store: a backup of the varied topic written there restores identical
//! to the source; `ferry prune` deletes old segments there and what stays restores as the
//! source's suffix. And one chain of `ferry copy`: a local folder → S3 → Azure → GCS, each
//! copy verified, listed like the backup, copied again for nothing, and the last one restored
//! identical to the source.
//!
//! The stores' URIs come from the testkit (`TestEnv::azure_uri`, `gcs_uri`, `s3_uri`): Azurite
//! takes the development account's key from `AZURE_STORAGE_KEY`, fake-gcs-server unsigned
//! requests (`anonymous=true`).

mod common;

use common::{create_topic, ferry_output, ferry_success, varied_topic};
use ferry_testkit::{
    dump_topic, env_or_skip, py_produce_to, unique, DumpedRecord, KcatMsg, TestEnv,
};

#[derive(Debug, Clone, Copy)]
enum Store {
    Azure,
    Gcs,
}

impl Store {
    fn uri(self, env: &TestEnv, prefix: &str) -> String {
        match self {
            Store::Azure => env.azure_uri(prefix),
            Store::Gcs => env.gcs_uri(prefix),
        }
    }
}

fn sorted(mut v: Vec<DumpedRecord>) -> Vec<DumpedRecord> {
    v.sort_by_key(|r| (r.partition, r.offset));
    v
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

/// Restores `topic` from `uri` into a new topic and returns what an independent client
/// reads there.
fn restore(env: &TestEnv, uri: &str, topic: &str, vars: &[(&str, &str)]) -> Vec<DumpedRecord> {
    let target = unique(&format!("{topic}-restored"));
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
        vars,
    );
    sorted(dump_topic(env, &env.kafka, &target))
}

fn round_trip(store: Store) {
    let Some(env) = env_or_skip() else { return };
    let vars = env.store_vars();
    let topic = unique("stores-rt");
    varied_topic(&env, &topic);
    let source = sorted(dump_topic(&env, &env.kafka, &topic));
    let uri = store.uri(&env, &unique("round-trip"));
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
        ],
        &vars,
    );
    let (v, _) = ferry_success(&["verify", &uri], &vars);
    assert!(v.contains("all good"), "{store:?}: {v}");
    let restored = restore(&env, &uri, &topic, &vars);
    assert_eq!(restored.len(), source.len(), "{store:?}");
    assert!(
        restored == source,
        "{store:?}: the restore equals the source"
    );
}

#[test]
fn round_trip_through_azure_blob() {
    round_trip(Store::Azure);
}

#[test]
fn round_trip_through_gcs() {
    round_trip(Store::Gcs);
}

#[test]
fn copy_from_a_folder_through_s3_azure_and_gcs_restores_identically() {
    let Some(env) = env_or_skip() else { return };
    let vars = env.store_vars();
    let topic = unique("stores-copy");
    varied_topic(&env, &topic);
    let source = sorted(dump_topic(&env, &env.kafka, &topic));
    let dir = tempfile::tempdir().expect("dir");
    let backup = dir.path().join("backup");
    let backup = backup.to_str().expect("path");
    common::snapshot_backup(&env, &topic, backup);
    let prefix = unique("copy-chain");
    let chain = [
        backup.to_string(),
        env.s3_uri(&prefix),
        env.azure_uri(&prefix),
        env.gcs_uri(&prefix),
    ];
    let listed = ls(backup, &[]);
    for hop in chain.windows(2) {
        let (from, to) = (&hop[0], &hop[1]);
        let (out, _) = ferry_success(&["copy", from, to, "--verify"], &vars);
        assert!(!out.contains("copied 0 object"), "{from} → {to}: {out}");
        let (again, _) = ferry_success(&["copy", from, to], &vars);
        assert!(
            again.contains("copied 0 object(s), 0 bytes"),
            "{from} → {to}: a second run copies nothing: {again}"
        );
        let (v, _) = ferry_success(&["verify", to], &vars);
        assert!(v.contains("all good"), "{to}: {v}");
        assert_eq!(ls(to, &vars), listed, "{to} lists like the backup");
    }
    let restored = restore(&env, &chain[3], &topic, &vars);
    assert_eq!(restored.len(), source.len());
    assert!(
        restored == source,
        "the restore from the GCS end of the chain equals the source"
    );
}

fn partition_summary(uri: &str, vars: &[(&str, &str)]) -> (i64, i64, u64, u64) {
    let ls = ls(uri, vars);
    let p = &ls["topics"][0]["partitions"][0];
    (
        p["first_offset"].as_i64().expect("first_offset"),
        p["next_offset"].as_i64().expect("next_offset"),
        p["records"].as_u64().expect("records"),
        p["segments"].as_u64().expect("segments"),
    )
}

fn prune_on(store: Store) {
    let Some(env) = env_or_skip() else { return };
    let vars = env.store_vars();
    let topic = unique("stores-prune");
    create_topic(&env, &topic, 1, &[]);
    // Three eras, 100 records each: 2001, 2011 and 2021; one produce call per era is one
    // batch, and with segments of at most 50 records each era is a segment of its own.
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
    let uri = store.uri(&env, &unique("prune"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        format!(
            "name: prune\nsource: {{type: kafka, brokers: [\"{}\"], topics: [{topic}], stop: high_watermark}}\nsink: {{type: storage, uri: \"{uri}\", roll: {{max_records: 50}}}}\n",
            env.kafka
        ),
    )
    .expect("write");
    ferry_success(&["run", file.to_str().expect("utf-8")], &vars);
    assert_eq!(
        partition_summary(&uri, &vars),
        (0, 300, 300, 3),
        "{store:?}"
    );

    let bound = "2011-01-01T00:00:00.050Z";
    let (out, _) = ferry_success(&["prune", &uri, "--before", bound, "--dry-run"], &vars);
    assert!(
        out.contains("would delete 1 segment(s), 100 records"),
        "{store:?}: {out}"
    );
    assert_eq!(
        partition_summary(&uri, &vars),
        (0, 300, 300, 3),
        "{store:?}"
    );

    let (out, _) = ferry_success(&["prune", &uri, "--before", bound], &vars);
    assert!(
        out.contains("deleted 1 segment(s), 100 records"),
        "{store:?}: {out}"
    );
    assert!(out.contains("kept from offset 100"), "{store:?}: {out}");
    assert_eq!(
        partition_summary(&uri, &vars),
        (100, 300, 200, 2),
        "{store:?}"
    );
    let (v, _) = ferry_success(&["verify", &uri], &vars);
    assert!(v.contains("all good"), "{store:?}: {v}");

    let source: Vec<_> = dump_topic(&env, &env.kafka, &topic)
        .into_iter()
        .filter(|r| r.offset >= 100)
        .map(|r| (r.key, r.value, r.timestamp))
        .collect();
    let restored: Vec<_> = restore(&env, &uri, &topic, &vars)
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect();
    assert_eq!(source.len(), 200);
    assert_eq!(source, restored, "{store:?}");

    // Everything old: the newest segment of the partition stays.
    let (out, _) = ferry_success(&["prune", &uri, "--keep", "1s"], &vars);
    assert!(out.contains("deleted 1 segment(s)"), "{store:?}: {out}");
    assert_eq!(
        partition_summary(&uri, &vars),
        (200, 300, 100, 1),
        "{store:?}"
    );
    ferry_success(&["verify", &uri], &vars);
}

#[test]
fn prune_on_azure_blob() {
    prune_on(Store::Azure);
}

#[test]
fn prune_on_gcs() {
    prune_on(Store::Gcs);
}

/// Credentials are what the URI or the environment gives, and a missing or wrong one is
/// named: an Azure URI with no key is refused before anything is read, a wrong key is
/// "access denied", and GCS without `anonymous=true` or a credential says how to give one.
#[test]
fn missing_or_wrong_credentials_are_named() {
    let Some(env) = env_or_skip() else { return };
    let stderr = |uri: &str, vars: &[(&str, &str)]| {
        let out = ferry_output(&["ls", uri], vars);
        assert!(!out.status.success(), "ferry ls {uri} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let azure = env.azure_uri(&unique("no-key"));
    let err = stderr(&azure, &[("AZURE_STORAGE_KEY", "")]);
    assert!(err.contains("gives no Azure credentials"), "{err}");
    // A valid base64 key that is not the account's.
    let err = stderr(
        &azure,
        &[("AZURE_STORAGE_KEY", "d3Jvbmcta2V5LXdyb25nLWtleQ==")],
    );
    assert!(err.contains("access denied"), "{err}");
    let home = tempfile::tempdir().expect("home");
    let gcs = env
        .gcs_uri(&unique("no-key"))
        .replace("&anonymous=true", "");
    let err = stderr(
        &gcs,
        &[
            ("GOOGLE_APPLICATION_CREDENTIALS", ""),
            ("HOME", home.path().to_str().expect("utf-8")),
        ],
    );
    assert!(err.contains("no GCS credentials found"), "{err}");
}

/// What the backup's lease and its create-only manifests rely on holds on both emulators:
/// a create-only write refuses an object that exists (If-None-Match on Azure,
/// ifGenerationMatch=0 on GCS), and list and delete see the prefix as written.
#[test]
fn create_only_writes_list_and_delete_hold_on_azure_and_gcs() {
    let Some(env) = env_or_skip() else { return };
    common::rt().block_on(async {
        for store in [Store::Azure, Store::Gcs] {
            let mut uri = store.uri(&env, &unique("create-only"));
            if let Store::Azure = store {
                uri = format!("{uri}&account_key={}", env.azure_key);
            }
            let s = ferry_core::Storage::from_uri(&uri).expect("open");
            s.check().await.unwrap_or_else(|e| panic!("{store:?}: {e}"));
            assert!(s.write_new("m/1.json", "one").await.expect("create"));
            assert!(
                !s.write_new("m/1.json", "two").await.expect("create again"),
                "{store:?}: a create-only write replaced an object"
            );
            assert_eq!(&s.read("m/1.json").await.expect("read")[..], b"one");
            assert!(
                s.write_new("m/1.json", "one")
                    .await
                    .expect("create the same"),
                "{store:?}: a create finding its own bytes (a retry after a lost answer) failed"
            );
            s.write("m/2.json", "2").await.expect("write");
            assert_eq!(
                s.list("m/").await.expect("list"),
                vec!["m/1.json".to_string(), "m/2.json".to_string()],
                "{store:?}"
            );
            s.delete("m/1.json").await.expect("delete");
            s.delete("m/1.json").await.expect("delete again");
            assert_eq!(s.read_opt("m/1.json").await.expect("read"), None);
            assert_eq!(s.list("m/").await.expect("list"), vec!["m/2.json"]);
        }
    });
}

/// boto3 on the dev S3 server: `ENDPOINT KEY SECRET REGION BUCKET PREFIX start|list`. `start`
/// begins a multipart upload of one part under PREFIX and never completes it (what a writer
/// killed mid-segment leaves); `list` prints the keys of the unfinished uploads under PREFIX.
const MULTIPART_PY: &str = r#"
import sys, json, boto3
ep, ak, sk, region, bucket, prefix, cmd = sys.argv[1:8]
s3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id=ak, aws_secret_access_key=sk, region_name=region)
if cmd == "start":
    key = prefix + "/topics/t/0/00000000000000000000.log"
    u = s3.create_multipart_upload(Bucket=bucket, Key=key)
    s3.upload_part(Bucket=bucket, Key=key, UploadId=u["UploadId"], PartNumber=1, Body=b"x" * (5 << 20))
    print(json.dumps(key))
else:
    r = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix + "/")
    print(json.dumps([u["Key"] for u in r.get("Uploads", [])]))
"#;

/// A multipart upload a crashed writer left unfinished in an S3 location is aborted by the
/// next backup there (under its lease), and one elsewhere in the bucket is left alone.
#[test]
fn the_next_backup_aborts_the_unfinished_uploads_a_crash_left_on_s3() {
    let Some(env) = env_or_skip() else { return };
    let vars = env.aws_vars();
    let topic = unique("multipart");
    create_topic(&env, &topic, 1, &[]);
    let msgs: Vec<KcatMsg> = (0..50)
        .map(|i| KcatMsg::new(None, Some(format!("v{i}").as_bytes())))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, None, &msgs, "none", false);
    let (prefix, elsewhere) = (unique("multipart"), unique("multipart-other"));
    let uri = env.s3_uri(&prefix);
    let backup = |uri: &str| {
        ferry_success(
            &[
                "backup",
                "--brokers",
                &env.kafka,
                "--topic",
                &topic,
                "--to",
                uri,
                "--snapshot",
            ],
            &vars,
        )
    };
    backup(&uri);
    let boto = |prefix: &str, cmd: &str| -> serde_json::Value {
        let out = ferry_testkit::run_python_args(
            &env,
            MULTIPART_PY,
            &[
                &env.s3_endpoint,
                &env.aws_access_key_id,
                &env.aws_secret_access_key,
                &env.aws_region,
                &env.s3_bucket,
                prefix,
                cmd,
            ],
            b"",
        );
        serde_json::from_slice(&out).expect("json")
    };
    boto(&prefix, "start");
    boto(&elsewhere, "start");
    assert_eq!(boto(&prefix, "list").as_array().map(Vec::len), Some(1));
    produce_more(&env, &topic);
    let (_, log) = backup(&uri);
    assert!(
        log.contains("aborted the unfinished multipart uploads"),
        "{log}"
    );
    assert_eq!(boto(&prefix, "list"), serde_json::json!([]), "aborted");
    assert_eq!(
        boto(&elsewhere, "list").as_array().map(Vec::len),
        Some(1),
        "another location's upload is not this backup's to abort"
    );
    let (v, _) = ferry_success(&["verify", &uri], &vars);
    assert!(v.contains("all good") && v.contains("60 record(s)"), "{v}");
}

fn produce_more(env: &TestEnv, topic: &str) {
    let msgs: Vec<KcatMsg> = (0..10)
        .map(|i| KcatMsg::new(None, Some(format!("w{i}").as_bytes())))
        .collect();
    py_produce_to(env, &env.kafka, topic, None, &msgs, "none", false);
}
