//! One `topics:` list selects the same topics in every component: the kafka source (backup),
//! the backup source (restore), the storage source (JSON lines files) and the `filter`
//! transform. Against the dev environment's Apache Kafka.

mod common;

use ferry_testkit::{py_produce_to, unique, KcatMsg};
use std::collections::BTreeSet;
use std::path::Path;

/// Runs `ferry run` on `yaml` (written to `dir/name.yaml`) and returns its stdout.
fn run(dir: &Path, name: &str, yaml: &str) -> String {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).expect("write pipeline");
    common::ferry_success(&["run", file.to_str().expect("utf-8 path")], &[]).0
}

/// The topics of the JSON lines a stdout sink printed.
fn topics_printed(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            v["topic"].as_str().expect("topic").to_string()
        })
        .collect()
}

/// The topic folders a storage sink wrote.
fn topics_stored(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir.join("topics"))
        .expect("topics/ written")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn one_topics_list_selects_the_same_topics_everywhere() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let p = unique("sel");
    let all = [
        format!("{p}.orders"),
        format!("{p}.orders.eu"),
        format!("x.{p}.orders"), // holds the pattern, but not from its start
        format!("{p}.pay"),
        format!("{p}.payments"), // the exact name `{p}.pay` must not select it
    ];
    for t in &all {
        py_produce_to(
            &env,
            &env.kafka,
            t,
            Some(0),
            &[KcatMsg::new(Some(t.as_bytes()), Some(b"v"))],
            "none",
            false,
        );
    }
    let pattern = format!("/{}\\.orders.*/", regex_escape(&p));
    let selection = format!("[\"{}\", \"{p}.pay\"]", pattern.replace('\\', "\\\\"));
    let expected: BTreeSet<String> = [
        format!("{p}.orders"),
        format!("{p}.orders.eu"),
        format!("{p}.pay"),
    ]
    .into();

    let work = tempfile::tempdir().expect("temp dir");
    let w = work.path();
    let kafka = &env.kafka;
    let exact_all = all
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");

    // 1. The kafka source with the list.
    run(
        w,
        "kafka",
        &format!(
            "name: sel-kafka\nsource: {{ type: kafka, brokers: [\"{kafka}\"], topics: {selection}, stop: high_watermark, start: earliest }}\nsink: {{ type: storage, uri: \"{}\", format: jsonl }}\n",
            w.join("by-kafka").display()
        ),
    );
    assert_eq!(topics_stored(&w.join("by-kafka")), expected, "kafka source");

    // A backup of every topic by exact name, raw and as JSON lines, for the other readers.
    for (dir, format) in [("all-raw", "raw"), ("all-jsonl", "jsonl")] {
        run(
            w,
            dir,
            &format!(
                "name: sel-{dir}\nsource: {{ type: kafka, brokers: [\"{kafka}\"], topics: [{exact_all}], stop: high_watermark, start: earliest }}\nsink: {{ type: storage, uri: \"{}\", format: {format} }}\n",
                w.join(dir).display()
            ),
        );
        assert_eq!(topics_stored(&w.join(dir)).len(), all.len());
    }
    let state = w.join("state");
    let delivery = format!("delivery: {{ checkpoint: \"{}\" }}\n", state.display());

    // 2. The backup source (a restore's selection) with the same list.
    let out = run(
        w,
        "backup",
        &format!(
            "name: sel-backup\nsource: {{ type: backup, uri: \"{}\", topics: {selection} }}\nsink: {{ type: stdout }}\n{delivery}",
            w.join("all-raw").display()
        ),
    );
    assert_eq!(topics_printed(&out), expected, "backup source");

    // 3. The storage source over JSON lines files with the same list.
    let out = run(
        w,
        "storage",
        &format!(
            "name: sel-storage\nsource: {{ type: storage, uri: \"{}\", format: jsonl, topics: {selection} }}\nsink: {{ type: stdout }}\n{delivery}",
            w.join("all-jsonl").display()
        ),
    );
    assert_eq!(topics_printed(&out), expected, "storage source");

    // 4. The filter transform with the same entries as `topic:` predicates.
    let out = run(
        w,
        "filter",
        &format!(
            "name: sel-filter\nsource: {{ type: backup, uri: \"{}\" }}\ntransforms:\n  - type: filter\n    predicate: {{ any: [ {{ topic: \"{}\" }}, {{ topic: \"{p}.pay\" }} ] }}\nsink: {{ type: stdout }}\n{delivery}",
            w.join("all-raw").display(),
            pattern.replace('\\', "\\\\")
        ),
    );
    assert_eq!(topics_printed(&out), expected, "filter transform");
}

/// Escapes regex metacharacters of a literal (unique names hold `-` and digits only, but a
/// test should not rely on that).
fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}
