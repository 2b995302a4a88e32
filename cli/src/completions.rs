//! `ferry completions SHELL` and `ferry man`: shell completions and manual pages generated
//! from the CLI definition itself (clap_complete, clap_mangen), so they never drift from
//! the flags.

use anyhow::Context;
use clap::CommandFactory;
use std::path::PathBuf;

/// Print a completion script for a shell.
///
/// bash: `ferry completions bash > ~/.local/share/bash-completion/completions/ferry`;
/// zsh: `ferry completions zsh > "${fpath[1]}/_ferry"`;
/// fish: `ferry completions fish > ~/.config/fish/completions/ferry.fish`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Print the manual page of `ferry` (roff), or write one page per command into a folder.
///
/// Read it with `ferry man | man -l -`; install with `ferry man --out-dir
/// ~/.local/share/man/man1` (`ferry.1`, `ferry-backup.1`, …).
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write `ferry.1` and a page per command (`ferry-backup.1`, …) into this folder
    /// instead of printing `ferry.1`.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Prints the completion script of `args.shell`.
pub async fn completions(args: CompletionsArgs) -> anyhow::Result<()> {
    let mut cmd = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "ferry", &mut script);
    crate::output::print(&String::from_utf8_lossy(&script))
}

/// Prints or writes the manual pages.
pub async fn man(args: ManArgs) -> anyhow::Result<()> {
    let cmd = crate::Cli::command();
    match args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("cannot write the manual pages to {}", dir.display()))
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .context("rendering the manual page")?;
            crate::output::print(&String::from_utf8_lossy(&page))
        }
    }
}
