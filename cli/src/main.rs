//! `ferry`: back up, restore and export Kafka topics with YAML pipelines.
//!
//! This file only parses the command line and dispatches: each subcommand lives in its own
//! module with an `Args` struct and an `async fn main(args) -> anyhow::Result<()>`. To add
//! one, add a module, a variant to [`Command`] and an arm to [`dispatch`].

mod completions;
mod components;
mod copy;
mod decrypt;
mod keygen;
mod logging;
mod ls;
mod output;
mod progress;
mod prune;
mod restore;
mod run;
mod schema;
mod shortcuts;
mod topics;
mod validate;
mod verify;
mod worker;

use clap::{Parser, Subcommand};
use ferry_core::Registry;
use std::process::ExitCode;

/// Back up, restore and export Kafka topics with YAML pipelines.
///
/// A pipeline file names one source, optional transforms and one sink; `ferry run` moves
/// records through it with at-least-once delivery and checkpoints. Start with
/// `ferry components` to see what a pipeline can use and `ferry validate` to check a file.
#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Human, env = "FERRY_LOG_FORMAT")]
    log_format: logging::LogFormat,

    /// Log level or filter (`info`, `debug`, `ferry_core=debug,warn`, …).
    #[arg(long, global = true, default_value = "info", env = "FERRY_LOG")]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run pipelines until their sources finish or SIGINT/SIGTERM arrives.
    Run(run::Args),
    /// Check pipeline files without connecting to anything.
    Validate(validate::Args),
    /// List the sources, transforms, sinks and formats pipelines can use.
    Components(components::Args),
    /// Print the JSON Schema of pipeline files (for editors and CI).
    Schema(schema::Args),
    /// Show what a backup holds: topics, partitions, offsets, times, sizes, gaps.
    Ls(ls::Args),
    /// Re-read a backup and check every segment against its manifest.
    Verify(verify::Args),
    /// Back up topics to storage (a shortcut for a kafka → storage pipeline).
    Backup(shortcuts::BackupArgs),
    /// Restore a backup into a cluster (a shortcut for a backup → kafka pipeline).
    Restore(restore::RestoreArgs),
    /// List a cluster's topics with partitions and earliest/latest offsets.
    Topics(topics::TopicsArgs),
    /// Copy a backup to another storage, every segment checked against its manifest
    /// (incremental and resumable: a second copy, an air-gapped vault).
    Copy(copy::Args),
    /// Delete a backup's oldest segments (all records older than a time), never the newest.
    Prune(prune::Args),
    /// Run as a worker of a group sharing pipelines, with a REST API (Ferry as a service).
    Worker(worker::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the manual page (or write one per command with --out-dir).
    Man(completions::ManArgs),
    /// Write a new random key for encrypted backups (mode 0600; never overwrites).
    Keygen(keygen::Args),
    /// Decrypt one object of an encrypted backup (a dead-letter file, a segment).
    Decrypt(decrypt::Args),
}

/// The registry of every built-in component: what pipeline files can name.
pub fn registry() -> Registry {
    let mut reg = Registry::new();
    ferry_core::transforms::register(&mut reg);
    ferry_sources::register(&mut reg);
    ferry_sinks::register(&mut reg);
    ferry_formats::register(&mut reg);
    reg
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(a) => run::main(a).await,
        Command::Validate(a) => validate::main(a).await,
        Command::Components(a) => components::main(a).await,
        Command::Schema(a) => schema::main(a).await,
        Command::Ls(a) => ls::main(a).await,
        Command::Verify(a) => verify::main(a).await,
        Command::Backup(a) => shortcuts::backup(a).await,
        Command::Restore(a) => restore::main(a).await,
        Command::Topics(a) => topics::run(a).await,
        Command::Worker(a) => worker::main(a).await,
        Command::Prune(a) => prune::main(a).await,
        Command::Copy(a) => copy::main(a).await,
        Command::Completions(a) => completions::completions(a).await,
        Command::Man(a) => completions::man(a).await,
        Command::Keygen(a) => keygen::main(a).await,
        Command::Decrypt(a) => decrypt::main(a).await,
    }
}

/// How many malloc arenas a command gets: one for `restore` and for a `run` whose files are
/// all restores (a `backup` source into a `kafka` sink), the number of cores (at least 2) for
/// everything else (exports, workers whose pipelines can be anything).
///
/// glibc gives threads up to 8 arenas per core, and memory freed in one arena is not reused
/// by threads on another: a restore's buffers move between the runtime's threads, so its
/// peak RSS grew with the amount restored (209 MiB for 1 GB, 292 MiB for 5 GB of 1 KiB
/// records). Capped at the cores (2 here) a 10 GB restore still peaked at 224-410 MiB, past
/// the 256 MiB bound; with one arena at 175-199 MiB, no slower (its threads mostly hand
/// buffers on rather than allocate at once). One arena cost the Parquet export 14 % more
/// CPU (its encoders allocate on several blocking threads at the same time), so the other
/// commands keep one per core (benches/results/ab-2026-12-06.md, restore-rss-2026-12-07.md).
fn malloc_arenas_for(command: &Command) -> usize {
    match command {
        Command::Restore(_) => 1,
        Command::Run(a) if run::all_restores(&a.files) => 1,
        _ => std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2),
    }
}

/// Caps glibc's malloc arenas (see [`malloc_arenas_for`]), unless `MALLOC_ARENA_MAX` is set
/// (glibc then applies that itself). Must run before any thread starts: glibc fixes the
/// limit when it first creates a second arena.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas(arenas: usize) {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let arenas = libc::c_int::try_from(arenas).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas(_arenas: usize) {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    limit_malloc_arenas(malloc_arenas_for(&cli.command));
    if let Err(e) = logging::init(cli.log_format, &cli.log_level) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line (core's one formatter).
fn error_chain(e: &anyhow::Error) -> String {
    ferry_core::error::chain_of(e.chain())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_gets_one_malloc_arena_and_other_commands_one_per_core() {
        let restore =
            Cli::try_parse_from(["ferry", "restore", "--from", "/b", "--brokers", "k:9092"])
                .expect("restore parses");
        assert_eq!(malloc_arenas_for(&restore.command), 1);
        let backup = Cli::try_parse_from([
            "ferry",
            "backup",
            "--brokers",
            "k:9092",
            "--topic",
            "t",
            "--to",
            "/b",
        ])
        .expect("backup parses");
        assert!(malloc_arenas_for(&backup.command) >= 2);
    }
}
