//! The `ferry` binary end to end, without Kafka: validate, run (smoke pipeline, graceful
//! SIGTERM and resume), components, schema.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn ferry() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.env_remove("FERRY_LOG").env_remove("FERRY_LOG_FORMAT");
    c
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn every_pipeline_file_validates() {
    let dir = repo().join("pipelines");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("pipelines/")
        .map(|e| e.expect("entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(files.iter().any(|f| f.ends_with("smoke.yaml")), "{files:?}");
    for f in &files {
        let out = ferry().arg("validate").arg(f).output().expect("run ferry");
        ok(&out);
        assert_eq!(text(&out.stdout), format!("{}: ok\n", f.display()));
    }
}

#[test]
fn validate_reports_every_error_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: bad\nsource:\n  type: generator\n  cont: 5\nsink:\n  type: stdout\n  format: xml\n",
    )
    .unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "name: good\nsource: { type: generator, count: 1 }\nsink: { type: stdout }\n",
    )
    .unwrap();
    let out = ferry()
        .arg("validate")
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), format!("{}: ok\n", good.display()));
    let err = text(&out.stderr);
    let b = bad.display();
    assert!(
        err.contains(&format!(
            "{b}:4:3: unknown key 'cont' in source (type generator); expected one of: count, rate, topic"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{b}:7:11: unknown value 'xml' for 'sink.format'")),
        "{err}"
    );
    assert!(err.contains("error: 1 of 2 file(s) invalid"), "{err}");
}

#[test]
fn run_refuses_a_broken_file_and_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.yaml");
    std::fs::write(
        &f,
        "name: p\nsource: { type: generator, count: 1 }\nsink:\n  type: storage\n  uri: ${FERRY_CLI_TEST_NOT_SET}\n  format: jsonl\n",
    )
    .unwrap();
    let out = ferry()
        .env_remove("FERRY_CLI_TEST_NOT_SET")
        .arg("run")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "error: {}:5:8: environment variable 'FERRY_CLI_TEST_NOT_SET' is not set",
            f.display()
        )),
        "{err}"
    );
}

/// Every record of every JSON lines file under `dir/topics`.
fn read_records(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("topics")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().and_then(|e| e.to_str()) == Some("jsonl") {
                for line in std::fs::read_to_string(&p).unwrap().lines() {
                    out.push(serde_json::from_str(line).expect("a JSON line"));
                }
            }
        }
    }
    out
}

/// (partition, offset) of each record, asserting none repeats.
fn unique_offsets(records: &[Value]) -> BTreeMap<i64, Vec<i64>> {
    let mut seen = BTreeSet::new();
    let mut per: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for r in records {
        let (p, o) = (
            r["partition"].as_i64().unwrap(),
            r["offset"].as_i64().unwrap(),
        );
        assert!(
            seen.insert((p, o)),
            "offset {o} of partition {p} written twice"
        );
        per.entry(p).or_default().push(o);
    }
    for v in per.values_mut() {
        v.sort();
    }
    per
}

fn checkpoint(dir: &Path, name: &str) -> BTreeMap<String, BTreeMap<String, i64>> {
    let text = std::fs::read_to_string(dir.join("checkpoints").join(format!("{name}.json")))
        .expect("checkpoint written");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["pipeline"], name);
    serde_json::from_value(v["offsets"].clone()).unwrap()
}

#[test]
fn smoke_pipeline_writes_exactly_1000_lines() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        // The second run resumes from the checkpoint and adds nothing.
        let out = ferry()
            .env("FERRY_SMOKE_DIR", dir.path())
            .arg("run")
            .arg(repo().join("pipelines/smoke.yaml"))
            .output()
            .unwrap();
        ok(&out);
        let records = read_records(dir.path());
        assert_eq!(records.len(), 1000);
        let per = unique_offsets(&records);
        assert_eq!(per.len(), 3);
        for (p, offsets) in &per {
            let n = offsets.len() as i64;
            assert_eq!(*offsets, (0..n).collect::<Vec<_>>(), "partition {p}");
        }
        let cp = checkpoint(dir.path(), "smoke");
        assert_eq!(cp["generated"].values().sum::<i64>(), 1000);
    }
}

