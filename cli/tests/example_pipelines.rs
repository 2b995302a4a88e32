//! The example pipelines in `pipelines/` run against the real Kafka broker: backup,
//! restore (point in time, renamed, groups), cluster-to-cluster copy and the exports.

mod common;

use ferry_kafka::{Client, ClientConfig, NewTopic};
use ferry_testkit::{dump_topic, py_produce_to, unique, KcatMsg};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipelines")
        .join(name)
}

fn run(file: &Path, vars: &[(&str, &str)]) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("run")
        .arg(file)
        .envs(vars.iter().copied())
        .output()
        .expect("ferry runs");
    assert!(
        out.status.success(),
        "ferry run {} failed:\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn backup_restore_copy_and_export_examples_run() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("example");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = Client::connect(ClientConfig::new(std::slice::from_ref(&env.kafka)))
            .await
            .unwrap();
        c.create_topics(&[NewTopic {
            name: topic.clone(),
            partitions: 2,
            replication_factor: 1,
            configs: BTreeMap::from([("retention.ms".to_string(), "-1".to_string())]),
        }])
        .await
        .unwrap();
    });
    let msgs: Vec<KcatMsg> = (0..40)
        .map(|i| {
            let v = format!("{{\"n\":{i},\"customer\":{{\"email\":\"u{i}@example.com\"}}}}");
            KcatMsg::new(Some(format!("k{i}").as_bytes()), Some(v.as_bytes()))
                .at(1_700_000_000_000 + i * 1000)
        })
        .collect();
    py_produce_to(
        &env,
        &env.kafka,
        &topic,
        Some(0),
        &msgs[..25],
        "none",
        false,
    );
    py_produce_to(
        &env,
        &env.kafka,
        &topic,
        Some(1),
        &msgs[25..],
        "zstd",
        false,
    );

    let work = tempfile::tempdir().unwrap();
    let backup = work.path().join("backup");
    let state = work.path().join("state");
    let lake = work.path().join("lake");
    let lake_avro = work.path().join("lake-avro");
    let vars = [
        ("FERRY_KAFKA", env.kafka.as_str()),
        ("FERRY_SOURCE", env.kafka.as_str()),
        ("FERRY_TARGET", env.kafka.as_str()),
        ("FERRY_TOPIC", topic.as_str()),
        ("FERRY_BACKUP", backup.to_str().unwrap()),
        ("FERRY_STATE", state.to_str().unwrap()),
        ("FERRY_LAKE", lake.to_str().unwrap()),
        ("FERRY_UNTIL", "1700000009500"), // partition 0: offsets 0..=9
    ];
    run(&example("backup-snapshot.yaml"), &vars);
    run(&example("restore-point-in-time.yaml"), &vars);
    let restored = dump_topic(&env, &env.kafka, &format!("restored.{topic}"));
    assert_eq!(
        restored.len(),
        10,
        "until keeps offsets 0..=9 of partition 0, none of partition 1"
    );

    run(&example("kafka-to-kafka.yaml"), &vars);
    let copy = dump_topic(&env, &env.kafka, &format!("copy.{topic}"));
    assert_eq!(copy.len(), 40);
    let v = String::from_utf8(copy[0].value.clone().unwrap()).unwrap();
    assert!(v.contains("\"email\":\"***\""), "masked: {v}");

    // The same backup kept in two places: both list the 40 records.
    let (here, there) = (work.path().join("here"), work.path().join("there"));
    let two_vars: Vec<(&str, &str)> = vars
        .iter()
        .copied()
        .filter(|(k, _)| *k != "FERRY_BACKUP")
        .chain([
            ("FERRY_BACKUP", here.to_str().unwrap()),
            ("FERRY_VAULT", there.to_str().unwrap()),
        ])
        .collect();
    run(&example("backup-two-places.yaml"), &two_vars);
    for place in [&here, &there] {
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["ls", place.to_str().unwrap(), "--json"])
            .output()
            .expect("ferry ls runs");
        let listing: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ls json");
        let records: u64 = listing["topics"][0]["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .filter_map(|p| p["records"].as_u64())
            .sum();
        assert_eq!(records, 40, "{}: {listing}", place.display());
    }

    run(&example("export-parquet.yaml"), &vars);
    assert!(common::files_under(&lake, "parquet").len() >= 2);
    let avro_vars: Vec<(&str, &str)> = vars
        .iter()
        .copied()
        .filter(|(k, _)| *k != "FERRY_LAKE")
        .chain([("FERRY_LAKE", lake_avro.to_str().unwrap())])
        .collect();
    run(&example("export-avro.yaml"), &avro_vars);
    assert!(common::files_under(&lake_avro, "avro").len() >= 2);
}

