//! `ferry worker` against the dev environment's Apache Kafka: the REST API end to end, a
//! snapshot pipeline that finishes and restores, three workers sharing a continuous backup
//! while one is killed and a fourth joins, and a paused (SIGSTOP) worker fenced off.

mod common;

use common::worker::{produce, Worker};
use ferry_testkit::{dump_topic, env_or_skip, unique, TestEnv};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A worker of `group` on `port` (a short session, so the tests see work move quickly).
fn start(env: &TestEnv, group: &str, port: u16, dir: &Path, vars: &[(&str, &str)]) -> Worker {
    Worker::start(env, group, port, dir, &["--session-timeout", "6s"], vars)
}

/// Each partition's manifests: contiguous, never overlapping, every segment with its
/// manifest. Returns the records they hold.
fn manifest_records(dir: &Path, topic: &str) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir.join("topics").join(topic)).expect("topic folder") {
        let p = entry.expect("entry").path();
        if !p.is_dir() {
            continue;
        }
        let mut manifests: Vec<Value> = common::files_under(&p, "json")
            .iter()
            .map(|f| serde_json::from_slice(&std::fs::read(f).expect("read")).expect("manifest"))
            .collect();
        manifests.sort_by_key(|m| m["first_offset"].as_i64());
        let mut next: Option<i64> = None;
        for m in &manifests {
            let first = m["first_offset"].as_i64().expect("first_offset");
            if let Some(n) = next {
                assert_eq!(
                    first,
                    n,
                    "{}: segments overlap or leave a hole",
                    p.display()
                );
            }
            next = m["next_offset"].as_i64();
            total += m["record_count"].as_u64().expect("record_count");
        }
        assert_eq!(
            common::files_under(&p, "log").len(),
            manifests.len(),
            "a segment without manifest in {}",
            p.display()
        );
    }
    total
}

/// Records the manifests under `dir` hold so far (no checks: for waiting).
fn records_written(dir: &Path) -> u64 {
    common::files_under(&dir.join("topics"), "json")
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter_map(|m| m["record_count"].as_u64())
        .sum()
}

fn status(w: &Worker, name: &str) -> Value {
    w.get(&format!("/pipelines/{name}/status"), None)
        .map(|(_, v)| v)
        .unwrap_or(Value::Null)
}

