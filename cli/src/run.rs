//! `ferry run FILE...`: runs pipelines concurrently until they finish or a signal arrives.

use anyhow::{bail, Context};
use ferry_core::{Pipeline, RunSummary};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
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

/// A pipeline to run, and how to build it again when it is a service that must outlive a
/// storage outage.
pub struct Job {
    pipeline: Pipeline,
    /// Builds the same pipeline anew (from its text); `None`: run once.
    rebuild: Option<Rebuild>,
}

/// Builds a pipeline again from its definition.
type Rebuild = Arc<dyn Fn() -> ferry_core::Result<Pipeline> + Send + Sync>;

impl Job {
    /// A pipeline that runs once: a failure ends it.
    pub fn once(pipeline: Pipeline) -> Job {
        Job {
            pipeline,
            rebuild: None,
        }
    }

    /// A pipeline from a YAML text: when its source is continuous and its storage fails
    /// (an outage longer than the storage's own retries), it is built again from the text
    /// and restarts from its last durable point after a backoff, instead of failing.
    pub fn from_text(text: String, origin: String) -> ferry_core::Result<Job> {
        let reg = Arc::new(crate::registry());
        let pipeline = reg.load_pipeline(&text, &origin)?;
        let rebuild: Rebuild = Arc::new(move || reg.load_pipeline(&text, &origin));
        Ok(Job {
            pipeline,
            rebuild: Some(rebuild),
        })
    }
}

/// Whether every file is a restore: a `backup` source into a `kafka` sink. `main` reads this
/// before the runtime starts, to give such a process one malloc arena as `ferry restore` has
/// (see `malloc_arenas_for`). Only the two `type:` keys are read
/// ([`ferry_core::registry::pipeline_ends`]); a file that cannot be read or parsed here counts
/// as not a restore, and [`load`] reports it properly later.
pub fn all_restores(files: &[PathBuf]) -> bool {
    let is_restore = |f: &PathBuf| {
        std::fs::read_to_string(f)
            .ok()
            .and_then(|text| {
                ferry_core::registry::pipeline_ends(&text, &f.display().to_string()).ok()
            })
            .is_some_and(|(source, sink)| source == "backup" && sink == "kafka")
    };
    !files.is_empty() && files.iter().all(is_restore)
}

/// Loads every file into a pipeline (no pipeline starts if one file is wrong).
pub fn load(files: &[PathBuf]) -> anyhow::Result<Vec<Job>> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for f in files {
        let name = f.display().to_string();
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {name}"))?;
        let job = Job::from_text(text, name.clone())?;
        if !names.insert(job.pipeline.name.clone()) {
            bail!(
                "{name}: pipeline name '{}' is used by another file: names must differ (they name the checkpoints)",
                job.pipeline.name
            );
        }
        out.push(job);
    }
    Ok(out)
}

/// Runs a job until it finishes or `stop` is set; a continuous pipeline whose storage
/// failed is restarted ([`ferry_core::runtime::run_restarting`]).
async fn run_job(job: Job, stop: watch::Receiver<bool>) -> ferry_core::Result<RunSummary> {
    let Job { pipeline, rebuild } = job;
    match rebuild {
        Some(rebuild) => {
            ferry_core::runtime::run_restarting(pipeline, move || rebuild(), stop, |_, _| {}).await
        }
        None => {
            let mut rx = stop;
            let stopped = async move {
                // The sender lives until every pipeline is done; if it were gone, never stop.
                if rx.wait_for(|s| *s).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            ferry_core::run(pipeline, stopped).await
        }
    }
}

/// Runs the pipelines of `args`.
pub async fn main(args: Args) -> anyhow::Result<()> {
    let jobs = load(&args.files)?;
    run_pipelines(jobs).await
}

/// Runs pipelines concurrently until they finish or a signal arrives (a second signal exits
/// at once); one failure stops the others gracefully.
pub async fn run_pipelines(jobs: Vec<Job>) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let progress = crate::progress::start();

    // Signals: the first drains every pipeline, a second one exits right away.
    let signals = tokio::spawn(watch_signals(stop_tx.clone()));

    let mut set: JoinSet<(String, ferry_core::Result<RunSummary>)> = JoinSet::new();
    for job in jobs {
        let rx = stop_rx.clone();
        let name = job.pipeline.name.clone();
        set.spawn(async move { (name, run_job(job, rx).await) });
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

#[cfg(test)]
mod tests {
    use super::*;

    const RESTORE: &str =
        "name: r\nsource:\n  type: backup\n  uri: /b\nsink:\n  type: kafka\n  brokers: [k:9092]\n";
    const EXPORT: &str =
        "name: e\nsource:\n  type: kafka\n  brokers: [k:9092]\nsink:\n  type: storage\n  uri: /x\n";

    #[test]
    fn only_files_that_are_all_restores_count_as_restores() {
        let dir = tempfile::tempdir().expect("temp dir");
        let restore = dir.path().join("restore.yaml");
        let export = dir.path().join("export.yaml");
        let broken = dir.path().join("broken.yaml");
        std::fs::write(&restore, RESTORE).expect("write");
        std::fs::write(&export, EXPORT).expect("write");
        std::fs::write(&broken, "source: [").expect("write");
        assert!(all_restores(std::slice::from_ref(&restore)));
        assert!(!all_restores(std::slice::from_ref(&export)));
        assert!(!all_restores(&[restore.clone(), export]));
        assert!(!all_restores(&[restore, broken]));
        assert!(!all_restores(&[dir.path().join("missing.yaml")]));
        assert!(!all_restores(&[]));
        // The shipped restore pipeline, whose values are `${VAR:-default}` references.
        let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../pipelines/restore-point-in-time.yaml");
        assert!(all_restores(&[shipped]));
    }
}