#[test]
fn run_takes_several_files_and_refuses_duplicate_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, count) in [("one", 300), ("two", 700)] {
        let f = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &f,
            format!(
                "name: {name}\nsource: {{ type: generator, count: {count}, topic: {name} }}\nsink: {{ type: storage, uri: \"file://{}\", format: jsonl }}\n",
                dir.path().join(name).display()
            ),
        )
        .unwrap();
        files.push(f);
    }
    let out = ferry().arg("run").args(&files).output().unwrap();
    ok(&out);
    assert_eq!(read_records(&dir.path().join("one")).len(), 300);
    assert_eq!(read_records(&dir.path().join("two")).len(), 700);

    let out = ferry()
        .arg("run")
        .arg(&files[0])
        .arg(&files[0])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("pipeline name 'one' is used by another file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn storage_files_read_back_through_the_storage_source() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let out = ferry()
        .env("FERRY_SMOKE_DIR", &a)
        .arg("run")
        .arg(repo().join("pipelines/smoke.yaml"))
        .output()
        .unwrap();
    ok(&out);
    let copy = dir.path().join("copy.yaml");
    std::fs::write(
        &copy,
        format!(
            "name: copy\nsource:\n  type: storage\n  uri: file://{}\n  format: jsonl\n  batch_size: 64\nsink:\n  type: storage\n  uri: file://{}\n  format: jsonl\n",
            a.display(),
            b.display()
        ),
    )
    .unwrap();
    let out = ferry().arg("run").arg(&copy).output().unwrap();
    ok(&out);
    let key = |r: &Value| {
        (
            r["partition"].as_i64().unwrap(),
            r["offset"].as_i64().unwrap(),
        )
    };
    let mut original = read_records(&a);
    let mut copied = read_records(&b);
    original.sort_by_key(key);
    copied.sort_by_key(key);
    assert_eq!(copied.len(), 1000);
    assert_eq!(
        copied, original,
        "the copy holds the same records, field for field"
    );
}

#[cfg(unix)]
#[test]
fn sigterm_drains_checkpoints_and_a_restart_resumes_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let pipeline = dir.path().join("endless.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: endless\nsource:\n  type: generator\n  rate: 4000\n  partitions: 2\n  batch_size: 100\n  payload_size: 20\nsink:\n  type: storage\n  uri: file://{}\n  format: jsonl\ndelivery:\n  checkpoint_interval: 200ms\n",
            out_dir.display()
        ),
    )
    .unwrap();

    let mut total_before = 0;
    for round in 0..2 {
        let log = std::fs::File::create(dir.path().join(format!("log{round}.txt"))).unwrap();
        let mut child = ferry()
            .arg("run")
            .arg(&pipeline)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        // Let it run a while. (Whether files appear before the end depends on the sink's
        // roll policy, so progress is checked after the drain, not before.)
        let log_path = dir.path().join(format!("log{round}.txt"));
        let start = Instant::now();
        while !std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("pipeline started")
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "ferry did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(800));
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "ferry did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = std::fs::read_to_string(dir.path().join(format!("log{round}.txt"))).unwrap();
        assert!(status.success(), "exit {status:?}\n{log}");
        assert!(log.contains("interrupted=true"), "{log}");

        // Everything written is checkpointed, every offset once, contiguous from 0.
        let records = read_records(&out_dir);
        let per = unique_offsets(&records);
        let cp = checkpoint(&out_dir, "endless");
        for (p, offsets) in &per {
            let next = cp["generated"][&p.to_string()];
            assert_eq!(*offsets, (0..next).collect::<Vec<_>>(), "partition {p}");
        }
        assert!(
            records.len() > total_before + 500,
            "round {round}: {} records after {total_before}",
            records.len()
        );
        total_before = records.len();
    }
}

#[test]
fn components_schema_and_version() {
    let out = ferry().arg("components").output().unwrap();
    ok(&out);
    let t = text(&out.stdout);
    for needle in [
        "SOURCES",
        "generator",
        "TRANSFORMS",
        "filter",
        "SINKS",
        "stdout",
        "FORMATS",
        "jsonl",
    ] {
        assert!(t.contains(needle), "{needle} missing:\n{t}");
    }
    let out = ferry().args(["components", "--json"]).output().unwrap();
    ok(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let generator = v
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "generator")
        .unwrap();
    assert_eq!(generator["kind"], "source");
    assert!(generator["schema"]["properties"]["count"].is_object());

    let out = ferry().arg("schema").output().unwrap();
    ok(&out);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sources = s["properties"]["source"]["oneOf"].as_array().unwrap();
    assert!(sources
        .iter()
        .any(|b| b["properties"]["type"]["const"] == "generator"));

    let out = ferry().arg("--version").output().unwrap();
    ok(&out);
    assert_eq!(
        text(&out.stdout),
        format!("ferry {}\n", env!("CARGO_PKG_VERSION"))
    );
}
