//! `ferry run FILE...`: runs pipelines concurrently until they finish or a signal arrives.

use anyhow::{bail, Context};
use ferry_core::{Pipeline, RunSummary};
use std::collections::BTreeSet;
use std::path::PathBuf;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Run pipelines until their sources finish or SIGINT/SIGTERM arrives.
///
/// Every file is loaded and checked before anything starts. On SIGINT/SIGTERM each pipeline
/// stops reading, writes what it already read, closes its sink and writes its checkpoint;
/// the exit code is then 0. A second signal exits at once (code 130). If a pipeline fails,
/// the others are stopped the same graceful way and the exit code is 1.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pipeline files (YAML). `${VAR}` and `${VAR:-default}` are read from the environment.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Loads every file into a pipeline (no pipeline starts if one file is wrong).
pub fn load(files: &[PathBuf]) -> anyhow::Result<Vec<Pipeline>> {
    let reg = crate::registry();
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for f in files {
        let name = f.display().to_string();
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {name}"))?;
        let p = reg.load_pipeline(&text, &name)?;
        if !names.insert(p.name.clone()) {
            bail!(
                "{name}: pipeline name '{}' is used by another file: names must differ (they name the checkpoints)",
                p.name
            );
        }
        out.push(p);
    }
    Ok(out)
}

/// Runs the pipelines of `args`.
pub async fn main(args: Args) -> anyhow::Result<()> {
    let pipelines = load(&args.files)?;
    run_pipelines(pipelines).await
}

/// Runs pipelines concurrently until they finish or a signal arrives (a second signal exits
/// at once); one failure stops the others gracefully.
pub async fn run_pipelines(pipelines: Vec<Pipeline>) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let progress = crate::progress::start();

    // Signals: the first drains every pipeline, a second one exits right away.
    let signals = tokio::spawn(watch_signals(stop_tx.clone()));

    let mut set: JoinSet<(String, ferry_core::Result<RunSummary>)> = JoinSet::new();
    for p in pipelines {
        let mut rx = stop_rx.clone();
        let name = p.name.clone();
        set.spawn(async move {
            let stop = async move {
                // The sender lives until every pipeline is done; if it were gone, never stop.
                if rx.wait_for(|s| *s).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            (name, ferry_core::run(p, stop).await)
        });
    }

    let mut failed: Vec<(String, ferry_core::Error)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            // The runtime logs each pipeline's summary itself.
            Ok((_, Ok(_))) => {}
            Ok((name, Err(e))) => {
                // One failure stops the others gracefully.
                let _ = stop_tx.send(true);
                failed.push((name, e));
            }
            Err(e) => {
                let _ = stop_tx.send(true);
                failed.push((
                    "?".into(),
                    ferry_core::Error::internal(format!("pipeline task failed: {e}")),
                ));
            }
        }
    }
    signals.abort();
    if let Some(p) = progress {
        p.finish();
    }
    // A reader that went away (`ferry run x.yaml | head`) ends the run quietly, as it ends
    // every other command.
    if !failed.is_empty()
        && failed
            .iter()
            .all(|(_, e)| ferry_core::runtime::is_broken_pipe(e))
    {
        return Ok(());
    }
    match failed.len() {
        0 => Ok(()),
        1 => {
            let (name, e) = failed.remove(0);
            Err(anyhow::Error::new(e).context(format!("pipeline '{name}' failed")))
        }
        n => {
            for (name, e) in &failed {
                eprintln!("error: pipeline '{name}' failed: {e}");
            }
            bail!("{n} pipelines failed")
        }
    }
}

/// Sets the stop flag on the first SIGINT/SIGTERM and exits (code 130) on the second.
///
/// The signal streams are created once: a stream created after a signal was delivered may
/// report that signal again, which would turn one SIGTERM into an immediate exit.
async fn watch_signals(stop: watch::Sender<bool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            _ => {
                tracing::warn!("cannot listen for signals; stop with SIGKILL");
                return;
            }
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        let _ = stop.send(true);
        tracing::warn!("{name} received: draining pipelines (send it again to exit at once)");
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop.send(true);
        tracing::warn!("Ctrl-C received: draining pipelines (press it again to exit at once)");
        let _ = tokio::signal::ctrl_c().await;
    }
    eprintln!("error: second signal: exiting without draining");
    std::process::exit(130);
}