/// Sum of the offsets a status shows (records read so far).
fn offsets_sum(status: &Value) -> i64 {
    status["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["partitions"].as_array().cloned().unwrap_or_default())
        .map(|p| p["offset"].as_i64().unwrap_or(0).max(0))
        .sum()
}

fn backup_yaml(name: &str, brokers: &str, topic: &str, dir_ref: &str, stop: &str) -> String {
    format!(
        "name: {name}\nsource: {{type: kafka, brokers: [\"{brokers}\"], topics: [{topic}], stop: {stop}}}\nsink: {{type: storage, uri: \"file://{dir_ref}\", roll: {{max_records: 5000, max_age: 2s}}, commit_interval: 2s}}\ndelivery: {{checkpoint_interval: 1s}}\n"
    )
}

#[test]
fn the_rest_api_end_to_end() {
    let Some(env) = env_or_skip() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = unique("worker-api");
    common::create_topic(&env, &topic, 3, &[]);
    produce(&env, &topic, 0, 3000);
    let backup = dir.path().join("backup");
    let token = "s3cret-token";
    let w = start(
        &env,
        &unique("wg-api"),
        18601,
        dir.path(),
        &[
            ("FERRY_API_TOKEN", token),
            ("WORKER_TEST_BACKUP", backup.to_str().expect("utf-8 path")),
        ],
    );
    let t = Some(token);

    // The token is needed everywhere but /healthz.
    assert_eq!(w.get("/pipelines", None).map(|r| r.0), Some(401));
    assert_eq!(w.get("/pipelines", Some("wrong")).map(|r| r.0), Some(401));
    assert_eq!(w.get("/healthz", None).map(|r| r.0), Some(200));

    // A bad pipeline: 400 with the YAML position, as `ferry validate` reports it.
    let bad = "name: api\nsource: {type: kafka, brokers: [\"h:1\"], topics: [x]}\nsink:\n  type: storage\n  urii: file:///tmp/x\n";
    let (code, body) = w
        .request("PUT", "/pipelines/api", t, Some(("application/yaml", bad)))
        .expect("answer");
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("urii"),
        "{body}"
    );
    assert_eq!(body["line"], 5, "{body}");
    assert!(body["column"].as_u64().is_some(), "{body}");
    // The name in the body must be the one in the URL.
    let other = backup_yaml(
        "other",
        &env.kafka,
        &topic,
        "${WORKER_TEST_BACKUP}",
        "never",
    );
    let (code, body) = w
        .request(
            "PUT",
            "/pipelines/api",
            t,
            Some(("application/yaml", &other)),
        )
        .expect("answer");
    assert_eq!(code, 400, "{body}");

    // Created, then updated.
    let yaml = backup_yaml("api", &env.kafka, &topic, "${WORKER_TEST_BACKUP}", "never");
    let (code, body) = w
        .request(
            "PUT",
            "/pipelines/api",
            t,
            Some(("application/yaml", &yaml)),
        )
        .expect("answer");
    assert_eq!(code, 201, "{body}");
    let (code, _) = w
        .request(
            "PUT",
            "/pipelines/api",
            t,
            Some(("application/yaml", &yaml)),
        )
        .expect("answer");
    assert_eq!(code, 200);
    let (_, list) = w.get("/pipelines", t).expect("answer");
    assert_eq!(list, serde_json::json!(["api"]));
    // JSON is accepted too; bad JSON is answered with its position.
    let json_body = serde_json::json!({
        "name": "apijson",
        "source": {"type": "kafka", "brokers": [env.kafka], "topics": [topic], "stop": "high_watermark"},
        "sink": {"type": "stdout"},
    })
    .to_string();
    let (code, body) = w
        .request(
            "PUT",
            "/pipelines/apijson",
            t,
            Some(("application/json", &json_body)),
        )
        .expect("answer");
    assert_eq!(code, 201, "{body}");
    let (code, body) = w
        .request(
            "PUT",
            "/pipelines/apijson",
            t,
            Some(("application/json", "{\"name\": ")),
        )
        .expect("answer");
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["line"], 1, "{body}");
    assert_eq!(
        w.request("DELETE", "/pipelines/apijson", t, None)
            .map(|r| r.0),
        Some(204)
    );
    // The secret-bearing value is shown as its reference, never its value.
    let (_, got) = w.get("/pipelines/api", t).expect("answer");
    let config = got["config"].as_str().expect("config");
    assert!(config.contains("${WORKER_TEST_BACKUP}"), "{config}");
    assert!(
        !config.contains(backup.to_str().expect("utf-8")),
        "{config}"
    );

    // Running, reading every partition.
    let st = |w: &Worker| {
        w.get("/pipelines/api/status", t)
            .map(|r| r.1)
            .unwrap_or(Value::Null)
    };
    w.wait_until(Duration::from_secs(60), "read the 3000 records", |w| {
        let s = st(w);
        s["state"] == "RUNNING" && offsets_sum(&s) >= 3000
    });
    let s = st(&w);
    assert_eq!(s["tasks"][0]["worker"], "http://127.0.0.1:18601", "{s}");
    assert_eq!(
        s["tasks"][0]["partitions"].as_array().map(Vec::len),
        Some(3),
        "{s}"
    );

    // Paused: offsets stop moving while records arrive.
    assert_eq!(
        w.request("POST", "/pipelines/api/pause", t, None)
            .map(|r| r.0),
        Some(202)
    );
    w.wait_until(Duration::from_secs(30), "showed PAUSED", |w| {
        st(w)["state"] == "PAUSED"
    });
    let before = offsets_sum(&st(&w));
    produce(&env, &topic, 3000, 1000);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(offsets_sum(&st(&w)), before, "a paused pipeline read on");
    // Resumed: it catches up.
    assert_eq!(
        w.request("POST", "/pipelines/api/resume", t, None)
            .map(|r| r.0),
        Some(202)
    );
    w.wait_until(
        Duration::from_secs(60),
        "read the 4000 records after resume",
        |w| {
            let s = st(w);
            s["state"] == "RUNNING" && offsets_sum(&s) >= 4000
        },
    );
    // Restarted: running again, same position.
    assert_eq!(
        w.request("POST", "/pipelines/api/restart", t, None)
            .map(|r| r.0),
        Some(202)
    );
    w.wait_until(Duration::from_secs(60), "ran again after restart", |w| {
        let s = st(w);
        s["state"] == "RUNNING" && offsets_sum(&s) >= 4000
    });
    assert_eq!(
        w.request("POST", "/pipelines/nope/pause", t, None)
            .map(|r| r.0),
        Some(404)
    );

    // Workers and metrics.
    let (_, workers) = w.get("/workers", t).expect("answer");
    assert_eq!(
        workers["workers"].as_array().map(Vec::len),
        Some(1),
        "{workers}"
    );
    assert_eq!(workers["workers"][0]["leader"], true);
    let (code, metrics) = w.get("/metrics", t).expect("answer");
    assert_eq!(code, 200);
    assert!(
        metrics.as_str().unwrap_or("").contains("ferry_"),
        "{metrics}"
    );

    // Positions are what the tasks read; writes follow within the commit interval (a task
    // stopped before that leaves the rest to be read again by its successor).
    w.wait_until(Duration::from_secs(60), "wrote the 4000 records", |_| {
        records_written(&backup) >= 4000
    });
    // Deleted: gone from the list, its task stopped with what it wrote kept.
    assert_eq!(
        w.request("DELETE", "/pipelines/api", t, None).map(|r| r.0),
        Some(204)
    );
    assert_eq!(w.get("/pipelines/api", t).map(|r| r.0), Some(404));
    assert_eq!(
        w.request("DELETE", "/pipelines/api", t, None).map(|r| r.0),
        Some(404)
    );
    w.stop();
    assert_eq!(manifest_records(&backup, &topic), 4000);
}

