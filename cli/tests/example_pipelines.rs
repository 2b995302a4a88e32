//! The example pipelines in `pipelines/` run against the real Kafka broker: backup,
//! restore (point in time, renamed, groups), cluster-to-cluster copy and the exports.

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

fn files_with(dir: &Path, ext: &str) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                n += 1;
            }
        }
    }
    n
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

    run(&example("export-parquet.yaml"), &vars);
    assert!(files_with(&lake, "parquet") >= 2);
    let avro_vars: Vec<(&str, &str)> = vars
        .iter()
        .copied()
        .filter(|(k, _)| *k != "FERRY_LAKE")
        .chain([("FERRY_LAKE", lake_avro.to_str().unwrap())])
        .collect();
    run(&example("export-avro.yaml"), &avro_vars);
    assert!(files_with(&lake_avro, "avro") >= 2);
}
