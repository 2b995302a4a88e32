//! Helpers shared by the integration tests that talk to the dev environment's Kafka.
#![allow(dead_code)] // each test binary uses its own subset

pub mod iceberg;
pub mod worker;

use ferry_kafka::{Client, ClientConfig, NewTopic};
use ferry_testkit::{py_produce_to, KcatMsg, TestEnv};
use std::collections::BTreeMap;

/// One runtime for the test's client: its connections live on the runtime that made them.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

pub fn client(env: &TestEnv) -> Client {
    rt().block_on(Client::connect(ClientConfig::new(std::slice::from_ref(
        &env.kafka,
    ))))
    .expect("connect to Kafka")
}

/// Kafka 4 refuses timestamps more than an hour off by default, and retention deletes
/// records stamped long ago right away: these tests use old and future timestamps.
pub const ANY_TIMESTAMP: [(&str, &str); 3] = [
    ("message.timestamp.before.max.ms", "9223372036854775807"),
    ("message.timestamp.after.max.ms", "9223372036854775807"),
    ("retention.ms", "-1"),
];

pub fn create_topic(env: &TestEnv, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let c = client(env);
    let configs: BTreeMap<String, String> = configs
        .iter()
        .chain(ANY_TIMESTAMP.iter())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    rt().block_on(c.create_topics(&[NewTopic {
        name: name.to_string(),
        partitions,
        replication_factor: 1,
        configs,
    }]))
    .expect("create topic");
}

/// A varied topic: keys, null keys, tombstones, empty values, headers with null values and
/// repeated keys, timestamps from 1970 to 2100, every producer codec, a 5 MiB record.
pub fn varied_topic(env: &TestEnv, topic: &str) -> usize {
    create_topic(env, topic, 3, &[("max.message.bytes", "8388608")]);
    let mut total = 0;
    for (i, codec) in ["none", "gzip", "snappy", "lz4", "zstd"].iter().enumerate() {
        for p in 0..3 {
            let mut msgs = Vec::new();
            for j in 0..40i64 {
                let n = i as i64 * 1000 + j;
                let key = format!("key-{}", n % 7);
                let value = format!("{{\"n\":{n},\"codec\":\"{codec}\"}}");
                let ts = match j % 4 {
                    0 => 1,                     // 1970
                    1 => 4_102_444_800_000 - n, // 2100
                    _ => 1_764_547_200_000 + n, // 2025
                };
                let mut m = match j % 5 {
                    0 => KcatMsg::new(None, Some(value.as_bytes())),
                    1 => KcatMsg::new(Some(key.as_bytes()), None),
                    2 => KcatMsg::new(Some(b""), Some(b"")),
                    _ => KcatMsg::new(Some(key.as_bytes()), Some(value.as_bytes())),
                };
                if j % 3 == 0 {
                    m = m
                        .header("h", Some(b"1"))
                        .header("h", None)
                        .header("e", Some(b""));
                }
                msgs.push(m.at(ts));
            }
            total += msgs.len();
            py_produce_to(env, &env.kafka, topic, Some(p), &msgs, codec, i % 2 == 0);
        }
    }
    let big = vec![b'x'; 5 * 1024 * 1024];
    py_produce_to(
        env,
        &env.kafka,
        topic,
        Some(1),
        &[KcatMsg::new(Some(b"big"), Some(&big)).at(1_764_547_200_000)],
        "none",
        false,
    );
    total + 1
}

/// Runs this build's `ferry` binary with `args` and the extra environment `vars`
/// (`FERRY_LOG=info` unless `vars` sets it); prints what it wrote when it fails.
pub fn ferry_output(args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env("FERRY_LOG", "info")
        .envs(vars.iter().copied())
        .output()
        .expect("ferry runs");
    if !out.status.success() {
        eprintln!(
            "ferry {args:?} failed ({:?}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Runs `ferry` (see [`ferry_output`]), asserts it succeeded and returns its stdout and
/// stderr.
pub fn ferry_success(args: &[&str], vars: &[(&str, &str)]) -> (String, String) {
    let out = ferry_output(args, vars);
    assert!(
        out.status.success(),
        "ferry {args:?} exited {:?}",
        out.status
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ferry backup --snapshot` of `topic` on the dev Kafka to `to` (no credentials needed);
/// fails the test if it fails.
pub fn snapshot_backup(env: &TestEnv, topic: &str, to: &str) {
    ferry_success(
        &[
            "backup",
            "--brokers",
            &env.kafka,
            "--topic",
            topic,
            "--to",
            to,
            "--snapshot",
        ],
        &[],
    );
}

/// Every file under `dir` (recursively) whose extension is `ext`, sorted; none when `dir` does
/// not exist.
pub fn files_under(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.expect("a directory entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