#[test]
fn a_snapshot_pipeline_finishes_and_its_backup_restores() {
    let Some(env) = env_or_skip() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = unique("worker-snap");
    common::create_topic(&env, &topic, 4, &[]);
    produce(&env, &topic, 0, 8000);
    let backup = dir.path().join("backup");
    let group = unique("wg-snap");
    let a = start(&env, &group, 18611, dir.path(), &[]);
    let b = start(&env, &group, 18612, dir.path(), &[]);
    let yaml = backup_yaml(
        "snap",
        &env.kafka,
        &topic,
        backup.to_str().expect("utf-8"),
        "high_watermark",
    );
    let (code, body) = a
        .request(
            "PUT",
            "/pipelines/snap",
            None,
            Some(("application/yaml", &yaml)),
        )
        .expect("answer");
    assert_eq!(code, 201, "{body}");
    a.wait_until(Duration::from_secs(90), "showed FINISHED", |w| {
        status(w, "snap")["state"] == "FINISHED"
    });
    // Both workers had a share.
    let s = status(&b, "snap");
    let workers: std::collections::BTreeSet<String> = s["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["worker"].as_str().map(String::from))
        .collect();
    assert_eq!(workers.len(), 2, "{s}");
    a.stop();
    b.stop();
    assert_eq!(manifest_records(&backup, &topic), 8000);
    common::ferry_success(&["verify", backup.to_str().expect("utf-8")], &[]);
    let target = unique("worker-snap-restored");
    common::ferry_success(
        &[
            "restore",
            "--brokers",
            &env.kafka,
            "--from",
            backup.to_str().expect("utf-8"),
            "--topic",
            &topic,
            "--rename",
            &format!("{topic}={target}"),
        ],
        &[],
    );
    let original = dump_topic(&env, &env.kafka, &topic);
    let restored = dump_topic(&env, &env.kafka, &target);
    assert_eq!(original.len(), 8000);
    let key =
        |r: &ferry_testkit::DumpedRecord| (r.partition, r.offset, r.key.clone(), r.value.clone());
    assert_eq!(
        original.iter().map(key).collect::<Vec<_>>(),
        restored.iter().map(key).collect::<Vec<_>>()
    );
}

#[test]
fn three_workers_share_a_backup_while_one_is_killed_and_a_fourth_joins() {
    let Some(env) = env_or_skip() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = unique("worker-scale");
    common::create_topic(&env, &topic, 12, &[]);
    let backup = dir.path().join("backup");
    let group = unique("wg-scale");
    let w1 = start(&env, &group, 18621, dir.path(), &[]);
    let w2 = start(&env, &group, 18622, dir.path(), &[]);
    let w3 = start(&env, &group, 18623, dir.path(), &[]);
    let yaml = backup_yaml(
        "scale",
        &env.kafka,
        &topic,
        backup.to_str().expect("utf-8"),
        "never",
    );
    let (code, body) = w1
        .request(
            "PUT",
            "/pipelines/scale",
            None,
            Some(("application/yaml", &yaml)),
        )
        .expect("answer");
    assert_eq!(code, 201, "{body}");
    let total: u64 = 300_000;
    let producer = {
        let env = env.clone();
        let topic = topic.clone();
        std::thread::spawn(move || produce(&env, &topic, 0, total))
    };
    // The partitions are spread over all three.
    w1.wait_until(
        Duration::from_secs(60),
        "spread the partitions over 3 workers",
        |w| {
            let s = status(w, "scale");
            let tasks = s["tasks"].as_array().cloned().unwrap_or_default();
            tasks.len() == 3
                && tasks
                    .iter()
                    .all(|t| t["partitions"].as_array().map_or(0, Vec::len) == 4)
        },
    );
    // One dies mid-stream; a fourth joins.
    std::thread::sleep(Duration::from_secs(2));
    drop(w2);
    let w4 = start(&env, &group, 18624, dir.path(), &[]);
    producer.join().expect("producer");
    w1.wait_until(Duration::from_secs(120), "backed up every record", |w| {
        let s = status(w, "scale");
        let workers: std::collections::BTreeSet<String> = s["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["worker"].as_str().map(String::from))
            .collect();
        s["state"] == "RUNNING"
            && offsets_sum(&s) >= total as i64
            && !workers.contains("http://127.0.0.1:18622")
    });
    let s = status(&w4, "scale");
    assert!(
        s["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["worker"] == "http://127.0.0.1:18624"),
        "the new worker took a share: {s}"
    );
    w1.wait_until(Duration::from_secs(60), "wrote every record", |_| {
        records_written(&backup) >= total
    });
    w1.stop();
    w3.stop();
    w4.stop();
    assert_eq!(
        manifest_records(&backup, &topic),
        total,
        "every offset once"
    );
    common::ferry_success(&["verify", backup.to_str().expect("utf-8")], &[]);
    let target = unique("worker-scale-restored");
    common::ferry_success(
        &[
            "restore",
            "--brokers",
            &env.kafka,
            "--from",
            backup.to_str().expect("utf-8"),
            "--topic",
            &topic,
            "--rename",
            &format!("{topic}={target}"),
        ],
        &[],
    );
    let mut keys: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
    for r in dump_topic(&env, &env.kafka, &target) {
        *keys.entry(r.key.clone().unwrap_or_default()).or_default() += 1;
    }
    assert_eq!(keys.len() as u64, total, "every key restored");
    assert!(keys.values().all(|&n| n == 1), "a key restored twice");
}

#[test]
fn a_worker_paused_past_its_session_never_writes_an_offset_twice() {
    let Some(env) = env_or_skip() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = unique("worker-fence");
    common::create_topic(&env, &topic, 4, &[]);
    let backup = dir.path().join("backup");
    let group = unique("wg-fence");
    let a = start(&env, &group, 18631, dir.path(), &[]);
    let b = start(&env, &group, 18632, dir.path(), &[]);
    let yaml = backup_yaml(
        "fence",
        &env.kafka,
        &topic,
        backup.to_str().expect("utf-8"),
        "never",
    );
    let (code, body) = a
        .request(
            "PUT",
            "/pipelines/fence",
            None,
            Some(("application/yaml", &yaml)),
        )
        .expect("answer");
    assert_eq!(code, 201, "{body}");
    produce(&env, &topic, 0, 20_000);
    a.wait_until(Duration::from_secs(60), "read the first records", |w| {
        offsets_sum(&status(w, "fence")) >= 20_000
    });
    // b freezes with data in hand; past the session timeout its partitions move to a.
    produce(&env, &topic, 20_000, 20_000);
    b.signal("-STOP");
    let frozen = Instant::now();
    a.wait_until(Duration::from_secs(60), "took over every partition", |w| {
        let s = status(w, "fence");
        let tasks = s["tasks"].as_array().cloned().unwrap_or_default();
        tasks.len() == 1
            && tasks[0]["partitions"].as_array().map_or(0, Vec::len) == 4
            && offsets_sum(&s) >= 40_000
    });
    assert!(
        frozen.elapsed() >= Duration::from_secs(5),
        "moved before the session timeout"
    );
    produce(&env, &topic, 40_000, 10_000);
    // b wakes up: it must find out it lost its partitions before it commits anything.
    b.signal("-CONT");
    a.wait_until(Duration::from_secs(90), "backed up every record", |w| {
        offsets_sum(&status(w, "fence")) >= 50_000
    });
    a.wait_until(Duration::from_secs(60), "wrote every record", |_| {
        records_written(&backup) >= 50_000
    });
    std::thread::sleep(Duration::from_secs(2));
    let b_log = std::fs::read_to_string(&b.log).unwrap_or_default();
    assert!(
        b_log.contains("dropped this worker") || b_log.contains("no longer a member"),
        "the frozen worker did not notice it lost its partitions:\n{b_log}"
    );
    a.stop();
    b.stop();
    assert_eq!(
        manifest_records(&backup, &topic),
        50_000,
        "every offset once"
    );
}

#[test]
fn a_worker_file_and_a_folder_of_pipelines_reloaded_when_they_change() {
    let Some(env) = env_or_skip() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = unique("worker-dir");
    common::create_topic(&env, &topic, 2, &[]);
    produce(&env, &topic, 0, 1000);
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).expect("mkdir");
    let backup = dir.path().join("backup");
    let group = unique("wg-dir");
    let worker_file = dir.path().join("worker.yaml");
    std::fs::write(
        &worker_file,
        format!(
            "brokers: [\"${{WORKER_TEST_KAFKA}}\"]\ngroup: {group}\nlisten: 127.0.0.1:18641\npipelines_dir: {}\nsession_timeout: 6s\n",
            pipelines.display()
        ),
    )
    .expect("write worker file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["worker", "--config"])
        .arg(&worker_file)
        .env("FERRY_LOG", "info")
        .env("WORKER_TEST_KAFKA", &env.kafka);
    let w = Worker::spawn(cmd, 18641, dir.path().join("worker-18641.log"));
    w.wait_until(Duration::from_secs(60), "became a member", |w| {
        w.get("/healthz", None)
            .is_some_and(|(s, b)| s == 200 && b["member"] == true)
    });
    // A file appears: its pipeline is loaded and runs.
    let yaml = backup_yaml(
        "fromdir",
        &env.kafka,
        &topic,
        backup.to_str().expect("utf-8"),
        "never",
    );
    std::fs::write(pipelines.join("fromdir.yaml"), &yaml).expect("write");
    // A broken file and a hidden one are left out.
    std::fs::write(
        pipelines.join("broken.yaml"),
        "name: broken\nsource: {type: nope}\n",
    )
    .expect("write");
    std::fs::write(
        pipelines.join(".hidden.yaml"),
        yaml.replace("fromdir", "hidden"),
    )
    .expect("write");
    w.wait_until(
        Duration::from_secs(60),
        "ran the pipeline from the folder",
        |w| {
            let s = status(w, "fromdir");
            s["state"] == "RUNNING" && offsets_sum(&s) >= 1000
        },
    );
    let (_, names) = w.get("/pipelines", None).expect("answer");
    assert_eq!(names, serde_json::json!(["fromdir"]));
    let (_, def) = w.get("/pipelines/fromdir", None).expect("answer");
    let version = def["version"].as_i64().expect("version");
    // Changed: reloaded (a new version).
    std::fs::write(
        pipelines.join("fromdir.yaml"),
        yaml.replace("checkpoint_interval: 1s", "checkpoint_interval: 2s"),
    )
    .expect("write");
    w.wait_until(Duration::from_secs(30), "reloaded the changed file", |w| {
        w.get("/pipelines/fromdir", None).is_some_and(|(_, d)| {
            d["version"].as_i64().is_some_and(|v| v > version)
                && d["config"].as_str().unwrap_or("").contains("2s")
        })
    });
    w.wait_until(Duration::from_secs(60), "wrote every record", |_| {
        records_written(&backup) >= 1000
    });
    // Removed: deleted.
    std::fs::remove_file(pipelines.join("fromdir.yaml")).expect("rm");
    w.wait_until(
        Duration::from_secs(30),
        "deleted the removed file's pipeline",
        |w| {
            w.get("/pipelines/fromdir", None)
                .is_some_and(|(s, _)| s == 404)
        },
    );
    let text = std::fs::read_to_string(&w.log).unwrap_or_default();
    assert!(
        text.contains("broken.yaml") && text.contains("missing key 'sink'"),
        "the broken file is reported:\n{text}"
    );
    w.stop();
    assert_eq!(manifest_records(&backup, &topic), 1000);
}

#[test]
fn worker_settings_mistakes_are_named() {
    let out = common::ferry_output(&["worker", "--group", "g"], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--brokers"),
        "{out:?}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("worker.yaml");
    std::fs::write(
        &file,
        "brokers: [\"127.0.0.1:1\"]\ngroup: g\nlisten_on: 1\n",
    )
    .expect("write");
    let out = common::ferry_output(&["worker", "--config", file.to_str().expect("utf-8")], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("worker.yaml") && err.contains("listen_on"),
        "{err}"
    );
    let out = common::ferry_output(
        &[
            "worker",
            "--brokers",
            "127.0.0.1:1",
            "--group",
            "g",
            "--pipelines",
            "/nonexistent/dir",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir"),
        "{out:?}"
    );
}

#[test]
fn a_backup_location_added_through_the_api_is_listed_by_every_worker() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = unique("worker-locations");
    common::create_topic(&env, &topic, 1, &[]);
    produce(&env, &topic, 0, 100);
    let backup = dir.path().join("added");
    let backup = backup.to_str().expect("utf-8 path");
    common::ferry_success(
        &[
            "backup",
            "--brokers",
            &env.kafka,
            "--topic",
            &topic,
            "--to",
            backup,
            "--snapshot",
        ],
        &[],
    );
    let group = unique("wg-locations");
    let a = start(&env, &group, 18681, dir.path(), &[]);
    let b = start(&env, &group, 18682, dir.path(), &[]);
    let (_, list) = a.get("/backups", None).expect("answer");
    assert_eq!(list, serde_json::json!([]), "no location configured");

    // A mistake is a 400 naming the field, and nothing is stored.
    let (code, body) = a
        .request(
            "POST",
            "/backups",
            None,
            Some(("application/json", r#"{"uri": "ftp://x/y"}"#)),
        )
        .expect("answer");
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").starts_with("uri: "),
        "{body}"
    );
    let (code, body) = a
        .request(
            "POST",
            "/backups",
            None,
            Some(("application/json", r#"{"url": "x"}"#)),
        )
        .expect("answer");
    assert_eq!(code, 400, "{body}");

    let added = format!("file://{backup}");
    let (code, body) = a
        .request(
            "POST",
            "/backups",
            None,
            Some((
                "application/json",
                &serde_json::json!({"uri": added}).to_string(),
            )),
        )
        .expect("answer");
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["index"], 0, "{body}");
    // The other worker of the group lists it too (it is in the config topic), and reads it.
    b.wait_until(Duration::from_secs(20), "listed the added location", |w| {
        w.get("/backups", None)
            .is_some_and(|(_, l)| l[0]["uri"] == serde_json::json!(added))
    });
    let (code, summary) = b.get("/backups/0", None).expect("answer");
    assert_eq!(code, 200, "{summary}");
    let records: u64 = summary["topics"][0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["records"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(records, 100, "{summary}");
    // Adding it again changes nothing.
    let (code, body) = b
        .request(
            "POST",
            "/backups",
            None,
            Some((
                "application/json",
                &serde_json::json!({"uri": added}).to_string(),
            )),
        )
        .expect("answer");
    assert!(code == 200 || code == 201, "{body}");
    let (_, list) = a.get("/backups", None).expect("answer");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["added"], serde_json::json!(true), "{list}");
    // Removed through one worker, it is gone from the other's list too; its backup stays.
    let (code, body) = b
        .request("DELETE", "/backups/0", None, None)
        .expect("answer");
    assert_eq!(code, 204, "{body}");
    a.wait_until(
        Duration::from_secs(20),
        "forgot the removed location",
        |w| {
            w.get("/backups", None)
                .is_some_and(|(_, l)| l == serde_json::json!([]))
        },
    );
    assert!(std::path::Path::new(&backup).join("ferry.json").exists());
    a.stop();
    b.stop();
}
