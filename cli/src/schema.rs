//! `ferry schema`: the JSON Schema of pipeline files.

use anyhow::Context;
use std::path::PathBuf;

/// Print the JSON Schema of pipeline files. Components are listed as `oneOf` by their
/// `type`, with every option and its description; point an editor's YAML language server
/// at it (`# yaml-language-server: $schema=ferry.schema.json`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write to this file instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Prints or writes the schema.
pub async fn main(args: Args) -> anyhow::Result<()> {
    let schema = crate::registry().pipeline_schema();
    let mut text = serde_json::to_string_pretty(&schema)?;
    text.push('\n');
    match args.output {
        Some(path) => std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => crate::output::print(&text)?,
    }
    Ok(())
}