/// Fetches `http://{addr}/metrics` (plain HTTP/1.0, no client crate needed).
fn scrape(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).ok()?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: ferry\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    conn.read_to_string(&mut body).ok()?;
    Some(body)
}

/// A free loopback port for the Prometheus listener.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `pipelines/backup-continuous-s3.yaml` as a user runs it: it follows the topic into the S3
/// server, serves Prometheus metrics that count what it read, and on SIGTERM flushes,
/// checkpoints and exits 0; the backup then holds every record once (`ferry ls`,
/// `ferry verify`).
#[test]
fn continuous_s3_example_follows_serves_metrics_and_drains_on_sigterm() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("example-continuous");
    let msgs: Vec<KcatMsg> = (0..30)
        .map(|i| KcatMsg::new(Some(format!("k{i}").as_bytes()), Some(b"v")))
        .collect();
    py_produce_to(&env, &env.kafka, &topic, None, &msgs[..20], "none", false);
    let prefix = unique("continuous-example");
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("run")
        .arg(example("backup-continuous-s3.yaml"))
        .envs([
            ("FERRY_KAFKA", env.kafka.as_str()),
            ("FERRY_TOPICS", topic.as_str()),
            ("FERRY_S3_BUCKET", env.s3_bucket.as_str()),
            ("FERRY_S3_PREFIX", prefix.as_str()),
            ("FERRY_S3_ENDPOINT", env.s3_endpoint.as_str()),
            ("FERRY_PROMETHEUS", metrics_addr.as_str()),
            ("AWS_ACCESS_KEY_ID", env.aws_access_key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", env.aws_secret_access_key.as_str()),
            ("AWS_REGION", env.aws_region.as_str()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ferry runs");
    // Records produced while it runs are followed too.
    std::thread::sleep(std::time::Duration::from_secs(2));
    py_produce_to(&env, &env.kafka, &topic, None, &msgs[20..], "none", false);
    let source_records = |body: &str| -> f64 {
        body.lines()
            .filter(|l| l.starts_with("ferry_records_total") && l.contains("stage=\"source\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seen = 0.0;
    while seen < 30.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(300));
        seen = scrape(&metrics_addr).map_or(0.0, |b| source_records(&b));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    let out = child.wait_with_output().expect("ferry exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SIGTERM drains and exits 0:\n{stderr}"
    );
    assert_eq!(seen, 30.0, "the metrics count every record read:\n{stderr}");

    let uri = format!(
        "s3://{}/{prefix}?endpoint={}&region={}",
        env.s3_bucket, env.s3_endpoint, env.aws_region
    );
    let aws = [
        ("AWS_ACCESS_KEY_ID", env.aws_access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", env.aws_secret_access_key.as_str()),
    ];
    let ls = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["ls", &uri, "--json"])
        .envs(aws)
        .output()
        .expect("ferry ls runs");
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&ls.stdout).expect("ls --json is JSON");
    let parts = j["topics"][0]["partitions"].as_array().expect("partitions");
    let records: u64 = parts.iter().filter_map(|p| p["records"].as_u64()).sum();
    assert_eq!(records, 30, "{j}");
    for p in parts {
        assert_eq!(p["next_offset"].as_u64(), p["records"].as_u64(), "{p}");
    }
    let verify = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["verify", &uri])
        .envs(aws)
        .output()
        .expect("ferry verify runs");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
