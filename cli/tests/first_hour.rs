//! What a new user meets in the first hour, without any service: errors that name the flag
//! or the line typed, every error of a file at once, output without terminal escapes, the
//! small things of the CLI (closed pipes, headers, help, completions, man page).

use std::process::{Command, Output};

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .expect("ferry runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_bad_flag_value_is_reported_against_the_flag() {
    let out = ferry(&[
        "restore",
        "--from",
        "/tmp/x",
        "--brokers",
        "h:1",
        "--until",
        "yesterday",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains("--until")
            && e.contains(
                "'yesterday' is not an RFC 3339 time or epoch milliseconds, e.g. 2026-12-01T00:00:00Z"
            ),
        "{e}"
    );
    assert!(!e.contains("source.until"), "{e}");

    let out = ferry(&[
        "backup",
        "--brokers",
        "h:1",
        "--topic",
        "t",
        "--to",
        "/tmp/x",
        "--start",
        "soon",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--start") && stderr(&out).contains("'soon' is not checkpoint"));

    let out = ferry(&[
        "backup",
        "--brokers",
        "h:1",
        "--topic",
        "t",
        "--to",
        "/tmp/x",
        "--format",
        "csv",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--format") && stderr(&out).contains("raw, jsonl, avro, parquet"),
        "{}",
        stderr(&out)
    );

    let out = ferry(&[
        "restore",
        "--from",
        "ftp://x/y",
        "--brokers",
        "h:1",
        "--partitioning",
        "random",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--from") || stderr(&out).contains("--partitioning"));
}

#[test]
fn validate_reports_every_error_of_a_file_each_at_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        "name: t
source:
  type: kafka
  brokers: [\"h:1\"]
  topics: [a]
  topcs: [b]
  isolation: sometimes
sink:
  type: kafka
  brokers: [\"h:2\"]
  partitioning:
    presrve
  compresion: zstd
",
    )
    .unwrap();
    let out = ferry(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    let name = file.display().to_string();
    for expected in [
        format!("{name}:6:3: unknown key 'topcs'"),
        format!("{name}:7:14: unknown value 'sometimes' for 'source.isolation'"),
        format!("{name}:12:5: unknown value 'presrve' for 'sink.partitioning'"),
        format!("{name}:13:3: unknown key 'compresion'"),
    ] {
        assert!(e.contains(&expected), "missing {expected:?} in:\n{e}");
    }

    // A value a component checks itself points at its own line, not at the mapping above.
    std::fs::write(
        &file,
        "name: t
source:
  type: kafka
  brokers: [\"h:1\"]
  topics: [a]
  sasl:
    mechanism: PLAN
    username: u
    password: p
sink:
  type: stdout
",
    )
    .unwrap();
    let e = stderr(&ferry(&["validate", file.to_str().unwrap()]));
    assert!(
        e.contains(&format!(
            "{name}:7:5: source (type kafka): sasl.mechanism 'PLAN'"
        )),
        "{e}"
    );
}

#[test]
fn output_to_a_pipe_has_no_terminal_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        format!(
            "name: t\nsource:\n  type: generator\n  count: 10\nsink:\n  type: storage\n  uri: {}\n  format: jsonl\n",
            dir.path().join("out").display()
        ),
    )
    .unwrap();
    let out = ferry(&["run", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).is_empty(), "logs are written");
    assert!(!stderr(&out).contains('\u{1b}'), "{}", stderr(&out));
    assert!(!stdout(&out).contains('\u{1b}'));
}

/// The demo keeps its backup and ends by saying where things are and how to stop them.
#[test]
fn the_demo_keeps_its_backup_and_says_how_to_stop_the_services() {
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo")).unwrap();
    assert!(!demo.contains("rm -rf \"$work\"\n"), "the backup is kept");
    for said in [
        "ferry binary:",
        "the backup:",
        "still running:",
        "scripts/dev-env down",
        "cargo install --locked --path cli",
    ] {
        assert!(demo.contains(said), "the demo does not say {said:?}");
    }
    // Escapes only when stderr is a terminal.
    assert!(demo.contains("if [ -t 2 ]; then bold=$'\\033[1m'"));
    let syntax = Command::new("bash")
        .args([
            "-n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo"),
        ])
        .output()
        .unwrap();
    assert!(syntax.status.success());
}

/// Runs a pipeline of 10 generated records into a raw backup at `dir/backup`, no Kafka.
fn generated_backup(dir: &std::path::Path) -> String {
    let backup = dir.join("backup").display().to_string();
    let file = dir.join("gen.yaml");
    std::fs::write(
        &file,
        format!(
            "name: gen\nsource:\n  type: generator\n  count: 10\n  topic: gen\n  partitions: 2\nsink:\n  type: storage\n  uri: {backup}\n  format: raw\n"
        ),
    )
    .unwrap();
    let out = ferry(&["run", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    backup
}

#[test]
fn print_pipeline_prints_yaml_that_validate_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let backup = generated_backup(dir.path());
    let printed = [
        ferry(&[
            "backup",
            "--brokers",
            "h:1",
            "--topic",
            "t",
            "--to",
            "/tmp/x",
            "--print-pipeline",
            "--sasl-mechanism",
            "PLAIN",
            "--sasl-username",
            "u",
        ]),
        ferry(&[
            "restore",
            "--from",
            &backup,
            "--brokers",
            "h:1",
            "--rename",
            "gen=gen2",
            "--print-pipeline",
        ]),
    ];
    for (i, out) in printed.iter().enumerate() {
        assert!(out.status.success(), "{}", stderr(out));
        let yaml = stdout(out);
        assert!(yaml.starts_with("name: "), "YAML, not JSON:\n{yaml}");
        let file = dir.path().join(format!("printed-{i}.yaml"));
        std::fs::write(&file, &yaml).unwrap();
        let check = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["validate", file.to_str().unwrap()])
            .env("FERRY_SASL_PASSWORD", "secret")
            .output()
            .unwrap();
        assert!(check.status.success(), "{yaml}\n{}", stderr(&check));
    }
    assert!(stdout(&printed[0]).contains("password: ${FERRY_SASL_PASSWORD}"));
}

#[test]
fn a_closed_pipe_ends_every_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let backup = generated_backup(dir.path());
    let to_stdout = dir.path().join("stdout.yaml");
    std::fs::write(
        &to_stdout,
        "name: out\nsource:\n  type: generator\n  count: 100000\nsink:\n  type: stdout\n",
    )
    .unwrap();
    let to_stdout = to_stdout.display().to_string();
    for args in [
        vec!["run", &to_stdout],
        vec!["schema"],
        vec!["components"],
        vec!["ls", &backup],
        vec!["verify", &backup],
        vec![
            "restore",
            "--from",
            &backup,
            "--brokers",
            "h:1",
            "--print-pipeline",
        ],
    ] {
        // The reading end is closed before ferry writes anything, as `| head -0` would.
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let e = stderr(&out);
        assert!(
            out.status.success(),
            "ferry {args:?}: {:?}\n{e}",
            out.status
        );
        assert!(
            !e.contains("panicked") && !e.contains("Broken pipe") && !e.contains("ERROR"),
            "{e}"
        );
    }
}

#[test]
fn components_show_nested_options_and_suggest_the_nearest_name() {
    let out = ferry(&["components", "kafak"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("did you mean 'kafka'?"),
        "{}",
        stderr(&out)
    );
    let listing = stdout(&ferry(&["components", "kafka"]));
    for sub in ["tls.ca_file", "sasl.mechanism", "groups.rename"] {
        assert!(listing.contains(sub), "{sub} missing:\n{listing}");
    }
    let help = stdout(&ferry(&["backup", "--help"]));
    assert!(
        help.contains("[possible values: raw, jsonl, avro, parquet, iceberg]"),
        "{help}"
    );
}

#[test]
fn backing_up_a_topic_that_does_not_exist_fails_and_leaves_nothing() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("backup");
    let topic = ferry_testkit::unique("absent");
    let out = ferry(&[
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        &topic,
        "--to",
        to.to_str().unwrap(),
        "--snapshot",
    ]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains(&format!(
            "--topic '{topic}': no such topic on {}",
            env.kafka
        )) && e.contains("Nothing was written"),
        "{e}"
    );
    assert!(!to.exists(), "nothing left behind");
    // A pattern matching nothing, for a snapshot, too.
    let out = ferry(&[
        "backup",
        "--brokers",
        &env.kafka,
        "--topic",
        &format!("/^{topic}$/"),
        "--to",
        to.to_str().unwrap(),
        "--snapshot",
    ]);
    assert!(
        stderr(&out).contains("no topic matches it"),
        "{}",
        stderr(&out)
    );
    assert!(!to.exists());
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let out = ferry(&["completions", shell]);
        assert!(out.status.success(), "{}", stderr(&out));
        let script = stdout(&out);
        for word in ["restore", "allow-existing", "skip-damaged", "completions"] {
            assert!(script.contains(word), "{shell}: {word} missing");
        }
    }
    // bash loads the script and registers the completion.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ferry.bash");
    std::fs::write(&script, stdout(&ferry(&["completions", "bash"]))).unwrap();
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p ferry", script.display()))
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{}", stderr(&loaded));
    assert!(stdout(&loaded).contains("ferry"));

    let page = stdout(&ferry(&["man"]));
    assert!(page.contains(".TH ferry 1"), "{page}");
    assert!(page.contains("restore"));
    let pages = dir.path().join("man1");
    let out = ferry(&["man", "--out-dir", pages.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let restore = std::fs::read_to_string(pages.join("ferry-restore.1")).unwrap();
    assert!(restore.contains("allow\\-existing"), "{restore}");
    assert!(pages.join("ferry-backup.1").exists() && pages.join("ferry.1").exists());
}
