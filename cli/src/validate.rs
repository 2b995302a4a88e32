//! `ferry validate FILE...`: checks pipeline files without connecting to anything.

use anyhow::bail;
use std::path::PathBuf;

/// Check pipeline files: YAML syntax, unknown keys, types, `${VAR}` references, component
/// types and their options. Nothing is connected to and no file is written.
///
/// Prints `FILE: ok` for each valid file (stdout) and every problem as
/// `file:line:column: message` (stderr). Exits 1 if any file has a problem.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pipeline files (YAML).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Validates the files of `args`.
pub async fn main(args: Args) -> anyhow::Result<()> {
    let reg = crate::registry();
    let mut bad = 0;
    for f in &args.files {
        let name = f.display().to_string();
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{name}: cannot read: {e}");
                bad += 1;
                continue;
            }
        };
        let mut errors = reg.check_pipeline(&text, &name);
        // In the order of the file, whatever order the checks found them in.
        errors.sort_by_key(|e| match e {
            ferry_core::Error::Config {
                location: Some(l), ..
            } => (l.line, l.column),
            _ => (u64::MAX, u64::MAX),
        });
        if errors.is_empty() {
            crate::outln!("{name}: ok");
            continue;
        }
        bad += 1;
        for e in errors {
            let msg = e.to_string();
            if msg.starts_with(&name) {
                eprintln!("{msg}");
            } else {
                eprintln!("{name}: {msg}");
            }
        }
    }
    if bad > 0 {
        bail!("{bad} of {} file(s) invalid", args.files.len());
    }
    Ok(())
}
