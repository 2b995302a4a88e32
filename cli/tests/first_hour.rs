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
